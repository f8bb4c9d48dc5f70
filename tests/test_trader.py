"""The trader shell: completion, rejects in decimals, errors that name the bad argument, help,
sessions the exchange ends, the endpoint option, and a terminal session with line editing,
completion and history across runs.

The shell runs as a subprocess against a real OBS and TES (the shipped configuration
plus `test_tes`'s test traders), with piped stdin; the terminal test gives it a
pseudo-terminal instead and types at it.
"""

import fcntl
import os
import pty
import re
import select
import signal
import struct
import sys
import termios
import time

import pytest
from procs import REPO, Role, endpoint, free_port
from programs import Program
from test_tes import config_env

from clients.client import ExchangeClient
from clients.trader import COMMANDS, complete

SYMBOLS = ("ACME", "BOLT")
USAGE = ("(usage: buy SYMBOL QTY [PRICE] [--gtc|--ioc|--fok|--day|--gtd TIME] [--stop PRICE] [--iceberg QTY] "
         "[--post-only] [--stp MODE])")


# ================================================================ completion


@pytest.mark.parametrize("line, words", [
    ("", list(COMMANDS)),
    ("ca", ["cancel", "cancelall"]),
    ("re", ["replace"]),
    ("buy ", ["ACME", "BOLT"]),
    ("sell b", ["BOLT"]),
    ("book AC", ["ACME"]),
    ("cancelall ", ["ACME", "BOLT"]),
    ("buy ACME 10 99.50 --", ["--gtc", "--ioc", "--fok", "--day", "--gtd", "--stop", "--iceberg", "--post-only",
                              "--stp"]),
    ("buy ACME 10 --f", ["--fok"]),
    ("buy ACME 10 99.50 --day --", ["--stop", "--iceberg", "--post-only", "--stp"]),
    ("buy ACME 10 99.50 --gtd 16:00 --stop 99 --post-only --", ["--iceberg", "--stp"]),
    ("sell ACME 10 99.50 --stp cancel-", ["cancel-taker", "cancel-maker", "cancel-both"]),
    ("buy ACME 1", []),
    ("cancel ", ["281474976710657", "281474976710699"]),
    ("replace 2814749767106", ["281474976710657", "281474976710699"]),
    ("help rep", ["replace"]),
    ("exit ", []),
    ("orders ", []),
])
def test_completion_offers_commands_then_symbols_flags_and_open_order_ids(line, words):
    assert complete(line, SYMBOLS, {281474976710699, 281474976710657}) == words


# ================================================================ against a real exchange


@pytest.fixture(scope="module")
def exchange(tmp_path_factory):
    """One OBS and one TES for the module (the test traders of test_tes too); yields the environment."""
    env = config_env(tmp_path_factory.mktemp("exchange"))
    with Role(["-s", "OBS"], env) as obs, Role(["-s", "TES"], env) as tes:
        tes.wait_for("shard A ready", 10)
        yield env
        assert tes.stop() == 0, tes.output()
        assert obs.stop() == 0, obs.output()


def script(env, *lines: str, args: tuple[str, ...] = ("--trader", "alice")) -> list[str]:
    """Run the shell on ``lines`` piped in; its output lines (exit status 0 and nothing on stderr checked)."""
    shell = Program(env, "trader", *args)
    try:
        for line in lines:
            shell.send(line)
        assert shell.finish() == 0, (shell.lines, shell.errors)
        assert shell.errors == []
        return shell.lines
    finally:
        shell.close()


def test_rejects_name_the_rule_broken_and_its_values_in_decimals(exchange):
    out = script(exchange, "buy BOLT 10 250.01", "buy BOLT 15 250.00", "buy BOLT 0 250.00", "buy ACME 100001 99.00",
                 "buy ACME 10 120", "sell ACME 1 89.99", "buy ACME 10 99.00")
    order_id = next(line.split()[2] for line in out if line.startswith("accepted"))
    assert out[1:7] == [
        "rejected  client 1: price 250.01 is not a multiple of the tick 0.05 (3002)",
        "rejected  client 2: quantity 15 is not a multiple of the lot 10 (3003)",
        f"error: buy: argument QTY: must be positive, got 0 {USAGE}",
        "rejected  client 3: quantity 100001 is above the maximum 100000 (3005)",
        "rejected  client 4: price 120.00 is outside the band 90.00..110.00 (3006)",
        "rejected  client 5: price 89.99 is outside the band 90.00..110.00 (3006)",
    ]
    out = script(exchange, f"replace {order_id} 111.00 10", f"replace {order_id} 99.00 100001", "cancelall")
    assert out[1:3] == [
        f"replace rejected  order {order_id}: price 111.00 is outside the band 90.00..110.00 (3006)",
        f"replace rejected  order {order_id}: quantity 100001 is above the maximum 100000 (3005)",
    ]


