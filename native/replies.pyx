# cython: boundscheck=False, wraparound=False
"""The replies a shard keeps for a TES's Hello (`servers.shard.Shard.replay`): the latest
``maxlen`` commands' encoded `Executed` replies with the TES ids each concerns, in a ring of C
pointers, so keeping one costs no tuple and no deque node (the OBS's order path keeps one per
command, `native.orderpath`).

Invariants: the ``len`` replies kept are those of consecutive sequences, ``first`` to ``first +
len - 1``, the oldest at ``head``; the ring holds a reference to each reply (bytes) and each
``concerned`` (a tuple of ints), and to nothing else, so it can be part of no reference cycle.
"""

from cpython.mem cimport PyMem_Calloc, PyMem_Free
from cpython.object cimport PyObject
from cpython.ref cimport Py_INCREF, Py_XDECREF
from libc.stdint cimport int64_t


cdef class Replies:
    """The latest ``maxlen`` replies (at least 0), oldest first; see the module docstring."""

    def __cinit__(self, Py_ssize_t maxlen):
        if maxlen < 0:
            raise ValueError(f"maxlen must be at least 0, not {maxlen}")
        self.capacity = maxlen
        self.replies = <PyObject**>PyMem_Calloc(max(maxlen, 1), sizeof(PyObject*))
        self.concerned = <PyObject**>PyMem_Calloc(max(maxlen, 1), sizeof(PyObject*))
        if self.replies == NULL or self.concerned == NULL:
            raise MemoryError()

    def __dealloc__(self):
        cdef Py_ssize_t i
        if self.replies != NULL and self.concerned != NULL:
            for i in range(self.capacity):
                Py_XDECREF(self.replies[i])
                Py_XDECREF(self.concerned[i])
        PyMem_Free(self.replies)
        PyMem_Free(self.concerned)

    @property
    def maxlen(self) -> int:
        return self.capacity

    @property
    def first(self):
        """The sequence of the oldest reply kept (None if none is)."""
        return self.first_sequence if self.count else None

    def __len__(self):
        return self.count

    def append(self, int64_t sequence, bytes reply not None, tuple concerned not None) -> None:
        """Keep ``reply`` of command ``sequence``, which concerns the TES ids ``concerned``; the
        oldest goes once ``maxlen`` are kept. A ``sequence`` that does not follow the last kept
        starts the replies afresh from it (the kept ones could not be replayed across the gap)."""
        self.add(sequence, reply, concerned)

    cdef int add(self, int64_t sequence, bytes reply, tuple concerned) except -1:
        """`append` from C."""
        cdef Py_ssize_t slot
        if self.count and sequence != self.first_sequence + self.count:
            self._clear()
        if self.capacity == 0:
            return 0
        if self.count == 0:
            self.first_sequence = sequence
        if self.count == self.capacity:
            slot = self.head
            Py_XDECREF(self.replies[slot])
            Py_XDECREF(self.concerned[slot])
            self.head = (self.head + 1) % self.capacity
            self.first_sequence += 1
        else:
            slot = (self.head + self.count) % self.capacity
            self.count += 1
        Py_INCREF(reply)
        Py_INCREF(concerned)
        self.replies[slot] = <PyObject*>reply
        self.concerned[slot] = <PyObject*>concerned
        return 0

    cdef void _clear(self) noexcept:
        """Keep no reply."""
        cdef Py_ssize_t i, slot
        for i in range(self.count):
            slot = (self.head + i) % self.capacity
            Py_XDECREF(self.replies[slot])
            Py_XDECREF(self.concerned[slot])
            self.replies[slot] = self.concerned[slot] = NULL
        self.count = self.head = 0

    def concerning(self, tes_id, int64_t start) -> list:
        """The replies kept from sequence ``start`` on (all if it is before the first) whose
        concerned TES ids hold ``tes_id``, oldest first."""
        cdef list found = []
        cdef Py_ssize_t i = max(0, start - self.first_sequence) if self.count else 0, slot
        while i < self.count:
            slot = (self.head + i) % self.capacity
            if tes_id in <tuple>self.concerned[slot]:
                found.append(<bytes>self.replies[slot])
            i += 1
        return found

    def items(self) -> list:
        """``(sequence, reply, concerned)`` of each reply kept, oldest first."""
        cdef Py_ssize_t i, slot
        cdef list found = []
        for i in range(self.count):
            slot = (self.head + i) % self.capacity
            found.append((self.first_sequence + i, <bytes>self.replies[slot], <tuple>self.concerned[slot]))
        return found

    def __iter__(self):
        return iter(self.items())

    def kept(self, Py_ssize_t maxlen):
        """A new ring of ``maxlen`` holding the latest of these replies that fit."""
        cdef Replies ring = Replies(maxlen)
        for sequence, reply, concerned in self.items()[max(0, self.count - maxlen):]:
            ring.add(sequence, reply, concerned)
        return ring
