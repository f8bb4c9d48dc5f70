"""The FIX gateway end to end (`python main.py -s FIX` against a real OBS, recorder and TES), spoken to
over plain sockets (`fix_peer.FixPeer`): logon, every order type and time in force, fills on both
sides with their execution reports, cancel, replace, mass cancel, the TES's rejects, market data,
the instruments; bad input of every kind with the gateway serving everyone else; a restart with the
sequence numbers and the missed reports; the bounds; positions that agree with the TES; a fuzz."""

import errno
import os
import random
import socket
import subprocess
import sys
import time

import pytest
from fix_peer import FixPeer, fix_time
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from procs import free_port
from test_journal_failures import fill, small_tmpfs

from clients.client import ExchangeClient
from gateways.fix import messages as m
from servers.processes import REPO, Role, endpoint, exchange_env

FIX_OVERRIDES = {"EXCHANGE__FIX__LOGON_TIMEOUT_MS": "1500", "EXCHANGE__FIX__MAX_CONNECTIONS": "12",
                 "EXCHANGE__FIX__MAX_MESSAGE_BYTES": "4096"}


@pytest.fixture(scope="module")
def gateway(live_exchange):
    env = dict(live_exchange.env, **FIX_OVERRIDES)
    role = Role(["-s", "FIX"], env)
    role.env = env
    role.port = int(env["EXCHANGE__FIX__PORT"])
    yield role
    if role.process.poll() is None:
        assert role.stop() == 0, role.output()
    assert "Traceback" not in role.output(), role.output()
    if os.environ.get("FIX_GATEWAY_LOG"):
        print(role.output())


def logged_on(gateway, trader: str, reset: bool = True) -> FixPeer:
    peer = FixPeer(gateway.port, sender=trader.upper())
    reply = peer.logon(f"{trader}-demo-key", username=trader, reset=reset)
    assert reply.msg_type == "A", reply
    return peer


def report(peer: FixPeer, clordid: str, exec_type: str | None = None, timeout: float = 5.0) -> m.Message:
    return peer.wait_for(lambda message: message.msg_type == "8" and message.get(11) == clordid
                         and (exec_type is None or message.get(150) == exec_type), timeout)


def expect(message: m.Message, **fields) -> None:
    """Each ``tNNN=value`` of ``fields`` is the message's tag NNN."""
    def value_of(name: str) -> str | None:
        return message.msg_type if name == "t35" else message.get(int(name[1:]))

    wrong = {name: (value_of(name), value) for name, value in fields.items() if value_of(name) != value}
    assert not wrong, f"{wrong} in {message}"


def still_serving(gateway) -> None:
    """Another session logs on, enters an order and has it acknowledged."""
    peer = logged_on(gateway, "demo2")
    clordid = f"alive-{random.randrange(10**9)}"
    peer.order(clordid, "ACME", "1", 1, "90", tif="3")
    assert report(peer, clordid).get(150) in ("0", "8")
    peer.send(m.LOGOUT)
    peer.wait_for("5")
    peer.close()


def test_a_wrong_password_is_refused_with_the_exchanges_reason(gateway):
    peer = FixPeer(gateway.port, sender="ALICE")
    reply = peer.logon("not-the-key", reset=True)
    expect(reply, t35="5", t58="logon of 'alice' refused: unknown trader or wrong API key (5002)")
    assert peer.closed()


def test_a_cross_between_two_fix_sessions_reports_both_sides(gateway):
    alice, bob = logged_on(gateway, "alice"), logged_on(gateway, "bob")
    alice.order("a-1", "ACME", "1", 10, "101.25", tif="1")
    new = report(alice, "a-1", "0")
    expect(new, t39="0", t55="ACME", t54="1", t38="10", t40="2", t44="101.25", t59="1", t151="10", t14="0", t6="0")
    order_id = new.get(37)
    bob.order("b-1", "ACME", "2", 4, "101", tif="3")
    expect(report(bob, "b-1", "0"), t39="0", t59="3")
    taker = report(bob, "b-1", "F")
    expect(taker, t39="2", t31="101.25", t32="4", t151="0", t14="4", t6="101.25", t851="2", t1057="Y")
    maker = report(alice, "a-1", "F")
    expect(maker, t37=order_id, t39="1", t31="101.25", t32="4", t151="6", t14="4", t6="101.25", t38="10",
           t851="1", t1057="N", t880=taker.get(880))
    bob.order("b-2", "ACME", "2", 6, "101.20", tif="4")  # FOK, all of it at 101.25
    expect(report(bob, "b-2", "F"), t39="2", t32="6", t59="4")
    expect(report(alice, "a-1", "F"), t39="2", t151="0", t14="10", t6="101.25")
    assert len({message.get(17) for message in alice.received if message.msg_type == "8"}) == 3  # ExecIDs unique
    for peer in (alice, bob):
        peer.send(m.LOGOUT)
        peer.wait_for("5")
        peer.close()


