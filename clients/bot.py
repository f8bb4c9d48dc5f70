"""What the bots share: one session, one symbol's market data, their own orders, a timed loop.

`Bot.run` logs the start with a ``READY <kind> <trader> <symbol>`` line, then
alternates between reading reports and market data and calling `step` every
``interval`` seconds, until the duration ends or SIGINT/SIGTERM arrives. It then
mass-cancels the bot's orders in its symbol, logs out and logs a summary line (`servers.logs`, on
standard output, as `<kind>-<trader>`).
The session ending on the exchange's side (a `LoggedOut` read, or `SessionEnded`
from a call: say, someone else logged on as the bot's trader) stops the bot with a
line saying why and exit status 1; ``python main.py up`` then starts it again
after a back-off (`servers.launcher`).

Order bookkeeping (`BotOrder`) follows the execution reports: an order is
*pending* until accepted or rejected, *busy* while a cancel or replace of it is
unanswered, and *done* once the book holds none of it.

Trading phases
--------------
A bot follows its symbol's phase on the market data (`MarketDataClient.phase`, read
before each step) and sends only what the phase takes (`phase_takes`, the book's
rule): in a halt no new order and no replace but a reduction in place (its cancels
still go); in a call no stop and no IOC or FOK limit order (GTC limits rest, market
orders wait for the uncross); in continuous trading everything, as before. `enter`
returns None for an order it holds back (counted as ``held back``). A book in a call
may be crossed: `fair_value` then ignores its mid (no one can trade at it) and takes
the last trade, else the reference price. A refusal for the phase (NOT_ALLOWED_IN_PHASE,
2004: the book changed phase before the market data said so) pauses new orders for
`PHASE_PAUSE_S`, or until the feed shows the phase changing, so a bot never retries
into a refusing book.

Market data
-----------
A bot prices from its feed's book. While that book is not synced (a break in its sequence, or the
connection to the book server lost: `MarketDataClient`) it is stale, so the bot holds back new
orders and replaces that move an order (its cancels still go), logging when the feed is lost and
when it is back.
"""

import logging
import random
import sys
import time

from clients import runtime
from clients.client import ExchangeClient, SessionEnded
from clients.market_data import MarketDataClient
from clients.terminal import phase_text
from config.arguments import positive_float
from config.settings import Config, InstrumentConfig, TraderConfig
from engine.types import OrderType, Phase, RejectReason, Side, TimeInForce
from servers import logs
from servers.protocol import (
    CancelRejected,
    LoggedOut,
    MassCancelDone,
    OrderAccepted,
    OrderCanceled,
    OrderExpired,
    OrderFilled,
    OrderRejected,
    OrderReplaced,
    ReplaceRejected,
    SessionRejected,
)

log = logging.getLogger("bot")
STATUS_EVERY_S = 30.0
SHUTDOWN_WAIT_S = 2.0
PHASE_PAUSE_S = 1.0
"""New orders wait this long after a NOT_ALLOWED_IN_PHASE refusal, unless the phase is seen changing first."""
CONDUCT = {Phase.CONTINUOUS: "trading normally", Phase.CALL: "sending only what the call takes",
           Phase.HALTED: "sending no new orders"}


def phase_takes(phase: Phase, order_type: OrderType, tif: TimeInForce) -> bool:
    """Whether a book in ``phase`` takes a new order of ``order_type`` and ``tif`` (`engine.rules`,
    step 8): a halt takes none; a call takes no stop and no IOC or FOK limit order (a market
    order waits there for the uncross); continuous trading takes all."""
    if phase == Phase.HALTED:
        return False
    if phase == Phase.CALL:
        if order_type == OrderType.STOP or order_type == OrderType.STOP_LIMIT:
            return False
        return not (order_type == OrderType.LIMIT and tif in (TimeInForce.IOC, TimeInForce.FOK))
    return True


