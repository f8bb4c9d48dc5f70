"""Fuzzing both servers' sockets, then checking they still trade correctly.

Random bytes, empty and multi-part frames, oversized frames, valid msgpack of the
wrong shape and hypothesis-mutated versions of real messages are thrown at the
TES client endpoint, the OBS command endpoint and the OBS's public ones (market data, snapshots). The
OBS command port admits only the TES's and the operator's CURVE keys, so the
fuzzer speaks to it with the TES's key (what a process without one can do is
tested in test_security.py: nothing reaches the OBS). The servers must stay up,
answer what can be answered with a reject, and afterwards run a normal trade end
to end with exact reports and positions.
"""

import os
import time

import msgspec
import pytest
import zmq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from procs import Role, as_role, endpoint, exchange_env

from clients.market_data import MarketDataClient
from engine.types import OrderType, Side, TimeInForce
from servers import protocol as p

CLIENT = p.Codec(p.ClientRequest)
REPLIES = p.Codec(p.ClientMessage)

VALID_CLIENT_MESSAGES = [
    p.Logon("alice", "alice-demo-key"),
    p.Heartbeat(),
    p.EnterOrder(1, "ACME", Side.BUY, OrderType.LIMIT, TimeInForce.GTC, 10_000, 5),
    p.CancelOrder(2, 123),
    p.ReplaceOrder(3, 123, 10_001, 4),
    p.MassCancel("ACME"),
    p.QueryBook(1, "ACME", 5),
]
VALID_OBS_MESSAGES = [
    p.Hello(9),
    p.BookSubmit("ACME", (9 << 48) | 1, 0, 0, 0, 10_000, 5),
    p.BookCancel("ACME", 5),
    p.BookReplace("ACME", 5, 10_000, 1),
    p.BookQuery(1, "ACME", 5),
]
VALID_SNAPSHOT_MESSAGES = [p.SnapshotRequest("ACME")]
VALID_SUBSCRIPTION_MESSAGES = [p.Subscribe("ACME"), p.Unsubscribe("BOLT")]

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**64), 2**64), st.floats(allow_nan=True),
    st.text(max_size=20), st.binary(max_size=20),
)
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=5), inner,
                                                                                             max_size=5), max_leaves=20)


def mutated(messages):
    """A real message as a positional list with some fields replaced by arbitrary values."""
    def mutate(message, data):
        fields = list(msgspec.to_builtins(message))
        for _ in range(data.draw(st.integers(1, 3))):
            fields[data.draw(st.integers(0, len(fields) - 1))] = data.draw(values)
        return fields
    return st.tuples(st.sampled_from(messages), st.data()).map(lambda pair: mutate(*pair))


@pytest.fixture(scope="module")
def exchange(tmp_path_factory):
    env = exchange_env(tmp_path_factory.mktemp("fuzz"), EXCHANGE__TES__SESSION_TIMEOUT_MS="60000")
    with Role(["-s", "OBS"], env) as obs, Role(["-s", "TES"], env) as tes:
        context = zmq.Context()
        yield env, context, obs, tes
        context.destroy(linger=0)
        assert tes.stop() == 0, tes.output()
        assert obs.stop() == 0, obs.output()


def dealer(context, address, env=None):
    """A DEALER to ``address``; with ``env``, holding the TES's key (for the OBS command port)."""
    socket = context.socket(zmq.DEALER)
    socket.setsockopt(zmq.LINGER, 0)
    if env is not None:
        as_role(socket, env)
    socket.connect(address)
    return socket


def throw(socket, frames_list):
    for frames in frames_list:
        socket.send_multipart(frames)


def drain(socket, seconds=0.3):
    """Everything the socket receives within ``seconds``."""
    received, deadline = [], time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        if socket.poll(int(left * 1000)):
            received.append(socket.recv_multipart())
    return received


def garbage_frames():
    return [
        [b""],
        [os.urandom(1)],
        [os.urandom(64)],
        [os.urandom(5000)],
        [b"\x91"],
        [b"\xdc\xff\xff"],
        [msgspec.msgpack.encode({"a": 1})],
        [msgspec.msgpack.encode([["NoSuchMessage", 1, 2]])],
        [msgspec.msgpack.encode([["EnterOrder", "x", "ACME", 0, 0, 0, 1, 1]])],
        [CLIENT.encode([p.Heartbeat()]), b"extra frame"],
        [b"x" * (p.MAX_FRAME_BYTES + 1)],
        [msgspec.msgpack.encode([["Heartbeat"]] * (p.MAX_BATCH + 1))],
    ]


