"""The exchange's health (`frontend.health`) and its page (`frontend.dashboard.health`).

`gather` on crafted status files: up, stale, a dead or reused pid, a clean stop, missing,
damaged; the lag of the journal and the recorder. Then a real OBS, recorder and TES: orders
(one refused by the TES, one by the book) show in the counts, the rejects and the ack latency,
and a TES killed with ``kill -9`` shows as down. The page is drawn by Streamlit's `AppTest`,
on crafted files and on the live exchange, without an exception.
"""

import json
import os
import subprocess
import sys
import time

import pytest
from procs import Role, endpoint, exchange_env
from streamlit.testing.v1 import AppTest

from clients.client import ExchangeClient
from config.settings import load_config
from engine.types import OrderType, Side, TimeInForce
from frontend.dashboard import health as health_page
from frontend.health import (
    STALE_PERIODS,
    Health,
    Latency,
    MarketDataFigures,
    Percentiles,
    PortConnections,
    RejectCount,
    gather,
)

NS = 10**9
IMPORTED = time.time_ns()
"""Later than this process started: what its crafted documents say it started at."""


def paths_env(tmp_path) -> dict[str, str]:
    """The configuration's status files under ``tmp_path`` (shard A's OBS, the TES, the recorder)."""
    return {
        "EXCHANGE__SHARDS__0__JOURNAL_DIR": str(tmp_path / "journal-A"),
        "EXCHANGE__TES__JOURNAL_DIR": str(tmp_path / "tes"),
        "EXCHANGE__RECORDER__STATUS_FILE": str(tmp_path / "recorder-status.json"),
    }


def document(role: str, name: str, seen_ago: float = 0.1, pid: int | None = None, stopped: bool = False,
             **figures) -> dict:
    """A status document as `servers.status.StatusFile` writes it; by default this test
    process's, written ``seen_ago`` seconds ago."""
    updated = time.time_ns() - int(seen_ago * NS)
    return {"role": role, "name": name, "pid": os.getpid() if pid is None else pid, "started": IMPORTED,
            "updated": updated, "stopped": updated if stopped else None, "period": 1.0, "interval": 1.0,
            "counters": {}, "rates": {}} | figures


def write(tmp_path, obs=None, tes=None, recorder=None) -> None:
    """Write the documents given (a dict, or bytes as they are)."""
    for path, content in ((tmp_path / "journal-A" / "status.json", obs), (tmp_path / "tes" / "status.json", tes),
                          (tmp_path / "recorder-status.json", recorder)):
        if content is None:
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else json.dumps(content).encode())


def health(tmp_path) -> Health:
    return gather(load_config(environ=paths_env(tmp_path)))


def states(found: Health) -> dict[str, str]:
    return {f"{p.role} {p.name}": p.state for p in found.processes}


ACK = {"window": {"count": 4, "p50": 300, "p90": 450, "p99": 500, "p999": 500, "max": 500},
       "total": {"count": 9, "p50": 280, "p90": 450, "p99": 900, "p999": 900, "max": 900}}
REJECTS = [{"reason": "FOK_NOT_FILLABLE", "code": 2002, "count": 1, "rate": 0.0},
           {"reason": "PRICE_OFF_TICK", "code": 3002, "count": 3, "rate": 1.0}]


def healthy(tmp_path, obs_sequence=120, committed=100, seconds=0.5) -> None:
    write(
        tmp_path,
        obs=document("OBS", "A", sequence=obs_sequence, counters={"executed": obs_sequence}, rates={"executed": 2.0},
                     journal={"bytes": 4096, "unsynced_bytes": 17, "discarded_bytes": 0, "unwritable": None},
                     consumers=[{"name": "recorder", "acked": committed, "behind": obs_sequence - committed,
                                 "connected": True, "left_behind": False}], tes=[1],
                     market_data={"subscribers": 3, "dropped": 5, "refused": 1},
                     connections={"market data": {"connections": 4, "refused": 0},
                                  "snapshot": {"connections": 1, "refused": 2}}),
        tes=document("TES", "TES", counters={"orders": 9, "acks": 9}, rates={"orders": 4.0, "acks": 4.0},
                     latency={"ack": ACK}, rejects=REJECTS, sessions=2, awaiting=0,
                     shards={"A": {"connected": True, "ready": True}},
                     connections={"client": {"connections": 2, "refused": 7}}),
        recorder=document("recorder", "recorder", counters={"recorded": committed},
                          A={"committed": committed, "journal_last": committed, "behind": 0, "seconds": seconds,
                             "pending": 0}),
    )


# ================================================================ gather, on crafted files


