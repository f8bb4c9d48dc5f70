"""The connections a public port holds at most (`servers.gate`).

The gate's own tests run it on real ROUTERs over TCP with DEALERs as the clients; the end-to-end
ones fill a book server's market data port and the TES's client port, and flood a book server
that has few descriptors to spare with connections that would finish their handshake and then
stay silent: before the gate, they took every descriptor it had (a restarted TES could not
connect, and no snapshot or status file could be written)."""

import json
import os
import resource
import signal
import subprocess
import sys
import time

import pytest
import zmq
from procs import REPO, Role, endpoint, eventually
from test_connection_flood import descriptors
from test_obs import OBS, SUBSCRIPTIONS, T1, T2, Subscriber, Tes, open_env
from test_tes import BUY, SELL, Exchange

from clients.client import ExchangeClient, LogonError
from clients.watch import Link
from engine.types import Side
from servers import protocol as p
from servers.gate import Gate
from servers.status import STATUS_FILE


@pytest.fixture
def context():
    context = zmq.Context()
    yield context
    context.destroy(linger=0)


@pytest.fixture
def client_context():
    """A second context, for the clients of a port the test's ``context`` serves (a context's sockets
    are gated together: `servers.gate`), destroyed however the test ends."""
    context = zmq.Context()
    yield context
    context.destroy(linger=0)


def dealer(context, address, identity=None, reconnect_ms=50):
    socket = context.socket(zmq.DEALER)
    socket.setsockopt(zmq.LINGER, 0)
    socket.setsockopt(zmq.RECONNECT_IVL, reconnect_ms)
    if identity is not None:
        socket.setsockopt(zmq.IDENTITY, identity)
    socket.connect(address)
    return socket


def heard(router, timeout_ms=1000):
    """The identities of the DEALERs whose message the ROUTER received within ``timeout_ms``."""
    found, deadline = set(), time.monotonic() + timeout_ms / 1000
    while (left := deadline - time.monotonic()) > 0 and router.poll(int(left * 1000) + 1):
        identity, _ = router.recv_multipart()
        found.add(identity)
    return found


class Port:
    """A ROUTER bound on loopback behind a gate of ``capacity`` (pinging its peers every
    ``heartbeat_ms``), and a second ROUTER in the same context that is not gated."""

    def __init__(self, context, capacity, heartbeat_ms=10_000):
        self.gate = Gate(context, "test")
        self.router = context.socket(zmq.ROUTER)
        self.router.setsockopt(zmq.LINGER, 0)
        self.free = context.socket(zmq.ROUTER)
        self.free.setsockopt(zmq.LINGER, 0)
        self.gate.add(self.router, "public", capacity, heartbeat_ms)
        self.gate.start()
        self.router.bind("tcp://127.0.0.1:*")
        self.free.bind("tcp://127.0.0.1:*")
        self.address = self.router.getsockopt_string(zmq.LAST_ENDPOINT)
        self.free_address = self.free.getsockopt_string(zmq.LAST_ENDPOINT)

    def close(self):
        self.router.close(linger=0)
        self.free.close(linger=0)
        self.gate.stop()


def test_a_port_admits_its_capacity_and_one_more_once_a_place_is_free(context, client_context):
    port = Port(context, capacity=2)
    clients = []
    try:
        for name in (b"a", b"b"):
            clients.append(dealer(client_context, port.address, name))
            clients[-1].send(b"hello")
        assert heard(port.router) == {b"a", b"b"}
        third = dealer(client_context, port.address, b"c")
        clients.append(third)
        third.send(b"hello")
        assert heard(port.router, 500) == set(), "the third is shut down before its handshake: nothing of it arrives"
        assert port.gate.figures()["public"]["refused"] >= 2, "and it keeps asking (ZeroMQ connects again)"
        assert port.gate.figures()["public"]["connections"] in (2, 3), "the two, and the third while it is shut"
        assert heard(port.free, 0) == set()
        others = [dealer(client_context, port.free_address, bytes([65 + n])) for n in range(5)]
        for other in others:
            other.send(b"hello")
        assert len(heard(port.free)) == 5, "a socket of the same context that is not gated admits any number"
        clients[0].close(linger=0)
        assert heard(port.router, 3000) == {b"c"}, "the message it held arrives once it is admitted"
        eventually(lambda: port.gate.figures()["public"]["connections"] == 2, "the count follows", 5)
    finally:
        port.close()


