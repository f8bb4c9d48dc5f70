"""The native book's record API: ``record_*`` commands append C event records to the book's event
log, ``take_events`` hands it over as an EVENT_DTYPE array, `events_from_records` turns records back
into event Structs, and `engine.replay.replay_rows_records` (`replay_rows_v2_records`) replays a
version-1 (version-2) stream through it.

The record API must do exactly what the classic methods do: on random sessions (the differential
tests' strategies, both command spaces) a twin book driven by record_* calls gives, command by
command, records whose Structs equal the classic events, and the same state."""

import numpy as np
import pytest
from hypothesis import given, note, settings
from hypothesis import strategies as st
from test_differential import random_session, random_v2_session

from engine import workload
from engine.advanced_workload import advanced
from engine.messages import CancelOrder, ExpireDayOrders, ReplaceOrder, SetClock, SetPhase, SubmitOrder
from engine.replay import (
    apply_row_v2,
    replay_rows,
    replay_rows_records,
    replay_rows_v2,
    replay_rows_v2_records,
    send_row_v2,
)
from engine.stream import EVENT_DTYPE, STREAM_DTYPE, EventKind
from engine.types import OrderType, Phase, RejectReason, Side, TimeInForce
from native import book as native_book
from native.book import NativeBook, events_from_records

BUY, SELL = Side.BUY, Side.SELL
LIMIT, GTC = OrderType.LIMIT, TimeInForce.GTC
OUT = (2**63, -(2**63) - 1, 2**64 + 5)
RANGE = int(RejectReason.VALUE_OUT_OF_RANGE)
REJECT_KINDS = (EventKind.REJECTED, EventKind.CANCEL_REJECTED, EventKind.REPLACE_REJECTED,
                EventKind.COMMAND_REJECTED)


def record_directly(book, command) -> int:
    """The record_* call of ``command`` (`direct.call_directly`'s twin); its count of records."""
    match command:
        case SubmitOrder(order_id, side, order_type, tif, price, quantity):
            return book.record_submit(order_id, side, order_type, tif, price, quantity, command.stop_price,
                                      command.display_quantity, command.flags, command.owner, command.stp,
                                      command.expire_at)
        case CancelOrder(order_id):
            return book.record_cancel(order_id)
        case ReplaceOrder(order_id, price, quantity):
            return book.record_replace(order_id, price, quantity)
        case ExpireDayOrders():
            return book.record_expire_day_orders()
        case SetClock():
            return book.record_set_clock(command.time)
        case SetPhase():
            return book.record_set_phase(command.phase)
    raise TypeError(f"not a book command: {command!r}")


def assert_one_reject_or_none(records):
    """A command's records: a reject is its only record, else there is none."""
    rejects = np.isin(records["kind"], REJECT_KINDS)
    assert not rejects.any() or (len(records) == 1), records


def twin_session(session, data):
    """Drive a classic native book with ``session``'s random commands and a twin with the same
    commands through the record API; check each command's records against the classic events, the
    log taken after every command or once at the end (then cut by the counts returned)."""
    classic, recorded = NativeBook(), NativeBook()
    take_each = data.draw(st.booleans(), label="take after each command")
    expected, counts = [], []

    def compare(command, events):
        count = record_directly(recorded, command)
        assert count == len(events), command
        if take_each:
            records = recorded.take_events()
            assert len(records) == count
            assert_one_reject_or_none(records)
            actual = events_from_records(records)
            assert actual == events, command
            assert list(map(repr, actual)) == list(map(repr, events)), command
        else:
            expected.append(events)
            counts.append(count)
        assert recorded.state_hash() == classic.state_hash(), command

    session(data, classic, compare)
    records = recorded.take_events()
    assert len(records) == sum(counts)
    for events, end in zip(expected, np.cumsum(counts), strict=True):
        part = records[end - len(events) : end]
        note(f"{events!r}")
        assert_one_reject_or_none(part)
        actual = events_from_records(part)
        assert actual == events
        assert list(map(repr, actual)) == list(map(repr, events))
    assert len(recorded.take_events()) == 0
    assert recorded.snapshot() == classic.snapshot()
    assert recorded.state_hash() == classic.state_hash()
    recorded.check_invariants()


