"""Positions, cash and average-cost P&L (`servers.portfolio`): exact numbers and invariants."""

from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.types import Side
from servers.ledger import Ledger
from servers.portfolio import Holding, Portfolio

BUY, SELL = Side.BUY, Side.SELL


def book(fills, last=None):
    """A portfolio after ``fills`` [(side, price, quantity)] in ACME, and its ACME Position."""
    portfolio = Portfolio()
    for side, price, quantity in fills:
        portfolio.fill("ACME", side, price, quantity)
    last_prices = {} if last is None else {"ACME": last}
    return portfolio, portfolio.positions(last_prices)[0]


def summary(position):
    return (position.quantity, position.average_price, position.realized_pnl, position.unrealized_pnl)


def test_opening_a_long_position():
    portfolio, position = book([(BUY, 100, 10)], last=105)
    assert portfolio.cash == -1_000
    assert summary(position) == (10, 100.0, 0, 50)
    assert position.last_price == 105


def test_adding_to_a_position_averages_the_entry_price():
    portfolio, position = book([(BUY, 100, 10), (BUY, 110, 30)], last=110)
    assert portfolio.cash == -4_300
    assert summary(position) == (40, 107.5, 0, 100)


def test_partial_close_realizes_against_the_average_cost():
    portfolio, position = book([(BUY, 100, 10), (SELL, 110, 4)], last=110)
    assert portfolio.cash == -560
    assert summary(position) == (6, 100.0, 40, 60)


def test_closing_the_whole_position_leaves_it_flat_with_the_pnl_realized():
    portfolio, position = book([(BUY, 100, 10), (BUY, 104, 10), (SELL, 103, 20)], last=103)
    assert portfolio.cash == 20
    assert summary(position) == (0, 0.0, 20, 0)


def test_flipping_from_long_to_short_opens_the_remainder_at_the_fill_price():
    portfolio, position = book([(BUY, 100, 10), (SELL, 90, 15)], last=90)
    assert portfolio.cash == 350
    assert summary(position) == (-5, 90.0, -100, 0)


def test_flipping_from_short_to_long():
    portfolio, position = book([(SELL, 100, 4), (BUY, 95, 10)], last=97)
    assert portfolio.cash == 400 - 950
    assert summary(position) == (6, 95.0, 20, 12)


def test_short_position_gains_when_the_price_falls():
    portfolio, position = book([(SELL, 100, 3), (BUY, 95, 1)], last=90)
    assert portfolio.cash == 205
    assert summary(position) == (-2, 100.0, 5, 20)


def test_sub_tick_cost_stays_with_the_open_lots_and_closing_is_exact():
    portfolio, position = book([(BUY, 100, 1), (BUY, 101, 2), (SELL, 102, 1)], last=102)
    # 302 / 3 lots: the closed lot takes 302 // 3 = 100 of the basis, the two left keep 202.
    assert summary(position) == (2, 101.0, 2, 2)
    portfolio, position = book([(BUY, 100, 1), (BUY, 101, 2), (SELL, 102, 1), (SELL, 102, 2)], last=102)
    assert summary(position) == (0, 0.0, 4, 0)
    assert portfolio.cash == 4  # exactly the proceeds 306 minus the cost 302


def test_symbols_are_kept_apart_and_reported_in_order():
    portfolio = Portfolio()
    portfolio.fill("BOLT", SELL, 250, 10)
    portfolio.fill("ACME", BUY, 100, 5)
    positions = portfolio.positions({"ACME": 101, "BOLT": 240})
    assert [(p.symbol, p.quantity, p.unrealized_pnl) for p in positions] == [("ACME", 5, 5), ("BOLT", -10, 100)]
    assert portfolio.cash == 2_500 - 500
    assert portfolio.position("BOLT") == -10 and portfolio.position("NONE") == 0


# ---------------------------------------------------------------- invariants on random fills

TRADERS = 3
SYMBOLS = ("ACME", "BOLT")
trades = st.lists(
    st.tuples(
        st.sampled_from(SYMBOLS),
        st.integers(0, TRADERS - 1),
        st.integers(0, TRADERS - 1),
        st.integers(1, 1_000),
        st.integers(1, 100),
    ),
    max_size=60,
)


class ExactHolding:
    """Average cost in exact fractions: the model the integer book must stay within a tick-lot of."""

    def __init__(self):
        self.quantity, self.cost, self.realized, self.closes = 0, Fraction(0), Fraction(0), 0

    def fill(self, signed, price):
        if self.quantity == 0 or (self.quantity > 0) == (signed > 0):
            self.quantity += signed
            self.cost += signed * price
            return
        closed = min(abs(signed), abs(self.quantity))
        average = self.cost / self.quantity
        direction = 1 if self.quantity > 0 else -1
        self.realized += direction * closed * (price - average)
        self.cost -= direction * closed * average
        self.quantity -= direction * closed
        self.closes += 1
        rest = abs(signed) - closed
        if rest:
            self.quantity = rest if signed > 0 else -rest
            self.cost = Fraction(self.quantity * price)


def run(trade_list):
    portfolios = [Portfolio() for _ in range(TRADERS)]
    exact = [{s: ExactHolding() for s in SYMBOLS} for _ in range(TRADERS)]
    last = {}
    for symbol, buyer, seller, price, quantity in trade_list:
        portfolios[buyer].fill(symbol, BUY, price, quantity)
        portfolios[seller].fill(symbol, SELL, price, quantity)
        exact[buyer][symbol].fill(quantity, price)
        exact[seller][symbol].fill(-quantity, price)
        last[symbol] = price
    return portfolios, exact, last


