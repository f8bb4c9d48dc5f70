"""The native book's own side of the advanced orders (stream format v2): its batch replay against the
reference book's, the held stops' index (cancel without index work, release in acceptance order), the
capacity it reserves before a command, and snapshots taken mid-stream with every kind of state.

The scenario tests (tests/test_book_*.py) and the differential tests run both books through the same
commands; these look at what only the native book has."""

import numpy as np
import pytest

from engine.advanced_workload import advanced
from engine.book import ReferenceBook
from engine.messages import (
    AuctionUncrossed,
    CancelOrder,
    OrderAccepted,
    OrderCanceled,
    OrderFilled,
    ReplaceOrder,
    SetClock,
    SetPhase,
    StopTriggered,
    SubmitOrder,
)
from engine.stream import CANCEL, CLOCK, LIMIT, MARKET, PHASE, REPLACE, STOP, STOP_LIMIT, STREAM_V2_DTYPE
from engine.types import CancelReason, OrderType, Phase, SelfTradePrevention, Side, TimeInForce
from native.book import NativeBook

BUY, SELL = Side.BUY, Side.SELL
GTC, IOC, GTD = TimeInForce.GTC, TimeInForce.IOC, TimeInForce.GTD
CONSTANTS_PXD = "native/constants.pxd"


def same_replay(stream):
    """Replay ``stream`` through both books; assert identical fills, counts and final state."""
    reference, native = ReferenceBook(), NativeBook()
    expected, actual = reference.replay(stream), native.replay(stream)
    assert actual.fills.tolist() == expected.fills.tolist()
    assert (actual.accepted, actual.rejected) == (expected.accepted, expected.rejected)
    assert actual.accepted + actual.rejected == len(stream)
    native.check_invariants()
    assert native.snapshot() == reference.snapshot()
    assert native.state_hash() == reference.state_hash()
    assert (len(native), native.best_bid(), native.best_ask()) == (len(reference), reference.best_bid(),
                                                                   reference.best_ask())
    return actual


# ---------------------------------------------------------------- the v2 batch replay

@pytest.mark.parametrize(("messages", "seed"), [(20_000, 1), (20_000, 2), (50_000, 42)])
def test_batch_replay_of_advanced_workloads_equals_the_reference(messages, seed):
    stream = advanced(messages, seed)
    result = same_replay(stream)
    assert len(result.fills) > messages // 20 and result.rejected > 0


def random_v2_stream(rng, count):
    """A small random v2 stream over a narrow price band: every kind, with out-of-range fields
    mixed in (unknown kinds, tifs, flags, stp modes; zero and negative quantities and prices)."""
    stream = np.zeros(count, dtype=STREAM_V2_DTYPE)
    kinds = np.array([LIMIT] * 8 + [MARKET, STOP, STOP_LIMIT, CANCEL, CANCEL, REPLACE, REPLACE, PHASE, CLOCK, 4, 11])
    stream["kind"] = rng.choice(kinds, count)
    stream["side"] = rng.choice([0, 1, 0, 1, 0, 1, 0, 1, 2], count)
    stream["tif"] = rng.choice([0, 0, 0, 3, 3, 1, 2, 4], count)
    stream["flags"] = rng.choice([0] * 8 + [1, 2], count)
    stream["stp"] = rng.choice([0, 0, 1, 2, 3, 4, 5], count)
    stream["price"] = rng.integers(96, 105, count)
    stream["qty"] = rng.integers(1, 21, count)
    stream["order_id"] = np.arange(1, count + 1)
    stream["target_id"] = rng.integers(1, count + 1, count)
    stream["stop_price"] = rng.integers(96, 105, count)
    stream["owner"] = rng.choice([0, 0, 1, 2], count)
    stream["display_qty"] = np.where(rng.random(count) < 0.3, rng.integers(0, 6, count), 0)
    phase, clock = stream["kind"] == PHASE, stream["kind"] == CLOCK
    stream["qty"][phase] = rng.choice([0, 0, 1, 1, 2, 3], phase.sum())
    stream["price"][clock] = np.cumsum(rng.integers(-1, 4, count))[clock]
    stream["expire_at"] = np.cumsum(rng.integers(0, 3, count)) + rng.integers(-1, 8, count)
    stream["qty"][rng.random(count) < 0.01] = 0
    stream["price"][rng.random(count) < 0.01] = -1
    return stream


