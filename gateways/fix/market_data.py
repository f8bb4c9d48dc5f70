"""FIX market data from the OBS's feed: MarketDataRequest (V) answered with snapshots (W),
incremental refreshes (X) and, for the trading phase, SecurityStatus (f).

One `Feed` per symbol subscribed to (a `clients.market_data.MarketDataClient`), shared by every session.

=====================================  ====================================================
OBS market data                        FIX out (to the symbol's subscribers)
=====================================  ====================================================
DepthUpdate                            X entry MDEntryType 0 (bid) or 1 (offer): MDUpdateAction
                                       0 new, 1 change, 2 delete; MDEntryPx, MDEntrySize,
                                       NumberOfOrders (346), RptSeq (83) the feed's sequence
Trade                                  X entry MDEntryType 2 (trade)
Indicative                             X entry MDEntryType Q (auction clearing price: the
                                       indicative uncross), MDEntryPx and MDEntrySize the price and
                                       volume the book would uncross at now; delete when none
PhaseUpdate                            SecurityStatus (f): SecurityTradingStatus (326) 17 ready
                                       to trade (continuous), 21 pre-open (a call auction), 2 trading
                                       halt; Text (58) the phase, why, and a volatility call's end
AuctionSummary                         nothing of its own: the uncross's trades follow as entries 2
=====================================  ====================================================

A subscription (SubscriptionRequestType 1) gets a snapshot (W: the book to MarketDepth levels, the
last trade, and the indicative uncross in a call if it asked for entry type Q), then a SecurityStatus
with the book's phase, then the changes; again a snapshot and a status after any gap the feed had to
repair. When the gateway's connection to the book server is lost (it stopped, or went silent:
`MarketDataClient`), each subscribed session gets a SecurityStatus with SecurityTradingStatus 20
(unknown) and a Text saying so, and nothing more for the symbol until the book is rebuilt: then the
snapshot and the status of its phase, as after a gap. Entry type Q is this gateway's use of a FIX
5.0 value (auction clearing price): FIX 4.4 ends at C, so a QuickFIX peer declares it in its
dictionary (tests/quickfix/FIX44-gateway.xml), as it does SecurityStatus. Any other market-data
message is ignored.
"""

import logging

from clients.client import ClientError
from clients.market_data import MarketDataClient
from config.settings import Config
from engine.instrument import Instrument
from engine.types import Phase, Side
from gateways.fix import messages as m
from gateways.fix.application import price_text
from servers import protocol as p
from servers.service import Occurrences

log = logging.getLogger(__name__)

MAX_MD_ENTRIES = 500
"""Entries per market-data message (a longer refresh is split)."""
MD_ENTRY_TYPES = frozenset({"0", "1", "2", "Q"})
INDICATIVE = "Q"
TRADING_STATUS = {Phase.CONTINUOUS: 17, Phase.CALL: 21, Phase.HALTED: 2}
"""Phase -> SecurityTradingStatus (326): ready to trade, pre-open, trading halt."""
UNKNOWN_STATUS = 20
"""SecurityTradingStatus (326) while the connection to the book server is lost: unknown or invalid."""
PHASE_TEXT = {Phase.CONTINUOUS: "continuous trading", Phase.CALL: "call auction", Phase.HALTED: "halted"}
REASON_TEXT = {p.PhaseReason.OPERATOR: "by the operator", p.PhaseReason.SCHEDULE: "by the trading schedule",
               p.PhaseReason.VOLATILITY: "volatility interruption"}


def status_text(phase: Phase, reason: p.PhaseReason | None, until: int) -> str:
    """The Text (58) of a SecurityStatus: the phase, why (if known) and a volatility call's end."""
    text = PHASE_TEXT[phase]
    if reason is not None:
        text += f" ({REASON_TEXT.get(reason, f'reason {int(reason)}')}"
        text += f" until {m.nanos_timestamp(until)})" if until else ")"
    return text


