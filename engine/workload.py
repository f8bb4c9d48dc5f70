"""Synthetic order streams (STREAM_DTYPE) for the replay command and the benchmarks.

Two profiles here, both single-symbol (the third, `advanced`, writes version-2 streams:
`engine.advanced_workload`):

- `standard`: the standard workload of the stream format. A fair value wanders
  around CENTRE as a mean-reverting random walk; about 60% of the messages are
  limit GTC orders (about a fifth of them priced through the opposite best, so
  they trade on arrival), 5% market orders and the rest cancels of live orders.
  The cancel share is steered so the book holds a few thousand resting orders
  over one to two hundred price levels.
- `deep`: a few price levels with a very deep queue on each (300,000 resting
  orders on 5 levels a side by default): a preload of resting orders, then adds
  at those levels, cancels of random live orders (mostly deep inside a queue)
  and small market orders that trade at the front.

Both are deterministic: the same arguments give a byte-identical array, whichever
book implementation simulates the book (every book must produce the reference
book's events). By default it is the native book if the extension is built, the
reference book otherwise (`fastest_book`): `engine` never needs `native`. Random
numbers come from ``numpy.random.Generator(PCG64(seed))`` (``random`` and
``integers`` only), drawn in batches of CHUNK messages; only correctly rounded
IEEE arithmetic turns them into prices (no transcendental functions, no pairwise
sums), so the output does not depend on the platform's maths library.

Both generators simulate the book while generating, so every cancel targets an
order that is resting at that moment: replaying a generated stream through any
correct book rejects nothing. Every message's ``order_id`` is its index + 1;
``target_id`` is 0 except on cancels. Cancel rows carry side 0, price 0 and
quantity 0 (those fields are ignored for a cancel); market rows carry price 0.
"""

from collections.abc import Callable

import numpy as np

from engine.book import ReferenceBook
from engine.messages import OrderFilled
from engine.progress import Report
from engine.stream import (
    CANCEL,
    CLOCK,
    LIMIT_FOK,
    LIMIT_GTC,
    LIMIT_IOC,
    MARKET,
    PHASE,
    REPLACE,
    STOP,
    STOP_LIMIT,
    STREAM_DTYPE,
    check_stream,
    is_v2,
)
from engine.types import OrderType, Side, TimeInForce

CHUNK = 1 << 16
"""Messages per batch of random draws. Part of the output's definition: changing
it changes every generated stream."""

CENTRE = 10_000
"""Price (ticks) the fair value reverts to; the deep profile's mid price."""

MIN_QTY, MAX_QTY = 1, 100
"""New orders' quantities are uniform on MIN_QTY..MAX_QTY lots (both profiles'
adds and the standard profile's aggressive orders)."""

# ----------------------------------------------------------------- standard profile

REVERSION = 3e-5
"""Per message, the fair value's distance from CENTRE shrinks by this fraction
(half-life about 23,000 messages)."""

FAIR_STEP = 0.3
"""Per message, the fair value also moves by a uniform shock in +-FAIR_STEP ticks
(stationary standard deviation about 22 ticks around CENTRE)."""

MARKET_SHARE = 0.05
"""Share of market orders (fixed)."""

CANCEL_SHARE = 0.35
"""Share of cancels when the book holds TARGET_RESTING orders; limit orders take
the rest (1 - MARKET_SHARE - cancel share)."""

TARGET_RESTING = 3_000
"""Resting orders (both sides) the cancel share steers towards."""

CANCEL_GAIN = 0.5
"""The cancel share is CANCEL_SHARE + CANCEL_GAIN * (resting - TARGET_RESTING) /
TARGET_RESTING, clipped to CANCEL_SHARE_RANGE. The book fills up over the first
few thousand messages and then settles a little under the target, so over a run
cancels are about 34% and limit orders about 61% of the messages."""

CANCEL_SHARE_RANGE = (0.20, 0.50)

CROSS_SHARE = 0.20
"""Share of limit orders priced through the opposite best (when that side has
orders): a buy at best ask + 0..CROSS_DEPTH ticks, a sell at best bid -
0..CROSS_DEPTH. A GTC remainder rests at that price."""

CROSS_DEPTH = 2

