"""Positions, cash and P&L of one trader, by the average-cost method, in exact integers.

Units: prices in ticks, quantities in lots, money in ticks x lots. A purchase
subtracts price x quantity from cash, a sale adds it.

Per symbol a `Holding` keeps the signed position and its signed *cost basis*: what
the open position cost (positive, long) or brought in (negative, short). A fill in
the position's direction (or from flat) adds to both. A fill against it closes
``closed = min(fill, |position|)`` lots first, which takes the share
``|basis| x closed // |position|`` of the basis with it (integer division; the
sub-tick remainder stays with the lots still open, and closing the last lot takes
exactly what is left, so a flat holding has basis 0); realized P&L gains the
closing proceeds minus that share (for a short, the share minus the buy-back
cost). Whatever the fill has left after the position reaches zero opens a new
position the other way at the fill price (a flip).

Because every fill moves cash and (basis + realized) by the same amount, these
hold exactly, in integers, for every sequence of fills:

- realized + unrealized == cash + sum(position x last price) for each trader, where
  unrealized = position x last - basis, marked to the symbol's last trade;
- across the traders of a set of trades, positions per symbol and cash sum to zero.

`average_price` (|basis| / |position|) is the only float, for display.

The fields live in C records (`native.portfolios`, these classes' bases) as int64s while they fit
and as Python ints beyond, so that the TES books its fills in C (`native.reports.Books`); this
module's arithmetic is the specification that booking is held to.
"""

from engine.types import Side
from native import portfolios
from servers.protocol import Position

BUY = Side.BUY
"""As a plain name: on Python 3.11 ``Side.BUY`` costs about 0.1 µs (``EnumType.__getattr__``)."""


class Holding(portfolios.Holding):
    """One symbol's open position, its cost basis and the P&L realized on it (each 0 when made)."""

    __slots__ = ()

    def fill(self, buy: bool, price: int, quantity: int) -> None:
        position = self.quantity
        signed = quantity if buy else -quantity
        if position == 0 or (position > 0) == buy:
            self.quantity = position + signed
            self.basis += signed * price
            return
        size = abs(position)
        closed = quantity if quantity < size else size
        share = abs(self.basis) * closed // size
        if position > 0:
            self.realized += price * closed - share
            self.basis -= share
            self.quantity = position - closed
        else:
            self.realized += share - price * closed
            self.basis += share
            self.quantity = position + closed
        opened = quantity - closed
        if opened:
            self.quantity = opened if buy else -opened
            self.basis = self.quantity * price

    def unrealized(self, last_price: int | None) -> int:
        if not self.quantity or last_price is None:
            return 0
        return self.quantity * last_price - self.basis

    def average_price(self) -> float:
        return abs(self.basis) / abs(self.quantity) if self.quantity else 0.0


class Portfolio(portfolios.Portfolio):
    """A trader's cash and holdings (``holdings``: symbol -> `Holding`; none when made); fed one
    fill at a time."""

    __slots__ = ()

    def fill(self, symbol: str, side: Side, price: int, quantity: int) -> None:
        holding = self.holdings.get(symbol)
        if holding is None:
            holding = self.holdings[symbol] = Holding()
        buy = side == BUY
        self.cash += -price * quantity if buy else price * quantity
        holding.fill(buy, price, quantity)

    def position(self, symbol: str) -> int:
        holding = self.holdings.get(symbol)
        return holding.quantity if holding else 0

    def realized(self) -> int:
        return sum(h.realized for h in self.holdings.values())

    def unrealized(self, last_prices: dict[str, int]) -> int:
        return sum(h.unrealized(last_prices.get(symbol)) for symbol, h in self.holdings.items())

    def positions(self, last_prices: dict[str, int]) -> list[Position]:
        """One `Position` per symbol ever traded (flat ones keep their realized P&L), by symbol."""
        report = []
        for symbol in sorted(self.holdings):
            holding = self.holdings[symbol]
            last = last_prices.get(symbol)
            report.append(
                Position(
                    symbol=symbol,
                    quantity=holding.quantity,
                    average_price=holding.average_price(),
                    realized_pnl=holding.realized,
                    unrealized_pnl=holding.unrealized(last),
                    last_price=0 if last is None else last,
                )
            )
        return report
