"""Replaying whole streams: the standard 1M workload gives identical fills with both engines,
and the replay/bench commands work on the native engine."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from benchmarks import e2e
from engine import workload
from engine.book import ReferenceBook
from engine.replay import replay_rows
from engine.stream import FILL_DTYPE, STREAM_DTYPE, save_array
from native.book import NativeBook

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def standard_1m():
    return workload.standard(1_000_000, seed=42)


@pytest.mark.slow
def test_standard_1m_workload_gives_identical_fills_and_state_with_both_engines(standard_1m):
    native, reference = NativeBook(), ReferenceBook()
    batch = native.replay(standard_1m)
    expected = reference.replay(standard_1m)
    assert len(expected.fills) > 250_000
    assert expected.rejected == 0 and expected.accepted == len(standard_1m)
    assert batch.fills.dtype == FILL_DTYPE
    assert np.array_equal(batch.fills, expected.fills)
    assert (batch.accepted, batch.rejected) == (expected.accepted, expected.rejected)
    assert native.state_hash() == reference.state_hash()
    assert native.snapshot() == reference.snapshot()
    assert 1_000 < len(native) < 10_000
    native.check_invariants()


def test_native_batch_equals_native_per_message_on_a_deep_book():
    stream = workload.deep(60_000, seed=3, resting=20_000, levels=3)
    batch_book, message_book = NativeBook(), NativeBook()
    batch = batch_book.replay(stream)
    per_message = replay_rows(message_book, stream.tolist())
    assert np.array_equal(batch.fills, per_message.fills)
    assert batch_book.state_hash() == message_book.state_hash()
    assert len(batch_book) > 15_000


def test_replay_of_an_empty_stream_changes_nothing():
    book = NativeBook()
    result = book.replay(np.empty(0, dtype=STREAM_DTYPE))
    assert (len(result.fills), result.accepted, result.rejected) == (0, 0, 0)
    assert book.state_hash() == ReferenceBook().state_hash()


def test_replay_command_on_the_native_engine_matches_the_reference(tmp_path):
    stream = workload.standard(50_000, seed=5)
    save_array(tmp_path / "s.npy", stream)
    outputs = {}
    for engine in ("native", "reference"):
        out = tmp_path / f"{engine}.npy"
        done = subprocess.run([sys.executable, "main.py", "replay", tmp_path / "s.npy", "--out", out,
                               "--engine", engine], cwd=REPO, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        summary = json.loads(done.stdout.strip().splitlines()[-1])
        outputs[engine] = (np.load(out), {k: v for k, v in summary.items() if k not in ("seconds", "msgs_per_s")})
        assert summary["msgs_per_s"] > 0
    assert np.array_equal(outputs["native"][0], outputs["reference"][0])
    assert outputs["native"][1] == outputs["reference"][1]


def bench(*args):
    """``main.py bench ARGS``: its printed table and the JSON report of its last line."""
    done = subprocess.run([sys.executable, "main.py", "bench", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout, json.loads(done.stdout.strip().splitlines()[-1])


def test_bench_book_command_runs_and_checks_the_engines_agree():
    table, report = bench("book", "--messages", "20000", "--repeats", "1", "--resting", "20000")
    assert "| native book, batch replay |" in table
    assert report["standard"]["messages"] == 20_000
    assert report["standard"]["batch_vs_reference"] > 1
    assert [row["resting_orders"] for row in report["memory"]] == [20_000] * 3
    assert report["deep"]["rejected"] == 0


def test_bench_e2e_command_runs_every_rate_repeatedly_and_reports_medians():
    table, report = bench("e2e", "--rates", "1000,3000", "--duration", "0.5", "--repeats", "2")
    assert "median of 2 runs of 0.5 s per rate" in table
    assert report["exit_codes"] == {"tes": 0, "obs": 0}
    assert [row["offered_per_s"] for row in report["rates"]] == [1000, 3000]
    for row in report["rates"]:
        assert len(row["runs"]) == 2 and row["lost"] == 0
        assert all(run["sent"] == run["acked"] == row["offered_per_s"] // 2 for run in row["runs"])
        assert row["ack_p50_us"] <= row["ack_p99_us"]
        assert row["cpu_us_per_order"]["obs"] > 0 and row["cpu_us_per_order"]["tes"] > 0
        assert len(row["floor_runs"]) == 2
        assert all(run["sent"] == row["offered_per_s"] // 2 and run["lost"] == 0 for run in row["floor_runs"])
        assert 0 < row["floor"]["ack_p50_us"] <= row["floor"]["ack_p99_us"]
    assert report["targets"]["100,000 orders/s sustained"] == "not measured"
    assert "target 100,000 orders/s sustained: not measured" in table


def test_median_run_takes_each_figure_s_median_and_the_worst_loss():
    runs = [
        {"orders_per_s": 10.0, "ack_p50_us": 5.0, "ack_p99_us": 90.0, "ack_p999_us": 99.0, "lost": 0, "sent": 1},
        {"orders_per_s": 30.0, "ack_p50_us": 1.0, "ack_p99_us": 10.0, "ack_p999_us": 20.0, "lost": 2, "sent": 2},
        {"orders_per_s": 20.0, "ack_p50_us": 3.0, "ack_p99_us": 50.0, "ack_p999_us": 70.0, "lost": 0, "sent": 3},
    ]
    assert e2e.median_run(runs) == {
        "orders_per_s": 20.0, "ack_p50_us": 3.0, "ack_p99_us": 50.0, "ack_p999_us": 70.0, "lost": 2, "sent": 3}


def test_targets_are_judged_from_the_median_rows():
    def row(offered, answered, lost, p99):
        return {"offered_per_s": offered, "orders_per_s": answered, "lost": lost, "ack_p99_us": p99}

    assert e2e.verdicts([row(10_000, 9_998, 0, 999.0), row(100_000, 99_100, 0, 9e4)]) == {
        "100,000 orders/s sustained": "met (99,100 answered/s, 0 lost)",
        "ack p99 under 1 ms at 10,000/s": "met (p99 999 µs)",
    }
    assert e2e.verdicts([row(10_000, 9_998, 0, 1000.0), row(100_000, 98_900, 0, 9e4)]) == {
        "100,000 orders/s sustained": "not met (98,900 answered/s, 0 lost)",
        "ack p99 under 1 ms at 10,000/s": "not met (p99 1.0 ms)",
    }
    assert e2e.verdicts([row(100_000, 99_999, 3, 9e4)])["100,000 orders/s sustained"].startswith("not met")
    with_floor = {**row(10_000, 10_000, 0, 2500.0), "floor": {"ack_p99_us": 1800.0}}
    assert e2e.verdicts([with_floor])["ack p99 under 1 ms at 10,000/s"] == (
        "not met (p99 2.5 ms; ZeroMQ alone, no exchange behind it: p99 1.8 ms)")
