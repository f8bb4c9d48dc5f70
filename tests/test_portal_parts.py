"""The trader portal's parts that need no browser: the tables (`frontend.views`), what a typed
order must be (`frontend.portal`), the sessions of closed browser tabs (`PortalSessions`), and
serving the apps (`frontend.apps`, the ``[frontend]`` configuration)."""

import socket
import subprocess
import sys

import pytest

from config.settings import ConfigError, load_config
from database.queries import ExecutionRecord
from engine.instrument import Instrument
from engine.types import Side, TimeInForce
from frontend import apps, views
from frontend.portal import InputError, PortalSessions, parse_limit, parse_quantity
from servers.processes import REPO, exchange_env
from servers.protocol import OpenOrder, OrderFilled, Position, Positions, Trade

ACME = Instrument("ACME", tick_size=1, lot_size=1, min_quantity=1, max_quantity=100_000, price_band_bps=1000,
                  price_scale=100)
BOLT = Instrument("BOLT", tick_size=5, lot_size=10, min_quantity=10, max_quantity=100_000, price_band_bps=1000,
                  price_scale=100)
INSTRUMENTS = {"ACME": ACME, "BOLT": BOLT}


# ================================================================ tables


def plain(table):
    """``table`` with its missing values as None, to compare with literals."""
    return table.astype(object).where(table.notna(), None)


def test_the_ladder_has_asks_above_bids_highest_price_first():
    table = views.ladder(ACME, bids=[(9950, 10, 2), (9900, 5, 1)], asks=[(10000, 7, 1), (10050, 3, 3)])
    assert table.to_dict("records") == [
        {"bid orders": "", "bid size": 0, "price": "100.50", "ask size": 3, "ask orders": "3"},
        {"bid orders": "", "bid size": 0, "price": "100.00", "ask size": 7, "ask orders": "1"},
        {"bid orders": "2", "bid size": 10, "price": "99.50", "ask size": 0, "ask orders": ""},
        {"bid orders": "1", "bid size": 5, "price": "99.00", "ask size": 0, "ask orders": ""},
    ]
    assert views.ladder(ACME, [], []).empty


def test_the_top_of_book_in_decimals_and_ticks():
    assert views.side_quote(ACME, (9950, 10)) == "99.50 x 10"
    assert views.side_quote(ACME, None) == "--"
    assert views.spread_text(BOLT, (24990, 10), (25010, 20)) == "0.20 (4 ticks)"
    assert views.spread_text(BOLT, None, (25010, 20)) == "--"


def test_the_tape_is_newest_first_as_given_with_times_of_day():
    trades = [Trade("ACME", 9, 2, 10010, 4, Side.SELL, 1_700_000_000_123_456_000),
              Trade("ACME", 7, 1, 10000, 5, Side.BUY, 1_700_000_000_000_000_000)]
    assert views.tape(ACME, trades).values.tolist() == [["22:13:20.123456", "100.10", 4, "SELL"],
                                                        ["22:13:20.000000", "100.00", 5, "BUY"]]


def test_fills_merge_the_record_with_the_session_newest_first_once_each():
    recorded = [ExecutionRecord(100, "ACME", 1, 11, Side.BUY, 10000, 5, False),
                ExecutionRecord(300, "BOLT", 1, 12, Side.SELL, 25005, 10, True)]
    live = [OrderFilled(5, 12, "BOLT", Side.SELL, 25005, 10, 0, 1, True, time=300),  # recorded already
            OrderFilled(6, 13, "ACME", Side.BUY, 10010, 2, 3, 2, False, time=400)]   # not yet
    table = views.fills(INSTRUMENTS, recorded, live)
    assert table[["symbol", "side", "price", "quantity", "role", "order", "trade"]].values.tolist() == [
        ["ACME", "BUY", "100.10", 2, "maker", 13, 2],
        ["BOLT", "SELL", "250.05", 10, "taker", 12, 1],
        ["ACME", "BUY", "100.00", 5, "maker", 11, 1],
    ]


def test_open_orders_and_positions_in_decimals_and_currency():
    orders = views.open_orders(INSTRUMENTS, [OpenOrder(3, 21, "BOLT", Side.SELL, TimeInForce.DAY, 25010, 20, 10)])
    assert orders.values.tolist() == [[21, "BOLT", "SELL", "DAY", "250.10", 20, 10, 3]]
    report = Positions(1, -50_000, [Position("ACME", 5, 10012.5, 1234, -250, 10007),
                                    Position("BOLT", 0, 0.0, -990, 0, 25000)])
    assert plain(views.positions(INSTRUMENTS, report)).values.tolist() == [
        ["ACME", 5, 100.125, "100.07", 12.34, -2.5],
        ["BOLT", 0, None, "250.00", -9.9, 0.0],
    ]


# ================================================================ typed orders


@pytest.mark.parametrize("text, ticks", [("99.50", 9950), (" 100 ", 10000), ("0.01", 1), ("250.05", 25005)])
def test_a_typed_price_in_ticks(text, ticks):
    assert parse_limit(BOLT if ticks % 5 == 0 and ticks > 20000 else ACME, text) == ticks


