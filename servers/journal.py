"""The OBS command journal and the shard snapshots, in the shard's ``journal_dir``.

Journal file ``commands.log``
-----------------------------
Append-only; one record per sequenced command, little-endian::

    offset  size  field
    0       4     payload length n, u32 (1 .. MAX_RECORD_BYTES)
    4       4     crc32 of bytes 8 .. 16+n (the sequence and the payload)
    8       8     sequence, u64
    16      n     payload: a msgpack `servers.protocol.JournalEntry`: the command with its
                  exchange time, the book's events and the market data it published
                  (journals written before entries hold the bare command: `servers.shard.decode_entry`)

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
- Records are written into **room written ahead**: zeros the journal writes past its last
  record, `ROOM_BYTES` at a time (in pieces of `ROOM_PIECE_BYTES`, which keep each record's
  write cheap: see there), and overwrites in place. An fdatasync then has data to flush and
  no file size to commit, which on ext4 spares it a metadata journal commit (one
  fdatasync alone here: 0.24-0.34 ms appending, 0.18 ms in place). A zero length is no
  record's, so the room ends the records like the end of the file; `Journal.close` cuts it
  off, and a journal opened after a crash keeps the room it finds (`Journal`). On a file
  system short of space (`ROOM_FREE_BYTES`), or where the room cannot be written, records
  are written past the end of the file.
- A write that fails (a full file system) leaves no partial record: the file is
  cut back to where the group began, the group is reported unwritten and the
  journal refuses groups without touching the disk until `RETRY_WRITE_S` have
  passed. A failed fsync is never retried (after one, the page cache's state is
  unknown: PostgreSQL's "fsyncgate"): `JournalFailed`, and the process must stop.

Reading, torn tails and damage
------------------------------
`read_records` reads good records until the end of the file or a bad one (cut
short, a length out of range, a CRC mismatch, out of sequence, or a CRC-valid
payload that does not decode). What follows a bad record decides:

- no valid record starts anywhere after it (`next_valid_record`: a length in
  range, a later sequence, a payload that fits and a matching CRC): a **torn
  tail**, what a crash in the middle of a write leaves. Opening a `Journal` at
  the end of the good records moves those bytes to ``commands.log.torn-<offset>``
  and cuts the file there (logged), so new records follow the last good one;
- a valid record follows, or the bad record is itself CRC-valid (no torn write
  makes one): **damage**. `JournalDamaged` is raised, nothing is changed, and the
  operator restores a backup or cuts the journal at the damage (``python main.py
  journal cut``, `move_tail`), giving up the records after it.

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
A `ShardSnapshot` (the sequence, the journal byte offset where record
``sequence + 1`` starts, and per symbol its `BookSnapshot`, market-data sequence
and last trade price) in msgpack, after a header, little-endian::

    offset  size  field
    0       4     magic b"OBSS"
    4       4     format version, u32 (SNAPSHOT_VERSION)
    8       8     payload length, u64
    16      4     crc32 of the payload
    20      n     payload

Format versions: 5 (written) adds to each symbol its `servers.phases.PhaseState` (the last
phase command's reason and time, a volatility interruption's end, the previous close, an
interruption owed; version 4 files read with none of these: no phase command yet); 4 adds
to each book the state of the advanced orders and phases (`engine.snapshot`: resting
orders' details, held stops, waiting auction market orders, the phase, the logical clock,
the last trade price); 3 holds each book's accepted ids by the words of 64 ids they fill,
runs of full words as ranges, others as masks or lone ids; 2 held them as ranges of
consecutive ids (16 bytes per run, however short); 1 listed every id (8 bytes each). Files
of versions 1 to 4 are still read, those of 1 to 3 converted on reading (their books had none of the
advanced state but the last trade price, which is the symbol's), so an upgrade finds its
snapshots readable (an OBS whose journal before them was discarded could not start
otherwise).

A file whose header, length or CRC does not match, or whose payload does not
decode, is skipped with a warning (`read_snapshots`): recovery falls back to an
older snapshot or the journal. The journal is made durable up to a snapshot's
offset before the snapshot is written (`Journal.sync_to`), so a snapshot never
points past durable journal bytes. Each is written to a temporary name, fsynced,
renamed and the directory fsynced, so a snapshot file is either complete or
absent; the newest `KEEP_SNAPSHOTS` are kept.

One process per directory
-------------------------
A journal directory belongs to one process: `Journal` takes its `DirectoryLock` (an
exclusive ``flock`` of the directory) before it changes anything there, unless its caller
took it before reading the directory, and keeps it until `Journal.close`. A second process
gets `DirectoryInUse`, naming the holder's pid, instead of appending to a live journal. The
kernel drops the lock with its process, even after ``kill -9``, so nothing left behind ever
blocks a restart.
"""

import contextlib
import ctypes
import errno
import fcntl
import logging
import os
import re
import shutil
import struct
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import NamedTuple

import msgspec
import numpy as np

from config.settings import JournalConfig
from engine.snapshot import BookSnapshot, id_records, id_records_of_ranges
from native.framing import Records
from native.syncer import Syncer
from servers.phases import PhaseState

log = logging.getLogger(__name__)

