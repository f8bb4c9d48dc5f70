"""Commands a book takes and events it returns, as frozen msgspec Structs.

Commands are imperative (`SubmitOrder`), events past tense (`OrderFilled`). A book
is per symbol, so none of these carry a symbol: the server that owns several
books routes by symbol before a command reaches one.

All are array-like on the wire (positional msgpack arrays led by the tag) because
the servers pass them in bulk. Which events each command produces, in this order:

==================  ============================================================
command             events
==================  ============================================================
SubmitOrder         OrderRejected; or OrderAccepted, then one OrderFilled per
                    fill, then OrderCanceled(UNFILLED) for an IOC or market
                    remainder. A GTC or DAY remainder rests silently.
                    FOK that cannot fill completely: OrderRejected only.
CancelOrder         OrderCanceled(REQUESTED); or CancelRejected.
ReplaceOrder        OrderReplaced, then OrderFilled for each fill if the new
                    price crosses; or ReplaceRejected.
ExpireDayOrders     OrderExpired for every resting DAY order, bids best price
                    first then asks best price first, FIFO within a level.
==================  ============================================================

Besides its events, every command changes price levels: ``book.level_changes()``, asked after
the command, gives one `LevelChanged` per price level whose quantity or order count the command
changed (the level's state after it; quantity 0 and no orders: the level is gone), in the order
the command first touched them. A level touched and left as it was is not among them, nor is any
level of a rejected command. They are not events of an order's lifecycle, so they are kept
apart from the events: market data (`servers.marketdata`) is built from them.
"""

import msgspec

from engine.types import CancelReason, OrderType, RejectReason, Side, TimeInForce


class SubmitOrder(msgspec.Struct, frozen=True, gc=False, tag=True, array_like=True):
    order_id: int
    side: Side
    order_type: OrderType
    time_in_force: TimeInForce
    price: int
    """Limit price in ticks; ignored (use 0) for a market order."""
    quantity: int


class CancelOrder(msgspec.Struct, frozen=True, gc=False, tag=True, array_like=True):
    order_id: int


class ReplaceOrder(msgspec.Struct, frozen=True, gc=False, tag=True, array_like=True):
    order_id: int
    price: int
    quantity: int
    """The new open quantity."""


class ExpireDayOrders(msgspec.Struct, frozen=True, gc=False, tag=True, array_like=True):
    pass


class OrderAccepted(msgspec.Struct, frozen=True, gc=False, tag=True, array_like=True):
    order_id: int
    side: Side
    order_type: OrderType
    time_in_force: TimeInForce
    price: int
    quantity: int


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
    order_id: int
    side: Side
    price: int
    quantity: int
    time_in_force: TimeInForce


Command = SubmitOrder | CancelOrder | ReplaceOrder | ExpireDayOrders
Event = (
    OrderAccepted
    | OrderRejected
    | CancelRejected
    | ReplaceRejected
    | OrderFilled
    | OrderCanceled
    | OrderReplaced
    | OrderExpired
)


def dispatch(book, command: Command) -> list:
    """Call the method of ``book`` that ``command`` stands for; return its events."""
    match command:
        case SubmitOrder(order_id, side, order_type, tif, price, quantity):
            return book.submit(order_id, side, order_type, tif, price, quantity)
        case CancelOrder(order_id):
            return book.cancel(order_id)
        case ReplaceOrder(order_id, price, quantity):
            return book.replace(order_id, price, quantity)
        case ExpireDayOrders():
            return book.expire_day_orders()
    raise TypeError(f"not a book command: {command!r}")
