"""Sessions of the trading engine server (`servers.sessions`): takeover, liveness, cancel-on-disconnect.

The logon checks in front of them (`servers.logons`) are tested in test_logons.py.
"""

import pytest

from engine.types import RejectReason
from servers.protocol import EndReason
from servers.sessions import ClientOrderIds, Session, Sessions, cancels_orders


def make_sessions():
    return Sessions(heartbeat_s=1.0, timeout_s=5.0)


def test_open_registers_by_identity_and_trader():
    sessions = make_sessions()
    session, previous = sessions.open(b"c1", "alice", False, now=10.0)
    assert previous is None
    assert sessions.get(b"c1") is session and sessions.of_trader("alice") is session


def test_second_logon_of_a_trader_takes_over():
    sessions = make_sessions()
    first, _ = sessions.open(b"c1", "alice", True, now=0.0)
    second, previous = sessions.open(b"c2", "alice", False, now=1.0)
    assert previous is first
    assert sessions.get(b"c1") is None and sessions.get(b"c2") is second
    assert sessions.of_trader("alice") is second


def test_end_removes_the_session():
    sessions = make_sessions()
    session, _ = sessions.open(b"c1", "alice", False, now=0.0)
    sessions.end(session)
    assert sessions.get(b"c1") is None and sessions.of_trader("alice") is None
    sessions.end(session)  # ending twice is harmless


def test_heartbeat_is_owed_after_heartbeat_interval_of_silence_from_the_server():
    sessions = make_sessions()
    session, _ = sessions.open(b"c1", "alice", False, now=0.0)
    assert sessions.idle(0.999) == []
    assert sessions.idle(1.0) == [session]
    session.last_out = 1.0
    assert sessions.idle(1.5) == []


def test_session_expires_after_timeout_of_silence_from_the_client():
    sessions = make_sessions()
    session, _ = sessions.open(b"c1", "alice", False, now=0.0)
    other, _ = sessions.open(b"c2", "bob", False, now=0.0)
    other.last_in = 3.0
    assert sessions.expired(4.999) == []
    assert sessions.expired(5.0) == [session]


@pytest.mark.parametrize(
    "cancel_on_disconnect, why, cancels",
    [
        (True, EndReason.TIMEOUT, True),
        (True, EndReason.LOGOUT, True),
        (True, EndReason.REPLACED, False),
        (True, EndReason.SHUTDOWN, False),
        (True, EndReason.SLOW_CONSUMER, True),
        (False, EndReason.TIMEOUT, False),
        (False, EndReason.LOGOUT, False),
    ],
)
def test_cancel_on_disconnect_decision(cancel_on_disconnect, why, cancels):
    assert cancels_orders(Session(b"c", "alice", cancel_on_disconnect, 0.0), why) is cancels


def use_each(ids, *client_order_ids):
    """Check each id and use it if allowed, as the TES does; the refusals (None: used)."""
    answers = []
    for client_order_id in client_order_ids:
        answer = ids.check(client_order_id)
        if answer is None:
            ids.use(client_order_id)
        answers.append(answer)
    return answers


def test_client_order_ids_refuse_duplicates_in_any_order():
    ids, used = ClientOrderIds(), RejectReason.DUPLICATE_CLIENT_ORDER_ID
    assert use_each(ids, 1, 2, 5, 3, 2, 5, 4, 9, 9, 6) == [None, None, None, None, used, used, None, None, used, None]
    assert (ids.contiguous, ids.others, len(ids), ids.next()) == (6, {9}, 7, 10)


def test_client_order_ids_in_sequence_take_constant_memory():
    ids = ClientOrderIds()
    assert use_each(ids, *range(1, 100_001)) == [None] * 100_000
    assert (ids.contiguous, ids.others, ids.next()) == (100_000, set(), 100_001)
    assert ids.check(50_000) is RejectReason.DUPLICATE_CLIENT_ORDER_ID


def test_using_an_id_twice_changes_nothing():
    ids = ClientOrderIds()
    use_each(ids, 1, 7)
    ids.use(1)
    ids.use(7)
    assert (ids.contiguous, ids.others) == (1, {7})


def test_out_of_order_client_order_ids_are_bounded_in_order_ones_still_pass():
    ids = ClientOrderIds()
    sparse = range(10, 10 * (ClientOrderIds.MAX_OUT_OF_ORDER + 1), 10)
    assert all(answer is None for answer in use_each(ids, *sparse))
    assert len(ids.others) == ClientOrderIds.MAX_OUT_OF_ORDER
    assert ids.check(5) is RejectReason.CLIENT_ORDER_IDS_OUT_OF_ORDER
    assert ids.check(20) is RejectReason.DUPLICATE_CLIENT_ORDER_ID
    assert use_each(ids, *range(1, 10)) == [None] * 9, "in order: the counter passes 10 and absorbs it"
    assert (ids.contiguous, len(ids.others)) == (10, ClientOrderIds.MAX_OUT_OF_ORDER - 1)
    assert ids.check(5) is RejectReason.DUPLICATE_CLIENT_ORDER_ID


def test_a_request_notes_the_id_an_order_could_use_and_nothing_else():
    ids = ClientOrderIds()
    use_each(ids, 1, 3)
    ids.note(2)
    assert (ids.contiguous, ids.others) == (3, set()), "the gap a cancel's id left is closed"
    ids.note(2)
    ids.note(9)
    assert (ids.contiguous, ids.others) == (3, {9})
    ids.others = set(range(100, 100 + ClientOrderIds.MAX_OUT_OF_ORDER))
    ids.note(50)
    assert 50 not in ids.others, "beyond the bound, a request's id is not kept"
