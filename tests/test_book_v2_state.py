"""Snapshots and the state hash of the advanced state: order details, held stops, waiting market
orders, phase, clock and last trade price; older snapshots still restore."""

import msgspec
import numpy as np
import pytest

from engine.lifecycle import OrderState, OrderTracker
from engine.messages import AuctionUncrossed, OrderFilled, RestingOrder, StopTriggered
from engine.snapshot import (
    DETAIL_DTYPE,
    HELD_DTYPE,
    ORDER_DTYPE,
    WAITING_DTYPE,
    BookSnapshot,
    validate_snapshot,
)
from engine.types import OrderType, Phase, SelfTradePrevention, Side, TimeInForce

BUY, SELL = Side.BUY, Side.SELL
LIMIT, MARKET, STOP, STOP_LIMIT = OrderType.LIMIT, OrderType.MARKET, OrderType.STOP, OrderType.STOP_LIMIT
GTC, IOC, FOK, DAY, GTD = TimeInForce.GTC, TimeInForce.IOC, TimeInForce.FOK, TimeInForce.DAY, TimeInForce.GTD
DECREMENT = SelfTradePrevention.DECREMENT


def tracker_with(*order_ids):
    tracker = OrderTracker()
    tracker.states = {order_id: OrderState.ACCEPTED for order_id in order_ids}
    return tracker


def advanced(book):
    """Every kind of advanced state, ending in the call phase with a crossed book."""
    book.set_clock(5)
    book.sell(1, 100, 2)
    book.buy(2, 100, 1)  # last price 100
    book.sell(3, 103, 20, display_quantity=4, owner=7, stp=DECREMENT)
    book.buy(4, 98, 6, GTD, flags=1, expire_at=50)
    book.submit(5, SELL, STOP, GTC, 0, 3, stop_price=90)
    book.submit(6, BUY, STOP_LIMIT, GTD, 104, 2, stop_price=102, expire_at=40, owner=7)
    book.market_buy(7, 1)  # takes the last lot at 100
    book.set_phase(1)
    book.buy(8, 104, 5)
    book.market_sell(9, 2, FOK, owner=3)
    return book


def test_a_snapshot_holds_every_part_of_the_advanced_state(book):
    snapshot = advanced(book).snapshot()
    assert snapshot.order_array().tolist() == [(8, BUY, 104, 5, GTC), (4, BUY, 98, 6, GTD), (3, SELL, 103, 20, GTC)]
    assert snapshot.detail_array().tolist() == [
        (8, 0, 5, 0, 0, 0, 0, 0, 3),
        (4, 0, 6, 1, 0, 0, 50, 1, 1),
        (3, 4, 4, 0, DECREMENT, 7, 0, 0, 2),
    ]
    assert snapshot.held_array().tolist() == [
        (5, SELL, STOP, GTC, 0, 0, 3, 90, 0, 0, 2),
        (6, BUY, STOP_LIMIT, GTD, 0, 104, 2, 102, 7, 40, 3),
    ]
    assert snapshot.waiting_array().tolist() == [(9, SELL, FOK, 0, 2, 3, 4)]
    assert (snapshot.phase, snapshot.clock, snapshot.last_price, snapshot.trade_sequence) == (Phase.CALL, 5, 100, 2)
    assert len(book) == 4
    assert book.order(6) == RestingOrder(6, BUY, 104, 2, GTD, STOP_LIMIT, 102, owner=7, expire_at=40)


def test_a_restored_book_continues_exactly_as_the_original(book):
    advanced(book)
    copy = book.restored()

    def further(b):
        return [
            b.set_phase(0),  # uncross at 103 (the market sell first, then the iceberg), stop 6 triggers
            b.buy(10, 103, 30, owner=7, stp=DECREMENT),
            b.set_clock(50),
            b.sell(11, 95, 4),
            b.cancel(5),
        ]

    events = further(book)
    assert further(copy) == events
    assert events[0][1:5] == [
        AuctionUncrossed(103, 5),
        OrderFilled(8, 9, 103, 2, 3, 0, SELL, 3),
        OrderFilled(3, 8, 103, 3, 17, 0, BUY, 4),
        StopTriggered(6, 103),
    ]
    assert copy.snapshot() == book.snapshot()
    assert copy.state_hash() == book.state_hash()


