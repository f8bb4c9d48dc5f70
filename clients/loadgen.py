"""Load generator: the whole pipeline (client -> TES -> OBS -> TES -> client) at a fixed offered rate.

``python main.py -c loadgen --rate R --duration S [--batch-max N] [--symbol ACME]
[--trader load --key load-demo-key] [--drain S] [--mix limit|advanced]``

Measurement
-----------
Order ``i`` (0, 1, 2, ...) is *scheduled* at ``start + i / R``. The sender sends,
in one frame, every order whose scheduled time has come (at most ``--batch-max``
per frame; sends are `send_interval` apart), whatever the exchange is doing, so a
slow exchange cannot slow the schedule down and hide its own latency (no
coordinated omission). The latency
of an order is the time its `OrderAccepted` or `OrderRejected` was read minus its
scheduled send time: time spent queued in this process, in sockets, in the TES
and the OBS (including the journal) all counts.

Order flow
----------
``--mix limit`` (the default): GTC limit orders of the instrument's minimum quantity
at one price (the reference price), alternating buy and sell: every sell fills the buy
before it, so the book stays at most one order deep however long the run.

``--mix advanced``: the cycle of `ADVANCED_MIX`, 20 orders repeated (the number of
orders is rounded up to whole cycles): a stop-limit and a stop, an iceberg, a post-only,
a GTD, FOK, IOC and market orders, and the four self-trade prevention modes against the
generator's own resting orders (every other order names mode NONE, so the trader's
default does not matter). Prices are the reference price P and one tick either side of it;
quantities multiples of the minimum quantity q. Each cycle starts and ends with an empty
book and a last trade at P: a trade at P + tick triggers the cycle's buy stop-limit, one at
P - tick its sell stop, and a trade at P follows each in the same frame. So the TES,
which refuses a stop its last trade already reached (STOP_WOULD_TRIGGER) and learns of
trades as the book answers, only ever sees a last trade at P, however many orders are in
flight; the orders of such a group (``joined``) always share a frame, sent when the
group's last order is due (latency still counts from each order's own scheduled time).
A cycle makes 10 trades (20 fills) and triggers both stops. Before the schedule, one trade
at P (a buy and a sell of q, not counted) sets the last trade. The mix assumes the
generator is alone on an empty book in continuous trading (as ``bench e2e`` runs it): other
orders on the symbol change what trades, and may make the TES refuse a stop; a call or a halt
refuses or holds what the cycle expects to trade. The result has two more keys.

Output
------
After the schedule ends, it waits up to ``--drain`` seconds for the answers still
outstanding, then prints as its last stdout line one JSON object:

``sent``, ``acked``, ``rejected``
    orders sent, accepted, rejected (by their first answer).
``fills``
    `OrderFilled` reports received (a trade between two of its orders is two).
``lost``
    orders not answered by the end of the drain (a saturated exchange may still
    answer them later; an exchange that drops nothing loses none at a rate it sustains).
``duration_s``
    from the first scheduled send to the end of the schedule or the last answer,
    whichever is later.
``orders_per_s``
    answered orders per second of ``duration_s``.
``ack_p50_us``, ``ack_p99_us``, ``ack_p999_us``
    latency percentiles in microseconds (null if nothing was answered).
``ack_max_us``, ``ack_max_at_s``
    the longest latency, and when that order was scheduled, in seconds from the start: where
    in the run to look for what made the tail (null if nothing was answered).
``ack_tail_pieces``
    ``[holding, pieces]``: the run cut by scheduled time into pieces of `TAIL_PIECE_S` (50 ms),
    ``pieces`` of them with answered orders, ``holding`` of those with an ack slower than the
    p99. One or two: the slowest 1% came in a stall (``ack_max_at_s`` says when); more: in slow
    spells all through the run, each a few orders' paths on a busy machine (null if nothing was
    answered).
``send_lag_max_us``
    the longest any order waited in this process past its scheduled time before it was sent:
    the load generator's own delays (descheduled on a busy machine, a send interval, a group of
    orders that shares a frame), which count in the latencies.
``orders_per_frame``
    the orders sent per frame, on average: about one below 25,000/s, more above it, as far as the
    send interval (`send_interval`) gathers them.
``triggered``, ``reject_reasons`` (``--mix advanced`` only)
    `StopTriggered` reports received; the rejects by reason name (``{}``: none).
"""

import argparse
import json
import select
import time
from typing import NamedTuple

import numpy as np
import zmq

