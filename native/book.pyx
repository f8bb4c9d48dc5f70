# cython: boundscheck=False, wraparound=False
"""The native price-time priority order book: the reference book's semantics in C.

`NativeBook` has the Python API of `engine.book.ReferenceBook` and must produce
identical events, snapshots and state hashes for every command sequence (the
differential tests hold it to that); the reference book's docstring is the
specification of matching, validation order and replace.

Invariants
----------
- Per side, price levels form a skip list ordered by key (price for asks, -price
  for bids), so the first level is the best price and a walk along ``forward[0]``
  visits prices from best to worst. A level exists iff it holds an order.
- Within a level, orders form a doubly linked FIFO list; a level's quantity is the
  sum of its orders' open quantities (each > 0) and its count their number.
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
from cpython.mem cimport PyMem_RawFree, PyMem_RawMalloc, PyMem_RawRealloc
from libc.stdint cimport INT64_MIN, int32_t, int64_t, uint8_t, uint64_t
from libc.stdlib cimport qsort
from libc.string cimport memcpy, memset

import numpy as np

from engine.messages import (
    CancelRejected,
    OrderAccepted,
    OrderCanceled,
    OrderExpired,
    OrderFilled,
    OrderRejected,
    OrderReplaced,
    PriceLevel,
    ReplaceRejected,
    RestingOrder,
    dispatch,
)
from engine.snapshot import BookSnapshot, validate_snapshot
from engine.stream import FILL_DTYPE, ReplayResult, check_stream
from engine.types import CancelReason, OrderType, RejectReason, Side, TimeInForce

cdef extern from *:
    """
    #include <stdint.h>
    static inline uint64_t exchange_mix64(uint64_t x) {
        x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
        x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
        return x ^ (x >> 31);
    }
    #define EXCHANGE_HASH_SEED 0x9E3779B97F4A7C15ULL
    #define EXCHANGE_ID_SALT 0x5851F42D4C957F2DULL
    #define EXCHANGE_MAX_ID_BLOCKS (1LL << 40)
    """
    uint64_t mix64 "exchange_mix64"(uint64_t x) nogil
    uint64_t HASH_SEED "EXCHANGE_HASH_SEED"
    uint64_t ID_SALT "EXCHANGE_ID_SALT"
    int64_t MAX_ID_BLOCKS "EXCHANGE_MAX_ID_BLOCKS"     # far beyond memory; keeps table sizes in range
    int trailing_zeros "__builtin_ctzll"(unsigned long long x) nogil   # x != 0
    int popcount "__builtin_popcountll"(unsigned long long x) nogil


cdef packed struct StreamRecord:     # STREAM_DTYPE
    uint8_t kind
    uint8_t side
    int64_t price
    int64_t qty
    int64_t order_id
    int64_t target_id


cdef enum:
    BUY = 0
    SELL = 1
    LIMIT = 0
    MARKET = 1
    GTC = 0
    IOC = 1
    FOK = 2
    DAY = 3
    MAX_QUANTITY = 1000000000

    EV_ACCEPTED = 0
    EV_REJECTED = 1
    EV_CANCEL_REJECTED = 2
    EV_REPLACE_REJECTED = 3
    EV_FILLED = 4
    EV_CANCELED = 5
    EV_REPLACED = 6
    EV_EXPIRED = 7

    UNKNOWN_ORDER_TYPE = 1001
    UNKNOWN_SIDE = 1002
    UNKNOWN_TIME_IN_FORCE = 1003
    INVALID_QUANTITY = 1004
    QUANTITY_TOO_LARGE = 1005
    INVALID_PRICE = 1006
    MARKET_ORDER_CANNOT_REST = 1007
    DUPLICATE_ORDER_ID = 1008
    UNKNOWN_ORDER = 2001
    FOK_NOT_FILLABLE = 2002

    REQUESTED = 0
    UNFILLED = 1

    STREAM_LIMIT_GTC = 0
    STREAM_MARKET = 1
    STREAM_CANCEL = 2
    STREAM_REPLACE = 3
    STREAM_LIMIT_IOC = 4
    STREAM_LIMIT_FOK = 5

    INITIAL_ORDERS = 1024
    INITIAL_LEVELS = 256
    INITIAL_TABLE = 1024
    INITIAL_EVENTS = 64

cdef uint64_t FULL_WORD = ~(<uint64_t>0)   # a word of the accepted-id bitmap with all 64 ids

cdef tuple SIDES = (Side.BUY, Side.SELL)
cdef tuple ORDER_TYPES = (OrderType.LIMIT, OrderType.MARKET)
cdef tuple TIFS = (TimeInForce.GTC, TimeInForce.IOC, TimeInForce.FOK, TimeInForce.DAY)
cdef tuple CANCEL_REASONS = (CancelReason.REQUESTED, CancelReason.UNFILLED)
cdef dict REASONS = {int(reason): (reason, reason.text) for reason in RejectReason}
cdef object _OrderAccepted = OrderAccepted
cdef object _OrderFilled = OrderFilled
cdef object _OrderCanceled = OrderCanceled
cdef object _OrderReplaced = OrderReplaced
cdef object _OrderExpired = OrderExpired
cdef tuple REJECT_EVENTS = (OrderRejected, CancelRejected, ReplaceRejected)


cdef inline int64_t side_key(int side, int64_t price) noexcept nogil:
    return -price if side == BUY else price


cdef inline bint within(int side, int64_t limit, int64_t price) noexcept nogil:
    """Whether a ``side`` taker limited at ``limit`` may trade at ``price``."""
    return price <= limit if side == BUY else price >= limit


cdef inline bint is_reject(uint8_t kind) noexcept nogil:
    return kind == EV_REJECTED or kind == EV_CANCEL_REJECTED or kind == EV_REPLACE_REJECTED


cdef void* grow(void* block, int64_t count, size_t size) noexcept nogil:
    """Resize ``block`` to ``count`` items of ``size`` bytes; NULL (block intact) on failure."""
    return PyMem_RawRealloc(block, <size_t>count * size)


cdef int compare_words(const void* a, const void* b) noexcept nogil:
    cdef int64_t x = (<const IdWord*>a).first, y = (<const IdWord*>b).first
    return (x > y) - (x < y)


cdef void write_records(const IdWord* words, int64_t n, int64_t* ranges, IdWord* pairs, int64_t* lone,
                        int64_t* counts) noexcept nogil:
    """The accepted-id records (`engine.snapshot`) of the non-empty ``words``, sorted by ``first``:
    runs of full words as (first, last) pairs into ``ranges``, words of 2 to 63 ids as they are
    into ``pairs``, the ids alone in their word into ``lone``, unless those are NULL; how many
    of each into ``counts[0..2]``."""
    cdef int64_t i, r = 0, p = 0, k = 0
    cdef uint64_t bits
    cdef bint full_before = False
    for i in range(n):
        bits = words[i].bits
        if bits == FULL_WORD:
            # words[i] follows words[i - 1], so its first - 64 cannot overflow
            if not (full_before and words[i].first - 64 == words[i - 1].first):
                r += 1
                if ranges != NULL:
                    ranges[2 * r - 2] = words[i].first
            if ranges != NULL:
                ranges[2 * r - 1] = words[i].first + 63
            full_before = True
            continue
        full_before = False
        if bits & (bits - 1):
            if pairs != NULL:
                pairs[p] = words[i]
            p += 1
        else:
            if lone != NULL:
                lone[k] = words[i].first + trailing_zeros(bits)
            k += 1
    counts[0], counts[1], counts[2] = r, p, k


cdef class NativeBook:
    """A price-time priority limit order book for one symbol, in C.

    Every command method returns the list of events it produced; see
    `engine.messages` for which events each command produces.
    """

    # ================================================================ life cycle

    def __cinit__(self):
        self.orders = <Order*>PyMem_RawMalloc(INITIAL_ORDERS * sizeof(Order))
        self.levels = <Level*>PyMem_RawMalloc(INITIAL_LEVELS * sizeof(Level))
        self.live = <LiveSlot*>PyMem_RawMalloc(INITIAL_TABLE * sizeof(LiveSlot))
        self.ids = <IdBlock*>PyMem_RawMalloc(INITIAL_TABLE * sizeof(IdBlock))
        self.events = <Event*>PyMem_RawMalloc(INITIAL_EVENTS * sizeof(Event))
        self.fills = <Fill*>PyMem_RawMalloc(INITIAL_EVENTS * sizeof(Fill))
        if (self.orders == NULL or self.levels == NULL or self.live == NULL or self.ids == NULL
                or self.events == NULL or self.fills == NULL):
            raise MemoryError("cannot allocate an order book")
        self.order_capacity, self.order_top, self.order_free = INITIAL_ORDERS, 0, -1
        self.level_capacity, self.level_top, self.level_free = INITIAL_LEVELS, 2, -1
        cdef int side, h
        for side in range(2):
            self.levels[side].price = 0
            self.levels[side].key = INT64_MIN
            self.levels[side].height = MAX_HEIGHT
            for h in range(MAX_HEIGHT):
                self.levels[side].forward[h] = -1
            self.height[side] = 1
        self.live_mask, self.live_count = INITIAL_TABLE - 1, 0
        cdef int64_t i
        for i in range(INITIAL_TABLE):
            self.live[i].index = -1
        memset(self.ids, 0, INITIAL_TABLE * sizeof(IdBlock))
        self.ids_mask, self.ids_blocks, self.ids_count, self.ids_digest = INITIAL_TABLE - 1, 0, 0, 0
        self.event_capacity, self.event_count = INITIAL_EVENTS, 0
        self.fill_capacity, self.fill_count = INITIAL_EVENTS, 0
        self.trade_seq = 0
        self.day_orders = 0
        self.rng = 0x2545F4914F6CDD1D

    def __dealloc__(self):
        PyMem_RawFree(self.orders)
        PyMem_RawFree(self.levels)
        PyMem_RawFree(self.live)
        PyMem_RawFree(self.ids)
        PyMem_RawFree(self.events)
        PyMem_RawFree(self.fills)

    # ================================================================ commands (Python API)

    def submit(self, int64_t order_id, int64_t side, int64_t order_type, int64_t time_in_force,
               int64_t price, int64_t quantity):
        """Enter a new order; return its events."""
        self._prepare()
        self._submit(order_id, side, order_type, time_in_force, price, quantity)
        return self._drain()

    def cancel(self, int64_t order_id):
        """Remove a resting order; return its events."""
        self._prepare()
        self._cancel(order_id)
        return self._drain()

    def replace(self, int64_t order_id, int64_t price, int64_t quantity):
        """Change a resting order's price and open quantity; return its events."""
        self._prepare()
        self._replace(order_id, price, quantity)
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
        return self.live_count

    @property
    def trade_sequence(self):
        """The sequence number of the last fill (0 before any)."""
        return self.trade_seq

    def best_bid(self):
        cdef int32_t best = self.levels[BUY].forward[0]
        return None if best == -1 else self.levels[best].price

    def best_ask(self):
        cdef int32_t best = self.levels[SELL].forward[0]
        return None if best == -1 else self.levels[best].price

    def depth(self, side, Py_ssize_t levels):
        """Up to ``levels`` price levels of ``side``, best first."""
        cdef int s = Side(side)
        cdef list out = []
        cdef int32_t lv = self.levels[s].forward[0]
        while lv != -1 and len(out) < levels:
            out.append(PriceLevel(self.levels[lv].price, self.levels[lv].quantity, self.levels[lv].count))
            lv = self.levels[lv].forward[0]
        return out

    def level(self, int side, int64_t price):
        """The price level at ``price`` on ``side``, or None if no order rests there (O(log levels))."""
        if side != BUY and side != SELL:
            raise ValueError(f"{side!r} is not a valid Side")
        cdef int32_t lv = self._level_at(side, price)
        if lv == -1:
            return None
        return PriceLevel(price, self.levels[lv].quantity, self.levels[lv].count)

    def top_of_book(self):
        cdef int32_t bid = self.levels[BUY].forward[0]
        cdef int32_t ask = self.levels[SELL].forward[0]
        return (
            None if bid == -1 else PriceLevel(self.levels[bid].price, self.levels[bid].quantity, self.levels[bid].count),
            None if ask == -1 else PriceLevel(self.levels[ask].price, self.levels[ask].quantity, self.levels[ask].count),
        )

    def order(self, int64_t order_id):
        cdef int32_t o = self._live_get(order_id)
        if o == -1:
            return None
        cdef Order* order = &self.orders[o]
        return RestingOrder(order.order_id, SIDES[order.side], self.levels[order.level].price,
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
        capture.words = <IdWord*>PyMem_RawMalloc(<size_t>max(self.ids_blocks, 1) * sizeof(IdWord))
        if capture.words == NULL:
            raise MemoryError("cannot allocate a snapshot of the accepted ids")
        cdef int64_t i, n = 0
        cdef IdWord* words = capture.words
        with nogil:
            for i in range(self.ids_mask + 1):
                if self.ids[i].bits != 0:
                    words[n].first, words[n].bits = <int64_t>(self.ids[i].block << 6), self.ids[i].bits
                    n += 1
        capture.word_count = n
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
        book._restore_ids(<const int64_t*><const char*>ranges, len(ranges) // 16,
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
        for i in range(self.live_count):
            h = mix64(h ^ <uint64_t>r[i].side)
            h = mix64(h ^ <uint64_t>r[i].price)
            h = mix64(h ^ <uint64_t>r[i].order_id)
            h = mix64(h ^ <uint64_t>r[i].quantity)
            h = mix64(h ^ <uint64_t>r[i].tif)
        h = mix64(h ^ <uint64_t>self.trade_seq)
        h = mix64(h ^ <uint64_t>self.ids_count)
        return mix64(h ^ self.ids_digest)

    def memory_bytes(self):
        """Bytes held by the book's pools, tables and buffers."""
        return (self.order_capacity * sizeof(Order) + self.level_capacity * sizeof(Level)
                + (self.live_mask + 1) * sizeof(LiveSlot) + (self.ids_mask + 1) * sizeof(IdBlock)
                + self.event_capacity * sizeof(Event) + self.fill_capacity * sizeof(Fill))

    def check_invariants(self):
        """Walk every structure; raise AssertionError naming the first broken invariant."""
        cdef int side, h
        cdef int32_t lv, nxt, o, prev
        cdef int64_t total, count, price, resting = 0, day = 0
        cdef Order* order
        for side in range(2):
            for h in range(MAX_HEIGHT):
                lv = self.levels[side].forward[h]
                while lv != -1:
                    nxt = self.levels[lv].forward[h]
                    _require(nxt == -1 or self.levels[lv].key < self.levels[nxt].key,
                             f"skip list out of order at height {h} on side {side}")
                    _require(h < self.levels[lv].height, f"level {self.levels[lv].price} linked above its height")
                    lv = nxt
            lv = self.levels[side].forward[0]
            while lv != -1:
                price = self.levels[lv].price
                _require(self.levels[lv].key == side_key(side, price), f"level {price} has a wrong key")
                _require(self.levels[lv].count > 0, f"empty level {price} on side {side}")
                total = count = 0
                prev = -1
                o = self.levels[lv].head
                while o != -1:
                    order = &self.orders[o]
                    _require(order.prev == prev, f"broken FIFO links at order {order.order_id}")
                    _require(order.quantity > 0, f"order {order.order_id} rests with quantity {order.quantity}")
                    _require(order.level == lv and order.side == side, f"order {order.order_id} misfiled")
                    _require(self._live_get(order.order_id) == o, f"order {order.order_id} not indexed")
                    _require(self._was_accepted(order.order_id), f"order {order.order_id} never accepted")
                    total += order.quantity
                    count += 1
                    day += order.tif == DAY
                    prev = o
                    o = order.next
                _require(self.levels[lv].tail == prev, f"level {price} tail is not its last order")
                _require(total == self.levels[lv].quantity, f"level {price} quantity is not the sum of its orders")
                _require(count == self.levels[lv].count, f"level {price} count is wrong")
                resting += count
                lv = self.levels[lv].forward[0]
        _require(resting == self.live_count, "index holds orders that are not on a level")
        _require(day == self.day_orders, "DAY order count out of date")
        bid, ask = self.best_bid(), self.best_ask()
        _require(bid is None or ask is None or bid < ask, f"crossed book: {bid} >= {ask}")
        cdef uint64_t digest = 0, bits, base
        cdef int64_t i, blocks = 0
        count = 0
        for i in range(self.ids_mask + 1):
            bits = self.ids[i].bits
            base = self.ids[i].block << 6
            blocks += bits != 0
            while bits:
                digest += mix64((base | <uint64_t>trailing_zeros(bits)) ^ ID_SALT)
                count += 1
                bits &= bits - 1
        _require(blocks == self.ids_blocks, "accepted-id block count out of date")
        _require(count == self.ids_count, "accepted-id count out of date")
        _require(digest == self.ids_digest, "accepted-id digest out of date")

    # ================================================================ internals: capacity

    cdef int _prepare(self) except -1:
        self.event_count = 0
        if self._reserve(False) != 0:
            raise MemoryError("order book out of memory")
        return 0

    cdef int _reserve(self, bint batch) noexcept nogil:
        cdef int64_t need
        cdef void* p
        if self.order_free == -1 and self.order_top == self.order_capacity:
            if self.order_capacity > 0x3FFFFFFF:
                return -1
            p = grow(self.orders, 2 * <int64_t>self.order_capacity, sizeof(Order))
            if p == NULL:
                return -1
            self.orders, self.order_capacity = <Order*>p, 2 * self.order_capacity
        if self.level_free == -1 and self.level_top == self.level_capacity:
            if self.level_capacity > 0x3FFFFFFF:
                return -1
            p = grow(self.levels, 2 * <int64_t>self.level_capacity, sizeof(Level))
            if p == NULL:
                return -1
            self.levels, self.level_capacity = <Level*>p, 2 * self.level_capacity
        if 2 * (self.live_count + 1) > self.live_mask + 1 and self._grow_live() != 0:
            return -1
        if 2 * (self.ids_blocks + 1) > self.ids_mask + 1 and self._resize_ids(2 * (self.ids_mask + 1)) != 0:
            return -1
        need = self.live_count + 4
        if self.event_capacity < need:
            need = max(need, 2 * self.event_capacity)
            p = grow(self.events, need, sizeof(Event))
            if p == NULL:
                return -1
            self.events, self.event_capacity = <Event*>p, need
        need = self.fill_count + self.live_count + 1
        if batch and self.fill_capacity < need:
            need = max(need, 2 * self.fill_capacity)
            p = grow(self.fills, need, sizeof(Fill))
            if p == NULL:
                return -1
            self.fills, self.fill_capacity = <Fill*>p, need
        return 0

    cdef int _grow_live(self) noexcept nogil:
        cdef int64_t old_size = self.live_mask + 1, size = 2 * old_size, i, j
        cdef LiveSlot* table = <LiveSlot*>PyMem_RawMalloc(<size_t>size * sizeof(LiveSlot))
        if table == NULL:
            return -1
        for i in range(size):
            table[i].index = -1
        for i in range(old_size):
            if self.live[i].index != -1:
                j = mix64(<uint64_t>self.live[i].order_id) & (size - 1)
                while table[j].index != -1:
                    j = (j + 1) & (size - 1)
                table[j] = self.live[i]
        PyMem_RawFree(self.live)
        self.live, self.live_mask = table, size - 1
        return 0

    cdef int _resize_ids(self, int64_t size) noexcept nogil:
        """Rehash the id table into ``size`` slots (a power of two above twice the blocks)."""
        cdef int64_t old_size = self.ids_mask + 1, i, j
        cdef IdBlock* table = <IdBlock*>PyMem_RawMalloc(<size_t>size * sizeof(IdBlock))
        if table == NULL:
            return -1
        memset(table, 0, <size_t>size * sizeof(IdBlock))
        for i in range(old_size):
            if self.ids[i].bits != 0:
                j = mix64(self.ids[i].block) & (size - 1)
                while table[j].bits != 0:
                    j = (j + 1) & (size - 1)
                table[j] = self.ids[i]
        PyMem_RawFree(self.ids)
        self.ids, self.ids_mask = table, size - 1
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
        elif self._was_accepted(order_id):
            code = DUPLICATE_ORDER_ID
        elif tif == FOK and self._available(<int>side, market, price, quantity) < quantity:
            code = FOK_NOT_FILLABLE
        if code:
            self._reject(EV_REJECTED, order_id, code)
            return
        if market:
            price = 0
        self._add_accepted(order_id)
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
        cdef int32_t o = self._live_get(order_id)
        if o == -1:
            self._reject(EV_CANCEL_REJECTED, order_id, UNKNOWN_ORDER)
            return
        cdef Event* e = self._emit(EV_CANCELED)
        e.order_id, e.quantity, e.code = order_id, self.orders[o].quantity, REQUESTED
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
            o = self._live_get(order_id)
            if o == -1:
                code = UNKNOWN_ORDER
        if code:
            self._reject(EV_REPLACE_REJECTED, order_id, code)
            return
        cdef Order* order = &self.orders[o]
        cdef Level* level = &self.levels[order.level]
        cdef Event* e = self._emit(EV_REPLACED)
        e.order_id, e.price, e.quantity = order_id, price, quantity
        if price == level.price and quantity <= order.quantity:
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
            lv = self.levels[side].forward[0]
            while lv != -1 and self.day_orders:
                next_lv = self.levels[lv].forward[0]
                o = self.levels[lv].head
                while o != -1:
                    next_o = self.orders[o].next
                    if self.orders[o].tif == DAY:
                        e = self._emit(EV_EXPIRED)
                        e.order_id, e.quantity = self.orders[o].order_id, self.orders[o].quantity
                        self._unlink(o)
                    o = next_o
                lv = next_lv

    # ================================================================ internals: matching

    cdef int64_t _available(self, int side, bint market, int64_t limit, int64_t wanted) noexcept nogil:
        cdef int64_t total = 0
        cdef int32_t lv = self.levels[1 - side].forward[0]
        while lv != -1 and total < wanted:
            if not market and not within(side, limit, self.levels[lv].price):
                break
            total += self.levels[lv].quantity
            lv = self.levels[lv].forward[0]
        return total

    cdef int64_t _match(self, int64_t taker_id, int side, bint market, int64_t limit,
                        int64_t quantity) noexcept nogil:
        cdef int opposite = 1 - side
        cdef int32_t lv, o, filled
        cdef int h
        cdef Level* level
        cdef Order* maker
        cdef int64_t traded
        cdef Event* e
        while quantity:
            lv = self.levels[opposite].forward[0]
            if lv == -1:
                break
            level = &self.levels[lv]
            if not market and not within(side, limit, level.price):
                break
            o = level.head
            while quantity and o != -1:
                maker = &self.orders[o]
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
                    self._live_remove(maker.order_id)
                    if maker.tif == DAY:
                        self.day_orders -= 1
                    filled, o = o, maker.next
                    self._release(filled)
                    level.head = o
                    if o != -1:
                        self.orders[o].prev = -1
            if level.head == -1:
                level.tail = -1
                for h in range(level.height):
                    self.levels[opposite].forward[h] = level.forward[h]
                self._shrink(opposite)
                level.forward[0] = self.level_free
                self.level_free = lv
        return quantity

    cdef void _rest(self, int64_t order_id, int side, int64_t price, int64_t quantity, int tif) noexcept nogil:
        cdef int32_t update[MAX_HEIGHT]
        cdef int64_t key = side_key(side, price)
        cdef int32_t lv = self._find_level(side, key, update)
        if lv == -1:
            lv = self._insert_level(side, price, key, update)
        cdef int32_t o
        if self.order_free != -1:
            o = self.order_free
            self.order_free = self.orders[o].next
        else:
            o = self.order_top
            self.order_top += 1
        cdef Level* level = &self.levels[lv]
        cdef Order* order = &self.orders[o]
        order.order_id, order.quantity, order.level = order_id, quantity, lv
        order.side, order.tif = <uint8_t>side, <uint8_t>tif
        order.prev, order.next = level.tail, -1
        if level.tail != -1:
            self.orders[level.tail].next = o
        else:
            level.head = o
        level.tail = o
        level.count += 1
        level.quantity += quantity
        self._live_put(order_id, o)
        if tif == DAY:
            self.day_orders += 1

    cdef void _unlink(self, int32_t o) noexcept nogil:
        """Take resting order ``o`` off its level and out of the index, freeing its slot."""
        cdef Order* order = &self.orders[o]
        cdef int32_t lv = order.level
        cdef Level* level = &self.levels[lv]
        if order.prev != -1:
            self.orders[order.prev].next = order.next
        else:
            level.head = order.next
        if order.next != -1:
            self.orders[order.next].prev = order.prev
        else:
            level.tail = order.prev
        level.count -= 1
        level.quantity -= order.quantity
        self._live_remove(order.order_id)
        if order.tif == DAY:
            self.day_orders -= 1
        if level.count == 0:
            self._remove_level(order.side, lv)
        self._release(o)

    cdef void _release(self, int32_t o) noexcept nogil:
        self.orders[o].next = self.order_free
        self.order_free = o

    # ================================================================ internals: price levels

    cdef int32_t _find_level(self, int side, int64_t key, int32_t* update) noexcept nogil:
        """The level with ``key`` or -1; ``update[h]`` gets its predecessor at each height."""
        cdef Level* levels = self.levels
        cdef int32_t x = side, nxt
        cdef int h
        for h in range(self.height[side] - 1, -1, -1):
            nxt = levels[x].forward[h]
            while nxt != -1 and levels[nxt].key < key:
                x = nxt
                nxt = levels[x].forward[h]
            update[h] = x
        nxt = levels[x].forward[0]
        if nxt != -1 and levels[nxt].key == key:
            return nxt
        return -1

    cdef int32_t _level_at(self, int side, int64_t price) noexcept nogil:
        """The level holding ``price`` on ``side``, or -1."""
        cdef int32_t update[MAX_HEIGHT]
        return self._find_level(side, side_key(side, price), update)

    cdef int32_t _insert_level(self, int side, int64_t price, int64_t key, int32_t* update) noexcept nogil:
        cdef int32_t lv
        if self.level_free != -1:
            lv = self.level_free
            self.level_free = self.levels[lv].forward[0]
        else:
            lv = self.level_top
            self.level_top += 1
        cdef int h, height = self._random_height()
        if height > self.height[side]:
            for h in range(self.height[side], height):
                update[h] = side
            self.height[side] = height
        cdef Level* level = &self.levels[lv]
        level.price, level.key, level.quantity = price, key, 0
        level.count, level.head, level.tail, level.height = 0, -1, -1, height
        for h in range(height):
            level.forward[h] = self.levels[update[h]].forward[h]
            self.levels[update[h]].forward[h] = lv
        return lv

    cdef void _remove_level(self, int side, int32_t lv) noexcept nogil:
        cdef int32_t update[MAX_HEIGHT]
        cdef int h
        cdef Level* level = &self.levels[lv]
        if self.levels[side].forward[0] == lv:
            for h in range(level.height):
                self.levels[side].forward[h] = level.forward[h]
        else:
            self._find_level(side, level.key, update)
            for h in range(level.height):
                self.levels[update[h]].forward[h] = level.forward[h]
        self._shrink(side)
        level.forward[0] = self.level_free
        self.level_free = lv

    cdef void _shrink(self, int side) noexcept nogil:
        while self.height[side] > 1 and self.levels[side].forward[self.height[side] - 1] == -1:
            self.height[side] -= 1

    cdef int _random_height(self) noexcept nogil:
        cdef uint64_t x = self.rng
        x ^= x >> 12
        x ^= x << 25
        x ^= x >> 27
        self.rng = x
        x *= <uint64_t>2685821657736338717
        cdef int height = 1
        while height < MAX_HEIGHT and (x & 3) == 0:
            height += 1
            x >>= 2
        return height

    # ================================================================ internals: snapshots

    cdef bytes _resting_records(self):
        """Every resting order as packed ORDER_DTYPE records, in priority order."""
        cdef bytes records = PyBytes_FromStringAndSize(NULL, self.live_count * sizeof(OrderRecord))
        cdef OrderRecord* out = <OrderRecord*>PyBytes_AS_STRING(records)
        cdef int64_t n = 0
        cdef int side
        cdef int32_t lv, o
        with nogil:
            for side in range(2):
                lv = self.levels[side].forward[0]
                while lv != -1:
                    o = self.levels[lv].head
                    while o != -1:
                        out[n].order_id = self.orders[o].order_id
                        out[n].side = side
                        out[n].price = self.levels[lv].price
                        out[n].quantity = self.orders[o].quantity
                        out[n].tif = self.orders[o].tif
                        n += 1
                        o = self.orders[o].next
                    lv = self.levels[lv].forward[0]
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

    # ================================================================ internals: id tables

    cdef int32_t _live_get(self, int64_t order_id) noexcept nogil:
        cdef int64_t i = mix64(<uint64_t>order_id) & self.live_mask
        while self.live[i].index != -1:
            if self.live[i].order_id == order_id:
                return self.live[i].index
            i = (i + 1) & self.live_mask
        return -1

    cdef void _live_put(self, int64_t order_id, int32_t index) noexcept nogil:
        cdef int64_t i = mix64(<uint64_t>order_id) & self.live_mask
        while self.live[i].index != -1:
            i = (i + 1) & self.live_mask
        self.live[i].order_id, self.live[i].index = order_id, index
        self.live_count += 1

    cdef void _live_remove(self, int64_t order_id) noexcept nogil:
        """Delete a present key with backward-shift deletion (no tombstones)."""
        cdef int64_t mask = self.live_mask
        cdef int64_t i = mix64(<uint64_t>order_id) & mask, j, home
        while self.live[i].order_id != order_id or self.live[i].index == -1:
            i = (i + 1) & mask
        j = i
        while True:
            j = (j + 1) & mask
            if self.live[j].index == -1:
                break
            home = mix64(<uint64_t>self.live[j].order_id) & mask
            if (i <= j and (i < home <= j)) or (i > j and (home > i or home <= j)):
                continue
            self.live[i] = self.live[j]
            i = j
        self.live[i].index = -1
        self.live_count -= 1

    cdef bint _was_accepted(self, int64_t order_id) noexcept nogil:
        cdef uint64_t u = <uint64_t>order_id, block = u >> 6
        cdef int64_t i = mix64(block) & self.ids_mask
        while self.ids[i].bits != 0:
            if self.ids[i].block == block:
                return (self.ids[i].bits >> (u & 63)) & 1
            i = (i + 1) & self.ids_mask
        return False

    cdef void _add_accepted(self, int64_t order_id) noexcept nogil:
        """Record a new accepted id (the caller has checked it is new)."""
        cdef uint64_t u = <uint64_t>order_id
        self._id_block(u >> 6).bits |= (<uint64_t>1) << (u & 63)
        self.ids_count += 1
        self.ids_digest += mix64(u ^ ID_SALT)

    cdef IdBlock* _id_block(self, uint64_t block) noexcept nogil:
        """The slot of ``block`` (an id >> 6, unsigned), claimed if it had none: the caller
        sets a bit in it and has reserved room."""
        cdef int64_t i = mix64(block) & self.ids_mask
        while self.ids[i].bits != 0 and self.ids[i].block != block:
            i = (i + 1) & self.ids_mask
        if self.ids[i].bits == 0:
            self.ids[i].block = block
            self.ids_blocks += 1
        return &self.ids[i]

    cdef void _accept_word(self, int64_t first, uint64_t bits) noexcept nogil:
        """Record the new ids ``first + i`` for each bit ``i`` set in ``bits``, ``first`` a
        multiple of 64 (the table has room)."""
        self._id_block(<uint64_t>first >> 6).bits |= bits
        self.ids_count += popcount(bits)
        while bits:
            self.ids_digest += mix64((<uint64_t>first + <uint64_t>trailing_zeros(bits)) ^ ID_SALT)
            bits &= bits - 1

    cdef void _accept_full_words(self, int64_t first, int64_t last) noexcept nogil:
        """Record the new ids ``first`` .. ``last``, whole words (the table has room). The words
        are claimed before the digest visits the ids, so their table slots' cache misses overlap."""
        cdef uint64_t k, span = <uint64_t>last - <uint64_t>first
        for k in range(0, span, 64):
            self._id_block((<uint64_t>first + k) >> 6).bits = FULL_WORD
        self.ids_count += <int64_t>(span + 1)
        for k in range(span + 1):
            self.ids_digest += mix64((<uint64_t>first + k) ^ ID_SALT)

    cdef int _restore_ids(self, const int64_t* ranges, int64_t range_count, const IdWord* words,
                          int64_t word_count, const int64_t* lone, int64_t lone_count) except -1:
        """Accept the ids of validated records (`engine.snapshot`: runs of full words as
        (first, last) pairs, words of 2 to 63 ids, lone ids) into an empty book."""
        cdef int64_t i, blocks = word_count + lone_count, size = self.ids_mask + 1
        for i in range(range_count):
            blocks += (ranges[2 * i + 1] >> 6) - (ranges[2 * i] >> 6) + 1
            if blocks > MAX_ID_BLOCKS:
                raise MemoryError(f"{blocks} words of accepted ids are more than an order book holds")
        while size < 2 * (blocks + 1):
            size *= 2
        if size > self.ids_mask + 1 and self._resize_ids(size) != 0:
            raise MemoryError("cannot allocate the accepted-id table")
        with nogil:
            for i in range(range_count):
                self._accept_full_words(ranges[2 * i], ranges[2 * i + 1])
            for i in range(word_count):
                self._accept_word(words[i].first, words[i].bits)
            for i in range(lone_count):
                self._add_accepted(lone[i])
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
