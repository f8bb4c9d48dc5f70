"""The Order Book Server as a real process (``main.py -s OBS``), spoken to over raw ZeroMQ sockets."""

import argparse
import json
import logging
import os
import subprocess
import sys
import time

import msgspec
import pytest
import zmq
from obs_streams import commands
from procs import REPO, Role, as_role, bare, endpoint, eventually, exchange_env

from config.settings import load_config
from engine.book import ReferenceBook
from engine.messages import OrderAccepted, OrderExpired, OrderFilled
from engine.types import RejectReason, Side
from servers import obs
from servers import protocol as p
from servers.journal import read_discarded, read_records, read_snapshot
from servers.obs import PUBLIC_FRAME_BYTES
from servers.stream import CONSUMERS_FILE

BUY, SELL = Side.BUY, Side.SELL
OBS = ["-s", "OBS"]
REQUESTS = p.Codec(p.ObsRequest)
REPLIES = p.Codec(p.ObsReply)
MARKET_DATA = p.Codec(p.MarketData)
SUBSCRIPTIONS = p.Codec(p.SubscriptionRequest)
CONTROL = p.Codec(p.SubscriptionReply)
MARKS = msgspec.msgpack.Decoder(list[p.Mark])
SNAPSHOTS = p.Codec(p.SnapshotReply)
T1, T2 = 1 << 48, 2 << 48


@pytest.fixture
def context():
    context = zmq.Context()
    yield context
    context.destroy(linger=0)


class Tes:
    """A DEALER on the command endpoint speaking the TES side of the protocol; the marks frames
    it reads are set aside in ``marks``."""

    def __init__(self, context, env, tes_id=None, role="tes"):
        self.marks = []
        self.socket = context.socket(zmq.DEALER)
        self.socket.setsockopt(zmq.LINGER, 0)
        as_role(self.socket, env, role)
        self.socket.connect(endpoint(env, "SHARDS__0__COMMAND_ENDPOINT"))
        if tes_id is not None:
            self.hello(tes_id)

    def send(self, *messages):
        self.socket.send(REQUESTS.encode(list(messages)))

    def receive(self, count, timeout=10.0, keep_time=False):
        """Exactly the next ``count`` messages (however they were batched in frames), each
        `Executed` with its exchange time checked and, unless ``keep_time``, zeroed (`bare`),
        so that tests can compare replies with what a book computes."""
        received, deadline = [], time.monotonic() + timeout
        while len(received) < count:
            left = deadline - time.monotonic()
            assert left > 0 and self.socket.poll(int(left * 1000)), f"got {len(received)} of {count}: {received}"
            received.extend(self._replies())
        assert len(received) == count, received
        checked = [bare(message) for message in received]
        return received if keep_time else checked

    def quiet(self, seconds=0.3):
        """Assert nothing more arrives within ``seconds``."""
        assert not self.socket.poll(int(seconds * 1000)), self.socket.recv_multipart()

    def take_marks(self, seconds=0.3):
        """The marks frames read (each a list of `p.Mark`), once nothing more arrives within ``seconds``
        (anything else fails)."""
        while self.socket.poll(int(seconds * 1000)):
            assert self._replies() == [], "only marks were expected"
        marks, self.marks = self.marks, []
        return marks

    def _replies(self):
        """The replies of the next frame (none if it is a marks frame, set aside)."""
        parts = self.socket.recv_multipart()
        if parts[0] == p.MARKS_TOPIC:
            (payload,) = parts[1:]
            self.marks.append(MARKS.decode(payload))
            return []
        (frame,) = parts
        return REPLIES.decode(frame)

    def hello(self, tes_id):
        self.send(p.Hello(tes_id))
        (reply,) = self.receive(1)
        assert isinstance(reply, p.HelloReply)
        return reply

    def view(self, symbol, levels=1000):
        self.send(p.BookQuery(9, symbol, levels))
        (view,) = self.receive(1)
        assert isinstance(view, p.BookView)
        return view


def open_env(tmp_path, **overrides):
    """An exchange with CURVE off, for tests that play several TESes and the operator from
    one socket (with CURVE on, each key may act only as its own role: see test_security)."""
    return exchange_env(tmp_path, EXCHANGE__SECURITY__KEYS_DIR="", **overrides)


def apply(books, command):
    """Run one book command on a ReferenceBook, the way the OBS runs it on a NativeBook."""
    book = books.setdefault(command.symbol, ReferenceBook())
    match command:
        case p.BookSubmit(_, order_id, side, order_type, tif, price, quantity):
            return book.submit(order_id, side, order_type, tif, price, quantity)
        case p.BookCancel(_, order_id):
            return book.cancel(order_id)
        case p.BookReplace(_, order_id, price, quantity):
            return book.replace(order_id, price, quantity)
        case p.BookExpireDay():
            return book.expire_day_orders()


