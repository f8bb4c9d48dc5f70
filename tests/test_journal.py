"""The OBS journal, snapshots and recovery, in process (`servers.journal`, `servers.shard`)."""

import struct
import time

import msgspec
import pytest
from obs_streams import SYMBOLS, commands

from config.settings import JournalConfig
from engine.snapshot import BookSnapshot
from servers import journal
from servers.journal import HEADER, JOURNAL_FILE, Journal, read_records, read_snapshots, write_snapshot
from servers.shard import BookCommand, RecoveryError, Shard, recover

DECODER = msgspec.msgpack.Decoder(BookCommand)
BATCH = JournalConfig()


def run(directory, stream, config=BATCH, group=10, snapshot_every=None):
    """Recover, then feed ``stream`` the way the OBS does: sequence, journal a group, execute.

    Returns the shard and every market-data message emitted live.
    """
    shard, log = recover(directory, SYMBOLS, config)
    market_data = []
    last_snapshot = shard.restored_sequence
    for start in range(0, len(stream), group):
        batch = [(shard.sequence + 1 + i, command) for i, command in enumerate(stream[start : start + group])]
        log.append(batch)
        for sequence, command in batch:
            shard.execute(sequence, command, market_data)
        if snapshot_every and shard.sequence - last_snapshot >= snapshot_every:
            log.flush()
            write_snapshot(directory, shard.snapshot(log.offset))
            last_snapshot = shard.sequence
    log.close()
    return shard, market_data


def state(shard):
    """Everything recovery must reproduce."""
    return {
        "sequence": shard.sequence,
        "books": {s: (f.book.state_hash(), f.sequence, f.last_price, f.snapshot()) for s, f in shard.feeds.items()},
        "max_ids": {tes: shard.max_order_id(tes) for tes in (0, 1, 2, 3)},
    }


def journal_bytes(directory):
    return (directory / JOURNAL_FILE).read_bytes()


# ---------------------------------------------------------------- the journal file


def test_records_round_trip_with_consecutive_sequences(tmp_path):
    stream = commands(50)
    run(tmp_path, stream, group=7)
    records = list(read_records(tmp_path))
    assert [r.sequence for r in records] == list(range(1, 51))
    assert [DECODER.decode(r.payload) for r in records] == stream
    assert records[-1].end == len(journal_bytes(tmp_path))
    length, _, sequence = HEADER.unpack_from(journal_bytes(tmp_path))
    assert (sequence, journal_bytes(tmp_path)[HEADER.size : HEADER.size + length]) == (1, records[0].payload)


@pytest.mark.parametrize(("policy", "syncs_per_group"), [("batch", 1), ("never", 0)])
def test_append_writes_a_group_in_one_write_and_fsyncs_per_policy(tmp_path, monkeypatch, policy, syncs_per_group):
    calls = {"write": 0, "sync": 0}
    real_write, real_sync = journal.os.write, journal._sync

    def counting_write(fd, data):
        calls["write"] += 1
        return real_write(fd, data)

    def counting_sync(fd):
        calls["sync"] += 1
        real_sync(fd)

    log = Journal(tmp_path, JournalConfig(fsync=policy), 0)
    monkeypatch.setattr(journal.os, "write", counting_write)
    monkeypatch.setattr(journal, "_sync", counting_sync)
    stream = commands(1000)
    log.append(list(enumerate(stream[:500], 1)))
    log.append(list(enumerate(stream[500:], 501)))
    assert calls == {"write": 2, "sync": 2 * syncs_per_group}
    log.flush()
    assert calls["sync"] == max(2 * syncs_per_group, 1)
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

    log = Journal(tmp_path, JournalConfig(fsync="interval", fsync_interval_ms=200), 0)
    stream = commands(4)
    appended = time.monotonic()
    log.append([(1, stream[0])])
    wait_for(1, 0.15)
    assert syncs[0] - appended < 0.15, "the first append after a quiet spell is fsynced at once"
    log.append([(2, stream[1])])
    log.append([(3, stream[2])])
    time.sleep(0.1)
    assert len(syncs) == 1, "appends within the interval wait for it"
    wait_for(2, 0.3)
    assert 0.19 <= syncs[1] - syncs[0] < 0.35
    time.sleep(0.3)
    assert len(syncs) == 2, "nothing written, nothing to fsync"
    log.append([(4, stream[3])])
    wait_for(3, 0.15)
    log.close()
    assert len(syncs) == 3, "close has nothing left to fsync"
    assert [r.sequence for r in read_records(tmp_path)] == [1, 2, 3, 4]


