"""The trader portal's exchange sessions, one per browser session (no Streamlit in here).

A `PortalSession` is one trader's `ExchangeClient` session with the TES plus a live book per
symbol the page shows (`MarketDataClient`), and what the page shows of them: the session's
reports as lines (`activity`), its fills, the trades of each feed. The page calls it from its
script thread; every call that touches the sockets holds ``lock``, so the janitor of
`PortalSessions` (another thread) can close it safely.

Input is checked before anything is sent (`InputError`: a price that is not a number or finer
than the instrument's price unit, a quantity that is not a positive whole number); what only
the exchange can judge (the tick, the lot, the band, the trader's limits) is sent and its
reject shown with its reason and code, in decimals.

The exchange going away is not an error of the page: a request that gets no answer raises
`ExchangeUnavailable` with a sentence for the page, and so does every request for `RETRY_S`
after it, at once (a page with five live parts must not wait five timeouts); then one tries
again. A session the exchange ended (a TES restart, a shutdown) is logged on again by the next
request, so the page recovers by itself when the exchange is back.

`PortalSessions` keeps the sessions by browser session id and logs out each whose browser
session has been gone (closed tab, lost connection) for ``grace_s``: one exchange session per
browser session, ended with it.
"""

import threading
import time
from collections import deque
from collections.abc import Callable

from clients.client import ClientError, ExchangeClient, LogonError, RequestRejected, RequestTimeout, SessionEnded
from clients.market_data import MarketDataClient
from clients.reports import ReportWords
from clients.runtime import tes_server_key
from clients.terminal import PriceError, parse_price
from config.settings import Config
from engine.instrument import Instrument
from engine.types import OrderType, RejectReason, Side, TimeInForce
from servers.protocol import (
    CancelRejected,
    LoggedOut,
    OpenOrder,
    OrderAccepted,
    OrderCanceled,
    OrderFilled,
    OrderRejected,
    OrderReplaced,
    Positions,
    ReplaceRejected,
    SessionRejected,
    Trade,
)

ANSWER_TIMEOUT_S = 3.0
"""How long a request waits for its answer before the page says the exchange is not answering."""
QUERY_TIMEOUT_S = 2.0
LOGON_TIMEOUT_S = 5.0
RELOGON_TIMEOUT_S = 1.0
"""A logon again after the session ended waits this long, so a page whose exchange is down stays quick."""
RETRY_S = 2.0
"""After the exchange did not answer, requests fail at once for this long before one tries again."""
SETTLE_S = 0.05
"""After an order's answer, how long to take in the reports that follow it (its fills)."""
ACTIVITY_KEPT = 200
FILLS_KEPT = 1000
TRADES_KEPT = 100
FEED_IDLE_S = 30.0
"""A symbol's book not read for this long (the page shows another) is closed: its feed holds a
subscription of the book server and what is queued for it. Shown again, the symbol gets a new one."""


class InputError(ValueError):
    """What the trader typed is not an order: the message says what to fix."""


class ExchangeUnavailable(ClientError):
    """The exchange did not answer; the message says so for the page."""


def parse_quantity(instrument: Instrument, text: str) -> int:
    """``text`` as a quantity in lots: a positive whole number (its multiple of the lot is the
    exchange's to judge); `InputError` otherwise."""
    try:
        quantity = int(str(text).strip())
    except ValueError:
        raise InputError(f"quantity {text!r} is not a whole number of lots") from None
    if quantity <= 0:
        raise InputError(f"quantity must be positive, got {quantity}")
    return quantity


def parse_limit(instrument: Instrument, text: str) -> int:
    """``text`` (currency units) as a price in ticks; `InputError` naming the problem."""
    if not str(text).strip():
        raise InputError("a limit order needs a price")
    try:
        return parse_price(instrument, str(text).strip())
    except PriceError as exc:
        raise InputError(str(exc)) from None


