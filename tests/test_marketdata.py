"""Market data from the shard handler, in process (`servers.marketdata`): exact and replayed."""

import msgspec
import pytest
from obs_streams import SYMBOLS, commands

from engine.messages import OrderFilled
from engine.types import Side
from servers.protocol import (
    BookCancel,
    BookExpireDay,
    BookReplace,
    BookSubmit,
    DepthUpdate,
    Executed,
    JournalEntry,
    Quote,
    Trade,
)
from servers.shard import Shard

BUY, SELL = Side.BUY, Side.SELL


def execute_all(shard, stream):
    market_data = []
    for command in stream:
        shard.execute(shard.sequence + 1, 0, command, market_data)
    return market_data


def test_resting_fill_cancel_and_replace_publish_exact_messages():
    shard = Shard.empty(SYMBOLS)
    sell, buy = BookSubmit("ACME", 1, SELL, 0, 0, 101, 10), BookSubmit("ACME", 2, BUY, 0, 0, 101, 4)
    assert execute_all(shard, [sell]) == [
        DepthUpdate("ACME", 1, SELL, 101, 10, 1),
        Quote("ACME", 2, 0, 0, 101, 10),
    ]
    assert execute_all(shard, [buy]) == [
        Trade("ACME", 3, 1, 101, 4, BUY),
        DepthUpdate("ACME", 4, SELL, 101, 6, 1),
        Quote("ACME", 5, 0, 0, 101, 6),
    ]
    assert execute_all(shard, [BookSubmit("ACME", 3, BUY, 0, 3, 99, 5), BookSubmit("ACME", 4, BUY, 0, 0, 98, 1)]) == [
        DepthUpdate("ACME", 6, BUY, 99, 5, 1),
        Quote("ACME", 7, 99, 5, 101, 6),
        DepthUpdate("ACME", 8, BUY, 98, 1, 1),
    ]
    assert execute_all(shard, [BookReplace("ACME", 3, 98, 5)]) == [
        DepthUpdate("ACME", 9, BUY, 99, 0, 0),
        DepthUpdate("ACME", 10, BUY, 98, 6, 2),
        Quote("ACME", 11, 98, 6, 101, 6),
    ]
    assert execute_all(shard, [BookCancel("ACME", 4), BookExpireDay("ACME")]) == [
        DepthUpdate("ACME", 12, BUY, 98, 5, 1),
        Quote("ACME", 13, 98, 5, 101, 6),
        DepthUpdate("ACME", 14, BUY, 98, 0, 0),
        Quote("ACME", 15, 0, 0, 101, 6),
    ]
    assert (shard.feeds["ACME"].last_price, shard.feeds["BOLT"].sequence) == (101, 0)


def test_rejected_and_unchanged_commands_publish_nothing():
    shard = Shard.empty(SYMBOLS)
    execute_all(shard, [BookSubmit("ACME", 1, SELL, 0, 0, 101, 10)])
    quiet = [
        BookSubmit("ACME", 1, SELL, 0, 0, 101, 10),  # duplicate id
        BookSubmit("ACME", 2, BUY, 0, 1, 100, 3),  # IOC that does not cross
        BookCancel("ACME", 77),
        BookReplace("ACME", 1, 101, 10),  # no change
        BookReplace("ACME", 1, 0, 10),
        BookExpireDay("ACME"),  # no DAY orders
        BookSubmit("ACME", 3, 9, 0, 0, 100, 1),  # unknown side
    ]
    assert execute_all(shard, quiet) == []
    assert shard.sequence == 8 and shard.feeds["ACME"].sequence == 2


def test_sweep_over_levels_publishes_a_trade_and_an_update_per_fill_level_then_one_quote():
    shard = Shard.empty(SYMBOLS)
    execute_all(shard, [BookSubmit("BOLT", i, SELL, 0, 0, 100 + i, 10) for i in (1, 2, 3)])
    start = shard.feeds["BOLT"].sequence
    messages = execute_all(shard, [BookSubmit("BOLT", 9, BUY, 0, 0, 102, 25)])
    assert [type(m) for m in messages] == [Trade, Trade, DepthUpdate, DepthUpdate, DepthUpdate, Quote]
    assert [m.sequence for m in messages] == list(range(start + 1, start + 7))
    assert messages[2:] == [
        DepthUpdate("BOLT", start + 3, SELL, 101, 0, 0),
        DepthUpdate("BOLT", start + 4, SELL, 102, 0, 0),
        DepthUpdate("BOLT", start + 5, BUY, 102, 5, 1),
        Quote("BOLT", start + 6, 102, 5, 103, 10),
    ]


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_deltas_applied_to_a_copy_rebuild_every_book_after_every_command(seed):
    """Each update changes the copy, sequences are consecutive and the copy always equals the book."""
    shard = Shard.empty(SYMBOLS)
    copies = {symbol: ({}, {}) for symbol in SYMBOLS}
    sequences = dict.fromkeys(SYMBOLS, 0)
    for command in commands(600, seed):
        market_data = []
        sequence, stamp = shard.sequence + 1, 1_700_000_000_000_000_000 + shard.sequence
        entry, reply, _ = shard.execute(sequence, stamp, command, market_data)
        executed = msgspec.msgpack.decode(reply, type=Executed)
        assert msgspec.msgpack.decode(entry, type=JournalEntry) == JournalEntry(
            sequence, stamp, command, executed.events, market_data), "the journal entry holds what was published"
        assert executed.time == stamp and all(message.time == stamp for message in market_data)
        fills = [e for e in executed.events if isinstance(e, OrderFilled)]
        assert [(m.trade_id, m.price, m.quantity) for m in market_data if type(m) is Trade] == [
            (f.sequence, f.price, f.quantity) for f in fills
        ]
        for message in market_data:
            assert message.symbol == command.symbol
            assert message.sequence == sequences[message.symbol] + 1
            sequences[message.symbol] = message.sequence
            if type(message) is DepthUpdate:
                levels = copies[message.symbol][message.side]
                new = (message.quantity, message.orders) if message.quantity else None
                assert levels.get(message.price) != new, "an update must change its level"
                if new:
                    levels[message.price] = new
                else:
                    del levels[message.price]
        feed = shard.feeds[command.symbol]
        snapshot = feed.snapshot()
        bids, asks = copies[command.symbol]
        assert sorted(((p, q, n) for p, (q, n) in bids.items()), reverse=True) == snapshot.bids
        assert sorted((p, q, n) for p, (q, n) in asks.items()) == snapshot.asks
        quotes = [m for m in market_data if type(m) is Quote]
        if quotes:
            bid = snapshot.bids[0][:2] if snapshot.bids else (0, 0)
            ask = snapshot.asks[0][:2] if snapshot.asks else (0, 0)
            assert quotes[-1] == Quote(command.symbol, quotes[-1].sequence, *bid, *ask, stamp)
    assert {s: f.sequence for s, f in shard.feeds.items()} == sequences


def test_book_view_clamps_levels_and_snapshot_is_full_depth():
    shard = Shard.empty(SYMBOLS)
    execute_all(shard, [BookSubmit("ACME", i, BUY, 0, 0, 90 + i, i) for i in range(1, 6)])
    feed = shard.feeds["ACME"]
    assert feed.view(7, 2).bids == [(95, 5, 1), (94, 4, 1)]
    assert feed.view(7, 2**70).bids == feed.snapshot().bids == [(90 + i, i, 1) for i in range(5, 0, -1)]
    assert feed.view(7, -5).bids == []
    assert (feed.view(7, 1).sequence, feed.snapshot().sequence) == (feed.sequence, feed.sequence)
