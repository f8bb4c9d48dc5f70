# cython: boundscheck=False, wraparound=False
"""The TES's reports of a book's events, made in C: `Reporter.apply` is
`servers.orders.OrderRegistry.apply` off the interpreter for the events of nearly every order.

A fill, an acceptance and a cancel (an IOC's remainder, a self-trade prevention's, the answer to
a cancel in flight) change the registry's orders and make their reports here, as the registry's
Python does; any other event goes to that Python, one event at a time, in its place
in the stream (the registry's `apply` keeps no state from one event to the next, so an event
applied alone has the same effect). The Python stays the specification: the tests replay the
same streams through both and compare the reports, the trades and the ledgers.
"""

from engine import messages as book
from engine.lifecycle import TERMINAL, Transition, next_state

from native.constants cimport BUY, REQUESTED
from native.structs cimport field, field_offset, set_field

cdef object FILLED = book.OrderFilled, ACCEPTED = book.OrderAccepted, CANCELED = book.OrderCanceled
cdef object TO_ACCEPT = Transition.ACCEPT, TO_CANCEL = Transition.CANCEL
cdef object TO_FILL_PART = Transition.FILL_PART, TO_FILL_ALL = Transition.FILL_ALL

# The events' fields read, by offset (`native.structs`).
cdef Py_ssize_t F_MAKER = field_offset(FILLED, "maker_id"), F_TAKER = field_offset(FILLED, "taker_id")
cdef Py_ssize_t F_MAKER_LEAVES = field_offset(FILLED, "maker_leaves")
cdef Py_ssize_t F_TAKER_LEAVES = field_offset(FILLED, "taker_leaves")
cdef Py_ssize_t F_AGGRESSOR = field_offset(FILLED, "aggressor"), F_PRICE = field_offset(FILLED, "price")
cdef Py_ssize_t F_QUANTITY = field_offset(FILLED, "quantity"), F_SEQUENCE = field_offset(FILLED, "sequence")
cdef Py_ssize_t A_ORDER = field_offset(ACCEPTED, "order_id"), A_SIDE = field_offset(ACCEPTED, "side")
cdef Py_ssize_t A_TYPE = field_offset(ACCEPTED, "order_type"), A_TIF = field_offset(ACCEPTED, "time_in_force")
cdef Py_ssize_t A_PRICE = field_offset(ACCEPTED, "price"), A_QUANTITY = field_offset(ACCEPTED, "quantity")
cdef Py_ssize_t A_STOP = field_offset(ACCEPTED, "stop_price"), A_DISPLAY = field_offset(ACCEPTED, "display_quantity")
cdef Py_ssize_t A_FLAGS = field_offset(ACCEPTED, "flags"), A_STP = field_offset(ACCEPTED, "stp")
cdef Py_ssize_t A_EXPIRE = field_offset(ACCEPTED, "expire_at")
cdef Py_ssize_t C_ORDER = field_offset(CANCELED, "order_id"), C_QUANTITY = field_offset(CANCELED, "quantity")
cdef Py_ssize_t C_REASON = field_offset(CANCELED, "reason")


cdef inline object average_price(notional, filled):
    """`servers.orders.Order.average_price` of an order's ``notional`` and ``filled``."""
    return notional / filled if filled else 0.0