@pytest.mark.parametrize("seed", range(6))
def test_batch_replay_of_random_v2_streams_equals_the_reference(seed):
    same_replay(random_v2_stream(np.random.default_rng(seed), 3_000))


def test_batch_replay_continues_across_calls_and_stream_versions():
    """A v2 replay, a v1 replay and per-message commands on one book, as one session."""
    stream = advanced(6_000, 5)
    reference, native = ReferenceBook(), NativeBook()
    for part in (stream[:2_500], stream[2_500:]):
        assert native.replay(part).fills.tolist() == reference.replay(part).fills.tolist()
    command = SubmitOrder(10**9, BUY, OrderType.MARKET, IOC, 0, 500, owner=1, stp=SelfTradePrevention.DECREMENT)
    assert native.apply(command) == reference.apply(command)
    v1 = np.zeros(3, dtype=[("kind", "u1"), ("side", "u1"), ("price", "<i8"), ("qty", "<i8"), ("order_id", "<i8"),
                            ("target_id", "<i8")])
    v1[:] = [(0, 1, 10_100, 5, 10**9 + 1, 0), (1, 0, 0, 7, 10**9 + 2, 0), (2, 0, 0, 0, 0, 10**9 + 1)]
    assert native.replay(v1).fills.tolist() == reference.replay(v1).fills.tolist()
    assert native.snapshot() == reference.snapshot()


# ---------------------------------------------------------------- held stops

def hold_stops(book, count, stop_price, first_id=1):
    for order_id in range(first_id, first_id + count):
        events = book.submit(order_id, BUY, OrderType.STOP, GTC, 0, 1, stop_price=stop_price)
        assert type(events[0]) is OrderAccepted


def test_canceling_a_held_stop_not_first_at_its_price_does_no_index_work():
    """10,000 held stops at one price: canceling one in the middle unlinks it from its price's FIFO
    and the acceptance list in O(1); the index over stop prices is not touched (count-based)."""
    book = NativeBook()
    hold_stops(book, 10_000, 105)
    assert book.stop_index_repairs == 1          # the one stop price was inserted once
    assert book.cancel(5_000) == [OrderCanceled(5_000, 1, CancelReason.REQUESTED)]
    assert book.stop_index_repairs == 1
    book.check_invariants()
    assert book.order(5_000) is None and book.order(4_999) is not None and book.order(5_001) is not None
    assert book.cancel(1) == [OrderCanceled(1, 1, CancelReason.REQUESTED)]
    assert book.stop_index_repairs == 2          # the first at its price: its path is repaired, once
    book.check_invariants()


def test_held_stops_at_one_price_release_in_acceptance_order_around_a_cancel():
    book, reference = NativeBook(), ReferenceBook()
    for each in (book, reference):
        hold_stops(each, 2_000, 105)
        each.cancel(1_000)
        each.submit(90_000, SELL, OrderType.LIMIT, GTC, 105, 5_000)
    events = book.submit(90_001, BUY, OrderType.LIMIT, IOC, 105, 1)
    assert events == reference.submit(90_001, BUY, OrderType.LIMIT, IOC, 105, 1)
    released = [event.order_id for event in events if type(event) is StopTriggered]
    assert released == [i for i in range(1, 2_001) if i != 1_000]
    assert len(book) == 1 and book.order(90_000).quantity == 5_000 - 1 - 1_999
    book.check_invariants()