PASSIVE_WIDTH = 55
"""A passive (non-crossing) limit order is placed ``1 + offset`` ticks from the
rounded fair value on its own side, where offset is the smaller of two uniform
draws on 0..PASSIVE_WIDTH-1 (density falling linearly away from the fair value).
It is pulled back to one tick inside the opposite best if it would cross, so a
passive order never trades on arrival."""

TILT_TICKS = 20
"""Aggressive orders (crossing limits and markets) buy with probability
0.5 + (fair value - mid) / (2 * TILT_TICKS), clipped to TILT_RANGE: informed flow
that pulls the book towards the fair value."""

TILT_RANGE = (0.1, 0.9)

# ----------------------------------------------------------------- deep profile

DEEP_MARKET_SHARE = 0.10
"""Share of the deep profile's steady phase that is small market orders."""

DEEP_TAKE_MAX = 10
"""Deep profile market orders are uniform on 1..DEEP_TAKE_MAX lots, so each one
trades with the first one or two orders of the best level."""

DEEP_CANCEL_SHARE = 0.45
"""Deep profile cancel share at the target resting count; adds take the rest.
Steered like the standard profile's, with DEEP_CANCEL_GAIN, within
DEEP_CANCEL_SHARE_RANGE."""

DEEP_CANCEL_GAIN = 5.0

DEEP_CANCEL_SHARE_RANGE = (0.35, 0.55)

KIND_NAMES = {
    LIMIT_GTC: "limit_gtc",
    MARKET: "market",
    CANCEL: "cancel",
    REPLACE: "replace",
    LIMIT_IOC: "limit_ioc",
    LIMIT_FOK: "limit_fok",
}
KIND_NAMES_V2 = {
    LIMIT_GTC: "limit",
    MARKET: "market",
    CANCEL: "cancel",
    REPLACE: "replace",
    STOP: "stop",
    STOP_LIMIT: "stop_limit",
    PHASE: "phase",
    CLOCK: "clock",
}
"""Version 2's kind names (its kind 0 is a limit order of any time in force)."""

BUY, SELL = int(Side.BUY), int(Side.SELL)
LIMIT, MARKET_TYPE = int(OrderType.LIMIT), int(OrderType.MARKET)
GTC, IOC = int(TimeInForce.GTC), int(TimeInForce.IOC)

BookFactory = Callable[[], object]


def fastest_book():
    """A new native book if the extension is built, else a reference book (slower, same stream)."""
    try:
        from native.book import NativeBook
    except ImportError:
        return ReferenceBook()
    return NativeBook()


class _LiveOrders:
    """The ids of the resting orders, with O(1) add, remove and uniform pick."""

    __slots__ = ("ids", "index")

    def __init__(self, ids=()):
        self.ids = list(ids)
        self.index = {order_id: i for i, order_id in enumerate(self.ids)}

    def add(self, order_id: int) -> None:
        self.index[order_id] = len(self.ids)
        self.ids.append(order_id)

    def remove(self, order_id: int) -> None:
        """Swap-remove ``order_id``, which must be present."""
        slot = self.index.pop(order_id)
        last = self.ids.pop()
        if last != order_id:
            self.ids[slot] = last
            self.index[last] = slot

    def pick(self, u: float) -> int:
        """The id in slot ``floor(u * len)`` for ``u`` in [0, 1): uniform for uniform ``u``."""
        return self.ids[int(u * len(self.ids))]


def _integer(name: str, value: int, least: int) -> int:
    """``value`` as a Python int, or ValueError if it is not an integer >= ``least``."""
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < least:
        raise ValueError(f"{name} must be an integer >= {least}, got {value!r}")
    return int(value)


def _share_table(target: int, base: float, gain: float, bounds: tuple[float, float]) -> list[float]:
    """Cancel share by resting count: entry n is ``base + gain * (n - target) / target``
    clipped to ``bounds``; the last entry holds for every larger count."""
    low, high = bounds
    saturated = int(target * (1 + (high - base) / gain)) + 2
    return [min(max(base + gain * (n - target) / target, low), high) for n in range(saturated)]


