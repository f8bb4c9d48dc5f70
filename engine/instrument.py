"""Instrument reference data and the order checks that depend on it.

All values are integers in the core's units: prices in price units (the smallest
price the venue can express), quantities in quantity units. ``tick_size`` and
``lot_size`` say which multiples of those units an order may use; ``price_scale``
is only for display (price units per currency unit, e.g. 100 for cents).
"""

from decimal import Decimal
from typing import Annotated

import msgspec

from engine.types import OrderType, RejectReason

Positive = Annotated[int, msgspec.Meta(gt=0)]


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
        if order_type == OrderType.MARKET:
            return None
        if price % self.tick_size:
            return RejectReason.PRICE_OFF_TICK
        if self.price_band_bps and reference_price is not None:
            if abs(price - reference_price) * 10_000 > reference_price * self.price_band_bps:
                return RejectReason.PRICE_OUTSIDE_BAND
        return None

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
