"""The Trading Engine Server end to end: real OBS and TES processes, raw DEALER clients.

The exchange runs on the shipped configuration plus a few test traders (appended
to a copy of ``config/exchange.toml``, their keys hashed with few iterations):
``tight`` has small risk limits, ``slow`` a message rate of 3 a second and ``deep``
and ``sweeper`` limits high enough to build and sweep a book of tens of thousands of orders. Tests
that trade get a fresh exchange; the validation and query tests share one.
"""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import msgspec
import pytest
import zmq
from procs import REPO, Role, bare, endpoint, exchange_env, free_port

from engine.instrument import Instrument
from engine.messages import OrderFilled
from engine.types import CancelReason, OrderType, RejectReason, Side, TimeInForce
from servers import protocol as p
from servers.auth import hash_api_key
from servers.processes import write_keys

BUY, SELL = Side.BUY, Side.SELL
LIMIT, MARKET = OrderType.LIMIT, OrderType.MARKET
GTC, IOC, FOK, DAY = TimeInForce.GTC, TimeInForce.IOC, TimeInForce.FOK, TimeInForce.DAY
R = RejectReason
REQUESTS = p.Codec(p.ClientRequest)
MESSAGES = p.Codec(p.ClientMessage)
TES_ID = 1

TEST_TRADERS = f"""
[[traders]]
trader_id = "tight"
api_key_hash = "{hash_api_key("tight-key", iterations=1000)}"
max_order_quantity = 100
max_notional = 1000000
max_open_orders = 2
max_messages_per_second = 1000

[[traders]]
trader_id = "deep"
api_key_hash = "{hash_api_key("deep-key", iterations=1000)}"
max_order_quantity = 100000
max_notional = 10000000000
max_open_orders = 100000
max_messages_per_second = 1000000

[[traders]]
trader_id = "sweeper"
api_key_hash = "{hash_api_key("sweeper-key", iterations=1000)}"
max_order_quantity = 100000
max_notional = 10000000000

[[traders]]
trader_id = "slow"
api_key_hash = "{hash_api_key("slow-key", iterations=1000)}"
max_messages_per_second = 3
"""
KEYS = {"tight": "tight-key", "slow": "slow-key", "deep": "deep-key", "sweeper": "sweeper-key"}
VALUED_TEXTS = {
    R.UNKNOWN_SYMBOL: r"unknown symbol '[A-Z]+'",
    R.PRICE_OFF_TICK: r"price -?\d+ is not a multiple of the tick \d+",
    R.QUANTITY_OFF_LOT: r"quantity -?\d+ is not a multiple of the lot \d+",
    R.QUANTITY_BELOW_MINIMUM: r"quantity -?\d+ is below the minimum \d+",
    R.QUANTITY_ABOVE_MAXIMUM: r"quantity \d+ is above the maximum \d+",
    R.PRICE_OUTSIDE_BAND: r"price -?\d+ is outside the band \d+\.\.\d+",
    R.ORDER_QUANTITY_LIMIT: r"quantity \d+ is above the trader's order limit \d+",
    R.NOTIONAL_LIMIT: r"notional -?\d+ at price -?\d+ is above the trader's limit \d+",
    R.OPEN_ORDERS_LIMIT: r"the trader has the maximum of \d+ open orders",
    R.MESSAGE_RATE_LIMIT: r"message rate limit exceeded: at most \d+ messages a second",
    R.DUPLICATE_CLIENT_ORDER_ID: r"client order id \d+ is already used",
    R.UNKNOWN_ORDER: r"no open order -?\d+",
}
"""The TES's texts for its refusals that name the values of the rule broken (the book's own
rejects, below 3000, and the other refusals carry their reason's standard text)."""


def text_fits(reply) -> bool:
    """Whether a reject's text is its reason's: the valued form for the TES's own checks, the
    standard text for the book's rejects (an UNKNOWN_ORDER from the book: the order was gone
    by the time the cancel reached it) and every other refusal."""
    if reply.reason is R.UNKNOWN_ORDER and reply.text == reply.reason.text:
        return True
    pattern = VALUED_TEXTS.get(reply.reason)
    return re.fullmatch(pattern, reply.text) is not None if pattern else reply.text == reply.reason.text


def config_env(tmp_path, **overrides):
    config = tmp_path / "exchange.toml"
    config.write_text((REPO / "config" / "exchange.toml").read_text() + TEST_TRADERS)
    return exchange_env(tmp_path, EXCHANGE_CONFIG=str(config), **overrides)


class Exchange:
    """A running OBS + TES and the clients connected to it."""

    def __init__(self, tmp_path, obs=True, **overrides):
        self.env = config_env(tmp_path, **overrides)
        self.context = zmq.Context()
        self.obs = self.tes = None
        try:
            self.obs = Role(["-s", "OBS"], self.env) if obs else None
            self.start_tes()
        except BaseException:
            self.close()
            raise

    def start_tes(self):
        """Start the TES; with an OBS, wait until the TES has its HelloReply (READY only means bound)."""
        self.tes = Role(["-s", "TES"], self.env)
        if self.obs is not None:
            self.tes.wait_for("shard A ready", 10)

    def start_obs(self):
        self.obs = Role(["-s", "OBS"], self.env)

    def start_second_tes(self, tmp_path):
        """Start TES 2 (its own journal and client port) on the same book server, once it is
        ready; (the role, its environment). Needs CURVE off: only TES 1's key is admitted."""
        env = {**self.env, "EXCHANGE__TES__TES_ID": "2", "EXCHANGE__TES__JOURNAL_DIR": str(tmp_path / "tes2"),
               "EXCHANGE__TES__CLIENT_ENDPOINT": f"tcp://127.0.0.1:{free_port()}"}
        second = Role(["-s", "TES"], env)
        second.wait_for("shard A ready", 10)
        return second, env

    def client(self, trader=None, cancel_on_disconnect=False):
        client = Client(self.context, endpoint(self.env, "TES__CLIENT_ENDPOINT"))
        if trader is not None:
            client.logon(trader, cancel_on_disconnect)
        return client

    def close(self):
        self.context.destroy(linger=0)
        for role in (self.tes, self.obs):
            if role is not None and role.process.poll() is None:
                role.kill()


