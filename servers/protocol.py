"""Every message between processes: frozen msgspec Structs, one tagged union per direction.

Frames
------
Every socket carries msgpack. One payload frame holds a *list* of messages of its
direction's union, so a sender may batch many messages in one frame; a single
message travels as a list of one. ROUTER sockets see ``[identity, payload]``,
DEALER sockets ``[payload]``. A market-data subscriber's DEALER receives ``[topic, payload]``:
a symbol's market data under its topic ``SYMBOL.``, the answers to its subscriptions under
`CONTROL_TOPIC`; a TES's DEALER receives its marks as ``[MARKS_TOPIC, payload]``.

=====================  ==================  =====================================
socket pair            direction           union
=====================  ==================  =====================================
client DEALER -> TES   client requests     `ClientRequest`
TES ROUTER -> client   replies, reports    `ClientMessage`
TES DEALER -> OBS      book commands       `ObsRequest`
OBS ROUTER -> TES      execution results   `ObsReply`; `Mark` (topic `MARKS_TOPIC`)
subscriber -> OBS      subscriptions       `SubscriptionRequest`
OBS ROUTER -> subscr.  market data         `MarketData` (topic ``SYMBOL.``);
                                           `SubscriptionReply` (topic `CONTROL_TOPIC`)
subscriber -> OBS      snapshot request    `SnapshotRequest` / `DepthSnapshot`
=====================  ==================  =====================================

Prices are integers in ticks, quantities integers in lots, everywhere. Every reject
carries a numbered `RejectReason` code and its text. New fields get defaults and go
last (the messages are positional arrays on the wire). Codecs are built once per
process from `Codec`.
"""

import hashlib
from bisect import bisect_right
from enum import IntEnum
from itertools import accumulate
from typing import Annotated

import msgspec

from engine.instrument import Instrument
from engine.lifecycle import OrderState
from engine.messages import Event
from engine.types import CancelReason, OrderType, Phase, RejectReason, SelfTradePrevention, Side, TimeInForce

PROTOCOL_VERSION = 1
MAX_FRAME_BYTES = 1 << 20
"""A payload frame from a client larger than this is refused unread; senders split
their lists into frames of at most this size where they can (`join_frames`)."""
MAX_SERVER_FRAME_BYTES = 1 << 28
"""The limit on frames a server sends (book replies, market data, snapshots, reports).
One message can exceed MAX_FRAME_BYTES and cannot be split: a market order sweeping
20,000 resting orders is one `Executed` of 20,000 fills, a deep book one snapshot."""
MAX_BATCH = 10_000
"""At most this many messages in one frame."""

Id = Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)]
"""Any int64: what the books take (msgpack itself carries integers up to 2**64 - 1). Prices,
quantities and exchange order ids are this wide, so that a bad value gets the numbered
reject of the rule it breaks (quantity must be positive, no live order with this id...)."""
ClientOrderId = Annotated[int, msgspec.Meta(ge=1, le=2**63 - 1)]
"""A client's own order and request ids: positive int64 (1, 2, 3... as the client library sends)."""
RequestId = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]
"""A query's id, echoed in its answer."""
Symbol = Annotated[str, msgspec.Meta(min_length=1, max_length=16)]
Text = Annotated[str, msgspec.Meta(max_length=256)]
Account = Annotated[str, msgspec.Meta(max_length=64)]
"""Who entered an order, as the journal and the recorder name it: the trader id of its session."""
Time = int
"""Exchange time: nanoseconds since the Unix epoch, UTC. The OBS stamps each command when it
sequences it (`JournalEntry.time`); everything that command produced carries that stamp."""


class Message(msgspec.Struct, frozen=True, gc=False, array_like=True, tag=True):
    """Base of every wire message: positional, tagged with its class name."""


# ================================================================ client -> TES


class Logon(Message):
    trader_id: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    api_key: Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
    cancel_on_disconnect: bool = False
    after_report: Annotated[int, msgspec.Meta(ge=-1, le=2**63 - 1)] = -1
    """Send again the kept reports numbered after this one; -1: those made while the trader
    had no session (the server knows which)."""


