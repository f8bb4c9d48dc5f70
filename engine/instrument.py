"""Instrument reference data and the order checks that depend on it.

All values are integers in the core's units: prices in price units (the smallest
price the venue can express), quantities in quantity units. ``tick_size`` and
``lot_size`` say which multiples of those units an order may use; ``price_scale``
is only for display (price units per currency unit, e.g. 100 for cents).

The checks of a new order, in the order the trading engine server makes them (the
first one broken gives the reason): `disabled_kind` (ORDER_TYPE_DISABLED), `check_order`
(lot, minimum, maximum, then the limit price's tick and band), `check_iceberg` (the display
quantity's lot, then the number of slices) and `check_stop` (the stop price's tick, its
distance from the last trade, then the side of the market it is on). A replace is checked by
`check_order` and `check_iceberg` only. Rules the book itself enforces (a display quantity
above the quantity, a stop price that is not positive...) are left to it, so each has one
reason, the book's.
"""

from decimal import Decimal
from typing import Annotated, Literal, get_args

import msgspec

from engine.types import OrderFlags, OrderType, RejectReason, Side, TimeInForce

Positive = Annotated[int, msgspec.Meta(gt=0)]
NonNegative = Annotated[int, msgspec.Meta(ge=0)]
OrderKind = Literal["limit", "market", "stop", "stop-limit", "iceberg", "post-only", "gtd"]
ORDER_KINDS: tuple[str, ...] = get_args(OrderKind)
"""Every kind of order an instrument can enable, in the order they are checked and listed: the four
order types, then the features an order may add to its type (a display quantity, post-only, GTD)."""
TYPE_KINDS = ("limit", "market", "stop", "stop-limit")
"""The kind of each `OrderType`, by its value (a tuple: indexing it with an enum costs no hashing)."""
POST_ONLY = int(OrderFlags.POST_ONLY)
MARKET, STOP, GTD = OrderType.MARKET, OrderType.STOP, TimeInForce.GTD
"""As plain names, read per order: on Python 3.11 ``Enum.MEMBER`` costs about 0.1 µs
(``EnumType.__getattr__``)."""
"""A plain int: ``&`` with an IntFlag member builds a new member, which costs a microsecond per order."""