def _fair_values(rng: np.random.Generator, count: int, start: float) -> tuple[list, float]:
    """``count`` steps of the fair value's deviation from CENTRE, from ``start``.

    x[j] = (1 - REVERSION) * x[j-1] + shock[j], computed in closed form:
    x[j] = d[j] * (start + cumsum(shock / d)[j]) with d[j] = (1 - REVERSION)**(j+1).
    Returns the rounded prices CENTRE + x and the last deviation.
    """
    shocks = (rng.random(count) * 2.0 - 1.0) * FAIR_STEP
    decay = np.cumprod(np.full(count, 1.0 - REVERSION))
    deviation = decay * (start + np.cumsum(shocks / decay))
    return (np.rint(deviation).astype(np.int64) + CENTRE).tolist(), float(deviation[-1])


def _aggressor_side(u: float, fair: int, bid, ask) -> int:
    """Buy with the tilted probability (0.5 if either side of the book is empty)."""
    if bid is None or ask is None:
        return BUY if u < 0.5 else SELL
    low, high = TILT_RANGE
    p_buy = min(max(0.5 + (2 * fair - bid - ask) / (4 * TILT_TICKS), low), high)
    return BUY if u < p_buy else SELL


def _passive_price(side: int, fair: int, offset: int, bid, ask) -> int:
    """A price ``1 + offset`` ticks from ``fair`` on ``side``, kept off the opposite best
    and at least 1 tick."""
    if side == BUY:
        price = fair - 1 - offset
        if ask is not None and price >= ask:
            price = ask - 1
        return max(price, 1)
    price = fair + 1 + offset
    if bid is not None and price <= bid:
        price = bid + 1
    return price


def _limit_order(fair: int, bid, ask, u_cross: float, u_side: float, offset: int, depth: int):
    """(side, price) of a standard limit order: with probability CROSS_SHARE an
    aggressor ``depth`` ticks through the opposite best (if that side has orders),
    otherwise a passive order on a fair coin's side."""
    if u_cross < CROSS_SHARE:
        side = _aggressor_side(u_side, fair, bid, ask)
        if side == BUY and ask is not None:
            return BUY, ask + depth
        if side == SELL and bid is not None:
            return SELL, max(bid - depth, 1)
    else:
        side = BUY if u_side < 0.5 else SELL
    return side, _passive_price(side, fair, offset, bid, ask)


class _Simulation:
    """A book driven by the generated messages, its live order ids and the rows so far.

    Each method sends one message to the book, keeps ``live`` equal to the set of
    resting orders and records the message's row.
    """

    __slots__ = ("book", "live", "rows")

    def __init__(self, book, live: _LiveOrders):
        self.book, self.live = book, live
        self.rows: list[tuple] = []

    def limit(self, order_id: int, side: int, price: int, qty: int) -> None:
        events = self.book.submit(order_id, side, LIMIT, GTC, price, qty)
        if self._drop_filled_makers(events, qty):
            self.live.add(order_id)
        self.rows.append((LIMIT_GTC, side, price, qty, order_id, 0))

    def market(self, order_id: int, side: int, qty: int) -> None:
        self._drop_filled_makers(self.book.submit(order_id, side, MARKET_TYPE, IOC, 0, qty), qty)
        self.rows.append((MARKET, side, 0, qty, order_id, 0))

    def cancel(self, order_id: int, u_pick: float) -> None:
        """Cancel the live order in slot ``floor(u_pick * len(live))``."""
        target = self.live.pick(u_pick)
        self.book.cancel(target)
        self.live.remove(target)
        self.rows.append((CANCEL, 0, 0, 0, order_id, target))

    def stream(self) -> np.ndarray:
        """The rows so far as a STREAM_DTYPE array."""
        return np.array(self.rows, dtype=STREAM_DTYPE) if self.rows else np.zeros(0, STREAM_DTYPE)

    def _drop_filled_makers(self, events: list, quantity: int) -> int:
        """Remove from ``live`` every maker a fill in ``events`` emptied; return the
        taker's unfilled quantity (``quantity`` if nothing traded)."""
        leaves = quantity
        for event in events:
            if type(event) is OrderFilled:
                leaves = event.taker_leaves
                if not event.maker_leaves:
                    self.live.remove(event.maker_id)
        return leaves