@settings(max_examples=300, deadline=None)
@given(trades)
def test_positions_and_cash_sum_to_zero_across_traders(trade_list):
    portfolios, _, _ = run(trade_list)
    for symbol in SYMBOLS:
        assert sum(p.position(symbol) for p in portfolios) == 0
    assert sum(p.cash for p in portfolios) == 0


@settings(max_examples=300, deadline=None)
@given(trades)
def test_realized_plus_unrealized_equals_cash_plus_marked_positions(trade_list):
    portfolios, _, last = run(trade_list)
    for portfolio in portfolios:
        marked = sum(portfolio.position(s) * last.get(s, 0) for s in SYMBOLS)
        assert portfolio.realized() + portfolio.unrealized(last) == portfolio.cash + marked
        reported = portfolio.positions(last)
        assert sum(p.realized_pnl + p.unrealized_pnl for p in reported) == portfolio.cash + marked


@settings(max_examples=300, deadline=None)
@given(trades)
def test_integer_average_cost_stays_within_a_tick_lot_per_close_of_the_exact_one(trade_list):
    portfolios, exact, last = run(trade_list)
    for portfolio, holdings in zip(portfolios, exact, strict=True):
        for symbol in SYMBOLS:
            model = holdings[symbol]
            holding = portfolio.holdings.get(symbol)
            if holding is None:
                assert model.quantity == 0 and model.closes == 0
                continue
            assert holding.quantity == model.quantity
            assert abs(holding.realized - model.realized) < max(model.closes, 1)
            assert abs(holding.basis - model.cost) < max(model.closes, 1)
            if holding.quantity == 0:
                assert holding.basis == 0 and holding.realized == model.realized


LARGE = 1 << 62
"""Where `native.portfolios` stops holding a field in C and holds it as a Python int."""


@given(st.lists(st.tuples(st.sampled_from(["quantity", "basis", "realized"]),
                          st.one_of(st.integers(-LARGE - 3, -LARGE + 3), st.integers(LARGE - 3, LARGE + 3),
                                    st.integers(-10**30, 10**30), st.integers(-5, 5))), max_size=20))
def test_a_holdings_fields_read_back_what_was_set_on_either_side_of_int64(sets):
    """The record holds its fields in C or as Python ints (all three one way): whichever, each
    field reads back the int last set, and the others are untouched."""
    holding, expected = Holding(), {"quantity": 0, "basis": 0, "realized": 0}
    for name, value in sets:
        setattr(holding, name, value)
        expected[name] = value
        assert {name: getattr(holding, name) for name in expected} == expected
        assert all(type(getattr(holding, name)) is int for name in expected)
    assert repr(holding) == (f"Holding(quantity={expected['quantity']}, basis={expected['basis']}, "
                             f"realized={expected['realized']})")


@given(st.one_of(st.integers(-LARGE - 3, -LARGE + 3), st.integers(LARGE - 3, LARGE + 3), st.integers(-10**30, 10**30)))
def test_a_portfolios_cash_reads_back_what_was_set_on_either_side_of_int64(value):
    portfolio = Portfolio()
    portfolio.cash = value
    assert portfolio.cash == value and type(portfolio.cash) is int
    portfolio.cash = 7
    assert portfolio.cash == 7


def test_the_records_take_only_ints():
    """A float or a string set on a field is refused, and the field keeps its value."""
    holding, portfolio = Holding(), Portfolio()
    holding.basis = 5
    for bad in (1.5, "3", None):
        with pytest.raises(TypeError):
            holding.quantity = bad
        with pytest.raises(TypeError):
            portfolio.cash = bad
    assert (holding.quantity, holding.basis, holding.realized, portfolio.cash) == (0, 5, 0, 0)
    assert portfolio.holdings == {}


@pytest.mark.parametrize("side", [BUY, SELL])
def test_fills_that_carry_the_cash_and_basis_across_int64_book_as_the_python(side):
    """Fills at the largest price and quantity C books (2**31 - 1), again and again, carry the cash
    and the basis across 2**62 and on beyond int64, then back: booked in C where both fit, and with
    Python's ints past them, the same as the arithmetic of `Holding.fill` and `Portfolio.fill` on
    plain ints (`Exact`)."""
    edge = (1 << 31) - 1
    fills = [(side, edge, edge)] * 3 + [(SELL if side is BUY else BUY, edge, edge)] * 7 + [(side, 3, 2)]
    ledger = Ledger(1, {})
    exact_cash, exact = 0, ExactInts()
    crossed = set()
    for fill_side, price, quantity in fills:
        trade = ("ACME", price, quantity, "a", None) if fill_side is BUY else ("ACME", price, quantity, None, "a")
        ledger.book_trades([trade])
        exact_cash += -price * quantity if fill_side is BUY else price * quantity
        exact.fill(fill_side is BUY, price, quantity)
        portfolio = ledger.portfolios["a"]
        holding = portfolio.holdings["ACME"]
        assert portfolio.cash == exact_cash
        assert (holding.quantity, holding.basis, holding.realized) == (exact.quantity, exact.basis, exact.realized)
        crossed.add(abs(exact_cash) >= LARGE)
    assert crossed == {True, False}


class ExactInts:
    """`Holding.fill`'s arithmetic on plain Python ints, the specification the records are held to."""

    def __init__(self):
        self.quantity = self.basis = self.realized = 0

    fill = Holding.fill