class Client:
    """A raw DEALER speaking the client protocol; heartbeats from the TES are set aside."""

    def __init__(self, context, address):
        self.socket = context.socket(zmq.DEALER)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.connect(address)
        self.heartbeats = 0
        self.next_id = 1
        self.pending = []
        """Messages read with an earlier frame and not asked for yet."""

    def send(self, *messages):
        self.socket.send(REQUESTS.encode(list(messages)))

    def send_raw(self, *frames):
        self.socket.send_multipart(list(frames))

    def read(self, count, timeout=5.0):
        """The next ``count`` messages (heartbeats excluded; any more that came in the same frame
        are kept for the next read); fail if they do not come."""
        messages, self.pending = self.pending, []
        deadline = time.monotonic() + timeout
        while len(messages) < count:
            left = deadline - time.monotonic()
            if left <= 0 or not self.socket.poll(int(left * 1000) + 1):
                raise AssertionError(f"got {len(messages)} of {count} messages: {messages}")
            for message in map(bare, MESSAGES.decode(self.socket.recv())):
                if isinstance(message, p.Heartbeat):
                    self.heartbeats += 1
                else:
                    messages.append(message)
        messages, self.pending = messages[:count], messages[count:]
        return messages

    def frame(self, timeout):
        """The messages kept from an earlier frame, or those of the next frame (heartbeats
        excluded), [] if none comes within ``timeout``."""
        if self.pending:
            messages, self.pending = self.pending, []
            return messages
        if not self.socket.poll(int(timeout * 1000) + 1):
            return []
        return [bare(m) for m in MESSAGES.decode(self.socket.recv()) if not isinstance(m, p.Heartbeat)]

    def raw_frame(self, timeout):
        """The messages of the next frame as the TES sent them (times, report numbers and all;
        heartbeats excluded), [] if none comes within ``timeout``."""
        assert not self.pending, self.pending
        if not self.socket.poll(int(timeout * 1000) + 1):
            return []
        return [m for m in MESSAGES.decode(self.socket.recv()) if not isinstance(m, p.Heartbeat)]

    def one(self, timeout=5.0):
        return self.read(1, timeout)[0]

    def quiet(self, seconds=0.3):
        """Assert nothing but heartbeats is waiting or arrives for ``seconds``."""
        assert not self.pending, f"unexpected messages: {self.pending}"
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            if self.socket.poll(int(left * 1000) + 1):
                extra = [m for m in MESSAGES.decode(self.socket.recv()) if not isinstance(m, p.Heartbeat)]
                assert not extra, f"unexpected messages: {extra}"

    def logon(self, trader, cancel_on_disconnect=False):
        """Log on; client order ids continue where the trader's last session left off."""
        self.send(p.Logon(trader, KEYS.get(trader, f"{trader}-demo-key"), cancel_on_disconnect))
        reply = self.one(10.0)
        assert isinstance(reply, p.LogonAccepted), reply
        self.next_id = reply.next_client_order_id
        return reply

    def order(self, symbol, side, price, quantity, tif=GTC, order_type=LIMIT, client_order_id=None):
        """Send an EnterOrder; its client order id."""
        if client_order_id is None:
            client_order_id = self.next_id
            self.next_id += 1
        self.send(p.EnterOrder(client_order_id, symbol, side, order_type, tif, price, quantity))
        return client_order_id

    def accepted(self, symbol, side, price, quantity, tif=GTC):
        """Enter an order that must rest; its OrderAccepted."""
        client_order_id = self.order(symbol, side, price, quantity, tif)
        reply = self.one()
        assert isinstance(reply, p.OrderAccepted) and reply.client_order_id == client_order_id, reply
        return reply

    def rejected(self, *args, **kwargs):
        """Enter an order that must be rejected; the reason (its text checked by `text_fits`)."""
        reason, text = self.refusal(*args, **kwargs)
        return reason

    def refusal(self, *args, **kwargs):
        """Enter an order that must be rejected; its reason and text."""
        client_order_id = self.order(*args, **kwargs)
        reply = self.one()
        assert isinstance(reply, p.OrderRejected) and reply.client_order_id == client_order_id, reply
        assert text_fits(reply), reply
        return reply.reason, reply.text

    def open_orders(self):
        self.send(p.QueryOpenOrders(77))
        reply = self.one()
        assert isinstance(reply, p.OpenOrders) and reply.request_id == 77, reply
        return reply.orders

    def positions(self):
        self.send(p.QueryPositions(78))
        reply = self.one()
        assert isinstance(reply, p.Positions) and reply.request_id == 78, reply
        return reply

    def book(self, symbol="ACME"):
        self.send(p.QueryBook(79, symbol, 10))
        reply = self.one()
        assert isinstance(reply, p.Book) and reply.request_id == 79, reply
        return reply.bids, reply.asks


@pytest.fixture
def exchange(tmp_path):
    """A fresh exchange for one test."""
    exchange = Exchange(tmp_path)
    yield exchange
    exchange.close()


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """One exchange for the tests that leave no resting orders behind."""
    exchange = Exchange(tmp_path_factory.mktemp("shared"))
    yield exchange
    exchange.close()


def is_exchange_id(order_id):
    return order_id >> 48 == TES_ID and order_id & ((1 << 48) - 1) > 0


# ================================================================ sessions


def test_logon_with_the_right_key_is_accepted(shared):
    client = shared.client()
    assert client.logon("alice") == p.LogonAccepted("alice", 1000, 5000)


@pytest.mark.parametrize("trader, key", [("alice", "bob-demo-key"), ("alice", "alice-demo-key "), ("nobody", "x")])
def test_logon_with_a_wrong_key_or_trader_is_refused_bad_credentials(shared, trader, key):
    client = shared.client()
    client.send(p.Logon(trader, key))
    assert client.one() == p.LogonRejected(R.BAD_CREDENTIALS, R.BAD_CREDENTIALS.text)
    client.send(p.QueryPositions(1))
    assert client.one().reason is R.NOT_LOGGED_ON


def test_logon_with_an_empty_key_is_malformed(shared):
    client = shared.client()
    client.send_raw(msgspec.msgpack.encode([["Logon", "alice", "", False]]))
    assert client.one().reason is R.MALFORMED_MESSAGE


