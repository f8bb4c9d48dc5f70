"""The transport floor: the load generator's schedule through ZeroMQ alone, no exchange behind it.

Three processes in the exchange's shape, each a fresh interpreter: a client running the
load generator's own loop (`clients.loadgen.Schedule`), a *relay* standing in for the TES
(ROUTER for the client, DEALER to the next hop) and an *echo* standing in for the OBS
(a ROUTER answering every frame with itself). Relay and echo are libzmq's own proxy
(``zmq.proxy``), a loop in C, so nothing here validates, matches, journals or even decodes:
an order is a frame of int64 indices going client -> relay -> echo -> relay -> client, the
same four hops over TCP loopback as client -> TES -> OBS -> TES -> client.

The relay -> echo hop is encrypted with CURVE, as the TES -> OBS hop is (`servers.security`),
with a key pair made for the run and handed to both processes in their environment.

With ``journal`` (a directory and an fsync policy), the echo is a *journaling echo* instead: a loop
that reads every frame waiting, appends them as one group to a real journal
(`servers.journal.Journal`, the OBS's own, with the run's fsync policy) and only then answers them,
as the OBS's group commit does. That floor is what an exchange that makes each order durable before
it answers cannot go below on this machine: ZeroMQ's hops plus one group commit in each order's path
(the disk's share of the tail, which ZeroMQ alone leaves out).

With ``standby`` (a directory), the echo is a *replicating echo* instead: the same loop with no fsync
(its journal reaches the page cache, which outlives the process, not the machine), which sends
each turn's group to a standby (a third process, an echo of its own, over CURVE) and answers the
frames only once the standby has answered it. That floor prices acknowledging from a second copy
in place of the disk: two more hops in each order's path.

What it measures is what ZeroMQ and the machine cost at a given rate (every hop hands each
message between an application thread and an I/O thread, and waking a thread is what costs
on a small VM); `benchmarks.e2e` runs it beside the exchange at every rate, so the exchange's
latency can be read against the floor measured in the same benchmark. It also reads the CPU
time the relay and the echo spend per order (all their threads: ZeroMQ's I/O threads, CURVE,
the kernel's TCP and wake-ups): what the same frames cost a process that does nothing else, the
floor under each server's CPU per order.
"""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import zmq

from benchmarks import children_cpu_seconds, cpu_us_per_order, read_servers, servers_per_order
from clients.loadgen import Schedule
from config.settings import JournalConfig
from native.sockets import receive
from servers import collector, service
from servers.journal import Journal, JournalFailed
from servers.processes import REPO, free_port, json_result

READY_TIMEOUT_S = 20.0
SERVER_PUBLIC, SERVER_SECRET = "FLOOR_CURVE_PUBLIC", "FLOOR_CURVE_SECRET"
"""The environment variables carrying the echo's key pair (the relay gets only the public key)."""
STANDBY_PUBLIC = "FLOOR_CURVE_STANDBY_PUBLIC"
"""The environment variable carrying the standby's public key, to a replicating echo."""
CPUS = "FLOOR_CPUS"
"""The environment variable naming the CPUs a stand-in's threads run on (comma-separated; unset: any)."""


class EchoSchedule(Schedule):
    """The load generator's schedule with bare frames: a batch is its indices as int64."""

    def send(self, batch: range) -> None:
        self.socket.send(np.arange(batch.start, batch.stop, dtype=np.int64).tobytes(), copy=False)

    def read_ready(self) -> None:
        socket = self.socket
        now = None
        while (parts := receive(socket)) is not None:
            now = now or time.perf_counter()
            for part in parts:
                indices = np.frombuffer(part, dtype=np.int64)
                self.answered_at[indices] = now
                self.outstanding -= len(indices)


def _echo_socket(endpoint: str) -> zmq.Socket:
    """The echo's ROUTER bound to ``endpoint``, a CURVE server with the key pair in the environment."""
    socket = zmq.Context().socket(zmq.ROUTER)
    socket.curve_secretkey = os.environ[SERVER_SECRET].encode()
    socket.curve_publickey = os.environ[SERVER_PUBLIC].encode()
    socket.curve_server = True
    socket.bind(endpoint)
    return socket


def echo(endpoint: str) -> None:
    """Answer every frame with itself, forever (a ROUTER proxied to itself routes each reply
    back to its sender)."""
    socket = _echo_socket(endpoint)
    zmq.proxy(socket, socket)


