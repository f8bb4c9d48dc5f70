# MessagePack read in C: the values msgspec writes (native/reports.pyx reads the book servers'
# frames of replies without making an object of each event).
#
# A `Reader` is a position in a buffer it does not own. Each ``read_*`` reads one value of its kind
# at the position and moves past it, or returns False and leaves the position where it was: the
# bytes there are another kind of value, run past the end, or (an integer) lie beyond int64. The
# caller then hands the whole buffer to msgspec, which decides what it is. `skip` moves past one
# value of any kind, nested at most `MAX_DEPTH` deep.
#
# Everything here is `cdef inline`: compiled into each module that cimports it.

from libc.stdint cimport INT64_MAX, int8_t, int16_t, int32_t, int64_t, uint8_t, uint64_t
from libc.string cimport memcmp


cdef enum:
    MAX_DEPTH = 32           # the deepest nesting `skip` follows


ctypedef struct Reader:
    const uint8_t* data
    Py_ssize_t size          # bytes in the buffer
    Py_ssize_t pos           # the next byte to read


cdef extern from *:
    """
    #include <stdint.h>
    #include <string.h>
    /* The `count` (1, 2, 4 or 8) bytes at `data` as an unsigned big-endian number: one load of
       that size, byte-swapped on a little-endian GCC or Clang build. */
    static inline uint64_t reader_big_endian(const uint8_t* data, int count) {
    #if defined(__GNUC__) && defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
        uint16_t u16; uint32_t u32; uint64_t u64;
        switch (count) {
        case 1: return data[0];
        case 2: memcpy(&u16, data, 2); return __builtin_bswap16(u16);
        case 4: memcpy(&u32, data, 4); return __builtin_bswap32(u32);
        case 8: memcpy(&u64, data, 8); return __builtin_bswap64(u64);
        }
    #endif
        uint64_t value = 0;
        for (int i = 0; i < count; i++) value = (value << 8) | data[i];
        return value;
    }
    """
    uint64_t _big_endian "reader_big_endian"(const uint8_t* data, int count) noexcept nogil


cdef inline bint _room(Reader* r, Py_ssize_t n) noexcept nogil:
    return n <= r.size - r.pos


cdef inline bint read_int(Reader* r, int64_t* out) noexcept nogil:
    """An integer, into ``out`` (False if none, or beyond int64)."""
    cdef uint8_t marker
    cdef uint64_t value
    cdef int count
    if not _room(r, 1):
        return False
    marker = r.data[r.pos]
    if marker < 0x80 or marker >= 0xE0:
        out[0] = <int8_t>marker
        r.pos += 1
        return True
    if 0xCC <= marker <= 0xCF:
        count = 1 << (marker - 0xCC)
    elif 0xD0 <= marker <= 0xD3:
        count = 1 << (marker - 0xD0)
    else:
        return False
    if not _room(r, 1 + count):
        return False
    value = _big_endian(&r.data[r.pos + 1], count)
    if marker <= 0xCF:
        if value > <uint64_t>INT64_MAX:
            return False
        out[0] = <int64_t>value
    elif count == 1:
        out[0] = <int8_t>value
    elif count == 2:
        out[0] = <int16_t>value
    elif count == 4:
        out[0] = <int32_t>value
    else:
        out[0] = <int64_t>value
    r.pos += 1 + count
    return True


cdef inline bint read_enum(Reader* r, tuple values, int64_t* out) noexcept:
    """An int that is one of ``values``' (an enum's members, by value; not nogil: it takes the tuple)."""
    return read_int(r, out) and 0 <= out[0] < len(values)


cdef inline bint _size(Reader* r, int count, Py_ssize_t* size) noexcept nogil:
    """A header of a marker and a ``count``-byte size: the size into ``size``, the position after it."""
    if not _room(r, 1 + count):
        return False
    size[0] = <Py_ssize_t>_big_endian(&r.data[r.pos + 1], count)
    r.pos += 1 + count
    return True


