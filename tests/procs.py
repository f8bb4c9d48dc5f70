"""Real exchange processes for tests: see `servers.processes`; and CURVE credentials for raw sockets."""

import time

import msgspec
import zmq

from servers.processes import REPO, Role, endpoint, exchange_env, free_port
from servers.security import Keys, connect_curve, shard_key_name

__all__ = ["REPO", "Role", "as_role", "bare", "endpoint", "eventually", "exchange_env", "free_port", "rebound"]

STARTED = time.time_ns()
"""No exchange time a test sees can be earlier than this."""
STATUS_FIELDS = ("status", "filled", "leaves", "average_price")
"""What every order report carries about its order (checked in test_orders)."""


def bare(message):
    """``message`` without what servers add to every message they make, checked and then set to
    the defaults, so that a test can compare it with a message it builds: the exchange time
    (a real time of this test run), an order report's number (positive) and the order's status
    fields (tested on their own in test_orders). Messages without them pass unchanged."""
    stamp = getattr(message, "time", None)
    if stamp is None:
        return message
    assert STARTED <= stamp <= time.time_ns(), message
    changes = {"time": 0}
    if hasattr(message, "report"):
        assert message.report > 0, message
        changes["report"] = 0
        defaults = {field: default for field, default in zip(
            type(message).__struct_fields__[-len(type(message).__struct_defaults__):],
            type(message).__struct_defaults__, strict=True)}
        changes |= {field: defaults[field] for field in STATUS_FIELDS if field in defaults}
    return msgspec.structs.replace(message, **changes)


def as_role(socket: zmq.Socket, env: dict[str, str], role: str = "tes", shard: str = "A") -> zmq.Socket:
    """``socket`` (not yet connected) given the key pair ``role`` ("tes", "operator") of the
    exchange of ``env``, as a CURVE client of shard ``shard``'s command port (as it is with CURVE off)."""
    if not env["EXCHANGE__SECURITY__KEYS_DIR"]:
        return socket
    keys = Keys(env["EXCHANGE__SECURITY__KEYS_DIR"])
    connect_curve(socket, keys.own(role), keys.public(shard_key_name(shard)))
    return socket


def rebound(start, within_s: float = 5.0):
    """``start()`` again until its port is free: libzmq releases a closed socket's listening port
    on its own I/O thread, a moment after ``close`` returns, so an in-process restart on the same
    port can find it still taken (a restarted OBS is another process, which this never meets)."""
    deadline = time.monotonic() + within_s
    while True:
        try:
            return start()
        except zmq.ZMQError as exc:
            if exc.errno != zmq.EADDRINUSE or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def eventually(check, what: str, within: float = 30.0) -> None:
    """Wait until ``check()`` holds, failing with ``what`` after ``within`` seconds (a server's
    background writers, its snapshots and discards, are slow on a loaded machine)."""
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def ended(pid: int) -> bool:
    """Whether process ``pid`` has ended: gone from /proc, or a zombie its parent has yet to wait
    for (it may be reaped between the opening of its stat file and the reading of it)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (FileNotFoundError, ProcessLookupError):
        return True
