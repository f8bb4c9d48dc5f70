"""Volatility interruptions: a trade printed outside an instrument's band moves it into a call for
a configured time, then the OBS uncrosses it; all of it journaled, so a restart goes on where the
interruption was (`servers.phases`).
"""

import time
from pathlib import Path

import pytest
import zmq
from procs import Role
from test_obs import OBS, T1, T2, Subscriber, Tes, open_env
from test_obs_phases import SECOND, phase_records, run, submit, untimed

from config.settings import JournalConfig
from engine.messages import AuctionUncrossed, PhaseChanged
from engine.types import Phase, Side
from servers import protocol as p
from servers.journal import Journal, read_records
from servers.phases import Guard, PhaseState
from servers.shard import Shard, decode_entry

BUY, SELL = Side.BUY, Side.SELL
CONTINUOUS, CALL = Phase.CONTINUOUS, Phase.CALL
VOLATILITY = p.PhaseReason.VOLATILITY
BANDS = '[{symbol = "ACME", static_band_bps = 1000, dynamic_band_bps = 100, volatility_call_s = %d}]'


@pytest.fixture
def context():
    context = zmq.Context()
    yield context
    context.destroy(linger=0)


# ================================================================ the guard and the shard


@pytest.mark.parametrize(("prices", "last", "close", "breached"), [
    ([10_100], 10_000, None, False),
    ([10_101], 10_000, None, True),
    ([9_899, 10_000], 10_000, None, True),
    ([10_900], 10_850, None, False),
    ([11_001], 10_950, None, True),
    ([11_001], 10_950, 10_950, False),
    ([10_500], None, None, False),
    ([11_001], None, None, True),
])
def test_a_price_breaches_the_static_band_around_the_close_or_the_dynamic_band_around_the_last_trade(
        prices, last, close, breached):
    """Static 1,000 bps around the close (before one: the reference price 10,000); dynamic 100 bps
    around the last trade (none before the first)."""
    assert Guard(1_000, 100, 5, 10_000).breached(prices, last, close) is breached


def guarded(call_s=5):
    return Shard.empty(["ACME", "BOLT"], {"ACME": Guard(1_000, 100, call_s, 10_000)})


def test_a_print_outside_a_band_owes_an_interruption_which_its_phase_command_settles():
    shard = guarded()
    run(shard, submit(T1 | 1, SELL, 10_000, 1), submit(T2 | 1, BUY, 10_000, 1), submit(T1 | 2, SELL, 10_200, 5),
        submit(T2 | 2, BUY, 10_100, 1))
    assert shard.owed == set(), "inside the bands"
    run(shard, submit(T2 | 3, BUY, 10_200, 5))
    assert shard.owed == {"ACME"} and shard.phases["ACME"].owed
    interruption = shard.guards["ACME"].interruption("ACME", 7 * SECOND)
    assert interruption == p.BookSetPhase("ACME", CALL, VOLATILITY, 12 * SECOND)
    ((events, _, market_data),) = run(shard, interruption, time=7 * SECOND)
    assert events == [PhaseChanged(CALL, CONTINUOUS)] and shard.owed == set()
    assert market_data == [p.PhaseUpdate("ACME", 13, CALL, VOLATILITY, 12 * SECOND, 7 * SECOND)]
    assert shard.phases["ACME"] == PhaseState(VOLATILITY, 7 * SECOND, 12 * SECOND)


def test_an_uncross_far_from_the_last_trade_and_prints_in_a_call_owe_nothing():
    shard = guarded()
    run(shard, submit(T1 | 1, SELL, 10_000, 1), submit(T2 | 1, BUY, 10_000, 1), p.BookSetPhase("ACME", CALL),
        submit(T2 | 2, BUY, 10_600, 2), submit(T1 | 2, SELL, 10_500, 1))
    *_, (events, _, _) = run(shard, p.BookSetPhase("ACME", CONTINUOUS, VOLATILITY))
    assert events[1] == AuctionUncrossed(10_600, 1), "600 bps from the last trade"
    assert shard.owed == set() and shard.phases["ACME"].until == 0


def test_the_close_is_the_last_price_at_the_end_of_the_day_and_survives_a_snapshot():
    shard = guarded()
    run(shard, p.BookExpireDay("ACME"))
    assert shard.phases["ACME"].close is None, "no trade yet: the reference price stays the centre"
    run(shard, submit(T1 | 1, SELL, 10_500, 2), submit(T2 | 1, BUY, 10_500, 1))
    assert shard.owed == set(), "10,500 is inside 1,000 bps of the reference price 10,000"
    run(shard, p.BookExpireDay("ACME"), p.BookExpireDay("BOLT"))
    assert shard.phases["ACME"].close == 10_500 and shard.phases["BOLT"].close is None
    run(shard, submit(T2 | 2, BUY, 10_500, 1), submit(T1 | 2, SELL, 11_500, 1), submit(T2 | 3, BUY, 11_500, 1))
    assert shard.owed == {"ACME"}, "11,500 is 952 bps from 10,500, but 11,500 > 10,500 + 1%"
    restored = Shard.restore(["ACME", "BOLT"], shard.snapshot(0), shard.guards)
    assert restored.phases == shard.phases and restored.owed == {"ACME"}, "an owed interruption survives too"


# ================================================================ the servers


