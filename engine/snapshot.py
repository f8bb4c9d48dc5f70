"""Book snapshots and the state hash: one definition that every book implementation meets.

A book's logical state is (1) its resting orders in priority order, (2) its trade
sequence number, (3) the set of order ids it has ever accepted (a later order
reusing one is rejected) and (4) the state of the advanced orders and phases: each
resting order's details, the held stops, the market orders waiting for the call
auction, the trading phase, the logical clock and the last trade price. Two books in
the same logical state produce byte-equal snapshots and equal state hashes, whatever
their internal layout.

Advanced state (the fields after ``accepted_lone``)
---------------------------------------------------
These fields were added with the advanced orders; each defaults to what a book without
them is in, so a snapshot written before them (five fields) still decodes and restores
(continuous phase, clock 0, no last trade price, no detail, held or waiting order).

- ``order_details``: DETAIL_DTYPE records, one for each resting order that is not a plain
  one, in the order of ``orders`` (priority order). A plain order has display quantity 0,
  no flags, owner 0, stp 0, is not GTD and carries no auction time; its visible quantity
  is its open quantity. A detail holds ``display_quantity``, ``visible`` (the slice shown
  in the depth: at most the open quantity, and at most the display quantity of an
  iceberg), ``flags``, ``stp``, ``owner``, ``expire_at`` (GTD; 0 otherwise), ``accepted``
  and ``time`` (below).
- ``held_stops``: HELD_DTYPE records, every held stop in acceptance order. ``order_type`` is
  STOP or STOP_LIMIT, ``price`` the stop-limit's limit price (0 for STOP), ``time_in_force``
  the stop-limit's (GTC, written 0, for STOP, which ignores it), ``expire_at`` the GTD
  stop-limit's (0 otherwise). Held stops never have flags or a display quantity.
- ``waiting_orders``: WAITING_DTYPE records, the market orders waiting for the uncross, in
  arrival order (only in the CALL and HALTED phases).
- ``phase`` (`engine.types.Phase`), ``clock`` (the logical time) and ``last_price`` (the
  last trade price; 0 before the first trade, as prices are positive).

``accepted`` is the rank (1, 2, ... in acceptance order) of an order among the resting GTD
orders and the held stops together, the orders whose acceptance order decides what happens
to them (expiry at one clock step, the trigger loop); every other resting order has 0.
``time`` is, in the CALL and HALTED phases, the rank (1, 2, ...) of a resting or waiting
order by the auction's time counter, which decides the maker of each uncross fill; it is 0
in the CONTINUOUS phase, where the counter is never read: a book leaving CONTINUOUS numbers
its resting orders' times 1..n in priority order (they can never be matched against each
other in the uncross, as the book is not crossed then), and counts on from there. Ranks,
not raw counters, so the snapshot does not depend on how many orders came and went.

Accepted ids
------------
A snapshot holds the accepted ids as the native book keeps them: in words of 64 ids,
word ``w`` holding ids ``64 * w .. 64 * w + 63`` (``w = id >> 6``, rounding down, so the
words tile all of int64). A word is written by how many of its ids were accepted:

- all 64: in ``accepted_ranges``, runs of such full words as inclusive ``(first, last)``
  int64 pairs of ids (``first`` a multiple of 64, ``last + 1`` one), ascending, with a
  word that is not full between any two (so each run is whole);
- 2 to 63: in ``accepted_words``, ``(first, bits)`` `WORD_DTYPE` records, the word's first
  id and a mask whose bit ``i`` stands for id ``first + i``, ascending;
- 1: in ``accepted_lone``, the int64 id itself, ascending;
- none: nowhere.

So the set has exactly one form, and no id costs more than the 8 bytes of listing it:
a run of consecutive ids (one TES's, which numbers ``(tes_id << 48) | n`` with ``n``
counting up) costs a range and at most two edge words, ids of one symbol among k traded
in turn about 16 bytes per word (0.5 byte per id at k = 2, 1 byte at k = 4), scattered
ids 8 bytes each. Ranges are inclusive because any int64 is an id: ``2**63 - 1`` has no
exclusive end.

Priority order: bids from the best (highest) price down, then asks from the best
(lowest) price up; FIFO (time priority) within a price level.

State hash (64-bit): ``h = SEED``; for each resting order in priority order absorb
the words ``side, price, order_id, quantity, time_in_force``; then absorb
``trade_sequence``, the number of accepted ids and their digest; then the number of
detail records and each one's fields in DETAIL_DTYPE order, the number of held stops
and each one's fields in HELD_DTYPE order, the number of waiting orders and each one's
fields in WAITING_DTYPE order; then ``phase``, ``clock`` and ``last_price``. Here
``absorb(h, w) = mix(h ^ w)`` and the digest is ``sum(mix(id ^ ID_SALT)) mod 2**64``
(order-free, so it can be kept incrementally). ``mix`` is the splitmix64 finaliser;
every word is taken modulo 2**64.
"""

