# cython: boundscheck=False, wraparound=False
"""The records of `servers.portfolio.Portfolio` and `Holding` (their bases): a trader's cash and,
per symbol, the position, its cost basis and the P&L realized on it, held as C int64s while they
fit, so that the TES's reporter (`native.reports.Books`) books a fill with no Python int made,
read or freed. To the Python they are objects with the attributes ``cash`` and ``holdings``, and
``quantity``, ``basis`` and ``realized``, each an int of any size, read and set as before.

Invariants
----------
- A `Holding`'s fields are held in C (``wide`` None) while each lies strictly within
  ±`LARGE`; otherwise all three are Python ints in ``wide`` (a list of three, never shared). A
  `Portfolio`'s cash likewise: in C (``wide_cash`` None) or a Python int.
- `fill` books in C only a fill whose price and quantity lie in 1..`SMALL` - 1, on fields held in
  C: every product and sum then fits an int64 (each field below 2**62, each product below 2**62),
  and a result at or beyond `LARGE` is stored as a Python int. Any other fill is left to the
  Python's ints (`servers.portfolio`'s arithmetic), which give the same results.
- A record refers only to ints and, for a portfolio, its dict of holdings: no cycle runs through
  it unless a caller puts one there.
"""

cimport cython
from libc.stdint cimport int64_t

from native.int64 cimport LARGE, SMALL, as_int64

cdef extern from *:
    # ``basis * closed // size`` for ``basis`` >= 0 and ``size`` >= ``closed`` > 0, the product in
    # GCC's 128-bit ints (a basis within 2**62 times a quantity within 2**31)
    """
    static inline int64_t share_of(int64_t basis, int64_t closed, int64_t size) {
        return (int64_t)(((__int128)basis * closed) / size);
    }
    """
    int64_t share_of(int64_t basis, int64_t closed, int64_t size) noexcept nogil


cdef inline bint _narrow(int64_t value) noexcept:
    """Whether ``value`` is held in C."""
    return -LARGE < value < LARGE


@cython.no_gc
cdef class Holding:
    """One symbol's open position (signed lots), its signed cost basis (ticks x lots) and the P&L
    realized on it: see the module docstring."""

    def __init__(self):
        self.c_quantity = self.c_basis = self.c_realized = 0
        self.wide = None

    cdef list _values(self):
        """The three fields as Python ints, in a new list."""
        if self.wide is not None:
            return list(self.wide)
        return [self.c_quantity, self.c_basis, self.c_realized]

    cdef int _set(self, int k, value) except -1:
        """Field ``k`` (0: the quantity, 1: the basis, 2: the realized P&L) set to ``value``."""
        values = self._values()
        values[k] = value
        return self._store(values)

    cdef int _store(self, list values) except -1:
        """Hold ``values`` (three ints; TypeError for anything else, nothing changed): in C if each
        fits, else as they are."""
        cdef int64_t held[3]
        cdef bint narrow = True
        cdef int k
        for k in range(3):
            if as_int64(values[k], &held[k]) or not _narrow(held[k]):
                narrow = False
        if narrow:
            self._keep(held[0], held[1], held[2])
        else:
            self.wide = [int(value) for value in values]
        return 0

    cdef void _keep(self, int64_t quantity, int64_t basis, int64_t realized) noexcept:
        """Hold the three (each within int64) in C, or as Python ints if one does not fit."""
        if _narrow(quantity) and _narrow(basis) and _narrow(realized):
            self.c_quantity, self.c_basis, self.c_realized, self.wide = quantity, basis, realized, None
        else:
            self.wide = [quantity, basis, realized]

    @property
    def quantity(self):
        return self.c_quantity if self.wide is None else self.wide[0]

    @quantity.setter
    def quantity(self, value):
        self._set(0, value)

    @property
    def basis(self):
        return self.c_basis if self.wide is None else self.wide[1]

    @basis.setter
    def basis(self, value):
        self._set(1, value)

    @property
    def realized(self):
        return self.c_realized if self.wide is None else self.wide[2]

    @realized.setter
    def realized(self, value):
        self._set(2, value)

    def __repr__(self):
        return f"{type(self).__name__}(quantity={self.quantity}, basis={self.basis}, realized={self.realized})"


cdef class Portfolio:
    """A trader's cash (ticks x lots: a purchase subtracts price x quantity, a sale adds it) and
    holdings by symbol: see the module docstring."""

    def __init__(self):
        self.c_cash, self.wide_cash = 0, None
        self.holdings = {}

    cdef void _keep_cash(self, int64_t cash) noexcept:
        """Hold ``cash`` in C, or as a Python int if it does not fit."""
        if _narrow(cash):
            self.c_cash, self.wide_cash = cash, None
        else:
            self.wide_cash = cash

    @property
    def cash(self):
        return self.c_cash if self.wide_cash is None else self.wide_cash

    @cash.setter
    def cash(self, value):
        cdef int64_t held
        if as_int64(value, &held) or not _narrow(held):
            self.wide_cash = int(value)
        else:
            self._keep_cash(held)


cdef int fill(Portfolio portfolio, Holding holding, bint buy, int64_t price, int64_t quantity) except -1:
    """`servers.portfolio.Portfolio.fill` of ``holding`` (``portfolio``'s) in C: 1 if booked; 0,
    nothing changed, if the fill or a field lies beyond what C books (the module docstring), for
    the Python's ints to book."""
    cdef int64_t cash, position, basis, realized, signed, size, closed, share, opened
    if (portfolio.wide_cash is not None or holding.wide is not None or not 0 < price < SMALL
            or not 0 < quantity < SMALL):
        return 0
    cash, position = portfolio.c_cash, holding.c_quantity
    basis, realized = holding.c_basis, holding.c_realized
    portfolio._keep_cash(cash - price * quantity if buy else cash + price * quantity)
    signed = quantity if buy else -quantity
    if position == 0 or (position > 0) == buy:
        holding._keep(position + signed, basis + signed * price, realized)
        return 1
    size = position if position > 0 else -position
    closed = quantity if quantity < size else size
    share = share_of(basis if basis > 0 else -basis, closed, size)
    if position > 0:
        realized += price * closed - share
        basis -= share
        position -= closed
    else:
        realized += share - price * closed
        basis += share
        position += closed
    opened = quantity - closed
    if opened:
        position = opened if buy else -opened
        basis = position * price
    holding._keep(position, basis, realized)
    return 1
