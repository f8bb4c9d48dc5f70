"""The order lifecycle table and `OrderTracker`."""

import itertools

import pytest

from engine.lifecycle import (
    TERMINAL,
    TRANSITIONS,
    IllegalTransition,
    OrderState,
    OrderTracker,
    Transition,
    next_state,
)
from engine.messages import (
    AuctionUncrossed,
    CancelRejected,
    ClockAdvanced,
    CommandRejected,
    OrderAccepted,
    OrderCanceled,
    OrderDecremented,
    OrderExpired,
    OrderFilled,
    OrderRejected,
    OrderReplaced,
    PhaseChanged,
    ReplaceRejected,
    StopTriggered,
)
from engine.types import CancelReason, OrderType, Phase, RejectReason, SelfTradePrevention, Side, TimeInForce

S, T = OrderState, Transition
BUY, SELL = Side.BUY, Side.SELL
LIMIT, GTC, DAY = OrderType.LIMIT, TimeInForce.GTC, TimeInForce.DAY

LEGAL = {
    (S.PENDING, T.ACCEPT): S.ACCEPTED,
    (S.PENDING, T.REJECT): S.REJECTED,
    (S.ACCEPTED, T.FILL_PART): S.PARTIALLY_FILLED,
    (S.ACCEPTED, T.FILL_ALL): S.FILLED,
    (S.ACCEPTED, T.CANCEL): S.CANCELED,
    (S.ACCEPTED, T.EXPIRE): S.EXPIRED,
    (S.ACCEPTED, T.REPLACE): S.ACCEPTED,
    (S.ACCEPTED, T.TRIGGER): S.ACCEPTED,
    (S.ACCEPTED, T.DECREMENT): S.ACCEPTED,
    (S.PARTIALLY_FILLED, T.FILL_PART): S.PARTIALLY_FILLED,
    (S.PARTIALLY_FILLED, T.FILL_ALL): S.FILLED,
    (S.PARTIALLY_FILLED, T.CANCEL): S.CANCELED,
    (S.PARTIALLY_FILLED, T.EXPIRE): S.EXPIRED,
    (S.PARTIALLY_FILLED, T.REPLACE): S.PARTIALLY_FILLED,
    (S.PARTIALLY_FILLED, T.DECREMENT): S.PARTIALLY_FILLED,
}
ILLEGAL = [pair for pair in itertools.product(OrderState, Transition) if pair not in LEGAL]


def rejected(order_id, reason):
    return OrderRejected(order_id, reason, reason.text)


def accepted(order_id, side=BUY, tif=GTC, price=100, quantity=10):
    return OrderAccepted(order_id, side, LIMIT, tif, price, quantity)


def tracked(*steps):
    """A tracker fed ``steps``: an int submits that id, anything else is an event."""
    tracker = OrderTracker()
    for step in steps:
        if isinstance(step, int):
            tracker.submitted(step)
        else:
            tracker.apply(step)
    return tracker


# ---------------------------------------------------------------- table


def test_transition_table_is_exactly_the_documented_one():
    assert TRANSITIONS == LEGAL


@pytest.mark.parametrize(("pair", "after"), LEGAL.items(), ids=[f"{s.value}-{t.value}" for s, t in LEGAL])
def test_legal_transition_gives_next_state(pair, after):
    assert next_state(*pair) is after


@pytest.mark.parametrize("pair", ILLEGAL, ids=lambda p: f"{p[0].value}-{p[1].value}")
def test_illegal_transition_raises(pair):
    with pytest.raises(IllegalTransition, match=f"{pair[1].value} is not allowed in state {pair[0].value}"):
        next_state(*pair)


@pytest.mark.parametrize("state", sorted(TERMINAL, key=lambda s: s.value))
def test_terminal_state_rejects_every_transition(state):
    for transition in Transition:
        with pytest.raises(IllegalTransition):
            next_state(state, transition)


def test_terminal_states_are_filled_canceled_expired_rejected():
    assert TERMINAL == {S.FILLED, S.CANCELED, S.EXPIRED, S.REJECTED}
    assert {state for state, _ in TRANSITIONS} == set(OrderState) - TERMINAL


# ---------------------------------------------------------------- tracker


def test_tracker_follows_maker_and_taker_through_fills():
    tracker = tracked(
        1, accepted(1, SELL, quantity=10),
        2, accepted(2, BUY, quantity=4),
        OrderFilled(1, 2, 100, 4, 6, 0, BUY, 1),
    )  # fmt: skip
    assert (tracker.state(1), tracker.state(2)) == (S.PARTIALLY_FILLED, S.FILLED)
    tracker.apply(OrderReplaced(1, 100, 3, True))
    assert tracker.state(1) is S.PARTIALLY_FILLED
    tracker.submitted(3)
    tracker.apply(accepted(3, BUY, quantity=5))
    tracker.apply(OrderFilled(1, 3, 100, 3, 0, 2, BUY, 2))
    tracker.apply(OrderCanceled(3, 2, CancelReason.UNFILLED))
    assert (tracker.state(1), tracker.state(3)) == (S.FILLED, S.CANCELED)


