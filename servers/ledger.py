"""The trading engine server's book of record, `Ledger`, and its journal: what a TES restart keeps.

The ledger holds every order the TES routed and what the books said of it
(`servers.orders.OrderRegistry`), each trader's portfolio (`servers.portfolio`), the last
trade price and last answered sequence of every symbol, each trader's client order ids
(`servers.sessions.ClientOrderIds`: a trader's, across sessions), each trader's reports
(numbered 1, 2, 3... per trader; the last `REPORTS_KEPT` kept, to be sent again), the next
exchange order id, and the last sequence each book server answered with.

It changes only through `Ledger.apply(record)`. A record is a decision of the TES or
something it received, in the order it made or received them:

==============  ==============================================================
record          what happened
==============  ==============================================================
`Entered`       an order passed every check and is sent to its book
`Requested`     a cancel or replace is sent (the trader's, a mass cancel, or
                cancel-on-disconnect)
`Refused`       the TES itself refused a submission, cancel or replace
`Received`      a frame of replies from a book server (the frame as it came)
`Greeted`       a book server answered a Hello: commands it never journaled
                are refused if its replay was complete
`Unsent`        commands a book server's socket would not take: refused
`Delivered`     a session ended having been sent the trader's reports up to a number
`Marked`        a book server's market data said what a symbol last traded at
==============  ==============================================================

Last prices (which price bands and marks use) come from every trade of a symbol, not only
this TES's: its own fills (`Received`), each book server's marks feed (`Marked`: the last
trade of each symbol per loop turn of the book server, whoever traded) and the last prices a
book server names in its Hello reply (`Greeted`). Each carries the sequence it is as of, and
a price as of an older sequence than the one held is ignored, so the sources may arrive in
any order and several TES processes agree.

The live server builds each record, applies it (which gives the reports to send) and journals
it; the group of a loop turn is written to the TES journal (``tes.journal_dir``, the OBS's
format: `servers.journal`) before anything that follows from it leaves the process, and fsynced
before anything leaves but the reports of a lone book server's replies and, where it has a
journal stream to read them back from, the commands to it (`servers.tes`). Closing the journal
writes `STOPPED_FILE`; a journal opened without it was not closed (`LedgerJournal.unclean`).
Recovery applies the journaled records in order through the same `apply` (no clock is read:
times are in the records): the same state, the same reports with the same numbers. Then each
book server's Hello, naming the last sequence the ledger holds, brings the replies the TES
missed while it was down, and the commands in flight are answered.
"""

import logging
import re
import struct
import zlib
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import msgspec

from config.settings import JournalConfig
from engine.lifecycle import OrderState
from engine.progress import INTERVAL_S, RECORDS_PER_CHECK, Throttle, percent
from engine.types import CancelReason, OrderType, RejectReason, SelfTradePrevention, Side, TimeInForce
from native.framing import Records
from native.reports import Books, Kept, Reporter, keep
from servers import protocol as p
from servers.journal import (
    KEEP_SNAPSHOTS,
    DirectoryLock,
    Journal,
    JournalDamaged,
    JournalFailed,
    RecoveryError,
    beyond_the_journal,
    journal_size,
    read_discarded,
    read_records,
    sync_directory,
    write_atomically,
)
from servers.orders import REQUESTED, STOPS, Order, OrderRegistry, Report, Request, Trade
from servers.portfolio import Holding, Portfolio
from servers.sessions import ClientOrderIds

log = logging.getLogger(__name__)

