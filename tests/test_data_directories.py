"""Data directories: one process at a time owns each (a second server refuses at once, naming
the holder, having read and changed nothing), and only ``make wipe-data`` deletes them."""

import subprocess
import sys
import time

import pytest

from servers.journal import DirectoryInUse, DirectoryLock
from servers.status import STATUS_FILE
from tests.procs import REPO, Role, exchange_env, free_port

ENDPOINTS = ["TES__CLIENT_ENDPOINT", "SHARDS__0__COMMAND_ENDPOINT", "SHARDS__0__MARKET_DATA_ENDPOINT",
             "SHARDS__0__SNAPSHOT_ENDPOINT", "SHARDS__0__STREAM_ENDPOINT"]


def on_other_ports(env: dict[str, str]) -> dict[str, str]:
    """``env`` with every endpoint moved to another free port: only the directories are shared."""
    return env | {f"EXCHANGE__{key}": f"tcp://127.0.0.1:{free_port()}" for key in ENDPOINTS}


def files(directory) -> dict[str, bytes]:
    """The directory's files and their bytes, but the status file the running server rewrites every second."""
    return {path.name: path.read_bytes() for path in sorted(directory.rglob("*"))
            if path.is_file() and not path.name.startswith(STATUS_FILE)}


def settled(directory, timeout: float = 10.0) -> dict[str, bytes]:
    """`files` once two reads 0.2 s apart agree: a server logs "shard A ready" in the loop turn
    that writes its journal record of it, so the write may follow the line."""
    deadline = time.monotonic() + timeout
    previous = files(directory)
    while True:
        time.sleep(0.2)
        current = files(directory)
        if current == previous:
            return current
        assert time.monotonic() < deadline, f"{directory} kept changing"
        previous = current


def second(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "main.py", *args], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=60)


def assert_refused(done: subprocess.CompletedProcess, line: str) -> None:
    """Exit status 1, nothing served, and the refusal as the only line on stderr."""
    assert done.returncode == 1, done
    assert "READY" not in done.stdout, done
    [error] = done.stderr.strip().splitlines()
    assert error.endswith(line), error


@pytest.mark.parametrize("role, name, directory, what", [
    ("OBS", "OBS A", "journal-A", "the journal directory"),
    ("TES", "TES", "tes", "the TES journal directory"),
])
def test_a_second_server_on_a_journal_directory_in_use_refuses_naming_the_holder(tmp_path, role, name, directory,
                                                                                  what):
    env = exchange_env(tmp_path)
    with Role(["-s", "OBS"], env) as obs, Role(["-s", "TES"], env) as tes:
        tes.wait_for("shard A ready", 10)
        holder = {"OBS": obs, "TES": tes}[role].process.pid
        before = settled(tmp_path / directory)

        done = second(["-s", role], on_other_ports(env))

        assert_refused(done, f"{name} cannot start: {what} {tmp_path / directory} is in use by process {holder}: "
                             "one process at a time may use it")
        assert files(tmp_path / directory) == before
        assert tes.stop() == 0 and obs.stop() == 0
    with Role(["-s", "OBS"], env) as obs, Role(["-s", "TES"], env) as tes:
        assert tes.stop() == 0 and obs.stop() == 0, "the lock went with its process"


def test_a_second_recorder_on_a_tick_store_in_use_refuses_naming_the_holder(tmp_path):
    env = exchange_env(tmp_path)
    with Role(["-s", "OBS"], env) as obs, Role(["-s", "recorder"], env) as recorder:
        done = second(["-s", "recorder"], env)

        assert_refused(done, f"recorder cannot start: the tick store {tmp_path / 'ticks'} is in use by process "
                             f"{recorder.process.pid}: one process at a time may use it")
        assert recorder.stop() == 0 and obs.stop() == 0


def test_a_killed_holder_leaves_no_lock_behind(tmp_path):
    env = exchange_env(tmp_path)
    with Role(["-s", "OBS"], env) as obs:
        obs.kill()
    with Role(["-s", "OBS"], on_other_ports(env)) as again:
        assert again.stop() == 0


def test_a_lock_is_exclusive_until_released(tmp_path):
    held = DirectoryLock(tmp_path / "data", "the test directory")
    with pytest.raises(DirectoryInUse, match=f"the test directory {tmp_path / 'data'} is in use by process"):
        DirectoryLock(tmp_path / "data", "the test directory")
    held.release()
    held.release()
    DirectoryLock(tmp_path / "data", "the test directory").release()
    assert list((tmp_path / "data").iterdir()) == [], "no lock file: the listing is the role's"


# ================================================================ make


def make(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["make", "--no-print-directory", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=60)


def test_make_clean_keeps_the_data():
    done = make("-n", "clean")
    assert done.returncode == 0, done.stderr
    assert "rm -rf" in done.stdout and "data" not in done.stdout.split(), done.stdout


def test_make_wipe_data_says_what_it_deletes_and_deletes_it(tmp_path):
    data = tmp_path / "data"
    (data / "obs-A").mkdir(parents=True)
    (data / "obs-A" / "commands.log").write_bytes(b"x")
    (data / "exchange.sqlite").write_bytes(b"x")

    done = make("wipe-data", f"DATA={data}")

    assert done.returncode == 0, done.stderr
    assert f"wipe-data: deleting {data}/, the exchange's state: the order book and TES journals" in done.stdout
    assert not data.exists()


def test_make_wipe_data_refuses_while_a_server_holds_a_directory(tmp_path):
    data = tmp_path / "data"
    held = DirectoryLock(data / "tes", "the TES journal directory")
    try:
        done = make("wipe-data", f"DATA={data}")
    finally:
        held.release()
    assert done.returncode != 0
    assert f"wipe-data: {data}/tes/ is in use by a running server: stop the exchange first; nothing deleted" \
        in done.stdout
    assert (data / "tes").is_dir()