def test_market_orders_day_and_gtc_and_the_tes_rejects(gateway):
    alice, bob = logged_on(gateway, "alice"), logged_on(gateway, "bob")
    alice.order("a-day", "BOLT", "2", 20, "250.05", tif="0")
    expect(report(alice, "a-day", "0"), t59="0", t44="250.05")
    bob.order("b-mkt", "BOLT", "1", 10, ord_type="1", tif=None)  # a market order without TIF: IOC
    expect(report(bob, "b-mkt", "F"), t40="1", t59="3", t31="250.05", t39="2")
    bob.order("b-mkt-fok", "BOLT", "1", 50, ord_type="1", tif="4")  # more than rests: killed
    expect(report(bob, "b-mkt-fok", "8"), t39="8", t103="99")
    assert "(2002)" in bob.received[-1].get(58)
    bob.order("b-tick", "BOLT", "1", 10, "250.01")  # BOLT's tick is 0.05
    rejected = report(bob, "b-tick", "8")
    expect(rejected, t39="8", t103="99", t58="price 25001 is not a multiple of the tick 5 (3002)")
    bob.order("b-lot", "BOLT", "1", 15, "250")
    expect(report(bob, "b-lot", "8"), t103="13")
    assert "(3003)" in bob.received[-1].get(58)
    bob.order("b-sym", "NOPE", "1", 1, "1")
    expect(report(bob, "b-sym", "8"), t103="1", t58="unknown symbol 'NOPE' (3001)")
    bob.order("b-fine", "ACME", "1", 1, "100.001")
    expect(report(bob, "b-fine", "8"), t103="99", t58="price 100.001 is not a multiple of the tick 0.01")
    bob.order("b-half", "ACME", "1", "1.5", "100")
    expect(report(bob, "b-half", "8"), t103="13")
    bob.order("b-side", "ACME", "5", 1, "100")  # sell short: a FIX side the exchange does not have
    expect(report(bob, "b-side", "8"), t103="11")
    bob.order("b-band", "ACME", "1", 1, "150")
    expect(report(bob, "b-band", "8"), t103="99")
    assert "(3006)" in bob.received[-1].get(58)
    bob.order("a-dup", "ACME", "1", 1, "95")
    report(bob, "a-dup", "0")
    bob.order("a-dup", "ACME", "1", 1, "95")
    expect(report(bob, "a-dup", "8"), t103="6", t58="ClOrdID a-dup was used before")
    for peer in (alice, bob):
        peer.send("q", [(11, "mc"), (530, "7"), (60, fix_time())])
        peer.wait_for("r")
        peer.close()


