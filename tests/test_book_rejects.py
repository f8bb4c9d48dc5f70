"""Submission validation: every book reject reason, the documented rule order, ids, extremes."""

import pytest
from test_book_v2_rejects import V2_COVERED

from engine.lifecycle import OrderState
from engine.messages import (
    CancelRejected,
    OrderAccepted,
    OrderCanceled,
    OrderFilled,
    OrderRejected,
    OrderReplaced,
    ReplaceRejected,
    RestingOrder,
)
from engine.types import MAX_QUANTITY, CancelReason, OrderType, RejectReason, Side, TimeInForce

BUY, SELL = Side.BUY, Side.SELL
LIMIT, MARKET = OrderType.LIMIT, OrderType.MARKET
GTC, IOC, FOK, DAY = TimeInForce.GTC, TimeInForce.IOC, TimeInForce.FOK, TimeInForce.DAY
R = RejectReason
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def rejected(order_id, reason):
    return [OrderRejected(order_id, reason, reason.text)]


def seeded(book):
    """A book with both sides occupied and id 1 accepted (resting at 100 bid)."""
    book.buy(1, 100, 10)
    book.buy(2, 99, 10)
    book.sell(3, 101, 10)
    book.sell(4, 102, 10)
    return book


def assert_untouched(book, command):
    before, snapshot, depth = book.state_hash(), book.snapshot(), book.depth()
    events = command()
    assert (book.state_hash(), book.snapshot(), book.depth()) == (before, snapshot, depth)
    return events


# (order_id, side, order_type, tif, price, quantity) -> reason, on the seeded book
SUBMIT_REJECTS = {
    "type 4": ((10, BUY, 4, GTC, 100, 1), R.UNKNOWN_ORDER_TYPE),
    "type -1": ((10, BUY, -1, GTC, 100, 1), R.UNKNOWN_ORDER_TYPE),
    "side 2": ((10, 2, LIMIT, GTC, 100, 1), R.UNKNOWN_SIDE),
    "side -1": ((10, -1, LIMIT, GTC, 100, 1), R.UNKNOWN_SIDE),
    "tif 5": ((10, BUY, LIMIT, 5, 100, 1), R.UNKNOWN_TIME_IN_FORCE),
    "tif -1": ((10, SELL, MARKET, -1, 0, 1), R.UNKNOWN_TIME_IN_FORCE),
    "qty 0": ((10, BUY, LIMIT, GTC, 100, 0), R.INVALID_QUANTITY),
    "qty -1": ((10, SELL, MARKET, IOC, 0, -1), R.INVALID_QUANTITY),
    "qty min int64": ((10, BUY, LIMIT, GTC, 100, INT64_MIN), R.INVALID_QUANTITY),
    "qty max+1": ((10, BUY, LIMIT, GTC, 100, MAX_QUANTITY + 1), R.QUANTITY_TOO_LARGE),
    "qty max int64": ((10, SELL, MARKET, IOC, 0, INT64_MAX), R.QUANTITY_TOO_LARGE),
    "price 0": ((10, BUY, LIMIT, GTC, 0, 1), R.INVALID_PRICE),
    "price -1 ioc": ((10, SELL, LIMIT, IOC, -1, 1), R.INVALID_PRICE),
    "price min int64 fok": ((10, BUY, LIMIT, FOK, INT64_MIN, 1), R.INVALID_PRICE),
    "market gtc": ((10, BUY, MARKET, GTC, 0, 1), R.MARKET_ORDER_CANNOT_REST),
    "market day": ((10, SELL, MARKET, DAY, 0, 1), R.MARKET_ORDER_CANNOT_REST),
    "duplicate resting": ((1, SELL, LIMIT, GTC, 100, 1), R.DUPLICATE_ORDER_ID),
    "duplicate market": ((3, BUY, MARKET, IOC, 0, 1), R.DUPLICATE_ORDER_ID),
    "fok limit short": ((10, BUY, LIMIT, FOK, 102, 21), R.FOK_NOT_FILLABLE),
    "fok limit off market": ((10, SELL, LIMIT, FOK, 101, 1), R.FOK_NOT_FILLABLE),
    "fok market short": ((10, SELL, MARKET, FOK, 0, 21), R.FOK_NOT_FILLABLE),
    "price 2**63": ((10, BUY, LIMIT, GTC, INT64_MAX + 1, 1), R.VALUE_OUT_OF_RANGE),
    "id 2**63 before a bad type": ((INT64_MAX + 1, BUY, 2, GTC, 100, 1), R.VALUE_OUT_OF_RANGE),
}


