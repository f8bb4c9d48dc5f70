"""The baseline book of `bench book` (`benchmarks.baseline_book`) is a real book: on every
version-1 stream it gives the reference book's fills, accepted and rejected counts and final
state hash, and its own invariants hold after every replay."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from benchmarks.baseline_book import NO_LEVEL, BaselineBook
from engine import workload
from engine.book import ReferenceBook
from engine.stream import (
    CANCEL,
    LIMIT_FOK,
    LIMIT_GTC,
    LIMIT_IOC,
    MARKET,
    REPLACE,
    STREAM_DTYPE,
    STREAM_V2_DTYPE,
    StreamError,
)
from engine.types import MAX_QUANTITY

BUY, SELL = 0, 1
INT64_MAX = 2**63 - 1


def stream_of(*rows) -> np.ndarray:
    """A v1 stream of (kind, side, price, qty, order_id, target_id) rows."""
    return np.array(list(rows), dtype=STREAM_DTYPE)


def resting(book: BaselineBook) -> int:
    """How many orders rest in ``book``."""
    return sum(level[0] for side in book._levels for level in side.values())


def check_invariants(book: BaselineBook) -> None:
    """The module docstring's invariants, walked over the whole book."""
    resting = {}
    for side in (BUY, SELL):
        keys, levels = book._keys[side], book._levels[side]
        assert list(keys) == sorted(levels), f"side {side}: sorted keys and levels disagree"
        assert book._best[side] == (keys[0] if keys else NO_LEVEL), f"side {side}: stale best key"
        for key, (live, queue) in levels.items():
            open_records = [record for record in queue if record[1]]
            assert live == len(open_records) > 0, f"level {key}: live {live}, {len(open_records)} open records"
            for record in open_records:
                assert record[2:] == [side, key], f"order {record[0]} misfiled"
                assert book._index[record[0]] is record, f"order {record[0]} not indexed"
                resting[record[0]] = record
    assert {i for i, record in book._index.items() if record is not None} == set(resting)
    if book._best[BUY] != NO_LEVEL and book._best[SELL] != NO_LEVEL:
        assert book._best[BUY] + book._best[SELL] > 0, "crossed book"


def assert_same_as_reference(stream: np.ndarray, chunks: int = 1) -> BaselineBook:
    """Replay ``stream`` through both books (the baseline in ``chunks`` calls) and compare."""
    reference = ReferenceBook()
    expected = reference.replay(stream)
    book = BaselineBook()
    results = [book.replay(part) for part in np.array_split(stream, chunks)]
    fills = np.concatenate([result.fills for result in results])
    assert fills.dtype == expected.fills.dtype
    assert fills.tolist() == expected.fills.tolist()
    assert (sum(r.accepted for r in results), sum(r.rejected for r in results)) == (expected.accepted,
                                                                                       expected.rejected)
    assert resting(book) == len(reference)
    assert book.state_hash() == reference.state_hash()
    check_invariants(book)
    return book


# ------------------------------------------------------------------ generated workloads


@pytest.mark.parametrize("seed", [42, 7])
def test_standard_workload_gives_the_reference_fills_counts_and_state(seed):
    stream = workload.standard(30_000, seed)
    book = assert_same_as_reference(stream)
    assert resting(book) > 1_000


def test_deep_workload_gives_the_reference_fills_counts_and_state():
    stream = workload.deep(20_000, seed=7, resting=6_000)
    assert resting(assert_same_as_reference(stream)) > 3_000


def test_replay_in_slices_keeps_the_state_between_calls():
    assert_same_as_reference(workload.standard(20_000, 3), chunks=7)


def mostly(common, rare, weight=12):
    """``common`` about ``weight`` times as often as ``rare``."""
    return st.sampled_from([True] * weight + [False]).flatmap(lambda pick: common if pick else rare)


