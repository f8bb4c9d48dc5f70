"""The OBS's order path in C (`native.orderpath.OrderPath`) against the OBS's turn as Python
runs it: the same journal entries, replies per destination, market data and shard state for a
turn of mixed work, and the same sequencing of a frame's commands."""

import types

import msgspec
import pytest
import zmq
from hypothesis import given
from hypothesis import strategies as st

from engine.types import CancelReason
from native.commands import CommandReader, OrderCommand
from native.framing import Records
from native.orderpath import note_accepted
from native.sockets import queued
from servers.obs import REFUSED, UNJOURNALED, UNKNOWN_SYMBOL, OrderBookServer, _item
from servers.phases import Guard
from servers.protocol import (
    MAX_BATCH,
    MAX_FRAME_BYTES,
    BookCancel,
    BookQuery,
    BookReplace,
    BookSetClock,
    BookSetPhase,
    BookSubmit,
    CommandRefused,
    Hello,
    HelloReply,
)
from servers.security import NOBODY, Peer
from servers.shard import TES_SHIFT, Shard
from tests.procs import eventually
from tests.test_shard_encoded import SYMBOLS, interleaved, state

_encode = msgspec.msgpack.encode
IDENTITIES = {tes_id: f"tes-{tes_id}".encode() for tes_id in (1, 2, 3)}
"""The DEALER identity of each TES that said Hello (the workload's order ids name TES 1 to 3)."""


def refused(message) -> CommandRefused:
    return CommandRefused(message.symbol, getattr(message, "order_id", 0), 0, "refused")


def obs(shard: Shard, guards: dict) -> types.SimpleNamespace:
    """What `OrderBookServer._execute` reads of its server."""
    return types.SimpleNamespace(state=shard, tes=dict(IDENTITIES), guards=guards, symbols=SYMBOLS, phases_at=1,
                                 entries=Records(), _refuse=refused, _unjournaled=refused)


def spec_turn(server, work: list) -> tuple[dict, dict, list, int]:
    """The turn as the OBS ran it before its order path went to C: each sequenced command
    through `Shard.execute` (the Structs, then msgspec), in the same order, with the same
    routing; and how many volatility interruptions it made."""
    shard, outbox, market_data, entries = server.state, {}, {}, []
    interruptions = 0

    def reply(destination, message):
        if destination is not None:
            outbox.setdefault(destination, []).append(message)

    def execute(identity, command, stamp):
        sequence = shard.sequence + 1
        published = []
        entry, executed, concerned = shard.execute(sequence, stamp, command, published)
        market_data.setdefault(command.symbol, []).extend(map(_encode, published))
        entries.append((sequence, entry))
        reply(identity, executed)
        sent = {identity}
        for tes_id in concerned:
            destination = server.tes.get(tes_id)
            if destination is not None and destination not in sent:
                sent.add(destination)
                reply(destination, executed)

    for identity, message, sequence, stamp in work:
        if sequence > 0:
            execute(identity, message, stamp)
            for symbol in sorted(shard.owed):
                execute(None, server.guards[symbol].interruption(symbol, stamp), stamp)
                interruptions += 1
        elif sequence in (REFUSED, UNJOURNALED):
            reply(identity, refused(message))
        elif type(message) is Hello:
            reply(identity, HelloReply(SYMBOLS, shard.max_order_id(message.tes_id), shard.sequence, True,
                                       shard.last_prices()))
        elif type(message) is BookQuery:
            reply(identity, shard.feeds[message.symbol].view(message.request_id, message.levels))
        else:
            reply(identity, CommandRefused(message.symbol, message.order_id, UNKNOWN_SYMBOL, UNKNOWN_SYMBOL.text))
    return outbox, market_data, entries, interruptions


def encoded(outbox: dict) -> dict:
    return {destination: [message if type(message) is bytes else _encode(message) for message in messages]
            for destination, messages in outbox.items()}


