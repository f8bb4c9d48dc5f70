"""`native.sockets`: a socket's queued messages read in C with the library pyzmq runs on, each
whole, in order, None once none is left, and messages sent whole or refused whole; the same
through pyzmq's API for anything else."""

import time

import msgspec
import pytest
import zmq
from zmq.auth.thread import ThreadAuthenticator

from native import sockets
from native.framing import join_frames
from native.sockets import queued, receive, send, send_each, send_joined


@pytest.fixture
def context():
    context = zmq.Context()
    yield context
    context.destroy(linger=0)


def connected(context, kind=zmq.ROUTER):
    """A ``kind`` socket and a DEALER connected to it over inproc."""
    server, client = context.socket(kind), context.socket(zmq.DEALER)
    server.bind("inproc://sockets")
    client.connect("inproc://sockets")
    return server, client


def wait_queued(socket) -> None:
    assert socket.poll(2000) == zmq.POLLIN


def test_pyzmqs_sockets_are_read_and_sent_on_in_c_here():
    assert sockets.IN_C


def test_each_message_is_read_whole_and_in_order_then_none(context):
    server, client = connected(context)
    assert receive(server) is None and not queued(server)
    client.send_multipart([b"one", b"two", b""])
    client.send(b"three")
    client.send(b"")
    wait_queued(server)
    assert queued(server)
    identity, *first = receive(server)
    assert first == [b"one", b"two", b""]
    assert receive(server) == [identity, b"three"]
    assert receive(server) == [identity, b""]
    assert receive(server) is None and not queued(server)


def test_what_it_reads_is_what_recv_multipart_reads(context):
    server, client = connected(context, zmq.DEALER)
    messages = [[bytes([n]) * n for n in range(parts)] for parts in (1, 2, 5)] + [[b"x" * 1_000_000]]
    for message in messages * 2:
        client.send_multipart(message)
    wait_queued(server)
    read_here = [receive(server) for _ in messages]
    deadline = time.monotonic() + 2
    while not queued(server) and time.monotonic() < deadline:
        time.sleep(0.001)
    read_by_pyzmq = [server.recv_multipart(zmq.NOBLOCK) for _ in messages]
    assert read_here == read_by_pyzmq == messages
    assert receive(server) is None


def test_a_closed_socket_raises_zmq_error(context):
    server, _ = connected(context)
    server.close(linger=0)
    with pytest.raises(zmq.ZMQError):
        receive(server)
    with pytest.raises(zmq.ZMQError):
        queued(server)


class StandIn:
    """Not a pyzmq socket: read through its ``recv_multipart``, as a benchmark's queue is."""

    def __init__(self, *messages) -> None:
        self.messages = list(messages)

    def recv_multipart(self, flags=0, copy=True):
        assert flags == zmq.NOBLOCK
        if not self.messages:
            raise zmq.Again()
        return self.messages.pop(0)


def test_anything_else_is_read_through_its_recv_multipart():
    stand_in = StandIn([b"a", b"b"], [b"c"])
    assert receive(stand_in) == [b"a", b"b"]
    assert receive(stand_in) == [b"c"]
    assert receive(stand_in) is None


def test_the_user_id_is_the_authenticated_peers_as_pyzmq_reads_it(context):
    """With CURVE, libzmq gives each message the User-Id its ZAP handler named (here pyzmq's
    authenticator: the client's Z85 public key), read here as pyzmq's Frame reads it."""
    server_public, server_secret = zmq.curve_keypair()
    client_public, client_secret = zmq.curve_keypair()
    authenticator = ThreadAuthenticator(context)
    authenticator.start()
    try:
        authenticator.configure_curve(domain="*", location=zmq.auth.CURVE_ALLOW_ANY)
        server, client = context.socket(zmq.ROUTER), context.socket(zmq.DEALER)
        server.curve_secretkey, server.curve_publickey, server.curve_server = server_secret, server_public, True
        port = server.bind_to_random_port("tcp://127.0.0.1")
        client.curve_secretkey, client.curve_publickey, client.curve_serverkey = client_secret, client_public, \
            server_public
        client.connect(f"tcp://127.0.0.1:{port}")
        client.send(b"first")
        client.send(b"second")
        wait_queued(server)
        (_, payload), user = receive(server, True)
        assert payload == b"first" and user == client_public.decode()
        deadline = time.monotonic() + 2
        while not queued(server) and time.monotonic() < deadline:
            time.sleep(0.001)
        frames = server.recv_multipart(zmq.NOBLOCK, copy=False)
        assert frames[-1].bytes == b"second" and frames[-1].get("User-Id") == user
        assert receive(server, True) is None
    finally:
        authenticator.stop()


def test_without_authentication_a_message_has_no_user_id(context):
    server, client = connected(context)
    client.send(b"payload")
    wait_queued(server)
    (_, payload), user = receive(server, True)
    assert payload == b"payload" and user is None


def test_a_message_sent_here_is_received_whole_by_pyzmq(context):
    server, client = connected(context)
    send(client, (b"one", b"", b"x" * 100_000))
    send(client, (b"two",), zmq.NOBLOCK)
    wait_queued(server)
    identity, *first = server.recv_multipart()
    assert first == [b"one", b"", b"x" * 100_000]
    assert server.recv_multipart() == [identity, b"two"]
    send(server, (identity, b"back"))
    assert client.poll(2000) == zmq.POLLIN
    assert client.recv_multipart() == [b"back"]
    many = [bytes([n]) * n for n in range(9)]   # more parts than `send` holds on its stack
    send(client, many, zmq.NOBLOCK)
    wait_queued(server)
    assert server.recv_multipart() == [identity, *many]


