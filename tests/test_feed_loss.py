"""A market data client that loses its connection to the book server after it synced: it says so,
keeps the last consistent book, and rebuilds it from a snapshot once the connection is back, even
if nothing is published after it; the ladder, the tape and the bots say so or hold back.

Socket-free first (`BookSync.lost`, the views, a bot), then on loopback with a server the test
plays (gone and back with a book that changed meanwhile), then against a real book server stopped
(SIGSTOP), which only ZeroMQ's heartbeat can tell from a quiet one."""

import logging
import signal
import subprocess
import sys
import threading
import time

import zmq
from phase_feed import PhaseFeed
from procs import REPO, Role, endpoint, exchange_env, free_port
from test_client_phases import offline_bot
from test_subscribers import rss_kb
from test_terminal import ACME, Lost, ScriptedFeed, bodies, render

from clients import market_data
from clients.book_view import ladder
from clients.bot import BotOrder
from clients.market_data import BookSync, MarketDataClient
from clients.tape import SymbolTape
from engine.types import OrderType, Side, TimeInForce
from servers import protocol as p
from servers.protocol import CONTROL_TOPIC
from servers.security import PEER_MISSES

BUY, SELL = Side.BUY, Side.SELL
LOST_AT = 1_700_000_000_123_456_789


def synced_book() -> BookSync:
    sync = BookSync("ACME")
    sync.on_snapshot(p.DepthSnapshot("ACME", 10, [(9_950, 10, 2)], [(10_050, 5, 1)], 10_000))
    return sync


def test_a_lost_connection_keeps_the_book_but_waits_for_a_snapshot():
    sync = synced_book()
    sync.lost(LOST_AT)
    assert not sync.synced and sync.needs_snapshot and sync.resyncs == 1
    assert sync.lost_at == LOST_AT
    assert (sync.best_bid(), sync.best_ask()) == ((9_950, 10), (10_050, 5)), "the last consistent book"
    assert sync.on_update(p.DepthUpdate("ACME", 11, BUY, 9_950, 0, 0)) == [], "buffered, not applied"
    sync.lost(LOST_AT + 1)
    assert sync.lost_at == LOST_AT and sync.resyncs == 1, "lost once until rebuilt"

    applied = sync.on_snapshot(p.DepthSnapshot("ACME", 12, [(9_900, 3, 1)], [(10_050, 5, 1)], 10_000))
    assert applied == [], "the buffered update is older than the snapshot"
    assert sync.synced and not sync.needs_snapshot and sync.lost_at is None
    assert (sync.best_bid(), sync.sequence) == ((9_900, 3), 12)


def test_a_connection_lost_before_the_first_snapshot_is_no_resync():
    sync = BookSync("ACME")
    sync.lost(LOST_AT)
    assert sync.lost_at == LOST_AT and sync.resyncs == 0 and sync.needs_snapshot
    sync.on_snapshot(p.DepthSnapshot("ACME", 3, [], [], None))
    assert sync.synced and sync.lost_at is None


def test_a_book_waiting_for_its_snapshot_keeps_only_the_newest_updates(monkeypatch):
    """A snapshot port that does not answer cannot make the client hold every update meanwhile; a
    snapshot older than the oldest kept is a jump, and the book waits for a newer one."""
    monkeypatch.setattr(market_data, "MAX_BUFFERED", 3)
    sync = BookSync("ACME")
    for sequence in range(1, 8):
        sync.on_update(p.DepthUpdate("ACME", sequence, BUY, 9_900 + sequence, sequence, 1))
    assert [message.sequence for message in sync._buffer] == [5, 6, 7]
    assert sync.on_snapshot(p.DepthSnapshot("ACME", 2, [], [], None)) == []
    assert not sync.synced and sync.needs_snapshot and sync.resyncs == 1, "3 and 4 are gone"
    applied = sync.on_snapshot(p.DepthSnapshot("ACME", 5, [(9_905, 5, 1)], [], None))
    assert [message.sequence for message in applied] == [6, 7] and sync.synced
    assert sync.best_bid() == (9_907, 7)


