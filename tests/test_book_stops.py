"""Stop and stop-limit orders: held outside the book, released by the trigger loop at the last trade price."""

from engine.messages import (
    AuctionUncrossed,
    CancelRejected,
    OrderAccepted,
    OrderCanceled,
    OrderExpired,
    OrderFilled,
    OrderRejected,
    PriceLevel,
    ReplaceRejected,
    RestingOrder,
    StopTriggered,
)
from engine.types import CancelReason, OrderType, RejectReason, SelfTradePrevention, Side, TimeInForce

BUY, SELL = Side.BUY, Side.SELL
LIMIT, MARKET, STOP, STOP_LIMIT = OrderType.LIMIT, OrderType.MARKET, OrderType.STOP, OrderType.STOP_LIMIT
GTC, IOC, FOK, DAY, GTD = TimeInForce.GTC, TimeInForce.IOC, TimeInForce.FOK, TimeInForce.DAY, TimeInForce.GTD
UNFILLED = CancelReason.UNFILLED


def stop(book, order_id, side, quantity, stop_price, **fields):
    return book.submit(order_id, side, STOP, GTC, 0, quantity, stop_price=stop_price, **fields)


def stop_limit(book, order_id, side, price, quantity, stop_price, tif=GTC, **fields):
    return book.submit(order_id, side, STOP_LIMIT, tif, price, quantity, stop_price=stop_price, **fields)


def filled(maker, taker, price, quantity, maker_leaves, taker_leaves, aggressor, sequence):
    return OrderFilled(maker, taker, price, quantity, maker_leaves, taker_leaves, aggressor, sequence)


def test_a_stop_is_held_out_of_depth_and_count_and_described_by_order(book):
    book.sell(1, 100, 5)
    events = stop(book, 2, BUY, 3, 105, owner=4, stp=SelfTradePrevention.CANCEL_TAKER)
    assert events == [OrderAccepted(2, BUY, STOP, GTC, 0, 3, 105, owner=4, stp=SelfTradePrevention.CANCEL_TAKER)]
    assert book.depth() == {"bids": [], "asks": [(100, 5, 1)]}
    assert len(book) == 1
    assert book.order(2) == RestingOrder(2, BUY, 0, 3, GTC, STOP, 105, owner=4, stp=SelfTradePrevention.CANCEL_TAKER)
    assert book.level_changes() == []


def test_a_stop_ignores_time_in_force_and_expiry_and_keeps_gtc(book):
    events = book.submit(1, SELL, STOP, 99, 7, 2, stop_price=90, expire_at=5)
    assert events == [OrderAccepted(1, SELL, STOP, GTC, 0, 2, 90)]


def test_nothing_qualifies_before_the_first_trade(book):
    book.sell(1, 100, 5)
    assert stop(book, 2, BUY, 3, 1) == [OrderAccepted(2, BUY, STOP, GTC, 0, 3, 1)]
    assert stop(book, 3, SELL, 3, 10**9) == [OrderAccepted(3, SELL, STOP, GTC, 0, 3, 10**9)]
    assert book.order(2) is not None and book.order(3) is not None


def test_a_buy_stop_triggers_at_its_price_as_a_market_ioc(book):
    book.sell(1, 100, 5)
    book.sell(2, 101, 5)
    stop(book, 3, BUY, 7, 100)
    assert book.buy(4, 100, 1)[1:] == [
        filled(1, 4, 100, 1, 4, 0, BUY, 1),
        StopTriggered(3, 100),
        filled(1, 3, 100, 4, 0, 3, BUY, 2),
        filled(2, 3, 101, 3, 2, 0, BUY, 3),
    ]
    assert book.order(3) is None
    assert book.depth() == {"bids": [], "asks": [(101, 2, 1)]}


def test_a_sell_stop_triggers_when_the_last_price_falls_to_it(book):
    book.buy(1, 100, 5)
    book.buy(2, 99, 5)
    stop(book, 3, SELL, 4, 99)
    assert book.sell(4, 100, 1)[1:] == [filled(1, 4, 100, 1, 4, 0, SELL, 1)]  # 100 > 99: still held
    assert book.sell(5, 99, 5)[1:] == [
        filled(1, 5, 100, 4, 0, 1, SELL, 2),
        filled(2, 5, 99, 1, 4, 0, SELL, 3),
        StopTriggered(3, 99),
        filled(2, 3, 99, 4, 0, 0, SELL, 4),
    ]


def test_a_stop_whose_price_is_already_reached_triggers_on_arrival(book):
    book.sell(1, 100, 5)
    book.buy(2, 100, 1)
    assert stop(book, 3, BUY, 2, 95) == [
        OrderAccepted(3, BUY, STOP, GTC, 0, 2, 95),
        StopTriggered(3, 100),
        filled(1, 3, 100, 2, 2, 0, BUY, 2),
    ]


