"""The journal stream: a consumer reads a shard's journal from any sequence, then live, in order, once.

Each OBS serves its journal on ``shard.stream_endpoint`` (a ROUTER, CURVE: the keys of the
TES, the recorder and the operator), the way kdb+tick's subscribers replay the log and then
take the live updates: one path, because the live records are simply the end of the file.

Conversation (each frame a msgpack list of messages; ROUTER frames ``[identity, payload]``)
-------------------------------------------------------------------------------------------
consumer -> OBS   ``Subscribe(consumer, after, window)``
OBS -> consumer   ``Subscribed(consumer, first, last)``: records ``after + 1`` on will come;
                  the journal holds ``first .. last`` now. Or ``SubscribeRefused(consumer,
                  reason, text, first)``: the records after ``after`` were discarded (the
                  consumer fell further behind than retention keeps), or ``after`` is beyond
                  the journal's end (a consumer of another journal?).
OBS -> consumer   ``Records(first, last, data)``: records ``first .. last`` exactly as
                  ``commands.log`` holds them (header and `JournalEntry` payload each, CRCs
                  included), at most `CHUNK_BYTES` of them (one record alone may be larger).
consumer -> OBS   ``Ack(consumer, sequence)``: everything through ``sequence`` is committed
                  downstream. It also grants credit: the OBS sends records up to ``window``
                  past the last ack, so neither side's memory grows with the lag.
consumer -> OBS   ``Release(consumer)``: the subscription ends and the name is forgotten
                  (it holds no journal back): a consumer that reads only now and then, such
                  as a TES catching up after missing replies.

A consumer name is registered by its first Subscribe and kept in ``consumers`` (JSON, in the
journal directory) with the last sequence it acknowledged, so retention survives a restart:
journal records are discarded only below both the older kept snapshot and the lowest
acknowledged sequence of every registered consumer (`Streamer.floor`) — unless a consumer has
fallen more than ``journal.max_consumer_lag_mb`` behind the journal's end: then it is left
behind (logged once), its records may be discarded, and its next Subscribe is refused with the
first sequence still held. A new subscription of a name replaces the old one.

Threads
-------
The `Streamer` runs on its own thread with its own sockets and file descriptor; it reads the
journal file, never the books. The OBS loop tells it, after each journaled turn, how far the
file holds released records (`Streamer.published`), with a nudge on an inproc socket while a
consumer is connected (``connected``); with none, nobody is woken: the thread wakes every
`POLL_MS` for requests anyway, and a Subscribe sends everything published before it. (Waking
it every turn for nobody cost the OBS at 10,000 orders/s about 7% of a core, and made the loop
hand the GIL over to it thousands of times a second.) The snapshot writer asks it for the
retention floor. It decodes nothing: it cuts the file into chunks at record boundaries (headers
only), so it costs the loop little of the GIL.
"""

import json
import logging
import os
import threading
import time
import zlib
from array import array
from bisect import bisect_right
from collections import deque
from pathlib import Path
from typing import Annotated

import msgspec
import zmq

from servers import security
from servers.journal import HEADER, JOURNAL_FILE, RecoveryError, write_atomically
from servers.protocol import JournalEntry, Message
from servers.service import Occurrences
from servers.shard import decode_entry

log = logging.getLogger(__name__)

CONSUMERS_FILE = "consumers"
CHUNK_BYTES = 1 << 20
"""A Records message holds at most this many bytes of records (one larger record goes alone)."""
MAX_WINDOW = 1_000_000
MAX_CONSUMERS = 16
INDEX_EVERY = 1024
"""The streamer remembers where a record starts at least every this many records."""
POLL_MS = 100
SAVE_EVERY_S = 1.0
"""The consumers file is rewritten at most this often (and when the streamer stops)."""
SEND_HWM = 64

ConsumerName = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_.-]{1,32}$")]
Sequence = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]