def test_the_earliest_qualifying_stop_is_found_across_many_prices_and_both_sides():
    """Stops on 300 prices a side, accepted in an order unrelated to their prices; each trade
    releases exactly the reference book's stops, in its order."""
    rng = np.random.default_rng(3)
    book, reference = NativeBook(), ReferenceBook()
    prices = rng.permutation(np.arange(700, 1_300))
    for order_id, price in enumerate(prices.tolist(), 1):
        side = BUY if price > 1_000 else SELL
        for each in (book, reference):
            each.submit(order_id, side, OrderType.STOP, GTC, 0, 1, stop_price=price)
    book.check_invariants()
    next_id = 10_000
    for price in (1_000, 1_050, 990, 1_200, 800, 1_000):
        for side in (SELL, BUY):
            command = SubmitOrder(next_id, side, OrderType.LIMIT, GTC, price, 400)
            assert book.apply(command) == reference.apply(command)
            next_id += 1
        book.check_invariants()
    assert book.snapshot() == reference.snapshot()


# ---------------------------------------------------------------- capacity reserved before a command

def test_a_taker_through_a_deep_iceberg_gets_every_slice_fill_in_one_command():
    """100,000 one-lot slices: the fills a command can make are counted before it runs, from the
    icebergs' slices yet to show, so the buffer is large enough without growing mid-match."""
    for book in (NativeBook(), ReferenceBook()):
        book.submit(1, SELL, OrderType.LIMIT, GTC, 100, 100_000, display_quantity=1)
        book.submit(2, SELL, OrderType.LIMIT, GTC, 100, 3)
        events = book.submit(3, BUY, OrderType.MARKET, IOC, 0, 100_003)
        fills = [event for event in events if type(event) is OrderFilled]
        assert len(fills) == 100_001
        assert fills[0] == OrderFilled(1, 3, 100, 1, 99_999, 100_002, BUY, 1)
        assert fills[1] == OrderFilled(2, 3, 100, 3, 0, 99_999, BUY, 2)
        assert len(book) == 0
    stream = np.zeros(3, dtype=STREAM_V2_DTYPE)
    stream[["kind", "side", "price", "qty", "order_id", "display_qty"]][:2] = [(LIMIT, 1, 100, 50_000, 1, 1),
                                                                              (LIMIT, 1, 101, 5, 2, 0)]
    stream[["kind", "side", "tif", "qty", "order_id"]][2] = (MARKET, 0, 1, 60_000, 3)
    assert len(same_replay(stream).fills) == 50_001


def test_a_huge_iceberg_resting_does_not_make_small_commands_reserve_for_its_slices():
    book = NativeBook()
    book.submit(1, SELL, OrderType.LIMIT, GTC, 100, 10**9, display_quantity=1)
    before = book.memory_bytes()
    for order_id in range(2, 200):
        book.submit(order_id, BUY, OrderType.LIMIT, IOC, 100, 1)
    assert book.memory_bytes() < before + 10**6
    assert book.order(1).quantity == 10**9 - 198


# ---------------------------------------------------------------- snapshots mid-stream

def mixed_state_commands():
    """Commands leaving held stops (both kinds, GTD among them), icebergs part-traded, GTD orders,
    owners, post-only orders, then a call phase with a crossed book and waiting market orders."""
    commands = [SetClock(10)]
    for i in range(10):
        commands.append(SubmitOrder(100 + i, SELL, OrderType.LIMIT, GTC if i % 3 else GTD, 101 + i % 4, 20,
                                    display_quantity=5 if i % 2 else 0, owner=i % 3, stp=i % 5, expire_at=40 + i))
        commands.append(SubmitOrder(200 + i, BUY, OrderType.LIMIT, GTC, 99 - i % 3, 15, flags=1 if i % 4 == 0 else 0,
                                    owner=(i + 1) % 3, stp=(i + 2) % 5))
    commands += [
        SubmitOrder(300, BUY, OrderType.MARKET, IOC, 0, 12, owner=1, stp=SelfTradePrevention.DECREMENT),
        SubmitOrder(301, BUY, OrderType.STOP, GTC, 0, 7, stop_price=104),
        SubmitOrder(302, SELL, OrderType.STOP_LIMIT, GTD, 95, 9, stop_price=97, expire_at=60),
        SubmitOrder(303, BUY, OrderType.STOP_LIMIT, GTC, 106, 4, stop_price=108, owner=2,
                    stp=SelfTradePrevention.CANCEL_MAKER),
        SetPhase(Phase.CALL),
        SubmitOrder(400, BUY, OrderType.LIMIT, GTC, 103, 30, display_quantity=4),
        SubmitOrder(401, SELL, OrderType.MARKET, IOC, 0, 8),
        SubmitOrder(402, BUY, OrderType.MARKET, TimeInForce.FOK, 0, 11),
        ReplaceOrder(201, 104, 10),
        SetClock(20),
    ]
    return commands


