"""``python main.py up``: the whole exchange comes up, trades, and stops in order leaving nothing behind."""

import os
import shutil
import signal
import subprocess
import time

import pytest

from clients.client import MarketDataClient
from tests.procs import Role, endpoint, exchange_env

BOT_NAMES = ["marketmaker-mm1", "marketmaker-mm2", "random-flow1", "random-flow2"]


def children_of(pid: int) -> list[int]:
    done = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True, check=False)
    return [int(word) for word in done.stdout.split()]


def alive(pid: int) -> bool:
    """Running (a zombie waiting for its parent counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def wait_gone(pids: list[int], timeout: float = 5.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    return [pid for pid in pids if alive(pid)]


def started(up: Role) -> list[int]:
    up.wait_for("exchange up", 60)
    pids = children_of(up.process.pid)
    assert len(pids) == 3 + len(BOT_NAMES), up.output()  # OBS, recorder, TES and the bots
    return pids


def line_index(lines: list[str], text: str) -> int:
    return next(i for i, line in enumerate(lines) if text in line)


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
def test_up_starts_everything_trades_and_stops_in_order_with_exit_0(tmp_path, stop_signal):
    env = exchange_env(tmp_path)
    shutil.rmtree(tmp_path / "keys")  # up writes the pairs it lacks
    with Role(["up"], env, ready_timeout=60) as up:
        pids = started(up)
        lines = list(up.lines)
        assert line_index(lines, "wrote CURVE key pairs tes, obs-A, operator, recorder in ") < line_index(
            lines, "READY OBS")
        assert sorted(path.name for path in (tmp_path / "keys").iterdir()) == [
            "obs-A.key", "obs-A.key_secret", "operator.key", "operator.key_secret", "recorder.key",
            "recorder.key_secret", "tes.key", "tes.key_secret"]
        assert line_index(lines, "READY OBS") < line_index(lines, "READY TES") < line_index(lines, "READY marketmaker")
        summary = up.output()
        assert endpoint(env, "TES__CLIENT_ENDPOINT") in summary
        assert "python main.py -c trader --trader alice --key alice-demo-key" in summary

        feed = MarketDataClient(
            endpoint(env, "SHARDS__0__MARKET_DATA_ENDPOINT"), endpoint(env, "SHARDS__0__SNAPSHOT_ENDPOINT"), "ACME"
        )
        with feed:
            feed.connect(10)
            deadline = time.monotonic() + 30
            while feed.last_trade is None and time.monotonic() < deadline:
                feed.poll(0.2)
            assert feed.last_trade is not None, "the bots made no trade in ACME"
            assert feed.best_bid() is not None and feed.best_ask() is not None, "the market maker quotes ACME"

        up.process.send_signal(stop_signal)
        assert up.process.wait(60) == 0, up.output()
        up._reader.join(5)
        assert wait_gone(pids) == []

    lines = up.lines
    last_bot_done = max(i for i, line in enumerate(lines) if " done: " in line)
    assert sum(" done: " in line for line in lines) == len(BOT_NAMES), up.output()
    assert last_bot_done < line_index(lines, "tes INFO stopped") < line_index(lines, "recorder stopped") < line_index(
        lines, "OBS A stopped"), up.output()
    assert lines[-1].endswith("exchange down")
    assert "Traceback" not in up.output() and "error:" not in up.output(), up.output()


def test_up_stops_everything_with_exit_1_when_a_server_dies(tmp_path):
    env = exchange_env(tmp_path)
    with Role(["up"], env, ready_timeout=60) as up:
        pids = started(up)
        tes = next(pid for pid in pids if "-s\x00TES" in open(f"/proc/{pid}/cmdline").read())
        os.kill(tes, signal.SIGKILL)

        assert up.process.wait(60) == 1, up.output()
        up._reader.join(5)
        assert wait_gone(pids) == []
    assert any("error: TES exited unexpectedly with status -9" in line for line in up.lines), up.output()
    assert up.lines[-1].endswith("exchange down")


def test_up_children_die_with_a_killed_launcher(tmp_path):
    env = exchange_env(tmp_path)
    with Role(["up"], env, ready_timeout=60) as up:
        pids = started(up)
        up.process.kill()
        up.process.wait(10)
        assert wait_gone(pids, timeout=30) == []