def depth(book):
    return tuple([(lv.price, lv.quantity, lv.orders) for lv in book.depth(side, 1000)] for side in (BUY, SELL))


def assert_books_equal(tes, books):
    for symbol in ("ACME", "BOLT"):
        view = tes.view(symbol)
        assert (view.bids, view.asks) == depth(books.get(symbol, ReferenceBook())), symbol


def max_id(books, prefix):
    """The largest accepted id with ``prefix``'s TES id, as HelloReply reports it."""
    ids = [i for book in books.values() for i in book.snapshot().id_array().tolist() if i >> 48 == prefix >> 48]
    return max(ids, default=0)


def stream_commands(tes, stream, frame=10):
    """Send ``stream`` in frames of ``frame`` commands; every Executed, in order."""
    executed = []
    for start in range(0, len(stream), frame):
        tes.send(*stream[start : start + frame])
        executed += tes.receive(len(stream[start : start + frame]))
    return executed


# ---------------------------------------------------------------- commands and replies


def test_hello_reply_names_the_symbols_and_nothing_accepted_yet(tmp_path, context):
    env = exchange_env(tmp_path)
    with Role(OBS, env) as obs:
        assert obs.wait_for("READY", 1).startswith("READY OBS A sequence=0 ")
        assert Tes(context, env).hello(1) == p.HelloReply(["ACME", "BOLT"], 0, 0)
        assert obs.stop() == 0


def test_commands_are_answered_with_exactly_the_books_events_in_sequence(tmp_path, context):
    env = open_env(tmp_path)
    stream = [
        p.BookSubmit("ACME", T1 | 1, SELL, 0, 0, 101, 10),
        p.BookSubmit("ACME", T1 | 2, SELL, 0, 3, 102, 5),
        p.BookSubmit("BOLT", T1 | 3, BUY, 0, 0, 250, 10),
        p.BookSubmit("ACME", T1 | 4, BUY, 0, 1, 102, 12),
        p.BookSubmit("ACME", T1 | 4, BUY, 0, 0, 99, 1),
        p.BookReplace("ACME", T1 | 2, 100, 5),
        p.BookCancel("BOLT", T1 | 3),
        p.BookCancel("BOLT", T1 | 3),
        p.BookSubmit("ACME", T1 | 5, BUY, 1, 1, 0, 1),
        p.BookExpireDay("ACME"),
        p.BookSubmit("ACME", T1 | 6, SELL, 0, 0, -5, 1),
        p.BookSubmit("ACME", T1 | 7, SELL, 0, 0, 105, 3),
        p.BookSubmit("ACME", T1 | 8, SELL, 0, 0, 106, 1),
    ]
    books = {}
    expected = [p.Executed(n, c.symbol, apply(books, c)) for n, c in enumerate(stream, 1)]
    assert any(isinstance(e, OrderFilled) for x in expected for e in x.events)
    assert any(isinstance(e, OrderExpired) for x in expected for e in x.events)
    with Role(OBS, env) as obs:
        tes = Tes(context, env, tes_id=1)
        assert stream_commands(tes, stream[:4], frame=1) + stream_commands(tes, stream[4:], frame=7) == expected
        assert tes.hello(1) == p.HelloReply(["ACME", "BOLT"], T1 | 8, len(stream), True, {"ACME": 100})
        assert_books_equal(tes, books)
        view = tes.view("ACME", 1)
        assert (view.bids, view.asks, view.last_price) == ([], [(105, 3, 1)], 100)
        assert obs.stop() == 0


def test_unknown_symbol_is_refused_and_takes_no_sequence(tmp_path, context):
    env = exchange_env(tmp_path)
    with Role(OBS, env) as obs:
        tes = Tes(context, env, tes_id=1)
        tes.send(
            p.BookSubmit("NOPE", T1 | 1, BUY, 0, 0, 100, 1),
            p.BookCancel("NOPE", T1 | 1),
            p.BookExpireDay("NOPE"),
            p.BookQuery(4, "NOPE", 5),
            p.BookSubmit("ACME", T1 | 1, BUY, 0, 0, 100, 1),
        )
        text = RejectReason.UNKNOWN_SYMBOL.text
        *refused, accepted = tes.receive(5)
        assert refused == [
            p.CommandRefused("NOPE", T1 | 1, RejectReason.UNKNOWN_SYMBOL, text),
            p.CommandRefused("NOPE", T1 | 1, RejectReason.UNKNOWN_SYMBOL, text),
            p.CommandRefused("NOPE", 0, RejectReason.UNKNOWN_SYMBOL, text),
            p.CommandRefused("NOPE", 4, RejectReason.UNKNOWN_SYMBOL, text),
        ]
        assert accepted.sequence == 1 and isinstance(accepted.events[0], OrderAccepted)
        assert obs.stop() == 0


