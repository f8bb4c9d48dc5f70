"""The book's validation rules: which commands it refuses, with which reason, in which order.

`OrderRules` is the part of `engine.book.ReferenceBook` that decides whether a submit or a
replace is refused; it reads the book's state (``_sides``, ``_accepted_ids``, ``_live``,
``_held``, ``_waiting``, ``_phase``, ``_clock``) and changes nothing. Cancel, clock and
phase commands have one or two rules each and keep them in their methods.

Validation, in this order (the first failing rule gives the reason)
-------------------------------------------------------------------
every command: each integer it takes is an int64 (VALUE_OUT_OF_RANGE otherwise).
submit:  1. order type, side, time in force (not for STOP, which ignores it),
         flags, stp known; 2. 0 < quantity <= MAX_QUANTITY, id not yet accepted;
         3. limit price > 0 (LIMIT, STOP_LIMIT), stop price > 0 (STOP,
         STOP_LIMIT); 4. a market order is IOC or FOK; 5. display quantity in
         0..quantity, and > 0 only on a LIMIT order that is neither IOC nor FOK;
         6. post-only only on such an order; 7. GTD (LIMIT, STOP_LIMIT): expire_at
         after the clock; 8. phase: HALTED takes no new order, CALL no IOC/FOK
         limit and no stop; 9. CONTINUOUS: post-only not at or through the best
         opposite price; 10. CONTINUOUS: FOK fillable with prevention applied.
replace: 0 < quantity <= MAX_QUANTITY; price > 0; the id is a resting order (a
         held stop or waiting market order: NOT_REPLACEABLE); HALTED: only a
         reduction in place; CONTINUOUS: a post-only re-entry not at or through
         the best opposite price.
cancel:  the id is a resting order, a held stop or a waiting market order.
clock:   not before the current time. phase: 0, 1 or 2.
"""

from engine.types import (
    INT64_MAX,
    INT64_MIN,
    MAX_QUANTITY,
    OrderFlags,
    OrderType,
    Phase,
    RejectReason,
    SelfTradePrevention,
    Side,
    TimeInForce,
)

BUY = Side.BUY
LIMIT, MARKET, STOP, STOP_LIMIT = OrderType.LIMIT, OrderType.MARKET, OrderType.STOP, OrderType.STOP_LIMIT
IOC, FOK, GTD = TimeInForce.IOC, TimeInForce.FOK, TimeInForce.GTD
CONTINUOUS, CALL, HALTED = Phase.CONTINUOUS, Phase.CALL, Phase.HALTED
NONE, CANCEL_MAKER = SelfTradePrevention.NONE, SelfTradePrevention.CANCEL_MAKER
POST_ONLY = int(OrderFlags.POST_ONLY)
R = RejectReason


