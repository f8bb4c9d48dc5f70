"""What a server publishes about itself: its status file, read by the dashboards (`frontend.health`).

Every server role writes one JSON document, whole and atomically (`servers.journal.write_atomically`:
a reader sees the previous document or the new one, never half of one; not fsynced, which would
stall the server's loop for milliseconds every second, and a document lost in a crash says
nothing a reader needs), from its housekeeping
at most once every `PERIOD_S`, never per message. The TES writes ``<tes.journal_dir>/status.json``,
each OBS ``<shard.journal_dir>/status.json``, the recorder ``recorder.status_file``.

Layout (the keys every role writes; a role adds its own figures beside them)::

    role       "TES" | "OBS" | "recorder"
    name       "TES", the shard's name, "recorder"
    pid        the server's process id
    started    when the server started, ns since the epoch (UTC)
    updated    when this document was written, ns since the epoch (UTC)
    stopped    when the server stopped cleanly, ns since the epoch (its last document); null while it runs
    period     s: how often the server writes the document (a reader that sees no new one for a
               few periods can call it down)
    interval   s: the time the rates are over (since the previous document; since the start for the first)
    counters   {name: int}: counts since the server started, never decreasing
    rates      {name: float}: per second over ``interval``, the change of each counter divided by it
    latency    {name: {"window": P, "total": P}}: a `LatencyHistogram`'s percentiles over the last
               `WINDOW` periods (about a minute) and since the start, each P
               {"count", "p50", "p90", "p99", "p999", "max"}: integers, microseconds (count: samples),
               or null without samples
    rejects    [{"reason": name, "code": int, "count": int, "rate": float}]: rejects sent, by
               `RejectReason`, those counted at least once, by code
    stages     {"clock": "sampled" | "cpu" | "wall" | "off", "names": [str], "wall_ns": [int],
               "cpu_ns": [int] | null, "cpu_turns": int | null, "laps": [int], "stall_ns": int,
               "stalls": [int], "stalled_ns": [int]}: a `Stages`' totals
               since the start (the TES and the OBS), one item per stage in the loop's order;
               ``stalls`` the laps of ``stall_ns`` or longer of each stage but idle (`STALL_NS`), and
               ``stalled_ns`` their wall time, so a rare long turn shows where it was spent;
               ``cpu_ns`` the CPU time, read in ``cpu_turns`` of the turns (every turn with "cpu";
               with "sampled", about one in `SAMPLE_TURNS` and each after a long one, each weighted
               by the inverse of its chance of being read: an unbiased estimate); both null with
               "wall" and "off"

Counting costs the hot path an increment of a plain int (a counter; a histogram's buckets are
counted in C, `native.histogram`, a turn's durations in one call); the
document is built, and the rates and percentiles worked out, only when it is written. Stage
timing costs a wall-clock reading per stage per loop turn, never per message, and the thread's
CPU time only in the turns sampled (`Stages`).

A write that fails (a full disk, a directory gone) is logged once, and once more when a write
works again; the server goes on serving either way.
"""

import json
import logging
import os
import random
import time
from bisect import bisect_left
from collections import deque
from enum import IntEnum
from pathlib import Path

import numpy as np

from config.settings import ConfigError
from native.histogram import Buckets
from native.stopwatch import Stopwatch, read_cost_ns
from servers.journal import write_atomically

STATUS_FILE = "status.json"
"""The name of the TES's and the OBS's status file in their journal directory."""
PERIOD_S = 1.0
WINDOW = 60
"""The recent percentiles are over the last this many periods' samples."""
QUANTILES = {"p50": (1, 2), "p90": (9, 10), "p99": (99, 100), "p999": (999, 1000)}
"""Percentile name -> the fraction of the samples at or below it, as (numerator, denominator)."""


