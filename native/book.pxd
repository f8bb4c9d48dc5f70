# The native order book: `NativeBook`, its event buffer and snapshot records (book.pyx).
#
# The book is built from three structures, each with its own header and invariants:
#   native/orders.pxd   the resting orders' records and their pool of slots
#   native/ladder.pxd   the price levels of both sides: a skip list per side, their pool
#   native/ids.pxd      the resting-id table (id -> pool slot) and the accepted-id bitmap
# and the engine's constants (sides, order types, times in force, reject and cancel codes,
# stream message kinds, hash seeds) from native/constants.pxd, which setup.py generates from
# engine/types.py, engine/stream.py and engine/snapshot.py. book.pyx keeps what ties them
# together: the Python API, validation, matching, resting and unlinking orders (a level's FIFO
# of orders and its totals), events, snapshots and restore, the batch replay.

from libc.stdint cimport int32_t, int64_t, uint8_t, uint64_t

from native.ids cimport AcceptedIds, IdWord, LiveIds
from native.ladder cimport Ladder
from native.orders cimport OrderPool

cdef enum:                   # Event.kind: the event Structs of engine.messages, in C
    EV_ACCEPTED = 0
    EV_REJECTED = 1          # the three rejects are consecutive: REJECT_EVENTS[kind - EV_REJECTED]
    EV_CANCEL_REJECTED = 2
    EV_REPLACE_REJECTED = 3
    EV_FILLED = 4
    EV_CANCELED = 5
    EV_REPLACED = 6
    EV_EXPIRED = 7


# ---------------------------------------------------------------- records

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


ctypedef struct Touch:       # a level as it was before the command being processed first changed it
    int64_t price
    int64_t quantity         # 0 and count 0: the level did not exist
    int32_t count
    uint8_t side


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


# ---------------------------------------------------------------- the book

cdef class NativeBook:
    cdef OrderPool orders            # resting orders (orders.pxd)
    cdef Ladder ladder               # price levels of both sides (ladder.pxd)
    cdef LiveIds live                # resting id -> order slot (ids.pxd)
    cdef AcceptedIds ids             # every id ever accepted (ids.pxd)

    cdef Event* events               # events of the command being processed
    cdef int64_t event_capacity
    cdef int64_t event_count

    cdef Touch* touches              # levels the command being processed touched, in first-touch order
    cdef int64_t touch_capacity
    cdef int64_t touch_count
    cdef uint64_t command            # number of the command being processed (Level.touched compares to it)
    cdef bint tracking               # note touched levels (the per-message API; not the batch replay)

    cdef Fill* fills                 # fills of a batch replay
    cdef int64_t fill_capacity
    cdef int64_t fill_count

    cdef int64_t trade_seq
    cdef int64_t day_orders          # resting DAY orders

    # ---- capacity: called before each command, so commands never allocate
    cdef int _prepare(self) except -1
    cdef int _reserve(self, bint batch) noexcept nogil

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
    cdef void _touch(self, int side, int32_t lv) noexcept nogil
    cdef void _touch_new(self, int side, int32_t lv) noexcept nogil

    # ---- snapshots: resting orders as ORDER_DTYPE records (engine.snapshot)
    cdef bytes _resting_records(self)
    cdef int _restore_orders(self, const OrderRecord* records, int64_t count) except -1

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
