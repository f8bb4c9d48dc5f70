"""The embedded tick store (`database.ticks.store`): layout, idempotent upd, compaction under readers."""

import os
import re
import threading
from datetime import date

import pyarrow.parquet as pq
import pytest

from database.ticks import queries as queries_module
from database.ticks.queries import TickHistory
from database.ticks.schema import DAY_NS, record, rows_from_entries
from database.ticks.store import StoreBusy, TickStore, table_files
from engine.types import Side
from servers.protocol import BookSubmit, JournalEntry, Quote, Trade

T0 = 1_714_521_600 * 10**9
"""2024-05-01 00:00 UTC."""
T0_DATE = date(2024, 5, 1)
SCALES = {"ACME": 100}
SUBMIT = BookSubmit("ACME", 1, Side.BUY, 0, 0, 10_000, 1)


def entries(first, last, start=T0 + 3600 * 10**9, step=10**9):
    """Entries ``first..last``, each one trade (trade id = sequence) and one quote of ACME."""
    return [
        JournalEntry(sequence, start + (sequence - first) * step, SUBMIT, [], [
            Trade("ACME", 2 * sequence, sequence, 10_000 + sequence, 1, Side.SELL),
            Quote("ACME", 2 * sequence + 1, 10_000, 5, 10_001 + sequence, 5),
        ])
        for sequence in range(first, last + 1)
    ]


def stored(root, table="trade"):
    """(shard, sequence) of every stored row of ``table``, from every visible file, in file order."""
    pairs = []
    for path in table_files(root, table):
        part = pq.read_table(path, columns=["shard", "sequence"]).to_pydict()
        pairs += list(zip(part["shard"], part["sequence"], strict=True))
    return pairs


def names(root, table="trade"):
    return [f"{path.parent.parent.name}/{path.name}" for path in table_files(root, table)]


def test_upd_writes_one_part_named_by_shard_and_range_in_the_date_directory(tmp_path):
    with TickStore(tmp_path) as store:
        assert record(store, "A", entries(1, 3), SCALES) == {"trade": 3, "quote": 3}
        assert record(store, "A", entries(4, 5), SCALES) == {"trade": 2, "quote": 2}
    assert names(tmp_path) == [
        "2024.05.01/part.A.00000000000000000001.00000000000000000003.parquet",
        "2024.05.01/part.A.00000000000000000004.00000000000000000005.parquet",
    ]
    assert stored(tmp_path, "quote") == [("A", s) for s in range(1, 6)]


def test_the_same_range_twice_writes_nothing_the_second_time(tmp_path):
    with TickStore(tmp_path) as store:
        record(store, "A", entries(1, 10), SCALES)
        assert record(store, "A", entries(1, 10), SCALES) == {"trade": 0, "quote": 0}
        assert record(store, "A", entries(3, 7), SCALES) == {"trade": 0, "quote": 0}
    assert stored(tmp_path) == [("A", s) for s in range(1, 11)]


def test_overlapping_ranges_write_only_the_rows_after_the_watermark(tmp_path):
    with TickStore(tmp_path) as store:
        record(store, "A", entries(1, 10), SCALES)
        assert record(store, "A", entries(6, 15), SCALES) == {"trade": 5, "quote": 5}
        assert store.watermark("trade", "A") == 15
    assert stored(tmp_path) == [("A", s) for s in range(1, 16)]
    assert names(tmp_path)[1].endswith("part.A.00000000000000000011.00000000000000000015.parquet")


def test_two_shards_keep_separate_watermarks(tmp_path):
    with TickStore(tmp_path) as store:
        record(store, "A", entries(1, 5), SCALES)
        record(store, "B", entries(1, 3), SCALES)
        assert record(store, "B", entries(1, 4), SCALES) == {"trade": 1, "quote": 1}
        assert (store.watermark("trade", "A"), store.watermark("trade", "B")) == (5, 4)
    assert sorted(stored(tmp_path)) == [("A", s) for s in range(1, 6)] + [("B", s) for s in range(1, 5)]


def test_watermarks_survive_a_restart_even_for_a_batch_without_rows(tmp_path):
    with TickStore(tmp_path) as store:
        record(store, "A", entries(1, 5), SCALES)
        record(store, "A", [JournalEntry(6, T0, SUBMIT, [], [])], SCALES)
    with TickStore(tmp_path) as store:
        assert (store.watermark("trade", "A"), store.watermark("quote", "B")) == (6, 0)
        assert record(store, "A", entries(1, 8), SCALES) == {"trade": 2, "quote": 2}
    assert stored(tmp_path) == [("A", s) for s in (1, 2, 3, 4, 5, 7, 8)]


def test_without_the_watermarks_file_the_part_names_still_hold_every_watermark(tmp_path):
    with TickStore(tmp_path) as store:
        record(store, "A", entries(1, 5), SCALES)
        record(store, "B", entries(1, 3), SCALES)
    (tmp_path / "watermarks.json").unlink()
    with TickStore(tmp_path) as store:
        assert (store.watermark("trade", "A"), store.watermark("quote", "B")) == (5, 3)
        assert record(store, "A", entries(1, 6), SCALES) == {"trade": 1, "quote": 1}


