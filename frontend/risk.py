"""The risk figures a risk desk reads from a trader's P&L curve.

Input: the trader's daily P&L, one value per trading day in currency units, oldest first (the
``pnl`` column of ``history trader daily``). The conventions, fixed here so that every page
shows the same numbers:

- **Ratios** are on daily P&L, not returns: a trader on the exchange has no capital base to
  divide by. Sharpe = mean / sample standard deviation (n - 1), Sortino = mean / downside
  deviation, the root mean square of the days' shortfalls below 0 (days above 0 count as 0,
  all days in the denominator); both annualised by sqrt(252) with a risk-free P&L of 0. With
  fewer than two days, or no dispersion (no losing day, for Sortino), a ratio is undefined: None.
- **Maximum drawdown** is on the cumulative P&L starting from 0 before the first day: the
  largest fall from a running peak to a later value, with the days of that peak (-1: the
  start, before the first day) and of its trough. Never negative; 0 for a curve that never falls.
- **1-day VaR** at a confidence c (0.95, 0.99) is the loss not exceeded on a fraction c of days,
  as a positive amount (0 if even that quantile is a gain). Historical: from the empirical
  quantile 1 - c of the days (linear interpolation between order statistics, NumPy's default).
  Parametric: from a normal distribution with the days' mean and sample standard deviation,
  ``-(mean + z(1 - c) * std)``. None without days (historical) or with fewer than two (parametric).
"""

import math
from statistics import NormalDist

import msgspec
import numpy as np

TRADING_DAYS = 252
CONFIDENCES = (0.95, 0.99)


class Drawdown(msgspec.Struct, frozen=True):
    amount: float
    peak: int
    """The day of the running peak (-1: the start, before the first day)."""
    trough: int


class RiskFigures(msgspec.Struct, frozen=True):
    days: int
    total: float
    sharpe: float | None
    sortino: float | None
    drawdown: Drawdown
    historical_var: dict[float, float | None]
    parametric_var: dict[float, float | None]


def figures(pnl) -> RiskFigures:
    """Every figure of the module docstring for the daily P&L ``pnl``."""
    days = np.asarray(pnl, dtype=np.float64)
    return RiskFigures(len(days), float(days.sum()), sharpe(days), sortino(days), max_drawdown(days),
                       {c: historical_var(days, c) for c in CONFIDENCES},
                       {c: parametric_var(days, c) for c in CONFIDENCES})


def sharpe(pnl) -> float | None:
    days = np.asarray(pnl, dtype=np.float64)
    if len(days) < 2:
        return None
    spread = days.std(ddof=1)
    return None if spread == 0 else float(days.mean() / spread * math.sqrt(TRADING_DAYS))


def sortino(pnl) -> float | None:
    days = np.asarray(pnl, dtype=np.float64)
    if len(days) < 2:
        return None
    downside = math.sqrt(float(np.mean(np.minimum(days, 0.0) ** 2)))
    return None if downside == 0 else float(days.mean() / downside * math.sqrt(TRADING_DAYS))


def max_drawdown(pnl) -> Drawdown:
    curve = np.concatenate([[0.0], np.cumsum(np.asarray(pnl, dtype=np.float64))])
    peaks = np.maximum.accumulate(curve)
    falls = peaks - curve
    trough = int(np.argmax(falls))
    if falls[trough] == 0:
        return Drawdown(0.0, -1, -1)
    peak = int(np.argmax(curve[: trough + 1]))  # the first day the running peak was reached
    return Drawdown(float(falls[trough]), peak - 1, trough - 1)


def historical_var(pnl, confidence: float) -> float | None:
    days = np.asarray(pnl, dtype=np.float64)
    if not len(days):
        return None
    return max(0.0, -float(np.quantile(days, 1 - confidence)))


def parametric_var(pnl, confidence: float) -> float | None:
    days = np.asarray(pnl, dtype=np.float64)
    if len(days) < 2:
        return None
    z = NormalDist().inv_cdf(1 - confidence)
    return max(0.0, -float(days.mean() + z * days.std(ddof=1)))
