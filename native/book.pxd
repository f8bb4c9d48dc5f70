from libc.stdint cimport int32_t, int64_t, uint8_t, uint64_t

cdef enum:
    MAX_HEIGHT = 16          # skip-list height limit (p = 1/4: ample for 4**16 levels)


# ---------------------------------------------------------------- records

ctypedef struct Order:
    int64_t order_id
    int64_t quantity         # open quantity, always > 0 while resting
    int32_t prev             # older order at the same level, -1 at the head
    int32_t next             # newer order at the same level, -1 at the tail; free-list link when free
    int32_t level
    uint8_t side
    uint8_t tif


ctypedef struct Level:
    int64_t price
    int64_t key              # price for asks, -price for bids: a smaller key is a better price
    int64_t quantity         # sum of the open quantities of its orders
    int32_t count
    int32_t head             # oldest order (first to trade)
    int32_t tail             # newest order
    int32_t height
    int32_t forward[MAX_HEIGHT]   # skip-list successors, i.e. worse prices; -1 ends a list


ctypedef struct Event:
    int64_t order_id         # fills: the maker
    int64_t other_id         # fills: the taker
    int64_t price
    int64_t quantity
    int64_t leaves           # fills: maker leaves
    int64_t other_leaves     # fills: taker leaves
    int64_t sequence
    int32_t code             # reject reason, cancel reason or priority-kept flag
    uint8_t kind
    uint8_t side
    uint8_t order_type
    uint8_t tif


ctypedef struct Fill:        # FILL_DTYPE
    int64_t maker_id
    int64_t taker_id
    int64_t price
    int64_t qty


cdef packed struct OrderRecord:   # engine.snapshot.ORDER_DTYPE: a resting order in a snapshot
    int64_t order_id
    uint8_t side
    int64_t price
    int64_t quantity
    uint8_t tif


ctypedef struct IdWord:      # a word of the accepted-id bitmap as a snapshot holds it: engine.snapshot.WORD_DTYPE
    int64_t first            # the id of bit 0 (a multiple of 64), so words sort by id
    uint64_t bits


ctypedef struct LiveSlot:    # open-addressing slot: resting order id -> pool index
    int64_t order_id
    int32_t index            # -1: empty slot


ctypedef struct IdBlock:     # open-addressing slot: 64 consecutive ids -> accepted bitmap
    uint64_t block
    uint64_t bits            # 0: empty slot


# ---------------------------------------------------------------- the book

cdef class NativeBook:
    cdef Order* orders
    cdef int32_t order_capacity
    cdef int32_t order_top           # slots [0, order_top) have been used at least once
    cdef int32_t order_free          # head of the free list, -1 if empty

    cdef Level* levels               # levels[0], levels[1]: skip-list heads of bids, asks
    cdef int32_t level_capacity
    cdef int32_t level_top
    cdef int32_t level_free
    cdef int32_t height[2]           # skip-list height in use per side

    cdef LiveSlot* live
    cdef int64_t live_mask
    cdef int64_t live_count          # resting orders

    cdef IdBlock* ids
    cdef int64_t ids_mask
    cdef int64_t ids_blocks
    cdef int64_t ids_count           # ids ever accepted
    cdef uint64_t ids_digest

    cdef Event* events               # events of the command being processed
    cdef int64_t event_capacity
    cdef int64_t event_count

    cdef Fill* fills                 # fills of a batch replay
    cdef int64_t fill_capacity
    cdef int64_t fill_count

    cdef int64_t trade_seq
    cdef int64_t day_orders          # resting DAY orders
    cdef uint64_t rng                # skip-list height generator state

    # ---- capacity: called before each command, so commands never allocate
    cdef int _prepare(self) except -1
    cdef int _reserve(self, bint batch) noexcept nogil
    cdef int _grow_live(self) noexcept nogil
    cdef int _resize_ids(self, int64_t size) noexcept nogil

    # ---- commands
    cdef void _submit(self, int64_t order_id, int64_t side, int64_t order_type, int64_t tif,
                      int64_t price, int64_t quantity) noexcept nogil
    cdef void _cancel(self, int64_t order_id) noexcept nogil
    cdef void _replace(self, int64_t order_id, int64_t price, int64_t quantity) noexcept nogil
    cdef void _expire_day_orders(self) noexcept nogil

    # ---- matching and resting
    cdef int64_t _available(self, int side, bint market, int64_t limit, int64_t wanted) noexcept nogil
    cdef int64_t _match(self, int64_t taker_id, int side, bint market, int64_t limit,
                        int64_t quantity) noexcept nogil
    cdef void _rest(self, int64_t order_id, int side, int64_t price, int64_t quantity, int tif) noexcept nogil
    cdef void _unlink(self, int32_t o) noexcept nogil
    cdef void _release(self, int32_t o) noexcept nogil

    # ---- price levels (skip list per side)
    cdef int32_t _find_level(self, int side, int64_t key, int32_t* update) noexcept nogil
    cdef int32_t _level_at(self, int side, int64_t price) noexcept nogil
    cdef int32_t _insert_level(self, int side, int64_t price, int64_t key, int32_t* update) noexcept nogil
    cdef void _remove_level(self, int side, int32_t level) noexcept nogil
    cdef void _shrink(self, int side) noexcept nogil
    cdef int _random_height(self) noexcept nogil

    # ---- snapshots: resting orders as ORDER_DTYPE records (engine.snapshot)
    cdef bytes _resting_records(self)
    cdef int _restore_orders(self, const OrderRecord* records, int64_t count) except -1

    # ---- id tables
    cdef int32_t _live_get(self, int64_t order_id) noexcept nogil
    cdef void _live_put(self, int64_t order_id, int32_t index) noexcept nogil
    cdef void _live_remove(self, int64_t order_id) noexcept nogil
    cdef bint _was_accepted(self, int64_t order_id) noexcept nogil
    cdef void _add_accepted(self, int64_t order_id) noexcept nogil
    cdef IdBlock* _id_block(self, uint64_t block) noexcept nogil
    cdef void _accept_word(self, int64_t first, uint64_t bits) noexcept nogil
    cdef void _accept_full_words(self, int64_t first, int64_t last) noexcept nogil
    cdef int _restore_ids(self, const int64_t* ranges, int64_t range_count, const IdWord* words,
                          int64_t word_count, const int64_t* lone, int64_t lone_count) except -1

    # ---- events
    cdef Event* _emit(self, uint8_t kind) noexcept nogil
    cdef void _reject(self, uint8_t kind, int64_t order_id, int32_t code) noexcept nogil
    cdef list _drain(self)


# ---------------------------------------------------------------- a snapshot in two steps

cdef class BookCapture:
    """`NativeBook.capture()`: what a snapshot needs, copied while the book stands still;
    `finish()` builds the `BookSnapshot` from it on any thread (the OBS's snapshot writer)."""
    cdef int64_t trade_seq
    cdef bytes records               # resting orders, ORDER_DTYPE records in priority order
    cdef IdWord* words               # the accepted-id bitmap's non-empty words, unordered
    cdef int64_t word_count
