"""Free loopback ports for the processes that tests and benchmarks start."""

import os
import random
import socket
from pathlib import Path

PROBES = 10_000
EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
LOWEST = 1024
"""No port below this is handed out (the ones a user needs privileges to bind)."""
MIN_PORTS = 4096
"""Ports are taken below the ephemeral range only where it leaves at least this many above LOWEST."""
_HANDED_OUT: set[int] = set()


def _stripe() -> tuple[int, int]:
    """(this process's residue, the modulus) of the ports it may hand out: under pytest-xdist each
    worker (and each process a worker starts) takes the ports ``p`` with ``p // 2`` of its own
    residue modulo the number of workers, so that two workers never hand out the same port;
    otherwise (0, 1). Halved, since Linux gives ``bind`` odd ports only while it has any."""
    workers = max(1, int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
    return (int(worker) if worker.isdigit() else 0) % workers, workers


def below_ephemeral() -> range | None:
    """The ports below the kernel's ephemeral range (``ip_local_port_range``), from LOWEST; None
    where the range is unknown (not Linux) or leaves fewer than MIN_PORTS below it.

    The kernel gives a socket that connects without binding a local port of the ephemeral range,
    so it never takes one of these: a port handed out from them stays free until the process it
    was chosen for binds it, whatever connections the machine makes meanwhile."""
    try:
        low = int(EPHEMERAL_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return range(LOWEST, low) if low - LOWEST >= MIN_PORTS else None


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _candidates(wanted):
    """Ports for which ``wanted(port)`` holds and that nothing is bound to now: below the ephemeral
    range from a random start, else whatever ``bind`` offers."""
    ports = below_ephemeral()
    if ports is None:
        for _ in range(PROBES):
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
            if wanted(port):
                yield port
        return
    start = random.randrange(len(ports))
    for step in range(min(PROBES, len(ports))):
        port = ports[(start + step) % len(ports)]
        if wanted(port) and _bindable(port):
            yield port


def free_port() -> int:
    """A loopback port nothing is bound to now, never one this process handed out before (two
    endpoints of one configuration must not get the same one), of this process's stripe
    (`_stripe`), and below the ephemeral range where the kernel says what it is
    (`below_ephemeral`): no outgoing connection takes it before its server binds it."""
    residue, modulus = _stripe()
    for port in _candidates(lambda port: port // 2 % modulus == residue and port not in _HANDED_OUT):
        _HANDED_OUT.add(port)
        return port
    raise RuntimeError(f"no free loopback port of stripe {residue} of {modulus} in {PROBES} probes")
