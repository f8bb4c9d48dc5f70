"""The kdb+ backend over real kdb+ IPC (pykx) to a loopback stand-in for tick.q and its RDB.

kdb+ needs an online licence, so `database.ticks.standin` (aiokdb, a separate process)
plays the tickerplant: it checks each ``.u.upd`` against ``schema.q`` as tick.q would,
counts what its log would hold, and keeps the tables as an RDB with ``.ticks.upd`` would.
"""

import json
import logging
import time

import pyarrow as pa
import pytest
from test_ticks_queries import ENTRIES, SCALES

from config.ports import free_port
from database.ticks.kdb import KdbTickerplant, TickerplantRefused, TickerplantUnavailable
from database.ticks.schema import DAY_NS, TABLES, record, rows_from_entries
from database.ticks.standin import StandIn

TRADES = rows_from_entries("A", ENTRIES, SCALES)["trade"]


@pytest.fixture
def standin():
    with StandIn() as process:
        yield process


def publisher(port, tmp_path, **options):
    """A publisher to ``port`` keeping its watermarks in ``tmp_path``; no back-off unless asked."""
    return KdbTickerplant("127.0.0.1", port, state_path=tmp_path / "kdb.json", **{
        "timeout": 5.0, "backoff_initial": 0.0, **options})


def sequences(standin):
    return list(standin.query("trade").pd()["sequence"])