ID_BITS = 48
ID_MASK = (1 << ID_BITS) - 1
STOPPED_FILE = "stopped"
"""Written when the TES journal is closed, durable to its end: the journal's length. Removed when
it is opened again."""
REPORTS_KEPT = 10_000
"""Each trader's latest reports kept to be sent again at a logon (older ones are not), in a
`native.reports.Kept`: their msgpack in one circular buffer."""
BUY, SELL = Side.BUY, Side.SELL
"""As plain names: on Python 3.11 ``Enum.MEMBER`` costs about 0.1 µs (``EnumType.__getattr__``)."""
SUBMISSION, CANCEL, REPLACE = 0, 1, 2
"""What a `Refused` refused."""
CONSUMES_ID = frozenset(RejectReason) - {RejectReason.MESSAGE_RATE_LIMIT, RejectReason.DUPLICATE_CLIENT_ORDER_ID,
                                          RejectReason.CLIENT_ORDER_IDS_OUT_OF_ORDER, RejectReason.NOT_LOGGED_ON,
                                          RejectReason.EXCHANGE_CLOSING}
"""The refusals of a submission that come after its client order id was checked: the id is used up
(and a refused cancel's or replace's, as its `Requested` would: `ClientOrderIds.note`)."""
NOTHING: tuple[tuple, tuple] = ((), ())
"""`Ledger.apply`'s answer to a record that makes no report and carries no reply."""


class Record(msgspec.Struct, frozen=True, gc=False, array_like=True, tag=True):
    """Base of the TES journal's records."""


class Entered(Record):
    trader: str
    client_order_id: int
    order_id: int
    symbol: str
    side: Side
    order_type: OrderType
    time_in_force: TimeInForce
    price: int
    quantity: int
    stop_price: int = 0
    display_quantity: int = 0
    flags: int = 0
    stp: SelfTradePrevention = SelfTradePrevention.NONE
    """The mode sent to the book (the order's, else the trader's default)."""
    expire_at: int = 0


class Requested(Record):
    trader: str
    order_id: int
    cancel: bool
    client_order_id: int
    reason: CancelReason


class Refused(Record):
    trader: str
    what: int
    """SUBMISSION, CANCEL or REPLACE."""
    client_order_id: int
    order_id: int
    """The order a cancel or replace named (0 for a submission)."""
    reason: RejectReason
    text: str
    time: int


class Received(Record):
    shard: str
    frame: bytes
    time: int
    """When it came (the time of a refusal it carries)."""


class Greeted(Record):
    shard: str
    symbols: list[str]
    max_order_id: int
    last_sequence: int
    replay_complete: bool
    time: int
    last_prices: dict[str, int] = {}
    """Each symbol's last trade price as of ``last_sequence`` (symbols that never traded are absent)."""


class Unsent(Record):
    commands: list[p.BookSubmit | p.BookCancel | p.BookReplace]
    time: int


class Delivered(Record):
    trader: str
    report: int


class Marked(Record):
    symbol: str
    sequence: int
    price: int
    """The symbol's last trade as of book sequence ``sequence``."""


LedgerRecord = Entered | Requested | Refused | Received | Greeted | Unsent | Delivered | Marked
LEDGER_RECORD = msgspec.msgpack.Decoder(LedgerRecord).decode
"""A ledger journal record's payload decoded."""


# ================================================================ the ledger as it stands (snapshots)


class OrderRow(msgspec.Struct, frozen=True, gc=False, array_like=True):
    """An order in a ledger snapshot: `servers.orders.Order`'s fields in its order, for a snapshot
    encodes the live orders themselves, as arrays (`Ledger.state`); its requests in flight as tuples."""

    order_id: int
    trader_id: str
    client_order_id: int
    symbol: str
    side: Side
    order_type: OrderType
    time_in_force: TimeInForce
    price: int
    quantity: int
    stop_price: int = 0
    display_quantity: int = 0
    flags: int = 0
    stp: SelfTradePrevention = SelfTradePrevention.NONE
    expire_at: int = 0
    held: bool = False
    filled: int = 0
    notional: int = 0
    state: OrderState = OrderState.PENDING
    requests: list[tuple[bool, int, CancelReason]] | None = None


class _OrderRowV1(msgspec.Struct, frozen=True, gc=False, array_like=True):
    """An order in a snapshot of version 1, read to upgrade it (`_from_version_1`)."""

    order_id: int
    trader: str
    client_order_id: int
    symbol: str
    side: Side
    order_type: OrderType
    time_in_force: TimeInForce
    price: int
    quantity: int
    filled: int
    notional: int
    state: OrderState
    requests: list[tuple[bool, int, CancelReason]]
    stop_price: int = 0
    display_quantity: int = 0
    flags: int = 0
    stp: SelfTradePrevention = SelfTradePrevention.NONE
    expire_at: int = 0
    held: bool = False


