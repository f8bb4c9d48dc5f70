# cython: boundscheck=False, wraparound=False
"""The native price-time priority order book: the reference book's semantics in C.

`NativeBook` has the Python API of `engine.book.ReferenceBook` and must produce
identical events, snapshots and state hashes for every command sequence (the
differential tests hold it to that); the reference book's docstring is the
specification of matching, validation order and replace, and `engine.messages`
tables the events of each command.

The structures live in their own headers, each stating its invariants:
``orders.pxd`` (the order pool), ``ladder.pxd`` (the price levels: a skip list per
side), ``stops.pxd`` (the held stops and the trigger loop's index), ``expiry.pxd``
(GTD orders by expiry), ``auction.pxd`` (the uncross price), ``ids.pxd`` (the
live-id table and the accepted-id bitmap); so do the book's snapshots
(``records.pxd``: its state as `engine.snapshot` records, their hash, restore) and
its invariant checks (``checks.pxd``). The engine's constants come from
``constants.pxd``, which setup.py generates from `engine.types`, `engine.stream`
and `engine.snapshot`. Their functions are ``cdef inline`` and compile into this
module.

Invariants
----------
- Per side, price levels form a skip list ordered by key (price for asks, -price
  for bids), so the first level is the best price and a walk along ``forward[0]``
  visits prices from best to worst. A level exists iff it holds an order.
- Within a level, orders form a doubly linked FIFO list; a level's quantity is the
  sum of its orders' visible slices (what depth shows), its ``hidden`` the sum of
  the rest of their open quantities (icebergs'), its count their number. This
  module keeps the lists and the totals (`_place`, `_detach`, `_match`, `_resize`).
- ``live`` maps every live order id (resting, held stop, waiting market order) to
  its pool slot and nothing else: cancel is O(1) whatever the queue's length.
  ``ids`` is a bitmap per 64 consecutive ids of every id ever accepted.
- In the CONTINUOUS phase, after every command, the book is not crossed, no market
  order waits and no held stop qualifies at the last trade price. The auction time
  (`OrderInfo.time`) is kept only in CALL and HALTED: leaving CONTINUOUS numbers the
  resting orders in priority order, and every order taking a place or arriving at the
  auction after that takes the next number.
- ``refreshes`` is the number of slices icebergs have yet to show, sum of
  ceil(hidden / display): with the live orders it bounds the fills of a command.
- Memory: orders, levels and stop prices live in pools that reuse freed slots, so
  memory is proportional to live orders and occupied prices, never to the price range.
- Capacity for one command (one order slot, a level for each order it can rest, one
  stop price, one id, one GTD entry, events and fills for the most the command can
  produce) is reserved before the command runs (`_reserve`), so matching never
  allocates, never fails half-way and never touches a Python object.

Commands return events through a C buffer: the per-message API turns them into
the `engine.messages` Structs. Its record API (``record_submit`` ...
``record_expire_day_orders``) appends them instead, as the C ``Event`` records, to an
event log in the book that ``take_events`` hands over as one EVENT_DTYPE array
(`engine.stream` tables the fields of each kind); `events_from_records` makes the same
Structs from such records. Its encoded API (``execute_encoded``, the OBS's order path)
writes them as msgpack instead (``wire.pxd``), with the market data the OBS publishes for
them, byte for byte as msgspec encodes the Structs. The batch replay has each trade written straight
into its fill buffer instead of an OrderFilled event, reads no more of the other
events than whether the first is a rejection, and keeps its loop in C without the
GIL, for both stream versions.
"""

from cpython.buffer cimport PyBuffer_FillInfo
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.bool cimport PyBool_Check
from cpython.long cimport PyLong_Check
from cpython.unicode cimport PyUnicode_AsUTF8AndSize, PyUnicode_Check
from libc.stdint cimport int16_t, int32_t, int64_t, uint8_t, uint32_t, uint64_t
from libc.stdlib cimport qsort
from libc.string cimport memcpy, memset

from native.blocks cimport block_free, block_new, block_resize, block_zeroed
from native.auction cimport Uncross, Volume, auction_init, auction_reserve, uncross_price
from native.checks cimport check_book
from native.constants cimport (
    BUY,
    CALL,
    CANCEL_BOTH,
    CANCEL_MAKER,
    CANCEL_TAKER,
    CLOCK_BACKWARDS,
    CONTINUOUS,
    DAY,
    DECREMENT,
    DUPLICATE_ORDER_ID,
    EXPIRE_TIME_PASSED,
    FOK,
    FOK_NOT_FILLABLE,
    GTC,
    GTD,
    HALTED,
    INVALID_DISPLAY_QUANTITY,
    INVALID_PRICE,
    INVALID_QUANTITY,
    INVALID_STOP_PRICE,
    IOC,
    LIMIT,
    MARKET,
    MARKET_ORDER_CANNOT_REST,
    MAX_QUANTITY,
    NONE,
    NOT_ALLOWED_IN_PHASE,
    NOT_REPLACEABLE,
    POST_ONLY,
    POST_ONLY_NOT_ALLOWED,
    POST_ONLY_WOULD_TAKE,
    QUANTITY_TOO_LARGE,
    REQUESTED,
    SELF_TRADE,
    SELL,
    STOP,
    STOP_LIMIT,
    STREAM_CANCEL,
    STREAM_CLOCK,
    STREAM_LIMIT,
    STREAM_LIMIT_FOK,
    STREAM_LIMIT_GTC,
    STREAM_LIMIT_IOC,
    STREAM_MARKET,
    STREAM_PHASE,
    STREAM_REPLACE,
    STREAM_STOP,
    STREAM_STOP_LIMIT,
    STREAM_TIF_V2_GTD,
    UNFILLED,
    UNKNOWN_FLAGS,
    UNKNOWN_ORDER,
    UNKNOWN_ORDER_TYPE,
    UNKNOWN_PHASE,
    UNKNOWN_SIDE,
    UNKNOWN_STP_MODE,
    UNKNOWN_TIME_IN_FORCE,
    VALUE_OUT_OF_RANGE,
)
from native.expiry cimport (
    Keyed,
    expiry_add,
    expiry_full,
    expiry_init,
    expiry_remove,
    expiry_reserve,
    take_due,
)
from native.ids cimport (
    IdBlock,
    IdWord,
    LIVE_SPREAD,
    LiveSlot,
    accepted_full,
    accepted_init,
    accepted_reserve,
    accepted_words,
    add_accepted,
    compare_words,
    live_get,
    live_peek,
    live_prefetch,
    live_full,
    live_init,
    live_put,
    live_remove,
    live_reserve,
    live_sweep,
    popcount,
    prefetch,
    restore_accepted,
    trailing_zeros,
    was_accepted,
    write_records,
)
from native.int64 cimport as_int64
from native.ladder cimport (
    NEAR_SLOTS,
    Level,
    ladder_init,
    ladder_levels,
    ladder_reserve,
    ladder_room,
    level_at,
    place_level,
    remove_best_level,
    remove_level,
)
from native.orders cimport (
    HELD,
    RESTING,
    WAITING,
    Order,
    OrderInfo,
    iceberg_slices,
    order_append,
    order_pool_full,
    order_pool_init,
    order_pool_reserve,
    order_release,
    order_take,
    order_unlink,
)
from native.records cimport (
    DetailRecord,
    HeldRecord,
    OrderRecord,
    WaitingRecord,
    advanced_records,
    resting_records,
    restore_orders,
    state_hash_of,
)
from native.stops cimport (
    StopLevel,
    hold_stop,
    next_triggered,
    stops_full,
    stops_init,
    stops_reserve,
    unhold_stop,
)
from native.wire cimport (
    MAX_HEADER,
    Writer,
    wire_array,
    wire_bool,
    wire_bytes,
    wire_int,
    wire_room,
    wire_str,
    wire_tagged,
)

import numpy as np

from engine.messages import (
    AuctionUncrossed,
    CancelRejected,
    ClockAdvanced,
    CommandRejected,
    LevelChanged,
    OrderAccepted,
    OrderCanceled,
    OrderDecremented,
    OrderExpired,
    OrderFilled,
    OrderRejected,
    OrderReplaced,
    PhaseChanged,
    PriceLevel,
    ReplaceRejected,
    RestingOrder,
    StopTriggered,
    dispatch,
)
from engine.snapshot import DETAIL_DTYPE, HELD_DTYPE, ORDER_DTYPE, WAITING_DTYPE, BookSnapshot, validate_snapshot
from engine.stream import EVENT_DTYPE, FILL_DTYPE, STREAM_DTYPE, EventKind, ReplayResult, check_stream
from engine.types import CancelReason, OrderType, Phase, RejectReason, SelfTradePrevention, Side, TimeInForce

cdef enum:
    INITIAL_EVENTS = 64
    SWEEP_SLOTS = 32         # `_forget` sweeps the id table for one id freed per this many slots or more
    LOG_COPIED = 1 << 16     # records: `records_out` copies no more (an event log, a replay's fills), hands more over
    LOOK_AHEAD_FROM = 1 << 18   # the batch replay loads ahead (`_look_ahead`) once the id table has more slots
    AHEAD_ID = 24            # (65,536 live orders; fewer miss too little to gain): a message's id-table slot
    AHEAD_ORDER = 12         # this many messages ahead, the order it targets this many ahead,
    AHEAD_LINKS = 6          # that order's neighbours in its queue this many ahead
    AHEAD_MASK = 15          # ``NativeBook.ahead`` holds the orders of the AHEAD_ORDER messages ahead


def by_value(enum):
    """The members of an IntEnum numbered 0, 1, ... as a tuple indexed by value (a C code): the
    native book's tables, and `native.reports`'."""
    members = tuple(sorted(enum))
    if [int(member) for member in members] != list(range(len(members))):
        raise ImportError(f"{enum.__name__} is not numbered 0, 1, ...: the native book indexes it by value")
    return members


def _same_layout(name, dtype, size):
    """The packed C record and the engine's dtype agree (sizes; the fields are read by name in tests)."""
    if dtype.itemsize != size:
        raise ImportError(f"{name}: the native record has {size} bytes, engine.snapshot's dtype {dtype.itemsize}")


_same_layout("ORDER_DTYPE", ORDER_DTYPE, sizeof(OrderRecord))
_same_layout("DETAIL_DTYPE", DETAIL_DTYPE, sizeof(DetailRecord))
_same_layout("HELD_DTYPE", HELD_DTYPE, sizeof(HeldRecord))
_same_layout("WAITING_DTYPE", WAITING_DTYPE, sizeof(WaitingRecord))
_same_layout("STREAM_DTYPE", STREAM_DTYPE, sizeof(StreamRecord))
_same_layout("EVENT_DTYPE", EVENT_DTYPE, sizeof(Event))


def _same_events():
    """EVENT_DTYPE's fields lie where the C ``Event``'s do, and `EventKind` numbers the kinds as
    book.pxd does (the record API hands the C records over as they are)."""
    cdef Event e
    cdef char* at = <char*>&e
    offsets = {"order_id": <char*>&e.order_id - at, "other_id": <char*>&e.other_id - at,
               "price": <char*>&e.price - at, "quantity": <char*>&e.quantity - at, "leaves": <char*>&e.leaves - at,
               "other_leaves": <char*>&e.other_leaves - at, "sequence": <char*>&e.sequence - at,
               "code": <char*>&e.code - at, "kind": <char*>&e.kind - at, "side": <char*>&e.side - at,
               "order_type": <char*>&e.order_type - at, "tif": <char*>&e.tif - at, "flags": <char*>&e.flags - at,
               "stp": <char*>&e.stp - at}
    if offsets != {name: EVENT_DTYPE.fields[name][1] for name in EVENT_DTYPE.names}:
        raise ImportError(f"EVENT_DTYPE: the native Event's fields lie at {offsets}")
    kinds = {"ACCEPTED": EV_ACCEPTED, "REJECTED": EV_REJECTED, "CANCEL_REJECTED": EV_CANCEL_REJECTED,
             "REPLACE_REJECTED": EV_REPLACE_REJECTED, "COMMAND_REJECTED": EV_COMMAND_REJECTED,
             "FILLED": EV_FILLED, "CANCELED": EV_CANCELED, "REPLACED": EV_REPLACED, "EXPIRED": EV_EXPIRED,
             "DECREMENTED": EV_DECREMENTED, "TRIGGERED": EV_TRIGGERED, "CLOCK": EV_CLOCK, "PHASE": EV_PHASE,
             "UNCROSSED": EV_UNCROSSED}
    if kinds != {kind.name: int(kind) for kind in EventKind}:
        raise ImportError(f"EventKind: the native book numbers the event kinds {kinds}")


_same_events()

cdef tuple SIDES = by_value(Side)
cdef tuple ORDER_TYPES = by_value(OrderType)
cdef tuple TIFS = by_value(TimeInForce)
cdef tuple CANCEL_REASONS = by_value(CancelReason)
cdef tuple STPS = by_value(SelfTradePrevention)
cdef tuple PHASES = by_value(Phase)
cdef dict REASONS = {int(reason): (reason, reason.text) for reason in RejectReason}
cdef object OUT_OF_RANGE = RejectReason.VALUE_OUT_OF_RANGE
cdef object _OrderAccepted = OrderAccepted
cdef object _OrderFilled = OrderFilled
cdef object _OrderCanceled = OrderCanceled
cdef object _OrderReplaced = OrderReplaced
cdef object _OrderExpired = OrderExpired
cdef tuple REJECT_EVENTS = (OrderRejected, CancelRejected, ReplaceRejected)


cdef inline bint within(int side, int64_t limit, int64_t price) noexcept nogil:
    """Whether a ``side`` taker limited at ``limit`` may trade at ``price``."""
    return price <= limit if side == BUY else price >= limit


cdef inline bint is_reject(uint8_t kind) noexcept nogil:
    return EV_REJECTED <= kind <= EV_COMMAND_REJECTED


cdef inline int64_t new_slices(const NewOrder* n) noexcept nogil:
    """How many slices new order ``n`` could show if it rests (`NativeBook._reserve`)."""
    return iceberg_slices(n.quantity, n.display) if 0 < n.display <= n.quantity <= MAX_QUANTITY else 1


cdef inline int64_t v2_order_type(uint8_t kind) noexcept nogil:
    """The order type of a version-2 message kind; -1 if it is not a new order."""
    if kind == STREAM_LIMIT:
        return LIMIT
    if kind == STREAM_MARKET:
        return MARKET
    if kind == STREAM_STOP:
        return STOP
    if kind == STREAM_STOP_LIMIT:
        return STOP_LIMIT
    return -1


