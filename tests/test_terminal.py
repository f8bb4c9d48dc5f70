"""The terminal views of the market: the tape and the book ladder, and what they share.

The socket-free parts (decimal prices and reject texts, the tape's lines around a
gap, the ladder of a book that lost its sequence) directly; the programs
themselves as subprocesses against a real OBS and TES on free ports, trading
through the client library and reading what they print.
"""

import io
import re
from typing import NamedTuple

import pytest
from procs import Role, endpoint, exchange_env, free_port
from programs import Program
from rich.console import Console

from clients.book_view import ladder
from clients.client import ExchangeClient
from clients.market_data import BookSync
from clients.runtime import wait_until_tradable
from clients.tape import SymbolTape
from clients.terminal import PriceError, parse_price, reject_text
from engine.instrument import Instrument
from engine.types import OrderType, RejectReason, Side, TimeInForce
from servers import protocol as p

BUY, SELL = Side.BUY, Side.SELL
LIMIT, MARKET = OrderType.LIMIT, OrderType.MARKET
GTC, IOC = TimeInForce.GTC, TimeInForce.IOC
R = RejectReason
ACME = Instrument("ACME", tick_size=1, price_scale=100)
CLOCK = re.compile(r"\d\d:\d\d:\d\d\.\d{6}")


# ================================================================ decimals


def test_reject_texts_of_price_rules_are_shown_in_decimals_and_others_as_sent():
    thousandths = Instrument("MILL", tick_size=10, price_scale=1000)
    assert reject_text(R.PRICE_OFF_TICK, "price 99005 is not a multiple of the tick 10", thousandths) == (
        "price 99.005 is not a multiple of the tick 0.010")
    assert reject_text(R.PRICE_OUTSIDE_BAND, "price 12000 is outside the band 9000..11000", ACME) == (
        "price 120.00 is outside the band 90.00..110.00")
    assert reject_text(R.PRICE_OUTSIDE_BAND, "price -500 is outside the band 9000..11000", ACME) == (
        "price -5.00 is outside the band 90.00..110.00")
    assert reject_text(R.NOTIONAL_LIMIT, "notional 1000100 at price 10001 is above the trader's limit 1000000",
                       ACME) == "notional 10001.00 at price 100.01 is above the trader's limit 10000.00"
    for reason, text in [(R.QUANTITY_OFF_LOT, "quantity 15 is not a multiple of the lot 10"),
                         (R.ORDER_QUANTITY_LIMIT, "quantity 101 is above the trader's order limit 100"),
                         (R.OPEN_ORDERS_LIMIT, "the trader has the maximum of 2 open orders")]:
        assert reject_text(reason, text, ACME) == text
    assert reject_text(R.PRICE_OFF_TICK, "price 25001 is not a multiple of the tick 5", None) == (
        "price 25001 is not a multiple of the tick 5"), "no instrument: as the exchange sent it"


def test_typed_prices_become_ticks_and_finer_ones_name_the_tick():
    assert parse_price(ACME, "99.5") == 9_950
    assert parse_price(ACME, "-1") == -100, "the exchange names the rule a negative price breaks"
    for text, message in [("99.005", "price 99.005 is not a multiple of the tick 0.01"),
                          ("abc", "price 'abc' is not a number"), ("nan", "price 'nan' is not a number"),
                          ("inf", "price 'inf' is not a number")]:
        with pytest.raises(PriceError) as caught:
            parse_price(ACME, text)
        assert str(caught.value) == message


# ================================================================ the tape's and the ladder's logic


class Lost(NamedTuple):
    """Queued on a `ScriptedFeed`: its connection is lost at ``at`` (`BookSync.lost`)."""

    at: int


class ScriptedFeed:
    """A `MarketDataClient` stand-in: ``poll`` applies the messages queued by the test (and `Lost`)."""

    def __init__(self) -> None:
        self.sync = BookSync("ACME")
        self.queued: list = []

    def poll(self, timeout: float = 0.0) -> list:
        applied = []
        for message in self.queued:
            if type(message) is p.DepthSnapshot:
                applied.extend(self.sync.on_snapshot(message))
            elif type(message) is Lost:
                self.sync.lost(message.at)
            else:
                applied.extend(self.sync.on_update(message))
        self.queued.clear()
        return applied

    def __getattr__(self, name):
        return getattr(self.sync, name)


def bodies(lines: list[str]) -> list[str]:
    """Tape lines without their time (checked to be one)."""
    assert all(CLOCK.fullmatch(line.split()[0]) for line in lines), lines
    return [line.split(maxsplit=1)[1] for line in lines]


