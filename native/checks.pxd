# The native book's invariant checks: `NativeBook.check_invariants` walks every structure with these.
#
# They restate the invariants of each header (orders.pxd, ladder.pxd, stops.pxd, expiry.pxd, ids.pxd)
# and of book.pyx, from scratch: the level totals and FIFO links, the icebergs' slices and refresh
# count, the held stops' index (each ``earliest`` span recomputed by brute force: O(stop prices x
# heights)), the acceptance and waiting lists, the expiry heap, the accepted-id counts, and, in the
# CONTINUOUS phase, an uncrossed book with no waiting order and no qualifying stop. Tests run them
# after every scenario; nothing on a command's path calls them.
#
# Everything here is `cdef inline`: cimported by book.pyx, compiled into its C file.

from libc.stdint cimport int32_t, int64_t, uint64_t

from native.book cimport NativeBook
from native.constants cimport BUY, DAY, GTD, LIMIT, MARKET, NONE, SELL, CONTINUOUS
from native.ids cimport LIVE_SPREAD, live_get, popcount, was_accepted
from native.ladder cimport MAX_HEIGHT, NEAR_MASK, NEAR_SLOTS, Level, side_key
from native.orders cimport HELD, RESTING, WAITING, Order, OrderInfo, iceberg_slices
from native.stops cimport StopLevel, next_triggered, stop_key


cdef inline int require(bint condition, str message) except -1:
    if not condition:
        raise AssertionError(message)
    return 0


cdef inline int64_t check_stops(NativeBook book) except -1:
    """Check ``book``'s held stops (stops.pxd invariants); return how many of them are GTD."""
    cdef StopLevel* levels = book.stops.levels
    cdef int side, h
    cdef int32_t n, o, prev, best, y
    cdef int64_t held = 0, quantity = 0, guarded = 0, gtd = 0, last_key, count
    cdef Order* order
    cdef OrderInfo* info
    for side in range(2):
        for h in range(book.stops.height[side]):
            n = side
            while n != -1:
                require(h < levels[n].height, "stop price linked above its height")
                best, y = -1, levels[n].forward[0]
                while y != -1:   # the earliest node after n up to forward[h], by brute force
                    if best == -1 or levels[y].accepted < levels[best].accepted:
                        best = y
                    if y == levels[n].forward[h]:
                        break
                    y = levels[y].forward[0]
                require(levels[n].earliest[h] == best, f"stop index span wrong at height {h}")
                n = levels[n].forward[h]
        n = levels[side].forward[0]
        last_key = 0
        while n != -1:
            require(n == levels[side].forward[0] or levels[n].key > last_key, "stop prices out of order")
            last_key = levels[n].key
            require(levels[n].key == stop_key(side, levels[n].price) and levels[n].count > 0,
                    f"stop price {levels[n].price} misfiled")
            require(levels[n].accepted == book.orders.infos[levels[n].head].accepted,
                    f"stop price {levels[n].price}: its acceptance number is not its first stop's")
            prev, o = -1, levels[n].head
            while o != -1:
                order, info = &book.orders.slots[o], &book.orders.infos[o]
                require(order.state == HELD and order.level == n and order.side == side and order.prev == prev
                        and info.stop_price == levels[n].price and order.quantity > 0,
                        f"held stop {order.order_id} misfiled")
                require(prev == -1 or book.orders.infos[prev].accepted < info.accepted,
                        f"held stops at {levels[n].price} out of acceptance order")
                require(live_get(&book.live, book.orders.slots, order.order_id) == o,
                        f"held stop {order.order_id} not indexed")
                held += 1
                quantity += order.quantity
                guarded += info.owner != 0 and info.stp != NONE
                gtd += order.tif == GTD
                prev = o
                o = order.next
            require(levels[n].tail == prev, f"stop price {levels[n].price}: tail is not its last stop")
            n = levels[n].forward[0]
    require(held == book.stops.count and quantity == book.stops.quantity, "held stop totals out of date")
    require(guarded == book.guarded_stops, "guarded stop count out of date")
    prev, o, count = -1, book.stops.oldest, 0
    while o != -1:
        require(book.orders.infos[o].older == prev, "held stops' acceptance list broken")
        require(prev == -1 or book.orders.infos[prev].accepted < book.orders.infos[o].accepted,
                "held stops' acceptance list out of order")
        prev, o = o, book.orders.infos[o].newer
        count += 1
    require(prev == book.stops.newest and count == held, "held stops' acceptance list incomplete")
    return gtd


cdef inline int check_near(NativeBook book, int side) except -1:
    """Check that every ``near`` entry of ``side`` is empty or names a level of ``side`` whose price
    maps to it (ladder.pxd invariants)."""
    cdef set linked = set()
    cdef int32_t lv = book.ladder.levels[side].forward[0], i
    while lv != -1:
        linked.add(lv)
        lv = book.ladder.levels[lv].forward[0]
    for i in range(NEAR_SLOTS):
        lv = book.ladder.near[side * NEAR_SLOTS + i]
        require(lv == -1 or (lv in linked and (<uint64_t>book.ladder.levels[lv].price & NEAR_MASK) == i),
                f"near-touch entry {i} of side {side} names level {lv}, not a level of its price")
    return 0


