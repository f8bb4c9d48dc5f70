"""Cancel and replace: open quantities, time priority, crossing replaces and rejects."""

import pytest

from engine.messages import (
    CancelRejected,
    OrderAccepted,
    OrderCanceled,
    OrderExpired,
    OrderFilled,
    OrderReplaced,
    ReplaceRejected,
    RestingOrder,
)
from engine.types import MAX_QUANTITY, CancelReason, OrderType, RejectReason, Side, TimeInForce

BUY, SELL = Side.BUY, Side.SELL
LIMIT = OrderType.LIMIT
GTC, IOC, DAY = TimeInForce.GTC, TimeInForce.IOC, TimeInForce.DAY
REQUESTED = CancelReason.REQUESTED
UNKNOWN = RejectReason.UNKNOWN_ORDER


def cancel_rejected(order_id):
    return [CancelRejected(order_id, UNKNOWN, UNKNOWN.text)]


def replace_rejected(order_id, reason):
    return [ReplaceRejected(order_id, reason, reason.text)]


def assert_untouched(book, command):
    """Run ``command`` and return its events, asserting the book state did not change."""
    before, snapshot, depth = book.state_hash(), book.snapshot(), book.depth()
    events = command()
    assert (book.state_hash(), book.snapshot(), book.depth()) == (before, snapshot, depth)
    return events


# ---------------------------------------------------------------- cancel


def test_cancel_resting_order_removes_its_open_quantity(book):
    book.buy(1, 100, 10)
    book.buy(2, 99, 5)
    assert book.cancel(1) == [OrderCanceled(1, 10, REQUESTED)]
    assert book.depth() == {"bids": [(99, 5, 1)], "asks": []}
    assert book.order(1) is None
    assert len(book) == 1


def test_cancel_partially_filled_order_cancels_open_quantity_only(book):
    book.sell(1, 100, 10)
    book.buy(2, 100, 4)
    assert book.cancel(1) == [OrderCanceled(1, 6, REQUESTED)]
    assert book.depth() == {"bids": [], "asks": []}


def test_cancel_middle_of_level_keeps_fifo_of_the_rest(book):
    book.sell(1, 100, 1)
    book.sell(2, 100, 2)
    book.sell(3, 100, 3)
    assert book.cancel(2) == [OrderCanceled(2, 2, REQUESTED)]
    assert book.depth() == {"bids": [], "asks": [(100, 4, 2)]}
    assert book.buy(4, 100, 4)[1:] == [
        OrderFilled(1, 4, 100, 1, 0, 3, BUY, 1),
        OrderFilled(3, 4, 100, 3, 0, 0, BUY, 2),
    ]


def test_cancel_unknown_id_rejected_book_untouched(book):
    book.buy(1, 100, 10)
    assert assert_untouched(book, lambda: book.cancel(2)) == cancel_rejected(2)


def test_cancel_filled_order_rejected_book_untouched(book):
    book.buy(1, 100, 10)
    book.sell(2, 100, 10)
    book.buy(3, 99, 1)
    assert assert_untouched(book, lambda: book.cancel(1)) == cancel_rejected(1)
    assert assert_untouched(book, lambda: book.cancel(2)) == cancel_rejected(2)


def test_cancel_already_canceled_order_rejected_book_untouched(book):
    book.buy(1, 100, 10)
    book.buy(2, 100, 10)
    book.cancel(1)
    assert assert_untouched(book, lambda: book.cancel(1)) == cancel_rejected(1)


def test_cancel_of_ioc_remainder_id_rejected(book):
    book.buy(1, 100, 10, IOC)
    assert assert_untouched(book, lambda: book.cancel(1)) == cancel_rejected(1)


# ---------------------------------------------------------------- replace: priority


def test_replace_same_price_reduction_keeps_priority(book):
    book.sell(1, 100, 10)
    book.sell(2, 100, 10)
    assert book.replace(1, 100, 4) == [OrderReplaced(1, 100, 4, True)]
    assert book.depth() == {"bids": [], "asks": [(100, 14, 2)]}
    assert book.order(1) == RestingOrder(1, SELL, 100, 4, GTC)
    assert book.buy(3, 100, 6)[1:] == [
        OrderFilled(1, 3, 100, 4, 0, 2, BUY, 1),
        OrderFilled(2, 3, 100, 2, 8, 0, BUY, 2),
    ]


