# The price ladder: the price levels of both sides, a skip list per side, in one pool of levels.
#
# Invariants
# ----------
# - ``levels[0]`` and ``levels[1]`` are the heads of the bid and the ask skip list: key INT64_MIN,
#   height MAX_HEIGHT, no orders. Every other used slot is a price level or on the free list.
# - Per side, levels form a skip list ordered by key (`side_key`: price for asks, -price for
#   bids), so a smaller key is a better price, the first level (``forward[0]`` of the head) is
#   the best and a walk along ``forward[0]`` visits prices from best to worst. A level is linked
#   at heights [0, its height) and nowhere else; ``height[side]`` is the height in use on
#   ``side`` (1 at least, no list empty below it but at height 0, see `shrink`).
# - A level exists iff it holds an order: the book removes it when its last order leaves. The
#   level's FIFO of orders (``head``..``tail``, through `Order.next`/``prev``) and its totals
#   (``quantity``: the sum of its orders' visible slices, what depth shows; ``hidden``: the sum
#   of their hidden quantities, icebergs' only; ``count``: their number) are kept by the book;
#   the ladder only links levels.
# - Free level slots are linked through ``forward[0]``; ``free`` is the head, -1 if empty,
#   ``free_count`` their number, and ``top`` the first never-used slot. Memory is proportional
#   to occupied levels, never to the price range. `ladder_reserve` is the only allocation: it
#   runs before each command with the most levels the command can insert, so inserting never
#   allocates.
# - Heights come from a xorshift generator (``rng``) with p = 1/4 per extra height, so the
#   ladder's shape is the same for the same commands.
# - ``near`` finds the prices near the touch without a descent: a direct-mapped table per side,
#   ``near[side * NEAR_SLOTS + (price & NEAR_MASK)]``, each entry -1 or a level of that side whose
#   price maps to that entry (the level last inserted or found there). A level's entry is cleared
#   when it is removed, so an entry never names a freed slot; two prices NEAR_SLOTS apart share an
#   entry and the one not in it is found by the descent. It is a cache: the skip list alone
#   orders the levels.
#
# Everything here is `cdef inline`: cimported by book.pyx, compiled into its C file and inlined
# there (Cython calls a cdef function of another extension module through a pointer table).

from libc.stdint cimport INT64_MIN, int32_t, int64_t, uint64_t
from libc.string cimport memset

from native.blocks cimport block_new, block_resize
from native.constants cimport BUY

cdef enum:
    MAX_HEIGHT = 16          # skip-list height limit (p = 1/4: ample for 4**16 levels)
    INITIAL_LEVELS = 256
    NEAR_SLOTS = 4096        # `near` entries per side (a power of two): 4,096 ticks find their level at once
    NEAR_MASK = NEAR_SLOTS - 1


ctypedef struct Level:
    int64_t price
    int64_t key              # price for asks, -price for bids: a smaller key is a better price
    int64_t quantity         # sum of its orders' visible slices (depth)
    int64_t hidden           # sum of its orders' hidden quantities (icebergs' beyond their slice)
    int32_t count
    int32_t head             # oldest order (first to trade)
    int32_t tail             # newest order
    int32_t height
    uint64_t touched         # the book's number of the last command that noted this level's state (book.pyx)
    int32_t forward[MAX_HEIGHT]   # skip-list successors, i.e. worse prices; -1 ends a list


ctypedef struct Ladder:
    Level* levels            # levels[0], levels[1]: skip-list heads of bids, asks
    int32_t capacity
    int32_t top              # slots [0, top) have been used at least once
    int32_t free             # head of the free list (through forward[0]), -1 if empty
    int32_t free_count       # slots on the free list
    int32_t height[2]        # skip-list height in use per side
    uint64_t rng             # skip-list height generator state
    int32_t* near            # 2 * NEAR_SLOTS entries: price -> level near the touch (see the invariants)


cdef inline int64_t side_key(int side, int64_t price) noexcept nogil:
    return -price if side == BUY else price