def test_tracker_covers_reject_replace_cancel_and_expire():
    tracker = tracked(
        1, rejected(1, RejectReason.INVALID_PRICE),
        2, accepted(2),
        OrderReplaced(2, 101, 10, False),
        3, accepted(3, tif=DAY),
        OrderCanceled(2, 10, CancelReason.REQUESTED),
        OrderExpired(3, 10),
        4,
    )  # fmt: skip
    assert tracker.states == {1: S.REJECTED, 2: S.CANCELED, 3: S.EXPIRED, 4: S.PENDING}


def test_tracker_ignores_cancel_and_replace_rejections():
    unknown = RejectReason.UNKNOWN_ORDER
    tracker = tracked(1, accepted(1))
    tracker.apply(CancelRejected(1, unknown, unknown.text))
    tracker.apply(ReplaceRejected(1, RejectReason.INVALID_PRICE, RejectReason.INVALID_PRICE.text))
    tracker.apply(CancelRejected(99, unknown, unknown.text))
    assert tracker.states == {1: S.ACCEPTED}


@pytest.mark.parametrize(
    "event",
    [
        accepted(5),
        OrderFilled(5, 1, 100, 1, 0, 0, BUY, 1),
        OrderFilled(1, 5, 100, 1, 0, 0, BUY, 1),
        OrderCanceled(5, 1, CancelReason.REQUESTED),
        OrderExpired(5, 1),
        OrderReplaced(5, 100, 1, True),
    ],
    ids=["accept", "maker", "taker", "cancel", "expire", "replace"],
)
def test_tracker_event_for_unknown_order_raises(event):
    tracker = tracked(1, accepted(1))
    with pytest.raises(IllegalTransition, match="unknown order 5"):
        tracker.apply(event)


@pytest.mark.parametrize(
    "event",
    [
        OrderFilled(1, 2, 100, 1, 0, 0, SELL, 2),
        OrderCanceled(1, 1, CancelReason.REQUESTED),
        OrderExpired(1, 1),
        OrderReplaced(1, 100, 1, True),
        accepted(1),
    ],
    ids=["fill", "cancel", "expire", "replace", "accept"],
)
def test_tracker_event_after_filled_raises(event):
    tracker = tracked(1, accepted(1, quantity=1), 2, accepted(2, SELL, quantity=2))
    tracker.apply(OrderFilled(1, 2, 100, 1, 0, 1, SELL, 1))
    with pytest.raises(IllegalTransition):
        tracker.apply(event)
    assert tracker.state(1) is S.FILLED


def test_tracker_accept_twice_raises():
    tracker = tracked(1, accepted(1))
    with pytest.raises(IllegalTransition, match="accept is not allowed in state accepted"):
        tracker.apply(accepted(1))


def test_tracker_non_event_raises_type_error():
    with pytest.raises(TypeError):
        OrderTracker().apply("OrderAccepted")


@pytest.mark.parametrize("state", [S.ACCEPTED, S.PARTIALLY_FILLED, S.FILLED, S.CANCELED, S.EXPIRED])
def test_tracker_duplicate_id_submission_leaves_original_alone(state):
    tracker = OrderTracker()
    tracker.states[1] = state
    tracker.submitted(1)
    assert tracker.state(1) is state
    tracker.apply(rejected(1, RejectReason.DUPLICATE_ORDER_ID))
    assert tracker.state(1) is state


@pytest.mark.parametrize("state", [S.ACCEPTED, S.FILLED])
def test_tracker_invalid_resubmission_of_accepted_id_leaves_original_alone(state):
    """The book checks an order's fields before its id (see engine.book), so a reused id
    with a bad quantity is answered with INVALID_QUANTITY, not DUPLICATE_ORDER_ID."""
    tracker = OrderTracker()
    tracker.states[1] = state
    tracker.submitted(1)
    tracker.apply(rejected(1, RejectReason.INVALID_QUANTITY))
    assert tracker.state(1) is state


def test_tracker_rejected_id_may_be_submitted_again():
    tracker = tracked(1, rejected(1, RejectReason.INVALID_QUANTITY), 1)
    assert tracker.state(1) is S.PENDING
    tracker.apply(accepted(1))
    assert tracker.state(1) is S.ACCEPTED


def test_tracker_duplicate_rejection_of_pending_order_rejects_it():
    tracker = tracked(7, rejected(7, RejectReason.DUPLICATE_ORDER_ID))
    assert tracker.state(7) is S.REJECTED


# ---------------------------------------------------------------- advanced orders


def test_tracker_keeps_a_triggered_stop_accepted_until_it_trades():
    tracker = tracked(1, OrderAccepted(1, BUY, OrderType.STOP, GTC, 0, 5, 100), StopTriggered(1, 100))
    assert tracker.state(1) is S.ACCEPTED
    tracker.apply(OrderCanceled(1, 5, CancelReason.UNFILLED))
    assert tracker.state(1) is S.CANCELED


