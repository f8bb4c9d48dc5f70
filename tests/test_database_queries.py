"""What the portal and ``history trader`` read (`database.queries`, `database.history`), with exact results
for the hand-checked scenario of `journal_entries.scenario`; and session records (`database.sessions`)."""

from datetime import date

import pytest
from journal_entries import order_id, scenario, scenario_time

import main
from database import queries
from database.queries import DayRecord, ExecutionRecord, OrderRecord, PositionRecord, StepRecord
from database.recording import Applier
from database.sessions import SessionRecord, logged_off, logged_on, sessions
from database.store import open_database, transaction
from engine.lifecycle import OrderState, Transition
from engine.types import OrderType, Side, TimeInForce
from servers.protocol import EndReason

pytest_plugins = ["database_fixtures"]
DAY1, DAY2 = date(2026, 12, 1), date(2026, 12, 2)
EVER = (0, 2**63 - 1)
BUY, SELL, LIMIT = Side.BUY, Side.SELL, OrderType.LIMIT


def t(sequence):
    return scenario_time(sequence)


def o(n):
    return order_id(n)


@pytest.fixture
def recorded(engine):
    Applier(engine).apply("A", scenario())
    with transaction(engine, write=False) as connection:
        yield connection


def test_orders_of_an_account_in_a_range(recorded):
    alice = [
        OrderRecord(o(1), "ACME", SELL, LIMIT, TimeInForce.GTC, 100, 10, OrderState.FILLED, 10, 0, 100.0, t(1), t(3)),
        OrderRecord(o(4), "ACME", BUY, LIMIT, TimeInForce.DAY, 98, 3, OrderState.EXPIRED, 0, 0, 0.0, t(4), t(6)),
        OrderRecord(o(7), "ACME", BUY, LIMIT, TimeInForce.GTC, 105, 2, OrderState.FILLED, 2, 0, 105.0, t(8), t(8)),
    ]
    assert queries.orders(recorded, "alice", *EVER) == alice
    assert queries.orders(recorded, "alice", t(2), t(8)) == alice[1:2]
    assert queries.orders(recorded, "alice", *EVER, symbol="BOLT") == []
    assert [r.order_id for r in queries.orders(recorded, "bob", *EVER)] == [o(2), o(3), o(8)]


def test_executions_of_an_account_in_a_range(recorded):
    assert queries.executions(recorded, "alice", *EVER) == [
        ExecutionRecord(t(2), "ACME", 1, o(1), SELL, 100, 4, False),
        ExecutionRecord(t(3), "ACME", 2, o(1), SELL, 100, 6, False),
        ExecutionRecord(t(8), "ACME", 3, o(7), BUY, 105, 2, True),
    ]
    assert queries.executions(recorded, "bob", t(3), t(9)) == [
        ExecutionRecord(t(3), "ACME", 2, o(3), BUY, 100, 6, True)]
    assert queries.executions(recorded, "nobody", *EVER) == []


def test_order_history_is_every_step_in_order(recorded):
    assert queries.order_history(recorded, o(3)) == [
        StepRecord(t(3), 3, Transition.ACCEPT, OrderState.ACCEPTED, 100, 10, 0, 10, None, None),
        StepRecord(t(3), 3, Transition.FILL_PART, OrderState.PARTIALLY_FILLED, 100, 6, 6, 4, 2, None),
        StepRecord(t(3), 3, Transition.CANCEL, OrderState.CANCELED, 100, 4, 6, 0, None, 1),
    ]
    assert queries.order_history(recorded, o(99)) == []


def test_positions_are_marked_to_the_last_trade(recorded):
    assert queries.positions(recorded, "alice") == [PositionRecord("ACME", -8, 100.0, -800, 790, -10, 105, -40)]
    assert queries.positions(recorded, "bob") == [PositionRecord("ACME", 10, 100.0, 1000, -1000, 0, 105, 50)]
    assert queries.positions(recorded, "nobody") == []


