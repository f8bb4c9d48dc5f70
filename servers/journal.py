"""The OBS command journal and the shard snapshots, in the shard's ``journal_dir``.

Journal file ``commands.log``
-----------------------------
Append-only; one record per sequenced command, little-endian::

    offset  size  field
    0       4     payload length n, u32 (1 .. MAX_RECORD_BYTES)
    4       4     crc32 of bytes 8 .. 16+n (the sequence and the payload)
    8       8     sequence, u64
    16      n     payload: the msgpack bytes of the one command

Invariants
- Sequences are consecutive: the file's first record is sequence 1 (its bytes may
  since have been discarded, below) and every record is its predecessor's + 1.
- A group of records (`Journal.append`) reaches the file in one write before
  the caller releases any of their results (journal before acknowledging); it
  is fsynced at once ("batch"), by a background thread at most
  ``fsync_interval_ms`` later ("interval", the loop never waits for it) or only
  by `Journal.flush` ("never"). Records that were written survive a crash of the
  process under every policy; the policy decides what survives a crash of the
  machine.
- Reading stops at the first truncated, corrupt or out-of-sequence record (what
  a crash mid-write leaves behind); opening a `Journal` truncates the file there,
  so new records always follow the last good one.

Discarding ``discarded-before``
-------------------------------
Once a snapshot is written, the records before the oldest kept snapshot's offset
are never read again: `Journal.discard_before` frees their disk blocks (a hole
punched in the file: its size and every offset stay the same), after recording
that offset in ``discarded-before``, written atomically. Recovery then needs a
readable snapshot at or after that offset, and refuses to start without one
instead of replaying from the freed (zero) bytes and cutting the journal off.
So a long run keeps at most about two snapshot intervals of journal on disk.

Snapshots ``snapshot-<sequence>.msgpack``
-----------------------------------------
A `ShardSnapshot`: the sequence, the journal byte offset where record
``sequence + 1`` starts, and per symbol its `BookSnapshot`, market-data sequence
and last trade price. The journal is made durable up to that offset before the
snapshot is written (`Journal.sync_to`), so a snapshot never points past durable
journal bytes. Each is written to a temporary name, fsynced, renamed and the
directory fsynced, so a snapshot file is either complete or absent; the newest
`KEEP_SNAPSHOTS` are kept.
"""

import ctypes
import errno
import logging
import os
import re
import struct
import threading
import time
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import NamedTuple

import msgspec

from config.settings import JournalConfig
from engine.snapshot import BookSnapshot

log = logging.getLogger(__name__)

JOURNAL_FILE = "commands.log"
DISCARDED_FILE = "discarded-before"
HEADER = struct.Struct("<IIQ")
_SEQUENCE = struct.Struct("<Q")
"""The header's last field: the CRC covers it and the payload."""
MAX_RECORD_BYTES = 1 << 20
"""A header announcing a larger payload is corrupt (no command is this big)."""
KEEP_SNAPSHOTS = 2
SNAPSHOT_NAME = re.compile(r"^snapshot-(\d+)\.msgpack$")
TEMPORARY_SUFFIX = ".tmp"

_sync = getattr(os, "fdatasync", os.fsync)
_libc = ctypes.CDLL(None, use_errno=True)
_PUNCH_HOLE = 0x02 | 0x01
"""FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE (linux/falloc.h)."""


class Record(NamedTuple):
    sequence: int
    payload: bytes
    end: int
    """The byte offset just after this record (where the next one starts)."""


