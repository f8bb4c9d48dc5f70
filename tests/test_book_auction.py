"""Trading phases (continuous, call auction, halted) and the uncross."""

import numpy as np
import pytest

from engine.auction import uncross_price
from engine.book import ReferenceBook
from engine.messages import (
    AuctionUncrossed,
    ClockAdvanced,
    CommandRejected,
    LevelChanged,
    OrderAccepted,
    OrderCanceled,
    OrderFilled,
    OrderRejected,
    OrderReplaced,
    PhaseChanged,
    ReplaceRejected,
    RestingOrder,
)
from engine.stream import LIMIT as STREAM_LIMIT
from engine.stream import STREAM_V2_DTYPE
from engine.types import CancelReason, OrderType, Phase, RejectReason, SelfTradePrevention, Side, TimeInForce

BUY, SELL = Side.BUY, Side.SELL
LIMIT, MARKET = OrderType.LIMIT, OrderType.MARKET
GTC, IOC, FOK = TimeInForce.GTC, TimeInForce.IOC, TimeInForce.FOK
CONTINUOUS, CALL, HALTED = Phase.CONTINUOUS, Phase.CALL, Phase.HALTED
UNFILLED, REQUESTED = CancelReason.UNFILLED, CancelReason.REQUESTED
R = RejectReason


def filled(maker, taker, price, quantity, maker_leaves, taker_leaves, aggressor, sequence):
    return OrderFilled(maker, taker, price, quantity, maker_leaves, taker_leaves, aggressor, sequence)


def rejected(order_id, reason):
    return [OrderRejected(order_id, reason, reason.text)]


# ---------------------------------------------------------------- phase commands


def test_phase_changes_report_the_new_and_previous_phase(book):
    assert book.set_phase(1) == [PhaseChanged(CALL, CONTINUOUS)]
    assert book.set_phase(1) == [PhaseChanged(CALL, CALL)]
    assert book.set_phase(2) == [PhaseChanged(HALTED, CALL)]
    assert book.set_phase(0) == [PhaseChanged(CONTINUOUS, HALTED)]
    assert book.set_phase(0) == [PhaseChanged(CONTINUOUS, CONTINUOUS)]
    assert book.phase is CONTINUOUS


@pytest.mark.parametrize(("phase", "reason"), [(3, R.UNKNOWN_PHASE), (-1, R.UNKNOWN_PHASE),
                                               (255, R.UNKNOWN_PHASE), (2**63, R.VALUE_OUT_OF_RANGE)])
def test_an_unknown_phase_is_refused_and_changes_nothing(book, phase, reason):
    book.set_phase(1)
    assert book.set_phase(phase) == [CommandRejected(reason, reason.text)]
    assert book.phase is CALL


# ---------------------------------------------------------------- the call phase


def test_in_call_limit_orders_rest_without_matching_and_the_book_may_cross(book):
    book.sell(1, 100, 5)
    book.set_phase(1)
    assert book.buy(2, 102, 3) == [OrderAccepted(2, BUY, LIMIT, GTC, 102, 3)]
    assert book.depth() == {"bids": [(102, 3, 1)], "asks": [(100, 5, 1)]}
    assert (book.best_bid(), book.best_ask()) == (102, 100)


def test_in_call_market_orders_wait_counted_but_not_in_depth_cancelable_not_replaceable(book):
    book.set_phase(1)
    assert book.market_buy(1, 4) == [OrderAccepted(1, BUY, MARKET, IOC, 0, 4)]
    assert book.market_sell(2, 3, FOK) == [OrderAccepted(2, SELL, MARKET, FOK, 0, 3)]
    assert len(book) == 2
    assert book.depth() == {"bids": [], "asks": []}
    assert book.order(1) == RestingOrder(1, BUY, 0, 4, IOC, MARKET)
    assert book.replace(1, 100, 4) == [ReplaceRejected(1, R.NOT_REPLACEABLE, R.NOT_REPLACEABLE.text)]
    assert book.cancel(2) == [OrderCanceled(2, 3, REQUESTED)]
    assert len(book) == 1


@pytest.mark.parametrize("tif", [IOC, FOK])
def test_in_call_ioc_and_fok_limit_orders_are_refused(book, tif):
    book.set_phase(1)
    assert book.buy(1, 100, 1, tif) == rejected(1, R.NOT_ALLOWED_IN_PHASE)


