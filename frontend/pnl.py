"""A trader's P&L curves in currency units, and the risk figures of the daily one.

Both curves mark the account's holdings to market the way `database.queries` does: what it
has made in a symbol is ``cash + position x price`` (in the symbol's ticks x lots; sales add
to cash, purchases take from it), divided by the symbol's ``price_scale`` for currency, then
summed over symbols.

- **Intraday** (`intraday`): from ``start`` (a time, usually midnight UTC), one point at the
  end of every bar of ``interval`` in which a symbol the account holds or trades traded: the
  account's fills before the bar's end, every symbol marked to its latest bar's close (or,
  before its first bar, to its last trade before ``start``), minus the same at ``start``.
  The curve starts at 0 at ``start``.
- **Daily** (`daily`): `database.queries.daily`'s ``pnl``, each day's change since the
  previous close, summed over symbols in currency; its running sum is the cumulative curve.

`risk` gives `frontend.risk.figures` of the daily P&L; `undefined` says in words why one of
them is None.
"""

from collections.abc import Mapping
from datetime import date
from fractions import Fraction

import msgspec
import pyarrow as pa

from database.queries import DayRecord, ExecutionRecord, HoldingRecord
from engine.types import Side
from frontend.market import to_ticks
from frontend.risk import RiskFigures, figures


class Point(msgspec.Struct, frozen=True):
    time: int
    """Nanoseconds since the epoch, UTC: ``start``, then the end of a bar."""
    pnl: float
    """Currency units made since ``start``."""


class DayPnl(msgspec.Struct, frozen=True):
    day: date
    pnl: float
    """The day's P&L in currency units."""
    cumulative: float
    """The sum of ``pnl`` up to this day."""


def intraday(holdings: list[HoldingRecord], fills: list[ExecutionRecord], bars: pa.Table,
             scales: Mapping[str, int], start: int, interval: int) -> list[Point]:
    """The intraday curve (see the module) from ``start``.

    ``holdings`` are the account's at ``start`` (`database.queries.holdings`), ``fills`` its
    fills from ``start`` on, oldest first (`database.queries.executions`), ``bars`` the tick
    store's bars of ``interval`` nanoseconds from ``start`` (`TickHistory.bars`, any symbols),
    ``scales`` each symbol's ``price_scale``. A fill after the last bar's end (a tick store
    behind the database) is in no point yet.
    """
    state = {holding.symbol: [holding.quantity, holding.cash, holding.price] for holding in holdings}
    for fill in fills:
        state.setdefault(fill.symbol, [0, 0, None])
    marks: dict[int, dict[str, int]] = {}
    """Per bar end: the close of each symbol's bar that ends there."""
    times = bars.column("time").cast(pa.int64()).to_pylist()
    for time, symbol, close in zip(times, bars.column("sym").to_pylist(), bars.column("close").to_pylist(),
                                   strict=True):
        if symbol in state:
            marks.setdefault(time + interval, {})[symbol] = to_ticks(close, scales[symbol])

    def value() -> Fraction:
        return sum((Fraction(cash + quantity * (price or 0), scales[symbol])
                    for symbol, (quantity, cash, price) in state.items()), Fraction(0))

    opening = value()
    points = [Point(start, 0.0)]
    pending = iter(fills)
    fill = next(pending, None)
    for end in sorted(marks):
        while fill is not None and fill.time < end:
            held = state[fill.symbol]
            sign = 1 if fill.side == Side.BUY else -1
            held[0] += sign * fill.quantity
            held[1] -= sign * fill.price * fill.quantity
            held[2] = fill.price
            fill = next(pending, None)
        for symbol, close in marks[end].items():
            state[symbol][2] = close
        points.append(Point(end, float(value() - opening)))
    return points


def daily(records: list[DayRecord], scales: Mapping[str, int]) -> list[DayPnl]:
    """The daily curve (see the module) of ``records`` (`database.queries.daily`, by day)."""
    days: dict[date, Fraction] = {}
    for record in records:
        days[record.day] = days.get(record.day, Fraction(0)) + Fraction(record.pnl, scales[record.symbol])
    curve, total = [], Fraction(0)
    for day, pnl in sorted(days.items()):
        total += pnl
        curve.append(DayPnl(day, float(pnl), float(total)))
    return curve


def risk(curve: list[DayPnl]) -> RiskFigures:
    """The risk figures (`frontend.risk`) of the daily curve's P&L."""
    return figures([day.pnl for day in curve])


def drawdown_days(risk_figures: RiskFigures, curve: list[DayPnl]) -> tuple[date | None, date | None]:
    """The days of the maximum drawdown's peak (None: the start, before the first day) and
    trough (None: no drawdown)."""
    drawdown = risk_figures.drawdown
    if drawdown.trough < 0:
        return None, None
    return (curve[drawdown.peak].day if drawdown.peak >= 0 else None), curve[drawdown.trough].day


def undefined(risk_figures: RiskFigures, figure: str) -> str:
    """Why ``figure`` ("sharpe", "sortino", "historical_var" or "parametric_var") of
    ``risk_figures`` is None, for the page."""
    if risk_figures.days == 0:
        return "no trading days yet"
    if risk_figures.days < 2:
        return "needs at least two trading days"
    if figure == "sortino":
        return "no losing day, so no downside deviation"
    return "every day's P&L is the same, so no dispersion"
