"""Writing one batch's rows (`database.recording.Batch`) inside the caller's transaction.

A writer takes the rows of the two big append-only tables one at a time, while Python makes
them (`rows`: a context whose value is the function that takes a row; the order history
while the batch is translated, the executions while they are booked), then the orders and
the small tables (`write`). Each table is written with one statement per batch, never one
per row, and the rows go to the driver as tuples:

- SQLite (`SqliteWriter`): Core ``insert``/``update`` statements, compiled once, executed
  with the list of rows by the driver's ``executemany`` (a loop in C). SQLAlchemy's own
  executemany costs about as much again per row, turning each tuple into parameters in Python.
- PostgreSQL (`CopyWriter`): ``COPY ... FROM STDIN`` (binary) through psycopg 3 for the
  order history, the executions and the new orders. The COPY of a streamed table is open
  while Python makes its rows, so the server takes them in on the other core meanwhile
  instead of after. Changed orders are one ``UPDATE ... FROM unnest(arrays)``, one binary
  array parameter per column. Measured on the development machine for the order history
  table: COPY about 110,000 rows/s, psycopg's pipelined executemany 32,000, SQLAlchemy's
  multi-row INSERT 18,000, one hand-made INSERT of 500 rows at a time 9,000. The UPDATE from
  arrays replaced one from a temporary table, of which the planner knows nothing: it hashed
  the whole orders table every batch (40 ms a batch at 100,000 orders), where the arrays'
  length lets it look each order up by its key once the table is large.

Both write the small tables (positions, the day tables, the progress row: a few rows per
batch) as upserts with Core statements: positions and progress take their new values, the
day tables add the batch's totals to the day's. A new order may replace a row only in state
REJECTED: the book does not consume a rejected id, so it may come again (SQLite: an upsert;
PostgreSQL: the COPY, in a savepoint, fails on the key and the batch's new orders go in
through an upsert from arrays instead). Every other row is keyed by what its journal entry
said, so a batch written twice would fail on a key rather than count anything twice
(`RecorderProgress`, committed with it, keeps that from happening).
"""

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager

