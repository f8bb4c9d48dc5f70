"""Commands a book takes and events it returns, as frozen msgspec Structs.

Commands are imperative (`SubmitOrder`), events past tense (`OrderFilled`). A book
is per symbol, so none of these carry a symbol: the server that owns several
books routes by symbol before a command reaches one.

All are array-like on the wire (positional msgpack arrays led by the tag) because
the servers pass them in bulk. Which events each command produces, in this order:

==================  ============================================================
command             events
==================  ============================================================
SubmitOrder         OrderRejected; or OrderAccepted, then (phase CONTINUOUS, a
                    limit or market order) its matching events (below), then
                    OrderCanceled(UNFILLED) for an IOC or market remainder
                    (none after the taker was canceled or decremented to 0 by
                    self-trade prevention). A GTC, DAY or GTD remainder rests
                    silently; so does every limit order in phase CALL, and a
                    market order there waits silently for the uncross. A stop
                    or stop-limit is held silently. Then the trigger loop.
                    FOK that cannot fill completely: OrderRejected only.
CancelOrder         OrderCanceled(REQUESTED) (a resting order, a held stop or a
                    waiting auction market order); or CancelRejected.
ReplaceOrder        OrderReplaced, then (phase CONTINUOUS, a re-entry that
                    crosses) its matching events; then the trigger loop. Or
                    ReplaceRejected.
ExpireDayOrders     OrderExpired for every resting DAY order, bids best price
                    first then asks best price first, FIFO within a level, then
                    for every held DAY stop-limit in acceptance order.
SetClock            ClockAdvanced, then OrderExpired for every resting GTD order
                    and held GTD stop-limit whose expire_at <= the new time, in
                    the order they were first accepted; or CommandRejected.
SetPhase            PhaseChanged (also when the phase is the current one, which
                    changes nothing else); into CONTINUOUS from CALL or HALTED
                    the uncross follows: AuctionUncrossed when anything trades,
                    its OrderFilled events, OrderCanceled(UNFILLED) for each
                    waiting market order's remainder in arrival order, then
                    the trigger loop. Or CommandRejected.
==================  ============================================================

**Matching events**: each time the taker meets the order at the front of the best opposite
level it can trade with, either one OrderFilled, or, when both have the same non-zero owner and
the taker's mode is not NONE, self-trade prevention's events: OrderCanceled(SELF_TRADE) of the
taker's remainder (CANCEL_TAKER), of the maker (CANCEL_MAKER), of the maker then the taker's
remainder (CANCEL_BOTH), or OrderDecremented of the maker then of the taker (DECREMENT; an order
whose ``leaves`` is 0 is gone, with no other event). An iceberg's refresh has no event (its
``maker_leaves`` counts its hidden quantity; the depth shows the new slice).

**The trigger loop** (phase CONTINUOUS, after every accepted command): while a held stop
qualifies at the last trade price, StopTriggered for the one accepted earliest, then its
matching events as a taker and its remainder's fate, as for a submitted market IOC (STOP) or
limit order (STOP_LIMIT; a FOK one that cannot fill completely: OrderCanceled(UNFILLED) of its
whole quantity, nothing else).

Besides its events, every command changes price levels: ``book.level_changes()``, asked after
the command, gives one `LevelChanged` per price level whose quantity or order count the command
changed (the level's state after it; quantity 0 and no orders: the level is gone), in the order
the command first touched them. A level touched and left as it was is not among them, nor is any
level of a rejected command. They are not events of an order's lifecycle, so they are kept
apart from the events: market data (`servers.marketdata`) is built from them.
"""

import msgspec

from engine.types import CancelReason, OrderType, Phase, RejectReason, SelfTradePrevention, Side, TimeInForce


class SubmitOrder(msgspec.Struct, frozen=True, gc=False, tag=True, array_like=True):
    order_id: int
    side: Side
    order_type: OrderType
    time_in_force: TimeInForce
    price: int
    """Limit price in ticks; ignored (use 0) for a market or stop order."""
    quantity: int
    stop_price: int = 0
    """STOP and STOP_LIMIT: the trigger price in ticks; ignored otherwise."""
    display_quantity: int = 0
    """An iceberg's peak (LIMIT only): the most visible at once; 0 shows everything."""
    flags: int = 0
    """`engine.types.OrderFlags` bits."""
    owner: int = 0
    """The account for self-trade prevention; 0 = none."""
    stp: SelfTradePrevention = SelfTradePrevention.NONE
    expire_at: int = 0
    """GTD: the logical time (`SetClock`) at which the order expires; ignored otherwise."""


class CancelOrder(msgspec.Struct, frozen=True, gc=False, tag=True, array_like=True):
    order_id: int


class ReplaceOrder(msgspec.Struct, frozen=True, gc=False, tag=True, array_like=True):
    order_id: int
    price: int
    quantity: int
    """The new open quantity."""


class ExpireDayOrders(msgspec.Struct, frozen=True, gc=False, tag=True, array_like=True):
    pass


class SetClock(msgspec.Struct, frozen=True, gc=False, tag=True, array_like=True):
    """Set the book's logical time (never backwards); GTD orders due by then expire."""

    time: int


class SetPhase(msgspec.Struct, frozen=True, gc=False, tag=True, array_like=True):
    """Change the trading phase; into CONTINUOUS from CALL or HALTED the book uncrosses."""

    phase: Phase


class OrderAccepted(msgspec.Struct, frozen=True, gc=False, tag=True, array_like=True):
    order_id: int
    side: Side
    order_type: OrderType
    time_in_force: TimeInForce
    price: int
    """0 for a market or stop order."""
    quantity: int
    stop_price: int = 0
    display_quantity: int = 0
    flags: int = 0
    owner: int = 0
    stp: SelfTradePrevention = SelfTradePrevention.NONE
    expire_at: int = 0
    """The submitted fields as the book keeps them (0 where the order type ignores a field)."""