def test_a_released_stop_with_nothing_to_trade_cancels_its_remainder(book):
    book.sell(1, 100, 1)
    stop(book, 2, BUY, 4, 100)
    assert book.buy(3, 100, 1)[1:] == [
        filled(1, 3, 100, 1, 0, 0, BUY, 1),
        StopTriggered(2, 100),
        OrderCanceled(2, 4, UNFILLED),
    ]


def test_only_the_last_trade_price_counts_not_prices_printed_on_the_way(book):
    book.sell(1, 100, 1)
    book.sell(2, 102, 1)
    stop(book, 3, SELL, 1, 100)  # would qualify at 100, not at 102
    events = book.buy(4, 102, 2)
    assert events[1:] == [filled(1, 4, 100, 1, 0, 1, BUY, 1), filled(2, 4, 102, 1, 0, 0, BUY, 2)]
    assert book.order(3).order_type is STOP


def test_the_earliest_accepted_qualifying_stop_goes_first_then_the_loop_looks_again(book):
    """Stops 3 (buy at 101) and 4 (buy at 100) both qualify at 101: 3 was accepted first. Its
    fills print 102, which makes stop 6 (buy at 102) qualify; stop 5 (sell at 90) never does."""
    book.sell(1, 101, 1)
    book.sell(2, 102, 10)
    stop(book, 3, BUY, 1, 101)
    stop(book, 4, BUY, 1, 100)
    stop(book, 5, SELL, 1, 90)
    stop(book, 6, BUY, 1, 102)
    book.sell(7, 103, 5)
    assert book.buy(8, 101, 1)[1:] == [
        filled(1, 8, 101, 1, 0, 0, BUY, 1),
        StopTriggered(3, 101),
        filled(2, 3, 102, 1, 9, 0, BUY, 2),
        StopTriggered(4, 102),
        filled(2, 4, 102, 1, 8, 0, BUY, 3),
        StopTriggered(6, 102),
        filled(2, 6, 102, 1, 7, 0, BUY, 4),
    ]
    assert book.order(5) == RestingOrder(5, SELL, 0, 1, GTC, STOP, 90)


def test_a_released_stop_limit_rests_its_remainder_behind_the_orders_at_its_price(book):
    book.sell(1, 100, 1)
    book.buy(2, 99, 4)
    stop_limit(book, 3, BUY, 99, 5, 100)
    book.buy(4, 99, 2)
    assert book.buy(5, 100, 1)[1:] == [
        filled(1, 5, 100, 1, 0, 0, BUY, 1),
        StopTriggered(3, 100),
    ]
    assert book.depth() == {"bids": [(99, 11, 3)], "asks": []}
    assert book.order(3) == RestingOrder(3, BUY, 99, 5, GTC)
    assert book.sell(6, 99, 10)[1:] == [
        filled(2, 6, 99, 4, 0, 6, SELL, 2),
        filled(4, 6, 99, 2, 0, 4, SELL, 3),
        filled(3, 6, 99, 4, 1, 0, SELL, 4),
    ]


def test_a_released_stop_limit_trades_what_crosses_first(book):
    book.sell(1, 100, 1)
    book.sell(2, 101, 3)
    stop_limit(book, 3, BUY, 101, 5, 100, tif=IOC)
    assert book.buy(4, 100, 1)[1:] == [
        filled(1, 4, 100, 1, 0, 0, BUY, 1),
        StopTriggered(3, 100),
        filled(2, 3, 101, 3, 0, 2, BUY, 2),
        OrderCanceled(3, 2, UNFILLED),
    ]


def test_a_released_fok_stop_limit_that_cannot_fill_is_canceled_whole_with_nothing_else(book):
    book.sell(1, 100, 1)
    book.sell(2, 101, 3, owner=9)
    stop_limit(book, 3, BUY, 101, 5, 100, tif=FOK, owner=9, stp=SelfTradePrevention.CANCEL_MAKER)
    assert book.buy(4, 100, 1)[1:] == [
        filled(1, 4, 100, 1, 0, 0, BUY, 1),
        StopTriggered(3, 100),
        OrderCanceled(3, 5, UNFILLED),
    ]
    assert book.depth() == {"bids": [], "asks": [(101, 3, 1)]}


def test_a_released_fok_stop_limit_that_can_fill_trades(book):
    book.sell(1, 100, 1)
    book.sell(2, 101, 5)
    stop_limit(book, 3, BUY, 101, 5, 100, tif=FOK)
    assert book.buy(4, 100, 1)[2:] == [StopTriggered(3, 100), filled(2, 3, 101, 5, 0, 0, BUY, 2)]


