"""The client side: the client library, the trader CLI, the bots and the load generator.

Three layers: the socket-free logic (market-data sequencing, the load generator's
schedule and percentiles); `ExchangeClient` against a scripted ROUTER in the test
(logon outcomes, kept messages, heartbeats); and every client against a real OBS
and TES on free ports.
"""

import gc
import itertools
import json
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import zmq

from clients import loadgen
from clients.client import ClientError, ExchangeClient, LogonError, RequestRejected, SessionEnded
from clients.market_data import BookSync, MarketDataClient
from clients.runtime import wait_until_tradable
from engine.types import OrderType, RejectReason, Side, TimeInForce
from servers import protocol as p
from tests.procs import REPO, Role, endpoint, exchange_env

BUY, SELL = Side.BUY, Side.SELL
LIMIT, MARKET = OrderType.LIMIT, OrderType.MARKET
GTC, IOC = TimeInForce.GTC, TimeInForce.IOC


# ================================================================ BookSync (no sockets)


def depth(sequence, symbol="ACME", side=BUY, price=100, quantity=5, orders=1):
    return p.DepthUpdate(symbol, sequence, side, price, quantity, orders)


def snapshot(sequence, bids=(), asks=(), last_price=None):
    return p.DepthSnapshot("ACME", sequence, list(bids), list(asks), last_price)


def book_of(sync: BookSync) -> dict:
    bids, asks = sync.depth(100)
    return {"bids": bids, "asks": asks}


def test_updates_before_the_snapshot_are_buffered_then_older_ones_dropped():
    sync = BookSync("ACME")
    assert sync.on_update(depth(4, price=101)) == []
    assert sync.on_update(depth(5, price=102)) == []
    assert sync.on_update(depth(6, price=103)) == []
    assert not sync.synced and sync.best_bid() is None

    applied = sync.on_snapshot(snapshot(5, bids=[(101, 5, 1), (102, 5, 1)]))

    assert [m.sequence for m in applied] == [6]
    assert sync.synced and sync.sequence == 6 and sync.resyncs == 0
    assert book_of(sync) == {"bids": [(103, 5, 1), (102, 5, 1), (101, 5, 1)], "asks": []}


def test_depth_updates_set_and_remove_levels_and_trades_set_last_trade():
    sync = BookSync("ACME")
    sync.on_snapshot(snapshot(0))
    sync.on_update(depth(1, side=BUY, price=99, quantity=7, orders=2))
    sync.on_update(depth(2, side=SELL, price=101, quantity=3))
    sync.on_update(depth(3, side=SELL, price=102, quantity=4))
    sync.on_update(p.Quote("ACME", 4, 99, 7, 101, 3))
    sync.on_update(p.Trade("ACME", 5, 1, 101, 3, BUY))
    sync.on_update(depth(6, side=SELL, price=101, quantity=0, orders=0))

    assert book_of(sync) == {"bids": [(99, 7, 2)], "asks": [(102, 4, 1)]}
    assert sync.best_bid() == (99, 7) and sync.best_ask() == (102, 4) and sync.mid() == 100.5
    assert sync.last_trade == p.Trade("ACME", 5, 1, 101, 3, BUY) and sync.last_price == 101
    assert sync.sequence == 6


def test_a_sequence_gap_stops_applying_until_a_new_snapshot():
    sync = BookSync("ACME")
    sync.on_snapshot(snapshot(10, bids=[(100, 5, 1)]))
    sync.on_update(depth(11, price=99))

    assert sync.on_update(depth(13, price=98)) == []
    assert not sync.synced and sync.needs_snapshot and sync.resyncs == 1
    assert sync.on_update(depth(14, price=97)) == []
    assert book_of(sync)["bids"] == [(100, 5, 1), (99, 5, 1)], "the last consistent book stays"

    applied = sync.on_snapshot(snapshot(13, bids=[(100, 5, 1), (99, 5, 1), (98, 5, 1), (96, 1, 1)]))

    assert [m.sequence for m in applied] == [14]
    assert sync.synced and not sync.needs_snapshot and sync.sequence == 14
    assert book_of(sync)["bids"] == [(100, 5, 1), (99, 5, 1), (98, 5, 1), (97, 5, 1), (96, 1, 1)]


def test_a_snapshot_older_than_the_buffered_updates_asks_for_another():
    sync = BookSync("ACME")
    sync.on_update(depth(8, price=101))
    sync.on_update(depth(9, price=102))

    sync.on_snapshot(snapshot(6))

    assert not sync.synced and sync.needs_snapshot and sync.resyncs == 1
    applied = sync.on_snapshot(snapshot(7))
    assert [m.sequence for m in applied] == [8, 9]
    assert sync.synced and sync.sequence == 9


def test_duplicates_and_late_snapshots_are_ignored():
    sync = BookSync("ACME")
    sync.on_snapshot(snapshot(3, bids=[(100, 5, 1)]))
    sync.on_update(depth(4, price=99))

    assert sync.on_update(depth(4, price=98)) == []
    assert sync.on_update(depth(2, price=97)) == []
    assert sync.on_snapshot(snapshot(1, bids=[(50, 1, 1)])) == []
    assert book_of(sync)["bids"] == [(100, 5, 1), (99, 5, 1)] and sync.synced


# ================================================================ load generator maths


def test_schedule_releases_order_i_at_i_over_rate():
    rate, total = 1000.0, 10
    assert loadgen.due(-0.001, rate, total) == 0
    assert loadgen.due(0.0, rate, total) == 1
    assert loadgen.due(0.0009, rate, total) == 1
    assert loadgen.due(0.001, rate, total) == 2
    assert loadgen.due(0.0055, rate, total) == 6
    assert loadgen.due(5.0, rate, total) == total


def test_send_interval_keeps_single_orders_at_low_rates_and_batches_at_high_rates():
    assert loadgen.send_interval(1_000) == loadgen.send_interval(25_000) == 50e-6
    assert loadgen.send_interval(50_000) == pytest.approx(50e-6 + 950e-6 / 3)
    assert loadgen.send_interval(100_000) == loadgen.send_interval(1_000_000) == 1e-3


