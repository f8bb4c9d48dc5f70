# cython: boundscheck=False, wraparound=False
"""The native price-time priority order book: the reference book's semantics in C.

`NativeBook` has the Python API of `engine.book.ReferenceBook` and must produce
identical events, snapshots and state hashes for every command sequence (the
differential tests hold it to that); the reference book's docstring is the
specification of matching, validation order and replace.

The structures live in their own headers, each stating its invariants:
``orders.pxd`` (the order pool), ``ladder.pxd`` (the price levels: a skip list per
side), ``ids.pxd`` (the resting-id table and the accepted-id bitmap); the engine's
constants come from ``constants.pxd``, which setup.py generates from `engine.types`,
`engine.stream` and `engine.snapshot`. Their functions are ``cdef inline`` and
compile into this module.

Invariants
----------
- Per side, price levels form a skip list ordered by key (price for asks, -price
  for bids), so the first level is the best price and a walk along ``forward[0]``
  visits prices from best to worst. A level exists iff it holds an order.
- Within a level, orders form a doubly linked FIFO list; a level's quantity is the
  sum of its orders' open quantities (each > 0) and its count their number. This
  module keeps the lists and the totals (`_rest`, `_unlink`, `_match`).
- ``live`` maps every resting order id to its pool slot and nothing else; cancel
  is O(1) whatever the level's length. ``ids`` is a bitmap per 64 consecutive ids
  of every id ever accepted (dense ids cost about a bit each). A snapshot writes its
  words as they are in `engine.snapshot` (in C: sorted by id, runs of full words
  joined into ranges), and a restore sets it a word at a time: no Python object per id.
- Memory: orders and levels live in pools that reuse freed slots, so memory is
  proportional to resting orders and occupied levels, never to the price range.
- Capacity for one command (one order slot, one level, one id, events for every
  resting order) is reserved before the command runs, so matching never
  allocates, never fails half-way and never touches a Python object.

Commands return events through a C buffer: the per-message API turns them into
the `engine.messages` Structs; the batch replay reads only the fills and keeps
its loop in C without the GIL.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from cpython.long cimport PyLong_AsLongLongAndOverflow
from cpython.mem cimport PyMem_RawFree, PyMem_RawMalloc, PyMem_RawRealloc
from libc.stdint cimport int32_t, int64_t, uint8_t, uint64_t
from libc.stdlib cimport qsort
from libc.string cimport memcpy

from native.constants cimport (
    BUY,
    DAY,
    DUPLICATE_ORDER_ID,
    FOK,
    FOK_NOT_FILLABLE,
    GTC,
    HASH_SEED,
    ID_SALT,
    INVALID_PRICE,
    INVALID_QUANTITY,
    IOC,
    LIMIT,
    MARKET,
    MARKET_ORDER_CANNOT_REST,
    MAX_QUANTITY,
    QUANTITY_TOO_LARGE,
    REQUESTED,
    SELL,
    STREAM_CANCEL,
    STREAM_LIMIT_FOK,
    STREAM_LIMIT_GTC,
    STREAM_LIMIT_IOC,
    STREAM_MARKET,
    STREAM_REPLACE,
    UNFILLED,
    UNKNOWN_ORDER,
    UNKNOWN_ORDER_TYPE,
    UNKNOWN_SIDE,
    UNKNOWN_TIME_IN_FORCE,
)
from native.ids cimport (
    IdBlock,
    IdWord,
    LiveSlot,
    accepted_init,
    accepted_reserve,
    accepted_words,
    add_accepted,
    compare_words,
    live_get,
    live_init,
    live_put,
    live_remove,
    live_reserve,
    mix64,
    restore_accepted,
    trailing_zeros,
    was_accepted,
    write_records,
)
from native.ladder cimport (
    MAX_HEIGHT,
    Level,
    find_level,
    insert_level,
    ladder_init,
    ladder_reserve,
    level_at,
    remove_best_level,
    remove_level,
    side_key,
)
from native.orders cimport Order, order_pool_init, order_pool_reserve, order_release, order_take

import numpy as np

from engine.messages import (
    CancelRejected,
    OrderAccepted,
    OrderCanceled,
    OrderExpired,
    OrderFilled,
    OrderRejected,
    OrderReplaced,
    LevelChanged,
    PriceLevel,
    ReplaceRejected,
    RestingOrder,
    dispatch,
)
from engine.snapshot import BookSnapshot, validate_snapshot
from engine.stream import FILL_DTYPE, ReplayResult, check_stream
from engine.types import CancelReason, OrderType, RejectReason, Side, TimeInForce

cdef packed struct StreamRecord:     # STREAM_DTYPE
    uint8_t kind
    uint8_t side
    int64_t price
    int64_t qty
    int64_t order_id
    int64_t target_id


cdef enum:
    INITIAL_EVENTS = 64


def _by_value(enum):
    """The members of an IntEnum numbered 0, 1, ... as a tuple indexed by value (a C code)."""
    members = tuple(sorted(enum))
    if [int(member) for member in members] != list(range(len(members))):
        raise ImportError(f"{enum.__name__} is not numbered 0, 1, ...: the native book indexes it by value")
    return members


cdef tuple SIDES = _by_value(Side)
cdef tuple ORDER_TYPES = _by_value(OrderType)
cdef tuple TIFS = _by_value(TimeInForce)
cdef tuple CANCEL_REASONS = _by_value(CancelReason)
cdef dict REASONS = {int(reason): (reason, reason.text) for reason in RejectReason}
cdef object OUT_OF_RANGE = RejectReason.VALUE_OUT_OF_RANGE
cdef object _OrderAccepted = OrderAccepted
cdef object _OrderFilled = OrderFilled
cdef object _OrderCanceled = OrderCanceled
cdef object _OrderReplaced = OrderReplaced
cdef object _OrderExpired = OrderExpired
cdef tuple REJECT_EVENTS = (OrderRejected, CancelRejected, ReplaceRejected)


cdef inline bint within(int side, int64_t limit, int64_t price) noexcept nogil:
    """Whether a ``side`` taker limited at ``limit`` may trade at ``price``."""
    return price <= limit if side == BUY else price >= limit


cdef inline bint is_reject(uint8_t kind) noexcept nogil:
    return kind == EV_REJECTED or kind == EV_CANCEL_REJECTED or kind == EV_REPLACE_REJECTED


cdef inline int as_int64(object value, int64_t* out) except -1:
    """``value`` (an int, or anything with ``__index__``) into ``out``: 0, or 1 if it lies beyond
    int64 (the command is then refused VALUE_OUT_OF_RANGE, as the reference book does)."""
    cdef int overflow = 0
    out[0] = PyLong_AsLongLongAndOverflow(value, &overflow)
    return overflow != 0


cdef inline object price_level(const Level* level):
    return PriceLevel(level.price, level.quantity, level.count)


cdef void* grow(void* block, int64_t count, size_t size) noexcept nogil:
    """Resize ``block`` to ``count`` items of ``size`` bytes; NULL (block intact) on failure."""
    return PyMem_RawRealloc(block, <size_t>count * size)


cdef class NativeBook:
    """A price-time priority limit order book for one symbol, in C.

    Every command method returns the list of events it produced; see
    `engine.messages` for which events each command produces.
    """

    # ================================================================ life cycle

    def __cinit__(self):
        # each init leaves its pointer NULL or allocated, so __dealloc__ frees whatever it got
        cdef bint failed = order_pool_init(&self.orders) != 0
        failed |= ladder_init(&self.ladder) != 0
        failed |= live_init(&self.live) != 0
        failed |= accepted_init(&self.ids) != 0
        self.events = <Event*>PyMem_RawMalloc(INITIAL_EVENTS * sizeof(Event))
        self.fills = <Fill*>PyMem_RawMalloc(INITIAL_EVENTS * sizeof(Fill))
        self.touches = <Touch*>PyMem_RawMalloc(INITIAL_EVENTS * sizeof(Touch))
        if failed or self.events == NULL or self.fills == NULL or self.touches == NULL:
            raise MemoryError("cannot allocate an order book")
        self.touch_capacity, self.touch_count, self.command, self.tracking = INITIAL_EVENTS, 0, 0, False
        self.event_capacity, self.event_count = INITIAL_EVENTS, 0
        self.fill_capacity, self.fill_count = INITIAL_EVENTS, 0
        self.trade_seq = 0
        self.day_orders = 0

    def __dealloc__(self):
        PyMem_RawFree(self.orders.slots)
        PyMem_RawFree(self.ladder.levels)
        PyMem_RawFree(self.live.slots)
        PyMem_RawFree(self.ids.slots)
        PyMem_RawFree(self.events)
        PyMem_RawFree(self.fills)
        PyMem_RawFree(self.touches)

    # ================================================================ commands (Python API)

    def submit(self, order_id, side, order_type, time_in_force, price, quantity):
        """Enter a new order; return its events."""
        cdef int64_t o, s, t, f, p, q
        self._prepare()
        if (as_int64(order_id, &o) | as_int64(side, &s) | as_int64(order_type, &t) | as_int64(time_in_force, &f)
                | as_int64(price, &p) | as_int64(quantity, &q)):
            return [OrderRejected(order_id, OUT_OF_RANGE, OUT_OF_RANGE.text)]
        self._submit(o, s, t, f, p, q)
        return self._drain()

    def cancel(self, order_id):
        """Remove a resting order; return its events."""
        cdef int64_t o
        self._prepare()
        if as_int64(order_id, &o):
            return [CancelRejected(order_id, OUT_OF_RANGE, OUT_OF_RANGE.text)]
        self._cancel(o)
        return self._drain()

    def replace(self, order_id, price, quantity):
        """Change a resting order's price and open quantity; return its events."""
        cdef int64_t o, p, q
        self._prepare()
        if as_int64(order_id, &o) | as_int64(price, &p) | as_int64(quantity, &q):
            return [ReplaceRejected(order_id, OUT_OF_RANGE, OUT_OF_RANGE.text)]
        self._replace(o, p, q)
        return self._drain()

    def expire_day_orders(self):
        """Expire every resting DAY order (the end-of-day command); return the events."""
        self._prepare()
        self._expire_day_orders()
        return self._drain()

    def apply(self, command):
        """Dispatch one command Struct to its method."""
        return dispatch(self, command)

    def replay(self, stream):
        """Process a whole STREAM_DTYPE array in one call, the loop in C without the GIL.

        Returns the fills as a FILL_DTYPE array with the accepted/rejected counts.
        """
        stream = check_stream(stream)
        cdef Py_ssize_t n = stream.shape[0], i
        cdef const uint8_t[::1] raw
        cdef const StreamRecord* records = NULL
        if n:
            raw = stream.view(np.uint8)
            records = <const StreamRecord*>&raw[0]
        cdef int64_t accepted = 0, rejected = 0, j
        cdef bint failed = False
        self.tracking, self.touch_count = False, 0
        cdef const StreamRecord* r
        cdef Event* e
        cdef Fill* f
        self.fill_count = 0
        with nogil:
            for i in range(n):
                if self._reserve(True) != 0:
                    failed = True
                    break
                self.event_count = 0
                r = &records[i]
                if r.kind == STREAM_LIMIT_GTC:
                    self._submit(r.order_id, r.side, LIMIT, GTC, r.price, r.qty)
                elif r.kind == STREAM_CANCEL:
                    self._cancel(r.target_id)
                elif r.kind == STREAM_MARKET:
                    self._submit(r.order_id, r.side, MARKET, IOC, 0, r.qty)
                elif r.kind == STREAM_LIMIT_IOC:
                    self._submit(r.order_id, r.side, LIMIT, IOC, r.price, r.qty)
                elif r.kind == STREAM_LIMIT_FOK:
                    self._submit(r.order_id, r.side, LIMIT, FOK, r.price, r.qty)
                elif r.kind == STREAM_REPLACE:
                    self._replace(r.target_id, r.price, r.qty)
                else:
                    rejected += 1
                    continue
                if is_reject(self.events[0].kind):
                    rejected += 1
                    continue
                accepted += 1
                for j in range(self.event_count):
                    e = &self.events[j]
                    if e.kind == EV_FILLED:
                        f = &self.fills[self.fill_count]
                        f.maker_id, f.taker_id, f.price, f.qty = e.order_id, e.other_id, e.price, e.quantity
                        self.fill_count += 1
        self.event_count = 0
        if failed:
            self.fill_count = 0
            raise MemoryError(f"out of memory after {accepted + rejected} of {n} messages")
        fills = np.empty(self.fill_count, dtype=FILL_DTYPE)
        if self.fill_count:
            memcpy(<void*><Py_ssize_t>fills.ctypes.data, self.fills, self.fill_count * sizeof(Fill))
        self.fill_count = 0
        return ReplayResult(fills, accepted, rejected)

    # ================================================================ queries

    def __len__(self):
        return self.live.count

    @property
    def trade_sequence(self):
        """The sequence number of the last fill (0 before any)."""
        return self.trade_seq

    def best_bid(self):
        cdef int32_t best = self.ladder.levels[BUY].forward[0]
        return None if best == -1 else self.ladder.levels[best].price

    def best_ask(self):
        cdef int32_t best = self.ladder.levels[SELL].forward[0]
        return None if best == -1 else self.ladder.levels[best].price

    def depth(self, side, Py_ssize_t levels):
        """Up to ``levels`` price levels of ``side``, best first."""
        cdef int s = Side(side)
        cdef list out = []
        cdef int32_t lv = self.ladder.levels[s].forward[0]
        while lv != -1 and len(out) < levels:
            out.append(price_level(&self.ladder.levels[lv]))
            lv = self.ladder.levels[lv].forward[0]
        return out

    def level(self, int side, int64_t price):
        """The price level at ``price`` on ``side``, or None if no order rests there (O(log levels))."""
        if side != BUY and side != SELL:
            raise ValueError(f"{side!r} is not a valid Side")
        cdef int32_t lv = level_at(&self.ladder, side, price)
        if lv == -1:
            return None
        return price_level(&self.ladder.levels[lv])

    def level_changes(self):
        """The levels the last command changed, as it left them, in the order it first touched
        them (`engine.messages`); [] after a batch replay or a restore."""
        cdef list out = []
        cdef const Touch* t
        cdef const Level* level
        cdef int32_t lv
        cdef int64_t i, quantity
        cdef int32_t count
        for i in range(self.touch_count):
            t = &self.touches[i]
            lv = level_at(&self.ladder, t.side, t.price)
            if lv == -1:
                quantity, count = 0, 0
            else:
                level = &self.ladder.levels[lv]
                quantity, count = level.quantity, level.count
            if quantity != t.quantity or count != t.count:
                out.append(LevelChanged(SIDES[t.side], t.price, quantity, count))
        return out

    def top_of_book(self):
        cdef int32_t bid = self.ladder.levels[BUY].forward[0]
        cdef int32_t ask = self.ladder.levels[SELL].forward[0]
        return (
            None if bid == -1 else price_level(&self.ladder.levels[bid]),
            None if ask == -1 else price_level(&self.ladder.levels[ask]),
        )

    def order(self, int64_t order_id):
        cdef int32_t o = live_get(&self.live, order_id)
        if o == -1:
            return None
        cdef Order* order = &self.orders.slots[o]
        return RestingOrder(order.order_id, SIDES[order.side], self.ladder.levels[order.level].price,
                            order.quantity, TIFS[order.tif])

    def snapshot(self):
        """The book's logical state (see `engine.snapshot`), built in C: ``capture().finish()``."""
        return self.capture().finish()

    def capture(self):
        """What a snapshot needs, copied out of the book: the resting orders as ORDER_DTYPE
        records in priority order and the accepted-id bitmap's words. Its `BookCapture.finish`
        builds the snapshot from the copy on any thread while the book trades on; the part
        that grows with the accepted ids (sorting the words) is left to it."""
        cdef BookCapture capture = BookCapture.__new__(BookCapture)
        capture.trade_seq = self.trade_seq
        capture.records = self._resting_records()
        capture.words = <IdWord*>PyMem_RawMalloc(<size_t>max(self.ids.blocks, 1) * sizeof(IdWord))
        if capture.words == NULL:
            raise MemoryError("cannot allocate a snapshot of the accepted ids")
        with nogil:
            capture.word_count = accepted_words(&self.ids, capture.words)
        return capture

    @classmethod
    def restore(cls, snapshot):
        """Rebuild a book in exactly the state ``snapshot`` was taken from.

        The snapshot is validated first (`engine.snapshot.validate_snapshot`), so
        a damaged one raises ValueError instead of building a corrupt book.
        """
        validate_snapshot(snapshot)
        cdef NativeBook book = cls()
        book.trade_seq = snapshot.trade_sequence
        cdef bytes ranges = snapshot.accepted_ranges, words = snapshot.accepted_words
        cdef bytes lone = snapshot.accepted_lone, orders = snapshot.orders
        restore_accepted(&book.ids, <const int64_t*><const char*>ranges, len(ranges) // 16,
                         <const IdWord*><const char*>words, len(words) // sizeof(IdWord),
                         <const int64_t*><const char*>lone, len(lone) // 8)
        book._restore_orders(<const OrderRecord*><const char*>orders, len(orders) // sizeof(OrderRecord))
        return book

    def state_hash(self):
        """The 64-bit hash of the logical state defined in `engine.snapshot`."""
        cdef bytes records = self._resting_records()
        cdef const OrderRecord* r = <const OrderRecord*><const char*>records
        cdef uint64_t h = HASH_SEED
        cdef Py_ssize_t i
        for i in range(self.live.count):
            h = mix64(h ^ <uint64_t>r[i].side)
            h = mix64(h ^ <uint64_t>r[i].price)
            h = mix64(h ^ <uint64_t>r[i].order_id)
            h = mix64(h ^ <uint64_t>r[i].quantity)
            h = mix64(h ^ <uint64_t>r[i].tif)
        h = mix64(h ^ <uint64_t>self.trade_seq)
        h = mix64(h ^ <uint64_t>self.ids.count)
        return mix64(h ^ self.ids.digest)

    def memory_bytes(self):
        """Bytes held by the book's pools, tables and buffers."""
        return (self.orders.capacity * sizeof(Order) + self.ladder.capacity * sizeof(Level)
                + (self.live.mask + 1) * sizeof(LiveSlot) + (self.ids.mask + 1) * sizeof(IdBlock)
                + self.event_capacity * sizeof(Event) + self.fill_capacity * sizeof(Fill))

    def check_invariants(self):
        """Walk every structure; raise AssertionError naming the first broken invariant."""
        cdef int side, h
        cdef int32_t lv, nxt, o, prev
        cdef int64_t total, count, price, resting = 0, day = 0
        cdef Order* order
        cdef Level* levels = self.ladder.levels
        for side in range(2):
            for h in range(MAX_HEIGHT):
                lv = levels[side].forward[h]
                while lv != -1:
                    nxt = levels[lv].forward[h]
                    _require(nxt == -1 or levels[lv].key < levels[nxt].key,
                             f"skip list out of order at height {h} on side {side}")
                    _require(h < levels[lv].height, f"level {levels[lv].price} linked above its height")
                    lv = nxt
            lv = levels[side].forward[0]
            while lv != -1:
                price = levels[lv].price
                _require(levels[lv].key == side_key(side, price), f"level {price} has a wrong key")
                _require(levels[lv].count > 0, f"empty level {price} on side {side}")
                total = count = 0
                prev = -1
                o = levels[lv].head
                while o != -1:
                    order = &self.orders.slots[o]
                    _require(order.prev == prev, f"broken FIFO links at order {order.order_id}")
                    _require(order.quantity > 0, f"order {order.order_id} rests with quantity {order.quantity}")
                    _require(order.level == lv and order.side == side, f"order {order.order_id} misfiled")
                    _require(live_get(&self.live, order.order_id) == o, f"order {order.order_id} not indexed")
                    _require(was_accepted(&self.ids, order.order_id), f"order {order.order_id} never accepted")
                    total += order.quantity
                    count += 1
                    day += order.tif == DAY
                    prev = o
                    o = order.next
                _require(levels[lv].tail == prev, f"level {price} tail is not its last order")
                _require(total == levels[lv].quantity, f"level {price} quantity is not the sum of its orders")
                _require(count == levels[lv].count, f"level {price} count is wrong")
                resting += count
                lv = levels[lv].forward[0]
        _require(resting == self.live.count, "index holds orders that are not on a level")
        _require(day == self.day_orders, "DAY order count out of date")
        bid, ask = self.best_bid(), self.best_ask()
        _require(bid is None or ask is None or bid < ask, f"crossed book: {bid} >= {ask}")
        cdef uint64_t digest = 0, bits, base
        cdef int64_t i, blocks = 0
        count = 0
        for i in range(self.ids.mask + 1):
            bits = self.ids.slots[i].bits
            base = self.ids.slots[i].block << 6
            blocks += bits != 0
            while bits:
                digest += mix64((base | <uint64_t>trailing_zeros(bits)) ^ ID_SALT)
                count += 1
                bits &= bits - 1
        _require(blocks == self.ids.blocks, "accepted-id block count out of date")
        _require(count == self.ids.count, "accepted-id count out of date")
        _require(digest == self.ids.digest, "accepted-id digest out of date")

    # ================================================================ internals: capacity

    cdef int _prepare(self) except -1:
        """Ready the book for one command of the per-message API: buffers emptied and large
        enough (a command touches at most every level plus one new one), touches noted."""
        cdef int64_t need
        cdef void* p
        self.event_count = 0
        self.touch_count = 0
        self.command += 1
        self.tracking = True
        if self._reserve(False) != 0:
            raise MemoryError("order book out of memory")
        need = self.ladder.capacity + 2
        if self.touch_capacity < need:
            p = grow(self.touches, need, sizeof(Touch))
            if p == NULL:
                raise MemoryError("order book out of memory")
            self.touches, self.touch_capacity = <Touch*>p, need
        return 0

    cdef int _reserve(self, bint batch) noexcept nogil:
        cdef int64_t need
        cdef void* p
        if (order_pool_reserve(&self.orders) != 0 or ladder_reserve(&self.ladder) != 0
                or live_reserve(&self.live) != 0 or accepted_reserve(&self.ids) != 0):
            return -1
        need = self.live.count + 4
        if self.event_capacity < need:
            need = max(need, 2 * self.event_capacity)
            p = grow(self.events, need, sizeof(Event))
            if p == NULL:
                return -1
            self.events, self.event_capacity = <Event*>p, need
        need = self.fill_count + self.live.count + 1
        if batch and self.fill_capacity < need:
            need = max(need, 2 * self.fill_capacity)
            p = grow(self.fills, need, sizeof(Fill))
            if p == NULL:
                return -1
            self.fills, self.fill_capacity = <Fill*>p, need
        return 0

    # ================================================================ internals: commands

    cdef void _submit(self, int64_t order_id, int64_t side, int64_t order_type, int64_t tif,
                      int64_t price, int64_t quantity) noexcept nogil:
        cdef int32_t code = 0
        cdef bint market = order_type == MARKET
        if order_type != LIMIT and order_type != MARKET:
            code = UNKNOWN_ORDER_TYPE
        elif side != BUY and side != SELL:
            code = UNKNOWN_SIDE
        elif tif < GTC or tif > DAY:
            code = UNKNOWN_TIME_IN_FORCE
        elif quantity <= 0:
            code = INVALID_QUANTITY
        elif quantity > MAX_QUANTITY:
            code = QUANTITY_TOO_LARGE
        elif not market and price <= 0:
            code = INVALID_PRICE
        elif market and (tif == GTC or tif == DAY):
            code = MARKET_ORDER_CANNOT_REST
        elif was_accepted(&self.ids, order_id):
            code = DUPLICATE_ORDER_ID
        elif tif == FOK and self._available(<int>side, market, price, quantity) < quantity:
            code = FOK_NOT_FILLABLE
        if code:
            self._reject(EV_REJECTED, order_id, code)
            return
        if market:
            price = 0
        add_accepted(&self.ids, order_id)
        cdef Event* e = self._emit(EV_ACCEPTED)
        e.order_id, e.side, e.order_type, e.tif = order_id, <uint8_t>side, <uint8_t>order_type, <uint8_t>tif
        e.price, e.quantity = price, quantity
        cdef int64_t leaves = self._match(order_id, <int>side, market, price, quantity)
        if leaves:
            if not market and (tif == GTC or tif == DAY):
                self._rest(order_id, <int>side, price, leaves, <int>tif)
            else:
                e = self._emit(EV_CANCELED)
                e.order_id, e.quantity, e.code = order_id, leaves, UNFILLED

    cdef void _cancel(self, int64_t order_id) noexcept nogil:
        cdef int32_t o = live_get(&self.live, order_id)
        if o == -1:
            self._reject(EV_CANCEL_REJECTED, order_id, UNKNOWN_ORDER)
            return
        cdef Event* e = self._emit(EV_CANCELED)
        e.order_id, e.quantity, e.code = order_id, self.orders.slots[o].quantity, REQUESTED
        self._unlink(o)

    cdef void _replace(self, int64_t order_id, int64_t price, int64_t quantity) noexcept nogil:
        cdef int32_t code = 0, o = -1
        if quantity <= 0:
            code = INVALID_QUANTITY
        elif quantity > MAX_QUANTITY:
            code = QUANTITY_TOO_LARGE
        elif price <= 0:
            code = INVALID_PRICE
        else:
            o = live_get(&self.live, order_id)
            if o == -1:
                code = UNKNOWN_ORDER
        if code:
            self._reject(EV_REPLACE_REJECTED, order_id, code)
            return
        cdef Order* order = &self.orders.slots[o]
        cdef Level* level = &self.ladder.levels[order.level]
        cdef Event* e = self._emit(EV_REPLACED)
        e.order_id, e.price, e.quantity = order_id, price, quantity
        if price == level.price and quantity <= order.quantity:
            self._touch(order.side, order.level)
            level.quantity -= order.quantity - quantity
            order.quantity = quantity
            e.code = 1
            return
        e.code = 0
        cdef int side = order.side, tif = order.tif
        self._unlink(o)
        cdef int64_t leaves = self._match(order_id, side, False, price, quantity)
        if leaves:
            self._rest(order_id, side, price, leaves, tif)

    cdef void _expire_day_orders(self) noexcept nogil:
        cdef int side
        cdef int32_t lv, next_lv, o, next_o
        cdef Event* e
        for side in range(2):
            lv = self.ladder.levels[side].forward[0]
            while lv != -1 and self.day_orders:
                next_lv = self.ladder.levels[lv].forward[0]
                o = self.ladder.levels[lv].head
                while o != -1:
                    next_o = self.orders.slots[o].next
                    if self.orders.slots[o].tif == DAY:
                        e = self._emit(EV_EXPIRED)
                        e.order_id, e.quantity = self.orders.slots[o].order_id, self.orders.slots[o].quantity
                        self._unlink(o)
                    o = next_o
                lv = next_lv

    # ================================================================ internals: matching

    cdef int64_t _available(self, int side, bint market, int64_t limit, int64_t wanted) noexcept nogil:
        cdef int64_t total = 0
        cdef int32_t lv = self.ladder.levels[1 - side].forward[0]
        while lv != -1 and total < wanted:
            if not market and not within(side, limit, self.ladder.levels[lv].price):
                break
            total += self.ladder.levels[lv].quantity
            lv = self.ladder.levels[lv].forward[0]
        return total

    cdef int64_t _match(self, int64_t taker_id, int side, bint market, int64_t limit,
                        int64_t quantity) noexcept nogil:
        cdef int opposite = 1 - side
        cdef int32_t lv, o, filled
        cdef Level* level
        cdef Order* maker
        cdef int64_t traded
        cdef Event* e
        while quantity:
            lv = self.ladder.levels[opposite].forward[0]
            if lv == -1:
                break
            level = &self.ladder.levels[lv]
            if not market and not within(side, limit, level.price):
                break
            self._touch(opposite, lv)
            o = level.head
            while quantity and o != -1:
                maker = &self.orders.slots[o]
                traded = min(quantity, maker.quantity)
                maker.quantity -= traded
                level.quantity -= traded
                quantity -= traded
                self.trade_seq += 1
                e = self._emit(EV_FILLED)
                e.order_id, e.other_id, e.price, e.quantity = maker.order_id, taker_id, level.price, traded
                e.leaves, e.other_leaves, e.side, e.sequence = maker.quantity, quantity, side, self.trade_seq
                if maker.quantity == 0:
                    level.count -= 1
                    live_remove(&self.live, maker.order_id)
                    if maker.tif == DAY:
                        self.day_orders -= 1
                    filled, o = o, maker.next
                    order_release(&self.orders, filled)
                    level.head = o
                    if o != -1:
                        self.orders.slots[o].prev = -1
            if level.head == -1:
                level.tail = -1
                remove_best_level(&self.ladder, opposite)
        return quantity

    cdef void _rest(self, int64_t order_id, int side, int64_t price, int64_t quantity, int tif) noexcept nogil:
        cdef int32_t update[MAX_HEIGHT]
        cdef int64_t key = side_key(side, price)
        cdef int32_t lv = find_level(&self.ladder, side, key, update)
        if lv == -1:
            lv = insert_level(&self.ladder, side, price, key, update)
            self._touch_new(side, lv)
        else:
            self._touch(side, lv)
        cdef int32_t o = order_take(&self.orders)
        cdef Level* level = &self.ladder.levels[lv]
        cdef Order* order = &self.orders.slots[o]
        order.order_id, order.quantity, order.level = order_id, quantity, lv
        order.side, order.tif = <uint8_t>side, <uint8_t>tif
        order.prev, order.next = level.tail, -1
        if level.tail != -1:
            self.orders.slots[level.tail].next = o
        else:
            level.head = o
        level.tail = o
        level.count += 1
        level.quantity += quantity
        live_put(&self.live, order_id, o)
        if tif == DAY:
            self.day_orders += 1

    cdef void _unlink(self, int32_t o) noexcept nogil:
        """Take resting order ``o`` off its level and out of the index, freeing its slot."""
        cdef Order* order = &self.orders.slots[o]
        cdef int32_t lv = order.level
        cdef Level* level = &self.ladder.levels[lv]
        self._touch(order.side, lv)
        if order.prev != -1:
            self.orders.slots[order.prev].next = order.next
        else:
            level.head = order.next
        if order.next != -1:
            self.orders.slots[order.next].prev = order.prev
        else:
            level.tail = order.prev
        level.count -= 1
        level.quantity -= order.quantity
        live_remove(&self.live, order.order_id)
        if order.tif == DAY:
            self.day_orders -= 1
        if level.count == 0:
            remove_level(&self.ladder, order.side, lv)
        order_release(&self.orders, o)

    cdef void _touch(self, int side, int32_t lv) noexcept nogil:
        """Note existing level ``lv``'s state before the command first changes it (see
        `level_changes`): once per level and command, by its stamp."""
        cdef Level* level = &self.ladder.levels[lv]
        if not self.tracking or level.touched == self.command:
            return
        level.touched = self.command
        cdef Touch* t = &self.touches[self.touch_count]
        self.touch_count += 1
        t.side, t.price, t.quantity, t.count = <uint8_t>side, level.price, level.quantity, level.count

    cdef void _touch_new(self, int side, int32_t lv) noexcept nogil:
        """Note level ``lv``, just inserted, as absent before the command, unless the command
        already noted its price on this side (a replace that emptied the level and re-enters)."""
        if not self.tracking:
            return
        cdef Level* level = &self.ladder.levels[lv]
        level.touched = self.command
        cdef int64_t i
        for i in range(self.touch_count):
            if self.touches[i].side == side and self.touches[i].price == level.price:
                return
        cdef Touch* t = &self.touches[self.touch_count]
        self.touch_count += 1
        t.side, t.price, t.quantity, t.count = <uint8_t>side, level.price, 0, 0

    # ================================================================ internals: snapshots

    cdef bytes _resting_records(self):
        """Every resting order as packed ORDER_DTYPE records, in priority order."""
        cdef bytes records = PyBytes_FromStringAndSize(NULL, self.live.count * sizeof(OrderRecord))
        cdef OrderRecord* out = <OrderRecord*>PyBytes_AS_STRING(records)
        cdef int64_t n = 0
        cdef int side
        cdef int32_t lv, o
        with nogil:
            for side in range(2):
                lv = self.ladder.levels[side].forward[0]
                while lv != -1:
                    o = self.ladder.levels[lv].head
                    while o != -1:
                        out[n].order_id = self.orders.slots[o].order_id
                        out[n].side = side
                        out[n].price = self.ladder.levels[lv].price
                        out[n].quantity = self.orders.slots[o].quantity
                        out[n].tif = self.orders.slots[o].tif
                        n += 1
                        o = self.orders.slots[o].next
                    lv = self.ladder.levels[lv].forward[0]
        return records

    cdef int _restore_orders(self, const OrderRecord* records, int64_t count) except -1:
        """Rest ``count`` validated records, in priority order, in a book that has accepted their ids."""
        cdef int64_t i
        cdef bint failed = False
        with nogil:
            for i in range(count):
                if self._reserve(False) != 0:
                    failed = True
                    break
                self._rest(records[i].order_id, records[i].side, records[i].price, records[i].quantity,
                           records[i].tif)
        if failed:
            raise MemoryError("order book out of memory")
        return 0

    # ================================================================ internals: events

    cdef Event* _emit(self, uint8_t kind) noexcept nogil:
        cdef Event* e = &self.events[self.event_count]
        self.event_count += 1
        e.kind = kind
        return e

    cdef void _reject(self, uint8_t kind, int64_t order_id, int32_t code) noexcept nogil:
        cdef Event* e = self._emit(kind)
        e.order_id, e.code = order_id, code

    cdef list _drain(self):
        """Turn the buffered events of the last command into event Structs."""
        cdef list out = []
        cdef Event* e
        cdef int64_t i
        for i in range(self.event_count):
            e = &self.events[i]
            if e.kind == EV_FILLED:
                out.append(_OrderFilled(e.order_id, e.other_id, e.price, e.quantity, e.leaves,
                                        e.other_leaves, SIDES[e.side], e.sequence))
            elif e.kind == EV_ACCEPTED:
                out.append(_OrderAccepted(e.order_id, SIDES[e.side], ORDER_TYPES[e.order_type],
                                          TIFS[e.tif], e.price, e.quantity))
            elif e.kind == EV_CANCELED:
                out.append(_OrderCanceled(e.order_id, e.quantity, CANCEL_REASONS[e.code]))
            elif e.kind == EV_REPLACED:
                out.append(_OrderReplaced(e.order_id, e.price, e.quantity, e.code == 1))
            elif e.kind == EV_EXPIRED:
                out.append(_OrderExpired(e.order_id, e.quantity))
            else:
                reason, text = REASONS[e.code]
                out.append(REJECT_EVENTS[e.kind - EV_REJECTED](e.order_id, reason, text))
        self.event_count = 0
        return out


cdef class BookCapture:
    """A book's state as `NativeBook.capture` copied it out; `finish` makes the snapshot."""

    def __dealloc__(self):
        PyMem_RawFree(self.words)

    def finish(self):
        """The `BookSnapshot` of the captured state. The accepted-id records come from the
        bitmap's words sorted by id, runs of full words joined into ranges; that work runs
        without the GIL, so a writer thread doing it does not hold up the loop."""
        cdef int64_t counts[3]
        with nogil:
            qsort(self.words, <size_t>self.word_count, sizeof(IdWord), compare_words)
            write_records(self.words, self.word_count, NULL, NULL, NULL, counts)
        cdef bytes ranges = PyBytes_FromStringAndSize(NULL, counts[0] * 16)
        cdef bytes words = PyBytes_FromStringAndSize(NULL, counts[1] * sizeof(IdWord))
        cdef bytes lone = PyBytes_FromStringAndSize(NULL, counts[2] * 8)
        cdef int64_t* range_out = <int64_t*>PyBytes_AS_STRING(ranges)
        cdef IdWord* word_out = <IdWord*>PyBytes_AS_STRING(words)
        cdef int64_t* lone_out = <int64_t*>PyBytes_AS_STRING(lone)
        with nogil:
            write_records(self.words, self.word_count, range_out, word_out, lone_out, counts)
        return BookSnapshot(self.trade_seq, self.records, ranges, words, lone)


def _require(bint condition, str message):
    if not condition:
        raise AssertionError(message)
