"""Queries, snapshots, the state hash and `apply`."""

import msgspec
import numpy as np
import pytest
from direct import call_directly

from engine.lifecycle import OrderState, OrderTracker
from engine.messages import (
    CancelOrder,
    Command,
    ExpireDayOrders,
    OrderAccepted,
    OrderCanceled,
    OrderExpired,
    OrderFilled,
    OrderRejected,
    OrderReplaced,
    PriceLevel,
    ReplaceOrder,
    RestingOrder,
    SubmitOrder,
)
from engine.snapshot import MASK, ORDER_DTYPE, WORD_DTYPE, BookSnapshot, id_digest_term, state_hash
from engine.types import MAX_QUANTITY, CancelReason, OrderType, RejectReason, Side, TimeInForce

BUY, SELL = Side.BUY, Side.SELL
LIMIT, MARKET = OrderType.LIMIT, OrderType.MARKET
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
FULL = 2**64 - 1
GTC, IOC, FOK, DAY = TimeInForce.GTC, TimeInForce.IOC, TimeInForce.FOK, TimeInForce.DAY


def ladder(book):
    """Bids 100 (ids 1, 2), 99, 98; asks 101, 102 (ids 5, 6), 103; DAY orders among them."""
    book.buy(1, 100, 10)
    book.buy(2, 100, 5, DAY)
    book.buy(3, 99, 7)
    book.buy(4, 98, 1, DAY)
    book.sell(5, 102, 4)
    book.sell(6, 102, 6, DAY)
    book.sell(7, 101, 3)
    book.sell(8, 103, 9)
    return book


def traded_book(book):
    """A non-trivial state: several levels, partial fills, DAY orders, dead ids."""
    ladder(book)
    book.buy(9, 102, 4)
    book.sell(10, 100, 16, IOC)
    book.buy(11, 97, 3)
    book.cancel(11)
    book.sell(12, 104, 5, DAY)
    book.replace(3, 99, 4)
    return book


# ---------------------------------------------------------------- depth and friends


def test_depth_reports_levels_best_first_with_quantity_and_counts(book):
    ladder(book)
    assert book.depth() == {
        "bids": [(100, 15, 2), (99, 7, 1), (98, 1, 1)],
        "asks": [(101, 3, 1), (102, 10, 2), (103, 9, 1)],
    }
    assert book.book.depth(BUY, 3) == [PriceLevel(100, 15, 2), PriceLevel(99, 7, 1), PriceLevel(98, 1, 1)]


@pytest.mark.parametrize(
    ("levels", "bids", "asks"),
    [
        (1, [(100, 15, 2)], [(101, 3, 1)]),
        (2, [(100, 15, 2), (99, 7, 1)], [(101, 3, 1), (102, 10, 2)]),
        (3, [(100, 15, 2), (99, 7, 1), (98, 1, 1)], [(101, 3, 1), (102, 10, 2), (103, 9, 1)]),
        (50, [(100, 15, 2), (99, 7, 1), (98, 1, 1)], [(101, 3, 1), (102, 10, 2), (103, 9, 1)]),
        (0, [], []),
        (-1, [], []),
        (-(2**63), [], []),
    ],
)
def test_depth_truncates_to_levels_argument(book, levels, bids, asks):
    ladder(book)
    assert book.depth(levels) == {"bids": bids, "asks": asks}


def test_depth_after_fills_shows_open_quantities(book):
    traded_book(book)
    assert book.depth() == {
        "bids": [(99, 4, 1), (98, 1, 1)],
        "asks": [(102, 9, 2), (103, 9, 1), (104, 5, 1)],
    }


def test_top_of_book_is_best_level_of_each_side(book):
    ladder(book)
    assert book.top_of_book() == (PriceLevel(100, 15, 2), PriceLevel(101, 3, 1))
    assert (book.best_bid(), book.best_ask()) == (100, 101)


def test_top_of_book_one_sided_has_none_for_empty_side(book):
    book.sell(1, 101, 3)
    book.sell(2, 101, 4)
    assert book.top_of_book() == (None, PriceLevel(101, 7, 2))
    assert (book.best_bid(), book.best_ask()) == (None, 101)
    book.cancel(1)
    book.cancel(2)
    book.buy(3, 7, 1)
    assert book.top_of_book() == (PriceLevel(7, 1, 1), None)
    assert (book.best_bid(), book.best_ask()) == (7, None)


