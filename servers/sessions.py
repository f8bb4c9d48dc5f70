"""Client sessions of the trading engine server, keyed by ROUTER identity.

Life of a session
-----------------
1. A connection (ROUTER identity) sends `Logon(trader_id, api_key, cancel_on_disconnect)`.
   The key is checked against the trader's stored hash. PBKDF2 is slow on purpose
   (tens of milliseconds), so a check the `Authenticator` has not seen before runs
   on a worker thread (hashlib releases the GIL) while the server keeps serving
   everyone else; its answer is remembered, so a reconnect is answered at once.
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

import hashlib
import hmac
from concurrent.futures import Future, ThreadPoolExecutor

from servers.auth import verify_api_key
from servers.protocol import EndReason

NEGATIVE_CACHE_SIZE = 10_000
"""Wrong keys remembered (so a client retrying one costs no PBKDF2); cleared when full."""


class Authenticator:
    """Checks API keys against the configured hashes and remembers the answers.

    Only a SHA-256 digest of a key is kept in memory, never the key itself.
    """

    def __init__(self, hashes: dict[str, str]) -> None:
        self._hashes = dict(hashes)
        self._good: dict[str, bytes] = {}
        self._bad: set[tuple[str, bytes]] = set()
        self._executor: ThreadPoolExecutor | None = None

    def known(self, trader_id: str, api_key: str) -> bool | None:
        """The answer if it needs no PBKDF2 (unknown trader, or a key seen before), else None."""
        if trader_id not in self._hashes:
            return False
        digest = hashlib.sha256(api_key.encode()).digest()
        good = self._good.get(trader_id)
        if good is not None and hmac.compare_digest(good, digest):
            return True
        if (trader_id, digest) in self._bad:
            return False
        return None

    def verify(self, trader_id: str, api_key: str) -> bool:
        """Check a key (PBKDF2 unless the answer is known) and remember the answer."""
        answer = self.known(trader_id, api_key)
        if answer is not None:
            return answer
        digest = hashlib.sha256(api_key.encode()).digest()
        if verify_api_key(api_key, self._hashes[trader_id]):
            self._good[trader_id] = digest
            return True
        if len(self._bad) >= NEGATIVE_CACHE_SIZE:
            self._bad.clear()
        self._bad.add((trader_id, digest))
        return False

    def verify_later(self, trader_id: str, api_key: str) -> "Future[bool]":
        """`verify` on the worker thread (one, so key guessing costs at most one core)."""
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="auth")
        return self._executor.submit(self.verify, trader_id, api_key)

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)


def cancels_orders(session: "Session", why: EndReason) -> bool:
    """Whether ending ``session`` for ``why`` cancels its trader's open orders.

    Only a session that asked for cancel-on-disconnect, and only when the trader
    is gone (logout or timeout): a takeover by a new logon keeps the orders, and so
    does an exchange shutdown (the books keep them in their journals).
    """
    return session.cancel_on_disconnect and why in (EndReason.LOGOUT, EndReason.TIMEOUT)


class ClientOrderIds:
    """The client order ids a session has used, in memory proportional to the out-of-order ones.

    Ids 1, 2, 3, ... used in order (what clients normally send) collapse into one
    counter, ``1..contiguous``; any other id is kept in a set until the counter
    reaches it.
    """

    __slots__ = ("contiguous", "others")

    def __init__(self) -> None:
        self.contiguous = 0
        self.others: set[int] = set()

    def add(self, client_order_id: int) -> bool:
        """Record an id; False if it was already used."""
        if 0 < client_order_id <= self.contiguous or client_order_id in self.others:
            return False
        if client_order_id != self.contiguous + 1:
            self.others.add(client_order_id)
            return True
        self.contiguous = client_order_id
        others = self.others
        while others and self.contiguous + 1 in others:
            others.remove(self.contiguous + 1)
            self.contiguous += 1
        return True

    def __len__(self) -> int:
        return self.contiguous + len(self.others)


class Session:
    __slots__ = ("identity", "trader_id", "cancel_on_disconnect", "last_in", "last_out", "client_order_ids")

    def __init__(self, identity: bytes, trader_id: str, cancel_on_disconnect: bool, now: float) -> None:
        self.identity = identity
        self.trader_id = trader_id
        self.cancel_on_disconnect = cancel_on_disconnect
        self.last_in = now
        self.last_out = now
        self.client_order_ids = ClientOrderIds()
        """Client order ids of the orders entered in this session (duplicates are refused)."""


class PendingLogon:
    __slots__ = ("identity", "trader_id", "cancel_on_disconnect", "answer")

    def __init__(self, identity: bytes, trader_id: str, cancel_on_disconnect: bool, answer: "Future[bool]") -> None:
        self.identity = identity
        self.trader_id = trader_id
        self.cancel_on_disconnect = cancel_on_disconnect
        self.answer = answer


class Sessions:
    """Every logged-on session, by identity and by trader, plus the logons being checked.

    Times are monotonic seconds.
    """

    def __init__(self, authenticator: Authenticator, heartbeat_s: float, timeout_s: float) -> None:
        self.authenticator = authenticator
        self.heartbeat_s = heartbeat_s
        self.timeout_s = timeout_s
        self.by_identity: dict[bytes, Session] = {}
        self.by_trader: dict[str, Session] = {}
        self.pending: dict[bytes, PendingLogon] = {}

    def get(self, identity: bytes) -> Session | None:
        return self.by_identity.get(identity)

    def of_trader(self, trader_id: str) -> Session | None:
        return self.by_trader.get(trader_id)

    # ---------------------------------------------------------------- logon

    def busy(self, identity: bytes) -> bool:
        """Whether this connection is logged on or has a logon being checked."""
        return identity in self.by_identity or identity in self.pending

    def check(self, identity: bytes, trader_id: str, api_key: str, cancel_on_disconnect: bool) -> bool | None:
        """The verdict on a logon if it is known at once, else None (a worker checks it;
        `finished` returns it later)."""
        answer = self.authenticator.known(trader_id, api_key)
        if answer is None:
            future = self.authenticator.verify_later(trader_id, api_key)
            self.pending[identity] = PendingLogon(identity, trader_id, cancel_on_disconnect, future)
        return answer

    def finished(self) -> list[tuple[PendingLogon, bool]]:
        """The logons whose check has completed since the last call, with the verdicts."""
        done = [logon for logon in self.pending.values() if logon.answer.done()]
        for logon in done:
            del self.pending[logon.identity]
        return [(logon, logon.answer.result()) for logon in done]

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
