# The order id tables: which ids rest (and in which pool slot), and which were ever accepted.
#
# Invariants
# ----------
# - `LiveIds` maps every resting order id to its order pool slot and nothing else: open
#   addressing with linear probing from the id's hash (`live_home`), ``index`` -1 marking an
#   empty slot, deletion by backward shift (no tombstones), so a lookup ends at the first empty
#   slot and a cancel is O(1) whatever the level's length. It keeps at least LIVE_SPREAD slots
#   per id (at most a quarter full): its runs of used slots are shorter than at half full, and
#   the standard stream's batch replay ran 1.1-1.2x as fast. A used slot holds the pool slot and
#   its id's hash (``home``: 32 bits of a multiplicative hash, whose top bits are the id's first
#   slot; tables stay below 2**32 slots), 8 bytes, not the id: the pool has it (``Order.order_id``),
#   and a lookup reads it there only where ``home`` matches, in the order it is about to use.
#   Shifting and rehashing never hash again, and removing an order finds its slot by pool slot
#   alone.
#   ``found`` is the slot `live_get` last found, which `live_remove` tries first (a cancel
#   looks its order up, then removes it).
# - `AcceptedIds` holds every id ever accepted, as a bitmap per 64 consecutive ids: slot
#   ``block`` (``id >> 6``, unsigned) has bit ``id & 63`` set per accepted id, so dense ids
#   cost about a bit each. Open addressing from ``mix64(block)``; ``bits`` 0 marks an empty slot
#   (a block is only stored with a bit set, and bits are never cleared). It stays at most half
#   full. ``blocks`` counts the used slots and ``count`` the ids; `accepted_digest` sums
#   ``mix64(id ^ ID_SALT)`` over them mod 2**64 when asked (the order-free id digest of
#   `engine.snapshot`), so accepting an id costs no hashing beyond its block's.
#   ``last`` is -1 or a used slot (slots never move but in a rehash, which resets it), so ids
#   accepted in sequence find their block without hashing.
# - Both tables grow only in `live_reserve` / `accepted_reserve`, run before each command, so a
#   command adds an id without allocating.
# - Snapshots write the bitmap's words as `engine.snapshot` records (sorted by id, runs of full
#   words joined into ranges: `write_records`) and a restore sets it a word at a time
#   (`restore_accepted`): no Python object per id either way.
#
# Everything here is `cdef inline`: cimported by book.pyx, compiled into its C file and inlined
# there (Cython calls a cdef function of another extension module through a pointer table).

from libc.stdint cimport int32_t, int64_t, uint32_t, uint64_t

from native.blocks cimport block_free, block_new, block_zeroed
from native.constants cimport ID_SALT
from native.orders cimport Order

cdef extern from *:
    """
    #include <stdint.h>
    static inline uint64_t exchange_mix64(uint64_t x) {
        x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
        x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
        return x ^ (x >> 31);
    }
    #define EXCHANGE_MAX_ID_BLOCKS (1LL << 40)
    #define EXCHANGE_MAX_LIVE_SLOTS (1LL << 32)
    #define EXCHANGE_FULL_WORD (~(uint64_t)0)
    #define EXCHANGE_FIBONACCI 0x9E3779B97F4A7C15ULL
    """
    uint64_t mix64 "exchange_mix64"(uint64_t x) nogil   # engine.snapshot.mix, the splitmix64 finaliser
    int64_t MAX_ID_BLOCKS "EXCHANGE_MAX_ID_BLOCKS"     # far beyond memory; keeps table sizes in range
    int64_t MAX_LIVE_SLOTS "EXCHANGE_MAX_LIVE_SLOTS"   # LiveSlot.home holds 32 bits of hash
    uint64_t FULL_WORD "EXCHANGE_FULL_WORD"            # a word of the accepted-id bitmap with all 64 ids
    uint64_t FIBONACCI "EXCHANGE_FIBONACCI"            # 2**64 / the golden ratio, odd: `live_home`'s multiplier
    int trailing_zeros "__builtin_ctzll"(unsigned long long x) nogil   # x != 0
    int popcount "__builtin_popcountll"(unsigned long long x) nogil
    void prefetch "__builtin_prefetch"(const void* address) nogil   # a hint: no effect but on the cache

