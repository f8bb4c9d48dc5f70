"""Trading phases end to end through both gateways against a real exchange: the operator's
``python main.py phase ACME call|halt|continuous`` reaches a FIX subscriber as SecurityStatus and the
indicative uncross as entry Q, and a WebSocket subscriber as the ``phase`` stream; orders entered
through FIX and REST rest crossed in the call and trade at the uncross; in a halt both gateways pass
the book's refusal (2004) on."""

import json
import subprocess
import sys
from decimal import Decimal

import pytest
from fix_peer import fix_time
from test_api_gateway import _until
from test_fix_gateway import FIX_OVERRIDES, expect, logged_on, report
from test_fix_phases import entries

from servers.processes import REPO, Role

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(scope="module")
def gateways(live_exchange):
    env = dict(live_exchange.env, **FIX_OVERRIDES)
    fix, api = Role(["-s", "FIX"], env), Role(["-s", "API"], env)
    fix.port = int(env["EXCHANGE__FIX__PORT"])
    api.base = f"http://127.0.0.1:{env['EXCHANGE__API__PORT']}"
    api.secrets = env["EXCHANGE__API__SECRETS_DIR"]
    yield fix, api
    for role in (fix, api):
        assert role.stop() == 0, role.output()
        assert "Traceback" not in role.output(), role.output()


def operator_phase(live_exchange, phase: str) -> dict:
    done = subprocess.run([sys.executable, "main.py", "phase", "ACME", phase], cwd=REPO, env=live_exchange.env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)["phases"]["ACME"]


def test_a_call_and_its_uncross_and_a_halt_through_both_gateways(live_exchange, gateways):
    from test_api_gateway import Signed
    from websockets.sync.client import connect

    fix, api = gateways
    bob = Signed(api.base, "bob-rest", open(f"{api.secrets}/bob-rest.secret").read().strip())
    demo1 = logged_on(fix, "demo1")
    demo1.send("V", [(262, "live"), (263, "1"), (264, 0), (265, 1), (267, 3), (269, "0"), (269, "2"), (269, "Q"),
                     (146, 1), (55, "ACME")])
    demo1.wait_for("W")
    expect(demo1.wait_for("f"), t326="17")
    with connect(api.base.replace("http", "ws") + "/v1/ws", open_timeout=5) as ws:
        ws.send(json.dumps({"op": "subscribe", "channel": "phase", "symbol": "ACME"}))
        assert _until(ws, lambda e: e["type"] == "phase")["phase"] == "continuous"

        operator_phase(live_exchange, "call")
        expect(demo1.wait_for("f"), t326="21", t58="call auction (by the operator)")
        assert (_until(ws, lambda e: e["type"] == "phase_update"))["phase"] == "call"

        demo1.order("call-1", "ACME", "1", 5, "101", tif="1")
        report(demo1, "call-1", "0")
        sold = bob.request("POST", "/v1/orders", {"symbol": "ACME", "side": "sell", "price": 10_000, "quantity": 3})
        assert sold.status_code == 201 and sold.json()["status"] == "accepted", sold.text  # rests crossed
        indicative = _until(ws, lambda e: e["type"] == "indicative" and e["volume"] == 3)
        quoted = demo1.wait_for(lambda message: message.msg_type == "X" and any(
            e.get(269) == "Q" and e.get(271) == "3" for e in entries(message)))
        price = next(e[270] for e in entries(quoted) if e.get(269) == "Q" and e.get(271) == "3")
        assert Decimal(price) * 100 == indicative["price"]  # ACME: 100 ticks a unit

        operator_phase(live_exchange, "continuous")
        expect(demo1.wait_for("f"), t326="17")
        summary = _until(ws, lambda e: e["type"] == "auction_summary")
        assert (summary["price"], summary["volume"]) == (indicative["price"], 3)
        fill = report(demo1, "call-1", "F")
        expect(fill, t32="3", t151="2", t31=price)

        operator_phase(live_exchange, "halt")
        expect(demo1.wait_for("f"), t326="2", t58="halted (by the operator)")
        assert _until(ws, lambda e: e["type"] == "phase_update")["phase"] == "halted"
        refused = bob.request("POST", "/v1/orders", {"symbol": "ACME", "side": "sell", "price": 10_100,
                                                     "quantity": 1})
        assert refused.status_code == 422 and refused.json()["code"] == 2004, refused.text
        demo1.order("halt-1", "ACME", "1", 1, "99", tif="1")
        assert report(demo1, "halt-1", "8").get(58).endswith("(2004)")
        operator_phase(live_exchange, "continuous")
        expect(demo1.wait_for("f"), t326="17")
    demo1.send("q", [(11, "live-mc"), (530, "7"), (60, fix_time())])
    demo1.wait_for("r")
    demo1.close()
