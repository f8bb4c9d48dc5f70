"""Market data of one symbol's book: trades, L2 depth deltas and L1 quotes on one sequence.

Every message a `Feed` emits carries the next number of its symbol's market-data
sequence (+1 per message, from 1), so a subscriber of topic ``SYMBOL.`` sees
consecutive numbers and can tell a gap. Per command, in this order:

- a `Trade` per fill (``trade_id`` is the book's trade sequence, ``aggressor`` the
  taker's side);
- a `DepthUpdate` per price level the command changed (quantity 0: the level is
  gone), as the book reports them (``book.level_changes()``, `engine.messages`):
  in the order the command first touched them, whatever touched them (a fill, a
  cancel, a replace, an order resting, an expiry, a triggered stop's fills, an
  iceberg's new slice, self-trade prevention);
- a `Quote` if the top of book (best price and quantity of each side) changed.

A rejected command emits nothing. `snapshot` is the full depth as of the current
sequence: a late subscriber subscribes, buffers, requests it, drops buffered updates
with a sequence <= the snapshot's and applies the rest.
"""

from engine.messages import CancelRejected, CommandRejected, OrderFilled, OrderRejected, ReplaceRejected
from engine.types import Side
from servers.protocol import BookView, DepthSnapshot, DepthUpdate, Quote, Trade

SIDES = (Side.BUY, Side.SELL)
REJECTS = frozenset({OrderRejected, CancelRejected, ReplaceRejected, CommandRejected})


class Feed:
    """One symbol's book with its market-data sequence, last trade price and last quote.

    Invariant: after every command the last quote emitted equals the book's top
    of book, so a feed rebuilt from a restored book continues identically.
    """

    __slots__ = ("symbol", "book", "sequence", "last_price", "_quote")

    def __init__(self, symbol: str, book, sequence: int = 0, last_price: int | None = None) -> None:
        self.symbol = symbol
        self.book = book
        self.sequence = sequence
        """The number of the last market-data message emitted (0 before any)."""
        self.last_price = last_price
        """The price of the last trade, None before any."""
        self._quote = self._top()

    def update(self, events: list, out: list, time: int) -> None:
        """Append the market data of the command the book just ran (its ``events``, and the
        book's `level_changes`) to ``out``, stamped with the command's exchange ``time``."""
        if not events or type(events[0]) in REJECTS:
            return
        symbol, sequence = self.symbol, self.sequence
        for event in events:
            if type(event) is OrderFilled:
                sequence += 1
                out.append(Trade(symbol, sequence, event.sequence, event.price, event.quantity, event.aggressor, time))
                self.last_price = event.price
        changes = self.book.level_changes()
        for change in changes:
            sequence += 1
            out.append(DepthUpdate(symbol, sequence, change.side, change.price, change.quantity, change.orders, time))
        if changes:
            quote = self._top()
            if quote != self._quote:
                self._quote = quote
                sequence += 1
                out.append(Quote(symbol, sequence, *quote, time))
        self.sequence = sequence

    def snapshot(self) -> DepthSnapshot:
        """The whole book as of the current market-data sequence."""
        bids, asks = self._depth(len(self.book))
        return DepthSnapshot(self.symbol, self.sequence, bids, asks, self.last_price)

    def view(self, request_id: int, levels: int) -> BookView:
        """Up to ``levels`` levels per side (any int is accepted: it is clamped)."""
        bids, asks = self._depth(min(max(levels, 0), len(self.book)))
        return BookView(request_id, self.symbol, bids, asks, self.last_price, self.sequence)

    def _depth(self, levels: int) -> tuple[list, list]:
        return tuple(
            [(level.price, level.quantity, level.orders) for level in self.book.depth(side, levels)] for side in SIDES
        )

    def _top(self) -> tuple[int, int, int, int]:
        """(bid price, bid quantity, ask price, ask quantity), zeros for an empty side."""
        bid, ask = self.book.top_of_book()
        return (
            0 if bid is None else bid.price,
            0 if bid is None else bid.quantity,
            0 if ask is None else ask.price,
            0 if ask is None else ask.quantity,
        )
