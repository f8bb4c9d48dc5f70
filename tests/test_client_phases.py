"""Trading phases on the client side: the market-data client, the views and the bots.

Socket-free first: `BookSync` keeps its sequence through `PhaseUpdate`, `Indicative` and
`AuctionSummary` and takes the phase and indicative uncross from snapshots (old ones
included); the ladder and the tape render a call, a halt and an uncross; `phase_takes`
says exactly what the book refuses in each phase. Then against a real OBS and TES whose
phases the operator command sets (``python main.py phase``): the trader shell's ``book``,
the live ladder, the tape, and the bots, which send nothing in a halt, nothing the call
refuses, pause after a refusal for the phase and trade again in continuous trading.
"""

import subprocess
import sys
import time
from contextlib import contextmanager

import msgspec
import pytest
from procs import REPO, Role, endpoint, exchange_env
from programs import Program
from test_terminal import ScriptedFeed, bodies, ladders, render

from clients.book_view import ladder
from clients.bot import Bot, phase_takes
from clients.client import ExchangeClient
from clients.market_data import BookSync, MarketDataClient
from clients.marketmaker import AUCTION_PULL, TRADE_PULL, MarketMaker
from clients.random_trader import RandomTrader
from clients.runtime import wait_until_tradable
from clients.tape import SymbolTape
from config.settings import load_config
from engine.book import ReferenceBook
from engine.instrument import Instrument
from engine.messages import OrderRejected
from engine.types import OrderType, Phase, RejectReason, Side, TimeInForce
from servers import protocol as p

BUY, SELL = Side.BUY, Side.SELL
LIMIT, MARKET, STOP, STOP_LIMIT = OrderType.LIMIT, OrderType.MARKET, OrderType.STOP, OrderType.STOP_LIMIT
GTC, IOC, FOK, DAY, GTD = TimeInForce.GTC, TimeInForce.IOC, TimeInForce.FOK, TimeInForce.DAY, TimeInForce.GTD
CONTINUOUS, CALL, HALTED = Phase.CONTINUOUS, Phase.CALL, Phase.HALTED
OPERATOR, VOLATILITY = p.PhaseReason.OPERATOR, p.PhaseReason.VOLATILITY
ACME = Instrument("ACME", tick_size=1, price_scale=100)
T = 1_700_000_000_123_456_789
"""An exchange time: 22:13:20.123456 UTC."""


# ================================================================ BookSync


def test_phase_messages_keep_the_sequence_and_set_phase_indicative_and_last_auction():
    sync = BookSync("ACME")
    sync.on_snapshot(p.DepthSnapshot("ACME", 0, [], [], None))
    sync.on_update(p.PhaseUpdate("ACME", 1, CALL, OPERATOR, 0, T))
    sync.on_update(p.DepthUpdate("ACME", 2, BUY, 10_010, 5, 1))
    sync.on_update(p.DepthUpdate("ACME", 3, SELL, 9_990, 3, 1))
    sync.on_update(p.Indicative("ACME", 4, 10_010, 3, T))

    assert (sync.phase, sync.phase_reason, sync.phase_until) == (CALL, OPERATOR, 0)
    assert (sync.indicative_price, sync.indicative_volume) == (10_010, 3)
    assert sync.crossed() and sync.best_bid() == (10_010, 5) and sync.best_ask() == (9_990, 3)

    applied = [sync.on_update(m) for m in (
        p.PhaseUpdate("ACME", 5, CONTINUOUS, OPERATOR, 0, T), p.AuctionSummary("ACME", 6, 10_010, 3, T),
        p.Trade("ACME", 7, 1, 10_010, 3, SELL, T), p.DepthUpdate("ACME", 8, SELL, 9_990, 0, 0))]

    assert [len(a) for a in applied] == [1, 1, 1, 1]
    assert sync.synced and sync.sequence == 8 and sync.resyncs == 0
    assert (sync.phase, sync.indicative_price, sync.indicative_volume) == (CONTINUOUS, 0, 0)
    assert sync.last_auction == p.AuctionSummary("ACME", 6, 10_010, 3, T) and sync.last_price == 10_010
    assert not sync.crossed()


