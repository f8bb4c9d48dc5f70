"""The advanced order kinds through the REST gateway, end to end (a real OBS, recorder and TES; the
gateway as its own process; signed HTTP requests and the WebSocket from here): a stop limit held,
triggered and filled (its reports on the private stream), an iceberg's slice in the public book,
post-only, self-trade prevention (cancel, decrement), GTD by ISO 8601 time or nanoseconds and its
expiry, the order views and the OpenAPI document, and every bad input as an RFC 9457 problem with the
exchange's reject code."""

import datetime
import json
import time
from pathlib import Path

import httpx
import pytest
from test_api_gateway import Signed, _until

from gateways.api.auth import signature
from servers.processes import Role

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(scope="module")
def gateway(live_exchange):
    env = dict(live_exchange.env, EXCHANGE__API__RATE_LIMIT_PER_S="1000", EXCHANGE__API__RATE_LIMIT_BURST="1000")
    role = Role(["-s", "API"], env)
    base = f"http://127.0.0.1:{env['EXCHANGE__API__PORT']}"
    yield role, base, Path(env["EXCHANGE__API__SECRETS_DIR"])
    assert role.stop() == 0, role.output()
    assert "Traceback" not in role.output(), role.output()


def client(gateway, trader: str) -> Signed:
    _, base, secrets = gateway
    return Signed(base, f"{trader}-rest", (secrets / f"{trader}-rest.secret").read_text().strip())


