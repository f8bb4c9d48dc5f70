# cython: boundscheck=False, wraparound=False
"""The OBS's order commands read from a frame in C, without msgspec.

`CommandReader.read` reads a frame of a TES's BookSubmit, BookCancel and BookReplace as msgspec
writes them into `OrderCommand`s: the ints of each command in C, its symbol the shard's own str.
The order path (`native.orderpath`) sequences and runs them without a field object, and writes
their journal entries from the values (`native.book.NativeBook.execute_values`). Everything else
goes to msgspec, as before: a frame holding any other message, a command without all its fields,
an int beyond int64, a string that is not ASCII or too long, a symbol the shard does not own, a
cancel reason that is not one, bytes after the array, a frame over the protocol's limits.

Invariant: `read` returns a list only for a frame that the OBS's msgspec decoder
(`servers.protocol.Codec` of `ObsRequest`) decodes to the same commands, in order: for each,
`OrderCommand.struct` is the Struct msgspec makes (tests/test_commands.py holds them to that on
valid, mutated and garbage frames). For anything else it returns None, and msgspec decides.
"""

cimport cython
from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.mem cimport PyMem_Calloc, PyMem_Free
from cpython.ref cimport Py_DECREF, Py_INCREF
from cpython.unicode cimport PyUnicode_AsUTF8AndSize, PyUnicode_DecodeASCII
from libc.stdint cimport int64_t, uint8_t, uint64_t
from libc.string cimport memcpy

from native.reader cimport Reader, read_array, read_int, read_str, read_tag
from native.structs cimport check_fields

cdef const char* TAGS[3]
TAGS[:] = [b"BookSubmit", b"BookCancel", b"BookReplace"]
cdef Py_ssize_t TAG_SIZES[3]
TAG_SIZES[:] = [10, 10, 11]
cdef Py_ssize_t FIELDS[3]
FIELDS[:] = [15, 4, 5]

FIELD_NAMES = (
    ("symbol", "order_id", "side", "order_type", "time_in_force", "price", "quantity", "account", "client_order_id",
     "stop_price", "display_quantity", "flags", "owner", "stp", "expire_at"),
    ("symbol", "order_id", "client_order_id", "reason"),
    ("symbol", "order_id", "price", "quantity", "client_order_id"),
)
"""Each command's fields in order, as the reader reads them: the symbol, a BookSubmit's account
(str), a BookCancel's reason (a `CancelReason`), every other field an int64."""

cdef enum:
    REASON_AT = 3            # a BookCancel's reason field


cdef inline bint ascii(const char* text, Py_ssize_t size) noexcept nogil:
    cdef Py_ssize_t i
    cdef uint8_t any = 0
    for i in range(size):
        any |= <uint8_t>text[i]
    return any < 0x80


cdef inline Py_ssize_t slot_of(const uint64_t* key, Py_ssize_t size, Py_ssize_t mask) noexcept nogil:
    """The first slot `CommandReader`'s table probes for the symbol ``key`` of ``size`` bytes."""
    cdef uint64_t h = (key[0] * 0x9E3779B97F4A7C15ULL) ^ (key[1] * 0xC2B2AE3D27D4EB4FULL) ^ <uint64_t>size
    return <Py_ssize_t>((h ^ (h >> 29)) & <uint64_t>mask)