def test_latency_is_measured_from_the_scheduled_send_time():
    start, rate = 100.0, 1000.0
    answered_at = np.array([100.002, np.nan, 100.0025, 100.013])

    latency = loadgen.latencies_us(answered_at, start, rate)

    np.testing.assert_allclose(latency, [2000.0, 500.0, 10000.0])


def test_summary_counts_lost_orders_and_uses_numpy_percentiles():
    start, rate, sent = 0.0, 100.0, 1000
    answered_at = np.arange(sent) / rate + np.linspace(0.001, 0.010, sent)
    answered_at[[3, 500]] = np.nan

    result = loadgen.summarize(answered_at, rejected=2, fills=7, sent=sent, start=start, rate=rate, end=10.0)

    latency = loadgen.latencies_us(answered_at, start, rate)
    assert list(result) == list(loadgen.RESULT_KEYS)
    assert result["sent"] == 1000 and result["lost"] == 2
    assert result["acked"] == 996 and result["rejected"] == 2 and result["fills"] == 7
    assert result["duration_s"] == pytest.approx(10.0, abs=0.001)
    assert result["orders_per_s"] == pytest.approx(998 / 10.0, abs=0.1)
    assert result["ack_p50_us"] == pytest.approx(np.percentile(latency, 50), abs=0.1)
    assert result["ack_p99_us"] == pytest.approx(np.percentile(latency, 99), abs=0.1)
    assert result["ack_p999_us"] == pytest.approx(np.percentile(latency, 99.9), abs=0.1)
    assert result["ack_max_us"] == pytest.approx(10_000.0, abs=0.1) and result["ack_max_at_s"] == 9.99
    # latency rises with the order: the slowest 1% are the last ten answered, in the last two
    # pieces of 50 ms (five orders each at 100/s)
    assert result["ack_tail_pieces"] == [2, 200]
    assert result["send_lag_max_us"] == 0.0


def test_the_tail_pieces_tell_a_stall_from_a_path_slow_throughout():
    start, rate = 10.0, 1000.0
    due = start + np.arange(5000) / rate            # five seconds: a hundred pieces of 50 ms

    def tail(answered_at):
        return loadgen.summarize(answered_at, 0, 0, len(answered_at), start, rate, start + 5.0)["ack_tail_pieces"]

    steady = np.random.default_rng(7).uniform(0.001, 0.002, 5000)
    # the slowest 1% (50 acks) of latencies that vary at random: in pieces all over the run
    spread, pieces = tail(due + steady)
    assert pieces == 100 and spread > 30
    stalled = steady.copy()
    stalled[2000:2060] += 0.050                     # the 60 orders due in 60 ms from 2 s wait 50 ms more
    assert tail(due + stalled) == [2, 100]
    answered_at = due + steady
    answered_at[:4500] = np.nan                     # only the last 0.5 s answered: ten pieces
    assert tail(answered_at)[1] == 10
    assert tail(np.full(3, np.nan)) is None


def test_summary_names_the_worst_order_by_its_scheduled_time_skipping_the_unanswered():
    start, rate = 50.0, 1000.0
    answered_at = start + np.arange(6) / rate + np.array([0.001, 0.2, np.nan, 0.004, 0.003, 0.002])
    answered_at[1] = np.nan

    result = loadgen.summarize(answered_at, 0, 0, 6, start, rate, start + 0.006, send_lag_s=0.0015)

    assert result["ack_max_us"] == pytest.approx(4000.0, abs=0.1) and result["ack_max_at_s"] == 0.003
    assert result["send_lag_max_us"] == 1500.0


class StalledSender(loadgen.Schedule):
    """A schedule whose first send takes ``stall_s`` (as if the process were descheduled), every
    order answered as soon as it is sent."""

    def __init__(self, socket, stall_s: float) -> None:
        super().__init__(socket, rate=1_000, duration=0.1, batch_max=1_000)
        self.stall_s = stall_s

    def send(self, batch: range) -> None:
        if batch.start == 0:
            time.sleep(self.stall_s)
        self.answered_at[batch.start:batch.stop] = time.perf_counter()
        self.outstanding -= len(batch)

    def read_ready(self) -> None:
        """Nothing to read: every order was answered as it was sent."""


class AnsweredOften(loadgen.Schedule):
    """A schedule at 100,000 orders/s (sends 1 ms apart) woken by an answer every 100 µs; each
    send's time and size noted."""

    def __init__(self, socket) -> None:
        super().__init__(socket, rate=100_000, duration=0.02, batch_max=1_000)
        self.sends: list[tuple[float, int]] = []

    def send(self, batch: range) -> None:
        self.sends.append((time.perf_counter(), len(batch)))
        self.answered_at[batch.start:batch.stop] = time.perf_counter()
        self.outstanding -= len(batch)

    def read_ready(self) -> None:
        """Nothing to read: every order was answered as it was sent."""

    def _wait_readable(self, timeout: float) -> bool:
        time.sleep(min(timeout, 100e-6))
        return True


def test_answers_between_sends_do_not_make_the_frames_smaller():
    """Sends stay `send_interval` apart however often answers wake the loop: at 100,000/s a frame
    holds what fell due in 1 ms (about 100 orders), not what fell due since the last answer."""
    context = zmq.Context.instance()
    with context.socket(zmq.PAIR) as socket:
        socket.bind("inproc://answered-often")
        schedule = AnsweredOften(socket)
        result = schedule.run(drain_s=1)
    assert result["sent"] == result["acked"] == 2_000
    gaps = [later - earlier for (earlier, _), (later, _) in itertools.pairwise(schedule.sends)]
    assert min(gaps) >= 0.95e-3, gaps  # each time noted just after its send began
    assert len(schedule.sends) <= 22 and max(size for _, size in schedule.sends) >= 100
    assert result["orders_per_frame"] == round(2_000 / len(schedule.sends), 1)