class Subscribe(Message):
    consumer: ConsumerName
    after: Sequence
    """The last sequence the consumer has: records from ``after + 1`` on are sent."""
    window: Annotated[int, msgspec.Meta(ge=1, le=MAX_WINDOW)] = 50_000


class Ack(Message):
    consumer: ConsumerName
    sequence: Sequence


class Release(Message):
    consumer: ConsumerName


class Subscribed(Message):
    consumer: str
    first: int
    """The first sequence the journal still holds (0: none yet)."""
    last: int


class SubscribeRefused(Message):
    consumer: str
    reason: str
    text: str
    first: int


class Records(Message):
    first: int
    last: int
    data: bytes


StreamRequest = Subscribe | Ack | Release
StreamReply = Subscribed | SubscribeRefused | Records


class Consumer:
    __slots__ = ("name", "identity", "next", "offset", "acked", "acked_offset", "window", "chunks", "left_behind")

    def __init__(self, name: str, acked: int, acked_offset: int) -> None:
        self.name = name
        self.identity: bytes | None = None
        """The subscribed connection (None: registered, not connected)."""
        self.next = 0
        """The next sequence to send, and where its record starts."""
        self.offset = 0
        self.acked = acked
        self.acked_offset = acked_offset
        """Where a record at or before ``acked + 1`` starts: retention keeps the bytes from here."""
        self.window = 0
        self.chunks: deque[tuple[int, array]] = deque()
        """(first sequence, start offset of each record) of the chunks sent and not yet all acknowledged."""
        self.left_behind = False


