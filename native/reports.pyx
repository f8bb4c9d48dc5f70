# cython: boundscheck=False, wraparound=False
"""The TES's reports of a book's replies, made in C: `Reporter.receive` is the ledger's
`servers.ledger.Ledger._receive` off the interpreter for a frame of replies that holds what nearly
every order brings.

It reads the frame's msgpack itself (`native.reader`) instead of having msgspec make an object of
each reply and event, in two passes. The first reads the whole frame into C records and checks it:
each `Executed` with every field, each event an acceptance, a fill or a cancel read field by field
and every other event or reply decoded alone by msgspec. A frame it cannot read so, whatever the
reason, goes whole to the Python (`Ledger._receive`), which decodes it as before and raises for one
that is malformed: nothing is changed before the frame has been read to its end. The second pass
applies the records in order, as the Python does. An acceptance, a fill or a cancel of one of the
registry's orders changes the order and makes its report here, written as msgpack, byte for byte
as msgspec writes the report Struct, and kept as bytes, a message already encoded, which the
TES's frames take as it is (`native.framing.join_frames`; `report_number` and `Routing.route` read
what they need of it, and `ReplyPath` hands the routing what `Reporter` noted as it wrote each one,
so that it is not read again); any other event goes to the registry's Python
(`servers.orders.OrderRegistry.apply`), one event at a time, in its place in the stream (it keeps
no state from one event to the next, so an event applied alone has the same effect).

The Python stays the specification: the tests replay the same streams through both and compare
the journals, the frames sent and the ledgers, byte for byte.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.float cimport PyFloat_AS_DOUBLE
from cpython.mem cimport PyMem_Free, PyMem_Malloc, PyMem_RawFree, PyMem_Realloc
from cpython.ref cimport Py_INCREF, Py_XDECREF, Py_XINCREF, PyObject
from cpython.unicode cimport PyUnicode_AsUTF8AndSize, PyUnicode_DecodeUTF8
from libc.stdint cimport int64_t, uint8_t
from libc.string cimport memcmp, memcpy, memset

import msgspec

from engine import messages as book
from engine.lifecycle import TERMINAL, TRANSITIONS, OrderState, Transition, next_state
from engine.types import CancelReason, OrderType, SelfTradePrevention, Side, TimeInForce
from native.book import by_value
from native.sockets import receive

from native.constants cimport BUY, REQUESTED, SELL
from native.int64 cimport LARGE, SMALL, as_int64
from native.reader cimport Reader, read_array, read_enum, read_int, read_str, read_tag, skip
from native.structs cimport check_fields
from native.framing cimport Records
from native.idtable cimport IdTable
from native.portfolios cimport Holding, Portfolio, fill
from native.routed cimport Order
from native.wire cimport (MAX_HEADER, Writer, wire_array, wire_bin, wire_bool, wire_float, wire_int, wire_room,
                          wire_str, wire_tagged)

cdef object FILLED = book.OrderFilled, ACCEPTED = book.OrderAccepted, CANCELED = book.OrderCanceled
cdef object TO_ACCEPT = Transition.ACCEPT, TO_CANCEL = Transition.CANCEL
cdef object TO_FILL_PART = Transition.FILL_PART, TO_FILL_ALL = Transition.FILL_ALL
cdef object EVENT_ERRORS = (msgspec.DecodeError, msgspec.ValidationError)


cdef tuple SIDES = by_value(Side), ORDER_TYPES = by_value(OrderType), TIFS = by_value(TimeInForce)
cdef tuple STPS = by_value(SelfTradePrevention), CANCEL_REASONS = by_value(CancelReason)


cdef enum:
    # what a record of the first pass holds
    OTHER = 0                # an event or reply decoded by msgspec
    IS_ACCEPTED = 1
    IS_FILLED = 2
    IS_CANCELED = 3
    IS_EXECUTED = 4
    FIELDS = 12              # the most fields of an event read in C (OrderAccepted's)

# The fields of each message read or written here, in order: a Reporter is not made if one changes.
EVENT_FIELDS = {
    FILLED: ("maker_id", "taker_id", "price", "quantity", "maker_leaves", "taker_leaves", "aggressor", "sequence"),
    ACCEPTED: ("order_id", "side", "order_type", "time_in_force", "price", "quantity", "stop_price",
               "display_quantity", "flags", "owner", "stp", "expire_at"),
    CANCELED: ("order_id", "quantity", "reason"),
}
REPORT_FIELDS = {
    "OrderAccepted": ("client_order_id", "order_id", "symbol", "side", "order_type", "time_in_force", "price",
                      "quantity", "time", "report", "status", "filled", "leaves", "average_price", "stop_price",
                      "display_quantity", "flags", "stp", "expire_at"),
    "OrderFilled": ("client_order_id", "order_id", "symbol", "side", "price", "quantity", "leaves", "trade_id",
                    "aggressor", "time", "report", "status", "filled", "average_price"),
    "OrderCanceled": ("client_order_id", "order_id", "symbol", "quantity", "reason", "time", "report", "status",
                      "filled", "leaves", "average_price"),
}
EXECUTED_FIELDS = ("sequence", "symbol", "events", "time")


cdef enum:
    # the transitions `Reporter._next` keeps its last answer for, each its own
    ACCEPTING = 0
    CANCELING = 1
    FILLING_PART = 2
    FILLING_ALL = 3


cdef enum:
    # which report `Reporter` wrote (`peek`'s answer, the index of its tag in `TAGS`)
    ACCEPTED_REPORT = 0
    FILLED_REPORT = 1
    CANCELED_REPORT = 2


ctypedef struct Noted:       # a report `Reporter` wrote, for `Routing` to read without parsing it
    void* report             # the bytes object, compared by identity only (the reports list holds it)
    int kind                 # ACCEPTED_REPORT, FILLED_REPORT or CANCELED_REPORT
    int64_t client_order_id
    int64_t number


ctypedef struct Trade:       # a fill to book into portfolios (`Books`); it holds a reference to each object
    PyObject* symbol
    int64_t price, quantity
    PyObject* buyer          # NULL: not a trader of this TES
    PyObject* seller


ctypedef struct Booked:      # a side's last trader and symbol booked, and their portfolio and holding
    PyObject* trader         # (all borrowed: the portfolios hold them while `Books._book` runs)
    PyObject* symbol
    PyObject* portfolio
    PyObject* holding


ctypedef struct Record:
    int kind                 # OTHER, IS_ACCEPTED, IS_FILLED, IS_CANCELED or IS_EXECUTED
    int64_t f[FIELDS]        # an event's fields in order; an Executed's sequence and time
    Py_ssize_t index         # OTHER: its object in `others`; IS_EXECUTED: its symbol in `symbols`
    Py_ssize_t events        # IS_EXECUTED: how many event records follow


# A fill's price and quantity below `SMALL` and an order's filled quantity and notional below
# `LARGE` (native/int64.pxd) are summed and multiplied in C (every result fits an int64); others as
# Python ints.

cdef int64_t EXACT = (<int64_t>1) << 53
"""Integers of magnitude up to this are exact as doubles."""


cdef inline double average_price(notional, int64_t filled) except? -1.0:
    """`servers.orders.Order.average_price` of an order's ``notional`` and ``filled``: where both are
    exact as doubles, their quotient in C, as Python's int division computes it then."""
    cdef int64_t n
    if not as_int64(notional, &n) and -EXACT <= n <= EXACT and 0 < filled <= EXACT:
        return <double>n / <double>filled
    return PyFloat_AS_DOUBLE(notional / filled if filled else 0.0)