@pytest.mark.parametrize(("command", "reason"), SUBMIT_REJECTS.values(), ids=SUBMIT_REJECTS)
def test_invalid_submit_rejected_book_untouched(book, command, reason):
    seeded(book)
    assert assert_untouched(book, lambda: book.submit(*command)) == rejected(command[0], reason)


def test_every_book_reject_reason_is_covered():
    """The 1xxx/2xxx reasons are the book's own; each must appear in a test above or, for the
    advanced orders' and phases' reasons, in test_book_v2_rejects."""
    covered = {reason for _, reason in SUBMIT_REJECTS.values()} | {R.UNKNOWN_ORDER} | V2_COVERED
    assert covered == {reason for reason in RejectReason if reason < 3000}


def test_unknown_order_on_cancel_and_replace_carries_its_text(book):
    seeded(book)
    text = "no live order with this id"
    assert assert_untouched(book, lambda: book.cancel(10)) == [CancelRejected(10, R.UNKNOWN_ORDER, text)]
    assert assert_untouched(book, lambda: book.replace(10, 100, 1)) == [
        ReplaceRejected(10, R.UNKNOWN_ORDER, text)
    ]


# ---------------------------------------------------------------- rule order

RULE_ORDER = {
    "type before side": ((10, 5, 5, GTC, 100, 1), R.UNKNOWN_ORDER_TYPE),
    "type before everything": ((1, 9, 9, 9, -1, 0), R.UNKNOWN_ORDER_TYPE),
    "side before tif": ((10, 5, LIMIT, 9, 100, 1), R.UNKNOWN_SIDE),
    "side before quantity": ((1, 5, MARKET, IOC, 0, 0), R.UNKNOWN_SIDE),
    "tif before quantity": ((10, BUY, LIMIT, 9, 100, -3), R.UNKNOWN_TIME_IN_FORCE),
    "tif before market rest": ((10, BUY, MARKET, 9, 0, 1), R.UNKNOWN_TIME_IN_FORCE),
    "quantity before price": ((10, BUY, LIMIT, GTC, 0, 0), R.INVALID_QUANTITY),
    "too large before price": ((10, BUY, LIMIT, GTC, -5, MAX_QUANTITY + 1), R.QUANTITY_TOO_LARGE),
    "quantity before market rest": ((10, SELL, MARKET, GTC, 0, 0), R.INVALID_QUANTITY),
    "quantity before duplicate": ((1, BUY, LIMIT, GTC, 100, 0), R.INVALID_QUANTITY),
    "duplicate before price": ((1, BUY, LIMIT, GTC, 0, 1), R.DUPLICATE_ORDER_ID),
    "price before fok": ((10, BUY, LIMIT, FOK, 0, 1_000), R.INVALID_PRICE),
    "duplicate before market rest": ((1, BUY, MARKET, DAY, 0, 1), R.DUPLICATE_ORDER_ID),
    "duplicate before fok": ((1, BUY, LIMIT, FOK, 102, 1_000), R.DUPLICATE_ORDER_ID),
    "duplicate before market fok": ((3, SELL, MARKET, FOK, 0, 1_000), R.DUPLICATE_ORDER_ID),
}


