"""`bench e2e`'s verdicts on its targets, from made-up rows of medians and runs."""

import pytest

from benchmarks import e2e
from config.settings import ConfigError, load_config

SUSTAINED = "100,000 orders/s sustained"
FLOOR = "ack p99 at 10,000/s at most 1.5x ZeroMQ alone's in the same run"
CPU = "CPU per order at most 3 µs in the OBS and in the TES at 100,000/s"


def row(rate, p99s=(), floor_p99s=(), obs=None, tes=None, answered=None, lost=0):
    """A row of `bench e2e`'s report: runs with the ack p99s ``p99s``, the floor's runs beside
    them with ``floor_p99s``, the servers' CPU per order (median) ``obs`` and ``tes``."""
    runs = [{"ack_p99_us": p99} for p99 in p99s]
    return {"offered_per_s": rate, "orders_per_s": answered or rate, "lost": lost,
            "ack_p99_us": sorted(p99s)[(len(p99s) - 1) // 2] if p99s else None, "runs": runs,
            "floor_runs": [{"ack_p99_us": p99} for p99 in floor_p99s], "floor": None, "journal": None,
            "cpu_us_per_order": {"obs": obs, "tes": tes, "load": 3.0}}


def test_the_p99_against_zeromq_alone_is_the_median_of_the_ratios_within_each_run():
    verdict = e2e.verdicts([row(10_000, p99s=(4_500, 3_000, 9_900), floor_p99s=(11_900, 2_000, 3_100))])[FLOOR]
    # ratios 0.38, 1.5 and 3.19: not the ratio of the medians (4,500 / 3,100 = 1.45)
    assert verdict == "met (1.5x ZeroMQ alone's p99: the median of 3 runs' ratios, 0.4x-3.2x)"
    verdict = e2e.verdicts([row(10_000, p99s=(4_000,), floor_p99s=(2_000,))])[FLOOR]
    assert verdict == "not met (2.0x ZeroMQ alone's p99: in the one run)"


def test_the_p99_verdict_says_where_the_durable_floor_itself_lies_beyond_the_target():
    slow = row(10_000, p99s=(4_000, 3_000, 7_000), floor_p99s=(2_000, 2_000, 2_500))
    slow["durable_floor_runs"] = [{"ack_p99_us": p99} for p99 in (3_600, 3_700, 3_600)]
    # the exchange's ratios 2.0, 1.5 and 2.8; the durable floor's own 1.8, 1.85 and 1.44
    assert e2e.verdicts([slow])[FLOOR] == (
        "not met (2.0x ZeroMQ alone's p99: the median of 3 runs' ratios, 1.5x-2.8x; ZeroMQ alone with one group "
        "commit per turn is itself 1.80x ZeroMQ alone's (the median of 3 runs' ratios, 1.4x-1.9x), so 1.5x lies "
        "below what an answer made durable first costs here)")
    slow["durable_floor_runs"] = [{"ack_p99_us": p99} for p99 in (2_400, 2_600, 3_000)]
    # the durable floor's ratios 1.2, 1.3 and 1.2: the target lies above it, nothing more is said
    assert e2e.verdicts([slow])[FLOOR] == (
        "not met (2.0x ZeroMQ alone's p99: the median of 3 runs' ratios, 1.5x-2.8x; ZeroMQ alone with one group "
        "commit per turn is itself 1.20x ZeroMQ alone's (the median of 3 runs' ratios, 1.2x-1.3x))")
    slow["durable_floor_runs"] = slow["durable_floor_runs"][:2]
    assert e2e.over_bare(slow, "durable_floor_runs") == [], "runs not paired round by round are not compared"


def test_the_p99_against_the_durable_floor_is_the_median_of_the_ratios_within_each_run():
    slow = row(10_000, p99s=(2_000, 3_000, 2_400))
    slow["durable_floor_runs"] = [{"ack_p99_us": p99} for p99 in (1_000, 1_500, 2_000)]
    slow["durable_floor"] = {"ack_p99_us": 1_500}
    assert e2e.durable_verdict(slow) == ("2.0x the p99 of ZeroMQ alone with one group commit per turn (p99 1.5 ms; "
                                         "the median of 3 runs' ratios, 1.2x-2.0x)")
    assert e2e.durable_verdict(None) == e2e.durable_verdict(row(10_000, p99s=(2_000,))) == "not measured"


def test_the_replicated_floor_is_set_against_zeromq_alone_round_by_round():
    """`bench e2e --replica`: ZeroMQ alone answering from a standby's copy, over ZeroMQ alone's run
    of the same round (not the exchange's runs, which it does not bound)."""
    slow = row(10_000, p99s=(9_000, 9_000, 9_000), floor_p99s=(1_000, 2_000, 1_000))
    slow["replicated_floor_runs"] = [{"ack_p99_us": p99} for p99 in (1_900, 2_600, 3_000)]
    slow["replicated_floor"] = {"ack_p99_us": 2_600}
    assert e2e.replicated_verdict(slow) == (
        "ZeroMQ alone with a standby holding each turn's orders before they are answered (no fsync) is 1.90x ZeroMQ "
        "alone's p99 (p99 2.6 ms; the median of 3 runs' ratios, 1.3x-3.0x)")
    assert e2e.replicated_verdict(None) == e2e.replicated_verdict(row(10_000, p99s=(2_000,))) == "not measured"


def test_the_cpu_per_order_of_both_servers_must_be_within_3_us():
    assert e2e.verdicts([row(100_000, obs=3.0, tes=3.0)])[CPU] == "met (OBS 3.0 µs, TES 3.0 µs)"
    assert e2e.verdicts([row(100_000, obs=2.5, tes=3.1)])[CPU] == "not met (OBS 2.5 µs, TES 3.1 µs)"
    assert e2e.verdicts([row(100_000, obs=4.04, tes=2.0)])[CPU] == "not met (OBS 4.0 µs, TES 2.0 µs)"


def test_the_cpu_verdict_names_each_server_s_floor_measured_in_the_same_run():
    fast = row(100_000, obs=3.9, tes=6.2)
    fast["floor"] = {"cpu_us_per_order": {"echo": 0.7, "relay": 1.0}}
    fast["journal"] = {"append_cpu_us": 50.0}
    fast["stages"] = {"obs": {"fsyncs_per_order": 0.01}, "tes": {"fsyncs_per_order": 0.016}}
    # OBS: 0.7 + 0.01 x 50 = 1.2 µs; TES: 1.0 + 0.016 x 50 = 1.8 µs
    assert e2e.cpu_floors(fast) == {"obs": pytest.approx(1.2), "tes": pytest.approx(1.8)}
    assert e2e.verdicts([fast])[CPU] == (
        "not met (OBS 3.9 µs, TES 6.2 µs; their floors in the same run, ZeroMQ alone's stand-in for each and its "
        "fsyncs at one group commit alone's CPU: OBS 1.2 µs, TES 1.8 µs, so 3.2x and 3.4x them)")
    fast["floor"]["cpu_us_per_order"]["relay"] = 3.2
    # TES: 3.2 + 0.016 x 50 = 4.0 µs, a floor above the target
    assert e2e.verdicts([fast])[CPU].endswith("so 3.2x and 1.6x them; the TES's floor alone is above 3 µs here)")
    fast["floor"]["cpu_us_per_order"]["echo"] = 2.6
    assert e2e.verdicts([fast])[CPU].endswith("the OBS's and the TES's floor alone are above 3 µs here)")
    fast["floor"]["cpu_us_per_order"]["echo"] = 0.7
    fast["floor"]["cpu_us_per_order"]["relay"], fast["stages"]["tes"]["fsyncs_per_order"] = 0.0, 0.0
    # a floor too small for the clock's ticks to read
    assert e2e.verdicts([fast])[CPU].endswith("OBS 1.2 µs, TES 0.0 µs, so 3.2x and n/a them)")
    fast["stages"]["tes"]["fsyncs_per_order"] = None
    assert e2e.cpu_floors(fast) is None, "a server without its fsyncs counted has no floor"
    assert e2e.verdicts([fast])[CPU] == "not met (OBS 3.9 µs, TES 6.2 µs)"


def test_targets_of_rates_not_run_or_figures_not_read_are_not_measured():
    verdicts = e2e.verdicts([row(1_000, p99s=(900,), floor_p99s=(800,), obs=1.0, tes=1.0)])
    assert {verdicts[name] for name in (SUSTAINED, FLOOR, CPU)} == {"not measured"}
    assert e2e.verdicts([row(100_000)])[CPU] == "not measured", "no /proc: no CPU times"
    assert e2e.verdicts([row(10_000, p99s=(900,), floor_p99s=(0,))])[FLOOR] == "not measured"


def test_the_cpu_column_shows_tenths_of_a_microsecond():
    assert e2e._cpu(4.04) == "4.0 µs" and e2e._cpu(None) == "n/a" and e2e._cpu(61.27) == "61.3 µs"


def test_pinning_sets_each_server_s_cpus_or_is_refused_where_they_are_not_this_process_s(monkeypatch):
    assert e2e.pinned_env(False) == {}
    monkeypatch.setattr(e2e.os, "sched_getaffinity", lambda pid: {0, 1, 2})
    assert e2e.pinned_env(True) == {"EXCHANGE__SHARDS__0__CPUS": "[0]", "EXCHANGE__TES__CPUS": "[1]"}
    assert load_config(environ=e2e.pinned_env(True)).tes.cpus == [1], "settings the servers read"
    monkeypatch.setattr(e2e.os, "sched_getaffinity", lambda pid: {0})
    refused = r"^--pin runs the servers on CPUs \[0, 1\]: this process may use \[0\] only$"
    with pytest.raises(ConfigError, match=refused):
        e2e.pinned_env(True)


@pytest.mark.parametrize("pinned", [None, e2e.PINNED])
def test_the_report_says_where_the_threads_were_pinned(pinned):
    report = {"machine": {"cpu": "a CPU", "cores": 2, "python": "3.11"}, "fsync": "batch", "duration_s": 5.0,
              "repeats": 1, "rates": [], "targets": {}, "durable_floor_at_10k": "not measured", "pinned": pinned}
    header = e2e.format_report(report).splitlines()[0]
    said = "threads pinned: the OBS and the echo on CPU 0, the TES and the relay on CPU 1; "
    assert (said in header) == (pinned is not None) and header.startswith("machine: a CPU, 2 cores")


def test_a_ratio_under_a_tenth_is_shown_to_two_significant_digits_not_as_nothing():
    slow = row(10_000, p99s=(3_800, 2_600))
    slow["durable_floor_runs"] = [{"ack_p99_us": p99} for p99 in (77_800, 1_700)]
    slow["durable_floor"] = {"ack_p99_us": 39_750}
    # ratios 0.049 (the floor's run met a stall of the disk) and 1.53, their median 0.79
    assert e2e.durable_verdict(slow) == ("0.8x the p99 of ZeroMQ alone with one group commit per turn (p99 39.8 ms; "
                                         "the median of 2 runs' ratios, 0.049x-1.5x)")
    assert [e2e._times(ratio) for ratio in (0.0949, 0.095, 1.0, 12.34)] == ["0.095x", "0.1x", "1.0x", "12.3x"]


def test_the_cores_kept_busy_are_the_processes_cpu_per_order_at_the_offered_rate():
    cpu = {"obs": 50.0, "tes": 65.0, "load": 51.0}
    # 166 µs of CPU an order, 10,000 orders a second: 1.66 cores of 2
    assert e2e.cores_busy(cpu, e2e.EXCHANGE_PROCESSES, 10_000, 2) == pytest.approx(0.83)
    assert e2e.cores_busy({"echo": 32.0, "relay": 50.0, "client": 52.0}, e2e.FLOOR_PROCESSES, 10_000, 2) == (
        pytest.approx(0.67))
    assert e2e.cores_busy(dict(cpu, tes=None), e2e.EXCHANGE_PROCESSES, 10_000, 2) is None, "a CPU not read"
    assert e2e.cores_busy(cpu, e2e.EXCHANGE_PROCESSES, 10_000, None) is None, "cores unknown"
    assert e2e._share(0.834) == "83%" and e2e._share(None) == "n/a"


def test_each_run_s_tail_line_says_how_many_orders_the_load_generator_sent_per_frame():
    made = row(100_000, p99s=(2_000.0, 3_000.0), floor_p99s=(1_000.0, 1_100.0))
    made["runs"][0]["orders_per_frame"] = 100.0
    made["durable_floor_runs"] = [{"ack_p99_us": 1_500.0}, {"ack_p99_us": 1_600.0}]
    header, rule, first, second = e2e.format_tails([made])[2:]
    columns = [cell.strip() for cell in header.strip("|").split("|")]
    at = columns.index("orders per frame")
    assert len(rule.strip("|").split("|")) == len(columns)
    assert [cell.strip() for cell in first.strip("|").split("|")][at] == "100.0"
    assert [cell.strip() for cell in second.strip("|").split("|")][at] == "n/a", "a run that did not say"