def test_cancel_replace_and_their_rejects(gateway):
    alice = logged_on(gateway, "alice")
    alice.order("r-1", "ACME", "1", 10, "95", tif="1")
    order_id = report(alice, "r-1", "0").get(37)
    alice.send("G", [(41, "r-1"), (11, "r-2"), (55, "ACME"), (54, "1"), (60, fix_time()), (38, 12), (40, "2"),
                     (44, "95.5")])
    expect(report(alice, "r-2", "5"), t41="r-1", t37=order_id, t38="12", t44="95.5", t151="12", t39="0")
    alice.send("G", [(41, "r-2"), (11, "r-3"), (55, "ACME"), (54, "1"), (60, fix_time()), (38, 12), (40, "1")])
    expect(alice.wait_for("9"), t11="r-3", t41="r-2", t434="2", t102="99")
    alice.send("F", [(41, "nope"), (11, "c-0"), (55, "ACME"), (54, "1"), (60, fix_time())])
    expect(alice.wait_for("9"), t11="c-0", t434="1", t102="1", t58="no order with OrigClOrdID nope")
    alice.send("F", [(41, "r-2"), (11, "c-1"), (55, "ACME"), (54, "1"), (60, fix_time())])
    expect(report(alice, "c-1", "4"), t41="r-2", t37=order_id, t39="4", t151="0", t14="0")
    alice.send("F", [(41, "r-2"), (11, "c-2"), (55, "ACME"), (54, "1"), (60, fix_time())])
    expect(alice.wait_for("9"), t11="c-2", t102="0", t39="4")  # too late: already canceled
    alice.order("r-4", "ACME", "1", 5, "94")
    alice.order("r-5", "BOLT", "1", 10, "240")
    report(alice, "r-4", "0")
    report(alice, "r-5", "0")
    alice.send("q", [(11, "mc-1"), (530, "1"), (55, "ACME"), (60, fix_time())])
    expect(report(alice, "r-4", "4"), t58="canceled by a mass cancel")
    expect(alice.wait_for("r"), t11="mc-1", t530="1", t531="1", t533="1", t55="ACME")
    alice.send("q", [(11, "mc-2"), (530, "7"), (60, fix_time())])
    report(alice, "r-5", "4")
    expect(alice.wait_for("r"), t11="mc-2", t531="7", t533="1")
    alice.close()


def status(peer: FixPeer, clordid: str, **extra) -> m.Message:
    """An OrderStatusRequest for ``clordid`` (ACME, buy) and its answer, an ExecutionReport ExecType I."""
    peer.send("H", [(11, clordid), (55, "ACME"), (54, "1"), *extra.items()])
    return peer.wait_for(lambda message: message.msg_type == "8" and message.get(150) == "I")


def test_order_status_requests_answer_with_each_orders_state(gateway):
    buyer, seller = logged_on(gateway, "demo1"), logged_on(gateway, "demo2")  # alice and bob keep their positions
    buyer.order("os-1", "ACME", "1", 10, "97", tif="1")
    order_id = report(buyer, "os-1", "0").get(37)
    expect(status(buyer, "os-1"), t37=order_id, t11="os-1", t39="0", t55="ACME", t54="1", t38="10", t44="97",
           t59="1", t151="10", t14="0", t6="0")
    seller.order("os-x", "ACME", "2", 4, "97", tif="3")
    report(buyer, "os-1", "F")
    answer = status(buyer, "os-1", **{"790": "req-7"})
    expect(answer, t37=order_id, t39="1", t151="6", t14="4", t6="97", t790="req-7")
    assert answer.get(17).startswith("G") and answer.get(17) != status(buyer, "os-1").get(17)  # ExecIDs unique
    buyer.send("G", [(41, "os-1"), (11, "os-2"), (55, "ACME"), (54, "1"), (60, fix_time()), (38, 12), (40, "2"),
                     (44, "96.5")])
    report(buyer, "os-2", "5")
    for asked in ("os-1", "os-2"):  # by the first ClOrdID or the current one: the order as it is now
        expect(status(buyer, asked), t37=order_id, t11="os-2", t39="1", t38="12", t44="96.5", t151="8", t14="4")
    buyer.send("F", [(41, "os-2"), (11, "os-3"), (55, "ACME"), (54, "1"), (60, fix_time())])
    report(buyer, "os-3", "4")
    expect(status(buyer, "os-2"), t39="4", t151="0", t14="4")
    expect(status(buyer, "nope"), t11="nope", t39="8", t103="5", t37="NONE", t58="no order with ClOrdID nope")
    expect(status(seller, "os-1"), t39="8", t103="5")  # another session's order is not known to this one
    expect(status(buyer, "nope", **{"37": order_id}), t11="os-2", t37=order_id, t39="4")  # found by OrderID
    buyer.send("H", [(11, "os-1"), (54, "1")])
    expect(buyer.wait_for("3"), t371="55", t373="1")  # Symbol is required: a session Reject
    for peer in (buyer, seller):
        peer.close()


