"""`Shard.execute_encoded` (the OBS's order path, encoded in C) against `Shard.execute` (Structs
encoded by msgspec): the same bytes and the same shard state, command by command, on the
advanced workload (stops, icebergs, post-only, self-trade prevention, GTD, phases, the clock)."""

import msgspec
import pytest

from engine.advanced_workload import advanced
from engine.replay import send_row_v2
from engine.types import OrderType, Side, TimeInForce
from servers import shard as shard_module
from servers.phases import Guard
from servers.protocol import (
    BookCancel,
    BookExpireDay,
    BookReplace,
    BookSetClock,
    BookSetPhase,
    BookSubmit,
    join_frames,
)
from servers.shard import TES_SHIFT, Shard

SYMBOLS = ["ACME", "BOLT"]
_encode = msgspec.msgpack.encode


def owned(order_id: int) -> int:
    """A stream's order id under one of three TES prefixes (which one follows from the id)."""
    return (order_id % 3 + 1) << TES_SHIFT | order_id


def protocol_commands(messages: int, seed: int, symbol: str) -> list:
    """The advanced workload's records as the OBS's book commands for ``symbol``."""

    def submit(order_id, side, order_type, tif, price, quantity, **fields):
        return BookSubmit(symbol, owned(order_id), side, order_type, tif, price, quantity, **fields)

    commands = []
    for row in advanced(messages, seed).tolist():
        command = send_row_v2(
            row, submit,
            lambda order_id: BookCancel(symbol, owned(order_id)),
            lambda order_id, price, quantity: BookReplace(symbol, owned(order_id), price, quantity),
            lambda phase: BookSetPhase(symbol, phase),
            lambda time: BookSetClock(symbol, time),
        )
        if command is not None:
            commands.append(command)
    return commands


def interleaved(messages: int, seed: int) -> list:
    """Two symbols' streams, merged, with an end of day now and then."""
    first, second = (protocol_commands(messages, seed + i, symbol) for i, symbol in enumerate(SYMBOLS))
    merged = []
    for i in range(max(len(first), len(second))):
        merged += first[i:i + 1] + second[i:i + 1]
        if i % 997 == 996:
            merged.append(BookExpireDay(SYMBOLS[i % 2]))
    return merged


def state(shard: Shard) -> tuple:
    """Everything of a shard that a command can change."""
    feeds = {
        symbol: (feed.sequence, feed.last_price, feed.quote, feed._indicative, feed.phase_reason, feed.phase_until,
                 feed.book.state_hash())
        for symbol, feed in shard.feeds.items()
    }
    return (shard.sequence, shard.time, dict(shard.traded), sorted(shard.expiries), shard.max_order_ids(),
            dict(shard.phases), set(shard.owed), list(shard.history), feeds)


def run_both(commands: list, guards: dict | None = None) -> tuple[int, int]:
    """Run ``commands`` through both paths, asserting equality at every step; the commands
    `NativeBook.execute_encoded` ran and the ones that fell back to `Shard.execute`."""
    spec, encoded = Shard.empty(SYMBOLS, guards), Shard.empty(SYMBOLS, guards)
    in_c = 0
    for sequence, command in enumerate(commands, 1):
        time = 1_700_000_000_000_000_000 + sequence * 1_000
        feed = encoded.feeds[command.symbol]
        phase = feed.book.phase
        published, written = [], []
        expected = spec.execute(sequence, time, command, published)
        assert encoded.execute_encoded(sequence, time, command, written) == expected, (sequence, command)
        assert written == [_encode(message) for message in published], (sequence, command)
        in_c += type(command) in (BookSubmit, BookCancel, BookReplace) and phase == 0
        if sequence % 101 == 0 or encoded.owed:
            assert state(encoded) == state(spec), (sequence, command)
    assert state(encoded) == state(spec)
    return in_c, len(commands) - in_c


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_encoded_path_equals_the_spec_on_the_advanced_workload(seed):
    in_c, elsewhere = run_both(interleaved(4_000, seed))
    assert in_c > 5_000 and elsewhere > 50, "both paths ran"


def test_the_encoded_path_owes_the_same_volatility_interruptions():
    """Tight bands: fills outside them owe an interruption, judged from the fills' prices."""
    guards = {"ACME": Guard(0, 20, 5, 10_000), "BOLT": Guard(0, 5, 5, 10_000)}
    spec = Shard.empty(SYMBOLS, guards)
    commands = interleaved(3_000, 9)
    run_both(commands, guards)
    owed = 0
    for sequence, command in enumerate(commands, 1):
        spec.execute(sequence, sequence, command, [])
        owed += bool(spec.owed)
        spec.owed.clear()
    assert owed > 10, "the bands were breached"