def test_maker_fills_and_expiries_reach_the_owning_tes_once(tmp_path, context):
    env = open_env(tmp_path)
    with Role(OBS, env) as obs:
        first, second = Tes(context, env, tes_id=1), Tes(context, env, tes_id=2)
        first.send(p.BookSubmit("ACME", T1 | 1, SELL, 0, 0, 101, 5), p.BookSubmit("ACME", T1 | 2, SELL, 0, 3, 102, 5))
        first.receive(2)
        second.send(p.BookSubmit("ACME", T2 | 1, BUY, 0, 1, 102, 7))
        (taker,) = second.receive(1)
        (maker,) = first.receive(1)
        assert taker == maker and taker.sequence == 3
        assert [(e.maker_id, e.quantity) for e in taker.events if isinstance(e, OrderFilled)] == [
            (T1 | 1, 5),
            (T1 | 2, 2),
        ]
        second.send(p.BookSubmit("ACME", T2 | 2, SELL, 0, 0, 101, 1), p.BookSubmit("ACME", T2 | 3, BUY, 0, 1, 101, 1))
        assert [x.sequence for x in second.receive(2)] == [4, 5], "a self-trade is reported to its TES once"
        second.send(p.BookExpireDay("ACME"))
        (expired,) = second.receive(1)
        assert first.receive(1) == [expired] and expired.events == [OrderExpired(T1 | 2, 3)]
        first.quiet()
        second.quiet()
        assert obs.stop() == 0


# ---------------------------------------------------------------- market data


class Subscriber:
    """A DEALER on the market-data endpoint, subscribed to ``symbols``: back once every `Subscribed`
    came, so it reads everything published after. It checks the frame layout of what it reads."""

    def __init__(self, context, env, symbols=("ACME", "BOLT")):
        self.socket = context.socket(zmq.DEALER)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.connect(endpoint(env, "SHARDS__0__MARKET_DATA_ENDPOINT"))
        self.socket.send(SUBSCRIPTIONS.encode([p.Subscribe(symbol) for symbol in symbols]))
        assert self.control() == [p.Subscribed(symbol) for symbol in symbols]

    def control(self, timeout=10.0):
        """The next frame's answers to this subscriber's requests (none other may come first)."""
        assert self.socket.poll(int(timeout * 1000)), "no answer from the market data port"
        frame_topic, payload = self.socket.recv_multipart()
        assert frame_topic == p.CONTROL_TOPIC, frame_topic
        return CONTROL.decode(payload)

    def read(self, timeout=0.5):
        """Every message arriving until ``timeout`` passes without one."""
        messages = []
        while self.socket.poll(int(timeout * 1000)):
            frame_topic, payload = self.socket.recv_multipart()
            if frame_topic == p.CONTROL_TOPIC:
                assert CONTROL.decode(payload) == [p.Heartbeat()], "only heartbeats come unasked"
                continue
            batch = MARKET_DATA.decode(payload)
            assert batch and all(p.topic(m) == frame_topic for m in batch)
            messages += batch
        return messages


def test_market_data_has_trades_depth_and_quotes_on_per_symbol_sequences(tmp_path, context):
    env = open_env(tmp_path)
    with Role(OBS, env) as obs:
        tes = Tes(context, env, tes_id=1)
        subscriber = Subscriber(context, env)
        tes.send(
            p.BookSubmit("ACME", T1 | 1, SELL, 0, 0, 101, 10),
            p.BookSubmit("BOLT", T1 | 2, SELL, 0, 0, 255, 10),
            p.BookSubmit("ACME", T1 | 3, BUY, 0, 0, 101, 4),
        )
        executed = tes.receive(3, keep_time=True)
        first, second, third = (answer.time for answer in executed)
        assert first <= second <= third, "stamps never go back"
        received = subscriber.read()
        assert tes.take_marks() == [], "the one TES that greeted the server had the trade in its replies"
        assert [m for m in received if m.symbol == "ACME"] == [
            p.DepthUpdate("ACME", 1, SELL, 101, 10, 1, first),
            p.Quote("ACME", 2, 0, 0, 101, 10, first),
            p.Trade("ACME", 3, 1, 101, 4, BUY, third),
            p.DepthUpdate("ACME", 4, SELL, 101, 6, 1, third),
            p.Quote("ACME", 5, 0, 0, 101, 6, third),
        ]
        assert [m for m in received if m.symbol == "BOLT"] == [
            p.DepthUpdate("BOLT", 1, SELL, 255, 10, 1, second),
            p.Quote("BOLT", 2, 0, 0, 255, 10, second),
        ]
        stream_commands(tes, commands(300, seed=11), frame=13)
        sequences = {"ACME": 5, "BOLT": 2}
        for message in subscriber.read():
            assert message.sequence == sequences[message.symbol] + 1
            sequences[message.symbol] = message.sequence
        assert sequences["ACME"] > 100 and sequences["BOLT"] > 100
        assert obs.stop() == 0