def test_an_order_of_one_connection_is_canceled_in_the_next(gateway):
    alice = logged_on(gateway, "alice")
    alice.order("k-1", "ACME", "1", 3, "96")
    order_id = report(alice, "k-1", "0").get(37)
    alice.send(m.LOGOUT)
    alice.wait_for("5")
    alice.close()
    again = FixPeer(gateway.port, sender="ALICE", seq=alice.seq)
    reply = again.logon("alice-demo-key")
    assert reply.msg_type == "A", reply  # no reset: the numbers go on
    again.send("F", [(41, "k-1"), (11, "k-2"), (55, "ACME"), (54, "1"), (60, fix_time())])
    expect(report(again, "k-2", "4"), t41="k-1", t37=order_id, t39="4")
    again.close()


def test_market_data_snapshot_and_incremental_refresh_and_the_instruments(gateway):
    demo1, bob = logged_on(gateway, "demo1"), logged_on(gateway, "bob")
    bob.order("md-1", "BOLT", "1", 30, "245.5")
    report(bob, "md-1", "0")
    demo1.send("V", [(262, "sub-1"), (263, "1"), (264, 0), (265, 1), (267, 3), (269, "0"), (269, "1"), (269, "2"),
                     (146, 1), (55, "BOLT")])
    snapshot = demo1.wait_for("W")
    expect(snapshot, t262="sub-1", t55="BOLT")
    bids = [(p, q) for t, p, q in _entries(snapshot, 269, 270, 271) if t == "0"]
    assert ("245.5", "30") in bids
    bob.order("md-2", "BOLT", "1", 20, "245.5")
    update = demo1.wait_for("X")
    expect(update, t262="sub-1", t279="1", t269="0", t55="BOLT", t270="245.5", t271="50", t346="2")
    bob.send("F", [(41, "md-1"), (11, "md-3"), (55, "BOLT"), (54, "1"), (60, fix_time())])
    expect(demo1.wait_for("X"), t271="20", t346="1")
    demo1.send("V", [(262, "sub-2"), (263, "1"), (264, 0), (267, 1), (269, "0"), (146, 1), (55, "NOPE")])
    expect(demo1.wait_for("Y"), t262="sub-2", t281="0", t58="unknown symbol NOPE")
    demo1.send("V", [(262, "sub-1"), (263, "2")])
    demo1.send("x", [(320, "sec-1"), (559, 4)])
    listing = demo1.wait_for("y")
    expect(listing, t320="sec-1", t560="0", t146="2")
    assert [(s, lot, tick) for s, lot, tick in _entries(listing, 55, 561, 969)] == [("ACME", "1", "0.01"),
                                                                                     ("BOLT", "10", "0.05")]
    demo1.send("AF", [(584, "ms-1"), (585, 7)])  # OrderMassStatusRequest: not offered
    expect(demo1.wait_for("j"), t372="AF", t380="3")
    bob.send("q", [(11, "mc"), (530, "7"), (60, fix_time())])
    bob.wait_for("r")
    for peer in (demo1, bob):
        peer.close()


def _entries(message: m.Message, first: int, *tags: int) -> list[tuple]:
    entries, current = [], None
    for tag, value in message.fields:
        if tag == first:
            current = {first: value}
            entries.append(current)
        elif current is not None and tag in tags:
            current[tag] = value
    return [tuple(entry.get(tag) for tag in (first, *tags)) for entry in entries]


@pytest.mark.parametrize("data", [b"GET / HTTP/1.1\r\n\r\n", b"8=FIX.4.4\x019=5\x0135=0\x0110=000\x01"])
def test_garbage_before_logon_closes_the_connection_and_others_are_served(gateway, data):
    peer = FixPeer(gateway.port)
    peer.send_raw(data)
    assert peer.closed()
    still_serving(gateway)