def turns(commands: list, size: int) -> list[list]:
    """``commands`` as turns of work, with what the order path stops at mixed in: refusals,
    commands the journal could not take, Hellos, queries, unknown symbols, the OBS's own clock."""
    work, turns_made, sequence = [], [], 0
    for number, command in enumerate(commands):
        order_id = getattr(command, "order_id", 0)
        identity = IDENTITIES.get(order_id >> TES_SHIFT, IDENTITIES[1])
        sequence += 1
        stamp = 1_700_000_000_000_000_000 + number * 1_000
        if type(command) is BookSetClock:
            identity = None
        work.append((identity, command, sequence, stamp))
        if number % 211 == 0:
            work.append((identity or IDENTITIES[2], command, REFUSED, 0))
        if number % 307 == 0:
            work.append((IDENTITIES[3], command, UNJOURNALED, 0))
        if number % 401 == 0:
            work.append((IDENTITIES[2], Hello(2, None), 0, 0))
            work.append((IDENTITIES[1], BookQuery(number, SYMBOLS[number % 2], 5), 0, 0))
            work.append((IDENTITIES[1], BookCancel("ZZZZ", 1 << TES_SHIFT | 1), 0, 0))
        if len(work) >= size:
            turns_made.append(work)
            work = []
    return turns_made + [work]


def read_in_c(work: list) -> tuple[list, int]:
    """``work`` with each order command the OBS's `CommandReader` takes as it reads it (an
    `OrderCommand`, as a frame of TES commands arrives); how many it took."""
    reader = CommandReader(SYMBOLS, (BookSubmit, BookCancel, BookReplace), CancelReason, MAX_FRAME_BYTES, MAX_BATCH)
    made = []
    for identity, message, sequence, stamp in work:
        read = reader.read(_encode([message]))
        made.append((identity, message if read is None else read[0], sequence, stamp))
    return made, sum(type(item[1]) is OrderCommand for item in made)


@pytest.mark.parametrize(("seed", "banded", "read"), [(4, False, False), (5, True, False), (6, False, True),
                                                      (7, True, True)])
def test_a_turn_through_the_order_path_equals_the_python_turn(seed, banded, read):
    """Turns of mixed work (every kind of item the order path stops at; with bands tight enough
    that fills owe volatility interruptions), its order commands as Structs or as read in C
    (then also in books in a call or halted, which Python runs), give the same bytes and the
    same shard as the Structs through the specification."""
    guards = {"ACME": Guard(0, 20, 5, 10_000), "BOLT": Guard(0, 5, 5, 10_000)} if banded else {}
    live, spec = obs(Shard.empty(SYMBOLS, guards), guards), obs(Shard.empty(SYMBOLS, guards), guards)
    interruptions = taken = 0
    for work in turns(interleaved(3_000, seed), 500):
        if read:
            live_work, count = read_in_c(work)
            taken += count
        else:
            live_work = work
        outbox, market_data, entries = OrderBookServer._execute(live, live_work)
        expected = spec_turn(spec, work)
        assert (encoded(outbox), market_data, entries.records()) == (encoded(expected[0]), expected[1], expected[2])
        assert state(live.state) == state(spec.state)
        interruptions += expected[3]
    assert live.state.sequence > 5_000
    assert (interruptions > 0) == banded
    assert (taken > 5_000) == read


