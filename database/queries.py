"""What the portal and ``python main.py history trader`` ask of the transactional database.

Every function takes a connection and returns records (frozen msgspec Structs), in the
exchange's units: prices in ticks, quantities in lots, money in ticks x lots, times in
nanoseconds since the epoch (UTC), ranges half-open ``[start, end)``. Only the averages
are floats (for display).

The daily series
----------------
`daily` marks the account's position in a symbol to the symbol's close (its last trade of
the UTC day, `DailyClose`) and carries the position from day to day, so it has a row for
every day the symbol traded from the account's first fill in it on, whether or not the
account traded that day. ``cash + quantity x close`` is what the account has made in the
symbol so far (realized + unrealized, exactly, by `servers.portfolio`'s identity); a day's
``pnl`` is its change since the symbol's previous close (the first day: since nothing).

The dashboard's figures
-----------------------
`closes` lists a symbol's trading days. `top_traders` ranks the accounts of one symbol over
a range of days by the same marking: an account's P&L over days ``first`` to ``last`` is the
change of ``cash + quantity x close`` from the close before ``first`` to the close of
``last``, the sum of its `daily` ``pnl`` over those days (a position carried into the range
earns or loses with it, without a fill). `holdings` is where an account stood at a moment:
the start of a P&L curve within a day.
"""

from datetime import date, timedelta
from typing import Literal

import msgspec
from sqlalchemy import Connection, func, literal, select, union_all

from database.models import DailyClose, DailyPnl, Execution, Order, OrderEvent, Position
from engine.lifecycle import OrderState, Transition
from engine.types import OrderType, Side, TimeInForce

EPOCH = date(1970, 1, 1)
NS_PER_DAY = 86_400 * 10**9


class OrderRecord(msgspec.Struct, frozen=True):
    order_id: int
    symbol: str
    side: Side
    order_type: OrderType
    time_in_force: TimeInForce
    price: int
    quantity: int
    status: OrderState
    filled: int
    leaves: int
    average_price: float
    """Of its fills, in ticks (0 before any)."""
    created_time: int
    updated_time: int


class ExecutionRecord(msgspec.Struct, frozen=True):
    """One fill as one account saw it (a self-trade is two: one per side)."""

    time: int
    symbol: str
    trade_id: int
    order_id: int
    side: Side
    price: int
    quantity: int
    aggressor: bool
    """This account's order was the taker."""


class StepRecord(msgspec.Struct, frozen=True):
    """One step of an order's state history (`database.models.OrderEvent`)."""

    time: int
    sequence: int
    transition: Transition
    status: OrderState
    price: int
    quantity: int
    filled: int
    leaves: int
    trade_id: int | None
    reason: int | None


class PositionRecord(msgspec.Struct, frozen=True):
    symbol: str
    quantity: int
    average_price: float
    basis: int
    cash: int
    realized: int
    last_price: int | None
    """The symbol's last trade (None: none recorded)."""
    unrealized: int
    """quantity x last price - basis (0 without a last price)."""


class DayRecord(msgspec.Struct, frozen=True):
    """An account's day in one symbol. Money is in that symbol's ticks x lots (symbols may have
    different price scales: convert to currency before adding symbols up)."""

    day: date
    symbol: str
    trades: int
    """This account's fills that day."""
    bought: int
    sold: int
    notional: int
    """Price x quantity of the day's fills, both sides."""
    realized: int
    """Realized P&L so far, at the day's end."""
    unrealized: int
    """The open position marked to the day's close."""
    pnl: int
    """The day's P&L: the change of realized + unrealized since the symbol's previous close."""


class CloseRecord(msgspec.Struct, frozen=True):
    """A symbol's UTC day with trades (`database.models.DailyClose`)."""

    day: date
    symbol: str
    price: int
    """The day's last trade."""
    volume: int
    trades: int


class TraderRecord(msgspec.Struct, frozen=True):
    """An account's trading of one symbol over a range of days; money in its ticks x lots."""

    account: str
    trades: int
    """Its fills in the range."""
    bought: int
    sold: int
    notional: int
    """Price x quantity of its fills in the range, both sides."""
    position: int
    """Its position at the end of the range."""
    pnl: int
    """The change of ``cash + position x close`` over the range (see the module)."""

    @property
    def volume(self) -> int:
        return self.bought + self.sold


class HoldingRecord(msgspec.Struct, frozen=True):
    """An account's position and cash in one symbol at a moment, from its fills before it, and the
    symbol's last trade price before it."""

    symbol: str
    quantity: int
    cash: int
    """Sales add price x quantity, purchases subtract it (`database.models.Position`'s cash)."""
    price: int | None
    """The symbol's last trade before the moment (None: none)."""


