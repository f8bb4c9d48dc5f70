"""The reports of a book server's replies leave the TES before its journal's fsync, and come back
the same after a crash of the machine (`servers.tes.TradingEngineServer._send_replies_first`).

A crash of the machine is played in one process: as the loop asks for a chosen fsync, or while
the syncer has it in hand and the loop goes on (the turn that would have seen it done raises, and
sends nothing), or after a turn that left its fsync to a later one; a new TES recovers from the
journal as the last fsync done left it (what was written after that fsync began is lost, as the
page cache is). The book server's replay then makes again every report the client was sent, with
its number and bytes; the logons accepted before it are held.
With real processes, a TES restarted after a crash takes no logon before its book server has
answered, and one restarted after a clean stop takes them at once.
"""

import json
import logging
import os
import time
from pathlib import Path

import msgspec
import pytest
import zmq
from test_tes import Exchange as LiveExchange
from test_tes import config_env, split_shards

from benchmarks.tes import SYMBOL, TES_ID, TRADER, Exchange, requests
from config.settings import load_config
from engine.types import OrderType, RejectReason, Side, TimeInForce
from servers import protocol as p
from servers import tes as tes_module
from servers.journal import JOURNAL_FILE, Journal, JournalFailed
from servers.ledger import STOPPED_FILE, Ledger, LedgerJournal, Marked, encode_state
from servers.logons import Verdict
from servers.processes import Role, exchange_env
from servers.status import STATUS_FILE
from servers.tes import RECOVERING_TEXT, SYNC_DEFERRED_S, SYNC_WARN_S, JournalUnavailable, TradingEngineServer

WAITING = {"EXCHANGE__SHARDS__0__STREAM_ENDPOINT": ""}
"""No journal stream: the commands wait for the fsync of their records (`TradingEngineServer.adopts`
is off; `tests/test_tes_adoption.py` has it on)."""
ENCODE = msgspec.msgpack.Encoder().encode
CLIENT_FRAME = msgspec.msgpack.Decoder(list[p.ClientMessage])
REQUESTS = msgspec.msgpack.Decoder(list[p.ClientRequest])


class Crash(Exception):
    """The machine stops while an fsync of the TES journal is in hand."""


class Disk:
    """The TES journal's fsyncs, as the syncer is asked for them and `Journal.synced` is told of
    them: the bytes each made durable, the client frames sent when it began. The ``crash_at``-th
    never ends: the machine stops (`Crash`) as the loop asks for it (``when`` "asked") or, with
    the loop gone on meanwhile, when its answer would have come ("answered")."""

    def __init__(self, exchange: Exchange, crash_at: int | None, monkeypatch, when: str = "answered") -> None:
        self.synced: list[tuple[int, int]] = []
        """(journal bytes durable, client frames sent when the fsync began) of each fsync done."""
        self.began: dict[int, int] = {}
        """Client frames sent when the syncer was asked to fsync, by the offset it makes durable."""
        self.asked = self.ended = 0
        request_sync, synced, tes_journal = Journal.request_sync, Journal.synced, exchange.tes.journal.journal

        def _request_sync(journal: Journal, syncer) -> int:
            if journal is tes_journal:
                self.asked += 1
                if self.asked == crash_at and when == "asked":
                    raise Crash
            offset = request_sync(journal, syncer)
            if journal is tes_journal:
                self.began[offset] = len(exchange.clients.sent)
            return offset

        def _synced(journal: Journal, offset: int, error: int = 0) -> None:
            if journal is not tes_journal:
                return synced(journal, offset, error)
            self.ended += 1
            if self.ended == crash_at and when == "answered":
                raise Crash
            synced(journal, offset, error)
            self.synced.append((offset, self.began.pop(offset, len(exchange.clients.sent))))

        monkeypatch.setattr(Journal, "request_sync", _request_sync)
        monkeypatch.setattr(Journal, "synced", _synced)


def played(exchange: Exchange, frames: list[bytes], apart: bool, stop_after: int | None = None) -> None:
    """Each client frame through a turn of the exchange (which sees the fsync of the turn before
    done), then (``apart``) the book's replies through a turn of their own while the frame's fsync
    is in hand, else with the next frame; after frame ``stop_after``, a turn sees that fsync done
    and sends the frame's commands, the next reports the book's replies to them and leaves its
    fsync to a later turn, and the machine stops; else the last replies through a turn. `Crash`
    ends it anywhere."""
    for number, frame in enumerate(frames, 1):
        exchange.turn(frame)
        if apart:
            exchange.turn(None, synced=False)
        if number == stop_after:
            exchange.turn(None)
            exchange.turn(None)
            return
    while exchange.book.queued:
        exchange.turn(None)


