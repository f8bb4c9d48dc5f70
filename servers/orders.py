"""The trading engine server's orders: who owns each one, and what the books say about it.

Every order the server routes to a book is an `Order` here from the moment it is
sent until the book has said its last word about it. `OrderRegistry.apply` turns
the book events of an `Executed` into the client reports of the owning traders
and the trades to book into portfolios.

State
-----
An order's state follows the exchange's one transition table (`engine.lifecycle`):
PENDING until the book answers, then as its events say; a submission the server
refuses after routing it (the book never answered: its server was unavailable) is
REJECTED. Every order report carries the state after it, the cumulative filled
quantity, the open quantity and the average price of the fills (what a FIX
execution report needs), and the trader's next report number: reports are numbered
1, 2, 3... per trader over the exchange's life (`numbers`; `servers.ledger` keeps them).

Client order ids in reports
---------------------------
An order keeps the client order id it was entered with; fills, acceptance,
expiry and unfilled-remainder cancels carry it. A cancel or replace *request*
carries its own client order id, and the report answering that request
(OrderCanceled(REQUESTED), OrderReplaced, CancelRejected, ReplaceRejected) echoes
it. A book answers the commands of one connection in the order it received them,
so the requests in flight for an order form a FIFO queue (`Order.requests`).

Cancels the server sends on the trader's behalf (mass cancel, cancel-on-
disconnect) are reported with that reason (MASS_CANCEL, DISCONNECTED) and the
order's own client order id; if the order was already gone, nothing is reported.

Advanced orders
---------------
A stop or stop-limit order is open from its acceptance, ``held`` outside the book until
`StopTriggered` (reported as such), then trades as its type says. Self-trade prevention
cancels an order (`OrderCanceled` with reason SELF_TRADE, the order's own client order id)
or shrinks it without a trade (`OrderDecremented`; leaves 0: CANCELED and closed). A GTD
order expires (`OrderExpired`) when the OBS's clock passes its expiry. Book events about no
order (the clock, phases, an uncross's summary) make no report.
"""

from collections import deque

from engine import messages as book
from engine.lifecycle import OrderState, Transition, next_state
from engine.types import CancelReason, OrderType, RejectReason, Side
from native.idtable import IdTable
from native.routed import Order
from servers import protocol as p

Report = tuple[str, object]
"""(trader id, client message)."""
Trade = tuple[str, int, int, str | None, str | None]
"""(symbol, price, quantity, buying trader, selling trader); None for a side not ours."""
PENDING, ACCEPTED, REJECTED = OrderState.PENDING, OrderState.ACCEPTED, OrderState.REJECTED
BUY = Side.BUY
STOPS = frozenset({OrderType.STOP, OrderType.STOP_LIMIT})
"""The order types held outside the book until triggered."""
REQUESTED = CancelReason.REQUESTED
ACCEPT, CANCEL, REPLACE, REJECT, EXPIRE, TRIGGER, DECREMENT, FILL_PART, FILL_ALL = (
    Transition.ACCEPT, Transition.CANCEL, Transition.REPLACE, Transition.REJECT, Transition.EXPIRE,
    Transition.TRIGGER, Transition.DECREMENT, Transition.FILL_PART, Transition.FILL_ALL)
"""Members used per order, as plain names: on Python 3.11 ``Enum.MEMBER`` goes through
``EnumType.__getattr__`` and costs about 0.1 µs each time."""
ORDERLESS = frozenset({book.ClockAdvanced, book.PhaseChanged, book.AuctionUncrossed, book.CommandRejected})
"""Book events about no order."""


class Request:
    """A cancel or replace sent to the book and not yet answered."""

    __slots__ = ("cancel", "client_order_id", "reason")

    def __init__(self, cancel: bool, client_order_id: int, reason: CancelReason) -> None:
        self.cancel = cancel
        self.client_order_id = client_order_id
        self.reason = reason