cdef int read_replace(int64_t* o, int64_t* p, int64_t* q, object order_id, object price,
                      object quantity) except -1:
    """ReplaceOrder's fields into ``o``, ``p`` and ``q`` as `read_new_order` reads an order's: 0, or
    1 if one lies beyond int64."""
    if PyLong_Check(order_id) & PyLong_Check(price) & PyLong_Check(quantity):
        try:
            o[0], p[0], q[0] = order_id, price, quantity
            return 0
        except OverflowError:
            pass
    return as_int64(order_id, o) | as_int64(price, p) | as_int64(quantity, q)


cdef int read_new_order(NewOrder* n, object order_id, object side, object order_type, object tif, object price,
                        object quantity, object stop_price, object display, object flags, object owner, object stp,
                        object expire_at) except -1:
    """SubmitOrder's fields into ``n``: 0, or 1 if one lies beyond int64; then an order id beyond
    int64 reads as 0, the order id of the reject record. Ints take the typed conversion at once;
    anything else, or an int beyond int64, goes through `as_int64` for each field, all of them, so
    a wrong type raises TypeError whatever the others hold (typed parameters would be cheaper
    still, but would truncate a float where the reference book refuses it, and raise
    OverflowError where it rejects)."""
    if (PyLong_Check(order_id) & PyLong_Check(side) & PyLong_Check(order_type) & PyLong_Check(tif)
            & PyLong_Check(price) & PyLong_Check(quantity) & PyLong_Check(stop_price) & PyLong_Check(display)
            & PyLong_Check(flags) & PyLong_Check(owner) & PyLong_Check(stp) & PyLong_Check(expire_at)):
        try:
            (n.order_id, n.side, n.order_type, n.tif, n.price, n.quantity, n.stop_price, n.display, n.flags,
             n.owner, n.stp, n.expire_at) = (order_id, side, order_type, tif, price, quantity, stop_price, display,
                                             flags, owner, stp, expire_at)
            return 0
        except OverflowError:
            pass
    if (as_int64(order_id, &n.order_id) | as_int64(side, &n.side) | as_int64(order_type, &n.order_type)
            | as_int64(tif, &n.tif) | as_int64(price, &n.price) | as_int64(quantity, &n.quantity)
            | as_int64(stop_price, &n.stop_price) | as_int64(display, &n.display) | as_int64(flags, &n.flags)
            | as_int64(owner, &n.owner) | as_int64(stp, &n.stp) | as_int64(expire_at, &n.expire_at)):
        if as_int64(order_id, &n.order_id):
            n.order_id = 0
        return 1
    return 0


ENCODED_FIELDS = (
    (None, "order_id", "side", "order_type", "time_in_force", "price", "quantity", None, None, "stop_price",
     "display_quantity", "flags", "owner", "stp", "expire_at"),
    (None, "order_id"),
    (None, "order_id", "price", "quantity"),
)
"""The fields `NativeBook.execute_encoded` reads of each kind of command, by position (None: not
read); `servers.shard` checks them against the protocol's Structs at import."""
cdef Writer _wire                    # `NativeBook.execute_encoded`'s buffer (the GIL guards it), grown once
cdef bytes FRAMED = b""              # what `execute_encoded` returns for an entry it left in `_wire`
cdef dict REASON_TEXTS = {int(reason): reason.text.encode() for reason in RejectReason}
cdef const char* REJECT_TAGS[3]
REJECT_TAGS[:] = [b"OrderRejected", b"CancelRejected", b"ReplaceRejected"]


LOOK_AHEAD_ORDERS = LOOK_AHEAD_FROM // LIVE_SPREAD
"""The live orders from which the batch replay looks ahead (`NativeBook._look_ahead`): the live-id
table then has more than LOOK_AHEAD_FROM slots."""


ENCODED_TAGS = ("BookSubmit", "BookCancel", "BookReplace")
"""The tag (class name) of each kind of command `NativeBook.execute_encoded` runs, which it writes
in the journal entry; `servers.shard` checks them against the protocol's Structs at import."""
cdef const char* COMMAND_TAGS[3]
COMMAND_TAGS[:] = [b"BookSubmit", b"BookCancel", b"BookReplace"]


cdef enum:
    COMMAND_VALUES = 16      # `wire_command` keeps the ints of a command's first this many fields
    SUBMIT_INTS = 0x7E7E     # the fields `execute_encoded` reads of a BookSubmit (1 to 6, 9 to 14), as bits
    CANCEL_INTS = 0x2        # of a BookCancel (1)
    REPLACE_INTS = 0xE       # of a BookReplace (1 to 3)


cdef int wire_command(Writer* w, int kind, PyObject** fields, Py_ssize_t count, int64_t* values,
                      uint32_t* ints) except -1:
    """The msgpack of the command of ``kind`` whose ``count`` fields are ``fields``, as msgspec
    encodes its Struct (tagged, ``array_like``), and 0; or 1, nothing written, unless each field is
    an int (not a bool) within int64 or a str. Field ``i`` < `COMMAND_VALUES` that is an int is
    read into ``values[i]``, and bit ``i`` set in ``ints``."""
    cdef Py_ssize_t size, start = w.size, i
    cdef int64_t value
    cdef const char* text
    ints[0] = 0
    wire_room(w, MAX_HEADER + 32 + count * MAX_HEADER)
    wire_tagged(w, COMMAND_TAGS[kind], count)
    for i in range(count):
        field = <object>fields[i]
        if PyLong_Check(field) and not PyBool_Check(field):
            if as_int64(field, &value):
                w.size = start
                return 1
            wire_int(w, value)
            if i < COMMAND_VALUES:
                values[i] = value
                ints[0] |= (<uint32_t>1) << i
        elif PyUnicode_Check(field):
            text = PyUnicode_AsUTF8AndSize(field, &size)
            wire_room(w, size + count * MAX_HEADER)
            wire_str(w, text, size)
        else:
            w.size = start
            return 1
    return 0


cdef inline void read_submit(NewOrder* n, const int64_t* v) noexcept nogil:
    """A BookSubmit's fields read as ints (``v[i]``: field ``i``) into ``n``."""
    n.order_id, n.side, n.order_type, n.tif, n.price, n.quantity = v[1], v[2], v[3], v[4], v[5], v[6]
    n.stop_price, n.display, n.flags, n.owner, n.stp, n.expire_at = v[9], v[10], v[11], v[12], v[13], v[14]


cdef int wire_values(Writer* w, int kind, const int64_t* values, Py_ssize_t count, bytes symbol,
                     const char* account, Py_ssize_t account_size) except -1:
    """The msgpack of the command of ``kind`` with ``count`` fields as `wire_command` writes it,
    from its values (`NativeBook.execute_values`): ``symbol`` (field 0) already msgpack, a
    BookSubmit's account (field 7) ``account_size`` bytes at ``account``, every other field the
    int ``values[i]``."""
    cdef Py_ssize_t i, size = PyBytes_GET_SIZE(symbol)
    wire_room(w, MAX_HEADER + 32 + size + account_size + count * MAX_HEADER)
    wire_tagged(w, COMMAND_TAGS[kind], count)
    wire_bytes(w, PyBytes_AS_STRING(symbol), size)
    for i in range(1, count):
        if kind == 0 and i == 7:
            wire_str(w, account, account_size)
        else:
            wire_int(w, values[i])
    return 0


cdef enum:
    FEW_OWNERS = 16          # `concerned_of` keeps this many owners on the stack, more in a list


cdef object _sole = None     # `concerned_of`'s last one-owner tuple, and its owner
cdef int64_t _sole_owner = -1


cdef inline list add_owner(int64_t* owners, int64_t* n, list more, int64_t owner):
    """Add ``owner`` to `concerned_of`'s owners unless there: the first `FEW_OWNERS` in
    ``owners`` (``n`` of them), all of them in the list ``more`` once there are more; returns
    ``more``."""
    cdef int64_t j
    for j in range(n[0]):
        if owners[j] == owner:
            return more
    if more is not None:
        if owner not in more:
            more.append(owner)
    elif n[0] < FEW_OWNERS:
        owners[n[0]] = owner
        n[0] += 1
    else:
        more = [owners[j] for j in range(n[0])]
        more.append(owner)
    return more


cdef tuple concerned_of(int64_t order_id, const Event* events, int64_t count, int shift):
    """The owners (order id >> ``shift``) ``count`` events of a command naming ``order_id``
    concern, each once, as `servers.shard.Shard.execute` lists them: the command's first, then,
    if there is more than one event, per fill its taker's and its maker's, per expiry, cancel,
    decrement or trigger its order's. A command that concerns its owner alone, nearly every
    one, gets the tuple the command before it got if that one had the same owner."""
    global _sole, _sole_owner
    cdef int64_t owners[FEW_OWNERS]
    cdef int64_t i, n = 1
    cdef const Event* e
    cdef list more = None
    owners[0] = order_id >> shift
    if count > 1:
        for i in range(count):
            e = &events[i]
            if e.kind == EV_FILLED:
                more = add_owner(owners, &n, more, e.other_id >> shift)
            elif not (e.kind == EV_EXPIRED or e.kind == EV_CANCELED or e.kind == EV_DECREMENTED
                      or e.kind == EV_TRIGGERED):
                continue
            more = add_owner(owners, &n, more, e.order_id >> shift)
    if more is not None:
        return tuple(more)
    if n > 1:
        return tuple([owners[i] for i in range(n)])
    if owners[0] != _sole_owner:
        _sole, _sole_owner = (owners[0],), owners[0]
    return _sole


cdef int wire_events(Writer* w, const Event* events, int64_t count) except -1:
    """The msgpack of ``count`` C events as msgspec encodes the list of their Structs (`events_of`)."""
    cdef const Event* e
    cdef int64_t i
    cdef bytes text
    wire_room(w, MAX_HEADER)
    wire_array(w, count)
    for i in range(count):
        e = &events[i]
        wire_room(w, 13 * MAX_HEADER + 32)
        if e.kind == EV_FILLED:
            wire_tagged(w, b"OrderFilled", 8)
            wire_int(w, e.order_id)
            wire_int(w, e.other_id)
            wire_int(w, e.price)
            wire_int(w, e.quantity)
            wire_int(w, e.leaves)
            wire_int(w, e.other_leaves)
            wire_int(w, e.side)
            wire_int(w, e.sequence)
        elif e.kind == EV_ACCEPTED:
            wire_tagged(w, b"OrderAccepted", 12)
            wire_int(w, e.order_id)
            wire_int(w, e.side)
            wire_int(w, e.order_type)
            wire_int(w, e.tif)
            wire_int(w, e.price)
            wire_int(w, e.quantity)
            wire_int(w, e.leaves)
            wire_int(w, e.other_leaves)
            wire_int(w, e.flags)
            wire_int(w, e.other_id)
            wire_int(w, e.stp)
            wire_int(w, e.sequence)
        elif e.kind == EV_CANCELED:
            wire_tagged(w, b"OrderCanceled", 3)
            wire_int(w, e.order_id)
            wire_int(w, e.quantity)
            wire_int(w, e.code)
        elif e.kind == EV_REPLACED:
            wire_tagged(w, b"OrderReplaced", 4)
            wire_int(w, e.order_id)
            wire_int(w, e.price)
            wire_int(w, e.quantity)
            wire_bool(w, e.code == 1)
        elif e.kind == EV_EXPIRED:
            wire_tagged(w, b"OrderExpired", 2)
            wire_int(w, e.order_id)
            wire_int(w, e.quantity)
        elif e.kind == EV_DECREMENTED:
            wire_tagged(w, b"OrderDecremented", 4)
            wire_int(w, e.order_id)
            wire_int(w, e.quantity)
            wire_int(w, e.leaves)
            wire_int(w, e.other_id)
        elif e.kind == EV_TRIGGERED:
            wire_tagged(w, b"StopTriggered", 2)
            wire_int(w, e.order_id)
            wire_int(w, e.price)
        elif e.kind == EV_CLOCK:
            wire_tagged(w, b"ClockAdvanced", 1)
            wire_int(w, e.price)
        elif e.kind == EV_PHASE:
            wire_tagged(w, b"PhaseChanged", 2)
            wire_int(w, e.code)
            wire_int(w, e.leaves)
        elif e.kind == EV_UNCROSSED:
            wire_tagged(w, b"AuctionUncrossed", 2)
            wire_int(w, e.price)
            wire_int(w, e.quantity)
        else:
            text = REASON_TEXTS[e.code]
            wire_room(w, len(text))
            if e.kind == EV_COMMAND_REJECTED:
                wire_tagged(w, b"CommandRejected", 2)
            else:
                wire_tagged(w, REJECT_TAGS[e.kind - EV_REJECTED], 3)
                wire_int(w, e.order_id)
            wire_int(w, e.code)
            wire_str(w, PyBytes_AS_STRING(text), len(text))
    return 0


cdef inline void wire_market_data(Writer* w, const char* tag, Py_ssize_t fields, bytes symbol,
                                  int64_t sequence) noexcept:
    """A market-data message's head: its tag, symbol and sequence (room made for its fields)."""
    wire_tagged(w, tag, fields)
    wire_bytes(w, PyBytes_AS_STRING(symbol), len(symbol))
    wire_int(w, sequence)


cdef inline bint same_quote(const int64_t* top, tuple quote) except -1:
    """Whether ``quote`` (four ints) holds the four values of ``top``: read as int64s, no int
    object made per comparison."""
    cdef int64_t value
    cdef Py_ssize_t i
    for i in range(4):
        if as_int64(quote[i], &value) or value != top[i]:
            return False
    return True


