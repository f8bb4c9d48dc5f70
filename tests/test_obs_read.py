"""The OBS's step 1 (`OrderBookServer._read`) on a real ROUTER socket: every queued frame read in
arrival order, in C (`native.sockets`), bad ones dropped, and the queue left empty; and steps 1
and 2 together (`_serve_commands`): frames the order path in C does not take whole sequenced by the
Python loop from where it stopped, a turn's work bounded."""

import types

import msgspec
import pytest
import zmq

from engine.types import CancelReason, OrderType, Side, TimeInForce
from native.commands import CommandReader, OrderCommand
from servers.obs import MAX_MESSAGES_PER_TURN, REFUSED, OrderBookServer, _item
from servers.protocol import (
    MAX_BATCH,
    MAX_FRAME_BYTES,
    BookCancel,
    BookQuery,
    BookReplace,
    BookSubmit,
    Codec,
    ObsRequest,
)
from servers.security import ANYONE, Peer
from servers.shard import TES_SHIFT, Shard

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


class Turns(OrderBookServer):
    """An OBS with only what steps 1 and 2 of its turn read (`_serve_commands`), its command socket
    ``router``; each turn's work is kept (`turns`), not run. ``peers``: CURVE's (inproc gives no
    User-Id: the peer of None), or off."""

    def __init__(self, router: zmq.Socket, peers: dict | None = None) -> None:
        self.commands, self.command_codec, self.peers = router, Codec(ObsRequest), peers
        self.order_reader = CommandReader([SYMBOL], (BookSubmit, BookCancel, BookReplace), CancelReason,
                                          MAX_FRAME_BYTES, MAX_BATCH)
        self.state = Shard.empty([SYMBOL])
        self.journal = types.SimpleNamespace(writable=lambda: True)
        self.stages = types.SimpleNamespace(lap=lambda stage: None)
        self.dropped, self.received, self.turns = [].append, 0, []

    def _finish_turn(self, work: list) -> None:
        """Keep ``work``, each command as its Struct (a command read in C is its `OrderCommand`)."""
        self.turns.append([(identity, message if type(message) is not OrderCommand else message.struct(), sequence,
                            stamp) for identity, message, sequence, stamp in map(_item, work)])


def test_frames_the_order_path_does_not_take_are_sequenced_in_python_within_a_turns_bound(pair):
    """Frames of orders each with a query (which the reader in C does not take): the first stops
    the order path as received, the rest are read and sequenced by the Python loop, in order, the
    query unsequenced; the turn ends at the first frame that brings its work to
    `MAX_MESSAGES_PER_TURN`, the frames after it left queued for the next turn (whose sequences
    start again where the shard's are: this stand-in does not run its turns)."""
    router, dealer = pair
    encode = Codec(ObsRequest).encode
    frames = MAX_MESSAGES_PER_TURN // 100 + 9
    for frame in range(frames):
        dealer.send(encode([submit(frame * 100 + n) for n in range(1, 100)] + [BookQuery(frame, SYMBOL, 1)]))
    assert router.poll(2000) == zmq.POLLIN
    server = Turns(router)
    server._serve_commands()
    taken = MAX_MESSAGES_PER_TURN // 100 + 1
    assert [len(work) for work in server.turns] == [taken * 100] and router.poll(0) == zmq.POLLIN
    server._serve_commands()
    assert [len(work) for work in server.turns] == [taken * 100, (frames - taken) * 100] and router.poll(0) == 0
    for work, first in zip(server.turns, (0, taken), strict=True):
        ordered = range(first, first + len(work) // 100)
        orders = [(message.order_id, sequence) for _, message, sequence, _ in work if type(message) is not BookQuery]
        assert orders == [(frame * 100 + n, (frame - first) * 99 + n) for frame in ordered for n in range(1, 100)]
        assert [(message.request_id, sequence) for _, message, sequence, _ in work if type(message) is BookQuery] == [
            (frame, 0) for frame in ordered]
    assert server.state.sequence == 0, "sequencing numbers a turn's commands; running them takes the numbers"


def test_a_frame_the_order_path_stopped_in_goes_on_from_where_it_stopped(pair):
    """A TES's frame naming another TES's order id: the order path sequences the orders before it;
    the Python loop refuses that one and sequences the rest of the frame and the next frame, the
    sequences consecutive."""
    router, dealer = pair
    encode = Codec(ObsRequest).encode
    own, other = 1 << TES_SHIFT, 2 << TES_SHIFT
    dealer.send(encode([submit(own | 1), submit(own | 2), submit(other | 3), submit(own | 4)]))
    dealer.send(encode([submit(own | 5)]))
    assert router.poll(2000) == zmq.POLLIN
    server = Turns(router, {None: Peer(1, False)})
    while router.poll(100):
        server._serve_commands()
    (work,) = server.turns
    assert [(message.order_id, sequence) for _, message, sequence, _ in work] == [
        (own | 1, 1), (own | 2, 2), (other | 3, REFUSED), (own | 4, 3), (own | 5, 4)]
