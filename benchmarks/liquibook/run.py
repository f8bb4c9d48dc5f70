"""Liquibook's order book on our version-1 streams, measured in the same run as our books (issue 15).

Liquibook (github.com/enewhuis/liquibook, C++, header-only, BSD licence) is optional: its source
directory comes from the caller (``--liquibook DIR``, else the LIQUIBOOK_DIR environment
variable). `measure` compiles ``replay.cpp`` against it with g++ into a temporary directory,
writes the stream there as a raw dump (``stream.tobytes()``: STREAM_DTYPE is packed, 34 bytes a
record) and runs the two modes of ``replay.cpp`` alternately, ``repeats`` times each:

- ``book``: orders preallocated before timing (Liquibook's book alone);
- ``per-message``: each new order made with ``std::make_shared`` inside the timed loop.

Each run times its replay loop only, after loading. Without the source or g++, `measure`
returns a one-line reason instead of figures. The semantic mapping (and where Liquibook's
semantics differ from ours) is the comment at the top of ``replay.cpp``; on the standard
workload the fills are identical to ours, record for record.

``python -m benchmarks.liquibook.run --liquibook DIR [--messages N] [--repeats R] [--native]``
generates the standard workload and prints the figures as JSON; ``--native`` also times our
native batch replay in the same rounds (book made before timing, ``replay`` call only) and
compares the fills record for record.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from engine import workload
from engine.stream import FILL_DTYPE, STREAM_DTYPE
from servers import collector
from servers.processes import json_result

ENV_VAR = "LIQUIBOOK_DIR"
MODES = ("book", "per-message")
CXX = "g++"
CXXFLAGS = ("-O3", "-std=c++17", "-DLIQUIBOOK_IGNORES_DEPRECATED_CALLS")
"""Liquibook needs no Boost and no build of its own: its ``src/`` on the include path, and the
define that silences its warnings about deprecated calls (none is made)."""
REPLAY_SOURCE = Path(__file__).with_name("replay.cpp")
HEADER = Path("src/book/order_book.h")


def configured_source(option: str | None = None) -> Path | None:
    """Liquibook's source directory: ``option`` if given, else LIQUIBOOK_DIR, else None."""
    value = option or os.environ.get(ENV_VAR)
    return Path(value).expanduser() if value else None


def unusable(source: Path | None) -> str | None:
    """Why Liquibook cannot be measured with ``source``, in one line; None when it can."""
    if source is None:
        return f"Liquibook skipped: no source directory (set {ENV_VAR} or pass --liquibook DIR)"
    if shutil.which(CXX) is None:
        return f"Liquibook skipped: {CXX} not found on PATH"
    if not (source / HEADER).is_file():
        return f"Liquibook skipped: {source} has no {HEADER} (not a Liquibook checkout)"
    return None


