"""``python main.py -s FIX``: the FIX 4.4 gateway, an acceptor over TCP in front of the TES.

One thread serves everything with one `zmq.Poller`: the listening socket, every FIX
connection (its file descriptor), every trader's `ExchangeClient` socket and the market-data
sockets, plus a pipe that wakes it when a logon check (done on a worker thread: the TES's key
check takes a while) has finished. Each loop turn

1. reads what is ready: at most 64 KiB per connection, cut into frames (`messages.Framer`)
   and handed to the connection's `FixSession`; every TES report and market-data update;
2. ticks the sessions (heartbeats, TestRequests, timeouts) every 100 ms;
3. writes every session store that changed (`SequenceStore.flush`): nothing of the turn has
   left the gateway yet;
4. sends each trader's requests of the turn to the TES in one frame, taking in the answers that
   have arrived by then, and writes the stores again if those made messages;
5. writes what each connection has queued (non-blocking; the rest waits for the socket to be
   writable): every message in it is in its session's store.

Bounds: at most ``fix.max_connections`` connections (more are closed at once), a frame of at
most ``fix.max_message_bytes`` (a peer that sends more is sent a Logout and closed), at most
``fix.max_output_bytes`` queued to a peer that does not read (then it is closed: a slow
consumer; what it missed is in the store for its next logon), a Logon within
``fix.logon_timeout_ms``. A session ends when its peer logs out or goes away; its trader is
then logged out of the TES (with cancel-on-disconnect if the session is configured so).

SIGINT or SIGTERM: every session is sent a Logout ("the gateway is shutting down") and given a
moment to answer, every trader is logged out of the TES, and the gateway exits 0.
"""

import logging
import os
import queue
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import zmq

from clients.client import ClientError, ExchangeClient, RequestRejected
from clients.runtime import UsageError, tes_server_key
from config.settings import Config
from gateways.fix import messages as m
from gateways.fix.application import SessionOrders, TraderLink
from gateways.fix.market_data import MarketData
from gateways.fix.session import FixSession, Sessions, State
from gateways.fix.store import SequenceStore, StoreDamaged, StoreUnwritable
from servers import security, service
from servers.journal import DirectoryLock

log = logging.getLogger("fix")

POLLIN = int(zmq.POLLIN)
"""As a plain int: ``&`` on zmq's flag enum is a Python call, and the loop does it for every event."""
READ_BYTES = 65536
TICK_S = 0.1
LOGON_TIMEOUT_S = 10.0
"""How long the TES may take to answer a trader's logon (its key check is queued behind others)."""
INSTRUMENTS_TTL_S = 10.0
"""How long the instruments asked of the TES at a logon serve the logons after it."""
CLOSE_WAIT_S = 2.0
"""How long a closing connection may take to drain what is queued to it, and the shutdown to get Logouts."""


class Connection:
    """One accepted TCP connection: its socket, framer, output queue and FIX session (the `Transport`)."""

    __slots__ = ("gateway", "sock", "fd", "peer", "framer", "out", "session", "closing", "closing_at", "writable")

    def __init__(self, gateway: "FixGateway", sock: socket.socket, peer: str) -> None:
        self.gateway = gateway
        self.sock = sock
        self.fd = sock.fileno()
        self.peer = peer
        self.framer = m.Framer(gateway.fix.max_message_bytes)
        self.out = bytearray()
        self.session: FixSession | None = None
        self.closing: str | None = None
        self.closing_at = 0.0
        self.writable = False

    def send(self, frame: bytes) -> None:
        if self.closing is not None and self.closing.startswith("slow consumer"):
            return
        self.out += frame
        if len(self.out) > self.gateway.fix.max_output_bytes:
            self.out.clear()
            reason = (f"slow consumer: more than {self.gateway.fix.max_output_bytes} bytes queued to a peer that "
                      "does not read")
            log.warning("%s: %s; closing the connection (what it missed is kept for its next logon)",
                        self.session.name if self.session else self.peer, reason)
            self.closing = reason
            self.closing_at = time.monotonic()
            if self.session is not None:
                self.session.closed(reason)

    def close(self, reason: str) -> None:
        if self.closing is None:
            self.closing = reason
            self.closing_at = time.monotonic()

    def queued(self) -> int:
        return len(self.out)