def test_replace_same_price_same_quantity_keeps_priority(book):
    book.buy(1, 100, 10)
    book.buy(2, 100, 10)
    before = book.state_hash()
    assert book.replace(1, 100, 10) == [OrderReplaced(1, 100, 10, True)]
    assert book.state_hash() == before
    assert book.sell(3, 100, 1)[1:] == [OrderFilled(1, 3, 100, 1, 9, 0, SELL, 1)]


def test_replace_same_price_increase_loses_priority(book):
    book.sell(1, 100, 10)
    book.sell(2, 100, 10)
    assert book.replace(1, 100, 15) == [OrderReplaced(1, 100, 15, False)]
    assert book.depth() == {"bids": [], "asks": [(100, 25, 2)]}
    assert book.buy(3, 100, 12)[1:] == [
        OrderFilled(2, 3, 100, 10, 0, 2, BUY, 1),
        OrderFilled(1, 3, 100, 2, 13, 0, BUY, 2),
    ]


def test_replace_partially_filled_quantity_is_new_open_quantity(book):
    """After 4 of 10 traded, 6 is the open quantity: 6 keeps priority, 8 does not."""
    book.sell(1, 100, 10)
    book.sell(2, 100, 10)
    book.buy(3, 100, 4)
    assert book.replace(1, 100, 6) == [OrderReplaced(1, 100, 6, True)]
    assert book.depth() == {"bids": [], "asks": [(100, 16, 2)]}
    assert book.replace(1, 100, 8) == [OrderReplaced(1, 100, 8, False)]
    assert book.depth() == {"bids": [], "asks": [(100, 18, 2)]}
    assert book.buy(4, 100, 11)[1:] == [
        OrderFilled(2, 4, 100, 10, 0, 1, BUY, 2),
        OrderFilled(1, 4, 100, 1, 7, 0, BUY, 3),
    ]


def test_replace_price_change_loses_priority(book):
    book.sell(1, 100, 5)
    book.sell(2, 101, 5)
    assert book.replace(1, 101, 5) == [OrderReplaced(1, 101, 5, False)]
    assert book.depth() == {"bids": [], "asks": [(101, 10, 2)]}
    assert book.buy(3, 101, 6)[1:] == [
        OrderFilled(2, 3, 101, 5, 0, 1, BUY, 1),
        OrderFilled(1, 3, 101, 1, 4, 0, BUY, 2),
    ]


def test_replace_away_and_back_goes_behind_the_level(book):
    book.buy(1, 100, 5)
    book.buy(2, 100, 5)
    book.replace(1, 99, 5)
    assert book.replace(1, 100, 5) == [OrderReplaced(1, 100, 5, False)]
    assert book.sell(3, 100, 5)[1:] == [OrderFilled(2, 3, 100, 5, 0, 0, SELL, 1)]
    assert book.order(1) == RestingOrder(1, BUY, 100, 5, GTC)


def test_replace_price_change_with_smaller_quantity_loses_priority(book):
    book.buy(1, 100, 5)
    book.buy(2, 101, 5)
    assert book.replace(1, 101, 2) == [OrderReplaced(1, 101, 2, False)]
    assert book.depth() == {"bids": [(101, 7, 2)], "asks": []}
    assert book.sell(3, 101, 5)[1:] == [OrderFilled(2, 3, 101, 5, 0, 0, SELL, 1)]


# ---------------------------------------------------------------- replace: crossing


def test_replace_crossing_trades_as_taker_and_rests_remainder(book):
    book.buy(1, 99, 10)
    book.sell(2, 101, 3)
    book.sell(3, 102, 4)
    book.sell(4, 103, 5)
    assert book.replace(1, 102, 10) == [
        OrderReplaced(1, 102, 10, False),
        OrderFilled(2, 1, 101, 3, 0, 7, BUY, 1),
        OrderFilled(3, 1, 102, 4, 0, 3, BUY, 2),
    ]
    assert book.order(1) == RestingOrder(1, BUY, 102, 3, GTC)
    assert book.depth() == {"bids": [(102, 3, 1)], "asks": [(103, 5, 1)]}


def test_replace_crossing_sell_fills_completely_and_leaves_book(book):
    book.sell(1, 110, 4)
    book.buy(2, 100, 10)
    assert book.replace(1, 90, 4) == [
        OrderReplaced(1, 90, 4, False),
        OrderFilled(2, 1, 100, 4, 6, 0, SELL, 1),
    ]
    assert book.order(1) is None
    assert book.depth() == {"bids": [(100, 6, 1)], "asks": []}
    assert book.cancel(1) == cancel_rejected(1)


