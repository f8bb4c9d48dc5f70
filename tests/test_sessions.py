"""Sessions of the trading engine server (`servers.sessions`): logon checks, liveness, cancel-on-disconnect."""

import pytest

from servers import sessions as sessions_module
from servers.auth import hash_api_key
from servers.protocol import EndReason
from servers.sessions import Authenticator, ClientOrderIds, Session, Sessions, cancels_orders

HASHES = {"alice": hash_api_key("alice-key", iterations=1_000), "bob": hash_api_key("bob-key", iterations=1_000)}


@pytest.fixture
def pbkdf2_calls(monkeypatch):
    """Counts the real (slow) key verifications."""
    calls = []
    real = sessions_module.verify_api_key

    def counting(api_key, stored):
        calls.append(api_key)
        return real(api_key, stored)

    monkeypatch.setattr(sessions_module, "verify_api_key", counting)
    return calls


def test_right_key_is_accepted_and_remembered(pbkdf2_calls):
    auth = Authenticator(HASHES)
    assert auth.known("alice", "alice-key") is None
    assert auth.verify("alice", "alice-key") is True
    assert auth.known("alice", "alice-key") is True
    assert auth.verify("alice", "alice-key") is True
    assert pbkdf2_calls == ["alice-key"]


def test_wrong_key_is_refused_and_remembered(pbkdf2_calls):
    auth = Authenticator(HASHES)
    assert auth.verify("alice", "bob-key") is False
    assert auth.known("alice", "bob-key") is False
    assert auth.verify("alice", "bob-key") is False
    assert pbkdf2_calls == ["bob-key"]


def test_a_remembered_good_key_does_not_admit_another_key(pbkdf2_calls):
    auth = Authenticator(HASHES)
    auth.verify("alice", "alice-key")
    assert auth.known("alice", "alice-key ") is None
    assert auth.verify("alice", "alice-key ") is False
    assert auth.known("bob", "alice-key") is None


def test_unknown_trader_is_refused_without_pbkdf2(pbkdf2_calls):
    auth = Authenticator(HASHES)
    assert auth.known("mallory", "x") is False
    assert auth.verify("mallory", "x") is False
    assert pbkdf2_calls == []


def test_verification_on_the_worker_thread():
    auth = Authenticator(HASHES)
    try:
        assert auth.verify_later("bob", "bob-key").result(10) is True
        assert auth.verify_later("bob", "nope").result(10) is False
    finally:
        auth.close()


def make_sessions():
    return Sessions(Authenticator(HASHES), heartbeat_s=1.0, timeout_s=5.0)


def test_logon_known_at_once_or_answered_later():
    sessions = make_sessions()
    try:
        assert sessions.check(b"c1", "mallory", "x", False) is False
        assert not sessions.busy(b"c1")
        assert sessions.check(b"c1", "alice", "alice-key", True) is None
        assert sessions.busy(b"c1")
        sessions.pending[b"c1"].answer.result(10)
        [(logon, verdict)] = sessions.finished()
        assert (logon.identity, logon.trader_id, logon.cancel_on_disconnect, verdict) == (b"c1", "alice", True, True)
        assert not sessions.pending and sessions.finished() == []
        # the reconnect is answered at once
        assert sessions.check(b"c2", "alice", "alice-key", False) is True
    finally:
        sessions.authenticator.close()


def test_open_registers_by_identity_and_trader():
    sessions = make_sessions()
    session, previous = sessions.open(b"c1", "alice", False, now=10.0)
    assert previous is None
    assert sessions.get(b"c1") is session and sessions.of_trader("alice") is session
    assert sessions.busy(b"c1")


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
        (False, EndReason.TIMEOUT, False),
        (False, EndReason.LOGOUT, False),
    ],
)
def test_cancel_on_disconnect_decision(cancel_on_disconnect, why, cancels):
    assert cancels_orders(Session(b"c", "alice", cancel_on_disconnect, 0.0), why) is cancels


def test_client_order_ids_refuse_duplicates_in_any_order():
    ids = ClientOrderIds()
    assert [ids.add(i) for i in (1, 2, 5, 3, 2, 5, 4, 0, 0, -7, 6)] == [
        True, True, True, True, False, False, True, True, False, True, True]
    assert (ids.contiguous, ids.others, len(ids)) == (6, {0, -7}, 8)


def test_client_order_ids_in_sequence_take_constant_memory():
    ids = ClientOrderIds()
    assert all(ids.add(i) for i in range(1, 100_001))
    assert (ids.contiguous, ids.others) == (100_000, set())
    assert not ids.add(50_000)