class HoldingRow(msgspec.Struct, frozen=True, gc=False, array_like=True):
    symbol: str
    quantity: int
    basis: int
    realized: int


class TraderRow(msgspec.Struct, frozen=True, gc=False, array_like=True):
    trader: str
    cash: int
    holdings: list[HoldingRow]
    contiguous: int
    """The trader's client order ids 1..contiguous were used, and ``others``."""
    others: list[int]
    number: int
    delivered: int
    kept: list[p.ClientMessage]
    """A live ledger's state has them as their msgpack array at once (`msgspec.Raw` of
    `native.reports.Kept.msgpack`), which encodes as the list does."""


class LedgerState(msgspec.Struct, frozen=True, array_like=True):
    """The whole ledger after journal record ``sequence``, whose successor starts at ``journal_offset``.

    ``orders`` is a list of `OrderRow` when read from a snapshot; `Ledger.state` makes it the
    orders' msgpack at once (`msgspec.Raw`), which encodes as that list does."""

    sequence: int
    journal_offset: int
    counter: int
    seen: dict[str, int | None]
    last_prices: dict[str, int]
    last_sequence: dict[str, int]
    orders: list[OrderRow]
    traders: list[TraderRow]
    marked: dict[str, int] = {}


class _LedgerStateV1(msgspec.Struct, frozen=True, array_like=True):
    """A snapshot of version 1, read to upgrade it (`_from_version_1`)."""

    sequence: int
    journal_offset: int
    counter: int
    seen: dict[str, int | None]
    last_prices: dict[str, int]
    last_sequence: dict[str, int]
    orders: list[_OrderRowV1]
    traders: list[TraderRow]
    marked: dict[str, int] = {}


def _from_version_1(state: _LedgerStateV1) -> LedgerState:
    """A snapshot of version 1 (its order rows in another order of fields) as the current one."""
    orders = [OrderRow(row.order_id, row.trader, row.client_order_id, row.symbol, row.side, row.order_type,
                       row.time_in_force, row.price, row.quantity, row.stop_price, row.display_quantity, row.flags,
                       row.stp, row.expire_at, row.held, row.filled, row.notional, row.state, row.requests or None)
              for row in state.orders]
    return LedgerState(state.sequence, state.journal_offset, state.counter, state.seen, state.last_prices,
                       state.last_sequence, orders, state.traders, state.marked)


def encode_state(state: LedgerState, encode=msgspec.msgpack.encode) -> bytes:
    """``state``'s msgpack, a snapshot's payload (a live ledger's orders and kept reports are
    already msgpack in it, `msgspec.Raw`, written as they are: a snapshot reads back as Structs)."""
    return encode(state)


def _order_row(value):
    """`encode_orders`' hook for what msgspec cannot encode itself: a live order, as the tuple of
    its `OrderRow` (`native.routed.Order.row`, in C)."""
    if type(value) is Order:
        return value.row()
    raise NotImplementedError(f"a ledger snapshot holds no {type(value).__name__}")


encode_orders = msgspec.msgpack.Encoder(enc_hook=_order_row).encode
"""The msgpack of a list of live `servers.orders.Order`s, each an array as its `OrderRow` would be:
about 0.3-0.4 µs an order on the AMD EPYC host (0.2-0.3 when the orders were msgspec Structs)."""


SNAPSHOT_NAME = re.compile(r"^ledger-(\d+)\.msgpack$")
SNAPSHOT_HEADER = struct.Struct("<4sIQI")
"""magic, format version, payload length, CRC-32 of the payload (as the OBS's snapshots)."""
SNAPSHOT_MAGIC, SNAPSHOT_VERSION = b"TESL", 2
"""Version 2: an order row has `servers.orders.Order`'s fields in its order (version 1's, read and
upgraded, had filled, notional, state and requests after quantity)."""