cdef inline void wire_status(Writer* w, bytes status) noexcept:
    """A status, ``status`` its UTF-8 (room made by `Reporter._begin`)."""
    wire_str(w, PyBytes_AS_STRING(status), PyBytes_GET_SIZE(status))


cdef inline int64_t int64_of(value) except? -1:
    """A Python int (or IntEnum) that a report holds: OverflowError if it lies beyond int64."""
    cdef int64_t number
    if as_int64(value, &number):
        raise OverflowError(f"{value} lies beyond int64 in a report")
    return number


cdef inline void wire_object(Writer* w, value) except *:
    """A Python int (or IntEnum) within int64 (`MAX_HEADER` bytes of room)."""
    wire_int(w, int64_of(value))


cdef void* doubled(void* items, Py_ssize_t* capacity, size_t size, str what) except NULL:
    """``items`` (``capacity[0]`` of ``size`` bytes each) reallocated to twice as many, at least
    256, and ``capacity[0]`` set to that; if there is no room, MemoryError (out of memory ``what``)
    and ``items`` as it was."""
    cdef Py_ssize_t more = max(256, 2 * capacity[0])
    cdef void* grown = PyMem_Realloc(items, more * size)
    if grown == NULL:
        raise MemoryError(f"out of memory {what}")
    capacity[0] = more
    return grown


