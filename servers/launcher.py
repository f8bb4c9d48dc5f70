"""``python main.py up``: every OBS shard, the TES and the configured bots in one terminal.

Start, in this order, each step waiting for the ``READY`` line of every process
it started (servers print it once their sockets are bound, bots once logged on
and able to trade):

0. write the CURVE key pairs the configuration lacks (``python main.py keys``);
1. one ``main.py -s OBS --shard NAME`` per configured shard;
2. ``main.py -s recorder`` (the shards' journals into the database and the tick store);
3. ``main.py -s TES``;
4. one ``main.py -c marketmaker|random ...`` per entry of ``up.bots``;

then print where everything listens and how to connect the trader CLI. Each
child's output is relayed line by line, prefixed with its name.

Stop, on SIGINT or SIGTERM: the bots, then the TES, then the recorder, then the OBS
shards, so every client logs out before the TES drains, the TES drains before the
books close their journals, and the recorder has written what they journaled. Each
is sent SIGTERM and waited for, and killed only if it does not exit within
`STOP_WAIT_S`. `up` returns 0 if every child exited 0.

A child that exits while the exchange is up (or starting) is reported, the rest
are stopped in the same order, and `up` returns 1. Children run in their own
process group, so a terminal's Ctrl-C reaches only the launcher, which stops them
in order; on Linux each child is also sent SIGTERM by the kernel if the launcher
dies (``PR_SET_PDEATHSIG``), so none outlives it.
"""

import ctypes
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from config.settings import Config
from servers.security import write_missing_keys

MAIN = Path(__file__).resolve().parent.parent / "main.py"
READY_TIMEOUT_S = 30.0
STOP_WAIT_S = 10.0
POLL_S = 0.1
NAME_WIDTH = 16
PR_SET_PDEATHSIG = 1
BOT_CLIENTS = {"marketmaker": "marketmaker", "random": "random"}

_print_lock = threading.Lock()


def say(text: str) -> None:
    with _print_lock:
        print(text, flush=True)


def note(text: str) -> None:
    say(f"{'launcher':<{NAME_WIDTH}}| {text}")