def test_requests_before_logon_are_refused_not_logged_on(shared):
    client = shared.client()
    client.send(p.EnterOrder(1, "ACME", BUY, LIMIT, GTC, 10_000, 1), p.QueryPositions(1), p.MassCancel(), p.Logout())
    assert client.read(4) == [p.SessionRejected(R.NOT_LOGGED_ON, R.NOT_LOGGED_ON.text)] * 4


def test_second_logon_on_a_session_is_refused_already_logged_on(shared):
    client = shared.client("bob")
    client.send(p.Logon("bob", "bob-demo-key"))
    assert client.one() == p.LogonRejected(R.ALREADY_LOGGED_ON, R.ALREADY_LOGGED_ON.text)


def test_logon_from_a_new_connection_takes_over_the_session(exchange):
    old = exchange.client("alice")
    new = exchange.client("alice")
    assert old.one() == p.LoggedOut(p.EndReason.REPLACED, "replaced by a new logon of the same trader")
    accepted = new.accepted("ACME", BUY, 9_990, 1)
    old.quiet(0.2)
    new.send(p.CancelOrder(50, accepted.order_id))
    assert new.one() == p.OrderCanceled(50, accepted.order_id, "ACME", 1, CancelReason.REQUESTED)


def test_logout_answers_logged_out_and_ends_the_session(shared):
    client = shared.client("mm1")
    client.send(p.Logout())
    assert client.one() == p.LoggedOut(p.EndReason.LOGOUT, "logged out")
    client.send(p.QueryPositions(1))
    assert client.one().reason is R.NOT_LOGGED_ON


# ================================================================ trading


def test_trade_between_two_traders_reports_every_step_and_books_positions(exchange):
    alice, bob = exchange.client("alice"), exchange.client("bob")

    sell = alice.accepted("ACME", SELL, 10_050, 10)
    assert sell == p.OrderAccepted(1, sell.order_id, "ACME", SELL, LIMIT, GTC, 10_050, 10)
    assert is_exchange_id(sell.order_id)

    bob.order("ACME", BUY, 10_060, 4)
    accepted, filled = bob.read(2)
    assert accepted == p.OrderAccepted(1, accepted.order_id, "ACME", BUY, LIMIT, GTC, 10_060, 4)
    assert accepted.order_id > sell.order_id
    assert filled == p.OrderFilled(1, accepted.order_id, "ACME", BUY, 10_050, 4, 0, 1, True)
    assert alice.one() == p.OrderFilled(1, sell.order_id, "ACME", SELL, 10_050, 4, 6, 1, False)

    bob.order("ACME", BUY, 10_050, 10, IOC)
    accepted, filled, canceled = bob.read(3)
    assert accepted == p.OrderAccepted(2, accepted.order_id, "ACME", BUY, LIMIT, IOC, 10_050, 10)
    assert filled == p.OrderFilled(2, accepted.order_id, "ACME", BUY, 10_050, 6, 4, 2, True)
    assert canceled == p.OrderCanceled(2, accepted.order_id, "ACME", 4, CancelReason.UNFILLED)
    assert alice.one() == p.OrderFilled(1, sell.order_id, "ACME", SELL, 10_050, 6, 0, 2, False)

    # alice buys half back higher: she realizes a loss, bob the same gain
    resting = bob.accepted("ACME", SELL, 10_100, 5)
    alice.order("ACME", BUY, 10_100, 5, IOC)
    accepted, filled = alice.read(2)
    assert filled == p.OrderFilled(2, accepted.order_id, "ACME", BUY, 10_100, 5, 0, 3, True)
    assert bob.one() == p.OrderFilled(3, resting.order_id, "ACME", SELL, 10_100, 5, 0, 3, False)

    assert alice.positions() == p.Positions(78, 50_000, [p.Position("ACME", -5, 10_050.0, -250, -250, 10_100)])
    assert bob.positions() == p.Positions(78, -50_000, [p.Position("ACME", 5, 10_050.0, 250, 250, 10_100)])
    assert alice.open_orders() == [] and bob.open_orders() == []
    assert bob.book() == ([], [])
    alice.quiet(0.2)
    bob.quiet(0.0)


def test_reports_reach_the_maker_only_once_when_both_sides_are_the_same_trader(exchange):
    alice = exchange.client("alice")
    sell = alice.accepted("ACME", SELL, 10_000, 3)
    alice.order("ACME", BUY, 10_000, 3, IOC)
    accepted, first, second = alice.read(3)
    assert {(m.order_id, m.aggressor, m.leaves) for m in (first, second)} == {
        (sell.order_id, False, 0), (accepted.order_id, True, 0)}
    alice.quiet(0.2)
    positions = alice.positions()
    assert (positions.cash, positions.positions[0].quantity, positions.positions[0].realized_pnl) == (0, 0, 0)


def test_a_sweep_whose_book_reply_exceeds_the_client_frame_limit_is_reported_in_full(exchange):
    """One market order fills 25,000 makers: its one Executed is over MAX_FRAME_BYTES."""
    makers, count = exchange.client("deep"), 25_000
    for start in range(0, count, 5_000):
        makers.send(*[p.EnterOrder(i + 1, "ACME", SELL, LIMIT, GTC, 10_000 + i % 500, 1)
                      for i in range(start, start + 5_000)])
    accepted = makers.read(count, timeout=60)
    assert all(isinstance(m, p.OrderAccepted) for m in accepted)
    fills = [OrderFilled(m.order_id, 2**48, m.price, 1, 0, count - i, BUY, i) for i, m in enumerate(accepted)]
    assert len(p.Codec(p.ObsReply).encode([p.Executed(1, "ACME", fills)])) > p.MAX_FRAME_BYTES

    taker = exchange.client("sweeper")
    taker.order("ACME", BUY, 0, count, IOC, MARKET)
    reports = taker.read(1 + count, timeout=60)
    assert isinstance(reports[0], p.OrderAccepted)
    assert [(m.price, m.quantity, m.leaves) for m in reports[1:]] == [
        (price, 1, count - 1 - i) for i, price in enumerate(sorted(10_000 + i % 500 for i in range(count)))]
    maker_fills = makers.read(count, timeout=60)
    assert sorted(m.order_id for m in maker_fills) == sorted(m.order_id for m in accepted)
    assert taker.positions().positions[0].quantity == count
    assert makers.open_orders() == []


