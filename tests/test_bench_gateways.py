"""`python main.py bench gateways` (`benchmarks.gateways`): a tiny run through the FIX gateway, the REST
gateway and the ZeroMQ client against a real exchange, its table and JSON shape, every order answered;
the FIX frames the load generator builds, checked by the gateway's own strict framer; the verdicts on
made-up figures."""

import json
import subprocess
import sys

from procs import REPO

from benchmarks import gateways
from gateways.fix import messages as m

RATE, DURATION = 200, 0.5


def test_bench_gateways_runs_every_transport_and_each_answers_every_order():
    done = subprocess.run(
        [sys.executable, "main.py", "bench", "gateways", "--rates", str(RATE), "--duration", str(DURATION),
         "--repeats", "1"],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    report = json.loads(lines[-1])
    table = "\n".join(lines[:-1])
    assert "| zeromq | 200 |" in table and "| fix | 200 |" in table and "| rest | 200 |" in table
    assert "REST / ZeroMQ" in table and "not measured" not in table.split("target")[0]
    assert report["transports"] == ["zeromq", "fix", "rest"]
    assert report["exit_codes"] == {"api": 0, "fix": 0, "tes": 0, "obs": 0}
    [row] = report["rates"]
    assert row["offered_per_s"] == RATE
    orders = round(RATE * DURATION)
    for name in ("zeromq", "fix", "rest"):
        [run] = row["runs"][name]
        assert (run["sent"], run["answered"], run["lost"], run["rejected"]) == (orders, orders, 0, 0), run
        assert 0 < run["ack_p50_us"] <= run["ack_p90_us"] <= run["ack_p99_us"], run
        assert run["orders_per_s"] > 0
        assert row[name]["ack_p50_us"] == run["ack_p50_us"]
    assert row["runs"]["fix"][0]["unexpected_messages"] == 0
    assert set(row["fix"]["cpu_us_per_order"]) == {"obs", "tes", "fix", "load"}
    assert row["fix_over_zeromq"]["ack_p50_us"] == round(row["fix"]["ack_p50_us"] / row["zeromq"]["ack_p50_us"], 2)
    assert row["runs"]["rest"][0]["http_statuses"] == {"201": orders}
    assert set(row["rest"]["cpu_us_per_order"]) == {"obs", "tes", "api", "load"}
    assert row["rest_over_zeromq"]["ack_p50_us"] == round(row["rest"]["ack_p50_us"] / row["zeromq"]["ack_p50_us"], 2)
    assert set(report["targets"].values()) == {"not measured"}
    assert row["fix"]["other_cores"] >= 0


def test_the_load_generators_fix_frames_pass_the_gateways_framer():
    body = b"35=D\x0149=DEMO1\x0156=EXCHANGE\x0134=7\x0152=20261203-00:00:00.000\x0111=42\x0155=ACME\x01"
    framer = m.Framer(1 << 16)
    framer.feed(gateways.fix_frame(body) * 2)
    first, second = framer.next(), framer.next()
    assert first == second and framer.next() is None
    message = m.decode(first)
    assert (message.msg_type, message.get(11), message.get(34)) == ("D", "42", "7")


def run_row(p50: float, answered: float, lost: int = 0) -> dict:
    return {"orders_per_s": answered, "ack_p50_us": p50, "ack_p90_us": p50, "ack_p99_us": p50, "lost": lost,
            "cpu_cores": {"fix": 0.9, "tes": 0.3}}


def test_verdicts():
    rows = {1_000: {"zeromq": run_row(1000, 1000), "fix": run_row(1400, 1000)},
            20_000: {"zeromq": run_row(2000, 20000), "fix": run_row(9000, 19000)}}
    verdict = gateways.verdicts(rows, gateways.ratios(rows, "fix"))
    added, sustained = verdict.values()
    assert added.startswith("met (") and "+40%" in added
    assert sustained.startswith("not met (19,000 answered/s") and "fix 0.90" in sustained
    rows[1_000]["fix"] = run_row(1600, 1000)
    rows[20_000]["fix"] = run_row(9000, 19900)
    added, sustained = gateways.verdicts(rows, gateways.ratios(rows, "fix")).values()
    assert added.startswith("not met (") and sustained.startswith("met (")