class Logout(Message):
    pass


class Heartbeat(Message):
    pass


class EnterOrder(Message):
    client_order_id: ClientOrderId
    symbol: Symbol
    side: Side
    order_type: OrderType
    time_in_force: TimeInForce
    price: Id
    """Limit price in ticks (LIMIT, STOP_LIMIT); 0 for a market or stop order."""
    quantity: Id
    stop_price: Id = 0
    """STOP and STOP_LIMIT: the trigger price in ticks (a buy stop triggers when a trade prints at
    or above it, a sell stop at or below it)."""
    display_quantity: Id = 0
    """An iceberg (LIMIT): the most of it shown in the book at once; 0 shows all of it."""
    flags: Id = 0
    """`engine.types.OrderFlags` bits: POST_ONLY (1), a limit order refused if it would trade on arrival."""
    stp: SelfTradePrevention | None = None
    """Self-trade prevention against resting orders of the trader's account; None: the trader's default."""
    expire_at: Id = 0
    """Time in force GTD: when the order expires, in nanoseconds since the Unix epoch, UTC (exchange time)."""


class CancelOrder(Message):
    client_order_id: ClientOrderId
    order_id: Id
    """The exchange order id to cancel."""


class ReplaceOrder(Message):
    client_order_id: ClientOrderId
    order_id: Id
    price: Id
    quantity: Id
    """The new open quantity."""


class MassCancel(Message):
    symbol: Annotated[str, msgspec.Meta(max_length=16)] = ""
    """Cancel every open order of this trader in ``symbol``; "" means all symbols."""


class QueryOpenOrders(Message):
    request_id: RequestId


class QueryPositions(Message):
    request_id: RequestId


class QueryBook(Message):
    request_id: RequestId
    symbol: Symbol
    levels: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 10


class QueryInstruments(Message):
    request_id: RequestId


ClientRequest = (
    Logon
    | Logout
    | Heartbeat
    | EnterOrder
    | CancelOrder
    | ReplaceOrder
    | MassCancel
    | QueryOpenOrders
    | QueryPositions
    | QueryBook
    | QueryInstruments
)


# ================================================================ TES -> client


class LogonAccepted(Message):
    trader_id: str
    heartbeat_ms: int
    session_timeout_ms: int
    next_client_order_id: int = 1
    """The trader's first client order id not used yet (ids are the trader's, across sessions)."""
    last_report: int = 0
    """The number of the trader's latest report."""


class LogonRejected(Message):
    reason: RejectReason
    text: str


class SessionRejected(Message):
    """A frame or request refused before it reached order handling (bad bytes, no logon...)."""

    reason: RejectReason
    text: str


class EndReason(IntEnum):
    """Why the TES ended a session (`LoggedOut`)."""

    LOGOUT = 1
    TIMEOUT = 2
    REPLACED = 3
    SHUTDOWN = 4
    SLOW_CONSUMER = 5
    ACCESS_REVOKED = 6

    @property
    def text(self) -> str:
        return END_TEXT[self]


END_TEXT = {
    EndReason.LOGOUT: "logged out",
    EndReason.TIMEOUT: "session timed out: nothing received within the session timeout",
    EndReason.REPLACED: "replaced by a new logon of the same trader",
    EndReason.SHUTDOWN: "the exchange is shutting down",
    EndReason.SLOW_CONSUMER: "the session's output queue is full: the client is not reading what it is sent",
    EndReason.ACCESS_REVOKED: "the trader's access was revoked (no active API key)",
}


class LoggedOut(Message):
    reason: EndReason
    text: Text


