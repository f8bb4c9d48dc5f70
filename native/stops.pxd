# Held stops: stop and stop-limit orders kept outside the book until the last trade price
# reaches their stop price, and the index the trigger loop asks for the earliest one qualifying.
#
# Invariants
# ----------
# - A held stop is an order pool slot (orders.pxd) with state HELD; its ``Order.level`` is its
#   stop price's node here. Held stops are not in depth, not counted as resting, have no priority.
# - Per side, stop price nodes form a skip list ordered by key: the stop price for buy stops,
#   minus it for sell stops. A buy stop qualifies when the last trade price is >= its stop price
#   (key <= last), a sell stop when it is <= it (key <= -last): the qualifying stops of a side
#   are the nodes of a prefix, keys up to a limit (`stop_limit_key`).
# - A node exists iff it holds a stop. Its stops form a FIFO in acceptance order (through
#   ``Order.prev``/``next``), so its ``head`` is its earliest and ``accepted`` is the head's
#   acceptance number (`OrderInfo.accepted`).
# - ``earliest[h]`` of a node x (the side's head included) is the node with the smallest
#   ``accepted`` among the nodes after x up to and including ``forward[h]`` (to the end of the
#   list when ``forward[h]`` is -1), -1 if none. A search for the limit key that takes, at every
#   step it moves forward, the ``earliest`` of the span it skips finds the earliest qualifying
#   stop of a side in one descent: O(log P) for P stop prices, whatever the number of stops.
# - Every held stop is also on one list in acceptance order (`OrderInfo.older`/``newer``,
#   ``oldest``..``newest``): snapshots list held stops in that order.
# - ``count`` is the number of held stops, ``quantity`` the sum of their quantities.
#
# Costs: holding a stop O(log P) (finding its price; a new price also updates ``earliest``
# along its path); canceling a stop that is not first at its price O(1) (FIFO and acceptance
# list unlinks); canceling or releasing a first one O(log P) (``earliest`` along its path).
# Memory is proportional to the stop prices in use; `stops_reserve`, run before each command
# (a command holds at most one new stop), is the only allocation.
#
# Everything here is `cdef inline`: cimported by book.pyx, compiled into its C file and inlined
# there (Cython calls a cdef function of another extension module through a pointer table).

from libc.stdint cimport INT64_MIN, int32_t, int64_t, uint64_t

from native.blocks cimport block_new, block_resize
from native.constants cimport BUY, SELL
from native.ladder cimport MAX_HEIGHT, random_height
from native.orders cimport HELD, OrderPool, order_append, order_unlink

cdef enum:
    INITIAL_STOP_LEVELS = 64


ctypedef struct StopLevel:
    int64_t price            # the stop price
    int64_t key              # the stop price for buy stops, minus it for sell stops
    int64_t accepted         # acceptance number of its head, its earliest stop
    int32_t head             # earliest stop (the first released)
    int32_t tail             # latest stop
    int32_t count
    int32_t height
    int32_t forward[MAX_HEIGHT]    # skip-list successors (larger keys); -1 ends a list
    int32_t earliest[MAX_HEIGHT]   # the earliest node in (this, forward[h]]: see the invariants


ctypedef struct StopBook:
    StopLevel* levels        # levels[0], levels[1]: skip-list heads of buy and sell stops
    int32_t capacity
    int32_t top              # slots [0, top) have been used at least once
    int32_t free             # head of the free list (through forward[0]), -1 if empty
    int32_t height[2]        # skip-list height in use per side
    uint64_t rng             # skip-list height generator state
    int32_t oldest           # the held stop accepted first, -1 if none
    int32_t newest           # the held stop accepted last, -1 if none
    int64_t count            # held stops
    int64_t quantity         # sum of their quantities
    int64_t repairs          # `refresh_path` calls: the O(log P) index work done (tests count it)


cdef inline int64_t stop_key(int side, int64_t stop_price) noexcept nogil:
    return stop_price if side == BUY else -stop_price


cdef inline int64_t stop_limit_key(int side, int64_t last_price) noexcept nogil:
    """The largest key of a ``side`` stop qualifying at ``last_price`` (prices are positive)."""
    return last_price if side == BUY else -last_price


