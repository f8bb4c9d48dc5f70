"""Commands leave the TES before the fsync of their records, and a TES whose machine crashed adopts
the commands its journal lost from the book server's journal (`servers.tes.TradingEngineServer.adopts`).

A crash of the TES's machine is played in one process, as in `tests/test_tes_replies_first.py`: the
TES journal keeps what its last fsync done made durable; the book server, on a machine of its own,
has run (or not) the commands that had left. Its journal is a real one, served by a real journal
stream (`servers.stream.Streamer`), and the restarted TES, asking its Hello for no replay, catches
up from it. Checked against the book: every report the client was sent comes back the same, and the
recovered ledger holds what the book holds (open orders, position, cash). With real processes, a
TES killed and its journal cut back adopts from the OBS's stream over CURVE.
"""

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import msgspec
import numpy as np
import pytest
import zmq
from procs import REPO
from test_tes import Client, endpoint
from test_tes import Exchange as LiveExchange
from test_tes_replies_first import recovered as recovered_from

from benchmarks.tes import CLIENT, SYMBOL, TES_ID, TES_IDENTITY, TRADER, Exchange, Queue, requests
from config.settings import JournalConfig
from engine.messages import OrderFilled
from engine.snapshot import HELD_DTYPE, ORDER_DTYPE
from engine.types import CancelReason, OrderFlags, OrderType, RejectReason, Side, TimeInForce
from native.reports import report_number
from servers import protocol as p
from servers import tes as tes_module
from servers.journal import JOURNAL_FILE, Journal, first_record, read_records
from servers.ledger import ID_BITS, LEDGER_RECORD, Entered, Received, Requested, encode_state
from servers.obs import OrderBookServer
from servers.stream import Streamer
from servers.tes import SYNC_DEFERRED_S, TradingEngineServer

ENCODE = msgspec.msgpack.Encoder().encode
CLIENT_FRAME = msgspec.msgpack.Decoder(list[p.ClientMessage])
RAW_FRAME = msgspec.msgpack.Decoder(list[msgspec.Raw])
ENTRY = msgspec.msgpack.Decoder(p.JournalEntry)
OTHER_TES = 2
LIMIT, GTC = OrderType.LIMIT, TimeInForce.GTC


class Crash(Exception):
    """The TES's machine stops."""


class BookJournal:
    """The book server's journal: what each of its turns ran, appended to a real journal as the
    OBS appends it (`OrderBookServer._execute`'s entries), to be served by a real journal stream."""

    def __init__(self, directory: Path, monkeypatch) -> None:
        self.directory = directory
        self.journal = Journal(directory, JournalConfig(fsync="never"), 0)
        self.last = 0
        execute = OrderBookServer._execute

        def _execute(server, work):
            outbox, market_data, entries = execute(server, work)
            if entries:
                assert self.journal.append(entries)
                self.last = entries.last
            return outbox, market_data, entries

        monkeypatch.setattr(OrderBookServer, "_execute", _execute)

    def entries(self) -> list[p.JournalEntry]:
        return [record.command for record in read_records(self.directory, 0, 0, ENTRY.decode)]

    def serve(self, endpoint: str) -> tuple[Streamer, zmq.Context]:
        context = zmq.Context()
        return Streamer(self.directory, endpoint, context, None, first_record(self.directory, 0),
                        (self.last, self.journal.offset), 64 << 20), context


def durable_crash(exchange: Exchange, monkeypatch, crash_at: int) -> list[int]:
    """The ``crash_at``-th fsync the TES's syncer is asked for never ends: the machine stops when
    its answer would have come. The offsets the fsyncs done made durable, the first what was
    durable before."""
    done = [exchange.tes.journal.journal.synced_offset]
    synced, tes_journal, stopped = Journal.synced, exchange.tes.journal.journal, []

    def _synced(journal: Journal, offset: int, error: int = 0) -> None:
        if journal is tes_journal and not stopped:
            if len(done) == crash_at:
                stopped.append(offset)
                raise Crash
            done.append(offset)
        synced(journal, offset, error)

    monkeypatch.setattr(Journal, "synced", _synced)
    return done