def interrupted(env, tes, call_s):
    """Trade at 10,000 then at 10,200 (200 bps from the last trade: outside the dynamic band);
    the records of the interruption (its command, and the trade before it)."""
    tes.send(submit(T1 | 1, SELL, 10_000, 1), submit(T2 | 1, BUY, 10_000, 1), submit(T1 | 2, SELL, 10_200, 5),
             submit(T2 | 2, BUY, 10_200, 1))
    executed = tes.receive(4)
    assert executed[-1].sequence == 4
    directory = Path(env["EXCHANGE__SHARDS__0__JOURNAL_DIR"])
    ((sequence, stamp, command),) = phase_records(env, 1)
    (trade,) = [record.command for record in read_records(directory, decode=decode_entry) if record.sequence == 4]
    assert sequence == 5 and stamp == trade.time, "right after the trade, at its time"
    assert command == p.BookSetPhase("ACME", CALL, VOLATILITY, stamp + call_s * SECOND)
    return command, trade


def test_a_trade_outside_the_band_calls_for_the_configured_time_then_the_obs_uncrosses(tmp_path, context):
    env = open_env(tmp_path, EXCHANGE__PHASES__INSTRUMENTS=BANDS % 2)
    with Role(OBS, env) as obs:
        tes = Tes(context, env, tes_id=1)
        subscriber = Subscriber(context, env, ("ACME",))
        interruption, trade = interrupted(env, tes, 2)
        tes.send(p.BookCancel("ACME", T1 | 2), submit(T1 | 3, SELL, 10_500, 2), submit(T2 | 3, BUY, 10_600, 2))
        assert [len(executed.events) for executed in tes.receive(3)] == [1, 1, 1], "nothing trades in the call"
        assert tes.view("ACME").phase == CALL
        (uncross,) = tes.receive(1, timeout=10.0)
        assert uncross.events[:2] == [PhaseChanged(CONTINUOUS, CALL), AuctionUncrossed(10_500, 2)]
        records = phase_records(env)
        assert [(sequence, command) for sequence, _, command in records] == [
            (5, interruption), (9, p.BookSetPhase("ACME", CONTINUOUS, VOLATILITY))]
        assert records[1][1] >= interruption.until, "not before the call's end"
        published = untimed(subscriber.read())
        assert p.PhaseUpdate("ACME", trade.market_data[-1].sequence + 1, CALL, VOLATILITY, interruption.until) in \
            published, "published right after the trade's market data"
        summary = next(index for index, message in enumerate(published) if type(message) is p.AuctionSummary)
        assert [type(message) for message in published[summary - 1:summary + 2]] == [
            p.PhaseUpdate, p.AuctionSummary, p.Trade] and (published[summary].price, published[summary].volume) == (
            10_500, 2)
        tes.send(submit(T1 | 4, SELL, 10_600, 1), submit(T2 | 4, BUY, 10_600, 1))
        tes.receive(2)
        assert len(phase_records(env)) == 2 and tes.view("ACME").phase == CONTINUOUS, \
            "the uncross's print at 10,500 was no interruption's reference"
        assert obs.stop() == 0


@pytest.mark.parametrize("stop", ["kill", "terminate"])
def test_a_restart_during_an_interruption_ends_it_at_its_time(tmp_path, context, stop):
    """With a snapshot every 2 commands the interruption's end is restored from a snapshot. The
    call lasts long enough for the stop and the restart on a slow machine."""
    env = open_env(tmp_path, EXCHANGE__PHASES__INSTRUMENTS=BANDS % 8, EXCHANGE__JOURNAL__SNAPSHOT_EVERY="2")
    with Role(OBS, env) as obs:
        interruption, _ = interrupted(env, Tes(context, env, tes_id=1), 8)
        snapshot = Path(env["EXCHANGE__SHARDS__0__JOURNAL_DIR"]) / "snapshot-5.msgpack"
        deadline = time.monotonic() + 5
        while not snapshot.exists():
            assert time.monotonic() < deadline, "no snapshot after the interruption"
            time.sleep(0.02)
        if stop == "kill":
            obs.kill()
        else:
            assert obs.stop() == 0
    with Role(OBS, env) as obs:
        assert "replayed from byte 0 " not in obs.output(), "restored from the snapshot"
        assert Tes(context, env).view("ACME").phase == CALL
        ((sequence, stamp, command),) = phase_records(env, 2, timeout=30)[1:]
        assert (sequence, command) == (6, p.BookSetPhase("ACME", CONTINUOUS, VOLATILITY))
        assert stamp >= interruption.until
        assert obs.stop() == 0
    with Role(OBS, env) as obs:
        assert Tes(context, env).view("ACME").phase == CONTINUOUS and len(phase_records(env)) == 2
        assert obs.stop() == 0


def test_an_obs_that_crashed_between_the_trade_and_its_interruption_interrupts_first(tmp_path, context):
    env = open_env(tmp_path, EXCHANGE__PHASES__INSTRUMENTS=BANDS % 2)
    directory = Path(env["EXCHANGE__SHARDS__0__JOURNAL_DIR"])
    directory.mkdir()
    shard, records = guarded(2), []
    for command in (submit(T1 | 1, SELL, 10_000, 1), submit(T2 | 1, BUY, 10_000, 1), submit(T2 | 2, BUY, 10_300, 1),
                    submit(T1 | 2, SELL, 10_300, 1)):
        payload, _, _ = shard.execute(shard.sequence + 1, time.time_ns(), command, [])
        records.append((shard.sequence, payload))
    assert shard.owed == {"ACME"}
    journal = Journal(directory, JournalConfig(), 0)
    journal.append(records)
    journal.close()
    with Role(OBS, env) as obs:
        ((sequence, stamp, command),) = phase_records(env, 1)
        assert (sequence, command.phase, command.reason) == (5, CALL, VOLATILITY)
        assert command.until == stamp + 2 * SECOND and stamp >= decode_entry(records[-1][1]).time
        assert obs.stop() == 0