class Streamer:
    """The stream ROUTER of one OBS, on its own thread (see the module docstring).

    Parameters
    ----------
    directory
        The shard's journal directory.
    endpoint, own, peers
        Where to bind, the shard's CURVE key pair (None: CURVE off) and the role names of the
        keys the ZAP handler admits on this port (it runs on the OBS's context).
    context
        The OBS's ZeroMQ context (its ZAP handler serves the stream domain too).
    start
        (first sequence, its offset) the journal holds: the first record at or after the
        discarded bytes; `published` reports the end.
    max_lag_bytes
        How much journal a lagging consumer may hold back (``journal.max_consumer_lag_mb``).
    """

    def __init__(self, directory: Path, endpoint: str, context: zmq.Context, own: security.KeyPair | None,
                 start: tuple[int, int], end: tuple[int, int], max_lag_bytes: int) -> None:
        self.directory = directory
        self.path = directory / JOURNAL_FILE
        self.endpoint = endpoint
        self.context = context
        self.own = own
        self.max_lag_bytes = max_lag_bytes
        self.first, self.first_offset = start
        self.last, self.end = end
        self._index: list[tuple[int, int]] = [start] if start[0] else []
        """(sequence, offset) of record starts, ascending, at most INDEX_EVERY records apart."""
        self._lock = threading.Lock()
        self.consumers = {name: Consumer(name, acked, offset) for name, (acked, offset) in _load(directory).items()}
        self._dirty = False
        self._saved_at = 0.0
        self.malformed = Occurrences(log, "dropped a malformed stream request: %.200s (%d so far)")
        self._nudge_endpoint = f"inproc://stream-{id(self)}"
        self._nudge = context.socket(zmq.PUSH)
        self._nudge.setsockopt(zmq.LINGER, 0)
        self._nudge.setsockopt(zmq.SNDHWM, 1)
        self._nudge.bind(self._nudge_endpoint)
        self.connected = False
        """Whether a consumer is subscribed on a connection (set by the stream thread after each
        of its iterations); `published` nudges the thread only then."""
        self._stopping = threading.Event()
        self._bound = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="stream", daemon=True)
        self._thread.start()
        self._bound.wait()
        if self._error is not None:
            self._thread.join()
            self._nudge.close(linger=0)
            raise self._error

    # ---------------------------------------------------------------- called by the OBS's threads

    def published(self, first: int, start: int, last: int, end: int) -> None:
        """The loop journaled records ``first .. last`` at bytes ``start .. end`` (safe to call
        from the loop thread only)."""
        with self._lock:
            if not self._index or first - self._index[-1][0] >= INDEX_EVERY:
                self._index.append((first, start))
            if not self.first:
                self.first, self.first_offset = first, start
            self.last, self.end = last, end
        if self.connected:
            try:
                self._nudge.send(b"", zmq.NOBLOCK)
            except zmq.Again:
                pass

    def floor(self) -> int | None:
        """The journal offset below which no registered consumer needs records (None: no
        consumer), leaving behind those more than ``max_lag_bytes`` behind the end (logged)."""
        with self._lock:
            floor = None
            for consumer in self.consumers.values():
                if self.end - consumer.acked_offset > self.max_lag_bytes:
                    if not consumer.left_behind:
                        consumer.left_behind = True
                        log.warning("consumer %s acknowledged only sequence %d, more than %d MB of journal ago: "
                                    "records it has not read may be discarded; it must resync", consumer.name,
                                    consumer.acked, self.max_lag_bytes >> 20)
                    continue
                floor = consumer.acked_offset if floor is None else min(floor, consumer.acked_offset)
            return floor

    def discarded(self, offset: int) -> None:
        """The journal before byte ``offset`` was discarded (from the snapshot writer)."""
        with self._lock:
            if offset <= self.first_offset or offset > self.end:
                return
            fd = os.open(self.path, os.O_RDONLY)
            try:
                _, _, sequence = HEADER.unpack(os.pread(fd, HEADER.size, offset))
            finally:
                os.close(fd)
            self.first, self.first_offset = sequence, offset
            self._index = [(sequence, offset)] + [point for point in self._index if point[1] > offset]

    def close(self) -> None:
        self._stopping.set()
        try:
            self._nudge.send(b"", zmq.NOBLOCK)
        except zmq.Again:
            pass
        self._thread.join()
        self._nudge.close(linger=0)

    # ---------------------------------------------------------------- the thread

    def _run(self) -> None:
        socket = None
        try:
            socket = self.context.socket(zmq.ROUTER)
            socket.setsockopt(zmq.LINGER, 0)
            socket.setsockopt(zmq.ROUTER_MANDATORY, 1)
            socket.setsockopt(zmq.SNDHWM, SEND_HWM)
            socket.setsockopt(zmq.MAXMSGSIZE, 1 << 16)
            socket.setsockopt(zmq.HANDSHAKE_IVL, security.HANDSHAKE_MS)
            if self.own is not None:
                security.serve_curve(socket, self.own, security.STREAM_DOMAIN)
            socket.bind(self.endpoint)
            nudges = self.context.socket(zmq.PULL)
            nudges.setsockopt(zmq.LINGER, 0)
            nudges.connect(self._nudge_endpoint)
        except BaseException as exc:
            self._error = exc
            if socket is not None:
                socket.close(linger=0)
            self._bound.set()
            return
        self._bound.set()
        requests = msgspec.msgpack.Decoder(list[StreamRequest])
        encode = msgspec.msgpack.Encoder().encode
        fd = os.open(self.path, os.O_RDONLY | os.O_CREAT, 0o644)
        poller = zmq.Poller()
        poller.register(socket, zmq.POLLIN)
        poller.register(nudges, zmq.POLLIN)
        try:
            while not self._stopping.is_set():
                ready = dict(poller.poll(POLL_MS))
                if nudges in ready:
                    while nudges.poll(0):
                        nudges.recv()
                if socket in ready:
                    self._serve(socket, requests, encode, fd)
                self._send(socket, encode, fd)
                self._save(force=False)
                self.connected = any(consumer.identity is not None for consumer in list(self.consumers.values()))
        finally:
            self._save(force=True)
            os.close(fd)
            socket.close(linger=0)
            nudges.close(linger=0)

    def _serve(self, socket: zmq.Socket, requests: msgspec.msgpack.Decoder, encode, fd: int) -> None:
        while True:
            try:
                identity, *frames = socket.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            try:
                if len(frames) != 1:
                    raise ValueError(f"{len(frames)} payload frames")
                messages = requests.decode(frames[0])
            except (ValueError, msgspec.ValidationError) as exc:
                self.malformed(exc)
                continue
            for message in messages:
                if type(message) is Subscribe:
                    _send(socket, identity, encode([self._subscribe(identity, message, fd)]))
                elif type(message) is Ack:
                    self._ack(identity, message)
                else:
                    self._release(identity, message)

    def _subscribe(self, identity: bytes, request: Subscribe, fd: int) -> Subscribed | SubscribeRefused:
        with self._lock:
            first, last = self.first, self.last
            consumer = self.consumers.get(request.consumer)
            if consumer is None and len(self.consumers) >= MAX_CONSUMERS:
                return SubscribeRefused(request.consumer, "too-many-consumers",
                                        f"this journal serves at most {MAX_CONSUMERS} consumers", first)
            if request.after > last:
                return SubscribeRefused(request.consumer, "ahead",
                                        f"sequence {request.after} is past the journal's last, {last}", first)
            if first and request.after + 1 < first:
                return SubscribeRefused(request.consumer, "discarded",
                                        f"the records before sequence {first} were discarded", first)
            start = self._locate(request.after + 1, fd)
            if consumer is None:
                consumer = self.consumers[request.consumer] = Consumer(request.consumer, request.after, start)
                self._dirty = True
            consumer.identity = identity
            consumer.next, consumer.offset = request.after + 1, start
            consumer.window = request.window
            consumer.chunks.clear()
            if request.after >= consumer.acked:
                consumer.acked, consumer.acked_offset = request.after, start
                consumer.left_behind = False
                self._dirty = True
            log.info("consumer %s subscribed after sequence %d", request.consumer, request.after)
            return Subscribed(request.consumer, first, last)

    def _ack(self, identity: bytes, ack: Ack) -> None:
        with self._lock:
            consumer = self.consumers.get(ack.consumer)
            if consumer is None or consumer.identity != identity or ack.sequence <= consumer.acked:
                return
            consumer.acked = acked = min(ack.sequence, consumer.next - 1)
            chunks = consumer.chunks
            while chunks and chunks[0][0] + len(chunks[0][1]) <= acked + 1:
                chunks.popleft()
            consumer.acked_offset = chunks[0][1][acked + 1 - chunks[0][0]] if chunks else consumer.offset
            self._dirty = True

    def _release(self, identity: bytes, release: Release) -> None:
        with self._lock:
            consumer = self.consumers.get(release.consumer)
            if consumer is None or consumer.identity != identity:
                return
            del self.consumers[release.consumer]
            self._dirty = True
        log.info("consumer %s released its subscription", release.consumer)

    def _locate(self, sequence: int, fd: int) -> int:
        """Where record ``sequence`` starts (the end of the file, if it is the next one)."""
        if sequence > self.last:
            return self.end
        position = bisect_right(self._index, (sequence, float("inf"))) - 1
        at, offset = self._index[position] if position >= 0 else (self.first, self.first_offset)
        while at < sequence:
            length, _, found = HEADER.unpack(os.pread(fd, HEADER.size, offset))
            if found != at:
                raise RuntimeError(f"journal {self.path}: record {found} at byte {offset}, {at} expected")
            offset += HEADER.size + length
            at += 1
        return offset

    def _send(self, socket: zmq.Socket, encode, fd: int) -> None:
        """Send each connected consumer the records it has credit for, a chunk at a time."""
        for consumer in list(self.consumers.values()):
            while consumer.identity is not None and consumer.next <= self.last:
                credit = consumer.acked + consumer.window - consumer.next + 1
                if credit <= 0:
                    break
                data, starts, end = _chunk(fd, consumer.offset, min(credit, MAX_WINDOW), self.end)
                last = consumer.next + len(starts) - 1
                error = _send(socket, consumer.identity, encode([Records(consumer.next, last, data)]))
                if error:
                    if error != zmq.EAGAIN:
                        consumer.identity = None
                    break
                with self._lock:
                    consumer.chunks.append((consumer.next, starts))
                    consumer.next, consumer.offset = last + 1, end

    def _save(self, force: bool) -> None:
        now = time.monotonic()
        if not self._dirty or (not force and now - self._saved_at < SAVE_EVERY_S):
            return
        with self._lock:
            state = {name: [c.acked, c.acked_offset] for name, c in self.consumers.items()}
            self._dirty = False
        self._saved_at = now
        try:
            write_atomically(self.directory / CONSUMERS_FILE, json.dumps(state, sort_keys=True).encode())
        except OSError as exc:
            log.error("cannot save the consumers' positions in %s: %s", self.directory, exc)


