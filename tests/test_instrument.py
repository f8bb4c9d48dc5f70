"""Instrument reference data: order checks, spec validation and price display."""

import msgspec
import pytest

from engine.instrument import Instrument
from engine.types import OrderType, RejectReason

LIMIT, MARKET = OrderType.LIMIT, OrderType.MARKET
R = RejectReason

SPEC = Instrument("XYZ", tick_size=5, lot_size=10, min_quantity=20, max_quantity=1_000, price_band_bps=1_000)


@pytest.mark.parametrize(
    ("order_type", "price", "quantity", "reference", "expected"),
    [
        (LIMIT, 1_000, 20, 1_000, None),
        (LIMIT, 1_000, 1_000, None, None),
        (LIMIT, 1_003, 20, 1_000, R.PRICE_OFF_TICK),
        (LIMIT, 1_000, 25, 1_000, R.QUANTITY_OFF_LOT),
        (LIMIT, 1_000, 10, 1_000, R.QUANTITY_BELOW_MINIMUM),
        (LIMIT, 1_000, 0, 1_000, R.QUANTITY_BELOW_MINIMUM),
        (LIMIT, 1_000, 1_010, 1_000, R.QUANTITY_ABOVE_MAXIMUM),
        (LIMIT, 1_100, 20, 1_000, None),
        (LIMIT, 1_105, 20, 1_000, R.PRICE_OUTSIDE_BAND),
        (LIMIT, 900, 20, 1_000, None),
        (LIMIT, 895, 20, 1_000, R.PRICE_OUTSIDE_BAND),
        (LIMIT, 5, 20, None, None),
        (LIMIT, 10**12, 20, None, None),
    ],
    ids=[
        "valid", "valid max no reference", "off tick", "off lot", "below min", "zero", "above max",
        "band top edge", "above band", "band bottom edge", "below band", "no reference low",
        "no reference high",
    ],
)  # fmt: skip
def test_check_order_single_rule(order_type, price, quantity, reference, expected):
    assert SPEC.check_order(order_type, price, quantity, reference) is expected


@pytest.mark.parametrize(
    ("price", "quantity", "expected"),
    [
        (1_003, 25, R.QUANTITY_OFF_LOT),
        (1_003, 10, R.QUANTITY_BELOW_MINIMUM),
        (5_000, 10, R.QUANTITY_BELOW_MINIMUM),
        (5_000, 2_000, R.QUANTITY_ABOVE_MAXIMUM),
        (5_003, 20, R.PRICE_OFF_TICK),
        (15, 5, R.QUANTITY_OFF_LOT),
    ],
    ids=["lot before tick", "min before tick", "min before band", "max before band", "tick before band",
         "lot before min"],
)  # fmt: skip
def test_check_order_first_rule_wins(price, quantity, expected):
    assert SPEC.check_order(LIMIT, price, quantity, 1_000) is expected


def test_check_order_band_disabled_with_zero():
    spec = Instrument("XYZ", price_band_bps=0)
    assert spec.check_order(LIMIT, 1, 1, 1_000) is None
    assert spec.check_order(LIMIT, 10**15, 1, 1_000) is None


def test_check_order_band_width_scales_with_bps():
    spec = Instrument("XYZ", price_band_bps=1)
    assert spec.check_order(LIMIT, 10_001, 1, 10_000) is None
    assert spec.check_order(LIMIT, 10_002, 1, 10_000) is R.PRICE_OUTSIDE_BAND
    assert spec.check_order(LIMIT, 9_999, 1, 10_000) is None
    assert spec.check_order(LIMIT, 9_998, 1, 10_000) is R.PRICE_OUTSIDE_BAND