# ------------------------------------------------------------------ record API = classic API


TWIN_SETTINGS = settings(max_examples=60, deadline=None)
"""Record API against the classic API on twin native books: the classic API is held to the
reference book by test_differential's 200 sessions, so fewer sessions suffice here."""


@TWIN_SETTINGS
@given(data=st.data())
def test_records_of_random_commands_give_the_classic_events_and_state(data):
    twin_session(random_session, data)


@TWIN_SETTINGS
@given(data=st.data())
def test_records_of_random_advanced_commands_give_the_classic_events_and_state(data):
    twin_session(random_v2_session, data)


def test_records_of_an_advanced_workload_give_the_classic_events_and_state():
    """A whole generated v2 stream (stops, icebergs, prevention, GTD, phases), row by row."""
    classic, recorded = NativeBook(), NativeBook()
    methods = (recorded.record_submit, recorded.record_cancel, recorded.record_replace, recorded.record_set_phase,
               recorded.record_set_clock)
    events, counts = [], []
    for row in advanced(20_000, 3).tolist():
        row_events = apply_row_v2(classic, row)
        count = send_row_v2(row, *methods)
        assert (count is None) == (row_events is None), row
        if row_events is not None:
            assert count == len(row_events), row
            events.extend(row_events)
            counts.append(count)
    records = recorded.take_events()
    assert sum(counts) == len(records) == len(events)
    assert events_from_records(records) == events
    assert recorded.state_hash() == classic.state_hash()
    kinds = set(records["kind"].tolist())
    assert {EventKind.TRIGGERED, EventKind.DECREMENTED, EventKind.PHASE, EventKind.UNCROSSED} <= kinds


# ------------------------------------------------------------------ integers beyond int64


def seeded(book):
    book.record_submit(1, BUY, LIMIT, GTC, 99, 10)
    book.record_submit(2, SELL, LIMIT, GTC, 101, 10)
    book.take_events()


def only_record(book) -> tuple:
    records = book.take_events()
    assert len(records) == 1
    return records[0].item()


def reject_record(kind, order_id=0) -> tuple:
    """A VALUE_OUT_OF_RANGE reject's record as a tuple: its kind, order id and code, every other field 0."""
    record = np.zeros((), dtype=EVENT_DTYPE)
    record["kind"], record["order_id"], record["code"] = kind, order_id, RANGE
    return record.item()


@pytest.mark.parametrize("value", OUT)
@pytest.mark.parametrize("field", range(12))
def test_a_submit_beyond_int64_records_the_classic_reject(field, value):
    classic, recorded = NativeBook(), NativeBook()
    seeded(recorded)
    classic.submit(1, BUY, LIMIT, GTC, 99, 10)
    classic.submit(2, SELL, LIMIT, GTC, 101, 10)
    before = recorded.snapshot()
    args = [7, BUY, LIMIT, GTC, 100, 10, 0, 0, 0, 0, 0, 0]
    args[field] = value
    expected = classic.submit(*args[:6], stop_price=args[6], display_quantity=args[7], flags=args[8],
                              owner=args[9], stp=args[10], expire_at=args[11])
    assert recorded.record_submit(*args) == 1
    record = only_record(recorded)
    assert record == reject_record(EventKind.REJECTED, 0 if field == 0 else 7)
    if field:
        assert events_from_records(np.array([record], dtype=EVENT_DTYPE)) == expected
    assert recorded.snapshot() == before == classic.snapshot()


@pytest.mark.parametrize("value", OUT)
@pytest.mark.parametrize("field", range(3))
def test_a_replace_or_cancel_beyond_int64_records_the_classic_reject(field, value):
    book = NativeBook()
    seeded(book)
    before = book.snapshot()
    args = [1, 101, 5]
    args[field] = value
    assert book.record_replace(*args) == 1
    assert only_record(book) == reject_record(EventKind.REPLACE_REJECTED, 0 if field == 0 else 1)
    if field == 0:
        assert book.record_cancel(value) == 1
        assert only_record(book) == reject_record(EventKind.CANCEL_REJECTED)
    assert book.snapshot() == before


