"""The FIX session layer (`gateways.fix.session`) and its store (`gateways.fix.store`), without sockets:
logon rules, sequence numbers and recovery, heartbeats, rejects, and numbers surviving a restart."""

import errno
import os
import time

import msgspec
import pytest

from config.settings import FixConfig, FixSessionConfig
from gateways.fix import messages as m
from gateways.fix.session import FixSession, Sessions, State
from gateways.fix.store import SLOT, SequenceStore, StoreDamaged, StoreUnwritable

CONFIG = FixConfig(sessions=[FixSessionConfig("EXCHANGE", "ALICE", "alice")], logon_timeout_ms=1000)
PAIR = ("EXCHANGE", "ALICE")


class Transport:
    def __init__(self) -> None:
        self.frames: list[bytes] = []
        self.closed: str | None = None

    def send(self, frame: bytes) -> None:
        assert m.Framer(1 << 20).next() is None
        self.frames.append(frame)

    def close(self, reason: str) -> None:
        self.closed = reason

    def queued(self) -> int:
        return 0

    def take(self) -> list[m.Message]:
        frames, self.frames = self.frames, []
        decoded = []
        for frame in frames:
            framer = m.Framer(1 << 20)
            framer.feed(frame)
            assert framer.next() == frame  # every frame sent is a good one
            decoded.append(m.decode(frame))
        return decoded


class App:
    def __init__(self, accept: bool | None = True) -> None:
        self.accept = accept
        self.passwords: list[str] = []
        self.messages: list[m.Message] = []
        self.logouts = 0

    def logon(self, session, password) -> None:
        self.passwords.append(password)
        if self.accept is True:
            session.logon_accepted()
        elif self.accept is False:
            session.logon_refused("unknown trader or wrong API key (5002)")

    def on_message(self, session, message) -> None:
        if message.msg_type == "D":
            message.require(11)
        self.messages.append(message)
        session.send(m.EXECUTION_REPORT, [(11, message.get(11)), (150, "0")])

    def on_logout(self, session) -> None:
        self.logouts += 1


@pytest.fixture
def stores(tmp_path):
    made = {PAIR: SequenceStore(tmp_path / "EXCHANGE-ALICE")}
    yield made
    for store in made.values():
        store.close()


def frame(msg_type, fields=(), seq=1, sender="ALICE", target="EXCHANGE", sending_time=None, orig=None):
    return m.encode(msg_type, sender, target, seq, sending_time or m.timestamp(), list(fields), orig_sending_time=orig)


LOGON = [(98, 0), (108, 30), (553, "alice"), (554, "alice-demo-key")]


def connect(stores, app=None, logon_seq=1, logon=LOGON):
    transport, app = Transport(), app or App()
    session = FixSession(Sessions(CONFIG, stores), transport, app, "127.0.0.1:1", time.monotonic())
    session.on_frame(frame("A", logon, seq=logon_seq), time.monotonic())
    return session, transport, app


def test_a_logon_is_checked_by_the_application_and_answered(stores):
    session, transport, app = connect(stores)
    [reply] = transport.take()
    assert session.state is State.ACTIVE and app.passwords == ["alice-demo-key"]
    assert (reply.msg_type, reply.seq, reply.get(49), reply.get(56), reply.get(98), reply.get(108)) == \
        ("A", 1, "EXCHANGE", "ALICE", "0", "30")
    assert (stores[PAIR].next_in, stores[PAIR].next_out) == (2, 2)