def orders(connection: Connection, account: str, start: int, end: int, symbol: str | None = None
           ) -> list[OrderRecord]:
    """The account's orders entered in [start, end), oldest first."""
    query = select(Order).where(Order.account == account, Order.created_time >= start, Order.created_time < end)
    if symbol is not None:
        query = query.where(Order.symbol == symbol)
    return [
        OrderRecord(row.order_id, row.symbol, Side(row.side), OrderType(row.order_type),
                    TimeInForce(row.time_in_force), row.price, row.quantity, row.status, row.filled, row.leaves,
                    row.notional / row.filled if row.filled else 0.0, row.created_time, row.updated_time)
        for row in connection.execute(query.order_by(Order.created_time, Order.order_id))
    ]


def executions(connection: Connection, account: str, start: int, end: int, symbol: str | None = None
               ) -> list[ExecutionRecord]:
    """The account's fills in [start, end), oldest first."""
    sides = []
    for side, account_column, order_column in (
        (Side.BUY, Execution.buy_account, Execution.buy_order_id),
        (Side.SELL, Execution.sell_account, Execution.sell_order_id),
    ):
        query = select(Execution.time, Execution.symbol, Execution.trade_id, order_column.label("order_id"),
                       Execution.price, Execution.quantity, Execution.aggressor, literal(int(side)).label("side")
                       ).where(account_column == account, Execution.time >= start, Execution.time < end)
        if symbol is not None:
            query = query.where(Execution.symbol == symbol)
        sides.append(query)
    rows = connection.execute(union_all(*sides).order_by("time", "symbol", "trade_id", "side")).all()
    return [ExecutionRecord(row.time, row.symbol, row.trade_id, row.order_id, Side(row.side), row.price,
                            row.quantity, row.aggressor == row.side) for row in rows]


def order_history(connection: Connection, order_id: int) -> list[StepRecord]:
    """Every step of the order's state history, in order (empty: no such order)."""
    rows = connection.execute(
        select(OrderEvent).where(OrderEvent.order_id == order_id).order_by(OrderEvent.sequence, OrderEvent.step)
    )
    return [StepRecord(row.time, row.sequence, row.transition, row.status, row.price, row.quantity, row.filled,
                       row.leaves, row.trade_id, row.reason) for row in rows]


def positions(connection: Connection, account: str) -> list[PositionRecord]:
    """The account's position in every symbol it has traded (flat ones keep their realized P&L), by symbol."""
    rows = connection.execute(select(Position).where(Position.account == account).order_by(Position.symbol)).all()
    last = _last_prices(connection, [row.symbol for row in rows])
    records = []
    for row in rows:
        price = last.get(row.symbol)
        records.append(PositionRecord(
            row.symbol, row.quantity, abs(row.basis) / abs(row.quantity) if row.quantity else 0.0, row.basis,
            row.cash, row.realized, price,
            row.quantity * price - row.basis if row.quantity and price is not None else 0,
        ))
    return records


def daily(connection: Connection, account: str, first: date, last: date, symbol: str | None = None
          ) -> list[DayRecord]:
    """The account's days from ``first`` to ``last`` (inclusive), per symbol: trading and P&L in the
    symbol's ticks x lots (see the module). By day, then symbol."""
    query = select(DailyPnl).where(DailyPnl.account == account, DailyPnl.day <= last)
    if symbol is not None:
        query = query.where(DailyPnl.symbol == symbol)
    own = {(row.symbol, row.day): row for row in connection.execute(query)}
    symbols = sorted({symbol for symbol, _ in own})
    closes = connection.execute(
        select(DailyClose.symbol, DailyClose.day, DailyClose.price)
        .where(DailyClose.symbol.in_(symbols), DailyClose.day <= last).order_by(DailyClose.day)
    ).all()
    held: dict[str, object] = {}
    """Per symbol the account has traded so far: its DailyPnl row of the last day it did."""
    made: dict[str, int] = {}
    """Per symbol: cash + quantity x close at the previous close."""
    records = []
    for close in closes:
        row = own.get((close.symbol, close.day))
        if row is not None:
            held[close.symbol] = row
        state = held.get(close.symbol)
        if state is None:
            continue
        total = state.cash + state.quantity * close.price
        if close.day >= first:
            bought = sold = trades = notional = 0
            if row is not None:
                bought, sold, trades = row.bought, row.sold, row.trades
                notional = row.bought_notional + row.sold_notional
            records.append(DayRecord(close.day, close.symbol, trades, bought, sold, notional, state.realized,
                                     total - state.realized, total - made.get(close.symbol, 0)))
        made[close.symbol] = total
    return sorted(records, key=lambda record: (record.day, record.symbol))


def _last_prices(connection: Connection, symbols: list[str]) -> dict[str, int]:
    latest = (select(DailyClose.symbol, DailyClose.price)
              .where(DailyClose.symbol.in_(symbols)).order_by(DailyClose.symbol, DailyClose.day))
    return dict(connection.execute(latest).all())


