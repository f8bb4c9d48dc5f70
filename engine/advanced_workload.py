"""The `advanced` workload: a version-2 stream (STREAM_V2_DTYPE) exercising every advanced order and phase.

Single-symbol and deterministic like the other profiles (`engine.workload`): the same
arguments give a byte-identical array, whichever correct book simulates it (the native book
if it is built, `engine.workload.fastest_book`; the books are event for event identical,
and the generator reads only their events, best prices, ``len`` and ``order(id)``). The fair value
walks as in `standard` (same random walk around CENTRE), and limit orders are placed around
it as there (a fifth of them through the opposite best). On top of that:

- **Phases.** Messages come in cycles of CYCLE; cycle k follows CYCLE_PLAN[k % 4]: a call
  auction of CALL_MESSAGES messages then continuous trading; the same; a halt of
  HALT_MESSAGES, then a call auction, then continuous trading; a halt, then continuous
  trading directly. So the stream opens with a call auction, and every call ends in a real
  uncross (its orders are priced across the fair value, CALL_SPREAD ticks either way, and
  market orders wait for it). A phase message is sent where the plan changes phase.
- **Continuous messages**, by share: market orders (IOC, FOK_MARKET_SHARE of them FOK),
  stops (half stop, half stop-limit, STOP_DISTANCE ticks around the fair value so that
  they trigger), replaces (REDUCE_SHARE in place, the rest moving up to 2 ticks with a new
  quantity), clock messages (1 to 3 time units), INVALID_SHARE invalid messages, cancels
  (steered towards TARGET_RESTING resting orders as in `standard`), and limit orders for
  the rest. Limit orders: GTD_SHARE GTD (expiring within GTD_HORIZON time units, so the
  clock expires them), IOC_SHARE IOC, FOK_SHARE FOK; of the resting ones ICEBERG_SHARE
  icebergs (a display of a half to a fifth of the quantity) and POST_ONLY_SHARE post-only
  (POST_ONLY_TAKING of those priced at the opposite best, so refused).
- **Owners.** OWNED_SHARE of new orders belong to one of OWNERS owners, each with a
  self-trade prevention mode drawn uniformly from the five; the others have owner 0.
- **Call phase**: limit orders, market orders waiting for the uncross, cancels, replaces
  (re-entries rest), clock messages and refused IOC limits and stops. **Halt**: cancels,
  reductions in place, clock messages and refused new orders and moves.
- **Invalid messages** cycle through INVALID_TEMPLATES: one per reject rule of the format
  (unknown side, time in force, flags, stp and kind; bad quantities, duplicate id, prices,
  stop price, market GTC, display quantity, post-only IOC, past expiry, an unfillable
  FOK, a post-only order at the opposite best), a cancel of an unknown id, a replace of a
  held stop, the clock going back and phase 3. A template that cannot apply at that
  moment (no held stop, an empty side) sends a cancel of an unknown id instead.

Every message's ``order_id`` is its index + 1, except the duplicate-id template's, which
repeats the first accepted order's id. ``target_id`` names a live order (cancels, replaces)
except for the invalid cancel of an unknown id. Each random draw is made for every message
whatever its kind, in batches of CHUNK, so the output depends only on the arguments.
"""

import numpy as np

from engine.messages import ClockAdvanced, OrderAccepted, PhaseChanged
from engine.progress import Report
from engine.replay import apply_row_v2
from engine.stream import CANCEL, CLOCK, LIMIT, MARKET, PHASE, REPLACE, STOP, STOP_LIMIT, STREAM_V2_DTYPE
from engine.types import MAX_QUANTITY, OrderType, Phase
from engine.workload import (
    CHUNK,
    MAX_QTY,
    MIN_QTY,
    PASSIVE_WIDTH,
    BookFactory,
    _aggressor_side,
    _fair_values,
    _integer,
    _limit_order,
    _share_table,
    fastest_book,
)

CYCLE = 8_000
"""Messages per trading cycle."""

CALL_MESSAGES = 300
"""Messages of a call auction (the phase messages included)."""

HALT_MESSAGES = 100
"""Messages of a halt."""

CYCLE_PLAN = ("call", "call", "halt, call", "halt")
"""What interrupts continuous trading at the start of each cycle, in turn."""

CALL_SPREAD = 4
"""Call-phase limit orders are priced uniformly within CALL_SPREAD ticks of the fair value, either side."""

