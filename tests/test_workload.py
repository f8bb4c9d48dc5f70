"""The workload generators: determinism, stream layout, and the book they produce.

Book-level properties are measured honestly, by replaying the generated stream
through the reference book message by message and observing the events and the
book itself (not by trusting the generator's own bookkeeping).
"""

import collections

import numpy as np
import pytest

from engine import advanced_workload, workload
from engine.book import ReferenceBook
from engine.messages import (
    AuctionUncrossed,
    CancelRejected,
    OrderAccepted,
    OrderCanceled,
    OrderDecremented,
    OrderExpired,
    OrderFilled,
    OrderRejected,
    OrderReplaced,
    PhaseChanged,
    StopTriggered,
)
from engine.replay import REJECTIONS, apply_row_v2
from engine.stream import (
    CANCEL,
    CLOCK,
    LIMIT_GTC,
    MARKET,
    PHASE,
    STOP,
    STOP_LIMIT,
    STREAM_DTYPE,
    STREAM_V2_DTYPE,
    load_stream,
    save_array,
)
from engine.types import CancelReason, OrderType, RejectReason, SelfTradePrevention, Side, TimeInForce

STANDARD_MESSAGES = 200_000
SAMPLE_EVERY = 500
WARM_UP = 20_000
"""Messages before the standard book is expected to have reached its working size."""

DEEP_MESSAGES, DEEP_RESTING, DEEP_LEVELS = 60_000, 20_000, 5


class Trace:
    """What replaying a stream through a ReferenceBook showed, message by message."""

    def __init__(self):
        self.rejected = 0
        self.limits = 0
        self.limits_trading_on_arrival = 0
        self.resting = []
        self.levels = []
        self.book_sides = []
        self.book = ReferenceBook()


def trace(stream: np.ndarray, sample_from: int) -> Trace:
    """Replay ``stream``; from message ``sample_from`` on, sample the book every SAMPLE_EVERY."""
    result = Trace()
    book = result.book
    for index, (kind, side, price, qty, order_id, target_id) in enumerate(stream.tolist()):
        if kind == LIMIT_GTC:
            events = book.submit(order_id, side, OrderType.LIMIT, TimeInForce.GTC, price, qty)
            result.limits += 1
            result.limits_trading_on_arrival += any(type(e) is OrderFilled for e in events)
        elif kind == MARKET:
            events = book.submit(order_id, side, OrderType.MARKET, TimeInForce.IOC, 0, qty)
        else:
            assert kind == CANCEL
            events = book.cancel(target_id)
        result.rejected += type(events[0]) in (OrderRejected, CancelRejected)
        if index >= sample_from and index % SAMPLE_EVERY == 0:
            bids, asks = len(book.depth(Side.BUY, 10**6)), len(book.depth(Side.SELL, 10**6))
            result.resting.append(len(book))
            result.levels.append(bids + asks)
            result.book_sides.append((bids, asks))
    book.check_invariants()
    return result


@pytest.fixture(scope="module")
def standard_stream():
    return workload.standard(STANDARD_MESSAGES, 42)


@pytest.fixture(scope="module")
def standard_trace(standard_stream):
    return trace(standard_stream, WARM_UP)


@pytest.fixture(scope="module")
def deep_stream():
    return workload.deep(DEEP_MESSAGES, 5, resting=DEEP_RESTING, levels=DEEP_LEVELS)


@pytest.fixture(scope="module")
def deep_trace(deep_stream):
    return trace(deep_stream, DEEP_RESTING)


# ------------------------------------------------------------------ determinism


@pytest.mark.parametrize(
    "generate",
    [
        lambda seed: workload.standard(workload.CHUNK + 1_000, seed),
        lambda seed: workload.deep(12_000, seed, resting=4_000, levels=3),
    ],
    ids=["standard", "deep"],
)
def test_same_arguments_give_identical_bytes_and_files(generate, tmp_path):
    """The standard case spans two batches of random draws."""
    first, second = generate(7), generate(7)
    assert first.tobytes() == second.tobytes()
    save_array(tmp_path / "first.npy", first)
    save_array(tmp_path / "second.npy", second)
    assert (tmp_path / "first.npy").read_bytes() == (tmp_path / "second.npy").read_bytes()
    assert generate(8).tobytes() != first.tobytes()


# ------------------------------------------------------------------ standard layout