cdef class Reporter:
    """`servers.ledger.Ledger._receive` made in C for ``ledger`` (see the module docstring).

    ``reply`` is the type of one of a book server's replies (`servers.protocol.ObsReply`),
    ``executed`` the `Executed` reply's class, ``refused`` `CommandRefused`'s, and ``accepted``,
    ``filled`` and ``canceled`` the classes of the reports written here
    (`servers.protocol.OrderAccepted`, `OrderFilled` and `OrderCanceled`), whose fields it checks.
    The registry's orders are `native.routed.Order`s, their fields read and written as C fields."""

    cdef object ledger, registry, executed, refused, decode_event, decode_reply, fallback, book_bound
    cdef Books books             # the ledger's `Books`, while its ``book_trades`` is `book_bound` (its `book`)
    cdef Trade* trades           # the fills of the frame being applied, in order, booked when it is done
    cdef Py_ssize_t trades_capacity, trade_count
    cdef list spilled            # the trades the registry's Python (`fallback`) appended, to move into `trades`
    cdef IdTable orders
    cdef dict open, numbers, last_sequence, seen, states, accept, cancel, fill_part, fill_all
    cdef Record* records
    cdef PyObject* came_from[4]  # per transition (ACCEPTING...), the state `_next` last moved from
    cdef PyObject* went_to[4]    # and the state it moved to: both held by that transition's table
    cdef PyObject* stated[3]     # per kind of report (ACCEPTED_REPORT...), the state `_begin` last wrote
    cdef PyObject* status_text[3]  # and its msgpack text: both held by `states`
    cdef Py_ssize_t capacity, count
    cdef Noted* noted            # the reports written by the last `_take`, in order (`Routing._route`)
    cdef Py_ssize_t noted_capacity, noted_count
    cdef int64_t client_order_id  # the client order id and number of the report being written
    cdef int64_t report_number
    cdef list symbols, others
    cdef Writer wire
    cdef object numbered         # the trader whose report numbers `_wire_number` counts in C (None: none)
    cdef int64_t number          # the last number it gave ``numbered``, which `_numbered` writes back
    cdef public bint keep_closed
    """Closed orders stay in the registry, as `OrderRegistry.keep_closed` (`Ledger.keep_closed`)."""

    def __init__(self, ledger, reply, executed, refused, accepted, filled, canceled):
        registry = ledger.orders
        self.ledger, self.registry = ledger, registry
        self.orders, self.open, self.numbers = registry.orders, registry.open, registry.numbers
        self.last_sequence, self.seen = ledger.last_sequence, ledger.seen
        self.executed, self.refused = executed, refused
        self.fallback = registry.apply
        self.decode_event = msgspec.msgpack.Decoder(book.Event).decode
        self.decode_reply = msgspec.msgpack.Decoder(reply).decode
        for cls, names in EVENT_FIELDS.items():
            check_fields(cls, cls.__name__, names, "reports.pyx")
        for cls in (accepted, filled, canceled):
            check_fields(cls, cls.__name__, REPORT_FIELDS[cls.__name__], "reports.pyx")
        check_fields(executed, "Executed", EXECUTED_FIELDS, "reports.pyx")
        self.states = {state: state.value.encode() for state in OrderState}
        self.accept, self.cancel = self._after(TO_ACCEPT), self._after(TO_CANCEL)
        self.fill_part, self.fill_all = self._after(TO_FILL_PART), self._after(TO_FILL_ALL)
        self.symbols, self.others, self.spilled = [], [], []
        self.book_bound = ledger.book_trades
        found = getattr(self.book_bound, "__self__", None)
        self.books = found if type(found) is Books else None

    def __dealloc__(self):
        self._drop_trades()
        PyMem_Free(self.trades)
        PyMem_Free(self.records)
        PyMem_Free(self.noted)
        PyMem_RawFree(self.wire.data)

    cdef dict _after(self, transition):
        """Each state's next state after ``transition``, where the lifecycle allows it."""
        return {state: after for (state, moved), after in TRANSITIONS.items() if moved is transition}

    cdef object _next(self, int which, dict after, state, transition):
        """`engine.lifecycle.next_state`, from ``after`` (`_after`'s table for ``transition``, which
        is ``which``: ACCEPTING...); the last state found there for it and its next state are kept
        (`came_from`, `went_to`: borrowed from the table, which holds them for the Reporter's life),
        since most orders move the same way."""
        if <PyObject*>state == self.came_from[which]:
            return <object>self.went_to[which]
        found = after.get(state)
        if found is None:
            return next_state(state, transition)
        self.came_from[which], self.went_to[which] = <PyObject*>state, <PyObject*>found
        return found

    def receive(self, record, list reports):
        """`Ledger._receive` of ``record`` (a `servers.ledger.Received`): the reports appended to
        ``reports``; returns the frame's replies other than `Executed` (which only the ledger
        reads), decoded. A frame not of the common shape goes whole to the Python."""
        frame = record.frame
        replies = self._take(frame, record.shard, record.time, reports) if type(frame) is bytes else None
        return self.ledger._receive(record, reports) if replies is None else replies

    cdef list _take(self, bytes frame, shard, time, list reports):
        """Both passes over ``frame``, of the `Received` of ``shard`` at ``time``: its replies other
        than `Executed`, or None if it is not of the common shape (then nothing was changed)."""
        self.noted_count = 0
        try:
            if not self._read(frame):
                return None
            return self._apply(shard, time, reports)
        finally:
            self._numbered()
            self.symbols.clear()
            self.others.clear()
            self._drop_trades()

    # ---------------------------------------------------------------- the first pass

    cdef Record* _next_record(self) except NULL:
        if self.count == self.capacity:
            self.records = <Record*>doubled(self.records, &self.capacity, sizeof(Record), "reading a frame of replies")
        self.count += 1
        return &self.records[self.count - 1]

    cdef bint _read(self, bytes frame) except -1:
        """The first pass: ``frame`` into `records`, `symbols` and `others`; False if it is not
        of the common shape (some of it may have been read then)."""
        cdef Reader r
        cdef Py_ssize_t replies, fields, i, start
        cdef Record* other
        r.data, r.size, r.pos = <const uint8_t*>PyBytes_AS_STRING(frame), PyBytes_GET_SIZE(frame), 0
        self.count = 0
        if not read_array(&r, &replies):
            return False
        for i in range(replies):
            start = r.pos
            if read_array(&r, &fields) and fields == 5 and read_tag(&r, b"Executed", 8):
                if not self._executed(&r):
                    return False
                continue
            r.pos = start
            if not skip(&r, 0):
                return False
            other = self._next_record()
            other.kind, other.index = OTHER, len(self.others)
            try:
                reply = self.decode_reply(<bytes>PyBytes_FromStringAndSize(<const char*>&r.data[start], r.pos - start))
            except EVENT_ERRORS:
                return False
            if type(reply) is self.executed:
                return False
            self.others.append(reply)
        return r.pos == r.size

    cdef bint _executed(self, Reader* r) except -1:
        """An `Executed` after its tag: its sequence, symbol, events and time."""
        cdef Record* executed
        cdef Py_ssize_t events, j, at
        cdef int64_t sequence, time
        cdef const char* text
        cdef Py_ssize_t size
        if not (read_int(r, &sequence) and read_str(r, &text, &size) and read_array(r, &events)):
            return False
        at = self.count
        executed = self._next_record()
        executed.kind, executed.f[0], executed.events = IS_EXECUTED, sequence, events
        executed.index = self._symbol(text, size)
        if executed.index < 0:
            return False
        for j in range(events):
            if not self._read_event(r):
                return False
        if not read_int(r, &time):
            return False
        self.records[at].f[1] = time
        return True

    cdef Py_ssize_t _symbol(self, const char* text, Py_ssize_t size) except -2:
        """The index in `symbols` of the str of ``text`` (the last one's again if the same); -1
        if it is not UTF-8."""
        cdef Py_ssize_t n
        cdef const char* last
        if self.symbols:
            last = PyUnicode_AsUTF8AndSize(self.symbols[len(self.symbols) - 1], &n)
            if n == size and memcmp(last, text, <size_t>size) == 0:
                return len(self.symbols) - 1
        try:
            self.symbols.append(PyUnicode_DecodeUTF8(text, size, NULL))
        except UnicodeDecodeError:
            return -1
        return len(self.symbols) - 1

    cdef bint _read_event(self, Reader* r) except -1:
        """One event: read in C if an acceptance, a fill or a cancel, else decoded by msgspec."""
        cdef Py_ssize_t start = r.pos, count
        cdef Record* event
        cdef int64_t* f
        if not read_array(r, &count):
            return False
        event = self._next_record()
        f = event.f
        if count == 13 and read_tag(r, b"OrderAccepted", 13):
            event.kind = IS_ACCEPTED
            return (read_int(r, &f[0]) and read_enum(r, SIDES, &f[1]) and read_enum(r, ORDER_TYPES, &f[2])
                    and read_enum(r, TIFS, &f[3]) and read_int(r, &f[4]) and read_int(r, &f[5])
                    and read_int(r, &f[6]) and read_int(r, &f[7]) and read_int(r, &f[8]) and read_int(r, &f[9])
                    and read_enum(r, STPS, &f[10]) and read_int(r, &f[11]))
        if count == 9 and read_tag(r, b"OrderFilled", 11):
            event.kind = IS_FILLED
            return (read_int(r, &f[0]) and read_int(r, &f[1]) and read_int(r, &f[2]) and read_int(r, &f[3])
                    and read_int(r, &f[4]) and read_int(r, &f[5]) and read_enum(r, SIDES, &f[6])
                    and read_int(r, &f[7]))
        if count == 4 and read_tag(r, b"OrderCanceled", 13):
            event.kind = IS_CANCELED
            return read_int(r, &f[0]) and read_int(r, &f[1]) and read_enum(r, CANCEL_REASONS, &f[2])
        r.pos = start
        if not skip(r, 0):
            return False
        event.kind = OTHER
        event.index = len(self.others)
        try:
            self.others.append(self.decode_event(<bytes>PyBytes_FromStringAndSize(
                <const char*>&r.data[start], r.pos - start)))
        except EVENT_ERRORS:
            return False
        return True

    # ---------------------------------------------------------------- the second pass

    cdef list _apply(self, shard, time, list reports):
        """The second pass: the records read, applied in order as `Ledger._receive` applies the
        decoded frame of the `Received` of ``shard`` at ``time``. The shard's last sequence seen and
        each symbol's last sequence applied are followed as C integers while a run of one symbol's
        replies lasts (`_symbol_done` writes them back, and the symbol's last trade to mark, when
        the run ends): nothing else reads them meanwhile. The fills are noted in C (`_trade`) and
        booked into the portfolios once every event is applied (`Books._book`, or the ledger's own
        ``book_trades`` if it has been given another), as the Python books its list of trades."""
        cdef Py_ssize_t i = 0, j, traded, current = -1
        cdef Record* executed
        cdef list replies = []
        cdef dict marked = {}
        cdef int64_t sequence, seen_value = 0, last = -1, marked_sequence = 0
        cdef bint seeing, moved = False
        marked_price = None
        seen = self.seen.get(shard)
        seeing = seen is not None
        if seeing:
            seen_value = int64_of(seen)
        try:
            while i < self.count:
                executed = &self.records[i]
                if executed.kind == OTHER:
                    reply = self.others[executed.index]
                    replies.append(reply)
                    if type(reply) is self.refused:
                        self._numbered()
                        self.registry.refused(reply, reports, time)
                    i += 1
                    continue
                if executed.index != current:
                    self._symbol_done(current, last, moved, marked, marked_sequence, marked_price)
                    current, moved, marked_price = executed.index, False, None
                    found = self.last_sequence.get(self.symbols[current])
                    last = -1 if found is None else int64_of(found)
                sequence = executed.f[0]
                if seeing and sequence > seen_value:
                    seen_value = sequence
                if sequence > last:
                    last, moved = sequence, True
                    symbol = self.symbols[current]
                    traded = self.trade_count
                    for j in range(i + 1, i + 1 + executed.events):
                        self._event(&self.records[j], symbol, executed.f[1], reports)
                    if self.trade_count > traded:
                        marked_sequence, marked_price = sequence, self.trades[self.trade_count - 1].price
                i += 1 + executed.events
        finally:  # a symbol's last sequence is written as the Python writes it, before its events
            self._symbol_done(current, last, moved, marked, marked_sequence, marked_price)
        self.seen[shard] = seen_value if seeing else None
        self._numbered()
        for symbol, (sequence_of, price) in marked.items():
            self.ledger.mark(symbol, sequence_of, price)
        if self.books is not None and self.ledger.book_trades is self.book_bound:
            self.books._book(self.trades, self.trade_count)
        else:
            self.ledger.book_trades([(<object>t.symbol, t.price, t.quantity,
                                      None if t.buyer == NULL else <object>t.buyer,
                                      None if t.seller == NULL else <object>t.seller)
                                     for t in self.trades[:self.trade_count]])
        return replies

    cdef void _trade(self, symbol, int64_t price, int64_t quantity, buyer, seller) except *:
        """Note a fill to book when the frame is done (None: a side not of this TES)."""
        cdef Trade* t
        if self.trade_count == self.trades_capacity:
            self.trades = <Trade*>doubled(self.trades, &self.trades_capacity, sizeof(Trade), "noting a frame's trades")
        t = &self.trades[self.trade_count]
        t.symbol, t.price, t.quantity = <PyObject*>symbol, price, quantity
        t.buyer = NULL if buyer is None else <PyObject*>buyer
        t.seller = NULL if seller is None else <PyObject*>seller
        Py_INCREF(symbol)
        Py_XINCREF(t.buyer)
        Py_XINCREF(t.seller)
        self.trade_count += 1

    cdef void _spill(self, symbol, list events, int64_t at, list reports) except *:
        """The registry's Python applies ``events`` (`OrderRegistry.apply`); the trades it appends
        are noted in order."""
        cdef Py_ssize_t k
        self._numbered()
        try:
            self.fallback(symbol, events, at, reports, self.spilled)
        finally:
            for k in range(len(self.spilled)):
                traded, price, quantity, buyer, seller = self.spilled[k]
                self._trade(traded, int64_of(price), int64_of(quantity), buyer, seller)
            self.spilled.clear()

    cdef void _drop_trades(self) noexcept:
        """Forget the trades noted, releasing what they hold."""
        cdef Trade* t
        while self.trade_count:
            self.trade_count -= 1
            t = &self.trades[self.trade_count]
            Py_XDECREF(t.symbol)
            Py_XDECREF(t.buyer)
            Py_XDECREF(t.seller)

    cdef void _symbol_done(self, Py_ssize_t current, int64_t last, bint moved, dict marked, int64_t marked_sequence,
                           marked_price) except *:
        """The end of a run of replies on the symbol ``current`` (its index in `symbols`; -1: none):
        its last sequence applied, ``last``, written back if the run ``moved`` it, and its last
        trade in the run (``marked_price`` at ``marked_sequence``; None: none) noted to mark."""
        if current < 0:
            return
        symbol = self.symbols[current]
        if moved:
            self.last_sequence[symbol] = last
        if marked_price is not None:
            marked[symbol] = (marked_sequence, marked_price)

    cdef void _event(self, Record* event, symbol, int64_t at, list reports) except *:
        """`OrderRegistry.apply` of one event of an `Executed` on ``symbol`` at exchange time ``at``."""
        cdef int64_t* f = event.f
        if event.kind == OTHER:
            self._spill(symbol, [self.others[event.index]], at, reports)
            return
        if event.kind == IS_FILLED:
            maker, taker = self.orders.get_id(f[0]), self.orders.get_id(f[1])
            if (maker is None or type(maker) is Order) and (taker is None or type(taker) is Order):
                self._filled(maker, taker, symbol, f, at, reports)
            else:
                self._spill(symbol, [self._event_object(event)], at, reports)
            return
        order = self.orders.get_id(f[0])
        if order is None:
            return
        if type(order) is not Order:
            self._spill(symbol, [self._event_object(event)], at, reports)
        elif event.kind == IS_ACCEPTED:
            self._accepted(<Order>order, symbol, f, at, reports)
        else:
            self._canceled(<Order>order, symbol, f, at, reports)

    cdef object _event_object(self, Record* event):
        """The event Struct of a record read in C, for the registry's Python."""
        cdef int64_t* f = event.f
        if event.kind == IS_FILLED:
            return FILLED(f[0], f[1], f[2], f[3], f[4], f[5], SIDES[f[6]], f[7])
        if event.kind == IS_ACCEPTED:
            return ACCEPTED(f[0], SIDES[f[1]], ORDER_TYPES[f[2]], TIFS[f[3]], f[4], f[5], f[6], f[7], f[8], f[9],
                            STPS[f[10]], f[11])
        return CANCELED(f[0], f[1], CANCEL_REASONS[f[2]])

    cdef void _wire_number(self, Writer* w, trader) except *:
        """Write the trader's next report number (`OrderRegistry.number`), counted in C while one
        trader's reports come (`numbered`), whose count `_numbered` writes back into ``numbers``
        before anything else reads them."""
        cdef int64_t last
        if trader is not self.numbered:
            self._numbered()
            found = self.numbers.get(trader, 0)
            if type(found) is not int or as_int64(found, &last) or not 0 <= last < LARGE:
                number = found + 1
                self.numbers[trader] = number
                self.report_number = int64_of(number)
                wire_int(w, self.report_number)
                return
            self.numbered, self.number = trader, last
        self.number += 1
        self.report_number = self.number
        wire_int(w, self.number)

    cdef void _numbered(self) except *:
        """Write the report number counted in C (`_wire_number`) back into ``numbers``."""
        if self.numbered is not None:
            self.numbers[self.numbered] = self.number
            self.numbered = None

    cdef void _filled(self, maker, taker, symbol, int64_t* f, int64_t at, list reports) except *:
        """A fill (``f``: `engine.messages.OrderFilled`'s fields) of ``maker`` and ``taker``
        (None: not an order of this TES)."""
        maker_trader = taker_trader = None
        if maker is not None:
            maker_trader = (<Order>maker).trader_id
            reports.append((maker_trader, self._fill(<Order>maker, f, f[4], False, at)))
        if taker is not None:
            taker_trader = (<Order>taker).trader_id
            reports.append((taker_trader, self._fill(<Order>taker, f, f[5], True, at)))
        if f[6] == BUY:
            self._trade(symbol, f[2], f[3], taker_trader, maker_trader)
        else:
            self._trade(symbol, f[2], f[3], maker_trader, taker_trader)

    cdef object _fill(self, Order order, int64_t* f, int64_t leaves, bint aggressor, int64_t at):
        """`OrderRegistry._fill`: the order changed, its report. Its filled quantity is summed in C
        while both lie in 0..`LARGE` and 0..`SMALL`, else as Python ints (OverflowError beyond int64:
        no book's fills come to that), and its notional likewise."""
        cdef Writer* w = &self.wire
        cdef int64_t before_notional
        order.quantity = leaves
        if 0 <= order.filled < LARGE and 0 <= f[3] < SMALL:
            order.filled += f[3]
        else:
            order.filled = (<object>order.filled) + (<object>f[3])
        before = order.notional
        if (not as_int64(before, &before_notional) and -LARGE < before_notional < LARGE
                and -SMALL < f[2] < SMALL and 0 <= f[3] < SMALL):
            notional = before_notional + f[2] * f[3]
        else:
            notional = before + (<object>f[2]) * (<object>f[3])
        order.notional = notional
        if leaves:
            state = self._next(FILLING_PART, self.fill_part, order.state, TO_FILL_PART)
        else:
            state = self._next(FILLING_ALL, self.fill_all, order.state, TO_FILL_ALL)
        order.state = state
        status = self._begin(FILLED_REPORT, b"OrderFilled", 14, order.client_order_id, order, order.symbol, state)
        wire_object(w, order.side)
        wire_int(w, f[2])
        wire_int(w, f[3])
        wire_int(w, leaves)
        wire_int(w, f[7])
        wire_bool(w, aggressor)
        wire_int(w, at)
        self._wire_number(w, order.trader_id)
        wire_status(w, status)
        wire_int(w, order.filled)
        wire_float(w, average_price(notional, order.filled))
        if not leaves:
            self._close(order)
        return self._written(FILLED_REPORT)

    cdef void _accepted(self, Order order, symbol, int64_t* f, int64_t at, list reports) except *:
        """An acceptance (``f``: `engine.messages.OrderAccepted`'s fields)."""
        cdef Writer* w = &self.wire
        state = self._next(ACCEPTING, self.accept, order.state, TO_ACCEPT)
        order.state = state
        order.time_in_force = TIFS[f[3]]
        order.expire_at = f[11]
        order.stp = STPS[f[10]]
        trader = order.trader_id
        status = self._begin(ACCEPTED_REPORT, b"OrderAccepted", 19, order.client_order_id, order, symbol, state)
        for i in range(1, 6):
            wire_int(w, f[i])
        wire_int(w, at)
        self._wire_number(w, trader)
        wire_status(w, status)
        wire_int(w, order.filled)
        wire_int(w, order.quantity)
        wire_float(w, average_price(order.notional, order.filled))
        wire_int(w, f[6])
        wire_int(w, f[7])
        wire_int(w, f[8])
        wire_int(w, f[10])
        wire_int(w, f[11])
        reports.append((trader, self._written(ACCEPTED_REPORT)))

    cdef void _canceled(self, Order order, symbol, int64_t* f, int64_t at, list reports) except *:
        """An order canceled (``f``: `engine.messages.OrderCanceled`'s fields): at its trader's
        request, the oldest request in flight answered (its reason, and the request's client
        order id if the trader's own); else its own."""
        cdef Writer* w = &self.wire
        cdef int64_t client_order_id = order.client_order_id
        reason = CANCEL_REASONS[f[2]]
        requests = order.requests
        if f[2] == REQUESTED and requests:
            request = requests.popleft()
            reason = request.reason
            if reason is CANCEL_REASONS[REQUESTED]:
                client_order_id = int64_of(request.client_order_id)
        state = self._next(CANCELING, self.cancel, order.state, TO_CANCEL)
        order.state = state
        order.quantity = 0
        trader = order.trader_id
        status = self._begin(CANCELED_REPORT, b"OrderCanceled", 11, client_order_id, order, symbol, state)
        wire_int(w, f[1])
        wire_object(w, reason)
        wire_int(w, at)
        self._wire_number(w, trader)
        wire_status(w, status)
        wire_int(w, order.filled)
        wire_int(w, 0)
        wire_float(w, average_price(order.notional, order.filled))
        reports.append((trader, self._written(CANCELED_REPORT)))
        self._close(order)

    cdef bytes _begin(self, int kind, const char* tag, Py_ssize_t fields, int64_t client_order_id, Order order,
                      symbol, state):
        """Begin a report of ``kind`` (ACCEPTED_REPORT...) in `wire`, emptied, with room made for all
        of it: the array and ``tag`` of a report of ``fields`` fields, then its client order id,
        ``order``'s id and ``symbol``. Returns the msgpack text of ``state``, the status, which the
        caller writes in its place (`wire_status`): the last one of each kind of report is kept
        (`stated`, `status_text`: borrowed from `states`, which holds them for the Reporter's life).
        The client order id is kept for `_written`, as `_wire_number` keeps the report's number."""
        cdef Writer* w = &self.wire
        cdef Py_ssize_t symbol_size
        cdef const char* symbol_text = PyUnicode_AsUTF8AndSize(symbol, &symbol_size)
        cdef bytes status
        if <PyObject*>state == self.stated[kind]:
            status = <bytes>self.status_text[kind]
        else:
            status = self.states[state]
            self.stated[kind], self.status_text[kind] = <PyObject*>state, <PyObject*>status
        w.size = 0
        wire_room(w, MAX_HEADER + 32 + fields * MAX_HEADER + symbol_size + PyBytes_GET_SIZE(status))
        wire_tagged(w, tag, fields)
        self.client_order_id = client_order_id
        wire_int(w, client_order_id)
        wire_int(w, order.order_id)
        wire_str(w, symbol_text, symbol_size)
        return status

    cdef bytes _written(self, int kind):
        """The report in `wire`, of ``kind`` (ACCEPTED_REPORT, ...), as bytes, noted in `noted`."""
        cdef Noted* note
        report = PyBytes_FromStringAndSize(<char*>self.wire.data, self.wire.size)
        if self.noted_count == self.noted_capacity:
            self.noted = <Noted*>doubled(self.noted, &self.noted_capacity, sizeof(Noted), "noting a frame's reports")
        note = &self.noted[self.noted_count]
        self.noted_count += 1
        note.report, note.kind = <void*>report, kind
        note.client_order_id, note.number = self.client_order_id, self.report_number
        return report

    cdef void _close(self, Order order) except *:
        """`OrderRegistry._close`: no longer open; forgotten unless a request awaits its answer (or
        `keep_closed`)."""
        cdef IdTable trader_orders = self.open.get(order.trader_id)
        if trader_orders is not None:
            trader_orders.pop_id(order.order_id)
        if order.state in TERMINAL and not order.requests and not self.keep_closed:
            self.orders.pop_id(order.order_id)