def test_marks_carry_to_each_greeted_tes_the_trades_it_was_not_sent(tmp_path, context):
    """After a turn that traded, each TES that greeted the server is sent, on its command socket, the
    marks of the trades whose Executed it was not sent (it marks the price from those it was)."""
    env = open_env(tmp_path)
    with Role(OBS, env) as obs:
        first = Tes(context, env, tes_id=1)
        first.send(p.BookSubmit("ACME", T1 | 1, SELL, 0, 0, 101, 10), p.BookSubmit("ACME", T1 | 2, BUY, 0, 0, 101, 4))
        first.receive(2)
        assert first.take_marks() == [], "the one TES greeted was sent the trade"
        second = Tes(context, env, tes_id=2)
        first.send(p.BookSubmit("ACME", T1 | 3, BUY, 0, 0, 101, 2))
        (executed,) = first.receive(1)
        assert second.take_marks() == [[p.Mark("ACME", executed.sequence, 101)]], "TES 2 was not sent it"
        assert first.take_marks() == [], "TES 1 was"
        second.send(p.BookSubmit("ACME", T2 | 1, BUY, 0, 0, 101, 1))
        (executed,) = second.receive(1)
        assert first.receive(1) == [executed], "the maker's TES is sent the Executed too"
        assert (first.take_marks(), second.take_marks()) == ([], []), "both TESs greeted were sent the trade"
        first.quiet()
        second.quiet()
        assert obs.stop() == 0


def snapshot_of(context, env, symbol):
    socket = context.socket(zmq.DEALER)
    socket.setsockopt(zmq.LINGER, 0)
    socket.connect(endpoint(env, "SHARDS__0__SNAPSHOT_ENDPOINT"))
    socket.send(SNAPSHOTS.encode([p.SnapshotRequest(symbol)]))
    assert socket.poll(10_000)
    (reply,) = SNAPSHOTS.decode(socket.recv())
    socket.close()
    return reply


def test_snapshot_requests_beyond_what_a_turn_reads_are_all_answered(tmp_path, context):
    """More request frames than a turn reads (`obs.PUBLIC_FRAMES_PER_TURN`), sent at once to an
    otherwise idle OBS, are all answered: the loop comes back for those left queued without
    waiting for the socket's descriptor, which does not signal them again."""
    env = exchange_env(tmp_path)
    with Role(OBS, env) as server:
        socket = context.socket(zmq.DEALER)
        socket.setsockopt(zmq.LINGER, 0)
        socket.connect(endpoint(env, "SHARDS__0__SNAPSHOT_ENDPOINT"))
        frames = 3 * obs.PUBLIC_FRAMES_PER_TURN + 5
        for _ in range(frames):
            socket.send(SNAPSHOTS.encode([p.SnapshotRequest("ACME")]))
        answers = []
        while len(answers) < frames:
            assert socket.poll(10_000), f"{len(answers)} of {frames} requests answered"
            answers += SNAPSHOTS.decode(socket.recv())
        assert len(answers) == frames and all(type(answer) is p.DepthSnapshot for answer in answers)
        socket.close()
        assert server.stop() == 0