@pytest.mark.parametrize(("command", "reason"), RULE_ORDER.values(), ids=RULE_ORDER)
def test_two_failing_rules_first_documented_rule_wins(book, command, reason):
    seeded(book)
    assert assert_untouched(book, lambda: book.submit(*command)) == rejected(command[0], reason)


def test_market_order_price_is_not_validated(book):
    book.sell(1, 100, 5)
    assert book.submit(2, BUY, MARKET, IOC, -1, 2) == [
        OrderAccepted(2, BUY, MARKET, IOC, 0, 2),
        OrderFilled(1, 2, 100, 2, 3, 0, BUY, 1),
    ]


# ---------------------------------------------------------------- ids


def test_duplicate_of_resting_order_rejected_original_untouched(book):
    book.buy(1, 100, 10)
    book.buy(2, 100, 10)
    assert assert_untouched(book, lambda: book.sell(1, 100, 5)) == rejected(1, R.DUPLICATE_ORDER_ID)
    assert book.tracker.state(1) is OrderState.ACCEPTED
    assert book.sell(3, 100, 5)[1:] == [OrderFilled(1, 3, 100, 5, 5, 0, SELL, 1)]


def test_duplicate_of_filled_maker_and_taker_rejected(book):
    book.buy(1, 100, 10)
    book.sell(2, 100, 10)
    assert assert_untouched(book, lambda: book.buy(1, 100, 10)) == rejected(1, R.DUPLICATE_ORDER_ID)
    assert assert_untouched(book, lambda: book.sell(2, 100, 10)) == rejected(2, R.DUPLICATE_ORDER_ID)
    assert book.tracker.state(1) is OrderState.FILLED
    assert book.tracker.state(2) is OrderState.FILLED


def test_duplicate_of_canceled_expired_and_ioc_orders_rejected(book):
    book.buy(1, 100, 10)
    book.cancel(1)
    book.buy(2, 100, 10, DAY)
    book.expire_day_orders()
    book.sell(3, 200, 10, IOC)
    book.market_buy(4, 10)
    for order_id in (1, 2, 3, 4):
        assert assert_untouched(book, lambda oid=order_id: book.buy(oid, 50, 1)) == rejected(
            order_id, R.DUPLICATE_ORDER_ID
        )
    assert len(book) == 0


def test_duplicate_of_replaced_order_rejected(book):
    book.buy(1, 100, 10)
    book.replace(1, 101, 5)
    assert assert_untouched(book, lambda: book.buy(1, 101, 5)) == rejected(1, R.DUPLICATE_ORDER_ID)


@pytest.mark.parametrize(
    "bad",
    [
        (7, BUY, LIMIT, GTC, 100, 0),
        (7, 3, LIMIT, GTC, 100, 1),
        (7, BUY, LIMIT, GTC, 0, 1),
        (7, BUY, MARKET, GTC, 0, 1),
        (7, BUY, LIMIT, FOK, 101, 1),
    ],
    ids=["quantity", "side", "price", "market rest", "fok"],
)
def test_rejected_submission_does_not_consume_its_id(book, bad):
    book.sell(1, 102, 1)
    book.submit(*bad)
    assert book.buy(7, 100, 3) == [OrderAccepted(7, BUY, LIMIT, GTC, 100, 3)]
    assert book.sell(8, 100, 3)[1:] == [OrderFilled(7, 8, 100, 3, 0, 0, SELL, 1)]


def test_duplicate_rejection_does_not_count_as_fill_or_cancel(book):
    book.buy(1, 100, 10)
    book.buy(1, 100, 10)
    book.buy(1, 100, 10, IOC)
    assert book.depth() == {"bids": [(100, 10, 1)], "asks": []}
    assert book.cancel(1) == [OrderCanceled(1, 10, CancelReason.REQUESTED)]


# ---------------------------------------------------------------- extremes