def test_garbage_on_every_socket_leaves_both_servers_running(exchange):
    env, context, obs, tes = exchange
    targets = ["TES__CLIENT_ENDPOINT", "SHARDS__0__COMMAND_ENDPOINT", "SHARDS__0__SNAPSHOT_ENDPOINT",
               "SHARDS__0__MARKET_DATA_ENDPOINT"]
    for target in targets:
        socket = dealer(context, endpoint(env, target), env if target == "SHARDS__0__COMMAND_ENDPOINT" else None)
        throw(socket, garbage_frames())
        drain(socket, 0.2)
        socket.close()
    tes_socket = dealer(context, endpoint(env, "TES__CLIENT_ENDPOINT"))
    throw(tes_socket, [[os.urandom(32)]])
    replies = [REPLIES.decode(frames[-1]) for frames in drain(tes_socket, 1.0)]
    assert replies and all(isinstance(m, p.SessionRejected) for batch in replies for m in batch)
    assert {m.reason for batch in replies for m in batch} <= {p.RejectReason.MALFORMED_MESSAGE,
                                                              p.RejectReason.FRAME_TOO_LARGE}
    assert obs.process.poll() is None and tes.process.poll() is None


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(client=st.lists(mutated(VALID_CLIENT_MESSAGES), min_size=1, max_size=4),
       book=st.lists(mutated(VALID_OBS_MESSAGES), min_size=1, max_size=4),
       snapshot=st.lists(mutated(VALID_SNAPSHOT_MESSAGES), min_size=1, max_size=2),
       subscription=st.lists(mutated(VALID_SUBSCRIPTION_MESSAGES), min_size=1, max_size=2), raw=st.binary(max_size=200))
def test_mutated_messages_are_rejected_not_fatal(exchange, client, book, snapshot, subscription, raw):
    env, context, obs, tes = exchange
    frames = []
    for fields in client:
        try:
            frames.append(msgspec.msgpack.encode([fields]))
        except (TypeError, OverflowError):
            continue
    socket = dealer(context, endpoint(env, "TES__CLIENT_ENDPOINT"))
    throw(socket, [[frame] for frame in frames] + [[raw]])
    obs_socket = dealer(context, endpoint(env, "SHARDS__0__COMMAND_ENDPOINT"), env)
    snapshot_socket = dealer(context, endpoint(env, "SHARDS__0__SNAPSHOT_ENDPOINT"))
    subscription_socket = dealer(context, endpoint(env, "SHARDS__0__MARKET_DATA_ENDPOINT"))
    for target, messages in ((obs_socket, book), (snapshot_socket, snapshot), (subscription_socket, subscription)):
        for fields in messages:
            try:
                target.send(msgspec.msgpack.encode([fields]))
            except (TypeError, OverflowError):
                continue
    socket.close()
    obs_socket.close()
    snapshot_socket.close()
    subscription_socket.close()
    assert obs.process.poll() is None and tes.process.poll() is None


def session(context, env, trader):
    socket = dealer(context, endpoint(env, "TES__CLIENT_ENDPOINT"))
    socket.send(CLIENT.encode([p.Logon(trader, f"{trader}-demo-key")]))
    assert isinstance(wait_for(socket, p.LogonAccepted), p.LogonAccepted)
    return socket


def wait_for(socket, kind, timeout=10.0):
    """The first message of type ``kind`` (other messages are skipped)."""
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        if socket.poll(int(left * 1000)):
            for message in REPLIES.decode(socket.recv_multipart()[-1]):
                if isinstance(message, kind):
                    return message
    raise AssertionError(f"no {kind.__name__} within {timeout}s")


def test_after_the_fuzzing_a_normal_trade_still_works(exchange):
    """Traders and a symbol the fuzzing never used (it only knows alice's key and ACME), the trade
    seen on the market data too."""
    env, context, obs, tes = exchange
    feed = MarketDataClient(endpoint(env, "SHARDS__0__MARKET_DATA_ENDPOINT"),
                            endpoint(env, "SHARDS__0__SNAPSHOT_ENDPOINT"), "BOLT", context)
    feed.connect(10.0)
    seller, buyer = session(context, env, "flow1"), session(context, env, "flow2")
    seller.send(CLIENT.encode([p.EnterOrder(1, "BOLT", Side.SELL, OrderType.LIMIT, TimeInForce.GTC, 25_050, 70)]))
    accepted = wait_for(seller, p.OrderAccepted)
    buyer.send(CLIENT.encode([p.EnterOrder(1, "BOLT", Side.BUY, OrderType.LIMIT, TimeInForce.IOC, 25_100, 70)]))
    fill = wait_for(buyer, p.OrderFilled)
    assert (fill.price, fill.quantity, fill.leaves, fill.aggressor) == (25_050, 70, 0, True)
    maker_fill = wait_for(seller, p.OrderFilled)
    assert (maker_fill.order_id, maker_fill.price, maker_fill.quantity, maker_fill.aggressor) == (
        accepted.order_id, 25_050, 70, False)
    buyer.send(CLIENT.encode([p.QueryPositions(5)]))
    positions = wait_for(buyer, p.Positions)
    assert [(pos.symbol, pos.quantity) for pos in positions.positions if pos.quantity] == [("BOLT", 70)]
    assert positions.cash == -25_050 * 70
    deadline = time.monotonic() + 10
    while feed.last_trade is None and time.monotonic() < deadline:
        feed.poll(0.1)
    assert (feed.last_trade.price, feed.last_trade.quantity, feed.resyncs) == (25_050, 70, 0)
    feed.close()
    seller.close()
    buyer.close()