def test_a_stalled_sender_shows_as_send_lag_and_in_the_latencies():
    context = zmq.Context.instance()
    with context.socket(zmq.PAIR) as socket:
        socket.bind("inproc://stalled-sender")
        result = StalledSender(socket, stall_s=0.03).run(drain_s=1)
    assert result["sent"] == result["acked"] == 100
    # the orders due during the first send's 30 ms went out after it: 29 ms late, the one due at 1 ms
    assert 25_000 <= result["send_lag_max_us"] <= result["ack_max_us"]
    # the first order's ack holds the whole stall; the longest is one due during it (the first, or
    # one sent after it, later still if the process lost the CPU between the two sends)
    assert result["ack_max_us"] >= 30_000 and 0.0 <= result["ack_max_at_s"] < 0.03


def test_summary_of_a_run_with_no_answers_has_null_percentiles():
    result = loadgen.summarize(np.full(5, np.nan), 0, 0, 5, 0.0, 10.0, 0.5)
    assert result["lost"] == 5 and result["ack_p50_us"] is None and result["orders_per_s"] == 0.0
    assert result["ack_max_us"] is None and result["ack_max_at_s"] is None and result["ack_tail_pieces"] is None


# ================================================================ ExchangeClient vs a scripted TES


class ScriptedTes:
    """A ROUTER the test drives by hand: read what the client sent, answer it.

    A script may run in a thread of its own (`answer`), while the test's thread drives the
    client; a ZeroMQ socket must never be used by two threads at once, so the test's thread
    waits for the script to end before it reads, sends or closes.
    """

    def __init__(self) -> None:
        self.socket = zmq.Context.instance().socket(zmq.ROUTER)
        self.socket.setsockopt(zmq.LINGER, 0)
        port = self.socket.bind_to_random_port("tcp://127.0.0.1")
        self.endpoint = f"tcp://127.0.0.1:{port}"
        self.requests = p.Codec(p.ClientRequest)
        self.messages = p.Codec(p.ClientMessage)
        self.identity = None
        self.script: threading.Thread | None = None

    def answer(self, function) -> threading.Thread:
        """Run ``function`` (which reads and sends) in a thread of its own; the thread."""
        self._own()
        self.script = threading.Thread(target=function, daemon=True)
        self.script.start()
        return self.script

    def _own(self) -> None:
        script = self.script
        if script is not None and script is not threading.current_thread():
            script.join(10.0)
            assert not script.is_alive(), "the scripted TES's thread did not end"
            self.script = None

    def read(self, timeout: float = 2.0) -> list:
        self._own()
        assert self.socket.poll(int(timeout * 1000)), "the client sent nothing"
        self.identity, frame = self.socket.recv_multipart()
        return self.requests.decode(frame)

    def send(self, *messages) -> None:
        self.send_frame(self.messages.encode(list(messages)))

    def send_frame(self, frame: bytes) -> None:
        """Send ``frame`` as it is, once the script's thread (if another) is done with the socket:
        a ZeroMQ socket used by two threads at once aborts the process."""
        self._own()
        self.socket.send_multipart([self.identity, frame])

    def close(self) -> None:
        self._own()
        self.socket.close()


@pytest.fixture
def tes():
    server = ScriptedTes()
    yield server
    server.close()


def logged_on_fake(tes) -> ExchangeClient:
    """alice's client, logged on to the fake TES (heartbeats every 100 ms, timeout 5 s)."""
    client = ExchangeClient(tes.endpoint, "alice", "alice-demo-key")

    def server():
        tes.read()
        tes.send(p.LogonAccepted("alice", 100, 5000))

    tes.answer(server)
    client.logon(5.0)
    return client


def test_logon_rejected_raises_logon_error_with_the_reason(tes):
    client = ExchangeClient(tes.endpoint, "alice", "wrong")

    def server():
        assert tes.read() == [p.Logon("alice", "wrong", False)]
        tes.send(p.LogonRejected(RejectReason.BAD_CREDENTIALS, "unknown trader or wrong API key"))

    tes.answer(server)
    with pytest.raises(LogonError, match="wrong API key") as caught:
        client.logon(5.0)
    assert caught.value.reason == RejectReason.BAD_CREDENTIALS
    client.close()


def test_logon_unanswered_raises_logon_error_after_the_timeout(tes):
    client = ExchangeClient(tes.endpoint, "alice", "alice-demo-key")
    started = time.monotonic()
    with pytest.raises(LogonError, match="no answer"):
        client.logon(0.3)
    assert 0.25 < time.monotonic() - started < 2.0
    client.close()


def test_a_query_keeps_other_messages_for_receive_in_order(tes):
    client = ExchangeClient(tes.endpoint, "alice", "alice-demo-key")
    fill = p.OrderFilled(1, 7, "ACME", BUY, 100, 5, 0, 1, False)
    canceled = p.OrderCanceled(2, 8, "ACME", 3, 0)

    def server():
        tes.read()
        tes.send(p.LogonAccepted("alice", 1000, 5000))
        [query] = tes.read()
        tes.send(fill, p.Positions(query.request_id + 1, 0, []), p.Positions(query.request_id, 42, []), canceled)

    tes.answer(server)
    client.logon(5.0)
    positions = client.positions(5.0)

    assert positions.cash == 42
    assert client.receive(1.0) == [fill, p.Positions(positions.request_id + 1, 0, []), canceled]
    client.close()


def test_open_orders_waits_for_the_last_page_of_one_answer(tes):
    client = ExchangeClient(tes.endpoint, "alice", "alice-demo-key")
    orders = [p.OpenOrder(i, 100 + i, "ACME", BUY, GTC, 99, 1, 0) for i in range(5)]
    other = p.OrderCanceled(9, 109, "ACME", 1, 0)

    def server():
        [query] = tes.read()
        tes.send(p.OpenOrders(query.request_id, orders[:2], False), other)
        time.sleep(0.2)
        tes.send(p.OpenOrders(query.request_id, orders[2:4], False), p.OpenOrders(query.request_id, orders[4:]))

    tes.answer(server)
    assert client.open_orders(5.0) == orders
    assert client.receive(0.0) == [other]
    client.close()


