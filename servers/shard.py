"""The books of one OBS shard and the one handler every sequenced command goes through.

`Shard.execute_encoded` is the only code that changes a book. The live loop calls it for
each command before journaling what it returns; `recover` calls it for each journal record
after the newest readable snapshot and checks what it returns against the record. So after a
restart the books, the market-data sequences, last prices and order-id high-water marks equal
the ones before it: the handler reads no clock and no I/O. It runs an order command in
CONTINUOUS in C (`NativeBook.execute_encoded`: no event or market-data object), everything else
through `Shard.execute`, which builds the Structs, is the specification of both, and gives the
same bytes and the same state (the differential tests compare them command by command).

Order ids are ``(tes_id << 48) | counter``: the id's top bits name the TES that
owns the order, and that sent every command naming it.

The shard keeps its last `REPLAY_WINDOW` replies with the TES ids each concerns
(`history`), built by the live loop and by recovery alike, so a TES that lost
replies (its connection broke, or this OBS was killed and restarted) gets them
again with `replay`.

Good-till-date orders
---------------------
A book's logical clock is exchange time: it moves only by a journaled `BookSetClock`,
which the OBS sequences like any command when a GTD order is due (`due`), so recovery
replays every expiry at the time it happened. The shard keeps a heap of the expiries of
the GTD orders its books accepted (from their OrderAccepted events, and from a restored
snapshot's resting orders and held stops); an order gone before its expiry is dropped
from the heap when it comes up (or when the heap is compacted), so no clock command is
ever made for a book without a live GTD order due.

Trading phases
--------------
A `BookSetPhase` runs ``book.set_phase`` like any command (journaled, replayed). The shard
keeps per symbol the `servers.phases.PhaseState` the OBS's own phase commands need (the
last phase command's reason and time, a volatility interruption's end, the previous close,
an interruption owed), derived here from the commands alone, live and in recovery alike, and
kept in snapshots. A command other than a phase command whose fills printed outside a band of
its symbol's `servers.phases.Guard` while CONTINUOUS owes an interruption (`owed`): the OBS
sequences it next (`Guard.interruption`), and the phase command clears it.
"""

import logging
from heapq import heapify, heappop, heappush
from pathlib import Path
from typing import NamedTuple, get_args

import msgspec
import numpy as np

from config.settings import JournalConfig
from engine.messages import (
    CommandRejected,
    OrderAccepted,
    OrderCanceled,
    OrderDecremented,
    OrderExpired,
    OrderFilled,
    StopTriggered,
)
from engine.progress import INTERVAL_S, RECORDS_PER_CHECK, Throttle, percent
from engine.snapshot import BookSnapshot
from engine.types import Phase, TimeInForce
from native.book import ENCODED_FIELDS, ENCODED_TAGS, BookCapture, NativeBook
from native.orderpath import OrderPath, note_accepted
from native.replies import Replies
from servers.journal import (
    DirectoryLock,
    Journal,
    RecoveryError,
    ShardSnapshot,
    SymbolSnapshot,
    beyond_the_journal,
    journal_size,
    read_discarded,
    read_records,
    read_snapshots,
)
from servers.marketdata import Feed
from servers.phases import Guard, PhaseState
from servers.protocol import (
    BookCancel,
    BookCommand,
    BookExpireDay,
    BookReplace,
    BookSetClock,
    BookSetPhase,
    BookSubmit,
    Executed,
    JournalEntry,
    PhaseReason,
)

log = logging.getLogger(__name__)

TES_SHIFT = 48
JOURNALED = frozenset(get_args(BookCommand))
REPLAY_WINDOW = 65_536
"""Replies kept for `Shard.replay`: well over any turn's worth of commands in flight."""
ORDER_EVENTS = frozenset({OrderExpired, OrderCanceled, OrderDecremented, StopTriggered})
"""Events about one order (``order_id``) that may be another TES's than the command's sender's."""
GTD = TimeInForce.GTD
UNORDERED = frozenset({BookExpireDay, BookSetClock, BookSetPhase})
"""Commands that name no order: no TES sent them for an order of its own."""
COMPACT_AT = 65_536
"""The expiry heap is compacted (entries of orders gone dropped) when it grows past this, or past
twice its size after the last compaction."""
CONTINUOUS, CALL = Phase.CONTINUOUS, Phase.CALL
VOLATILITY = PhaseReason.VOLATILITY
NO_PHASES = PhaseState()
_encode = msgspec.msgpack.Encoder().encode
_ORDER_KINDS = {BookSubmit: 0, BookCancel: 1, BookReplace: 2}
"""The commands `NativeBook.execute_encoded` runs, by its ``kind``."""