def test_connections_that_go_or_are_refused_leave_the_count_as_it_was(context, client_context):
    port = Port(context, capacity=3)
    try:
        for _ in range(5):
            burst = [dealer(client_context, port.address) for _ in range(8)]
            for socket in burst:
                socket.send(b"hello")
            assert len(heard(port.router, 300)) <= 3
            for socket in burst:
                socket.close(linger=0)
        eventually(lambda: port.gate.figures()["public"]["connections"] == 0, "every connection counted out", 5)
        kept = [dealer(client_context, port.address, bytes([97 + n])) for n in range(3)]
        for socket in kept:
            socket.send(b"hello")
        assert heard(port.router, 3000) == {b"a", b"b", b"c"}, "the places are all free again"
    finally:
        port.close()


def test_a_logon_kept_out_by_a_full_port_says_why(context):
    """The client library's logon, unanswered because the port is full, names the cause it can see:
    each connection closed before its handshake (`clients.watch`)."""
    port = Port(context, capacity=1)
    try:
        holder = dealer(context, port.address, b"holder")
        holder.send(b"hello")
        assert heard(port.router) == {b"holder"}
        client = ExchangeClient(port.address, "alice", "key", context=context)
        with pytest.raises(LogonError) as refused:
            client.logon(timeout=1.0)
        assert refused.value.link is Link.CLOSED and refused.value.reason is None
        text = str(refused.value)
        assert text.startswith(f"no answer to the logon from {port.address} within 1.0s: it closed each of the ")
        assert text.endswith(" connections made before the handshake: it holds its most connections "
                             "(max_connections); the client goes on trying")
        assert port.gate.figures()["public"]["refused"] >= 2
        client.close(logout_timeout=0.1)
    finally:
        port.close()


HOLD = """
import sys, time, zmq
socket = zmq.Context.instance().socket(zmq.DEALER)
socket.setsockopt(zmq.IDENTITY, b"stopped")
socket.connect(sys.argv[1])
socket.send(b"hello")
print("sent", flush=True)
time.sleep(600)
"""
"""A client in a process of its own that holds a connection to the address it is given."""


def test_a_connection_whose_peer_stopped_answering_is_closed_and_frees_its_place(context, client_context):
    """Its process stopped (SIGSTOP), a peer answers no heartbeat, as one whose machine is gone: the
    port closes its connection after `servers.security.PEER_MISSES` of them, and the client kept out gets in."""
    port = Port(context, capacity=1, heartbeat_ms=200)
    holder = subprocess.Popen([sys.executable, "-c", HOLD, port.address], stdout=subprocess.PIPE)
    try:
        assert holder.stdout.readline() == b"sent\n"
        assert heard(port.router) == {b"stopped"}
        waiting = dealer(client_context, port.address, b"waiting")
        waiting.send(b"hello")
        assert heard(port.router, 1000) == set(), "the port is full while its one peer answers"
        holder.send_signal(signal.SIGSTOP)
        stopped = time.monotonic()
        assert heard(port.router, 10_000) == {b"waiting"}, "its place freed once the stopped peer's is closed"
        assert time.monotonic() - stopped >= 0.2, "not before a heartbeat went unanswered"
        eventually(lambda: port.gate.figures()["public"]["connections"] == 1, "the count follows", 5)
    finally:
        holder.kill()
        holder.wait()
        port.close()


def test_a_socket_is_gated_only_before_the_gate_starts(context):
    gate = Gate(context, "test")
    socket = context.socket(zmq.ROUTER)
    try:
        gate.add(socket, "public", 1, 10_000)
        with pytest.raises(ValueError, match="twice"):
            gate.add(socket, "public", 1, 10_000)
        gate.start()
        with pytest.raises(ValueError, match="after the start"):
            gate.add(context.socket(zmq.ROUTER), "other", 1, 10_000)
    finally:
        socket.close(linger=0)
        gate.stop()


