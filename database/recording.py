"""Journal entries into the transactional database, idempotently: `Applier`.

The recorder reads each order book server's journal as `servers.protocol.JournalEntry`
records, consecutive per shard, and hands them here in batches. `Applier.apply(shard,
entries)` turns a batch into rows and writes them in **one transaction together with the
shard's `RecorderProgress`** (the last sequence committed):

- entries at or below the committed sequence are skipped (a batch sent twice, or batches
  that overlap, are written once); the rest must continue it without a gap;
- a batch is all or nothing: if anything fails, nothing of it is committed, the applier
  forgets what it had cached, and the same batch can be applied again;
- so a recorder that restarts asks `committed(shard)`, reads the journal after it and
  resumes exactly where the database is.

What an entry becomes
---------------------
- a `BookSubmit` an `Order` (its account is the command's), unless the book refused it
  as a duplicate of an accepted order's id: that submission is no order, and the order it
  names is left alone (as `engine.lifecycle.OrderTracker` does). A submission the book
  rejected is an order in state REJECTED; should its id be submitted again (the book does
  not consume rejected ids) the new order replaces the rejected one's row;
- every event that changes an order an `OrderEvent` (a fill, one for each of its orders),
  with the order's state after it by `engine.lifecycle.next_state`: the exchange's one
  transition table (a stop triggered, and a self-trade prevention decrement, are steps of
  their own). An event the table does not allow raises `RecordingError`;
  CancelRejected, ReplaceRejected and the events about no order (the clock, phases) change
  nothing and are not recorded;
- a fill an `Execution` with both orders' ids and accounts, and a fill of each account in
  its `Position` (by `servers.portfolio`'s arithmetic: `Portfolio.fill`), its `DailyPnl`
  and the symbol's `DailyClose`.

Orders are written once per batch with their state at its end: inserted if the batch
submitted them, updated otherwise. A fill's maker was usually entered batches earlier: the
applier keeps the live orders (leaves > 0) in memory, at most ``live_orders`` of them (the
oldest are forgotten first), and before translating a batch reads, in one query, every
order the batch's events name that it neither has nor submits. So after a restart (or a
failure, which drops the caches) the cache is rebuilt from what was committed, batch by
batch, as the entries need it. Positions are cached too: those a batch's executions need and
the cache lacks are read in one query before they are booked.

Speed
-----
`apply` writes down the order of the steps. The two big append-only tables (the order history
and the executions) go to the writer a row at a time while Python makes them, so PostgreSQL
takes them in on the other core meanwhile (`database.writing`); the orders go after the batch,
with their final states. The cyclic garbage collector is paused while a batch is applied: a
batch makes some hundred thousand short-lived objects, none in a cycle, and each collection
they set off would walk the live orders and the recorder's pending entries again (measured
with ``python main.py bench store``, whose process holds all its entries: a fifth of the
applier's CPU time into PostgreSQL); whatever is left for the collector is collected after the
batch.

One applier (one recorder) writes a shard at a time: a second one on the same shard
waits for the first's transaction (the progress row is read FOR UPDATE) and then skips
what it committed, but the two caches would then disagree; don't run two.
"""

import gc
from collections.abc import Sequence
from datetime import date, timedelta
from itertools import islice

from sqlalchemy import Connection, Engine, select, tuple_

from database import writing
from database.models import Order, Position, RecorderProgress
from database.store import transaction
from engine.lifecycle import TRANSITIONS, IllegalTransition, OrderState, Transition, next_state
from engine.messages import (
    OrderAccepted,
    OrderCanceled,
    OrderDecremented,
    OrderExpired,
    OrderFilled,
    OrderRejected,
    OrderReplaced,
    StopTriggered,
)
from engine.types import RejectReason, Side
from servers.portfolio import Holding, Portfolio
from servers.protocol import BookSubmit, JournalEntry

LIVE_ORDERS = 200_000
"""Live orders an applier keeps in memory by default (a few hundred bytes each)."""
READ_CHUNK = 1_000
"""Order ids per query when reading the orders a batch needs."""
NS_PER_DAY = 86_400 * 1_000_000_000
EPOCH = date(1970, 1, 1)