def test_risk_rejects_name_the_traders_limit_in_decimals(exchange):
    out = script(exchange, "buy ACME 101 90.00", "buy ACME 100 100.01", "buy ACME 1 90.00", "buy ACME 1 90.01",
                 "buy ACME 1 90.02", "cancelall", args=("--trader", "tight", "--key", "tight-key"))
    assert [line for line in out if line.startswith("rejected")] == [
        "rejected  client 1: quantity 101 is above the trader's order limit 100 (4001)",
        "rejected  client 2: notional 10001.00 at price 100.01 is above the trader's limit 10000.00 (4002)",
        "rejected  client 5: the trader has the maximum of 2 open orders (4003)",
    ]


def test_a_price_finer_than_the_tick_unit_is_refused_before_sending(exchange):
    out = script(exchange, "buy ACME 10 99.005", "buy ACME 10 ninety", "orders")
    assert out[1:] == ["error: buy: argument PRICE: price 99.005 is not a multiple of the tick 0.01",
                       "error: buy: argument PRICE: price 'ninety' is not a number",
                       "no open orders", "logged out"]


def test_bad_flags_and_arguments_are_named_in_the_error(exchange):
    out = script(exchange, "buy ACME 10 99.00 --gtx", "buy ACME ten", "sell ACME 10 99.00 --ioc --fok",
                 "sell ACME 10 --day", "buy NOPE 1", "book", "orders now", "cancel abc", "bogus 1", "buy 'ACME")
    usage = USAGE
    assert out[1:-1] == [
        f"error: buy: unrecognized arguments: --gtx {usage}",
        f"error: buy: argument QTY: not a whole number: 'ten' {usage}",
        f"error: sell: argument --fok: not allowed with argument --ioc {usage.replace('buy', 'sell')}",
        "error: sell: a market order (no PRICE) is --ioc or --fok, not --day",
        "error: buy: argument SYMBOL: unknown symbol 'NOPE' (have ACME, BOLT)",
        "error: book: the following arguments are required: SYMBOL (usage: book SYMBOL [LEVELS])",
        "error: orders: unrecognized arguments: now (usage: orders)",
        "error: cancel: argument ORDER_ID: not a whole number: 'abc' (usage: cancel ORDER_ID)",
        "error: unknown command 'bogus' (type help)",
        "error: No closing quotation",
    ]


def test_cancel_and_replace_of_an_unknown_order_answer_alike(exchange):
    out = script(exchange, "cancel 12345", "replace 12345 99.00 1")
    assert out[1:3] == ["error: cancel: no open order 12345 (see orders)",
                        "error: replace: no open order 12345 (see orders)"]


def test_help_lists_every_command_and_help_command_shows_its_arguments(exchange):
    out = script(exchange, "help", "help replace", "help nothing")
    assert out[1] == "commands (help COMMAND for its arguments):"
    assert [line.split()[0] for line in out[2:2 + len(COMMANDS)]] == list(COMMANDS)
    rest = out[2 + len(COMMANDS):]
    assert rest[0] == "usage: replace ORDER_ID PRICE QTY"
    assert any(line.split() == ["QTY", "the", "new", "open", "quantity,", "lots"] for line in rest)
    assert rest[-2:] == ["error: help: no command 'nothing' (type help)", "logged out"]


def test_a_session_taken_over_says_why_refuses_commands_and_logs_on_again(exchange):
    shell = Program(exchange, "trader", "--trader", "bob")
    try:
        shell.wait_for("logged on to")
        with ExchangeClient(endpoint(exchange, "TES__CLIENT_ENDPOINT"), "bob", "bob-demo-key") as other:
            other.logon(10.0)
            shell.wait_for("session ended: replaced by a new logon of the same trader; type logon to log on again, "
                           "or quit")
            mark = len(shell.lines)
            shell.send("orders")
            shell.wait_for("error: orders: not logged on (replaced by a new logon of the same trader); type logon "
                           "to log on again, or quit", after=mark)
            shell.send("logon")
            shell.wait_for(f"logged on to {endpoint(exchange, 'TES__CLIENT_ENDPOINT')} as bob", after=mark)
            mark = len(shell.lines)
            shell.send("orders")
            shell.wait_for("no open orders", after=mark)
        assert shell.finish() == 0
        assert shell.lines[-1] == "logged out" and shell.errors == []
    finally:
        shell.close()


def test_a_timed_out_session_is_told_at_once_and_the_shell_quits_cleanly(tmp_path):
    env = config_env(tmp_path, EXCHANGE__TES__HEARTBEAT_MS="200", EXCHANGE__TES__SESSION_TIMEOUT_MS="700")
    with Role(["-s", "OBS"], env) as obs, Role(["-s", "TES"], env) as tes:
        tes.wait_for("shard A ready", 10)
        shell = Program(env, "trader", "--trader", "alice")
        try:
            shell.wait_for("logged on to")
            shell.process.send_signal(signal.SIGSTOP)  # the shell cannot keep its session alive
            tes.wait_for("session of alice ended: session timed out", 10)
            shell.send("buy ACME 1 99.00")
            shell.send("positions")
            shell.send("quit")
            shell.process.send_signal(signal.SIGCONT)
            assert shell.finish() == 0
            assert shell.errors == []
            ended = shell.lines.index("session ended: session timed out: nothing received within the session "
                                      "timeout; type logon to log on again, or quit")
            refused = "not logged on (session timed out: nothing received within the session timeout)"
            assert shell.lines[ended + 1:] in (
                [f"error: buy: {refused}; type logon to log on again, or quit",
                 f"error: positions: {refused}; type logon to log on again, or quit"],
                [f"error: positions: {refused}; type logon to log on again, or quit"],  # the buy went before
            ), shell.lines
        finally:
            shell.close()
        assert tes.stop() == 0 and obs.stop() == 0


