"""Good-till-date orders on the book server: wall time becomes journaled clock commands.

`servers.shard.Shard` keeps the expiries of its books' GTD orders and says which books are due
(`Shard.due`); the OBS sequences a `BookSetClock` for each, journaled like any command, so
recovery replays every expiry exactly, and an OBS restarted after an expiry passed expires the
order at once. Without a live GTD order no clock command is ever made. The shard also sends
each command's `Executed` to the TES of every order it touched: a stop of one TES triggered, or
an order of one TES canceled by self-trade prevention, by another TES's order.
"""

import time
from pathlib import Path

import msgspec
import pytest
from test_tes import BUY, GTC, LIMIT, SELL
from test_tes_advanced import AdvancedExchange, accepted, cancel

from engine.messages import ClockAdvanced, OrderCanceled, OrderExpired, StopTriggered
from engine.types import CancelReason, OrderType, SelfTradePrevention, TimeInForce
from servers import protocol as p
from servers.journal import read_records
from servers.shard import Shard, decode_entry

GTD = TimeInForce.GTD
SECOND = 1_000_000_000
T1, T2 = 1 << 48, 2 << 48


def submit(order_id, side=BUY, price=9_000, quantity=10, tif=GTC, **fields):
    return p.BookSubmit("ACME", order_id, side, LIMIT, tif, price, quantity, "alice", order_id & 0xFFFF, **fields)


def run(shard, *commands, time=1):
    """Execute ``commands`` in turn at exchange ``time``; each one's (events, concerned TES ids)."""
    results = []
    for command in commands:
        _, reply, concerned = shard.execute(shard.sequence + 1, time, command, [])
        results.append((msgspec.msgpack.decode(reply, type=p.Executed).events, concerned))
    return results


# ================================================================ the shard


def test_a_book_is_due_only_while_a_live_gtd_order_in_it_has_expired():
    shard = Shard.empty(["ACME", "BOLT"])
    run(shard, submit(T1 | 1, tif=GTD, expire_at=100), submit(T1 | 2, tif=GTD, expire_at=200),
        submit(T1 | 3), p.BookCancel("ACME", T1 | 2))
    assert shard.next_expiry() == 100
    assert shard.due(99) == []
    assert shard.due(250) == ["ACME"], "once for the book, however many of its orders are due"
    assert shard.next_expiry() is None
    ((events, concerned),) = run(shard, p.BookSetClock("ACME", 250), time=250)
    assert events == [ClockAdvanced(250), OrderExpired(T1 | 1, 10)] and concerned == (1,)
    assert shard.due(10**18) == [], "the canceled order makes no clock command"


def test_a_gtd_order_gone_before_its_expiry_makes_no_clock_command():
    shard = Shard.empty(["ACME"])
    run(shard, submit(T1 | 1, tif=GTD, expire_at=100), submit(T1 | 2, SELL, 9_000, 10))
    assert shard.next_expiry() == 100, "filled, but the heap learns it only when the expiry comes up"
    assert shard.due(100) == [] and shard.next_expiry() is None


def test_expiries_are_restored_from_a_snapshot_for_resting_orders_and_held_stop_limits():
    shard = Shard.empty(["ACME", "BOLT"])
    run(shard, submit(T1 | 1, tif=GTD, expire_at=300),
        p.BookSubmit("ACME", T1 | 2, SELL, OrderType.STOP_LIMIT, GTD, 8_000, 5, "alice", 2, stop_price=8_500,
                     expire_at=200))
    restored = Shard.restore(["ACME", "BOLT"], shard.snapshot(0))
    assert sorted(restored.expiries) == [(200, "ACME", T1 | 2), (300, "ACME", T1 | 1)]
    assert restored.due(200) == ["ACME"]
    ((events, _),) = run(restored, p.BookSetClock("ACME", 200), time=200)
    assert events == [ClockAdvanced(200), OrderExpired(T1 | 2, 5)]


def test_the_expiry_heap_is_compacted_to_the_live_gtd_orders():
    shard = Shard.empty(["ACME"])
    shard._compact_at = 4
    run(shard, *[submit(T1 | n, tif=GTD, expire_at=1_000 + n) for n in range(1, 4)],
        *[p.BookCancel("ACME", T1 | n) for n in range(1, 4)], submit(T1 | 4, tif=GTD, expire_at=2_000),
        submit(T1 | 5, tif=GTD, expire_at=3_000))
    assert sorted(shard.expiries) == [(2_000, "ACME", T1 | 4), (3_000, "ACME", T1 | 5)]