STEPS = {(state.value, transition.value): after.value for (state, transition), after in TRANSITIONS.items()}
"""`engine.lifecycle.TRANSITIONS` by the values of its states and transitions (as the rows hold them)."""
ACCEPT, REJECT, FILL_PART, FILL_ALL, CANCEL, EXPIRE, REPLACE, TRIGGER, DECREMENT = (
    transition.value for transition in Transition)
NAMED = frozenset({OrderCanceled, OrderExpired, OrderReplaced, OrderDecremented, StopTriggered})
"""Events about one earlier order, by ``order_id``."""
PENDING = OrderState.PENDING.value
BUY, SELL = Side.BUY, Side.SELL


class RecordingError(Exception):
    """The entries do not continue what the database holds (a gap in the sequence, an event about
    an unknown order or one the order's state does not allow): retrying will not help."""


class LiveOrder:
    """An order as the current batch leaves it: the columns of `Order`, in its order (``status``
    as the value of its `OrderState`)."""

    __slots__ = ("order_id", "account", "symbol", "side", "order_type", "time_in_force", "price", "quantity",
                 "status", "filled", "leaves", "notional", "created_time", "updated_time", "shard", "sequence")

    def __init__(self, order_id, account, symbol, side, order_type, time_in_force, price, quantity, status,
                 filled, leaves, notional, created_time, updated_time, shard, sequence) -> None:
        self.order_id = order_id
        self.account = account
        self.symbol = symbol
        self.side = side
        self.order_type = order_type
        self.time_in_force = time_in_force
        self.price = price
        self.quantity = quantity
        self.status = status
        self.filled = filled
        self.leaves = leaves
        self.notional = notional
        self.created_time = created_time
        self.updated_time = updated_time
        self.shard = shard
        self.sequence = sequence

    def row(self) -> tuple:
        return (self.order_id, self.account, self.symbol, self.side, self.order_type, self.time_in_force,
                self.price, self.quantity, self.status, self.filled, self.leaves, self.notional,
                self.created_time, self.updated_time, self.shard, self.sequence)

    def change(self) -> tuple:
        """What a later batch can change, and the id (`database.writing.CHANGE_COLUMNS`)."""
        return (self.price, self.quantity, self.status, self.filled, self.leaves, self.notional,
                self.updated_time, self.order_id)

    def step(self, transition: str) -> str:
        """Move to the state after ``transition`` (values of `engine.lifecycle`'s enums) and return it."""
        status = STEPS.get((self.status, transition))
        if status is None:
            next_state(OrderState(self.status), Transition(transition))  # raises IllegalTransition
        self.status = status
        return status


ORDER_COLUMNS = LiveOrder.__slots__
SYMBOL, BUYER, SELLER = (writing.EXECUTION_COLUMNS.index(name) for name in ("symbol", "buy_account", "sell_account"))
"""Where an `Execution` row (as `Applier.translate` makes it) holds its symbol and its two accounts."""


class DayTotals:
    """An account's fills of a symbol on one day in this batch, and its position after the last
    (taken from its portfolio by `close`)."""

    __slots__ = ("portfolio", "symbol", "day", "time", "trades", "bought", "sold", "bought_notional",
                 "sold_notional", "quantity", "basis", "cash", "realized")

    def __init__(self, portfolio: Portfolio, symbol: str, day: date) -> None:
        self.portfolio, self.symbol, self.day = portfolio, symbol, day
        self.time = self.trades = self.bought = self.sold = self.bought_notional = self.sold_notional = 0
        self.quantity = self.basis = self.cash = self.realized = 0

    def close(self) -> None:
        """Take the position as the day's last fill left it."""
        holding = self.portfolio.holdings[self.symbol]
        self.quantity, self.basis, self.realized = holding.quantity, holding.basis, holding.realized
        self.cash = self.portfolio.cash


class Batch:
    """The rows one batch of entries becomes (`database.writing` writes them; the `OrderEvent` rows
    went to the writer as `Applier.translate` made them)."""

    def __init__(self, shard: str) -> None:
        self.shard = shard
        self.inserted: dict[int, LiveOrder] = {}
        """Orders the batch submitted (the last submission of an id wins)."""
        self.updated: dict[int, LiveOrder] = {}
        """Orders from earlier batches that this one changed."""
        self.executions: list[tuple] = []
        """`Execution` rows, in column order."""
        self.positions: dict[tuple[str, str], tuple[Portfolio, int]] = {}
        """(account, symbol) -> its portfolio and the time of its last fill."""
        self.days: dict[tuple[str, str, date], DayTotals] = {}
        self.closes: dict[tuple[str, date], list[int]] = {}
        """(symbol, day) -> [last price, volume, trades] of this batch."""
        self.last_sequence = 0
        self.last_time = 0