class OrderRegistry:
    """Orders by exchange id, and each trader's open ones (in the order they were entered): each an
    `IdTable`, a mapping that the TES's paths in C read and change by the id as a C integer.

    ``numbers`` holds each trader's last report number; every report made here takes the next.
    """

    def __init__(self, numbers: dict[str, int] | None = None) -> None:
        self.orders: IdTable = IdTable()
        self.open: dict[str, IdTable] = {}
        self.numbers = {} if numbers is None else numbers
        self.keep_closed = False
        """Closed orders stay in ``orders`` even with no request awaiting its answer (`forget_closed`
        forgets them): while a recovering TES may adopt a request for one (`Ledger.keep_closed`)."""

    # ---------------------------------------------------------------- queries

    def open_count(self, trader_id: str) -> int:
        orders = self.open.get(trader_id)
        return len(orders) if orders else 0

    def owned(self, trader_id: str, order_id: int) -> Order | None:
        """The trader's open order with this id, or None (someone else's, finished, unknown)."""
        orders = self.open.get(trader_id)
        return orders.get(order_id) if orders else None

    def open_orders(self, trader_id: str, symbol: str = "") -> list[Order]:
        orders = self.open.get(trader_id)
        if not orders:
            return []
        return [order for order in orders.values() if not symbol or order.symbol == symbol]

    # ---------------------------------------------------------------- reports

    def number(self, trader_id: str) -> int:
        """The trader's next report number."""
        number = self.numbers.get(trader_id, 0) + 1
        self.numbers[trader_id] = number
        return number

    def rejected(self, trader_id: str, client_order_id: int, reason: RejectReason, text: str, time: int
                 ) -> p.OrderRejected:
        """The report of a submission refused before it became an order (by the server itself)."""
        return self._refused_submission(trader_id, client_order_id, reason, text, time)

    def request_rejected(self, kind: type, trader_id: str, client_order_id: int, order_id: int,
                         reason: RejectReason, text: str, time: int) -> p.CancelRejected | p.ReplaceRejected:
        """The report of a cancel or replace refused by the server itself (``kind`` says which);
        the order it names, if the trader's and open, gives its status."""
        order = self.owned(trader_id, order_id)
        if order is None:
            return kind(client_order_id, order_id, reason, text, time, self.number(trader_id))
        return self._about(order, kind, client_order_id, order_id, reason, text, time)

    def _about(self, order: Order, kind: type, *fields, **more):
        """A report ``kind(*fields, report, status, filled, leaves, average price, **more)`` about ``order``."""
        return kind(*fields, self.number(order.trader_id), order.state, order.filled, order.quantity,
                    order.average_price(), **more)

    # ---------------------------------------------------------------- commands sent

    def add(self, order: Order) -> None:
        """``order`` registered, and among its trader's open orders unless it is closed (one a
        snapshot holds while a request awaits its answer)."""
        self.orders[order.order_id] = order
        if order.closed:
            return
        orders = self.open.get(order.trader_id)
        if orders is None:
            orders = self.open[order.trader_id] = IdTable()
        orders[order.order_id] = order

    def request(self, order: Order, cancel: bool, client_order_id: int,
                reason: CancelReason = CancelReason.REQUESTED) -> None:
        if order.requests is None:
            order.requests = deque()
        order.requests.append(Request(cancel, client_order_id, reason))

    def unsent(self, commands: list, reports: list[Report], time: int) -> None:
        """Undo commands that could not be sent to their book and report each as refused (at ``time``)."""
        undone: list[tuple[Order, Request | None]] = []
        for command in reversed(commands):
            order = self.orders.get(getattr(command, "order_id", None))
            if order is None:
                continue
            if isinstance(command, p.BookSubmit):
                self._reject(order)
                undone.append((order, None))
                continue
            request = order.requests.pop()
            self._forget_if_done(order)
            if request.reason is REQUESTED:
                undone.append((order, request))
        reason = RejectReason.BOOK_UNAVAILABLE
        for order, request in reversed(undone):
            if request is None:
                report = self._refused_submission(order.trader_id, order.client_order_id, reason, reason.text, time)
            else:
                kind = p.CancelRejected if request.cancel else p.ReplaceRejected
                report = self._about(order, kind, request.client_order_id, order.order_id, reason, reason.text, time)
            reports.append((order.trader_id, report))

    def _refused_submission(self, trader_id: str, client_order_id: int, reason: RejectReason, text: str,
                            time: int) -> p.OrderRejected:
        return p.OrderRejected(client_order_id, reason, text, time, self.number(trader_id), REJECTED)

    def in_flight(self, symbols: set[str]) -> int:
        """How many orders in ``symbols`` await the answer to a command (submission, cancel, replace)."""
        return sum(1 for order in self.orders.values()
                   if order.symbol in symbols and (order.state is PENDING or order.requests))

    def abandon(self, symbols: set[str], reports: list[Report], time: int) -> None:
        """Refuse (BOOK_UNAVAILABLE) every command in flight on ``symbols``: their book will
        never answer them (it restarted without them, and has replayed every answer it had)."""
        reason = RejectReason.BOOK_UNAVAILABLE
        for order in [order for order in self.orders.values() if order.symbol in symbols]:
            if order.state is PENDING:
                order.requests = None
                self._reject(order)
                reports.append((order.trader_id, self._refused_submission(
                    order.trader_id, order.client_order_id, reason, reason.text, time)))
            while order.requests:
                self._answer(order, reason, reason.text, reports, time)

    # ---------------------------------------------------------------- answers from a book

    def refused(self, refusal: p.CommandRefused, reports: list[Report], time: int) -> None:
        """A command the book could not run at all: the submission if not yet accepted,
        else the oldest request in flight."""
        order = self.orders.get(refusal.order_id)
        if order is None:
            return
        if order.state is PENDING:
            self._reject(order)
            reports.append((order.trader_id, self._refused_submission(
                order.trader_id, order.client_order_id, refusal.reason, refusal.text, time)))
        elif order.requests:
            self._answer(order, refusal.reason, refusal.text, reports, time)

    def apply(self, symbol: str, events: list, time: int, reports: list[Report], trades: list[Trade]) -> None:
        """Translate one `Executed`'s events (of exchange ``time``); events about orders not ours are skipped.

        Dispatch is on the exact event type, fills and acceptances first: this runs
        for every order and is measurably faster than structural `match` patterns.
        The ledger reads its frames of replies through its copy in C (`native.reports.Reporter`),
        which sends here, one at a time, the events it does not make reports of itself: this
        method is that copy's specification.
        """
        orders = self.orders
        for event in events:
            kind = type(event)
            if kind is book.OrderFilled:
                maker = orders.get(event.maker_id)
                taker = orders.get(event.taker_id)
                maker_trader = taker_trader = None
                if maker is not None:
                    maker_trader = maker.trader_id
                    reports.append((maker_trader, self._fill(maker, event, event.maker_leaves, False, time)))
                if taker is not None:
                    taker_trader = taker.trader_id
                    reports.append((taker_trader, self._fill(taker, event, event.taker_leaves, True, time)))
                if event.aggressor == BUY:
                    trades.append((symbol, event.price, event.quantity, taker_trader, maker_trader))
                else:
                    trades.append((symbol, event.price, event.quantity, maker_trader, taker_trader))
                continue
            if kind in ORDERLESS:
                continue
            order = orders.get(event.order_id)
            if order is None:
                continue
            if kind is book.OrderAccepted:
                order.state = next_state(order.state, ACCEPT)
                order.time_in_force = event.time_in_force
                order.expire_at = event.expire_at
                order.stp = event.stp
                reports.append((order.trader_id, p.OrderAccepted(
                    order.client_order_id, order.order_id, symbol, event.side, event.order_type,
                    event.time_in_force, event.price, event.quantity, time, self.number(order.trader_id),
                    order.state, order.filled, order.quantity, order.average_price(), event.stop_price,
                    event.display_quantity, event.flags, event.stp, event.expire_at)))
            elif kind is book.OrderCanceled:
                client_order_id, reason = order.client_order_id, event.reason
                if reason == REQUESTED and order.requests:
                    request = order.requests.popleft()
                    reason = request.reason
                    if reason is REQUESTED:
                        client_order_id = request.client_order_id
                order.state = next_state(order.state, CANCEL)
                order.quantity = 0
                reports.append((order.trader_id, self._about(
                    order, p.OrderCanceled, client_order_id, order.order_id, symbol, event.quantity, reason, time)))
                self._close(order)
            elif kind is book.OrderReplaced:
                client_order_id = order.requests.popleft().client_order_id if order.requests \
                    else order.client_order_id
                order.state = next_state(order.state, REPLACE)
                order.price = event.price
                order.quantity = event.quantity
                reports.append((order.trader_id, self._about(
                    order, p.OrderReplaced, client_order_id, order.order_id, symbol, event.price, event.quantity,
                    event.priority_kept, time)))
            elif kind is book.OrderRejected:
                order.state = next_state(order.state, REJECT)
                order.quantity = 0
                reports.append((order.trader_id, self._about(
                    order, p.OrderRejected, order.client_order_id, event.reason, event.text, time)))
                self._close(order)
            elif kind is book.CancelRejected or kind is book.ReplaceRejected:
                if order.requests:
                    self._answer(order, event.reason, event.text, reports, time)
            elif kind is book.OrderExpired:
                order.state = next_state(order.state, EXPIRE)
                order.quantity = 0
                reports.append((order.trader_id, self._about(
                    order, p.OrderExpired, order.client_order_id, order.order_id, symbol, event.quantity, time)))
                self._close(order)
            elif kind is book.StopTriggered:
                order.state = next_state(order.state, TRIGGER)
                order.held = False
                reports.append((order.trader_id, self._about(
                    order, p.StopTriggered, order.client_order_id, order.order_id, symbol, event.last_price, time)))
            elif kind is book.OrderDecremented:
                order.state = next_state(order.state, DECREMENT if event.leaves else CANCEL)
                order.quantity = event.leaves
                reports.append((order.trader_id, self._about(
                    order, p.OrderDecremented, order.client_order_id, order.order_id, symbol, event.quantity,
                    time)))
                if not event.leaves:
                    self._close(order)

    # ---------------------------------------------------------------- internals

    def _fill(self, order: Order, fill: book.OrderFilled, leaves: int, aggressor: bool, time: int) -> p.OrderFilled:
        order.quantity = leaves
        order.filled += fill.quantity
        order.notional += fill.price * fill.quantity
        order.state = next_state(order.state, FILL_PART if leaves else FILL_ALL)
        report = p.OrderFilled(order.client_order_id, order.order_id, order.symbol, order.side, fill.price,
                               fill.quantity, leaves, fill.sequence, aggressor, time, self.number(order.trader_id),
                               order.state, order.filled, order.average_price())
        if not leaves:
            self._close(order)
        return report

    def _answer(self, order: Order, reason: RejectReason, text: str, reports: list[Report], time: int) -> None:
        """The oldest request in flight was refused: report it if the trader asked for it."""
        request = order.requests.popleft()
        if request.reason is REQUESTED:
            kind = p.CancelRejected if request.cancel else p.ReplaceRejected
            reports.append((order.trader_id, self._about(
                order, kind, request.client_order_id, order.order_id, reason, text, time)))
        self._forget_if_done(order)

    def _reject(self, order: Order) -> None:
        """A submission that never reached (or was refused before) its book: REJECTED, closed."""
        order.state = next_state(order.state, REJECT)
        order.quantity = 0
        self._close(order)

    def _close(self, order: Order) -> None:
        orders = self.open.get(order.trader_id)
        if orders is not None:
            orders.pop(order.order_id, None)
        self._forget_if_done(order)

    def _forget_if_done(self, order: Order) -> None:
        if order.closed and not order.requests and not self.keep_closed:
            self.orders.pop(order.order_id, None)

    def forget_closed(self) -> None:
        """Forget every closed order no request awaits the answer to."""
        for order_id in [order_id for order_id, order in self.orders.items() if order.closed and not order.requests]:
            del self.orders[order_id]
