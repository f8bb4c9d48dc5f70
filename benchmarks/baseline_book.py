"""A careful pure-Python price-time book for version-1 streams: the baseline of `bench book`.

The reference book (`engine.book.ReferenceBook`) is the executable specification: every
command builds event objects, validates every rule of version 2 and keeps what the servers
need (level changes, snapshots). This book is what a competent engineer writes in plain
Python when the goal is speed on one job, replaying a version-1 stream (`engine.stream`
STREAM_DTYPE): the same fills, accepted and rejected counts and final state as the
reference book's replay, nothing else. No NumPy per message, no event objects, one loop
with its state in local variables.

Layout
------
- A level is a list ``[live, queue]``: ``queue`` a deque of order records, oldest first,
  ``live`` how many of them are still open.
- An order record is a list ``[order_id, remaining, side, key]``. A cancel or a replace
  that leaves its place sets ``remaining`` to 0 and leaves the record in its queue (an
  O(1) cancel, however deep the queue); matching drops such records when they reach the
  front.
- A level's ``key`` is its price on the ask side and minus its price on the bid side, so
  on both sides the best level has the smallest key, a taker of ``side`` with limit key
  ``L`` (its price for a buy, minus its price for a sell; NO_LIMIT for a market order)
  trades with every level whose key is at most ``L``, and one code path serves both sides.
  Per side: a `sortedcontainers.SortedList` of the keys of the levels, a dict key -> level,
  and the best key (NO_LEVEL when the side is empty), kept current so a passive order
  never touches the sorted list unless it opens a level.
- One dict indexes every accepted id: to its record while the order rests, to None once
  it has traded away, been canceled or was never going to rest (IOC, FOK, market): the
  duplicate-id check and the cancel/replace look-up are one dict operation each.
- Fills are tuples appended to a list, made into one FILL_DTYPE array at the end of a replay.

Invariants (after every message)
--------------------------------
- A level exists if and only if ``live`` > 0, and ``live`` is the number of records in its
  queue with ``remaining`` > 0; each of those is the record the index holds for its id.
- The book is never crossed: best bid key + best ask key > 0 when both sides hold orders.
- Within a level, records are in time priority: a reduction in place (same price, quantity
  no larger) keeps the record, any other replace appends a new one at the back.

Rules (the README's "Matching rules" restricted to version 1, where every order is the
API's owner-less, flag-less, display-less kind and the book is always in continuous
trading): a new order is rejected, consuming no id, for a side other than 0 or 1, a
quantity outside 1..MAX_QUANTITY, an id already accepted, a limit price (GTC, IOC, FOK) not
positive, or a FOK whose whole quantity is not available within its limit; a cancel or a
replace of an id that is not resting is rejected, and so is a replace with a quantity
outside 1..MAX_QUANTITY or a price not positive. Stream integers are int64, so the
reference book's 64-bit range rule never applies; an unknown kind is rejected.
"""

from collections import deque

import numpy as np
from sortedcontainers import SortedList

from engine.snapshot import MASK, id_digest_term, state_hash
from engine.stream import (
    CANCEL,
    FILL_DTYPE,
    LIMIT_FOK,
    LIMIT_GTC,
    LIMIT_IOC,
    MARKET,
    REPLACE,
    ReplayResult,
    StreamError,
    check_stream,
    is_v2,
)
from engine.types import MAX_QUANTITY, TimeInForce

NO_LEVEL = 1 << 63
"""The best key of an empty side: above every level key (keys are within +-(2**63 - 1))."""

NO_LIMIT = (1 << 63) - 1
"""The limit key of a market order: every level key is at most this."""

GTC = int(TimeInForce.GTC)