@pytest.mark.parametrize("first, words", [
    (frame("D", [(11, "x")]), "the first message must be a Logon"),
    (frame("A", LOGON, sender="MALLORY"), "no FIX session for SenderCompID 'MALLORY'"),
    (frame("A", [(98, 1), (108, 30), (553, "alice"), (554, "k")]), "EncryptMethod (98) must be 0"),
    (frame("A", [(98, 0), (108, 0), (553, "alice"), (554, "k")]), "HeartBtInt (108) must be 1 to 300"),
    (frame("A", [(98, 0), (108, 30), (554, "k")]), "needs the trader in Username (553)"),
    (frame("A", [(98, 0), (108, 30), (553, "bob"), (554, "k")]), "Username (553) 'bob' is not the trader"),
    (frame("A", LOGON, sending_time="20000101-00:00:00"), "is more than 120s from the gateway's clock"),
], ids=["not-a-logon", "unknown-sender", "encrypted", "no-heartbeat", "no-username", "another-trader", "stale-clock"])
def test_a_bad_first_message_gets_a_logout_saying_why_and_the_connection_closes(stores, first, words):
    transport, app = Transport(), App()
    session = FixSession(Sessions(CONFIG, stores), transport, app, "peer", time.monotonic())
    session.on_frame(first, time.monotonic())
    [logout] = transport.take()
    assert logout.msg_type == "5" and words in logout.get(58)
    assert transport.closed and session.state is State.CLOSED and not app.passwords
    assert stores[PAIR].next_out == 1  # nothing of the session was used


def test_a_refused_logon_ends_with_the_exchanges_reason(stores):
    session, transport, app = connect(stores, App(accept=False))
    [logout] = transport.take()
    assert logout.msg_type == "5" and logout.get(58) == "unknown trader or wrong API key (5002)"
    assert transport.closed and app.logouts == 1


def test_a_second_connection_of_a_logged_on_pair_is_refused(stores):
    sessions = Sessions(CONFIG, stores)
    first = FixSession(sessions, Transport(), App(), "a", time.monotonic())
    first.on_frame(frame("A", LOGON), time.monotonic())
    transport = Transport()
    second = FixSession(sessions, transport, App(), "b", time.monotonic())
    second.on_frame(frame("A", LOGON, seq=2), time.monotonic())
    assert "already logged on" in transport.take()[0].get(58) and transport.closed
    assert first.state is State.ACTIVE


def test_messages_in_sequence_are_handled_and_a_gap_asks_for_a_resend(stores):
    session, transport, app = connect(stores)
    transport.take()
    session.on_frame(frame("D", [(11, "a")], seq=2), time.monotonic())
    session.on_frame(frame("D", [(11, "c")], seq=4), time.monotonic())  # 3 is missing
    session.on_frame(frame("D", [(11, "d")], seq=5), time.monotonic())
    sent = transport.take()
    assert [message.get(11) for message in app.messages] == ["a"]
    assert [(s.msg_type, s.get(7), s.get(16)) for s in sent if s.msg_type == "2"] == [("2", "3", "0")]
    assert sum(s.msg_type == "2" for s in sent) == 1  # one request for the whole gap
    for seq, clordid in ((3, "b"), (4, "c"), (5, "d")):
        session.on_frame(frame("D", [(11, clordid)], seq=seq, orig=m.timestamp()), time.monotonic())
    assert [message.get(11) for message in app.messages] == ["a", "b", "c", "d"]
    assert stores[PAIR].next_in == 6


def test_a_logon_above_the_expected_number_is_answered_then_followed_by_a_resend_request(stores):
    stores[PAIR].set_next_in(5)
    session, transport, app = connect(stores, logon_seq=9)
    logon, resend = transport.take()
    assert logon.msg_type == "A" and (resend.msg_type, resend.get(7), resend.get(16)) == ("2", "5", "0")
    session.on_frame(frame("4", [(123, "Y"), (36, 10)], seq=5, orig=m.timestamp()), time.monotonic())
    assert stores[PAIR].next_in == 10
    session.on_frame(frame("0", [], seq=10), time.monotonic())
    assert stores[PAIR].next_in == 11 and session.resend_requested_to is None


