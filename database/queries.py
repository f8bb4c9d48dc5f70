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
"""

from datetime import date

import msgspec
from sqlalchemy import Connection, literal, select, union_all

from database.models import DailyClose, DailyPnl, Execution, Order, OrderEvent, Position
from engine.lifecycle import OrderState, Transition
from engine.types import OrderType, Side, TimeInForce


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
