"""Enumerations and hard limits shared by every book, server and client.

Prices are integers in ticks and quantities integers in lots from the wire to the
core; decimals exist only at the edges (display). The numeric values of these
enums are part of the wire and stream formats: never renumber a member.
"""

from enum import IntEnum, IntFlag

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
"""Every integer a book takes (ids, prices, quantities, codes) is an int64; one outside is refused
(`RejectReason.VALUE_OUT_OF_RANGE`) before any other rule, by both books alike."""

MAX_QUANTITY = 1_000_000_000
"""Largest quantity (lots) a book accepts on one order.

It keeps every level total below 2**62 even with 2**31 orders on one level, so
no sum in the book can overflow an int64.
"""


class Side(IntEnum):
    BUY = 0
    SELL = 1


class OrderType(IntEnum):
    LIMIT = 0
    MARKET = 1
    STOP = 2
    """Held outside the book until the last trade price reaches its stop price, then a market IOC."""
    STOP_LIMIT = 3
    """Held likewise, then a limit order with its price, time in force and expiry."""


class TimeInForce(IntEnum):
    """How long an order may live.

    GTC and DAY rest their remainder; DAY orders are expired by the explicit
    end-of-day command. IOC discards its remainder; FOK trades its whole quantity
    at once or nothing at all.
    """

    GTC = 0
    IOC = 1
    FOK = 2
    DAY = 3
    GTD = 4
    """Good till date: rests until the book's logical clock reaches its ``expire_at``."""


class OrderFlags(IntFlag):
    """Bits of a new order's ``flags``; any other bit is refused (`RejectReason.UNKNOWN_FLAGS`)."""

    POST_ONLY = 1
    """Only ever a maker: refused (`RejectReason.POST_ONLY_WOULD_TAKE`) if it would trade on arrival."""


class SelfTradePrevention(IntEnum):
    """What happens when a taker meets a resting order of the same non-zero owner (the taker's mode)."""

    NONE = 0
    """They trade as usual."""
    CANCEL_TAKER = 1
    """The taker's remainder is canceled; the resting order is untouched."""
    CANCEL_MAKER = 2
    """The resting order is canceled (its whole open quantity) and the taker goes on."""
    CANCEL_BOTH = 3
    """The resting order and the taker's remainder are canceled."""
    DECREMENT = 4
    """Both shrink by the smaller open quantity with no trade; an order left at 0 is gone."""


class Phase(IntEnum):
    """A book's trading phase."""

    CONTINUOUS = 0
    """Orders match on arrival."""
    CALL = 1
    """A call auction: orders rest without matching (the book may cross) until the uncross."""
    HALTED = 2
    """No new orders; cancels, reductions in place, clock and phase commands only."""


class RejectReason(IntEnum):
    """Why a command was refused, numbered in ranges by the subsystem that refuses.

    1xxx: the book's own validation of a command's fields.
    2xxx: the book's state (matching).
    3xxx: instrument reference data (checked by the trading engine server).
    4xxx: pre-trade risk limits of the trader (trading engine server).
    5xxx: the client session (logon, framing, decoding).
    6xxx: the exchange itself (routing, shutdown).
    """

    UNKNOWN_ORDER_TYPE = 1001
    UNKNOWN_SIDE = 1002
    UNKNOWN_TIME_IN_FORCE = 1003
    INVALID_QUANTITY = 1004
    QUANTITY_TOO_LARGE = 1005
    INVALID_PRICE = 1006
    MARKET_ORDER_CANNOT_REST = 1007
    DUPLICATE_ORDER_ID = 1008
    VALUE_OUT_OF_RANGE = 1009
    UNKNOWN_FLAGS = 1010
    UNKNOWN_STP_MODE = 1011
    INVALID_STOP_PRICE = 1012
    INVALID_DISPLAY_QUANTITY = 1013
    POST_ONLY_NOT_ALLOWED = 1014
    EXPIRE_TIME_PASSED = 1015
    CLOCK_BACKWARDS = 1016
    UNKNOWN_PHASE = 1017

    UNKNOWN_ORDER = 2001
    FOK_NOT_FILLABLE = 2002
    POST_ONLY_WOULD_TAKE = 2003
    NOT_ALLOWED_IN_PHASE = 2004
    NOT_REPLACEABLE = 2005

    UNKNOWN_SYMBOL = 3001
    PRICE_OFF_TICK = 3002
    QUANTITY_OFF_LOT = 3003
    QUANTITY_BELOW_MINIMUM = 3004
    QUANTITY_ABOVE_MAXIMUM = 3005
    PRICE_OUTSIDE_BAND = 3006
    ORDER_TYPE_DISABLED = 3007
    ICEBERG_TOO_MANY_SLICES = 3008
    STOP_PRICE_TOO_FAR = 3009
    STOP_WOULD_TRIGGER = 3010

    ORDER_QUANTITY_LIMIT = 4001
    NOTIONAL_LIMIT = 4002
    OPEN_ORDERS_LIMIT = 4003
    MESSAGE_RATE_LIMIT = 4004
    DUPLICATE_CLIENT_ORDER_ID = 4005
    QUERY_RATE_LIMIT = 4006
    CLIENT_ORDER_IDS_OUT_OF_ORDER = 4007

    NOT_LOGGED_ON = 5001
    BAD_CREDENTIALS = 5002
    ALREADY_LOGGED_ON = 5003
    MALFORMED_MESSAGE = 5004
    FRAME_TOO_LARGE = 5005
    LOGON_THROTTLED = 5006
    NOT_AUTHORIZED = 5007

    BOOK_UNAVAILABLE = 6001
    EXCHANGE_CLOSING = 6002
    JOURNAL_UNAVAILABLE = 6003
    TOO_MANY_SUBSCRIBERS = 6004

    @property
    def text(self) -> str:
        """The standard human-readable explanation sent with the code."""
        return REJECT_TEXT[self]