def test_tape_lines_for_trades_and_quotes_and_a_gap_then_the_resync():
    feed = ScriptedFeed()
    feed.sync.on_snapshot(p.DepthSnapshot("ACME", 10, [(9_950, 10, 1)], [(10_050, 5, 1)], None))
    tape = SymbolTape(feed, ACME, 4)
    feed.queued += [p.DepthUpdate("ACME", 11, SELL, 10_050, 3, 1, 1_700_000_000_123_456_789),
                    p.Trade("ACME", 12, 7, 10_050, 2, BUY, 1_700_000_000_123_456_789),
                    p.Quote("ACME", 13, 9_950, 10, 10_050, 3, 1_700_000_000_123_456_789)]
    assert tape.read() == ["22:13:20.123456  ACME  trade   2 @ 100.50  aggressor BUY",
                           "22:13:20.123456  ACME  quote   bid 99.50 x 10  ask 100.50 x 3"]

    feed.queued += [p.Quote("ACME", 15, 0, 0, 10_050, 3)]  # 14 is lost
    assert bodies(tape.read()) == ["ACME  gap     market data lost after sequence 13; resyncing from a snapshot"]
    feed.queued += [p.Trade("ACME", 16, 8, 10_050, 3, BUY), p.DepthSnapshot("ACME", 15, [], [(10_050, 3, 1)], 10_050)]
    assert bodies(tape.read()) == ["ACME  trade   3 @ 100.50  aggressor BUY",
                                   "ACME  resync  book rebuilt at sequence 16: bid --  ask 100.50 x 3"]


def rule(line: str) -> bool:
    """Whether ``line`` is the ladder's rule under its header."""
    return bool(line.strip()) and not line.strip().strip("─")


def render(table) -> list[str]:
    """The table as a terminal of 80 columns shows it, without its rule."""
    console = Console(file=io.StringIO(), width=80)
    console.print(table)
    return [line.rstrip() for line in console.file.getvalue().splitlines() if not rule(line)]


def test_ladder_shows_asks_over_bids_and_says_when_the_book_lost_its_sequence():
    sync = BookSync("ACME")
    sync.on_snapshot(p.DepthSnapshot("ACME", 10, [(9_950, 10, 2), (9_900, 4, 1)],
                                     [(10_050, 5, 1), (10_100, 7, 3), (10_200, 1, 1)], 10_000))
    assert [line.split() for line in render(ladder(ACME, sync, 2))] == [
        ["ACME", "continuous", "last", "100.00", "spread", "1.00", "sequence", "10"],
        ["orders", "bid", "qty", "price", "ask", "qty", "orders"],
        ["101.00", "7", "3"],
        ["100.50", "5", "1"],
        ["2", "10", "99.50"],
        ["1", "4", "99.00"],
    ]
    sync.on_update(p.DepthUpdate("ACME", 12, BUY, 9_950, 0, 0))
    assert render(ladder(ACME, sync, 2))[-1] == "market data gap after sequence 10: resyncing from a snapshot"
    empty = BookSync("ACME")
    empty.on_snapshot(p.DepthSnapshot("ACME", 0, [], [], None))
    assert render(ladder(ACME, empty, 2)) == [
        "ACME  continuous  last --  sequence 0", " orders   bid qty   price   ask qty   orders", "(empty book)"]


# ================================================================ the programs against a real exchange


@pytest.fixture
def exchange(tmp_path):
    """A fresh OBS and TES; yields their environment."""
    env = exchange_env(tmp_path)
    with Role(["-s", "OBS"], env) as obs, Role(["-s", "TES"], env) as tes:
        tes.wait_for("shard A ready", 10)
        yield env
        assert tes.stop() == 0, tes.output()
        assert obs.stop() == 0, obs.output()


class Trader:
    """A client of the test's exchange that waits for the answer to each order."""

    def __init__(self, env, trader: str) -> None:
        self.client = ExchangeClient(endpoint(env, "TES__CLIENT_ENDPOINT"), trader, f"{trader}-demo-key")
        self.client.logon(10.0)
        wait_until_tradable(self.client, "ACME")

    def order(self, symbol, side, price, quantity, order_type=LIMIT, tif=GTC) -> None:
        client_order_id = self.client.enter_order(symbol, side, order_type, tif, price, quantity)
        answers = []
        while not any(getattr(m, "client_order_id", None) == client_order_id for m in answers):
            received = self.client.receive(5.0)
            assert received, f"no answer to order {client_order_id}"
            answers.extend(received)
        assert not [m for m in answers if isinstance(m, p.OrderRejected)], answers

    def close(self) -> None:
        self.client.close()


