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
    grouped = _grouped_threads(pid, "stat", lambda text: text.split("(", 1)[1])
    if grouped is None:
        return None
    spent = dict.fromkeys(THREADS, 0.0)
    for group, text in grouped:
        spent[group] += _stat_cpu_seconds(text.rsplit(")", 1)[1])
    total = cpu_seconds(pid)  # read last: it holds at least what the threads read held
    if total is None:
        return None
    spent["other"] = max(total - spent["loop"] - spent["zeromq"], 0.0)
    return spent


SWITCHED = ("loop", "zeromq")
"""The groups of `THREADS` read thread by thread (`_grouped_threads`), whose context switches
`threads_switches` reads."""
SWITCH_KINDS = ("waits", "preemptions")
"""A thread's context switches, the voluntary and the involuntary, as `threads_switches` counts them."""


def threads_switches(pid: int) -> dict[str, tuple[int, int]] | None:
    """The context switches of a running process's first thread and of its ZeroMQ I/O threads
    (together), each as (waits, preemptions): the voluntary switches, the thread blocking for
    input, and the involuntary ones, another thread taking its CPU in the middle of its work. None
    without Linux's /proc or once the process has ended; a thread that ended meanwhile is left out."""
    grouped = _grouped_threads(pid, "status", lambda text: text.partition("\n")[0].partition(":")[2].strip())
    if grouped is None:
        return None
    switched = dict.fromkeys(SWITCHED, (0, 0))
    for group, text in grouped:
        status = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
        waits, preemptions = switched[group]
        switched[group] = (waits + int(status["voluntary_ctxt_switches"]),
                           preemptions + int(status["nonvoluntary_ctxt_switches"]))
    return switched


def _grouped_threads(pid: int, file: str, name_of) -> list[tuple[str, str]] | None:
    """The text of /proc's ``file`` (``stat`` or ``status``) of each thread of a running process in
    a `SWITCHED` group, with its group: the first thread (``loop``) and those whose name, as
    ``name_of`` reads it from that text, is a ZeroMQ I/O thread's (``zeromq``). None without Linux's
    /proc or once the process has ended; a thread that ended meanwhile is left out."""
    try:
        threads = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return None
    grouped = []
    for thread in threads:
        try:
            with open(f"/proc/{pid}/task/{thread}/{file}") as opened:
                text = opened.read()
        except OSError:
            continue
        if int(thread) == pid:
            grouped.append(("loop", text))
        elif name_of(text).startswith(ZEROMQ_IO):
            grouped.append(("zeromq", text))
    return grouped


def switches_per_order(before: dict | None, after: dict | None, orders: int) -> dict[str, dict] | None:
    """Per order, by `SWITCHED` group, the waits and preemptions between two `threads_switches`
    readings (None where either is None, or without orders); none below 0."""
    if before is None or after is None or not orders:
        return None
    return {group: {kind: round(max(after[group][k] - before[group][k], 0) / orders, 2)
                    for k, kind in enumerate(SWITCH_KINDS)} for group in SWITCHED}


def loop_cpu_us_per_wait(before: tuple, after: tuple) -> float | None:
    """A process's loop thread's CPU time per wait, in µs to a tenth, between two of its
    `read_servers` readings: what one turn costs, whatever the turn carries, for a loop that waits
    once a turn (a proxy's; a server's waits too in each fsync it makes). None where a reading is
    missing or the thread did not wait."""
    (cpu_before, switched_before), (cpu_after, switched_after) = before, after
    if cpu_before is None or cpu_after is None or switched_before is None or switched_after is None:
        return None
    waits = switched_after["loop"][0] - switched_before["loop"][0]
    if waits <= 0:
        return None
    return round(max(cpu_after["loop"] - cpu_before["loop"], 0.0) / waits * 1e6, 1)


def read_servers(pids: dict[str, int]) -> dict[str, tuple]:
    """Each running process's CPU by thread and context switches, now (`threads_cpu_seconds`,
    `threads_switches`), by name: what `servers_per_order` reads two of."""
    return {name: (threads_cpu_seconds(pid), threads_switches(pid)) for name, pid in pids.items()}


def servers_per_order(before: dict, after: dict, orders: int) -> dict[str, dict]:
    """Between two `read_servers` readings, per order and by process: ``cpu_us_per_order`` (the whole
    process), ``cpu_us_by_thread`` and ``switches_per_order``; and per wait, ``loop_cpu_us_per_wait``
    (`loop_cpu_us_per_wait`): what `bench e2e` reads of the servers and of ZeroMQ alone's stand-ins
    alike."""
    return {
        "cpu_us_per_order": {name: process_cpu_us_per_order(before[name][0], after[name][0], orders)
                             for name in before},
        "cpu_us_by_thread": {name: threads_us_per_order(before[name][0], after[name][0], orders) for name in before},
        "switches_per_order": {name: switches_per_order(before[name][1], after[name][1], orders) for name in before},
        "loop_cpu_us_per_wait": {name: loop_cpu_us_per_wait(before[name], after[name]) for name in before},
    }


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
