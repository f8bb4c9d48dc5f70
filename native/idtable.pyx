# cython: boundscheck=False, wraparound=False
"""A table of objects by int64 id, in the order they were added: the TES's orders by exchange
order id (`servers.orders.OrderRegistry.orders`, and each trader's open orders), which its paths
in C (`native.entry`, `native.reports`) find, add and remove by the C integer itself, with no
Python int made for the key and no hashing or comparing of one (a dict, keyed by Python ints,
did both for every order it was asked about).

To the Python it is a mapping with a dict's methods, its keys the ids (ints within int64; any
other key is never in it, and setting one raises): ``get``, ``pop``, ``[]``, ``in``, ``len``,
iteration in the order added, ``clear``, and equality with any mapping of the same items.
``keys``, ``values`` and ``items`` return lists, copies taken when asked for, so a loop over them
may change the table.

Invariants
----------
- The entries ``0 .. used - 1`` hold the ids in ``ids`` and their objects in ``objects``, in the
  order they were added; a removed entry's object is NULL (its id is left as it was). ``count``
  entries are live; ``used <= capacity``, the entries allocated.
- ``slots`` (``mask + 1`` of them, a power of two at least twice ``capacity``, so never more than
  half used) index the entries by id: open addressing with linear probing from the id's
  Fibonacci hash (its top bits, `_home`). A slot holds 0 (empty), an entry's index + 1, or -1 (a
  removed entry's: a probe passes it). Every live entry's id is found from its home before the
  first empty slot; no two slots name the same entry.
- When ``used`` reaches ``capacity``, the next addition first rebuilds the table for twice the
  live entries (`_rebuild`): the live entries moved to the front in their order, the slots made
  again without removed ones; in place unless that is more than the table holds (it grows) or at
  most a quarter of it (it shrinks). So orders added and removed again and again, about as many
  live at a time, cost no allocation in the steady state.
- The table holds one reference to each live item. It does not take part in the cyclic
  collector: an item must not refer back to the table (an order does not).
"""

from cpython.long cimport PyLong_Check
from cpython.mem cimport PyMem_Free, PyMem_Malloc
from cpython.ref cimport PyObject, Py_XDECREF, Py_XINCREF
from libc.stdint cimport int64_t, uint64_t
from libc.string cimport memset

from native.int64 cimport as_int64

cdef uint64_t FIBONACCI = 0x9E3779B97F4A7C15ULL   # 2**64 / the golden ratio, odd
cdef Py_ssize_t SMALLEST = 32                     # the fewest entries allocated
cdef object MISSING = object()


cdef inline Py_ssize_t _home(int64_t id, int shift) noexcept:
    """The first slot to probe for ``id``: the top bits of its Fibonacci hash."""
    return <Py_ssize_t>((<uint64_t>id * FIBONACCI) >> shift)


cdef inline bint _id(object key, int64_t* id) except -1:
    """Whether ``key`` is an id (an int within int64), into ``id``."""
    return PyLong_Check(key) and not as_int64(key, id)