def test_commands_read_in_c_are_their_own_work_items_through_both_paths():
    """Frames of order commands sequenced as the OBS sequences them: read in C, each `OrderCommand`
    is its own item (no tuple), and a turn of them gives what the same commands as Structs give,
    BOLT's run by Python (its book in a call: `_item` unpacks them) and ACME's by the order path."""
    ahead = 4_000_000_000_000_000_000       # a stamp past the clock, which sequencing keeps
    reader = CommandReader(SYMBOLS, (BookSubmit, BookCancel, BookReplace), CancelReason, MAX_FRAME_BYTES, MAX_BATCH)
    live, spec = obs(Shard.empty(SYMBOLS), {}), obs(Shard.empty(SYMBOLS), {})
    for server in (live, spec):
        server.state.execute(1, ahead, BookSetPhase("BOLT", 1), [])
    orders = [command for command in interleaved(1_500, 8) if type(command) in (BookSubmit, BookCancel, BookReplace)]
    sequence = 1
    for start in range(0, len(orders), 100):
        frame = orders[start:start + 100]
        outputs = []
        for server, messages in ((live, reader.read(_encode(frame))), (spec, frame)):
            work = []
            stop, last, _ = server.state.order_path.sequence(work, IDENTITIES[1], messages, 0, None, sequence, ahead)
            assert stop == len(messages) and last == sequence + len(frame)
            assert all(type(item) is (OrderCommand if server is live else tuple) for item in work)
            outbox, market_data, entries = OrderBookServer._execute(server, work)
            outputs.append((encoded(outbox), market_data, entries.records()))
        sequence += len(frame)
        assert outputs[0] == outputs[1]
        assert state(live.state) == state(spec.state)
    assert live.state.sequence == len(orders) + 1 > 1_000
    assert len(live.state.feeds["BOLT"].book) > 0, "Python ran BOLT's commands, in its call"


def test_the_order_path_runs_orders_and_stops_where_python_must_take_over():
    shard = Shard.empty(SYMBOLS)
    submit = [(IDENTITIES[1], BookSubmit("ACME", 1 << TES_SHIFT | i, i % 2, 0, 0, 100, 5), i, i) for i in (1, 2)]
    work = [*submit, (IDENTITIES[1], Hello(1, None), 0, 0), (IDENTITIES[1], BookSetPhase("ACME", 1), 3, 3), *submit]
    outbox, market_data, entries = {}, {}, Records()
    assert shard.order_path.run(work, 0, outbox, market_data, entries, IDENTITIES) == 2
    assert [sequence for sequence, _ in entries.records()] == [1, 2] and (shard.sequence, shard.time) == (2, 2)
    assert len(outbox[IDENTITIES[1]]) == 2 and len(market_data["ACME"]) > 0
    assert shard.order_path.run(work, 2, outbox, market_data, entries, IDENTITIES) == 2, "a Hello is Python's"
    assert shard.order_path.run(work, 3, outbox, market_data, entries, IDENTITIES) == 3, "so is a phase command"
    shard.execute_encoded(3, 3, work[3][1], [])
    assert shard.feeds["ACME"].book.phase == 1
    assert shard.order_path.run(work, 4, outbox, market_data, entries, IDENTITIES) == 4, "a book in CALL is too"
    assert len(entries) == 2 and shard.sequence == 3


def expected_sequencing(messages: list, start: int, tes_id, feeds) -> int:
    """Where `OrderPath.sequence` must stop: the first message that is not an order command on
    an owned symbol that a peer of ``tes_id`` may send (the OBS's `_permits`)."""
    for index in range(start, len(messages)):
        message = messages[index]
        if type(message) not in (BookSubmit, BookCancel) or message.symbol not in feeds:
            return index
        if tes_id is not None and not (tes_id > 0 and message.order_id >> TES_SHIFT == tes_id):
            return index
    return len(messages)


