"""The gateway's WebSocket streams at ``/v1/ws``: public market data and, after an authenticated
subscribe, the trader's own order reports and fills.

A client sends JSON commands and receives JSON events::

    {"op": "subscribe", "channel": "depth" | "trades" | "quotes" | "phase", "symbol": "ACME"}
    {"op": "auth", "key": KEY_ID, "timestamp": MS, "signature": HEX}   # HMAC of timestamp + "GET" + "/v1/ws"
    {"op": "subscribe", "channel": "orders"}                            # after auth: my reports
    {"op": "unsubscribe", "channel": ..., "symbol": ...}

- ``depth``: a ``snapshot`` event (the whole book with its market-data ``sequence``) on
  subscribe and after any gap the gateway's feed had to repair, then ``depth`` events, one per
  changed level, each with its ``sequence``: apply those above the snapshot's, in order.
  The snapshot carries the book's trading ``phase`` (continuous, call, halted) and its indicative
  uncross (``indicative_price``, ``indicative_volume``: 0 and 0 when nothing would trade).
- ``trades``, ``quotes``: each trade, each change of the top of book.
- ``phase``: a ``phase`` event with the book's phase and indicative uncross on subscribe (and after
  any gap), then ``phase_update`` (the phase changed: ``phase``, ``reason`` operator, schedule or
  volatility, ``until`` a volatility call's end in ns), ``indicative`` (in a call or a halt, the
  uncross ``price`` and ``volume`` as they change) and ``auction_summary`` (an uncross: its price
  and volume, before its trades), each with its ``sequence``.
- Every subscriber of a symbol's channels is told when the gateway's connection to the symbol's
  book server is lost (it stopped, or went silent: `clients.market_data.MarketDataClient`):
  ``{"type": "market_data_lost", "symbol", "sequence": the last applied, "lost_at": ns}``; nothing
  more comes for the symbol until ``{"type": "market_data_back", "symbol", "sequence"}``, once the
  book is rebuilt from a snapshot, followed by the ``snapshot`` and ``phase`` events of the depth
  and phase channels. What was published meanwhile is not sent.
- ``orders``: every report of the trader's TES session (accepted, filled, canceled, replaced,
  rejected, expired, stop triggered, decremented by self-trade prevention, mass cancel done), as
  ``{"channel": "orders", "type": ..., ...}`` (``order_accepted`` with the order's stop price,
  display quantity, flags, ``stp`` mode and ``expire_at``; ``stop_triggered`` with the trade's
  ``last_price``; ``order_decremented`` with the ``quantity`` removed).

One thread per subscribed symbol reads the book server's feed (`MarketDataClient`) and hands what
each read brought to the subscribers' queues on the event loop (it also serves the public ``GET
/v1/book``). A subscriber whose connection does not take what is sent while more than
``api.stream_queue`` events wait behind it (it does not read: see `Subscriber`) is closed with
code 1008 and the reason "slow consumer"; a bad command is answered with an ``error`` event
(through the same queue, so a client that floods bad commands and reads nothing is closed as a
slow consumer); a command over ``MAX_COMMAND_BYTES`` closes with 1009. Nobody else notices.
"""

import asyncio
import json
import logging
import threading
import time

import zmq
from fastapi import FastAPI, WebSocket, WebSocketDisconnect

from clients.client import ClientError
from clients.market_data import MarketDataClient
from engine.types import Phase, RejectReason, SelfTradePrevention
from gateways.api.auth import AuthError
from servers.protocol import AuctionSummary, DepthUpdate, Indicative, PhaseUpdate, Quote, Trade

log = logging.getLogger("api")

WS_PATH = "/v1/ws"
POLL_S = 0.1
MAX_COMMAND_BYTES = 4096


def error(reason: RejectReason, message: str) -> dict:
    """An ``error`` event: the exchange's reject code and a sentence."""
    return {"type": "error", "code": int(reason), "message": message}


CHANNELS = {DepthUpdate: "depth", Trade: "trades", Quote: "quotes", PhaseUpdate: "phase", Indicative: "phase",
            AuctionSummary: "phase"}
"""The public channel of each market-data message (any other is not streamed)."""


def _plain(message) -> dict:
    """A protocol message as a JSON-ready dict: ``type`` its snake-case class name, enums by name
    (self-trade prevention modes as the configuration spells them: ``cancel-maker``)."""
    name = type(message).__name__
    kind = "".join(f"_{c.lower()}" if c.isupper() else c for c in name).lstrip("_")
    fields = {}
    for field in message.__struct_fields__:
        value = getattr(message, field)
        if isinstance(value, SelfTradePrevention):
            value = value.name.lower().replace("_", "-")
        elif hasattr(value, "name") and hasattr(value, "value"):
            value = value.value if isinstance(value.value, str) else value.name.lower()
        fields[field] = value
    return {"type": kind, **fields}