from clients import runtime
from clients.client import ExchangeClient, SessionEnded
from config.arguments import positive_float, positive_int
from config.settings import Config
from engine.types import OrderFlags, OrderType, RejectReason, SelfTradePrevention, Side, TimeInForce
from native.sockets import queued
from servers import collector
from servers.protocol import (
    MAX_BATCH,
    EnterOrder,
    OrderAccepted,
    OrderFilled,
    OrderRejected,
    StopTriggered,
)

MIN_SEND_INTERVAL_S = 50e-6
MAX_SEND_INTERVAL_S = 1e-3
SINGLE_ORDER_RATE = 25_000
"""Up to this rate, sends are the shortest interval apart (about one order per frame)."""
BATCHED_RATE = 100_000
"""From this rate, sends are the longest interval apart (100 orders per frame at 100,000/s)."""


def send_interval(rate: float) -> float:
    """Seconds between sends: 50 µs up to 25,000/s (about one order per frame), rising
    linearly with the rate to 1 ms at 100,000/s and above, where the per-frame costs of
    every process (a wake-up, a poll, a read, a decode, an encode, a write; and the
    journal's group commit) would otherwise dominate. Latency still counts from each
    order's scheduled time, so the wait for a frame's send is part of what is measured."""
    share = (rate - SINGLE_ORDER_RATE) / (BATCHED_RATE - SINGLE_ORDER_RATE)
    interval = MIN_SEND_INTERVAL_S + share * (MAX_SEND_INTERVAL_S - MIN_SEND_INTERVAL_S)
    return min(MAX_SEND_INTERVAL_S, max(MIN_SEND_INTERVAL_S, interval))

BUY, SELL = Side.BUY, Side.SELL
LIMIT, MARKET, STOP, STOP_LIMIT = OrderType.LIMIT, OrderType.MARKET, OrderType.STOP, OrderType.STOP_LIMIT
GTC, IOC, FOK, GTD = TimeInForce.GTC, TimeInForce.IOC, TimeInForce.FOK, TimeInForce.GTD
STP = SelfTradePrevention


class MixOrder(NamedTuple):
    """One order of a mix's cycle: prices in ticks from the reference price P, quantities in
    minimum quantities q. ``joined``: sent in the same frame as the next order."""

    kind: str
    side: Side
    order_type: OrderType
    tif: TimeInForce
    ticks: int
    lots: int
    stop_ticks: int = 0
    display_lots: int = 0
    post_only: bool = False
    stp: SelfTradePrevention = STP.NONE
    joined: bool = False


ADVANCED_MIX = (
    MixOrder("stop-limit", BUY, STOP_LIMIT, GTC, 1, 1, stop_ticks=1),     # held: stop P+1
    MixOrder("stop", SELL, STOP, GTC, 0, 1, stop_ticks=-1),               # held: stop P-1
    MixOrder("iceberg", BUY, LIMIT, GTC, 0, 3, display_lots=1),           # rests 3q at P, showing q
    MixOrder("FOK limit", SELL, LIMIT, FOK, 0, 1),                        # trades q at P
    MixOrder("market", SELL, MARKET, IOC, 0, 1),                          # trades q at P
    MixOrder("post-only", SELL, LIMIT, GTC, 1, 2, post_only=True),        # rests 2q at P+1
    MixOrder("IOC limit", BUY, LIMIT, IOC, 1, 1, joined=True),            # trades at P+1: the stop-limit
    MixOrder("IOC limit", SELL, LIMIT, IOC, 0, 1),                        # triggers and buys the rest; back to P
    MixOrder("GTD limit", BUY, LIMIT, GTD, 0, 1),                         # rests q at P
    MixOrder("GTC limit", BUY, LIMIT, GTC, -1, 2),                        # rests 2q at P-1
    MixOrder("IOC limit", SELL, LIMIT, IOC, -1, 2, joined=True),          # trades P, P-1: the stop triggers
    MixOrder("GTC limit", SELL, LIMIT, GTC, 0, 1, joined=True),           # and sells the rest;
    MixOrder("IOC limit", BUY, LIMIT, IOC, 0, 1),                         # back to P
    MixOrder("GTC limit", BUY, LIMIT, GTC, 0, 2),                         # rests 2q at P
    MixOrder("STP cancel-taker", SELL, LIMIT, IOC, 0, 1, stp=STP.CANCEL_TAKER),  # canceled, no trade
    MixOrder("STP decrement", SELL, LIMIT, GTC, 0, 1, stp=STP.DECREMENT),        # both shrink by q
    MixOrder("STP cancel-maker", SELL, LIMIT, GTC, 0, 2, stp=STP.CANCEL_MAKER),  # cancels the bid, rests
    MixOrder("STP cancel-both", BUY, LIMIT, GTC, 0, 1, stp=STP.CANCEL_BOTH),     # both canceled: book empty
    MixOrder("GTC limit", BUY, LIMIT, GTC, 0, 1),
    MixOrder("GTC limit", SELL, LIMIT, GTC, 0, 1),                        # trades q at P
)
"""The advanced mix's cycle (see the module docstring); the comments say what each order does."""
ADVANCED_FILLS, ADVANCED_TRIGGERS = 20, 2
"""`OrderFilled` and `StopTriggered` reports of one cycle, alone on an empty book."""


