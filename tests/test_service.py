"""The shape every server role shares (`servers.service`): exit statuses, log lines, signals, counted warnings."""

import logging
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from config.settings import ConfigError, load_config
from servers import service
from servers.processes import REPO, Role, exchange_env
from servers.service import Occurrences

log = logging.getLogger("test_service")


class Refused(Exception):
    pass


class Halted(Exception):
    pass


class Server:
    """A role that runs ``work`` (or waits for a signal) and records what `serve` did to it."""

    def __init__(self, work=None):
        self.work = work
        self.running = True
        self.closed = False
        self.sequence = 7

    def ready(self):
        return "READY test"

    def run(self):
        if self.work is not None:
            self.work()
        while self.running:
            pass

    def stop(self, *_signal):
        self.running = False

    def close(self):
        self.closed = True

    def stopped(self):
        return "test stopped cleanly"


@pytest.fixture(autouse=True)
def unsettled(monkeypatch):
    """`serve` settles the garbage collector for good: not in the test process."""
    monkeypatch.setattr(service.collector, "settle", lambda: None)


def run(server, caplog, **keywords):
    handlers = {signum: signal.getsignal(signum) for signum in service.SIGNALS}
    with caplog.at_level(logging.INFO, logger=log.name):
        status = service.serve(log, "test A", lambda: server, {Refused: 2}, (Halted,), **keywords)
    assert {signum: signal.getsignal(signum) for signum in service.SIGNALS} == handlers, "handlers restored"
    assert server.closed
    return status


def where(server):
    return f"at sequence {server.sequence}"


@pytest.mark.parametrize("signum", service.SIGNALS)
def test_signal_stops_the_server_cleanly_with_exit_0(signum, caplog, capsys):
    server = Server(lambda: os.kill(os.getpid(), signum))
    assert run(server, caplog, where=where) == 0
    assert capsys.readouterr().out == "READY test\n"
    assert [record.getMessage() for record in caplog.records] == ["test stopped cleanly"]


def test_refusal_exits_with_its_status_in_one_line(caplog, capsys):
    def start():
        raise Refused("no key")

    with caplog.at_level(logging.INFO, logger=log.name):
        assert service.serve(log, "test A", start, {OSError: 1, Refused: 2}) == 2
    assert capsys.readouterr().out == ""
    assert [(record.getMessage(), record.exc_info) for record in caplog.records] == [
        ("test A cannot start: no key", None)]


@pytest.mark.parametrize(("keywords", "line"), [
    ({}, "test A stopped: the disk failed"),
    ({"where": where}, "test A stopped at sequence 7: the disk failed"),
])
def test_failure_stops_with_exit_1_in_one_line_saying_where(keywords, line, caplog):
    def fail():
        raise Halted("the disk failed")

    assert run(Server(fail), caplog, **keywords) == 1
    assert [(record.getMessage(), record.exc_info) for record in caplog.records] == [(line, None)]


def test_defect_exits_1_with_its_traceback(caplog):
    def defect():
        raise KeyError("nobody foresaw this")

    assert run(Server(defect), caplog, where=where) == 1
    (record,) = caplog.records
    assert record.getMessage() == "test A failed at sequence 7" and record.exc_info[0] is KeyError


def test_occurrences_are_all_counted_and_logged_at_most_once_per_interval(caplog):
    trouble = Occurrences(log, "dropped %s (%d so far)", every=math.inf)
    with caplog.at_level(logging.WARNING, logger=log.name):
        for _ in range(1000):
            trouble("garbage")
        trouble("a batch", count=5)
    assert trouble.count == 1005
    assert [record.getMessage() for record in caplog.records] == ["dropped garbage (1 so far)"]


def test_occurrences_with_no_interval_log_each_time_with_the_count(caplog):
    trouble = Occurrences(log, "refused %s (%d so far)", every=0, level=logging.ERROR)
    with caplog.at_level(logging.WARNING, logger=log.name):
        trouble("Hello")
        trouble("BookSubmit", count=2)
    assert [(record.levelno, record.getMessage()) for record in caplog.records] == [
        (logging.ERROR, "refused Hello (1 so far)"), (logging.ERROR, "refused BookSubmit (3 so far)")]


def thread_cpus(pid: int) -> dict[int, str]:
    """Each thread of process ``pid`` and the CPUs it may run on, as Linux lists them."""
    found = {}
    for task in os.listdir(f"/proc/{pid}/task"):
        status = Path(f"/proc/{pid}/task/{task}/status").read_text()
        found[int(task)] = next(line.split(":")[1].strip() for line in status.splitlines()
                                if line.startswith("Cpus_allowed_list"))
    return found


