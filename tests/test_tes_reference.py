"""The running TES and the database (`servers.database_link`): reference data changed with
``python main.py admin`` applies without a restart, sessions are recorded, and a TES that
cannot reach the database starts from its copy of the last reference data it loaded.
Also: several TES processes on one book server agree on last prices (the marks feed).
"""

import re
import subprocess
import sys
import time

import pytest
import zmq
from procs import REPO, Role, endpoint, free_port
from test_tes import BUY, GTC, IOC, SELL, Client, Exchange, R

from database import sessions as session_records
from database.store import open_store, transaction
from servers import protocol as p

POLL_MS = "100"


def admin(exchange, *argv, stdin=""):
    """Run ``python main.py admin ...`` against the exchange's database; its one output line."""
    done = subprocess.run([sys.executable, "main.py", "admin", *argv], cwd=REPO, env=exchange.env, input=stdin,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def eventually(check, timeout=5.0):
    """Wait until ``check()`` is true."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "the TES did not pick up the change"
        time.sleep(0.05)


@pytest.fixture
def exchange(tmp_path):
    """An exchange polling its reference data every `POLL_MS`; sessions last a minute without a
    message, since its clients do not heartbeat while an `admin` process starts and runs (seconds,
    on a busy machine)."""
    exchange = Exchange(tmp_path, EXCHANGE__TES__REFERENCE_POLL_MS=POLL_MS, EXCHANGE__TES__SESSION_TIMEOUT_MS="60000")
    yield exchange
    exchange.close()


def test_an_instrument_changed_by_admin_applies_to_the_next_order_without_a_restart(exchange):
    alice = exchange.client("alice")
    alice.send(p.QueryInstruments(1))
    (acme,) = [i for i in alice.one().instruments if i.symbol == "ACME"]
    assert acme.tick_size == 1
    alice.accepted("ACME", BUY, 9_995, 3)
    assert admin(exchange, "instrument", "set", "ACME", "--tick-size", "10").endswith("(reference version 2)")
    exchange.tes.wait_for("trading on reference data version 2", 5)
    alice.send(p.QueryInstruments(2))
    assert [i.tick_size for i in alice.one().instruments if i.symbol == "ACME"] == [10]
    assert alice.rejected("ACME", BUY, 9_995, 3) is R.PRICE_OFF_TICK
    alice.accepted("ACME", BUY, 9_990, 3)
    assert exchange.tes.stop() == 0


def test_limits_changed_by_admin_apply_to_the_next_order(exchange):
    alice = exchange.client("alice")
    alice.accepted("ACME", BUY, 9_000, 50)
    admin(exchange, "trader", "set", "alice", "--max-order-quantity", "20")
    exchange.tes.wait_for("trading on reference data version 2", 5)
    assert alice.rejected("ACME", BUY, 9_000, 50) is R.ORDER_QUANTITY_LIMIT
    alice.accepted("ACME", BUY, 9_000, 20)


def test_a_revoked_key_ends_the_session_and_a_rotated_key_logs_on(exchange):
    alice = exchange.client("alice")
    rotated = admin(exchange, "key", "rotate", "alice")
    new_key = rotated.split(": ")[1].split(" ")[0]
    # The rotation revoked the demo key: it no longer logs on, the new key does; the session
    # logged on before is left alone (the trader still has an active key).
    exchange.tes.wait_for("trading on reference data version 2", 5)
    alice.accepted("ACME", BUY, 9_000, 1)
    assert _logon(exchange, "alice", "alice-demo-key") == R.BAD_CREDENTIALS
    assert _logon(exchange, "alice", new_key) is None

    (listed,) = [line for line in admin(exchange, "key", "list", "bob").splitlines() if " active" in line]
    bob = exchange.client("bob")
    admin(exchange, "key", "revoke", listed.split()[0])
    exchange.tes.wait_for("trading on reference data version 3", 5)
    ended = bob.one(5.0)
    assert ended == p.LoggedOut(p.EndReason.ACCESS_REVOKED, p.EndReason.ACCESS_REVOKED.text)
    assert _logon(exchange, "bob", "bob-demo-key") == R.BAD_CREDENTIALS


def _logon(exchange, trader, key):
    """Log on with ``key`` on a new connection; None if accepted (then logged out), else the reason."""
    client = Client(exchange.context, endpoint(exchange.env, "TES__CLIENT_ENDPOINT"))
    try:
        client.send(p.Logon(trader, key, False))
        reply = client.one(10.0)
        if isinstance(reply, p.LogonAccepted):
            client.send(p.Logout())
            client.one()
            return None
        assert isinstance(reply, p.LogonRejected), reply
        return reply.reason
    finally:
        client.socket.close()


def test_sessions_are_recorded_with_how_they_ended(exchange):
    started = time.time_ns()
    alice = exchange.client("alice")
    alice.send(p.Logout())
    assert isinstance(alice.one(), p.LoggedOut)
    first, second = exchange.client("bob"), exchange.client("bob")  # the second replaces the first
    assert first.one().reason is p.EndReason.REPLACED
    second.socket.close()
    assert exchange.tes.stop() == 0

    engine = open_store(exchange.env["EXCHANGE__DATABASE__URL"])
    with transaction(engine, write=False) as connection:
        alice_sessions = session_records.sessions(connection, "alice", started, time.time_ns())
        bob_sessions = session_records.sessions(connection, "bob", started, time.time_ns())
    engine.dispose()
    assert [s.end_reason for s in alice_sessions] == [p.EndReason.LOGOUT]
    assert [s.end_reason for s in bob_sessions] == [p.EndReason.REPLACED, p.EndReason.SHUTDOWN]
    assert all(started < s.logon_time <= s.logout_time for s in alice_sessions + bob_sessions)


def test_a_tes_that_cannot_reach_the_database_starts_from_its_copy_of_the_reference_data(tmp_path):
    exchange = Exchange(tmp_path, EXCHANGE__TES__REFERENCE_POLL_MS=POLL_MS)
    try:
        admin(exchange, "key", "rotate", "alice")
        exchange.tes.wait_for("trading on reference data version 2", 5)
        assert exchange.tes.stop() == 0
        exchange.env["EXCHANGE__DATABASE__URL"] = f"postgresql://postgres@127.0.0.1:{free_port()}/test"
        exchange.start_tes()
        exchange.tes.wait_for("starting from reference data version 2 as last loaded", 10)
        assert _logon(exchange, "alice", "alice-demo-key") == R.BAD_CREDENTIALS, "the revocation held"
        assert _logon(exchange, "bob", "bob-demo-key") is None
        assert exchange.tes.stop() == 0
    finally:
        exchange.close()


def test_a_damaged_copy_with_the_database_down_stops_the_tes_with_one_line(tmp_path):
    exchange = Exchange(tmp_path)
    try:
        assert exchange.tes.stop() == 0
        copy = tmp_path / "tes" / "reference.msgpack"
        copy.write_bytes(copy.read_bytes()[:-7])
        exchange.env["EXCHANGE__DATABASE__URL"] = f"postgresql://postgres@127.0.0.1:{free_port()}/test"
        with pytest.raises(AssertionError, match="exited 1") as refused:
            Role(["-s", "TES"], exchange.env)
        output = str(refused.value)
        assert re.search(r"TES cannot start: the database \S+ is unavailable: connection failed: .*; and the copy "
                         rf"of the reference data in {re.escape(str(copy))} cannot be read \(Input data was "
                         r"truncated\): restore the database, or remove the copy", output), output
        assert "Traceback" not in output
    finally:
        exchange.close()


def test_several_tes_processes_agree_on_the_last_price(tmp_path):
    """A trade between two clients of TES 2 (flow1, flow2) moves the price band TES 1 applies."""
    exchange = Exchange(tmp_path, EXCHANGE__SECURITY__KEYS_DIR="")
    second = None
    try:
        second, env = exchange.start_second_tes(tmp_path)
        context = zmq.Context.instance()
        alice = exchange.client("alice")
        flow1, flow2 = (Client(context, env["EXCHANGE__TES__CLIENT_ENDPOINT"]) for _ in range(2))
        flow1.logon("flow1")
        flow2.logon("flow2")
        assert alice.rejected("ACME", SELL, 11_500, 1) is R.PRICE_OUTSIDE_BAND  # reference 10,000 +- 10%
        flow1.accepted("ACME", SELL, 11_000, 1, GTC)
        flow2.order("ACME", BUY, 11_000, 1, IOC)
        assert [type(m) for m in flow2.read(2)] == [p.OrderAccepted, p.OrderFilled]
        eventually(lambda: _accepted_or_rejected(alice, "ACME", SELL, 12_000, 1))  # the band now centres on 11,000
        flow1.socket.close()
        flow2.socket.close()
        assert second.stop() == 0
    finally:
        if second is not None and second.process.poll() is None:
            second.kill()
        exchange.close()


def _accepted_or_rejected(client, *order):
    client.order(*order)
    reply = client.one()
    assert isinstance(reply, p.OrderAccepted | p.OrderRejected), reply
    if isinstance(reply, p.OrderRejected):
        assert reply.reason is R.PRICE_OUTSIDE_BAND
    return isinstance(reply, p.OrderAccepted)
