"""Journal entries into the transactional database (`database.recording`), on SQLite and PostgreSQL:
the rows of a hand-checked scenario, positions against `servers.portfolio`, idempotency (the same
batch twice, overlapping batches, two shards, a failure half-way, a restart) and refused input."""

from datetime import date

import msgspec
import pytest
from journal_entries import START, Journal, mixed_entries, order_id, portfolios, scenario, scenario_time
from sqlalchemy import select

from database import writing
from database.models import DailyClose, DailyPnl, Execution, Order, OrderEvent, Position, RecorderProgress
from database.recording import Applier, RecordingError
from database.store import open_store
from engine.lifecycle import OrderState, Transition
from servers.protocol import BookCancel, BookSubmit

pytest_plugins = ["database_fixtures"]
RECORDS = (Order, OrderEvent, Execution, Position, DailyPnl, DailyClose, RecorderProgress)
S, T = OrderState, Transition
DAY1, DAY2 = date(2026, 12, 1), date(2026, 12, 2)


def rows(engine, model) -> list[tuple]:
    """Every row of ``model``'s table, by primary key."""
    table = model.__table__
    with engine.connect() as connection:
        return [tuple(row) for row in connection.execute(select(table).order_by(*table.primary_key.columns))]


def dump(engine) -> dict[str, list[tuple]]:
    return {model.__tablename__: rows(engine, model) for model in RECORDS}


def apply_in_batches(applier, entries, size, shard="A") -> None:
    for start in range(0, len(entries), size):
        applier.apply(shard, entries[start:start + size])


def t(sequence: int) -> int:
    return scenario_time(sequence)


def o(n: int) -> int:
    return order_id(n)


# ---------------------------------------------------------------- what entries become


@pytest.mark.parametrize("size", [13, 5, 1])
def test_scenario_becomes_exactly_these_rows_in_batches_of_any_size(engine, size):
    apply_in_batches(Applier(engine), scenario(), size)

    assert rows(engine, Order) == [
        # id, account, symbol, side, type, tif, price, quantity, status, filled, leaves, notional, created, updated
        (o(1), "alice", "ACME", 1, 0, 0, 100, 10, S.FILLED, 10, 0, 1000, t(1), t(3), "A", 1),
        (o(2), "bob", "ACME", 0, 0, 0, 101, 4, S.FILLED, 4, 0, 400, t(2), t(2), "A", 2),
        (o(3), "bob", "ACME", 0, 0, 1, 100, 10, S.CANCELED, 6, 0, 600, t(3), t(3), "A", 3),
        (o(4), "alice", "ACME", 0, 0, 3, 98, 3, S.EXPIRED, 0, 0, 0, t(4), t(6), "A", 4),
        (o(5), "carol", "ACME", 1, 0, 0, 105, 5, S.CANCELED, 2, 0, 210, t(7), t(9), "A", 7),
        (o(7), "alice", "ACME", 0, 0, 0, 105, 2, S.FILLED, 2, 0, 210, t(8), t(8), "A", 8),
        (o(8), "bob", "ACME", 0, 0, 0, 90, 1, S.ACCEPTED, 0, 1, 0, t(12), t(12), "A", 12),
    ]
    assert rows(engine, OrderEvent) == [
        # order, sequence, step, shard, time, transition, status, price, quantity, filled, leaves, trade, reason
        (o(1), 1, 0, "A", t(1), T.ACCEPT, S.ACCEPTED, 100, 10, 0, 10, None, None),
        (o(1), 2, 1, "A", t(2), T.FILL_PART, S.PARTIALLY_FILLED, 100, 4, 4, 6, 1, None),
        (o(1), 3, 1, "A", t(3), T.FILL_ALL, S.FILLED, 100, 6, 10, 0, 2, None),
        (o(2), 2, 0, "A", t(2), T.ACCEPT, S.ACCEPTED, 101, 4, 0, 4, None, None),
        (o(2), 2, 2, "A", t(2), T.FILL_ALL, S.FILLED, 100, 4, 4, 0, 1, None),
        (o(3), 3, 0, "A", t(3), T.ACCEPT, S.ACCEPTED, 100, 10, 0, 10, None, None),
        (o(3), 3, 2, "A", t(3), T.FILL_PART, S.PARTIALLY_FILLED, 100, 6, 6, 4, 2, None),
        (o(3), 3, 3, "A", t(3), T.CANCEL, S.CANCELED, 100, 4, 6, 0, None, 1),
        (o(4), 4, 0, "A", t(4), T.ACCEPT, S.ACCEPTED, 99, 5, 0, 5, None, None),
        (o(4), 5, 0, "A", t(5), T.REPLACE, S.ACCEPTED, 98, 3, 0, 3, None, None),
        (o(4), 6, 0, "A", t(6), T.EXPIRE, S.EXPIRED, 98, 3, 0, 0, None, None),
        (o(5), 7, 0, "A", t(7), T.ACCEPT, S.ACCEPTED, 105, 5, 0, 5, None, None),
        (o(5), 8, 1, "A", t(8), T.FILL_PART, S.PARTIALLY_FILLED, 105, 2, 2, 3, 3, None),
        (o(5), 9, 0, "A", t(9), T.CANCEL, S.CANCELED, 105, 3, 2, 0, None, 0),
        (o(7), 8, 0, "A", t(8), T.ACCEPT, S.ACCEPTED, 105, 2, 0, 2, None, None),
        (o(7), 8, 2, "A", t(8), T.FILL_ALL, S.FILLED, 105, 2, 2, 0, 3, None),
        (o(8), 11, 0, "A", t(11), T.REJECT, S.REJECTED, 90, 0, 0, 0, None, 1004),
        (o(8), 12, 0, "A", t(12), T.ACCEPT, S.ACCEPTED, 90, 1, 0, 1, None, None),
    ]
    assert rows(engine, Execution) == [
        # symbol, trade, time, shard, sequence, price, quantity, aggressor, buy order, buyer, sell order, seller
        ("ACME", 1, t(2), "A", 2, 100, 4, 0, o(2), "bob", o(1), "alice"),
        ("ACME", 2, t(3), "A", 3, 100, 6, 0, o(3), "bob", o(1), "alice"),
        ("ACME", 3, t(8), "A", 8, 105, 2, 0, o(7), "alice", o(5), "carol"),
    ]
    assert rows(engine, Position) == [
        # account, symbol, quantity, basis, cash, realized, updated
        ("alice", "ACME", -8, -800, 790, -10, t(8)),
        ("bob", "ACME", 10, 1000, -1000, 0, t(3)),
        ("carol", "ACME", -2, -210, 210, 0, t(8)),
    ]
    assert rows(engine, DailyPnl) == [
        # account, symbol, day, trades, bought, sold, bought notional, sold notional, quantity, basis, cash, realized
        ("alice", "ACME", DAY1, 2, 0, 10, 0, 1000, -10, -1000, 1000, 0),
        ("alice", "ACME", DAY2, 1, 2, 0, 210, 0, -8, -800, 790, -10),
        ("bob", "ACME", DAY1, 2, 10, 0, 1000, 0, 10, 1000, -1000, 0),
        ("carol", "ACME", DAY2, 1, 0, 2, 0, 210, -2, -210, 210, 0),
    ]
    assert rows(engine, DailyClose) == [("ACME", DAY1, 100, 10, 2), ("ACME", DAY2, 105, 2, 1)]
    assert rows(engine, RecorderProgress) == [("A", 13, t(13))]


