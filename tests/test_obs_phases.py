"""Trading phases on the book server: phase commands through the shard, their market data, the
schedules of the configuration, and recovery.

The shard runs `BookSetPhase` like any command: journaled, replayed, its uncross's `Executed`
sent to the TES of every order it touched. The feed publishes a `PhaseUpdate` per phase command,
an `Indicative` in a call whenever the indicative uncross changes, and an uncross as one
`AuctionSummary` before its trades. The OBS sequences a schedule's changes itself (reason
SCHEDULE), at their times, and after a restart the change it missed.
"""

import datetime
import time
import zoneinfo
from pathlib import Path

import msgspec
import pytest
import zmq
from procs import Role
from test_obs import OBS, T1, T2, Subscriber, Tes, open_env, snapshot_of

from config.settings import ConfigError, load_config
from engine.messages import AuctionUncrossed, CommandRejected, OrderCanceled, PhaseChanged
from engine.types import CancelReason, OrderType, Phase, RejectReason, Side, TimeInForce
from servers import protocol as p
from servers.journal import read_records
from servers.phases import IDLE_NS, Guard, Planner, Schedule
from servers.shard import Shard, decode_entry

BUY, SELL = Side.BUY, Side.SELL
CONTINUOUS, CALL, HALTED = Phase.CONTINUOUS, Phase.CALL, Phase.HALTED
OPERATOR, SCHEDULE = p.PhaseReason.OPERATOR, p.PhaseReason.SCHEDULE
SECOND = 1_000_000_000


@pytest.fixture
def context():
    context = zmq.Context()
    yield context
    context.destroy(linger=0)


def submit(order_id, side, price, quantity, symbol="ACME", order_type=OrderType.LIMIT, tif=TimeInForce.GTC):
    return p.BookSubmit(symbol, order_id, side, order_type, tif, price, quantity)


def run(shard, *commands, time=1):
    """Execute ``commands`` in turn; each one's (events, concerned TES ids, market data)."""
    results = []
    for command in commands:
        market_data = []
        _, reply, concerned = shard.execute(shard.sequence + 1, time, command, market_data)
        results.append((msgspec.msgpack.decode(reply, type=p.Executed).events, concerned, market_data))
    return results


# ================================================================ the shard and its feed


def test_a_call_rests_orders_publishes_indicatives_and_an_uncross_summary_before_its_trades():
    shard = Shard.empty(["ACME"])
    results = run(shard, p.BookSetPhase("ACME", CALL), submit(T1 | 1, BUY, 101, 10), submit(T2 | 1, SELL, 99, 6),
                  submit(T2 | 2, SELL, 100, 2), p.BookCancel("ACME", T2 | 2), p.BookSetPhase("ACME", CONTINUOUS),
                  time=5)
    market_data = [message for _, _, messages in results for message in messages]
    assert market_data == [
        p.PhaseUpdate("ACME", 1, CALL, OPERATOR, 0, 5),
        p.DepthUpdate("ACME", 2, BUY, 101, 10, 1, 5),
        p.Quote("ACME", 3, 101, 10, 0, 0, 5),
        p.DepthUpdate("ACME", 4, SELL, 99, 6, 1, 5),
        p.Quote("ACME", 5, 101, 10, 99, 6, 5),
        p.Indicative("ACME", 6, 101, 6, 5),
        p.DepthUpdate("ACME", 7, SELL, 100, 2, 1, 5),
        p.Indicative("ACME", 8, 101, 8, 5),
        p.DepthUpdate("ACME", 9, SELL, 100, 0, 0, 5),
        p.Indicative("ACME", 10, 101, 6, 5),
        p.PhaseUpdate("ACME", 11, CONTINUOUS, OPERATOR, 0, 5),
        p.AuctionSummary("ACME", 12, 101, 6, 5),
        p.Trade("ACME", 13, 1, 101, 6, SELL, 5),
        p.DepthUpdate("ACME", 14, BUY, 101, 4, 1, 5),
        p.DepthUpdate("ACME", 15, SELL, 99, 0, 0, 5),
        p.Quote("ACME", 16, 101, 4, 0, 0, 5),
    ], "an unchanged indicative (entering the call, an order that moves nothing) is not published again"
    events, concerned, _ = results[-1]
    assert events[:2] == [PhaseChanged(CONTINUOUS, CALL), AuctionUncrossed(101, 6)] and concerned == (2, 1)
    assert shard.traded == {"ACME": (6, 101, (2, 1))}, \
        "the uncross's trades mark the symbol like any, with the TESs its Executed went to"
    assert shard.feeds["ACME"].snapshot() == p.DepthSnapshot("ACME", 16, [(101, 4, 1)], [], 101, CONTINUOUS, 0, 0,
                                                                           p.PhaseReason.OPERATOR, 0)