cdef enum:
    INITIAL_BITS = 10
    INITIAL_TABLE = 1 << INITIAL_BITS
    LIVE_SPREAD = 4          # the resting ids' table keeps at least this many slots per id


ctypedef struct LiveSlot:    # open-addressing slot: resting order id -> pool index (the id is the pool's)
    int32_t index            # -1: empty slot
    uint32_t home            # live_home(order_id): its first slot is home >> shift


ctypedef struct LiveIds:
    LiveSlot* slots
    int64_t mask             # slots - 1, a power of two minus one (below 2**32)
    int64_t shift            # 32 - log2(slots): a home's first slot is its top log2(slots) bits
    int64_t count            # resting orders
    int64_t found            # the slot live_get last found (a hint: check it still holds the id)


ctypedef struct IdBlock:     # open-addressing slot: 64 consecutive ids -> accepted bitmap
    uint64_t block
    uint64_t bits            # 0: empty slot


ctypedef struct AcceptedIds:
    IdBlock* slots
    int64_t mask             # slots - 1, a power of two minus one
    int64_t last             # the slot last looked up or claimed, -1 after a rehash: consecutive ids share a block
    int64_t blocks           # slots in use
    int64_t count            # ids ever accepted


ctypedef struct IdWord:      # a word of the accepted-id bitmap as a snapshot holds it: engine.snapshot.WORD_DTYPE
    int64_t first            # the id of bit 0 (a multiple of 64), so words sort by id
    uint64_t bits


# ---------------------------------------------------------------- resting ids

cdef inline int live_init(LiveIds* live) noexcept nogil:
    """An empty table of INITIAL_TABLE slots; -1 if out of memory (free ``slots`` either way)."""
    live.slots = <LiveSlot*>block_new(INITIAL_TABLE * sizeof(LiveSlot))
    live.mask, live.shift, live.count, live.found = INITIAL_TABLE - 1, 32 - INITIAL_BITS, 0, 0
    if live.slots == NULL:
        return -1
    cdef int64_t i
    for i in range(INITIAL_TABLE):
        live.slots[i].index = -1
    return 0


cdef inline int live_grow(LiveIds* live) noexcept nogil:
    """Rehash into twice the slots; -1 (table intact) if out of memory."""
    cdef int64_t old_size = live.mask + 1, size = 2 * old_size, i, j
    cdef LiveSlot* table = NULL
    if size <= MAX_LIVE_SLOTS:
        table = <LiveSlot*>block_new(<size_t>size * sizeof(LiveSlot))
    if table == NULL:
        return -1
    for i in range(size):
        table[i].index = -1
    live.shift -= 1              # the new table's: `live_first` below places each id in it
    for i in range(old_size):
        if live.slots[i].index != -1:
            j = live_first(live, live.slots[i].home)
            while table[j].index != -1:
                j = (j + 1) & (size - 1)
            table[j] = live.slots[i]
    block_free(live.slots)
    live.slots, live.mask = table, size - 1
    return 0


cdef inline bint live_full(const LiveIds* live) noexcept nogil:
    """Whether one more id would make the table more than one slot in LIVE_SPREAD full."""
    return LIVE_SPREAD * (live.count + 1) > live.mask + 1


cdef inline int live_reserve(LiveIds* live) noexcept nogil:
    """Make room for one more live id; -1 if out of memory."""
    if live_full(live) and live_grow(live) != 0:
        return -1
    return 0