def test_tracker_decrement_keeps_the_state_while_some_is_left_and_cancels_at_zero():
    tracker = tracked(1, accepted(1, SELL, quantity=10), 2, accepted(2, quantity=3), 3, accepted(3, quantity=9))
    tracker.apply(OrderFilled(1, 2, 100, 2, 8, 1, BUY, 1))
    tracker.apply(OrderDecremented(1, 1, 7, 2))
    tracker.apply(OrderDecremented(2, 1, 0, 1))
    assert (tracker.state(1), tracker.state(2)) == (S.PARTIALLY_FILLED, S.CANCELED)
    tracker.apply(OrderDecremented(1, 7, 0, 3))
    tracker.apply(OrderDecremented(3, 7, 2, 1))
    assert (tracker.state(1), tracker.state(3)) == (S.CANCELED, S.ACCEPTED)


def test_tracker_self_trade_cancel_and_gtd_expiry_end_orders():
    tracker = tracked(1, accepted(1), 2, accepted(2, tif=TimeInForce.GTD))
    tracker.apply(OrderCanceled(1, 10, CancelReason.SELF_TRADE))
    tracker.apply(OrderExpired(2, 10))
    assert tracker.states == {1: S.CANCELED, 2: S.EXPIRED}


def test_tracker_ignores_events_that_concern_no_order():
    tracker = tracked(1, accepted(1))
    for event in (ClockAdvanced(5), PhaseChanged(Phase.CALL, Phase.CONTINUOUS), AuctionUncrossed(100, 0),
                  CommandRejected(RejectReason.CLOCK_BACKWARDS, RejectReason.CLOCK_BACKWARDS.text)):
        tracker.apply(event)
    assert tracker.states == {1: S.ACCEPTED}


@pytest.mark.parametrize("event", [StopTriggered(1, 100), OrderDecremented(1, 1, 0, 2)], ids=["trigger", "decrement"])
def test_tracker_advanced_event_after_filled_raises(event):
    tracker = tracked(1, accepted(1, quantity=1), 2, accepted(2, SELL, quantity=1))
    tracker.apply(OrderFilled(1, 2, 100, 1, 0, 0, SELL, 1))
    with pytest.raises(IllegalTransition):
        tracker.apply(event)


def test_advanced_book_events_drive_tracker_to_expected_states(book):
    """Stops, prevention, GTD and the uncross through the harness's tracker."""
    book.sell(1, 100, 3, owner=9)
    book.submit(2, BUY, OrderType.STOP, GTC, 0, 2, stop_price=100)
    book.buy(3, 100, 1)  # triggers 2, which takes the rest of 1
    book.sell(4, 101, 5, owner=9)
    book.buy(5, 101, 2, owner=9, stp=SelfTradePrevention.DECREMENT)
    book.set_clock(1)
    book.buy(6, 90, 1, TimeInForce.GTD, expire_at=2)
    book.set_clock(2)
    book.set_phase(1)
    book.buy(7, 101, 1)
    book.set_phase(0)
    assert book.tracker.states == {
        1: S.FILLED,
        2: S.FILLED,
        3: S.FILLED,
        4: S.PARTIALLY_FILLED,
        5: S.CANCELED,
        6: S.EXPIRED,
        7: S.FILLED,
    }


# ---------------------------------------------------------------- with a book


def test_book_events_drive_tracker_to_expected_states(book):
    book.sell(1, 100, 10)
    book.buy(2, 100, 4)
    book.buy(3, 99, 5, DAY)
    book.sell(4, 120, 2, TimeInForce.IOC)
    book.buy(5, 0, 5)
    book.sell(6, 105, 5)
    book.replace(6, 104, 5)
    book.buy(7, 100, 6)
    book.sell(8, 101, 3)
    book.cancel(8)
    book.expire_day_orders()
    book.buy(2, 100, 1)
    assert book.tracker.states == {
        1: S.FILLED,
        2: S.FILLED,
        3: S.EXPIRED,
        4: S.CANCELED,
        5: S.REJECTED,
        6: S.ACCEPTED,
        7: S.FILLED,
        8: S.CANCELED,
    }


def test_tracker_rejection_without_new_submission_raises():
    """A rejection for an accepted id is only legal as the answer to a resubmission."""
    tracker = tracked(1, accepted(1))
    with pytest.raises(IllegalTransition, match="reject is not allowed in state accepted"):
        tracker.apply(rejected(1, RejectReason.DUPLICATE_ORDER_ID))


def test_tracker_counts_each_resubmission_of_an_accepted_id():
    tracker = tracked(1, accepted(1), 1, 1)
    tracker.apply(rejected(1, RejectReason.DUPLICATE_ORDER_ID))
    tracker.apply(rejected(1, RejectReason.INVALID_PRICE))
    assert tracker.state(1) is S.ACCEPTED
    with pytest.raises(IllegalTransition):
        tracker.apply(rejected(1, RejectReason.DUPLICATE_ORDER_ID))
