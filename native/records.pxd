# Snapshots of the native book: its state as `engine.snapshot` records, their hash, and restore.
#
# The records are packed C structs laid out as the engine's dtypes (book.pyx checks the sizes at
# import), written and read in C without a Python object per order:
#   OrderRecord (ORDER_DTYPE)      every resting order, in priority order (bids best first, then asks)
#   DetailRecord (DETAIL_DTYPE)    each resting order that is not plain, in the same order
#   HeldRecord (HELD_DTYPE)        each held stop, in acceptance order
#   WaitingRecord (WAITING_DTYPE)  each market order waiting for the uncross, in arrival order
# ``accepted`` and ``time`` are written as ranks (1, 2, ...), as `engine.snapshot` defines them: by
# acceptance number among the resting GTD orders and the held stops, by auction time among the
# resting and waiting orders (CALL and HALTED only; 0 in CONTINUOUS). A restore sets the book's own
# counters past the largest rank, so the orders it takes later come after them.
#
# Everything here is `cdef inline`: cimported by book.pyx, compiled into its C file.

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from cpython.mem cimport PyMem_RawFree, PyMem_RawMalloc
from libc.stdint cimport int32_t, int64_t, uint8_t, uint64_t
from libc.stdlib cimport qsort
from libc.string cimport memset

from native.book cimport NativeBook, NewOrder
from native.constants cimport CONTINUOUS, HASH_SEED, LIMIT, MARKET, NONE
from native.expiry cimport Keyed, compare_keys
from native.ids cimport accepted_digest, mix64
from native.orders cimport RESTING, Order, OrderInfo


cdef packed struct OrderRecord:      # engine.snapshot.ORDER_DTYPE: a resting order
    int64_t order_id
    uint8_t side
    int64_t price
    int64_t quantity
    uint8_t tif


cdef packed struct DetailRecord:     # engine.snapshot.DETAIL_DTYPE: a resting order that is not plain
    int64_t order_id
    int64_t display
    int64_t visible
    uint8_t flags
    uint8_t stp
    int64_t owner
    int64_t expire_at
    int64_t accepted
    int64_t time


cdef packed struct HeldRecord:       # engine.snapshot.HELD_DTYPE: a held stop
    int64_t order_id
    uint8_t side
    uint8_t order_type
    uint8_t tif
    uint8_t stp
    int64_t price
    int64_t quantity
    int64_t stop_price
    int64_t owner
    int64_t expire_at
    int64_t accepted


cdef packed struct WaitingRecord:    # engine.snapshot.WAITING_DTYPE: a market order waiting for the uncross
    int64_t order_id
    uint8_t side
    uint8_t tif
    uint8_t stp
    int64_t quantity
    int64_t owner
    int64_t time


cdef inline int64_t* ranks(Keyed* pairs, int64_t n, int64_t slots) noexcept nogil:
    """An array over ``slots`` pool slots giving each of the ``n`` (value, slot) ``pairs`` its rank
    by value (1, 2, ...) and every other slot 0; ``pairs`` is sorted in place. NULL if out of memory."""
    cdef int64_t* out = <int64_t*>PyMem_RawMalloc(<size_t>max(slots, 1) * sizeof(int64_t))
    if out == NULL:
        return NULL
    memset(out, 0, <size_t>max(slots, 1) * sizeof(int64_t))
    qsort(pairs, <size_t>n, sizeof(Keyed), compare_keys)
    cdef int64_t i
    for i in range(n):
        out[pairs[i].slot] = i + 1
    return out


cdef inline bytes resting_records(NativeBook book):
    """Every resting order of ``book`` as packed ORDER_DTYPE records, in priority order."""
    cdef int64_t resting = book.live.count - book.stops.count - book.waiting_count
    cdef bytes records = PyBytes_FromStringAndSize(NULL, resting * sizeof(OrderRecord))
    cdef OrderRecord* out = <OrderRecord*>PyBytes_AS_STRING(records)
    cdef int64_t n = 0
    cdef int side
    cdef int32_t lv, o
    with nogil:
        for side in range(2):
            lv = book.ladder.levels[side].forward[0]
            while lv != -1:
                o = book.ladder.levels[lv].head
                while o != -1:
                    out[n].order_id = book.orders.slots[o].order_id
                    out[n].side = side
                    out[n].price = book.ladder.levels[lv].price
                    out[n].quantity = book.orders.slots[o].quantity
                    out[n].tif = book.orders.slots[o].tif
                    n += 1
                    o = book.orders.slots[o].next
                lv = book.ladder.levels[lv].forward[0]
    return records

