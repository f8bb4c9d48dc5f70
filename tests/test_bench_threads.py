"""A process's CPU time by thread (`benchmarks.threads_cpu_seconds`): its first thread, ZeroMQ's I/O
threads and the rest, per order (`threads_us_per_order`), the medians of runs and `bench e2e`'s table
of them beside ZeroMQ alone's stand-ins; and the context switches of the first two groups
(`threads_switches`), per order, their medians and their table."""

import os
import threading
import time

import pytest
import zmq

from benchmarks import (
    THREADS,
    cpu_seconds,
    e2e,
    loop_cpu_us_per_wait,
    process_cpu_us_per_order,
    switches_per_order,
    threads_cpu_seconds,
    threads_switches,
    threads_us_per_order,
)


def burn(seconds: float) -> None:
    """Spend ``seconds`` of this thread's CPU time."""
    until = time.thread_time() + seconds
    while time.thread_time() < until:
        pass


def test_each_thread_s_time_goes_to_its_group_and_the_groups_add_up_to_the_process_s():
    pid = os.getpid()
    before = threads_cpu_seconds(pid)
    helper = threading.Thread(target=burn, args=(0.3,))
    helper.start()
    helper.join()
    burn(0.2)
    context = zmq.Context()
    try:
        pull, push = context.socket(zmq.PULL), context.socket(zmq.PUSH)
        port = pull.bind_to_random_port("tcp://127.0.0.1")
        push.connect(f"tcp://127.0.0.1:{port}")
        # Each message crosses ZeroMQ's I/O threads, waking them: their own CPU. Round trips in
        # thousands until they have three ticks of it (5,000 are enough on an idle machine; on a
        # loaded one the threads wake less often, batching), a hundred thousand at most.
        for _ in range(100):
            for _ in range(1_000):
                push.send(b"x" * 200)
                pull.recv()
            if threads_cpu_seconds(pid)["zeromq"] - before["zeromq"] >= 0.03:
                break
        after = threads_cpu_seconds(pid)
        total = cpu_seconds(pid)
    finally:
        context.destroy(linger=0)
    spent = {group: after[group] - before[group] for group in THREADS}
    assert spent["other"] >= 0.25, "the helper thread ended: its time is the rest's"
    assert spent["loop"] >= 0.18
    assert spent["zeromq"] >= 0.03
    assert sum(after.values()) == pytest.approx(total, abs=0.05)


def test_a_process_that_is_gone_has_no_threads_to_read():
    assert threads_cpu_seconds(2 ** 22 + 7) is None  # beyond Linux's largest process id


def test_per_order_each_group_s_change_to_a_tenth_of_a_microsecond_and_never_below_zero():
    before = {"loop": 1.0, "zeromq": 0.5, "other": 0.02}
    after = {"loop": 1.5, "zeromq": 0.75, "other": 0.01}
    assert threads_us_per_order(before, after, 100_000) == {"loop": 5.0, "zeromq": 2.5, "other": 0.0}
    assert threads_us_per_order(None, after, 100_000) is None
    assert threads_us_per_order(before, None, 100_000) is None
    assert threads_us_per_order(before, after, 0) is None


def test_the_process_s_cpu_per_order_is_its_groups_together():
    before = {"loop": 1.0, "zeromq": 0.5, "other": 0.02}
    after = {"loop": 1.5, "zeromq": 0.75, "other": 0.07}
    assert process_cpu_us_per_order(before, after, 100_000) == 8.0
    assert process_cpu_us_per_order(None, after, 100_000) is None
    assert process_cpu_us_per_order(before, None, 100_000) is None
    assert process_cpu_us_per_order(before, after, 0) is None


def test_a_row_holds_each_group_s_median_over_the_runs_that_read_it():
    runs = [{"obs": {"loop": loop, "zeromq": 1.0, "other": 0.1}} for loop in (3.0, 2.0, 4.0)]
    runs.append({"obs": None})
    assert e2e.median_threads([run["obs"] for run in runs]) == {"loop": 3.0, "zeromq": 1.0, "other": 0.1}
    assert e2e.median_threads([None, None]) is None


def test_the_table_shows_each_server_beside_its_stand_in_and_what_was_not_read():
    rows = [
        {"offered_per_s": 100_000,
         "cpu_us_by_thread": {"obs": {"loop": 2.6, "zeromq": 0.7, "other": 0.0},
                              "tes": {"loop": 3.9, "zeromq": 1.2, "other": 0.1}},
         "floor": {"cpu_us_by_thread": {"echo": {"loop": 0.7, "zeromq": 1.7, "other": 0.0}, "relay": None}},
         "durable_floor": {"cpu_us_by_thread": {"echo": {"loop": 2.0, "zeromq": 0.9, "other": 0.0}}}},
        {"offered_per_s": 10_000, "floor": {}},
    ]
    lines = e2e.format_threads(rows)
    assert lines[2] == "| offered orders/s | OBS | echo (as OBS) | journaling echo (as OBS) | TES | relay (as TES) |"
    assert lines[4] == ("| 100,000 | 2.6 / 0.7 / 0.0 µs | 0.7 / 1.7 / 0.0 µs | 2.0 / 0.9 / 0.0 µs | 3.9 / 1.2 / 0.1 µs "
                        "| n/a |")
    assert lines[5] == "| 10,000 | n/a | n/a | n/a | n/a | n/a |"