def recovered(exchange: Exchange, durable: int, directory: Path, overrides: dict = WAITING) -> TradingEngineServer:
    """A TES started on the first ``durable`` bytes of ``exchange``'s journal (the rest lost with
    the machine), not yet greeted (nothing is sent: no loop turn runs); ``overrides`` are further
    configuration variables."""
    env = exchange_env(directory, EXCHANGE__JOURNAL__FSYNC="batch", EXCHANGE__TES__TES_ID=str(TES_ID), **overrides)
    journal_dir = Path(env["EXCHANGE__TES__JOURNAL_DIR"])
    journal_dir.mkdir(parents=True)
    with open(exchange.tes.journal.directory / JOURNAL_FILE, "rb") as source:
        (journal_dir / JOURNAL_FILE).write_bytes(source.read(durable))
    return TradingEngineServer(load_config(environ=env))


def greet(tes: TradingEngineServer, exchange: Exchange) -> None:
    """The book server's answer to the recovered TES's Hello: the replies after what its ledger
    holds, then the HelloReply, as `servers.obs` sends them."""
    (shard,) = tes.shards.values()
    state = exchange.obs.state
    replayed, complete = state.replay(TES_ID, tes.ledger.seen[shard.name])
    reply = p.HelloReply(sorted(tes.shard_of), state.max_order_id(TES_ID), state.sequence, complete,
                         state.last_prices())
    for frame in p.join_frames([*replayed, ENCODE(reply)]):
        tes._received(shard, frame)


def holdings(tes: TradingEngineServer, trader: str) -> tuple:
    """The trader's cash and, per symbol, position, basis and realized P&L."""
    portfolio = tes.ledger.portfolios[trader]
    return portfolio.cash, {symbol: (h.quantity, h.basis, h.realized) for symbol, h in portfolio.holdings.items()}


def state_but_marks(tes: TradingEngineServer) -> bytes:
    """The TES's ledger (`encode_state`), but for the sequences its last prices are as of (the
    Hello reply's are the book server's latest, the live ledger's its last trade's)."""
    return encode_state(msgspec.structs.replace(tes.ledger.state(0, 0), marked={}))


def reports(messages) -> dict[int, p.ClientMessage]:
    """The numbered reports among ``messages`` (Structs, or their msgpack), by number."""
    decoded = [msgspec.msgpack.decode(m, type=p.ClientMessage) if type(m) is bytes else m for m in messages]
    return {m.report: m for m in decoded if hasattr(m, "report")}


CRASHES = [("together", 3, None), ("together", 9, None), ("together", 20, None), ("apart", 3, None),
           ("apart", 12, None), ("apart", None, 5), ("apart", None, 14)]


