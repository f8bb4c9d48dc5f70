"""The README runs: every code block a reader would paste runs here, the way the reader would run it.

- ``python`` blocks run in a fresh interpreter in the repository. One that names the configured
  TES endpoint runs against a real OBS and TES on free ports (`exchange_env`, `Role`), with that
  endpoint swapped for theirs: the one change, which a reader on the defaults does not need.
- ``toml`` blocks, pasted into the configuration, must be accepted by it (given as the
  ``EXCHANGE__SECTION__KEY`` overrides that stand for the file).
- Shell blocks (``console``, ``sh``, ``bash``) run their ``$`` commands with bash in the
  repository (``python`` is this environment's) against what each needs (a database, a tick
  store, a running exchange), and each command must print what the README shows under it, with
  its exit status (2 when that is an ``error:`` line): exactly, ``...`` standing for text left
  out, or with every number free where numbers change from run to run (order ids, times,
  process ids). This test's directories and endpoints are shown as the configuration's
  defaults, as the reader sees them. A program that keeps running (the tape, the trader shell)
  must print the lines shown in that order, among others; the trader shell gets the lines
  typed after its prompts on its standard input, where it shows no prompt and no greeting but
  its logon line, and must answer each as shown.

Every other block is listed in SKIPPED with the reason it is not run;
`test_every_block_is_run_or_skipped_with_a_reason` fails on a block that is neither.
"""

import json
import os
import re
import shlex
import subprocess
import sys
import textwrap
import time
import tomllib
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

import pytest
from journal_entries import scenario
from programs import Program
from test_ticks_queries import ENTRIES, SCALES

from clients.client import ExchangeClient
from clients.runtime import wait_until_tradable
from config.settings import load_config
from database.recording import Applier
from database.store import open_database
from database.ticks.schema import record
from database.ticks.store import TickStore
from engine.types import OrderType, Side, TimeInForce
from servers import protocol as p
from servers.processes import REPO, Role, endpoint, exchange_env, free_port

FENCE = re.compile(r"^(?P<indent>[ \t]*)```(?P<language>[\w-]*)[ \t]*\n(?P<body>.*?)^(?P=indent)```[ \t]*$",
                   re.MULTILINE | re.DOTALL)
DEFAULTS = load_config(environ={})
"""The configuration a reader has: config/exchange.toml without overrides."""

SHELL_TESTS = {
    "$ .venv/bin/python main.py -c trader": "test_trader_shell_answers_as_shown",
    "$ .venv/bin/python main.py -c tape": "test_tape_prints_the_trade_and_quote_shown",
    "$ python main.py -s OBS": "test_a_second_obs_on_the_journal_directory_is_refused_as_shown",
    "$ python main.py admin instrument set": "test_admin_changes_the_reference_data_as_shown",
    "$ python main.py history trader daily": "test_history_trader_prints_the_table_shown",
    "$ python main.py history bars": "test_tick_history_prints_the_tables_shown",
}
"""A shell block's first line (its start) -> the test that runs it."""
SKIPPED = {
    "make run": "make run serves until Ctrl-C (up is tested in test_launcher.py), make test is the whole suite",
    "launcher        | ": "an excerpt of up's log, not a command",
    "data/ticks/": "the tick store's files, not a command",
    "app-trader      | ": "an excerpt of up's log, not a command (the apps' lines are tested in test_launcher.py)",
}
"""A block's first line (its start) -> why it is not run."""


class Block(NamedTuple):
    line: int
    """The README line of the opening fence."""
    language: str
    text: str


class Command(NamedTuple):
    line: str
    """As pasted: the line after ``$ ``."""
    output: list[str]
    """What the README shows it printing."""


def readme_blocks() -> list[Block]:
    text = (REPO / "README.md").read_text()
    return [Block(text.count("\n", 0, match.start()) + 1, match["language"], textwrap.dedent(match["body"]))
            for match in FENCE.finditer(text)]


