"""`servers.processes.Role` leaves no server behind: a role that never became ready is killed
before its error is raised, and whatever a starter left running is killed as it exits."""

import os
import subprocess
import sys

import pytest

from servers import processes
from servers.processes import REPO, Role, exchange_env
from tests.procs import ended, eventually


def test_a_role_that_is_not_ready_in_time_is_killed_before_the_error(tmp_path, monkeypatch):
    started = []

    class Recorded(subprocess.Popen):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            started.append(self)

    monkeypatch.setattr(processes.subprocess, "Popen", Recorded)
    with pytest.raises(AssertionError, match="no 'READY' within"):
        Role(["-s", "OBS"], exchange_env(tmp_path), ready_timeout=0.01)
    (process,) = started
    assert process.poll() is not None
    assert process not in processes._running


def test_a_server_left_running_by_its_starter_is_killed_as_the_starter_exits(tmp_path):
    starter = (
        "import sys; from pathlib import Path\n"
        "from servers.processes import Role, exchange_env\n"
        "role = Role(['-s', 'OBS'], exchange_env(Path(sys.argv[1])))\n"
        "print(role.process.pid, flush=True)\n"
    )
    done = subprocess.run([sys.executable, "-c", starter, str(tmp_path)], cwd=REPO, capture_output=True, text=True,
                          timeout=60, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stderr
    pid = int(done.stdout.split()[-1])
    eventually(lambda: ended(pid), f"the OBS {pid} outlived the process that started it", within=10.0)


def test_a_stopped_role_is_no_longer_kept_to_kill(tmp_path):
    role = Role(["-s", "OBS"], exchange_env(tmp_path))
    assert role.process in processes._running
    assert role.stop() == 0
    assert role.process not in processes._running
