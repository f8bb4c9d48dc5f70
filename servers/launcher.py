"""``python main.py up``: every OBS shard, the TES and the configured bots in one terminal.

Start, in this order, each step waiting for the ``READY`` line of every process
it started (servers print it once their sockets are bound, bots once logged on
and able to trade):

0. write the CURVE key pairs the configuration lacks (``python main.py keys``);
1. one ``main.py -s OBS --shard NAME`` per configured shard;
2. ``main.py -s recorder`` (the shards' journals into the database and the tick store);
3. ``main.py -s TES``;
4. one ``main.py -c marketmaker|random ...`` per entry of ``up.bots``, one
   ``main.py --frontend APP`` per entry of ``up.frontends`` (the web apps) and, with
   ``fix.enabled``, ``main.py -s FIX`` (the FIX gateway, a client of the TES like the bots) and,
   with ``api.enabled``, ``main.py -s API`` (the REST and WebSocket gateway, another client),
   waiting for each to be READY or to have exited, at most `READY_TIMEOUT_S`;

then print where everything listens (the apps' URLs among it) and how to connect the trader CLI. Each
child's output is relayed line by line, prefixed with its name.

Stop, on SIGINT or SIGTERM: the bots and the web apps, then the TES, then the recorder, then the OBS
shards, so every client logs out before the TES drains, the TES drains before the
books close their journals, and the recorder has written what they journaled. Each
is sent SIGTERM and waited for, and killed only if it does not exit within
`STOP_WAIT_S`. `up` returns 0 if every child running then exited 0.

The exchange is the servers; the bots and the web apps are its guests:

- A **server** that exits while the exchange is up (or starting) is reported, the
  rest are stopped in the same order, and `up` returns 1.
- A **guest** that exits never stops the exchange (a bot exits 1 when its session is
  taken over by a logon of its trader, 2 when its configuration is wrong; a web app 1 when its
  port is taken). One that
  failed (a non-zero status) is started again after a back-off (`RestartPolicy`: 1 s,
  doubling to 30 s; a run of 60 s starts the doubling afresh), unless that was its 7th
  failure in a row with no run of 60 s between them: then it is left down. One that
  exited 0 had been asked to stop (a SIGTERM sent to it alone) and is left down.
  Each decision is one log line.

Children run in their own process group, so a terminal's Ctrl-C reaches only the
launcher, which stops them in order; on Linux each child is also sent SIGTERM by the
kernel if the launcher dies (``PR_SET_PDEATHSIG``), so none outlives it.
"""

import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import NamedTuple

from config.settings import BotConfig, Config
from frontend.apps import APPS, url
from servers.children import die_with_parent
from servers.security import write_missing_keys

MAIN = Path(__file__).resolve().parent.parent / "main.py"
READY_TIMEOUT_S = 30.0
STOP_WAIT_S = 10.0
POLL_S = 0.1
NAME_WIDTH = 16
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
            preexec_fn=die_with_parent(os.getpid()),
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


class RestartPolicy(NamedTuple):
    """When a bot that failed is started again: after ``first_s``, doubled by each further
    failure in a row up to ``max_s``; a run of ``steady_s`` or more ends the row, so its
    failure waits ``first_s`` again. The ``give_up_after``-th failure of a row leaves it down."""

    first_s: float = 1.0
    max_s: float = 30.0
    steady_s: float = 60.0
    give_up_after: int = 7


RESTARTS = RestartPolicy()
"""``up``'s policy."""


class GuestProcess:
    """One bot of ``up.bots`` or web app of ``up.frontends``: its current process, and when to
    start it again.

    Invariant: ``child`` is None exactly while the guest is down, and then ``restart_at`` is
    when to start it again (None: left down); ``failures`` counts its failures in a row (a
    run of ``policy.steady_s`` or more ends a row).
    """

    def __init__(self, name: str, args: list[str], policy: RestartPolicy) -> None:
        self.name = name
        self.args = args
        self.policy = policy
        self.child: Child | None = None
        self.started_at = 0.0
        self.restart_at: float | None = None
        self.failures = 0

    def start(self) -> None:
        self.child = Child(self.name, self.args)
        self.started_at = time.monotonic()
        self.restart_at = None

    def settled(self) -> bool:
        """READY, or exited."""
        return self.child is None or self.child.ready.is_set() or self.child.exited() is not None

    def tend(self, now: float) -> None:
        """Notice that the guest exited and decide (and say) what happens next; start it again when due."""
        if self.child is None:
            if self.restart_at is not None and now >= self.restart_at:
                note(f"starting {self.name} again")
                self.start()
            return
        code = self.child.exited()
        if code is None:
            return
        self.child.wait(STOP_WAIT_S)
        self.child = None
        ran = now - self.started_at
        if code == 0:
            note(f"{self.name} exited with status 0 after {ran:.1f}s (asked to stop): left down")
            return
        delay = self.after_failure(ran)
        if delay is None:
            note(f"error: {self.name} exited with status {code} after {ran:.1f}s, {self.failures} failures in a "
                 f"row, none after a run of {self.policy.steady_s:g}s: left down (the exchange runs on)")
        else:
            note(f"{self.name} exited with status {code} after {ran:.1f}s: starting it again in {delay:g}s "
                 "(the exchange runs on)")
            self.restart_at = now + delay

    def after_failure(self, ran: float) -> float | None:
        """Seconds to wait before starting the guest again after a failed run of ``ran`` seconds;
        None: leave it down."""
        policy = self.policy
        self.failures = 1 if ran >= policy.steady_s else self.failures + 1
        if self.failures >= policy.give_up_after:
            return None
        return min(policy.first_s * 2 ** (self.failures - 1), policy.max_s)


