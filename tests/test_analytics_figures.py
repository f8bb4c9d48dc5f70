"""The dashboard's figures (`frontend.market`, `frontend.pnl`) and the queries they need
(`database.queries.closes`, `top_traders`, `holdings`), with exact results for a hand-checked
two days of ACME (price_scale 100), recorded the way the recorder records: journal entries of
a real `Shard` written into the database (`Applier`) and into the tick store (`record`).

=====  =====================================  ================================  =================
time   command                                trade (id: buyer <- seller)        top of book after
=====  =====================================  ================================  =================
day 1 (2026-12-01)
00:05  carol buys 1 @ 99.00                                                      99.00 x1 / -
00:10  bob sells 5 @ 100.00                                                      99.00 x1 / 100.00 x5
00:20  alice buys 5 @ 100.00                  1: alice <- bob, 5 @ 100.00        99.00 x1 / -
01:10  bob sells 1 @ 101.00                                                      99.00 x1 / 101.00 x1
01:15  carol buys 1 @ 101.00                  2: carol <- bob, 1 @ 101.00        99.00 x1 / -
02:05  bob buys 2 @ 102.00                                                       102.00 x2 / -
02:10  alice sells 2 @ 102.00                 3: bob <- alice, 2 @ 102.00        99.00 x1 / -
02:25  bob sells 1 @ 101.50                                                      99.00 x1 / 101.50 x1
02:30  carol buys 1 @ 101.50                  4: carol <- bob, 1 @ 101.50        99.00 x1 / -
day 2
00:10  bob buys 1 @ 103.00                                                       103.00 x1 / -
00:30  carol sells 1 @ 103.00                 5: bob <- carol, 1 @ 103.00        99.00 x1 / -
=====  =====================================  ================================  =================

(times mm:ss after midnight UTC). At the end of day 1 (close 101.50): alice +3, cash -296.00
(-500.00 + 204.00); bob -5, cash +498.50; carol +2, cash -202.50. Marked to 101.50, they have
made +8.50, -9.00 and +0.50. Day 2 (close 103.00): alice, not trading, makes 3 x 1.50 = +4.50;
bob -4, cash +395.50, has made 395.50 - 412.00 = -16.50, so -7.50 that day; carol +1, cash
-99.50, has made +3.50, so +3.00 that day. Each day sums to 0 over the three.
"""

from datetime import date

import pyarrow as pa
import pytest
from journal_entries import START, Journal

from database import queries
from database.queries import CloseRecord, DayRecord, ExecutionRecord, HoldingRecord, TraderRecord
from database.recording import Applier
from database.store import open_store, transaction
from database.ticks.queries import TickHistory
from database.ticks.schema import record
from database.ticks.store import TickStore
from engine.instrument import Instrument
from engine.types import Side
from frontend import market, pnl
from frontend.market import Candle, DayFigures
from frontend.pnl import DayPnl, Point
from frontend.risk import figures
from servers.protocol import BookSubmit

pytest_plugins = ["database_fixtures"]
DAY1, DAY2 = date(2026, 12, 1), date(2026, 12, 2)
S = 10**9
MINUTE = 60 * S
DAY = 86_400 * S
SCALES = {"ACME": 100}
BUY, SELL = 0, 1


def commands() -> list:
    """The journal entries of the table above."""
    journal = Journal(symbols=["ACME"], step=1)
    entries = []
    for n, (day, seconds, side, price, quantity, account) in enumerate([
        (0, 5, BUY, 9_900, 1, "carol"), (0, 10, SELL, 10_000, 5, "bob"), (0, 20, BUY, 10_000, 5, "alice"),
        (0, 70, SELL, 10_100, 1, "bob"), (0, 75, BUY, 10_100, 1, "carol"), (0, 125, BUY, 10_200, 2, "bob"),
        (0, 130, SELL, 10_200, 2, "alice"), (0, 145, SELL, 10_150, 1, "bob"), (0, 150, BUY, 10_150, 1, "carol"),
        (1, 10, BUY, 10_300, 1, "bob"), (1, 30, SELL, 10_300, 1, "carol"),
    ], start=1):
        journal.time = START + day * DAY + seconds * S - 1
        entries += journal.run(BookSubmit("ACME", n, side, 0, 0, price, quantity, account))
    return entries


@pytest.fixture
def recorded(engine):
    Applier(engine).apply("A", commands())
    with transaction(engine, write=False) as connection:
        yield connection


