"""`python main.py bench soak` (`benchmarks.soak`): a short run through the real processes, and
the verdict on made-up rounds."""

import json
import os
import subprocess
import sys

from procs import REPO

from benchmarks import soak


def test_bench_soak_command_runs_rounds_in_which_the_accepted_ids_grow():
    env = dict(os.environ, EXCHANGE__JOURNAL__SNAPSHOT_EVERY="500")
    done = subprocess.run(
        [sys.executable, "main.py", "bench", "soak", "--orders", "4000", "--rate", "2000", "--round-s", "1"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert [(row["round"], row["sent"], row["acked"], row["lost"]) for row in report["rounds"]] == [
        (1, 2000, 2000, 0), (2, 2000, 2000, 0),
    ]  # fmt: skip
    assert report["ids_grew"] and all(row["snapshot"]["ranges"] == 1 for row in report["rounds"])
    assert report["final"]["accepted_ids"] == 4000 and report["final"]["ranges"] == 1
    assert report["exit_codes"] == {"tes": 0, "obs": 0}
    assert report["verdict"]["text"].split(":")[0] in ("flat", "NOT flat")
    assert soak.HEADER in done.stdout and f"ack p99: {report['verdict']['text']}" in done.stdout
    # each round's tail: its longest ack and the servers' stalls (none, or a stage and its laps)
    first = next(line for line in done.stdout.splitlines() if line.startswith("| 1 | 2,000 | "))
    separator = done.stdout.splitlines()[done.stdout.splitlines().index(soak.HEADER) + 1]
    assert separator.count("|") == soak.HEADER.count("|")
    cells = first.split(" | ")
    assert cells[6] != "n/a" and cells[7].count(";") == 1 and "n/a" not in cells[7]
    assert all(row["ack_max_us"] >= row["ack_p99_us"] for row in report["rounds"])


def test_rounds_are_full_then_the_rest():
    assert soak.round_sizes(10_000_000, 50_000, 20) == [1_000_000] * 10
    assert soak.round_sizes(2_500, 1_000, 1) == [1_000, 1_000, 500]
    assert soak.round_sizes(3, 1_000, 1) == [3]


def rounds(*p99s, lost=0, answered=1_000):
    """Rounds at 1,000 orders/s offered with these p99s (the first one losing ``lost``)."""
    return [
        {"round": i + 1, "ack_p99_us": p99, "lost": lost if i == 0 else 0, "orders_per_s": answered}
        for i, p99 in enumerate(p99s)
    ]


def test_p99_is_flat_despite_an_outlying_round():
    verdict = soak.judge(rounds(10e3, 12e3, 9e3, 11e3, 60e3, 10e3, 13e3, 9e3, 12e3, 11e3), 1_000)
    assert verdict["flat"] and (verdict["first_p99_us"], verdict["last_p99_us"]) == (10e3, 11e3)
    assert verdict["text"].startswith("flat: median p99 of the last 3 round(s) 11.0 ms, of the first 3 10.0 ms")


def test_p99_that_climbs_round_after_round_is_not_flat():
    climbing = soak.judge(rounds(10e3, 38e3, 184e3, 224e3), 1_000)
    assert not climbing["flat"] and climbing["ratio"] > 2 and climbing["rise"] > 2
    slow_climb = soak.judge(rounds(*(10e3 * 1.1**i for i in range(10))), 1_000)  # only the trend line catches it
    assert not slow_climb["flat"] and slow_climb["ratio"] < 2 < slow_climb["rise"]


def test_lost_orders_a_silent_round_or_a_saturated_exchange_are_not_flat():
    assert not soak.judge(rounds(10e3, 10e3, lost=1), 1_000)["flat"]
    assert not soak.judge(rounds(10e3, None), 1_000)["flat"]
    saturated = soak.judge(rounds(5e6, 5e6, answered=720), 1_000)
    assert not saturated["flat"] and saturated["saturated_rounds"] == [1, 2]
    assert "round(s) 1, 2 answered under 99% of 1,000/s: saturated" in saturated["text"]
