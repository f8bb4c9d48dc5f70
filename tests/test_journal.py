"""The OBS journal, snapshots and recovery, in process (`servers.journal`, `servers.shard`), and the
operator's ``journal check`` and ``journal cut`` (`servers.journal_admin`; run as ``main.py`` twice)."""

import errno
import json
import os
import shutil
import struct
import subprocess
import sys
import time
import zlib
from itertools import pairwise

import msgspec
import numpy as np
import pytest
from obs_streams import SYMBOLS, commands
from procs import REPO

import main
from config.settings import JournalConfig, ShardConfig
from engine.messages import OrderFilled
from engine.snapshot import ORDER_DTYPE, BookSnapshot, id_records_of_ranges
from servers import journal
from servers.journal import (
    HEADER,
    JOURNAL_FILE,
    DirectoryLock,
    Journal,
    ShardSnapshot,
    SymbolSnapshot,
    read_records,
    read_snapshot,
    read_snapshots,
    write_snapshot,
)
from servers.journal_admin import CutRefused, check, cut, shard_journal
from servers.phases import PhaseState
from servers.protocol import Executed, JournalEntry
from servers.shard import RecoveryError, Shard, decode_entry, recover

ENCODE = msgspec.msgpack.Encoder().encode


def payloads(commands, first):
    """Journal records of bare ``commands`` from sequence ``first`` (what journals before entries hold)."""
    return [(first + i, ENCODE(command)) for i, command in enumerate(commands)]


def commands_in(records):
    """The command of each record, whether it holds an entry or a bare command."""
    decoded = [decode_entry(record.payload) for record in records]
    return [entry.command if isinstance(entry, JournalEntry) else entry for entry in decoded]
BATCH = JournalConfig()


def run(directory, stream, config=BATCH, group=10, snapshot_every=None):
    """Recover, then feed ``stream`` the way the OBS does: sequence and stamp (time: the
    sequence in microseconds), execute, journal the group's entries.

    Returns the shard and every market-data message emitted live.
    """
    shard, log = recover(directory, SYMBOLS, config)
    market_data = []
    last_snapshot = shard.restored_sequence
    for _ in journaled(shard, log, stream, group, market_data):
        if snapshot_every and shard.sequence - last_snapshot >= snapshot_every:
            log.flush()
            write_snapshot(directory, shard.snapshot(log.offset))
            last_snapshot = shard.sequence
    log.close()
    return shard, market_data


def journaled(shard, log, stream, group, market_data):
    """Execute ``stream`` on ``shard`` and journal it ``group`` commands at a time; yields after each group."""
    for start in range(0, len(stream), group):
        entries = []
        for command in stream[start : start + group]:
            sequence = shard.sequence + 1
            entry, _, _ = shard.execute(sequence, sequence * 1000, command, market_data)
            entries.append((sequence, entry))
        log.append(entries)
        yield


def state(shard):
    """Everything recovery must reproduce."""
    return {
        "sequence": shard.sequence,
        "books": {s: (f.book.state_hash(), f.sequence, f.last_price, f.snapshot()) for s, f in shard.feeds.items()},
        "max_ids": {tes: shard.max_order_id(tes) for tes in (0, 1, 2, 3)},
    }


def journal_bytes(directory):
    return (directory / JOURNAL_FILE).read_bytes()


def files(directory):
    return {path.name: path.read_bytes() for path in directory.iterdir()}


# ---------------------------------------------------------------- the journal file


def test_records_round_trip_with_consecutive_sequences(tmp_path):
    stream = commands(50)
    run(tmp_path, stream, group=7)
    records = list(read_records(tmp_path))
    assert [r.sequence for r in records] == list(range(1, 51))
    assert commands_in(records) == stream
    assert records[-1].end == len(journal_bytes(tmp_path))
    length, _, sequence = HEADER.unpack_from(journal_bytes(tmp_path))
    assert (sequence, journal_bytes(tmp_path)[HEADER.size : HEADER.size + length]) == (1, records[0].payload)


@pytest.mark.parametrize(("policy", "syncs_per_group"), [("batch", 1), ("never", 0)])
def test_append_writes_a_group_in_one_write_and_fsyncs_per_policy(tmp_path, monkeypatch, policy, syncs_per_group):
    """One write per group, into room written ahead once (ROOM_BYTES of zeros past the group)."""
    calls = {"write": 0, "room": 0, "sync": 0}
    real_pwrite, real_sync = journal.os.pwrite, journal._sync

    def counting_pwrite(fd, data, offset):
        calls["room" if zeros(data) else "write"] += 1
        return real_pwrite(fd, data, offset)

    def counting_sync(fd):
        calls["sync"] += 1
        real_sync(fd)

    log = Journal(tmp_path, JournalConfig(fsync=policy), 0)
    monkeypatch.setattr(journal.os, "pwrite", counting_pwrite)
    monkeypatch.setattr(journal, "_sync", counting_sync)
    stream = commands(1000)
    log.append(payloads(stream[:500], 1))
    room = calls["room"]
    assert room >= 1 and calls == {"write": 1, "room": room, "sync": syncs_per_group}
    log.append(payloads(stream[500:], 501))
    assert calls == {"write": 2, "room": room, "sync": 2 * syncs_per_group}, "the second group fits in the room"
    assert log.fsyncs == calls["sync"], "the status files' count of fsyncs"
    log.flush()
    assert calls["sync"] == max(2 * syncs_per_group, 1) == log.fsyncs
    log.close()
    assert [r.sequence for r in read_records(tmp_path)] == list(range(1, 1001))


def test_interval_policy_fsyncs_on_its_own_thread_at_most_once_per_interval(tmp_path, monkeypatch):
    syncs = []
    monkeypatch.setattr(journal, "_sync", lambda fd: syncs.append(time.monotonic()))

    def wait_for(count, within):
        deadline = time.monotonic() + within
        while len(syncs) < count:
            assert time.monotonic() < deadline, f"{len(syncs)} fsyncs, expected {count}"
            time.sleep(0.005)

    # an interval long beside a stall of the test's thread or of the fsync thread on a busy
    # machine, so that "at once" (under half of it) and "a whole interval later" stay apart
    log = Journal(tmp_path, JournalConfig(fsync="interval", fsync_interval_ms=1000), 0)
    stream = commands(4)
    appended = time.monotonic()
    log.append(payloads([stream[0]], 1))
    wait_for(1, 5)
    assert syncs[0] - appended < 0.5, "the first append after a quiet spell is fsynced at once"
    log.append(payloads([stream[1]], 2))
    log.append(payloads([stream[2]], 3))
    wait_for(2, 5)
    assert syncs[1] - syncs[0] >= 0.99, "appends within the interval wait for it"
    time.sleep(1.1)
    assert len(syncs) == 2, "nothing written, nothing to fsync"
    appended = time.monotonic()
    log.append(payloads([stream[3]], 4))
    wait_for(3, 5)
    assert syncs[2] - appended < 0.5, "after a quiet interval, at once again"
    log.close()
    assert len(syncs) == 3, "close has nothing left to fsync"
    assert [r.sequence for r in read_records(tmp_path)] == [1, 2, 3, 4]