def test_the_uncross_sends_its_executed_to_the_owner_of_a_waiting_market_order_it_cancels():
    shard = Shard.empty(["ACME"])
    ioc = TimeInForce.IOC
    *_, (events, concerned, _) = run(shard, p.BookSetPhase("ACME", CALL), submit(T1 | 1, SELL, 100, 2),
                                     submit(T2 | 1, BUY, 0, 5, order_type=OrderType.MARKET, tif=ioc),
                                     p.BookSetPhase("ACME", CONTINUOUS))
    assert events[1] == AuctionUncrossed(100, 2)
    assert events[-1] == OrderCanceled(T2 | 1, 3, CancelReason.UNFILLED) and concerned == (2, 1)


def test_a_feed_restored_from_a_snapshot_in_a_call_continues_with_the_same_market_data():
    shard = Shard.empty(["ACME", "BOLT"])
    run(shard, p.BookSetPhase("ACME", CALL, p.PhaseReason.SCHEDULE), submit(T1 | 1, BUY, 101, 10),
        submit(T2 | 1, SELL, 99, 6))
    restored = Shard.restore(["ACME", "BOLT"], shard.snapshot(0))
    assert restored.phases == shard.phases and restored.phases["ACME"].reason == SCHEDULE
    assert restored.feeds["ACME"].snapshot() == shard.feeds["ACME"].snapshot() == p.DepthSnapshot(
        "ACME", 6, [(101, 10, 1)], [(99, 6, 1)], None, CALL, 101, 6, SCHEDULE, 0)
    more = (submit(T2 | 2, SELL, 101, 4), p.BookSetPhase("ACME", CONTINUOUS))
    assert run(restored, *more) == run(shard, *more)


def test_an_unknown_phase_gets_the_books_reject_and_publishes_nothing():
    shard = Shard.empty(["ACME"])
    ((events, concerned, market_data),) = run(shard, p.BookSetPhase("ACME", 3))
    assert events == [CommandRejected(RejectReason.UNKNOWN_PHASE, RejectReason.UNKNOWN_PHASE.text)]
    assert (concerned, market_data, shard.phases["ACME"].since) == ((), [], 0), "the state is untouched"
    assert shard.feeds["ACME"].book.phase is CONTINUOUS


def test_a_halt_keeps_the_indicative_and_publishes_it_as_cancels_change_it():
    shard = Shard.empty(["ACME"])
    run(shard, p.BookSetPhase("ACME", CALL), submit(T1 | 1, BUY, 101, 10), submit(T2 | 1, SELL, 99, 6),
        submit(T2 | 2, SELL, 100, 1))
    (_, _, halted), (refused, _, nothing), (_, _, canceled) = run(
        shard, p.BookSetPhase("ACME", HALTED), submit(T2 | 3, SELL, 100, 1), p.BookCancel("ACME", T2 | 1))
    assert halted == [p.PhaseUpdate("ACME", 9, HALTED, OPERATOR, 0, 1)], "the indicative stands: no message"
    assert refused[0].reason == RejectReason.NOT_ALLOWED_IN_PHASE and nothing == []
    assert canceled[-1] == p.Indicative("ACME", 12, 101, 1, 1)


# ================================================================ schedules and their configuration


