"""Journal entries applied into the transactional database: sustained trades per second.

`flow` makes the recorder's input the way an order book server makes it (commands through a
real `servers.shard.Shard`, each entry decoded from its journal payload): per four entries,
one resting order on each side and one marketable IOC order on each side that trades with
the oldest order at the best opposite price, so half the entries fill (one trade each) and
the book keeps its depth (``depth`` resting orders a side, entered before timing starts).
Twenty accounts trade two symbols; the entries span two UTC days.

`apply_rate` applies the timed entries in batches of ``batch`` (the recorder's shape) into a
new database and reports trades and entries per second, the share of the time spent turning
entries into rows (`Applier.translate`, pure Python, measured separately on the same entries)
and the database's row counts afterwards, which must match what the flow produced.
`run` measures SQLite and, if a server is reachable, PostgreSQL with each bulk method.
"""

import gc
import tempfile
import time
import uuid
from pathlib import Path

import msgspec
import psycopg
from sqlalchemy import Engine, func, select
from sqlalchemy.engine import URL, make_url

from benchmarks.book import machine
from database.models import Execution, Order, OrderEvent
from database.recording import Applier
from database.store import database_url, open_store, transaction
from engine.types import OrderType, Side, TimeInForce
from servers.protocol import BookSubmit, JournalEntry
from servers.shard import Shard

POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"
"""Where `run` looks for a PostgreSQL server (it makes and drops its own database there)."""
TARGET_TRADES_PER_S = 50_000
"""Into PostgreSQL, on the project's two-core development machine."""
SYMBOLS = ("ACME", "BOLT")
ACCOUNTS = tuple(f"trader{n:02}" for n in range(20))
START = 1_796_083_200_000_000_000
"""2026-12-01T00:00:00Z."""
_decode = msgspec.msgpack.Decoder(JournalEntry).decode


def flow(entries: int, depth: int = 2_000, days: int = 2) -> tuple[list[JournalEntry], list[JournalEntry]]:
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


def apply_rate(engine: Engine, warm_up: list[JournalEntry], timed: list[JournalEntry], batch: int = 1_000) -> dict:
    """Apply ``warm_up``, then time applying ``timed`` in batches of ``batch`` into ``engine``'s database."""
    applier = Applier(engine)
    for start in range(0, len(warm_up), batch):
        applier.apply("A", warm_up[start:start + batch])
    trades = sum(1 for entry in timed for event in entry.events if type(event).__name__ == "OrderFilled")
    gc.collect()
    started = time.perf_counter()
    for start in range(0, len(timed), batch):
        applier.apply("A", timed[start:start + batch])
    seconds = time.perf_counter() - started
    with transaction(engine, write=False) as connection:
        rows = {model.__tablename__: connection.execute(select(func.count()).select_from(model)).scalar()
                for model in (Order, OrderEvent, Execution)}
    expected_orders = len(warm_up) + len(timed)
    if rows["executions"] != trades or rows["orders"] != expected_orders:
        raise AssertionError(f"the database holds {rows}, expected {trades} executions and {expected_orders} orders")
    return {"trades": trades, "entries": len(timed), "batch": batch, "seconds": round(seconds, 3),
            "trades_per_s": round(trades / seconds), "entries_per_s": round(len(timed) / seconds),
            "translate_share": round(translate_seconds(warm_up, timed, batch) / seconds, 3), "rows": rows}


def translate_seconds(warm_up: list[JournalEntry], timed: list[JournalEntry], batch: int) -> float:
    """Seconds `Applier.translate` takes for ``timed`` (after ``warm_up``), writing nothing."""
    engine = open_store("sqlite:///:memory:")
    try:
        applier = Applier(engine)
        with transaction(engine) as connection:
            for start in range(0, len(warm_up), batch):
                applier.translate(connection, "A", warm_up[start:start + batch])
            gc.collect()
            started = time.perf_counter()
            for start in range(0, len(timed), batch):
                applier.translate(connection, "A", timed[start:start + batch])
            return time.perf_counter() - started
    finally:
        engine.dispose()


def sqlite(entries: int = 100_000, batch: int = 1_000) -> dict:
    """Into a new SQLite file (WAL, synchronous FULL, as `database.store` opens it) in a temporary directory."""
    warm_up, timed = flow(entries)
    with tempfile.TemporaryDirectory() as directory:
        engine = open_store(f"sqlite:///{Path(directory) / 'bench.sqlite'}")
        try:
            return {"engine": "sqlite"} | apply_rate(engine, warm_up, timed, batch)
        finally:
            engine.dispose()


def postgresql(server: str = POSTGRES_URL, entries: int = 100_000, batch: int = 1_000) -> dict:
    """Into a new database on the PostgreSQL server of ``server`` (made for the run, dropped after it)."""
    warm_up, timed = flow(entries)
    with scratch_database(server) as url:
        engine = open_store(url)
        try:
            return {"engine": "postgresql"} | apply_rate(engine, warm_up, timed, batch)
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


def run(entries: int = 100_000, batch: int = 1_000, server: str = POSTGRES_URL) -> dict:
    """Both engines (PostgreSQL only if a server answers at ``server``)."""
    report = {"machine": machine(), "target_trades_per_s": TARGET_TRADES_PER_S,
              "sqlite": sqlite(entries, batch)}
    try:
        report["postgresql"] = postgresql(server, entries, batch)
    except psycopg.OperationalError as exc:
        report["postgresql"] = {"skipped": f"no server at {server}: {' '.join(str(exc).split())}"}
    return report
