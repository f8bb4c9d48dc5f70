"""The advanced order kinds through the FIX gateway, end to end (a real OBS, recorder and TES; the
gateway as its own process; peers over plain sockets): stops that trigger and fill, an iceberg's
slice in the market data, post-only, self-trade prevention (cancel, decrement), GTD with its expiry,
the order kinds' fields kept across a gateway restart, and every bad input of the new tags refused
with the exchange's numbered reason."""

import calendar
import time

import pytest
from fix_peer import FixPeer, fix_time
from test_fix_gateway import FIX_OVERRIDES, expect, logged_on, report

from gateways.fix import messages as m
from servers.processes import Role


@pytest.fixture(scope="module")
def gateway(live_exchange):
    env = dict(live_exchange.env, **FIX_OVERRIDES)
    role = Role(["-s", "FIX"], env)
    role.env = env
    role.port = int(env["EXCHANGE__FIX__PORT"])
    yield role
    assert role.stop() == 0, role.output()
    assert "Traceback" not in role.output(), role.output()


def test_the_order_kinds_survive_a_gateway_restart(gateway):
    demo2 = logged_on(gateway, "demo2")
    expire = fix_time(3600)
    demo2.order("rs-1", "ACME", "1", 2, "106", ord_type="4", tif="6", extra=[(99, "105"), (126, expire), (2964, 2)])
    report(demo2, "rs-1", "0")
    demo2.order("rs-2", "ACME", "2", 10, "104", tif="1", extra=[(111, 2), (18, "6")])
    report(demo2, "rs-2", "0")
    demo2.close()
    gateway.kill()
    restarted = Role(["-s", "FIX"], gateway.env)
    gateway.process, gateway.lines, gateway._reader = restarted.process, restarted.lines, restarted._reader
    again = FixPeer(gateway.port, sender="DEMO2", seq=demo2.seq)
    assert again.logon("demo2-demo-key", username="demo2").msg_type == "A"
    for clordid, side in (("rs-1", "1"), ("rs-2", "2")):
        again.send("H", [(11, clordid), (55, "ACME"), (54, side)])
    stop = again.wait_for(lambda message: message.msg_type == "8" and message.get(150) == "I")
    expect(stop, t11="rs-1", t40="4", t44="106", t99="105", t59="6", t126=expire, t2964="2", t39="0")
    expect(again.wait_for(lambda message: message.msg_type == "8" and message.get(150) == "I"),
           t11="rs-2", t111="2", t18="6", t151="10")
    again.send("q", [(11, "rs-mc"), (530, "7"), (60, fix_time())])
    expect(again.wait_for("r"), t533="2")
    again.close()


@pytest.fixture(scope="module")
def peers(gateway):
    """Logged-on sessions of alice, bob, demo1 and demo2, each canceling its orders at the end."""
    sessions = {trader: logged_on(gateway, trader) for trader in ("alice", "bob", "demo1", "demo2")}
    yield sessions
    for peer in sessions.values():
        peer.send("q", [(11, "end-mc"), (530, "7"), (60, fix_time())])
        peer.wait_for("r")
        peer.close()


def test_a_stop_limit_and_a_stop_are_accepted_held_then_triggered_and_filled(peers):
    alice, bob, demo1 = peers["alice"], peers["bob"], peers["demo1"]
    bob.order("st-ask", "ACME", "2", 4, "100", tif="1")
    report(bob, "st-ask", "0")
    demo1.order("st-1", "ACME", "1", 3, "101", ord_type="4", tif="1", extra=[(99, "100")])
    held = report(demo1, "st-1", "0")
    expect(held, t40="4", t44="101", t99="100", t59="1", t39="0", t151="3")
    demo1.order("st-2", "ACME", "2", 1, ord_type="3", tif=None, extra=[(99, "95.5")])
    expect(report(demo1, "st-2", "0"), t40="3", t99="95.5", t59="1", t38="1")  # a stop is GTC
    assert 44 not in demo1.received[-1]
    alice.order("st-take", "ACME", "1", 1, "100", tif="3")  # trades at 100: the buy stop at 100 triggers
    expect(report(alice, "st-take", "F"), t31="100", t32="1")
    triggered = report(demo1, "st-1", "L")
    expect(triggered, t37=held.get(37), t40="4", t99="100", t39="0")
    assert triggered.get(58) == "stop triggered: a trade printed at 100"
    expect(report(demo1, "st-1", "F"), t31="100", t32="3", t39="2", t151="0", t14="3", t1057="Y")
    expect(report(bob, "st-ask", "F"), t32="1", t151="3", t14="1")
    expect(report(bob, "st-ask", "F"), t32="3", t151="0", t14="4", t39="2")
    demo1.send("F", [(41, "st-2"), (11, "st-3"), (55, "ACME"), (54, "2"), (60, fix_time())])
    expect(report(demo1, "st-3", "4"), t41="st-2", t40="3", t99="95.5")