MARKET_SHARE, STOP_SHARE, REPLACE_SHARE, CLOCK_SHARE, INVALID_SHARE = 0.04, 0.06, 0.07, 0.03, 0.012
"""Shares of continuous messages; cancels are steered (below) and limit orders take the rest."""

CANCEL_SHARE, TARGET_RESTING, CANCEL_GAIN, CANCEL_SHARE_RANGE = 0.26, 2_000, 0.5, (0.12, 0.45)
"""The cancel share: CANCEL_SHARE when TARGET_RESTING orders rest, steered as `standard`'s."""

FOK_MARKET_SHARE = 0.2
GTD_SHARE, IOC_SHARE, FOK_SHARE = 0.15, 0.05, 0.03
"""Time in force of continuous limit orders (the rest GTC)."""

GTD_HORIZON = 30
"""A GTD order expires 1 to GTD_HORIZON time units after the clock."""

ICEBERG_SHARE, POST_ONLY_SHARE, POST_ONLY_TAKING = 0.10, 0.08, 0.25

STOP_DISTANCE = 6
"""A buy stop triggers 1 to STOP_DISTANCE ticks above the fair value, a sell stop as far below."""

STOP_LIMIT_SHARE = 0.5
STOP_LIMIT_SLACK = 2
"""A stop-limit's limit is 0 to STOP_LIMIT_SLACK ticks beyond its stop price."""

REDUCE_SHARE = 0.4

OWNED_SHARE, OWNERS = 0.6, 4

CALL_SHARES = (0.10, 0.10, 0.05, 0.03, 0.02)
"""Call phase: market orders, cancels, replaces, clock, refused orders; limit orders the rest."""

HALT_SHARES = (0.40, 0.30, 0.10, 0.10)
"""Halt: cancels, reductions in place, clock, refused new orders; refused moves the rest."""

BUY, SELL = 0, 1
GTC, IOC, FOK, GTD = 0, 1, 2, 3
"""The stream's ``tif`` values."""
POST_ONLY = 1
PICK_TRIES = 8
"""Live-order candidates tried before a cancel or replace gives up (dead ids are pruned on the way)."""


def _row(kind, order_id, side=0, tif=GTC, flags=0, stp=0, price=0, qty=0, target=0, stop_price=0, display=0,
         owner=0, expire_at=0):
    return (kind, side, tif, flags, stp, price, qty, order_id, target, stop_price, display, owner, expire_at)


class _Simulation:
    """A book driven by the generated rows; the ids that may be live; the phase and clock."""

    __slots__ = ("book", "rows", "candidates", "slots", "phase", "clock", "first_accepted", "invalid")

    def __init__(self, book):
        self.book = book
        self.rows: list[tuple] = []
        self.candidates: list[int] = []
        """Ids of accepted orders not yet seen gone (a superset of the live orders)."""
        self.slots: dict[int, int] = {}
        self.phase, self.clock = Phase.CONTINUOUS, 0
        self.first_accepted = None
        self.invalid = 0

    def send(self, row) -> list | None:
        events = apply_row_v2(self.book, row)
        self.rows.append(row)
        first = type(events[0]) if events else None
        if first is OrderAccepted:
            self._add(row[7])
            if self.first_accepted is None:
                self.first_accepted = row[7]
        elif first is PhaseChanged:
            self.phase = events[0].phase
        elif first is ClockAdvanced:
            self.clock = events[0].time
        return events

    def live(self, u: float, resting: bool = False):
        """A live order picked from ``u`` (uniform in [0, 1)): (id, `RestingOrder`) or None after
        PICK_TRIES dead candidates; ``resting``: only an order in the book."""
        for _ in range(PICK_TRIES):
            if not self.candidates:
                return None
            order_id = self.candidates[int(u * len(self.candidates))]
            order = self.book.order(order_id)
            if order is None:
                self._remove(order_id)
                continue
            if resting and order.order_type is not OrderType.LIMIT:
                return None
            return order_id, order
        return None

    def _add(self, order_id: int) -> None:
        self.slots[order_id] = len(self.candidates)
        self.candidates.append(order_id)

    def _remove(self, order_id: int) -> None:
        slot = self.slots.pop(order_id)
        last = self.candidates.pop()
        if last != order_id:
            self.candidates[slot] = last
            self.slots[last] = slot


def _owner(u: float, u_stp: float) -> tuple[int, int]:
    """(owner, stp) of a new order."""
    if u >= OWNED_SHARE:
        return 0, 0
    return 1 + int(u / OWNED_SHARE * OWNERS), int(u_stp * 5)