def follow_up_commands():
    return [
        SubmitOrder(500, SELL, OrderType.LIMIT, GTC, 102, 6),
        CancelOrder(402),
        SetPhase(Phase.HALTED),
        ReplaceOrder(400, 103, 20),
        SetPhase(Phase.CONTINUOUS),
        SubmitOrder(501, BUY, OrderType.MARKET, IOC, 0, 40, owner=1, stp=SelfTradePrevention.CANCEL_BOTH),
        SubmitOrder(502, SELL, OrderType.MARKET, IOC, 0, 100),
        SubmitOrder(503, BUY, OrderType.MARKET, IOC, 0, 70),
        SetClock(45),
        ReplaceOrder(108, 110, 30),
        SetClock(100),
    ]


def test_a_snapshot_mid_stream_restores_into_either_book_and_both_continue_alike():
    native, reference = NativeBook(), ReferenceBook()
    for command in mixed_state_commands():
        assert native.apply(command) == reference.apply(command), command
    snapshot = native.snapshot()
    assert snapshot == reference.snapshot()
    assert len(snapshot.held_array()) == 3 and len(snapshot.waiting_array()) == 2
    assert snapshot.phase == Phase.CALL and snapshot.clock == 20 and snapshot.last_price > 0
    assert (snapshot.detail_array()["visible"] < snapshot.order_array()["quantity"][
        np.isin(snapshot.order_array()["order_id"], snapshot.detail_array()["order_id"])]).any()
    copies = [NativeBook.restore(snapshot), ReferenceBook.restore(snapshot)]
    for copy in copies:
        copy.check_invariants()
        assert copy.snapshot() == snapshot and copy.state_hash() == native.state_hash()
    books = [native, reference, *copies]
    saw_uncross = saw_trigger = False
    for command in follow_up_commands():
        results = [book.apply(command) for book in books]
        assert all(result == results[0] for result in results), command
        assert all(book.level_changes() == books[1].level_changes() for book in books), command
        saw_uncross |= any(type(event) is AuctionUncrossed for event in results[0])
        saw_trigger |= any(type(event) is StopTriggered for event in results[0])
    assert saw_uncross and saw_trigger
    for book in books:
        book.check_invariants()
        assert book.snapshot() == reference.snapshot()


def test_a_capture_taken_before_more_commands_finishes_into_the_state_it_copied():
    book = NativeBook()
    for command in mixed_state_commands():
        book.apply(command)
    capture, expected = book.capture(), book.snapshot()
    for command in follow_up_commands():
        book.apply(command)
    assert capture.finish() == expected != book.snapshot()


# ---------------------------------------------------------------- generated constants

def test_the_generated_constants_hold_the_v2_enums_and_stream_kinds():
    from pathlib import Path

    from engine import stream
    from engine.types import OrderFlags

    text = (Path(__file__).resolve().parent.parent / CONSTANTS_PXD).read_text()
    for enum in (OrderFlags, SelfTradePrevention, Phase):
        assert f"# engine.types.{enum.__name__}" in text
        for member in enum:
            assert f"    {member.name} = {member.value}\n" in text
    for name in ("LIMIT", "STOP", "STOP_LIMIT", "PHASE", "CLOCK", "TIF_V2_GTD"):
        assert f"    STREAM_{name} = {getattr(stream, name)}\n" in text