def _chunk(fd: int, offset: int, most: int, end: int) -> tuple[bytes, array, int]:
    """The records from byte ``offset``, at most ``most`` of them and about CHUNK_BYTES (one
    larger record alone), none past ``end``: their bytes, where each starts, where they end."""
    data = os.pread(fd, min(CHUNK_BYTES, end - offset), offset)
    position, starts = 0, array("q")
    while len(starts) < most and position + HEADER.size <= len(data):
        length = HEADER.unpack_from(data, position)[0]
        if position + HEADER.size + length > len(data):
            break
        starts.append(offset + position)
        position += HEADER.size + length
    if not starts:
        length = HEADER.unpack(os.pread(fd, HEADER.size, offset))[0]
        data = os.pread(fd, HEADER.size + length, offset)
        position = len(data)
        starts.append(offset)
    return data[:position], starts, offset + position


def _send(socket: zmq.Socket, identity: bytes, payload: bytes) -> int:
    """0 if sent, else the error: EAGAIN (the peer's queue is full) or another (it is gone)."""
    try:
        socket.send_multipart((identity, payload), zmq.NOBLOCK)
    except zmq.ZMQError as exc:
        return exc.errno
    return 0


def _load(directory: Path) -> dict[str, tuple[int, int]]:
    """The registered consumers' (acknowledged sequence, retention offset), from the consumers file."""
    path = directory / CONSUMERS_FILE
    try:
        state = json.loads(path.read_bytes())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise RecoveryError(f"{path} is damaged ({exc}): delete it to forget the consumers' positions "
                            "(they then resubscribe from what they hold)") from None
    return {name: (int(acked), int(offset)) for name, (acked, offset) in state.items()}


