"""Why a logon got no answer, or a market data client no snapshot, as the client library tells it
from its sockets' connection events (`clients.watch`): each case made for real on loopback, a full
client port's in `test_gate`."""

import re

import pytest
import zmq
from test_gate import Port, dealer

from clients.client import ExchangeClient, LogonError, RequestTimeout
from clients.market_data import MarketDataClient
from clients.watch import Link, Tally
from servers.processes import free_port


@pytest.fixture
def context():
    context = zmq.Context()
    yield context
    context.destroy(linger=0)


def router(context, curve_keys=None):
    """A ROUTER on loopback that never answers (with CURVE as the server of ``curve_keys``, a
    public and a secret key); its address."""
    socket = context.socket(zmq.ROUTER)
    socket.setsockopt(zmq.LINGER, 0)
    if curve_keys is not None:
        socket.curve_server = True
        socket.curve_publickey, socket.curve_secretkey = curve_keys
    return socket, f"tcp://127.0.0.1:{socket.bind_to_random_port('tcp://127.0.0.1')}"


def unanswered(context, address, server_key=None, timeout=0.5):
    """The `LogonError` of a logon to ``address``, which must not be answered; the client's watch
    is over once the logon is."""
    client = ExchangeClient(address, "alice", "key", context=context, server_key=server_key)
    try:
        with pytest.raises(LogonError) as raised:
            client.logon(timeout)
        assert client._watch.monitor is None, "the monitor lives only while a logon waits"
        assert raised.value.reason is None
        return raised.value
    finally:
        client.close(logout_timeout=0.1)


def test_nothing_listening(context):
    address = f"tcp://127.0.0.1:{free_port()}"
    error = unanswered(context, address)
    assert error.link is Link.UNREACHABLE and error.unreachable
    text = str(error)
    assert text.startswith(f"no answer to the logon from {address} within 0.5s: nothing accepted a connection "
                           "there (tried ")
    assert text.endswith(" times)"), "ZeroMQ tries again every 100 ms"


def test_a_server_that_does_not_answer_is_not_given_a_cause(context):
    server, address = router(context)
    error = unanswered(context, address)
    assert server.poll(1000), "the logon reached it"
    assert error.link is None and error.unreachable
    assert str(error) == f"no answer to the logon from {address} within 0.5s"


def test_a_curve_server_closes_a_connection_made_with_another_key(context):
    server, address = router(context, zmq.curve_keypair())
    other_public, _ = zmq.curve_keypair()
    error = unanswered(context, address, server_key=other_public)
    assert not server.poll(0)
    assert error.link is Link.CLOSED and not error.unreachable
    assert str(error).endswith(" before the handshake: it holds its most connections (max_connections), or the "
                               "server key the client was given is not its own; the client goes on trying")


@pytest.mark.parametrize("server_curve", [True, False])
def test_one_end_with_curve_and_the_other_without(context, server_curve):
    keys = zmq.curve_keypair()
    server, address = router(context, keys if server_curve else None)
    error = unanswered(context, address, server_key=None if server_curve else keys[0])
    assert not server.poll(0)
    assert error.link is Link.REFUSED and not error.unreachable
    assert str(error).endswith(": the handshake failed once: the two ends do not use the same security "
                               "(CURVE on one, not on the other)"), "ZeroMQ does not try again after that"


def test_a_logon_answered_closes_the_watch(context):
    server, address = router(context)
    client = ExchangeClient(address, "alice", "key", context=context)
    try:
        assert client._watch.monitor is not None, "followed from before the connection"
        with pytest.raises(LogonError):
            client.logon(0.2)
        assert client._watch.monitor is None
        with pytest.raises(LogonError):
            client.logon(0.2)
        assert client._watch.monitor is None, "and again for a second logon"
        assert server.poll(1000)
    finally:
        client.close(logout_timeout=0.1)