def test_in_call_a_re_entry_rests_without_matching_and_takes_a_later_time(book):
    """Order 1 re-enters after order 2 arrived, so in the uncross 2 is the maker."""
    book.set_phase(1)
    book.buy(1, 100, 3)
    book.sell(2, 100, 3)
    assert book.replace(1, 101, 3) == [OrderReplaced(1, 101, 3, False)]
    assert book.depth() == {"bids": [(101, 3, 1)], "asks": [(100, 3, 1)]}
    assert book.set_phase(0)[1:] == [AuctionUncrossed(100, 3), filled(2, 1, 100, 3, 0, 0, BUY, 1)]


# ---------------------------------------------------------------- the halted phase


def test_halted_takes_cancels_reductions_clock_and_phase_only(book):
    book.buy(1, 100, 5)
    book.sell(2, 101, 5)
    book.set_phase(2)
    assert book.buy(3, 99, 1) == rejected(3, R.NOT_ALLOWED_IN_PHASE)
    assert book.market_sell(3, 1) == rejected(3, R.NOT_ALLOWED_IN_PHASE)
    assert book.replace(1, 100, 3) == [OrderReplaced(1, 100, 3, True)]
    assert book.replace(1, 100, 3) == [OrderReplaced(1, 100, 3, True)]
    for price, quantity in ((100, 4), (99, 3)):
        assert book.replace(1, price, quantity) == [
            ReplaceRejected(1, R.NOT_ALLOWED_IN_PHASE, R.NOT_ALLOWED_IN_PHASE.text)
        ]
    assert book.cancel(2) == [OrderCanceled(2, 5, REQUESTED)]
    assert book.set_clock(4) == [ClockAdvanced(4)]
    assert book.set_phase(0) == [PhaseChanged(CONTINUOUS, HALTED)]
    assert book.depth() == {"bids": [(100, 3, 1)], "asks": []}


def test_waiting_market_orders_stay_through_a_halt_and_trade_in_the_uncross_after_it(book):
    book.set_phase(1)
    book.sell(1, 100, 2)
    book.market_buy(2, 1)
    assert book.set_phase(2) == [PhaseChanged(HALTED, CALL)]
    assert len(book) == 2
    assert book.set_phase(0) == [
        PhaseChanged(CONTINUOUS, HALTED),
        AuctionUncrossed(100, 1),
        filled(1, 2, 100, 1, 1, 0, BUY, 1),
    ]


# ---------------------------------------------------------------- the uncross


def test_the_uncross_pairs_markets_first_then_limits_and_the_earlier_order_is_the_maker(book):
    """Times: 1 (resting before the call), then 2, 3, 4, 5, 6. Volume is 5 at 100 and 101 with
    surplus -1 at both: the lowest, 100."""
    book.sell(1, 100, 2)
    book.set_phase(1)
    book.buy(2, 101, 3)
    book.market_sell(3, 2)
    book.market_buy(4, 1)
    book.sell(5, 99, 2)
    book.buy(6, 101, 1)
    assert book.set_phase(0) == [
        PhaseChanged(CONTINUOUS, CALL),
        AuctionUncrossed(100, 5),
        filled(3, 4, 100, 1, 1, 0, BUY, 1),
        filled(2, 3, 100, 1, 2, 0, SELL, 2),
        filled(2, 5, 100, 2, 0, 0, SELL, 3),
        filled(1, 6, 100, 1, 1, 0, BUY, 4),
    ]
    assert book.level_changes() == [LevelChanged(BUY, 101, 0, 0), LevelChanged(SELL, 99, 0, 0),
                                    LevelChanged(SELL, 100, 1, 1)]
    assert book.last_price == 100
    assert len(book) == 1


def test_orders_resting_before_the_call_are_makers_against_orders_of_the_call(book):
    book.buy(1, 100, 2)
    book.set_phase(1)
    book.sell(2, 99, 2)
    assert book.set_phase(0)[1:] == [AuctionUncrossed(99, 2), filled(1, 2, 99, 2, 0, 0, SELL, 1)]


def test_waiting_market_remainders_are_canceled_in_arrival_order_and_a_fok_may_fill_in_part(book):
    book.set_phase(1)
    book.market_buy(1, 7, FOK)
    book.market_sell(2, 3)
    book.sell(3, 100, 2)
    book.market_buy(4, 1)
    assert book.set_phase(0)[1:] == [
        AuctionUncrossed(100, 5),
        filled(1, 2, 100, 3, 4, 0, SELL, 1),
        filled(1, 3, 100, 2, 2, 0, SELL, 2),
        OrderCanceled(1, 2, UNFILLED),
        OrderCanceled(4, 1, UNFILLED),
    ]
    assert len(book) == 0


