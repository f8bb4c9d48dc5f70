"""The TES's ledger and its journal (`servers.ledger`): a snapshot plus the journal after it
rebuilds exactly the ledger that the whole journal does, and exactly the live one.

A market is simulated in process: the orders of three traders go to a `ReferenceBook`, whose
events come back as the frames a book server sends (`Received`), mixed with the TES's own
refusals, cancel requests and delivered reports, so every part of the ledger's state (orders
open and closed, portfolios, client order ids, numbered and kept reports, last prices and
sequences) is exercised. Among the orders are the advanced ones (stops held and triggered,
icebergs, post-only, GTD orders expired by clock commands) and alice and bob share an account,
so self-trade prevention cancels and decrements their orders.
"""

import logging
import random
import shutil
import zlib
from collections import deque

import msgspec
import pytest

from config.settings import JournalConfig, TesConfig
from engine.book import ReferenceBook
from engine.types import CancelReason, OrderType, RejectReason, SelfTradePrevention, Side, TimeInForce
from native.routed import DEFAULTS, FIELDS
from servers import protocol as p
from servers.journal import JOURNAL_FILE, RecoveryError, read_discarded
from servers.journal_admin import check, tes_journal
from servers.ledger import (
    CANCEL,
    ID_BITS,
    SNAPSHOT_HEADER,
    SNAPSHOT_MAGIC,
    SUBMISSION,
    Delivered,
    Entered,
    Greeted,
    Ledger,
    LedgerJournal,
    LedgerState,
    Marked,
    OrderRow,
    Received,
    Refused,
    Requested,
    _LedgerStateV1,
    _OrderRowV1,
    encode_orders,
    encode_state,
    read_ledger_snapshot,
)
from servers.orders import Order, Request

TES_ID = 3
SHARDS = {"A": ["ACME"]}
TRADERS = ("alice", "bob", "carol")
OWNERS = {"alice": p.owner_of("desk"), "bob": p.owner_of("desk"), "carol": p.owner_of("carol")}
REPLIES = msgspec.msgpack.Encoder()


class Market:
    """Feeds a ledger (and its journal) the records of a random trading session on ACME."""

    def __init__(self, ledger: Ledger, journal: LedgerJournal | None, seed: int) -> None:
        self.ledger, self.journal = ledger, journal
        self.book = ReferenceBook()
        self.random = random.Random(seed)
        self.sequence = 0
        self.time = 1_700_000_000_000_000_000

    def record(self, record) -> list:
        reports, _ = self.ledger.apply(record)
        if self.journal is not None:
            self.journal.add(record)
            assert self.journal.write()
        return reports

    def step(self) -> None:
        rng, ledger = self.random, self.ledger
        trader = rng.choice(TRADERS)
        self.time += rng.randrange(1, 10**6)
        action = rng.random()
        client_order_id = ledger.ids(trader).next()
        open_orders = list(ledger.orders.open.get(trader, {}))
        if action < 0.1:
            self.record(Refused(trader, SUBMISSION, client_order_id, 0, RejectReason.PRICE_OUTSIDE_BAND,
                                "price outside the band", self.time))
        elif action < 0.25 and open_orders:
            order_id = rng.choice(open_orders)
            self.record(Requested(trader, order_id, True, client_order_id, CancelReason.REQUESTED))
            self.executed(self.book.cancel(order_id))
        elif action < 0.3 and open_orders:
            self.record(Refused(trader, CANCEL, client_order_id, rng.choice(open_orders),
                                RejectReason.UNKNOWN_ORDER, "no such order", self.time))
        elif action < 0.35:
            self.record(Delivered(trader, ledger.numbers.get(trader, 0)))
        elif action < 0.38:
            self.executed(self.book.set_clock(self.time))
        elif action < 0.55:
            self.advanced(trader, client_order_id)
        else:
            side = rng.choice((Side.BUY, Side.SELL))
            tif = rng.choice((TimeInForce.GTC, TimeInForce.GTC, TimeInForce.IOC, TimeInForce.DAY))
            price, quantity = rng.randrange(95, 106), rng.randrange(1, 30)
            order_id = ledger.next_order_id()
            self.record(Entered(trader, client_order_id, order_id, "ACME", side, OrderType.LIMIT, tif, price,
                                quantity))
            self.executed(self.book.submit(order_id, side, OrderType.LIMIT, tif, price, quantity))

    def advanced(self, trader: str, client_order_id: int) -> None:
        """An order of the advanced kinds: a stop or stop-limit (some GTD), an iceberg, a post-only
        or GTD limit order, each with a self-trade prevention mode."""
        rng, order_id = self.random, self.ledger.next_order_id()
        side = rng.choice((Side.BUY, Side.SELL))
        price, quantity = rng.randrange(95, 106), rng.randrange(1, 30)
        order_type, tif, fields = OrderType.LIMIT, TimeInForce.GTC, {}
        match rng.randrange(4):
            case 0:
                order_type = rng.choice((OrderType.STOP, OrderType.STOP_LIMIT))
                price = 0 if order_type == OrderType.STOP else price
                fields["stop_price"] = rng.randrange(95, 106)
            case 1:
                fields["display_quantity"] = rng.randrange(1, quantity + 1)
            case 2:
                fields["flags"] = 1
        if order_type != OrderType.STOP and rng.random() < 0.4:
            tif, fields["expire_at"] = TimeInForce.GTD, self.time + rng.randrange(10**6, 10**8)
        fields["stp"] = rng.choice(list(SelfTradePrevention))
        self.record(Entered(trader, client_order_id, order_id, "ACME", side, order_type, tif, price, quantity,
                            **fields))
        self.executed(self.book.submit(order_id, side, order_type, tif, price, quantity, owner=OWNERS[trader],
                                       **fields))

    def executed(self, events: list) -> None:
        self.sequence += 1
        frame = REPLIES.encode([p.Executed(self.sequence, "ACME", events, self.time)])
        self.record(Received("A", frame, self.time))