def test_endpoint_option_overrides_the_configured_tes_and_an_absent_one_is_not_reachable(exchange):
    real, nowhere = endpoint(exchange, "TES__CLIENT_ENDPOINT"), f"tcp://127.0.0.1:{free_port()}"
    elsewhere = exchange | {"EXCHANGE__TES__CLIENT_ENDPOINT": nowhere}
    assert script(elsewhere, "orders", args=("--trader", "alice", "--endpoint", real)) == [
        f"logged on to {real} as alice", "no open orders", "logged out"]
    shell = Program(elsewhere, "trader", "--trader", "alice", "--timeout", "0.5")
    try:
        assert shell.finish() == 2
        [error] = shell.errors
        assert re.fullmatch(f"error: the exchange is not reachable: no answer to the logon from {re.escape(nowhere)} "
                            r"within 0\.5s: nothing accepted a connection there \(tried \d+ times\); is it running\?",
                            error), error
    finally:
        shell.close()


# ================================================================ at a terminal


ESCAPE = re.compile(rb"\x1b(?:\[[0-?]*[ -/]*[@-~]|[@-Z\\-_])")
"""A terminal's escape sequence (a CSI sequence, or ESC and one character)."""


class Terminal:
    """The shell on a pseudo-terminal of 40 x 120; what it writes is kept in ``screen`` (raw)."""

    def __init__(self, env, *args: str) -> None:
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # the child: the shell, on the terminal (never back into pytest)
            try:
                os.chdir(REPO)
                os.execve(sys.executable, [sys.executable, "main.py", "-c", "trader", *args], env)
            finally:
                os._exit(127)
        fcntl.ioctl(self.fd, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
        self.screen = b""
        self.seen = 0  # how much of the screen's text earlier waits consumed

    def type(self, keys: bytes) -> None:
        os.write(self.fd, keys)

    def wait_for(self, text: str, timeout: float = 10.0) -> None:
        """Read until ``text`` appears after what earlier calls waited for, in the screen's text
        without its escape sequences: the shell may draw a line in pieces (a completion after
        the keys typed before it), with cursor moves between them."""
        wanted, deadline = text.encode(), time.monotonic() + timeout
        while (at := ESCAPE.sub(b"", self.screen).find(wanted, self.seen)) < 0:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.fd], [], [], left)[0]:
                raise AssertionError(f"no {text!r} in {self.screen!r}")
            try:
                self.screen += os.read(self.fd, 65536)
            except OSError:  # the shell exited
                raise AssertionError(f"no {text!r} in {self.screen!r}") from None
        self.seen = at + len(wanted)

    def exit_status(self) -> int:
        _, status = os.waitpid(self.pid, 0)
        os.close(self.fd)
        return os.waitstatus_to_exitcode(status)

    def close(self) -> None:
        try:
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass


def test_at_a_terminal_lines_are_edited_completed_and_kept_across_runs(exchange, tmp_path):
    history = tmp_path / "history"
    env = exchange | {"PROMPT_TOOLKIT_NO_CPR": "1", "TERM": "xterm"}
    args = ("--trader", "flow1", "--history", str(history))
    terminal = Terminal(env, *args)
    try:
        terminal.wait_for("flow1>")
        terminal.type(b"instr\t")
        terminal.wait_for("instruments")  # completed
        terminal.type(b"\r")
        terminal.wait_for("band bps")
        terminal.wait_for("flow1>")
        terminal.type(b"book AC\t")
        terminal.wait_for("ACME")  # completed
        terminal.type(b" 32\x1b[D\x7f\r")  # left arrow, backspace: "book ACME 2"
        terminal.wait_for("(market-data sequence")
        terminal.wait_for("flow1>")
        terminal.type(b"quit\r")
        terminal.wait_for("logged out")
        assert terminal.exit_status() == 0
    finally:
        terminal.close()
    assert [line for line in history.read_text().splitlines() if line.startswith("+")] == [
        "+instruments", "+book ACME 2", "+quit"]

    terminal = Terminal(env, *args)
    try:
        terminal.wait_for("flow1>")
        terminal.type(b"\x1b[A\x1b[A\r")  # up twice: the book command of the last run
        terminal.wait_for("(market-data sequence")
        terminal.wait_for("flow1>")
        terminal.type(b"\x04")  # Ctrl-D
        terminal.wait_for("logged out")
        assert terminal.exit_status() == 0
    finally:
        terminal.close()