class Ledger:
    """The TES's state that must survive it (see the module docstring).

    Parameters
    ----------
    tes_id
        The TES's id: its exchange order ids are ``(tes_id << 48) | n``.
    shards
        Each book server's name and the symbols it owns.
    """

    def __init__(self, tes_id: int, shards: dict[str, list[str]]) -> None:
        self.tes_id = tes_id
        self.shard_symbols = {name: set(symbols) for name, symbols in shards.items()}
        self.numbers: dict[str, int] = {}
        """Each trader's last report number."""
        self.orders = OrderRegistry(self.numbers)
        self.portfolios: dict[str, Portfolio] = {}
        self.book_trades = Books(self.portfolios, Portfolio, Holding).book
        """`book` made in C (`native.reports.Books`); the tests give some ledgers `book`, the
        specification, and compare."""
        self.last_prices: dict[str, int] = {}
        self.marked: dict[str, int] = {}
        """Per symbol, the book sequence its last price is as of."""
        self.last_sequence: dict[str, int] = {}
        """Per symbol, the sequence of the last `Executed` applied (a book's replies sent again are skipped)."""
        self.client_order_ids: dict[str, ClientOrderIds] = {}
        self.kept: dict[str, Kept] = {}
        """Per trader, the latest reports, each as its msgpack (`keep`: a report made in C is
        already msgpack, a Struct is encoded as the TES sends it)."""
        self.delivered: dict[str, int] = {}
        """Per trader, the last report number a session that ended was sent."""
        self.counter = 1
        """The next exchange order id's counter."""
        self.seen: dict[str, int | None] = dict.fromkeys(shards)
        """Per book server, the last sequence it answered with (None before it first answered a Hello)."""
        self.reporter = Reporter(self, p.ObsReply, p.Executed, p.CommandRefused, p.OrderAccepted,
                                 p.OrderFilled, p.OrderCanceled)
        self.receive = self.reporter.receive
        """`_receive` made in C (`native.reports`); the tests give some ledgers `_receive`, the
        specification, and compare."""
        self._replies = msgspec.msgpack.Decoder(list[p.ObsReply])

    # ---------------------------------------------------------------- queries

    def portfolio(self, trader: str) -> Portfolio:
        portfolio = self.portfolios.get(trader)
        if portfolio is None:
            portfolio = self.portfolios[trader] = Portfolio()
        return portfolio

    def ids(self, trader: str) -> ClientOrderIds:
        ids = self.client_order_ids.get(trader)
        if ids is None:
            ids = self.client_order_ids[trader] = ClientOrderIds()
        return ids

    def next_order_id(self) -> int:
        return (self.tes_id << ID_BITS) | self.counter

    def state(self, sequence: int, journal_offset: int) -> LedgerState:
        """The ledger as it stands (after journal record ``sequence``), for a snapshot (`encode_state`):
        taken on the loop, so what grows with the orders is done in C, its orders encoded at once
        (`encode_orders`; the loop goes on changing them)."""
        orders = msgspec.Raw(encode_orders(list(self.orders.orders.values())))
        traders = []
        for trader in sorted(set(self.portfolios) | set(self.client_order_ids) | set(self.numbers) | set(self.kept)):
            portfolio, ids = self.portfolio(trader), self.ids(trader)
            traders.append(TraderRow(
                trader, portfolio.cash,
                [HoldingRow(symbol, h.quantity, h.basis, h.realized) for symbol, h in portfolio.holdings.items()],
                ids.contiguous, sorted(ids.others), self.numbers.get(trader, 0), self.delivered.get(trader, 0),
                msgspec.Raw(self.kept[trader].msgpack()) if trader in self.kept else [],
            ))
        return LedgerState(sequence, journal_offset, self.counter, dict(self.seen), dict(self.last_prices),
                           dict(self.last_sequence), orders, traders, dict(self.marked))

    def restore(self, state: LedgerState) -> None:
        """Become the ledger ``state`` describes (an empty ledger's)."""
        self.counter = state.counter
        self.seen.update(state.seen)
        self.last_prices.update(state.last_prices)
        self.marked.update(state.marked)
        self.last_sequence.update(state.last_sequence)
        for row in state.traders:
            portfolio = self.portfolio(row.trader)
            portfolio.cash = row.cash
            for held in row.holdings:
                holding = portfolio.holdings[held.symbol] = Holding()
                holding.quantity, holding.basis, holding.realized = held.quantity, held.basis, held.realized
            ids = self.ids(row.trader)
            ids.contiguous, ids.others = row.contiguous, set(row.others)
            self.numbers[row.trader] = row.number
            self.delivered[row.trader] = row.delivered
            keep(self.kept, [(row.trader, report) for report in row.kept], REPORTS_KEPT)
        for row in state.orders:
            order = Order(row.order_id, row.trader_id, row.client_order_id, row.symbol, row.side, row.order_type,
                          row.time_in_force, row.price, row.quantity, row.stop_price, row.display_quantity,
                          row.flags, row.stp, row.expire_at, row.held, row.filled, row.notional, row.state)
            if row.requests:
                order.requests = deque(Request(*request) for request in row.requests)
            self.orders.add(order)

    def keep_closed(self, keep: bool) -> None:
        """While ``keep``, closed orders stay in the registry (and its copy in C): a TES recovering
        from a crash of its machine may adopt a request the crash took from its journal for an
        order a reply read since then closed (`servers.tes.TradingEngineServer._catch_up`). When it
        ends, the closed orders no request awaits are forgotten, as they would have been."""
        registry = self.orders
        if not keep and registry.keep_closed:
            registry.forget_closed()
        registry.keep_closed = self.reporter.keep_closed = keep

    def reports_after(self, trader: str, number: int) -> list:
        """The trader's kept reports numbered after ``number``, oldest first."""
        kept = self.kept.get(trader)
        return [] if kept is None else kept.after(number)

    # ---------------------------------------------------------------- the one way to change it

    def apply(self, record) -> tuple[list[Report], list]:
        """Apply ``record``; the reports it makes (each kept for its trader) and, for a
        `Received`, the replies of its frame (for the server's own use: queries, Hello).
        An `Entered`, the record of every order, makes neither: it gets `NOTHING`."""
        kind = type(record)
        if kind is Entered:
            self.orders.add(Order(record.order_id, record.trader, record.client_order_id, record.symbol,
                                  record.side, record.order_type, record.time_in_force, record.price,
                                  record.quantity, record.stop_price, record.display_quantity, record.flags,
                                  record.stp, record.expire_at, record.order_type in STOPS))
            self.ids(record.trader).use(record.client_order_id)
            self.counter = max(self.counter, (record.order_id & ID_MASK) + 1)
            return NOTHING
        reports: list[Report] = []
        replies: list = []
        if kind is Received:
            replies = self.receive(record, reports)
        elif kind is Requested:
            if record.reason == REQUESTED:
                self.ids(record.trader).note(record.client_order_id)
            order = self.orders.orders.get(record.order_id)
            if order is not None:
                self.orders.request(order, record.cancel, record.client_order_id, record.reason)
        elif kind is Refused:
            reports.append((record.trader, self._refusal(record)))
        elif kind is Greeted:
            self._greeted(record, reports)
        elif kind is Unsent:
            self.orders.unsent(record.commands, reports, record.time)
        elif kind is Delivered:
            self.delivered[record.trader] = record.report
        elif kind is Marked:
            self.mark(record.symbol, record.sequence, record.price)
        else:
            raise TypeError(f"not a ledger record: {record!r}")
        keep(self.kept, reports, REPORTS_KEPT)
        return reports, replies

    def mark(self, symbol: str, sequence: int, price: int) -> None:
        """``symbol`` last traded at ``price`` as of book sequence ``sequence`` (older news is ignored)."""
        if sequence > self.marked.get(symbol, -1):
            self.marked[symbol] = sequence
            self.last_prices[symbol] = price

    def _receive(self, record: Received, reports: list[Report]) -> list:
        """A frame of replies applied: its reports appended to ``reports``; its replies other than
        `Executed` returned. The specification of `receive`, which hands it the frames it does not
        read itself."""
        replies = self._replies.decode(record.frame)
        trades: list[Trade] = []
        seen = self.seen.get(record.shard)
        last_sequence, apply = self.last_sequence, self.orders.apply
        marked: dict[str, tuple[int, int]] = {}
        for reply in replies:
            kind = type(reply)
            if kind is p.Executed:
                sequence, symbol = reply.sequence, reply.symbol
                if seen is not None and sequence > seen:
                    seen = sequence
                if sequence > last_sequence.get(symbol, -1):
                    last_sequence[symbol] = sequence
                    traded = len(trades)
                    apply(symbol, reply.events, reply.time, reports, trades)
                    if len(trades) > traded:
                        marked[symbol] = (sequence, trades[-1][1])
            elif kind is p.CommandRefused:
                self.orders.refused(reply, reports, record.time)
        self.seen[record.shard] = seen
        for symbol, (sequence, price) in marked.items():
            self.mark(symbol, sequence, price)
        self.book_trades(trades)
        return [reply for reply in replies if type(reply) is not p.Executed]

    def book(self, trades: list[Trade]) -> None:
        """Book each trade into the portfolios of its buyer and seller (None: not this TES's)."""
        for symbol, price, quantity, buyer, seller in trades:
            if buyer is not None:
                self.portfolio(buyer).fill(symbol, BUY, price, quantity)
            if seller is not None:
                self.portfolio(seller).fill(symbol, SELL, price, quantity)

    def _refusal(self, record: Refused):
        if record.what == SUBMISSION:
            if record.reason in CONSUMES_ID:
                self.ids(record.trader).use(record.client_order_id)
            return self.orders.rejected(record.trader, record.client_order_id, record.reason, record.text,
                                        record.time)
        if record.reason in CONSUMES_ID:
            self.ids(record.trader).note(record.client_order_id)
        kind = p.CancelRejected if record.what == CANCEL else p.ReplaceRejected
        return self.orders.request_rejected(kind, record.trader, record.client_order_id, record.order_id,
                                            record.reason, record.text, record.time)

    def _greeted(self, record: Greeted, reports: list[Report]) -> None:
        """A book server answered a Hello after the replies it sent again: a command sent on an
        earlier connection and still unanswered never reached its journal, and is refused
        (BOOK_UNAVAILABLE) unless the replay was incomplete (then its outcome is unknown)."""
        self.counter = max(self.counter, (record.max_order_id & ID_MASK) + 1)
        seen = self.seen.get(record.shard)
        if seen is None or seen > record.last_sequence:
            self.seen[record.shard] = record.last_sequence
        symbols = self.shard_symbols.get(record.shard, set())
        if record.replay_complete:
            self.orders.abandon(symbols, reports, record.time)
        else:
            unknown = self.orders.in_flight(symbols)
            if unknown:
                log.error("shard %s could not replay its answers to %d orders in flight: their outcome is unknown",
                          record.shard, unknown)
        for symbol, price in record.last_prices.items():
            self.mark(symbol, record.last_sequence, price)
        for symbol in record.symbols:
            if symbol in self.last_sequence:
                self.last_sequence[symbol] = min(self.last_sequence[symbol], record.last_sequence)


