"""A journal the OBS or the TES cannot write: a full file system (a real, small tmpfs) and a failing fsync.

The full file system is real: the shard's (or the TES's) journal directory is a 1 MiB tmpfs filled
up by a filler file, under real OBS and TES processes and a real client. That needs
root (``mount``); without it the test is skipped, saying so. A failing fsync cannot be
made on demand, so that test runs the OBS in this process with ``fsync`` replaced.
"""

import argparse
import contextlib
import errno
import os
import subprocess
import threading
import time
from collections import Counter
from itertools import cycle

import pytest
import zmq
from procs import Role, bare, endpoint, exchange_env

from clients.client import ExchangeClient, RequestRejected
from config.settings import JournalConfig, load_config
from engine.types import OrderType, RejectReason, Side, TimeInForce
from servers import collector, journal, obs
from servers import protocol as p
from servers.journal import read_records
from servers.shard import recover

JOURNAL_UNAVAILABLE = RejectReason.JOURNAL_UNAVAILABLE
FULL_TEXT = f"{JOURNAL_UNAVAILABLE.text}: {os.strerror(errno.ENOSPC)}"


@pytest.fixture
def small_journal_fs(tmp_path):
    """The shard's journal directory (``exchange_env``'s) as a 1 MiB tmpfs, unmounted afterwards."""
    with small_tmpfs(tmp_path / "journal-A") as directory:
        yield directory


@pytest.fixture
def small_ledger_fs(tmp_path):
    """The TES's journal directory (``exchange_env``'s) as a 1 MiB tmpfs, unmounted afterwards."""
    with small_tmpfs(tmp_path / "tes") as directory:
        yield directory


@contextlib.contextmanager
def small_tmpfs(directory):
    """``directory``, made, as a 1 MiB tmpfs while the context lasts (the test skipped without root)."""
    directory.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(directory)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        if "permission denied" in mounted.stderr.lower() or "not permitted" in mounted.stderr.lower():
            pytest.skip(f"mounting a tmpfs is not permitted here: {mounted.stderr.strip()}")
        raise AssertionError(f"mount failed: {mounted.stderr}")
    try:
        yield directory
    finally:
        subprocess.run(["umount", str(directory)], check=True)


