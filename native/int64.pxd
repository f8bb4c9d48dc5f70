# Python ints read as C int64s, for book.pyx (every command's fields) and orderpath.pyx (an order
# id's TES). `cdef inline`: compiled into each module that cimports it.

from cpython.long cimport PyLong_AsLongLongAndOverflow
from libc.stdint cimport int64_t

cdef extern from *:
    # A quantity or price below SMALL (2**31) times another is below 2**62, and a sum of two values
    # within LARGE (2**62) either way fits an int64: the TES's reports and portfolios (reports.pyx,
    # portfolios.pyx) do their arithmetic in C within these bounds and with Python's ints beyond.
    """
    #define NATIVE_INT64_SMALL (((int64_t)1) << 31)
    #define NATIVE_INT64_LARGE (((int64_t)1) << 62)
    """
    const int64_t SMALL "NATIVE_INT64_SMALL"
    const int64_t LARGE "NATIVE_INT64_LARGE"


cdef inline int as_int64(object value, int64_t* out) except -1:
    """``value`` (an int, or anything with ``__index__``; TypeError for anything else, a float
    included) into ``out``: 0, or 1 if it lies beyond int64 (a book command is then refused
    VALUE_OUT_OF_RANGE, as the reference book does)."""
    cdef int overflow = 0
    out[0] = PyLong_AsLongLongAndOverflow(value, &overflow)
    return overflow != 0
