"""The reference order book: pure Python, readable, the executable specification.

The native book (`native.book.NativeBook`) must produce exactly the events,
snapshots and state hashes of this one for every command sequence; the
differential tests hold it to that. Which events each command produces is
tabled in `engine.messages`; the README's "Matching rules" says the same for users.

Invariants
----------
- Price-time priority: an incoming order trades with the best opposite price
  first and, within a price, with the oldest resting order first. Every fill
  prints at the resting (maker) order's price (the uncross: at its one price).
- A price level exists if and only if it holds at least one order. Its quantity
  is the sum of its orders' visible quantities (an iceberg shows a slice of
  min(display quantity, open) when it takes its place, a plain order all of its
  open quantity), each positive; ``open`` is the sum of their open quantities.
- In the CONTINUOUS phase the book is never crossed after a command (best bid <
  best ask), no market order waits, and no held stop qualifies at the last trade
  price. In CALL and HALTED the book may cross.
- Held stops are outside the book: not in the depth, not in ``len``, no priority.
  Market orders waiting for the uncross are not in the depth but count in ``len``.
- An order id can be accepted once per book lifetime. Rejected submissions do not
  consume their id. A rejected command leaves the book exactly as it was.

Validation is in `engine.rules` (the rules, in the order they are applied).

Replace semantics
-----------------
Same price and a quantity no larger than the open quantity: reduced in place,
time priority kept (an iceberg's visible slice becomes min(slice, new open)).
Anything else: the order leaves its level and re-enters as a limit order with the
same id, side, time in force, expiry, flags, owner, stp and display quantity at
the new price and quantity, behind every order already there, with a fresh
slice; in CONTINUOUS, if the new price crosses, it trades as the taker first
(self-trade prevention included); in CALL it rests without matching.

Readings of the stream format v2 where it is silent
---------------------------------------------------
- A STOP's time in force and expiry are ignored, as the format says: the book
  keeps (and OrderAccepted shows) GTC and 0 for them; it triggers as a market IOC.
- A released stop-limit becomes a plain limit order (``order(id)`` shows LIMIT,
  stop price 0); a STOP_LIMIT with DAY (the Python API's end-of-day time in force)
  is expired by `expire_day_orders` while held too, after the book's DAY orders,
  in acceptance order.
- `expire_day_orders` is accepted in every phase; the trigger loop runs after every
  accepted command in CONTINUOUS, so after a command that cannot move the last
  price it finds nothing.

Limits
------
Quantities are at most MAX_QUANTITY lots; prices and ids are any int64 (prices
positive). The set of accepted ids grows with every accepted order; everything
else is proportional to the live orders and occupied levels (plus one heap entry
per GTD order that rested or was held, until the clock passes its expiry).
"""

import heapq
from itertools import chain

import numpy as np
from sortedcontainers import SortedDict

from engine.auction import uncross_price
from engine.messages import (
    AuctionUncrossed,
    CancelRejected,
    ClockAdvanced,
    CommandRejected,
    LevelChanged,
    OrderAccepted,
    OrderCanceled,
    OrderDecremented,
    OrderExpired,
    OrderFilled,
    OrderRejected,
    OrderReplaced,
    PhaseChanged,
    PriceLevel,
    ReplaceRejected,
    RestingOrder,
    StopTriggered,
    dispatch,
)
from engine.replay import replay_stream
from engine.rules import OrderRules, in_range
from engine.snapshot import (
    MASK,
    ORDER_DTYPE,
    BookSnapshot,
    id_digest_term,
    id_records,
    state_hash,
    validate_snapshot,
)
from engine.stops import HeldStops
from engine.stream import ReplayResult
from engine.types import (
    CancelReason,
    OrderType,
    Phase,
    RejectReason,
    SelfTradePrevention,
    Side,
    TimeInForce,
)

BUY, SELL = Side.BUY, Side.SELL
LIMIT, MARKET, STOP, STOP_LIMIT = OrderType.LIMIT, OrderType.MARKET, OrderType.STOP, OrderType.STOP_LIMIT
GTC, IOC, FOK, DAY, GTD = TimeInForce.GTC, TimeInForce.IOC, TimeInForce.FOK, TimeInForce.DAY, TimeInForce.GTD
CONTINUOUS, CALL, HALTED = Phase.CONTINUOUS, Phase.CALL, Phase.HALTED
NONE, CANCEL_TAKER, CANCEL_MAKER, CANCEL_BOTH, DECREMENT = SelfTradePrevention
R = RejectReason
RESTING_TIFS = (GTC, DAY, GTD)
SIDES = tuple(Side)
ORDER_TYPES = tuple(OrderType)
TIFS = tuple(TimeInForce)
PHASES = tuple(Phase)
STPS = tuple(SelfTradePrevention)