class OrderAccepted(Message):
    client_order_id: int
    order_id: int
    symbol: str
    side: Side
    order_type: OrderType
    time_in_force: TimeInForce
    price: int
    quantity: int
    time: Time = 0
    """When the book acted (the command's exchange time), or when the TES refused."""
    report: int = 0
    """The trader's report number: 1, 2, 3... over the exchange's life (`servers.ledger`)."""
    status: OrderState | None = None
    """The order's state after this report (`engine.lifecycle`)."""
    filled: int = 0
    """The order's cumulative filled quantity."""
    leaves: int = 0
    """The order's open quantity."""
    average_price: float = 0.0
    """The average price of its fills, in ticks (0: none)."""
    stop_price: int = 0
    display_quantity: int = 0
    flags: int = 0
    stp: SelfTradePrevention = SelfTradePrevention.NONE
    expire_at: Time = 0
    """The advanced fields as the book keeps them (0 where the order type ignores one; a STOP's
    time in force is GTC: it never expires); ``stp`` is the mode in force (the trader's default
    when the order named none)."""


class OrderRejected(Message):
    client_order_id: int
    reason: RejectReason
    text: str
    time: Time = 0
    """When the book acted (the command's exchange time), or when the TES refused."""
    report: int = 0
    """The trader's report number: 1, 2, 3... over the exchange's life (`servers.ledger`)."""
    status: OrderState | None = None
    """The order's state after this report (`engine.lifecycle`)."""
    filled: int = 0
    """The order's cumulative filled quantity."""
    leaves: int = 0
    """The order's open quantity."""
    average_price: float = 0.0
    """The average price of its fills, in ticks (0: none)."""


class OrderFilled(Message):
    client_order_id: int
    order_id: int
    symbol: str
    side: Side
    price: int
    quantity: int
    leaves: int
    """This order's open quantity after the fill."""
    trade_id: int
    """The book's trade sequence number; with the symbol it identifies the trade."""
    aggressor: bool
    """True if this order was the taker."""
    time: Time = 0
    """When the book acted (the command's exchange time), or when the TES refused."""
    report: int = 0
    """The trader's report number: 1, 2, 3... over the exchange's life (`servers.ledger`)."""
    status: OrderState | None = None
    """The order's state after this report (`engine.lifecycle`)."""
    filled: int = 0
    """The order's cumulative filled quantity."""
    average_price: float = 0.0
    """The average price of its fills, in ticks (0: none)."""


class OrderCanceled(Message):
    client_order_id: int
    order_id: int
    symbol: str
    quantity: int
    reason: CancelReason
    time: Time = 0
    """When the book acted (the command's exchange time), or when the TES refused."""
    report: int = 0
    """The trader's report number: 1, 2, 3... over the exchange's life (`servers.ledger`)."""
    status: OrderState | None = None
    """The order's state after this report (`engine.lifecycle`)."""
    filled: int = 0
    """The order's cumulative filled quantity."""
    leaves: int = 0
    """The order's open quantity."""
    average_price: float = 0.0
    """The average price of its fills, in ticks (0: none)."""


class OrderReplaced(Message):
    client_order_id: int
    order_id: int
    symbol: str
    price: int
    quantity: int
    priority_kept: bool
    time: Time = 0
    """When the book acted (the command's exchange time), or when the TES refused."""
    report: int = 0
    """The trader's report number: 1, 2, 3... over the exchange's life (`servers.ledger`)."""
    status: OrderState | None = None
    """The order's state after this report (`engine.lifecycle`)."""
    filled: int = 0
    """The order's cumulative filled quantity."""
    leaves: int = 0
    """The order's open quantity."""
    average_price: float = 0.0
    """The average price of its fills, in ticks (0: none)."""


class OrderExpired(Message):
    client_order_id: int
    order_id: int
    symbol: str
    quantity: int
    time: Time = 0
    """When the book acted (the command's exchange time), or when the TES refused."""
    report: int = 0
    """The trader's report number: 1, 2, 3... over the exchange's life (`servers.ledger`)."""
    status: OrderState | None = None
    """The order's state after this report (`engine.lifecycle`)."""
    filled: int = 0
    """The order's cumulative filled quantity."""
    leaves: int = 0
    """The order's open quantity."""
    average_price: float = 0.0
    """The average price of its fills, in ticks (0: none)."""