def played(exchange: Exchange, frames: list[bytes]) -> None:
    """Each client frame through a turn, then the book's replies through a turn of their own while
    the frame's fsync, if any, is in hand; the clock advances by twice `SYNC_DEFERRED_S` every other
    frame, so the fsync a turn that sent only commands and reports left to a later one is asked at
    the latest two frames on."""
    start = time.monotonic()
    for number, frame in enumerate(frames, 1):
        now = start + number // 2 * 2 * SYNC_DEFERRED_S
        exchange.turn(frame, now)
        exchange.turn(None, now, synced=False)


def recovered(exchange: Exchange, durable: int, directory: Path) -> TradingEngineServer:
    """A TES started on the first ``durable`` bytes of ``exchange``'s journal (the rest lost with
    the machine), not yet greeted; CURVE off, as the journal stream served here."""
    return recovered_from(exchange, durable, directory, {"EXCHANGE__SECURITY__KEYS_DIR": ""})


def said_hello(tes: TradingEngineServer, exchange: Exchange) -> list:
    """What the TES's Hello to its book server says (as `_hello` encodes it)."""
    (shard,) = tes.shards.values()
    socket, shard.socket = shard.socket, Queue()
    try:
        tes._hello(shard, time.monotonic())
        return exchange.commands.decode(shard.socket.sent.pop())
    finally:
        shard.socket = socket


def answer(tes: TradingEngineServer, exchange: Exchange, hello: p.Hello) -> None:
    """The book server's answer to ``hello``, by its own code, read by the TES."""
    (shard,) = tes.shards.values()
    outbox, _, _ = OrderBookServer._execute(exchange.obs, [(TES_IDENTITY, hello, 0, time.time_ns())])
    for frame in p.join_frames([m if type(m) is bytes else ENCODE(m) for m in outbox[TES_IDENTITY]]):
        tes._received(shard, frame)


def greet(tes: TradingEngineServer, exchange: Exchange, book: BookJournal) -> None:
    """The recovered TES's Hello (asking for no replay) answered by the book server's own code,
    then the catch-up from its journal stream, as the TES's loop runs it."""
    (shard,) = tes.shards.values()
    (hello,) = said_hello(tes, exchange)
    assert hello == p.Hello(TES_ID, tes.ledger.seen[shard.name], replay=False)
    streamer, context = book.serve(shard.stream_endpoint)
    try:
        answer(tes, exchange, hello)
        assert shard.catch_up is not None, "the TES catches up from the journal stream"
        deadline = time.monotonic() + 10
        while shard.catch_up is not None and time.monotonic() < deadline:
            ready = dict(tes.poller.poll(100))
            tes._catch_up(shard, shard.catch_up.stream.socket in ready, time.monotonic())
        assert shard.ready and not tes.recovering
    finally:
        streamer.close()
        context.destroy(linger=0)


def ledger_state(tes: TradingEngineServer) -> bytes:
    """The TES's ledger (`encode_state`: the kept reports as their msgpack, made in C whether read
    live or in a catch-up), but for the sequences its last prices are as of."""
    return encode_state(msgspec.structs.replace(tes.ledger.state(0, 0), marked={}))


def sent_bytes(frames: list[bytes]) -> dict[int, bytes]:
    """The numbered reports in the client ``frames``, as the msgpack they were sent as, by number."""
    raws = [bytes(raw) for frame in frames for raw in RAW_FRAME.decode(frame)]
    return {report: raw for raw in raws if (report := getattr(msgspec.msgpack.decode(raw, type=p.ClientMessage),
                                                               "report", None))}


def reports(messages) -> dict[int, p.ClientMessage]:
    """The numbered reports among ``messages`` (Structs, or their msgpack), by number."""
    decoded = [msgspec.msgpack.decode(m, type=p.ClientMessage) if type(m) is bytes else m for m in messages]
    return {m.report: m for m in decoded if hasattr(m, "report")}


