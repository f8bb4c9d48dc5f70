"""The order stream and fill file formats (single symbol, NumPy ``.npy``, no pickle).

A stream record is one message; a new order (kinds LIMIT_GTC, MARKET, LIMIT_IOC,
LIMIT_FOK) takes the message's ``order_id`` as its id, cancel and replace act on
``target_id``. A market message is a market IOC order. Fills are written in the
order they happen, one record each, at the maker's price.
"""

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

LIMIT_GTC = 0
MARKET = 1
CANCEL = 2
REPLACE = 3
LIMIT_IOC = 4
LIMIT_FOK = 5


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
    """Return ``stream`` as a C-contiguous STREAM_DTYPE array, or raise StreamError."""
    if not isinstance(stream, np.ndarray):
        raise StreamError(f"expected a NumPy array, got {type(stream).__name__}")
    if stream.dtype != STREAM_DTYPE:
        raise StreamError(f"wrong dtype {stream.dtype}; a stream needs {STREAM_DTYPE}")
    if stream.ndim != 1:
        raise StreamError(f"a stream is one-dimensional, this array has shape {stream.shape}")
    return np.ascontiguousarray(stream)


def load_stream(path: str | Path) -> np.ndarray:
    """Read a stream file, refusing pickles and anything not of STREAM_DTYPE."""
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


def save_array(path: str | Path, array: np.ndarray) -> None:
    """Write ``array`` as a plain .npy file (never pickled)."""
    np.save(Path(path), array, allow_pickle=False)