cdef const char* TAGS[3]
TAGS[:] = [b"OrderAccepted", b"OrderFilled", b"OrderCanceled"]
cdef Py_ssize_t TAG_SIZES[3]
TAG_SIZES[:] = [13, 11, 13]
cdef Py_ssize_t NUMBER_AT[3]
"""Where each report's number lies in its array (the tag first)."""
NUMBER_AT[:] = [REPORT_FIELDS[name].index("report") + 1 for name in ("OrderAccepted", "OrderFilled", "OrderCanceled")]


cdef int peek(bytes message, int64_t* client_order_id, int64_t* number) except -1:
    """Which report written here (0: OrderAccepted, 1: OrderFilled, 2: OrderCanceled) the
    bytes ``message`` holds, with its client order id and report number."""
    cdef Reader r
    cdef Py_ssize_t fields, k, at
    cdef bint read
    r.data, r.size, r.pos = <const uint8_t*>PyBytes_AS_STRING(message), PyBytes_GET_SIZE(message), 0
    if read_array(&r, &fields):
        for k in range(3):
            if read_tag(&r, TAGS[k], TAG_SIZES[k]):
                read = read_int(&r, client_order_id)
                at = 2
                while read and at < NUMBER_AT[k]:
                    read = skip(&r, 0)
                    at += 1
                if read and read_int(&r, number):
                    return k
                break
    raise ValueError("not a report written by native.reports")