def test_market_orders_count_at_any_price_so_they_trade_when_limits_do_not_cross(book):
    book.set_phase(1)
    book.buy(1, 99, 1)
    book.sell(2, 101, 1)
    book.market_buy(3, 5)
    assert book.set_phase(0)[1:] == [
        AuctionUncrossed(101, 1),
        filled(2, 3, 101, 1, 0, 4, BUY, 1),
        OrderCanceled(3, 4, UNFILLED),
    ]
    assert book.depth() == {"bids": [(99, 1, 1)], "asks": []}


def test_nothing_to_trade_cancels_the_waiting_markets_and_keeps_the_last_price(book):
    book.sell(1, 100, 1)
    book.buy(2, 100, 1)
    book.set_phase(1)
    book.buy(3, 99, 1)
    book.sell(4, 101, 1)
    book.market_buy(5, 5)
    book.cancel(4)
    assert book.set_phase(0) == [PhaseChanged(CONTINUOUS, CALL), OrderCanceled(5, 5, UNFILLED)]
    assert book.last_price == 100
    assert book.depth() == {"bids": [(99, 1, 1)], "asks": []}


def test_only_market_orders_means_no_candidate_price(book):
    book.set_phase(1)
    book.market_buy(1, 2)
    book.market_sell(2, 2)
    assert book.set_phase(0)[1:] == [OrderCanceled(1, 2, UNFILLED), OrderCanceled(2, 2, UNFILLED)]


def test_an_iceberg_trades_its_whole_quantity_in_one_record_and_keeps_its_place(book):
    book.set_phase(1)
    book.sell(1, 100, 20, display_quantity=5)
    book.sell(2, 100, 4)
    book.buy(3, 100, 12)
    assert book.set_phase(0)[1:] == [AuctionUncrossed(100, 12), filled(1, 3, 100, 12, 8, 0, BUY, 1)]
    assert book.depth() == {"bids": [], "asks": [(100, 9, 2)]}
    assert book.market_buy(4, 6)[1:] == [filled(1, 4, 100, 5, 3, 1, BUY, 2), filled(2, 4, 100, 1, 3, 0, BUY, 3)]


def test_self_trade_prevention_does_not_apply_in_the_uncross(book):
    book.set_phase(1)
    book.sell(1, 100, 2, owner=7)
    book.buy(2, 100, 2, owner=7, stp=SelfTradePrevention.CANCEL_BOTH)
    assert book.set_phase(0)[1:] == [AuctionUncrossed(100, 2), filled(1, 2, 100, 2, 0, 0, BUY, 1)]


def test_the_uncross_closest_to_the_last_trade_price_breaks_a_tie_of_mixed_surpluses(book):
    """Every candidate (99..102) trades 1 with surplus +-1: the one closest to the last price, 100."""
    book.sell(1, 100, 1)
    book.buy(2, 100, 1)
    book.set_phase(1)
    book.buy(3, 102, 1)
    book.buy(4, 100, 1)
    book.sell(5, 99, 1)
    book.sell(6, 101, 1)
    assert book.set_phase(0)[1:] == [AuctionUncrossed(100, 1), filled(3, 5, 100, 1, 0, 0, SELL, 2)]
    assert book.depth() == {"bids": [(100, 1, 1)], "asks": [(101, 1, 1)]}


def test_a_halt_from_continuous_and_back_trades_nothing(book):
    book.buy(1, 100, 5)
    book.sell(2, 101, 5)
    book.set_phase(2)
    assert book.set_phase(0) == [PhaseChanged(CONTINUOUS, HALTED)]
    assert book.trade_sequence == 0


# ---------------------------------------------------------------- the uncross price


MIXED = ([(102, 1), (100, 1)], [(99, 1), (101, 1)])
"""Every candidate 99..102 has volume 1 and surplus +1 (99, 100) or -1 (101, 102)."""


