"""Self-trade prevention: the taker's mode decides when it meets a resting order of its own owner."""

import pytest

from engine.messages import (
    OrderAccepted,
    OrderCanceled,
    OrderDecremented,
    OrderFilled,
    OrderRejected,
    OrderReplaced,
    RestingOrder,
)
from engine.types import CancelReason, OrderType, RejectReason, SelfTradePrevention, Side, TimeInForce

BUY, SELL = Side.BUY, Side.SELL
LIMIT, MARKET = OrderType.LIMIT, OrderType.MARKET
GTC, IOC, FOK = TimeInForce.GTC, TimeInForce.IOC, TimeInForce.FOK
NONE, CANCEL_TAKER, CANCEL_MAKER, CANCEL_BOTH, DECREMENT = SelfTradePrevention
SELF, UNFILLED = CancelReason.SELF_TRADE, CancelReason.UNFILLED
ME, OTHER = 7, 8


def filled(maker, taker, price, quantity, maker_leaves, taker_leaves, aggressor, sequence):
    return OrderFilled(maker, taker, price, quantity, maker_leaves, taker_leaves, aggressor, sequence)


def asks(book):
    """Asks: 1 (other, 100 x 3), 2 (mine, 100 x 4), 3 (other, 101 x 5)."""
    book.sell(1, 100, 3, owner=OTHER)
    book.sell(2, 100, 4, owner=ME)
    book.sell(3, 101, 5, owner=OTHER)
    return book


def test_mode_none_trades_with_its_own_orders(book):
    asks(book)
    assert book.buy(4, 100, 5, owner=ME)[1:] == [filled(1, 4, 100, 3, 0, 2, BUY, 1), filled(2, 4, 100, 2, 2, 0, BUY, 2)]


def test_owner_zero_has_no_own_orders_whatever_its_mode(book):
    book.sell(1, 100, 3)
    assert book.buy(2, 100, 3, stp=CANCEL_BOTH)[1:] == [filled(1, 2, 100, 3, 0, 0, BUY, 1)]


def test_cancel_taker_cancels_the_takers_remainder_and_leaves_the_maker(book):
    asks(book)
    events = book.buy(4, 101, 10, owner=ME, stp=CANCEL_TAKER)
    assert events == [
        OrderAccepted(4, BUY, LIMIT, GTC, 101, 10, owner=ME, stp=CANCEL_TAKER),
        filled(1, 4, 100, 3, 0, 7, BUY, 1),
        OrderCanceled(4, 7, SELF),
    ]
    assert book.depth() == {"bids": [], "asks": [(100, 4, 1), (101, 5, 1)]}
    assert book.order(4) is None


def test_cancel_maker_cancels_the_whole_resting_order_and_the_taker_goes_on(book):
    asks(book)
    assert book.buy(4, 101, 10, owner=ME, stp=CANCEL_MAKER)[1:] == [
        filled(1, 4, 100, 3, 0, 7, BUY, 1),
        OrderCanceled(2, 4, SELF),
        filled(3, 4, 101, 5, 0, 2, BUY, 2),
    ]
    assert book.depth() == {"bids": [(101, 2, 1)], "asks": []}


def test_cancel_maker_cancels_an_icebergs_hidden_quantity_too(book):
    book.sell(1, 100, 30, owner=ME, display_quantity=5)
    assert book.market_buy(2, 2, owner=ME, stp=CANCEL_MAKER)[1:] == [
        OrderCanceled(1, 30, SELF),
        OrderCanceled(2, 2, UNFILLED),
    ]


def test_cancel_both_cancels_the_maker_then_the_takers_remainder(book):
    asks(book)
    assert book.market_buy(4, 10, owner=ME, stp=CANCEL_BOTH)[1:] == [
        filled(1, 4, 100, 3, 0, 7, BUY, 1),
        OrderCanceled(2, 4, SELF),
        OrderCanceled(4, 7, SELF),
    ]
    assert book.depth() == {"bids": [], "asks": [(101, 5, 1)]}


def test_decrement_shrinks_both_without_a_fill_and_a_larger_taker_goes_on(book):
    asks(book)
    assert book.buy(4, 101, 10, owner=ME, stp=DECREMENT)[1:] == [
        filled(1, 4, 100, 3, 0, 7, BUY, 1),
        OrderDecremented(2, 4, 0, 4),
        OrderDecremented(4, 4, 3, 2),
        filled(3, 4, 101, 3, 2, 0, BUY, 2),
    ]
    assert book.depth() == {"bids": [], "asks": [(101, 2, 1)]}


def test_decrement_leaves_a_larger_maker_in_its_place_and_ends_the_taker(book):
    book.sell(1, 100, 9, owner=ME)
    book.sell(2, 100, 2, owner=OTHER)
    assert book.market_buy(3, 4, owner=ME, stp=DECREMENT)[1:] == [
        OrderDecremented(1, 4, 5, 3),
        OrderDecremented(3, 4, 0, 1),
    ]
    assert book.depth() == {"bids": [], "asks": [(100, 7, 2)]}
    assert book.market_buy(4, 6)[1:] == [filled(1, 4, 100, 5, 0, 1, BUY, 1), filled(2, 4, 100, 1, 1, 0, BUY, 2)]


