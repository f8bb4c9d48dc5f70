"""Property tests: the native book must answer every command exactly as the reference book does.

Events are compared by ``repr`` as well as by equality, so a native book that returns
bare ints for enum fields, ``1`` for ``True`` or NumPy scalars for ints fails too.
"""

import numpy as np
import pytest
from direct import call_directly
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from engine.book import ReferenceBook
from engine.lifecycle import OrderTracker
from engine.messages import (
    CancelOrder,
    ClockAdvanced,
    ExpireDayOrders,
    ReplaceOrder,
    SetClock,
    SetPhase,
    SubmitOrder,
)
from engine.snapshot import id_records_of_ranges
from engine.stream import FILL_DTYPE, STREAM_DTYPE, STREAM_V2_DTYPE, StreamError
from engine.types import MAX_QUANTITY, OrderType, SelfTradePrevention, Side, TimeInForce

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
SETTINGS = settings(max_examples=200, deadline=None)
V2_SETTINGS = settings(max_examples=100, deadline=None)
"""For the reference-only v2 property tests (two sessions, or invariants after every command)."""
REPLAY_V2_SETTINGS = settings(max_examples=120, deadline=None)
"""The v2 batch replay against the reference book: streams of up to 300 rows, the suite's
costliest property test (the per-command v2 tests above hold the same rules command by command)."""


def native_book_class():
    from native.book import NativeBook

    return NativeBook


def mostly(common, rare, weight=9):
    """``common`` about ``weight`` times as often as ``rare`` (``one_of`` picks its branches evenly)."""
    return st.sampled_from([True] * weight + [False]).flatmap(lambda pick: common if pick else rare)


GTC, IOC, FOK, DAY = TimeInForce.GTC, TimeInForce.IOC, TimeInForce.FOK, TimeInForce.DAY
SIDES = mostly(st.sampled_from([Side.BUY, Side.SELL]), st.sampled_from([2, 255]), weight=30)
TYPES = mostly(st.sampled_from([OrderType.LIMIT] * 4 + [OrderType.MARKET]), st.just(4), weight=30)
LIMIT_TIFS = mostly(st.sampled_from([GTC, GTC, GTC, DAY, DAY, IOC, FOK]), st.sampled_from([5, -1]), weight=30)
MARKET_TIFS = mostly(st.sampled_from([IOC, IOC, FOK]), st.sampled_from([GTC, DAY, 5]), weight=6)
PRICES = mostly(st.integers(95, 105), st.sampled_from([0, -1, 1, 10**12, INT64_MAX]), weight=20)
QUANTITIES = mostly(st.integers(1, 20), st.sampled_from([0, -1, MAX_QUANTITY, MAX_QUANTITY + 1]), weight=20)
EDGE_IDS = st.sampled_from([-1, 0, 63, 64, -64, -65, INT64_MIN, INT64_MIN + 1, INT64_MAX - 1, INT64_MAX])
FRESH_IDS = mostly(st.integers(0, 10**6), EDGE_IDS, weight=20)
KINDS = ["submit"] * 12 + ["cancel"] * 2 + ["replace"] * 3 + ["expire"]


@st.composite
def commands(draw, used_ids, live_ids):
    """One command; ids are mostly fresh for submits and mostly live for cancels and replaces,
    with duplicates, dead ids and never-used ids mixed in."""
    kind = draw(st.sampled_from(KINDS))
    if kind == "expire":
        return ExpireDayOrders()
    target = FRESH_IDS
    if used_ids:
        target = mostly(st.sampled_from(sorted(used_ids)), target, weight=2)
    if live_ids:
        target = mostly(st.sampled_from(sorted(live_ids)), target, weight=3)
    if kind == "cancel":
        return CancelOrder(draw(target))
    if kind == "replace":
        return ReplaceOrder(draw(target), draw(PRICES), draw(QUANTITIES))
    fresh = FRESH_IDS
    if used_ids:  # half the time next to a used id, so runs of consecutive ids (ranges) form and join
        fresh = mostly(fresh, st.sampled_from(sorted(used_ids)).flatmap(neighbour), weight=1)
    order_id = draw(mostly(fresh, target))
    side, order_type = draw(SIDES), draw(TYPES)
    tif = draw(MARKET_TIFS if order_type == OrderType.MARKET else LIMIT_TIFS)
    return SubmitOrder(order_id, side, order_type, tif, draw(PRICES), draw(QUANTITIES))