class PortalSession:
    """One trader's session and live books, for one browser session (see the module docstring)."""

    def __init__(self, config: Config, trader_id: str, api_key: str) -> None:
        self.config = config
        self.trader_id = trader_id
        self.lock = threading.RLock()
        self.client = ExchangeClient(config.tes.client_endpoint, trader_id, api_key,
                                     server_key=tes_server_key(config))
        self.instruments: dict[str, Instrument] = {i.symbol: i for i in config.instruments}
        self.words = ReportWords(self.instruments)
        self.activity: deque[str] = deque(maxlen=ACTIVITY_KEPT)
        """The session's reports as lines, newest first."""
        self.fills: deque[OrderFilled] = deque(maxlen=FILLS_KEPT)
        """This session's fills, newest first."""
        self.feeds: dict[str, MarketDataClient] = {}
        self.trades: dict[str, deque[Trade]] = {}
        """Per symbol shown: its trades since the page opened it, newest first."""
        self.read_at: dict[str, float] = {}
        """Per symbol shown: when (`time.monotonic`) the page last read its book."""
        self.closed = False
        self._retry_at = 0.0
        self._outage = ""
        """Why the exchange is taken as down until ``_retry_at`` (monotonic)."""

    # ------------------------------------------------------------ session

    def logon(self) -> None:
        """Log on and fetch the instruments; `LogonError` (its text for the page) if refused or unanswered."""
        with self.lock:
            self.client.logon(LOGON_TIMEOUT_S)
            try:
                self.instruments.update({i.symbol: i for i in self.client.instruments(QUERY_TIMEOUT_S)})
            except ClientError:
                pass  # the configuration's instruments stand in until the next logon
            self.pump()

    @property
    def logged_on(self) -> bool:
        return self.client.logged_on

    def close(self) -> None:
        """Log out, close every socket; later calls find ``closed``."""
        with self.lock:
            if self.closed:
                return
            self.closed = True
            for feed in self.feeds.values():
                feed.close()
            self.client.close()

    # ------------------------------------------------------------ reports

    def pump(self) -> None:
        """Take in every report waiting (and send a heartbeat if one is due)."""
        with self.lock:
            for message in self._receive(0.0):
                self._take(message)

    def _receive(self, timeout: float) -> list:
        try:
            return self.client.receive(timeout)
        except ClientError as exc:
            raise ExchangeUnavailable(f"the session with the exchange broke: {exc}") from None

    def _take(self, message) -> None:
        kind = type(message)
        if kind is OrderFilled:
            self.fills.appendleft(message)
        if kind is LoggedOut:
            self.activity.appendleft(f"session ended: {message.text}")
        elif kind is SessionRejected and message.reason == RejectReason.NOT_LOGGED_ON:
            self.activity.appendleft("the exchange restarted and forgot the session: logging on again")
        else:
            self.activity.appendleft(self.words.describe(message))

    def _wait_for(self, matches: Callable[[object], bool]):
        """Take in reports until one ``matches`` (returned, after `SETTLE_S` more of them);
        `ExchangeUnavailable` after `ANSWER_TIMEOUT_S`."""
        deadline = time.monotonic() + ANSWER_TIMEOUT_S
        while time.monotonic() < deadline:
            for message in self._receive(max(0.0, deadline - time.monotonic())):
                self._take(message)
                if matches(message):
                    settle = time.monotonic() + SETTLE_S
                    while time.monotonic() < settle:
                        for later in self._receive(max(0.0, settle - time.monotonic())):
                            self._take(later)
                    return message
        raise self._down(f"no answer within {ANSWER_TIMEOUT_S:g} s")

    def reject_text(self, answer) -> str:
        """The text of a reject answer, in decimals, with its code."""
        return self.words.reject(answer.client_order_id, answer.reason, answer.text)

    # ------------------------------------------------------------ orders

    def instrument(self, symbol: str) -> Instrument:
        instrument = self.instruments.get(symbol)
        if instrument is None:
            raise InputError(f"unknown symbol {symbol!r}")
        return instrument

    def enter(self, symbol: str, side: Side, order_type: OrderType, tif: TimeInForce, price: str,
              quantity: str) -> OrderAccepted | OrderRejected:
        """Send an order and wait for its answer. ``price`` and ``quantity`` as typed; the price
        is ignored for a market order."""
        instrument = self.instrument(symbol)
        ticks = 0 if order_type == OrderType.MARKET else parse_limit(instrument, price)
        lots = parse_quantity(instrument, quantity)
        with self.lock:
            client_order_id = self._send(lambda: self.client.enter_order(symbol, side, order_type, tif, ticks, lots))
            self.words.symbols_of[client_order_id] = symbol
            return self._wait_for(lambda m: type(m) in (OrderAccepted, OrderRejected)
                                  and m.client_order_id == client_order_id)

    def cancel(self, order_id: int) -> OrderCanceled | CancelRejected:
        with self.lock:
            client_order_id = self._send(lambda: self.client.cancel(order_id))
            return self._wait_for(lambda m: (type(m) is OrderCanceled and m.order_id == order_id)
                                  or (type(m) is CancelRejected and m.client_order_id == client_order_id))

    def replace(self, order: OpenOrder, price: str, quantity: str) -> OrderReplaced | ReplaceRejected:
        """Give ``order`` a new price and open quantity (as typed)."""
        instrument = self.instrument(order.symbol)
        ticks = parse_limit(instrument, price)
        lots = parse_quantity(instrument, quantity)
        with self.lock:
            client_order_id = self._send(lambda: self.client.replace(order.order_id, ticks, lots))
            self.words.symbols_of[client_order_id] = order.symbol
            return self._wait_for(lambda m: (type(m) is OrderReplaced and m.order_id == order.order_id)
                                  or (type(m) is ReplaceRejected and m.client_order_id == client_order_id))

    def _send(self, send: Callable[[], int]) -> int:
        self._ensure_session()
        try:
            return send()
        except SessionEnded:
            raise self._down("the session ended") from None

    def _ensure_session(self) -> None:
        """Fail at once while the exchange is taken as down; log on again if the session ended."""
        if time.monotonic() < self._retry_at:
            raise ExchangeUnavailable(self._outage)
        if self.client.logged_on:
            return
        try:
            self.client.logon(RELOGON_TIMEOUT_S)
        except LogonError as exc:
            if exc.reason is None:
                raise self._down(f"no answer from {self.config.tes.client_endpoint}") from None
            raise self._down(f"logon refused: {exc}") from None
        self.activity.appendleft("logged on again")

    def _down(self, why: str) -> ExchangeUnavailable:
        """Take the exchange as down for `RETRY_S`; the error to raise."""
        self._retry_at = time.monotonic() + RETRY_S
        self._outage = f"the exchange is not answering ({why}); trying again every {RETRY_S:g} s"
        return ExchangeUnavailable(self._outage)

    # ------------------------------------------------------------ queries

    def open_orders(self) -> list[OpenOrder]:
        """The trader's open orders as the exchange has them, oldest first."""
        with self.lock:
            orders = self._ask(self.client.open_orders)
            self.pump()
        return sorted(orders, key=lambda order: order.order_id)

    def positions(self) -> Positions:
        with self.lock:
            positions = self._ask(self.client.positions)
            self.pump()
        return positions

    def _ask(self, query):
        self._ensure_session()
        try:
            return query(QUERY_TIMEOUT_S)
        except RequestTimeout:
            raise self._down(f"no answer within {QUERY_TIMEOUT_S:g} s") from None
        except RequestRejected as exc:
            raise ExchangeUnavailable(f"the exchange refused the query: {exc}") from None
        except SessionEnded:
            raise self._down("the session ended") from None

    # ------------------------------------------------------------ market data

    def book(self, symbol: str) -> MarketDataClient:
        """The live book of ``symbol``, brought up to date (``synced`` False until the order book
        server has sent its snapshot: the page says it is waiting); the books of symbols not read for
        FEED_IDLE_S are closed."""
        with self.lock:
            feed = self.feeds.get(symbol)
            if feed is None:
                shard = self.config.shard_of(symbol)
                if shard is None:
                    raise InputError(f"no order book server serves {symbol!r}")
                feed = self.feeds[symbol] = MarketDataClient(shard.market_data_endpoint, shard.snapshot_endpoint,
                                                             symbol)
                self.trades[symbol] = deque(maxlen=TRADES_KEPT)
            try:
                applied = feed.poll(0.0)
            except ClientError as exc:
                raise ExchangeUnavailable(f"market data of {symbol}: {exc}") from None
            self.trades[symbol].extendleft(m for m in applied if type(m) is Trade)
            now = self.read_at[symbol] = time.monotonic()
            for idle in [other for other, read_at in self.read_at.items() if now - read_at > FEED_IDLE_S]:
                self.feeds.pop(idle).close()
                del self.trades[idle], self.read_at[idle]
            return feed


