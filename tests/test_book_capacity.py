"""What a book reserves before a command never refuses one that cannot trade: beside an iceberg of a
billion one-lot slices (a billion possible fills for a taker), a limit order of a billion lots short of
the best opposite price, or entered in a call auction, is accepted by both books, and so is a replace
moving an order short of it; a replace asking for too much is refused as too large. Through the Python
API and the batch replay alike. (The native book reserves events for the most a command can produce:
for a new order or a replace, the fills it could make on arrival, none for these.) And a book grown
past its heap blocks into mapped ones still matches the reference book."""

import numpy as np
import pytest

from engine.book import ReferenceBook
from engine.messages import OrderAccepted, OrderReplaced, PhaseChanged, ReplaceRejected
from engine.stream import CANCEL, LIMIT, LIMIT_GTC, MARKET, PHASE, REPLACE, STREAM_DTYPE, STREAM_V2_DTYPE
from engine.types import MAX_QUANTITY, OrderType, Phase, RejectReason, Side, TimeInForce

native = pytest.importorskip("native.book", reason="the native book is not built: run `make build`")
BOOKS = {"reference": ReferenceBook, "native": native.NativeBook}
GTC = TimeInForce.GTC


def iceberg_book(make):
    book = make()
    assert [type(e) for e in book.submit(1, Side.SELL, OrderType.LIMIT, GTC, 103, MAX_QUANTITY,
                                         display_quantity=1)] == [OrderAccepted]
    return book


@pytest.mark.parametrize("name", sorted(BOOKS))
def test_limit_orders_that_cannot_trade_beside_a_billion_slice_iceberg_are_accepted(name):
    book = iceberg_book(BOOKS[name])
    assert [type(e) for e in book.submit(2, Side.BUY, OrderType.LIMIT, GTC, 102, MAX_QUANTITY)] == [OrderAccepted]
    events = book.submit(3, Side.BUY, OrderType.LIMIT, TimeInForce.IOC, 95, MAX_QUANTITY)
    assert [type(e).__name__ for e in events] == ["OrderAccepted", "OrderCanceled"]
    assert book.replace(2, 101, MAX_QUANTITY) == [OrderReplaced(2, 101, MAX_QUANTITY, False)]
    refused = book.replace(1, 95, MAX_QUANTITY + 1)
    assert [(type(e), e.reason) for e in refused] == [(ReplaceRejected, RejectReason.QUANTITY_TOO_LARGE)]
    assert book.set_phase(Phase.CALL) == [PhaseChanged(Phase.CALL, Phase.CONTINUOUS)]
    assert [type(e) for e in book.submit(4, Side.BUY, OrderType.LIMIT, GTC, 110, MAX_QUANTITY)] == [OrderAccepted]
    assert len(book) == 3 and book.best_bid() == 110 and book.best_ask() == 103   # crossed, in the call


def test_batch_replay_accepts_the_same_orders_as_the_reference_book():
    stream = np.zeros(7, dtype=STREAM_V2_DTYPE)
    stream["kind"] = [LIMIT, LIMIT, LIMIT, REPLACE, REPLACE, PHASE, LIMIT]
    stream["order_id"] = [1, 2, 3, 4, 5, 6, 7]
    stream["target_id"] = [0, 0, 0, 2, 1, 0, 0]
    stream["side"] = [Side.SELL, Side.BUY, Side.BUY, 0, 0, 0, Side.BUY]
    stream["tif"] = [0, 0, 1, 0, 0, 0, 0]
    stream["price"] = [103, 102, 95, 101, 95, 0, 110]
    stream["qty"] = [MAX_QUANTITY] * 4 + [MAX_QUANTITY + 1, Phase.CALL, MAX_QUANTITY]
    stream["display_qty"] = [1, 0, 0, 0, 0, 0, 0]
    book, reference = native.NativeBook(), ReferenceBook()
    result, expected = book.replay(stream), reference.replay(stream)
    assert (result.accepted, result.rejected, len(result.fills)) == (expected.accepted, expected.rejected, 0) == (
        6, 1, 0)
    assert book.state_hash() == reference.state_hash()