cdef class CommandReader:
    """Reads frames of one shard's order commands (see the module docstring).

    ``symbols`` are the shard's (those that are not 1 to 16 ASCII bytes are left to msgspec);
    ``classes`` the protocol's BookSubmit, BookCancel and BookReplace, whose tags and fields must
    be `FIELD_NAMES` (TypeError if not: rebuild); ``reasons`` the `CancelReason` enum, whose
    values lie in 0..63; a frame over ``max_bytes`` bytes or ``max_messages`` messages is left
    to msgspec, which refuses it."""

    def __cinit__(self, symbols, tuple classes, reasons, Py_ssize_t max_bytes, Py_ssize_t max_messages):
        cdef Py_ssize_t capacity = 8, size, h
        cdef const char* text
        cdef uint64_t key[2]
        for cls, tag, names in zip(classes, ("BookSubmit", "BookCancel", "BookReplace"), FIELD_NAMES, strict=True):
            check_fields(cls, tag, names, "commands.pyx")
        self.classes, self.reasons = classes, reasons
        for reason in reasons:
            if not 0 <= reason < 64:
                raise ValueError(f"{reason!r}: a cancel reason beyond 0..63")
            self.reason_bits |= (<uint64_t>1) << <int>reason
        self.max_bytes, self.max_messages = max_bytes, max_messages
        symbols = list(symbols)
        while capacity < 2 * len(symbols):
            capacity *= 2
        self.table = <SymbolSlot*>PyMem_Calloc(capacity, sizeof(SymbolSlot))
        if self.table == NULL:
            raise MemoryError()
        self.mask = capacity - 1
        for symbol in symbols:
            text = PyUnicode_AsUTF8AndSize(symbol, &size)
            if not 1 <= size <= SYMBOL_BYTES or not ascii(text, size) or self._symbol(text, size) is not None:
                continue
            key[0] = key[1] = 0
            memcpy(key, text, size)
            h = slot_of(key, size, self.mask)
            while self.table[h].size:
                h = (h + 1) & self.mask
            self.table[h].key[0], self.table[h].key[1], self.table[h].size = key[0], key[1], size
            Py_INCREF(symbol)
            self.table[h].symbol = <void*>symbol

    def __dealloc__(self):
        cdef Py_ssize_t i
        if self.table != NULL:
            for i in range(self.mask + 1):
                if self.table[i].size:
                    Py_DECREF(<object>self.table[i].symbol)
            PyMem_Free(self.table)

    def read(self, frame):
        """The commands of ``frame`` (bytes, or any buffer), or None: see the module docstring."""
        cdef Py_buffer view
        PyObject_GetBuffer(frame, &view, PyBUF_SIMPLE)
        try:
            return self._read(<const unsigned char*>view.buf, view.len)
        finally:
            PyBuffer_Release(&view)

    cdef list _read(self, const unsigned char* data, Py_ssize_t size):
        cdef Reader r
        cdef Py_ssize_t count, i
        cdef OrderCommand command
        cdef list commands = []
        if size > self.max_bytes:
            return None
        r.data, r.size, r.pos = data, size, 0
        if not read_array(&r, &count) or count > self.max_messages:
            return None
        for i in range(count):
            command = OrderCommand.__new__(OrderCommand)
            if not self._command(&r, command):
                return None
            commands.append(command)
        return commands if r.pos == r.size else None

    cdef bint _command(self, Reader* r, OrderCommand command) except -1:
        """One command at ``r`` into ``command``: False if it is not one the reader takes."""
        cdef Py_ssize_t n, size, i, kind
        cdef const char* text
        cdef int64_t reason
        if not read_array(r, &n):
            return False
        for kind in range(3):
            if read_tag(r, TAGS[kind], TAG_SIZES[kind]):
                break
        else:
            return False
        if n != FIELDS[kind] + 1 or not read_str(r, &text, &size):
            return False
        symbol = self._symbol(text, size)
        if symbol is None:
            return False
        for i in range(1, FIELDS[kind]):
            if kind == SUBMIT and i == ACCOUNT_AT:
                if not read_str(r, &text, &size) or size > ACCOUNT_BYTES or not ascii(text, size):
                    return False
                memcpy(command.account, text, <size_t>size)
                command.account_size = size
            elif not read_int(r, &command.values[i]):
                return False
        if kind == CANCEL:
            reason = command.values[REASON_AT]
            if not (0 <= reason < 64 and (self.reason_bits >> reason) & 1):
                return False
        command.kind, command.symbol, command.reader = kind, symbol, self
        return True

    cdef object _symbol(self, const char* text, Py_ssize_t size):
        """The shard's symbol spelled by ``size`` bytes at ``text``, or None."""
        cdef uint64_t key[2]
        cdef Py_ssize_t h
        if not 1 <= size <= SYMBOL_BYTES:
            return None
        key[0] = key[1] = 0
        memcpy(key, text, <size_t>size)
        h = slot_of(key, size, self.mask)
        while self.table[h].size:
            if self.table[h].size == size and self.table[h].key[0] == key[0] and self.table[h].key[1] == key[1]:
                return <object>self.table[h].symbol
            h = (h + 1) & self.mask
        return None


@cython.no_gc
@cython.freelist(1024)
@cython.final
cdef class OrderCommand:
    """A BookSubmit, BookCancel or BookReplace read in C: its ``kind`` (`SUBMIT`, `CANCEL`,
    `REPLACE`), its ``symbol`` (the shard's str), field ``i``'s int in ``values[i]`` (but the
    symbol, a submit's account, held as ASCII bytes, and nothing past its fields). Once the
    OBS's order path sequences it, it is its own item of the turn's work, with its sender's
    ``identity``, its ``sequence`` and its ``stamp`` (`native.orderpath.OrderPath.sequence`)."""

    def struct(self):
        """The Struct msgspec decodes this command to (for the OBS's paths in Python)."""
        cdef const int64_t* v = self.values
        cls = self.reader.classes[self.kind]
        if self.kind == SUBMIT:
            return cls(self.symbol, v[1], v[2], v[3], v[4], v[5], v[6],
                       PyUnicode_DecodeASCII(self.account, self.account_size, NULL), v[8], v[9], v[10], v[11],
                       v[12], v[13], v[14])
        if self.kind == CANCEL:
            return cls(self.symbol, v[1], v[2], self.reader.reasons(v[3]))
        return cls(self.symbol, v[1], v[2], v[3], v[4])

    def __repr__(self):
        return f"OrderCommand({self.struct()!r})"
