"""The OBS's order commands read in C (`native.commands.CommandReader`) against msgspec, the
decoder it stands in for: whatever frame the reader takes, msgspec decodes to the same commands;
the frames a TES sends, it takes; everything else it leaves to msgspec."""

import struct

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.types import CancelReason
from native.commands import CommandReader, OrderCommand
from servers.protocol import (
    MAX_BATCH,
    MAX_FRAME_BYTES,
    BookCancel,
    BookQuery,
    BookReplace,
    BookSubmit,
    Codec,
    Hello,
    ObsRequest,
)

SYMBOLS = ["ACME", "BOLT", "SIXTEEN-LETTERS!", "Ä-NOT-ASCII"]
CLASSES = (BookSubmit, BookCancel, BookReplace)
CODEC = Codec(ObsRequest)
READER = CommandReader(SYMBOLS, CLASSES, CancelReason, MAX_FRAME_BYTES, MAX_BATCH)
INT64 = st.integers(-(2**63), 2**63 - 1)
INTS = INT64 | st.integers(-40, 300) | st.sampled_from([-(2**63), 2**63 - 1, -33, -32, 127, 128, 255, 256, 2**32])
TEXT = (st.text(st.characters(codec="ascii"), max_size=70) | st.text(max_size=20)
        | st.builds("{}{}{}".format, st.text(max_size=2), st.characters(min_codepoint=0x80), st.text(max_size=2)))
SYMBOL = (st.sampled_from(SYMBOLS[:3]) | st.sampled_from(["", "ZZZZ", "acme", "SEVENTEEN-LETTERS", SYMBOLS[3]])
          | st.text(max_size=3))
"""Half the time a symbol the reader takes."""


def decoded(frame):
    """What the OBS's codec makes of ``frame``: its messages, or the exception it raises."""
    try:
        return CODEC.decode(frame)
    except (msgspec.DecodeError, msgspec.ValidationError, ValueError) as exc:
        return exc


def assert_read_as_msgspec_decodes(frame, reader=READER):
    """If ``reader`` takes ``frame``, msgspec decodes it to the same Structs, field types included;
    returns whether it took it."""
    read = reader.read(frame)
    if read is None:
        return False
    expected = decoded(frame)
    assert not isinstance(expected, Exception), (frame, expected)
    assert all(type(command) is OrderCommand for command in read)
    structs = [command.struct() for command in read]
    assert structs == expected
    assert [[type(value) for value in msgspec.structs.astuple(s)] for s in structs] == [
        [type(value) for value in msgspec.structs.astuple(s)] for s in expected]
    assert [command.symbol for command in read] == [s.symbol for s in expected]
    return True


commands = st.one_of(
    st.builds(BookSubmit, SYMBOL, INTS, INTS, INTS, INTS, INTS, INTS, TEXT, INTS, INTS, INTS, INTS, INTS, INTS, INTS),
    st.builds(BookCancel, SYMBOL, INTS, INTS, st.sampled_from(CancelReason)),
    st.builds(BookReplace, SYMBOL, INTS, INTS, INTS, INTS),
)


def readable(command) -> bool:
    """Whether the reader must take ``command`` (as msgspec encodes it)."""
    account = getattr(command, "account", "")
    return (command.symbol in SYMBOLS and command.symbol.isascii() and command.symbol and len(command.symbol) <= 16
            and account.isascii() and len(account) <= 64)


@given(st.lists(commands, max_size=12))
def test_a_tes_frame_of_order_commands_reads_as_msgspec_decodes_it(messages):
    frame = CODEC.encode(messages)
    taken = assert_read_as_msgspec_decodes(frame)
    assert taken == all(map(readable, messages)), messages


def frame_mutations():
    """A frame as a TES writes it, then bytes flipped, cut, inserted or appended."""
    edits = st.lists(st.tuples(st.sampled_from(["flip", "cut", "insert", "append", "truncate"]),
                               st.integers(0, 10_000), st.integers(0, 255)), min_size=1, max_size=3)
    return st.tuples(st.lists(commands, min_size=1, max_size=6), edits)


@given(frame_mutations())
def test_any_frame_the_reader_takes_msgspec_decodes_to_the_same_commands(case):
    messages, edits = case
    frame = bytearray(CODEC.encode(messages))
    for edit, at, byte in edits:
        at %= len(frame) + 1
        if edit == "flip" and at < len(frame):
            frame[at] ^= byte or 1
        elif edit == "cut" and at < len(frame):
            del frame[at]
        elif edit == "insert":
            frame.insert(at, byte)
        elif edit == "append":
            frame.append(byte)
        elif edit == "truncate":
            del frame[at:]
    assert_read_as_msgspec_decodes(bytes(frame))


def pack(value, wide: bool) -> bytes:
    """``value`` (an int or str) as msgpack, in its widest form if ``wide`` (msgspec writes the
    smallest): every form a reader meets from another writer."""
    if not wide:
        return msgspec.msgpack.encode(value)
    if isinstance(value, str):
        return b"\xdb" + struct.pack(">I", len(value.encode())) + value.encode()
    return b"\xd3" + struct.pack(">q", value) if value < 0 else b"\xcf" + struct.pack(">Q", value)


