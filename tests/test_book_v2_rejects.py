"""Validation of the advanced orders: every rule of the stream format v2, the order the rules are
applied in, and the rejects of replace, clock and phase commands."""

import pytest

from engine.messages import CommandRejected, OrderAccepted, OrderRejected, ReplaceRejected
from engine.types import OrderType, RejectReason, SelfTradePrevention, Side, TimeInForce

BUY, SELL = Side.BUY, Side.SELL
LIMIT, MARKET, STOP, STOP_LIMIT = OrderType.LIMIT, OrderType.MARKET, OrderType.STOP, OrderType.STOP_LIMIT
GTC, IOC, FOK, DAY, GTD = TimeInForce.GTC, TimeInForce.IOC, TimeInForce.FOK, TimeInForce.DAY, TimeInForce.GTD
R = RejectReason
BIG = 2**63
MAX = 1_000_000_000


def seeded(book):
    """Bids 1 (100 x 10), 2 (99 x 10); asks 3 (101 x 10), 4 (102 x 10); the clock at 10."""
    book.buy(1, 100, 10)
    book.buy(2, 99, 10)
    book.sell(3, 101, 10)
    book.sell(4, 102, 10)
    book.set_clock(10)
    return book


def order(order_type=LIMIT, tif=GTC, price=100, quantity=5, order_id=20, side=BUY, **fields):
    """Arguments of `submit`: (positional, keyword)."""
    return (order_id, side, order_type, tif, price, quantity), fields


# rule -> (order, reason), on the seeded book in the continuous phase
SUBMIT_REJECTS = {
    "1 type": (order(order_type=4), R.UNKNOWN_ORDER_TYPE),
    "1 side": (order(side=2), R.UNKNOWN_SIDE),
    "1 tif limit": (order(tif=5), R.UNKNOWN_TIME_IN_FORCE),
    "1 tif market": (order(MARKET, 5, 0), R.UNKNOWN_TIME_IN_FORCE),
    "1 tif stop-limit": (order(STOP_LIMIT, 7, stop_price=90), R.UNKNOWN_TIME_IN_FORCE),
    "1 flags 2": (order(flags=2), R.UNKNOWN_FLAGS),
    "1 flags 3": (order(flags=3), R.UNKNOWN_FLAGS),
    "1 flags -1": (order(flags=-1), R.UNKNOWN_FLAGS),
    "1 stp 5": (order(stp=5), R.UNKNOWN_STP_MODE),
    "1 stp -1": (order(stp=-1), R.UNKNOWN_STP_MODE),
    "2 quantity": (order(STOP, quantity=0, stop_price=90), R.INVALID_QUANTITY),
    "2 too large": (order(STOP_LIMIT, quantity=MAX + 1, stop_price=90), R.QUANTITY_TOO_LARGE),
    "2 duplicate": (order(STOP, order_id=3, stop_price=90), R.DUPLICATE_ORDER_ID),
    "3 stop-limit price": (order(STOP_LIMIT, price=0, stop_price=90), R.INVALID_PRICE),
    "3 stop price": (order(STOP, price=0, stop_price=0), R.INVALID_STOP_PRICE),
    "3 stop-limit stop price": (order(STOP_LIMIT, stop_price=-1), R.INVALID_STOP_PRICE),
    "4 market gtd": (order(MARKET, GTD, 0, expire_at=50), R.MARKET_ORDER_CANNOT_REST),
    "4 market day": (order(MARKET, DAY, 0), R.MARKET_ORDER_CANNOT_REST),
    "5 display negative": (order(display_quantity=-1), R.INVALID_DISPLAY_QUANTITY),
    "5 display above quantity": (order(display_quantity=6), R.INVALID_DISPLAY_QUANTITY),
    "5 display on a market order": (order(MARKET, IOC, 0, display_quantity=1), R.INVALID_DISPLAY_QUANTITY),
    "5 display on a stop": (order(STOP, stop_price=90, display_quantity=1), R.INVALID_DISPLAY_QUANTITY),
    "5 display on a stop-limit": (order(STOP_LIMIT, stop_price=90, display_quantity=1), R.INVALID_DISPLAY_QUANTITY),
    "5 display negative on a stop": (order(STOP, stop_price=90, display_quantity=-1), R.INVALID_DISPLAY_QUANTITY),
    "5 display with ioc": (order(tif=IOC, display_quantity=1), R.INVALID_DISPLAY_QUANTITY),
    "5 display with fok": (order(tif=FOK, display_quantity=5), R.INVALID_DISPLAY_QUANTITY),
    "6 post-only market": (order(MARKET, IOC, 0, flags=1), R.POST_ONLY_NOT_ALLOWED),
    "6 post-only stop": (order(STOP, stop_price=90, flags=1), R.POST_ONLY_NOT_ALLOWED),
    "6 post-only stop-limit": (order(STOP_LIMIT, stop_price=90, flags=1), R.POST_ONLY_NOT_ALLOWED),
    "6 post-only ioc": (order(tif=IOC, flags=1), R.POST_ONLY_NOT_ALLOWED),
    "6 post-only fok": (order(tif=FOK, flags=1), R.POST_ONLY_NOT_ALLOWED),
    "7 gtd at the clock": (order(tif=GTD, expire_at=10), R.EXPIRE_TIME_PASSED),
    "7 gtd stop-limit before the clock": (order(STOP_LIMIT, GTD, stop_price=90, expire_at=9), R.EXPIRE_TIME_PASSED),
    "9 post-only buy at the best ask": (order(price=101, flags=1), R.POST_ONLY_WOULD_TAKE),
    "9 post-only sell through the best bid": (order(side=SELL, price=95, flags=1), R.POST_ONLY_WOULD_TAKE),
    "10 fok limit": (order(tif=FOK, price=101, quantity=11), R.FOK_NOT_FILLABLE),
    "10 fok market with prevention": (order(MARKET, FOK, 0, quantity=21, owner=5, stp=SelfTradePrevention.CANCEL_MAKER),
                                      R.FOK_NOT_FILLABLE),
    "range stop price": (order(stop_price=BIG), R.VALUE_OUT_OF_RANGE),
    "range display": (order(display_quantity=-BIG - 1), R.VALUE_OUT_OF_RANGE),
    "range flags": (order(flags=BIG), R.VALUE_OUT_OF_RANGE),
    "range owner": (order(owner=BIG), R.VALUE_OUT_OF_RANGE),
    "range stp": (order(stp=BIG), R.VALUE_OUT_OF_RANGE),
    "range expire_at (ignored, still checked)": (order(expire_at=BIG), R.VALUE_OUT_OF_RANGE),
}

