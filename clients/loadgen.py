"""Load generator: the whole pipeline (client -> TES -> OBS -> TES -> client) at a fixed offered rate.

``python main.py -c loadgen --rate R --duration S [--batch-max N] [--symbol ACME]
[--trader load --key load-demo-key] [--drain S]``

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
GTC limit orders of the instrument's minimum quantity at one price (the reference
price), alternating buy and sell: every sell fills the buy before it, so the book
stays at most one order deep however long the run.

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
"""

import json
import select
import time

import numpy as np
import zmq

from clients import runtime
from clients.client import ExchangeClient, SessionEnded
from config.arguments import positive_float, positive_int
from config.settings import Config
from engine.types import OrderType, Side, TimeInForce
from servers import collector
from servers.protocol import MAX_BATCH, EnterOrder, OrderAccepted, OrderFilled, OrderRejected

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
)


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


def summarize(
    answered_at: np.ndarray, rejected: int, fills: int, sent: int, start: float, rate: float, end: float
) -> dict:
    """The result object (keys `RESULT_KEYS`) from the answer times of the ``sent`` orders."""
    latency = latencies_us(answered_at[:sent], start, rate)
    answered = len(latency)
    last_answer = float(np.nanmax(answered_at[:sent])) if answered else start
    duration = max(end, last_answer) - start
    if answered:
        p50, p99, p999 = (round(float(v), 1) for v in np.percentile(latency, [50, 99, 99.9]))
    else:
        p50 = p99 = p999 = None
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
    }


class Schedule:
    """Orders ``0 .. total - 1`` sent over a ZeroMQ socket on a fixed schedule, and when each
    was answered (see the module docstring). Subclasses say how a batch is sent and how the
    answers queued on the socket are read; the loop and the measurement are shared, so the
    transport floor (`benchmarks.floor`) is measured exactly as the exchange is.

    Invariant: ``outstanding`` is the number of sent orders not yet answered, and
    ``answered_at[i]`` is NaN until order ``i``'s first answer was read.
    """

    def __init__(self, socket: zmq.Socket, rate: float, duration: float, batch_max: int) -> None:
        self.socket = socket
        self.rate = rate
        self.total = max(1, round(rate * duration))
        self.batch_max = batch_max
        self.answered_at = np.full(self.total, np.nan)
        self.rejected = 0
        self.fills = 0
        self.sent = 0
        self.outstanding = 0
        self._fd = socket.getsockopt(zmq.FD)

    def send(self, batch: range) -> None:
        """Send orders ``batch`` (consecutive indices) in one frame."""
        raise NotImplementedError

    def read_ready(self) -> None:
        """Read every answer already queued, without waiting, and record it."""
        raise NotImplementedError

    def keep_alive(self) -> None:
        """Called once per wake-up (a session's heartbeat)."""

    def run(self, drain_s: float, stop=lambda: False) -> dict:
        """Send on schedule, read answers as they come; then wait up to ``drain_s`` for the rest.

        One iteration per wake-up: send what is due, read what is queued, wait on the
        socket's descriptor until the next send or an answer. (This loop is as cheap as it
        can be because it shares the machine with the exchange it measures.)
        """
        rate, total = self.rate, self.total
        interval = send_interval(rate)
        start = time.perf_counter()
        while self.sent < total and not stop():
            sent_at = time.perf_counter()
            self._send_until(due(sent_at - start, rate, total))
            self.read_ready()
            wait = max(start + self.sent / rate, sent_at + interval) - time.perf_counter()
            if wait > 0 and self._wait_readable(wait):
                self.read_ready()
            self.keep_alive()
        end = time.perf_counter()
        deadline = end + drain_s
        while self.outstanding > 0 and (left := deadline - time.perf_counter()) > 0:
            if self._wait_readable(min(0.1, left)):
                self.read_ready()
            self.keep_alive()
        return summarize(self.answered_at, self.rejected, self.fills, self.sent, start, rate, end)

    def _wait_readable(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for an answer, with the sub-millisecond resolution
        of ``select`` (ZeroMQ's own poll counts whole milliseconds, which would delay both
        the next send and the reading of answers).

        The ZeroMQ descriptor is edge-triggered: it only says "look at ZMQ_EVENTS", so
        that is read before waiting (which re-arms it) and after.
        """
        socket = self.socket
        if socket.get(zmq.EVENTS) & zmq.POLLIN:
            return True
        select.select([self._fd], [], [], timeout)
        return bool(socket.get(zmq.EVENTS) & zmq.POLLIN)

    def _send_until(self, count: int) -> None:
        while self.sent < count:
            batch = range(self.sent, min(count, self.sent + self.batch_max))
            self.send(batch)
            self.outstanding += len(batch)
            self.sent = batch.stop


class LoadGenerator(Schedule):
    """One run at a fixed offered rate over a logged-on client: GTC limit orders, alternating
    buy and sell at one price; an order is answered by its `OrderAccepted` or `OrderRejected`."""

    def __init__(
        self, client: ExchangeClient, symbol: str, price: int, quantity: int, rate: float, duration: float,
        batch_max: int,
    ) -> None:
        super().__init__(client.socket, rate, duration, batch_max)
        self.client = client
        self.first_id = client.reserve_client_order_ids(self.total)
        # Two pre-built field tuples: only the client order id differs between orders.
        self._fields = (
            (symbol, Side.BUY, OrderType.LIMIT, TimeInForce.GTC, price, quantity),
            (symbol, Side.SELL, OrderType.LIMIT, TimeInForce.GTC, price, quantity),
        )

    def send(self, batch: range) -> None:
        fields, first = self._fields, self.first_id
        self.client.send_batch([EnterOrder(first + i, *fields[i & 1]) for i in batch])

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
            elif kind is OrderFilled:
                self.fills += 1
        ended = self.client.ended
        if ended is not None:
            raise SessionEnded(ended.reason, ended.text)


def main(config: Config, argv: list[str]) -> int:
    return runtime.run(lambda args: _main(config, args), argv)


def _main(config: Config, argv: list[str]) -> int:
    parser = runtime.Parser(prog="main.py -c loadgen", description="Drive the exchange at a fixed offered rate.")
    parser.add_argument("--rate", type=positive_float, required=True, help="offered orders per second")
    parser.add_argument("--duration", type=positive_float, required=True, help="seconds of schedule")
    parser.add_argument("--batch-max", type=positive_int, default=1000,
                        help=f"most orders in one frame (default: 1000, at most {MAX_BATCH})")
    parser.add_argument("--symbol", default="ACME", help="instrument (default: ACME)")
    parser.add_argument("--drain", type=positive_float, default=5.0,
                        help="seconds to wait for outstanding answers after the schedule (default: 5)")
    runtime.add_credentials(parser, trader="load")
    args = parser.parse_args(argv)
    if args.batch_max > MAX_BATCH:
        raise runtime.UsageError(f"--batch-max must be at most {MAX_BATCH}")
    instrument = runtime.instrument(config, args.symbol)
    price = instrument.reference_price - instrument.reference_price % instrument.tick_size
    client = runtime.logged_on_client(config, args.trader, runtime.api_key(args))
    stop = runtime.StopFlag()
    try:
        runtime.wait_until_tradable(client, args.symbol)
        generator = LoadGenerator(
            client, args.symbol, price, instrument.min_quantity, args.rate, args.duration, args.batch_max
        )
        collector.settle()
        result = generator.run(args.drain, stop=lambda: bool(stop))
        client.mass_cancel(args.symbol)
    finally:
        client.close()
    print(json.dumps(result))
    return 0
