# cython: boundscheck=False, wraparound=False
"""Framing in C, on the servers' hot path: journal records (`Records`, a group framed as its
records are made, for `servers.journal.Journal.append`) and encoded messages joined into protocol
frames (`join_frames`, for the OBS's replies and market data; `encoded_prefix` counts those already
encoded at the head of a queue).

A journal record is a 16-byte header, then its payload: the payload's length (uint32), the CRC-32
(zlib's) of the sequence's 8 bytes followed by the payload (uint32), and the sequence
(uint64), all little-endian: ``struct.Struct("<IIQ")`` with the CRC computed as
``zlib.crc32(payload, zlib.crc32(sequence.to_bytes(8, "little")))``. The CRC is folded 16 bytes
at a time with carry-less multiplication where the CPU has it (`native/crc32.h`), from 16 bytes on:
20-45 ns against zlib's 100-215 ns on records of 150 to 500 bytes on this project's Intel host,
and on the AMD EPYC host about 20 ns against 100 on the 51 bytes (with the sequence) of the
TES's record of an order (`servers.ledger.Entered`), which only records of 64 bytes or more were
folded for until 2026-12-06.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.buffer cimport PyBuffer_FillInfo
from cpython.mem cimport PyMem_Free, PyMem_Realloc
from libc.stdint cimport uint8_t, uint32_t, uint64_t
from libc.string cimport memcpy


cdef extern from "crc32.h" nogil:
    uint32_t journal_crc32(const unsigned char *buf, size_t length)
    uint32_t journal_crc32_with(const unsigned char *buf, size_t length, int fold)
    int crc32_can_fold()


cdef enum:
    HEADER_BYTES = 16        # a journal record's
    ARRAY_HEADER_BYTES = 5   # the most a msgpack array's header takes (array32), as `join_frames` counts it


cdef inline void _put_le(uint8_t *out, uint64_t value, int count) noexcept nogil:
    cdef int i
    for i in range(count):
        out[i] = <uint8_t>(value >> (8 * i))


cdef inline void _frame_one(uint8_t *out, uint64_t sequence, const char *payload, Py_ssize_t size) noexcept nogil:
    """Write one record (header, then ``size`` bytes of ``payload``) at ``out``; ``size`` < 2**32.
    The sequence and the payload are written first, so that one CRC covers them where they lie."""
    _put_le(out + 8, sequence, 8)
    memcpy(out + HEADER_BYTES, payload, size)
    _put_le(out, <uint64_t>size, 4)
    _put_le(out + 4, journal_crc32(out + 8, 8 + size), 4)


cdef class Records:
    """A group of journal records framed (see the module docstring), ready for one write
    (`servers.journal.Journal.append`): the OBS's turn frames each command's journal entry here
    as it is made (`native.orderpath`: straight from the book's buffer, with no bytes object),
    so the entries are never copied again before the write.

    Invariants: ``data[:size]`` is ``count`` whole records, in the order added; ``first`` and
    ``last`` are the first and last one's sequence (None while empty). A buffer exported
    (`memoryview`, `os.pwrite`) is read-only, and the group cannot grow while one is held
    (BufferError)."""

    def __dealloc__(self):
        PyMem_Free(self.data)

    @property
    def first(self):
        return self.first_sequence if self.count else None

    @property
    def last(self):
        return self.last_sequence if self.count else None

    def __len__(self):
        return self.count

    def add(self, sequence, bytes payload not None) -> None:
        """Frame ``payload`` (bytes shorter than 2**32 bytes) as the record of ``sequence`` (an
        int from 0 to 2**64 - 1); TypeError, ValueError or OverflowError otherwise, nothing added."""
        cdef uint64_t number = sequence
        self.frame(number, PyBytes_AS_STRING(payload), PyBytes_GET_SIZE(payload))

    cdef int frame(self, uint64_t sequence, const char* payload, Py_ssize_t size) except -1:
        """`add` from C: ``size`` bytes at ``payload``."""
        cdef Py_ssize_t capacity = self.capacity
        cdef char* grown
        if size >= (<Py_ssize_t>1 << 32):
            raise ValueError(f"a journal record of {size} bytes is too large to frame")
        if self.size + HEADER_BYTES + size > capacity:
            if self.exports:
                raise BufferError("the group's buffer is exported: it cannot grow")
            capacity = max(2 * capacity, self.size + HEADER_BYTES + size, 4096)
            grown = <char*>PyMem_Realloc(self.data, capacity)
            if grown == NULL:
                raise MemoryError()
            self.data, self.capacity = grown, capacity
        _frame_one(<uint8_t*>self.data + self.size, sequence, payload, size)
        self.size += HEADER_BYTES + size
        if self.count == 0:
            self.first_sequence = sequence
        self.last_sequence = sequence
        self.count += 1
        return 0

    def clear(self) -> None:
        """Hold no record (the buffer's memory is kept for the next group); BufferError while the
        buffer is exported."""
        if self.exports:
            raise BufferError("the group's buffer is exported: it cannot be cleared")
        self.size = self.count = 0

    def records(self) -> list:
        """The records as ``(sequence, payload)``, read back from the framed bytes (for tests
        and benchmarks: the journal writes the bytes)."""
        cdef list found = []
        cdef Py_ssize_t at = 0, size
        cdef const uint8_t* data = <const uint8_t*>self.data
        while at < self.size:
            size = _get_le(data + at, 4)
            found.append((_get_le(data + at + 8, 8), PyBytes_FromStringAndSize(self.data + at + HEADER_BYTES, size)))
            at += HEADER_BYTES + size
        return found

    def __getbuffer__(self, Py_buffer* view, int flags):
        PyBuffer_FillInfo(view, self, self.data, self.size, 1, flags)
        self.exports += 1

    def __releasebuffer__(self, Py_buffer* view):
        self.exports -= 1


cdef inline uint64_t _get_le(const uint8_t *data, int count) noexcept nogil:
    cdef uint64_t value = 0
    cdef int i
    for i in range(count):
        value |= (<uint64_t>data[i]) << (8 * i)
    return value


def encoded_prefix(list messages) -> int:
    """How many of ``messages``, from the first, are bytes (already encoded): the TES sends the reports
    written in C at the head of a session's queue before its fsync (`servers.tes`'s
    `_send_replies_first`), which at 100,000 orders/s counts a few hundred a turn."""
    cdef Py_ssize_t count = len(messages), i = 0
    while i < count and type(messages[i]) is bytes:
        i += 1
    return i


def join_frames(list messages, encode, Py_ssize_t max_messages, Py_ssize_t max_bytes) -> list:
    """`servers.protocol.join_frames` (its specification, which says what the frames are) in C:
    ``messages`` each bytes already encoded (msgpack), or anything else, which ``encode`` (if not
    None) encodes to bytes first; TypeError for a message that is not bytes then."""
    cdef Py_ssize_t count = len(messages), start = 0, stop, limit, total, size, header, i, j
    cdef uint8_t* out
    cdef list frames = []
    for i in range(count):
        if type(messages[i]) is not bytes:
            if encode is not None:
                messages = [message if type(message) is bytes else encode(message) for message in messages]
            for j in range(count):
                if type(messages[j]) is not bytes:
                    raise TypeError(f"message {j} is a {type(messages[j]).__name__}, not bytes")
            break
    while start < count:
        limit = min(count, start + max_messages)
        stop, total = start, 0
        while stop < limit:
            size = PyBytes_GET_SIZE(messages[stop])
            if total + size > max_bytes - ARRAY_HEADER_BYTES:
                break
            total += size
            stop += 1
        if stop == start:
            total, stop = PyBytes_GET_SIZE(messages[start]), start + 1
        size = stop - start
        header = 1 if size < 16 else 3 if size < (1 << 16) else 5
        frame = PyBytes_FromStringAndSize(NULL, header + total)
        out = <uint8_t*>PyBytes_AS_STRING(frame)
        if header == 1:
            out[0] = 0x90 | size
        elif header == 3:
            out[0], out[1], out[2] = 0xdc, size >> 8, size & 0xff
        else:
            out[0], out[1], out[2] = 0xdd, size >> 24, (size >> 16) & 0xff
            out[3], out[4] = (size >> 8) & 0xff, size & 0xff
        out += header
        for i in range(start, stop):
            size = PyBytes_GET_SIZE(messages[i])
            memcpy(out, PyBytes_AS_STRING(messages[i]), size)
            out += size
        frames.append(frame)
        start = stop
    return frames


FOLDS = bool(crc32_can_fold())
"""Whether this CPU folds the CRC (x86-64 with PCLMULQDQ); zlib computes it otherwise."""


def crc32(data, bint folded=True) -> int:
    """``zlib.crc32(data)`` as the framing computes it: folded where the CPU can, or by zlib
    alone if ``folded`` is False (tests hold both to zlib)."""
    cdef const unsigned char[::1] view = data
    return journal_crc32_with(&view[0] if view.shape[0] else NULL, view.shape[0], folded)
