"""The Trading Engine Server: client sessions, validation, risk, routing, portfolios.

Sockets
-------
=========================  ======  ===================================================
socket                     type    frames
=========================  ======  ===================================================
``tes.client_endpoint``    ROUTER  in ``[identity, ClientRequest list]``,
                                   out ``[identity, ClientMessage list]`` (bind)
each shard's               DEALER  out ``[ObsRequest list]``, in ``[ObsReply list]``
``command_endpoint``               (connect; ``Hello(tes_id)`` first)
=========================  ======  ===================================================

Each shard DEALER is monitored. A connection that answers none of three of ZeroMQ's
heartbeats ``tes.shard_heartbeat_ms`` apart (the book server stopped, or its host lost:
`servers.security.heartbeat`) is closed, which is a disconnection like any other. On
every (re)connection the server introduces
itself with ``Hello`` (naming the last sequence its ledger holds) and re-sends it
until the ``HelloReply`` comes. Orders for a shard that has not answered are
refused with BOOK_UNAVAILABLE. Exchange order ids are ``(tes_id << 48) | counter``;
the counter continues after the largest ``HelloReply.max_order_id`` of any shard
and after the ledger's, so ids never repeat across restarts.

What a client can make the server hold is bounded (the constants below): frames queued
from and to each connection, their sizes, the messages read in one loop iteration, the
query answers a trader may ask for per second (`servers.risk`) and the client order ids a
trader keeps. A session whose outgoing queue is full is not reading: it is ended
(SLOW_CONSUMER).

The pipeline of an EnterOrder, in this order (the first failing step answers):

1. session: logged on (else SessionRejected NOT_LOGGED_ON);
2. message rate of the trader (MESSAGE_RATE_LIMIT);
3. client order id unused by this trader (DUPLICATE_CLIENT_ORDER_ID);
4. instrument: known symbol (UNKNOWN_SYMBOL), the kind of order enabled
   (ORDER_TYPE_DISABLED), then `Instrument.check_order` with the price band centred on
   the last trade, else the reference price, `Instrument.check_iceberg`,
   `Instrument.check_stop` (distance from the same centre, the side of the last
   trade), and a GTD expiry after the TES's clock (EXPIRE_TIME_PASSED);
5. pre-trade risk (`servers.risk`): order quantity, notional, open orders;
6. the owning shard is connected (BOOK_UNAVAILABLE);
7. assign the exchange order id, record the order in the ledger, queue a
   ``BookSubmit`` for the shard, with the trader's account as the book's self-trade
   prevention owner (`servers.protocol.owner_of`) and the order's mode, else the
   trader's default (``stp_default``).

A logged-on session's common orders (limit and market, no display quantity, stop or expiry,
their client order ids in order) that pass every step, and its cancels of its open orders, run
through the order entry in C (`native.entry.EntryPath`), a frame's run of them in one call, with
the same effect; every other message, and every refusal, goes through `_dispatch` here, which
is the specification. A frame of nothing but orders and cancels is read by the same C
(`EntryPath.read`) rather than decoded by msgspec, no object made of a message the C path takes.

On ``Executed`` the book events become client reports for the owners of both
sides, fills are booked into portfolios (`servers.portfolio`) and the last trade
price moves. Every loop iteration reads what is waiting (up to a budget), then
writes the ledger's journal and sends one frame per client and per shard with
everything it produced.

Durability
----------
Everything that must survive the server is in its `servers.ledger.Ledger` (orders, portfolios,
client order ids, each trader's numbered reports), changed only by records the server journals
before anything that follows from them leaves the process, and fsyncs (journal ``fsync =
"batch"``) before anything leaves but two things: with one book server, the reports of its
replies go first (`_send_replies_first`), since they can be made again, and so do the commands
to it if it has a journal stream (`adopts`, `_send_early`), since they can be read back from its
journal; the fsync runs on a thread of its own (`native.syncer.Syncer`) while the loop goes on:
what waits for it leaves when it is done (`_synced`). A restarted TES replays its journal, then
each book server's Hello brings the replies it missed; after a crash (the journal not closed)
logons wait until every book server has answered, so the replies a crash of the machine took
from the journal make the same reports again before anything else is numbered, and where
commands left early the TES reads the book server's journal stream instead, adopting the
commands whose records the crash took (`_missed`). Sessions and rate limits start afresh:
traders log on again, and are sent the reports they missed (`Logon.after_report`).
"""

import logging
import time
from collections import defaultdict, deque
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from time import perf_counter_ns
from time import time_ns as clock
from typing import NamedTuple, get_args

import msgspec
import zmq
from zmq.utils.monitor import recv_monitor_message

from config.settings import Config, ConfigError, InstrumentConfig, stp_mode
from engine.instrument import Instrument
from engine.messages import OrderFilled
from engine.types import CancelReason, OrderType, RejectReason, SelfTradePrevention, Side, TimeInForce
from native.entry import EntryPath
from native.framing import encoded_prefix, join_frames
from native.idtable import IdTable
from native.reports import ReplyPath, Routing
from native.sockets import receive, send, signals
from native.syncer import Syncer
from servers import protocol as p
from servers import security, service
from servers.database_link import DatabaseLink, Reference, ReferenceUnavailable
from servers.gate import Gate
from servers.journal import JournalFailed, RecoveryError
from servers.ledger import (
    CANCEL,
    ID_BITS,
    REPLACE,
    REPORTS_KEPT,
    SUBMISSION,
    Delivered,
    Entered,
    Greeted,
    Ledger,
    LedgerJournal,
    Marked,
    Received,
    Refused,
    Requested,
    Unsent,
)
from servers.logons import Authenticator, Logons, Verdict
from servers.orders import Request
from servers.risk import TraderRisk, valuation_price
from servers.service import Occurrences
from servers.sessions import Session, Sessions, cancels_orders
from servers.status import STATUS_FILE, LatencyHistogram, Stages, StatusFile
from servers.stream import JournalStream, StreamError

log = logging.getLogger("tes")

READ_BUDGET = 512
"""Frames read from one socket per loop iteration, so no socket starves the others."""
FRAME_MESSAGES = 5_000
"""Messages per outgoing frame (well under MAX_BATCH and, for our messages, MAX_FRAME_BYTES)."""
OPEN_ORDERS_PAGE = 1_000
"""A QueryOpenOrders answer is OpenOrders messages (same request id) of this many orders (about
45 KiB); each page costs one token of the trader's query rate."""
MAX_INBOUND_BYTES = p.MAX_FRAME_BYTES + 64 * 1024
"""Larger frames make ZeroMQ drop the connection unread; up to this size they get FRAME_TOO_LARGE."""
CLIENT_INBOUND_FRAMES = 32
"""Frames ZeroMQ queues from one client connection before it stops reading that connection
(TCP then pushes back): at most 32 x MAX_INBOUND_BYTES (34 MiB) held per connection."""
CLIENT_OUTBOUND_FRAMES = 256
"""Frames queued to one client; a session whose queue is full is not reading and is ended
(SLOW_CONSUMER): at most 256 x CLIENT_FRAME_BYTES (16 MiB) held per connection."""
CLIENT_FRAME_BYTES = 64 * 1024
"""Outgoing client frames are split to stay under this size (a single larger message goes alone)."""
CLIENT_MESSAGES_PER_TURN = 20_000
"""Reading client frames stops for the turn after this many messages, so the answers one turn
builds (and the time it takes) stay bounded whatever the clients send."""
HELLO_RETRY_S = 0.005
"""Just connected: the handshake may not be complete yet, so a Hello may not go out at once."""
HELLO_WAIT_S = 1.0
"""Hello unanswered, or no connection yet: try again this often."""
LOGON_WARN_EVERY_S = 10.0
DRAIN_S = 2.0
DRAIN_QUIET_S = 0.2
TEXT_LIMIT = 200
MONITOR_EVENTS = zmq.EVENT_CONNECTED | zmq.EVENT_DISCONNECTED
WAITING_WARN_S = 10.0
"""A shard not ready is logged after this long, and again every this long."""
SYNC_DEFERRED_S = 0.05
SYNC_DEFERRED_BYTES = 1 << 20
"""With `TradingEngineServer.replies_first`, the journal written by turns that sent nothing but the
reports of the book's replies (and, with `TradingEngineServer.adopts`, commands) is fsynced by the
next turn that sends anything else, and at the latest this long after the first such turn or once
this much is unsynced (`TradingEngineServer._sync_unless_deferred`)."""
SYNC_BACKLOG_BYTES = 1 << 20
"""With `TradingEngineServer.replies_first`, the loop stops reading its clients once this much
journal is written behind the fsync the syncer has in hand, until it is done: what a client sends
meanwhile waits in ZeroMQ's queue, bounded by its high-water mark, as when the loop waited for its
fsyncs itself (`TradingEngineServer._pace_intake`)."""
SYNC_WARN_S = 1.0
"""An fsync the syncer has had in hand this long is logged (the status file shows its age)."""
CATCH_UP_WINDOW = 20_000
"""Journal records a catch-up has in flight from the book server at most."""
CATCH_UP_STALL_S = 10.0
"""A catch-up that receives nothing for this long is given up (the outcome of orders in flight is unknown)."""
RECOVERING_TEXT = "the exchange is recovering: its book servers have not yet replayed; log on again shortly"
"""Why a logon is refused when `TradingEngineServer.held_logons` is full."""
ANSWERS = frozenset({p.OrderAccepted, p.OrderRejected, p.CancelRejected, p.ReplaceRejected})
"""Reports that answer a request: the first two an order's first answer, the last three rejects."""
STAGES = ("idle", "replies", "receive", "validate", "journal", "send", "reports", "other")
"""The loop's stages (`servers.status.Stages`), in its order: waiting for input; the book servers'
frames (decoded, applied to the ledger, reports queued) and marks; reading and decoding the
clients' frames; dispatching their messages (the order checks, pre-trade risk, routing); writing
the ledger's journal; encoding and sending the commands to the book servers; encoding and sending
the clients' frames; the rest of the busy time (logons, Hello, housekeeping, the status file)."""
IDLE, REPLIES, RECEIVE, VALIDATE, JOURNAL, SEND, REPORTS, OTHER = range(len(STAGES))
MARKET, STOP, STOP_LIMIT = OrderType.MARKET, OrderType.STOP, OrderType.STOP_LIMIT
GTD = TimeInForce.GTD
"""Module constants: an enum member's lookup on its class costs more than the comparison."""
ADOPTABLE = (p.BookSubmit, p.BookCancel, p.BookReplace)
"""The commands whose records a recovering TES makes again from a book server's journal (`_adopt`)."""