def test_cancel_replace_and_mass_cancel_of_own_orders(exchange):
    alice, bob = exchange.client("alice"), exchange.client("bob")
    first = alice.accepted("ACME", BUY, 9_990, 5)
    second = alice.accepted("ACME", BUY, 9_980, 5)
    third = alice.accepted("BOLT", SELL, 25_100, 20)

    alice.send(p.CancelOrder(10, first.order_id))
    assert alice.one() == p.OrderCanceled(10, first.order_id, "ACME", 5, CancelReason.REQUESTED)
    alice.send(p.CancelOrder(11, first.order_id))
    assert alice.one() == p.CancelRejected(11, first.order_id, R.UNKNOWN_ORDER, f"no open order {first.order_id}")

    alice.send(p.ReplaceOrder(12, second.order_id, 9_980, 3))
    assert alice.one() == p.OrderReplaced(12, second.order_id, "ACME", 9_980, 3, True)
    alice.send(p.ReplaceOrder(13, second.order_id, 9_985, 4))
    assert alice.one() == p.OrderReplaced(13, second.order_id, "ACME", 9_985, 4, False)
    alice.send(p.ReplaceOrder(14, second.order_id, 9_985, 100_001))
    assert alice.one() == p.ReplaceRejected(14, second.order_id, R.QUANTITY_ABOVE_MAXIMUM,
                                            "quantity 100001 is above the maximum 100000")
    alice.send(p.ReplaceOrder(15, 12345, 9_985, 4))
    assert alice.one() == p.ReplaceRejected(15, 12345, R.UNKNOWN_ORDER, "no open order 12345")
    alice.send(p.ReplaceOrder(16, second.order_id, 12_000, 4), p.ReplaceOrder(17, third.order_id, 25_102, 20))
    assert alice.read(2) == [
        p.ReplaceRejected(16, second.order_id, R.PRICE_OUTSIDE_BAND, "price 12000 is outside the band 9000..11000"),
        p.ReplaceRejected(17, third.order_id, R.PRICE_OFF_TICK, "price 25102 is not a multiple of the tick 5")]

    # someone else's order is unknown to bob, and untouched
    bob.send(p.CancelOrder(1, second.order_id), p.ReplaceOrder(2, third.order_id, 25_000, 10))
    assert bob.read(2) == [p.CancelRejected(1, second.order_id, R.UNKNOWN_ORDER, f"no open order {second.order_id}"),
                           p.ReplaceRejected(2, third.order_id, R.UNKNOWN_ORDER, f"no open order {third.order_id}")]
    assert bob.book() == ([(9_985, 4, 1)], [])

    assert alice.open_orders() == [p.OpenOrder(2, second.order_id, "ACME", BUY, GTC, 9_985, 4, 0),
                                   p.OpenOrder(3, third.order_id, "BOLT", SELL, GTC, 25_100, 20, 0)]
    alice.send(p.MassCancel("BOLT"))
    assert alice.read(2) == [p.MassCancelDone("BOLT", 1),
                             p.OrderCanceled(3, third.order_id, "BOLT", 20, CancelReason.MASS_CANCEL)]
    alice.send(p.MassCancel())
    assert alice.read(2) == [p.MassCancelDone("", 1),
                             p.OrderCanceled(2, second.order_id, "ACME", 4, CancelReason.MASS_CANCEL)]
    alice.send(p.MassCancel())
    assert alice.one() == p.MassCancelDone("", 0)
    assert alice.open_orders() == []


def test_book_rejects_are_relayed_with_their_code(exchange):
    alice = exchange.client("alice")
    assert alice.rejected("ACME", BUY, 0, 5, GTC, MARKET) is R.MARKET_ORDER_CANNOT_REST
    assert alice.rejected("ACME", BUY, 10_000, 5, FOK) is R.FOK_NOT_FILLABLE
    alice.order("ACME", SELL, 0, 5, IOC, MARKET)
    accepted, canceled = alice.read(2)
    assert canceled == p.OrderCanceled(3, accepted.order_id, "ACME", 5, CancelReason.UNFILLED)


def test_price_band_follows_the_last_trade(exchange):
    alice, bob = exchange.client("alice"), exchange.client("bob")
    assert alice.rejected("ACME", SELL, 11_001, 1) is R.PRICE_OUTSIDE_BAND  # reference 10,000 +- 10%
    alice.accepted("ACME", SELL, 11_000, 1)
    bob.order("ACME", BUY, 11_000, 1, IOC)
    bob.read(2)
    alice.one()
    alice.accepted("ACME", SELL, 12_100, 1)  # now centred on 11,000
    assert alice.rejected("ACME", SELL, 9_899, 1) is R.PRICE_OUTSIDE_BAND


def test_open_orders_limit(exchange):
    tight = exchange.client("tight")
    tight.accepted("ACME", BUY, 9_000, 1)
    second = tight.accepted("ACME", BUY, 9_001, 1)
    assert tight.refusal("ACME", BUY, 9_002, 1) == (R.OPEN_ORDERS_LIMIT, "the trader has the maximum of 2 open orders")
    tight.send(p.CancelOrder(9, second.order_id))
    tight.one()
    tight.accepted("ACME", BUY, 9_002, 1)


# ================================================================ validation (shared exchange)


