# The native order book: `NativeBook`, its event buffer, the record API's event log and snapshot records
# (book.pyx).
#
# The book is built from these structures, each with its own header and invariants:
#   native/orders.pxd   the orders' records (what matching reads, and the rest beside it) and their pool
#   native/ladder.pxd   the price levels of both sides: a skip list per side, their pool
#   native/stops.pxd    the held stops: a skip list of stop prices per side that finds the earliest
#                       qualifying stop in one descent, and the stops in acceptance order
#   native/expiry.pxd   the GTD orders in a heap by expiry time
#   native/auction.pxd  the call auction's uncross price, in one pass over the levels
#   native/ids.pxd      the live-id table (id -> pool slot) and the accepted-id bitmap
# with snapshots (records.pxd: the state as `engine.snapshot` records, their hash, restore), msgpack
# written in C (wire.pxd: `NativeBook.execute_encoded`'s events and market data), Python ints read
# as int64 (int64.pxd, shared with orderpath.pyx) and the
# invariant checks (checks.pxd) in headers of their own, and the engine's constants (sides, order types, times in force, flags, self-trade prevention
# modes, phases, reject and cancel codes, stream message kinds, hash seeds) from
# native/constants.pxd, which setup.py generates from engine/types.py, engine/stream.py and
# engine/snapshot.py. book.pyx keeps what ties them together: the Python API, validation,
# matching (self-trade prevention, icebergs' refreshes), resting and unlinking orders (a level's
# FIFO of orders and its totals), the trigger loop, the clock, the phases and the uncross,
# events, snapshots and restore, the batch replay of both stream versions.

cimport cython
from cpython.object cimport PyObject
from libc.stdint cimport int16_t, int32_t, int64_t, uint8_t, uint64_t

from native.auction cimport Auction
from native.expiry cimport ExpiryHeap
from native.ids cimport AcceptedIds, IdWord, LiveIds
from native.ladder cimport Ladder, Level
from native.orders cimport Order, OrderPool
from native.stops cimport StopBook

cdef enum:                   # Event.kind: the event Structs of engine.messages, in C
    EV_ACCEPTED = 0
    EV_REJECTED = 1          # the three order rejects are consecutive: REJECT_EVENTS[kind - EV_REJECTED]
    EV_CANCEL_REJECTED = 2
    EV_REPLACE_REJECTED = 3
    EV_COMMAND_REJECTED = 4
    EV_FILLED = 5
    EV_CANCELED = 6
    EV_REPLACED = 7
    EV_EXPIRED = 8
    EV_DECREMENTED = 9
    EV_TRIGGERED = 10
    EV_CLOCK = 11
    EV_PHASE = 12
    EV_UNCROSSED = 13


# ---------------------------------------------------------------- records

ctypedef struct Event:
    int64_t order_id         # fills: the maker
    int64_t other_id         # fills: the taker; decrements: the counterparty; accepted: the owner
    int64_t price            # triggered: the last price; clock: the time
    int64_t quantity
    int64_t leaves           # fills: maker leaves; accepted: the stop price; phase: the previous phase
    int64_t other_leaves     # fills: taker leaves; accepted: the display quantity
    int64_t sequence         # fills: the trade number; accepted: expire_at
    int16_t code             # reject reason (< 2**15), cancel reason, priority-kept flag or phase
    uint8_t kind
    uint8_t side
    uint8_t order_type
    uint8_t tif
    uint8_t flags
    uint8_t stp


ctypedef struct Outcome:     # what `NativeBook.execute_encoded` says of a command besides its bytes
    int64_t md_sequence      # in: the feed's market-data sequence; out: after the command's market data
    int64_t accepted         # 1 if a submit was accepted, 2 if as GTD, else 0
    int64_t expire_at        # a GTD order's expiry
    int64_t fills            # the command's fills, and their lowest, highest and last price
    int64_t low
    int64_t high
    int64_t last
    bint framed              # in: leave the journal entry in the book's buffer (no bytes made)
    const char* entry        # out, if framed: the entry's msgpack there, until the book's next encoded command
    Py_ssize_t entry_size


ctypedef struct NewOrder:    # a new order as submitted (SubmitOrder's fields), each an int64 until validated
    int64_t order_id
    int64_t side
    int64_t order_type
    int64_t tif
    int64_t price
    int64_t quantity
    int64_t stop_price
    int64_t display
    int64_t flags
    int64_t owner
    int64_t stp
    int64_t expire_at


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


cdef packed struct StreamRecord:     # STREAM_DTYPE (version 1)
    uint8_t kind
    uint8_t side
    int64_t price
    int64_t qty
    int64_t order_id
    int64_t target_id


cdef packed struct StreamRecordV2:   # STREAM_V2_DTYPE
    uint8_t kind
    uint8_t side
    uint8_t tif
    uint8_t flags
    uint8_t stp
    int64_t price
    int64_t qty
    int64_t order_id
    int64_t target_id
    int64_t stop_price
    int64_t display_qty
    int64_t owner
    int64_t expire_at