import msgspec
import numpy as np

from engine.types import MAX_QUANTITY, OrderType, Phase, TimeInForce

MASK = (1 << 64) - 1
SEED = 0x9E3779B97F4A7C15
ID_SALT = 0x5851F42D4C957F2D

ORDER_DTYPE = np.dtype(
    [("order_id", "<i8"), ("side", "u1"), ("price", "<i8"), ("quantity", "<i8"), ("time_in_force", "u1")]
)
DETAIL_DTYPE = np.dtype(
    [("order_id", "<i8"), ("display_quantity", "<i8"), ("visible", "<i8"), ("flags", "u1"), ("stp", "u1"),
     ("owner", "<i8"), ("expire_at", "<i8"), ("accepted", "<i8"), ("time", "<i8")]
)
"""A resting order's advanced fields (see "Advanced state" above)."""
HELD_DTYPE = np.dtype(
    [("order_id", "<i8"), ("side", "u1"), ("order_type", "u1"), ("time_in_force", "u1"), ("stp", "u1"),
     ("price", "<i8"), ("quantity", "<i8"), ("stop_price", "<i8"), ("owner", "<i8"), ("expire_at", "<i8"),
     ("accepted", "<i8")]
)
"""A held stop or stop-limit order."""
WAITING_DTYPE = np.dtype(
    [("order_id", "<i8"), ("side", "u1"), ("time_in_force", "u1"), ("stp", "u1"), ("quantity", "<i8"),
     ("owner", "<i8"), ("time", "<i8")]
)
"""A market order waiting for the call auction's uncross."""
WORD_DTYPE = np.dtype([("first", "<i8"), ("bits", "<u8")])
"""A word of 2 to 63 accepted ids: its first id (a multiple of 64) and the mask of the accepted ones."""
_FULL, _ONE = np.uint64(MASK), np.uint64(1)


def mix(x: int) -> int:
    """The splitmix64 finaliser on a 64-bit word."""
    x &= MASK
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & MASK
    return x ^ (x >> 31)


def id_digest_term(order_id: int) -> int:
    """One accepted id's contribution to the id digest."""
    return mix((order_id & MASK) ^ ID_SALT)


def state_hash(orders, trade_sequence: int, id_count: int, id_digest: int, details=(), held=(), waiting=(),
               phase: int = 0, clock: int = 0, last_price: int = 0) -> int:
    """Hash a book state; ``orders`` yields (side, price, order_id, quantity, tif) in priority order,
    ``details``, ``held`` and ``waiting`` are sequences of tuples in DETAIL_DTYPE, HELD_DTYPE and
    WAITING_DTYPE field order (see the module docstring)."""
    h = SEED
    for side, price, order_id, quantity, tif in orders:
        for word in (side, price, order_id, quantity, tif):
            h = mix(h ^ (word & MASK))
    for word in (trade_sequence, id_count, id_digest):
        h = mix(h ^ (word & MASK))
    for records in (details, held, waiting):
        h = mix(h ^ len(records))
        for record in records:
            for word in record:
                h = mix(h ^ (word & MASK))
    for word in (phase, clock, last_price):
        h = mix(h ^ (word & MASK))
    return h


