"""Matching: resting, crossing, priority, partial fills, IOC, FOK, market and DAY orders."""

from engine.messages import OrderAccepted, OrderCanceled, OrderExpired, OrderFilled, OrderRejected
from engine.types import CancelReason, OrderType, RejectReason, Side, TimeInForce

BUY, SELL = Side.BUY, Side.SELL
LIMIT, MARKET = OrderType.LIMIT, OrderType.MARKET
GTC, IOC, FOK, DAY = TimeInForce.GTC, TimeInForce.IOC, TimeInForce.FOK, TimeInForce.DAY
UNFILLED = CancelReason.UNFILLED
EMPTY = {"bids": [], "asks": []}


def rejected(order_id, reason):
    return OrderRejected(order_id, reason, reason.text)


# ---------------------------------------------------------------- limit GTC


def test_limit_orders_without_cross_rest(book):
    assert book.buy(1, 100, 10) == [OrderAccepted(1, BUY, LIMIT, GTC, 100, 10)]
    assert book.sell(2, 101, 5) == [OrderAccepted(2, SELL, LIMIT, GTC, 101, 5)]
    assert book.buy(3, 99, 7) == [OrderAccepted(3, BUY, LIMIT, GTC, 99, 7)]
    assert book.depth() == {"bids": [(100, 10, 1), (99, 7, 1)], "asks": [(101, 5, 1)]}
    assert (book.best_bid(), book.best_ask(), len(book), book.trade_sequence) == (100, 101, 3, 0)


def test_buy_crossing_ask_fills_at_maker_price(book):
    book.sell(1, 100, 10)
    assert book.buy(2, 105, 10) == [
        OrderAccepted(2, BUY, LIMIT, GTC, 105, 10),
        OrderFilled(1, 2, 100, 10, 0, 0, BUY, 1),
    ]
    assert book.depth() == EMPTY
    assert len(book) == 0


def test_sell_crossing_bid_fills_at_maker_price(book):
    book.buy(1, 100, 10)
    assert book.sell(2, 95, 4) == [
        OrderAccepted(2, SELL, LIMIT, GTC, 95, 4),
        OrderFilled(1, 2, 100, 4, 6, 0, SELL, 1),
    ]
    assert book.depth() == {"bids": [(100, 6, 1)], "asks": []}


def test_limit_equal_to_opposite_best_crosses(book):
    book.sell(1, 100, 3)
    book.buy(2, 90, 3)
    assert book.buy(3, 100, 3)[1:] == [OrderFilled(1, 3, 100, 3, 0, 0, BUY, 1)]
    assert book.sell(4, 90, 1)[1:] == [OrderFilled(2, 4, 90, 1, 2, 0, SELL, 2)]
    assert book.depth() == {"bids": [(90, 2, 1)], "asks": []}


def test_limit_one_tick_short_of_opposite_rests(book):
    book.sell(1, 100, 3)
    assert book.buy(2, 99, 3) == [OrderAccepted(2, BUY, LIMIT, GTC, 99, 3)]
    assert book.depth() == {"bids": [(99, 3, 1)], "asks": [(100, 3, 1)]}


def test_orders_at_one_price_fill_fifo_with_exact_leaves(book):
    book.sell(1, 100, 5)
    book.sell(2, 100, 5)
    book.sell(3, 100, 5)
    assert book.depth() == {"bids": [], "asks": [(100, 15, 3)]}
    assert book.buy(4, 100, 12) == [
        OrderAccepted(4, BUY, LIMIT, GTC, 100, 12),
        OrderFilled(1, 4, 100, 5, 0, 7, BUY, 1),
        OrderFilled(2, 4, 100, 5, 0, 2, BUY, 2),
        OrderFilled(3, 4, 100, 2, 3, 0, BUY, 3),
    ]
    assert book.depth() == {"bids": [], "asks": [(100, 3, 1)]}
    assert book.order(3).quantity == 3
    assert book.order(1) is None and book.order(2) is None and book.order(4) is None


def test_sweep_takes_best_price_first_then_rests_remainder(book):
    book.sell(1, 103, 10)
    book.sell(2, 101, 4)
    book.sell(3, 102, 6)
    book.sell(4, 101, 3)
    assert book.buy(5, 102, 20) == [
        OrderAccepted(5, BUY, LIMIT, GTC, 102, 20),
        OrderFilled(2, 5, 101, 4, 0, 16, BUY, 1),
        OrderFilled(4, 5, 101, 3, 0, 13, BUY, 2),
        OrderFilled(3, 5, 102, 6, 0, 7, BUY, 3),
    ]
    assert book.depth() == {"bids": [(102, 7, 1)], "asks": [(103, 10, 1)]}
    assert book.order(5).quantity == 7