def test_the_ladder_and_the_tape_say_the_connection_was_lost():
    feed = ScriptedFeed()
    feed.sync = synced_book()
    tape = SymbolTape(feed, ACME, 4)
    feed.queued.append(Lost(LOST_AT))
    assert tape.read() == ["22:13:20.123456  ACME  lost    market data connection lost after sequence 10; "
                           "resyncing once it is back"]
    shown = render(ladder(ACME, feed.sync, 2))
    assert [line.split() for line in shown[2:-1]] == [["100.50", "5", "1"], ["2", "10", "99.50"]], "the last book"
    assert shown[-1] == "market data connection lost at 22:13:20.123456: resyncing once it is back"
    feed.queued.append(p.DepthSnapshot("ACME", 14, [(9_950, 10, 2)], [], 10_000))
    assert bodies(tape.read()) == ["ACME  resync  book rebuilt at sequence 14: bid 99.50 x 10  ask --"]
    assert "lost" not in render(ladder(ACME, feed.sync, 2))[-1]


def test_a_bot_holds_back_new_orders_and_moves_while_its_book_is_stale(caplog):
    feed = ScriptedFeed()
    feed.sync = synced_book()
    with offline_bot(feed) as bot:
        bot.follow_feed()
        assert bot.may_enter(OrderType.LIMIT, TimeInForce.GTC)
        feed.sync.lost(LOST_AT)
        with caplog.at_level(logging.INFO, logger="bot"):
            bot.follow_feed()
        assert "bot flow1 ACME: market data connection lost after sequence 10: holding back new orders until " \
               "the book is rebuilt" in caplog.text
        assert not bot.may_enter(OrderType.LIMIT, TimeInForce.GTC)
        assert bot.enter(BUY, OrderType.LIMIT, TimeInForce.GTC, 9_950, 1) is None and bot.held_back == 1
        resting = BotOrder(1, BUY, OrderType.LIMIT, 9_950, 5)
        resting.order_id, resting.busy = 7, False
        bot.replace(resting, 9_960, 5)
        assert bot.held_back == 2 and not resting.busy, "a move is held back"
        bot.replace(resting, 9_950, 3)
        assert bot.held_back == 2 and resting.busy, "a reduction in place goes"

        feed.queued.append(p.DepthSnapshot("ACME", 14, [(9_950, 10, 2)], [], 10_000))
        feed.poll()
        with caplog.at_level(logging.INFO, logger="bot"):
            bot.follow_feed()
        assert "bot flow1 ACME: market data back at sequence 14" in caplog.text
        assert bot.may_enter(OrderType.LIMIT, TimeInForce.GTC)


# ================================================================ on loopback


