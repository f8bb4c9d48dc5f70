"""Journal entries applied into the transactional database: sustained trades per second.

`flow` makes the recorder's input the way an order book server makes it (commands through a
real `servers.shard.Shard`, each entry decoded from its journal payload): per four entries,
one resting order on each side and one marketable IOC order on each side that trades with
the oldest order at the best opposite price, so half the entries fill (one trade each) and
the book keeps its depth (``depth`` resting orders a side, entered before timing starts).
Twenty accounts trade two symbols; the entries span two UTC days.

Per engine and run, each into a new database:

- `apply_run`: the timed entries through `Applier.apply` in the recorder's batches
  (`servers.recorder.BATCH` entries): trades and entries per second. The database's rows
  must then be exactly what the flow produced (`expected_rows`), or the run fails;
- `writer_run`: the same batches' rows, made beforehand (`translation`), through the writer
  alone, in the same transactions: what the database takes with nothing else to do, the
  floor of `apply_run` for this schema on this machine. Its rows are checked the same way.

`translation` also times Python's part alone (reading nothing, writing nothing: what
`apply` does between its statements). `run` measures SQLite and, if a server answers,
PostgreSQL, ``repeats`` runs of each (apply and writer alternating, so the machine's other
load falls on both), and reports the medians.
"""

import copy
import gc
import statistics
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import msgspec
import psycopg
from sqlalchemy import Engine, func, select, text
from sqlalchemy.engine import URL, make_url

from database import writing
from database.models import Execution, Order, OrderEvent
from database.recording import Applier, Batch
from database.store import database_url, open_store, transaction
from engine.messages import CancelRejected, OrderFilled, OrderRejected, ReplaceRejected
from engine.progress import Task
from engine.types import OrderType, RejectReason, Side, TimeInForce
from servers.protocol import BookSubmit, JournalEntry
from servers.recorder import BATCH
from servers.shard import Shard

POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"
"""Where `run` looks for a PostgreSQL server (it makes and drops its own databases there)."""
TARGET_TRADES_PER_S = 50_000
"""Into PostgreSQL, on the project's two-core development machine."""
SYMBOLS = ("ACME", "BOLT")
ACCOUNTS = tuple(f"trader{n:02}" for n in range(20))
DEPTH = 2_000
"""Resting orders a side per symbol before timing starts (fewer for short runs: `run`)."""
START = 1_796_083_200_000_000_000
"""2026-12-01T00:00:00Z."""
SHARD = "A"
_decode = msgspec.msgpack.Decoder(JournalEntry).decode