cdef inline uint32_t live_home(int64_t order_id) noexcept nogil:
    """``order_id``'s hash as a slot keeps it (``home``): the product's bits 32 to 63 (Fibonacci
    hashing, one multiplication). Its first slot is ``home >> shift``, the product's top bits:
    consecutive ids, the usual case, land about 0.618 of the table apart, each in the widest gap
    the ids before it left. (The low bits of ``home``, which the table used before, spread them
    less evenly: the standard stream's batch replay ran 1.03-1.12x slower.)"""
    return <uint32_t>((<uint64_t>order_id * FIBONACCI) >> 32)


cdef inline int64_t live_first(const LiveIds* live, uint32_t home) noexcept nogil:
    """The first slot of an id whose hash is ``home`` (`live_home`): the hash's top log2(slots) bits."""
    return home >> live.shift


cdef inline int64_t live_find(const LiveIds* live, const Order* orders, int64_t order_id) noexcept nogil:
    """The table slot holding ``order_id`` (``orders``: the pool's slots, which hold the ids), or -1."""
    cdef uint32_t home = live_home(order_id)
    cdef int64_t i = live_first(live, home)
    while live.slots[i].index != -1:
        if live.slots[i].home == home and orders[live.slots[i].index].order_id == order_id:
            return i
        i = (i + 1) & live.mask
    return -1


cdef inline int32_t live_get(LiveIds* live, const Order* orders, int64_t order_id) noexcept nogil:
    """The pool slot of resting order ``order_id``, or -1; the table slot found is noted in ``found``."""
    cdef int64_t i = live_find(live, orders, order_id)
    if i == -1:
        return -1
    live.found = i
    return live.slots[i].index


cdef inline void live_prefetch(const LiveIds* live, int64_t order_id) noexcept nogil:
    """Start loading ``order_id``'s first slot into the cache (the batch replay, messages ahead)."""
    prefetch(&live.slots[live_first(live, live_home(order_id))])


cdef inline int32_t live_peek(const LiveIds* live, int64_t order_id) noexcept nogil:
    """The pool slot of the first entry with ``order_id``'s hash, or -1: usually the order's, but
    unconfirmed (it reads no pool slot). Only for loading ahead, which a wrong slot cannot harm."""
    cdef uint32_t home = live_home(order_id)
    cdef int64_t i = live_first(live, home)
    while live.slots[i].index != -1:
        if live.slots[i].home == home:
            return live.slots[i].index
        i = (i + 1) & live.mask
    return -1


cdef inline void live_put(LiveIds* live, int64_t order_id, int32_t index) noexcept nogil:
    """Add ``order_id`` (not present; the table has room) at pool slot ``index``."""
    cdef uint32_t home = live_home(order_id)
    cdef int64_t i = live_first(live, home)
    while live.slots[i].index != -1:
        i = (i + 1) & live.mask
    live.slots[i].index, live.slots[i].home = index, home
    live.count += 1


cdef inline void live_remove(LiveIds* live, int64_t order_id, int32_t index) noexcept nogil:
    """Delete present id ``order_id``, at pool slot ``index``, with backward-shift deletion (no
    tombstones)."""
    cdef int64_t mask = live.mask
    cdef int64_t i = live.found, j, home
    if live.slots[i].index != index:
        i = live_first(live, live_home(order_id))
        while live.slots[i].index != index:
            i = (i + 1) & mask
    j = i
    while True:
        j = (j + 1) & mask
        if live.slots[j].index == -1:
            break
        home = live_first(live, live.slots[j].home)
        if (i <= j and (i < home <= j)) or (i > j and (home > i or home <= j)):
            continue
        live.slots[i] = live.slots[j]
        i = j
    live.slots[i].index = -1
    live.count -= 1