def test_an_idle_receive_sends_heartbeats_and_drops_incoming_ones(tes):
    client = ExchangeClient(tes.endpoint, "alice", "alice-demo-key")
    order = p.OrderAccepted(1, 7, "ACME", BUY, LIMIT, GTC, 100, 5)
    received = []

    def server():
        tes.read()
        tes.send(p.LogonAccepted("alice", 100, 5000))
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            if tes.socket.poll(20):
                received.extend(tes.read())
        tes.send(p.Heartbeat(), order)

    thread = tes.answer(server)
    client.logon(5.0)
    messages = []
    deadline = time.monotonic() + 5.0
    while not messages and time.monotonic() < deadline:
        messages = client.receive(2.0)
    thread.join(5.0)

    assert messages == [order]
    # ten intervals: a few heartbeats however late the client's wake-ups run (each is timed from
    # the one before, so lateness only spaces them out), and never more than one an interval
    assert received == [p.Heartbeat()] * len(received) and 3 <= len(received) <= 11, received


def test_enter_cancel_replace_use_fresh_client_order_ids_and_batch_shares_one_frame(tes):
    client = ExchangeClient(tes.endpoint, "alice", "alice-demo-key")
    assert client.enter_order("ACME", BUY, LIMIT, GTC, 100, 5) == 1
    assert client.cancel(77) == 2
    assert client.replace(77, 101, 4) == 3
    first = client.reserve_client_order_ids(2)
    client.send_batch([p.EnterOrder(first, "ACME", SELL, MARKET, IOC, 0, 1),
                       p.EnterOrder(first + 1, "ACME", SELL, MARKET, IOC, 0, 1)])
    client.mass_cancel("ACME")

    frames = [tes.read() for _ in range(5)]

    assert frames == [
        [p.EnterOrder(1, "ACME", BUY, LIMIT, GTC, 100, 5)],
        [p.CancelOrder(2, 77)],
        [p.ReplaceOrder(3, 77, 101, 4)],
        [p.EnterOrder(4, "ACME", SELL, MARKET, IOC, 0, 1), p.EnterOrder(5, "ACME", SELL, MARKET, IOC, 0, 1)],
        [p.MassCancel("ACME")],
    ]
    assert client.enter_order("ACME", BUY, LIMIT, GTC, 100, 5) == 6
    client.close()


def test_a_request_refused_for_no_session_ends_the_session_at_once(tes):
    """What a client sees after a TES restart: its requests refused NOT_LOGGED_ON."""
    client = ExchangeClient(tes.endpoint, "alice", "alice-demo-key")
    forgotten = p.SessionRejected(RejectReason.NOT_LOGGED_ON, RejectReason.NOT_LOGGED_ON.text)

    def server():
        tes.read()
        tes.send(p.LogonAccepted("alice", 1000, 5000))
        tes.read()
        tes.send(forgotten)

    tes.answer(server)
    client.logon(5.0)
    started = time.monotonic()
    with pytest.raises(SessionEnded, match=r"the session ended: log on first \(5001\); log on again") as caught:
        client.positions(timeout=30.0)
    assert time.monotonic() - started < 5.0, "raised when the refusal came, not after the timeout"
    assert caught.value.reason is RejectReason.NOT_LOGGED_ON
    assert (client.logged_on, client.ended) == (False, forgotten)
    with pytest.raises(SessionEnded):
        client.enter_order("ACME", BUY, LIMIT, GTC, 100, 5)
    with pytest.raises(SessionEnded):
        client.open_orders()
    client.close()


def test_logged_out_by_the_tes_ends_the_session_and_calls_say_why(tes):
    client = ExchangeClient(tes.endpoint, "alice", "alice-demo-key")
    timed_out = p.LoggedOut(p.EndReason.TIMEOUT, p.EndReason.TIMEOUT.text)

    def server():
        tes.read()
        tes.send(p.LogonAccepted("alice", 1000, 5000))
        tes.send(timed_out)

    tes.answer(server)
    client.logon(5.0)
    assert client.receive(2.0) == [timed_out], "the message itself is still delivered"
    with pytest.raises(SessionEnded, match="session timed out") as caught:
        client.cancel(7)
    assert caught.value.reason is p.EndReason.TIMEOUT
    client.close()


def test_with_relogon_the_next_call_logs_on_again(tes):
    client = ExchangeClient(tes.endpoint, "alice", "alice-demo-key", relogon=True)

    def server():
        assert tes.read() == [p.Logon("alice", "alice-demo-key", False)]
        tes.send(p.LogonAccepted("alice", 1000, 5000))
        tes.send(p.LoggedOut(p.EndReason.REPLACED, p.EndReason.REPLACED.text))
        assert tes.read() == [p.Logon("alice", "alice-demo-key", False)]
        tes.send(p.LogonAccepted("alice", 1000, 5000))
        [query] = tes.read()
        tes.send(p.Positions(query.request_id, 7, []))

    tes.answer(server)
    client.logon(5.0)
    assert [type(m) for m in client.receive(2.0)] == [p.LoggedOut]
    assert not client.logged_on
    assert client.positions(5.0).cash == 7
    assert client.logged_on and client.ended is None
    client.close()