cdef class Reporter:
    """The reports of ``registry`` (a `servers.orders.OrderRegistry`) made in C. ``order`` is its
    order class (`servers.orders.Order`), ``orderless`` the set of event types about no order
    (`servers.orders.ORDERLESS`); ``accepted``, ``filled`` and ``canceled`` are the report types
    `servers.protocol.OrderAccepted`, `OrderFilled` and `OrderCanceled`. An order's fields are
    read and written at their offsets."""

    cdef object fallback, order, orderless, accepted, filled, canceled
    cdef dict orders, open, numbers                  # the registry's, fixed for its life
    cdef Py_ssize_t o_id, o_trader, o_client, o_symbol, o_side, o_tif, o_quantity, o_stp, o_expire, o_filled
    cdef Py_ssize_t o_notional, o_state, o_requests

    def __init__(self, registry, order, orderless, accepted, filled, canceled):
        self.orders, self.open, self.numbers = registry.orders, registry.open, registry.numbers
        self.fallback = registry.apply
        self.order, self.orderless = order, orderless
        self.accepted, self.filled, self.canceled = accepted, filled, canceled
        self.o_id, self.o_trader = field_offset(order, "order_id"), field_offset(order, "trader_id")
        self.o_client, self.o_symbol = field_offset(order, "client_order_id"), field_offset(order, "symbol")
        self.o_side, self.o_tif = field_offset(order, "side"), field_offset(order, "time_in_force")
        self.o_quantity, self.o_stp = field_offset(order, "quantity"), field_offset(order, "stp")
        self.o_expire, self.o_filled = field_offset(order, "expire_at"), field_offset(order, "filled")
        self.o_notional, self.o_state = field_offset(order, "notional"), field_offset(order, "state")
        self.o_requests = field_offset(order, "requests")

    def apply(self, symbol, list events, time, list reports, list trades):
        """`OrderRegistry.apply`: one `Executed`'s ``events`` (of exchange ``time``) on ``symbol``
        as the traders' reports, appended to ``reports``, and its trades, to ``trades``."""
        for event in events:
            kind = type(event)
            if kind is FILLED:
                maker = self.orders.get(field(event, F_MAKER))
                taker = self.orders.get(field(event, F_TAKER))
                if (maker is None or type(maker) is self.order) and (taker is None or type(taker) is self.order):
                    self._filled(maker, taker, symbol, event, time, reports, trades)
                else:
                    self.fallback(symbol, [event], time, reports, trades)
                continue
            if kind in self.orderless:
                continue
            if kind is ACCEPTED:
                order = self.orders.get(field(event, A_ORDER))
            elif kind is CANCELED:
                order = self.orders.get(field(event, C_ORDER))
            else:
                order = self.orders.get(event.order_id)
            if order is None:
                continue
            if type(order) is not self.order:
                self.fallback(symbol, [event], time, reports, trades)
            elif kind is ACCEPTED:
                self._accepted(order, symbol, event, time, reports)
            elif kind is CANCELED:
                self._canceled(order, symbol, event, time, reports)
            else:
                self.fallback(symbol, [event], time, reports, trades)

    cdef object _number(self, trader):
        """The trader's next report number (`OrderRegistry.number`)."""
        number = self.numbers.get(trader, 0) + 1
        self.numbers[trader] = number
        return number

    cdef void _filled(self, maker, taker, symbol, event, time, list reports, list trades) except *:
        maker_trader = taker_trader = None
        if maker is not None:
            maker_trader = field(maker, self.o_trader)
            reports.append((maker_trader, self._fill(maker, event, field(event, F_MAKER_LEAVES), False, time)))
        if taker is not None:
            taker_trader = field(taker, self.o_trader)
            reports.append((taker_trader, self._fill(taker, event, field(event, F_TAKER_LEAVES), True, time)))
        if field(event, F_AGGRESSOR) == BUY:
            trades.append((symbol, field(event, F_PRICE), field(event, F_QUANTITY), taker_trader, maker_trader))
        else:
            trades.append((symbol, field(event, F_PRICE), field(event, F_QUANTITY), maker_trader, taker_trader))

    cdef object _fill(self, order, event, leaves, bint aggressor, time):
        """`OrderRegistry._fill`."""
        price, quantity = field(event, F_PRICE), field(event, F_QUANTITY)
        set_field(order, self.o_quantity, leaves)
        filled = field(order, self.o_filled) + quantity
        notional = field(order, self.o_notional) + price * quantity
        state = next_state(field(order, self.o_state), TO_FILL_PART if leaves else TO_FILL_ALL)
        set_field(order, self.o_filled, filled)
        set_field(order, self.o_notional, notional)
        set_field(order, self.o_state, state)
        report = self.filled(field(order, self.o_client), field(order, self.o_id), field(order, self.o_symbol),
                             field(order, self.o_side), price, quantity, leaves, field(event, F_SEQUENCE), aggressor,
                             time, self._number(field(order, self.o_trader)), state, filled,
                             average_price(notional, filled))
        if not leaves:
            self._close(order)
        return report

    cdef void _accepted(self, order, symbol, event, time, list reports) except *:
        state = next_state(field(order, self.o_state), TO_ACCEPT)
        set_field(order, self.o_state, state)
        set_field(order, self.o_tif, field(event, A_TIF))
        set_field(order, self.o_expire, field(event, A_EXPIRE))
        set_field(order, self.o_stp, field(event, A_STP))
        trader, filled = field(order, self.o_trader), field(order, self.o_filled)
        reports.append((trader, self.accepted(
            field(order, self.o_client), field(order, self.o_id), symbol, field(event, A_SIDE), field(event, A_TYPE),
            field(event, A_TIF), field(event, A_PRICE), field(event, A_QUANTITY), time, self._number(trader), state,
            filled, field(order, self.o_quantity), average_price(field(order, self.o_notional), filled),
            field(event, A_STOP), field(event, A_DISPLAY), field(event, A_FLAGS), field(event, A_STP),
            field(event, A_EXPIRE))))

    cdef void _canceled(self, order, symbol, event, time, list reports) except *:
        """An order canceled: at its trader's request, the oldest request in flight answered (its
        reason, and the request's client order id if the trader's own); else its own."""
        client_order_id, reason = field(order, self.o_client), field(event, C_REASON)
        requests = field(order, self.o_requests)
        if reason == REQUESTED and requests:
            request = requests.popleft()
            reason = request.reason
            if reason == REQUESTED:
                client_order_id = request.client_order_id
        state = next_state(field(order, self.o_state), TO_CANCEL)
        set_field(order, self.o_state, state)
        set_field(order, self.o_quantity, 0)
        trader, filled = field(order, self.o_trader), field(order, self.o_filled)
        reports.append((trader, self.canceled(
            client_order_id, field(order, self.o_id), symbol, field(event, C_QUANTITY), reason, time,
            self._number(trader), state, filled, 0, average_price(field(order, self.o_notional), filled))))
        self._close(order)

    cdef void _close(self, order) except *:
        """`OrderRegistry._close`: no longer open; forgotten unless a request awaits its answer."""
        order_id = field(order, self.o_id)
        trader_orders = self.open.get(field(order, self.o_trader))
        if trader_orders is not None:
            trader_orders.pop(order_id, None)
        if field(order, self.o_state) in TERMINAL and not field(order, self.o_requests):
            self.orders.pop(order_id, None)


