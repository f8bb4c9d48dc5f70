# MessagePack written in C, byte for byte as msgspec encodes the same values (book.pyx's
# `NativeBook.execute_encoded`: the OBS's order path without an event object).
#
# A `Writer` is a growable buffer: `wire_room` makes room for ``n`` more bytes (MemoryError if it
# cannot), and every other function writes into room already made, so a caller reserves once per
# message (`MAX_HEADER` bytes per integer or header, plus a string's length). Integers take the
# smallest form msgspec takes: a positive or negative fixint, else the smallest unsigned form for a
# non-negative value and the smallest signed form for a negative one. Strings shorter than 32 bytes
# are fixstr, then str8, str16 and str32; bytes bin8, bin16 and bin32; arrays fixarray below 16
# items, then array16 and array32.
# msgspec encodes an ``array_like`` tagged Struct as an array of its tag (the class name) and its
# fields in order, and an IntEnum as its value: `wire_tagged` writes that header. Every float is a
# float 64.
#
# Everything here is `cdef inline`: cimported by book.pyx, entry.pyx and reports.pyx, compiled into each.

from cpython.mem cimport PyMem_RawRealloc
from libc.stdint cimport int64_t, uint8_t, uint64_t
from libc.string cimport memcpy, strlen


cdef enum:
    MAX_HEADER = 9           # the longest integer or header: a marker and 8 bytes


ctypedef struct Writer:
    uint8_t* data
    Py_ssize_t size          # bytes written
    Py_ssize_t capacity      # bytes allocated


cdef inline int wire_room(Writer* w, Py_ssize_t n) except -1:
    """Room for ``n`` more bytes (the buffer at least doubles when it grows)."""
    cdef Py_ssize_t need = w.size + n, capacity
    cdef void* p
    if need <= w.capacity:
        return 0
    capacity = max(need, 2 * w.capacity, 4096)
    p = PyMem_RawRealloc(w.data, <size_t>capacity)
    if p == NULL:
        raise MemoryError("out of memory encoding a message")
    w.data, w.capacity = <uint8_t*>p, capacity
    return 0


cdef extern from *:
    """
    /* The low `count` (1..8) bytes of `value`, most significant first. On a little-endian GCC or
       Clang build it stores all 8 bytes of one byte-swapped word: the bytes past `count` lie in
       the MAX_HEADER bytes of room made for the header, and what follows overwrites them. */
    static inline void wire_big_endian(uint8_t* out, uint64_t value, int count) {
    #if defined(__GNUC__) && defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
        uint64_t word = __builtin_bswap64(value << (8 * (8 - count)));
        memcpy(out, &word, 8);
    #else
        for (int i = 0; i < count; i++) out[i] = (uint8_t)(value >> (8 * (count - 1 - i)));
    #endif
    }
    """
    void _big_endian "wire_big_endian"(uint8_t* out, uint64_t value, int count) noexcept nogil


cdef inline void _marked(Writer* w, uint8_t marker, uint64_t value, int count) noexcept nogil:
    w.data[w.size] = marker
    _big_endian(&w.data[w.size + 1], value, count)
    w.size += 1 + count


cdef inline void _sized(Writer* w, uint8_t marker8, Py_ssize_t size) noexcept nogil:
    """The header of a string or bytes value of ``size`` bytes in its 8, 16 or 32-bit length form,
    whose markers follow one another from ``marker8`` (str8 0xD9, bin8 0xC4)."""
    if size <= 0xFF:
        _marked(w, marker8, <uint64_t>size, 1)
    elif size <= 0xFFFF:
        _marked(w, marker8 + 1, <uint64_t>size, 2)
    else:
        _marked(w, marker8 + 2, <uint64_t>size, 4)


cdef inline void wire_int(Writer* w, int64_t value) noexcept nogil:
    """An integer (`MAX_HEADER` bytes of room)."""
    if 0 <= value < 128 or -32 <= value < 0:
        w.data[w.size] = <uint8_t>value
        w.size += 1
    elif value > 0:
        if value <= 0xFF:
            _marked(w, 0xCC, <uint64_t>value, 1)
        elif value <= 0xFFFF:
            _marked(w, 0xCD, <uint64_t>value, 2)
        elif value < (<int64_t>1 << 32):
            _marked(w, 0xCE, <uint64_t>value, 4)
        else:
            _marked(w, 0xCF, <uint64_t>value, 8)
    elif value >= -128:
        _marked(w, 0xD0, <uint64_t>value, 1)
    elif value >= -32768:
        _marked(w, 0xD1, <uint64_t>value, 2)
    elif value >= -(<int64_t>1 << 31):
        _marked(w, 0xD2, <uint64_t>value, 4)
    else:
        _marked(w, 0xD3, <uint64_t>value, 8)


cdef inline void wire_array(Writer* w, Py_ssize_t count) noexcept nogil:
    """An array's header (`MAX_HEADER` bytes of room); its ``count`` items follow."""
    if count < 16:
        w.data[w.size] = <uint8_t>(0x90 | count)
        w.size += 1
    elif count <= 0xFFFF:
        _marked(w, 0xDC, <uint64_t>count, 2)
    else:
        _marked(w, 0xDD, <uint64_t>count, 4)


cdef inline void wire_str(Writer* w, const char* text, Py_ssize_t size) noexcept nogil:
    """A UTF-8 string of ``size`` bytes (`MAX_HEADER` + ``size`` bytes of room)."""
    if size < 32:
        w.data[w.size] = <uint8_t>(0xA0 | size)
        w.size += 1
    else:
        _sized(w, 0xD9, size)
    memcpy(&w.data[w.size], text, <size_t>size)
    w.size += size


cdef inline void wire_float(Writer* w, double value) noexcept nogil:
    """A float, as msgspec writes every float: float 64 (`MAX_HEADER` bytes of room)."""
    cdef uint64_t word
    memcpy(&word, &value, 8)
    _marked(w, 0xCB, word, 8)


cdef inline void wire_bool(Writer* w, bint value) noexcept nogil:
    w.data[w.size] = 0xC3 if value else 0xC2
    w.size += 1


cdef inline void wire_bytes(Writer* w, const void* data, Py_ssize_t size) noexcept nogil:
    """``size`` bytes already encoded (``size`` bytes of room)."""
    memcpy(&w.data[w.size], data, <size_t>size)
    w.size += size


cdef inline void wire_bin(Writer* w, const void* data, Py_ssize_t size) noexcept nogil:
    """A bytes value of ``size`` bytes, as bin 8, 16 or 32 (`MAX_HEADER` + ``size`` bytes of room)."""
    _sized(w, 0xC4, size)
    wire_bytes(w, data, size)


cdef inline void wire_tagged(Writer* w, const char* tag, Py_ssize_t fields) noexcept nogil:
    """The header of an ``array_like`` tagged Struct with ``fields`` fields: the array and the tag
    (an ASCII class name shorter than 32 bytes; `MAX_HEADER` + 32 bytes of room)."""
    wire_array(w, fields + 1)
    wire_str(w, tag, <Py_ssize_t>strlen(tag))