def test_a_number_too_low_ends_the_session_unless_it_is_a_possible_duplicate(stores):
    session, transport, app = connect(stores)
    session.on_frame(frame("D", [(11, "a")], seq=2), time.monotonic())
    session.on_frame(frame("D", [(11, "a")], seq=2, orig=m.timestamp()), time.monotonic())
    assert len(app.messages) == 1 and session.state is State.ACTIVE
    transport.take()
    session.on_frame(frame("D", [(11, "z")], seq=1), time.monotonic())
    [logout] = transport.take()
    assert logout.get(58) == "MsgSeqNum too low, expecting 3 but received 1" and transport.closed
    assert app.logouts == 1


def test_a_logon_below_the_expected_number_is_refused(stores):
    stores[PAIR].set_next_in(7)
    session, transport, app = connect(stores, logon_seq=3)
    assert "MsgSeqNum too low, expecting 7 but received 3" in transport.take()[-1].get(58)
    assert transport.closed


def test_a_resend_request_sends_application_messages_again_and_gap_fills_the_rest(stores):
    session, transport, app = connect(stores)
    session.on_frame(frame("1", [(112, "t1")], seq=2), time.monotonic())  # out: Heartbeat 2
    session.on_frame(frame("D", [(11, "a")], seq=3), time.monotonic())     # out: ExecutionReport 3
    session.on_frame(frame("D", [(11, "b")], seq=4), time.monotonic())     # out: ExecutionReport 4
    first = transport.take()
    assert [(s.msg_type, s.seq) for s in first] == [("A", 1), ("0", 2), ("8", 3), ("8", 4)]
    assert first[1].get(112) == "t1"
    session.on_frame(frame("2", [(7, 1), (16, 0)], seq=5), time.monotonic())
    again = transport.take()
    assert [(s.msg_type, s.seq, s.get(36)) for s in again] == [("4", 1, "3"), ("8", 3, None), ("8", 4, None)]
    assert again[0].get(123) == "Y" and again[0].get(43) == "Y"
    assert again[1].get(43) == "Y" and again[1].get(122) == first[2].get(52) and again[1].get(11) == "a"
    assert stores[PAIR].next_out == 5  # nothing new was numbered


def test_sequence_reset_moves_the_expected_number_but_never_back(stores):
    session, transport, app = connect(stores)
    transport.take()
    session.on_frame(frame("4", [(36, 20)], seq=99), time.monotonic())  # reset mode: its own number does not matter
    assert stores[PAIR].next_in == 20
    session.on_frame(frame("4", [(36, 5)], seq=20), time.monotonic())
    [reject] = transport.take()
    assert (reject.msg_type, reject.get(373), reject.get(371)) == ("3", "5", "36")
    assert stores[PAIR].next_in == 20


def test_malformed_messages_get_a_reject_with_the_reason_and_use_up_their_number(stores):
    session, transport, app = connect(stores)
    transport.take()
    session.on_frame(frame("D", [(11, "a"), (38, "ten")], seq=2), time.monotonic())
    session.on_frame(frame("D", [(55, "ACME")], seq=3), time.monotonic())
    session.on_frame(frame("ZZ", [], seq=4), time.monotonic())
    rejects = transport.take()
    assert [(r.get(45), r.get(373), r.get(371), r.get(372)) for r in rejects] == [
        ("2", "6", "38", "D"), ("3", "1", "11", "D"), ("4", "11", "35", "ZZ")]
    assert "'ten' is not a valid decimal number" in rejects[0].get(58)
    assert stores[PAIR].next_in == 5 and session.state is State.ACTIVE


def test_a_wrong_comp_id_is_rejected_and_logged_out(stores):
    session, transport, app = connect(stores)
    transport.take()
    session.on_frame(frame("0", [], seq=2, target="OTHER"), time.monotonic())
    reject, logout = transport.take()
    assert reject.get(373) == "9" and logout.msg_type == "5" and session.state is State.LOGOUT_SENT
    session.on_frame(frame("5", [], seq=3), time.monotonic())
    assert transport.closed == "logged out"


