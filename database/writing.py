"""Writing one batch's rows (`database.recording.Batch`) inside the caller's transaction.

Each table is written with one statement per batch, never one per row, and the rows go to
the driver as tuples:

- SQLite (`SqliteWriter`): Core ``insert``/``update`` statements, compiled once, executed
  with the list of rows by the driver's ``executemany`` (a loop in C). SQLAlchemy's own
  executemany costs about as much again per row, turning each tuple into parameters in Python.
- PostgreSQL (`CopyWriter`): ``COPY ... FROM STDIN`` (binary) through psycopg 3 for new
  orders, the order history and the executions, and for changed orders into a temporary
  table that one UPDATE then applies. Measured on the development machine for the order
  history table: COPY about 110,000 rows/s, psycopg's pipelined executemany 32,000,
  SQLAlchemy's multi-row INSERT 18,000, one hand-made INSERT of 500 rows at a time 9,000.

Both write the small tables (positions, the day tables, the progress row: a few rows per
batch) as upserts with Core statements: positions and progress take their new values, the
day tables add the batch's totals to the day's. A new order may replace a row only in state
REJECTED: the book does not consume a rejected id, so it may come again (SQLite: an upsert;
PostgreSQL: the COPY, in a savepoint, fails on the key and the batch's new orders go through
a temporary table and an upsert instead). Every other row is keyed by what its journal entry
said, so a batch written twice would fail on a key rather than count anything twice
(`RecorderProgress`, committed with it, keeps that from happening).
"""

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
    text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite

from database.models import Base, DailyClose, DailyPnl, Execution, Order, OrderEvent, Position, RecorderProgress
from engine.lifecycle import OrderState

ORDERS = Order.__table__
ORDER_COLUMNS = tuple(column.name for column in ORDERS.c)
EVENT_COLUMNS = tuple(column.name for column in OrderEvent.__table__.c)
EXECUTION_COLUMNS = tuple(column.name for column in Execution.__table__.c)
CHANGE_COLUMNS = ("price", "quantity", "status", "filled", "leaves", "notional", "updated_time", "order_id")
"""What a later batch can change of an order, and its id (`LiveOrder.change`)."""
REJECTED = literal_column(f"'{OrderState.REJECTED.value}'")
BINARY = {BigInteger: "int8", Integer: "int4", SmallInteger: "int2", String: "text", Enum: "text", Date: "date"}
"""PostgreSQL's type for each column type of the copied tables, for binary COPY."""


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
        self.insert_events = str(insert(OrderEvent.__table__).compile(dialect=dialect))
        self.insert_executions = str(insert(Execution.__table__).compile(dialect=dialect))
        self.small_tables = SmallTables(sqlite.insert)

    def write(self, connection: Connection, batch) -> None:
        execute = connection.exec_driver_sql
        if batch.inserted:
            execute(self.insert_orders, [order.row() for order in batch.inserted.values()])
        if batch.updated:
            execute(self.update_orders, [order.change() for order in batch.updated.values()])
        if batch.events:
            execute(self.insert_events, batch.events)
        if batch.executions:
            execute(self.insert_executions, batch.executions)
        self.small_tables.write(connection, batch)


class CopyWriter:
    """COPY for the big tables, through the transaction's own psycopg connection."""

    STAGED_NEW = "recorder_new_orders"
    STAGED_CHANGED = "recorder_changed_orders"

    def __init__(self) -> None:
        changed = ", ".join(f"{name} {ORDERS.c[name].type.compile(postgresql.dialect())}" for name in CHANGE_COLUMNS)
        self.create_staging = text(
            f"CREATE TEMPORARY TABLE IF NOT EXISTS {self.STAGED_NEW} (LIKE orders) ON COMMIT DELETE ROWS; "
            f"CREATE TEMPORARY TABLE IF NOT EXISTS {self.STAGED_CHANGED} ({changed}) ON COMMIT DELETE ROWS"
        )
        assignments = ", ".join(f"{name} = excluded.{name}" for name in ORDER_COLUMNS[1:])
        self.insert_new = text(
            f"INSERT INTO orders SELECT * FROM {self.STAGED_NEW} ON CONFLICT (order_id) DO UPDATE SET {assignments} "
            f"WHERE orders.status = {REJECTED}"
        )
        changes = ", ".join(f"{name} = c.{name}" for name in CHANGE_COLUMNS[:-1])
        self.apply_changes = text(
            f"UPDATE orders SET {changes} FROM {self.STAGED_CHANGED} AS c WHERE orders.order_id = c.order_id"
        )
        self.small_tables = SmallTables(postgresql.insert)

    def write(self, connection: Connection, batch) -> None:
        cursor = connection.connection.driver_connection.cursor()
        if batch.inserted or batch.updated:
            connection.execute(self.create_staging)
        if batch.inserted:
            rows = [order.row() for order in batch.inserted.values()]
            try:
                with connection.begin_nested():
                    _copy(cursor, "orders", ORDER_COLUMNS, rows)
            except psycopg.errors.UniqueViolation:
                _copy(cursor, self.STAGED_NEW, ORDER_COLUMNS, rows)
                connection.execute(self.insert_new)
        if batch.updated:
            _copy(cursor, self.STAGED_CHANGED, CHANGE_COLUMNS, (order.change() for order in batch.updated.values()))
            connection.execute(self.apply_changes)
        if batch.events:
            _copy(cursor, "order_events", EVENT_COLUMNS, batch.events)
        if batch.executions:
            _copy(cursor, "executions", EXECUTION_COLUMNS, batch.executions)
        self.small_tables.write(connection, batch)


def _copy(cursor, table: str, columns: tuple[str, ...], rows) -> None:
    """COPY ``rows`` (tuples of ``columns``, as `Order`'s or ``table``'s) in PostgreSQL's binary format,
    which psycopg formats in about half the time of text."""
    model = Base.metadata.tables.get(table, ORDERS)
    with cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN (FORMAT BINARY)") as copy:
        copy.set_types([BINARY[type(model.c[name].type)] for name in columns])
        write = copy.write_row
        for row in rows:
            write(row)


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