def test_level_reports_quantity_and_order_count_at_one_price(book):
    ladder(book)
    assert book.level(BUY, 100) == PriceLevel(100, 15, 2)
    assert book.level(BUY, 98) == PriceLevel(98, 1, 1)
    assert book.level(SELL, 102) == PriceLevel(102, 10, 2)
    assert book.level(1, 103) == PriceLevel(103, 9, 1)


@pytest.mark.parametrize(
    ("side", "price"),
    [(BUY, 101), (SELL, 100), (BUY, 97), (SELL, 104), (SELL, 2**63 - 1), (BUY, -(2**63))],
)
def test_level_of_price_without_orders_on_that_side_is_none(book, side, price):
    ladder(book)
    assert book.level(side, price) is None


def test_level_agrees_with_depth_after_fills_replaces_and_cancels(book):
    traded_book(book)
    for side in (BUY, SELL):
        levels = book.book.depth(side, 100)
        assert [book.level(side, level.price) for level in levels] == levels
    assert book.level(BUY, 100) is None  # emptied by fills
    assert book.level(SELL, 101) is None  # its only order filled
    book.cancel(8)
    assert book.level(SELL, 103) is None
    book.replace(5, 102, 1)
    assert book.level(SELL, 102) == PriceLevel(102, 7, 2)
    book.replace(5, 105, 1)
    assert (book.level(SELL, 102), book.level(SELL, 105)) == (PriceLevel(102, 6, 1), PriceLevel(105, 1, 1))


@pytest.mark.parametrize("side", [2, -1])
def test_level_of_unknown_side_raises_value_error(book, side):
    ladder(book)
    with pytest.raises(ValueError):
        book.level(side, 100)


def test_order_returns_resting_order_with_open_quantity(book):
    traded_book(book)
    assert book.order(5) == RestingOrder(5, SELL, 102, 3, GTC)
    assert book.order(6) == RestingOrder(6, SELL, 102, 6, DAY)
    assert book.order(3) == RestingOrder(3, BUY, 99, 4, GTC)
    assert book.order(12) == RestingOrder(12, SELL, 104, 5, DAY)


@pytest.mark.parametrize("order_id", [1, 2, 7, 9, 10, 11, 13, -1])
def test_order_of_filled_canceled_ioc_or_unknown_id_is_none(book, order_id):
    traded_book(book)
    assert book.order(order_id) is None


def test_len_counts_resting_orders_through_every_command(book):
    ladder(book)
    assert len(book) == 8
    book.buy(9, 102, 5)
    assert len(book) == 7
    book.sell(10, 90, 1, IOC)
    assert len(book) == 7
    book.cancel(3)
    assert len(book) == 6
    book.replace(4, 97, 1)
    assert len(book) == 6
    book.expire_day_orders()
    assert len(book) == 3
    book.buy(4, 1, 1)
    assert len(book) == 3


# ---------------------------------------------------------------- snapshot


def test_snapshot_of_empty_book_equals_reference(book):
    assert book.snapshot() == BookSnapshot(0, b"", b"", b"", b"")
    assert book.state_hash() == state_hash([], 0, 0, 0)


def test_snapshot_holds_orders_in_priority_order_and_accepted_ids_by_word(book):
    traded_book(book)
    snapshot = book.snapshot()
    assert snapshot.trade_sequence == 4
    assert snapshot.order_array().tolist() == [
        (3, BUY, 99, 4, GTC),
        (4, BUY, 98, 1, DAY),
        (5, SELL, 102, 3, GTC),
        (6, SELL, 102, 6, DAY),
        (8, SELL, 103, 9, GTC),
        (12, SELL, 104, 5, DAY),
    ]
    assert records(snapshot) == ([], [(0, 0b1_1111_1111_1110)], [])


def records(snapshot):
    """The accepted ids of ``snapshot`` as (ranges, (first, bits) words, lone ids) lists."""
    words = [tuple(word) for word in snapshot.word_array().tolist()]
    return snapshot.range_array().tolist(), words, snapshot.lone_array().tolist()