cdef inline int check_book(NativeBook book) except -1:
    """Walk every structure of ``book``; raise AssertionError naming the first broken invariant."""
    cdef int side, h
    cdef int32_t lv, nxt, o, prev, n
    cdef int64_t total, hidden, count, price, resting = 0, day = 0, refreshes = 0, gtd = 0
    cdef Order* order
    cdef OrderInfo* info
    cdef Level* levels = book.ladder.levels
    require(book.orders.top <= book.orders.capacity and book.ladder.top <= book.ladder.capacity,
            "order or level slots used beyond the pool")
    require(LIVE_SPREAD * book.live.count <= book.live.mask + 1, "the resting ids' table too full")
    require(book.live.mask + 1 == (<int64_t>1) << (32 - book.live.shift),
            "the resting ids' table's shift is not its size's")
    require(2 * book.ids.blocks <= book.ids.mask + 1, "the accepted ids' table more than half full")
    for side in range(2):
        for h in range(MAX_HEIGHT):
            lv = levels[side].forward[h]
            while lv != -1:
                nxt = levels[lv].forward[h]
                require(nxt == -1 or levels[lv].key < levels[nxt].key,
                        f"skip list out of order at height {h} on side {side}")
                require(h < levels[lv].height, f"level {levels[lv].price} linked above its height")
                lv = nxt
        check_near(book, side)
        lv = levels[side].forward[0]
        while lv != -1:
            price = levels[lv].price
            require(levels[lv].key == side_key(side, price), f"level {price} has a wrong key")
            require(levels[lv].count > 0, f"empty level {price} on side {side}")
            total = hidden = count = 0
            prev = -1
            o = levels[lv].head
            while o != -1:
                order, info = &book.orders.slots[o], &book.orders.infos[o]
                require(order.prev == prev, f"broken FIFO links at order {order.order_id}")
                require(order.state == RESTING and order.level == lv and order.side == side,
                        f"order {order.order_id} misfiled")
                require(0 < order.visible <= order.quantity,
                        f"order {order.order_id} shows {order.visible} of {order.quantity}")
                require(order.visible == order.quantity or (order.detail and order.visible <= info.display),
                        f"order {order.order_id} hides quantity without being an iceberg")
                require(not order.detail or (info.price == price and info.order_type == LIMIT),
                        f"order {order.order_id} misfiled")
                require(order.detail or order.tif != GTD, f"GTD order {order.order_id} has no details")
                require(live_get(&book.live, book.orders.slots, order.order_id) == o,
                        f"order {order.order_id} not indexed")
                require(was_accepted(&book.ids, order.order_id), f"order {order.order_id} never accepted")
                total += order.visible
                hidden += order.quantity - order.visible
                if order.quantity > order.visible:
                    refreshes += iceberg_slices(order.quantity - order.visible, info.display)
                count += 1
                day += order.tif == DAY
                gtd += order.tif == GTD
                prev = o
                o = order.next
            require(levels[lv].tail == prev, f"level {price} tail is not its last order")
            require(total == levels[lv].quantity, f"level {price} quantity is not the sum of its orders' slices")
            require(hidden == levels[lv].hidden, f"level {price} hidden quantity is wrong")
            require(count == levels[lv].count, f"level {price} count is wrong")
            resting += count
            lv = levels[lv].forward[0]
    require(day == book.day_orders, "DAY order count out of date")
    require(refreshes == book.refreshes, "icebergs' refresh count out of date")
    gtd += check_stops(book)
    cdef int64_t waiting = 0, last_time = 0
    cdef int64_t waiting_quantity[2]
    waiting_quantity[0] = waiting_quantity[1] = 0
    prev = -1
    o = book.waiting_first
    while o != -1:
        order, info = &book.orders.slots[o], &book.orders.infos[o]
        require(order.state == WAITING and order.prev == prev and order.quantity > 0 and info.order_type == MARKET,
                f"waiting order {order.order_id} misfiled")
        require(live_get(&book.live, book.orders.slots, order.order_id) == o, f"order {order.order_id} not indexed")
        require(info.time > last_time, "waiting orders out of arrival order")
        last_time = info.time
        waiting_quantity[order.side] += order.quantity
        waiting += 1
        prev = o
        o = order.next
    require(book.waiting_last == prev, "waiting list's last is wrong")
    require(waiting_quantity[BUY] == book.waiting_quantity[BUY]
            and waiting_quantity[SELL] == book.waiting_quantity[SELL], "waiting quantities out of date")
    require(resting + waiting + book.stops.count == book.live.count, "index holds orders that are nowhere")
    require(gtd == book.expiries.count, "the expiry heap does not hold exactly the GTD orders")
    cdef int64_t i
    for i in range(book.expiries.count):
        o = book.expiries.slots[i]
        require(book.orders.infos[o].due == i and book.orders.slots[o].tif == GTD, "expiry heap misfiled")
        n = <int32_t>((i - 1) >> 1)
        require(i == 0 or not (book.orders.infos[o].expire_at, book.orders.infos[o].accepted)
                < (book.orders.infos[book.expiries.slots[n]].expire_at,
                   book.orders.infos[book.expiries.slots[n]].accepted), "expiry heap out of order")
    if book.trading == CONTINUOUS:
        bid, ask = book.best_bid(), book.best_ask()
        require(bid is None or ask is None or bid < ask, f"crossed book: {bid} >= {ask}")
        require(waiting == 0, "market orders wait in the continuous phase")
        require(not book.last_trade or next_triggered(&book.stops, book.last_trade) == -1,
                "a held stop qualifies after a command")
    cdef int64_t blocks = 0
    count = 0
    for i in range(book.ids.mask + 1):
        blocks += book.ids.slots[i].bits != 0
        count += popcount(book.ids.slots[i].bits)
    require(blocks == book.ids.blocks, "accepted-id block count out of date")
    require(count == book.ids.count, "accepted-id count out of date")
    return 0