def neighbour(order_id):
    return st.sampled_from([i for i in (order_id - 1, order_id + 1) if INT64_MIN <= i <= INT64_MAX])


def random_session(data, book, on_command):
    """Drive ``book`` with random commands; ``on_command(command, events)`` checks each step."""
    used, live = set(), set()
    for _ in range(data.draw(st.integers(0, 80), label="commands")):
        command = data.draw(commands(used, live))
        events = book.apply(command)
        note(f"-> {events!r}")
        on_command(command, events)
        if isinstance(command, SubmitOrder):
            used.add(command.order_id)
        live = {order_id for order_id in used if book.order(order_id) is not None}
    return used


def assert_same_state(native, reference, ids):
    assert native.snapshot() == reference.snapshot()
    assert native.state_hash() == reference.state_hash()
    assert (len(native), native.trade_sequence) == (len(reference), reference.trade_sequence)
    assert (native.best_bid(), native.best_ask()) == (reference.best_bid(), reference.best_ask())
    assert native.top_of_book() == reference.top_of_book()
    for side in Side:
        assert native.depth(side, 10**6) == reference.depth(side, 10**6)
    assert [native.order(i) for i in sorted(ids)] == [reference.order(i) for i in sorted(ids)]


@SETTINGS
@given(data=st.data(), via_apply=st.booleans())
def test_native_book_matches_events_and_state_on_random_commands(data, via_apply):
    native_class = native_book_class()
    reference, native = ReferenceBook(), native_class()

    def compare(command, expected):
        actual = native.apply(command) if via_apply else call_directly(native, command)
        assert isinstance(actual, list)
        assert actual == expected, command
        assert list(map(repr, actual)) == list(map(repr, expected)), command
        assert native.level_changes() == reference.level_changes(), command
        assert native.state_hash() == reference.state_hash(), command

    ids = random_session(data, reference, compare)
    reference.check_invariants()
    native.check_invariants()
    assert_same_state(native, reference, ids)


@SETTINGS
@given(data=st.data())
def test_native_snapshots_restore_into_either_book(data):
    native_class = native_book_class()
    reference = ReferenceBook()
    random_session(data, reference, lambda command, events: None)
    snapshot = reference.snapshot()
    native = native_class.restore(snapshot)
    native.check_invariants()
    assert native.snapshot() == snapshot
    assert native.state_hash() == reference.state_hash()
    back = ReferenceBook.restore(native.snapshot())
    assert back.state_hash() == reference.state_hash()
    follow_up = [SubmitOrder(10**7, Side.BUY, OrderType.MARKET, TimeInForce.IOC, 0, 25), ExpireDayOrders()]
    assert [native.apply(c) for c in follow_up] == [reference.apply(c) for c in follow_up]
    assert native.snapshot() == reference.snapshot()


