"""CURVE authentication of the book servers, the operator's credential, encrypted clients, the loopback rule.

The attack these tests repeat: a local process that is not the TES connects to an
OBS command port and says ``Hello(tes_id=1, seen=0)`` (to receive every kept
execution of that TES and take over its replies), cancels a trader's resting order
with ``BookCancel``, and rests a sell of 1,000,000,000 lots at 1 tick with a
made-up TES prefix. With keys configured (the default), nothing it sends arrives.
"""

import json
import os
import shutil
import socket as sockets
import stat
import subprocess
import sys
import time

import msgspec
import pytest
import zmq
from procs import REPO, Role, as_role, endpoint, exchange_env
from test_tes import BUY, SELL, Client, Exchange

from config.settings import ConfigError, is_loopback, load_config
from engine.types import RejectReason
from servers import protocol as p
from servers.security import KeyFileError, KeyPair, Keys, connect_curve, role_names

REQUESTS = p.Codec(p.ObsRequest)
REPLIES = p.Codec(p.ObsReply)
T1, T2 = 1 << 48, 2 << 48


# ---------------------------------------------------------------- key files


def test_keys_are_written_owner_only_and_read_back(tmp_path):
    keys = Keys(tmp_path / "keys")
    assert keys.generate(["tes", "operator"]) == ["tes", "operator"]
    assert keys.generate(["tes", "operator", "obs-A"]) == ["obs-A"], "existing pairs are kept"
    assert stat.S_IMODE((tmp_path / "keys").stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "keys" / "tes.key_secret").stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "keys" / "tes.key").stat().st_mode) == 0o644
    pair = keys.own("tes")
    assert keys.public("tes") == pair.public and len(pair.secret) == 40
    assert zmq.curve_public(pair.secret) == pair.public
    assert "secret-key" not in (tmp_path / "keys" / "tes.key").read_text()
    old = keys.own("operator")
    assert keys.generate(["operator"], replace=True) == ["operator"] and keys.own("operator") != old


def test_a_secret_key_others_can_read_is_refused(tmp_path):
    keys = Keys(tmp_path)
    keys.generate(["tes"])
    os.chmod(tmp_path / "tes.key_secret", 0o640)
    with pytest.raises(KeyFileError, match="readable by other users .*0640.*chmod 600"):
        keys.own("tes")


@pytest.mark.parametrize(("damage", "message"), [
    (lambda path: path.unlink(), "no key pair 'tes' in .*python main.py keys"),
    (lambda path: path.write_text("curve\n    public-key = \"short\"\n    secret-key = \"short\"\n"),
     "not 40 Z85 characters"),
    (lambda path: path.write_text("nothing here\n"), "cannot read key file"),
])
def test_a_missing_or_malformed_key_file_is_named(tmp_path, damage, message):
    keys = Keys(tmp_path)
    keys.generate(["tes"])
    damage(tmp_path / "tes.key_secret")
    with pytest.raises(KeyFileError, match=message):
        keys.own("tes")


def test_keys_command_writes_what_the_configuration_needs(tmp_path):
    env = dict(os.environ, EXCHANGE__SECURITY__KEYS_DIR=str(tmp_path / "k"))
    run = subprocess.run([sys.executable, "main.py", "keys"], cwd=REPO, env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout.splitlines()[-1]) == {
        "keys_dir": str(tmp_path / "k"), "written": ["tes", "obs-A", "operator", "recorder"]}
    again = subprocess.run([sys.executable, "main.py", "keys"], cwd=REPO, env=env, capture_output=True, text=True)
    assert '"written": []' in again.stdout
    off = subprocess.run([sys.executable, "main.py", "keys"], cwd=REPO, capture_output=True, text=True,
                         env=dict(os.environ, EXCHANGE__SECURITY__KEYS_DIR='""'))
    assert off.returncode == 2 and off.stderr.startswith("error: security.keys_dir is empty")