class Shard:
    """One order book server: its command socket (which also brings its marks,
    `servers.protocol.MARKS_TOPIC`), its monitor and what is queued for it.

    The monitor is polled by its ZeroMQ descriptor (``monitor_fd``: `native.sockets.signals`), not
    as a socket."""

    __slots__ = ("name", "socket", "monitor", "monitor_fd", "stream_endpoint", "catch_up",
                 "connected", "ready", "next_hello", "outbox", "unready_since", "warnings", "greeted_at")

    def __init__(self, name: str, socket: zmq.Socket, monitor: zmq.Socket, stream_endpoint: str) -> None:
        self.name = name
        self.socket = socket
        self.monitor = monitor
        self.monitor_fd = signals(monitor)
        self.stream_endpoint = stream_endpoint
        self.catch_up: CatchUp | None = None
        self.connected = False
        self.ready = False
        """The shard answered our Hello on the current connection."""
        self.next_hello = 0.0
        self.outbox: list = []
        self.unready_since = time.monotonic()
        """When the shard last stopped being ready (or the TES started)."""
        self.warnings = 0
        """How long it has been waited for, in WAITING_WARN_S, logged (`_housekeeping`)."""
        self.greeted_at: int | None = None
        """The journal offset its last greeting (`Greeted`) is durable at once fsynced to; -1: not
        yet written; None: not greeted. With `TradingEngineServer.adopts`, commands leave before
        their records are durable once that offset is (`TradingEngineServer._send_early`)."""


class CatchUp:
    """A book server could not send again every reply this TES missed: they are read from its
    journal stream up to ``reply.last_sequence``, while the live frames it sends meanwhile are
    held, to be applied after them (the ledger applies a symbol's replies in sequence order)."""

    __slots__ = ("stream", "reply", "held", "progress_at", "adopting", "adopted")

    def __init__(self, stream: JournalStream, reply: p.HelloReply, now: float) -> None:
        self.stream = stream
        self.reply = reply
        self.held: list[bytes] = []
        self.progress_at = now
        self.adopting = False
        """A command this TES sent was found missing from its ledger: so are all it sent after it
        (`TradingEngineServer._lost`)."""
        self.adopted = 0
        """The records this catch-up made again (`TradingEngineServer._adopt`)."""


class JournalUnavailable(RuntimeError):
    """The ledger's journal cannot be written: the TES stops (nothing of the turn was sent)."""


class Waiting(NamedTuple):
    """What waits for an fsync: the journal's offset it makes durable up to, when it was asked
    (monotonic), the commands by shard, the messages by client, when the frames were read of the
    orders those messages answer."""

    offset: int
    asked: float
    commands: dict[Shard, list]
    outbox: dict[bytes, list]
    answered: list[int]