# ================================================================ the servers


def status_of(directory):
    try:
        with open(os.path.join(directory, STATUS_FILE)) as file:
            return json.load(file)
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def test_a_full_market_data_port_refuses_a_subscriber_until_a_connection_goes(tmp_path, context):
    env = open_env(tmp_path, EXCHANGE__SHARDS__0__MAX_CONNECTIONS="3")
    directory = env["EXCHANGE__SHARDS__0__JOURNAL_DIR"]
    with Role(OBS, env) as obs:
        tes = Tes(context, env, tes_id=1)
        idle = [dealer(context, endpoint(env, "SHARDS__0__MARKET_DATA_ENDPOINT")) for _ in range(3)]
        for socket in idle:  # connections that never subscribe: each holds a place
            socket.send(b"\xc1")
            assert socket.poll(5000), "answered MALFORMED_MESSAGE: the connection is in"
            socket.recv_multipart()
        watcher = Subscriber.__new__(Subscriber)
        watcher.socket = dealer(context, endpoint(env, "SHARDS__0__MARKET_DATA_ENDPOINT"))
        watcher.socket.send(SUBSCRIPTIONS.encode([p.Subscribe("ACME")]))
        assert not watcher.socket.poll(500), "refused at the handshake: its request waits in its own queue"
        eventually(lambda: status_of(directory).get("connections", {}).get("market data", {}).get("refused", 0) >= 1,
                   "the refusal counted in the status file")
        assert status_of(directory)["connections"]["market data"]["connections"] <= 4, "the 3, and one refused"
        idle.pop().close(linger=0)
        assert watcher.control() == [p.Subscribed("ACME")], "admitted once a place is free (ZeroMQ asks again)"
        tes.send(p.BookSubmit("ACME", T1 | 1, Side.SELL, 0, 0, 101, 5),
                 p.BookSubmit("ACME", T2 | 1, Side.BUY, 0, 0, 101, 2))
        tes.receive(2)
        assert [m.quantity for m in watcher.read() if type(m) is p.Trade] == [2], "and served"
        assert "refused a connection to the market data port of OBS A: it holds 3, its most" in obs.output()
        for socket in idle:
            socket.close(linger=0)
        assert obs.stop() == 0


def test_a_full_client_port_refuses_a_client_until_a_session_ends(tmp_path):
    exchange = Exchange(tmp_path, EXCHANGE__TES__MAX_CONNECTIONS="2", EXCHANGE__TES__SESSION_TIMEOUT_MS="60000")
    try:
        alice = exchange.client("alice")
        bob = exchange.client("bob")
        third = exchange.client()
        third.socket.setsockopt(zmq.RECONNECT_IVL, 50)
        third.send(p.Logon("demo1", "demo1-demo-key", False))
        assert third.frame(1.0) == [], "refused at the handshake: its logon waits in its own queue"
        directory = exchange.env["EXCHANGE__TES__JOURNAL_DIR"]
        eventually(lambda: status_of(directory).get("connections", {}).get("client", {}).get("refused", 0) >= 1,
                   "the refusal counted in the status file")
        assert status_of(directory)["connections"]["client"]["connections"] <= 3, "the 2, and one refused"
        bob.socket.close(linger=0)
        reply = third.one(10.0)
        assert type(reply) is p.LogonAccepted, "admitted once a place is free"
        third.next_id = reply.next_client_order_id
        third.order("ACME", SELL, 9_990, 1)
        assert type(third.one()) is p.OrderAccepted
        alice.order("ACME", BUY, 9_990, 1)
        assert [type(m) for m in alice.read(2)] == [p.OrderAccepted, p.OrderFilled]
        assert "refused a connection to the client port of the TES: it holds 2, its most" in exchange.tes.output()
        assert exchange.tes.stop() == 0
    finally:
        exchange.close()