# ================================================================ the consumer's side


class StreamError(Exception):
    """The stream broke its guarantees (a gap, a damaged record) or refused the subscription."""


class JournalStream:
    """One consumer's subscription to one shard's journal stream.

    `receive` returns the shard's `JournalEntry`s in sequence order, each once, checked
    (CRC, consecutive sequences); `ack` says what is committed (and grants the OBS credit).
    When the connection is made again (the OBS restarted), the subscription is renewed
    after the last entry returned, so nothing is missed or returned twice. Not thread-safe:
    a ZeroMQ socket belongs to one thread.
    """

    def __init__(self, endpoint: str, consumer: str, curve: tuple[security.KeyPair, bytes] | None = None,
                 window: int = 50_000, context: zmq.Context | None = None) -> None:
        self.endpoint = endpoint
        self.consumer = consumer
        self.window = window
        self.last = 0
        """The sequence of the last entry returned."""
        self._codec = msgspec.msgpack.Encoder()
        self._replies = msgspec.msgpack.Decoder(list[StreamReply])
        self.subscribed = False
        self.socket = (context or zmq.Context.instance()).socket(zmq.DEALER)
        self.socket.setsockopt(zmq.LINGER, 0)
        if curve is not None:
            security.connect_curve(self.socket, *curve)
        self._monitor = self.socket.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED)
        self._connections = 0
        self.socket.connect(endpoint)

    def request(self, after: int) -> None:
        """Ask for the records after sequence ``after`` without waiting for the answer: `receive`
        returns them, and raises `StreamError` if the subscription is refused."""
        self.last = after
        self.socket.send(self._codec.encode([Subscribe(self.consumer, after, self.window)]))

    def release(self) -> None:
        """End the subscription and have the OBS forget this consumer (it holds no journal back)."""
        self.socket.send(self._codec.encode([Release(self.consumer)]))
        self.subscribed = False

    def subscribe(self, after: int, timeout: float = 10.0) -> Subscribed:
        """Ask for the records after sequence ``after``; `StreamError` if refused or unanswered."""
        self.last = after
        self.socket.send(self._codec.encode([Subscribe(self.consumer, after, self.window)]))
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            if not self.socket.poll(int(left * 1000) + 1):
                break
            for reply in self._replies.decode(self.socket.recv()):
                if type(reply) is Subscribed:
                    self.subscribed = True
                    self._count_connections()
                    return reply
                if type(reply) is SubscribeRefused:
                    raise self._refusal(reply)
        raise StreamError(f"no answer from {self.endpoint} to the subscription within {timeout:g} s")

    def receive(self, timeout: float = 0.0) -> list[JournalEntry]:
        """The entries that arrived (waiting up to ``timeout`` for the first), oldest first."""
        if self.subscribed and self._count_connections():
            log.info("%s reconnected: subscribing again after sequence %d", self.endpoint, self.last)
            self.socket.send(self._codec.encode([Subscribe(self.consumer, self.last, self.window)]))
        entries: list[JournalEntry] = []
        wait = int(timeout * 1000)
        while self.socket.poll(wait):
            wait = 0
            for reply in self._replies.decode(self.socket.recv()):
                if type(reply) is Records:
                    entries.extend(self._entries(reply))
                elif type(reply) is Subscribed:
                    self.subscribed = True
                    self._count_connections()
                else:
                    raise self._refusal(reply)
        return entries

    def ack(self, sequence: int) -> None:
        """Everything through ``sequence`` is committed downstream."""
        self.socket.send(self._codec.encode([Ack(self.consumer, sequence)]))

    def close(self) -> None:
        self.socket.disable_monitor()
        self._monitor.close(linger=0)
        self.socket.close(linger=0)

    def _refusal(self, reply: SubscribeRefused) -> StreamError:
        return StreamError(f"{self.endpoint} refused {self.consumer!r}: {reply.text} ({reply.reason}; "
                           f"the journal now starts at sequence {reply.first})")

    def _count_connections(self) -> bool:
        """Count the handshakes since the last call; whether one was a new connection after the first."""
        before = self._connections
        while self._monitor.poll(0):
            self._monitor.recv_multipart()
            self._connections += 1
        return before > 0 and self._connections > before

    def _entries(self, records: Records) -> list[JournalEntry]:
        """The entries of ``records`` not returned yet (a renewed subscription may repeat some)."""
        if records.first > self.last + 1:
            raise StreamError(f"records {records.first}..{records.last} arrived after {self.last}: a gap")
        data, position, out = records.data, 0, []
        while position < len(data):
            length, crc, sequence = HEADER.unpack_from(data, position)
            if sequence <= self.last:
                position += HEADER.size + length
                continue
            payload = data[position + HEADER.size : position + HEADER.size + length]
            if sequence != self.last + 1 or len(payload) != length or \
                    zlib.crc32(payload, zlib.crc32(data[position + 8 : position + HEADER.size])) != crc:
                raise StreamError(f"damaged or out-of-order record after sequence {self.last} from {self.endpoint}")
            entry = decode_entry(payload)
            if type(entry) is not JournalEntry:
                entry = JournalEntry(sequence, 0, entry, [], [])
            out.append(entry)
            self.last = sequence
            position += HEADER.size + length
        if self.last < records.last:
            raise StreamError(f"records said {records.first}..{records.last}, held up to {self.last}")
        return out
