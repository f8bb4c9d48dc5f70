"""The exchange launcher: ``python main.py COMMAND ...``.

Commands
--------
replay STREAM.npy --out FILLS.npy [--engine native|reference]
    Replay an order stream (format version 1 or 2) through a book, write its fills and
    print the replay summary as one JSON object on the last line of stdout.
workload OUT.npy [--messages N] [--seed S] [--profile standard|deep|advanced]
    Write a generated order stream and print a JSON summary of it on the last line
    (advanced: a version-2 stream with every advanced order and phase).
bench book [--messages M] [--repeats R] [--resting N] [--liquibook DIR]
    Measure the matching core in one run (reference vs native per-message vs
    native batch, deep book, memory of N resting orders) and print the table, then
    the figures as JSON. M is the size of the standard and of the deep stream (30%
    of the deep one, at most 300,000, are preloaded resting orders): at least 4.
    DIR (default $LIQUIBOOK_DIR) is a Liquibook checkout to measure beside it.
bench obs [--messages M] [--repeats R]
    The OBS's execute step in one process: turns of the standard workload's first M
    commands (default 200,000) through the order path in C beside `Shard.execute`, the
    specification, in the same run; CPU per command and the ratio.
bench tes [--messages M] [--repeats R]
    The TES's work in one process: M requests (default 200,000) of the standard workload
    and of the load generator's flow (and that flow one request per frame) through a real
    TES, its sockets replaced by queues and its book server by the OBS's execute step; CPU
    per request, stage by stage, beside msgspec alone on the same frames (the codec floor)
    and the OBS, in the same run, and what a loop turn itself costs.
bench e2e [--rates R1,R2,...] [--duration S] [--repeats R] [--fsync batch|interval|never] [--pin] [--replica]
    Throughput and ack latency through client -> TES -> OBS -> TES -> client,
    median of R runs (default 3) per offered rate; --replica also measures
    answering from a standby's copy instead of an fsync, with ZeroMQ alone.
bench gateways [--rates R1,R2,...] [--duration S] [--repeats R]
    Orders/s and ack latency p50/p90/p99 through the FIX gateway beside the project's
    ZeroMQ client in the same run, and their ratios, median of R runs per rate.
bench soak [--orders N] [--rate R] [--round-s S]
    The same path for N orders (default 10,000,000) at R/s in consecutive rounds of
    S seconds: per round the ack latency, snapshot size and CPU per order, and
    whether the p99 stays flat as the accepted ids grow.
bench store [--ticks N] [--trades N] [--repeats R] [--postgres URL]
    Trades/s recorded into SQLite and PostgreSQL (beside each one's floor), the tick
    store's write rates, OHLCV bars and an as-of join beside pandas; targets judged.

Roles (configuration from ``config/exchange.toml``, EXCHANGE__* overrides)
---------------------------------------------------------------------------
-s OBS [--shard NAME]     run an Order Book Server (the first shard by default)
-s TES                    run the Trading Engine Server
-s recorder               record every shard's journal into the database and the tick store
-s FIX                    the FIX 4.4 gateway (config [fix]): FIX sessions as clients of the TES
-c CLIENT [ARGS...]       run a client: trader, tape, book, marketmaker, random, loadgen
up                        OBS, TES and the configured bots together; Ctrl-C stops all
end-of-day [--symbol S]   expire every resting DAY order (or those of S); prints the counts
phase SYMBOL call|continuous|halt
                          set a symbol's trading phase; prints it, and the uncross if one happened
halt --all                halt every symbol (the kill switch): new orders refused, cancels work
resume --all              every symbol back to the phase its schedule says now (continuous if none)
hash-key KEY              print the stored form of an API key for the config
keys [--replace]          write the CURVE key pairs the configuration needs (security.keys_dir)
journal check [--shard S | --tes]
                          read a shard's (or the TES's) journal, snapshots and discarded-before
                          (never changing them): a report, a JSON last line; exit 0 healthy or a
                          warning, 1 damaged
journal cut (--shard S | --tes) --at OFFSET
                          with its server stopped (that OBS, or the TES): move the journal's bytes
                          from OFFSET (where a good record ends) into commands.log.cut-OFFSET and
                          cut it there
history ACTION ...        query the tick store (ticks, bars, vwap, aj, daily) as a table or
                          --csv, or compact a finished day: see database/ticks/cli.py
history trader KIND TRADER
                          a trader's orders, executions, daily P&L or positions from the
                          transactional database: see database/history.py
admin KIND ACTION ...     the reference data in the database: instruments, traders and their
                          limits, API keys (add, rotate, revoke): see database/admin.py

``python main.py --help`` lists every role and command, one line each; ``-s --help``
and ``-c --help`` the servers and the clients; ``COMMAND --help`` a command's options.

Every failure the user can fix (bad arguments, a missing, pickled, .npz or
wrong-dtype stream, an unwritable output) is reported as one ``error: ...`` line
on stderr with exit status 2, never a traceback. The logic lives in ``engine``;
this module only parses arguments and wires the pieces together.
"""