def test_an_iceberg_shows_only_its_slice_in_the_market_data(peers):
    alice, demo2 = peers["alice"], peers["demo2"]
    alice.order("ice-1", "ACME", "2", 10, "103", tif="1", extra=[(111, 2)])
    expect(report(alice, "ice-1", "0"), t111="2", t38="10", t151="10", t44="103")
    demo2.send("V", [(262, "ice-md"), (263, "0"), (264, 0), (267, 1), (269, "1"), (146, 1), (55, "ACME")])
    snapshot = demo2.wait_for("W")
    asks = [(price, size) for kind, price, size in _entries(snapshot, 269, 270, 271) if kind == "1"]
    assert ("103", "2") in asks, asks
    status = demo2.wait_for("f")  # the book's phase follows every snapshot
    expect(status, t55="ACME", t326="17", t325="Y")
    demo2.order("ice-take", "ACME", "1", 3, "103", tif="3")  # takes the slice of 2 and 1 of the next
    expect(report(demo2, "ice-take", "F"), t32="2")
    expect(report(demo2, "ice-take", "F"), t32="1", t39="2")
    expect(report(alice, "ice-1", "F"), t32="2", t151="8", t111="2")
    expect(report(alice, "ice-1", "F"), t32="1", t151="7")


def test_post_only_rests_as_a_maker_and_is_refused_2003_when_it_would_take(peers):
    demo2 = peers["demo2"]
    demo2.order("po-1", "ACME", "1", 1, "103", tif="1", extra=[(18, "6")])  # alice's iceberg is at 103
    refused = report(demo2, "po-1", "8")
    expect(refused, t39="8", t18="6", t103="99")
    assert refused.get(58).endswith("(2003)"), refused
    demo2.order("po-2", "ACME", "1", 1, "95", tif="1", extra=[(18, "6")])
    expect(report(demo2, "po-2", "0"), t18="6", t39="0")


def test_self_trade_prevention_cancels_the_taker_or_decrements_both(peers):
    alice = peers["alice"]  # her iceberg rests at 103 with 7 left
    alice.order("stp-1", "ACME", "1", 1, "103", tif="1", extra=[(2964, 1)])
    canceled = report(alice, "stp-1", "4")
    expect(canceled, t2964="1", t151="0", t14="0", t58="canceled by self-trade prevention")
    alice.order("stp-2", "ACME", "1", 3, "103", tif="1", extra=[(2964, 4)])
    taker = report(alice, "stp-2", "D")
    expect(taker, t378="8", t2964="4", t151="0", t39="4", t58="decremented by 3 by self-trade prevention")
    expect(report(alice, "ice-1", "D"), t378="8", t151="4", t58="decremented by 3 by self-trade prevention")


def test_gtd_is_accepted_with_its_expiry_and_expires_then(peers):
    demo1 = peers["demo1"]
    expire = fix_time(5)  # time to be accepted on a slow machine
    demo1.order("gtd-1", "ACME", "1", 2, "95", tif="6", extra=[(126, expire)])
    expect(report(demo1, "gtd-1", "0"), t59="6", t126=expire)
    expect(report(demo1, "gtd-1", "C", 15), t39="C", t59="6", t58="expired: good till date")
    tomorrow = time.gmtime(time.time() + 86_400)
    date = time.strftime("%Y%m%d", tomorrow)
    demo1.order("gtd-2", "ACME", "1", 2, "95", tif="6", extra=[(432, date)])
    midnight = calendar.timegm((tomorrow.tm_year, tomorrow.tm_mon, tomorrow.tm_mday, 0, 0, 0)) + 86_400
    expect(report(demo1, "gtd-2", "0"), t126=time.strftime("%Y%m%d-%H:%M:%S.000", time.gmtime(midnight)))