def test_phase_messages_before_the_snapshot_are_buffered_and_a_lost_one_is_a_gap():
    sync = BookSync("ACME")
    sync.on_update(p.PhaseUpdate("ACME", 4, CALL, VOLATILITY, T + 5 * 10**9, T))
    sync.on_update(p.Indicative("ACME", 5, 10_000, 7, T))
    assert sync.phase == CONTINUOUS, "nothing applies before the snapshot"

    sync.on_snapshot(p.DepthSnapshot("ACME", 3, [], [], None))
    assert (sync.phase, sync.phase_reason, sync.phase_until) == (CALL, VOLATILITY, T + 5 * 10**9)
    assert (sync.indicative_price, sync.indicative_volume, sync.sequence) == (10_000, 7, 5)

    assert sync.on_update(p.AuctionSummary("ACME", 7, 10_000, 7, T)) == [], "6 is lost"
    assert not sync.synced and sync.needs_snapshot and sync.resyncs == 1
    assert sync.last_auction is None


def test_a_snapshot_sets_phase_its_reason_and_end_and_indicative():
    sync = BookSync("ACME")
    sync.on_snapshot(p.DepthSnapshot("ACME", 0, [], [], None))
    sync.on_update(p.PhaseUpdate("ACME", 1, CALL, VOLATILITY, T, T))
    sync.on_update(p.DepthUpdate("ACME", 3, BUY, 10_000, 1, 1))  # 2 is lost

    sync.on_snapshot(p.DepthSnapshot("ACME", 3, [(10_000, 1, 1)], [], None, HALTED, 10_000, 0,
                                     p.PhaseReason.SCHEDULE, 0))

    assert sync.synced and sync.sequence == 3
    assert (sync.phase, sync.phase_reason, sync.phase_until) == (HALTED, p.PhaseReason.SCHEDULE, 0)
    assert (sync.indicative_price, sync.indicative_volume) == (10_000, 0)

    late = BookSync("ACME")
    late.on_snapshot(p.DepthSnapshot("ACME", 4, [], [], None, CALL, 0, 0, VOLATILITY, T))
    assert (late.phase, late.phase_reason, late.phase_until) == (CALL, VOLATILITY, T)


def test_a_snapshot_from_before_phases_decodes_as_continuous_with_no_indicative():
    old = msgspec.msgpack.encode([["DepthSnapshot", "ACME", 9, [[10_000, 5, 1]], [], 10_000]])
    [snapshot] = msgspec.msgpack.Decoder(list[p.SnapshotReply]).decode(old)
    sync = BookSync("ACME")
    sync.on_update(p.PhaseUpdate("ACME", 9, CALL, OPERATOR, 0, T))  # contained in the snapshot: dropped

    sync.on_snapshot(snapshot)

    assert (sync.phase, sync.indicative_price, sync.indicative_volume) == (CONTINUOUS, 0, 0)
    assert sync.synced and sync.sequence == 9 and sync.best_bid() == (10_000, 5)


# ================================================================ the views


def called_book() -> BookSync:
    """ACME in a volatility interruption's call, crossed, with an indicative uncross and an auction before."""
    sync = BookSync("ACME")
    sync.on_snapshot(p.DepthSnapshot("ACME", 0, [], [], None))
    for message in (p.PhaseUpdate("ACME", 1, CALL, OPERATOR, 0, T), p.AuctionSummary("ACME", 2, 9_990, 4, T),
                    p.Trade("ACME", 3, 1, 9_990, 4, BUY, T),
                    p.PhaseUpdate("ACME", 4, CALL, VOLATILITY, T + 5 * 10**9, T),
                    p.DepthUpdate("ACME", 5, BUY, 10_010, 5, 1), p.DepthUpdate("ACME", 6, SELL, 9_990, 3, 2),
                    p.Indicative("ACME", 7, 10_010, 3, T)):
        sync.on_update(message)
    return sync