def journal_echo(endpoint: str, directory: str, fsync: str) -> None:
    """Answer every frame with itself once it is in a journal in ``directory`` with fsync policy
    ``fsync``, forever: each turn waits for a frame, reads every frame waiting, appends their
    payloads as one group, then answers each (the OBS's loop with nothing but its journal)."""
    _journaling(endpoint, Journal(Path(directory), JournalConfig(fsync=fsync), 0), "journaling echo")


def replicating_echo(endpoint: str, standby: str, directory: str) -> None:
    """Answer every frame with itself once a standby holds it, forever: each turn as the journaling
    echo's with no fsync, then the group sent to the echo at ``standby`` (over CURVE, its public key
    in `STANDBY_PUBLIC`) and its answer awaited before the frames are answered."""
    copy = zmq.Context().socket(zmq.DEALER)
    copy.curve_publickey, copy.curve_secretkey = zmq.curve_keypair()
    copy.curve_serverkey = os.environ[STANDBY_PUBLIC].encode()
    copy.connect(standby)

    def held(frames: list[list[bytes]]) -> None:
        copy.send_multipart([frame[-1] for frame in frames])
        copy.recv_multipart()

    _journaling(endpoint, Journal(Path(directory), JournalConfig(fsync="never"), 0), "replicating echo", held)


def _journaling(endpoint: str, journal: Journal, name: str, held=None) -> None:
    """The journaling loop of `journal_echo` and `replicating_echo` (``name``), forever: each turn
    waits for a frame, reads every frame waiting, appends their payloads to ``journal`` as one group,
    hands the frames to ``held`` (if any), which returns once they are held elsewhere too, then
    answers each. Exits with a message if the journal cannot take a group."""
    socket = _echo_socket(endpoint)
    sequence = 0
    while True:
        socket.poll()
        frames = []
        while (parts := receive(socket)) is not None:
            frames.append(parts)
        try:
            written = journal.append([(sequence + number, frame[-1]) for number, frame in enumerate(frames, 1)])
        except JournalFailed as exc:
            raise SystemExit(f"{name}: {exc}") from exc
        if not written:
            raise SystemExit(f"{name}: cannot write {journal.path}: {journal.unwritable}")
        sequence += len(frames)
        if held is not None:
            held(frames)
        for frame in frames:
            socket.send_multipart(frame)


def relay(front: str, back: str) -> None:
    """Forward frames from ``front`` (clients) to ``back`` and the answers back, forever."""
    context = zmq.Context()
    clients = context.socket(zmq.ROUTER)
    clients.bind(front)
    server = context.socket(zmq.DEALER)
    server.curve_publickey, server.curve_secretkey = zmq.curve_keypair()
    server.curve_serverkey = os.environ[SERVER_PUBLIC].encode()
    server.connect(back)
    zmq.proxy(clients, server)


def client(endpoint: str, rate: float, duration: float, drain_s: float) -> dict:
    """One run of the schedule against ``endpoint`` (the load generator's result keys).

    A first frame is echoed before the clock starts, so connecting is not measured; the
    garbage collector is settled as in the load generator."""
    socket = zmq.Context().socket(zmq.DEALER)
    socket.connect(endpoint)
    socket.send(np.int64(-1).tobytes())
    if not socket.poll(READY_TIMEOUT_S * 1000):
        raise RuntimeError(f"no echo from {endpoint} within {READY_TIMEOUT_S:g} s")
    socket.recv()
    schedule = EchoSchedule(socket, rate, duration, batch_max=1000)
    collector.settle()
    return schedule.run(drain_s)