def test_a_server_without_its_key_refuses_to_start_with_one_line(tmp_path):
    env = exchange_env(tmp_path)
    (tmp_path / "keys" / "obs-A.key_secret").unlink()
    run = subprocess.run([sys.executable, "main.py", "-s", "OBS"], cwd=REPO, env=env, capture_output=True,
                         text=True, timeout=30)
    assert run.returncode == 2
    assert "OBS A cannot start: no key pair 'obs-A'" in run.stderr and "Traceback" not in run.stderr


# ---------------------------------------------------------------- the loopback rule


@pytest.mark.parametrize(("endpoint_", "loopback"), [
    ("tcp://127.0.0.1:7100", True), ("tcp://127.1.2.3:7100", True), ("tcp://localhost:7100", True),
    ("tcp://[::1]:7100", True), ("ipc:///tmp/exchange", True), ("inproc://x", True),
    ("tcp://*:7100", False), ("tcp://0.0.0.0:7100", False), ("tcp://10.0.0.5:7100", False),
    ("tcp://[::]:7100", False), ("tcp://exchange.example:7100", False),
])
def test_is_loopback(endpoint_, loopback):
    assert is_loopback(endpoint_) is loopback


def test_binding_beyond_loopback_needs_keys_and_curve_clients():
    wide = {"EXCHANGE__SHARDS__0__COMMAND_ENDPOINT": "tcp://0.0.0.0:7200"}
    with pytest.raises(ConfigError, match=r"shards\[0\].command_endpoint: tcp://0.0.0.0:7200 is reachable beyond "
                                          r"this host, which needs CURVE keys"):
        load_config(environ=wide | {"EXCHANGE__SECURITY__KEYS_DIR": '""'})
    assert load_config(environ=wide).shards[0].command_endpoint == "tcp://0.0.0.0:7200"
    clients = {"EXCHANGE__TES__CLIENT_ENDPOINT": "tcp://*:7100"}
    with pytest.raises(ConfigError, match='tes.client_endpoint: .* clients must use CURVE: set security.clients'):
        load_config(environ=clients)
    assert load_config(environ=clients | {"EXCHANGE__SECURITY__CLIENTS": "curve"}).security.clients == "curve"
    with pytest.raises(ConfigError, match='security.clients: "curve" needs keys'):
        load_config(environ={"EXCHANGE__SECURITY__CLIENTS": "curve", "EXCHANGE__SECURITY__KEYS_DIR": '""'})


# ---------------------------------------------------------------- a rogue process on the OBS command port


def dealer(context, address, curve=None):
    """A DEALER to ``address``; ``curve``: (own key pair, server public key)."""
    socket = context.socket(zmq.DEALER)
    socket.setsockopt(zmq.LINGER, 0)
    if curve is not None:
        connect_curve(socket, *curve)
    socket.connect(address)
    return socket


def replies(socket, timeout=0.5):
    """Every ObsReply the socket receives within ``timeout`` seconds."""
    received, deadline = [], time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        if socket.poll(int(left * 1000) + 1):
            received.extend(REPLIES.decode(socket.recv()))
    return received


@pytest.fixture(scope="module")
def market(tmp_path_factory):
    """A running exchange in which alice has a resting buy (ACME 9,990 x 10)."""
    exchange = Exchange(tmp_path_factory.mktemp("security"), EXCHANGE__TES__SESSION_TIMEOUT_MS="600000")
    alice = exchange.client("alice")
    resting = alice.accepted("ACME", BUY, 9_990, 10)
    yield exchange, alice, resting
    exchange.close()