class OrderRules:
    """The submit and replace rules of a book (see the module docstring)."""

    def _check_submit(self, order_id, side, order_type, tif, price, quantity, stop_price, display, flags, owner,
                      stp, expire_at) -> RejectReason | None:
        if not in_range(order_id, side, order_type, tif, price, quantity, stop_price, display, flags, owner, stp,
                         expire_at):
            return R.VALUE_OUT_OF_RANGE
        if order_type not in (0, 1, 2, 3):
            return R.UNKNOWN_ORDER_TYPE
        if side not in (0, 1):
            return R.UNKNOWN_SIDE
        if order_type != STOP and tif not in (0, 1, 2, 3, 4):
            return R.UNKNOWN_TIME_IN_FORCE
        if flags not in (0, POST_ONLY):
            return R.UNKNOWN_FLAGS
        if stp not in (0, 1, 2, 3, 4):
            return R.UNKNOWN_STP_MODE
        if quantity <= 0:
            return R.INVALID_QUANTITY
        if quantity > MAX_QUANTITY:
            return R.QUANTITY_TOO_LARGE
        if order_id in self._accepted_ids:
            return R.DUPLICATE_ORDER_ID
        priced, stopped = order_type in (LIMIT, STOP_LIMIT), order_type in (STOP, STOP_LIMIT)
        if priced and price <= 0:
            return R.INVALID_PRICE
        if stopped and stop_price <= 0:
            return R.INVALID_STOP_PRICE
        if order_type == MARKET and tif not in (IOC, FOK):
            return R.MARKET_ORDER_CANNOT_REST
        at_once = order_type != STOP and tif in (IOC, FOK)
        if display < 0 or display > quantity or (display and (order_type != LIMIT or at_once)):
            return R.INVALID_DISPLAY_QUANTITY
        if flags and (order_type != LIMIT or at_once):
            return R.POST_ONLY_NOT_ALLOWED
        if priced and tif == GTD and expire_at <= self._clock:
            return R.EXPIRE_TIME_PASSED
        if self._phase is HALTED or (self._phase is CALL and (stopped or (order_type == LIMIT and at_once))):
            return R.NOT_ALLOWED_IN_PHASE
        if self._phase is CONTINUOUS:
            if flags and self._would_take(side, price):
                return R.POST_ONLY_WOULD_TAKE
            if tif == FOK and order_type in (LIMIT, MARKET) and not self._fillable(
                    side, price if order_type == LIMIT else None, quantity, owner, stp):
                return R.FOK_NOT_FILLABLE
        return None

    def _check_replace(self, order_id, price, quantity) -> RejectReason | None:
        if not in_range(order_id, price, quantity):
            return R.VALUE_OUT_OF_RANGE
        if quantity <= 0:
            return R.INVALID_QUANTITY
        if quantity > MAX_QUANTITY:
            return R.QUANTITY_TOO_LARGE
        if price <= 0:
            return R.INVALID_PRICE
        order = self._live.get(order_id)
        if order is None:
            return R.NOT_REPLACEABLE if order_id in self._held or order_id in self._waiting else R.UNKNOWN_ORDER
        if price == order.price and quantity <= order.quantity:
            return None
        if self._phase is HALTED:
            return R.NOT_ALLOWED_IN_PHASE
        if self._phase is CONTINUOUS and order.flags & POST_ONLY and self._would_take(order.side, price):
            return R.POST_ONLY_WOULD_TAKE
        return None

    def _would_take(self, side, price) -> bool:
        """Whether a ``side`` limit at ``price`` is at or through the best opposite price."""
        opposite = self._sides[1 - side]
        return bool(opposite) and self._crosses(side, price, opposite.peekitem(0)[0])

    @staticmethod
    def _crosses(side, limit, price) -> bool:
        """Whether a ``side`` taker with ``limit`` (None: market) may trade at ``price``."""
        if limit is None:
            return True
        return price <= limit if side == BUY else price >= limit

    def _fillable(self, side, limit, quantity, owner, stp) -> bool:
        """Whether a taker would fill ``quantity`` completely, self-trade prevention applied.

        Icebergs refresh, so a level without an order of the owner gives all its open quantity.
        With CANCEL_MAKER the owner's orders are canceled and the rest trades; with the other
        modes the taker stops at the first order of its owner at the front of a level: it gets
        the visible slices ahead of it (an iceberg refreshing goes behind it).
        """
        prevent = owner != 0 and stp != NONE
        wanted = quantity
        for price, level in self._sides[1 - side].items():
            if not self._crosses(side, limit, price):
                break
            if not prevent:
                wanted -= level.open
            elif stp == CANCEL_MAKER:
                wanted -= level.open - sum(o.quantity for o in level.orders.values() if o.owner == owner)
            else:
                ahead = 0
                for order in level.orders.values():
                    if order.owner == owner:
                        return ahead >= wanted
                    ahead += order.visible
                wanted -= level.open
            if wanted <= 0:
                return True
        return False



def in_range(*values) -> bool:
    """Whether every one of ``values`` is an int64."""
    return INT64_MIN <= min(values) and max(values) <= INT64_MAX
