# Journal records framed as they are made (framing.pyx), for orderpath.pyx.

from libc.stdint cimport uint64_t


cdef class Records:
    cdef char* data
    cdef Py_ssize_t size, capacity, exports
    cdef readonly Py_ssize_t count
    cdef uint64_t first_sequence, last_sequence

    cdef int frame(self, uint64_t sequence, const char* payload, Py_ssize_t size) except -1