class StopTriggered(Message):
    """A held stop order was released: a trade printed at ``last_price``, reaching its stop price.
    It now trades as a market order (STOP, immediate or cancel) or a limit order (STOP_LIMIT), with
    time priority from now; its fills and its remainder's fate follow."""

    client_order_id: int
    order_id: int
    symbol: str
    last_price: int
    time: Time = 0
    """When the book acted (the command's exchange time), or when the TES refused."""
    report: int = 0
    """The trader's report number: 1, 2, 3... over the exchange's life (`servers.ledger`)."""
    status: OrderState | None = None
    """The order's state after this report (`engine.lifecycle`)."""
    filled: int = 0
    """The order's cumulative filled quantity."""
    leaves: int = 0
    """The order's open quantity."""
    average_price: float = 0.0
    """The average price of its fills, in ticks (0: none)."""


class OrderDecremented(Message):
    """Self-trade prevention (DECREMENT) met this order and one of the same account: both shrank
    by ``quantity`` without a trade. ``leaves`` 0: the order is gone (its status CANCELED)."""

    client_order_id: int
    order_id: int
    symbol: str
    quantity: int
    """The quantity removed."""
    time: Time = 0
    """When the book acted (the command's exchange time), or when the TES refused."""
    report: int = 0
    """The trader's report number: 1, 2, 3... over the exchange's life (`servers.ledger`)."""
    status: OrderState | None = None
    """The order's state after this report (`engine.lifecycle`)."""
    filled: int = 0
    """The order's cumulative filled quantity."""
    leaves: int = 0
    """The order's open quantity."""
    average_price: float = 0.0
    """The average price of its fills, in ticks (0: none)."""


class CancelRejected(Message):
    client_order_id: int
    order_id: int
    reason: RejectReason
    text: str
    time: Time = 0
    """When the book acted (the command's exchange time), or when the TES refused."""
    report: int = 0
    """The trader's report number: 1, 2, 3... over the exchange's life (`servers.ledger`)."""
    status: OrderState | None = None
    """The order's state after this report (`engine.lifecycle`)."""
    filled: int = 0
    """The order's cumulative filled quantity."""
    leaves: int = 0
    """The order's open quantity."""
    average_price: float = 0.0
    """The average price of its fills, in ticks (0: none)."""


class ReplaceRejected(Message):
    client_order_id: int
    order_id: int
    reason: RejectReason
    text: str
    time: Time = 0
    """When the book acted (the command's exchange time), or when the TES refused."""
    report: int = 0
    """The trader's report number: 1, 2, 3... over the exchange's life (`servers.ledger`)."""
    status: OrderState | None = None
    """The order's state after this report (`engine.lifecycle`)."""
    filled: int = 0
    """The order's cumulative filled quantity."""
    leaves: int = 0
    """The order's open quantity."""
    average_price: float = 0.0
    """The average price of its fills, in ticks (0: none)."""


class MassCancelDone(Message):
    symbol: str
    canceled: int
    """Orders whose cancel was sent to the books; each is reported by its own OrderCanceled."""


class OpenOrder(msgspec.Struct, frozen=True, gc=False, array_like=True):
    client_order_id: int
    order_id: int
    symbol: str
    side: Side
    time_in_force: TimeInForce
    price: int
    quantity: int
    """Open quantity (an iceberg's hidden part included)."""
    filled: int
    order_type: OrderType = OrderType.LIMIT
    stop_price: int = 0
    display_quantity: int = 0
    flags: int = 0
    stp: SelfTradePrevention = SelfTradePrevention.NONE
    expire_at: Time = 0
    held: bool = False
    """A stop or stop-limit order not triggered yet (outside the book, waiting for its stop price)."""


class OpenOrders(Message):
    """One page of a QueryOpenOrders answer; a long answer is several pages, the final one ``last``."""

    request_id: int
    orders: list[OpenOrder]
    last: bool = True