def test_rows_across_midnight_go_to_each_days_directory_and_both_files_carry_the_watermark(tmp_path):
    before_midnight = T0 + DAY_NS - 2 * 10**9
    with TickStore(tmp_path) as store:
        record(store, "A", entries(1, 4, start=before_midnight), SCALES)
    assert names(tmp_path) == [
        "2024.05.01/part.A.00000000000000000001.00000000000000000002.parquet",
        "2024.05.02/part.A.00000000000000000003.00000000000000000004.parquet",
    ]
    with TickStore(tmp_path) as store:
        assert store.watermark("trade", "A") == 4


def test_a_second_writer_is_refused_while_the_first_has_the_store_open(tmp_path):
    with TickStore(tmp_path):
        with pytest.raises(StoreBusy, match="open for writing by another process"):
            TickStore(tmp_path)
    TickStore(tmp_path).close()


@pytest.mark.parametrize("through, shard, phrase", [(2, "A", "past through_sequence"), (5, "B", "as shard B")])
def test_upd_refuses_rows_past_their_range_or_of_another_shard(tmp_path, through, shard, phrase):
    rows = rows_from_entries("A", entries(1, 3), SCALES)["trade"]
    with TickStore(tmp_path) as store, pytest.raises(ValueError, match=phrase):
        store.upd("trade", rows, shard, through)


def test_readers_ignore_temporary_files_and_reopening_removes_them(tmp_path):
    with TickStore(tmp_path) as store:
        record(store, "A", entries(1, 2), SCALES)
    directory = tmp_path / "2024.05.01" / "trade"
    (directory / ".tmp.part.A.00000000000000000003.00000000000000000009.parquet").write_bytes(b"half a fi")
    assert len(table_files(tmp_path, "trade")) == 1
    with TickStore(tmp_path) as store:
        assert store.watermark("trade", "A") == 2
    assert sorted(os.listdir(directory)) == ["part.A.00000000000000000001.00000000000000000002.parquet"]


def test_compaction_leaves_one_file_per_table_with_the_same_rows_and_watermarks(tmp_path):
    with TickStore(tmp_path) as store:
        for first in range(1, 40, 3):
            record(store, "A", entries(first, first + 2), SCALES)
        record(store, "B", entries(1, 4), SCALES)
        before = sorted(stored(tmp_path))
        assert store.compact(T0_DATE) == {"trade": 43, "quote": 43}
        assert [re.sub(r"\d{19}", "N", name) for name in names(tmp_path)] == ["2024.05.01/compacted.N.parquet"]
        assert sorted(stored(tmp_path)) == before
        assert store.compact(T0_DATE) == {"trade": 43, "quote": 43}
    with TickStore(tmp_path) as store:
        assert (store.watermark("trade", "A"), store.watermark("quote", "B")) == (39, 4)
        assert record(store, "A", entries(37, 45), SCALES) == {"trade": 6, "quote": 6}
        store.compact(T0_DATE)
    assert sorted(stored(tmp_path)) == sorted(before + [("A", s) for s in range(40, 46)])


def test_a_query_whose_files_a_compaction_removed_lists_again_and_sees_every_row_once(tmp_path, monkeypatch):
    store = TickStore(tmp_path)
    for first in range(1, 30, 5):
        record(store, "A", entries(first, first + 4), SCALES)
    listings = []

    def list_then_compact(*args):
        listing = table_files(*args)
        listings.append([path.name for path in listing])
        if len(listings) == 1:
            store.compact(T0_DATE)
        return listing

    monkeypatch.setattr(queries_module, "table_files", list_then_compact)
    history = TickHistory(tmp_path)
    assert history.vwap("ACME").column("trades").to_pylist() == [30]
    assert len(listings[0]) == 6 and len(listings) == 2 and listings[1][0].startswith("compacted.")
    store.close()


def test_readers_during_writes_and_compactions_always_see_a_committed_state(tmp_path):
    store = TickStore(tmp_path)
    record(store, "A", entries(1, 5), SCALES)
    committed = {5}
    done = threading.Event()
    seen, failures = [], []

    def read():
        history = TickHistory(tmp_path)
        while not done.is_set():
            try:
                count = history.vwap("ACME").column("trades").to_pylist()[0]
            except Exception as exc:  # the assertion below reports it
                failures.append(repr(exc))
                return
            seen.append(count)
            if count not in committed:
                failures.append(f"saw {count} trades, committed states: {sorted(committed)}")
        history.close()

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for first in range(6, 206, 5):
            committed.add(first + 4)
            record(store, "A", entries(first, first + 4), SCALES)
            if first % 20 == 1:
                store.compact(T0_DATE)
    finally:
        done.set()
        reader.join(timeout=60)
        store.close()
    assert not failures, failures[:3]
    assert seen and seen == sorted(seen)

