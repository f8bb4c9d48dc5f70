"""Good-till-date orders on the book's logical clock (`set_clock`)."""

import pytest

from engine.messages import (
    ClockAdvanced,
    CommandRejected,
    OrderAccepted,
    OrderExpired,
    OrderFilled,
    OrderRejected,
    RestingOrder,
)
from engine.types import INT64_MAX, OrderType, RejectReason, Side, TimeInForce

BUY, SELL = Side.BUY, Side.SELL
LIMIT, MARKET, STOP, STOP_LIMIT = OrderType.LIMIT, OrderType.MARKET, OrderType.STOP, OrderType.STOP_LIMIT
GTC, IOC, GTD = TimeInForce.GTC, TimeInForce.IOC, TimeInForce.GTD
R = RejectReason


def test_a_gtd_order_rests_until_the_clock_reaches_its_expiry(book):
    assert book.buy(1, 100, 5, GTD, expire_at=10) == [OrderAccepted(1, BUY, LIMIT, GTD, 100, 5, expire_at=10)]
    assert book.order(1) == RestingOrder(1, BUY, 100, 5, GTD, expire_at=10)
    assert book.set_clock(9) == [ClockAdvanced(9)]
    assert book.set_clock(10) == [ClockAdvanced(10), OrderExpired(1, 5)]
    assert book.depth() == {"bids": [], "asks": []}


def test_an_expiry_not_after_the_clock_is_refused(book):
    book.set_clock(50)
    for expire_at in (50, 49, -1):
        assert book.sell(1, 100, 5, GTD, expire_at=expire_at) == [
            OrderRejected(1, R.EXPIRE_TIME_PASSED, R.EXPIRE_TIME_PASSED.text)
        ]
    assert book.sell(1, 100, 5, GTD, expire_at=51)[0] == OrderAccepted(1, SELL, LIMIT, GTD, 100, 5, expire_at=51)


def test_due_orders_expire_in_acceptance_order_resting_and_held_together(book):
    book.sell(1, 105, 1, GTD, expire_at=30)
    book.buy(2, 99, 2, GTD, expire_at=20)
    book.submit(3, BUY, STOP_LIMIT, GTD, 110, 3, stop_price=110, expire_at=25)
    book.buy(4, 100, 4, GTD, expire_at=40)
    book.buy(5, 101, 5)
    assert book.set_clock(30) == [ClockAdvanced(30), OrderExpired(1, 1), OrderExpired(2, 2), OrderExpired(3, 3)]
    assert book.set_clock(40)[1:] == [OrderExpired(4, 4)]
    assert book.depth() == {"bids": [(101, 5, 1)], "asks": []}


def test_a_replace_keeps_the_expiry_and_the_first_acceptance(book):
    book.buy(1, 100, 5, GTD, expire_at=10)
    book.buy(2, 100, 5, GTD, expire_at=10)
    book.replace(1, 98, 7)  # re-entered behind nothing at 98, still accepted before 2
    assert book.order(1) == RestingOrder(1, BUY, 98, 7, GTD, expire_at=10)
    assert book.set_clock(10)[1:] == [OrderExpired(1, 7), OrderExpired(2, 5)]


def test_a_partly_filled_gtd_order_expires_with_what_is_left(book):
    book.sell(1, 100, 10, GTD, expire_at=5)
    assert book.buy(2, 100, 4)[1] == OrderFilled(1, 2, 100, 4, 6, 0, BUY, 1)
    assert book.set_clock(5)[1:] == [OrderExpired(1, 6)]


def test_a_filled_or_canceled_gtd_order_does_not_expire(book):
    book.sell(1, 100, 3, GTD, expire_at=5)
    book.sell(2, 101, 3, GTD, expire_at=5)
    book.buy(3, 100, 3)
    book.cancel(2)
    assert book.set_clock(100) == [ClockAdvanced(100)]


def test_the_clock_never_goes_back_and_an_equal_time_is_accepted(book):
    book.set_clock(7)
    assert book.set_clock(6) == [CommandRejected(R.CLOCK_BACKWARDS, R.CLOCK_BACKWARDS.text)]
    assert book.clock == 7
    assert book.set_clock(7) == [ClockAdvanced(7)]
    assert book.set_clock(INT64_MAX) == [ClockAdvanced(INT64_MAX)]


def test_the_clock_starts_at_zero_and_refuses_a_negative_time(book):
    assert book.set_clock(-1) == [CommandRejected(R.CLOCK_BACKWARDS, R.CLOCK_BACKWARDS.text)]
    assert book.set_clock(0) == [ClockAdvanced(0)]
    assert book.set_clock(2**63) == [CommandRejected(R.VALUE_OUT_OF_RANGE, R.VALUE_OUT_OF_RANGE.text)]


def test_a_stop_ignores_gtd_and_never_expires(book):
    assert book.submit(1, BUY, STOP, GTD, 0, 2, stop_price=50, expire_at=3)[0] == OrderAccepted(
        1, BUY, STOP, GTC, 0, 2, 50
    )
    assert book.set_clock(10) == [ClockAdvanced(10)]
    assert book.order(1) is not None


def test_a_market_gtd_order_cannot_rest(book):
    assert book.submit(1, BUY, MARKET, GTD, 0, 2, expire_at=3) == [
        OrderRejected(1, R.MARKET_ORDER_CANNOT_REST, R.MARKET_ORDER_CANNOT_REST.text)
    ]


def test_expire_at_is_ignored_unless_the_order_is_gtd(book):
    assert book.buy(1, 100, 5, expire_at=-5)[0] == OrderAccepted(1, BUY, LIMIT, GTC, 100, 5)
    assert book.set_clock(10) == [ClockAdvanced(10)]


@pytest.mark.parametrize("phase", [1, 2])
def test_the_clock_works_and_expires_orders_in_every_phase(book, phase):
    book.buy(1, 100, 5, GTD, expire_at=3)
    book.set_phase(phase)
    assert book.set_clock(3) == [ClockAdvanced(3), OrderExpired(1, 5)]