@pytest.mark.parametrize("events, link", [
    ((), None),
    ((zmq.EVENT_CONNECT_RETRIED,) * 3, Link.UNREACHABLE),
    ((zmq.EVENT_CONNECTED, zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL, zmq.EVENT_DISCONNECTED, zmq.EVENT_CONNECT_RETRIED),
     Link.CLOSED),
    ((zmq.EVENT_CONNECTED, zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL, zmq.EVENT_DISCONNECTED), Link.REFUSED),
    ((zmq.EVENT_CONNECTED, zmq.EVENT_HANDSHAKE_FAILED_AUTH, zmq.EVENT_DISCONNECTED), Link.REFUSED),
    ((zmq.EVENT_CONNECT_RETRIED, zmq.EVENT_CONNECTED, zmq.EVENT_HANDSHAKE_SUCCEEDED), None),
    ((zmq.EVENT_CONNECTED, zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL, zmq.EVENT_DISCONNECTED, zmq.EVENT_CONNECTED,
      zmq.EVENT_HANDSHAKE_SUCCEEDED), None),
    ((zmq.EVENT_CONNECTED, zmq.EVENT_HANDSHAKE_SUCCEEDED, zmq.EVENT_DISCONNECTED, zmq.EVENT_CONNECT_RETRIED),
     Link.UNREACHABLE),
])
def test_what_the_events_show(events, link):
    """A connection up at the end shows nothing wrong; else a failed handshake, then connections
    closed before theirs, then tries with no connection, in that order."""
    tally = Tally()
    for event in events:
        tally.add(event)
    assert tally.link() is link


def test_the_sentences_count():
    assert Tally(closed=1).why(Link.CLOSED).startswith("it closed the one connection made before the handshake")
    assert Tally(closed=3).why(Link.CLOSED).startswith("it closed each of the 3 connections made before")
    assert "server key" not in Tally(closed=3).why(Link.CLOSED)
    assert "server key" in Tally(curve=True, closed=3).why(Link.CLOSED)
    assert Tally(retried=1).why(Link.UNREACHABLE) == "nothing accepted a connection there (tried once)"
    assert Tally(failed=2).why(Link.REFUSED).startswith("the handshake failed 2 times: ")


def no_snapshot(context, market_data, snapshots):
    """The `RequestTimeout` text of a market data client's `connect` that gets no snapshot."""
    feed = MarketDataClient(market_data, snapshots, "ACME", context=context)
    try:
        with pytest.raises(RequestTimeout) as raised:
            feed.connect(0.5)
        assert feed._snapshots_watch.monitor is None
        return str(raised.value)
    finally:
        feed.close()


def test_a_market_data_client_with_nothing_at_either_port(context):
    market_data, snapshots = f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"
    text = no_snapshot(context, market_data, snapshots)
    assert re.fullmatch(f"no ACME snapshot within 0.5s: the market data port \\({re.escape(market_data)}\\): "
                        r"nothing accepted a connection there \(tried \d+ times\); "
                        f"the snapshot port \\({re.escape(snapshots)}\\): "
                        r"nothing accepted a connection there \(tried \d+ times\)", text), text


def test_a_market_data_client_kept_out_of_a_full_market_data_port(context):
    """It never subscribes, so it never asks for a snapshot: the snapshot port has nothing to say."""
    port = Port(context, capacity=1)
    server, snapshots = router(context)
    try:
        holder = dealer(context, port.address)
        holder.send(b"hello")
        assert port.router.poll(5000)
        text = no_snapshot(context, port.address, snapshots)
        assert text.startswith(f"no ACME snapshot within 0.5s: the market data port ({port.address}): it closed ")
        assert text.endswith(" before the handshake: it holds its most connections (max_connections); the client "
                             "goes on trying"), text
        assert not server.poll(0)
    finally:
        port.close()


def test_a_market_data_client_whose_servers_do_not_answer_is_not_given_a_cause(context):
    market_server, market_data = router(context)
    snapshot_server, snapshots = router(context)
    assert no_snapshot(context, market_data, snapshots) == "no ACME snapshot within 0.5s"
    assert market_server.poll(1000), "its subscription reached the market data port"