class Journal:
    """The open journal file of one shard, appended to in groups.

    Parameters
    ----------
    directory
        The shard's journal directory (created if missing).
    config
        The fsync policy.
    end
        The byte offset just after the last good record (from `read_records`);
        anything after it is cut off before the first append.
    """

    def __init__(self, directory: Path, config: JournalConfig, end: int) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.path = directory / JOURNAL_FILE
        self.discarded = read_discarded(directory)
        """Byte offset before which the records were discarded (0: none)."""
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        if os.fstat(self._fd).st_size != end:
            os.ftruncate(self._fd, end)
            _sync(self._fd)
        self.offset = end
        """Bytes of good records in the file: where the next record starts."""
        self._policy = config.fsync
        self._interval = config.fsync_interval_ms / 1000
        self._synced_at = float("-inf")
        self._synced_offset = 0
        """Every byte before it was fsynced by this process (possibly more: a stale lower
        value, from two threads racing to set it, only costs an extra fsync)."""
        self._encoder = msgspec.msgpack.Encoder()
        self._buffer = bytearray()
        self._can_punch = True
        self._written = threading.Event()
        self._closing = threading.Event()
        self._syncer: threading.Thread | None = None
        if self._policy == "interval":
            self._syncer = threading.Thread(target=self._sync_at_intervals, name="journal-fsync", daemon=True)
            self._syncer.start()

    def append(self, records: Sequence[tuple[int, msgspec.Struct]]) -> None:
        """Write a group of ``(sequence, command)`` records with one write, then fsync per policy."""
        buffer = self._buffer
        buffer.clear()
        encode, pack, pack_sequence, crc32 = self._encoder.encode, HEADER.pack, _SEQUENCE.pack, zlib.crc32
        for sequence, command in records:
            payload = encode(command)
            buffer += pack(len(payload), crc32(payload, crc32(pack_sequence(sequence))), sequence)
            buffer += payload
        written = os.write(self._fd, buffer)
        while written < len(buffer):
            written += os.write(self._fd, buffer[written:])
        self.offset += written
        if self._policy == "batch":
            self._fsync()
        elif self._policy == "interval":
            self._written.set()

    def _sync_at_intervals(self) -> None:
        """The "interval" policy's thread: fsync what was written, at once after a quiet
        spell, else `fsync_interval_ms` after the previous fsync. The appending loop never
        waits for it."""
        while True:
            self._written.wait()
            delay = self._synced_at + self._interval - time.monotonic()
            if self._closing.is_set() or (delay > 0 and self._closing.wait(delay)):
                return
            self._written.clear()
            self._fsync()

    def flush(self) -> None:
        """Make every appended record durable now (records are written at append; this fsyncs)."""
        self.sync_to(self.offset)

    def sync_to(self, offset: int) -> None:
        """Make the records before byte ``offset`` durable (safe from another thread)."""
        if offset > self._synced_offset:
            self._fsync()

    def discard_before(self, offset: int) -> None:
        """Free the disk blocks of the records before byte ``offset``, which a durable
        snapshot at or after it makes unnecessary. Safe from another thread than the one
        appending. The offset is recorded first, so a crash in between leaves records
        that recovery will not use, never freed records it would. Where the file system
        cannot punch holes, nothing is discarded (logged once) and the record is undone."""
        if offset <= self.discarded or not self._can_punch:
            return
        _write_atomically(self.directory / DISCARDED_FILE, f"{offset}\n".encode())
        if _punch_hole(self._fd, offset):
            self.discarded = offset
            return
        self._can_punch = False
        _write_atomically(self.directory / DISCARDED_FILE, f"{self.discarded}\n".encode())
        log.warning("%s: the file system cannot free discarded journal blocks; the journal keeps growing", self.path)

    def close(self) -> None:
        """Stop the interval thread, fsync what is not yet durable, close the file."""
        if self._syncer is not None:
            self._closing.set()
            self._written.set()
            self._syncer.join()
            self._syncer = None
        if self._fd >= 0:
            self.flush()
            os.close(self._fd)
            self._fd = -1

    def _fsync(self) -> None:
        """fsync the file (from the loop, the interval thread or the snapshot writer)."""
        target = self.offset
        _sync(self._fd)
        self._synced_at = time.monotonic()
        self._synced_offset = max(self._synced_offset, target)


