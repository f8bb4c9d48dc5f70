"""What every server role shares: start, READY, signals, a clean stop, the exit code, counted warnings.

A role (``python main.py -s OBS|TES|recorder``) is a class that builds its sockets and state
in ``__init__`` and provides

- ``ready() -> str``: the line printed (``READY <role> ...``) once it can serve;
- ``run()``: serve until ``stop`` is called (from a signal handler: it only sets a flag);
- ``stop(*signal)`` and ``close()`` (sockets and files; called whatever happened);
- ``stopped() -> str``: the log line after a clean stop.

`serve` runs one: SIGINT and SIGTERM stop it, the garbage collector is settled
(`servers.collector`) before it serves, and every failure ends as one log line and an exit
status, never a traceback, except a defect (an exception nobody foresaw), which is logged with
its traceback so it can be fixed:

====================================  ======  ==========================================
what                                  status  line
====================================  ======  ==========================================
stopped by a signal                   0       ``stopped()``
``refusals``: cannot start            the     ``<role> cannot start: <the exception>``
(a key or configuration problem: 2;   given
a damaged journal, a port in use: 1)
``failures``: had to stop             1       ``<role> stopped <where>: <the exception>``
anything else                         1       ``<role> failed <where>`` and the traceback
====================================  ======  ==========================================

``<where>`` is what ``where(server)`` says (``at sequence 400``, for the OBS); without
``where``, nothing: ``<role> stopped: <the exception>``.
"""

import logging
import os
import resource
import signal
import time
from collections.abc import Callable
from typing import Protocol

from config.settings import ConfigError
from servers import collector, logs

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Server(Protocol):
    def ready(self) -> str: ...

    def run(self) -> None: ...

    def stop(self, *_signal) -> None: ...

    def close(self) -> None: ...

    def stopped(self) -> str: ...


def raise_open_files_limit(log: logging.Logger) -> None:
    """Raise this process's soft limit on open descriptors to its hard limit (the most it may
    have without privilege), where it is lower and finite; where that is refused, say so in
    ``log`` and go on with the soft limit.
    Each client connection holds a descriptor, and many systems start a process at a soft limit
    of 1,024 under a hard one hundreds of times larger: the difference is connections a server
    would refuse for nothing (the accept failing at the limit, which ZeroMQ's I/O thread retries
    in a loop, a core's worth of CPU, until a descriptor is free). The one role that uses
    ``select``, which cannot watch a descriptor past 1,023 (the recorder, on its kdb+
    connection), holds a few, so its own stay below that."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft == resource.RLIM_INFINITY or soft >= hard:
        return
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError) as exc:
        log.warning("open descriptors stay limited to %d (raising the limit to %d was refused: %s)", soft, hard, exc)


def pin(cpus: list[int]) -> None:
    """Run every thread of this process, and every thread it starts later, on ``cpus`` only
    (nothing if empty). ConfigError, nothing changed, if this process may not run on one of them
    (a CPU the machine lacks, or one its cgroup or ``taskset`` leaves out), or if the platform
    cannot pin threads."""
    if not cpus:
        return
    if not hasattr(os, "sched_setaffinity"):
        raise ConfigError(f"cpus {cpus}: this platform cannot pin threads to CPUs")
    allowed = os.sched_getaffinity(0)
    if not set(cpus) <= allowed:
        raise ConfigError(f"cpus {cpus}: this process may run on CPUs {_ranges(sorted(allowed))} only")
    for thread in os.listdir("/proc/self/task"):
        try:
            os.sched_setaffinity(int(thread), cpus)
        except ProcessLookupError:
            pass   # a thread that ended since it was listed


def _ranges(cpus: list[int]) -> str:
    """Sorted CPU ids as Linux lists them (``0-3,6``)."""
    runs: list[list[int]] = []
    for cpu in cpus:
        if runs and cpu == runs[-1][1] + 1:
            runs[-1][1] = cpu
        else:
            runs.append([cpu, cpu])
    return ",".join(str(first) if first == last else f"{first}-{last}" for first, last in runs)


def serve(log: logging.Logger, role: str, start: Callable[[], Server],
          refusals: dict[type[BaseException], int], failures: tuple[type[BaseException], ...] = (),
          where: Callable[[Server], str] | None = None, log_format: str = "text") -> int:
    """Start a server with ``start()``, run it until SIGINT/SIGTERM, close it; the exit status (see
    the module docstring). It logs as ``role`` in ``log_format`` (`servers.logs`). ``refusals``
    maps what ``start`` may raise to the status to exit with (a role that pins its threads calls
    `pin` first in ``start``); ``failures`` are what ``run`` may raise to say it had to stop;
    ``where`` says how far the server got, for the lines of a failure."""
    logs.configure(role, log_format)
    raise_open_files_limit(log)
    try:
        server = start()
    except tuple(refusals) as exc:
        log.error("%s cannot start: %s", role, exc)
        return next(status for kind, status in refusals.items() if isinstance(exc, kind))
    previous = {signum: signal.signal(signum, server.stop) for signum in SIGNALS}
    collector.settle()
    try:
        print(server.ready(), flush=True)
        server.run()
    except failures as exc:
        log.error("%s stopped%s: %s", role, _where(where, server), exc)
        return 1
    except Exception:
        log.exception("%s failed%s", role, _where(where, server))
        return 1
    finally:
        server.close()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    log.info("%s", server.stopped())
    return 0


def _where(where: Callable[[Server], str] | None, server: Server) -> str:
    return f" {where(server)}" if where is not None else ""


class Occurrences:
    """One kind of trouble, counted, and logged at most every ``every`` seconds with the count so
    far, however often it happens (a flood of bad input must not become a flood of log lines).

    ``message`` is a logging format whose last placeholder is the count; calling the instance
    with the other arguments counts ``count`` occurrences (one by default).
    """

    def __init__(self, log: logging.Logger, message: str, every: float = 1.0, level: int = logging.WARNING) -> None:
        self.log = log
        self.message = message
        self.every = every
        self.level = level
        self.count = 0
        self._logged_at = -every

    def __call__(self, *args, count: int = 1) -> None:
        self.count += count
        now = time.monotonic()
        if now - self._logged_at >= self.every:
            self._logged_at = now
            self.log.log(self.level, self.message, *args, self.count)
