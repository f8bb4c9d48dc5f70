"""One TES session per trader of the REST gateway, shared by all of that trader's requests.

A `TraderSession` wraps an `ExchangeClient` (``relogon=True``: a session the TES ended is opened
again at the next request) and lives on the gateway's event loop, which owns the session's
socket once it is logged on: no thread hands commands or answers over.

- A command (`submit`: place, cancel, replace, mass cancel) is sent at once from the event loop
  (its client order id reserved in the same step, so the ids reach the TES in order however many
  requests arrive together) and awaits the first report answering it (matched by client order
  id; `MassCancelDone` by order of asking), at most ``request_timeout_s``.
- The loop reads the socket when its descriptor signals (``add_reader``): every report settles
  the future waiting for it, every fill is kept (the latest ``FILLS_KEPT``) and every report goes
  to the gateway's private streams. ZeroMQ's descriptor signals only a change: the session reads
  until none is queued after every read and after every send of its own.
- Blocking calls (the logon, a log-on-again, the queries with their own answers: open orders,
  positions) run on a worker thread, one at a time; the socket is *lent* to it meanwhile (the
  loop neither reads nor sends; commands arriving then wait in a queue), and when it comes back
  the loop takes in what the call kept for it and sends what waited.
- When the TES ends the session (another logon of the trader takes it over), the commands still
  waiting fail at once (503) and the next one logs on again first.
"""

import asyncio
import logging
from collections import deque
from collections.abc import Callable

import zmq

from clients.client import ClientError, ExchangeClient, SessionEnded
from config.settings import ApiKeyConfig, Config
from servers.protocol import LogonAccepted, MassCancel, MassCancelDone, OrderFilled

log = logging.getLogger("api")

FILLS_KEPT = 10_000


class Pending:
    """A command waiting for its first report."""

    __slots__ = ("command", "future", "client_order_id")

    def __init__(self, command: Callable[[int], object] | MassCancel, future: asyncio.Future) -> None:
        self.command = command
        """``build(client_order_id)`` of an order command, or a `MassCancel`."""
        self.future = future
        self.client_order_id: int | None = None


class RequestTimedOut(Exception):
    """The TES did not answer a request within the gateway's ``request_timeout_s``."""