def test_fresh_documents_of_a_live_process_are_up_with_their_figures(tmp_path):
    healthy(tmp_path)

    found = health(tmp_path)

    assert states(found) == {"OBS A": "up", "TES TES": "up", "recorder recorder": "up"}
    tes = found.processes[1]
    assert tes.up and tes.pid == os.getpid() and 0 <= tes.seen_ago < 1
    assert (tes.counters, tes.rates) == ({"orders": 9, "acks": 9}, {"orders": 4.0, "acks": 4.0})
    assert found.ack_latency == Latency(Percentiles(4, 300, 450, 500, 500, 500),
                                        Percentiles(9, 280, 450, 900, 900, 900))
    assert found.rejects == [RejectCount("FOK_NOT_FILLABLE", 2002, 1, 0.0), RejectCount("PRICE_OFF_TICK", 3002, 3, 1.0)]
    [shard] = found.shards
    assert (shard.name, shard.journal_last, shard.journal_bytes, shard.unsynced_bytes, shard.unwritable,
            shard.recorder_committed, shard.behind) == ("A", 120, 4096, 17, None, 100, 20)
    assert 0.5 <= shard.seconds_behind < 1.5, "the newest recorded entry's age, as of now"
    assert [(c.name, c.acked, c.behind, c.connected) for c in shard.consumers] == [("recorder", 100, 20, True)]
    assert shard.market_data == MarketDataFigures(3, 5, 1)
    assert found.ports == [PortConnections("OBS A", "market data", 4, 0), PortConnections("OBS A", "snapshot", 1, 2),
                           PortConnections("TES", "client", 2, 7)]


def test_nothing_behind_is_zero_seconds_behind(tmp_path):
    healthy(tmp_path, obs_sequence=100, committed=100, seconds=40.0)

    [shard] = health(tmp_path).shards

    assert (shard.behind, shard.seconds_behind) == (0, 0.0)


def test_a_live_process_that_writes_nothing_for_three_periods_is_not_responding(tmp_path):
    healthy(tmp_path)
    write(tmp_path, tes=document("TES", "TES", seen_ago=STALE_PERIODS + 7))

    tes = health(tmp_path).processes[1]

    assert (tes.state, tes.up) == ("not responding", False)
    assert 10 <= tes.seen_ago < 11 and "has written nothing for 10 s" in tes.detail


def test_a_process_gone_without_a_clean_stop_is_not_running_even_with_a_fresh_document(tmp_path):
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    healthy(tmp_path)
    write(tmp_path, obs=document("OBS", "A", pid=int(done.stdout), seen_ago=0.2))

    obs = health(tmp_path).processes[0]

    assert (obs.state, obs.up) == ("not running", False)
    assert f"process {done.stdout.strip()} is gone without stopping cleanly" in obs.detail
    assert 0.2 <= obs.seen_ago < 5 and f"last seen {obs.seen_ago:.1f} s ago" in obs.detail


@pytest.mark.skipif(not os.path.exists("/proc/self/stat"), reason="needs Linux's /proc")
def test_a_pid_now_used_by_a_younger_process_is_not_running(tmp_path):
    healthy(tmp_path)
    claimed = document("TES", "TES", seen_ago=5)
    claimed["started"] = time.time_ns() - 86_400 * NS
    write(tmp_path, tes=claimed)

    assert health(tmp_path).processes[1].state == "not running"


def test_a_clean_stop_is_stopped_with_how_long_ago(tmp_path):
    healthy(tmp_path)
    write(tmp_path, recorder=document("recorder", "recorder", seen_ago=90, stopped=True))

    recorder = health(tmp_path).processes[2]

    assert (recorder.state, recorder.detail) == ("stopped", "stopped cleanly 2 min ago")


def test_no_files_is_never_started_and_nothing_known(tmp_path):
    found = health(tmp_path)

    assert states(found) == {"OBS A": "never started", "TES TES": "never started", "recorder recorder": "never started"}
    assert found.processes[1].detail == f"no status file {tmp_path / 'tes' / 'status.json'}"
    assert (found.ack_latency, found.rejects) == (None, [])
    [shard] = found.shards
    assert (shard.journal_last, shard.recorder_committed, shard.behind, shard.seconds_behind) == (None,) * 4