@pytest.mark.parametrize(("flow", "crash_at", "stop_after"), CRASHES)
def test_reports_sent_before_an_fsync_the_machine_never_finished_come_back_the_same(
        tmp_path, flow, crash_at, stop_after, monkeypatch):
    """The standard workload's first 400 requests (limits that trade and rest, market orders,
    cancels) in frames of 20. ``together``: each frame's turn also reports the book's replies to
    the frame before and sends the commands of the frame before, which its fsync, done, held;
    then the syncer fsyncs the frame's records; the machine stops as the loop asks for the
    ``crash_at``-th fsync, after the turn's reports were sent and before its commands were.
    ``apart``: the replies come in a turn of their own while the syncer fsyncs the frame's turn,
    which sends only their reports and leaves its fsync to the next turn, which sends commands; the
    machine stops in an fsync, or after the replies to frame ``stop_after``, never fsynced."""
    exchange = Exchange(tmp_path / "live", fsync="batch", **WAITING)
    try:
        assert exchange.tes.replies_first
        disk = Disk(exchange, crash_at, monkeypatch, "asked" if flow == "together" else "answered")
        frames = [ENCODE(frame) for frame in requests(400, 20)]
        sent = exchange.clients.sent
        if crash_at is None:
            played(exchange, frames, flow == "apart", stop_after)
            assert exchange.tes.journal.journal.unsynced_bytes, "the last turn left its fsync to a later one"
            assert exchange.tes.in_flight is None and not exchange.book.queued
        else:
            with pytest.raises(Crash):
                played(exchange, frames, flow == "apart")
            if flow == "together":
                assert exchange.shard.outbox and exchange.tes.in_flight is None, "the frame's commands never left"
            else:
                assert not exchange.book.sent, "the turn that would have seen the fsync done sent nothing"
                (in_hand,) = disk.began.values()
                assert in_hand < len(sent), "reports were sent while the fsync that never ended was in hand"
        durable, sent_by_then = disk.synced[-1]
        assert len(sent) > sent_by_then, "reports were sent after the last fsync done"
        seen = reports(message for frame in sent for message in CLIENT_FRAME.decode(frame))
        assert sorted(seen) == list(range(1, len(seen) + 1))
        lost = [m for frame in sent[sent_by_then:] for m in CLIENT_FRAME.decode(frame)]
        assert all(m.report in seen for m in lost), "what was sent since the last fsync: reports, all numbered"

        tes = recovered(exchange, durable, tmp_path / "restarted")
        try:
            assert tes.journal.unclean and tes.recovering
            assert tes.ledger.numbers.get(TRADER, 0) < max(seen), "the crash took reports the client has"
            greet(tes, exchange)
            assert not tes.recovering
            again = reports(tes.ledger.kept[TRADER])
            assert {number: again.get(number) for number in seen} == seen
            taken = {command.client_order_id for frame in exchange.book.sent
                     for command in exchange.commands.decode(frame)}
            beyond = [m for number, m in again.items() if number > max(seen)]
            assert all(m.client_order_id in taken and m.reason == RejectReason.BOOK_UNAVAILABLE for m in beyond), (
                "no report numbered beyond what the book replied, but the refusals of commands the crash took")
            assert holdings(tes, TRADER) == holdings(exchange.tes, TRADER)
            if crash_at is None:
                assert state_but_marks(tes) == state_but_marks(exchange.tes), "nothing else was lost"
        finally:
            tes.close()
    finally:
        exchange.close()


def test_logons_accepted_while_recovering_are_held_until_the_replay_and_refused_beyond_the_queue(
        tmp_path, monkeypatch):
    """Whether the key was checked or remembered, an accepted logon opens no session before the
    book server has replayed; `logon_queue` of them are held, later ones refused."""
    exchange = Exchange(tmp_path / "live", fsync="batch", **WAITING)
    try:
        Disk(exchange, None, monkeypatch)
        played(exchange, [ENCODE(frame) for frame in requests(60, 20)], apart=True, stop_after=2)
        tes = recovered(exchange, exchange.tes.journal.journal.offset, tmp_path / "restarted")
        try:
            queue, now = tes.config.tes.logon_queue, time.monotonic()
            for number in range(queue + 1):
                tes._logged_on(Verdict(b"client-%d" % number, TRADER, False), now)
            tes._logged_on(Verdict(b"client-0", TRADER, False), now)  # again: still held, once
            assert tes.recovering and not tes.sessions.by_identity and len(tes.held_logons) == queue
            tes._publish_status(now)
            status = json.loads((tes.journal.directory / STATUS_FILE).read_bytes())
            assert (status["recovering"], status["logons_held"], status["sessions"]) == (True, queue, 0)
            (refused,) = tes.outbox.pop(b"client-%d" % queue)
            assert refused == p.LogonRejected(RejectReason.BOOK_UNAVAILABLE, RECOVERING_TEXT)
            assert not tes.outbox
            greet(tes, exchange)
            assert not tes.recovering and not tes.held_logons
            tes._publish_status(now + 1)
            status = json.loads((tes.journal.directory / STATUS_FILE).read_bytes())
            assert (status["recovering"], status["logons_held"], status["sessions"]) == (False, 0, 1)
            answers = [type(tes.outbox[b"client-%d" % number][0]) for number in range(queue)]
            assert answers == [p.LogonAccepted] * queue
            (session,) = tes.sessions.by_identity.values()  # each replaced the one before
            assert session.identity == b"client-%d" % (queue - 1)
        finally:
            tes.close()
    finally:
        exchange.close()