class Subscription:
    __slots__ = ("session", "request_id", "depth", "incremental", "types")

    def __init__(self, session, request_id: str, depth: int, incremental: bool | None, types: frozenset[str]) -> None:
        self.session = session
        self.request_id = request_id
        self.depth = depth
        self.incremental = incremental
        """True: incremental refreshes; False: a snapshot after each change; None: one snapshot only."""
        self.types = types


class Feed:
    """One symbol's book from its OBS (`MarketDataClient`) and the sessions subscribed to it."""

    def __init__(self, market_data: "MarketData", symbol: str, instrument: Instrument, md: MarketDataClient) -> None:
        self.market_data = market_data
        self.symbol = symbol
        self.scale = instrument.price_scale
        self.md = md
        self.subscribers: list[Subscription] = []
        self.waiting: list[Subscription] = []
        """Subscriptions whose snapshot waits for the book to be synced."""
        self.levels: set[tuple[int, int]] = set()
        """(side, price) of the levels the subscribers have been told of."""
        self.phase = Phase.CONTINUOUS
        self.status_text = PHASE_TEXT[Phase.CONTINUOUS]
        self.status_time = 0
        """The exchange time of the last phase change seen (0: known from a snapshot only)."""
        self.indicative = (0, 0)
        """The indicative uncross (price, volume); volume 0: none."""
        self.lost = False
        """The subscribers were told the connection to the book server was lost, and the book is not rebuilt since."""

    def add(self, subscription: Subscription, updates: bool) -> None:
        if self.md.synced and not self.waiting:
            self.snapshot(subscription)
            if updates:
                self.subscribers.append(subscription)
        else:
            self.waiting.append(subscription if updates else Subscription(
                subscription.session, subscription.request_id, subscription.depth, None, subscription.types))

    def poll(self) -> None:
        md = self.md
        was_synced, resyncs = md.synced, md.resyncs
        try:
            applied = md.poll(0)
        except ClientError as exc:
            self.market_data.trouble(self.symbol, str(exc))
            return
        if md.lost_at is not None and not self.lost:
            self.lost = True
            self._tell_lost(md.lost_at)
        if not md.synced:
            return
        if not was_synced or md.resyncs != resyncs:
            self.lost = False
            bids, asks = md.depth(1_000_000)
            self.levels = {(Side.BUY, price) for price, _, _ in bids} | {(Side.SELL, price) for price, _, _ in asks}
            self._phase_from_book()
            for subscription in self.subscribers:
                self.snapshot(subscription)
            waiting, self.waiting = self.waiting, []
            for subscription in waiting:
                self.snapshot(subscription)
                if subscription.incremental is not None:
                    self.subscribers.append(subscription)
            return
        if not applied:
            return
        entries = []
        changed_phase = False
        for message in applied:
            kind = type(message)
            if kind is p.DepthUpdate:
                key = (message.side, message.price)
                entry_type = "0" if message.side == Side.BUY else "1"
                if message.quantity == 0:
                    self.levels.discard(key)
                    entries.append((entry_type, [(279, 2), (269, entry_type), (55, self.symbol),
                                                 (270, price_text(message.price, self.scale)), (83, message.sequence)]))
                else:
                    action = 1 if key in self.levels else 0
                    self.levels.add(key)
                    entries.append((entry_type, [(279, action), (269, entry_type), (55, self.symbol),
                                                 (270, price_text(message.price, self.scale)),
                                                 (271, message.quantity), (346, message.orders),
                                                 (83, message.sequence)]))
            elif kind is p.Trade:
                entries.append(("2", [(279, 0), (269, "2"), (55, self.symbol),
                                      (270, price_text(message.price, self.scale)), (271, message.quantity),
                                      (83, message.sequence)]))
            elif kind is p.PhaseUpdate:
                changed_phase = True
                self._phase_changed(message)
                if message.phase == Phase.CONTINUOUS:
                    entries += self._indicative(0, 0, message.sequence)
            elif kind is p.Indicative:
                entries += self._indicative(message.price, message.volume, message.sequence)
        if not self.subscribers:
            return
        told: set[int] = set()
        for subscription in list(self.subscribers):
            session = subscription.session
            if session.state.name != "ACTIVE":
                continue
            if changed_phase and id(session) not in told:
                told.add(id(session))
                self.security_status(session)
            if not subscription.incremental:
                if entries:
                    self.snapshot(subscription, status=False)
                continue
            mine = [fields for entry_type, fields in entries if entry_type in subscription.types]
            for start in range(0, len(mine), MAX_MD_ENTRIES):
                chunk = mine[start:start + MAX_MD_ENTRIES]
                body: list = [(262, subscription.request_id), (268, len(chunk))]
                for fields in chunk:
                    body += fields
                session.send(m.MARKET_DATA_INCREMENTAL, body)

    def _phase_from_book(self) -> None:
        """The phase and indicative uncross as the (re)synced book has them (`clients.market_data.BookSync`)."""
        book = self.md.sync
        if book.phase != self.phase:
            self.phase, self.status_time = Phase(book.phase), 0
            self.status_text = status_text(self.phase, book.phase_reason, book.phase_until)
        volume = book.indicative_volume if book.phase != Phase.CONTINUOUS else 0
        self.indicative = (book.indicative_price, volume) if volume else (0, 0)

    def _phase_changed(self, message: p.PhaseUpdate) -> None:
        self.phase = message.phase
        self.status_text = status_text(message.phase, message.reason, message.until)
        self.status_time = message.time

    def _indicative(self, price: int, volume: int, sequence: int) -> list[tuple[str, list]]:
        """The entry (Q) that tells of the new indicative uncross: new, changed, or deleted (volume 0);
        none when there was none and is none."""
        shown = self.indicative[1] > 0
        self.indicative = (price, volume) if volume else (0, 0)
        if not volume:
            return [(INDICATIVE, [(279, 2), (269, INDICATIVE), (55, self.symbol), (83, sequence)])] if shown else []
        return [(INDICATIVE, [(279, 1 if shown else 0), (269, INDICATIVE), (55, self.symbol),
                              (270, price_text(price, self.scale)), (271, volume), (83, sequence)])]

    def security_status(self, session) -> None:
        """A SecurityStatus (f) with the book's phase, unsolicited (sent to market-data subscribers)."""
        session.send(m.SECURITY_STATUS, [
            (55, self.symbol), (325, "Y"), (326, TRADING_STATUS[self.phase]),
            (60, m.nanos_timestamp(self.status_time) if self.status_time else m.timestamp()),
            (58, m.clean_text(self.status_text))])

    def _tell_lost(self, lost_at: int) -> None:
        """A SecurityStatus (f) of unknown status to each subscribed session, once: the connection
        to the book server was lost at ``lost_at``."""
        told: set[int] = set()
        for subscription in self.subscribers:
            session = subscription.session
            if session.state.name == "ACTIVE" and id(session) not in told:
                told.add(id(session))
                session.send(m.SECURITY_STATUS, [
                    (55, self.symbol), (325, "Y"), (326, UNKNOWN_STATUS), (60, m.nanos_timestamp(lost_at)),
                    (58, "market data lost: the connection to the book server was lost; a snapshot follows once "
                         "it is back")])

    def snapshot(self, subscription: Subscription, status: bool = True) -> None:
        """A snapshot (W) for ``subscription``, and (``status``) a SecurityStatus after it."""
        session = subscription.session
        if session.state.name != "ACTIVE":
            return
        depth = subscription.depth or 1_000_000
        bids, asks = self.md.depth(depth)
        entries = []
        if "0" in subscription.types:
            entries += [[(269, "0"), (270, price_text(price, self.scale)), (271, quantity), (346, orders)]
                        for price, quantity, orders in bids]
        if "1" in subscription.types:
            entries += [[(269, "1"), (270, price_text(price, self.scale)), (271, quantity), (346, orders)]
                        for price, quantity, orders in asks]
        if "2" in subscription.types and self.md.last_price is not None:
            entries.append([(269, "2"), (270, price_text(self.md.last_price, self.scale))])
        if INDICATIVE in subscription.types and self.indicative[1]:
            entries.append([(269, INDICATIVE), (270, price_text(self.indicative[0], self.scale)),
                            (271, self.indicative[1])])
        chunks = [entries[start:start + MAX_MD_ENTRIES] for start in range(0, len(entries), MAX_MD_ENTRIES)] or [[]]
        for chunk in chunks:
            body: list = [(262, subscription.request_id), (55, self.symbol), (83, self.md.sequence),
                          (268, len(chunk))]
            for fields in chunk:
                body += fields
            session.send(m.MARKET_DATA_SNAPSHOT, body)
        if status:
            self.security_status(session)

    def drop(self, session, request_id: str | None = None) -> None:
        def keep(subscription: Subscription) -> bool:
            return subscription.session is not session or (request_id is not None
                                                            and subscription.request_id != request_id)

        self.subscribers = [s for s in self.subscribers if keep(s)]
        self.waiting = [s for s in self.waiting if keep(s)]