@pytest.fixture(scope="module")
def sqlite(tmp_path_factory):
    """The scenario in a SQLite database (for the figures, which need no second engine)."""
    engine = open_store(f"sqlite:///{tmp_path_factory.mktemp('db') / 'exchange.sqlite'}")
    Applier(engine).apply("A", commands())
    yield engine
    engine.dispose()


@pytest.fixture(scope="module")
def history(tmp_path_factory):
    root = tmp_path_factory.mktemp("ticks")
    with TickStore(root) as store:
        record(store, "A", commands(), SCALES)
    ticks = TickHistory(root)
    yield ticks
    ticks.close()


def at(day: date, seconds: int) -> int:
    return market.day_range(day)[0] + seconds * S


# ---------------------------------------------------------------- database.queries


def test_closes_are_each_trading_day_by_day(recorded):
    assert queries.closes(recorded, date.min, date.max) == [
        CloseRecord(DAY1, "ACME", 10_150, 9, 4), CloseRecord(DAY2, "ACME", 10_300, 1, 1)]
    assert queries.closes(recorded, DAY2, date.max, "ACME") == [CloseRecord(DAY2, "ACME", 10_300, 1, 1)]
    assert queries.closes(recorded, date.min, date.max, "BOLT") == []


def test_top_traders_of_a_day_by_volume_and_by_pnl(recorded):
    alice = TraderRecord("alice", 2, 5, 2, 70_400, 3, 850)
    bob = TraderRecord("bob", 4, 2, 7, 90_650, -5, -900)
    carol = TraderRecord("carol", 2, 2, 0, 20_250, 2, 50)
    assert queries.top_traders(recorded, "ACME", DAY1, DAY1) == [bob, alice, carol]
    assert queries.top_traders(recorded, "ACME", DAY1, DAY1, by="pnl") == [alice, carol, bob]
    assert queries.top_traders(recorded, "ACME", DAY1, DAY1, by="pnl", limit=1) == [alice]
    assert sum(trader.pnl for trader in (alice, bob, carol)) == 0


def test_top_traders_count_a_position_carried_into_the_range(recorded):
    # alice does not trade on day 2, but her 3 lots gain 1.50 each
    assert queries.top_traders(recorded, "ACME", DAY2, DAY2, by="pnl") == [
        TraderRecord("alice", 0, 0, 0, 0, 3, 450),
        TraderRecord("carol", 1, 0, 1, 10_300, 1, 300),
        TraderRecord("bob", 1, 1, 0, 10_300, -4, -750),
    ]
    both = queries.top_traders(recorded, "ACME", DAY1, DAY2, by="pnl")
    assert [(trader.account, trader.pnl) for trader in both] == [("alice", 1300), ("carol", 350), ("bob", -1650)]
    assert queries.top_traders(recorded, "ACME", date(2026, 12, 3), date(2026, 12, 9)) == [
        TraderRecord("alice", 0, 0, 0, 0, 3, 0), TraderRecord("bob", 0, 0, 0, 0, -4, 0),
        TraderRecord("carol", 0, 0, 0, 0, 1, 0)]
    assert queries.top_traders(recorded, "BOLT", DAY1, DAY2) == []


def test_holdings_are_the_fills_before_a_moment_and_the_last_price(recorded):
    assert queries.holdings(recorded, "alice", at(DAY1, 0)) == []
    # after trade 1 (alice bought 5 @ 100.00) and trade 2 (101.00, not hers)
    assert queries.holdings(recorded, "alice", at(DAY1, 100)) == [HoldingRecord("ACME", 5, -50_000, 10_100)]
    # from the end of day 1 (the daily records), marked to its close
    assert queries.holdings(recorded, "bob", at(DAY2, 0)) == [HoldingRecord("ACME", -5, 49_850, 10_150)]
    assert queries.holdings(recorded, "bob", at(DAY2, 31)) == [HoldingRecord("ACME", -4, 39_550, 10_300)]


# ---------------------------------------------------------------- frontend.pnl


def curve_of(engine, history, account: str, day: date, interval: int) -> list[Point]:
    start, end = market.day_range(day)
    with transaction(engine, write=False) as connection:
        holdings = queries.holdings(connection, account, start)
        fills = queries.executions(connection, account, start, end)
    return pnl.intraday(holdings, fills, history.bars(None, interval, start, end), SCALES, start, interval)