cdef inline void live_sweep(LiveIds* live, const uint64_t* marked) noexcept nogil:
    """Delete every id whose pool slot is set in ``marked`` (a bitmap over pool slots) in one pass
    over the table, for a command that frees orders by the ten thousand (the uncross): each
    marked entry emptied, and each entry after it in its run (up to the next empty slot) put
    again from its home, so every lookup still ends at the first empty slot. The pass reads the
    table in order and the bitmap, where removing the ids one by one would miss the cache on
    each. Starts after an empty slot (there is one: the table is at most a quarter full), so a run
    never wraps past the start."""
    cdef int64_t mask = live.mask, start = 0, k, i, j
    cdef int32_t o
    cdef bint emptied = False         # an entry of the current run was emptied
    cdef LiveSlot entry
    while live.slots[start].index != -1:
        start += 1
    for k in range(1, mask + 2):
        i = (start + k) & mask
        o = live.slots[i].index
        if o == -1:                    # the pass writes only at or before i: an empty slot ends a run
            emptied = False
        elif (marked[o >> 6] >> (o & 63)) & 1:
            live.slots[i].index = -1
            live.count -= 1
            emptied = True
        elif emptied:
            entry = live.slots[i]
            live.slots[i].index = -1
            j = live_first(live, entry.home)
            while live.slots[j].index != -1:
                j = (j + 1) & mask
            live.slots[j] = entry

# ---------------------------------------------------------------- accepted ids

cdef inline int accepted_init(AcceptedIds* ids) noexcept nogil:
    """No id accepted, INITIAL_TABLE slots; -1 if out of memory (free ``slots`` either way)."""
    ids.slots = <IdBlock*>block_zeroed(INITIAL_TABLE * sizeof(IdBlock))
    ids.mask, ids.blocks, ids.count, ids.last = INITIAL_TABLE - 1, 0, 0, -1
    return -1 if ids.slots == NULL else 0


cdef inline int accepted_resize(AcceptedIds* ids, int64_t size) noexcept nogil:
    """Rehash the id table into ``size`` slots (a power of two above twice the blocks); -1
    (table intact) if out of memory."""
    cdef int64_t old_size = ids.mask + 1, i, j
    cdef IdBlock* table = <IdBlock*>block_zeroed(<size_t>size * sizeof(IdBlock))
    if table == NULL:
        return -1
    for i in range(old_size):
        if ids.slots[i].bits != 0:
            j = mix64(ids.slots[i].block) & (size - 1)
            while table[j].bits != 0:
                j = (j + 1) & (size - 1)
            table[j] = ids.slots[i]
    block_free(ids.slots)
    ids.slots, ids.mask, ids.last = table, size - 1, -1
    return 0


cdef inline bint accepted_full(const AcceptedIds* ids) noexcept nogil:
    """Whether one more block would make the table more than half full."""
    return 2 * (ids.blocks + 1) > ids.mask + 1


cdef inline int accepted_reserve(AcceptedIds* ids) noexcept nogil:
    """Make room for one more block (so any one new id); -1 if out of memory."""
    if accepted_full(ids) and accepted_resize(ids, 2 * (ids.mask + 1)) != 0:
        return -1
    return 0


cdef inline bint was_accepted(AcceptedIds* ids, int64_t order_id) noexcept nogil:
    cdef uint64_t u = <uint64_t>order_id, block = u >> 6
    if ids.last != -1 and ids.slots[ids.last].block == block:
        return (ids.slots[ids.last].bits >> (u & 63)) & 1
    cdef int64_t i = mix64(block) & ids.mask
    while ids.slots[i].bits != 0:
        if ids.slots[i].block == block:
            ids.last = i
            return (ids.slots[i].bits >> (u & 63)) & 1
        i = (i + 1) & ids.mask
    return False


cdef inline IdBlock* id_block(AcceptedIds* ids, uint64_t block) noexcept nogil:
    """The slot of ``block`` (an id >> 6, unsigned), claimed if it had none: the caller
    sets a bit in it and has reserved room."""
    if ids.last != -1 and ids.slots[ids.last].block == block:
        return &ids.slots[ids.last]
    cdef int64_t i = mix64(block) & ids.mask
    while ids.slots[i].bits != 0 and ids.slots[i].block != block:
        i = (i + 1) & ids.mask
    if ids.slots[i].bits == 0:
        ids.slots[i].block = block
        ids.blocks += 1
    ids.last = i
    return &ids.slots[i]