def private_stream(gateway, api: Signed):
    """A WebSocket of ``api``'s trader, authenticated and subscribed to its order reports."""
    from websockets.sync.client import connect

    ws = connect(gateway[1].replace("http", "ws") + "/v1/ws", open_timeout=5)
    stamp = str(time.time_ns() // 1_000_000)
    ws.send(json.dumps({"op": "auth", "key": api.key_id, "timestamp": stamp,
                        "signature": signature(api.secret, stamp, "GET", "/v1/ws", b"")}))
    _until(ws, lambda e: e["type"] == "authenticated")
    ws.send(json.dumps({"op": "subscribe", "channel": "orders"}))
    _until(ws, lambda e: e["type"] == "subscribed")
    return ws


def place(api: Signed, **order) -> httpx.Response:
    return api.request("POST", "/v1/orders", {"symbol": "ACME", **order})


def problem(response: httpx.Response, code: int, status: int = 422) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["code"] == code and body["type"] == f"/v1/reject-codes#{code}", body
    return body


def test_a_stop_limit_is_held_then_triggered_and_filled_on_the_private_stream(gateway):
    alice, bob, demo1 = client(gateway, "alice"), client(gateway, "bob"), client(gateway, "demo1")
    with private_stream(gateway, alice) as ws:
        placed = place(alice, side="buy", type="stop_limit", price=10_100, stop_price=10_000, quantity=3)
        assert placed.status_code == 201, placed.text
        order = placed.json()
        assert (order["type"], order["stop_price"], order["price"], order["time_in_force"], order["stp"],
                order["post_only"], order["display_quantity"], order["expire_at"]) == \
            ("stop_limit", 10_000, 10_100, "gtc", "none", False, 0, 0)
        listed = {o["order_id"]: o for o in alice.request("GET", "/v1/orders").json()}[order["order_id"]]
        assert (listed["type"], listed["held"], listed["stop_price"]) == ("stop_limit", True, 10_000)
        assert place(bob, side="sell", price=10_000, quantity=4).status_code == 201
        assert place(demo1, side="buy", price=10_000, quantity=1, time_in_force="ioc").status_code == 201
        triggered = _until(ws, lambda e: e["type"] == "stop_triggered")
        assert (triggered["order_id"], triggered["last_price"], triggered["status"]) == \
            (order["order_id"], 10_000, "accepted")
        filled = _until(ws, lambda e: e["type"] == "order_filled" and e["order_id"] == order["order_id"])
        assert (filled["price"], filled["quantity"], filled["leaves"], filled["status"]) == (10_000, 3, 0, "filled")
    stop = place(demo1, side="sell", type="stop", stop_price=9_500, quantity=1)
    assert stop.status_code == 201, stop.text
    assert (stop.json()["type"], stop.json()["price"], stop.json()["time_in_force"]) == ("stop", 0, "gtc")
    assert demo1.request("DELETE", f"/v1/orders/{stop.json()['order_id']}").status_code == 200


def test_an_iceberg_shows_its_slice_in_the_public_book(gateway):
    bob = client(gateway, "bob")
    placed = place(bob, side="sell", price=10_200, quantity=10, display_quantity=2)
    assert placed.status_code == 201, placed.text
    assert (placed.json()["display_quantity"], placed.json()["leaves"]) == (2, 10)
    deadline = time.monotonic() + 5  # the book is the market data's, which may trail the acknowledgment
    while [10_200, 2, 1] not in (book := httpx.get(f"{gateway[1]}/v1/book/ACME").json())["asks"]:
        assert time.monotonic() < deadline, book
        time.sleep(0.02)
    assert (book["phase"], book["indicative_price"], book["indicative_volume"]) == ("continuous", 0, 0)
    listed = {o["order_id"]: o for o in bob.request("GET", "/v1/orders").json()}[placed.json()["order_id"]]
    assert (listed["quantity"], listed["display_quantity"], listed["held"]) == (10, 2, False)


def test_post_only_rests_and_is_refused_2003_when_it_would_take(gateway):
    demo1 = client(gateway, "demo1")
    problem(place(demo1, side="buy", price=10_200, quantity=1, post_only=True), 2003)  # bob's iceberg is there
    resting = place(demo1, side="buy", price=9_900, quantity=1, post_only=True)
    assert resting.status_code == 201 and resting.json()["post_only"] is True, resting.text
    assert demo1.request("DELETE", "/v1/orders?symbol=ACME").status_code == 200


def test_self_trade_prevention_cancels_the_taker_or_decrements_both(gateway):
    alice = client(gateway, "alice")
    with private_stream(gateway, alice) as ws:
        maker = place(alice, side="sell", price=10_150, quantity=5)
        assert maker.status_code == 201, maker.text
        taker = place(alice, side="buy", price=10_150, quantity=1, stp="cancel-taker")
        assert taker.status_code == 201 and taker.json()["stp"] == "cancel-taker", taker.text
        canceled = _until(ws, lambda e: e["type"] == "order_canceled" and e["order_id"] == taker.json()["order_id"])
        assert (canceled["reason"], canceled["quantity"]) == ("self_trade", 1)
        decrementing = place(alice, side="buy", price=10_150, quantity=2, stp="decrement")
        assert decrementing.status_code == 201 and decrementing.json()["stp"] == "decrement", decrementing.text
        shrunk = {}
        while len(shrunk) < 2:
            event = _until(ws, lambda e: e["type"] == "order_decremented")
            shrunk[event["order_id"]] = (event["quantity"], event["leaves"], event["status"])
        assert shrunk == {decrementing.json()["order_id"]: (2, 0, "canceled"),
                          maker.json()["order_id"]: (2, 3, "accepted")}
    assert alice.request("DELETE", "/v1/orders?symbol=ACME").json()["canceled"] == 1


def test_gtd_by_iso_time_or_nanoseconds_is_accepted_with_its_expiry_and_expires(gateway):
    demo2 = client(gateway, "demo2")
    later = datetime.datetime.now(datetime.UTC).replace(microsecond=250_000) + datetime.timedelta(hours=1)
    by_time = place(demo2, side="buy", price=9_900, quantity=1, time_in_force="gtd", expire_at=later.isoformat())
    assert by_time.status_code == 201, by_time.text
    assert by_time.json()["expire_at"] == int(later.timestamp()) * 1_000_000_000 + 250_000_000
    assert by_time.json()["time_in_force"] == "gtd"
    soon = time.time_ns() + 5_000_000_000  # time to place and list it on a slow machine
    by_ns = place(demo2, side="buy", price=9_901, quantity=1, time_in_force="gtd", expire_at=soon)
    assert by_ns.status_code == 201 and by_ns.json()["expire_at"] == soon, by_ns.text
    listed = {o["order_id"]: o for o in demo2.request("GET", "/v1/orders").json()}
    assert listed[by_ns.json()["order_id"]]["expire_at"] == soon
    deadline = time.monotonic() + 15
    while by_ns.json()["order_id"] in {o["order_id"] for o in demo2.request("GET", "/v1/orders").json()}:
        assert time.monotonic() < deadline, "the GTD order did not expire"
        time.sleep(0.1)
    assert by_time.json()["order_id"] in {o["order_id"] for o in demo2.request("GET", "/v1/orders").json()}
    assert demo2.request("DELETE", "/v1/orders?symbol=ACME").json()["canceled"] == 1


def test_bad_input_of_the_new_fields_is_a_problem_with_the_reject_code(gateway):
    bob = client(gateway, "bob")
    problem(place(bob, side="buy", price=9_900, quantity=1, time_in_force="gtd"), 1015)
    problem(place(bob, side="buy", price=9_900, quantity=1, expire_at=time.time_ns() + 10**10), 5004)
    problem(place(bob, side="buy", price=9_900, quantity=1, time_in_force="gtd",
                  expire_at="2030-01-01T10:00:00"), 5004)  # no offset: not a time
    problem(place(bob, side="buy", price=9_900, quantity=1, time_in_force="gtd", expire_at=time.time_ns() - 10**9),
            1015)
    problem(place(bob, side="buy", price=9_900, quantity=1, time_in_force="gtd", expire_at="9999-01-01T00:00:00Z"),
            1009)
    problem(place(bob, side="buy", type="stop", quantity=1), 1012)  # the book's rule: a stop price is positive
    problem(place(bob, side="buy", price=9_900, stop_price=9_800, quantity=1), 1012)
    problem(place(bob, side="buy", type="stop", price=9_900, stop_price=10_500, quantity=1), 1006)
    problem(place(bob, side="buy", price=9_900, quantity=5, display_quantity=6), 1013)
    problem(place(bob, side="buy", price=9_900, quantity=500, display_quantity=1), 3008)
    problem(place(bob, side="buy", price=9_900, quantity=1, stp="sideways"), 5004)
    problem(place(bob, side="buy", type="market", quantity=1, time_in_force="ioc", post_only=True), 1014)
    resting = place(bob, side="buy", type="stop_limit", price=10_600, stop_price=10_500, quantity=1)
    assert resting.status_code == 201, resting.text
    problem(bob.request("PUT", f"/v1/orders/{resting.json()['order_id']}", {"price": 10_650, "quantity": 1,
                                                                            "stop_price": 10_550}), 5004)
    problem(bob.request("PUT", f"/v1/orders/{resting.json()['order_id']}", {"price": 10_650, "quantity": 1}), 2005)
    assert bob.request("DELETE", f"/v1/orders/{resting.json()['order_id']}").status_code == 200
    assert bob.request("GET", "/v1/positions").status_code == 200


def test_the_openapi_document_shows_the_new_fields(gateway):
    spec = httpx.get(f"{gateway[1]}/openapi.json").json()
    schemas = spec["components"]["schemas"]
    assert {"stop_price", "display_quantity", "post_only", "stp", "expire_at"} <= set(schemas["NewOrder"]["properties"])
    assert set(schemas["NewOrder"]["properties"]["type"]["enum"]) == {"limit", "market", "stop", "stop_limit"}
    assert "gtd" in schemas["NewOrder"]["properties"]["time_in_force"]["enum"]
    assert {"stop_price", "display_quantity", "post_only", "stp", "expire_at"} <= set(schemas["Order"]["properties"])
    assert {"held", "type", "expire_at"} <= set(schemas["OpenOrderModel"]["properties"])
    assert {"phase", "indicative_price", "indicative_volume"} <= set(schemas["BookModel"]["properties"])
