"""Tick store benchmarks: each function measures one thing and returns a dict.

- `record_store`: fills/s through the recorder's own path into the embedded store
  (`database.ticks.schema.record`: journal entries captured into rows and written with
  `TickStore.upd`, in the recorder's batches of `servers.recorder.BATCH` entries, each
  fsynced), one trade and the quote after it per entry;
- `write_store`: ticks/s written into the embedded store (`TickStore.upd` alone), batches of 10,000;
- `write_ipc`: ticks/s published over kdb+ IPC (`KdbTickerplant`) to the loopback stand-in
  until it confirmed them all, and the publisher's own CPU per tick (the stand-in decodes
  in pure Python in another process: it, not the publisher, sets the rate);
- `bars`: 1-minute OHLCV bars over 10 million trades, DuckDB on the store against pandas;
- `asof_join`: 1 million trades joined to the prevailing quote among 10 million, DuckDB's
  ASOF JOIN on the store against pandas ``merge_asof``.

The data come from `synthetic_ticks` (a fixed seed: the same arguments give the same rows).
Every function checks what it wrote or computed (the rows the store or the stand-in holds,
DuckDB's answer against pandas') and fails if it differs. pandas is timed on a DataFrame
already in memory (its load from Parquet is reported apart), DuckDB from the Parquet files
(in the page cache after writing) after a first run of the query, so the pandas figure is
its best case; each query's figure is the median of ``repeats`` runs.
"""

import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from database.ticks.schema import arrow_schema
from engine.progress import Task
from servers.protocol import BookSubmit, JournalEntry, Quote, Trade
from servers.recorder import BATCH

START = 1_714_521_600 * 10**9
"""2024-05-01 00:00 UTC: synthetic days start here."""
SYMBOLS = ("ACME", "BOLT", "CRUX", "DYNE", "ECHO", "FLUX", "GRIT", "HALO")
PRICE_SCALE = 100
MINUTE = 60 * 10**9
FIGURES = ("record_store", "write_store", "write_ipc", "bars", "asof_join")
"""What `run` measures, in this order."""


def synthetic_ticks(trades: int, quotes: int, seed: int = 42, symbols=SYMBOLS, shard: str = "A",
                    start: int = START, seconds: float = 6.5 * 3600) -> dict[str, pa.Table]:
    """``trades`` trade rows and ``quotes`` quote rows of one shard, as its journal would give them.

    One command stream over ``seconds`` of one day from ``start``: each command a trade or
    a quote (shuffled), on a random symbol, at a time that never goes back, with the next
    shard sequence; prices a random walk in ticks per symbol (``PRICE_SCALE`` per unit),
    quotes one to three ticks either side of it. Deterministic in ``seed``.
    """
    rng = np.random.default_rng(seed)
    count = trades + quotes
    is_trade = np.zeros(count, dtype=bool)
    is_trade[rng.choice(count, size=trades, replace=False)] = True
    stamps = start + np.sort(rng.integers(0, int(seconds * 1e9), size=count, dtype=np.int64))
    sym_codes = rng.integers(0, len(symbols), size=count, dtype=np.int32)
    steps = rng.choice(np.array([-1, 0, 0, 1], dtype=np.int64), size=count)
    mid = np.empty(count, dtype=np.int64)
    for code in range(len(symbols)):
        mask = sym_codes == code
        mid[mask] = 10_000 + np.cumsum(steps[mask])
    sequences = np.arange(1, count + 1, dtype=np.int64)
    dictionary = pa.array(list(symbols))
    t, q = is_trade, ~is_trade
    trade_ids = np.empty(trades, dtype=np.int64)
    trade_codes = sym_codes[t]
    for code in range(len(symbols)):
        mask = trade_codes == code
        trade_ids[mask] = np.arange(1, mask.sum() + 1)
    half_spread = rng.integers(1, 4, size=quotes)

    def symbol_column(codes):
        return pa.DictionaryArray.from_arrays(pa.array(codes), dictionary)

    def shard_column(length):
        return pa.DictionaryArray.from_arrays(pa.array(np.zeros(length, dtype=np.int32)), pa.array([shard]))

    def time_column(values):
        return pa.array(values.view("datetime64[ns]"), arrow_schema("trade").field("time").type)

    sides = np.where(rng.integers(0, 2, size=trades) == 0, "B", "S")
    trade = pa.Table.from_arrays([
        time_column(stamps[t]), symbol_column(trade_codes), pa.array(mid[t] / PRICE_SCALE),
        pa.array(rng.integers(1, 100, size=trades, dtype=np.int64)), pa.array(trade_ids),
        pa.array(sides, pa.string()), shard_column(trades), pa.array(sequences[t]),
    ], schema=arrow_schema("trade"))
    quote = pa.Table.from_arrays([
        time_column(stamps[q]), symbol_column(sym_codes[q]), pa.array((mid[q] - half_spread) / PRICE_SCALE),
        pa.array((mid[q] + half_spread) / PRICE_SCALE), pa.array(rng.integers(1, 500, size=quotes, dtype=np.int64)),
        pa.array(rng.integers(1, 500, size=quotes, dtype=np.int64)), shard_column(quotes), pa.array(sequences[q]),
    ], schema=arrow_schema("quote"))
    return {"trade": trade, "quote": quote}