import os

# Before NumPy loads OpenBLAS: one thread, the caller's. The exchange does no linear algebra large
# enough to share out, and OpenBLAS's worker thread spins for about 50 ms of CPU at every start
# (and after each call it is given), taken from the servers on a small machine. A value already in
# the environment is kept.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import importlib
import json
import sys
from pathlib import Path

from config.arguments import at_least, non_negative_int, positive_float, positive_int
from engine import advanced_workload, progress, workload
from engine.book import ReferenceBook
from engine.replay import summarize, summary_line, timed_replay
from engine.stream import StreamError, load_stream, save_array

EXIT_ERROR = 2


class CliError(Exception):
    """A failure the user can fix; ``main`` prints it as one ``error:`` line."""


class _Commands(argparse._SubParsersAction):
    """Subcommands that keep their one-line help for a listing (``summaries``) and
    give it to the subcommand's own ``--help`` as its description unless it has one."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.summaries: dict[str, str] = {}

    def add_parser(self, name, **kwargs):
        summary = kwargs.get("help") or ""
        self.summaries[name] = summary
        if summary and not kwargs.get("description"):
            kwargs["description"] = summary[0].upper() + summary[1:] + "."
        return super().add_parser(name, **kwargs)


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one ``error:`` line on stderr (exit 2) and whose
    subcommands (at every level) each have a description (`_Commands`)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.register("action", "parsers", _Commands)

    def error(self, message):
        self.exit(EXIT_ERROR, f"error: {message} (see {self.prog} --help)\n")


def listing(sections: dict[str, dict[str, str]]) -> str:
    """Each section's title and one line per entry under it, names and help texts in two
    columns shared by all sections (for a raw description)."""
    width = max(len(name) for entries in sections.values() for name in entries) + 2
    return "\n\n".join(
        "\n".join([f"{title}:", *(f"  {name:<{width}}{text}".rstrip() for name, text in entries.items())])
        for title, entries in sections.items()
    )


def npy_output(text: str) -> Path:
    """An output path: must end in .npy (NumPy would append it otherwise) and be in
    an existing directory."""
    path = Path(text)
    if path.suffix != ".npy":
        raise argparse.ArgumentTypeError(f"output file {text} must end in .npy")
    if not path.parent.is_dir():
        raise argparse.ArgumentTypeError(f"cannot write {text}: no directory {path.parent}")
    return path


def native_book():
    """A NativeBook, imported only when asked for (it is a compiled extension)."""
    try:
        from native.book import NativeBook
    except ImportError as exc:
        raise CliError(
            f"the native engine is not available ({exc}); build it or use --engine reference"
        ) from None
    return NativeBook()


ENGINES = {"native": native_book, "reference": ReferenceBook}
PROFILES = {"standard": workload.standard, "deep": workload.deep, "advanced": advanced_workload.advanced}


def read_stream(path: str):
    try:
        return load_stream(path)
    except StreamError as exc:
        raise CliError(str(exc)) from None


def write_array(path: Path, array) -> None:
    try:
        save_array(path, array)
    except OSError as exc:
        raise CliError(f"cannot write {path}: {exc.strerror or exc}") from None


def run_replay(args: argparse.Namespace) -> None:
    stream = read_stream(args.stream)
    book = ENGINES[args.engine]()
    with progress.task("replay", len(stream), "messages") as shown:
        result, seconds = timed_replay(book, stream, shown.update)
    write_array(args.out, result.fills)
    print(summary_line(summarize(book, stream, result, seconds)))


def run_workload(args: argparse.Namespace) -> None:
    try:
        with progress.task("workload", args.messages, "messages") as shown:
            stream = PROFILES[args.profile](args.messages, args.seed, progress=shown.update)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    write_array(args.output, stream)
    summary = {"file": str(args.output), "profile": args.profile, "seed": args.seed}
    print(json.dumps(summary | workload.describe(stream)))


def run_bench(args: argparse.Namespace) -> None:
    if args.suite == "e2e":
        from benchmarks import e2e

        report = e2e.run(rates=args.rates or e2e.RATES, duration=args.duration, fsync=args.fsync, repeats=args.repeats,
                         pin=args.pin, replica=args.replica)
    elif args.suite == "gateways":
        from benchmarks import gateways

        report = gateways.run(rates=args.rates or gateways.RATES, duration=args.duration, repeats=args.repeats)
    elif args.suite == "soak":
        from benchmarks import soak

        report = soak.run(orders=args.orders, rate=args.rate, round_s=args.round_s)
    elif args.suite == "obs":
        from benchmarks import obs

        report = obs.run(messages=args.messages or obs.MESSAGES, repeats=args.repeats)
    elif args.suite == "tes":
        from benchmarks import tes

        report = tes.run(messages=args.messages or tes.MESSAGES, repeats=args.repeats)
    elif args.suite == "store":
        from benchmarks import store

        report = store.run(ticks_count=args.ticks, trades=args.trades, repeats=args.repeats,
                           server=args.postgres or store.POSTGRES_URL)
    else:
        from benchmarks import book as book_benchmark

        messages = args.messages or book_benchmark.MESSAGES
        report = book_benchmark.run(
            messages=messages, repeats=args.repeats, deep_messages=messages, resting=args.resting,
            liquibook=args.liquibook,
        )
    print(json.dumps(report))


def rate_list(text: str) -> tuple[int, ...]:
    return tuple(positive_int(part) for part in text.split(","))


def add_bench_command(commands) -> None:
    parser = commands.add_parser(
        "bench", help="run a benchmark and print its table",
        description="Run a benchmark, print its table and then its figures as JSON on the last line.",
    )
    parser.add_argument(
        "suite", choices=["book", "obs", "tes", "e2e", "gateways", "soak", "store"],
        help="book: the matching core; obs: the OBS's execute step in one process, the order path in C beside "
        "the specification; tes: the TES's work in one process, beside the codec floor; e2e: orders through "
        "TES and OBS; soak: the same for millions of orders; "
        "store: the recorder's databases and tick store, and the tick queries beside pandas; gateways: orders "
        "through the FIX gateway beside the ZeroMQ client",
    )
    parser.add_argument(
        "--messages", type=at_least(4),
        help="book: the standard, advanced and deep streams' size, at least 4 (the deep stream preloads 30%% of "
        "it, at most 300000, as resting orders; the uncross's call book has as many orders, at most 100000; "
        "default: 1000000); obs: the standard stream's commands; tes: each stream's requests (default: 200000)",
    )
    parser.add_argument("--repeats", type=positive_int, default=3, help="runs per figure; medians are reported")
    parser.add_argument(
        "--resting", type=positive_int, default=1_000_000, help="book: resting orders for the memory figure"
    )
    parser.add_argument(
        "--liquibook", type=Path, metavar="DIR",
        help="book: a Liquibook checkout to measure beside the native book (default: $LIQUIBOOK_DIR; without "
        "either, Liquibook is skipped)",
    )
    parser.add_argument(
        "--rates", type=rate_list,
        help="e2e, gateways: offered rates, comma-separated (default: benchmarks.e2e.RATES, 1000 to 150000; "
        "benchmarks.gateways.RATES, 1000,20000,50000)",
    )
    parser.add_argument("--duration", type=float, default=5.0,
                        help="e2e, gateways: seconds per rate (default: 5)")
    parser.add_argument("--fsync", choices=["batch", "interval", "never"], default="batch",
                        help="e2e: journal fsync policy (default: batch)")
    parser.add_argument("--pin", action="store_true",
                        help="e2e: run the OBS's threads on CPU 0 and the TES's on CPU 1 (their cpus settings), "
                        "and ZeroMQ alone's stand-ins for them likewise; the load generator anywhere")
    parser.add_argument("--replica", action="store_true",
                        help="e2e: also measure ZeroMQ alone whose echo answers each turn once a standby process "
                        "holds it, with no fsync (answering from a second copy instead of the disk)")
    parser.add_argument("--orders", type=positive_int, default=10_000_000,
                        help="soak: orders in all (default: 10000000)")
    parser.add_argument("--rate", type=positive_float, default=50_000.0,
                        help="soak: offered orders/s (default: 50000)")
    parser.add_argument("--round-s", type=positive_float, default=20.0,
                        help="soak: seconds per round (default: 20)")
    parser.add_argument("--ticks", type=positive_int, default=10_000_000,
                        help="store: ticks for the bars and quotes for the as-of join (default: 10000000; a "
                        "tenth as many trades joined, fills recorded and ticks written, a fiftieth over IPC)")
    parser.add_argument("--trades", type=positive_int, default=100_000,
                        help="store: trades into each database (default: 100000)")
    parser.add_argument("--postgres", metavar="URL",
                        help="store: the PostgreSQL server to make and drop its databases on "
                        "(default: postgresql://postgres@127.0.0.1:5432/test; skipped if none answers)")
    parser.set_defaults(run=run_bench)


def add_replay_command(commands) -> None:
    parser = commands.add_parser(
        "replay", help="replay an order stream through a book",
        description="Replay an order stream through a book, write its fills and print the replay summary "
        "as one JSON object on the last line.",
    )
    parser.add_argument("stream", help="order stream (.npy of STREAM_DTYPE or STREAM_V2_DTYPE)")
    parser.add_argument("--out", required=True, type=npy_output, help="where to write the fills (.npy)")
    parser.add_argument(
        "--engine", choices=sorted(ENGINES), default="native", help="book implementation (default: native)"
    )
    parser.set_defaults(run=run_replay)


def add_workload_command(commands) -> None:
    parser = commands.add_parser(
        "workload", help="generate an order stream",
        description="Write a generated order stream (the same arguments always give the same file) and print "
        "a JSON summary of it on the last line. The deep profile preloads 300000 resting orders, so it needs "
        "more messages than that; the advanced profile writes a version-2 stream (stops, icebergs, post-only, "
        "self-trade prevention, GTD on a clock, call auctions and halts).",
    )
    parser.add_argument("output", type=npy_output, help="where to write the stream (.npy)")
    parser.add_argument(
        "--messages", type=positive_int, default=1_000_000, help="stream length (default: 1000000)"
    )
    parser.add_argument("--seed", type=non_negative_int, default=42, help="random seed (default: 42)")
    parser.add_argument(
        "--profile", choices=sorted(PROFILES), default="standard", help="workload profile (default: standard)"
    )
    parser.set_defaults(run=run_workload)


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser: one subcommand per tool, each setting ``run``.

    Its help lists the servers and clients too, one line each, although ``-s`` and
    ``-c`` are parsed by `build_role_parser`; argparse itself does not require a
    command: ``main`` does, when nothing else was asked for.
    """
    parser = _Parser(prog="main.py", usage=USAGE, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.set_defaults(run=None)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", help=argparse.SUPPRESS, prog="main.py")
    add_replay_command(commands)
    add_workload_command(commands)
    add_bench_command(commands)
    up = commands.add_parser("up", help="run OBS, TES and the configured bots until Ctrl-C")
    up.set_defaults(run=run_up)
    end_of_day = commands.add_parser("end-of-day", help="expire every resting DAY order (or those of --symbol)")
    end_of_day.add_argument("--symbol", action="append", help="only this symbol (repeatable; default: all)")
    end_of_day.set_defaults(run=run_end_of_day)
    add_phase_commands(commands)
    hash_key = commands.add_parser("hash-key", help="print the stored (hashed) form of an API key")
    hash_key.add_argument("key", help="the API key in clear")
    hash_key.set_defaults(run=run_hash_key)
    keys = commands.add_parser("keys", help="write the missing CURVE key pairs (TES, shards, operator)")
    keys.add_argument("--replace", action="store_true",
                      help="write new pairs for every role (every process must then be restarted)")
    keys.set_defaults(run=run_keys)
    add_journal_command(commands)
    add_history_command(commands)
    add_admin_command(commands)
    parser.description = DESCRIPTION + "\n\n" + listing({
        "servers (main.py -s SERVER; SIGINT or SIGTERM stops one)":
            {f"-s {name}": SERVER_HELP.get(name, "") for name in SERVERS},
        "clients (main.py -c CLIENT --help for a client's own options)":
            {f"-c {name}": CLIENT_HELP.get(name, "") for name in CLIENTS},
        "web apps (main.py --frontend APP; python main.py up starts both)":
            {f"--frontend {name}": text for name, text in FRONTEND_HELP.items()},
        "commands (main.py COMMAND --help for a command's own options)": commands.summaries,
    })
    return parser


def add_history_command(commands) -> None:
    from database import history
    from database.ticks import cli

    history.add_parser(cli.add_parser(commands, run_history), run_trader_history)


def run_trader_history(args: argparse.Namespace) -> int:
    """``history trader KIND ...``: a trader's records in the transactional database (`database.history`)."""
    from database.history import run
    from database.ticks.cli import HistoryError

    try:
        return run(args, load_settings())
    except HistoryError as exc:
        raise CliError(str(exc)) from None


def add_admin_command(commands) -> None:
    from database.admin import add_parser

    add_parser(commands, run_admin)


def run_admin(args: argparse.Namespace) -> None:
    """``admin KIND ACTION ...``: the reference data in the database (`database.admin`)."""
    from database.admin import AdminError, run

    try:
        lines = run(args, load_settings())
    except AdminError as exc:
        raise CliError(str(exc)) from None
    print("\n".join(lines))


def run_history(args: argparse.Namespace) -> int:
    """``history ACTION ...``: the tick store's queries (`database.ticks.cli`)."""
    from database.ticks.cli import HistoryError, run

    try:
        return run(args, load_settings())
    except HistoryError as exc:
        raise CliError(str(exc)) from None


def add_journal_command(commands) -> None:
    parser = commands.add_parser(
        "journal", help="check a shard's or the TES's journal, or cut a damaged one (its server stopped)")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    check = actions.add_parser("check", help="report on the journal directory, changing nothing (exit 1: damaged)")
    which = check.add_mutually_exclusive_group()
    which.add_argument("--shard", help="the shard's journal (default: the first configured shard's)")
    which.add_argument("--tes", action="store_true", help="the TES's journal (its ledger's)")
    check.set_defaults(run=run_journal_check)
    cut = actions.add_parser(
        "cut", help="stop its server first (the shard's OBS, or the TES): move the journal's bytes from OFFSET on "
                    "aside and cut it there"
    )
    which = cut.add_mutually_exclusive_group(required=True)
    which.add_argument("--shard", help="the shard's journal")
    which.add_argument("--tes", action="store_true", help="the TES's journal (its ledger's)")
    cut.add_argument("--at", required=True, type=non_negative_int, metavar="OFFSET",
                     help="where to cut: the end of a good record, as journal check or the server reported")
    cut.set_defaults(run=run_journal_cut)


USAGE = ("main.py COMMAND [ARGS...]\n       main.py -s SERVER [--shard NAME]\n       main.py -c CLIENT [ARGS...]\n"
         "       main.py --frontend APP")
DESCRIPTION = ("Run the exchange's servers and clients, and its tools. The configuration is\n"
               "config/exchange.toml (or the file EXCHANGE_CONFIG names), any key overridden by\n"
               "an environment variable EXCHANGE__SECTION__KEY.")
SERVERS = {"OBS": "servers.obs", "TES": "servers.tes", "recorder": "servers.recorder", "FIX": "gateways.fix.server",
           "API": "gateways.api.server"}
CLIENTS = {"trader": "clients.trader", "marketmaker": "clients.marketmaker", "random": "clients.random_trader",
           "loadgen": "clients.loadgen", "tape": "clients.tape", "book": "clients.book_view"}
SERVER_HELP = {
    "OBS": "an Order Book Server: one shard's books (--shard NAME; default: the first)",
    "TES": "the Trading Engine Server: sessions, validation, risk, portfolios",
    "recorder": "every shard's journal into the database and the tick store",
    "FIX": "the FIX 4.4 gateway: order entry, execution reports and market data over FIX",
    "API": "the REST and WebSocket gateway (config [api]): signed HTTP requests, OpenAPI docs at /docs",
}
FRONTEND_HELP = {
    "trader": "the trader portal: log on, trade, see the book, your orders, fills and positions",
    "analytics": "the analytics dashboard: health, market overview, traders' P&L and risk figures",
}
CLIENT_HELP = {
    "trader": "an interactive trading shell (--trader ID)",
    "marketmaker": "a bot quoting both sides around a fair value",
    "random": "a bot sending random order flow",
    "loadgen": "load at a fixed rate; its result as JSON on the last line",
    "tape": "trades and top-of-book changes as they happen, one line each",
    "book": "one symbol's depth ladder, redrawn in place",
}


def load_settings():
    from config.settings import ConfigError, load_config

    try:
        return load_config()
    except ConfigError as exc:
        raise CliError(f"configuration: {exc}") from None


def run_server(args: argparse.Namespace) -> int:
    """``-s OBS|TES|recorder|FIX``: ``<module>.serve(config, args)`` runs until SIGINT/SIGTERM."""
    module = importlib.import_module(SERVERS[args.server])
    return module.serve(load_settings(), args)


def run_client(args: argparse.Namespace) -> int:
    """``-c NAME ARGS``: ``clients.<name>.main(config, argv)`` parses its own arguments."""
    module = importlib.import_module(CLIENTS[args.client])
    return module.main(load_settings(), args.client_args)


def run_up(args: argparse.Namespace) -> int:
    from servers.launcher import up

    return up(load_settings())


def run_end_of_day(args: argparse.Namespace) -> None:
    from servers.admin import AdminError, end_of_day

    try:
        expired = end_of_day(load_settings(), args.symbol)
    except AdminError as exc:
        raise CliError(str(exc)) from None
    print(json.dumps({"expired": expired}))


def add_phase_commands(commands) -> None:
    from servers.admin import PHASES

    phase = commands.add_parser("phase", help="set a symbol's trading phase (prints the uncross, if one happened)")
    phase.add_argument("symbol", help="the symbol")
    phase.add_argument("phase", choices=list(PHASES), help="call: orders rest without matching; continuous: "
                       "matching (from a call or a halt, the book uncrosses first); halt: no new orders")
    phase.set_defaults(run=run_phase)
    halt = commands.add_parser("halt", help="halt every symbol of every shard (the kill switch)")
    halt.add_argument("--all", action="store_true", required=True, help="every symbol (required: it stops the venue)")
    halt.set_defaults(run=run_halt)
    resume = commands.add_parser("resume", help="every symbol back to its schedule's phase now (continuous if none)")
    resume.add_argument("--all", action="store_true", required=True, help="every symbol")
    resume.set_defaults(run=run_resume)


def run_phase(args: argparse.Namespace) -> None:
    from servers.admin import PHASES, set_phase

    _print_phases(lambda config: set_phase(config, args.symbol, PHASES[args.phase]))


def run_halt(args: argparse.Namespace) -> None:
    from servers.admin import halt_all

    _print_phases(halt_all)


def run_resume(args: argparse.Namespace) -> None:
    from servers.admin import resume_all

    _print_phases(resume_all)


def _print_phases(command) -> None:
    """Run an operator phase command on the configuration; print each symbol's outcome as one
    JSON object: ``{"phases": {symbol: {"phase", "previous", "sequence", "uncross"}}}``."""
    from servers.admin import AdminError

    try:
        phases = command(load_settings())
    except AdminError as exc:
        raise CliError(str(exc)) from None
    print(json.dumps({"phases": phases}))


def shard_config(name: str | None):
    from config.settings import ConfigError

    config = load_settings()
    try:
        return config.shard(name) if name else config.shards[0]
    except ConfigError as exc:
        raise CliError(str(exc)) from None


def journal_directory(args: argparse.Namespace):
    """The journal directory ``journal check|cut`` works on: the TES's (``--tes``) or a shard's."""
    from servers.journal_admin import shard_journal, tes_journal

    return tes_journal(load_settings().tes) if args.tes else shard_journal(shard_config(args.shard))


def run_journal_check(args: argparse.Namespace) -> int:
    from servers.journal_admin import check

    try:
        lines, summary = check(journal_directory(args))
    except OSError as exc:
        raise CliError(f"cannot read the journal directory: {exc}") from None
    print("\n".join(lines))
    print(json.dumps(summary))
    return 1 if summary["status"] == "damaged" else 0


def run_journal_cut(args: argparse.Namespace) -> None:
    from servers.journal_admin import CutRefused, cut

    try:
        lines, summary = cut(journal_directory(args), args.at)
    except CutRefused as exc:
        raise CliError(str(exc)) from None
    except OSError as exc:
        raise CliError(f"cannot cut the journal: {exc}") from None
    print("\n".join(lines))
    print(json.dumps(summary))


def run_keys(args: argparse.Namespace) -> None:
    from servers.security import write_missing_keys

    config = load_settings()
    if not config.security.keys_dir:
        raise CliError("security.keys_dir is empty: CURVE authentication is off, there are no keys to write")
    try:
        written = write_missing_keys(config, replace=args.replace)
    except OSError as exc:
        raise CliError(f"cannot write keys in {config.security.keys_dir}: {exc.strerror or exc}") from None
    directory = config.security.keys_dir
    for name in written:
        print(f"wrote {directory}/{name}.key (public) and {directory}/{name}.key_secret (secret, mode 0600)")
    print(json.dumps({"keys_dir": directory, "written": written}))


def run_hash_key(args: argparse.Namespace) -> None:
    from servers.auth import hash_api_key

    print(hash_api_key(args.key))


def build_role_parser(option: str) -> argparse.ArgumentParser:
    """The parser of ``main.py -s SERVER ...`` or ``main.py -c CLIENT ...`` (``option`` is the first
    argument): both parse the same options; the help of each lists its own choices."""
    server = option in ("-s", "--server")
    if server:
        usage = "main.py -s SERVER [--shard NAME]"
        about = ("Run one server of the exchange until SIGINT or SIGTERM; it prints one READY line\n"
                 "once its sockets are bound.")
        choices = {"servers": {name: SERVER_HELP.get(name, "") for name in SERVERS}}
    else:
        usage = "main.py -c CLIENT [ARGS...]"
        about = ("Run one client of the exchange; the arguments after its name are its own\n"
                 "(main.py -c CLIENT --help lists them).")
        choices = {"clients": {name: CLIENT_HELP.get(name, "") for name in CLIENTS}}
    parser = _Parser(prog="main.py", usage=usage, description=f"{about}\n\n{listing(choices)}",
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    def shown(text: str, when: bool) -> str:
        return text if when else argparse.SUPPRESS

    parser.add_argument("-s", "--server", choices=sorted(SERVERS), metavar="SERVER",
                        help=shown("the server to run", server))
    parser.add_argument("--shard", metavar="NAME",
                        help=shown("with -s OBS: the shard to serve (default: the first configured)", server))
    parser.add_argument("-c", "--client", choices=sorted(CLIENTS), metavar="CLIENT",
                        help=shown("the client to run; its own arguments follow", not server))
    parser.add_argument("client_args", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    return parser


def build_frontend_parser() -> argparse.ArgumentParser:
    """The parser of ``main.py --frontend APP``."""
    from frontend.apps import APPS

    parser = _Parser(prog="main.py", usage="main.py --frontend APP",
                     description="Serve one web app of the exchange (Streamlit) until SIGINT or SIGTERM, on the "
                                 "address and port of\nthe configuration's [frontend]; it prints one READY line "
                                 "with its URL once it answers.\n\n"
                                 + listing({"apps": {name: FRONTEND_HELP[name] for name in APPS}}),
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frontend", required=True, choices=sorted(APPS), metavar="APP", help="the app to serve")
    return parser


def run_frontend(args: argparse.Namespace) -> int:
    from frontend.apps import serve

    return serve(load_settings(), args.frontend)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--frontend":
        frontend_parser = build_frontend_parser()
        if argv[1:2] in (["-h"], ["--help"]):
            frontend_parser.print_help()
            return 0
        args = frontend_parser.parse_args(argv)
        try:
            return run_frontend(args)
        except CliError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_ERROR
    if argv and argv[0] in ("-s", "--server", "-c", "--client"):
        role_parser = build_role_parser(argv[0])
        if argv[1:2] in (["-h"], ["--help"]):
            role_parser.print_help()
            return 0
        if argv[0] in ("-c", "--client"):
            # argparse's REMAINDER refuses a remainder that starts with an option
            # (``-c trader --trader alice``), so the client's own arguments are split off here.
            args = role_parser.parse_args(argv[:2])
            args.client_args = argv[2:]
        else:
            args = role_parser.parse_args(argv)
        try:
            return run_server(args) if args.server else run_client(args)
        except CliError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_ERROR
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.run is None:
        parser.error("missing COMMAND (or -s SERVER / -c CLIENT)")
    try:
        return args.run(args) or 0
    except CliError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
