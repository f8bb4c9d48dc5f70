"""The market data port's subscribers (`servers.subscribers`): what a connection follows, what it is
sent, and the bounds on what any peer can make a book server hold.

The registry's own tests run `Subscribers` on a real ROUTER over inproc with DEALERs as the
subscribers (and a clock the test moves); the end-to-end ones flood a real OBS's port."""

import json
import os
import time

import msgspec
import pytest
import zmq
from procs import Role, endpoint, eventually
from test_obs import CONTROL, MARKET_DATA, OBS, SUBSCRIPTIONS, T1, T2, Subscriber, Tes, open_env

from clients.client import RequestRejected
from clients.market_data import MarketDataClient
from engine.types import RejectReason, Side
from native.framing import join_frames
from servers import protocol as p
from servers.status import STATUS_FILE
from servers.subscribers import PROBE_INTERVAL_S, Subscribers

UNKNOWN_SYMBOL = RejectReason.UNKNOWN_SYMBOL
TOO_MANY_SUBSCRIBERS = RejectReason.TOO_MANY_SUBSCRIBERS
FULL = p.SubscriptionRejected("ACME", TOO_MANY_SUBSCRIBERS, TOO_MANY_SUBSCRIBERS.text)
ENCODE = msgspec.msgpack.Encoder().encode


class Port:
    """A ROUTER set as the OBS sets its market data port, the `Subscribers` on it, and a clock."""

    def __init__(self, context, capacity=8, hwm=1000):
        self.context = context
        self.now = 0.0
        self.router = context.socket(zmq.ROUTER)
        self.router.setsockopt(zmq.LINGER, 0)
        self.router.setsockopt(zmq.ROUTER_MANDATORY, 1)
        self.router.setsockopt(zmq.SNDHWM, hwm)
        self.router.bind("inproc://market-data")
        self.subscribers = Subscribers(self.router, ["ACME", "BOLT"], capacity, lambda: self.now)

    def connect(self, rcvhwm=1000):
        dealer = self.context.socket(zmq.DEALER)
        dealer.setsockopt(zmq.LINGER, 0)
        dealer.setsockopt(zmq.RCVHWM, rcvhwm)
        dealer.connect("inproc://market-data")
        return dealer

    def ask(self, dealer, *requests):
        """Send ``requests`` from ``dealer``, serve them, and return the answers it receives."""
        dealer.send(SUBSCRIPTIONS.encode(list(requests)))
        assert self.router.poll(5000)
        identity, frame = self.router.recv_multipart()
        self.subscribers.serve(identity, SUBSCRIPTIONS.decode(frame))
        return control(dealer)

    def publish(self, **messages):
        """Publish each symbol's market data: one encoded trade per sequence number given."""
        self.subscribers.publish({symbol: [ENCODE(trade(symbol, sequence)) for sequence in sequences]
                                  for symbol, sequences in messages.items()})


def trade(symbol, sequence):
    return p.Trade(symbol, sequence, sequence, 100, 1, Side.BUY, 0)


def control(dealer):
    assert dealer.poll(5000), "no answer"
    frame_topic, payload = dealer.recv_multipart()
    assert frame_topic == p.CONTROL_TOPIC
    return CONTROL.decode(payload)


def received(dealer, timeout_ms=100):
    """Every ``(topic, messages)`` frame queued on ``dealer``."""
    frames = []
    while dealer.poll(timeout_ms):
        frame_topic, payload = dealer.recv_multipart()
        frames.append((frame_topic, MARKET_DATA.decode(payload)))
    return frames


@pytest.fixture
def context():
    context = zmq.Context()
    yield context
    context.destroy(linger=0)


def test_a_connection_is_sent_the_symbols_it_follows_from_its_subscription_to_its_unsubscription(context):
    port = Port(context)
    acme, both = port.connect(), port.connect()
    assert port.ask(acme, p.Subscribe("ACME")) == [p.Subscribed("ACME")]
    assert port.ask(both, p.Subscribe("ACME"), p.Subscribe("BOLT"), p.Subscribe("ACME")) == [
        p.Subscribed("ACME"), p.Subscribed("BOLT"), p.Subscribed("ACME")], "subscribing again is answered again"
    port.publish(ACME=[1, 2], BOLT=[1])
    assert received(acme) == [(b"ACME.", [trade("ACME", 1), trade("ACME", 2)])], "one frame a symbol"
    assert received(both) == [(b"ACME.", [trade("ACME", 1), trade("ACME", 2)]), (b"BOLT.", [trade("BOLT", 1)])]
    assert port.ask(both, p.Unsubscribe("ACME"), p.Unsubscribe("ACME")) == [p.Unsubscribed("ACME")] * 2
    port.publish(ACME=[3], BOLT=[2])
    assert received(acme) == [(b"ACME.", [trade("ACME", 3)])]
    assert received(both) == [(b"BOLT.", [trade("BOLT", 2)])]
    assert port.ask(acme, p.Unsubscribe("ACME")) == [p.Unsubscribed("ACME")]
    assert len(port.subscribers) == 1, "a connection that follows nothing is not held"
    port.publish(ACME=[4])
    assert received(acme) == [] and received(both) == []