class Position(msgspec.Struct, frozen=True, gc=False, array_like=True):
    symbol: str
    quantity: int
    """Signed: positive long, negative short."""
    average_price: float
    """Average entry price of the open position in ticks (0 when flat)."""
    realized_pnl: int
    """In ticks x lots."""
    unrealized_pnl: int
    """Marked to the symbol's last trade, in ticks x lots."""
    last_price: int


class Positions(Message):
    request_id: int
    cash: int
    """Cash in ticks x lots: sales add price x quantity, purchases subtract it."""
    positions: list[Position]


class PhaseReason(IntEnum):
    """Why a book's trading phase changed (`BookSetPhase`, `PhaseUpdate`)."""

    OPERATOR = 0
    """``python main.py phase``, ``halt --all`` or ``resume --all``."""
    SCHEDULE = 1
    """The instrument's trading schedule in the configuration."""
    VOLATILITY = 2
    """A volatility interruption: into a call when a trade printed outside the instrument's band,
    and back to continuous trading (uncrossing) when the interruption's time is up."""


class Book(Message):
    request_id: int
    symbol: str
    bids: list[tuple[int, int, int]]
    """(price, quantity, orders), best first."""
    asks: list[tuple[int, int, int]]
    last_price: int | None
    sequence: int
    """The symbol's market-data sequence number this view corresponds to."""
    phase: Phase = Phase.CONTINUOUS
    indicative_price: int = 0
    indicative_volume: int = 0
    """The indicative uncross in a call or a halt (0 and 0: none)."""
    phase_reason: PhaseReason | None = None
    phase_until: Time = 0
    """Why the book is in ``phase`` (None: no phase command yet) and, in a volatility
    interruption's call, when it ends."""


class Instruments(Message):
    request_id: int
    instruments: list[Instrument]


class QueryRejected(Message):
    request_id: int
    reason: RejectReason
    text: str


ClientMessage = (
    LogonAccepted
    | LogonRejected
    | SessionRejected
    | LoggedOut
    | Heartbeat
    | OrderAccepted
    | OrderRejected
    | OrderFilled
    | OrderCanceled
    | OrderReplaced
    | OrderExpired
    | StopTriggered
    | OrderDecremented
    | CancelRejected
    | ReplaceRejected
    | MassCancelDone
    | OpenOrders
    | Positions
    | Book
    | Instruments
    | QueryRejected
)


# ================================================================ TES <-> OBS


class Hello(Message):
    """A TES introduces itself; the OBS answers with the replies it missed, then HelloReply."""

    tes_id: Annotated[int, msgspec.Meta(ge=1, le=65535)]
    seen: Id | None = None
    """The last shard sequence this TES received a reply for: the OBS first sends again
    every reply after it that concerns the TES. None: a TES with nothing in flight."""
    replay: bool = True
    """False: send nothing again and answer ``replay_complete`` False, so the TES reads what it
    missed from the journal stream, which carries the commands as well as the replies: a TES that
    sends commands before its own record of them is durable adopts those a crash of its machine
    took (`servers.tes.TradingEngineServer._catch_up`)."""


class HelloReply(Message):
    symbols: list[str]
    max_order_id: int
    """The largest order id the OBS ever accepted with this TES's id prefix (0 if none)."""
    last_sequence: int
    replay_complete: bool = True
    """Every reply after ``Hello.seen`` was sent again; False: the OBS's history did not
    reach back that far, so some commands the TES sent have an unknown outcome."""
    last_prices: dict[str, int] = {}
    """Each symbol's last trade price as of ``last_sequence`` (symbols that never traded are absent)."""


class BookSubmit(Message):
    symbol: Symbol
    order_id: Id
    side: Id
    order_type: Id
    time_in_force: Id
    price: Id
    quantity: Id
    account: Account = ""
    """"" in journals written before orders carried their account."""
    client_order_id: Id = 0
    """The client's id for the order, so the journal says who asked what (0: not known)."""
    stop_price: Id = 0
    display_quantity: Id = 0
    flags: Id = 0
    owner: Id = 0
    """The book's self-trade prevention owner: `owner_of` the trader's account (0: none, as in
    journals written before it)."""
    stp: Id = 0
    """The `SelfTradePrevention` mode in force: the order's, else its trader's default."""
    expire_at: Id = 0
    """GTD: exchange time (ns since the epoch, UTC), which is the book's logical clock."""