def test_bad_input_of_the_new_tags_is_refused_with_the_numbered_reason(gateway, peers):
    bob = peers["bob"]
    bob.order("bad-1", "ACME", "1", 1, "101", ord_type="4", tif="1")  # a stop limit without StopPx
    expect(report(bob, "bad-1", "8"), t40="4", t58="StopPx (99) is required for OrdType 3 (stop) and 4 (stop "
                                                    "limit) (1012)")
    bob.order("bad-2", "ACME", "1", 10, "95", tif="1", extra=[(111, 20)])  # MaxFloor above OrderQty
    refused = report(bob, "bad-2", "8")
    expect(refused, t103="13", t111="20")
    assert refused.get(58).endswith("(1013)"), refused
    bob.order("bad-3", "ACME", "1", 1, "95", tif="6")  # GTD without ExpireTime or ExpireDate
    expect(report(bob, "bad-3", "8"), t59="6", t58="ExpireTime (126) or ExpireDate (432) is required for "
                                                    "TimeInForce 6 (GTD) (1015)")
    bob.order("bad-4", "ACME", "1", 1, "95", tif="6", extra=[(126, fix_time(-60))])  # already past
    assert report(bob, "bad-4", "8").get(58).endswith("(1015)")
    bob.order("bad-5", "ACME", "1", 1, "95", tif="1", extra=[(18, "G")])  # all or none: FIX's, not ours
    expect(report(bob, "bad-5", "8"), t103="11", t58="ExecInst (18) G is not supported: only 6 (participate "
                                                      "don't initiate: post-only) (1010)")
    bob.order("bad-6", "ACME", "1", 1, "95", tif="1", extra=[(18, "#")])  # not an ExecInst value at all
    expect(bob.wait_for("3"), t373="5", t371="18")
    bob.order("bad-7", "ACME", "1", 1, "95", tif="1", extra=[(2964, 7)])
    expect(bob.wait_for("3"), t373="5", t371="2964")
    bob.order("bad-8", "ACME", "1", 1, "95", tif="6", extra=[(432, "20261340")])
    expect(bob.wait_for("3"), t373="6", t371="432")
    bob.order("bad-9", "ACME", "1", 1, ord_type="3", tif=None, extra=[(99, "95.5")])  # a buy stop below
    # the last trade would trigger at once: the TES's rule (3010), the gateway passes it on
    assert report(bob, "bad-9", "8").get(58).endswith("(3010)")
    bob.order("rp-1", "ACME", "1", 2, "106", ord_type="4", tif="1", extra=[(99, "105")])
    report(bob, "rp-1", "0")
    bob.send("G", [(41, "rp-1"), (11, "rp-2"), (55, "ACME"), (54, "1"), (60, fix_time()), (38, 2), (40, "4"),
                   (44, "106"), (99, "105.5")])
    expect(bob.wait_for("9"), t11="rp-2", t434="2", t102="99", t58="StopPx (99) cannot change: the order's is 105")
    bob.send("G", [(41, "rp-1"), (11, "rp-3"), (55, "ACME"), (54, "1"), (60, fix_time()), (38, 2), (40, "4"),
                   (44, "106.5")])
    rejected = bob.wait_for("9")  # a held stop cannot be replaced: the book's rule
    expect(rejected, t11="rp-3", t434="2")
    assert rejected.get(58).endswith("(2005)"), rejected
    assert gateway.process.poll() is None


def _entries(message: m.Message, first: int, *tags: int) -> list[tuple]:
    entries, current = [], None
    for tag, value in message.fields:
        if tag == first:
            current = {first: value}
            entries.append(current)
        elif current is not None and tag in tags:
            current[tag] = value
    return [tuple(entry.get(tag) for tag in (first, *tags)) for entry in entries]
