"""The order stream and fill file formats (single symbol, NumPy ``.npy``, no pickle).

A stream record is one message; a new order takes the message's ``order_id`` as its
id, cancel and replace act on ``target_id``. Fills are written in the order they
happen, one record each, at the maker's price (the uncross: at its one price).

Two versions, told apart by the dtype alone:

- version 1 (STREAM_DTYPE): kinds LIMIT_GTC, MARKET (a market IOC order), CANCEL,
  REPLACE, LIMIT_IOC, LIMIT_FOK;
- version 2 (STREAM_V2_DTYPE): kinds LIMIT, MARKET, CANCEL, REPLACE, STOP, STOP_LIMIT,
  PHASE (``qty`` is the new phase) and CLOCK (``price`` is the new time), with the time in
  force, flags, self-trade prevention, stop price, display quantity, owner and expiry of
  each new order in fields of their own (the README's "Order streams and fills").
"""

from enum import IntEnum
from pathlib import Path

import msgspec
import numpy as np

STREAM_DTYPE = np.dtype(
    [
        ("kind", "u1"),
        ("side", "u1"),
        ("price", "<i8"),
        ("qty", "<i8"),
        ("order_id", "<i8"),
        ("target_id", "<i8"),
    ]
)

FILL_DTYPE = np.dtype(
    [("maker_id", "<i8"), ("taker_id", "<i8"), ("price", "<i8"), ("qty", "<i8")]
)

EVENT_DTYPE = np.dtype(
    [
        ("order_id", "<i8"),
        ("other_id", "<i8"),
        ("price", "<i8"),
        ("quantity", "<i8"),
        ("leaves", "<i8"),
        ("other_leaves", "<i8"),
        ("sequence", "<i8"),
        ("code", "<i2"),
        ("kind", "u1"),
        ("side", "u1"),
        ("order_type", "u1"),
        ("tif", "u1"),
        ("flags", "u1"),
        ("stp", "u1"),
    ]
)
"""The native book's event records (`NativeBook.take_events`): its C ``Event`` struct (book.pxd),
64 bytes, one record per event Struct of `engine.messages` (`native.book.events_from_records`
makes the Structs). ``kind`` is an `EventKind`; each kind uses these fields, every other is 0:

=================  =============================================================================
kind               fields (the Struct's field they carry)
=================  =============================================================================
ACCEPTED           order_id, side, order_type, tif, price, quantity, leaves (stop_price),
                   other_leaves (display_quantity), flags, other_id (owner), stp,
                   sequence (expire_at)
REJECTED,          order_id, code (reason: a `RejectReason`; the text is the reason's); an
CANCEL_REJECTED,   order id beyond int64 (a VALUE_OUT_OF_RANGE reject) is recorded as 0
REPLACE_REJECTED
COMMAND_REJECTED   code (reason)
FILLED             order_id (maker_id), other_id (taker_id), price, quantity,
                   leaves (maker_leaves), other_leaves (taker_leaves), side (aggressor),
                   sequence (the trade number)
CANCELED           order_id, quantity, code (reason: a `CancelReason`)
REPLACED           order_id, price, quantity, code (priority_kept: 1 or 0)
EXPIRED            order_id, quantity
DECREMENTED        order_id, quantity, leaves, other_id (counterparty_id)
TRIGGERED          order_id, price (last_price)
CLOCK              price (time): ClockAdvanced
PHASE              code (phase), leaves (previous): PhaseChanged
UNCROSSED          price, quantity (volume): AuctionUncrossed
=================  =============================================================================
"""


class EventKind(IntEnum):
    """An event record's ``kind`` (EVENT_DTYPE): book.pxd's ``EV_*`` numbers, which the native book
    checks at import. A rejected command makes one event, its reject (REJECTED..COMMAND_REJECTED),
    and no accepted command makes one."""

    ACCEPTED = 0
    REJECTED = 1
    CANCEL_REJECTED = 2
    REPLACE_REJECTED = 3
    COMMAND_REJECTED = 4
    FILLED = 5
    CANCELED = 6
    REPLACED = 7
    EXPIRED = 8
    DECREMENTED = 9
    TRIGGERED = 10
    CLOCK = 11
    PHASE = 12
    UNCROSSED = 13


