"""`python main.py bench book`: the matching core's figures, every ratio from one run.

Measured, on the standard workload (1,000,000 messages, seed 42):

1. reference book, per-message API (the executable specification);
2. native book, per-message API (one Python call per message, event Structs back);
3. native book, batch replay (one call, loop in C without the GIL);

then native batch replay on the deep stream (about 300,000 orders on a handful of
levels), and peak memory of a process holding 1,000,000 resting orders, both on
a few hundred levels and on a million distinct prices spread over 1..10**12
(the reference book's figure alongside).

Each figure is the median of several runs (the machine is shared and noisy);
fills and final state hashes of all engines must agree, or the benchmark fails.
"""

import gc
import os
import platform
import statistics
import sys
import time

import numpy as np

from engine import progress, workload
from engine.book import ReferenceBook
from engine.progress import Task
from engine.replay import replay_rows
from engine.stream import LIMIT_GTC, STREAM_DTYPE
from native.book import NativeBook
from servers.processes import json_result

TARGETS = {"batch_vs_reference": 25.0, "per_message_vs_reference": 4.0, "deep_msgs_per_s": 2_000_000,
           "memory_1m_mb": 300.0}


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


def timed(run, repeats: int, shown: Task) -> tuple[float, object]:
    """Median seconds of ``repeats`` calls of ``run`` (each on a fresh book) and the last result;
    ``shown`` advances by one after each call, outside the timed part.

    The cyclic garbage collector is off while a call is timed, as in `timeit`: it
    would otherwise walk the million-row input again and again, the same cost for
    every engine, blurring their ratio.
    """
    seconds, result = [], None
    for _ in range(repeats):
        gc.collect()
        gc.disable()
        try:
            start = time.perf_counter()
            result = run()
            seconds.append(time.perf_counter() - start)
        finally:
            gc.enable()
        shown.advance()
    return statistics.median(seconds), result


def replay_engines(stream: np.ndarray, repeats: int, shown: Task) -> dict:
    """Time the three engines on ``stream`` (``shown`` advancing by one per run: 4 * ``repeats``);
    check they agree on fills and final state."""
    rows = stream.tolist()
    books = {}

    def per_message(factory, name):
        def run():
            books[name] = factory()
            return replay_rows(books[name], rows)
        return run

    def batch():
        books["native_batch"] = NativeBook()
        return books["native_batch"].replay(stream)

    shown.note("reference book, per-message API")
    ref_s, ref = timed(per_message(ReferenceBook, "reference"), repeats, shown)
    shown.note("native book, per-message API")
    msg_s, msg = timed(per_message(NativeBook, "native_per_message"), repeats, shown)
    shown.note("native book, batch replay")
    bat_s, bat = timed(batch, repeats * 2, shown)
    for name, result in (("native_per_message", msg), ("native_batch", bat)):
        if not np.array_equal(result.fills, ref.fills) or result.rejected != ref.rejected:
            raise AssertionError(f"{name} fills differ from the reference book")
    hashes = {name: book.state_hash() for name, book in books.items()}
    if len(set(hashes.values())) != 1:
        raise AssertionError(f"final states differ: {hashes}")
    n = len(stream)
    return {
        "messages": n, "fills": len(ref.fills), "resting_orders": len(books["reference"]),
        "reference_msgs_per_s": n / ref_s, "native_per_message_msgs_per_s": n / msg_s,
        "native_batch_msgs_per_s": n / bat_s,
        "per_message_vs_reference": ref_s / msg_s, "batch_vs_reference": ref_s / bat_s,
    }


def deep_batch(messages: int, repeats: int, shown: Task) -> dict:
    """Native batch replay on the deep profile: 300,000 resting orders at 1,000,000 messages
    (``shown`` advancing by one for the stream made, then per run: 1 + ``repeats``)."""
    shown.note("the deep workload")
    stream = workload.deep(messages, seed=7, resting=min(300_000, messages * 3 // 10))
    shown.advance()
    shown.note("deep book, native batch replay")
    books = [None]

    def run():
        books[0] = NativeBook()
        return books[0].replay(stream)

    seconds, result = timed(run, repeats, shown)
    book = books[0]
    return {"messages": messages, "fills": len(result.fills), "rejected": result.rejected,
            "resting_orders": len(book), "levels": len(book.depth(0, 1 << 30)) + len(book.depth(1, 1 << 30)),
            "msgs_per_s": messages / seconds}


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


def run(messages: int = 1_000_000, seed: int = 42, repeats: int = 3, deep_messages: int = 1_000_000,
        resting: int = 1_000_000) -> dict:
    """Measure everything, print the table, return the figures."""
    memory = [("native", "levels"), ("native", "prices"), ("reference", "levels")]
    with progress.task("bench book", 2 + 5 * repeats + len(memory), "steps") as shown:
        shown.note("the standard workload")
        stream = workload.standard(messages, seed)
        shown.advance()
        report = {"machine": machine(), "standard": replay_engines(stream, repeats, shown),
                  "deep": deep_batch(deep_messages, repeats, shown), "memory": []}
        for engine, spread in memory:
            shown.note(f"memory of the {engine} book, {spread}")
            report["memory"].append(measure_memory(engine, resting, spread))
            shown.advance()
    print(format_report(report))
    return report


def format_report(report: dict) -> str:
    std, deep, mem = report["standard"], report["deep"], report["memory"]
    m = report["machine"]
    lines = [
        f"machine: {m['cpu']}, {m['cores']} cores, Python {m['python']}, numpy {m['numpy']}",
        f"standard workload: {std['messages']:,} messages, {std['fills']:,} fills, "
        f"{std['resting_orders']:,} resting at the end (median of runs)",
        "",
        "| engine | msgs/s | vs reference |",
        "|---|---:|---:|",
        f"| reference book, per-message API | {std['reference_msgs_per_s']:,.0f} | 1.0x |",
        f"| native book, per-message API | {std['native_per_message_msgs_per_s']:,.0f} | "
        f"{std['per_message_vs_reference']:.1f}x (target {TARGETS['per_message_vs_reference']:.0f}x) |",
        f"| native book, batch replay | {std['native_batch_msgs_per_s']:,.0f} | "
        f"{std['batch_vs_reference']:.1f}x (target {TARGETS['batch_vs_reference']:.0f}x) |",
        "",
        f"deep book: {deep['messages']:,} messages, {deep['resting_orders']:,} resting on {deep['levels']} levels: "
        f"native batch {deep['msgs_per_s']:,.0f} msgs/s (target {TARGETS['deep_msgs_per_s']:,})",
        "",
        f"| {mem[0]['resting_orders']:,} resting orders | levels | peak RSS growth | process peak RSS | "
        "book's own buffers |",
        "|---|---:|---:|---:|---:|",
    ]
    for row in mem:
        own = f"{row['book_bytes_mb']:.0f} MB" if row["book_bytes_mb"] is not None else "n/a"
        lines.append(f"| {row['engine']}, {row['spread']} | {row['levels']:,} | {row['peak_rss_growth_mb']:.0f} MB | "
                     f"{row['peak_rss_mb']:.0f} MB | {own} |")
    return "\n".join(lines)