class TraderSession:
    """A trader's TES session on the event loop: every method runs on the loop's thread."""

    def __init__(self, config: Config, key: ApiKeyConfig, server_key: bytes | None,
                 on_report: Callable[[str, object], None]) -> None:
        self.trader_id = key.trader_id
        self.client = ExchangeClient(config.tes.client_endpoint, key.trader_id, key.exchange_key,
                                     server_key=server_key, relogon=True)
        self.timeout = config.api.request_timeout_s
        self.fills: deque[OrderFilled] = deque(maxlen=FILLS_KEPT)
        self.started = False
        self._on_report = on_report
        self._waiters: dict[int, Pending] = {}
        self._mass: deque[Pending] = deque()
        self._queued: deque[Pending] = deque()
        """Commands that arrived while the socket was lent or the session was down, in order."""
        self._lent = False
        self._exclusive = asyncio.Lock()
        """Held while the socket is lent to a worker thread: one blocking call at a time."""
        self._descriptor: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._heartbeat: asyncio.TimerHandle | None = None
        self._log_on_task: asyncio.Task | None = None

    # ------------------------------------------------------------ session

    async def start(self) -> None:
        """Log on (once; later ends of the session are mended by logging on again) and take the
        client's socket over (its keeper thread stops; the loop keeps the session alive)."""
        async with self._exclusive:
            if self.started:
                return
            self._lent = True
            try:
                await asyncio.to_thread(self.client.logon, self.timeout)
            finally:
                self._lent = False
            self._loop = asyncio.get_running_loop()
            self._descriptor = self.client.socket.getsockopt(zmq.FD)
            self._loop.add_reader(self._descriptor, self._readable)
            self.started = True
            self._keep_alive()
            self._flush()

    def _keep_alive(self) -> None:
        if not self._lent:
            try:
                self.client.keep_alive()
            except zmq.ZMQError as exc:
                log.warning("%s: a heartbeat to the TES failed: %s", self.trader_id, exc)
            self._readable()
        self._heartbeat = self._loop.call_later((self.client.heartbeat_s or 1.0) / 2, self._keep_alive)

    async def _lend(self, call: Callable[[], object]):
        """``call()`` on a worker thread with the socket lent to it (the caller holds ``_exclusive``)."""
        self._lent = True
        self._loop.remove_reader(self._descriptor)
        try:
            return await asyncio.to_thread(call)
        finally:
            self._lent = False
            self._loop.add_reader(self._descriptor, self._readable)
            self._readable()
            self._flush()

    async def _log_on_again(self) -> None:
        async with self._exclusive:
            if self.client.ended is not None:
                try:
                    await self._lend(self.client.logon)
                except ClientError as exc:
                    log.warning("%s: logging on again failed: %s", self.trader_id, exc)
                    self._fail(self._queued, exc)
                    self._queued.clear()

    # ------------------------------------------------------------ commands

    async def submit(self, command: Callable[[int], object] | MassCancel):
        """Send ``command(client_order_id)`` (or a `MassCancel`) and return the first report answering
        it; `RequestTimedOut` after ``request_timeout_s``, `SessionEnded` if the session ends first."""
        if not self.started:
            await self.start()
        pending = Pending(command, self._loop.create_future())
        if self._lent or self.client.ended is not None:
            self._queued.append(pending)
            self._flush()
        else:
            self._send([pending])
        try:
            async with asyncio.timeout(self.timeout):
                return await pending.future
        except TimeoutError:
            raise RequestTimedOut(f"no answer from the exchange within {self.timeout:g}s") from None
        finally:
            if pending.client_order_id is not None:
                self._waiters.pop(pending.client_order_id, None)
            elif pending in self._mass:
                self._mass.remove(pending)
            elif pending in self._queued:
                self._queued.remove(pending)

    def _flush(self) -> None:
        """Send the queued commands, or log on again first if the session ended."""
        if not self._queued or self._lent:
            return
        if self.client.ended is not None:
            if self._log_on_task is None or self._log_on_task.done():
                self._log_on_task = self._loop.create_task(self._log_on_again())
            return
        batch = list(self._queued)
        self._queued.clear()
        self._send(batch)

    def _send(self, batch: list[Pending]) -> None:
        """Send ``batch`` in one frame, in order (an answer already given by a timeout is skipped)."""
        batch = [pending for pending in batch if not pending.future.done()]
        count = sum(not isinstance(pending.command, MassCancel) for pending in batch)
        client_order_id = self.client.reserve_client_order_ids(count) if count else 0
        messages = []
        for pending in batch:
            if isinstance(pending.command, MassCancel):
                self._mass.append(pending)
                messages.append(pending.command)
            else:
                pending.client_order_id = client_order_id
                self._waiters[client_order_id] = pending
                messages.append(pending.command(client_order_id))
                client_order_id += 1
        try:
            self.client.send_batch(messages)
        except ClientError as exc:
            for pending in batch:
                self._waiters.pop(pending.client_order_id, None)
                if pending in self._mass:
                    self._mass.remove(pending)
            self._fail(batch, exc)
            return
        self._readable()

    @staticmethod
    def _fail(batch, exc: ClientError) -> None:
        for pending in batch:
            if not pending.future.done():
                pending.future.set_exception(exc)

    # ------------------------------------------------------------ reports

    def _readable(self) -> None:
        """Take in everything the TES sent (until none is queued) and dispatch it."""
        if self._lent:
            return
        try:
            messages = self.client.receive_ready()
        except ClientError as exc:
            log.warning("%s: reading the TES session failed: %s", self.trader_id, exc)
            self._fail(list(self._waiters.values()) + list(self._mass), exc)
            self._waiters.clear()
            self._mass.clear()
            return
        for message in messages:
            if isinstance(message, LogonAccepted):
                continue
            if isinstance(message, OrderFilled):
                self.fills.append(message)
            client_order_id = getattr(message, "client_order_id", None)
            if client_order_id is not None:
                pending = self._waiters.pop(client_order_id, None)
                if pending is not None and not pending.future.done():
                    pending.future.set_result(message)
            elif isinstance(message, MassCancelDone) and self._mass:
                pending = self._mass.popleft()
                if not pending.future.done():
                    pending.future.set_result(message)
            self._on_report(self.trader_id, message)
        ended = self.client.ended
        if ended is not None and (self._waiters or self._mass):
            # the TES answers nothing sent before its LoggedOut any more
            self._fail(list(self._waiters.values()) + list(self._mass), SessionEnded(ended.reason, ended.text))
            self._waiters.clear()
            self._mass.clear()

    # ------------------------------------------------------------ queries

    async def query(self, ask: Callable[[ExchangeClient, float], object]):
        """``ask(client, timeout)`` on a worker thread, one query of this trader at a time."""
        if not self.started:
            await self.start()
        async with self._exclusive:
            return await self._lend(lambda: ask(self.client, self.timeout))

    def close(self) -> None:
        """Log out and close (after the event loop has stopped)."""
        if self._heartbeat is not None:
            self._heartbeat.cancel()
        self.client.close()