def _check_encoded_fields() -> None:
    """`NativeBook.execute_encoded` reads each command's fields by position and writes its tag:
    they must be what `ENCODED_FIELDS` and `ENCODED_TAGS` say (ImportError otherwise)."""
    for command, kind in _ORDER_KINDS.items():
        if command.__struct_config__.tag != ENCODED_TAGS[kind]:
            raise ImportError(f"{command.__name__} is tagged {command.__struct_config__.tag!r}, not "
                              f"{ENCODED_TAGS[kind]!r} as NativeBook writes it")
        for position, name in enumerate(ENCODED_FIELDS[kind]):
            if name is not None and command.__struct_fields__[position] != name:
                raise ImportError(f"{command.__name__}.{name} is not field {position}, where NativeBook reads it")


_check_encoded_fields()


class Shard:
    """The symbols' books (`NativeBook`), their market-data feeds and the shard's sequence."""

    def __init__(self, feeds: dict[str, Feed], sequence: int = 0, max_ids: dict[int, int] | None = None,
                 time: int = 0, guards: dict[str, Guard] | None = None,
                 phases: dict[str, PhaseState] | None = None) -> None:
        self.feeds = feeds
        self.sequence = sequence
        """The sequence of the last command executed (0 before any)."""
        self.time = time
        """The exchange time of the last command executed (0 before any)."""
        self.restored_sequence = sequence
        """The sequence of the snapshot this shard was restored from (0: built empty)."""
        self.restored_offset = 0
        """The journal offset where that snapshot's successor records start (0: built empty)."""
        self.history = Replies(REPLAY_WINDOW)
        """The encoded replies of the latest commands executed and the TES ids each concerns,
        consecutive (`native.replies.Replies`)."""
        self.traded: dict[str, tuple[int, int, tuple[int, ...]]] = {}
        """Symbol -> (sequence, price, concerned) of its last trade since the server last published
        marks (`servers.protocol.MARKS_TOPIC`) and cleared this: ``concerned``, the TES ids the
        reply of the command that made it went to, each of which marks the price from that reply."""
        self.expiries: list[tuple[int, str, int]] = []
        """A heap of (expire_at, symbol, order_id) of the GTD orders accepted, earliest first; some
        may be gone (`due` and `_compact` drop them)."""
        self._compact_at = COMPACT_AT
        self._max_ids = max_ids or {}
        self._symbols = {symbol: _encode(symbol) for symbol in feeds}
        """Symbol -> its msgpack (`execute_encoded`)."""
        self.guards = guards or {}
        """Symbol -> its volatility bands (symbols without are absent)."""
        self.phases = {symbol: NO_PHASES for symbol in feeds} | (phases or {})
        """Symbol -> its `PhaseState`."""
        self.owed: set[str] = {symbol for symbol, state in self.phases.items() if state.owed and symbol in self.guards}
        """The symbols owing a volatility interruption (`PhaseState.owed`; one whose band has since
        left the configuration owes none)."""
        self.order_path = OrderPath(self, _ORDER_KINDS, TES_SHIFT)
        """The order commands in C (`execute_encoded`'s and the OBS loop's): it holds the containers
        above, so none of them is ever replaced, only changed."""

    @classmethod
    def empty(cls, symbols: list[str], guards: dict[str, Guard] | None = None) -> "Shard":
        return cls({symbol: Feed(symbol, NativeBook()) for symbol in symbols}, guards=guards)

    def execute(self, sequence: int, time: int, command, market_data: list
                ) -> tuple[bytes, bytes, tuple[int, ...]]:
        """Apply ``command``, sequenced at exchange ``time``, to its symbol's book; append its
        market data to ``market_data``.

        Returns the journal record's payload (the encoded `JournalEntry`: the command with its
        time, events and market data), the reply (an `Executed` already encoded: outgoing
        frames splice it in as is) and the TES ids it concerns, each once: the sender (the
        owner of the order it names) first, then the owners of the other orders it touched
        (both orders of its fills, orders expired, canceled or decremented by self-trade
        prevention, stops triggered). The same command at the same time from the same state
        gives the same bytes. Raises KeyError for a symbol the shard does not own.
        """
        feed = self.feeds[command.symbol]
        book = feed.book
        kind = type(command)
        if kind is BookSubmit:
            events = book.submit(
                command.order_id,
                command.side,
                command.order_type,
                command.time_in_force,
                command.price,
                command.quantity,
                stop_price=command.stop_price,
                display_quantity=command.display_quantity,
                flags=command.flags,
                owner=command.owner,
                stp=command.stp,
                expire_at=command.expire_at,
            )
            accepted = events[0]
            if type(accepted) is OrderAccepted:
                note_accepted(self._max_ids, command.order_id, TES_SHIFT)
                if accepted.time_in_force == GTD:
                    self._expires(accepted.expire_at, command.symbol, command.order_id)
        elif kind is BookCancel:
            events = book.cancel(command.order_id)
        elif kind is BookReplace:
            events = book.replace(command.order_id, command.price, command.quantity)
        elif kind is BookSetClock:
            events = book.set_clock(command.time)
        elif kind is BookSetPhase:
            events = book.set_phase(command.phase)
        else:
            events = book.expire_day_orders()
            if feed.last_price is not None:
                self._phase_state(command.symbol, close=feed.last_price)
        self.sequence = sequence
        self.time = time
        first = len(market_data)
        if kind is BookSetPhase:
            feed.update(events, market_data, time, command.reason, command.until)
            if type(events[0]) is not CommandRejected:
                self._phase_state(command.symbol, reason=command.reason, since=time, owed=False,
                                  until=command.until if command.reason == VOLATILITY and command.phase == CALL else 0)
        else:
            last_price = feed.last_price
            feed.update(events, market_data, time)
            guard = self.guards.get(command.symbol)
            if guard is not None and feed.last_price is not None and len(events) > 1:
                self._guard(command.symbol, guard, events, last_price)
        unordered = kind in UNORDERED
        concerned = () if unordered else (command.order_id >> TES_SHIFT,)
        last_trade = None
        if len(events) > 1 or unordered:
            for event in events:
                event_kind = type(event)
                if event_kind is OrderFilled:
                    owner = event.maker_id >> TES_SHIFT
                    last_trade = event.price
                    taker = event.taker_id >> TES_SHIFT
                    if taker not in concerned:
                        concerned += (taker,)
                elif event_kind in ORDER_EVENTS:
                    owner = event.order_id >> TES_SHIFT
                else:
                    continue
                if owner not in concerned:
                    concerned += (owner,)
        if last_trade is not None:
            self.traded[command.symbol] = (sequence, last_trade, concerned)
        encoded_events = msgspec.Raw(_encode(events))
        reply = _encode(Executed(sequence, command.symbol, encoded_events, time))
        entry = _encode(JournalEntry(sequence, time, command, encoded_events, market_data[first:]))
        self.history.append(sequence, reply, concerned)
        return entry, reply, concerned

    def execute_encoded(self, sequence: int, time: int, command, market_data: list[bytes]
                        ) -> tuple[bytes, bytes, tuple[int, ...]]:
        """`execute`, with the market data appended to ``market_data`` each message encoded
        (msgpack, as `execute`'s Structs encode), and the same bytes returned: an order command in
        CONTINUOUS runs in C (`NativeBook.execute_encoded`) with no event or market-data object,
        anything else through `execute`. Recovery runs every command here, and the OBS's live loop
        every command its `order_path` (`native.orderpath.OrderPath.run`) leaves to it; that path
        runs an order command exactly as this does (this calls its `OrderPath.execute`).
        """
        kind = _ORDER_KINDS.get(type(command))
        if kind is not None:
            done = self.order_path.execute(command, kind, sequence, time, market_data)
            if done is not None:
                return done
        published: list = []
        entry, reply, concerned = self.execute(sequence, time, command, published)
        market_data += map(_encode, published)
        return entry, reply, concerned

    def _guard(self, symbol: str, guard: Guard, events: list, last_price: int | None) -> None:
        """Owe an interruption if the command's fills printed outside ``guard``'s bands in CONTINUOUS."""
        if self.feeds[symbol].book.phase is not CONTINUOUS or symbol in self.owed:
            return
        prices = [event.price for event in events if type(event) is OrderFilled]
        if prices and guard.breached(prices, last_price, self.phases[symbol].close):
            self._phase_state(symbol, owed=True)

    def _phase_state(self, symbol: str, **changes) -> None:
        state = msgspec.structs.replace(self.phases[symbol], **changes)
        self.phases[symbol] = state
        if state.owed:
            self.owed.add(symbol)
        else:
            self.owed.discard(symbol)

    def due(self, now: int) -> list[str]:
        """The symbols whose books hold a live GTD order (resting or a held stop-limit) expiring
        by exchange time ``now``: each is to get a `BookSetClock` to ``now``. Their heap
        entries, and those of orders already gone, are dropped."""
        expiries, feeds = self.expiries, self.feeds
        symbols: list[str] = []
        while expiries and expiries[0][0] <= now:
            _, symbol, order_id = heappop(expiries)
            if symbol not in symbols and feeds[symbol].book.order(order_id) is not None:
                symbols.append(symbol)
        return symbols

    def next_expiry(self) -> int | None:
        """The earliest expiry in the heap (its order may be gone), or None."""
        return self.expiries[0][0] if self.expiries else None

    def _expires(self, expire_at: int, symbol: str, order_id: int) -> None:
        heappush(self.expiries, (expire_at, symbol, order_id))
        if len(self.expiries) > self._compact_at:
            self._compact()

    def _compact(self) -> None:
        """Drop the entries of orders gone (filled, canceled, expired): the heap stays within twice
        the live GTD orders (or `COMPACT_AT`), in amortized constant time per order."""
        feeds = self.feeds
        self.expiries = [entry for entry in self.expiries if feeds[entry[1]].book.order(entry[2]) is not None]
        heapify(self.expiries)
        self._compact_at = max(COMPACT_AT, 2 * len(self.expiries))

    def replay(self, tes_id: int, seen: int) -> tuple[list[bytes], bool]:
        """The kept replies after sequence ``seen`` that concern ``tes_id``, oldest first, and
        True; or no replies and False if the history no longer reaches back to ``seen`` (none
        then: a TES that catches up from the journal must see the replies in sequence order)."""
        first = self.history.first if len(self.history) else self.sequence + 1
        if seen + 1 < first:
            return [], False
        return self.history.concerning(tes_id, seen + 1), True

    def keep_replies(self, count: int) -> None:
        """Keep the latest ``count`` replies for `replay` from now on."""
        self.history = self.history.kept(count)

    def last_prices(self) -> dict[str, int]:
        """Each symbol's last trade price (symbols that never traded are absent)."""
        return {symbol: feed.last_price for symbol, feed in self.feeds.items() if feed.last_price is not None}

    def max_order_id(self, tes_id: int) -> int:
        """The largest order id any book accepted with ``tes_id``'s prefix (0 if none)."""
        self.order_path.note()
        return self._max_ids.get(tes_id, 0)

    def max_order_ids(self) -> dict[int, int]:
        """Per TES id (an order id's prefix), the largest order id any book accepted with it."""
        self.order_path.note()
        return dict(self._max_ids)

    def snapshot(self, journal_offset: int) -> ShardSnapshot:
        return self.capture(journal_offset).finish()

    def capture(self, journal_offset: int) -> "Capture":
        """The shard's state now, as the loop must take it (`NativeBook.capture`: the resting
        orders and the accepted-id words copied out); `Capture.finish` builds the snapshot on
        any thread while the books trade on."""
        books = {symbol: (feed.book.capture(), feed.sequence, feed.last_price, self.phases[symbol])
                 for symbol, feed in self.feeds.items()}
        return Capture(self.sequence, journal_offset, self.time, books)

    @classmethod
    def restore(cls, symbols: list[str], snapshot: ShardSnapshot, guards: dict[str, Guard] | None = None
                ) -> "Shard":
        """The shard ``snapshot`` was taken of; ValueError if a book in it is damaged."""
        unknown = sorted(set(snapshot.symbols) - set(symbols))
        if unknown:
            raise RecoveryError(f"snapshot {snapshot.sequence} holds books of symbols not in this shard: {unknown}")
        feeds, max_ids, expiries, phases = {}, {}, [], {}
        for symbol in symbols:
            state = snapshot.symbols.get(symbol)
            if state is None:
                feeds[symbol] = Feed(symbol, NativeBook())
                continue
            feeds[symbol] = Feed(symbol, NativeBook.restore(state.book), state.market_data_sequence, state.last_price,
                                 state.phases.reason if state.phases.since else None, state.phases.until)
            phases[symbol] = state.phases
            _merge_max_ids(max_ids, state.book)
            for records in (state.book.detail_array(), state.book.held_array()):
                gtd = records[records["expire_at"] != 0]
                expiries += zip(gtd["expire_at"].tolist(), [symbol] * len(gtd), gtd["order_id"].tolist(), strict=True)
        shard = cls(feeds, snapshot.sequence, max_ids, snapshot.time, guards, phases)
        heapify(expiries)
        shard.expiries = expiries
        shard._compact_at = max(COMPACT_AT, 2 * len(expiries))
        return shard


