"""Post-only limit orders: only ever a maker, refused (not repriced) when they would take."""

import pytest

from engine.messages import OrderAccepted, OrderFilled, OrderRejected, OrderReplaced, ReplaceRejected
from engine.types import OrderFlags, OrderType, RejectReason, Side, TimeInForce

BUY, SELL = Side.BUY, Side.SELL
LIMIT, MARKET, STOP, STOP_LIMIT = OrderType.LIMIT, OrderType.MARKET, OrderType.STOP, OrderType.STOP_LIMIT
GTC, IOC, FOK, DAY, GTD = TimeInForce.GTC, TimeInForce.IOC, TimeInForce.FOK, TimeInForce.DAY, TimeInForce.GTD
POST = int(OrderFlags.POST_ONLY)
R = RejectReason


def rejected(order_id, reason):
    return [OrderRejected(order_id, reason, reason.text)]


def quoted(book):
    book.buy(1, 99, 5, owner=3)
    book.sell(2, 101, 5, owner=3)
    return book


def test_a_post_only_order_inside_the_spread_rests(book):
    quoted(book)
    assert book.buy(3, 100, 4, flags=POST) == [OrderAccepted(3, BUY, LIMIT, GTC, 100, 4, flags=POST)]
    assert book.sell(4, 101, 4, DAY, flags=POST) == [OrderAccepted(4, SELL, LIMIT, DAY, 101, 4, flags=POST)]
    assert book.depth() == {"bids": [(100, 4, 1), (99, 5, 1)], "asks": [(101, 9, 2)]}
    assert book.order(3).flags == POST


@pytest.mark.parametrize(("side", "price"), [(BUY, 101), (BUY, 150), (SELL, 99), (SELL, 1)])
def test_a_post_only_order_at_or_through_the_opposite_best_is_rejected_whoever_rests_there(book, side, price):
    quoted(book)
    before = book.snapshot()
    events = book.submit(3, side, LIMIT, GTC, price, 4, flags=POST, owner=3)
    assert events == rejected(3, R.POST_ONLY_WOULD_TAKE)
    assert book.snapshot() == before


def test_a_post_only_order_facing_an_empty_side_rests(book):
    book.buy(1, 99, 5)
    assert book.buy(2, 10**6, 1, flags=POST)[0] == OrderAccepted(2, BUY, LIMIT, GTC, 10**6, 1, flags=POST)


def test_post_only_iceberg_and_gtd_are_allowed(book):
    book.set_clock(1)
    events = book.sell(1, 100, 20, GTD, flags=POST, display_quantity=5, expire_at=9)
    assert events == [OrderAccepted(1, SELL, LIMIT, GTD, 100, 20, display_quantity=5, flags=POST, expire_at=9)]


@pytest.mark.parametrize(
    ("order_type", "tif", "price", "stop_price"),
    [(LIMIT, IOC, 100, 0), (LIMIT, FOK, 100, 0), (MARKET, IOC, 0, 0), (STOP, GTC, 0, 90), (STOP_LIMIT, GTC, 100, 90)],
)
def test_post_only_is_refused_on_anything_but_a_resting_limit(book, order_type, tif, price, stop_price):
    assert book.submit(1, BUY, order_type, tif, price, 3, stop_price=stop_price, flags=POST) == rejected(
        1, R.POST_ONLY_NOT_ALLOWED
    )


def test_in_call_a_post_only_order_may_cross_and_takes_part_in_the_uncross(book):
    book.sell(1, 100, 5)
    book.set_phase(1)
    assert book.buy(2, 101, 3, flags=POST)[0].flags == POST
    assert book.depth() == {"bids": [(101, 3, 1)], "asks": [(100, 5, 1)]}
    events = book.set_phase(0)
    assert events[2:] == [OrderFilled(1, 2, 100, 3, 2, 0, BUY, 1)]


def test_a_post_only_re_entry_at_or_through_the_opposite_best_is_rejected_unchanged(book):
    quoted(book)
    book.buy(3, 100, 4, flags=POST)
    before = book.snapshot()
    assert book.replace(3, 101, 4) == [ReplaceRejected(3, R.POST_ONLY_WOULD_TAKE, R.POST_ONLY_WOULD_TAKE.text)]
    assert book.replace(3, 102, 9) == [ReplaceRejected(3, R.POST_ONLY_WOULD_TAKE, R.POST_ONLY_WOULD_TAKE.text)]
    assert book.snapshot() == before


def test_a_post_only_order_may_be_reduced_in_place_or_moved_where_it_does_not_take(book):
    quoted(book)
    book.buy(3, 100, 4, flags=POST)
    assert book.replace(3, 100, 2) == [OrderReplaced(3, 100, 2, True)]
    assert book.replace(3, 100, 6) == [OrderReplaced(3, 100, 6, False)]
    book.cancel(1)
    assert book.replace(3, 99, 6) == [OrderReplaced(3, 99, 6, False)]
    assert book.order(3).flags == POST


def test_in_call_a_post_only_order_may_be_moved_through_the_opposite_side(book):
    quoted(book)
    book.buy(3, 100, 4, flags=POST)
    book.set_phase(1)
    assert book.replace(3, 102, 4) == [OrderReplaced(3, 102, 4, False)]
    assert book.depth()["bids"][0] == (102, 4, 1)
