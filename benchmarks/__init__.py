"""The benchmarks (`main.py bench ...`); what several of them share."""

import os
import resource
import statistics


def median_present(values: list):
    """The median of the values that are not None (None if none are): a figure some runs lacked."""
    present = [value for value in values if value is not None]
    return statistics.median(present) if present else None


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a running process, all threads (None without Linux's /proc)."""
    try:
        with open(f"/proc/{pid}/stat") as file:
            return _stat_cpu_seconds(file.read().rsplit(")", 1)[1])
    except OSError:
        return None


THREADS = ("loop", "zeromq", "other")
"""How `threads_cpu_seconds` groups a process's threads: its first thread (a server's loop, or
ZeroMQ alone's ``zmq.proxy``), ZeroMQ's I/O threads, and the rest."""
ZEROMQ_IO = "ZMQbg/IO/"
"""The start of the name libzmq gives each of its I/O threads."""


def threads_cpu_seconds(pid: int) -> dict[str, float] | None:
    """`cpu_seconds` of a running process by `THREADS`: its first thread's, its ZeroMQ I/O threads'
    (by name), and the rest, which holds the threads that ended too (the process's total less the
    other two, so the three add up to the total). None without Linux's /proc or once the process
    has ended."""
    try:
        threads = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return None
    spent = dict.fromkeys(THREADS, 0.0)
    for thread in threads:
        try:
            with open(f"/proc/{pid}/task/{thread}/stat") as file:
                name, fields = file.read().split("(", 1)[1].rsplit(")", 1)
        except OSError:
            continue  # it ended meanwhile: its time is in the total, so in the rest
        seconds = _stat_cpu_seconds(fields)
        if int(thread) == pid:
            spent["loop"] = seconds
        elif name.startswith(ZEROMQ_IO):
            spent["zeromq"] += seconds
    total = cpu_seconds(pid)  # read last: it holds at least what the threads read held
    if total is None:
        return None
    spent["other"] = max(total - spent["loop"] - spent["zeromq"], 0.0)
    return spent


SWITCHED = ("loop", "zeromq")
"""The groups of `THREADS` whose context switches `threads_switches` reads."""


def threads_switches(pid: int) -> dict[str, tuple[int, int]] | None:
    """The context switches of a running process's first thread and of its ZeroMQ I/O threads
    (together), each as (waits, preemptions): the voluntary switches, the thread blocking for
    input, and the involuntary ones, another thread taking its CPU in the middle of its work. None
    without Linux's /proc or once the process has ended; a thread that ended meanwhile is left out."""
    try:
        threads = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return None
    switched = dict.fromkeys(SWITCHED, (0, 0))
    for thread in threads:
        try:
            with open(f"/proc/{pid}/task/{thread}/status") as file:
                status = dict(line.split(":", 1) for line in file.read().splitlines() if ":" in line)
        except OSError:
            continue
        group = "loop" if int(thread) == pid else "zeromq" if status["Name"].strip().startswith(ZEROMQ_IO) else None
        if group is not None:
            waits, preemptions = switched[group]
            switched[group] = (waits + int(status["voluntary_ctxt_switches"]),
                               preemptions + int(status["nonvoluntary_ctxt_switches"]))
    return switched


def switches_per_order(before: dict | None, after: dict | None, orders: int) -> dict[str, dict] | None:
    """Per order, by `SWITCHED` group, the waits and preemptions between two `threads_switches`
    readings (None where either is None, or without orders); none below 0."""
    if before is None or after is None or not orders:
        return None
    return {group: {kind: round(max(after[group][k] - before[group][k], 0) / orders, 2)
                    for k, kind in enumerate(("waits", "preemptions"))} for group in SWITCHED}


def process_cpu_us_per_order(before: dict | None, after: dict | None, orders: int) -> float | None:
    """`cpu_us_per_order` of the whole process from two `threads_cpu_seconds` readings, whose groups
    add up to its CPU time (None where either reading is None, or without orders)."""
    if before is None or after is None:
        return None
    return cpu_us_per_order(sum(before.values()), sum(after.values()), orders)


def threads_us_per_order(before: dict | None, after: dict | None, orders: int) -> dict[str, float] | None:
    """CPU µs per order by `THREADS` from two `threads_cpu_seconds` readings (None where either is
    None, or without orders); none below 0 (a group's reading holds a clock tick more or less)."""
    if before is None or after is None or not orders:
        return None
    return {group: round(max(after[group] - before[group], 0.0) / orders * 1e6, 1) for group in THREADS}


def _stat_cpu_seconds(fields: str) -> float:
    """User + system CPU time from what follows the name in a /proc ``stat`` line."""
    values = fields.split()
    return (int(values[11]) + int(values[12])) / os.sysconf("SC_CLK_TCK")


def children_cpu_seconds() -> float:
    """User + system CPU time of this process's children that ended and were waited for: a
    client run's (the load generator's, ZeroMQ alone's client), read before and after it (the
    servers, still running, are not in it)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def cpu_us_per_order(before: float | None, after: float | None, orders: int) -> float | None:
    """CPU µs per order from two `cpu_seconds` readings (None where either is, or without orders)."""
    if before is None or after is None or not orders:
        return None
    return round((after - before) / orders * 1e6, 1)