def test_a_symbol_the_book_server_does_not_hold_is_refused_and_holds_nothing(context):
    port = Port(context)
    dealer = port.connect()
    assert port.ask(dealer, p.Subscribe("NOPE"), p.Subscribe("ACME."), p.Unsubscribe("NOPE")) == [
        p.SubscriptionRejected("NOPE", UNKNOWN_SYMBOL, "unknown symbol: 'NOPE'"),
        p.SubscriptionRejected("ACME.", UNKNOWN_SYMBOL, "unknown symbol: 'ACME.'"),
        p.Unsubscribed("NOPE")]
    assert (len(port.subscribers), port.subscribers.followers) == (0, {"ACME": {}, "BOLT": {}})


def test_beyond_its_capacity_a_connection_is_refused_until_one_that_has_gone_is_found(context):
    """The registry looks for connections that have gone (a Heartbeat to each) only when it is full,
    and then at most once every PROBE_INTERVAL_S."""
    port = Port(context, capacity=2)
    first, second, third = port.connect(), port.connect(), port.connect()
    assert port.ask(first, p.Subscribe("ACME")) == [p.Subscribed("ACME")]
    assert port.ask(second, p.Subscribe("BOLT")) == [p.Subscribed("BOLT")]
    assert port.ask(first, p.Subscribe("BOLT")) == [p.Subscribed("BOLT")], "a connection held takes more symbols"
    assert port.ask(third, p.Subscribe("ACME")) == [FULL]
    assert control(first) == [p.Heartbeat()] and control(second) == [p.Heartbeat()], "both are looked for"
    second.close()
    port.now += PROBE_INTERVAL_S / 2
    assert port.ask(third, p.Subscribe("ACME")) == [FULL], "not looked for again so soon"
    assert not first.poll(100), "no heartbeat"
    answers = []
    for _ in range(50):  # the ROUTER learns of the closed connection a moment after it closed
        port.now += PROBE_INTERVAL_S
        answers = port.ask(third, p.Subscribe("ACME"))
        if answers != [FULL]:
            break
    assert answers == [p.Subscribed("ACME")]
    followers = port.subscribers.followers
    assert port.subscribers.refused >= 2 and len(port.subscribers) == 2
    assert (len(followers["ACME"]), len(followers["BOLT"])) == (2, 1), "the second connection forgotten"
    assert set(followers["BOLT"]) < set(followers["ACME"]), "the first still follows both"


def test_a_connection_that_has_gone_is_forgotten_at_the_next_send_to_it(context):
    port = Port(context)
    staying, leaving = port.connect(), port.connect()
    for dealer in (staying, leaving):
        answers = port.ask(dealer, p.Subscribe("ACME"), p.Subscribe("BOLT"))
        assert answers == [p.Subscribed("ACME"), p.Subscribed("BOLT")]
    leaving.close()

    def forgotten():
        port.publish(ACME=[1])
        return len(port.subscribers) == 1

    eventually(forgotten, "the closed connection forgotten")
    assert port.subscribers.followers["BOLT"] == port.subscribers.followers["ACME"], "from every symbol"
    assert port.subscribers.dropped == 0
    assert {frame_topic for frame_topic, _ in received(staying)} == {b"ACME."}


def test_a_subscriber_that_does_not_read_loses_messages_never_the_servers_memory(context):
    """Its queue full, a send fails at once (nothing waits, nothing is kept) and is counted; what it
    does receive is whole frames in order, so it sees the gap in the sequence."""
    port = Port(context, hwm=10)
    slow = port.connect(rcvhwm=10)
    assert port.ask(slow, p.Subscribe("ACME")) == [p.Subscribed("ACME")]
    started = time.monotonic()
    for sequence in range(1, 1001):
        port.publish(ACME=[sequence])
    assert time.monotonic() - started < 5, "no send waited"
    frames = received(slow)
    sequences = [message.sequence for _, messages in frames for message in messages]
    assert 10 <= len(sequences) <= 100 and sequences == sorted(sequences) and sequences[0] == 1
    assert port.subscribers.dropped == 1000 - len(sequences)
    port.publish(ACME=[1001])
    assert received(slow) == [(b"ACME.", [trade("ACME", 1001)])], "read again, it is sent again: a gap it sees"


