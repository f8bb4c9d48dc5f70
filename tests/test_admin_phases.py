"""The operator's phase commands end to end: ``python main.py phase``, ``halt --all`` and
``resume --all`` against a real OBS and TES (CURVE on: the operator's key), orders from TES
clients, market data from the OBS's market data port.
"""

import json
import subprocess
import sys
import time

import pytest
from procs import REPO
from test_obs import Subscriber, Tes
from test_obs_phases import SECOND, phase_records, schedule, untimed
from test_tes import BUY, SELL, Exchange

from engine.messages import CommandRejected
from engine.types import Phase, RejectReason
from servers import protocol as p

CONTINUOUS, CALL, HALTED = Phase.CONTINUOUS, Phase.CALL, Phase.HALTED
OPERATOR, SCHEDULE = p.PhaseReason.OPERATOR, p.PhaseReason.SCHEDULE


def main(env, *args):
    """``python main.py ARGS`` on the exchange of ``env``: (exit status, stdout's JSON or None, stderr)."""
    done = subprocess.run([sys.executable, "main.py", *args], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=60)
    return done.returncode, json.loads(done.stdout) if done.returncode == 0 else None, done.stderr


def phases(*rows):
    """The JSON the phase commands print: rows of (symbol, phase, previous, sequence, uncross)."""
    return {"phases": {symbol: {"phase": phase, "previous": previous, "sequence": sequence, "uncross": uncross}
                       for symbol, phase, previous, sequence, uncross in rows}}


@pytest.fixture
def exchange(tmp_path):
    exchange = Exchange(tmp_path, EXCHANGE__TES__SESSION_TIMEOUT_MS="60000")
    yield exchange
    exchange.close()


def test_a_call_rests_orders_publishes_indicatives_and_continuous_uncrosses_with_its_summary_first(exchange):
    alice, bob = exchange.client("alice"), exchange.client("bob")
    subscriber = Subscriber(exchange.context, exchange.env)
    status, printed, _ = main(exchange.env, "phase", "ACME", "call")
    call = printed["phases"]["ACME"]["sequence"]
    assert (status, printed) == (0, phases(("ACME", "call", "continuous", call, None))), "after the probes"
    buy = alice.accepted("ACME", BUY, 10_010, 10)
    sell = bob.accepted("ACME", SELL, 9_990, 6)
    alice.quiet(0.2)
    assert alice.book() == ([(10_010, 10, 1)], [(9_990, 6, 1)]), "crossed and resting in the call"
    status, printed, _ = main(exchange.env, "phase", "ACME", "continuous")
    assert (status, printed) == (0, phases(("ACME", "continuous", "call", call + 3, {"price": 10_010, "volume": 6})))
    assert (alice.one().quantity, bob.one().quantity) == (6, 6), "both orders filled at the uncross"
    assert (alice.open_orders()[0].order_id, bob.open_orders()) == (buy.order_id, []) and sell.order_id
    published = untimed([m for m in subscriber.read() if m.symbol == "ACME"])
    assert published == [
        p.PhaseUpdate("ACME", 1, CALL, OPERATOR),
        p.DepthUpdate("ACME", 2, BUY, 10_010, 10, 1),
        p.Quote("ACME", 3, 10_010, 10, 0, 0),
        p.DepthUpdate("ACME", 4, SELL, 9_990, 6, 1),
        p.Quote("ACME", 5, 10_010, 10, 9_990, 6),
        p.Indicative("ACME", 6, 10_010, 6),
        p.PhaseUpdate("ACME", 7, CONTINUOUS, OPERATOR),
        p.AuctionSummary("ACME", 8, 10_010, 6),
        p.Trade("ACME", 9, 1, 10_010, 6, SELL),
        p.DepthUpdate("ACME", 10, BUY, 10_010, 4, 1),
        p.DepthUpdate("ACME", 11, SELL, 9_990, 0, 0),
        p.Quote("ACME", 12, 10_010, 4, 0, 0),
    ]


