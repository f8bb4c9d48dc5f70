"""Client sessions of the trading engine server, keyed by ROUTER identity.

Life of a session
-----------------
1. A connection (ROUTER identity) sends `Logon(trader_id, api_key, cancel_on_disconnect)`.
   `servers.logons` checks the key against the trader's stored hash, behind
   throttles, on a worker thread; the server opens the session when it is accepted.
2. Logged on, the session's trader owns its orders. One session per trader: a
   new logon of the same trader from another connection takes over and the old
   session ends (REPLACED), without cancelling anything.
3. The server sends a Heartbeat to a session it has sent nothing to for
   ``heartbeat_ms``; a session it has heard nothing from for ``session_timeout_ms``
   ends (TIMEOUT). A client Logout ends it too (LOGOUT).
4. With ``cancel_on_disconnect``, a session that ends by LOGOUT or TIMEOUT has all
   its trader's open orders cancelled (`cancels_orders`).

Nothing here touches a socket: the server passes the clock and sends what these
classes decide.
"""

from engine.types import RejectReason
from servers.protocol import EndReason


def cancels_orders(session: "Session", why: EndReason) -> bool:
    """Whether ending ``session`` for ``why`` cancels its trader's open orders.

    Only a session that asked for cancel-on-disconnect, and only when the trader
    is gone (logout, timeout, or not reading: a slow consumer): a takeover by a new
    logon keeps the orders, and so does an exchange shutdown (the books keep them in
    their journals).
    """
    return session.cancel_on_disconnect and why in (EndReason.LOGOUT, EndReason.TIMEOUT, EndReason.SLOW_CONSUMER)


class ClientOrderIds:
    """The client order ids a trader has used, in memory proportional to the out-of-order ones.

    Ids 1, 2, 3, ... used in order (what clients normally send) collapse into one
    counter, ``1..contiguous``; any other id is kept in a set until the counter
    reaches it. That set holds at most `MAX_OUT_OF_ORDER` ids (a few MB): a trader
    that would need more is refused new out-of-order ids (in-order ones still pass).
    `check` says whether an id may be used; `use` records it (the trading engine
    server's ledger does, so that a restart keeps them).
    """

    __slots__ = ("contiguous", "others")

    MAX_OUT_OF_ORDER = 100_000

    def __init__(self) -> None:
        self.contiguous = 0
        self.others: set[int] = set()

    def check(self, client_order_id: int) -> RejectReason | None:
        """Why the id cannot be used (already used, or too many out of order), or None. The next
        id in order is always free: `use` never leaves ``contiguous + 1`` in ``others``."""
        if client_order_id == self.contiguous + 1:
            return None
        if 0 < client_order_id <= self.contiguous or client_order_id in self.others:
            return RejectReason.DUPLICATE_CLIENT_ORDER_ID
        if len(self.others) >= self.MAX_OUT_OF_ORDER:
            return RejectReason.CLIENT_ORDER_IDS_OUT_OF_ORDER
        return None

    def use(self, client_order_id: int) -> None:
        """Record the id as used (one `check` passed; using an id twice changes nothing)."""
        if client_order_id != self.contiguous + 1:
            if not 0 < client_order_id <= self.contiguous:
                self.others.add(client_order_id)
            return
        self.contiguous = client_order_id
        others = self.others
        while others and self.contiguous + 1 in others:
            others.remove(self.contiguous + 1)
            self.contiguous += 1

    def note(self, client_order_id: int) -> None:
        """Use the id of a cancel or replace request if an order could use it now: a request is
        never refused for its id, but uses it up, so that a client numbering all its requests
        from one counter (as `clients.client` does) keeps its order ids in order. Any other id
        (used already, or one more out of order than the bound allows) changes nothing."""
        if self.check(client_order_id) is None:
            self.use(client_order_id)

    def next(self) -> int:
        """The first id after every one used in order: what a client should send next."""
        return max(self.contiguous, max(self.others, default=0)) + 1

    def __len__(self) -> int:
        return self.contiguous + len(self.others)


class Session:
    __slots__ = ("identity", "trader_id", "cancel_on_disconnect", "last_in", "last_out", "last_report", "record")

    def __init__(self, identity: bytes, trader_id: str, cancel_on_disconnect: bool, now: float) -> None:
        self.identity = identity
        self.trader_id = trader_id
        self.cancel_on_disconnect = cancel_on_disconnect
        self.last_in = now
        self.last_out = now
        self.last_report = 0
        """The number of the last of its trader's reports sent to this session."""
        self.record = 0
        """Its number in the database's session records (`servers.database_link`)."""


class Sessions:
    """Every logged-on session, by identity and by trader.

    Times are monotonic seconds.
    """

    def __init__(self, heartbeat_s: float, timeout_s: float) -> None:
        self.heartbeat_s = heartbeat_s
        self.timeout_s = timeout_s
        self.by_identity: dict[bytes, Session] = {}
        self.by_trader: dict[str, Session] = {}

    def get(self, identity: bytes) -> Session | None:
        return self.by_identity.get(identity)

    def of_trader(self, trader_id: str) -> Session | None:
        return self.by_trader.get(trader_id)

    # ---------------------------------------------------------------- open, end

    def open(self, identity: bytes, trader_id: str, cancel_on_disconnect: bool, now: float
             ) -> tuple[Session, Session | None]:
        """Start a session; also return the trader's previous session, which this ends."""
        previous = self.by_trader.get(trader_id)
        if previous is not None:
            self.end(previous)
        session = Session(identity, trader_id, cancel_on_disconnect, now)
        self.by_identity[identity] = session
        self.by_trader[trader_id] = session
        return session, previous

    def end(self, session: Session) -> None:
        self.by_identity.pop(session.identity, None)
        if self.by_trader.get(session.trader_id) is session:
            del self.by_trader[session.trader_id]

    # ---------------------------------------------------------------- liveness

    def idle(self, now: float) -> list[Session]:
        """Sessions sent nothing for ``heartbeat_s``: they are owed a Heartbeat."""
        limit = now - self.heartbeat_s
        return [s for s in self.by_identity.values() if s.last_out <= limit]

    def expired(self, now: float) -> list[Session]:
        """Sessions heard nothing from for ``timeout_s``: they must end."""
        limit = now - self.timeout_s
        return [s for s in self.by_identity.values() if s.last_in <= limit]