def flow(entries: int, depth: int = DEPTH, days: int = 2) -> tuple[list[JournalEntry], list[JournalEntry]]:
    """(warm-up entries that build the books, ``entries`` timed entries of which half fill)."""
    shard = Shard.empty(list(SYMBOLS))
    step = days * 86_400_000_000_000 // (entries + 2 * depth * len(SYMBOLS))
    made: list[JournalEntry] = []
    counter = 0

    def submit(symbol: str, side: Side, tif: TimeInForce, price: int) -> None:
        nonlocal counter
        counter += 1
        command = BookSubmit(symbol, (1 << 48) | counter, side, OrderType.LIMIT, tif, price, 10,
                             ACCOUNTS[counter % len(ACCOUNTS)])
        sequence = len(made) + 1
        payload, _, _ = shard.execute(sequence, START + sequence * step, command, [])
        made.append(_decode(payload))

    for level in range(depth):
        for symbol in SYMBOLS:
            submit(symbol, Side.BUY, TimeInForce.GTC, 9_990 - level % 10)
            submit(symbol, Side.SELL, TimeInForce.GTC, 10_010 + level % 10)
    warm_up = len(made)
    for n in range(entries // 4):
        symbol = SYMBOLS[n % len(SYMBOLS)]
        offset = n % 10
        submit(symbol, Side.BUY, TimeInForce.GTC, 9_990 - offset)
        submit(symbol, Side.SELL, TimeInForce.GTC, 10_010 + offset)
        submit(symbol, Side.BUY, TimeInForce.IOC, 10_100)
        submit(symbol, Side.SELL, TimeInForce.IOC, 9_900)
    return made[:warm_up], made[warm_up:]


def expected_rows(entries: Sequence[JournalEntry]) -> dict[str, int]:
    """The rows of the three big tables that ``entries`` (from the first sequence on) become, by
    `database.recording`'s rules, counted from the events themselves."""
    orders, history, trades = set(), 0, 0
    for entry in entries:
        for event in entry.events:
            kind = type(event)
            if kind is OrderFilled:
                history += 2
                trades += 1
            elif kind is OrderRejected and event.reason == RejectReason.DUPLICATE_ORDER_ID:
                continue
            elif kind is not CancelRejected and kind is not ReplaceRejected:
                history += 1
        if type(entry.command) is BookSubmit:
            orders.add(entry.command.order_id)
    return {"orders": len(orders), "order_events": history, "executions": trades}


def counted_rows(engine: Engine) -> dict[str, int]:
    with transaction(engine, write=False) as connection:
        return {model.__tablename__: connection.execute(select(func.count()).select_from(model)).scalar()
                for model in (Order, OrderEvent, Execution)}


def _parts(entries: Sequence[JournalEntry], size: int) -> Iterator[Sequence[JournalEntry]]:
    for start in range(0, len(entries), size):
        yield entries[start:start + size]


def apply_run(engine: Engine, warm_up: list[JournalEntry], timed: list[JournalEntry], batch: int) -> dict:
    """Apply ``warm_up``, then time applying ``timed`` in batches of ``batch`` into ``engine``'s database."""
    applier = Applier(engine)
    for part in _parts(warm_up, batch):
        applier.apply(SHARD, part)
    gc.collect()
    started = time.perf_counter()
    for part in _parts(timed, batch):
        applier.apply(SHARD, part)
    seconds = time.perf_counter() - started
    return _figures(seconds, timed, engine, warm_up + timed)


Made = list[tuple[list[tuple], Batch]]
"""Batches' rows made beforehand: each batch's order history and the rest of it (`translation`)."""


def translation(warm_up: list[JournalEntry], timed: list[JournalEntry], batch: int) -> tuple[float, Made, Made]:
    """Seconds Python takes to make the rows of ``timed`` (after ``warm_up``) as `Applier.apply`
    does, from an empty database, writing nothing; and the rows of ``warm_up``'s batches and of
    ``timed``'s, the orders as each batch left them."""
    engine = open_store("sqlite:///:memory:")
    applier = Applier(engine)
    seconds = 0.0
    made: dict[bool, Made] = {False: [], True: []}
    try:
        with transaction(engine) as connection:
            for timing, entries in ((False, warm_up), (True, timed)):
                for part in _parts(entries, batch):
                    history: list[tuple] = []
                    gc.disable()  # as `apply` does
                    started = time.perf_counter()
                    applier.read_orders(connection, part)
                    rows = applier.translate(SHARD, part, history.append)
                    applier.read_positions(connection, rows)
                    applier.book(rows, _ignore)
                    if timing:
                        seconds += time.perf_counter() - started
                    gc.enable()
                    rows.inserted = {order_id: copy.copy(order) for order_id, order in rows.inserted.items()}
                    rows.updated = {order_id: copy.copy(order) for order_id, order in rows.updated.items()}
                    made[timing].append((history, rows))
    finally:
        engine.dispose()
    return seconds, made[False], made[True]


def _ignore(_row: tuple) -> None:
    pass


def writer_run(engine: Engine, warm_made: Made, timed_made: Made, warm_up: list[JournalEntry],
               timed: list[JournalEntry]) -> dict:
    """Write the rows `translation` made through ``engine``'s writer, one transaction a batch,
    timing ``timed_made`` (the rows of ``timed``, after those of ``warm_up``)."""
    writer = writing.writer(engine.dialect.name)

    def write(made: Made) -> None:
        for history, rows in made:
            gc.disable()
            try:
                with transaction(engine) as connection:
                    with writer.rows(connection, "order_events") as take:
                        for row in history:
                            take(row)
                    with writer.rows(connection, "executions") as take:
                        for row in rows.executions:
                            take(row)
                    writer.write(connection, rows)
            finally:
                gc.enable()

    write(warm_made)
    gc.collect()
    started = time.perf_counter()
    write(timed_made)
    return _figures(time.perf_counter() - started, timed, engine, warm_up + timed)


def _figures(seconds: float, timed: list[JournalEntry], engine: Engine, everything: list[JournalEntry]) -> dict:
    rows, expected = counted_rows(engine), expected_rows(everything)
    if rows != expected:
        raise AssertionError(f"the database holds {rows}, the entries make {expected}")
    trades = expected_rows(timed)["executions"]
    return {"seconds": round(seconds, 3), "trades_per_s": round(trades / seconds),
            "entries_per_s": round(len(timed) / seconds), "rows": rows}


@contextmanager
def fresh_database(kind: str, server: str) -> Iterator[Engine]:
    """An engine on a new database: SQLite in a temporary directory (WAL, synchronous FULL, as
    `database.store` opens it), or PostgreSQL on ``server`` (made for the block, dropped after)."""
    if kind == "sqlite":
        with tempfile.TemporaryDirectory() as directory:
            engine = open_store(f"sqlite:///{Path(directory) / 'bench.sqlite'}")
            try:
                yield engine
            finally:
                engine.dispose()
        return
    with scratch_database(server) as url:
        engine = open_store(url)
        try:
            yield engine
        finally:
            engine.dispose()


class scratch_database:
    """A database made on the server of ``server`` for the duration of a ``with`` block."""

    def __init__(self, server: str) -> None:
        self.server = database_url(server)
        self.name = f"exchange_bench_{uuid.uuid4().hex[:12]}"

    def __enter__(self) -> URL:
        self.admin = psycopg.connect(_conninfo(self.server), autocommit=True, connect_timeout=5)
        self.admin.execute(f'CREATE DATABASE "{self.name}"')
        return self.server.set(database=self.name)

    def __exit__(self, *_) -> None:
        with self.admin:
            self.admin.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


def _conninfo(url: URL) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def engine_figures(kind: str, server: str, warm_up: list[JournalEntry], timed: list[JournalEntry],
                   made: tuple[Made, Made], batch: int, repeats: int, shown: Task) -> dict:
    """``repeats`` runs of `apply_run` and of `writer_run` into ``kind``'s databases, alternating: the
    medians, and every run. ``shown`` advances by one per run."""
    applied, written = [], []
    for number in range(1, repeats + 1):
        shown.note(f"{kind}, run {number} of {repeats}")
        with fresh_database(kind, server) as engine:
            applied.append(apply_run(engine, warm_up, timed, batch))
            version = _version(engine)
        shown.advance()
        with fresh_database(kind, server) as engine:
            written.append(writer_run(engine, *made, warm_up, timed))
        shown.advance()
    rate = statistics.median(run["trades_per_s"] for run in applied)
    floor = statistics.median(run["trades_per_s"] for run in written)
    return {"engine": kind, "version": version, "trades_per_s": round(rate),
            "entries_per_s": round(statistics.median(run["entries_per_s"] for run in applied)),
            "writer_alone_trades_per_s": round(floor), "of_writer_alone": round(rate / floor, 3),
            "rows": applied[-1]["rows"], "runs": applied, "writer_runs": written}


def _version(engine: Engine) -> str:
    with transaction(engine, write=False) as connection:
        if engine.dialect.name == "sqlite":
            return "SQLite " + connection.execute(text("SELECT sqlite_version()")).scalar()
        return "PostgreSQL " + connection.execute(text("SHOW server_version")).scalar().split()[0]


def run(trades: int, repeats: int, server: str, shown: Task, batch: int = BATCH) -> dict:
    """``trades`` trades (twice as many entries) into SQLite and, if a server answers at ``server``,
    PostgreSQL: `engine_figures` of each, and Python's part alone (`translation`). ``shown`` advances
    by 1 + 4 * ``repeats``: the entries made and timed alone, then each database's runs."""
    shown.note("journal entries")
    warm_up, timed = flow(2 * trades, depth=min(DEPTH, max(1, trades // 50)))
    seconds, *made = translation(warm_up, timed, batch)
    trades = expected_rows(timed)["executions"]
    shown.advance()
    report = {"trades": trades, "entries": len(timed), "batch": batch, "repeats": repeats,
              "target_trades_per_s": TARGET_TRADES_PER_S,
              "translation": {"seconds": round(seconds, 3), "trades_per_s": round(trades / seconds)},
              "sqlite": engine_figures("sqlite", server, warm_up, timed, made, batch, repeats, shown)}
    done = shown.done
    try:
        report["postgresql"] = engine_figures("postgresql", server, warm_up, timed, made, batch, repeats, shown)
    except psycopg.OperationalError as exc:
        report["postgresql"] = {"skipped": f"no server at {server}: {' '.join(str(exc).split())}"}
        shown.update(done + 2 * repeats)
    return report
