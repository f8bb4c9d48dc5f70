"""The shape every server role shares (`servers.service`): exit statuses, log lines, signals, counted warnings."""

import logging
import math
import os
import signal

import pytest

from servers import service
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