def owner_of(account: str) -> int:
    """The book's self-trade prevention owner of ``account``: 63 bits of its BLAKE2b hash, never 0.

    Stable across processes, restarts and versions (it is journaled and compared on recovery), so
    every TES gives the traders of one account the same owner. Two distinct accounts share an
    owner with probability about 2**-63 per pair.
    """
    digest = hashlib.blake2b(account.encode(), digest_size=8, person=b"exchange-stp").digest()
    return (int.from_bytes(digest, "big") >> 1) or 1


class BookCancel(Message):
    symbol: Symbol
    order_id: Id
    client_order_id: Id = 0
    """The client's id for this cancel request (0: none; the TES cancels on its own)."""
    reason: CancelReason = CancelReason.REQUESTED
    """Why the TES asks: the trader did, a mass cancel, or cancel-on-disconnect."""


class BookReplace(Message):
    symbol: Symbol
    order_id: Id
    price: Id
    quantity: Id
    client_order_id: Id = 0
    """The client's id for this replace request."""


class BookExpireDay(Message):
    symbol: Symbol


class BookSetClock(Message):
    """The book's logical clock moves to ``time`` (exchange time, ns), expiring the GTD orders due
    by then. The OBS makes these itself (`servers.shard.Shard.due`), never a TES; journaled."""

    symbol: Symbol
    time: Id


class BookSetPhase(Message):
    """The book's trading phase becomes ``phase`` (`engine.types.Phase`); into CONTINUOUS from a call
    or a halt the book uncrosses. From the operator, or made by the OBS itself (its schedule, a
    volatility interruption); journaled, so recovery replays every change where it happened."""

    symbol: Symbol
    phase: Id
    reason: PhaseReason = PhaseReason.OPERATOR
    until: Id = 0
    """A volatility interruption's call: the exchange time (ns) it ends at; 0 otherwise."""


class BookQuery(Message):
    """Ask for a depth view of a symbol's book (answered with BookView, not journaled)."""

    request_id: RequestId
    symbol: Symbol
    levels: Annotated[int, msgspec.Meta(ge=0, le=1_000_000)]


ObsRequest = Hello | BookSubmit | BookCancel | BookReplace | BookExpireDay | BookSetPhase | BookQuery
BookCommand = BookSubmit | BookCancel | BookReplace | BookExpireDay | BookSetClock | BookSetPhase
"""The commands an OBS sequences and journals: BookSubmit, BookCancel and BookReplace from a TES;
BookExpireDay and BookSetPhase from the operator; BookSetClock, and BookSetPhase by schedule or
volatility interruption, made by the OBS itself."""


class Executed(Message):
    """The result of one journaled command: its sequence number and the book's events."""

    sequence: int
    symbol: str
    events: list[Event]
    time: Time = 0
    """The command's exchange time: every event here happened then."""


class CommandRefused(Message):
    """A command the OBS could not run at all (unknown symbol); nothing was journaled."""

    symbol: str
    order_id: int
    reason: RejectReason
    text: str


class BookView(Message):
    request_id: int
    symbol: str
    bids: list[tuple[int, int, int]]
    asks: list[tuple[int, int, int]]
    last_price: int | None
    sequence: int
    phase: Phase = Phase.CONTINUOUS
    indicative_price: int = 0
    indicative_volume: int = 0
    phase_reason: PhaseReason | None = None
    phase_until: Time = 0


ObsReply = HelloReply | Executed | CommandRefused | BookView


# ================================================================ market data


class Quote(Message):
    """Top of book after a change (L1); 0 price and quantity for an empty side."""

    symbol: str
    sequence: int
    bid_price: int
    bid_quantity: int
    ask_price: int
    ask_quantity: int
    time: Time = 0
    """The exchange time of the command that changed the book."""