class BaselineBook:
    """A price-time book for version-1 streams (see the module docstring); state is kept
    from one `replay` to the next, like the other books'."""

    __slots__ = ("_keys", "_levels", "_best", "_index", "_trades", "_last_price")

    def __init__(self) -> None:
        self._keys = (SortedList(), SortedList())
        """Per side (bids, asks): the keys of its levels."""
        self._levels = ({}, {})
        """Per side: key -> level ``[live, queue]``."""
        self._best = [NO_LEVEL, NO_LEVEL]
        """Per side: the smallest key of its levels, NO_LEVEL when it has none."""
        self._index = {}
        """Every accepted id -> its record while it rests, else None."""
        self._trades = 0
        self._last_price = 0

    def replay(self, stream: np.ndarray) -> ReplayResult:
        """Replay a STREAM_DTYPE array (StreamError for anything else, version 2 included)."""
        stream = check_stream(stream)
        if is_v2(stream):
            raise StreamError("the baseline book replays version-1 streams only")
        return self.replay_rows(stream.tolist())

    def replay_rows(self, rows) -> ReplayResult:
        """Replay ``rows``, tuples in STREAM_DTYPE field order (``stream.tolist()``)."""
        index, keys, levels, best = self._index, self._keys, self._levels, self._best
        fills = []
        take = self._take
        accepted = rejected = 0
        for kind, side, price, qty, order_id, target_id in rows:
            if kind == LIMIT_GTC:
                if side > 1 or qty <= 0 or qty > MAX_QUANTITY or price <= 0 or order_id in index:
                    rejected += 1
                    continue
                accepted += 1
            elif kind == CANCEL or kind == REPLACE:
                if kind == REPLACE and (qty <= 0 or qty > MAX_QUANTITY or price <= 0):
                    rejected += 1
                    continue
                record = index.get(target_id)
                if record is None:
                    rejected += 1
                    continue
                accepted += 1
                side, key = record[2], record[3]
                if kind == REPLACE and qty <= record[1] and price == (key if side else -key):
                    record[1] = qty   # reduced in place: the record keeps its place
                    continue
                # take the order out of its level; its record stays in the queue, at 0
                index[target_id] = None
                record[1] = 0
                level = levels[side][key]
                level[0] -= 1
                if not level[0]:
                    del levels[side][key]
                    side_keys = keys[side]
                    side_keys.remove(key)
                    if key == best[side]:
                        best[side] = side_keys[0] if side_keys else NO_LEVEL
                if kind == CANCEL:
                    continue
                order_id = target_id   # a replace re-enters as a GTC limit order, behind the orders at its price
            elif kind == MARKET:
                if side > 1 or qty <= 0 or qty > MAX_QUANTITY or order_id in index:
                    rejected += 1
                    continue
                accepted += 1
                index[order_id] = None
                if best[1 - side] != NO_LEVEL:
                    take(side, NO_LIMIT, qty, order_id, fills)
                continue
            elif kind == LIMIT_IOC or kind == LIMIT_FOK:
                if side > 1 or qty <= 0 or qty > MAX_QUANTITY or price <= 0 or order_id in index:
                    rejected += 1
                    continue
                limit = -price if side else price
                if kind == LIMIT_FOK and not self._fillable(side, limit, qty):
                    rejected += 1
                    continue
                accepted += 1
                index[order_id] = None
                if best[1 - side] <= limit:
                    take(side, limit, qty, order_id, fills)
                continue
            else:
                rejected += 1
                continue
            # a GTC limit order, new or re-entering: trade what crosses, rest the remainder
            if side:
                key, limit = price, -price
            else:
                key, limit = -price, price
            if best[1 - side] <= limit:
                qty = take(side, limit, qty, order_id, fills)
                if not qty:
                    index[order_id] = None
                    continue
            record = [order_id, qty, side, key]
            index[order_id] = record
            level = levels[side].get(key)
            if level is None:
                levels[side][key] = [1, deque((record,))]
                keys[side].add(key)
                if key < best[side]:
                    best[side] = key
            else:
                level[0] += 1
                level[1].append(record)
        if fills:
            self._trades += len(fills)
            self._last_price = fills[-1][2]
        return ReplayResult(np.array(fills, dtype=FILL_DTYPE), accepted, rejected)

    def state_hash(self) -> int:
        """The reference book's `state_hash` of the same state (resting orders in priority order,
        fills so far, accepted ids, last trade price); not on the replay's path."""
        orders = []
        for side in (0, 1):
            for key in self._keys[side]:
                price = key if side else -key
                orders.extend((side, price, order_id, remaining, GTC)
                              for order_id, remaining, _, _ in self._levels[side][key][1] if remaining)
        ids = self._index.keys()
        return state_hash(orders, self._trades, len(ids), sum(map(id_digest_term, ids)) & MASK,
                          last_price=self._last_price)

    # ------------------------------------------------------------------ matching

    def _take(self, side, limit, qty, taker_id, fills) -> int:
        """Trade ``qty`` of a ``side`` taker against the levels with keys up to ``limit``,
        best first, oldest first; append the fills; return the quantity left."""
        opposite = 1 - side
        keys, levels, best, index = self._keys[opposite], self._levels[opposite], self._best, self._index
        add_fill = fills.append
        key = best[opposite]
        while key <= limit:
            level = levels[key]
            queue = level[1]
            price = key if opposite else -key
            while qty:
                maker = queue[0]
                open_qty = maker[1]
                if open_qty > qty:
                    maker[1] = open_qty - qty
                    add_fill((maker[0], taker_id, price, qty))
                    return 0
                queue.popleft()
                if not open_qty:   # canceled or moved away: dropped on reaching the front
                    continue
                maker[1] = 0
                index[maker[0]] = None
                add_fill((maker[0], taker_id, price, open_qty))
                qty -= open_qty
                level[0] -= 1
                if not level[0]:
                    break
            else:
                return 0
            del levels[key]
            keys.pop(0)
            key = best[opposite] = keys[0] if keys else NO_LEVEL
            if not qty:
                return 0
        return qty

    def _fillable(self, side, limit, qty) -> bool:
        """Whether the levels with keys up to ``limit`` hold ``qty`` open lots (a FOK's check)."""
        levels = self._levels[1 - side]
        for key in self._keys[1 - side]:
            if key > limit:
                return False
            for record in levels[key][1]:
                qty -= record[1]
            if qty <= 0:
                return True
        return False
