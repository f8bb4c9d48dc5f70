"""Real exchange processes for tests: see `servers.processes`; and CURVE credentials for raw sockets."""

import time

import msgspec
import zmq

from servers.processes import REPO, Role, endpoint, exchange_env, free_port
from servers.security import Keys, connect_curve, shard_key_name

__all__ = ["REPO", "Role", "as_role", "endpoint", "exchange_env", "free_port", "untimed"]

STARTED = time.time_ns()
"""No exchange time a test sees can be earlier than this."""


def untimed(message):
    """``message`` with its exchange time checked and zeroed, so that a test can compare it with
    a message it builds: a server's message (a report, an `Executed`, market data) must carry a
    real time of this test run. Messages without a time pass unchanged."""
    stamp = getattr(message, "time", None)
    if stamp is None:
        return message
    assert STARTED <= stamp <= time.time_ns(), message
    return msgspec.structs.replace(message, time=0)


def as_role(socket: zmq.Socket, env: dict[str, str], role: str = "tes", shard: str = "A") -> zmq.Socket:
    """``socket`` (not yet connected) given the key pair ``role`` ("tes", "operator") of the
    exchange of ``env``, as a CURVE client of shard ``shard``'s command port (as it is with CURVE off)."""
    if not env["EXCHANGE__SECURITY__KEYS_DIR"]:
        return socket
    keys = Keys(env["EXCHANGE__SECURITY__KEYS_DIR"])
    connect_curve(socket, keys.own(role), keys.public(shard_key_name(shard)))
    return socket