def ledger_state(ledger: Ledger) -> bytes:
    """The ledger's whole state, encoded (so that equal ledgers compare equal)."""
    return encode_state(ledger.state(0, 0))


def open_journal(directory, snapshot_every: int) -> tuple[Ledger, LedgerJournal]:
    ledger = Ledger(TES_ID, SHARDS)
    return ledger, LedgerJournal(directory, JournalConfig(fsync="never", snapshot_every=snapshot_every), ledger)


def trade(directory, steps: int, snapshot_every: int, seed: int = 7) -> Ledger:
    """Run ``steps`` of a session into a new ledger journal in ``directory``, waiting for each
    snapshot before going on (so which snapshots exist does not depend on the writer thread)."""
    ledger, journal = open_journal(directory, snapshot_every)
    market = Market(ledger, journal, seed)
    for _ in range(steps):
        market.step()
        if journal._written is not None:
            journal._written.result()
    journal.close()
    return ledger


def test_the_simulated_session_exercises_every_part_of_the_ledger(tmp_path):
    ledger = trade(tmp_path, 600, 10**9)
    assert ledger.counter > 300 and any(ledger.orders.open.values()), "closed orders leave the registry"
    assert all(ledger.portfolio(trader).holdings for trader in TRADERS)
    assert ledger.last_prices["ACME"] and ledger.last_sequence["ACME"] > 100
    assert all(ledger.numbers[trader] > 50 and ledger.delivered.get(trader) for trader in TRADERS)
    assert not list(tmp_path.glob("ledger-*.msgpack")), "no snapshot was due"
    decode = msgspec.msgpack.Decoder(p.ClientMessage).decode   # the reports made in C are kept encoded
    reported = [decode(report) if type(report) is bytes else report for kept in ledger.kept.values() for report in kept]
    assert {p.StopTriggered, p.OrderDecremented, p.OrderExpired} <= {type(report) for report in reported}
    assert CancelReason.SELF_TRADE in {report.reason for report in reported if type(report) is p.OrderCanceled}
    held = [order for orders in ledger.orders.open.values() for order in orders.values() if order.held]
    assert held and all(order.order_type in (OrderType.STOP, OrderType.STOP_LIMIT) for order in held)


def test_a_ledger_replayed_from_its_journal_equals_the_live_one(tmp_path):
    live = trade(tmp_path, 600, 10**9)
    recovered, journal = open_journal(tmp_path, 10**9)
    journal.close()
    assert ledger_state(recovered) == ledger_state(live)
    assert recovered.next_order_id() == live.next_order_id()


