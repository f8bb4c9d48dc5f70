"""The status file a server publishes (`servers.status`): the latency histogram's buckets and
percentiles against hand-worked values, the window of recent periods, and the writer (whole
documents, rates over the interval, rejects by reason, a failing write said once and survived)."""

import json
import logging
from bisect import bisect_left

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.types import RejectReason
from servers.status import BOUNDS_NS, BOUNDS_US, PERIOD_S, WINDOW, LatencyHistogram, StatusFile

log = logging.getLogger("test-status")
US = 1000
"""Nanoseconds in a microsecond: the histogram counts ns and reports µs."""


def rolled(*microseconds: float) -> LatencyHistogram:
    histogram = LatencyHistogram()
    for value in microseconds:
        histogram.add(int(value * US))
    histogram.roll()
    return histogram


# ================================================================ buckets and percentiles


def test_bounds_start_at_one_microsecond_and_grow_at_most_five_percent_or_one_microsecond():
    assert BOUNDS_US[:3] == [1, 2, 3] and BOUNDS_US[-1] >= 100_000_000
    for lower, upper in zip(BOUNDS_US, BOUNDS_US[1:], strict=False):
        assert lower < upper <= max(lower + 1, lower * 1.05)


def test_percentiles_of_1_to_100_microseconds_are_the_bounds_of_the_nearest_rank_samples():
    # Nearest rank: p50 is the 50th smallest (50 µs, a bound), p90 the 90th (90 µs, in the
    # bucket 89..93), p99 the 99th (99 µs, bucket 97..101, capped at the maximum 100).
    histogram = rolled(*range(1, 101))

    assert histogram.window() == {"count": 100, "p50": 50, "p90": 93, "p99": 100, "p999": 100, "max": 100}


def test_percentiles_of_four_samples_take_the_ceiling_rank():
    # ranks: p50 ceil(2) = 2nd, p90 ceil(3.6) = 4th, p99 and p99.9 the 4th
    assert rolled(1, 2, 3, 4).window() == {"count": 4, "p50": 2, "p90": 4, "p99": 4, "p999": 4, "max": 4}


def test_a_value_between_bounds_reports_the_upper_bound_and_the_maximum_rounds_up():
    # 41.5 µs is in the bucket 40..42; the maximum, 41.5 µs, is reported as 42 µs
    assert rolled(41.5).window() == {"count": 1, "p50": 42, "p90": 42, "p99": 42, "p999": 42, "max": 42}
    # 40.2 µs: the bucket's bound, 42, is capped at the maximum, 41 (40.2 rounded up)
    assert rolled(40.2).window()["p50"] == 41


def test_the_tail_percentile_needs_a_thousand_samples_to_leave_the_maximum():
    histogram = rolled(*[10] * 999, 5000)
    assert histogram.window() == {"count": 1000, "p50": 10, "p90": 10, "p99": 10, "p999": 10, "max": 5000}
    assert rolled(*[10] * 998, 5000, 5000).window()["p999"] == 5000


def test_durations_under_a_microsecond_and_beyond_every_bound_are_counted():
    histogram = LatencyHistogram()
    histogram.add(1)
    histogram.add(200 * 10**9)
    histogram.roll()

    assert histogram.window() == {"count": 2, "p50": 1, "p90": 200_000_000, "p99": 200_000_000,
                                  "p999": 200_000_000, "max": 200_000_000}


def test_add_since_counts_each_duration_from_its_start_to_now():
    histogram = LatencyHistogram()
    histogram.add_since([100, 200, 2_500], 5_000)
    histogram.add_since([], 9_000)
    histogram.roll()

    # 4.9 µs and 4.8 µs (bucket 4..5), 2.5 µs (bucket 2..3); the maximum 4.9 µs -> 5
    assert histogram.window() == {"count": 3, "p50": 5, "p90": 5, "p99": 5, "p999": 5, "max": 5}


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(-10**6, 2 * 10**11), max_size=60), st.integers(0, 10**12))
def test_add_since_counts_in_the_bucket_bisect_finds_and_keeps_the_longest(durations, now):
    # Buckets.count_since (C) against the rule it implements: bucket = bisect_left(BOUNDS_NS, duration),
    # durations exactly on a bound, below every bound (negative too) and beyond the last included
    durations += [BOUNDS_NS[0], BOUNDS_NS[7], BOUNDS_NS[7] + 1, BOUNDS_NS[-1], BOUNDS_NS[-1] + 1]
    histogram = LatencyHistogram()
    histogram.add_since([now - duration for duration in durations], now)

    expected = [0] * (len(BOUNDS_NS) + 1)
    for duration in durations:
        expected[bisect_left(BOUNDS_NS, duration)] += 1
    assert histogram.counts.tolist() == expected
    assert histogram.maximum == max(0, *durations)


def test_add_since_refuses_a_start_beyond_int64_after_counting_those_before_it():
    histogram = LatencyHistogram()
    with pytest.raises(OverflowError):
        histogram.add_since([4_000, 2**63], 5_000)
    assert histogram.counts.sum() == 1 and histogram.counts[0] == 1   # 1 µs: the first bucket


def test_no_samples_give_no_percentiles():
    histogram = rolled()
    assert histogram.window() is None and histogram.total() is None


