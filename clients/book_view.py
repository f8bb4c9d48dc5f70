"""The book ladder: ``python main.py -c book SYMBOL [--levels N]``, one symbol's depth, live.

A price ladder, asks above bids, best prices in the middle::

    ACME  continuous  last 100.10  spread 0.10  sequence 57
     orders   bid qty    price   ask qty   orders
    ──────────────────────────────────────────────
                        100.50        10        2
                        100.30         5        1
                         99.90         7        1
          2        12    99.80

The title names the trading phase. In a call or a halt the book may be crossed (orders
rest without matching): the title says ``crossed`` instead of a spread, and a line under
the ladder says why the book is in that phase (and, for a volatility interruption, until
when; known once the feed has seen the change, as a snapshot carries only the phase),
``call (volatility interruption until 14:02:05.000000)``, and one more the indicative
uncross, the price and volume the call would uncross at now: ``indicative uncross 40 @
100.05`` (``none``: nothing would trade). The last auction the feed has seen is shown in every
phase: ``last auction 40 @ 100.05 at 14:02:05.000000`` (UTC).

The book is a `MarketDataClient`'s: a depth snapshot, then the sequenced updates;
on a gap in the sequence it keeps the last consistent book, says so under the
ladder and asks for a new snapshot. On a terminal the ladder is redrawn in place
(`rich.live.Live`, at most `MAX_FPS` times a second); otherwise each change
prints the whole ladder again, followed by an empty line, so the output can be
read by a program. Ctrl-C or SIGTERM stops it, exit status 0.
"""

import time

from rich import box
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from clients import runtime
from clients.market_data import BookSync, MarketDataClient
from clients.terminal import clock, open_feeds, phase_text, uncross_text, until_interrupted
from config.settings import Config
from engine.instrument import Instrument
from engine.types import Phase

POLL_S = 0.2
MAX_FPS = 20


def ladder(instrument: Instrument, book: BookSync | MarketDataClient, levels: int) -> Group:
    """The ladder of ``book`` (its ``levels`` best prices a side): a title line, the table and the
    lines there is something to say in: the phase and its indicative uncross outside continuous
    trading, the last auction, and the state of the book."""
    price = instrument.format_price
    bids, asks = book.depth(levels)
    last = "--" if book.last_price is None else price(book.last_price)
    title = [instrument.symbol, phase_text(book.phase), f"last {last}"]
    if bids and asks:
        title.append(f"spread {price(asks[0][0] - bids[0][0])}" if asks[0][0] > bids[0][0] else "crossed")
    title.append(f"sequence {book.sequence}")
    table = Table(box=box.SIMPLE_HEAD, show_edge=False)
    for header in ("orders", "bid qty", "price", "ask qty", "orders"):
        table.add_column(header, justify="right")
    for level_price, quantity, orders in reversed(asks):
        table.add_row("", "", price(level_price), str(quantity), str(orders), style="red")
    for level_price, quantity, orders in bids:
        table.add_row(str(orders), str(quantity), price(level_price), "", "", style="green")
    lines = [Text("  ".join(title), style="bold"), table]
    if book.phase != Phase.CONTINUOUS:
        uncross = uncross_text(instrument, book.indicative_price, book.indicative_volume)
        lines.append(Text(phase_text(book.phase, book.phase_reason, book.phase_until), style="cyan"))
        lines.append(Text(f"indicative uncross {uncross}", style="cyan"))
    auction = book.last_auction
    if auction is not None:
        lines.append(Text(f"last auction {uncross_text(instrument, auction.price, auction.volume)} "
                          f"at {clock(auction.time)}"))
    if book.lost_at is not None:
        lines.append(Text(f"market data connection lost at {clock(book.lost_at)}: resyncing once it is back",
                          style="yellow"))
    elif not book.synced:
        lines.append(Text(f"market data gap after sequence {book.sequence}: resyncing from a snapshot",
                          style="yellow"))
    elif not bids and not asks:
        lines.append(Text("(empty book)"))
    return Group(*lines)


def main(config: Config, argv: list[str]) -> int:
    return runtime.run(lambda args: _main(config, args), argv)


def _main(config: Config, argv: list[str]) -> int:
    parser = runtime.Parser(prog="main.py -c book", description="One symbol's order book, live.")
    parser.add_argument("symbol", metavar="SYMBOL")
    parser.add_argument("--levels", type=int, default=10, help="price levels shown per side (default: 10)")
    parser.add_argument("--timeout", type=float, default=5.0,
                        help="seconds to wait for the order book server's snapshot (default: 5)")
    args = parser.parse_args(argv)
    if args.levels < 1:
        raise runtime.UsageError(f"--levels must be positive, got {args.levels}")
    instrument = runtime.instrument(config, args.symbol.upper())
    return until_interrupted(lambda: _follow(config, instrument, args.levels, args.timeout))


def _follow(config: Config, instrument: Instrument, levels: int, timeout: float) -> None:
    [feed] = open_feeds(config, [instrument.symbol], timeout)
    try:
        console = Console()
        if console.is_terminal:
            with Live(ladder(instrument, feed, levels), console=console, auto_refresh=False) as live:
                _watch(feed, lambda: live.update(ladder(instrument, feed, levels), refresh=True), 1 / MAX_FPS)
        else:
            def draw() -> None:
                with console.capture() as captured:
                    console.print(ladder(instrument, feed, levels))
                print("\n".join(line.rstrip() for line in captured.get().splitlines()) + "\n", flush=True)

            draw()
            _watch(feed, draw, 0.0)
    finally:
        feed.close()


def _watch(feed: MarketDataClient, draw, min_interval: float) -> None:
    """Call ``draw`` after each change of ``feed`` (applied updates, or losing or regaining
    sync), at most once per ``min_interval`` seconds."""
    drawn_at, changed = time.monotonic(), False
    while True:
        wait = POLL_S if not changed else max(0.0, drawn_at + min_interval - time.monotonic())
        synced = feed.synced
        if feed.poll(wait) or feed.synced != synced:
            changed = True
        if changed and time.monotonic() - drawn_at >= min_interval:
            draw()
            drawn_at, changed = time.monotonic(), False