class LedgerJournal:
    """The TES journal: records are appended in groups, the whole of a loop turn before
    anything it led to is sent. Opening it rebuilds the ledger: from the newest readable
    snapshot (``ledger-<sequence>.msgpack``, the newest `KEEP_SNAPSHOTS` kept), then the
    records after it. Every ``snapshot_every`` records a snapshot is taken (on the loop: a
    copy of the ledger's rows) and written by a writer thread, after which the journal before
    the older kept snapshot is discarded (`servers.journal.Journal.discard_before`).

    The directory's lock is taken before anything in it is read (`servers.journal.DirectoryInUse`
    if another TES holds it) and released by `close`. While the records are replayed, how far
    it has got is logged at most every ``progress_s`` seconds."""

    def __init__(self, directory: Path, config: JournalConfig, ledger: Ledger, progress_s: float = INTERVAL_S) -> None:
        self.directory = directory
        self.ledger = ledger
        self.snapshot_every = config.snapshot_every
        self._encode = msgspec.msgpack.Encoder().encode
        lock = DirectoryLock(directory, "the TES journal directory")
        try:
            self.sequence, offset = _restore_newest(directory, ledger)
            discarded = read_discarded(directory)
            if offset < discarded:
                raise RecoveryError(f"the ledger's journal before byte {discarded} was discarded and no readable "
                                    f"snapshot at or after it remains in {directory}")
            end, records, throttle = offset, 0, Throttle(progress_s)
            for record in read_records(directory, offset, self.sequence, LEDGER_RECORD):
                ledger.apply(record.command)
                self.sequence, end, records = record.sequence, record.end, records + 1
                if not records % RECORDS_PER_CHECK and throttle.due():
                    size = journal_size(directory)
                    log.info("recovering the ledger: sequence %d, journal byte %d of %d (%d%% of the records to "
                             "replay)", self.sequence, end, size, percent(end - offset, size - offset))
            stopped = _stopped_at(directory, end)
        except JournalDamaged as exc:
            lock.release()
            raise RecoveryError(exc.message("TES", "--tes")) from None
        except BaseException:
            lock.release()
            raise
        self.unclean = bool(records or offset) and not stopped
        """The journal holds records and the last process to use it did not close it (a crash:
        of the process, or of the machine, which may have lost records written but not yet
        fsynced; see `servers.tes`)."""
        self.journal = Journal(directory, config, end, lock)
        self.snapshot_sequence = self.sequence
        self._snapshot_offsets: deque[int] = deque([offset] if offset else [], maxlen=KEEP_SNAPSHOTS)
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ledger-snapshot")
        self._written: Future | None = None
        self.pending = Records()
        """The records queued for the next `write`, framed as they come: `add` queues them, and the
        TES's order entry in C (`native.entry`) frames its `Entered` records here as it writes them."""
        if records or offset:
            log.info("ledger recovered at journal record %d (%d replayed after the snapshot, %s)", self.sequence,
                     records, directory)

    def add(self, record) -> None:
        """Queue ``record`` (already applied) for the next `write`."""
        self.sequence += 1
        self.pending.add(self.sequence, self._encode(record))

    def write(self, sync: bool = True) -> bool:
        """Write the queued records with one write (fsync per policy; with ``sync`` False the
        "batch" policy's fsync is the caller's: ``journal.flush`` or ``journal.request_sync``);
        False if the journal cannot take them
        (raises `servers.journal.JournalFailed` after a failed fsync). Takes a snapshot every
        ``snapshot_every`` records."""
        if not self.pending:
            return True
        if not self.journal.append(self.pending, sync):
            return False
        self.pending.clear()
        if self.sequence - self.snapshot_sequence >= self.snapshot_every and (
                self._written is None or self._written.done()):
            self.snapshot_sequence = self.sequence
            state = self.ledger.state(self.sequence, self.journal.offset)
            self._written = self._writer.submit(self._write_snapshot, state)
        return True

    def _write_snapshot(self, state: LedgerState) -> None:
        """On the writer thread: the journal durable up to the snapshot, the snapshot, then the
        journal before the older kept one discarded. A failure is logged: the journal alone
        still rebuilds the ledger. So is a state msgpack cannot carry (a portfolio's cash or
        P&L beyond 64 bits, which Python's ints allow and the journal's records never hold)."""
        try:
            self.journal.sync_to(state.journal_offset)
            payload = encode_state(state, self._encode)
            header = SNAPSHOT_HEADER.pack(SNAPSHOT_MAGIC, SNAPSHOT_VERSION, len(payload), zlib.crc32(payload))
            write_atomically(self.directory / f"ledger-{state.sequence}.msgpack", header, payload, paced=True)
            for old in ledger_snapshot_paths(self.directory)[KEEP_SNAPSHOTS:]:
                old.unlink()
            self._snapshot_offsets.append(state.journal_offset)
            if len(self._snapshot_offsets) == KEEP_SNAPSHOTS:
                self.journal.discard_before(self._snapshot_offsets[0])
        except (OSError, JournalFailed) as exc:
            log.error("ledger snapshot at record %d not written: %s", state.sequence, exc)
        except OverflowError as exc:
            log.error("ledger snapshot at record %d not written: %s (a value beyond 64 bits in the ledger; the "
                      "journal alone rebuilds it)", state.sequence, exc)

    def close(self) -> None:
        """Close the journal, everything written durable, and say so in `STOPPED_FILE` (not
        after a failed fsync)."""
        self._writer.shutdown(wait=True)
        self.journal.close(STOPPED_FILE)