cpdef object report_number(message):
    """A report's number, whether a Struct or its msgpack (bytes: a report written here is read
    here, any other decoded by msgspec)."""
    cdef int64_t client_order_id, number
    if type(message) is not bytes:
        return message.report
    try:
        peek(message, &client_order_id, &number)
    except ValueError:
        from servers.protocol import ClientMessage
        return msgspec.msgpack.decode(message, type=ClientMessage).report
    return number


cpdef void keep(dict kept, list reports, Py_ssize_t most) except *:
    """`servers.ledger.Ledger.apply`'s last step: each of ``reports`` (``(trader, report)``) kept
    for its trader, in ``kept`` (trader -> its `Kept`, of the latest ``most``). A report made in
    Python (a Struct) is kept as its msgpack, which is what the TES sends for it."""
    cdef Kept reports_of = None
    last = None
    for trader, report in reports:
        if trader is not last or reports_of is None:   # a trader's reports come together: one lookup
            reports_of = kept.get(trader)
            if reports_of is None:
                reports_of = kept[trader] = Kept(most)
            last = trader
        reports_of._add(report if type(report) is bytes else msgspec.msgpack.encode(report))


cdef class Kept:
    """A trader's latest reports, at most ``most``, kept to be sent again: each one's msgpack
    copied into one circular buffer, so keeping a report makes no object and forgetting the oldest
    frees none. Iterating gives them oldest first, as bytes; their numbers are read from them only
    when asked for (`after`, at a logon).

    Invariants: the ``count`` reports kept, oldest first, are the records ``first``, ``first + 1``
    ... (modulo ``slots``, the records allocated, at most ``most``: they grow with the reports) of
    ``starts`` and ``sizes``; their bytes lie in ``data`` in the same circular order,
    each in one piece, none overlapping another, ``used`` bytes in all; the newest ends at ``tail``
    (0 when none is kept). A report is never empty."""

    cdef uint8_t* data
    cdef Py_ssize_t capacity, used, tail
    cdef Py_ssize_t* starts
    cdef Py_ssize_t* sizes
    cdef readonly Py_ssize_t most
    cdef Py_ssize_t slots, first, count

    def __cinit__(self, Py_ssize_t most):
        if most < 1:
            raise ValueError(f"a trader's kept reports must be at least 1, not {most}")
        self.most = most

    def __dealloc__(self):
        PyMem_Free(self.data)
        PyMem_Free(self.starts)
        PyMem_Free(self.sizes)

    def add(self, bytes report):
        """Keep ``report`` (a report's msgpack), forgetting the oldest if ``most`` are kept."""
        self._add(report)

    cdef void _add(self, bytes report) except *:
        cdef Py_ssize_t size = PyBytes_GET_SIZE(report), head, at, newest
        if size == 0:
            raise ValueError("an empty report")
        if self.count == self.most:
            self.used -= self.sizes[self.first]
            self.first = (self.first + 1) % self.slots
            self.count -= 1
        elif self.count == self.slots:
            self._grow_slots()
        if self.count == 0:
            self.tail = 0
            at = 0 if size <= self.capacity else -1
        else:
            head = self.starts[self.first]
            if head < self.tail:
                at = self.tail if self.tail + size <= self.capacity else (0 if size <= head else -1)
            else:
                at = self.tail if self.tail + size <= head else -1
        if at < 0:
            self._grow(size)
            at = self.tail
        memcpy(self.data + at, PyBytes_AS_STRING(report), size)
        newest = (self.first + self.count) % self.slots
        self.starts[newest], self.sizes[newest] = at, size
        self.count += 1
        self.used += size
        self.tail = at + size

    cdef void _grow_slots(self) except *:
        """More records (twice as many, at most ``most``), the kept ones first, oldest first."""
        cdef Py_ssize_t slots = min(max(2 * self.slots, 16), self.most), i, k
        cdef Py_ssize_t* starts = <Py_ssize_t*>PyMem_Malloc(slots * sizeof(Py_ssize_t))
        cdef Py_ssize_t* sizes = <Py_ssize_t*>PyMem_Malloc(slots * sizeof(Py_ssize_t))
        if starts == NULL or sizes == NULL:
            PyMem_Free(starts)
            PyMem_Free(sizes)
            raise MemoryError("out of memory for a trader's kept reports")
        for i in range(self.count):
            k = (self.first + i) % self.slots
            starts[i], sizes[i] = self.starts[k], self.sizes[k]
        PyMem_Free(self.starts)
        PyMem_Free(self.sizes)
        self.starts, self.sizes, self.slots, self.first = starts, sizes, slots, 0

    cdef void _grow(self, Py_ssize_t size) except *:
        """Room for ``size`` more bytes after the reports kept: a larger buffer, them at its start."""
        cdef Py_ssize_t capacity = max(2 * self.capacity, self.used + size, 512), i, k, at = 0
        cdef uint8_t* data = <uint8_t*>PyMem_Malloc(capacity)
        if data == NULL:
            raise MemoryError("out of memory for a trader's kept reports")
        for i in range(self.count):
            k = (self.first + i) % self.slots
            memcpy(data + at, self.data + self.starts[k], self.sizes[k])
            self.starts[k] = at
            at += self.sizes[k]
        PyMem_Free(self.data)
        self.data, self.capacity, self.tail = data, capacity, at

    cdef bytes _report(self, Py_ssize_t i):
        cdef Py_ssize_t k = (self.first + i) % self.slots
        return PyBytes_FromStringAndSize(<char*>self.data + self.starts[k], self.sizes[k])

    def __len__(self):
        return self.count

    def __iter__(self):
        cdef Py_ssize_t i
        for i in range(self.count):
            yield self._report(i)

    def after(self, number) -> list:
        """The reports numbered after ``number``, oldest first (`report_number` of each)."""
        cdef Py_ssize_t i
        reports = [self._report(i) for i in range(self.count)]
        return [report for report in reports if report_number(report) > number]

    def msgpack(self) -> bytes:
        """The reports as one msgpack array, oldest first (a snapshot's; `msgspec.Raw` of it
        encodes as the list of them would)."""
        cdef Writer w
        cdef Py_ssize_t i, k
        w.data, w.size, w.capacity = NULL, 0, 0
        try:
            wire_room(&w, MAX_HEADER + self.used)
            wire_array(&w, self.count)
            for i in range(self.count):
                k = (self.first + i) % self.slots
                memcpy(w.data + w.size, self.data + self.starts[k], self.sizes[k])
                w.size += self.sizes[k]
            return PyBytes_FromStringAndSize(<char*>w.data, w.size)
        finally:
            PyMem_RawFree(w.data)