def _planned_phase(index: int) -> Phase:
    """The phase message ``index`` belongs to."""
    position, plan = index % CYCLE, CYCLE_PLAN[(index // CYCLE) % len(CYCLE_PLAN)]
    halt = HALT_MESSAGES if plan.startswith("halt") else 0
    if position < halt:
        return Phase.HALTED
    if "call" in plan and position < halt + CALL_MESSAGES:
        return Phase.CALL
    return Phase.CONTINUOUS


def _invalid(sim: _Simulation, order_id: int, fair: int, u: float) -> tuple:
    """The next invalid message of INVALID_TEMPLATES."""
    template = INVALID_TEMPLATES[sim.invalid % len(INVALID_TEMPLATES)]
    sim.invalid += 1
    return template(sim, order_id, fair, u) or _row(CANCEL, order_id, target=-order_id)


def _replace_of_held_stop(sim, order_id, fair, u):
    for _ in range(PICK_TRIES):
        picked = sim.live(u)
        if picked and picked[1].order_type in (OrderType.STOP, OrderType.STOP_LIMIT):
            return _row(REPLACE, order_id, price=fair, qty=1, target=picked[0])
        u = (u * 7.31) % 1.0
    return None


def _post_only_at_best(sim, order_id, fair, u):
    ask = sim.book.best_ask()
    return None if ask is None else _row(LIMIT, order_id, BUY, GTC, POST_ONLY, price=ask, qty=5)


def _duplicate(sim, order_id, fair, u):
    first = sim.first_accepted
    return None if first is None else _row(LIMIT, first, BUY, price=1, qty=1)


INVALID_TEMPLATES = (
    lambda sim, i, fair, u: _row(LIMIT, i, 2, price=fair, qty=1),  # unknown side
    lambda sim, i, fair, u: _row(LIMIT, i, BUY, 4, price=fair, qty=1),  # unknown time in force
    lambda sim, i, fair, u: _row(LIMIT, i, SELL, flags=2, price=fair, qty=1),  # unknown flags
    lambda sim, i, fair, u: _row(MARKET, i, BUY, IOC, stp=5, qty=1),  # unknown stp mode
    lambda sim, i, fair, u: _row(4, i, BUY, price=fair, qty=1),  # kind 4: not in version 2
    lambda sim, i, fair, u: _row(LIMIT, i, BUY, price=fair, qty=0),  # quantity 0
    lambda sim, i, fair, u: _row(STOP, i, SELL, qty=MAX_QUANTITY + 1, stop_price=fair),  # above the limit
    _duplicate,
    lambda sim, i, fair, u: _row(LIMIT, i, SELL, price=0, qty=1),  # price 0
    lambda sim, i, fair, u: _row(STOP_LIMIT, i, BUY, price=fair, qty=1),  # stop price 0
    lambda sim, i, fair, u: _row(MARKET, i, SELL, GTC, qty=1),  # a market order cannot rest
    lambda sim, i, fair, u: _row(LIMIT, i, BUY, price=fair - 20, qty=3, display=4),  # display above quantity
    lambda sim, i, fair, u: _row(LIMIT, i, SELL, IOC, POST_ONLY, price=fair, qty=1),  # post-only IOC
    lambda sim, i, fair, u: _row(LIMIT, i, BUY, GTD, price=fair - 20, qty=1, expire_at=sim.clock),  # expired
    lambda sim, i, fair, u: _row(LIMIT, i, BUY, FOK, price=1, qty=MAX_QUANTITY),  # FOK not fillable
    _post_only_at_best,
    lambda sim, i, fair, u: _row(CANCEL, i, target=-i),  # unknown order
    _replace_of_held_stop,
    lambda sim, i, fair, u: _row(CLOCK, i, price=sim.clock - 1),  # the clock going back
    lambda sim, i, fair, u: _row(PHASE, i, qty=3),  # unknown phase
)


def _limit_fields(u_tif: float, u_feature: float, u_extra: float, qty: int, clock: int, resting_only=False):
    """(tif, flags, display, expire_at, at the opposite best) of a limit order."""
    if not resting_only and u_tif < IOC_SHARE + FOK_SHARE:
        return (IOC if u_tif < IOC_SHARE else FOK), 0, 0, 0, False
    if u_tif > 1 - GTD_SHARE:
        tif, expire_at = GTD, clock + 1 + int(u_extra * GTD_HORIZON)
    else:
        tif, expire_at = GTC, 0
    if u_feature < ICEBERG_SHARE:
        return tif, 0, max(1, qty // (2 + int(u_extra * 4))), expire_at, False
    if u_feature < ICEBERG_SHARE + POST_ONLY_SHARE:
        taking = u_feature < ICEBERG_SHARE + POST_ONLY_SHARE * POST_ONLY_TAKING
        return tif, POST_ONLY, 0, expire_at, taking
    return tif, 0, 0, expire_at, False


def _continuous(sim, i, u, fair, qty, offset, depth, shares, saturated):
    """One continuous-trading message with id ``i``."""
    book = sim.book
    u_kind, u_cross, u_side, u_pick, u_owner, u_stp, u_tif, u_feature, u_extra = u
    owner, stp = _owner(u_owner, u_stp)
    cancel_share = shares[min(len(book), saturated)]
    edge = MARKET_SHARE
    if u_kind < edge:
        side = _aggressor_side(u_side, fair, book.best_bid(), book.best_ask())
        tif = FOK if u_tif < FOK_MARKET_SHARE else IOC
        return sim.send(_row(MARKET, i, side, tif, 0, stp, qty=qty, owner=owner))
    edge += STOP_SHARE
    if u_kind < edge:
        side = BUY if u_side < 0.5 else SELL
        distance = 1 + int(u_extra * STOP_DISTANCE)
        stop_price = max(fair + distance if side == BUY else fair - distance, 1)
        quantity = 1 + qty // 4
        if u_feature >= STOP_LIMIT_SHARE:
            return sim.send(_row(STOP, i, side, stp=stp, qty=quantity, stop_price=stop_price, owner=owner))
        slack = int(u_pick * (STOP_LIMIT_SLACK + 1))
        price = max(stop_price + slack if side == BUY else stop_price - slack, 1)
        tif = GTC if u_tif < 0.7 else IOC if u_tif < 0.8 else FOK if u_tif < 0.9 else GTD
        expire_at = sim.clock + 1 + int(u_extra * GTD_HORIZON) if tif == GTD else 0
        return sim.send(_row(STOP_LIMIT, i, side, tif, 0, stp, price, quantity, 0, stop_price, 0, owner, expire_at))
    edge += REPLACE_SHARE
    if u_kind < edge:
        return _replace(sim, i, u_pick, u_feature, u_extra, qty)
    edge += CLOCK_SHARE
    if u_kind < edge:
        return sim.send(_row(CLOCK, i, price=sim.clock + 1 + int(u_extra * 3)))
    edge += INVALID_SHARE
    if u_kind < edge:
        return sim.send(_invalid(sim, i, fair, u_extra))
    edge += cancel_share
    if u_kind < edge:
        picked = sim.live(u_pick)
        if picked is not None:
            return sim.send(_row(CANCEL, i, target=picked[0]))
    bid, ask = book.best_bid(), book.best_ask()
    side, price = _limit_order(fair, bid, ask, u_cross, u_side, offset, depth)
    tif, flags, display, expire_at, taking = _limit_fields(u_tif, u_feature, u_extra, qty, sim.clock)
    if flags and taking:
        opposite = ask if side == BUY else bid
        price = price if opposite is None else opposite
    return sim.send(_row(LIMIT, i, side, tif, flags, stp, price, qty, 0, 0, display, owner, expire_at))


def _replace(sim, i, u_pick, u_feature, u_extra, qty, reduce_only=False):
    """A replace of a resting order: a reduction in place or a move; a cancel of another live
    order if none is found."""
    picked = sim.live(u_pick, resting=True)
    if picked is None:
        picked = sim.live(u_pick)
        return sim.send(_row(CANCEL, i, target=-i if picked is None else picked[0]))
    order_id, order = picked
    if reduce_only or u_feature < REDUCE_SHARE:
        return sim.send(_row(REPLACE, i, price=order.price, qty=max(1, order.quantity // 2), target=order_id))
    price = max(order.price + int(u_extra * 5) - 2, 1)
    return sim.send(_row(REPLACE, i, price=price, qty=qty, target=order_id))


def _call(sim, i, u, fair, qty):
    """One call-auction message with id ``i``."""
    u_kind, u_cross, u_side, u_pick, u_owner, u_stp, u_tif, u_feature, u_extra = u
    owner, stp = _owner(u_owner, u_stp)
    side = BUY if u_side < 0.5 else SELL
    market, cancel, replace, clock, refused = CALL_SHARES
    if u_kind < market:
        return sim.send(_row(MARKET, i, side, FOK if u_tif < FOK_MARKET_SHARE else IOC, 0, stp, qty=qty, owner=owner))
    if u_kind < market + cancel:
        picked = sim.live(u_pick)
        if picked is not None:
            return sim.send(_row(CANCEL, i, target=picked[0]))
    elif u_kind < market + cancel + replace:
        return _replace(sim, i, u_pick, u_feature, u_extra, qty)
    elif u_kind < market + cancel + replace + clock:
        return sim.send(_row(CLOCK, i, price=sim.clock + 1))
    elif u_kind < market + cancel + replace + clock + refused:
        if u_feature < 0.5:
            return sim.send(_row(LIMIT, i, side, IOC, price=fair, qty=qty))
        return sim.send(_row(STOP, i, side, qty=qty, stop_price=fair))
    price = max(fair + int((u_cross * 2 - 1) * CALL_SPREAD), 1)
    tif, flags, display, expire_at, _ = _limit_fields(u_tif, u_feature, u_extra, qty, sim.clock, resting_only=True)
    return sim.send(_row(LIMIT, i, side, tif, flags, stp, price, qty, 0, 0, display, owner, expire_at))


def _halt(sim, i, u, fair, qty):
    """One message of a halt with id ``i``."""
    u_kind, u_pick, u_feature, u_extra = u[0], u[3], u[7], u[8]
    cancel, reduce, clock, refused = HALT_SHARES
    if u_kind < cancel:
        picked = sim.live(u_pick)
        if picked is not None:
            return sim.send(_row(CANCEL, i, target=picked[0]))
    if u_kind < cancel + reduce:
        return _replace(sim, i, u_pick, u_feature, u_extra, qty, reduce_only=True)
    if u_kind < cancel + reduce + clock:
        return sim.send(_row(CLOCK, i, price=sim.clock + 1))
    if u_kind < cancel + reduce + clock + refused:
        return sim.send(_row(LIMIT, i, BUY if u_feature < 0.5 else SELL, price=fair, qty=qty))
    return _replace(sim, i, u_pick, 1.0, u_extra, qty)


def _chunk(sim, shares, rng, first: int, count: int, deviation: float) -> float:
    """Generate messages ``first .. first + count - 1`` (0-based); return the fair value's deviation."""
    fairs, deviation = _fair_values(rng, count, deviation)
    uniforms = rng.random((count, 9)).tolist()
    qtys = rng.integers(MIN_QTY, MAX_QTY + 1, count).tolist()
    offsets = np.minimum(rng.integers(0, PASSIVE_WIDTH, count), rng.integers(0, PASSIVE_WIDTH, count)).tolist()
    depths = rng.integers(0, 3, count).tolist()
    saturated = len(shares) - 1
    for j in range(count):
        index = first + j
        planned = _planned_phase(index)
        if planned is not sim.phase:
            sim.send(_row(PHASE, index + 1, qty=int(planned)))
        elif planned is Phase.CONTINUOUS:
            _continuous(sim, index + 1, uniforms[j], fairs[j], qtys[j], offsets[j], depths[j], shares, saturated)
        elif planned is Phase.CALL:
            _call(sim, index + 1, uniforms[j], fairs[j], qtys[j])
        else:
            _halt(sim, index + 1, uniforms[j], fairs[j], qtys[j])
    return deviation


def advanced(
    messages: int, seed: int, book: BookFactory = fastest_book, progress: Report | None = None
) -> np.ndarray:
    """The advanced workload: ``messages`` STREAM_V2_DTYPE records from ``seed`` (module docstring).

    ``book`` builds the book simulated to know live orders and best prices (any correct
    book gives the same output; by default the native book if it is built, else the reference
    book). ``progress``, if given, is
    called with the messages made so far after each CHUNK.
    """
    messages, seed = _integer("messages", messages, 1), _integer("seed", seed, 0)
    rng = np.random.Generator(np.random.PCG64(seed))
    sim = _Simulation(book())
    shares = _share_table(TARGET_RESTING, CANCEL_SHARE, CANCEL_GAIN, CANCEL_SHARE_RANGE)
    deviation = 0.0
    for start in range(0, messages, CHUNK):
        count = min(CHUNK, messages - start)
        deviation = _chunk(sim, shares, rng, start, count, deviation)
        if progress is not None:
            progress(start + count)
    return np.array(sim.rows, dtype=STREAM_V2_DTYPE) if sim.rows else np.zeros(0, STREAM_V2_DTYPE)
