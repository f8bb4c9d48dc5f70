"""The REST gateway (``python main.py -s API``) end to end: a real OBS, recorder and TES
(`live_exchange`), the gateway as its own process, signed HTTP requests from here."""

import base64
import errno
import json
import os
import socket
import time
from pathlib import Path

import httpx
import pytest
from test_journal_failures import fill, small_tmpfs

from config.settings import load_config
from engine.types import OrderType, Side, TimeInForce
from gateways.api.auth import RateLimiter, load_secrets, signature
from servers.processes import Role, exchange_env
from servers.protocol import EnterOrder

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


class Signed:
    """A client of the gateway signing as ``key_id`` with the secret in the gateway's secrets dir."""

    def __init__(self, base: str, key_id: str, secret: str) -> None:
        self.http = httpx.Client(base_url=base, timeout=10.0)
        self.key_id = key_id
        self.secret = secret

    def headers(self, method: str, path: str, body: bytes, timestamp: int | None = None, secret: str | None = None):
        stamp = str(timestamp if timestamp is not None else time.time_ns() // 1_000_000)
        return {"X-API-KEY": self.key_id, "X-API-TIMESTAMP": stamp, "Content-Type": "application/json",
                "X-API-SIGNATURE": signature(secret or self.secret, stamp, method, path, body)}

    def request(self, method: str, path: str, payload=None, **sign) -> httpx.Response:
        body = b"" if payload is None else json.dumps(payload).encode()
        time.sleep(0.002)  # a fresh millisecond: the same request twice must not look like a replay
        return self.http.request(method, path, content=body, headers=self.headers(method, path, body, **sign))


@pytest.fixture(scope="module")
def gateway(live_exchange):
    env = dict(live_exchange.env)
    env["EXCHANGE__API__RATE_LIMIT_PER_S"] = "1000"
    env["EXCHANGE__API__RATE_LIMIT_BURST"] = "1000"
    role = Role(["-s", "API"], env)
    base = f"http://127.0.0.1:{env['EXCHANGE__API__PORT']}"
    secrets = Path(env["EXCHANGE__API__SECRETS_DIR"])
    yield role, base, secrets
    assert role.stop() == 0, role.output()
    assert "API gateway stopped" in role.output()


def client(gateway, trader: str) -> Signed:
    _, base, secrets = gateway
    return Signed(base, f"{trader}-rest", (secrets / f"{trader}-rest.secret").read_text().strip())


def test_secrets_are_made_private_and_kept_out_of_the_log(gateway):
    role, _, secrets = gateway
    path = secrets / "alice-rest.secret"
    assert oct(os.stat(path).st_mode & 0o777) == "0o600"
    assert path.read_text().strip() not in role.output()
    assert "alice-demo-key" not in role.output()


def test_a_secret_that_cannot_be_written_leaves_no_file_and_is_made_at_the_next_start(tmp_path):
    """The secrets' directory a real, full 1 MiB tmpfs: nothing is left of the secret that did not
    fit (an empty file would be refused at every start after), and it is made once there is space."""
    api = load_config(environ=exchange_env(tmp_path)).api
    directory = Path(api.secrets_dir)
    with small_tmpfs(directory):
        filler = fill(directory)
        with pytest.raises(OSError, match=os.strerror(errno.ENOSPC)):
            load_secrets(api)
        assert [path.name for path in directory.iterdir()] == ["filler"], "no empty secret, nor its temporary file"
        filler.unlink()
        made = load_secrets(api)
        assert sorted(made) == sorted(key.key_id for key in api.keys)
        for key_id, secret in made.items():
            path = directory / f"{key_id}.secret"
            assert len(secret) == 64 and oct(os.stat(path).st_mode & 0o777) == "0o600"
        assert sorted(p.name for p in directory.iterdir()) == sorted(f"{key.key_id}.secret" for key in api.keys)
        assert load_secrets(api) == made, "kept, not made again"


def test_openapi_and_docs_are_served(gateway):
    _, base, _ = gateway
    spec = httpx.get(f"{base}/openapi.json").json()
    assert {"/v1/orders", "/v1/orders/{order_id}", "/v1/fills", "/v1/positions", "/v1/book/{symbol}",
            "/v1/instruments", "/v1/trades/{symbol}", "/v1/bars/{symbol}"} <= set(spec["paths"])
    assert "swagger" in httpx.get(f"{base}/docs").text.lower()
    signed = [{"key": [], "timestamp": [], "signature": []}]
    assert {scheme["name"] for scheme in spec["components"]["securitySchemes"].values()} == \
        {"X-API-KEY", "X-API-TIMESTAMP", "X-API-SIGNATURE"}
    security = {(path, method): operation.get("security") for path, operations in spec["paths"].items()
                for method, operation in operations.items()}
    for private in (("/v1/orders", "post"), ("/v1/orders", "get"), ("/v1/orders", "delete"),
                    ("/v1/orders/{order_id}", "put"), ("/v1/orders/{order_id}", "delete"), ("/v1/fills", "get"),
                    ("/v1/positions", "get")):
        assert security[private] == signed, private
    for public in ("/v1/instruments", "/v1/book/{symbol}", "/v1/trades/{symbol}", "/v1/bars/{symbol}",
                   "/v1/health", "/v1/reject-codes"):
        assert security[(public, "get")] is None, public


def test_market_data_is_public_and_the_book_comes_from_the_market_data(gateway, live_exchange):
    _, base, _ = gateway
    instruments = httpx.get(f"{base}/v1/instruments")
    assert instruments.status_code == 200, instruments.text
    acme = {i["symbol"]: i for i in instruments.json()}["ACME"]
    assert (acme["tick_size"], acme["min_quantity"], acme["price_scale"]) == (1, 1, 100)
    assert httpx.get(f"{base}/v1/trades/ACME").status_code == 200
    assert httpx.get(f"{base}/v1/bars/ACME").status_code == 200
    assert httpx.get(f"{base}/v1/book/NOPE").json()["code"] == 3001

    first = httpx.get(f"{base}/v1/book/BOLT?levels=3")
    assert first.status_code == 200, first.text
    before = first.json()["sequence"]
    bob = live_exchange.client("bob")
    bob.enter_order("BOLT", Side.SELL, OrderType.LIMIT, TimeInForce.GTC, 26_015, 30)
    deadline = time.monotonic() + 5
    while [26_015, 30, 1] not in (book := httpx.get(f"{base}/v1/book/BOLT?levels=3").json())["asks"]:
        assert time.monotonic() < deadline, book
        time.sleep(0.02)
    assert book["symbol"] == "BOLT" and book["sequence"] > before
    bob.mass_cancel("BOLT")


def test_orders_fills_and_positions_agree_with_the_tes(gateway, live_exchange):
    alice, bob = client(gateway, "alice"), client(gateway, "bob")
    instruments = alice.request("GET", "/v1/instruments")
    assert instruments.status_code == 200 and {"ACME", "BOLT"} <= {i["symbol"] for i in instruments.json()}

    placed = alice.request("POST", "/v1/orders", {"symbol": "ACME", "side": "sell", "price": 10_050,
                                                  "quantity": 7})
    assert placed.status_code == 201, placed.text
    resting = placed.json()
    assert resting["status"] == "accepted" and resting["leaves"] == 7
    listed = alice.request("GET", "/v1/orders")
    assert listed.status_code == 200, listed.text
    open_orders = listed.json()
    assert resting["order_id"] in [o["order_id"] for o in open_orders]
    deadline = time.monotonic() + 5  # the book is the market data's, which may trail the acknowledgment
    while [10_050, 7, 1] not in (book := alice.request("GET", "/v1/book/ACME?levels=5").json())["asks"]:
        assert time.monotonic() < deadline, book
        time.sleep(0.02)

    amended = alice.request("PUT", f"/v1/orders/{resting['order_id']}", {"price": 10_040, "quantity": 5})
    assert amended.status_code == 200, amended.text
    assert amended.json()["price"] == 10_040

    taken = bob.request("POST", "/v1/orders", {"symbol": "ACME", "side": "buy", "type": "limit",
                                               "time_in_force": "ioc", "price": 10_040, "quantity": 3})
    assert taken.status_code == 201, taken.text
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        alice_fills = [f for f in alice.request("GET", "/v1/fills?symbol=ACME").json()
                       if f["order_id"] == resting["order_id"]]
        bob_fills = [f for f in bob.request("GET", "/v1/fills").json() if f["order_id"] == taken.json()["order_id"]]
        if alice_fills and bob_fills:
            break
        time.sleep(0.05)
    assert [(f["side"], f["price"], f["quantity"], f["aggressor"]) for f in alice_fills] == [("sell", 10_040, 3, False)]
    assert [(f["side"], f["price"], f["quantity"], f["aggressor"]) for f in bob_fills] == [("buy", 10_040, 3, True)]
    assert alice_fills[0]["trade_id"] == bob_fills[0]["trade_id"]

    # The TES's own answer, from a session of the trader's own: it takes the gateway's session
    # over, and the gateway takes it back (logs on again) at its next request.
    for trader, api in (("alice", alice), ("bob", bob)):
        rest = api.request("GET", "/v1/positions")
        assert rest.status_code == 200, rest.text
        tes = live_exchange.client(trader).positions()
        assert rest.json()["cash"] == tes.cash
        assert {p["symbol"]: p["quantity"] for p in rest.json()["positions"]} == \
            {p.symbol: p.quantity for p in tes.positions}
    taken_back = alice.request("GET", "/v1/positions")
    assert taken_back.status_code == 200, taken_back.text
    acme = {p["symbol"]: p for p in taken_back.json()["positions"]}["ACME"]
    assert acme["quantity"] <= -3

    canceled = alice.request("DELETE", f"/v1/orders/{resting['order_id']}")
    assert canceled.status_code == 200, canceled.text
    assert canceled.json()["canceled_quantity"] == 2
    again = alice.request("DELETE", f"/v1/orders/{resting['order_id']}")
    assert again.status_code == 404 and again.headers["content-type"] == "application/problem+json"
    assert again.json()["code"] == 2001

    for price in (24_000, 24_005):
        placed = alice.request("POST", "/v1/orders", {"symbol": "BOLT", "side": "buy", "price": price,
                                                      "quantity": 10})
        assert placed.status_code == 201, placed.text
    mass = alice.request("DELETE", "/v1/orders?symbol=BOLT")
    assert mass.status_code == 200 and mass.json() == {"symbol": "BOLT", "canceled": 2}
    assert not [o for o in alice.request("GET", "/v1/orders").json() if o["symbol"] == "BOLT"]

    live_exchange.recorded()
    trades = alice.request("GET", "/v1/trades/ACME").json()
    assert any(t["trade_id"] == alice_fills[0]["trade_id"] and t["size"] == 3 for t in trades)
    bars = alice.request("GET", "/v1/bars/ACME?interval_s=60").json()
    assert bars and sum(b["volume"] for b in bars) >= 3


def test_rejects_are_problem_details_with_the_exchange_codes(gateway):
    alice = client(gateway, "alice")
    off_tick = alice.request("POST", "/v1/orders", {"symbol": "NOPE", "side": "buy", "price": 1, "quantity": 1})
    assert off_tick.status_code == 422
    problem = off_tick.json()
    assert problem["code"] == 3001 and problem["reason"] == "UNKNOWN_SYMBOL"
    assert problem["type"] == "/v1/reject-codes#3001" and problem["instance"] == "/v1/orders"
    assert alice.request("GET", "/v1/book/NOPE").json()["code"] == 3001
    too_big = alice.request("POST", "/v1/orders", {"symbol": "ACME", "side": "buy", "price": 10_000,
                                                   "quantity": 10_000_000})
    assert too_big.status_code == 422 and too_big.json()["code"] // 1000 in (3, 4)
    codes = httpx.get(f"{gateway[1]}/v1/reject-codes").json()
    assert {"code": 4004, "reason": "MESSAGE_RATE_LIMIT", "http_status": 429} in codes


def test_bad_input_is_refused_and_everyone_else_is_served(gateway):
    _, base, _ = gateway
    alice = client(gateway, "alice")
    path = "/v1/orders"

    malformed = b'{"symbol": "ACME", "side": '
    response = alice.http.post(path, content=malformed, headers=alice.headers("POST", path, malformed))
    assert response.status_code == 400 and response.json()["code"] == 5004

    bad = alice.request("GET", "/v1/positions", secret="0" * 64)
    assert bad.status_code == 401 and bad.json()["title"] == "Bad signature"
    assert "WWW-Authenticate" in bad.headers

    expired = alice.request("GET", "/v1/positions", timestamp=time.time_ns() // 1_000_000 - 60_000)
    assert expired.status_code == 401 and "expired" in expired.json()["detail"]
    future = alice.request("GET", "/v1/positions", timestamp=time.time_ns() // 1_000_000 + 60_000)
    assert future.status_code == 401

    headers = alice.headers("GET", "/v1/positions", b"")
    assert alice.http.get("/v1/positions", headers=headers).status_code == 200
    replayed = alice.http.get("/v1/positions", headers=headers)
    assert replayed.status_code == 401 and replayed.json()["title"] == "Replayed request"

    unsigned = httpx.get(f"{base}/v1/positions")
    assert unsigned.status_code == 401 and unsigned.json()["code"] == 5001
    unknown_key = Signed(base, "mallory", "x" * 64).request("GET", "/v1/positions")
    assert unknown_key.status_code == 401

    # the body signed is the body sent: a changed body fails the signature
    body = json.dumps({"symbol": "ACME", "side": "buy", "price": 1, "quantity": 1}).encode()
    tampered = body.replace(b'"quantity": 1', b'"quantity": 9')
    response = alice.http.post(path, content=tampered, headers=alice.headers("POST", path, body))
    assert response.status_code == 401

    invalid = alice.request("POST", path, {"symbol": "ACME", "side": "sideways", "price": 1, "quantity": 1})
    assert invalid.status_code == 422 and invalid.headers["content-type"] == "application/problem+json"
    huge = alice.request("POST", path, {"symbol": "ACME", "side": "buy", "price": 1, "quantity": 1,
                                        "pad": "x" * 100_000})
    assert huge.status_code == 413

    bob = client(gateway, "bob")
    assert bob.request("GET", "/v1/positions").status_code == 200


def test_rate_limit_answers_429_with_retry_after(live_exchange, tmp_path):
    env = dict(live_exchange.env)
    env.update({"EXCHANGE__API__PORT": str(_port()), "EXCHANGE__API__SECRETS_DIR": str(tmp_path / "api"),
                "EXCHANGE__API__RATE_LIMIT_PER_S": "1", "EXCHANGE__API__RATE_LIMIT_BURST": "3"})
    role = Role(["-s", "API"], env)
    try:
        base = f"http://127.0.0.1:{env['EXCHANGE__API__PORT']}"
        demo = Signed(base, "demo1-rest", (tmp_path / "api" / "demo1-rest.secret").read_text().strip())
        answers = [demo.request("GET", "/v1/reject-codes") for _ in range(2)]
        assert all(a.status_code == 200 for a in answers)
        assert [demo.request("GET", "/v1/positions").status_code for _ in range(3)] == [200, 200, 200]
        limited = _first_429(lambda n: demo.request("GET", "/v1/positions"))
        assert int(limited.headers["Retry-After"]) >= 1 and limited.json()["code"] == 4004
        other = Signed(base, "demo2-rest", (tmp_path / "api" / "demo2-rest.secret").read_text().strip())
        assert other.request("GET", "/v1/positions").status_code == 200

        # public market data: no key, the same bucket per client address (127.0.0.2 is another one)
        assert [httpx.get(f"{base}/v1/instruments").status_code for _ in range(3)] == [200, 200, 200]
        limited = _first_429(lambda n: httpx.get(f"{base}/v1/book/ACME"))
        assert limited.json()["code"] == 4004 and int(limited.headers["Retry-After"]) >= 1
        with httpx.Client(transport=httpx.HTTPTransport(local_address="127.0.0.2")) as elsewhere:
            assert elsewhere.get(f"{base}/v1/instruments").status_code == 200
        # a forwarded-for header does not make another address: ten "different" ones share a bucket
        _first_429(lambda n: httpx.get(f"{base}/v1/instruments", headers={"X-Forwarded-For": f"10.9.8.{n}"}))
        assert other.request("GET", "/v1/positions").status_code == 200
    finally:
        assert role.stop() == 0, role.output()


def _first_429(send, attempts: int = 10) -> httpx.Response:
    """The first 429 of ``send(n)`` for n = 0, 1...: a bucket of 3 refilled at 1 a second runs dry
    within 10 quick requests (they would need 10 s to be all served)."""
    statuses = []
    for n in range(attempts):
        answer = send(n)
        if answer.status_code == 429:
            return answer
        statuses.append(answer.status_code)
    raise AssertionError(f"no 429 in {attempts} requests: {statuses}")


def test_the_per_address_table_is_bounded_and_forgets_the_least_recently_seen():
    now = [0.0]
    limiter = RateLimiter(1.0, 2, clock=lambda: now[0], max_keys=3)
    assert [limiter.take("a") for _ in range(3)] == [0.0, 0.0, 1.0]
    assert limiter.take("b") == limiter.take("c") == 0.0
    limiter.take("a")  # seen again: "b" is now the least recently seen
    assert limiter.take("d") == 0.0 and len(limiter) == 3
    assert limiter.take("a") == 1.0  # kept, still empty
    assert limiter.take("b") == 0.0  # forgotten: a full bucket again
    now[0] += 1.0
    assert limiter.take("a") == 0.0


def test_connections_beyond_the_limit_get_503_and_the_others_are_served(live_exchange, tmp_path):
    env = dict(live_exchange.env)
    env.update({"EXCHANGE__API__PORT": str(_port()), "EXCHANGE__API__SECRETS_DIR": str(tmp_path / "api"),
                "EXCHANGE__API__MAX_CONNECTIONS": "3"})
    role = Role(["-s", "API"], env)
    base = f"http://127.0.0.1:{env['EXCHANGE__API__PORT']}"
    try:
        sockets = [_ws((role, base)) for _ in range(3)]
        assert httpx.get(f"{base}/v1/health").status_code == 503
        sockets.pop().close()
        deadline = time.monotonic() + 5
        while httpx.get(f"{base}/v1/health").status_code != 200:
            assert time.monotonic() < deadline, "a closed WebSocket did not free its place"
            time.sleep(0.05)
        for ws in sockets:
            ws.send(json.dumps({"op": "subscribe", "channel": "quotes", "symbol": "ACME"}))
            assert _until(ws, lambda e: e["type"] == "subscribed")["symbol"] == "ACME"
            ws.close()
    finally:
        assert role.stop() == 0, role.output()


def test_a_port_in_use_is_one_line_and_exit_1(live_exchange, tmp_path, gateway):
    import subprocess
    import sys

    env = dict(live_exchange.env)
    env["EXCHANGE__API__SECRETS_DIR"] = str(tmp_path / "api")
    done = subprocess.run([sys.executable, "main.py", "-s", "API"], env=env, capture_output=True, text=True,
                          timeout=30, cwd=Path(__file__).resolve().parent.parent)
    assert done.returncode == 1
    assert "API cannot start" in done.stderr + done.stdout and "Traceback" not in done.stderr


def _port() -> int:
    from servers.processes import free_port

    return free_port()


# ------------------------------------------------------------------ WebSocket streams


def _ws(gateway):
    from websockets.sync.client import connect

    return connect(gateway[1].replace("http", "ws") + "/v1/ws", open_timeout=5)


def _until(ws, matches, timeout: float = 5.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        event = json.loads(ws.recv(timeout=max(0.01, deadline - time.monotonic())))
        if matches(event):
            return event


def test_public_depth_stream_snapshot_then_sequenced_updates(gateway):
    alice = client(gateway, "alice")
    with _ws(gateway) as ws:
        ws.send(json.dumps({"op": "subscribe", "channel": "depth", "symbol": "NOPE"}))
        assert _until(ws, lambda e: e["type"] == "error")["code"] == 3001
        ws.send("{not json")
        assert _until(ws, lambda e: e["type"] == "error")["code"] == 5004
        ws.send(json.dumps({"op": "subscribe", "channel": "depth", "symbol": "ACME"}))
        ws.send(json.dumps({"op": "subscribe", "channel": "quotes", "symbol": "ACME"}))
        snapshot = _until(ws, lambda e: e["type"] == "snapshot")
        assert snapshot["symbol"] == "ACME" and snapshot["sequence"] >= 0
        placed = alice.request("POST", "/v1/orders", {"symbol": "ACME", "side": "buy", "price": 9_321, "quantity": 4})
        assert placed.status_code == 201
        update = _until(ws, lambda e: e.get("channel") == "depth" and e.get("price") == 9_321)
        assert update["sequence"] > snapshot["sequence"] and update["quantity"] == 4 and update["side"] == "buy"
        alice.request("DELETE", f"/v1/orders/{placed.json()['order_id']}")
        gone = _until(ws, lambda e: e.get("channel") == "depth" and e.get("price") == 9_321)
        assert gone["quantity"] == 0 and gone["sequence"] > update["sequence"]


def test_private_stream_after_an_authenticated_subscribe(gateway):
    alice = client(gateway, "alice")
    with _ws(gateway) as ws:
        ws.send(json.dumps({"op": "subscribe", "channel": "orders"}))
        assert _until(ws, lambda e: e["type"] == "error")["code"] == 5001
        stamp = str(time.time_ns() // 1_000_000)
        ws.send(json.dumps({"op": "auth", "key": "alice-rest", "timestamp": stamp,
                            "signature": signature("wrong" * 8, stamp, "GET", "/v1/ws", b"")}))
        assert _until(ws, lambda e: e["type"] == "error")["code"] == 5002
        stamp = str(time.time_ns() // 1_000_000)
        ws.send(json.dumps({"op": "auth", "key": "alice-rest", "timestamp": stamp,
                            "signature": signature(alice.secret, stamp, "GET", "/v1/ws", b"")}))
        assert _until(ws, lambda e: e["type"] == "authenticated")["trader_id"] == "alice"
        ws.send(json.dumps({"op": "subscribe", "channel": "orders"}))
        _until(ws, lambda e: e["type"] == "subscribed")
        placed = alice.request("POST", "/v1/orders", {"symbol": "ACME", "side": "buy", "price": 9_322, "quantity": 2})
        report = _until(ws, lambda e: e.get("channel") == "orders" and e["type"] == "order_accepted")
        assert report["order_id"] == placed.json()["order_id"] and report["side"] == "buy"
        alice.request("DELETE", f"/v1/orders/{placed.json()['order_id']}")
        assert _until(ws, lambda e: e.get("type") == "order_canceled")["order_id"] == placed.json()["order_id"]


class RawWebSocket:
    """A WebSocket client on a plain socket with a receive buffer of ``rcvbuf`` bytes: nothing reads
    it behind the test's back, so while the test does not read, the gateway's sends back up."""

    def __init__(self, base: str, rcvbuf: int) -> None:
        host, port = base.removeprefix("http://").split(":")
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)  # before connect: the window
        self.sock.settimeout(10)
        self.sock.connect((host, int(port)))
        key = base64.b64encode(os.urandom(16))
        self.sock.sendall(b"GET /v1/ws HTTP/1.1\r\nHost: %s:%s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                          b"Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n"
                          % (host.encode(), port.encode(), key))
        self.buffer = b""
        while b"\r\n\r\n" not in self.buffer:
            self.buffer += self._recv()
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 101"), head

    def _recv(self) -> bytes:
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("the gateway closed the connection")
        return data

    def _take(self, count: int) -> bytes:
        while len(self.buffer) < count:
            self.buffer += self._recv()
        taken, self.buffer = self.buffer[:count], self.buffer[count:]
        return taken

    def send(self, text: str) -> None:
        payload, mask = text.encode(), os.urandom(4)
        assert len(payload) < 126
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(bytes([0x81, 0x80 | len(payload)]) + mask + masked)

    def frame(self) -> tuple[int, bytes]:
        """The next frame's opcode and payload (the server's frames are not masked)."""
        first, second = self._take(2)
        length = second & 0x7F
        if length == 126:
            length = int.from_bytes(self._take(2), "big")
        elif length == 127:
            length = int.from_bytes(self._take(8), "big")
        return first & 0x0F, self._take(length)

    def close(self) -> None:
        self.sock.close()


def test_a_subscriber_that_stops_reading_is_closed_1008_and_the_others_keep_receiving(live_exchange, tmp_path):
    """A real slow consumer: a depth subscriber with a 4 KB receive buffer stops reading while a burst
    of orders changes the book. The gateway's sends to it back up (its receive window, the kernel's
    send buffer, the transport's 64 KiB, then more than ``stream_queue`` events wait), so
    it is closed with 1008, which it finds after everything queued when it reads again; another
    subscriber gets every update of the burst in sequence."""
    from websockets.sync.client import connect

    # 10,000 depth events of about 150 bytes, 1.5 MB: twice what the buffers hold (the slow client's
    # 4 KB, the gateway's kernel send buffer, 2 x 256 KiB, the transport's 64 KiB)
    burst, queue = 10_000, 20
    env = dict(live_exchange.env)
    env.update({"EXCHANGE__API__PORT": str(_port()), "EXCHANGE__API__SECRETS_DIR": str(tmp_path / "api"),
                "EXCHANGE__API__STREAM_QUEUE": str(queue)})
    role = Role(["-s", "API"], env)
    base = f"http://127.0.0.1:{env['EXCHANGE__API__PORT']}"
    subscribe = json.dumps({"op": "subscribe", "channel": "depth", "symbol": "ACME"})
    load = live_exchange.client("load")
    slow = RawWebSocket(base, rcvbuf=4096)
    try:
        slow.send(subscribe)
        assert json.loads(slow.frame()[1])["type"] == "subscribed"
        assert json.loads(slow.frame()[1])["type"] == "snapshot"
        with connect(base.replace("http", "ws") + "/v1/ws", open_timeout=5, max_queue=None) as fast:
            fast.send(subscribe)
            _until(fast, lambda e: e["type"] == "snapshot")
            first = load.reserve_client_order_ids(burst)
            # inside the price band around the last trade of the tests before (10,040)
            load.send_batch([EnterOrder(first + i, "ACME", Side.BUY, OrderType.LIMIT, TimeInForce.GTC, 9_703, 1)
                             for i in range(burst)])
            updates = []
            while len(updates) < burst:
                event = _until(fast, lambda e: e.get("channel") == "depth" and e.get("price") == 9_703, timeout=30)
                updates.append(event)
            assert [e["quantity"] for e in updates] == list(range(1, burst + 1)), updates[:3]
            assert all(b["sequence"] > a["sequence"] for a, b in zip(updates, updates[1:], strict=False))
            role.wait_for("slow consumer", 10)

        # reading again: what was queued before the close, then the close frame with its reason
        slow.sock.settimeout(30)
        events = 0
        while True:
            opcode, payload = slow.frame()
            if opcode == 0x8:
                break
            assert opcode == 0x1 and json.loads(payload)["channel"] == "depth"
            events += 1
        code, reason = int.from_bytes(payload[:2], "big"), payload[2:].decode()
        assert code == 1008 and reason.startswith("slow consumer"), (code, reason)
        assert 0 < events < burst
    finally:
        slow.close()
        load.mass_cancel("ACME")
        assert role.stop() == 0, role.output()


def test_a_long_queue_is_sent_on_and_closed_only_while_the_connection_takes_nothing():
    import asyncio

    from gateways.api.streams import Subscriber

    async def flood():
        subscriber = Subscriber(None, asyncio.get_running_loop(), limit=3)
        subscriber._push([{"n": n} for n in range(5)])  # a burst, the sender not stuck: sent on
        assert subscriber.closing is None
        subscriber.sending = True  # the sender waits for the connection to drain
        subscriber._push([{"n": 5}])
        subscriber._push([{"n": 6}])
        return subscriber

    subscriber = asyncio.run(flood())
    assert subscriber.closing.startswith("slow consumer")
    assert [subscriber.queue.get_nowait() for _ in range(subscriber.queue.qsize())] == [None]  # dropped, then the close


def test_up_starts_the_gateway_when_enabled_and_stops_it_in_order(tmp_path):
    from servers.processes import exchange_env

    env = exchange_env(tmp_path, EXCHANGE__API__ENABLED="true", EXCHANGE__UP__BOTS="[]", EXCHANGE__UP__FRONTENDS="[]")
    with Role(["up"], env) as up:
        up.wait_for("exchange up", 60)
        base = f"http://127.0.0.1:{env['EXCHANGE__API__PORT']}"
        assert f"{base}/docs" in up.wait_for("REST/WebSocket gateway", 1)
        bob = Signed(base, "bob-rest", (tmp_path / "api" / "bob-rest.secret").read_text().strip())
        assert bob.request("GET", "/v1/positions").status_code == 200
        assert up.stop() == 0, up.output()
    lines = up.output()
    assert lines.index("API gateway stopped") < lines.index("tes: stopped") and "Traceback" not in lines


def test_fuzzing_the_gateway_from_its_own_openapi_never_fails_it(gateway):
    """schemathesis draws requests from /openapi.json (signed here, so they get past the auth): no
    answer is a server error, every error is problem details, and the gateway serves on."""
    from urllib.parse import urlencode

    import schemathesis
    from hypothesis import HealthCheck, given, settings

    demo = client(gateway, "demo2")
    schema = schemathesis.openapi.from_dict(httpx.get(f"{gateway[1]}/openapi.json").json())
    seen: dict[int, int] = {}
    failures: list[str] = []

    for result in schema.get_all_operations():
        operation = result.ok()

        @settings(max_examples=15, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(operation.as_strategy())
        def one(case):
            path = case.formatted_path + (f"?{urlencode(case.query, doseq=True)}" if case.query else "")
            body = b"" if type(case.body).__name__ == "NotSet" else json.dumps(case.body).encode()
            time.sleep(0.001)
            response = demo.http.request(case.method, path, content=body,
                                         headers=demo.headers(case.method, path, body))
            seen[response.status_code] = seen.get(response.status_code, 0) + 1
            if response.status_code >= 500 and response.status_code != 504:
                failures.append(f"{case.method} {path} {body[:200]!r}: {response.status_code} {response.text[:300]}")
            if response.status_code >= 400:
                assert response.headers["content-type"] == "application/problem+json", (path, response.text)

        one()
    assert not failures, failures
    assert any(200 <= status < 300 for status in seen), seen
    assert demo.request("DELETE", "/v1/orders").status_code == 200
    assert client(gateway, "bob").request("GET", "/v1/positions").status_code == 200


def test_a_tag_is_echoed_and_tells_identical_orders_in_one_millisecond_apart(gateway):
    bob = client(gateway, "bob")
    stamp = time.time_ns() // 1_000_000
    answers = [bob.request("POST", "/v1/orders", {"symbol": "ACME", "side": "buy", "price": 9_050, "quantity": 1,
                                                  "tag": tag}, timestamp=stamp) for tag in ("one", "two", "two")]
    assert [a.status_code for a in answers] == [201, 201, 401], [a.text for a in answers]
    assert [a.json()["tag"] for a in answers[:2]] == ["one", "two"]
    assert answers[2].json()["title"] == "Replayed request"
    assert bob.request("POST", "/v1/orders", {"symbol": "ACME", "side": "buy", "price": 9_050, "quantity": 1,
                                              "tag": "no spaces"}).status_code == 422
    assert bob.request("DELETE", "/v1/orders?symbol=ACME").json()["canceled"] == 2


def test_concurrent_requests_of_one_trader_keep_their_client_order_ids_in_order(gateway):
    from concurrent.futures import ThreadPoolExecutor

    demo = [client(gateway, "demo1") for _ in range(8)]

    def place(n: int) -> httpx.Response:
        return demo[n % 8].request("POST", "/v1/orders", {"symbol": "ACME", "side": "buy", "price": 9_100 + n,
                                                          "quantity": 1})

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(place, range(40)))
    assert [a.status_code for a in answers] == [201] * 40, [a.text for a in answers if a.status_code != 201][:3]
    assert len({a.json()["order_id"] for a in answers}) == 40
    assert demo[0].request("DELETE", "/v1/orders?symbol=ACME").json()["canceled"] == 40


def test_beyond_loopback_only_with_tls():
    from config.settings import ConfigError, load_config

    with pytest.raises(ConfigError, match="api.address: 0.0.0.0 is reachable beyond this host"):
        load_config(environ={"EXCHANGE__API__ADDRESS": "0.0.0.0"})
    config = load_config(environ={"EXCHANGE__API__ADDRESS": "0.0.0.0", "EXCHANGE__API__TLS_CERT": "c.pem",
                                  "EXCHANGE__API__TLS_KEY": "k.pem"})
    assert config.api.address == "0.0.0.0"
    with pytest.raises(ConfigError, match="api.keys"):
        load_config(environ={"EXCHANGE__API__KEYS__1__KEY_ID": "alice-rest"})