def test_decrement_of_equal_quantities_ends_both(book):
    book.sell(1, 100, 4, owner=ME)
    assert book.buy(2, 100, 4, owner=ME, stp=DECREMENT)[1:] == [
        OrderDecremented(1, 4, 0, 2),
        OrderDecremented(2, 4, 0, 1),
    ]
    assert book.depth() == {"bids": [], "asks": []}
    assert len(book) == 0


def test_decrement_shrinks_an_iceberg_on_its_open_quantity_and_its_slice_to_fit(book):
    book.sell(1, 100, 12, owner=ME, display_quantity=5)
    book.market_buy(2, 2)  # slice 3 of 10
    assert book.market_buy(3, 8, owner=ME, stp=DECREMENT)[1:] == [
        OrderDecremented(1, 8, 2, 3),
        OrderDecremented(3, 8, 0, 1),
    ]
    assert book.depth() == {"bids": [], "asks": [(100, 2, 1)]}
    assert book.order(1) == RestingOrder(1, SELL, 100, 2, GTC, display_quantity=5, owner=ME)


def test_the_takers_mode_decides_not_the_makers(book):
    book.sell(1, 100, 3, owner=ME, stp=CANCEL_BOTH)
    assert book.buy(2, 100, 3, owner=ME)[1:] == [filled(1, 2, 100, 3, 0, 0, BUY, 1)]


def test_an_ioc_or_market_taker_canceled_by_prevention_gets_no_unfilled_cancel(book):
    book.sell(1, 100, 3, owner=ME)
    assert book.buy(2, 100, 5, IOC, owner=ME, stp=CANCEL_TAKER)[1:] == [OrderCanceled(2, 5, SELF)]
    assert book.market_buy(3, 3, owner=ME, stp=DECREMENT)[1:] == [
        OrderDecremented(1, 3, 0, 3),
        OrderDecremented(3, 3, 0, 1),
    ]


def test_a_re_entered_replace_is_a_taker_subject_to_prevention_and_still_accepted(book):
    book.sell(1, 101, 3, owner=ME)
    book.buy(2, 100, 5, owner=ME, stp=CANCEL_TAKER)
    assert book.replace(2, 101, 5) == [OrderReplaced(2, 101, 5, False), OrderCanceled(2, 5, SELF)]
    assert book.depth() == {"bids": [], "asks": [(101, 3, 1)]}


# ---------------------------------------------------------------- FOK with prevention applied


def fok(book, quantity, stp, owner=ME, price=101):
    return book.submit(9, BUY, LIMIT, FOK, price, quantity, owner=owner, stp=stp)


@pytest.mark.parametrize(("stp", "fillable"), [(NONE, 12), (CANCEL_MAKER, 8), (CANCEL_TAKER, 3),
                                               (CANCEL_BOTH, 3), (DECREMENT, 3)])
def test_fok_counts_what_it_would_trade_with_prevention_applied(book, stp, fillable):
    asks(book)
    reason = RejectReason.FOK_NOT_FILLABLE
    assert fok(book, fillable + 1, stp) == [OrderRejected(9, reason, reason.text)]
    assert book.depth() == {"bids": [], "asks": [(100, 7, 2), (101, 5, 1)]}
    events = fok(book, fillable, stp)
    assert type(events[0]) is OrderAccepted and events[-1].taker_leaves == 0


def test_fok_with_cancel_maker_cancels_its_own_orders_on_the_way(book):
    asks(book)
    assert fok(book, 8, CANCEL_MAKER)[1:] == [
        filled(1, 9, 100, 3, 0, 5, BUY, 1),
        OrderCanceled(2, 4, SELF),
        filled(3, 9, 101, 5, 0, 0, BUY, 2),
    ]


def test_fok_of_owner_zero_counts_everything(book):
    asks(book)
    assert fok(book, 12, CANCEL_TAKER, owner=0)[-1] == filled(3, 9, 101, 5, 0, 0, BUY, 3)


def test_fok_counts_an_iceberg_refreshing_behind_an_own_order_only_up_to_it(book):
    """The iceberg's slice of 2 trades, then it refreshes behind order 2 (the owner's): the FOK
    gets 2, not the iceberg's 10."""
    book.sell(1, 100, 10, owner=OTHER, display_quantity=2)
    book.sell(2, 100, 1, owner=ME)
    reason = RejectReason.FOK_NOT_FILLABLE
    assert fok(book, 3, CANCEL_TAKER, price=100) == [OrderRejected(9, reason, reason.text)]
    assert fok(book, 2, DECREMENT, price=100)[1:] == [filled(1, 9, 100, 2, 8, 0, BUY, 1)]


def test_fok_counts_a_whole_iceberg_when_no_own_order_is_at_its_level(book):
    book.sell(1, 100, 10, owner=OTHER, display_quantity=2)
    book.sell(2, 101, 1, owner=ME)
    assert fok(book, 10, CANCEL_TAKER)[-1] == filled(1, 9, 100, 2, 0, 0, BUY, 5)
