"""`python main.py bench book`: the matching core's figures, every ratio from one run.

Measured, on the standard workload (version 1, 1,000,000 messages, seed 42) and on the
advanced workload (version 2: stops, icebergs, post-only, self-trade prevention, GTD and the
clock, call auctions and halts; as many messages, the same seed; `engine.advanced_workload`),
both generated in the run:

1. reference book, per-message API (the executable specification);
2. native book, per-message API (one Python call per message, event Structs back);
3. native book, batch replay (one call, loop in C without the GIL);
4. native book, per-message API, event records (`engine.replay.replay_rows_records` and
   `replay_rows_v2_records`: one Python call per message, the events appended to the book's
   event log as C records and taken as one array at the end), judged on the standard stream
   against an absolute rate (``records_msgs_per_s``);
5. on the standard stream only (it is version 1), the baseline book
   (`benchmarks.baseline_book`: a careful pure-Python book, one replay loop, no event
   objects), the yardstick of the native batch replay's ``batch_vs_baseline`` ratio;

then, when a Liquibook checkout is given (``--liquibook DIR`` or LIQUIBOOK_DIR;
`benchmarks.liquibook.run`), Liquibook's book alone and per message on the standard stream,
its fills checked against ours, for the ``batch_vs_liquibook`` ratio; then native batch
replay on the deep stream (about 300,000 orders on a handful of
levels); the uncross of a call book of 100,000 orders (`call_book`): the time of the one
``set_phase(CONTINUOUS)`` call, events included, on the native and the reference book; and
peak memory of a process holding 1,000,000 resting orders, both on a few hundred levels and
on a million distinct prices spread over 1..10**12 (the reference book's figure alongside).

Each figure is the median of several runs (the machine is shared and noisy); on the two
workloads the engines take turns in rounds and each ratio is the median of the ratios within a
round (`replay_engines`). Fills and final state hashes of all engines must agree (the uncross:
events and state hashes), or the benchmark fails. `verdicts` judges each of TARGETS from the
medians: met or not met.
"""

import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.baseline_book import BaselineBook
from benchmarks.liquibook import run as liquibook_run
from engine import advanced_workload, progress, workload
from engine.book import ReferenceBook
from engine.messages import AuctionUncrossed, OrderFilled
from engine.progress import Task
from engine.replay import replay_rows, replay_rows_records, replay_rows_v2, replay_rows_v2_records
from engine.stream import FILL_DTYPE, LIMIT, LIMIT_GTC, MARKET, PHASE, STREAM_DTYPE, STREAM_V2_DTYPE, is_v2
from engine.types import Phase, Side, TimeInForce
from native.book import NativeBook
from servers import collector
from servers.processes import json_result

DEEP_MESSAGES = 1_000_000
"""The deep stream's size its target is stated for (300,000 of them preloaded: a book larger than
the cache); a smaller one fits the cache and is not judged."""
TARGETS = {"batch_vs_reference": 35.0, "per_message_vs_reference": 4.0,
           "advanced_batch_vs_reference": 20.0, "advanced_per_message_vs_reference": 4.0,
           "uncross_ms": 20.0, "deep_msgs_per_s": 10_000_000, "memory_1m_mb": 300.0, "batch_vs_baseline": 25.0,
           "records_msgs_per_s": 2_150_000, "batch_vs_liquibook": 6.0}
"""Ratios to the reference book and (``batch_vs_baseline``, the standard stream's native batch replay)
to the baseline book (medians of runs), the native uncross of a call book of
UNCROSS_ORDERS orders in ms, the deep book's batch replay in msgs/s, the native book's peak RSS
growth holding 1,000,000 resting orders in MB (every layout of the memory table), and the standard
stream's native per-message API with event records in msgs/s: Liquibook's per-message rate as
issue 15 measured it on this machine; and the standard stream's native batch replay to
Liquibook's book alone measured in the same run (judged only when Liquibook is given)."""

UNCROSS_ORDERS = 100_000
"""Orders in the call book of the uncross figure (fewer when ``--messages`` is smaller)."""

