"""The trader CLI's advanced orders: every new flag parsed (``--stop``, ``--iceberg``, ``--post-only``,
``--stp``, ``--gtd``), times typed for ``--gtd``, the flags that do not go together, and a shell
session against a real exchange entering each kind and showing what comes of it (a stop held,
triggered and canceled by self-trade prevention, a post-only refused, the open orders' details).
The client library's `ExchangeClient.enter_order` carries the same fields."""

import time
from datetime import datetime, timedelta

import pytest
from procs import Role, endpoint
from programs import Program
from test_tes_advanced import advanced_env

from clients.client import ExchangeClient
from clients.terminal import TimeError, parse_time
from clients.trader import CommandError, build_parsers, order_terms
from engine.types import OrderType, SelfTradePrevention, Side, TimeInForce
from servers import protocol as p

LIMIT, MARKET, STOP, STOP_LIMIT = OrderType.LIMIT, OrderType.MARKET, OrderType.STOP, OrderType.STOP_LIMIT
GTC, IOC, FOK, DAY, GTD = TimeInForce.GTC, TimeInForce.IOC, TimeInForce.FOK, TimeInForce.DAY, TimeInForce.GTD
NOW = datetime(2026, 12, 9, 12, 30).astimezone()


def parsed(line: str):
    words = line.split()
    return build_parsers()[words[0]].parse_args(words[1:])


def local_ns(*fields) -> int:
    return int(datetime(*fields).astimezone().timestamp()) * 1_000_000_000


# ================================================================ parsing


@pytest.mark.parametrize("line, terms", [
    ("buy ACME 10 99.50", (LIMIT, GTC, 0)),
    ("buy ACME 10", (MARKET, IOC, 0)),
    ("buy ACME 10 99.50 --stop 100.00", (STOP_LIMIT, GTC, 0)),
    ("sell ACME 10 --stop 98.00", (STOP, GTC, 0)),
    ("buy ACME 10 99.50 --stop 100.00 --ioc", (STOP_LIMIT, IOC, 0)),
    ("buy ACME 10 99.50 --gtd 16:00", (LIMIT, GTD, local_ns(2026, 12, 9, 16, 0))),
    ("buy ACME 10 99.50 --gtd 2026-12-10T09:15:30", (LIMIT, GTD, local_ns(2026, 12, 10, 9, 15, 30))),
    ("buy ACME 10 99.50 --gtd 2026-12-10T09:15Z", (LIMIT, GTD, 1_796_894_100 * 1_000_000_000)),
    ("sell ACME 10 97.00 --stop 98.00 --gtd 2026-12-10T09:15+01:00", (STOP_LIMIT, GTD, 1_796_890_500 * 1_000_000_000)),
    ("buy ACME 10 99.50 --iceberg 2 --post-only --stp cancel-maker --day", (LIMIT, DAY, 0)),
])
def test_the_order_flags_make_the_order_type_time_in_force_and_expiry(line, terms):
    assert order_terms(line.split()[0], parsed(line), NOW) == terms


def test_iceberg_post_only_and_stp_are_parsed_as_given():
    args = parsed("buy ACME 10 99.50 --iceberg 2 --post-only --stp cancel-maker")
    assert (args.iceberg, args.post_only, args.stp) == (2, True, "cancel-maker")
    args = parsed("buy ACME 10 99.50")
    assert (args.iceberg, args.post_only, args.stp, args.stop, args.gtd) == (None, False, None, None, None)


@pytest.mark.parametrize("line, error", [
    ("sell ACME 10 --stop 98.00 --gtc", "buy: a stop-market order (--stop without PRICE) has no time in force: it "
                                        "never expires and trades immediate-or-cancel once triggered; not --gtc"),
    ("sell ACME 10 --stop 98.00 --gtd 16:00", "buy: a stop-market order (--stop without PRICE) has no time in "
                                              "force: it never expires and trades immediate-or-cancel once "
                                              "triggered; not --gtd"),
    ("buy ACME 10 --gtd 16:00", "buy: a market order (no PRICE) is --ioc or --fok, not --gtd"),
    ("buy ACME 10 99 --gtd 12:00", "buy: argument --gtd: 2026-12-09 12:00:00 has passed"),
    ("buy ACME 10 99 --gtd noon", "buy: argument --gtd: 'noon' is not a time (HH:MM, HH:MM:SS, or an ISO date and "
                                  "time such as 2026-12-09T16:00)"),
])
def test_flags_that_do_not_go_together_are_an_error_naming_them(line, error):
    with pytest.raises(CommandError) as raised:
        order_terms("buy", parsed(line), NOW)
    assert str(raised.value) == error


@pytest.mark.parametrize("line, error", [
    ("buy ACME 10 99 --iceberg 0", "buy: argument --iceberg: must be positive, got 0"),
    ("buy ACME 10 99 --stp sometimes", "buy: argument --stp: invalid choice: 'sometimes'"),
    ("buy ACME 10 99 --gtc --gtd 16:00", "buy: argument --gtd: not allowed with argument --gtc"),
    ("buy ACME 10 99 --post-only yes", "buy: unrecognized arguments: yes"),
])
def test_bad_values_of_the_new_flags_are_named(line, error):
    with pytest.raises(CommandError) as raised:
        parsed(line)
    assert str(raised.value).startswith(error), raised.value


