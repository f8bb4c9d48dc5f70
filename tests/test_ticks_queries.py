"""Every query of `database.ticks.queries` against a small store with hand-computed answers.

The store: shard A, ACME (100 ticks per unit) and BOLT (8 per unit), over two days. Prices
and sizes are chosen so that every sum and average is exact in binary floating point.

===  ==========  ====  ===================================  ==========================
seq  time (UTC)  sym   trades (id price x size side)        quote after (bid x / ask x)
===  ==========  ====  ===================================  ==========================
1    05-01 09:30:00  ACME                                       100.00 x5 / 101.00 x5
2    05-01 09:30:10  ACME  1: 101.00 x2 B                       100.00 x5 / 101.00 x3
3    05-01 09:30:50  ACME  2: 100.50 x4 S, 3: 100.00 x4 S       99.50 x1 / 101.00 x3
4    05-01 09:31:20  ACME                                       100.25 x2 / 100.75 x2
5    05-01 09:31:20  ACME  4: 100.75 x6 B                       100.25 x2 / (empty)
6    05-01 09:31:20  ACME                                       100.25 x2 / 102.50 x1
7    05-01 09:32:00  BOLT                                       100.00 x10 / 101.00 x10
8    05-01 09:32:05  BOLT  1: 100.50 x10 S
9    05-02 00:00:30  ACME  5: 102.00 x1 B
10   05-02 00:01:00  ACME                                       101.00 x1 / 103.00 x1
===  ==========  ====  ===================================  ==========================
"""

import math
from datetime import date

import pyarrow as pa
import pytest

from database.ticks.queries import TickHistory
from database.ticks.schema import record
from database.ticks.store import TickStore
from engine.types import Side
from servers.protocol import BookSubmit, JournalEntry, Quote, Trade

DAY1 = 1_714_521_600 * 10**9
DAY2 = DAY1 + 86_400 * 10**9
S, MINUTE = 10**9, 60 * 10**9
B, SELL = Side.BUY, Side.SELL
NAN = float("nan")
SCALES = {"ACME": 100, "BOLT": 8}


def at(day, hours, minutes, seconds):
    return day + ((hours * 60 + minutes) * 60 + seconds) * S


def entry(sequence, time, *market_data):
    return JournalEntry(sequence, time, BookSubmit("ACME", sequence, B, 0, 0, 1, 1), [], list(market_data))


ENTRIES = [
    entry(1, at(DAY1, 9, 30, 0), Quote("ACME", 0, 10_000, 5, 10_100, 5)),
    entry(2, at(DAY1, 9, 30, 10), Trade("ACME", 0, 1, 10_100, 2, B), Quote("ACME", 0, 10_000, 5, 10_100, 3)),
    entry(3, at(DAY1, 9, 30, 50), Trade("ACME", 0, 2, 10_050, 4, SELL), Trade("ACME", 0, 3, 10_000, 4, SELL),
          Quote("ACME", 0, 9_950, 1, 10_100, 3)),
    entry(4, at(DAY1, 9, 31, 20), Quote("ACME", 0, 10_025, 2, 10_075, 2)),
    entry(5, at(DAY1, 9, 31, 20), Trade("ACME", 0, 4, 10_075, 6, B), Quote("ACME", 0, 10_025, 2, 0, 0)),
    entry(6, at(DAY1, 9, 31, 20), Quote("ACME", 0, 10_025, 2, 10_250, 1)),
    entry(7, at(DAY1, 9, 32, 0), Quote("BOLT", 0, 800, 10, 808, 10)),
    entry(8, at(DAY1, 9, 32, 5), Trade("BOLT", 0, 1, 804, 10, SELL)),
    entry(9, at(DAY2, 0, 0, 30), Trade("ACME", 0, 5, 10_200, 1, B)),
    entry(10, at(DAY2, 0, 1, 0), Quote("ACME", 0, 10_100, 1, 10_300, 1)),
]


@pytest.fixture(scope="module")
def history(tmp_path_factory):
    root = tmp_path_factory.mktemp("ticks")
    with TickStore(root) as store:
        record(store, "A", ENTRIES[:4], SCALES)
        record(store, "A", ENTRIES[4:], SCALES)
    queries = TickHistory(root)
    yield queries
    queries.close()


def rows(table: pa.Table) -> list[tuple]:
    """The table's rows as tuples, times as integer nanoseconds, NaN as the string "nan"."""
    columns = []
    for name in table.column_names:
        column = table.column(name)
        if pa.types.is_timestamp(column.type):
            columns.append(column.cast(pa.int64()).to_pylist())
        else:
            columns.append(["nan" if isinstance(v, float) and math.isnan(v) else v for v in column.to_pylist()])
    return list(zip(*columns, strict=True))


