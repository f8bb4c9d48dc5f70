# A trader's cash and holdings as C records (portfolios.pyx), for reports.pyx: the fills of a frame
# booked with no Python int made while the values fit.

from libc.stdint cimport int64_t


cdef class Holding:
    cdef int64_t c_quantity, c_basis, c_realized
    cdef list wide

    cdef list _values(self)
    cdef int _set(self, int k, value) except -1
    cdef int _store(self, list values) except -1
    cdef void _keep(self, int64_t quantity, int64_t basis, int64_t realized) noexcept


cdef class Portfolio:
    cdef int64_t c_cash
    cdef object wide_cash
    cdef public dict holdings

    cdef void _keep_cash(self, int64_t cash) noexcept


cdef int fill(Portfolio portfolio, Holding holding, bint buy, int64_t price, int64_t quantity) except -1