def test_heartbeats_test_requests_and_a_silent_peer(stores):
    session, transport, app = connect(stores, logon=[(98, 0), (108, 1), (553, "alice"), (554, "k")])
    transport.take()
    start = time.monotonic()
    session.last_sent = session.last_received = start
    session.on_tick(start + 1.0)
    assert [s.msg_type for s in transport.take()] == ["0"]
    session.on_tick(start + 1.8)
    [test] = transport.take()
    assert test.msg_type == "1" and test.get(112) == "TEST-1"
    session.on_tick(start + 3.0)
    sent = transport.take()
    assert sent[0].msg_type == "5" and "no answer to TestRequest TEST-1" in sent[0].get(58)
    assert transport.closed and app.logouts == 1


def test_a_test_request_is_answered_and_any_message_counts_as_alive(stores):
    session, transport, app = connect(stores, logon=[(98, 0), (108, 1), (553, "alice"), (554, "k")])
    transport.take()
    now = time.monotonic()
    session.last_sent = now
    session.on_frame(frame("0", [], seq=2), now + 1.5)
    session.on_tick(now + 1.6)
    assert [s.msg_type for s in transport.take()] == ["0"]  # our heartbeat, no TestRequest


def test_no_logon_within_the_timeout_closes_the_connection(stores):
    transport = Transport()
    session = FixSession(Sessions(CONFIG, stores), transport, App(), "peer", time.monotonic())
    session.on_tick(time.monotonic() + 0.5)
    assert transport.closed is None
    session.on_tick(time.monotonic() + 1.5)
    assert transport.closed == "no Logon in time" and not transport.frames


def test_logout_from_the_peer_is_answered(stores):
    session, transport, app = connect(stores)
    transport.take()
    session.on_frame(frame("5", [(58, "bye")], seq=2), time.monotonic())
    [logout] = transport.take()
    assert logout.msg_type == "5" and transport.closed and app.logouts == 1


def test_numbers_and_sent_messages_survive_a_restart(tmp_path):
    directory = tmp_path / "s"
    store = SequenceStore(directory)
    for seq in range(1, 4):
        store.sent(seq, frame("0", [], seq=seq))
    store.received(7)
    store.set_last_report(42)
    store.add_order_record(["N", 1, "o1", "ACME", 0, 0, 0, 10, 100])
    store.flush()
    store.close()
    again = SequenceStore(directory)
    assert (again.next_out, again.next_in, again.last_report) == (4, 8, 42)
    assert [seq for seq, _ in again.stored(1, 10)] == [1, 2, 3]
    assert again.order_records == [["N", 1, "o1", "ACME", 0, 0, 0, 10, 100]]
    again.sent(4, frame("0", [], seq=4))
    again.reset()
    assert (again.next_out, again.next_in, again.stored(1, 10)) == (1, 1, [])
    again.close()


def test_a_write_that_fails_midway_is_cut_back_and_the_store_writes_nothing_more(tmp_path, monkeypatch):
    """A full disk: the messages' write stops after part of the turn's frames. What it wrote is cut
    back off, `StoreUnwritable` says why, every later flush (the gateway's close) is refused without
    touching the files, and the store loads as it was before that turn."""
    directory = tmp_path / "s"
    store = SequenceStore(directory)
    store.sent(1, frame("0", [], seq=1))
    store.flush()
    before = {name: (directory / name).read_bytes() for name in ("state", "messages", "orders")}
    store.sent(2, frame("0", [], seq=2))
    store.sent(3, frame("0", [], seq=3))
    store.add_order_record(["A", 1, 77])
    real_write, calls = os.write, []

    def full_after_ten_bytes(fd, data):
        calls.append(fd)
        if len(calls) == 1:
            return real_write(fd, bytes(data[:10]))
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "write", full_after_ten_bytes)
    with pytest.raises(StoreUnwritable, match=f"cannot write the session store {directory}: No space left on device"):
        store.flush()
    with pytest.raises(StoreUnwritable):
        store.flush()
    assert len(calls) == 2, "the second flush wrote nothing"
    monkeypatch.undo()
    store.close()
    assert {name: (directory / name).read_bytes() for name in before} == before
    again = SequenceStore(directory)
    assert (again.next_out, [seq for seq, _ in again.stored(1, 10)]) == (2, [1])
    again.close()