def test_a_process_without_keys_gets_nothing_through(market):
    exchange, alice, resting = market
    keys = Keys(exchange.env["EXCHANGE__SECURITY__KEYS_DIR"])
    stranger = KeyPair(*zmq.curve_keypair())
    tries = {
        "no CURVE at all": None,
        "an unknown key": (stranger, keys.public("obs-A")),
        "the TES's public key as its own, without its secret": (
            KeyPair(keys.public("tes"), stranger.secret), keys.public("obs-A")),
    }
    for what, curve in tries.items():
        rogue = dealer(exchange.context, endpoint(exchange.env, "SHARDS__0__COMMAND_ENDPOINT"), curve)
        rogue.send(REQUESTS.encode([p.Hello(1, 0), p.BookCancel("ACME", resting.order_id),
                                    p.BookSubmit("ACME", (9 << 48) | 1, SELL, 0, 0, 1, 1_000_000_000)]))
        assert replies(rogue) == [], what
        rogue.close()
    assert alice.book() == ([(9_990, 10, 1)], []), "the order rests, nothing was added"
    assert [o.order_id for o in alice.open_orders()] == [resting.order_id]
    bob = exchange.client("bob")
    assert bob.rejected("ACME", SELL, 5_000, 1) is RejectReason.PRICE_OUTSIDE_BAND, "the band did not move"
    assert "refused a connection to obs with an unknown CURVE key" in exchange.obs.output()
    bob.socket.close()


def test_each_key_acts_only_as_its_role(market):
    exchange, alice, resting = market
    env, keys = exchange.env, Keys(exchange.env["EXCHANGE__SECURITY__KEYS_DIR"])
    operator = dealer(exchange.context, endpoint(env, "SHARDS__0__COMMAND_ENDPOINT"),
                      (keys.own("operator"), keys.public("obs-A")))
    operator.send(REQUESTS.encode([p.Hello(1, 0), p.BookCancel("ACME", resting.order_id),
                                   p.BookSubmit("ACME", T1 | 999, SELL, 0, 0, 9_990, 1)]))
    refused = replies(operator, 2.0)
    assert [(r.symbol, r.order_id, r.reason) for r in refused] == [
        ("", 0, RejectReason.NOT_AUTHORIZED),
        ("ACME", resting.order_id, RejectReason.NOT_AUTHORIZED),
        ("ACME", T1 | 999, RejectReason.NOT_AUTHORIZED),
    ]
    assert refused[0].text == RejectReason.NOT_AUTHORIZED.text
    tes = dealer(exchange.context, endpoint(env, "SHARDS__0__COMMAND_ENDPOINT"),
                 (keys.own("tes"), keys.public("obs-A")))
    tes.send(REQUESTS.encode([p.Hello(2), p.BookSubmit("ACME", T2 | 1, SELL, 0, 0, 9_990, 1),
                              p.BookExpireDay("ACME"), p.BookQuery(5, "ACME", 3)]))
    answers = replies(tes, 2.0)
    assert [(type(a), getattr(a, "reason", None)) for a in answers] == [
        (p.CommandRefused, RejectReason.NOT_AUTHORIZED), (p.CommandRefused, RejectReason.NOT_AUTHORIZED),
        (p.CommandRefused, RejectReason.NOT_AUTHORIZED), (p.BookView, None),
    ]
    assert answers[-1].bids == [(9_990, 10, 1)], "queries are answered; nothing was added or expired"
    assert alice.book() == ([(9_990, 10, 1)], [])
    alice.quiet(0.2)
    operator.close()
    tes.close()


def end_of_day(env):
    return subprocess.run([sys.executable, "main.py", "end-of-day"], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=60)


def test_end_of_day_needs_the_operators_key(market, tmp_path):
    exchange, _, _ = market
    other = tmp_path / "other-keys"
    shutil.copytree(exchange.env["EXCHANGE__SECURITY__KEYS_DIR"], other)
    (other / "operator.key_secret").unlink()
    missing = end_of_day(exchange.env | {"EXCHANGE__SECURITY__KEYS_DIR": str(other)})
    assert missing.returncode == 2
    assert missing.stderr.startswith("error: the operator's credential: no key pair 'operator'")
    Keys(other).generate(["operator"])
    wrong = end_of_day(exchange.env | {"EXCHANGE__SECURITY__KEYS_DIR": str(other)})
    assert wrong.returncode == 2, wrong.stdout
    assert "refused the connection: it does not know the operator's key" in wrong.stderr
    assert "Traceback" not in missing.stderr + wrong.stderr
    right = end_of_day(exchange.env)
    assert right.returncode == 0 and right.stdout.splitlines()[-1] == '{"expired": {"ACME": 0, "BOLT": 0}}'