def test_a_schedule_gives_the_phase_of_its_latest_time_wrapping_over_midnight_in_its_time_zone():
    zone = zoneinfo.ZoneInfo("Europe/London")
    schedule = Schedule([(8 * 3600, CALL), (8 * 3600 + 1800, CONTINUOUS), (16 * 3600 + 30 * 60, HALTED)], zone)

    def at(month, day, hour, minute):
        return int(datetime.datetime(2026, month, day, hour, minute, tzinfo=zone).timestamp()) * SECOND

    assert schedule.current(at(7, 1, 7, 59)) == (at(6, 30, 16, 30), HALTED), "yesterday's close"
    assert schedule.current(at(7, 1, 8, 0)) == (at(7, 1, 8, 0), CALL)
    assert schedule.current(at(12, 1, 12, 0)) == (at(12, 1, 8, 30), CONTINUOUS)
    utc = datetime.datetime(2026, 7, 1, 7, 0, tzinfo=datetime.UTC).timestamp() * SECOND
    assert at(7, 1, 8, 0) == utc, "08:00 in London in summer is 07:00 UTC"
    assert schedule.next_change(at(7, 1, 17, 0)) == at(7, 2, 8, 0)
    assert schedule.next_change(at(7, 1, 8, 0)) == at(7, 1, 8, 30), "the change at now is not the next"


def test_the_planner_makes_each_scheduled_change_once_and_leaves_an_operator_halt_alone():
    schedule = Schedule([(8 * 3600, CALL), (9 * 3600, CONTINUOUS)], zoneinfo.ZoneInfo("UTC"))
    day = int(datetime.datetime(2026, 12, 3, tzinfo=datetime.UTC).timestamp()) * SECOND
    hour = 3600 * SECOND
    shard, planner = Shard.empty(["ACME", "BOLT"]), Planner(["ACME", "BOLT"], {"ACME": schedule}, {})
    assert planner.due(shard, day + 7 * hour) == ([], day + 7 * hour + IDLE_NS), "in force already: continuous"
    assert planner.due(shard, day + 8 * hour - SECOND) == ([], day + 8 * hour), "look again at the next change"
    commands, again = planner.due(shard, day + 8 * hour)
    assert (commands, again) == ([p.BookSetPhase("ACME", CALL, SCHEDULE)], day + 8 * hour + IDLE_NS)
    run(shard, *commands, time=day + 8 * hour)
    assert planner.due(shard, day + 8 * hour + 1)[0] == [], "made once"
    run(shard, p.BookSetPhase("ACME", CONTINUOUS), time=day + 8 * hour + 2)
    assert planner.due(shard, day + 8 * hour + 3)[0] == [], "the operator's phase stands until the next change"
    run(shard, p.BookSetPhase("ACME", HALTED), time=day + 8 * hour + 4)
    assert planner.due(shard, day + 10 * hour)[0] == [], "an operator halt outlasts the schedule's changes"
    run(shard, p.BookSetPhase("ACME", CONTINUOUS, SCHEDULE), time=day + 10 * hour)
    assert planner.due(shard, day + 10 * hour + 1)[0] == []
    assert planner.due(shard, day + 32 * hour)[0] == [p.BookSetPhase("ACME", CALL, SCHEDULE)], "the next day's"


def test_the_planner_interrupts_when_owed_and_ends_the_call_at_its_time_in_the_schedules_phase():
    schedule = Schedule([(0, CONTINUOUS), (12 * 3600, CALL)], zoneinfo.ZoneInfo("UTC"))
    day = int(datetime.datetime(2026, 12, 3, tzinfo=datetime.UTC).timestamp()) * SECOND
    guards = {"ACME": Guard(0, 100, 5, 10_000)}
    shard, planner = Shard.empty(["ACME"], guards), Planner(["ACME"], {"ACME": schedule}, guards)
    now = day + 11 * 3600 * SECOND
    run(shard, submit(T1 | 1, SELL, 10_000, 1), submit(T2 | 1, BUY, 10_000, 1), submit(T1 | 2, SELL, 10_200, 1),
        submit(T2 | 2, BUY, 10_200, 1), time=now)
    commands, _ = planner.due(shard, now + 1)
    end = now + 1 + 5 * SECOND
    assert commands == [p.BookSetPhase("ACME", CALL, p.PhaseReason.VOLATILITY, end)]
    run(shard, *commands, time=now + 1)
    assert planner.due(shard, now + 2) == ([], end), "look again when the call ends"
    volatility = p.PhaseReason.VOLATILITY
    assert planner.due(shard, end)[0] == [p.BookSetPhase("ACME", CONTINUOUS, volatility)]
    assert planner.due(shard, day + 12 * 3600 * SECOND)[0] == [p.BookSetPhase("ACME", CALL, volatility)], \
        "the scheduled call came while the book was in the interruption's: its end leaves the book in the call"