cdef tuple wire_levels(NativeBook book, bytes symbol, int64_t time, int64_t* sequence, int64_t* messages,
                       tuple quote, list market_data):
    """Append to ``market_data`` a DepthUpdate per level the last command changed (as
    `NativeBook.level_changes` lists them), then a Quote if any did and the top of book is no
    longer ``quote``, each encoded and numbered from ``sequence`` on (moved to the last;
    ``messages`` counts them); return the top of book as a quote tuple (``quote`` if unchanged)."""
    cdef const Touch* t
    cdef const Level* level
    cdef int32_t lv, orders, bid, ask
    cdef int64_t i, quantity
    cdef int64_t top[4]
    cdef bint changed = False
    cdef Py_ssize_t start
    for i in range(book.touch_count):
        t = &book.touches[i]
        lv = level_at(&book.ladder, t.side, t.price)
        if lv == -1:
            quantity, orders = 0, 0
        else:
            level = &book.ladder.levels[lv]
            quantity, orders = level.quantity, level.count
        if quantity == t.quantity and orders == t.count:
            continue
        changed = True
        sequence[0] += 1
        start = _wire.size
        wire_room(&_wire, 7 * MAX_HEADER + 32 + len(symbol))
        wire_market_data(&_wire, b"DepthUpdate", 7, symbol, sequence[0])
        wire_int(&_wire, t.side)
        wire_int(&_wire, t.price)
        wire_int(&_wire, quantity)
        wire_int(&_wire, orders)
        wire_int(&_wire, time)
        market_data.append(PyBytes_FromStringAndSize(<char*>&_wire.data[start], _wire.size - start))
        messages[0] += 1
    if not changed:
        return quote
    bid, ask = book.ladder.levels[BUY].forward[0], book.ladder.levels[SELL].forward[0]
    top[0] = 0 if bid == -1 else book.ladder.levels[bid].price
    top[1] = 0 if bid == -1 else book.ladder.levels[bid].quantity
    top[2] = 0 if ask == -1 else book.ladder.levels[ask].price
    top[3] = 0 if ask == -1 else book.ladder.levels[ask].quantity
    if same_quote(top, quote):
        return quote
    sequence[0] += 1
    start = _wire.size
    wire_room(&_wire, 8 * MAX_HEADER + 32 + len(symbol))
    wire_market_data(&_wire, b"Quote", 7, symbol, sequence[0])
    for i in range(4):
        wire_int(&_wire, top[i])
    wire_int(&_wire, time)
    market_data.append(PyBytes_FromStringAndSize(<char*>&_wire.data[start], _wire.size - start))
    messages[0] += 1
    return (top[0], top[1], top[2], top[3])


cdef list events_of(const Event* events, int64_t count):
    """The event Structs of ``count`` C events (fields as EVENT_DTYPE tables them).

    A fill's ids and price mostly repeat the fill's before it (a taker sweeping a level, an
    uncross pairing one order with several), so those of the previous fill are reused rather
    than made again: a third of what a fill costs here is making Python ints."""
    cdef list out = []
    cdef const Event* e
    cdef int64_t i
    cdef int64_t maker_id = 0, taker_id = 0, price = 0
    cdef object maker = None, taker = None, price_int = None, new_maker
    for i in range(count):
        e = &events[i]
        if e.kind == EV_FILLED:
            new_maker = recent_int(e.order_id, maker_id, maker, taker_id, taker)
            taker = recent_int(e.other_id, maker_id, maker, taker_id, taker)
            maker, maker_id, taker_id = new_maker, e.order_id, e.other_id
            if price_int is None or e.price != price:
                price_int, price = e.price, e.price
            out.append(_OrderFilled(maker, taker, price_int, e.quantity, e.leaves, e.other_leaves,
                                    SIDES[e.side], e.sequence))
        elif e.kind == EV_ACCEPTED:
            out.append(_OrderAccepted(e.order_id, SIDES[e.side], ORDER_TYPES[e.order_type], TIFS[e.tif], e.price,
                                      e.quantity, e.leaves, e.other_leaves, e.flags, e.other_id, STPS[e.stp],
                                      e.sequence))
        elif e.kind == EV_CANCELED:
            out.append(_OrderCanceled(e.order_id, e.quantity, CANCEL_REASONS[e.code]))
        elif e.kind == EV_REPLACED:
            out.append(_OrderReplaced(e.order_id, e.price, e.quantity, e.code == 1))
        elif e.kind == EV_EXPIRED:
            out.append(_OrderExpired(e.order_id, e.quantity))
        elif e.kind == EV_DECREMENTED:
            out.append(OrderDecremented(e.order_id, e.quantity, e.leaves, e.other_id))
        elif e.kind == EV_TRIGGERED:
            out.append(StopTriggered(e.order_id, e.price))
        elif e.kind == EV_CLOCK:
            out.append(ClockAdvanced(e.price))
        elif e.kind == EV_PHASE:
            out.append(PhaseChanged(PHASES[e.code], PHASES[e.leaves]))
        elif e.kind == EV_UNCROSSED:
            out.append(AuctionUncrossed(e.price, e.quantity))
        elif e.kind == EV_COMMAND_REJECTED:
            reason, text = REASONS[e.code]
            out.append(CommandRejected(reason, text))
        else:
            reason, text = REASONS[e.code]
            out.append(REJECT_EVENTS[e.kind - EV_REJECTED](e.order_id, reason, text))
    return out


def _check_records(records):
    """Raise ValueError unless every record of ``records`` (EVENT_DTYPE) has a known kind and, for
    the fields its kind reads as an enum, a known value: `events_of` indexes tuples by them unchecked."""
    kind = records["kind"]
    problems = [kind > EV_UNCROSSED]
    fills_or_accepted = (kind == EV_FILLED) | (kind == EV_ACCEPTED)
    problems.append(fills_or_accepted & (records["side"] >= len(SIDES)))
    accepted = kind == EV_ACCEPTED
    for field, values in (("order_type", ORDER_TYPES), ("tif", TIFS), ("stp", STPS)):
        problems.append(accepted & (records[field] >= len(values)))
    code = records["code"]
    problems.append((kind == EV_CANCELED) & ((code < 0) | (code >= len(CANCEL_REASONS))))
    phases = len(PHASES)
    problems.append((kind == EV_PHASE) & ((code < 0) | (code >= phases) | (records["leaves"] < 0)
                                          | (records["leaves"] >= phases)))
    problems.append((kind >= EV_REJECTED) & (kind <= EV_COMMAND_REJECTED) & ~np.isin(code, list(REASONS)))
    bad = np.flatnonzero(np.logical_or.reduce(problems))
    if len(bad):
        raise ValueError(f"record {bad[0]} is no event the native book makes: {records[bad[0]]}")


def events_from_records(records):
    """The event Structs of ``records`` (an EVENT_DTYPE array, `NativeBook.take_events`), in order:
    exactly what the classic methods returned for the commands that recorded them (but for an
    order id beyond int64 in a VALUE_OUT_OF_RANGE reject, recorded as 0). ValueError for a record
    the book does not make."""
    records = np.ascontiguousarray(records)
    if records.dtype != EVENT_DTYPE or records.ndim != 1:
        raise ValueError(f"expected a 1-d EVENT_DTYPE array, got {records.ndim}-d {records.dtype}")
    _check_records(records)
    cdef const uint8_t[::1] raw
    if not len(records):
        return []
    raw = records.view(np.uint8)
    return events_of(<const Event*>&raw[0], len(records))


cdef inline object price_level(const Level* level):
    return PriceLevel(level.price, level.quantity, level.count)


cdef inline object recent_int(int64_t value, int64_t first_value, object first, int64_t second_value,
                              object second):
    """``value`` as a Python int: ``first`` or ``second`` if it is one of them (None: none yet), else new."""
    if first is not None and value == first_value:
        return first
    if second is not None and value == second_value:
        return second
    return value


cdef void* grow(void* block, int64_t count, size_t size) noexcept nogil:
    """Resize ``block`` to ``count`` items of ``size`` bytes; NULL (block intact) on failure."""
    return block_resize(block, <size_t>count * size)


cdef object records_out(void** block, int64_t* capacity, int64_t count, size_t size, object dtype):
    """The first ``count`` records of ``size`` bytes in ``block[0]`` (``capacity[0]`` of them) as a
    ``dtype`` array: up to LOG_COPIED copied out, the block kept by its owner; more handed over as
    they are, the block shrunk to fit and owned by the array from then on, the owner's pointer and
    capacity set to NULL and 0 (copying a million records costs as much as a tenth of the commands
    that made them, and touches as many new pages again)."""
    cdef HandedBlock handed
    cdef void* p
    if count <= LOG_COPIED:
        out = np.empty(count, dtype=dtype)
        if count:
            memcpy(<void*><Py_ssize_t>out.ctypes.data, block[0], count * size)
        return out
    p = grow(block[0], count, size)
    handed = HandedBlock.__new__(HandedBlock)
    handed.data = block[0] if p == NULL else p
    handed.size = count * size
    block[0], capacity[0] = NULL, 0
    return np.frombuffer(handed, dtype=dtype)


