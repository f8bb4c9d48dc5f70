"""The Order Book Server (OBS): sequences, journals and matches the commands of one shard.

Sockets and frames (every payload is a msgpack list of messages of `servers.protocol`)
-------------------------------------------------------------------------------------
command ROUTER   ``shard.command_endpoint``
    in   [identity, list[ObsRequest]]     from TES DEALERs
    out  [identity, list[ObsReply]]       one frame per destination per loop turn
    out  [identity, MARKS_TOPIC, list[Mark]]  to each TES greeted, after a turn that traded
market-data ROUTER  ``shard.market_data_endpoint`` (`servers.subscribers`)
    in   [identity, list[Subscribe | Unsubscribe]]
    out  [identity, b"", list[Subscribed | Unsubscribed | SubscriptionRejected | Heartbeat]]
    out  [identity, topic, list[MarketData]]  a turn's messages of one symbol, in sequence order,
                                              to each connection that subscribed to it
snapshot ROUTER  ``shard.snapshot_endpoint``
    in   [identity, list[SnapshotRequest]]
    out  [identity, list[DepthSnapshot | QueryRejected]]

Outgoing lists are split only to stay within MAX_BATCH messages and MAX_FRAME_BYTES.

Authentication (`servers.security`)
-----------------------------------
The command ROUTER is a CURVE server: only the TES's key and the operator's key
complete the handshake (the ZAP handler checks them), so nothing from any other
process reaches the loop. Each frame carries its sender's role, and a command the
role may not send is answered ``CommandRefused(..., NOT_AUTHORIZED)`` and never
journaled: ``Hello`` only as the TES id of the sender's key, BookSubmit, BookCancel
and BookReplace only on order ids of that TES's prefix, BookExpireDay and BookSetPhase
only from the operator. A BookSetPhase with reason VOLATILITY or a non-zero ``until`` is
refused from every peer, CURVE on or off: only this OBS makes volatility interruptions.
Market data and snapshots change nothing and are open to any local process. With
``security.keys_dir = ""`` (loopback only) every peer may do anything else.

Conversation with a TES
-----------------------
- ``Hello(tes_id, seen)``: the OBS remembers the sender's identity for ``tes_id``, sends
  again the kept replies after sequence ``seen`` that concern the TES (`Shard.replay`:
  what a broken connection or a crash of this OBS kept from it; the last
  ``journal.replies_kept`` are kept, and if they do not reach back to ``seen`` none is sent)
  and then answers ``HelloReply(symbols, max_order_id, last_sequence, replay_complete,
  last_prices)``; with ``replay_complete`` False the TES catches up from the journal stream.
  ``Hello(tes_id, seen, replay=False)`` sends nothing again and answers ``replay_complete``
  False: a TES recovering from a crash reads the journal stream, commands and all.
  Commands before Hello are served.
- BookSubmit, BookCancel, BookReplace, BookExpireDay and BookSetPhase on a symbol of the
  shard take the next shard sequence, are journaled, run and answered with ``Executed(sequence, symbol,
  events)``: to the sender and, once per command, to each TES (``order_id >> 48``) that
  said Hello and owns another order the command touched (either order of a fill, an order
  expired, canceled or decremented by self-trade prevention, a stop triggered).
- Good-till-date expiries: no TES sends a clock command. When the earliest expiry of a
  live GTD order in a book is due by the wall clock, the OBS sequences and journals
  ``BookSetClock(symbol, time)`` itself (exchange time, ns: the books' logical time), at the
  start of a loop turn, and sends its ``Executed`` to the TES of every order it expired.
  The first turn after recovery does so at once for every order whose expiry passed while
  the OBS was down. Nothing is issued for a book without a live GTD order.
- Trading phases (`servers.phases`): at the start of a loop turn, when an instrument's
  schedule has a change due, or a volatility interruption's call has run its time, the OBS
  sequences and journals ``BookSetPhase(symbol, phase, SCHEDULE | VOLATILITY)`` itself, as a
  turn of its own; the first turn after recovery does so for a change missed while it was
  down, and for an interruption owed by the last command before a crash. A command whose
  fills printed outside a volatility band is followed, at the next sequence in the same turn,
  by the ``BookSetPhase(symbol, CALL, VOLATILITY, until)`` of its interruption. An uncross's
  ``Executed`` goes to the TES of every order it filled or canceled. A BookSetPhase with an
  unknown phase is journaled and answered with the book's ``CommandRejected``
  (UNKNOWN_PHASE), like a clock command going back: every operator command is in the journal.
- A command on a symbol the shard does not own: ``CommandRefused(symbol, order_id,
  UNKNOWN_SYMBOL)`` (order_id 0 for BookExpireDay); ``BookQuery`` -> ``BookView``, or for
  an unknown symbol ``CommandRefused`` carrying the request_id as ``order_id``. None of
  these is journaled.
- While the journal cannot be written (its file system is full), book commands are not
  executed (a turn whose write failed is undone by reloading the shard from the journal):
  each is answered ``CommandRefused(symbol, order_id, JOURNAL_UNAVAILABLE, text)``
  (order_id 0 for BookExpireDay), the text naming the write's error, and the write is tried
  again at most once a second with the commands then arriving (`Journal.writable`). A failed
  fsync is not retried: the OBS stops with exit status 1, to be restarted.
- Malformed input (not exactly one payload frame, oversized, undecodable, unknown tags,
  wrong field types, integers outside int64, a TES id outside 1..65535: the protocol's
  types refuse all of these while decoding; the order commands' reader in C,
  `native.commands`, leaves every frame it does not take whole to them) is dropped and
  counted, logged at most once per second; it never reaches the journal and the loop
  keeps serving.
- A journal found damaged at start: the OBS refuses to start (exit status 1), in one line
  naming the ``journal cut`` command for this shard. Exit statuses and log lines are those
  of every role (`servers.service`).
"""