def read_records(directory: Path, offset: int = 0, sequence: int = 0) -> Iterator[Record]:
    """The journal's records from byte ``offset``, whose predecessor had ``sequence``.

    Stops silently at the end of the file or at the first truncated, corrupt or
    out-of-sequence record; the last yielded ``end`` is where good data ends.
    """
    try:
        file = open(directory / JOURNAL_FILE, "rb")
    except FileNotFoundError:
        return
    with file:
        file.seek(offset)
        while True:
            header = file.read(HEADER.size)
            if len(header) < HEADER.size:
                return
            length, crc, record_sequence = HEADER.unpack(header)
            if not 0 < length <= MAX_RECORD_BYTES or record_sequence != sequence + 1:
                return
            payload = file.read(length)
            if len(payload) < length or zlib.crc32(payload, zlib.crc32(header[8:])) != crc:
                return
            offset += HEADER.size + length
            sequence = record_sequence
            yield Record(sequence, payload, offset)


# ================================================================ snapshots


class SymbolSnapshot(msgspec.Struct, frozen=True):
    book: BookSnapshot
    market_data_sequence: int
    last_price: int | None


class ShardSnapshot(msgspec.Struct, frozen=True):
    """A shard's whole state after command ``sequence``; its journal continues at ``journal_offset``."""

    sequence: int
    journal_offset: int
    symbols: dict[str, SymbolSnapshot]


_snapshot_decoder = msgspec.msgpack.Decoder(ShardSnapshot)


def write_snapshot(directory: Path, snapshot: ShardSnapshot) -> Path:
    """Write ``snapshot`` atomically and durably; delete all but the newest `KEEP_SNAPSHOTS`."""
    path = directory / f"snapshot-{snapshot.sequence}.msgpack"
    _write_atomically(path, msgspec.msgpack.encode(snapshot))
    for old in _snapshot_paths(directory)[KEEP_SNAPSHOTS:]:
        old.unlink()
    return path


def _punch_hole(fd: int, length: int) -> bool:
    """Free the blocks of the file's first ``length`` bytes (they read as zeros, the size
    stays); False if the file system cannot."""
    if _libc.fallocate(fd, _PUNCH_HOLE, ctypes.c_long(0), ctypes.c_long(length)) == 0:
        return True
    error = ctypes.get_errno()
    if error in (errno.EOPNOTSUPP, errno.ENOSYS):
        return False
    raise OSError(error, os.strerror(error))


def read_discarded(directory: Path) -> int:
    """The offset `Journal.discard_before` recorded (0 if it never ran)."""
    try:
        return int((directory / DISCARDED_FILE).read_text())
    except FileNotFoundError:
        return 0


def _write_atomically(path: Path, data: bytes) -> None:
    """``path`` holds ``data`` or what it held before, even after a crash; durable on return."""
    temporary = path.with_name(path.name + TEMPORARY_SUFFIX)
    with open(temporary, "wb") as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())
    os.replace(temporary, path)
    _sync_directory(path.parent)


def read_snapshots(directory: Path) -> Iterator[ShardSnapshot]:
    """The readable snapshots, newest first (unreadable ones are logged and skipped).

    Also removes temporary files a crash left behind mid-write.
    """
    for leftover in directory.glob(f"*{TEMPORARY_SUFFIX}"):
        leftover.unlink()
    for path in _snapshot_paths(directory):
        try:
            snapshot = _snapshot_decoder.decode(path.read_bytes())
        except (OSError, msgspec.DecodeError) as exc:
            log.warning("skipping unreadable snapshot %s: %s", path, exc)
            continue
        if f"snapshot-{snapshot.sequence}.msgpack" != path.name:
            log.warning("skipping snapshot %s: it holds sequence %d", path, snapshot.sequence)
            continue
        yield snapshot


def _snapshot_paths(directory: Path) -> list[Path]:
    """Snapshot files, newest (highest sequence) first."""
    found = []
    for path in directory.glob("snapshot-*.msgpack"):
        match = SNAPSHOT_NAME.match(path.name)
        if match:
            found.append((int(match.group(1)), path))
    return [path for _, path in sorted(found, reverse=True)]


def _sync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