def test_replace_of_day_order_stays_day(book):
    book.sell(1, 105, 10, DAY)
    book.buy(2, 100, 4)
    assert book.replace(1, 106, 10) == [OrderReplaced(1, 106, 10, False)]
    assert book.order(1) == RestingOrder(1, SELL, 106, 10, DAY)
    assert book.replace(1, 100, 10) == [
        OrderReplaced(1, 100, 10, False),
        OrderFilled(2, 1, 100, 4, 0, 6, SELL, 1),
    ]
    assert book.order(1) == RestingOrder(1, SELL, 100, 6, DAY)
    assert book.expire_day_orders() == [OrderExpired(1, 6)]
    assert book.depth() == {"bids": [], "asks": []}


def test_replace_of_gtc_order_stays_gtc_through_end_of_day(book):
    book.buy(1, 100, 10)
    book.replace(1, 101, 12)
    assert book.expire_day_orders() == []
    assert book.order(1) == RestingOrder(1, BUY, 101, 12, GTC)


def test_replace_to_max_quantity_accepted(book):
    book.buy(1, 100, 1)
    assert book.replace(1, 100, MAX_QUANTITY) == [OrderReplaced(1, 100, MAX_QUANTITY, False)]
    assert book.depth() == {"bids": [(100, MAX_QUANTITY, 1)], "asks": []}


# ---------------------------------------------------------------- replace: rejects


@pytest.mark.parametrize(
    ("price", "quantity", "reason"),
    [
        (100, 0, RejectReason.INVALID_QUANTITY),
        (100, -5, RejectReason.INVALID_QUANTITY),
        (100, MAX_QUANTITY + 1, RejectReason.QUANTITY_TOO_LARGE),
        (0, 5, RejectReason.INVALID_PRICE),
        (-100, 5, RejectReason.INVALID_PRICE),
        (0, 0, RejectReason.INVALID_QUANTITY),
        (-1, MAX_QUANTITY + 1, RejectReason.QUANTITY_TOO_LARGE),
    ],
)
def test_replace_invalid_values_rejected_book_untouched(book, price, quantity, reason):
    book.buy(1, 100, 10)
    book.sell(2, 101, 10)
    assert assert_untouched(book, lambda: book.replace(1, price, quantity)) == replace_rejected(1, reason)


def test_replace_unknown_id_rejected_book_untouched(book):
    book.buy(1, 100, 10)
    assert assert_untouched(book, lambda: book.replace(7, 100, 5)) == replace_rejected(7, UNKNOWN)


def test_replace_filled_id_rejected_book_untouched(book):
    book.buy(1, 100, 10)
    book.sell(2, 100, 10)
    book.buy(3, 98, 1)
    assert assert_untouched(book, lambda: book.replace(1, 100, 5)) == replace_rejected(1, UNKNOWN)
    assert assert_untouched(book, lambda: book.replace(2, 97, 5)) == replace_rejected(2, UNKNOWN)


def test_replace_canceled_id_rejected_book_untouched(book):
    book.buy(1, 100, 10)
    book.buy(2, 100, 10)
    book.cancel(1)
    assert assert_untouched(book, lambda: book.replace(1, 100, 5)) == replace_rejected(1, UNKNOWN)


@pytest.mark.parametrize(
    ("price", "quantity", "reason"),
    [
        (100, 0, RejectReason.INVALID_QUANTITY),
        (0, MAX_QUANTITY + 1, RejectReason.QUANTITY_TOO_LARGE),
        (0, 5, RejectReason.INVALID_PRICE),
    ],
)
def test_replace_unknown_id_with_invalid_values_reports_value_first(book, price, quantity, reason):
    book.buy(1, 100, 10)
    assert assert_untouched(book, lambda: book.replace(9, price, quantity)) == replace_rejected(9, reason)


def test_replace_rejected_does_not_change_priority_or_sequence(book):
    book.sell(1, 100, 5)
    book.sell(2, 100, 5)
    book.replace(1, 0, 5)
    book.replace(1, 100, 0)
    assert book.buy(3, 100, 5) == [
        OrderAccepted(3, BUY, LIMIT, GTC, 100, 5),
        OrderFilled(1, 3, 100, 5, 0, 0, BUY, 1),
    ]