class BookSnapshot(msgspec.Struct, frozen=True):
    """A book's full logical state, as raw little-endian arrays so it encodes compactly.

    ``orders`` holds ORDER_DTYPE records in priority order; ``accepted_ranges``,
    ``accepted_words`` and ``accepted_lone`` the accepted ids (resting or not) by the
    words of 64 ids they fill: all, 2 to 63, one (see the module docstring). The fields
    after them hold the advanced orders and phases ("Advanced state" in the module
    docstring) and default to a book that has none.
    """

    trade_sequence: int
    orders: bytes
    accepted_ranges: bytes
    accepted_words: bytes
    accepted_lone: bytes
    order_details: bytes = b""
    held_stops: bytes = b""
    waiting_orders: bytes = b""
    phase: int = 0
    clock: int = 0
    last_price: int = 0

    @classmethod
    def from_arrays(cls, trade_sequence: int, orders: np.ndarray, ranges: np.ndarray, words: np.ndarray,
                    lone: np.ndarray, details=(), held=(), waiting=(), phase: int = 0, clock: int = 0,
                    last_price: int = 0) -> "BookSnapshot":
        """A snapshot of arrays (or, for the advanced records, sequences of tuples) of the dtypes above."""
        return cls(
            trade_sequence,
            np.ascontiguousarray(orders, dtype=ORDER_DTYPE).tobytes(),
            np.ascontiguousarray(ranges, dtype="<i8").tobytes(),
            np.ascontiguousarray(words, dtype=WORD_DTYPE).tobytes(),
            np.ascontiguousarray(lone, dtype="<i8").tobytes(),
            _records_bytes(details, DETAIL_DTYPE),
            _records_bytes(held, HELD_DTYPE),
            _records_bytes(waiting, WAITING_DTYPE),
            int(phase),
            clock,
            last_price,
        )

    def order_array(self) -> np.ndarray:
        return np.frombuffer(self.orders, dtype=ORDER_DTYPE)

    def detail_array(self) -> np.ndarray:
        return np.frombuffer(self.order_details, dtype=DETAIL_DTYPE)

    def held_array(self) -> np.ndarray:
        return np.frombuffer(self.held_stops, dtype=HELD_DTYPE)

    def waiting_array(self) -> np.ndarray:
        return np.frombuffer(self.waiting_orders, dtype=WAITING_DTYPE)

    def range_array(self) -> np.ndarray:
        """The runs of full words as an (n, 2) int64 array of inclusive (first, last) ids."""
        return np.frombuffer(self.accepted_ranges, dtype="<i8").reshape(-1, 2)

    def word_array(self) -> np.ndarray:
        """The words of 2 to 63 accepted ids, WORD_DTYPE records."""
        return np.frombuffer(self.accepted_words, dtype=WORD_DTYPE)

    def lone_array(self) -> np.ndarray:
        """The ids accepted alone in their word, int64."""
        return np.frombuffer(self.accepted_lone, dtype="<i8")

    def id_count(self) -> int:
        """How many ids were accepted (exact, in time proportional to the records)."""
        return _id_count(self.range_array(), self.word_array(), self.lone_array())

    def id_array(self) -> np.ndarray:
        """Every accepted id, ascending int64: an array as long as the ids (for the reference book)."""
        words = self.word_array()
        bits = np.unpackbits(np.ascontiguousarray(words["bits"]).view(np.uint8), bitorder="little")
        row, column = np.nonzero(bits.reshape(-1, 64))
        runs = [first + np.arange(last - first + 1, dtype=np.int64) for first, last in self.range_array().tolist()]
        return np.sort(np.concatenate([*runs, words["first"][row] + column, self.lone_array()]))

    def last_ids(self) -> np.ndarray:
        """The largest id of each record (a range's last, a word's highest, a lone id), ascending."""
        words = self.word_array()
        return np.sort(np.concatenate([self.range_array()[:, 1], words["first"] + _highest_bit(words["bits"]),
                                       self.lone_array()]))


def _records_bytes(records, dtype: np.dtype) -> bytes:
    if isinstance(records, np.ndarray):
        return np.ascontiguousarray(records, dtype=dtype).tobytes()
    return np.array(list(records), dtype=dtype).tobytes() if len(records) else b""