def test_intraday_curve_marks_two_fills_at_three_bars(sqlite, history):
    # alice: fill 1 buys 5 @ 100.00 at 00:20, fill 2 sells 2 @ 102.00 at 02:10; bars of a minute close
    # at 100.00 (00:00-01:00), 101.00 (01:00-02:00), 101.50 (02:00-03:00). cash + position x close:
    #   01:00  -500.00 + 5 x 100.00 = 0.00
    #   02:00  -500.00 + 5 x 101.00 = 5.00
    #   03:00  -500.00 + 204.00 + 3 x 101.50 = 8.50  (the day's P&L, as the daily series has it)
    assert curve_of(sqlite, history, "alice", DAY1, MINUTE) == [
        Point(at(DAY1, 0), 0.0), Point(at(DAY1, 60), 0.0), Point(at(DAY1, 120), 5.0), Point(at(DAY1, 180), 8.5)]
    # bob sold 5 @ 100.00 and 1 @ 101.00, bought 2 @ 102.00, sold 1 @ 101.50: one bar of 5 minutes
    # closing at 101.50: 500.00 + 101.00 - 204.00 + 101.50 - 5 x 101.50 = -9.00
    assert curve_of(sqlite, history, "bob", DAY1, 5 * MINUTE) == [Point(at(DAY1, 0), 0.0),
                                                                   Point(at(DAY1, 300), -9.0)]


def test_intraday_curve_of_a_position_held_without_fills(sqlite, history):
    # alice starts day 2 long 3 at the close of 101.50; its one bar closes at 103.00: 3 x 1.50
    assert curve_of(sqlite, history, "alice", DAY2, MINUTE) == [Point(at(DAY2, 0), 0.0), Point(at(DAY2, 60), 4.5)]
    assert curve_of(sqlite, history, "dave", DAY2, MINUTE) == [Point(at(DAY2, 0), 0.0)]


def test_intraday_curve_marks_a_fill_at_its_price_until_its_bar_is_there():
    # the account holds 1 BOLT bought at 3.00 and buys 2 ACME @ 1.20 at 00:10; the tick store has
    # BOLT's bar (close 3.50) but not yet ACME's: ACME is marked at its fill, 0.00, BOLT at +0.50
    holding = HoldingRecord("BOLT", 1, -300, 300)
    fill = ExecutionRecord(10 * S, "ACME", 1, 7, Side.BUY, 120, 2, True)
    bars = pa.table({"sym": ["BOLT"], "time": pa.array([0], pa.timestamp("ns", tz="UTC")), "close": [3.5]})
    scales = {"ACME": 100, "BOLT": 100}
    assert pnl.intraday([holding], [fill], bars, scales, 0, MINUTE) == [Point(0, 0.0), Point(MINUTE, 0.5)]
    # with ACME's bar (close 1.25): 2 x 0.05 more
    both = pa.table({"sym": ["ACME", "BOLT"], "time": pa.array([0, 0], pa.timestamp("ns", tz="UTC")),
                     "close": [1.25, 3.5]})
    assert pnl.intraday([holding], [fill], both, scales, 0, MINUTE) == [Point(0, 0.0), Point(MINUTE, 0.6)]


def test_daily_curve_sums_symbols_in_currency():
    # ACME 150 ticks x lots at 100 a unit: 1.50; BOLT 12 at 8 a unit: 1.50; then BOLT -4: -0.50
    records = [DayRecord(DAY1, "ACME", 1, 1, 0, 0, 0, 150, 150), DayRecord(DAY1, "BOLT", 1, 1, 0, 0, 0, 12, 12),
               DayRecord(DAY2, "BOLT", 0, 0, 0, 0, 0, 8, -4)]
    assert pnl.daily(records, {"ACME": 100, "BOLT": 8}) == [DayPnl(DAY1, 3.0, 3.0), DayPnl(DAY2, -0.5, 2.5)]
    assert pnl.daily([], SCALES) == []


