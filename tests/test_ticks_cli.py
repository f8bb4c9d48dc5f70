"""``python main.py history ...``: the tick store's queries on the command line (`database.ticks.cli`)."""

import os
import subprocess
import sys

import pytest
from test_ticks_queries import ENTRIES, SCALES

import main
from database.ticks.schema import record
from database.ticks.store import TickStore

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def root(tmp_path, monkeypatch):
    with TickStore(tmp_path) as store:
        record(store, "A", ENTRIES, SCALES)
    monkeypatch.setenv("EXCHANGE__TICKS__ROOT", str(tmp_path))
    return tmp_path


def history(*args):
    return subprocess.run([sys.executable, "main.py", "history", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=60, env=os.environ)


def test_bars_as_csv_in_a_subprocess_print_every_digit_and_iso_times(root):
    done = history("bars", "ACME", "--interval", "1m", "--start", "2024-05-01T09:30", "--end", "2024-05-01T11:31+02:00",
                   "--csv")
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout.splitlines() == [
        "sym,time,open,high,low,close,volume,trades",
        "ACME,2024-05-01T09:30:00.000000000Z,101.0,101.0,100.0,100.0,10,3",
    ]


def test_bad_interval_in_a_subprocess_is_one_error_line_with_status_2(root):
    done = history("bars", "ACME", "--interval", "banana")
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr.splitlines() == [
        "error: argument --interval: bad interval 'banana': a positive whole number and a unit, one of ns, us, ms, "
        "s, m, h, d (e.g. 5m) (see main.py history bars --help)"
    ]


def test_aj_as_a_table_aligns_columns_and_leaves_an_empty_side_blank(root, capsys):
    assert main.main(["history", "aj", "ACME", "--end", "2024-05-02"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "time                            sym    price  size  trade_id  side     bid     ask  bsize  asize  quote_time",
        "2024-05-01T09:30:10.000000000Z  ACME  101.00     2         1  B     100.00  101.00      5      3  "
        "2024-05-01T09:30:10.000000000Z",
        "2024-05-01T09:30:50.000000000Z  ACME  100.50     4         2  S      99.50  101.00      1      3  "
        "2024-05-01T09:30:50.000000000Z",
        "2024-05-01T09:30:50.000000000Z  ACME  100.00     4         3  S      99.50  101.00      1      3  "
        "2024-05-01T09:30:50.000000000Z",
        "2024-05-01T09:31:20.000000000Z  ACME  100.75     6         4  B     100.25              2      0  "
        "2024-05-01T09:31:20.000000000Z",
        "(4 rows)",
    ]


def test_daily_table_gives_averages_two_more_decimals_than_the_instrument(root, capsys):
    assert main.main(["history", "daily", "--start", "2024-05-01", "--end", "2024-05-02"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "date        sym   volume  trades      vwap  spread",
        "2024-05-01  ACME      16       4  100.5312  1.2500",
        "2024-05-01  BOLT      10       1  100.5000  1.0000",
        "(2 rows)",
    ]


@pytest.mark.parametrize("args, message", [
    (["vwap", "XYZ"], "error: unknown symbol 'XYZ' (instruments: ACME, BOLT)"),
    (["bars", "ACME", "--interval", "0s"], "error: argument --interval: bad interval '0s'"),
    (["ticks", "ACME", "--start", "2024-13-01"], "error: argument --start: bad time '2024-13-01'"),
    (["ticks", "ACME", "--start", "2024-05-02", "--end", "2024-05-01T23:00"],
     "error: the range ends (2024-05-01T23:00:00.000000000Z) before it starts (2024-05-02T00:00:00.000000000Z)"),
    (["compact", "2024-5-1x"], "error: argument DATE: bad date '2024-5-1x'"),
])
def test_bad_input_is_one_error_line_and_status_2(root, capsys, args, message):
    assert exit_status(["history", *args]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and len(captured.err.splitlines()) == 1
    assert captured.err.startswith(message)


def test_with_a_kdb_host_configured_history_says_to_query_kdb(root, capsys, monkeypatch):
    monkeypatch.setenv("EXCHANGE__TICKS__KDB_HOST", "tp.example")
    assert main.main(["history", "vwap"]) == 2
    assert capsys.readouterr().err == ("error: ticks.kdb_host is set: ticks go to the kdb+ tickerplant at "
                                       "tp.example:5010; query them there (history reads the embedded store)\n")


def test_compact_rewrites_a_day_and_is_refused_while_a_writer_holds_the_store(root, capsys):
    with TickStore(root):
        assert main.main(["history", "compact", "2024-05-01"]) == 2
        assert "open for writing by another process: stop the recorder first" in capsys.readouterr().err
    assert main.main(["history", "compact", "2024.05.01"]) == 0
    assert capsys.readouterr().out == "trade: 5 rows quote: 7 rows\n"


def exit_status(argv):
    """``main.main(argv)``'s status, whether it returns it or argparse exits with it."""
    try:
        return main.main(argv)
    except SystemExit as exc:
        return exc.code