@pytest.mark.parametrize("read", [False, True])
@pytest.mark.parametrize("tes_id", [None, 1, 2, -1, 0])
@pytest.mark.parametrize("since", [0, 4_000_000_000_000_000_000])
def test_sequencing_a_frame_in_c_follows_the_obs_rules(tes_id, since, read):
    """Which messages are sequenced, in order, at consecutive sequences, stamped by the wall clock
    and never before the stamp given (``since``: the past, or a stamp ahead of the clock); the
    order commands as Structs or as read in C (`OrderCommand`)."""
    shard = Shard.empty(SYMBOLS)
    messages = [BookSubmit("ACME", 1 << TES_SHIFT | 1, 0, 0, 0, 100, 5), BookCancel("BOLT", 1 << TES_SHIFT | 2),
                BookSubmit("ACME", 2 << TES_SHIFT | 3, 0, 0, 0, 100, 5), BookSubmit("ZZZZ", 1 << TES_SHIFT | 4, 0, 0,
                                                                                    0, 100, 5),
                Hello(1, None), BookCancel("ACME", (1 << 64) - 1), BookCancel("ACME", 1 << TES_SHIFT | 5)]
    given = [item[1] for item in read_in_c([(None, message, 0, 0) for message in messages])[0]] if read else messages
    assert sum(type(message) is OrderCommand for message in given) == (4 if read else 0)
    start, sequence, stamp = 0, 40, since
    while start < len(messages):
        work = []
        stop, last, stamped = shard.order_path.sequence(work, b"peer", given, start, tes_id, sequence, stamp)
        assert all(item is command for item, command in zip(work, given[start:stop], strict=True)
                   if type(item) is OrderCommand), "a command read in C is its own item: no tuple"
        work = [_item(item) for item in work]
        assert stop == expected_sequencing(messages, start, tes_id, shard.feeds)
        assert [item[1] for item in work] == given[start:stop]
        assert [item[2] for item in work] == list(range(sequence + 1, last + 1))
        assert all(item[0] == b"peer" for item in work)
        assert [item[3] for item in work] == sorted(item[3] for item in work)
        assert all(item[3] >= stamp for item in work) and stamped >= stamp
        assert all(item[3] == since for item in work) if since else all(item[3] > 1.7e18 for item in work)
        if not work:
            assert (last, stamped) == (sequence, stamp)
        start, sequence, stamp = max(stop, start + 1), last, stamped


ORDER_IDS = st.integers(-(1 << 70), 1 << 70) | st.integers(0, 4).map(lambda tes: tes << TES_SHIFT) | st.integers(
    1, 1 << 20).map(lambda n: 1 << TES_SHIFT | n)


def largest(order_ids) -> dict:
    """Per TES id, the largest of ``order_ids`` with its prefix, if above 0, as Python's ints say."""
    found = {}
    for order_id in order_ids:
        if order_id > found.get(order_id >> TES_SHIFT, 0):
            found[order_id >> TES_SHIFT] = order_id
    return found


@given(st.lists(ORDER_IDS, max_size=40))
def test_note_accepted_keeps_each_prefix_largest_id(order_ids):
    """`note_accepted` (in C for an int64, Python's ints beyond) keeps, per TES id, the largest."""
    max_ids = {}
    for order_id in order_ids:
        note_accepted(max_ids, order_id, TES_SHIFT)
    assert max_ids == largest(order_ids)


@given(st.lists(st.tuples(st.integers(1, 3), st.integers(1, 1 << 20), st.booleans()), max_size=30))
def test_the_order_path_keeps_each_prefix_largest_id(orders):
    """Orders accepted through the order path (which keeps one TES's largest id in C until read)
    and ids noted by the Python path (`note_accepted`), interleaved: `max_order_id` and
    `max_order_ids` say the largest of each prefix after each."""
    shard, accepted, done = Shard.empty(SYMBOLS), [], set()
    for sequence, (tes_id, number, through_path) in enumerate(orders, 1):
        order_id = tes_id << TES_SHIFT | number
        if through_path and order_id not in done:
            shard.execute_encoded(sequence, sequence, BookSubmit("ACME", order_id, sequence % 2, 0, 0, 100, 5), [])
            done.add(order_id)
        else:
            note_accepted(shard._max_ids, order_id, TES_SHIFT)
        accepted.append(order_id)
        assert shard.max_order_id(tes_id) == largest(accepted)[tes_id]
    assert shard.max_order_ids() == largest(accepted)