class Applier:
    """Writes batches of one or more shards' journal entries into the database at ``engine``."""

    def __init__(self, engine: Engine, live_orders: int = LIVE_ORDERS) -> None:
        self.engine = engine
        self.live_orders = live_orders
        self.writer = writing.writer(engine.dialect.name)
        self._orders: dict[int, LiveOrder] = {}
        self._positions: dict[tuple[str, str], Portfolio] = {}
        self._days: dict[int, date] = {}

    def committed(self, shard: str) -> int:
        """The sequence of ``shard``'s last entry in the database (0: none yet)."""
        with transaction(self.engine, write=False) as connection:
            return _committed(connection, shard, lock=False)

    def apply(self, shard: str, entries: Sequence[JournalEntry]) -> int:
        """Write the entries of ``shard`` after its committed sequence, in one transaction with
        the new progress; return how many were written (0: all were there already).

        Raises `StoreUnavailable` if the database cannot be used (nothing was committed: apply
        the same entries again later) and `RecordingError` if the entries do not continue what
        the database holds.
        """
        collecting = gc.isenabled()
        gc.disable()  # see the module's docstring, "Speed"
        try:
            with transaction(self.engine) as connection:
                # 1. lock the shard's progress and skip what it covers
                committed = _committed(connection, shard, lock=True)
                fresh = _after(shard, committed, entries)
                if not fresh:
                    return 0
                # 2. read the orders the batch changes, then translate it, its order history
                #    going to the database meanwhile
                self.read_orders(connection, fresh)
                with self.writer.rows(connection, "order_events") as history:
                    batch = self.translate(shard, fresh, history)
                # 3. read the positions its executions change, then book them, the executions
                #    going to the database meanwhile
                self.read_positions(connection, batch)
                with self.writer.rows(connection, "executions") as record:
                    self.book(batch, record)
                # 4. the orders in their final states, positions, day tables, progress
                self.writer.write(connection, batch)
        except BaseException:
            self._forget()
            raise
        finally:
            if collecting:
                gc.enable()
        self._trim()
        return len(fresh)

    # ---------------------------------------------------------------- translation

    def read_orders(self, connection: Connection, entries: Sequence[JournalEntry]) -> None:
        """Cache the orders from earlier batches that ``entries`` change and the cache lacks."""
        cached = self._orders
        wanted, submitted = set(), set()
        for entry in entries:
            if type(entry.command) is BookSubmit:
                submitted.add(entry.command.order_id)
            for event in entry.events:
                kind = type(event)
                if kind is OrderFilled:
                    # the taker too: a triggered stop or a re-entered replace is an earlier order
                    order_ids = (event.maker_id, event.taker_id)
                elif kind in NAMED:
                    order_ids = (event.order_id,)
                else:
                    continue
                for order_id in order_ids:
                    if order_id not in cached and order_id not in submitted:
                        wanted.add(order_id)
        wanted = sorted(wanted)
        for start in range(0, len(wanted), READ_CHUNK):
            chosen = wanted[start:start + READ_CHUNK]
            for row in connection.execute(select(*ORDER_TABLE.c).where(ORDER_TABLE.c.order_id.in_(chosen))):
                cached[row.order_id] = _live_order(row)

    def translate(self, shard: str, entries: Sequence[JournalEntry], history: writing.Sink) -> Batch:
        """The orders and executions ``entries`` (consecutive, not yet written) change; each
        `OrderEvent` row goes to ``history`` as it is made.

        Needs the orders `read_orders` cached, and touches the database no more. Updates the
        order cache as it goes, so the batch must then be written and committed, or the
        applier's caches dropped. Dispatch is on the exact event type, fills first (most events
        are fills and acceptances).
        """
        batch = Batch(shard)
        live = self._orders
        inserted = batch.inserted
        executions = batch.executions.append
        entry = None
        try:
            for entry in entries:
                sequence, time, command = entry.sequence, entry.time, entry.command
                submitted = None
                if type(command) is BookSubmit:
                    submitted = LiveOrder(command.order_id, command.account, command.symbol, command.side,
                                          command.order_type, command.time_in_force, command.price,
                                          command.quantity, PENDING, 0, 0, 0, time, time, shard, sequence)
                step = 0
                for event in entry.events:
                    kind = type(event)
                    if kind is OrderFilled:
                        price, quantity, trade_id = event.price, event.quantity, event.sequence
                        maker = self._order(batch, event.maker_id)
                        taker = self._order(batch, event.taker_id)
                        for order, leaves in ((maker, event.maker_leaves), (taker, event.taker_leaves)):
                            transition = FILL_PART if leaves else FILL_ALL
                            status = order.step(transition)
                            order.filled += quantity
                            order.leaves = leaves
                            order.notional += price * quantity
                            order.updated_time = time
                            history((order.order_id, sequence, step, shard, time, transition, status, price, quantity,
                                     order.filled, leaves, trade_id, None))
                            step += 1
                            if not leaves:
                                live.pop(order.order_id, None)
                        buyer, seller = (taker, maker) if event.aggressor == BUY else (maker, taker)
                        executions((command.symbol, trade_id, time, shard, sequence, price, quantity,
                                    int(event.aggressor), buyer.order_id, buyer.account, seller.order_id,
                                    seller.account))
                        continue
                    if kind is OrderAccepted:
                        order = submitted
                        status = order.step(ACCEPT)
                        order.leaves = event.quantity
                        inserted[order.order_id] = order
                        live[order.order_id] = order
                        transition, quantity, reason = ACCEPT, event.quantity, None
                    elif kind is OrderRejected:
                        if event.reason == RejectReason.DUPLICATE_ORDER_ID:
                            continue
                        order = submitted
                        status = order.step(REJECT)
                        inserted[order.order_id] = order
                        transition, quantity, reason = REJECT, order.quantity, int(event.reason)
                    elif kind is OrderCanceled or kind is OrderExpired:
                        order = self._order(batch, event.order_id)
                        transition = CANCEL if kind is OrderCanceled else EXPIRE
                        status = order.step(transition)
                        order.leaves = 0
                        quantity = event.quantity
                        reason = int(event.reason) if kind is OrderCanceled else None
                        live.pop(order.order_id, None)
                    elif kind is OrderReplaced:
                        order = self._order(batch, event.order_id)
                        status = order.step(REPLACE)
                        order.price = event.price
                        order.leaves = quantity = event.quantity
                        order.quantity = order.filled + quantity
                        transition, reason = REPLACE, None
                    elif kind is OrderDecremented:
                        order = self._order(batch, event.order_id)
                        transition = DECREMENT if event.leaves else CANCEL
                        status = order.step(transition)
                        order.leaves, quantity, reason = event.leaves, event.quantity, None
                        if not event.leaves:
                            live.pop(order.order_id, None)
                    elif kind is StopTriggered:
                        order = self._order(batch, event.order_id)
                        status = order.step(TRIGGER)
                        transition, quantity, reason = TRIGGER, order.leaves, None
                    else:
                        continue  # CancelRejected, ReplaceRejected, the clock, phases: no order changed
                    order.updated_time = time
                    history((order.order_id, sequence, step, shard, time, transition, status, order.price, quantity,
                             order.filled, order.leaves, None, reason))
                    step += 1
            batch.last_sequence, batch.last_time = entry.sequence, entry.time
        except IllegalTransition as exc:
            raise RecordingError(f"shard {shard} sequence {entry.sequence}: {exc}") from None
        return batch

    def _order(self, batch: Batch, order_id: int) -> LiveOrder:
        """The order ``order_id`` as the batch has it so far, marked as changed by the batch."""
        order = self._orders.get(order_id) or batch.inserted.get(order_id) or batch.updated.get(order_id)
        if order is None:
            raise RecordingError(f"shard {batch.shard}: an event names order {order_id}, which the database "
                                 "does not have")
        if order_id not in batch.inserted:
            batch.updated[order_id] = order
        return order

    # ---------------------------------------------------------------- positions

    def read_positions(self, connection: Connection, batch: Batch) -> None:
        """Cache the portfolios of the accounts and symbols of ``batch``'s executions that the cache
        lacks: as the database has them, or empty if it has none."""
        executions = batch.executions
        keys = {(row[BUYER], row[SYMBOL]) for row in executions} | {(row[SELLER], row[SYMBOL]) for row in executions}
        missing = sorted(keys - self._positions.keys())
        table = Position.__table__
        for start in range(0, len(missing), READ_CHUNK):
            chosen = missing[start:start + READ_CHUNK]
            for key in chosen:
                self._positions[key] = Portfolio()
            query = select(table.c.account, table.c.symbol, table.c.quantity, table.c.basis, table.c.cash,
                           table.c.realized).where(tuple_(table.c.account, table.c.symbol).in_(chosen))
            for account, symbol, quantity, basis, cash, realized in connection.execute(query):
                portfolio = self._positions[account, symbol]
                holding = portfolio.holdings[symbol] = Holding()
                holding.quantity, holding.basis, portfolio.cash, holding.realized = quantity, basis, cash, realized

    def book(self, batch: Batch, record: writing.Sink) -> None:
        """Pass each of the batch's executions to ``record`` and book both its sides into the
        accounts' positions (`read_positions` cached them), their totals of the day and the
        symbol's close."""
        latest: dict[tuple[str, str], DayTotals] = {}  # (account, symbol) -> its totals of its latest day so far
        closes = batch.closes
        number = day = None
        for execution in batch.executions:
            record(execution)
            symbol, _, time, _, _, price, quantity, _, _, buyer, _, seller = execution
            if time // NS_PER_DAY != number:
                number = time // NS_PER_DAY
                day = self._day(number)
            close = closes.get((symbol, day))
            if close is None:
                closes[symbol, day] = [price, quantity, 1]
            else:
                close[0] = price
                close[1] += quantity
                close[2] += 1
            for account, side in ((buyer, BUY), (seller, SELL)):
                totals = latest.get((account, symbol))
                if totals is None or totals.day is not day:
                    if totals is not None:
                        totals.close()
                    totals = batch.days.get((account, symbol, day))
                    if totals is None:
                        totals = batch.days[account, symbol, day] = DayTotals(self._positions[account, symbol],
                                                                              symbol, day)
                    latest[account, symbol] = totals
                totals.portfolio.fill(symbol, side, price, quantity)
                totals.time = time
                totals.trades += 1
                if side is BUY:
                    totals.bought += quantity
                    totals.bought_notional += price * quantity
                else:
                    totals.sold += quantity
                    totals.sold_notional += price * quantity
        for (account, symbol), totals in latest.items():
            totals.close()
            batch.positions[account, symbol] = (totals.portfolio, totals.time)

    def _day(self, number: int) -> date:
        """The date of day ``number`` since the epoch."""
        day = self._days.get(number)
        if day is None:
            day = self._days[number] = EPOCH + timedelta(days=number)
        return day

    # ---------------------------------------------------------------- caches

    def _trim(self) -> None:
        """Forget the oldest live orders beyond ``live_orders`` (they are read again when needed)."""
        orders = self._orders
        excess = len(orders) - self.live_orders
        if excess > 0:
            for order_id in list(islice(orders, excess)):
                del orders[order_id]

    def _forget(self) -> None:
        self._orders.clear()
        self._positions.clear()


ORDER_TABLE = Order.__table__


def _live_order(row) -> LiveOrder:
    values = list(row)
    values[ORDER_COLUMNS.index("status")] = row.status.value
    return LiveOrder(*values)


def _committed(connection: Connection, shard: str, lock: bool) -> int:
    query = select(RecorderProgress.sequence).where(RecorderProgress.shard == shard)
    if lock:
        query = query.with_for_update()
    return connection.execute(query).scalar() or 0


def _after(shard: str, committed: int, entries: Sequence[JournalEntry]) -> Sequence[JournalEntry]:
    """The entries after ``committed``; RecordingError unless they continue it one by one."""
    start = 0
    while start < len(entries) and entries[start].sequence <= committed:
        start += 1
    expected = committed + 1
    for entry in entries[start:]:
        if entry.sequence != expected:
            raise RecordingError(f"shard {shard}: entry {entry.sequence} where {expected} was expected (the "
                                 f"database has up to {committed}); entries must be consecutive")
        expected += 1
    return entries[start:]
