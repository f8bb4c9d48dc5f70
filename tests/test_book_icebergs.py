"""Iceberg orders: a visible slice in the depth, refreshed at the back of the level when it is gone."""

from engine.messages import (
    LevelChanged,
    OrderAccepted,
    OrderCanceled,
    OrderExpired,
    OrderFilled,
    OrderReplaced,
    RestingOrder,
)
from engine.types import CancelReason, OrderType, Side, TimeInForce

BUY, SELL = Side.BUY, Side.SELL
LIMIT = OrderType.LIMIT
GTC, IOC, FOK, GTD = TimeInForce.GTC, TimeInForce.IOC, TimeInForce.FOK, TimeInForce.GTD


def filled(maker, taker, price, quantity, maker_leaves, taker_leaves, aggressor, sequence):
    return OrderFilled(maker, taker, price, quantity, maker_leaves, taker_leaves, aggressor, sequence)


def test_an_iceberg_shows_its_slice_and_order_tells_the_hidden_part(book):
    assert book.sell(1, 100, 30, display_quantity=10) == [
        OrderAccepted(1, SELL, LIMIT, GTC, 100, 30, display_quantity=10),
    ]
    assert book.depth() == {"bids": [], "asks": [(100, 10, 1)]}
    assert book.level_changes() == [LevelChanged(SELL, 100, 10, 1)]
    assert book.order(1) == RestingOrder(1, SELL, 100, 30, GTC, display_quantity=10, hidden_quantity=20)


def test_only_the_slice_trades_as_maker_then_it_refreshes_behind_the_orders_at_its_price(book):
    book.sell(1, 100, 30, display_quantity=10)
    book.sell(2, 100, 5)
    assert book.market_buy(3, 27)[1:] == [
        filled(1, 3, 100, 10, 20, 17, BUY, 1),
        filled(2, 3, 100, 5, 0, 12, BUY, 2),
        filled(1, 3, 100, 10, 10, 2, BUY, 3),
        filled(1, 3, 100, 2, 8, 0, BUY, 4),
    ]
    assert book.depth() == {"bids": [], "asks": [(100, 8, 1)]}
    assert book.order(1) == RestingOrder(1, SELL, 100, 8, GTC, display_quantity=10)


def test_a_refresh_loses_time_priority_even_when_the_same_fill_ends_the_taker(book):
    book.sell(1, 100, 20, display_quantity=5)
    book.sell(2, 100, 4)
    assert book.buy(3, 100, 5)[1:] == [filled(1, 3, 100, 5, 15, 0, BUY, 1)]
    assert book.depth() == {"bids": [], "asks": [(100, 9, 2)]}
    assert book.level_changes() == []  # same quantity and count: only the queue order changed
    assert book.buy(4, 100, 6)[1:] == [filled(2, 4, 100, 4, 0, 2, BUY, 2), filled(1, 4, 100, 2, 13, 0, BUY, 3)]
    assert book.depth() == {"bids": [], "asks": [(100, 3, 1)]}


def test_an_iceberg_alone_at_its_price_trades_slice_after_slice_one_record_each(book):
    book.buy(1, 100, 9, display_quantity=4)
    book.sell(2, 101, 3)
    assert book.sell(3, 100, 10)[1:] == [
        filled(1, 3, 100, 4, 5, 6, SELL, 1),
        filled(1, 3, 100, 4, 1, 2, SELL, 2),
        filled(1, 3, 100, 1, 0, 1, SELL, 3),
    ]
    assert book.depth() == {"bids": [], "asks": [(100, 1, 1), (101, 3, 1)]}


def test_a_partly_taken_slice_stays_in_place_and_shows_what_is_left_of_it(book):
    book.sell(1, 100, 30, display_quantity=10)
    book.sell(2, 100, 5)
    book.market_buy(3, 4)
    assert book.depth() == {"bids": [], "asks": [(100, 11, 2)]}
    assert book.order(1).hidden_quantity == 20
    assert book.market_buy(4, 7)[1:] == [filled(1, 4, 100, 6, 20, 1, BUY, 2), filled(2, 4, 100, 1, 4, 0, BUY, 3)]


