"""How many connections each public port of a server holds at most (`Gate`).

Every connection a server accepts holds one of its descriptors and ZeroMQ's buffers for it, and
a ROUTER cannot close one of its connections. A port that anyone on the machine may connect to (a
book server's market data and snapshot ports, the TES's client port) is therefore watched by a
`Gate`, a thread that follows the port's socket monitor: when a connection is accepted while the
port already holds ``capacity`` others, it shuts that connection down (``shutdown(2)`` on a
duplicate of its descriptor, so that ZeroMQ, which owns the descriptor, sees the connection end
and closes it itself). The client sees its connection end before its handshake is done and
ZeroMQ connects it again (``ZMQ_RECONNECT_IVL``, 100 ms by default) until a place is free;
nothing it sent is lost, since nothing leaves a ZeroMQ socket before the handshake.

The gate is also its context's ZAP handler, and each gated socket has a ZAP domain, so every
handshake on it waits for the gate's answer: before it answers (always "200 OK": it checks no
credentials) it reads every event queued, and the accept of a connection comes before its
handshake, so a connection beyond the capacity is shut down before it can finish its handshake,
and nothing it sends reaches the server. A connection that never finishes its handshake is
closed `servers.security.HANDSHAKE_MS` after its accept (or at once if it is beyond the
capacity), so the descriptors a port holds are bounded by its capacity and by how many
connections can be opened in that time.

A connection whose peer has gone without closing it (its machine lost, or its process stopped) would
otherwise hold its place for good: TCP says nothing of a peer that sends nothing. Each gated socket
therefore pings its peers every ``heartbeat_ms`` (`servers.security.heartbeat`) and closes a
connection that answers none of `servers.security.PEER_MISSES` pings in a row, which frees its place.

The gate counts a port's connections from the monitor's events: accepted ones less disconnected
ones (a connection shut down, closed for its handshake or gone counts as disconnected). An event
names the descriptor; before shutting a connection down, the gate checks that the descriptor is
still a connection to that port (a connection that ended at once may have left its number to
another), so it can only ever end a connection to the port it guards.
"""

import errno
import logging
import os
import socket as sockets
import struct
import threading

import zmq

from servers.security import heartbeat
from servers.service import Occurrences

log = logging.getLogger(__name__)

EVENTS = zmq.EVENT_ACCEPTED | zmq.EVENT_DISCONNECTED
ZAP_ENDPOINT = "inproc://zeromq.zap.01"
"""Where a context's ZAP handler answers (ZeroMQ RFC 27/ZAP)."""
DOMAIN = b"gate"
"""The gated sockets' ZAP domain: with one, ZeroMQ asks the ZAP handler even for a connection
without credentials (its NULL mechanism), so every handshake waits for the gate."""