@pytest.mark.parametrize(("phases", "message"), [
    ('{time_zone = "Mars/Olympus"}', "phases.time_zone: 'Mars/Olympus' is not a known IANA time zone"),
    ('{instruments = [{symbol = "NOPE"}]}', "phases.instruments[0].symbol: 'NOPE' is not an instrument"),
    ('{instruments = [{symbol = "ACME"}, {symbol = "ACME"}]}', "phases.instruments: symbol 'ACME' appears twice"),
    ('{instruments = [{symbol = "ACME", schedule = [{at = "9:00", phase = "call"}]}]}',
     "phases.instruments[0].schedule[0].at: Expected `str` matching regex"),
    ('{instruments = [{symbol = "ACME", schedule = [{at = "09:00", phase = "auction"}]}]}',
     "phases.instruments[0].schedule[0].phase: Invalid enum value 'auction'"),
    ('{instruments = [{symbol = "ACME", schedule = [{at = "09:00", phase = "call"}, {at = "08:00", phase = '
     '"continuous"}]}]}', "phases.instruments[0]: the schedule of ACME must list its times of day in increasing "
     "order, each once: 09:00, 08:00"),
    ('{instruments = [{symbol = "ACME", dynamic_band_bps = 100}]}',
     "phases.instruments[0]: ACME has a volatility band but volatility_call_s is 0"),
    ('{instruments = [{symbol = "ACME", static_band_bps = -1, volatility_call_s = 5}]}',
     "phases.instruments[0].static_band_bps: Expected `int` >= 0"),
])
def test_a_bad_phases_configuration_is_refused_naming_the_key(phases, message):
    with pytest.raises(ConfigError) as refused:
        load_config(environ={"EXCHANGE__PHASES": phases})
    assert str(refused.value).startswith(message), str(refused.value)


# ================================================================ the servers


def time_of_day(wall: float) -> str:
    """``wall`` (epoch seconds) as a UTC time of day HH:MM:SS, rounded up to a whole second."""
    return datetime.datetime.fromtimestamp(int(wall) + 1, datetime.UTC).strftime("%H:%M:%S")


def schedule(*changes):
    """The override giving ACME a schedule of ``changes`` ((seconds from now, phase name)), and
    the changes' times (epoch seconds), in their order."""
    now = time.time()
    if (now + 30) % 86_400 < 60:
        pytest.skip("too close to midnight UTC for a schedule seconds ahead")
    entries = sorted((time_of_day(now + ahead), phase) for ahead, phase in changes)
    listed = ", ".join(f'{{at = "{at}", phase = "{phase}"}}' for at, phase in entries)
    return ({"EXCHANGE__PHASES__INSTRUMENTS": f'[{{symbol = "ACME", schedule = [{listed}]}}]'},
            [int(now) + 1 + ahead for ahead, _ in changes])


def schedule_env(tmp_path, *changes):
    """An exchange (CURVE off) whose ACME follows the schedule of ``changes`` (`schedule`); the times."""
    overrides, times = schedule(*changes)
    return open_env(tmp_path, **overrides), times


def phase_records(env, wait_for=0, timeout=15.0):
    """The BookSetPhase records of shard A's journal as (sequence, time, command), once there are
    at least ``wait_for``."""
    directory = Path(env["EXCHANGE__SHARDS__0__JOURNAL_DIR"])
    deadline = time.monotonic() + timeout
    while True:
        records = [(record.sequence, record.command.time, record.command.command)
                   for record in read_records(directory, decode=decode_entry)
                   if type(record.command.command) is p.BookSetPhase]
        if len(records) >= wait_for:
            return records
        assert time.monotonic() < deadline, f"{len(records)} phase commands, not {wait_for}: {records}"
        time.sleep(0.05)


def untimed(messages):
    """Market data with the times checked (positive) and zeroed."""
    assert all(message.time > 0 for message in messages), messages
    return [msgspec.structs.replace(message, time=0) for message in messages]