CALL_WIDTH, CALL_OVERLAP = 40, 10
"""A call book's buy limits are priced CENTRE + CALL_OVERLAP plus a triangular offset of at most
CALL_WIDTH ticks either way, its sell limits likewise around CENTRE - CALL_OVERLAP: the highest bid
is 2 * (CALL_WIDTH + CALL_OVERLAP) ticks above the lowest ask, the sides share 2 * (CALL_WIDTH -
CALL_OVERLAP) ticks of prices, and the uncross trades a lot."""

CALL_MARKET_SHARE, CALL_ICEBERG_SHARE, CALL_OWNED_SHARE = 0.02, 0.10, 0.5
"""Shares of a call book's orders: market orders (waiting for the uncross; a fifth of them FOK),
icebergs (a display of a quarter of the quantity), orders of one of 4 owners (with a
self-trade prevention mode, which the uncross does not apply)."""


MESSAGES = 1_000_000
"""The standard and deep streams' size by default."""


def machine() -> dict:
    """What the figures were measured on."""
    model = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            model = next(line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cpu": model, "cores": os.cpu_count(), "python": platform.python_version(),
            "numpy": np.__version__, "platform": platform.platform()}


def timed(make, run, shown: Task | None) -> tuple[float, object, object]:
    """Seconds of one call of ``run(book)`` on a fresh ``make()``, with the book and the result;
    ``shown``, if given, advances by one after it. Making the book is outside the timed part.

    The cyclic garbage collector is off while the call is timed, as in `timeit`: it
    would otherwise walk the million-row input again and again, the same cost for
    every engine, blurring their ratio.
    """
    book = make()
    with collector.paused():
        start = time.perf_counter()
        result = run(book)
        seconds = time.perf_counter() - start
    if shown is not None:
        shown.advance()
    return seconds, book, result


def timed_rounds(engines: dict, schedule: list[str], rounds: int, shown: Task) -> tuple[dict, dict, dict]:
    """Run ``engines`` (name: (what ``shown`` notes while it runs, make, run), the last two as
    `timed` takes them) in ``rounds`` rounds, each running them in the order of ``schedule`` (a
    name may come more than once); return per engine the median seconds of its runs in each
    round, and its last book and result. The last book and result are freed before the next run,
    outside the timed part."""
    seconds = {name: [[] for _ in range(rounds)] for name in engines}
    books, results = {}, {}
    for turn in range(rounds):
        for name in schedule:
            books[name] = results[name] = None
            label, make, run = engines[name]
            shown.note(label)
            taken, books[name], results[name] = timed(make, run, shown)
            seconds[name][turn].append(taken)
    medians = {name: [statistics.median(runs) for runs in per_round] for name, per_round in seconds.items()}
    return medians, books, results


def in_rounds(numerator: list[float], denominator: list[float]) -> float:
    """The median over rounds of the ratio of two engines' seconds within a round."""
    return statistics.median(a / b for a, b in zip(numerator, denominator, strict=True))


