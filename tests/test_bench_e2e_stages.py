"""Where `bench e2e`'s orders spend their time, stage by stage: the stopwatch the servers' loops
lap (`servers.status.Stages`), the totals a real OBS publishes for the turns it served, the
per-order arithmetic of `benchmarks.stages`, and the stage table of a tiny `bench e2e`."""

import json
import os
import random
import subprocess
import sys
import time

import pytest
import zmq
from procs import REPO, Role, as_role, endpoint, exchange_env

from benchmarks import e2e, stages
from config.settings import ConfigError
from engine.types import Side
from servers import obs, status, tes
from servers import protocol as p
from servers.status import SAMPLE_TURNS, STATUS_FILE, Stages

T1 = 1 << 48
NAMES = ("idle", "receive", "other")
IDLE, RECEIVE, OTHER = range(3)


# ================================================================ the stopwatch


@pytest.mark.parametrize("clock", ["wall", "cpu", "sampled"])
def test_laps_add_up_to_the_time_since_the_start_and_count_each_stage(clock):
    watch = Stages(NAMES, clock)
    begun = time.perf_counter_ns()
    watch.start()
    for stage in (IDLE, RECEIVE, OTHER, IDLE, RECEIVE, OTHER, IDLE):
        sum(range(2000))
        watch.lap(stage)
    ended = time.perf_counter_ns()

    assert watch.laps == [3, 2, 2]
    assert all(ns > 0 for ns in watch.wall_ns)
    assert sum(watch.wall_ns) <= ended - begun
    totals = watch.totals()
    assert totals["clock"] == clock and totals["names"] == list(NAMES) and totals["laps"] == [3, 2, 2]
    assert totals["wall_ns"] == watch.wall_ns
    if clock == "cpu":
        assert all(ns >= 0 for ns in totals["cpu_ns"]) and sum(totals["cpu_ns"]) > 0
        assert totals["cpu_turns"] == 3
    elif clock == "sampled":
        assert all(ns >= 0 for ns in totals["cpu_ns"]) and 0 <= totals["cpu_turns"] <= 3
    else:
        assert totals["cpu_ns"] is None and totals["cpu_turns"] is None


