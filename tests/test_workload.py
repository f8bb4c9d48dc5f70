"""The workload generators: determinism, stream layout, and the book they produce.

Book-level properties are measured honestly, by replaying the generated stream
through the reference book message by message and observing the events and the
book itself (not by trusting the generator's own bookkeeping).
"""

import numpy as np
import pytest

from engine import workload
from engine.book import ReferenceBook
from engine.messages import CancelRejected, OrderFilled, OrderRejected
from engine.stream import CANCEL, LIMIT_GTC, MARKET, STREAM_DTYPE, save_array
from engine.types import OrderType, Side, TimeInForce

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
