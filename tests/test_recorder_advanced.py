"""The recorder (`database.recording`) on the advanced orders' journal entries, on SQLite and
PostgreSQL: a stop's trigger and a self-trade prevention decrement are steps of the order's
history (migration 0002's transitions), a decrement to nothing ends the order canceled, and a
GTD order expired by the OBS's clock command (`BookSetClock`) is expired."""

import pytest
from journal_entries import Journal, order_id
from sqlalchemy import select

from database.models import Order, OrderEvent
from database.recording import Applier
from engine.lifecycle import OrderState, Transition
from engine.types import OrderType, SelfTradePrevention, TimeInForce
from servers.protocol import BookSetClock, BookSubmit, owner_of

pytest_plugins = ["database_fixtures"]
S, T = OrderState, Transition
BUY, SELL = 0, 1
LIMIT, STOP = OrderType.LIMIT, OrderType.STOP
GTC, GTD = TimeInForce.GTC, TimeInForce.GTD
DESK = owner_of("desk")


def submit(n, account, side, order_type, tif, price, quantity, **fields):
    return BookSubmit("ACME", order_id(n), side, order_type, tif, price, quantity, account, n, **fields)


def history(engine, n):
    """(transition, status, quantity, leaves) of order ``n``'s steps, in order."""
    query = (select(OrderEvent.transition, OrderEvent.status, OrderEvent.quantity, OrderEvent.leaves)
             .where(OrderEvent.order_id == order_id(n)).order_by(OrderEvent.sequence, OrderEvent.step))
    with engine.connect() as connection:
        return [tuple(row) for row in connection.execute(query)]


def order(engine, n):
    with engine.connect() as connection:
        return connection.execute(select(Order.status, Order.filled, Order.leaves)
                                  .where(Order.order_id == order_id(n))).one()


@pytest.mark.parametrize("size", [1, 4])
def test_triggers_decrements_and_clock_expiries_are_recorded(engine, size):
    journal = Journal()
    entries = journal.run(
        submit(1, "alice", SELL, LIMIT, GTC, 100, 10),
        submit(2, "bob", BUY, STOP, GTC, 0, 4, stop_price=100),
        submit(3, "carol", BUY, LIMIT, GTC, 100, 1),
        submit(4, "alice", BUY, LIMIT, GTC, 90, 10, owner=DESK),
        submit(5, "bob", SELL, LIMIT, GTC, 90, 3, owner=DESK, stp=SelfTradePrevention.DECREMENT),
        submit(6, "carol", BUY, LIMIT, GTD, 80, 5, expire_at=journal.time + 10**9),
    )
    entries += journal.run(BookSetClock("ACME", journal.time + 2 * 10**9))
    applier = Applier(engine)
    for start in range(0, len(entries), size):
        applier.apply("A", entries[start:start + size])

    assert history(engine, 2) == [(T.ACCEPT, S.ACCEPTED, 4, 4), (T.TRIGGER, S.ACCEPTED, 4, 4),
                                  (T.FILL_ALL, S.FILLED, 4, 0)]
    assert order(engine, 1) == (S.PARTIALLY_FILLED, 5, 5)
    assert history(engine, 4)[1:] == [(T.DECREMENT, S.ACCEPTED, 3, 7)]
    assert history(engine, 5)[1:] == [(T.CANCEL, S.CANCELED, 3, 0)]
    assert order(engine, 5) == (S.CANCELED, 0, 0)
    assert history(engine, 6)[1:] == [(T.EXPIRE, S.EXPIRED, 5, 0)]