def test_standard_layout(standard_stream):
    stream = standard_stream
    assert stream.dtype == STREAM_DTYPE and stream.shape == (STANDARD_MESSAGES,)
    assert np.array_equal(stream["order_id"], np.arange(1, STANDARD_MESSAGES + 1))
    kinds = stream["kind"]
    assert set(np.unique(kinds).tolist()) == {LIMIT_GTC, MARKET, CANCEL}
    new = kinds != CANCEL
    assert stream["qty"][new].min() == 1 and stream["qty"][new].max() == 100
    assert np.all(stream["target_id"][new] == 0)
    cancels = stream[kinds == CANCEL]
    assert np.all(cancels["target_id"] > 0) and np.all(cancels["target_id"] < cancels["order_id"])
    assert not cancels["side"].any() and not cancels["price"].any() and not cancels["qty"].any()
    assert np.all(stream["price"][kinds == MARKET] == 0)
    assert set(np.unique(stream["side"]).tolist()) == {0, 1}


def test_standard_limit_prices_stay_around_the_centre(standard_stream):
    prices = standard_stream["price"][standard_stream["kind"] == LIMIT_GTC]
    assert prices.min() > 0
    assert abs(int(np.median(prices)) - workload.CENTRE) < 100
    assert prices.max() - prices.min() < 1_000


def test_standard_kind_shares(standard_stream):
    shares = np.bincount(standard_stream["kind"], minlength=3) / STANDARD_MESSAGES
    assert 0.57 <= shares[LIMIT_GTC] <= 0.64
    assert 0.045 <= shares[MARKET] <= 0.055
    assert 0.31 <= shares[CANCEL] <= 0.38


# ------------------------------------------------------------------ standard book


def test_standard_replay_rejects_nothing(standard_trace):
    """Every cancel targets an order that is resting at that moment."""
    assert standard_trace.rejected == 0


def test_about_a_fifth_of_limit_orders_trade_on_arrival(standard_trace):
    share = standard_trace.limits_trading_on_arrival / standard_trace.limits
    assert 0.15 <= share <= 0.25


def test_standard_book_holds_a_few_thousand_orders(standard_trace):
    assert 2_000 <= min(standard_trace.resting) and max(standard_trace.resting) <= 4_500
    assert 2_000 <= len(standard_trace.book) <= 4_500


def test_standard_book_spans_one_to_two_hundred_levels(standard_trace):
    assert 100 <= min(standard_trace.levels) and max(standard_trace.levels) <= 200
    assert min(min(sides) for sides in standard_trace.book_sides) >= 30


# ------------------------------------------------------------------ deep profile


def test_deep_layout(deep_stream):
    stream = deep_stream
    assert stream.dtype == STREAM_DTYPE and len(stream) == DEEP_MESSAGES
    assert np.array_equal(stream["order_id"], np.arange(1, DEEP_MESSAGES + 1))
    assert np.all(stream["kind"][:DEEP_RESTING] == LIMIT_GTC)
    limits = stream[stream["kind"] == LIMIT_GTC]
    distance = limits["price"] - workload.CENTRE
    assert np.all((limits["side"] == Side.BUY) == (distance < 0))
    assert set(np.abs(distance).tolist()) == set(range(1, DEEP_LEVELS + 1))
    markets = stream["qty"][stream["kind"] == MARKET]
    assert markets.min() >= 1 and markets.max() <= workload.DEEP_TAKE_MAX
    steady = np.bincount(stream["kind"][DEEP_RESTING:], minlength=3)
    assert steady[CANCEL] > 0.3 * (DEEP_MESSAGES - DEEP_RESTING)


def test_deep_replay_rejects_nothing(deep_trace):
    assert deep_trace.rejected == 0


def test_deep_book_stays_near_its_target_on_its_few_levels(deep_trace):
    assert all(abs(count - DEEP_RESTING) <= 0.02 * DEEP_RESTING for count in deep_trace.resting)
    assert set(deep_trace.book_sides) == {(DEEP_LEVELS, DEEP_LEVELS)}


# ------------------------------------------------------------------ arguments and describe


@pytest.mark.parametrize(
    "call",
    [
        lambda: workload.standard(0, 1),
        lambda: workload.standard(10, -1),
        lambda: workload.standard(1.5, 1),
        lambda: workload.deep(100, 1, resting=100),
        lambda: workload.deep(100, 1, resting=10, levels=0),
    ],
)
def test_bad_arguments_raise_value_error(call):
    with pytest.raises(ValueError):
        call()