@pytest.mark.parametrize(
    "trader, symbol, side, price, quantity, tif, order_type, reason, text",
    [
        ("alice", "NOPE", BUY, 10_000, 1, GTC, LIMIT, R.UNKNOWN_SYMBOL, "unknown symbol 'NOPE'"),
        ("alice", "BOLT", BUY, 25_001, 10, GTC, LIMIT, R.PRICE_OFF_TICK, "price 25001 is not a multiple of the tick 5"),
        ("alice", "BOLT", BUY, 25_000, 15, GTC, LIMIT, R.QUANTITY_OFF_LOT,
         "quantity 15 is not a multiple of the lot 10"),
        ("alice", "BOLT", BUY, 25_000, 0, GTC, LIMIT, R.QUANTITY_BELOW_MINIMUM, "quantity 0 is below the minimum 10"),
        ("alice", "ACME", BUY, 10_000, 100_001, GTC, LIMIT, R.QUANTITY_ABOVE_MAXIMUM,
         "quantity 100001 is above the maximum 100000"),
        ("alice", "ACME", BUY, 11_001, 1, GTC, LIMIT, R.PRICE_OUTSIDE_BAND,
         "price 11001 is outside the band 9000..11000"),
        ("alice", "ACME", SELL, 8_999, 1, GTC, LIMIT, R.PRICE_OUTSIDE_BAND,
         "price 8999 is outside the band 9000..11000"),
        ("alice", "BOLT", SELL, 27_505, 10, GTC, LIMIT, R.PRICE_OUTSIDE_BAND,
         "price 27505 is outside the band 22500..27500"),
        ("tight", "ACME", BUY, 9_000, 101, GTC, LIMIT, R.ORDER_QUANTITY_LIMIT,
         "quantity 101 is above the trader's order limit 100"),
        ("tight", "ACME", BUY, 10_001, 100, GTC, LIMIT, R.NOTIONAL_LIMIT,
         "notional 1000100 at price 10001 is above the trader's limit 1000000"),
        ("tight", "BOLT", BUY, 0, 50, IOC, MARKET, R.NOTIONAL_LIMIT,  # valued at the reference 25,000
         "notional 1250000 at price 25000 is above the trader's limit 1000000"),
    ],
)
def test_validation_and_risk_rejects_name_the_rule_and_its_values(shared, trader, symbol, side, price, quantity, tif,
                                                                  order_type, reason, text):
    client = shared.client(trader)
    assert client.refusal(symbol, side, price, quantity, tif, order_type) == (reason, text)


def test_market_order_within_the_notional_limit_goes_to_the_book(shared):
    tight = shared.client("tight")
    tight.order("ACME", BUY, 0, 100, IOC, MARKET)  # 100 x reference 10,000 = the limit exactly
    accepted, canceled = tight.read(2)
    assert isinstance(accepted, p.OrderAccepted)
    assert canceled == p.OrderCanceled(accepted.client_order_id, accepted.order_id, "ACME", 100,
                                       CancelReason.UNFILLED)


def test_duplicate_client_order_id_in_a_session(shared):
    client = shared.client("mm2")
    client.send(p.EnterOrder(7, "NOPE", BUY, LIMIT, GTC, 1, 1), p.EnterOrder(7, "NOPE", BUY, LIMIT, GTC, 1, 1))
    assert [(m.reason, m.text) for m in client.read(2)] == [
        (R.UNKNOWN_SYMBOL, "unknown symbol 'NOPE'"), (R.DUPLICATE_CLIENT_ORDER_ID, "client order id 7 is already used")]


def test_message_rate_limit(shared):
    client = shared.client("slow")  # 3 a second; one frame is handled at one instant
    orders = [p.EnterOrder(i, "NOPE", BUY, LIMIT, GTC, 1, 1) for i in range(1, 5)]
    client.send(*orders, p.CancelOrder(9, 1), p.QueryPositions(3), p.MassCancel(), p.Heartbeat())
    replies = client.read(7)
    assert [(type(m), m.reason) for m in replies[:6]] == [(p.OrderRejected, R.UNKNOWN_SYMBOL)] * 3 + [
        (p.OrderRejected, R.MESSAGE_RATE_LIMIT), (p.CancelRejected, R.MESSAGE_RATE_LIMIT),
        (p.QueryRejected, R.MESSAGE_RATE_LIMIT)]
    assert [m.text for m in replies[3:5]] == ["message rate limit exceeded: at most 3 messages a second"] * 2
    assert replies[6] == p.MassCancelDone("", 0)  # mass cancel (and heartbeats) are never throttled
    time.sleep(0.4)  # 1.2 tokens
    client.send(p.EnterOrder(10, "NOPE", BUY, LIMIT, GTC, 1, 1))
    assert client.one().reason is R.UNKNOWN_SYMBOL


# ================================================================ queries


def test_queries(shared):
    client = shared.client("flow1")
    client.send(p.QueryInstruments(5))
    instruments = client.one()
    assert instruments.request_id == 5
    assert [i.symbol for i in instruments.instruments] == ["ACME", "BOLT"]
    assert instruments.instruments[1] == Instrument("BOLT", tick_size=5, lot_size=10, min_quantity=10,
                                                    max_quantity=100_000, price_band_bps=1000, price_scale=100,
                                                    max_iceberg_slices=50, max_stop_distance_bps=1000)
    assert client.positions() == p.Positions(78, 0, [])
    assert client.open_orders() == []
    client.send(p.QueryBook(6, "NOPE", 5))
    assert client.one() == p.QueryRejected(6, R.UNKNOWN_SYMBOL, R.UNKNOWN_SYMBOL.text)
    resting = client.accepted("BOLT", BUY, 24_000, 30)
    client.send(p.QueryBook(7, "BOLT", 5))
    book = client.one()
    assert (book.request_id, book.symbol, book.bids) == (7, "BOLT", [(24_000, 30, 1)])
    client.send(p.CancelOrder(8, resting.order_id))
    client.one()


# ================================================================ bad input


def garbage():
    return [
        [b""],
        [os.urandom(64)],
        [b"\x91"],
        [msgspec.msgpack.encode({"a": 1})],
        [msgspec.msgpack.encode([["NoSuchMessage", 1]])],
        [msgspec.msgpack.encode([["EnterOrder", "x", "ACME", 0, 0, 0, 1, 1]])],
        [msgspec.msgpack.encode([["EnterOrder", 1, "ACME", 7, 0, 0, 1, 1]])],
        [REQUESTS.encode([p.Heartbeat()]), b"extra"],
        [msgspec.msgpack.encode([["Heartbeat"]] * (p.MAX_BATCH + 1))],
        [b"\x00" * (p.MAX_FRAME_BYTES + 1)],
    ]


