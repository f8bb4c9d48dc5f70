# The resting orders: the Order record and the pool of slots that holds them.
#
# Invariants
# ----------
# - Slots [0, top) have been used at least once; slots [top, capacity) never. A used slot is
#   either an order resting on a price level or on the free list.
# - The free list links free slots through ``next``, newest first; ``free`` is its head, -1 if
#   empty. A freed slot is reused before a new one is taken, so the pool is as large as the
#   most orders ever resting at once (rounded up to a power of two), whatever the price range.
# - `order_pool_reserve` is the only function that allocates; `order_take` needs one free slot
#   (the book reserves it before each command), so taking and releasing never allocate or fail.
#
# Everything here is `cdef inline`: cimported by book.pyx, compiled into its C file and inlined
# there (Cython calls a cdef function of another extension module through a pointer table).

from cpython.mem cimport PyMem_RawMalloc, PyMem_RawRealloc
from libc.stdint cimport int32_t, int64_t, uint8_t

cdef enum:
    INITIAL_ORDERS = 1024


ctypedef struct Order:
    int64_t order_id
    int64_t quantity         # open quantity, always > 0 while resting
    int32_t prev             # older order at the same level, -1 at the head
    int32_t next             # newer order at the same level, -1 at the tail; free-list link when free
    int32_t level
    uint8_t side
    uint8_t tif


ctypedef struct OrderPool:
    Order* slots
    int32_t capacity
    int32_t top              # slots [0, top) have been used at least once
    int32_t free             # head of the free list, -1 if empty


cdef inline int order_pool_init(OrderPool* pool) noexcept nogil:
    """An empty pool of INITIAL_ORDERS slots; -1 if out of memory (free `slots` either way)."""
    pool.slots = <Order*>PyMem_RawMalloc(INITIAL_ORDERS * sizeof(Order))
    pool.capacity, pool.top, pool.free = INITIAL_ORDERS, 0, -1
    return -1 if pool.slots == NULL else 0


cdef inline int order_pool_reserve(OrderPool* pool) noexcept nogil:
    """Make room for one more order (doubling the pool when full); -1 if out of memory."""
    cdef void* p
    if pool.free == -1 and pool.top == pool.capacity:
        if pool.capacity > 0x3FFFFFFF:
            return -1
        p = PyMem_RawRealloc(pool.slots, <size_t>(2 * <int64_t>pool.capacity) * sizeof(Order))
        if p == NULL:
            return -1
        pool.slots, pool.capacity = <Order*>p, 2 * pool.capacity
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