def test_tape_prints_trades_and_quotes_of_every_symbol_and_stops_on_ctrl_c(exchange):
    tape = Program(exchange, "tape")
    alice, bob = Trader(exchange, "alice"), Trader(exchange, "bob")
    try:
        tape.wait_for("tape of ACME, BOLT")
        alice.order("ACME", BUY, 9_950, 10)
        alice.order("ACME", SELL, 10_050, 5)
        bob.order("ACME", BUY, 0, 2, MARKET, IOC)
        bob.order("BOLT", SELL, 25_000, 10)
        expected = ["ACME  quote   bid 99.50 x 10  ask --",
                    "ACME  quote   bid 99.50 x 10  ask 100.50 x 5",
                    "ACME  trade   2 @ 100.50  aggressor BUY",
                    "ACME  quote   bid 99.50 x 10  ask 100.50 x 3",
                    "BOLT  quote   bid --  ask 250.00 x 10"]
        tape.wait_until(lambda lines: len(lines) > len(expected) or None, "every line")
        assert bodies(tape.lines[1:]) == expected
        assert tape.interrupt() == 0
        assert tape.errors == []
    finally:
        tape.close()
        alice.close()
        bob.close()


def test_tape_of_one_symbol_shows_only_it(exchange):
    tape = Program(exchange, "tape", "bolt")
    alice = Trader(exchange, "alice")
    try:
        tape.wait_for("tape of BOLT:")
        alice.order("ACME", BUY, 9_950, 10)
        alice.order("BOLT", BUY, 24_950, 20)
        tape.wait_for("BOLT  quote")
        assert bodies(tape.lines[1:]) == ["BOLT  quote   bid 249.50 x 20  ask --"]
        assert tape.interrupt() == 0 and tape.errors == []
    finally:
        tape.close()
        alice.close()


def ladders(lines: list[str]) -> list[list[list[str]]]:
    """The ladders printed so far (each followed by an empty line), as rows of words (no rule)."""
    blocks, block = [], []
    for line in lines:
        if rule(line):
            continue
        if line:
            block.append(line.split())
        elif block:
            blocks.append(block)
            block = []
    return blocks


def test_book_prints_the_ladder_after_each_change_and_stops_on_ctrl_c(exchange):
    book = Program(exchange, "book", "BOLT", "--levels", "2")
    alice, bob = Trader(exchange, "alice"), Trader(exchange, "bob")
    try:
        book.wait_for("(empty book)")
        # a ladder is whole once the empty line after it is read, which may come a moment later
        first = book.wait_until(lambda lines: next(iter(ladders(lines)), None), "the first ladder, whole")
        assert first[0] == ["BOLT", "continuous", "last", "--", "sequence", "0"]
        alice.order("BOLT", BUY, 24_900, 20)
        alice.order("BOLT", BUY, 24_950, 10)
        alice.order("BOLT", BUY, 24_800, 10)
        alice.order("BOLT", SELL, 25_100, 30)
        bob.order("BOLT", BUY, 0, 10, MARKET, IOC)
        final = [["orders", "bid", "qty", "price", "ask", "qty", "orders"],
                 ["251.00", "20", "1"], ["1", "10", "249.50"], ["1", "20", "249.00"]]
        last = book.wait_until(
            lambda lines: next((ladder for ladder in ladders(lines) if ladder[1:] == final), None), "the final ladder")
        assert last[0][:6] == ["BOLT", "continuous", "last", "251.00", "spread", "1.50"]
        assert book.interrupt() == 0 and book.errors == []
    finally:
        book.close()
        alice.close()
        bob.close()


@pytest.mark.parametrize("args", [("tape",), ("book", "ACME")])
def test_without_an_order_book_server_the_views_say_the_exchange_is_not_reachable(tmp_path, args):
    env = exchange_env(tmp_path)
    snapshots = f"tcp://127.0.0.1:{free_port()}"
    env["EXCHANGE__SHARDS__0__SNAPSHOT_ENDPOINT"] = snapshots
    program = Program(env, *args, "--timeout", "0.5")
    try:
        assert program.finish() == 2
        assert program.lines == []
        assert program.errors == [f"error: the exchange is not reachable: no answer from the order book server of "
                                  f"shard A ({snapshots}) within 0.5s; is it running?"]
    finally:
        program.close()


@pytest.mark.parametrize("args, error", [
    (("book",), "the following arguments are required: SYMBOL"),
    (("book", "NOPE"), "unknown symbol 'NOPE'"),
    (("book", "ACME", "--levels", "0"), "--levels must be positive, got 0"),
    (("tape", "ACME", "NOPE"), "unknown symbol 'NOPE'"),
])
def test_views_report_unusable_arguments_as_one_error_line(tmp_path, args, error):
    program = Program(exchange_env(tmp_path), *args)
    try:
        assert program.finish() == 2
        assert len(program.errors) == 1 and error in program.errors[0], program.errors
    finally:
        program.close()
