"""``python main.py --help`` and every command's ``--help``, run as a user would, in subprocesses.

The top-level help lists every server (``-s``), client (``-c``) and command on one line
each, name and help text; ``-s --help`` and ``-c --help`` list their choices the same way;
every command and subcommand (``journal check``, ``history trader daily``, ...) and every
client says what it does in a description under its usage.
"""

import argparse
import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import main
from servers.processes import REPO

SECTIONS = ("options:", "positional arguments:")


def help_of(*args: str) -> list[str]:
    """``python main.py ARGS --help`` on an 80-column terminal: its lines (it must exit 0, silent on stderr)."""
    done = subprocess.run([sys.executable, "main.py", *args, "--help"], cwd=REPO, capture_output=True, text=True,
                          env=dict(os.environ, COLUMNS="80"), timeout=60)
    assert (done.returncode, done.stderr) == (0, ""), (args, done.stdout, done.stderr)
    return done.stdout.splitlines()


def entry(lines: list[str], name: str) -> str:
    """The help text on the one line that lists ``name`` (indented two spaces, then at least two spaces)."""
    found = [match[1] for line in lines if (match := re.fullmatch(rf"  {re.escape(name)}  +(\S.*)", line))]
    assert len(found) == 1, f"{name!r} is not listed on exactly one line: {lines}"
    return found[0]


def description(lines: list[str]) -> str:
    """The first line after the usage: argparse prints the description there, else a section header."""
    first = lines.index("") + 1
    return lines[first]


def commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every command and subcommand of ``parser`` as the words that name it, depth first."""
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, subparser in action.choices.items():
                found.append((*path, name))
                found.extend(commands(subparser, (*path, name)))
    return found


def test_help_lists_every_server_client_and_command_on_one_line_each():
    lines = help_of()
    assert lines[0] == "usage: main.py COMMAND [ARGS...]"
    for name in main.SERVERS:
        assert entry(lines, f"-s {name}")
    for name in main.CLIENTS:
        assert entry(lines, f"-c {name}")
    top_level = [path[0] for path in commands(main.build_parser()) if len(path) == 1]
    assert {"replay", "workload", "bench", "up", "journal", "history", "admin"} <= set(top_level)
    for name in top_level:
        assert entry(lines, name)


def test_server_help_lists_the_servers_and_client_help_the_clients():
    servers, clients = help_of("-s"), help_of("-c")
    assert servers[0] == "usage: main.py -s SERVER [--shard NAME]"
    for name in main.SERVERS:
        assert entry(servers, name)
    assert "--shard NAME" in "\n".join(servers) and "-c CLIENT" not in "\n".join(servers)
    assert clients[0] == "usage: main.py -c CLIENT [ARGS...]"
    for name in main.CLIENTS:
        assert entry(clients, name)
    assert "--shard" not in "\n".join(clients)


def test_a_server_named_before_help_shows_the_same_help():
    assert help_of("-s", "OBS") == help_of("-s")


def test_every_command_and_subcommand_has_a_description():
    paths = commands(main.build_parser())
    assert ("journal", "check") in paths and ("history", "trader", "daily") in paths
    with ThreadPoolExecutor(4) as pool:
        helps = dict(zip(paths, pool.map(lambda path: help_of(*path), paths), strict=True))
    for path, lines in helps.items():
        assert lines[0].startswith(f"usage: main.py {' '.join(path)} "), lines
        assert description(lines) not in ("", *SECTIONS), f"main.py {' '.join(path)} --help has no description: {lines}"


def test_every_client_has_a_description():
    with ThreadPoolExecutor(4) as pool:
        helps = dict(zip(main.CLIENTS, pool.map(lambda name: help_of("-c", name), main.CLIENTS), strict=True))
    for name, lines in helps.items():
        assert lines[0].startswith(f"usage: main.py -c {name} "), lines
        assert description(lines) not in ("", *SECTIONS), f"main.py -c {name} --help has no description: {lines}"
