"""Random order flow: ``python main.py -c random --trader flow1 --key flow1-demo-key --symbol ACME
[--rate N] [--duration S] [--max-open N] [--max-position Q] [--seed N]``.

Actions arrive as a Poisson process of ``--rate`` per second. Each is, at random:

=================  ======  ===============================================================
action             share   price
=================  ======  ===============================================================
cancel             20 %    one of its open orders (skipped when it has none)
passive limit GTC  45 %    1-10 ticks on its own side of the fair value (may rest)
aggressive IOC     20 %    through the opposite best price by 0-2 ticks (trades if any)
market IOC         15 %    none
=================  ======  ===============================================================

The fair value is the mid of the book, else the last trade, else the reference
price (a crossed book's mid is not used). Quantities are 1-5 lots. With ``--max-open``
orders open it cancels instead of adding; beyond ``--max-position`` either way it only
trades back towards flat.

In a call it sends its passive limits and market orders (which wait for the uncross) and
its cancels; its aggressive IOC orders are held back (the call refuses IOC limits). In a
halt it only cancels. The actions it holds back are counted (``held back``), not sent.
"""

from clients import runtime
from clients.bot import Bot, bot_parser, run_bot
from config.arguments import positive_float, positive_int
from config.settings import Config
from engine.types import OrderType, Side, TimeInForce

CANCEL, PASSIVE, AGGRESSIVE = 0.20, 0.65, 0.85
"""Cumulative shares of the actions; the rest are market orders."""
MAX_LOTS = 5
PASSIVE_TICKS = 10
THROUGH_TICKS = 2


class RandomTrader(Bot):
    kind = "random"

    def __init__(self, *args, rate: float, max_open: int, max_position: int, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.rate = rate
        self.max_open = max_open
        self.max_position = max_position

    def step(self) -> None:
        self.interval = self.rng.expovariate(self.rate)
        idle = [order for order in self.live.values() if not order.busy]
        draw = self.rng.random()
        if idle and (draw < CANCEL or len(self.live) + len(self.entered) >= self.max_open):
            self.cancel(self.rng.choice(idle))
            return
        if len(self.live) + len(self.entered) >= self.max_open:
            return
        side = self.choose_side()
        tick = self.instrument.tick_size
        sign = 1 if side == Side.BUY else -1
        if draw < PASSIVE:
            fair = self.fair_value() - sign * tick * self.rng.randint(1, PASSIVE_TICKS)
            price = self.tick_below(fair) if side == Side.BUY else self.tick_above(fair)
            self.send(side, OrderType.LIMIT, TimeInForce.GTC, price)
        elif draw < AGGRESSIVE:
            best = self.feed.best_ask() if side == Side.BUY else self.feed.best_bid()
            through = best[0] if best else round(self.fair_value())
            price = through + sign * tick * self.rng.randint(0, THROUGH_TICKS)
            self.send(side, OrderType.LIMIT, TimeInForce.IOC, self.tick_below(price))
        else:
            self.send(side, OrderType.MARKET, TimeInForce.IOC, 0)

    def choose_side(self) -> Side:
        if self.position >= self.max_position:
            return Side.SELL
        if self.position <= -self.max_position:
            return Side.BUY
        return Side.BUY if self.rng.random() < 0.5 else Side.SELL

    def send(self, side: Side, order_type: OrderType, tif: TimeInForce, price: int) -> None:
        valued_at = price or self.feed.last_price or self.instrument.reference_price
        quantity = self.round_quantity(self.instrument.lot_size * self.rng.randint(1, MAX_LOTS), valued_at)
        if quantity:
            self.enter(side, order_type, tif, price, quantity)


def main(config: Config, argv: list[str]) -> int:
    return runtime.run(lambda args: _main(config, args), argv)


def _main(config: Config, argv: list[str]) -> int:
    parser = bot_parser("random", "Send random limit, IOC and market orders and cancels.")
    parser.add_argument("--rate", type=positive_float, default=2.0,
                        help="actions per second on average (default: 2)")
    parser.add_argument("--max-open", type=positive_int, default=20,
                        help="most open orders at once (default: 20)")
    parser.add_argument("--max-position", type=positive_int,
                        help="largest position either way (default: 100 times the lot size)")
    args = parser.parse_args(argv)

    def make(client, feed, instrument, limits):
        return RandomTrader(
            client, feed, instrument, limits, 1.0 / args.rate, args.seed,
            rate=args.rate, max_open=args.max_open, max_position=args.max_position or 100 * instrument.lot_size,
        )

    return run_bot(config, args, make)