def test_positions_equal_the_portfolio_of_the_same_fills(engine):
    entries = mixed_entries(600)
    apply_in_batches(Applier(engine), entries, 50)

    expected = portfolios(entries)
    recorded = rows(engine, Position)
    assert {(account, symbol): (quantity, basis, realized)
            for account, symbol, quantity, basis, _, realized, _ in recorded} == {
        (account, symbol): (holding.quantity, holding.basis, holding.realized)
        for account, portfolio in expected.items() for symbol, holding in portfolio.holdings.items()
    }
    cash = {}
    for account, _, _, _, symbol_cash, _, _ in recorded:
        cash[account] = cash.get(account, 0) + symbol_cash
    assert cash == {account: portfolio.cash for account, portfolio in expected.items()}
    assert sum(cash.values()) == 0
    assert {symbol: sum(row[2] for row in recorded if row[1] == symbol) for _, symbol, *_ in recorded} == \
        {"ACME": 0, "BOLT": 0}


def test_day_rows_add_up_to_the_executions(engine):
    entries = mixed_entries(600, days=3)
    apply_in_batches(Applier(engine), entries, 64)

    executions = rows(engine, Execution)
    days = rows(engine, DailyPnl)
    closes = rows(engine, DailyClose)
    assert len({row[2] for row in days}) == 3
    assert sum(row[3] for row in days) == 2 * len(executions)
    assert sum(row[4] for row in days) == sum(row[5] for row in days) == sum(row[6] for row in executions)
    assert sum(row[3] for row in closes) == sum(row[6] for row in executions)
    assert sum(row[4] for row in closes) == len(executions)


# ---------------------------------------------------------------- idempotency


def test_same_batch_twice_is_written_once(engine):
    entries = scenario()
    applier = Applier(engine)
    assert applier.apply("A", entries) == 13
    before = dump(engine)
    assert applier.apply("A", entries) == 0
    assert Applier(engine).apply("A", entries) == 0
    assert dump(engine) == before


