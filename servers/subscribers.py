"""Who follows a book server's market data, and sending it to them (`servers.obs`).

The market data port is a ROUTER. A subscriber connects a DEALER and sends `Subscribe` for each
symbol it wants; it receives ``[topic, frame]``: each symbol's market data under ``SYMBOL.``, the
answers to its requests under `CONTROL_TOPIC` (`servers.protocol`).

Whatever peers send, what they can make the book server hold is bounded:

- Only the book server's own symbols can be subscribed, so one connection follows at most that many.
- At most ``capacity`` connections follow any. A `Subscribe` from a connection beyond them is
  refused TOO_MANY_SUBSCRIBERS, once the connections that have gone since they subscribed are
  found (a `Heartbeat` to each, at most once every PROBE_INTERVAL_S) and forgotten. The registry
  holds at most ``capacity`` times the symbols entries.
- What is queued for one connection is bounded by the socket's send high-water mark. A send that
  would wait for a connection that does not read fails at once (the socket is ROUTER_MANDATORY)
  and is counted in ``dropped``: that subscriber sees a gap in the symbol's sequence and asks for a
  snapshot.

A connection that has gone is forgotten at the first send to it that finds it gone (EHOSTUNREACH).
Libzmq's own PUB and XPUB sockets keep every distinct topic a subscriber sends, with no limit, which
is why the port is not one of them.
"""

import time

import msgspec
import zmq

from engine.types import RejectReason
from native.framing import join_frames
from native.sockets import send_each
from servers.protocol import (
    CONTROL_TOPIC,
    MAX_BATCH,
    MAX_FRAME_BYTES,
    Heartbeat,
    Subscribed,
    SubscriptionRejected,
    Unsubscribe,
    Unsubscribed,
    symbol_topic,
)

PROBE_INTERVAL_S = 1.0
"""A full registry looks for connections that have gone at most this often: a peer that keeps
asking cannot make every one of its requests cost a send to every subscriber."""
UNKNOWN_SYMBOL = RejectReason.UNKNOWN_SYMBOL
TOO_MANY_SUBSCRIBERS = RejectReason.TOO_MANY_SUBSCRIBERS


class Subscribers:
    """The connections following each symbol of one book server, and the sends to them on
    ``socket`` (a ROUTER with ROUTER_MANDATORY set).

    Invariants: ``followers[symbol]`` holds a connection's identity exactly when
    ``following[identity]`` holds the symbol; ``following`` holds only connections that follow at
    least one symbol, and at most ``capacity`` of them.
    """

    def __init__(self, socket: zmq.Socket, symbols: list[str], capacity: int, clock=time.monotonic) -> None:
        self.socket = socket
        self.capacity = capacity
        self.clock = clock
        self.topics = {symbol: symbol_topic(symbol) for symbol in symbols}
        self.followers: dict[str, dict[bytes, None]] = {symbol: {} for symbol in symbols}
        """symbol -> the identities of the connections following it, in the order they subscribed."""
        self.following: dict[bytes, set[str]] = {}
        self.dropped = 0
        """Frames not sent because the connection's queue was full."""
        self.refused = 0
        """Subscriptions refused TOO_MANY_SUBSCRIBERS."""
        self.sent = False
        """Something was sent on ``socket`` (set here, cleared by its reader): a send reads the
        socket's commands too, so input that came meanwhile may no longer signal its descriptor."""
        self.probed_at = -PROBE_INTERVAL_S
        self.encode = msgspec.msgpack.Encoder().encode

    def serve(self, identity: bytes, requests: list) -> None:
        """Apply one connection's `Subscribe` and `Unsubscribe` requests in order and answer each, in
        one control frame."""
        replies = []
        for request in requests:
            symbol = request.symbol
            if type(request) is Unsubscribe:
                self._unfollow(identity, symbol)
                replies.append(Unsubscribed(symbol))
            elif symbol not in self.followers:
                replies.append(SubscriptionRejected(symbol, UNKNOWN_SYMBOL, f"{UNKNOWN_SYMBOL.text}: {symbol!r}"))
            elif identity not in self.following and not self._room():
                self.refused += 1
                replies.append(SubscriptionRejected(symbol, TOO_MANY_SUBSCRIBERS, TOO_MANY_SUBSCRIBERS.text))
            else:
                self.following.setdefault(identity, set()).add(symbol)
                self.followers[symbol][identity] = None
                replies.append(Subscribed(symbol))
        self._send((identity,), CONTROL_TOPIC, self.encode(replies))

    def refuse(self, identity: bytes, reason: RejectReason, text: str) -> None:
        """Answer a frame that was not requests (malformed): a `SubscriptionRejected` of no symbol."""
        self._send((identity,), CONTROL_TOPIC, self.encode([SubscriptionRejected("", reason, text)]))

    def publish(self, market_data: dict[str, list[bytes]]) -> None:
        """Send each symbol's messages (encoded, in sequence order) to its followers, joined into
        frames within the protocol's limits, each frame copied once whatever the number of followers
        (`native.sockets.send_each`); a symbol nobody follows costs nothing."""
        for symbol, messages in market_data.items():
            followers = self.followers[symbol]
            if followers:
                topic = self.topics[symbol]
                for frame in join_frames(messages, None, MAX_BATCH, MAX_FRAME_BYTES):
                    self._send(followers, topic, frame)

    def __len__(self) -> int:
        return len(self.following)

    def _room(self) -> bool:
        """Whether one more connection may follow: if the registry is full, the connections that
        have gone are looked for first (no more often than PROBE_INTERVAL_S)."""
        if len(self.following) < self.capacity:
            return True
        now = self.clock()
        if now - self.probed_at >= PROBE_INTERVAL_S:
            self.probed_at = now
            self._send(list(self.following), CONTROL_TOPIC, self.encode([Heartbeat()]))
        return len(self.following) < self.capacity

    def _send(self, identities, topic: bytes, frame: bytes) -> None:
        """``[topic, frame]`` to each of ``identities``, now or never: a full queue counts in
        ``dropped``, a connection that has gone is forgotten (after the sends: ``identities`` may be
        one of the registry's own)."""
        self.sent = True
        full, gone = send_each(self.socket, identities, topic, frame)
        self.dropped += full
        for identity in gone:
            self._forget(identity)

    def _unfollow(self, identity: bytes, symbol: str) -> None:
        symbols = self.following.get(identity)
        if symbols is None or symbol not in symbols:
            return
        symbols.discard(symbol)
        del self.followers[symbol][identity]
        if not symbols:
            del self.following[identity]

    def _forget(self, identity: bytes) -> None:
        for symbol in self.following.pop(identity, ()):
            del self.followers[symbol][identity]