def test_snapshot_writes_full_words_as_ranges_others_as_masks_or_lone_ids(book):
    """Words of 64 ids: full ones join into ranges across 0 and split at a word that is not full."""
    edge = 1 << 48
    accepted = [*range(-64, 64), *range(64, 100), *range(128, 256), 300, *range(320, 384), edge, edge + 1, edge + 64]
    for order_id in accepted:
        book.buy(order_id, 1, 1, IOC)
    book.buy(100, 1, 0)  # rejected orders' ids are not accepted: 100 does not extend 64..99
    book.buy(384, 1, 1, FOK)  # nor 384 the range 320..383 (nothing to fill the FOK)
    assert records(book.snapshot()) == (
        [[-64, 63], [128, 255], [320, 383]],
        [(64, 2**36 - 1), (edge, 0b11)],
        [300, edge + 64],
    )


@pytest.mark.parametrize("stride", [2, 3, 4, 7, 64, 65])
def test_snapshot_of_interleaved_ids_writes_a_mask_per_word(book, stride):
    """A book sees every k-th id when k symbols trade in turn: 16 bytes per word of 64 ids."""
    accepted = range(1 << 48, (1 << 48) + 1_000, stride)
    for order_id in accepted:
        book.buy(order_id, 1, 1, IOC)
    expected = {}
    for order_id in accepted:
        expected[order_id & -64] = expected.get(order_id & -64, 0) | 1 << (order_id & 63)
    snapshot = book.snapshot()
    assert records(snapshot) == (
        [],
        [(first, bits) for first, bits in expected.items() if bits & (bits - 1)],
        [first + bits.bit_length() - 1 for first, bits in expected.items() if not bits & (bits - 1)],
    )
    assert len(snapshot.accepted_words) + len(snapshot.accepted_lone) <= 16 * (1_000 // 64 + 1)


def test_snapshot_records_reach_both_ends_of_int64(book):
    for order_id in (INT64_MIN, INT64_MIN + 1, INT64_MAX - 1, INT64_MAX, -1, 0):
        book.buy(order_id, 1, 1, IOC)
    assert records(book.snapshot()) == ([], [(INT64_MIN, 0b11), (INT64_MAX - 63, 0b11 << 62)], [-1, 0])
    for order_id in (*range(INT64_MIN + 2, INT64_MIN + 64), *range(INT64_MAX - 63, INT64_MAX - 1), INT64_MAX - 64):
        book.buy(order_id, 1, 1, IOC)
    assert records(book.snapshot()) == (
        [[INT64_MIN, INT64_MIN + 63], [INT64_MAX - 63, INT64_MAX]], [], [-1, 0, INT64_MAX - 64],
    )  # fmt: skip
    for order_id in (INT64_MIN, INT64_MIN + 63, INT64_MAX - 64, INT64_MAX):
        assert book.buy(order_id, 1, 1, IOC)[0].reason is RejectReason.DUPLICATE_ORDER_ID, order_id


def test_restored_records_reject_every_id_in_them_and_accept_their_neighbours(make_book):
    """The native book restores ranges and words a word at a time: their edges must be exact."""
    low_mask = FULL ^ 0b11111  # ids 5..63
    ids = {
        "ranges": [[-128, -65], [64, 100_031], [INT64_MAX - 127, INT64_MAX]],
        "words": [(0, low_mask), (100_032, 0b1111)],
        "lone": [-200],
    }
    book = make_book(snapshot_of([(5_000, BUY, 10, 1, GTC)], **ids), tracker_with(5_000))
    assert book.snapshot() == snapshot_of([(5_000, BUY, 10, 1, GTC)], **ids)
    for order_id in (-200, -128, -65, 5, 63, 64, 50_000, 100_031, 100_035, INT64_MAX - 127, INT64_MAX):
        assert book.sell(order_id, 20, 1)[0].reason is RejectReason.DUPLICATE_ORDER_ID, order_id
    for order_id in (-201, -199, -129, -64, 4, 100_036, INT64_MAX - 128):
        assert type(book.sell(order_id, 20, 1)[0]) is OrderAccepted, order_id
    assert records(book.snapshot()) == (
        ids["ranges"],
        [(-256, 0b111 << 55), (0, low_mask | 0b10000), (100_032, 0b11111)],
        [-129, -64, INT64_MAX - 128],
    )


def test_snapshot_restore_round_trip_then_books_continue_identically(book):
    traded_book(book)
    copy = book.restored()
    assert copy.snapshot() == book.snapshot()
    assert copy.state_hash() == book.state_hash()
    assert copy.depth() == book.depth()
    assert (len(copy), copy.trade_sequence, copy.top_of_book()) == (len(book), 4, book.top_of_book())
    assert [copy.order(i) for i in range(14)] == [book.order(i) for i in range(14)]

    def further(b):
        return [
            b.buy(1, 100, 5),
            b.sell(13, 98, 6),
            b.buy(14, 102, 5),
            b.replace(6, 101, 6),
            b.market_buy(15, 1),
            b.cancel(8),
            b.cancel(9),
            b.expire_day_orders(),
            b.buy(16, 103, 100, FOK),
        ]

    events = further(book)
    assert further(copy) == events
    duplicate = RejectReason.DUPLICATE_ORDER_ID
    assert events[0] == [OrderRejected(1, duplicate, duplicate.text)]
    assert events[1][1] == OrderFilled(3, 13, 99, 4, 0, 2, SELL, 5)
    assert events[7] == [OrderExpired(6, 5), OrderExpired(12, 5)]
    assert copy.snapshot() == book.snapshot()
    assert copy.state_hash() == book.state_hash()


def test_restore_of_snapshot_with_no_resting_orders_keeps_ids_and_sequence(make_book):
    book = make_book()
    book.buy(1, 100, 5)
    book.sell(2, 100, 5)
    copy = book.restored()
    assert (len(copy), copy.trade_sequence, copy.depth()) == (0, 1, {"bids": [], "asks": []})
    duplicate = RejectReason.DUPLICATE_ORDER_ID
    assert copy.buy(2, 100, 1) == [OrderRejected(2, duplicate, duplicate.text)]
    copy.sell(3, 100, 1)
    assert copy.buy(4, 100, 1)[1] == OrderFilled(3, 4, 100, 1, 0, 0, BUY, 2)


def test_snapshot_survives_msgpack_encoding(book):
    traded_book(book)
    snapshot = book.snapshot()
    decoded = msgspec.msgpack.decode(msgspec.msgpack.encode(snapshot), type=BookSnapshot)
    assert decoded == snapshot
    assert type(book.book).restore(decoded).state_hash() == book.state_hash()


# ---------------------------------------------------------------- state hash


def expected_hash(orders, trade_sequence, ids, last_price=0):
    """The documented hash of (side, price, id, quantity, tif) orders in priority order (plain
    orders in the continuous phase at time 0)."""
    digest = sum(id_digest_term(i) for i in ids) & MASK
    return state_hash(orders, trade_sequence, len(ids), digest, last_price=last_price)


def test_state_hash_matches_documented_definition(book):
    traded_book(book)
    assert book.state_hash() == expected_hash(
        [
            (BUY, 99, 3, 4, GTC),
            (BUY, 98, 4, 1, DAY),
            (SELL, 102, 5, 3, GTC),
            (SELL, 102, 6, 6, DAY),
            (SELL, 103, 8, 9, GTC),
            (SELL, 104, 12, 5, DAY),
        ],
        4,
        range(1, 13),
        last_price=100,
    )


def test_state_hash_of_extreme_values_matches_definition(book):
    book.sell(-(2**63), 2**63 - 1, MAX_QUANTITY, DAY)
    book.buy(2**63 - 1, 1, 1)
    book.buy(0, 2, 2, IOC)
    assert book.state_hash() == expected_hash(
        [(BUY, 1, 2**63 - 1, 1, GTC), (SELL, 2**63 - 1, -(2**63), MAX_QUANTITY, DAY)],
        0,
        [-(2**63), 0, 2**63 - 1],
    )


def test_state_hash_changes_on_every_state_change(book):
    hashes = [book.state_hash()]

    def step(events):
        assert events
        hashes.append(book.state_hash())

    step(book.buy(1, 100, 10))
    step(book.buy(2, 100, 10, DAY))
    step(book.sell(3, 105, 1, IOC))  # only the accepted id changes
    step(book.sell(4, 100, 3))  # fill
    step(book.replace(1, 100, 5))  # reduce in place
    step(book.replace(1, 100, 5 + 1))  # loses priority
    step(book.replace(1, 101, 6))  # moves
    step(book.cancel(2))
    step(book.sell(5, 110, 1, DAY))
    step(book.expire_day_orders())
    assert len(set(hashes)) == len(hashes)


def test_state_hash_reflects_priority_within_a_level(make_book):
    first, second = make_book(), make_book()
    for b in (first, second):
        b.buy(1, 100, 5)
        b.buy(2, 100, 5)
    second.replace(1, 99, 5)
    second.replace(1, 100, 5)
    assert first.depth() == second.depth()
    assert first.state_hash() != second.state_hash()
    assert first.snapshot() != second.snapshot()


def test_state_hash_equal_for_equal_states_built_differently(make_book):
    first, second = make_book(), make_book()
    first.buy(1, 100, 10)
    first.buy(2, 99, 4)
    first.cancel(2)
    first.sell(3, 105, 2)
    second.sell(3, 106, 7)
    second.buy(2, 98, 1)
    second.buy(1, 100, 15)
    second.replace(1, 100, 10)
    second.cancel(2)
    second.replace(3, 105, 2)
    second.buy(1, 100, 1)
    second.cancel(77)
    second.replace(3, 0, 5)
    assert first.snapshot() == second.snapshot()
    assert first.state_hash() == second.state_hash()


def test_state_hash_equal_after_fills_in_different_commands(make_book):
    first, second = make_book(), make_book()
    for b in (first, second):
        b.sell(1, 100, 5)
        b.sell(2, 101, 5)
    first.buy(3, 101, 7)
    second.buy(3, 100, 7)
    second.replace(3, 101, 2)
    assert first.snapshot() == second.snapshot()
    assert first.state_hash() == second.state_hash()


def test_state_hash_counts_rejected_ids_as_unused(make_book):
    first, second = make_book(), make_book()
    first.buy(1, 100, 5)
    second.buy(1, 100, 5)
    second.buy(2, 100, 0)
    second.buy(3, 200, 1, FOK)
    assert first.state_hash() == second.state_hash()
    first.buy(2, 10, 1, IOC)
    assert first.state_hash() != second.state_hash()


# ---------------------------------------------------------------- apply

COMMANDS = {
    "limit": SubmitOrder(20, BUY, LIMIT, GTC, 102, 8),
    "limit day": SubmitOrder(20, SELL, LIMIT, DAY, 99, 30),
    "ioc": SubmitOrder(20, SELL, LIMIT, IOC, 100, 20),
    "fok": SubmitOrder(20, BUY, LIMIT, FOK, 102, 7),
    "market": SubmitOrder(20, SELL, MARKET, IOC, 0, 100),
    "market fok": SubmitOrder(20, BUY, MARKET, FOK, 0, 1_000),
    "bad side": SubmitOrder(20, 7, LIMIT, GTC, 100, 1),
    "duplicate": SubmitOrder(1, BUY, LIMIT, GTC, 100, 1),
    "cancel": CancelOrder(2),
    "cancel unknown": CancelOrder(20),
    "replace reduce": ReplaceOrder(1, 100, 3),
    "replace cross": ReplaceOrder(3, 102, 20),
    "replace bad": ReplaceOrder(1, -1, 3),
    "expire": ExpireDayOrders(),
}


@pytest.mark.parametrize("command", COMMANDS.values(), ids=COMMANDS)
def test_apply_equals_direct_method_call(make_book, command):
    by_apply, by_call = ladder(make_book()), ladder(make_book())
    events = by_apply.apply(command)
    assert events == call_directly(by_call, command)
    assert events
    assert by_apply.snapshot() == by_call.snapshot()
    assert by_apply.state_hash() == by_call.state_hash()


def test_apply_decoded_wire_commands_equals_direct_calls(make_book):
    decoder = msgspec.msgpack.Decoder(Command)
    by_apply, by_call = ladder(make_book()), ladder(make_book())
    for command in COMMANDS.values():
        if isinstance(command, SubmitOrder) and command.side not in (BUY, SELL):
            continue  # an out-of-range side cannot be decoded into Side
        decoded = decoder.decode(msgspec.msgpack.encode(command))
        assert by_apply.apply(decoded) == call_directly(by_call, command)
    assert by_apply.state_hash() == by_call.state_hash()


def test_apply_of_non_command_raises_type_error(book):
    with pytest.raises(TypeError):
        book.apply(OrderCanceled(1, 1, CancelReason.REQUESTED))
    assert book.snapshot() == BookSnapshot(0, b"", b"", b"", b"")


# ---------------------------------------------------------------- event types


def test_events_carry_enum_members_and_bools(book):
    """Equality alone would accept bare ints; the declared field types are part of the API."""
    book.sell(1, 100, 5)
    events = [
        *book.buy(2, 101, 7, IOC),
        *book.sell(3, 100, 0),
        *book.sell(4, 100, 5, DAY),
        *book.replace(4, 100, 4),
        *book.cancel(4),
        *book.cancel(4),
        *book.replace(4, 100, 1),
        *book.buy(5, 90, 1, DAY),
        *book.expire_day_orders(),
    ]
    book.buy(6, 80, 1)
    assert [type(e).__name__ for e in events] == [
        "OrderAccepted", "OrderFilled", "OrderCanceled", "OrderRejected", "OrderAccepted",
        "OrderReplaced", "OrderCanceled", "CancelRejected", "ReplaceRejected", "OrderAccepted",
        "OrderExpired",
    ]  # fmt: skip
    accepted, filled, canceled, rejected = events[:4]
    assert (type(accepted.side), type(accepted.order_type), type(accepted.time_in_force)) == (
        Side, OrderType, TimeInForce,
    )  # fmt: skip
    assert type(filled.aggressor) is Side
    assert type(canceled.reason) is CancelReason
    assert all(type(e.reason) is RejectReason for e in (rejected, events[7], events[8]))
    assert type(events[5].priority_kept) is bool
    resting = book.order(6)
    assert (type(resting.side), type(resting.time_in_force)) == (Side, TimeInForce)
    assert events[5] == OrderReplaced(4, 100, 4, True)
    assert events[2] == OrderCanceled(2, 2, CancelReason.UNFILLED)
    assert accepted == OrderAccepted(2, BUY, LIMIT, IOC, 101, 7)


# ---------------------------------------------------------------- restore validation


def snapshot_of(orders, ranges=(), words=(), lone=(), trade_sequence=0):
    """A snapshot of ``orders`` (records) with the accepted ids ``ranges`` ((first, last) pairs),
    ``words`` ((first, bits) pairs) and ``lone``."""
    return BookSnapshot.from_arrays(
        trade_sequence,
        np.array(orders, dtype=ORDER_DTYPE),
        np.array(ranges, dtype="<i8").reshape(-1, 2),
        np.array(list(words), dtype=WORD_DTYPE),
        np.array(lone, dtype="<i8"),
    )


def tracker_with(*order_ids):
    tracker = OrderTracker()
    tracker.states = {order_id: OrderState.ACCEPTED for order_id in order_ids}
    return tracker


ONE_TWO = [(0, 0b110)]  # the word holding ids 1 and 2
BAD_SNAPSHOTS = {
    "negative sequence": snapshot_of([], trade_sequence=-1),
    "truncated orders": BookSnapshot(0, b"\0" * (ORDER_DTYPE.itemsize - 1), b"", b"", b""),
    "truncated ranges": BookSnapshot(0, b"", b"\0" * 15, b"", b""),
    "truncated words": BookSnapshot(0, b"", b"", b"\0" * 15, b""),
    "truncated lone ids": BookSnapshot(0, b"", b"", b"", b"\0" * 7),
    "range backwards": snapshot_of([], [[64, 63]]),
    "range starting inside a word": snapshot_of([], [[1, 127]]),
    "range ending inside a word": snapshot_of([], [[0, 126]]),
    "range of part of a word": snapshot_of([], [[1, 2]]),
    "ranges descending": snapshot_of([], [[128, 191], [0, 63]]),
    "ranges overlapping": snapshot_of([], [[0, 127], [64, 191]]),
    "ranges adjacent": snapshot_of([], [[0, 63], [64, 127]]),
    "ranges repeated": snapshot_of([], [[0, 63], [0, 63]]),
    "ranges adjacent across 0": snapshot_of([], [[INT64_MIN, -1], [0, 63]]),
    "ranges adjacent at the top": snapshot_of([], [[INT64_MAX - 127, INT64_MAX - 64], [INT64_MAX - 63, INT64_MAX]]),
    "every int64": snapshot_of([], [[INT64_MIN, INT64_MAX]]),
    "2**63 ids": snapshot_of([], [[INT64_MIN, -65]], [(0, FULL >> 1)], [INT64_MAX]),
    "empty word": snapshot_of([], words=[(0, 0)]),
    "word of one id": snapshot_of([], words=[(0, 1)]),
    "full word": snapshot_of([], words=[(0, FULL)]),
    "word not on a multiple of 64": snapshot_of([], words=[(1, 0b11)]),
    "words descending": snapshot_of([], words=[(64, 0b11), (0, 0b11)]),
    "words repeated": snapshot_of([], words=[(0, 0b11), (0, 0b11)]),
    "word in a range": snapshot_of([], [[0, 127]], [(64, 0b11)]),
    "word in a range at the top": snapshot_of([], [[INT64_MAX - 127, INT64_MAX]], [(INT64_MAX - 63, 0b11)]),
    "lone ids descending": snapshot_of([], lone=[70, 1]),
    "lone ids repeated": snapshot_of([], lone=[1, 1]),
    "two lone ids in a word": snapshot_of([], lone=[1, 2]),
    "lone id in a word": snapshot_of([], words=ONE_TWO, lone=[9]),
    "lone id in a range": snapshot_of([], [[0, 63]], lone=[5]),
    "lone id in a range across 0": snapshot_of([], [[INT64_MIN, -1]], lone=[-1]),
    "unknown side": snapshot_of([(1, 2, 100, 1, GTC)], lone=[1]),
    "ioc resting": snapshot_of([(1, BUY, 100, 1, IOC)], lone=[1]),
    "fok resting": snapshot_of([(1, BUY, 100, 1, FOK)], lone=[1]),
    "zero quantity": snapshot_of([(1, BUY, 100, 0, GTC)], lone=[1]),
    "quantity too large": snapshot_of([(1, BUY, 100, MAX_QUANTITY + 1, GTC)], lone=[1]),
    "zero price": snapshot_of([(1, SELL, 0, 1, GTC)], lone=[1]),
    "negative price": snapshot_of([(1, SELL, -5, 1, DAY)], lone=[1]),
    "shared id": snapshot_of([(1, BUY, 100, 1, GTC), (1, BUY, 99, 1, GTC)], lone=[1]),
    "id never accepted": snapshot_of([(1, BUY, 100, 1, GTC)], lone=[2]),
    "id between ranges": snapshot_of([(100, BUY, 100, 1, GTC)], [[0, 63], [128, 191]]),
    "id below the ranges": snapshot_of([(-1, BUY, 100, 1, GTC)], [[0, 63]]),
    "id above the ranges": snapshot_of([(64, BUY, 100, 1, GTC)], [[0, 63]]),
    "id not in its word": snapshot_of([(3, BUY, 100, 1, GTC)], words=ONE_TWO),
    "id in no word": snapshot_of([(65, BUY, 100, 1, GTC)], words=ONE_TWO),
    "id next to a lone id": snapshot_of([(3, BUY, 100, 1, GTC)], lone=[2]),
    "id without accepted ids": snapshot_of([(1, BUY, 100, 1, GTC)]),
    "asks before bids": snapshot_of([(1, SELL, 101, 1, GTC), (2, BUY, 100, 1, GTC)], words=ONE_TWO),
    "bids worst first": snapshot_of([(1, BUY, 99, 1, GTC), (2, BUY, 100, 1, GTC)], words=ONE_TWO),
    "asks worst first": snapshot_of([(1, SELL, 102, 1, GTC), (2, SELL, 101, 1, GTC)], words=ONE_TWO),
    "crossed": snapshot_of([(1, BUY, 100, 1, GTC), (2, SELL, 100, 1, GTC)], words=ONE_TWO),
}


@pytest.mark.parametrize("snapshot", BAD_SNAPSHOTS.values(), ids=BAD_SNAPSHOTS)
def test_restore_of_inconsistent_snapshot_raises_value_error(book_class, snapshot):
    with pytest.raises(ValueError):
        book_class.restore(snapshot)


def test_restore_of_non_snapshot_raises_type_error(book_class):
    with pytest.raises(TypeError):
        book_class.restore((0, b"", b""))


def test_restore_accepts_edge_of_valid_snapshot(make_book):
    snapshot = snapshot_of(
        [(5, BUY, 100, MAX_QUANTITY, DAY), (4, BUY, 100, 1, GTC), (INT64_MIN, SELL, INT64_MAX, 1, GTC)],
        words=[(0, 0b110010), (INT64_MAX - 63, 0b111 << 61)],
        lone=[INT64_MIN],
        trade_sequence=10**15,
    )
    book = make_book(snapshot, tracker_with(5, 4, INT64_MIN))
    assert book.snapshot() == snapshot
    assert book.depth() == {"bids": [(100, MAX_QUANTITY + 1, 2)], "asks": [(2**63 - 1, 1, 1)]}
    assert book.sell(6, 100, 2)[1:] == [
        OrderFilled(5, 6, 100, 2, MAX_QUANTITY - 2, 0, SELL, 10**15 + 1),
    ]