def test_prices_one_to_two_pow_62_coexist_and_trade(book):
    book.buy(1, 1, 5)
    book.sell(2, 2**62, 5)
    book.sell(3, 10**12, 5)
    book.buy(4, 10**12 - 1, 5)
    assert book.depth() == {
        "bids": [(10**12 - 1, 5, 1), (1, 5, 1)],
        "asks": [(10**12, 5, 1), (2**62, 5, 1)],
    }
    assert book.buy(5, 2**62, 8) == [
        OrderAccepted(5, BUY, LIMIT, GTC, 2**62, 8),
        OrderFilled(3, 5, 10**12, 5, 0, 3, BUY, 1),
        OrderFilled(2, 5, 2**62, 3, 2, 0, BUY, 2),
    ]
    assert book.market_sell(6, 11) == [
        OrderAccepted(6, SELL, MARKET, IOC, 0, 11),
        OrderFilled(4, 6, 10**12 - 1, 5, 0, 6, SELL, 3),
        OrderFilled(1, 6, 1, 5, 0, 1, SELL, 4),
        OrderCanceled(6, 1, CancelReason.UNFILLED),
    ]
    assert book.depth() == {"bids": [], "asks": [(2**62, 2, 1)]}


def test_largest_int64_price_rests_and_trades(book):
    assert book.sell(1, INT64_MAX, 3) == [OrderAccepted(1, SELL, LIMIT, GTC, INT64_MAX, 3)]
    book.buy(2, INT64_MAX - 1, 3)
    assert book.top_of_book()[1].price == INT64_MAX
    assert book.buy(3, INT64_MAX, 1, FOK)[1:] == [OrderFilled(1, 3, INT64_MAX, 1, 2, 0, BUY, 1)]
    assert book.replace(2, INT64_MAX, 3)[1:] == [OrderFilled(1, 2, INT64_MAX, 2, 0, 1, BUY, 2)]
    assert book.depth() == {"bids": [(INT64_MAX, 1, 1)], "asks": []}


EXTREME_IDS = [0, -1, 1, INT64_MIN, INT64_MIN + 1, INT64_MAX, INT64_MAX - 1]


def test_extreme_order_ids_rest_trade_and_stay_unique(book):
    for n, order_id in enumerate(EXTREME_IDS):
        assert book.sell(order_id, 100 + n, 2) == [OrderAccepted(order_id, SELL, LIMIT, GTC, 100 + n, 2)]
    assert book.order(INT64_MIN) == RestingOrder(INT64_MIN, SELL, 103, 2, GTC)
    for order_id in EXTREME_IDS:
        assert book.buy(order_id, 1, 1) == rejected(order_id, R.DUPLICATE_ORDER_ID)
    assert book.buy(42, 200, 3) == [
        OrderAccepted(42, BUY, LIMIT, GTC, 200, 3),
        OrderFilled(0, 42, 100, 2, 0, 1, BUY, 1),
        OrderFilled(-1, 42, 101, 1, 1, 0, BUY, 2),
    ]
    assert book.cancel(INT64_MAX) == [OrderCanceled(INT64_MAX, 2, CancelReason.REQUESTED)]
    assert book.replace(INT64_MIN, 50, 2) == [OrderReplaced(INT64_MIN, 50, 2, False)]
    assert book.depth() == {
        "bids": [],
        "asks": [(50, 2, 1), (101, 1, 1), (102, 2, 1), (104, 2, 1), (106, 2, 1)],
    }
    assert book.market_buy(INT64_MIN + 2, 3)[1:] == [
        OrderFilled(INT64_MIN, INT64_MIN + 2, 50, 2, 0, 1, BUY, 3),
        OrderFilled(-1, INT64_MIN + 2, 101, 1, 0, 0, BUY, 4),
    ]