def poll_until(feed: MarketDataClient, done, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, "not within the time"
        feed.poll(0.05)


def serving(server: PhaseFeed) -> threading.Thread:
    """``server`` answering the client's subscription and snapshot request, in a thread of its own
    (the client's `poll` sends them)."""
    thread = threading.Thread(target=server.serve, daemon=True)
    thread.start()
    return thread


def test_a_server_gone_and_back_with_a_changed_book_is_rebuilt_without_any_update():
    server = PhaseFeed("ACME")
    server.set_book([(9_950, 10, 2)], [(10_050, 5, 1)])
    feed = MarketDataClient(server.market_data, server.snapshots, "ACME")
    try:
        first = serving(server)
        feed.connect(10.0)
        first.join(5.0)
        assert feed.connected and feed.lost_at is None
        server.publish(lambda sequence: p.DepthUpdate("ACME", sequence, BUY, 9_950, 12, 3))
        poll_until(feed, lambda: feed.sequence == 1)
        assert feed.best_bid() == (9_950, 12)

        before = time.time_ns()
        server.restart()
        poll_until(feed, lambda: not feed.connected)
        assert before <= feed.lost_at <= time.time_ns()
        assert not feed.synced and feed.resyncs == 1
        assert feed.best_bid() == (9_950, 12), "the last consistent book is kept"

        # Back, with what was published while the client was away only in its snapshot.
        server.sequence = 4
        server.set_book([(9_900, 1, 1)], [(10_050, 5, 1)])
        thread = serving(server)
        poll_until(feed, lambda: feed.synced)
        thread.join(5.0)
        assert feed.connected and feed.lost_at is None and feed.resyncs == 1
        assert (feed.best_bid(), feed.sequence) == ((9_900, 1), 4)
    finally:
        feed.close()
        server.close()


IDLE = """
import sys
from clients.market_data import MarketDataClient
feed = MarketDataClient(sys.argv[1], sys.argv[2], "ACME")
feed.connect(10.0)
print("synced", flush=True)
sys.stdin.readline()
"""
"""A market data client in a process of its own that syncs, then stops polling."""


def offer(server: PhaseFeed, frame: bytes, most: int) -> int:
    """Send ``frame`` to the subscriber until ``most`` bytes are sent or it has taken nothing for a
    second (its queues full: the client's, the kernel's and the server's own); the bytes sent."""
    server.publisher.setsockopt(zmq.ROUTER_MANDATORY, 1)
    sent, refused_since = 0, None
    while sent < most:
        try:
            server.publisher.send_multipart([server.subscriber, b"ACME.", frame], zmq.NOBLOCK)
        except zmq.Again:
            refused_since = refused_since or time.monotonic()
            if time.monotonic() - refused_since > 1.0:
                break
            time.sleep(0.001)
            continue
        sent, refused_since = sent + len(frame), None
    return sent


def test_a_client_that_stops_polling_holds_a_bounded_part_of_the_feed():
    """Up to 400 MB offered to a client that no longer polls: it takes, and grows by, what its
    ZeroMQ queues (RECEIVE_FRAMES frames of 5 KB) and the kernel's socket buffers hold: it took 62 MB
    and grew by 79 MB in one run; with no bound it took all 400 MB and grew by 584 MB."""
    server = PhaseFeed("ACME")
    client = subprocess.Popen([sys.executable, "-c", IDLE, server.market_data, server.snapshots], cwd=REPO,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        serving(server).join(10.0)
        assert client.stdout.readline() == b"synced\n"
        before = rss_kb(client.pid)
        updates = [p.DepthUpdate("ACME", sequence, BUY, 9_000 + sequence, sequence, 1) for sequence in range(1, 201)]
        frame = server._updates.encode(updates)
        assert 4_000 < len(frame) < 6_000, len(frame)
        sent = offer(server, frame, 400_000_000)
        grown = (rss_kb(client.pid) - before) * 1024
        assert sent < 200_000_000, f"it took {sent / 1e6:.0f} MB: no bound"
        assert market_data.RECEIVE_FRAMES * len(frame) < grown < 120_000_000, f"grew by {grown / 1e6:.0f} MB"
    finally:
        client.kill()
        client.wait()
        server.close()


def test_a_snapshot_port_that_takes_nothing_never_blocks_poll():
    """Subscribed, but its snapshot port has nothing listening: its requests queue up to the
    socket's high-water mark (1,000), and then each one is skipped instead of blocking `poll`."""
    server = PhaseFeed("ACME")
    feed = MarketDataClient(server.market_data, f"tcp://127.0.0.1:{free_port()}", "ACME", snapshot_retry_s=0.0)
    try:
        poll_until(feed, lambda: server.publisher.poll(0))
        identity, _ = server.publisher.recv_multipart()
        server.publisher.send_multipart([identity, CONTROL_TOPIC, server._controls.encode([p.Subscribed("ACME")])])
        poll_until(feed, lambda: feed.subscribed)
        polls = threading.Thread(target=lambda: [feed.poll(0.0) for _ in range(3_000)], daemon=True)
        polls.start()
        polls.join(30.0)
        assert not polls.is_alive(), "a poll blocked on a snapshot request"
        assert not feed.synced
    finally:
        feed.close()
        server.close()


# ================================================================ against a real book server


def test_a_stopped_book_server_is_seen_lost_by_the_heartbeat_and_the_book_rebuilt_when_it_resumes(tmp_path):
    env = exchange_env(tmp_path)
    with Role(["-s", "OBS"], env) as obs:
        feed = MarketDataClient(endpoint(env, "SHARDS__0__MARKET_DATA_ENDPOINT"),
                                endpoint(env, "SHARDS__0__SNAPSHOT_ENDPOINT"), "ACME", heartbeat_s=0.2)
        try:
            feed.connect(10.0)
            assert feed.connected
            obs.process.send_signal(signal.SIGSTOP)
            try:
                stopped = time.monotonic()
                poll_until(feed, lambda: not feed.connected, timeout=10.0)
                waited = time.monotonic() - stopped
                assert waited >= 0.2 * PEER_MISSES * 0.9, "lost only once the heartbeats went unanswered"
                assert not feed.synced and feed.lost_at is not None
            finally:
                obs.process.send_signal(signal.SIGCONT)
            poll_until(feed, lambda: feed.synced, timeout=15.0)
            assert feed.connected and feed.lost_at is None and feed.resyncs == 1
        finally:
            feed.close()
        assert obs.stop() == 0, obs.output()