def test_late_subscriber_rebuilds_the_book_from_snapshot_and_updates(tmp_path, context):
    env = exchange_env(tmp_path)
    stream = [c for c in commands(800, seed=5) if c.symbol == "ACME"]
    with Role(OBS, env) as obs:
        tes = Tes(context, env, tes_id=1)
        stream_commands(tes, stream[:300], frame=20)
        subscriber = Subscriber(context, env, ("ACME",))
        tes.send(*stream[300:350])
        snapshot = snapshot_of(context, env, "ACME")
        tes.receive(50)
        stream_commands(tes, stream[350:], frame=15)
        updates = subscriber.read()
        assert isinstance(snapshot, p.DepthSnapshot) and snapshot.sequence > 0
        book = {BUY: {}, SELL: {}}
        for price, quantity, orders in snapshot.bids:
            book[BUY][price] = (quantity, orders)
        for price, quantity, orders in snapshot.asks:
            book[SELL][price] = (quantity, orders)
        newer = [m for m in updates if m.sequence > snapshot.sequence]
        assert newer, "the snapshot was taken before the last commands"
        assert [m.sequence for m in newer] == list(range(snapshot.sequence + 1, snapshot.sequence + 1 + len(newer)))
        last_price = snapshot.last_price
        for message in newer:
            if type(message) is p.DepthUpdate:
                if message.quantity:
                    book[message.side][message.price] = (message.quantity, message.orders)
                else:
                    del book[message.side][message.price]
            elif type(message) is p.Trade:
                last_price = message.price
        view = tes.view("ACME")
        assert sorted(((q, *v) for q, v in book[BUY].items()), reverse=True) == view.bids
        assert sorted((q, *v) for q, v in book[SELL].items()) == view.asks
        assert (last_price, newer[-1].sequence) == (view.last_price, view.sequence)
        assert snapshot_of(context, env, "NOPE") == p.QueryRejected(
            0, RejectReason.UNKNOWN_SYMBOL, "unknown symbol: 'NOPE'"
        )
        assert obs.stop() == 0


# ---------------------------------------------------------------- restarts


def observed(context, env):
    """What a restart must preserve, as seen over the protocol."""
    tes = Tes(context, env)
    hellos = [tes.hello(tes_id) for tes_id in (1, 2, 3)]
    views = [tes.view(symbol) for symbol in ("ACME", "BOLT")]
    snapshots = [snapshot_of(context, env, symbol) for symbol in ("ACME", "BOLT")]
    tes.socket.close()
    return hellos, views, snapshots


def test_sigterm_then_restart_recovers_identical_books(tmp_path, context):
    env = open_env(tmp_path)
    stream = commands(400, seed=8)
    books = {}
    for command in stream:
        apply(books, command)
    with Role(OBS, env) as obs:
        stream_commands(Tes(context, env, tes_id=1), stream, frame=25)
        before = observed(context, env)
        assert obs.stop() == 0
    assert "OBS A stopped at sequence 400" in obs.output()
    with Role(OBS, env) as obs:
        assert "READY OBS A sequence=400 " in obs.wait_for("READY", 1)
        assert observed(context, env) == before
        hellos, views, _ = before
        assert [h.max_order_id for h in hellos] == [max_id(books, T1), max_id(books, T2), 0]
        tes = Tes(context, env, tes_id=1)
        assert_books_equal(tes, books)
        tes.send(p.BookExpireDay("ACME"))
        assert tes.receive(1)[0].sequence == 401
        assert obs.stop() == 0


@pytest.mark.parametrize("fsync", ["batch", "interval", "never"])
def test_kill_9_mid_stream_loses_no_acknowledged_command(tmp_path, context, fsync):
    env = open_env(tmp_path, EXCHANGE__JOURNAL__FSYNC=fsync)
    stream = commands(4000, seed=9)
    acknowledged = []
    with Role(OBS, env) as obs:
        tes = Tes(context, env, tes_id=1)
        sent = 0
        while len(acknowledged) < 1500:
            if sent - len(acknowledged) < 200:
                tes.send(*stream[sent : sent + 20])
                sent += 20
            if tes.socket.poll(1):
                acknowledged += tes._replies()
        tes.send(*stream[sent : sent + 100])
        sent += 100
        obs.kill()
    assert [x.sequence for x in acknowledged] == list(range(1, len(acknowledged) + 1))
    with Role(OBS, env) as obs:
        tes = Tes(context, env)
        last = tes.hello(1).last_sequence
        assert len(acknowledged) <= last <= sent
        books = {}
        for number, command in enumerate(stream[:last], 1):
            events = apply(books, command)
            if number <= len(acknowledged):
                assert acknowledged[number - 1].events == events
        assert_books_equal(tes, books)
        assert tes.hello(1).max_order_id == max_id(books, T1)
        assert obs.stop() == 0


def concerns(tes_prefix, command, events):
    """Whether a reply goes to the TES of ``tes_prefix``: it sent the command or owns a touched order."""
    owners = {e.maker_id if isinstance(e, OrderFilled) else e.order_id for e in events
              if isinstance(e, OrderFilled | OrderExpired)}
    if not isinstance(command, p.BookExpireDay):
        owners.add(command.order_id)
    return any(order_id >> 48 == tes_prefix >> 48 for order_id in owners)


