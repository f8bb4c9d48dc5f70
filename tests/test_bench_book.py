"""``python main.py bench book`` at its smallest: the documented minimum size runs, and the memory
table's header names the resting orders it was asked for (`benchmarks.book`)."""

import json
import subprocess
import sys

from servers.processes import REPO


def test_smallest_run_names_its_resting_orders_in_the_memory_header():
    done = subprocess.run(
        [sys.executable, "main.py", "bench", "book", "--messages", "4", "--repeats", "1", "--resting", "1234"],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )
    assert (done.returncode, done.stderr) == (0, ""), done.stderr
    lines = done.stdout.splitlines()
    assert "| 1,234 resting orders | levels | peak RSS growth | process peak RSS | book's own buffers |" in lines
    report = json.loads(lines[-1])
    assert [row["resting_orders"] for row in report["memory"]] == [1234, 1234, 1234]
    assert (report["standard"]["messages"], report["deep"]["messages"]) == (4, 4)


def test_bench_book_refuses_fewer_than_4_messages_in_one_line():
    done = subprocess.run([sys.executable, "main.py", "bench", "book", "--messages", "3"], cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == "error: argument --messages: must be at least 4, got 3 (see main.py bench --help)\n"
