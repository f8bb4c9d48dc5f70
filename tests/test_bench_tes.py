"""`bench tes`: the TES's work in one process, beside the codec floor and the OBS."""

import sys
import time

import msgspec
import pytest

from benchmarks import tes
from config.settings import ConfigError
from servers import protocol as p
from servers import status
from servers.ledger import Ledger, Received
from servers.processes import json_result


def test_the_requests_are_the_standard_workload_as_one_trader_sends_them():
    turns = tes.requests(5_000)
    made = [request for turn in turns for request in turn]
    assert len(made) == 5_000 and [len(turn) for turn in turns] == [tes.TURN] * (5_000 // tes.TURN)
    assert [request.client_order_id for request in made] == list(range(1, 5_001))
    orders = [request for request in made if type(request) is p.EnterOrder]
    cancels = [request for request in made if type(request) is p.CancelOrder]
    assert len(orders) + len(cancels) == 5_000 and cancels
    assert {(order.order_type, order.time_in_force) for order in orders} == {(0, 0), (1, 1)}
    entered = [(1 << 48) | n for n in range(1, len(orders) + 1)]
    assert {cancel.order_id for cancel in cancels} <= set(entered), "a cancel names an order entered before it"


def test_the_load_flow_is_the_load_generators():
    turns = tes.load_flow(250)
    made = [request for turn in turns for request in turn]
    assert [len(turn) for turn in turns] == [tes.TURN, tes.TURN, 50]
    assert [request.client_order_id for request in made] == list(range(1, 251))
    assert [request.side for request in made[:4]] == [p.Side.BUY, p.Side.SELL, p.Side.BUY, p.Side.SELL]
    assert {(request.symbol, request.order_type, request.time_in_force, request.price, request.quantity)
            for request in made} == {(tes.SYMBOL, p.OrderType.LIMIT, p.TimeInForce.GTC, 10_000, 1)}


def test_a_run_answers_every_request_and_reports_each_part(capsys, monkeypatch):
    monkeypatch.setattr(tes, "SINGLES", 500)
    monkeypatch.setattr(tes, "WAITED", 200)
    monkeypatch.setenv("EXCHANGE_STAGES", "cpu")  # every turn's CPU read: the stages add up to the turns
    sleeps, sleep = [], time.sleep

    def noted(seconds):
        sleeps.append(seconds)
        sleep(seconds)

    monkeypatch.setattr(time, "sleep", noted)
    report = tes.run(messages=3_000, repeats=2)
    assert report["messages"] == 3_000 and list(report["streams"]) == [
        "standard", "load", "load, 1 per frame", "load, 1 per frame, after a wait"]
    assert [(stream["requests"], stream["turn"], stream["wait_ms"]) for stream in report["streams"].values()] == [
        (3_000, tes.TURN, 0), (3_000, tes.TURN, 0), (500, 1, 0), (200, 1, tes.WAIT_S * 1e3)]
    assert sleeps.count(tes.WAIT_S) == 200 * 2, "a wait before each turn of the waited stream, and no other"
    for stream in report["streams"].values():
        assert len(stream["runs"]) == 2
        figures = stream["us_per_message"]
        assert all(figures[part] > 0 for part in ("tes", "floor", "ledger", "obs"))
        assert stream["ratio"]["tes_vs_floor"] == round(figures["tes"] / figures["floor"], 2)
        assert set(stream["stages"]) == {"replies", "receive", "validate", "journal", "send", "reports", "other"}
        assert 0 < sum(stream["stages"].values()) <= figures["tes"] * 1.5
    single, load, waited = (report["streams"][name]["us_per_message"]["tes"]
                            for name in ("load, 1 per frame", "load", "load, 1 per frame, after a wait"))
    assert report["turn_us"] == round(single - load, 2) and report["wait_us"] == round(waited - single, 2)
    table = capsys.readouterr().out
    assert "| standard | 3,000 | 100 | none |" in table and "| load, 1 per frame | 500 | 1 | none |" in table
    assert "| load, 1 per frame, after a wait | 200 | 1 | 0.1 ms |" in table
    assert "a TES loop turn costs" in table and "| validate |" in table
    assert f"a wait of 0.1 ms before a turn of one request makes it cost {report['wait_us']:.2f} µs more" in table


def test_a_ledger_replayed_unlike_the_live_one_is_an_error(monkeypatch):
    class Forgetful(Ledger):
        """Loses the book's replies on replay."""

        def apply(self, record):
            return ((), ()) if type(record) is Received else super().apply(record)

    monkeypatch.setattr(tes, "Ledger", Forgetful)
    with pytest.raises(RuntimeError, match="differs from the live one"):
        tes.run(messages=1_000, repeats=1)


def test_a_tes_that_refuses_part_of_the_stream_is_an_error(monkeypatch):
    made = tes.requests

    def with_a_duplicate(messages, turn):
        turns = made(messages, turn)
        first = turns[0][0]
        turns[0].append(p.EnterOrder(first.client_order_id, first.symbol, first.side, first.order_type,
                                     first.time_in_force, first.price, first.quantity))
        return turns

    monkeypatch.setitem(tes.STREAMS, "standard", (with_a_duplicate, tes.TURN, 0.0))
    with pytest.raises(RuntimeError, match="DUPLICATE_CLIENT_ORDER_ID"):
        tes.run(messages=1_000, repeats=1)


def test_bench_tes_from_the_command_line():
    report = json_result([sys.executable, "main.py", "bench", "tes", "--messages", "3000", "--repeats", "1"],
                         "bench tes", timeout=120)
    assert report["messages"] == 3_000
    assert {name: set(stream["us_per_message"]) for name, stream in report["streams"].items()} == dict.fromkeys(
        ("standard", "load", "load, 1 per frame", "load, 1 per frame, after a wait"), {"tes", "floor", "ledger", "obs"})


def test_the_stages_cpu_is_sampled_by_default_and_a_clock_without_cpu_is_refused(monkeypatch):
    monkeypatch.delenv("EXCHANGE_STAGES", raising=False)
    frames = [msgspec.msgpack.encode(requests) for requests in tes.load_flow(2_000, 1)]
    figures = tes.one_run(frames, 2_000)
    assert figures["tes"] > 0 and all(cpu >= 0 for cpu in figures["stages"].values())
    # an estimate: a rare dear turn (a journal segment made) read weighs 16 turns, so no bound above
    assert sum(figures["stages"].values()) > 0
    monkeypatch.setenv("EXCHANGE_STAGES", "wall")
    with pytest.raises(ConfigError, match="EXCHANGE_STAGES='wall' reads none"):
        tes.one_run(frames[:10], 10)
    monkeypatch.delenv("EXCHANGE_STAGES")
    monkeypatch.setattr(status, "SAMPLE_TURNS", 10**9)  # no turn chosen at random but by a chance of 1 in 10**8
    monkeypatch.setattr(status, "LONG_TURN_NS", 10**15)  # nor after a long one
    figures = tes.one_run(frames[:10], 10)
    assert figures["tes"] > 0 and set(figures["stages"].values()) == {None}