@pytest.mark.parametrize(
    ("bids", "asks", "market_buy", "market_sell", "last", "expected"),
    [
        ([(102, 3)], [(100, 5), (101, 4)], 4, 0, None, (101, 7)),  # largest volume (101, 102), both S -2: lowest
        ([(101, 10)], [(99, 5), (100, 5), (101, 3)], 0, 0, None, (100, 10)),  # volume 10 at 100 and 101: |S| 0 < 3
        ([(102, 10)], [(100, 4)], 0, 0, None, (102, 4)),  # S > 0 at both: buying pressure, the highest
        ([(102, 4)], [(100, 10)], 0, 0, None, (100, 4)),  # S < 0 at both: the lowest
        ([(104, 5)], [(100, 5)], 0, 0, 103, (104, 5)),  # S 0 at both: closest to the last price
        ([(104, 5)], [(100, 5)], 0, 0, 101, (100, 5)),
        ([(104, 5)], [(100, 5)], 0, 0, 102, (100, 5)),  # equally close: the lowest
        ([(104, 5)], [(100, 5)], 0, 0, None, (100, 5)),  # no last price: the lowest
        (*MIXED, 0, 0, None, (99, 1)),
        (*MIXED, 0, 0, 101, (101, 1)),
        (*MIXED, 0, 0, 500, (102, 1)),
        ([(99, 1)], [(101, 1)], 0, 0, 100, None),  # not crossed: nothing trades
        ([], [], 5, 5, 100, None),  # no limit price to trade at
        ([(99, 2)], [(101, 1)], 0, 3, None, (99, 2)),  # a market sell takes the bid below the ask
    ],
)
def test_uncross_price_rules(bids, asks, market_buy, market_sell, last, expected):
    assert uncross_price(bids, asks, market_buy, market_sell, last) == expected


# ---------------------------------------------------------------- the indicative uncross


def test_the_indicative_uncross_is_what_the_uncross_then_does(book):
    """In a call the book tells, after every order, the (price, volume) it would uncross at now;
    ending the call uncrosses at exactly the last one told."""
    assert book.indicative_uncross() is None
    book.set_phase(CALL)
    book.submit(1, SELL, LIMIT, GTC, 101, 10)
    assert book.indicative_uncross() is None
    book.submit(2, BUY, LIMIT, GTC, 99, 5)
    assert book.indicative_uncross() is None
    book.submit(3, BUY, LIMIT, GTC, 102, 4)
    assert book.indicative_uncross() == (101, 4)  # a tie of selling pressure: the lowest
    book.submit(4, BUY, MARKET, IOC, 0, 3)
    assert book.indicative_uncross() == (101, 7)
    book.submit(5, SELL, LIMIT, GTC, 99, 6)
    assert book.indicative_uncross() == (101, 7)
    assert len(book) == 5
    events = book.set_phase(CONTINUOUS)
    assert events[1] == AuctionUncrossed(101, 7)
    assert book.indicative_uncross() is None


def test_the_indicative_uncross_changes_nothing(book):
    book.set_phase(CALL)
    book.submit(1, SELL, LIMIT, GTC, 100, 10)
    book.submit(2, BUY, LIMIT, GTC, 100, 10)
    before = book.state_hash()
    assert book.indicative_uncross() == (100, 10)
    assert book.indicative_uncross() == (100, 10)
    assert book.state_hash() == before


@pytest.mark.parametrize(("crossing", "far"), [(3_000, 0), (300, 20_000)], ids=["sweep", "one-by-one"])
def test_an_uncross_freeing_many_or_few_of_the_books_orders_leaves_its_id_index_exact(crossing, far):
    """The native book takes the ids an uncross frees out of its index in one pass over the table
    when they are many beside its size (3,000 orders in the call), one by one when they are few (300
    beside 20,000 resting far from the price): either way every id after it is found exactly when
    the reference book finds it (a cancel of each succeeds or is refused alike), and the states
    agree."""
    native = pytest.importorskip("native.book", reason="the native book is not built: run `make build`")
    from benchmarks.book import call_book  # imports the native book

    rests = np.zeros(far, dtype=STREAM_V2_DTYPE)
    rests["kind"], rests["tif"], rests["qty"] = STREAM_LIMIT, GTC, 1
    rests["order_id"] = 10**6 + np.arange(far)
    rests["side"] = np.arange(far) % 2
    rests["price"] = np.where(rests["side"] == BUY, 1_000 - np.arange(far) % 500, 100_000 + np.arange(far) % 500)
    stream = np.concatenate([rests, call_book(crossing)])
    native, reference = native.NativeBook(), ReferenceBook()
    native.replay(stream)
    reference.replay(stream)
    uncrossed = native.set_phase(CONTINUOUS)
    assert uncrossed == reference.set_phase(CONTINUOUS)
    assert sum(type(event) is OrderFilled for event in uncrossed) > crossing // 2
    assert native.state_hash() == reference.state_hash()
    for order_id in stream["order_id"].tolist():
        assert native.cancel(order_id) == reference.cancel(order_id)
    assert len(native) == len(reference) == 0