def test_a_full_queue_refuses_a_message_whole_with_again(context):
    server, client = connected(context, zmq.DEALER)
    client.sndhwm = server.rcvhwm = 1
    sent = 0
    with pytest.raises(zmq.Again):
        while sent < 100_000:
            send(client, (b"first part", b"second part"), zmq.NOBLOCK)
            sent += 1
    wait_queued(server)
    received = []
    while (parts := receive(server)) is not None:
        received.append(parts)
    assert received == [[b"first part", b"second part"]] * sent


def test_sending_needs_bytes_and_a_part_and_an_open_socket(context):
    server, client = connected(context)
    for part in ("text", None, bytearray(b"bytes-like")):
        with pytest.raises(TypeError):
            send(client, (b"first", part))
        with pytest.raises(TypeError):
            send(client, (part,))
    send(client, (b"whole",))
    wait_queued(server)
    assert receive(server)[1:] == [b"whole"]
    assert receive(server) is None
    with pytest.raises(ValueError):
        send(client, ())
    client.close(linger=0)
    with pytest.raises(zmq.ZMQError):
        send(client, (b"late",))


def test_a_stand_in_is_sent_on_through_its_send_multipart():
    sent = []

    class StandOut:
        def send_multipart(self, parts, flags=0):
            sent.append((list(parts), flags))

    send(StandOut(), (b"a", b"b"), zmq.NOBLOCK)
    assert sent == [([b"a", b"b"], zmq.NOBLOCK)]


def routed(context, count, hwm=1000):
    """A ROUTER with ROUTER_MANDATORY and ``count`` DEALERs connected to it, with the identity of each."""
    router = context.socket(zmq.ROUTER)
    router.setsockopt(zmq.ROUTER_MANDATORY, 1)
    router.setsockopt(zmq.SNDHWM, hwm)
    router.bind("inproc://each")
    dealers, identities = [], []
    for _ in range(count):
        dealer = context.socket(zmq.DEALER)
        dealer.setsockopt(zmq.RCVHWM, hwm)
        dealer.connect("inproc://each")
        dealer.send(b"hello")
        wait_queued(router)
        identities.append(receive(router)[0])
        dealers.append(dealer)
    return router, dealers, identities


def test_one_frame_is_sent_to_each_identity_and_what_cannot_take_it_is_told(context):
    """`send_each`: ``(identity, topic, frame)`` to each; a full queue is counted, an identity of no
    connection returned, and neither stops the sends to the others."""
    router, dealers, identities = routed(context, 3, hwm=2)
    frame = b"frame" * 1000
    assert send_each(router, identities, b"ACME.", frame) == (0, [])
    for dealer in dealers:
        wait_queued(dealer)
        assert receive(dealer) == [b"ACME.", frame]
    for _ in range(5):  # the third does not read: its queue (2 here, 2 there) fills
        send_each(router, identities[2:], b"ACME.", frame)
    unknown = b"\x00nobody"
    full, gone = send_each(router, [identities[0], unknown, identities[2], identities[1]], b"BOLT.", b"x")
    assert (full, gone) == (1, [unknown])
    for dealer in dealers[:2]:
        wait_queued(dealer)
        assert receive(dealer) == [b"BOLT.", b"x"] and receive(dealer) is None
    assert send_each(router, [], b"ACME.", frame) == (0, [])
    with pytest.raises(TypeError):
        send_each(router, [identities[0], "text"], b"ACME.", b"y")
    wait_queued(dealers[0])
    assert receive(dealers[0]) == [b"ACME.", b"y"], "sent to the identities before it"


def test_a_stand_in_is_sent_each_message_through_its_send_multipart():
    sent = []

    class StandOut:
        def send_multipart(self, parts, flags=0):
            if parts[0] == b"full":
                raise zmq.Again()
            if parts[0] == b"gone":
                raise zmq.ZMQError(zmq.EHOSTUNREACH)
            sent.append((list(parts), flags))

    assert send_each(StandOut(), [b"a", b"full", b"gone", b"b"], b"T.", b"f") == (1, [b"gone"])
    assert sent == [([b"a", b"T.", b"f"], zmq.NOBLOCK), ([b"b", b"T.", b"f"], zmq.NOBLOCK)]


def test_each_destinations_messages_are_sent_joined_into_frames(context):
    """`send_joined`: each destination's messages in the frames `join_frames` makes of them (those
    not bytes encoded), each frame a message led by its destination."""
    server, client = connected(context)
    client.send(b"hello")
    wait_queued(server)
    identity, _ = receive(server)
    encode = msgspec.msgpack.encode
    messages = [encode(n) for n in range(5)] + [{"six": 6}]
    send_joined(server, {identity: messages}, encode, 4, 1 << 20)
    frames = [client.recv() for _ in range(2)]
    assert frames == join_frames(messages, encode, 4, 1 << 20) and len(frames) == 2
    assert [msgspec.msgpack.decode(frame) for frame in frames] == [[0, 1, 2, 3], [4, {"six": 6}]]