cdef class Books:
    """`servers.ledger.Ledger`'s portfolios fed the trades of a frame (`book`), as
    `servers.portfolio.Portfolio.fill` books each: in C where `native.portfolios.fill` can, else
    with Python's ints, by that ``fill`` itself (the specification).
    ``portfolio`` and ``holding`` are the classes made for a new trader and a new symbol
    (subclasses of `native.portfolios`' records, the portfolio's with that ``fill``: `servers.portfolio`'s);
    ``portfolios`` holds only instances of ``portfolio`` (TypeError for any other, nothing booked
    of that fill)."""

    cdef dict portfolios
    cdef object portfolio, holding

    def __init__(self, dict portfolios, portfolio, holding):
        if not issubclass(portfolio, Portfolio) or not issubclass(holding, Holding) or not callable(
                getattr(portfolio, "fill", None)):
            raise TypeError("Books books into subclasses of native.portfolios' Portfolio and Holding, the "
                            "portfolio's with a fill (servers.portfolio's)")
        self.portfolios, self.portfolio, self.holding = portfolios, portfolio, holding

    def book(self, list trades):
        """Each trade ``(symbol, price, quantity, buyer, seller)`` (ints of any size) into the
        portfolios of its buyer and its seller (None: a side not this TES's), in order, as `_book`
        books them (the list holds what its sides remember)."""
        cdef int64_t p, q
        cdef Booked sides[2]
        memset(sides, 0, sizeof(sides))
        for symbol, price, quantity, buyer, seller in trades:
            if as_int64(price, &p) or as_int64(quantity, &q):
                p = q = 0
            if buyer is not None:
                self._side(&sides[0], <PyObject*>buyer, <PyObject*>symbol, True, p, q, price, quantity)
            if seller is not None:
                self._side(&sides[1], <PyObject*>seller, <PyObject*>symbol, False, p, q, price, quantity)

    cdef int _book(self, const Trade* trades, Py_ssize_t count) except -1:
        """`book` of the trades noted in C (`Reporter._trade`). Each side remembers the trader and
        symbol it last booked and their portfolio and holding (`Booked`), found again only when
        they change: nothing but this call changes the portfolios while it runs."""
        cdef Py_ssize_t k
        cdef const Trade* t
        cdef Booked sides[2]
        memset(sides, 0, sizeof(sides))
        for k in range(count):
            t = &trades[k]
            if t.buyer != NULL:
                self._side(&sides[0], t.buyer, t.symbol, True, t.price, t.quantity, None, None)
            if t.seller != NULL:
                self._side(&sides[1], t.seller, t.symbol, False, t.price, t.quantity, None, None)
        return 0

    cdef int _side(self, Booked* side, PyObject* trader, PyObject* symbol, bint buy, int64_t p,
                   int64_t q, price, quantity) except -1:
        """One side of a trade booked (`_into`), its portfolio and holding found unless ``side``
        holds them."""
        if trader != side.trader or symbol != side.symbol:
            portfolio = self._portfolio(<object>trader)
            holding = self._holding(portfolio, <object>trader, <object>symbol)
            side.trader, side.symbol = trader, symbol
            side.portfolio, side.holding = <PyObject*>portfolio, <PyObject*>holding
        return self._into(<object>side.portfolio, <object>side.holding, <object>symbol, buy, p, q, price, quantity)

    cdef object _portfolio(self, trader):
        """The trader's portfolio, made if new."""
        portfolio = self.portfolios.get(trader)
        if portfolio is None:
            portfolio = self.portfolios[trader] = self.portfolio()
        elif type(portfolio) is not self.portfolio:
            raise TypeError(f"the portfolio of {trader!r} is a {type(portfolio).__name__}")
        return portfolio

    cdef object _holding(self, portfolio, trader, symbol):
        """The portfolio's holding in ``symbol``, made if new."""
        holdings = (<Portfolio>portfolio).holdings
        holding = holdings.get(symbol)
        if holding is None:
            holding = holdings[symbol] = self.holding()
        elif type(holding) is not self.holding:
            raise TypeError(f"the holding of {trader!r} in {symbol!r} is a {type(holding).__name__}")
        return holding

    cdef int _into(self, portfolio, holding, symbol, bint buy, int64_t p, int64_t q, price, quantity) except -1:
        """`Portfolio.fill` into ``portfolio`` and its ``holding`` in ``symbol`` at ``p`` x ``q``: in
        C if `fill` can, else with Python's ints, ``price`` and ``quantity`` (the ints given to
        `book`; None: ``p`` and ``q``), by the portfolio's own ``fill``
        (`servers.portfolio.Portfolio.fill`, which finds that holding)."""
        if fill(<Portfolio>portfolio, <Holding>holding, buy, p, q):
            return 0
        if price is None:
            price, quantity = p, q
        portfolio.fill(symbol, BUY if buy else SELL, price, quantity)
        return 0