def fill(directory):
    """Write a filler file until the file system is full; its path."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        while True:
            os.write(fd, bytes(4096))
    except OSError as exc:
        assert exc.errno == errno.ENOSPC, exc
    finally:
        os.close(fd)
    return filler


def answer(client, client_order_id, timeout=5.0):
    """The report that answers request ``client_order_id`` (one request in flight at a time)."""
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        for message in client.receive(left):
            if getattr(message, "client_order_id", None) == client_order_id:
                return bare(message)
    raise AssertionError(f"no answer to request {client_order_id} within {timeout}s")


def buy(client, price):
    return answer(client, client.enter_order("ACME", Side.BUY, OrderType.LIMIT, TimeInForce.GTC, price, 1))


def bids(orders):
    """The bid levels a book of these one-lot buy orders shows, best first."""
    levels = Counter(order.price for order in orders)
    return [(price, count, count) for price, count in sorted(levels.items(), reverse=True)]


def test_full_journal_file_system_refuses_commands_with_6003_until_space_returns(small_journal_fs, tmp_path):
    env = exchange_env(tmp_path)
    prices = cycle(range(9_900, 9_000, -1))
    with Role(["-s", "OBS"], env) as book_server, Role(["-s", "TES"], env) as trading:
        trading.wait_for("shard A ready", 10)
        client = ExchangeClient(endpoint(env, "TES__CLIENT_ENDPOINT"), "load", "load-demo-key",
                                context=zmq.Context.instance())
        client.logon(10.0)
        resting = [buy(client, next(prices)) for _ in range(os.sysconf("SC_PAGE_SIZE") // 32)]
        assert all(isinstance(report, p.OrderAccepted) for report in resting)
        filler = fill(small_journal_fs)
        # The journal's last page still has room: cancels (the smallest commands) fill it up
        # until one is refused; after that no command fits.
        while isinstance(report := answer(client, client.cancel(resting[0].order_id)), p.OrderCanceled):
            resting.pop(0)
        assert report == p.CancelRejected(report.client_order_id, resting[0].order_id, JOURNAL_UNAVAILABLE, FULL_TEXT)
        report = buy(client, next(prices))
        assert report == p.OrderRejected(report.client_order_id, JOURNAL_UNAVAILABLE, FULL_TEXT)
        report = answer(client, client.replace(resting[0].order_id, 9_950, 1))
        assert report == p.ReplaceRejected(report.client_order_id, resting[0].order_id, JOURNAL_UNAVAILABLE, FULL_TEXT)
        assert client.book("ACME", 1000).bids == bids(resting), "queries are answered"
        assert book_server.process.poll() is None
        records = list(read_records(small_journal_fs))
        assert records[-1].end == (small_journal_fs / journal.JOURNAL_FILE).stat().st_size, \
            "no partial record, and no room written ahead on a file system this short of space"
        assert book_server.output().count("intake stopped") == 1

        filler.unlink()
        deadline = time.monotonic() + 5
        while not isinstance(report := buy(client, next(prices)), p.OrderAccepted):
            assert report.reason is JOURNAL_UNAVAILABLE and time.monotonic() < deadline, report
            time.sleep(0.05)
        resting.append(report)
        book_server.wait_for("intake resumed", 5)
        assert book_server.stop() == 0

        with Role(["-s", "OBS"], env) as restarted:
            assert f"READY OBS A sequence={len(records) + 1} " in restarted.wait_for("READY", 1)
            deadline = time.monotonic() + 10
            while True:
                try:
                    book = client.book("ACME", 1000)
                    break
                except RequestRejected as exc:
                    assert exc.reason is RejectReason.BOOK_UNAVAILABLE and time.monotonic() < deadline
                    time.sleep(0.05)
            assert book.bids == bids(resting), "every accepted order, and only those, is in the recovered book"
            assert restarted.stop() == 0
        client.close()
    assert "Traceback" not in book_server.output()


def test_a_full_ledger_file_system_stops_the_tes_cleanly_and_its_restart_loses_nothing(small_ledger_fs, tmp_path):
    """The TES stops at the first turn whose records it cannot write, having sent nothing of it;
    the book server serves on, and a TES restarted once there is space again holds every order
    the book does: the order in hand at the stop is in both or in neither."""
    env = exchange_env(tmp_path)
    prices = cycle(range(9_900, 9_000, -1))
    with Role(["-s", "OBS"], env) as book_server:
        trading = Role(["-s", "TES"], env)
        with trading:
            trading.wait_for("shard A ready", 10)
            client = ExchangeClient(endpoint(env, "TES__CLIENT_ENDPOINT"), "load", "load-demo-key",
                                    context=zmq.Context.instance())
            client.logon(10.0)
            accepted = [buy(client, next(prices)) for _ in range(5)]
            filler = fill(small_ledger_fs)
            # The journal's last page still has room: orders are answered until one is not.
            for _ in range(os.sysconf("SC_PAGE_SIZE") // 16):  # each order's records take more than that
                last = client.enter_order("ACME", Side.BUY, OrderType.LIMIT, TimeInForce.GTC, next(prices), 1)
                deadline = time.monotonic() + 10
                report = None
                while report is None and trading.process.poll() is None and time.monotonic() < deadline:
                    report = next((bare(m) for m in client.receive(0.05)
                                   if getattr(m, "client_order_id", None) == last), None)
                if report is None:
                    break
                assert isinstance(report, p.OrderAccepted), report
                accepted.append(report)
            else:
                pytest.fail("the TES went on answering with its journal's file system full")
            assert trading.process.wait(10) == 1
        output = trading.output()
        assert "TES stopped" in output and "cannot write the ledger's journal in" in output, output
        assert os.strerror(errno.ENOSPC) in output and "Traceback" not in output, output
        assert book_server.process.poll() is None

        filler.unlink()
        with Role(["-s", "TES"], env) as restarted:
            restarted.wait_for("shard A ready", 10)
            logon = client.logon(10.0)
            resent = [bare(m) for m in client.receive(1.0) if getattr(m, "client_order_id", None) == last]
            open_ids = sorted(order.order_id for order in client.open_orders())
            book = client.book("ACME", 1000)
            if logon.next_client_order_id == last:
                assert resent == [] and open_ids == sorted(report.order_id for report in accepted), \
                    "the order in hand was never entered, and the logon says to send it again"
            else:
                assert logon.next_client_order_id > last and [type(m) for m in resent] == [p.OrderAccepted], \
                    "the order in hand reached the book: its report comes with the logon"
                accepted.append(resent[0])
                assert open_ids == sorted(report.order_id for report in accepted)
            assert book.bids == bids(accepted), "the book and the TES agree on every order"
            client.close()
            assert restarted.stop() == 0
        assert book_server.stop() == 0


def test_snapshot_that_does_not_fit_leaves_no_temporary_file(small_journal_fs):
    shard, log = recover(small_journal_fs, ["ACME", "BOLT"], JournalConfig())
    log.close()
    fill(small_journal_fs)
    with pytest.raises(OSError) as raised:
        journal.write_snapshot(small_journal_fs, shard.snapshot(0))
    assert raised.value.errno == errno.ENOSPC
    assert sorted(path.name for path in small_journal_fs.iterdir()) == [journal.JOURNAL_FILE, "filler"]


@pytest.mark.parametrize("policy", ["batch", "interval"])
def test_failed_fsync_stops_the_obs_with_exit_1_and_no_traceback(tmp_path, monkeypatch, caplog, policy):
    env = exchange_env(tmp_path, EXCHANGE__JOURNAL__FSYNC=policy, EXCHANGE__SECURITY__KEYS_DIR="")
    config = load_config(environ=env)

    def failing_sync(fd):
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(journal, "_sync", failing_sync)
    monkeypatch.setattr(collector, "settle", lambda: None)
    context = zmq.Context()
    tes = context.socket(zmq.DEALER)
    tes.setsockopt(zmq.LINGER, 0)
    tes.connect(endpoint(env, "SHARDS__0__COMMAND_ENDPOINT"))
    codec = p.Codec(p.ObsRequest)
    tes.send(codec.encode([p.BookSubmit("ACME", (1 << 48) | 1, Side.BUY, 0, 0, 100, 1)]))
    watchdog = threading.Timer(20, os.kill, (os.getpid(), 15))
    watchdog.start()
    try:
        assert obs.serve(config, argparse.Namespace(shard=None)) == 1
    finally:
        watchdog.cancel()
    if policy == "batch":
        assert not tes.poll(200), "nothing is acknowledged before its fsync"
    context.destroy(linger=0)
    assert "OBS A stopped at sequence" in caplog.text
    assert f"fsync of the journal {tmp_path / 'journal-A' / 'commands.log'} failed (Input/output error)" in caplog.text
    assert "Restart it: recovery replays what reached the journal file" in caplog.text
    assert not any(record.exc_info for record in caplog.records), "no traceback"
    monkeypatch.undo()
    shard, log = recover(tmp_path / "journal-A", ["ACME", "BOLT"], config.journal)
    log.close()
    assert shard.sequence == 1, "the written record is recovered; the TES's Hello gets its answer"