def test_pin_runs_every_thread_on_its_cpus_and_so_do_the_threads_started_after():
    """In a process of its own (pinning this one would pin the test run): a thread started
    before and one started after are both pinned, with the main thread."""
    cpu = max(os.sched_getaffinity(0))
    script = (
        "import os, threading, time\n"
        "from servers.service import pin\n"
        "before = threading.Thread(target=time.sleep, args=(1,)); before.start()\n"
        f"pin([{cpu}])\n"
        "after = threading.Thread(target=time.sleep, args=(1,)); after.start()\n"
        "print(sorted({tuple(sorted(os.sched_getaffinity(int(t)))) for t in os.listdir('/proc/self/task')}),"
        " threading.active_count())\n"
    )
    out = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, check=True).stdout
    assert out.split() == [f"[({cpu},)]", "3"]


def test_pin_refuses_a_cpu_this_process_may_not_use_and_changes_nothing():
    allowed = os.sched_getaffinity(0)
    missing = max(allowed) + 1
    with pytest.raises(ConfigError, match=rf"^cpus \[{missing}\]: this process may run on CPUs [0-9,-]+ only$"):
        service.pin([missing])
    assert os.sched_getaffinity(0) == allowed
    service.pin([])
    assert os.sched_getaffinity(0) == allowed


@pytest.mark.parametrize(("role", "setting", "named"), [
    ("TES", "EXCHANGE__TES__CPUS", "TES"), ("OBS", "EXCHANGE__SHARDS__0__CPUS", "OBS A")])
def test_a_server_that_may_not_use_its_cpus_cannot_start_with_status_2(tmp_path, role, setting, named):
    """A real server process: its one line says which CPUs it may use."""
    missing = max(os.sched_getaffinity(0)) + 1
    done = subprocess.run([sys.executable, "main.py", "-s", role], cwd=REPO, capture_output=True, text=True,
                          env=exchange_env(tmp_path, **{setting: f"[{missing}]"}), timeout=60)
    assert done.returncode == 2 and "READY" not in done.stdout
    allowed = service._ranges(sorted(os.sched_getaffinity(0)))
    assert f"{named} cannot start: cpus [{missing}]: this process may run on CPUs {allowed} only" in done.stderr


@pytest.mark.parametrize(("cpus", "ranges"), [([0], "0"), ([0, 1, 2, 3, 6, 8, 9], "0-3,6,8-9"), ([5, 7], "5,7")])
def test_cpus_are_listed_as_linux_lists_them(cpus, ranges):
    assert service._ranges(cpus) == ranges


def test_a_negative_cpu_is_refused_by_the_configuration_naming_the_key():
    with pytest.raises(ConfigError, match=r"tes\.cpus\[0\]: Expected `int` >= 0"):
        load_config(environ={"EXCHANGE__TES__CPUS": "[-1]"})
    assert load_config(environ={"EXCHANGE__SHARDS__0__CPUS": "[0, 1]"}).shards[0].cpus == [0, 1]


def test_a_book_server_with_cpus_runs_all_its_threads_there(tmp_path):
    """A real OBS: its loop, ZeroMQ's I/O thread and the rest, every one on the CPU configured."""
    cpu = max(os.sched_getaffinity(0))
    with Role(["-s", "OBS"], exchange_env(tmp_path, EXCHANGE__SHARDS__0__CPUS=f"[{cpu}]")) as obs:
        threads = thread_cpus(obs.process.pid)
        assert len(threads) >= 2 and set(threads.values()) == {str(cpu)}
        assert obs.stop() == 0


def test_pin_passes_over_a_thread_that_ended_since_it_was_listed(monkeypatch):
    """A thread listed in /proc and gone before its turn is no error (here, with no real pinning)."""
    pinned = []

    def set_affinity(thread, cpus):
        if thread == 2:
            raise ProcessLookupError(3, "No such process")
        pinned.append((thread, cpus))

    monkeypatch.setattr(service.os, "listdir", lambda path: ["1", "2", "3"])
    monkeypatch.setattr(service.os, "sched_setaffinity", set_affinity)
    monkeypatch.setattr(service.os, "sched_getaffinity", lambda pid: {0, 1})
    service.pin([1])
    assert pinned == [(1, [1]), (3, [1])]