def mix_shares(mix: tuple[MixOrder, ...]) -> list[tuple[str, int]]:
    """(kind, orders per cycle) of ``mix``, in the order kinds first appear."""
    counts: dict[str, int] = {}
    for order in mix:
        counts[order.kind] = counts.get(order.kind, 0) + 1
    return list(counts.items())


def mix_fields(mix: tuple[MixOrder, ...], symbol: str, price: int, tick: int, quantity: int, expire_at: int
               ) -> list[tuple]:
    """`EnterOrder`'s fields after the client order id for each order of ``mix`` around ``price``
    (``expire_at`` for the GTD ones)."""
    return [(symbol, o.side, o.order_type, o.tif, 0 if o.order_type in (MARKET, STOP) else price + o.ticks * tick,
             o.lots * quantity, price + o.stop_ticks * tick if o.stop_ticks else 0, o.display_lots * quantity,
             int(OrderFlags.POST_ONLY) if o.post_only else 0, o.stp, expire_at if o.tif == GTD else 0)
            for o in mix]


MAX_JOINED = 3
"""The longest run of orders of `ADVANCED_MIX` that share a frame."""
GTD_SLACK_S = 3600.0
"""The advanced mix's GTD orders expire this long after the run's end: never during it."""

RESULT_KEYS = (
    "sent",
    "acked",
    "rejected",
    "fills",
    "lost",
    "duration_s",
    "orders_per_s",
    "ack_p50_us",
    "ack_p99_us",
    "ack_p999_us",
    "ack_max_us",
    "ack_max_at_s",
    "ack_tail_pieces",
    "send_lag_max_us",
    "orders_per_frame",
)
TAIL_PIECE_S = 0.05
"""The pieces of a run `ack_tail_pieces` counts (by scheduled time): 50 ms, a hundred in a run of 5 s."""


def next_send(start: float, sent: int, rate: float, sent_at: float, interval: float) -> float:
    """When the next frame may go, after ``sent`` orders were sent by a send at ``sent_at``: at the
    next order's scheduled time, and ``interval`` (`send_interval`) after that send. An answer that
    wakes the loop before then sends nothing."""
    return max(start + sent / rate, sent_at + interval)


def due(elapsed: float, rate: float, total: int) -> int:
    """How many orders are due ``elapsed`` seconds after the start: order i is due at i / rate."""
    if elapsed < 0:
        return 0
    return min(total, int(elapsed * rate) + 1)


def latencies_us(answered_at: np.ndarray, start: float, rate: float) -> np.ndarray:
    """Latency in µs of every answered order (NaN in ``answered_at`` = unanswered, left out)."""
    scheduled = start + np.arange(len(answered_at)) / rate
    answered = ~np.isnan(answered_at)
    return (answered_at[answered] - scheduled[answered]) * 1e6


def tail_pieces(answered: np.ndarray, latency: np.ndarray, p99: float, rate: float) -> list[int]:
    """``[holding, pieces]`` (``ack_tail_pieces``) of the orders ``answered`` (their indices in the
    schedule, at least one) with ``latency`` (theirs, in that order) and its ``p99``: of the
    `TAIL_PIECE_S` pieces of the schedule with an answered order, how many hold one slower than
    the p99."""
    piece = answered // (rate * TAIL_PIECE_S)
    return [len(np.unique(piece[latency > p99])), len(np.unique(piece))]