cdef class NativeBook:
    """A price-time priority limit order book for one symbol, in C.

    Every command method returns the list of events it produced; see
    `engine.messages` for which events each command produces.
    """

    # ================================================================ life cycle

    def __cinit__(self):
        # each init leaves its pointer NULL or allocated, so __dealloc__ frees whatever it got
        cdef bint failed = order_pool_init(&self.orders) != 0
        failed |= ladder_init(&self.ladder) != 0
        failed |= stops_init(&self.stops) != 0
        failed |= expiry_init(&self.expiries) != 0
        failed |= auction_init(&self.auction) != 0
        failed |= live_init(&self.live) != 0
        failed |= accepted_init(&self.ids) != 0
        self.events = <Event*>block_new(INITIAL_EVENTS * sizeof(Event))
        self.fills = <Fill*>block_new(INITIAL_EVENTS * sizeof(Fill))
        self.touches = <Touch*>block_new(INITIAL_EVENTS * sizeof(Touch))
        if failed or self.events == NULL or self.fills == NULL or self.touches == NULL:
            raise MemoryError("cannot allocate an order book")
        self.touch_capacity, self.touch_count, self.command, self.tracking = INITIAL_EVENTS, 0, 0, False
        self.event_capacity, self.event_count = INITIAL_EVENTS, 0
        self.log, self.log_capacity, self.log_count = NULL, 0, 0
        self.fill_capacity, self.fill_count = INITIAL_EVENTS, 0
        self.trade_seq = self.day_orders = self.refreshes = self.guarded_stops = 0
        self.waiting_first = self.waiting_last = -1
        self.waiting_count = 0
        self.waiting_quantity[BUY] = self.waiting_quantity[SELL] = 0
        self.last_trade = self.logical_time = self.accepted = self.auction_time = 0
        self.trading = CONTINUOUS
        memset(self.ahead, 0xFF, sizeof(self.ahead))

    def __dealloc__(self):
        block_free(self.orders.slots)
        block_free(self.orders.infos)
        block_free(self.ladder.levels)
        block_free(self.ladder.near)
        block_free(self.stops.levels)
        block_free(self.expiries.slots)
        block_free(self.expiries.due)
        block_free(self.auction.asks)
        block_free(self.live.slots)
        block_free(self.ids.slots)
        block_free(self.events)
        block_free(self.log)
        block_free(self.fills)
        block_free(self.touches)

    # ================================================================ commands (Python API)

    def submit(self, order_id, side, order_type, time_in_force, price, quantity, *, stop_price=0,
               display_quantity=0, flags=0, owner=0, stp=0, expire_at=0):
        """Enter a new order (limit, market, stop or stop-limit); return its events."""
        cdef NewOrder n
        if read_new_order(&n, order_id, side, order_type, time_in_force, price, quantity, stop_price,
                          display_quantity, flags, owner, stp, expire_at):
            self._prepare(0, 1, False)
            return [OrderRejected(order_id, OUT_OF_RANGE, OUT_OF_RANGE.text)]
        self._prepare(self._taking(&n), new_slices(&n), n.owner != 0 and n.stp != NONE)
        self._submit(&n)
        return self._drain()

    def cancel(self, order_id):
        """Remove a resting order, a held stop or a waiting market order; return its events."""
        cdef int64_t o
        self._prepare(0, 1, False)
        if as_int64(order_id, &o):
            return [CancelRejected(order_id, OUT_OF_RANGE, OUT_OF_RANGE.text)]
        self._cancel(o)
        return self._drain()

    def replace(self, order_id, price, quantity):
        """Change a resting order's price and open quantity; return its events."""
        cdef int64_t o, p, q
        cdef bint guarded = False
        if read_replace(&o, &p, &q, order_id, price, quantity):
            self._prepare(0, 1, False)
            return [ReplaceRejected(order_id, OUT_OF_RANGE, OUT_OF_RANGE.text)]
        self._prepare(self._replace_taking(o, p, q), self._replace_slices(o, q, &guarded), guarded)
        self._replace(o, p, q)
        return self._drain()

    def expire_day_orders(self):
        """Expire every resting DAY order, then every held DAY stop-limit (the end-of-day
        command); return the events."""
        self._prepare(0, 1, False)
        self._expire_day_orders()
        return self._drain()

    def set_clock(self, time):
        """Set the logical time (never back); GTD orders due by then expire. Return the events."""
        cdef int64_t t
        self._prepare(0, 1, False)
        if as_int64(time, &t):
            return [CommandRejected(OUT_OF_RANGE, OUT_OF_RANGE.text)]
        self._set_clock(t)
        return self._drain()

    def set_phase(self, phase):
        """Change the trading phase; into CONTINUOUS from CALL or HALTED the book uncrosses.
        Return the events."""
        cdef int64_t p
        self._prepare(self.live.count, 1, False)
        if auction_reserve(&self.auction, ladder_levels(&self.ladder)) != 0:
            raise MemoryError("order book out of memory")
        if as_int64(phase, &p):
            return [CommandRejected(OUT_OF_RANGE, OUT_OF_RANGE.text)]
        self._set_phase(p)
        return self._drain()

    def apply(self, command):
        """Dispatch one command Struct to its method."""
        return dispatch(self, command)

    # ================================================================ commands (encoded API)

    cdef bytes execute_encoded(self, PyObject** command, Py_ssize_t fields, int kind, int64_t sequence,
                               int64_t time, bytes symbol, tuple quote, list market_data, int shift, Outcome* out):
        """Run one order command in CONTINUOUS and encode what the OBS makes of it in C, with no
        event object (the OBS's order path: `native.orderpath.OrderPath`, which
        `servers.shard.Shard.execute_encoded` goes through too).

        ``command`` is the ``fields`` fields (borrowed) of a `servers.protocol` BookSubmit (``kind``
        0), BookCancel (1) or BookReplace (2), in their order (`ENCODED_FIELDS` names the ones read,
        `ENCODED_TAGS` the commands), ``symbol`` its symbol's msgpack; ``out.md_sequence`` and ``quote`` are its
        feed's market-data sequence and last quote (`servers.marketdata.Feed`).
        Appends each market-data message the feed emits for it (a Trade per fill, a DepthUpdate
        per level changed, a Quote if the top of book changed; none for a rejected command) to
        ``market_data``, encoded, and returns the journal entry's msgpack (with ``out.framed``, an
        empty bytes: the entry is left at ``out.entry``, ``out.entry_size`` bytes, in the book's
        buffer until its next encoded command, for the caller to frame; no bytes are made of it);
        then `made_reply` is
        the Executed reply's, `made_concerned` the TES ids (order id >> ``shift``) the command
        concerns, in `Shard.execute`'s order, and `made_quote` the feed's new quote (``quote``
        itself if unchanged): no tuple is made per command. ``out`` gets the feed's new
        market-data sequence; 1 in ``accepted`` if a
        submit was accepted, 2 if as GTD (``expire_at`` its expiry), else 0; the fills' number
        and their lowest, highest and last price. Every byte equals what `Shard.execute` makes
        with msgspec (the differential tests hold it to that). Returns None, the book and
        ``out`` untouched, outside CONTINUOUS or for a field beyond int64 (or neither an int nor
        a str): `Shard.execute` runs the command then.
        """
        cdef NewOrder n
        cdef int64_t v[COMMAND_VALUES]
        cdef uint32_t ints
        cdef int64_t o = 0, p = 0, q = 0
        if self.trading != CONTINUOUS:
            return None
        _wire.size = 0
        if wire_command(&_wire, kind, command, fields, v, &ints):
            return None
        if kind == 0:
            if (ints & SUBMIT_INTS) == SUBMIT_INTS:
                read_submit(&n, v)
            elif read_new_order(&n, <object>command[1], <object>command[2], <object>command[3], <object>command[4],
                                <object>command[5], <object>command[6], <object>command[9], <object>command[10],
                                <object>command[11], <object>command[12], <object>command[13], <object>command[14]):
                return None
        elif kind == 1:
            if (ints & CANCEL_INTS) == CANCEL_INTS:
                o = v[1]
            elif as_int64(<object>command[1], &o):
                return None
        elif (ints & REPLACE_INTS) == REPLACE_INTS:
            o, p, q = v[1], v[2], v[3]
        elif read_replace(&o, &p, &q, <object>command[1], <object>command[2], <object>command[3]):
            return None
        return self._run_encoded(kind, &n, o, p, q, sequence, time, symbol, quote, market_data, shift, out)

    cdef bytes execute_values(self, int kind, const int64_t* values, Py_ssize_t fields, const char* account,
                              Py_ssize_t account_size, int64_t sequence, int64_t time, bytes symbol, tuple quote,
                              list market_data, int shift, Outcome* out):
        """`execute_encoded` for a command read in C (`native.commands.OrderCommand`): field ``i``
        of its ``fields`` is the int ``values[i]``, but for field 0, the symbol (``symbol`` is its
        msgpack), and a BookSubmit's field 7, its account (``account_size`` ASCII bytes at
        ``account``). The same bytes, outputs and None as `execute_encoded` for the Struct of
        those values."""
        cdef NewOrder n
        if self.trading != CONTINUOUS:
            return None
        _wire.size = 0
        wire_values(&_wire, kind, values, fields, symbol, account, account_size)
        if kind == 0:
            read_submit(&n, values)
        return self._run_encoded(kind, &n, values[1], values[2], values[3], sequence, time, symbol, quote,
                                 market_data, shift, out)

    cdef bytes _run_encoded(self, int kind, NewOrder* n, int64_t o, int64_t p, int64_t q, int64_t sequence,
                            int64_t time, bytes symbol, tuple quote, list market_data, int shift, Outcome* out):
        """The rest of `execute_encoded` once the command's msgpack is in the wire buffer and its
        values read: a BookSubmit's into ``n``, a BookCancel's order id ``o``, a BookReplace's
        ``o``, ``p`` and ``q``."""
        cdef int64_t count, i, fills = 0, low = 0, high = 0, last = 0, accepted = 0, expire_at = 0
        cdef int64_t md_count = 0, md_sequence = out.md_sequence
        cdef Py_ssize_t command_end = _wire.size, events_end, md_end, start, reply_start, entry_start
        cdef Py_ssize_t size = len(symbol)
        cdef bint guarded = False
        cdef const Event* e
        cdef object concerned
        if kind == 0:
            self._prepare(self._taking(n), new_slices(n), n.owner != 0 and n.stp != NONE)
            self._submit(n)
            o = n.order_id
        elif kind == 1:
            self._prepare(0, 1, False)
            self._cancel(o)
        else:
            self._prepare(self._replace_taking(o, p, q), self._replace_slices(o, q, &guarded), guarded)
            self._replace(o, p, q)
        count = self._events_made()
        self.event_count = 0
        if kind == 0 and self.events[0].kind == EV_ACCEPTED:
            accepted = 2 if self.events[0].tif == GTD else 1
            expire_at = self.events[0].sequence
        concerned = concerned_of(o, self.events, count, shift)
        wire_events(&_wire, self.events, count)
        events_end = _wire.size
        if not is_reject(self.events[0].kind):
            for i in range(count):
                e = &self.events[i]
                if e.kind != EV_FILLED:
                    continue
                last = e.price
                if fills == 0 or e.price < low:
                    low = e.price
                if fills == 0 or e.price > high:
                    high = e.price
                fills += 1
                md_sequence += 1
                start = _wire.size
                wire_room(&_wire, 7 * MAX_HEADER + 32 + size)
                wire_tagged(&_wire, b"Trade", 7)
                wire_bytes(&_wire, PyBytes_AS_STRING(symbol), size)
                wire_int(&_wire, md_sequence)
                wire_int(&_wire, e.sequence)
                wire_int(&_wire, e.price)
                wire_int(&_wire, e.quantity)
                wire_int(&_wire, e.side)
                wire_int(&_wire, time)
                market_data.append(PyBytes_FromStringAndSize(<char*>&_wire.data[start], _wire.size - start))
                md_count += 1
            quote = wire_levels(self, symbol, time, &md_sequence, &md_count, quote, market_data)
        md_end = _wire.size
        wire_room(&_wire, 2 * (md_end + size) + 16 * MAX_HEADER + 64)
        reply_start = _wire.size
        wire_tagged(&_wire, b"Executed", 4)
        wire_int(&_wire, sequence)
        wire_bytes(&_wire, PyBytes_AS_STRING(symbol), size)
        wire_bytes(&_wire, &_wire.data[command_end], events_end - command_end)
        wire_int(&_wire, time)
        entry_start = _wire.size
        wire_tagged(&_wire, b"JournalEntry", 5)
        wire_int(&_wire, sequence)
        wire_int(&_wire, time)
        wire_bytes(&_wire, _wire.data, command_end)
        wire_bytes(&_wire, &_wire.data[command_end], events_end - command_end)
        wire_array(&_wire, md_count)
        wire_bytes(&_wire, &_wire.data[events_end], md_end - events_end)
        out.md_sequence, out.accepted, out.expire_at = md_sequence, accepted, expire_at
        out.fills, out.low, out.high, out.last = fills, low, high, last
        self.made_reply = PyBytes_FromStringAndSize(<char*>&_wire.data[reply_start], entry_start - reply_start)
        self.made_concerned, self.made_quote = concerned, quote
        if out.framed:
            out.entry, out.entry_size = <char*>&_wire.data[entry_start], _wire.size - entry_start
            return FRAMED
        return PyBytes_FromStringAndSize(<char*>&_wire.data[entry_start], _wire.size - entry_start)

    # ================================================================ commands (record API)
    #
    # Each does exactly what its namesake above does, out-of-range arguments included, but
    # appends the command's events to the book's event log as C records (EVENT_DTYPE) instead
    # of returning Structs, and returns how many it appended. A rejected command appends one
    # record, its reject. `take_events` hands the log over.

    def record_submit(self, order_id, side, order_type, time_in_force, price, quantity, stop_price=0,
                      display_quantity=0, flags=0, owner=0, stp=0, expire_at=0):
        """`submit`, its events recorded; return their number."""
        cdef NewOrder n
        if read_new_order(&n, order_id, side, order_type, time_in_force, price, quantity, stop_price,
                          display_quantity, flags, owner, stp, expire_at):
            self._prepare(0, 1, False)
            self._reserve_log()
            self._reject(EV_REJECTED, n.order_id, VALUE_OUT_OF_RANGE)
            return self._record()
        self._prepare(self._taking(&n), new_slices(&n), n.owner != 0 and n.stp != NONE)
        self._reserve_log()
        self._submit(&n)
        return self._record()

    def record_cancel(self, order_id):
        """`cancel`, its events recorded; return their number."""
        cdef int64_t o
        self._prepare(0, 1, False)
        self._reserve_log()
        if as_int64(order_id, &o):
            self._reject(EV_CANCEL_REJECTED, 0, VALUE_OUT_OF_RANGE)
        else:
            self._cancel(o)
        return self._record()

    def record_replace(self, order_id, price, quantity):
        """`replace`, its events recorded; return their number."""
        cdef int64_t o, p, q
        cdef bint guarded = False
        if read_replace(&o, &p, &q, order_id, price, quantity):
            self._prepare(0, 1, False)
            self._reserve_log()
            self._reject(EV_REPLACE_REJECTED, 0 if as_int64(order_id, &o) else o, VALUE_OUT_OF_RANGE)
            return self._record()
        self._prepare(self._replace_taking(o, p, q), self._replace_slices(o, q, &guarded), guarded)
        self._reserve_log()
        self._replace(o, p, q)
        return self._record()

    def record_expire_day_orders(self):
        """`expire_day_orders`, its events recorded; return their number."""
        self._prepare(0, 1, False)
        self._reserve_log()
        self._expire_day_orders()
        return self._record()

    def record_set_clock(self, time):
        """`set_clock`, its events recorded; return their number."""
        cdef int64_t t
        self._prepare(0, 1, False)
        self._reserve_log()
        if as_int64(time, &t):
            self._reject(EV_COMMAND_REJECTED, 0, VALUE_OUT_OF_RANGE)
        else:
            self._set_clock(t)
        return self._record()

    def record_set_phase(self, phase):
        """`set_phase`, its events recorded; return their number."""
        cdef int64_t p
        self._prepare(self.live.count, 1, False)
        if auction_reserve(&self.auction, ladder_levels(&self.ladder)) != 0:
            raise MemoryError("order book out of memory")
        self._reserve_log()
        if as_int64(phase, &p):
            self._reject(EV_COMMAND_REJECTED, 0, VALUE_OUT_OF_RANGE)
        else:
            self._set_phase(p)
        return self._record()

    def take_events(self):
        """The event log, every record_* command's events since the last call in order, as an
        EVENT_DTYPE array (`engine.stream` tables the fields of each kind); the log is left empty.

        A log of up to LOG_COPIED records is copied out and its buffer kept for the next ones; a
        larger one is handed over as it is, shrunk to fit (copying a million records costs as much
        as a tenth of the commands that made them), and the book starts a new buffer."""
        out = records_out(<void**>&self.log, &self.log_capacity, self.log_count, sizeof(Event), EVENT_DTYPE)
        self.log_count = 0
        return out

    def replay(self, stream):
        """Process a whole stream (STREAM_DTYPE or STREAM_V2_DTYPE, told apart by the dtype) in one
        call, the loop in C without the GIL.

        Returns the fills as a FILL_DTYPE array with the accepted/rejected counts.
        """
        stream = check_stream(stream)
        cdef Py_ssize_t n = stream.shape[0]
        cdef const uint8_t[::1] raw
        cdef const uint8_t* records = NULL
        if n:
            raw = stream.view(np.uint8)
            records = &raw[0]
        cdef int64_t counts[2]
        cdef int64_t done
        cdef bint v1 = stream.dtype == STREAM_DTYPE
        self.tracking, self.touch_count, self.fill_count = False, 0, 0
        with nogil:
            if v1:
                done = self._replay_v1(<const StreamRecord*>records, n, counts)
            else:
                done = self._replay_v2(<const StreamRecordV2*>records, n, counts)
        self.event_count = 0
        if done < n:
            self.fill_count = 0
            raise MemoryError(f"out of memory after {done} of {n} messages")
        if self.fill_count > self.fill_capacity:
            raise SystemError(f"{self.fill_count} fills, more than the {self.fill_capacity} reserved: a bug in "
                              f"NativeBook._reserve")
        fills = records_out(<void**>&self.fills, &self.fill_capacity, self.fill_count, sizeof(Fill), FILL_DTYPE)
        self.fill_count = 0
        return ReplayResult(fills, counts[0], counts[1])

    # ================================================================ queries

    def __len__(self):
        """Orders in the book: resting, and waiting for the uncross (held stops are not)."""
        return self.live.count - self.stops.count

    @property
    def trade_sequence(self):
        """The sequence number of the last fill (0 before any)."""
        return self.trade_seq

    @property
    def phase(self):
        return PHASES[self.trading]

    @property
    def clock(self):
        """The logical time (`set_clock`)."""
        return self.logical_time

    @property
    def last_price(self):
        """The price of the last fill, None before any."""
        return self.last_trade if self.last_trade else None

    def indicative_uncross(self):
        """(price, volume) the book would uncross at if the call ended now (``auction.pxd``), or None
        when nothing would trade. Any phase: in CONTINUOUS the book never crosses, so None unless
        waiting market orders meet the other side (they wait only in CALL or HALTED)."""
        cdef Uncross found
        if auction_reserve(&self.auction, ladder_levels(&self.ladder)) != 0:
            raise MemoryError("order book out of memory")
        uncross_price(&self.auction, &self.ladder, self.waiting_quantity[BUY], self.waiting_quantity[SELL],
                      self.last_trade != 0, self.last_trade, &found)
        return (found.price, found.volume) if found.volume else None

    def best_bid(self):
        cdef int32_t best = self.ladder.levels[BUY].forward[0]
        return None if best == -1 else self.ladder.levels[best].price

    def best_ask(self):
        cdef int32_t best = self.ladder.levels[SELL].forward[0]
        return None if best == -1 else self.ladder.levels[best].price

    def depth(self, side, Py_ssize_t levels):
        """Up to ``levels`` price levels of ``side``, best first (icebergs count their visible slices)."""
        cdef int s = Side(side)
        cdef list out = []
        cdef int32_t lv = self.ladder.levels[s].forward[0]
        while lv != -1 and len(out) < levels:
            out.append(price_level(&self.ladder.levels[lv]))
            lv = self.ladder.levels[lv].forward[0]
        return out

    def level(self, int side, int64_t price):
        """The price level at ``price`` on ``side``, or None if no order rests there (O(log levels))."""
        if side != BUY and side != SELL:
            raise ValueError(f"{side!r} is not a valid Side")
        cdef int32_t lv = level_at(&self.ladder, side, price)
        if lv == -1:
            return None
        return price_level(&self.ladder.levels[lv])

    def level_changes(self):
        """The levels the last command changed, as it left them, in the order it first touched
        them (`engine.messages`); [] after a batch replay or a restore."""
        cdef list out = []
        cdef const Touch* t
        cdef const Level* level
        cdef int32_t lv
        cdef int64_t i, quantity
        cdef int32_t count
        for i in range(self.touch_count):
            t = &self.touches[i]
            lv = level_at(&self.ladder, t.side, t.price)
            if lv == -1:
                quantity, count = 0, 0
            else:
                level = &self.ladder.levels[lv]
                quantity, count = level.quantity, level.count
            if quantity != t.quantity or count != t.count:
                out.append(LevelChanged(SIDES[t.side], t.price, quantity, count))
        return out

    def top_of_book(self):
        cdef int32_t bid = self.ladder.levels[BUY].forward[0]
        cdef int32_t ask = self.ladder.levels[SELL].forward[0]
        return (
            None if bid == -1 else price_level(&self.ladder.levels[bid]),
            None if ask == -1 else price_level(&self.ladder.levels[ask]),
        )

    def order(self, int64_t order_id):
        """A resting order, a held stop or a waiting market order; None for any other id."""
        cdef int32_t o = live_get(&self.live, self.orders.slots, order_id)
        if o == -1:
            return None
        cdef Order* order = &self.orders.slots[o]
        cdef OrderInfo* info = &self.orders.infos[o]
        cdef int64_t price = self.ladder.levels[order.level].price if order.state == RESTING else info.price
        if not order.detail:
            return RestingOrder(order.order_id, SIDES[order.side], price, order.quantity, TIFS[order.tif])
        return RestingOrder(order.order_id, SIDES[order.side], price, order.quantity, TIFS[order.tif],
                            ORDER_TYPES[info.order_type], info.stop_price, info.display,
                            order.quantity - order.visible, info.flags, info.owner, STPS[info.stp], info.expire_at)

    def snapshot(self):
        """The book's logical state (see `engine.snapshot`), built in C: ``capture().finish()``."""
        return self.capture().finish()

    def capture(self):
        """What a snapshot needs, copied out of the book: the resting orders as ORDER_DTYPE
        records in priority order, the advanced records (details, held stops, waiting orders)
        and the accepted-id bitmap's words. Its `BookCapture.finish` builds the snapshot from
        the copy on any thread while the book trades on; the part that grows with the accepted
        ids (sorting the words) is left to it."""
        cdef BookCapture capture = BookCapture.__new__(BookCapture)
        capture.trade_seq = self.trade_seq
        capture.records = resting_records(self)
        capture.advanced = advanced_records(self)
        capture.words = <IdWord*>block_new(<size_t>max(self.ids.blocks, 1) * sizeof(IdWord))
        if capture.words == NULL:
            raise MemoryError("cannot allocate a snapshot of the accepted ids")
        with nogil:
            capture.word_count = accepted_words(&self.ids, capture.words)
        return capture

    @classmethod
    def restore(cls, snapshot):
        """Rebuild a book in exactly the state ``snapshot`` was taken from.

        The snapshot is validated first (`engine.snapshot.validate_snapshot`), so
        a damaged one raises ValueError instead of building a corrupt book.
        """
        validate_snapshot(snapshot)
        cdef NativeBook book = cls()
        book.trade_seq = snapshot.trade_sequence
        cdef bytes ranges = snapshot.accepted_ranges, words = snapshot.accepted_words
        cdef bytes lone = snapshot.accepted_lone
        restore_accepted(&book.ids, <const int64_t*><const char*>ranges, len(ranges) // 16,
                         <const IdWord*><const char*>words, len(words) // sizeof(IdWord),
                         <const int64_t*><const char*>lone, len(lone) // 8)
        restore_orders(book, snapshot)
        return book

    def state_hash(self):
        """The 64-bit hash of the logical state defined in `engine.snapshot`."""
        return state_hash_of(self)

    @property
    def stop_index_repairs(self):
        """How many times the held stops' index recomputed its ``earliest`` spans along a search
        path, O(log stop prices) each (stops.pxd): holding a stop at a new price, releasing or
        canceling a stop first at its price. Canceling any other held stop never does."""
        return self.stops.repairs

    def memory_bytes(self):
        """Bytes held by the book's pools, tables and buffers."""
        return (self.orders.capacity * (sizeof(Order) + sizeof(OrderInfo)) + self.ladder.capacity * sizeof(Level)
                + 2 * NEAR_SLOTS * sizeof(int32_t)
                + self.stops.capacity * sizeof(StopLevel) + self.expiries.capacity * (sizeof(int32_t) + sizeof(Keyed))
                + self.auction.capacity * sizeof(Volume)
                + (self.live.mask + 1) * sizeof(LiveSlot) + (self.ids.mask + 1) * sizeof(IdBlock)
                + (self.event_capacity + self.log_capacity) * sizeof(Event) + self.fill_capacity * sizeof(Fill))

    def check_invariants(self):
        """Walk every structure; raise AssertionError naming the first broken invariant (checks.pxd)."""
        check_book(self)

    # ================================================================ internals: capacity

    cdef int _prepare(self, int64_t taking, int64_t slices, bint guarded) except -1:
        """Ready the book for one command of the per-message API: buffers emptied and large
        enough (`_reserve`; a command touches at most every level plus one new one per order it
        can rest), touches noted."""
        cdef int64_t need
        cdef void* p
        self.event_count = 0
        self.touch_count = 0
        self.command += 1
        self.tracking = True
        if self._reserve(False, taking, slices, guarded) != 0:
            raise MemoryError("order book out of memory")
        need = self.ladder.capacity + self.stops.count + 2
        if self.touch_capacity < need:
            p = grow(self.touches, need, sizeof(Touch))
            if p == NULL:
                raise MemoryError("order book out of memory")
            self.touches, self.touch_capacity = <Touch*>p, need
        return 0

    cdef int _reserve(self, bint batch, int64_t taking, int64_t slices, bint guarded) noexcept nogil:
        """Make room for any one command: a new order, a new level for each order it can rest (itself
        and every held stop), a new stop price, a GTD entry, an id, and events (and, ``batch``,
        fills) for the most it can produce. ``taking``: the quantity the command's own order can
        trade (0 if none; a phase command: the live orders, the most pairs an uncross makes);
        ``slices``: how many slices that order could show if it rests (an iceberg's
        ceil(quantity / display), else 1); ``guarded``: it has an owner and a prevention mode.

        Fills: each either takes a whole visible slice or ends its taker, and trades a lot at
        least, so the command's own matching makes at most min(every live order's slices + 1,
        ``taking``), and the released stops at most their quantity, and at most the slices then
        in the book (the order's own among them) plus one each. Self-trade prevention makes at
        most two events per order it removes or taker it ends. (A pathological command, a huge
        taker against a huge iceberg in one-lot slices, can need more memory than there is: it
        is refused with MemoryError before it runs, the book untouched.)"""
        cdef int64_t held = self.stops.count
        if (order_pool_full(&self.orders) or live_full(&self.live) or accepted_full(&self.ids)
                or ladder_room(&self.ladder) <= held or stops_full(&self.stops) or expiry_full(&self.expiries)):
            if self._grow(held) != 0:
                return -1
        return self._reserve_buffers(batch, taking, slices, guarded)

    cdef inline int _reserve_buffers(self, bint batch, int64_t taking, int64_t slices, bint guarded) noexcept nogil:
        """`_reserve`'s events and fills, for a command whose structures have room."""
        cdef int64_t held = self.stops.count, fills, events, base
        base = self.live.count + self.refreshes + 1
        fills = min(base, taking)
        events = fills + self.waiting_count
        if held:
            fills += min(self.stops.quantity, base + slices + held) + held
            events = fills + self.waiting_count + 4 * held
        if guarded or self.guarded_stops:
            events += 2 * (self.live.count + held + 1)
        events = max(events, self.expiries.count, self.day_orders + held) + 8
        fills += self.fill_count
        if self.event_capacity < events or (batch and self.fill_capacity < fills):
            return self._grow_buffers(events, fills if batch else 0)
        return 0

    cdef int64_t _room_v1(self) noexcept nogil:
        """How many version-1 commands after the next one fit in the structures as `_reserve` just
        left them for it, with no structure check between: each takes at most one order slot, one
        live id, one block of accepted ids and one level, and adds no stop or GTD order. 0 while
        stops are held (a command can then rest them all). The free list's slots beyond the first
        are not counted."""
        if self.stops.count:
            return 0
        cdef int64_t room = self.orders.capacity - self.orders.top + (self.orders.free != -1)
        room = min(room, (self.live.mask + 1) // LIVE_SPREAD - self.live.count)
        room = min(room, (self.ids.mask + 1) // 2 - self.ids.blocks)
        return min(room, ladder_room(&self.ladder)) - 1

    cdef int _grow(self, int64_t held) noexcept nogil:
        """`_reserve`'s slow part: grow the structures short of room for one command."""
        if (order_pool_reserve(&self.orders) != 0 or live_reserve(&self.live) != 0
                or accepted_reserve(&self.ids) != 0 or ladder_reserve(&self.ladder, held + 1) != 0
                or stops_reserve(&self.stops) != 0 or expiry_reserve(&self.expiries) != 0):
            return -1
        return 0

    cdef int _grow_buffers(self, int64_t events, int64_t fills) noexcept nogil:
        """`_reserve`'s slow part: room for ``events`` events and ``fills`` fills (at least doubling)."""
        cdef void* p
        if self.event_capacity < events:
            events = max(events, 2 * self.event_capacity)
            p = grow(self.events, events, sizeof(Event))
            if p == NULL:
                return -1
            self.events, self.event_capacity = <Event*>p, events
        if self.fill_capacity < fills:
            fills = max(fills, 2 * self.fill_capacity)
            p = grow(self.fills, fills, sizeof(Fill))
            if p == NULL:
                return -1
            self.fills, self.fill_capacity = <Fill*>p, fills
        return 0

    cdef int64_t _replace_slices(self, int64_t order_id, int64_t quantity, bint* guarded) noexcept nogil:
        """`_reserve`'s ``slices`` and ``guarded`` for a replace of ``order_id`` to ``quantity``."""
        cdef int32_t o = live_get(&self.live, self.orders.slots, order_id)
        guarded[0] = False
        if o == -1 or not 0 < quantity <= MAX_QUANTITY:
            return 1
        if not self.orders.slots[o].detail:
            return 1
        guarded[0] = self.orders.infos[o].owner != 0 and self.orders.infos[o].stp != NONE
        return iceberg_slices(quantity, self.orders.infos[o].display)

    cdef int64_t _taking(self, const NewOrder* n) noexcept nogil:
        """`_reserve`'s ``taking`` for new order ``n`` (fields not yet validated): nothing for a limit
        order that cannot trade on arrival (outside continuous trading, or short of the best opposite
        price: reserving for its quantity beside an iceberg of many slices could ask for more memory
        than there is), else its quantity."""
        if (n.order_type == LIMIT and (n.side == BUY or n.side == SELL)
                and (self.trading != CONTINUOUS or not self._would_take(<int>n.side, n.price))):
            return 0
        return min(max(n.quantity, 0), MAX_QUANTITY)

    cdef int64_t _replace_taking(self, int64_t order_id, int64_t price, int64_t quantity) noexcept nogil:
        """`_reserve`'s ``taking`` for a replace of ``order_id`` to ``price`` and ``quantity`` (not yet
        validated): nothing when it cannot trade (refused, outside continuous trading, or re-entering
        short of the best opposite price, a reduction in place included), else the new quantity."""
        cdef int32_t o = live_get(&self.live, self.orders.slots, order_id)
        if (o == -1 or not 0 < quantity <= MAX_QUANTITY or self.trading != CONTINUOUS
                or self.orders.slots[o].state != RESTING or not self._would_take(self.orders.slots[o].side, price)):
            return 0
        return quantity

    # ================================================================ internals: the batch replay

    cdef int64_t _replay_v1(self, const StreamRecord* records, int64_t n, int64_t* counts) noexcept nogil:
        cdef int64_t i, accepted = 0, rejected = 0, room = 0, taking
        cdef const StreamRecord* r
        cdef NewOrder order
        memset(&order, 0, sizeof(NewOrder))
        for i in range(n):
            if self.live.mask >= LOOK_AHEAD_FROM and i + AHEAD_ID < n:
                self._look_ahead(i, records[i + AHEAD_ID].kind, records[i + AHEAD_ID].order_id,
                                 records[i + AHEAD_ID].target_id, records[i + AHEAD_ORDER].kind,
                                 records[i + AHEAD_ORDER].target_id)
            r = &records[i]
            taking = min(max(r.qty, 0), MAX_QUANTITY)
            if room:                 # the structures' room is counted down (`_room_v1`), the buffers checked
                room -= 1
                if self._reserve_buffers(True, taking, 1, False) != 0:
                    counts[0], counts[1] = accepted, rejected
                    return i
            elif self._reserve(True, taking, 1, False) != 0:
                counts[0], counts[1] = accepted, rejected
                return i
            else:
                room = self._room_v1()
            self.event_count = 0
            if r.kind == STREAM_CANCEL:
                self._cancel(r.target_id)
            elif r.kind == STREAM_REPLACE:
                self._replace(r.target_id, r.price, r.qty)
            elif (r.kind == STREAM_LIMIT_GTC or r.kind == STREAM_MARKET or r.kind == STREAM_LIMIT_IOC
                    or r.kind == STREAM_LIMIT_FOK):
                order.order_id, order.side, order.price, order.quantity = r.order_id, r.side, r.price, r.qty
                order.order_type = LIMIT + (MARKET - LIMIT) * (r.kind == STREAM_MARKET)   # no branch on the kind
                order.tif = (IOC + (GTC - IOC) * (r.kind == STREAM_LIMIT_GTC)
                             + (FOK - IOC) * (r.kind == STREAM_LIMIT_FOK))
                self._submit(&order)
            else:
                rejected += 1
                continue
            if is_reject(self.events[0].kind):
                rejected += 1
                continue
            accepted += 1
        counts[0], counts[1] = accepted, rejected
        return n

    cdef inline void _look_ahead(self, int64_t i, uint8_t id_kind, int64_t order_id, int64_t id_target,
                                 uint8_t order_kind, int64_t order_target) noexcept nogil:
        """The batch replay of a book too large for the cache, at message ``i``: start loading what
        later messages will read, in three steps, so that each finds it there. AHEAD_ID messages
        ahead (``id_kind``, ``order_id``, ``id_target``), the id-table slot it looks up (its target's
        for a cancel or a replace, else its own order's); AHEAD_ORDER ahead (``order_kind``,
        ``order_target``), the order a cancel or a replace targets (its slot noted in ``ahead``);
        AHEAD_LINKS ahead, that order's neighbours in its queue, and the free slot the next new
        order takes. Only the cache changes: a slot noted may have moved on by then, any slot
        loaded is a valid one."""
        live_prefetch(&self.live, id_target if id_kind == STREAM_CANCEL or id_kind == STREAM_REPLACE else order_id)
        cdef int32_t o = -1
        if order_kind == STREAM_CANCEL or order_kind == STREAM_REPLACE:
            o = live_peek(&self.live, order_target)
            if o != -1:
                prefetch(&self.orders.slots[o])
        self.ahead[(i + AHEAD_ORDER) & AHEAD_MASK] = o
        o = self.ahead[(i + AHEAD_LINKS) & AHEAD_MASK]
        if o != -1:
            if self.orders.slots[o].prev != -1:
                prefetch(&self.orders.slots[self.orders.slots[o].prev])
            if self.orders.slots[o].next != -1:
                prefetch(&self.orders.slots[self.orders.slots[o].next])
        if self.orders.free != -1:
            prefetch(&self.orders.slots[self.orders.free])

    cdef int64_t _replay_v2(self, const StreamRecordV2* records, int64_t n, int64_t* counts) noexcept nogil:
        """Each kind reads only its fields (the stream format's rule): a new order's others are 0."""
        cdef int64_t i, accepted = 0, rejected = 0, own, taking
        cdef bint guarded, priced, stopped
        cdef const StreamRecordV2* r
        cdef NewOrder order
        for i in range(n):
            if self.live.mask >= LOOK_AHEAD_FROM and i + AHEAD_ID < n:
                self._look_ahead(i, records[i + AHEAD_ID].kind, records[i + AHEAD_ID].order_id,
                                 records[i + AHEAD_ID].target_id, records[i + AHEAD_ORDER].kind,
                                 records[i + AHEAD_ORDER].target_id)
            r = &records[i]
            order.order_type = v2_order_type(r.kind)
            priced = order.order_type == LIMIT or order.order_type == STOP_LIMIT
            stopped = order.order_type == STOP or order.order_type == STOP_LIMIT
            order.order_id, order.side, order.quantity, order.display = r.order_id, r.side, r.qty, r.display_qty
            order.flags, order.owner, order.stp = r.flags, r.owner, r.stp
            order.tif = r.tif if r.tif < STREAM_TIF_V2_GTD else (GTD if r.tif == STREAM_TIF_V2_GTD else 255)
            order.price = r.price if priced else 0
            order.stop_price = r.stop_price if stopped else 0
            order.expire_at = r.expire_at if priced else 0
            guarded = r.owner != 0 and r.stp != NONE
            own = new_slices(&order)
            if r.kind == STREAM_REPLACE:
                own = self._replace_slices(r.target_id, r.qty, &guarded)
            if r.kind == STREAM_PHASE:
                taking = self.live.count
            elif order.order_type != -1:
                taking = self._taking(&order)
            elif r.kind == STREAM_REPLACE:
                taking = self._replace_taking(r.target_id, r.price, r.qty)
            else:
                taking = min(max(r.qty, 0), MAX_QUANTITY)
            if (self._reserve(True, taking, own, guarded) != 0
                    or (r.kind == STREAM_PHASE and auction_reserve(&self.auction, ladder_levels(&self.ladder)) != 0)):
                counts[0], counts[1] = accepted, rejected
                return i
            self.event_count = 0
            if order.order_type != -1:
                self._submit(&order)
            elif r.kind == STREAM_CANCEL:
                self._cancel(r.target_id)
            elif r.kind == STREAM_REPLACE:
                self._replace(r.target_id, r.price, r.qty)
            elif r.kind == STREAM_PHASE:
                self._set_phase(r.qty)
            elif r.kind == STREAM_CLOCK:
                self._set_clock(r.price)
            else:
                rejected += 1
                continue
            if is_reject(self.events[0].kind):
                rejected += 1
                continue
            accepted += 1
        counts[0], counts[1] = accepted, rejected
        return n

    # ================================================================ internals: commands

    cdef inline void _submit(self, NewOrder* n) noexcept nogil:
        """Validate and enter new order ``n`` (its ignored fields set to 0 in place, as kept)."""
        cdef int32_t code = self._check_submit(n)
        if code:
            self._reject(EV_REJECTED, n.order_id, code)
            return
        cdef bint market = n.order_type == MARKET or n.order_type == STOP
        if n.order_type == STOP:
            n.tif = GTC
        if market:
            n.price = 0
        if n.stop_price and n.order_type != STOP and n.order_type != STOP_LIMIT:
            n.stop_price = 0
        if n.expire_at and n.tif != GTD:
            n.expire_at = 0
        add_accepted(&self.ids, n.order_id)
        self.accepted += 1
        cdef Event* e = self._emit(EV_ACCEPTED)
        if self.tracking:   # the batch replay reads no more of it than its kind
            e.order_id, e.side, e.order_type, e.tif = n.order_id, <uint8_t>n.side, <uint8_t>n.order_type, <uint8_t>n.tif
            e.price, e.quantity, e.leaves, e.other_leaves = n.price, n.quantity, n.stop_price, n.display
            e.flags, e.other_id, e.stp, e.sequence = <uint8_t>n.flags, n.owner, <uint8_t>n.stp, n.expire_at
        cdef int32_t o
        cdef int64_t leaves
        if n.order_type == STOP or n.order_type == STOP_LIMIT:
            self._hold(self._new_order(n, n.quantity, self.accepted))
        elif self.trading == CALL:
            o = self._new_order(n, n.quantity, self.accepted)
            if market:
                self._wait(o)
            else:
                self._place(o, n.price)
        else:
            leaves = n.quantity
            if market or self._would_take(<int>n.side, n.price):   # most limit orders only rest
                leaves = self._match(n.order_id, <int>n.side, market, n.price, n.quantity, n.owner, <int>n.stp)
            if leaves:
                if not market and (n.tif == GTC or n.tif == DAY or n.tif == GTD):
                    self._place(self._new_order(n, leaves, self.accepted), n.price)
                else:
                    e = self._emit(EV_CANCELED)
                    e.order_id, e.quantity, e.code = n.order_id, leaves, UNFILLED
        if self.stops.count:
            self._trigger()

    cdef inline int32_t _check_submit(self, const NewOrder* n) noexcept nogil:
        """The reject code of the first rule new order ``n`` breaks (`engine.book`'s order), or 0.
        (Unsigned compares test 0 <= x <= top at once.)"""
        if <uint64_t>n.order_type > STOP_LIMIT:
            return UNKNOWN_ORDER_TYPE
        if <uint64_t>n.side > SELL:
            return UNKNOWN_SIDE
        if <uint64_t>n.tif > GTD and n.order_type != STOP:
            return UNKNOWN_TIME_IN_FORCE
        if <uint64_t>n.flags > POST_ONLY:
            return UNKNOWN_FLAGS
        if <uint64_t>n.stp > DECREMENT:
            return UNKNOWN_STP_MODE
        if n.quantity <= 0:
            return INVALID_QUANTITY
        if n.quantity > MAX_QUANTITY:
            return QUANTITY_TOO_LARGE
        if was_accepted(&self.ids, n.order_id):
            return DUPLICATE_ORDER_ID
        cdef bint priced = n.order_type == LIMIT or n.order_type == STOP_LIMIT
        cdef bint stopped = n.order_type == STOP or n.order_type == STOP_LIMIT
        if priced and n.price <= 0:
            return INVALID_PRICE
        if stopped and n.stop_price <= 0:
            return INVALID_STOP_PRICE
        if n.order_type == MARKET and n.tif != IOC and n.tif != FOK:
            return MARKET_ORDER_CANNOT_REST
        cdef bint at_once = n.order_type != STOP and (n.tif == IOC or n.tif == FOK)
        if n.display and (<uint64_t>n.display > <uint64_t>n.quantity or n.order_type != LIMIT or at_once):
            return INVALID_DISPLAY_QUANTITY
        if n.flags and (n.order_type != LIMIT or at_once):
            return POST_ONLY_NOT_ALLOWED
        if n.tif == GTD and priced and n.expire_at <= self.logical_time:
            return EXPIRE_TIME_PASSED
        if self.trading != CONTINUOUS:
            if self.trading == HALTED or stopped or (n.order_type == LIMIT and at_once):
                return NOT_ALLOWED_IN_PHASE
            return 0
        if n.flags and self._would_take(<int>n.side, n.price):
            return POST_ONLY_WOULD_TAKE
        if (n.tif == FOK and (n.order_type == LIMIT or n.order_type == MARKET)
                and not self._fillable(<int>n.side, n.order_type == MARKET, n.price, n.quantity, n.owner, <int>n.stp)):
            return FOK_NOT_FILLABLE
        return 0

    cdef void _cancel(self, int64_t order_id) noexcept nogil:
        cdef int32_t o = live_get(&self.live, self.orders.slots, order_id)
        if o == -1:
            self._reject(EV_CANCEL_REJECTED, order_id, UNKNOWN_ORDER)
            return
        cdef Event* e = self._emit(EV_CANCELED)
        e.order_id, e.quantity, e.code = order_id, self.orders.slots[o].quantity, REQUESTED
        if self.orders.slots[o].state == RESTING:
            self._unplace(o)
        elif self.orders.slots[o].state == HELD:
            self._unhold(o)
        else:
            self._unwait(o)
        self._drop(o)

    cdef void _replace(self, int64_t order_id, int64_t price, int64_t quantity) noexcept nogil:
        cdef int32_t code = 0, o = -1
        cdef bint in_place = False
        if quantity <= 0:
            code = INVALID_QUANTITY
        elif quantity > MAX_QUANTITY:
            code = QUANTITY_TOO_LARGE
        elif price <= 0:
            code = INVALID_PRICE
        else:
            o = live_get(&self.live, self.orders.slots, order_id)
            if o == -1:
                code = UNKNOWN_ORDER
            elif self.orders.slots[o].state != RESTING:
                code = NOT_REPLACEABLE
            else:
                in_place = (price == self.ladder.levels[self.orders.slots[o].level].price
                            and quantity <= self.orders.slots[o].quantity)
                if not in_place and self.trading == HALTED:
                    code = NOT_ALLOWED_IN_PHASE
                elif (not in_place and self.trading == CONTINUOUS and self.orders.slots[o].detail
                        and self.orders.infos[o].flags & POST_ONLY and self._would_take(self.orders.slots[o].side, price)):
                    code = POST_ONLY_WOULD_TAKE
        if code:
            self._reject(EV_REPLACE_REJECTED, order_id, code)
            return
        cdef Order* order = &self.orders.slots[o]
        cdef Event* e = self._emit(EV_REPLACED)
        e.order_id, e.price, e.quantity, e.code = order_id, price, quantity, in_place
        cdef Level* level
        if in_place:
            self._touch(order.side, order.level)
            level = &self.ladder.levels[order.level]
            self._resize(order, level, quantity, min(order.visible, quantity), self._display(o))
            return
        self._materialize(o)
        self._unplace(o)
        order.quantity = quantity
        self.orders.infos[o].price = price
        if self.trading == CALL:
            self._place(o, price)
        else:
            self._execute(o, False)
        if self.stops.count:
            self._trigger()

    cdef void _expire_day_orders(self) noexcept nogil:
        cdef int side
        cdef int32_t lv, next_lv, o, next_o
        cdef Event* e
        for side in range(2):
            lv = self.ladder.levels[side].forward[0]
            while lv != -1 and self.day_orders:
                next_lv = self.ladder.levels[lv].forward[0]
                o = self.ladder.levels[lv].head
                while o != -1:
                    next_o = self.orders.slots[o].next
                    if self.orders.slots[o].tif == DAY:
                        e = self._emit(EV_EXPIRED)
                        e.order_id, e.quantity = self.orders.slots[o].order_id, self.orders.slots[o].quantity
                        self._unplace(o)
                        self._drop(o)
                    o = next_o
                lv = next_lv
        o = self.stops.oldest
        while o != -1:
            next_o = self.orders.infos[o].newer
            if self.orders.slots[o].tif == DAY:
                e = self._emit(EV_EXPIRED)
                e.order_id, e.quantity = self.orders.slots[o].order_id, self.orders.slots[o].quantity
                self._unhold(o)
                self._drop(o)
            o = next_o

    cdef void _set_clock(self, int64_t time) noexcept nogil:
        cdef Event* e
        if time < self.logical_time:
            e = self._emit(EV_COMMAND_REJECTED)
            e.code = CLOCK_BACKWARDS
            return
        e = self._emit(EV_CLOCK)
        e.price = time
        self.logical_time = time
        cdef int64_t i, n = take_due(&self.expiries, self.orders.infos, time)
        cdef int32_t o
        for i in range(n):
            o = self.expiries.due[i].slot
            e = self._emit(EV_EXPIRED)
            e.order_id, e.quantity = self.orders.slots[o].order_id, self.orders.slots[o].quantity
            if self.orders.slots[o].state == RESTING:
                self._unplace(o)
            else:
                self._unhold(o)
            self._drop(o)

    cdef void _set_phase(self, int64_t phase) noexcept nogil:
        cdef Event* e
        if phase < CONTINUOUS or phase > HALTED:
            e = self._emit(EV_COMMAND_REJECTED)
            e.code = UNKNOWN_PHASE
            return
        e = self._emit(EV_PHASE)
        e.code, e.leaves = <int16_t>phase, self.trading
        cdef uint8_t previous = self.trading
        self.trading = <uint8_t>phase
        if previous == CONTINUOUS and phase != CONTINUOUS:
            self._number_times()
        elif previous != CONTINUOUS and phase == CONTINUOUS:
            self._uncross()
            if self.stops.count:
                self._trigger()

    # ================================================================ internals: matching

    cdef bint _would_take(self, int side, int64_t price) noexcept nogil:
        """Whether a ``side`` limit at ``price`` is at or through the best opposite price."""
        cdef int32_t best = self.ladder.levels[1 - side].forward[0]
        return best != -1 and within(side, price, self.ladder.levels[best].price)

    cdef bint _fillable(self, int side, bint market, int64_t limit, int64_t wanted, int64_t owner,
                        int stp) noexcept nogil:
        """Whether a taker would fill ``wanted`` completely, self-trade prevention applied, without
        changing anything. Icebergs refresh, so a level without an order of the owner gives all
        its open quantity. With CANCEL_MAKER the owner's orders would be canceled and the rest
        trades; with the other modes the taker stops at the first order of its owner at the front
        of a level, having taken the visible slices ahead of it (an iceberg refreshing goes behind it)."""
        cdef bint prevent = owner != 0 and stp != NONE
        cdef int64_t total = 0, ahead
        cdef int32_t o, lv = self.ladder.levels[1 - side].forward[0]
        cdef Level* level
        while lv != -1 and total < wanted:
            level = &self.ladder.levels[lv]
            if not market and not within(side, limit, level.price):
                break
            if not prevent:
                total += level.quantity + level.hidden
            elif stp == CANCEL_MAKER:
                o = level.head
                while o != -1 and total < wanted:
                    if not self._owned_by(o, owner):
                        total += self.orders.slots[o].quantity
                    o = self.orders.slots[o].next
            else:
                ahead = 0
                o = level.head
                while o != -1:
                    if self._owned_by(o, owner):
                        return total + ahead >= wanted
                    ahead += self.orders.slots[o].visible
                    if total + ahead >= wanted:
                        return True
                    o = self.orders.slots[o].next
                total += level.quantity + level.hidden
            lv = level.forward[0]
        return total >= wanted

    cdef int64_t _match(self, int64_t taker_id, int side, bint market, int64_t limit, int64_t quantity,
                        int64_t owner, int stp) noexcept nogil:
        """Trade ``quantity`` against the opposite side; return what is left to rest or cancel (0
        also when self-trade prevention canceled the taker or decremented it to nothing)."""
        cdef int opposite = 1 - side
        cdef bint prevent = owner != 0 and stp != NONE
        cdef int32_t lv, o, filled
        cdef Level* level
        cdef Order* maker
        cdef int64_t traded
        while quantity:
            lv = self.ladder.levels[opposite].forward[0]
            if lv == -1:
                break
            level = &self.ladder.levels[lv]
            if not market and not within(side, limit, level.price):
                break
            self._touch(opposite, lv)
            o = level.head
            while quantity and o != -1:
                if prevent and self._owned_by(o, owner):
                    quantity = self._prevent(taker_id, quantity, stp, o)
                    o = level.head
                    continue
                maker = &self.orders.slots[o]
                traded = min(quantity, maker.visible)
                maker.visible -= traded
                maker.quantity -= traded
                level.quantity -= traded
                quantity -= traded
                self.last_trade = level.price
                self._fill(maker.order_id, taker_id, level.price, traded, maker.quantity, quantity, side)
                if maker.visible:
                    continue
                if maker.quantity:
                    o = self._refresh(o, level)
                    continue
                level.count -= 1
                live_remove(&self.live, maker.order_id, o)
                if maker.tif == DAY:
                    self.day_orders -= 1
                elif maker.tif == GTD:
                    self._unexpire(o)
                filled, o = o, maker.next
                order_release(&self.orders, filled)
                level.head = o
                if o != -1:
                    self.orders.slots[o].prev = -1
            if level.head == -1:
                level.tail = -1
                remove_best_level(&self.ladder, opposite)
        return quantity

    cdef int64_t _prevent(self, int64_t taker_id, int64_t quantity, int stp, int32_t o) noexcept nogil:
        """Self-trade prevention between a taker with ``quantity`` left and maker ``o`` of its
        owner, first in its level (which stays, empty or not, for `_match` to remove); return the
        taker's quantity still to match (0: it is done)."""
        cdef Order* maker = &self.orders.slots[o]
        cdef Level* level = &self.ladder.levels[maker.level]
        cdef int64_t both
        cdef Event* e
        if stp == CANCEL_TAKER:
            e = self._emit(EV_CANCELED)
            e.order_id, e.quantity, e.code = taker_id, quantity, SELF_TRADE
            return 0
        if stp == DECREMENT:
            both = min(quantity, maker.quantity)
            e = self._emit(EV_DECREMENTED)
            e.order_id, e.quantity, e.leaves, e.other_id = maker.order_id, both, maker.quantity - both, taker_id
            e = self._emit(EV_DECREMENTED)
            e.order_id, e.quantity, e.leaves, e.other_id = taker_id, both, quantity - both, maker.order_id
            if both == maker.quantity:
                self._detach(o, level)
                self._drop(o)
            else:
                self._resize(maker, level, maker.quantity - both, min(maker.visible, maker.quantity - both),
                             self._display(o))
            return quantity - both
        e = self._emit(EV_CANCELED)
        e.order_id, e.quantity, e.code = maker.order_id, maker.quantity, SELF_TRADE
        self._detach(o, level)
        self._drop(o)
        if stp == CANCEL_BOTH:
            e = self._emit(EV_CANCELED)
            e.order_id, e.quantity, e.code = taker_id, quantity, SELF_TRADE
            return 0
        return quantity

    cdef int32_t _refresh(self, int32_t o, Level* level) noexcept nogil:
        """Iceberg ``o``, first in ``level``, traded its whole slice and has quantity left: show a new
        slice and move it to the back of the level. Return the level's first order."""
        cdef Order* order = &self.orders.slots[o]
        self._resize(order, level, order.quantity, min(self.orders.infos[o].display, order.quantity),
                     self.orders.infos[o].display)
        if order.next != -1:
            level.head = order.next
            self.orders.slots[order.next].prev = -1
            order.prev, order.next = level.tail, -1
            self.orders.slots[level.tail].next = o
            level.tail = o
        return level.head

    cdef void _execute(self, int32_t o, bint market) noexcept nogil:
        """Trade order ``o`` (a re-entry or a released stop, in no queue, its ``quantity`` to trade)
        as a taker, then rest its remainder (a GTC, DAY or GTD limit) or cancel it."""
        cdef Order* order = &self.orders.slots[o]
        cdef OrderInfo* info = &self.orders.infos[o]
        cdef int64_t leaves = self._match(order.order_id, order.side, market, info.price, order.quantity, info.owner,
                                          info.stp)
        cdef Event* e
        if not leaves:
            self._drop(o)
        elif not market and (order.tif == GTC or order.tif == DAY or order.tif == GTD):
            order = &self.orders.slots[o]
            order.quantity = leaves
            self._place(o, info.price)
        else:
            e = self._emit(EV_CANCELED)
            e.order_id, e.quantity, e.code = order.order_id, leaves, UNFILLED
            self._drop(o)

    cdef void _trigger(self) noexcept nogil:
        """The trigger loop: in CONTINUOUS, release the earliest-accepted stop qualifying at the last
        trade price and execute it, as long as one qualifies."""
        cdef int32_t o
        cdef Order* order
        cdef OrderInfo* info
        cdef Event* e
        while self.trading == CONTINUOUS and self.last_trade:
            o = next_triggered(&self.stops, self.last_trade)
            if o == -1:
                return
            self._unhold(o)
            order, info = &self.orders.slots[o], &self.orders.infos[o]
            e = self._emit(EV_TRIGGERED)
            e.order_id, e.price = order.order_id, self.last_trade
            if info.order_type == STOP:
                self._execute(o, True)
                continue
            info.order_type, info.stop_price = LIMIT, 0
            if order.tif == FOK and not self._fillable(order.side, False, info.price, order.quantity, info.owner,
                                                       info.stp):
                e = self._emit(EV_CANCELED)
                e.order_id, e.quantity, e.code = order.order_id, order.quantity, UNFILLED
                self._drop(o)
                continue
            self._execute(o, False)

    cdef void _uncross(self) noexcept nogil:
        """The call auction's uncross (auction.pxd for the price): pair buys and sells in priority
        order at the one price until one side has none left, the maker of each fill the one with
        the earlier auction time; icebergs trade their whole open quantity and keep their place,
        showing min(display, open) after. Then cancel what the waiting market orders have left, in
        arrival order."""
        cdef Uncross found
        uncross_price(&self.auction, &self.ladder, self.waiting_quantity[BUY], self.waiting_quantity[SELL],
                      self.last_trade != 0, self.last_trade, &found)
        cdef int32_t buy, sell, maker, taker, o, next_o
        cdef int64_t quantity, words = (self.orders.capacity + 63) >> 6
        cdef Event* e
        cdef uint64_t* marked = <uint64_t*>block_zeroed(<size_t>words * sizeof(uint64_t))
        if found.volume:
            e = self._emit(EV_UNCROSSED)
            e.price, e.quantity = found.price, found.volume
            buy, sell = self._auction_first(BUY, found.price), self._auction_first(SELL, found.price)
            while buy != -1 and sell != -1:
                self._prefetch_next(buy)
                self._prefetch_next(sell)
                if self.orders.slots[buy].state == RESTING:
                    self._touch(BUY, self.orders.slots[buy].level)
                if self.orders.slots[sell].state == RESTING:
                    self._touch(SELL, self.orders.slots[sell].level)
                quantity = min(self.orders.slots[buy].quantity, self.orders.slots[sell].quantity)
                self._auction_trade(buy, quantity)
                self._auction_trade(sell, quantity)
                if self.orders.infos[buy].time < self.orders.infos[sell].time:
                    maker, taker = buy, sell
                else:
                    maker, taker = sell, buy
                self._fill(self.orders.slots[maker].order_id, self.orders.slots[taker].order_id, found.price, quantity,
                           self.orders.slots[maker].quantity, self.orders.slots[taker].quantity,
                           self.orders.slots[taker].side)
                if not self.orders.slots[buy].quantity:
                    buy = self._auction_next(buy, found.price, marked)
                if not self.orders.slots[sell].quantity:
                    sell = self._auction_next(sell, found.price, marked)
            self.last_trade = found.price
        o = self.waiting_first
        while o != -1:
            next_o = self.orders.slots[o].next
            if self.orders.slots[o].quantity:
                e = self._emit(EV_CANCELED)
                e.order_id, e.quantity, e.code = self.orders.slots[o].order_id, self.orders.slots[o].quantity, UNFILLED
            self._drop_marked(o, marked)
            o = next_o
        if marked != NULL:
            self._forget(marked, words)
            block_free(marked)
        self.waiting_first = self.waiting_last = -1
        self.waiting_count = 0
        self.waiting_quantity[BUY] = self.waiting_quantity[SELL] = 0

    cdef inline void _prefetch_next(self, int32_t o) noexcept nogil:
        """Start loading what the uncross reads of the order after ``o`` in its queue (its slot, its
        display and auction time), while it trades ``o``: walking a queue of orders scattered over
        the pool otherwise waits on memory at each."""
        cdef int32_t n = self.orders.slots[o].next
        if n != -1:
            prefetch(&self.orders.slots[n])
            prefetch(&self.orders.infos[n].display)
            prefetch(&self.orders.infos[n].time)

    cdef void _auction_trade(self, int32_t o, int64_t quantity) noexcept nogil:
        """Take ``quantity`` off order ``o`` in the uncross: a waiting market order, or a resting one
        that keeps its place showing min(display, open)."""
        cdef Order* order = &self.orders.slots[o]
        cdef int64_t display
        if order.state == WAITING:
            order.quantity -= quantity
            self.waiting_quantity[order.side] -= quantity
            return
        display = self._display(o)
        self._resize(order, &self.ladder.levels[order.level], order.quantity - quantity,
                     min(display, order.quantity - quantity) if display else order.quantity - quantity, display)

    cdef int32_t _auction_first(self, int side, int64_t price) noexcept nogil:
        """The first ``side`` order taking part in the uncross at ``price``: the earliest waiting
        market order, else the first order of the best level if priced at or through ``price``."""
        cdef int32_t o = self.waiting_first
        while o != -1 and self.orders.slots[o].side != side:
            o = self.orders.slots[o].next
        if o != -1:
            return o
        cdef int32_t lv = self.ladder.levels[side].forward[0]
        if lv == -1 or not within(side, self.ladder.levels[lv].price, price):
            return -1
        return self.ladder.levels[lv].head

    cdef int32_t _auction_next(self, int32_t o, int64_t price, uint64_t* marked) noexcept nogil:
        """The order after ``o`` (fully traded) in the uncross's priority order; a resting ``o`` leaves
        the book (a waiting one stays in the auction, at 0, until the uncross ends), its id left to
        `_forget` (`_drop_marked`)."""
        cdef Order* order = &self.orders.slots[o]
        cdef int side = order.side
        cdef int32_t n, lv
        if order.state == WAITING:
            n = order.next
            while n != -1 and self.orders.slots[n].side != side:
                n = self.orders.slots[n].next
            if n != -1:
                return n
            lv = self.ladder.levels[side].forward[0]
        else:
            n = order.next
            lv = order.level
            self._detach(o, &self.ladder.levels[lv])
            self._drop_marked(o, marked)
            if n != -1:
                return n
            if self.ladder.levels[lv].count == 0:
                remove_best_level(&self.ladder, side)
            lv = self.ladder.levels[side].forward[0]
        if lv == -1 or not within(side, self.ladder.levels[lv].price, price):
            return -1
        return self.ladder.levels[lv].head

    cdef void _number_times(self) noexcept nogil:
        """Leaving CONTINUOUS: give the resting orders auction times 1..n in priority order."""
        cdef int side
        cdef int32_t lv, o
        self.auction_time = 0
        for side in range(2):
            lv = self.ladder.levels[side].forward[0]
            while lv != -1:
                o = self.ladder.levels[lv].head
                while o != -1:
                    self.auction_time += 1
                    self.orders.infos[o].time = self.auction_time
                    o = self.orders.slots[o].next
                lv = self.ladder.levels[lv].forward[0]

    # ================================================================ internals: orders

    cdef inline int32_t _new_order(self, const NewOrder* n, int64_t quantity, int64_t accepted) noexcept nogil:
        """A pool slot for new order ``n`` (accepted and normalized) with ``quantity`` open, about to
        rest, be held or wait, indexed by id; a GTD one enters the expiry heap. A plain order's
        `OrderInfo` is left unset (orders.pxd)."""
        cdef int32_t o = order_take(&self.orders)
        cdef Order* order = &self.orders.slots[o]
        cdef OrderInfo* info
        order.order_id, order.quantity, order.visible = n.order_id, <int32_t>quantity, <int32_t>quantity
        order.side, order.tif = <uint8_t>n.side, <uint8_t>n.tif
        order.detail = (n.display | n.flags | n.owner | n.stp) != 0 or n.order_type != LIMIT or n.tif == GTD
        if order.detail:
            info = &self.orders.infos[o]
            info.price, info.stop_price, info.display, info.owner = n.price, n.stop_price, n.display, n.owner
            info.expire_at, info.accepted, info.time, info.due = n.expire_at, accepted, 0, -1
            info.order_type, info.flags, info.stp = <uint8_t>n.order_type, <uint8_t>n.flags, <uint8_t>n.stp
        live_put(&self.live, n.order_id, o)
        if n.tif == GTD:
            self._expire_later(o)
        return o

    cdef void _materialize(self, int32_t o) noexcept nogil:
        """Write resting plain order ``o``'s `OrderInfo` as its defaults (orders.pxd), before it is
        read or changed field by field."""
        cdef Order* order = &self.orders.slots[o]
        if order.detail:
            return
        cdef OrderInfo* info = &self.orders.infos[o]
        info.price = self.ladder.levels[order.level].price
        info.stop_price = info.display = info.owner = info.expire_at = info.accepted = 0
        info.older = info.newer = info.due = -1
        info.order_type, info.flags, info.stp = LIMIT, 0, NONE
        order.detail = 1

    cdef inline int64_t _display(self, int32_t o) noexcept nogil:
        """Order ``o``'s display quantity (0 for a plain order)."""
        return self.orders.infos[o].display if self.orders.slots[o].detail else 0

    cdef inline bint _owned_by(self, int32_t o, int64_t owner) noexcept nogil:
        """Whether order ``o`` belongs to ``owner`` (not 0; a plain order has no owner)."""
        return self.orders.slots[o].detail and self.orders.infos[o].owner == owner

    cdef inline void _place(self, int32_t o, int64_t price) noexcept nogil:
        """Give order ``o`` (in no queue, ``quantity`` open) a place at the back of ``price``'s level
        with a fresh slice (and, in CALL and HALTED, the next auction time)."""
        cdef bint created
        cdef Order* order = &self.orders.slots[o]
        cdef int side = order.side
        cdef int32_t lv = place_level(&self.ladder, side, price, &created)
        if created:
            self._touch_new(side, lv)
        else:
            self._touch(side, lv)
        cdef Level* level = &self.ladder.levels[lv]
        cdef int64_t display = self._display(o)
        order.visible = min(display, order.quantity) if display else order.quantity
        order.state, order.level = RESTING, lv
        order_append(self.orders.slots, o, &level.head, &level.tail)
        level.count += 1
        level.quantity += order.visible
        if order.quantity != order.visible:
            level.hidden += order.quantity - order.visible
            self.refreshes += iceberg_slices(order.quantity - order.visible, display)
        if order.tif == DAY:
            self.day_orders += 1
        if self.trading != CONTINUOUS:
            self.auction_time += 1
            self.orders.infos[o].time = self.auction_time

    cdef void _resize(self, Order* order, Level* level, int64_t quantity, int64_t visible,
                      int64_t display) noexcept nogil:
        """Set a resting order's open quantity and visible slice in place, ``level``'s totals and the
        icebergs' refresh count with them (``display``: the order's)."""
        level.quantity += visible - order.visible
        level.hidden += (quantity - visible) - (order.quantity - order.visible)
        if display:
            self.refreshes += (iceberg_slices(quantity - visible, display)
                               - iceberg_slices(order.quantity - order.visible, display))
        order.quantity, order.visible = quantity, visible

    cdef inline void _detach(self, int32_t o, Level* level) noexcept nogil:
        """Take resting order ``o`` off ``level``'s FIFO and totals, leaving the level (even empty) and
        the order's slot and id."""
        cdef Order* order = &self.orders.slots[o]
        order_unlink(self.orders.slots, o, &level.head, &level.tail)
        level.count -= 1
        level.quantity -= order.visible
        if order.quantity != order.visible:
            level.hidden -= order.quantity - order.visible
            self.refreshes -= iceberg_slices(order.quantity - order.visible, self.orders.infos[o].display)
        if order.tif == DAY:
            self.day_orders -= 1

    cdef inline void _unplace(self, int32_t o) noexcept nogil:
        """Take resting order ``o`` off its level (gone if it was the last), keeping its slot and id."""
        cdef int32_t lv = self.orders.slots[o].level
        cdef int side = self.orders.slots[o].side
        self._touch(side, lv)
        self._detach(o, &self.ladder.levels[lv])
        if self.ladder.levels[lv].count == 0:
            remove_level(&self.ladder, side, lv)

    cdef void _expire_later(self, int32_t o) noexcept nogil:
        """Enter GTD order ``o`` in the expiry heap (out of line: the plain orders' path stays short)."""
        expiry_add(&self.expiries, self.orders.infos, o)

    cdef void _unexpire(self, int32_t o) noexcept nogil:
        """Take GTD order ``o`` out of the expiry heap (out of line, as `_expire_later`)."""
        expiry_remove(&self.expiries, self.orders.infos, o)

    cdef void _hold(self, int32_t o) noexcept nogil:
        hold_stop(&self.stops, &self.orders, o, self.orders.infos[o].stop_price)
        self.guarded_stops += self.orders.infos[o].owner != 0 and self.orders.infos[o].stp != NONE

    cdef void _unhold(self, int32_t o) noexcept nogil:
        unhold_stop(&self.stops, &self.orders, o)
        self.guarded_stops -= self.orders.infos[o].owner != 0 and self.orders.infos[o].stp != NONE

    cdef void _wait(self, int32_t o) noexcept nogil:
        """Queue market order ``o`` for the uncross, last in arrival order, with the next auction time."""
        cdef Order* order = &self.orders.slots[o]
        order.state, order.level = WAITING, -1
        order_append(self.orders.slots, o, &self.waiting_first, &self.waiting_last)
        self.waiting_count += 1
        self.waiting_quantity[order.side] += order.quantity
        self.auction_time += 1
        self.orders.infos[o].time = self.auction_time

    cdef void _unwait(self, int32_t o) noexcept nogil:
        cdef Order* order = &self.orders.slots[o]
        order_unlink(self.orders.slots, o, &self.waiting_first, &self.waiting_last)
        self.waiting_count -= 1
        self.waiting_quantity[order.side] -= order.quantity

    cdef inline void _drop(self, int32_t o) noexcept nogil:
        """Forget order ``o``, in no queue any more: its id leaves the index (and the expiry heap),
        its slot is freed."""
        live_remove(&self.live, self.orders.slots[o].order_id, o)
        self._free(o)

    cdef inline void _free(self, int32_t o) noexcept nogil:
        """`_drop` but for the id: ``o`` leaves the expiry heap, its slot is freed (its ``order_id``
        stays readable until the slot is taken again)."""
        if self.orders.slots[o].tif == GTD and self.orders.infos[o].due != -1:
            self._unexpire(o)
        order_release(&self.orders, o)

    cdef inline void _drop_marked(self, int32_t o, uint64_t* marked) noexcept nogil:
        """`_drop`, the id's removal left to `_forget` (``o``'s bit set in ``marked``, a bitmap over
        pool slots); done at once without a bitmap (NULL: none could be allocated). Until then the
        index still maps the id to the freed slot: nothing may look it up, nor take a slot."""
        if marked == NULL:
            self._drop(o)
            return
        marked[o >> 6] |= (<uint64_t>1) << (o & 63)
        self._free(o)

    cdef void _forget(self, const uint64_t* marked, int64_t words) noexcept nogil:
        """Remove from the index the ids of the slots `_drop_marked` set in ``marked`` (``words``
        words): in one pass over the table (`live_sweep`) when there are enough of them that it
        costs less, about one for each SWEEP_SLOTS slots, else one by one."""
        cdef int64_t w, count = 0
        cdef int32_t o
        cdef uint64_t bits
        for w in range(words):
            count += popcount(marked[w])
        if count * SWEEP_SLOTS >= self.live.mask + 1:
            live_sweep(&self.live, marked)
            return
        for w in range(words):
            bits = marked[w]
            while bits:
                o = 64 * w + trailing_zeros(bits)
                live_remove(&self.live, self.orders.slots[o].order_id, o)
                bits &= bits - 1

    cdef inline void _touch(self, int side, int32_t lv) noexcept nogil:
        """Note existing level ``lv``'s state before the command first changes it (see
        `level_changes`): once per level and command, by its stamp."""
        cdef Level* level = &self.ladder.levels[lv]
        if not self.tracking or level.touched == self.command:
            return
        level.touched = self.command
        cdef Touch* t = &self.touches[self.touch_count]
        self.touch_count += 1
        t.side, t.price, t.quantity, t.count = <uint8_t>side, level.price, level.quantity, level.count

    cdef void _touch_new(self, int side, int32_t lv) noexcept nogil:
        """Note level ``lv``, just inserted, as absent before the command, unless the command
        already noted its price on this side (a level emptied and filled again)."""
        if not self.tracking:
            return
        cdef Level* level = &self.ladder.levels[lv]
        level.touched = self.command
        cdef int64_t i
        for i in range(self.touch_count):
            if self.touches[i].side == side and self.touches[i].price == level.price:
                return
        cdef Touch* t = &self.touches[self.touch_count]
        self.touch_count += 1
        t.side, t.price, t.quantity, t.count = <uint8_t>side, level.price, 0, 0

    # ================================================================ internals: events

    cdef Event* _emit(self, uint8_t kind) noexcept nogil:
        """The next event of the command, of ``kind``; in the per-message API its other fields are 0
        (the record API hands them over as they are)."""
        cdef Event* e = &self.events[self.event_count]
        self.event_count += 1
        if self.tracking:
            memset(e, 0, sizeof(Event))
        e.kind = kind
        return e

    cdef inline void _fill(self, int64_t maker_id, int64_t taker_id, int64_t price, int64_t quantity,
                           int64_t maker_leaves, int64_t taker_leaves, int aggressor) noexcept nogil:
        """A trade: the book's next trade number, then an OrderFilled event (the per-message API)
        or a fill record of the batch (the batch replay reads only those)."""
        self.trade_seq += 1
        cdef Event* e
        cdef Fill* f
        if self.tracking:
            e = self._emit(EV_FILLED)
            e.order_id, e.other_id, e.price, e.quantity = maker_id, taker_id, price, quantity
            e.leaves, e.other_leaves, e.side, e.sequence = maker_leaves, taker_leaves, aggressor, self.trade_seq
        else:
            f = &self.fills[self.fill_count]
            f.maker_id, f.taker_id, f.price, f.qty = maker_id, taker_id, price, quantity
            self.fill_count += 1

    cdef void _reject(self, uint8_t kind, int64_t order_id, int16_t code) noexcept nogil:
        cdef Event* e = self._emit(kind)
        e.order_id, e.code = order_id, code

    cdef int64_t _events_made(self) except -1:
        """How many events the last command buffered; SystemError if more than `_reserve` made room for."""
        if self.event_count > self.event_capacity:
            raise SystemError(f"a command made {self.event_count} events, more than the "
                              f"{self.event_capacity} reserved for it: a bug in NativeBook._reserve")
        return self.event_count

    cdef list _drain(self):
        """The buffered events of the last command as event Structs (`events_of`), the buffer emptied."""
        cdef list out = events_of(self.events, self._events_made())
        self.event_count = 0
        return out

    cdef int _reserve_log(self) except -1:
        """Room in the event log for the most events the command `_prepare` readied can make (its
        event buffer's capacity), so a recorded command never fails half-way."""
        cdef int64_t need = self.log_count + self.event_capacity, capacity
        cdef void* p
        if need <= self.log_capacity:
            return 0
        capacity = max(need, 2 * self.log_capacity, INITIAL_EVENTS)
        p = grow(self.log, capacity, sizeof(Event))
        if p == NULL:
            raise MemoryError("order book out of memory (event log)")
        self.log, self.log_capacity = <Event*>p, capacity
        return 0

    cdef int64_t _record(self) except -1:
        """Append the buffered events of the last command to the event log (`_reserve_log` made
        room); return their number, the buffer emptied. More than LOG_COPIED events into an empty
        log (an uncross) trade places with it instead of being copied: the log becomes the event
        buffer, at least as large (`_reserve_log` sized it for the buffer's capacity), so the
        events are not written twice, nor fresh pages touched for them."""
        cdef int64_t count = self._events_made(), capacity
        cdef Event* log
        if self.log_count == 0 and count > LOG_COPIED:
            log, capacity = self.log, self.log_capacity
            self.log, self.log_capacity = self.events, self.event_capacity
            self.events, self.event_capacity = log, capacity
        else:
            memcpy(&self.log[self.log_count], self.events, count * sizeof(Event))
        self.log_count += count
        self.event_count = 0
        return count


cdef class HandedBlock:
    """A block of records `records_out` handed to NumPy without copying (an event log, a batch
    replay's fills): the array's base, freed when the last view of it goes."""

    def __dealloc__(self):
        block_free(self.data)

    def __getbuffer__(self, Py_buffer* view, int flags):
        PyBuffer_FillInfo(view, self, self.data, self.size, 0, flags)


cdef class BookCapture:
    """A book's state as `NativeBook.capture` copied it out; `finish` makes the snapshot."""

    def __dealloc__(self):
        block_free(self.words)

    def finish(self):
        """The `BookSnapshot` of the captured state. The accepted-id records come from the
        bitmap's words sorted by id, runs of full words joined into ranges; that work runs
        without the GIL, so a writer thread doing it does not hold up the loop."""
        cdef int64_t counts[3]
        with nogil:
            qsort(self.words, <size_t>self.word_count, sizeof(IdWord), compare_words)
            write_records(self.words, self.word_count, NULL, NULL, NULL, counts)
        cdef bytes ranges = PyBytes_FromStringAndSize(NULL, counts[0] * 16)
        cdef bytes words = PyBytes_FromStringAndSize(NULL, counts[1] * sizeof(IdWord))
        cdef bytes lone = PyBytes_FromStringAndSize(NULL, counts[2] * 8)
        cdef int64_t* range_out = <int64_t*>PyBytes_AS_STRING(ranges)
        cdef IdWord* word_out = <IdWord*>PyBytes_AS_STRING(words)
        cdef int64_t* lone_out = <int64_t*>PyBytes_AS_STRING(lone)
        with nogil:
            write_records(self.words, self.word_count, range_out, word_out, lone_out, counts)
        return BookSnapshot(self.trade_seq, self.records, ranges, words, lone, *self.advanced)