def test_a_schedule_calls_and_reopens_at_its_times_and_the_uncross_is_published_in_order(tmp_path, context):
    env, (call_at, reopen_at) = schedule_env(tmp_path, (8, "call"), (11, "continuous"))
    with Role(OBS, env) as obs:
        tes = Tes(context, env, tes_id=1)
        subscriber = Subscriber(context, env, ("ACME",))
        assert phase_records(env) == [], "continuous by the schedule already (its last change was yesterday's)"
        ((sequence, stamp, command),) = phase_records(env, 1)
        assert command == p.BookSetPhase("ACME", CALL, SCHEDULE) and stamp >= call_at * SECOND and sequence == 1
        tes.send(submit(T1 | 1, BUY, 101, 10), submit(T2 | 1, SELL, 99, 6))
        assert [len(executed.events) for executed in tes.receive(2)] == [1, 1], "both rest in the call"
        view = tes.view("ACME")
        assert (view.phase, view.indicative_price, view.indicative_volume) == (CALL, 101, 6)
        (uncross,) = tes.receive(1, timeout=15.0)
        assert uncross.events[:2] == [PhaseChanged(CONTINUOUS, CALL), AuctionUncrossed(101, 6)]
        ((_, stamp, command),) = phase_records(env)[1:]
        assert command == p.BookSetPhase("ACME", CONTINUOUS, SCHEDULE) and stamp >= reopen_at * SECOND
        assert untimed(subscriber.read()) == [
            p.PhaseUpdate("ACME", 1, CALL, SCHEDULE),
            p.DepthUpdate("ACME", 2, BUY, 101, 10, 1),
            p.Quote("ACME", 3, 101, 10, 0, 0),
            p.DepthUpdate("ACME", 4, SELL, 99, 6, 1),
            p.Quote("ACME", 5, 101, 10, 99, 6),
            p.Indicative("ACME", 6, 101, 6),
            p.PhaseUpdate("ACME", 7, CONTINUOUS, SCHEDULE),
            p.AuctionSummary("ACME", 8, 101, 6),
            p.Trade("ACME", 9, 1, 101, 6, SELL),
            p.DepthUpdate("ACME", 10, BUY, 101, 4, 1),
            p.DepthUpdate("ACME", 11, SELL, 99, 0, 0),
            p.Quote("ACME", 12, 101, 4, 0, 0),
        ]
        assert obs.stop() == 0


def test_a_change_missed_while_down_is_made_first_and_a_restart_in_the_call_keeps_phase_and_sequences(
        tmp_path, context):
    env, (call_at, _) = schedule_env(tmp_path, (9, "call"), (3 * 3600, "continuous"))
    with Role(OBS, env) as obs:
        first = Tes(context, env, tes_id=1)
        first.send(submit(T1 | 1, BUY, 101, 10))
        first.receive(1)  # journaled before the stop: a stop does not serve what is still unread
        assert obs.stop() == 0
    assert time.time() < call_at, "stopped before the call"
    time.sleep(call_at - time.time() + 0.3)
    with Role(OBS, env) as obs:
        ((sequence, stamp, command),) = phase_records(env, 1)
        assert (sequence, command) == (2, p.BookSetPhase("ACME", CALL, SCHEDULE)) and stamp >= call_at * SECOND
        tes = Tes(context, env, tes_id=1)
        tes.send(submit(T2 | 1, SELL, 99, 6))
        tes.receive(1)
        before = snapshot_of(context, env, "ACME"), tes.view("ACME")
        assert before[0] == p.DepthSnapshot("ACME", 6, [(101, 10, 1)], [(99, 6, 1)], None, CALL, 101, 6,
                                            SCHEDULE, 0)
        obs.kill()
    with Role(OBS, env) as obs:
        tes = Tes(context, env, tes_id=1)
        assert (snapshot_of(context, env, "ACME"), tes.view("ACME")) == before
        subscriber = Subscriber(context, env)
        tes.send(submit(T2 | 2, SELL, 100, 2))
        tes.receive(1)
        acme = [message for message in subscriber.read() if message.symbol == "ACME"]
        assert untimed(acme) == [p.DepthUpdate("ACME", 7, SELL, 100, 2, 1), p.Indicative("ACME", 8, 101, 8)]
        assert len(phase_records(env)) == 1, "the change is in force: no second command"
        assert obs.stop() == 0
