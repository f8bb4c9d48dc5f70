"""The client library: an order-entry session with the TES.

`ExchangeClient` speaks the client protocol of `servers.protocol` over one DEALER
socket (frames ``[payload]``, each payload a msgpack list of `ClientRequest` /
`ClientMessage`). Its guarantees:

- **Order.** Messages come out of `receive` in the order the TES sent them. A
  method that waits for its own answer (`logon`, the queries, `logout`) keeps
  every other message it reads meanwhile, and `receive` returns those first.
- **Identifiers.** `enter_order`, `cancel` and `replace` return the
  ``client_order_id`` they used: consecutive, starting where the trader's last
  session left off (`LogonAccepted.next_client_order_id`: client order ids are the
  trader's, and the TES refuses a duplicate). The exchange order id arrives in
  `OrderAccepted`.
- **Reports missed.** Order reports are numbered per trader (``report``); a logon
  asks for the ones after the latest this client received (a new client: the ones
  made while the trader had no session), which arrive first, with their numbers.
- **Liveness.** The session stays alive however long the program leaves the
  client alone: after `LogonAccepted` a keeper thread of the client's own wakes
  every half ``heartbeat_ms``, takes in what arrived (so ``logged_on`` and
  ``ended`` are current, and a session that ended gets no more heartbeats) and
  sends a `Heartbeat` when nothing was sent for ``heartbeat_ms``. A ZeroMQ socket
  must not be used by two threads at once: every method holds the client's lock
  while it uses the socket, and the keeper acts only when it gets the lock at
  once (a call that waits, a query or `receive`, sends the heartbeats itself). A
  program that waits on `socket` in its own loop takes the socket over: the
  keeper stops for good and the program calls `keep_alive` (see `socket`).
  Incoming heartbeats are consumed, not returned.
- **Session loss.** The client notices when the TES no longer has its session:
  a `LoggedOut` (timeout, takeover, shutdown, slow consumer), or a
  `SessionRejected(NOT_LOGGED_ON)` answering a request of a logged-on client (the
  TES restarted and forgot it); and when the TES is silent: it sends a `Heartbeat`
  to a session it sent nothing else for ``heartbeat_ms``, so a session that hears
  nothing for ``session_timeout_ms`` (the TES stopped, stuck, or its machine gone)
  is taken as ended, with a `LoggedOut` of reason TIMEOUT the client makes itself.
  ``logged_on`` turns False and ``ended`` says why; a query waiting for its answer
  raises `SessionEnded` at once, and so does
  every later call that needs a session, without sending anything: it first takes
  in what already arrived, so an end nobody has read yet counts. A client made with ``relogon=True``
  logs on again instead, at the next call that needs a session, and asks a query
  interrupted that way once more (orders are never re-sent: what happened to them
  is for the caller to find out). Messages received meanwhile are kept for
  `receive`, as always. `logon` may also be called again by hand.
- **Encryption.** With ``server_key`` (the TES's public CURVE key, for a TES whose
  ``security.clients`` is "curve") the connection is encrypted and only the TES
  holding the matching secret key can answer; the client's own key pair is made
  afresh for each client (traders authenticate with their API key).
- **Shutdown.** Sockets use ``linger=0``: `close` first logs out and waits
  (briefly) for `LoggedOut`, so the logout is delivered, then drops anything
  unsent.

An `ExchangeClient` is used from one thread of the program (beside its keeper). The
market-data view of a book is `clients.market_data`.
"""

import functools
import itertools
import logging
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable

import msgspec
import zmq

from clients.watch import ConnectionWatch, Link
from engine.instrument import Instrument
from engine.types import OrderFlags, OrderType, RejectReason, SelfTradePrevention, Side, TimeInForce
from native.sockets import receive, send
from servers.protocol import (
    MAX_SERVER_FRAME_BYTES,
    Book,
    CancelOrder,
    ClientMessage,
    ClientRequest,
    Codec,
    EndReason,
    EnterOrder,
    Heartbeat,
    Instruments,
    LoggedOut,
    Logon,
    LogonAccepted,
    LogonRejected,
    Logout,
    MassCancel,
    OpenOrder,
    OpenOrders,
    Positions,
    QueryBook,
    QueryInstruments,
    QueryOpenOrders,
    QueryPositions,
    QueryRejected,
    ReplaceOrder,
    SessionRejected,
)

