"""Held stop and stop-limit orders: kept outside the book until the last trade price reaches them.

A held stop is not in the depth, not counted among the resting orders and has no time
priority. A buy stop qualifies when the last trade price is at or above its stop price, a
sell stop when it is at or below it; nothing qualifies before the first trade. The book's
trigger loop releases the qualifying stop that was accepted earliest, one at a time
(`engine.book`).

Invariants: ``orders`` holds every held stop once, in acceptance order; each is in exactly
one of the two price-ordered indexes, by its side, under (stop price, acceptance number, id).
"""

from sortedcontainers import SortedList

from engine.types import Side


class HeldStops:
    """The held stops of one book, indexed by side and stop price."""

    __slots__ = ("orders", "_buys", "_sells")

    def __init__(self) -> None:
        self.orders: dict = {}
        """order id -> order, in acceptance order (a dict keeps insertion order)."""
        self._buys = SortedList()
        self._sells = SortedList()

    def __len__(self) -> int:
        return len(self.orders)

    def __contains__(self, order_id) -> bool:
        return order_id in self.orders

    def get(self, order_id):
        return self.orders.get(order_id)

    def add(self, order) -> None:
        """Hold ``order`` (its ``accepted`` number must be larger than every held one's)."""
        self.orders[order.order_id] = order
        self._index(order.side).add((order.stop_price, order.accepted, order.order_id))

    def remove(self, order) -> None:
        del self.orders[order.order_id]
        self._index(order.side).remove((order.stop_price, order.accepted, order.order_id))

    def next_qualifying(self, last_price: int):
        """The stop accepted earliest among those that qualify at ``last_price``, or None.

        Buy stops qualify from the lowest stop price up, sell stops from the highest down, so
        only the qualifying ones are looked at.
        """
        earliest = None
        for stop_price, accepted, order_id in self._buys:
            if stop_price > last_price:
                break
            if earliest is None or accepted < earliest[0]:
                earliest = (accepted, order_id)
        for stop_price, accepted, order_id in reversed(self._sells):
            if stop_price < last_price:
                break
            if earliest is None or accepted < earliest[0]:
                earliest = (accepted, order_id)
        return None if earliest is None else self.orders[earliest[1]]

    def _index(self, side) -> SortedList:
        return self._buys if side == Side.BUY else self._sells
