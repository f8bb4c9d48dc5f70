"""The OBS's step 1 (`OrderBookServer._read`) on a real ROUTER socket: every queued frame read in
arrival order, in C (`native.sockets`), bad ones dropped, and the queue left empty."""

import types

import msgspec
import pytest
import zmq

from engine.types import CancelReason, OrderType, Side, TimeInForce
from native.commands import CommandReader
from servers.obs import OrderBookServer
from servers.protocol import MAX_BATCH, MAX_FRAME_BYTES, BookCancel, BookReplace, BookSubmit, Codec, ObsRequest
from servers.security import ANYONE

SYMBOL = "ACME"


@pytest.fixture
def pair():
    """A ROUTER (the OBS's command socket) and a DEALER connected to it over inproc."""
    context = zmq.Context()
    router, dealer = context.socket(zmq.ROUTER), context.socket(zmq.DEALER)
    router.bind("inproc://commands")
    dealer.connect("inproc://commands")
    yield router, dealer
    router.close(linger=0)
    dealer.close(linger=0)
    context.term()


def read(router: zmq.Socket, dropped: list) -> list:
    """What `_read` yields from ``router`` once it polls readable."""
    assert router.poll(2000) == zmq.POLLIN
    server = types.SimpleNamespace(dropped=dropped.append)
    reader = CommandReader([SYMBOL], (BookSubmit, BookCancel, BookReplace), CancelReason, MAX_FRAME_BYTES, MAX_BATCH)
    return list(OrderBookServer._read(server, router, Codec(ObsRequest), None, reader))


def submit(order_id: int) -> BookSubmit:
    return BookSubmit(SYMBOL, order_id, Side.BUY, OrderType.LIMIT, TimeInForce.GTC, 100, 1)


def test_a_turn_reads_every_queued_frame_in_order_and_leaves_the_queue_empty(pair):
    router, dealer = pair
    encode = Codec(ObsRequest).encode
    for first in (1, 3, 5):
        dealer.send(encode([submit(first), BookCancel(SYMBOL, first + 1)]))
    dropped: list = []
    got = read(router, dropped)
    assert [peer for _, peer, _ in got] == [ANYONE] * 3
    assert [[command.struct() for command in messages] for _, _, messages in got] == [
        [submit(first), BookCancel(SYMBOL, first + 1)] for first in (1, 3, 5)]
    assert dropped == []
    assert router.poll(0) == 0


def test_a_malformed_frame_is_dropped_and_the_frames_after_it_are_read(pair):
    router, dealer = pair
    encode = Codec(ObsRequest).encode
    dealer.send(encode([submit(1)]))
    dealer.send(b"\xc1 not msgpack")
    dealer.send_multipart([b"two", b"payloads"])
    dealer.send(encode([submit(2)]))
    dropped: list = []
    got = read(router, dropped)
    assert [[command.struct() for command in messages] for _, _, messages in got] == [[submit(1)], [submit(2)]]
    assert len(dropped) == 2 and isinstance(dropped[0], msgspec.DecodeError)
    assert dropped[1] == "2 payload frames instead of 1"
    assert router.poll(0) == 0


def test_a_turn_with_nothing_queued_reads_nothing(pair):
    router, _ = pair
    server = types.SimpleNamespace(dropped=[].append)
    assert list(OrderBookServer._read(server, router, Codec(ObsRequest))) == []
