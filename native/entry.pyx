# cython: boundscheck=False, wraparound=False
"""The TES's order entry in C: a frame's orders checked, recorded and routed off the interpreter.

`EntryPath.enter` runs a logged-on session's decoded messages from a position while each is an
EnterOrder that the TES's pipeline (`servers.tes`'s module docstring, steps 2 to 7) takes on its
common path: a LIMIT or MARKET order with no display quantity, stop price or expiry, flags 0 or
post-only, not GTD, whose client order id is the next in order, within the message rate, the
instrument's rules and the trader's limits, for a book that is ready. Each one it takes changes
the server exactly as `servers.tes.TradingEngineServer._enter` does: the message-rate bucket, the
client order ids, the next exchange order id, the ledger's `Order` and the trader's open orders
(`servers.ledger.Ledger.apply` of its `Entered`), the `Entered` record queued for the journal
(msgpack written here, byte for byte as msgspec encodes the record), the order awaiting its
answer, and the `BookSubmit` queued for its book (written likewise, as bytes: a message already
encoded, which the TES's frames take as it is, `native.framing.join_frames`).

It takes a CancelOrder likewise, as `TradingEngineServer._cancel` does, when it is within the
message rate, its client order id is the next in order, and it names an open order of the trader
whose book is ready: the `Requested` record (journaled and applied: the id used up, the request
queued on the order) and the `BookCancel` for the book.

It stops at the first message it does not take, whatever the reason (another request, any
refusal, a rarer kind of order, a value beyond the ranges it computes in), having changed
nothing for it: the Python path (`TradingEngineServer._dispatch`) handles that message, a
refusal with its text, and calls it again for the next. So every refusal, and every order of a
kind not listed above, goes through the Python path, which stays the specification; the tests
hold the two paths to the same journal, frames and ledger on random streams.

The messages come decoded by msgspec, or read here from the frame (`EntryPath.read`, a `Requests`):
a frame whose every message is an EnterOrder or a CancelOrder written in full, with values msgspec
would accept (an ASCII symbol), is read into C records without making an object of any message;
any other frame is msgspec's, which decides what it is. The Python path takes a message of a
`Requests` made as msgspec decodes it.

Invariant: between calls, everything it changed is written back to the server's objects.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.float cimport PyFloat_AsDouble
from cpython.long cimport PyLong_Check
from cpython.mem cimport PyMem_Free, PyMem_Malloc
from cpython.unicode cimport PyUnicode_AsUTF8AndSize, PyUnicode_DecodeASCII
from libc.stdint cimport int64_t, uint8_t
from libc.string cimport memcmp

from engine.types import OrderType, SelfTradePrevention, Side, TimeInForce
from native.book import by_value

from native.constants cimport GTD, LIMIT, MARKET, POST_ONLY
from native.framing cimport Records
from native.idtable cimport IdTable
from native.routed cimport Order
from native.int64 cimport as_int64
from native.reader cimport Reader, read_array, read_enum, read_int, read_str, read_tag
from native.structs cimport check_fields, field, field_offset
from native.wire cimport MAX_HEADER, Writer, wire_bool, wire_int, wire_room, wire_str, wire_tagged

cdef enum:
    ENTERED_FIELDS = 14      # servers.ledger.Entered
    SUBMIT_FIELDS = 15       # servers.protocol.BookSubmit
    REQUESTED_FIELDS = 5     # servers.ledger.Requested
    CANCEL_FIELDS = 4        # servers.protocol.BookCancel

# The fields of each message written here, in order (their counts above): an EntryPath is not made
# if one changes.
WRITTEN_FIELDS = {
    "Entered": ("trader", "client_order_id", "order_id", "symbol", "side", "order_type", "time_in_force", "price",
                "quantity", "stop_price", "display_quantity", "flags", "stp", "expire_at"),
    "Requested": ("trader", "order_id", "cancel", "client_order_id", "reason"),
    "BookSubmit": ("symbol", "order_id", "side", "order_type", "time_in_force", "price", "quantity", "account",
                   "client_order_id", "stop_price", "display_quantity", "flags", "owner", "stp", "expire_at"),
    "BookCancel": ("symbol", "order_id", "client_order_id", "reason"),
}
assert [len(names) for names in WRITTEN_FIELDS.values()] == [ENTERED_FIELDS, REQUESTED_FIELDS, SUBMIT_FIELDS,
                                                             CANCEL_FIELDS]

# The fields of each message read here, in order: an EntryPath is not made if one changes.
READ_FIELDS = {
    "EnterOrder": ("client_order_id", "symbol", "side", "order_type", "time_in_force", "price", "quantity",
                   "stop_price", "display_quantity", "flags", "stp", "expire_at"),
    "CancelOrder": ("client_order_id", "order_id"),
}

cdef enum:
    ENTER = 1
    CANCEL = 2
    ENTER_ITEMS = 13         # an EnterOrder's tag and fields, as msgspec writes it in full
    CANCEL_ITEMS = 3         # a CancelOrder's
    MAX_SYMBOL = 16          # `servers.protocol.Symbol`'s most characters
    NO_STP = -1              # an EnterOrder's stp of None: its trader's default

cdef tuple SIDES = by_value(Side), ORDER_TYPES = by_value(OrderType), TIFS = by_value(TimeInForce)
cdef tuple STPS = by_value(SelfTradePrevention)


ctypedef struct Wanted:     # a client's EnterOrder or CancelOrder, its fields as C integers
    int kind                 # ENTER or CANCEL
    int64_t client_order_id
    int64_t order_id         # CANCEL: the order it names
    const char* symbol       # ENTER: the symbol's UTF-8 (ASCII when read here), in the frame or its str
    Py_ssize_t symbol_size
    int64_t side, order_type, time_in_force, price, quantity, stop_price, display_quantity, flags
    int64_t stp              # NO_STP: none given
    int64_t expire_at


cdef class Requests:
    """A client frame's messages read in C (`read_requests`), each an EnterOrder or a CancelOrder:
    a sequence of them, message ``i`` made as msgspec decodes it (for the Python path) only when
    asked for. ``enter_order`` and ``cancel_order`` are their classes."""

    cdef bytes frame
    cdef object enter_order, cancel_order
    cdef Wanted* items
    cdef Py_ssize_t count

    def __len__(self):
        return self.count

    def __getitem__(self, Py_ssize_t i):
        if not 0 <= i < self.count:
            raise IndexError(f"message {i} of a frame of {self.count}")
        cdef Wanted* w = &self.items[i]
        if w.kind == CANCEL:
            return self.cancel_order(w.client_order_id, w.order_id)
        return self.enter_order(w.client_order_id, PyUnicode_DecodeASCII(w.symbol, w.symbol_size, NULL),
                                SIDES[w.side], ORDER_TYPES[w.order_type], TIFS[w.time_in_force], w.price,
                                w.quantity, w.stop_price, w.display_quantity, w.flags,
                                None if w.stp == NO_STP else STPS[w.stp], w.expire_at)

    def __dealloc__(self):
        PyMem_Free(self.items)


cdef Requests read_requests(bytes frame, Py_ssize_t max_messages, enter_order, cancel_order):
    """``frame``'s messages as a `Requests`, if it is a msgpack array of 1 to ``max_messages`` of them
    and each is an EnterOrder or a CancelOrder with every field written, as msgspec writes one,
    holding values that msgspec decodes as `servers.protocol`'s types (int64 integers, a client
    order id of at least 1, members of the enums, a symbol of 1 to 16 ASCII characters), and
    nothing follows; else None. What is read is what msgspec decodes from the frame (the classes
    ``enter_order`` and ``cancel_order``'s messages)."""
    cdef Reader r
    cdef Py_ssize_t count, items, i
    cdef Wanted* w
    cdef Requests requests
    r.data, r.size, r.pos = <const uint8_t*>PyBytes_AS_STRING(frame), PyBytes_GET_SIZE(frame), 0
    if not read_array(&r, &count) or not 0 < count <= max_messages:
        return None
    requests = Requests.__new__(Requests)
    requests.items = <Wanted*>PyMem_Malloc(count * sizeof(Wanted))
    if requests.items == NULL:
        raise MemoryError("out of memory reading a client frame")
    requests.frame, requests.enter_order, requests.cancel_order = frame, enter_order, cancel_order
    for i in range(count):
        w = &requests.items[i]
        if not read_array(&r, &items):
            return None
        if items == ENTER_ITEMS and read_tag(&r, b"EnterOrder", 10):
            if not _read_enter(&r, w):
                return None
        elif items == CANCEL_ITEMS and read_tag(&r, b"CancelOrder", 11):
            w.kind = CANCEL
            if not (read_int(&r, &w.client_order_id) and w.client_order_id >= 1 and read_int(&r, &w.order_id)):
                return None
        else:
            return None
    if r.pos != r.size:
        return None
    requests.count = count
    return requests


cdef bint _read_enter(Reader* r, Wanted* w) noexcept:
    """An EnterOrder's fields after its tag (see `read_requests`)."""
    cdef const char* text
    cdef Py_ssize_t size, k
    w.kind = ENTER
    if not (read_int(r, &w.client_order_id) and w.client_order_id >= 1 and read_str(r, &text, &size)
            and 1 <= size <= MAX_SYMBOL):
        return False
    for k in range(size):
        if <uint8_t>text[k] >= 0x80:
            return False
    w.symbol, w.symbol_size = text, size
    if not (read_enum(r, SIDES, &w.side) and read_enum(r, ORDER_TYPES, &w.order_type)
            and read_enum(r, TIFS, &w.time_in_force) and read_int(r, &w.price) and read_int(r, &w.quantity)
            and read_int(r, &w.stop_price) and read_int(r, &w.display_quantity) and read_int(r, &w.flags)):
        return False
    if r.pos < r.size and r.data[r.pos] == 0xC0:
        w.stp = NO_STP
        r.pos += 1
    elif not read_enum(r, STPS, &w.stp):
        return False
    return read_int(r, &w.expire_at)


cdef int64_t BOUND = (<int64_t>1) << 31
"""Prices, quantities and the centre of a price band the path computes with lie in 1..BOUND - 1,
so that every product it forms fits an int64; an order beyond goes through the Python path."""
cdef int64_t RATE_BOUND = (<int64_t>1) << 53
"""Message rates below this are exact as doubles, as the bucket's arithmetic needs."""
cdef int64_t BAND_BOUND = (<int64_t>1) << 20
cdef Writer _wire                    # the records' buffer (the GIL guards it), grown once


cdef inline bint within(object value, int64_t* out) except -1:
    """``value`` (an int) into ``out`` if it lies in 1..BOUND - 1."""
    if as_int64(value, out):
        return False
    return 0 < out[0] < BOUND


cdef int64_t used_up(others, int64_t client_order_id) except? -1:
    """`servers.sessions.ClientOrderIds.use` of the next id in order: the new count of ids used in
    order, the ids after it already used (``others``) moved into it."""
    cdef int64_t contiguous = client_order_id
    while others and contiguous + 1 in others:
        others.remove(contiguous + 1)
        contiguous += 1
    return contiguous


cdef class EntryPath:
    """The order entry of one `servers.tes.TradingEngineServer` (``tes``), whose containers it
    reads at each call (reference data replaces some of them). ``enter_order``, ``cancel_order``,
    ``request`` and ``deque`` are `servers.protocol.EnterOrder` and `CancelOrder`,
    `servers.orders.Request`, and `collections.deque`; the orders it makes are
    `native.routed.Order`s, the registry's (`servers.orders.Order`);
    ``requested`` is `CancelReason.REQUESTED`; an exchange order id is ``(tes_id << id_bits) | counter``.
    ``written`` holds the classes of the messages it writes: `servers.ledger.Entered` and `Requested`,
    `servers.protocol.BookSubmit` and `BookCancel`, whose fields it checks.

    The last instrument seen is kept as C fields (an `InstrumentConfig` is frozen: the same
    object has the same rules)."""

    cdef object tes, ledger, registry, journal, enter_order, cancel_order, request, deque, requested
    cdef int64_t tes_id, id_bits, requested_value
    cdef Py_ssize_t c_client, c_order
    cdef Py_ssize_t e_client, e_symbol, e_side, e_type, e_tif, e_price, e_quantity, e_stop, e_display, e_flags
    cdef Py_ssize_t e_stp, e_expire                   # an EnterOrder's fields, read at their offsets
    cdef object instrument
    cdef bint usable, limit_enabled, market_enabled, post_only_enabled
    cdef int64_t tick, lot, min_quantity, max_quantity, band_bps, reference_price

    def __init__(self, tes, enter_order, cancel_order, request, deque, requested, int id_bits,
                 tuple written):
        for cls in written:
            check_fields(cls, cls.__name__, WRITTEN_FIELDS.get(cls.__name__), "entry.pyx")
        for cls in (enter_order, cancel_order):
            check_fields(cls, cls.__name__, READ_FIELDS.get(cls.__name__), "entry.pyx")
        if sorted(cls.__name__ for cls in written) != sorted(WRITTEN_FIELDS):
            raise TypeError(f"EntryPath writes {sorted(WRITTEN_FIELDS)}: give their classes")
        self.tes = tes
        self.ledger = tes.ledger
        self.registry = tes.ledger.orders
        self.journal = tes.journal
        self.enter_order, self.cancel_order = enter_order, cancel_order
        self.request, self.deque, self.requested, self.requested_value = request, deque, requested, requested
        self.c_client = field_offset(cancel_order, "client_order_id")
        self.c_order = field_offset(cancel_order, "order_id")
        self.tes_id = tes.tes_id
        self.id_bits = id_bits
        self.e_client, self.e_symbol = field_offset(enter_order, "client_order_id"), field_offset(enter_order, "symbol")
        self.e_side, self.e_type = field_offset(enter_order, "side"), field_offset(enter_order, "order_type")
        self.e_tif, self.e_price = field_offset(enter_order, "time_in_force"), field_offset(enter_order, "price")
        self.e_quantity, self.e_stop = field_offset(enter_order, "quantity"), field_offset(enter_order, "stop_price")
        self.e_display = field_offset(enter_order, "display_quantity")
        self.e_flags, self.e_stp = field_offset(enter_order, "flags"), field_offset(enter_order, "stp")
        self.e_expire = field_offset(enter_order, "expire_at")

    cdef void _learn(self, instrument) except *:
        """Keep ``instrument``'s rules as C fields; unusable if one lies beyond what the path
        computes with (its orders then go through the Python path)."""
        self.instrument = instrument
        self.usable = (within(instrument.tick_size, &self.tick) and within(instrument.lot_size, &self.lot)
                       and within(instrument.min_quantity, &self.min_quantity)
                       and within(instrument.reference_price, &self.reference_price)
                       and not as_int64(instrument.max_quantity, &self.max_quantity)
                       and not as_int64(instrument.price_band_bps, &self.band_bps)
                       and 0 <= self.band_bps < BAND_BOUND)
        kinds = instrument.order_types
        self.limit_enabled = "limit" in kinds
        self.market_enabled = "market" in kinds
        self.post_only_enabled = "post-only" in kinds

    def read(self, bytes frame, Py_ssize_t max_messages):
        """The messages of a client ``frame`` read in C (a `Requests`), or None: msgspec's to
        decode (`read_requests`)."""
        return read_requests(frame, max_messages, self.enter_order, self.cancel_order)

    cdef bint _wanted(self, message, Wanted* w) except -1:
        """A decoded message into ``w``: False unless it is an EnterOrder or a CancelOrder."""
        kind = type(message)
        if kind is self.cancel_order:
            w.kind = CANCEL
            return (not as_int64(field(message, self.c_client), &w.client_order_id)
                    and not as_int64(field(message, self.c_order), &w.order_id))
        if kind is not self.enter_order:
            return False
        w.kind = ENTER
        w.symbol = PyUnicode_AsUTF8AndSize(field(message, self.e_symbol), &w.symbol_size)
        stp = field(message, self.e_stp)
        if stp is None:
            w.stp = NO_STP
        elif as_int64(stp, &w.stp):
            return False
        return not (as_int64(field(message, self.e_client), &w.client_order_id)
                    or as_int64(field(message, self.e_side), &w.side)
                    or as_int64(field(message, self.e_type), &w.order_type)
                    or as_int64(field(message, self.e_tif), &w.time_in_force)
                    or as_int64(field(message, self.e_price), &w.price)
                    or as_int64(field(message, self.e_quantity), &w.quantity)
                    or as_int64(field(message, self.e_stop), &w.stop_price)
                    or as_int64(field(message, self.e_display), &w.display_quantity)
                    or as_int64(field(message, self.e_flags), &w.flags)
                    or as_int64(field(message, self.e_expire), &w.expire_at))

    def enter(self, session, messages, Py_ssize_t start, now, frame_read):
        """Take ``messages[start:]``, one frame's from ``session`` (logged on; the server not
        stopping), decoded by msgspec (a list) or read in C (a `Requests`), while each is an
        EnterOrder or a CancelOrder the path takes (see the module docstring), at the monotonic
        time ``now`` (s), its frame read at ``frame_read`` (`time.perf_counter_ns`). Returns the
        index of the first message not taken (``len(messages)`` if none is left)."""
        cdef Requests read = messages if type(messages) is Requests else None
        cdef list decoded = None if read is not None else messages
        cdef Wanted item
        cdef Wanted* w
        cdef Py_ssize_t i = start, count = len(messages), taken = 0, canceled = 0
        cdef int64_t rate, max_order_quantity, max_notional, max_open_orders, contiguous, counter, sequence
        cdef int64_t client_order_id, order_type, price, quantity, flags, centre, valued, order_id, owner
        cdef int64_t side, time_in_force, stp
        cdef double tokens, last, moment = PyFloat_AsDouble(now), refilled
        cdef const char* trader_text
        cdef const char* symbol_text = NULL
        cdef const char* cancel_text
        cdef Py_ssize_t trader_size, symbol_size = 0, cancel_size
        cdef IdTable orders, open_orders, awaiting
        cdef Order order
        cdef dict instruments, last_prices, shard_of
        cdef list outbox
        cdef Records pending
        tes, ledger = self.tes, self.ledger
        trader = session.trader_id
        risk = tes.risks.get(trader)
        ids = ledger.client_order_ids.get(trader)
        if risk is None or i >= count:
            return start
        bucket = risk.bucket
        if (as_int64(bucket.rate, &rate) or not 0 <= rate < RATE_BOUND
                or as_int64(risk.max_order_quantity, &max_order_quantity)
                or as_int64(risk.max_notional, &max_notional) or as_int64(risk.max_open_orders, &max_open_orders)
                or ids is not None and as_int64(ids.contiguous, &contiguous) or as_int64(ledger.counter, &counter)
                or not 0 < counter < ((<int64_t>1) << self.id_bits) - 1 or not 0 < self.tes_id < (1 << 14)):
            return start
        tokens, last = PyFloat_AsDouble(bucket.tokens), PyFloat_AsDouble(bucket.last)
        owner_obj, default_stp = tes.owners[trader]
        owner = owner_obj
        trader_text = PyUnicode_AsUTF8AndSize(trader, &trader_size)
        instruments, last_prices, shard_of = tes.instruments, ledger.last_prices, tes.shard_of
        orders, open_orders, awaiting = self.registry.orders, self.registry.open.get(trader), tes.awaiting.get(trader)
        pending, sequence = self.journal.pending, self.journal.sequence
        others = None if ids is None else ids.others
        symbol = outbox = None
        try:
            while i < count:
                if read is not None:
                    w = &read.items[i]
                else:
                    w = &item
                    if not self._wanted(decoded[i], w):
                        break
                # 2. message rate (`servers.risk.TokenBucket.spend`, the same double arithmetic)
                refilled = tokens + (moment - last) * <double>rate
                if refilled > <double>rate:
                    refilled = <double>rate
                if refilled < 1.0:
                    break
                # 3. the next client order id in order (a trader's first order makes its ids, as `Ledger.ids`)
                if ids is None:
                    ids = ledger.ids(trader)
                    others = ids.others
                    if as_int64(ids.contiguous, &contiguous):
                        break
                client_order_id = w.client_order_id
                if client_order_id != contiguous + 1:
                    break
                if w.kind == CANCEL:
                    # a cancel of one of the trader's open orders, whose book is ready
                    order_id = w.order_id
                    found = None if open_orders is None else open_orders.get_id(order_id)
                    if type(found) is not Order:
                        break
                    order = <Order>found
                    order_symbol = order.symbol
                    shard = shard_of.get(order_symbol)
                    if shard is None or not shard.ready:
                        break
                    tokens, last = refilled - 1.0, moment
                    contiguous = used_up(others, client_order_id)
                    sequence += 1
                    _cancel_message(b"Requested", True, trader_text, trader_size, order_id, client_order_id,
                                    self.requested_value)
                    _journal(pending, sequence)
                    requests = order.requests
                    if requests is None:
                        requests = order.requests = self.deque()
                    requests.append(self.request(True, client_order_id, self.requested))
                    cancel_text = PyUnicode_AsUTF8AndSize(order_symbol, &cancel_size)
                    _cancel_message(b"BookCancel", False, cancel_text, cancel_size, order_id, client_order_id,
                                    self.requested_value)
                    shard.outbox.append(_written())
                    canceled += 1
                    i += 1
                    continue
                # 4. reference data; 6. routing (the shard of a symbol is ready all the turn or not)
                if (symbol is None or w.symbol_size != symbol_size
                        or memcmp(w.symbol, symbol_text, <size_t>symbol_size) != 0):
                    if read is not None:
                        message_symbol = PyUnicode_DecodeASCII(w.symbol, w.symbol_size, NULL)
                    else:
                        message_symbol = field(decoded[i], self.e_symbol)
                    instrument = instruments.get(message_symbol)
                    if instrument is None:
                        break
                    if instrument is not self.instrument:
                        self._learn(instrument)
                    shard = shard_of.get(message_symbol)
                    if not self.usable or shard is None or not shard.ready:
                        break
                    symbol, outbox = message_symbol, shard.outbox
                    symbol_text = PyUnicode_AsUTF8AndSize(symbol, &symbol_size)
                order_type, time_in_force = w.order_type, w.time_in_force
                if not (order_type == LIMIT and self.limit_enabled or order_type == MARKET and self.market_enabled):
                    break
                if time_in_force == GTD or w.display_quantity != 0 or w.stop_price != 0 or w.expire_at != 0:
                    break
                flags = w.flags
                if not (flags == 0 or flags == POST_ONLY and self.post_only_enabled):
                    break
                quantity = w.quantity
                if not 0 < quantity < BOUND or quantity % self.lot or quantity < self.min_quantity \
                        or quantity > self.max_quantity:
                    break
                last_price = last_prices.get(symbol)
                if last_price is None:
                    centre = self.reference_price
                elif not within(last_price, &centre):
                    break
                price = w.price
                if order_type == LIMIT:
                    if not 0 < price < BOUND or price % self.tick:
                        break
                    if self.band_bps and (price - centre if price > centre else centre - price) * 10_000 \
                            > centre * self.band_bps:
                        break
                    valued = price
                else:
                    valued = centre
                # 5. pre-trade risk
                if quantity > max_order_quantity or valued * quantity > max_notional:
                    break
                if (0 if open_orders is None else len(open_orders)) >= max_open_orders:
                    break
                # 7. taken: every check passed
                tokens, last = refilled - 1.0, moment
                contiguous = used_up(others, client_order_id)
                order_id = (self.tes_id << self.id_bits) | counter
                counter += 1
                stp_obj = default_stp if w.stp == NO_STP else STPS[w.stp]
                side, stp = w.side, stp_obj
                sequence += 1
                _entered(trader_text, trader_size, client_order_id, order_id, symbol_text, symbol_size, side,
                         order_type, time_in_force, price, quantity, flags, stp)
                _journal(pending, sequence)
                order = Order.__new__(Order)
                order.order_id, order.trader_id, order.client_order_id, order.symbol = order_id, trader, client_order_id, symbol
                order.side, order.order_type = SIDES[side], ORDER_TYPES[order_type]
                order.time_in_force, order.price, order.quantity = TIFS[time_in_force], price, quantity
                order.flags, order.stp = flags, stp_obj
                orders.set_id(order_id, order)
                if open_orders is None:
                    open_orders = self.registry.open[trader] = IdTable()
                open_orders.set_id(order_id, order)
                if awaiting is None:
                    awaiting = tes.awaiting[trader] = IdTable()
                awaiting.set_id(client_order_id, frame_read)
                _submit(symbol_text, symbol_size, order_id, side, order_type, time_in_force, price, quantity,
                        trader_text, trader_size, client_order_id, flags, owner, stp)
                outbox.append(_written())
                taken += 1
                i += 1
        finally:
            if taken or canceled:
                bucket.tokens, bucket.last = tokens, now
                ids.contiguous, ledger.counter, self.journal.sequence = contiguous, counter, sequence
                tes.submitted += taken
                tes.entered += taken
                tes.cancels += canceled
        return i


cdef bytes _written():
    """What `_wire` holds, as bytes (a message for a book server)."""
    return PyBytes_FromStringAndSize(<char*>_wire.data, _wire.size)


cdef int _journal(Records pending, int64_t sequence) except -1:
    """Frame what `_wire` holds as the ledger's journal record of ``sequence`` (no bytes made of it)."""
    return pending.frame(sequence, <const char*>_wire.data, _wire.size)


cdef int _message(const char* tag, Py_ssize_t fields, const char* first, Py_ssize_t first_size,
                  const int64_t* ints, int count, const char* second, Py_ssize_t second_size,
                  const int64_t* more, int more_count) except -1:
    """Write into `_wire` the msgpack of a tagged message whose ``fields`` fields are a string,
    ``count`` integers, a string and ``more_count`` integers."""
    cdef Writer* w = &_wire
    cdef int j
    w.size = 0
    wire_room(w, MAX_HEADER + 32 + fields * MAX_HEADER + first_size + second_size)
    wire_tagged(w, tag, fields)
    wire_str(w, first, first_size)
    for j in range(count):
        wire_int(w, ints[j])
    wire_str(w, second, second_size)
    for j in range(more_count):
        wire_int(w, more[j])
    return 0


cdef int _entered(const char* trader, Py_ssize_t trader_size, int64_t client_order_id, int64_t order_id,
                    const char* symbol, Py_ssize_t symbol_size, int64_t side, int64_t order_type,
                    int64_t time_in_force, int64_t price, int64_t quantity, int64_t flags, int64_t stp) except -1:
    """Write into `_wire` the msgpack of `servers.ledger.Entered` (no stop price, display quantity
    or expiry)."""
    cdef int64_t ids[2]
    cdef int64_t order[10]
    ids[:] = [client_order_id, order_id]
    order[:] = [side, order_type, time_in_force, price, quantity, 0, 0, flags, stp, 0]
    return _message(b"Entered", ENTERED_FIELDS, trader, trader_size, ids, 2, symbol, symbol_size, order, 10)


cdef int _submit(const char* symbol, Py_ssize_t symbol_size, int64_t order_id, int64_t side, int64_t order_type,
                 int64_t time_in_force, int64_t price, int64_t quantity, const char* account,
                 Py_ssize_t account_size, int64_t client_order_id, int64_t flags, int64_t owner,
                 int64_t stp) except -1:
    """Write into `_wire` the msgpack of `servers.protocol.BookSubmit` (no stop price, display
    quantity or expiry)."""
    cdef int64_t order[6]
    cdef int64_t rest[7]
    order[:] = [order_id, side, order_type, time_in_force, price, quantity]
    rest[:] = [client_order_id, 0, 0, flags, owner, stp, 0]
    return _message(b"BookSubmit", SUBMIT_FIELDS, symbol, symbol_size, order, 6, account, account_size, rest, 7)


cdef int _cancel_message(const char* tag, bint request, const char* text, Py_ssize_t size, int64_t order_id,
                         int64_t client_order_id, int64_t reason) except -1:
    """Write into `_wire` the msgpack of a cancel: `servers.ledger.Requested` (``request``: its
    trader's id ``text``) or `servers.protocol.BookCancel` (its symbol ``text``), tagged ``tag``."""
    cdef Writer* w = &_wire
    cdef Py_ssize_t fields = REQUESTED_FIELDS if request else CANCEL_FIELDS
    w.size = 0
    wire_room(w, MAX_HEADER + 32 + fields * MAX_HEADER + size)
    wire_tagged(w, tag, fields)
    wire_str(w, text, size)
    wire_int(w, order_id)
    if request:
        wire_bool(w, True)
    wire_int(w, client_order_id)
    wire_int(w, reason)
    return 0