def replay_engines(stream: np.ndarray, repeats: int, shown: Task) -> dict:
    """Time the engines on ``stream``, version 1 or 2, and on version 1 the baseline book too
    (``shown`` advancing by one per run: 5 * ``repeats``, 6 * ``repeats`` on version 1); check they
    agree on fills, rejects and final state.

    The engines take turns in ``repeats`` rounds (`timed_rounds`; the native batch replay, the
    shortest run, twice a round, either side of the baseline book), and each ratio is the median
    over the rounds of the ratio within a round: the host's speed drifts by half over minutes,
    so engines timed one after another in blocks would each meet a different spell of it. Each
    rate is the median of the engine's rounds.

    The per-message paths and the baseline book read the rows as Python tuples made before timing
    (``stream.tolist()``), the native batch replay the array itself."""
    rows = stream.tolist()
    feed = replay_rows_v2 if is_v2(stream) else replay_rows
    feed_records = replay_rows_v2_records if is_v2(stream) else replay_rows_records
    engines = {
        "reference": ("reference book, per-message API", ReferenceBook, lambda book: feed(book, rows)),
        "native_per_message": ("native book, per-message API", NativeBook, lambda book: feed(book, rows)),
        "native_records": ("native book, per-message API, event records", NativeBook,
                           lambda book: feed_records(book, rows)),
        "native_batch": ("native book, batch replay", NativeBook, lambda book: book.replay(stream)),
    }
    schedule = ["reference", "native_per_message", "native_records", "native_batch", "native_batch"]
    if not is_v2(stream):
        engines["baseline"] = ("baseline book, replay", BaselineBook, lambda book: book.replay_rows(rows))
        schedule.insert(-1, "baseline")
    seconds, books, results = timed_rounds(engines, schedule, repeats, shown)
    ref = results.pop("reference")
    for name, result in results.items():
        if not np.array_equal(result.fills, ref.fills) or result.rejected != ref.rejected:
            raise AssertionError(f"{name} fills differ from the reference book")
    hashes = {name: book.state_hash() for name, book in books.items()}
    if len(set(hashes.values())) != 1:
        raise AssertionError(f"final states differ: {hashes}")
    n, rate = len(stream), {name: len(stream) / statistics.median(runs) for name, runs in seconds.items()}
    ref_s = seconds["reference"]
    figures = {
        "messages": n, "fills": len(ref.fills), "rejected": ref.rejected, "resting_orders": len(books["reference"]),
        "reference_msgs_per_s": rate["reference"], "native_per_message_msgs_per_s": rate["native_per_message"],
        "native_batch_msgs_per_s": rate["native_batch"], "native_records_msgs_per_s": rate["native_records"],
        "per_message_vs_reference": in_rounds(ref_s, seconds["native_per_message"]),
        "batch_vs_reference": in_rounds(ref_s, seconds["native_batch"]),
        "records_vs_reference": in_rounds(ref_s, seconds["native_records"]),
    }
    if "baseline" in results:
        figures.update(baseline_msgs_per_s=rate["baseline"],
                       baseline_vs_reference=in_rounds(ref_s, seconds["baseline"]),
                       batch_vs_baseline=in_rounds(seconds["baseline"], seconds["native_batch"]))
    return figures