def expected_replies(stream, seen, tes_prefix):
    """The Executed a TES that saw up to sequence ``seen`` is owed, from the reference books."""
    books, owed = {}, []
    for sequence, command in enumerate(stream, 1):
        events = apply(books, command)
        if sequence > seen and concerns(tes_prefix, command, events):
            owed.append(p.Executed(sequence, command.symbol, events))
    return owed


def test_hello_after_a_kill_9_replays_the_replies_the_tes_missed(tmp_path, context):
    env = open_env(tmp_path)
    stream = commands(600, seed=12)
    with Role(OBS, env) as obs:
        stream_commands(Tes(context, env, tes_id=1), stream[:400], frame=20)
        second = Tes(context, env, tes_id=2)
        second.send(*stream[400:])
        second.receive(200)  # journaled before it was answered; the Hellos below say they saw less
        obs.kill()
    with Role(OBS, env) as obs:
        tes = Tes(context, env)
        for tes_id, seen in ((1, 350), (2, 400), (2, 600)):
            owed = expected_replies(stream, seen, tes_id << 48)
            tes.send(p.Hello(tes_id, seen))
            replies = tes.receive(len(owed) + 1)
            assert replies[:-1] == owed
            assert replies[-1] == p.HelloReply(["ACME", "BOLT"], replies[-1].max_order_id, 600, True,
                                               replies[-1].last_prices)
        assert len(expected_replies(stream, 400, T2)) > 50
        assert obs.stop() == 0


def newest_snapshot(directory) -> int:
    """The sequence of the newest snapshot in ``directory`` (0: none)."""
    return max((int(path.stem.split("-")[1]) for path in directory.glob("snapshot-*.msgpack")), default=0)


def test_hello_from_before_the_replay_history_says_the_replay_is_incomplete_and_sends_none(tmp_path, context):
    env = open_env(tmp_path, EXCHANGE__JOURNAL__SNAPSHOT_EVERY="100")
    stream = commands(250, seed=13)
    with Role(OBS, env) as obs:
        stream_commands(Tes(context, env, tes_id=1), stream, frame=10)
        # the second snapshot (after sequence 200 or later: a turn that took several frames ends
        # past the interval) is written in the background: killed before it is, the OBS would
        # recover from the first, and its history would reach back further
        snapshots = tmp_path / "journal-A"
        eventually(lambda: newest_snapshot(snapshots) >= 200, "no snapshot after sequence 199 was written")
        newest = newest_snapshot(snapshots)
        obs.kill()
    with Role(OBS, env) as obs:
        tes = Tes(context, env)
        tes.send(p.Hello(1, newest - 1))
        (incomplete,) = tes.receive(1)
        assert (type(incomplete), incomplete.replay_complete) == (p.HelloReply, False), \
            "none of the replies it still holds: the TES catches up from the journal, in order"
        tes.send(p.Hello(1, newest))
        replies = tes.receive(len(expected_replies(stream, newest, T1)) + 1)
        assert replies[:-1] == expected_replies(stream, newest, T1)
        assert replies[-1].replay_complete is True
        tes.send(p.Hello(1))
        assert tes.receive(1)[0] == p.HelloReply(["ACME", "BOLT"], replies[-1].max_order_id, 250, True,
                                                 replies[-1].last_prices)
        assert obs.stop() == 0


def test_small_snapshot_interval_recovers_from_snapshot_and_journal_tail(tmp_path, context):
    env = open_env(tmp_path, EXCHANGE__JOURNAL__SNAPSHOT_EVERY="25")
    stream = commands(310, seed=10)
    books = {}
    for command in stream:
        apply(books, command)
    with Role(OBS, env) as obs:
        stream_commands(Tes(context, env, tes_id=1), stream[:300], frame=7)
        before = observed(context, env)
        journal_dir = tmp_path / "journal-A"
        eventually(lambda: len(list(journal_dir.glob("snapshot-*.msgpack"))) >= 2, "fewer than two snapshots")
        obs.kill()
    snapshots = sorted(int(path.stem.split("-")[1]) for path in journal_dir.glob("snapshot-*.msgpack"))
    # written in the background; a kill between a snapshot's rename and the deletion of the
    # oldest (servers.journal.write_snapshot) leaves one more than KEEP_SNAPSHOTS
    assert 2 <= len(snapshots) <= 3 and 25 <= snapshots[0] and snapshots[-1] <= 300, snapshots
    with Role(OBS, env) as obs:
        assert "replayed from byte 0 " not in obs.output()
        assert observed(context, env) == before
        tes = Tes(context, env, tes_id=1)
        assert [x.sequence for x in stream_commands(tes, stream[300:], frame=5)] == list(range(301, 311))
        assert_books_equal(tes, books)
        assert obs.stop() == 0