def summarize(
    answered_at: np.ndarray, rejected: int, fills: int, sent: int, start: float, rate: float, end: float,
    send_lag_s: float = 0.0, frames: int = 0,
) -> dict:
    """The result object (keys `RESULT_KEYS`) from the answer times of the ``sent`` orders, the
    longest wait to be sent, ``send_lag_s``, and the ``frames`` they were sent in."""
    latency = latencies_us(answered_at[:sent], start, rate)
    answered = len(latency)
    last_answer = float(np.nanmax(answered_at[:sent])) if answered else start
    duration = max(end, last_answer) - start
    if answered:
        percentiles = np.percentile(latency, [50, 99, 99.9])
        p50, p99, p999 = (round(float(v), 1) for v in percentiles)
        worst = int(np.argmax(latency))
        longest = round(float(latency[worst]), 1)
        indices = np.flatnonzero(~np.isnan(answered_at[:sent]))
        longest_at = round(float(indices[worst] / rate), 3)
        tail = tail_pieces(indices, latency, percentiles[1], rate)
    else:
        p50 = p99 = p999 = longest = longest_at = tail = None
    return {
        "sent": sent,
        "acked": answered - rejected,
        "rejected": rejected,
        "fills": fills,
        "lost": sent - answered,
        "duration_s": round(duration, 3),
        "orders_per_s": round(answered / duration, 1) if duration > 0 else 0.0,
        "ack_p50_us": p50,
        "ack_p99_us": p99,
        "ack_p999_us": p999,
        "ack_max_us": longest,
        "ack_max_at_s": longest_at,
        "ack_tail_pieces": tail,
        "send_lag_max_us": round(send_lag_s * 1e6, 1),
        "orders_per_frame": round(sent / frames, 1) if frames else None,
    }