class DepthUpdate(Message):
    """One price level's new state (L2 delta); quantity 0 means the level is gone."""

    symbol: str
    sequence: int
    side: Side
    price: int
    quantity: int
    orders: int
    time: Time = 0
    """The exchange time of the command that changed the book."""


class Trade(Message):
    symbol: str
    sequence: int
    trade_id: int
    price: int
    quantity: int
    aggressor: Side
    time: Time = 0
    """The exchange time of the command that changed the book."""


class PhaseUpdate(Message):
    """The symbol's trading phase changed (published before the uncross's summary and trades)."""

    symbol: str
    sequence: int
    phase: Phase
    reason: PhaseReason
    until: Time = 0
    """A volatility interruption's call: when it ends; 0 otherwise."""
    time: Time = 0


class Indicative(Message):
    """In a call or a halt: the price and volume the book would uncross at now
    (``book.indicative_uncross()``), published whenever either changes; 0 and 0: nothing would trade."""

    symbol: str
    sequence: int
    price: int
    volume: int
    time: Time = 0


class AuctionSummary(Message):
    """An uncross: its one price and the volume traded, published once, before its `Trade`s."""

    symbol: str
    sequence: int
    price: int
    volume: int
    time: Time = 0


MarketData = Quote | DepthUpdate | Trade | PhaseUpdate | Indicative | AuctionSummary


class Mark(Message):
    """A symbol's last trade price as of journal ``sequence`` (the command's, not market data's)."""

    symbol: str
    sequence: int
    price: int


MARKS_TOPIC = b"\x00marks"
"""The first part of a marks frame ``[MARKS_TOPIC, payload]`` from a book server to a TES that
greeted it, on the command socket beside the one-part reply frames: after a loop turn in which
something traded, the `Mark`s of the last trade of each symbol that traded, for the TES's price
bands and marks (only those of trades the TES's own replies did not carry)."""


class JournalEntry(Message):
    """One sequenced command as the journal holds it and consumers read it: when the OBS
    sequenced it, the command, the book's events and the market data it published."""

    sequence: int
    time: Time
    command: BookCommand
    events: list[Event]
    market_data: list[MarketData]


class SnapshotRequest(Message):
    symbol: Symbol


class DepthSnapshot(Message):
    """A symbol's whole book as of market-data ``sequence``: apply updates with a larger one."""

    symbol: str
    sequence: int
    bids: list[tuple[int, int, int]]
    asks: list[tuple[int, int, int]]
    last_price: int | None
    phase: Phase = Phase.CONTINUOUS
    indicative_price: int = 0
    indicative_volume: int = 0
    """The `Indicative` uncross as of ``sequence`` (0 and 0: none, or continuous trading)."""
    phase_reason: PhaseReason | None = None
    phase_until: Time = 0
    """The reason and ``until`` of the last `PhaseUpdate` (None and 0 before any)."""


SnapshotReply = DepthSnapshot | QueryRejected


class Subscribe(Message):
    """Send ``symbol``'s market data to this connection, from the next turn on, until `Unsubscribe`
    or the connection ends. Answered `Subscribed` (again if already), or `SubscriptionRejected`."""

    symbol: Symbol


class Unsubscribe(Message):
    """Stop sending ``symbol``'s market data to this connection. Answered `Unsubscribed`, even if it
    was not subscribed."""

    symbol: Symbol


SubscriptionRequest = Subscribe | Unsubscribe


class Subscribed(Message):
    """Every message of ``symbol`` published after this one is sent to the connection (but for
    those its full queue drops: a gap in the symbol's sequence tells)."""

    symbol: str


class Unsubscribed(Message):
    symbol: str


class SubscriptionRejected(Message):
    """``symbol`` is not subscribed: UNKNOWN_SYMBOL (the book server does not hold it) or
    TOO_MANY_SUBSCRIBERS (the book server already sends market data to as many connections as it may);
    or MALFORMED_MESSAGE, with no symbol, for a frame that was not requests (the text says why)."""

    symbol: str
    reason: RejectReason
    text: str


