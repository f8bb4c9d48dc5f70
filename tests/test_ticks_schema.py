"""The tick schema and the capture of journal entries into rows (`database.ticks.schema`)."""

import math

import pyarrow as pa
import pytest
from obs_streams import SYMBOLS, commands

from database.ticks.schema import TABLES, arrow_schema, record, rows_from_entries
from database.ticks.standin import SCHEMA_Q, q_schema
from engine.types import Side
from servers.protocol import BookCancel, BookSubmit, DepthUpdate, JournalEntry, Quote, Trade
from servers.shard import Shard, decode_entry

T0 = 1_714_521_600 * 10**9
"""2024-05-01 00:00 UTC."""
SCALES = {"ACME": 100, "BOLT": 8}
BUY, SELL = Side.BUY, Side.SELL
SUBMIT = BookSubmit("ACME", 1, BUY, 0, 0, 10_000, 5)


def test_every_table_starts_with_time_and_sym_and_types_each_column_for_arrow_and_kdb():
    for table, columns in TABLES.items():
        assert [c.name for c in columns[:2]] == ["time", "sym"], table
        assert all(c.kdb in "nsfjc" for c in columns), table
        assert arrow_schema(table).names == [c.name for c in columns]
    assert arrow_schema("trade").field("time").type == pa.timestamp("ns", tz="UTC")


def test_schema_q_declares_the_same_tables_columns_and_kdb_types_as_schema_py():
    assert q_schema(SCHEMA_Q.read_text()) == {
        table: [(c.name, c.kdb) for c in columns] for table, columns in TABLES.items()
    }


def test_capture_makes_a_row_per_trade_and_quote_at_the_entry_time_and_skips_depth():
    entries = [
        JournalEntry(7, T0 + 100, SUBMIT, [], [
            DepthUpdate("ACME", 1, BUY, 10_000, 5, 1),
            Quote("ACME", 2, 10_000, 5, 0, 0),
        ]),
        JournalEntry(8, T0 + 200, SUBMIT, [], [
            Trade("ACME", 3, 1, 10_050, 3, SELL),
            Trade("ACME", 4, 2, 10_025, 2, SELL),
            DepthUpdate("ACME", 5, BUY, 10_050, 0, 0),
            Quote("ACME", 6, 10_000, 5, 10_075, 1),
        ]),
        JournalEntry(9, T0 + 300, BookCancel("BOLT", 3), [], [Quote("BOLT", 1, 0, 0, 0, 0)]),
        JournalEntry(10, T0 + 400, BookSubmit("BOLT", 4, BUY, 0, 0, 804, 10), [], [Trade("BOLT", 2, 1, 804, 10, BUY)]),
    ]
    rows = rows_from_entries("A", entries, SCALES)
    assert rows["trade"].schema == arrow_schema("trade")
    assert _nanoseconds(rows["trade"]) == [T0 + 200, T0 + 200, T0 + 400]
    assert rows["trade"].drop_columns("time").to_pydict() == {
        "sym": ["ACME", "ACME", "BOLT"],
        "price": [100.5, 100.25, 100.5],
        "size": [3, 2, 10],
        "trade_id": [1, 2, 1],
        "side": ["S", "S", "B"],
        "shard": ["A", "A", "A"],
        "sequence": [8, 8, 10],
    }
    quotes = rows["quote"].to_pydict()
    assert rows["quote"].schema == arrow_schema("quote")
    assert [quotes[c] for c in ("sym", "bsize", "asize", "shard", "sequence")] == [
        ["ACME", "ACME", "BOLT"], [5, 5, 0], [0, 1, 0], ["A", "A", "A"], [7, 8, 9],
    ]
    assert _nanoseconds(rows["quote"]) == [T0 + 100, T0 + 200, T0 + 300]
    assert quotes["bid"][:2] == [100.0, 100.0] and math.isnan(quotes["bid"][2])
    assert math.isnan(quotes["ask"][0]) and quotes["ask"][1] == 100.75 and math.isnan(quotes["ask"][2])


def test_capture_of_entries_without_market_data_gives_empty_tables_of_the_schema():
    rows = rows_from_entries("A", [JournalEntry(1, T0, BookCancel("ACME", 9), [], [])], SCALES)
    assert {table: (len(r), r.schema) for table, r in rows.items()} == {
        table: (0, arrow_schema(table)) for table in TABLES
    }


@pytest.mark.parametrize("entries, phrase", [
    ([JournalEntry(1, T0, SUBMIT, [], [Trade("ZZZ", 1, 1, 1, 1, BUY)])], "no price_scale for symbol 'ZZZ'"),
    ([JournalEntry(2, T0, SUBMIT, [], []), JournalEntry(2, T0, SUBMIT, [], [])], "out of order"),
])
def test_capture_refuses_an_unknown_symbol_or_entries_out_of_order(entries, phrase):
    with pytest.raises(ValueError, match=phrase):
        rows_from_entries("A", entries, SCALES)


def test_capture_of_a_shard_run_in_process_has_a_row_per_trade_and_quote_it_published():
    shard, entries = Shard.empty(SYMBOLS), []
    for sequence, command in enumerate(commands(400), start=1):
        payload, _, _ = shard.execute(sequence, T0 + sequence * 1000, command, [])
        entries.append(decode_entry(payload))
    published = [message for entry in entries for message in entry.market_data]
    rows = rows_from_entries("A", entries, dict.fromkeys(SYMBOLS, 100))
    trades = [m for m in published if type(m) is Trade]
    quotes = [m for m in published if type(m) is Quote]
    assert len(trades) > 20 and len(quotes) > 20
    assert rows["trade"].column("trade_id").to_pylist() == [m.trade_id for m in trades]
    assert rows["trade"].column("price").to_pylist() == [m.price / 100 for m in trades]
    assert rows["quote"].column("bsize").to_pylist() == [m.bid_quantity for m in quotes]
    assert _nanoseconds(rows["quote"]) == [m.time for m in quotes]


def test_record_hands_every_table_to_upd_up_to_the_last_entry_even_without_rows():
    class Backend:
        calls = []

        def upd(self, table, rows, shard, through_sequence):
            self.calls.append((table, len(rows), shard, through_sequence))
            return len(rows)

    entries = [JournalEntry(4, T0, SUBMIT, [], [Quote("ACME", 1, 10_000, 5, 0, 0)]),
               JournalEntry(5, T0, BookCancel("ACME", 1), [], [])]
    backend = Backend()
    assert record(backend, "B", entries, SCALES) == {"trade": 0, "quote": 1}
    assert backend.calls == [("trade", 0, "B", 5), ("quote", 1, "B", 5)]


def _nanoseconds(rows):
    return rows.column("time").cast(pa.int64()).to_pylist()
