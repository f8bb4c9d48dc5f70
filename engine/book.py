"""The reference order book: pure Python, readable, the executable specification.

The native book (`native.book.NativeBook`) must produce exactly the events,
snapshots and state hashes of this one for every command sequence; the
differential tests hold it to that.

Invariants
----------
- Price-time priority: an incoming order trades with the best opposite price
  first and, within a price, with the oldest resting order first. Every fill
  prints at the resting (maker) order's price.
- A price level exists if and only if it holds at least one order; its quantity
  is the sum of its orders' open quantities, each of which is positive.
- The book is never crossed after a command: best bid < best ask.
- An order id can be accepted once per book lifetime. Rejected submissions do not
  consume their id.
- A rejected command leaves the book exactly as it was.

Validation, in this order (the first failing rule gives the reason)
-------------------------------------------------------------------
every command: each integer it takes is an int64 (VALUE_OUT_OF_RANGE otherwise).
submit:  order type, side, time in force known; 0 < quantity <= MAX_QUANTITY;
         limit price > 0; a market order is IOC or FOK; id not yet accepted;
         FOK: enough quantity at prices within the limit (market: at any price).
replace: 0 < quantity <= MAX_QUANTITY; price > 0; the id is a resting order.
cancel:  the id is a resting order.

Replace semantics
-----------------
Same price and a quantity no larger than the open quantity: reduced in place,
time priority kept. Anything else: the order leaves its level and re-enters as a
limit order with the same id, side and time in force (GTC or DAY) at the new
price and quantity, behind every order already there; if the new price crosses,
it trades as the taker first.

Limits
------
Quantities are at most MAX_QUANTITY lots; prices and ids are any int64 (prices
positive). The set of accepted ids grows with every accepted order; everything
else is proportional to the resting orders and occupied levels.
"""

import numpy as np
from sortedcontainers import SortedDict

from engine.messages import (
    CancelRejected,
    LevelChanged,
    OrderAccepted,
    OrderCanceled,
    OrderExpired,
    OrderFilled,
    OrderRejected,
    OrderReplaced,
    PriceLevel,
    ReplaceRejected,
    RestingOrder,
    dispatch,
)
from engine.replay import replay_rows
from engine.snapshot import (
    MASK,
    ORDER_DTYPE,
    BookSnapshot,
    id_digest_term,
    id_records,
    state_hash,
    validate_snapshot,
)
from engine.stream import ReplayResult, check_stream
from engine.types import INT64_MAX, INT64_MIN, MAX_QUANTITY, CancelReason, OrderType, RejectReason, Side, TimeInForce

BUY, SELL = Side.BUY, Side.SELL
RESTING_TIFS = (TimeInForce.GTC, TimeInForce.DAY)
SIDES = tuple(Side)
ORDER_TYPES = tuple(OrderType)
TIFS = tuple(TimeInForce)


class _Order:
    __slots__ = ("order_id", "side", "price", "quantity", "tif")

    def __init__(self, order_id, side, price, quantity, tif):
        self.order_id = order_id
        self.side = side
        self.price = price
        self.quantity = quantity
        self.tif = tif


class _Level:
    """The orders at one price, oldest first (a dict keeps insertion order)."""

    __slots__ = ("orders", "quantity")

    def __init__(self):
        self.orders: dict[int, _Order] = {}
        self.quantity = 0


def _negate(price):
    return -price