@pytest.mark.parametrize("content, problem", [
    (b'{"role": "TES", "name": "TES", "pid": 12', "truncated"),
    (b"", "Input data was truncated"),
    (b"[1, 2]", "expected a JSON object, not list"),
    (json.dumps(document("TES", "TES") | {"pid": "twelve"}).encode(), "Expected `int`, got `str` - at `$.pid`"),
    (json.dumps(document("TES", "TES") | {"pid": -1}).encode(), "Expected `int` >= 1 - at `$.pid`"),
    (json.dumps({k: v for k, v in document("TES", "TES").items() if k != "updated"}).encode(),
     "missing required field `updated`"),
    (json.dumps(document("TES", "TES") | {"latency": {"ack": {"window": {"p50": "fast"}}}}).encode(), "latency"),
])
def test_a_damaged_document_is_unreadable_for_its_process_only(tmp_path, content, problem):
    healthy(tmp_path)
    write(tmp_path, tes=content)

    found = health(tmp_path)

    assert states(found) == {"OBS A": "up", "TES TES": "unreadable", "recorder recorder": "up"}
    tes = found.processes[1]
    assert tes.detail.startswith(f"{tmp_path / 'tes' / 'status.json'} is not a status document: ")
    assert problem in tes.detail
    assert (tes.pid, found.ack_latency, found.rejects) == (None, None, [])


def test_a_damaged_shard_entry_of_the_recorder_leaves_its_progress_unknown(tmp_path):
    healthy(tmp_path)
    write(tmp_path, recorder=document("recorder", "recorder", A={"committed": "many"}))

    found = health(tmp_path)

    assert found.processes[2].state == "up"
    [shard] = found.shards
    assert (shard.journal_last, shard.recorder_committed, shard.behind) == (120, None, None)


# ================================================================ a live exchange


def until(config, check, timeout: float = 15.0) -> Health:
    """`gather` again until ``check`` holds of it; the last `Health` either way, failing on a timeout."""
    deadline = time.monotonic() + timeout
    while True:
        found = gather(config)
        if check(found) or time.monotonic() > deadline:
            assert check(found), found
            return found
        time.sleep(0.1)


def answers(client: ExchangeClient, count: int, timeout: float = 10.0) -> list:
    """The first ``count`` acceptances and rejections of orders the client receives."""
    deadline, found = time.monotonic() + timeout, []
    while len(found) < count and time.monotonic() < deadline:
        found += [m for m in client.receive(0.2) if type(m).__name__ in ("OrderAccepted", "OrderRejected")]
    return found