def test_max_quantity_orders_fill_and_sum_on_one_level(book):
    assert book.sell(1, 100, MAX_QUANTITY) == [OrderAccepted(1, SELL, LIMIT, GTC, 100, MAX_QUANTITY)]
    book.sell(2, 100, MAX_QUANTITY)
    book.sell(3, 100, MAX_QUANTITY)
    assert book.depth() == {"bids": [], "asks": [(100, 3 * MAX_QUANTITY, 3)]}
    assert book.market_buy(4, MAX_QUANTITY, FOK)[1:] == [
        OrderFilled(1, 4, 100, MAX_QUANTITY, 0, 0, BUY, 1)
    ]
    assert book.buy(5, 100, MAX_QUANTITY - 1)[1:] == [
        OrderFilled(2, 5, 100, MAX_QUANTITY - 1, 1, 0, BUY, 2)
    ]
    assert book.depth() == {"bids": [], "asks": [(100, MAX_QUANTITY + 1, 2)]}


def test_thousands_of_orders_at_one_price_cancel_middle_keeps_fifo(book):
    count = 5_000
    for order_id in range(1, count + 1):
        book.sell(order_id, 100, order_id % 7 + 1)
    total = sum(order_id % 7 + 1 for order_id in range(1, count + 1))
    middle = count // 2
    assert book.cancel(middle) == [OrderCanceled(middle, middle % 7 + 1, CancelReason.REQUESTED)]
    assert book.depth() == {"bids": [], "asks": [(100, total - (middle % 7 + 1), count - 1)]}
    makers = [*range(1, middle), middle + 1, middle + 2]
    wanted = sum(order_id % 7 + 1 for order_id in makers)
    fills = book.buy(count + 1, 100, wanted)[1:]
    assert [fill.maker_id for fill in fills] == makers
    assert [fill.sequence for fill in fills] == list(range(1, len(makers) + 1))
    assert fills[-1] == OrderFilled(middle + 2, count + 1, 100, (middle + 2) % 7 + 1, 0, 0, BUY, len(makers))
    left = total - (middle % 7 + 1) - wanted
    assert book.depth() == {"bids": [], "asks": [(100, left, count - 2 - middle)]}
    assert len(book) == count - 2 - middle


# ------------------------------------------------------------------ integers beyond int64

OUT = (2**63, -(2**63) - 1, 2**64 + 5)


@pytest.mark.parametrize("value", OUT)
@pytest.mark.parametrize("field", range(6))
def test_an_integer_beyond_int64_is_refused_first_and_the_book_is_untouched(book, field, value):
    seeded(book)
    before = book.snapshot()
    args = [7, BUY, LIMIT, GTC, 100, 10]
    args[field] = value
    assert book.submit(*args) == rejected(args[0], R.VALUE_OUT_OF_RANGE)
    assert book.snapshot() == before and book.level_changes() == []
    book.check_invariants()


@pytest.mark.parametrize("value", OUT)
@pytest.mark.parametrize("field", range(3))
def test_a_replace_or_cancel_beyond_int64_is_refused(book, field, value):
    seeded(book)
    before = book.snapshot()
    args = [1, 101, 5]
    args[field] = value
    assert book.replace(*args) == [ReplaceRejected(args[0], R.VALUE_OUT_OF_RANGE, R.VALUE_OUT_OF_RANGE.text)]
    if field == 0:
        assert book.cancel(value) == [CancelRejected(value, R.VALUE_OUT_OF_RANGE, R.VALUE_OUT_OF_RANGE.text)]
    assert book.snapshot() == before
    book.check_invariants()


def test_the_extremes_of_int64_are_in_range(book):
    assert book.submit(INT64_MAX, SELL, LIMIT, GTC, INT64_MAX, 1)[0] == OrderAccepted(
        INT64_MAX, SELL, LIMIT, GTC, INT64_MAX, 1)
    assert book.cancel(INT64_MIN) == [CancelRejected(INT64_MIN, R.UNKNOWN_ORDER, R.UNKNOWN_ORDER.text)]