def test_bad_input_in_a_session_gets_rejects_or_a_logout_with_the_reason(gateway):
    alice = logged_on(gateway, "alice")
    alice.send("D", [(11, "x1"), (55, "ACME"), (54, "1"), (60, fix_time()), (38, "ten"), (40, "2"), (44, "1")])
    expect(alice.wait_for("3"), t373="6", t371="38", t372="D")
    alice.send("D", [(11, "x2"), (55, "ACME"), (54, "1"), (60, fix_time()), (40, "2"), (44, "1")])
    expect(alice.wait_for("3"), t373="1", t371="38", t58="required tag 38 missing")
    alice.send("D", [(11, "x3"), (55, "ACME"), (54, "1"), (60, fix_time()), (38, 1), (40, "2")])
    expect(alice.wait_for("3"), t373="1", t371="44")
    alice.send("D", [(11, "x4"), (55, "ACME"), (54, "Q"), (60, fix_time()), (38, 1), (40, "2"), (44, "1")])
    expect(alice.wait_for("3"), t373="5", t371="54")
    alice.send("0", [], seq=alice.seq - 2)  # a number too low, not a duplicate
    logout = alice.wait_for("5")
    assert logout.get(58).startswith("MsgSeqNum too low, expecting ")
    assert alice.closed()
    bob = logged_on(gateway, "bob")
    frame = bob.build("0", [])
    bob.send_raw(frame[:-4] + b"999\x01")
    assert "CheckSum(10) is 999" in bob.wait_for("5").get(58)
    assert bob.closed()
    still_serving(gateway)


def test_a_message_over_the_size_limit_ends_the_connection_saying_so(gateway):
    alice = logged_on(gateway, "alice")
    alice.send("0", [(112, "x" * 5000)])
    assert "over the limit of 4096" in alice.wait_for("5").get(58)
    assert alice.closed()
    still_serving(gateway)


def test_no_logon_in_time_and_too_many_connections(gateway):
    silent = socket.create_connection(("127.0.0.1", gateway.port))
    silent.settimeout(5)
    started = time.monotonic()
    assert silent.recv(100) == b""
    assert 1.0 < time.monotonic() - started < 4.0
    silent.close()
    held = [socket.create_connection(("127.0.0.1", gateway.port)) for _ in range(12)]
    try:
        extra = socket.create_connection(("127.0.0.1", gateway.port))
        extra.settimeout(5)
        assert extra.recv(100) == b""  # closed at once
        extra.close()
    finally:
        for held_socket in held:
            held_socket.close()
    time.sleep(0.3)
    still_serving(gateway)


def test_sequence_numbers_and_missed_reports_survive_a_gateway_restart(gateway, live_exchange):
    alice = logged_on(gateway, "alice")
    alice.order("s-1", "ACME", "2", 8, "104", tif="1")
    report(alice, "s-1", "0")
    next_in, next_out = alice.seq, alice.received[-1].seq + 1
    gateway.kill()
    alice.close()
    bob = ExchangeClient(endpoint(gateway.env, "TES__CLIENT_ENDPOINT"), "bob", "bob-demo-key")
    bob.logon()
    bob.enter_order("ACME", 0, 0, 1, 10_400, 3)  # buys 3 of alice's resting order while the gateway is down
    assert any(type(message).__name__ == "OrderFilled" for message in _all(bob))
    bob.close()
    restarted = Role(["-s", "FIX"], gateway.env)
    gateway.process, gateway.lines = restarted.process, restarted.lines
    gateway._reader = restarted._reader
    again = FixPeer(gateway.port, sender="ALICE", seq=next_in)
    reply = again.logon("alice-demo-key")
    assert reply.msg_type == "A" and reply.seq == next_out  # our numbers go on where they were
    fill = report(again, "s-1", "F")
    expect(fill, t32="3", t151="5", t14="3", t39="1", t1057="N")
    again.send("2", [(7, next_out - 1), (16, 0)])  # ask for the last order report again, and what follows
    resent = again.wait_for(lambda message: message.get(43) == "Y" and message.msg_type == "8")
    assert resent.seq == next_out - 1 and resent.get(11) == "s-1" and resent.get(122)
    gap = again.wait_for("4")
    assert gap.seq == next_out and gap.get(123) == "Y"  # our Logon is gap-filled
    again.send("F", [(41, "s-1"), (11, "s-2"), (55, "ACME"), (54, "2"), (60, fix_time())])
    expect(report(again, "s-2", "4"), t41="s-1", t14="3")  # the gateway still knows the order after the restart
    again.close()


def _all(client: ExchangeClient, seconds: float = 1.0) -> list:
    deadline, messages = time.monotonic() + seconds, []
    while time.monotonic() < deadline:
        messages += client.receive(0.1)
    return messages


