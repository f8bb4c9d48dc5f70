"""Market data of one symbol's book: phases, trades, L2 depth deltas, L1 quotes and the
indicative uncross on one sequence.

Every message a `Feed` emits carries the next number of its symbol's market-data
sequence (+1 per message, from 1), so a subscriber of topic ``SYMBOL.`` sees
consecutive numbers and can tell a gap. Per command, in this order:

- a `PhaseUpdate` for a phase command the book accepted (its ``PhaseChanged``, with the
  command's reason and ``until``), even one that left the phase as it was;
- an `AuctionSummary` for an uncross (its one price and volume), before its trades;
- a `Trade` per fill (``trade_id`` is the book's trade sequence, ``aggressor`` the
  taker's side);
- a `DepthUpdate` per price level the command changed (quantity 0: the level is
  gone), as the book reports them (``book.level_changes()``, `engine.messages`):
  in the order the command first touched them, whatever touched them (a fill, a
  cancel, a replace, an order resting, an expiry, a triggered stop's fills, an
  iceberg's new slice, self-trade prevention);
- a `Quote` if the top of book (best price and quantity of each side) changed;
- in CALL or HALTED, an `Indicative` if the price and volume the book would uncross at now
  (``book.indicative_uncross()``; 0 and 0: nothing would trade) differ from the last
  published. In CONTINUOUS the book never crosses, so the indicative is 0 and 0 there
  without a message (the `PhaseUpdate` says so).

A rejected command emits nothing. `snapshot` is the full depth as of the current
sequence: a late subscriber subscribes, buffers, requests it, drops buffered updates
with a sequence <= the snapshot's and applies the rest.
"""

from engine.messages import (
    AuctionUncrossed,
    CancelRejected,
    CommandRejected,
    OrderFilled,
    OrderRejected,
    PhaseChanged,
    ReplaceRejected,
)
from engine.types import Phase, Side
from native.orderpath import FeedState
from servers.protocol import (
    AuctionSummary,
    BookView,
    DepthSnapshot,
    DepthUpdate,
    Indicative,
    PhaseReason,
    PhaseUpdate,
    Quote,
    Trade,
)

SIDES = (Side.BUY, Side.SELL)
REJECTS = frozenset({OrderRejected, CancelRejected, ReplaceRejected, CommandRejected})
CONTINUOUS = Phase.CONTINUOUS
NO_UNCROSS = (0, 0)


class Feed(FeedState):
    """One symbol's book with its market-data sequence, last trade price and last quote (the
    fields the OBS's order path changes per command in C, `native.orderpath.FeedState`).

    Invariant: after every command the last quote emitted equals the book's top
    of book, and the last indicative emitted its indicative uncross (0 and 0 in
    CONTINUOUS), so a feed rebuilt from a restored book continues identically.
    """

    __slots__ = ("symbol", "phase_reason", "phase_until", "_indicative")

    def __init__(self, symbol: str, book, sequence: int = 0, last_price: int | None = None,
                 phase_reason: PhaseReason | None = None, phase_until: int = 0) -> None:
        self.symbol = symbol
        self.book = book
        self.sequence = sequence
        """The number of the last market-data message emitted (0 before any)."""
        self.last_price = last_price
        """The price of the last trade, None before any."""
        self.phase_reason = phase_reason
        self.phase_until = phase_until
        """The reason and ``until`` of the last `PhaseUpdate` (None and 0 before any)."""
        self.quote = self._top()
        """The last Quote emitted, as (bid price, bid quantity, ask price, ask quantity)."""
        self._indicative = self._uncross()

    def update(self, events: list, out: list, time: int, reason: PhaseReason = PhaseReason.OPERATOR,
               until: int = 0) -> None:
        """Append the market data of the command the book just ran (its ``events``, and the
        book's `level_changes`) to ``out``, stamped with the command's exchange ``time``;
        ``reason`` and ``until``: a phase command's."""
        if not events or type(events[0]) in REJECTS:
            return
        symbol, sequence = self.symbol, self.sequence
        for event in events:
            kind = type(event)
            if kind is OrderFilled:
                sequence += 1
                out.append(Trade(symbol, sequence, event.sequence, event.price, event.quantity, event.aggressor, time))
                self.last_price = event.price
            elif kind is PhaseChanged:
                sequence += 1
                out.append(PhaseUpdate(symbol, sequence, event.phase, reason, until, time))
                self.phase_reason, self.phase_until = reason, until
            elif kind is AuctionUncrossed:
                sequence += 1
                out.append(AuctionSummary(symbol, sequence, event.price, event.volume, time))
        changes = self.book.level_changes()
        for change in changes:
            sequence += 1
            out.append(DepthUpdate(symbol, sequence, change.side, change.price, change.quantity, change.orders, time))
        if changes:
            quote = self._top()
            if quote != self.quote:
                self.quote = quote
                sequence += 1
                out.append(Quote(symbol, sequence, *quote, time))
        if self.book.phase is not CONTINUOUS:
            indicative = self._uncross()
            if indicative != self._indicative:
                self._indicative = indicative
                sequence += 1
                out.append(Indicative(symbol, sequence, *indicative, time))
        else:
            self._indicative = NO_UNCROSS
        self.sequence = sequence

    def snapshot(self) -> DepthSnapshot:
        """The whole book as of the current market-data sequence."""
        bids, asks = self._depth(len(self.book))
        return DepthSnapshot(self.symbol, self.sequence, bids, asks, self.last_price, self.book.phase,
                             *self._indicative, self.phase_reason, self.phase_until)

    def view(self, request_id: int, levels: int) -> BookView:
        """Up to ``levels`` levels per side (any int is accepted: it is clamped)."""
        bids, asks = self._depth(min(max(levels, 0), len(self.book)))
        return BookView(request_id, self.symbol, bids, asks, self.last_price, self.sequence, self.book.phase,
                        *self._indicative, self.phase_reason, self.phase_until)

    def _depth(self, levels: int) -> tuple[list, list]:
        return tuple(
            [(level.price, level.quantity, level.orders) for level in self.book.depth(side, levels)] for side in SIDES
        )

    def _uncross(self) -> tuple[int, int]:
        """(price, volume) of the book's indicative uncross; 0 and 0 for none, or in CONTINUOUS."""
        if self.book.phase is CONTINUOUS:
            return NO_UNCROSS
        return self.book.indicative_uncross() or NO_UNCROSS

    def _top(self) -> tuple[int, int, int, int]:
        """(bid price, bid quantity, ask price, ask quantity), zeros for an empty side."""
        bid, ask = self.book.top_of_book()
        return (
            0 if bid is None else bid.price,
            0 if bid is None else bid.quantity,
            0 if ask is None else ask.price,
            0 if ask is None else ask.quantity,
        )