import psycopg
from sqlalchemy import (
    BigInteger,
    Connection,
    Date,
    Enum,
    Integer,
    SmallInteger,
    String,
    bindparam,
    insert,
    literal_column,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite

from database.models import Base, DailyClose, DailyPnl, Execution, Order, OrderEvent, Position, RecorderProgress
from engine.lifecycle import OrderState

ORDERS = Order.__table__
ORDER_COLUMNS = tuple(column.name for column in ORDERS.c)
STREAMED = {table.name: tuple(column.name for column in table.c)
            for table in (OrderEvent.__table__, Execution.__table__)}
"""The tables whose rows a writer takes one at a time (`rows`), and their columns in order."""
EXECUTION_COLUMNS = STREAMED["executions"]
CHANGE_COLUMNS = ("price", "quantity", "status", "filled", "leaves", "notional", "updated_time", "order_id")
"""What a later batch can change of an order, and its id (`LiveOrder.change`)."""
REJECTED = literal_column(f"'{OrderState.REJECTED.value}'")
BINARY = {BigInteger: "int8", Integer: "int4", SmallInteger: "int2", String: "text", Enum: "text", Date: "date"}
"""PostgreSQL's type for each column type of the copied tables, for binary COPY."""

Sink = Callable[[tuple], object]
"""Takes one row of a table (a tuple in column order)."""


def writer(dialect: str):
    """The writer for a database of ``dialect`` ("sqlite" or "postgresql")."""
    return CopyWriter() if dialect == "postgresql" else SqliteWriter()


class SqliteWriter:
    def __init__(self) -> None:
        dialect = sqlite.dialect()
        statement = sqlite.insert(ORDERS)
        self.insert_orders = str(statement.on_conflict_do_update(
            index_elements=[ORDERS.c.order_id],
            set_={name: statement.excluded[name] for name in ORDER_COLUMNS[1:]},
            where=ORDERS.c.status == REJECTED,
        ).compile(dialect=dialect))
        changes = update(ORDERS).where(ORDERS.c.order_id == bindparam("_order_id")).values(
            {name: bindparam(f"_{name}") for name in CHANGE_COLUMNS[:-1]}
        ).compile(dialect=dialect)
        if changes.positiontup != [f"_{name}" for name in CHANGE_COLUMNS]:
            raise AssertionError(f"UPDATE parameters in an unexpected order: {changes.positiontup}")
        self.update_orders = str(changes)
        self.inserts = {table: str(insert(Base.metadata.tables[table]).compile(dialect=dialect)) for table in STREAMED}
        self.small_tables = SmallTables(sqlite.insert)

    @contextmanager
    def rows(self, connection: Connection, table: str) -> Iterator[Sink]:
        """Gathers the rows of ``table`` (one of `STREAMED`) and inserts them when the block ends
        (not if it raises)."""
        gathered: list[tuple] = []
        yield gathered.append
        if gathered:
            connection.exec_driver_sql(self.inserts[table], gathered)

    def write(self, connection: Connection, batch) -> None:
        execute = connection.exec_driver_sql
        if batch.inserted:
            execute(self.insert_orders, [order.row() for order in batch.inserted.values()])
        if batch.updated:
            execute(self.update_orders, [order.change() for order in batch.updated.values()])
        self.small_tables.write(connection, batch)


class CopyWriter:
    """COPY for the big tables, through the transaction's own psycopg connection."""

    def __init__(self) -> None:
        assignments = ", ".join(f"{name} = excluded.{name}" for name in ORDER_COLUMNS[1:])
        self.upsert_orders = (
            f"INSERT INTO orders ({', '.join(ORDER_COLUMNS)}) SELECT * FROM {_unnest(ORDER_COLUMNS)} "
            f"ON CONFLICT (order_id) DO UPDATE SET {assignments} WHERE orders.status = {REJECTED}"
        )
        changes = ", ".join(f"{name} = c.{name}" for name in CHANGE_COLUMNS[:-1])
        self.update_orders = (
            f"UPDATE orders SET {changes} FROM {_unnest(CHANGE_COLUMNS)} WHERE orders.order_id = c.order_id"
        )
        self.small_tables = SmallTables(postgresql.insert)

    @contextmanager
    def rows(self, connection: Connection, table: str) -> Iterator[Sink]:
        """A COPY into ``table`` (one of `STREAMED`), open for the block (aborted if it raises)."""
        with _copying(_cursor(connection), table, STREAMED[table]) as copy:
            yield copy.write_row

    def write(self, connection: Connection, batch) -> None:
        cursor = _cursor(connection)
        if batch.inserted:
            rows = [order.row() for order in batch.inserted.values()]
            try:
                with connection.begin_nested():
                    _copy(cursor, "orders", ORDER_COLUMNS, rows)
            except psycopg.errors.UniqueViolation:
                cursor.execute(self.upsert_orders, _arrays(rows))
        if batch.updated:
            cursor.execute(self.update_orders, _arrays(order.change() for order in batch.updated.values()))
        self.small_tables.write(connection, batch)


def _cursor(connection: Connection) -> psycopg.Cursor:
    return connection.connection.driver_connection.cursor()


def _copy(cursor: psycopg.Cursor, table: str, columns: tuple[str, ...], rows: Iterable[tuple]) -> None:
    """COPY ``rows`` (tuples of ``columns``, as ``table``'s)."""
    with _copying(cursor, table, columns) as copy:
        write = copy.write_row
        for row in rows:
            write(row)


@contextmanager
def _copying(cursor: psycopg.Cursor, table: str, columns: tuple[str, ...]) -> Iterator[psycopg.Copy]:
    """A COPY of ``columns`` into ``table`` in PostgreSQL's binary format, which psycopg formats
    in about half the time of text."""
    model = Base.metadata.tables[table]
    with cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN (FORMAT BINARY)") as copy:
        copy.set_types([BINARY[type(model.c[name].type)] for name in columns])
        yield copy


def _unnest(columns: tuple[str, ...]) -> str:
    """A table ``c`` of ``columns`` (of `Order`) from one array parameter per column (`_arrays`),
    sent in binary: psycopg makes a binary array of a thousand values three times as fast as
    a text one (no quoting to look for), and the server reads it faster too."""
    arrays = ", ".join(f"%b::{BINARY[type(ORDERS.c[name].type)]}[]" for name in columns)
    return f"unnest({arrays}) AS c({', '.join(columns)})"


def _arrays(rows: Iterable[tuple]) -> list[list]:
    """The columns of ``rows``, one list each (the parameters of an `_unnest`)."""
    return [list(column) for column in zip(*rows, strict=True)]


class SmallTables:
    """Positions, the day tables and the progress row: a few rows per batch, upserted with Core."""

    def __init__(self, dialect_insert) -> None:
        positions = Position.__table__
        statement = dialect_insert(positions)
        self.positions = statement.on_conflict_do_update(
            index_elements=[positions.c.account, positions.c.symbol],
            set_={name: statement.excluded[name] for name in ("quantity", "basis", "cash", "realized", "updated_time")},
        )
        days = DailyPnl.__table__
        statement = dialect_insert(days)
        added = ("trades", "bought", "sold", "bought_notional", "sold_notional")
        self.days = statement.on_conflict_do_update(
            index_elements=[days.c.account, days.c.symbol, days.c.day],
            set_={name: days.c[name] + statement.excluded[name] for name in added}
            | {name: statement.excluded[name] for name in ("quantity", "basis", "cash", "realized")},
        )
        closes = DailyClose.__table__
        statement = dialect_insert(closes)
        self.closes = statement.on_conflict_do_update(
            index_elements=[closes.c.symbol, closes.c.day],
            set_={"price": statement.excluded.price, "volume": closes.c.volume + statement.excluded.volume,
                  "trades": closes.c.trades + statement.excluded.trades},
        )
        progress = RecorderProgress.__table__
        statement = dialect_insert(progress)
        self.progress = statement.on_conflict_do_update(
            index_elements=[progress.c.shard],
            set_={"sequence": statement.excluded.sequence, "time": statement.excluded.time},
        )

    def write(self, connection: Connection, batch) -> None:
        if batch.positions:
            rows = []
            for (account, symbol), (portfolio, time) in batch.positions.items():
                holding = portfolio.holdings[symbol]
                rows.append({"account": account, "symbol": symbol, "quantity": holding.quantity,
                             "basis": holding.basis, "cash": portfolio.cash, "realized": holding.realized,
                             "updated_time": time})
            connection.execute(self.positions, rows)
        if batch.days:
            connection.execute(self.days, [
                {"account": account, "symbol": symbol, "day": day, "trades": t.trades, "bought": t.bought,
                 "sold": t.sold, "bought_notional": t.bought_notional, "sold_notional": t.sold_notional,
                 "quantity": t.quantity, "basis": t.basis, "cash": t.cash, "realized": t.realized}
                for (account, symbol, day), t in batch.days.items()
            ])
        if batch.closes:
            connection.execute(self.closes, [
                {"symbol": symbol, "day": day, "price": price, "volume": volume, "trades": trades}
                for (symbol, day), (price, volume, trades) in batch.closes.items()
            ])
        connection.execute(self.progress, {"shard": batch.shard, "sequence": batch.last_sequence,
                                           "time": batch.last_time})
