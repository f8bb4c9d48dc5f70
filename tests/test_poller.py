"""The servers' poller (`native.sockets.Poller`): `zmq.Poller`'s answers for readable input, with
each socket's command queue read once before the wait and after it only where its descriptor
signalled."""

import os
import signal
import threading
import time

import pytest
import zmq

from native.sockets import IN_C, Poller, queued, receive

pytestmark = pytest.mark.skipif(not IN_C, reason="libzmq's calls were not found: the poller is zmq.Poller itself")


@pytest.fixture
def pair():
    """A ROUTER and a DEALER connected over TCP (each message crosses ZeroMQ's I/O threads), the
    DEALER's first message read, so that the ROUTER knows it."""
    context = zmq.Context()
    router, dealer = context.socket(zmq.ROUTER), context.socket(zmq.DEALER)
    router.setsockopt(zmq.LINGER, 0)
    dealer.setsockopt(zmq.LINGER, 0)
    port = router.bind_to_random_port("tcp://127.0.0.1")
    dealer.connect(f"tcp://127.0.0.1:{port}")
    dealer.send(b"hello")
    assert router.poll(5_000)
    identity, _ = router.recv_multipart()
    yield router, dealer, identity
    context.destroy(linger=0)


def wait_queued(socket, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not queued(socket):
        assert time.monotonic() < deadline, "the message never came"
        time.sleep(0.001)


def test_nothing_to_read_waits_the_timeout_and_answers_nothing(pair):
    router, _, _ = pair
    poller = Poller()
    poller.register(router)
    started = time.monotonic()
    assert poller.poll(0) == []
    assert poller.poll(40) == []
    assert 0.035 <= time.monotonic() - started < 1.0


def test_the_wait_ends_at_a_message_and_answers_its_socket(pair):
    router, dealer, _ = pair
    poller = Poller()
    poller.register(router, zmq.POLLIN)
    threading.Timer(0.05, dealer.send, (b"order",)).start()
    started = time.monotonic()
    assert poller.poll(5_000) == [(router, zmq.POLLIN)]
    assert time.monotonic() - started < 2.0
    assert receive(router)[1] == b"order"
    assert poller.poll(0) == []


def test_a_message_whose_signal_a_read_took_is_still_found_before_the_wait(pair):
    """Reading the socket's commands (here `queued`; in a loop, a send) takes the signal its
    descriptor held: a poller that waited on the descriptor alone would sleep through the message."""
    router, dealer, _ = pair
    poller = Poller()
    poller.register(router)
    dealer.send(b"order")
    wait_queued(router)                         # the command read: the descriptor is quiet now
    started = time.monotonic()
    assert poller.poll(2_000) == [(router, zmq.POLLIN)]
    assert time.monotonic() - started < 0.5


def test_descriptors_and_sockets_are_answered_together(pair):
    router, dealer, _ = pair
    read_end, write_end = os.pipe()
    try:
        poller = Poller()
        poller.register(read_end, zmq.POLLIN)
        poller.register(router, zmq.POLLIN)
        os.write(write_end, b"x")
        assert poller.poll(1_000) == [(read_end, zmq.POLLIN)]
        dealer.send(b"order")
        wait_queued(router)
        assert sorted(poller.poll(1_000), key=lambda item: isinstance(item[0], int)) == [
            (router, zmq.POLLIN), (read_end, zmq.POLLIN)]
        os.read(read_end, 1)
        assert poller.poll(0) == [(router, zmq.POLLIN)]
    finally:
        os.close(read_end)
        os.close(write_end)


def test_a_target_registered_with_no_flags_is_forgotten_as_zmq_poller_forgets_it(pair):
    router, dealer, _ = pair
    read_end, write_end = os.pipe()
    try:
        poller = Poller()
        poller.register(router)
        poller.register(read_end)
        assert poller.sockets == [(router, zmq.POLLIN), (read_end, zmq.POLLIN)]
        dealer.send(b"order")
        wait_queued(router)
        poller.modify(router, 0)
        assert poller.sockets == [(read_end, zmq.POLLIN)]
        assert poller.poll(20) == []
        poller.modify(router, zmq.POLLIN)
        assert poller.poll(0) == [(router, zmq.POLLIN)]
        poller.unregister(read_end)      # a descriptor by its value
        assert poller.sockets == [(router, zmq.POLLIN)]
        with pytest.raises(KeyError):
            poller.unregister(read_end)
        poller.modify(read_end, 0)       # not registered: nothing to forget
        assert poller.sockets == [(router, zmq.POLLIN)]
    finally:
        os.close(read_end)
        os.close(write_end)


def test_what_it_cannot_poll_is_refused(pair):
    router, _, _ = pair
    poller = Poller()
    with pytest.raises(ValueError):
        poller.register(router, zmq.POLLOUT)
    with pytest.raises(TypeError):
        poller.register("router")
    assert poller.sockets == []


def test_a_socket_closed_while_registered_is_an_error_not_a_crash():
    context = zmq.Context()
    try:
        socket = context.socket(zmq.PULL)
        socket.bind("inproc://closed")
        poller = Poller()
        poller.register(socket)
        socket.close(linger=0)
        with pytest.raises(zmq.ZMQError) as raised:
            poller.poll(10)
        assert raised.value.errno == zmq.ENOTSOCK
    finally:
        context.destroy(linger=0)


def test_a_signal_ends_the_wait_once_its_handler_ran(pair):
    router, _, _ = pair
    poller = Poller()
    poller.register(router)
    seen = []
    previous = signal.signal(signal.SIGALRM, lambda number, frame: seen.append(number))
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.05)
        started = time.monotonic()
        assert poller.poll(5_000) == []
        assert seen == [signal.SIGALRM] and time.monotonic() - started < 2.0

        def interrupt(number, frame):
            raise KeyboardInterrupt

        signal.signal(signal.SIGALRM, interrupt)
        signal.setitimer(signal.ITIMER_REAL, 0.05)
        with pytest.raises(KeyboardInterrupt):
            poller.poll(5_000)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def test_a_target_that_cannot_be_polled_leaves_the_poll_as_it_was(pair):
    router, dealer, _ = pair
    context = zmq.Context()
    try:
        closed = context.socket(zmq.PULL)
        closed.close(linger=0)
        poller = Poller()
        poller.register(router)
        with pytest.raises(zmq.ZMQError):
            poller.register(closed)      # its descriptor cannot be read: nothing changes
        assert poller.sockets == [(router, zmq.POLLIN)]
        dealer.send(b"order")
        assert poller.poll(2_000) == [(router, zmq.POLLIN)]
    finally:
        context.destroy(linger=0)