def _standard_chunk(sim: _Simulation, shares: list, rng, first_id: int, count: int, deviation: float):
    """Generate ``count`` standard messages with ids from ``first_id``; return the
    fair value's deviation after them. ``shares`` is the cancel share table."""
    fairs, deviation = _fair_values(rng, count, deviation)
    u_kind = rng.random(count).tolist()
    u_cross = rng.random(count).tolist()
    u_side = rng.random(count).tolist()
    u_pick = rng.random(count).tolist()
    qtys = rng.integers(MIN_QTY, MAX_QTY + 1, count).tolist()
    offsets = np.minimum(
        rng.integers(0, PASSIVE_WIDTH, count), rng.integers(0, PASSIVE_WIDTH, count)
    ).tolist()
    depths = rng.integers(0, CROSS_DEPTH + 1, count).tolist()
    book, live_ids, saturated = sim.book, sim.live.ids, len(shares) - 1
    for j in range(count):
        u, resting = u_kind[j], len(live_ids)
        if MARKET_SHARE <= u < MARKET_SHARE + shares[min(resting, saturated)] and resting:
            sim.cancel(first_id + j, u_pick[j])
            continue
        bid, ask = book.best_bid(), book.best_ask()
        if u < MARKET_SHARE:
            sim.market(first_id + j, _aggressor_side(u_side[j], fairs[j], bid, ask), qtys[j])
            continue
        side, price = _limit_order(fairs[j], bid, ask, u_cross[j], u_side[j], offsets[j], depths[j])
        sim.limit(first_id + j, side, price, qtys[j])
    return deviation


def standard(
    messages: int, seed: int, book: BookFactory = fastest_book, progress: Report | None = None
) -> np.ndarray:
    """The standard workload: ``messages`` STREAM_DTYPE records from ``seed``.

    ``book`` builds the book that is simulated to know the live orders and best
    prices; any correct book gives the same output. ``progress``, if given, is
    called with the messages made so far after each CHUNK. Guaranteed: order_id is
    1..messages; only kinds LIMIT_GTC, MARKET and CANCEL occur; new orders have
    quantities in MIN_QTY..MAX_QTY and limit prices > 0; every cancel targets an
    order resting at that point, so a replay rejects nothing.
    """
    messages, seed = _integer("messages", messages, 1), _integer("seed", seed, 0)
    rng = np.random.Generator(np.random.PCG64(seed))
    sim = _Simulation(book(), _LiveOrders())
    shares = _share_table(TARGET_RESTING, CANCEL_SHARE, CANCEL_GAIN, CANCEL_SHARE_RANGE)
    deviation = 0.0
    for start in range(0, messages, CHUNK):
        count = min(CHUNK, messages - start)
        deviation = _standard_chunk(sim, shares, rng, start + 1, count, deviation)
        if progress is not None:
            progress(start + count)
    return sim.stream()


def _deep_preload(rng, resting: int, levels: int) -> np.ndarray:
    """``resting`` non-crossing limit GTC orders (ids 1..resting) on ``levels`` prices a side:
    bids at CENTRE - 1..levels, asks at CENTRE + 1..levels."""
    preload = np.zeros(resting, dtype=STREAM_DTYPE)
    preload["kind"] = LIMIT_GTC
    preload["side"] = rng.integers(0, 2, resting)
    distance = rng.integers(1, levels + 1, resting)
    preload["price"] = np.where(preload["side"] == BUY, CENTRE - distance, CENTRE + distance)
    preload["qty"] = rng.integers(MIN_QTY, MAX_QTY + 1, resting)
    preload["order_id"] = np.arange(1, resting + 1)
    return preload


def _deep_chunk(sim: _Simulation, shares: list, rng, first_id: int, count: int, levels: int) -> None:
    """Generate ``count`` steady-phase deep messages with ids from ``first_id``;
    ``shares`` is the cancel share table."""
    u_kind = rng.random(count).tolist()
    sides = rng.integers(0, 2, count).tolist()
    distances = rng.integers(1, levels + 1, count).tolist()
    u_pick = rng.random(count).tolist()
    qtys = rng.integers(MIN_QTY, MAX_QTY + 1, count).tolist()
    takes = rng.integers(1, DEEP_TAKE_MAX + 1, count).tolist()
    live_ids, saturated = sim.live.ids, len(shares) - 1
    for j in range(count):
        u, side, resting = u_kind[j], sides[j], len(live_ids)
        if u < DEEP_MARKET_SHARE:
            sim.market(first_id + j, side, takes[j])
        elif u < DEEP_MARKET_SHARE + shares[min(resting, saturated)] and resting:
            sim.cancel(first_id + j, u_pick[j])
        else:
            price = CENTRE - distances[j] if side == BUY else CENTRE + distances[j]
            sim.limit(first_id + j, side, price, qtys[j])