def the_books_truth(exchange: Exchange, book: BookJournal) -> tuple[dict[int, int], int, int]:
    """What the book server says of the TES's trader: its resting orders (id -> quantity left),
    and from every fill in its journal, the position and the cash."""
    snapshot = exchange.obs.state.feeds[SYMBOL].book.snapshot()
    resting = {int(order["order_id"]): int(order["quantity"])
               for order in np.frombuffer(snapshot.orders, ORDER_DTYPE) if order["order_id"] >> ID_BITS == TES_ID}
    position = cash = 0
    for entry in book.entries():
        for event in entry.events:
            if type(event) is OrderFilled:
                maker_side = Side.SELL if event.aggressor == Side.BUY else Side.BUY
                for order_id, side in ((event.maker_id, maker_side), (event.taker_id, event.aggressor)):
                    if order_id >> ID_BITS == TES_ID:
                        sign = 1 if side == Side.BUY else -1
                        position += sign * event.quantity
                        cash -= sign * event.quantity * event.price
    return resting, position, cash


def the_ledgers_view(tes: TradingEngineServer) -> tuple[dict[int, int], int, int]:
    resting = {order.order_id: order.quantity for order in tes.orders.open_orders(TRADER)}
    portfolio = tes.ledger.portfolios.get(TRADER)
    holding = portfolio.holdings.get(SYMBOL) if portfolio else None
    return resting, holding.quantity if holding else 0, portfolio.cash if portfolio else 0


CRASHES = [(2, True), (5, True), (9, True), (5, False), (None, True), (None, False)]


@pytest.mark.parametrize(("crash_at", "book_ran"), CRASHES)
def test_a_crash_of_the_machine_loses_records_of_commands_the_book_ran_and_they_are_adopted(
        tmp_path, monkeypatch, crash_at, book_ran):
    """The standard workload's first 400 requests in frames of 20, each frame's commands sent before
    the fsync of their records, the book's replies reported in a turn of their own while the syncer
    fsyncs (or leaves it to a later turn). The machine stops when the ``crash_at``-th fsync would
    have ended (None: after the last turn, the fsync never asked); the book server, elsewhere, has
    run what had left (``book_ran``) or not. The restarted TES adopts every command the book
    journaled whose record it lost: every report the client had comes back the same, and its
    ledger agrees with the book."""
    exchange = Exchange(tmp_path / "live", fsync="batch")
    try:
        assert exchange.tes.adopts
        book = BookJournal(tmp_path / "book", monkeypatch)
        done = durable_crash(exchange, monkeypatch, crash_at or 0)
        frames = [ENCODE(frame) for frame in requests(400, 20)]
        sent = exchange.clients.sent
        try:
            played(exchange, frames)
        except Crash:
            assert crash_at is not None
        else:
            assert crash_at is None
        if not book_ran:
            exchange.book.sent.clear()
        exchange.serve_book(time.time_ns())
        durable = done[-1]
        assert exchange.tes.journal.journal.offset > durable, "the crash took records"
        seen = reports(message for frame in sent for message in CLIENT_FRAME.decode(frame))
        assert sorted(seen) == list(range(1, len(seen) + 1))

        tes = recovered(exchange, durable, tmp_path / "restarted")
        try:
            assert tes.recovering and tes.adopts
            greet(tes, exchange, book)
            assert tes.adopted, "commands whose records the crash took were adopted"
            again = reports(tes.ledger.kept[TRADER])
            assert {number: again.get(number) for number in seen} == seen
            kept = {report_number(report): report for report in tes.ledger.kept[TRADER]}
            assert all(kept[number] == raw for number, raw in sent_bytes(sent).items()), "byte for byte"
            assert the_ledgers_view(tes) == the_books_truth(exchange, book)
            taken = {command.client_order_id for frame in exchange.commands_out
                     for command in exchange.commands.decode(frame)}
            beyond = [m for number, m in again.items() if number > max(seen)]
            assert all(m.client_order_id in taken for m in beyond), "no report beyond those of commands that left"
            if not book_ran:
                assert all(m.reason == RejectReason.BOOK_UNAVAILABLE for m in beyond)
        finally:
            tes.close()
    finally:
        exchange.close()