@settings(SETTINGS, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_events_follow_lifecycle_on_random_commands(book_class, data):
    tracker = OrderTracker()

    def track(command, events):
        assert events or isinstance(command, ExpireDayOrders)
        if isinstance(command, SubmitOrder):
            tracker.submitted(command.order_id)
        for event in events:
            tracker.apply(event)

    book = book_class()
    random_session(data, book, track)
    book.check_invariants()


# ---------------------------------------------------------------- accepted-id patterns

ID_BASES = [0, -100, 64 * 1000 - 5, 1 << 48, 2 << 48, INT64_MAX - 150, INT64_MIN]
ID_SEGMENT = st.tuples(st.sampled_from(ID_BASES), st.integers(1, 400), st.sampled_from([1, 1, 1, 2, 3, 4, 63, 64, 65]))
ID_SCATTER = st.tuples(st.sampled_from(ID_BASES), st.sets(st.integers(0, 3_000), max_size=200))


def ranges_of(ids):
    """The runs of consecutive ids in ascending ``ids``, as inclusive (first, last) pairs."""
    ranges = []
    for order_id in ids:
        if ranges and ranges[-1][1] == order_id - 1:
            ranges[-1][1] = order_id
        else:
            ranges.append([order_id, order_id])
    return ranges


def records_of(ids):
    """The snapshot records (ranges, (first, bits) words, lone ids) of ascending ``ids``, the
    plain way (the test's own oracle)."""
    words = {}
    for order_id in ids:
        words[order_id >> 6] = words.get(order_id >> 6, 0) | 1 << (order_id & 63)
    ranges, masks, lone = [], [], []
    for word, bits in words.items():  # ascending, as the ids are
        first = word << 6
        if bits == 2**64 - 1:
            if ranges and ranges[-1][1] == first - 1:
                ranges[-1][1] = first + 63
            else:
                ranges.append([first, first + 63])
        elif bits & (bits - 1):
            masks.append((first, bits))
        else:
            lone.append(first + bits.bit_length() - 1)
    return ranges, masks, lone


@SETTINGS
@given(segments=st.lists(ID_SEGMENT, min_size=1, max_size=6), scattered=st.lists(ID_SCATTER, max_size=2),
       rejected=st.sets(st.integers(0, 2_400), max_size=60), data=st.data())
def test_accepted_id_patterns_give_equal_records_snapshots_and_hashes(segments, scattered, rejected, data):
    """Dense runs (one TES's ids), several runs (several TESs), strides (k symbols traded in turn:
    every k-th id), scattered ids (symbols traded in random order), gaps (rejected orders' ids),
    both ends of int64 and 0, submitted in any order; restored, each book takes or rejects the
    ids at the edges and around some accepted ones as the reference does."""
    native_class = native_book_class()
    ids = sorted({
        base + stride * k for base, count, stride in segments for k in range(count)
        if base + stride * k <= INT64_MAX
    } | {base + offset for base, offsets in scattered for offset in offsets if base + offset <= INT64_MAX})
    stream = np.zeros(len(ids), dtype=STREAM_DTYPE)
    stream["order_id"] = data.draw(st.permutations(ids), label="submission order")
    stream["kind"], stream["price"], stream["qty"] = 4, 1, 1  # limit IOC on an empty book: accepted
    stream["qty"][[i for i in rejected if i < len(ids)]] = 0  # rejected: the id is not accepted
    reference, native = ReferenceBook(), native_class()
    reference.replay(stream)
    native.replay(stream)
    snapshot = native.snapshot()
    words = [tuple(word) for word in snapshot.word_array().tolist()]
    accepted = sorted(stream["order_id"][stream["qty"] == 1].tolist())
    assert (snapshot.range_array().tolist(), words, snapshot.lone_array().tolist()) == records_of(accepted)
    ranges, words, lone = id_records_of_ranges(ranges_of(accepted))  # a version-2 snapshot's, converted
    assert (ranges.tolist(), [tuple(word) for word in words.tolist()], lone.tolist()) == records_of(accepted)
    assert snapshot == reference.snapshot()
    assert native.state_hash() == reference.state_hash()
    native.check_invariants()
    around = data.draw(st.lists(st.sampled_from(ids), max_size=10), label="ids probed with their neighbours")
    probed = [i + d for i in (ids[0], ids[-1], *around) for d in (-1, 0, 1) if INT64_MIN <= i + d <= INT64_MAX]
    probe = [SubmitOrder(i, Side.BUY, OrderType.LIMIT, IOC, 1, 1) for i in probed]
    for book_class in (native_class, ReferenceBook):
        restored = book_class.restore(snapshot)
        restored.check_invariants()
        assert restored.snapshot() == snapshot
        assert restored.state_hash() == reference.state_hash()
        assert [restored.apply(c) for c in probe] == [reference.apply(c) for c in probe]
        assert restored.snapshot() == reference.snapshot()
        reference = ReferenceBook.restore(snapshot)


# ---------------------------------------------------------------- replay

STREAM_ROW = st.tuples(
    mostly(st.sampled_from([0, 0, 0, 1, 2, 2, 3, 4, 5]), st.sampled_from([6, 7, 255]), weight=12),
    mostly(st.integers(0, 1), st.integers(2, 255)),
    mostly(st.integers(95, 105), st.sampled_from([0, -1, 1, INT64_MAX])),
    mostly(st.integers(1, 20), st.sampled_from([0, -1, MAX_QUANTITY, MAX_QUANTITY + 1])),
    st.integers(0, 150),
    st.integers(0, 150),
)
STREAM_ROWS = st.integers(0, 300).flatmap(lambda n: st.lists(STREAM_ROW, min_size=n, max_size=n))


@SETTINGS
@given(rows=STREAM_ROWS, stride=st.sampled_from([1, 1, 1, 2]))
def test_native_replay_matches_on_random_streams(rows, stride):
    """A strided view checks that replay copes with a non-contiguous stream."""
    native_class = native_book_class()
    stream = np.array(rows, dtype=STREAM_DTYPE)[::stride]
    original = stream.copy()
    reference, native = ReferenceBook(), native_class()
    expected, actual = reference.replay(stream), native.replay(stream)
    assert actual.fills.dtype == FILL_DTYPE
    assert actual.fills.tolist() == expected.fills.tolist()
    assert (actual.accepted, actual.rejected) == (expected.accepted, expected.rejected)
    assert actual.accepted + actual.rejected == len(stream)
    assert np.array_equal(stream, original)
    native.check_invariants()
    assert native.snapshot() == reference.snapshot()
    assert native.state_hash() == reference.state_hash()


@pytest.mark.parametrize(
    "stream",
    [
        [(0, 0, 100, 1, 1, 0)],
        np.zeros(3, dtype=[("kind", "u1"), ("side", "u1")]),
        np.zeros((2, 2), dtype=STREAM_DTYPE),
    ],
    ids=["list", "wrong dtype", "two-dimensional"],
)
def test_native_replay_refuses_what_check_stream_refuses(stream):
    native = native_book_class()()
    with pytest.raises(StreamError):
        ReferenceBook().replay(stream)
    with pytest.raises(StreamError):
        native.replay(stream)
    assert len(native) == 0


def test_native_replay_continues_from_current_state():
    native = native_book_class()()
    reference = ReferenceBook()
    for book in (native, reference):
        book.submit(1, Side.SELL, OrderType.LIMIT, TimeInForce.DAY, 100, 5)
    stream = np.array([(1, 0, 0, 3, 2, 0), (0, 0, 100, 1, 1, 0), (3, 0, 99, 2, 0, 1)], dtype=STREAM_DTYPE)
    expected, actual = reference.replay(stream), native.replay(stream)
    assert expected.fills.tolist() == [(1, 2, 100, 3)]
    assert (expected.accepted, expected.rejected) == (2, 1)
    assert actual.fills.tolist() == expected.fills.tolist()
    assert (actual.accepted, actual.rejected) == (2, 1)
    assert native.snapshot() == reference.snapshot()
    assert native.expire_day_orders() == reference.expire_day_orders()


@pytest.mark.parametrize("seed", range(2))
def test_native_replay_growing_every_structure_between_its_checks_matches(seed):
    """A stream resting thousands of orders on thousands of prices grows the order pool, the id
    tables and the levels many times over within one batch replay, and the sweeps that follow
    need many fills a command (`NativeBook._reserve` makes the room before each)."""
    rng = np.random.default_rng(seed)
    resting, sweeps = 6_000, 400
    stream = np.zeros(resting + sweeps, dtype=STREAM_DTYPE)
    stream["order_id"] = rng.permutation(np.arange(1, resting + sweeps + 1) * 97)
    stream["side"][:resting] = rng.integers(0, 2, resting)
    stream["price"][:resting] = np.where(stream["side"][:resting] == 0, 100_000 - rng.integers(1, 5_000, resting),
                                         100_000 + rng.integers(1, 5_000, resting))
    stream["qty"] = rng.integers(1, 30, resting + sweeps)
    tail = slice(resting, None)
    stream["kind"][tail] = rng.choice([1, 3, 4, 5], sweeps)
    stream["side"][tail] = rng.integers(0, 2, sweeps)
    stream["price"][tail] = 100_000 + rng.integers(-3_000, 3_000, sweeps)
    stream["qty"][tail] = rng.integers(1, 3_000, sweeps)
    reference, native = ReferenceBook(), native_book_class()()
    expected, actual = reference.replay(stream), native.replay(stream)
    assert len(expected.fills) > 10 * sweeps
    assert actual.fills.tolist() == expected.fills.tolist()
    assert (actual.accepted, actual.rejected) == (expected.accepted, expected.rejected)
    native.check_invariants()
    assert native.state_hash() == reference.state_hash()


@pytest.mark.parametrize("state", ["held stop", "GTD order", "DAY order", "call"])
def test_native_replay_of_a_book_holding_version_2_state_matches(state):
    """A version-1 replay on a book holding what version 1 cannot make (a held stop, a GTD or DAY
    order) or in a call: fills, counts and state equal the reference book's."""
    reference, native = ReferenceBook(), native_book_class()()
    for book in (reference, native):
        if state == "held stop":
            book.submit(900, Side.BUY, OrderType.STOP, TimeInForce.GTC, 0, 7, stop_price=101)
        elif state == "GTD order":
            book.submit(900, Side.BUY, OrderType.LIMIT, TimeInForce.GTD, 95, 7, expire_at=10**18)
        elif state == "DAY order":
            book.submit(900, Side.BUY, OrderType.LIMIT, TimeInForce.DAY, 95, 7)
        else:
            book.set_phase(1)
    rng = np.random.default_rng(5)
    stream = np.zeros(300, dtype=STREAM_DTYPE)
    stream["kind"] = rng.choice([0, 0, 0, 1, 3, 4], 300)
    stream["order_id"] = np.arange(1, 301)
    stream["side"] = rng.integers(0, 2, 300)
    stream["price"] = 100 + rng.integers(-3, 4, 300)
    stream["qty"] = rng.integers(1, 10, 300)
    stream["target_id"] = np.where(stream["kind"] == 3, rng.integers(1, 300, 300), 0)
    expected, actual = reference.replay(stream), native.replay(stream)
    assert actual.fills.tolist() == expected.fills.tolist()
    assert (actual.accepted, actual.rejected) == (expected.accepted, expected.rejected)
    native.check_invariants()
    assert native.snapshot() == reference.snapshot()


def drive_both(reference, native, rng, commands: int, price_of, tifs: tuple, shares: tuple[float, float, float],
               check=None) -> None:
    """Random limit orders, cancels of resting ones, replaces and end-of-day expiries (``shares``:
    the cumulative chances of a submit, a cancel and a replace; the rest expire) sent to
    ``reference`` and ``native`` in step, each command's events equal on both, and their final
    states equal; ``price_of(side)`` prices an order, ``check(order_id)`` runs after each command."""
    resting = []
    for order_id in range(1, commands + 1):
        roll = rng.random()
        if roll < shares[0] or not resting:
            side = int(rng.integers(0, 2))
            tif = tifs[int(rng.integers(0, len(tifs)))]
            args = (order_id, side, OrderType.LIMIT, tif, price_of(side), int(rng.integers(1, 50)))
            events = [reference.submit(*args), native.submit(*args)]
            resting.append(order_id)
        elif roll < shares[1]:
            target = resting.pop(int(rng.integers(0, len(resting))))
            events = [reference.cancel(target), native.cancel(target)]
        elif roll < shares[2]:
            target = resting[int(rng.integers(0, len(resting)))]
            args = (target, price_of(int(rng.integers(0, 2))), int(rng.integers(1, 50)))
            events = [reference.replace(*args), native.replace(*args)]
        else:
            events = [reference.expire_day_orders(), native.expire_day_orders()]
        assert events[0] == events[1], f"command {order_id}"
        if check is not None:
            check(order_id)
    assert native.snapshot() == reference.snapshot()
    assert native.state_hash() == reference.state_hash()
    native.check_invariants()
    reference.check_invariants()


@pytest.mark.parametrize("seed", range(4))
def test_wide_books_with_thousands_of_levels_match(seed):
    """Thousands of levels make tall skip lists; cancels and replaces remove levels deep in them."""
    rng = np.random.default_rng(seed)
    reference = ReferenceBook()
    drive_both(reference, native_book_class()(), rng, 20_000,
               lambda side: int(rng.integers(1, 3_000)) + (3_000 if side else 0), (GTC, DAY, IOC), (0.6, 0.85, 0.99))
    assert len(reference.depth(Side.BUY, 10**6)) + len(reference.depth(Side.SELL, 10**6)) > 1_000


@pytest.mark.parametrize("seed", range(3))
def test_prices_sharing_a_near_touch_entry_match(seed):
    """Prices a multiple of 4,096 ticks apart share an entry of the native ladder's near-touch
    table (ladder.pxd ``near``): the levels it does not name are found by the skip list, and
    removing one never forgets the other."""
    rng = np.random.default_rng(seed)
    prices = [base + k * 4_096 + offset for base in (1, 10**12) for k in range(4) for offset in (0, 1)]
    reference, native = ReferenceBook(), native_book_class()()

    def check(order_id):
        assert native.level_changes() == reference.level_changes(), f"command {order_id}"
        if order_id % 250 == 0:
            native.check_invariants()
            for side in Side:
                for price in prices:
                    assert native.level(side, price) == reference.level(side, price)

    drive_both(reference, native, rng, 3_000, lambda side: prices[int(rng.integers(0, len(prices)))],
               (GTC, GTC, IOC), (0.55, 0.8, 1.0), check)


def large_book_stream(seed: int, resting: int = 70_000, messages: int = 30_000) -> np.ndarray:
    """``resting`` limit orders on 60 prices a side, then cancels (of live, dead and unknown ids),
    replaces and crossing orders of every version-1 kind: a book whose id table is large enough
    for the native batch replay to look ahead (`NativeBook._look_ahead`)."""
    rng = np.random.default_rng(seed)
    total = resting + messages
    stream = np.zeros(total, dtype=STREAM_DTYPE)
    stream["order_id"] = np.arange(1, total + 1)
    side = rng.integers(0, 2, total)
    stream["side"] = side
    stream["qty"] = rng.integers(1, 40, total)
    stream["price"][:resting] = np.where(side[:resting] == 0, 1_000 - rng.integers(1, 61, resting),
                                         1_000 + rng.integers(1, 61, resting))
    tail = slice(resting, total)
    kind = rng.choice([0, 1, 2, 2, 2, 3, 4, 5], messages)
    stream["kind"][tail] = kind
    stream["price"][tail] = 1_000 + rng.integers(-70, 71, messages)
    targets = rng.integers(1, total, messages)
    stream["target_id"][tail] = np.where(np.isin(kind, (2, 3)), targets, 0)
    return stream


def as_v2(stream: np.ndarray) -> np.ndarray:
    """A version-1 stream in version 2: LIMIT_IOC and LIMIT_FOK become limits with tif IOC and FOK
    (version 2's market orders are IOC)."""
    out = np.zeros(len(stream), dtype=STREAM_V2_DTYPE)
    for field in ("side", "price", "qty", "order_id", "target_id"):
        out[field] = stream[field]
    kind = stream["kind"]
    out["kind"] = np.where((kind == 4) | (kind == 5), 0, kind)
    out["tif"] = np.select([kind == 4, kind == 5, kind == 1], [IOC, FOK, IOC], 0)
    return out


@pytest.mark.parametrize("seed", range(2))
@pytest.mark.parametrize("version", [1, 2])
def test_native_replay_of_a_large_book_looking_ahead_matches(seed, version):
    """The batch replay loads what later messages read once the book outgrows the cache; fills,
    counts and state equal the reference book's, the stream replayed in pieces so the look-ahead
    starts over at each call."""
    from engine.replay import replay_stream
    from native.book import LOOK_AHEAD_ORDERS

    stream = large_book_stream(seed)
    if version == 2:
        stream = as_v2(stream)
    reference, native = ReferenceBook(), native_book_class()()
    expected = replay_stream(reference, stream)
    fills, rejected, sizes = [], 0, []
    for piece in np.array_split(stream, [70_005, 70_010, 82_000]):
        result = native.replay(piece)
        fills.append(result.fills)
        rejected += result.rejected
        sizes.append(len(native))
    assert sizes[0] > LOOK_AHEAD_ORDERS, "the id table never grew to where the replay looks ahead"
    assert len(expected.fills) > 1_000
    assert np.array_equal(np.concatenate(fills), expected.fills)
    assert rejected == expected.rejected
    assert native.state_hash() == reference.state_hash()
    native.check_invariants()

# ---------------------------------------------------------------- the advanced orders and phases (stream format v2)

GTD = TimeInForce.GTD
V2_TYPES = mostly(
    st.sampled_from([OrderType.LIMIT] * 6 + [OrderType.MARKET] * 2 + [OrderType.STOP, OrderType.STOP_LIMIT]),
    st.just(4), weight=40,
)
V2_TIFS = mostly(st.sampled_from([GTC, GTC, GTC, GTD, GTD, DAY, IOC, FOK]), st.sampled_from([5, -1]), weight=30)
V2_MARKET_TIFS = mostly(st.sampled_from([IOC, IOC, FOK]), st.sampled_from([GTC, GTD, 5]), weight=8)
OWNERS = st.sampled_from([0, 0, 1, 1, 2, 3])
STPS = mostly(st.sampled_from(list(SelfTradePrevention)), st.sampled_from([5, 255]), weight=30)
FLAGS = mostly(st.sampled_from([0, 0, 0, 1]), st.sampled_from([2, 3]), weight=30)
STOP_PRICES = mostly(st.integers(95, 105), st.sampled_from([0, -1, INT64_MAX]), weight=20)
V2_KINDS = ["submit"] * 14 + ["cancel"] * 2 + ["replace"] * 3 + ["clock"] * 2 + ["phase"] * 2 + ["expire"]


CLOCK_STEPS = mostly(st.integers(0, 6), st.sampled_from([-1, -(10**6)]), weight=12)
EXPIRY_STEPS = mostly(st.integers(1, 12), st.sampled_from([0, -1]), weight=8)
PHASES = mostly(st.sampled_from([0, 0, 1, 1, 2]), st.sampled_from([3, -1]), weight=20)
DISPLAYS = st.sampled_from(["none"] * 6 + ["some"] * 3 + ["bad"])
ID_SOURCES = st.sampled_from(["fresh"] * 12 + ["live"] * 2 + ["used"])
TARGET_SOURCES = st.sampled_from(["live"] * 8 + ["used"] * 2 + ["fresh"])
PICKS = st.integers(0, 2**32)


def pick_id(draw, source, used_ids, live_ids):
    """An id from ``source`` (a live order's, any used one's, or a fresh one), picked by index so
    that no strategy is built per draw."""
    pool = live_ids if source == "live" else used_ids if source == "used" else ()
    if not pool:
        return draw(FRESH_IDS)
    return pool[draw(PICKS) % len(pool)]


@st.composite
def v2_commands(draw, used_ids, live_ids, clock):
    """One command of the whole v2 space: every order type with every field, clock and phase
    commands (clock mostly forward from ``clock``), mixed with invalid values of every rule.
    ``used_ids`` and ``live_ids`` are sorted lists."""
    kind = draw(st.sampled_from(V2_KINDS))
    if kind == "expire":
        return ExpireDayOrders()
    if kind == "clock":
        return SetClock(clock + draw(CLOCK_STEPS))
    if kind == "phase":
        return SetPhase(draw(PHASES))
    if kind == "cancel":
        return CancelOrder(pick_id(draw, draw(TARGET_SOURCES), used_ids, live_ids))
    if kind == "replace":
        # never to MAX_QUANTITY: an iceberg keeps its display, so 10**9 lots shown one at a time
        # would let the next taker print 10**9 fills (more memory than the machine has)
        return ReplaceOrder(pick_id(draw, draw(TARGET_SOURCES), used_ids, live_ids), draw(PRICES),
                            draw(QUANTITIES.filter(lambda quantity: quantity != MAX_QUANTITY)))
    order_id = pick_id(draw, draw(ID_SOURCES), used_ids, live_ids)
    order_type = draw(V2_TYPES)
    tif = draw(V2_MARKET_TIFS if order_type == OrderType.MARKET else V2_TIFS)
    quantity = draw(QUANTITIES)
    # an iceberg of at most 100 slices: each slice fill is one event, so a display of 1 on
    # 10**9 lots could make one command print 10**9 fills
    display = {"none": 0, "some": max(1 + draw(PICKS) % max(min(quantity, 20), 1), quantity // 100),
               "bad": quantity + 1 if draw(st.booleans()) else -1}[draw(DISPLAYS)]
    return SubmitOrder(order_id, draw(SIDES), order_type, tif, draw(PRICES), quantity,
                       stop_price=draw(STOP_PRICES), display_quantity=display, flags=draw(FLAGS),
                       owner=draw(OWNERS), stp=draw(STPS), expire_at=clock + draw(EXPIRY_STEPS))


def random_v2_session(data, book, on_command, steps=(0, 100)):
    """Drive ``book`` with random v2 commands; ``on_command(command, events)`` checks each step."""
    used, live, clock = set(), set(), 0
    for _ in range(data.draw(st.integers(*steps), label="commands")):
        command = data.draw(v2_commands(sorted(used), sorted(live), clock))
        events = book.apply(command)
        note(f"{command!r} -> {events!r}")
        on_command(command, events)
        if isinstance(command, SubmitOrder):
            used.add(command.order_id)
        if events and isinstance(events[0], ClockAdvanced):
            clock = events[0].time
        live = {order_id for order_id in used if book.order(order_id) is not None}
    return used


@SETTINGS
@given(data=st.data(), via_apply=st.booleans())
def test_native_book_matches_events_and_state_on_random_advanced_commands(data, via_apply):
    native_class = native_book_class()
    reference, native = ReferenceBook(), native_class()

    def compare(command, expected):
        actual = native.apply(command) if via_apply else call_directly(native, command)
        assert actual == expected, command
        assert list(map(repr, actual)) == list(map(repr, expected)), command
        assert native.level_changes() == reference.level_changes(), command
        assert native.state_hash() == reference.state_hash(), command
        assert len(native) == len(reference), command

    ids = random_v2_session(data, reference, compare)
    reference.check_invariants()
    native.check_invariants()
    assert_same_state(native, reference, ids)


@SETTINGS
@given(data=st.data())
def test_native_restores_advanced_snapshots_and_continues_like_the_reference(data):
    native_class = native_book_class()
    reference = ReferenceBook()
    random_v2_session(data, reference, lambda command, events: None)
    snapshot = reference.snapshot()
    native = native_class.restore(snapshot)
    assert native.snapshot() == snapshot
    assert native.state_hash() == reference.state_hash()
    assert ReferenceBook.restore(native.snapshot()).snapshot() == snapshot
    follow_up = [SetPhase(0), SubmitOrder(10**7, Side.BUY, OrderType.MARKET, IOC, 0, 25, owner=1, stp=4),
                 SetClock(10**6), ExpireDayOrders()]
    assert [native.apply(c) for c in follow_up] == [reference.apply(c) for c in follow_up]
    assert native.snapshot() == reference.snapshot()


@V2_SETTINGS
@given(data=st.data())
def test_reference_restored_mid_session_continues_with_identical_events(data):
    """Snapshot at a random point, restore, then send both books the same commands."""
    original = ReferenceBook()
    random_v2_session(data, original, lambda command, events: None)
    copy = ReferenceBook.restore(original.snapshot())
    copy.check_invariants()

    def same(command, events):
        assert copy.apply(command) == events, command
        assert copy.level_changes() == original.level_changes(), command
        assert copy.state_hash() == original.state_hash(), command

    random_v2_session(data, original, same)
    assert copy.snapshot() == original.snapshot()


@settings(V2_SETTINGS, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_advanced_events_follow_lifecycle_and_invariants_hold(book_class, data):
    tracker = OrderTracker()
    book = book_class()

    def track(command, events):
        assert events or isinstance(command, ExpireDayOrders)
        if isinstance(command, SubmitOrder):
            tracker.submitted(command.order_id)
        for event in events:
            tracker.apply(event)
        book.check_invariants()

    random_v2_session(data, book, track)


V2_STREAM_ROW = st.tuples(
    mostly(st.sampled_from([0, 0, 0, 0, 1, 2, 2, 3, 6, 7, 8, 9]), st.sampled_from([4, 5, 10, 255]), weight=20),
    mostly(st.integers(0, 1), st.integers(2, 255), weight=30),
    mostly(st.integers(0, 3), st.integers(4, 255), weight=30),
    mostly(st.sampled_from([0, 0, 0, 1]), st.integers(2, 255), weight=30),
    mostly(st.integers(0, 4), st.integers(5, 255), weight=30),
    mostly(st.integers(95, 105), st.sampled_from([0, -1, 1, INT64_MAX])),
    mostly(st.integers(1, 20), st.sampled_from([0, -1, 1, 2, MAX_QUANTITY + 1])),
    st.integers(0, 150),
    st.integers(0, 150),
    mostly(st.integers(95, 105), st.sampled_from([0, -1])),
    mostly(st.just(0), st.integers(-1, 8), weight=3),
    st.sampled_from([0, 0, 1, 2]),
    st.integers(0, 40),
)
V2_STREAM_ROWS = st.integers(0, 300).flatmap(lambda n: st.lists(V2_STREAM_ROW, min_size=n, max_size=n))


@REPLAY_V2_SETTINGS
@given(rows=V2_STREAM_ROWS, stride=st.sampled_from([1, 1, 2]))
def test_native_replay_matches_on_random_v2_streams(rows, stride):
    """Phase and clock rows included (their ``qty`` and ``price``); a strided view too."""
    native_class = native_book_class()
    stream = np.array(rows, dtype=STREAM_V2_DTYPE)[::stride]
    reference, native = ReferenceBook(), native_class()
    expected, actual = reference.replay(stream), native.replay(stream)
    assert actual.fills.tolist() == expected.fills.tolist()
    assert (actual.accepted, actual.rejected) == (expected.accepted, expected.rejected)
    assert actual.accepted + actual.rejected == len(stream)
    assert native.snapshot() == reference.snapshot()
    assert native.state_hash() == reference.state_hash()