def test_garbage_is_refused_per_frame_and_trading_goes_on(exchange):
    stranger = exchange.client()
    for frames in garbage():
        stranger.send_raw(*frames)
    replies = stranger.read(len(garbage()))
    assert all(isinstance(m, p.SessionRejected) for m in replies)
    assert [m.reason for m in replies] == [R.MALFORMED_MESSAGE] * 8 + [R.FRAME_TOO_LARGE] * 2

    alice, bob = exchange.client("alice"), exchange.client("bob")
    for frames in garbage():
        alice.send_raw(*frames)
    assert all(isinstance(m, p.SessionRejected) for m in alice.read(len(garbage())))
    sell = alice.accepted("ACME", SELL, 10_000, 2)  # the session survived its own garbage
    bob.order("ACME", BUY, 10_000, 2, IOC)
    assert bob.read(2)[1].quantity == 2
    assert alice.one().order_id == sell.order_id
    assert exchange.tes.process.poll() is None


def test_oversized_frame_drops_only_that_connection(exchange):
    big = exchange.client()
    big.send_raw(b"\x00" * (8 * p.MAX_FRAME_BYTES))
    alice = exchange.client("alice")
    alice.accepted("ACME", SELL, 10_000, 1)


# ================================================================ liveness, availability, shutdown


def test_heartbeats_and_cancel_on_disconnect_after_timeout(tmp_path):
    exchange = Exchange(tmp_path, EXCHANGE__TES__HEARTBEAT_MS="100", EXCHANGE__TES__SESSION_TIMEOUT_MS="600")
    try:
        leaver = exchange.client("alice", cancel_on_disconnect=True)
        keeper = exchange.client("bob")
        resting = leaver.accepted("ACME", BUY, 9_990, 5)
        keeper.accepted("ACME", BUY, 9_980, 7)
        deadline = time.monotonic() + 0.9  # bob keeps his session alive, alice goes silent
        while time.monotonic() < deadline:
            keeper.send(p.Heartbeat())
            time.sleep(0.1)
        assert leaver.one() == p.LoggedOut(p.EndReason.TIMEOUT, p.EndReason.TIMEOUT.text)
        assert leaver.heartbeats >= 3
        keeper.send(p.QueryBook(1, "ACME", 5))
        assert keeper.one().bids == [(9_980, 7, 1)]
        leaver.send(p.QueryOpenOrders(1))
        assert leaver.one().reason is R.NOT_LOGGED_ON
        again = exchange.client("alice")
        assert again.one() == p.OrderCanceled(resting.client_order_id, resting.order_id, "ACME", 5,
                                              CancelReason.DISCONNECTED), "the report made while away, at logon"
        assert again.open_orders() == []
        assert exchange.tes.stop() == 0
    finally:
        exchange.close()


def test_logout_with_cancel_on_disconnect_cancels_open_orders(exchange):
    alice = exchange.client("alice", cancel_on_disconnect=True)
    alice.accepted("ACME", BUY, 9_990, 5)
    alice.send(p.Logout())
    assert alice.one() == p.LoggedOut(p.EndReason.LOGOUT, "logged out")
    bob = exchange.client("bob")
    assert bob.book() == ([], [])


def test_orders_wait_for_the_book_server_then_trade(tmp_path):
    exchange = Exchange(tmp_path, obs=False)
    try:
        alice = exchange.client("alice")
        assert alice.rejected("ACME", BUY, 10_000, 1) is R.BOOK_UNAVAILABLE
        alice.send(p.QueryBook(1, "ACME", 5))
        assert alice.one() == p.QueryRejected(1, R.BOOK_UNAVAILABLE, R.BOOK_UNAVAILABLE.text)
        exchange.start_obs()
        deadline = time.monotonic() + 10
        while True:
            alice.order("ACME", BUY, 10_000, 1)
            reply = alice.one()
            if isinstance(reply, p.OrderAccepted):
                break
            assert reply.reason is R.BOOK_UNAVAILABLE and time.monotonic() < deadline
            time.sleep(0.05)
        assert is_exchange_id(reply.order_id)
    finally:
        exchange.close()


def test_a_stopped_book_server_is_taken_as_disconnected_and_its_orders_refused_until_it_resumes(tmp_path):
    """Stopped (SIGSTOP), a book server answers nothing, not even ZeroMQ's heartbeat, as one whose
    host is lost: the TES closes the connection and refuses its symbols at once, instead of holding
    orders it cannot answer; resumed, it answers a Hello again and trades."""
    exchange = Exchange(tmp_path, EXCHANGE__TES__SHARD_HEARTBEAT_MS="200", EXCHANGE__TES__SESSION_TIMEOUT_MS="60000")
    try:
        alice = exchange.client("alice")
        alice.order("ACME", BUY, 9_990, 1)
        assert type(alice.one()) is p.OrderAccepted
        exchange.obs.process.send_signal(signal.SIGSTOP)
        try:
            exchange.tes.wait_for("shard A disconnected; its symbols are unavailable", 10)
            assert alice.rejected("ACME", BUY, 9_980, 1) is R.BOOK_UNAVAILABLE
        finally:
            exchange.obs.process.send_signal(signal.SIGCONT)
        deadline = time.monotonic() + 15
        while sum("shard A ready" in line for line in exchange.tes.lines) < 2:
            assert time.monotonic() < deadline, "the book server did not answer a Hello again"
            time.sleep(0.05)
        alice.order("ACME", BUY, 9_970, 1)
        assert type(alice.one()) is p.OrderAccepted
        assert len(alice.open_orders()) == 2, "the order before the stop rests on"
    finally:
        exchange.close()