def advanced_requests(price: int, passes: int = 2) -> list[list]:
    """One request per frame, ``passes`` times over: a resting limit, an iceberg, a held stop-limit, a
    GTD and a post-only order; a replace; an order that trades with the iceberg and triggers the
    stop; a cancel; a mass cancel; a last order. Nothing is refused."""
    later = time.time_ns() + 3_600 * 10**9
    frames = []
    for number in range(passes):
        ids, first, at = 9 * number, (TES_ID << ID_BITS) | (7 * number + 1), price + 10 * number
        frames += [[request] for request in (
            p.EnterOrder(ids + 1, SYMBOL, Side.BUY, LIMIT, GTC, at - 5, 10),
            p.EnterOrder(ids + 2, SYMBOL, Side.SELL, LIMIT, GTC, at + 5, 30, display_quantity=10),
            p.EnterOrder(ids + 3, SYMBOL, Side.BUY, OrderType.STOP_LIMIT, GTC, at + 6, 5, stop_price=at + 3),
            p.EnterOrder(ids + 4, SYMBOL, Side.SELL, LIMIT, TimeInForce.GTD, at + 7, 8, expire_at=later),
            p.EnterOrder(ids + 5, SYMBOL, Side.BUY, LIMIT, GTC, at - 4, 4, flags=OrderFlags.POST_ONLY),
            p.ReplaceOrder(ids + 6, first, at - 3, 12),
            p.EnterOrder(ids + 7, SYMBOL, Side.BUY, LIMIT, GTC, at + 5, 12),
            p.CancelOrder(ids + 8, first + 4),
            p.MassCancel(SYMBOL),
            p.EnterOrder(ids + 9, SYMBOL, Side.BUY, LIMIT, GTC, at, 3),
        )]
    return frames


def resting_in_the_book(exchange: Exchange) -> dict[int, int]:
    """The TES's orders the book holds (resting, icebergs whole, held stops), id -> quantity left."""
    book = exchange.obs.state.feeds[SYMBOL].book
    snapshot = book.snapshot()
    ids = [*np.frombuffer(snapshot.orders, ORDER_DTYPE)["order_id"],
           *np.frombuffer(snapshot.held_stops, HELD_DTYPE)["order_id"]]
    return {int(order_id): book.order(int(order_id)).quantity for order_id in ids if order_id >> ID_BITS == TES_ID}


def test_every_kind_of_order_and_request_lost_with_the_crash_is_adopted(tmp_path, monkeypatch):
    """`advanced_requests` twice, each its own turn, every other turn late enough to fsync what
    waited: the machine stops at each fsync in turn, the book server having run every command that
    left. Every report the client was sent comes back the same, the recovered ledger's open orders
    are the book's, quantity for quantity, and its position and cash its fills'; over the crashes,
    orders of every kind, replaces, cancels and a mass cancel's cancels are adopted."""
    adopted, adopt = [], TradingEngineServer._adopt

    def _adopt(tes: TradingEngineServer, command) -> None:
        adopted.append((type(command), getattr(command, "reason", None), getattr(command, "order_type", None)))
        adopt(tes, command)

    monkeypatch.setattr(TradingEngineServer, "_adopt", _adopt)
    for crash_at in range(1, 13):
        directory = tmp_path / str(crash_at)
        exchange = Exchange(directory / "live", fsync="batch")
        try:
            with monkeypatch.context() as patches:
                book = BookJournal(directory / "book", patches)
                done = durable_crash(exchange, patches, crash_at)
                price = exchange.tes.config.instrument(SYMBOL).reference_price
                sent = exchange.clients.sent
                with pytest.raises(Crash):
                    played(exchange, [ENCODE(frame) for frame in advanced_requests(price)])
                exchange.serve_book(time.time_ns())
                assert not any(exchange.tes.rejects.values())
                seen = reports(message for frame in sent for message in CLIENT_FRAME.decode(frame))
                tes = recovered(exchange, done[-1], directory / "restarted")
                whole = recovered(exchange, exchange.tes.journal.journal.offset, directory / "whole")
                try:
                    greet(tes, exchange, book)
                    again = reports(tes.ledger.kept[TRADER])
                    assert {number: again.get(number) for number in seen} == seen, crash_at
                    assert {order.order_id: order.quantity for order in tes.orders.open_orders(TRADER)} == (
                        resting_in_the_book(exchange)), crash_at
                    assert the_ledgers_view(tes)[1:] == the_books_truth(exchange, book)[1:], crash_at
                    greet(whole, exchange, book)
                    assert ledger_state(tes) == ledger_state(whole), crash_at
                finally:
                    tes.close()
                    whole.close()
        finally:
            exchange.close()
    kinds = {kind for kind, _, _ in adopted}
    assert kinds == {p.BookSubmit, p.BookCancel, p.BookReplace}
    assert {order_type for kind, _, order_type in adopted if kind is p.BookSubmit} >= {LIMIT, OrderType.STOP_LIMIT}
    assert CancelReason.MASS_CANCEL in {reason for kind, reason, _ in adopted if kind is p.BookCancel}