SEND_HWM = 100_000
"""Frames queued for sending before a send blocks (the default 1,000 is too few for bursts)."""

log = logging.getLogger(__name__)


class ClientError(Exception):
    """Base of the client library's errors."""


class LogonError(ClientError):
    """The TES refused the logon (``reason`` is its code) or did not answer (``reason`` None);
    ``link``: unanswered, what the socket's connections showed meanwhile, if anything
    (`clients.watch.Link`: nothing listening, each connection closed before its handshake, the
    handshake failed), which the message says too."""

    def __init__(self, message: str, reason: RejectReason | None = None, link: Link | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.link = link

    @property
    def unreachable(self) -> bool:
        """Unanswered, and nothing showed the TES turning the connection away (`link` None or
        UNREACHABLE): it is not running, not at that endpoint, or did not answer in time."""
        return self.reason is None and self.link in (None, Link.UNREACHABLE)


class RequestTimeout(ClientError):
    """No answer to a request within its timeout."""


class SessionEnded(ClientError):
    """The TES ended this client's session or no longer knows it; ``reason`` says why
    (an `EndReason` from `LoggedOut`, or `RejectReason.NOT_LOGGED_ON` after a TES restart)."""

    def __init__(self, reason: EndReason | RejectReason, text: str) -> None:
        super().__init__(f"the session ended: {text} ({int(reason)}); log on again to continue")
        self.reason = reason
        self.text = text


class RequestRejected(ClientError):
    """The TES answered a query with `QueryRejected` (or the session with `SessionRejected`)."""

    def __init__(self, reason: RejectReason, text: str) -> None:
        super().__init__(f"{text} ({int(reason)})")
        self.reason = reason
        self.text = text


# ================================================================ order entry


def _locked(method):
    """``method`` run holding the client's lock: the socket and the session state are the
    caller's thread's or the keeper's, never both at once."""

    @functools.wraps(method)
    def locked(self, *args, **kwargs):
        with self._lock:
            return method(self, *args, **kwargs)

    return locked


def _keep_session(client_ref: weakref.ref, stop: threading.Event) -> None:
    """The keeper thread of a client: `ExchangeClient._tend` every half heartbeat interval
    until ``stop``. It holds the client only weakly, so a client nobody holds any more is
    collected (its session then times out) and the thread ends."""
    wait = 0.0
    while not stop.wait(wait):
        client = client_ref()
        if client is None or not client._tend():
            return
        wait = client.heartbeat_s / 2
        del client


class ExchangeClient:
    """One trading session with the TES.

    Parameters
    ----------
    endpoint
        The TES client endpoint (``config.tes.client_endpoint``).
    trader_id, api_key
        Credentials sent by `logon`.
    cancel_on_disconnect
        Ask the TES to cancel this session's open orders when it ends.
    context
        The ZeroMQ context; the process-wide instance by default.
    server_key
        The TES's public CURVE key (Z85, 40 bytes) when its client port uses CURVE.
    relogon
        Log on again, at the next call that needs a session, when the session ended.
    """

    def __init__(
        self,
        endpoint: str,
        trader_id: str,
        api_key: str,
        cancel_on_disconnect: bool = False,
        context: zmq.Context | None = None,
        server_key: bytes | None = None,
        relogon: bool = False,
    ) -> None:
        self.endpoint = endpoint
        self.trader_id = trader_id
        self._api_key = api_key
        self.cancel_on_disconnect = cancel_on_disconnect
        self._requests = Codec(ClientRequest)
        self._messages = Codec(ClientMessage, MAX_SERVER_FRAME_BYTES)
        self._next_order_id = 1
        self._request_ids = itertools.count(1)
        self._pending: deque = deque()
        self.logged_on = False
        self.relogon = relogon
        self.ended: LoggedOut | SessionRejected | None = None
        """Why the last session ended (None: never logged on, or logged on now)."""
        self._given_up = False
        """A `Logout` went to a TES taken as gone (`keep_alive`) and its answer has not come: the
        answer, when the TES turns out to be there after all, is the client's own business."""
        self.last_report = 0
        """The number of the latest of the trader's reports received: a new logon asks for the ones after it."""
        self.heartbeat_s: float | None = None
        self.session_timeout_s: float | None = None
        self.last_sent = self.last_received = time.monotonic()
        self._lock = threading.RLock()
        """Held by every method while it uses the socket or the session state, and by the keeper."""
        self._keeper: threading.Thread | None = None
        self._keeper_stop = threading.Event()
        """Set when the client closes or the caller takes `socket` over: the keeper ends for good."""
        self._failure: ClientError | None = None
        """An undecodable frame the keeper read: every later read raises it."""
        socket = self._socket = (context or zmq.Context.instance()).socket(zmq.DEALER)
        socket.setsockopt(zmq.LINGER, 0)
        socket.setsockopt(zmq.SNDHWM, SEND_HWM)
        # Unlimited receive queue: the TES's ROUTER drops replies to a peer whose queue is full.
        socket.setsockopt(zmq.RCVHWM, 0)
        if server_key is not None:
            public, secret = zmq.curve_keypair()
            socket.curve_secretkey = secret
            socket.curve_publickey = public
            socket.curve_serverkey = server_key
        self._watch = ConnectionWatch(socket, server_key is not None)
        """The socket's connection events while a logon waits (the first from before the socket
        connects): why it got no answer."""
        self._watch.start()
        try:
            socket.connect(endpoint)
        except zmq.ZMQError:
            self._watch.stop()
            socket.close(linger=0)
            raise

    @property
    def socket(self) -> zmq.Socket:
        """The session's socket, for a program that waits on it in its own loop (a
        `zmq.Poller`, or its descriptor and ``ZMQ_EVENTS``).

        Taking it hands the session's upkeep to the caller for good, because a ZeroMQ socket
        must not be used by two threads at once: the keeper thread stops, and the caller
        calls `keep_alive` (or any other method) at least every ``heartbeat_ms`` while it
        waits, and `receive_ready` after a call that may have kept messages (a query, a send
        that took in what had arrived): kept messages do not make the socket readable.
        """
        with self._lock:
            self._keeper_stop.set()
        return self._socket

    # ------------------------------------------------------------ session

    @_locked
    def logon(self, timeout: float = 5.0) -> LogonAccepted:
        """Log on and wait for the answer; raise `LogonError` if refused or unanswered (saying why no
        answer came when the socket's connections showed it: `clients.watch`)."""
        self._watch.start()
        try:
            self._send([Logon(self.trader_id, self._api_key, self.cancel_on_disconnect,
                              self.last_report if self.last_report else -1)])
            reply = self._wait_for(_answers_logon, timeout, in_session=False)
        except RequestTimeout:
            reply = None
        finally:
            tally = self._watch.stop()
        if reply is None:
            link = tally.link()
            why = "" if link is None else f": {tally.why(link)}"
            raise LogonError(f"no answer to the logon from {self.endpoint} within {timeout}s{why}", link=link)
        if not isinstance(reply, LogonAccepted):
            raise LogonError(f"logon of {self.trader_id!r} refused: {reply.text} ({int(reply.reason)})", reply.reason)
        return reply

    @_locked
    def logout(self, timeout: float = 1.0) -> bool:
        """Log out; True if the TES confirmed with `LoggedOut` within ``timeout``."""
        if not self.logged_on:
            return False
        self._send([Logout()])
        self.logged_on = False
        self.ended = LoggedOut(EndReason.LOGOUT, EndReason.LOGOUT.text)
        try:
            self._wait_for(lambda m: isinstance(m, LoggedOut), timeout, in_session=False)
        except RequestTimeout:
            return False
        return True

    @_locked
    def close(self, logout_timeout: float = 0.5) -> None:
        """Stop the keeper, log out (waiting at most ``logout_timeout``) and close the socket; a
        client whose stream broke (an undecodable frame) closes without the logout, logging why."""
        if self._socket.closed:
            return
        self._keeper_stop.set()
        if self._keeper is not None:
            self._keeper.join()  # it never waits for the lock: at most one turn of it
        try:
            self.logout(logout_timeout)
        except ClientError as exc:
            log.warning("%s: closed without a confirmed logout: %s", self.trader_id, exc)
        finally:
            self._watch.stop()
            self._socket.close()

    def __enter__(self) -> "ExchangeClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------ orders

    @_locked
    def reserve_client_order_ids(self, count: int = 1) -> int:
        """Reserve ``count`` consecutive client order ids for requests built by the caller
        (for `send_batch`); the first of them."""
        first = self._next_order_id
        self._next_order_id += count
        return first

    def enter_order(
        self, symbol: str, side: Side, order_type: OrderType, tif: TimeInForce, price: int, quantity: int, *,
        stop_price: int = 0, display_quantity: int = 0, post_only: bool = False,
        stp: SelfTradePrevention | None = None, expire_at: int = 0,
    ) -> int:
        """Send a new order; its client order id.

        ``price`` is the limit in ticks (LIMIT, STOP_LIMIT; 0 for MARKET and STOP), ``quantity`` in
        lots. ``stop_price`` (ticks) is a STOP or STOP_LIMIT order's trigger; ``display_quantity``
        makes a LIMIT order an iceberg showing at most that many lots; ``post_only`` refuses it if it
        would trade on arrival; ``stp`` overrides the trader's default self-trade prevention mode;
        ``expire_at`` is a GTD order's expiry (ns since the epoch, UTC: ``time.time_ns()`` units).
        """
        client_order_id = self.reserve_client_order_ids()
        flags = int(OrderFlags.POST_ONLY) if post_only else 0
        self.send_batch([EnterOrder(client_order_id, symbol, side, order_type, tif, price, quantity, stop_price,
                                    display_quantity, flags, stp, expire_at)])
        return client_order_id

    def cancel(self, order_id: int) -> int:
        """Ask to cancel exchange order ``order_id``; the client order id of the request."""
        client_order_id = self.reserve_client_order_ids()
        self.send_batch([CancelOrder(client_order_id, order_id)])
        return client_order_id

    def replace(self, order_id: int, price: int, quantity: int) -> int:
        """Ask to change an order's price and open quantity; the client order id of the request."""
        client_order_id = self.reserve_client_order_ids()
        self.send_batch([ReplaceOrder(client_order_id, order_id, price, quantity)])
        return client_order_id

    def mass_cancel(self, symbol: str = "") -> None:
        """Cancel every open order of this trader in ``symbol`` ("" for all); answered by MassCancelDone."""
        self.send_batch([MassCancel(symbol)])

    @_locked
    def send_batch(self, messages: list) -> None:
        """Send many requests in one frame (they are handled in list order); `SessionEnded`
        if the session ended (unless ``relogon``: then log on again first)."""
        self._ensure_session()
        self._send(messages)

    def _send(self, messages: list) -> None:
        send(self._socket, (self._requests.encode(messages),))
        self.last_sent = time.monotonic()

    def _ensure_session(self) -> None:
        """Raise `SessionEnded` if a session this client had has ended, or with ``relogon`` log on
        again. What already arrived is taken in first (and kept for `receive`), so that an end
        queued but not yet read counts."""
        if self.logged_on:
            self._pending.extend(self._drain())
        if self.ended is None:
            return
        if not self.relogon:
            raise SessionEnded(self.ended.reason, self.ended.text)
        log.warning("%s: the session ended (%s); logging on again", self.trader_id, self.ended.text)
        self.logon()

    # ------------------------------------------------------------ queries

    def open_orders(self, timeout: float = 5.0) -> list[OpenOrder]:
        """This trader's open orders: every `OpenOrders` page of the answer, up to the ``last`` one."""
        return self._again_if_relogon(self._open_orders, timeout)

    def _open_orders(self, timeout: float) -> list[OpenOrder]:
        request_id = next(self._request_ids)
        self.send_batch([QueryOpenOrders(request_id)])
        deadline = time.monotonic() + timeout
        orders: list[OpenOrder] = []
        while True:
            try:
                page = self._wait_for(
                    lambda m: isinstance(m, OpenOrders | QueryRejected) and m.request_id == request_id,
                    max(0.0, deadline - time.monotonic()),
                )
            except RequestTimeout:
                raise RequestTimeout(f"open orders incomplete after {timeout}s ({len(orders)} received)") from None
            if isinstance(page, QueryRejected):
                raise RequestRejected(page.reason, page.text)
            orders.extend(page.orders)
            if page.last:
                return orders

    def positions(self, timeout: float = 5.0) -> Positions:
        return self._query(QueryPositions(next(self._request_ids)), Positions, timeout)

    def book(self, symbol: str, levels: int = 10, timeout: float = 5.0) -> Book:
        return self._query(QueryBook(next(self._request_ids), symbol, levels), Book, timeout)

    def instruments(self, timeout: float = 5.0) -> list[Instrument]:
        return self._query(QueryInstruments(next(self._request_ids)), Instruments, timeout).instruments

    def _query(self, request, answer_type, timeout: float):
        return self._again_if_relogon(lambda wait: self._ask(request, answer_type, wait), timeout)

    def _again_if_relogon(self, ask: Callable[[float], object], timeout: float):
        """``ask(timeout)``; if the session turns out to be gone and this client logs on
        again by itself, log on and ask once more (queries change nothing, so asking twice is safe)."""
        try:
            return ask(timeout)
        except SessionEnded:
            if not self.relogon:
                raise
        return ask(timeout)

    def _ask(self, request, answer_type, timeout: float):
        request_id = request.request_id
        self.send_batch([request])
        try:
            reply = self._wait_for(
                lambda m: isinstance(m, answer_type | QueryRejected) and m.request_id == request_id, timeout
            )
        except RequestTimeout:
            raise RequestTimeout(f"no answer to {type(request).__name__} within {timeout}s") from None
        if isinstance(reply, QueryRejected):
            raise RequestRejected(reply.reason, reply.text)
        return reply

    # ------------------------------------------------------------ receiving

    @_locked
    def receive(self, timeout: float = 0.0) -> list:
        """Every `ClientMessage` available, waiting up to ``timeout`` seconds for the first.

        Returns the kept messages first; otherwise the first frame to arrive plus
        every frame already queued behind it. Sends heartbeats while it waits.
        """
        self.keep_alive()
        if self._pending:
            messages = list(self._pending)
            self._pending.clear()
            return messages + self._read(0.0)
        return self._read(timeout)

    @_locked
    def keep_alive(self) -> None:
        """Send a heartbeat if the session is logged on and nothing was sent for heartbeat_ms; take
        the session as lost if nothing came from the TES for session_timeout_ms (`_give_up`)."""
        if not self.logged_on:
            return
        now = time.monotonic()
        if now - self.last_received > self.session_timeout_s:
            self._pending.extend(self._drain())
            if self.logged_on and now - self.last_received > self.session_timeout_s:
                self._give_up()
                return
        if now - self.last_sent >= self.heartbeat_s:
            self._send([Heartbeat()])

    def _give_up(self) -> None:
        """End a session whose TES said nothing for the session timeout, and tell the TES (if it is
        only stuck, it takes the `Logout` first when it resumes, before any new logon on this
        connection, which it would otherwise refuse as already logged on)."""
        self.logged_on = False
        self.ended = LoggedOut(EndReason.TIMEOUT, f"nothing came from the TES for {self.session_timeout_s:g} s: "
                                                  "it is gone or stuck")
        try:
            send(self._socket, (self._requests.encode([Logout()]),), zmq.NOBLOCK)
            self._given_up = True
        except zmq.Again:
            pass  # its queue to the TES is full: the TES ends the session at its own timeout

    def _read(self, timeout: float) -> list:
        """The first frame to arrive within ``timeout`` and every one queued behind it, sending
        heartbeats meanwhile (the caller holds the lock, as for `_drain`); [] at once if the session
        is taken as lost meanwhile (`keep_alive`)."""
        deadline = time.monotonic() + timeout
        while True:
            wait = deadline - time.monotonic()
            logged_on = self.logged_on
            if logged_on:
                wait = min(wait, self.last_sent + self.heartbeat_s - time.monotonic())
            if self._socket.poll(max(0, int(wait * 1000 + 0.999))):
                messages = self._drain()
                if messages:
                    return messages
            self.keep_alive()
            if time.monotonic() >= deadline or (logged_on and not self.logged_on):
                return []

    @_locked
    def receive_ready(self) -> list:
        """The kept messages and every message already queued, without waiting: for hot
        loops that wait on the socket's descriptor themselves."""
        messages = list(self._pending)
        self._pending.clear()
        return messages + self._drain()

    def _drain(self) -> list:
        """Decode every frame already queued (none: []), each message read in C until none is
        left (`native.sockets.receive`: no exception, and no option read through pyzmq). The caller
        holds the lock."""
        if self._failure is not None:
            raise ClientError(str(self._failure))
        messages: list = []
        socket = self._socket
        while (parts := receive(socket)) is not None:
            for part in parts:
                messages.extend(self._decode(part))
        if not messages:
            return messages
        self.last_received = time.monotonic()
        for message in reversed(messages):
            number = getattr(message, "report", 0)
            if number:
                if number > self.last_report:
                    self.last_report = number
                break
        kinds = set(map(type, messages))
        if LogonAccepted in kinds or LoggedOut in kinds or SessionRejected in kinds:
            messages = self._follow_session(messages)
        if Heartbeat in kinds:
            messages = [m for m in messages if type(m) is not Heartbeat]
        return messages

    def _follow_session(self, messages: list) -> list:
        """Follow the session's state in arrival order: it begins with `LogonAccepted` and is
        over when the TES says so (`LoggedOut`) or refuses a request because it does not know
        it (`SessionRejected` NOT_LOGGED_ON while this client was logged on). The messages, less
        the answer to a `Logout` sent on giving up (`_give_up`): the first `LoggedOut` or
        NOT_LOGGED_ON after it, which comes before the answer to any later logon."""
        kept = []
        for message in messages:
            kind = type(message)
            if self._given_up and (kind is LoggedOut or (
                    kind is SessionRejected and message.reason == RejectReason.NOT_LOGGED_ON)):
                self._given_up = False
                continue
            kept.append(message)
            if kind is LogonAccepted:
                self._given_up = False
                self.logged_on = True
                self.ended = None
                self._next_order_id = max(self._next_order_id, message.next_client_order_id)
                self.heartbeat_s = message.heartbeat_ms / 1000
                self.session_timeout_s = message.session_timeout_ms / 1000
                self._start_keeper()
            elif self.logged_on and (
                kind is LoggedOut or (kind is SessionRejected and message.reason == RejectReason.NOT_LOGGED_ON)
            ):
                self.logged_on = False
                self.ended = message
        return kept

    def _start_keeper(self) -> None:
        """Start the keeper thread, unless it runs or it was stopped for good."""
        if self._keeper_stop.is_set() or (self._keeper is not None and self._keeper.is_alive()):
            return
        self._keeper = threading.Thread(target=_keep_session, args=(weakref.ref(self), self._keeper_stop),
                                        name=f"session-{self.trader_id}", daemon=True)
        self._keeper.start()

    def _tend(self) -> bool:
        """One turn of the keeper, unless a call holds the lock (it keeps the session itself):
        take in what arrived, then `keep_alive`. False once the keeper is to end: stopped, an
        undecodable frame (kept for the caller's next read), or a socket ZeroMQ refuses to use
        (the caller's next call meets the same error)."""
        if not self._lock.acquire(blocking=False):
            return True
        try:
            if self._keeper_stop.is_set():
                return False
            self._pending.extend(self._drain())
            self.keep_alive()
            return True
        except ClientError as exc:
            self._failure = exc
            return False
        except zmq.ZMQError:
            return False
        finally:
            self._lock.release()

    def _decode(self, frame: bytes) -> list:
        try:
            return self._messages.decode(frame)
        except (msgspec.DecodeError, msgspec.ValidationError, ValueError) as exc:
            raise ClientError(f"undecodable frame from the TES ({len(frame)} bytes): {exc}") from None

    @_locked
    def _wait_for(self, matches: Callable[[object], bool], timeout: float, in_session: bool = True):
        """The first message (kept or new) that ``matches``; keep every other one for `receive`.
        ``in_session``: an answer within the session, so `SessionEnded` as soon as it ends."""
        for index, message in enumerate(self._pending):
            if matches(message):
                del self._pending[index]
                return message
        deadline = time.monotonic() + timeout
        while True:
            found = None
            for message in self._read(max(0.0, deadline - time.monotonic())):
                if found is None and matches(message):
                    found = message
                else:
                    self._pending.append(message)
            if found is not None:
                return found
            if in_session and self.ended is not None:
                raise SessionEnded(self.ended.reason, self.ended.text)
            if time.monotonic() >= deadline:
                raise RequestTimeout(f"no answer within {timeout}s")


def _answers_logon(message) -> bool:
    """Whether ``message`` can be the answer to a Logon (a refusal of an earlier request for
    want of a session, NOT_LOGGED_ON, cannot)."""
    kind = type(message)
    return kind is LogonAccepted or kind is LogonRejected or (
        kind is SessionRejected and message.reason != RejectReason.NOT_LOGGED_ON)


__all__ = [
    "ClientError",
    "ExchangeClient",
    "LogonError",
    "RequestRejected",
    "RequestTimeout",
    "SessionEnded",
]