class Instrument(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    symbol: Annotated[str, msgspec.Meta(min_length=1, max_length=16, pattern=r"^[A-Z0-9._-]+$")]
    tick_size: Positive = 1
    lot_size: Positive = 1
    min_quantity: Positive = 1
    max_quantity: Positive = 1_000_000
    price_band_bps: Annotated[int, msgspec.Meta(ge=0)] = 1000
    """A limit price may differ from the reference price by at most this many basis
    points; 0 disables the band."""
    price_scale: Positive = 100
    order_types: frozenset[OrderKind] = frozenset(ORDER_KINDS)
    """The kinds of order the instrument takes (`ORDER_KINDS`); an order of any other kind is
    refused ORDER_TYPE_DISABLED. "iceberg" is a limit order with a display quantity, "post-only"
    one with the post-only flag, "gtd" a limit or stop-limit order good till a date: an order is
    taken only if its type and each feature it uses are enabled."""
    max_iceberg_slices: NonNegative = 0
    """The most display slices an iceberg may be cut into: ceil(quantity / display quantity) <=
    this (so with 10, an iceberg of 1,000 lots shows at least 100 at a time); 0: no limit."""
    max_stop_distance_bps: NonNegative = 0
    """A stop price may differ from the last trade price (before the first trade: the price the
    band is centred on) by at most this many basis points; 0: no limit."""
    allow_marketable_stops: bool = False
    """Whether a stop the last trade price already reaches (a buy stop at or below it, a sell stop
    at or above it) is taken: it triggers at once. False: refused STOP_WOULD_TRIGGER."""

    def __post_init__(self) -> None:
        if self.min_quantity > self.max_quantity:
            raise ValueError(f"{self.symbol}: min_quantity {self.min_quantity} > max_quantity {self.max_quantity}")
        if self.min_quantity % self.lot_size or self.max_quantity % self.lot_size:
            raise ValueError(f"{self.symbol}: min/max quantity must be multiples of lot_size {self.lot_size}")

    def check_order(
        self, order_type: int, price: int, quantity: int, reference_price: int | None
    ) -> RejectReason | None:
        """The first reference-data rule an order breaks, or None.

        ``reference_price`` is the price the band is centred on (typically the last
        trade); None means no band is applied yet. Market orders carry no price and
        skip the price rules.
        """
        if quantity % self.lot_size:
            return RejectReason.QUANTITY_OFF_LOT
        if quantity < self.min_quantity:
            return RejectReason.QUANTITY_BELOW_MINIMUM
        if quantity > self.max_quantity:
            return RejectReason.QUANTITY_ABOVE_MAXIMUM
        if order_type == MARKET or order_type == STOP:
            return None
        if price % self.tick_size:
            return RejectReason.PRICE_OFF_TICK
        if self.price_band_bps and reference_price is not None:
            if abs(price - reference_price) * 10_000 > reference_price * self.price_band_bps:
                return RejectReason.PRICE_OUTSIDE_BAND
        return None

    def disabled_kind(self, order_type: int, time_in_force: int, display_quantity: int, flags: int) -> str | None:
        """The first kind of order (`ORDER_KINDS`) the order is and the instrument does not enable, or None.

        A STOP ignores its time in force (it never expires), so it is never "gtd"; unknown
        order types and flags are the book's to refuse.
        """
        kinds = self.order_types
        if 0 <= order_type < len(TYPE_KINDS) and TYPE_KINDS[order_type] not in kinds:
            return TYPE_KINDS[order_type]
        if display_quantity > 0 and "iceberg" not in kinds:
            return "iceberg"
        if flags & POST_ONLY and "post-only" not in kinds:
            return "post-only"
        if time_in_force == GTD and order_type != STOP and "gtd" not in kinds:
            return "gtd"
        return None

    def check_iceberg(self, quantity: int, display_quantity: int) -> RejectReason | None:
        """The first iceberg rule an order with ``display_quantity`` (0: not an iceberg) breaks, or
        None: the display quantity is a multiple of the lot, and cuts the quantity into at most
        `max_iceberg_slices` slices. A display quantity outside 1..quantity is the book's to refuse."""
        if display_quantity <= 0 or display_quantity > quantity:
            return None
        if display_quantity % self.lot_size:
            return RejectReason.QUANTITY_OFF_LOT
        if self.max_iceberg_slices and -(-quantity // display_quantity) > self.max_iceberg_slices:
            return RejectReason.ICEBERG_TOO_MANY_SLICES
        return None

    def check_stop(self, side: int, stop_price: int, centre: int | None, last_price: int | None
                   ) -> RejectReason | None:
        """The first rule a stop price breaks, or None: on the tick (PRICE_OFF_TICK), at most
        `max_stop_distance_bps` from ``centre`` (the last trade, else the reference price:
        STOP_PRICE_TOO_FAR), and, unless `allow_marketable_stops`, not already reached by
        ``last_price`` (STOP_WOULD_TRIGGER; None before the first trade, when no stop can
        trigger). A stop price that is not positive is the book's to refuse."""
        if stop_price <= 0:
            return None
        if stop_price % self.tick_size:
            return RejectReason.PRICE_OFF_TICK
        if self.max_stop_distance_bps and centre is not None and (
                abs(stop_price - centre) * 10_000 > centre * self.max_stop_distance_bps):
            return RejectReason.STOP_PRICE_TOO_FAR
        if not self.allow_marketable_stops and last_price is not None and (
                stop_price <= last_price if side == Side.BUY else stop_price >= last_price):
            return RejectReason.STOP_WOULD_TRIGGER
        return None

    def kinds_text(self) -> str:
        """The enabled kinds of order, comma-separated in `ORDER_KINDS` order (as config and admin write them)."""
        return ",".join(kind for kind in ORDER_KINDS if kind in self.order_types)

    def format_price(self, price: int) -> str:
        """Render a price in currency units for people (the only place decimals appear).

        Exact for every int64 price when ``price_scale`` is a power of ten (as many
        decimals as it has zeros); otherwise rounded to 6 decimals.
        """
        digits = len(str(self.price_scale)) - 1 if _is_power_of_ten(self.price_scale) else 6
        return f"{Decimal(price) / Decimal(self.price_scale):.{digits}f}"


def _is_power_of_ten(n: int) -> bool:
    while n % 10 == 0 and n > 1:
        n //= 10
    return n == 1
