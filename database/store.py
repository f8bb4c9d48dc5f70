"""Opening the transactional database: its URL, the engine, the migrations, and its one failure.

`open_store(url)` makes the engine and upgrades the schema to the newest Alembic migration
(``database/migrations``), whoever opens it first: the recorder, the trading engine server
or an admin command. `open_database(config)` opens the configured one and, on first start,
seeds its reference data from the configuration (`database.reference.seed`). Two processes
opening at once are serialized (an advisory lock on PostgreSQL, the write lock on SQLite),
so the migrations and the seeding run once.

Engines
-------
- ``""``: SQLite in ``data/exchange.sqlite`` (relative to the working directory, like the
  journals), made on first use. WAL mode: readers (the portal, ``history``) never wait for
  the writer and the writer never waits for them. ``synchronous = FULL``: a commit is on
  disk when it returns, as with PostgreSQL's default, so what the recorder reports committed
  survives a crash of the machine too (NORMAL was about 10% faster at recording, measured,
  and could lose the last commits). A write transaction starts with ``BEGIN IMMEDIATE``
  (`transaction`), so two writers queue (up to ``busy_timeout``) instead of failing to
  upgrade a read lock.
- ``sqlite:///PATH``: the same, elsewhere.
- ``postgresql://USER@HOST:PORT/DB`` (or ``postgresql+psycopg://``): PostgreSQL through
  psycopg 3. Connections are checked before use, so one broken by a server restart is
  replaced instead of failing the next write.

Failures
--------
Everything that says the database cannot be used right now (a wrong URL, a server down
or refusing connections, a full disk, a locked or read-only file) raises `StoreUnavailable`,
whose text names the database (never its password) and the cause, in one line. Nothing of
the transaction it interrupted was committed. Callers log it and try again later.
"""

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError

from config.settings import DATABASE_URL, Config
from database.reference import seed

DEFAULT_PATH = Path("data") / "exchange.sqlite"
MIGRATIONS = Path(__file__).with_name("migrations")
BUSY_TIMEOUT_MS = 10_000
"""How long a SQLite writer waits for another's transaction before giving up (StoreUnavailable)."""
CONNECT_TIMEOUT_S = 5
"""How long connecting to PostgreSQL may take before it counts as unavailable."""
OPENING_LOCK = 0x65786368616E6765
"""The PostgreSQL advisory lock that serializes migrating and seeding (b"exchange" as an integer)."""


class StoreUnavailable(Exception):
    """The database cannot be used now: unreachable, refusing, full, locked. Nothing of the
    interrupted transaction was committed; try again later."""


def database_url(url: str) -> URL:
    """The SQLAlchemy URL of a configured ``[database] url`` ("" is the embedded default).

    Plain ``postgresql://`` means psycopg 3, the driver the project installs.
    """
    if not re.match(DATABASE_URL, url):
        raise StoreUnavailable(f"not a database URL the exchange supports: {url!r} (expected \"\" for the "
                               "embedded default, sqlite:///PATH or postgresql://USER@HOST:PORT/DATABASE)")
    parsed = make_url(url or f"sqlite:///{DEFAULT_PATH}")
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def describe(url: URL) -> str:
    return url.render_as_string(hide_password=True)


def open_store(url: str | URL = "") -> Engine:
    """An engine on the database at ``url``, its schema upgraded to the newest migration."""
    parsed = url if isinstance(url, URL) else database_url(url)
    engine = make_engine(parsed)
    try:
        migrate(engine)
    except BaseException:
        engine.dispose()
        raise
    return engine


def open_database(config: Config) -> Engine:
    """`open_store` at the configured URL, its reference data seeded from ``config`` on first start."""
    engine = open_store(config.database.url)
    try:
        with transaction(engine) as connection:
            _lock(connection)
            seed(connection, config)
    except BaseException:
        engine.dispose()
        raise
    return engine


def make_engine(url: URL) -> Engine:
    """An engine for ``url`` with this module's settings, without touching the database yet."""
    try:
        if url.get_backend_name() == "sqlite":
            return _sqlite_engine(url)
        return create_engine(url, pool_pre_ping=True, connect_args={"connect_timeout": CONNECT_TIMEOUT_S})
    except (ArgumentError, NoSuchModuleError, OSError) as exc:
        raise StoreUnavailable(f"cannot open the database {describe(url)}: {exc}") from None


def _sqlite_engine(url: URL) -> Engine:
    if url.database and url.database != ":memory:":
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url)

    @event.listens_for(engine, "connect")
    def configure(dbapi_connection, _record) -> None:
        dbapi_connection.isolation_level = None  # SQLAlchemy emits BEGIN itself, below
        for pragma in ("journal_mode = WAL", "synchronous = FULL", "foreign_keys = ON",
                       f"busy_timeout = {BUSY_TIMEOUT_MS}"):
            dbapi_connection.execute(f"PRAGMA {pragma}")

    @event.listens_for(engine, "begin")
    def begin(connection: Connection) -> None:
        write = connection.get_execution_options().get("exchange_write", False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    return engine


@contextmanager
def transaction(engine: Engine, write: bool = True) -> Iterator[Connection]:
    """A connection in a transaction, committed when the block ends and rolled back if it raises.

    Database failures inside the block become `StoreUnavailable` (the transaction rolled back);
    other exceptions pass through, after the rollback.
    """
    try:
        with engine.connect() as connection:
            if write:
                connection.execution_options(exchange_write=True)
            with connection.begin():
                yield connection
    except DBAPIError as exc:
        raise unavailable(engine.url, exc.orig if exc.orig is not None else exc) from None
    except (psycopg.Error, OSError) as exc:
        raise unavailable(engine.url, exc) from None


def unavailable(url: URL, exc: Exception) -> StoreUnavailable:
    """`StoreUnavailable` naming the database and, in one line, what its driver said.

    Errors of psycopg's own (the COPY of `database.writing` goes around SQLAlchemy) and of the
    operating system count as well as SQLAlchemy's.
    """
    return StoreUnavailable(f"the database {describe(url)} is unavailable: {' '.join(str(exc).split())}")


def migrate(engine: Engine) -> None:
    """Upgrade the schema to the newest migration (nothing if it is there already)."""
    config = AlembicConfig()
    config.set_main_option("script_location", str(MIGRATIONS))
    with transaction(engine) as connection:
        _lock(connection)
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


def _lock(connection: Connection) -> None:
    """Serialize the transactions that migrate or seed (SQLite's write lock does it by itself)."""
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": OPENING_LOCK})