def _bounds_us() -> list[int]:
    """Bucket upper bounds, µs: 1, 2, ... 20, then each the previous + 5% (rounded down), to 100 s."""
    bounds = [1]
    while bounds[-1] < 100_000_000:
        bounds.append(max(bounds[-1] + 1, bounds[-1] * 21 // 20))
    return bounds


BOUNDS_US = _bounds_us()
"""Upper bounds of a `LatencyHistogram`'s buckets, µs, ascending; a last bucket holds what is above them."""
BOUNDS_NS = [bound * 1000 for bound in BOUNDS_US]
_BOUNDS_NS = np.array(BOUNDS_NS, dtype=np.int64)


class LatencyHistogram:
    """Durations counted in log-spaced buckets: bucket ``i`` holds the durations above
    ``BOUNDS_US[i - 1]`` µs and up to ``BOUNDS_US[i]`` µs (bucket 0 from 0), the last one
    those above every bound. A percentile is the upper bound of the bucket holding the
    nearest-rank sample (the ``ceil(q * n)``-th smallest), capped at the exact maximum: it is
    never below the true value and at most 5% (or 1 µs) above it.

    `add` and `add_since` count into the current period; `roll` (once a period, from the
    status writer) closes it into a ring of the last `WINDOW` periods and the totals since
    the start."""

    __slots__ = ("counts", "maximum", "_buckets", "_ring", "_window", "_total", "_total_max")

    def __init__(self) -> None:
        self.counts = np.zeros(len(BOUNDS_NS) + 1, dtype=np.int64)
        """The current period's count per bucket."""
        self._buckets = Buckets(self.counts, _BOUNDS_NS)
        """`add_since`'s counting into ``counts``, in C."""
        self.maximum = 0
        """The current period's longest duration, ns."""
        self._ring: deque[tuple[np.ndarray, int]] = deque()
        self._window = np.zeros(len(self.counts), dtype=np.int64)
        self._total = np.zeros(len(self.counts), dtype=np.int64)
        self._total_max = 0

    def add(self, nanoseconds: int) -> None:
        """Count one duration."""
        self.counts[bisect_left(BOUNDS_NS, nanoseconds)] += 1
        if nanoseconds > self.maximum:
            self.maximum = nanoseconds

    def add_since(self, starts: list[int], now: int) -> None:
        """Count the durations from each of ``starts`` to ``now`` (the same clock, ns), in C."""
        longest = self._buckets.count_since(starts, now)
        if longest > self.maximum:
            self.maximum = longest

    def roll(self) -> None:
        """Close the current period: into the window (dropping the period that leaves it) and the totals."""
        counts = self.counts
        self._ring.append((counts, self.maximum))
        self._window += counts
        if len(self._ring) > WINDOW:
            self._window -= self._ring.popleft()[0]
        self._total += counts
        self._total_max = max(self._total_max, self.maximum)
        self.counts = np.zeros_like(counts)
        self._buckets = Buckets(self.counts, _BOUNDS_NS)
        self.maximum = 0

    def window(self) -> dict | None:
        """The percentiles of the last `WINDOW` rolled periods (see `percentiles`)."""
        return percentiles(self._window, max((maximum for _, maximum in self._ring), default=0))

    def total(self) -> dict | None:
        """The percentiles of every rolled period since the start."""
        return percentiles(self._total, self._total_max)


def percentiles(counts: np.ndarray, maximum_ns: int) -> dict | None:
    """``{"count", "p50", "p90", "p99", "p999", "max"}`` of bucket counts (`LatencyHistogram`)
    whose longest duration was ``maximum_ns``: µs, integers; None without samples."""
    count = int(counts.sum())
    if not count:
        return None
    maximum = -(-maximum_ns // 1000)
    cumulative = np.cumsum(counts)
    figures = {"count": count}
    for name, (numerator, denominator) in QUANTILES.items():
        rank = max(1, -(-count * numerator // denominator))
        bucket = int(np.searchsorted(cumulative, rank))
        figures[name] = min(BOUNDS_US[bucket], maximum) if bucket < len(BOUNDS_US) else maximum
    figures["max"] = maximum
    return figures


STAGES_ENV = "EXCHANGE_STAGES"
"""The environment variable choosing the clock of a server's `Stages`: "sampled" (the wall clock at
every lap, the thread's CPU time in one turn of about `SAMPLE_TURNS`: the default), "cpu" (both
at every lap), "wall" or "off"."""
CLOCKS = ("sampled", "cpu", "wall", "off")
SAMPLE_TURNS = 16
"""With the "sampled" clock, one loop turn in this many on average, chosen at random, reads the thread's CPU time."""
LONG_TURN_NS = 1_000_000
"""With the "sampled" clock, the turn after one busy this long (ns) or longer always reads the
thread's CPU time: a turn's readings, about 5 µs, are under 0.5% of such a turn."""
STALL_NS = 10_000_000
"""A lap of a busy stage this long (ns) or longer is counted as a stall of that stage: far beyond a
turn's work at any rate (tens of µs) or an fsync's (a few hundred µs to a few ms), so each one is a
spell the loop did not run (descheduled, a page fault on disk, a slow fsync) worth naming."""
IDLE = "idle"
OTHER = "other"
"""The stages every loop has: waiting for input (``idle``), and the busy time no named stage took (``other``)."""


class Stages:
    """Where a server's loop spends its time, stage by stage: a stopwatch read once at each stage
    boundary of a loop turn (never per message), its laps added to C integers.

    ``lap(stage)`` gives the time since the previous lap to ``stage`` (an index into ``names``)
    and counts one lap of it. The loop laps at the end of every stage it runs, ``other`` before
    it waits and ``idle`` when the wait ends, so every nanosecond since the start is in exactly
    one stage: the stages sum to the time since the start, and the busy time is all but
    ``idle``. A *turn* here runs from one ``idle`` lap to the next: a loop turn's work, then its
    wait for input.

    A lap of any stage but ``idle`` that lasts `STALL_NS` or longer is also counted as a stall of
    that stage, with its wall time (``totals``' ``stalls`` and ``stalled_ns``): the rare long turns
    that make a latency's tail, which the totals alone would average away.

    A lap is one call into C (`native.stopwatch.Stopwatch`, about 0.1 µs with its clock read; 0.3 µs
    when it was Python). The wall clock (the clock of `time.perf_counter_ns`) is read at every lap.
    The thread's CPU time (that of `time.thread_time_ns`) is a system call, about 0.25 µs here: read
    at every lap of every turn (the "cpu" clock) it costs the TES a few µs a turn, about a tenth of
    a turn of one request in `bench tes`. So by default (the "sampled" clock) a turn reads it at each of its laps
    only when chosen, before it begins: at random, one in `SAMPLE_TURNS` on average (the gaps
    between them uniform in 1 .. 2 x `SAMPLE_TURNS` - 1, so no periodic pattern of the loop's turns
    can line up with them), or always after a turn busy for `LONG_TURN_NS` or longer (few, long
    turns at high rates, where the readings cost little and sampling them would be noisy; the busy
    time holds the journal's fsync, so at 10,000/s, where an fsync takes 0.1-0.3 ms, the bound must
    be well above it, or nearly every turn would be read). Each chosen turn's CPU time is added to
    ``cpu_ns`` weighted by the inverse of the chance it had of being chosen (`SAMPLE_TURNS`, or 1),
    so ``cpu_ns`` is an unbiased estimate of every turn's CPU time per stage (the Horvitz-Thompson
    estimator), and so is its change over any stretch of turns; ``cpu_turns`` counts the turns read.
    The "cpu" clock chooses every turn, each weighing 1: exact. With "wall", no CPU time; with
    "off", `lap` does nothing.

    The time between two readings holds one reading's own cost, so that cost (``read_ns``,
    measured when the stopwatch is made) is taken off each lap's CPU time. What a reading
    disturbs after it (caches, branch predictors) stays in: in `bench tes`'s turns of one request
    the stages' CPU adds up to a few µs more than the turn's measured around it. The wall time of
    a chosen turn still holds its readings, about 0.25 µs a lap.

    Parameters
    ----------
    names
        The stages in the loop's order; they must include `IDLE` and `OTHER`.
    clock
        One of `CLOCKS` (default: the `STAGES_ENV` environment variable, else "sampled").
    rng
        The random numbers choosing the turns ("sampled"; default: a fresh `random.Random`).
    """

    __slots__ = ("names", "clock", "read_ns", "lap", "_watch")

    def __init__(self, names: tuple[str, ...], clock: str | None = None, rng: random.Random | None = None) -> None:
        if IDLE not in names or OTHER not in names:
            raise ValueError(f"stages {names}: they must include {IDLE!r} and {OTHER!r}")
        clock = clock or os.environ.get(STAGES_ENV) or "sampled"
        if clock not in CLOCKS:
            raise ConfigError(f"{STAGES_ENV}={clock!r}: the stages' clock is {', '.join(CLOCKS[:-1])} or off")
        self.names = names
        self.clock = clock
        self.read_ns = read_cost_ns() if clock in ("cpu", "sampled") else 0
        """What one reading of the thread's CPU time costs in CPU time, taken off each stage's
        time between two readings (which holds one reading's cost)."""
        mode = "cpu" if clock in ("cpu", "sampled") else clock
        self._watch = Stopwatch(len(names), names.index(IDLE), mode, SAMPLE_TURNS if clock == "sampled" else 1,
                                LONG_TURN_NS, self.read_ns, (rng or random.Random()).randrange, STALL_NS)
        self.lap = self._watch.lap
        """``lap(stage)``: the stopwatch's lap, in C (`native.stopwatch`)."""
        self.start()

    def start(self) -> None:
        """Start the stopwatch again (when the loop starts: what came before it is no stage's),
        and a turn, chosen like any other (the first turns are no likelier to be chosen than the rest)."""
        self._watch.start()

    @property
    def wall_ns(self) -> list[int]:
        """Each stage's wall time, ns."""
        return self._watch.wall_ns

    @property
    def cpu_ns(self) -> list[int]:
        """Each stage's CPU time, ns, estimated from the turns read (exact with "cpu")."""
        return self._watch.cpu_ns

    @property
    def laps(self) -> list[int]:
        """Each stage's laps."""
        return self._watch.laps

    @property
    def cpu_turns(self) -> int:
        """The turns ended whose CPU time was read."""
        return self._watch.cpu_turns

    def totals(self) -> dict:
        """The ``stages`` of the status document (see the module docstring)."""
        timed = self.clock in ("cpu", "sampled")
        return {"clock": self.clock, "names": list(self.names), "wall_ns": list(self.wall_ns),
                "cpu_ns": list(self.cpu_ns) if timed else None, "cpu_turns": self.cpu_turns if timed else None,
                "laps": list(self.laps), "stall_ns": self._watch.stall_ns, "stalls": self._watch.stalls,
                "stalled_ns": self._watch.stalled_ns}


class StatusFile:
    """One server's status file (see the module docstring): `publish` writes it, when `due`.

    Parameters
    ----------
    path
        The file (its directory is made if missing).
    role, name
        What the document says the server is.
    log
        The server's logger: a failed write is said there once, and its recovery once.
    now
        The monotonic clock (s) at the server's start: the first rates are since then.
    """

    def __init__(self, path: Path, role: str, name: str, log: logging.Logger, now: float) -> None:
        self.path = path
        self.role = role
        self.name = name
        self.log = log
        self.pid = os.getpid()
        self.started = time.time_ns()
        self.next_at = now + PERIOD_S
        """When the next document is due (monotonic, s)."""
        self._written_at = now
        self._counters: dict[str, int] = {}
        self._rejects: dict[IntEnum, int] = {}
        self._failure: OSError | None = None

    def due(self, now: float) -> bool:
        return now >= self.next_at

    def publish(self, now: float, counters: dict[str, int], figures: dict | None = None,
                rejects: dict[IntEnum, int] | None = None, latency: dict[str, LatencyHistogram] | None = None,
                stopped: bool = False, stages: Stages | None = None) -> bool:
        """Write the document as of ``now`` (monotonic, s): ``counters`` (since the start) and their
        rates, the ``rejects`` by reason (counts since the start) and their rates, each
        ``latency`` histogram's percentiles (rolling its period), the ``stages``' totals, the
        role's ``figures`` beside them; ``stopped``: the server's last document. Whether it was
        written (a failure is logged once, not raised)."""
        seconds = max(now - self._written_at, 1e-9)
        self.next_at = now + PERIOD_S
        self._written_at = now
        previous, self._counters = self._counters, dict(counters)
        rates = {name: round((count - previous.get(name, 0)) / seconds, 3) for name, count in counters.items()}
        document = {"role": self.role, "name": self.name, "pid": self.pid, "started": self.started,
                    "updated": time.time_ns(), "stopped": None, "period": PERIOD_S, "interval": round(seconds, 6),
                    "counters": counters, "rates": rates}
        if stopped:
            document["stopped"] = document["updated"]
        if rejects is not None:
            before, self._rejects = self._rejects, dict(rejects)
            document["rejects"] = [
                {"reason": reason.name, "code": int(reason), "count": count,
                 "rate": round((count - before.get(reason, 0)) / seconds, 3)}
                for reason, count in sorted(rejects.items()) if count
            ]
        if latency is not None:
            summaries = {}
            for name, histogram in latency.items():
                histogram.roll()
                summaries[name] = {"window": histogram.window(), "total": histogram.total()}
            document["latency"] = summaries
        if stages is not None:
            document["stages"] = stages.totals()
        if figures:
            document.update(figures)
        return self._write(json.dumps(document, sort_keys=True).encode())

    def _write(self, data: bytes) -> bool:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            write_atomically(self.path, data, durable=False)
        except OSError as exc:
            if self._failure is None:
                self.log.warning("cannot write the status file %s (%s): the dashboards will see this server as "
                                 "not responding; it is tried again every %g s, and said again once it works",
                                 self.path, exc.strerror or exc, PERIOD_S)
            self._failure = exc
            return False
        if self._failure is not None:
            self.log.info("the status file %s is written again", self.path)
            self._failure = None
        return True