class Child:
    """One ``python main.py ...`` process whose output is relayed with a ``name`` prefix."""

    def __init__(self, name: str, args: list[str]) -> None:
        self.name = name
        self.ready = threading.Event()
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.process = subprocess.Popen(
            [sys.executable, str(MAIN), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            env=env,
            process_group=0,
            preexec_fn=_die_with_parent(os.getpid()),
        )
        self._relay = threading.Thread(target=self._read, name=f"relay-{name}", daemon=True)
        self._relay.start()

    def _read(self) -> None:
        for line in self.process.stdout:
            line = line.rstrip("\n")
            if line.startswith("READY"):
                self.ready.set()
            say(f"{self.name:<{NAME_WIDTH}}| {line}")

    def exited(self) -> int | None:
        return self.process.poll()

    def terminate(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)

    def wait(self, timeout: float) -> int:
        """The exit status, killing the process if it is still running after ``timeout``."""
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            note(f"{self.name} did not stop within {timeout:g}s: killed")
            self.process.kill()
            self.process.wait()
            code = None
        self._relay.join(2.0)
        return code


def _die_with_parent(parent: int):
    """A ``preexec_fn`` asking the kernel to SIGTERM the child when the launcher dies (Linux)."""
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(None, use_errno=True)

    def preexec() -> None:
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:
            os.kill(os.getpid(), signal.SIGTERM)

    return preexec


class Launcher:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.groups: list[list[Child]] = []
        """Started children, in start order (stopped in reverse)."""
        self.stopping = False

    def request_stop(self, signum, frame) -> None:
        self.stopping = True

    def start(self, children: list[Child]) -> bool:
        """Record ``children`` and wait for all their READY lines; False if stopped or one died."""
        self.groups.append(children)
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not all(child.ready.is_set() for child in children):
            if self.stopping or self.failed() is not None:
                return False
            if time.monotonic() > deadline:
                late = [c.name for c in children if not c.ready.is_set()]
                note(f"error: no READY from {', '.join(late)} within {READY_TIMEOUT_S:g}s")
                return False
            time.sleep(POLL_S / 5)
        return True

    def failed(self) -> Child | None:
        """The first child that has exited (while it should be running), reported once."""
        for group in self.groups:
            for child in group:
                code = child.exited()
                if code is not None:
                    note(f"error: {child.name} exited unexpectedly with status {code}")
                    return child
        return None

    def run(self) -> int:
        config = self.config
        up = (
            self.start([Child(f"OBS-{s.name}", ["-s", "OBS", "--shard", s.name]) for s in config.shards])
            and self.start([Child("recorder", ["-s", "recorder"])])
            and self.start([Child("TES", ["-s", "TES"])])
            and self.start([
                Child(f"{bot.kind}-{bot.trader_id}", ["-c", BOT_CLIENTS[bot.kind], "--trader", bot.trader_id,
                                                     "--key", bot.api_key, "--symbol", bot.symbol])
                for bot in config.up.bots
            ])
        )
        clean = False
        if up:
            say(self.summary())
            while not self.stopping and self.failed() is None:
                time.sleep(POLL_S)
            clean = self.stopping
        elif self.stopping:
            clean = True
        note("stopping: bots, then TES, then recorder, then OBS")
        codes = self.stop_all()
        failed = {name: code for name, code in codes.items() if code != 0}
        if failed:
            note(f"not stopped cleanly: {', '.join(f'{n} ({c})' for n, c in failed.items())}")
        note("exchange down")
        return 0 if clean and not failed else 1

    def stop_all(self) -> dict[str, int | None]:
        """SIGTERM each group, newest first, and wait for it before the next; every exit status."""
        codes = {}
        for group in reversed(self.groups):
            for child in group:
                child.terminate()
            for child in group:
                codes[child.name] = child.wait(STOP_WAIT_S)
        return codes

    def summary(self) -> str:
        config = self.config
        bot_traders = {bot.trader_id for bot in config.up.bots}
        trader = next((t.trader_id for t in config.traders if t.trader_id not in bot_traders), "TRADER")
        lines = [
            "",
            "exchange up",
            f"  TES (orders, queries)   {config.tes.client_endpoint}",
        ]
        for shard in config.shards:
            lines.append(f"  OBS {shard.name:<19} {', '.join(shard.symbols)}: market data "
                         f"{shard.market_data_endpoint}, snapshots {shard.snapshot_endpoint}")
        database = re.sub(r"//([^:/@]+):[^@]*@", r"//\1:***@", config.database.url) or "SQLite data/exchange.sqlite"
        ticks = f"kdb+ {config.ticks.kdb_host}:{config.ticks.kdb_port}" if config.ticks.kdb_host else config.ticks.root
        lines.append(f"  recorder                database {database}; ticks {ticks}")
        for bot in config.up.bots:
            lines.append(f"  bot                     {bot.kind} {bot.trader_id} on {bot.symbol}")
        lines += [
            f"  trade                   python main.py -c trader --trader {trader} --key {trader}-demo-key",
            "  stop                    Ctrl-C",
            "",
        ]
        return "\n".join(lines)


def up(config: Config) -> int:
    """Write any missing CURVE key pairs, then run the exchange until SIGINT/SIGTERM; 0 if it
    came up and every process stopped cleanly."""
    if config.security.keys_dir:
        try:
            written = write_missing_keys(config)
        except OSError as exc:
            note(f"error: cannot write keys in {config.security.keys_dir}: {exc.strerror or exc}")
            return 2
        if written:
            note(f"wrote CURVE key pairs {', '.join(written)} in {config.security.keys_dir}")
    launcher = Launcher(config)
    previous = {sig: signal.signal(sig, launcher.request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        return launcher.run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