def draw_page(monkeypatch, env: dict[str, str]) -> AppTest:
    """The Health page of the exchange of ``env``, drawn once by Streamlit's test runner."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)

    def page():
        from config.settings import load_config
        from frontend.dashboard.health import render

        render(load_config())

    app = AppTest.from_function(page, default_timeout=30)
    app.run()
    return app


def badges(app: AppTest) -> list[str]:
    return [m.value for m in app.markdown if "-badge[" in m.value]


def test_a_live_exchange_is_up_counts_its_orders_and_rejects_and_a_killed_tes_is_down(tmp_path, monkeypatch):
    env = exchange_env(tmp_path)
    config = load_config(environ=env)
    with Role(["-s", "OBS"], env) as obs, Role(["-s", "recorder"], env) as recorder, Role(["-s", "TES"], env) as tes:
        tes.wait_for("shard A ready", 10)
        with ExchangeClient(endpoint(env, "TES__CLIENT_ENDPOINT"), "alice", "alice-demo-key") as client:
            client.logon()
            client.enter_order("ACME", Side.BUY, OrderType.LIMIT, TimeInForce.GTC, 10_000, 10)
            client.enter_order("ACME", Side.SELL, OrderType.LIMIT, TimeInForce.GTC, 10_000, 5)
            client.enter_order("BOLT", Side.BUY, OrderType.LIMIT, TimeInForce.GTC, 25_001, 10)  # off BOLT's tick 5
            client.enter_order("ACME", Side.SELL, OrderType.LIMIT, TimeInForce.FOK, 10_000, 1_000)  # 5 to fill
            assert sorted(type(m).__name__ for m in answers(client, 4)) == ["OrderAccepted"] * 2 + ["OrderRejected"] * 2

            found = until(config, lambda h: h.processes[1].counters.get("acks") == 4
                          and h.shards[0].recorder_committed == 3
                          and [(c.name, c.acked) for c in h.shards[0].consumers] == [("recorder", 3)])

        assert states(found) == {"OBS A": "up", "TES TES": "up", "recorder recorder": "up"}
        obs_process, tes_process, recorder_process = found.processes
        assert [obs_process.pid, tes_process.pid, recorder_process.pid] == [
            obs.process.pid, tes.process.pid, recorder.process.pid]
        assert {name: tes_process.counters[name] for name in ("orders", "entered", "accepted", "rejected", "fills")} \
            == {"orders": 4, "entered": 3, "accepted": 2, "rejected": 2, "fills": 2}
        assert {name: obs_process.counters[name] for name in ("executed", "trades")} == {"executed": 3, "trades": 1}
        assert [(r.reason, r.code, r.count) for r in found.rejects] == [
            ("FOK_NOT_FILLABLE", 2002, 1), ("PRICE_OFF_TICK", 3002, 1)], "the book's refusal relayed, the TES's own"
        window = found.ack_latency.window
        assert window.count == 4 and 0 < window.p50 <= window.p90 <= window.p99 <= window.p999 <= window.max
        [shard] = found.shards
        assert (shard.journal_last, shard.recorder_committed, shard.behind, shard.seconds_behind) == (3, 3, 0, 0.0)
        assert shard.market_data == MarketDataFigures(0, 0, 0), "nobody subscribed"
        assert [(p.server, p.port, p.refused) for p in found.ports] == [
            ("OBS A", "market data", 0), ("OBS A", "snapshot", 0), ("TES", "client", 0)]
        assert next(p for p in found.ports if p.port == "client").connections >= 1, "the test's own client"

        page = draw_page(monkeypatch, env)
        assert not page.exception and not page.error
        assert badges(page) == [":green-badge[OBS A: up]", ":green-badge[TES: up]", ":green-badge[recorder: up]"]
        rejects = page.dataframe[-1].value
        assert rejects[["reason", "count"]].values.tolist() == [["FOK_NOT_FILLABLE", 1], ["PRICE_OFF_TICK", 1]]

        tes.kill()
        down = until(config, lambda h: not h.processes[1].up, timeout=5.0)
        assert down.processes[1].state == "not running"
        assert obs.stop() == 0 and recorder.stop() == 0
    assert states(gather(config)) == {"OBS A": "stopped", "TES TES": "not running", "recorder recorder": "stopped"}


# ================================================================ the page, on crafted files


def test_the_page_draws_badges_tables_and_rejects_without_an_exception(tmp_path, monkeypatch):
    healthy(tmp_path)
    write(tmp_path, recorder=b"{half a docu")

    page = draw_page(monkeypatch, paths_env(tmp_path))

    assert not page.exception and not page.error
    assert badges(page) == [":green-badge[OBS A: up]", ":green-badge[TES: up]",
                            ":orange-badge[recorder: unreadable]"]
    assert [w.value for w in page.warning] == [
        f"recorder: {tmp_path / 'recorder-status.json'} is not a status document: JSON is malformed: "
        "object keys must be strings (byte 1)"]
    tables = {tuple(frame.value.columns): frame.value for frame in page.dataframe}
    latency = tables[("over", "samples", "p50", "p90", "p99", "p99.9", "max")]
    assert latency.values.tolist() == [["last minute", 4, "300 µs", "450 µs", "500 µs", "500 µs", "500 µs"],
                                       ["since start", 9, "280 µs", "450 µs", "900 µs", "900 µs", "900 µs"]]
    rates = tables[("process", "figure", "since start", "per second")]
    assert rates.values.tolist() == [["OBS A", "executed", 120, 2.0], ["TES", "orders", 9, 4.0],
                                     ["TES", "acks", 9, 4.0]]
    rejects = tables[("reason", "code", "count", "per second")]
    assert rejects.values.tolist() == [["FOK_NOT_FILLABLE", 2002, 1, 0.0], ["PRICE_OFF_TICK", 3002, 3, 1.0]]
    market_data = tables[("shard", "subscribers", "frames dropped", "subscriptions refused")]
    assert market_data.values.tolist() == [["A", 3, 5, 1]]
    connections = tables[("server", "port", "connections", "refused")]
    assert connections.values.tolist() == [["OBS A", "market data", 4, 0], ["OBS A", "snapshot", 1, 2],
                                           ["TES", "client", 2, 7]]


def test_the_page_of_an_exchange_never_started_says_so(tmp_path, monkeypatch):
    page = draw_page(monkeypatch, paths_env(tmp_path))

    assert not page.exception and not page.error
    assert badges(page) == [":gray-badge[OBS A: never started]", ":gray-badge[TES: never started]",
                            ":gray-badge[recorder: never started]"]
    assert [i.value for i in page.info] == [
        "No process has published figures.",
        "No ack latency: the TES has answered no order, or publishes no figures.",
        "No rejects since the TES started."]


def test_a_failure_while_drawing_is_a_message_not_a_traceback(tmp_path, monkeypatch):
    def fails(config):
        raise RuntimeError("something nobody foresaw")

    monkeypatch.setattr(health_page, "gather", fails)

    page = draw_page(monkeypatch, paths_env(tmp_path))

    assert not page.exception
    assert [e.value for e in page.error] == [
        "The exchange's health cannot be shown: something nobody foresaw. The page tries again in 2 s."]