cdef inline bint is_detailed(NativeBook book, int32_t o, const int64_t* accepted, const int64_t* times) noexcept nogil:
    """Whether resting order ``o`` is not a plain one (it needs a detail record)."""
    cdef OrderInfo* info = &book.orders.infos[o]
    return ((book.orders.slots[o].detail and (info.display != 0 or info.flags != 0 or info.owner != 0
                                              or info.stp != NONE or accepted[o] != 0))
            or (times != NULL and times[o] != 0))

cdef inline tuple advanced_records(NativeBook book):
    """(details, held stops, waiting orders) as packed DETAIL_DTYPE, HELD_DTYPE and WAITING_DTYPE
    records, then the phase, the clock and the last price (`engine.snapshot`). ``accepted`` and
    ``time`` are written as ranks: by acceptance among the resting GTD orders and the held stops,
    by auction time among the resting and waiting orders (CALL and HALTED only)."""
    cdef int64_t slots = book.orders.top, n = 0, i, count = 0
    cdef Keyed* pairs = <Keyed*>PyMem_RawMalloc(<size_t>max(book.live.count, 1) * sizeof(Keyed))
    cdef int64_t* accepted = NULL
    cdef int64_t* times = NULL
    cdef int32_t o, lv
    cdef int side
    cdef bint failed = pairs == NULL
    with nogil:
        if not failed:
            for i in range(book.expiries.count):   # resting GTD orders (held ones come next)
                o = book.expiries.slots[i]
                if book.orders.slots[o].state == RESTING:
                    pairs[n].key, pairs[n].slot = book.orders.infos[o].accepted, o
                    n += 1
            o = book.stops.oldest
            while o != -1:
                pairs[n].key, pairs[n].slot = book.orders.infos[o].accepted, o
                n += 1
                o = book.orders.infos[o].newer
            accepted = ranks(pairs, n, slots)
            failed = accepted == NULL
        if not failed and book.trading != CONTINUOUS:
            n = 0
            for side in range(2):
                lv = book.ladder.levels[side].forward[0]
                while lv != -1:
                    o = book.ladder.levels[lv].head
                    while o != -1:
                        pairs[n].key, pairs[n].slot = book.orders.infos[o].time, o
                        n += 1
                        o = book.orders.slots[o].next
                    lv = book.ladder.levels[lv].forward[0]
            o = book.waiting_first
            while o != -1:
                pairs[n].key, pairs[n].slot = book.orders.infos[o].time, o
                n += 1
                o = book.orders.slots[o].next
            times = ranks(pairs, n, slots)
            failed = times == NULL
        if not failed:
            for side in range(2):
                lv = book.ladder.levels[side].forward[0]
                while lv != -1:
                    o = book.ladder.levels[lv].head
                    while o != -1:
                        count += is_detailed(book, o, accepted, times)
                        o = book.orders.slots[o].next
                    lv = book.ladder.levels[lv].forward[0]
    PyMem_RawFree(pairs)
    if failed:
        PyMem_RawFree(accepted)
        raise MemoryError("cannot allocate a snapshot's ranks")
    cdef bytes details = PyBytes_FromStringAndSize(NULL, count * sizeof(DetailRecord))
    cdef bytes held = PyBytes_FromStringAndSize(NULL, book.stops.count * sizeof(HeldRecord))
    cdef bytes waiting = PyBytes_FromStringAndSize(NULL, book.waiting_count * sizeof(WaitingRecord))
    cdef DetailRecord* d = <DetailRecord*>PyBytes_AS_STRING(details)
    cdef HeldRecord* h = <HeldRecord*>PyBytes_AS_STRING(held)
    cdef WaitingRecord* w = <WaitingRecord*>PyBytes_AS_STRING(waiting)
    cdef Order* order
    cdef OrderInfo* info
    with nogil:
        n = 0
        for side in range(2):
            lv = book.ladder.levels[side].forward[0]
            while lv != -1:
                o = book.ladder.levels[lv].head
                while o != -1:
                    if is_detailed(book, o, accepted, times):
                        order, info = &book.orders.slots[o], &book.orders.infos[o]
                        d[n].order_id, d[n].visible, d[n].accepted = order.order_id, order.visible, accepted[o]
                        if order.detail:
                            d[n].display, d[n].flags, d[n].stp = info.display, info.flags, info.stp
                            d[n].owner, d[n].expire_at = info.owner, info.expire_at
                        else:
                            d[n].display, d[n].flags, d[n].stp, d[n].owner, d[n].expire_at = 0, 0, NONE, 0, 0
                        d[n].time = times[o] if times != NULL else 0
                        n += 1
                    o = book.orders.slots[o].next
                lv = book.ladder.levels[lv].forward[0]
        n = 0
        o = book.stops.oldest
        while o != -1:
            order, info = &book.orders.slots[o], &book.orders.infos[o]
            h[n].order_id, h[n].side, h[n].order_type, h[n].tif = order.order_id, order.side, info.order_type, order.tif
            h[n].stp, h[n].price, h[n].quantity, h[n].stop_price = info.stp, info.price, order.quantity, info.stop_price
            h[n].owner, h[n].expire_at, h[n].accepted = info.owner, info.expire_at, accepted[o]
            n += 1
            o = info.newer
        n = 0
        o = book.waiting_first
        while o != -1:
            order, info = &book.orders.slots[o], &book.orders.infos[o]
            w[n].order_id, w[n].side, w[n].tif, w[n].stp = order.order_id, order.side, order.tif, info.stp
            w[n].quantity, w[n].owner, w[n].time = order.quantity, info.owner, times[o]
            n += 1
            o = order.next
    PyMem_RawFree(accepted)
    PyMem_RawFree(times)
    return details, held, waiting, int(book.trading), book.logical_time, book.last_trade