def test_the_keeper_heartbeats_a_client_left_alone_and_stops_when_its_session_ends(tes):
    client = logged_on_fake(tes)
    replaced = p.LoggedOut(p.EndReason.REPLACED, p.EndReason.REPLACED.text)
    heartbeats = [tes.read() for _ in range(3)]  # the caller makes no call meanwhile
    assert heartbeats == [[p.Heartbeat()]] * 3

    tes.send(replaced)
    deadline = time.monotonic() + 5.0
    while client.logged_on and time.monotonic() < deadline:
        time.sleep(0.01)
    assert client.ended == replaced, "the keeper took in the LoggedOut while the caller did nothing"
    while tes.socket.poll(0):  # what crossed the LoggedOut before the keeper took it in
        tes.read()
    later, quiet_until = [], time.monotonic() + 0.5  # five heartbeat intervals
    while tes.socket.poll(max(0, int((quiet_until - time.monotonic()) * 1000))):
        later.extend(tes.read())
    assert later in ([], [p.Heartbeat()]), "none after the end (one may have been on its way as it ended)"
    with pytest.raises(SessionEnded, match=r"replaced by a new logon of the same trader \(3\)"):
        client.enter_order("ACME", BUY, LIMIT, GTC, 100, 5)
    assert client.receive(0.0) == [replaced], "the LoggedOut itself is kept for receive"
    client.close()


def test_a_tes_silent_for_its_session_timeout_ends_the_session(tes):
    """The TES heartbeats a session it has sent nothing else: one that hears nothing at all for the
    session timeout takes its TES as gone (stopped, stuck, or its machine lost)."""
    client = ExchangeClient(tes.endpoint, "alice", "alice-demo-key")
    sent, last = [], []

    def server():
        tes.read()
        tes.send(p.LogonAccepted("alice", 100, 500))
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline:  # a heartbeat every 100 ms for 1.5 s: three timeouts
            if not last or time.monotonic() - last[0] >= 0.1:
                tes.send(p.Heartbeat())
                last[:] = [time.monotonic()]
            if tes.socket.poll(10):
                sent.extend(tes.read())
        # then nothing more

    thread = tes.answer(server)
    client.logon(5.0)
    thread.join(5.0)
    assert client.logged_on, "heard from its TES within every timeout"
    assert p.Heartbeat() in sent, "and heartbeated it meanwhile"
    while client.logged_on and time.monotonic() < last[0] + 5.0:
        time.sleep(0.01)
    assert not client.logged_on, "the keeper took the silence in while the caller did nothing"
    assert time.monotonic() - last[0] >= 0.5, "not before the timeout"
    assert client.ended == p.LoggedOut(p.EndReason.TIMEOUT, "nothing came from the TES for 0.5 s: it is gone or stuck")
    told = []
    while p.Logout() not in told:
        told.extend(tes.read())  # heartbeats until it gave up, then its Logout
    assert told[-1] == p.Logout(), "and told the TES, in case it is only stuck"
    tes.send(p.LoggedOut(p.EndReason.LOGOUT, p.EndReason.LOGOUT.text))  # as a TES that resumes answers it
    with pytest.raises(SessionEnded, match=r"nothing came from the TES for 0.5 s: it is gone or stuck \(2\)"):
        client.positions()
    assert client.receive(0.5) == [], "the answer to its own Logout is not the caller's"
    client.close(logout_timeout=0.1)


def test_a_query_waiting_when_the_tes_goes_silent_raises_at_the_session_timeout(tes):
    client = ExchangeClient(tes.endpoint, "alice", "alice-demo-key")

    def server():
        tes.read()
        tes.send(p.LogonAccepted("alice", 100, 500))
        tes.read()  # the query, never answered

    tes.answer(server)
    client.logon(5.0)
    asked = time.monotonic()
    with pytest.raises(SessionEnded, match="nothing came from the TES for 0.5 s"):
        client.positions(timeout=30.0)
    assert time.monotonic() - asked < 5.0, "at the session timeout, not the query's"
    client.close(logout_timeout=0.1)


def test_a_session_end_already_queued_makes_the_next_call_raise_without_sending(tes):
    """A program waiting on the socket itself (the trader CLI) has no keeper: the call takes in
    what arrived before it sends."""
    client = ExchangeClient(tes.endpoint, "alice", "alice-demo-key")
    replaced = p.LoggedOut(p.EndReason.REPLACED, p.EndReason.REPLACED.text)

    def server():
        tes.read()
        tes.send(p.LogonAccepted("alice", 1000, 5000))

    tes.answer(server)
    client.logon(5.0)
    socket = client.socket
    tes.send(replaced)
    assert socket.poll(5000), "the LoggedOut arrived"

    with pytest.raises(SessionEnded) as caught:
        client.enter_order("ACME", BUY, LIMIT, GTC, 100, 5)
    assert caught.value.reason is p.EndReason.REPLACED and not client.logged_on
    assert tes.socket.poll(200) == 0, "the order was not sent"
    assert client.receive_ready() == [replaced]
    client.close()


def test_an_undecodable_frame_the_keeper_read_is_raised_by_the_next_call(tes):
    client = logged_on_fake(tes)
    tes.send_frame(b"\xc1 not msgpack")
    client._keeper.join(5.0)  # it ends once it has read the frame
    assert not client._keeper.is_alive()
    with pytest.raises(ClientError, match=r"undecodable frame from the TES \(13 bytes\)"):
        client.positions()
    client.close()


def test_a_client_nobody_holds_is_collected_and_its_keeper_ends(tes):
    client = logged_on_fake(tes)
    keeper = client._keeper
    assert keeper.is_alive()
    del client
    gc.collect()
    keeper.join(2.0)
    assert not keeper.is_alive()


def test_the_load_generator_stops_with_the_reason_when_its_session_ends(tes):
    client = ExchangeClient(tes.endpoint, "load", "load-demo-key")

    def server():
        tes.read()
        tes.send(p.LogonAccepted("load", 1000, 5000))
        tes.read()
        tes.send(p.SessionRejected(RejectReason.NOT_LOGGED_ON, RejectReason.NOT_LOGGED_ON.text))

    tes.answer(server)
    client.logon(5.0)
    generator = loadgen.LoadGenerator(client, "ACME", 100, 1, rate=10, duration=5.0, batch_max=10)
    with pytest.raises(ClientError, match="the session ended: log on first"):
        generator.run(drain_s=1.0)
    assert generator.sent < generator.total, "it stopped, not counting the rest as lost"
    client.close()


