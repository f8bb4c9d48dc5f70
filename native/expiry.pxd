# Good-till-date expiry: the GTD orders (resting, and held GTD stop-limits) by the logical time
# they expire at, so a clock command finds the orders due without looking at the others.
#
# Invariants
# ----------
# - ``slots[0:count]`` is a binary min-heap of order pool slots by (``expire_at``, ``accepted``)
#   of their `OrderInfo`; every live GTD order is in it exactly once, nothing else is, and
#   ``OrderInfo.due`` is the slot's index in it (-1 for an order not in it).
# - `take_due` pops every order with ``expire_at`` <= a time into ``due``, sorted by acceptance
#   number (the order a clock command expires them in): O(k log n) for k of n orders.
# - ``capacity`` bounds both arrays; `expiry_reserve`, run before each command (a command adds at
#   most one GTD order), is the only allocation.
#
# Everything here is `cdef inline`: cimported by book.pyx, compiled into its C file and inlined
# there (Cython calls a cdef function of another extension module through a pointer table).

from libc.stdint cimport int32_t, int64_t
from libc.stdlib cimport qsort

from native.blocks cimport block_new, block_resize
from native.orders cimport OrderInfo

cdef enum:
    INITIAL_EXPIRIES = 64


ctypedef struct Keyed:       # a pool slot and the number it sorts by (`compare_keys`)
    int64_t key
    int32_t slot


ctypedef struct ExpiryHeap:
    int32_t* slots
    Keyed* due               # scratch for `take_due`: the orders due, by acceptance number
    int64_t count
    int64_t capacity


cdef inline int expiry_init(ExpiryHeap* heap) noexcept nogil:
    """An empty heap; -1 if out of memory (free ``slots`` and ``due`` either way)."""
    heap.slots = <int32_t*>block_new(INITIAL_EXPIRIES * sizeof(int32_t))
    heap.due = <Keyed*>block_new(INITIAL_EXPIRIES * sizeof(Keyed))
    heap.count, heap.capacity = 0, INITIAL_EXPIRIES
    return -1 if heap.slots == NULL or heap.due == NULL else 0


cdef inline bint expiry_full(const ExpiryHeap* heap) noexcept nogil:
    return heap.count == heap.capacity


cdef inline int expiry_reserve(ExpiryHeap* heap) noexcept nogil:
    """Make room for one more order (doubling when full); -1 if out of memory."""
    cdef void* p
    if not expiry_full(heap):
        return 0
    p = block_resize(heap.slots, <size_t>(2 * heap.capacity) * sizeof(int32_t))
    if p == NULL:
        return -1
    heap.slots = <int32_t*>p
    p = block_resize(heap.due, <size_t>(2 * heap.capacity) * sizeof(Keyed))
    if p == NULL:
        return -1
    heap.due, heap.capacity = <Keyed*>p, 2 * heap.capacity
    return 0


cdef inline bint due_first(const OrderInfo* infos, int32_t a, int32_t b) noexcept nogil:
    return (infos[a].expire_at < infos[b].expire_at
            or (infos[a].expire_at == infos[b].expire_at and infos[a].accepted < infos[b].accepted))


cdef inline void place_at(ExpiryHeap* heap, OrderInfo* infos, int64_t i, int32_t o) noexcept nogil:
    heap.slots[i] = o
    infos[o].due = <int32_t>i


cdef inline void sift_up(ExpiryHeap* heap, OrderInfo* infos, int64_t i) noexcept nogil:
    cdef int32_t o = heap.slots[i]
    cdef int64_t parent
    while i > 0:
        parent = (i - 1) >> 1
        if not due_first(infos, o, heap.slots[parent]):
            break
        place_at(heap, infos, i, heap.slots[parent])
        i = parent
    place_at(heap, infos, i, o)


cdef inline void sift_down(ExpiryHeap* heap, OrderInfo* infos, int64_t i) noexcept nogil:
    cdef int32_t o = heap.slots[i]
    cdef int64_t child
    while True:
        child = 2 * i + 1
        if child >= heap.count:
            break
        if child + 1 < heap.count and due_first(infos, heap.slots[child + 1], heap.slots[child]):
            child += 1
        if not due_first(infos, heap.slots[child], o):
            break
        place_at(heap, infos, i, heap.slots[child])
        i = child
    place_at(heap, infos, i, o)


cdef inline void expiry_add(ExpiryHeap* heap, OrderInfo* infos, int32_t o) noexcept nogil:
    """Add GTD order ``o`` (the heap has room)."""
    heap.count += 1
    place_at(heap, infos, heap.count - 1, o)
    sift_up(heap, infos, heap.count - 1)


cdef inline void expiry_remove(ExpiryHeap* heap, OrderInfo* infos, int32_t o) noexcept nogil:
    """Take order ``o`` out (it is in the heap)."""
    cdef int64_t i = infos[o].due
    infos[o].due = -1
    heap.count -= 1
    if i == heap.count:
        return
    cdef int32_t last = heap.slots[heap.count]
    place_at(heap, infos, i, last)
    if i > 0 and due_first(infos, last, heap.slots[(i - 1) >> 1]):
        sift_up(heap, infos, i)
    else:
        sift_down(heap, infos, i)


cdef inline int compare_keys(const void* a, const void* b) noexcept nogil:
    cdef int64_t x = (<const Keyed*>a).key, y = (<const Keyed*>b).key
    return (x > y) - (x < y)


cdef inline int64_t take_due(ExpiryHeap* heap, OrderInfo* infos, int64_t time) noexcept nogil:
    """Pop every order with ``expire_at`` <= ``time`` into ``due``, by acceptance number; how many."""
    cdef int64_t n = 0
    cdef int32_t o
    while heap.count and infos[heap.slots[0]].expire_at <= time:
        o = heap.slots[0]
        heap.due[n].key, heap.due[n].slot = infos[o].accepted, o
        n += 1
        expiry_remove(heap, infos, o)
    qsort(heap.due, <size_t>n, sizeof(Keyed), compare_keys)
    return n