def test_ticks_are_the_symbols_rows_in_the_half_open_range_by_time_and_trade_id(history):
    table = history.ticks("trade", "ACME", at(DAY1, 9, 30, 30), at(DAY1, 9, 31, 20) + 1)
    assert table.column_names == ["time", "sym", "price", "size", "trade_id", "side", "shard", "sequence"]
    assert rows(table) == [
        (at(DAY1, 9, 30, 50), "ACME", 100.5, 4, 2, "S", "A", 3),
        (at(DAY1, 9, 30, 50), "ACME", 100.0, 4, 3, "S", "A", 3),
        (at(DAY1, 9, 31, 20), "ACME", 100.75, 6, 4, "B", "A", 5),
    ]
    assert history.ticks("trade", "ACME", at(DAY1, 9, 30, 30), at(DAY1, 9, 31, 20)).num_rows == 2
    quotes = history.ticks("quote", "BOLT")
    assert rows(quotes) == [(at(DAY1, 9, 32, 0), "BOLT", 100.0, 101.0, 10, 10, "A", 7)]


def test_one_minute_bars_have_ohlc_by_trade_id_volume_and_count_at_each_minute_start(history):
    assert rows(history.bars("ACME", MINUTE)) == [
        ("ACME", at(DAY1, 9, 30, 0), 101.0, 101.0, 100.0, 100.0, 10, 3),
        ("ACME", at(DAY1, 9, 31, 0), 100.75, 100.75, 100.75, 100.75, 6, 1),
        ("ACME", at(DAY2, 0, 0, 0), 102.0, 102.0, 102.0, 102.0, 1, 1),
    ]


def test_day_bars_of_every_symbol_start_at_midnight_utc(history):
    table = history.bars(None, 86_400 * S)
    assert table.column_names == ["sym", "time", "open", "high", "low", "close", "volume", "trades"]
    assert rows(table) == [
        ("ACME", DAY1, 101.0, 101.0, 100.0, 100.75, 16, 4),
        ("ACME", DAY2, 102.0, 102.0, 102.0, 102.0, 1, 1),
        ("BOLT", DAY1, 100.5, 100.5, 100.5, 100.5, 10, 1),
    ]


def test_bars_of_an_odd_interval_start_at_its_multiples_since_the_epoch(history):
    seven_seconds = 7 * S
    starts = [row[1] for row in rows(history.bars("ACME", seven_seconds, DAY1, DAY2))]
    assert starts == [t // seven_seconds * seven_seconds for t in (at(DAY1, 9, 30, 10), at(DAY1, 9, 30, 50),
                                                                   at(DAY1, 9, 31, 20))]


def test_vwap_is_the_size_weighted_price_per_symbol_over_the_range(history):
    assert rows(history.vwap(None, DAY1, DAY2)) == [("ACME", 1608.5 / 16, 16, 4), ("BOLT", 100.5, 10, 1)]
    assert rows(history.vwap("ACME", at(DAY1, 9, 30, 50), DAY2)) == [("ACME", (402 + 400 + 604.5) / 14, 14, 3)]
    assert history.vwap("ACME", DAY2 + 3600 * S).num_rows == 0


def test_aj_matches_each_trade_with_the_last_quote_at_or_before_it_in_sequence_order(history):
    table = history.trades_with_quotes("ACME")
    assert table.column_names == ["time", "sym", "price", "size", "trade_id", "side",
                                  "bid", "ask", "bsize", "asize", "quote_time"]
    assert [row[4:] for row in rows(table)] == [
        (1, "B", 100.0, 101.0, 5, 3, at(DAY1, 9, 30, 10)),
        (2, "S", 99.5, 101.0, 1, 3, at(DAY1, 9, 30, 50)),
        (3, "S", 99.5, 101.0, 1, 3, at(DAY1, 9, 30, 50)),
        (4, "B", 100.25, "nan", 2, 0, at(DAY1, 9, 31, 20)),
        (5, "B", 100.25, 102.5, 2, 1, at(DAY1, 9, 31, 20)),
    ]


def test_aj_looks_for_quotes_from_midnight_of_the_ranges_first_day(history):
    assert [row[4:] for row in rows(history.trades_with_quotes("ACME", DAY2))] == [
        (5, "B", "nan", "nan", 0, 0, None),
    ]
    assert [row[4:] for row in rows(history.trades_with_quotes("BOLT", at(DAY1, 9, 32, 1), DAY2))] == [
        (1, "S", 100.0, 101.0, 10, 10, at(DAY1, 9, 32, 0)),
    ]


def test_daily_summary_has_volume_trades_vwap_and_mean_two_sided_spread_per_symbol_and_day(history):
    table = history.daily(None)
    assert table.column_names == ["date", "sym", "volume", "trades", "vwap", "spread"]
    assert rows(table) == [
        (date(2024, 5, 1), "ACME", 16, 4, 100.53125, 1.25),
        (date(2024, 5, 1), "BOLT", 10, 1, 100.5, 1.0),
        (date(2024, 5, 2), "ACME", 1, 1, 102.0, 2.0),
    ]
    assert rows(history.daily("BOLT", DAY1, at(DAY1, 9, 32, 1)))[0][1:] == ("BOLT", 0, 0, "nan", 1.0)


def test_queries_over_a_range_without_files_return_empty_tables_with_their_columns(history):
    later = DAY2 + 30 * 86_400 * S
    for table, columns in [
        (history.ticks("quote", "ACME", later), 8),
        (history.bars("ACME", MINUTE, later), 8),
        (history.trades_with_quotes("ACME", later), 11),
        (history.daily(None, later), 6),
    ]:
        assert (table.num_rows, table.num_columns) == (0, columns)