def test_a_cancel_lost_with_the_crash_is_adopted_for_an_order_a_fill_closed_before_it(tmp_path, monkeypatch):
    """The trader cancels its resting order as another TES's order fills it: the book fills it,
    then refuses the cancel. The client is sent the fill; the refusal, made in Python, waits for the
    fsync, and the machine stops first, taking the cancel's record. Reading the book's journal the
    TES sees the fill close the order, and still adopts the cancel (closed orders are kept through
    the catch-up: `Ledger.keep_closed`): the fill comes back the same and the refusal is made as it
    waited, so every command the book ran is answered."""
    exchange = Exchange(tmp_path / "live", fsync="batch")
    try:
        book = BookJournal(tmp_path / "book", monkeypatch)
        tes, price = exchange.tes, exchange.tes.config.instrument(SYMBOL).reference_price
        start = time.monotonic()
        exchange.turn(ENCODE([p.EnterOrder(1, SYMBOL, Side.BUY, LIMIT, GTC, price, 10)]), start)
        exchange.turn(None, start + 2 * SYNC_DEFERRED_S)
        exchange.turn(None, start + 2 * SYNC_DEFERRED_S)
        durable = tes.journal.journal.synced_offset
        assert durable == tes.journal.journal.offset, "the order and its acceptance are durable"
        (resting,) = tes.orders.open_orders(TRADER)

        other = p.BookSubmit(SYMBOL, (OTHER_TES << ID_BITS) | 1, Side.SELL, LIMIT, GTC, price, 10, "other")
        outbox, _, _ = OrderBookServer._execute(exchange.obs, [(b"tes-2", other, exchange.obs.state.sequence + 1,
                                                                time.time_ns())])
        fill = p.join_frames(outbox[TES_IDENTITY])
        exchange.turn(ENCODE([p.CancelOrder(2, resting.order_id)]), start + 0.001)
        assert exchange.book.queued, "the cancel left and the book answered"
        exchange.book.queued.extendleft(reversed([[frame] for frame in fill]))
        exchange.turn(None, start + 0.002, synced=False)
        answers = [m for frame in exchange.clients.sent for m in CLIENT_FRAME.decode(frame)]
        assert type(answers[-1]) is p.OrderFilled
        (waited,) = tes.in_flight.outbox[CLIENT]
        assert type(waited) is p.CancelRejected and waited.client_order_id == 2
        assert tes.journal.journal.synced_offset == durable, "the machine stops: the cancel's record is lost"
        seen = reports(answers)

        recovered_tes = recovered(exchange, durable, tmp_path / "restarted")
        try:
            greet(recovered_tes, exchange, book)
            assert recovered_tes.adopted == 1
            again = reports(recovered_tes.ledger.kept[TRADER])
            assert {number: again.get(number) for number in seen} == seen
            assert again[waited.report] == msgspec.structs.replace(waited, time=again[waited.report].time)
            assert max(again) == waited.report
            assert resting.order_id not in recovered_tes.orders.orders, "forgotten once the catch-up ended"
        finally:
            recovered_tes.close()
    finally:
        exchange.close()


