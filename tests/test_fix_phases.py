"""Trading phases through the FIX gateway's market data: SecurityStatus (f) at subscribe and at each
phase change, the indicative uncross as MDEntryType Q, and the book's other updates flowing on.

The gateway runs as its own process against the real TES, but reads ACME's market data from the
test (`phase_feed.PhaseFeed`, on real sockets in the OBS's place): the test says which phase the book
is in, and the messages are exactly the OBS's contract (`servers.protocol` PhaseUpdate, Indicative,
AuctionSummary and the snapshot's phase fields)."""

import time

import pytest
from phase_feed import PhaseFeed
from test_fix_gateway import FIX_OVERRIDES, expect, logged_on

from engine.types import Phase, Side
from gateways.fix import messages as m
from servers.processes import Role
from servers.protocol import AuctionSummary, DepthUpdate, Indicative, PhaseReason, PhaseUpdate, Quote, Trade


@pytest.fixture(scope="module")
def feed():
    feed = PhaseFeed("ACME")
    yield feed
    feed.close()


@pytest.fixture(scope="module")
def gateway(live_exchange, feed):
    env = dict(live_exchange.env, **FIX_OVERRIDES, **feed.endpoints())
    role = Role(["-s", "FIX"], env)
    role.port = int(env["EXCHANGE__FIX__PORT"])
    yield role
    assert role.stop() == 0, role.output()
    assert "Traceback" not in role.output(), role.output()


def entries(message: m.Message) -> list[dict[int, str]]:
    """The NoMDEntries entries of a W or X, each from its MDEntryType (W) or MDUpdateAction (X) on."""
    first = 269 if message.msg_type == "W" else 279
    found: list[dict[int, str]] = []
    for tag, value in message.fields:
        if tag == first:
            found.append({})
        if found:
            found[-1].setdefault(tag, value)
    return found


def test_phases_reach_subscribers_as_security_status_and_the_uncross_as_entry_q(gateway, feed):
    feed.set_book([(9_900, 5, 1)], [(9_800, 3, 1)], Phase.CALL, (9_850, 3))  # a crossed book in a call
    demo1 = logged_on(gateway, "demo1")
    demo1.send("V", [(262, "ph-1"), (263, "1"), (264, 0), (265, 1), (267, 4), (269, "0"), (269, "1"), (269, "2"),
                     (269, "Q"), (146, 1), (55, "ACME")])
    feed.serve()
    snapshot = demo1.wait_for("W")
    assert [(e[269], e.get(270), e.get(271)) for e in entries(snapshot)] == [("0", "99", "5"), ("1", "98", "3"),
                                                                             ("Q", "98.5", "3")]
    status = demo1.wait_for("f")
    expect(status, t55="ACME", t326="21", t325="Y", t58="call auction")

    feed.publish(lambda seq: Indicative("ACME", seq, 9_860, 4, time.time_ns()))
    update = demo1.wait_for("X")
    assert entries(update) == [{279: "1", 269: "Q", 55: "ACME", 270: "98.6", 271: "4", 83: "1"}]

    demo2 = logged_on(gateway, "demo2")  # trades only: no Q entries, but the phase all the same
    demo2.send("V", [(262, "ph-2"), (263, "1"), (264, 0), (267, 1), (269, "2"), (146, 1), (55, "ACME")])
    assert entries(demo2.wait_for("W")) == []
    expect(demo2.wait_for("f"), t326="21")

    halted_at = time.time_ns()
    feed.publish(lambda seq: PhaseUpdate("ACME", seq, Phase.HALTED, PhaseReason.OPERATOR, 0, halted_at))
    for peer in (demo1, demo2):
        expect(peer.wait_for("f"), t326="2", t58="halted (by the operator)", t60=m.nanos_timestamp(halted_at))
    until = time.time_ns() + 60_000_000_000
    feed.publish(lambda seq: PhaseUpdate("ACME", seq, Phase.CALL, PhaseReason.VOLATILITY, until, time.time_ns()))
    for peer in (demo1, demo2):
        expect(peer.wait_for("f"), t326="21",
               t58=f"call auction (volatility interruption until {m.nanos_timestamp(until)})")

    # the uncross: the phase first, its summary, then its trade and the book's levels
    feed.publish(lambda seq: PhaseUpdate("ACME", seq, Phase.CONTINUOUS, PhaseReason.SCHEDULE, 0, time.time_ns()))
    feed.publish(lambda seq: AuctionSummary("ACME", seq, 9_850, 3, time.time_ns()))
    feed.publish(lambda seq: Trade("ACME", seq, 1, 9_850, 3, Side.BUY, time.time_ns()))
    feed.publish(lambda seq: DepthUpdate("ACME", seq, Side.SELL, 9_800, 0, 0, time.time_ns()))
    feed.publish(lambda seq: Quote("ACME", seq, 9_900, 2, 0, 0, time.time_ns()))
    feed.publish(lambda seq: DepthUpdate("ACME", seq, Side.BUY, 9_900, 2, 1, time.time_ns()))
    for peer in (demo1, demo2):
        expect(peer.wait_for("f"), t326="17", t58="continuous trading (by the trading schedule)")
    seen = entries(demo1.wait_for("X"))
    while len(seen) < 4:  # in one refresh or several, as the gateway read them
        seen += entries(demo1.wait_for("X"))
    assert [(e[279], e[269], e.get(270), e.get(271), e[83]) for e in seen] == [
        ("2", "Q", None, None, "4"),  # the indicative uncross is gone
        ("0", "2", "98.5", "3", "6"), ("2", "1", "98", None, "7"), ("1", "0", "99", "2", "9")]
    assert [(e[269], e[270]) for e in entries(demo2.wait_for("X"))] == [("2", "98.5")]
    assert gateway.process.poll() is None
    for peer in (demo1, demo2):
        peer.close()


def test_subscribers_are_told_when_the_market_data_is_lost_and_get_the_rebuilt_book(gateway, feed):
    """The book server goes away and comes back (`PhaseFeed.restart`) with a book that changed meanwhile."""
    demo1 = logged_on(gateway, "demo1")
    demo1.send("V", [(262, "lost-1"), (263, "1"), (264, 0), (265, 1), (267, 2), (269, "0"), (269, "1"),
                     (146, 1), (55, "ACME")])
    demo1.wait_for("W")
    demo1.wait_for("f")
    before = time.time_ns()
    feed.restart()
    status = demo1.wait_for("f")
    expect(status, t55="ACME", t325="Y", t326="20", t58="market data lost: the connection to the book server was "
                                                        "lost; a snapshot follows once it is back")
    assert m.nanos_timestamp(before) <= status.get(60) <= m.timestamp()

    feed.sequence += 3  # published while the gateway was away: only the snapshot has it
    feed.set_book([(9_700, 2, 1)], [], Phase.CONTINUOUS)
    feed.serve()
    snapshot = demo1.wait_for("W")
    assert [(e[269], e.get(270), e.get(271)) for e in entries(snapshot)] == [("0", "97", "2")]
    expect(demo1.wait_for("f"), t326="17")
    assert gateway.process.poll() is None
    demo1.close()
