# The call auction's uncross price, found in one pass over the price levels of both sides.
#
# The rules (the README's "Matching rules" has them for users)
# ------------------------------------------------------------
# - Candidates: the prices of the price levels of both sides (limit orders in the book).
# - For a price p: buy(p) = waiting buy market orders + buy limits priced >= p, sell(p) = waiting
#   sell market orders + sell limits priced <= p, in open quantity (icebergs whole: a level's
#   ``quantity`` + ``hidden``); volume V(p) = min(buy(p), sell(p)), surplus S(p) = buy(p) - sell(p).
# - The price: the largest V(p) > 0; among ties the smallest |S(p)|; among those the highest if
#   every one has S > 0, the lowest if every one has S < 0, else the closest to the last trade
#   price if there is one; then (no last price, or two equally close) the lowest.
#
# Method: the asks' cumulative volumes from the bottom go into ``asks`` (one walk up the ask
# ladder), then the candidates are merged from the top, bids walked down their ladder adding to
# buy(p) as they pass and sell(p) read from ``asks``: O(levels) in all, never a price against
# every order. Volumes cannot overflow: at most 2**31 orders of at most 10**9 lots each.
#
# Invariants: ``capacity`` bounds ``asks``; `auction_reserve`, run before a phase command with the
# number of levels, is the only allocation.
#
# Everything here is `cdef inline`: cimported by book.pyx, compiled into its C file and inlined
# there (Cython calls a cdef function of another extension module through a pointer table).

from libc.stdint cimport int32_t, int64_t

from native.blocks cimport block_new, block_resize
from native.constants cimport BUY, SELL
from native.ladder cimport Ladder, Level

cdef enum:
    INITIAL_AUCTION_LEVELS = 64


ctypedef struct Volume:
    int64_t price
    int64_t cumulative       # sell limits' open quantity at prices <= price


ctypedef struct Auction:
    Volume* asks             # scratch for `uncross_price`
    int64_t capacity


ctypedef struct Uncross:
    int64_t price
    int64_t volume           # V(price); 0: nothing can trade (price undefined)


cdef inline int auction_init(Auction* auction) noexcept nogil:
    auction.asks = <Volume*>block_new(INITIAL_AUCTION_LEVELS * sizeof(Volume))
    auction.capacity = INITIAL_AUCTION_LEVELS
    return -1 if auction.asks == NULL else 0


cdef inline int auction_reserve(Auction* auction, int64_t levels) noexcept nogil:
    """Make room for ``levels`` ask levels; -1 if out of memory."""
    cdef void* p
    cdef int64_t capacity = auction.capacity
    while capacity < levels:
        capacity *= 2
    if capacity == auction.capacity:
        return 0
    p = block_resize(auction.asks, <size_t>capacity * sizeof(Volume))
    if p == NULL:
        return -1
    auction.asks, auction.capacity = <Volume*>p, capacity
    return 0


cdef inline int64_t distance(int64_t a, int64_t b) noexcept nogil:
    """|a - b| of two positive prices (cannot overflow)."""
    return a - b if a >= b else b - a


cdef inline void uncross_price(Auction* auction, Ladder* ladder, int64_t buy_market, int64_t sell_market,
                               bint has_last, int64_t last, Uncross* out) noexcept nogil:
    """The uncross price and its volume (see the rules above) into ``out``; room for every ask level."""
    cdef Level* levels = ladder.levels
    cdef Volume* asks = auction.asks
    cdef int64_t n = 0, cumulative = 0
    cdef int32_t lv = levels[SELL].forward[0]
    while lv != -1:
        cumulative += levels[lv].quantity + levels[lv].hidden
        asks[n].price, asks[n].cumulative = levels[lv].price, cumulative
        n += 1
        lv = levels[lv].forward[0]
    cdef int64_t j = n - 1, p, buy = buy_market, sell, volume, surplus, size
    cdef int64_t best_volume = 0, best_size = 0, highest = 0, lowest = 0, closest = 0
    cdef bint positive = False, negative = False
    lv = levels[BUY].forward[0]
    while lv != -1 or j >= 0:
        if lv != -1 and (j < 0 or levels[lv].price >= asks[j].price):
            p = levels[lv].price
        else:
            p = asks[j].price
        while lv != -1 and levels[lv].price >= p:
            buy += levels[lv].quantity + levels[lv].hidden
            lv = levels[lv].forward[0]
        sell = sell_market + (asks[j].cumulative if j >= 0 else 0)
        if j >= 0 and asks[j].price == p:
            j -= 1
        volume = min(buy, sell)
        if volume == 0:
            continue
        surplus = buy - sell
        size = surplus if surplus >= 0 else -surplus
        if volume > best_volume or (volume == best_volume and size < best_size):
            best_volume, best_size, highest, lowest, closest = volume, size, p, p, p
            positive, negative = surplus > 0, surplus < 0
        elif volume == best_volume and size == best_size:
            lowest = p                    # candidates come from the top down
            positive |= surplus > 0
            negative |= surplus < 0
            if has_last and distance(p, last) <= distance(closest, last):
                closest = p
    out.volume = best_volume
    if best_size > 0 and not negative:
        out.price = highest
    elif best_size > 0 and not positive:
        out.price = lowest
    elif has_last:
        out.price = closest
    else:
        out.price = lowest