class Gate:
    """Holds each socket of ``context`` added with `add` to at most its ``capacity`` connections;
    ``refused`` counts the connections it shut down, by port name. It is ``context``'s ZAP handler,
    so no other may be.

    Invariants: ``open[port]`` is the connections the port's monitor said were accepted less those
    it said ended, as of the last events read; sockets are added before `start` (and before they
    bind), and only the gate's thread reads the monitors and the ZAP socket after it.
    """

    def __init__(self, context: zmq.Context, name: str) -> None:
        self.context = context
        self.name = name
        self.capacity: dict[str, int] = {}
        self.open: dict[str, int] = {}
        self.refused: dict[str, int] = {}
        self._monitors: list[tuple[str, zmq.Socket]] = []
        self._said: dict[str, Occurrences] = {}
        self._thread: threading.Thread | None = None
        self._zap: zmq.Socket | None = None
        self._stopper: zmq.Socket | None = None
        """The caller's end of the pair that tells the thread to stop (it waits for nothing else)."""

    def add(self, socket: zmq.Socket, port: str, capacity: int, heartbeat_ms: int) -> None:
        """Hold ``socket``, a server socket not yet bound, to ``capacity`` connections, as ``port``,
        closing a connection whose peer answers none of its heartbeats ``heartbeat_ms`` apart
        (`servers.security.heartbeat`)."""
        if self._thread is not None or port in self.capacity:
            raise ValueError(f"gate of {self.name}: {port!r} added after the start, or twice")
        socket.zap_domain = DOMAIN
        heartbeat(socket, heartbeat_ms)
        endpoint = f"inproc://gate-{id(self)}-{len(self._monitors)}"
        socket.monitor(endpoint, EVENTS)
        monitor = self.context.socket(zmq.PAIR)
        monitor.setsockopt(zmq.LINGER, 0)
        monitor.setsockopt(zmq.RCVHWM, 0)  # an event dropped would leave the count wrong for good
        monitor.connect(endpoint)
        self.capacity[port] = capacity
        self.open[port] = 0
        self.refused[port] = 0
        self._said[port] = Occurrences(log, f"refused a connection to the {port} port of {self.name}: it holds "
                                            f"{capacity}, its most (%d refused so far)")
        self._monitors.append((port, monitor))

    def start(self) -> None:
        """Follow the monitors of the sockets added so far and answer the context's ZAP requests, on a
        thread of its own."""
        self._zap = self.context.socket(zmq.REP)
        self._zap.setsockopt(zmq.LINGER, 0)
        self._zap.bind(ZAP_ENDPOINT)
        endpoint = f"inproc://gate-{id(self)}-stop"
        stop = self.context.socket(zmq.PAIR)
        stop.setsockopt(zmq.LINGER, 0)
        stop.bind(endpoint)
        self._stopper = self.context.socket(zmq.PAIR)
        self._stopper.setsockopt(zmq.LINGER, 0)
        self._stopper.connect(endpoint)
        self._thread = threading.Thread(target=self._serve, args=(stop,), name=f"gate {self.name}", daemon=True)
        self._thread.start()

    def figures(self) -> dict[str, dict[str, int]]:
        """Per port: the connections it holds (as of the last events the gate read) and those it
        refused so far, for the status file."""
        return {port: {"connections": self.open[port], "refused": self.refused[port]} for port in self.capacity}

    def stop(self) -> None:
        """Stop following and close the monitors (before the context is terminated)."""
        if self._thread is not None:
            self._stopper.send(b"")
            self._thread.join(5)
            self._thread = None
        for _, monitor in self._monitors:
            monitor.close(linger=0)
        for socket in (self._zap, self._stopper):
            if socket is not None:
                socket.close(linger=0)

    def _serve(self, stop: zmq.Socket) -> None:
        """Wait for events, ZAP requests or the word to stop, and nothing else (no timeout: an idle
        gate costs no CPU)."""
        poller = zmq.Poller()
        poller.register(stop, zmq.POLLIN)
        poller.register(self._zap, zmq.POLLIN)
        for _, monitor in self._monitors:
            poller.register(monitor, zmq.POLLIN)
        while stop not in dict(poller.poll()):
            for port, monitor in self._monitors:
                self._read_events(port, monitor)
            while True:
                try:
                    request = self._zap.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    break
                for port, monitor in self._monitors:
                    self._read_events(port, monitor)
                # RFC 27: version, request id, domain, address, identity, mechanism, credentials
                self._zap.send_multipart([request[0], request[1] if len(request) > 1 else b"", b"200", b"OK", b"", b""])
        stop.close(linger=0)

    def _read_events(self, port: str, monitor: zmq.Socket) -> None:
        while True:
            try:
                head, endpoint = monitor.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            event, descriptor = struct.unpack_from("=HI", head)
            if event != zmq.EVENT_ACCEPTED:
                self.open[port] -= 1
                continue
            self.open[port] += 1
            if self.open[port] > self.capacity[port] and _shut_down(descriptor, endpoint.decode(errors="replace")):
                self.refused[port] += 1
                self._said[port]()


def _shut_down(descriptor: int, endpoint: str) -> bool:
    """Shut down the connection on ``descriptor`` if it is still one accepted on ``endpoint`` (the
    listener's, as the monitor names it: ``tcp://host:port`` or ``ipc://path``); whether it was.
    It works on a duplicate of the descriptor, which stays the same connection whatever becomes of
    the number; with no descriptor left to duplicate into (the very case a flood makes), on the
    descriptor itself, never closing it."""
    try:
        copy = os.dup(descriptor)
    except OSError as exc:
        if exc.errno != errno.EMFILE:
            return False  # closed already
        try:
            borrowed = sockets.socket(fileno=descriptor)
        except OSError:
            return False  # not a socket any more
        try:
            return _shut_if_accepted_on(borrowed, endpoint)
        finally:
            borrowed.detach()
    try:
        duplicate = sockets.socket(fileno=copy)
    except OSError:
        os.close(copy)
        return False  # not a socket any more
    with duplicate:
        return _shut_if_accepted_on(duplicate, endpoint)


def _shut_if_accepted_on(connection: sockets.socket, endpoint: str) -> bool:
    try:
        local = connection.getsockname()
    except OSError:
        return False
    if endpoint.startswith("ipc://"):
        if local != endpoint[len("ipc://"):]:
            return False
    elif not isinstance(local, tuple) or endpoint.rsplit(":", 1)[-1] != str(local[1]):
        return False
    try:
        connection.shutdown(sockets.SHUT_RDWR)
    except OSError:
        return False  # it ended meanwhile
    return True