cdef inline void add_accepted(AcceptedIds* ids, int64_t order_id) noexcept nogil:
    """Record a new accepted id (the caller has checked it is new)."""
    cdef uint64_t u = <uint64_t>order_id
    id_block(ids, u >> 6).bits |= (<uint64_t>1) << (u & 63)
    ids.count += 1


cdef inline void accept_word(AcceptedIds* ids, int64_t first, uint64_t bits) noexcept nogil:
    """Record the new ids ``first + i`` for each bit ``i`` set in ``bits``, ``first`` a
    multiple of 64 (the table has room)."""
    id_block(ids, <uint64_t>first >> 6).bits |= bits
    ids.count += popcount(bits)


cdef inline void accept_full_words(AcceptedIds* ids, int64_t first, int64_t last) noexcept nogil:
    """Record the new ids ``first`` .. ``last``, whole words (the table has room)."""
    cdef uint64_t k, span = <uint64_t>last - <uint64_t>first
    for k in range(0, span, 64):
        id_block(ids, (<uint64_t>first + k) >> 6).bits = FULL_WORD
    ids.count += <int64_t>(span + 1)


cdef inline uint64_t accepted_digest(const AcceptedIds* ids) noexcept nogil:
    """The sum mod 2**64 of ``mix64(id ^ ID_SALT)`` over the accepted ids: one pass over the table."""
    cdef uint64_t digest = 0, bits, base
    cdef int64_t i
    for i in range(ids.mask + 1):
        bits = ids.slots[i].bits
        base = ids.slots[i].block << 6
        while bits:
            digest += mix64((base | <uint64_t>trailing_zeros(bits)) ^ ID_SALT)
            bits &= bits - 1
    return digest


# ---------------------------------------------------------------- accepted ids in snapshots

cdef inline int restore_accepted(AcceptedIds* ids, const int64_t* ranges, int64_t range_count,
                                 const IdWord* words, int64_t word_count, const int64_t* lone,
                                 int64_t lone_count) except -1:
    """Accept the ids of validated records (`engine.snapshot`: runs of full words as
    (first, last) pairs, words of 2 to 63 ids, lone ids) into an empty table."""
    cdef int64_t i, blocks = word_count + lone_count, size = ids.mask + 1
    for i in range(range_count):
        blocks += (ranges[2 * i + 1] >> 6) - (ranges[2 * i] >> 6) + 1
        if blocks > MAX_ID_BLOCKS:
            raise MemoryError(f"{blocks} words of accepted ids are more than an order book holds")
    while size < 2 * (blocks + 1):
        size *= 2
    if size > ids.mask + 1 and accepted_resize(ids, size) != 0:
        raise MemoryError("cannot allocate the accepted-id table")
    with nogil:
        for i in range(range_count):
            accept_full_words(ids, ranges[2 * i], ranges[2 * i + 1])
        for i in range(word_count):
            accept_word(ids, words[i].first, words[i].bits)
        for i in range(lone_count):
            add_accepted(ids, lone[i])
    return 0


cdef inline int64_t accepted_words(const AcceptedIds* ids, IdWord* out) noexcept nogil:
    """Copy the bitmap's non-empty words, unordered, into ``out`` (room for ``ids.blocks``);
    return how many."""
    cdef int64_t i, n = 0
    for i in range(ids.mask + 1):
        if ids.slots[i].bits != 0:
            out[n].first, out[n].bits = <int64_t>(ids.slots[i].block << 6), ids.slots[i].bits
            n += 1
    return n


cdef inline int compare_words(const void* a, const void* b) noexcept nogil:
    cdef int64_t x = (<const IdWord*>a).first, y = (<const IdWord*>b).first
    return (x > y) - (x < y)


cdef inline void write_records(const IdWord* words, int64_t n, int64_t* ranges, IdWord* pairs, int64_t* lone,
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