@given(st.lists(commands.filter(readable), min_size=1, max_size=8), st.randoms(use_true_random=False))
def test_ints_and_strings_in_other_forms_read_as_msgspec_decodes_them(messages, random):
    frame = b"\xdd" + struct.pack(">I", len(messages))
    for message in messages:
        values = [type(message).__name__, *msgspec.structs.astuple(message)]
        frame += b"\xdc" + struct.pack(">H", len(values))
        frame += b"".join(pack(int(v) if isinstance(v, int) else v, random.random() < 0.5) for v in values)
    assert assert_read_as_msgspec_decodes(frame)


GOOD = BookSubmit("ACME", 1 << 48 | 1, 0, 0, 0, 100, 5, "trader-1", 7)


@pytest.mark.parametrize(("frame", "why"), [
    (CODEC.encode([GOOD, Hello(1, None)]), "another message in the frame"),
    (CODEC.encode([BookQuery(1, "ACME", 5)]), "a query"),
    (CODEC.encode([GOOD])[:-1], "cut short"),
    (CODEC.encode([GOOD]) + b"\x00", "a byte after the array"),
    (CODEC.encode([GOOD]), "as it is (taken: the control)"),
    (CODEC.encode([[*msgspec.structs.astuple(GOOD)[:7]]]), "an untagged array"),
    (msgspec.msgpack.encode([["BookSubmit", "ACME", 1, 0, 0, 0, 100, 5]]), "a submit without its last fields"),
    (CODEC.encode([BookSubmit("ZZZZ", 1, 0, 0, 0, 100, 5)]), "a symbol the shard does not own"),
    (CODEC.encode([BookSubmit("Ä-NOT-ASCII", 1, 0, 0, 0, 100, 5)]), "a symbol not in ASCII"),
    (CODEC.encode([BookSubmit("ACME", 1, 0, 0, 0, 100, 5, "é")]), "an account not in ASCII"),
    (CODEC.encode([BookSubmit("ACME", 1, 0, 0, 0, 100, 5, "a" * 65)]), "an account too long"),
    (msgspec.msgpack.encode([["BookCancel", "ACME", 1, 0, 99]]), "a cancel reason that is none"),
    (msgspec.msgpack.encode([["BookCancel", "ACME", 2**63, 0, 0]]), "an id beyond int64"),
    (msgspec.msgpack.encode([["BookCancel", "ACME", True, 0, 0]]), "a bool for an int"),
    (msgspec.msgpack.encode([["BookCancel", "ACME", 1.0, 0, 0]]), "a float for an int"),
    (msgspec.msgpack.encode([["BookCancel", b"ACME", 1, 0, 0]]), "bytes for the symbol"),
    (msgspec.msgpack.encode({"BookCancel": 1}), "not an array"),
    (b"", "nothing"),
    (b"\xc1", "a byte msgpack never uses"),
])
def test_what_the_reader_leaves_to_msgspec(frame, why):
    taken = assert_read_as_msgspec_decodes(frame)
    assert taken == why.startswith("as it is"), why


def test_a_frame_over_the_limits_is_left_to_msgspec_which_refuses_it():
    small = CommandReader(SYMBOLS, CLASSES, CancelReason, 200, 3)
    assert len(small.read(CODEC.encode([BookCancel("ACME", 1)] * 3))) == 3
    assert small.read(CODEC.encode([BookCancel("ACME", 1)] * 4)) is None
    assert small.read(CODEC.encode([BookSubmit("ACME", 1, 0, 0, 0, 1, 1, "a" * 64)] * 3)) is None
    assert READER.read(CODEC.encode([BookCancel("ACME", 1)] * (MAX_BATCH + 1))) is None
    assert len(READER.read(memoryview(CODEC.encode([BookCancel("ACME", 1)] * MAX_BATCH)))) == MAX_BATCH


def test_the_symbols_read_are_the_shards_own_strings():
    symbols = [f"S{i}" for i in range(100)]
    reader = CommandReader(symbols, CLASSES, CancelReason, MAX_FRAME_BYTES, MAX_BATCH)
    read = reader.read(CODEC.encode([BookCancel(f"S{i}", i) for i in range(100)]))
    assert all(command.symbol is symbol for command, symbol in zip(read, symbols, strict=True))
    assert reader.read(CODEC.encode([BookCancel("S100", 1)])) is None


def test_the_reader_refuses_commands_whose_fields_moved():
    class BookCancel(msgspec.Struct, frozen=True, array_like=True, tag=True):
        order_id: int
        symbol: str

    with pytest.raises(TypeError, match="rebuild"):
        CommandReader(SYMBOLS, (BookSubmit, BookCancel, BookReplace), CancelReason, MAX_FRAME_BYTES, MAX_BATCH)
