"""The OBS's execute step in one process (``python main.py bench obs``): turns of order commands
through the order path in C, as the live loop runs them, beside the same commands through
`servers.shard.Shard.execute`, the specification, in the same run.

The commands are the standard workload's (version 1: limit, market, IOC and FOK orders, cancels,
replaces) as one TES's BookSubmit, BookCancel and BookReplace on one symbol, in turns of the
OBS's `MAX_MESSAGES_PER_TURN`:

- the order path: `OrderBookServer._execute`, the OBS loop's step 3 (`native.orderpath` runs
  every command here), for each turn;
- the specification: each command through `Shard.execute` (the book's event Structs, then
  msgspec) with its market data encoded, what the order path must equal byte for byte.

Both start from an empty book; the benchmark checks that they wrote the same journal entries
(a digest of every entry) and raises if not. Figures are this process's CPU time per command
(the garbage collector off, as the servers make its passes rare), medians of the runs, and
their ratio; no socket, journal write or decoding is in them (`bench e2e` has those).

Then the loop's steps 1 to 3 from the bytes: the same commands as the TES's frames of `FRAME`,
each frame read, its commands sequenced (`native.orderpath.OrderPath.sequence`) and each turn
run as above, the frames read in C (`native.commands.CommandReader`, as the OBS reads them)
beside msgspec decoding them (the OBS's codec, what it did before); both must write the same
journal entries. Their commands are stamped `AHEAD` (a time past the clock, which sequencing
keeps), so both runs' entries match.
"""

import hashlib
import statistics
import time
from types import SimpleNamespace

import msgspec

from benchmarks.book import machine
from engine import workload
from engine.progress import task
from engine.stream import CANCEL, LIMIT_FOK, LIMIT_GTC, LIMIT_IOC, MARKET, REPLACE
from engine.types import CancelReason, OrderType, TimeInForce
from native.commands import CommandReader
from native.framing import Records
from servers import collector
from servers.obs import MAX_MESSAGES_PER_TURN, OrderBookServer
from servers.protocol import MAX_BATCH, MAX_FRAME_BYTES, BookCancel, BookReplace, BookSubmit, Codec, ObsRequest
from servers.shard import TES_SHIFT, Shard

SYMBOL = "ACME"
IDENTITY = b"tes-1"
"""The one TES's DEALER identity (its order ids carry TES id 1)."""
OWNER = 1 << TES_SHIFT
MESSAGES = 200_000
"""The standard stream's commands measured by default."""
START = 1_800_000_000_000_000_000
"""The exchange time of the first command (ns); each next one is 1 µs later."""
FRAME = 128
"""Commands per TES frame: about what a TES sends the OBS in one turn at 100,000 orders/s."""
AHEAD = 4_000_000_000_000_000_000
"""The exchange time the frames' commands are sequenced from (2096: ahead of the clock, so kept)."""
_encode = msgspec.msgpack.Encoder().encode


def commands(messages: int, seed: int = 42) -> list:
    """The standard workload's first ``messages`` rows as the OBS's commands (unknown kinds skipped)."""
    made = []
    for kind, side, price, quantity, order_id, target_id in workload.standard(messages, seed).tolist():
        if kind == LIMIT_GTC:
            made.append(BookSubmit(SYMBOL, OWNER | order_id, side, OrderType.LIMIT, TimeInForce.GTC, price, quantity))
        elif kind == MARKET:
            made.append(BookSubmit(SYMBOL, OWNER | order_id, side, OrderType.MARKET, TimeInForce.IOC, 0, quantity))
        elif kind == LIMIT_IOC:
            made.append(BookSubmit(SYMBOL, OWNER | order_id, side, OrderType.LIMIT, TimeInForce.IOC, price, quantity))
        elif kind == LIMIT_FOK:
            made.append(BookSubmit(SYMBOL, OWNER | order_id, side, OrderType.LIMIT, TimeInForce.FOK, price, quantity))
        elif kind == CANCEL:
            made.append(BookCancel(SYMBOL, OWNER | target_id))
        elif kind == REPLACE:
            made.append(BookReplace(SYMBOL, OWNER | target_id, price, quantity))
    return made