STREAM_ROW = st.tuples(
    mostly(st.sampled_from([LIMIT_GTC] * 4 + [MARKET, CANCEL, CANCEL, REPLACE, REPLACE, LIMIT_IOC, LIMIT_FOK]),
           st.sampled_from([6, 255])),
    mostly(st.sampled_from([BUY, SELL]), st.sampled_from([2, 255])),
    mostly(st.integers(95, 105), st.sampled_from([0, -1, 1, INT64_MAX])),
    mostly(st.integers(1, 20), st.sampled_from([0, -1, MAX_QUANTITY, MAX_QUANTITY + 1])),
    mostly(st.just(0), st.integers(-2, 40), weight=6),
    st.integers(0, 30),
)
"""(kind, side, price, qty, id, back): the row's order id is its position + 1 when ``id`` is 0 (else ``id``:
reused, unknown, negative), its target ``back`` positions before it (0: itself, or nothing at the start)."""


@settings(max_examples=100, deadline=None)
@given(rows=st.integers(0, 300).flatmap(lambda n: st.lists(STREAM_ROW, min_size=n, max_size=n)),
       chunks=st.sampled_from([1, 1, 3]))
def test_random_v1_streams_give_the_reference_fills_counts_and_state(rows, chunks):
    """Every kind; invalid kinds, sides, prices and quantities; cancels and replaces of resting,
    gone and unknown orders; reused ids."""
    stream = np.array([(kind, side, price, qty, order_id or i + 1, i + 1 - back)
                       for i, (kind, side, price, qty, order_id, back) in enumerate(rows)], dtype=STREAM_DTYPE)
    assert_same_as_reference(stream, chunks)


@pytest.mark.parametrize("seed", range(4))
def test_uniform_random_v1_streams_give_the_reference_fills_counts_and_state(seed):
    """Uniform draws (hypothesis favours simple values): 100 streams of 200 messages on 11 prices,
    cancels and replaces of the last 30 ids, one message in 20 with an invalid field."""
    rng = np.random.default_rng(seed)
    for _ in range(100):
        stream = np.zeros(200, dtype=STREAM_DTYPE)
        stream["kind"] = rng.choice([LIMIT_GTC] * 4 + [MARKET, CANCEL, CANCEL, REPLACE, REPLACE, LIMIT_IOC,
                                                        LIMIT_FOK], 200)
        stream["side"] = rng.integers(0, 2, 200)
        stream["price"] = rng.integers(95, 106, 200)
        stream["qty"] = rng.integers(1, 21, 200)
        stream["order_id"] = np.arange(1, 201)
        stream["target_id"] = stream["order_id"] - rng.integers(0, 31, 200)
        invalid = rng.random(200) < 0.05
        field = rng.choice(["kind", "side", "price", "qty", "order_id"], 200)
        for name, bad in (("kind", 9), ("side", 2), ("price", 0), ("qty", MAX_QUANTITY + 1), ("order_id", 7)):
            stream[name][invalid & (field == name)] = bad
        assert_same_as_reference(stream)


# ------------------------------------------------------------------ the rules, by example


def test_fills_print_at_the_makers_price_best_price_then_oldest_first():
    result = BaselineBook().replay(stream_of(
        (LIMIT_GTC, SELL, 101, 5, 1, 0), (LIMIT_GTC, SELL, 100, 5, 2, 0), (LIMIT_GTC, SELL, 100, 5, 3, 0),
        (LIMIT_GTC, BUY, 101, 12, 4, 0), (MARKET, BUY, 0, 10, 5, 0),
    ))
    assert result.fills.tolist() == [(2, 4, 100, 5), (3, 4, 100, 5), (1, 4, 101, 2), (1, 5, 101, 3)]
    assert (result.accepted, result.rejected) == (5, 0)


def test_replace_reducing_at_the_same_price_keeps_priority():
    result = BaselineBook().replay(stream_of(
        (LIMIT_GTC, SELL, 100, 5, 1, 0), (LIMIT_GTC, SELL, 100, 5, 2, 0),
        (REPLACE, 0, 100, 3, 0, 1), (MARKET, BUY, 0, 4, 3, 0),
    ))
    assert result.fills.tolist() == [(1, 3, 100, 3), (2, 3, 100, 1)]


