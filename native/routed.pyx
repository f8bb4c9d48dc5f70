# cython: boundscheck=False, wraparound=False
"""The TES's record of an order routed to a book (`servers.orders.Order`): its integers held as C
int64s, which the TES's paths in C (`native.entry`, `native.reports`) read and write with no
Python int made, freed or compared; the rest (trader, symbol, enum members, notional, state,
requests in flight) as the objects the Python gives it. To the Python it is an object with these
attributes, made like the msgspec Struct it replaces (the same fields in the same order, the same
defaults), equal to another with the same fields; a ledger snapshot writes it as the array of its
fields (`row`), as it wrote the Struct.

Invariants: the integer fields hold what protocol messages and book events carry, which are int64
(setting a value beyond it raises OverflowError); ``filled`` is at most the quantity entered.
``notional`` (price x quantity of the fills, ticks x lots) is a Python int, since a sum of such
products can pass int64. An order refers to nothing that refers back to it, so it does not take
part in the cyclic collector, as the Struct did not (``gc=False``).
"""

cimport cython

from engine.lifecycle import TERMINAL, OrderState
from engine.types import SelfTradePrevention

cdef object PENDING = OrderState.PENDING, REJECTED = OrderState.REJECTED, NO_STP = SelfTradePrevention.NONE
cdef object ZERO = 0

FIELDS = ("order_id", "trader_id", "client_order_id", "symbol", "side", "order_type", "time_in_force", "price",
          "quantity", "stop_price", "display_quantity", "flags", "stp", "expire_at", "held", "filled", "notional",
          "state", "requests")
"""The fields in their order: the constructor's parameters, and a snapshot row's (`row`)."""
DEFAULTS = (0, 0, 0, NO_STP, 0, False, 0, 0, PENDING, None)
"""The defaults of the last fields, from ``stop_price`` on."""


@cython.no_gc
@cython.final
cdef class Order:
    """An order routed to a book (see the module docstring). ``held`` is True for a stop not
    triggered yet: its maker passes ``order_type in STOPS``. ``quantity`` is the open quantity."""

    def __cinit__(self):
        self.stp, self.notional, self.state = NO_STP, ZERO, PENDING

    def __init__(self, order_id, trader_id, client_order_id, symbol, side, order_type, time_in_force, price,
                 quantity, stop_price=0, display_quantity=0, flags=0, stp=NO_STP, expire_at=0, held=False,
                 filled=0, notional=0, state=PENDING, requests=None):
        self.order_id, self.trader_id, self.client_order_id, self.symbol = order_id, trader_id, client_order_id, symbol
        self.side, self.order_type, self.time_in_force, self.price = side, order_type, time_in_force, price
        self.quantity, self.stop_price, self.display_quantity, self.flags = quantity, stop_price, display_quantity, flags
        self.stp, self.expire_at, self.held, self.filled = stp, expire_at, held, filled
        self.notional, self.state, self.requests = notional, state, requests

    @property
    def accepted(self) -> bool:
        """The book has accepted it (until then, a refusal answers the submission)."""
        return self.state is not PENDING and self.state is not REJECTED

    @property
    def closed(self) -> bool:
        """The book holds none of it any more; kept only to answer requests in flight."""
        return self.state in TERMINAL

    def canceling(self) -> bool:
        return bool(self.requests) and any(request.cancel for request in self.requests)

    def average_price(self) -> float:
        return self.notional / self.filled if self.filled else 0.0

    def open_order(self):
        from servers.protocol import OpenOrder
        return OpenOrder(self.client_order_id, self.order_id, self.symbol, self.side, self.time_in_force,
                         self.price, self.quantity, self.filled, self.order_type, self.stop_price,
                         self.display_quantity, self.flags, self.stp, self.expire_at, self.held)

    def row(self) -> tuple:
        """Its fields in their order (`FIELDS`), its requests in flight as ``(cancel, client order
        id, reason)`` tuples: a snapshot's `servers.ledger.OrderRow`, which msgspec writes as it wrote
        the Struct."""
        if self.requests is None:
            return self._fields()
        requests = [(request.cancel, request.client_order_id, request.reason) for request in self.requests]
        return self._fields()[:-1] + (requests,)

    def _fields(self) -> tuple:
        return (self.order_id, self.trader_id, self.client_order_id, self.symbol, self.side, self.order_type,
                self.time_in_force, self.price, self.quantity, self.stop_price, self.display_quantity, self.flags,
                self.stp, self.expire_at, self.held, self.filled, self.notional, self.state, self.requests)

    def __eq__(self, other):
        if type(other) is not Order:
            return NotImplemented
        return self._fields() == other._fields()

    __hash__ = None

    def __repr__(self):
        return "Order(" + ", ".join(f"{name}={value!r}" for name, value in zip(FIELDS, self._fields())) + ")"