def test_close_fsyncs_what_the_interval_thread_has_not_yet(tmp_path, monkeypatch):
    syncs = []
    monkeypatch.setattr(journal, "_sync", syncs.append)
    log = Journal(tmp_path, JournalConfig(fsync="interval", fsync_interval_ms=10_000), 0)
    stream = commands(2)
    log.append(payloads([stream[0]], 1))
    deadline = time.monotonic() + 1
    while not syncs:
        assert time.monotonic() < deadline
        time.sleep(0.005)
    log.append(payloads([stream[1]], 2))
    started = time.monotonic()
    log.close()
    assert len(syncs) == 2 and time.monotonic() - started < 1, "close does not wait out the interval"


@pytest.mark.parametrize("cut", [1, HEADER.size - 1, HEADER.size, HEADER.size + 3])
def test_truncated_tail_is_cut_off_into_a_side_file_and_appending_continues_after_it(tmp_path, cut):
    stream = commands(30)
    run(tmp_path, stream[:20], group=5)
    records = list(read_records(tmp_path))
    data = journal_bytes(tmp_path)
    good = records[-2].end
    torn = good + min(cut, records[-1].end - good - 1)
    (tmp_path / JOURNAL_FILE).write_bytes(data[:torn])
    assert [r.sequence for r in read_records(tmp_path)] == list(range(1, 20))
    shard, _ = run(tmp_path, stream[19:], group=5)
    assert (tmp_path / f"{JOURNAL_FILE}.torn-{good}").read_bytes() == data[good:torn]
    records = list(read_records(tmp_path))
    assert commands_in(records) == stream
    assert records[-1].end == len(journal_bytes(tmp_path)), "no torn bytes left between records"
    fresh, _ = run(tmp_path / "again", stream)
    assert state(shard) == state(fresh)


def crashed_with_room(directory, stream, group=5):
    """Journal ``stream`` and leave the file as a process killed with the journal open does:
    its records, then the room written ahead (the lock goes with the process). The bytes."""
    shard, log = recover(directory, SYMBOLS, BATCH)
    for _ in journaled(shard, log, stream, group, []):
        pass
    data = journal_bytes(directory)
    assert len(data) > log.offset and zeros(data[log.offset:]), "room written ahead"
    assert [r.end for r in read_records(directory)][-1] == log.offset, "the room ends the records"
    os.close(log._fd)
    log._lock.release()
    return data


def test_close_cuts_off_the_room_written_ahead(tmp_path):
    data = crashed_with_room(tmp_path / "crashed", commands(20))
    run(tmp_path, commands(20))
    assert journal_bytes(tmp_path) == data[: len(journal_bytes(tmp_path))]
    assert list(read_records(tmp_path))[-1].end == len(journal_bytes(tmp_path))


def test_room_left_by_a_crash_is_kept_and_the_next_records_go_into_it(tmp_path, caplog):
    stream = commands(40)
    data = crashed_with_room(tmp_path, stream[:20])
    shard, _ = run(tmp_path, stream[20:])
    assert "torn" not in caplog.text and not list(tmp_path.glob(f"{JOURNAL_FILE}.*"))
    records = list(read_records(tmp_path))
    assert commands_in(records) == stream
    assert journal_bytes(tmp_path)[: records[19].end] == data[: records[19].end]
    assert records[-1].end == len(journal_bytes(tmp_path))
    fresh, _ = run(tmp_path / "again", stream)
    assert state(shard) == state(fresh)


def test_a_torn_group_in_the_room_is_cut_off_with_it_into_a_side_file(tmp_path):
    stream = commands(30)
    data = crashed_with_room(tmp_path, stream[:20])
    good = list(read_records(tmp_path))[-1].end
    torn = bytearray(data)
    torn[good : good + 7] = b"\x40torn!!"
    (tmp_path / JOURNAL_FILE).write_bytes(bytes(torn))
    shard, _ = run(tmp_path, stream[20:])
    assert (tmp_path / f"{JOURNAL_FILE}.torn-{good}").read_bytes() == bytes(torn[good:])
    records = list(read_records(tmp_path))
    assert commands_in(records) == stream and records[-1].end == len(journal_bytes(tmp_path))
    fresh, _ = run(tmp_path / "again", stream)
    assert state(shard) == state(fresh)


class Statvfs:
    """`os.fstatvfs` of a file system with ``free`` bytes available."""

    def __init__(self, free):
        self.f_bavail, self.f_frsize = free // 4096, 4096


@pytest.mark.parametrize("free", [journal.ROOM_FREE_BYTES - 4096, journal.ROOM_FREE_BYTES])
def test_no_room_is_written_on_a_file_system_short_of_space(tmp_path, monkeypatch, free):
    monkeypatch.setattr(journal.os, "fstatvfs", lambda fd: Statvfs(free))
    log = Journal(tmp_path, BATCH, 0)
    assert log.append(payloads(commands(10), 1))
    size = len(journal_bytes(tmp_path))
    assert size == log.offset if free < journal.ROOM_FREE_BYTES else size >= log.offset + journal.ROOM_BYTES
    log.close()
    assert commands_in(read_records(tmp_path)) == commands(10)