def test_display_equal_to_quantity_shows_everything_until_a_replace_raises_the_quantity(book):
    book.buy(1, 100, 10, display_quantity=10)
    assert book.depth() == {"bids": [(100, 10, 1)], "asks": []}
    assert book.replace(1, 100, 25) == [OrderReplaced(1, 100, 25, False)]
    assert book.depth() == {"bids": [(100, 10, 1)], "asks": []}
    assert book.order(1).hidden_quantity == 15


def test_as_a_taker_an_iceberg_trades_its_whole_quantity_then_rests_a_fresh_slice(book):
    book.sell(1, 100, 12)
    book.sell(2, 101, 3)
    assert book.buy(3, 101, 40, display_quantity=8)[1:] == [
        filled(1, 3, 100, 12, 0, 28, BUY, 1),
        filled(2, 3, 101, 3, 0, 25, BUY, 2),
    ]
    assert book.depth() == {"bids": [(101, 8, 1)], "asks": []}
    assert book.order(3).hidden_quantity == 17


def test_an_iceberg_resting_with_less_than_its_display_shows_all_of_it(book):
    book.sell(1, 100, 7)
    book.buy(2, 100, 10, display_quantity=5)
    assert book.depth() == {"bids": [(100, 3, 1)], "asks": []}


def test_a_reduction_in_place_shrinks_the_slice_to_fit_and_keeps_the_place(book):
    book.sell(1, 100, 30, display_quantity=10)
    book.sell(2, 100, 5)
    book.market_buy(3, 4)  # slice 6 of 26
    assert book.replace(1, 100, 20) == [OrderReplaced(1, 100, 20, True)]
    assert book.depth() == {"bids": [], "asks": [(100, 11, 2)]}
    assert book.replace(1, 100, 4) == [OrderReplaced(1, 100, 4, True)]
    assert book.depth() == {"bids": [], "asks": [(100, 9, 2)]}
    assert book.level_changes() == [LevelChanged(SELL, 100, 9, 2)]
    assert book.market_buy(4, 5)[1] == filled(1, 4, 100, 4, 0, 1, BUY, 2)


def test_a_re_entry_gets_a_fresh_slice_at_the_back_and_keeps_its_display(book):
    book.sell(1, 100, 30, display_quantity=10)
    book.market_buy(2, 4)
    book.sell(3, 101, 2)
    assert book.replace(1, 101, 26) == [OrderReplaced(1, 101, 26, False)]
    assert book.depth() == {"bids": [], "asks": [(101, 12, 2)]}
    assert book.replace(1, 101, 3) == [OrderReplaced(1, 101, 3, True)]
    assert book.order(1) == RestingOrder(1, SELL, 101, 3, GTC, display_quantity=10)


def test_a_quantity_below_display_on_re_entry_is_fine(book):
    book.buy(1, 100, 30, display_quantity=10)
    book.replace(1, 99, 4)
    assert book.order(1) == RestingOrder(1, BUY, 99, 4, GTC, display_quantity=10)
    assert book.depth() == {"bids": [(99, 4, 1)], "asks": []}


def test_cancel_and_expiry_remove_the_hidden_quantity_too(book):
    book.set_clock(5)
    book.buy(1, 100, 30, display_quantity=10)
    book.buy(2, 99, 12, GTD, display_quantity=3, expire_at=6)
    assert book.cancel(1) == [OrderCanceled(1, 30, CancelReason.REQUESTED)]
    assert book.set_clock(6)[1:] == [OrderExpired(2, 12)]
    assert book.depth() == {"bids": [], "asks": []}


def test_fok_counts_an_icebergs_whole_open_quantity(book):
    book.sell(1, 100, 30, display_quantity=10)
    book.sell(2, 100, 5)
    assert book.buy(3, 100, 35, FOK)[1:] == [
        filled(1, 3, 100, 10, 20, 25, BUY, 1),
        filled(2, 3, 100, 5, 0, 20, BUY, 2),
        filled(1, 3, 100, 10, 10, 10, BUY, 3),
        filled(1, 3, 100, 10, 0, 0, BUY, 4),
    ]


def test_a_sweep_reports_each_level_once_as_left_after_refreshes(book):
    book.sell(1, 100, 6, display_quantity=2)
    book.sell(2, 101, 10, display_quantity=4)
    book.buy(3, 101, 9)
    assert book.level_changes() == [LevelChanged(SELL, 100, 0, 0), LevelChanged(SELL, 101, 1, 1)]
    assert book.order(2).hidden_quantity == 6