class Floor:
    """A running relay and echo, and a replicating echo's standby (each its own ``python -m
    benchmarks.floor`` process), on free loopback ports; `measure` runs one client process against
    them. A context manager: leaving the block stops them all."""

    def __init__(self, pinned: dict[str, list[int]] | None = None, journal: tuple[Path, str] | None = None,
                 standby: Path | None = None) -> None:
        """``pinned``: the CPUs of the echo's and the relay's threads, by role (`servers.service.pin`;
        a standby's, the echo's); ``journal``: a directory (made if missing) and an fsync policy for a
        journaling echo; or ``standby``: a directory for a replicating echo's journal, whose standby
        (role ``standby``) is started too."""
        if journal is not None and standby is not None:
            raise ValueError("an echo journals with fsyncs or is replicated, not both")
        pinned = pinned or {}
        self.endpoint = f"tcp://127.0.0.1:{free_port()}"
        back = f"tcp://127.0.0.1:{free_port()}"
        public, secret = zmq.curve_keypair()
        keys = {SERVER_PUBLIC: public.decode(), SERVER_SECRET: secret.decode()}
        self._servers = {}
        if standby is not None:
            standby_public, standby_secret = zmq.curve_keypair()
            standby_endpoint = f"tcp://127.0.0.1:{free_port()}"
            self._servers["standby"] = _start(
                {SERVER_PUBLIC: standby_public.decode(), SERVER_SECRET: standby_secret.decode()}, pinned.get("echo"),
                "echo", standby_endpoint)
            keys[STANDBY_PUBLIC] = standby_public.decode()
            echo_role = ["replicating-echo", back, standby_endpoint, str(standby)]
        elif journal is not None:
            echo_role = ["journal-echo", back, str(journal[0]), journal[1]]
        else:
            echo_role = ["echo", back]
        self._servers["echo"] = _start(keys, pinned.get("echo"), *echo_role)
        self._servers["relay"] = _start({SERVER_PUBLIC: public.decode()}, pinned.get("relay"), "relay", self.endpoint,
                                        back)

    def measure(self, rate: float, duration: float, drain_s: float = 5.0) -> dict:
        """The load generator's result keys (`clients.loadgen.RESULT_KEYS`) for one run, and
        ``cpu_us_per_order``: the CPU time the echo (the OBS's stand-in), the relay (the TES's), the
        standby if there is one, and the client spent during it, all threads, per order sent (the
        servers' None without Linux's /proc); ``cpu_us_by_thread``: the stand-ins' by thread
        (`benchmarks.THREADS`); ``switches_per_order``: their context switches
        (`benchmarks.switches_per_order`); ``loop_cpu_us_per_wait``: their loop threads' CPU per
        wait (`benchmarks.loop_cpu_us_per_wait`)."""
        pids = {role: process.pid for role, process in self._servers.items()}
        before = read_servers(pids)
        client_before = children_cpu_seconds()
        result = json_result(
            [*COMMAND, "client", self.endpoint, str(rate), str(duration), str(drain_s)],
            f"transport floor at {rate}/s", timeout=READY_TIMEOUT_S + duration + drain_s + 60,
        )
        after = read_servers(pids)
        sent = result["sent"]
        result.update(servers_per_order(before, after, sent))
        result["cpu_us_per_order"]["client"] = cpu_us_per_order(client_before, children_cpu_seconds(), sent)
        return result

    def close(self) -> None:
        for process in self._servers.values():
            process.terminate()
            process.wait(10)

    def __enter__(self) -> "Floor":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


COMMAND = (sys.executable, "-m", "benchmarks.floor")
USAGE = ("usage: python -m benchmarks.floor echo BIND | journal-echo BIND DIRECTORY FSYNC "
         "| replicating-echo BIND STANDBY DIRECTORY | relay BIND CONNECT | client CONNECT RATE DURATION DRAIN")


def _start(keys: dict[str, str], cpus: list[int] | None, role: str, *endpoints: str) -> subprocess.Popen:
    pinned = {CPUS: ",".join(map(str, cpus))} if cpus else {}
    return subprocess.Popen([*COMMAND, role, *endpoints], cwd=REPO, env=dict(os.environ, **keys, **pinned))


def main(argv: list[str]) -> None:
    """Run one role of `USAGE` (a client prints its result as one JSON line), its threads on the
    CPUs `CPUS` names, if set, before any starts."""
    if os.environ.get(CPUS):
        service.pin([int(cpu) for cpu in os.environ[CPUS].split(",")])
    role, *args = argv or [""]
    if role == "echo" and len(args) == 1:
        echo(*args)
    elif role == "journal-echo" and len(args) == 3:
        journal_echo(*args)
    elif role == "replicating-echo" and len(args) == 3:
        replicating_echo(*args)
    elif role == "relay" and len(args) == 2:
        relay(*args)
    elif role == "client" and len(args) == 4:
        endpoint, rate, duration, drain_s = args
        print(json.dumps(client(endpoint, float(rate), float(duration), float(drain_s))))
    else:
        raise SystemExit(USAGE)


if __name__ == "__main__":
    main(sys.argv[1:])