def synthetic_entries(count: int, seed: int = 42, symbols=SYMBOLS) -> list[JournalEntry]:
    """``count`` journal entries, each with one trade and the quote after it (for `capture`)."""
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, len(symbols), size=count).tolist()
    prices = (10_000 + rng.integers(-50, 50, size=count)).tolist()
    command = BookSubmit(symbols[0], 1, 0, 0, 0, 10_000, 1)
    return [
        JournalEntry(i + 1, START + i * 1000, command, [], [
            Trade(symbols[code], 2 * i + 1, i + 1, price, 5, i % 2, START + i * 1000),
            Quote(symbols[code], 2 * i + 2, price - 1, 10, price + 1, 10, START + i * 1000),
        ])
        for i, (code, price) in enumerate(zip(codes, prices, strict=True))
    ]


def _batches(rows: pa.Table, size: int):
    for offset in range(0, len(rows), size):
        batch = rows.slice(offset, size)
        yield batch, batch.column("sequence")[-1].as_py()


def write_store(ticks: int = 1_000_000, batch: int = 10_000) -> dict:
    """Trades written into a fresh embedded store in ``batch``-row `upd` calls (each fsynced)."""
    from database.ticks.store import TickStore, table_files

    rows = synthetic_ticks(ticks, 0)["trade"]
    with tempfile.TemporaryDirectory() as directory, TickStore(directory) as store:
        began = time.perf_counter()
        for part, through in _batches(rows, batch):
            store.upd("trade", part, "A", through)
        seconds = time.perf_counter() - began
        held = sum(pq.read_metadata(path).num_rows for path in table_files(Path(directory), "trade"))
    if held != ticks:
        raise AssertionError(f"the store holds {held} trades, {ticks} were written")
    return {"ticks": ticks, "batch": batch, "seconds": round(seconds, 3), "ticks_per_s": round(ticks / seconds)}


def record_store(fills: int = 1_000_000, batch: int = BATCH) -> dict:
    """Journal entries (one trade and one quote each) recorded into a fresh embedded store the
    way the recorder does, ``batch`` entries a call; the store must then hold every row."""
    from database.ticks.schema import record
    from database.ticks.store import TickStore, table_files

    stream = synthetic_entries(fills)
    scales = dict.fromkeys(SYMBOLS, PRICE_SCALE)
    with tempfile.TemporaryDirectory() as directory:
        with TickStore(Path(directory) / "warm-up") as store:
            record(store, "A", stream[:batch], scales)  # the first call's one-off set-up, untimed
        root = Path(directory) / "store"
        with TickStore(root) as store:
            began = time.perf_counter()
            for offset in range(0, fills, batch):
                record(store, "A", stream[offset:offset + batch], scales)
            seconds = time.perf_counter() - began
        held = {table: sum(pq.read_metadata(path).num_rows for path in table_files(root, table))
                for table in ("trade", "quote")}
    if held != {"trade": fills, "quote": fills}:
        raise AssertionError(f"the store holds {held} rows, {fills} of each were recorded")
    return {"fills": fills, "batch": batch, "seconds": round(seconds, 3), "fills_per_s": round(fills / seconds),
            "rows": held}


def write_ipc(ticks: int = 200_000, batch: int = 10_000, confirm_every: int = 8) -> dict:
    """Trades published to the kdb+ IPC stand-in (a separate process) until it confirms them all."""
    from database.ticks.kdb import KdbTickerplant
    from database.ticks.standin import StandIn

    rows = synthetic_ticks(ticks, 0)["trade"]
    with tempfile.TemporaryDirectory() as directory, StandIn() as standin:
        publisher = KdbTickerplant("127.0.0.1", standin.port, state_path=Path(directory) / "kdb.json",
                                   confirm_every=confirm_every)
        began, cpu = time.perf_counter(), time.process_time()
        for part, through in _batches(rows, batch):
            publisher.upd("trade", part, "A", through)
        publisher.close()
        seconds, cpu = time.perf_counter() - began, time.process_time() - cpu
        received = standin.count("trade")
    if received != ticks:
        raise AssertionError(f"the stand-in received {received} trades, {ticks} were published")
    return {"ticks": ticks, "batch": batch, "confirm_every": confirm_every, "seconds": round(seconds, 3),
            "ticks_per_s": round(ticks / seconds), "publisher_cpu_us_per_tick": round(cpu / ticks * 1e6, 2)}


def _store_with(tables: dict[str, pa.Table], directory: str) -> None:
    """``tables`` written through `upd` in parts of a million rows, then the day compacted."""
    from database.ticks.store import TickStore, day_of

    with TickStore(directory) as store:
        for table, rows in tables.items():
            for part, through in _batches(rows, 1_000_000):
                store.upd(table, part, "A", through)
        store.compact(day_of(START))


def _timed(query, repeats: int) -> tuple[float, object]:
    """The median seconds of ``repeats`` calls of ``query`` and its last answer."""
    seconds, answer = [], None
    for _ in range(repeats):
        began = time.perf_counter()
        answer = query()
        seconds.append(time.perf_counter() - began)
    return statistics.median(seconds), answer


