"""`servers.protocol.join_frames` and its C twin: encoded messages joined into frames under a count and a byte
limit; `frame_length` counts a frame's messages; `encoded_prefix` the encoded ones at a queue's head."""

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from native.framing import encoded_prefix
from native.framing import join_frames as native_join
from servers import protocol as p

TEXTS = st.text(alphabet="abcdefghij", max_size=300)


def notices(texts: list[str]) -> list:
    return [p.SessionRejected(p.RejectReason.MALFORMED_MESSAGE, text) for text in texts]


@settings(max_examples=150, deadline=None)
@given(texts=st.lists(TEXTS, max_size=400), max_messages=st.integers(1, 60), max_bytes=st.integers(1, 4_000))
def test_joined_frames_hold_the_messages_in_order_each_as_full_as_the_limits_allow(texts, max_messages, max_bytes):
    """Encoded messages joined: each frame decodes to its messages; none is over a limit unless it
    holds one message; and the next frame's first message would not have fitted in it."""
    encoded = [msgspec.msgpack.encode(message) for message in notices(texts)]
    frames = p.join_frames(encoded, max_messages, max_bytes)
    runs = [msgspec.msgpack.decode(frame) for frame in frames]
    assert [message for run in runs for message in run] == [msgspec.msgpack.decode(m) for m in encoded]
    assert all(run for run in runs)
    for frame, run in zip(frames, runs, strict=True):
        assert len(run) <= max_messages
        assert len(frame) <= max_bytes or len(run) == 1
    sizes = [sum(len(m) for m in encoded[:i]) for i in range(len(encoded) + 1)]
    first = 0
    for run in runs[:-1]:
        last = first + len(run)
        assert len(run) == max_messages or sizes[last + 1] - sizes[first] + p.ARRAY_HEADER_BYTES > max_bytes
        first = last
    assert bool(frames) == bool(texts)


@settings(max_examples=200, deadline=None)
@given(sizes=st.lists(st.integers(0, 300), max_size=300), max_messages=st.integers(0, 60),
       max_bytes=st.integers(1, 4_000), structs=st.lists(st.booleans(), max_size=300))
def test_frames_joined_in_c_are_the_specifications(sizes, max_messages, max_bytes, structs):
    """`native.framing.join_frames` gives `servers.protocol.join_frames`'s frames, byte for byte;
    given ``encode``, the messages that are not yet bytes are encoded first, each once."""
    encoded = [bytes([0xc4, size % 256]) * (size // 2 + 1) for size in sizes]
    assert native_join(encoded, None, max_messages, max_bytes) == p.join_frames(encoded, max_messages, max_bytes)
    codec = msgspec.msgpack.Encoder()
    flags = (structs + [False] * len(sizes))[:len(sizes)]
    mixed = [p.Heartbeat() if struct else message for message, struct in zip(encoded, flags, strict=True)]
    calls = []

    def encode(message):
        calls.append(message)
        return codec.encode(message)

    expected = [message if type(message) is bytes else codec.encode(message) for message in mixed]
    assert native_join(mixed, encode, max_messages, max_bytes) == p.join_frames(expected, max_messages, max_bytes)
    assert len(calls) == sum(type(message) is not bytes for message in mixed)


def test_frames_joined_in_c_take_every_header_size_and_refuse_what_is_not_bytes():
    """Arrays of up to 15, up to 65,535 and more messages (the three msgpack array headers), as
    the specification writes them; a message that is not bytes (and no ``encode``) is refused."""
    for count in (15, 16, 65_535, 65_536, 70_000):
        messages = [b"\xc0"] * count
        assert native_join(messages, None, 100_000, 1 << 20) == p.join_frames(messages, 100_000, 1 << 20)
    with pytest.raises(TypeError, match="message 1 is a Heartbeat"):
        native_join([b"\xc0", p.Heartbeat()], None, 10, 100)
    with pytest.raises(TypeError, match="message 0 is a str"):
        native_join([p.Heartbeat()], lambda message: "not bytes", 10, 100)


@pytest.mark.parametrize("count", [0, 1, 15, 16, 65_535, 65_536, 70_000])
def test_a_frames_length_is_its_array_headers_count(count):
    """Each of the three msgpack array headers: the count `join_frames` (either) wrote, and what
    msgspec decodes."""
    (frame,) = p.join_frames([b"\xc0"] * count, 100_000, 1 << 20) if count else [msgspec.msgpack.encode([])]
    assert p.frame_length(frame) == count == len(msgspec.msgpack.decode(frame))
    if count:
        assert native_join([b"\xc0"] * count, None, 100_000, 1 << 20) == [frame]


def test_a_frame_that_is_not_an_array_has_no_length():
    with pytest.raises(ValueError, match="not a frame: it starts with 0xc0"):
        p.frame_length(b"\xc0")


@given(kinds=st.lists(st.sampled_from(["bytes", "bytearray", "struct", "str"]), max_size=50))
def test_the_encoded_prefix_is_the_run_of_bytes_at_the_head(kinds):
    """Only bytes count (not a bytearray, a Struct or a str), from the first message to the first
    that is not bytes."""
    made = {"bytes": b"\x90", "bytearray": bytearray(b"\x90"), "struct": p.Heartbeat(), "str": "x"}
    messages = [made[kind] for kind in kinds]
    expected = next((i for i, kind in enumerate(kinds) if kind != "bytes"), len(kinds))
    assert encoded_prefix(messages) == expected