def test_a_refusal_waits_for_the_fsync_and_so_does_what_queues_behind_it(tmp_path, monkeypatch):
    """In one turn the book's replies are reported first, then the client's frame refused: the
    acknowledgement leaves before the fsync, the refusal (the TES's own decision) once the syncer
    has done it; the fsync does not hold the loop."""
    exchange = Exchange(tmp_path, fsync="batch", **WAITING)
    try:
        disk = Disk(exchange, None, monkeypatch)
        price = exchange.tes.config.instrument(SYMBOL).reference_price
        exchange.turn(ENCODE([p.EnterOrder(1, SYMBOL, Side.BUY, OrderType.LIMIT, TimeInForce.GTC, price, 10)]))
        assert exchange.tes.in_flight is not None and not exchange.book.queued, "the order waits for the fsync"
        exchange.turn(None)
        assert exchange.book.queued, "the order reached the book, which answered"
        exchange.turn(ENCODE([p.EnterOrder(2, SYMBOL, Side.BUY, OrderType.LIMIT, TimeInForce.GTC, price, 0)]))
        sent = exchange.clients.sent
        assert [type(m) for m in CLIENT_FRAME.decode(sent[-1])] == [p.OrderAccepted]
        assert exchange.tes.in_flight is not None, "the refusal waits for the fsync in hand"
        exchange.turn(None)
        assert [[type(m) for m in CLIENT_FRAME.decode(frame)] for frame in sent[-2:]] == [
            [p.OrderAccepted], [p.OrderRejected]]
        assert disk.synced[-1][1] == len(sent) - 1, "the acknowledgement before the fsync began"
    finally:
        exchange.close()


def test_a_report_never_overtakes_what_waits_for_the_fsync_in_hand(tmp_path, monkeypatch):
    """The client's refusal waits for the syncer's fsync; the book's reply to its earlier order,
    read meanwhile, is reported after the refusal, in the order they were numbered."""
    exchange = Exchange(tmp_path, fsync="batch", **WAITING)
    try:
        price = exchange.tes.config.instrument(SYMBOL).reference_price
        exchange.turn(ENCODE([p.EnterOrder(1, SYMBOL, Side.BUY, OrderType.LIMIT, TimeInForce.GTC, price, 10)]))
        exchange.turn(ENCODE([p.EnterOrder(2, SYMBOL, Side.BUY, OrderType.LIMIT, TimeInForce.GTC, price, 0)]))
        assert exchange.book.queued and exchange.tes.in_flight is not None, "the refusal waits, the order answered"
        sent = exchange.clients.sent
        exchange.turn(None, synced=False)
        assert not sent, "the acknowledgement waits behind the refusal"
        exchange.turn(None)
        answers = [m for frame in sent for m in CLIENT_FRAME.decode(frame)]
        assert [(type(m), m.client_order_id, m.report) for m in answers] == [
            (p.OrderRejected, 2, 1), (p.OrderAccepted, 1, 2)]
    finally:
        exchange.close()


def test_the_clients_wait_while_the_journal_behind_the_fsync_in_hand_reaches_a_bound(tmp_path, monkeypatch, caplog):
    """A disk slow to fsync: the loop goes on taking orders until `SYNC_BACKLOG_BYTES` of journal
    are written behind the fsync in hand, then leaves the clients' socket out of its poll and their
    frames in its queue (bounded by ZeroMQ's high-water mark) until that fsync is done; an fsync
    in hand for `SYNC_WARN_S` is logged once, and the status file shows its age."""
    monkeypatch.setattr(tes_module, "SYNC_BACKLOG_BYTES", 2000)
    exchange = Exchange(tmp_path, fsync="batch", **WAITING)
    try:
        tes, frames = exchange.tes, [ENCODE(frame) for frame in requests(200, 10)]
        exchange.turn(frames[0])
        begun, taken = tes.in_flight.offset, 1
        while not tes.clients_paused:
            exchange.turn(frames[taken], synced=False)
            taken += 1
        assert tes.journal.journal.offset - begun >= 2000 and tes.in_flight.offset == begun
        assert tes.polled_clients not in dict(tes.poller.sockets)
        exchange.turn(frames[taken], synced=False)
        assert exchange.clients.queued, "a frame read while the fsync is in hand would pass the bound"
        later = tes.in_flight.asked + SYNC_WARN_S
        with caplog.at_level(logging.WARNING, logger="servers.tes"):
            tes._housekeeping(later)
            tes._housekeeping(later + 1)
        assert [r.message for r in caplog.records].count(
            f"the ledger's journal fsync in {tes.journal.directory} has taken 1.0 s so far: what waits for it "
            "waits (the clients are not read)") == 1
        tes._publish_status(later + 1)
        status = json.loads((tes.journal.directory / STATUS_FILE).read_bytes())
        assert (status["fsync_in_hand_s"], status["clients_paused"]) == (SYNC_WARN_S + 1, True)
        exchange.turn(None)
        assert not tes.clients_paused and dict(tes.poller.sockets)[tes.polled_clients] == zmq.POLLIN
        exchange.turn(frames[taken + 1])
        assert not exchange.clients.queued and tes.submitted == (taken + 2) * 10 - sum(
            isinstance(m, p.CancelOrder) for frame in frames[:taken + 2] for m in REQUESTS.decode(frame))
    finally:
        exchange.close()


