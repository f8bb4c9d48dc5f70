"""The command-line launcher, run as a subprocess exactly as a user would.

Only the reference engine is exercised here; the native engine has its own tests.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from engine import workload
from engine.book import ReferenceBook
from engine.stream import FILL_DTYPE, STREAM_DTYPE, load_stream, save_array

REPO = Path(__file__).resolve().parent.parent
SUMMARY_KEYS = [
    "messages",
    "accepted",
    "rejected",
    "fills",
    "filled_qty",
    "resting_orders",
    "best_bid",
    "best_ask",
    "seconds",
    "msgs_per_s",
]


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "main.py", *map(str, args)],
        check=False,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )


def last_json_line(output: str) -> dict:
    return json.loads(output.strip().splitlines()[-1])


def assert_clean_error(process: subprocess.CompletedProcess, *phrases: str) -> None:
    """Exit status 2, one ``error:`` line on stderr naming ``phrases``, no traceback."""
    assert process.returncode == 2, process.stderr
    lines = process.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), process.stderr
    assert "Traceback" not in process.stderr
    for phrase in phrases:
        assert phrase in lines[0]


@pytest.fixture(scope="module")
def stream_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("stream") / "standard.npy"
    save_array(path, workload.standard(8_000, 11))
    return path


# ------------------------------------------------------------------ replay


def test_replay_prints_summary_consistent_with_fills_and_reference(stream_file, tmp_path):
    out = tmp_path / "fills.npy"
    process = run("replay", stream_file, "--out", out, "--engine", "reference")
    assert process.returncode == 0, process.stderr
    summary = last_json_line(process.stdout)
    assert list(summary) == SUMMARY_KEYS

    fills = np.load(out, allow_pickle=False)
    assert fills.dtype == FILL_DTYPE
    assert summary["fills"] == len(fills) > 0
    assert summary["filled_qty"] == int(fills["qty"].sum())

    stream = load_stream(stream_file)
    book = ReferenceBook()
    expected = book.replay(stream)
    assert fills.tobytes() == expected.fills.tobytes()
    assert summary["messages"] == len(stream)
    assert (
        (summary["accepted"], summary["rejected"])
        == (expected.accepted, expected.rejected)
        == (len(stream), 0)
    )
    assert summary["resting_orders"] == len(book)
    assert (summary["best_bid"], summary["best_ask"]) == (book.best_bid(), book.best_ask())
    assert summary["seconds"] > 0 and summary["msgs_per_s"] > 0


def test_replay_reports_an_empty_side_as_null(tmp_path):
    stream = np.zeros(1, dtype=STREAM_DTYPE)
    stream[0] = (0, 0, 10_000, 5, 1, 0)
    save_array(tmp_path / "one.npy", stream)
    process = run("replay", tmp_path / "one.npy", "--out", tmp_path / "fills.npy", "--engine", "reference")
    assert process.returncode == 0, process.stderr
    summary = last_json_line(process.stdout)
    assert (summary["best_bid"], summary["best_ask"], summary["fills"]) == (10_000, None, 0)
    assert len(np.load(tmp_path / "fills.npy", allow_pickle=False)) == 0


def write_bad_input(kind: str, path: Path) -> Path:
    """An input file that is not a replayable stream, of the given ``kind``."""
    if kind == "wrong dtype":
        np.save(path, np.zeros(4))
    elif kind == "pickled":
        np.save(path, np.array([{"kind": 0}], dtype=object), allow_pickle=True)
    elif kind == "npz":
        path = path.with_suffix(".npz")
        np.savez(path, stream=np.zeros(3, dtype=STREAM_DTYPE))
    elif kind == "empty":
        path.write_bytes(b"")
    return path


@pytest.mark.parametrize(
    ("kind", "phrase"),
    [
        ("missing", "no such stream file"),
        ("wrong dtype", "wrong dtype"),
        ("pickled", "pickled"),
        ("npz", ".npz"),
        ("empty", "empty"),
    ],
)
def test_replay_rejects_bad_input_cleanly(kind, phrase, tmp_path):
    path = write_bad_input(kind, tmp_path / "input.npy")
    out = tmp_path / "fills.npy"
    process = run("replay", path, "--out", out, "--engine", "reference")
    assert_clean_error(process, phrase)
    assert process.stdout == ""
    assert not out.exists()


@pytest.mark.parametrize(
    ("out", "phrase"),
    [
        ("missing-dir/fills.npy", "no directory"),
        ("fills.bin", "must end in .npy"),
        ("a-dir.npy", "cannot write"),
    ],
)
def test_replay_rejects_an_unwritable_output_cleanly(out, phrase, stream_file, tmp_path):
    (tmp_path / "a-dir.npy").mkdir()
    process = run("replay", stream_file, "--out", tmp_path / out, "--engine", "reference")
    assert_clean_error(process, phrase)


def test_replay_requires_out(stream_file):
    assert_clean_error(run("replay", stream_file, "--engine", "reference"), "--out")


# ------------------------------------------------------------------ workload


def test_workload_writes_the_same_file_twice(tmp_path):
    first, second = tmp_path / "first.npy", tmp_path / "second.npy"
    outputs = [run("workload", path, "--messages", 5_000, "--seed", 9) for path in (first, second)]
    for process in outputs:
        assert process.returncode == 0, process.stderr
    assert first.read_bytes() == second.read_bytes()
    assert np.load(first, allow_pickle=False).tobytes() == workload.standard(5_000, 9).tobytes()
    summary = last_json_line(outputs[0].stdout)
    assert summary["messages"] == 5_000 and summary["profile"] == "standard" and summary["seed"] == 9
    assert sum(summary["kinds"].values()) == 5_000
    assert 1 <= summary["qty_min"] <= summary["qty_max"] <= 100


def test_workload_deep_profile(tmp_path):
    path = tmp_path / "deep.npy"
    process = run("workload", path, "--messages", 301_000, "--profile", "deep", "--seed", 1)
    assert process.returncode == 0, process.stderr
    summary = last_json_line(process.stdout)
    assert summary["profile"] == "deep" and summary["messages"] == 301_000
    assert len(load_stream(path)) == 301_000


@pytest.mark.parametrize(
    ("args", "phrase"),
    [
        (["--messages", "0"], "--messages"),
        (["--messages", "ten"], "--messages"),
        (["--seed", "-3"], "--seed"),
        (["--profile", "shallow"], "--profile"),
        (["--profile", "deep", "--messages", "1000"], "preloaded"),
    ],
)
def test_workload_rejects_bad_arguments_cleanly(args, phrase, tmp_path):
    out = tmp_path / "stream.npy"
    assert_clean_error(run("workload", out, *args), phrase)
    assert not out.exists()


def test_no_command_is_a_clean_error():
    assert_clean_error(run(), "COMMAND")


def openblas(given: str | None) -> tuple[str, int]:
    """OPENBLAS_NUM_THREADS and the threads of a process that imported main, then NumPy, with
    ``given`` in its environment (None: unset)."""
    script = ("import os, main, numpy; "
              "print(os.environ['OPENBLAS_NUM_THREADS'], len(os.listdir('/proc/self/task')))")
    env = {key: value for key, value in os.environ.items() if key != "OPENBLAS_NUM_THREADS"}
    if given is not None:
        env["OPENBLAS_NUM_THREADS"] = given
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True,
                          check=True)
    value, threads = done.stdout.split()
    return value, int(threads)


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="counts threads in Linux's /proc")
def test_main_runs_openblas_on_one_thread_unless_the_environment_says_otherwise():
    assert openblas(None) == ("1", 1), "no OpenBLAS worker thread beside the caller's"
    assert openblas("3")[0] == "3"
