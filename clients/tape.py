"""The tape: ``python main.py -c tape [SYMBOL...]`` prints trades and top-of-book changes as they happen.

One line each, in every symbol's market-data order (all symbols when none is named)::

    14:02:03.123456  ACME  trade   4 @ 100.50  aggressor BUY
    14:02:03.123456  ACME  quote   bid 99.50 x 10  ask 100.50 x 1
    14:02:04.000000  ACME  phase   call (operator)
    14:02:04.500000  ACME  phase   indicative uncross 40 @ 100.05
    14:02:09.000000  ACME  phase   continuous (operator)
    14:02:09.000000  ACME  auction 40 @ 100.05 uncrossed

Phase changes, indicative uncrosses (in a call or a halt: the price and volume the book
would uncross at now, ``none`` when nothing would) and the summary of each uncross, which
comes before its trades, have lines too. The time is the exchange's (UTC), prices are
decimals (the instrument's ``price_scale`` in the configuration), quantities lots; ``--``
is an empty side.
Each symbol is followed by a `MarketDataClient` (a snapshot, then the sequenced
updates): a break in the sequence prints a ``gap`` line, a lost connection to the
book server (it stopped, or went silent: `MarketDataClient`) a ``lost`` line, and
once the book is rebuilt from a new snapshot a ``resync`` line gives its top of book
(the trades and quotes of the gap are not on the tape). Gap, lost and resync lines
carry the time the tape noticed. Ctrl-C or SIGTERM stops it, exit status 0.
"""

import time

import zmq

from clients import runtime
from clients.market_data import MarketDataClient
from clients.terminal import clock, open_feeds, phase_text, side_text, uncross_text, until_interrupted
from config.settings import Config
from engine.instrument import Instrument
from servers.protocol import AuctionSummary, Indicative, PhaseUpdate, Quote, Trade

POLL_MS = 200
"""How long the tape waits for market data before it looks again (snapshot retries need a turn)."""


class SymbolTape:
    """The tape lines of one symbol's feed (anything with `MarketDataClient`'s ``poll`` and views)."""

    def __init__(self, feed: MarketDataClient, instrument: Instrument, width: int) -> None:
        self.feed = feed
        self.instrument = instrument
        self.width = width

    def read(self) -> list[str]:
        """Apply what the feed has waiting; the lines it makes."""
        feed = self.feed
        was_synced, resyncs = feed.synced, feed.resyncs
        lines = [line for message in feed.poll(0) if (line := self.line(message)) is not None]
        if feed.synced and not was_synced:
            lines.append(self._line(time.time_ns(), "resync", f"book rebuilt at sequence {feed.sequence}: "
                                                              f"{self.top()}"))
        if feed.resyncs > resyncs and feed.lost_at is not None:
            lines.append(self._line(feed.lost_at, "lost", f"market data connection lost after sequence "
                                                          f"{feed.sequence}; resyncing once it is back"))
        elif feed.resyncs > resyncs:
            lines.append(self._line(time.time_ns(), "gap", f"market data lost after sequence {feed.sequence}; "
                                                           "resyncing from a snapshot"))
        return lines

    def line(self, message) -> str | None:
        """The line of a trade, a quote, a phase change, an indicative uncross or an auction; None
        for what the tape does not show (depth updates)."""
        kind = type(message)
        if kind is Trade:
            text = f"{message.quantity} @ {self.instrument.format_price(message.price)}"
            return self._line(message.time, "trade", f"{text}  aggressor {message.aggressor.name}")
        if kind is Quote:
            return self._line(message.time, "quote", self.quote(message.bid_price, message.bid_quantity,
                                                                message.ask_price, message.ask_quantity))
        if kind is PhaseUpdate:
            return self._line(message.time, "phase", phase_text(message.phase, message.reason, message.until))
        if kind is Indicative:
            uncross = uncross_text(self.instrument, message.price, message.volume)
            return self._line(message.time, "phase", f"indicative uncross {uncross}")
        if kind is AuctionSummary:
            uncross = uncross_text(self.instrument, message.price, message.volume)
            return self._line(message.time, "auction", f"{uncross} uncrossed")
        return None

    def quote(self, bid_price: int, bid_quantity: int, ask_price: int, ask_quantity: int) -> str:
        return (f"bid {side_text(self.instrument, bid_price, bid_quantity)}  "
                f"ask {side_text(self.instrument, ask_price, ask_quantity)}")

    def top(self) -> str:
        """The feed's top of book as a quote."""
        bid, ask = self.feed.best_bid() or (0, 0), self.feed.best_ask() or (0, 0)
        return self.quote(*bid, *ask)

    def _line(self, nanoseconds: int, kind: str, text: str) -> str:
        return f"{clock(nanoseconds)}  {self.instrument.symbol:<{self.width}}  {kind:<7} {text}"


def main(config: Config, argv: list[str]) -> int:
    return runtime.run(lambda args: _main(config, args), argv)


def _main(config: Config, argv: list[str]) -> int:
    parser = runtime.Parser(prog="main.py -c tape", description="Print trades and top-of-book changes as they happen.")
    parser.add_argument("symbols", nargs="*", metavar="SYMBOL", help="symbols to follow (default: every instrument)")
    parser.add_argument("--timeout", type=float, default=5.0,
                        help="seconds to wait for the order book servers' snapshots (default: 5)")
    args = parser.parse_args(argv)
    symbols = list(dict.fromkeys(symbol.upper() for symbol in args.symbols))
    instruments = [runtime.instrument(config, symbol) for symbol in symbols] or list(config.instruments)
    return until_interrupted(lambda: _follow(config, instruments, args.timeout))


def _follow(config: Config, instruments: list[Instrument], timeout: float) -> None:
    feeds = open_feeds(config, [i.symbol for i in instruments], timeout)
    try:
        width = max(len(i.symbol) for i in instruments)
        tapes = [SymbolTape(feed, instrument, width) for feed, instrument in zip(feeds, instruments, strict=True)]
        poller = zmq.Poller()
        for feed in feeds:
            for socket in feed.sockets:
                poller.register(socket, zmq.POLLIN)
        print(f"tape of {', '.join(i.symbol for i in instruments)}: trades and quotes as they happen, "
              "times UTC (Ctrl-C to stop)", flush=True)
        while True:
            poller.poll(POLL_MS)
            lines = [line for tape in tapes for line in tape.read()]
            if lines:
                print("\n".join(lines), flush=True)
    finally:
        for feed in feeds:
            feed.close()
