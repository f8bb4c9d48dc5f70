"""The tick tables, in one place: their columns with Arrow and kdb+ types, and the capture of
journal entries into rows.

Tables
------
``trade``: one row per fill, from each `Trade` a command published.
``quote``: one row per change of the top of book, from each `Quote` a command published.
`DepthUpdate` messages are not stored.

======== ===================== ==== ===================================================
column   Arrow                 kdb+ meaning
======== ===================== ==== ===================================================
**trade**
time     timestamp[ns, UTC]    n    exchange time of the command (`JournalEntry.time`)
sym      dictionary<string>    s    the instrument
price    float64               f    currency units: ticks / the instrument's price_scale
size     int64                 j    lots
trade_id int64                 j    the book's trade number for the symbol (1, 2, 3 ...)
side     string                c    the aggressor: "B" buy, "S" sell
shard    dictionary<string>    s    the order book shard whose journal holds the command
sequence int64                 j    that shard's sequence number of the command
**quote**
time     timestamp[ns, UTC]    n    as above
sym      dictionary<string>    s
bid      float64               f    best bid, currency units; NaN for an empty side
ask      float64               f    best ask, currency units; NaN for an empty side
bsize    int64                 j    lots at the best bid; 0 for an empty side
asize    int64                 j    lots at the best ask; 0 for an empty side
shard    dictionary<string>    s
sequence int64                 j
======== ===================== ==== ===================================================

Invariants
----------
- ``time`` and ``sym`` are the first two columns of every table (kx's tick.q refuses any
  other schema, and every query filters on them).
- Rows of a batch are in shard ``sequence`` order; all rows of one command share its
  sequence and its time, and a command touches one symbol. So ``(shard, sequence)``
  identifies the command, ``(shard, sequence)`` a quote row and ``(sym, trade_id)`` a
  trade row.
- The kdb+ ``time`` is a timespan: the time of day (UTC) of the exchange time. The date
  is the tickerplant's partition (see `database.ticks.kdb`). The Arrow ``time`` keeps the
  whole timestamp.

Nothing else in the project lists these columns: backends, queries and ``schema.q``
(checked by the tests) follow `TABLES`.

Backends
--------
A backend (`open_backend`) has ``upd(table, rows, shard, through_sequence) -> rows written``,
which skips rows at or below the table's watermark for the shard and moves it to
``through_sequence``, and ``watermark(table, shard)``, the highest sequence it holds durably
(0: none): a recorder resumes after the lowest watermark of its stores and acknowledges the
journal up to it. ``upd`` raises `BackendUnavailable` when it cannot take the batch now
(nothing of it is taken: call again later with the same rows).
"""

from collections.abc import Iterable, Mapping
from typing import NamedTuple

import numpy as np
import pyarrow as pa

from servers.protocol import JournalEntry, Quote, Trade

SYMBOL = pa.dictionary(pa.int32(), pa.string())
"""An interned string, as a kdb+ symbol: the distinct values once, an int32 code per row."""
TIME = pa.timestamp("ns", tz="UTC")
DAY_NS = 86_400 * 10**9


class Column(NamedTuple):
    name: str
    arrow: pa.DataType
    kdb: str
    """The kdb+ type character (``meta`` column ``t``): n timespan, s symbol, f float, j long, c char."""


TABLES: dict[str, tuple[Column, ...]] = {
    "trade": (
        Column("time", TIME, "n"),
        Column("sym", SYMBOL, "s"),
        Column("price", pa.float64(), "f"),
        Column("size", pa.int64(), "j"),
        Column("trade_id", pa.int64(), "j"),
        Column("side", pa.string(), "c"),
        Column("shard", SYMBOL, "s"),
        Column("sequence", pa.int64(), "j"),
    ),
    "quote": (
        Column("time", TIME, "n"),
        Column("sym", SYMBOL, "s"),
        Column("bid", pa.float64(), "f"),
        Column("ask", pa.float64(), "f"),
        Column("bsize", pa.int64(), "j"),
        Column("asize", pa.int64(), "j"),
        Column("shard", SYMBOL, "s"),
        Column("sequence", pa.int64(), "j"),
    ),
}
SIDES = ("B", "S")
"""The aggressor's side by `engine.types.Side` value (BUY 0, SELL 1)."""


def arrow_schema(table: str) -> pa.Schema:
    """The Arrow schema of ``table``; KeyError for a table that does not exist."""
    return pa.schema([pa.field(column.name, column.arrow, nullable=False) for column in TABLES[table]])


def check_rows(table: str, rows: pa.Table) -> None:
    """Raise ValueError unless ``rows`` has exactly ``table``'s columns and types, in order."""
    if table not in TABLES:
        raise ValueError(f"no tick table {table!r} (tables: {', '.join(TABLES)})")
    expected = arrow_schema(table)
    if not rows.schema.equals(expected, check_metadata=False):
        raise ValueError(f"rows for {table} have schema {rows.schema}, expected {expected}")