class TradingEngineServer:
    """Owns its sockets; `run` loops until `stop` is called, then drains and closes them."""

    def __init__(self, config: Config) -> None:
        self.config = config
        settings = config.tes
        self.tes_id = settings.tes_id
        now = time.monotonic()

        self.ledger = Ledger(self.tes_id, {shard.name: list(shard.symbols) for shard in config.shards})
        self.journal = LedgerJournal(Path(settings.journal_dir), config.journal, self.ledger)
        self.orders = self.ledger.orders
        self.database = DatabaseLink(config, Path(settings.journal_dir))
        self.served = {symbol for shard in config.shards for symbol in shard.symbols}
        """The symbols some book server owns: only those can trade."""
        self.instruments: dict[str, InstrumentConfig] = {}
        self.instrument_list: list[Instrument] = []
        """Reference data as clients see it (without the server-side reference price)."""
        self.risks: dict[str, TraderRisk] = {}
        self.owners: dict[str, tuple[int, SelfTradePrevention]] = {}
        """Trader -> its account's self-trade prevention owner and its default mode."""
        self.after_reports: dict[bytes, int] = {}
        """Logons being checked -> the report number they asked to be sent the reports after."""
        self.sessions = Sessions(settings.heartbeat_ms / 1000, settings.session_timeout_ms / 1000)
        self.logons = Logons(
            Authenticator(self.database.reference.keys), settings.logon_failures,
            settings.logon_backoff_ms / 1000, settings.logon_backoff_max_ms / 1000, settings.logon_queue,
        )
        self._use_reference(self.database.reference, now)
        self.housekeeping_s = max(0.005, min(0.1, min(settings.heartbeat_ms, settings.session_timeout_ms) / 10_000))
        self.next_housekeeping = now

        self.requests = p.Codec(p.ClientRequest)
        self.book_requests = p.Codec(p.ObsRequest)
        self.encode_one = msgspec.msgpack.Encoder().encode
        """One message's msgpack: the frames to clients and to the books join the messages, each
        encoded alone unless it already is (bytes: the reports and commands written in C)."""
        self.book_replies = p.Codec(p.ObsReply, p.MAX_SERVER_FRAME_BYTES)
        self.marks = msgspec.msgpack.Decoder(list[p.Mark])

        self.outbox: defaultdict[bytes, list] = defaultdict(list)
        self.queries: dict[int, tuple[bytes, int, Shard]] = {}
        """Internal request id of a BookQuery in flight -> (client identity, its request id, shard)."""
        self.next_query = 1
        self.stopping = False
        self.malformed = 0
        self.entered = 0
        self.undelivered = 0
        """Frames to clients ZeroMQ refused (the client is gone or does not read)."""
        self.refused = Occurrences(log, "shard %s is not taking commands (%d refused so far)")
        """Commands refused because a shard's socket would not take them."""
        self.refused_logons = Occurrences(log, "logons refused: the latest %r (%s); %d so far", LOGON_WARN_EVERY_S)

        # What the status file publishes (`servers.status`, `_publish_status`): counts since the start.
        self.status = StatusFile(Path(settings.journal_dir) / STATUS_FILE, "TES", "TES", log, now)
        self.received = 0
        """Client messages decoded."""
        self.submitted = 0
        self.cancels = 0
        self.replaces = 0
        """EnterOrder, CancelOrder and ReplaceOrder requests of logged-on sessions, refused or not."""
        self.accepted_logons = 0
        """Sessions opened (refused logons: ``refused_logons.count``)."""
        self.reported: dict[type, int] = dict.fromkeys(get_args(p.ClientMessage), 0)
        """Reports made for traders (`route`), by message type."""
        self.rejects: dict[RejectReason, int] = dict.fromkeys(RejectReason, 0)
        """Every reject made for a client (its own checks', relayed book refusals), by reason."""
        self.ack_latency = LatencyHistogram()
        """From reading the client frame carrying an order to sending its first answer."""
        self.frame_read = 0
        """When the client frame being handled was read (`perf_counter_ns`)."""
        self.awaiting: dict[str, IdTable] = {}
        """Trader -> client order id -> when its frame was read, of the orders routed to a book and
        not yet answered (the ledger's own client order id check keeps the ids unique): an `IdTable`
        each, which the paths in C read and change by the id as a C integer."""
        self.answered: list[int] = []
        """When the frames were read of the orders answered this turn (their latency ends at `_flush`)."""
        self.stages = Stages(STAGES)
        self.replies_first = config.journal.fsync == "batch" and len(config.shards) == 1
        """Send the reports of a book server's replies before the turn's fsync (`_send_replies_first`),
        and leave the fsync to a later turn if that is all a turn sends (`_sync_unless_deferred`):
        with the "batch" policy (the others never wait for an fsync) and one book server."""
        self.unsynced_since: float | None = None
        """When the journal was first written and not fsynced, since the last fsync (`replies_first`)."""
        self.syncer = Syncer("tes-journal-fsync") if self.replies_first else None
        """With `replies_first`, the thread that fsyncs the journal while the loop goes on."""
        self.in_flight: Waiting | None = None
        """What waits for the fsync the syncer has in hand (at most one)."""
        self.adopts = self.replies_first and all(shard.stream_endpoint for shard in config.shards)
        """With `replies_first` and a journal stream to read the book server's commands back from:
        commands leave before the fsync of their records (`_send_early`), and after a crash the
        TES adopts those whose records the crash took (`_catch_up`)."""
        self.adopted = 0
        """Records made again from a book server's commands at recovery (`_adopt`)."""
        self.replayed: set[str] = set()
        """The book servers whose journal stream failed a recovering TES: their Hello asks for the
        replies they keep, as without `adopts` (`_catch_up`)."""
        self.clients_paused = False
        """Whether the clients' socket is left out of the poll (`_pace_intake`)."""
        self.slow_sync_logged = 0.0
        """When the last fsync logged as slow was asked (`_housekeeping`): each is logged once."""
        self.answered_after_sync: list[int] = []
        """Like `answered`, the orders whose answer is the TES's own (a refusal), which waits for the fsync."""
        self.recovering = self.journal.unclean
        """The last run did not close the journal: logons wait until every book server has
        answered its Hello, and sent again the replies the journal may have lost (`_greeted`)."""
        self.held_logons: dict[bytes, Verdict] = {}
        """The logons accepted while `recovering`, by connection, answered when it ends; at most
        ``tes.logon_queue`` (then refused BOOK_UNAVAILABLE)."""
        if self.recovering:
            log.warning("the TES journal in %s was not closed: logons wait until every book server has sent again "
                        "what this TES may have lost", settings.journal_dir)
        routing = Routing(self, ANSWERS, p.OrderAccepted, p.OrderRejected,
                          (p.OrderAccepted, p.OrderFilled, p.OrderCanceled))
        self.route = routing.route
        """Queue each report ``(trader, report)`` of a list for its trader's current session (kept in the
        ledger if not logged on), counted by type; an answer to an order routed to a book (``routed``:
        the TES's own refusals never are; accepted, or rejected by the book, its server or for want
        of one) ends its wait, and its latency if it goes to a session; rejects are counted by reason."""
        self.entry: EntryPath | None = EntryPath(self, p.EnterOrder, p.CancelOrder, Request, deque,
                                                 CancelReason.REQUESTED, ID_BITS,
                                                 (Entered, Requested, p.BookSubmit, p.BookCancel))
        """The order entry in C (`native.entry`): each logged-on session's run of orders it takes;
        None sends every message through `_dispatch` (the tests compare the two)."""
        self.replies: ReplyPath | None = ReplyPath(self.ledger.reporter, self.journal, self.ledger.kept, REPORTS_KEPT,
                                                   routing, Received)
        """A book server's frame of replies applied, kept, journaled and routed in one call in C
        (`native.reports.ReplyPath`), where the ledger reads it in C; None sends every frame through
        `_record` (the tests compare the two)."""

        self.context = zmq.Context()
        self.gate = Gate(self.context, "the TES")
        """The client port's connections at most (`servers.gate`)."""
        self.poller = zmq.Poller()
        if self.syncer is not None:
            self.poller.register(self.syncer.fileno(), zmq.POLLIN)
        self.shards: dict[str, Shard] = {}
        self.shard_of: dict[str, Shard] = {}
        keys = security.Keys(config.security.keys_dir) if config.security.keys_dir else None
        own = keys.own(security.TES) if keys is not None else None
        self.keys = (keys, own)
        if keys is None:
            log.warning("CURVE is off (security.keys_dir is empty): the book servers do not authenticate this TES")
        try:
            self.clients = self.context.socket(zmq.ROUTER)
            if config.security.clients == "curve":
                security.serve_curve(self.clients, own)
            self.clients.setsockopt(zmq.LINGER, 0)
            self.clients.setsockopt(zmq.HANDSHAKE_IVL, security.HANDSHAKE_MS)
            self.clients.setsockopt(zmq.MAXMSGSIZE, MAX_INBOUND_BYTES)
            self.clients.setsockopt(zmq.RCVHWM, CLIENT_INBOUND_FRAMES)
            self.clients.setsockopt(zmq.SNDHWM, CLIENT_OUTBOUND_FRAMES)
            # Report a frame ZeroMQ cannot deliver (client gone, or its queue full) instead
            # of dropping it silently, so it is counted.
            self.clients.setsockopt(zmq.ROUTER_MANDATORY, 1)
            self.gate.add(self.clients, "client", settings.max_connections, settings.peer_heartbeat_ms)
            self.gate.start()
            self.clients.bind(settings.client_endpoint)
            self.poller.register(self.clients, zmq.POLLIN)
            self.polled_clients = self.clients
            """The clients' socket as the poller holds it."""
            for shard_config in config.shards:
                socket = self.context.socket(zmq.DEALER)
                socket.setsockopt(zmq.LINGER, 0)
                socket.setsockopt(zmq.IMMEDIATE, 1)
                security.heartbeat(socket, settings.shard_heartbeat_ms)
                # Unbounded on our side: the shard's ROUTER would silently drop execution
                # reports to a TES whose queue is full, and those must never be lost.
                socket.setsockopt(zmq.RCVHWM, 0)
                if keys is not None:
                    security.connect_curve(socket, own, keys.public(security.shard_key_name(shard_config.name)))
                monitor = socket.get_monitor_socket(MONITOR_EVENTS)
                socket.connect(shard_config.command_endpoint)
                shard = Shard(shard_config.name, socket, monitor, shard_config.stream_endpoint)
                self.shards[shard.name] = shard
                for symbol in shard_config.symbols:
                    self.shard_of[symbol] = shard
                self.poller.register(socket, zmq.POLLIN)
                self.poller.register(shard.monitor_fd, zmq.POLLIN)
        except BaseException:
            self.close()
            raise

    # ================================================================ loop

    def ready(self) -> str:
        return (f"READY TES tes_id={self.tes_id} clients={self.config.tes.client_endpoint} "
                f"shards={','.join(self.shards)}")

    def run(self) -> None:
        """Serve until `stop`; then drain the books' answers (refusing new requests with
        EXCHANGE_CLOSING) and log every session out."""
        self.stages.start()
        now = time.monotonic()
        for shard in self.shards.values():  # what is queued read, so that what comes next signals
            self._read_monitor(shard, now)
        while not self.stopping:
            self._step(self._poll_timeout())
        self._drain()
        self._publish_status(time.monotonic(), stopped=True)

    def stop(self, *_signal) -> None:
        self.stopping = True

    def stopped(self) -> str:
        return (f"stopped: {self.entered} orders entered, {self.malformed} malformed frames, {self.undelivered} "
                f"frames undeliverable, {self.refused.count} commands refused")

    def _poll_timeout(self) -> int:
        if self.logons.pending:
            return 5
        wake = self.next_housekeeping
        for shard in self.shards.values():
            if not shard.ready and shard.catch_up is None and shard.next_hello < wake:
                wake = shard.next_hello
        if self.unsynced_since is not None:
            wake = min(wake, self.unsynced_since + SYNC_DEFERRED_S)
        return max(0, int((wake - time.monotonic()) * 1000) + 1)

    def _step(self, timeout_ms: int) -> bool:
        """One iteration: poll, then `_turn`. True if a book answered."""
        lap = self.stages.lap
        lap(OTHER)
        ready = dict(self.poller.poll(timeout_ms))
        lap(IDLE)
        return self._turn(ready, time.monotonic())

    def _turn(self, ready, now: float) -> bool:
        """The work of one iteration on the sockets in ``ready``: read, dispatch, housekeeping,
        send. True if a book answered."""
        lap = self.stages.lap
        answered = False
        if self.in_flight is not None and self.syncer.fileno() in ready:
            self._synced(now)
        for shard in self.shards.values():
            if shard.monitor_fd in ready:
                self._read_monitor(shard, now)
            if shard.socket in ready:
                self._read_shard(shard)
                answered = True
            if shard.catch_up is not None:
                self._catch_up(shard, shard.catch_up.stream.socket in ready, now)
        lap(REPLIES)
        if self.clients in ready and not self.clients_paused:
            self._read_clients(now)
        if self.logons.pending:
            self._finish_logons(now)
        for shard in self.shards.values():
            if not shard.ready and shard.catch_up is None and now >= shard.next_hello:
                self._hello(shard, now)
        if now >= self.next_housekeeping:
            self._housekeeping(now)
        lap(OTHER)
        self._flush(now)
        return answered

    def _drain(self) -> None:
        """Relay the answers to commands already sent, until the books fall quiet; log everyone out."""
        self._flush(time.monotonic())
        deadline = time.monotonic() + DRAIN_S
        quiet_since = time.monotonic()
        while (now := time.monotonic()) < deadline and now - quiet_since < DRAIN_QUIET_S:
            if self._step(int(DRAIN_QUIET_S * 500)):
                quiet_since = time.monotonic()
        for session in list(self.sessions.by_identity.values()):
            self._end(session, p.EndReason.SHUTDOWN)
        self._flush(time.monotonic())
        self._settle()

    def close(self) -> None:
        self.logons.close()
        if self.syncer is not None:
            self.syncer.close()
        for shard in self.shards.values():
            try:
                shard.socket.disable_monitor()
            except zmq.ZMQError:
                pass
            shard.monitor.close(linger=0)
            shard.socket.close(linger=0)
            if shard.catch_up is not None:
                shard.catch_up.stream.close()
        if hasattr(self, "clients"):
            self.clients.close(linger=0)
        self.gate.stop()
        self.context.destroy(linger=0)
        self.journal.close()
        self.database.close()

    # ================================================================ clients

    def _read_clients(self, now: float) -> None:
        """Read and decode the queued client frames (up to CLIENT_MESSAGES_PER_TURN messages),
        then handle them in arrival order: two stages (`STAGES`), timed once each per turn."""
        sessions = self.sessions.by_identity
        budget = CLIENT_MESSAGES_PER_TURN
        # Per frame: identity, when it was read, its messages (None if malformed), why it is malformed (or None).
        read: list[tuple[bytes, int, Sequence | None, tuple[RejectReason, str] | None]] = []
        for frames in _waiting(self.clients):
            frame_read = perf_counter_ns()
            identity = frames[0]
            if len(frames) != 2:
                text = f"expected 1 payload frame, got {len(frames) - 1}"
                read.append((identity, 0, None, (RejectReason.MALFORMED_MESSAGE, text)))
                continue
            try:  # the common frames read in C (a sequence of the messages, made only if asked for)
                messages = None
                if self.entry is not None and len(frames[1]) <= self.requests.max_frame_bytes:
                    messages = self.entry.read(frames[1], p.MAX_BATCH)
                if messages is None:
                    messages = self.requests.decode(frames[1])
            except p.FrameTooLarge as exc:
                read.append((identity, 0, None, (RejectReason.FRAME_TOO_LARGE, str(exc))))
                continue
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                read.append((identity, 0, None, (RejectReason.MALFORMED_MESSAGE, str(exc))))
                continue
            read.append((identity, frame_read, messages, None))
            self.received += len(messages)
            budget -= len(messages)
            if budget <= 0:
                break
        self.stages.lap(RECEIVE)
        for identity, frame_read, messages, malformed in read:
            session = sessions.get(identity)
            if session is not None:
                session.last_in = now
            if malformed is not None:
                self._malformed(identity, *malformed)
                continue
            self.frame_read = frame_read
            position, count = 0, len(messages)
            while position < count:
                session = sessions.get(identity)
                if session is not None and self.entry is not None and not self.stopping:
                    position = self.entry.enter(session, messages, position, now, frame_read)
                    if position == count:
                        break
                self._dispatch(identity, session, messages[position], now)
                position += 1
        self.stages.lap(VALIDATE)

    def _reject(self, identity: bytes, message) -> None:
        """Queue a SessionRejected, LogonRejected or QueryRejected for ``identity``, counted by its reason."""
        self.rejects[message.reason] += 1
        self.outbox[identity].append(message)

    def _malformed(self, identity: bytes, reason: RejectReason, text: str) -> None:
        self.malformed += 1
        self._reject(identity, p.SessionRejected(reason, f"{reason.text}: {text}"[:TEXT_LIMIT]))

    def _dispatch(self, identity: bytes, session: Session | None, message, now: float) -> None:
        if self.stopping:
            if type(message) is not p.Heartbeat:
                reason = RejectReason.EXCHANGE_CLOSING
                self._reject(identity, p.SessionRejected(reason, reason.text))
            return
        if session is None:
            if isinstance(message, p.Logon):
                self._logon(identity, message, now)
            else:
                reason = RejectReason.NOT_LOGGED_ON
                self._reject(identity, p.SessionRejected(reason, reason.text))
            return
        if type(message) is p.EnterOrder:
            self._enter(session, message, now)
            return
        match message:
            case p.CancelOrder():
                self._cancel(session, message, now)
            case p.ReplaceOrder():
                self._replace(session, message, now)
            case p.MassCancel(symbol):
                canceled = self._cancel_all(session.trader_id, symbol, CancelReason.MASS_CANCEL)
                self.outbox[identity].append(p.MassCancelDone(symbol, canceled))
            case p.Heartbeat():
                pass
            case p.QueryOpenOrders() | p.QueryPositions() | p.QueryBook() | p.QueryInstruments():
                self._query(session, message, now)
            case p.Logout():
                self._end(session, p.EndReason.LOGOUT)
            case p.Logon():
                reason = RejectReason.ALREADY_LOGGED_ON
                self._reject(identity, p.LogonRejected(reason, reason.text))

    # ---------------------------------------------------------------- sessions

    def _logon(self, identity: bytes, logon: p.Logon, now: float) -> None:
        self.after_reports[identity] = logon.after_report
        verdict = self.logons.check(identity, logon.trader_id, logon.api_key, logon.cancel_on_disconnect, now)
        if verdict is not None:
            self._logged_on(verdict, now)

    def _use_reference(self, reference: Reference, now: float) -> None:
        """Trade on ``reference`` from now on: instruments (those a book server owns), traders'
        limits (their message-rate buckets kept), keys. A trader no longer there (no active key)
        is logged off (ACCESS_REVOKED); its resting orders stay (cancel them with a mass cancel)."""
        unserved = sorted(i.symbol for i in reference.instruments if i.symbol not in self.served)
        if unserved:
            log.warning("instruments %s are in the reference data but no book server owns them: not tradable",
                        ", ".join(unserved))
        self.instruments = {i.symbol: i for i in reference.instruments if i.symbol in self.served}
        self.instrument_list = [Instrument(**{f: getattr(i, f) for f in Instrument.__struct_fields__})
                                for i in self.instruments.values()]
        risks = {}
        for trader in reference.traders:
            risk = self.risks.get(trader.trader_id)
            risks[trader.trader_id] = TraderRisk(trader, now) if risk is None else risk.limited_by(trader)
        self.risks = risks
        self.owners = {trader.trader_id: (p.owner_of(trader.account), stp_mode(trader.stp_default))
                       for trader in reference.traders}
        self.logons.authenticator.update(reference.keys)
        for session in list(self.sessions.by_identity.values()):
            if session.trader_id not in risks:
                self._end(session, p.EndReason.ACCESS_REVOKED)
        log.info("trading on reference data version %d from %s: %d instruments, %d traders", reference.version,
                 reference.source, len(self.instruments), len(risks))

    def _finish_logons(self, now: float) -> None:
        for verdict in self.logons.finished(now):
            self._logged_on(verdict, now)

    def _logged_on(self, verdict: Verdict, now: float) -> None:
        identity, trader_id = verdict.identity, verdict.trader_id
        if self.recovering and verdict.reason is None:
            if identity in self.held_logons or len(self.held_logons) < self.config.tes.logon_queue:
                self.held_logons[identity] = verdict
                return
            verdict = verdict._replace(reason=RejectReason.BOOK_UNAVAILABLE, text=RECOVERING_TEXT)
        after = self.after_reports.pop(identity, -1)
        if verdict.reason is not None:
            self._reject(identity, p.LogonRejected(verdict.reason, verdict.text))
            self.refused_logons(verdict.trader_id, verdict.text)  # repr: whatever the client sent
            return
        if self.stopping:
            reason = RejectReason.EXCHANGE_CLOSING
            self._reject(identity, p.LogonRejected(reason, reason.text))
            return
        session, previous = self.sessions.open(identity, trader_id, verdict.cancel_on_disconnect, now)
        self.accepted_logons += 1
        session.record = self.database.logged_on(trader_id, time.time_ns())
        if previous is not None:
            self._delivered(previous)
            self.database.logged_off(previous.record, time.time_ns(), p.EndReason.REPLACED)
            self.outbox[previous.identity].append(p.LoggedOut(p.EndReason.REPLACED, p.EndReason.REPLACED.text))
            log.info("session of %s ended: %s", trader_id, p.EndReason.REPLACED.text)
        settings, ledger = self.config.tes, self.ledger
        last = ledger.numbers.get(trader_id, 0)
        self.outbox[identity].append(p.LogonAccepted(trader_id, settings.heartbeat_ms, settings.session_timeout_ms,
                                                     ledger.ids(trader_id).next(), last))
        missed = ledger.reports_after(trader_id, ledger.delivered.get(trader_id, 0) if after < 0 else after)
        self.outbox[identity].extend(missed)
        session.last_report = last
        log.info("%s logged on%s; %d reports it missed sent", trader_id,
                 " (cancel on disconnect)" if verdict.cancel_on_disconnect else "", len(missed))

    def _delivered(self, session: Session) -> None:
        """The session is over: remember (in the ledger) which of its trader's reports it was sent."""
        if session.last_report > self.ledger.delivered.get(session.trader_id, 0):
            self._record(Delivered(session.trader_id, session.last_report))

    def _end(self, session: Session, why: p.EndReason) -> None:
        log.info("session of %s ended: %s", session.trader_id, why.text)
        self.sessions.end(session)
        self._delivered(session)
        self.database.logged_off(session.record, time.time_ns(), why)
        self.outbox[session.identity].append(p.LoggedOut(why, why.text))
        if cancels_orders(session, why):
            self._cancel_all(session.trader_id, "", CancelReason.DISCONNECTED)

    def _housekeeping(self, now: float) -> None:
        self.next_housekeeping = now + self.housekeeping_s
        reference = self.database.latest()
        if reference is not None:
            self._use_reference(reference, now)
        for session in self.sessions.expired(now):
            self._end(session, p.EndReason.TIMEOUT)
        for shard in self.shards.values():
            if not shard.ready and now - shard.unready_since >= WAITING_WARN_S * shard.warnings:
                shard.warnings += 1
                if shard.warnings > 1:
                    log.warning("waiting for shard %s for %.0f s (%s): its symbols cannot trade", shard.name,
                                now - shard.unready_since, "catching up from its journal" if shard.catch_up else
                                "connected, no answer to Hello yet" if shard.connected else "not connected")
        waiting = self.in_flight
        if waiting is not None and now - waiting.asked >= SYNC_WARN_S and waiting.asked != self.slow_sync_logged:
            self.slow_sync_logged = waiting.asked
            log.warning("the ledger's journal fsync in %s has taken %.1f s so far: what waits for it waits (%s)",
                        self.journal.directory, now - waiting.asked,
                        "the clients are not read" if self.clients_paused else "the clients are still read")
        for session in self.sessions.idle(now):
            self.outbox[session.identity].append(p.Heartbeat())
        if self.status.due(now):
            self._publish_status(now)

    def _publish_status(self, now: float, stopped: bool = False) -> None:
        """Write the status file (`servers.status`): counts since the start, rejects by reason,
        the ack latency; the sessions, the orders awaiting their book's answer, whether logons wait
        for the book servers' replay (`recovering`) and how many are held, how long the syncer has
        had its fsync in hand and whether the clients wait for it (`_pace_intake`), the client port's
        connections and those refused (`servers.gate`), each shard's link."""
        reported = self.reported
        accepted, rejected = reported[p.OrderAccepted], reported[p.OrderRejected]
        counters = {
            "messages": self.received, "orders": self.submitted, "entered": self.entered, "cancels": self.cancels,
            "replaces": self.replaces, "acks": accepted + rejected, "accepted": accepted, "rejected": rejected,
            "fills": reported[p.OrderFilled], "logons": self.accepted_logons,
            "logons_refused": self.refused_logons.count, "malformed": self.malformed,
            "undelivered": self.undelivered, "unsent": self.refused.count, "fsyncs": self.journal.journal.fsyncs,
            "adopted": self.adopted,
        }
        figures = {
            "sessions": len(self.sessions.by_identity),
            "awaiting": sum(len(orders) for orders in self.awaiting.values()),
            "recovering": self.recovering,
            "logons_held": len(self.held_logons),
            "fsync_in_hand_s": round(now - self.in_flight.asked, 3) if self.in_flight is not None else 0.0,
            "clients_paused": self.clients_paused,
            "connections": self.gate.figures(),
            "shards": {name: {"connected": shard.connected, "ready": shard.ready}
                       for name, shard in self.shards.items()},
        }
        self.status.publish(now, counters, figures, self.rejects, {"ack": self.ack_latency}, stopped, self.stages)

    # ---------------------------------------------------------------- orders

    def _enter(self, session: Session, order: p.EnterOrder, now: float) -> None:
        """Check the order (refused: its answer goes out this turn), else route it to its book,
        remembering when its frame was read until the answer comes (`route`)."""
        trader = session.trader_id
        self.submitted += 1
        refusal = self._check_order(session, self.risks[trader], order, now)
        if refusal is not None:
            self._record(Refused(trader, SUBMISSION, order.client_order_id, 0, *refusal, clock()))
            self.answered_after_sync.append(self.frame_read)
            return
        order_id = self.ledger.next_order_id()
        self.entered += 1
        owner, stp = self.owners[trader]
        if order.stp is not None:
            stp = order.stp
        self._record(Entered(trader, order.client_order_id, order_id, order.symbol, order.side, order.order_type,
                             order.time_in_force, order.price, order.quantity, order.stop_price,
                             order.display_quantity, order.flags, stp, order.expire_at))
        awaiting = self.awaiting.get(trader)
        if awaiting is None:
            awaiting = self.awaiting[trader] = IdTable()
        awaiting[order.client_order_id] = self.frame_read
        self.shard_of[order.symbol].outbox.append(p.BookSubmit(
            order.symbol, order_id, order.side, order.order_type, order.time_in_force, order.price, order.quantity,
            session.trader_id, order.client_order_id, order.stop_price, order.display_quantity, order.flags, owner,
            stp, order.expire_at))

    def _check_order(self, session: Session, risk: TraderRisk, order: p.EnterOrder,
                     now: float) -> tuple[RejectReason, str] | None:
        """Steps 2-6 of the pipeline (see the module docstring): the first refusal and its
        text, which names the values that broke the rule (see "reject texts" below), or None."""
        # 2. message rate
        if not risk.allow_message(now):
            return _rate_refusal(risk)
        # 3. client order id (used up even if a later step refuses the order: the ledger's
        #    Entered or Refused record uses it)
        reason = self.ledger.ids(session.trader_id).check(order.client_order_id)
        if reason is not None:
            if reason is RejectReason.DUPLICATE_CLIENT_ORDER_ID:
                return reason, f"client order id {order.client_order_id} is already used"
            return reason, f"{reason.text}: client order id {order.client_order_id}"
        # 4. reference data: the kind of order enabled; quantity and limit price, the band centred
        #    on the last trade or the reference price; an iceberg's slices; a stop's price; a GTD
        #    expiry still to come
        instrument = self.instruments.get(order.symbol)
        if instrument is None:
            return RejectReason.UNKNOWN_SYMBOL, f"unknown symbol {order.symbol!r}"
        order_type = order.order_type
        kind = instrument.disabled_kind(order_type, order.time_in_force, order.display_quantity, order.flags)
        if kind is not None:
            return RejectReason.ORDER_TYPE_DISABLED, f"{kind} orders are not enabled for {order.symbol}"
        last = self.ledger.last_prices.get(order.symbol)
        centre = instrument.reference_price if last is None else last
        reason = instrument.check_order(order_type, order.price, order.quantity, centre)
        if reason is not None:
            return reason, _rule_text(reason, instrument, order.price, order.quantity, centre)
        if order.display_quantity:
            reason = instrument.check_iceberg(order.quantity, order.display_quantity)
            if reason is not None:
                return reason, _iceberg_text(reason, instrument, order.quantity, order.display_quantity)
        stop_price = 0
        if order_type == STOP or order_type == STOP_LIMIT:
            stop_price = order.stop_price
            reason = instrument.check_stop(order.side, stop_price, centre, last)
            if reason is not None:
                return reason, _stop_text(reason, instrument, order.side, stop_price, centre, last)
        if order.time_in_force == GTD and order_type != STOP and order_type != MARKET:
            stamp = clock()
            if order.expire_at <= stamp:
                return RejectReason.EXPIRE_TIME_PASSED, (f"good-till-date expiry {_utc(order.expire_at)} is not after "
                                                         f"the exchange time {_utc(stamp)}")
        # 5. pre-trade risk
        price = valuation_price(order.price, order_type == MARKET or order_type == STOP, last,
                                instrument.reference_price, stop_price)
        reason = risk.check_order(price, order.quantity, self.orders.open_count(session.trader_id))
        if reason is not None:
            return reason, _limit_text(reason, risk, price, order.quantity)
        # 6. routing
        if not self.shard_of[order.symbol].ready:
            return RejectReason.BOOK_UNAVAILABLE, RejectReason.BOOK_UNAVAILABLE.text
        return None

    def _cancel(self, session: Session, cancel: p.CancelOrder, now: float) -> None:
        self.cancels += 1
        risk = self.risks[session.trader_id]
        order = self.orders.owned(session.trader_id, cancel.order_id)
        if not risk.allow_message(now):
            reason, text = _rate_refusal(risk)
        elif order is None:
            reason, text = RejectReason.UNKNOWN_ORDER, _unknown_order_text(cancel.order_id)
        elif not self.shard_of[order.symbol].ready:
            reason, text = RejectReason.BOOK_UNAVAILABLE, RejectReason.BOOK_UNAVAILABLE.text
        else:
            self._record(Requested(session.trader_id, order.order_id, True, cancel.client_order_id,
                                   CancelReason.REQUESTED))
            self.shard_of[order.symbol].outbox.append(p.BookCancel(order.symbol, order.order_id,
                                                                   cancel.client_order_id))
            return
        self._record(Refused(session.trader_id, CANCEL, cancel.client_order_id, cancel.order_id, reason, text,
                             clock()))

    def _replace(self, session: Session, replace: p.ReplaceOrder, now: float) -> None:
        self.replaces += 1
        risk = self.risks[session.trader_id]
        order = self.orders.owned(session.trader_id, replace.order_id)
        if not risk.allow_message(now):
            reason, text = _rate_refusal(risk)
        elif order is None:
            reason, text = RejectReason.UNKNOWN_ORDER, _unknown_order_text(replace.order_id)
        else:
            instrument = self.instruments[order.symbol]
            last = self.ledger.last_prices.get(order.symbol)
            centre = instrument.reference_price if last is None else last
            reason = instrument.check_order(OrderType.LIMIT, replace.price, replace.quantity, centre)
            if reason is not None:
                text = _rule_text(reason, instrument, replace.price, replace.quantity, centre)
            elif (reason := instrument.check_iceberg(replace.quantity, order.display_quantity)) is not None:
                text = _iceberg_text(reason, instrument, replace.quantity, order.display_quantity)
            else:
                reason = risk.check_replace(replace.price, replace.quantity)
                text = None if reason is None else _limit_text(reason, risk, replace.price, replace.quantity)
            if reason is None and not self.shard_of[order.symbol].ready:
                reason, text = RejectReason.BOOK_UNAVAILABLE, RejectReason.BOOK_UNAVAILABLE.text
            if reason is None:
                self._record(Requested(session.trader_id, order.order_id, False, replace.client_order_id,
                                       CancelReason.REQUESTED))
                self.shard_of[order.symbol].outbox.append(
                    p.BookReplace(order.symbol, order.order_id, replace.price, replace.quantity,
                                  replace.client_order_id))
                return
        self._record(Refused(session.trader_id, REPLACE, replace.client_order_id, replace.order_id, reason,
                             text, clock()))

    def _cancel_all(self, trader_id: str, symbol: str, reason: CancelReason) -> int:
        """Send a cancel for each of the trader's open orders (in ``symbol``, or all) not
        already being cancelled, on a connected shard; return how many."""
        count = 0
        for order in self.orders.open_orders(trader_id, symbol):
            shard = self.shard_of[order.symbol]
            if shard.ready and not order.canceling():
                self._record(Requested(trader_id, order.order_id, True, order.client_order_id, reason))
                shard.outbox.append(p.BookCancel(order.symbol, order.order_id, 0, reason))
                count += 1
        return count

    # ---------------------------------------------------------------- queries

    def _query(self, session: Session, query, now: float) -> None:
        out = self.outbox[session.identity]
        risk = self.risks[session.trader_id]
        if not risk.allow_message(now):
            reason = RejectReason.MESSAGE_RATE_LIMIT
            self._reject(session.identity, p.QueryRejected(query.request_id, reason, reason.text))
            return
        pages = 1
        if type(query) is p.QueryOpenOrders:
            pages = max(1, -(-self.orders.open_count(session.trader_id) // OPEN_ORDERS_PAGE))
        if not risk.allow_query(now, pages):
            reason = RejectReason.QUERY_RATE_LIMIT
            self._reject(session.identity, p.QueryRejected(query.request_id, reason, reason.text))
            return
        match query:
            case p.QueryOpenOrders(request_id):
                open_orders = self.orders.open_orders(session.trader_id)
                starts = range(0, max(len(open_orders), 1), OPEN_ORDERS_PAGE)
                for start in starts:
                    page = [order.open_order() for order in open_orders[start:start + OPEN_ORDERS_PAGE]]
                    out.append(p.OpenOrders(request_id, page, start == starts[-1]))
            case p.QueryPositions(request_id):
                portfolio = self.ledger.portfolio(session.trader_id)
                out.append(p.Positions(request_id, portfolio.cash, portfolio.positions(self.ledger.last_prices)))
            case p.QueryInstruments(request_id):
                out.append(p.Instruments(request_id, self.instrument_list))
            case p.QueryBook(request_id, symbol, levels):
                shard = self.shard_of.get(symbol)
                reason = RejectReason.UNKNOWN_SYMBOL if shard is None else (
                    None if shard.ready else RejectReason.BOOK_UNAVAILABLE)
                if reason is not None:
                    self._reject(session.identity, p.QueryRejected(request_id, reason, reason.text))
                    return
                internal = self.next_query
                self.next_query += 1
                self.queries[internal] = (session.identity, request_id, shard)
                shard.outbox.append(p.BookQuery(internal, symbol, levels))

    # ================================================================ shards

    def _hello(self, shard: Shard, now: float) -> None:
        try:
            replay = not (self.recovering and self.adopts) or shard.name in self.replayed
            hello = p.Hello(self.tes_id, self.ledger.seen[shard.name], replay)
            shard.socket.send(self.book_requests.encode([hello]), zmq.NOBLOCK)
            shard.next_hello = now + HELLO_WAIT_S
        except zmq.Again:
            shard.next_hello = now + (HELLO_RETRY_S if shard.connected else HELLO_WAIT_S)

    def _read_monitor(self, shard: Shard, now: float) -> None:
        """The command socket's connection events, every one queued (`native.sockets.signals`)."""
        while True:
            try:
                event = recv_monitor_message(shard.monitor, zmq.NOBLOCK)
            except zmq.Again:
                return
            if event["event"] == zmq.EVENT_CONNECTED:
                log.info("shard %s connected; saying hello", shard.name)
                shard.connected, shard.ready = True, False
                self._hello(shard, now)
            elif event["event"] == zmq.EVENT_DISCONNECTED:
                if shard.ready:
                    log.warning("shard %s disconnected; its symbols are unavailable", shard.name)
                    shard.unready_since, shard.warnings = now, 0
                shard.connected = shard.ready = False
                shard.next_hello = now + HELLO_WAIT_S

    def _read_shard(self, shard: Shard) -> None:
        """Each frame of replies from a book server is a ledger record; then its query answers and
        Hello reply are the server's own business. The common frames are taken in C
        (`native.reports.ReplyPath.take_all`), each call up to the first that needs this loop (a
        marks frame among them), until ``READ_BUDGET`` frames are read."""
        budget = READ_BUDGET
        while budget > 0 and self.replies is not None and shard.catch_up is None:
            frames, rest = self.replies.take_all(shard.socket, shard.name, budget, p.MAX_SERVER_FRAME_BYTES, clock)
            if rest is None:
                return
            budget -= frames
            self._frame(shard, *rest)
        for parts in _waiting(shard.socket, budget):
            self._frame(shard, parts)

    def _frame(self, shard: Shard, parts: list[bytes], now: int | None = None, taken: list | None = None) -> None:
        """One frame read from a book server: its marks (`_marks`, even while it catches up), or
        replies: dropped if malformed (not one part within `p.MAX_SERVER_FRAME_BYTES`), held while
        the shard catches up, else `_received`."""
        if len(parts) == 2 and parts[0] == p.MARKS_TOPIC:
            self._marks(shard, parts[1])
        elif len(parts) != 1 or len(parts[0]) > p.MAX_SERVER_FRAME_BYTES:
            log.error("shard %s sent a malformed frame (%d parts); dropped", shard.name, len(parts))
        elif shard.catch_up is not None:
            shard.catch_up.held.append(parts[0])
        else:
            self._received(shard, parts[0], now, taken)

    def _received(self, shard: Shard, frame: bytes, now: int | None = None, taken: list | None = None) -> None:
        """A frame of the book server's replies: its `Received` recorded (`_record`, or `replies` in
        C for the common frames), then its replies other than `Executed` handled (answers to
        queries, a Hello reply). ``now`` given, `replies` already read the frame at that time, and
        ``taken`` is what it made of it: None (left to `_record`) or its replies."""
        try:
            replies = taken
            if now is None:
                now = clock()
                if self.replies is not None:
                    replies = self.replies.take(shard.name, frame, now)
            if replies is None:
                replies = self._record(Received(shard.name, frame, now))
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            log.error("shard %s sent an undecodable frame (%s); dropped", shard.name, exc)
            return
        for reply in replies:
            kind = type(reply)
            if kind is p.CommandRefused:
                asker = self.queries.pop(reply.order_id, None)
                if asker is not None:
                    self._reject(asker[0], p.QueryRejected(asker[1], reply.reason, reply.text))
            elif kind is p.BookView:
                asker = self.queries.pop(reply.request_id, None)
                if asker is not None:
                    self.outbox[asker[0]].append(p.Book(asker[1], reply.symbol, reply.bids, reply.asks,
                                                        reply.last_price, reply.sequence, reply.phase,
                                                        reply.indicative_price, reply.indicative_volume,
                                                        reply.phase_reason, reply.phase_until))
            elif kind is p.HelloReply:
                self._hello_reply(shard, reply)

    def _marks(self, shard: Shard, frame: bytes) -> None:
        """The book server's latest trade prices, whoever traded (a frame of `p.Mark`s): each newer
        one is a ledger record. They are not the ledger's replies: they are taken at once, also
        while the shard catches up (a mark older than the ledger's is ignored, whenever it comes)."""
        try:
            marks = self.marks.decode(frame) if len(frame) <= p.MAX_SERVER_FRAME_BYTES else None
        except (msgspec.DecodeError, msgspec.ValidationError):
            marks = None
        if marks is None:
            log.error("shard %s sent a malformed marks frame; dropped", shard.name)
            return
        marked = self.ledger.marked
        for mark in marks:
            if mark.sequence > marked.get(mark.symbol, -1) and self.shard_of.get(mark.symbol) is shard:
                self._record(Marked(mark.symbol, mark.sequence, mark.price))

    def _hello_reply(self, shard: Shard, reply: p.HelloReply) -> None:
        """The shard is ready. The replies it sent again came before this, so a command sent
        on an earlier connection and still unanswered never reached its journal: the ledger
        refuses it (BOOK_UNAVAILABLE), unless the replay was incomplete; so are queries.

        If the shard could not send again every reply after the sequence the ledger holds, and
        has a journal stream, the TES first catches up from the journal (`_catch_up`)."""
        if shard.ready or shard.catch_up is not None:
            return
        seen = self.ledger.seen[shard.name]
        if (not reply.replay_complete and shard.stream_endpoint and seen is not None
                and shard.name not in self.replayed):
            keys, own = self.keys
            curve = None if keys is None else (own, keys.public(security.shard_key_name(shard.name)))
            stream = JournalStream(shard.stream_endpoint, f"tes-{self.tes_id}", curve, CATCH_UP_WINDOW,
                                   self.context)
            stream.request(seen)
            self.poller.register(stream.socket, zmq.POLLIN)
            shard.catch_up = CatchUp(stream, reply, time.monotonic())
            if self.recovering:
                self.ledger.keep_closed(True)
            log.info("shard %s no longer holds the replies after sequence %d: catching up from its journal to "
                     "sequence %d", shard.name, seen, reply.last_sequence)
            return
        self._greeted(shard, reply)

    def _catch_up(self, shard: Shard, readable: bool, now: float) -> None:
        """Apply the journal entries that concern this TES, as the replies it missed; when the
        stream reaches the Hello reply's sequence, the held frames, then the greeting. A stream
        that refuses (the journal was discarded that far back) or stalls ends the catch-up: the
        outcome of the orders in flight is then unknown (logged by the ledger); unless it was a
        recovering TES's catch-up instead of a replay (`adopts`): that TES then asks the book
        server for the replies it keeps (`replayed`), which adopts nothing but may still answer
        the orders in flight, and drops the held frames (the replay sends them again, in order)."""
        catch_up = shard.catch_up
        target, stream = catch_up.reply.last_sequence, catch_up.stream
        complete = False
        try:
            if readable:
                entries = stream.receive(0)
                if entries:
                    catch_up.progress_at = now
                    self._missed(shard, catch_up, [entry for entry in entries if entry.sequence <= target])
            complete = stream.last >= target
            if not complete and now - catch_up.progress_at > CATCH_UP_STALL_S:
                raise StreamError(f"nothing arrived for {CATCH_UP_STALL_S:g} s")
        except StreamError as exc:
            log.error("shard %s: catching up from its journal failed: %s", shard.name, exc)
            if self.recovering and self.adopts and shard.name not in self.replayed:
                log.warning("shard %s: asking it for the replies it keeps instead: a command whose record a crash "
                            "took cannot be adopted", shard.name)
                self.replayed.add(shard.name)
                self._end_catch_up(shard, False)
                shard.next_hello = now
                return
        else:
            if not complete:
                return
            log.info("shard %s: caught up from its journal to sequence %d", shard.name, target)
        self._end_catch_up(shard, complete)
        if catch_up.adopted:
            log.warning("shard %s: adopted %d commands this TES had sent whose records a crash took from its journal",
                        shard.name, catch_up.adopted)
        for frame in catch_up.held:
            self._received(shard, frame)
        self._greeted(shard, msgspec.structs.replace(catch_up.reply, replay_complete=complete))

    def _end_catch_up(self, shard: Shard, complete: bool) -> None:
        stream = shard.catch_up.stream
        if complete:
            stream.release()
        self.poller.unregister(stream.socket)
        stream.close()
        shard.catch_up = None
        self.ledger.keep_closed(False)

    def _missed(self, shard: Shard, catch_up: CatchUp, entries: list[p.JournalEntry]) -> None:
        """Apply the journal ``entries`` that concern this TES as the replies it missed, in frames;
        before the reply to a command this TES sent and lost the record of (`_lost`), that record
        made again from the command (`_adopt`).

        Adopting each at its command's sequence gives the ledger the state it had: a record the
        crash took was written after every record it kept, so its command is sequenced after the
        last reply the ledger holds; the TES sent it while the order it names was open, so before
        any reply that closed it (kept in the registry for this: `Ledger.keep_closed`); and an
        order's requests are answered in the order they were sent."""
        missed, tes_id = [], self.tes_id
        for entry in entries:
            if not _concerns(entry, tes_id):
                continue
            command = entry.command
            if (type(command) in ADOPTABLE and command.order_id >> ID_BITS == tes_id
                    and self._lost(catch_up, command)):
                self._apply_missed(shard, missed)
                missed = []
                self._adopt(command)
                catch_up.adopted += 1
            missed.append(p.Executed(entry.sequence, command.symbol, entry.events, entry.time))
        self._apply_missed(shard, missed)

    def _apply_missed(self, shard: Shard, missed: list[p.Executed]) -> None:
        for start in range(0, len(missed), FRAME_MESSAGES):
            self._record(Received(shard.name, self.book_requests.encode(missed[start:start + FRAME_MESSAGES]),
                                  clock()))

    def _lost(self, catch_up: CatchUp, command) -> bool:
        """Whether the ledger lacks the record of ``command``, which this TES sent: a submission of an
        order it does not hold, or a cancel or replace of an order no request of which awaits its
        answer (they are answered in the order sent); then every later command is lost too, the
        records a crash took being the journal's last."""
        order = self.orders.orders.get(command.order_id)
        if type(command) is p.BookSubmit:
            lost = order is None
        elif order is None:
            log.error("the journal holds a request this TES sent for order %d of %s, which it does not hold: "
                      "not adopted", command.order_id, command.symbol)
            return False
        else:
            lost = catch_up.adopting or not order.requests
        catch_up.adopting = lost
        return lost

    def _adopt(self, command) -> None:
        """Make again the record of ``command`` that a crash took from the journal: an order's
        `Entered` from its `BookSubmit` (whose account is the trader), or a request's `Requested`."""
        if type(command) is p.BookSubmit:
            record = Entered(command.account, command.client_order_id, command.order_id, command.symbol,
                             Side(command.side), OrderType(command.order_type), TimeInForce(command.time_in_force),
                             command.price, command.quantity, command.stop_price, command.display_quantity,
                             command.flags, SelfTradePrevention(command.stp), command.expire_at)
        else:
            order = self.orders.orders[command.order_id]
            reason = command.reason if type(command) is p.BookCancel else CancelReason.REQUESTED
            client_order_id = command.client_order_id if reason == CancelReason.REQUESTED else order.client_order_id
            record = Requested(order.trader_id, order.order_id, type(command) is p.BookCancel, client_order_id,
                               reason)
        self._record(record)
        self.adopted += 1

    def _greeted(self, shard: Shard, reply: p.HelloReply) -> None:
        shard.greeted_at = -1
        self._record(Greeted(shard.name, reply.symbols, reply.max_order_id, reply.last_sequence,
                             reply.replay_complete, clock(), reply.last_prices))
        if reply.replay_complete:
            reason = RejectReason.BOOK_UNAVAILABLE
            for internal, (identity, request_id, asked) in list(self.queries.items()):
                if asked is shard:
                    del self.queries[internal]
                    self._reject(identity, p.QueryRejected(request_id, reason, reason.text))
        expected = {s for s, owner in self.shard_of.items() if owner is shard}
        if set(reply.symbols) != expected:
            log.warning("shard %s serves %s, configured for %s", shard.name, sorted(reply.symbols), sorted(expected))
        log.info("shard %s ready (last sequence %d, order ids continue at %d)", shard.name, reply.last_sequence,
                 self.ledger.counter)
        shard.ready = True
        if self.recovering and all(other.ready for other in self.shards.values()):
            self.recovering = False
            log.info("every book server has sent again what this TES missed: logons are taken")
            held, self.held_logons = self.held_logons, {}
            for verdict in held.values():
                self._logged_on(verdict, time.monotonic())

    def _record(self, record) -> list:
        """Apply ``record`` to the ledger, queue it for the journal and the reports it made for
        their traders' sessions; the replies of a `Received` frame."""
        reports, replies = self.ledger.apply(record)
        self.journal.add(record)
        if reports:
            self.route(reports, type(record) is not Refused)
        return replies

    # ================================================================ sending

    def _flush(self, now: float) -> None:
        """Write the ledger's journal, then send one frame (or a few, if large) per shard and
        per client for everything queued: nothing leaves before the records it follows from are
        durable, except, with `replies_first`, the reports of a book server's replies (see
        `_send_replies_first`); the rest then waits for the syncer's fsync (`_sync_unless_deferred`)."""
        lap = self.stages.lap
        if self.replies_first:
            self._write_journal(sync=False)
            lap(JOURNAL)
            if self.adopts:
                self._send_early()
                lap(SEND)
            if self.outbox:
                self._send_replies_first(now)
                lap(REPORTS)
            if self.in_flight is None:
                self._sync_unless_deferred(now)
            self._pace_intake()
            return
        self._write_journal()
        lap(JOURNAL)
        self._release(now, None, self.outbox, self.answered_after_sync)

    def _queued(self, offset: int, now: float) -> Waiting:
        """Take what is queued to the book servers and the clients, to wait for the fsync asked
        at ``now`` that makes the journal durable up to ``offset``."""
        commands = {}
        for shard in self.shards.values():
            if shard.outbox:
                commands[shard], shard.outbox = shard.outbox, []
        outbox, answered = dict(self.outbox), self.answered_after_sync[:]
        self.outbox.clear()
        self.answered_after_sync.clear()
        return Waiting(offset, now, commands, outbox, answered)

    def _release(self, now: float, commands: dict[Shard, list] | None, outbox: dict[bytes, list],
                 answered: list[int]) -> None:
        """Send ``commands`` by shard (None: every shard's outbox, and the journal written and
        fsynced after it: the records of commands a full queue refused), then ``outbox`` by
        client; the orders ``answered`` in it are answered now."""
        lap = self.stages.lap
        for shard in self.shards.values():
            if commands is None:
                queued, shard.outbox = shard.outbox, []
            else:
                queued = commands.get(shard)
            if queued:
                self._send_commands(shard, queued)
        lap(SEND)
        if commands is None:
            self._write_journal()
        self.answered += answered
        answered.clear()
        if not outbox:
            self._answered()
            lap(REPORTS)
            return
        sessions = self.sessions.by_identity
        slow = []
        for identity, messages in outbox.items():
            session = sessions.get(identity)
            _, full = self._send_client(identity, messages)
            if full and session is not None:
                slow.append(session)
            if session is not None:
                session.last_out = now
        outbox.clear()
        self._answered()
        for session in slow:
            log.warning("session of %s ended: %d frames queued to it are unread (slow consumer)",
                        session.trader_id, CLIENT_OUTBOUND_FRAMES)
            self._end(session, p.EndReason.SLOW_CONSUMER)
        lap(REPORTS)

    def _send_commands(self, shard: Shard, commands: list) -> bool:
        """Send ``commands`` to ``shard`` in frames; those its socket would not take are refused
        (`_unsent`, which records them): False then."""
        frames = join_frames(commands, self.encode_one, FRAME_MESSAGES, p.MAX_FRAME_BYTES)
        for index, frame in enumerate(frames):
            try:
                send(shard.socket, (frame,), zmq.NOBLOCK)
            except zmq.Again:
                self._unsent(shard, frames[index:])
                return False
        return True

    def _send_early(self) -> None:
        """With `adopts`, send the commands queued for each book server whose greeting is durable
        (`Shard.greeted_at`), their records written but not yet fsynced; the records of those its
        socket would not take are written too. A crash of the machine may then take records of
        commands the book server journaled and answered, and the client was sent the reports of;
        the restarted TES reads them back from the server's journal and adopts them
        (`_catch_up`), so the reports come back the same. The rest waits for the fsync."""
        journal = self.journal.journal
        refused = False
        for shard in self.shards.values():
            if shard.greeted_at == -1:
                shard.greeted_at = journal.offset
            if shard.outbox and shard.greeted_at is not None and shard.greeted_at <= journal.synced_offset:
                queued, shard.outbox = shard.outbox, []
                refused |= not self._send_commands(shard, queued)
        if refused:
            self._write_journal(sync=False)

    def _send_replies_first(self, now: float) -> None:
        """Send each session the reports at the head of its queue that were written in C from a
        book server's replies (bytes), before the turn's records are fsynced; the rest of its
        queue stays for after the fsync, in order.

        What a crash of the machine may lose of the TES journal is then the records written since the
        last fsync done (this turn's, those of turns that ran while the syncer's fsync was in hand, and
        those of turns that sent nothing else and left their fsync to a later turn:
        `_sync_unless_deferred`), and the client may have been sent reports of them, so those must come
        back the same. With one book server they do: such a report follows only from that server's
        replies, applied in its sequence order, and from records durable before it or made again after a
        crash (a command is sent only after the fsync, or with `adopts` before it, its record then read
        back from the book server's journal: `_missed`; any refusal or other message is reported only
        after the fsync, and a report behind one in a queue waits with it); after a crash
        (`LedgerJournal.unclean`) the TES opens no session, so makes no report, until each book server
        has sent its replies again (`_greeted`), which makes those reports again, with the same numbers
        and bytes. A session with messages waiting for the fsync in flight gets nothing before them."""
        sessions = self.sessions.by_identity
        waiting = self.in_flight.outbox if self.in_flight is not None else ()
        for identity, messages in list(self.outbox.items()):
            if identity in waiting:
                continue
            first = encoded_prefix(messages)
            if not first:
                continue
            sent, _ = self._send_client(identity, messages if first == len(messages) else messages[:first])
            if sent == len(messages):
                del self.outbox[identity]
            else:
                self.outbox[identity] = messages[sent:]
            session = sessions.get(identity)
            if session is not None:
                session.last_out = now
        self._answered()

    def _answered(self) -> None:
        """The orders answered so far this turn have been: their latency ends now."""
        if self.answered:
            self.ack_latency.add_since(self.answered, perf_counter_ns())
            self.answered.clear()

    def _send_client(self, identity: bytes, messages: list) -> tuple[int, bool]:
        """Send ``messages`` to the client ``identity``, joined into frames: how many were sent,
        and whether ZeroMQ refused a frame because the client's queue is full. After a refused
        frame the rest would be refused too (the peer is gone, or its queue is full) and are
        not tried."""
        sent = 0
        for frame in join_frames(messages, self.encode_one, FRAME_MESSAGES, CLIENT_FRAME_BYTES):
            try:
                send(self.clients, (identity, frame), zmq.NOBLOCK)
            except zmq.ZMQError as exc:
                self.undelivered += 1
                return sent, exc.errno == zmq.EAGAIN
            sent += p.frame_length(frame)
        return sent, False

    def _unsent(self, shard: Shard, frames: list[bytes]) -> None:
        """The frames of commands the shard socket would not take (disconnected, or its queue is
        full because the book server is not keeping up): refuse each command to its client, as
        decoded from them."""
        decode = self.book_requests.decoder.decode
        commands = [command for frame in frames for command in decode(frame)]
        self.refused(shard.name, count=len(commands))
        book_commands = [command for command in commands if not isinstance(command, p.BookQuery)]
        if book_commands:
            self._record(Unsent(book_commands, clock()))
        reason = RejectReason.BOOK_UNAVAILABLE
        for command in commands:
            if isinstance(command, p.BookQuery):
                asker = self.queries.pop(command.request_id, None)
                if asker is not None:
                    self._reject(asker[0], p.QueryRejected(asker[1], reason, reason.text))

    def _write_journal(self, sync: bool = True) -> None:
        """Write the records queued since the last write (``sync`` False: they are fsynced by
        `_sync_unless_deferred`); a journal that cannot take them stops the server (`JournalUnavailable`):
        nothing they led to was sent (but the reports `_send_replies_first` sends), a restart
        replays what reached the file, and the book servers' Hello answers the rest."""
        try:
            written = self.journal.write(sync)
        except JournalFailed as exc:
            raise JournalUnavailable(str(exc)) from None
        if not written:
            error = self.journal.journal.unwritable
            raise JournalUnavailable(f"cannot write the ledger's journal in {self.journal.directory} "
                                     f"({error.strerror if error is not None else 'unknown error'})")

    def _sync_unless_deferred(self, now: float) -> None:
        """With nothing written since the last fsync, send what is queued; else hand the fsync to the
        syncer, and with it everything queued (`in_flight`), which leaves when it is done (`_synced`);
        unless all the turn sends is already sent (the reports of the book's replies and, with `adopts`,
        the commands: no other message), which leaves the fsync to the next turn that sends more, or to
        `SYNC_DEFERRED_S` and `SYNC_DEFERRED_BYTES`. A failure stops the server
        (`JournalUnavailable`)."""
        journal = self.journal.journal
        unsynced = journal.unsynced_bytes
        if not unsynced:
            self.unsynced_since = None
            self._release(now, None, self.outbox, self.answered_after_sync)
            return
        if self.unsynced_since is None:
            self.unsynced_since = now
        if (not self.outbox and not any(shard.outbox for shard in self.shards.values())
                and now - self.unsynced_since < SYNC_DEFERRED_S and unsynced < SYNC_DEFERRED_BYTES):
            return
        try:
            offset = journal.request_sync(self.syncer)
        except JournalFailed as exc:
            raise JournalUnavailable(str(exc)) from None
        self.in_flight = self._queued(offset, now)
        self.unsynced_since = None

    def _synced(self, now: float) -> None:
        """The syncer's fsync is done: send what waited for it (`in_flight`); a failed one stops
        the server (`JournalUnavailable`: nothing that waited leaves)."""
        error = self.syncer.result()
        if error is None:
            return
        waiting, self.in_flight = self.in_flight, None
        try:
            self.journal.journal.synced(waiting.offset, error)
        except JournalFailed as exc:
            raise JournalUnavailable(str(exc)) from None
        self._release(now, waiting.commands, waiting.outbox, waiting.answered)

    def _pace_intake(self) -> None:
        """Leave the clients' socket out of the poll while `SYNC_BACKLOG_BYTES` of journal or more
        are written behind the fsync in hand, and poll it again once that fsync is done."""
        paused = (self.in_flight is not None
                  and self.journal.journal.offset - self.in_flight.offset >= SYNC_BACKLOG_BYTES)
        if paused is not self.clients_paused:
            self.clients_paused = paused
            self.poller.modify(self.polled_clients, 0 if paused else zmq.POLLIN)

    def _settle(self) -> None:
        """Wait for the syncer's fsyncs until nothing waits for one (at shutdown)."""
        while self.in_flight is not None:
            self.syncer.wait()
            self._synced(time.monotonic())
            self._flush(time.monotonic())


# ---------------------------------------------------------------- reject texts
#
# The text of a refused order, cancel or replace names the rule and its values, in the wire's
# units (prices in ticks, quantities in lots), so that a client or a gateway shows the trader
# what to change. The texts of the price rules (PRICE_OFF_TICK, PRICE_OUTSIDE_BAND,
# NOTIONAL_LIMIT) hold prices in ticks and notionals in ticks x lots and no other number: a
# client holding the instrument shows them in currency units by scaling every number by its
# price_scale (`clients.terminal.reject_text`).


def _rule_text(reason: RejectReason, instrument: Instrument, price: int, quantity: int, centre: int) -> str:
    """The text of an `Instrument.check_order` refusal (band centred on ``centre``)."""
    match reason:
        case RejectReason.QUANTITY_OFF_LOT:
            return f"quantity {quantity} is not a multiple of the lot {instrument.lot_size}"
        case RejectReason.QUANTITY_BELOW_MINIMUM:
            return f"quantity {quantity} is below the minimum {instrument.min_quantity}"
        case RejectReason.QUANTITY_ABOVE_MAXIMUM:
            return f"quantity {quantity} is above the maximum {instrument.max_quantity}"
        case RejectReason.PRICE_OFF_TICK:
            return f"price {price} is not a multiple of the tick {instrument.tick_size}"
        case RejectReason.PRICE_OUTSIDE_BAND:
            low, high = _band(instrument, centre)
            return f"price {price} is outside the band {low}..{high}"
    return reason.text


def _band(instrument: Instrument, centre: int, bps: int | None = None) -> tuple[int, int]:
    """The lowest and highest prices on the tick that `Instrument.check_order` lets through
    with the band centred on ``centre``: ``|price - centre| * 10_000 <= centre * bps`` (the
    instrument's price band, or ``bps``)."""
    reach = centre * (instrument.price_band_bps if bps is None else bps) // 10_000
    tick = instrument.tick_size
    return -(-(centre - reach) // tick) * tick, (centre + reach) // tick * tick


def _iceberg_text(reason: RejectReason, instrument: Instrument, quantity: int, display: int) -> str:
    """The text of an `Instrument.check_iceberg` refusal."""
    if reason is RejectReason.QUANTITY_OFF_LOT:
        return f"display quantity {display} is not a multiple of the lot {instrument.lot_size}"
    return (f"display quantity {display} cuts quantity {quantity} into {-(-quantity // display)} slices, more than "
            f"the maximum {instrument.max_iceberg_slices}")


def _stop_text(reason: RejectReason, instrument: Instrument, side: int, stop_price: int, centre: int,
               last: int | None) -> str:
    """The text of an `Instrument.check_stop` refusal: prices only, in ticks (as the price rules' texts)."""
    match reason:
        case RejectReason.PRICE_OFF_TICK:
            return f"stop price {stop_price} is not a multiple of the tick {instrument.tick_size}"
        case RejectReason.STOP_PRICE_TOO_FAR:
            low, high = _band(instrument, centre, instrument.max_stop_distance_bps)
            return f"stop price {stop_price} is outside {low}..{high}"
    where = "at or below" if side == Side.BUY else "at or above"
    return (f"{'buy' if side == Side.BUY else 'sell'} stop price {stop_price} is {where} the last trade price {last}: "
            "it would trigger at once")


def _utc(nanoseconds: int) -> str:
    """An exchange time as ISO 8601 UTC to the millisecond (a time outside datetime's years: the integer)."""
    try:
        moment = datetime.fromtimestamp(nanoseconds / 1e9, UTC)
    except (OverflowError, OSError, ValueError):
        return f"{nanoseconds} ns"
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _limit_text(reason: RejectReason, risk: TraderRisk, price: int, quantity: int) -> str:
    """The text of a `TraderRisk.check_order` refusal; ``price`` is the order's valuation price."""
    match reason:
        case RejectReason.ORDER_QUANTITY_LIMIT:
            return f"quantity {quantity} is above the trader's order limit {risk.max_order_quantity}"
        case RejectReason.NOTIONAL_LIMIT:
            return f"notional {price * quantity} at price {price} is above the trader's limit {risk.max_notional}"
        case RejectReason.OPEN_ORDERS_LIMIT:
            return f"the trader has the maximum of {risk.max_open_orders} open orders"
    return reason.text


def _rate_refusal(risk: TraderRisk) -> tuple[RejectReason, str]:
    reason = RejectReason.MESSAGE_RATE_LIMIT
    return reason, f"{reason.text}: at most {risk.bucket.rate} messages a second"


def _unknown_order_text(order_id: int) -> str:
    return f"no open order {order_id}"


def _concerns(entry: p.JournalEntry, tes_id: int) -> bool:
    """Whether the journaled command or one of its events is about an order of ``tes_id`` (the
    owners `servers.shard.Shard.execute` sends an `Executed` to)."""
    if getattr(entry.command, "order_id", 0) >> ID_BITS == tes_id:
        return True
    for event in entry.events:
        if type(event) is OrderFilled:
            if event.maker_id >> ID_BITS == tes_id or event.taker_id >> ID_BITS == tes_id:
                return True
        elif getattr(event, "order_id", 0) >> ID_BITS == tes_id:
            return True
    return False


def _waiting(socket: zmq.Socket, budget: int = READ_BUDGET):
    """The messages queued on a socket that poll found readable, at most ``budget``, each read
    in C (`native.sockets.receive`) until none is left: pyzmq's ``recv_multipart`` reads
    ``RCVMORE`` after every part and its ``get`` makes an enum member of every option it reads,
    2-4 µs each on this project's AMD EPYC host, while at low rates a loop turn reads one
    message per socket.
    """
    for _ in range(budget):
        frames = receive(socket)
        if frames is None:
            return
        yield frames


def serve(config: Config, args=None) -> int:
    """``python main.py -s TES``: run until SIGINT/SIGTERM; the exit status (`servers.service.serve`)."""

    def start() -> TradingEngineServer:
        service.pin(config.tes.cpus)
        return TradingEngineServer(config)

    return service.serve(log, "TES", start,
                         {ConfigError: 2, security.KeyFileError: 2, RecoveryError: 1, ReferenceUnavailable: 1,
                          zmq.ZMQError: 1, OSError: 1},
                         (JournalUnavailable,), log_format=config.logging.format)