def closes(connection: Connection, first: date, last: date, symbol: str | None = None) -> list[CloseRecord]:
    """The days from ``first`` to ``last`` (inclusive) each symbol traded, by day, then symbol."""
    query = select(DailyClose).where(DailyClose.day >= first, DailyClose.day <= last)
    if symbol is not None:
        query = query.where(DailyClose.symbol == symbol)
    return [CloseRecord(row.day, row.symbol, row.price, row.volume, row.trades)
            for row in connection.execute(query.order_by(DailyClose.day, DailyClose.symbol))]


def top_traders(connection: Connection, symbol: str, first: date, last: date,
                by: Literal["volume", "pnl"] = "volume", limit: int = 10) -> list[TraderRecord]:
    """The ``limit`` accounts with the largest volume (bought + sold) or P&L in ``symbol`` from
    ``first`` to ``last`` (inclusive), largest first, ties by account.

    Every account that traded the symbol in the range or held a position in it at its start
    takes part. One symbol at a time: money is in the symbol's ticks x lots.
    """
    traded = {row.account: row for row in connection.execute(
        select(DailyPnl.account, func.sum(DailyPnl.trades).label("trades"), func.sum(DailyPnl.bought).label("bought"),
               func.sum(DailyPnl.sold).label("sold"),
               func.sum(DailyPnl.bought_notional + DailyPnl.sold_notional).label("notional"))
        .where(DailyPnl.symbol == symbol, DailyPnl.day >= first, DailyPnl.day <= last)
        .group_by(DailyPnl.account)
    )}
    opening = _states(connection, symbol, DailyPnl.day < first)
    closing = _states(connection, symbol, DailyPnl.day <= last)
    before = _close(connection, symbol, DailyClose.day < first)
    after = _close(connection, symbol, DailyClose.day <= last)
    records = []
    for account, (quantity, cash) in closing.items():
        start_quantity, start_cash = opening.get(account, (0, 0))
        row = traded.get(account)
        if row is None and start_quantity == 0:
            continue
        made = cash + quantity * after - (start_cash + start_quantity * (before or 0))
        trading = (0, 0, 0, 0) if row is None else (row.trades, row.bought, row.sold, row.notional)
        records.append(TraderRecord(account, *(int(value) for value in trading), quantity, made))
    if by == "volume":
        records.sort(key=lambda record: (-record.volume, record.account))
    else:
        records.sort(key=lambda record: (-record.pnl, record.account))
    return records[:limit]


def holdings(connection: Connection, account: str, time: int) -> list[HoldingRecord]:
    """The account's holding of every symbol it traded before ``time`` (ns), by symbol.

    The state at the end of its last day of trading before ``time``'s UTC day (`DailyPnl`),
    then its fills of that day before ``time``.
    """
    day = EPOCH + timedelta(days=time // NS_PER_DAY)
    day_start = time // NS_PER_DAY * NS_PER_DAY
    state = {row.symbol: (row.quantity, row.cash) for row in connection.execute(
        select(DailyPnl.symbol, DailyPnl.quantity, DailyPnl.cash)
        .where(DailyPnl.account == account, DailyPnl.day < day).order_by(DailyPnl.day)
    )}
    prices = dict(connection.execute(
        select(DailyClose.symbol, DailyClose.price).where(DailyClose.day < day).order_by(DailyClose.day)
    ).all())
    for fill in executions(connection, account, day_start, time):
        quantity, cash = state.get(fill.symbol, (0, 0))
        sign = 1 if fill.side == Side.BUY else -1
        state[fill.symbol] = (quantity + sign * fill.quantity, cash - sign * fill.price * fill.quantity)
    for symbol in state:
        last = connection.execute(
            select(Execution.price).where(Execution.symbol == symbol, Execution.time >= day_start,
                                          Execution.time < time)
            .order_by(Execution.time.desc(), Execution.trade_id.desc()).limit(1)
        ).scalar()
        if last is not None:
            prices[symbol] = last
    return [HoldingRecord(symbol, quantity, cash, prices.get(symbol))
            for symbol, (quantity, cash) in sorted(state.items())]


def _states(connection: Connection, symbol: str, days) -> dict[str, tuple[int, int]]:
    """Per account: (quantity, cash) in ``symbol`` at the end of its last day of trading within ``days``."""
    rows = connection.execute(select(DailyPnl.account, DailyPnl.quantity, DailyPnl.cash)
                              .where(DailyPnl.symbol == symbol, days).order_by(DailyPnl.day))
    return {row.account: (row.quantity, row.cash) for row in rows}


def _close(connection: Connection, symbol: str, days) -> int | None:
    """The symbol's close of its last trading day within ``days`` (None: none)."""
    return connection.execute(
        select(DailyClose.price).where(DailyClose.symbol == symbol, days).order_by(DailyClose.day.desc()).limit(1)
    ).scalar()