cdef inline int restore_orders(NativeBook book, snapshot) except -1:
    """Rebuild the live orders of a validated ``snapshot`` in a new book that has accepted their
    ids: resting orders in priority order with their details, held stops in acceptance order,
    waiting orders in arrival order; then the phase, the clock and the last price."""
    cdef bytes orders = snapshot.orders, details = snapshot.order_details
    cdef bytes held = snapshot.held_stops, waiting = snapshot.waiting_orders
    cdef const OrderRecord* r = <const OrderRecord*><const char*>orders
    cdef const DetailRecord* d = <const DetailRecord*><const char*>details
    cdef const HeldRecord* s = <const HeldRecord*><const char*>held
    cdef const WaitingRecord* w = <const WaitingRecord*><const char*>waiting
    cdef int64_t i, j = 0, n_orders = len(orders) // sizeof(OrderRecord)
    cdef int64_t n_details = len(details) // sizeof(DetailRecord), n_held = len(held) // sizeof(HeldRecord)
    cdef int64_t n_waiting = len(waiting) // sizeof(WaitingRecord)
    cdef int32_t o
    cdef NewOrder order
    cdef bint failed = False
    with nogil:
        for i in range(n_orders):
            if book._reserve(False, 0, 1, False) != 0:
                failed = True
                break
            order.order_id, order.side, order.order_type, order.tif = r[i].order_id, r[i].side, LIMIT, r[i].tif
            order.price, order.quantity, order.stop_price = r[i].price, r[i].quantity, 0
            if j < n_details and d[j].order_id == r[i].order_id:
                order.display, order.flags, order.owner, order.stp = d[j].display, d[j].flags, d[j].owner, d[j].stp
                order.expire_at = d[j].expire_at
                o = book._new_order(&order, order.quantity, d[j].accepted)
                book._place(o, r[i].price)
                book._resize(&book.orders.slots[o], &book.ladder.levels[book.orders.slots[o].level],
                             order.quantity, d[j].visible, d[j].display)
                book.orders.infos[o].time = d[j].time
                book.accepted = max(book.accepted, d[j].accepted)
                book.auction_time = max(book.auction_time, d[j].time)
                j += 1
            else:
                order.display = order.flags = order.owner = order.stp = order.expire_at = 0
                book._place(book._new_order(&order, order.quantity, 0), r[i].price)
        for i in range(n_held):
            if failed or book._reserve(False, 0, 1, False) != 0:
                failed = True
                break
            order.order_id, order.side, order.order_type, order.tif = s[i].order_id, s[i].side, s[i].order_type, s[i].tif
            order.price, order.quantity, order.stop_price, order.display = s[i].price, s[i].quantity, s[i].stop_price, 0
            order.flags, order.owner, order.stp, order.expire_at = 0, s[i].owner, s[i].stp, s[i].expire_at
            book._hold(book._new_order(&order, order.quantity, s[i].accepted))
            book.accepted = max(book.accepted, s[i].accepted)
        for i in range(n_waiting):
            if failed or book._reserve(False, 0, 1, False) != 0:
                failed = True
                break
            order.order_id, order.side, order.order_type, order.tif = w[i].order_id, w[i].side, MARKET, w[i].tif
            order.price, order.quantity, order.stop_price, order.display = 0, w[i].quantity, 0, 0
            order.flags, order.owner, order.stp, order.expire_at = 0, w[i].owner, w[i].stp, 0
            o = book._new_order(&order, order.quantity, 0)
            book._wait(o)
            book.orders.infos[o].time = w[i].time
            book.auction_time = max(book.auction_time, w[i].time)
    if failed:
        raise MemoryError("order book out of memory")
    book.trading, book.logical_time, book.last_trade = snapshot.phase, snapshot.clock, snapshot.last_price
    return 0