def id_records(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The records (ranges, words, lone ids: `BookSnapshot.from_arrays`) of strictly ascending
    int64 ``ids``; ValueError if they are not strictly ascending."""
    ids = np.asarray(ids, dtype=np.int64)
    if not len(ids):
        return _records(ids, np.empty(0, np.uint64), np.empty((0, 2), np.int64))
    if not np.all(ids[1:] > ids[:-1]):
        raise ValueError("ids are not strictly ascending")
    words = ids >> 6
    starts = np.flatnonzero(np.r_[True, words[1:] != words[:-1]])
    bits = np.bitwise_or.reduceat(_ONE << (ids & 63).astype(np.uint64), starts)
    return _records(words[starts], bits, np.empty((0, 2), np.int64))


def id_records_of_ranges(ranges: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The records of the ids in inclusive ``(first, last)`` int64 ``ranges`` (ascending and
    disjoint: snapshot format version 2's), in time proportional to the ranges however many
    ids they hold; ValueError if the ranges are not ascending and disjoint."""
    ranges = np.asarray(ranges, dtype=np.int64).reshape(-1, 2)
    firsts, lasts = ranges[:, 0], ranges[:, 1]
    if not (np.all(firsts <= lasts) and np.all(firsts[1:] > lasts[:-1])):
        raise ValueError("id ranges are not ascending and disjoint")
    head, tail = firsts >> 6, lasts >> 6
    head_bits = _FULL << (firsts & 63).astype(np.uint64)
    tail_bits = _FULL >> (63 - (lasts & 63)).astype(np.uint64)
    one_word = head == tail
    words = np.concatenate([head, tail[~one_word]])
    bits = np.concatenate([np.where(one_word, head_bits & tail_bits, head_bits), tail_bits[~one_word]])
    order = np.argsort(words, kind="stable")
    words, bits = words[order], bits[order]
    starts = np.flatnonzero(np.r_[True, words[1:] != words[:-1]]) if len(words) else np.empty(0, np.intp)
    bits = np.bitwise_or.reduceat(bits, starts) if len(words) else bits  # ranges may share an edge word
    inner = tail - head >= 2
    return _records(words[starts], bits, np.stack([head[inner] + 1, tail[inner] - 1], axis=1))


def _records(words: np.ndarray, bits: np.ndarray, spans: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The records of the ids in ascending, distinct words ``words`` (``id >> 6``) with their
    non-zero ``bits``, and in the full words of ``spans`` ((first, last) word pairs, none of
    them among ``words``)."""
    full = bits == _FULL
    runs = np.concatenate([np.stack([words[full], words[full]], axis=1), spans])
    runs = runs[np.argsort(runs[:, 0], kind="stable")]
    if len(runs):  # join runs of full words that touch
        starts = np.flatnonzero(np.r_[True, runs[1:, 0] != runs[:-1, 1] + 1])
        runs = np.stack([runs[starts, 0], runs[np.r_[starts[1:], len(runs)] - 1, 1]], axis=1)
    ranges = np.stack([runs[:, 0] << 6, (runs[:, 1] << 6) | 63], axis=1)
    words, bits = words[~full], bits[~full]
    alone = (bits & (bits - _ONE)) == 0
    pairs = np.empty(np.count_nonzero(~alone), WORD_DTYPE)
    pairs["first"], pairs["bits"] = words[~alone] << 6, bits[~alone]
    return ranges, pairs, (words[alone] << 6) + _highest_bit(bits[alone])


def _popcount(bits: np.ndarray) -> np.ndarray:
    """The number of bits set in each uint64, as int64 (NumPy 1.26 has no ``bitwise_count``)."""
    x = np.asarray(bits, dtype=np.uint64)
    x = x - ((x >> np.uint64(1)) & np.uint64(0x5555555555555555))
    x = (x & np.uint64(0x3333333333333333)) + ((x >> np.uint64(2)) & np.uint64(0x3333333333333333))
    x = (x + (x >> np.uint64(4))) & np.uint64(0x0F0F0F0F0F0F0F0F)
    return ((x * np.uint64(0x0101010101010101)) >> np.uint64(56)).astype(np.int64)


def _highest_bit(bits: np.ndarray) -> np.ndarray:
    """The index of the highest bit set in each non-zero uint64, as int64."""
    x = np.array(bits, dtype=np.uint64)
    for shift in (1, 2, 4, 8, 16, 32):
        x |= x >> np.uint64(shift)
    return _popcount(x) - 1


def _id_count(ranges: np.ndarray, words: np.ndarray, lone: np.ndarray) -> int:
    """The number of ids in records whose ranges each have first <= last, exactly (a Python int)."""
    spans = ranges[:, 1].view(np.uint64) - ranges[:, 0].view(np.uint64)  # count - 1, exact modulo 2**64
    high, low = spans >> np.uint64(32), spans & np.uint64(0xFFFFFFFF)  # sums of 32-bit halves cannot overflow
    return (int(high.sum()) << 32) + int(low.sum()) + len(spans) + int(_popcount(words["bits"]).sum()) + len(lone)


def _contains(ranges: np.ndarray, words: np.ndarray, lone: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Which of the int64 ``ids`` valid records hold."""
    found = np.zeros(len(ids), dtype=bool)
    if len(ranges):
        at = np.searchsorted(ranges[:, 0], ids, side="right") - 1  # the range that would hold each id
        found |= (at >= 0) & (ids <= ranges[np.maximum(at, 0), 1])
    if len(words):
        starts = ids & -64
        at = np.minimum(np.searchsorted(words["first"], starts), len(words) - 1)
        found |= (words["first"][at] == starts) & (((words["bits"][at] >> (ids & 63).astype(np.uint64)) & _ONE) == 1)
    if len(lone):
        found |= lone[np.minimum(np.searchsorted(lone, ids), len(lone) - 1)] == ids
    return found


def _check_ids(ranges: np.ndarray, words: np.ndarray, lone: np.ndarray) -> None:
    """ValueError unless the records are the one form of a set of fewer than 2**63 ids."""
    firsts, lasts = ranges[:, 0], ranges[:, 1]
    if not np.all(((firsts & 63) == 0) & ((lasts & 63) == 63) & (firsts < lasts)):
        raise ValueError("an accepted-id range is not a run of whole words")
    # A word lies between two runs: the gap is at least 2, computed modulo 2**64 so it cannot
    # overflow (the next first is known to be larger).
    gaps = firsts[1:].view(np.uint64) - lasts[:-1].view(np.uint64)
    if not np.all((firsts[1:] > lasts[:-1]) & (gaps >= 2)):
        raise ValueError("accepted-id ranges are not ascending with a word that is not full between them")
    starts, bits = words["first"], words["bits"]
    if not np.all(((starts & 63) == 0) & ((bits & (bits - _ONE)) != 0) & (bits != _FULL)):
        raise ValueError("an accepted-id word does not hold 2 to 63 ids")
    if not (np.all(starts[1:] > starts[:-1]) and np.all(lone[1:] > lone[:-1])):
        raise ValueError("accepted-id words or lone ids are not ascending")
    listed = np.sort(np.concatenate([starts, lone & -64]))
    if not np.all(listed[1:] > listed[:-1]):
        raise ValueError("a word of accepted ids is listed twice (two lone ids, or a lone id and a word)")
    if len(listed) and len(ranges):
        at = np.searchsorted(firsts, listed, side="right") - 1
        if np.any((at >= 0) & (listed <= lasts[np.maximum(at, 0)])):
            raise ValueError("a word of accepted ids is listed and in a range too")
    if _id_count(ranges, words, lone) >= 2**63:
        raise ValueError("accepted-id records hold 2**63 ids or more")


def validate_snapshot(snapshot: BookSnapshot) -> None:
    """Raise ValueError unless ``snapshot`` describes a consistent book.

    Checked: array sizes; accepted ids in their one form (module docstring) and fewer than
    2**63; every resting order valid (side, resting time in force, 0 < quantity <=
    MAX_QUANTITY, price > 0), and every live order's id (resting, held, waiting) unique and
    among the accepted ids; bids before asks, each side in price priority; not crossed in
    the continuous phase; the advanced state in its one form (`_check_advanced`).
    """
    if not isinstance(snapshot, BookSnapshot):
        raise TypeError(f"expected a BookSnapshot, got {type(snapshot).__name__}")
    if snapshot.trade_sequence < 0:
        raise ValueError("negative trade sequence")
    if (len(snapshot.orders) % ORDER_DTYPE.itemsize or len(snapshot.accepted_ranges) % 16
            or len(snapshot.accepted_words) % WORD_DTYPE.itemsize or len(snapshot.accepted_lone) % 8
            or len(snapshot.order_details) % DETAIL_DTYPE.itemsize or len(snapshot.held_stops) % HELD_DTYPE.itemsize
            or len(snapshot.waiting_orders) % WAITING_DTYPE.itemsize):
        raise ValueError("snapshot arrays have a truncated record")
    orders = snapshot.order_array()
    ranges, words, lone = snapshot.range_array(), snapshot.word_array(), snapshot.lone_array()
    _check_ids(ranges, words, lone)
    if not np.all(orders["side"] <= 1):
        raise ValueError("resting order with an unknown side")
    if not np.all(np.isin(orders["time_in_force"], _RESTING_TIFS)):
        raise ValueError("resting order with a time in force that cannot rest")
    if not np.all((orders["quantity"] > 0) & (orders["quantity"] <= MAX_QUANTITY)):
        raise ValueError("resting order with a quantity out of range")
    if not np.all(orders["price"] > 0):
        raise ValueError("resting order with a non-positive price")
    held, waiting = snapshot.held_array(), snapshot.waiting_array()
    live = np.sort(np.concatenate([orders["order_id"], held["order_id"], waiting["order_id"]]))
    if len(live) > 1 and not np.all(live[1:] > live[:-1]):  # (np.unique takes 30 times as long on 300,000 ids)
        raise ValueError("two live orders share an id")
    if not np.all(_contains(ranges, words, lone, live)):
        raise ValueError("live order whose id was never accepted")
    if len(orders) > 1 and not np.all(np.diff(orders["side"].astype(np.int8)) >= 0):
        raise ValueError("bids must come before asks")
    bids = orders["price"][orders["side"] == 0]
    asks = orders["price"][orders["side"] == 1]
    if len(bids) > 1 and not np.all(bids[1:] <= bids[:-1]):
        raise ValueError("bids are not in price priority")
    if len(asks) > 1 and not np.all(asks[1:] >= asks[:-1]):
        raise ValueError("asks are not in price priority")
    if snapshot.phase == Phase.CONTINUOUS and len(bids) and len(asks) and bids[0] >= asks[0]:
        raise ValueError("crossed book")
    _check_advanced(snapshot, orders, snapshot.detail_array(), held, waiting)


_RESTING_TIFS = (TimeInForce.GTC, TimeInForce.DAY, TimeInForce.GTD)
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def _check_advanced(snapshot: BookSnapshot, orders: np.ndarray, details: np.ndarray, held: np.ndarray,
                    waiting: np.ndarray) -> None:
    """ValueError unless the advanced state is in its one form ("Advanced state" above)."""
    phase, clock, last_price = snapshot.phase, snapshot.clock, snapshot.last_price
    if phase not in (0, 1, 2):
        raise ValueError(f"unknown phase {phase}")
    if not (_INT64_MIN <= clock <= _INT64_MAX and 0 <= last_price <= _INT64_MAX):
        raise ValueError("clock or last trade price out of range")
    # details: of resting orders, in their order, not plain, each field in range
    position = np.argsort(orders["order_id"], kind="stable")
    at = np.searchsorted(orders["order_id"][position], details["order_id"])
    at = np.minimum(at, max(len(orders) - 1, 0))
    if len(details) and (not len(orders) or np.any(orders["order_id"][position][at] != details["order_id"])):
        raise ValueError("order details of an order that does not rest")
    index = position[at] if len(details) else np.empty(0, np.intp)
    if len(index) > 1 and not np.all(index[1:] > index[:-1]):
        raise ValueError("order details not in the order of the resting orders")
    quantity, tif = orders["quantity"][index], orders["time_in_force"][index]
    display, visible = details["display_quantity"], details["visible"]
    if not np.all((display >= 0) & (visible > 0) & (visible <= quantity)
                  & np.where(display > 0, visible <= display, visible == quantity)):
        raise ValueError("order details with a display or visible quantity out of range")
    if not np.all((details["flags"] <= 1) & (details["stp"] <= 4)):
        raise ValueError("order details with unknown flags or stp")
    gtd = tif == TimeInForce.GTD
    if not np.all(np.where(gtd, (details["expire_at"] > clock) & (details["accepted"] > 0),
                           (details["expire_at"] == 0) & (details["accepted"] == 0))):
        raise ValueError("order details with an expiry or acceptance rank that does not fit the order")
    if np.count_nonzero(orders["time_in_force"] == TimeInForce.GTD) != np.count_nonzero(gtd):
        raise ValueError("a GTD order without details")
    plain = ((display == 0) & (details["flags"] == 0) & (details["owner"] == 0) & (details["stp"] == 0)
             & (details["accepted"] == 0) & (details["time"] == 0))
    if np.any(plain):
        raise ValueError("order details of a plain order")
    # held stops
    stop = held["order_type"] == OrderType.STOP
    if not np.all((held["side"] <= 1) & (stop | (held["order_type"] == OrderType.STOP_LIMIT))):
        raise ValueError("held stop with an unknown side or type")
    held_gtd = held["time_in_force"] == TimeInForce.GTD
    if not np.all(np.where(stop, (held["time_in_force"] == 0) & (held["price"] == 0),
                           (held["time_in_force"] <= TimeInForce.GTD) & (held["price"] > 0))):
        raise ValueError("held stop with a price or time in force that does not fit its type")
    if not np.all((held["quantity"] > 0) & (held["quantity"] <= MAX_QUANTITY) & (held["stop_price"] > 0)
                  & (held["stp"] <= 4) & np.where(held_gtd, held["expire_at"] > clock, held["expire_at"] == 0)):
        raise ValueError("held stop with a quantity, stop price, stp or expiry out of range")
    if phase == Phase.CONTINUOUS and last_price and np.any(
            np.where(held["side"] == 0, held["stop_price"] <= last_price, held["stop_price"] >= last_price)):
        raise ValueError("a held stop qualifies at the last trade price in the continuous phase")
    ranks = np.sort(np.concatenate([details["accepted"][gtd], held["accepted"]]))
    if not np.array_equal(ranks, np.arange(1, len(ranks) + 1)) or np.any(np.diff(held["accepted"]) <= 0):
        raise ValueError("acceptance ranks are not 1..n, or held stops not in acceptance order")
    # waiting market orders and auction times
    if not np.all((waiting["side"] <= 1) & np.isin(waiting["time_in_force"], (TimeInForce.IOC, TimeInForce.FOK))
                  & (waiting["quantity"] > 0) & (waiting["quantity"] <= MAX_QUANTITY) & (waiting["stp"] <= 4)):
        raise ValueError("waiting market order with a field out of range")
    if phase == Phase.CONTINUOUS:
        if len(waiting) or np.any(details["time"] != 0):
            raise ValueError("auction times or waiting market orders in the continuous phase")
        return
    if len(details) != len(orders):
        raise ValueError("a resting order without its auction time outside the continuous phase")
    times = np.sort(np.concatenate([details["time"], waiting["time"]]))
    if not np.array_equal(times, np.arange(1, len(times) + 1)) or np.any(np.diff(waiting["time"]) <= 0):
        raise ValueError("auction times are not 1..n, or waiting orders not in arrival order")
    same_level = (orders["side"][1:] == orders["side"][:-1]) & (orders["price"][1:] == orders["price"][:-1])
    if np.any(same_level & (details["time"][1:] <= details["time"][:-1])):
        raise ValueError("a level's orders are not in auction time order")