def test_a_turn_that_sends_only_such_reports_leaves_its_fsync_to_a_later_turn_within_a_bound(tmp_path, monkeypatch):
    """The book's replies alone: their reports leave and the fsync waits, for the next turn that
    sends anything else or `SYNC_DEFERRED_S`, which the loop's poll wakes for."""
    exchange = Exchange(tmp_path, fsync="batch", **WAITING)
    try:
        disk, start = Disk(exchange, None, monkeypatch), time.monotonic()
        price = exchange.tes.config.instrument(SYMBOL).reference_price
        exchange.turn(ENCODE([p.EnterOrder(1, SYMBOL, Side.BUY, OrderType.LIMIT, TimeInForce.GTC, price, 10)]), start)
        exchange.turn(None, start)
        fsyncs, journal = len(disk.synced), exchange.tes.journal.journal
        assert not journal.unsynced_bytes and exchange.book.queued
        exchange.turn(None, start + 0.001)
        assert [type(m) for m in CLIENT_FRAME.decode(exchange.clients.sent[-1])] == [p.OrderAccepted]
        assert len(disk.synced) == fsyncs and journal.unsynced_bytes and exchange.tes.in_flight is None
        assert exchange.tes._poll_timeout() <= SYNC_DEFERRED_S * 1000 + 1
        exchange.turn(None, start + 0.001 + SYNC_DEFERRED_S / 2)
        assert exchange.tes.in_flight is None
        exchange.turn(None, start + 0.002 + SYNC_DEFERRED_S)
        assert exchange.tes.in_flight is not None
        exchange.turn(None, start + 0.003 + SYNC_DEFERRED_S)
        assert len(disk.synced) == fsyncs + 1 and not journal.unsynced_bytes
    finally:
        exchange.close()


def test_a_failed_fsync_after_the_reports_left_stops_the_tes(tmp_path, monkeypatch):
    """The reports of the book's replies are out; the syncer's fsync that follows fails (the file
    it is given is a pipe: EINVAL, as a failing disk's EIO would be): the server stops
    (`JournalUnavailable`, never retried), sends nothing more, and closing it does not say it
    stopped cleanly (the next start holds logons for the replay)."""
    exchange = Exchange(tmp_path, fsync="batch", **WAITING)
    pipe = os.pipe()
    try:
        price = exchange.tes.config.instrument(SYMBOL).reference_price
        exchange.turn(ENCODE([p.EnterOrder(1, SYMBOL, Side.BUY, OrderType.LIMIT, TimeInForce.GTC, price, 10)]))
        exchange.turn(None)
        assert exchange.book.queued

        def request_sync(journal: Journal, syncer) -> int:
            syncer.request(pipe[0])
            return journal.offset

        monkeypatch.setattr(Journal, "request_sync", request_sync)
        sent = len(exchange.clients.sent)
        exchange.turn(ENCODE([p.EnterOrder(2, SYMBOL, Side.BUY, OrderType.LIMIT, TimeInForce.GTC, price, 10)]))
        with pytest.raises(JournalUnavailable, match="Invalid argument"):
            exchange.turn(None)
        assert [type(m) for m in CLIENT_FRAME.decode(exchange.clients.sent[-1])] == [p.OrderAccepted]
        assert len(exchange.clients.sent) == sent + 1 and not exchange.book.sent, "the order 2 never left"
        with pytest.raises(JournalFailed):
            exchange.tes.journal.journal.writable()
    finally:
        monkeypatch.undo()
        exchange.close()
        for fd in pipe:
            os.close(fd)
    assert not (exchange.tes.journal.directory / STOPPED_FILE).exists()