def test_snapshot_and_tail_rebuild_the_ledger_the_whole_journal_does(tmp_path):
    live = trade(tmp_path, 600, 700)  # one snapshot, near the middle: nothing is discarded
    assert len(list(tmp_path.glob("ledger-*.msgpack"))) == 1 and read_discarded(tmp_path) == 0
    whole = tmp_path / "whole"
    shutil.copytree(tmp_path, whole, ignore=shutil.ignore_patterns("ledger-*", "whole"))

    from_snapshot, journal = open_journal(tmp_path, 700)
    journal.close()
    from_journal, journal = open_journal(whole, 700)
    journal.close()
    assert ledger_state(from_snapshot) == ledger_state(from_journal) == ledger_state(live)


def test_snapshots_let_the_journal_be_discarded_and_recovery_go_on_from_them(tmp_path):
    live = trade(tmp_path, 900, 200)
    snapshots = sorted(tmp_path.glob("ledger-*.msgpack"))
    assert len(snapshots) == 2, "the newest two are kept"
    assert read_discarded(tmp_path) > 0, "the journal before the older kept snapshot was discarded"

    recovered, journal = open_journal(tmp_path, 200)
    journal.close()
    assert ledger_state(recovered) == ledger_state(live)


def test_a_damaged_newest_snapshot_is_skipped_for_the_older_one(tmp_path, caplog):
    live = trade(tmp_path, 900, 200)
    newest = max(tmp_path.glob("ledger-*.msgpack"), key=lambda path: int(path.stem.split("-")[1]))
    data = bytearray(newest.read_bytes())
    data[len(data) // 2] ^= 0x20
    newest.write_bytes(bytes(data))

    recovered, journal = open_journal(tmp_path, 200)
    journal.close()
    assert ledger_state(recovered) == ledger_state(live)
    assert f"skipping ledger snapshot {newest}: its length or CRC does not match" in caplog.text


def test_a_snapshot_past_the_journals_end_is_skipped_as_journal_check_says(tmp_path, caplog):
    """A journal that lost its tail (cut short under the TES) ends before the newest snapshot's
    offset: recovery skips that snapshot for the older one and the records the journal still
    holds, as a book server does, and as `journal check --tes` reports."""
    trade(tmp_path, 900, 200)
    older, newest = sorted(tmp_path.glob("ledger-*.msgpack"), key=lambda path: int(path.stem.split("-")[1]))
    older_state, newest_state = read_ledger_snapshot(older), read_ledger_snapshot(newest)
    with open(tmp_path / JOURNAL_FILE, "r+b") as file:
        file.truncate(newest_state.journal_offset - 1)
    expected = tmp_path / "expected"
    shutil.copytree(tmp_path, expected, ignore=shutil.ignore_patterns(newest.name, "expected"))
    _, summary = check(tes_journal(TesConfig("tcp://127.0.0.1:1", journal_dir=str(tmp_path))))
    assert summary["recovery"] == {"snapshot": older_state.sequence, "refuses": None}

    recovered, journal = open_journal(tmp_path, 10**9)
    journal.close()
    assert f"skipping ledger snapshot {newest}: the journal ends (byte {newest_state.journal_offset - 1}) before " \
        f"its offset {newest_state.journal_offset}" in caplog.text
    replayed, journal = open_journal(expected, 10**9)
    journal.close()
    assert ledger_state(recovered) == ledger_state(replayed)
    assert older_state.sequence < journal.sequence < newest_state.sequence, "the older snapshot and records after it"


def test_recovery_continues_the_journal_and_a_second_recovery_sees_both_parts(tmp_path):
    first = trade(tmp_path, 300, 200, seed=1)
    ledger, journal = open_journal(tmp_path, 200)
    assert ledger_state(ledger) == ledger_state(first)
    market = Market(ledger, journal, seed=2)
    market.book = None  # the resting orders of the first part are not in a new book: only add
    for _ in range(200):
        trader = market.random.choice(TRADERS)
        market.record(Refused(trader, SUBMISSION, ledger.ids(trader).next(), 0, RejectReason.INVALID_QUANTITY,
                              "quantity must be positive", 5))
    journal.close()

    again, journal = open_journal(tmp_path, 200)
    journal.close()
    assert ledger_state(again) == ledger_state(ledger)
    assert sum(again.numbers.values()) == sum(first.numbers.values()) + 200


def test_a_snapshot_row_has_the_fields_of_an_order_in_its_order():
    """A snapshot writes each live order as its row (`encode_orders`, `Order.row`) and reads them
    as `OrderRow`s: the same fields in the same order, with the same defaults."""
    assert OrderRow.__struct_fields__ == FIELDS
    assert OrderRow.__struct_defaults__ == DEFAULTS
    order = Order(7, "alice", 3, "ACME", Side.BUY, OrderType.LIMIT, TimeInForce.GTC, 100, 5, filled=2, notional=200)
    order.requests = deque([Request(True, 4, CancelReason.REQUESTED)])
    row = msgspec.msgpack.decode(encode_orders([order]), type=list[OrderRow])[0]
    assert row == OrderRow(*order.row()) and row.requests == [(True, 4, CancelReason.REQUESTED)]
    assert Order(*msgspec.structs.astuple(row)[:-1]) == Order(*order.row()[:-1]), "read back, the same order"


def test_requests_in_flight_survive_a_snapshot(tmp_path):
    ledger = Ledger(TES_ID, SHARDS)
    order_id = (TES_ID << ID_BITS) | 1
    ledger.apply(Entered("alice", 1, order_id, "ACME", Side.BUY, OrderType.LIMIT, TimeInForce.GTC, 100, 5))
    ledger.apply(Requested("alice", order_id, False, 2, CancelReason.REQUESTED))
    ledger.apply(Requested("alice", order_id, True, 0, CancelReason.MASS_CANCEL))

    payload = encode_state(ledger.state(9, 0))
    restored = Ledger(TES_ID, SHARDS)
    restored.restore(msgspec.msgpack.decode(payload, type=LedgerState))

    assert encode_state(restored.state(9, 0)) == payload
    requests = restored.orders.orders[order_id].requests
    assert [(r.cancel, r.client_order_id, r.reason) for r in requests] == [
        (False, 2, CancelReason.REQUESTED), (True, 0, CancelReason.MASS_CANCEL)]
    assert all(type(request) is Request for request in requests)


def version_1_snapshot(directory, ledger: Ledger, sequence: int, offset: int) -> None:
    """Write ``ledger`` as a snapshot of version 1 would have it (order rows in that version's order)."""
    state = ledger.state(sequence, offset)
    rows = [_OrderRowV1(o.order_id, o.trader_id, o.client_order_id, o.symbol, o.side, o.order_type, o.time_in_force,
                        o.price, o.quantity, o.filled, o.notional, o.state,
                        [(r.cancel, r.client_order_id, r.reason) for r in o.requests or ()], o.stop_price,
                        o.display_quantity, o.flags, o.stp, o.expire_at, o.held)
            for o in ledger.orders.orders.values()]
    payload = encode_state(_LedgerStateV1(state.sequence, state.journal_offset, state.counter, state.seen,
                                          state.last_prices, state.last_sequence, rows, state.traders, state.marked))
    header = SNAPSHOT_HEADER.pack(SNAPSHOT_MAGIC, 1, len(payload), zlib.crc32(payload))
    (directory / f"ledger-{sequence}.msgpack").write_bytes(header + payload)


def test_a_snapshot_of_version_1_is_read_and_upgraded(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    ledger, journal = open_journal(tmp_path, 10**9)
    market = Market(ledger, journal, seed=5)
    for _ in range(400):
        market.step()
    journal.close()
    assert any(ledger.orders.open.values())
    version_1_snapshot(tmp_path, ledger, journal.sequence, journal.journal.offset)

    recovered, journal = open_journal(tmp_path, 10**9)
    journal.close()
    assert ledger_state(recovered) == ledger_state(ledger)
    assert f"ledger recovered at journal record {journal.sequence} (0 replayed after the snapshot" in caplog.text


def test_a_journal_discarded_past_every_snapshot_is_refused(tmp_path):
    trade(tmp_path, 900, 200)
    for snapshot in tmp_path.glob("ledger-*.msgpack"):
        snapshot.unlink()
    with pytest.raises(RecoveryError, match="was discarded and no readable snapshot"):
        open_journal(tmp_path, 200)


def test_last_prices_keep_the_newest_sequence_whatever_the_order_news_arrives_in():
    ledger = Ledger(TES_ID, SHARDS)
    ledger.apply(Marked("ACME", 10, 101))
    ledger.apply(Marked("ACME", 8, 99))  # older: ignored
    assert ledger.last_prices == {"ACME": 101}
    ledger.apply(Greeted("A", ["ACME"], 0, 12, True, 0, {"ACME": 103}))
    assert (ledger.last_prices, ledger.marked) == ({"ACME": 103}, {"ACME": 12})
    # An own fill as of an older sequence (a reply sent again) does not move the price back.
    book = ReferenceBook()
    book.submit(1, Side.SELL, OrderType.LIMIT, TimeInForce.GTC, 100, 1)
    fill = book.submit(2, Side.BUY, OrderType.LIMIT, TimeInForce.GTC, 100, 1)
    ledger.apply(Received("A", REPLIES.encode([p.Executed(11, "ACME", fill, 0)]), 0))
    assert ledger.last_prices == {"ACME": 103}
    ledger.apply(Marked("ACME", 13, 104))
    assert ledger.last_prices == {"ACME": 104}
    ledger.apply(Received("A", REPLIES.encode([p.Executed(14, "ACME", fill, 0)]), 0))
    assert (ledger.last_prices, ledger.marked) == ({"ACME": 100}, {"ACME": 14})


def test_a_trader_numbering_every_request_from_one_counter_keeps_its_ids_in_order(tmp_path):
    """The client library numbers orders, cancels and replaces from one counter: the requests'
    ids are used up too (refused ones as a refused order's would be), so the trader's ids stay
    one counter and never run into the out-of-order bound. Recovery rebuilds the same."""
    ledger, journal = open_journal(tmp_path, 10**9)
    market = Market(ledger, journal, seed=1)
    ids = ledger.ids("alice")
    market.record(Entered("alice", 1, ledger.next_order_id(), "ACME", Side.BUY, OrderType.LIMIT, TimeInForce.GTC,
                          100, 5))
    order_id = ledger.next_order_id() - 1
    market.record(Requested("alice", order_id, False, 2, CancelReason.REQUESTED))
    market.record(Refused("alice", CANCEL, 3, 999, RejectReason.UNKNOWN_ORDER, "no such order", 0))
    market.record(Requested("alice", order_id, True, 4, CancelReason.REQUESTED))
    market.record(Entered("alice", 5, ledger.next_order_id(), "ACME", Side.BUY, OrderType.LIMIT, TimeInForce.GTC,
                          100, 5))
    assert (ids.contiguous, ids.others, ids.next()) == (5, set(), 6)
    # Refused for its rate (its id not checked), or sent on the trader's behalf: no id of the trader's used.
    market.record(Refused("alice", CANCEL, 6, order_id, RejectReason.MESSAGE_RATE_LIMIT, "too fast", 0))
    market.record(Requested("alice", order_id, True, 1, CancelReason.DISCONNECTED))
    assert (ids.contiguous, ids.others) == (5, set())
    journal.close()
    recovered, again = open_journal(tmp_path, 10**9)
    again.close()
    assert ledger_state(recovered) == ledger_state(ledger)


def test_a_ledger_beyond_64_bits_is_not_snapshotted_says_so_and_recovers_from_its_journal(tmp_path, caplog):
    """Three fills of 2**31 - 1 lots at 2**31 - 1 take a buyer's cash past -2**63, which Python's
    ints hold and msgpack cannot: the snapshot due is not written and the error is logged (it used
    to vanish in the writer thread's future), and the journal alone rebuilds the same ledger."""
    from engine import messages as book
    big = 2**31 - 1
    order_id = (TES_ID << 48) | 1
    ledger, journal = open_journal(tmp_path, 5)
    records = [Entered("alice", 1, order_id, "ACME", Side.BUY, OrderType.LIMIT, TimeInForce.GTC, big, 3 * big)]
    events = [[book.OrderAccepted(order_id, Side.BUY, OrderType.LIMIT, TimeInForce.GTC, big, 3 * big)]]
    events += [[book.OrderFilled(order_id, 99, big, big, 3 * big - n * big, 0, Side.SELL, n)] for n in range(1, 4)]
    for sequence, made in enumerate(events, 1):
        records.append(Received("A", REPLIES.encode([p.Executed(sequence, "ACME", made, sequence)]), sequence))
    for record in records:
        ledger.apply(record)
        journal.add(record)
        assert journal.write()
        if journal._written is not None:
            journal._written.result()
    journal.close()
    cash = ledger.portfolio("alice").cash
    assert cash == -3 * big * big < -(2**63)
    assert "ledger snapshot at record 5 not written" in caplog.text and "beyond 64 bits" in caplog.text
    assert not list(tmp_path.glob("ledger-*.msgpack"))
    recovered, journal = open_journal(tmp_path, 5)
    journal.close()
    assert recovered.portfolio("alice").cash == cash
    assert recovered.portfolio("alice").holdings["ACME"].quantity == 3 * big