@pytest.mark.parametrize("command", [
    BookSubmit("ACME", 1 << 63, 0, 0, 0, 100, 1),
    BookSubmit("ACME", 5, 0, 0, 0, 100, (1 << 64) - 1),
    BookCancel("ACME", 1 << 63),
    BookReplace("ACME", 1, 1 << 63, 1),
    BookSubmit("ACME", (2 << TES_SHIFT) | 9, 1, 0, 0, -3, 1),
    BookSubmit("ACME", (3 << TES_SHIFT) | 9, 7, 0, 0, 101, 1),
    BookCancel("ACME", 12345),
    BookSubmit("ACME", (1 << TES_SHIFT) | 9, Side.SELL, OrderType.LIMIT, TimeInForce.IOC, 99, 2, "désk-ü" * 9,
               (1 << 63) - 1),
    BookSubmit("ACME", (1 << TES_SHIFT) | 9, 0, 0, 0, 99, 2, "", 1 << 63),
])
def test_rejects_and_fields_beyond_int64_answer_alike(command):
    """Beyond int64, `NativeBook.execute_encoded` declines and `Shard.execute` rejects; other
    rejects are encoded in C; either way the bytes match, a command's own included (written in C
    from its fields: enum members, a long non-ASCII account, a client order id beyond int64 that
    only the journal carries)."""
    setup = [BookSubmit("ACME", (1 << TES_SHIFT) | 1, 1, 0, 0, 101, 5),
             BookSubmit("ACME", (1 << TES_SHIFT) | 2, 0, 0, 0, 99, 5)]
    run_both(setup + [command] + setup[:1])


def test_a_sweep_publishes_thousands_of_messages_in_frames_within_the_limits():
    """One market order through 3,000 levels: Trades, DepthUpdates and a Quote, joined into
    frames within the byte and message limits that decode to the same messages."""
    shard = Shard.empty(SYMBOLS)
    for i in range(3_000):
        shard.execute_encoded(i + 1, 0, BookSubmit("ACME", i + 1, 1, 0, 0, 1_000 + i, 2), [])
    published = []
    shard.execute_encoded(3_001, 5, BookSubmit("ACME", 9_999, 0, 1, 1, 0, 6_000), published)
    assert len(published) == 6_001
    frames = join_frames(published, max_messages=1_000, max_bytes=16_384)
    assert all(len(frame) <= 16_384 for frame in frames)
    fewest = -(-sum(map(len, published)) // 16_384)
    assert fewest <= len(frames) <= fewest + 1, "each frame filled before the next"
    decoded = [msgspec.msgpack.decode(frame) for frame in frames]
    assert [message for frame in decoded for message in frame] == [msgspec.msgpack.decode(m) for m in published]
    assert max(map(len, decoded)) <= 1_000
    assert join_frames([]) == [] and join_frames([b"\xc0" * 50], max_bytes=10) == [b"\x91" + b"\xc0" * 50]


def test_a_command_whose_fields_moved_is_refused_at_import(monkeypatch):
    """`NativeBook.execute_encoded` reads fields by position: a Struct that moved one is caught."""
    class Moved(msgspec.Struct, tag="BookCancel"):
        symbol: str
        side: int
        order_id: int

    monkeypatch.setattr(shard_module, "_ORDER_KINDS", {Moved: 1})
    with pytest.raises(ImportError, match="Moved.order_id is not field 1"):
        shard_module._check_encoded_fields()


def test_a_command_tagged_otherwise_is_refused_at_import(monkeypatch):
    """`NativeBook.execute_encoded` writes the command's tag into its journal entry: a Struct
    tagged otherwise than it writes is caught."""
    class Renamed(msgspec.Struct, tag=True):
        symbol: str
        order_id: int

    monkeypatch.setattr(shard_module, "_ORDER_KINDS", {Renamed: 1})
    with pytest.raises(ImportError, match="Renamed is tagged 'Renamed', not 'BookCancel'"):
        shard_module._check_encoded_fields()


def test_a_sweep_through_the_orders_of_many_tes_concerns_each_once_in_order():
    """A market order through resting orders of 40 TES (three of them holding two), then a cancel:
    the TES ids each concerns, in the spec's order, beyond the 16 the native path keeps on its stack."""
    owners = [*range(1, 41), 3, 17, 33]
    resting = [BookSubmit("ACME", (tes_id << TES_SHIFT) | index, 1, 0, 0, 100 + tes_id % 7, 2)
               for index, tes_id in enumerate(owners, 1)]
    sweep = BookSubmit("ACME", (41 << TES_SHIFT) | 1, 0, 1, 1, 0, 1_000)
    run_both([*resting, sweep, BookCancel("ACME", resting[0].order_id)])
    spec = Shard.empty(SYMBOLS)
    for sequence, command in enumerate(resting, 1):
        spec.execute(sequence, sequence, command, [])
    _, _, concerned = spec.execute(len(resting) + 1, 0, sweep, [])
    assert concerned[0] == 41 and sorted(concerned) == list(range(1, 42))
