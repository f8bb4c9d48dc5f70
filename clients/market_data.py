"""The client library's market-data view of one book.

`MarketDataClient` keeps a local copy of one symbol's book from an OBS's market
data (a DEALER that subscribes to the symbol and receives ``[topic, payload]``, topic
``SYMBOL.``: `servers.subscribers`) and snapshot service, following the clone pattern
(zguide ``clonesrv5``); the socket-free `BookSync` holds the logic (see its docstring
for the guarantees). A `MarketDataClient` is not thread-safe.
"""

import itertools
import time
from collections import deque

import msgspec
import zmq
from sortedcontainers import SortedDict
from zmq.utils.monitor import recv_monitor_message

from clients.client import ClientError, RequestRejected, RequestTimeout
from clients.watch import EVENTS, ConnectionWatch, Tally
from engine.types import Phase, RejectReason, Side
from servers.protocol import (
    CONTROL_TOPIC,
    AuctionSummary,
    Codec,
    DepthSnapshot,
    DepthUpdate,
    Indicative,
    MarketData,
    PhaseReason,
    PhaseUpdate,
    QueryRejected,
    SnapshotReply,
    SnapshotRequest,
    Subscribe,
    Subscribed,
    SubscriptionRejected,
    SubscriptionReply,
    SubscriptionRequest,
    Trade,
)
from servers.security import heartbeat

MAX_BUFFERED = 100_000
"""Updates held at most while a book waits for its snapshot (the newest are kept): a snapshot port
that does not answer cannot make a client hold a busy symbol's every update."""
RECEIVE_FRAMES = 10_000
"""Frames of market data a client's ZeroMQ queues for it at most until it polls (the book server's
turns: seconds of a busy symbol). Beyond them the client's ZeroMQ stops reading, the book server
drops what it cannot queue for it, and the client finds the gap when it polls and resyncs: a
client that stops polling holds a bounded amount, not the whole feed."""