def deep(
    messages: int, seed: int, resting: int = 300_000, levels: int = 5, book: BookFactory = fastest_book,
    progress: Report | None = None,
) -> np.ndarray:
    """A deep-queue stream: ``messages`` records, the first ``resting`` of them a preload.

    The preload rests ``resting`` limit GTC orders on ``levels`` prices a side
    (bids CENTRE-levels..CENTRE-1, asks CENTRE+1..CENTRE+levels). The remaining
    messages mix adds at those prices, cancels of uniformly chosen live orders
    (steered to keep about ``resting`` orders) and market orders of
    1..DEEP_TAKE_MAX lots. Guaranteed: order_id is 1..messages; every limit
    price is one of those 2 * ``levels`` prices, so the book never crosses and a
    market order trades only at the front of the best level; every cancel
    targets a resting order. Needs ``levels`` < CENTRE and ``messages`` > ``resting``.
    ``progress``, if given, is called with the messages made so far after the
    preload and after each CHUNK.
    """
    messages, seed = _integer("messages", messages, 1), _integer("seed", seed, 0)
    resting, levels = _integer("resting", resting, 1), _integer("levels", levels, 1)
    if levels >= CENTRE:
        raise ValueError(f"levels must be below {CENTRE}, got {levels}")
    if messages <= resting:
        raise ValueError(f"the deep profile needs more messages than its {resting} preloaded orders")
    rng = np.random.Generator(np.random.PCG64(seed))
    preload = _deep_preload(rng, resting, levels)
    sim = _Simulation(book(), _LiveOrders(range(1, resting + 1)))
    sim.book.replay(preload)
    if progress is not None:
        progress(resting)
    shares = _share_table(resting, DEEP_CANCEL_SHARE, DEEP_CANCEL_GAIN, DEEP_CANCEL_SHARE_RANGE)
    for start in range(resting, messages, CHUNK):
        count = min(CHUNK, messages - start)
        _deep_chunk(sim, shares, rng, start + 1, count, levels)
        if progress is not None:
            progress(start + count)
    return np.concatenate([preload, sim.stream()])


def describe(stream: np.ndarray) -> dict:
    """Counts and shares per kind, and the ranges of quantities, prices and ids.

    Keys: messages; kinds (count per kind name of the stream's version, every known
    kind listed, plus "unknown" only when some record has an unknown kind); shares
    (the same keys, fractions rounded to 4 places); qty_min/qty_max over new orders;
    price_min/price_max over limit-priced orders (version 2: limits and stop-limits);
    order_id_min/order_id_max. A range is None when nothing qualifies. Every value is a
    plain int, float, None or dict (JSON-ready).
    """
    stream = check_stream(stream)
    kinds = stream["kind"]
    names = KIND_NAMES_V2 if is_v2(stream) else KIND_NAMES
    counts = {name: int(np.count_nonzero(kinds == kind)) for kind, name in names.items()}
    unknown = len(stream) - sum(counts.values())
    if unknown:
        counts["unknown"] = unknown
    if is_v2(stream):
        new_orders = np.isin(kinds, (LIMIT_GTC, MARKET, STOP, STOP_LIMIT))
        limits = np.isin(kinds, (LIMIT_GTC, STOP_LIMIT))
    else:
        new_orders = np.isin(kinds, (LIMIT_GTC, MARKET, LIMIT_IOC, LIMIT_FOK))
        limits = np.isin(kinds, (LIMIT_GTC, LIMIT_IOC, LIMIT_FOK))
    return {
        "messages": len(stream),
        "kinds": counts,
        "shares": {name: round(n / len(stream), 4) if len(stream) else 0.0 for name, n in counts.items()},
        "qty_min": _extreme(stream["qty"][new_orders], np.min),
        "qty_max": _extreme(stream["qty"][new_orders], np.max),
        "price_min": _extreme(stream["price"][limits], np.min),
        "price_max": _extreme(stream["price"][limits], np.max),
        "order_id_min": _extreme(stream["order_id"], np.min),
        "order_id_max": _extreme(stream["order_id"], np.max),
    }


def _extreme(values: np.ndarray, reduce) -> int | None:
    return int(reduce(values)) if len(values) else None