def test_the_first_thread_s_waits_and_the_zeromq_threads_are_counted_apart():
    """Sleeping is waiting: the first thread's waits grow by a switch a sleep at least; messages
    through ZeroMQ wake its I/O threads, whose waits grow too; a helper thread's are neither's."""
    pid = os.getpid()
    before = threads_switches(pid)
    helper = threading.Thread(target=lambda: [time.sleep(0.001) for _ in range(200)])
    helper.start()
    helper.join()
    after_helper = threads_switches(pid)
    for _ in range(50):
        time.sleep(0.001)
    context = zmq.Context()
    try:
        pull, push = context.socket(zmq.PULL), context.socket(zmq.PUSH)
        port = pull.bind_to_random_port("tcp://127.0.0.1")
        push.connect(f"tcp://127.0.0.1:{port}")
        for _ in range(200):
            push.send(b"x")
            pull.recv()
        after = threads_switches(pid)
    finally:
        context.destroy(linger=0)
    assert after_helper["loop"][0] - before["loop"][0] < 150, "the helper's 200 sleeps are not the first thread's"
    assert after["loop"][0] - after_helper["loop"][0] >= 50
    assert after["zeromq"][0] > 0
    assert all(after[group][1] >= before[group][1] for group in ("loop", "zeromq"))
    assert threads_switches(2 ** 22 + 7) is None


def test_per_order_the_waits_and_preemptions_to_a_hundredth_and_never_below_zero():
    before = {"loop": (1_000, 10), "zeromq": (500, 7)}
    after = {"loop": (1_750, 30), "zeromq": (400, 8)}
    assert switches_per_order(before, after, 1_000) == {"loop": {"waits": 0.75, "preemptions": 0.02},
                                                        "zeromq": {"waits": 0.0, "preemptions": 0.0}}
    assert switches_per_order(None, after, 1_000) is None
    assert switches_per_order(before, None, 1_000) is None
    assert switches_per_order(before, after, 0) is None


def test_a_row_holds_the_median_waits_and_preemptions_and_the_table_shows_them():
    runs = [{"loop": {"waits": waits, "preemptions": 0.1}, "zeromq": {"waits": 1.0, "preemptions": 0.0}}
            for waits in (0.5, 0.3, 0.9)]
    median = e2e.median_switches([*runs, None])
    assert median == {"loop": {"waits": 0.5, "preemptions": 0.1}, "zeromq": {"waits": 1.0, "preemptions": 0.0}}
    assert e2e.median_switches([None]) is None
    rows = [{"offered_per_s": 10_000, "switches_per_order": {"obs": median, "tes": None},
             "floor": {"switches_per_order": {"echo": median}}, "durable_floor": None}]
    lines = e2e.format_switches(rows)
    assert lines[2] == "| offered orders/s | OBS | echo (as OBS) | journaling echo (as OBS) | TES | relay (as TES) |"
    assert lines[4] == "| 10,000 | 0.50 + 0.10 / 1.00 + 0.00 | 0.50 + 0.10 / 1.00 + 0.00 | n/a | n/a | n/a |"


def test_the_loop_s_cpu_per_wait_is_its_cpu_over_its_waits_and_none_without_a_wait():
    before = ({"loop": 1.0, "zeromq": 0.5, "other": 0.0}, {"loop": (1_000, 10), "zeromq": (500, 7)})
    after = ({"loop": 1.3, "zeromq": 0.9, "other": 0.0}, {"loop": (4_000, 30), "zeromq": (900, 8)})
    assert loop_cpu_us_per_wait(before, after) == 100.0  # 0.3 s over 3,000 waits
    assert loop_cpu_us_per_wait((None, before[1]), after) is None
    assert loop_cpu_us_per_wait(before, (after[0], None)) is None
    assert loop_cpu_us_per_wait(before, (after[0], before[1])) is None  # it never waited
    back = ({"loop": 0.9, "zeromq": 0.9, "other": 0.0}, after[1])       # a clock tick less, never below 0
    assert loop_cpu_us_per_wait(before, back) == 0.0


def test_a_row_holds_the_median_cpu_per_wait_and_the_table_shows_it_beside_the_stand_ins():
    runs = [{"sent": 1, "acked": 1, "lost": 0, "orders_per_s": 1.0, "ack_p50_us": p99, "ack_p99_us": p99,
             "ack_p999_us": p99, "loop_cpu_us_per_wait": {"obs": per_wait, "tes": None}}
            for p99, per_wait in ((3.0, 104.0), (1.0, 94.0), (2.0, 120.0))]
    row = e2e.median_run(runs)
    assert row["loop_cpu_us_per_wait"] == {"obs": 104.0, "tes": None}
    rows = [{"offered_per_s": 10_000, **row,
             "floor": {"loop_cpu_us_per_wait": {"echo": 19.2, "relay": 21.5}}, "durable_floor": None}]
    lines = e2e.format_waits(rows)
    assert lines[0].startswith("The loop thread's CPU per wait")
    assert lines[2] == "| offered orders/s | OBS | echo (as OBS) | journaling echo (as OBS) | TES | relay (as TES) |"
    assert lines[4] == "| 10,000 | 104.0 µs | 19.2 µs | n/a | n/a | 21.5 µs |"
