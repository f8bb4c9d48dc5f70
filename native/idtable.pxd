# A table of objects by int64 id, in the order they were added (idtable.pyx), for entry.pyx and
# reports.pyx: the TES's orders by exchange order id.

from cpython.ref cimport PyObject
from libc.stdint cimport int64_t


cdef class IdTable:
    cdef int64_t* ids
    cdef PyObject** objects
    cdef Py_ssize_t* slots
    cdef Py_ssize_t used, count, capacity, mask
    cdef int shift

    cdef object get_id(self, int64_t id)
    cdef int set_id(self, int64_t id, object item) except -1
    cdef object pop_id(self, int64_t id)
    cdef Py_ssize_t _find(self, int64_t id) noexcept
    cdef Py_ssize_t _slot(self, key) except -2
    cdef object _take(self, Py_ssize_t i)
    cdef int _rebuild(self, Py_ssize_t wanted) except -1