@pytest.mark.parametrize("value", OUT)
def test_a_clock_or_phase_beyond_int64_records_a_command_reject(value):
    book = NativeBook()
    assert (book.record_set_clock(value), book.record_set_phase(value)) == (1, 1)
    records = book.take_events()
    assert records.tolist() == [reject_record(EventKind.COMMAND_REJECTED)] * 2
    assert events_from_records(records) == NativeBook().set_clock(value) + NativeBook().set_phase(value)


def test_arguments_are_read_as_the_classic_methods_read_them():
    """Enums, bools and NumPy integers are ints; a float or a string is refused with TypeError, even
    beside an integer beyond int64 (every argument is read)."""
    book = NativeBook()
    assert book.record_submit(np.int64(1), True, LIMIT, np.uint8(0), 100, 5) == 1
    assert events_from_records(book.take_events()) == NativeBook().submit(1, SELL, LIMIT, GTC, 100, 5)
    for args in ([2, BUY, LIMIT, GTC, 100.0, 5], [2**63, BUY, LIMIT, GTC, 100, "5"]):
        with pytest.raises(TypeError):
            NativeBook().submit(*args)
        with pytest.raises(TypeError):
            book.record_submit(*args)
    with pytest.raises(TypeError):
        book.record_replace(1, 2**63, 5.0)
    with pytest.raises(TypeError):
        book.record_cancel(1.0)
    assert len(book.take_events()) == 0


# ------------------------------------------------------------------ the log


def test_an_empty_log_gives_an_empty_event_array():
    records = NativeBook().take_events()
    assert records.dtype == EVENT_DTYPE and records.shape == (0,)
    assert events_from_records(records) == []
    assert native_book.EVENT_DTYPE is EVENT_DTYPE and EVENT_DTYPE.itemsize == 64


def test_take_events_empties_the_log_and_records_survive_until_taken():
    book = NativeBook()
    for i in range(1, 1_001):
        assert book.record_submit(i, BUY, LIMIT, GTC, 100 - i % 7, 3) == 1
    assert book.record_submit(5_000, SELL, OrderType.MARKET, TimeInForce.IOC, 0, 2_500) == 1 + 834
    records = book.take_events()
    assert len(records) == 1_001 + 834
    assert records["order_id"][:1_000].tolist() == list(range(1, 1_001))
    fills = records[records["kind"] == EventKind.FILLED]
    assert fills["sequence"].tolist() == list(range(1, 835)) and fills["quantity"].sum() == 2_500
    assert len(book.take_events()) == 0
    assert book.record_cancel(6) == 1   # at 94, untouched by the market order
    assert book.take_events()["kind"].tolist() == [EventKind.CANCELED]


def test_the_classic_methods_and_the_batch_replay_leave_the_log_alone():
    book = NativeBook()
    book.record_submit(1, BUY, LIMIT, GTC, 100, 5)
    book.submit(2, SELL, LIMIT, GTC, 100, 2)
    book.replay(np.zeros(0, dtype=STREAM_DTYPE))
    assert book.take_events()["kind"].tolist() == [EventKind.ACCEPTED]


@pytest.mark.parametrize("orders", [100, 100_000])
def test_a_taken_log_outlives_the_book_and_a_large_one_leaves_with_its_memory(orders):
    """Up to 65,536 records are copied out (the buffer kept), more are handed over uncopied."""
    book = NativeBook()
    for i in range(1, orders + 1):
        book.record_submit(i, BUY, LIMIT, GTC, 100, 1)
    holding = book.memory_bytes()
    records = book.take_events()
    assert (book.memory_bytes() <= holding - orders * 64) == (orders > 65_536)
    del book
    assert records.flags.writeable and records["order_id"].tolist() == list(range(1, orders + 1))
    records["price"] += 1
    assert (records["price"] == 101).all() and (records["kind"] == EventKind.ACCEPTED).all()


