"""The `book` fixture: every book test runs against the reference and the native book.

The harness forwards commands to the book and every event to an `OrderTracker`, so
each test also checks that the book's events follow the order lifecycle. After each
test, every book the test made must have answered every submission, pass
`check_invariants()` and survive a snapshot/restore round trip with an equal
snapshot and state hash.
"""

import os
import warnings

import pytest
import zmq

from engine.book import ReferenceBook
from engine.lifecycle import OrderState, OrderTracker
from engine.messages import SubmitOrder
from engine.types import OrderType, Side, TimeInForce

BUY, SELL = Side.BUY, Side.SELL
LIMIT, MARKET = OrderType.LIMIT, OrderType.MARKET
GTC, IOC = TimeInForce.GTC, TimeInForce.IOC


def _reference_class():
    return ReferenceBook


def _native_class():
    from native.book import NativeBook

    return NativeBook


BOOK_CLASSES = {"reference": _reference_class, "native": _native_class}


def _leave_unclosed(context: zmq.Context) -> None:
    """A ZeroMQ context the garbage collector finds unclosed is left open, with a ResourceWarning,
    instead of pyzmq's ``destroy``: a test that fails before it closes its context leaves the context
    and its sockets in one garbage cycle (its frames, held by the failure's traceback), whose weak
    references the collector clears first, so ``destroy`` would find no socket to close and ``term``
    would wait for them forever. One failed test hung its worker so, stopping the run. The
    worker's exit closes what is left."""
    if not context._shadow and not context.closed:
        warnings.warn(f"unclosed ZeroMQ context {context!r}, left open", ResourceWarning, stacklevel=1)


zmq.Context.__del__ = _leave_unclosed


MAX_WORKERS = 16
"""At most this many workers, however many cores: each holds a few PostgreSQL connections (its
own database's) and its servers' loopback ports, and PostgreSQL admits 100 connections by default."""


def pytest_xdist_auto_num_workers(config):
    """`-n auto` (the default, in pyproject.toml) runs two workers per core, up to `MAX_WORKERS`:
    many tests wait on servers in other processes more than they compute, so one worker per core
    leaves a third of the cores idle. The whole suite took 4 min 39 s with four workers on two
    cores against 5 min 55 s with two, and 6 min 39 s against 9 min 47 s with two busy loops
    competing for the cores."""
    return min(2 * (os.cpu_count() or 1), MAX_WORKERS)


class Harness:
    """A book plus the lifecycle tracker fed by its events; queries go straight to the book."""

    def __init__(self, book, factory, tracker=None):
        self.book = book
        self.tracker = tracker or OrderTracker()
        self._factory = factory

    def __getattr__(self, name):
        return getattr(self.book, name)

    def __len__(self):
        return len(self.book)

    def _track(self, events, before):
        for event in events:
            self.tracker.apply(event)
        self._check_level_changes(before)
        return events

    def _levels(self) -> dict:
        """(side, price) -> (quantity, orders) of every level."""
        return {(side, level.price): (level.quantity, level.orders)
                for side in (BUY, SELL) for level in self.book.depth(side, 1_000_000)}

    def _check_level_changes(self, before: dict) -> None:
        """The book's `level_changes` are exactly the levels whose state the command changed, once each."""
        after = self._levels()
        changed = {key: after.get(key, (0, 0)) for key in before.keys() | after.keys()
                   if before.get(key) != after.get(key)}
        reported = [((change.side, change.price), (change.quantity, change.orders))
                    for change in self.book.level_changes()]
        assert dict(reported) == changed and len(reported) == len(changed), (reported, changed)

    # commands

    def submit(self, order_id, side, order_type, time_in_force, price, quantity, **fields):
        """``fields``: the advanced orders' keyword arguments (stop_price, display_quantity, flags,
        owner, stp, expire_at), passed only when given."""
        self.tracker.submitted(order_id)
        before = self._levels()
        return self._track(self.book.submit(order_id, side, order_type, time_in_force, price, quantity, **fields),
                           before)

    def cancel(self, order_id):
        before = self._levels()
        return self._track(self.book.cancel(order_id), before)

    def replace(self, order_id, price, quantity):
        before = self._levels()
        return self._track(self.book.replace(order_id, price, quantity), before)

    def expire_day_orders(self):
        before = self._levels()
        return self._track(self.book.expire_day_orders(), before)

    def set_clock(self, time):
        before = self._levels()
        return self._track(self.book.set_clock(time), before)

    def set_phase(self, phase):
        before = self._levels()
        return self._track(self.book.set_phase(phase), before)

    def apply(self, command):
        if isinstance(command, SubmitOrder):
            self.tracker.submitted(command.order_id)
        before = self._levels()
        return self._track(self.book.apply(command), before)

    # shortcuts

    def buy(self, order_id, price, quantity, tif=GTC, **fields):
        return self.submit(order_id, BUY, LIMIT, tif, price, quantity, **fields)

    def sell(self, order_id, price, quantity, tif=GTC, **fields):
        return self.submit(order_id, SELL, LIMIT, tif, price, quantity, **fields)

    def market_buy(self, order_id, quantity, tif=IOC, **fields):
        return self.submit(order_id, BUY, MARKET, tif, 0, quantity, **fields)

    def market_sell(self, order_id, quantity, tif=IOC, **fields):
        return self.submit(order_id, SELL, MARKET, tif, 0, quantity, **fields)

    def depth(self, levels=1_000_000):
        """Both sides as tables of (price, quantity, orders), best first."""
        return {
            "bids": [(lv.price, lv.quantity, lv.orders) for lv in self.book.depth(BUY, levels)],
            "asks": [(lv.price, lv.quantity, lv.orders) for lv in self.book.depth(SELL, levels)],
        }

    def restored(self):
        """A new harness on ``restore(snapshot())`` whose tracker knows this one's orders."""
        tracker = OrderTracker()
        tracker.states = dict(self.tracker.states)
        return self._factory(self.book.snapshot(), tracker)


def check_book(book):
    book.check_invariants()
    snapshot = book.snapshot()
    restored = type(book).restore(snapshot)
    restored.check_invariants()
    assert restored.state_hash() == book.state_hash()
    assert restored.snapshot() == snapshot


@pytest.fixture(params=list(BOOK_CLASSES))
def book_class(request):
    return BOOK_CLASSES[request.param]()


@pytest.fixture
def make_book(book_class):
    """Factory of harnesses (optionally restored from a snapshot), all checked after the test."""
    made = []

    def make(snapshot=None, tracker=None):
        book = book_class() if snapshot is None else book_class.restore(snapshot)
        harness = Harness(book, make, tracker)
        made.append(harness)
        return harness

    yield make
    for harness in made:
        check_book(harness.book)
        unanswered = [i for i, state in harness.tracker.states.items() if state is OrderState.PENDING]
        assert not unanswered and not any(harness.tracker.duplicates.values()), "a submit got no answer"


@pytest.fixture
def book(make_book):
    return make_book()


@pytest.fixture(scope="module")
def live_exchange(tmp_path_factory):
    """A running OBS, recorder and TES (`live_exchange.LiveExchange`), shared by a test module."""
    from live_exchange import LiveExchange

    exchange = LiveExchange(tmp_path_factory.mktemp("exchange"))
    yield exchange
    exchange.close()