def wait_for(condition, what, timeout=20.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"no {what} within {timeout} s"
        time.sleep(0.01)


def test_batches_arrive_as_u_upd_into_the_schema_tables_with_their_kdb_types(standin, tmp_path):
    tickerplant = publisher(standin.port, tmp_path)
    assert record(tickerplant, "A", ENTRIES, SCALES) == {"trade": 6, "quote": 8}
    tickerplant.close()
    assert standin.errors() == []
    assert standin.query("tables[]").py() == list(TABLES)
    for table, columns in TABLES.items():
        meta = standin.query(f"meta {table}").pd()
        assert list(meta["c"]) == [c.name for c in columns]
        assert [t.decode() for t in meta["t"]] == [c.kdb for c in columns]
    assert (standin.count("trade"), standin.count("quote")) == (6, 8)
    assert (tickerplant.watermark("trade", "A"), tickerplant.watermark("quote", "A")) == (10, 10)


def test_values_arrive_with_the_time_of_day_as_timespan_and_an_empty_side_as_null(standin, tmp_path):
    tickerplant = publisher(standin.port, tmp_path)
    record(tickerplant, "A", ENTRIES, SCALES)
    tickerplant.close()
    trade = standin.query("trade").pd()
    assert [t.value for t in trade["time"]] == [t % DAY_NS for t in TRADES.column("time").cast(pa.int64()).to_pylist()]
    assert list(trade["sym"]) == ["ACME", "ACME", "ACME", "ACME", "BOLT", "ACME"]
    assert list(trade["price"]) == [101.0, 100.5, 100.0, 100.75, 100.5, 102.0]
    assert list(trade["side"]) == [b"B", b"S", b"S", b"B", b"S", b"B"]
    quote = standin.query("quote").pd()
    empty_ask = quote[quote["sequence"] == 5].iloc[0]
    assert (empty_ask["bid"], empty_ask["asize"]) == (100.25, 0) and empty_ask["ask"] != empty_ask["ask"]


def test_a_resend_after_a_crash_is_logged_twice_by_the_tickerplant_and_stored_once(standin, tmp_path):
    crashed = publisher(standin.port, tmp_path, confirm_every=2)
    crashed.upd("trade", *_args(1, 4))
    crashed.upd("trade", *_args(5, 8))
    crashed.upd("trade", *_args(9, 10))
    wait_for(lambda: standin.logged("trade") == 6, "third batch at the stand-in")
    assert json.loads((tmp_path / "kdb.json").read_text()) == {"trade": {"A": 8}}
    restarted = publisher(standin.port, tmp_path, confirm_every=2)
    assert restarted.watermark("trade", "A") == 8
    assert restarted.upd("trade", *_args(1, 10)) == 1
    restarted.close()
    assert (standin.logged("trade"), standin.count("trade")) == (7, 6)
    assert sequences(standin) == [2, 3, 3, 5, 8, 9]
    assert json.loads((tmp_path / "kdb.json").read_text()) == {"trade": {"A": 10}}


def test_after_the_tickerplant_restarts_the_unconfirmed_batches_are_sent_again(standin, tmp_path):
    tickerplant = publisher(standin.port, tmp_path, confirm_every=2)
    tickerplant.upd("trade", *_args(1, 2))
    tickerplant.upd("trade", *_args(3, 4))
    assert tickerplant.watermark("trade", "A") == 4
    standin.restart()
    tickerplant.upd("trade", *_args(5, 8))
    tickerplant.upd("trade", *_args(9, 10))
    assert tickerplant.watermark("trade", "A") == 10
    assert sequences(standin) == [5, 8, 9] and standin.errors() == []
    tickerplant.close()


def test_while_the_tickerplant_is_down_upd_raises_unavailable_and_a_later_call_sends_the_batch(standin, tmp_path):
    standin.kill()
    tickerplant = publisher(standin.port, tmp_path)
    with pytest.raises(TickerplantUnavailable, match="cannot reach the kdb"):
        tickerplant.upd("trade", *_args(1, 10))
    standin.start()
    assert tickerplant.upd("trade", *_args(1, 10)) == 6
    tickerplant.close()
    assert (standin.count("trade"), tickerplant.watermark("trade", "A")) == (6, 10)


def test_after_a_failed_connection_the_next_attempt_waits_for_the_back_off(tmp_path):
    tickerplant = publisher(free_port(), tmp_path, backoff_initial=60.0)
    with pytest.raises(TickerplantUnavailable, match=r"cannot reach .*; next attempt in 60.0 s"):
        tickerplant.upd("trade", *_args(1, 10))
    with pytest.raises(TickerplantUnavailable, match=r"cannot be reached; next attempt in (59|60)\.\d s"):
        tickerplant.upd("trade", *_args(1, 10))
    assert tickerplant.watermark("trade", "A") == 0 and not (tmp_path / "kdb.json").exists()


def test_closing_without_a_confirmation_leaves_the_watermark_at_the_last_confirmed(standin, tmp_path, caplog):
    tickerplant = publisher(standin.port, tmp_path, confirm_every=2, backoff_initial=60.0)
    tickerplant.upd("trade", *_args(1, 4))
    tickerplant.upd("trade", *_args(5, 8))
    tickerplant.upd("trade", *_args(9, 10))
    standin.kill()
    with caplog.at_level(logging.WARNING, logger="database.ticks.kdb"):
        tickerplant.close()
    assert "closing without a confirmation" in caplog.text
    assert publisher(standin.port, tmp_path).watermark("trade", "A") == 8


def test_refused_credentials_fail_at_once_without_retrying(tmp_path):
    with StandIn(password="secret") as guarded:
        wrong = KdbTickerplant("127.0.0.1", guarded.port, user="feed", password="guess",
                               state_path=tmp_path / "kdb.json", backoff_initial=60.0)
        with pytest.raises(TickerplantRefused, match="refused the credentials of user 'feed'"):
            wrong.upd("trade", *_args(1, 10))
        right = KdbTickerplant("127.0.0.1", guarded.port, user="feed", password="secret",
                               state_path=tmp_path / "kdb.json")
        assert right.upd("trade", *_args(1, 10)) == 6
        right.close()
        assert guarded.count("trade") == 6


def test_the_watermark_file_changes_only_after_a_confirmation(standin, tmp_path):
    tickerplant = publisher(standin.port, tmp_path, confirm_every=3)
    tickerplant.upd("trade", *_args(1, 2))
    tickerplant.upd("quote", *_args(1, 4, "quote"))
    assert tickerplant.watermark("trade", "A") == 0 and not (tmp_path / "kdb.json").exists()
    tickerplant.upd("trade", *_args(3, 6))
    assert json.loads((tmp_path / "kdb.json").read_text()) == {"quote": {"A": 4}, "trade": {"A": 6}}
    assert tickerplant.upd("trade", *_args(1, 6)) == 0
    tickerplant.close()


def _args(first, last, table="trade"):
    """``upd``'s arguments but the table: the rows of journal entries ``first..last`` of shard A."""
    rows = rows_from_entries("A", [e for e in ENTRIES if first <= e.sequence <= last], SCALES)[table]
    return rows, "A", last