class _Order:
    """A live order: resting in the book, held (a stop) or waiting for the uncross (a market order).

    ``quantity`` is its open quantity, ``visible`` the part shown in the depth (all of it
    unless ``display`` > 0), ``accepted`` its acceptance number, ``time`` its auction time
    (CALL and HALTED only).
    """

    __slots__ = ("order_id", "side", "price", "quantity", "tif", "order_type", "stop_price", "display",
                 "visible", "flags", "owner", "stp", "expire_at", "accepted", "time")

    def __init__(self, order_id, side, price, quantity, tif, order_type=LIMIT, stop_price=0, display=0, flags=0,
                 owner=0, stp=NONE, expire_at=0, accepted=0):
        self.order_id = order_id
        self.side = side
        self.price = price
        self.quantity = quantity
        self.tif = tif
        self.order_type = order_type
        self.stop_price = stop_price
        self.display = display
        self.visible = quantity
        self.flags = flags
        self.owner = owner
        self.stp = stp
        self.expire_at = expire_at
        self.accepted = accepted
        self.time = 0


class _Level:
    """The orders at one price, oldest first (a dict keeps insertion order)."""

    __slots__ = ("orders", "quantity", "open")

    def __init__(self):
        self.orders: dict[int, _Order] = {}
        self.quantity = 0
        """The sum of the orders' visible quantities (what the depth shows)."""
        self.open = 0
        """The sum of the orders' open quantities (icebergs' hidden parts included)."""


def _negate(price):
    return -price