def deep_batch(messages: int, repeats: int, shown: Task) -> dict:
    """Native batch replay on the deep profile: 300,000 resting orders at 1,000,000 messages
    (``shown`` advancing by one for the stream made, then per run: 1 + ``repeats``)."""
    shown.note("the deep workload")
    stream = workload.deep(messages, seed=7, resting=min(300_000, messages * 3 // 10))
    shown.advance()
    engines = {"deep": ("deep book, native batch replay", NativeBook, lambda book: book.replay(stream))}
    medians, books, results = timed_rounds(engines, ["deep"], repeats, shown)
    seconds, book, result = statistics.median(medians["deep"]), books["deep"], results["deep"]
    return {"messages": messages, "fills": len(result.fills), "rejected": result.rejected,
            "resting_orders": len(book), "levels": len(book.depth(0, 1 << 30)) + len(book.depth(1, 1 << 30)),
            "msgs_per_s": messages / seconds}


def call_book(orders: int, seed: int = 11) -> np.ndarray:
    """A version-2 stream that builds a call book: the phase command into CALL (id 1), then
    ``orders`` new orders (ids 2..orders + 1), both sides overlapping (CALL_WIDTH, CALL_OVERLAP),
    quantities 1..100, with waiting market orders, icebergs and owners (CALL_*_SHARE)."""
    rng = np.random.default_rng(seed)
    stream = np.zeros(orders + 1, dtype=STREAM_V2_DTYPE)
    stream[0]["kind"], stream[0]["qty"], stream[0]["order_id"] = PHASE, Phase.CALL, 1
    new = stream[1:]
    new["order_id"] = np.arange(2, orders + 2)
    side = rng.integers(0, 2, orders)
    new["side"] = side
    offset = rng.integers(0, CALL_WIDTH + 1, orders) + rng.integers(0, CALL_WIDTH + 1, orders) - CALL_WIDTH
    centre = np.where(side == Side.BUY, workload.CENTRE + CALL_OVERLAP, workload.CENTRE - CALL_OVERLAP)
    new["qty"] = rng.integers(workload.MIN_QTY, workload.MAX_QTY + 1, orders)
    u_kind, u_fok, u_owner = rng.random(orders), rng.random(orders), rng.random(orders)
    market = u_kind < CALL_MARKET_SHARE
    new["kind"] = np.where(market, MARKET, LIMIT)
    new["price"] = np.where(market, 0, centre + offset)
    new["tif"] = np.where(market, np.where(u_fok < 0.2, TimeInForce.FOK, TimeInForce.IOC), TimeInForce.GTC)
    iceberg = ~market & (u_kind < CALL_MARKET_SHARE + CALL_ICEBERG_SHARE)
    new["display_qty"] = np.where(iceberg, np.maximum(1, new["qty"] // 4), 0)
    owned = u_owner < CALL_OWNED_SHARE
    new["owner"] = np.where(owned, 1 + (u_owner / CALL_OWNED_SHARE * 4).astype(np.int64), 0)
    new["stp"] = np.where(owned, rng.integers(0, 5, orders), 0)
    return stream


def uncross(orders: int, repeats: int, shown: Task) -> dict:
    """Time ``set_phase(CONTINUOUS)`` on a call book of ``orders`` orders (`call_book`), built afresh
    for each run outside the timed part: on the native book 3 * ``repeats`` times, on the reference
    book ``repeats`` times (``shown`` advancing by one for the stream made, then per run). Both
    books' events and final states must agree."""
    shown.note("the call book")
    stream = call_book(orders)
    rows = stream.tolist()
    shown.advance()

    def build_native():
        book = NativeBook()
        book.replay(stream)
        return book

    def build_reference():
        book = ReferenceBook()
        replay_rows_v2(book, rows)
        return book

    runs = {}
    for name, build, count in (("native", build_native, 3 * repeats), ("reference", build_reference, repeats)):
        shown.note(f"uncross, {name} book")
        seconds = []
        for _ in range(count):
            book, events = build(), None   # the last run's events are freed here, not in the timed call
            with collector.paused():
                start = time.perf_counter()
                events = book.set_phase(Phase.CONTINUOUS)
                seconds.append(time.perf_counter() - start)
            shown.advance()
        runs[name] = (seconds, events, book)
    (native_s, events, native), (reference_s, reference_events, reference) = runs["native"], runs["reference"]
    if events != reference_events:
        raise AssertionError("the native book's uncross events differ from the reference book's")
    if native.state_hash() != reference.state_hash():
        raise AssertionError("the books' states after the uncross differ")
    uncrossed = [event for event in events if type(event) is AuctionUncrossed]
    limits = stream[1:][stream["kind"][1:] == LIMIT]
    return {
        "orders": orders, "waiting_market_orders": int(np.count_nonzero(stream["kind"][1:] == MARKET)),
        "icebergs": int(np.count_nonzero(stream["display_qty"])),
        "levels": len(np.unique(limits["price"] * 2 + limits["side"])),
        "price": uncrossed[0].price if uncrossed else None, "volume": uncrossed[0].volume if uncrossed else 0,
        "fills": sum(type(event) is OrderFilled for event in events), "events": len(events),
        "resting_after": len(native),
        "native_ms": statistics.median(native_s) * 1e3, "native_ms_min": min(native_s) * 1e3,
        "native_ms_max": max(native_s) * 1e3, "native_runs": len(native_s),
        "reference_ms": statistics.median(reference_s) * 1e3, "reference_runs": len(reference_s),
    }


def resting_stream(orders: int, spread: str) -> np.ndarray:
    """``orders`` non-crossing limit orders: on a few hundred levels, or on ~``orders`` prices in 1..10**12."""
    rng = np.random.default_rng(3)
    stream = np.zeros(orders, dtype=STREAM_DTYPE)
    stream["kind"] = LIMIT_GTC
    stream["side"] = rng.integers(0, 2, orders)
    stream["qty"] = rng.integers(1, 101, orders)
    stream["order_id"] = np.arange(1, orders + 1)
    if spread == "levels":
        offset = rng.integers(0, 150, orders)
        stream["price"] = np.where(stream["side"] == 0, 10_000 - offset, 10_001 + offset)
    else:
        half = 500_000_000_000
        offset = rng.integers(0, half, orders)
        stream["price"] = np.where(stream["side"] == 0, half - offset, half + 1 + offset)
    return stream


def rss_kb(field: str) -> int:
    """A memory figure of this process from /proc (Linux), in KiB: VmRSS now, VmHWM its peak.

    VmHWM, unlike getrusage's ru_maxrss, starts afresh at exec, so a child does not
    inherit the peak of the process that started it.
    """
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith(field + ":"))


def memory_child(engine: str, orders: int, spread: str) -> dict:
    """Run in a fresh process: how far the peak RSS rose above the RSS before the book was built."""
    stream = resting_stream(orders, spread)
    rows = stream.tolist() if engine == "reference" else None
    before = rss_kb("VmRSS")
    if engine == "native":
        book = NativeBook()
        book.replay(stream)
    else:
        book = ReferenceBook()
        replay_rows(book, rows)
    peak = rss_kb("VmHWM")
    levels = len(book.depth(0, 1 << 30)) + len(book.depth(1, 1 << 30))
    return {"engine": engine, "spread": spread, "resting_orders": len(book), "levels": levels,
            "peak_rss_growth_mb": (peak - before) / 1024, "peak_rss_mb": peak / 1024,
            "book_bytes_mb": book.memory_bytes() / 2**20 if engine == "native" else None}


def measure_memory(engine: str, orders: int, spread: str) -> dict:
    code = ("import json, sys; from benchmarks.book import memory_child; "
            f"print(json.dumps(memory_child({engine!r}, {orders}, {spread!r})))")
    return json_result([sys.executable, "-c", code], f"memory of the {engine} book")


def liquibook_figures(stream: np.ndarray, source, repeats: int, standard: dict, shown: Task) -> dict:
    """Liquibook on the standard ``stream`` (`benchmarks.liquibook.run.measure`, ``shown`` advancing
    by one per round), its fills checked record for record against the native batch replay's, and
    our rates to its; ``{"skipped": reason}`` when it cannot run. The native batch replay runs
    twice in each of Liquibook's rounds, and ``batch_vs_liquibook`` is the median of the ratios
    within a round, as `replay_engines`'s are."""
    native: list[float] = []

    def between():
        runs = [timed(NativeBook, lambda book: book.replay(stream), None)[0] for _ in range(2)]
        native.append(statistics.median(runs))
        shown.advance()

    with tempfile.TemporaryDirectory(prefix="bench-liquibook-") as tmp:
        fills = Path(tmp) / "fills.bin"
        figures = liquibook_run.measure(stream, source, repeats, between, fills)
        if isinstance(figures, str):
            return {"skipped": figures}
        if not np.array_equal(np.fromfile(fills, dtype=FILL_DTYPE), NativeBook().replay(stream).fills):
            raise AssertionError("Liquibook's fills differ from the native book's")
    book = [run["seconds"] for run in figures.pop("runs") if run["mode"] == "book"]
    figures["batch_vs_liquibook"] = in_rounds(book, native)
    figures["records_vs_liquibook_per_message"] = (standard["native_records_msgs_per_s"]
                                                   / figures["per_message_msgs_per_s"])
    return figures


def run(messages: int = MESSAGES, seed: int = 42, repeats: int = 3, deep_messages: int = MESSAGES,
        resting: int = 1_000_000, liquibook: Path | None = None) -> dict:
    """Measure everything, print the table, return the figures.

    The advanced stream has ``messages`` messages like the standard one; the call book of the
    uncross min(UNCROSS_ORDERS, ``messages``) orders. ``liquibook``: Liquibook's source directory
    (None: LIQUIBOOK_DIR, else it is skipped, saying why).
    """
    memory = [("native", "levels"), ("native", "prices"), ("reference", "levels")]
    source = liquibook_run.configured_source(None if liquibook is None else str(liquibook))
    rounds = repeats if liquibook_run.unusable(source) is None else 0
    steps = 4 + 16 * repeats + len(memory) + rounds   # streams: 4; runs: 6 + 5 + 1 + (3 + 1) per repeat
    with progress.task("bench book", steps, "steps") as shown:
        shown.note("the standard workload")
        stream = workload.standard(messages, seed)
        shown.advance()
        report = {"machine": machine(), "standard": replay_engines(stream, repeats, shown)}
        shown.note("Liquibook, book alone and per message")
        report["liquibook"] = liquibook_figures(stream, source, repeats, report["standard"], shown)
        shown.note("the advanced workload")
        stream = advanced_workload.advanced(messages, seed)
        shown.advance()
        report["advanced"] = replay_engines(stream, repeats, shown)
        del stream
        report["deep"] = deep_batch(deep_messages, repeats, shown)
        report["uncross"] = uncross(min(UNCROSS_ORDERS, messages), repeats, shown)
        report["memory"] = []
        for engine, spread in memory:
            shown.note(f"memory of the {engine} book, {spread}")
            report["memory"].append(measure_memory(engine, resting, spread))
            shown.advance()
    report["targets"] = verdicts(report)
    print(format_report(report))
    return report


def _judged(met: bool, figure: str) -> str:
    return f"{'met' if met else 'not met'} ({figure})"


def verdicts(report: dict) -> dict[str, str]:
    """Each of TARGETS judged from the report's medians: "met (figure)" or "not met (figure)"; a size
    target measured at another size is "not judged (why)"."""
    std, adv, deep, cross = report["standard"], report["advanced"], report["deep"], report["uncross"]
    out = {}
    for name, figures in (("standard", std), ("advanced", adv)):
        for key, what in (("batch_vs_reference", "batch replay"), ("per_message_vs_reference", "per-message API")):
            target = TARGETS[key if name == "standard" else f"advanced_{key}"]
            ratio = figures[key]
            out[f"{name} stream, native {what} at least {target:.0f}x the reference book"] = _judged(
                ratio >= target, f"{ratio:.2f}x")
    label = f"uncross of a {UNCROSS_ORDERS:,}-order call book under {TARGETS['uncross_ms']:.0f} ms (native)"
    if cross["orders"] != UNCROSS_ORDERS:
        out[label] = f"not judged (a call book of {cross['orders']:,} orders: {cross['native_ms']:.2f} ms)"
    else:
        out[label] = _judged(cross["native_ms"] < TARGETS["uncross_ms"], f"{cross['native_ms']:.1f} ms")
    ratio, target = std["batch_vs_baseline"], TARGETS["batch_vs_baseline"]
    out[f"standard stream, native batch replay at least {target:.0f}x the baseline book"] = _judged(
        ratio >= target, f"{ratio:.2f}x")
    deep_target = TARGETS["deep_msgs_per_s"]
    label = f"deep book of {DEEP_MESSAGES:,} messages, native batch replay at least {deep_target:,} msgs/s"
    if deep["messages"] != DEEP_MESSAGES:
        out[label] = f"not judged ({deep['messages']:,} messages: {deep['msgs_per_s']:,.0f} msgs/s)"
    else:
        out[label] = _judged(deep["msgs_per_s"] >= deep_target, f"{deep['msgs_per_s']:,.0f} msgs/s")
    native = [row for row in report["memory"] if row["engine"] == "native"]
    label = f"native book holding 1,000,000 resting orders, peak RSS growth at most {TARGETS['memory_1m_mb']:.0f} MB"
    if native:
        worst = max(row["peak_rss_growth_mb"] for row in native)
        if any(row["resting_orders"] != 1_000_000 for row in native):
            out[label] = f"not judged ({native[0]['resting_orders']:,} resting orders: at most {worst:.0f} MB)"
        else:
            out[label] = _judged(worst <= TARGETS["memory_1m_mb"], f"at most {worst:.0f} MB")
    label = (f"standard stream, native batch replay at least {TARGETS['batch_vs_liquibook']:.0f}x Liquibook's "
             "book alone (measured in this run)")
    liquibook = report["liquibook"]
    if "skipped" in liquibook:
        out[label] = f"not judged ({liquibook['skipped']})"
    else:
        ratio = liquibook["batch_vs_liquibook"]
        out[label] = _judged(ratio >= TARGETS["batch_vs_liquibook"], f"{ratio:.2f}x")
    rate, target = std["native_records_msgs_per_s"], TARGETS["records_msgs_per_s"]
    out[f"standard stream, native per-message API with event records at least {target:,} msgs/s "
        "(Liquibook's per-message rate as the issue measured it on this machine)"] = _judged(
        rate >= target, f"{rate:,.0f} msgs/s")
    return out


def format_report(report: dict) -> str:
    std, adv, deep, cross, mem = (report[key] for key in ("standard", "advanced", "deep", "uncross", "memory"))
    m = report["machine"]
    lines = [
        f"machine: {m['cpu']}, {m['cores']} cores, Python {m['python']}, numpy {m['numpy']}",
        f"standard workload (version 1): {std['messages']:,} messages, {std['fills']:,} fills, "
        f"{std['resting_orders']:,} resting at the end",
        f"advanced workload (version 2): {adv['messages']:,} messages, {adv['fills']:,} fills, "
        f"{adv['rejected']:,} rejected, {adv['resting_orders']:,} resting at the end (medians of runs)",
        "",
        "| engine | standard msgs/s | vs reference | advanced msgs/s | vs reference |",
        "|---|---:|---:|---:|---:|",
        f"| reference book, per-message API | {std['reference_msgs_per_s']:,.0f} | 1.0x | "
        f"{adv['reference_msgs_per_s']:,.0f} | 1.0x |",
        f"| baseline book (careful pure Python), replay | {std['baseline_msgs_per_s']:,.0f} | "
        f"{std['baseline_vs_reference']:.1f}x | n/a (version 1 only) | n/a |",
    ]
    for engine, key in (("per-message API", "per_message"), ("batch replay", "batch")):
        lines.append(
            f"| native book, {engine} | {std[f'native_{key}_msgs_per_s']:,.0f} | "
            f"{std[f'{key}_vs_reference']:.1f}x (target {TARGETS[f'{key}_vs_reference']:.0f}x) | "
            f"{adv[f'native_{key}_msgs_per_s']:,.0f} | "
            f"{adv[f'{key}_vs_reference']:.1f}x (target {TARGETS[f'advanced_{key}_vs_reference']:.0f}x) |")
    lines.append(
        f"| native book, per-message API, event records | {std['native_records_msgs_per_s']:,.0f} "
        f"(target {TARGETS['records_msgs_per_s']:,}) | {std['records_vs_reference']:.1f}x | "
        f"{adv['native_records_msgs_per_s']:,.0f} | {adv['records_vs_reference']:.1f}x |")
    price = "nothing traded" if cross["price"] is None else f"{cross['volume']:,} lots at {cross['price']:,}"
    liquibook = report["liquibook"]
    if "skipped" in liquibook:
        compared = liquibook["skipped"]
    else:
        compared = (f"Liquibook ({liquibook['source'] or 'source'}, {liquibook['compiler']}, {liquibook['flags']}), "
                    f"standard stream, same fills: book alone {liquibook['book_msgs_per_s']:,.0f} msgs/s, orders "
                    f"allocated per message {liquibook['per_message_msgs_per_s']:,.0f}; native batch replay "
                    f"{liquibook['batch_vs_liquibook']:.2f}x its book alone (target "
                    f"{TARGETS['batch_vs_liquibook']:.0f}x), per-message API with event records "
                    f"{liquibook['records_vs_liquibook_per_message']:.2f}x its per-message rate")
    lines += [
        "",
        f"standard stream, native batch replay vs the baseline book: {std['batch_vs_baseline']:.1f}x "
        f"(target {TARGETS['batch_vs_baseline']:.0f}x)",
        compared,
        "",
        f"deep book: {deep['messages']:,} messages, {deep['resting_orders']:,} resting on {deep['levels']} levels: "
        f"native batch {deep['msgs_per_s']:,.0f} msgs/s (target {TARGETS['deep_msgs_per_s']:,})",
        "",
        f"uncross of a call book of {cross['orders']:,} orders on {cross['levels']:,} levels "
        f"({cross['waiting_market_orders']:,} waiting market orders, {cross['icebergs']:,} icebergs): {price}, "
        f"{cross['fills']:,} fills, {cross['resting_after']:,} orders left",
        f"set_phase(CONTINUOUS), events included: native {cross['native_ms']:.2f} ms (median of "
        f"{cross['native_runs']}; {cross['native_ms_min']:.2f}-{cross['native_ms_max']:.2f}; target "
        f"{TARGETS['uncross_ms']:.0f} ms), reference {cross['reference_ms']:.1f} ms "
        f"(median of {cross['reference_runs']})",
        "",
        f"| {mem[0]['resting_orders']:,} resting orders | levels | peak RSS growth | process peak RSS | "
        "book's own buffers |",
        "|---|---:|---:|---:|---:|",
    ]
    for row in mem:
        own = f"{row['book_bytes_mb']:.0f} MB" if row["book_bytes_mb"] is not None else "n/a"
        lines.append(f"| {row['engine']}, {row['spread']} | {row['levels']:,} | {row['peak_rss_growth_mb']:.0f} MB | "
                     f"{row['peak_rss_mb']:.0f} MB | {own} |")
    lines.append("")
    lines.extend(f"target {name}: {verdict}" for name, verdict in report["targets"].items())
    return "\n".join(lines)