# ================================================================ against a real OBS and TES


@pytest.fixture(scope="module")
def exchange(tmp_path_factory):
    """One OBS and one TES on free ports for the whole module; yields their environment."""
    env = exchange_env(tmp_path_factory.mktemp("exchange"))
    with Role(["-s", "OBS"], env) as obs, Role(["-s", "TES"], env) as tes:
        yield env
        assert tes.stop() == 0, tes.output()
        assert obs.stop() == 0, obs.output()


def logged_on(env, trader: str) -> ExchangeClient:
    client = ExchangeClient(endpoint(env, "TES__CLIENT_ENDPOINT"), trader, f"{trader}-demo-key")
    client.logon(10.0)
    return client


def feed_of(env, symbol: str = "ACME") -> MarketDataClient:
    feed = MarketDataClient(
        endpoint(env, "SHARDS__0__MARKET_DATA_ENDPOINT"), endpoint(env, "SHARDS__0__SNAPSHOT_ENDPOINT"), symbol
    )
    feed.connect(10.0)
    assert feed._snapshots_watch.monitor is None, "the snapshot connection is watched only until connect ends"
    return feed


def collect(client: ExchangeClient, until, timeout: float = 5.0) -> list:
    """Messages received until ``until(messages so far)`` holds."""
    messages: list = []
    deadline = time.monotonic() + timeout
    while not until(messages):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out; received {messages}")
        messages.extend(client.receive(0.1))
    return messages


def of_type(messages, kind) -> list:
    return [m for m in messages if isinstance(m, kind)]


def tradable(client: ExchangeClient, symbol: str = "ACME") -> None:
    wait_until_tradable(client, symbol)


def test_two_clients_trade_and_both_see_their_fills_and_positions(exchange):
    with logged_on(exchange, "alice") as alice, logged_on(exchange, "bob") as bob:
        tradable(alice)
        buy = alice.enter_order("ACME", BUY, LIMIT, GTC, 10_050, 10)
        accepted = of_type(collect(alice, lambda m: of_type(m, p.OrderAccepted)), p.OrderAccepted)[0]
        assert (accepted.client_order_id, accepted.quantity, accepted.price) == (buy, 10, 10_050)

        sell = bob.enter_order("ACME", SELL, LIMIT, GTC, 10_000, 4)
        bob_fills = of_type(collect(bob, lambda m: of_type(m, p.OrderFilled)), p.OrderFilled)
        alice_fills = of_type(collect(alice, lambda m: of_type(m, p.OrderFilled)), p.OrderFilled)

        assert [(f.client_order_id, f.side, f.price, f.quantity, f.leaves, f.aggressor) for f in bob_fills] == [
            (sell, SELL, 10_050, 4, 0, True)]
        assert [(f.order_id, f.side, f.price, f.quantity, f.leaves, f.aggressor) for f in alice_fills] == [
            (accepted.order_id, BUY, 10_050, 4, 6, False)]
        assert alice_fills[0].trade_id == bob_fills[0].trade_id

        [open_order] = alice.open_orders()
        assert (open_order.order_id, open_order.quantity, open_order.filled) == (accepted.order_id, 6, 4)
        acme = {pos.symbol: pos for pos in bob.positions().positions}["ACME"]
        assert acme.quantity <= -4

        alice.cancel(accepted.order_id)
        canceled = of_type(collect(alice, lambda m: of_type(m, p.OrderCanceled)), p.OrderCanceled)
        assert [(c.order_id, c.quantity) for c in canceled] == [(accepted.order_id, 6)]
        assert alice.open_orders() == []


def test_market_data_client_follows_the_book_and_trades(exchange):
    with logged_on(exchange, "alice") as alice, logged_on(exchange, "bob") as bob, feed_of(exchange) as feed:
        tradable(alice)
        alice.enter_order("ACME", BUY, LIMIT, GTC, 9_990, 7)
        alice.enter_order("ACME", SELL, LIMIT, GTC, 10_010, 5)
        deadline = time.monotonic() + 5
        while (feed.best_bid(), feed.best_ask()) != ((9_990, 7), (10_010, 5)) and time.monotonic() < deadline:
            feed.poll(0.1)
        assert (feed.best_bid(), feed.best_ask()) == ((9_990, 7), (10_010, 5))

        bob.enter_order("ACME", BUY, MARKET, IOC, 0, 2)
        while (feed.last_trade is None or feed.last_trade.price != 10_010) and time.monotonic() < deadline:
            feed.poll(0.1)
        assert feed.last_trade.price == 10_010 and feed.last_trade.quantity == 2
        while feed.best_ask() != (10_010, 3) and time.monotonic() < deadline:
            feed.poll(0.1)
        assert feed.best_ask() == (10_010, 3)

        # A late joiner gets the same book from the snapshot.
        with feed_of(exchange) as late:
            while feed.sequence < late.sequence and time.monotonic() < deadline:
                feed.poll(0.1)
            assert late.depth(5) == feed.depth(5) and late.sequence == feed.sequence
            assert late.last_price == 10_010

        alice.mass_cancel("ACME")
        collect(alice, lambda m: len(of_type(m, p.OrderCanceled)) == 2)
        assert alice.open_orders() == []
        assert feed.resyncs == 0


def test_wrong_api_key_is_refused_with_bad_credentials(exchange):
    client = ExchangeClient(endpoint(exchange, "TES__CLIENT_ENDPOINT"), "alice", "not-the-key")
    with pytest.raises(LogonError) as caught:
        client.logon(10.0)
    assert caught.value.reason == RejectReason.BAD_CREDENTIALS
    client.close()


def test_query_of_an_unknown_symbol_raises_request_rejected(exchange):
    with logged_on(exchange, "alice") as alice:
        with pytest.raises(RequestRejected) as caught:
            alice.book("NOPE")
        assert caught.value.reason == RejectReason.UNKNOWN_SYMBOL


