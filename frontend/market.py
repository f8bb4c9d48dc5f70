"""The figures of the dashboard's market overview: one symbol on one UTC day, from the tick store.

The tick store (`database.ticks.queries.TickHistory`) gives prices in currency units, floats of
``ticks / price_scale``; the prices here are integer ticks again (`to_ticks`: exact, every price
the exchange trades is a whole number of ticks), so a page shows them with the instrument's
``format_price``. Averages (VWAP, spread) stay floats in currency units; sizes are lots; times
nanoseconds since the epoch, UTC. Nothing here opens a socket or draws.
"""

import math
from datetime import date

import msgspec
import pyarrow as pa

from database.queries import CloseRecord
from database.ticks.queries import TickHistory
from database.ticks.schema import DAY_NS
from engine.instrument import Instrument

EPOCH = date(1970, 1, 1)


class DayFigures(msgspec.Struct, frozen=True):
    """A symbol's trading on one UTC day (all None but volume and trades on a day without trades)."""

    symbol: str
    day: date
    volume: int
    trades: int
    vwap: float | None
    spread: float | None
    """The mean of ask - bid over the day's two-sided quotes (`TickHistory.daily`); None: none."""
    open: int | None
    high: int | None
    low: int | None
    last: int | None
    previous_close: int | None
    """The close of the symbol's previous trading day (None: this is its first)."""
    change: int | None
    """last - previous_close."""


class Candle(msgspec.Struct, frozen=True):
    """One bar: ``time`` its start; prices in ticks."""

    time: int
    open: int
    high: int
    low: int
    close: int
    volume: int
    trades: int


def day_range(day: date) -> tuple[int, int]:
    """The UTC day as the half-open range of exchange time ``[start, end)``, in nanoseconds."""
    start = (day - EPOCH).days * DAY_NS
    return start, start + DAY_NS


def previous_close(closes: list[CloseRecord], day: date) -> int | None:
    """The close of the last of ``closes`` (one symbol's, oldest first) before ``day``."""
    earlier = [close.price for close in closes if close.day < day]
    return earlier[-1] if earlier else None


def day_figures(history: TickHistory, symbol: str, day: date, scale: int, before: int | None) -> DayFigures:
    """``symbol``'s figures on ``day`` (its ``price_scale`` is ``scale``); ``before`` is the
    previous close in ticks (`previous_close`)."""
    start, end = day_range(day)
    daily = history.daily(symbol, start, end).to_pylist()
    bars = history.bars(symbol, DAY_NS, start, end).to_pylist()
    volume = daily[0]["volume"] if daily else 0
    trades = daily[0]["trades"] if daily else 0
    vwap = _number(daily[0]["vwap"]) if daily else None
    spread = _number(daily[0]["spread"]) if daily else None
    if not bars:
        return DayFigures(symbol, day, volume, trades, vwap, spread, None, None, None, None, before, None)
    bar = bars[0]
    last = to_ticks(bar["close"], scale)
    return DayFigures(symbol, day, volume, trades, vwap, spread, to_ticks(bar["open"], scale),
                      to_ticks(bar["high"], scale), to_ticks(bar["low"], scale), last, before,
                      None if before is None else last - before)


def candles(history: TickHistory, symbol: str, day: date, interval: int, scale: int) -> list[Candle]:
    """``symbol``'s bars of ``interval`` nanoseconds on ``day``, oldest first (only bars with trades)."""
    start, end = day_range(day)
    return candles_of(history.bars(symbol, interval, start, end), scale)


def candles_of(bars: pa.Table, scale: int) -> list[Candle]:
    """`TickHistory.bars` rows of one symbol as candles in ticks."""
    times = bars.column("time").cast(pa.int64()).to_pylist()
    return [Candle(time, *(to_ticks(row[name], scale) for name in ("open", "high", "low", "close")),
                   row["volume"], row["trades"])
            for time, row in zip(times, bars.to_pylist(), strict=True)]


def format_average(instrument: Instrument, value: float) -> str:
    """An average in currency units (VWAP, spread, average cost): the instrument's decimals and two more."""
    decimals = len(instrument.format_price(0).partition(".")[2]) + 2
    return f"{value:.{decimals}f}"


def to_ticks(price: float, scale: int) -> int:
    """A tick store price (currency units) back in ticks."""
    return round(price * scale)


def _number(value: float) -> float | None:
    return None if math.isnan(value) else value
