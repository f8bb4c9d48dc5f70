# The orders: the Order record matching reads, its OrderInfo beside it, and the pool of slots.
#
# Invariants
# ----------
# - A slot holds one live order in one of three places (``Order.state``): RESTING on a price
#   level (book.pyx), HELD as a stop outside the book (stops.pxd), or WAITING as a market order
#   for the call auction's uncross (book.pyx). ``slots[o]`` and ``infos[o]`` are one order: the
#   fields every fill reads are in `Order` (32 bytes), the rest in `OrderInfo`, read only by
#   self-trade prevention, icebergs' refreshes, stops, expiry, the uncross and snapshots.
# - A plain order (a limit order with no display quantity, flags, owner or prevention mode, not
#   GTD) has ``detail`` 0 and its `OrderInfo` is never written nor read, except ``time``: every
#   field reads as its default (see `OrderInfo`), so the orders of version 1 cost matching no
#   second cache line. Any other order has ``detail`` 1 and all of its `OrderInfo` set.
# - ``quantity`` is the open quantity (> 0 while live), an iceberg's hidden part included;
#   ``visible`` the slice that shows in depth and trades as a maker: ``quantity`` itself unless
#   ``display`` > 0 (an iceberg), then 1 <= ``visible`` <= min(``display``, ``quantity``). Both fit
#   32 bits: no order holds more than MAX_QUANTITY (10**9) lots.
# - ``OrderInfo.time`` is the auction time of every resting and waiting order while the phase is
#   not CONTINUOUS (book.pyx numbers them on leaving it); it means nothing in CONTINUOUS.
# - Slots [0, top) have been used at least once; slots [top, capacity) never. A used slot is a
#   live order or on the free list, which links free slots through ``next``, newest first;
#   ``free`` is its head, -1 if empty. A freed slot is reused before a new one is taken, so the
#   pool is as large as the most orders ever live at once (rounded up to a power of two).
# - `order_pool_reserve` is the only function that allocates; `order_take` needs one free slot
#   (the book reserves it before each command), so taking and releasing never allocate or fail.
#
# Everything here is `cdef inline`: cimported by book.pyx, compiled into its C file and inlined
# there (Cython calls a cdef function of another extension module through a pointer table).

from libc.stdint cimport int32_t, int64_t, uint8_t

from native.blocks cimport block_new, block_resize

cdef enum:
    INITIAL_ORDERS = 1024
    RESTING = 0              # Order.state
    HELD = 1
    WAITING = 2


ctypedef struct Order:
    int64_t order_id
    int32_t quantity         # open quantity, > 0 while live (an iceberg's hidden part included)
    int32_t visible          # the slice that shows and trades as a maker (see the invariants)
    int32_t prev             # older order in the same queue (level, stop price or auction), -1 at the head
    int32_t next             # newer order in the same queue, -1 at the tail; free-list link when free
    int32_t level            # RESTING: its price level (ladder.pxd); HELD: its stop price (stops.pxd); WAITING: -1
    uint8_t side
    uint8_t tif
    uint8_t state            # RESTING, HELD or WAITING
    uint8_t detail           # 0: a plain order, whose OrderInfo (but ``time``) is unset (see the invariants)


ctypedef struct OrderInfo:   # a plain order's fields read as: the level's price, 0, 0, 0, 0, 0, LIMIT, 0, NONE
    int64_t price            # limit price; 0 for a market order or a stop
    int64_t stop_price       # 0 unless a stop or stop-limit
    int64_t display          # an iceberg's peak; 0: all visible
    int64_t owner            # the account for self-trade prevention; 0: none
    int64_t expire_at        # GTD: the logical time it expires at; 0 otherwise
    int64_t accepted         # the book's acceptance number (GTD orders and stops): expiry and the trigger loop
    int64_t time             # the auction time (the uncross's maker is the earlier), CALL and HALTED only
    int32_t older            # HELD: the previous held stop in acceptance order, -1 for the oldest
    int32_t newer            # HELD: the next held stop in acceptance order, -1 for the newest
    int32_t due              # its index in the expiry heap (expiry.pxd), -1 if it is not there
    uint8_t order_type
    uint8_t flags
    uint8_t stp


ctypedef struct OrderPool:
    Order* slots
    OrderInfo* infos         # infos[o] belongs to slots[o]
    int32_t capacity
    int32_t top              # slots [0, top) have been used at least once
    int32_t free             # head of the free list, -1 if empty


cdef inline int64_t iceberg_slices(int64_t quantity, int64_t display) noexcept nogil:
    """How many slices ``quantity`` lots show in, ``display`` at a time (0: all at once, one slice)."""
    return (quantity + display - 1) // display if display else 1


cdef inline int order_pool_init(OrderPool* pool) noexcept nogil:
    """An empty pool of INITIAL_ORDERS slots; -1 if out of memory (free ``slots`` and ``infos``
    either way)."""
    pool.slots = <Order*>block_new(INITIAL_ORDERS * sizeof(Order))
    pool.infos = <OrderInfo*>block_new(INITIAL_ORDERS * sizeof(OrderInfo))
    pool.capacity, pool.top, pool.free = INITIAL_ORDERS, 0, -1
    return -1 if pool.slots == NULL or pool.infos == NULL else 0


cdef inline bint order_pool_full(const OrderPool* pool) noexcept nogil:
    return pool.free == -1 and pool.top == pool.capacity


cdef inline int order_pool_reserve(OrderPool* pool) noexcept nogil:
    """Make room for one more order (doubling the pool when full); -1 if out of memory."""
    cdef void* p
    cdef size_t size
    if order_pool_full(pool):
        if pool.capacity > 0x3FFFFFFF:
            return -1
        size = <size_t>(2 * <int64_t>pool.capacity)
        p = block_resize(pool.slots, size * sizeof(Order))
        if p == NULL:
            return -1
        pool.slots = <Order*>p
        p = block_resize(pool.infos, size * sizeof(OrderInfo))
        if p == NULL:
            return -1
        pool.infos, pool.capacity = <OrderInfo*>p, 2 * pool.capacity
    return 0


cdef inline int32_t order_take(OrderPool* pool) noexcept nogil:
    """A free slot (reserved beforehand): the last one released, else a new one."""
    cdef int32_t o
    if pool.free != -1:
        o = pool.free
        pool.free = pool.slots[o].next
    else:
        o = pool.top
        pool.top += 1
    return o


cdef inline void order_release(OrderPool* pool, int32_t o) noexcept nogil:
    pool.slots[o].next = pool.free
    pool.free = o


cdef inline void order_append(Order* slots, int32_t o, int32_t* head, int32_t* tail) noexcept nogil:
    """Put order ``o`` last in the queue ``head``..``tail`` (linked through ``prev``/``next``; -1 ends:
    a price level's FIFO, a stop level's, the orders waiting for the uncross)."""
    slots[o].prev, slots[o].next = tail[0], -1
    if tail[0] != -1:
        slots[tail[0]].next = o
    else:
        head[0] = o
    tail[0] = o


cdef inline void order_unlink(Order* slots, int32_t o, int32_t* head, int32_t* tail) noexcept nogil:
    """Take order ``o`` out of the queue ``head``..``tail`` (see `order_append`); its own links stay."""
    if slots[o].prev != -1:
        slots[slots[o].prev].next = slots[o].next
    else:
        head[0] = slots[o].next
    if slots[o].next != -1:
        slots[slots[o].next].prev = slots[o].prev
    else:
        tail[0] = slots[o].prev