def test_a_period_leaves_the_window_after_window_periods_but_stays_in_the_total():
    histogram = rolled(900)
    for _ in range(WINDOW - 1):
        histogram.add(10 * US)
        histogram.roll()
    assert histogram.window()["max"] == 900, "still in the window"

    histogram.add(10 * US)
    histogram.roll()

    assert histogram.window() == {"count": WINDOW, "p50": 10, "p90": 10, "p99": 10, "p999": 10, "max": 10}
    # 61 samples: p99 is the ceil(60.39) = 61st smallest, the 900 µs one
    assert histogram.total() == {"count": WINDOW + 1, "p50": 10, "p90": 10, "p99": 900, "p999": 900, "max": 900}


# ================================================================ the writer


def read(path):
    return json.loads(path.read_text())


def test_a_document_holds_who_when_counters_and_rates_over_the_interval(tmp_path):
    path = tmp_path / "status.json"
    status = StatusFile(path, "TES", "TES", log, now=100.0)
    assert not status.due(100.0 + PERIOD_S / 2) and status.due(100.0 + PERIOD_S)

    assert status.publish(102.0, {"orders": 10, "fills": 0}, {"sessions": 3})
    first = read(path)
    assert status.publish(106.0, {"orders": 30, "fills": 2})
    second = read(path)

    assert {key: first[key] for key in ("role", "name", "period", "interval", "counters", "rates", "sessions",
                                        "stopped")} == {
        "role": "TES", "name": "TES", "period": PERIOD_S, "interval": 2.0, "counters": {"orders": 10, "fills": 0},
        "rates": {"orders": 5.0, "fills": 0.0}, "sessions": 3, "stopped": None}
    assert second["interval"] == 4.0 and second["rates"] == {"orders": 5.0, "fills": 0.5}
    assert first["pid"] == second["pid"] > 0 and first["started"] == second["started"]
    assert first["started"] <= first["updated"] <= second["updated"]
    assert status.due(106.0 + PERIOD_S) and not status.due(106.0 + PERIOD_S / 2)


def test_rejects_are_listed_by_code_with_their_rates_and_latency_by_name(tmp_path):
    path = tmp_path / "status.json"
    status = StatusFile(path, "TES", "TES", log, now=0.0)
    rejects = dict.fromkeys(RejectReason, 0)
    rejects[RejectReason.PRICE_OFF_TICK] = 4
    rejects[RejectReason.FOK_NOT_FILLABLE] = 1
    latency = LatencyHistogram()
    latency.add(50 * US)
    status.publish(1.0, {}, rejects=rejects, latency={"ack": latency})
    rejects[RejectReason.PRICE_OFF_TICK] = 6
    status.publish(3.0, {}, rejects=rejects, latency={"ack": latency})

    document = read(path)
    assert document["rejects"] == [
        {"reason": "FOK_NOT_FILLABLE", "code": 2002, "count": 1, "rate": 0.0},
        {"reason": "PRICE_OFF_TICK", "code": 3002, "count": 6, "rate": 1.0},
    ]
    assert document["latency"] == {"ack": {
        "window": {"count": 1, "p50": 50, "p90": 50, "p99": 50, "p999": 50, "max": 50},
        "total": {"count": 1, "p50": 50, "p90": 50, "p99": 50, "p999": 50, "max": 50},
    }}


def test_the_last_document_of_a_clean_stop_says_when(tmp_path):
    path = tmp_path / "status.json"
    status = StatusFile(path, "OBS", "A", log, now=0.0)
    status.publish(1.0, {})
    assert read(path)["stopped"] is None

    status.publish(1.5, {}, stopped=True)

    document = read(path)
    assert document["stopped"] == document["updated"]


def test_each_write_replaces_the_whole_file_and_leaves_no_temporary_behind(tmp_path):
    path = tmp_path / "deeper" / "status.json"
    status = StatusFile(path, "recorder", "recorder", log, now=0.0)
    status.publish(1.0, {"recorded": 1}, {"A": {"committed": 1}})
    status.publish(2.0, {"recorded": 2}, {"B": {"committed": 7}})

    document = read(path)
    assert "A" not in document and document["B"] == {"committed": 7} and document["counters"] == {"recorded": 2}
    assert [p.name for p in path.parent.iterdir()] == ["status.json"]


def test_a_failing_write_is_said_once_and_once_more_when_it_works_again(tmp_path, caplog):
    blocker = tmp_path / "journal"
    blocker.write_text("a file where the directory should be")
    path = blocker / "status.json"
    status = StatusFile(path, "TES", "TES", log, now=0.0)
    caplog.set_level(logging.INFO, logger=log.name)

    assert [status.publish(float(second), {"orders": second}) for second in range(1, 4)] == [False] * 3
    assert [r.levelname for r in caplog.records] == ["WARNING"]
    assert f"cannot write the status file {path}" in caplog.records[0].getMessage()

    blocker.unlink()
    assert status.publish(4.0, {"orders": 4}) and status.publish(5.0, {"orders": 5})
    assert [r.levelname for r in caplog.records] == ["WARNING", "INFO"]
    assert caplog.records[1].getMessage() == f"the status file {path} is written again"
    assert read(path)["rates"] == {"orders": 1.0}, "the rates are over the last interval, written or not"

    path.unlink()
    path.parent.rmdir()
    path.parent.write_text("in the way again")
    assert not status.publish(6.0, {"orders": 6})
    assert [r.levelname for r in caplog.records] == ["WARNING", "INFO", "WARNING"]
