# The replies a shard keeps for a TES's Hello (replies.pyx), for orderpath.pyx.

from cpython.object cimport PyObject
from libc.stdint cimport int64_t


cdef class Replies:
    cdef PyObject** replies
    cdef PyObject** concerned
    cdef Py_ssize_t capacity, count, head
    cdef int64_t first_sequence

    cdef int add(self, int64_t sequence, bytes reply, tuple concerned) except -1
    cdef void _clear(self) noexcept
