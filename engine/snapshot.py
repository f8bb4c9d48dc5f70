"""Book snapshots and the state hash: one definition that every book implementation meets.

A book's logical state is (1) its resting orders in priority order, (2) its trade
sequence number and (3) the set of order ids it has ever accepted (a later order
reusing one is rejected). Two books in the same logical state produce byte-equal
snapshots and equal state hashes, whatever their internal layout.

Priority order: bids from the best (highest) price down, then asks from the best
(lowest) price up; FIFO (time priority) within a price level.

State hash (64-bit): ``h = SEED``; for each resting order in priority order absorb
the words ``side, price, order_id, quantity, time_in_force``; then absorb
``trade_sequence``, the number of accepted ids and their digest, where
``absorb(h, w) = mix(h ^ w)`` and the digest is ``sum(mix(id ^ ID_SALT)) mod 2**64``
(order-free, so it can be kept incrementally). ``mix`` is the splitmix64 finaliser;
every word is taken modulo 2**64.
"""

import msgspec
import numpy as np

from engine.types import MAX_QUANTITY, TimeInForce

MASK = (1 << 64) - 1
SEED = 0x9E3779B97F4A7C15
ID_SALT = 0x5851F42D4C957F2D

ORDER_DTYPE = np.dtype(
    [("order_id", "<i8"), ("side", "u1"), ("price", "<i8"), ("quantity", "<i8"), ("time_in_force", "u1")]
)


def mix(x: int) -> int:
    """The splitmix64 finaliser on a 64-bit word."""
    x &= MASK
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & MASK
    return x ^ (x >> 31)


def id_digest_term(order_id: int) -> int:
    """One accepted id's contribution to the id digest."""
    return mix((order_id & MASK) ^ ID_SALT)


def state_hash(orders, trade_sequence: int, id_count: int, id_digest: int) -> int:
    """Hash a book state; ``orders`` yields (side, price, order_id, quantity, tif) in priority order."""
    h = SEED
    for side, price, order_id, quantity, tif in orders:
        for word in (side, price, order_id, quantity, tif):
            h = mix(h ^ (word & MASK))
    for word in (trade_sequence, id_count, id_digest):
        h = mix(h ^ (word & MASK))
    return h


class BookSnapshot(msgspec.Struct, frozen=True):
    """A book's full logical state, as raw little-endian arrays so it encodes compactly.

    ``orders`` holds ORDER_DTYPE records in priority order; ``accepted_ids`` the
    ascending int64 ids of every order ever accepted (resting or not).
    """

    trade_sequence: int
    orders: bytes
    accepted_ids: bytes

    @classmethod
    def from_arrays(cls, trade_sequence: int, orders: np.ndarray, accepted_ids: np.ndarray) -> "BookSnapshot":
        return cls(
            trade_sequence,
            np.ascontiguousarray(orders, dtype=ORDER_DTYPE).tobytes(),
            np.ascontiguousarray(accepted_ids, dtype="<i8").tobytes(),
        )

    def order_array(self) -> np.ndarray:
        return np.frombuffer(self.orders, dtype=ORDER_DTYPE)

    def id_array(self) -> np.ndarray:
        return np.frombuffer(self.accepted_ids, dtype="<i8")


def validate_snapshot(snapshot: BookSnapshot) -> None:
    """Raise ValueError unless ``snapshot`` describes a consistent book.

    Checked: array sizes; ids strictly ascending; every resting order valid (side,
    resting time in force, 0 < quantity <= MAX_QUANTITY, price > 0), unique and
    among the accepted ids; bids before asks, each side in price priority; not crossed.
    """
    if not isinstance(snapshot, BookSnapshot):
        raise TypeError(f"expected a BookSnapshot, got {type(snapshot).__name__}")
    if snapshot.trade_sequence < 0:
        raise ValueError("negative trade sequence")
    if len(snapshot.orders) % ORDER_DTYPE.itemsize or len(snapshot.accepted_ids) % 8:
        raise ValueError("snapshot arrays have a truncated record")
    orders, ids = snapshot.order_array(), snapshot.id_array()
    if len(ids) > 1 and not np.all(ids[1:] > ids[:-1]):
        raise ValueError("accepted ids are not strictly ascending")
    if not np.all(orders["side"] <= 1):
        raise ValueError("resting order with an unknown side")
    if not np.all(np.isin(orders["time_in_force"], (TimeInForce.GTC, TimeInForce.DAY))):
        raise ValueError("resting order with a time in force that cannot rest")
    if not np.all((orders["quantity"] > 0) & (orders["quantity"] <= MAX_QUANTITY)):
        raise ValueError("resting order with a quantity out of range")
    if not np.all(orders["price"] > 0):
        raise ValueError("resting order with a non-positive price")
    if len(np.unique(orders["order_id"])) != len(orders):
        raise ValueError("two resting orders share an id")
    if not np.all(np.isin(orders["order_id"], ids)):
        raise ValueError("resting order whose id was never accepted")
    if len(orders) > 1 and not np.all(np.diff(orders["side"].astype(np.int8)) >= 0):
        raise ValueError("bids must come before asks")
    bids = orders["price"][orders["side"] == 0]
    asks = orders["price"][orders["side"] == 1]
    if len(bids) > 1 and not np.all(bids[1:] <= bids[:-1]):
        raise ValueError("bids are not in price priority")
    if len(asks) > 1 and not np.all(asks[1:] >= asks[:-1]):
        raise ValueError("asks are not in price priority")
    if len(bids) and len(asks) and bids[0] >= asks[0]:
        raise ValueError("crossed book")
