"""One TES session per trader of the REST gateway, shared by all of that trader's requests.

A `TraderSession` wraps an `ExchangeClient` (``relogon=True``: a session the TES ended is opened
again at the next request) and a pump thread that reads everything the TES sends the trader:
each report answers the request waiting for it (matched by client order id; `MassCancelDone` by
order of asking), every fill is kept (the latest ``FILLS_KEPT``) and every report goes to the
gateway's private streams. The client's own lock makes its methods safe from many threads; on
top of it, a trader's queries run one at a time and the pump reads only between them (a query
reads its own answer: a pump reading meanwhile could take it), and reserving a client order id and
sending the request are one step (the TES refuses a trader's ids out of order).
"""

import logging
import threading
from collections import deque
from collections.abc import Callable

from clients.client import ClientError, ExchangeClient
from config.settings import ApiKeyConfig, Config
from servers.protocol import LogonAccepted, MassCancelDone, OrderFilled

log = logging.getLogger("api")

FILLS_KEPT = 10_000
PUMP_WAIT_S = 0.005


class Waiter:
    """The first report answering one request (or a timeout)."""

    __slots__ = ("event", "message")

    def __init__(self) -> None:
        self.event = threading.Event()
        self.message = None

    def offer(self, message) -> None:
        if self.message is None:
            self.message = message
            self.event.set()


class RequestTimedOut(Exception):
    """The TES did not answer a request within the gateway's ``request_timeout_s``."""


class TraderSession:
    def __init__(self, config: Config, key: ApiKeyConfig, server_key: bytes | None,
                 on_report: Callable[[str, object], None]) -> None:
        self.trader_id = key.trader_id
        self.client = ExchangeClient(config.tes.client_endpoint, key.trader_id, key.exchange_key,
                                     server_key=server_key, relogon=True)
        self.timeout = config.api.request_timeout_s
        self.fills: deque[OrderFilled] = deque(maxlen=FILLS_KEPT)
        self._on_report = on_report
        self._waiters: dict[int, Waiter] = {}
        self._mass: deque[Waiter] = deque()
        self._lock = threading.Lock()
        self._send_lock = threading.Lock()
        self._queries = threading.Lock()
        self._stop = threading.Event()
        self._pump: threading.Thread | None = None

    def start(self) -> None:
        """Log on (once; later ends of the session are mended by the client's relogon)."""
        with self._lock:
            if self._pump is not None:
                return
            self.client.logon(timeout=self.timeout)
            self._pump = threading.Thread(target=self._run, name=f"api-{self.trader_id}", daemon=True)
            self._pump.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            # A query in flight reads its own answer (and keeps what else arrives for `receive`):
            # the pump reads only between queries, or it could take the answer the query waits for.
            if not self._queries.acquire(timeout=PUMP_WAIT_S):
                continue
            try:
                messages = self.client.receive(0.0)
            except ClientError as exc:
                log.warning("%s: reading the TES session failed: %s", self.trader_id, exc)
                self._stop.wait(0.5)
                continue
            finally:
                self._queries.release()
            for message in messages:
                self._dispatch(message)
            if not messages:
                # Waiting outside the client's lock: the requests' threads get it at once.
                self._stop.wait(PUMP_WAIT_S)

    def _dispatch(self, message) -> None:
        if isinstance(message, LogonAccepted):
            return
        if isinstance(message, OrderFilled):
            self.fills.append(message)
        client_order_id = getattr(message, "client_order_id", None)
        with self._lock:
            if client_order_id is not None:
                waiter = self._waiters.pop(client_order_id, None)
                if waiter is not None:
                    waiter.offer(message)
            elif isinstance(message, MassCancelDone) and self._mass:
                self._mass.popleft().offer(message)
        self._on_report(self.trader_id, message)

    def request(self, build: Callable[[int], object]):
        """Send ``build(client_order_id)`` and return the first report about it."""
        self.start()
        waiter = Waiter()
        client_order_id = None
        try:
            # Reserving the id and sending are one step: the TES refuses a trader's client order ids
            # out of order (4007), and this trader's requests come from many threads.
            with self._send_lock:
                client_order_id = self.client.reserve_client_order_ids()
                with self._lock:
                    self._waiters[client_order_id] = waiter
                self.client.send_batch([build(client_order_id)])
            if not waiter.event.wait(self.timeout):
                raise RequestTimedOut(f"no answer from the exchange within {self.timeout:g}s")
            return waiter.message
        finally:
            with self._lock:
                self._waiters.pop(client_order_id, None)

    def mass_cancel(self, symbol: str) -> MassCancelDone:
        self.start()
        waiter = Waiter()
        with self._lock:
            self._mass.append(waiter)
        self.client.mass_cancel(symbol)
        if not waiter.event.wait(self.timeout):
            with self._lock:
                if waiter in self._mass:
                    self._mass.remove(waiter)
            raise RequestTimedOut(f"no answer from the exchange within {self.timeout:g}s")
        return waiter.message

    def query(self, ask: Callable[[ExchangeClient, float], object]):
        """``ask(client, timeout)``, one query of this trader at a time (see `_run`)."""
        self.start()
        with self._queries:
            return ask(self.client, self.timeout)

    def close(self) -> None:
        self._stop.set()
        if self._pump is not None:
            self._pump.join(2.0)
        self.client.close()