def _stopped_at(directory: Path, end: int) -> bool:
    """Whether `STOPPED_FILE` says the journal was closed at byte ``end``, where its records end
    now; the file is removed, durably, either way (the journal is about to be written again)."""
    path = directory / STOPPED_FILE
    try:
        stopped = path.read_bytes()
    except FileNotFoundError:
        return False
    path.unlink()
    sync_directory(directory)
    return stopped == f"{end}\n".encode()


def ledger_snapshot_paths(directory: Path) -> list[Path]:
    """The ledger snapshots, newest first."""
    found = []
    for path in directory.glob("ledger-*.msgpack") if directory.is_dir() else ():
        match = SNAPSHOT_NAME.match(path.name)
        if match:
            found.append((int(match.group(1)), path))
    return [path for _, path in sorted(found, reverse=True)]


_SNAPSHOT_DECODERS = {SNAPSHOT_VERSION: msgspec.msgpack.Decoder(LedgerState).decode,
                      1: lambda payload: _from_version_1(msgspec.msgpack.decode(payload, type=_LedgerStateV1))}
"""A ledger snapshot's payload decoded, by format version."""


def read_ledger_snapshot(path: Path) -> LedgerState:
    """The ledger state the snapshot file ``path`` holds; ValueError, saying why, if it is
    damaged or not a ledger snapshot (OSError if it cannot be read)."""
    data = path.read_bytes()
    if len(data) < SNAPSHOT_HEADER.size:
        raise ValueError("shorter than its header")
    magic, version, length, crc = SNAPSHOT_HEADER.unpack_from(data)
    payload = memoryview(data)[SNAPSHOT_HEADER.size:]
    if magic != SNAPSHOT_MAGIC or version not in _SNAPSHOT_DECODERS:
        raise ValueError(f"not a ledger snapshot of version {' or '.join(map(str, sorted(_SNAPSHOT_DECODERS)))}")
    if len(payload) != length or zlib.crc32(payload) != crc:
        raise ValueError("its length or CRC does not match")
    try:
        return _SNAPSHOT_DECODERS[version](payload)
    except msgspec.DecodeError as exc:
        raise ValueError(f"it does not decode ({exc})") from None


def _restore_newest(directory: Path, ledger: Ledger) -> tuple[int, int]:
    """Restore ``ledger`` from the newest readable snapshot whose journal offset the journal
    reaches (others are logged and skipped, as a book server skips its own); (its journal
    sequence, where the journal continues), (0, 0) without one."""
    size = journal_size(directory)
    for path in ledger_snapshot_paths(directory):
        try:
            state = read_ledger_snapshot(path)
        except ValueError as exc:
            log.warning("skipping ledger snapshot %s: %s", path, exc)
            continue
        beyond = beyond_the_journal(state.journal_offset, size)
        if beyond is not None:
            log.warning("skipping ledger snapshot %s: %s", path, beyond)
            continue
        ledger.restore(state)
        return state.sequence, state.journal_offset
    return 0, 0