class BookSync:
    """One symbol's book rebuilt from a snapshot plus sequenced deltas (no sockets).

    Every market-data message of a symbol carries the next number of one per-symbol
    sequence; a `DepthSnapshot` is the whole book as of its ``sequence``.

    Guarantees
    ----------
    - Until a snapshot is applied, updates are buffered, never applied (``synced``
      is False); the newest MAX_BUFFERED of them are kept (a snapshot older than the oldest kept is
      a jump, as below). After it, buffered and new updates with ``sequence <=`` the
      book's are dropped as already contained in it.
    - Updates are applied only in unbroken sequence order. A jump (a lost message,
      or a snapshot older than the first buffered update) sets ``needs_snapshot``
      and ``synced`` False; updates are buffered again and the book keeps its last
      consistent state until the next snapshot. ``resyncs`` counts such recoveries.
    - A lost connection (`lost`) may have lost updates: the book waits for a snapshot as after a
      jump, and ``lost_at`` says when, until the snapshot has rebuilt the book.
    - Quotes and trades advance the sequence too; trades set ``last_trade``.
    - The trading phase follows the same sequence: a snapshot sets ``phase`` and the
      indicative uncross (a snapshot from before phases existed decodes as CONTINUOUS,
      0 and 0) with ``phase_reason`` and ``phase_until`` (those of the last `PhaseUpdate`; None
      and 0 before any);
      a `PhaseUpdate` sets all three, and into CONTINUOUS also clears
      the indicative uncross; an `Indicative` sets ``indicative_price`` and
      ``indicative_volume`` (0 and 0: nothing would trade); an `AuctionSummary` sets
      ``last_auction``, which is only ever learnt from the stream (a snapshot does not carry it).
    """

    def __init__(self, symbol: str) -> None:
        self.symbol = symbol
        self.bids: SortedDict = SortedDict()
        self.asks: SortedDict = SortedDict()
        """price -> (quantity, orders)."""
        self.sequence = 0
        self.synced = False
        self.needs_snapshot = True
        self.resyncs = 0
        self.last_trade: Trade | None = None
        self.last_price: int | None = None
        self.phase = Phase.CONTINUOUS
        self.phase_reason: PhaseReason | None = None
        """Why the book is in ``phase`` (None: no phase command yet, or a snapshot from an OBS before
        snapshots carried it)."""
        self.phase_until = 0
        """A volatility interruption's end (exchange time, ns); 0 otherwise or unknown."""
        self.indicative_price = 0
        self.indicative_volume = 0
        """The price and volume a call (or a halt) would uncross at now; 0 and 0: none."""
        self.last_auction: AuctionSummary | None = None
        self.lost_at: int | None = None
        """When (`time.time_ns`) the connection the updates come on was lost, if no snapshot has
        rebuilt the book since."""
        self._buffer: deque = deque(maxlen=MAX_BUFFERED)

    def on_update(self, message) -> list:
        """Take one market-data message; the messages applied because of it (in order)."""
        if not self.synced:
            self._buffer.append(message)
            return []
        return self._apply_in_order([message])

    def lost(self, at: int) -> None:
        """The connection the updates come on was lost at ``at`` (`time.time_ns`): whatever was
        published until it is made again never arrives, so the book waits for a snapshot (its views
        stay those of the last consistent book)."""
        if self.lost_at is None:
            self.lost_at = at
        if self.synced:
            self._unsync()

    def on_snapshot(self, snapshot: DepthSnapshot) -> list:
        """Rebuild the book from ``snapshot``, then apply the buffered updates it does not contain.

        A snapshot older than the book already held is ignored (a late answer to an
        earlier request). Returns the buffered messages applied.
        """
        if self.synced or snapshot.sequence < self.sequence:
            return []
        self.bids = SortedDict({price: (quantity, orders) for price, quantity, orders in snapshot.bids})
        self.asks = SortedDict({price: (quantity, orders) for price, quantity, orders in snapshot.asks})
        self.sequence = snapshot.sequence
        self.last_price = snapshot.last_price
        self.phase, self.phase_reason, self.phase_until = snapshot.phase, snapshot.phase_reason, snapshot.phase_until
        self.indicative_price, self.indicative_volume = snapshot.indicative_price, snapshot.indicative_volume
        self.synced, self.needs_snapshot, self.lost_at = True, False, None
        buffered, self._buffer = self._buffer, deque(maxlen=MAX_BUFFERED)
        return self._apply_in_order(buffered)

    def _apply_in_order(self, messages: list) -> list:
        applied = []
        for message in messages:
            if not self.synced:
                self._buffer.append(message)
            elif message.sequence <= self.sequence:
                continue
            elif message.sequence != self.sequence + 1:
                self._unsync()
                self._buffer.append(message)
            else:
                self._apply(message)
                applied.append(message)
        return applied

    def _unsync(self) -> None:
        """The book is no longer consistent with the stream: it waits for a snapshot (a recovery more)."""
        self.synced, self.needs_snapshot = False, True
        self.resyncs += 1

    def _apply(self, message) -> None:
        self.sequence = message.sequence
        kind = type(message)
        if kind is DepthUpdate:
            side = self.bids if message.side == Side.BUY else self.asks
            if message.quantity:
                side[message.price] = (message.quantity, message.orders)
            else:
                side.pop(message.price, None)
        elif kind is Trade:
            self.last_trade = message
            self.last_price = message.price
        elif kind is PhaseUpdate:
            self.phase, self.phase_reason, self.phase_until = message.phase, message.reason, message.until
            if message.phase == Phase.CONTINUOUS:
                self.indicative_price = self.indicative_volume = 0
        elif kind is Indicative:
            self.indicative_price, self.indicative_volume = message.price, message.volume
        elif kind is AuctionSummary:
            self.last_auction = message

    # ------------------------------------------------------------ views

    def best_bid(self) -> tuple[int, int] | None:
        """(price, quantity) of the best bid, or None."""
        if not self.bids:
            return None
        price, (quantity, _) = self.bids.peekitem(-1)
        return price, quantity

    def best_ask(self) -> tuple[int, int] | None:
        if not self.asks:
            return None
        price, (quantity, _) = self.asks.peekitem(0)
        return price, quantity

    def mid(self) -> float | None:
        """Midpoint in ticks when both sides are present."""
        bid, ask = self.best_bid(), self.best_ask()
        return None if bid is None or ask is None else (bid[0] + ask[0]) / 2

    def crossed(self) -> bool:
        """Whether the best bid is at or above the best ask: only ever in a call or a halt, where
        orders rest without matching; such a book is not a market anyone can trade against now."""
        bid, ask = self.best_bid(), self.best_ask()
        return bid is not None and ask is not None and bid[0] >= ask[0]

    def depth(self, levels: int = 10) -> tuple[list[tuple[int, int, int]], list[tuple[int, int, int]]]:
        """(bids, asks) as (price, quantity, orders), best first."""
        bids = [(p, q, n) for p, (q, n) in itertools.islice(reversed(self.bids.items()), levels)]
        asks = [(p, q, n) for p, (q, n) in itertools.islice(self.asks.items(), levels)]
        return bids, asks