STREAM_V2_DTYPE = np.dtype(
    [
        ("kind", "u1"),
        ("side", "u1"),
        ("tif", "u1"),
        ("flags", "u1"),
        ("stp", "u1"),
        ("price", "<i8"),
        ("qty", "<i8"),
        ("order_id", "<i8"),
        ("target_id", "<i8"),
        ("stop_price", "<i8"),
        ("display_qty", "<i8"),
        ("owner", "<i8"),
        ("expire_at", "<i8"),
    ]
)
"""Version 2 (advanced orders and phases): told apart from version 1 by the dtype alone."""

LIMIT_GTC = 0
MARKET = 1
CANCEL = 2
REPLACE = 3
LIMIT_IOC = 4
LIMIT_FOK = 5
"""Version 1's kinds."""

LIMIT = 0
STOP = 6
STOP_LIMIT = 7
PHASE = 8
CLOCK = 9
"""Version 2's kinds besides MARKET, CANCEL and REPLACE (kinds 4 and 5 do not exist in v2)."""

TIF_V2_GTD = 3
"""Version 2's ``tif`` field: 0 GTC, 1 IOC, 2 FOK as `engine.types.TimeInForce`, and 3 is GTD
(`TimeInForce.GTD`); v2 has no DAY."""


class StreamError(ValueError):
    """A stream file that cannot be replayed, with the reason in its message."""


class ReplayResult(msgspec.Struct, frozen=True):
    """What replaying a stream through a book produced.

    ``accepted + rejected`` equals the number of messages; ``fills`` has FILL_DTYPE.
    """

    fills: np.ndarray
    accepted: int
    rejected: int


def check_stream(stream: np.ndarray) -> np.ndarray:
    """Return ``stream`` as a C-contiguous STREAM_DTYPE or STREAM_V2_DTYPE array (its own
    version), or raise StreamError."""
    if not isinstance(stream, np.ndarray):
        raise StreamError(f"expected a NumPy array, got {type(stream).__name__}")
    if stream.dtype != STREAM_DTYPE and stream.dtype != STREAM_V2_DTYPE:
        raise StreamError(f"wrong dtype {stream.dtype}; a stream needs {STREAM_DTYPE} (version 1) or "
                          f"{STREAM_V2_DTYPE} (version 2)")
    if stream.ndim != 1:
        raise StreamError(f"a stream is one-dimensional, this array has shape {stream.shape}")
    return np.ascontiguousarray(stream)


def load_stream(path: str | Path) -> np.ndarray:
    """Read a stream file, refusing pickles and anything not of STREAM_DTYPE or STREAM_V2_DTYPE."""
    path = Path(path)
    if not path.is_file():
        raise StreamError(f"no such stream file: {path}")
    try:
        array = np.load(path, allow_pickle=False)
    except ValueError as exc:
        raise StreamError(f"{path} is not a plain .npy array (pickled data is refused): {exc}") from exc
    except EOFError:
        raise StreamError(f"{path} is empty or truncated, not a .npy array") from None
    except OSError as exc:
        raise StreamError(f"cannot read {path}: {exc}") from exc
    if isinstance(array, np.lib.npyio.NpzFile):
        array.close()
        raise StreamError(f"{path} is an .npz archive; a stream is a single .npy array")
    return check_stream(array)


def is_v2(stream: np.ndarray) -> bool:
    """Whether a checked stream is of version 2."""
    return stream.dtype == STREAM_V2_DTYPE


def save_array(path: str | Path, array: np.ndarray) -> None:
    """Write ``array`` as a plain .npy file (never pickled)."""
    np.save(Path(path), array, allow_pickle=False)