def test_halt_all_refuses_new_orders_while_cancels_work_and_resume_all_reopens(exchange):
    alice = exchange.client("alice")
    resting = alice.accepted("ACME", BUY, 9_990, 10)
    assert main(exchange.env, "halt", "--all") == (
        0, phases(("ACME", "halted", "continuous", 2, None), ("BOLT", "halted", "continuous", 3, None)), "")
    assert alice.rejected("ACME", SELL, 10_000, 1) is RejectReason.NOT_ALLOWED_IN_PHASE
    assert alice.rejected("BOLT", BUY, 25_000, 10) is RejectReason.NOT_ALLOWED_IN_PHASE
    alice.send(p.CancelOrder(alice.next_id, resting.order_id))
    alice.next_id += 1
    assert type(alice.one()) is p.OrderCanceled and alice.open_orders() == []
    assert main(exchange.env, "resume", "--all") == (
        0, phases(("ACME", "continuous", "halted", 7, None), ("BOLT", "continuous", "halted", 8, None)), "")
    assert alice.accepted("ACME", BUY, 9_990, 1).order_id
    records = phase_records(exchange.env)
    assert [(command.phase, command.reason) for _, _, command in records] == [
        (HALTED, OPERATOR), (HALTED, OPERATOR), (CONTINUOUS, SCHEDULE), (CONTINUOUS, SCHEDULE)]


def test_a_phase_command_that_cannot_be_carried_out_fails_in_one_line(exchange):
    assert main(exchange.env, "phase", "NOPE", "call") == (2, None, "error: no shard serves NOPE\n")
    status, _, error = main(exchange.env, "phase", "ACME", "auction")
    assert status == 2 and error.startswith("error: argument phase: invalid choice: 'auction'")
    status, _, error = main(exchange.env, "halt")
    assert (status, error) == (2, "error: the following arguments are required: --all (see main.py halt --help)\n")
    assert exchange.obs.stop() == 0
    status, _, error = main(exchange.env, "resume", "--all")
    assert status == 2 and error.startswith("error: shard A (") and error.endswith("did not answer in 10 s\n")
    assert error.count("\n") == 1


def test_only_the_operator_sets_phases_and_only_the_obs_interrupts(exchange):
    tes, operator = Tes(exchange.context, exchange.env), Tes(exchange.context, exchange.env, role="operator")
    tes.send(p.BookSetPhase("ACME", HALTED))
    operator.send(p.BookSetPhase("ACME", CALL, p.PhaseReason.VOLATILITY, 0), p.BookSetPhase("ACME", CALL, until=5))
    refusals = tes.receive(1) + operator.receive(2)
    assert [(type(r), r.symbol, r.reason) for r in refusals] == [
        (p.CommandRefused, "ACME", RejectReason.NOT_AUTHORIZED)] * 3
    operator.send(p.BookSetPhase("ACME", 7))
    (rejected,) = operator.receive(1)
    assert rejected.sequence == 1 and rejected.events == [
        CommandRejected(RejectReason.UNKNOWN_PHASE, RejectReason.UNKNOWN_PHASE.text)], "journaled, the book refused"
    assert [command for _, _, command in phase_records(exchange.env)] == [p.BookSetPhase("ACME", 7)]
    alice = exchange.client("alice")
    assert alice.accepted("ACME", BUY, 9_990, 1).order_id, "still continuous"


def test_the_schedule_leaves_an_operator_halt_alone_and_resume_hands_it_back(tmp_path):
    # the call is due 15 s on: starting the exchange and halting ACME must come first, also on a busy machine
    overrides, (call_at, _) = schedule((15, "call"), (3 * 3600, "continuous"))
    exchange = Exchange(tmp_path, EXCHANGE__TES__SESSION_TIMEOUT_MS="60000", **overrides)
    try:
        assert main(exchange.env, "phase", "ACME", "halt")[0] == 0
        assert time.time() < call_at, "the machine was too slow to halt ACME before its scheduled call"
        time.sleep(max(0.0, call_at - time.time()) + 0.5)
        assert [command.reason for _, _, command in phase_records(exchange.env)] == [OPERATOR], "no scheduled call"
        status, printed, _ = main(exchange.env, "resume", "--all")
        assert (status, printed) == (0, phases(("ACME", "call", "halted", 2, None),
                                               ("BOLT", "continuous", "continuous", 3, None)))
        ((_, stamp, command),) = phase_records(exchange.env)[1:2]
        assert command == p.BookSetPhase("ACME", CALL, SCHEDULE) and stamp >= call_at * SECOND
        assert exchange.client("alice").accepted("ACME", BUY, 9_990, 1).order_id, "orders rest in the call"
    finally:
        exchange.close()
