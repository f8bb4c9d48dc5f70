"""The transactional database's schema: SQLAlchemy 2.x typed declarative models.

Units are the exchange's everywhere: prices in ticks, quantities in lots, money (cash,
notional, cost basis, P&L) in ticks x lots, all exact integers (int64: up to 9.2e18 ticks x
lots). Times are `servers.protocol.Time`, nanoseconds since the Unix epoch UTC: exchange
times (when the order book server sequenced the command) for everything from the journal,
wall-clock times for reference-data changes and sessions. Days are UTC days of exchange time.
Sides, order types and times in force are their wire values (`engine.types`); order statuses
and the events of the state history are the values of `engine.lifecycle.OrderState` and
`Transition`, the exchange's one order lifecycle table.

Three groups of tables:

- **reference data**, changed by ``python main.py admin`` and seeded from the configuration
  on first start (`database.reference`): `Instrument`, `Trader`, `RiskLimits`, `ApiKey`, and
  `ReferenceVersion`, one counter bumped in the transaction of every change;
- **records from the journals**, written only by `database.recording` (one transaction per
  batch of journal entries, with `RecorderProgress`): `Order`, `OrderEvent`, `Execution`,
  `Position`, `DailyPnl`, `DailyClose`;
- **sessions** of the trading engine server (`Session`).

Account and symbol columns of the records carry no foreign keys on purpose: the journals
are the system of record and are written down as they are, even for a trader or instrument
the reference data no longer has.
"""

from datetime import date

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    Enum,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from engine.lifecycle import OrderState, Transition

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
"""Constraint names are fixed by convention, so migrations can name what they alter."""

SYMBOL = 16
TRADER = 64
SHARD = 32
ORDER_TYPES = 64
STP_MODE = 16


def _values(enum) -> list[str]:
    return [member.value for member in enum]


STATE = Enum(OrderState, name="order_state", native_enum=False, create_constraint=True, length=16,
             values_callable=_values)
TRANSITION = Enum(Transition, name="transition", native_enum=False, create_constraint=True, length=16,
                  values_callable=_values)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {int: BigInteger, str: String}


# ================================================================ reference data