JOURNAL_FILE = "commands.log"
DISCARDED_FILE = "discarded-before"
HEADER = struct.Struct("<IIQ")
"""A record's header: its payload's length, the CRC-32 of the sequence's 8 bytes (the header's
last field) and the payload, the sequence. `native.framing.Records` writes it."""
MAX_RECORD_BYTES = 1 << 30
"""A header announcing a larger payload is corrupt (a command sweeping a million resting orders
makes an entry of about 100 MB)."""
MAX_SEQUENCE = 1 << 40
"""No journal holds more records (at 17 bytes or more each, that is 17 TiB): a larger
sequence field is not a record's, which spares the search after damage most CRCs."""
RETRY_WRITE_S = 1.0
"""After a failed write, appends are refused without touching the disk for this long."""
ROOM_BYTES = 1 << 20
"""The journal writes this many zeros past its last record at a time (more for a larger group)."""
ROOM_PIECE_BYTES = 1 << 16
"""The room is written in pieces of at most this many bytes, each within one aligned block of this
size: the page cache holds what one write makes in folios as large as the write, and each later
small write into a folio walks all of it on ext4 (one record of 120 bytes into room written 1 MiB
at a time cost 2.7 µs of CPU on the AMD EPYC host's kernel 6.18, 4 MiB at a time 5.3 µs, 64 KiB
or less at a time 1.2-1.3 µs)."""
ROOM_FREE_BYTES = 64 * ROOM_BYTES
"""No room is written on a file system with less free space than this: the last of it is left
to the records themselves and to the snapshots."""
_ZEROS = memoryview(bytes(ROOM_PIECE_BYTES))
"""A piece of the room's zeros, sliced without copying them."""
SCAN_BYTES = 1 << 20
"""Bytes read at a time when looking for a valid record after a bad one (bounds its memory)."""
DISCARD_PIECE_BYTES = 1 << 22
"""`Journal.discard_before` frees at most this much at a time (so 400 MB/s at most: several times
what a journal grows by at 100,000 commands/s)."""
PACED_PIECE_BYTES = 1 << 20
"""A paced write (`write_atomically`, a snapshot's) makes this much durable at a time."""
PIECE_PAUSE_S = 0.01
"""The pause between two pieces of a discard or of a paced write, which lets the loop's fsyncs in."""
KEEP_SNAPSHOTS = 2
SNAPSHOT_NAME = re.compile(r"^snapshot-(\d+)\.msgpack$")
SNAPSHOT_HEADER = struct.Struct("<4sIQI")
SNAPSHOT_MAGIC = b"OBSS"
SNAPSHOT_VERSION = 5
TEMPORARY_SUFFIX = ".tmp"

_sync = getattr(os, "fdatasync", os.fsync)
_libc = ctypes.CDLL(None, use_errno=True)
_PUNCH_HOLE = 0x02 | 0x01
"""FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE (linux/falloc.h)."""


class DirectoryInUse(OSError):
    """Another process holds a data directory's `DirectoryLock`: this one refuses to start.
    (An `OSError`, so every server role already maps it to exit status 1.)"""

    def __init__(self, what: str, directory: Path, pid: int | None) -> None:
        holder = "another process" if pid is None else f"process {pid}"
        super().__init__(f"{what} {directory} is in use by {holder}: one process at a time may use it")
        self.directory = directory
        self.pid = pid