def test_the_ladder_of_a_call_shows_why_until_when_crossed_the_indicative_and_last_auction():
    assert render(ladder(ACME, called_book(), 5)) == [
        "ACME  call  last 99.90  crossed  sequence 7",
        " orders   bid qty    price   ask qty   orders",
        "                     99.90         3        2",
        "      1         5   100.10",
        "call (volatility interruption until 22:13:25.123456)",
        "indicative uncross 3 @ 100.10",
        "last auction 4 @ 99.90 at 22:13:20.123456",
    ]


def test_the_ladder_of_a_halt_from_a_snapshot_shows_the_phase_and_no_uncross():
    sync = BookSync("ACME")
    sync.on_snapshot(p.DepthSnapshot("ACME", 3, [(9_950, 2, 1)], [(10_050, 1, 1)], 10_000, HALTED, 0, 0))
    lines = render(ladder(ACME, sync, 5))
    assert lines[0] == "ACME  halted  last 100.00  spread 1.00  sequence 3"
    assert lines[-2:] == ["halted", "indicative uncross none"], "a snapshot does not say why"


def test_the_tape_shows_phase_changes_indicatives_and_the_uncross_before_its_trades():
    feed = ScriptedFeed()
    feed.sync.on_snapshot(p.DepthSnapshot("ACME", 0, [], [], None))
    tape = SymbolTape(feed, ACME, 4)
    feed.queued += [p.PhaseUpdate("ACME", 1, CALL, VOLATILITY, T + 5 * 10**9, T),
                    p.Indicative("ACME", 2, 10_010, 3, T), p.Indicative("ACME", 3, 0, 0, T),
                    p.PhaseUpdate("ACME", 4, CONTINUOUS, VOLATILITY, 0, T), p.AuctionSummary("ACME", 5, 10_010, 3, T),
                    p.Trade("ACME", 6, 1, 10_010, 3, SELL, T)]
    assert tape.read() == [
        "22:13:20.123456  ACME  phase   call (volatility interruption until 22:13:25.123456)",
        "22:13:20.123456  ACME  phase   indicative uncross 3 @ 100.10",
        "22:13:20.123456  ACME  phase   indicative uncross none",
        "22:13:20.123456  ACME  phase   continuous (volatility interruption)",
        "22:13:20.123456  ACME  auction 3 @ 100.10 uncrossed",
        "22:13:20.123456  ACME  trade   3 @ 100.10  aggressor SELL",
    ]


# ================================================================ what each phase takes


ORDER_KINDS = [(LIMIT, tif) for tif in (GTC, IOC, FOK, DAY, GTD)] + [(MARKET, IOC), (MARKET, FOK), (STOP, GTC)] + [
    (STOP_LIMIT, tif) for tif in (GTC, IOC, DAY, GTD)]


@pytest.mark.parametrize("phase", [CONTINUOUS, CALL, HALTED])
def test_phase_takes_says_exactly_what_the_book_refuses_for_its_phase(phase):
    for order_id, (order_type, tif) in enumerate(ORDER_KINDS, 1):
        book = ReferenceBook()
        book.submit(100, SELL, LIMIT, GTC, 10_000, 10)
        book.submit(101, BUY, LIMIT, GTC, 9_990, 10)
        book.set_phase(phase)
        priced = order_type in (LIMIT, STOP_LIMIT)
        [first, *_] = book.submit(order_id, BUY, order_type, tif, 10_000 if priced else 0, 1,
                                  stop_price=10_050 if order_type in (STOP, STOP_LIMIT) else 0,
                                  expire_at=10**12 if tif == GTD else 0)
        refused = type(first) is OrderRejected and first.reason == RejectReason.NOT_ALLOWED_IN_PHASE
        assert refused == (not phase_takes(phase, order_type, tif)), (phase, order_type, tif, first)
        assert type(first) is not OrderRejected or refused, first


# ================================================================ against a real exchange