BLOCKS = readme_blocks()


def blocks_of(language: str) -> list:
    return [pytest.param(block, id=f"README.md:{block.line}") for block in BLOCKS if block.language == language]


def shell_block(start: str) -> Block:
    [block] = [block for block in BLOCKS if block.text.startswith(start)]
    return block


def commands_of(block: Block) -> list[Command]:
    commands: list[Command] = []
    for line in block.text.splitlines():
        if line.startswith("$ "):
            commands.append(Command(line[2:], []))
        else:
            assert commands, f"README.md:{block.line}: output before the first command"
            commands[-1].output.append(line)
    return commands


def pattern(line: str, numbers: bool) -> re.Pattern:
    """``line`` as the README shows it: ``...`` alone stands for any text, a word with ``...`` in it for
    any word; with ``numbers``, every number stands for any number and every run of spaces for any run."""
    parts = []
    for piece in re.split(r"(\s+)", line.rstrip()):
        if piece == "...":
            parts.append(".*")
        elif "..." in piece:
            parts.append(r"\S+")
        elif numbers and piece.isspace():
            parts.append(r"\s+")
        elif numbers:
            parts.append(re.sub(r"\d+", r"\\d+", re.escape(piece)))
        else:
            parts.append(re.escape(piece))
    return re.compile("".join(parts))


def printed(actual: list[str], expected: list[str], numbers: bool) -> bool:
    """Whether the ``expected`` lines are among the ``actual`` ones, in that order."""
    remaining = iter(line.rstrip() for line in actual)
    return all(any(pattern(line, numbers).fullmatch(got) for got in remaining) for line in expected)


def assert_prints(actual: list[str], expected: list[str], numbers: bool = False, among_others: bool = False) -> None:
    shown = "\n".join(["README shows:", *expected, "printed:", *actual])
    if among_others:
        assert printed(actual, expected, numbers), shown
    else:
        assert len(actual) == len(expected), shown
        pairs = zip(expected, actual, strict=True)
        assert all(pattern(want, numbers).fullmatch(got.rstrip()) for want, got in pairs), shown


def configured(config, key: str):
    """The value of the configuration key an ``EXCHANGE__...`` variable names, or None."""
    node = config
    for part in key.removeprefix("EXCHANGE__").lower().split("__"):
        if part.isdigit():
            node = node[int(part)] if isinstance(node, list) and int(part) < len(node) else None
        else:
            node = getattr(node, part, None)
    return node


def as_a_reader_sees(text: str, env: dict[str, str]) -> str:
    """``text`` with this test's directories and endpoints replaced by the configuration's defaults."""
    for name, value in sorted(env.items(), key=lambda item: -len(item[1])):
        default = configured(DEFAULTS, name) if name.startswith("EXCHANGE__") and value else None
        if isinstance(default, str) and default:
            text = text.replace(value, default)
    return text