class CommandRejected(msgspec.Struct, frozen=True, gc=False, tag=True, array_like=True):
    """A SetClock or SetPhase the book refused."""

    reason: RejectReason
    text: str


class OrderRejected(msgspec.Struct, frozen=True, gc=False, tag=True, array_like=True):
    order_id: int
    reason: RejectReason
    text: str


class CancelRejected(msgspec.Struct, frozen=True, gc=False, tag=True, array_like=True):
    order_id: int
    reason: RejectReason
    text: str


class ReplaceRejected(msgspec.Struct, frozen=True, gc=False, tag=True, array_like=True):
    order_id: int
    reason: RejectReason
    text: str


class OrderFilled(msgspec.Struct, frozen=True, gc=False, tag=True, array_like=True):
    """One trade between a resting maker and an incoming taker, at the maker's price."""

    maker_id: int
    taker_id: int
    price: int
    quantity: int
    maker_leaves: int
    """The maker's open quantity after this fill; 0 means it left the book."""
    taker_leaves: int
    """The taker's quantity still to trade after this fill."""
    aggressor: Side
    """The taker's side."""
    sequence: int
    """The book's trade number: 1 for its first fill, then consecutive."""


class OrderCanceled(msgspec.Struct, frozen=True, gc=False, tag=True, array_like=True):
    order_id: int
    quantity: int
    """The open quantity removed."""
    reason: CancelReason


class OrderReplaced(msgspec.Struct, frozen=True, gc=False, tag=True, array_like=True):
    order_id: int
    price: int
    quantity: int
    priority_kept: bool
    """True only for a same-price reduction (or no change): the order kept its place."""


class OrderExpired(msgspec.Struct, frozen=True, gc=False, tag=True, array_like=True):
    order_id: int
    quantity: int
    """The open quantity removed (an iceberg's hidden quantity included)."""


class OrderDecremented(msgspec.Struct, frozen=True, gc=False, tag=True, array_like=True):
    """Self-trade prevention (DECREMENT) shrank an order with no trade: maker's event, then taker's."""

    order_id: int
    quantity: int
    """The quantity removed."""
    leaves: int
    """Its open quantity after; 0 means it is gone."""
    counterparty_id: int
    """The order of the same owner it met."""


class StopTriggered(msgspec.Struct, frozen=True, gc=False, tag=True, array_like=True):
    """A held stop was released at ``last_price``; its matching events follow as a taker."""

    order_id: int
    last_price: int


class ClockAdvanced(msgspec.Struct, frozen=True, gc=False, tag=True, array_like=True):
    time: int


class PhaseChanged(msgspec.Struct, frozen=True, gc=False, tag=True, array_like=True):
    phase: Phase
    previous: Phase


class AuctionUncrossed(msgspec.Struct, frozen=True, gc=False, tag=True, array_like=True):
    """The call auction's uncross traded ``volume`` lots at ``price``; its fills follow."""

    price: int
    volume: int


class LevelChanged(msgspec.Struct, frozen=True, gc=False, array_like=True):
    """A price level as a command left it (see the module docstring)."""

    side: Side
    price: int
    quantity: int
    """0: the level is gone."""
    orders: int


class PriceLevel(msgspec.Struct, frozen=True, gc=False):
    price: int
    quantity: int
    orders: int


class RestingOrder(msgspec.Struct, frozen=True, gc=False):
    """A live order as `order(id)` describes it: in the book (LIMIT), held (STOP, STOP_LIMIT) or
    waiting for the call auction's uncross (MARKET)."""

    order_id: int
    side: Side
    price: int
    """The limit price; 0 for a held STOP or a waiting market order."""
    quantity: int
    """The open quantity (an iceberg's hidden part included)."""
    time_in_force: TimeInForce
    order_type: OrderType = OrderType.LIMIT
    stop_price: int = 0
    display_quantity: int = 0
    hidden_quantity: int = 0
    """The part of an iceberg's open quantity not shown in the depth (0 for every other order)."""
    flags: int = 0
    owner: int = 0
    stp: SelfTradePrevention = SelfTradePrevention.NONE
    expire_at: int = 0


Command = SubmitOrder | CancelOrder | ReplaceOrder | ExpireDayOrders | SetClock | SetPhase
Event = (
    OrderAccepted
    | OrderRejected
    | CancelRejected
    | ReplaceRejected
    | CommandRejected
    | OrderFilled
    | OrderCanceled
    | OrderReplaced
    | OrderExpired
    | OrderDecremented
    | StopTriggered
    | ClockAdvanced
    | PhaseChanged
    | AuctionUncrossed
)


def dispatch(book, command: Command) -> list:
    """Call the method of ``book`` that ``command`` stands for; return its events."""
    match command:
        case SubmitOrder(order_id, side, order_type, tif, price, quantity, stop_price, display_quantity, flags, owner,
                         stp, expire_at):
            return book.submit(order_id, side, order_type, tif, price, quantity, stop_price=stop_price,
                               display_quantity=display_quantity, flags=flags, owner=owner, stp=stp,
                               expire_at=expire_at)
        case CancelOrder(order_id):
            return book.cancel(order_id)
        case ReplaceOrder(order_id, price, quantity):
            return book.replace(order_id, price, quantity)
        case ExpireDayOrders():
            return book.expire_day_orders()
        case SetClock(time):
            return book.set_clock(time)
        case SetPhase(phase):
            return book.set_phase(phase)
    raise TypeError(f"not a book command: {command!r}")