cdef inline int ladder_init(Ladder* ladder) noexcept nogil:
    """Both sides empty in a pool of INITIAL_LEVELS slots; -1 if out of memory (free ``levels``
    and ``near`` either way)."""
    ladder.levels = <Level*>block_new(INITIAL_LEVELS * sizeof(Level))
    ladder.near = <int32_t*>block_new(2 * NEAR_SLOTS * sizeof(int32_t))
    ladder.capacity, ladder.top, ladder.free, ladder.free_count = INITIAL_LEVELS, 2, -1, 0
    ladder.rng = 0x2545F4914F6CDD1D
    if ladder.levels == NULL or ladder.near == NULL:
        return -1
    memset(ladder.near, 0xFF, 2 * NEAR_SLOTS * sizeof(int32_t))
    cdef int side, h
    for side in range(2):
        ladder.levels[side].price = 0
        ladder.levels[side].key = INT64_MIN
        ladder.levels[side].height = MAX_HEIGHT
        for h in range(MAX_HEIGHT):
            ladder.levels[side].forward[h] = -1
        ladder.height[side] = 1
    return 0


cdef inline int64_t ladder_room(const Ladder* ladder) noexcept nogil:
    """How many new levels fit without growing the pool."""
    return ladder.free_count + ladder.capacity - ladder.top


cdef inline int ladder_reserve(Ladder* ladder, int64_t more) noexcept nogil:
    """Make room for ``more`` new levels (doubling the pool until they fit); -1 if out of memory."""
    if ladder_room(ladder) >= more:
        return 0
    cdef int64_t capacity = 2 * <int64_t>ladder.capacity
    while ladder.free_count + capacity - ladder.top < more:
        capacity *= 2
    if capacity > 0x7FFFFFFF:
        return -1
    cdef void* p = block_resize(ladder.levels, <size_t>capacity * sizeof(Level))
    if p == NULL:
        return -1
    ladder.levels, ladder.capacity = <Level*>p, <int32_t>capacity
    return 0


cdef inline int64_t ladder_levels(const Ladder* ladder) noexcept nogil:
    """The number of price levels of both sides."""
    return ladder.top - 2 - ladder.free_count


cdef inline int32_t find_level(Ladder* ladder, int side, int64_t key, int32_t* update) noexcept nogil:
    """The level with ``key`` or -1; ``update[h]`` gets its predecessor at each height."""
    cdef Level* levels = ladder.levels
    cdef int32_t x = side, nxt
    cdef int h
    for h in range(ladder.height[side] - 1, -1, -1):
        nxt = levels[x].forward[h]
        while nxt != -1 and levels[nxt].key < key:
            x = nxt
            nxt = levels[x].forward[h]
        update[h] = x
    nxt = levels[x].forward[0]
    if nxt != -1 and levels[nxt].key == key:
        return nxt
    return -1


cdef inline int32_t* near_entry(Ladder* ladder, int side, int64_t price) noexcept nogil:
    """``price``'s entry of ``side`` in ``near``."""
    return &ladder.near[side * NEAR_SLOTS + (<uint64_t>price & NEAR_MASK)]


cdef inline int32_t lookup_level(Ladder* ladder, int side, int64_t price, int32_t* update) noexcept nogil:
    """The level holding ``price`` on ``side`` (from ``near``, else by a descent that then notes it
    there), or -1, and then ``update`` holds its predecessors for `insert_level`."""
    cdef int32_t* entry = near_entry(ladder, side, price)
    if entry[0] != -1 and ladder.levels[entry[0]].price == price:
        return entry[0]
    cdef int32_t lv = find_level(ladder, side, side_key(side, price), update)
    if lv != -1:
        entry[0] = lv
    return lv


cdef inline int32_t level_at(Ladder* ladder, int side, int64_t price) noexcept nogil:
    """The level holding ``price`` on ``side``, or -1."""
    cdef int32_t update[MAX_HEIGHT]
    return lookup_level(ladder, side, price, update)