def test_describe_counts_shares_and_ranges():
    stream = np.zeros(5, dtype=STREAM_DTYPE)
    stream["kind"] = [LIMIT_GTC, LIMIT_GTC, MARKET, CANCEL, 9]
    stream["price"] = [9_990, 10_010, 0, 0, 0]
    stream["qty"] = [5, 7, 80, 0, 1_000]
    stream["order_id"] = [1, 2, 3, 4, 5]
    summary = workload.describe(stream)
    assert summary["messages"] == 5
    assert summary["kinds"] == {
        "limit_gtc": 2,
        "market": 1,
        "cancel": 1,
        "replace": 0,
        "limit_ioc": 0,
        "limit_fok": 0,
        "unknown": 1,
    }
    assert summary["shares"]["limit_gtc"] == 0.4
    assert (summary["qty_min"], summary["qty_max"]) == (5, 80)
    assert (summary["price_min"], summary["price_max"]) == (9_990, 10_010)
    assert (summary["order_id_min"], summary["order_id_max"]) == (1, 5)


def test_describe_empty_stream():
    summary = workload.describe(np.zeros(0, dtype=STREAM_DTYPE))
    assert summary["messages"] == 0 and "unknown" not in summary["kinds"]
    assert summary["qty_min"] is None and summary["price_max"] is None


# ------------------------------------------------------------------ advanced profile (stream format v2)

ADVANCED_MESSAGES = 4 * advanced_workload.CYCLE + 2_000
"""Every plan of the cycle once: two calls, a halt then a call, a halt back to continuous."""


class AdvancedTrace:
    """What replaying an advanced stream through a ReferenceBook showed, message by message."""

    def __init__(self):
        self.book = ReferenceBook()
        self.accepted = self.rejected = 0
        self.reasons = collections.Counter()
        self.triggered_kinds = collections.Counter()
        self.prevented_modes = collections.Counter()
        self.phase_changes = collections.Counter()
        self.uncrosses = 0
        self.gtd_expired = 0
        self.refreshes = 0
        self.post_only_accepted = 0
        self.resting = []


def _prevention_mode(order_id, stp, canceled, decremented):
    """The mode that the events of a new order ``order_id`` show: its remainder canceled (1),
    another order canceled (2), both (3), itself decremented (4); None if none of these."""
    others = canceled - {order_id}
    shape = {
        1: order_id in canceled and not others,
        2: others and order_id not in canceled,
        3: order_id in canceled and others,
        4: order_id in decremented,
    }
    return stp if shape.get(stp) else None


def advanced_trace(stream) -> AdvancedTrace:
    """Replay ``stream`` message by message, recording what each advanced feature did."""
    result = AdvancedTrace()
    book = result.book
    kinds, displays, hidden = {}, {}, {}
    for index, row in enumerate(stream.tolist()):
        kind, flags, stp, order_id, display = row[0], row[3], row[4], row[7], row[10]
        events = apply_row_v2(book, row)
        if events is None or type(events[0]) in REJECTIONS:
            result.rejected += 1
            result.reasons[events[0].reason if events else "unknown kind"] += 1
            continue
        result.accepted += 1
        if type(events[0]) is OrderAccepted:
            kinds[order_id], displays[order_id] = kind, display
            result.post_only_accepted += flags == 1
        canceled, decremented, icebergs = set(), set(), collections.defaultdict(set)
        for event in events:
            match event:
                case StopTriggered(order_id=triggered):
                    result.triggered_kinds[kinds[triggered]] += 1
                case OrderDecremented(order_id=shrunk):
                    decremented.add(shrunk)
                    icebergs[shrunk].add("other")
                case OrderCanceled(order_id=gone, reason=CancelReason.SELF_TRADE):
                    canceled.add(gone)
                case PhaseChanged(phase=phase, previous=previous):
                    result.phase_changes[(int(previous), int(phase))] += 1
                case AuctionUncrossed():
                    result.uncrosses += 1
                case OrderExpired() if kind == CLOCK:
                    result.gtd_expired += 1
                case OrderFilled(maker_id=maker):
                    icebergs[maker].add("fill")
                case OrderAccepted(order_id=new) | OrderReplaced(order_id=new):
                    icebergs[new].add("other")
        if kind in (LIMIT_GTC, MARKET) and (canceled or decremented):
            result.prevented_modes[_prevention_mode(order_id, stp, canceled, decremented)] += 1
        for iceberg, what in icebergs.items():
            if not displays.get(iceberg):
                continue
            order = book.order(iceberg)
            if order is None:
                hidden.pop(iceberg, None)
                continue
            # only a refresh lowers the hidden part in a command where the iceberg only made fills
            result.refreshes += what == {"fill"} and kind != PHASE and order.hidden_quantity < hidden[iceberg]
            hidden[iceberg] = order.hidden_quantity
        if index % SAMPLE_EVERY == 0:
            result.resting.append(len(book))
    book.check_invariants()
    return result


