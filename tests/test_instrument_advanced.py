"""The instrument's rules for the advanced orders (`engine.instrument`): the kinds of order enabled,
an iceberg's slices, a stop's distance and side; each rule alone, and their edges."""

import msgspec
import pytest

from config.settings import InstrumentConfig
from engine.instrument import ORDER_KINDS, Instrument
from engine.types import OrderType, RejectReason, Side, TimeInForce

R = RejectReason
LIMIT, MARKET, STOP, STOP_LIMIT = OrderType.LIMIT, OrderType.MARKET, OrderType.STOP, OrderType.STOP_LIMIT
GTC, IOC, GTD = TimeInForce.GTC, TimeInForce.IOC, TimeInForce.GTD
SPEC = Instrument("XYZ", tick_size=5, lot_size=10, min_quantity=10, max_quantity=10_000, max_iceberg_slices=10,
                  max_stop_distance_bps=500)


@pytest.mark.parametrize("enabled, order, disabled", [
    (ORDER_KINDS, (STOP_LIMIT, GTD, 10, 1), None),
    (("limit",), (LIMIT, GTC, 0, 0), None),
    (("limit",), (MARKET, IOC, 0, 0), "market"),
    (("limit", "market"), (STOP, GTC, 0, 0), "stop"),
    (("limit", "stop"), (STOP_LIMIT, GTC, 0, 0), "stop-limit"),
    (("limit",), (LIMIT, GTC, 10, 0), "iceberg"),
    (("limit", "iceberg"), (LIMIT, GTC, 10, 1), "post-only"),
    (("limit", "iceberg", "post-only"), (LIMIT, GTD, 10, 1), "gtd"),
    (("stop",), (STOP, GTD, 0, 0), None),
    (("limit",), (LIMIT, GTC, 0, 2), None),
    ((), (9, GTC, 0, 0), None),
], ids=["all", "limit", "market", "stop", "stop-limit", "iceberg", "post-only", "gtd", "a stop ignores its tif",
        "unknown flags are the book's", "unknown types are the book's"])
def test_the_first_kind_of_order_not_enabled_is_named(enabled, order, disabled):
    instrument = msgspec.structs.replace(SPEC, order_types=frozenset(enabled))
    assert instrument.disabled_kind(*order) == disabled


@pytest.mark.parametrize("quantity, display, reason", [
    (100, 10, None),
    (100, 0, None),
    (91, 10, None),
    (101, 10, R.ICEBERG_TOO_MANY_SLICES),
    (100, 15, R.QUANTITY_OFF_LOT),
    (100, 200, None),
    (100, -10, None),
], ids=["10 slices", "not an iceberg", "a partial slice: 10", "a partial slice: 11", "display off lot",
        "display above quantity is the book's", "negative display is the book's"])
def test_an_iceberg_is_at_most_the_slices_allowed_and_on_the_lot(quantity, display, reason):
    assert SPEC.check_iceberg(quantity, display) is reason


def test_zero_slices_is_no_limit():
    assert msgspec.structs.replace(SPEC, max_iceberg_slices=0).check_iceberg(10_000, 10) is None


@pytest.mark.parametrize("side, stop, centre, last, reason", [
    (Side.BUY, 10_500, 10_000, None, None),
    (Side.BUY, 10_505, 10_000, None, R.STOP_PRICE_TOO_FAR),
    (Side.SELL, 9_500, 10_000, None, None),
    (Side.SELL, 9_495, 10_000, None, R.STOP_PRICE_TOO_FAR),
    (Side.BUY, 10_003, 10_000, None, R.PRICE_OFF_TICK),
    (Side.BUY, 10_000, 10_000, 10_000, R.STOP_WOULD_TRIGGER),
    (Side.BUY, 10_005, 10_000, 10_000, None),
    (Side.SELL, 10_000, 10_000, 10_000, R.STOP_WOULD_TRIGGER),
    (Side.SELL, 9_995, 10_000, 10_000, None),
    (Side.BUY, 9_600, 10_000, None, None),
    (Side.BUY, 0, 10_000, 10_000, None),
], ids=["buy at the edge", "buy past it", "sell at the edge", "sell past it", "off tick", "buy at the last",
        "buy above it", "sell at the last", "sell below it", "no last trade: nothing triggers",
        "not positive is the book's"])
def test_a_stop_is_on_the_tick_within_its_distance_and_on_the_right_side(side, stop, centre, last, reason):
    assert SPEC.check_stop(side, stop, centre, last) is reason


def test_marketable_stops_and_unlimited_distance_can_be_allowed():
    lenient = msgspec.structs.replace(SPEC, allow_marketable_stops=True, max_stop_distance_bps=0)
    assert lenient.check_stop(Side.BUY, 5_000, 10_000, 10_000) is None


def test_a_stop_market_order_skips_the_limit_price_rules():
    assert SPEC.check_order(STOP, 0, 100, 10_000) is None
    assert SPEC.check_order(STOP_LIMIT, 3, 100, 10_000) is R.PRICE_OFF_TICK


def test_the_configuration_reads_kinds_of_order_and_refuses_unknown_ones():
    instrument = msgspec.convert({"symbol": "XYZ", "order_types": ["gtd", "limit"]}, InstrumentConfig)
    assert instrument.order_types == {"limit", "gtd"} and instrument.kinds_text() == "limit,gtd"
    with pytest.raises(msgspec.ValidationError, match="order_types"):
        msgspec.convert({"symbol": "XYZ", "order_types": ["limit", "twap"]}, InstrumentConfig)