cdef inline uint64_t state_hash_of(NativeBook book) except? 0:
    """The 64-bit hash of ``book``'s logical state defined in `engine.snapshot`, from its records."""
    cdef bytes records = resting_records(book)
    cdef tuple advanced = advanced_records(book)
    cdef bytes details = advanced[0], held = advanced[1], waiting = advanced[2]
    cdef const OrderRecord* r = <const OrderRecord*><const char*>records
    cdef const DetailRecord* d = <const DetailRecord*><const char*>details
    cdef const HeldRecord* s = <const HeldRecord*><const char*>held
    cdef const WaitingRecord* w = <const WaitingRecord*><const char*>waiting
    cdef Py_ssize_t i, n
    cdef uint64_t h = HASH_SEED
    for i in range(len(records) // sizeof(OrderRecord)):
        h = mix64(h ^ <uint64_t>r[i].side)
        h = mix64(h ^ <uint64_t>r[i].price)
        h = mix64(h ^ <uint64_t>r[i].order_id)
        h = mix64(h ^ <uint64_t>r[i].quantity)
        h = mix64(h ^ <uint64_t>r[i].tif)
    h = mix64(h ^ <uint64_t>book.trade_seq)
    h = mix64(h ^ <uint64_t>book.ids.count)
    h = mix64(h ^ accepted_digest(&book.ids))
    n = len(details) // sizeof(DetailRecord)
    h = mix64(h ^ <uint64_t>n)
    for i in range(n):
        for word in (d[i].order_id, d[i].display, d[i].visible, d[i].flags, d[i].stp, d[i].owner,
                     d[i].expire_at, d[i].accepted, d[i].time):
            h = mix64(h ^ <uint64_t><int64_t>word)
    n = len(held) // sizeof(HeldRecord)
    h = mix64(h ^ <uint64_t>n)
    for i in range(n):
        for word in (s[i].order_id, s[i].side, s[i].order_type, s[i].tif, s[i].stp, s[i].price, s[i].quantity,
                     s[i].stop_price, s[i].owner, s[i].expire_at, s[i].accepted):
            h = mix64(h ^ <uint64_t><int64_t>word)
    n = len(waiting) // sizeof(WaitingRecord)
    h = mix64(h ^ <uint64_t>n)
    for i in range(n):
        for word in (w[i].order_id, w[i].side, w[i].tif, w[i].stp, w[i].quantity, w[i].owner, w[i].time):
            h = mix64(h ^ <uint64_t><int64_t>word)
    h = mix64(h ^ <uint64_t>book.trading)
    h = mix64(h ^ <uint64_t>book.logical_time)
    return mix64(h ^ <uint64_t>book.last_trade)