@pytest.fixture(scope="module")
def advanced_stream():
    return advanced_workload.advanced(ADVANCED_MESSAGES, 11)


@pytest.fixture(scope="module")
def traced(advanced_stream):
    return advanced_trace(advanced_stream)


def test_advanced_same_arguments_give_identical_bytes(advanced_stream, tmp_path):
    again = advanced_workload.advanced(ADVANCED_MESSAGES, 11)
    assert again.tobytes() == advanced_stream.tobytes()
    save_array(tmp_path / "a.npy", again)
    assert load_stream(tmp_path / "a.npy").tobytes() == advanced_stream.tobytes()
    assert advanced_workload.advanced(5_000, 12).tobytes() != advanced_stream[:5_000].tobytes()


def test_advanced_layout(advanced_stream):
    assert advanced_stream.dtype == STREAM_V2_DTYPE
    assert len(advanced_stream) == ADVANCED_MESSAGES
    ids = advanced_stream["order_id"]
    repeated = ids[ids != np.arange(1, ADVANCED_MESSAGES + 1)]  # the duplicate-id template's rows
    assert 0 < len(repeated) < 100 and len(set(repeated.tolist())) == 1
    described = workload.describe(advanced_stream)
    assert set(described["kinds"]) == {"limit", "market", "cancel", "replace", "stop", "stop_limit", "phase",
                                       "clock", "unknown"}
    assert described["kinds"]["limit"] > ADVANCED_MESSAGES * 0.4
    assert described["kinds"]["unknown"] > 0  # kind 4, which version 2 does not have


def test_advanced_replay_counts_every_message(advanced_stream, traced):
    result = ReferenceBook().replay(advanced_stream)
    assert (result.accepted, result.rejected) == (traced.accepted, traced.rejected)
    assert result.accepted + result.rejected == ADVANCED_MESSAGES
    assert traced.rejected < ADVANCED_MESSAGES * 0.1


def test_advanced_triggers_stops_of_both_kinds(traced):
    assert traced.triggered_kinds[STOP] > 50 and traced.triggered_kinds[STOP_LIMIT] > 50


def test_advanced_refreshes_icebergs_and_takes_post_only_orders(traced):
    assert traced.refreshes > 20
    assert traced.post_only_accepted > 100
    assert traced.reasons[RejectReason.POST_ONLY_WOULD_TAKE] > 20


def test_advanced_exercises_every_self_trade_prevention_mode(traced):
    for mode in SelfTradePrevention:
        if mode is not SelfTradePrevention.NONE:
            assert traced.prevented_modes[int(mode)] > 5, mode


def test_advanced_expires_gtd_orders_on_its_clock(traced):
    assert traced.gtd_expired > 100


def test_advanced_runs_call_auctions_with_real_uncrosses_and_halts(traced):
    """Cycles: call, call, halt then call, halt, and the next cycle's call."""
    assert traced.phase_changes == {(0, 1): 3, (1, 0): 4, (0, 2): 2, (2, 1): 1, (2, 0): 1}
    assert traced.uncrosses == 4


def test_advanced_sends_invalid_messages_of_every_rule(traced):
    expected = {
        RejectReason.UNKNOWN_SIDE, RejectReason.UNKNOWN_TIME_IN_FORCE, RejectReason.UNKNOWN_FLAGS,
        RejectReason.UNKNOWN_STP_MODE, RejectReason.INVALID_QUANTITY, RejectReason.QUANTITY_TOO_LARGE,
        RejectReason.DUPLICATE_ORDER_ID, RejectReason.INVALID_PRICE, RejectReason.INVALID_STOP_PRICE,
        RejectReason.MARKET_ORDER_CANNOT_REST, RejectReason.INVALID_DISPLAY_QUANTITY,
        RejectReason.POST_ONLY_NOT_ALLOWED, RejectReason.EXPIRE_TIME_PASSED, RejectReason.NOT_ALLOWED_IN_PHASE,
        RejectReason.POST_ONLY_WOULD_TAKE, RejectReason.FOK_NOT_FILLABLE, RejectReason.UNKNOWN_ORDER,
        RejectReason.NOT_REPLACEABLE, RejectReason.CLOCK_BACKWARDS, RejectReason.UNKNOWN_PHASE, "unknown kind",
    }  # fmt: skip
    assert set(traced.reasons) == expected


def test_advanced_book_keeps_a_working_size(traced):
    working = traced.resting[len(traced.resting) // 4:]
    assert 300 < min(working) and max(working) < 6_000