class MarketData:
    """The gateway's market-data feeds, one per symbol subscribed to, shared by every session."""

    def __init__(self, config: Config, register, unregister) -> None:
        self.config = config
        self.register = register
        self.unregister = unregister
        self.feeds: dict[str, Feed] = {}
        self.by_socket: dict = {}
        self.troubles = Occurrences(log, "market data of %s: %s (%d so far)")

    def feed(self, symbol: str) -> Feed | None:
        feed = self.feeds.get(symbol)
        if feed is not None:
            return feed
        instrument, shard = self.config.instrument(symbol), self.config.shard_of(symbol)
        if instrument is None or shard is None:
            return None
        md = MarketDataClient(shard.market_data_endpoint, shard.snapshot_endpoint, symbol)
        feed = self.feeds[symbol] = Feed(self, symbol, instrument, md)
        for socket in md.sockets:
            self.by_socket[socket] = feed
            self.register(socket)
        return feed

    def request(self, session, message: m.Message) -> None:
        message.require(262, 263)
        request_id, kind = message.get(262), message.get(263)
        if kind == "2":
            for feed in self.feeds.values():
                feed.drop(session, request_id)
            return
        message.require(264, 267, 146)
        types = {entry[269] for entry in message.groups(267, 269, frozenset({269}))}
        symbols = [entry[55] for entry in message.groups(146, 55, m.REPEATABLE[m.MARKET_DATA_REQUEST] - {269})]
        depth = message.integer(264)
        incremental = message.get(265, "1") == "1"

        def refuse(reason: str, text: str) -> None:
            session.send(m.MARKET_DATA_REQUEST_REJECT, [(262, request_id), (281, reason), (58, m.clean_text(text))])

        if not types <= MD_ENTRY_TYPES or not types:
            refuse("8", "MDEntryType (269) must be 0 (bid), 1 (offer), 2 (trade) or Q (indicative uncross)")
            return
        if depth < 0:
            refuse("5", f"MarketDepth (264) {depth} is negative")
            return
        if kind == "1" and any(s.request_id == request_id and s.session is session
                               for feed in self.feeds.values() for s in feed.subscribers + feed.waiting):
            refuse("1", f"MDReqID {request_id} is already subscribed")
            return
        feeds = []
        for symbol in symbols:
            feed = self.feed(symbol)
            if feed is None:
                refuse("0", f"unknown symbol {symbol}")
                return
            feeds.append(feed)
        for feed in feeds:
            feed.add(Subscription(session, request_id, depth, incremental, frozenset(types)), updates=kind == "1")
            feed.poll()

    def on_socket(self, socket) -> None:
        feed = self.by_socket.get(socket)
        if feed is not None:
            feed.poll()

    def tick(self) -> None:
        for feed in self.feeds.values():
            if not feed.md.synced:
                feed.poll()

    def drop(self, session) -> None:
        for feed in self.feeds.values():
            feed.drop(session)

    def trouble(self, symbol: str, text: str) -> None:
        self.troubles(symbol, text)

    def close(self) -> None:
        for feed in self.feeds.values():
            for socket in feed.md.sockets:
                self.unregister(socket)
            feed.md.close()
        self.feeds.clear()