def test_sell_sweep_takes_highest_bids_first(book):
    book.buy(1, 98, 5)
    book.buy(2, 100, 5)
    book.buy(3, 99, 5)
    assert book.sell(4, 99, 12) == [
        OrderAccepted(4, SELL, LIMIT, GTC, 99, 12),
        OrderFilled(2, 4, 100, 5, 0, 7, SELL, 1),
        OrderFilled(3, 4, 99, 5, 0, 2, SELL, 2),
    ]
    assert book.depth() == {"bids": [(98, 5, 1)], "asks": [(99, 2, 1)]}


def test_partially_filled_maker_keeps_priority(book):
    book.sell(1, 100, 10)
    book.sell(2, 100, 10)
    book.buy(3, 100, 4)
    assert book.buy(4, 100, 8) == [
        OrderAccepted(4, BUY, LIMIT, GTC, 100, 8),
        OrderFilled(1, 4, 100, 6, 0, 2, BUY, 2),
        OrderFilled(2, 4, 100, 2, 8, 0, BUY, 3),
    ]


def test_new_order_at_existing_level_queues_behind(book):
    book.buy(1, 100, 1)
    book.buy(2, 100, 1)
    book.buy(3, 100, 1)
    assert book.sell(4, 100, 3)[1:] == [
        OrderFilled(1, 4, 100, 1, 0, 2, SELL, 1),
        OrderFilled(2, 4, 100, 1, 0, 1, SELL, 2),
        OrderFilled(3, 4, 100, 1, 0, 0, SELL, 3),
    ]


# ---------------------------------------------------------------- IOC


def test_ioc_partial_cross_cancels_remainder(book):
    book.sell(1, 100, 5)
    book.sell(2, 102, 5)
    assert book.buy(3, 101, 8, IOC) == [
        OrderAccepted(3, BUY, LIMIT, IOC, 101, 8),
        OrderFilled(1, 3, 100, 5, 0, 3, BUY, 1),
        OrderCanceled(3, 3, UNFILLED),
    ]
    assert book.depth() == {"bids": [], "asks": [(102, 5, 1)]}
    assert book.order(3) is None


def test_ioc_full_fill_has_no_cancel(book):
    book.buy(1, 100, 10)
    assert book.sell(2, 100, 4, IOC) == [
        OrderAccepted(2, SELL, LIMIT, IOC, 100, 4),
        OrderFilled(1, 2, 100, 4, 6, 0, SELL, 1),
    ]
    assert book.depth() == {"bids": [(100, 6, 1)], "asks": []}


def test_ioc_without_cross_accepted_then_canceled_in_full(book):
    book.sell(1, 101, 5)
    before = book.depth()
    assert book.buy(2, 100, 8, IOC) == [
        OrderAccepted(2, BUY, LIMIT, IOC, 100, 8),
        OrderCanceled(2, 8, UNFILLED),
    ]
    assert book.depth() == before
    assert book.trade_sequence == 0


def test_ioc_on_empty_book_accepted_then_canceled(book):
    assert book.sell(1, 100, 3, IOC) == [
        OrderAccepted(1, SELL, LIMIT, IOC, 100, 3),
        OrderCanceled(1, 3, UNFILLED),
    ]
    assert book.depth() == EMPTY


# ---------------------------------------------------------------- FOK


def test_fok_fills_completely_across_levels(book):
    book.sell(1, 100, 5)
    book.sell(2, 101, 5)
    book.sell(3, 102, 5)
    assert book.buy(4, 102, 12, FOK) == [
        OrderAccepted(4, BUY, LIMIT, FOK, 102, 12),
        OrderFilled(1, 4, 100, 5, 0, 7, BUY, 1),
        OrderFilled(2, 4, 101, 5, 0, 2, BUY, 2),
        OrderFilled(3, 4, 102, 2, 3, 0, BUY, 3),
    ]
    assert book.depth() == {"bids": [], "asks": [(102, 3, 1)]}