class ReferenceVersion(Base):
    """One row: the version of the reference data, +1 in the transaction of every change to it."""

    __tablename__ = "reference_version"
    __table_args__ = (CheckConstraint("id = 1", name="single_row"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version: Mapped[int]


class Instrument(Base):
    """`config.settings.InstrumentConfig` as a row; ``order_types`` the enabled kinds of order,
    comma-separated (`engine.instrument.ORDER_KINDS`)."""

    __tablename__ = "instruments"

    symbol: Mapped[str] = mapped_column(String(SYMBOL), primary_key=True)
    tick_size: Mapped[int]
    lot_size: Mapped[int]
    min_quantity: Mapped[int]
    max_quantity: Mapped[int]
    price_band_bps: Mapped[int]
    price_scale: Mapped[int]
    reference_price: Mapped[int]
    order_types: Mapped[str] = mapped_column(String(ORDER_TYPES))
    max_iceberg_slices: Mapped[int]
    max_stop_distance_bps: Mapped[int]
    allow_marketable_stops: Mapped[bool] = mapped_column(Boolean)


class Trader(Base):
    """A trader: its id, the account it trades for (its self-trade prevention group; several
    traders may share one), its default self-trade prevention mode (`config.settings.STP_MODES`),
    and through the tables below its risk limits and API keys."""

    __tablename__ = "traders"

    trader_id: Mapped[str] = mapped_column(String(TRADER), primary_key=True)
    created_time: Mapped[int]
    account: Mapped[str] = mapped_column(String(TRADER))
    stp_default: Mapped[str] = mapped_column(String(STP_MODE))


class RiskLimits(Base):
    """A trader's pre-trade limits (`config.settings.TraderConfig`'s)."""

    __tablename__ = "risk_limits"

    trader_id: Mapped[str] = mapped_column(String(TRADER), ForeignKey("traders.trader_id"), primary_key=True)
    max_order_quantity: Mapped[int]
    max_notional: Mapped[int]
    max_open_orders: Mapped[int]
    max_messages_per_second: Mapped[int]
    max_queries_per_second: Mapped[int]


class ApiKey(Base):
    """One API key of a trader, as its PBKDF2 hash only (`servers.auth.hash_api_key`).

    A trader may have several active keys at once (rotation: the new one is added before
    the old ones are revoked); a revoked key stays, inactive, as a record.
    """

    __tablename__ = "api_keys"
    __table_args__ = (Index(None, "trader_id", "active"),)

    key_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    trader_id: Mapped[str] = mapped_column(String(TRADER), ForeignKey("traders.trader_id"))
    key_hash: Mapped[str] = mapped_column(String(256))
    active: Mapped[bool] = mapped_column(Boolean)
    created_time: Mapped[int]
    revoked_time: Mapped[int | None]


# ================================================================ records from the journals


class RecorderProgress(Base):
    """The last journal entry of a shard committed here: every write of the recorder is keyed by
    (shard, sequence) and commits together with this row, so entries at or below it are skipped."""

    __tablename__ = "recorder_progress"

    shard: Mapped[str] = mapped_column(String(SHARD), primary_key=True)
    sequence: Mapped[int]
    time: Mapped[int]


class Order(Base):
    """An order as its book last left it.

    ``quantity`` is its size: as submitted, or after a replace filled + the new open quantity;
    ``leaves`` its open quantity (0 once it left the book: filled, canceled, expired, rejected);
    ``notional`` the sum of price x quantity of its fills. ``shard`` and ``sequence`` are those
    of its submission. Side, type and time in force are int64 like the command's fields: a
    submission the book rejected for a bad one is recorded with what it said.
    """

    __tablename__ = "orders"
    __table_args__ = (Index(None, "account", "created_time"),)

    order_id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    account: Mapped[str] = mapped_column(String(TRADER))
    symbol: Mapped[str] = mapped_column(String(SYMBOL))
    side: Mapped[int]
    order_type: Mapped[int]
    time_in_force: Mapped[int]
    price: Mapped[int]
    quantity: Mapped[int]
    status: Mapped[OrderState] = mapped_column(STATE)
    filled: Mapped[int]
    leaves: Mapped[int]
    notional: Mapped[int]
    created_time: Mapped[int]
    updated_time: Mapped[int]
    shard: Mapped[str] = mapped_column(String(SHARD))
    sequence: Mapped[int]

    @property
    def average_price(self) -> float:
        """Average fill price in ticks (0 before any fill); for display only."""
        return self.notional / self.filled if self.filled else 0.0


class OrderEvent(Base):
    """One step of an order's state history: an event of the book that changed the order.

    Keyed by the order, then the journal entry it came from (its sequence: an order lives in
    one shard) and its place among that entry's steps, so one index serves both uniqueness and
    reading an order's history in order. A fill is a step of each of its two orders (a sweep
    of 25,000 resting orders is one entry of 50,001 steps).
    ``quantity`` is the event's (accepted, filled, canceled or expired lots, or a replace's new
    open quantity); ``price`` the fill's price, else the order's limit; ``filled`` and ``leaves``
    the order's after the step; ``reason`` the reject or cancel reason code.
    """

    __tablename__ = "order_events"

    order_id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    sequence: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    step: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    shard: Mapped[str] = mapped_column(String(SHARD))
    time: Mapped[int]
    transition: Mapped[Transition] = mapped_column(TRANSITION)
    status: Mapped[OrderState] = mapped_column(STATE)
    price: Mapped[int]
    quantity: Mapped[int]
    filled: Mapped[int]
    leaves: Mapped[int]
    trade_id: Mapped[int | None]
    reason: Mapped[int | None] = mapped_column(Integer)


class Execution(Base):
    """One fill: a trade between a resting maker and an incoming taker, at the maker's price.

    ``trade_id`` is the book's trade number, consecutive per symbol; ``aggressor`` the taker's side.
    """

    __tablename__ = "executions"
    __table_args__ = (Index(None, "buy_account", "time"), Index(None, "sell_account", "time"))

    symbol: Mapped[str] = mapped_column(String(SYMBOL), primary_key=True)
    trade_id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    time: Mapped[int]
    shard: Mapped[str] = mapped_column(String(SHARD))
    sequence: Mapped[int]
    price: Mapped[int]
    quantity: Mapped[int]
    aggressor: Mapped[int] = mapped_column(SmallInteger)
    buy_order_id: Mapped[int]
    buy_account: Mapped[str] = mapped_column(String(TRADER))
    sell_order_id: Mapped[int]
    sell_account: Mapped[str] = mapped_column(String(TRADER))


class Position(Base):
    """An account's holding of a symbol, by the average-cost method of `servers.portfolio`.

    ``quantity`` is signed (negative: short); ``basis`` what the open position cost (positive,
    long) or brought in (negative, short); ``cash`` the symbol's share of the account's cash
    (sales add price x quantity, purchases subtract it); ``realized`` the P&L closed so far.
    Exact for every sequence of fills: realized + quantity x last - basis == cash + quantity x last.
    """

    __tablename__ = "positions"

    account: Mapped[str] = mapped_column(String(TRADER), primary_key=True)
    symbol: Mapped[str] = mapped_column(String(SYMBOL), primary_key=True)
    quantity: Mapped[int]
    basis: Mapped[int]
    cash: Mapped[int]
    realized: Mapped[int]
    updated_time: Mapped[int]

    @property
    def average_price(self) -> float:
        """|basis| / |quantity| in ticks (0 when flat); for display only."""
        return abs(self.basis) / abs(self.quantity) if self.quantity else 0.0


class DailyPnl(Base):
    """An account's trading of a symbol on one UTC day, and its `Position` at the day's last fill.

    Written for the days the account traded the symbol; marked to `DailyClose` for unrealized P&L.
    """

    __tablename__ = "daily_pnl"
    __table_args__ = (Index(None, "account", "day"),)

    account: Mapped[str] = mapped_column(String(TRADER), primary_key=True)
    symbol: Mapped[str] = mapped_column(String(SYMBOL), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    trades: Mapped[int]
    bought: Mapped[int]
    sold: Mapped[int]
    bought_notional: Mapped[int]
    sold_notional: Mapped[int]
    quantity: Mapped[int]
    basis: Mapped[int]
    cash: Mapped[int]
    realized: Mapped[int]


class DailyClose(Base):
    """A symbol's last trade price, volume and trade count on one UTC day (days with trades only)."""

    __tablename__ = "daily_closes"

    symbol: Mapped[str] = mapped_column(String(SYMBOL), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    price: Mapped[int]
    volume: Mapped[int]
    trades: Mapped[int]


# ================================================================ sessions


class Session(Base):
    """A trader's session on the trading engine server: logon, and logout with its
    `servers.protocol.EndReason` (both None while it lasts)."""

    __tablename__ = "sessions"
    __table_args__ = (Index(None, "trader_id", "logon_time"),)

    session_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    trader_id: Mapped[str] = mapped_column(String(TRADER))
    logon_time: Mapped[int]
    logout_time: Mapped[int | None]
    end_reason: Mapped[int | None] = mapped_column(SmallInteger)