cpdef void keep(dict kept, list reports, deque, int most) except *:
    """`servers.ledger.Ledger.apply`'s last step: each of ``reports`` (``(trader, report)``) kept
    for its trader, in ``kept`` (trader -> a ``deque`` of the latest ``most``)."""
    for trader, report in reports:
        reports_of = kept.get(trader)
        if reports_of is None:
            reports_of = kept[trader] = deque(maxlen=most)
        reports_of.append(report)


cdef class Books:
    """`servers.ledger.Ledger`'s portfolios fed the trades of a frame (`book`), as
    `servers.portfolio.Portfolio.fill` and `Holding.fill` do, those objects' fields read and
    written at their offsets. ``portfolio`` and ``holding`` are the two classes."""

    cdef dict portfolios
    cdef object portfolio, holding
    cdef Py_ssize_t p_cash, p_holdings, h_quantity, h_basis, h_realized

    def __init__(self, dict portfolios, portfolio, holding):
        self.portfolios, self.portfolio, self.holding = portfolios, portfolio, holding
        self.p_cash, self.p_holdings = field_offset(portfolio, "cash"), field_offset(portfolio, "holdings")
        self.h_quantity, self.h_basis = field_offset(holding, "quantity"), field_offset(holding, "basis")
        self.h_realized = field_offset(holding, "realized")

    def book(self, list trades):
        """Each trade ``(symbol, price, quantity, buyer, seller)`` into the portfolios of its buyer
        and its seller (None: a side not this TES's), in order."""
        for symbol, price, quantity, buyer, seller in trades:
            if buyer is not None:
                self._fill(buyer, symbol, True, price, quantity)
            if seller is not None:
                self._fill(seller, symbol, False, price, quantity)

    cdef void _fill(self, trader, symbol, bint buy, price, quantity) except *:
        """`Portfolio.fill` of the trader's portfolio (made if new), then `Holding.fill`."""
        portfolio = self.portfolios.get(trader)
        if portfolio is None:
            portfolio = self.portfolios[trader] = self.portfolio()
        elif type(portfolio) is not self.portfolio:
            raise TypeError(f"the portfolio of {trader!r} is a {type(portfolio).__name__}")
        holdings = field(portfolio, self.p_holdings)
        holding = holdings.get(symbol)
        if holding is None:
            holding = holdings[symbol] = self.holding()
        elif type(holding) is not self.holding:
            raise TypeError(f"the holding of {trader!r} in {symbol!r} is a {type(holding).__name__}")
        amount = price * quantity
        set_field(portfolio, self.p_cash, field(portfolio, self.p_cash) + (-amount if buy else amount))
        position = field(holding, self.h_quantity)
        signed = quantity if buy else -quantity
        if position == 0 or (position > 0) == buy:
            set_field(holding, self.h_quantity, position + signed)
            set_field(holding, self.h_basis, field(holding, self.h_basis) + signed * price)
            return
        size = abs(position)
        closed = quantity if quantity < size else size
        basis = field(holding, self.h_basis)
        share = abs(basis) * closed // size
        if position > 0:
            set_field(holding, self.h_realized, field(holding, self.h_realized) + (price * closed - share))
            set_field(holding, self.h_basis, basis - share)
            set_field(holding, self.h_quantity, position - closed)
        else:
            set_field(holding, self.h_realized, field(holding, self.h_realized) + (share - price * closed))
            set_field(holding, self.h_basis, basis + share)
            set_field(holding, self.h_quantity, position + closed)
        opened = quantity - closed
        if opened:
            opened_position = opened if buy else -opened
            set_field(holding, self.h_quantity, opened_position)
            set_field(holding, self.h_basis, opened_position * price)