def turns(made: list) -> list[list]:
    """``made`` as the OBS's turns of work: ``(identity, command, sequence, stamp)``."""
    work = [(IDENTITY, command, number, START + number * 1_000) for number, command in enumerate(made, 1)]
    return [work[start:start + MAX_MESSAGES_PER_TURN] for start in range(0, len(work), MAX_MESSAGES_PER_TURN)]


def stand_in(shard: Shard, tes: dict[int, bytes]) -> SimpleNamespace:
    """What `OrderBookServer._execute` reads of its server, for ``shard`` answering the TESs
    ``tes`` (id -> identity), with no socket or journal behind it: no volatility bands, no
    phase change due."""
    return SimpleNamespace(state=shard, tes=tes, guards={}, symbols=sorted(shard.feeds), phases_at=0,
                           entries=Records())


def order_path(work: list[list]) -> tuple[float, str]:
    """CPU seconds of `OrderBookServer._execute` over every turn, and the digest of its entries."""
    server = stand_in(Shard.empty([SYMBOL]), {1: IDENTITY})
    digest, seconds = hashlib.blake2b(), 0.0
    for turn in work:
        started = time.process_time()
        _, _, entries = OrderBookServer._execute(server, turn)
        seconds += time.process_time() - started
        for _, entry in entries.records():
            digest.update(entry)
    return seconds, digest.hexdigest()


def specification(work: list[list]) -> tuple[float, str]:
    """CPU seconds of `Shard.execute` over every command, its market data encoded, and the digest
    of its entries."""
    shard = Shard.empty([SYMBOL])
    digest, seconds = hashlib.blake2b(), 0.0
    for turn in work:
        started = time.process_time()
        entries, market_data = [], []
        for _, command, sequence, stamp in turn:
            published = []
            entry, _, _ = shard.execute(sequence, stamp, command, published)
            entries.append((sequence, entry))
            market_data += map(_encode, published)
        seconds += time.process_time() - started
        for _, entry in entries:
            digest.update(entry)
    return seconds, digest.hexdigest()


def frames(made: list) -> list[list[bytes]]:
    """``made`` as one TES's frames of `FRAME` commands, in turns of at most the OBS's
    `MAX_MESSAGES_PER_TURN` commands."""
    encode = Codec(ObsRequest).encode
    encoded = [encode(made[start:start + FRAME]) for start in range(0, len(made), FRAME)]
    per_turn = MAX_MESSAGES_PER_TURN // FRAME
    return [encoded[start:start + per_turn] for start in range(0, len(encoded), per_turn)]


def from_frames(turns: list[list[bytes]], decode) -> tuple[float, str]:
    """CPU seconds of the loop's steps 1 to 3 over ``turns`` of frames, each decoded by
    ``decode``, and the digest of the journal entries."""
    server = stand_in(Shard.empty([SYMBOL]), {1: IDENTITY})
    sequence_orders = server.state.order_path.sequence
    digest, seconds, sequence, stamp = hashlib.blake2b(), 0.0, 0, AHEAD
    for turn in turns:
        started = time.process_time()
        work = []
        for frame in turn:
            _, sequence, stamp = sequence_orders(work, IDENTITY, decode(frame), 0, None, sequence, stamp)
        _, _, entries = OrderBookServer._execute(server, work)
        seconds += time.process_time() - started
        for _, entry in entries.records():
            digest.update(entry)
    if stamp != AHEAD:
        raise RuntimeError(f"the commands were stamped {stamp}, not {AHEAD}: the clock passed it")
    return seconds, digest.hexdigest()


def read_in_c(turns: list[list[bytes]]) -> tuple[float, str]:
    """`from_frames` with the frames read in C, as the OBS reads them."""
    reader = CommandReader([SYMBOL], (BookSubmit, BookCancel, BookReplace), CancelReason, MAX_FRAME_BYTES, MAX_BATCH)
    return from_frames(turns, reader.read)


