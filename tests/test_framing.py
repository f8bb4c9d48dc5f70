"""`native.framing.Records` writes exactly the journal's record framing (`servers.journal.HEADER`),
its CRC is zlib's whether folded or not, and a journal writes a group as it writes a list of records."""

import platform
import random
import zlib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from config.settings import JournalConfig
from native.framing import FOLDS, Records, crc32
from servers.journal import HEADER, Journal, read_records


def framed_in_python(records) -> bytes:
    return b"".join(HEADER.pack(len(payload), zlib.crc32(payload, zlib.crc32(sequence.to_bytes(8, "little"))),
                                sequence) + payload for sequence, payload in records)


RECORDS = st.lists(st.tuples(st.integers(0, 2**64 - 1), st.binary(max_size=3000)), max_size=20)


@given(RECORDS)
def test_records_framed_as_they_are_added_are_the_bytes_the_header_says(records):
    """Past the first 4,096 bytes the group's buffer grows, keeping what it held."""
    group = Records()
    for sequence, payload in records:
        group.add(sequence, payload)
    assert bytes(group) == framed_in_python(records)
    assert group.records() == records and len(group) == len(records)
    assert (group.first, group.last) == ((records[0][0], records[-1][0]) if records else (None, None))


def test_the_folded_crc_is_zlibs_on_every_length_and_alignment():
    """Folding takes 16 bytes and more, 16 at a time (four lanes from 64 bytes on), and leaves the
    rest to zlib: every length up to 700 (each remainder, the 16- and 64-byte edges and several
    folds), at each of 16 offsets into
    the buffer, and lengths up to 70,000 bytes; a register of all ones and of zeros included."""
    rng = random.Random(15)
    data = rng.randbytes(71_000)
    for length in range(701):
        for offset in range(16):
            chunk = data[offset:offset + length]
            assert crc32(chunk) == crc32(chunk, folded=False) == zlib.crc32(chunk), (length, offset)
    for length in [rng.randrange(701, 70_000) for _ in range(50)] + [70_000]:
        chunk = data[:length]
        assert crc32(chunk) == zlib.crc32(chunk) == crc32(chunk, folded=False)
    for fill in (b"\x00", b"\xff"):
        assert crc32(fill * 4096) == zlib.crc32(fill * 4096)
    assert crc32(memoryview(data)[3:1003]) == zlib.crc32(data[3:1003])


def test_a_cpu_with_carry_less_multiplication_folds():
    """Else the tests above would hold zlib to itself."""
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    if platform.machine() != "x86_64" or " pclmulqdq" not in flags:
        pytest.skip("not an x86-64 CPU with PCLMULQDQ: the CRC is zlib's alone here")
    assert FOLDS


@given(st.binary(max_size=2000))
def test_the_folded_crc_is_zlibs_on_any_bytes(data):
    assert crc32(data) == crc32(data, folded=False) == zlib.crc32(data)


@pytest.mark.parametrize("sequence, payload, error", [
    (-1, b"negative sequence", OverflowError), (2**64, b"sequence too large", OverflowError),
    (2, "not bytes", TypeError), (2, None, TypeError), (None, b"no sequence", TypeError),
])
def test_a_bad_record_is_not_added_to_the_group(sequence, payload, error):
    group = Records()
    group.add(1, b"ok")
    with pytest.raises(error):
        group.add(sequence, payload)
    assert group.records() == [(1, b"ok")] and bytes(group) == framed_in_python([(1, b"ok")])


def test_an_exported_group_is_read_only_and_cannot_grow():
    group = Records()
    group.add(1, b"x" * 5000)
    view = memoryview(group)
    assert view.readonly and view.nbytes == HEADER.size + 5000
    with pytest.raises(BufferError):
        group.add(2, b"y" * 10_000)
    assert len(group) == 1
    with pytest.raises(BufferError):
        group.clear()
    view.release()
    group.add(2, b"y" * 10_000)
    assert group.records() == [(1, b"x" * 5000), (2, b"y" * 10_000)]
    group.clear()
    assert len(group) == 0 and bytes(group) == b"" and group.records() == [] and group.first is None
    group.add(3, b"z")
    assert group.records() == [(3, b"z")] and (group.first, group.last) == (3, 3)


def test_a_journal_writes_a_framed_group_as_it_writes_a_list_or_a_generator(tmp_path):
    records = [(sequence, bytes([sequence]) * sequence) for sequence in range(1, 200)]
    group = Records()
    for sequence, payload in records[100:150]:
        group.add(sequence, payload)
    journal = Journal(tmp_path, JournalConfig(fsync="never"), 0)
    assert journal.append(records[:100]) and journal.append(group) and journal.append(iter(records[150:]))
    journal.close()
    assert [(record.sequence, record.payload) for record in read_records(tmp_path)] == records


@pytest.mark.parametrize("records, error", [
    ([(2, b"ok"), (-1, b"negative sequence")], OverflowError),
    ([(2, b"ok"), (2**64, b"sequence too large")], OverflowError),
    ([(2, b"ok"), (3, "not bytes")], TypeError),
    ([(2, b"ok"), (3,)], ValueError),
])
def test_a_list_with_a_bad_record_raises_and_nothing_of_it_is_written(tmp_path, records, error):
    journal = Journal(tmp_path, JournalConfig(fsync="never"), 0)
    assert journal.append([(1, b"kept")])
    with pytest.raises(error):
        journal.append(records)
    assert journal.append([(2, b"next")])
    journal.close()
    assert [(record.sequence, record.payload) for record in read_records(tmp_path)] == [(1, b"kept"), (2, b"next")]
