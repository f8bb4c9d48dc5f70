# The TES's record of an order routed to a book (routed.pyx), for entry.pyx and reports.pyx: its
# integers as C int64s, read and written there with no Python int made.

from libc.stdint cimport int64_t


cdef class Order:
    cdef public int64_t order_id
    cdef public object trader_id
    cdef public int64_t client_order_id
    cdef public object symbol, side, order_type, time_in_force
    cdef public int64_t price, quantity, stop_price, display_quantity, flags
    cdef public object stp
    cdef public int64_t expire_at
    cdef public bint held
    cdef public int64_t filled
    cdef public object notional, state, requests