def bars(ticks: int = 10_000_000, interval: int = MINUTE, repeats: int = 3) -> dict:
    """1-minute OHLCV bars of every symbol over ``ticks`` trades: DuckDB against pandas."""
    import pandas as pd

    from database.ticks.queries import TickHistory

    rows = synthetic_ticks(ticks, 0)["trade"]
    with tempfile.TemporaryDirectory() as directory:
        _store_with({"trade": rows}, directory)
        history = TickHistory(directory)
        history.bars(None, interval)
        duck_seconds, duck = _timed(lambda: history.bars(None, interval), repeats)
        history.close()
        began = time.perf_counter()
        frame = pd.read_parquet(Path(directory) / "2024.05.01" / "trade")
        load_seconds = time.perf_counter() - began

    def panda_bars():
        ordered = frame.sort_values(["sym", "trade_id"], kind="stable")
        bucket = ordered["time"].dt.floor(pd.Timedelta(interval, "ns"))
        grouped = ordered.groupby([ordered["sym"].astype(str), bucket], sort=True)
        return grouped.agg(open=("price", "first"), high=("price", "max"), low=("price", "min"),
                           close=("price", "last"), volume=("size", "sum"), trades=("price", "size"))

    pandas_seconds, panda = _timed(panda_bars, repeats)
    if len(panda) != len(duck) or not np.array_equal(panda["close"].to_numpy(), duck.column("close").to_numpy()):
        raise AssertionError(f"DuckDB made {len(duck)} bars and pandas {len(panda)}, or their closes differ")
    if sum(duck.column("trades").to_pylist()) != ticks:
        raise AssertionError(f"the bars count {sum(duck.column('trades').to_pylist())} trades of {ticks}")
    return {"ticks": ticks, "bars": len(duck), "duckdb_s": round(duck_seconds, 3),
            "pandas_s": round(pandas_seconds, 3), "pandas_load_s": round(load_seconds, 3)}


def asof_join(trades: int = 1_000_000, quotes: int = 10_000_000, repeats: int = 3) -> dict:
    """Each trade with its prevailing quote: DuckDB ASOF JOIN against pandas ``merge_asof``."""
    import pandas as pd

    from database.ticks.queries import TickHistory

    tables = synthetic_ticks(trades, quotes)
    with tempfile.TemporaryDirectory() as directory:
        _store_with(tables, directory)
        history = TickHistory(directory)
        history.trades_with_quotes(None)
        duck_seconds, duck = _timed(lambda: history.trades_with_quotes(None), repeats)
        history.close()
        began = time.perf_counter()
        trade = pd.read_parquet(Path(directory) / "2024.05.01" / "trade")
        quote = pd.read_parquet(Path(directory) / "2024.05.01" / "quote", columns=["time", "sym", "bid", "ask",
                                                                                  "bsize", "asize", "sequence"])
        load_seconds = time.perf_counter() - began

    def panda_join():
        # One shard: its sequence orders rows as (time, sequence) does, the order the aj follows.
        left = trade.assign(sym=trade["sym"].astype(str)).sort_values("sequence")
        right = quote.assign(sym=quote["sym"].astype(str)).sort_values("sequence")
        return pd.merge_asof(left, right.drop(columns="time"), on="sequence", by="sym", allow_exact_matches=True)

    pandas_seconds, panda = _timed(panda_join, repeats)
    matched = duck.sort_by([("sym", "ascending"), ("time", "ascending"), ("trade_id", "ascending")])
    expected = panda.sort_values(["sym", "time", "trade_id"], kind="stable")
    if not len(panda) == len(duck) == trades or not np.array_equal(
            expected["bid"].to_numpy(), matched.column("bid").to_numpy(), equal_nan=True):
        raise AssertionError(f"DuckDB joined {len(duck)} trades and pandas {len(panda)} of {trades}, "
                             "or their prevailing bids differ")
    return {"trades": trades, "quotes": quotes, "duckdb_s": round(duck_seconds, 3),
            "pandas_s": round(pandas_seconds, 3), "pandas_load_s": round(load_seconds, 3)}


def run(ticks: int, repeats: int, shown: Task) -> dict:
    """Every figure at ``ticks`` ticks: the bars over ``ticks`` trades, the as-of join of a tenth as
    many trades to ``ticks`` quotes, a tenth as many fills recorded and ticks written into the
    store, a fiftieth as many over IPC. ``shown`` advances by one per figure."""
    measures = {
        "record_store": lambda: record_store(max(1, ticks // 10)),
        "write_store": lambda: write_store(max(1, ticks // 10)),
        "write_ipc": lambda: write_ipc(max(1, ticks // 50)),
        "bars": lambda: bars(ticks, repeats=repeats),
        "asof_join": lambda: asof_join(max(1, ticks // 10), ticks, repeats=repeats),
    }
    report = {}
    for name in FIGURES:
        shown.note(f"tick store: {name.replace('_', ' ')}")
        report[name] = measures[name]()
        shown.advance()
    return report