def decoded_by_msgspec(turns: list[list[bytes]]) -> tuple[float, str]:
    """`from_frames` with the frames decoded by msgspec, the OBS's codec."""
    return from_frames(turns, Codec(ObsRequest).decode)


def run(messages: int = MESSAGES, repeats: int = 3) -> dict:
    """Measure both paths ``repeats`` times each, alternating; print the table; return the figures."""
    with task("bench obs", 4 * repeats + 1, "steps") as shown:
        shown.note("making the commands")
        made = commands(messages)
        work, framed = turns(made), frames(made)
        count = sum(map(len, work))
        shown.advance()
        runs: dict[str, list[float]] = {name: [] for name in PATHS}
        digests: dict[str, set[str]] = {"commands": set(), "frames": set()}
        for _ in range(repeats):
            for name, measure in (("specification", specification), ("order_path", order_path),
                                  ("msgspec_frames", decoded_by_msgspec), ("c_frames", read_in_c)):
                shown.note(name.replace("_", " "))
                given = framed if name.endswith("frames") else work
                with collector.paused():
                    seconds, digest = measure(given)
                runs[name].append(seconds / count * 1e6)
                digests["frames" if given is framed else "commands"].add(digest)
                shown.advance()
    if len(digests["commands"]) != 1:
        raise RuntimeError("the order path and the specification wrote different journal entries")
    if len(digests["frames"]) != 1:
        raise RuntimeError("the frames read in C and decoded by msgspec wrote different journal entries")
    figures = {name: statistics.median(values) for name, values in runs.items()}
    report = {"machine": machine(), "commands": count, "turn": MAX_MESSAGES_PER_TURN, "frame": FRAME,
              "repeats": repeats, "us_per_command": figures, "runs": runs,
              "ratio": round(figures["specification"] / figures["order_path"], 2),
              "reading_ratio": round(figures["msgspec_frames"] / figures["c_frames"], 2)}
    print(format_report(report))
    return report


PATHS = ("specification", "order_path", "msgspec_frames", "c_frames")
"""What `run` measures, by name: the execute step both ways, then steps 1 to 3 from the frames both ways."""


def format_report(report: dict) -> str:
    machine_ = report["machine"]
    lines = [
        f"machine: {machine_['cpu']}, {machine_['cores']} cores, Python {machine_['python']}",
        f"{report['commands']:,} commands of the standard workload on one symbol, in turns of {report['turn']:,}; "
        f"CPU µs per command, median of {report['repeats']} runs (range); both paths wrote the same journal entries",
        "",
        *table(report, "execute step", "the specification",
               {"specification": "`Shard.execute`, command by command (the specification)",
                "order_path": "the order path in C (the OBS's loop)"}),
        "",
        f"The loop's steps 1 to 3 from the bytes: the same commands as frames of {report['frame']}, read, "
        "sequenced and run; both wrote the same journal entries",
        "",
        *table(report, "from the frames", "msgspec",
               {"msgspec_frames": "decoded by msgspec, sequenced, the order path",
                "c_frames": "read in C, sequenced, the order path (the OBS's loop)"}),
    ]
    return "\n".join(lines)


def table(report: dict, heading: str, versus: str, labels: dict[str, str]) -> list[str]:
    """The lines of a table of the paths ``labels`` names (the first is the one the others are
    measured against, ``versus``): each one's median µs per command with its range, its rate, its ratio."""
    figures, runs = report["us_per_command"], report["runs"]
    against = figures[next(iter(labels))]
    lines = [f"| {heading} | µs per command | commands/s | vs {versus} |", "|---|---:|---:|---:|"]
    for name, label in labels.items():
        figure = figures[name]
        lines.append(f"| {label} | {figure:.2f} ({min(runs[name]):.2f}-{max(runs[name]):.2f}) | {1e6 / figure:,.0f} | "
                     f"{against / figure:.1f}x |")
    return lines