class ReferenceBook(OrderRules):
    """A price-time priority limit order book for one symbol.

    Every command method returns the list of events it produced (see
    `engine.messages` for which events each command produces).
    """

    def __init__(self) -> None:
        self._sides = (SortedDict(_negate), SortedDict())
        self._live: dict[int, _Order] = {}
        self._held = HeldStops()
        self._waiting: dict[int, _Order] = {}
        """Market orders waiting for the uncross, in arrival order."""
        self._accepted_ids: set[int] = set()
        self._trade_sequence = 0
        self._last_price: int | None = None
        self._phase = CONTINUOUS
        self._clock = 0
        self._accepted = 0
        """The acceptance number of the last accepted order."""
        self._time = 0
        """The auction time counter: the last time given (CALL and HALTED)."""
        self._expiries: list[tuple[int, int, int]] = []
        """A heap of (expire_at, accepted, id) of the GTD orders that rested or were held."""
        self._touched: dict[tuple[int, int], tuple[int, int]] = {}
        """The levels the last command touched, in the order it first did: (side, price) ->
        (quantity, orders) before it (see `level_changes`)."""

    # ------------------------------------------------------------------ commands

    def submit(self, order_id, side, order_type, time_in_force, price, quantity, *, stop_price=0,
               display_quantity=0, flags=0, owner=0, stp=0, expire_at=0) -> list:
        self._touched = {}
        reason = self._check_submit(order_id, side, order_type, time_in_force, price, quantity, stop_price,
                                    display_quantity, flags, owner, stp, expire_at)
        if reason is not None:
            return [OrderRejected(order_id, reason, reason.text)]
        order_type = ORDER_TYPES[order_type]
        tif = GTC if order_type is STOP else TIFS[time_in_force]
        flags, stp = int(flags), STPS[stp]
        self._accepted += 1
        order = _Order(
            order_id, SIDES[side], price if order_type in (LIMIT, STOP_LIMIT) else 0, quantity, tif, order_type,
            stop_price if order_type in (STOP, STOP_LIMIT) else 0, display_quantity, flags, owner, stp,
            expire_at if tif is GTD else 0, self._accepted,
        )
        self._accepted_ids.add(order_id)
        events = [OrderAccepted(order_id, order.side, order_type, tif, order.price, quantity, order.stop_price,
                                display_quantity, flags, owner, order.stp, order.expire_at)]
        if order_type in (STOP, STOP_LIMIT):
            self._held.add(order)
        elif self._phase is CALL:
            if order_type is LIMIT:
                self._rest(order)
            else:
                self._time += 1
                order.time = self._time
                self._waiting[order_id] = order
        else:
            self._execute(order, events)
        if tif is GTD and (order_id in self._live or order_id in self._held):
            heapq.heappush(self._expiries, (order.expire_at, order.accepted, order_id))
        self._trigger(events)
        return events

    def cancel(self, order_id) -> list:
        self._touched = {}
        order = self._live.get(order_id)
        if order is not None:
            self._unlink(order)
        else:
            order = self._held.get(order_id) or self._waiting.get(order_id)
            if order is None:
                reason = R.UNKNOWN_ORDER if in_range(order_id) else R.VALUE_OUT_OF_RANGE
                return [CancelRejected(order_id, reason, reason.text)]
            self._remove_pending(order)
        events = [OrderCanceled(order_id, order.quantity, CancelReason.REQUESTED)]
        self._trigger(events)
        return events

    def replace(self, order_id, price, quantity) -> list:
        self._touched = {}
        reason = self._check_replace(order_id, price, quantity)
        if reason is not None:
            return [ReplaceRejected(order_id, reason, reason.text)]
        order = self._live[order_id]
        if price == order.price and quantity <= order.quantity:
            self._shrink(order, order.quantity - quantity)
            return [OrderReplaced(order_id, price, quantity, True)]
        self._unlink(order)
        order.price, order.quantity = price, quantity
        events = [OrderReplaced(order_id, price, quantity, False)]
        if self._phase is CALL:
            self._rest(order)
        else:
            self._execute(order, events)
        self._trigger(events)
        return events

    def expire_day_orders(self) -> list:
        self._touched = {}
        expiring = [order for order in self._priority_order() if order.tif is DAY]
        for order in expiring:
            self._unlink(order)
        held = [order for order in self._held.orders.values() if order.tif is DAY]
        for order in held:
            self._held.remove(order)
        events = [OrderExpired(order.order_id, order.quantity) for order in chain(expiring, held)]
        self._trigger(events)
        return events

    def set_clock(self, time) -> list:
        """Set the logical time; GTD orders (resting or held) due by then expire in acceptance order."""
        self._touched = {}
        reason = None if in_range(time) else R.VALUE_OUT_OF_RANGE
        if reason is None and time < self._clock:
            reason = R.CLOCK_BACKWARDS
        if reason is not None:
            return [CommandRejected(reason, reason.text)]
        self._clock = time
        events = [ClockAdvanced(time)]
        due = []
        while self._expiries and self._expiries[0][0] <= time:
            _, _, order_id = heapq.heappop(self._expiries)
            order = self._live.get(order_id) or self._held.get(order_id)
            if order is not None:
                due.append(order)
        due.sort(key=lambda order: order.accepted)
        for order in due:
            if order.order_id in self._live:
                self._unlink(order)
            else:
                self._held.remove(order)
            events.append(OrderExpired(order.order_id, order.quantity))
        self._trigger(events)
        return events

    def set_phase(self, phase) -> list:
        """Change the trading phase; into CONTINUOUS from CALL or HALTED, uncross first."""
        self._touched = {}
        reason = None if in_range(phase) else R.VALUE_OUT_OF_RANGE
        if reason is None and phase not in (0, 1, 2):
            reason = R.UNKNOWN_PHASE
        if reason is not None:
            return [CommandRejected(reason, reason.text)]
        previous, self._phase = self._phase, PHASES[phase]
        events = [PhaseChanged(self._phase, previous)]
        if previous is CONTINUOUS and self._phase is not CONTINUOUS:
            self._time = 0
            for order in self._priority_order():
                self._time += 1
                order.time = self._time
        elif previous is not CONTINUOUS and self._phase is CONTINUOUS:
            self._uncross(events)
        self._trigger(events)
        return events

    def apply(self, command) -> list:
        """Dispatch one command Struct to its method."""
        return dispatch(self, command)

    def replay(self, stream) -> ReplayResult:
        """Replay a STREAM_DTYPE or STREAM_V2_DTYPE array message by message (see `engine.replay`)."""
        return replay_stream(self, stream)

    # ------------------------------------------------------------------ queries

    def __len__(self) -> int:
        return len(self._live) + len(self._waiting)

    @property
    def trade_sequence(self) -> int:
        """The sequence number of the last fill (0 before any)."""
        return self._trade_sequence

    @property
    def phase(self) -> Phase:
        return self._phase

    @property
    def clock(self) -> int:
        """The logical time (`set_clock`)."""
        return self._clock

    def indicative_uncross(self) -> tuple[int, int] | None:
        """(price, volume) the book would uncross at if the call ended now (`engine.auction`), or
        None when nothing would trade. Any phase: in CONTINUOUS the book never crosses, so None
        unless waiting market orders meet the other side (they wait only in CALL or HALTED)."""
        return self._uncross_price()

    @property
    def last_price(self) -> int | None:
        """The price of the last fill, None before any."""
        return self._last_price

    def best_bid(self) -> int | None:
        bids = self._sides[BUY]
        return bids.peekitem(0)[0] if bids else None

    def best_ask(self) -> int | None:
        asks = self._sides[SELL]
        return asks.peekitem(0)[0] if asks else None

    def depth(self, side, levels: int) -> list[PriceLevel]:
        """Up to ``levels`` price levels of ``side``, best first (icebergs count their visible slices)."""
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
        """A resting order, a held stop or a waiting market order; None for any other id."""
        order = self._live.get(order_id) or self._held.get(order_id) or self._waiting.get(order_id)
        if order is None:
            return None
        return RestingOrder(order.order_id, order.side, order.price, order.quantity, order.tif, order.order_type,
                            order.stop_price, order.display, order.quantity - order.visible, order.flags,
                            order.owner, order.stp, order.expire_at)

    def snapshot(self) -> BookSnapshot:
        orders, details, held, waiting = self._records()
        ids = np.array(sorted(self._accepted_ids), dtype=np.int64)
        return BookSnapshot.from_arrays(
            self._trade_sequence, _order_records(orders), *id_records(ids), details, held, waiting,
            self._phase, self._clock, self._last_price or 0,
        )

    @classmethod
    def restore(cls, snapshot: BookSnapshot) -> "ReferenceBook":
        """Rebuild a book in exactly the state ``snapshot`` was taken from.

        The snapshot is validated first (`engine.snapshot.validate_snapshot`).
        """
        validate_snapshot(snapshot)
        book = cls()
        book._trade_sequence = snapshot.trade_sequence
        book._accepted_ids.update(snapshot.id_array().tolist())
        book._phase, book._clock = PHASES[snapshot.phase], snapshot.clock
        book._last_price = snapshot.last_price or None
        details = {record[0]: record for record in snapshot.detail_array().tolist()}
        times = []
        for order_id, side, price, quantity, tif in snapshot.order_array().tolist():
            order = _Order(order_id, SIDES[side], price, quantity, TIFS[tif])
            detail = details.get(order_id)
            if detail is None:
                book._rest(order)
                continue
            _, order.display, visible, order.flags, stp, order.owner, order.expire_at, order.accepted, time = detail
            order.stp = STPS[stp]
            book._rest(order)
            book._shrink_visible(order, visible)
            order.time = time
            times.append(time)
        for record in snapshot.held_array().tolist():
            order_id, side, order_type, tif, stp, price, quantity, stop_price, owner, expire_at, accepted = record
            book._held.add(_Order(order_id, SIDES[side], price, quantity, TIFS[tif], ORDER_TYPES[order_type],
                                  stop_price, 0, 0, owner, STPS[stp], expire_at, accepted))
        for order_id, side, tif, stp, quantity, owner, time in snapshot.waiting_array().tolist():
            order = _Order(order_id, SIDES[side], 0, quantity, TIFS[tif], MARKET, owner=owner, stp=STPS[stp])
            order.time = time
            book._waiting[order_id] = order
            times.append(time)
        book._time = max(times, default=0)
        book._accepted = max((order.accepted for order in chain(book._live.values(), book._held.orders.values())),
                             default=0)
        for order in chain(book._live.values(), book._held.orders.values()):
            if order.tif is GTD:
                heapq.heappush(book._expiries, (order.expire_at, order.accepted, order.order_id))
        book._touched = {}
        return book

    def state_hash(self) -> int:
        orders, details, held, waiting = self._records()
        return state_hash(
            ((side, price, order_id, quantity, tif) for order_id, side, price, quantity, tif in orders),
            self._trade_sequence,
            len(self._accepted_ids),
            sum(id_digest_term(order_id) for order_id in self._accepted_ids) & MASK,
            details, held, waiting, self._phase, self._clock, self._last_price or 0,
        )

    def check_invariants(self) -> None:
        """Raise AssertionError naming the first broken invariant."""
        seen = 0
        for side, book_side in enumerate(self._sides):
            for price, level in book_side.items():
                assert level.orders, f"empty level {price} on side {side}"
                assert level.quantity == sum(o.visible for o in level.orders.values()), (
                    f"level {price} quantity {level.quantity} is not the sum of its orders' visible quantities"
                )
                assert level.open == sum(o.quantity for o in level.orders.values()), (
                    f"level {price} open quantity {level.open} is not the sum of its orders'"
                )
                for order_id, order in level.orders.items():
                    assert 0 < order.visible <= order.quantity, f"order {order_id} shows {order.visible}"
                    assert order.visible == order.quantity or 0 < order.visible <= order.display, (
                        f"order {order_id} hides quantity without being an iceberg"
                    )
                    assert order.price == price and order.side == side, f"order {order_id} misfiled"
                    assert self._live.get(order_id) is order, f"order {order_id} not indexed"
                    assert order_id in self._accepted_ids, f"order {order_id} never accepted"
                    seen += 1
        assert seen == len(self._live), "index holds orders that are not on a level"
        pending = chain(self._held.orders.items(), self._waiting.items())
        for order_id, order in pending:
            assert order_id not in self._live and order_id in self._accepted_ids, f"order {order_id} misfiled"
            assert order.quantity > 0, f"order {order_id} pending with quantity {order.quantity}"
        if self._phase is CONTINUOUS:
            bid, ask = self.best_bid(), self.best_ask()
            assert bid is None or ask is None or bid < ask, f"crossed book: {bid} >= {ask}"
            assert not self._waiting, "market orders wait in the continuous phase"
            assert self._last_price is None or self._held.next_qualifying(self._last_price) is None, (
                "a held stop qualifies after a command"
            )

    # ------------------------------------------------------------------ matching

    def _execute(self, order: _Order, events: list) -> None:
        """Trade ``order`` as a taker (CONTINUOUS), then rest or cancel what is left."""
        limit = order.price if order.order_type is LIMIT else None
        leaves = self._match(order.order_id, order.side, limit, order.quantity, order.owner, order.stp, events)
        if not leaves:
            return
        if limit is not None and order.tif in RESTING_TIFS:
            order.quantity = leaves
            self._rest(order)
        else:
            events.append(OrderCanceled(order.order_id, leaves, CancelReason.UNFILLED))

    def _match(self, taker_id, side, limit, quantity, owner, stp, events) -> int:
        """Trade ``quantity`` against the opposite side; return what is left to rest or cancel
        (0 also when self-trade prevention canceled the taker or decremented it to nothing)."""
        opposite = self._sides[1 - side]
        aggressor = SIDES[side]
        prevent = owner != 0 and stp != NONE
        live = self._live
        while quantity and opposite:
            price, level = opposite.peekitem(0)
            if limit is not None and (price > limit if side == BUY else price < limit):
                break
            self._touch(1 - side, price)
            orders = level.orders
            while quantity and orders:
                maker = next(iter(orders.values()))
                if prevent and maker.owner == owner:
                    quantity = self._prevent(taker_id, quantity, stp, maker, level, events)
                    continue
                traded = min(quantity, maker.visible)
                maker.quantity -= traded
                maker.visible -= traded
                level.quantity -= traded
                level.open -= traded
                quantity -= traded
                self._trade_sequence += 1
                self._last_price = price
                events.append(
                    OrderFilled(
                        maker.order_id, taker_id, price, traded, maker.quantity, quantity,
                        aggressor, self._trade_sequence,
                    )
                )
                if not maker.quantity:
                    del orders[maker.order_id]
                    del live[maker.order_id]
                elif not maker.visible:  # an iceberg's slice is gone: a new one at the back of the level
                    maker.visible = min(maker.display, maker.quantity)
                    level.quantity += maker.visible
                    del orders[maker.order_id]
                    orders[maker.order_id] = maker
            if not orders:
                opposite.pop(price, None)  # (prevention may have removed the level's last order already)
        return quantity

    def _prevent(self, taker_id, quantity, stp, maker, level, events) -> int:
        """Self-trade prevention between a taker with ``quantity`` left and ``maker`` of its
        owner; return the taker's quantity still to match (0: it is done)."""
        if stp == CANCEL_TAKER:
            events.append(OrderCanceled(taker_id, quantity, CancelReason.SELF_TRADE))
            return 0
        if stp == DECREMENT:
            both = min(quantity, maker.quantity)
            self._shrink(maker, both)
            events.append(OrderDecremented(maker.order_id, both, maker.quantity, taker_id))
            events.append(OrderDecremented(taker_id, both, quantity - both, maker.order_id))
            return quantity - both
        self._unlink(maker)
        events.append(OrderCanceled(maker.order_id, maker.quantity, CancelReason.SELF_TRADE))
        if stp == CANCEL_BOTH:
            events.append(OrderCanceled(taker_id, quantity, CancelReason.SELF_TRADE))
            return 0
        return quantity

    # ------------------------------------------------------------------ stops, clock and auction

    def _trigger(self, events: list) -> None:
        """The trigger loop: in CONTINUOUS, release the earliest-accepted qualifying stop and
        execute it, as long as one qualifies at the last trade price."""
        if not self._held.orders or self._phase is not CONTINUOUS or self._last_price is None:
            return
        while (order := self._held.next_qualifying(self._last_price)) is not None:
            self._held.remove(order)
            events.append(StopTriggered(order.order_id, self._last_price))
            if order.order_type is STOP_LIMIT:
                order.order_type, order.stop_price = LIMIT, 0
                if order.tif is FOK and not self._fillable(order.side, order.price, order.quantity, order.owner,
                                                           order.stp):
                    events.append(OrderCanceled(order.order_id, order.quantity, CancelReason.UNFILLED))
                    continue
            self._execute(order, events)

    def _uncross(self, events: list) -> None:
        """The call auction's uncross: trade at the one price, then cancel what the waiting
        market orders have left."""
        waiting = self._waiting.values()
        found = self._uncross_price()
        if found is not None:
            price, volume = found
            events.append(AuctionUncrossed(price, volume))
            self._auction_trades(price, events)
            self._last_price = price
        for order in waiting:
            if order.quantity:
                events.append(OrderCanceled(order.order_id, order.quantity, CancelReason.UNFILLED))
        self._waiting = {}

    def _uncross_price(self) -> tuple[int, int] | None:
        waiting = self._waiting.values()
        return uncross_price(
            [(price, level.open) for price, level in self._sides[BUY].items()],
            [(price, level.open) for price, level in self._sides[SELL].items()],
            sum(o.quantity for o in waiting if o.side == BUY), sum(o.quantity for o in waiting if o.side == SELL),
            self._last_price,
        )

    def _auction_trades(self, price, events) -> None:
        """Pair buys and sells in priority order at ``price`` until one side has none left; the
        maker of each fill is the one with the earlier auction time. Icebergs trade their whole
        open quantity and keep their place, showing min(display, open) afterwards."""
        buys, sells = self._auction_queue(BUY, price), self._auction_queue(SELL, price)
        traded: dict[int, tuple[_Order, int]] = {}
        buy, sell = next(buys, None), next(sells, None)
        while buy is not None and sell is not None:
            for order in (buy, sell):
                if order.order_id in self._live and order.order_id not in traded:
                    self._touch(order.side, order.price)
                    traded[order.order_id] = (order, order.quantity)
            quantity = min(buy.quantity, sell.quantity)
            buy.quantity -= quantity
            sell.quantity -= quantity
            maker, taker = (buy, sell) if buy.time < sell.time else (sell, buy)
            self._trade_sequence += 1
            events.append(OrderFilled(maker.order_id, taker.order_id, price, quantity, maker.quantity,
                                      taker.quantity, taker.side, self._trade_sequence))
            if not buy.quantity:
                buy = next(buys, None)
            if not sell.quantity:
                sell = next(sells, None)
        for order, open_before in traded.values():
            level = self._level_of(order)
            level.open -= open_before - order.quantity
            level.quantity -= order.visible
            if order.quantity:
                order.visible = min(order.display, order.quantity) if order.display else order.quantity
                level.quantity += order.visible
            else:
                del level.orders[order.order_id]
                del self._live[order.order_id]
                if not level.orders:
                    del self._sides[order.side][order.price]

    def _auction_queue(self, side, price):
        """The ``side`` orders taking part in the uncross at ``price``, in priority order: the
        waiting market orders by arrival, then the limits priced at or through ``price``."""
        yield from (order for order in self._waiting.values() if order.side == side)
        for level_price, level in self._sides[side].items():
            if not self._crosses(side, level_price, price):
                return
            yield from level.orders.values()

    # ------------------------------------------------------------------ book keeping

    def _touch(self, side, price) -> None:
        """Note the level's state before the command changes it (once per command)."""
        key = (side, price)
        if key not in self._touched:
            level = self._sides[side].get(price)
            self._touched[key] = (0, 0) if level is None else (level.quantity, len(level.orders))

    def _rest(self, order: _Order) -> None:
        """Give ``order`` a place at the back of its level, with a fresh visible slice."""
        self._touch(order.side, order.price)
        book_side = self._sides[order.side]
        level = book_side.get(order.price)
        if level is None:
            level = book_side[order.price] = _Level()
        order.visible = min(order.display, order.quantity) if order.display else order.quantity
        if self._phase is not CONTINUOUS:
            self._time += 1
            order.time = self._time
        level.orders[order.order_id] = order
        level.quantity += order.visible
        level.open += order.quantity
        self._live[order.order_id] = order

    def _shrink(self, order: _Order, by: int) -> None:
        """Take ``by`` lots off a resting order in place (gone at 0); its slice shrinks to fit."""
        self._touch(order.side, order.price)
        level = self._level_of(order)
        order.quantity -= by
        level.open -= by
        if not order.quantity:
            level.quantity -= order.visible
            del level.orders[order.order_id]
            del self._live[order.order_id]
            if not level.orders:
                del self._sides[order.side][order.price]
        else:
            self._shrink_visible(order, min(order.visible, order.quantity))

    def _shrink_visible(self, order: _Order, visible: int) -> None:
        self._level_of(order).quantity -= order.visible - visible
        order.visible = visible

    def _level_of(self, order: _Order) -> _Level:
        return self._sides[order.side][order.price]

    def _unlink(self, order: _Order) -> None:
        self._touch(order.side, order.price)
        book_side = self._sides[order.side]
        level = book_side[order.price]
        del level.orders[order.order_id]
        level.quantity -= order.visible
        level.open -= order.quantity
        if not level.orders:
            del book_side[order.price]
        del self._live[order.order_id]

    def _remove_pending(self, order: _Order) -> None:
        """Take a held stop or a waiting market order away."""
        if order.order_id in self._held:
            self._held.remove(order)
        else:
            del self._waiting[order.order_id]

    def _priority_order(self):
        for book_side in self._sides:
            for level in book_side.values():
                yield from level.orders.values()

    def _records(self):
        """The state as snapshot records (`engine.snapshot`): orders in priority order, the
        details of the orders that are not plain, held stops, waiting market orders."""
        ranked = sorted((o.accepted, o.order_id) for o in chain(self._live.values(), self._held.orders.values())
                        if o.tif is GTD or o.order_type is not LIMIT)
        accepted = {order_id: rank for rank, (_, order_id) in enumerate(ranked, 1)}
        times = {}
        if self._phase is not CONTINUOUS:
            timed = sorted((o.time, o.order_id) for o in chain(self._live.values(), self._waiting.values()))
            times = {order_id: rank for rank, (_, order_id) in enumerate(timed, 1)}
        orders, details = [], []
        for o in self._priority_order():
            orders.append((o.order_id, o.side, o.price, o.quantity, o.tif))
            rank, time = accepted.get(o.order_id, 0), times.get(o.order_id, 0)
            if o.display or o.flags or o.owner or o.stp or rank or time:
                details.append((o.order_id, o.display, o.visible, o.flags, o.stp, o.owner, o.expire_at, rank, time))
        held = [(o.order_id, o.side, o.order_type, o.tif, o.stp, o.price, o.quantity, o.stop_price, o.owner,
                 o.expire_at, accepted[o.order_id]) for o in self._held.orders.values()]
        waiting = [(o.order_id, o.side, o.tif, o.stp, o.quantity, o.owner, times[o.order_id])
                   for o in self._waiting.values()]
        return orders, details, held, waiting


def _order_records(orders):
    return np.array(orders, dtype=ORDER_DTYPE) if orders else np.empty(0, ORDER_DTYPE)