def test_a_compaction_that_cannot_be_written_leaves_the_records_and_the_store_writes_nothing_more(tmp_path,
                                                                                                  monkeypatch):
    directory = tmp_path / "s"
    store = SequenceStore(directory)
    store.add_order_record(["N", 1, "o1", "ACME", 1, 2, 3, 10, 100])
    store.flush()
    before = (directory / "orders").read_bytes()

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(StoreUnwritable, match="No space left on device"):
        store.rewrite_orders([])
    monkeypatch.undo()
    assert sorted(path.name for path in directory.iterdir()) == ["messages", "orders", "state"]
    assert (directory / "orders").read_bytes() == before
    with pytest.raises(StoreUnwritable):
        store.flush()
    store.close()


def test_order_records_are_written_as_one_array_per_flush_and_a_torn_last_array_is_cut(tmp_path):
    directory = tmp_path / "s"
    store = SequenceStore(directory)
    records = [["N", 1, "o1", "ACME", 1, 2, 3, 10, 100], ["A", 1, 77], ["D", 1, "4"]]
    store.add_order_record(records[0])
    store.add_order_record(records[1])
    store.flush()
    store.add_order_record(records[2])
    store.flush()
    store.close()
    data = (directory / "orders").read_bytes()
    first = 4 + int.from_bytes(data[:4], "little")
    assert msgspec.msgpack.decode(data[4:first]) == records[:2] and len(data) > first  # two arrays, two flushes
    with open(directory / "orders", "ab") as file:
        file.write(b"\x20\x00\x00\x00\x91\x93")  # a third, torn by a crash mid-write
    again = SequenceStore(directory)
    assert again.order_records == records
    assert (directory / "orders").read_bytes() == data
    again.close()


def test_order_records_of_a_store_written_one_record_at_a_time_are_read(tmp_path):
    directory = tmp_path / "s"
    directory.mkdir()
    records = [["N", 1, "o1", "ACME", 1, 2, 3, 10, 100], ["A", 1, 77]]
    encoded = [msgspec.msgpack.encode(record) for record in records]
    (directory / "orders").write_bytes(b"".join(len(data).to_bytes(4, "little") + data for data in encoded))
    store = SequenceStore(directory)
    assert store.order_records == records
    store.close()


def test_a_torn_last_message_is_cut_and_the_numbers_follow_the_messages(tmp_path):
    directory = tmp_path / "s"
    store = SequenceStore(directory)
    for seq in range(1, 4):
        store.sent(seq, frame("0", [], seq=seq))
    store.flush()
    store.close()
    with open(directory / "messages", "ab") as file:
        file.write(b"\x40\x00\x00\x00\x04\x00\x00\x00\x00\x00\x00\x00partial")
    again = SequenceStore(directory)
    assert [seq for seq, _ in again.stored(1, 10)] == [1, 2, 3] and again.next_out == 4
    again.close()


def test_a_damaged_state_slot_falls_back_to_the_other_and_both_damaged_refuse(tmp_path):
    directory = tmp_path / "s"
    store = SequenceStore(directory)
    store.received(1)
    store.flush()
    store.received(2)
    store.flush()  # two generations: slots 1 and 0
    store.close()
    with open(directory / "state", "r+b") as file:
        file.seek(0)
        file.write(b"\xff" * 8)
    again = SequenceStore(directory)
    assert again.next_in == 2  # the older slot
    again.close()
    with open(directory / "state", "r+b") as file:
        file.write(b"\xff" * (2 * SLOT.size))
    with pytest.raises(StoreDamaged, match="is damaged"):
        SequenceStore(directory)
    os.remove(directory / "state")
