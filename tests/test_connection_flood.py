"""Connections by the hundred that never finish ZeroMQ's handshake: what they cost the TES.

Each accepted connection holds one of the process's descriptors. Connections that send ZeroMQ's
greeting and then nothing held theirs for libzmq's default 30 s, so a flood of them kept every
descriptor taken (new clients could not connect, and the status file could not be opened) for as
long as it lasted. Each is now closed `servers.security.HANDSHAKE_MS` after it was accepted, and a
server raises its soft descriptor limit to the hard one at start (`servers.service.serve`).
"""

import logging
import os
import resource
import socket

import pytest
from procs import Role, eventually
from test_tes import BUY, SELL, Exchange

from servers import protocol as p
from servers import service
from servers.processes import exchange_env
from servers.security import HANDSHAKE_MS

GREETING = b"\xff" + bytes(8) + b"\x7f" + b"\x03\x00" + b"NULL".ljust(20, b"\x00") + bytes(32)
"""ZeroMQ 3.0's greeting (ZMTP 23/ZMTP): signature, version, the NULL mechanism, not a server."""
SPARE = 100
"""Descriptors the TES may open beyond those it holds once serving, in the flood test."""
FLOOD = 150
"""The flood's connections: more than `SPARE`, so the TES runs out of descriptors."""


def descriptors(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def soft_limit(pid: int) -> int:
    with open(f"/proc/{pid}/limits") as limits:
        for line in limits:
            if line.startswith("Max open files"):
                return int(line.split()[3])
    raise AssertionError("no 'Max open files' line")


def closed_by_peer(flood: list[socket.socket]) -> bool:
    """Whether the server has closed every connection (end of file, or a reset)."""
    for index, connection in enumerate(flood):
        if connection is None:
            continue
        try:
            if connection.recv(4096, socket.MSG_DONTWAIT) == b"":
                connection.close()
                flood[index] = None
        except BlockingIOError:
            return False
        except ConnectionError:
            connection.close()
            flood[index] = None
    return True


def test_a_server_raises_its_soft_descriptor_limit_to_the_hard_one(tmp_path):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard < 1024:
        pytest.skip(f"the hard descriptor limit here is {hard}: no lower soft limit to start a server with")
    resource.setrlimit(resource.RLIMIT_NOFILE, (512, hard))
    try:
        tes = Role(["-s", "TES"], exchange_env(tmp_path))
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    with tes:
        assert soft_limit(tes.process.pid) == hard
        assert tes.stop() == 0


def test_a_refused_raise_of_the_limit_is_said_and_the_server_goes_on(monkeypatch, caplog):
    def refuse(kind, limits):
        raise ValueError("not allowed")

    monkeypatch.setattr(resource, "getrlimit", lambda kind: (1024, 4096))
    monkeypatch.setattr(resource, "setrlimit", refuse)
    service.raise_open_files_limit(logging.getLogger("test"))
    assert "open descriptors stay limited to 1024 (raising the limit to 4096 was refused: not allowed)" in caplog.text


def test_connections_that_never_finish_the_handshake_are_closed_and_sessions_trade_on(tmp_path):
    exchange = Exchange(tmp_path, EXCHANGE__TES__SESSION_TIMEOUT_MS="60000")
    flood: list[socket.socket | None] = []
    try:
        alice = exchange.client("alice")
        pid = exchange.tes.process.pid
        limit = descriptors(pid) + SPARE
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (limit, limit))
        port = int(exchange.env["EXCHANGE__TES__CLIENT_ENDPOINT"].rsplit(":", 1)[1])
        for _ in range(FLOOD):
            try:
                connection = socket.create_connection(("127.0.0.1", port), timeout=1)
            except OSError:
                break  # the listener's backlog is full: the rest would not be accepted either
            connection.sendall(GREETING)
            connection.settimeout(None)  # blocking: a read with MSG_DONTWAIT then says BlockingIOError
            flood.append(connection)
        assert len(flood) > SPARE
        eventually(lambda: descriptors(pid) >= limit - 1, "the TES out of descriptors", 10)

        alice.accepted("ACME", BUY, 9_990, 1)   # a session logged on before trades on meanwhile
        # The accepted ones are closed HANDSHAKE_MS after their accept, then those the listener's
        # backlog held are accepted and closed as long after; libzmq's default would take 30 s.
        eventually(lambda: closed_by_peer(flood), "every silent connection closed", 2 * HANDSHAKE_MS / 1000 + 10)

        bob = exchange.client("bob")
        bob.order("ACME", SELL, 9_990, 1)
        assert [type(m) for m in bob.read(2)] == [p.OrderAccepted, p.OrderFilled], "a new client connects and trades"
        assert type(alice.one()) is p.OrderFilled
        assert exchange.tes.process.poll() is None and "Traceback" not in exchange.tes.output()
        assert exchange.tes.stop() == 0
    finally:
        for connection in flood:
            if connection is not None:
                connection.close()
        exchange.close()