def first_data(path):
    """The offset of the first byte of ``path`` that is not in a hole (freed blocks read as zeros)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.lseek(fd, 0, os.SEEK_DATA)
    finally:
        os.close(fd)


def test_journal_behind_the_older_snapshot_is_discarded_and_recovery_still_exact(tmp_path, context):
    env = open_env(tmp_path, EXCHANGE__JOURNAL__SNAPSHOT_EVERY="500")
    stream = commands(4000, seed=14)
    journal_file = tmp_path / "journal-A" / "commands.log"
    with Role(OBS, env) as obs:
        tes = Tes(context, env, tes_id=1)
        for start in range(0, len(stream), 500):
            stream_commands(tes, stream[start : start + 500], frame=50)
            # written in the background, slowly on a loaded machine: waited for, so that the next
            # one is taken 500 commands later (one at a time: a turn during a write takes none)
            snapshot = journal_file.parent / f"snapshot-{start + 500}.msgpack"
            eventually(snapshot.exists, f"no snapshot at sequence {start + 500}")
        before = observed(context, env)
        older = read_snapshot(journal_file.parent / "snapshot-3500.msgpack").journal_offset
        eventually(lambda: read_discarded(journal_file.parent) == older, "the journal before the older snapshot "
                   "was never discarded")
        assert first_data(journal_file) > 0, "its blocks are freed"
        obs.kill()
    discarded = read_discarded(journal_file.parent)
    end = list(read_records(journal_file.parent, discarded, None))[-1].end
    assert discarded > end // 2
    with Role(OBS, env) as obs:
        assert "READY OBS A sequence=4000 " in obs.wait_for("READY", 1)
        assert observed(context, env) == before
        assert obs.stop() == 0


def test_flipped_byte_mid_journal_stops_the_obs_until_the_journal_is_cut_there(tmp_path, context):
    env = open_env(tmp_path)
    stream = commands(3000, seed=15)
    with Role(OBS, env) as obs:
        stream_commands(Tes(context, env, tes_id=1), stream, frame=50)
        assert obs.stop() == 0
    journal_file = tmp_path / "journal-A" / "commands.log"
    ends = [record.end for record in read_records(journal_file.parent)]
    data = bytearray(journal_file.read_bytes())
    data[len(data) // 2] ^= 0x10
    journal_file.write_bytes(data)
    sequence, offset = next(
        (n, start) for n, (start, end) in enumerate(zip([0, *ends], ends, strict=False), 1) if end > len(data) // 2
    )

    started = subprocess.run([sys.executable, "main.py", *OBS], cwd=REPO, env=env, capture_output=True, text=True,
                             timeout=60)
    output = started.stdout + started.stderr
    assert started.returncode == 1 and "Traceback" not in output and "READY" not in output, output
    assert (f"OBS A cannot start: journal {journal_file} is damaged at byte {offset}, where sequence {sequence} "
            f"was expected") in output
    assert f"{sequence - 1} good records precede it" in output
    assert f"the next valid record is at byte {ends[sequence - 1]} (sequence {sequence + 1})" in output
    assert f"stop the OBS and run: python main.py journal cut --shard A --at {offset}\n" in output
    assert journal_file.read_bytes() == data, "nothing was changed"

    cut = subprocess.run([sys.executable, "main.py", "journal", "cut", "--shard", "A", "--at", str(offset)],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert cut.returncode == 0, cut.stderr
    summary = json.loads(cut.stdout.splitlines()[-1])
    assert (summary["last_sequence"], summary["bytes"]) == (sequence - 1, len(data) - offset)
    books = {}
    for command in stream[: sequence - 1]:
        apply(books, command)
    with Role(OBS, env) as obs:
        assert f"READY OBS A sequence={sequence - 1} " in obs.wait_for("READY", 1)
        tes = Tes(context, env, tes_id=1)
        assert_books_equal(tes, books)
        assert tes.hello(1).max_order_id == max_id(books, T1)
        assert obs.stop() == 0


def refusal(env, caplog, shard=None):
    """``obs.serve`` in this process, for a start that must be refused: its exit status and log lines."""
    with caplog.at_level(logging.INFO):
        status = obs.serve(load_config(environ=env), argparse.Namespace(shard=shard))
    return status, [(record.levelno, record.getMessage(), record.exc_info) for record in caplog.records]


def test_unknown_shard_refuses_to_start_with_exit_2_in_one_line(tmp_path, caplog):
    status, lines = refusal(open_env(tmp_path), caplog, shard="Z")
    assert (status, lines) == (2, [(logging.ERROR, "OBS Z cannot start: shards: no shard named 'Z' (have ['A'])",
                                    None)])


def test_damaged_consumers_file_refuses_to_start_with_exit_1_in_one_line(tmp_path, caplog):
    env = open_env(tmp_path)
    consumers = tmp_path / "journal-A" / CONSUMERS_FILE
    consumers.parent.mkdir()
    consumers.write_text("{not json")
    status, lines = refusal(env, caplog)
    errors = [line for line in lines if line[0] >= logging.ERROR]
    assert status == 1 and len(errors) == 1 and errors[0][2] is None, lines
    assert errors[0][1].startswith(f"OBS A cannot start: {consumers} is damaged (")
    assert errors[0][1].endswith("delete it to forget the consumers' positions (they then resubscribe from what they "
                                 "hold)")


# ---------------------------------------------------------------- bad input


def test_malformed_input_is_dropped_and_serving_goes_on(tmp_path, context):
    env = exchange_env(tmp_path)
    with Role(OBS, env) as obs:
        raw = as_role(context.socket(zmq.DEALER), env)
        raw.setsockopt(zmq.LINGER, 0)
        raw.connect(endpoint(env, "SHARDS__0__COMMAND_ENDPOINT"))
        submit = ["BookSubmit", "ACME", T1 | 1, 0, 0, 0, 100, 5]
        garbage = [
            [b""],
            [os.urandom(100)],
            [REQUESTS.encode([p.Hello(1)]), b"second payload"],
            [b"\x91" + b"\xc4" * (p.MAX_FRAME_BYTES + 1)],
            [msgspec.msgpack.encode([["NoSuchCommand", 1]])],
            [msgspec.msgpack.encode([["BookSubmit", "ACME", "one", 0, 0, 0, 100, 5]])],
            [msgspec.msgpack.encode([submit[:-1]])],
            [msgspec.msgpack.encode([{"tes_id": 1}])],
            [msgspec.msgpack.encode([["Hello", 1]] * (p.MAX_BATCH + 1))],
            [msgspec.msgpack.encode([["BookSubmit", "ACME", 2**64 - 1, 0, 0, 0, 100, 5]])],
            [msgspec.msgpack.encode([["BookReplace", "ACME", 1, 2**63, 5]])],
            [REQUESTS.encode([p.Hello(70_000)])],
        ]
        for frames in garbage:
            raw.send_multipart(frames)
        snapshotter = context.socket(zmq.DEALER)
        snapshotter.setsockopt(zmq.LINGER, 0)
        snapshotter.connect(endpoint(env, "SHARDS__0__SNAPSHOT_ENDPOINT"))
        for frames in ([b"\xc1"], [b"a", b"b"], [msgspec.msgpack.encode([["SnapshotRequest", 5]])]):
            snapshotter.send_multipart(frames)
        tes = Tes(context, env)
        assert tes.hello(1) == p.HelloReply(["ACME", "BOLT"], 0, 0), "nothing malformed was journaled"
        raw.send(msgspec.msgpack.encode([submit]))
        assert raw.poll(5000)
        (executed,) = REPLIES.decode(raw.recv())
        assert executed.sequence == 1 and isinstance(executed.events[0], OrderAccepted)
        assert snapshot_of(context, env, "ACME").bids == [(100, 5, 1)]
        answers = []
        while len(answers) < 3:
            assert snapshotter.poll(5000), answers
            answers += SNAPSHOTS.decode(snapshotter.recv())
        assert [(a.request_id, a.reason) for a in answers] == [(0, RejectReason.MALFORMED_MESSAGE)] * 3
        assert [a.text.split(": ", 1)[1] for a in answers] == [
            "MessagePack data is malformed: invalid opcode '\\xc1' (byte 0)", "2 payload frames instead of 1",
            "Expected `str`, got `int` - at `$[0][1]`"], "each malformed frame answered, saying why"
        oversized = SNAPSHOTS.encode([p.SnapshotRequest("ACME")] * 300)  # ends the connection unread
        assert len(oversized) > PUBLIC_FRAME_BYTES
        snapshotter.send(oversized)
        assert not snapshotter.poll(500), "no answer to it"
        obs.wait_for("dropped malformed input", 5)
        assert obs.stop() == 0
    assert "OBS A stopped at sequence 1 (15 malformed inputs dropped)" in obs.output()