cdef class Routing:
    """The routing of reports to sessions (`servers.tes.TradingEngineServer.route`, which says
    what it does), for ``tes``: ``answers`` is its set of the report types that answer a request,
    ``accepted`` and ``rejected`` `servers.protocol`'s `OrderAccepted` and `OrderRejected`,
    ``written`` the types of the reports `Reporter` writes, in the order `peek` names them
    (`OrderAccepted`, `OrderFilled`, `OrderCanceled`)."""

    cdef object tes, answers, accepted, rejected
    cdef tuple written

    def __init__(self, tes, answers, accepted, rejected, tuple written):
        self.tes, self.answers, self.accepted, self.rejected = tes, answers, accepted, rejected
        self.written = written

    def route(self, list reports, bint routed):
        """Queue each of ``reports`` (``(trader, report)``) for its trader's session, counted by type;
        ``routed``: they may answer orders routed to a book."""
        self._route(reports, routed, NULL, 0)

    cdef void _route(self, list reports, bint routed, const Noted* noted, Py_ssize_t count) except *:
        """`route`, told by ``noted`` (``count`` of them, in order: `Reporter.noted`) what each
        report it holds says, so that those are not read again (`peek` reads any other)."""
        cdef int64_t client_order_id, number, last = 0
        cdef Py_ssize_t at = 0
        cdef int64_t counted[3]
        cdef int k
        tes = self.tes
        cdef dict by_trader = tes.sessions.by_trader, reported = tes.reported, rejects = tes.rejects
        cdef dict awaiting_of = tes.awaiting
        cdef IdTable awaiting = None
        cdef list answered = tes.answered, box = None
        outbox = tes.outbox
        trader_id = session = numbered = None  # numbered: the session owed `last` as its last report number
        counted[:] = [0, 0, 0]
        try:
            for trader, message in reports:
                if trader is not trader_id:
                    if numbered is not None:
                        numbered.last_report, numbered = last, None
                    trader_id, session = trader, by_trader.get(trader)
                    box = None if session is None else outbox[session.identity]
                    awaiting = awaiting_of.get(trader) if routed else None
                if type(message) is bytes:
                    if at < count and noted[at].report == <void*>message:
                        k, client_order_id, number = noted[at].kind, noted[at].client_order_id, noted[at].number
                        at += 1
                    else:
                        k = peek(<bytes>message, &client_order_id, &number)
                    counted[k] += 1
                    if awaiting is not None and awaiting.count and self.written[k] is self.accepted:
                        read = awaiting.pop_id(client_order_id)
                        if read is not None and session is not None:
                            answered.append(read)
                    if box is not None:
                        box.append(message)
                        numbered, last = session, number
                    continue
                kind = type(message)
                reported[kind] += 1
                if kind in self.answers:
                    if kind is not self.accepted:
                        rejects[message.reason] += 1
                    if (kind is self.accepted or kind is self.rejected) and awaiting is not None and awaiting.count:
                        read = awaiting.pop(message.client_order_id, None)
                        if read is not None and session is not None:
                            answered.append(read)
                if box is not None:
                    box.append(message)
                    session.last_report, numbered = message.report, None
        finally:
            if numbered is not None:
                numbered.last_report = last
            for k in range(3):
                if counted[k]:
                    reported[self.written[k]] += counted[k]