# ---------------------------------------------------------------- programs


def run_client(env, *args, timeout: float = 60.0, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "main.py", "-c", *args], cwd=REPO, env=env, input=stdin,
        capture_output=True, text=True, timeout=timeout,
    )


class Shell:
    """The trader CLI with a pipe for stdin: send lines, wait for output."""

    def __init__(self, env, *args: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "main.py", "-c", "trader", *args], cwd=REPO, env=env,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    def send(self, line: str) -> None:
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    def wait_for(self, text: str, after: int = 0, timeout: float = 10.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.lines[after:]:
                if text in line:
                    return line
            time.sleep(0.02)
        raise AssertionError(f"no {text!r} in {self.lines}")

    def finish(self, timeout: float = 20.0) -> int:
        self.process.stdin.close()
        code = self.process.wait(timeout)
        self._reader.join(5)
        return code


def test_trader_cli_places_fills_and_cancels_orders_from_piped_stdin(exchange):
    with logged_on(exchange, "bob") as bob:
        tradable(bob)
        shell = Shell(exchange, "--trader", "alice", "--key", "alice-demo-key")
        shell.wait_for("logged on")
        shell.send("buy ACME 10 99.50")
        accepted = shell.wait_for("accepted")
        order_id, client_id = accepted.split()[2], accepted.split()[4].rstrip("):")
        assert "BUY 10 ACME @ 99.50 GTC" in accepted

        bob.enter_order("ACME", SELL, LIMIT, GTC, 9_950, 4)
        shell.wait_for(f"filled    order {order_id}: bought 4 ACME @ 99.50, 6 left")

        mark = len(shell.lines)
        shell.send("orders")
        row = shell.wait_for(f"{order_id} {client_id:>8} ACME", after=mark)
        assert row.split()[-2:] == ["6", "4"]
        shell.send("book ACME 3")
        assert shell.wait_for("99.50 |").split()[:2] == ["1", "6"]
        shell.send("sell ACME 5 100.499")
        shell.wait_for("error: sell: argument PRICE: price 100.499 is not a multiple of the tick 0.01")
        shell.send(f"cancel {order_id}")
        shell.wait_for(f"canceled  order {order_id}: 6 ACME (requested)")
        shell.send("positions")
        shell.wait_for("cash ")
        shell.send("cancelall")
        shell.wait_for("cancelall all symbols: 0 orders")
        assert shell.finish() == 0
        assert shell.lines[-1] == "logged out"
        assert not any("Traceback" in line for line in shell.lines), shell.lines


def test_trader_cli_script_runs_every_command_to_the_end(exchange):
    script = "\n".join([
        "help", "instruments", "buy ACME 3 99.00 --day", "sell ACME 2 --fok", "buy BOLT 10 250.00",
        "replace 1 99.10 2", "bogus", "orders", "positions", "book BOLT", "cancelall ACME", "cancelall", "quit",
        "buy ACME 1 99.00",
    ]) + "\n"
    done = run_client(exchange, "trader", "--trader", "alice", stdin=script)

    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "BOLT         0.05     10       10" in out
    assert "BUY 3 ACME @ 99.00 DAY" in out
    assert "BUY 10 BOLT @ 250.00 GTC" in out
    assert "error: replace: no open order 1 (see orders)" in out
    assert "error: unknown command 'bogus'" in out
    assert "cancelall ACME: 1 orders" in out and "cancelall all symbols: 1 orders" in out
    assert "SELL 2 ACME @ market FOK" in out and "sold 2 ACME @ 99.00, 0 left" in out
    assert out.rstrip().endswith("logged out")
    assert "Traceback" not in done.stderr


def test_trader_cli_with_a_wrong_key_prints_one_error_and_exits_2(exchange):
    done = run_client(exchange, "trader", "--trader", "alice", "--key", "nope", stdin="")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "error: logon of 'alice' refused: unknown trader or wrong API key (5002)"]