LOGGED_ON = """
import sys, time
from clients.client import ExchangeClient
client = ExchangeClient(sys.argv[1], "alice", "alice-demo-key")
client.logon(10.0)
print("logged on", flush=True)
time.sleep(600)
"""
"""A trader's program that logs on to the TES at the address it is given and stays."""


def test_the_client_port_frees_the_place_of_a_client_whose_process_stopped(tmp_path):
    exchange = Exchange(tmp_path, EXCHANGE__TES__MAX_CONNECTIONS="1", EXCHANGE__TES__PEER_HEARTBEAT_MS="200")
    holder = subprocess.Popen([sys.executable, "-c", LOGGED_ON, endpoint(exchange.env, "TES__CLIENT_ENDPOINT")],
                              cwd=REPO, stdout=subprocess.PIPE)
    try:
        assert holder.stdout.readline() == b"logged on\n"
        waiting = exchange.client()
        waiting.socket.setsockopt(zmq.RECONNECT_IVL, 50)
        waiting.send(p.Logon("bob", "bob-demo-key", False))
        assert waiting.frame(1.0) == [], "kept out while the port's one client answers"
        holder.send_signal(signal.SIGSTOP)
        assert type(waiting.one(10.0)) is p.LogonAccepted, "admitted once the stopped client's connection is closed"
        assert exchange.tes.stop() == 0
    finally:
        holder.kill()
        holder.wait()
        exchange.close()


SPARE = 300
"""Descriptors the book server may open beyond those it holds once serving, in the flood test."""


def test_a_flood_of_silent_connections_leaves_a_book_server_the_descriptors_it_needs(tmp_path, context,
                                                                                      client_context):
    """400 ZeroMQ connections that would finish their handshake and then say nothing, to each public
    port of a book server with SPARE descriptors to spare, fewer than the 800 (each connecting again
    a second after it ends): each port holds its 40, so a TES still connects and trades, and the
    snapshot and the status file are still written. The spare is above what the first burst takes
    for a moment: the connections the listeners accept, a backlog's worth each, before the gate
    shuts them down (about 180 here, 80 of them the ports' 40 each). Those it shuts down go within
    moments, while the flood goes on: the count falls back to the ports' 40 each and a few."""
    env = open_env(tmp_path, EXCHANGE__SHARDS__0__MAX_CONNECTIONS="40", EXCHANGE__JOURNAL__SNAPSHOT_EVERY="2")
    directory = env["EXCHANGE__SHARDS__0__JOURNAL_DIR"]
    client_context.setsockopt(zmq.MAX_SOCKETS, 2000)
    flood = []
    with Role(OBS, env) as obs:
        pid = obs.process.pid
        held = descriptors(pid)
        limit = held + SPARE
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (limit, limit))
        for key in ("SHARDS__0__MARKET_DATA_ENDPOINT", "SHARDS__0__SNAPSHOT_ENDPOINT"):
            flood += [dealer(client_context, endpoint(env, key), reconnect_ms=1000) for _ in range(400)]
        eventually(lambda: status_of(directory).get("connections", {}).get("snapshot", {}).get("refused", 0) > 100,
                   "the flood refused on both ports")
        assert status_of(directory)["connections"]["market data"]["refused"] > 100
        eventually(lambda: descriptors(pid) <= held + 2 * 40 + 20, "the ports' 40 each, and those being shut down",
                   10)
        tes = Tes(context, env, tes_id=1)
        tes.send(p.BookSubmit("ACME", T1 | 1, Side.SELL, 0, 0, 101, 5))
        tes.send(p.BookSubmit("ACME", T2 | 1, Side.BUY, 0, 0, 101, 2))
        assert [type(m) for m in tes.receive(2)] == [p.Executed, p.Executed], "a new connection to the command port"
        eventually(lambda: any(name.startswith("snapshot-") and name.endswith(".msgpack")
                               for name in os.listdir(directory)), "the snapshot written")
        written = status_of(directory)["updated"]
        eventually(lambda: status_of(directory).get("updated", 0) > written, "the status file written again")
        assert "Too many open files" not in obs.output()
        for socket in flood:
            socket.close(linger=0)
        assert obs.stop() == 0