def test_an_executed_goes_to_the_tes_of_a_triggered_stop_and_of_an_order_canceled_by_self_trade_prevention():
    shard = Shard.empty(["ACME"])
    owner = p.owner_of("desk1")
    stop = p.BookSubmit("ACME", T2 | 1, BUY, OrderType.STOP, GTC, 0, 5, "bob", 1, stop_price=9_000)
    results = run(shard, submit(T1 | 1, SELL, 9_000, 10), stop, submit(T1 | 2, BUY, 9_000, 1),
                  p.BookCancel("ACME", T1 | 1), submit(T2 | 2, SELL, 9_100, 5, owner=owner),
                  submit(T1 | 3, BUY, 9_100, 5, owner=owner, stp=SelfTradePrevention.CANCEL_MAKER))
    events, concerned = results[2]
    assert StopTriggered(T2 | 1, 9_000) in events and concerned == (1, 2)
    events, concerned = results[5]
    assert events[1:] == [OrderCanceled(T2 | 2, 5, CancelReason.SELF_TRADE)] and concerned == (1, 2)


# ================================================================ the servers


def clock_commands(exchange):
    """The BookSetClock records of shard A's journal, as (sequence, exchange time, clock time)."""
    directory = Path(exchange.env["EXCHANGE__SHARDS__0__JOURNAL_DIR"])
    return [(record.sequence, record.command.time, record.command.command.time)
            for record in read_records(directory, decode=decode_entry)
            if type(record.command.command) is p.BookSetClock]


@pytest.fixture
def exchange(tmp_path):
    exchange = AdvancedExchange(tmp_path, EXCHANGE__TES__SESSION_TIMEOUT_MS="60000",
                                EXCHANGE__JOURNAL__SNAPSHOT_EVERY="3")
    yield exchange
    exchange.close()


def test_a_gtd_order_expires_while_the_book_server_runs_with_one_journaled_clock_command(exchange):
    alice = exchange.client("alice")
    expire_at = time.time_ns() + 2 * SECOND  # time enough to enter and cancel orders on a loaded machine
    gtd = accepted(alice, "ACME", BUY, LIMIT, GTD, 9_900, 10, expire_at=expire_at)
    gone = accepted(alice, "ACME", BUY, LIMIT, GTD, 9_800, 10, expire_at=expire_at + SECOND // 2)
    cancel(alice, gone.order_id)
    assert gtd.expire_at == expire_at
    expired = alice.one(10.0)
    assert expired == p.OrderExpired(gtd.client_order_id, gtd.order_id, "ACME", 10)
    ((sequence, stamp, clock),) = clock_commands(exchange)
    assert stamp == clock >= expire_at and sequence == 4
    assert alice.open_orders() == [] and alice.book() == ([], [])
    alice.quiet(1.0)  # past the canceled order's expiry
    accepted(alice, "ACME", BUY, LIMIT, GTC, 9_700, 10)
    assert len(clock_commands(exchange)) == 1, "no live GTD order: no more clock commands"


@pytest.mark.parametrize("stop", ["kill", "terminate"])
def test_a_book_server_restarted_after_an_expiry_passed_expires_the_order_at_once(exchange, stop):
    """With a snapshot every 3 commands the GTD order is restored from a snapshot, not replayed."""
    alice = exchange.client("alice")
    expire_at = time.time_ns() + 4 * SECOND  # after the snapshot and the stop, even on a loaded machine
    gtd = accepted(alice, "ACME", BUY, LIMIT, GTD, 9_900, 10, expire_at=expire_at)
    for price in (10_100, 10_200):
        accepted(alice, "ACME", SELL, LIMIT, GTC, price, 1)
    snapshot = Path(exchange.env["EXCHANGE__SHARDS__0__JOURNAL_DIR"]) / "snapshot-3.msgpack"
    deadline = time.monotonic() + 5
    while not snapshot.exists():
        assert time.monotonic() < deadline, "no snapshot after the third command"
        time.sleep(0.02)
    if stop == "kill":
        exchange.obs.kill()
    else:
        assert exchange.obs.stop() == 0
    time.sleep(max(0.0, (expire_at - time.time_ns()) / SECOND) + 0.2)
    assert clock_commands(exchange) == []
    exchange.start_obs()
    assert "replayed from byte 0 " not in exchange.obs.output(), "restored from the snapshot"
    assert alice.one(10.0) == p.OrderExpired(gtd.client_order_id, gtd.order_id, "ACME", 10)
    ((sequence, stamp, _),) = clock_commands(exchange)
    assert sequence == 4 and stamp >= expire_at
    # Recovery replays the clock command (its events checked against the journal's): no second expiry.
    assert exchange.obs.stop() == 0
    exchange.start_obs()
    ready(exchange, 3)
    alice.quiet(0.5)
    assert len(clock_commands(exchange)) == 1 and alice.book() == ([], [(10_100, 1, 1), (10_200, 1, 1)])


def ready(exchange, times):
    """Wait until the TES has said ``times`` times that shard A is ready (once per connection)."""
    deadline = time.monotonic() + 10
    while sum("shard A ready" in line for line in exchange.tes.lines) < times:
        assert time.monotonic() < deadline, exchange.tes.output()
        time.sleep(0.02)