def test_marketmaker_and_random_trader_run_without_errors_and_trade(exchange):
    mm = subprocess.Popen(
        [sys.executable, "main.py", "-c", "marketmaker", "--trader", "mm1", "--key", "mm1-demo-key",
         "--symbol", "ACME", "--duration", "4", "--seed", "7", "--interval", "0.1"],
        cwd=REPO, env=exchange, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        flow = run_client(exchange, "random", "--trader", "flow1", "--key", "flow1-demo-key", "--symbol", "ACME",
                          "--rate", "40", "--duration", "3", "--seed", "3")
        mm_out, mm_err = mm.communicate(timeout=30)
    finally:
        if mm.poll() is None:
            mm.kill()
    assert flow.returncode == 0 and mm.returncode == 0, (flow.stderr, mm_err)
    assert flow.stderr == "" and mm_err == ""
    assert flow.stdout.startswith("READY random flow1 ACME") and mm_out.startswith("READY marketmaker mm1 ACME")
    mm_fills = int(mm_out.split("fills ")[1].split(",")[0])
    flow_fills = int(flow.stdout.split("fills ")[1].split(",")[0])
    assert mm_fills > 0 and flow_fills > 0, (mm_out, flow.stdout)
    assert "open 0" in mm_out.splitlines()[-1] and "open 0" in flow.stdout.splitlines()[-1]
    assert "rejects: none" in mm_out.splitlines()[-1], mm_out


def test_loadgen_at_a_modest_rate_answers_every_order(exchange):
    done = run_client(exchange, "loadgen", "--rate", "2000", "--duration", "2")

    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert list(result) == list(loadgen.RESULT_KEYS)
    assert result["sent"] == 4000 and result["lost"] == 0
    assert result["acked"] == 4000 and result["rejected"] == 0
    assert result["fills"] == 4000, "each sell fills the buy before it: two fills per pair"
    assert 1.9 < result["duration_s"] < 4.0
    assert result["orders_per_s"] > 1000
    assert 0 < result["ack_p50_us"] <= result["ack_p99_us"] <= result["ack_p999_us"]


def test_clients_report_unusable_arguments_as_one_error_line(exchange):
    for args, phrase in [
        (("loadgen", "--rate", "0", "--duration", "1"), "must be positive"),
        (("marketmaker", "--trader", "mm1", "--symbol", "NOPE"), "unknown symbol 'NOPE'"),
        (("random",), "the following arguments are required: --trader"),
    ]:
        done = run_client(exchange, *args)
        assert done.returncode == 2, done
        assert len(done.stderr.strip().splitlines()) == 1 and phrase in done.stderr, done.stderr


def test_receive_without_a_logon_gets_session_rejected(exchange):
    client = ExchangeClient(endpoint(exchange, "TES__CLIENT_ENDPOINT"), "alice", "alice-demo-key")
    client.enter_order("ACME", BUY, LIMIT, GTC, 10_000, 1)
    [rejected] = collect(client, lambda m: m)
    assert isinstance(rejected, p.SessionRejected) and rejected.reason == RejectReason.NOT_LOGGED_ON
    client.close()


def test_a_client_notices_a_tes_restart_and_can_log_on_again(tmp_path):
    env = exchange_env(tmp_path)
    with Role(["-s", "OBS"], env), Role(["-s", "TES"], env) as tes:
        tes.wait_for("shard A ready", 10)
        plain, relogging = logged_on(env, "alice"), logged_on(env, "bob")
        relogging.relogon = True
        tes.kill()  # no LoggedOut: the clients learn it from the new TES
        with Role(["-s", "TES"], env) as restarted:
            restarted.wait_for("shard A ready", 10)
            started = time.monotonic()
            with pytest.raises(SessionEnded, match="log on first") as caught:
                plain.positions(timeout=30.0)
            assert time.monotonic() - started < 5.0
            assert caught.value.reason is RejectReason.NOT_LOGGED_ON and not plain.logged_on
            plain.logon()
            assert plain.positions().cash == 0
            assert isinstance(relogging.book("ACME"), p.Book), "bob's client logged on again by itself"
            assert relogging.logged_on
            plain.close()
            relogging.close()
            assert restarted.stop() == 0


def test_a_client_left_alone_past_the_session_timeout_stays_logged_on_and_trades(tmp_path):
    env = exchange_env(tmp_path, EXCHANGE__TES__HEARTBEAT_MS="200", EXCHANGE__TES__SESSION_TIMEOUT_MS="1000")
    with Role(["-s", "OBS"], env) as obs, Role(["-s", "TES"], env) as tes:
        shell = Shell(env, "--trader", "alice")
        shell.wait_for("logged on")
        with logged_on(env, "bob") as bob:
            tradable(bob)
            time.sleep(2.0)  # the scenario: no call for twice the session timeout
            assert bob.logged_on
            order = bob.enter_order("ACME", BUY, LIMIT, GTC, 9_000, 1)
            messages = collect(bob, lambda m: of_type(m, p.OrderAccepted))
            assert [m.client_order_id for m in of_type(messages, p.OrderAccepted)] == [order]
            assert not of_type(messages, p.LoggedOut | p.SessionRejected), messages
        mark = len(shell.lines)
        shell.send("orders")  # the shell, which waits on the socket itself, kept alice's session alive
        shell.wait_for("no open orders", after=mark)
        assert shell.finish() == 0 and shell.lines[-1] == "logged out"
        assert tes.stop() == 0 and obs.stop() == 0


def test_a_stopped_tes_is_taken_as_gone_and_a_relogon_client_logs_on_again_once_it_resumes(tmp_path):
    env = exchange_env(tmp_path, EXCHANGE__TES__HEARTBEAT_MS="200", EXCHANGE__TES__SESSION_TIMEOUT_MS="1000")
    with Role(["-s", "OBS"], env) as obs, Role(["-s", "TES"], env) as tes:
        client = ExchangeClient(endpoint(env, "TES__CLIENT_ENDPOINT"), "bob", "bob-demo-key", relogon=True)
        try:
            client.logon(10.0)
            time.sleep(2.0)  # heard the TES's heartbeats the whole time
            assert client.logged_on
            tes.process.send_signal(signal.SIGSTOP)
            try:
                deadline = time.monotonic() + 10.0
                while client.logged_on and time.monotonic() < deadline:
                    time.sleep(0.01)
                assert client.ended == p.LoggedOut(p.EndReason.TIMEOUT,
                                                   "nothing came from the TES for 1 s: it is gone or stuck")
            finally:
                tes.process.send_signal(signal.SIGCONT)
            assert client.positions(timeout=10.0).positions == [], "logged on again, and answered"
            assert client.logged_on
            assert not [m for m in client.receive(0.5) if type(m) in (p.LoggedOut, p.SessionRejected)], \
                "the resumed TES's answer to the Logout sent on giving up is not the caller's"
        finally:
            client.close()
        assert tes.stop() == 0 and obs.stop() == 0


def test_a_call_on_a_session_taken_over_raises_at_once_with_the_reason(exchange):
    first = logged_on(exchange, "flow2")
    with logged_on(exchange, "flow2") as second:
        deadline = time.monotonic() + 5.0
        while first.logged_on and time.monotonic() < deadline:
            time.sleep(0.01)  # the first client's keeper takes in its LoggedOut
        started = time.monotonic()
        with pytest.raises(SessionEnded, match=r"the session ended: replaced by a new logon of the same trader "
                                               r"\(3\); log on again to continue") as caught:
            first.positions(timeout=30.0)
        assert time.monotonic() - started < 1.0, "raised without asking the TES"
        assert caught.value.reason is p.EndReason.REPLACED
        with pytest.raises(SessionEnded):
            first.enter_order("ACME", BUY, LIMIT, GTC, 9_000, 1)
        assert second.positions().cash == 0, "the new session is the trader's"
    first.close()
