"""`free_port`: under pytest-xdist two workers never hand out the same port."""

import json
import os
import subprocess
import sys

import pytest

from config.ports import below_ephemeral
from servers.processes import REPO

HAND_OUT = "import json; from config.ports import free_port; print(json.dumps([free_port() for _ in range(300)]))"


def handed_out(**workers: str) -> list[int]:
    """The ports a fresh process hands out, with the pytest-xdist variables ``workers`` (none: no worker)."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("PYTEST_XDIST")} | workers
    done = subprocess.run([sys.executable, "-c", HAND_OUT], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_each_worker_hands_out_distinct_ports_of_its_own_stripe_only():
    for workers in (2, 3):
        handed = {f"gw{n}": handed_out(PYTEST_XDIST_WORKER=f"gw{n}", PYTEST_XDIST_WORKER_COUNT=str(workers))
                  for n in range(workers)}
        for n, ports in enumerate(handed.values()):
            assert len(set(ports)) == len(ports), "a port handed out twice by one process"
            assert {port // 2 % workers for port in ports} == {n}
        everyone = [port for ports in handed.values() for port in ports]
        assert len(set(everyone)) == len(everyone), "two workers handed out the same port"


def test_without_workers_any_free_port_is_handed_out():
    ports = handed_out()
    assert len(set(ports)) == 300 and {port // 2 % 2 for port in ports} == {0, 1}


def test_ports_are_handed_out_below_the_ephemeral_range():
    """No connection the machine makes meanwhile can take a port handed out before its server binds it."""
    ports = below_ephemeral()
    if ports is None:
        pytest.skip("the kernel's ephemeral range is unknown here or leaves too few ports below it")
    assert all(port in ports for port in handed_out())