@pytest.fixture(scope="module")
def exchange(tmp_path_factory):
    env = exchange_env(tmp_path_factory.mktemp("exchange"))
    with Role(["-s", "OBS"], env) as obs, Role(["-s", "TES"], env) as tes:
        tes.wait_for("shard A ready", 10)
        yield env
        assert tes.stop() == 0, tes.output()
        assert obs.stop() == 0, obs.output()


def set_phase(env, symbol: str, phase: str) -> None:
    done = subprocess.run([sys.executable, "main.py", "phase", symbol, phase], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def logged_on(env, trader: str) -> ExchangeClient:
    client = ExchangeClient(endpoint(env, "TES__CLIENT_ENDPOINT"), trader, f"{trader}-demo-key")
    client.logon(10.0)
    wait_until_tradable(client, "ACME")
    return client


def answered(client: ExchangeClient, client_order_id: int, timeout: float = 10.0):
    """The first answer to ``client_order_id`` (accepted or rejected)."""
    return next(m for m in received(client, lambda m: getattr(m, "client_order_id", None) == client_order_id,
                                    timeout) if getattr(m, "client_order_id", None) == client_order_id)


def received(client: ExchangeClient, until, timeout: float = 10.0) -> list:
    """Messages received until one satisfies ``until``."""
    messages: list = []
    deadline = time.monotonic() + timeout
    while not any(until(m) for m in messages):
        assert time.monotonic() < deadline, f"timed out; received {messages}"
        messages.extend(client.receive(0.1))
    return messages


@pytest.fixture
def alice(exchange):
    """alice's session; ACME continuous and without her orders afterwards."""
    client = logged_on(exchange, "alice")
    yield client
    set_phase(exchange, "ACME", "continuous")
    client.mass_cancel("ACME")
    received(client, lambda m: isinstance(m, p.MassCancelDone))
    client.close()


def test_trader_book_shows_the_call_and_its_indicative_uncross(exchange, alice):
    set_phase(exchange, "ACME", "call")
    for side, price, quantity in ((BUY, 10_010, 5), (SELL, 9_990, 3)):
        assert type(answered(alice, alice.enter_order("ACME", side, LIMIT, GTC, price, quantity))) is p.OrderAccepted

    shell = Program(exchange, "trader", "--trader", "bob")
    try:
        shell.wait_for("logged on")
        shell.send("book ACME")
        title = shell.wait_for("(market-data sequence")
        shell.wait_for("100.10 | 99.90")
        assert title.split()[:4] == ["ACME", "call", "(operator)", "last"]
        assert [line.rstrip() for line in shell.lines[shell.lines.index(title) + 1:][:3]] == [
            "indicative uncross 3 @ 100.10",
            " orders   bid qty        bid | ask        ask qty   orders",
            "      1         5     100.10 | 99.90      3         1"]
        shell.send("buy ACME 1 99.00 --ioc")
        shell.wait_for("not allowed in the book's current trading phase (2004)")
        shell.send("quit")
        assert shell.finish() == 0 and shell.errors == []
    finally:
        shell.close()


def test_the_ladder_and_the_tape_follow_a_call_to_its_uncross(exchange, alice):
    book, tape = Program(exchange, "book", "ACME"), Program(exchange, "tape", "ACME")
    try:
        book.wait_for("(empty book)")
        tape.wait_for("tape of ACME")
        set_phase(exchange, "ACME", "call")
        alice.enter_order("ACME", BUY, LIMIT, GTC, 10_010, 5)
        alice.enter_order("ACME", SELL, LIMIT, GTC, 9_990, 3)
        crossed = book.wait_until(lambda lines: next((ladder for ladder in ladders(lines)
                                                      if ladder[-2:] == [["call", "(operator)"], ["indicative",
                                                                         "uncross", "3", "@", "100.10"]]),
                                                     None), "the crossed ladder")
        assert crossed[0][:3] == ["ACME", "call", "last"] and "crossed" in crossed[0]
        set_phase(exchange, "ACME", "continuous")
        rows = [["orders", "bid", "qty", "price", "ask", "qty", "orders"], ["1", "2", "100.10"]]
        after = book.wait_until(lambda lines: next((ladder for ladder in ladders(lines) if ladder[1:3] == rows
                                                    and ladder[-1][:5] == ["last", "auction", "3", "@", "100.10"]),
                                                   None), "the ladder after the uncross")
        assert after[0][:5] == ["ACME", "continuous", "last", "100.10", "sequence"]
        assert len(after) == 4 and after[-1][5] == "at"
        tape.wait_for("aggressor SELL")
        expected = ["ACME  phase   call (operator)",
                    "ACME  phase   indicative uncross 3 @ 100.10",
                    "ACME  phase   continuous (operator)",
                    "ACME  auction 3 @ 100.10 uncrossed",
                    "ACME  trade   3 @ 100.10  aggressor SELL"]
        assert [line for line in bodies(tape.lines[1:]) if line in expected] == expected
        assert book.interrupt() == 0 and tape.interrupt() == 0 and book.errors == tape.errors == []
    finally:
        book.close()
        tape.close()


def run_bot(env, kind: str, trader: str, *args: str) -> tuple[str, str]:
    """Run a bot on ACME to its end; its status fields (the last line after ``done:``) and all its output."""
    done = subprocess.run([sys.executable, "main.py", "-c", kind, "--trader", trader, "--symbol", "ACME",
                           "--seed", "5", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stderr == "", done.stderr
    return done.stdout.splitlines()[-1].split(" done: ")[1], done.stdout


def field(status: str, name: str) -> int:
    return int(status.split(f"{name} ")[1].split(",")[0])


def test_bots_in_a_halt_send_no_new_orders_and_hold_back(exchange, alice):
    set_phase(exchange, "ACME", "halt")
    for kind, trader, args in (("random", "flow1", ("--rate", "50", "--duration", "1.5")),
                               ("marketmaker", "mm1", ("--interval", "0.05", "--duration", "1.5"))):
        status, output = run_bot(exchange, kind, trader, *args)
        assert f"{kind} {trader} ACME: phase halted (operator): sending no new orders" in output, \
            "the snapshot says why"
        assert "phase halted, " in status
        assert field(status, "orders sent") == 0 and field(status, "held back") > 0, status
        assert status.endswith("open 0, rejects: none"), status


def test_bots_in_a_call_send_only_what_the_call_takes_and_trade_at_the_uncross(exchange, alice):
    set_phase(exchange, "ACME", "call")
    assert type(answered(alice, alice.enter_order("ACME", SELL, LIMIT, GTC, 9_900, 50))) is p.OrderAccepted
    flow, _ = run_bot(exchange, "random", "flow1", "--rate", "50", "--duration", "1.5", "--max-open", "1000")
    mm, _ = run_bot(exchange, "marketmaker", "mm1", "--interval", "0.05", "--duration", "1.5")
    for status in (flow, mm):
        assert "phase call" in status and status.endswith("rejects: none"), status
        assert field(status, "orders sent") > 0 and field(status, "fills") == 0, status
    assert field(flow, "held back") > 0, "the aggressive IOC orders are held back in a call"


def test_a_refusal_for_the_phase_pauses_new_orders_until_the_phase_is_seen_changing(exchange, alice):
    config = load_config(environ=exchange)
    instrument = config.instrument("ACME")
    feed = MarketDataClient(endpoint(exchange, "SHARDS__0__MARKET_DATA_ENDPOINT"),
                            endpoint(exchange, "SHARDS__0__SNAPSHOT_ENDPOINT"), "ACME")
    client = logged_on(exchange, "flow2")
    try:
        feed.connect(10.0)
        set_phase(exchange, "ACME", "call")
        bot = RandomTrader(client, feed, instrument, None, 0.01, 1, rate=100.0, max_open=1000, max_position=10**6)
        # The bot has not read the feed since the change: it still believes in continuous trading.
        assert bot.phase == CONTINUOUS and bot.may_enter(LIMIT, IOC)
        sent = bot.enter(BUY, LIMIT, IOC, 10_000, 1)
        bot.handle(received(client, lambda m: isinstance(m, p.OrderRejected)))
        assert bot.rejects == {"NOT_ALLOWED_IN_PHASE": 1} and sent.done
        assert bot.enter(BUY, LIMIT, GTC, 9_950, 1) is None, "paused: nothing new goes"
        assert bot.held_back == 1 and bot.orders_sent == 1

        while feed.phase != CALL:
            feed.poll(0.1)
        bot.follow_phase()
        assert bot.phase == CALL and bot.paused_until == 0.0
        assert bot.enter(BUY, LIMIT, IOC, 10_000, 1) is None
        resting = bot.enter(BUY, LIMIT, GTC, 9_950, 1)
        bot.handle(received(client, lambda m: isinstance(m, p.OrderAccepted)))
        assert resting.order_id is not None and bot.rejects == {"NOT_ALLOWED_IN_PHASE": 1}
        client.mass_cancel("ACME")
        received(client, lambda m: isinstance(m, p.MassCancelDone))
    finally:
        client.close()
        feed.close()


def test_a_bot_follows_a_halt_and_a_resumption_while_it_runs(exchange, alice):
    bot = Program(exchange, "random", "--trader", "flow1", "--symbol", "ACME", "--rate", "40", "--seed", "9",
                  "--duration", "30")
    try:
        bot.wait_for("READY random flow1 ACME")
        set_phase(exchange, "ACME", "halt")
        bot.wait_for("phase halted (operator): sending no new orders")
        set_phase(exchange, "ACME", "continuous")
        bot.wait_for("phase continuous (operator): trading normally")
        assert bot.interrupt() == 0 and bot.errors == []
        status = bot.lines[-1].split(" done: ")[1]
        assert field(status, "orders sent") > 0 and field(status, "held back") >= 0
        # At most the orders already in flight when the halt began are refused: no retries.
        rejects = status.split("rejects: ")[1]
        assert rejects == "none" or rejects in ("NOT_ALLOWED_IN_PHASE 1", "NOT_ALLOWED_IN_PHASE 2"), status
    finally:
        bot.close()


@contextmanager
def offline_bot(feed):
    """A `Bot` of flow1 trading ACME from ``feed``, whose client never logs on: nothing is sent."""
    client = ExchangeClient("tcp://127.0.0.1:9", "flow1", "flow1-demo-key")
    try:
        yield Bot(client, feed, load_config(environ={}).instrument("ACME"), None, 1.0)
    finally:
        client.close()


def test_a_bots_fair_value_ignores_a_crossed_book():
    feed = ScriptedFeed()
    feed.sync = called_book()
    with offline_bot(feed) as bot:
        bot.follow_phase()
        assert bot.phase == CALL and feed.crossed() and feed.mid() == 10_000.0
        assert bot.fair_value() == 9_990.0, "the last trade, not the crossed book's mid"


def test_the_market_maker_counts_an_uncross_as_one_print_and_ignores_the_indicative():
    feed = ScriptedFeed()
    feed.sync.on_snapshot(p.DepthSnapshot("ACME", 0, [], [], None))
    client = ExchangeClient("tcp://127.0.0.1:9", "mm1", "mm1-demo-key")  # never logs on: nothing is sent
    try:
        mm = MarketMaker(client, feed, load_config(environ={}).instrument("ACME"), None, 1.0, 1, size=10,
                         spread_bps=20.0, max_position=200, walk_bps=0.0)
        mm.on_market_data([p.Indicative("ACME", 1, 10_300, 9, T), p.AuctionSummary("ACME", 2, 10_100, 9, T),
                           p.Trade("ACME", 3, 1, 10_100, 4, BUY, T), p.Trade("ACME", 4, 2, 10_100, 5, BUY, T),
                           p.DepthUpdate("ACME", 5, BUY, 10_000, 0, 0), p.Trade("ACME", 6, 3, 10_050, 1, SELL, T)])
        assert mm.prints == [(10_100, AUCTION_PULL), (10_050, TRADE_PULL)]
    finally:
        client.close()