def test_every_report_waits_for_the_fsync_unless_one_book_server_and_the_batch_policy(tmp_path):
    """With two book servers a crash could lose reports of both, which their replays could not
    number again in the order they were sent; the other policies never wait for an fsync."""
    for name, fsync, expected in [("one", "batch", True), ("two", "batch", False), ("interval", "interval", False),
                                  ("never", "never", False)]:
        (tmp_path / name).mkdir()
        env = config_env(tmp_path / name, EXCHANGE__JOURNAL__FSYNC=fsync)
        if name == "two":
            split_shards(env, tmp_path / name)
        config = load_config(environ=env)
        assert len(config.shards) == (2 if name == "two" else 1)
        tes = TradingEngineServer(config)
        try:
            assert tes.replies_first is expected, name
        finally:
            tes.close()


def test_a_journal_not_closed_is_unclean_and_a_closed_one_is_not(tmp_path):
    """`LedgerJournal.unclean`: a fresh journal is not (nothing to lose); one with records is,
    unless `STOPPED_FILE` says it was closed at the length it has; the file is gone once opened."""
    config = load_config(environ={}).journal
    shards = {"A": ["ACME"]}

    def opened() -> LedgerJournal:
        return LedgerJournal(tmp_path, config, Ledger(TES_ID, shards))

    journal = opened()
    assert not journal.unclean
    journal.add(Marked("ACME", 1, 10_000))
    assert journal.write()
    journal.close()
    assert (tmp_path / STOPPED_FILE).read_text() == f"{(tmp_path / JOURNAL_FILE).stat().st_size}\n"
    journal = opened()
    assert not journal.unclean and not (tmp_path / STOPPED_FILE).exists()
    journal.journal.close()  # the process ends without closing the ledger's journal: no file
    journal = opened()
    assert journal.unclean
    journal.close()
    (tmp_path / STOPPED_FILE).write_text("1\n")  # a length the journal does not have
    journal = opened()
    assert journal.unclean
    journal.close()


def answered_within(client, seconds: float) -> bool:
    return bool(client.socket.poll(int(seconds * 1000), zmq.POLLIN))


def test_after_a_crash_logons_wait_for_the_book_server_and_after_a_clean_stop_they_do_not(tmp_path):
    """The OBS and the TES killed together (a crash of the machine); the TES restarted alone holds
    a logon until the OBS is back and has answered its Hello. Then stopped cleanly and restarted
    alone again, it takes a logon at once (its orders refused BOOK_UNAVAILABLE)."""
    exchange = LiveExchange(tmp_path)
    try:
        alice = exchange.client("alice")
        alice.order("ACME", Side.BUY, 10_000, 10)
        assert isinstance(alice.one(), p.OrderAccepted)
        alice.socket.close()
        exchange.tes.kill()
        exchange.obs.kill()
        exchange.tes = Role(["-s", "TES"], exchange.env)
        exchange.tes.wait_for("logons wait until every book server", 10)
        waiting = exchange.client()
        waiting.send(p.Logon("alice", "alice-demo-key", False, 0))
        assert not answered_within(waiting, 1.5), "a logon answered before the book server replayed"
        exchange.start_obs()
        exchange.tes.wait_for("logons are taken", 15)
        accepted = waiting.one(10.0)
        assert isinstance(accepted, p.LogonAccepted) and accepted.last_report >= 1
        waiting.socket.close()

        assert exchange.tes.stop() == 0
        exchange.obs.kill()
        exchange.tes = Role(["-s", "TES"], exchange.env)
        bob = exchange.client("bob")  # answered with no book server up: not held
        assert not any("logons wait" in line for line in exchange.tes.lines)
        bob.order("ACME", Side.SELL, 10_000, 10)
        refused = bob.one()
        assert isinstance(refused, p.OrderRejected) and refused.reason == RejectReason.BOOK_UNAVAILABLE
    finally:
        exchange.close()
