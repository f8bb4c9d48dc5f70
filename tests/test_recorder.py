"""The recorder end to end: real OBS, TES and recorder processes, counts reconciled across the stores.

Fills the OBS journaled = executions in the database = trades in the tick store, and every
trader's position in the database = the TES's; on SQLite and on PostgreSQL; with the recorder
killed (kill -9) and restarted in the middle of the flow: no duplicates, nothing missing.
"""

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from database_fixtures import postgres_url  # noqa: F401 (a fixture)
from procs import REPO, Role, endpoint, exchange_env
from sqlalchemy import func, select

from clients.client import ExchangeClient
from database.models import Execution, Position
from database.store import open_store
from database.ticks.queries import TickHistory
from engine.messages import OrderFilled
from servers.journal import read_records
from servers.shard import decode_entry

TRADERS = ("flow1", "flow2", "mm1")


def journaled_fills(env):
    """Every fill the shard journaled: (symbol, trade id) of each."""
    fills = []
    for record in read_records(tmp_journal(env)):
        entry = decode_entry(record.payload)
        fills += [(entry.command.symbol, e.sequence) for e in entry.events if type(e) is OrderFilled]
    return fills


def tmp_journal(env):
    return Path(env["EXCHANGE__SHARDS__0__JOURNAL_DIR"])


def caught_up(env, timeout=60.0):
    """Wait until the recorder's status says it holds everything the journal holds."""
    status = Path(env["EXCHANGE__RECORDER__STATUS_FILE"])
    last = len(list(read_records(tmp_journal(env))))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if status.exists():
            shard = json.loads(status.read_text()).get("A", {})
            if shard.get("committed") == last and shard.get("pending") == 0:
                return shard
        time.sleep(0.2)
    raise AssertionError(f"the recorder did not reach sequence {last}: {status.read_text() if status.exists() else ''}")


def trade(env, seconds=3.0):
    """Random flow from two bots and a market maker, as `up` runs them."""
    bots = [
        subprocess.Popen([sys.executable, "main.py", "-c", "marketmaker", "--trader", "mm1", "--symbol", "ACME",
                          "--duration", str(seconds)], cwd=REPO, env=env),
        subprocess.Popen([sys.executable, "main.py", "-c", "random", "--trader", "flow1", "--symbol", "ACME",
                          "--rate", "200", "--duration", str(seconds)], cwd=REPO, env=env),
        subprocess.Popen([sys.executable, "main.py", "-c", "random", "--trader", "flow2", "--symbol", "ACME",
                          "--rate", "200", "--duration", str(seconds)], cwd=REPO, env=env),
    ]
    return bots


def reconcile(env, tes_positions):
    fills = journaled_fills(env)
    assert fills, "the flow traded"
    engine = open_store(env["EXCHANGE__DATABASE__URL"])
    try:
        with engine.connect() as connection:
            executions = connection.execute(select(Execution.symbol, Execution.trade_id)).all()
            rows = connection.execute(select(Position.account, Position.symbol, Position.quantity, Position.cash,
                                             Position.realized)).all()
            distinct = connection.execute(select(func.count()).select_from(
                select(Execution.symbol, Execution.trade_id).distinct().subquery())).scalar()
    finally:
        engine.dispose()
    assert sorted(executions) == sorted(fills) and distinct == len(fills), "every fill once in the database"
    history = TickHistory(env["EXCHANGE__TICKS__ROOT"])
    try:
        trades = history.ticks("trade", "ACME").to_pylist()
    finally:
        history.close()
    assert sorted(row["trade_id"] for row in trades) == sorted(trade_id for _, trade_id in fills), \
        "every fill once in the tick store"
    recorded = {trader: (0, 0, 0) for trader in tes_positions}
    for row in rows:
        if row.symbol == "ACME" and row.account in recorded:
            recorded[row.account] = (row.quantity, row.cash, row.realized)
    assert recorded == tes_positions, "positions, cash and realized P&L as the TES has them"


def tes_positions(env):
    """Each trader's (position, cash, realized P&L) in ACME as the TES has them (they trade nothing else)."""
    out = {}
    for trader in TRADERS:
        with ExchangeClient(endpoint(env, "TES__CLIENT_ENDPOINT"), trader, f"{trader}-demo-key") as client:
            client.logon()
            positions = client.positions()
            held = next((p for p in positions.positions if p.symbol == "ACME"), None)
            out[trader] = (0, 0, 0) if held is None else (held.quantity, positions.cash, held.realized_pnl)
    return out


@pytest.fixture(params=["sqlite", "postgresql"])
def env(request, tmp_path):
    # Sessions last a minute without a message: these tests are about the recorder, and a fresh-clone
    # CI run's loaded moment once left three bots unheard for the default 5 s.
    overrides = {"EXCHANGE__TES__SESSION_TIMEOUT_MS": "60000"}
    if request.param == "postgresql":
        overrides["EXCHANGE__DATABASE__URL"] = request.getfixturevalue("postgres_url").render_as_string(
            hide_password=False)
    return exchange_env(tmp_path, **overrides)


def test_the_stores_reconcile_with_the_journal_and_the_tes(env):
    with Role(["-s", "OBS"], env) as obs, Role(["-s", "recorder"], env) as recorder, \
            Role(["-s", "TES"], env) as tes:
        tes.wait_for("shard A ready", 10)
        for bot in trade(env):
            assert bot.wait(60) == 0
        caught_up(env)
        reconcile(env, tes_positions(env))
        assert recorder.stop() == 0 and tes.stop() == 0 and obs.stop() == 0


def test_a_killed_recorder_resumes_and_writes_nothing_twice(tmp_path):
    env = exchange_env(tmp_path)
    with Role(["-s", "OBS"], env) as obs, Role(["-s", "TES"], env) as tes:
        tes.wait_for("shard A ready", 10)
        recorder = Role(["-s", "recorder"], env)
        bots = trade(env, seconds=4.0)
        time.sleep(1.5)
        recorder.kill()
        with Role(["-s", "recorder"], env) as again:
            for bot in bots:
                assert bot.wait(60) == 0
            caught_up(env)
            reconcile(env, tes_positions(env))
            assert again.stop() == 0
        assert tes.stop() == 0 and obs.stop() == 0