def test_fok_exactly_enough_within_limit_fills(book):
    book.buy(1, 102, 5)
    book.buy(2, 101, 5)
    book.buy(3, 100, 50)
    assert book.sell(4, 101, 10, FOK) == [
        OrderAccepted(4, SELL, LIMIT, FOK, 101, 10),
        OrderFilled(1, 4, 102, 5, 0, 5, SELL, 1),
        OrderFilled(2, 4, 101, 5, 0, 0, SELL, 2),
    ]
    assert book.depth() == {"bids": [(100, 50, 1)], "asks": []}


def test_fok_one_lot_short_within_limit_rejected_book_untouched(book):
    book.buy(1, 102, 5)
    book.buy(2, 101, 5)
    book.buy(3, 100, 50)
    before, snapshot = book.state_hash(), book.snapshot()
    assert book.sell(4, 101, 11, FOK) == [rejected(4, RejectReason.FOK_NOT_FILLABLE)]
    assert book.state_hash() == before
    assert book.snapshot() == snapshot
    assert book.depth() == {"bids": [(102, 5, 1), (101, 5, 1), (100, 50, 1)], "asks": []}


def test_fok_on_empty_book_rejected(book):
    assert book.buy(1, 100, 1, FOK) == [rejected(1, RejectReason.FOK_NOT_FILLABLE)]
    assert book.depth() == EMPTY


def test_fok_exact_single_order_fills_it_completely(book):
    book.sell(1, 100, 7)
    assert book.buy(2, 100, 7, FOK) == [
        OrderAccepted(2, BUY, LIMIT, FOK, 100, 7),
        OrderFilled(1, 2, 100, 7, 0, 0, BUY, 1),
    ]
    assert len(book) == 0


# ---------------------------------------------------------------- market


def test_market_buy_sweeps_without_price_limit_and_cancels_remainder(book):
    book.sell(1, 100, 2)
    book.sell(2, 5_000, 3)
    book.sell(3, 10**9, 4)
    book.buy(4, 99, 1)
    assert book.market_buy(5, 12) == [
        OrderAccepted(5, BUY, MARKET, IOC, 0, 12),
        OrderFilled(1, 5, 100, 2, 0, 10, BUY, 1),
        OrderFilled(2, 5, 5_000, 3, 0, 7, BUY, 2),
        OrderFilled(3, 5, 10**9, 4, 0, 3, BUY, 3),
        OrderCanceled(5, 3, UNFILLED),
    ]
    assert book.depth() == {"bids": [(99, 1, 1)], "asks": []}


def test_market_sell_fills_partially_without_cancel(book):
    book.buy(1, 100, 5)
    book.buy(2, 1, 5)
    assert book.market_sell(3, 7) == [
        OrderAccepted(3, SELL, MARKET, IOC, 0, 7),
        OrderFilled(1, 3, 100, 5, 0, 2, SELL, 1),
        OrderFilled(2, 3, 1, 2, 3, 0, SELL, 2),
    ]
    assert book.depth() == {"bids": [(1, 3, 1)], "asks": []}


def test_market_on_empty_opposite_side_accepted_then_canceled(book):
    book.buy(1, 100, 5)
    assert book.market_buy(2, 4) == [
        OrderAccepted(2, BUY, MARKET, IOC, 0, 4),
        OrderCanceled(2, 4, UNFILLED),
    ]
    assert book.depth() == {"bids": [(100, 5, 1)], "asks": []}


def test_market_order_price_is_ignored_and_reported_as_zero(book):
    book.sell(1, 100, 5)
    assert book.submit(2, BUY, MARKET, IOC, 50, 5) == [
        OrderAccepted(2, BUY, MARKET, IOC, 0, 5),
        OrderFilled(1, 2, 100, 5, 0, 0, BUY, 1),
    ]
    assert book.submit(3, SELL, MARKET, IOC, -7, 1) == [
        OrderAccepted(3, SELL, MARKET, IOC, 0, 1),
        OrderCanceled(3, 1, UNFILLED),
    ]


def test_market_fok_fills_completely_at_any_price(book):
    book.sell(1, 100, 5)
    book.sell(2, 10**12, 5)
    assert book.market_buy(3, 10, FOK) == [
        OrderAccepted(3, BUY, MARKET, FOK, 0, 10),
        OrderFilled(1, 3, 100, 5, 0, 5, BUY, 1),
        OrderFilled(2, 3, 10**12, 5, 0, 0, BUY, 2),
    ]
    assert book.depth() == EMPTY