def test_times_of_day_are_today_local_time_and_iso_times_keep_their_offset():
    assert parse_time("16:00", NOW) == local_ns(2026, 12, 9, 16, 0)
    assert parse_time("9:05:07", NOW) == local_ns(2026, 12, 9, 9, 5, 7)
    assert parse_time("23:59:59.25", NOW) == local_ns(2026, 12, 9, 23, 59, 59) + 250_000_000
    assert parse_time("2026-12-31T23:00", NOW) == local_ns(2026, 12, 31, 23, 0)
    assert parse_time("2026-12-31T23:00Z", NOW) - parse_time("2026-12-31T23:00+02:00", NOW) == 7_200_000_000_000
    for text in ("24:00", "9:5", "tomorrow", "2026-13-01T10:00", ""):
        with pytest.raises(TimeError):
            parse_time(text, NOW)


# ================================================================ a session


@pytest.fixture(scope="module")
def exchange(tmp_path_factory):
    env = advanced_env(tmp_path_factory.mktemp("exchange"))
    with Role(["-s", "OBS"], env) as obs, Role(["-s", "TES"], env) as tes:
        tes.wait_for("shard A ready", 10)
        yield env
        assert tes.stop() == 0, tes.output()
        assert obs.stop() == 0, obs.output()


def test_a_session_enters_every_kind_and_shows_stops_triggering_and_self_trade_prevention(exchange):
    until = datetime.now().astimezone() + timedelta(hours=1)
    shell = Program(exchange, "trader", "--trader", "alice")
    try:
        shell.send(f"buy ACME 10 95.00 --iceberg 2 --post-only --gtd {until.isoformat(timespec='seconds')}")
        shell.send("sell ACME 5 --stop 98.00 --stp cancel-taker")
        shell.send("sell ACME 1 99.50")
        shell.send("buy ACME 3 99.50 --post-only")
        shell.send("orders")
        table = shell.wait_for("details", timeout=15)
        start = shell.lines.index(table)
        rows = shell.wait_until(lambda lines: lines[start + 1:start + 4] if len(lines) > start + 3 else None, "rows")
        accepted = [line for line in shell.lines if line.startswith("accepted")]
        iceberg_id, stop_id = accepted[0].split()[2], accepted[1].split()[2]
        assert accepted[0] == (f"accepted  order {iceberg_id} (client 1): BUY 10 ACME @ 95.00 GTD (iceberg 2, "
                               f"post-only, until {until.strftime('%Y-%m-%d %H:%M:%S')})")
        assert accepted[1] == (f"accepted  order {stop_id} (client 2): SELL 5 ACME @ market GTC (stop 98.00, "
                               "stp cancel-taker)")
        assert "rejected  client 4: post-only order would trade on arrival (2003)" in shell.lines
        assert [row.split()[0] for row in rows] == sorted([iceberg_id, stop_id, accepted[2].split()[2]])
        assert rows[1] == (f"{stop_id:>16} {2:>8} ACME     SELL GTC {'market':>12} {5:>8} {0:>8}  stop 98.00, held, "
                           "stp cancel-taker")

        # a trade at 98.00 reaches the stop; as a market order it meets alice's own iceberg first: canceled
        with ExchangeClient(endpoint(exchange, "TES__CLIENT_ENDPOINT"), "bob", "bob-demo-key") as bob, \
                ExchangeClient(endpoint(exchange, "TES__CLIENT_ENDPOINT"), "flow1", "flow1-demo-key") as flow:
            bob.logon()
            flow.logon()
            bob.enter_order("ACME", Side.BUY, LIMIT, GTC, 9_800, 5, post_only=True, stp=SelfTradePrevention.NONE)
            assert type(bob.receive(5.0)[0]) is p.OrderAccepted
            flow.enter_order("ACME", Side.SELL, LIMIT, IOC, 9_800, 5)
            shell.wait_for(f"triggered order {stop_id}: a trade at 98.00 reached its stop, 5 ACME now trading")
            shell.wait_for(f"canceled  order {stop_id}: 5 ACME (self-trade prevention)")
        shell.send("quit")
        assert shell.finish() == 0 and shell.errors == []
    finally:
        shell.close()


def test_the_client_library_sends_every_field(exchange):
    with ExchangeClient(endpoint(exchange, "TES__CLIENT_ENDPOINT"), "desk2", "desk2-demo-key") as client:
        client.logon()
        expire_at = time.time_ns() + 3_600_000_000_000
        client.enter_order("BOLT", Side.SELL, STOP_LIMIT, GTD, 24_000, 20, stop_price=24_500, expire_at=expire_at,
                           stp=SelfTradePrevention.DECREMENT)
        client.enter_order("BOLT", Side.SELL, LIMIT, GTC, 26_000, 100, display_quantity=20, post_only=True)
        first, second = _reports(client, 2)
        assert (first.order_type, first.stop_price, first.expire_at, first.stp) == (
            STOP_LIMIT, 24_500, expire_at, SelfTradePrevention.DECREMENT)
        assert (second.display_quantity, second.flags) == (20, 1)
        client.mass_cancel()


def _reports(client, count):
    """The next ``count`` messages the client receives (within 5 s)."""
    reports = []
    deadline = time.monotonic() + 5
    while len(reports) < count and time.monotonic() < deadline:
        reports += client.receive(1.0)
    return reports
