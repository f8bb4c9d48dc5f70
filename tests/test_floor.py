"""The transport floor of `benchmarks.floor`: the load generator's schedule through two bare
ZeroMQ proxies, as real processes."""

import os
import signal

import numpy as np
import pytest
import zmq

from benchmarks import SWITCHED, THREADS, floor
from clients.loadgen import RESULT_KEYS
from servers.journal import read_records


@pytest.fixture(scope="module")
def bare():
    with floor.Floor() as running:
        yield running


def test_every_order_goes_round_the_four_hops_and_is_timed(bare):
    result = bare.measure(rate=2_000, duration=0.5, drain_s=5)
    assert tuple(result) == (*RESULT_KEYS, "cpu_us_per_order", "cpu_us_by_thread", "switches_per_order",
                             "loop_cpu_us_per_wait")
    # the stand-ins' CPU per order, from /proc (in clock ticks: a short run may see none), and the
    # client's, from its resource usage once it ended (its start-up included: never none); the
    # stand-ins' by thread, each group within a few clock ticks of what the whole process spent
    assert set(result["cpu_us_per_order"]) == {"echo", "relay", "client"}
    assert all(cpu is None or cpu >= 0 for cpu in result["cpu_us_per_order"].values())
    assert result["cpu_us_per_order"]["client"] > 0
    assert set(result["cpu_us_by_thread"]) == {"echo", "relay"}
    tick_us = 1e6 / os.sysconf("SC_CLK_TCK") / result["sent"]
    for role, threads in result["cpu_us_by_thread"].items():
        assert tuple(threads) == THREADS and min(threads.values()) >= 0
        assert sum(threads.values()) == pytest.approx(result["cpu_us_per_order"][role], abs=3 * tick_us + 0.2)
    # each stand-in's threads waited for its 1,000 orders' frames: the proxy loop for one at least
    # every few orders (each order crosses it twice), its I/O thread likewise
    assert set(result["switches_per_order"]) == {"echo", "relay"}
    for switched in result["switches_per_order"].values():
        assert tuple(switched) == SWITCHED
        assert switched["loop"]["waits"] > 0.1 and switched["zeromq"]["waits"] > 0.1
        assert min(switched[group]["preemptions"] for group in SWITCHED) >= 0
    # so each proxy's loop CPU per wait is read (whole clock ticks over its waits: none, in a short run)
    assert set(result["loop_cpu_us_per_wait"]) == {"echo", "relay"}
    assert all(per_wait >= 0 for per_wait in result["loop_cpu_us_per_wait"].values())
    assert result["sent"] == result["acked"] == 1_000
    assert result["lost"] == result["rejected"] == result["fills"] == 0
    assert 0 < result["ack_p50_us"] <= result["ack_p99_us"] <= result["ack_p999_us"] <= result["ack_max_us"]
    assert 0 <= result["ack_max_at_s"] < 0.5 and result["send_lag_max_us"] >= 0
    # (how fast the last answers come after the schedule is the machine's: no bound on the rate)
    assert result["duration_s"] >= 0.5
    assert result["orders_per_s"] == pytest.approx(result["acked"] / result["duration_s"], rel=5e-3)


def test_the_journaling_echo_answers_each_order_once_its_group_is_in_the_journal(tmp_path):
    directory = tmp_path / "journal"
    with floor.Floor(journal=(directory, "batch")) as durable:
        result = durable.measure(rate=2_000, duration=0.5, drain_s=5)
    assert result["sent"] == result["acked"] == 1_000 and result["lost"] == 0
    assert 0 < result["ack_p50_us"] <= result["ack_p99_us"] <= result["ack_max_us"]
    records = list(read_records(directory))
    # the first frame is the client's ready check, then every batch of orders, each one record,
    # numbered in turn; the orders in them are each sent once
    assert [record.sequence for record in records] == list(range(1, len(records) + 1))
    assert np.frombuffer(records[0].payload, dtype=np.int64).tolist() == [-1]
    orders = np.concatenate([np.frombuffer(record.payload, dtype=np.int64) for record in records[1:]])
    assert orders.tolist() == list(range(1_000))


def test_the_replicating_echo_answers_only_once_its_standby_has_each_turn(tmp_path):
    """The replicating echo journals each turn (no fsync) and answers it only once its standby has
    answered the group: with the standby stopped (SIGSTOP) a frame is not answered; let go, it is."""
    directory = tmp_path / "journal"
    with floor.Floor(standby=directory) as replicated:
        result = replicated.measure(rate=2_000, duration=0.5, drain_s=5)
        assert result["sent"] == result["acked"] == 1_000 and result["lost"] == 0
        assert set(result["cpu_us_per_order"]) == {"standby", "echo", "relay", "client"}
        standby = replicated._servers["standby"]
        context = zmq.Context()
        client = context.socket(zmq.DEALER)
        client.setsockopt(zmq.LINGER, 0)
        client.connect(replicated.endpoint)
        os.kill(standby.pid, signal.SIGSTOP)
        try:
            client.send(np.int64(7).tobytes())
            assert client.poll(500) == 0, "answered before the standby held it"
        finally:
            os.kill(standby.pid, signal.SIGCONT)
        assert client.poll(10_000) == zmq.POLLIN
        assert np.frombuffer(client.recv(), dtype=np.int64).tolist() == [7]
        client.close()
        context.term()
    orders = np.concatenate([np.frombuffer(record.payload, dtype=np.int64) for record in read_records(directory)])
    assert orders.tolist() == [-1, *range(1_000), 7], "every frame journaled, in order, before it was answered"


def test_an_echo_is_replicated_or_journals_with_fsyncs_not_both(tmp_path):
    with pytest.raises(ValueError, match="not both"):
        floor.Floor(journal=(tmp_path, "batch"), standby=tmp_path)


def test_orders_due_together_share_a_frame_and_each_is_answered(bare):
    result = bare.measure(rate=200_000, duration=0.2, drain_s=5)
    assert result["sent"] == result["acked"] == 40_000 and result["lost"] == 0


def test_stand_ins_pinned_run_every_thread_on_their_cpus():
    """As `bench e2e --pin` places them: each stand-in's threads (its proxy's and ZeroMQ's I/O
    thread) on the CPU given, before any started."""
    cpu = max(os.sched_getaffinity(0))
    with floor.Floor({"echo": [cpu], "relay": [cpu]}) as pinned:
        result = pinned.measure(rate=2_000, duration=0.2, drain_s=5)
        assert result["sent"] == result["acked"] == 400
        for process in pinned._servers.values():
            tasks = os.listdir(f"/proc/{process.pid}/task")
            assert len(tasks) >= 2
            assert {tuple(os.sched_getaffinity(int(task))) for task in tasks} == {(cpu,)}
