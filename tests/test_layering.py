"""Layers: `engine` imports neither `native` nor the packages above it, `config` nothing of the servers or
clients, and the reference path of the command line works on a machine where the extension was never built.

Each check runs in a fresh interpreter, so that what this test process imported does not count.
The machine without the extension is made by a ``sitecustomize`` on PYTHONPATH that refuses every
import of `native` (the compiled book stays where it is); `without_native` checks that it does.
"""

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from engine import workload
from servers.processes import REPO

IMPORTS_OF = """
import importlib, json, pkgutil, sys
package = importlib.import_module({package!r})
for module in pkgutil.iter_modules(package.__path__):
    importlib.import_module(f"{{package.__name__}}.{{module.name}}")
print(json.dumps(sorted({{name.split(".")[0] for name in sys.modules}})))
"""
NO_NATIVE = '''"""Refuse the native extension, as on a machine where it was never built (tests/test_layering.py)."""
import sys


class RefuseNative:
    def find_spec(self, name, path=None, target=None):
        if name == "native" or name.startswith("native."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


sys.meta_path.insert(0, RefuseNative())
'''


def run(args: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)


def top_level_imports(package: str) -> set[str]:
    """The top-level packages in ``sys.modules`` after importing every module of ``package``."""
    done = run(["-c", IMPORTS_OF.format(package=package)])
    assert (done.returncode, done.stderr) == (0, ""), done.stderr
    return set(json.loads(done.stdout))


@pytest.fixture
def without_native(tmp_path) -> dict[str, str]:
    """The environment of a Python that cannot import `native`."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(NO_NATIVE)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")])))
    done = run(["-c", "import native.book"], env)
    assert done.returncode == 1 and "ModuleNotFoundError: No module named 'native'" in done.stderr, done.stderr
    return env


def test_engine_imports_neither_native_nor_the_layers_above_it():
    assert top_level_imports("engine") & {"native", "servers", "clients", "database", "config"} == set()


def test_config_imports_nothing_of_servers_clients_database_or_native():
    assert top_level_imports("config") & {"native", "servers", "clients", "database"} == set()


def test_workload_and_reference_replay_work_without_the_extension(without_native, tmp_path):
    stream, fills = tmp_path / "stream.npy", tmp_path / "fills.npy"
    made = run(["main.py", "workload", str(stream), "--messages", "3000", "--seed", "7"], without_native)
    assert (made.returncode, made.stderr) == (0, ""), made.stderr
    assert json.loads(made.stdout.splitlines()[-1])["messages"] == 3000
    # The reference book simulated the stream here; the native book gives the same bytes.
    assert np.load(stream, allow_pickle=False).tobytes() == workload.standard(3000, 7).tobytes()

    replayed = run(["main.py", "replay", str(stream), "--out", str(fills), "--engine", "reference"], without_native)
    assert (replayed.returncode, replayed.stderr) == (0, ""), replayed.stderr
    summary = json.loads(replayed.stdout.splitlines()[-1])
    assert (summary["messages"], summary["rejected"], summary["fills"]) == (3000, 0, len(np.load(fills)))


def test_deep_workload_works_without_the_extension(without_native, tmp_path):
    stream = tmp_path / "deep.npy"
    done = run(["main.py", "workload", str(stream), "--profile", "deep", "--messages", "300100"], without_native)
    # on a busy machine this takes longer than engine.progress.INTERVAL_S: progress lines, and nothing else
    errors = [line for line in done.stderr.splitlines()
              if not re.fullmatch(r"workload: [\d,]+ of 300,100 messages \(\d+%\)(, .*)?", line)]
    assert (done.returncode, errors) == (0, []), done.stderr
    assert json.loads(done.stdout.splitlines()[-1])["messages"] == 300_100


def test_native_replay_without_the_extension_is_one_error_line(without_native, tmp_path):
    stream = tmp_path / "stream.npy"
    np.save(stream, workload.standard(100, 1))
    done = run(["main.py", "replay", str(stream), "--out", str(tmp_path / "fills.npy")], without_native)
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr.splitlines() == [
        "error: the native engine is not available (No module named 'native'); build it or use --engine reference"
    ]


def test_help_works_without_the_extension(without_native):
    done = run(["main.py", "--help"], without_native)
    assert (done.returncode, done.stderr) == (0, "")
