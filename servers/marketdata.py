"""Market data of one symbol's book: trades, L2 depth deltas and L1 quotes on one sequence.

Every message a `Feed` emits carries the next number of its symbol's market-data
sequence (+1 per message, from 1), so a subscriber of topic ``SYMBOL.`` sees
consecutive numbers and can tell a gap. Per command, in this order:

- a `Trade` per fill (``trade_id`` is the book's trade sequence, ``aggressor`` the
  taker's side);
- a `DepthUpdate` per price level whose quantity or order count changed (quantity
  0: the level is gone): the fills' levels first, then the levels the command
  named (a cancelled or replaced order's level, a replace's new level, a limit
  order's own level; for the end-of-day expiry every level);
- a `Quote` if the top of book (best price and quantity of each side) changed.

A rejected command emits nothing. The levels a command names are read before it
runs (`levels_before`) so that a change can be told from no change; a fill always
changes its level. `snapshot` is the full depth as of the current sequence: a late
subscriber subscribes, buffers, requests it, drops buffered updates with a
sequence <= the snapshot's and applies the rest.
"""

from engine.messages import CancelRejected, OrderFilled, OrderRejected, ReplaceRejected
from engine.types import OrderType, Side
from servers.protocol import BookCancel, BookReplace, BookSubmit, BookView, DepthSnapshot, DepthUpdate, Quote, Trade

SIDES = (Side.BUY, Side.SELL)
REJECTS = frozenset({OrderRejected, CancelRejected, ReplaceRejected})
_FILLED = object()
"""Stands for the unknown earlier state of a level a fill touched (it always changed)."""


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

    def levels_before(self, command) -> dict:
        """The levels ``command`` names, ``(side, price) -> PriceLevel | None``, as they are now."""
        book = self.book
        kind = type(command)
        if kind is BookSubmit:
            if command.order_type != OrderType.LIMIT or command.side not in SIDES:
                return {}
            return {(command.side, command.price): book.level(command.side, command.price)}
        elif kind is BookCancel or kind is BookReplace:
            order = book.order(command.order_id)
            if order is None:
                return {}
            keys = ((order.side, order.price),)
            if kind is BookReplace:
                keys += ((order.side, command.price),)
        else:
            return {(side, level.price): level for side in SIDES for level in book.depth(side, len(book))}
        return {key: book.level(*key) for key in keys}

    def update(self, events: list, before: dict, out: list, time: int) -> None:
        """Append the market data of one command's ``events`` to ``out``, stamped with the
        command's exchange ``time``; ``before`` from `levels_before`."""
        if not events or type(events[0]) in REJECTS:
            return
        book, symbol, sequence = self.book, self.symbol, self.sequence
        touched = {}
        for event in events:
            if type(event) is OrderFilled:
                sequence += 1
                out.append(Trade(symbol, sequence, event.sequence, event.price, event.quantity, event.aggressor, time))
                touched[(1 - event.aggressor, event.price)] = _FILLED
                self.last_price = event.price
        touched.update(before)
        depth_changed = False
        for (side, price), old in touched.items():
            new = book.level(side, price)
            if new != old:
                depth_changed = True
                sequence += 1
                if new is None:
                    out.append(DepthUpdate(symbol, sequence, SIDES[side], price, 0, 0, time))
                else:
                    out.append(DepthUpdate(symbol, sequence, SIDES[side], price, new.quantity, new.orders, time))
        if depth_changed:
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