def test_book_server_killed_mid_flow_every_order_is_answered_once_and_the_tes_agrees_with_the_book(exchange):
    """kill -9 with thousands of orders in flight: after the restart the OBS replays the replies
    the TES missed and the TES refuses what never reached the journal (the second half, sent
    while the OBS was stopped), so no order is left unanswered and the trader's open orders
    are exactly the book."""
    trader, count = exchange.client("deep"), 6_000
    orders = {i + 1: (BUY if i % 2 else SELL, 10_000 + (i * 7) % 11 - 5, 1 + i % 9) for i in range(count)}

    def send(first, last):
        for start in range(first, last, 500):
            trader.send(*[p.EnterOrder(cid, "ACME", side, LIMIT, GTC, price, quantity)
                          for cid, (side, price, quantity) in list(orders.items())[start:start + 500]])

    first_answers, fills = {}, []

    def read(messages):
        for message in messages:
            if isinstance(message, p.OrderAccepted | p.OrderRejected):
                assert message.client_order_id not in first_answers, message
                first_answers[message.client_order_id] = message
            elif isinstance(message, p.OrderFilled):
                fills.append(message)

    send(0, count // 2)
    while len(first_answers) < 1_000:
        read(trader.frame(5.0))
    exchange.obs.process.send_signal(signal.SIGSTOP)
    send(count // 2, count)
    time.sleep(0.3)
    exchange.obs.kill()
    exchange.start_obs()
    deadline = time.monotonic() + 30
    while len(first_answers) < count:
        assert time.monotonic() < deadline, f"{count - len(first_answers)} orders never answered"
        trader.send(p.Heartbeat())
        read(trader.frame(0.5))
    trader.quiet(0.5)
    refused = [m for m in first_answers.values() if isinstance(m, p.OrderRejected)]
    assert all(m.reason is R.BOOK_UNAVAILABLE for m in refused)
    assert count // 2 <= len(refused) <= count - 1_000, "the first 1,000 were answered before the stop"

    open_orders = trader.open_orders()
    accepted = {m.order_id: m for m in first_answers.values() if isinstance(m, p.OrderAccepted)}
    filled = {}
    for fill in fills:
        filled[fill.order_id] = filled.get(fill.order_id, 0) + fill.quantity
    assert {o.order_id: o.quantity for o in open_orders} == {
        order_id: m.quantity - filled.get(order_id, 0)
        for order_id, m in accepted.items() if m.quantity > filled.get(order_id, 0)}
    levels = {}
    for order in open_orders:
        key = (order.side, order.price)
        levels[key] = levels.get(key, 0) + order.quantity
    trader.send(p.QueryBook(5, "ACME", 1000))
    book = trader.one()
    assert {(BUY, price): quantity for price, quantity, _ in book.bids} | {
        (SELL, price): quantity for price, quantity, _ in book.asks} == levels


def end_of_day(env, *args):
    return subprocess.run([sys.executable, "main.py", "end-of-day", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=60)


def test_end_of_day_expires_day_orders_reports_them_and_leaves_the_rest(exchange):
    alice, bob = exchange.client("alice"), exchange.client("bob")
    day = alice.accepted("ACME", BUY, 9_990, 5, DAY)
    gtc = alice.accepted("ACME", BUY, 9_980, 7)
    bolt = bob.accepted("BOLT", SELL, 25_100, 20, DAY)
    partly = bob.accepted("ACME", SELL, 10_020, 9, DAY)
    alice.order("ACME", BUY, 10_020, 4, IOC)
    assert [type(m) for m in alice.read(2)] == [p.OrderAccepted, p.OrderFilled]
    assert bob.one().leaves == 5

    done = end_of_day(exchange.env)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"expired": {"ACME": 2, "BOLT": 1}}
    assert alice.one() == p.OrderExpired(day.client_order_id, day.order_id, "ACME", 5)
    assert sorted(bob.read(2), key=lambda m: m.symbol) == [
        p.OrderExpired(partly.client_order_id, partly.order_id, "ACME", 5),
        p.OrderExpired(bolt.client_order_id, bolt.order_id, "BOLT", 20),
    ]
    assert [o.order_id for o in alice.open_orders()] == [gtc.order_id] and bob.open_orders() == []
    assert alice.book() == ([(9_980, 7, 1)], [])

    again = end_of_day(exchange.env, "--symbol", "ACME")
    assert json.loads(again.stdout) == {"expired": {"ACME": 0}}
    unknown = end_of_day(exchange.env, "--symbol", "NOPE")
    assert unknown.returncode == 2 and unknown.stderr == "error: no shard serves NOPE\n"
    alice.quiet(0.2)


def split_shards(env, tmp_path):
    """Make the configuration ``env`` names two book servers, A owning ACME and B owning BOLT
    (journal in ``tmp_path``), with their keys."""
    config = Path(env["EXCHANGE_CONFIG"])
    text = config.read_text()
    shards = text[text.index("[[shards]]"):text.index("[[instruments]]")]
    ports = [free_port() for _ in range(3)]
    two = shards.replace('symbols = ["ACME", "BOLT"]', 'symbols = ["ACME"]') + f"""[[shards]]
name = "B"
symbols = ["BOLT"]
command_endpoint = "tcp://127.0.0.1:{ports[0]}"
market_data_endpoint = "tcp://127.0.0.1:{ports[1]}"
snapshot_endpoint = "tcp://127.0.0.1:{ports[2]}"
journal_dir = "{tmp_path / 'journal-B'}"

"""
    config.write_text(text.replace(shards, two))
    write_keys(env)


def test_two_book_servers_split_the_symbols_and_one_failing_leaves_the_other_trading(tmp_path):
    """Shard A owns ACME, shard B owns BOLT, one OBS process each, one TES routing by symbol."""
    env = config_env(tmp_path)
    split_shards(env, tmp_path)
    context = zmq.Context()
    with Role(["-s", "OBS"], env), Role(["-s", "OBS", "--shard", "B"], env) as obs_b, \
            Role(["-s", "TES"], env) as tes:
        try:
            tes.wait_for("shard A ready", 10)
            tes.wait_for("shard B ready", 10)
            alice, bob = Client(context, endpoint(env, "TES__CLIENT_ENDPOINT")), \
                Client(context, endpoint(env, "TES__CLIENT_ENDPOINT"))
            alice.logon("alice")
            bob.logon("bob")
            rest = alice.accepted("BOLT", BUY, 24_900, 10)
            day = alice.accepted("BOLT", BUY, 24_800, 10, DAY)
            assert (rest.order_id >> 48, day.order_id) == (TES_ID, rest.order_id + 1)
            bob.order("ACME", SELL, 10_000, 3)
            assert type(bob.one()) is p.OrderAccepted
            alice.order("ACME", BUY, 10_000, 3, IOC)
            assert [type(m) for m in alice.read(2)] == [p.OrderAccepted, p.OrderFilled]
            assert type(bob.one()) is p.OrderFilled
            assert alice.book("BOLT") == ([(24_900, 10, 1), (24_800, 10, 1)], [])

            done = end_of_day(env)
            assert json.loads(done.stdout) == {"expired": {"ACME": 0, "BOLT": 1}}
            assert alice.one() == p.OrderExpired(day.client_order_id, day.order_id, "BOLT", 10)

            obs_b.kill()
            tes.wait_for("shard B disconnected", 10)
            assert alice.rejected("BOLT", BUY, 24_900, 10) is R.BOOK_UNAVAILABLE
            bob.order("ACME", SELL, 10_000, 1)
            assert type(bob.one()) is p.OrderAccepted  # resting before alice's order comes
            alice.order("ACME", BUY, 10_000, 1, IOC)
            assert [type(m) for m in alice.read(2)] == [p.OrderAccepted, p.OrderFilled], "shard A trades on"
            assert type(bob.one()) is p.OrderFilled

            with Role(["-s", "OBS", "--shard", "B"], env) as restarted:
                assert "READY OBS B sequence=3 " in restarted.wait_for("READY", 1)
                deadline = time.monotonic() + 10
                while "shard B ready" not in tes.output().split("shard B disconnected")[-1]:
                    assert time.monotonic() < deadline
                    time.sleep(0.05)
                assert alice.book("BOLT") == ([(24_900, 10, 1)], [])
                bob.order("BOLT", SELL, 24_900, 10)
                assert [type(m) for m in bob.read(2)] == [p.OrderAccepted, p.OrderFilled]
                assert alice.one() == p.OrderFilled(rest.client_order_id, rest.order_id, "BOLT", BUY, 24_900, 10,
                                                    0, 1, False)
        finally:
            context.destroy(linger=0)


def test_order_ids_continue_after_a_tes_restart(exchange):
    alice = exchange.client("alice")
    first = alice.accepted("ACME", BUY, 9_990, 1)
    assert exchange.tes.stop() == 0
    exchange.start_tes()
    alice = exchange.client("alice")
    assert alice.accepted("ACME", BUY, 9_980, 1).order_id == first.order_id + 1


def test_sigterm_logs_everyone_out_and_exits_0(exchange):
    alice = exchange.client("alice")
    assert exchange.tes.stop() == 0
    assert alice.one() == p.LoggedOut(p.EndReason.SHUTDOWN, "the exchange is shutting down")
    assert exchange.obs.stop() == 0


def test_requests_while_shutting_down_are_refused_exchange_closing(tmp_path):
    """In process (the drain after SIGTERM is too short to hit reliably from outside)."""
    from config.settings import load_config
    from servers.tes import TradingEngineServer

    server = TradingEngineServer(load_config(environ=config_env(tmp_path)))
    try:
        server.stop()
        for message in (p.Logon("alice", "alice-demo-key"), p.EnterOrder(1, "ACME", BUY, LIMIT, GTC, 10_000, 1),
                        p.Heartbeat(), p.QueryPositions(1)):
            server._dispatch(b"client", None, message, time.monotonic())
        closing = p.SessionRejected(R.EXCHANGE_CLOSING, R.EXCHANGE_CLOSING.text)
        assert server.outbox == {b"client": [closing, closing, closing]}
    finally:
        server.close()


def test_random_flow_keeps_books_open_orders_and_portfolios_consistent(exchange):
    """Random orders, cancels and replaces from four traders; afterwards the TES's open
    orders add up to the book, and positions and cash add up to zero."""
    import random

    rng = random.Random(7)
    traders = {name: exchange.client(name) for name in ("alice", "bob", "mm1", "mm2")}
    live = {name: set() for name in traders}
    seen = {"fills": 0, "peak_resting": 0}

    def collect(name, client, quiet_ms):
        """Read reports until none comes for ``quiet_ms``."""
        while client.socket.poll(quiet_ms):
            for message in MESSAGES.decode(client.socket.recv()):
                if isinstance(message, p.OrderAccepted) and message.time_in_force == GTC:
                    live[name].add(message.order_id)
                elif isinstance(message, p.OrderCanceled | p.OrderFilled) and not getattr(message, "leaves", 0):
                    live[name].discard(message.order_id)
                seen["fills"] += isinstance(message, p.OrderFilled)
        seen["peak_resting"] = max(seen["peak_resting"], sum(map(len, live.values())))

    for _ in range(40):
        for name, client in traders.items():
            batch = []
            for _ in range(rng.randint(1, 8)):
                roll = rng.random()
                if roll < 0.2 and live[name]:
                    batch.append(p.CancelOrder(client.next_id, rng.choice(sorted(live[name]))))
                elif roll < 0.35 and live[name]:
                    batch.append(p.ReplaceOrder(client.next_id, rng.choice(sorted(live[name])),
                                                rng.randint(9_950, 10_050), rng.randint(1, 40)))
                elif roll < 0.4:
                    batch.append(p.EnterOrder(client.next_id, "ACME", rng.choice([BUY, SELL]), MARKET, IOC, 0,
                                              rng.randint(1, 30)))
                else:
                    batch.append(p.EnterOrder(client.next_id, "ACME", rng.choice([BUY, SELL]), LIMIT,
                                              rng.choice([GTC, GTC, IOC]), rng.randint(9_950, 10_050),
                                              rng.randint(1, 40)))
                client.next_id += 1
            client.send(*batch)
        for name, client in traders.items():
            collect(name, client, 5)
    for name, client in traders.items():
        collect(name, client, 300)

    levels: dict[tuple[Side, int], list[int]] = {}
    cash = 0
    positions = 0
    last = None
    for client in traders.values():
        for order in client.open_orders():
            level = levels.setdefault((order.side, order.price), [0, 0])
            level[0] += order.quantity
            level[1] += 1
        report = client.positions()
        cash += report.cash
        for position in report.positions:
            positions += position.quantity
            last = position.last_price
            assert position.realized_pnl + position.unrealized_pnl == report.cash + position.quantity * last
    assert (cash, positions) == (0, 0) and last is not None
    client.send(p.QueryBook(1, "ACME", 1000))
    book = client.one()
    assert book.last_price == last
    expected_bids = sorted(((price, *levels[BUY, price]) for side, price in levels if side == BUY), reverse=True)
    expected_asks = sorted((price, *levels[SELL, price]) for side, price in levels if side == SELL)
    assert (book.bids, book.asks) == (expected_bids, expected_asks)
    assert seen["fills"] > 100 and seen["peak_resting"] >= 3, "the flow both traded and rested orders"