@pytest.mark.parametrize("text, message", [
    ("", "a limit order needs a price"),
    ("abc", "price 'abc' is not a number"),
    ("nan", "price 'nan' is not a number"),
    ("99.505", "price 99.505 is not a multiple of the tick 0.01"),
])
def test_a_typed_price_that_is_not_one_is_refused_before_sending(text, message):
    with pytest.raises(InputError) as refused:
        parse_limit(ACME, text)
    assert str(refused.value) == message


@pytest.mark.parametrize("text, message", [
    ("ten", "quantity 'ten' is not a whole number of lots"),
    ("2.5", "quantity '2.5' is not a whole number of lots"),
    ("0", "quantity must be positive, got 0"),
    ("-4", "quantity must be positive, got -4"),
])
def test_a_typed_quantity_must_be_a_positive_whole_number(text, message):
    with pytest.raises(InputError) as refused:
        parse_quantity(ACME, text)
    assert str(refused.value) == message
    assert parse_quantity(BOLT, " 15 ") == 15, "off the lot: the exchange's to refuse, with its reason"


# ================================================================ sessions of closed tabs


class FakeSession:
    def __init__(self):
        self.closed = False

    def close(self):
        self.closed = True


def test_a_session_whose_browser_is_gone_for_the_grace_is_closed_and_a_reconnect_keeps_it():
    connected = {"c1": True, "c2": True}
    sessions = PortalSessions(lambda connection: connected[connection], grace_s=10)
    first, second = FakeSession(), FakeSession()
    sessions.put("b1", "c1", first)
    sessions.put("b2", "c2", second)

    connected["c1"] = connected["c2"] = False
    assert sessions.sweep(100.0) == []
    connected["c2"] = True  # a reconnect within the grace
    assert sessions.sweep(105.0) == []
    assert sessions.sweep(110.0) == ["b1"] and first.closed and not second.closed
    assert sessions.get("b1") is None and sessions.get("b2") is second and len(sessions) == 1

    connected["c2"] = False
    assert sessions.sweep(111.0) == [] and sessions.sweep(120.9) == []
    assert sessions.sweep(121.0) == ["b2"] and second.closed and len(sessions) == 0


def test_a_new_logon_in_a_browser_session_closes_its_previous_one_and_logout_closes_it():
    sessions = PortalSessions(lambda connection: True, grace_s=1)
    first, second = FakeSession(), FakeSession()
    sessions.put("b1", "c1", first)
    sessions.put("b1", "c1", second)
    assert first.closed and not second.closed and sessions.get("b1") is second
    sessions.drop("b1")
    assert second.closed and sessions.get("b1") is None


# ================================================================ serving the apps


def test_the_apps_listen_where_the_configuration_says_with_streamlit_options_on_the_command_line(tmp_path):
    config = load_config(environ=exchange_env(tmp_path, EXCHANGE__FRONTEND__TRADER_PORT="18501"))
    command = apps.command(config, "trader")
    assert command[:4] == [sys.executable, "-m", "streamlit", "run"] and command[4].endswith("trader_app.py")
    assert {"--server.address=127.0.0.1", "--server.port=18501", "--server.headless=true",
            "--browser.gatherUsageStats=false", "--client.showErrorDetails=none",
            "--runner.magicEnabled=false"} <= set(command), "no docstring of a page script is drawn"
    assert not any(option.startswith("--server.sslCertFile") for option in command)
    assert apps.url(config, "trader") == "http://127.0.0.1:18501"


def test_tls_serves_https_and_is_required_beyond_loopback(tmp_path):
    env = exchange_env(tmp_path)
    with pytest.raises(ConfigError, match="frontend.address: 0.0.0.0 is reachable beyond this host, so the apps "
                                          "must serve HTTPS"):
        load_config(environ={**env, "EXCHANGE__FRONTEND__ADDRESS": "0.0.0.0"})
    with pytest.raises(ConfigError, match="tls_cert and tls_key must be set together"):
        load_config(environ={**env, "EXCHANGE__FRONTEND__TLS_CERT": "cert.pem"})
    config = load_config(environ={**env, "EXCHANGE__FRONTEND__ADDRESS": "0.0.0.0",
                                  "EXCHANGE__FRONTEND__TLS_CERT": "cert.pem", "EXCHANGE__FRONTEND__TLS_KEY": "key.pem"})
    assert {"--server.sslCertFile=cert.pem", "--server.sslKeyFile=key.pem",
            "--server.address=0.0.0.0"} <= set(apps.command(config, "analytics"))
    assert apps.url(config, "analytics").startswith("https://127.0.0.1:")


def test_an_app_whose_port_is_taken_says_so_and_exits_1(tmp_path):
    env = exchange_env(tmp_path)
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        done = subprocess.run([sys.executable, "main.py", "--frontend", "analytics"], cwd=REPO, capture_output=True,
                              text=True, timeout=60, env={**env, "EXCHANGE__FRONTEND__ANALYTICS_PORT": str(port)})
    assert done.returncode == 1
    assert done.stdout.strip() == (f"error: the analytics dashboard cannot start: 127.0.0.1:{port} "
                                   "(frontend.analytics_port) is not available: Address already in use")
    assert "Traceback" not in done.stderr