cdef inline int random_height(uint64_t* rng) noexcept nogil:
    """A skip-list height, 1 to MAX_HEIGHT, with p = 1/4 per extra height, from the xorshift state ``rng``."""
    cdef uint64_t x = rng[0]
    x ^= x >> 12
    x ^= x << 25
    x ^= x >> 27
    rng[0] = x
    x *= <uint64_t>2685821657736338717
    cdef int height = 1
    while height < MAX_HEIGHT and (x & 3) == 0:
        height += 1
        x >>= 2
    return height


cdef inline int32_t insert_level(Ladder* ladder, int side, int64_t price, int64_t key,
                                 int32_t* update) noexcept nogil:
    """A new empty level at ``price`` (``key``) linked after the predecessors `find_level` left in
    ``update``; the pool has room (`ladder_reserve`)."""
    cdef int32_t lv
    if ladder.free != -1:
        lv = ladder.free
        ladder.free = ladder.levels[lv].forward[0]
        ladder.free_count -= 1
    else:
        lv = ladder.top
        ladder.top += 1
    cdef int h, height = random_height(&ladder.rng)
    if height > ladder.height[side]:
        for h in range(ladder.height[side], height):
            update[h] = side
        ladder.height[side] = height
    cdef Level* level = &ladder.levels[lv]
    level.price, level.key, level.quantity, level.hidden = price, key, 0, 0
    level.count, level.head, level.tail, level.height, level.touched = 0, -1, -1, height, 0
    for h in range(height):
        level.forward[h] = ladder.levels[update[h]].forward[h]
        ladder.levels[update[h]].forward[h] = lv
    near_entry(ladder, side, price)[0] = lv
    return lv


cdef inline int32_t place_level(Ladder* ladder, int side, int64_t price, bint* created) noexcept nogil:
    """The level of ``price`` on ``side``, a new empty one if it had none (``created`` set; the pool
    has room, `ladder_reserve`)."""
    cdef int32_t update[MAX_HEIGHT]
    cdef int32_t lv = lookup_level(ladder, side, price, update)
    created[0] = lv == -1
    if created[0]:
        lv = insert_level(ladder, side, price, side_key(side, price), update)
    return lv


cdef inline void shrink(Ladder* ladder, int side) noexcept nogil:
    """Lower ``side``'s height in use past the lists that emptied."""
    while ladder.height[side] > 1 and ladder.levels[side].forward[ladder.height[side] - 1] == -1:
        ladder.height[side] -= 1


cdef inline void free_level(Ladder* ladder, int side, int32_t lv) noexcept nogil:
    """Put unlinked level ``lv`` of ``side`` on the free list, out of ``near``."""
    cdef int32_t* entry = near_entry(ladder, side, ladder.levels[lv].price)
    if entry[0] == lv:
        entry[0] = -1
    ladder.levels[lv].forward[0] = ladder.free
    ladder.free = lv
    ladder.free_count += 1


cdef inline void remove_best_level(Ladder* ladder, int side) noexcept nogil:
    """Unlink and free the best level of ``side`` (there is one)."""
    cdef int32_t lv = ladder.levels[side].forward[0]
    cdef Level* level = &ladder.levels[lv]
    cdef int h
    for h in range(level.height):
        ladder.levels[side].forward[h] = level.forward[h]
    shrink(ladder, side)
    free_level(ladder, side, lv)


cdef inline void remove_level(Ladder* ladder, int side, int32_t lv) noexcept nogil:
    """Unlink and free level ``lv`` of ``side``."""
    if ladder.levels[side].forward[0] == lv:
        remove_best_level(ladder, side)
        return
    cdef int32_t update[MAX_HEIGHT]
    cdef int h
    cdef Level* level = &ladder.levels[lv]
    find_level(ladder, side, level.key, update)
    for h in range(level.height):
        ladder.levels[update[h]].forward[h] = level.forward[h]
    shrink(ladder, side)
    free_level(ladder, side, lv)