def test_positions_through_the_gateway_agree_with_the_tes(gateway, live_exchange):
    """The fills reported over FIX in the tests above are the positions the TES holds: alice bought 10
    ACME of bob (4 + 6) and sold him 3 while the gateway was down; bob bought 10 BOLT of alice."""
    position = {}
    for trader in ("alice", "bob"):
        client = ExchangeClient(endpoint(gateway.env, "TES__CLIENT_ENDPOINT"), trader, f"{trader}-demo-key")
        client.logon()
        position[trader] = {p.symbol: p.quantity for p in client.positions().positions}
        client.close()
    assert position["alice"] == {"ACME": 10 - 3, "BOLT": -10}
    assert position["bob"] == {"ACME": -10 + 3, "BOLT": 10}


FUZZ_MESSAGES = [
    ("D", [(11, "f1"), (55, "ACME"), (54, "1"), (60, "20260101-00:00:00"), (38, 1), (40, "2"), (44, "1")]),
    ("F", [(41, "f1"), (11, "f2"), (55, "ACME"), (54, "1"), (60, "20260101-00:00:00")]),
    ("G", [(41, "f1"), (11, "f3"), (55, "ACME"), (54, "1"), (60, "20260101-00:00:00"), (38, 2), (40, "2"), (44, "1")]),
    ("q", [(11, "f4"), (530, "7"), (60, "20260101-00:00:00")]),
    ("V", [(262, "f5"), (263, "1"), (264, 0), (267, 1), (269, "0"), (146, 1), (55, "ACME")]),
    ("x", [(320, "f6"), (559, 4)]),
    ("2", [(7, 1), (16, 0)]),
    ("4", [(123, "Y"), (36, 5)]),
    ("1", [(112, "t")]),
]
fuzz_values = st.one_of(st.text(max_size=12), st.integers(-(2**70), 2**70).map(str),
                        st.sampled_from(["", "Y", "N", "1.5", "-1", "0", "99999999999999999999", "\x01", "=", "A"]))


@st.composite
def mutated(draw) -> tuple[str, list]:
    """One of FUZZ_MESSAGES with 1 to 3 of its values replaced or tags added."""
    msg_type, fields = draw(st.sampled_from(FUZZ_MESSAGES))
    fields = list(fields)
    for _ in range(draw(st.integers(1, 3))):
        index = draw(st.integers(0, len(fields)))
        value = draw(fuzz_values)
        if index == len(fields):
            # any tag but the framing (BeginString, BodyLength, MsgType, CheckSum), which the peer's
            # encoder writes itself (simplefix takes an appended 8 as the BeginString and refuses an
            # empty one); the framing is fuzzed by the raw bytes
            fields.append((draw(st.integers(1, 2000).filter(lambda tag: tag not in (8, 9, 10, 35))), value))
        else:
            fields[index] = (fields[index][0], value)
    return msg_type, fields


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(messages=st.lists(mutated(), min_size=1, max_size=5), raw=st.binary(max_size=120))
def test_fuzzed_messages_never_stop_the_gateway(gateway, messages, raw):
    peer = FixPeer(gateway.port, sender="DEMO1")
    try:
        if peer.logon("demo1-demo-key", username="demo1", reset=True).msg_type == "A":
            try:
                for msg_type, fields in messages:
                    peer.send(msg_type, fields)
                peer.send_raw(raw)
            except OSError:
                pass  # the gateway ended the session: fine, as long as it serves on
            peer.closed(0.2)
    finally:
        peer.close()  # whatever happened, so that the next example's logon is not another connection's
    assert gateway.process.poll() is None


def test_after_the_fuzz_a_trade_still_works_end_to_end(gateway):
    demo1, demo2 = logged_on(gateway, "demo1"), logged_on(gateway, "demo2")
    demo1.send("q", [(11, "end-mc"), (530, "7"), (60, fix_time())])
    demo1.wait_for("r")
    demo1.order("end-1", "BOLT", "1", 10, "230")
    report(demo1, "end-1", "0")
    demo2.order("end-2", "BOLT", "2", 10, "230", tif="3")
    expect(report(demo2, "end-2", "F"), t39="2", t31="230", t1057="Y")
    expect(report(demo1, "end-1", "F"), t39="2", t1057="N")
    assert gateway.process.poll() is None


