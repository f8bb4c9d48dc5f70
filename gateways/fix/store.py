"""What a FIX session keeps on disk: its sequence numbers, the messages it sent, its orders.

One directory per CompID pair (``fix.data_dir/SENDER-TARGET``), three files:

``state``
    Two slots of ``magic, generation, next sender seq, next target seq, last TES report, crc32``,
    written alternately with ``pwrite`` (the newer valid slot wins at load), so a write torn
    by a crash leaves the previous state.
``messages``
    Every message sent, as ``length, seq`` and the frame, appended in sequence order: a
    ResendRequest is answered from it. A torn last record (a crash mid-write) is cut off at
    load. A Logon with ResetSeqNumFlag=Y starts it afresh.
``orders``
    The session's order entry records, so that after a restart the gateway still knows which
    ClOrdID each exchange order and each TES client order id belongs to
    (`gateways.fix.application`): one length-prefixed msgpack array of records per `flush`. A
    torn last array (a crash mid-write) is cut off at load. Compacted at load once it holds many
    finished orders.

Writes are buffered during a loop turn and written by `flush` (messages and orders first,
then the state), before anything of that turn leaves the gateway: to the TES or to the FIX
peer. A turn costs at most three writes (one per file), however many messages it sent: at
20,000 orders/s a turn holds tens of orders. They reach the kernel's page cache at once (a
``kill -9`` loses nothing); ``fix.fsync`` also forces them to the disk (a power loss loses
nothing), once per turn and file: the messages and orders before the state that counts them.
"""

import os
import struct
import zlib
from array import array
from pathlib import Path

import msgspec

from servers.journal import write_atomically

MAGIC = b"FIXSTAT1"
SLOT = struct.Struct("<8sQQQQI")
"""magic, generation, next sender seq, next target seq, last report, crc32 of what precedes it."""
RECORD = struct.Struct("<IQ")
"""A sent message: frame length, its MsgSeqNum."""
ORDER_RECORD = struct.Struct("<I")


class StoreDamaged(OSError):
    """A store the gateway cannot read (both state slots damaged): it refuses to start."""


class StoreUnwritable(RuntimeError):
    """A store write or fsync failed (a full disk, an I/O error): the gateway stops, nothing of the
    turn having left it. What the failed write appended is cut back off, and the store writes
    nothing more (its state slots still count what was written before): a restart loads it as
    after a crash."""