def test_overlapping_batches_write_each_entry_once(engine, tmp_path):
    entries = mixed_entries(300)
    applier = Applier(engine)
    for start, stop in ((0, 100), (50, 150), (0, 220), (150, 300), (299, 300)):
        applier.apply("A", entries[start:stop])

    reference = open_store(f"sqlite:///{tmp_path / 'reference.sqlite'}")
    Applier(reference).apply("A", entries)
    assert dump(engine) == dump(reference)
    reference.dispose()


def test_two_shards_keep_their_own_progress(engine):
    first = Journal(symbols=["ACME"])
    second = Journal(symbols=["BOLT"])
    a = first.run(BookSubmit("ACME", order_id(1), 1, 0, 0, 100, 5, "alice"),
                  BookSubmit("ACME", order_id(2), 0, 0, 0, 100, 5, "bob"))
    b = second.run(BookSubmit("BOLT", order_id(1, tes=2), 0, 0, 0, 200, 10, "carol"))
    applier = Applier(engine)

    assert applier.apply("B", b) == 1
    assert applier.apply("A", a[:1]) == 1
    assert applier.apply("A", a) == 1
    assert applier.apply("B", b) == 0
    assert rows(engine, RecorderProgress) == [("A", 2, a[1].time), ("B", 1, b[0].time)]
    assert (applier.committed("A"), applier.committed("B"), applier.committed("C")) == (2, 1, 0)
    assert [(row[0], row[1], row[8]) for row in rows(engine, Order)] == [
        (order_id(1), "alice", S.FILLED), (order_id(2), "bob", S.FILLED), (order_id(1, tes=2), "carol", S.ACCEPTED)]


def test_failure_half_way_through_a_batch_commits_nothing(engine, monkeypatch, tmp_path):
    entries = scenario()
    applier = Applier(engine)
    applier.apply("A", entries[:4])
    before = dump(engine)

    def fail(self, connection, batch):
        raise RuntimeError("the writer died after the big tables")

    with monkeypatch.context() as patch:
        patch.setattr(writing.SmallTables, "write", fail)
        with pytest.raises(RuntimeError, match="the writer died"):
            applier.apply("A", entries)
    assert dump(engine) == before

    assert applier.apply("A", entries) == 9
    reference = open_store(f"sqlite:///{tmp_path / 'reference.sqlite'}")
    Applier(reference).apply("A", entries)
    assert dump(engine) == dump(reference)
    reference.dispose()


def test_restart_resumes_from_the_committed_sequence(engine, tmp_path):
    entries = mixed_entries(400)
    Applier(engine).apply("A", entries[:150])
    engine.dispose()

    restarted = open_store(engine.url)
    applier = Applier(restarted, live_orders=5)
    committed = applier.committed("A")
    assert committed == 150
    apply_in_batches(applier, entries[committed - 20:], 37)

    reference = open_store(f"sqlite:///{tmp_path / 'reference.sqlite'}")
    Applier(reference).apply("A", entries)
    assert dump(restarted) == dump(reference)
    restarted.dispose()
    reference.dispose()


# ---------------------------------------------------------------- input refused


def test_gap_in_the_sequence_is_refused_and_commits_nothing(engine):
    entries = scenario()
    applier = Applier(engine)
    applier.apply("A", entries[:3])
    with pytest.raises(RecordingError, match="entry 5 where 4 was expected"):
        applier.apply("A", entries[4:])
    assert applier.committed("A") == 3


def test_event_about_an_unknown_order_is_refused(engine):
    journal = Journal(symbols=["ACME"])
    journal.run(BookSubmit("ACME", order_id(1), 1, 0, 0, 100, 5, "alice"))
    journal.sequence = 0
    cancel = journal.run(BookCancel("ACME", order_id(1)))
    with pytest.raises(RecordingError, match=f"order {order_id(1)}, which the database does not have"):
        Applier(engine).apply("A", cancel)
    assert dump(engine)["orders"] == []


def test_event_the_lifecycle_does_not_allow_is_refused(engine):
    entries = scenario()
    applier = Applier(engine)
    applier.apply("A", entries[:3])
    filled_again = msgspec.structs.replace(entries[1], sequence=4)
    with pytest.raises(RecordingError, match="shard A sequence 4: fill_part is not allowed in state filled"):
        applier.apply("A", [filled_again])
    assert applier.committed("A") == 3


def test_rejected_id_submitted_again_in_a_later_batch_replaces_the_rejected_order(engine):
    entries = scenario()
    applier = Applier(engine)
    applier.apply("A", entries[:11])
    assert rows(engine, Order)[-1][8] == S.REJECTED
    applier.apply("A", entries[11:])
    assert rows(engine, Order)[-1] == (o(8), "bob", "ACME", 0, 0, 0, 90, 1, S.ACCEPTED, 0, 1, 0, t(12), t(12), "A", 12)
    assert START < t(12)
