"""Free loopback ports for the processes that tests and benchmarks start."""

import os
import socket

PROBES = 10_000
_HANDED_OUT: set[int] = set()


def _stripe() -> tuple[int, int]:
    """(this process's residue, the modulus) of the ports it may hand out: under pytest-xdist each
    worker (and each process a worker starts) takes the ports ``p`` with ``p // 2`` of its own
    residue modulo the number of workers, so that two workers never hand out the same port;
    otherwise (0, 1). Halved, since Linux gives ``bind`` odd ports only while it has any."""
    workers = max(1, int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
    return (int(worker) if worker.isdigit() else 0) % workers, workers


def free_port() -> int:
    """A loopback port nothing listens on now, never one this process handed out before (the
    kernel may offer a port again once its probe socket is closed: two endpoints of one
    configuration must not get the same one), and of this process's stripe (`_stripe`)."""
    residue, modulus = _stripe()
    for _ in range(PROBES):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port // 2 % modulus == residue and port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port
    raise RuntimeError(f"no free loopback port of stripe {residue} of {modulus} in {PROBES} probes")