class Capture(NamedTuple):
    """`Shard.capture`: the shard's state taken on the loop, before the work that grows with it."""

    sequence: int
    journal_offset: int
    time: int
    books: dict[str, tuple[BookCapture, int, int | None, PhaseState]]
    """symbol -> (the book's capture, market-data sequence, last trade price, phase state)."""

    def finish(self) -> ShardSnapshot:
        symbols = {
            symbol: SymbolSnapshot(book.finish(), market_data_sequence, last_price, phases)
            for symbol, (book, market_data_sequence, last_price, phases) in self.books.items()
        }
        return ShardSnapshot(self.sequence, self.journal_offset, symbols, self.time)


def _merge_max_ids(max_ids: dict[int, int], book: BookSnapshot) -> None:
    """Fold a book's accepted ids into ``max_ids``: a prefix's largest id is the largest of its
    records' last ids (`BookSnapshot.last_ids`), or the prefix's top id when a range runs on
    past it (ids at a prefix's edge; a word never does, prefixes being whole words)."""
    lasts = book.last_ids()
    if not len(lasts):
        return
    prefixes = lasts >> TES_SHIFT
    last = np.append(prefixes[1:] != prefixes[:-1], True)
    largest = dict(zip(prefixes[last].tolist(), lasts[last].tolist(), strict=True))
    ranges = book.range_array()
    for first, end in ranges[(ranges[:, 0] >> TES_SHIFT) != (ranges[:, 1] >> TES_SHIFT)].tolist():
        for tes_id in range(first >> TES_SHIFT, end >> TES_SHIFT):
            largest[tes_id] = ((tes_id + 1) << TES_SHIFT) - 1
    for tes_id, order_id in largest.items():
        max_ids[tes_id] = max(max_ids.get(tes_id, 0), order_id)