cdef class IdTable:
    """Objects by int64 id, in the order added (see the module docstring). ``items`` is a
    mapping or an iterable of ``(id, object)`` pairs to start with."""

    def __cinit__(self):
        self.ids, self.objects, self.slots = NULL, NULL, NULL
        self.used = self.count = self.capacity = 0
        self.mask, self.shift = -1, 64

    def __init__(self, items=()):
        for key, item in (items.items() if hasattr(items, "items") else items):
            self[key] = item

    def __dealloc__(self):
        cdef Py_ssize_t e
        for e in range(self.used):
            Py_XDECREF(self.objects[e])
        PyMem_Free(self.ids)
        PyMem_Free(self.objects)
        PyMem_Free(self.slots)

    # ---------------------------------------------------------------- in C

    cdef Py_ssize_t _find(self, int64_t id) noexcept:
        """The slot of ``id``'s entry, or -1 if it is not in the table."""
        cdef Py_ssize_t i, s
        if self.count == 0:
            return -1
        i = _home(id, self.shift)
        while True:
            s = self.slots[i]
            if s == 0:
                return -1
            if s > 0 and self.ids[s - 1] == id:
                return i
            i = (i + 1) & self.mask

    cdef object get_id(self, int64_t id):
        """The object of ``id``, or None."""
        cdef Py_ssize_t i = self._find(id)
        return None if i < 0 else <object>self.objects[self.slots[i] - 1]

    cdef int set_id(self, int64_t id, object item) except -1:
        """``item`` for ``id``: in its entry if it has one, else in a new one, last."""
        cdef Py_ssize_t i = self._find(id), e
        cdef PyObject* old
        if i >= 0:
            e = self.slots[i] - 1
            old = self.objects[e]
            Py_XINCREF(<PyObject*>item)
            self.objects[e] = <PyObject*>item
            Py_XDECREF(old)
            return 0
        if self.used == self.capacity:
            self._rebuild(2 * (self.count + 1))
        i = _home(id, self.shift)
        while self.slots[i] != 0:
            i = (i + 1) & self.mask
        e = self.used
        self.ids[e] = id
        Py_XINCREF(<PyObject*>item)
        self.objects[e] = <PyObject*>item
        self.slots[i] = e + 1
        self.used += 1
        self.count += 1
        return 0

    cdef object pop_id(self, int64_t id):
        """Remove ``id``'s entry: its object, or None if it had none."""
        cdef Py_ssize_t i = self._find(id)
        return None if i < 0 else self._take(i)

    cdef object _take(self, Py_ssize_t i):
        """Remove the entry of slot ``i`` (`_find`'s): its object."""
        cdef Py_ssize_t e = self.slots[i] - 1
        cdef PyObject* held = self.objects[e]
        self.objects[e] = NULL
        self.slots[i] = -1
        self.count -= 1
        item = <object>held
        Py_XDECREF(held)
        return item

    cdef int _rebuild(self, Py_ssize_t wanted) except -1:
        """Room for ``wanted`` entries, the live ones first in their order, the slots made again
        (see the invariants): in the same arrays unless ``wanted`` is more than they hold or at most
        a quarter of it, so that a table whose count goes up and down keeps its size; else in new
        ones of ``wanted`` entries (at least `SMALLEST`)."""
        cdef Py_ssize_t capacity = self.capacity, slots = 1, e, at = 0, i
        cdef int shift = 64
        cdef int64_t* ids = self.ids
        cdef PyObject** objects = self.objects
        cdef Py_ssize_t* index = self.slots
        if wanted > capacity or 4 * wanted <= capacity:
            capacity = max(wanted, SMALLEST)
        while slots < 2 * capacity:
            slots *= 2
            shift -= 1
        if capacity != self.capacity:
            ids = <int64_t*>PyMem_Malloc(capacity * sizeof(int64_t))
            objects = <PyObject**>PyMem_Malloc(capacity * sizeof(PyObject*))
            index = <Py_ssize_t*>PyMem_Malloc(slots * sizeof(Py_ssize_t))
            if ids == NULL or objects == NULL or index == NULL:
                PyMem_Free(ids)
                PyMem_Free(objects)
                PyMem_Free(index)
                raise MemoryError("out of memory for a table of orders")
        for e in range(self.used):
            if self.objects[e] != NULL:
                ids[at], objects[at] = self.ids[e], self.objects[e]
                at += 1
        if ids != self.ids:
            PyMem_Free(self.ids)
            PyMem_Free(self.objects)
            PyMem_Free(self.slots)
        self.ids, self.objects, self.slots = ids, objects, index
        self.capacity, self.used, self.mask, self.shift = capacity, at, slots - 1, shift
        memset(index, 0, slots * sizeof(Py_ssize_t))
        for e in range(at):
            i = _home(ids[e], shift)
            while index[i] != 0:
                i = (i + 1) & self.mask
            index[i] = e + 1
        return 0

    # ---------------------------------------------------------------- to the Python

    def __len__(self):
        return self.count

    def __sizeof__(self):
        """Its bytes, the arrays of its entries and slots included (`sys.getsizeof`)."""
        return (type(self).__basicsize__ + self.capacity * (sizeof(int64_t) + sizeof(PyObject*))
                + (self.mask + 1) * sizeof(Py_ssize_t))

    cdef Py_ssize_t _slot(self, key) except -2:
        """The slot of ``key``'s entry, or -1 if ``key`` is not an id in the table."""
        cdef int64_t id
        return self._find(id) if _id(key, &id) else -1

    def __contains__(self, key):
        return self._slot(key) >= 0

    def __getitem__(self, key):
        cdef Py_ssize_t i = self._slot(key)
        if i < 0:
            raise KeyError(key)
        return <object>self.objects[self.slots[i] - 1]

    def __setitem__(self, key, item):
        cdef int64_t id
        if not PyLong_Check(key):
            raise TypeError(f"a table of orders is keyed by int64 ids, not {type(key).__name__}")
        if as_int64(key, &id):
            raise OverflowError(f"{key} lies beyond int64: not an order id")
        self.set_id(id, item)

    def __delitem__(self, key):
        cdef Py_ssize_t i = self._slot(key)
        if i < 0:
            raise KeyError(key)
        self._take(i)

    def get(self, key, default=None):
        cdef Py_ssize_t i = self._slot(key)
        return default if i < 0 else <object>self.objects[self.slots[i] - 1]

    def pop(self, key, default=MISSING):
        cdef Py_ssize_t i = self._slot(key)
        if i >= 0:
            return self._take(i)
        if default is MISSING:
            raise KeyError(key)
        return default

    def keys(self) -> list:
        cdef Py_ssize_t e
        return [self.ids[e] for e in range(self.used) if self.objects[e] != NULL]

    def values(self) -> list:
        cdef Py_ssize_t e
        return [<object>self.objects[e] for e in range(self.used) if self.objects[e] != NULL]

    def items(self) -> list:
        cdef Py_ssize_t e
        return [(self.ids[e], <object>self.objects[e]) for e in range(self.used) if self.objects[e] != NULL]

    def __iter__(self):
        return iter(self.keys())

    def clear(self):
        cdef Py_ssize_t e
        cdef PyObject* held
        for e in range(self.used):
            held, self.objects[e] = self.objects[e], NULL
            Py_XDECREF(held)
        self.used = self.count = 0
        if self.slots != NULL:
            memset(self.slots, 0, (self.mask + 1) * sizeof(Py_ssize_t))

    def __eq__(self, other):
        if not hasattr(other, "items") or not hasattr(other, "get"):
            return NotImplemented
        if len(self) != len(other):
            return False
        return all(key in other and other[key] == item for key, item in self.items())

    __hash__ = None

    def __repr__(self):
        return f"IdTable({dict(self.items())!r})"