def busy_turns(watch: Stages, turns: int, spins: int = 3000) -> int:
    """``turns`` loop turns of a receive and an other stage, each spinning; their CPU time (ns)
    measured around them."""
    started = time.thread_time_ns()
    for _ in range(turns):
        sum(range(spins))
        watch.lap(RECEIVE)
        sum(range(spins // 3))
        watch.lap(OTHER)
        watch.lap(IDLE)
    return time.thread_time_ns() - started


def test_the_sampled_clock_reads_the_cpu_time_in_one_turn_in_about_sample_turns_at_random(monkeypatch):
    monkeypatch.setattr(status, "LONG_TURN_NS", 10**15)  # no turn long enough to be read for it (if preempted)
    watch = Stages(NAMES, "sampled", random.Random(7))
    busy_turns(watch, 8000, spins=10)
    assert watch.laps == [8000, 8000, 8000]
    assert 8000 / SAMPLE_TURNS * 0.8 < watch.cpu_turns < 8000 / SAMPLE_TURNS * 1.2
    # the gaps between the turns chosen are random: which turns they are differs with the seed
    chosen = []
    for seed in (1, 2):
        other = Stages(NAMES, "sampled", random.Random(seed))
        picks = []
        for _ in range(400):
            other.lap(RECEIVE)
            other.lap(OTHER)
            before = other.cpu_turns
            other.lap(IDLE)
            picks.append(other.cpu_turns - before)
        chosen.append(picks)
    assert chosen[0] != chosen[1] and all(sum(picks) > 0 for picks in chosen)


def test_the_sampled_estimate_is_near_the_cpu_time_measured_around_the_turns(monkeypatch):
    monkeypatch.setattr(status, "LONG_TURN_NS", 10**15)  # only the turns chosen at random (the seed's)
    watch = Stages(NAMES, "sampled", random.Random(11))
    # turns of several hundred µs: a turn's readings (about 5 µs) and a cache refilled after the
    # preemption they let in (on a busy machine) are a sliver of a turn chosen, not a tenth or more
    spent = busy_turns(watch, 1000, spins=30_000)
    assert watch.read_ns > 0 and 1000 / SAMPLE_TURNS * 0.8 < watch.cpu_turns < 1000 / SAMPLE_TURNS * 1.2
    assert watch.cpu_ns[RECEIVE] == pytest.approx(spent * 3 / 4, rel=0.25)
    assert watch.cpu_ns[OTHER] == pytest.approx(spent / 4, rel=0.25)
    assert sum(watch.cpu_ns) == pytest.approx(spent, rel=0.2)


def test_every_turn_after_a_long_one_is_read_and_weighs_one(monkeypatch):
    monkeypatch.setattr(status, "LONG_TURN_NS", 0)
    watch = Stages(NAMES, "sampled", random.Random(3))
    spent = busy_turns(watch, 300)
    assert watch.cpu_turns >= 299  # all but perhaps the first, chosen before any turn was long
    assert sum(watch.cpu_ns) == pytest.approx(spent - 3 * 300 * watch.read_ns, rel=0.25)


def test_the_cpu_clock_reads_every_turn_and_takes_each_reading_s_own_cost_off():
    watch = Stages(NAMES, "cpu")
    spent = busy_turns(watch, 2000)
    assert watch.cpu_turns == 2000
    assert sum(watch.cpu_ns) < spent
    assert sum(watch.cpu_ns) == pytest.approx(spent - 3 * 2000 * watch.read_ns, rel=0.15)


def test_the_off_clock_counts_nothing_and_the_environment_chooses_the_clock(monkeypatch):
    watch = Stages(NAMES, "off")
    watch.lap(RECEIVE)
    assert watch.totals() == {"clock": "off", "names": list(NAMES), "wall_ns": [0, 0, 0], "cpu_ns": None,
                              "cpu_turns": None, "laps": [0, 0, 0], "stall_ns": status.STALL_NS,
                              "stalls": [0, 0, 0], "stalled_ns": [0, 0, 0]}
    monkeypatch.setenv("EXCHANGE_STAGES", "wall")
    assert Stages(NAMES).clock == "wall"
    monkeypatch.delenv("EXCHANGE_STAGES")
    assert Stages(NAMES).clock == "sampled"


@pytest.mark.parametrize("clock", ["wall", "cpu", "sampled"])
def test_a_busy_lap_as_long_as_a_stall_is_counted_as_one_of_its_stage_but_a_long_wait_is_not(monkeypatch, clock):
    monkeypatch.setattr(status, "STALL_NS", 20_000_000)
    watch = Stages(NAMES, clock)
    time.sleep(0.03)
    watch.lap(IDLE)
    begun = time.perf_counter_ns()  # the stall's lap begins at the next lap's reading, and ends within ``stalled``
    watch.lap(RECEIVE)
    time.sleep(0.025)
    watch.lap(RECEIVE)
    stalled = time.perf_counter_ns() - begun
    time.sleep(0.005)
    watch.lap(OTHER)

    totals = watch.totals()
    assert totals["stall_ns"] == 20_000_000
    assert totals["stalls"] == [0, 1, 0]
    assert 25_000_000 <= totals["stalled_ns"][RECEIVE] <= stalled and totals["stalled_ns"][IDLE] == 0
    assert totals["stalled_ns"][RECEIVE] < totals["wall_ns"][RECEIVE]


@pytest.mark.parametrize("clock", ["wall", "cpu", "sampled"])
def test_a_lap_to_a_stage_that_is_not_one_raises_and_counts_nothing(clock):
    watch = Stages(NAMES, clock)
    watch.lap(RECEIVE)
    for stage in (len(NAMES), -1):
        with pytest.raises(IndexError, match=f"stage {stage} of 3"):
            watch.lap(stage)
    assert watch.laps == [0, 1, 0]


def test_an_unknown_clock_or_stages_without_idle_and_other_are_refused():
    with pytest.raises(ConfigError, match="EXCHANGE_STAGES='tsc': the stages' clock is sampled, cpu, wall or off"):
        Stages(NAMES, "tsc")
    with pytest.raises(ValueError, match="include 'idle' and 'other'"):
        Stages(("receive", "other"), "wall")


@pytest.mark.parametrize("role", ["OBS", "TES"])
def test_a_server_with_an_unknown_stages_clock_refuses_to_start_in_one_line(tmp_path, role):
    env = dict(exchange_env(tmp_path), EXCHANGE_STAGES="bogus")
    done = subprocess.run([sys.executable, "main.py", "-s", role], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=60)
    output = done.stdout + done.stderr
    assert done.returncode == 2, output
    assert "cannot start: EXCHANGE_STAGES='bogus': the stages' clock is sampled, cpu, wall or off" in output
    assert "Traceback" not in output


def test_the_servers_stages_are_named_in_their_loops_order():
    assert obs.STAGES == ("idle", "receive", "match", "journal", "reply", "publish", "other")
    assert tes.STAGES == ("idle", "replies", "receive", "validate", "journal", "send", "reports", "other")
    Stages(obs.STAGES, "wall")
    Stages(tes.STAGES, "wall")


# ================================================================ a real OBS


def test_the_obs_status_file_has_one_lap_of_each_stage_per_turn_served(tmp_path):
    env = dict(exchange_env(tmp_path), EXCHANGE_STAGES="cpu")
    frames = 5
    with Role(["-s", "OBS"], env) as server:
        context = zmq.Context()
        try:
            socket = as_role(context.socket(zmq.DEALER), env, "tes")
            socket.setsockopt(zmq.LINGER, 0)
            socket.connect(endpoint(env, "SHARDS__0__COMMAND_ENDPOINT"))
            codec = p.Codec(p.ObsRequest)
            replies = p.Codec(p.ObsReply)
            # A Hello, then frames of two orders, each answered before the next is sent: a turn each.
            turns = [[p.Hello(1)]] + [
                [p.BookSubmit("ACME", T1 | 2 * n + 1, Side.BUY, 0, 0, 100, 1),
                 p.BookSubmit("ACME", T1 | 2 * n + 2, Side.SELL, 0, 0, 100, 1)] for n in range(frames)]
            for messages in turns:
                socket.send(codec.encode(messages))
                answered = 0
                while answered < len(messages):
                    assert socket.poll(10_000), "no answer"
                    answered += len(replies.decode(socket.recv()))
        finally:
            context.destroy(linger=0)
        assert server.stop() == 0
    document = json.loads((tmp_path / "journal-A" / STATUS_FILE).read_text())

    figures = document["stages"]
    assert figures["clock"] == "cpu"
    assert figures["names"] == list(obs.STAGES)
    laps = dict(zip(figures["names"], figures["laps"], strict=True))
    wall = dict(zip(figures["names"], figures["wall_ns"], strict=True))
    assert document["counters"]["executed"] == 2 * frames
    for stage in ("receive", "match", "journal", "reply", "publish"):
        assert laps[stage] == frames + 1, stage
    assert laps["idle"] == laps["other"] >= frames + 1
    assert all(ns >= 0 for ns in wall.values()) and wall["match"] > 0 and wall["journal"] > 0
    assert sum(wall.values()) <= document["updated"] - document["started"]
    assert all(ns >= 0 for ns in figures["cpu_ns"]) and 0 < sum(figures["cpu_ns"]) <= sum(wall.values())
    assert figures["cpu_turns"] == laps["idle"]


# ================================================================ per order, and the table


def totals(clock, wall, laps, cpu=None, cpu_turns=None, fsyncs=None, stalls=(0, 0, 0), stalled_ns=(0, 0, 0)):
    if cpu is not None and cpu_turns is None:
        cpu_turns = laps[0]
    return {"clock": clock, "names": ["idle", "receive", "other"], "wall_ns": wall, "cpu_ns": cpu,
            "cpu_turns": cpu_turns, "laps": laps, "fsyncs": fsyncs, "stall_ns": 10_000_000,
            "stalls": list(stalls), "stalled_ns": list(stalled_ns)}


def test_per_order_divides_the_change_by_the_orders_and_shares_out_the_busy_time():
    before = {"obs": totals("cpu", [1000, 500, 500], [1, 1, 1], [10, 20, 30], fsyncs=7)}
    after = {"obs": totals("cpu", [9000, 6500, 2500], [5, 3, 5], [50, 4020, 1030], fsyncs=10)}

    figures = stages.per_order(before, after, orders=4)

    assert figures == {"obs": {
        "clock": "cpu", "cpu_turns": 4, "busy_us": 2.0, "busy_cpu_us": 1.25, "orders_per_turn": 2.0,
        "turns_per_input": 2.0, "fsyncs_per_order": 0.75,
        "stages": {
            "idle": {"wall_us": 2.0, "share": None, "cpu_us": 0.01, "laps": 4},
            "receive": {"wall_us": 1.5, "share": 0.75, "cpu_us": 1.0, "laps": 2},
            "other": {"wall_us": 0.5, "share": 0.25, "cpu_us": 0.25, "laps": 4},
        },
        "stalls": {}}}
    # the stalls in between, by stage: only those of the stretch, only the stages that had any
    stalled = stages.per_order({"obs": totals("wall", [0, 0, 0], [0, 0, 0], stalls=(0, 1, 2),
                                              stalled_ns=(0, 15_000_000, 30_000_000))},
                               {"obs": totals("wall", [0, 0, 0], [0, 0, 0], stalls=(0, 3, 2),
                                              stalled_ns=(0, 140_250_000, 30_000_000))}, orders=1)
    assert stalled["obs"]["stalls"] == {"receive": {"count": 2, "ms": 125.2}}
    # sampled: the estimate, from 2 of the 4 turns read
    sampled = stages.per_order({"obs": totals("sampled", [0, 0, 0], [0, 0, 0], [0, 0, 0], 0)},
                               {"obs": totals("sampled", [8000, 6000, 2000], [4, 2, 4], [40, 4000, 1000], 2)},
                               orders=4)["obs"]
    assert sampled["clock"] == "sampled" and sampled["cpu_turns"] == 2
    assert [stage["cpu_us"] for stage in sampled["stages"].values()] == [0.01, 1.0, 0.25]
    assert sampled["busy_cpu_us"] == 1.25
    wall_only = stages.per_order({"tes": totals("wall", [0, 0, 0], [0, 0, 0])},
                                 {"tes": totals("wall", [100, 0, 0], [1, 0, 1])}, orders=1)
    assert wall_only["tes"]["busy_us"] == 0 and wall_only["tes"]["orders_per_turn"] is None
    assert wall_only["tes"]["turns_per_input"] is None, "no turn read input"
    assert wall_only["tes"]["fsyncs_per_order"] is None, "a status file without the fsyncs counter"
    assert wall_only["tes"]["stages"]["receive"] == {"wall_us": 0.0, "share": None, "cpu_us": None, "laps": 0}


def test_the_table_has_a_line_per_server_and_stage_in_loop_order_and_a_column_per_rate():
    before = {"obs": totals("wall", [0, 0, 0], [0, 0, 0])}
    rows = [
        {"offered_per_s": 1000, "stages": stages.median([
            stages.per_order(before, {"obs": totals("wall", [5000, 3000, 1000], [2, 2, 2], stalls=(0, 1, 0),
                                                    stalled_ns=(0, 12_000_000, 0))}, 1),
            stages.per_order(before, {"obs": totals("wall", [7000, 1000, 1000], [2, 1, 2], stalls=(0, 2, 1),
                                                    stalled_ns=(0, 30_000_000, 11_000_000))}, 1),
        ])},
        {"offered_per_s": 10_000,
         "stages": stages.per_order(before, {"obs": totals("wall", [0, 750, 250], [1, 1, 1])}, 1)},
    ]

    lines = stages.format_table(rows)

    assert lines[2:] == [
        "| server: stage | 1,000/s | 10,000/s |",
        "|---|---:|---:|",
        "| OBS: idle | 6.00 µs | 0.00 µs |",
        "| OBS: receive | 2.00 µs (62%) | 0.75 µs (75%) |",
        "| OBS: other | 1.00 µs (38%) | 0.25 µs (25%) |",
        "| OBS: busy | 3.00 µs | 1.00 µs |",
        "| OBS: orders per turn | 0.8 | 1.0 |",
        "| OBS: loop turns per turn that read input | 1.5 | 1.0 |",
        "| OBS: stalls in all runs (laps of 10 ms or longer) | receive 3 (42 ms), other 1 (11 ms) | none |",
    ]
    assert stages.format_table([{"offered_per_s": 1000}]) == []


def test_bench_e2e_reports_each_server_s_stages_per_order_with_their_cpu():
    done = subprocess.run(
        [sys.executable, "main.py", "bench", "e2e", "--rates", "2000", "--duration", "0.3", "--repeats", "1"],
        cwd=REPO, capture_output=True, text=True, timeout=300, env=dict(os.environ, EXCHANGE_STAGES="cpu"),
    )
    assert done.returncode == 0, done.stderr
    table = done.stdout
    report = json.loads(table.strip().splitlines()[-1])

    assert "| server: stage | 2,000/s |" in table
    for server, names in (("OBS", obs.STAGES), ("TES", tes.STAGES)):
        for name in (*names, "busy", "orders per turn", "loop turns per turn that read input",
                     "turns whose CPU was read"):
            assert f"| {server}: {name} | " in table
    assert "| offered orders/s | run | ack p99 | longest ack (due at) |" in table
    tail = next(line for line in table.splitlines() if line.startswith("| 2,000 | 1 | "))
    assert tail.count(" | ") == 10 and "n/a" not in tail
    (row,) = report["rates"]
    (run,) = row["runs"]
    # 600 orders due over 0.3 s: six pieces of 50 ms, the slowest 1% (6 acks) in one to six of them
    holding, pieces = run["ack_tail_pieces"]
    assert pieces == 6 and 1 <= holding <= 6 and f" | {holding} of 6 | " in tail
    assert row["stages"] == run["stages"]
    for server, names in (("obs", obs.STAGES), ("tes", tes.STAGES)):
        figures = run["stages"][server]
        assert figures["clock"] == "cpu" and list(figures["stages"]) == list(names)
        assert figures["cpu_turns"] == figures["stages"]["idle"]["laps"] > 0
        busy = [stage for name, stage in figures["stages"].items() if name != "idle"]
        assert all(stage["wall_us"] >= 0 and stage["cpu_us"] >= 0 for stage in figures["stages"].values())
        assert sum(stage["share"] for stage in busy) == pytest.approx(1, abs=0.01)
        assert figures["busy_us"] == pytest.approx(sum(stage["wall_us"] for stage in busy), abs=0.01)
        # the loop's work fits in the run, and its CPU in its wall time
        assert 0 < figures["busy_us"] * run["sent"] / 1e6 < run["duration_s"] + stages.FRESH_TIMEOUT_S
        assert figures["busy_cpu_us"] <= figures["busy_us"] * 1.05
        # a turn that read input per order at most (one order a frame at this rate), and the turns of
        # the load generator's own session frames (its logon, its book query, its mass cancel and its
        # logout), which fall in the run too: every order had its own turn in a fast run
        assert 0 < figures["stages"]["receive"]["laps"] <= run["sent"] + 4
        assert figures["turns_per_input"] == round(figures["stages"]["idle"]["laps"]
                                                   / figures["stages"]["receive"]["laps"], 2) >= 1
    tes_stages = run["stages"]["tes"]["stages"]
    assert tes_stages["receive"]["laps"] == tes_stages["validate"]["laps"]
    obs_stages = run["stages"]["obs"]["stages"]
    assert obs_stages["match"]["laps"] == obs_stages["journal"]["laps"] >= obs_stages["receive"]["laps"]
    # the floors beside it: each server's journal fsyncs (fsync=batch: the OBS one per turn that
    # ran commands, the TES up to two per turn), ZeroMQ alone's stand-ins' CPU, one group commit's
    assert 0 < run["stages"]["obs"]["fsyncs_per_order"] * run["sent"] <= obs_stages["journal"]["laps"]
    assert 0 < run["stages"]["tes"]["fsyncs_per_order"] * run["sent"] <= 2 * tes_stages["journal"]["laps"]
    assert "| OBS: journal fsyncs per order | " in table and "| TES: journal fsyncs per order | " in table
    bare = row["floor"]["cpu_us_per_order"]
    assert bare["echo"] >= 0 and bare["relay"] >= 0 and row["journal"]["append_cpu_us"] > 0  # (clock ticks)
    # the cores the exchange's three processes and ZeroMQ alone's kept busy, in the table's last column
    busy = [e2e.cores_busy(cpu, processes, 2_000, report["machine"]["cores"]) for cpu, processes in (
        (run["cpu_us_per_order"], e2e.EXCHANGE_PROCESSES), (bare, e2e.FLOOR_PROCESSES))]
    assert all(share > 0 for share in busy) and bare["client"] > 0
    medians = next(line for line in table.splitlines()
                   if line.startswith("| 2,000 | ") and not line.startswith("| 2,000 | 1 | "))
    assert medians.endswith(f" | {busy[0]:.0%} / {busy[1]:.0%} |")
    floors = e2e.cpu_floors(row)
    for server, stand_in in e2e.FLOOR_STAND_INS.items():
        commits = run["stages"][server]["fsyncs_per_order"] * row["journal"]["append_cpu_us"]
        assert floors[server] == pytest.approx(bare[stand_in] + commits)
    # each server's CPU by thread beside its stand-in's: the servers' loops did work (the stand-ins'
    # threads may have spent less than a clock tick, 17 µs an order here), and the groups add up to
    # the process's CPU per order, within a few clock ticks (the two are read moments apart)
    by_thread = {**run["cpu_us_by_thread"], **row["floor"]["cpu_us_by_thread"]}
    everything = {**run["cpu_us_per_order"], **bare}
    tick_us = 1e6 / os.sysconf("SC_CLK_TCK") / run["sent"]
    assert run["cpu_us_by_thread"]["obs"]["loop"] > 0 and run["cpu_us_by_thread"]["tes"]["loop"] > 0
    for process, threads in by_thread.items():
        assert min(threads.values()) >= 0
        assert sum(threads.values()) == pytest.approx(everything[process], abs=3 * tick_us + 0.2)
    assert row["cpu_us_by_thread"] == run["cpu_us_by_thread"]
    line = next(line for line in table.splitlines() if line.startswith("| 2,000 | ") and line.endswith(" µs |"))
    durable = row["durable_floor"]["cpu_us_by_thread"]["echo"]
    assert min(durable.values()) >= 0
    cells = [e2e._threads(figures) for figures in (by_thread["obs"], by_thread["echo"], durable, by_thread["tes"],
                                                   by_thread["relay"])]
    assert line == f"| 2,000 | {' | '.join(cells)} |"
    # each server's and stand-in's context switches per order: its loop and its I/O threads waited
    # for input (at 2,000/s, about one order per frame, a few times per order), and their table
    switched = {**run["switches_per_order"], **row["floor"]["switches_per_order"]}
    for process, groups in switched.items():
        assert groups["loop"]["waits"] > 0.1 and groups["zeromq"]["waits"] > 0.1, process
        assert min(groups["loop"]["preemptions"], groups["zeromq"]["preemptions"]) >= 0
    assert row["switches_per_order"] == run["switches_per_order"]
    line = next(line for line in table.splitlines() if line.startswith("| 2,000 | ") and " + " in line)
    cells = [e2e._switches(figures) for figures in (switched["obs"], switched["echo"],
                                                    row["durable_floor"]["switches_per_order"]["echo"],
                                                    switched["tes"], switched["relay"])]
    assert line == f"| 2,000 | {' | '.join(cells)} |"
    # and each loop thread's CPU per wait: the servers' waited and worked; the table shows them
    per_wait = {**run["loop_cpu_us_per_wait"], **row["floor"]["loop_cpu_us_per_wait"]}
    assert per_wait["obs"] > 0 and per_wait["tes"] > 0 and min(per_wait.values()) >= 0
    assert row["loop_cpu_us_per_wait"] == run["loop_cpu_us_per_wait"]
    waits = table.split("The loop thread's CPU per wait", 1)[1].splitlines()
    line = next(line for line in waits if line.startswith("| 2,000 | "))
    cells = [e2e._cpu(figure) for figure in (per_wait["obs"], per_wait["echo"],
                                             row["durable_floor"]["loop_cpu_us_per_wait"]["echo"],
                                             per_wait["tes"], per_wait["relay"])]
    assert line == f"| 2,000 | {' | '.join(cells)} |"
