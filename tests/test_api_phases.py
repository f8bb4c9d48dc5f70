"""Trading phases through the REST gateway's public market data: the WebSocket ``phase`` stream
(the book's phase on subscribe, then PhaseUpdate, Indicative and AuctionSummary), the phase fields
of the depth snapshot and of ``GET /v1/book``, and the other streams flowing on.

The gateway runs as its own process, but reads ACME's market data from the test
(`phase_feed.PhaseFeed`, on real sockets in the OBS's place), so the test says which phase the book is
in; the messages are exactly the OBS's contract (`servers.protocol`)."""

import json
import time

import httpx
import pytest
from phase_feed import PhaseFeed
from test_api_gateway import _until

from engine.types import Phase, Side
from servers.processes import Role
from servers.protocol import AuctionSummary, DepthUpdate, Indicative, PhaseReason, PhaseUpdate, Trade

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(scope="module")
def feed():
    feed = PhaseFeed("ACME")
    yield feed
    feed.close()


@pytest.fixture(scope="module")
def base(live_exchange, feed):
    role = Role(["-s", "API"], dict(live_exchange.env, **feed.endpoints()))
    yield f"http://127.0.0.1:{live_exchange.env['EXCHANGE__API__PORT']}"
    assert role.stop() == 0, role.output()
    assert "Traceback" not in role.output(), role.output()


def test_the_phase_stream_and_the_snapshots_carry_the_phase_and_the_uncross(base, feed):
    from websockets.sync.client import connect

    feed.set_book([(9_900, 5, 1)], [(9_800, 3, 1)], Phase.CALL, (9_850, 3))  # a crossed book in a call
    with connect(base.replace("http", "ws") + "/v1/ws", open_timeout=5) as ws:
        for channel in ("phase", "depth", "trades"):
            ws.send(json.dumps({"op": "subscribe", "channel": channel, "symbol": "ACME"}))
        feed.serve()
        first = _until(ws, lambda e: e["type"] in ("phase", "snapshot"))
        second = _until(ws, lambda e: e["type"] in ("phase", "snapshot"))
        phase, snapshot = (first, second) if first["type"] == "phase" else (second, first)
        assert phase == {"channel": "phase", "type": "phase", "symbol": "ACME", "sequence": 0, "phase": "call",
                         "indicative_price": 9_850, "indicative_volume": 3, "reason": None, "until": 0}
        assert (snapshot["phase"], snapshot["indicative_price"], snapshot["indicative_volume"], snapshot["bids"],
                snapshot["asks"]) == ("call", 9_850, 3, [[9_900, 5, 1]], [[9_800, 3, 1]])
        book = httpx.get(f"{base}/v1/book/ACME").json()
        assert (book["phase"], book["indicative_price"], book["indicative_volume"]) == ("call", 9_850, 3)

        now = time.time_ns()
        feed.publish(lambda seq: Indicative("ACME", seq, 9_860, 4, now))
        assert _until(ws, lambda e: e["type"] == "indicative") == {
            "channel": "phase", "type": "indicative", "symbol": "ACME", "sequence": 1, "price": 9_860, "volume": 4,
            "time": now}
        until = now + 60_000_000_000
        feed.publish(lambda seq: PhaseUpdate("ACME", seq, Phase.CALL, PhaseReason.VOLATILITY, until, now))
        update = _until(ws, lambda e: e.get("type") == "phase_update")
        assert (update["phase"], update["reason"], update["until"], update["sequence"]) == \
            ("call", "volatility", until, 2)
        feed.publish(lambda seq: PhaseUpdate("ACME", seq, Phase.CONTINUOUS, PhaseReason.VOLATILITY, 0, now))
        feed.publish(lambda seq: AuctionSummary("ACME", seq, 9_850, 3, now))
        feed.publish(lambda seq: Trade("ACME", seq, 1, 9_850, 3, Side.BUY, now))
        feed.publish(lambda seq: DepthUpdate("ACME", seq, Side.SELL, 9_800, 0, 0, now))
        events = [_until(ws, lambda e: e.get("channel") in ("phase", "trades", "depth")) for _ in range(4)]
        assert [(e["type"], e["sequence"]) for e in events] == [("phase_update", 3), ("auction_summary", 4),
                                                                ("trade", 5), ("depth_update", 6)]
        assert (events[0]["phase"], events[1]["price"], events[1]["volume"]) == ("continuous", 9_850, 3)
        book = httpx.get(f"{base}/v1/book/ACME").json()
        assert (book["phase"], book["indicative_volume"], book["asks"], book["sequence"]) == ("continuous", 0, [], 6)
        ws.send(json.dumps({"op": "subscribe", "channel": "phase", "symbol": "NOPE"}))
        assert _until(ws, lambda e: e["type"] == "error")["code"] == 3001


def test_subscribers_are_told_when_the_market_data_is_lost_and_when_it_is_back(base, feed):
    """The book server goes away and comes back (`PhaseFeed.restart`) with a book that changed
    meanwhile: every subscriber hears of both, then gets the rebuilt book; the book endpoint says
    why it has no book meanwhile."""
    from websockets.sync.client import connect

    with connect(base.replace("http", "ws") + "/v1/ws", open_timeout=5) as ws:
        for channel in ("trades", "depth"):
            ws.send(json.dumps({"op": "subscribe", "channel": channel, "symbol": "ACME"}))
        synced = _until(ws, lambda e: e["type"] == "snapshot")
        before = time.time_ns()
        feed.restart()
        lost = _until(ws, lambda e: e["type"] == "market_data_lost")
        assert lost == {"type": "market_data_lost", "symbol": "ACME", "sequence": synced["sequence"],
                        "lost_at": lost["lost_at"]}
        assert before <= lost["lost_at"] <= time.time_ns()
        answer = httpx.get(f"{base}/v1/book/ACME")
        assert answer.status_code == 503, answer.text
        problem = answer.json()
        assert (problem["title"], problem["code"]) == ("Market data lost", 6001)
        assert problem["detail"].startswith("the connection to the book server of ACME was lost at "), problem

        feed.sequence += 3  # published while the gateway was away: only the snapshot has it
        feed.set_book([(9_700, 2, 1)], [])
        feed.serve()
        events = [_until(ws, lambda e: e["type"] in ("market_data_back", "snapshot")) for _ in range(2)]
        assert events[0] == {"type": "market_data_back", "symbol": "ACME", "sequence": feed.sequence}
        assert (events[1]["sequence"], events[1]["bids"], events[1]["asks"]) == (feed.sequence, [[9_700, 2, 1]], [])
        book = httpx.get(f"{base}/v1/book/ACME").json()
        assert (book["sequence"], book["bids"]) == (feed.sequence, [[9_700, 2, 1]])