def test_a_continuous_snapshot_does_not_depend_on_the_auction_times(make_book):
    """Leaving the continuous phase numbers the resting orders in priority order, so books that
    reached the same continuous state through different histories stay equal in a later call."""
    first, second = make_book(), make_book()
    first.sell(2, 101, 1)
    first.buy(1, 99, 1)
    second.buy(1, 99, 1)
    second.sell(2, 101, 1)
    for b in (first, second):
        b.set_phase(1)
        b.sell(3, 98, 1)
    assert first.snapshot() == second.snapshot()
    assert first.set_phase(0) == second.set_phase(0)


def test_the_hash_covers_phase_clock_last_price_and_held_stops(make_book):
    books = [make_book() for _ in range(5)]
    for b in books:
        b.sell(1, 100, 2)
    books[1].set_phase(2)
    books[2].set_clock(1)
    books[3].buy(2, 100, 1)
    books[3].replace(1, 100, 2)
    books[4].submit(2, BUY, STOP, GTC, 0, 1, stop_price=120)
    books[4].cancel(2)
    books[4].submit(3, BUY, STOP, GTC, 0, 1, stop_price=120)
    hashes = {b.state_hash() for b in books}
    assert len(hashes) == 5


def test_a_snapshot_in_the_old_five_field_form_decodes_and_restores(make_book):
    class OldSnapshot(msgspec.Struct, frozen=True):
        trade_sequence: int
        orders: bytes
        accepted_ranges: bytes
        accepted_words: bytes
        accepted_lone: bytes

    orders = np.array([(1, BUY, 100, 5, GTC), (2, SELL, 101, 3, DAY)], dtype=ORDER_DTYPE)
    old = OldSnapshot(7, orders.tobytes(), b"", np.array([(0, 0b110)], dtype=[("a", "<i8"), ("b", "<u8")]).tobytes(),
                      b"")
    snapshot = msgspec.msgpack.decode(msgspec.msgpack.encode(old), type=BookSnapshot)
    assert (snapshot.phase, snapshot.clock, snapshot.last_price, snapshot.held_stops) == (0, 0, 0, b"")
    book = make_book(snapshot, tracker_with(1, 2))
    assert book.snapshot() == snapshot
    assert book.sell(3, 100, 5)[1] == OrderFilled(1, 3, 100, 5, 0, 0, SELL, 8)


def snapshot_with(orders=(), details=(), held=(), waiting=(), phase=0, clock=0, last_price=0, ids=(1, 2, 3)):
    return BookSnapshot.from_arrays(
        0, np.array(list(orders), dtype=ORDER_DTYPE), np.empty((0, 2), np.int64),
        np.array([(0, sum(1 << i for i in ids))], dtype=[("first", "<i8"), ("bits", "<u8")]),
        np.empty(0, np.int64), np.array(list(details), dtype=DETAIL_DTYPE), np.array(list(held), dtype=HELD_DTYPE),
        np.array(list(waiting), dtype=WAITING_DTYPE), phase, clock, last_price,
    )