class Subscriber:
    """One WebSocket: its queue of outgoing events and what it subscribed to.

    A slow consumer is one whose connection does not take what is sent: the sender is waiting for
    the connection to drain (its receive window, the kernel's buffers and the transport's are full)
    while more than ``limit`` events wait behind it. A queue that is merely long, because a burst
    of market data (a sweep, a mass cancel) arrived faster than the event loop turns, is no fault
    of the client's and is sent on.
    """

    def __init__(self, websocket: WebSocket, loop: asyncio.AbstractEventLoop, limit: int) -> None:
        self.websocket = websocket
        self.loop = loop
        self.queue: asyncio.Queue = asyncio.Queue()
        self.limit = limit
        self.trader_id: str | None = None
        self.orders = False
        self.closing: str | None = None
        self.sending = False
        """True while a send waits for the connection to take it (a send that goes out at once never
        yields to the loop, so nothing else sees it True)."""

    def push(self, event: dict) -> None:
        """Queue an event (any thread)."""
        self.loop.call_soon_threadsafe(self._push, [event])

    def push_all(self, events: list[dict]) -> None:
        """Queue events, in order (any thread; one wake-up of the loop)."""
        self.loop.call_soon_threadsafe(self._push, events)

    def _push(self, events: list[dict]) -> None:
        if self.closing is not None:
            return
        for event in events:
            self.queue.put_nowait(event)
        self.check()

    def check(self) -> None:
        """Close a slow consumer: its queue is dropped, the close (1008) goes after what the
        connection already holds."""
        if self.sending and self.closing is None and self.queue.qsize() > self.limit:
            self.closing = f"slow consumer: more than {self.limit} events queued"
            log.warning("a WebSocket subscriber (%s): %s; closing it", self.trader_id or "public", self.closing)
            while not self.queue.empty():
                self.queue.get_nowait()
            self.queue.put_nowait(None)