class DirectoryLock:
    """An exclusive ``fcntl.flock`` of a data directory itself (created if missing), so that
    one process at a time uses it; held until `release` or the end of the process.

    Raises `DirectoryInUse` (naming ``what``, the directory and, where ``/proc/locks`` tells,
    the holder's pid) if another process holds it; nothing in the directory is read or
    changed first. Locking the directory rather than a file in it adds no file: its
    listing stays what the role wrote.
    """

    def __init__(self, directory: Path, what: str) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _lock_holder(os.fstat(fd))
            os.close(fd)
            raise DirectoryInUse(what, directory, holder) from None
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd

    def release(self) -> None:
        """Give the directory up (closing it drops the lock); again: nothing."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def _lock_holder(stat: os.stat_result) -> int | None:
    """The pid holding a flock of the file ``stat`` describes, from Linux's ``/proc/locks``
    (lines such as ``2: FLOCK  ADVISORY  WRITE 2873 fe:00:2148249 0 EOF``); None elsewhere."""
    device = (os.major(stat.st_dev), os.minor(stat.st_dev), stat.st_ino)
    try:
        with open("/proc/locks") as locks:
            for line in locks:
                fields = line.split()
                if len(fields) > 5 and fields[1] == "FLOCK":
                    major, minor, inode = fields[5].split(":")
                    if (int(major, 16), int(minor, 16), int(inode)) == device:
                        return int(fields[4])
    except (OSError, ValueError):
        return None
    return None


class RecoveryError(RuntimeError):
    """The journal directory cannot be used as it is: its server refuses to start, changing nothing."""


class JournalDamaged(RecoveryError):
    """A bad record that is not a torn tail: valid records follow it, or it is itself CRC-valid.

    ``expected`` is the sequence expected at ``offset`` (None: the first after the discarded
    records), ``good`` the records read intact from byte ``start`` before it, ``following``
    the (offset, sequence) of the next valid record (None: none) and ``size`` the file's.
    """

    def __init__(self, path: Path, offset: int, expected: int | None, problem: str, good: int, start: int,
                 following: tuple[int, int] | None, size: int) -> None:
        self.path, self.offset, self.expected, self.problem = path, offset, expected, problem
        self.good, self.start, self.following, self.size = good, start, following, size
        super().__init__(self.message())

    def message(self, server: str = "OBS", option: str = "--shard SHARD") -> str:
        """The diagnosis and the two ways on, naming the ``server`` to stop and the cut command
        for its journal (``option``: ``--shard A``, ``--tes``)."""
        expected = "the first record after the discarded ones" if self.expected is None else (
            f"sequence {self.expected}")
        if self.following is None:
            following = "no valid record follows, but a torn write never leaves a CRC-valid record"
        else:
            following = f"the next valid record is at byte {self.following[0]} (sequence {self.following[1]})"
        return (
            f"journal {self.path} is damaged at byte {self.offset}, where {expected} was expected: {self.problem}. "
            f"{self.good} good records precede it (read from byte {self.start}); {following}; "
            f"{self.size - self.offset} bytes follow from byte {self.offset} to the end of the file. Nothing was "
            f"changed. Either restore the journal directory {self.path.parent} from a backup, or, accepting the "
            f"loss of the acknowledged records from byte {self.offset} on, stop the {server} and run: "
            f"python main.py journal cut {option} --at {self.offset}"
        )


class JournalFailed(RuntimeError):
    """An fsync of the journal failed (or the truncation removing a partly written group did).
    It is not retried: after a failed fsync the kernel may have dropped the unwritten pages and
    a second fsync reports success (PostgreSQL's "fsyncgate"), so what reached the disk is
    unknown and the process must stop."""

    def __init__(self, path: Path, error: OSError, what: str = "fsync") -> None:
        super().__init__(f"{what} of the journal {path} failed ({error.strerror or error}); it is not retried")


class Record(NamedTuple):
    sequence: int
    payload: bytes
    end: int
    """The byte offset just after this record (where the next one starts)."""
    command: object = None
    """The decoded payload, when read with a ``decode`` function."""


class Journal:
    """The open journal file of one shard, appended to in groups.

    Parameters
    ----------
    directory
        The shard's journal directory (created if missing).
    config
        The fsync policy.
    end
        The byte offset just after the last good record (from `read_records`). Zeros after it
        are room written ahead by the process that crashed, kept as room; anything else is a
        torn tail: it is moved to a side file and cut off before the first append.
        Temporary files a crash left behind mid-write (snapshots) are removed.
    lock
        The directory's lock, if the caller took it before reading the directory; else
        `Journal` takes it first (`DirectoryInUse` if another process holds it). Either
        way `close` releases it.
    """

    def __init__(self, directory: Path, config: JournalConfig, end: int, lock: DirectoryLock | None = None) -> None:
        self._lock = lock or DirectoryLock(directory, "the journal directory")
        self.directory = directory
        self.path = directory / JOURNAL_FILE
        try:
            self.discarded = read_discarded(directory)
            """Byte offset before which the records were discarded (0: none)."""
            for leftover in directory.glob(f"*{TEMPORARY_SUFFIX}"):
                leftover.unlink()
            if self.path.exists() and self.path.stat().st_size > end and not zeros_after(self.path, end):
                side, count = move_tail(self.path, end, "torn")
                log.warning("%s: cut off a torn tail at byte %d (what a crash during a write leaves): %d bytes in "
                            "which no valid record starts, kept in %s", self.path, end, count, side)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o644)
            self._room_end = max(end, os.fstat(self._fd).st_size)
            """The file's size: zeros from ``offset`` up to it are room written ahead."""
        except BaseException:
            self._lock.release()
            raise
        self.offset = end
        """Bytes of good records in the file: where the next record starts."""
        self.unwritable: OSError | None = None
        """The error of the last write while writes fail (None once one succeeds); also set,
        for good, by a failed fsync."""
        self.unwritable_since = 0.0
        self.failed: OSError | None = None
        """The error of a failed fsync: every later append, flush and sync raises `JournalFailed`."""
        self._retry_at = 0.0
        self._policy = config.fsync
        self._interval = config.fsync_interval_ms / 1000
        self._synced_at = float("-inf")
        self._synced_offset = 0
        """Every byte before it was fsynced by this process (possibly more: a stale lower
        value, from two threads racing to set it, only costs an extra fsync)."""
        self.fsyncs = 0
        """The fsyncs done since the journal was opened, by any thread (the status files count them)."""
        self._can_punch = True
        self._punched = 0
        """The blocks before this byte are freed (0 when opened: a process stopped in the middle
        of `discard_before` leaves some under its recorded offset, which the next one frees)."""
        self._written = threading.Event()
        self._closing = threading.Event()
        self._syncer: threading.Thread | None = None
        if self._policy == "interval":
            self._syncer = threading.Thread(target=self._sync_at_intervals, name="journal-fsync", daemon=True)
            self._syncer.start()

    def append(self, records: Iterable[tuple[int, bytes]] | Records, sync: bool = True) -> bool:
        """Write a group of ``(sequence, payload)`` records, or records already framed
        (`native.framing.Records`), with one write, then fsync per policy; with ``sync``
        False the "batch" policy's fsync is left to the caller (`flush`, or `request_sync`).

        False if the group was not written: the write failed (the file is cut back to where
        the group began, ``unwritable`` says why), or an earlier one did less than
        `RETRY_WRITE_S` ago (the disk is not touched). Raises `JournalFailed` after a failed fsync.
        """
        if self.unwritable is not None and not self._may_retry():
            return False
        with memoryview(records if type(records) is Records else _framed(records)) as buffer:
            # released on the way out, even as the error kept in ``unwritable`` holds this frame:
            # a `Records` kept from turn to turn can then be cleared and grown again
            if self.offset + len(buffer) > self._room_end:
                self._make_room(self.offset + len(buffer))
            try:
                written = os.pwrite(self._fd, buffer, self.offset)
                while written < len(buffer):
                    written += os.pwrite(self._fd, buffer[written:], self.offset + written)
            except OSError as exc:
                self._undo_write(exc)
                return False
        self.offset += written
        self.unwritable = self.failed
        if self._policy == "batch":
            if sync:
                self._fsync()
        elif self._policy == "interval":
            self._written.set()
        return True

    def _make_room(self, end: int) -> None:
        """Write zeros past the file's end, `ROOM_BYTES` at a time in `ROOM_PIECE_BYTES` pieces, until
        it reaches ``end`` and `ROOM_BYTES` beyond, unless the file system has less than
        `ROOM_FREE_BYTES` free. A write that fails or falls short only ends the room early: the
        group is then written past it, and fails there if it must."""
        target = end + ROOM_BYTES
        try:
            free = os.fstatvfs(self._fd)
            if free.f_bavail * free.f_frsize < ROOM_FREE_BYTES:
                return
            while self._room_end < target:
                piece = min(target, (self._room_end // ROOM_PIECE_BYTES + 1) * ROOM_PIECE_BYTES) - self._room_end
                count = os.pwrite(self._fd, _ZEROS[:piece], self._room_end)
                if count == 0:
                    return
                self._room_end += count
        except OSError:
            pass

    def writable(self) -> bool:
        """Whether `append` would try to write now (False while it refuses after a failed write);
        raises `JournalFailed` after a failed fsync."""
        return self.unwritable is None or self._may_retry()

    def _may_retry(self) -> bool:
        """Whether a write may be tried again (raises `JournalFailed` if an fsync failed)."""
        self._raise_if_failed()
        return time.monotonic() >= self._retry_at

    def _raise_if_failed(self) -> None:
        """Raise `JournalFailed` if an fsync of the journal has failed (it is never retried)."""
        if self.failed is not None:
            raise JournalFailed(self.path, self.failed)

    def _undo_write(self, error: OSError) -> None:
        """Cut off what a failed write left of its group; writes pause for `RETRY_WRITE_S`."""
        try:
            os.ftruncate(self._fd, self.offset)
        except OSError as exc:
            self.failed = self.unwritable = exc
            raise JournalFailed(self.path, exc, "the truncation removing a partly written group") from exc
        self._room_end = self.offset
        now = time.monotonic()
        if self.unwritable is None:
            self.unwritable_since = now
        self.unwritable = error
        self._retry_at = now + RETRY_WRITE_S

    def _sync_at_intervals(self) -> None:
        """The "interval" policy's thread: fsync what was written, at once after a quiet
        spell, else `fsync_interval_ms` after the previous fsync. The appending loop never
        waits for it. A failed fsync ends it, leaving ``failed`` set for the loop to see."""
        while True:
            self._written.wait()
            delay = self._synced_at + self._interval - time.monotonic()
            if self._closing.is_set() or (delay > 0 and self._closing.wait(delay)):
                return
            self._written.clear()
            try:
                self._fsync()
            except JournalFailed:
                return

    @property
    def synced_offset(self) -> int:
        """The offset before which this process has fsynced every record."""
        return self._synced_offset

    @property
    def unsynced_bytes(self) -> int:
        """Bytes written to the file that this process has not fsynced yet."""
        return max(0, self.offset - self._synced_offset)

    def flush(self) -> None:
        """Make every appended record durable now (records are written at append; this fsyncs)."""
        self.sync_to(self.offset)

    def sync_to(self, offset: int) -> None:
        """Make the records before byte ``offset`` durable (safe from another thread)."""
        self._raise_if_failed()
        if offset > self._synced_offset:
            self._fsync()

    def discard_before(self, offset: int) -> None:
        """Free the disk blocks of the records before byte ``offset``, which a durable
        snapshot at or after it makes unnecessary. Safe from another thread than the one
        appending (the snapshot writer's: it takes a while). The offset is recorded first, so a
        crash in between leaves records that recovery will not use, never freed records it
        would. Where the file system cannot punch holes, nothing is discarded (logged once) and
        the record is undone.

        The blocks are freed `DISCARD_PIECE_BYTES` at a time, `PIECE_PAUSE_S` apart, skipping
        what is a hole already (``SEEK_DATA``): freeing tens of MB at once held the appending
        loop's writes and fsyncs for 10-20 ms (the file's lock, and the freed blocks in the
        file system's next journal commit, which the loop's fsync then waits for)."""
        if offset <= self.discarded or not self._can_punch:
            return
        write_atomically(self.directory / DISCARDED_FILE, f"{offset}\n".encode())
        start, freed = self._punched, False
        while True:
            try:
                start = os.lseek(self._fd, start, os.SEEK_DATA)
            except OSError as exc:
                if exc.errno != errno.ENXIO:  # ENXIO: no data after ``start``
                    raise
                break
            if start >= offset:
                break
            end = min(offset, start + DISCARD_PIECE_BYTES)
            if not _punch_hole(self._fd, start, end - start):
                if freed:  # the record stays: records under it were freed
                    raise OSError(errno.EOPNOTSUPP, f"{self.path}: a hole could be punched, and then not")
                self._can_punch = False
                write_atomically(self.directory / DISCARDED_FILE, f"{self.discarded}\n".encode())
                log.warning("%s: the file system cannot free discarded journal blocks; the journal keeps growing",
                            self.path)
                return
            start, freed = end, True
            if start < offset:
                time.sleep(PIECE_PAUSE_S)
        self._punched = self.discarded = offset

    def close(self, stopped_file: str | None = None) -> None:
        """Stop the interval thread, fsync what is not yet durable and cut off the room (not
        after a failed fsync), close the file and release the directory's lock. With
        ``stopped_file``, once all is durable and before the lock is released, that file in the
        directory is written with the journal's length (a line), to say so."""
        if self._syncer is not None:
            self._closing.set()
            self._written.set()
            self._syncer.join()
            self._syncer = None
        if self._fd >= 0:
            try:
                if self.failed is None:
                    self.flush()
                    with contextlib.suppress(OSError):  # the room left is harmless: recovery keeps it
                        os.ftruncate(self._fd, self.offset)
                    if stopped_file is not None:
                        try:
                            write_atomically(self.directory / stopped_file, f"{self.offset}\n".encode())
                        except OSError as exc:
                            log.warning("%s: could not record a clean stop (%s): the next start takes it for "
                                        "a crash", self.path, exc.strerror)
            finally:
                os.close(self._fd)
                self._fd = -1
                self._lock.release()

    def request_sync(self, syncer: Syncer) -> int:
        """Ask ``syncer`` (another thread) to fsync the file: the offset before which its answer,
        passed to `synced`, says the records are durable. Raises `JournalFailed` after a failed
        fsync. The caller keeps the journal open until the syncer has answered (`close` does not wait
        for it: close the syncer first)."""
        self._raise_if_failed()
        syncer.request(self._fd)
        return self.offset

    def synced(self, offset: int, error: int = 0) -> None:
        """An fsync of the file that began at ``offset`` is done: with ``error`` (an errno) it
        failed, which is recorded in ``failed`` and raised as `JournalFailed`."""
        if error:
            self.failed = self.unwritable = OSError(error, os.strerror(error))
            raise JournalFailed(self.path, self.failed)
        self._synced_at = time.monotonic()
        self._synced_offset = max(self._synced_offset, offset)
        self.fsyncs += 1

    def _fsync(self) -> None:
        """fsync the file (from the loop, the interval thread or the snapshot writer); a
        failure is recorded in ``failed`` and raised as `JournalFailed`."""
        target = self.offset
        try:
            _sync(self._fd)
        except OSError as exc:
            self.failed = self.unwritable = exc
            raise JournalFailed(self.path, exc) from exc
        self.synced(target)


def _framed(records: Iterable[tuple[int, bytes]]) -> Records:
    """``(sequence, payload)`` records as one framed group (TypeError, ValueError or
    OverflowError for a record `Records.add` refuses)."""
    group = Records()
    for sequence, payload in records:
        group.add(sequence, payload)
    return group


def read_records(directory: Path, offset: int = 0, sequence: int | None = 0,
                 decode: Callable[[bytes], object] | None = None) -> Iterator[Record]:
    """The journal's good records from byte ``offset``, whose predecessor had ``sequence``
    (None: whatever the first record's is, the records before it being discarded).

    Each payload is passed to ``decode`` if given (its result is the record's ``command``;
    a ValueError, which msgspec's DecodeError is, makes the record bad). Ends quietly at the
    end of the file, or before a torn tail: then the last yielded ``end`` is where the good
    records end. Raises `JournalDamaged` at a bad record that is not a torn tail.
    """
    path = directory / JOURNAL_FILE
    try:
        file = open(path, "rb")
    except FileNotFoundError:
        return
    with file:
        size = os.fstat(file.fileno()).st_size
        file.seek(offset)
        read, crc32, start, good = file.read, zlib.crc32, offset, 0
        while offset < size:
            header = read(HEADER.size)
            length, crc, found = HEADER.unpack(header) if len(header) == HEADER.size else (-1, 0, 0)
            payload = read(length) if 0 < length <= MAX_RECORD_BYTES else b""
            intact = len(payload) == length and crc32(payload, crc32(header[8:])) == crc
            if intact and (sequence is None or found == sequence + 1):
                try:
                    command = decode(payload) if decode is not None else None
                except ValueError as exc:
                    problem = f"a CRC-valid payload that does not decode as a command ({exc})"
                else:
                    offset += HEADER.size + length
                    sequence, good = found, good + 1
                    yield Record(found, payload, offset, command)
                    continue
            else:
                problem = _problem(len(header), length, len(payload), intact, found, sequence)
            following = next_valid_record(file.fileno(), offset + 1, sequence or 0, size)
            if following is None and not intact:
                return
            expected = None if sequence is None else sequence + 1
            raise JournalDamaged(path, offset, expected, problem, good, start, following, size)


def zeros_after(path: Path, offset: int) -> bool:
    """Whether every byte of ``path`` from ``offset`` on is zero (room written ahead, or nothing)."""
    with open(path, "rb") as file:
        file.seek(offset)
        while chunk := file.read(SCAN_BYTES):
            if chunk.count(0) != len(chunk):
                return False
    return True


def first_record(directory: Path, offset: int) -> tuple[int, int]:
    """(sequence, ``offset``) of the record at byte ``offset`` (where the discarded bytes end),
    or (0, ``offset``) if the journal holds none there."""
    try:
        with open(directory / JOURNAL_FILE, "rb") as file:
            file.seek(offset)
            header = file.read(HEADER.size)
    except FileNotFoundError:
        return 0, offset
    return (HEADER.unpack(header)[2] if len(header) == HEADER.size else 0), offset


def _problem(header: int, length: int, payload: int, intact: bool, found: int, sequence: int | None) -> str:
    """What is wrong with a record, from the sizes read of its header and payload."""
    if header < HEADER.size:
        return f"the file ends {header} bytes into a record header"
    if not 0 < length <= MAX_RECORD_BYTES:
        return f"length field {length} out of range 1..{MAX_RECORD_BYTES}"
    if payload < length:
        return f"the file ends {payload} bytes into its {length}-byte payload"
    if not intact:
        return "CRC mismatch"
    return f"sequence {found} where {sequence + 1} was expected"


def next_valid_record(fd: int, start: int, after: int, size: int) -> tuple[int, int] | None:
    """(offset, sequence) of the first valid record at byte ``start`` or later of the first
    ``size`` bytes of file ``fd``, None if there is none.

    Valid: a length in 1..MAX_RECORD_BYTES, a sequence above ``after`` (and at most
    `MAX_SEQUENCE`), a payload that fits and a matching CRC. Reads `SCAN_BYTES` at a time
    (chunks overlapping by a header less one byte); numpy views the length and sequence
    fields at every byte offset of a chunk at once (strided views over the bytes), so only
    the few offsets where both are plausible get their CRC computed.
    """
    while start + HEADER.size < size:
        chunk = os.pread(fd, min(SCAN_BYTES, size - start), start)
        count = len(chunk) - HEADER.size + 1
        lengths = np.ndarray((count,), "<u4", chunk, 0, (1,))
        sequences = np.ndarray((count,), "<u8", chunk, 8, (1,))
        plausible = (lengths >= 1) & (lengths <= MAX_RECORD_BYTES)
        plausible &= (sequences > after) & (sequences <= MAX_SEQUENCE)
        view = memoryview(chunk)
        for index in np.flatnonzero(plausible).tolist():
            length = int(lengths[index])
            if start + index + HEADER.size + length > size:
                continue
            if index + HEADER.size + length <= len(chunk):
                record = view[index : index + HEADER.size + length]
            else:
                record = memoryview(os.pread(fd, HEADER.size + length, start + index))
            _, crc, sequence = HEADER.unpack_from(record)
            if zlib.crc32(record[HEADER.size :], zlib.crc32(record[8 : HEADER.size])) == crc:
                return start + index, sequence
        start += count
    return None


def move_tail(path: Path, offset: int, kind: str) -> tuple[Path, int]:
    """Move the bytes of ``path`` from ``offset`` on into a new side file ``<name>.<kind>-<offset>``
    and cut ``path`` there; the side file and the cut are fsynced in that order, so a crash in
    between leaves the bytes in both files, never in neither. Returns the side file and the
    number of bytes moved."""
    side = path.with_name(f"{path.name}.{kind}-{offset}")
    copies = 1
    while side.exists():
        copies += 1
        side = path.with_name(f"{path.name}.{kind}-{offset}.{copies}")
    with open(path, "r+b") as source:
        count = os.fstat(source.fileno()).st_size - offset
        target = open(side, "xb")
        try:
            with target:
                source.seek(offset)
                shutil.copyfileobj(source, target, SCAN_BYTES)
                target.flush()
                os.fsync(target.fileno())
            sync_directory(path.parent)
        except OSError:
            side.unlink(missing_ok=True)
            raise
        source.truncate(offset)
        os.fsync(source.fileno())
    return side, count


# ================================================================ snapshots


class SymbolSnapshot(msgspec.Struct, frozen=True):
    book: BookSnapshot
    market_data_sequence: int
    last_price: int | None
    phases: PhaseState = PhaseState()


class ShardSnapshot(msgspec.Struct, frozen=True):
    """A shard's whole state after command ``sequence``; its journal continues at ``journal_offset``."""

    sequence: int
    journal_offset: int
    symbols: dict[str, SymbolSnapshot]
    time: int = 0
    """The exchange time of command ``sequence`` (so stamps never go back after a restore)."""


class SnapshotDamaged(ValueError):
    """A snapshot file that does not read back as written; the message says what is wrong."""


class _OldBookSnapshot(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """`BookSnapshot` in format version 1 (``accepted_ids``: every accepted id, ascending int64)
    or 2 (``accepted_ranges``: inclusive (first, last) int64 pairs of consecutive ids, ascending).
    The header's version is outside the CRC: a current payload under a flipped version must not
    read as version 2's ranges alone, so unknown fields are refused."""

    trade_sequence: int
    orders: bytes
    accepted_ids: bytes | None = None
    accepted_ranges: bytes | None = None


class _OldSymbolSnapshot(msgspec.Struct, frozen=True):
    book: _OldBookSnapshot
    market_data_sequence: int
    last_price: int | None


class _OldShardSnapshot(msgspec.Struct, frozen=True):
    sequence: int
    journal_offset: int
    symbols: dict[str, _OldSymbolSnapshot]
    time: int = 0


def _from_old_version(snapshot: _OldShardSnapshot, version: int) -> ShardSnapshot:
    """The current form of a version-1 or version-2 snapshot: its books' id lists (1) or ranges
    (2) become the records of `engine.snapshot`. ValueError if a book lacks its version's field
    or it is not whole int64s in ascending order (ranges: ascending and disjoint)."""
    symbols = {}
    for symbol, state in snapshot.symbols.items():
        ids = state.book.accepted_ids if version == 1 else state.book.accepted_ranges
        if ids is None:
            raise ValueError(f"book {symbol!r} has no accepted ids for format version {version}")
        ids = np.frombuffer(ids, dtype="<i8")
        ranges, words, lone = id_records(ids) if version == 1 else id_records_of_ranges(ids.reshape(-1, 2))
        book = BookSnapshot(state.book.trade_sequence, state.book.orders, ranges.astype("<i8").tobytes(),
                            words.tobytes(), lone.astype("<i8").tobytes())
        symbols[symbol] = SymbolSnapshot(book, state.market_data_sequence, state.last_price)
    return _with_last_prices(ShardSnapshot(snapshot.sequence, snapshot.journal_offset, symbols, snapshot.time))


def _with_last_prices(snapshot: ShardSnapshot) -> ShardSnapshot:
    """A snapshot of a version before 4, whose books did not hold their last trade price (the stop
    orders' trigger), with each book's set to its symbol's (0, none, before the first trade)."""
    symbols = {symbol: msgspec.structs.replace(state, book=msgspec.structs.replace(
                   state.book, last_price=0 if state.last_price is None else state.last_price))
               for symbol, state in snapshot.symbols.items()}
    return msgspec.structs.replace(snapshot, symbols=symbols)


_snapshot_decoder = msgspec.msgpack.Decoder(ShardSnapshot)
_old_decoder = msgspec.msgpack.Decoder(_OldShardSnapshot)
_SNAPSHOT_READERS = {
    1: lambda payload: _from_old_version(_old_decoder.decode(payload), 1),
    2: lambda payload: _from_old_version(_old_decoder.decode(payload), 2),
    3: lambda payload: _with_last_prices(_snapshot_decoder.decode(payload)),
    4: _snapshot_decoder.decode,
    SNAPSHOT_VERSION: _snapshot_decoder.decode,
}
"""Format version -> payload decoder giving the current `ShardSnapshot`."""


def write_snapshot(directory: Path, snapshot: ShardSnapshot) -> Path:
    """Write ``snapshot`` atomically and durably; delete all but the newest `KEEP_SNAPSHOTS`."""
    path = directory / f"snapshot-{snapshot.sequence}.msgpack"
    payload = msgspec.msgpack.encode(snapshot)
    header = SNAPSHOT_HEADER.pack(SNAPSHOT_MAGIC, SNAPSHOT_VERSION, len(payload), zlib.crc32(payload))
    write_atomically(path, header, payload, paced=True)
    for old in snapshot_paths(directory)[KEEP_SNAPSHOTS:]:
        old.unlink()
    return path


def read_snapshot(path: Path) -> ShardSnapshot:
    """The snapshot in ``path``; `SnapshotDamaged` if its header, length, CRC, payload or name
    is wrong, OSError if it cannot be read."""
    data = path.read_bytes()
    if len(data) < SNAPSHOT_HEADER.size:
        raise SnapshotDamaged(f"{len(data)} bytes, shorter than the {SNAPSHOT_HEADER.size}-byte header")
    magic, version, length, crc = SNAPSHOT_HEADER.unpack_from(data)
    if magic != SNAPSHOT_MAGIC:
        raise SnapshotDamaged(f"bad magic {magic!r}, not {SNAPSHOT_MAGIC!r}: not a snapshot of this format")
    reader = _SNAPSHOT_READERS.get(version)
    if reader is None:
        versions = ", ".join(map(str, sorted(_SNAPSHOT_READERS)))
        raise SnapshotDamaged(f"format version {version}; this build reads versions {versions}")
    payload = memoryview(data)[SNAPSHOT_HEADER.size :]
    if len(payload) != length:
        raise SnapshotDamaged(f"the header announces {length} payload bytes, the file holds {len(payload)}")
    if zlib.crc32(payload) != crc:
        raise SnapshotDamaged("CRC mismatch")
    try:
        snapshot = reader(payload)
    except ValueError as exc:  # msgspec's DecodeError, or old-version ids that do not convert
        raise SnapshotDamaged(f"a CRC-valid payload that does not decode ({exc})") from None
    if f"snapshot-{snapshot.sequence}.msgpack" != path.name:
        raise SnapshotDamaged(f"it holds sequence {snapshot.sequence}")
    return snapshot


def read_snapshots(directory: Path) -> Iterator[ShardSnapshot]:
    """The readable snapshots, newest first; damaged ones are logged and skipped."""
    for path in snapshot_paths(directory):
        try:
            snapshot = read_snapshot(path)
        except (OSError, SnapshotDamaged) as exc:
            log.warning("skipping snapshot %s: %s; recovery falls back to an older snapshot or the journal", path, exc)
            continue
        yield snapshot


def snapshot_paths(directory: Path) -> list[Path]:
    """Snapshot files, newest (highest sequence) first."""
    found = []
    for path in directory.glob("snapshot-*.msgpack"):
        match = SNAPSHOT_NAME.match(path.name)
        if match:
            found.append((int(match.group(1)), path))
    return [path for _, path in sorted(found, reverse=True)]


# ================================================================ files


def journal_size(directory: Path) -> int:
    """The size of ``directory``'s journal file in bytes (0: it has none)."""
    try:
        return (directory / JOURNAL_FILE).stat().st_size
    except FileNotFoundError:
        return 0


def beyond_the_journal(offset: int, size: int) -> str | None:
    """Why recovery skips a snapshot whose records continue at journal byte ``offset``, the journal
    being ``size`` bytes long: it ends before that (records the snapshot holds were lost or cut off
    since); None if the journal reaches it. The OBS's and the TES's recoveries and ``journal check``
    all ask this."""
    return f"the journal ends (byte {size}) before its offset {offset}" if offset > size else None


def read_discarded(directory: Path) -> int:
    """The offset `Journal.discard_before` recorded (0 if it never ran); `RecoveryError` if
    the file does not hold one."""
    path = directory / DISCARDED_FILE
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return 0
    match = re.fullmatch(rb"\s*(\d{1,19})\s*", data)
    if match is None:
        raise RecoveryError(
            f"{path} is damaged: {data[:40]!r} is not a byte offset. It records where the journal's "
            "discarded (freed) records end, so that recovery never replays them. Restore the journal "
            f"directory {directory} from a backup, or write into it the journal offset of the oldest "
            "readable snapshot (python main.py journal check --shard NAME, or --tes for the TES's, lists them)"
        )
    return int(match.group(1))


def _punch_hole(fd: int, start: int, length: int) -> bool:
    """Free the blocks of the file's ``length`` bytes from ``start`` (they read as zeros, the size
    stays); False if the file system cannot."""
    if _libc.fallocate(fd, _PUNCH_HOLE, ctypes.c_long(start), ctypes.c_long(length)) == 0:
        return True
    error = ctypes.get_errno()
    if error in (errno.EOPNOTSUPP, errno.ENOSYS):
        return False
    raise OSError(error, os.strerror(error))


def write_atomically(path: Path, *chunks: bytes, durable: bool = True, paced: bool = False) -> None:
    """``path`` holds the ``chunks`` or what it held before, even after a crash; durable on
    return unless ``durable`` is False (then a reader sees the old or the new file, never half
    of one, but a crash may lose the new one: for files rewritten every second, whose fsyncs
    would stall the writer for milliseconds). A temporary file that could not be completed (a
    full disk) is removed.

    ``paced`` (a snapshot's, from a thread that may wait): written and made durable
    `PACED_PIECE_BYTES` at a time, `PIECE_PAUSE_S` apart, so the device is never long busy
    with it: a loop's journal fsync waits behind whatever the device holds (a 20 MB file
    written whole every 2 s made a journaling echo's longest ack 13-21 ms at 10,000/s, in pieces
    6-8 ms; none written, 2-5 ms)."""
    temporary = path.with_name(path.name + TEMPORARY_SUFFIX)
    try:
        with open(temporary, "wb") as file:
            if paced:
                _write_paced(file, chunks)
            else:
                for chunk in chunks:
                    file.write(chunk)
            if durable:
                file.flush()
                os.fsync(file.fileno())
        os.replace(temporary, path)
    except OSError:
        temporary.unlink(missing_ok=True)
        raise
    if durable:
        sync_directory(path.parent)


def _write_paced(file, chunks: tuple[bytes, ...]) -> None:
    """Write ``chunks`` to ``file`` `PACED_PIECE_BYTES` at a time, each piece made durable and
    followed by a pause of `PIECE_PAUSE_S` before the next."""
    written = 0
    for chunk in chunks:
        view = memoryview(chunk)
        while view:
            piece = view[:PACED_PIECE_BYTES - written]
            file.write(piece)
            view = view[len(piece):]
            written += len(piece)
            if written == PACED_PIECE_BYTES:
                file.flush()
                os.fdatasync(file.fileno())
                written = 0
                time.sleep(PIECE_PAUSE_S)


def sync_directory(directory: Path) -> None:
    """fsync ``directory``, making the names created, renamed or removed in it durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