class SequenceStore:
    """The sequence numbers, sent messages and order records of one FIX session."""

    def __init__(self, directory: Path, fsync: bool = False) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.fsync = fsync
        self.next_out = 1
        """The MsgSeqNum of the next message the gateway sends."""
        self.next_in = 1
        """The MsgSeqNum the gateway expects next from the peer."""
        self.last_report = 0
        """The number of the last TES report turned into a FIX message (a logon asks for the ones after it)."""
        self._generation = 0
        self._state_fd = os.open(directory / "state", os.O_RDWR | os.O_CREAT, 0o600)
        self._messages_fd = os.open(directory / "messages", os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
        self._orders_fd = os.open(directory / "orders", os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
        self._first_seq = 1
        self._offsets = array("q")
        """Offset in ``messages`` of the record of seq ``_first_seq + i``."""
        self._size = 0
        self._pending_messages: list[bytes] = []
        self._pending_bytes = 0
        self._pending_orders: list[list] = []
        self._dirty = False
        self.unwritable: StoreUnwritable | None = None
        """Why a write failed (None: none has); `flush` then writes nothing."""
        self.order_records: list[list] = []
        """The order records read at load (`gateways.fix.application` replays them)."""
        self._load()

    # ------------------------------------------------------------ load

    def _load(self) -> None:
        state = os.pread(self._state_fd, 2 * SLOT.size, 0)
        slots = []
        for index in range(2):
            chunk = state[index * SLOT.size:(index + 1) * SLOT.size]
            if len(chunk) < SLOT.size:
                continue
            magic, generation, next_out, next_in, last_report, crc = SLOT.unpack(chunk)
            if magic == MAGIC and zlib.crc32(chunk[:-4]) == crc:
                slots.append((generation, next_out, next_in, last_report))
        if state.strip(b"\x00") and not slots:
            raise StoreDamaged(f"the FIX session state {self.directory / 'state'} is damaged (both copies): "
                               "move the directory away to start the session afresh (sequence numbers 1)")
        if slots:
            self._generation, self.next_out, self.next_in, self.last_report = max(slots)
        self._load_messages()
        self._load_orders()

    def _load_messages(self) -> None:
        data = _read_all(self._messages_fd)
        offset, last_seq = 0, 0
        while offset + RECORD.size <= len(data):
            length, seq = RECORD.unpack_from(data, offset)
            end = offset + RECORD.size + length
            if end > len(data) or (last_seq and seq != last_seq + 1):
                break
            if not last_seq:
                self._first_seq = seq
            self._offsets.append(offset)
            last_seq = seq
            offset = end
        if offset < len(data):
            os.ftruncate(self._messages_fd, offset)
        self._size = offset
        if last_seq >= self.next_out:  # messages written, the state not yet: the messages say
            self.next_out = last_seq + 1

    def _load_orders(self) -> None:
        data = _read_all(self._orders_fd)
        offset = 0
        decoder = msgspec.msgpack.Decoder(list)
        while offset + ORDER_RECORD.size <= len(data):
            (length,) = ORDER_RECORD.unpack_from(data, offset)
            end = offset + ORDER_RECORD.size + length
            if end > len(data):
                break
            try:
                records = decoder.decode(data[offset + ORDER_RECORD.size:end])
            except msgspec.DecodeError:
                break
            if records and isinstance(records[0], str):  # one record alone: a store written before the arrays
                self.order_records.append(records)
            else:
                self.order_records.extend(records)
            offset = end
        if offset < len(data):
            os.ftruncate(self._orders_fd, offset)

    def rewrite_orders(self, records: list[list]) -> None:
        """Replace the order records with ``records`` (a compaction), atomically; `StoreUnwritable`,
        the records left as they were, if the new file cannot be written."""
        path = self.directory / "orders"
        try:
            write_atomically(path, _order_frame(records))
        except OSError as exc:
            raise self._unwritable(exc) from None
        os.close(self._orders_fd)
        self._orders_fd = os.open(path, os.O_RDWR | os.O_APPEND)

    # ------------------------------------------------------------ changes

    def sent(self, seq: int, frame: bytes) -> None:
        """Keep a message sent with MsgSeqNum ``seq`` (the next one: `next_out` moves past it)."""
        offsets = self._offsets
        if seq != self._first_seq + len(offsets):
            if offsets:
                raise ValueError(f"message {seq} is not the next to store ({self._first_seq + len(offsets)})")
            self._first_seq = seq
        offsets.append(self._size + self._pending_bytes)
        self._pending_messages += (RECORD.pack(len(frame), seq), frame)
        self._pending_bytes += RECORD.size + len(frame)
        self.next_out = seq + 1
        self._dirty = True

    def received(self, seq: int) -> None:
        """The peer's message ``seq`` was handled: expect the one after it."""
        self.next_in = seq + 1
        self._dirty = True

    def set_next_in(self, seq: int) -> None:
        self.next_in = seq
        self._dirty = True

    def set_last_report(self, number: int) -> None:
        if number > self.last_report:
            self.last_report = number
            self._dirty = True

    def add_order_record(self, record: list) -> None:
        self._pending_orders.append(record)

    def reset(self) -> None:
        """Sequence numbers back to 1 and no sent messages (a Logon with ResetSeqNumFlag=Y)."""
        self.flush()
        os.ftruncate(self._messages_fd, 0)
        self._offsets = array("q")
        self._first_seq = 1
        self._size = 0
        self.next_out = self.next_in = 1
        self._dirty = True
        self.flush()

    @property
    def dirty(self) -> bool:
        return self._dirty or bool(self._pending_orders)

    def flush(self) -> None:
        """Write what changed: the sent messages and order records, then the state. `StoreUnwritable`
        if a write or an fsync fails, and every call after it (nothing more is written)."""
        if self.unwritable is not None:
            raise self.unwritable
        try:
            self._flush()
        except OSError as exc:
            raise self._unwritable(exc) from None

    def _unwritable(self, error: OSError) -> StoreUnwritable:
        """Note that a write failed with ``error``: the store writes nothing more. What to raise."""
        self.unwritable = StoreUnwritable(f"cannot write the session store {self.directory}: {error.strerror or error}")
        return self.unwritable

    def _flush(self) -> None:
        if self._pending_messages:
            data = b"".join(self._pending_messages)
            _append(self._messages_fd, data, self._size)
            self._size += len(data)
            self._pending_messages.clear()
            self._pending_bytes = 0
        if self._pending_orders:
            _append(self._orders_fd, _order_frame(self._pending_orders), os.fstat(self._orders_fd).st_size)
            self._pending_orders.clear()
            if self.fsync:
                os.fsync(self._orders_fd)
        if not self._dirty:
            return
        if self.fsync:
            os.fsync(self._messages_fd)
        self._generation += 1
        body = SLOT.pack(MAGIC, self._generation, self.next_out, self.next_in, self.last_report, 0)[:-4]
        os.pwrite(self._state_fd, body + struct.pack("<I", zlib.crc32(body)), (self._generation % 2) * SLOT.size)
        if self.fsync:
            os.fsync(self._state_fd)
        self._dirty = False

    # ------------------------------------------------------------ reading

    def stored(self, begin: int, end: int) -> list[tuple[int, bytes]]:
        """The sent messages with ``begin <= seq <= end`` that the store holds, in order (flushed first)."""
        self.flush()
        first = max(begin, self._first_seq)
        last = min(end, self._first_seq + len(self._offsets) - 1)
        found = []
        for seq in range(first, last + 1):
            offset = self._offsets[seq - self._first_seq]
            header = os.pread(self._messages_fd, RECORD.size, offset)
            length, stored_seq = RECORD.unpack(header)
            found.append((stored_seq, os.pread(self._messages_fd, length, offset + RECORD.size)))
        return found

    def close(self) -> None:
        for fd in (self._state_fd, self._messages_fd, self._orders_fd):
            try:
                os.close(fd)
            except OSError:
                pass


def _order_frame(records: list[list]) -> bytes:
    data = msgspec.msgpack.encode(records)
    return ORDER_RECORD.pack(len(data)) + data


def _read_all(fd: int) -> bytes:
    size = os.fstat(fd).st_size
    chunks, offset = [], 0
    while offset < size:
        chunk = os.pread(fd, size - offset, offset)
        if not chunk:
            break
        chunks.append(chunk)
        offset += len(chunk)
    return b"".join(chunks)


def _append(fd: int, data: bytes, size: int) -> None:
    """Append ``data`` to the file ``fd`` (opened to append), ``size`` bytes long, whole or not at
    all: a write that fails is cut back off (OSError raised)."""
    view = memoryview(data)
    try:
        while view:
            written = os.write(fd, view)
            view = view[written:]
    except OSError:
        try:
            os.ftruncate(fd, size)
        except OSError:
            pass
        raise
