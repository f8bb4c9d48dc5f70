"""`native.framing.frame_records` writes exactly the journal's record framing (`servers.journal.HEADER`)."""

import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from native.framing import frame_records
from servers.journal import HEADER


def framed_in_python(records) -> bytes:
    return b"".join(HEADER.pack(len(payload), zlib.crc32(payload, zlib.crc32(sequence.to_bytes(8, "little"))),
                                sequence) + payload for sequence, payload in records)


@given(st.binary(max_size=8), st.lists(st.tuples(st.integers(0, 2**64 - 1), st.binary(max_size=300)), max_size=20))
def test_records_are_framed_as_the_header_says_after_what_the_buffer_held(before, records):
    buffer = bytearray(before)
    frame_records(records, buffer)
    assert bytes(buffer) == before + framed_in_python(records)


def test_any_sequence_of_records_is_taken_a_generator_too():
    records = [(1, b"a"), (2, b"bc")]
    buffer = bytearray()
    frame_records(iter(records), buffer)
    assert bytes(buffer) == framed_in_python(records)


@pytest.mark.parametrize("records, error", [
    ([(1, b"ok"), (-1, b"negative sequence")], OverflowError),
    ([(1, b"ok"), (2**64, b"sequence too large")], OverflowError),
    ([(1, b"ok"), (2, "not bytes")], TypeError),
    ([(1, b"ok"), (2,)], ValueError),
])
def test_a_bad_record_raises_and_leaves_the_buffer_as_it_was(records, error):
    buffer = bytearray(b"kept")
    with pytest.raises(error):
        frame_records(records, buffer)
    assert buffer == bytearray(b"kept")
