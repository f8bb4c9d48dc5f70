"""Market-making bot: two-sided quotes around a fair value, skewed by inventory.

``python main.py -c marketmaker --trader mm1 --key mm1-demo-key --symbol ACME
[--duration S] [--size Q] [--spread-bps B] [--max-position Q] [--walk-bps B] [--interval S] [--seed N]``

Fair value
----------
It starts at the mid of the book (else the last trade, else the instrument's
reference price). At every step it takes a small random step (``--walk-bps``),
moves a fifth of the way towards each trade printed since the last step (so
flow that lifts its offers moves its price up), and a hundredth of the way back
to the reference price, which keeps a long demo inside the price band. The book's
own mid is not re-read: it is mostly this bot's own quotes. An uncross counts as one
print at its price (`AuctionSummary`), pulled half the way (``AUCTION_PULL``: the price
the whole call agreed on); the trades right behind it (the uncross's fills) are not
counted again.

Quotes
------
One bid and one ask of ``--size`` around the fair value, ``--spread-bps`` apart,
both shifted against the inventory (long: lower, to sell; short: higher) by up
to half the spread at ``--max-position``; at the limit it quotes only the side
that reduces the position. When the fair value moves a quote's price, the quote
is *replaced* (one request in flight per quote); a quote that was filled is
entered again. Sizes respect the instrument and the trader's configured limits.

Phases
------
In a call it keeps quoting GTC limits around its own fair value, as in continuous
trading: they rest and take part in the uncross (its bid stays below its ask, so it
never crosses itself). It does not lean on the indicative uncross price: that moves
with every order of the call, this bot's own included, and nothing trades at it until
the uncross, whose price then pulls the fair value like a print. A crossed book is
never read as a market (`Bot.fair_value`). In a halt it sends nothing new and moves
no quote (the book would refuse both); its resting quotes stay, and so do its cancels
(at the position limit, or on shutdown). Back in continuous trading it quotes as before.
"""

from clients import runtime
from clients.bot import Bot, BotOrder, bot_parser, run_bot
from config.arguments import positive_float, positive_int
from config.settings import Config
from engine.types import OrderType, Side, TimeInForce
from servers.protocol import AuctionSummary, Trade

TRADE_PULL = 0.2
AUCTION_PULL = 0.5
REFERENCE_PULL = 0.01


class MarketMaker(Bot):
    kind = "marketmaker"

    def __init__(self, *args, size: int, spread_bps: float, max_position: int, walk_bps: float, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        reference = self.instrument.reference_price
        self.size = self.round_quantity(size, reference)
        self.half_spread = max(self.instrument.tick_size, reference * spread_bps / 20_000)
        self.max_position = max(max_position, self.size)
        self.walk = reference * walk_bps / 10_000
        self.fair: float | None = None
        self.prints: list[tuple[int, float]] = []
        """(price, pull) of each print since the last step: a trade, or an uncross as a whole."""
        self.after_auction = False
        """The last message was an `AuctionSummary` or one of the trades right behind it."""
        self.quotes: dict[Side, BotOrder | None] = {Side.BUY: None, Side.SELL: None}

    def on_market_data(self, updates: list) -> None:
        for message in updates:
            kind = type(message)
            if kind is AuctionSummary:
                self.prints.append((message.price, AUCTION_PULL))
                self.after_auction = True
            elif kind is Trade:
                if not self.after_auction:
                    self.prints.append((message.price, TRADE_PULL))
            else:
                self.after_auction = False

    def step(self) -> None:
        self.move_fair_value()
        bid, ask = self.quote_prices()
        self.quote(Side.BUY, bid)
        self.quote(Side.SELL, ask)

    def move_fair_value(self) -> None:
        if self.fair is None:
            self.fair = self.fair_value()
        fair = self.fair + self.rng.gauss(0.0, self.walk)
        for price, pull in self.prints:
            fair += pull * (price - fair)
        self.prints.clear()
        self.fair = fair + REFERENCE_PULL * (self.instrument.reference_price - fair)

    def quote_prices(self) -> tuple[int | None, int | None]:
        """(bid, ask) in ticks; None for a side not quoted because of the position limit."""
        skew = -self.half_spread * max(-1.0, min(1.0, self.position / self.max_position))
        bid = self.tick_below(self.fair - self.half_spread + skew)
        ask = max(self.tick_above(self.fair + self.half_spread + skew), bid + self.instrument.tick_size)
        return (
            bid if self.position < self.max_position else None,
            ask if self.position > -self.max_position else None,
        )

    def quote(self, side: Side, price: int | None) -> None:
        order = self.quotes[side]
        if order is not None and order.done:
            order = self.quotes[side] = None
        if order is not None and order.busy:
            return
        if price is None or self.size == 0:
            if order is not None:
                self.cancel(order)
            return
        if order is None:
            self.quotes[side] = self.enter(side, OrderType.LIMIT, TimeInForce.GTC, price, self.size)
        elif order.price != price or order.quantity * 2 < self.size:
            self.replace(order, price, self.size)

    def status(self) -> str:
        fair = "n/a" if self.fair is None else self.instrument.format_price(round(self.fair))
        return f"fair {fair}, {super().status()}"


def main(config: Config, argv: list[str]) -> int:
    return runtime.run(lambda args: _main(config, args), argv)


def _main(config: Config, argv: list[str]) -> int:
    parser = bot_parser("marketmaker", "Quote both sides of one instrument around a fair value.")
    parser.add_argument("--size", type=positive_int, help="quote quantity (default: 10 times the lot size)")
    parser.add_argument("--spread-bps", type=positive_float, default=20.0,
                        help="quoted spread in basis points of the reference price (default: 20)")
    parser.add_argument("--max-position", type=positive_int,
                        help="largest position held either way (default: 20 quote sizes)")
    parser.add_argument("--walk-bps", type=float, default=1.0,
                        help="standard deviation of the fair value's step, in basis points (default: 1)")
    parser.add_argument("--interval", type=positive_float, default=0.25,
                        help="seconds between quote updates (default: 0.25)")
    args = parser.parse_args(argv)

    def make(client, feed, instrument, limits):
        size = args.size or 10 * instrument.lot_size
        return MarketMaker(
            client, feed, instrument, limits, args.interval, args.seed,
            size=size, spread_bps=args.spread_bps, max_position=args.max_position or 20 * size,
            walk_bps=args.walk_bps,
        )

    return run_bot(config, args, make)
