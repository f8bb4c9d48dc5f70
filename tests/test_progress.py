"""Progress of long work (`engine.progress`): plain lines on stderr off a terminal, a bar on one,
stdout untouched; the engine's replay in slices; the OBS's and the TES's recovery logging how far
they have got.

Off a terminal, lines are written at most every `engine.progress.INTERVAL_S` seconds: the command
runs here with it set to 0, so every report writes a line and the lines do not depend on the clock.
"""

import json
import logging
import os
import pty
import re
import subprocess
import sys

import numpy as np
import pytest
from obs_streams import SYMBOLS, commands
from procs import REPO
from test_ledger import SHARDS, TES_ID, trade

from config.settings import JournalConfig
from engine import replay, workload
from engine.book import ReferenceBook
from engine.replay import timed_replay
from native.book import NativeBook
from servers import ledger as ledger_module
from servers.journal import read_records
from servers.ledger import Ledger, LedgerJournal
from servers.shard import load, recover

PROGRESS_EVERY = """\
import runpy, sys
import engine.progress
engine.progress.INTERVAL_S = float(sys.argv[1])
sys.argv = ["main.py", *sys.argv[2:]]
runpy.run_path("main.py", run_name="__main__")
"""
"""``python -c PROGRESS_EVERY S ARGS`` runs ``main.py ARGS`` writing a progress line at most every
S seconds: 0 at every report, inf never (however slow the machine)."""
MESSAGES = 600_000
"""Ten chunks of the workload generator, three slices of `timed_replay`."""


def main_py(*args: str, every_report: bool = False) -> subprocess.CompletedProcess:
    """``main.py args``, writing a progress line at every report, or none."""
    program = ["-c", PROGRESS_EVERY, "0" if every_report else "inf"]
    return subprocess.run([sys.executable, *program, *args], cwd=REPO, capture_output=True, text=True, timeout=120)


def lines(description: str, done: list[int], total: int) -> list[str]:
    return [f"{description}: {n:,} of {total:,} messages ({100 * n // total}%)" for n in done]


def test_workload_and_replay_off_a_terminal_write_progress_lines_on_stderr_only(tmp_path):
    stream, fills = tmp_path / "stream.npy", tmp_path / "fills.npy"
    made = main_py("workload", str(stream), "--messages", str(MESSAGES), every_report=True)
    assert made.returncode == 0, made.stderr
    chunks = [*range(workload.CHUNK, MESSAGES, workload.CHUNK), MESSAGES]
    assert made.stderr.splitlines() == lines("workload", chunks, MESSAGES)
    # stdout is what a run without progress lines prints
    quiet = main_py("workload", str(tmp_path / "again.npy"), "--messages", str(MESSAGES))
    assert (quiet.returncode, quiet.stderr) == (0, "")
    assert made.stdout.replace(str(stream), "FILE") == quiet.stdout.replace(str(tmp_path / "again.npy"), "FILE")
    assert json.loads(made.stdout.splitlines()[-1])["messages"] == MESSAGES

    replayed = main_py("replay", str(stream), "--out", str(fills), every_report=True)
    assert replayed.returncode == 0, replayed.stderr
    slices = [*range(replay.REPLAY_CHUNK, MESSAGES, replay.REPLAY_CHUNK), MESSAGES]
    assert replayed.stderr.splitlines() == lines("replay", slices, MESSAGES)
    summary = json.loads(replayed.stdout.splitlines()[-1])
    assert (summary["messages"], summary["rejected"], summary["fills"]) == (MESSAGES, 0, len(np.load(fills)))