def test_a_book_records_on_after_handing_its_log_over():
    book = NativeBook()
    for i in range(1, 70_001):
        book.record_submit(i, BUY, LIMIT, GTC, 100, 1)
    first = book.take_events()
    assert book.record_submit(70_001, SELL, LIMIT, GTC, 100, 70_001) == 1 + 70_000
    second = book.take_events()
    assert (len(first), len(second)) == (70_000, 70_001)
    assert first["order_id"].tolist() == list(range(1, 70_001))
    assert second["other_id"][1:].tolist() == [70_001] * 70_000


def test_an_uncross_of_many_events_is_recorded_as_the_classic_call_makes_them_and_the_book_records_on():
    """An uncross of 71,843 events into an empty log: the event buffer and the log trade places
    rather than copy (`_record`); the records give the classic events, and later commands record
    after them as usual."""
    from benchmarks.book import call_book

    stream = call_book(100_000)
    recorded, classic = NativeBook(), NativeBook()
    recorded.replay(stream)
    classic.replay(stream)
    assert recorded.record_set_phase(Phase.CONTINUOUS) == 71_843
    assert recorded.record_cancel(10**9) == 1
    expected = classic.set_phase(Phase.CONTINUOUS) + classic.cancel(10**9)
    assert events_from_records(recorded.take_events()) == expected
    assert recorded.record_cancel(10**9 + 1) == 1 and len(recorded.take_events()) == 1
    assert recorded.state_hash() == classic.state_hash()


@pytest.mark.parametrize("field, value", [("kind", 14), ("kind", 255), ("side", 2), ("tif", 9), ("code", 9999)])
def test_events_from_records_refuses_a_record_the_book_does_not_make(field, value):
    book = NativeBook()
    book.record_submit(1, BUY, LIMIT, GTC, 100, 5)
    book.record_cancel(9)
    records = book.take_events()
    index = 1 if field == "code" else 0
    records[field][index] = value
    with pytest.raises(ValueError, match=f"record {index} is no event"):
        events_from_records(records)
    with pytest.raises(ValueError, match="EVENT_DTYPE"):
        events_from_records(records.view(np.uint8))


# ------------------------------------------------------------------ replay_rows_records


def random_v1_rows(rng, count):
    """Every version-1 kind, unknown kinds among them, over a narrow band: rejects of every kind
    (the standard workload has none)."""
    stream = np.zeros(count, dtype=STREAM_DTYPE)
    stream["kind"] = rng.choice([0, 0, 0, 0, 1, 2, 2, 3, 3, 4, 5, 6, 200], count)
    stream["side"] = rng.choice([0, 1, 0, 1, 2], count)
    stream["price"] = rng.integers(-1, 12, count) + 95
    stream["qty"] = rng.integers(-1, 21, count)
    stream["order_id"] = rng.integers(1, count, count)
    stream["target_id"] = rng.integers(1, count, count)
    return stream.tolist()


@pytest.mark.parametrize("source", ["standard workload", "random rows"])
def test_replay_rows_records_equals_replay_rows(source):
    if source == "standard workload":
        rows = workload.standard(30_000, 7).tolist()
    else:
        rows = random_v1_rows(np.random.default_rng(5), 5_000)
    classic, recorded = NativeBook(), NativeBook()
    expected, actual = replay_rows(classic, rows), replay_rows_records(recorded, rows)
    assert actual.fills.dtype == expected.fills.dtype
    assert actual.fills.tolist() == expected.fills.tolist()
    assert (actual.accepted, actual.rejected) == (expected.accepted, expected.rejected)
    assert actual.accepted + actual.rejected == len(rows) and len(expected.fills) > 0
    assert recorded.state_hash() == classic.state_hash()
    assert len(recorded.take_events()) == 0


@pytest.mark.parametrize("seed", [1, 42])
def test_replay_rows_v2_records_equals_replay_rows_v2(seed):
    rows = advanced(20_000, seed).tolist()
    classic, recorded = NativeBook(), NativeBook()
    expected, actual = replay_rows_v2(classic, rows), replay_rows_v2_records(recorded, rows)
    assert actual.fills.tolist() == expected.fills.tolist()
    assert (actual.accepted, actual.rejected) == (expected.accepted, expected.rejected)
    assert expected.rejected > 0 and len(expected.fills) > 0
    assert recorded.state_hash() == classic.state_hash()