def test_market_fok_not_fillable_rejected_book_untouched(book):
    book.buy(1, 100, 5)
    book.buy(2, 1, 5)
    before = book.state_hash()
    assert book.market_sell(3, 11, FOK) == [rejected(3, RejectReason.FOK_NOT_FILLABLE)]
    assert book.state_hash() == before
    assert book.depth() == {"bids": [(100, 5, 1), (1, 5, 1)], "asks": []}


# ---------------------------------------------------------------- DAY


def test_day_order_trades_and_rests_like_gtc(book):
    book.sell(1, 100, 4)
    assert book.buy(2, 100, 10, DAY) == [
        OrderAccepted(2, BUY, LIMIT, DAY, 100, 10),
        OrderFilled(1, 2, 100, 4, 0, 6, BUY, 1),
    ]
    assert book.depth() == {"bids": [(100, 6, 1)], "asks": []}
    assert book.order(2).time_in_force == DAY


def test_expire_day_orders_expires_only_day_orders_bids_then_asks_fifo(book):
    book.buy(1, 99, 1, DAY)
    book.buy(2, 100, 2, GTC)
    book.buy(3, 100, 3, DAY)
    book.buy(4, 101, 4, DAY)
    book.buy(5, 100, 5, DAY)
    book.sell(6, 105, 6, DAY)
    book.sell(7, 103, 7, DAY)
    book.sell(8, 103, 8, GTC)
    book.sell(9, 103, 9, DAY)
    book.sell(10, 104, 10, GTC)
    assert book.expire_day_orders() == [
        OrderExpired(4, 4),
        OrderExpired(3, 3),
        OrderExpired(5, 5),
        OrderExpired(1, 1),
        OrderExpired(7, 7),
        OrderExpired(9, 9),
        OrderExpired(6, 6),
    ]
    assert book.depth() == {"bids": [(100, 2, 1)], "asks": [(103, 8, 1), (104, 10, 1)]}
    assert len(book) == 3
    assert book.expire_day_orders() == []


def test_expire_day_orders_expires_open_quantity_of_partial_fill(book):
    book.sell(1, 100, 10, DAY)
    book.buy(2, 100, 3)
    assert book.expire_day_orders() == [OrderExpired(1, 7)]
    assert book.depth() == EMPTY
    assert book.trade_sequence == 1


def test_expire_day_orders_on_empty_book_returns_nothing(book):
    assert book.expire_day_orders() == []
    assert book.depth() == EMPTY


def test_expired_day_order_cannot_be_canceled_or_reused(book):
    book.buy(1, 100, 5, DAY)
    book.expire_day_orders()
    assert book.cancel(1)[0].reason == RejectReason.UNKNOWN_ORDER
    assert book.buy(1, 100, 5) == [rejected(1, RejectReason.DUPLICATE_ORDER_ID)]


# ---------------------------------------------------------------- sequence


def test_trade_sequence_counts_fills_across_commands(book):
    assert book.trade_sequence == 0
    book.sell(1, 100, 1)
    book.sell(2, 101, 1)
    book.sell(3, 102, 5)
    book.buy(4, 101, 2)
    assert book.trade_sequence == 2
    book.cancel(3)
    book.buy(5, 90, 5)
    book.sell(6, 200, 5)
    assert book.trade_sequence == 2
    assert book.market_sell(7, 2) == [
        OrderAccepted(7, SELL, MARKET, IOC, 0, 2),
        OrderFilled(5, 7, 90, 2, 3, 0, SELL, 3),
    ]
    assert book.replace(6, 90, 5)[1:] == [OrderFilled(5, 6, 90, 3, 0, 2, SELL, 4)]
    assert book.trade_sequence == 4
    book.expire_day_orders()
    assert book.trade_sequence == 4


# ---------------------------------------------------------------- empty book


def test_empty_book_has_no_prices_levels_or_orders(book):
    assert book.best_bid() is None
    assert book.best_ask() is None
    assert book.depth() == EMPTY
    assert book.top_of_book() == (None, None)
    assert len(book) == 0
    assert book.order(1) is None
    assert book.trade_sequence == 0


def test_book_emptied_by_trading_looks_empty(book):
    book.buy(1, 100, 5)
    book.sell(2, 100, 5)
    assert (book.best_bid(), book.best_ask(), book.top_of_book(), len(book)) == (None, None, (None, None), 0)
    assert book.depth() == EMPTY