class PortalSessions:
    """The portal's `PortalSession` of each browser session, by an id of the page's own (kept in
    the browser session's state); `sweep` logs out those whose browser session is gone.

    ``is_active(connection_id)`` says whether the browser session with Streamlit's id
    ``connection_id`` (given to `put`) is still connected; a session inactive for ``grace_s``
    seconds in a row is closed and forgotten (a reconnect within the grace keeps it).
    """

    def __init__(self, is_active: Callable[[str], bool], grace_s: float) -> None:
        self.is_active = is_active
        self.grace_s = grace_s
        self._sessions: dict[str, PortalSession] = {}
        self._connections: dict[str, str] = {}
        self._gone_since: dict[str, float] = {}
        self._lock = threading.Lock()

    def get(self, browser_id: str) -> PortalSession | None:
        with self._lock:
            return self._sessions.get(browser_id)

    def put(self, browser_id: str, connection_id: str, session: PortalSession) -> None:
        """Make ``session`` the browser session's, closing the one it had."""
        with self._lock:
            previous = self._sessions.pop(browser_id, None)
            self._sessions[browser_id] = session
            self._connections[browser_id] = connection_id
            self._gone_since.pop(browser_id, None)
        if previous is not None and previous is not session:
            previous.close()

    def drop(self, browser_id: str) -> None:
        """Close and forget the browser session's exchange session (a logout)."""
        with self._lock:
            session = self._sessions.pop(browser_id, None)
            self._connections.pop(browser_id, None)
            self._gone_since.pop(browser_id, None)
        if session is not None:
            session.close()

    def close_all(self) -> None:
        with self._lock:
            sessions = list(self._sessions.values())
            self._sessions.clear()
            self._connections.clear()
            self._gone_since.clear()
        for session in sessions:
            session.close()

    def __len__(self) -> int:
        with self._lock:
            return len(self._sessions)

    def sweep(self, now: float) -> list[str]:
        """Close the sessions whose browser session has been gone for ``grace_s``; their ids."""
        with self._lock:
            ended = []
            for browser_id in list(self._sessions):
                if self.is_active(self._connections[browser_id]):
                    self._gone_since.pop(browser_id, None)
                elif now - self._gone_since.setdefault(browser_id, now) >= self.grace_s:
                    ended.append(browser_id)
            sessions = [self._sessions.pop(browser_id) for browser_id in ended]
            for browser_id in ended:
                del self._gone_since[browser_id], self._connections[browser_id]
        for session in sessions:
            session.close()
        return ended

    def run_janitor(self, stop: threading.Event, every_s: float = 1.0) -> threading.Thread:
        """A daemon thread that sweeps every ``every_s`` until ``stop``."""
        def janitor() -> None:
            while not stop.wait(every_s):
                self.sweep(time.monotonic())

        thread = threading.Thread(target=janitor, name="portal-janitor", daemon=True)
        thread.start()
        return thread