# ---------------------------------------------------------------- the book

@cython.final                # no subclass overrides a cdef method: calls are direct, and C can inline them
cdef class NativeBook:
    cdef OrderPool orders            # live orders: resting, held or waiting (orders.pxd)
    cdef Ladder ladder               # price levels of both sides (ladder.pxd)
    cdef StopBook stops              # held stops (stops.pxd)
    cdef ExpiryHeap expiries         # GTD orders by expiry (expiry.pxd)
    cdef Auction auction             # the uncross's scratch (auction.pxd)
    cdef LiveIds live                # live id -> order slot, held stops and waiting orders included (ids.pxd)
    cdef AcceptedIds ids             # every id ever accepted (ids.pxd)

    cdef Event* events               # events of the command being processed
    cdef int64_t event_capacity
    cdef int64_t event_count

    cdef Event* log                  # the record API's event log: the events of every record_* command
    cdef int64_t log_capacity        # since the last take_events, in order (NULL and 0 before the first)
    cdef int64_t log_count

    cdef Touch* touches              # levels the command being processed touched, in first-touch order
    cdef int64_t touch_capacity
    cdef int64_t touch_count
    cdef uint64_t command            # number of the command being processed (Level.touched compares to it)
    cdef bint tracking               # the per-message API: note touched levels, fill in every event
                                     # (the batch replay reads only the kinds and the fills)

    cdef Fill* fills                 # fills of a batch replay (written instead of OrderFilled events)
    cdef int64_t fill_capacity
    cdef int64_t fill_count

    cdef int64_t trade_seq
    cdef int64_t day_orders          # resting DAY orders
    cdef int64_t refreshes           # icebergs' slices yet to show: sum of ceil(hidden / display)
    cdef int64_t guarded_stops       # held stops with an owner and a prevention mode
    cdef int32_t waiting_first       # market orders waiting for the uncross, in arrival order
    cdef int32_t waiting_last
    cdef int64_t waiting_count
    cdef int64_t waiting_quantity[2] # their open quantity per side
    cdef int64_t last_trade          # the last trade price; 0 before the first trade (prices are positive)
    cdef int64_t logical_time        # the clock
    cdef int64_t accepted            # acceptance numbers given (OrderInfo.accepted)
    cdef int64_t auction_time        # the auction time counter (OrderInfo.time), CALL and HALTED only
    cdef uint8_t trading             # the phase
    cdef int32_t ahead[16]           # the batch replay's look-ahead: slots of the orders targeted ahead (book.pyx)
    cdef object made_reply           # the encoded API's last command (`execute_encoded`): its Executed reply,
    cdef object made_concerned       # the TES ids it concerns
    cdef object made_quote           # and the feed's quote after it

    # ---- capacity: called before each command, so commands never allocate
    cdef int _prepare(self, int64_t taking, int64_t slices, bint guarded) except -1
    cdef int _reserve(self, bint batch, int64_t taking, int64_t slices, bint guarded) noexcept nogil
    cdef int _reserve_buffers(self, bint batch, int64_t taking, int64_t slices, bint guarded) noexcept nogil
    cdef int64_t _room_v1(self) noexcept nogil
    cdef int _grow(self, int64_t held) noexcept nogil
    cdef int _grow_buffers(self, int64_t events, int64_t fills) noexcept nogil
    cdef int64_t _replace_slices(self, int64_t order_id, int64_t quantity, bint* guarded) noexcept nogil
    cdef int64_t _taking(self, const NewOrder* n) noexcept nogil
    cdef int64_t _replace_taking(self, int64_t order_id, int64_t price, int64_t quantity) noexcept nogil

    # ---- the batch replay: how many messages it did (fewer than n only when out of memory)
    cdef int64_t _replay_v1(self, const StreamRecord* records, int64_t n, int64_t* counts) noexcept nogil
    cdef int64_t _replay_v2(self, const StreamRecordV2* records, int64_t n, int64_t* counts) noexcept nogil
    cdef inline void _look_ahead(self, int64_t i, uint8_t id_kind, int64_t order_id, int64_t id_target,
                                 uint8_t order_kind, int64_t order_target) noexcept nogil

    # ---- commands
    cdef inline void _submit(self, NewOrder* n) noexcept nogil
    cdef inline int32_t _check_submit(self, const NewOrder* n) noexcept nogil
    cdef void _cancel(self, int64_t order_id) noexcept nogil
    cdef void _replace(self, int64_t order_id, int64_t price, int64_t quantity) noexcept nogil
    cdef void _expire_day_orders(self) noexcept nogil
    cdef void _set_clock(self, int64_t time) noexcept nogil
    cdef void _set_phase(self, int64_t phase) noexcept nogil

    # ---- matching
    cdef bint _would_take(self, int side, int64_t price) noexcept nogil
    cdef bint _fillable(self, int side, bint market, int64_t limit, int64_t wanted, int64_t owner,
                        int stp) noexcept nogil
    cdef int64_t _match(self, int64_t taker_id, int side, bint market, int64_t limit, int64_t quantity,
                        int64_t owner, int stp) noexcept nogil
    cdef int64_t _prevent(self, int64_t taker_id, int64_t quantity, int stp, int32_t o) noexcept nogil
    cdef int32_t _refresh(self, int32_t o, Level* level) noexcept nogil
    cdef void _execute(self, int32_t o, bint market) noexcept nogil
    cdef void _trigger(self) noexcept nogil
    cdef void _uncross(self) noexcept nogil
    cdef void _auction_trade(self, int32_t o, int64_t quantity) noexcept nogil
    cdef int32_t _auction_first(self, int side, int64_t price) noexcept nogil
    cdef int32_t _auction_next(self, int32_t o, int64_t price, uint64_t* marked) noexcept nogil
    cdef inline void _prefetch_next(self, int32_t o) noexcept nogil
    cdef void _number_times(self) noexcept nogil

    # ---- orders: taking a slot, placing on a level, holding, waiting, and back
    cdef inline int32_t _new_order(self, const NewOrder* n, int64_t quantity, int64_t accepted) noexcept nogil
    cdef void _materialize(self, int32_t o) noexcept nogil
    cdef inline int64_t _display(self, int32_t o) noexcept nogil
    cdef inline bint _owned_by(self, int32_t o, int64_t owner) noexcept nogil
    cdef inline void _place(self, int32_t o, int64_t price) noexcept nogil
    cdef void _resize(self, Order* order, Level* level, int64_t quantity, int64_t visible,
                      int64_t display) noexcept nogil
    cdef inline void _detach(self, int32_t o, Level* level) noexcept nogil
    cdef inline void _unplace(self, int32_t o) noexcept nogil
    cdef void _expire_later(self, int32_t o) noexcept nogil
    cdef void _unexpire(self, int32_t o) noexcept nogil
    cdef void _hold(self, int32_t o) noexcept nogil
    cdef void _unhold(self, int32_t o) noexcept nogil
    cdef void _wait(self, int32_t o) noexcept nogil
    cdef void _unwait(self, int32_t o) noexcept nogil
    cdef inline void _drop(self, int32_t o) noexcept nogil
    cdef inline void _free(self, int32_t o) noexcept nogil
    cdef inline void _drop_marked(self, int32_t o, uint64_t* marked) noexcept nogil
    cdef void _forget(self, const uint64_t* marked, int64_t words) noexcept nogil
    cdef inline void _touch(self, int side, int32_t lv) noexcept nogil
    cdef void _touch_new(self, int side, int32_t lv) noexcept nogil

    # ---- the encoded API (the OBS's order path: native/orderpath.pyx)
    cdef bytes execute_encoded(self, PyObject** command, Py_ssize_t fields, int kind, int64_t sequence,
                               int64_t time, bytes symbol, tuple quote, list market_data, int shift, Outcome* out)
    cdef bytes execute_values(self, int kind, const int64_t* values, Py_ssize_t fields, const char* account,
                              Py_ssize_t account_size, int64_t sequence, int64_t time, bytes symbol, tuple quote,
                              list market_data, int shift, Outcome* out)
    cdef bytes _run_encoded(self, int kind, NewOrder* n, int64_t o, int64_t p, int64_t q, int64_t sequence,
                            int64_t time, bytes symbol, tuple quote, list market_data, int shift, Outcome* out)

    # ---- events
    cdef Event* _emit(self, uint8_t kind) noexcept nogil
    cdef inline void _fill(self, int64_t maker_id, int64_t taker_id, int64_t price, int64_t quantity,
                           int64_t maker_leaves, int64_t taker_leaves, int aggressor) noexcept nogil
    cdef void _reject(self, uint8_t kind, int64_t order_id, int16_t code) noexcept nogil
    cdef int64_t _events_made(self) except -1
    cdef list _drain(self)
    cdef int _reserve_log(self) except -1
    cdef int64_t _record(self) except -1


# ---------------------------------------------------------------- an event log handed over

cdef class HandedBlock:
    cdef void* data                  # records, owned: freed with the block
    cdef Py_ssize_t size             # bytes


# ---------------------------------------------------------------- a snapshot in two steps

cdef class BookCapture:
    """`NativeBook.capture()`: what a snapshot needs, copied while the book stands still;
    `finish()` builds the `BookSnapshot` from it on any thread (the OBS's snapshot writer)."""
    cdef int64_t trade_seq
    cdef bytes records               # resting orders, ORDER_DTYPE records in priority order
    cdef tuple advanced              # details, held stops, waiting orders, phase, clock, last price
    cdef IdWord* words               # the accepted-id bitmap's non-empty words, unordered
    cdef int64_t word_count