class Feed:
    """One symbol's market data for the streams and the public ``book`` endpoint, on its own thread.

    The thread waits on the feed's sockets without the lock, then applies what arrived and hands
    it to the subscribers holding ``lock``: whoever holds ``lock`` sees a consistent book.
    """

    def __init__(self, streams: "Streams", symbol: str, md_endpoint: str, snapshot_endpoint: str) -> None:
        self.streams = streams
        self.symbol = symbol
        self.endpoints = (md_endpoint, snapshot_endpoint)
        self.subscribers: dict[str, set[Subscriber]] = {"depth": set(), "trades": set(), "quotes": set(),
                                                        "phase": set()}
        self.joining: list[tuple[str, Subscriber]] = []
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.synced = threading.Event()
        """Set once the book is first synced (and ``market_data`` readable)."""
        self.market_data: MarketDataClient | None = None
        self.thread = threading.Thread(target=self._run, name=f"api-feed-{symbol}", daemon=True)
        self.thread.start()

    def add(self, channel: str, subscriber: Subscriber) -> None:
        with self.lock:
            self.joining.append((channel, subscriber))

    def remove(self, subscriber: Subscriber, channel: str | None = None) -> None:
        with self.lock:
            for name, members in self.subscribers.items():
                if channel is None or channel == name:
                    members.discard(subscriber)
            self.joining = [(c, s) for c, s in self.joining if s is not subscriber or (channel and c != channel)]

    def book(self, levels: int) -> dict | None:
        """The book now, ``levels`` a side (None while it is not synced)."""
        with self.lock:
            feed = self.market_data
            if feed is None or not feed.synced:
                return None
            bids, asks = feed.depth(levels)
            return {"symbol": self.symbol, "bids": bids, "asks": asks, "last_price": feed.last_price,
                    "sequence": feed.sequence, **_phase_fields(feed)}

    def lost_at(self) -> int | None:
        """When (ns) the feed's connection to the book server was lost, if the book is not rebuilt since."""
        with self.lock:
            feed = self.market_data
            return None if feed is None else feed.lost_at

    def _snapshot(self, feed: MarketDataClient) -> dict:
        bids, asks = feed.depth(1000)
        return {"channel": "depth", "type": "snapshot", "symbol": self.symbol, "sequence": feed.sequence,
                "bids": [list(level) for level in bids], "asks": [list(level) for level in asks],
                "last_price": feed.last_price, **_phase_fields(feed)}

    def _phase(self, feed: MarketDataClient) -> dict:
        """The ``phase`` event: the book's phase and indicative uncross now (as of ``sequence``)."""
        book = feed.sync
        reason = book.phase_reason
        return {"channel": "phase", "type": "phase", "symbol": self.symbol, "sequence": feed.sequence,
                **_phase_fields(feed), "reason": reason.name.lower() if reason is not None else None,
                "until": book.phase_until}

    def _joined(self, channel: str, subscriber: Subscriber, feed: MarketDataClient) -> None:
        """What a subscriber gets first on ``channel`` (the state its events apply to), if anything."""
        if channel == "depth":
            subscriber.push(self._snapshot(feed))
        elif channel == "phase":
            subscriber.push(self._phase(feed))

    def _tell_all(self, event: dict) -> None:
        """``event`` to each subscriber of any of the symbol's channels, once."""
        for subscriber in {member for members in self.subscribers.values() for member in members}:
            subscriber.push(event)

    def _run(self) -> None:
        try:
            feed = MarketDataClient(*self.endpoints, self.symbol)
        except Exception as exc:  # noqa: BLE001 - one line, the feed is simply not there
            log.warning("%s: market data unavailable: %s", self.symbol, exc)
            return
        resyncs, lost_at = feed.resyncs, None
        poller = zmq.Poller()
        for socket in feed.sockets:
            poller.register(socket, zmq.POLLIN)
        self.market_data = feed
        try:
            while not self.stop.is_set():
                poller.poll(POLL_S * 1000)
                with self.lock:
                    try:
                        applied = feed.poll(0)
                    except ClientError as exc:
                        log.warning("%s: market data: %s", self.symbol, exc)
                        continue
                    if feed.synced:
                        self.synced.set()
                        for channel, subscriber in self.joining:
                            self._joined(channel, subscriber, feed)
                            self.subscribers[channel].add(subscriber)
                        self.joining.clear()
                    if feed.lost_at is not None and lost_at is None:
                        lost_at = feed.lost_at
                        self._tell_all({"type": "market_data_lost", "symbol": self.symbol,
                                        "sequence": feed.sequence, "lost_at": lost_at})
                    if feed.resyncs != resyncs and feed.synced:
                        resyncs = feed.resyncs
                        if lost_at is not None:
                            lost_at = None
                            self._tell_all({"type": "market_data_back", "symbol": self.symbol,
                                            "sequence": feed.sequence})
                        for channel in ("depth", "phase"):
                            for subscriber in self.subscribers[channel]:
                                self._joined(channel, subscriber, feed)
                        continue
                    events: dict[Subscriber, list[dict]] = {}
                    for message in applied:
                        channel = CHANNELS.get(type(message))
                        if channel is None or not self.subscribers[channel]:
                            continue
                        event = {"channel": channel, **_plain(message)}
                        for subscriber in self.subscribers[channel]:
                            events.setdefault(subscriber, []).append(event)
                    for subscriber, batch in events.items():
                        subscriber.push_all(batch)
        finally:
            with self.lock:
                self.market_data = None
            feed.close()


def _phase_fields(feed: MarketDataClient) -> dict:
    book = feed.sync
    return {"phase": Phase(book.phase).name.lower(), "indicative_price": book.indicative_price,
            "indicative_volume": book.indicative_volume}