BID, ASK = (1, BUY, 100, 5, GTC), (2, SELL, 101, 5, GTC)
BAD = {
    "unknown phase": snapshot_with(phase=3),
    "negative last price": snapshot_with(last_price=-1),
    "detail of no order": snapshot_with([BID], [(9, 0, 5, 1, 0, 0, 0, 0, 0)]),
    "details out of order": snapshot_with([BID, ASK], [(2, 0, 5, 1, 0, 0, 0, 0, 0), (1, 0, 5, 1, 0, 0, 0, 0, 0)]),
    "detail of a plain order": snapshot_with([BID], [(1, 0, 5, 0, 0, 0, 0, 0, 0)]),
    "visible above display": snapshot_with([BID], [(1, 2, 3, 0, 0, 0, 0, 0, 0)]),
    "hidden without display": snapshot_with([BID], [(1, 0, 4, 1, 0, 0, 0, 0, 0)]),
    "unknown flags": snapshot_with([BID], [(1, 0, 5, 2, 0, 0, 0, 0, 0)]),
    "gtd without details": snapshot_with([(1, BUY, 100, 5, GTD)]),
    "gtd expired": snapshot_with([(1, BUY, 100, 5, GTD)], [(1, 0, 5, 0, 0, 0, 5, 1, 0)], clock=5),
    "expiry on a gtc order": snapshot_with([BID], [(1, 0, 5, 0, 0, 0, 9, 1, 0)]),
    "acceptance ranks with a gap": snapshot_with([(1, BUY, 100, 5, GTD)], [(1, 0, 5, 0, 0, 0, 9, 2, 0)]),
    "time in continuous": snapshot_with([BID], [(1, 0, 5, 0, 0, 0, 0, 0, 1)]),
    "no time in call": snapshot_with([BID], phase=1),
    "times out of queue order": snapshot_with([BID, (2, BUY, 100, 5, GTC)], [(1, 0, 5, 0, 0, 0, 0, 0, 2),
                                                                             (2, 0, 5, 0, 0, 0, 0, 0, 1)], phase=1),
    "crossed in continuous": snapshot_with([(1, BUY, 101, 5, GTC), ASK]),
    "held stop of unknown type": snapshot_with(held=[(1, BUY, LIMIT, GTC, 0, 0, 5, 90, 0, 0, 1)]),
    "held stop with a price": snapshot_with(held=[(1, BUY, STOP, GTC, 0, 100, 5, 90, 0, 0, 1)]),
    "held stop without a stop price": snapshot_with(held=[(1, BUY, STOP, GTC, 0, 0, 5, 0, 0, 0, 1)]),
    "held stop qualifying": snapshot_with(held=[(1, BUY, STOP, GTC, 0, 0, 5, 90, 0, 0, 1)], last_price=95),
    "held stops out of order": snapshot_with(held=[(1, BUY, STOP, GTC, 0, 0, 5, 90, 0, 0, 2),
                                                   (2, BUY, STOP, GTC, 0, 0, 5, 90, 0, 0, 1)]),
    "held id resting too": snapshot_with([BID], held=[(1, BUY, STOP, GTC, 0, 0, 5, 90, 0, 0, 1)]),
    "held id never accepted": snapshot_with(held=[(5, BUY, STOP, GTC, 0, 0, 5, 90, 0, 0, 1)]),
    "waiting in continuous": snapshot_with(waiting=[(1, BUY, IOC, 0, 5, 0, 1)]),
    "waiting gtc": snapshot_with(waiting=[(1, BUY, GTC, 0, 5, 0, 1)], phase=1),
    "waiting out of arrival order": snapshot_with(waiting=[(1, BUY, IOC, 0, 5, 0, 2), (2, BUY, IOC, 0, 5, 0, 1)],
                                                  phase=1),
    "truncated details": BookSnapshot(0, b"", b"", b"", b"", b"\0" * 3),
}


@pytest.mark.parametrize("snapshot", BAD.values(), ids=BAD)
def test_restore_of_an_inconsistent_advanced_snapshot_raises_value_error(book_class, snapshot):
    with pytest.raises(ValueError):
        book_class.restore(snapshot)


GOOD = {
    "crossed in call": snapshot_with([(1, BUY, 101, 5, GTC), ASK], [(1, 0, 5, 0, 0, 0, 0, 0, 2),
                                                                    (2, 0, 5, 0, 0, 0, 0, 0, 1)], phase=1),
    "held stops and waiting orders": snapshot_with(
        [BID], [(1, 0, 5, 0, 0, 0, 0, 0, 1)], [(2, SELL, STOP_LIMIT, GTD, 4, 99, 5, 90, 8, 30, 1)],
        [(3, SELL, FOK, 0, 5, 0, 2)], phase=2, clock=20, last_price=91,
    ),
}


@pytest.mark.parametrize("snapshot", GOOD.values(), ids=GOOD)
def test_restore_of_a_consistent_advanced_snapshot_gives_it_back(make_book, snapshot):
    validate_snapshot(snapshot)
    book = make_book(snapshot, tracker_with(1, 2, 3))
    assert book.snapshot() == snapshot