def bot_process(config: BotConfig, policy: RestartPolicy) -> GuestProcess:
    return GuestProcess(f"{config.kind}-{config.trader_id}",
                        ["-c", BOT_CLIENTS[config.kind], "--trader", config.trader_id, "--key", config.api_key,
                         "--symbol", config.symbol], policy)


def frontend_process(app: str, policy: RestartPolicy) -> GuestProcess:
    return GuestProcess(f"app-{app}", ["--frontend", app], policy)


class Launcher:
    def __init__(self, config: Config, policy: RestartPolicy = RESTARTS) -> None:
        self.config = config
        self.servers: list[list[Child]] = []
        """Started server processes, in start order (stopped in reverse)."""
        self.guests = [bot_process(bot, policy) for bot in config.up.bots] + [
            frontend_process(app, policy) for app in config.up.frontends] + (
            [GuestProcess("fix-gateway", ["-s", "FIX"], policy)] if config.fix.enabled else []) + (
            [GuestProcess("api-gateway", ["-s", "API"], policy)] if config.api.enabled else [])
        """The guests: bots, then web apps, then the FIX gateway, then the REST gateway."""
        self.stopping = False

    def request_stop(self, signum, frame) -> None:
        self.stopping = True

    def start(self, children: list[Child]) -> bool:
        """Record server processes ``children`` and wait for all their READY lines; False if
        stopped or a server died."""
        self.servers.append(children)
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

    def start_guests(self) -> bool:
        """Start every guest and wait until each is READY or has exited (at most `READY_TIMEOUT_S`;
        the guests that exited are tended afterwards); False if stopped or a server died meanwhile."""
        for guest in self.guests:
            guest.start()
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not all(guest.settled() for guest in self.guests):
            if self.stopping or self.failed() is not None:
                return False
            if time.monotonic() > deadline:
                late = [guest.name for guest in self.guests if not guest.settled()]
                note(f"no READY from {', '.join(late)} within {READY_TIMEOUT_S:g}s; going on without waiting")
                return True
            time.sleep(POLL_S / 5)
        return True

    def tend_guests(self) -> None:
        now = time.monotonic()
        for guest in self.guests:
            guest.tend(now)

    def failed(self) -> Child | None:
        """The first server that has exited (while it should be running), reported once."""
        for group in self.servers:
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
            and self.start_guests()
        )
        clean = False
        if up:
            say(self.summary())
            while not self.stopping and self.failed() is None:
                self.tend_guests()
                time.sleep(POLL_S)
            clean = self.stopping
        elif self.stopping:
            clean = True
        note("stopping: bots, web apps and the gateways, then TES, then recorder, then OBS")
        codes = self.stop_all()
        failed = {name: code for name, code in codes.items() if code != 0}
        if failed:
            note(f"not stopped cleanly: {', '.join(f'{n} ({c})' for n, c in failed.items())}")
        note("exchange down")
        return 0 if clean and not failed else 1

    def stop_all(self) -> dict[str, int | None]:
        """SIGTERM the running bots, then each server group, newest first, waiting for each
        group before the next; every exit status."""
        groups = [[guest.child for guest in self.guests if guest.child is not None], *reversed(self.servers)]
        codes = {}
        for group in groups:
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
        for app in config.up.frontends:
            lines.append(f"  {APPS[app].title:<23} {url(config, app)}")
        if config.fix.enabled:
            comp_ids = ", ".join(f"{s.target_comp_id} ({s.trader_id})" for s in config.fix.sessions) or "none"
            lines.append(f"  FIX 4.4 gateway         {config.fix.address}:{config.fix.port}, TargetCompID "
                         f"{config.fix.sessions[0].sender_comp_id if config.fix.sessions else '-'}; "
                         f"SenderCompIDs {comp_ids}")
        if config.api.enabled:
            scheme = "https" if config.api.tls_cert else "http"
            lines.append(f"  REST/WebSocket gateway  {scheme}://{config.api.address}:{config.api.port}/docs; keys "
                         f"{', '.join(k.key_id for k in config.api.keys) or 'none'} (secrets in "
                         f"{config.api.secrets_dir})")
        lines += [
            f"  trade                   {main_command()} -c trader --trader {trader} --key {trader}-demo-key",
            "  stop                    Ctrl-C",
            "",
        ]
        return "\n".join(lines)


def up(config: Config, policy: RestartPolicy = RESTARTS) -> int:
    """Write any missing CURVE key pairs, then run the exchange until SIGINT/SIGTERM (bots
    that fail are started again by ``policy``); 0 if it came up and every process running
    then stopped cleanly."""
    if config.security.keys_dir:
        try:
            written = write_missing_keys(config)
        except OSError as exc:
            note(f"error: cannot write keys in {config.security.keys_dir}: {exc.strerror or exc}")
            return 2
        if written:
            note(f"wrote CURVE key pairs {', '.join(written)} in {config.security.keys_dir}")
    launcher = Launcher(config, policy)
    previous = {sig: signal.signal(sig, launcher.request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        return launcher.run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def main_command() -> str:
    """How to run ``main.py`` from the current directory with this process's Python (the one
    with the dependencies: a virtual environment's, not whatever ``python`` is on the PATH)."""
    return f"{shlex.quote(_shown(Path(sys.executable)))} {shlex.quote(_shown(MAIN))}"


def _shown(path: Path) -> str:
    """``path`` relative to the current directory if it lies below it, else as it is."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)