REJECT_TEXT = {
    RejectReason.UNKNOWN_ORDER_TYPE: "unknown order type",
    RejectReason.UNKNOWN_SIDE: "unknown side",
    RejectReason.UNKNOWN_TIME_IN_FORCE: "unknown time in force",
    RejectReason.INVALID_QUANTITY: "quantity must be positive",
    RejectReason.QUANTITY_TOO_LARGE: f"quantity exceeds the book limit of {MAX_QUANTITY} lots",
    RejectReason.INVALID_PRICE: "limit price must be positive",
    RejectReason.MARKET_ORDER_CANNOT_REST: "a market order must be IOC or FOK",
    RejectReason.DUPLICATE_ORDER_ID: "order id already used by an accepted order",
    RejectReason.VALUE_OUT_OF_RANGE: "a value is outside the book's 64-bit integer range",
    RejectReason.UNKNOWN_FLAGS: "unknown order flags: only post-only (bit 0) is defined",
    RejectReason.UNKNOWN_STP_MODE: "unknown self-trade prevention mode",
    RejectReason.INVALID_STOP_PRICE: "stop price must be positive",
    RejectReason.INVALID_DISPLAY_QUANTITY: "display quantity must be 0 (all visible) or at most the quantity, on a "
    "limit order that is neither IOC nor FOK",
    RejectReason.POST_ONLY_NOT_ALLOWED: "post-only applies to limit orders that are neither IOC nor FOK",
    RejectReason.EXPIRE_TIME_PASSED: "good-till-date expiry is not after the book's current time",
    RejectReason.CLOCK_BACKWARDS: "the clock cannot go back",
    RejectReason.UNKNOWN_PHASE: "unknown trading phase",
    RejectReason.UNKNOWN_ORDER: "no live order with this id",
    RejectReason.FOK_NOT_FILLABLE: "fill-or-kill quantity not available within the limit",
    RejectReason.POST_ONLY_WOULD_TAKE: "post-only order would trade on arrival",
    RejectReason.NOT_ALLOWED_IN_PHASE: "not allowed in the book's current trading phase",
    RejectReason.NOT_REPLACEABLE: "held stops and waiting auction market orders cannot be replaced",
    RejectReason.UNKNOWN_SYMBOL: "unknown symbol",
    RejectReason.PRICE_OFF_TICK: "price is not a multiple of the tick size",
    RejectReason.QUANTITY_OFF_LOT: "quantity is not a multiple of the lot size",
    RejectReason.QUANTITY_BELOW_MINIMUM: "quantity below the instrument minimum",
    RejectReason.QUANTITY_ABOVE_MAXIMUM: "quantity above the instrument maximum",
    RejectReason.PRICE_OUTSIDE_BAND: "price outside the band around the reference price",
    RejectReason.ORDER_TYPE_DISABLED: "this kind of order is not enabled for the instrument",
    RejectReason.ICEBERG_TOO_MANY_SLICES: "iceberg needs more display slices (quantity / display quantity) than the "
    "instrument allows",
    RejectReason.STOP_PRICE_TOO_FAR: "stop price further from the last trade price than the instrument allows",
    RejectReason.STOP_WOULD_TRIGGER: "stop price on the wrong side of the last trade price: it would trigger at once",
    RejectReason.ORDER_QUANTITY_LIMIT: "quantity above the trader's per-order limit",
    RejectReason.NOTIONAL_LIMIT: "notional above the trader's per-order limit",
    RejectReason.OPEN_ORDERS_LIMIT: "the trader has the maximum number of open orders",
    RejectReason.MESSAGE_RATE_LIMIT: "message rate limit exceeded",
    RejectReason.DUPLICATE_CLIENT_ORDER_ID: "client order id already used in this session",
    RejectReason.QUERY_RATE_LIMIT: "query rate limit exceeded",
    RejectReason.CLIENT_ORDER_IDS_OUT_OF_ORDER: "too many client order ids used out of order in this session",
    RejectReason.NOT_LOGGED_ON: "log on first",
    RejectReason.BAD_CREDENTIALS: "unknown trader or wrong API key",
    RejectReason.ALREADY_LOGGED_ON: "this session is already logged on",
    RejectReason.MALFORMED_MESSAGE: "malformed message",
    RejectReason.FRAME_TOO_LARGE: "frame larger than the protocol allows",
    RejectReason.LOGON_THROTTLED: "too many logon attempts: try again later",
    RejectReason.NOT_AUTHORIZED: "this peer is not authorized to send this command",
    RejectReason.BOOK_UNAVAILABLE: "the order book server for this symbol is not available",
    RejectReason.EXCHANGE_CLOSING: "the exchange is shutting down",
    RejectReason.JOURNAL_UNAVAILABLE: "the order book server cannot write its journal",
    RejectReason.TOO_MANY_SUBSCRIBERS: "the order book server sends market data to as many connections as it may",
}


class CancelReason(IntEnum):
    """Why an order's open quantity left the book without trading."""

    REQUESTED = 0
    """A cancel command named the order."""
    UNFILLED = 1
    """The remainder of an IOC or market order that could not trade at once."""
    MASS_CANCEL = 2
    """A mass-cancel command of the order's owner."""
    DISCONNECTED = 3
    """The owner's session ended with cancel-on-disconnect set."""
    SELF_TRADE = 4
    """Self-trade prevention canceled it (cancel taker, cancel maker or cancel both)."""