def test_up_starts_the_gateway_when_enabled_and_stops_it_in_order(tmp_path):
    env = exchange_env(tmp_path, EXCHANGE__FIX__ENABLED="true", EXCHANGE__UP__BOTS="[]", EXCHANGE__UP__FRONTENDS="[]")
    with Role(["up"], env) as up:
        up.wait_for("exchange up", 60)
        assert up.wait_for("FIX 4.4 gateway", 1).split()[3] == f"127.0.0.1:{env['EXCHANGE__FIX__PORT']},"
        peer = FixPeer(int(env["EXCHANGE__FIX__PORT"]), sender="BOB")
        assert peer.logon("bob-demo-key", username="bob").msg_type == "A"
        peer.order("up-1", "ACME", "1", 1, "100")
        assert report(peer, "up-1").get(150) == "0"
        assert up.stop() == 0, up.output()
    assert peer.closed(5)
    lines = up.output()
    assert lines.index("FIX gateway stopped") < lines.index("tes: stopped") and "Traceback" not in lines


def test_a_full_store_file_system_stops_the_gateway_cleanly_and_its_restart_resumes(live_exchange, tmp_path):
    """The sessions' store on a real 1 MiB tmpfs, filled: the gateway stops at the first turn whose
    records it cannot write, in one line, before anything of that turn leaves; restarted once there
    is space, it resumes the session where its store says (the sequence numbers go on)."""
    store = tmp_path / "fix-store"
    with small_tmpfs(store):
        port = free_port()
        env = dict(live_exchange.env, **FIX_OVERRIDES, EXCHANGE__FIX__PORT=str(port),
                   EXCHANGE__FIX__DATA_DIR=str(store))
        stopped = Role(["-s", "FIX"], env)
        with stopped:
            peer = FixPeer(port, sender="DEMO2")
            reply = peer.logon("demo2-demo-key", username="demo2", reset=True)
            assert reply.msg_type == "A", reply
            filler = fill(store)
            for number in range(os.sysconf("SC_PAGE_SIZE") // 16):  # each order's records take more than that
                clordid = f"full-{number}"
                peer.order(clordid, "ACME", "1", 1, "90", tif="0")
                try:
                    # taken (new, or rejected: other tests move the price band) or never answered
                    assert report(peer, clordid, timeout=5).get(150) in ("0", "8")
                except AssertionError:
                    break
            else:
                pytest.fail("the gateway went on answering with its store's file system full")
            assert stopped.process.wait(10) == 1
            in_hand = peer.seq - 1
        output = stopped.output()
        assert f"FIX stopped: cannot write the session store {store / 'EXCHANGE-DEMO2'}" in output, output
        assert os.strerror(errno.ENOSPC) in output and "Traceback" not in output, output
        peer.close()

        filler.unlink()
        with Role(["-s", "FIX"], env) as restarted:
            again = FixPeer(port, sender="DEMO2", seq=peer.seq)
            assert again.logon("demo2-demo-key", username="demo2").msg_type == "A"
            # The order in hand at the stop was never taken: the gateway asks for it again, and the
            # peer sends it again as a possible duplicate, which is then answered, and the Logon's
            # number after it as a gap fill.
            expect(again.wait_for(m.RESEND_REQUEST), t7=str(in_hand), t16="0")
            again.send(m.NEW_ORDER_SINGLE, [(11, clordid), (55, "ACME"), (54, "1"), (60, fix_time()), (38, 1),
                                            (40, "2"), (44, "90"), (59, "0")], seq=in_hand, poss_dup=True)
            assert report(again, clordid).get(150) in ("0", "8")
            again.send(m.SEQUENCE_RESET, [(123, "Y"), (36, again.seq)], seq=in_hand + 1, poss_dup=True)
            again.order("after-full", "ACME", "1", 1, "90", tif="0")
            assert report(again, "after-full").get(150) in ("0", "8")
            again.close()
            assert restarted.stop() == 0
            assert "Traceback" not in restarted.output()


def test_a_second_gateway_on_the_same_data_directory_is_refused_in_one_line(gateway):
    done = subprocess.run([sys.executable, "main.py", "-s", "FIX"], cwd=REPO, env=gateway.env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert f"FIX cannot start: the FIX gateway's data directory {gateway.env['EXCHANGE__FIX__DATA_DIR']} is in use " \
           f"by process {gateway.process.pid}" in done.stderr