def test_a_recovering_tes_whose_book_server_streams_nothing_asks_for_its_kept_replies_instead(
        tmp_path, monkeypatch, caplog):
    """The crash took the journal's last records, the replies after the last order's record; the
    journal stream does not answer (nothing serves it): after `CATCH_UP_STALL_S` the recovering TES
    logs it and says Hello again, asking for the replies the book server keeps, which make those
    reports again: every report the client was sent comes back the same."""
    monkeypatch.setattr(tes_module, "CATCH_UP_STALL_S", 0.2)
    exchange = Exchange(tmp_path / "live", fsync="batch")
    try:
        for frame in requests(100, 20):
            exchange.turn(ENCODE(frame))
            exchange.turn(None, synced=False)
        while exchange.queued():
            exchange.turn(None)
        exchange.tes._settle()
        seen = reports(message for frame in exchange.clients.sent for message in CLIENT_FRAME.decode(frame))
        records = list(read_records(exchange.tes.journal.directory, 0, 0, LEDGER_RECORD))
        last = max(index for index, record in enumerate(records) if type(record.command) in (Entered, Requested))
        assert any(type(record.command) is Received for record in records[last + 1:])
        tes = recovered(exchange, records[last].end, tmp_path / "restarted")
        try:
            (shard,) = tes.shards.values()
            (hello,) = said_hello(tes, exchange)
            assert hello.replay is False
            answer(tes, exchange, hello)
            assert shard.catch_up is not None
            with caplog.at_level(logging.WARNING, logger="tes"):
                while shard.catch_up is not None:
                    ready = dict(tes.poller.poll(50))
                    tes._catch_up(shard, shard.catch_up.stream.socket in ready, time.monotonic())
            assert "asking it for the replies it keeps instead" in caplog.text and tes.recovering
            (hello,) = said_hello(tes, exchange)
            assert hello.replay is True
            answer(tes, exchange, hello)
            assert shard.ready and not tes.recovering and shard.catch_up is None
            again = reports(tes.ledger.kept[TRADER])
            assert {number: again.get(number) for number in seen} == seen
        finally:
            tes.close()
    finally:
        exchange.close()


def test_commands_wait_for_the_fsync_until_the_greeting_is_durable(tmp_path):
    """After a Hello reply the TES's commands wait for the fsync of their records until the greeting
    itself is durable (a crash before it would leave the ledger no sequence to catch up from); then
    they leave before it."""
    exchange = Exchange(tmp_path, fsync="batch")
    try:
        tes, price = exchange.tes, exchange.tes.config.instrument(SYMBOL).reference_price
        tes._greeted(exchange.shard, p.HelloReply(sorted(tes.shard_of), 0, 0))
        exchange.turn(ENCODE([p.EnterOrder(1, SYMBOL, Side.BUY, LIMIT, GTC, price, 10)]), synced=False)
        assert not exchange.book.queued and tes.in_flight is not None and tes.in_flight.commands
        greeting = exchange.shard.greeted_at
        assert tes.in_flight.offset >= greeting > 0
        exchange.turn(None)
        assert exchange.book.queued and tes.journal.journal.synced_offset >= greeting
        exchange.turn(ENCODE([p.EnterOrder(2, SYMBOL, Side.BUY, LIMIT, GTC, price, 10)]), synced=False)
        assert exchange.book.queued and tes.in_flight is None and tes.journal.journal.unsynced_bytes, (
            "it left, and the book answered, before its fsync")
    finally:
        exchange.close()


def alice_trades(exchange) -> list:
    """Alice rests two buys and a sell, then cancels the second buy: the four reports she was sent."""
    alice, had = exchange.client("alice"), []
    for side, price, quantity in ((Side.BUY, 10_000, 10), (Side.BUY, 9_990, 5), (Side.SELL, 10_010, 7)):
        alice.order("ACME", side, price, quantity)
        had += alice.raw_frame(5.0)
    alice.send(p.CancelOrder(alice.next_id, had[1].order_id))
    had += alice.raw_frame(5.0)
    assert [(type(m), m.report) for m in had] == [
        (p.OrderAccepted, 1), (p.OrderAccepted, 2), (p.OrderAccepted, 3), (p.OrderCanceled, 4)]
    alice.socket.close()
    return had