# (phase, order) -> reason
PHASE_REJECTS = {
    "halted limit": (2, order(), R.NOT_ALLOWED_IN_PHASE),
    "halted market": (2, order(MARKET, IOC, 0), R.NOT_ALLOWED_IN_PHASE),
    "halted stop": (2, order(STOP, stop_price=90), R.NOT_ALLOWED_IN_PHASE),
    "halted post-only": (2, order(price=150, flags=1), R.NOT_ALLOWED_IN_PHASE),
    "call ioc limit": (1, order(tif=IOC), R.NOT_ALLOWED_IN_PHASE),
    "call fok limit": (1, order(tif=FOK), R.NOT_ALLOWED_IN_PHASE),
    "call stop": (1, order(STOP, stop_price=90), R.NOT_ALLOWED_IN_PHASE),
    "call stop-limit": (1, order(STOP_LIMIT, stop_price=90), R.NOT_ALLOWED_IN_PHASE),
}

# two failing rules: the first in the documented order wins
RULE_ORDER = {
    "range before type": (order(order_type=9, owner=BIG), R.VALUE_OUT_OF_RANGE),
    "type before side": (order(order_type=9, side=9), R.UNKNOWN_ORDER_TYPE),
    "tif before flags": (order(tif=9, flags=2), R.UNKNOWN_TIME_IN_FORCE),
    "flags before stp": (order(flags=2, stp=9), R.UNKNOWN_FLAGS),
    "stp before quantity": (order(stp=9, quantity=0), R.UNKNOWN_STP_MODE),
    "duplicate before price": (order(order_id=1, price=0), R.DUPLICATE_ORDER_ID),
    "duplicate before stop price": (order(STOP, order_id=1, stop_price=0), R.DUPLICATE_ORDER_ID),
    "price before stop price": (order(STOP_LIMIT, price=0, stop_price=0), R.INVALID_PRICE),
    "market rest before display": (order(MARKET, GTC, 0, display_quantity=1), R.MARKET_ORDER_CANNOT_REST),
    "display before post-only": (order(MARKET, IOC, 0, display_quantity=1, flags=1), R.INVALID_DISPLAY_QUANTITY),
    "post-only before expiry": (order(STOP_LIMIT, GTD, stop_price=90, flags=1, expire_at=1), R.POST_ONLY_NOT_ALLOWED),
    "display on a stop before its ignored tif": (order(STOP, 9, stop_price=90, display_quantity=1),
                                                 R.INVALID_DISPLAY_QUANTITY),
}
PHASE_RULE_ORDER = {
    "duplicate before phase": (2, order(order_id=1), R.DUPLICATE_ORDER_ID),
    "expiry before phase": (2, order(tif=GTD, expire_at=3), R.EXPIRE_TIME_PASSED),
    "display before phase": (1, order(tif=IOC, display_quantity=2), R.INVALID_DISPLAY_QUANTITY),
}