def test_room_is_written_in_aligned_pieces_without_a_gap_to_its_size_past_the_group(tmp_path, monkeypatch):
    """Each write of zeros lies within one aligned block of `ROOM_PIECE_BYTES` (the page cache's
    folios stay small, so each record's write is cheap); together they leave no gap and reach
    `ROOM_BYTES` past the group that needed room."""
    pieces = []
    real_pwrite = journal.os.pwrite

    def recording_pwrite(fd, data, offset):
        if zeros(data):
            pieces.append((offset, len(data)))
        return real_pwrite(fd, data, offset)

    monkeypatch.setattr(journal.os, "pwrite", recording_pwrite)
    log = Journal(tmp_path, JournalConfig(fsync="never"), 0)
    records = [(sequence, bytes([sequence % 251 + 1]) * 7001) for sequence in range(1, 301)]
    assert log.append(records[:30])
    assert len(journal_bytes(tmp_path)) == log.offset + journal.ROOM_BYTES, "room to its size past the group"
    for first in range(30, 300, 30):
        assert log.append(records[first : first + 30])
    piece = journal.ROOM_PIECE_BYTES
    assert pieces[0][0] == 0 and any(offset % piece for offset, _ in pieces), "room made again from mid-piece"
    assert all(0 < size <= piece and offset // piece == (offset + size - 1) // piece for offset, size in pieces)
    assert all(offset + size == after for (offset, size), (after, _) in pairwise(pieces))
    end = pieces[-1][0] + pieces[-1][1]
    assert len(journal_bytes(tmp_path)) == end > log.offset
    log.close()
    assert [(record.sequence, record.payload) for record in read_records(tmp_path)] == records


@pytest.mark.parametrize("written", [0, 4096, None])
def test_room_that_cannot_be_written_leaves_the_group_written_past_it(tmp_path, monkeypatch, written):
    """The room's write writes ``written`` bytes, or fails (None): the group goes in all the same."""
    real_pwrite = journal.os.pwrite

    def short_room(fd, data, offset):
        if not zeros(data):
            return real_pwrite(fd, data, offset)
        if written is None:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_pwrite(fd, data[:written], offset)

    monkeypatch.setattr(journal.os, "pwrite", short_room)
    log = Journal(tmp_path, BATCH, 0)
    stream = commands(40)
    for first in range(0, 40, 10):
        assert log.append(payloads(stream[first : first + 10], first + 1))
    log.close()
    assert commands_in(read_records(tmp_path)) == stream
    assert list(read_records(tmp_path))[-1].end == len(journal_bytes(tmp_path))


DAMAGE = {
    "length": (3, 0x40, "length field 10"),
    "crc": (4, 0x01, "CRC mismatch"),
    "sequence": (8, 0x01, "CRC mismatch"),
    "payload": (HEADER.size + 2, 0x40, "CRC mismatch"),
}
"""Field -> (its byte in the record, the bits flipped there, what recovery says is wrong)."""


def damage(directory, stream, record, field, snapshot_every=None):
    """Journal ``stream``, then flip one byte of ``field`` in record ``record`` (0-based).

    Returns the offsets where the records start (and the last ends) and the damaged file's bytes.
    """
    run(directory, stream, group=5, snapshot_every=snapshot_every)
    starts = [0] + [r.end for r in read_records(directory)]
    data = bytearray(journal_bytes(directory))
    byte, bits, _ = DAMAGE[field]
    data[starts[record] + byte] ^= bits
    (directory / JOURNAL_FILE).write_bytes(bytes(data))
    return starts, bytes(data)


@pytest.mark.parametrize("field", DAMAGE)
@pytest.mark.parametrize("record", [0, 15, 28])
def test_damage_followed_by_valid_records_stops_recovery_and_changes_nothing(tmp_path, field, record):
    starts, data = damage(tmp_path, commands(30), record, field)
    (tmp_path / "snapshot-7.msgpack.tmp").write_bytes(b"half written")
    with pytest.raises(RecoveryError) as raised:
        recover(tmp_path, SYMBOLS, JournalConfig())
    message = str(raised.value)
    offset = starts[record]
    assert f"damaged at byte {offset}, where sequence {record + 1} was expected: {DAMAGE[field][2]}" in message
    assert f"{record} good records precede it (read from byte 0)" in message
    assert f"the next valid record is at byte {starts[record + 1]} (sequence {record + 2})" in message
    assert f"{len(data) - offset} bytes follow from byte {offset}" in message
    assert f"restore the journal directory {tmp_path} from a backup" in message
    assert message.endswith(f"run: python main.py journal cut --shard SHARD --at {offset}")
    assert files(tmp_path) == {JOURNAL_FILE: data, "snapshot-7.msgpack.tmp": b"half written"}, "nothing changed"


@pytest.mark.parametrize("field", DAMAGE)
def test_damaged_last_record_is_a_torn_tail_moved_aside_and_appending_continues(tmp_path, field, caplog):
    stream = commands(40)
    starts, data = damage(tmp_path, stream[:30], 29, field)
    shard, _ = run(tmp_path, stream[29:])
    records = list(read_records(tmp_path))
    assert commands_in(records) == stream
    assert journal_bytes(tmp_path)[: starts[29]] == data[: starts[29]]
    assert (tmp_path / f"{JOURNAL_FILE}.torn-{starts[29]}").read_bytes() == data[starts[29] :]
    assert f"cut off a torn tail at byte {starts[29]}" in caplog.text
    assert f"{len(data) - starts[29]} bytes" in caplog.text
    fresh, _ = run(tmp_path / "again", stream)
    assert state(shard) == state(fresh)


def rewrite_last_record(directory, sequence, payload):
    """Replace the journal's last record by a CRC-valid one: what no torn write leaves."""
    *_, before, _ = [0] + [r.end for r in read_records(directory)]
    crc = zlib.crc32(payload, zlib.crc32(struct.pack("<Q", sequence)))
    data = journal_bytes(directory)[:before] + HEADER.pack(len(payload), crc, sequence) + payload
    (directory / JOURNAL_FILE).write_bytes(data)
    return before, data


@pytest.mark.parametrize(
    ("sequence", "payload", "problem"),
    [
        (99, msgspec.msgpack.encode(commands(1)[0]), "sequence 99 where 10 was expected"),
        (10, msgspec.msgpack.encode(["NoSuchCommand", 1]), "a CRC-valid payload that does not decode as a command"),
    ],
    ids=["out-of-sequence", "undecodable"],
)
def test_crc_valid_bad_last_record_is_damage_not_a_torn_tail(tmp_path, sequence, payload, problem):
    run(tmp_path, commands(10))
    offset, data = rewrite_last_record(tmp_path, sequence, payload)
    with pytest.raises(RecoveryError) as raised:
        recover(tmp_path, SYMBOLS, JournalConfig())
    assert f"damaged at byte {offset}, where sequence 10 was expected: {problem}" in str(raised.value)
    assert "no valid record follows, but a torn write never leaves a CRC-valid record" in str(raised.value)
    assert journal_bytes(tmp_path) == data


@pytest.mark.parametrize("chunk", [HEADER.size + 1, 40, 97, journal.SCAN_BYTES])
def test_next_valid_record_is_found_across_read_chunks(tmp_path, monkeypatch, chunk):
    monkeypatch.setattr(journal, "SCAN_BYTES", chunk)
    run(tmp_path, commands(60))
    records = list(read_records(tmp_path))
    with open(tmp_path / JOURNAL_FILE, "rb") as file:
        size = len(journal_bytes(tmp_path))
        for before, record in zip(records, records[1:], strict=False):
            found = journal.next_valid_record(file.fileno(), before.end - 7, before.sequence - 1, size)
            assert found == (before.end, record.sequence)
        assert journal.next_valid_record(file.fileno(), records[-2].end + 1, 0, size) is None
        assert journal.next_valid_record(file.fileno(), 1, records[-1].sequence, size) is None


def zeros(data) -> bool:
    return bytes(data).count(0) == len(data)


class Clock:
    """A monotonic clock the test moves (`servers.journal` reads only ``time.monotonic``)."""

    def __init__(self):
        self.now = 1000.0

    def monotonic(self):
        return self.now


def test_failed_write_leaves_no_partial_group_and_pauses_writes_for_a_second(tmp_path, monkeypatch):
    clock = Clock()
    monkeypatch.setattr(journal, "time", clock)
    real_pwrite = journal.os.pwrite
    writes = []

    def disk_fills_half_way(fd, data, offset):
        if zeros(data):
            return real_pwrite(fd, data, offset)
        writes.append(len(data))
        if len(writes) > 1:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_pwrite(fd, bytes(data[: len(data) // 2]), offset)

    stream = commands(30)
    log = Journal(tmp_path, JournalConfig(), 0)
    assert log.append(payloads(stream[:10], 1))
    good = log.offset
    monkeypatch.setattr(journal.os, "pwrite", disk_fills_half_way)
    assert not log.append(payloads(stream[10:20], 11))
    assert len(writes) == 2, "half the group was written, then the disk was full"
    assert (log.offset, len(journal_bytes(tmp_path))) == (good, good), "the half-written group was cut off"
    assert log.unwritable.errno == errno.ENOSPC
    clock.now += journal.RETRY_WRITE_S - 0.01
    assert not log.append(payloads(stream[10:20], 11))
    assert len(writes) == 2, "refused without touching the disk"
    monkeypatch.setattr(journal.os, "pwrite", real_pwrite)
    clock.now += 0.01
    assert log.append(payloads(stream[10:20], 11))
    assert log.unwritable is None
    assert log.append(payloads(stream[20:], 21))
    log.close()
    records = list(read_records(tmp_path))
    assert commands_in(records) == stream
    assert records[-1].end == len(journal_bytes(tmp_path))


@pytest.mark.parametrize("policy", ["batch", "interval"])
def test_failed_fsync_is_never_retried_and_fails_every_later_append(tmp_path, monkeypatch, policy):
    syncs = []

    def failing_sync(fd):
        syncs.append(fd)
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(journal, "_sync", failing_sync)
    stream = commands(3)
    log = Journal(tmp_path, JournalConfig(fsync=policy, fsync_interval_ms=1), 0)
    if policy == "batch":
        with pytest.raises(journal.JournalFailed, match="fsync of the journal .* failed .*it is not retried"):
            log.append(payloads([stream[0]], 1))
    else:
        assert log.append(payloads([stream[0]], 1))
        deadline = time.monotonic() + 5
        while log.failed is None:
            assert time.monotonic() < deadline, "the interval thread never fsynced"
            time.sleep(0.005)
        log._syncer.join(5)
        assert not log._syncer.is_alive(), "the interval thread ended"
    assert log.failed.errno == errno.EIO
    with pytest.raises(journal.JournalFailed):
        log.append(payloads([stream[1]], 2))
    with pytest.raises(journal.JournalFailed):
        log.flush()
    log.close()
    assert len(syncs) == 1
    assert [r.sequence for r in read_records(tmp_path)] == [1]


def test_reading_a_missing_journal_yields_nothing(tmp_path):
    assert list(read_records(tmp_path / "nowhere")) == []


# ---------------------------------------------------------------- snapshots and recovery


def test_recovery_replays_the_whole_journal_to_the_live_state(tmp_path):
    live, _ = run(tmp_path, commands(400))
    recovered, log = recover(tmp_path, SYMBOLS, JournalConfig())
    log.close()
    assert state(recovered) == state(live)
    assert live.max_order_id(1) > 1 << 48 and live.max_order_id(2) > 2 << 48 and live.max_order_id(3) == 0


def test_recovery_keeps_the_journaled_exchange_times_and_replies(tmp_path):
    live, _ = run(tmp_path, commands(300))
    recovered, log = recover(tmp_path, SYMBOLS, JournalConfig())
    log.close()
    assert (recovered.sequence, recovered.time) == (300, 300 * 1000)
    replies = [msgspec.msgpack.decode(reply, type=Executed) for _, reply, _ in recovered.history]
    assert [(r.sequence, r.time) for r in replies] == [(n, n * 1000) for n in range(1, 301)]
    assert list(recovered.history) == list(live.history), "Hello replays what the live shard sent"
    entries = [decode_entry(record.payload) for record in read_records(tmp_path)]
    assert [(e.sequence, e.time) for e in entries] == [(n, n * 1000) for n in range(1, 301)]
    assert any(e.events and e.market_data for e in entries)


def test_a_journal_of_bare_commands_from_before_entries_still_recovers(tmp_path):
    stream = commands(200)
    log = Journal(tmp_path, JournalConfig(), 0)
    log.append(payloads(stream, 1))
    log.close()
    recovered, log = recover(tmp_path, SYMBOLS, JournalConfig())
    log.close()
    assert state(recovered) == state(run(tmp_path / "entries", stream)[0])
    assert recovered.time == 0, "no times were journaled"


def test_an_entry_whose_events_differ_from_what_the_book_does_stops_recovery(tmp_path):
    run(tmp_path, commands(100))
    records = list(read_records(tmp_path))
    victim = next(r for r in records if any(type(e) is OrderFilled for e in decode_entry(r.payload).events))
    entry = decode_entry(victim.payload)
    fill = next(e for e in entry.events if type(e) is OrderFilled)
    forged = ENCODE(msgspec.structs.replace(entry, events=[
        msgspec.structs.replace(e, quantity=e.quantity + 1) if e is fill else e for e in entry.events]))
    data = bytearray(journal_bytes(tmp_path))
    start = victim.end - HEADER.size - len(victim.payload)
    header = HEADER.pack(len(forged), zlib.crc32(forged, zlib.crc32(struct.pack("<Q", victim.sequence))),
                         victim.sequence)
    data[start : victim.end] = header + forged
    (tmp_path / JOURNAL_FILE).write_bytes(bytes(data))
    with pytest.raises(RecoveryError, match=f"journal record {victim.sequence}: the book's events or market data"):
        recover(tmp_path, SYMBOLS, JournalConfig())


def test_recovery_from_snapshot_plus_tail_equals_full_replay(tmp_path):
    stream = commands(400)
    live, _ = run(tmp_path / "snapshots", stream, group=9, snapshot_every=50)
    names = sorted(p.name for p in (tmp_path / "snapshots").glob("snapshot-*"))
    assert names == ["snapshot-324.msgpack", "snapshot-378.msgpack"], "groups of 9: every 54; the newest two kept"
    recovered, log = recover(tmp_path / "snapshots", SYMBOLS, JournalConfig())
    log.close()
    assert recovered.restored_sequence == 378
    assert state(recovered) == state(live)
    replayed, _ = run(tmp_path / "plain", stream)
    assert state(replayed) == state(live)


def test_recovery_continues_identically_after_a_snapshot(tmp_path):
    """Books, market-data sequences and quotes go on exactly as in an uninterrupted run."""
    stream = commands(300, seed=3)
    whole, whole_md = run(tmp_path / "whole", stream)
    first, first_md = run(tmp_path / "split", stream[:170], snapshot_every=40)
    second, second_md = run(tmp_path / "split", stream[170:])
    assert second.restored_sequence == 160
    assert state(second) == state(whole)
    assert first_md + second_md == whole_md


def flip_a_price(data, snapshot):
    """``data`` (a snapshot file's bytes) with one bit flipped in the first resting ACME order's price."""
    orders = snapshot.symbols["ACME"].book.orders
    assert orders, "the snapshot holds resting orders"
    at = data.index(orders) + ORDER_DTYPE.fields["price"][1]
    return data[:at] + bytes([data[at] ^ 1]) + data[at + 1 :]


SNAPSHOT_DAMAGE = {
    "price": (flip_a_price, "CRC mismatch"),
    "truncated": (lambda data, _: data[:-10], "the header announces"),
    "extended": (lambda data, _: data + b"\0", "the header announces"),
    "magic": (lambda data, _: b"X" + data[1:], "bad magic"),
    "version": (lambda data, _: data[:4] + struct.pack("<I", 6) + data[8:], "format version 6"),
    "version flipped to 2": (lambda data, _: data[:4] + struct.pack("<I", 2) + data[8:], "does not decode"),
    "unframed": (lambda data, _: data[journal.SNAPSHOT_HEADER.size :], "bad magic"),
    "empty": (lambda data, _: b"", "shorter than the 20-byte header"),
}


@pytest.mark.parametrize("kind", SNAPSHOT_DAMAGE)
def test_damaged_newest_snapshot_is_skipped_with_a_warning_and_the_older_one_used(tmp_path, kind, caplog):
    live, _ = run(tmp_path, commands(200), snapshot_every=60)
    newest = tmp_path / "snapshot-180.msgpack"
    damaged, problem = SNAPSHOT_DAMAGE[kind]
    newest.write_bytes(damaged(newest.read_bytes(), read_snapshot(newest)))
    (tmp_path / "snapshot-7.msgpack.tmp").write_bytes(b"half written")
    recovered, log = recover(tmp_path, SYMBOLS, JournalConfig())
    log.close()
    assert recovered.restored_sequence == 120
    assert state(recovered) == state(live)
    assert not list(tmp_path.glob("*.tmp"))
    assert f"skipping snapshot {newest}: " in caplog.text and problem in caplog.text
    assert "falls back to an older snapshot or the journal" in caplog.text


def test_a_snapshot_past_the_journals_end_is_skipped_as_journal_check_says(tmp_path, caplog):
    """A journal that lost its tail ends before the newest snapshot's offset: recovery skips that
    snapshot for the older one and the records the journal still holds, and `journal check` says
    so in the same words (`servers.journal.beyond_the_journal`, which the TES's recovery asks too)."""
    run(tmp_path, commands(200), snapshot_every=60)
    newest = tmp_path / "snapshot-180.msgpack"
    offset = read_snapshot(newest).journal_offset
    with open(tmp_path / JOURNAL_FILE, "r+b") as file:
        file.truncate(offset - 1)
    expected = tmp_path / "expected"
    shutil.copytree(tmp_path, expected, ignore=shutil.ignore_patterns(newest.name, "expected"))
    beyond = f"the journal ends (byte {offset - 1}) before its offset {offset}"
    lines, summary = check(shard_in(tmp_path))
    assert f"snapshot-180.msgpack: recovery skips it: {beyond}" in lines
    assert summary["recovery"] == {"snapshot": 120, "refuses": None}

    recovered, log = recover(tmp_path, SYMBOLS, JournalConfig())
    log.close()
    assert f"skipping snapshot 180: {beyond}" in caplog.text
    replayed, log = recover(expected, SYMBOLS, JournalConfig())
    log.close()
    assert recovered.restored_sequence == replayed.restored_sequence == 120
    assert state(recovered) == state(replayed) and 120 < recovered.sequence < 180


def test_flipped_price_bit_that_would_decode_into_a_wrong_book_is_caught_by_the_crc(tmp_path):
    run(tmp_path, commands(100), snapshot_every=100)
    path = tmp_path / "snapshot-100.msgpack"
    snapshot = read_snapshot(path)
    path.write_bytes(flip_a_price(path.read_bytes(), snapshot))
    wrong = msgspec.msgpack.decode(path.read_bytes()[journal.SNAPSHOT_HEADER.size :], type=journal.ShardSnapshot)
    prices = [s.symbols["ACME"].book.order_array()["price"][0] for s in (snapshot, wrong)]
    assert prices[0] ^ prices[1] == 1
    with pytest.raises(journal.SnapshotDamaged, match="CRC mismatch"):
        read_snapshot(path)


@pytest.mark.parametrize(
    "content",
    [b"", b"12x\n", b"\0\0\0\0", b"-5\n", b"\xff\xfe"],
    ids=["empty", "letter", "zeros", "negative", "binary"],
)
def test_damaged_discarded_before_stops_recovery_with_a_clear_message(tmp_path, content):
    run(tmp_path, commands(20))
    (tmp_path / journal.DISCARDED_FILE).write_bytes(content)
    with pytest.raises(RecoveryError, match=r"discarded-before is damaged: .* is not a byte offset"):
        recover(tmp_path, SYMBOLS, JournalConfig())


def test_snapshot_with_a_damaged_book_falls_back_to_empty_books_and_full_replay(tmp_path):
    live, _ = run(tmp_path, commands(100), snapshot_every=1000)
    log = Journal(tmp_path, JournalConfig(), len(journal_bytes(tmp_path)))
    snapshot = live.snapshot(log.offset)
    log.close()
    book = snapshot.symbols["ACME"].book
    crossed = msgspec.structs.replace(book, orders=book.orders[::-1])
    broken = msgspec.structs.replace(
        snapshot, symbols={**snapshot.symbols, "ACME": msgspec.structs.replace(snapshot.symbols["ACME"], book=crossed)}
    )
    write_snapshot(tmp_path, broken)
    recovered, log = recover(tmp_path, SYMBOLS, JournalConfig())
    log.close()
    assert recovered.restored_sequence == 0
    assert state(recovered) == state(live)


def test_snapshot_of_a_symbol_the_shard_does_not_own_stops_recovery(tmp_path):
    live, _ = run(tmp_path, commands(20), snapshot_every=10)
    with pytest.raises(RecoveryError, match="ACME"):
        recover(tmp_path, ["BOLT"], JournalConfig())


def test_snapshot_files_hold_their_sequence_offset_and_books(tmp_path):
    live, _ = run(tmp_path, commands(100), snapshot_every=100)
    (snapshot,) = read_snapshots(tmp_path)
    assert (snapshot.sequence, snapshot.journal_offset) == (100, len(journal_bytes(tmp_path)))
    assert set(snapshot.symbols) == set(SYMBOLS)
    for symbol, entry in snapshot.symbols.items():
        assert isinstance(entry.book, BookSnapshot)
        assert entry.book == live.feeds[symbol].book.snapshot()
        assert entry.market_data_sequence == live.feeds[symbol].sequence


def test_snapshots_are_written_in_format_version_5_with_ids_by_word_and_the_advanced_state(tmp_path):
    run(tmp_path, commands(100), snapshot_every=100)
    data = (tmp_path / "snapshot-100.msgpack").read_bytes()
    assert journal.SNAPSHOT_HEADER.unpack_from(data)[:2] == (b"OBSS", 5)
    book = msgspec.msgpack.decode(data[journal.SNAPSHOT_HEADER.size :])["symbols"]["ACME"]["book"]
    assert list(book) == ["trade_sequence", "orders", "accepted_ranges", "accepted_words", "accepted_lone",
                          "order_details", "held_stops", "waiting_orders", "phase", "clock", "last_price"]


def test_a_version_3_snapshot_restores_its_books_last_trade_price_from_the_symbols(tmp_path):
    """Version 3 books had no last trade price (stops did not exist): it is the symbol's."""
    run(tmp_path, commands(100), snapshot_every=100)
    path = tmp_path / "snapshot-100.msgpack"
    written = read_snapshot(path)
    assert written.symbols["ACME"].book.last_price == written.symbols["ACME"].last_price > 0
    plain = {symbol: msgspec.structs.replace(state, book=msgspec.structs.replace(state.book, last_price=0))
             for symbol, state in written.symbols.items()}
    payload = ENCODE(msgspec.structs.replace(written, symbols=plain))
    path.write_bytes(journal.SNAPSHOT_HEADER.pack(journal.SNAPSHOT_MAGIC, 3, len(payload), zlib.crc32(payload))
                     + payload)
    assert read_snapshot(path) == written


def runs(ids):
    """Inclusive (first, last) pairs of the runs of consecutive ids in ascending ``ids``."""
    pairs = []
    for order_id in ids:
        if pairs and pairs[-1][1] == order_id - 1:
            pairs[-1][1] = order_id
        else:
            pairs.append([order_id, order_id])
    return pairs


def old_version_file(snapshot, version, ids=None):
    """``snapshot`` as format ``version`` wrote it: every accepted id listed (1) or the runs of
    consecutive ids as ranges (2); ``ids``: these bytes instead."""
    symbols = {}
    for symbol, state in snapshot.symbols.items():
        listed = state.book.id_array().tolist()
        field, values = ("accepted_ids", listed) if version == 1 else ("accepted_ranges", runs(listed))
        book = {
            "trade_sequence": state.book.trade_sequence,
            "orders": state.book.orders,
            field: np.array(values, dtype="<i8").tobytes() if ids is None else ids,
        }
        symbols[symbol] = {"book": book, "market_data_sequence": state.market_data_sequence,
                           "last_price": state.last_price}
    payload = ENCODE({"sequence": snapshot.sequence, "journal_offset": snapshot.journal_offset,
                      "symbols": symbols, "time": snapshot.time})
    return journal.SNAPSHOT_HEADER.pack(journal.SNAPSHOT_MAGIC, version, len(payload), zlib.crc32(payload)) + payload


@pytest.mark.parametrize("version", [1, 2])
def test_old_version_snapshots_are_read_with_their_ids_by_word_and_recover(tmp_path, version):
    """After an upgrade the snapshots an older version wrote must still restore: with the journal
    before them discarded, the OBS could not start otherwise."""
    live, _ = run(tmp_path, commands(3000), group=50, snapshot_every=1000)
    newest, older = read_snapshots(tmp_path)
    assert len(runs(newest.symbols["ACME"].book.id_array().tolist())) > 100, "two TESs' ids split over two symbols"
    for snapshot in (newest, older):
        path = tmp_path / f"snapshot-{snapshot.sequence}.msgpack"
        path.write_bytes(old_version_file(snapshot, version))
        no_phases = {symbol: msgspec.structs.replace(state, phases=PhaseState())
                     for symbol, state in snapshot.symbols.items()}
        assert read_snapshot(path) == msgspec.structs.replace(snapshot, symbols=no_phases), "no phase state before 5"
    log = Journal(tmp_path, JournalConfig(), len(journal_bytes(tmp_path)))
    log.discard_before(older.journal_offset)
    log.close()
    recovered, log = recover(tmp_path, SYMBOLS, JournalConfig())
    log.close()
    assert recovered.restored_sequence == 3000 and state(recovered) == state(live)


OLD_IDS_DAMAGE = {
    (1, "a partial id"): b"\1" * 12,
    (1, "ids out of order"): np.array([5, 3], dtype="<i8").tobytes(),
    (1, "a repeated id"): np.array([3, 3], dtype="<i8").tobytes(),
    (2, "a partial range"): b"\1" * 24,
    (2, "overlapping ranges"): np.array([[1, 5], [5, 9]], dtype="<i8").tobytes(),
    (2, "a range backwards"): np.array([[9, 5]], dtype="<i8").tobytes(),
}


@pytest.mark.parametrize(("version", "what"), OLD_IDS_DAMAGE)
def test_old_version_snapshot_whose_ids_do_not_convert_is_damaged(tmp_path, version, what):
    run(tmp_path, commands(100), snapshot_every=100)
    path = tmp_path / "snapshot-100.msgpack"
    path.write_bytes(old_version_file(read_snapshot(path), version, ids=OLD_IDS_DAMAGE[version, what]))
    with pytest.raises(journal.SnapshotDamaged, match="a CRC-valid payload that does not decode"):
        read_snapshot(path)


def test_restored_shard_takes_each_tes_largest_id_from_ranges_words_and_lone_ids(tmp_path):
    """Ids are ``(tes_id << 48) | n``: a range of whole words may run across the edge of a TES's ids."""
    edge = 1 << 48
    ranges = [[-20, -10], [5, 9], [edge - 130, edge + 70], [edge + 200, edge + 201], [(3 << 48) + 9, (3 << 48) + 9]]
    book = BookSnapshot.from_arrays(0, np.empty(0, ORDER_DTYPE), *id_records_of_ranges(ranges))
    assert book.range_array().tolist() == [[edge - 128, edge + 63]] and len(book.lone_array()) == 1
    shard = Shard.restore(SYMBOLS, ShardSnapshot(1, 0, {"ACME": SymbolSnapshot(book, 0, None)}))
    assert [shard.max_order_id(tes) for tes in (0, 1, 2, 3)] == [edge - 1, edge + 201, 0, (3 << 48) + 9]


def test_shard_built_empty_has_no_ids_and_sequence_zero(tmp_path):
    shard, log = recover(tmp_path / "new", SYMBOLS, JournalConfig())
    log.close()
    assert (shard.sequence, shard.restored_sequence, shard.max_order_id(1)) == (0, 0, 0)
    assert state(shard) == state(Shard.empty(SYMBOLS))


def test_discarded_records_free_their_blocks_and_recovery_needs_a_snapshot_after_them(tmp_path):
    live, _ = run(tmp_path, commands(3000), group=50, snapshot_every=1000)
    newest, older = read_snapshots(tmp_path)
    assert (newest.sequence, older.sequence) == (3000, 2000)
    size = (tmp_path / JOURNAL_FILE).stat().st_size
    log = Journal(tmp_path, JournalConfig(), size)
    log.discard_before(older.journal_offset)
    log.discard_before(older.journal_offset // 2)
    log.close()
    stat = (tmp_path / JOURNAL_FILE).stat()
    assert stat.st_size == size and stat.st_blocks * 512 < size // 2
    assert journal.read_discarded(tmp_path) == older.journal_offset
    assert journal_bytes(tmp_path)[: older.journal_offset - 4096] == bytes(older.journal_offset - 4096)

    recovered, log = recover(tmp_path, SYMBOLS, JournalConfig())
    log.close()
    assert recovered.restored_sequence == 3000 and state(recovered) == state(live)
    (tmp_path / "snapshot-3000.msgpack").unlink()
    recovered, log = recover(tmp_path, SYMBOLS, JournalConfig())
    log.close()
    assert recovered.restored_sequence == 2000 and state(recovered) == state(live)
    damaged = tmp_path / "snapshot-2000.msgpack"
    damaged.write_bytes(flip_a_price(damaged.read_bytes(), older))
    with pytest.raises(RecoveryError, match=f"before byte {older.journal_offset} were discarded"):
        recover(tmp_path, SYMBOLS, JournalConfig())
    assert (tmp_path / JOURNAL_FILE).stat().st_size == size


SLACK = 8 * 4096
"""Blocks a file system may keep besides the data: the partial blocks at a hole's ends, the
blocks of an extent tree that holes split."""


def allocated(path) -> int:
    return path.stat().st_blocks * 512


def test_discarded_blocks_are_freed_in_pieces_each_from_where_data_is_left(tmp_path, monkeypatch):
    """A piece at a time, so the loop appending is never held long; what is a hole already is skipped."""
    run(tmp_path, commands(3000), group=50, snapshot_every=10**9)
    size = (tmp_path / JOURNAL_FILE).stat().st_size
    monkeypatch.setattr(journal, "DISCARD_PIECE_BYTES", 1 << 16)
    monkeypatch.setattr(journal, "PIECE_PAUSE_S", 0)
    punched = []
    punch = journal._punch_hole
    monkeypatch.setattr(journal, "_punch_hole", lambda fd, start, length: punched.append((start, length)) or
                        punch(fd, start, length))
    log = Journal(tmp_path, JournalConfig(), size)
    first, second = size // 3, 2 * size // 3

    log.discard_before(first)
    assert punched[0][0] == 0 and sum(length for _, length in punched) == first
    assert all(length <= 1 << 16 for _, length in punched) and len(punched) == -(-first // (1 << 16))
    assert all(start + length == after for (start, length), (after, _) in zip(punched[:-1], punched[1:], strict=True))
    punched.clear()
    log.discard_before(second)
    log.close()
    # the second discard starts where data is left: at most a block before the first one's end
    assert first - 4096 <= punched[0][0] <= first and punched[-1][0] + punched[-1][1] == second
    assert journal.read_discarded(tmp_path) == log.discarded == second
    assert allocated(tmp_path / JOURNAL_FILE) <= size - second + SLACK
    assert journal_bytes(tmp_path)[:second] == bytes(second)


def test_a_discard_stopped_midway_is_finished_by_the_next_process(tmp_path, monkeypatch):
    run(tmp_path, commands(3000), group=50, snapshot_every=10**9)
    path = tmp_path / JOURNAL_FILE
    size = path.stat().st_size
    monkeypatch.setattr(journal, "DISCARD_PIECE_BYTES", 1 << 16)
    monkeypatch.setattr(journal, "PIECE_PAUSE_S", 0)
    punch, calls = journal._punch_hole, []

    def fails_third(fd, start, length):
        calls.append(start)
        if len(calls) == 3:
            raise OSError(errno.EIO, "the disk failed")
        return punch(fd, start, length)

    monkeypatch.setattr(journal, "_punch_hole", fails_third)
    log = Journal(tmp_path, JournalConfig(), size)
    with pytest.raises(OSError, match="the disk failed"):
        log.discard_before(size // 2)
    log.close()
    # recorded first: recovery never reads below it; two pieces freed
    assert journal.read_discarded(tmp_path) == size // 2
    assert size - 2 * (1 << 16) - SLACK <= allocated(path) <= size - 2 * (1 << 16) + SLACK

    monkeypatch.setattr(journal, "_punch_hole", punch)
    log = Journal(tmp_path, JournalConfig(), size)
    log.discard_before(size // 2 + 1)
    log.close()
    assert allocated(path) <= size - size // 2 + SLACK
    assert journal_bytes(tmp_path)[:size // 2] == bytes(size // 2)


def test_a_hole_that_cannot_be_punched_after_one_was_keeps_the_record(tmp_path, monkeypatch):
    """Records under the offset were freed: it must stay recorded, or recovery would read zeros."""
    run(tmp_path, commands(3000), group=50, snapshot_every=10**9)
    size = (tmp_path / JOURNAL_FILE).stat().st_size
    monkeypatch.setattr(journal, "DISCARD_PIECE_BYTES", 1 << 16)
    monkeypatch.setattr(journal, "PIECE_PAUSE_S", 0)
    punch, calls = journal._punch_hole, []
    monkeypatch.setattr(journal, "_punch_hole", lambda fd, start, length: calls.append(start) or (
        len(calls) == 1 and punch(fd, start, length)))
    log = Journal(tmp_path, JournalConfig(), size)
    with pytest.raises(OSError, match="a hole could be punched, and then not"):
        log.discard_before(size // 2)
    log.close()
    assert journal.read_discarded(tmp_path) == size // 2 and len(calls) == 2


def test_a_paced_write_makes_each_piece_durable_before_the_next_and_the_whole_file_atomically(tmp_path, monkeypatch):
    monkeypatch.setattr(journal, "PACED_PIECE_BYTES", 1000)
    monkeypatch.setattr(journal, "PIECE_PAUSE_S", 0)
    synced = []
    fdatasync = os.fdatasync
    monkeypatch.setattr(os, "fdatasync", lambda fd: synced.append(os.fstat(fd).st_size) or fdatasync(fd))
    path = tmp_path / "snapshot-7.msgpack"
    header, payload = b"H" * 300, bytes(range(256)) * 9  # 2,604 bytes: two whole pieces and a part

    journal.write_atomically(path, header, payload, paced=True)

    assert synced == [1000, 2000], "each whole piece on disk before the next is written"
    assert path.read_bytes() == header + payload
    assert not list(tmp_path.glob(f"*{journal.TEMPORARY_SUFFIX}"))


def test_where_holes_cannot_be_punched_nothing_is_discarded_and_full_replay_still_works(tmp_path, monkeypatch):
    monkeypatch.setattr(journal, "_punch_hole", lambda fd, start, length: False)
    live, _ = run(tmp_path, commands(600), group=50, snapshot_every=200)
    size = (tmp_path / JOURNAL_FILE).stat().st_size
    log = Journal(tmp_path, JournalConfig(), size)
    log.discard_before(size // 2)
    log.discard_before(size // 2 + 1)
    log.close()
    assert journal.read_discarded(tmp_path) == 0 and log.discarded == 0
    for snapshot in tmp_path.glob("snapshot-*"):
        snapshot.unlink()
    recovered, log = recover(tmp_path, SYMBOLS, JournalConfig())
    log.close()
    assert recovered.restored_sequence == 0 and state(recovered) == state(live)


# ---------------------------------------------------------------- operator commands: journal check, journal cut


def shard_in(directory):
    return shard_journal(
        ShardConfig("A", SYMBOLS, "tcp://127.0.0.1:1", "tcp://127.0.0.1:2", "tcp://127.0.0.1:3", str(directory)))


def main_py(directory, *args):
    """``python main.py ARGS`` with shard A's journal in ``directory``."""
    env = dict(os.environ, EXCHANGE__SHARDS__0__JOURNAL_DIR=str(directory))
    return subprocess.run([sys.executable, "main.py", *args], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=60)


def test_check_of_a_healthy_journal_reports_its_records_snapshots_and_recovery(tmp_path):
    run(tmp_path, commands(300), snapshot_every=100)
    lines, summary = check(shard_in(tmp_path))
    assert (summary["status"], lines[-1]) == ("healthy", "status: healthy")
    assert (summary["records"], summary["first_sequence"], summary["last_sequence"]) == (300, 1, 300)
    assert summary["end"] == summary["size"] == len(journal_bytes(tmp_path))
    assert [(s["sequence"], s["problem"]) for s in summary["snapshots"]] == [(300, None), (200, None)]
    assert summary["recovery"] == {"snapshot": 300, "refuses": None}


def discarded_run(directory):
    """3,000 commands with snapshots at 2,000 and 3,000, the journal before the older one
    discarded; that older snapshot."""
    run(directory, commands(3000), group=50, snapshot_every=1000)
    _, older = read_snapshots(directory)
    log = Journal(directory, JournalConfig(), len(journal_bytes(directory)))
    log.discard_before(older.journal_offset)
    log.close()
    return older


def test_check_reads_from_where_the_discarded_records_end(tmp_path):
    older = discarded_run(tmp_path)
    _, summary = check(shard_in(tmp_path))
    assert (summary["status"], summary["discarded_before"], summary["start"]) == (
        "healthy", older.journal_offset, older.journal_offset)
    assert (summary["first_sequence"], summary["last_sequence"]) == (2001, 3000)
    (tmp_path / "snapshot-2000.msgpack").unlink()
    _, summary = check(shard_in(tmp_path))
    assert (summary["status"], summary["first_sequence"]) == ("healthy", 2001), "the first record says its sequence"


def test_check_reports_a_torn_tail_as_a_warning_and_changes_nothing(tmp_path):
    run(tmp_path, commands(20))
    records = list(read_records(tmp_path))
    (tmp_path / JOURNAL_FILE).write_bytes(journal_bytes(tmp_path)[:-5])
    before = files(tmp_path)
    lines, summary = check(shard_in(tmp_path))
    assert (summary["status"], summary["last_sequence"]) == ("warning", 19)
    assert summary["torn_bytes"] == records[-1].end - records[-2].end - 5
    torn = f"torn tail: {summary['torn_bytes']} bytes after byte {records[-2].end} "
    assert any(line.startswith(torn) for line in lines)
    assert files(tmp_path) == before


def test_check_reports_room_left_by_a_crash_as_healthy_and_changes_nothing(tmp_path):
    data = crashed_with_room(tmp_path, commands(20))
    end = list(read_records(tmp_path))[-1].end
    before = files(tmp_path)
    lines, summary = check(shard_in(tmp_path))
    assert (summary["status"], summary["last_sequence"], summary["torn_bytes"]) == ("healthy", 20, 0)
    assert f"room written ahead: {len(data) - end} zero bytes after byte {end} " in "\n".join(lines)
    assert files(tmp_path) == before


def test_cut_refuses_to_cut_off_only_the_room_written_ahead(tmp_path):
    crashed_with_room(tmp_path, commands(20))
    end = list(read_records(tmp_path))[-1].end
    before = files(tmp_path)
    with pytest.raises(CutRefused, match=f"only zeros follow byte {end} .*: nothing to cut"):
        cut(shard_in(tmp_path), end)
    assert files(tmp_path) == before


def test_check_reports_damage_and_damaged_snapshots_and_changes_nothing(tmp_path):
    starts, _ = damage(tmp_path, commands(200), 190, "payload", snapshot_every=60)
    older = tmp_path / "snapshot-120.msgpack"
    older.write_bytes(flip_a_price(older.read_bytes(), read_snapshot(older)))
    before = files(tmp_path)
    lines, summary = check(shard_in(tmp_path))
    assert files(tmp_path) == before
    assert summary["status"] == "damaged"
    assert summary["damage"] == {
        "offset": starts[190],
        "expected_sequence": 191,
        "problem": "CRC mismatch",
        "good_records": 190,
        "next_valid": {"offset": starts[191], "sequence": 192},
        "bytes_after": starts[200] - starts[190],
    }
    assert f"DAMAGED: journal {tmp_path / JOURNAL_FILE} is damaged at byte {starts[190]}" in "\n".join(lines)
    assert f"python main.py journal cut --shard A --at {starts[190]}" in "\n".join(lines)
    assert "snapshot-120.msgpack: recovery skips it: CRC mismatch" in lines
    assert summary["recovery"] == {"snapshot": None, "refuses": f"the journal is damaged at byte {starts[190]}"}


def test_check_command_prints_the_report_and_json_and_exits_1_on_damage(tmp_path):
    starts, _ = damage(tmp_path, commands(30), 10, "crc")
    done = main_py(tmp_path, "journal", "check")
    assert (done.returncode, done.stderr) == (1, "")
    *report, last = done.stdout.strip().splitlines()
    assert report[-1] == "status: damaged"
    assert json.loads(last)["damage"]["offset"] == starts[10]


def test_cut_at_the_damage_sets_the_rest_aside_and_recovery_serves_the_records_before_it(tmp_path):
    stream = commands(200)
    starts, data = damage(tmp_path, stream, 150, "length", snapshot_every=60)
    lines, summary = cut(shard_in(tmp_path), starts[150])
    assert summary["last_sequence"] == 150 and summary["bytes"] == len(data) - starts[150]
    assert summary["snapshots_set_aside"] == ["snapshot-180.msgpack"], "it holds books of records given up"
    assert (tmp_path / f"{JOURNAL_FILE}.cut-{starts[150]}").read_bytes() == data[starts[150] :]
    assert (tmp_path / f"snapshot-180.msgpack.cut-{starts[150]}").exists()
    assert journal_bytes(tmp_path) == data[: starts[150]]
    assert lines[0].startswith(f"moved {len(data) - starts[150]} bytes")
    recovered, log = recover(tmp_path, SYMBOLS, JournalConfig())
    log.close()
    assert (recovered.restored_sequence, recovered.sequence) == (120, 150)
    assert state(recovered) == state(run(tmp_path / "fresh", stream[:150])[0])


def test_cut_refuses_an_offset_that_is_not_the_end_of_a_good_record(tmp_path):
    starts, data = damage(tmp_path, commands(20), 10, "crc")
    for offset in (starts[3] + 1, starts[3] - 1, starts[12], len(data), len(data) + 7):
        with pytest.raises(CutRefused):
            cut(shard_in(tmp_path), offset)
    with pytest.raises(CutRefused, match=f"not the end of a good record \\(the nearest: byte {starts[3]} or byte"):
        cut(shard_in(tmp_path), starts[3] + 1)
    assert files(tmp_path) == {JOURNAL_FILE: data}


def test_cut_refuses_while_a_process_holds_the_journal_directory(tmp_path):
    starts, data = damage(tmp_path, commands(20), 10, "crc")
    held = DirectoryLock(tmp_path, "the journal directory")
    try:
        with pytest.raises(CutRefused, match=f"the journal directory {tmp_path} is in use by process {os.getpid()}"
                           ": one process at a time may use it: stop the OBS first"):
            cut(shard_in(tmp_path), starts[10])
    finally:
        held.release()
    assert files(tmp_path) == {JOURNAL_FILE: data}
    cut(shard_in(tmp_path), starts[10])


def test_cut_refuses_to_leave_discarded_records_without_a_snapshot(tmp_path):
    older = discarded_run(tmp_path)
    damaged = tmp_path / "snapshot-2000.msgpack"
    damaged.write_bytes(flip_a_price(damaged.read_bytes(), older))
    end = [r.end for r in read_records(tmp_path, older.journal_offset, 2000)][500]
    with pytest.raises(CutRefused, match="no readable snapshot between"):
        cut(shard_in(tmp_path), end)


def test_cut_command_errors_are_one_line_and_exit_2(tmp_path, monkeypatch, capsys):
    run(tmp_path, commands(20))
    done = main_py(tmp_path, "journal", "cut", "--shard", "A", "--at", "5")
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.startswith(f"error: byte 5 of {tmp_path / JOURNAL_FILE} is not the end of a good record")
    assert done.stderr.count("\n") == 1
    monkeypatch.setenv("EXCHANGE__SHARDS__0__JOURNAL_DIR", str(tmp_path))
    assert main.main(["journal", "cut", "--shard", "Z", "--at", "0"]) == 2
    assert capsys.readouterr().err.startswith("error: shards: no shard named 'Z'")
    with pytest.raises(SystemExit) as exited:
        main.main(["journal", "cut", "--shard", "A"])
    assert exited.value.code == 2
    assert capsys.readouterr().err.startswith("error: the following arguments are required: --at")