def test_workload_on_a_terminal_draws_a_bar_on_stderr(tmp_path):
    """stderr on a pseudo-terminal, stdout a pipe: the bar reaches 100%, stdout holds only the JSON."""
    messages = 200_000
    leader, follower = pty.openpty()
    env = dict(os.environ, TERM="xterm", COLUMNS="120")
    with subprocess.Popen([sys.executable, "main.py", "workload", str(tmp_path / "stream.npy"), "--messages",
                           str(messages)], cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=follower) as process:
        os.close(follower)
        drawn = b""
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: the process closed the terminal
                break
            if not chunk:
                break
            drawn += chunk
        stdout = process.stdout.read().decode()
    os.close(leader)
    assert process.returncode == 0, drawn.decode(errors="replace")
    screen = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", drawn.decode())  # colours and cursor moves
    assert "workload" in screen and "━" in screen
    assert re.search(rf"{messages}/{messages} messages\s+100%", screen), screen
    assert "error" not in screen and "Traceback" not in screen
    assert stdout.count("\n") == 1 and json.loads(stdout)["messages"] == messages


@pytest.mark.parametrize("book", [ReferenceBook, NativeBook])
def test_timed_replay_in_slices_gives_the_result_of_one_call(book, monkeypatch):
    stream = workload.standard(5_000, 3)
    whole_book, sliced_book = book(), book()
    whole = whole_book.replay(stream)
    monkeypatch.setattr(replay, "REPLAY_CHUNK", 1_024)
    reported = []
    sliced, seconds = timed_replay(sliced_book, stream, reported.append)
    assert reported == [1_024, 2_048, 3_072, 4_096, 5_000] and seconds > 0
    assert (sliced.accepted, sliced.rejected) == (whole.accepted, whole.rejected)
    assert np.array_equal(sliced.fills, whole.fills) and len(whole.fills)
    assert sliced_book.state_hash() == whole_book.state_hash()


def test_an_empty_stream_replays_without_a_report():
    reported = []
    result, seconds = timed_replay(NativeBook(), workload.standard(1, 1)[:0], reported.append)
    assert (reported, result.accepted, result.rejected, len(result.fills), seconds) == ([], 0, 0, 0, 0.0)


def test_obs_recovery_of_a_long_journal_logs_how_far_it_has_got(tmp_path, caplog):
    count = 25_000
    shard, journal = recover(tmp_path, SYMBOLS, JournalConfig(fsync="never"))
    stream, market_data = commands(count), []
    for start in range(0, count, 1_000):
        entries = []
        for sequence, command in enumerate(stream[start : start + 1_000], start + 1):
            entry, _, _ = shard.execute(sequence, sequence * 1_000, command, market_data)
            entries.append((sequence, entry))
        journal.append(entries)
    journal.close()
    ends = {record.sequence: record.end for record in read_records(tmp_path)}
    size = ends[count]

    with caplog.at_level(logging.INFO, logger="servers.shard"):
        recovered, end = load(tmp_path, SYMBOLS, progress_s=0)
    assert (recovered.sequence, end) == (count, size)
    assert [record.getMessage() for record in caplog.records if record.getMessage().startswith("recovering")] == [
        f"recovering: sequence {n}, journal byte {ends[n]} of {size} ({100 * ends[n] // size}% of the records "
        "to replay)" for n in (10_000, 20_000)
    ]


def test_tes_ledger_recovery_logs_how_far_it_has_got(tmp_path, caplog, monkeypatch):
    trade(tmp_path, 600, 10**9)
    ends = [record.end for record in read_records(tmp_path)]
    monkeypatch.setattr(ledger_module, "RECORDS_PER_CHECK", 250)
    with caplog.at_level(logging.INFO, logger="servers.ledger"):
        journal = LedgerJournal(tmp_path, JournalConfig(fsync="never"), Ledger(TES_ID, SHARDS), progress_s=0)
    journal.close()
    checked = range(250, len(ends) + 1, 250)
    assert len(checked) >= 3
    assert [record.getMessage() for record in caplog.records if record.getMessage().startswith("recovering")] == [
        f"recovering the ledger: sequence {n}, journal byte {ends[n - 1]} of {ends[-1]} "
        f"({100 * ends[n - 1] // ends[-1]}% of the records to replay)" for n in checked
    ]