# ---------------------------------------------------------------- CURVE for clients of the TES


def test_clients_of_a_curve_tes_need_its_public_key(tmp_path):
    from clients.client import ExchangeClient, LogonError

    exchange = Exchange(tmp_path, EXCHANGE__SECURITY__CLIENTS="curve")
    try:
        address = endpoint(exchange.env, "TES__CLIENT_ENDPOINT")
        server_key = Keys(exchange.env["EXCHANGE__SECURITY__KEYS_DIR"]).public("tes")
        with ExchangeClient(address, "alice", "alice-demo-key", server_key=server_key,
                            context=exchange.context) as alice:
            alice.logon()
            assert alice.positions().cash == 0
        plain = Client(exchange.context, address)
        plain.send(p.Logon("bob", "bob-demo-key"))
        assert plain.frame(1.0) == [], "a plain client gets no answer"
        impostor_key = zmq.curve_keypair()[0]
        with ExchangeClient(address, "bob", "bob-demo-key", server_key=impostor_key,
                            context=exchange.context) as bob, pytest.raises(LogonError, match="no answer"):
            bob.logon(timeout=1.0)
        trader = subprocess.run([sys.executable, "main.py", "-c", "trader", "--trader", "bob"], cwd=REPO,
                                env=exchange.env, input="positions\nquit\n", capture_output=True, text=True,
                                timeout=60)
        assert trader.returncode == 0 and "logged on to" in trader.stdout, trader.stderr
    finally:
        exchange.close()


def test_raw_bytes_on_a_curve_port_are_dropped_and_serving_goes_on(market):
    exchange, alice, _ = market
    for key in ("SHARDS__0__COMMAND_ENDPOINT", "SHARDS__0__SNAPSHOT_ENDPOINT", "SHARDS__0__MARKET_DATA_ENDPOINT",
                "TES__CLIENT_ENDPOINT"):
        host, port = endpoint(exchange.env, key).removeprefix("tcp://").rsplit(":", 1)
        for payload in (os.urandom(4096), b"\xff" + b"\x00" * 8 + b"\x7f\x03\x00NULL" + bytes(32), b""):
            with sockets.create_connection((host, int(port)), timeout=5) as raw:
                raw.sendall(payload)
    rogue = dealer(exchange.context, endpoint(exchange.env, "SHARDS__0__COMMAND_ENDPOINT"))
    rogue.send(msgspec.msgpack.encode([["Hello", 1]]))
    assert replies(rogue) == []
    rogue.close()
    assert exchange.obs.process.poll() is None and exchange.tes.process.poll() is None
    assert alice.book() == ([(9_990, 10, 1)], [])


def test_the_shipped_configuration_authenticates():
    config = load_config(environ={})
    assert config.security.keys_dir and config.security.clients == "plain"
    assert role_names(["A"]) == ["tes", "obs-A", "operator", "recorder"]


def test_raw_test_sockets_use_the_tes_key(tmp_path):
    """The tests' own raw TES socket (procs.as_role) passes the handshake, as the TES does."""
    env = exchange_env(tmp_path)
    with Role(["-s", "OBS"], env):
        context = zmq.Context()
        try:
            tes = as_role(context.socket(zmq.DEALER), env)
            tes.connect(endpoint(env, "SHARDS__0__COMMAND_ENDPOINT"))
            tes.send(REQUESTS.encode([p.Hello(1)]))
            assert replies(tes, 5.0) == [p.HelloReply(["ACME", "BOLT"], 0, 0)]
        finally:
            context.destroy(linger=0)