class Schedule:
    """Orders ``0 .. total - 1`` sent over a ZeroMQ socket on a fixed schedule, and when each
    was answered (see the module docstring). Subclasses say how a batch is sent and how the
    answers queued on the socket are read; the loop and the measurement are shared, so the
    transport floor (`benchmarks.floor`) is measured exactly as the exchange is.

    Invariant: ``outstanding`` is the number of sent orders not yet answered, and
    ``answered_at[i]`` is NaN until order ``i``'s first answer was read.
    """

    def __init__(self, socket: zmq.Socket, rate: float, duration: float, batch_max: int, multiple: int = 1
                 ) -> None:
        self.socket = socket
        self.rate = rate
        self.total = -(-max(1, round(rate * duration)) // multiple) * multiple
        """Orders to send: rate x duration, rounded up to a multiple of ``multiple``."""
        self.batch_max = batch_max
        self.answered_at = np.full(self.total, np.nan)
        self.rejected = 0
        self.fills = 0
        self.sent = 0
        self.outstanding = 0
        self.send_lag = 0.0
        """The longest an order has waited past its scheduled time to be sent, s."""
        self.frames_sent = 0
        """Frames sent (`send` calls)."""
        self._fd = socket.getsockopt(zmq.FD)

    def send(self, batch: range) -> None:
        """Send orders ``batch`` (consecutive indices) in one frame."""
        raise NotImplementedError

    def read_ready(self) -> None:
        """Read every answer already queued, without waiting, and record it."""
        raise NotImplementedError

    def keep_alive(self) -> None:
        """Called once per wake-up (a session's heartbeat)."""

    def split_point(self, count: int) -> int:
        """The largest ``n <= count`` such that orders ``0 .. n - 1`` may be sent without order ``n``
        (which a frame must not separate from the ones before it); any ``n`` here."""
        return count

    def run(self, drain_s: float, stop=lambda: False) -> dict:
        """Send on schedule, read answers as they come; then wait up to ``drain_s`` for the rest.

        One iteration per wake-up: send what is due once the next send's time has come
        (`next_send`), read what is queued, wait on the socket's descriptor until the next send
        or an answer; so a frame holds what fell due in a whole interval.
        (This loop is as cheap as it can be because it shares the machine with the exchange it
        measures.)
        """
        rate, total = self.rate, self.total
        interval = send_interval(rate)
        start = send_at = time.perf_counter()
        while self.sent < total and not stop():
            sent_at = time.perf_counter()
            if sent_at >= send_at:
                self.send_lag = max(self.send_lag, sent_at - start - self.sent / rate)
                self._send_until(due(sent_at - start, rate, total))
                send_at = next_send(start, self.sent, rate, sent_at, interval)
            self.read_ready()
            wait = send_at - time.perf_counter()
            if wait > 0 and self._wait_readable(wait):
                self.read_ready()
            self.keep_alive()
        end = time.perf_counter()
        deadline = end + drain_s
        while self.outstanding > 0 and (left := deadline - time.perf_counter()) > 0:
            if self._wait_readable(min(0.1, left)):
                self.read_ready()
            self.keep_alive()
        return summarize(self.answered_at, self.rejected, self.fills, self.sent, start, rate, end, self.send_lag,
                         self.frames_sent)

    def _wait_readable(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for an answer, with the sub-millisecond resolution
        of ``select`` (ZeroMQ's own poll counts whole milliseconds, which would delay both
        the next send and the reading of answers).

        The ZeroMQ descriptor is edge-triggered: it only says "look at ZMQ_EVENTS", so
        that is read before waiting (which re-arms it) and after.
        """
        if queued(self.socket):
            return True
        select.select([self._fd], [], [], timeout)
        return queued(self.socket)

    def _send_until(self, count: int) -> None:
        count = self.split_point(count)
        while self.sent < count:
            batch = range(self.sent, self.split_point(min(count, self.sent + self.batch_max)))
            self.send(batch)
            self.frames_sent += 1
            self.outstanding += len(batch)
            self.sent = batch.stop


class LoadGenerator(Schedule):
    """One run at a fixed offered rate over a logged-on client: GTC limit orders, alternating
    buy and sell at one price; an order is answered by its `OrderAccepted` or `OrderRejected`.

    ``fields`` (a cycle of `EnterOrder` fields after the client order id, order ``i`` taking
    ``fields[i % len(fields)]``) and ``joined`` (whether each must share a frame with the next)
    make another flow (`advanced` builds the advanced mix's), sent in whole cycles.
    """

    def __init__(
        self, client: ExchangeClient, symbol: str, price: int, quantity: int, rate: float, duration: float,
        batch_max: int, fields: list[tuple] | None = None, joined: tuple[bool, ...] = (),
    ) -> None:
        # Pre-built field tuples: only the client order id differs between orders.
        self._fields = fields or [(symbol, BUY, LIMIT, GTC, price, quantity),
                                  (symbol, SELL, LIMIT, GTC, price, quantity)]
        self._joined = joined
        super().__init__(client.socket, rate, duration, batch_max, len(fields) if fields else 1)
        self.client = client
        self.first_id = client.reserve_client_order_ids(self.total)
        self.triggered = 0
        self.reject_reasons: dict[str, int] = {}

    @classmethod
    def advanced(cls, client: ExchangeClient, symbol: str, price: int, tick: int, quantity: int, rate: float,
                 duration: float, batch_max: int, expire_at: int) -> "LoadGenerator":
        """The advanced mix (`ADVANCED_MIX`) around ``price``; GTD orders expire at ``expire_at``."""
        return cls(client, symbol, price, quantity, rate, duration, batch_max,
                   mix_fields(ADVANCED_MIX, symbol, price, tick, quantity, expire_at),
                   tuple(order.joined for order in ADVANCED_MIX))

    def split_point(self, count: int) -> int:
        joined, cycle = self._joined, len(self._fields)
        if joined:
            while 0 < count < self.total and joined[(count - 1) % cycle]:
                count -= 1
        return count

    def send(self, batch: range) -> None:
        fields, first, cycle = self._fields, self.first_id, len(self._fields)
        self.client.send_batch([EnterOrder(first + i, *fields[i % cycle]) for i in batch])

    def keep_alive(self) -> None:
        self.client.keep_alive()

    def read_ready(self) -> None:
        messages = self.client.receive_ready()
        if not messages:
            return
        now = time.perf_counter()
        answered_at, first, total = self.answered_at, self.first_id, self.total
        for message in messages:
            kind = type(message)
            if kind is OrderAccepted or kind is OrderRejected:
                index = message.client_order_id - first
                if 0 <= index < total:
                    answered_at[index] = now
                    self.outstanding -= 1
                if kind is OrderRejected:
                    self.rejected += 1
                    name = RejectReason(message.reason).name
                    self.reject_reasons[name] = self.reject_reasons.get(name, 0) + 1
            elif kind is OrderFilled:
                self.fills += 1
            elif kind is StopTriggered:
                self.triggered += 1
        ended = self.client.ended
        if ended is not None:
            raise SessionEnded(ended.reason, ended.text)


def main(config: Config, argv: list[str]) -> int:
    return runtime.run(lambda args: _main(config, args), argv)


def mix_help() -> str:
    """The ``--help`` text of the advanced mix: its cycle's kinds with their counts and shares."""
    cycle = len(ADVANCED_MIX)
    rows = [f"  {kind:<18} {count:>2} of {cycle}  {100 * count / cycle:>3.0f} %" for kind, count in
            mix_shares(ADVANCED_MIX)]
    return "\n".join([
        f"--mix advanced sends a cycle of {cycle} orders, repeated: prices P (the",
        "reference price) and one tick either side, quantities 1 to 3 minimum quantities,",
        "self-trade prevention mode NONE unless named:", *rows,
        "Each cycle starts and ends with an empty book and a last trade at P; it makes",
        f"{ADVANCED_FILLS // 2} trades and triggers both stops. It assumes the generator is alone on",
        "the symbol. See clients/loadgen.py.",
    ])


def _main(config: Config, argv: list[str]) -> int:
    parser = runtime.Parser(prog="main.py -c loadgen", description="Drive the exchange at a fixed offered rate.",
                            epilog=mix_help(), formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=positive_float, required=True, help="offered orders per second")
    parser.add_argument("--duration", type=positive_float, required=True, help="seconds of schedule")
    parser.add_argument("--batch-max", type=positive_int, default=1000,
                        help=f"most orders in one frame (default: 1000, at most {MAX_BATCH})")
    parser.add_argument("--symbol", default="ACME", help="instrument (default: ACME)")
    parser.add_argument("--drain", type=positive_float, default=5.0,
                        help="seconds to wait for outstanding answers after the schedule (default: 5)")
    parser.add_argument("--mix", choices=("limit", "advanced"), default="limit",
                        help="the order flow: limit (default), GTC limits alternating buy and sell at one price; "
                             "advanced, every kind of order (below)")
    runtime.add_credentials(parser, trader="load")
    args = parser.parse_args(argv)
    if args.batch_max > MAX_BATCH:
        raise runtime.UsageError(f"--batch-max must be at most {MAX_BATCH}")
    if args.mix == "advanced" and args.batch_max < MAX_JOINED:
        raise runtime.UsageError(f"--batch-max must be at least {MAX_JOINED} with --mix advanced")
    instrument = runtime.instrument(config, args.symbol)
    price = instrument.reference_price - instrument.reference_price % instrument.tick_size
    quantity = instrument.min_quantity
    client = runtime.logged_on_client(config, args.trader, runtime.api_key(args))
    stop = runtime.StopFlag()
    try:
        runtime.wait_until_tradable(client, args.symbol)
        if args.mix == "advanced":
            prime(client, args.symbol, price, quantity)
            expire_at = time.time_ns() + int((args.duration + args.drain + GTD_SLACK_S) * 1e9)
            generator = LoadGenerator.advanced(client, args.symbol, price, instrument.tick_size, quantity, args.rate,
                                               args.duration, args.batch_max, expire_at)
        else:
            generator = LoadGenerator(client, args.symbol, price, quantity, args.rate, args.duration, args.batch_max)
        collector.settle()
        result = generator.run(args.drain, stop=lambda: bool(stop))
        if args.mix == "advanced":
            result |= {"triggered": generator.triggered, "reject_reasons": generator.reject_reasons}
        client.mass_cancel(args.symbol)
    finally:
        client.close()
    print(json.dumps(result))
    return 0


def prime(client: ExchangeClient, symbol: str, price: int, quantity: int, timeout: float = 10.0) -> None:
    """Trade ``quantity`` at ``price`` with itself (a GTC buy, then an IOC sell), so that the last trade
    the TES knows is ``price`` before the advanced mix's first stops; `UsageError` if it does not fill."""
    buy = client.enter_order(symbol, BUY, LIMIT, GTC, price, quantity, stp=STP.NONE)
    sell = client.enter_order(symbol, SELL, LIMIT, IOC, price, quantity, stp=STP.NONE)
    filled: set[int] = set()
    deadline = time.monotonic() + timeout
    while filled != {buy, sell}:
        left = deadline - time.monotonic()
        if left <= 0:
            raise runtime.UsageError(f"the advanced mix's first trade at {price} did not fill within {timeout:g}s: "
                                     f"is the book of {symbol} empty?")
        for message in client.receive(left):
            if type(message) is OrderRejected and message.client_order_id in (buy, sell):
                raise runtime.UsageError(f"the advanced mix's first trade was refused: {message.text} "
                                         f"({int(message.reason)})")
            if type(message) is OrderFilled and message.leaves == 0:
                filled.add(message.client_order_id)