cdef inline int stops_init(StopBook* book) noexcept nogil:
    """No held stops, INITIAL_STOP_LEVELS slots; -1 if out of memory (free ``levels`` either way)."""
    book.levels = <StopLevel*>block_new(INITIAL_STOP_LEVELS * sizeof(StopLevel))
    book.capacity, book.top, book.free = INITIAL_STOP_LEVELS, 2, -1
    book.rng = 0x9E3779B97F4A7C15
    book.oldest, book.newest, book.count, book.quantity, book.repairs = -1, -1, 0, 0, 0
    if book.levels == NULL:
        return -1
    cdef int side, h
    for side in range(2):
        book.levels[side].price, book.levels[side].key, book.levels[side].accepted = 0, INT64_MIN, 0
        book.levels[side].head, book.levels[side].tail, book.levels[side].count = -1, -1, 0
        book.levels[side].height = MAX_HEIGHT
        for h in range(MAX_HEIGHT):
            book.levels[side].forward[h] = -1
            book.levels[side].earliest[h] = -1
        book.height[side] = 1
    return 0


cdef inline bint stops_full(const StopBook* book) noexcept nogil:
    return book.free == -1 and book.top == book.capacity


cdef inline int stops_reserve(StopBook* book) noexcept nogil:
    """Make room for one more stop price (doubling the pool when full); -1 if out of memory."""
    cdef void* p
    if stops_full(book):
        if book.capacity > 0x3FFFFFFF:
            return -1
        p = block_resize(book.levels, <size_t>(2 * <int64_t>book.capacity) * sizeof(StopLevel))
        if p == NULL:
            return -1
        book.levels, book.capacity = <StopLevel*>p, 2 * book.capacity
    return 0


# ---------------------------------------------------------------- the index

cdef inline int32_t earlier(const StopLevel* levels, int32_t a, int32_t b) noexcept nogil:
    """Whichever of nodes ``a`` and ``b`` (-1: none) holds the earlier stop."""
    if a == -1:
        return b
    if b == -1 or levels[a].accepted < levels[b].accepted:
        return a
    return b


cdef inline int32_t span_earliest(const StopLevel* levels, int32_t x, int h) noexcept nogil:
    """``earliest[h]`` of node ``x`` from the spans one height below (its definition)."""
    if h == 0:
        return levels[x].forward[0]
    cdef int32_t end = levels[x].forward[h], y = x, best = -1
    while True:
        best = earlier(levels, best, levels[y].earliest[h - 1])
        y = levels[y].forward[h - 1]
        if y == end:
            return best


cdef inline int32_t find_stop_level(StopBook* book, int side, int64_t key, int32_t* update) noexcept nogil:
    """The node with ``key`` or -1; ``update[h]`` gets its predecessor at each height in use."""
    cdef StopLevel* levels = book.levels
    cdef int32_t x = side, nxt
    cdef int h
    for h in range(book.height[side] - 1, -1, -1):
        nxt = levels[x].forward[h]
        while nxt != -1 and levels[nxt].key < key:
            x = nxt
            nxt = levels[x].forward[h]
        update[h] = x
    nxt = levels[x].forward[0]
    if nxt != -1 and levels[nxt].key == key:
        return nxt
    return -1


cdef inline void refresh_path(StopBook* book, int side, const int32_t* update) noexcept nogil:
    """Recompute ``earliest`` of the predecessors ``update`` left by `find_stop_level`, bottom up:
    theirs are the spans holding the node found."""
    cdef int h
    book.repairs += 1
    for h in range(book.height[side]):
        book.levels[update[h]].earliest[h] = span_earliest(book.levels, update[h], h)


cdef inline int32_t insert_stop_level(StopBook* book, int side, int64_t price, int64_t key, int64_t accepted,
                                      int32_t* update) noexcept nogil:
    """A new node at ``price`` whose first stop was accepted ``accepted``, linked after the
    predecessors `find_stop_level` left in ``update`` (the pool has room)."""
    cdef int32_t n
    if book.free != -1:
        n = book.free
        book.free = book.levels[n].forward[0]
    else:
        n = book.top
        book.top += 1
    cdef int h, height = random_height(&book.rng)
    if height > book.height[side]:
        for h in range(book.height[side], height):
            update[h] = side
        book.height[side] = height
    cdef StopLevel* level = &book.levels[n]
    level.price, level.key, level.accepted = price, key, accepted
    level.head, level.tail, level.count, level.height = -1, -1, 0, height
    for h in range(height):
        level.forward[h] = book.levels[update[h]].forward[h]
        book.levels[update[h]].forward[h] = n
    for h in range(height):
        level.earliest[h] = span_earliest(book.levels, n, h)
    refresh_path(book, side, update)
    return n