def test_close_fsyncs_what_the_interval_thread_has_not_yet(tmp_path, monkeypatch):
    syncs = []
    monkeypatch.setattr(journal, "_sync", syncs.append)
    log = Journal(tmp_path, JournalConfig(fsync="interval", fsync_interval_ms=10_000), 0)
    stream = commands(2)
    log.append([(1, stream[0])])
    deadline = time.monotonic() + 1
    while not syncs:
        assert time.monotonic() < deadline
        time.sleep(0.005)
    log.append([(2, stream[1])])
    started = time.monotonic()
    log.close()
    assert len(syncs) == 2 and time.monotonic() - started < 1, "close does not wait out the interval"


@pytest.mark.parametrize("cut", [1, HEADER.size - 1, HEADER.size, HEADER.size + 3])
def test_truncated_tail_is_cut_off_and_appending_continues_after_it(tmp_path, cut):
    stream = commands(30)
    run(tmp_path, stream[:20], group=5)
    records = list(read_records(tmp_path))
    data = journal_bytes(tmp_path)
    torn = records[-2].end + min(cut, records[-1].end - records[-2].end - 1)
    (tmp_path / JOURNAL_FILE).write_bytes(data[:torn])
    assert [r.sequence for r in read_records(tmp_path)] == list(range(1, 20))
    shard, _ = run(tmp_path, stream[19:], group=5)
    records = list(read_records(tmp_path))
    assert [DECODER.decode(r.payload) for r in records] == stream
    assert records[-1].end == len(journal_bytes(tmp_path)), "no torn bytes left between records"
    fresh, _ = run(tmp_path / "again", stream)
    assert state(shard) == state(fresh)


@pytest.mark.parametrize("where", ["payload", "crc", "sequence", "length"])
def test_corrupt_record_ends_the_journal_there(tmp_path, where):
    run(tmp_path, commands(10))
    records = list(read_records(tmp_path))
    data = bytearray(journal_bytes(tmp_path))
    start = records[5].end
    if where == "payload":
        data[start + HEADER.size + 2] ^= 0x40
    elif where == "crc":
        data[start + 4] ^= 1
    elif where == "sequence":
        struct.pack_into("<Q", data, start + 8, 99)
    else:
        struct.pack_into("<I", data, start, 0xFFFFFFFF)
    (tmp_path / JOURNAL_FILE).write_bytes(bytes(data))
    assert [r.sequence for r in read_records(tmp_path)] == [1, 2, 3, 4, 5, 6]
    shard, log = recover(tmp_path, SYMBOLS, JournalConfig())
    log.close()
    assert shard.sequence == 6
    assert journal_bytes(tmp_path) == bytes(data[:start])


def test_reading_a_missing_journal_yields_nothing(tmp_path):
    assert list(read_records(tmp_path / "nowhere")) == []


# ---------------------------------------------------------------- snapshots and recovery


def test_recovery_replays_the_whole_journal_to_the_live_state(tmp_path):
    live, _ = run(tmp_path, commands(400))
    recovered, log = recover(tmp_path, SYMBOLS, JournalConfig())
    log.close()
    assert state(recovered) == state(live)
    assert live.max_order_id(1) > 1 << 48 and live.max_order_id(2) > 2 << 48 and live.max_order_id(3) == 0


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


def test_unreadable_newest_snapshot_falls_back_to_the_older_one(tmp_path):
    live, _ = run(tmp_path, commands(200), snapshot_every=60)
    newest, older = sorted(tmp_path.glob("snapshot-*"), key=lambda p: -int(p.stem.split("-")[1]))
    newest.write_bytes(newest.read_bytes()[:-10])
    (tmp_path / "snapshot-7.msgpack.tmp").write_bytes(b"half written")
    recovered, log = recover(tmp_path, SYMBOLS, JournalConfig())
    log.close()
    assert recovered.restored_sequence == int(older.stem.split("-")[1]) == 120
    assert state(recovered) == state(live)
    assert not list(tmp_path.glob("*.tmp"))


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
    (tmp_path / "snapshot-2000.msgpack").unlink()
    with pytest.raises(RecoveryError, match=f"before byte {older.journal_offset} were discarded"):
        recover(tmp_path, SYMBOLS, JournalConfig())
    assert (tmp_path / JOURNAL_FILE).stat().st_size == size


def test_where_holes_cannot_be_punched_nothing_is_discarded_and_full_replay_still_works(tmp_path, monkeypatch):
    monkeypatch.setattr(journal, "_punch_hole", lambda fd, length: False)
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