def recover(directory: Path, symbols: list[str], config: JournalConfig, guards: dict[str, Guard] | None = None
            ) -> tuple[Shard, Journal]:
    """The shard as of its last journaled command (`load`), and its journal open for appending.
    The directory's lock is taken before anything in it is read (`servers.journal.DirectoryInUse`
    if another process holds it); the journal releases it when closed."""
    lock = DirectoryLock(directory, "the journal directory")
    try:
        shard, end = load(directory, symbols, guards=guards)
    except BaseException:
        lock.release()
        raise
    return shard, Journal(directory, config, end, lock)


def load(directory: Path, symbols: list[str], progress_s: float = INTERVAL_S, guards: dict[str, Guard] | None = None
         ) -> tuple[Shard, int]:
    """The shard as of its last journaled command, and the byte offset where its good records end.

    Starts from the newest snapshot that restores (damaged ones are logged and skipped,
    falling back to older ones, then to empty books) and replays the journal records after
    it through `Shard.execute_encoded`, checking that each gives the journaled entry (byte for byte,
    or, for a journal of an older version whose messages had fewer fields, once decoded),
    logging how far it has got at most every ``progress_s`` seconds (looking at the clock
    every `RECORDS_PER_CHECK` records). A torn tail (bytes after
    the last good record in which no valid record starts) is moved to a side file and cut
    off by `Journal`. Raises `JournalDamaged` (a `RecoveryError`), changing nothing, if valid
    records follow a bad one or the bad one is CRC-valid; `RecoveryError` if the records it
    would need were discarded, ``discarded-before`` is damaged or a record names a symbol
    not in ``symbols``.
    """
    shard, offset, size = None, 0, journal_size(directory)
    if directory.is_dir():
        for snapshot in read_snapshots(directory):
            try:
                shard = Shard.restore(symbols, snapshot, guards)
            except ValueError as exc:
                log.warning("skipping snapshot %d: %s", snapshot.sequence, exc)
                continue
            beyond = beyond_the_journal(snapshot.journal_offset, size)
            if beyond is not None:
                log.warning("skipping snapshot %d: %s", snapshot.sequence, beyond)
                shard = None
                continue
            offset = snapshot.journal_offset
            break
    discarded = read_discarded(directory)
    if offset < discarded:
        raise RecoveryError(
            f"the journal records before byte {discarded} were discarded after a snapshot, and no readable "
            f"snapshot at or after that offset remains in {directory}"
        )
    shard = shard or Shard.empty(symbols, guards)
    shard.restored_offset = offset
    market_data: list = []
    end, throttle = offset, Throttle(progress_s)
    for record in read_records(directory, offset, shard.sequence, decode_entry):
        entry = record.command
        legacy = type(entry) is not JournalEntry
        time, command = (0, entry) if legacy else (entry.time, entry.command)
        try:
            payload, _, _ = shard.execute_encoded(record.sequence, time, command, market_data)
        except KeyError:
            raise RecoveryError(
                f"journal record {record.sequence} is for symbol {command.symbol!r}, not owned by this shard"
            ) from None
        if not legacy and payload != record.payload and not _same_entry(payload, record.payload):
            raise RecoveryError(
                f"journal record {record.sequence}: the book's events or market data differ from the journaled "
                "ones (a journal written by another version of the matching rules?); nothing was changed"
            )
        market_data.clear()
        end = record.end
        if not record.sequence % RECORDS_PER_CHECK and throttle.due():
            log.info("recovering: sequence %d, journal byte %d of %d (%d%% of the records to replay)",
                     record.sequence, end, size, percent(end - offset, size - offset))
    log.info("recovered sequence %d (journal replayed from byte %d to %d)", shard.sequence, offset, end)
    return shard, end


_entries = msgspec.msgpack.Decoder(JournalEntry)
_legacy = msgspec.msgpack.Decoder(BookCommand)


def _same_entry(produced: bytes, journaled: bytes) -> bool:
    """Whether two journal entries say the same once decoded: a journal written before messages
    gained trailing fields (the advanced orders') holds shorter arrays, which decode with the new
    fields' defaults (what the book gives for orders without them). Only asked when the bytes differ."""
    return _entries.decode(produced) == _entries.decode(journaled)


def decode_entry(payload: bytes) -> JournalEntry | BookCommand:
    """A journal record's payload: a `JournalEntry`, or the bare command of a journal written
    before entries (no time, events or market data); ValueError (msgspec's DecodeError) if neither."""
    try:
        return _entries.decode(payload)
    except msgspec.DecodeError:
        return _legacy.decode(payload)