class FixGateway:
    """The FIX gateway role (`servers.service.Server`)."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.fix = config.fix
        self.stopping = False
        self._closed = False
        data_dir = Path(self.fix.data_dir)
        self._lock = DirectoryLock(data_dir, "the FIX gateway's data directory")
        self.stores: dict[tuple[str, str], SequenceStore] = {}
        try:
            for settings in self.fix.sessions:
                pair = (settings.sender_comp_id, settings.target_comp_id)
                self.stores[pair] = SequenceStore(data_dir / f"{pair[0]}-{pair[1]}", self.fix.fsync)
            self.server_key = tes_server_key(config) if config.security.clients == "curve" else None
            self.sessions = Sessions(self.fix, self.stores)
            self.listener = socket.create_server((self.fix.address, self.fix.port), backlog=128)
        except BaseException:
            self._release()
            raise
        self.listener.setblocking(False)
        self.poller = zmq.Poller()
        self.poller.register(self.listener.fileno(), zmq.POLLIN)
        self._wake_read, self._wake_write = os.pipe()
        os.set_blocking(self._wake_read, False)
        os.set_blocking(self._wake_write, False)
        self.poller.register(self._wake_read, zmq.POLLIN)
        self.connections: dict[int, Connection] = {}
        self.links: dict[FixSession, TraderLink] = {}
        self.known: dict[tuple[str, str], SessionOrders] = {}
        """Each CompID pair's orders, across its connections."""
        self.by_client_socket: dict[zmq.Socket, TraderLink] = {}
        self.market_data = MarketData(config, lambda s: self.poller.register(s, zmq.POLLIN), self.poller.unregister)
        self.executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="fix-logon")
        self.done: queue.SimpleQueue = queue.SimpleQueue()
        self.refused = service.Occurrences(log, "connection refused: %s (%d so far)")
        self.unknown = service.Occurrences(log, "%s: a %s for client order id %s the session does not know (%d so far)")
        self.accepted = 0
        self._last_tick = 0.0
        self._instruments_cache: tuple[float, list | None] = (0.0, None)

    def _release(self) -> None:
        for store in self.stores.values():
            store.close()
        self._lock.release()

    # ------------------------------------------------------------ service.Server

    def ready(self) -> str:
        names = ", ".join(f"{s.target_comp_id}({s.trader_id})" for s in self.fix.sessions) or "none"
        return f"READY FIX gateway on {self.fix.address}:{self.fix.port}; sessions {names}"

    def stop(self, *_signal) -> None:
        self.stopping = True
        try:
            os.write(self._wake_write, b"x")
        except OSError:
            pass

    def stopped(self) -> str:
        return f"FIX gateway stopped: {self.accepted} connections served"

    def run(self) -> None:
        while not self.stopping:
            self.turn(TICK_S)
        self._shutdown()

    # ------------------------------------------------------------ the loop

    def turn(self, timeout: float) -> None:
        for event_socket, events in self.poller.poll(int(timeout * 1000)):
            if event_socket == self.listener.fileno():
                self._accept()
            elif event_socket == self._wake_read:
                self._woken()
            elif isinstance(event_socket, int):
                connection = self.connections.get(event_socket)
                if connection is not None and events & POLLIN:
                    self._read(connection)
            else:
                link = self.by_client_socket.get(event_socket)
                if link is not None:
                    link.pump()
                else:
                    self.market_data.on_socket(event_socket)
        now = time.monotonic()
        if now - self._last_tick >= TICK_S:
            self._last_tick = now
            self._tick(now)
        self._flush()

    def _accept(self) -> None:
        while True:
            try:
                sock, address = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self.refused(f"accept failed: {exc}")
                return
            peer = f"{address[0]}:{address[1]}"
            if len(self.connections) >= self.fix.max_connections:
                self.refused(f"{peer}: already {self.fix.max_connections} connections (fix.max_connections)")
                sock.close()
                continue
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            connection = Connection(self, sock, peer)
            connection.session = FixSession(self.sessions, connection, self, peer, time.monotonic())
            self.connections[connection.fd] = connection
            self.poller.register(connection.fd, zmq.POLLIN)
            self.accepted += 1

    def _read(self, connection: Connection) -> None:
        if connection.closing is not None:
            try:
                connection.sock.recv(READ_BYTES)  # drained and dropped: the session is over
            except OSError:
                pass
            return
        try:
            data = connection.sock.recv(READ_BYTES)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            data = b""
            log.info("%s: %s", connection.peer, exc)
        session = connection.session
        if not data:
            session.closed("the peer closed the connection")
            self._drop(connection)
            return
        framer = connection.framer
        framer.feed(data)
        now = time.monotonic()
        while session.state is not State.CLOSED and connection.closing is None:
            try:
                frames = framer.frames()
            except m.Garbled as exc:
                session.fail(f"garbled message: {exc}")
                return
            if not frames:
                return
            for frame in frames:
                if session.state is State.CLOSED or connection.closing is not None:
                    return
                session.on_frame(frame, now)

    def _tick(self, now: float) -> None:
        for connection in list(self.connections.values()):
            if connection.closing is None:
                connection.session.on_tick(now)
        for link in list(self.links.values()):
            if link.client is not None:
                try:
                    link.client.keep_alive()
                except (ClientError, zmq.ZMQError) as exc:
                    link.session.logout(f"the exchange connection failed: {exc}")
        self.market_data.tick()

    def _flush(self) -> None:
        """The stores, then the TES, then the peers (see the module docstring). A send to the TES
        takes in what had arrived (`pump`), and the reports it makes are stored before anything
        leaves, as are those of a send that failed (its requests refused); so are the requests
        those reports make (waiting cancels), before they are sent in turn."""
        self._flush_stores()
        for link in list(self.links.values()):
            if link.outbox:
                link.flush()
                link.pump()  # a send takes in what had arrived: it must not wait for the next event
        self._flush_stores()
        if any(link.outbox for link in self.links.values()):
            for link in list(self.links.values()):
                link.flush()
            self._flush_stores()
        now = time.monotonic()
        for connection in list(self.connections.values()):
            if connection.out:
                self._write(connection)
            if connection.closing is not None and (not connection.out or now - connection.closing_at > CLOSE_WAIT_S):
                self._drop(connection)
            elif connection.out and not connection.writable:
                connection.writable = True
                self.poller.modify(connection.fd, zmq.POLLIN | zmq.POLLOUT)
            elif not connection.out and connection.writable:
                connection.writable = False
                self.poller.modify(connection.fd, zmq.POLLIN)

    def _flush_stores(self) -> None:
        for store in self.stores.values():
            if store.dirty:
                store.flush()

    def _write(self, connection: Connection) -> None:
        try:
            sent = connection.sock.send(connection.out)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            connection.out.clear()
            if connection.session.state is not State.CLOSED:
                connection.session.closed(f"the connection failed: {exc}")
            connection.close(str(exc))
            return
        del connection.out[:sent]
        if not connection.out and connection.session.state is State.ACTIVE:
            connection.session.pump()

    def _drop(self, connection: Connection) -> None:
        if self.connections.pop(connection.fd, None) is None:
            return
        self.poller.unregister(connection.fd)
        if connection.session.state is not State.CLOSED:
            connection.session.closed(connection.closing or "closed")
        try:
            connection.sock.close()
        except OSError:
            pass

    # ------------------------------------------------------------ session.Application

    def logon(self, session: FixSession, password: str) -> None:
        known = self.known.setdefault((session.sender, session.target), SessionOrders())
        link = TraderLink(self, session, known)
        self.links[session] = link
        settings = session.settings
        last_report = session.store.last_report

        wants_orders = link.has_open_orders()

        def check() -> None:
            client = ExchangeClient(self.config.tes.client_endpoint, settings.trader_id, password,
                                    cancel_on_disconnect=settings.cancel_on_disconnect, server_key=self.server_key)
            client.last_report = last_report
            try:
                client.logon(LOGON_TIMEOUT_S)
                instruments, open_orders = self._instruments(client), []
                if wants_orders:
                    try:
                        open_orders = client.open_orders()
                    except RequestRejected as exc:
                        log.warning("%s: open orders not refreshed at logon: %s", session.name, exc)
            except (ClientError, zmq.ZMQError) as exc:
                client.close(0.2)
                self.done.put((link, None, str(exc), None))
            else:
                self.done.put((link, client, instruments, open_orders))
            try:
                os.write(self._wake_write, b"x")
            except OSError:
                pass

        self.executor.submit(check)

    def _instruments(self, client: ExchangeClient) -> list:
        """The TES's instruments, asked at most every `INSTRUMENTS_TTL_S` for all sessions (a burst of
        logons must not spend the traders' query rate); the last list if the TES refuses the query."""
        cached_at, instruments = self._instruments_cache
        if instruments is None or time.monotonic() - cached_at > INSTRUMENTS_TTL_S:
            try:
                instruments = client.instruments()
            except RequestRejected:
                if instruments is None:
                    raise
            else:
                self._instruments_cache = (time.monotonic(), instruments)
        return instruments

    def _woken(self) -> None:
        try:
            while os.read(self._wake_read, 4096):
                pass
        except BlockingIOError:
            pass
        while True:
            try:
                link, client, result, open_orders = self.done.get_nowait()
            except queue.Empty:
                return
            session = link.session
            if client is None:
                session.logon_refused(result)
                continue
            if session.state is not State.LOGON_PENDING or link.closed:
                self.executor.submit(client.close, 0.5)
                continue
            link.client = client
            link.instruments = {instrument.symbol: instrument for instrument in result}
            link.refresh(open_orders)
            sock = client.socket  # taken over: the keeper thread stops, this loop keeps the session alive
            self.by_client_socket[sock] = link
            self.poller.register(sock, zmq.POLLIN)
            session.logon_accepted()
            link.pump()  # the reports missed while the session was down, kept by the client

    def on_message(self, session: FixSession, message: m.Message) -> None:
        link = self.links.get(session)
        if link is not None and link.client is not None:
            link.on_message(message)

    def on_logout(self, session: FixSession) -> None:
        link = self.links.pop(session, None)
        if link is None:
            return
        link.flush()
        client = link.close()
        if client is not None:
            sock = client.socket
            self.by_client_socket.pop(sock, None)
            try:
                self.poller.unregister(sock)
            except KeyError:
                pass
            self.executor.submit(client.close, 0.5)
        log.info("%s: session ended; %s logged out of the exchange", session.name, session.trader_id)

    def unknown_reports(self, name: str, kind: str, client_order_id: int) -> None:
        self.unknown(name, kind, client_order_id)

    # ------------------------------------------------------------ stopping

    def _shutdown(self) -> None:
        for connection in list(self.connections.values()):
            session = connection.session
            if session.state is State.ACTIVE:
                session.logout("the gateway is shutting down")
            elif session.state is not State.LOGOUT_SENT:
                session.closed("the gateway is shutting down")
        deadline = time.monotonic() + CLOSE_WAIT_S
        while time.monotonic() < deadline and any(
                c.session.state is State.LOGOUT_SENT or c.out for c in self.connections.values()):
            self.turn(0.05)
        for connection in list(self.connections.values()):
            connection.session.closed("the gateway is shutting down")
            self._drop(connection)
        self._flush()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for session in list(self.links):
            self.on_logout(session)
        self.executor.shutdown(wait=True)
        self.market_data.close()
        for connection in list(self.connections.values()):
            try:
                connection.sock.close()
            except OSError:
                pass
        for store in self.stores.values():
            try:
                store.flush()
            except StoreUnwritable:
                pass
        self.listener.close()
        os.close(self._wake_read)
        os.close(self._wake_write)
        self._release()


def serve(config: Config, args=None) -> int:
    """``python main.py -s FIX``: run until SIGINT/SIGTERM; the exit status (`servers.service.serve`)."""
    return service.serve(log, "FIX", lambda: FixGateway(config),
                         {security.KeyFileError: 2, UsageError: 2, StoreDamaged: 1, StoreUnwritable: 1, OSError: 1},
                         (StoreUnwritable,), log_format=config.logging.format)