def shell(command: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    """``command`` as a reader runs it: bash in the repository, this environment's ``python`` first on PATH."""
    env = dict(env, PATH=os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")]))
    return subprocess.run(["bash", "-c", command], cwd=REPO, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=60)


def run_commands(block: Block, env: dict[str, str], numbers: bool = False, status: int | None = None) -> None:
    """Run the block's commands in turn; each must exit with ``status`` (by default 2 if the README shows
    an ``error:`` line, else 0) and print what the README shows."""
    for command in commands_of(block):
        done = shell(command.line, env)
        failing = any(line.startswith("error:") for line in command.output)
        assert done.returncode == (status if status is not None else 2 if failing else 0), (command, done.stdout)
        assert_prints(as_a_reader_sees(done.stdout, env).splitlines(), command.output, numbers)


def program_of(command: Command, env: dict[str, str]) -> Program:
    """The client program ``command`` starts (``.venv/bin/python main.py -c NAME ...``), its output followed."""
    words = shlex.split(command.line)
    assert words[:3] == [".venv/bin/python", "main.py", "-c"], command.line
    return Program(env, *words[3:])


@pytest.fixture
def exchange(tmp_path):
    """An OBS and a TES on free ports; yields their environment."""
    env = exchange_env(tmp_path)
    with Role(["-s", "OBS"], env) as obs, Role(["-s", "TES"], env) as tes:
        yield env
        assert tes.stop() == 0, tes.output()
        assert obs.stop() == 0, obs.output()


def accepted(client: ExchangeClient, count: int) -> None:
    """Wait until ``count`` orders of ``client`` are accepted (so the book holds them)."""
    reports: list = []
    deadline = time.monotonic() + 10
    while sum(isinstance(report, p.OrderAccepted) for report in reports) < count:
        assert time.monotonic() < deadline, reports
        reports.extend(client.receive(0.1))


@contextmanager
def the_book_shown(env: dict[str, str]):
    """The ACME book of the trader and tape examples: demo1 and demo2 trade 1 at 99.87, then demo1 bids
    10 at 99.85 and offers 10 at 100.06. Yields demo2, logged on."""
    tes = endpoint(env, "TES__CLIENT_ENDPOINT")
    with (ExchangeClient(tes, "demo1", "demo1-demo-key") as demo1,
          ExchangeClient(tes, "demo2", "demo2-demo-key") as demo2):
        demo1.logon(10.0)
        demo2.logon(10.0)
        wait_until_tradable(demo1, "ACME")
        demo1.enter_order("ACME", Side.SELL, OrderType.LIMIT, TimeInForce.GTC, 9_987, 1)
        accepted(demo1, 1)  # resting before demo2 buys: the first trade is a buyer's
        demo2.enter_order("ACME", Side.BUY, OrderType.LIMIT, TimeInForce.GTC, 9_987, 1)
        demo1.enter_order("ACME", Side.SELL, OrderType.LIMIT, TimeInForce.GTC, 10_006, 10)
        demo1.enter_order("ACME", Side.BUY, OrderType.LIMIT, TimeInForce.GTC, 9_985, 10)
        accepted(demo2, 1)
        accepted(demo1, 2)
        yield demo2


# ---------------------------------------------------------------- every block


def test_every_block_is_run_or_skipped_with_a_reason():
    starts = {**SHELL_TESTS, **SKIPPED}
    used = []
    for block in BLOCKS:
        if block.language in ("python", "toml"):
            continue  # test_python_block_runs, test_toml_block_is_accepted_by_the_configuration
        matching = [start for start in starts if block.text.startswith(start)]
        assert len(matching) == 1, f"README.md:{block.line}: {block.text.splitlines()[0]!r} is neither run nor skipped"
        used += matching
    assert sorted(used) == sorted(starts), "an entry of SHELL_TESTS or SKIPPED starts no block of the README"
    assert all(name in globals() for name in SHELL_TESTS.values())


@pytest.mark.parametrize("block", blocks_of("python"))
def test_python_block_runs(block, request):
    code, env = block.text, None
    defaults = {DEFAULTS.tes.client_endpoint: "TES__CLIENT_ENDPOINT",
                DEFAULTS.shards[0].market_data_endpoint: "SHARDS__0__MARKET_DATA_ENDPOINT"}
    for default, name in defaults.items():
        if default in code:
            env = env or request.getfixturevalue("exchange")
            code = code.replace(default, endpoint(env, name))
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stderr) == (0, ""), f"README.md:{block.line}:\n{done.stderr}"


@pytest.mark.parametrize("block", blocks_of("toml"))
def test_toml_block_is_accepted_by_the_configuration(block):
    tables = tomllib.loads(block.text)
    overrides = {f"EXCHANGE__{section}__{key}".upper(): json.dumps(value)
                 for section, keys in tables.items() for key, value in keys.items()}
    config = load_config(environ=overrides)
    for section, keys in tables.items():
        for key, value in keys.items():
            assert getattr(getattr(config, section), key) == value


# ---------------------------------------------------------------- shell blocks


def test_admin_changes_the_reference_data_as_shown(tmp_path):
    env = exchange_env(tmp_path, NEW_KEY="zoe-rotated-demo-key")  # the README's $NEW_KEY: the reader's new key
    run_commands(shell_block("$ python main.py admin instrument set"), env)


def test_history_trader_prints_the_table_shown(tmp_path):
    env = exchange_env(tmp_path)
    database = open_database(load_config(environ=env))
    Applier(database).apply("A", scenario())
    database.dispose()
    run_commands(shell_block("$ python main.py history trader daily"), env)


def test_tick_history_prints_the_tables_shown(tmp_path):
    env = exchange_env(tmp_path)
    with TickStore(Path(env["EXCHANGE__TICKS__ROOT"])) as store:
        record(store, "A", ENTRIES, SCALES)
    run_commands(shell_block("$ python main.py history bars"), env)


def test_a_second_obs_on_the_journal_directory_is_refused_as_shown(tmp_path):
    env = exchange_env(tmp_path)
    other_ports = {f"EXCHANGE__SHARDS__0__{name}_ENDPOINT": f"tcp://127.0.0.1:{free_port()}"
                   for name in ("COMMAND", "MARKET_DATA", "SNAPSHOT", "STREAM")}
    with Role(["-s", "OBS"], env) as obs:
        # numbers: the process id that holds the directory
        run_commands(shell_block("$ python main.py -s OBS"), env | other_ports, numbers=True, status=1)
        assert obs.stop() == 0, obs.output()


def test_tape_prints_the_trade_and_quote_shown(exchange):
    [command] = commands_of(shell_block("$ .venv/bin/python main.py -c tape"))
    tape = program_of(command, exchange)
    try:
        tape.wait_until(lambda lines: printed(lines, command.output[:1], numbers=True) or None, "the tape's first line")
        with the_book_shown(exchange) as demo2:
            demo2.enter_order("ACME", Side.SELL, OrderType.MARKET, TimeInForce.IOC, 0, 5)
            tape.wait_until(lambda lines: printed(lines, command.output, numbers=True) or None, "the lines shown")
        assert tape.interrupt() == 0
        assert tape.errors == []
    finally:
        tape.close()
    assert_prints(tape.lines, command.output, numbers=True, among_others=True)


def answered_after(start: int, answer: list[str]):
    """A `Program.wait_until` test: whether the lines from ``start`` on hold ``answer``."""
    return lambda lines: printed(lines[start:], answer, numbers=True) or None


def test_trader_shell_answers_as_shown(exchange):
    [command] = commands_of(shell_block("$ .venv/bin/python main.py -c trader"))
    words = shlex.split(command.line)
    prompt = f"{words[words.index('--trader') + 1]}> "
    starts = [index for index, line in enumerate(command.output) if line.startswith(prompt)]
    greeting = command.output[:starts[0]]
    answers = [(command.output[start].removeprefix(prompt), command.output[start + 1:end])
               for start, end in zip(starts, [*starts[1:], len(command.output)], strict=True)]
    with the_book_shown(exchange):
        shell_program = program_of(command, exchange)
        try:
            shell_program.wait_until(lambda lines: lines or None, "the logon line")
            for typed, answer in answers:
                answered = answered_after(len(shell_program.lines), answer)
                shell_program.send(typed)
                shell_program.wait_until(answered, f"the answer to {typed!r}: {answer}")
            assert shell_program.finish() == 0
            assert shell_program.errors == []
        finally:
            shell_program.close()
    lines = as_a_reader_sees("\n".join(shell_program.lines), exchange).splitlines()
    assert_prints(lines[:1], greeting[:1], numbers=True)
    assert_prints(lines, [line for _, answer in answers for line in answer], numbers=True, among_others=True)
