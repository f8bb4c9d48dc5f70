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
            fields = file.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


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