def test_taking_a_turns_frames_in_c_sequences_whole_frames_of_orders_and_hands_over_the_rest():
    """`OrderPath.take` reads the frames queued on a real socket, each wholly order commands its
    sender may send sequenced into the work (the frames' order, consecutive sequences); it stops
    at a frame it cannot take whole, already read (as received, or read and sequenced up to the
    message the Python loop must handle), and within the turn's bounds."""
    reader = CommandReader(SYMBOLS, (BookSubmit, BookCancel, BookReplace), CancelReason, MAX_FRAME_BYTES, MAX_BATCH)
    shard = Shard.empty(SYMBOLS)
    path = shard.order_path
    own, other = Peer(1, False), Peer(2, False)
    context = zmq.Context()
    router, dealer = context.socket(zmq.ROUTER), context.socket(zmq.DEALER)
    try:
        for socket in (router, dealer):
            socket.setsockopt(zmq.LINGER, 0)
        router.bind("inproc://take")
        dealer.setsockopt(zmq.IDENTITY, b"tes-1")
        dealer.connect("inproc://take")

        def submit(tes_id: int, number: int) -> BookSubmit:
            return BookSubmit("ACME", tes_id << TES_SHIFT | number, number % 2, 0, 0, 100, 5)

        def take(anyone: Peer, sequence: int, max_frames: int = 256, max_messages: int = 4096):
            work = []
            taken = path.take(router, False, {}, anyone, NOBODY, reader, work, sequence, 0, max_frames, max_messages)
            return work, taken

        frames = [[submit(1, 1), submit(1, 2)], [submit(1, 3)], [submit(1, 4), Hello(1, None)], [submit(1, 5)]]
        for frame in frames:
            dealer.send(_encode(frame))
        eventually(lambda: queued(router), "nothing reached the router")
        work, (count, sequence, stamp, unread, started) = take(own, 40)
        assert count == 3 and sequence == 43 and stamp > 1.7e18
        assert [(item.identity, item.sequence, item.struct().order_id) for item in work] == [
            (b"tes-1", 41 + i, 1 << TES_SHIFT | 1 + i) for i in range(3)]
        assert unread == ([b"tes-1", _encode(frames[2])], None), "a frame the reader does not take, as received"
        assert started is None

        dealer.send(_encode([submit(1, 6), submit(2, 7), submit(1, 8)]))
        eventually(lambda: queued(router), "nothing reached the router")
        work, (count, sequence, _, unread, started) = take(own, 43)
        assert count == 2 and sequence == 45 and [item.struct().order_id & 0xFF for item in work] == [5, 6]
        assert unread is None
        identity, peer, messages, index = started
        assert (identity, peer, index) == (b"tes-1", own, 1), "stopped at an order of another TES"
        assert [type(message) for message in messages] == [OrderCommand] * 3

        for number in range(9, 14):
            dealer.send(_encode([submit(2, number), submit(2, number)]))
        eventually(lambda: queued(router), "nothing reached the router")
        work, (count, _, _, *stopped) = take(other, 45, max_frames=2)
        assert count == 2 and len(work) == 4 and stopped == [None, None], "at most max_frames frames"
        work, (count, _, _, *stopped) = take(other, 49, max_messages=3)
        assert count == 2 and len(work) == 4 and stopped == [None, None], "no frame after the work holds max_messages"
        work, (count, _, _, *stopped) = take(other, 53)
        assert count == 1 and len(work) == 2 and stopped == [None, None], "until none is queued"
        assert take(other, 55) == ([], (0, 55, 0, None, None))

        dealer.send_multipart([b"", _encode([submit(1, 20)])])
        eventually(lambda: queued(router), "nothing reached the router")
        assert take(own, 55)[1] == (1, 55, 0, ([b"tes-1", b"", _encode([submit(1, 20)])], None), None)
    finally:
        router.close(0)
        dealer.close(0)
        context.term()