def rows_from_entries(shard: str, entries: Iterable[JournalEntry],
                      price_scales: Mapping[str, int]) -> dict[str, pa.Table]:
    """The ``trade`` and ``quote`` rows of ``entries`` of shard ``shard``: the capture.

    Every `Trade` in an entry's ``market_data`` is a trade row and every `Quote` a quote
    row, stamped with the entry's time and sequence (every message of a command carries
    the command's time); `DepthUpdate` is skipped. The live recorder and the replay of
    old journals both call this, so both store the same rows.

    Parameters
    ----------
    shard
        The name of the shard whose journal the entries come from.
    entries
        Consecutive journal entries, in sequence order.
    price_scales
        Ticks per currency unit by symbol (the instruments' ``price_scale``).

    Returns
    -------
    dict
        ``{"trade": pa.Table, "quote": pa.Table}`` with the `arrow_schema` of each, rows in
        sequence order (either may be empty).

    Raises
    ------
    ValueError
        A symbol without a price scale, or entries out of sequence order.
    """
    t_time, t_sym, t_price, t_size, t_id, t_side, t_seq = [], [], [], [], [], [], []
    q_time, q_sym, q_bid, q_bsize, q_ask, q_asize, q_seq = [], [], [], [], [], [], []
    last = None
    for entry in entries:
        sequence, stamp = entry.sequence, entry.time
        if last is not None and sequence <= last:
            raise ValueError(f"journal entries out of order: sequence {sequence} after {last}")
        last = sequence
        for message in entry.market_data:
            kind = type(message)
            if kind is Trade:
                t_time.append(stamp)
                t_sym.append(message.symbol)
                t_price.append(message.price)
                t_size.append(message.quantity)
                t_id.append(message.trade_id)
                t_side.append(SIDES[message.aggressor])
                t_seq.append(sequence)
            elif kind is Quote:
                q_time.append(stamp)
                q_sym.append(message.symbol)
                q_bid.append(message.bid_price)
                q_bsize.append(message.bid_quantity)
                q_ask.append(message.ask_price)
                q_asize.append(message.ask_quantity)
                q_seq.append(sequence)
    trade_scale = _scales(t_sym, price_scales)
    quote_scale = _scales(q_sym, price_scales)
    bsize = np.array(q_bsize, dtype=np.int64)
    asize = np.array(q_asize, dtype=np.int64)
    return {
        "trade": _table("trade", [
            _time(t_time), _symbols(t_sym), np.array(t_price, dtype=np.int64) / trade_scale,
            np.array(t_size, dtype=np.int64), np.array(t_id, dtype=np.int64), pa.array(t_side, pa.string()),
            _constant(shard, len(t_seq)), np.array(t_seq, dtype=np.int64),
        ]),
        "quote": _table("quote", [
            _time(q_time), _symbols(q_sym),
            np.where(bsize > 0, np.array(q_bid, dtype=np.int64) / quote_scale, np.nan),
            np.where(asize > 0, np.array(q_ask, dtype=np.int64) / quote_scale, np.nan),
            bsize, asize, _constant(shard, len(q_seq)), np.array(q_seq, dtype=np.int64),
        ]),
    }


class BackendUnavailable(RuntimeError):
    """A backend cannot take a batch now (a tickerplant out of reach); try again later."""


def open_backend(config):
    """The backend ``config`` (a `config.settings.TicksConfig`) names: a `KdbTickerplant`
    when ``kdb_host`` is set, else the embedded `TickStore` in ``root``."""
    if config.kdb_host:
        from database.ticks.kdb import KdbTickerplant

        return KdbTickerplant.from_config(config)
    from database.ticks.store import TickStore

    return TickStore(config.root)


def record(backend, shard: str, entries: list[JournalEntry], price_scales: Mapping[str, int]) -> dict[str, int]:
    """Capture ``entries`` and hand every table's rows to ``backend.upd``: live and replay alike.

    Each table's watermark moves to the last entry's sequence even when the entries gave it
    no rows. Returns the rows each backend call wrote (0 for a range already stored).
    """
    if not entries:
        return {table: 0 for table in TABLES}
    through = entries[-1].sequence
    rows = rows_from_entries(shard, entries, price_scales)
    return {table: backend.upd(table, rows[table], shard, through) for table in TABLES}


def _scales(symbols: list[str], price_scales: Mapping[str, int]) -> np.ndarray:
    scales = {}
    for symbol in set(symbols):
        try:
            scales[symbol] = price_scales[symbol]
        except KeyError:
            raise ValueError(f"no price_scale for symbol {symbol!r}") from None
    return np.array([scales[symbol] for symbol in symbols], dtype=np.float64)


def _time(stamps: list[int]) -> pa.Array:
    return pa.array(np.array(stamps, dtype=np.int64).view("datetime64[ns]"), TIME)


def _symbols(values: list[str]) -> pa.Array:
    return pa.array(values, pa.string()).dictionary_encode()


def _constant(value: str, length: int) -> pa.Array:
    return pa.DictionaryArray.from_arrays(pa.array(np.zeros(length, dtype=np.int32)), pa.array([value]))


def _table(table: str, arrays: list) -> pa.Table:
    return pa.Table.from_arrays([pa.array(a) if isinstance(a, np.ndarray) else a for a in arrays],
                                schema=arrow_schema(table))