def test_daily_series_marks_positions_to_each_close(recorded):
    assert queries.daily(recorded, "alice", DAY1, DAY2) == [
        DayRecord(DAY1, "ACME", 2, 0, 10, 1000, 0, 0, 0),
        DayRecord(DAY2, "ACME", 1, 2, 0, 210, -10, -40, -50),
    ]
    assert queries.daily(recorded, "bob", DAY2, DAY2) == [DayRecord(DAY2, "ACME", 0, 0, 0, 0, 0, 50, 50)]
    assert queries.daily(recorded, "carol", DAY1, DAY2) == [DayRecord(DAY2, "ACME", 1, 0, 2, 210, 0, 0, 0)]
    every = [day for account in ("alice", "bob", "carol") for day in queries.daily(recorded, account, DAY1, DAY2)]
    assert sum(day.pnl for day in every if day.day == DAY2) == 0
    assert queries.daily(recorded, "alice", date(2026, 12, 3), date(2026, 12, 9)) == []


def test_sessions_record_logon_and_how_they_ended(engine):
    with transaction(engine) as connection:
        first = logged_on(connection, "alice", 100)
        second = logged_on(connection, "alice", 200)
        logged_off(connection, first, 150, EndReason.TIMEOUT)
        logged_off(connection, first, 160, EndReason.LOGOUT)
        logged_on(connection, "bob", 120)
    with transaction(engine, write=False) as connection:
        assert sessions(connection, "alice", 0, 1_000) == [
            SessionRecord(first, 100, 150, EndReason.TIMEOUT), SessionRecord(second, 200, None, None)]
        assert [row.session_id for row in sessions(connection, "alice", 150, 1_000)] == [second]


# ---------------------------------------------------------------- python main.py history trader


@pytest.fixture
def history(tmp_path, monkeypatch, capsys):
    """``main.py history trader ARGV`` in this process on a database holding the scenario."""
    monkeypatch.setenv("EXCHANGE__DATABASE__URL", f"sqlite:///{tmp_path / 'exchange.sqlite'}")
    from config.settings import load_config

    engine = open_database(load_config())
    Applier(engine).apply("A", scenario())
    engine.dispose()

    def run(*argv):
        status = main.main(["history", "trader", *argv])
        out, err = capsys.readouterr()
        return status, out.splitlines(), err.splitlines()
    return run


def test_history_trader_daily_prints_a_table_in_currency_units(history):
    assert history("daily", "alice") == (0, [
        "day         symbol  trades  bought  sold  notional  realized  unrealized    pnl",
        "2026-12-01  ACME         2       0    10     10.00      0.00        0.00   0.00",
        "2026-12-02  ACME         1       2     0      2.10     -0.10       -0.40  -0.50",
        "(2 rows)",
    ], [])


def test_history_trader_csv_has_exact_values(history):
    start = f"{DAY2.isoformat()}T00:00:00"
    status, lines, _ = history("executions", "alice", "--start", start, "--csv")
    assert (status, lines) == (0, [
        "time,symbol,trade_id,order_id,side,price,quantity,liquidity",
        f"2026-12-02T00:00:02.000000000Z,ACME,3,{o(7)},buy,1.05,2,taker",
    ])
    status, lines, _ = history("positions", "bob", "--csv")
    assert lines == ["symbol,position,avg_price,cash,realized,last,unrealized", "ACME,10,1.0,-10,0,1.05,0.5"]
    status, lines, _ = history("orders", "bob", "--end", start)
    assert [line.split()[:8] for line in lines[1:-1]] == [
        [str(o(2)), "ACME", "buy", "limit", "GTC", "1.01", "4", "filled"],
        [str(o(3)), "ACME", "buy", "limit", "IOC", "1.00", "10", "canceled"],
    ]


@pytest.mark.parametrize("argv, message", [
    (["daily", "nobody"], "error: unknown trader 'nobody'"),
    (["orders", "alice", "--symbol", "ZZZ"], "error: unknown symbol 'ZZZ' (instruments: ACME, BOLT)"),
    (["orders", "alice", "--start", "2026-12-02", "--end", "2026-12-01"],
     "error: the range ends (2026-12-01T00:00:00.000000000Z) before it starts (2026-12-02T00:00:00.000000000Z)"),
])
def test_history_trader_bad_input_is_one_error_line(history, argv, message):
    assert history(*argv) == (2, [], [message])
