"""Running the real exchange processes, isolated on free loopback ports (tests and benchmarks).

`exchange_env(tmp_path)` gives the environment of one isolated exchange: every
endpoint on a free 127.0.0.1 port and every journal, key, database and tick store
under ``tmp_path``.
`Role` starts ``python main.py ARGS`` with it and waits for the process to print
its ``READY`` line (every server prints ``READY <role> ...`` once its sockets are
bound); `Role.stop()` sends SIGTERM and returns the exit code; `Role.kill()` is
``kill -9``. A role whose process never printed ``READY`` is killed before the error is raised,
and any process a role started that is still running when the starter exits is killed then
(`_kill_left`): a test or benchmark that fails between starting a server and stopping it leaves
no server behind.
"""

import atexit
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from config.ports import free_port
from config.settings import ConfigError, load_config
from servers.security import write_missing_keys

REPO = Path(__file__).resolve().parent.parent


def exchange_env(tmp_path: Path, **overrides: str) -> dict[str, str]:
    """Environment variables for an exchange isolated in ``tmp_path`` (plus ``overrides``),
    with the CURVE key pairs its configuration needs written in ``tmp_path/keys``."""
    env = dict(os.environ)
    env.update(
        {
            "EXCHANGE__TES__CLIENT_ENDPOINT": f"tcp://127.0.0.1:{free_port()}",
            "EXCHANGE__SHARDS__0__COMMAND_ENDPOINT": f"tcp://127.0.0.1:{free_port()}",
            "EXCHANGE__SHARDS__0__MARKET_DATA_ENDPOINT": f"tcp://127.0.0.1:{free_port()}",
            "EXCHANGE__SHARDS__0__SNAPSHOT_ENDPOINT": f"tcp://127.0.0.1:{free_port()}",
            "EXCHANGE__SHARDS__0__STREAM_ENDPOINT": f"tcp://127.0.0.1:{free_port()}",
            "EXCHANGE__SHARDS__0__JOURNAL_DIR": str(tmp_path / "journal-A"),
            "EXCHANGE__TES__JOURNAL_DIR": str(tmp_path / "tes"),
            "EXCHANGE__SECURITY__KEYS_DIR": str(tmp_path / "keys"),
            "EXCHANGE__TICKS__ROOT": str(tmp_path / "ticks"),
            "EXCHANGE__DATABASE__URL": f"sqlite:///{tmp_path / 'exchange.sqlite'}",
            "EXCHANGE__RECORDER__STATUS_FILE": str(tmp_path / "recorder-status.json"),
            "EXCHANGE__FRONTEND__TRADER_PORT": str(free_port()),
            "EXCHANGE__FRONTEND__ANALYTICS_PORT": str(free_port()),
            "EXCHANGE__FIX__PORT": str(free_port()),
            "EXCHANGE__FIX__DATA_DIR": str(tmp_path / "fix"),
            # up starts the FIX gateway only in the tests that ask for it (EXCHANGE__FIX__ENABLED=true)
            "EXCHANGE__FIX__ENABLED": "false",
            "EXCHANGE__API__PORT": str(free_port()),
            "EXCHANGE__API__SECRETS_DIR": str(tmp_path / "api"),
            # likewise the REST gateway (EXCHANGE__API__ENABLED=true)
            "EXCHANGE__API__ENABLED": "false",
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(overrides)
    write_keys(env)
    return env


def write_keys(env: dict[str, str]) -> None:
    """Write the key pairs the configuration of ``env`` needs and lacks (nothing if it is invalid
    or has CURVE off): call again after changing the configuration's shards."""
    try:
        config = load_config(environ=env)
    except ConfigError:
        return
    if config.security.keys_dir:
        write_missing_keys(config)


def json_result(command: list[str], what: str, env: dict[str, str] | None = None,
                timeout: float | None = None) -> dict:
    """Run ``command`` in the repository to its end; its last stdout line, a JSON object.
    A non-zero exit raises RuntimeError naming ``what``, with the end of its stderr."""
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"{what} failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def endpoint(env: dict[str, str], key: str) -> str:
    """An endpoint from the environment, e.g. ``endpoint(env, "TES__CLIENT_ENDPOINT")``."""
    return env[f"EXCHANGE__{key}"]


_running: set[subprocess.Popen] = set()
"""The processes roles started and have not yet seen end (`Role.stop`, `Role.kill`)."""


@atexit.register
def _kill_left() -> None:
    """``kill -9`` every process a role started that is still running as this process exits."""
    for process in list(_running):
        if process.poll() is None:
            process.kill()
            process.wait(10)
    _running.clear()


class Role:
    """One ``python main.py ...`` process; its output is collected in ``lines``.

    Invariant: the process is in `_running` from its start until a `stop` or `kill` saw it end,
    so it never outlives the process that started it."""

    def __init__(self, args: list[str], env: dict[str, str], ready_timeout: float = 20.0) -> None:
        self.args = args
        self.lines: list[str] = []
        self.process = subprocess.Popen(
            [sys.executable, "main.py", *args],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        _running.add(self.process)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        try:
            self.wait_for("READY", ready_timeout)
        except BaseException:
            self.kill()
            raise

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, text: str, timeout: float) -> str:
        """The first output line containing ``text``; fail if the process exits or time runs out."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if text in line:
                    return line
            if self.process.poll() is not None:
                time.sleep(0.1)
                raise AssertionError(f"{self.args} exited {self.process.returncode}: {self.output()}")
            time.sleep(0.02)
        raise AssertionError(f"{self.args}: no {text!r} within {timeout}s: {self.output()}")

    def output(self) -> str:
        return "\n".join(self.lines)

    def stop(self, timeout: float = 20.0) -> int:
        """SIGTERM, then wait; the exit code (a graceful server exits 0)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout)
            _running.discard(self.process)
            return code
        finally:
            self._reader.join(5)

    def kill(self) -> None:
        """kill -9: no chance to flush or clean up."""
        self.process.kill()
        self.process.wait(10)
        _running.discard(self.process)
        self._reader.join(5)

    def __enter__(self) -> "Role":
        return self

    def __exit__(self, *exc) -> None:
        if self.process.poll() is None:
            self.kill()