@pytest.mark.parametrize("price, qty", [(100, 6), (101, 2)], ids=["more quantity", "another price"])
def test_replace_raising_quantity_or_moving_loses_priority(price, qty):
    result = BaselineBook().replay(stream_of(
        (LIMIT_GTC, SELL, 100, 5, 1, 0), (LIMIT_GTC, SELL, 100, 5, 2, 0), (LIMIT_GTC, SELL, 101, 5, 3, 0),
        (REPLACE, 0, price, qty, 0, 1), (MARKET, BUY, 0, 9, 4, 0),
    ))
    behind = [(3, 4, 101, 4)] if price == 101 else [(1, 4, 100, 4)]
    assert result.fills.tolist() == [(2, 4, 100, 5)] + behind


def test_replace_through_the_opposite_best_trades_as_the_taker_first_then_rests():
    book = BaselineBook()
    result = book.replay(stream_of(
        (LIMIT_GTC, SELL, 102, 3, 1, 0), (LIMIT_GTC, BUY, 99, 5, 2, 0), (REPLACE, 0, 102, 5, 0, 2),
        (MARKET, SELL, 0, 1, 3, 0),
    ))
    assert result.fills.tolist() == [(1, 2, 102, 3), (2, 3, 102, 1)]
    assert resting(book) == 1


def test_fok_not_fillable_is_rejected_without_consuming_its_id():
    result = BaselineBook().replay(stream_of(
        (LIMIT_GTC, SELL, 100, 5, 1, 0), (LIMIT_GTC, SELL, 101, 5, 2, 0),
        (LIMIT_FOK, BUY, 100, 6, 3, 0), (LIMIT_FOK, BUY, 101, 11, 3, 0), (LIMIT_FOK, BUY, 101, 10, 3, 0),
    ))
    assert result.fills.tolist() == [(1, 3, 100, 5), (2, 3, 101, 5)]
    assert (result.accepted, result.rejected) == (3, 2)


def test_ioc_and_market_remainders_never_rest_and_their_ids_are_used():
    book = BaselineBook()
    result = book.replay(stream_of(
        (LIMIT_GTC, SELL, 100, 2, 1, 0), (LIMIT_IOC, BUY, 100, 5, 2, 0), (MARKET, SELL, 0, 5, 3, 0),
        (LIMIT_GTC, BUY, 90, 1, 2, 0), (LIMIT_GTC, BUY, 90, 1, 3, 0), (CANCEL, 0, 0, 0, 0, 2),
    ))
    assert result.fills.tolist() == [(1, 2, 100, 2)]
    assert (result.accepted, result.rejected, resting(book)) == (3, 3, 0)


def test_cancel_of_a_filled_canceled_or_unknown_order_is_rejected():
    result = BaselineBook().replay(stream_of(
        (LIMIT_GTC, SELL, 100, 2, 1, 0), (LIMIT_GTC, SELL, 100, 2, 2, 0), (MARKET, BUY, 0, 2, 3, 0),
        (CANCEL, 0, 0, 0, 0, 1), (CANCEL, 0, 0, 0, 0, 2), (CANCEL, 0, 0, 0, 0, 2), (CANCEL, 0, 0, 0, 0, 9),
        (REPLACE, 0, 100, 1, 0, 2),
    ))
    assert (result.accepted, result.rejected) == (4, 4)


def test_invalid_new_orders_are_rejected():
    result = BaselineBook().replay(stream_of(
        (LIMIT_GTC, 2, 100, 1, 1, 0), (LIMIT_GTC, BUY, 0, 1, 2, 0), (LIMIT_GTC, BUY, 100, 0, 3, 0),
        (LIMIT_IOC, BUY, -1, 1, 4, 0), (MARKET, BUY, 0, MAX_QUANTITY + 1, 5, 0), (7, BUY, 100, 1, 6, 0),
        (LIMIT_GTC, BUY, 100, MAX_QUANTITY, 1, 0),
    ))
    assert (result.accepted, result.rejected) == (1, 6)


def test_version_2_streams_and_non_streams_are_refused():
    with pytest.raises(StreamError, match="version-1 streams only"):
        BaselineBook().replay(np.zeros(2, dtype=STREAM_V2_DTYPE))
    with pytest.raises(StreamError):
        BaselineBook().replay([(0, 0, 100, 1, 1, 0)])