def sent_again_after_adopting(exchange, had: list) -> None:
    """The restarted TES adopts the three commands of ``had`` after the first (its journal lost their
    records) from the book server's stream, and alice, logging on again, is sent ``had``, the same."""
    exchange.tes.wait_for("adopted 3 commands", 10)
    exchange.tes.wait_for("logons are taken", 10)
    again = Client(exchange.context, endpoint(exchange.env, "TES__CLIENT_ENDPOINT"))
    again.send(p.Logon("alice", "alice-demo-key", False, 0))
    got = []
    while len(got) < 1 + len(had):
        frame = again.raw_frame(10.0)
        assert frame, f"got {got}"
        got += frame
    assert isinstance(got[0], p.LogonAccepted) and got[1:] == had


def main_py(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "main.py", *args], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=60)


def test_a_flipped_byte_mid_ledger_journal_stops_the_tes_until_the_journal_is_cut_there(tmp_path):
    """Real processes: a byte flipped in the record of alice's second order, with records after
    it. The TES refuses to start, in one line naming the cut; ``journal check --tes`` reports the
    damage; ``journal cut --tes`` cuts there, and the TES restarted adopts what the cut gave up
    from the book server's journal stream: alice is sent every report she had, the same."""
    exchange = LiveExchange(tmp_path)
    try:
        had = alice_trades(exchange)
        assert exchange.tes.stop() == 0

        directory = Path(exchange.env["EXCHANGE__TES__JOURNAL_DIR"])
        records = list(read_records(directory, 0, 0, LEDGER_RECORD))
        damaged = next(index for index, record in enumerate(records)
                       if type(record.command) is Entered and record.command.client_order_id == had[1].client_order_id)
        offset = records[damaged - 1].end
        data = bytearray((directory / JOURNAL_FILE).read_bytes())
        data[offset + 20] ^= 0x10
        (directory / JOURNAL_FILE).write_bytes(data)

        refused = main_py(exchange.env, "-s", "TES")
        output = refused.stdout + refused.stderr
        assert refused.returncode == 1 and "Traceback" not in output and "READY" not in output, output
        assert f"TES cannot start: journal {directory / JOURNAL_FILE} is damaged at byte {offset}" in output
        assert f"stop the TES and run: python main.py journal cut --tes --at {offset}\n" in output
        checked = main_py(exchange.env, "journal", "check", "--tes")
        assert checked.returncode == 1 and checked.stdout.splitlines()[-2] == "status: damaged", checked.stdout
        report = json.loads(checked.stdout.splitlines()[-1])
        assert (report["tes"], report["damage"]["offset"], report["last_sequence"]) == (1, offset, damaged)
        assert (directory / JOURNAL_FILE).read_bytes() == data, "nothing was changed"

        done = main_py(exchange.env, "journal", "cut", "--tes", "--at", str(offset))
        assert done.returncode == 0, done.stderr
        summary = json.loads(done.stdout.splitlines()[-1])
        assert (summary["tes"], summary["last_sequence"], summary["bytes"]) == (1, damaged, len(data) - offset)
        assert (directory / f"{JOURNAL_FILE}.cut-{offset}").read_bytes() == data[offset:]

        exchange.start_tes()
        sent_again_after_adopting(exchange, had)
    finally:
        exchange.close()


def test_a_tes_killed_and_its_journal_cut_back_adopts_from_the_book_servers_stream(tmp_path):
    """Real processes, CURVE on: the TES is killed and its journal cut back to before the record
    of alice's second order, as a crash of its machine could leave it; restarted, it asks the OBS
    for no replay, reads its journal stream, adopts the two orders and the cancel it lost, and
    alice, logging on again, is sent every report she had, the same."""
    exchange = LiveExchange(tmp_path)
    try:
        had = alice_trades(exchange)
        second = had[1]
        exchange.tes.process.send_signal(signal.SIGKILL)
        exchange.tes.process.wait(10)

        directory = Path(exchange.env["EXCHANGE__TES__JOURNAL_DIR"])
        records = list(read_records(directory, 0, 0, LEDGER_RECORD))
        cut = next(index for index, record in enumerate(records)
                   if type(record.command) is Entered and record.command.client_order_id == second.client_order_id)
        assert any(type(record.command) is Requested for record in records[cut:])
        os.truncate(directory / JOURNAL_FILE, records[cut - 1].end)

        exchange.start_tes()
        sent_again_after_adopting(exchange, had)
    finally:
        exchange.close()