def compile_replay(source: Path, directory: Path) -> Path | str:
    """``replay.cpp`` built against ``source`` in ``directory``: the binary, or a one-line reason."""
    binary = directory / "liquibook_replay"
    command = [CXX, *CXXFLAGS, f"-I{source / 'src'}", str(REPLAY_SOURCE), "-o", str(binary)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        errors = [line for line in done.stderr.splitlines() if "error" in line] or done.stderr.splitlines() or ["?"]
        return f"Liquibook skipped: replay.cpp does not compile against {source}: {errors[0].strip()}"
    return binary


def replay(binary: Path, dump: Path, mode: str, fills: Path | None = None) -> dict:
    """One run of the compiled replay: its JSON line (mode, messages, seconds, fills, filled_qty,
    rejected, resting). With ``fills``, every fill is also written there (FILL_DTYPE records)."""
    command = [str(binary), str(dump), mode] + ([str(fills)] if fills else [])
    return json_result(command, f"Liquibook replay ({mode})")


def compiler() -> str:
    """The first line of ``g++ --version``."""
    done = subprocess.run([CXX, "--version"], capture_output=True, text=True)
    return done.stdout.splitlines()[0] if done.stdout else "unknown"


def source_version(source: Path) -> str | None:
    """``git describe`` of ``source`` (with the commit), or None when ``source`` is not the top of a
    git work tree (an unpacked archive inside another repository must not take that one's name)."""

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", "-C", str(source), *args], capture_output=True, text=True)
        except OSError:
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    top = git("rev-parse", "--show-toplevel")
    if not top or Path(top).resolve() != source.resolve():
        return None
    return git("describe", "--tags", "--always", "--long", "--dirty")


def measure(stream: np.ndarray, source: Path | None, repeats: int, between: Callable[[], None] | None = None,
            fills: Path | None = None) -> dict | str:
    """Liquibook's medians on ``stream`` (version 1), or a one-line reason why it cannot run.

    Each of ``repeats`` rounds runs ``book`` then ``per-message``, then calls ``between`` (if
    given: another engine timed in the same rounds, as the machine is noisy). With ``fills``, one
    more ``book`` run, not timed for the figures, writes every fill there (FILL_DTYPE records).
    Every run must report the same fills, filled quantity, rejects and resting orders.
    """
    if stream.dtype != STREAM_DTYPE:
        raise ValueError("Liquibook replays version-1 streams (STREAM_DTYPE) only")
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, not {repeats}")
    reason = unusable(source)
    if reason:
        return reason
    runs = []
    with tempfile.TemporaryDirectory(prefix="liquibook-") as tmp:
        binary = compile_replay(source, Path(tmp))
        if isinstance(binary, str):
            return binary
        dump = Path(tmp) / "stream.bin"
        dump.write_bytes(stream.tobytes())
        for _ in range(repeats):
            runs.extend(replay(binary, dump, mode) for mode in MODES)
            if between is not None:
                between()
        if fills is not None:
            replay(binary, dump, "book", fills)
    outcome = {(run["fills"], run["filled_qty"], run["rejected"], run["resting"]) for run in runs}
    if len(outcome) != 1:
        raise AssertionError(f"Liquibook runs disagree on fills, rejects or resting orders: {sorted(outcome)}")
    messages = len(stream)
    figures = {"messages": messages}
    for mode in MODES:
        seconds = [run["seconds"] for run in runs if run["mode"] == mode]
        key = mode.replace("-", "_")
        figures[f"{key}_msgs_per_s"] = messages / statistics.median(seconds)
        figures[f"{key}_msgs_per_s_range"] = [messages / max(seconds), messages / min(seconds)]
    first = runs[0]
    figures.update(fills=first["fills"], filled_qty=first["filled_qty"], rejected=first["rejected"],
                   resting=first["resting"], runs=runs, compiler=compiler(), flags=" ".join(CXXFLAGS),
                   source=source_version(source))
    return figures


def _native_rounds(stream: np.ndarray) -> tuple[Callable[[], None], list[float], list]:
    """A round of our native batch replay for `measure`'s ``between``: the book is made before
    timing and only ``replay`` is timed, garbage collector off (as Liquibook's loop only).
    Returns the round, the seconds list it appends to and a one-item list holding the last result."""
    from native.book import NativeBook

    seconds, last = [], [None]

    def round_():
        book = NativeBook()
        with collector.paused():
            start = time.perf_counter()
            last[0] = book.replay(stream)
            seconds.append(time.perf_counter() - start)

    return round_, seconds, last


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.liquibook.run", description=__doc__.splitlines()[0])
    parser.add_argument("--liquibook", metavar="DIR", help=f"Liquibook's source directory (default: ${ENV_VAR})")
    parser.add_argument("--messages", type=int, default=1_000_000, help="standard workload size (1,000,000)")
    parser.add_argument("--seed", type=int, default=42, help="workload seed (42)")
    parser.add_argument("--repeats", type=int, default=5, help="runs of each mode; figures are medians (5)")
    parser.add_argument("--native", action="store_true",
                        help="also time our native batch replay in the same rounds and compare the fills")
    args = parser.parse_args(argv)
    source = configured_source(args.liquibook)
    reason = unusable(source)
    if reason:
        sys.exit(reason)
    stream = workload.standard(args.messages, args.seed)
    between, native_seconds, native_last = _native_rounds(stream) if args.native else (None, [], [None])
    with tempfile.TemporaryDirectory(prefix="liquibook-fills-") as tmp:
        fills_path = Path(tmp) / "fills.bin" if args.native else None
        figures = measure(stream, source, args.repeats, between, fills_path)
        if isinstance(figures, str):
            sys.exit(figures)
        report = {"workload": "standard", "seed": args.seed, "liquibook": figures}
        if args.native:
            ours = native_last[0].fills
            theirs = np.fromfile(fills_path, dtype=FILL_DTYPE)
            native = args.messages / statistics.median(native_seconds)
            report["native_batch"] = {
                "msgs_per_s": native,
                "msgs_per_s_range": [args.messages / max(native_seconds), args.messages / min(native_seconds)],
                "fills": len(ours), "rejected": native_last[0].rejected, "seconds": native_seconds,
                "fills_identical_to_liquibook": bool(np.array_equal(ours, theirs)),
                "vs_liquibook_book": native / figures["book_msgs_per_s"],
                "vs_liquibook_per_message": native / figures["per_message_msgs_per_s"],
            }
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