RECEIVED_FIELDS = ("shard", "frame", "time")
"""The fields of `servers.ledger.Received`, which `ReplyPath` writes, in order."""


cdef class ReplyPath:
    """`servers.tes.TradingEngineServer._received`'s common path in one call, for a frame of a book
    server's replies that ``reporter`` reads in C: the frame applied to the ledger as
    `servers.ledger.Ledger.apply` applies its `Received` (the reports made, then kept in ``kept``,
    the latest ``most`` per trader: `keep`), the record framed for ``journal`` (a
    `servers.ledger.LedgerJournal`: its next sequence, and its msgpack written here, byte for byte as
    msgspec encodes the `Received`), then the reports routed (``routing``), in the order
    `TradingEngineServer._record` does each. ``received`` is the `Received` class, whose fields it
    checks. A frame of any other shape changes nothing here: the caller's Python takes it.

    Invariant: ``kept`` and the journal's ``pending`` are the ledger's and the journal's for their
    lives (neither is ever replaced), so holding them here is holding theirs."""

    cdef Reporter reporter
    cdef object journal
    cdef Records pending
    cdef dict kept
    cdef Py_ssize_t most
    cdef Routing routing
    cdef Writer wire

    def __init__(self, Reporter reporter, journal, dict kept, Py_ssize_t most, Routing routing, received):
        check_fields(received, "Received", RECEIVED_FIELDS, "reports.pyx")
        self.reporter, self.journal, self.pending = reporter, journal, journal.pending
        self.kept, self.most, self.routing = kept, most, routing

    def __dealloc__(self):
        PyMem_RawFree(self.wire.data)

    def take(self, str shard, bytes frame, time):
        """Apply, keep, journal and route ``frame``, received from ``shard`` at ``time`` (ns; an
        int); returns its replies other than `Executed`, decoded, or None if `Reporter` does not
        read it in C (or ``time`` lies beyond int64): then nothing was changed, and the caller's
        `_record` of its `Received` takes it."""
        cdef Writer* w = &self.wire
        cdef Py_ssize_t shard_size, frame_size = PyBytes_GET_SIZE(frame)
        cdef const char* shard_text = PyUnicode_AsUTF8AndSize(shard, &shard_size)
        cdef int64_t stamp
        cdef list reports = []
        if as_int64(time, &stamp):
            return None
        replies = self.reporter._take(frame, shard, time, reports)
        if replies is None:
            return None
        keep(self.kept, reports, self.most)
        w.size = 0
        wire_room(w, 4 * MAX_HEADER + 32 + shard_size + frame_size)
        wire_tagged(w, b"Received", 3)
        wire_str(w, shard_text, shard_size)
        wire_bin(w, PyBytes_AS_STRING(frame), frame_size)
        wire_int(w, stamp)
        sequence = self.journal.sequence + 1
        self.pending.frame(sequence, <const char*>w.data, w.size)
        self.journal.sequence = sequence
        if reports:
            self.routing._route(reports, True, self.reporter.noted, self.reporter.noted_count)
        return replies

    def take_all(self, socket, str shard, Py_ssize_t max_frames, Py_ssize_t max_bytes, clock):
        """`take` of each frame queued on ``socket``, a book server's (read in C:
        `native.sockets.receive`), from ``shard`` at the time ``clock()`` gives as it is read, until
        none is queued or ``max_frames`` are read: the TES's `_read_shard`, with no Python loop around
        each frame. It stops at a frame its caller's Python must handle, already read: not one part of
        at most ``max_bytes`` bytes, one `take` does not read in C (one msgspec would refuse among
        them), one with replies other than `Executed` (a query's answer, a Hello reply).
        Returns ``(frames, rest)``: the frames read, and None or ``(parts, time, taken)``: that frame's
        parts, the time it was read (None if `take` did not see it: not of one part within
        ``max_bytes``), and what `take` made of it (None, or its non-empty replies)."""
        cdef Py_ssize_t frames = 0
        while frames < max_frames:
            parts = receive(socket)
            if parts is None:
                break
            frames += 1
            if len(parts) != 1 or PyBytes_GET_SIZE(parts[0]) > max_bytes:
                return frames, (parts, None, None)
            time = clock()
            taken = self.take(shard, parts[0], time)
            if taken is None or taken:
                return frames, (parts, time, taken)
        return frames, None