def test_check_order_market_skips_price_rules_but_not_quantity_rules():
    assert SPEC.check_order(MARKET, 0, 20, 1_000) is None
    assert SPEC.check_order(MARKET, 1_003, 20, 1_000) is None
    assert SPEC.check_order(MARKET, 10**9, 20, 1_000) is None
    assert SPEC.check_order(MARKET, 0, 25, 1_000) is R.QUANTITY_OFF_LOT
    assert SPEC.check_order(MARKET, 0, 10, 1_000) is R.QUANTITY_BELOW_MINIMUM
    assert SPEC.check_order(MARKET, 0, 1_010, 1_000) is R.QUANTITY_ABOVE_MAXIMUM


def test_instrument_defaults():
    assert Instrument("ABC") == Instrument(
        "ABC", tick_size=1, lot_size=1, min_quantity=1, max_quantity=1_000_000, price_band_bps=1_000,
        price_scale=100,
    )  # fmt: skip


def test_convert_valid_spec():
    fields = {"symbol": "BRK.B", "tick_size": 5, "lot_size": 10, "min_quantity": 10}
    spec = msgspec.convert(fields, Instrument)
    assert spec == Instrument("BRK.B", tick_size=5, lot_size=10, min_quantity=10)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"symbol": "ABC", "tick_size": 0}, "tick_size"),
        ({"symbol": "ABC", "lot_size": -1}, "lot_size"),
        ({"symbol": "ABC", "min_quantity": 0}, "min_quantity"),
        ({"symbol": "ABC", "max_quantity": 0}, "max_quantity"),
        ({"symbol": "ABC", "price_scale": 0}, "price_scale"),
        ({"symbol": "ABC", "price_band_bps": -1}, "price_band_bps"),
        ({"symbol": "ABC", "tick_size": 1.5}, "tick_size"),
        ({"symbol": "abc"}, "symbol"),
        ({"symbol": ""}, "symbol"),
        ({"symbol": "A" * 17}, "symbol"),
        ({"symbol": "AB C"}, "symbol"),
        ({}, "symbol"),
        ({"symbol": "ABC", "tick": 1}, "unknown field `tick`"),
        ({"symbol": "ABC", "min_quantity": 5, "max_quantity": 1}, "min_quantity 5 > max_quantity 1"),
        ({"symbol": "ABC", "lot_size": 10, "min_quantity": 15, "max_quantity": 100}, "multiples of lot_size"),
        ({"symbol": "ABC", "lot_size": 10, "min_quantity": 10, "max_quantity": 105}, "multiples of lot_size"),
    ],
)
def test_convert_bad_spec_raises_validation_error(fields, message):
    with pytest.raises(msgspec.ValidationError, match=message):
        msgspec.convert(fields, Instrument)


def test_symbol_of_sixteen_allowed_characters_is_valid():
    assert msgspec.convert({"symbol": "A1._-" + "Z" * 11}, Instrument).symbol == "A1._-ZZZZZZZZZZZ"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"min_quantity": 11, "max_quantity": 10}, "ABC: min_quantity 11 > max_quantity 10"),
        ({"lot_size": 3, "min_quantity": 4, "max_quantity": 30}, "multiples of lot_size 3"),
        ({"lot_size": 3, "min_quantity": 3, "max_quantity": 31}, "multiples of lot_size 3"),
    ],
)
def test_post_init_rejects_inconsistent_quantities(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Instrument("ABC", **kwargs)


@pytest.mark.parametrize(
    ("scale", "price", "text"),
    [
        (100, 12_345, "123.45"),
        (100, 5, "0.05"),
        (100, 0, "0.00"),
        (100, -5, "-0.05"),
        (1, 12_345, "12345"),
        (10, 12_345, "1234.5"),
        (1_000, 1, "0.001"),
        (10**8, 123_456_789, "1.23456789"),
        (3, 10, "3.333333"),
        (250, 1, "0.004000"),
        (100, 2**62, "46116860184273879.04"),
    ],
)
def test_format_price(scale, price, text):
    assert Instrument("ABC", price_scale=scale).format_price(price) == text