SubscriptionReply = Subscribed | Unsubscribed | SubscriptionRejected | Heartbeat

CONTROL_TOPIC = b""
"""The first part of a frame of `SubscriptionReply` messages to a market-data subscriber (no
symbol's topic is empty)."""


def topic(message: MarketData) -> bytes:
    """The topic of a market-data message: ``SYMBOL.``, one sequenced stream per symbol.

    Quotes, depth updates and trades share the topic because they share the symbol's
    sequence numbers: a subscriber sees them all, in order, and can detect gaps.
    """
    return symbol_topic(message.symbol)


def symbol_topic(symbol: str) -> bytes:
    """The topic of ``symbol``'s market data (`topic`)."""
    return symbol.encode() + b"."


class Codec:
    """Encoder and decoder of one direction's frames, built once per process.

    ``decode`` raises `msgspec.DecodeError` or `msgspec.ValidationError` on any
    malformed frame, and `FrameTooLarge` before reading one over ``max_frame_bytes``
    (MAX_FRAME_BYTES for what clients send, MAX_SERVER_FRAME_BYTES for what servers send).
    """

    def __init__(self, union, max_frame_bytes: int = MAX_FRAME_BYTES) -> None:
        self.encoder = msgspec.msgpack.Encoder()
        self.decoder = msgspec.msgpack.Decoder(list[union])
        self.max_frame_bytes = max_frame_bytes

    def encode(self, messages: list) -> bytes:
        return self.encoder.encode(messages)

    def decode(self, frame: bytes) -> list:
        if len(frame) > self.max_frame_bytes:
            raise FrameTooLarge(f"{len(frame)} bytes > {self.max_frame_bytes}")
        messages = self.decoder.decode(frame)
        if len(messages) > MAX_BATCH:
            raise FrameTooLarge(f"{len(messages)} messages > {MAX_BATCH}")
        return messages


def join_frames(messages: list[bytes], max_messages: int = MAX_BATCH, max_bytes: int = MAX_FRAME_BYTES
                ) -> list[bytes]:
    """``messages``, each already encoded (msgpack), as frames that decode as the Codecs' frames
    do: msgpack arrays of at most ``max_messages`` (<= MAX_BATCH) messages and ``max_bytes``
    bytes each, in order, each frame as full as the limits let it be before the next begins,
    with no message encoded again. A single message over the byte limit goes alone. No
    messages, no frames."""
    ends = list(accumulate(map(len, messages)))
    frames: list[bytes] = []
    start, before = 0, 0
    while start < len(messages):
        stop = bisect_right(ends, before + max_bytes - ARRAY_HEADER_BYTES, start,
                            min(len(messages), start + max_messages))
        stop = max(stop, start + 1)
        frames.append(_array_header(stop - start) + b"".join(messages[start:stop]))
        start, before = stop, ends[stop - 1]
    return frames


ARRAY_HEADER_BYTES = 5
"""The most a msgpack array's header takes (array32); `join_frames` counts it whatever its form."""


def frame_length(frame: bytes) -> int:
    """How many messages a frame `join_frames` made holds: its array header's count."""
    first = frame[0]
    if first & 0xF0 == 0x90:
        return first & 0x0F
    if first == 0xDC:
        return int.from_bytes(frame[1:3], "big")
    if first == 0xDD:
        return int.from_bytes(frame[1:5], "big")
    raise ValueError(f"not a frame: it starts with {first:#04x}, not an array's header")


def _array_header(count: int) -> bytes:
    """The msgpack header of an array of ``count`` items, as msgspec writes it."""
    if count < 16:
        return bytes((0x90 | count,))
    if count < 1 << 16:
        return b"\xdc" + count.to_bytes(2, "big")
    return b"\xdd" + count.to_bytes(4, "big")


class FrameTooLarge(ValueError):
    """A frame over its codec's byte limit or MAX_BATCH messages."""