cdef inline bint read_array(Reader* r, Py_ssize_t* count) noexcept nogil:
    """An array's header: its item count into ``count``; the items follow."""
    cdef uint8_t marker
    if not _room(r, 1):
        return False
    marker = r.data[r.pos]
    if marker >> 4 == 0x9:
        count[0] = marker & 0x0F
        r.pos += 1
        return True
    if marker == 0xDC:
        return _size(r, 2, count)
    if marker == 0xDD:
        return _size(r, 4, count)
    return False


cdef inline bint read_str(Reader* r, const char** text, Py_ssize_t* size) noexcept nogil:
    """A string: its bytes (not copied) and their count (its UTF-8 is not checked)."""
    cdef Py_ssize_t start = r.pos, n
    cdef uint8_t marker
    if not _room(r, 1):
        return False
    marker = r.data[r.pos]
    if marker >> 5 == 0xA0 >> 5:
        n = marker & 0x1F
        r.pos += 1
    elif not (0xD9 <= marker <= 0xDB and _size(r, 1 << (marker - 0xD9), &n)):
        return False
    if not _room(r, n):
        r.pos = start
        return False
    text[0] = <const char*>&r.data[r.pos]
    size[0] = n
    r.pos += n
    return True


cdef inline bint read_tag(Reader* r, const char* tag, Py_ssize_t size) noexcept nogil:
    """The string ``tag`` (``size`` bytes) and nothing else; the position unchanged if not."""
    cdef Py_ssize_t start = r.pos, n
    cdef const char* text
    if not read_str(r, &text, &n):
        return False
    if n != size or memcmp(text, tag, <size_t>size) != 0:
        r.pos = start
        return False
    return True


cdef inline bint skip(Reader* r, int depth) noexcept nogil:
    """Move past one value of any kind (False, the position somewhere inside it, if it is not one
    whole value or nests deeper than `MAX_DEPTH` from ``depth``)."""
    cdef uint8_t marker
    cdef Py_ssize_t n, i
    cdef int64_t ignored
    cdef const char* text
    if not _room(r, 1) or depth > MAX_DEPTH:
        return False
    marker = r.data[r.pos]
    if marker < 0x80 or marker >= 0xE0 or 0xCC <= marker <= 0xD3:
        if read_int(r, &ignored):
            return True
        if not _room(r, 9):                   # a uint64 beyond int64
            return False
        r.pos += 9
        return True
    if marker >> 5 == 0xA0 >> 5 or 0xD9 <= marker <= 0xDB:
        return read_str(r, &text, &n)
    if marker == 0xC0 or marker == 0xC2 or marker == 0xC3:
        r.pos += 1
        return True
    if marker == 0xCA or marker == 0xCB:
        n = 5 if marker == 0xCA else 9
    elif 0xC4 <= marker <= 0xC6:              # bin 8, 16, 32: a size and the data
        if not _size(r, 1 << (marker - 0xC4), &n):
            return False
    elif 0xD4 <= marker <= 0xD8:              # fixext 1, 2, 4, 8, 16: a type byte and the data
        n = 2 + (1 << (marker - 0xD4))
    elif 0xC7 <= marker <= 0xC9:              # ext 8, 16, 32: a size, a type byte and the data
        i = 1 << (marker - 0xC7)
        if not _room(r, 1 + i):
            return False
        n = 2 + i + <Py_ssize_t>_big_endian(&r.data[r.pos + 1], <int>i)
    elif marker >> 4 == 0x9 or marker == 0xDC or marker == 0xDD:
        if not read_array(r, &n):
            return False
        for i in range(n):
            if not skip(r, depth + 1):
                return False
        return True
    elif marker >> 4 == 0x8 or marker == 0xDE or marker == 0xDF:
        if marker >> 4 == 0x8:
            n = marker & 0x0F
            r.pos += 1
        elif not _size(r, 2 if marker == 0xDE else 4, &n):
            return False
        for i in range(2 * n):
            if not skip(r, depth + 1):
                return False
        return True
    else:
        return False
    if not _room(r, n):
        return False
    r.pos += n
    return True