def large_stream(orders: int) -> np.ndarray:
    """``orders`` one-lot limit orders on as many prices (buys below 1,000,000, sells above), a
    cancel of every third, then a market order each way of 35,000 lots (as many fills), then a buy
    of 5 lots crossing the best ask."""
    half = orders // 2
    rests = np.zeros(orders, dtype=STREAM_DTYPE)
    rests["kind"], rests["order_id"], rests["qty"] = LIMIT_GTC, np.arange(1, orders + 1), 1
    rests["side"][:half], rests["price"][:half] = Side.BUY, 1_000_000 - np.arange(1, half + 1)
    rests["side"][half:], rests["price"][half:] = Side.SELL, 1_000_000 + np.arange(1, orders - half + 1)
    cancels = np.zeros(orders // 3, dtype=STREAM_DTYPE)
    cancels["kind"], cancels["target_id"] = CANCEL, np.arange(1, orders + 1, 3)[: orders // 3]
    cancels["order_id"] = orders + 1 + np.arange(orders // 3)
    takers = np.zeros(3, dtype=STREAM_DTYPE)
    takers["kind"], takers["side"] = [MARKET, MARKET, LIMIT_GTC], [Side.SELL, Side.BUY, Side.BUY]
    takers["qty"], takers["price"] = [35_000, 35_000, 5], [0, 0, 2_000_000]
    takers["order_id"] = 2 * orders + np.arange(3)
    return np.concatenate([rests, cancels, takers])


def test_a_book_grown_past_its_heap_blocks_matches_the_reference_book():
    """200,000 orders on as many prices take the pool, the id tables and the ladder past 2 MiB,
    where each lives in its own mapping grown without copying (native/blocks.pxd); a replay's
    fills, more than 65,536 of them handed to NumPy uncopied, outlive the book, which replays on
    after handing them over."""
    stream = large_stream(200_000)
    reference = ReferenceBook()
    expected = reference.replay(stream)
    book = native.NativeBook()
    first, second = book.replay(stream[:-1]), book.replay(stream[-1:])
    assert book.state_hash() == reference.state_hash() and len(book) == len(reference)
    assert book.memory_bytes() > 200_000 * 32 + 4 * 2**20
    del book
    assert (len(first.fills), len(second.fills)) == (70_000, 5)
    assert np.array_equal(np.concatenate([first.fills, second.fills]), expected.fills)
    first.fills["qty"] += 1
    assert first.fills.flags.writeable and (first.fills["qty"] == 2).all()


def growing_stream(orders: int) -> np.ndarray:
    """``orders`` one-lot limit orders, each on a price of its own and with an id 64 past the last
    (so each takes a block of the accepted-id table), every fourth followed by a cancel of an order
    two before it (so the pool reuses freed slots), then a market order each way."""
    rows, next_id = [], 64
    for k in range(orders):
        side = Side.BUY if k % 2 else Side.SELL
        price = 500_000 - k if side == Side.BUY else 500_000 + 1 + k
        rows.append((LIMIT_GTC, side, price, 1, next_id, 0))
        if k % 4 == 3:
            rows.append((CANCEL, 0, 0, 0, next_id + 1, next_id - 128))
        next_id += 64
    rows += [(MARKET, Side.SELL, 0, orders, next_id, 0), (MARKET, Side.BUY, 0, orders, next_id + 1, 0)]
    return np.array(rows, dtype=STREAM_DTYPE)


@pytest.mark.parametrize("chunk", [1, 7, 1_000, 10_000])
def test_the_batch_replay_grows_each_structure_before_it_is_full(chunk):
    """The batch replay checks the structures' room only now and then (`NativeBook._room_v1`):
    replayed in chunks from an empty book, a stream that takes the order pool, both id tables and
    the ladder through several doublings keeps every structure within its room (the invariant
    checks after each chunk) and ends as the reference book does."""
    stream = growing_stream(6_000)
    reference = ReferenceBook()
    expected = reference.replay(stream)
    book = native.NativeBook()
    fills = []
    for start in range(0, len(stream), chunk):
        fills.append(book.replay(stream[start:start + chunk]).fills)
        if chunk >= 1_000 or start % 997 == 0:
            book.check_invariants()
    book.check_invariants()
    assert book.state_hash() == reference.state_hash() and len(book) == len(reference) == 0
    assert np.array_equal(np.concatenate(fills), expected.fills) and len(expected.fills) == 6_000 - 1_500