import itertools
import logging
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from time import time_ns as clock

import msgspec
import zmq

from config.settings import Config, ConfigError, ShardConfig
from engine.types import CancelReason, RejectReason
from native.commands import CommandReader, OrderCommand
from native.framing import Records
from native.orderpath import route
from native.sockets import queued, receive, send, send_joined, signals
from servers import security, service
from servers.gate import Gate
from servers.journal import (
    KEEP_SNAPSHOTS,
    JournalDamaged,
    JournalFailed,
    first_record,
    write_snapshot,
)
from servers.phases import Planner, guards, schedules
from servers.protocol import (
    MARKS_TOPIC,
    MAX_BATCH,
    MAX_FRAME_BYTES,
    BookCancel,
    BookExpireDay,
    BookQuery,
    BookReplace,
    BookSetClock,
    BookSetPhase,
    BookSubmit,
    Codec,
    CommandRefused,
    FrameTooLarge,
    Hello,
    HelloReply,
    Mark,
    ObsRequest,
    PhaseReason,
    QueryRejected,
    SnapshotRequest,
    SubscriptionRequest,
)
from servers.security import ANYONE, NOBODY
from servers.service import Occurrences
from servers.shard import JOURNALED, Capture, RecoveryError, load, recover
from servers.status import STATUS_FILE, Stages, StatusFile
from servers.stream import Streamer
from servers.subscribers import Subscribers

log = logging.getLogger(__name__)

MAX_FRAMES_PER_TURN = 256
MAX_MESSAGES_PER_TURN = 4096
"""Reading stops after a frame that brings a turn to this many messages (or after
MAX_FRAMES_PER_TURN frames): bounds a turn's latency and its journal group."""
IDLE_WAIT_MS = 100
"""Longest poll wait: how soon a stop request is noticed when nothing arrives."""
UNKNOWN_SYMBOL = RejectReason.UNKNOWN_SYMBOL
NOT_AUTHORIZED = RejectReason.NOT_AUTHORIZED
MALFORMED_MESSAGE = RejectReason.MALFORMED_MESSAGE
REFUSED = -1
"""The sequence a command gets in a turn's work when its sender may not send it."""
UNJOURNALED = -2
"""The sequence a book command gets in a turn's work while the journal refuses writes."""
SNAPSHOT_HWM = 16
"""Snapshot answers queued per requester; a requester that does not read loses the rest
(it asks again), so a large book's snapshots cannot pile up in memory."""
MAX_TEXT = 256
"""The longest text of a reject (`servers.protocol.Text`)."""
MARKET_DATA_HWM = 256
"""Frames queued per market data connection (a symbol's market data one a turn, but for turns of
over MAX_BATCH messages, and the answers to its requests, one a frame of them); more are dropped
(`servers.subscribers`). A subscriber's own ZeroMQ I/O thread reads them off as they come: only one
that stops reading fills this."""
PUBLIC_FRAME_BYTES = 4 << 10
"""A frame on a public port (market data, snapshots) over this ends its sender's connection unread
(ZeroMQ's MAXMSGSIZE): a request takes a few dozen bytes, so this is room for a hundred and more."""
PUBLIC_INBOUND_FRAMES = 16
"""Frames ZeroMQ queues from one connection to a public port before it stops reading it (TCP then
pushes back): at most 16 x PUBLIC_FRAME_BYTES held per connection, however fast it sends."""
PUBLIC_FRAMES_PER_TURN = 8
"""Frames read from each public port in one turn at most: a flood of requests there delays the
order path by a few thousand requests' work a turn at most."""
JOURNAL_UNAVAILABLE = RejectReason.JOURNAL_UNAVAILABLE
STAGES = ("idle", "receive", "match", "journal", "reply", "publish", "other")
"""The loop's stages (`servers.status.Stages`), in its order: waiting for input; reading, decoding
and sequencing a turn's frames; running them (`native.orderpath.OrderPath.run`, the rest through
`Shard.execute_encoded`); the journal's write (and its fsync with the ``batch`` policy); encoding
and sending the replies; joining the encoded market data into frames and publishing them and the
marks; the rest of the busy time (snapshot requests and captures, the status file, GTD and phase
checks)."""
IDLE, RECEIVE, MATCH, JOURNAL, REPLY, PUBLISH, OTHER = range(len(STAGES))


class BookServerHalted(Exception):
    """The OBS had to stop (an fsync of its journal failed); the message says how to go on."""