class BotOrder:
    __slots__ = ("client_order_id", "order_id", "side", "order_type", "price", "quantity", "busy", "done")

    def __init__(self, client_order_id: int, side: Side, order_type: OrderType, price: int, quantity: int) -> None:
        self.client_order_id = client_order_id
        self.order_id: int | None = None
        self.side = side
        self.order_type = order_type
        self.price = price
        self.quantity = quantity
        """Open quantity."""
        self.busy = True
        """An answer is outstanding (to the entry, or to a cancel or replace)."""
        self.done = False


class Bot:
    """Base of the bots; subclasses implement `step` (and may override `on_report`)."""

    kind = "bot"

    def __init__(
        self,
        client: ExchangeClient,
        feed: MarketDataClient,
        instrument: InstrumentConfig,
        limits: TraderConfig | None,
        interval: float,
        seed: int | None = None,
    ) -> None:
        self.client = client
        self.feed = feed
        self.instrument = instrument
        self.symbol = instrument.symbol
        self.limits = limits
        self.interval = interval
        self.rng = random.Random(seed)
        self.entered: dict[int, BotOrder] = {}
        """Orders awaiting their acceptance, by client order id."""
        self.live: dict[int, BotOrder] = {}
        """Accepted orders the book still holds, by exchange order id."""
        self.position = 0
        self.fills = 0
        self.volume = 0
        self.orders_sent = 0
        self.rejects: dict[str, int] = {}
        self.ended_by_exchange = False
        self.phase = Phase.CONTINUOUS
        """The symbol's phase as of the last step (`follow_phase`; the first step logs any other)."""
        self.paused_until = 0.0
        """No new orders before this `time.monotonic` (after a refusal for the phase)."""
        self.held_back = 0
        """Orders and replaces not sent because the phase (or a pause) would refuse them, or the
        book is stale."""
        self.synced = True
        """The feed's book was synced as of the last step (`follow_feed`)."""

    # ------------------------------------------------------------ lifecycle

    def run(self, duration: float | None, stop) -> int:
        runtime.wait_until_tradable(self.client, self.symbol)
        # Orders left by an earlier run of this trader are not tracked: clear them first.
        self.client.mass_cancel(self.symbol)
        self.position = self.initial_position()
        print(f"READY {self.kind} {self.client.trader_id} {self.symbol}", flush=True)
        start = time.monotonic()
        next_step = start
        next_status = start + STATUS_EVERY_S
        try:
            while not stop() and not self.ended_by_exchange:
                now = time.monotonic()
                if duration is not None and now - start >= duration:
                    break
                if now >= next_step:
                    self.on_market_data(self.feed.poll(0.0))
                    self.follow_phase()
                    self.follow_feed()
                    self.step()
                    next_step = max(next_step + self.interval, now)
                if now >= next_status:
                    log.info("%s", self.status())
                    next_status = now + STATUS_EVERY_S
                self.handle(self.client.receive(max(0.0, min(next_step, next_status) - time.monotonic())))
        except SessionEnded as exc:
            self.session_lost(exc.text)
        self.shutdown()
        log.info("%s %s %s done: %s", self.kind, self.client.trader_id, self.symbol, self.status())
        return 1 if self.ended_by_exchange else 0

    def initial_position(self) -> int:
        positions = self.client.positions().positions
        return next((p.quantity for p in positions if p.symbol == self.symbol), 0)

    def shutdown(self) -> None:
        if self.ended_by_exchange:
            return
        self.client.mass_cancel(self.symbol)
        deadline = time.monotonic() + SHUTDOWN_WAIT_S
        done = False
        while time.monotonic() < deadline and not (done and not self.live):
            messages = self.client.receive(deadline - time.monotonic())
            self.handle(messages)
            done = done or any(isinstance(m, MassCancelDone) for m in messages)

    def status(self) -> str:
        rejects = ", ".join(f"{name} {count}" for name, count in sorted(self.rejects.items())) or "none"
        return (f"phase {phase_text(self.phase)}, position {self.position}, fills {self.fills}, volume "
                f"{self.volume}, orders sent {self.orders_sent}, held back {self.held_back}, open {len(self.live)}, "
                f"rejects: {rejects}")

    def step(self) -> None:
        raise NotImplementedError

    def on_market_data(self, updates: list) -> None:
        """Hook for subclasses: the market-data messages applied since the last step."""

    def follow_phase(self) -> None:
        """Take the feed's phase; on a change, log it and end a pause (the refusal is explained)."""
        phase = self.feed.phase
        if phase != self.phase:
            self.phase, self.paused_until = phase, 0.0
            log.info("%s %s %s: phase %s: %s", self.kind, self.client.trader_id, self.symbol,
                     phase_text(phase, self.feed.phase_reason, self.feed.phase_until), CONDUCT[phase])

    def follow_feed(self) -> None:
        """Take whether the feed's book is synced; on a change, log it."""
        synced = self.feed.synced
        if synced != self.synced:
            self.synced = synced
            if synced:
                log.info("%s %s %s: market data back at sequence %d", self.kind, self.client.trader_id,
                         self.symbol, self.feed.sequence)
            else:
                lost = "connection lost" if self.feed.lost_at is not None else "gap"
                log.info("%s %s %s: market data %s after sequence %d: holding back new orders until the "
                         "book is rebuilt", self.kind, self.client.trader_id, self.symbol, lost, self.feed.sequence)

    def may_enter(self, order_type: OrderType, tif: TimeInForce) -> bool:
        """Whether a new order of this kind is to be sent now: the phase takes it, no pause holds and
        the book it is priced from is synced."""
        return (phase_takes(self.phase, order_type, tif) and time.monotonic() >= self.paused_until
                and self.synced)

    # ------------------------------------------------------------ orders

    def enter(self, side: Side, order_type: OrderType, tif: TimeInForce, price: int, quantity: int
              ) -> BotOrder | None:
        """Send a new order and track it; None (sending nothing) when `may_enter` says no."""
        if not self.may_enter(order_type, tif):
            self.held_back += 1
            return None
        client_order_id = self.client.enter_order(self.symbol, side, order_type, tif, price, quantity)
        order = BotOrder(client_order_id, side, order_type, price, quantity)
        self.entered[client_order_id] = order
        self.orders_sent += 1
        return order

    def cancel(self, order: BotOrder) -> None:
        if order.order_id is not None and not order.busy and not order.done:
            order.busy = True
            self.client.cancel(order.order_id)

    def replace(self, order: BotOrder, price: int, quantity: int) -> None:
        """Ask to move or resize ``order``; in a halt (or a pause, or with the book stale) only a
        reduction in place is sent."""
        if order.order_id is None or order.busy or order.done:
            return
        in_place = price == order.price and quantity <= order.quantity
        if not in_place and (self.phase == Phase.HALTED or time.monotonic() < self.paused_until or not self.synced):
            self.held_back += 1
            return
        order.busy = True
        self.client.replace(order.order_id, price, quantity)

    def fair_value(self) -> float:
        """Mid of the book (unless it is crossed), else the last trade, else the instrument's
        reference price (ticks)."""
        mid = self.feed.mid()
        if mid is not None and not self.feed.crossed():
            return mid
        if self.feed.last_price is not None:
            return float(self.feed.last_price)
        return float(self.instrument.reference_price)

    def max_quantity(self, price: int) -> int:
        """The largest quantity the instrument and this trader's limits allow at ``price``."""
        cap = self.instrument.max_quantity
        if self.limits is not None:
            cap = min(cap, self.limits.max_order_quantity, self.limits.max_notional // max(price, 1))
        return cap - cap % self.instrument.lot_size

    def round_quantity(self, quantity: int, price: int) -> int:
        """``quantity`` rounded down to lots and clamped to what is allowed (0 if nothing is)."""
        lot = self.instrument.lot_size
        quantity = min(max(quantity - quantity % lot, self.instrument.min_quantity), self.max_quantity(price))
        return quantity if quantity >= self.instrument.min_quantity else 0

    def tick_below(self, price: float) -> int:
        tick = self.instrument.tick_size
        return max(tick, int(price // tick) * tick)

    def tick_above(self, price: float) -> int:
        tick = self.instrument.tick_size
        return max(tick, -int(-price // tick) * tick)

    # ------------------------------------------------------------ reports

    def handle(self, messages: list) -> None:
        for message in messages:
            self.track(message)
            self.on_report(message)

    def on_report(self, message) -> None:
        """Hook for subclasses, called after the bookkeeping of each report."""

    def track(self, m) -> None:
        match m:
            case OrderAccepted():
                order = self.entered.pop(m.client_order_id, None)
                if order is not None:
                    order.order_id, order.busy = m.order_id, False
                    self.live[m.order_id] = order
            case OrderRejected():
                order = self.entered.pop(m.client_order_id, None)
                if order is not None:
                    order.busy, order.done = False, True
                self.count_reject(m.reason)
                self.pause_if_phase(m.reason)
            case OrderFilled():
                self.fills += 1
                self.volume += m.quantity
                self.position += m.quantity if m.side == Side.BUY else -m.quantity
                order = self.live.get(m.order_id)
                if order is not None:
                    order.quantity = m.leaves
                    if m.leaves == 0:
                        self._gone(order)
            case OrderCanceled() | OrderExpired():
                order = self.live.get(m.order_id)
                if order is not None:
                    self._gone(order)
            case OrderReplaced():
                order = self.live.get(m.order_id)
                if order is not None:
                    order.price, order.quantity, order.busy = m.price, m.quantity, False
            case CancelRejected() | ReplaceRejected():
                order = self.live.get(m.order_id)
                if order is not None:
                    order.busy = False
                if m.reason != RejectReason.UNKNOWN_ORDER:
                    self.count_reject(m.reason)
                self.pause_if_phase(m.reason)
            case SessionRejected():
                self.count_reject(m.reason)
            case LoggedOut():
                self.session_lost(m.text)

    def session_lost(self, why: str) -> None:
        """The exchange ended the session: say why, once; the loop ends."""
        if not self.ended_by_exchange:
            log.info("%s %s: logged out by the exchange: %s", self.kind, self.client.trader_id, why)
            self.ended_by_exchange = True

    def _gone(self, order: BotOrder) -> None:
        order.done, order.busy, order.quantity = True, False, 0
        self.live.pop(order.order_id, None)

    def pause_if_phase(self, reason: RejectReason) -> None:
        """After a refusal for the phase, send no new order for `PHASE_PAUSE_S` (see the module docstring)."""
        if reason == RejectReason.NOT_ALLOWED_IN_PHASE:
            self.paused_until = time.monotonic() + PHASE_PAUSE_S

    def count_reject(self, reason: RejectReason) -> None:
        name = RejectReason(reason).name
        self.rejects[name] = self.rejects.get(name, 0) + 1


def bot_parser(kind: str, description: str) -> runtime.Parser:
    """The arguments every bot takes; the caller adds its own."""
    parser = runtime.Parser(prog=f"main.py -c {kind}", description=description)
    runtime.add_credentials(parser)
    parser.add_argument("--symbol", default="ACME", help="instrument to trade (default: ACME)")
    parser.add_argument("--duration", type=positive_float,
                        help="seconds to run (default: until SIGINT/SIGTERM)")
    parser.add_argument("--seed", type=int, help="random seed (default: unpredictable)")
    return parser


def run_bot(config: Config, args, make_bot) -> int:
    """Log on, sync the symbol's market data, build the bot with ``make_bot(client, feed,
    instrument, limits)`` and run it; always log out and close."""
    instrument = runtime.instrument(config, args.symbol)
    limits = next((t for t in config.traders if t.trader_id == args.trader), None)
    stop = runtime.StopFlag()
    client = runtime.logged_on_client(config, args.trader, runtime.api_key(args))
    try:
        with runtime.market_data(config, args.symbol) as feed:
            bot = make_bot(client, feed, instrument, limits)
            logs.configure(f"{bot.kind}-{args.trader}", config.logging.format, sys.stdout)
            return bot.run(args.duration, stop=lambda: bool(stop))
    finally:
        client.close()