class Streams:
    """Every WebSocket of the gateway, the symbols' feeds, and the private reports' fan-out."""

    def __init__(self, gateway) -> None:
        self.gateway = gateway
        self.config = gateway.config
        self.feeds: dict[str, Feed] = {}
        self.private: set[Subscriber] = set()
        self._lock = threading.Lock()
        gateway.listeners.append(self._report)

    def _report(self, trader_id: str, report) -> None:
        event = None
        for subscriber in list(self.private):
            if subscriber.orders and subscriber.trader_id == trader_id:
                event = event or {"channel": "orders", **_plain(report)}
                subscriber.push(event)

    def feed(self, symbol: str) -> Feed:
        with self._lock:
            feed = self.feeds.get(symbol)
            if feed is None:
                shard = next(s for s in self.config.shards if symbol in s.symbols)
                feed = self.feeds[symbol] = Feed(self, symbol, shard.market_data_endpoint, shard.snapshot_endpoint)
            return feed

    async def book(self, symbol: str, levels: int, timeout: float) -> dict | None:
        """``symbol``'s book from its feed (started by the first request), or None if it is not
        synced within ``timeout`` seconds (at once if the feed's connection is lost: `Feed.lost_at`)."""
        deadline = time.monotonic() + timeout
        feed = self.feed(symbol)
        if not feed.synced.is_set():
            await asyncio.to_thread(feed.synced.wait, timeout)
        while (book := feed.book(levels)) is None and feed.lost_at() is None and time.monotonic() < deadline:
            await asyncio.sleep(POLL_S)
        return book

    def close(self) -> None:
        for feed in self.feeds.values():
            feed.stop.set()
        for feed in self.feeds.values():
            feed.thread.join(1.0)

    def mount(self, app: FastAPI) -> None:
        @app.websocket(WS_PATH)
        async def stream(websocket: WebSocket) -> None:
            await websocket.accept()
            subscriber = Subscriber(websocket, asyncio.get_running_loop(), self.gateway.api.stream_queue)
            sender = asyncio.create_task(self._send(subscriber))
            try:
                await self._receive(subscriber)
            except WebSocketDisconnect:
                pass
            finally:
                sender.cancel()
                self.private.discard(subscriber)
                for feed in list(self.feeds.values()):
                    feed.remove(subscriber)

    async def _send(self, subscriber: Subscriber) -> None:
        websocket = subscriber.websocket
        try:
            while True:
                event = await subscriber.queue.get()
                if event is None:
                    await websocket.close(1008, subscriber.closing or "closed")
                    return
                subscriber.sending = True
                if subscriber.queue.qsize() > subscriber.limit:
                    # runs only if this send waits for the connection (else sending is False again)
                    asyncio.get_running_loop().call_soon(subscriber.check)
                try:
                    await websocket.send_text(json.dumps(event))
                finally:
                    subscriber.sending = False
        except (WebSocketDisconnect, RuntimeError):
            return

    async def _receive(self, subscriber: Subscriber) -> None:
        websocket = subscriber.websocket
        while subscriber.closing is None:
            text = await websocket.receive_text()
            if len(text) > MAX_COMMAND_BYTES:
                await websocket.close(1009, f"a command may have at most {MAX_COMMAND_BYTES} bytes")
                return
            try:
                command = json.loads(text)
                if not isinstance(command, dict):
                    raise ValueError("a command is a JSON object")
            except ValueError as exc:
                subscriber.push(error(RejectReason.MALFORMED_MESSAGE, f"malformed command: {exc}"))
                continue
            if command.get("op") == "auth":
                await self._auth(subscriber, command)
            else:
                self._command(subscriber, command)

    async def _auth(self, subscriber: Subscriber, command: dict) -> None:
        """Check an ``auth`` command (a signed ``GET /v1/ws``) and open the trader's TES session."""
        try:
            key = self.gateway.auth.check(command.get("key"), str(command.get("timestamp", "")),
                                          command.get("signature"), "GET", WS_PATH, b"")
            session = self.gateway.session(key)
            if not session.started:
                await session.start()
        except AuthError as exc:
            self.gateway.bad_requests(exc.title.lower())
            subscriber.push({"type": "error", "code": exc.code, "message": f"{exc.title}: {exc.detail}"})
            return
        except ClientError as exc:
            subscriber.push(error(RejectReason.BOOK_UNAVAILABLE, f"the exchange session: {exc}"))
            return
        subscriber.trader_id = key.trader_id
        subscriber.push({"type": "authenticated", "trader_id": key.trader_id})

    def _command(self, subscriber: Subscriber, command: dict) -> None:
        op, channel, symbol = command.get("op"), command.get("channel"), command.get("symbol")
        if op not in ("subscribe", "unsubscribe"):
            subscriber.push(error(RejectReason.MALFORMED_MESSAGE, f"unknown op {op!r}"))
            return
        if channel == "orders":
            if subscriber.trader_id is None:
                subscriber.push(error(RejectReason.NOT_LOGGED_ON, "the orders channel needs an auth first"))
                return
            subscriber.orders = op == "subscribe"
            (self.private.add if subscriber.orders else self.private.discard)(subscriber)
            subscriber.push({"type": f"{op}d", "channel": "orders"})
            return
        if channel not in ("depth", "trades", "quotes", "phase"):
            subscriber.push(error(RejectReason.MALFORMED_MESSAGE, f"unknown channel {channel!r}"))
            return
        if not isinstance(symbol, str) or self.config.instrument(symbol) is None:
            subscriber.push(error(RejectReason.UNKNOWN_SYMBOL, f"unknown symbol {symbol!r}"))
            return
        feed = self.feed(symbol)
        if op == "subscribe":
            subscriber.push({"type": "subscribed", "channel": channel, "symbol": symbol})
            feed.add(channel, subscriber)
        else:
            feed.remove(subscriber, channel)
            subscriber.push({"type": "unsubscribed", "channel": channel, "symbol": symbol})


__all__ = ["Streams", "WS_PATH"]