class OrderBookServer:
    """One shard's OBS: recovers its books, binds its sockets, then `run` serves until `stop`
    (a `servers.service.Server`).

    Raises `RecoveryError` if the journal cannot be recovered (damaged: the message names the
    cut command for this shard), `security.KeyFileError`, `OSError` or `zmq.ZMQError`.
    """

    def __init__(self, config: Config, shard: ShardConfig) -> None:
        self.shard = shard
        self.symbols = list(shard.symbols)
        self.directory = Path(shard.journal_dir)
        self.snapshot_every = config.journal.snapshot_every
        self.guards = guards(config, self.symbols)
        self.planner = Planner(self.symbols, schedules(config, self.symbols), self.guards)
        self.phases_at = 0
        """The wall time (ns) at or after which a phase command of the OBS's own may be due (0: at once)."""
        self.entries = Records()
        """A turn's journal entries (`_execute`), cleared for the next turn: its buffer kept, so a turn
        frames its entries with no allocation or copy of the buffer as it grows."""
        try:
            self.state, self.journal = recover(self.directory, self.symbols, config.journal, self.guards)
            self.state.keep_replies(config.journal.replies_kept)
        except JournalDamaged as exc:
            raise RecoveryError(exc.message("OBS", f"--shard {shard.name}")) from None
        self.snapshot_sequence = self.state.restored_sequence
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="snapshot")
        self._snapshot_written: Future | None = None
        self._snapshot_offsets: deque[int] = deque(maxlen=KEEP_SNAPSHOTS)
        """Journal offsets of the snapshots written (or restored from) by this process, oldest first."""
        if self.state.restored_sequence:
            self._snapshot_offsets.append(self.state.restored_offset)
        self.tes: dict[int, bytes] = {}
        """tes_id -> the identity of the DEALER that said Hello with it."""
        self.command_codec = Codec(ObsRequest)
        """Decodes commands; its encoder (union-agnostic) encodes every outgoing frame."""
        self.order_reader = CommandReader(self.symbols, (BookSubmit, BookCancel, BookReplace), CancelReason,
                                          MAX_FRAME_BYTES, MAX_BATCH)
        """Reads a frame of order commands in C, before the codec: a frame it does not take goes to the codec."""
        self.snapshot_codec = Codec(SnapshotRequest, PUBLIC_FRAME_BYTES)
        self.subscription_codec = Codec(SubscriptionRequest, PUBLIC_FRAME_BYTES)
        self.running = True
        self.dropped = Occurrences(log, "dropped malformed input: %.200s (%d so far)")
        self.unauthorized = Occurrences(log, "refused %s from a peer not authorized to send it (%d so far)")
        self.status = StatusFile(self.directory / STATUS_FILE, "OBS", shard.name, log, time.monotonic())
        self.received = 0
        """Messages read from the command socket (each frame's count: not per message)."""
        self.executed = 0
        """Commands journaled and executed."""
        self.stages = Stages(STAGES)
        self.trades_before = self._trades()
        """The books' trades before this process started (restored from the journal)."""
        self._sockets: list[zmq.Socket] = []
        self.context = zmq.Context()
        self.public = zmq.Context()
        """The public ports' context (market data, snapshots): its ZAP handler is their gate, the
        command port's the CURVE authenticator."""
        self.gate = Gate(self.public, f"OBS {shard.name}")
        """The public ports' connections at most (`servers.gate`)."""
        self.authenticator: security.BookServerAuthenticator | None = None
        self.peers: dict[str, security.Peer] = {}
        """Role name (a message's ZAP User-Id) -> what that peer may do; empty with CURVE off."""
        self.streamer: Streamer | None = None
        try:
            own = self._authenticate(config, shard)
            self.commands = self._socket(self.context, own)
            self.commands.bind(shard.command_endpoint)
            self.market_data = self._socket(self.public, options=(
                (zmq.ROUTER_MANDATORY, 1), (zmq.SNDHWM, MARKET_DATA_HWM), (zmq.RCVHWM, PUBLIC_INBOUND_FRAMES),
                (zmq.MAXMSGSIZE, PUBLIC_FRAME_BYTES)))
            self.snapshots = self._socket(self.public, options=(
                (zmq.SNDHWM, SNAPSHOT_HWM), (zmq.RCVHWM, PUBLIC_INBOUND_FRAMES), (zmq.MAXMSGSIZE, PUBLIC_FRAME_BYTES)))
            self.gate.add(self.market_data, "market data", shard.max_connections, shard.peer_heartbeat_ms)
            self.gate.add(self.snapshots, "snapshot", shard.max_connections, shard.peer_heartbeat_ms)
            self.gate.start()
            self.market_data.bind(shard.market_data_endpoint)
            self.snapshots.bind(shard.snapshot_endpoint)
            self.subscribers = Subscribers(self.market_data, self.symbols, shard.max_subscribers)
            if shard.stream_endpoint:
                self.streamer = Streamer(
                    self.directory, shard.stream_endpoint, self.context, own,
                    first_record(self.directory, self.journal.discarded), (self.state.sequence, self.journal.offset),
                    config.journal.max_consumer_lag_mb << 20,
                )
        except BaseException:
            self.close()
            raise

    def _authenticate(self, config: Config, shard: ShardConfig) -> security.KeyPair | None:
        """Start the ZAP handler that admits only the TES's and the operator's keys; the
        shard's own key pair (None with CURVE off, which is logged)."""
        if not config.security.keys_dir:
            log.warning("CURVE is off (security.keys_dir is empty): any local process can act as the TES")
            return None
        keys = security.Keys(config.security.keys_dir)
        own = keys.own(security.shard_key_name(shard.name))
        roles, admitted, self.peers = security.book_server_peers(keys, config.tes.tes_id)
        self.authenticator = security.BookServerAuthenticator(self.context, roles, admitted)
        self.authenticator.start()
        return own

    def _socket(self, context: zmq.Context, own: security.KeyPair | None = None, options: tuple = ()) -> zmq.Socket:
        """A ROUTER of ``context`` to bind, with ``options`` (pairs of a socket option and its value)
        set; with a key pair, a CURVE server whose peers the ZAP handler checks."""
        socket = context.socket(zmq.ROUTER)
        socket.setsockopt(zmq.LINGER, 0)
        socket.setsockopt(zmq.HANDSHAKE_IVL, security.HANDSHAKE_MS)
        for option, value in options:
            socket.setsockopt(option, value)
        self._sockets.append(socket)
        if own is not None:
            security.serve_curve(socket, own, security.BOOK_DOMAIN)
        return socket

    def ready(self) -> str:
        shard = self.shard
        return (f"READY OBS {shard.name} sequence={self.state.sequence} commands={shard.command_endpoint} "
                f"market_data={shard.market_data_endpoint} snapshots={shard.snapshot_endpoint}")

    def run(self) -> None:
        """Serve until `stop`; the turn in hand is finished, then the journal is flushed.

        Raises `BookServerHalted` once an fsync of the journal failed (here, on the interval
        thread or the snapshot writer): nothing more may be acknowledged.
        """
        # The public ports are seldom readable: they are polled by their descriptors
        # (`native.sockets.signals`), which signal only once a socket has been found with nothing
        # queued. So each is read before the first poll, and after a turn that read it or sent on it
        # (which reads its commands too) `queued` says whether to read it again without waiting: the
        # snapshot port right after it is read (and answered), the market data port after it is read
        # and before a poll that follows sends to its subscribers (`Subscribers.sent`: a turn's
        # publishing, `_run_due`'s, a send that found the last subscriber gone).
        snapshots, market_data = signals(self.snapshots), signals(self.market_data)
        poller = zmq.Poller()
        poller.register(self.commands, zmq.POLLIN)
        poller.register(snapshots, zmq.POLLIN)
        poller.register(market_data, zmq.POLLIN)
        snapshots_due = market_data_due = True
        lap = self.stages.lap
        self.stages.start()
        try:
            while self.running and self.journal.failed is None:
                # GTD expiries and phase changes due first: their commands are turns of their own
                # (`_expire_due`, `_phases_due`), and the wait for input ends in time for the next.
                wait_ms = self._run_due()
                if self.subscribers.sent:
                    self.subscribers.sent = False
                    market_data_due = market_data_due or queued(self.market_data)
                lap(OTHER)
                ready = dict(poller.poll(0 if snapshots_due or market_data_due else wait_ms))
                lap(IDLE)
                if self.commands in ready:
                    self._serve_commands()
                if snapshots_due or snapshots in ready:
                    self._serve_snapshots()
                    snapshots_due = queued(self.snapshots)
                if market_data_due or market_data in ready:
                    self._serve_subscriptions()
                    self.subscribers.sent = False
                    market_data_due = queued(self.market_data)
                if self.state.sequence - self.snapshot_sequence >= self.snapshot_every:
                    self._snapshot()
                now = time.monotonic()
                if self.status.due(now):
                    self._publish_status(now)
            self.journal.flush()
            self._publish_status(time.monotonic(), stopped=True)
        except JournalFailed as exc:
            raise BookServerHalted(
                f"{exc}. Restart it: recovery replays what reached the journal file, and each TES's Hello gets the "
                "answers to the commands it had in flight") from exc

    def stop(self, *_signal) -> None:
        """Stop intake after the current turn (safe in a signal handler)."""
        self.running = False

    def stopped(self) -> str:
        return (f"OBS {self.shard.name} stopped at sequence {self.state.sequence} "
                f"({self.dropped.count} malformed inputs dropped)")

    def close(self) -> None:
        """Finish the snapshot being written, flush and close the journal, close the sockets (linger 0)."""
        try:
            self._writer.shutdown(wait=True)
            self.journal.close()
        except (OSError, JournalFailed) as exc:
            log.error("closing the journal failed: %s", exc)
        finally:
            if self.streamer is not None:
                self.streamer.close()
            for socket in self._sockets:
                socket.close(linger=0)
            self.gate.stop()
            if self.authenticator is not None:
                self.authenticator.stop()
            self.public.term()
            self.context.term()

    # ---------------------------------------------------------------- the pipeline

    def _run_due(self) -> int:
        """Run the GTD expiries and the phase commands due (`_expire_due`, `_phases_due`), then how
        long the loop may wait for input: `IDLE_WAIT_MS`, or less when a GTD order expires or a phase
        command may be due sooner (while the journal takes writes: else they wait for it like any
        command)."""
        now, expiry = clock(), self.state.next_expiry()
        if now >= self.phases_at or expiry is not None and expiry <= now:
            self._expire_due()
            self._phases_due()
            now, expiry = clock(), self.state.next_expiry()
        wait = IDLE_WAIT_MS
        if self.journal.unwritable is None:
            due = self.phases_at if expiry is None else min(self.phases_at, expiry)
            wait = min(wait, max(0, (due - now) // 1_000_000 + 1))
        return wait

    def _expire_due(self) -> None:
        """Sequence a `BookSetClock` to the exchange time for each book with a GTD order due by
        then, and run them as a turn of their own (steps 3 to 6 below); nothing while the journal
        refuses writes (they are due again when it takes them)."""
        state = self.state
        expiry = state.next_expiry()
        if expiry is None or expiry > clock() or not self.journal.writable():
            return
        stamp = max(state.time, clock())
        sequence = state.sequence
        work = []
        for symbol in state.due(stamp):
            sequence += 1
            work.append((None, BookSetClock(symbol, stamp), sequence, stamp))
        if work:
            self.stages.lap(OTHER)
            self._finish_turn(work)

    def _phases_due(self) -> None:
        """Sequence the phase commands of the OBS's own now due (`servers.phases.Planner`) and run them as
        a turn of their own; nothing while the journal refuses writes. Looks no further until
        `phases_at`: the next scheduled change or interruption's end (sooner after a phase command)."""
        now = clock()
        if now < self.phases_at or not self.journal.writable():
            return
        stamp = max(self.state.time, now)
        commands, self.phases_at = self.planner.due(self.state, stamp)
        sequence = self.state.sequence
        work = []
        for command in commands:
            sequence += 1
            work.append((None, command, sequence, stamp))
        if work:
            self.stages.lap(OTHER)
            self._finish_turn(work)

    def _serve_commands(self) -> None:
        # 1. Read the frames already queued (within the per-turn bounds, never blocking) and
        #    decode them with the codec built once; malformed input is dropped here. With
        #    CURVE, each frame comes with its sender's role (its key's ZAP User-Id).
        # 2. Sequence: each book command on an owned symbol that its sender may send takes the
        #    next shard sequence and the exchange time (nanoseconds, UTC, never going back).
        #    Everything keeps its arrival order in `work`; a command that is not to run gets
        #    sequence 0 (not a book command of this shard), REFUSED (its sender may not send
        #    it) or UNJOURNALED (the journal refuses writes for now: its file system is full).
        #    The shard's order path in C reads and sequences the frames that are wholly order
        #    commands their sender may send (`native.orderpath.OrderPath.take`, the common turn);
        #    from the first frame it does not take whole, the loop below goes on (where each run
        #    of order commands is still sequenced in C: `OrderPath.sequence`; a command read in C
        #    is then its own item, see `_item`).
        state = self.state
        writable = self.journal.writable()
        work = []
        sequence, stamp = state.sequence, state.time
        frames, unread, started = 0, None, None
        if writable:
            frames, sequence, stamp, unread, started = state.order_path.take(
                self.commands, bool(self.peers), self.peers, ANYONE, NOBODY, self.order_reader, work, sequence, stamp,
                MAX_FRAMES_PER_TURN, MAX_MESSAGES_PER_TURN)
        if not writable or unread is not None or started is not None:
            sequence, stamp = self._sequence_rest(work, unread, started, MAX_FRAMES_PER_TURN - frames, writable,
                                                  sequence, stamp)
        self.received += len(work)
        self.stages.lap(RECEIVE)
        self._finish_turn(work)

    def _sequence_rest(self, work: list, unread: tuple | None, started: tuple | None, frames: int, writable: bool,
                       sequence: int, stamp: int) -> tuple[int, int]:
        """Steps 1 and 2 from where `OrderPath.take` stopped (``started``: a frame it read and
        sequenced up to an index; ``unread``: one as received), then for up to ``frames`` more
        frames, until ``work`` holds `MAX_MESSAGES_PER_TURN` items: the last sequence and stamp given."""
        if started is not None:
            sequence, stamp = self._sequence_frame(work, *started, writable, sequence, stamp)
        read = self._read(self.commands, self.command_codec, self.peers, self.order_reader, frames)
        if unread is not None:
            read = itertools.chain(_frames((unread,), self.command_codec, self.peers, self.order_reader, self.dropped),
                                   read)
        while len(work) < MAX_MESSAGES_PER_TURN and (frame := next(read, None)) is not None:
            sequence, stamp = self._sequence_frame(work, *frame, 0, writable, sequence, stamp)
        return sequence, stamp

    def _sequence_frame(self, work: list, identity: bytes, peer: security.Peer, messages: list, position: int,
                        writable: bool, sequence: int, stamp: int) -> tuple[int, int]:
        """Step 2 for one frame's ``messages`` from ``position`` on (its sender ``identity``, ``peer``),
        into ``work``: the last sequence and stamp given."""
        state = self.state
        feeds, sequence_orders, count = state.feeds, state.order_path.sequence, len(messages)
        while position < count:
            if writable:
                position, sequence, stamp = sequence_orders(work, identity, messages, position, peer.tes_id, sequence,
                                                            stamp)
                if position == count:
                    break
            message = messages[position]
            position += 1
            if type(message) is OrderCommand:
                message = message.struct()
            kind = type(message)
            if kind in JOURNALED and message.symbol in feeds:
                if (peer is not ANYONE or kind is BookSetPhase) and not _permits(peer, kind, message):
                    work.append((identity, message, REFUSED, 0))
                elif not writable:
                    work.append((identity, message, UNJOURNALED, 0))
                else:
                    sequence += 1
                    stamp = max(stamp, clock())
                    work.append((identity, message, sequence, stamp))
            elif kind is Hello and peer is not ANYONE and peer.tes_id != message.tes_id:
                work.append((identity, message, REFUSED, 0))
            else:
                work.append((identity, message, 0, 0))
        return sequence, stamp

    def _finish_turn(self, work: list) -> None:
        """Steps 3 to 6 of a turn for ``work``: (identity, message, sequence, stamp) in order (see
        `_item`), the identity None for the OBS's own commands (`_expire_due`), which nobody is
        answered for."""
        # 3. Execute in arrival order: commands through the shard's handler (book, then market
        #    data), each giving its journal entry; Hello and queries see the state the commands
        #    before them left. Nothing leaves the process yet.
        lap = self.stages.lap
        outbox, market_data, entries = self._execute(work)
        lap(MATCH)
        # 4. Journal the turn's entries (each command with its time, events and market data) with
        #    one write, fsynced per policy, before anything is released. If the journal cannot
        #    take them (a full file system), the books are reloaded as the journal has them (the
        #    turn undone), the turn's commands are refused and the rest of it is served again.
        if entries:
            unwritable, start = self.journal.unwritable, self.journal.offset
            if not self.journal.append(entries):
                outbox, market_data = self._undo_turn(work, unwritable is None)
            else:
                self.executed += len(entries)
                if unwritable is not None:
                    log.info("the journal is written again after %.1f s: intake resumed at sequence %d",
                             time.monotonic() - self.journal.unwritable_since, entries.first)
                if self.streamer is not None:
                    self.streamer.published(entries.first, start, entries.last, self.journal.offset)
        lap(JOURNAL)
        # 5. Reply: each destination's replies of this turn in one frame.
        self._send(self.commands, outbox)
        lap(REPLY)
        # 6. Publish the market data: per symbol, one frame in sequence order; then the marks.
        self._publish(market_data)
        if self.state.traded:
            self._publish_marks(self.state.traded)
        lap(PUBLISH)

    def _execute(self, work: list) -> tuple[dict[bytes, list], dict[str, list[bytes]], Records]:
        """Step 3 for ``work``: the replies by destination, the market data (each symbol's
        messages, encoded) and the journal entries of the commands run, framed for the journal.
        The shard's order path runs the order commands in C (as `Shard.execute_encoded` would run
        them: `native.orderpath.OrderPath.run`); a turn of nothing else ends there, and the rest
        of any other is `_execute_rest`'s."""
        state = self.state
        outbox: dict[bytes, list] = {}
        market_data: dict[str, list[bytes]] = {}
        entries = self.entries
        entries.clear()
        position = state.order_path.run(work, 0, outbox, market_data, entries, self.tes)
        if position < len(work) or state.owed:  # through the class: the stand-ins of a server are namespaces
            OrderBookServer._execute_rest(self, work, position, outbox, market_data, entries)
        return outbox, market_data, entries

    def _execute_rest(self, work: list, position: int, outbox: dict[bytes, list], market_data: dict[str, list[bytes]],
                      entries: Records) -> None:
        """`_execute` from ``work[position]``, the first item the order path did not run (or the
        interruption owed after the one before it), into the turn's outputs so far."""
        state, feeds, tes = self.state, self.state.feeds, self.tes

        def reply(destination: bytes | None, message) -> None:
            if destination is None:
                return
            replies = outbox.get(destination)
            if replies is None:
                outbox[destination] = replies = []
            replies.append(message)

        def execute(identity: bytes | None, command, stamp: int) -> None:
            sequence = state.sequence + 1
            published = market_data.get(command.symbol)
            if published is None:
                market_data[command.symbol] = published = []
            entry, executed, concerned = state.execute_encoded(sequence, stamp, command, published)
            entries.add(sequence, entry)
            reply(identity, executed)
            route(outbox, tes, identity, executed, concerned)

        def interrupt(stamp: int) -> None:
            for symbol in sorted(state.owed):
                execute(None, self.guards[symbol].interruption(symbol, stamp), stamp)
            self.phases_at = 0

        # Each run of order commands goes through the shard's order path in C (as `execute` would
        # run them); the item it stops at is handled here. Sequenced in `work` in arrival order; a
        # volatility interruption inserted after a command takes the next sequence, and those
        # after it move up by one.
        run_orders, count, ran = state.order_path.run, len(work), position > 0
        while True:
            if ran and state.owed:
                interrupt(state.time)
            if position == count:
                break
            identity, message, sequence, stamp = _item(work[position])
            position += 1
            if type(message) is OrderCommand:
                message = message.struct()
            if sequence > 0:
                execute(identity, message, stamp)
                if type(message) is BookSetPhase:
                    self.phases_at = 0
                if state.owed:
                    interrupt(stamp)
            elif sequence == REFUSED:
                reply(identity, self._refuse(message))
            elif sequence == UNJOURNALED:
                reply(identity, self._unjournaled(message))
            elif type(message) is Hello:
                self.tes[message.tes_id] = identity
                complete = message.seen is None or message.replay
                if message.seen is not None and message.replay:
                    replayed, complete = state.replay(message.tes_id, message.seen)
                    for executed in replayed:
                        reply(identity, executed)
                reply(identity, HelloReply(self.symbols, state.max_order_id(message.tes_id), state.sequence, complete,
                                           state.last_prices()))
            elif type(message) is BookQuery:
                feed = feeds.get(message.symbol)
                if feed is None:
                    reply(
                        identity,
                        CommandRefused(message.symbol, message.request_id, UNKNOWN_SYMBOL, UNKNOWN_SYMBOL.text),
                    )
                else:
                    reply(identity, feed.view(message.request_id, message.levels))
            else:
                order_id = getattr(message, "order_id", 0)
                reply(identity, CommandRefused(message.symbol, order_id, UNKNOWN_SYMBOL, UNKNOWN_SYMBOL.text))
            ran_from, position = position, run_orders(work, position, outbox, market_data, entries, tes)
            ran = position > ran_from

    def _serve_subscriptions(self) -> None:
        """Each queued frame of subscription requests applied and answered (`Subscribers.serve`); a
        malformed one answered MALFORMED_MESSAGE."""
        for identity, requests, malformed in self._read_public(self.market_data, self.subscription_codec):
            if malformed is None:
                self.subscribers.serve(identity, requests)
            else:
                self.subscribers.refuse(identity, MALFORMED_MESSAGE, malformed)

    def _serve_snapshots(self) -> None:
        """Answer each requester once per symbol per turn, each symbol's snapshot built once
        per turn: a frame of a hundred requests costs one snapshot, not a hundred."""
        feeds = self.state.feeds
        built: dict[str, bytes] = {}
        outbox: dict[bytes, list] = {}
        for identity, requests, malformed in self._read_public(self.snapshots, self.snapshot_codec):
            replies = outbox.setdefault(identity, [])
            if malformed is not None:
                replies.append(QueryRejected(0, MALFORMED_MESSAGE, malformed))
            answered = set()
            for request in requests:
                symbol = request.symbol
                if symbol in answered:
                    continue
                answered.add(symbol)
                feed = feeds.get(symbol)
                if feed is None:
                    replies.append(QueryRejected(0, UNKNOWN_SYMBOL, f"{UNKNOWN_SYMBOL.text}: {symbol!r}"))
                    continue
                snapshot = built.get(symbol)
                if snapshot is None:
                    built[symbol] = snapshot = self.command_codec.encode(feed.snapshot())
                replies.append(snapshot)
        self._send(self.snapshots, outbox)

    def _read_public(self, socket: zmq.Socket, codec: Codec):
        """(identity, requests, malformed) of each of up to PUBLIC_FRAMES_PER_TURN frames queued on a
        public port: a malformed frame (not one payload, or one ``codec`` refuses) has no requests and
        ``malformed`` says why, to answer it with (it is counted as dropped, too); else None."""
        for parts, _ in _received(socket, False, PUBLIC_FRAMES_PER_TURN):
            requests, problem = _decoded(parts, codec)
            if problem is not None:
                self.dropped(problem)
                problem = f"{MALFORMED_MESSAGE.text}: {problem}"[:MAX_TEXT]
            yield parts[0], requests, problem

    def _read(self, socket: zmq.Socket, codec: Codec, peers: dict[str, security.Peer] | None = None,
              reader: CommandReader | None = None, frames: int = MAX_FRAMES_PER_TURN):
        """(identity, peer, messages) of up to ``frames`` queued frames (`_frames`).

        Each message is read in C until none is left (`native.sockets.receive`), not through
        pyzmq's ``recv`` and ``get``, which make an enum member of every option they read.
        """
        return _frames(_received(socket, bool(peers), frames), codec, peers, reader, self.dropped)

    def _send(self, socket: zmq.Socket, outbox: dict[bytes, list]) -> None:
        """Each destination's replies (Structs, or bytes already encoded: the books' `Executed`)
        in frames within the protocol's limits."""
        send_joined(socket, outbox, self.command_codec.encoder.encode, MAX_BATCH, MAX_FRAME_BYTES)

    def _publish(self, market_data: dict[str, list[bytes]]) -> None:
        """One frame (or more, if large) per symbol per turn to each of its subscribers, its messages
        (encoded) in order."""
        self.subscribers.publish(market_data)

    def _publish_marks(self, traded: dict[str, tuple[int, int, tuple[int, ...]]]) -> None:
        """To each TES that greeted this server, on the command socket, one marks frame
        ``[MARKS_TOPIC, payload]``: the last trade of each symbol that traded this turn, but for the
        trades that TES was sent in its replies (it marks its price from them); none if that leaves
        none. A TES that greets later has them in its `HelloReply`'s last prices."""
        for tes_id, identity in self.tes.items():
            marks = [Mark(symbol, sequence, price) for symbol, (sequence, price, concerned) in traded.items()
                     if tes_id not in concerned]
            if marks:
                send(self.commands, (identity, MARKS_TOPIC, self.command_codec.encode(marks)))
        traded.clear()

    # ---------------------------------------------------------------- housekeeping

    def _trades(self) -> int:
        """The books' trades since they began (their trade sequences)."""
        return sum(feed.book.trade_sequence for feed in self.state.feeds.values())

    def _publish_status(self, now: float, stopped: bool = False) -> None:
        """Write the status file (`servers.status`): counts since the start; the journal (its last
        sequence, bytes written, bytes not yet fsynced, whether it takes writes); the market data's
        subscribers; each public port's connections and those refused (`servers.gate`); how far
        behind it each stream consumer is, in entries not yet acknowledged."""
        journal, streamer = self.journal, self.streamer
        counters = {"received": self.received, "executed": self.executed,
                    "trades": self._trades() - self.trades_before, "dropped": self.dropped.count,
                    "unauthorized": self.unauthorized.count, "fsyncs": journal.fsyncs}
        unwritable = journal.unwritable
        figures = {
            "sequence": self.state.sequence,
            "journal": {
                "bytes": journal.offset,
                "unsynced_bytes": journal.unsynced_bytes,
                "discarded_bytes": journal.discarded,
                "unwritable": None if unwritable is None else str(unwritable.strerror or unwritable),
            },
            "tes": sorted(self.tes),
            "market_data": {"subscribers": len(self.subscribers), "dropped": self.subscribers.dropped,
                            "refused": self.subscribers.refused},
            "connections": self.gate.figures(),
            "consumers": [],
        }
        if streamer is not None:
            # A copy of the registry, made at once (the streamer's thread may add to it); the
            # figures of each consumer are plain ints, read as they stand.
            figures["consumers"] = [
                {"name": consumer.name, "acked": consumer.acked, "behind": max(0, streamer.last - consumer.acked),
                 "connected": consumer.identity is not None, "left_behind": consumer.left_behind}
                for consumer in list(streamer.consumers.values())
            ]
        self.status.publish(now, counters, figures, stopped=stopped, stages=self.stages)

    def _snapshot(self) -> None:
        """Capture the shard as of its last command (`Shard.capture`: copying out the resting
        orders and the accepted-id words is all the loop does) and have the writer thread build
        the snapshot from the capture, make the journal durable up to it and then write it
        (fsyncing a new file costs tens of milliseconds here, which the loop does not wait
        for). One at a time: while one is being written, the next waits for a later turn.
        """
        if self._snapshot_written is not None and not self._snapshot_written.done():
            return
        self.snapshot_sequence = self.state.sequence
        capture = self.state.capture(self.journal.offset)
        self._snapshot_written = self._writer.submit(self._write_snapshot, capture)

    def _write_snapshot(self, capture: Capture) -> None:
        """On the writer thread; then the journal before the oldest kept snapshot is discarded.
        A snapshot that cannot be written is logged, not fatal: the journal alone still
        recovers everything, only more slowly."""
        try:
            snapshot = capture.finish()
            self.journal.sync_to(snapshot.journal_offset)
            write_snapshot(self.directory, snapshot)
        except (OSError, MemoryError, JournalFailed) as exc:
            log.error("snapshot at sequence %d not written: %s", capture.sequence, exc)
            return
        self._snapshot_offsets.append(snapshot.journal_offset)
        if len(self._snapshot_offsets) == KEEP_SNAPSHOTS:
            floor = self._snapshot_offsets[0]
            consumers = self.streamer.floor() if self.streamer is not None else None
            if consumers is not None:
                floor = min(floor, consumers)
            try:
                self.journal.discard_before(floor)
            except OSError as exc:
                log.error("the journal before byte %d was not discarded: %s", floor, exc)
                return
            if self.streamer is not None:
                self.streamer.discarded(self.journal.discarded)

    def _undo_turn(self, work: list, stopping: bool) -> tuple[dict[bytes, list], dict[str, list[bytes]]]:
        """The journal did not take this turn's entries: reload the shard as the journal has it
        (the turn's commands undone; nothing of them has left the process), refuse those
        commands (JOURNAL_UNAVAILABLE, with the write's error) and serve the rest of the turn
        (Hello, queries, refusals) again; its replies and market data. ``stopping``: this turn
        stops intake (logged once)."""
        if stopping:
            log.error("cannot write the journal %s (%s): intake stopped, book commands are refused (%d) until a "
                      "write succeeds, tried again at most once a second; queries and market data go on",
                      self.journal.path, self._journal_error(), JOURNAL_UNAVAILABLE)
        kept = self.state.history.maxlen
        self.state, _ = load(self.directory, self.symbols, guards=self.guards)
        self.state.keep_replies(kept)
        return self._execute([(identity, message, UNJOURNALED if sequence > 0 else sequence, 0)
                              for identity, message, sequence, _ in map(_item, work)])[:2]

    def _unjournaled(self, message) -> CommandRefused:
        """The answer to a book command the journal cannot take now."""
        text = f"{JOURNAL_UNAVAILABLE.text}: {self._journal_error()}"
        return CommandRefused(message.symbol, getattr(message, "order_id", 0), JOURNAL_UNAVAILABLE, text)

    def _journal_error(self) -> str:
        error = self.journal.unwritable
        return f"{error.strerror or error}" if error is not None else "unknown error"

    def _refuse(self, message) -> CommandRefused:
        """The answer to a command its sender may not send (counted, logged at most once a second)."""
        self.unauthorized(type(message).__name__)
        return CommandRefused(getattr(message, "symbol", ""), getattr(message, "order_id", 0), NOT_AUTHORIZED,
                              NOT_AUTHORIZED.text)


def serve(config: Config, args=None) -> int:
    """``python main.py -s OBS [--shard NAME]`` (the first shard by default): run until SIGINT/SIGTERM;
    the exit status (`servers.service.serve`)."""
    name = getattr(args, "shard", None) or config.shards[0].name

    def start() -> OrderBookServer:
        shard = config.shard(name)
        service.pin(shard.cpus)
        return OrderBookServer(config, shard)

    return service.serve(
        log, f"OBS {name}", start,
        {ConfigError: 2, security.KeyFileError: 2, RecoveryError: 1, zmq.ZMQError: 1, OSError: 1},
        (BookServerHalted,), lambda server: f"at sequence {server.state.sequence}", config.logging.format,
    )


def _received(socket: zmq.Socket, with_user: bool, frames: int):
    """(parts, User-Id) of each of up to ``frames`` messages queued on ``socket``, read without
    waiting (the User-Id None unless ``with_user``)."""
    for _ in range(frames):
        received = receive(socket, with_user)
        if received is None:
            return
        yield received if with_user else (received, None)


def _frames(received, codec: Codec, peers: dict[str, security.Peer] | None, reader: CommandReader | None, dropped):
    """(identity, peer, messages) of each of ``received`` (a message's parts and its ZAP User-Id);
    bad ones are dropped (told to ``dropped``).

    With ``peers`` (CURVE on), the peer is the one named by the frame's User-Id; otherwise
    `ANYONE`. With ``reader``, a frame it reads is its `OrderCommand`s, and only the others go to
    ``codec``.
    """
    for parts, user in received:
        messages, problem = _decoded(parts, codec, reader)
        if problem is not None:
            dropped(problem)
            continue
        yield parts[0], peers.get(user, NOBODY) if peers else ANYONE, messages


def _decoded(parts: list[bytes], codec: Codec, reader: CommandReader | None = None
             ) -> tuple[list, Exception | str | None]:
    """The messages of a frame read from a ROUTER (``[identity, payload]``): ``reader``'s, if it
    reads the payload, else ``codec``'s; ``([], why)`` for a malformed frame (the codec's error,
    or what is wrong with its parts)."""
    if len(parts) != 2:
        return [], f"{len(parts) - 1} payload frames instead of 1"
    messages = reader.read(parts[1]) if reader is not None else None
    if messages is None:
        try:
            messages = codec.decode(parts[1])
        except (msgspec.DecodeError, msgspec.ValidationError, FrameTooLarge) as exc:
            return [], exc
    return messages, None


def _item(item) -> tuple:
    """A turn's work item as ``(identity, message, sequence, stamp)``: an `OrderCommand` the
    order path sequenced is its own item, carrying them (`native.orderpath.OrderPath.sequence`)."""
    if type(item) is OrderCommand:
        return item.identity, item, item.sequence, item.stamp
    return item


def _permits(peer: security.Peer, kind: type, command) -> bool:
    """Whether ``peer`` may send book ``command``: the operator ends the day and sets phases
    (never a volatility interruption's: the OBS's own); a TES acts on the order ids of its own
    prefix only."""
    if kind is BookExpireDay:
        return peer.operator
    if kind is BookSetPhase:
        return peer.operator and command.reason != PhaseReason.VOLATILITY and not command.until
    return peer.may_name(command.order_id)