cdef class Routing:
    """The routing of reports to sessions (`servers.tes.TradingEngineServer.route`, which says
    what it does), for ``tes``: ``answers`` is its set of the report types that answer a request,
    ``accepted`` and ``rejected`` `servers.protocol`'s `OrderAccepted` and `OrderRejected`."""

    cdef object tes, answers, accepted, rejected

    def __init__(self, tes, answers, accepted, rejected):
        self.tes, self.answers, self.accepted, self.rejected = tes, answers, accepted, rejected

    def route(self, list reports, bint routed):
        """Queue each of ``reports`` (``(trader, report)``) for its trader's session, counted by type;
        ``routed``: they may answer orders routed to a book."""
        tes = self.tes
        cdef dict by_trader = tes.sessions.by_trader, reported = tes.reported, rejects = tes.rejects
        cdef dict awaiting_of = tes.awaiting
        cdef list answered = tes.answered
        outbox = tes.outbox
        trader_id = session = box = awaiting = None
        for trader, message in reports:
            kind = type(message)
            reported[kind] += 1
            if trader is not trader_id:
                trader_id, session = trader, by_trader.get(trader)
                box = None if session is None else outbox[session.identity]
                awaiting = awaiting_of.get(trader) if routed else None
            if kind in self.answers:
                if kind is not self.accepted:
                    rejects[message.reason] += 1
                if (kind is self.accepted or kind is self.rejected) and awaiting:
                    read = awaiting.pop(message.client_order_id, None)
                    if read is not None and session is not None:
                        answered.append(read)
            if box is not None:
                box.append(message)
                session.last_report = message.report