class MarketDataClient:
    """A live local book of ``symbol`` from an OBS's market data and snapshot endpoints.

    Each time its market data connection is made (the first time, and again after the book
    server restarted or the connection broke) it sends `Subscribe`; once `Subscribed` comes back,
    every update after it is on its way, and only then does it ask for a snapshot on a second
    DEALER, so no update between the snapshot and the subscription is missed; the sequencing
    rules are `BookSync`'s. `poll` reads waiting updates and, whenever the stream broke, asks for
    a new snapshot (again after ``snapshot_retry_s`` if unanswered). A `SubscriptionRejected`
    raises `RequestRejected`; one for TOO_MANY_SUBSCRIBERS (the server is full) is asked again
    ``snapshot_retry_s`` later, by the first `poll` after that, until a place is free. Views
    (`best_bid`, `best_ask`, `depth`, `last_trade`, `phase`, `indicative_price`,
    `last_auction`...) are of the last consistent book.

    A lost market data connection (the book server stopped, or said nothing, not even to ZeroMQ's
    heartbeat, for ``heartbeat_s`` times `servers.security.PEER_MISSES`; a ``heartbeat_s`` of 0 turns the heartbeat
    off, and a silent server is then never seen lost) is seen by the first `poll` after it:
    ``connected`` turns False, ``lost_at`` says when, and the book waits for a snapshot
    (`BookSync.lost`), since what was published meanwhile never arrives. ZeroMQ connects again by
    itself; once it has, the client subscribes again and rebuilds the book from a snapshot, even if
    nothing traded meanwhile.
    """

    def __init__(
        self,
        md_endpoint: str,
        snapshot_endpoint: str,
        symbol: str,
        context: zmq.Context | None = None,
        snapshot_retry_s: float = 2.0,
        heartbeat_s: float = 1.0,
    ) -> None:
        self.symbol = symbol
        self.sync = BookSync(symbol)
        self.snapshot_retry_s = snapshot_retry_s
        self._updates = msgspec.msgpack.Decoder(list[MarketData])
        self._controls = msgspec.msgpack.Decoder(list[SubscriptionReply])
        self._snapshots = msgspec.msgpack.Decoder(list[SnapshotReply])
        self._subscribe = Codec(SubscriptionRequest).encode([Subscribe(symbol)])
        self._request = Codec(SnapshotRequest).encode([SnapshotRequest(symbol)])
        self._requested_at: float | None = None
        self.subscribed = False
        """`Subscribed` came back on the current connection."""
        self.connected = False
        """The market data connection's handshake is done and it has not been lost since."""
        self._refused_at: float | None = None
        """When the server refused the subscription TOO_MANY_SUBSCRIBERS (None: it did not)."""
        context = context or zmq.Context.instance()
        self.subscriber = context.socket(zmq.DEALER)
        self.subscriber.setsockopt(zmq.LINGER, 0)
        self.subscriber.setsockopt(zmq.RCVHWM, RECEIVE_FRAMES)
        heartbeat(self.subscriber, round(heartbeat_s * 1000))
        self._connections = self.subscriber.get_monitor_socket(EVENTS)
        self._market_data = Tally()
        """The market data connection's events since `connect` began: why no snapshot came."""
        self.subscriber.connect(md_endpoint)
        self.snapshotter = context.socket(zmq.DEALER)
        self.snapshotter.setsockopt(zmq.LINGER, 0)
        self._snapshots_watch = ConnectionWatch(self.snapshotter, False)
        """The snapshot connection's events until the first `connect` ends."""
        self._snapshots_watch.start()
        self.snapshotter.connect(snapshot_endpoint)
        self.endpoints = (md_endpoint, snapshot_endpoint)
        self.sockets = (self._connections, self.subscriber, self.snapshotter)
        """What brings this client input (its connection events, its market data, its snapshots): a
        caller with a poller of its own watches these and calls `poll` when one is ready."""
        self._poller = zmq.Poller()
        for socket in self.sockets:
            self._poller.register(socket, zmq.POLLIN)

    def connect(self, timeout: float = 5.0) -> None:
        """Wait until the book is synced; raise `RequestTimeout` if no snapshot arrives, saying why
        when the two connections' events show it (`clients.watch`: nothing listening, each
        connection closed before its handshake as at a full port)."""
        deadline = time.monotonic() + timeout
        self._market_data = Tally()
        self._snapshots_watch.start()
        try:
            while not self.sync.synced and (remaining := deadline - time.monotonic()) > 0:
                self.poll(min(remaining, 0.1))
        finally:
            snapshots = self._snapshots_watch.stop()
        if not self.sync.synced:
            raise RequestTimeout(f"no {self.symbol} snapshot within {timeout}s{self._why(snapshots)}")

    def _why(self, snapshots: Tally) -> str:
        """What the market data connection and (``snapshots``) the snapshot connection showed since
        `connect` began, as the end of its message ("" if nothing)."""
        causes = []
        for port, endpoint, tally in (("market data", self.endpoints[0], self._market_data),
                                      ("snapshot", self.endpoints[1], snapshots)):
            link = tally.link()
            if link is not None:
                causes.append(f"the {port} port ({endpoint}): {tally.why(link)}")
        return ": " + "; ".join(causes) if causes else ""

    def poll(self, timeout: float = 0.0) -> list:
        """Apply every waiting message (waiting up to ``timeout`` for one); the updates applied."""
        self._subscribe_again_if_refused()
        self._request_snapshot_if_needed()
        applied: list = []
        events = dict(self._poller.poll(max(0, int(timeout * 1000))))
        if self._connections in events:
            self._read_connections()
        if self.subscriber in events:
            while True:
                try:
                    parts = self.subscriber.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    break
                if len(parts) != 2:
                    raise ClientError(f"a market-data message of {len(parts)} parts instead of 2")
                topic, payload = parts
                if topic == CONTROL_TOPIC:
                    self._control(payload)
                    continue
                for message in self._decode(self._updates, payload):
                    applied.extend(self.sync.on_update(message))
        if self.snapshotter in events:
            while True:
                try:
                    frame = self.snapshotter.recv(zmq.NOBLOCK)
                except zmq.Again:
                    break
                for reply in self._decode(self._snapshots, frame):
                    if isinstance(reply, QueryRejected):
                        raise RequestRejected(reply.reason, reply.text)
                    if reply.symbol == self.symbol:
                        self._requested_at = None
                        applied.extend(self.sync.on_snapshot(reply))
        self._request_snapshot_if_needed()
        return applied

    def _read_connections(self) -> None:
        """Subscribe on each connection made (every event queued: each handshake done), take a
        connection lost (`BookSync.lost`), and count the events for `connect`'s message."""
        while True:
            try:
                event = recv_monitor_message(self._connections, zmq.NOBLOCK)["event"]
            except zmq.Again:
                return
            self._market_data.add(event)
            if event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                self.subscribed, self._refused_at, self.connected = False, None, True
                self.subscriber.send(self._subscribe)
            elif event == zmq.EVENT_DISCONNECTED and self.connected:
                self.subscribed = self.connected = False
                self.sync.lost(time.time_ns())

    def _subscribe_again_if_refused(self) -> None:
        if self._refused_at is not None and time.monotonic() - self._refused_at >= self.snapshot_retry_s:
            self._refused_at = None
            self.subscriber.send(self._subscribe)

    def _control(self, payload: bytes) -> None:
        """The book server's answers to this client's subscription (and its heartbeats, ignored)."""
        for reply in self._decode(self._controls, payload):
            if type(reply) is SubscriptionRejected:
                if reply.reason == RejectReason.TOO_MANY_SUBSCRIBERS:
                    self._refused_at = time.monotonic()
                raise RequestRejected(reply.reason, reply.text)
            if type(reply) is Subscribed and reply.symbol == self.symbol:
                self.subscribed = True

    @staticmethod
    def _decode(decoder: msgspec.msgpack.Decoder, frame: bytes) -> list:
        try:
            return decoder.decode(frame)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise ClientError(f"undecodable market-data frame ({len(frame)} bytes): {exc}") from None

    def _request_snapshot_if_needed(self) -> None:
        """Ask for a snapshot if the book needs one (again every ``snapshot_retry_s``), never
        waiting: a snapshot port that takes nothing (full, or not there) leaves the requests already
        queued, at most the socket's high-water mark, and `poll` goes on."""
        if not self.sync.needs_snapshot or not self.subscribed:
            return
        now = time.monotonic()
        if self._requested_at is None or now - self._requested_at >= self.snapshot_retry_s:
            try:
                self.snapshotter.send(self._request, zmq.NOBLOCK)
            except zmq.Again:
                pass  # the requests already queued go once the snapshot port takes them
            self._requested_at = now

    def close(self) -> None:
        self._snapshots_watch.stop()
        self.subscriber.disable_monitor()
        self._connections.close()
        self.subscriber.close()
        self.snapshotter.close()

    def __enter__(self) -> "MarketDataClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------ views

    @property
    def synced(self) -> bool:
        return self.sync.synced

    @property
    def sequence(self) -> int:
        return self.sync.sequence

    @property
    def lost_at(self) -> int | None:
        return self.sync.lost_at

    @property
    def resyncs(self) -> int:
        return self.sync.resyncs

    @property
    def last_trade(self) -> Trade | None:
        return self.sync.last_trade

    @property
    def last_price(self) -> int | None:
        return self.sync.last_price

    @property
    def phase(self) -> Phase:
        return self.sync.phase

    @property
    def phase_reason(self) -> PhaseReason | None:
        return self.sync.phase_reason

    @property
    def phase_until(self) -> int:
        return self.sync.phase_until

    @property
    def indicative_price(self) -> int:
        return self.sync.indicative_price

    @property
    def indicative_volume(self) -> int:
        return self.sync.indicative_volume

    @property
    def last_auction(self) -> AuctionSummary | None:
        return self.sync.last_auction

    def crossed(self) -> bool:
        return self.sync.crossed()

    def best_bid(self) -> tuple[int, int] | None:
        return self.sync.best_bid()

    def best_ask(self) -> tuple[int, int] | None:
        return self.sync.best_ask()

    def mid(self) -> float | None:
        return self.sync.mid()

    def depth(self, levels: int = 10):
        return self.sync.depth(levels)
