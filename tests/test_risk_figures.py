"""The risk figures of the analytics dashboard (`frontend.risk`), against values worked out by hand."""

import math
from statistics import NormalDist

import pytest

from frontend.risk import Drawdown, figures, historical_var, max_drawdown, parametric_var, sharpe, sortino

PNL = [10, -5, 20, -15, 5]
"""Mean 3; deviations 7, -8, 17, -18, 2 (squares sum to 730: sample variance 182.5); shortfalls
below 0: 5 and 15 (mean square over the 5 days: 50); cumulative 10, 5, 25, 10, 15."""
STD = math.sqrt(182.5)
YEAR = math.sqrt(252)


def test_sharpe_and_sortino_on_daily_pnl_annualised():
    assert sharpe(PNL) == pytest.approx(3 / STD * YEAR)
    assert sortino(PNL) == pytest.approx(3 / math.sqrt(50) * YEAR)
    assert sharpe(PNL) == pytest.approx(3.52525, abs=1e-5) and sortino(PNL) == pytest.approx(6.73498, abs=1e-5)


def test_maximum_drawdown_from_the_running_peak_with_its_days():
    assert max_drawdown(PNL) == Drawdown(15.0, 2, 3), "from 25 after day 2 down to 10 after day 3"
    assert max_drawdown([-4, -1, 3]) == Drawdown(5.0, -1, 1), "a fall from the start counts from 0"
    assert max_drawdown([1, 2, 3]) == Drawdown(0.0, -1, -1)
    assert max_drawdown([5, -5, 5, -5]) == Drawdown(5.0, 0, 1), "the first of equal falls"


def test_historical_var_interpolates_the_empirical_quantile():
    # sorted -15, -5, 5, 10, 20: the 5% quantile lies 0.2 of the way from -15 to -5, the 1% 0.04
    assert historical_var(PNL, 0.95) == pytest.approx(13.0)
    assert historical_var(PNL, 0.99) == pytest.approx(14.6)
    assert historical_var([1, 2, 3], 0.95) == 0.0, "even the worst days are gains"


def test_parametric_var_from_the_normal_with_the_days_mean_and_spread():
    for confidence, z in ((0.95, 1.6448536), (0.99, 2.3263479)):
        assert parametric_var(PNL, confidence) == pytest.approx(z * STD - 3, rel=1e-6)
    assert parametric_var(PNL, 0.95) == pytest.approx(-(3 + NormalDist().inv_cdf(0.05) * STD))


@pytest.mark.parametrize("pnl", [[], [7.0]])
def test_too_few_days_leave_the_figures_undefined_not_wrong(pnl):
    result = figures(pnl)
    assert (result.sharpe, result.sortino) == (None, None)
    assert result.parametric_var == {0.95: None, 0.99: None}
    assert result.historical_var == ({0.95: None, 0.99: None} if not pnl else {0.95: 0.0, 0.99: 0.0})
    assert result.drawdown == Drawdown(0.0, -1, -1) and result.days == len(pnl)


def test_no_dispersion_or_no_losing_day_leaves_a_ratio_undefined():
    assert sharpe([2, 2, 2]) is None and sortino([2, 2, 2]) is None
    assert sharpe([1, 3]) == pytest.approx(2 / math.sqrt(2) * YEAR) and sortino([1, 3]) is None


def test_figures_gathers_them_all():
    result = figures(PNL)
    assert (result.days, result.total, result.drawdown) == (5, 15.0, Drawdown(15.0, 2, 3))
    assert result.historical_var[0.95] == pytest.approx(13.0)
    assert result.parametric_var[0.99] == pytest.approx(2.3263479 * STD - 3, rel=1e-6)
