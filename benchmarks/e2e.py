"""`python main.py bench e2e`: orders through client -> TES -> OBS -> TES -> client.

Starts a real OBS (journal on, fsync at every group commit) and TES on free
loopback ports in a temporary directory, then runs the load generator
(`clients.loadgen`) against them at each offered rate in turn. The load generator
sends on a fixed schedule and measures each acknowledgement from the order's
*scheduled* send time, so a saturated exchange shows up as latency, not as a
quietly lower rate. Every order is individually acknowledged. Each rate runs
several times and the table shows medians: the machines this runs on are noisy.
"""

import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.book import machine
from servers.processes import REPO, Role, exchange_env

RATES = (10_000, 25_000, 50_000, 100_000, 150_000)
TARGETS = {"orders_per_s": 100_000, "p99_us_at_10k": 1_000}


def loadgen(env: dict, rate: int, duration: float) -> dict:
    """One load-generator run; its last stdout line is the JSON result."""
    done = subprocess.run(
        [sys.executable, "main.py", "-c", "loadgen", "--rate", str(rate), "--duration", str(duration)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=duration + 120,
    )
    if done.returncode != 0:
        raise RuntimeError(f"loadgen at {rate}/s failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


MEDIAN_KEYS = ("orders_per_s", "ack_p50_us", "ack_p99_us", "ack_p999_us")


def median_run(runs: list[dict]) -> dict:
    """One row from several runs at a rate: the median of each rate and latency figure, the
    worst ``lost``, the counts of the run whose p99 is the median (the machine is noisy)."""
    ordered = sorted(runs, key=lambda r: float("inf") if r["ack_p99_us"] is None else r["ack_p99_us"])
    row = dict(ordered[(len(ordered) - 1) // 2])
    for key in MEDIAN_KEYS:
        values = [r[key] for r in runs if r[key] is not None]
        row[key] = statistics.median(values) if values else None
    row["lost"] = max(r["lost"] for r in runs)
    return row


def run(rates=RATES, duration: float = 5.0, fsync: str = "batch", repeats: int = 3) -> dict:
    """Measure each offered rate ``repeats`` times against one running exchange; print the table
    of medians; return the figures (every run included)."""
    results = []
    with tempfile.TemporaryDirectory(prefix="exchange-e2e-") as tmp:
        env = exchange_env(Path(tmp), EXCHANGE__JOURNAL__FSYNC=fsync)
        with Role(["-s", "OBS"], env) as obs, Role(["-s", "TES"], env) as tes:
            for rate in rates:
                runs = [loadgen(env, rate, duration) for _ in range(repeats)]
                results.append({"offered_per_s": rate, **median_run(runs), "runs": runs})
            codes = {"tes": tes.stop(), "obs": obs.stop()}
    report = {
        "machine": machine(), "fsync": fsync, "duration_s": duration, "repeats": repeats, "rates": results,
        "exit_codes": codes,
    }
    print(format_report(report))
    return report


def format_report(report: dict) -> str:
    m = report["machine"]
    lines = [
        f"machine: {m['cpu']}, {m['cores']} cores, Python {m['python']}; journal fsync={report['fsync']}; "
        f"median of {report['repeats']} runs of {report['duration_s']:g} s per rate (lost: the worst run)",
        "",
        "| offered orders/s | answered orders/s | acked | rejected | fills | lost | ack p50 | ack p99 | ack p99.9 |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in report["rates"]:
        lines.append(
            f"| {r['offered_per_s']:,} | {r['orders_per_s']:,.0f} | {r['acked']:,} | {r['rejected']:,} | "
            f"{r['fills']:,} | {r['lost']:,} | {_us(r['ack_p50_us'])} | {_us(r['ack_p99_us'])} | "
            f"{_us(r['ack_p999_us'])} |"
        )
    return "\n".join(lines)


def _us(value) -> str:
    if value is None:
        return "n/a"
    return f"{value / 1000:,.1f} ms" if value >= 1000 else f"{value:,.0f} µs"