V2_COVERED = {reason for _, reason in SUBMIT_REJECTS.values()} | {R.NOT_ALLOWED_IN_PHASE, R.NOT_REPLACEABLE,
                                                                   R.CLOCK_BACKWARDS, R.UNKNOWN_PHASE}
"""The reasons these tests cover (test_book_rejects checks that every book reason is covered)."""


def submit_untouched(book, arguments):
    """Submit; assert the book did not change; return the events."""
    positional, fields = arguments
    before = (book.state_hash(), book.snapshot(), book.depth(), len(book))
    events = book.submit(*positional, **fields)
    assert (book.state_hash(), book.snapshot(), book.depth(), len(book)) == before
    return events


@pytest.mark.parametrize(("arguments", "reason"), [*SUBMIT_REJECTS.values(), *RULE_ORDER.values()],
                         ids=[*SUBMIT_REJECTS, *RULE_ORDER])
def test_a_failing_rule_rejects_with_its_reason_and_leaves_the_book_untouched(book, arguments, reason):
    seeded(book)
    assert submit_untouched(book, arguments) == [OrderRejected(arguments[0][0], reason, reason.text)]


@pytest.mark.parametrize(("phase", "arguments", "reason"), [*PHASE_REJECTS.values(), *PHASE_RULE_ORDER.values()],
                         ids=[*PHASE_REJECTS, *PHASE_RULE_ORDER])
def test_phase_rules_reject_with_their_reason(book, phase, arguments, reason):
    seeded(book)
    book.set_phase(phase)
    assert submit_untouched(book, arguments) == [OrderRejected(arguments[0][0], reason, reason.text)]


def test_a_rejected_id_is_not_consumed(book):
    seeded(book)
    submit_untouched(book, order(flags=2))
    assert book.buy(20, 98, 1)[0] == OrderAccepted(20, BUY, LIMIT, GTC, 98, 1)


def test_fields_a_kind_does_not_read_are_not_validated(book):
    """A market order's price, a stop's price, time in force and expiry, a limit's stop price."""
    assert book.submit(1, BUY, MARKET, IOC, -7, 1, stop_price=-3)[0] == OrderAccepted(1, BUY, MARKET, IOC, 0, 1)
    assert book.submit(2, BUY, STOP, 99, -7, 1, stop_price=5, expire_at=-9)[0] == OrderAccepted(
        2, BUY, STOP, GTC, 0, 1, 5
    )
    assert book.submit(3, BUY, LIMIT, GTC, 50, 1, stop_price=-3)[0] == OrderAccepted(3, BUY, LIMIT, GTC, 50, 1)


# ---------------------------------------------------------------- replace, clock, phase

REPLACE_REJECTS = {
    "held stop": ((30, 100, 5), R.NOT_REPLACEABLE),
    "waiting market order": ((31, 100, 5), R.NOT_REPLACEABLE),
    "quantity before not replaceable": ((30, 100, 0), R.INVALID_QUANTITY),
    "price before not replaceable": ((31, 0, 5), R.INVALID_PRICE),
    "unknown": ((99, 100, 5), R.UNKNOWN_ORDER),
}


@pytest.mark.parametrize(("arguments", "reason"), REPLACE_REJECTS.values(), ids=REPLACE_REJECTS)
def test_replace_rejects(book, arguments, reason):
    seeded(book)
    book.submit(30, BUY, STOP, GTC, 0, 5, stop_price=200)
    book.set_phase(1)
    book.submit(31, SELL, MARKET, IOC, 0, 5)
    before = book.snapshot()
    assert book.replace(*arguments) == [ReplaceRejected(arguments[0], reason, reason.text)]
    assert book.snapshot() == before


def test_replace_in_halt_other_than_a_reduction_in_place_is_refused(book):
    seeded(book)
    book.set_phase(2)
    reason = R.NOT_ALLOWED_IN_PHASE
    assert book.replace(1, 100, 11) == [ReplaceRejected(1, reason, reason.text)]
    assert book.replace(1, 98, 5) == [ReplaceRejected(1, reason, reason.text)]


def test_clock_and_phase_rejects(book):
    seeded(book)
    before = book.snapshot()
    assert book.set_clock(9) == [CommandRejected(R.CLOCK_BACKWARDS, R.CLOCK_BACKWARDS.text)]
    assert book.set_clock(-BIG - 1) == [CommandRejected(R.VALUE_OUT_OF_RANGE, R.VALUE_OUT_OF_RANGE.text)]
    assert book.set_phase(3) == [CommandRejected(R.UNKNOWN_PHASE, R.UNKNOWN_PHASE.text)]
    assert book.set_phase(BIG) == [CommandRejected(R.VALUE_OUT_OF_RANGE, R.VALUE_OUT_OF_RANGE.text)]
    assert book.snapshot() == before
