"""Pre-trade risk: one trader's limits, checked before an order reaches a book.

The limits come from the trader's `TraderConfig`. Everything here is pure: the
caller passes the clock reading and the trader's current open-order count, so the
checks are unit-testable without sockets or time.

Checks, in this order (the first failing one gives the reason):

========================  =============================================================
limit                     rule
========================  =============================================================
message rate              a token bucket of ``max_messages_per_second`` tokens refilled
                          continuously at that rate (bursts up to one second's worth)
order quantity            quantity <= ``max_order_quantity``
notional                  price x quantity <= ``max_notional`` (ticks x lots); a market
                          order is valued at the last trade, else the reference price,
                          a stop (market) order at its stop price
open orders               a new order needs open orders < ``max_open_orders`` (held stops
                          count: they are open orders)
query rate                a second token bucket, of ``max_queries_per_second``: each
                          query spends one token per page of its answer (an open-orders
                          answer has a page per 1,000 orders), so what a trader can make
                          the server build and send is bounded whatever it holds
========================  =============================================================

The message rate is checked first, for every order, cancel, replace and query of
the trader (heartbeats, logon, logout and mass cancel are never throttled: a
trader can always get out of the market); the other limits only for new orders
(`check_order`) and replaces (`check_replace`, no open-order count).
"""

from engine.types import RejectReason


class TokenBucket:
    """At most ``rate`` messages per second on average, bursts up to ``rate`` at once.

    Starts full. ``take(now)`` spends one token if there is one; ``now`` is any
    monotonic clock in seconds.
    """

    __slots__ = ("rate", "tokens", "last")

    def __init__(self, rate: int, now: float) -> None:
        self.rate = rate
        self.tokens = float(rate)
        self.last = now

    def take(self, now: float) -> bool:
        return self.spend(now, 1)

    def spend(self, now: float, cost: int) -> bool:
        """Spend ``cost`` tokens if at least one is there (the bucket may go into debt,
        so a request dearer than a second's worth goes through, and later ones wait)."""
        tokens = self.tokens + (now - self.last) * self.rate
        self.last = now
        if tokens > self.rate:
            tokens = self.rate
        if tokens < 1.0:
            self.tokens = tokens
            return False
        self.tokens = tokens - cost
        return True


class TraderRisk:
    """One trader's limits and message-rate bucket (shared by all the trader's sessions)."""

    __slots__ = ("max_order_quantity", "max_notional", "max_open_orders", "bucket", "queries")

    def __init__(self, limits, now: float) -> None:
        self.max_order_quantity = limits.max_order_quantity
        self.max_notional = limits.max_notional
        self.max_open_orders = limits.max_open_orders
        self.bucket = TokenBucket(limits.max_messages_per_second, now)
        self.queries = TokenBucket(limits.max_queries_per_second, now)

    def limited_by(self, limits) -> "TraderRisk":
        """This trader's risk under new ``limits``: the message and query buckets keep the
        tokens they hold (at most a second's worth of the new rate)."""
        self.max_order_quantity = limits.max_order_quantity
        self.max_notional = limits.max_notional
        self.max_open_orders = limits.max_open_orders
        for bucket, rate in ((self.bucket, limits.max_messages_per_second),
                             (self.queries, limits.max_queries_per_second)):
            bucket.rate = rate
            bucket.tokens = min(bucket.tokens, float(rate))
        return self

    def allow_message(self, now: float) -> bool:
        return self.bucket.spend(now, 1)

    def allow_query(self, now: float, pages: int) -> bool:
        """A query answered in ``pages`` messages (an open-orders answer of 1,000 orders a page;
        every other query 1), within ``max_queries_per_second`` pages."""
        return self.queries.spend(now, pages)

    def check_order(self, price: int, quantity: int, open_orders: int) -> RejectReason | None:
        """The first limit a new order breaks, or None.

        ``price`` is the limit price, or for a market order the price it is valued
        at (`valuation_price`); ``open_orders`` counts the trader's orders already
        open or on their way to a book.
        """
        reason = self.check_replace(price, quantity)
        if reason is None and open_orders >= self.max_open_orders:
            return RejectReason.OPEN_ORDERS_LIMIT
        return reason

    def check_replace(self, price: int, quantity: int) -> RejectReason | None:
        """The first limit an order's new price and open quantity break, or None."""
        if quantity > self.max_order_quantity:
            return RejectReason.ORDER_QUANTITY_LIMIT
        if price * quantity > self.max_notional:
            return RejectReason.NOTIONAL_LIMIT
        return None


def valuation_price(limit_price: int, is_market: bool, last_price: int | None, reference_price: int,
                    stop_price: int = 0) -> int:
    """The price an order's notional is computed at: its limit; for a stop (market) order, given
    its positive ``stop_price``, that (where the market is when the stop is released); for a
    market order the last trade, else the instrument's reference price."""
    if not is_market:
        return limit_price
    if stop_price > 0:
        return stop_price
    return reference_price if last_price is None else last_price
