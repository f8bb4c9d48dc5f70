"""What one client can make the TES hold and do: bounded whatever it sends or fails to read.

The attack these tests repeat: a trader inside its own limits rests 10,000 orders and
then sends ``QueryOpenOrders``, 50 per frame every 10 ms, never reading the answers.
Before the bounds the TES grew from 69 MB to several GB within seconds and stopped
answering everyone else. Now queries are paced by the trader's query rate (a page of
1,000 open orders costs one token), frames to a client are at most 64 KiB and at most
256 of them are queued, and a session that lets its queue fill is ended (SLOW_CONSUMER).
"""

import time

import msgspec
import pytest
import zmq
from test_tes import BUY, GTC, IOC, LIMIT, SELL, Exchange

from engine.types import RejectReason
from servers import protocol as p
from servers.tes import CLIENT_FRAME_BYTES, OPEN_ORDERS_PAGE

REQUESTS = p.Codec(p.ClientRequest)
RESTING = 10_000
BOUND_MB = 64
"""What the TES may grow by under these attacks: one session's queue (256 x 64 KiB) plus its
inbound queue and working space, with room for the allocator."""


def rss_mb(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


@pytest.fixture(scope="module")
def hoard(tmp_path_factory):
    """An exchange where ``deep`` rests 10,000 orders; long session timeouts (raw clients do not heartbeat)."""
    exchange = Exchange(tmp_path_factory.mktemp("bounds"), EXCHANGE__TES__SESSION_TIMEOUT_MS="600000")
    deep = exchange.client("deep")
    for start in range(0, RESTING, 1000):
        deep.send(*[p.EnterOrder(start + i + 1, "ACME", BUY, LIMIT, GTC, 9_001 + (start + i) % 900, 1)
                    for i in range(1000)])
        deep.read(1000, timeout=60)
    yield exchange, deep
    exchange.close()


def test_open_orders_come_in_pages_each_costing_a_query_token(hoard):
    exchange, deep = hoard
    deep.send(*[p.QueryOpenOrders(i) for i in (1, 2, 3)])
    pages = deep.read(2 * RESTING // OPEN_ORDERS_PAGE + 1, timeout=30)
    first, second = pages[:10], pages[10:20]
    assert [(m.request_id, len(m.orders), m.last) for m in first] == [(1, 1000, False)] * 9 + [(1, 1000, True)]
    assert [m.request_id for m in second] == [2] * 10, "20 tokens a second: two answers of 10 pages"
    assert pages[20] == p.QueryRejected(3, RejectReason.QUERY_RATE_LIMIT, RejectReason.QUERY_RATE_LIMIT.text)
    assert len({o.order_id for m in first for o in m.orders}) == RESTING
    assert max(len(REQUESTS.encoder.encode([m])) for m in first) < CLIENT_FRAME_BYTES


def test_query_flood_from_a_client_that_never_reads_leaves_memory_and_others_alone(hoard):
    exchange, _ = hoard
    tes = exchange.tes.process.pid
    before = rss_mb(tes)
    attacker = exchange.context.socket(zmq.DEALER)
    attacker.setsockopt(zmq.LINGER, 0)
    attacker.connect(exchange.env["EXCHANGE__TES__CLIENT_ENDPOINT"])
    attacker.send(REQUESTS.encode([p.Logon("deep", "deep-key")]))
    alice = exchange.client("alice")
    flood = REQUESTS.encode([p.QueryOpenOrders(i) for i in range(50)])
    peak, slowest = before, 0.0
    started = time.monotonic()
    while time.monotonic() - started < 6.0:
        for _ in range(10):
            try:
                attacker.send(flood, zmq.NOBLOCK)
            except zmq.Again:
                break
            time.sleep(0.01)
        asked = time.monotonic()
        alice.send(p.QueryPositions(78))
        assert isinstance(alice.one(timeout=10), p.Positions)
        slowest = max(slowest, time.monotonic() - asked)
        peak = max(peak, rss_mb(tes))
    assert peak - before < BOUND_MB, f"TES grew from {before:.0f} to {peak:.0f} MB"
    assert slowest < 2.0, f"alice's query waited {slowest:.2f} s (before the bounds: no answer within 30 s)"
    attacker.close()


def test_a_session_that_does_not_read_is_ended_and_its_orders_cancelled_if_it_asked(hoard):
    """Orders (IOC, nothing to match) produce two reports each; the client never reads, its
    socket holds one frame and a tiny kernel buffer, so the TES's queue to it fills."""
    exchange, _ = hoard
    tes = exchange.tes.process.pid
    before = rss_mb(tes)
    sink = exchange.context.socket(zmq.DEALER)
    sink.setsockopt(zmq.LINGER, 0)
    sink.setsockopt(zmq.RCVHWM, 1)
    sink.setsockopt(zmq.RCVBUF, 4096)
    sink.connect(exchange.env["EXCHANGE__TES__CLIENT_ENDPOINT"])
    sink.send(REQUESTS.encode([p.Logon("sweeper", "sweeper-key", True)]))
    sink.send(REQUESTS.encode([p.EnterOrder(1, "BOLT", SELL, LIMIT, GTC, 27_000, 10)]))
    orders = iter(range(2, 10**9))
    deadline = time.monotonic() + 60
    while "sweeper ended" not in (output := exchange.tes.output()):
        assert time.monotonic() < deadline, output[-2000:]
        batch = [p.EnterOrder(next(orders), "BOLT", BUY, LIMIT, IOC, 24_000, 10) for _ in range(1000)]
        try:
            sink.send(REQUESTS.encode(batch), zmq.NOBLOCK)
        except zmq.Again:
            time.sleep(0.01)
        assert rss_mb(tes) - before < BOUND_MB
    assert "session of sweeper ended: 256 frames queued to it are unread (slow consumer)" in output
    bob = exchange.client("bob")
    bob.send(p.QueryBook(1, "BOLT", 5))
    assert bob.one().asks == [], "cancel-on-disconnect took the resting sell out"
    sink.close()


@pytest.mark.parametrize("request_", [
    p.MassCancel("X" * 17),
    ["EnterOrder", -1, "ACME", 0, 0, 0, 10_000, 1],
    ["EnterOrder", 0, "ACME", 0, 0, 0, 10_000, 1],
    ["CancelOrder", -5, 1],
    ["QueryBook", -1, "ACME", 5],
    ["QueryOpenOrders", 2**63],
    ["EnterOrder", 1, "A" * 17, 0, 0, 0, 10_000, 1],
    ["Logon", "a" * 65, "key"],
])
def test_oversized_strings_and_negative_ids_are_refused_as_malformed(hoard, request_):
    exchange, _ = hoard
    client = exchange.client("flow2")
    client.send_raw(msgspec.msgpack.encode([request_]))
    reply = client.one()
    assert isinstance(reply, p.SessionRejected) and reply.reason is RejectReason.MALFORMED_MESSAGE, reply
    assert len(reply.text) <= 200
    client.socket.close()