def test_a_large_turn_goes_out_in_frames_within_the_protocols_limits(context):
    port = Port(context)
    dealer = port.connect(rcvhwm=0)
    assert port.ask(dealer, p.Subscribe("ACME")) == [p.Subscribed("ACME")]
    messages = [ENCODE(trade("ACME", sequence)) for sequence in range(1, p.MAX_BATCH + 6)]
    port.subscribers.publish({"ACME": messages})
    frames = received(dealer)
    assert [len(batch) for _, batch in frames] == [p.MAX_BATCH, 5]
    assert [payload for _, payload in frames] == [MARKET_DATA.decode(frame) for frame in
                                                  join_frames(messages, None, p.MAX_BATCH, p.MAX_FRAME_BYTES)]


# ---------------------------------------------------------------- a real OBS


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))


def status_of(env):
    """The OBS's status document; an empty one before its first (a server writes it a period after its start)."""
    try:
        with open(os.path.join(env["EXCHANGE__SHARDS__0__JOURNAL_DIR"], STATUS_FILE)) as file:
            return json.load(file)
    except FileNotFoundError:
        return {"pid": None, "counters": {}, "market_data": {}}


def test_a_flood_of_subscriptions_on_a_trading_book_server_grows_nothing(tmp_path, context):
    """One connection asks for 200,000 distinct symbols while the market trades (a libzmq PUB kept
    each topic, about 1.3 KB each, for as long as the server ran). Every request is refused
    UNKNOWN_SYMBOL; the book server's memory stays as it was; garbage is answered MALFORMED_MESSAGE and
    an oversized frame ends its connection; the subscribers that were there are served throughout."""
    env = open_env(tmp_path)
    with Role(OBS, env) as obs:
        tes = Tes(context, env, tes_id=1)
        watcher = Subscriber(context, env, ("ACME",))
        flooder = context.socket(zmq.DEALER)
        flooder.setsockopt(zmq.LINGER, 0)
        flooder.setsockopt(zmq.RCVHWM, 0)
        flooder.connect(endpoint(env, "SHARDS__0__MARKET_DATA_ENDPOINT"))
        garbage = context.socket(zmq.DEALER)
        garbage.setsockopt(zmq.LINGER, 0)
        garbage.connect(endpoint(env, "SHARDS__0__MARKET_DATA_ENDPOINT"))
        for frames in ([b"\xc1"], [b"a", b"b"], [msgspec.msgpack.encode([["Subscribe", 7]])]):
            garbage.send_multipart(frames)
        malformed = [control(garbage) for _ in range(3)]
        assert [(r.symbol, r.reason) for (r,) in malformed] == [("", RejectReason.MALFORMED_MESSAGE)] * 3
        assert [r.text for (r,) in malformed] == [
            "malformed message: MessagePack data is malformed: invalid opcode '\\xc1' (byte 0)",
            "malformed message: 2 payload frames instead of 1",
            "malformed message: Expected `str`, got `int` - at `$[0][1]`"], "each answered, saying why"
        garbage.send(os.urandom(5000))  # over PUBLIC_FRAME_BYTES: the connection ends, unanswered
        assert not garbage.poll(500)
        tes.send(p.BookSubmit("ACME", T1 | 1, Side.SELL, 0, 0, 101, 1_000_000))
        tes.receive(1)
        before = rss_kb(obs.process.pid)
        answers, order, batch = 0, 0, 1000
        for _ in range(200):
            for _ in range(batch // 100):  # frames of 100 (about 3 KB: one of 4 KB or more ends the connection)
                flooder.send(SUBSCRIPTIONS.encode([p.Subscribe(os.urandom(8).hex()) for _ in range(100)]))
            order += 1
            tes.send(p.BookSubmit("ACME", T2 | order, Side.BUY, 0, 0, 101, 1))
            tes.receive(1)
            while flooder.poll(0):
                frame_topic, payload = flooder.recv_multipart()
                replies = CONTROL.decode(payload)
                assert frame_topic == p.CONTROL_TOPIC
                assert {(type(r), r.reason) for r in replies} == {(p.SubscriptionRejected, UNKNOWN_SYMBOL)}
                answers += len(replies)
        while answers < 200 * batch:
            assert flooder.poll(10_000), f"{answers} of {200 * batch} answered"
            answers += len(CONTROL.decode(flooder.recv_multipart()[1]))
        grown = rss_kb(obs.process.pid) - before
        assert grown < 20_000, f"the OBS grew by {grown} KB"
        trades = [m for m in watcher.read() if type(m) is p.Trade]
        assert [t.quantity for t in trades] == [1] * 200, "the subscriber was served throughout"
        assert Subscriber(context, env, ("BOLT",)).read(0.1) == [], "a new subscriber is served"
        eventually(lambda: status_of(env)["market_data"].get("subscribers") == 2, "the status file counts both")
        assert status_of(env)["counters"]["dropped"] >= 3, "the malformed frames (not the oversized: it was cut off)"
        assert obs.stop() == 0


def test_max_subscribers_bounds_the_connections_followed_and_the_status_file_counts_the_refusals(tmp_path, context):
    env = open_env(tmp_path, EXCHANGE__SHARDS__0__MAX_SUBSCRIBERS="2")
    with Role(OBS, env) as obs:
        first, second = Subscriber(context, env), Subscriber(context, env, ("BOLT",))
        third = context.socket(zmq.DEALER)
        third.setsockopt(zmq.LINGER, 0)
        third.connect(endpoint(env, "SHARDS__0__MARKET_DATA_ENDPOINT"))
        third.send(SUBSCRIPTIONS.encode([p.Subscribe("ACME")]))
        assert third.poll(10_000)
        assert CONTROL.decode(third.recv_multipart()[1]) == [FULL]
        second.socket.close()
        answers = []
        deadline = time.monotonic() + 20
        while answers != [p.Subscribed("ACME")] and time.monotonic() < deadline:
            time.sleep(PROBE_INTERVAL_S)
            third.send(SUBSCRIPTIONS.encode([p.Subscribe("ACME")]))
            assert third.poll(10_000)
            answers = CONTROL.decode(third.recv_multipart()[1])
        assert answers == [p.Subscribed("ACME")], "the closed connection was found gone"
        tes = Tes(context, env, tes_id=1)
        tes.send(p.BookSubmit("ACME", T1 | 1, Side.SELL, 0, 0, 101, 5))
        tes.receive(1)
        assert [type(m) for m in first.read()] == [p.DepthUpdate, p.Quote]
        md, snapshots = endpoint(env, "SHARDS__0__MARKET_DATA_ENDPOINT"), endpoint(env, "SHARDS__0__SNAPSHOT_ENDPOINT")
        with MarketDataClient(md, snapshots, "ACME", context, snapshot_retry_s=0.2) as waiting:
            with pytest.raises(RequestRejected) as caught:
                waiting.connect(10.0)
            assert caught.value.reason == TOO_MANY_SUBSCRIBERS
            first.socket.close()

            def synced():
                try:
                    waiting.poll(0.1)
                except RequestRejected as exc:  # again, until the server finds the closed connection gone
                    assert exc.reason == TOO_MANY_SUBSCRIBERS
                return waiting.synced

            eventually(synced, "the client library asked again and got the place freed")
            assert waiting.best_ask() == (101, 5)
            eventually(lambda: status_of(env)["market_data"].get("refused", 0) >= 2, "the refusals counted")
            assert status_of(env)["market_data"]["subscribers"] == 2
        assert obs.stop() == 0


def test_the_client_library_subscribes_again_after_the_book_server_restarts(tmp_path, context):
    """`MarketDataClient` subscribes on each connection made: after a restart of the book server
    (which forgets every subscription) it is sent the market data again, once it has rebuilt its
    book from a snapshot (the connection was lost: what was published meanwhile would never come;
    the sequence goes on from the journal); a symbol the server does not hold raises."""
    env = open_env(tmp_path)
    md, snapshots = endpoint(env, "SHARDS__0__MARKET_DATA_ENDPOINT"), endpoint(env, "SHARDS__0__SNAPSHOT_ENDPOINT")
    with MarketDataClient(md, snapshots, "ACME", context) as feed:
        with Role(OBS, env) as obs:
            feed.connect(10.0)
            tes = Tes(context, env, tes_id=1)
            tes.send(p.BookSubmit("ACME", T1 | 1, Side.SELL, 0, 0, 101, 5))
            tes.receive(1)
            eventually(lambda: feed.poll(0.1) or feed.best_ask() == (101, 5), "the first order seen")
            obs.kill()
        with Role(OBS, env) as obs:

            def subscribed_again():
                feed.poll(0.1)
                status = status_of(env)
                return status["pid"] == obs.process.pid and status["market_data"].get("subscribers") == 1

            eventually(subscribed_again, "the client subscribed to the restarted server")
            tes = Tes(context, env, tes_id=1)
            tes.send(p.BookSubmit("ACME", T1 | 2, Side.BUY, 0, 0, 99, 3))
            tes.receive(1)
            eventually(lambda: feed.poll(0.1) or feed.best_bid() == (99, 3), "the order after the restart seen")
            assert feed.subscribed and feed.resyncs == 1 and feed.lost_at is None and feed.best_ask() == (101, 5)
            assert obs.stop() == 0
    with Role(OBS, env) as obs:
        with MarketDataClient(md, snapshots, "NOPE", context) as unknown, pytest.raises(RequestRejected) as caught:
            unknown.connect(10.0)
        assert (caught.value.reason, caught.value.text) == (UNKNOWN_SYMBOL, "unknown symbol: 'NOPE'")
        assert obs.stop() == 0
