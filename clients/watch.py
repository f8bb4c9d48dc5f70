"""What a client socket's connections did while it waited for an answer, read from its ZeroMQ
monitor: why a server never answered (a logon, `clients.client`; a snapshot,
`clients.market_data`).

ZeroMQ connects, and connects again, by itself, and a message sent meanwhile waits in the
socket's queue; so a client that hears nothing cannot tell a server that does not answer from one
it never reached. A TES or book server that holds its most connections (`servers.gate`) shuts a
new one down before its handshake, and the client's ZeroMQ then tries again every
``RECONNECT_IVL`` (100 ms by default) until a place is free. `ConnectionWatch` follows the
socket's connection events for the length of one wait (`start` to `stop`; a client's first wait
from before it connects) and names what they show (`Link`): nothing accepted a connection; the
server closed each one before its handshake (a full port, or a CURVE server given a key that is
not its own, which the client cannot tell apart); the handshake failed (CURVE at one end only,
after which ZeroMQ does not try again); or nothing at all, which is a connection made and a
server that did not answer.

Invariants: the monitor exists only between `start` and `stop`, so a client holds its one socket
the rest of the time (a gateway holds a client per session, each logged on once); its events are
read only by the thread that uses the socket, and without waiting; the tally covers the events
since `start`. libzmq drops a monitor's events beyond its queue's high-water mark (1,000), which a
wait of a few seconds does not reach (about three events a try, ten tries a second); a client
that waits much longer before its first logon is told what its first connections met.
"""

import enum
import itertools
from dataclasses import dataclass

import zmq
from zmq.utils.monitor import recv_monitor_message

EVENTS = (zmq.EVENT_CONNECTED | zmq.EVENT_CONNECT_RETRIED | zmq.EVENT_DISCONNECTED | zmq.EVENT_HANDSHAKE_SUCCEEDED
          | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
          | zmq.EVENT_HANDSHAKE_FAILED_AUTH)
"""The events followed."""

_monitors = itertools.count(1)
"""Numbers each monitor's inproc address: libzmq unbinds a stopped monitor's in the background,
so a socket's next monitor at the same address (pyzmq's default, from the socket's descriptor)
could find it still bound."""


class Link(enum.Enum):
    """What the connection attempts of a wait showed, when they showed something."""

    UNREACHABLE = "nothing accepted a connection there"
    CLOSED = "closed before the handshake"
    REFUSED = "the handshake failed"


@dataclass
class Tally:
    """The events of one wait, counted (``retried``: the tries since the last connection made);
    ``up``: a connection's handshake succeeded and it has not been lost since; ``curve``: the
    socket uses CURVE, whose server closes a connection made with a key that is not its own as it
    closes one it has no place for."""

    curve: bool = False
    retried: int = 0
    closed: int = 0
    failed: int = 0
    up: bool = False

    def link(self) -> Link | None:
        """What the events show, or None: a connection made (or nothing seen, as when it was made
        before the wait began)."""
        if self.up:
            return None
        if self.failed:
            return Link.REFUSED
        if self.closed:
            return Link.CLOSED
        if self.retried:
            return Link.UNREACHABLE
        return None

    def why(self, link: Link) -> str:
        """``link`` in a sentence, with the counts behind it."""
        if link is Link.REFUSED:
            return (f"the handshake failed {_times(self.failed)}: the two ends do not use the same security "
                    f"(CURVE on one, not on the other)")
        if link is Link.UNREACHABLE:
            return f"nothing accepted a connection there (tried {_times(self.retried)})"
        causes = "it holds its most connections (max_connections)"
        if self.curve:
            causes += ", or the server key the client was given is not its own"
        return f"it closed {_connections(self.closed)} before the handshake: {causes}; the client goes on trying"

    def add(self, event: int) -> None:
        if event == zmq.EVENT_CONNECTED:
            self.retried = 0
        elif event == zmq.EVENT_CONNECT_RETRIED:
            self.retried += 1
        elif event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
            self.up = True
        elif event == zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL:
            self.closed += 1
        elif event in (zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL, zmq.EVENT_HANDSHAKE_FAILED_AUTH):
            self.failed += 1
        elif event == zmq.EVENT_DISCONNECTED:
            self.up = False


def _times(count: int) -> str:
    return "once" if count == 1 else f"{count} times"


def _connections(count: int) -> str:
    return "the one connection made" if count == 1 else f"each of the {count} connections made"


class ConnectionWatch:
    """The connection events of ``socket`` (with CURVE if ``curve``) during one wait: `start`, then
    `stop`, which returns them counted (`Tally`)."""

    def __init__(self, socket: zmq.Socket, curve: bool) -> None:
        self.socket = socket
        self.curve = curve
        self.monitor: zmq.Socket | None = None

    def start(self) -> None:
        """Follow the socket's events from now on; if they are followed already, go on (their
        events are kept), so a client can start before it connects and its first wait see the
        first connection's events."""
        if self.monitor is None:
            self.monitor = self.socket.get_monitor_socket(EVENTS, f"inproc://clients.watch.{next(_monitors)}")

    def stop(self) -> Tally:
        """The events since `start` (none if not started), and the monitor closed."""
        tally = Tally(self.curve)
        monitor, self.monitor = self.monitor, None
        if monitor is None:
            return tally
        try:
            while True:
                try:
                    tally.add(recv_monitor_message(monitor, zmq.NOBLOCK)["event"])
                except zmq.Again:
                    break
        finally:
            if not self.socket.closed:
                self.socket.disable_monitor()
            monitor.close(linger=0)
        return tally
