# Python ints read as C int64s, for book.pyx (every command's fields) and orderpath.pyx (an order
# id's TES). `cdef inline`: compiled into each module that cimports it.

from cpython.long cimport PyLong_AsLongLongAndOverflow
from libc.stdint cimport int64_t


cdef inline int as_int64(object value, int64_t* out) except -1:
    """``value`` (an int, or anything with ``__index__``; TypeError for anything else, a float
    included) into ``out``: 0, or 1 if it lies beyond int64 (a book command is then refused
    VALUE_OUT_OF_RANGE, as the reference book does)."""
    cdef int overflow = 0
    out[0] = PyLong_AsLongLongAndOverflow(value, &overflow)
    return overflow != 0
