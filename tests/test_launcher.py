"""``python main.py up``: the whole exchange comes up, trades, and stops in order leaving nothing
behind; a bot that fails is started again or left down, never taking the exchange with it."""

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request

import pytest

from clients.client import ExchangeClient
from clients.market_data import MarketDataClient
from config.settings import BotConfig
from servers import protocol as p
from servers.launcher import RestartPolicy, bot_process
from tests.procs import REPO, Role, ended, endpoint, exchange_env

BOT_NAMES = ["marketmaker-mm1", "marketmaker-mm2", "random-flow1", "random-flow2"]
NO_APPS = {"EXCHANGE__UP__FRONTENDS": "[]"}
"""For the tests about servers and bots: ``up`` without its web apps."""


def children_of(pid: int) -> list[int]:
    done = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True, check=False)
    return [int(word) for word in done.stdout.split()]


def wait_gone(pids: list[int], timeout: float = 5.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while not all(ended(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    return [pid for pid in pids if not ended(pid)]


def started(up: Role, apps: int = 0) -> list[int]:
    up.wait_for("exchange up", 60)
    pids = children_of(up.process.pid)
    assert len(pids) == 3 + len(BOT_NAMES) + apps, up.output()  # OBS, recorder, TES, the bots and the web apps
    return pids


def line_index(lines: list[str], text: str) -> int:
    return next(i for i, line in enumerate(lines) if text in line)


def servers_of(pids: list[int]) -> list[int]:
    """The server processes (``main.py -s ROLE``) among ``pids``."""
    return [pid for pid in pids if "\x00-s\x00" in open(f"/proc/{pid}/cmdline").read()]


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
def test_up_starts_everything_trades_and_stops_in_order_with_exit_0(tmp_path, stop_signal):
    env = exchange_env(tmp_path)
    shutil.rmtree(tmp_path / "keys")  # up writes the pairs it lacks
    with Role(["up"], env, ready_timeout=60) as up:
        pids = started(up, apps=2)
        lines = list(up.lines)
        assert line_index(lines, "wrote CURVE key pairs tes, obs-A, operator, recorder in ") < line_index(
            lines, "READY OBS")
        assert sorted(path.name for path in (tmp_path / "keys").iterdir()) == [
            "obs-A.key", "obs-A.key_secret", "operator.key", "operator.key_secret", "recorder.key",
            "recorder.key_secret", "tes.key", "tes.key_secret"]
        assert line_index(lines, "READY OBS") < line_index(lines, "READY TES") < line_index(lines, "READY marketmaker")
        summary = up.output()
        assert endpoint(env, "TES__CLIENT_ENDPOINT") in summary
        for app, port in (("trader portal", "TRADER_PORT"), ("analytics dashboard", "ANALYTICS_PORT")):
            url = f"http://127.0.0.1:{env[f'EXCHANGE__FRONTEND__{port}']}"
            assert f"READY {app} {url}" in summary and any(
                line.split() == [*app.split(), url] for line in summary.splitlines()), summary
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=10) as answer:
                assert answer.read() == b"ok"
        python = os.path.relpath(sys.executable, REPO) if sys.executable.startswith(str(REPO)) else sys.executable
        (printed,) = [line.split(None, 1)[1] for line in summary.splitlines() if line.split()[:1] == ["trade"]]
        assert printed == f"{python} main.py -c trader --trader alice --key alice-demo-key", "the environment's Python"
        shown = subprocess.run([*printed.split()[:2], "-c", "trader", "--help"], cwd=REPO, capture_output=True,
                               text=True, timeout=60)
        assert shown.returncode == 0 and "--trader" in shown.stdout, "the command works as printed"

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
    assert last_bot_done < line_index(lines, "INFO tes: stopped") < line_index(lines, "recorder stopped") < line_index(
        lines, "OBS A stopped"), up.output()
    assert lines[-1].endswith("exchange down")
    assert "Traceback" not in up.output() and "error:" not in up.output(), up.output()


def test_up_stops_everything_with_exit_1_when_a_server_dies(tmp_path):
    env = exchange_env(tmp_path, **NO_APPS)
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
    env = exchange_env(tmp_path, **NO_APPS)
    with Role(["up"], env, ready_timeout=60) as up:
        pids = started(up)
        up.process.kill()
        up.process.wait(10)
        assert wait_gone(pids, timeout=30) == []


# ================================================================ bots that fail


def test_restart_waits_double_up_to_the_cap_and_a_long_run_starts_them_afresh():
    bot = bot_process(BotConfig("random", "flow1", "flow1-demo-key", "ACME"), RestartPolicy())
    assert [bot.after_failure(2.0) for _ in range(6)] == [1, 2, 4, 8, 16, 30]
    assert bot.after_failure(2.0) is None, "the 7th failure in a row leaves it down"

    bot = bot_process(BotConfig("random", "flow1", "flow1-demo-key", "ACME"), RestartPolicy())
    assert [bot.after_failure(2.0) for _ in range(5)] == [1, 2, 4, 8, 16]
    assert bot.after_failure(60.0) == 1, "a run of steady_s ends the row"
    assert [bot.after_failure(0.5) for _ in range(6)] == [2, 4, 8, 16, 30, None]


def test_up_starts_a_bot_again_whose_session_was_taken_over_and_the_exchange_stays_up(tmp_path):
    """The README's old bot example: logging on as a bot's trader."""
    env = exchange_env(tmp_path, **NO_APPS)
    with Role(["up"], env, ready_timeout=60) as up:
        servers = servers_of(started(up))
        with ExchangeClient(endpoint(env, "TES__CLIENT_ENDPOINT"), "mm1", "mm1-demo-key") as intruder:
            intruder.logon(10.0)
            up.wait_for("marketmaker mm1: logged out by the exchange: replaced by a new logon", 30)
            up.wait_for("marketmaker-mm1 exited with status 1 after", 30)
            up.wait_for("starting it again in 1s (the exchange runs on)", 5)
            up.wait_for("starting marketmaker-mm1 again", 10)
            deadline = time.monotonic() + 60
            taken_back = []
            while not taken_back and time.monotonic() < deadline:
                taken_back = [m for m in intruder.receive(0.5) if isinstance(m, p.LoggedOut)]
            assert [m.reason for m in taken_back] == [p.EndReason.REPLACED], "the bot logged on again"
        deadline = time.monotonic() + 30
        while sum("READY marketmaker mm1 ACME" in line for line in up.lines) < 2:
            assert time.monotonic() < deadline, up.output()
            time.sleep(0.05)
        assert not any(ended(pid) for pid in servers), "no server was stopped"
        assert not any("stopping" in line for line in up.lines), up.output()

        up.process.send_signal(signal.SIGTERM)
        assert up.process.wait(60) == 0, up.output()
        up._reader.join(5)
    assert sum(" done: " in line for line in up.lines) == len(BOT_NAMES) + 1, up.output()
    assert "Traceback" not in up.output(), up.output()


LAUNCH_WITH_A_BAD_BOT = """
import sys

import msgspec

from config.settings import BotConfig, UpConfig, load_config
from servers.launcher import RestartPolicy, up

config = load_config()
bot = BotConfig("random", "demo2", "not-the-key", "ACME")
policy = RestartPolicy(first_s=0.1, max_s=0.2, steady_s=60.0, give_up_after=3)
sys.exit(up(msgspec.structs.replace(config, up=UpConfig([bot])), policy))
"""


def test_a_bot_that_keeps_failing_is_left_down_and_the_exchange_stays_up(tmp_path):
    env = exchange_env(tmp_path, **NO_APPS)
    launcher = subprocess.Popen([sys.executable, "-c", LAUNCH_WITH_A_BAD_BOT], cwd=REPO, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(line.rstrip("\n") for line in launcher.stdout),
                              daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 90
        while not any("left down" in line for line in lines) and launcher.poll() is None:
            assert time.monotonic() < deadline, "\n".join(lines)
            time.sleep(0.05)
        output = "\n".join(lines)
        assert launcher.poll() is None, output
        assert "exchange up" in output, "a bot does not hold up the start"
        said = [line.split("| ", 1)[1] for line in lines if "random-demo2 exited" in line]
        assert len(said) == 3, output
        assert [line.split("s: ", 1)[1] for line in said[:2]] == [
            "starting it again in 0.1s (the exchange runs on)", "starting it again in 0.2s (the exchange runs on)"]
        assert said[2].startswith("error: random-demo2 exited with status 2 after ")
        assert said[2].endswith("3 failures in a row, none after a run of 60s: left down (the exchange runs on)")
        assert len(servers_of(children_of(launcher.pid))) == 3, "OBS, recorder and TES still run"
        assert "stopping" not in output

        launcher.send_signal(signal.SIGTERM)
        assert launcher.wait(60) == 0, "\n".join(lines)
    finally:
        if launcher.poll() is None:
            launcher.kill()
            launcher.wait()
        reader.join(5)
    assert lines[-1].endswith("exchange down")