class ReferenceBook:
    """A price-time priority limit order book for one symbol.

    Every command method returns the list of events it produced (see
    `engine.messages` for which events each command produces).
    """

    def __init__(self) -> None:
        self._sides = (SortedDict(_negate), SortedDict())
        self._live: dict[int, _Order] = {}
        self._accepted_ids: set[int] = set()
        self._trade_sequence = 0
        self._touched: dict[tuple[int, int], tuple[int, int]] = {}
        """The levels the last command touched, in the order it first did: (side, price) ->
        (quantity, orders) before it (see `level_changes`)."""

    # ------------------------------------------------------------------ commands

    def submit(self, order_id, side, order_type, time_in_force, price, quantity) -> list:
        self._touched = {}
        reason = self._check_submit(order_id, side, order_type, time_in_force, price, quantity)
        if reason is not None:
            return [OrderRejected(order_id, reason, reason.text)]
        side, order_type, tif = SIDES[side], ORDER_TYPES[order_type], TIFS[time_in_force]
        is_limit = order_type is OrderType.LIMIT
        price = price if is_limit else 0
        self._accepted_ids.add(order_id)
        events = [OrderAccepted(order_id, side, order_type, tif, price, quantity)]
        leaves = self._match(order_id, side, price if is_limit else None, quantity, events)
        if leaves:
            if is_limit and tif in RESTING_TIFS:
                self._rest(_Order(order_id, side, price, leaves, tif))
            else:
                events.append(OrderCanceled(order_id, leaves, CancelReason.UNFILLED))
        return events

    def cancel(self, order_id) -> list:
        self._touched = {}
        order = self._live.get(order_id)
        if order is None:
            reason = RejectReason.UNKNOWN_ORDER if _in_range(order_id) else RejectReason.VALUE_OUT_OF_RANGE
            return [CancelRejected(order_id, reason, reason.text)]
        self._unlink(order)
        return [OrderCanceled(order_id, order.quantity, CancelReason.REQUESTED)]

    def replace(self, order_id, price, quantity) -> list:
        self._touched = {}
        reason = self._check_replace(order_id, price, quantity)
        if reason is not None:
            return [ReplaceRejected(order_id, reason, reason.text)]
        order = self._live[order_id]
        if price == order.price and quantity <= order.quantity:
            self._touch(order.side, price)
            self._level_of(order).quantity -= order.quantity - quantity
            order.quantity = quantity
            return [OrderReplaced(order_id, price, quantity, True)]
        self._unlink(order)
        events = [OrderReplaced(order_id, price, quantity, False)]
        leaves = self._match(order_id, order.side, price, quantity, events)
        if leaves:
            self._rest(_Order(order_id, order.side, price, leaves, order.tif))
        return events

    def expire_day_orders(self) -> list:
        self._touched = {}
        expiring = [order for order in self._priority_order() if order.tif is TimeInForce.DAY]
        for order in expiring:
            self._unlink(order)
        return [OrderExpired(order.order_id, order.quantity) for order in expiring]

    def apply(self, command) -> list:
        """Dispatch one command Struct to its method."""
        return dispatch(self, command)

    def replay(self, stream) -> ReplayResult:
        """Replay a STREAM_DTYPE array message by message (see `engine.replay`)."""
        return replay_rows(self, check_stream(stream).tolist())

    # ------------------------------------------------------------------ queries

    def __len__(self) -> int:
        return len(self._live)

    @property
    def trade_sequence(self) -> int:
        """The sequence number of the last fill (0 before any)."""
        return self._trade_sequence

    def best_bid(self) -> int | None:
        bids = self._sides[BUY]
        return bids.peekitem(0)[0] if bids else None

    def best_ask(self) -> int | None:
        asks = self._sides[SELL]
        return asks.peekitem(0)[0] if asks else None

    def depth(self, side, levels: int) -> list[PriceLevel]:
        """Up to ``levels`` price levels of ``side``, best first."""
        book_side = self._sides[Side(side)]
        return [
            PriceLevel(price, level.quantity, len(level.orders))
            for price, level in book_side.items()[: max(levels, 0)]
        ]

    def level(self, side, price) -> PriceLevel | None:
        """The price level at ``price`` on ``side``, or None if no order rests there."""
        level = self._sides[Side(side)].get(price)
        return None if level is None else PriceLevel(price, level.quantity, len(level.orders))

    def level_changes(self) -> list[LevelChanged]:
        """The levels the last command changed, as it left them, in the order it first touched
        them (see `engine.messages`)."""
        changes = []
        for (side, price), before in self._touched.items():
            level = self._sides[side].get(price)
            after = (0, 0) if level is None else (level.quantity, len(level.orders))
            if after != before:
                changes.append(LevelChanged(SIDES[side], price, *after))
        return changes

    def top_of_book(self) -> tuple[PriceLevel | None, PriceLevel | None]:
        bid, ask = self.depth(BUY, 1), self.depth(SELL, 1)
        return (bid[0] if bid else None, ask[0] if ask else None)

    def order(self, order_id) -> RestingOrder | None:
        order = self._live.get(order_id)
        if order is None:
            return None
        return RestingOrder(order.order_id, order.side, order.price, order.quantity, order.tif)

    def snapshot(self) -> BookSnapshot:
        orders = [(o.order_id, o.side, o.price, o.quantity, o.tif) for o in self._priority_order()]
        ids = np.array(sorted(self._accepted_ids), dtype=np.int64)
        return BookSnapshot.from_arrays(self._trade_sequence, _order_records(orders), *id_records(ids))

    @classmethod
    def restore(cls, snapshot: BookSnapshot) -> "ReferenceBook":
        """Rebuild a book in exactly the state ``snapshot`` was taken from.

        The snapshot is validated first (`engine.snapshot.validate_snapshot`).
        """
        validate_snapshot(snapshot)
        book = cls()
        book._trade_sequence = snapshot.trade_sequence
        book._accepted_ids.update(snapshot.id_array().tolist())
        for order_id, side, price, quantity, tif in snapshot.order_array().tolist():
            book._rest(_Order(order_id, SIDES[side], price, quantity, TIFS[tif]))
        book._touched = {}
        return book

    def state_hash(self) -> int:
        return state_hash(
            ((o.side, o.price, o.order_id, o.quantity, o.tif) for o in self._priority_order()),
            self._trade_sequence,
            len(self._accepted_ids),
            sum(id_digest_term(order_id) for order_id in self._accepted_ids) & MASK,
        )

    def check_invariants(self) -> None:
        """Raise AssertionError naming the first broken invariant."""
        seen = 0
        for side, book_side in enumerate(self._sides):
            for price, level in book_side.items():
                assert level.orders, f"empty level {price} on side {side}"
                assert level.quantity == sum(o.quantity for o in level.orders.values()), (
                    f"level {price} quantity {level.quantity} is not the sum of its orders"
                )
                for order_id, order in level.orders.items():
                    assert order.quantity > 0, f"order {order_id} rests with quantity {order.quantity}"
                    assert order.price == price and order.side == side, f"order {order_id} misfiled"
                    assert self._live.get(order_id) is order, f"order {order_id} not indexed"
                    assert order_id in self._accepted_ids, f"order {order_id} never accepted"
                    seen += 1
        assert seen == len(self._live), "index holds orders that are not on a level"
        bid, ask = self.best_bid(), self.best_ask()
        assert bid is None or ask is None or bid < ask, f"crossed book: {bid} >= {ask}"

    # ------------------------------------------------------------------ internals

    def _check_submit(self, order_id, side, order_type, tif, price, quantity) -> RejectReason | None:
        if not _in_range(order_id, side, order_type, tif, price, quantity):
            return RejectReason.VALUE_OUT_OF_RANGE
        if order_type not in (0, 1):
            return RejectReason.UNKNOWN_ORDER_TYPE
        if side not in (0, 1):
            return RejectReason.UNKNOWN_SIDE
        if tif not in (0, 1, 2, 3):
            return RejectReason.UNKNOWN_TIME_IN_FORCE
        if quantity <= 0:
            return RejectReason.INVALID_QUANTITY
        if quantity > MAX_QUANTITY:
            return RejectReason.QUANTITY_TOO_LARGE
        is_limit = order_type == OrderType.LIMIT
        if is_limit and price <= 0:
            return RejectReason.INVALID_PRICE
        if not is_limit and tif in RESTING_TIFS:
            return RejectReason.MARKET_ORDER_CANNOT_REST
        if order_id in self._accepted_ids:
            return RejectReason.DUPLICATE_ORDER_ID
        if tif == TimeInForce.FOK and self._available(side, price if is_limit else None, quantity) < quantity:
            return RejectReason.FOK_NOT_FILLABLE
        return None

    def _check_replace(self, order_id, price, quantity) -> RejectReason | None:
        if not _in_range(order_id, price, quantity):
            return RejectReason.VALUE_OUT_OF_RANGE
        if quantity <= 0:
            return RejectReason.INVALID_QUANTITY
        if quantity > MAX_QUANTITY:
            return RejectReason.QUANTITY_TOO_LARGE
        if price <= 0:
            return RejectReason.INVALID_PRICE
        if order_id not in self._live:
            return RejectReason.UNKNOWN_ORDER
        return None

    @staticmethod
    def _crosses(side, limit, price) -> bool:
        """Whether a ``side`` taker with ``limit`` (None: market) may trade at ``price``."""
        if limit is None:
            return True
        return price <= limit if side == BUY else price >= limit

    def _available(self, side, limit, wanted) -> int:
        """Opposite quantity tradable within ``limit``, counted until it reaches ``wanted``."""
        total = 0
        for price, level in self._sides[1 - side].items():
            if total >= wanted or not self._crosses(side, limit, price):
                break
            total += level.quantity
        return total

    def _match(self, taker_id, side, limit, quantity, events) -> int:
        """Trade ``quantity`` against the opposite side; return what is left."""
        opposite = self._sides[1 - side]
        aggressor = SIDES[side]
        while quantity and opposite:
            price, level = opposite.peekitem(0)
            if not self._crosses(side, limit, price):
                break
            self._touch(1 - side, price)
            while quantity and level.orders:
                maker = next(iter(level.orders.values()))
                traded = min(quantity, maker.quantity)
                maker.quantity -= traded
                level.quantity -= traded
                quantity -= traded
                self._trade_sequence += 1
                events.append(
                    OrderFilled(
                        maker.order_id, taker_id, price, traded, maker.quantity, quantity,
                        aggressor, self._trade_sequence,
                    )
                )
                if not maker.quantity:
                    del level.orders[maker.order_id]
                    del self._live[maker.order_id]
            if not level.orders:
                del opposite[price]
        return quantity

    def _touch(self, side, price) -> None:
        """Note the level's state before the command changes it (once per command)."""
        key = (side, price)
        if key not in self._touched:
            level = self._sides[side].get(price)
            self._touched[key] = (0, 0) if level is None else (level.quantity, len(level.orders))

    def _rest(self, order: _Order) -> None:
        self._touch(order.side, order.price)
        book_side = self._sides[order.side]
        level = book_side.get(order.price)
        if level is None:
            level = book_side[order.price] = _Level()
        level.orders[order.order_id] = order
        level.quantity += order.quantity
        self._live[order.order_id] = order

    def _level_of(self, order: _Order) -> _Level:
        return self._sides[order.side][order.price]

    def _unlink(self, order: _Order) -> None:
        self._touch(order.side, order.price)
        book_side = self._sides[order.side]
        level = book_side[order.price]
        del level.orders[order.order_id]
        level.quantity -= order.quantity
        if not level.orders:
            del book_side[order.price]
        del self._live[order.order_id]

    def _priority_order(self):
        for book_side in self._sides:
            for level in book_side.values():
                yield from level.orders.values()


def _in_range(*values) -> bool:
    """Whether every one of ``values`` is an int64."""
    return all(INT64_MIN <= value <= INT64_MAX for value in values)


def _order_records(orders):
    return np.array(orders, dtype=ORDER_DTYPE) if orders else np.empty(0, ORDER_DTYPE)