cdef inline void remove_stop_level(StopBook* book, int side, int32_t n) noexcept nogil:
    """Unlink and free the emptied node ``n`` of ``side``."""
    cdef int32_t update[MAX_HEIGHT]
    cdef int h
    cdef StopLevel* level = &book.levels[n]
    find_stop_level(book, side, level.key, update)
    for h in range(level.height):
        book.levels[update[h]].forward[h] = level.forward[h]
    while book.height[side] > 1 and book.levels[side].forward[book.height[side] - 1] == -1:
        book.height[side] -= 1
    refresh_path(book, side, update)
    level.forward[0] = book.free
    book.free = n


cdef inline int32_t earliest_qualifying(StopBook* book, int side, int64_t limit_key) noexcept nogil:
    """The node of ``side`` holding the earliest stop among those with key <= ``limit_key``, or -1."""
    cdef StopLevel* levels = book.levels
    cdef int32_t x = side, nxt, best = -1
    cdef int h
    for h in range(book.height[side] - 1, -1, -1):
        nxt = levels[x].forward[h]
        while nxt != -1 and levels[nxt].key <= limit_key:
            best = earlier(levels, best, levels[x].earliest[h])
            x = nxt
            nxt = levels[x].forward[h]
    return best


# ---------------------------------------------------------------- holding and releasing stops

cdef inline void hold_stop(StopBook* book, OrderPool* pool, int32_t o, int64_t stop_price) noexcept nogil:
    """Hold order ``o`` (its side, quantity and acceptance number set) until ``stop_price``:
    behind the stops already at that price and last in acceptance order, which it is."""
    cdef int32_t update[MAX_HEIGHT]
    cdef int side = pool.slots[o].side
    cdef int64_t key = stop_key(side, stop_price)
    cdef int32_t n = find_stop_level(book, side, key, update)
    if n == -1:
        n = insert_stop_level(book, side, stop_price, key, pool.infos[o].accepted, update)
    cdef StopLevel* level = &book.levels[n]
    pool.slots[o].state, pool.slots[o].level = HELD, n
    order_append(pool.slots, o, &level.head, &level.tail)
    level.count += 1
    pool.infos[o].older, pool.infos[o].newer = book.newest, -1
    if book.newest != -1:
        pool.infos[book.newest].newer = o
    else:
        book.oldest = o
    book.newest = o
    book.count += 1
    book.quantity += pool.slots[o].quantity


cdef inline void unhold_stop(StopBook* book, OrderPool* pool, int32_t o) noexcept nogil:
    """Take held stop ``o`` out of the index (released or canceled); its slot stays the caller's."""
    cdef int32_t update[MAX_HEIGHT]
    cdef int32_t n = pool.slots[o].level
    cdef StopLevel* level = &book.levels[n]
    cdef int side = pool.slots[o].side
    cdef bint first = level.head == o
    order_unlink(pool.slots, o, &level.head, &level.tail)
    level.count -= 1
    if pool.infos[o].older != -1:
        pool.infos[pool.infos[o].older].newer = pool.infos[o].newer
    else:
        book.oldest = pool.infos[o].newer
    if pool.infos[o].newer != -1:
        pool.infos[pool.infos[o].newer].older = pool.infos[o].older
    else:
        book.newest = pool.infos[o].older
    book.count -= 1
    book.quantity -= pool.slots[o].quantity
    if level.count == 0:
        remove_stop_level(book, side, n)
    elif first:
        level.accepted = pool.infos[level.head].accepted
        find_stop_level(book, side, level.key, update)
        refresh_path(book, side, update)


cdef inline int32_t next_triggered(StopBook* book, int64_t last_price) noexcept nogil:
    """The held stop accepted earliest among those qualifying at ``last_price``, or -1."""
    if book.count == 0:
        return -1
    cdef int32_t buy = earliest_qualifying(book, BUY, stop_limit_key(BUY, last_price))
    cdef int32_t sell = earliest_qualifying(book, SELL, stop_limit_key(SELL, last_price))
    cdef int32_t n = earlier(book.levels, buy, sell)
    return -1 if n == -1 else book.levels[n].head