def test_daily_curve_and_risk_figures_of_the_scenario(sqlite):
    with transaction(sqlite, write=False) as connection:
        alice = pnl.daily(queries.daily(connection, "alice", date.min, date.max), SCALES)
        bob = pnl.daily(queries.daily(connection, "bob", date.min, date.max), SCALES)
    assert alice == [DayPnl(DAY1, 8.5, 8.5), DayPnl(DAY2, 4.5, 13.0)]
    assert bob == [DayPnl(DAY1, -9.0, -9.0), DayPnl(DAY2, -7.5, -16.5)]
    alice_risk, bob_risk = pnl.risk(alice), pnl.risk(bob)
    assert alice_risk == figures([8.5, 4.5])
    assert alice_risk.sortino is None
    assert pnl.undefined(alice_risk, "sortino") == "no losing day, so no downside deviation"
    assert pnl.drawdown_days(alice_risk, alice) == (None, None)
    # bob falls from the start (0) to -16.50 at the end of day 2
    assert bob_risk.drawdown.amount == 16.5
    assert pnl.drawdown_days(bob_risk, bob) == (None, DAY2)


def test_risk_figures_of_one_day_say_why_the_ratios_are_missing():
    one = pnl.risk([DayPnl(DAY1, -2.0, -2.0)])
    assert (one.sharpe, one.sortino, one.parametric_var[0.99]) == (None, None, None)
    assert one.historical_var[0.95] == 2.0
    assert {pnl.undefined(one, name) for name in ("sharpe", "sortino", "parametric_var")} == {
        "needs at least two trading days"}
    assert pnl.undefined(pnl.risk([]), "historical_var") == "no trading days yet"
    flat = pnl.risk([DayPnl(DAY1, 1.0, 1.0), DayPnl(DAY2, 1.0, 2.0)])
    assert flat.sharpe is None
    assert pnl.undefined(flat, "sharpe") == "every day's P&L is the same, so no dispersion"
    rise = pnl.risk([DayPnl(DAY1, 1.0, 1.0), DayPnl(DAY2, -3.0, -2.0)])
    assert pnl.drawdown_days(rise, [DayPnl(DAY1, 1.0, 1.0), DayPnl(DAY2, -3.0, -2.0)]) == (DAY1, DAY2)


# ---------------------------------------------------------------- frontend.market


def test_day_figures_of_a_day_with_trades(history):
    figures1 = market.day_figures(history, "ACME", DAY1, 100, None)
    # VWAP (5 x 100 + 101 + 2 x 102 + 101.5) / 9; spread: the two-sided quotes' 1.00, 2.00 and 2.50
    assert figures1 == DayFigures("ACME", DAY1, 9, 4, pytest.approx(906.5 / 9), pytest.approx(5.5 / 3),
                                  10_000, 10_200, 10_000, 10_150, None, None)
    # day 2 has no two-sided quote; change since day 1's close of 101.50
    assert market.day_figures(history, "ACME", DAY2, 100, 10_150) == DayFigures(
        "ACME", DAY2, 1, 1, 103.0, None, 10_300, 10_300, 10_300, 10_300, 10_150, 150)


def test_day_figures_of_a_day_without_trades(history):
    assert market.day_figures(history, "ACME", date(2026, 12, 3), 100, 10_300) == DayFigures(
        "ACME", date(2026, 12, 3), 0, 0, None, None, None, None, None, None, 10_300, None)


def test_candles_are_the_bars_in_ticks(history):
    assert market.candles(history, "ACME", DAY1, MINUTE, 100) == [
        Candle(at(DAY1, 0), 10_000, 10_000, 10_000, 10_000, 5, 1),
        Candle(at(DAY1, 60), 10_100, 10_100, 10_100, 10_100, 1, 1),
        Candle(at(DAY1, 120), 10_200, 10_200, 10_150, 10_150, 3, 2),
    ]
    assert market.candles(history, "BOLT", DAY1, MINUTE, 100) == []


def test_previous_close_is_the_last_close_before_the_day():
    closes = [CloseRecord(DAY1, "ACME", 10_150, 9, 4), CloseRecord(DAY2, "ACME", 10_300, 1, 1)]
    assert market.previous_close(closes, DAY1) is None
    assert market.previous_close(closes, DAY2) == 10_150
    assert market.previous_close(closes, date(2026, 12, 9)) == 10_300
    assert market.to_ticks(101.5, 100) == 10_150 and market.to_ticks(0.1 + 0.2, 10) == 3
    assert market.day_range(DAY1) == (START, START + DAY)


def test_averages_show_two_more_decimals_than_prices():
    assert market.format_average(Instrument("ACME", price_scale=100), 906.5 / 9) == "100.7222"
    assert market.format_average(Instrument("BOLT", price_scale=1), 2.5) == "2.50"
    assert market.format_average(Instrument("ODD", price_scale=8), 0.125) == "0.12500000"
