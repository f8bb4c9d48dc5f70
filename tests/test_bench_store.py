"""`python main.py bench store` (`benchmarks.store`): a run at tiny sizes whose every figure stands on
the rows it wrote, and the verdicts on made-up figures."""

import json
import subprocess
import sys

from procs import REPO

from benchmarks import store

TRADES, TICKS = 2_000, 20_000
WARM_UP = 2 * 2 * (TRADES // 50)
"""Resting orders entered before timing: two sides of two symbols, ``TRADES // 50`` deep."""
ROWS = {"orders": WARM_UP + 2 * TRADES, "order_events": WARM_UP + 2 * TRADES + 2 * TRADES, "executions": TRADES}
"""Every entry submits an order that is accepted; half the entries fill, a step of each of two orders."""


def test_bench_store_command_measures_every_figure_on_the_rows_it_wrote():
    done = subprocess.run(
        [sys.executable, "main.py", "bench", "store", "--ticks", str(TICKS), "--trades", str(TRADES), "--repeats", "1"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])

    databases = report["database"]
    assert (databases["trades"], databases["entries"], databases["repeats"]) == (TRADES, 2 * TRADES, 1)
    engines = [databases["sqlite"]] + ([] if "skipped" in databases["postgresql"] else [databases["postgresql"]])
    for engine in engines:
        assert engine["rows"] == ROWS
        assert [run["rows"] for run in engine["runs"] + engine["writer_runs"]] == [ROWS, ROWS]
        assert engine["trades_per_s"] == engine["runs"][0]["trades_per_s"] > 0
        assert engine["of_writer_alone"] == round(engine["trades_per_s"] / engine["writer_alone_trades_per_s"], 3)
    assert databases["translation"]["trades_per_s"] > 0

    tick = report["ticks"]
    assert tick["record_store"]["rows"] == {"trade": TICKS // 10, "quote": TICKS // 10}
    assert (tick["write_store"]["ticks"], tick["write_ipc"]["ticks"]) == (TICKS // 10, TICKS // 50)
    assert tick["bars"]["ticks"] == TICKS and tick["bars"]["bars"] > 0
    assert (tick["asof_join"]["trades"], tick["asof_join"]["quotes"]) == (TICKS // 10, TICKS)

    verdicts = report["targets"]
    assert verdicts == store.verdicts(report)
    assert verdicts["OHLCV bars over 10,000,000 ticks under 0.5 s"].startswith("not judged (measured over 20,000")
    assert store.HEADER in done.stdout
    assert all(verdict in done.stdout for verdict in verdicts.values())


def figures(postgres_rate=60_000, fills_rate=150_000, bars_s=0.3, bars_ticks=10_000_000) -> dict:
    """A report with these figures (the rest as `verdicts` never reads them)."""
    return {
        "database": {"postgresql": {"trades_per_s": postgres_rate, "writer_alone_trades_per_s": 70_000}},
        "ticks": {"record_store": {"fills_per_s": fills_rate}, "bars": {"ticks": bars_ticks, "duckdb_s": bars_s}},
    }


def test_targets_are_met_at_their_own_sizes_and_rates():
    assert list(store.verdicts(figures()).values()) == [
        "met (150,000/s)",
        "met (60,000/s, 120% of the target; the writer alone 70,000/s)",
        "met (0.300 s)",
    ]


def test_targets_missed_are_not_met_and_a_small_bars_run_is_not_judged():
    assert list(store.verdicts(figures(20_000, 90_000, 0.6)).values()) == [
        "not met (90,000/s)",
        "not met (20,000/s, 40% of the target; the writer alone 70,000/s)",
        "not met (0.600 s)",
    ]
    small = store.verdicts(figures(bars_s=0.01, bars_ticks=1_000))
    assert small["OHLCV bars over 10,000,000 ticks under 0.5 s"] == "not judged (measured over 1,000 ticks: 0.010 s)"


def test_without_a_server_postgresql_is_not_measured():
    report = figures()
    report["database"]["postgresql"] = {"skipped": "no server at postgresql://nowhere"}
    assert store.verdicts(report)["50,000 trades/s into PostgreSQL"] == \
        "not measured (no server at postgresql://nowhere)"
