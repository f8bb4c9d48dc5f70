# The OBS's order commands read from a frame in C (commands.pyx), for orderpath.pyx.

from libc.stdint cimport int64_t, uint64_t

from native.reader cimport Reader


cdef enum:
    SUBMIT = 0               # the kinds, as `NativeBook.execute_encoded` numbers them
    CANCEL = 1
    REPLACE = 2
    COMMAND_FIELDS = 16      # room for the most fields of one (BookSubmit has 15)
    SYMBOL_BYTES = 16        # a symbol's most bytes (protocol.Symbol: 16 characters, read as ASCII)
    ACCOUNT_BYTES = 64       # an account's most bytes (protocol.Account: 64 characters, read as ASCII)
    ACCOUNT_AT = 7           # a BookSubmit's account field


ctypedef struct SymbolSlot:
    uint64_t key[2]          # the symbol's bytes, zero-padded
    Py_ssize_t size          # their count; 0: an empty slot
    void* symbol             # the shard's str (a reference owned by the table)


cdef class CommandReader:
    cdef readonly tuple classes
    cdef object reasons
    cdef uint64_t reason_bits
    cdef Py_ssize_t max_bytes, max_messages
    cdef SymbolSlot* table
    cdef Py_ssize_t mask

    cdef list _read(self, const unsigned char* data, Py_ssize_t size)
    cdef bint _command(self, Reader* r, OrderCommand command) except -1
    cdef object _symbol(self, const char* text, Py_ssize_t size)


cdef class OrderCommand:
    cdef readonly int kind
    cdef readonly str symbol
    cdef readonly object identity     # once sequenced (`native.orderpath.OrderPath.sequence`): its sender's,
    cdef readonly int64_t sequence    # its shard sequence (0 before)
    cdef readonly int64_t stamp       # and its exchange time
    cdef int64_t values[COMMAND_FIELDS]
    cdef char account[ACCOUNT_BYTES]
    cdef Py_ssize_t account_size
    cdef CommandReader reader