def test_a_released_stop_keeps_its_owner_and_stp(book):
    book.sell(1, 100, 1)
    book.sell(2, 101, 2, owner=5)
    book.sell(3, 101, 2)
    stop(book, 4, BUY, 3, 100, owner=5, stp=SelfTradePrevention.CANCEL_MAKER)
    assert book.buy(5, 100, 1)[2:] == [
        StopTriggered(4, 100),
        OrderCanceled(2, 2, CancelReason.SELF_TRADE),
        filled(3, 4, 101, 2, 0, 1, BUY, 2),
        OrderCanceled(4, 1, UNFILLED),
    ]


def test_held_stops_are_canceled_by_id_and_never_replaced(book):
    stop(book, 1, BUY, 3, 100)
    stop_limit(book, 2, SELL, 90, 3, 91)
    reason = RejectReason.NOT_REPLACEABLE
    assert book.replace(1, 100, 2) == [ReplaceRejected(1, reason, reason.text)]
    assert book.replace(2, 90, 2) == [ReplaceRejected(2, reason, reason.text)]
    assert book.cancel(2) == [OrderCanceled(2, 3, CancelReason.REQUESTED)]
    assert book.cancel(2) == [CancelRejected(2, RejectReason.UNKNOWN_ORDER, RejectReason.UNKNOWN_ORDER.text)]
    assert book.order(2) is None and book.order(1) is not None


def test_a_released_stop_limit_keeps_its_gtd_expiry(book):
    book.set_clock(10)
    book.sell(1, 100, 1)
    stop_limit(book, 2, BUY, 99, 4, 100, tif=GTD, expire_at=20)
    book.buy(3, 100, 1)
    assert book.order(2) == RestingOrder(2, BUY, 99, 4, GTD, expire_at=20)
    assert book.set_clock(20)[1:] == [OrderExpired(2, 4)]
    assert book.depth() == {"bids": [], "asks": []}


def test_a_held_gtd_stop_limit_expires_on_the_clock(book):
    stop_limit(book, 1, BUY, 99, 4, 100, tif=GTD, expire_at=20)
    assert book.set_clock(19)[1:] == []
    assert book.set_clock(25)[1:] == [OrderExpired(1, 4)]
    assert book.order(1) is None


def test_end_of_day_expires_held_day_stop_limits_after_the_books_day_orders(book):
    stop_limit(book, 1, BUY, 99, 4, 100, tif=DAY)
    book.sell(2, 105, 3, DAY)
    stop(book, 3, SELL, 2, 90)
    assert book.expire_day_orders() == [OrderExpired(2, 3), OrderExpired(1, 4)]
    assert book.order(3) is not None


def test_stops_are_refused_in_call_held_through_it_and_triggered_after_the_uncross(book):
    """The uncross prints 101 (volume 2: test_book_auction covers the price rules); then the
    trigger loop releases stop 3, held since before the call."""
    book.sell(1, 100, 2)
    book.buy(2, 100, 1)  # last price 100: stop 3 (buy at 101) does not qualify
    stop(book, 3, BUY, 1, 101)
    book.set_phase(1)
    reason = RejectReason.NOT_ALLOWED_IN_PHASE
    assert stop(book, 4, BUY, 1, 101) == [OrderRejected(4, reason, reason.text)]
    assert stop_limit(book, 4, BUY, 1, 1, 101) == [OrderRejected(4, reason, reason.text)]
    book.sell(5, 101, 3)
    book.buy(6, 101, 2)
    assert book.set_phase(0)[1:] == [
        AuctionUncrossed(101, 2),
        filled(1, 6, 101, 1, 0, 1, BUY, 2),
        filled(5, 6, 101, 1, 2, 0, BUY, 3),
        StopTriggered(3, 101),
        filled(5, 3, 101, 1, 1, 0, BUY, 4),
    ]


def test_stops_are_refused_while_halted(book):
    book.sell(1, 100, 2)
    book.buy(2, 100, 1)
    book.set_phase(2)
    reason = RejectReason.NOT_ALLOWED_IN_PHASE
    assert stop(book, 3, BUY, 1, 100) == [OrderRejected(3, reason, reason.text)]
    assert book.level(SELL, 100) == PriceLevel(100, 1, 1)


def test_a_stop_market_order_never_rests_and_the_stop_limit_rests_at_its_price(book):
    book.sell(1, 100, 1)
    stop(book, 2, BUY, 5, 100)
    stop_limit(book, 3, BUY, 98, 5, 100)
    book.buy(4, 100, 1)
    assert book.depth() == {"bids": [(98, 5, 1)], "asks": []}
    assert len(book) == 1
