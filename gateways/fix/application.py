"""FIX application messages onto the TES and back: order entry, reports, market data, instruments.

Each logged-on FIX session is a `TraderLink`: one `clients.client.ExchangeClient` session of
the CompID pair's trader (Password = API key), so the TES does every check it does for any
client (credentials, rate, instrument, risk) and its numbered rejects reach the FIX peer as
they are: the code and text in Text (58), the code mapped to OrdRejReason (103) or CxlRejReason
(102) (`ORD_REJ_REASON`, `CXL_REJ_REASON`).

======================================  ===================================================
FIX in                                  TES
======================================  ===================================================
NewOrderSingle (D)                      EnterOrder
OrderCancelRequest (F)                  CancelOrder (of the exchange order OrigClOrdID names)
OrderCancelReplaceRequest (G)           ReplaceOrder (open quantity = OrderQty - CumQty)
OrderMassCancelRequest (q)              MassCancel (one symbol, or all: MassCancelRequestType 1, 7)
OrderStatusRequest (H)                  none: the gateway answers from what the TES last reported
MarketDataRequest (V)                   the OBS's market data (`gateways.fix.market_data`)
SecurityListRequest (x)                 the instruments the TES gave at logon
======================================  ===================================================

=============================  =========================================================
TES report                     FIX out
=============================  =========================================================
OrderAccepted                  ExecutionReport ExecType 0 (new)
OrderFilled                    ExecutionReport ExecType F (trade): LastPx, LastQty,
                               TrdMatchID, LastLiquidityInd (851) and AggressorIndicator (1057)
OrderCanceled                  ExecutionReport ExecType 4 (canceled)
OrderReplaced                  ExecutionReport ExecType 5 (replaced)
OrderExpired                   ExecutionReport ExecType C (expired)
StopTriggered                  ExecutionReport ExecType L (triggered or activated by system)
OrderDecremented               ExecutionReport ExecType D (restated), ExecRestatementReason 8
                               (market option), the quantity removed in Text (58)
OrderRejected                  ExecutionReport ExecType 8 (rejected), OrdRejReason
CancelRejected/ReplaceRejected OrderCancelReject (9), CxlRejResponseTo 1 / 2, CxlRejReason
MassCancelDone                 OrderMassCancelReport (r)
(OrderStatusRequest)           ExecutionReport ExecType I (order status); an unknown order:
                               OrdStatus 8, OrdRejReason 5
=============================  =========================================================

Order kinds (NewOrderSingle, echoed in every ExecutionReport of the order): OrdType 1 market, 2
limit, 3 stop (StopPx 99), 4 stop limit (Price 44 and StopPx 99); MaxFloor (111) an iceberg's
display quantity; ExecInst (18) 6 (participate don't initiate) post-only; TimeInForce 0 day, 1 GTC,
3 IOC, 4 FOK, 6 GTD with ExpireTime (126) or ExpireDate (432: the end of that day, UTC);
SelfMatchPreventionInstruction (2964, `STP_TAG`) the self-trade prevention mode. A missing StopPx,
expiry or an ExecInst other than 6 is refused by the gateway (ExecutionReport rejected, the exchange's
reject code in Text as the TES's rejects have it); every other rule (MaxFloor above OrderQty, post-only
that would take, an expiry past...) is the TES's. A replace changes price and quantity only.

Every ExecutionReport carries OrdStatus, CumQty, LeavesQty and AvgPx from the report's order
status, and ExecID is the trader's report number (unique over the exchange's life). Prices are
decimals on the wire (``Instrument.price_scale`` ticks per unit, exact: a price finer than the
instrument's price unit is refused by the gateway, as the trader shell does), quantities whole
lots.

ClOrdIDs are the peer's strings; the TES's client order ids are the trader's integers. The link
keeps which is which (and each order's exchange id and current ClOrdID) in the session store's
order records, so a restarted gateway still knows them; after a logon the trader's open orders
(asked of the TES) refresh each order's filled and open quantity.
"""

import functools
import itertools
import logging
import time
from decimal import Decimal, InvalidOperation

from clients.client import ClientError, ExchangeClient, SessionEnded
from engine.instrument import Instrument
from engine.lifecycle import OrderState
from engine.types import CancelReason, OrderFlags, OrderType, RejectReason, SelfTradePrevention, Side, TimeInForce
from gateways.fix import messages as m
from servers import protocol as p

log = logging.getLogger(__name__)

INT64_MAX = 2**63 - 1
MAX_TRACKED = 500_000
"""Requests whose ClOrdIDs a session keeps in memory; beyond, the oldest of finished orders go."""
COMPACT_AFTER = 200_000
"""Order records at load beyond which the store's file is rewritten without finished orders."""
CLIENT_ORDER_IDS = 256
"""TES client order ids a link reserves of its client at a time (the TES wants them unused, not
consecutive: those left when the session ends are never sent)."""

SOH = "\x01"
SIDES = {"1": Side.BUY, "2": Side.SELL}
FIX_SIDE = {Side.BUY: "1", Side.SELL: "2"}
ORD_TYPES = {"1": OrderType.MARKET, "2": OrderType.LIMIT, "3": OrderType.STOP, "4": OrderType.STOP_LIMIT}
FIX_ORD_TYPE = {kind: code for code, kind in ORD_TYPES.items()}
PRICED = frozenset({OrderType.LIMIT, OrderType.STOP_LIMIT})
"""Order types with a limit price (Price, 44)."""
STOPS = frozenset({OrderType.STOP, OrderType.STOP_LIMIT})
"""Order types with a stop price (StopPx, 99)."""
TIFS = {"0": TimeInForce.DAY, "1": TimeInForce.GTC, "3": TimeInForce.IOC, "4": TimeInForce.FOK, "6": TimeInForce.GTD}
FIX_TIF = {tif: code for code, tif in TIFS.items()}
GTD = TimeInForce.GTD
POST_ONLY = int(OrderFlags.POST_ONLY)
"""As a plain int: ``&`` on an IntFlag is a Python call, and every ExecutionReport tests it."""
NO_STP = SelfTradePrevention.NONE
POST_ONLY_EXEC_INST = "6"
"""ExecInst (18) 6, participate don't initiate: a post-only order."""
STP_TAG = 2964
"""SelfMatchPreventionInstruction (FIX 5.0 SP2's tag, declared in the gateway's dictionary): 1 cancel
the aggressor, 2 the passive order, 3 both, as FIX defines them; this gateway adds 0 (no prevention)
and 4 (decrement both): the value is `SelfTradePrevention`'s. Absent: the trader's default."""
RESTATED_BY_EXCHANGE = 8
"""ExecRestatementReason (378) of a decrement by self-trade prevention: market (exchange) option."""
ORD_STATUS = {OrderState.PENDING: "A", OrderState.ACCEPTED: "0", OrderState.PARTIALLY_FILLED: "1",
              OrderState.FILLED: "2", OrderState.CANCELED: "4", OrderState.EXPIRED: "C", OrderState.REJECTED: "8"}
ORD_STATUS_BY_VALUE = {state.value: status for state, status in ORD_STATUS.items()}
TERMINAL_STATUS = frozenset({"2", "4", "C", "8"})

ORD_REJ_REASON = {
    1001: 11, 1002: 11, 1003: 11, 1007: 11,       # unsupported order characteristic
    1004: 13, 1005: 13, 3003: 13, 3004: 13, 3005: 13,  # incorrect quantity
    1008: 6, 4005: 6,                             # duplicate order
    1010: 11, 1011: 11, 1014: 11, 3007: 11,       # unsupported order characteristic
    1013: 13, 3008: 13,                           # incorrect quantity (an iceberg's display quantity)
    2001: 5,                                      # unknown order
    3001: 1,                                      # unknown symbol
    4001: 3, 4002: 3, 4003: 3,                    # order exceeds limit
    6002: 2,                                      # exchange closed
}
"""The TES's RejectReason code -> OrdRejReason (103); any other: 99 (other). The code itself is in Text (58)."""
CXL_REJ_REASON = {2001: 1, 4005: 6}
"""RejectReason -> CxlRejReason (102): unknown order, duplicate ClOrdID; too late (0) for a finished order; else 99."""
CANCEL_TEXT = {
    CancelReason.REQUESTED: "canceled on request",
    CancelReason.UNFILLED: "the unfilled remainder of an IOC, FOK or market order",
    CancelReason.MASS_CANCEL: "canceled by a mass cancel",
    CancelReason.DISCONNECTED: "canceled: the session ended (cancel on disconnect)",
    CancelReason.SELF_TRADE: "canceled by self-trade prevention",
}


class GatewayReject(Exception):
    """An order request the gateway itself refuses (OrdRejReason or CxlRejReason, and a text)."""

    def __init__(self, reason: int, text: str) -> None:
        super().__init__(text)
        self.reason = reason
        self.text = text


def refused(code: RejectReason, text: str) -> GatewayReject:
    """A `GatewayReject` for a rule with an exchange reject code: the code's OrdRejReason, and the
    code after the text, as the TES's rejects have it."""
    return GatewayReject(ORD_REJ_REASON.get(int(code), 99), f"{text} ({int(code)})")


def decimal_text(value: Decimal) -> str:
    """A Decimal in plain notation without trailing zeros (``100``, ``99.5``)."""
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text or "0"


@functools.lru_cache(maxsize=4096)
def price_text(ticks: int, scale: int) -> str:
    return decimal_text(Decimal(ticks) / scale)


@functools.lru_cache(maxsize=4096)
def average_text(average: float, scale: int) -> str:
    """An average price in ticks (a float) in currency units, to 10 decimals at most."""
    if not average:
        return "0"
    return decimal_text((Decimal(repr(average)) / scale).quantize(Decimal("1e-10")))


@functools.lru_cache(maxsize=4096)
def _exact_ticks(text: str, scale: int) -> int | None:
    """``text`` (a FIX price) in ticks of ``1 / scale``, or None if not exact or out of range."""
    try:
        ticks = Decimal(text) * scale
    except InvalidOperation:
        return None
    if ticks != ticks.to_integral_value() or abs(ticks) > INT64_MAX:
        return None
    return int(ticks)


def to_ticks(text: str, instrument: Instrument) -> int:
    """A FIX price in ticks; `GatewayReject` if finer than the instrument's price unit."""
    ticks = _exact_ticks(text, instrument.price_scale)
    if ticks is not None:
        return ticks
    try:
        ticks = Decimal(text) * instrument.price_scale
    except InvalidOperation:
        raise GatewayReject(99, f"price {text!r} is not a number") from None
    if ticks != ticks.to_integral_value():
        raise GatewayReject(99, f"price {text} is not a multiple of the tick "
                                f"{instrument.format_price(instrument.tick_size)}")
    if abs(ticks) > INT64_MAX:
        raise GatewayReject(99, f"price {text} is out of range")
    return int(ticks)


DEFAULT_TIF = {OrderType.MARKET: TimeInForce.IOC, OrderType.STOP: TimeInForce.GTC}
"""TimeInForce (59) when absent: DAY (FIX's default), but IOC for a market order and GTC for a stop
(a stop order never expires: the TES takes it as GTC whatever it says)."""
ECHOED = (44, 99, 111, 18, 59, 126, 432, STP_TAG)
"""The order's tags after OrdType that an ExecutionReport refusing it echoes, as the peer sent them."""


def _flags(exec_inst: str) -> int:
    """The `OrderFlags` of an ExecInst (18): each of its space-separated values one FIX 4.4 defines
    (else `FieldError`, value out of range), and only 6 (participate don't initiate: post-only) taken."""
    flags = 0
    for value in exec_inst.split(" "):
        if value not in m.EXEC_INST_VALUES:
            raise m.FieldError(m.VALUE_OUT_OF_RANGE, f"tag 18: {value!r} is not an ExecInst value FIX 4.4 defines", 18)
        if value != POST_ONLY_EXEC_INST:
            raise refused(RejectReason.UNKNOWN_FLAGS, f"ExecInst (18) {value} is not supported: only 6 "
                                                      "(participate don't initiate: post-only)")
        flags |= POST_ONLY
    return flags


def _expiry(values: dict[int, str]) -> int:
    """A GTD order's expiry in ns since the epoch: ExpireTime (126), else the end (UTC) of ExpireDate
    (432); `GatewayReject` (1015) if neither is there."""
    if 126 in values:
        return m.timestamp_nanos(values[126])
    if 432 in values:
        expire_at = m.expire_date_nanos(values[432])
        if expire_at is None:
            raise m.FieldError(m.INCORRECT_DATA_FORMAT, f"tag 432: {values[432]!r} is not a date (YYYYMMDD)", 432)
        return expire_at
    raise refused(RejectReason.EXPIRE_TIME_PASSED,
                  "ExpireTime (126) or ExpireDate (432) is required for TimeInForce 6 (GTD)")


def expire_text(nanoseconds: int) -> str:
    """An expiry as a UTCTimestamp: to the millisecond, or to the nanosecond if it is not a whole one."""
    seconds, rest = divmod(nanoseconds, 1_000_000_000)
    day = time.strftime("%Y%m%d-%H:%M:%S", time.gmtime(seconds))
    return f"{day}.{rest // 1_000_000:03d}" if rest % 1_000_000 == 0 else f"{day}.{rest:09d}"


def to_lots(text: str, tag: int = 38) -> int:
    if len(text) < 19 and text.isdigit() and text.isascii():
        return int(text)
    quantity = Decimal(text)
    if quantity != quantity.to_integral_value():
        raise GatewayReject(13, f"quantity {text} ({tag}) is not a whole number of lots")
    if abs(quantity) > INT64_MAX:
        raise GatewayReject(13, f"quantity {text} ({tag}) is out of range")
    return int(quantity)


class Order:
    """What the gateway knows of one order of the session."""

    __slots__ = ("coid", "clordid", "order_id", "symbol", "side", "ord_type", "tif", "price", "order_qty", "filled",
                 "average", "status", "waiting", "wire", "wire_of", "stop_price", "display", "flags", "stp",
                 "expire_at")

    def __init__(self, coid: int, clordid: str, symbol: str, side: Side, ord_type: OrderType, tif: TimeInForce,
                 quantity: int, price: int, stop_price: int = 0, display: int = 0, flags: int = 0,
                 stp: SelfTradePrevention | None = None, expire_at: int = 0) -> None:
        self.coid = coid
        self.clordid = clordid
        self.order_id: int | None = None
        self.symbol = symbol
        self.side = side
        self.ord_type = ord_type
        self.tif = tif
        self.price = price
        self.order_qty = quantity
        self.filled = 0
        self.average = 0.0
        self.status = "A"
        self.waiting: list = []
        """Cancel and replace requests made before the exchange order id was known."""
        self.wire = ""
        """The order's fields of its ExecutionReports (Symbol to SelfMatchPreventionInstruction), written
        out (`_order_wire`)..."""
        self.wire_of: tuple | None = None
        """...for this (OrderQty, price, price scale, TimeInForce): written again when one of them changes
        (None: written again at the next report, after the TES told the order's fields)."""
        self.stop_price = stop_price
        self.display = display
        """MaxFloor (111): an iceberg's display quantity (0: all shown)."""
        self.flags = flags
        self.stp = stp
        """The self-trade prevention mode the order named (None: the trader's default), then the one in
        force as the TES accepted it; echoed in SelfMatchPreventionInstruction when named or not NONE."""
        self.expire_at = expire_at
        """GTD: the expiry, ns since the epoch (ExpireTime, 126)."""

    def record(self) -> list:
        """The store's record of the new order (`TraderLink._replay` reads it back)."""
        return ["N", self.coid, self.clordid, self.symbol, int(self.side), int(self.ord_type), int(self.tif),
                self.order_qty, self.price, self.stop_price, self.display, self.flags,
                -1 if self.stp is None else int(self.stp), self.expire_at]


class Request:
    """A request the gateway sent to the TES: a new order, a cancel or a replace."""

    __slots__ = ("coid", "kind", "clordid", "order_coid", "orig_clordid", "quantity", "price")

    def __init__(self, coid: int, kind: str, clordid: str, order_coid: int, orig_clordid: str | None = None,
                 quantity: int = 0, price: int = 0) -> None:
        self.coid = coid
        self.kind = kind
        self.clordid = clordid
        self.order_coid = order_coid
        self.orig_clordid = orig_clordid
        self.quantity = quantity
        self.price = price


class SessionOrders:
    """What a CompID pair's sessions know of their orders, kept across its connections (the
    gateway holds one per pair; the store's records rebuild it when the gateway starts)."""

    def __init__(self) -> None:
        self.orders: dict[int, Order] = {}
        """By the TES client order id the order was entered with."""
        self.requests: dict[int, Request] = {}
        """By TES client order id: every request still remembered."""
        self.by_clordid: dict[str, int] = {}
        """ClOrdID -> the TES client order id of its request."""
        self.loaded = False


class TraderLink:
    """One logged-on FIX session's trader at the TES (see the module docstring)."""

    def __init__(self, gateway, session, known: SessionOrders) -> None:
        self.gateway = gateway
        self.session = session
        self.store = session.store
        self.client: ExchangeClient | None = None
        self.instruments: dict[str, Instrument] = {}
        self.orders = known.orders
        self.requests = known.requests
        self.by_clordid = known.by_clordid
        self.outbox: list = []
        """TES requests made this loop turn (sent by `flush` once the store has them)."""
        self.mass_cancels: list[tuple[str, str, str]] = []
        """(ClOrdID, MassCancelRequestType, symbol) of the mass cancels not yet answered, in order."""
        self.closed = False
        self._client_order_ids = iter(())
        """The rest of the client order ids reserved (`_client_order_id`)."""
        if not known.loaded:
            self._replay(self.store.order_records)
            known.loaded = True

    # ------------------------------------------------------------ order records

    def _replay(self, records: list[list]) -> None:
        """Rebuild the orders and requests from the store's records (at logon)."""
        done: set[int] = set()
        for record in records:
            kind = record[0]
            if kind == "N":
                _, coid, clordid, symbol, side, ord_type, tif, quantity, price, *kinds = record
                stop_price, display, flags, stp, expire_at = kinds or (0, 0, 0, -1, 0)
                self.orders[coid] = Order(coid, clordid, symbol, Side(side), OrderType(ord_type), TimeInForce(tif),
                                          quantity, price, stop_price, display, flags,
                                          None if stp < 0 else SelfTradePrevention(stp), expire_at)
                self._remember(Request(coid, "N", clordid, coid))
            elif kind in ("C", "R"):
                _, coid, clordid, order_coid, quantity, price = record
                order = self.orders.get(order_coid)
                self._remember(Request(coid, kind, clordid, order_coid, order.clordid if order else None, quantity,
                                       price))
            elif kind == "A":
                order = self.orders.get(record[1])
                if order is not None:
                    order.order_id = record[2]
                    order.status = "0"
                    if len(record) > 3:  # the time in force and self-trade prevention the TES took
                        order.tif = TimeInForce(record[3])
                        order.stp = None if record[4] < 0 else SelfTradePrevention(record[4])
            elif kind == "X":
                order = self.orders.get(record[1])
                if order is not None:
                    order.clordid = record[2]
            elif kind == "D":
                done.add(record[1])
                order = self.orders.get(record[1])
                if order is not None:
                    order.status = record[2] if len(record) > 2 else "4"
        if len(records) > COMPACT_AFTER:
            kept = [record for record in records if _order_of(record) not in done]
            self.store.rewrite_orders(kept)
            for coid in done:
                self._forget_order(coid)
            log.info("%s: order records compacted from %d to %d", self.session.name, len(records), len(kept))
        self.store.order_records = []

    def _remember(self, request: Request) -> None:
        self.requests[request.coid] = request
        self.by_clordid[request.clordid] = request.coid
        if len(self.requests) > MAX_TRACKED:
            self._evict()

    def _evict(self) -> None:
        """Forget the oldest requests of finished orders (a tenth of the limit)."""
        budget = MAX_TRACKED // 10
        for coid in list(itertools.islice(self.requests, MAX_TRACKED // 2)):
            request = self.requests[coid]
            order = self.orders.get(request.order_coid)
            if order is None or order.status in TERMINAL_STATUS:
                del self.requests[coid]
                if self.by_clordid.get(request.clordid) == coid:
                    del self.by_clordid[request.clordid]
                if order is not None and request.kind == "N":
                    del self.orders[request.order_coid]
                budget -= 1
                if not budget:
                    return

    def _forget_order(self, coid: int) -> None:
        self.orders.pop(coid, None)
        for request_coid in [c for c, r in self.requests.items() if r.order_coid == coid]:
            request = self.requests.pop(request_coid)
            if self.by_clordid.get(request.clordid) == request_coid:
                del self.by_clordid[request.clordid]

    def has_open_orders(self) -> bool:
        """Whether any order of the session may still be open (its state is then asked of the TES at logon)."""
        return any(order.status not in TERMINAL_STATUS for order in self.orders.values())

    def refresh(self, open_orders: list[p.OpenOrder]) -> None:
        """The trader's open orders as the TES has them now (after a logon)."""
        for entry in open_orders:
            order = self.orders.get(entry.client_order_id)
            if order is None:
                continue
            order.order_id = entry.order_id
            order.filled = max(order.filled, entry.filled)
            order.order_qty = order.filled + entry.quantity
            order.price = entry.price
            order.stop_price, order.display, order.flags = entry.stop_price, entry.display_quantity, entry.flags
            order.expire_at = entry.expire_at
            order.wire_of = None
            if order.status in ("A", "0", "1"):
                order.status = "1" if order.filled else "0"

    # ------------------------------------------------------------ FIX in

    def on_message(self, message: m.Message) -> None:
        kind = message.msg_type
        if kind == m.NEW_ORDER_SINGLE:
            self._new_order(message)
        elif kind == m.ORDER_CANCEL_REQUEST:
            self._cancel(message)
        elif kind == m.ORDER_CANCEL_REPLACE_REQUEST:
            self._replace(message)
        elif kind == m.ORDER_STATUS_REQUEST:
            self._order_status(message)
        elif kind == m.ORDER_MASS_CANCEL_REQUEST:
            self._mass_cancel(message)
        elif kind == m.MARKET_DATA_REQUEST:
            self.gateway.market_data.request(self.session, message)
        elif kind == m.SECURITY_LIST_REQUEST:
            self._security_list(message)
        else:
            self.business_reject(message, 3, f"MsgType {kind} is not supported by this gateway")

    def business_reject(self, message: m.Message, reason: int, text: str, ref_id_tag: int | None = None) -> None:
        fields: list = [(45, message.seq), (372, message.msg_type)]
        if ref_id_tag is not None and ref_id_tag in message:
            fields.append((379, message.get(ref_id_tag)))
        fields += [(380, reason), (58, m.clean_text(text))]
        self.session.send(m.BUSINESS_MESSAGE_REJECT, fields)

    def _duplicate(self, message: m.Message, clordid: str) -> bool:
        """Whether ``clordid`` was used before: a resent message (PossDupFlag=Y) is then ignored."""
        if clordid not in self.by_clordid:
            return False
        if message.flag(m.POSS_DUP_FLAG):
            log.info("%s: ClOrdID %s sent again (PossDupFlag=Y): already handled", self.session.name, clordid)
            return True
        raise GatewayReject(6, f"ClOrdID {clordid} was used before")

    def _new_order(self, message: m.Message) -> None:
        message.require(11, 55, 54, 60, 38, 40)
        values = message.values
        clordid, symbol = values[11], values[55]
        try:
            if clordid in self.by_clordid and self._duplicate(message, clordid):
                return
            side = SIDES.get(values[54])
            if side is None:
                raise GatewayReject(11, f"Side (54) {values[54]} is not supported: 1 (buy) or 2 (sell)")
            ord_type = ORD_TYPES.get(values[40])
            if ord_type is None:
                raise GatewayReject(11, f"OrdType (40) {values[40]} is not supported: 1 (market), 2 (limit), "
                                        "3 (stop) or 4 (stop limit)")
            tif_code = values.get(59)
            if tif_code is None:
                tif = DEFAULT_TIF.get(ord_type, TimeInForce.DAY)
            else:
                tif = TIFS.get(tif_code)
                if tif is None:
                    raise GatewayReject(11, f"TimeInForce (59) {tif_code} is not supported: 0 (day), 1 (GTC), "
                                            "3 (IOC), 4 (FOK) or 6 (GTD)")
            quantity = to_lots(values[38])
            instrument = self.instruments.get(symbol)
            price = stop_price = 0
            if ord_type in PRICED:
                if 44 not in values:
                    raise m.FieldError(m.REQUIRED_TAG_MISSING, "Price (44) is required for a limit order", 44)
                if instrument is not None:
                    price = to_ticks(values[44], instrument)
            if ord_type in STOPS:
                if 99 not in values:
                    raise refused(RejectReason.INVALID_STOP_PRICE,
                                  "StopPx (99) is required for OrdType 3 (stop) and 4 (stop limit)")
                if instrument is not None:
                    stop_price = to_ticks(values[99], instrument)
            display = to_lots(values[111], 111) if 111 in values else 0
            flags = _flags(values[18]) if 18 in values else 0
            expire_at = _expiry(values) if tif == GTD else 0
            stp = SelfTradePrevention(int(values[STP_TAG])) if STP_TAG in values else None
        except GatewayReject as exc:
            self._refuse_order(message, exc.reason, exc.text)
            return
        coid = self._client_order_id()
        order = Order(coid, clordid, symbol, side, ord_type, tif, quantity, price, stop_price, display, flags, stp,
                      expire_at)
        self.orders[coid] = order
        self._remember(Request(coid, "N", clordid, coid))
        self.store.add_order_record(order.record())
        self.outbox.append(p.EnterOrder(coid, symbol, side, ord_type, tif, price, quantity, stop_price, display,
                                        flags, stp, expire_at))

    def _client_order_id(self) -> int:
        """A TES client order id for a new request, of a block reserved of the client at a time."""
        coid = next(self._client_order_ids, None)
        if coid is None:
            coid = self.client.reserve_client_order_ids(CLIENT_ORDER_IDS)
            self._client_order_ids = iter(range(coid + 1, coid + CLIENT_ORDER_IDS))
        return coid

    def _refuse_order(self, message: m.Message, reason: int, text: str) -> None:
        """An ExecutionReport rejecting a NewOrderSingle the gateway refused itself."""
        fields = [(37, "NONE"), (11, message.get(11)), (17, self._gateway_exec_id()), (150, "8"), (39, "8"),
                  (103, reason), (55, message.get(55)), (54, message.get(54)), (38, message.get(38)),
                  (40, message.get(40))]
        fields += [(tag, message.get(tag)) for tag in ECHOED if tag in message]
        fields += [(151, 0), (14, 0), (6, 0), (60, m.timestamp()), (58, m.clean_text(text))]
        self.session.send(m.EXECUTION_REPORT, fields)

    def _gateway_exec_id(self) -> str:
        return f"G{self.store.next_out}"

    def _find(self, message: m.Message) -> Order | None:
        coid = self.by_clordid.get(message.get(41))
        order = self.orders.get(self.requests[coid].order_coid) if coid is not None else None
        if order is None and 37 in message:
            wanted = message.get(37)
            order = next((o for o in self.orders.values() if str(o.order_id) == wanted), None)
        return order

    def _cancel(self, message: m.Message) -> None:
        message.require(41, 11, 55, 54, 60)
        clordid = message.get(11)
        try:
            if self._duplicate(message, clordid):
                return
            order = self._order_to_change(message)
        except GatewayReject as exc:
            self._refuse_change(message, "1", exc.reason, exc.text)
            return
        coid = self._client_order_id()
        self._remember(Request(coid, "C", clordid, order.coid, order.clordid))
        self.store.add_order_record(["C", coid, clordid, order.coid, 0, 0])
        self._to_book(order, p.CancelOrder(coid, order.order_id or 0))

    def _order_to_change(self, message: m.Message) -> Order:
        order = self._find(message)
        if order is None:
            raise GatewayReject(1, f"no order with OrigClOrdID {message.get(41)}")
        if order.status in TERMINAL_STATUS:
            raise GatewayReject(0, f"order {order.clordid} is already {STATUS_WORDS[order.status]}")
        if message.get(55) != order.symbol or SIDES.get(message.get(54)) != order.side:
            raise GatewayReject(99, f"Symbol (55) and Side (54) must be the order's: {order.symbol} "
                                    f"{FIX_SIDE[order.side]}")
        return order

    def _to_book(self, order: Order, request) -> None:
        """Send a cancel or replace of ``order`` now, or once its exchange id is known."""
        if order.order_id is None:
            order.waiting.append(request)
        else:
            self.outbox.append(request)

    def _replace(self, message: m.Message) -> None:
        message.require(41, 11, 55, 54, 60, 38, 40)
        clordid = message.get(11)
        try:
            if self._duplicate(message, clordid):
                return
            order = self._order_to_change(message)
            if ORD_TYPES.get(message.get(40)) != order.ord_type:
                raise GatewayReject(99, f"OrdType (40) cannot change: the order's is {FIX_ORD_TYPE[order.ord_type]}")
            if 59 in message and TIFS.get(message.get(59)) != order.tif:
                raise GatewayReject(99, f"TimeInForce (59) cannot change: the order's is {FIX_TIF[order.tif]}")
            quantity = to_lots(message.get(38))
            open_quantity = quantity - order.filled
            if open_quantity <= 0:
                raise GatewayReject(99, f"OrderQty {quantity} is not above the quantity already filled, "
                                        f"{order.filled}")
            price = order.price
            instrument = self.instruments.get(order.symbol)
            if order.ord_type in PRICED:
                if 44 not in message:
                    raise m.FieldError(m.REQUIRED_TAG_MISSING, "Price (44) is required for a limit order", 44)
                if instrument is not None:
                    price = to_ticks(message.get(44), instrument)
            self._unchanged(message, order, instrument)
        except GatewayReject as exc:
            self._refuse_change(message, "2", exc.reason, exc.text)
            return
        coid = self._client_order_id()
        self._remember(Request(coid, "R", clordid, order.coid, order.clordid, quantity, price))
        self.store.add_order_record(["R", coid, clordid, order.coid, quantity, price])
        self._to_book(order, p.ReplaceOrder(coid, order.order_id or 0, price, open_quantity))

    @staticmethod
    def _unchanged(message: m.Message, order: Order, instrument: Instrument | None) -> None:
        """`GatewayReject` if a replace changes what a replace cannot (the TES's ReplaceOrder carries a
        price and a quantity only): StopPx, MaxFloor, ExecInst, ExpireTime, SelfMatchPreventionInstruction."""
        values = message.values
        scale = instrument.price_scale if instrument is not None else 0
        if 99 in values and scale and to_ticks(values[99], instrument) != order.stop_price:
            raise GatewayReject(99, f"StopPx (99) cannot change: the order's is {price_text(order.stop_price, scale)}")
        if 111 in values and to_lots(values[111], 111) != order.display:
            raise GatewayReject(99, f"MaxFloor (111) cannot change: the order's is {order.display}")
        if 18 in values and _flags(values[18]) != order.flags:
            raise GatewayReject(99, "ExecInst (18) cannot change")
        if order.tif == GTD and (126 in values or 432 in values) and _expiry(values) != order.expire_at:
            raise GatewayReject(99, f"the expiry cannot change: the order's is {expire_text(order.expire_at)}")
        if STP_TAG in values and order.stp is not None and int(values[STP_TAG]) != order.stp:
            raise GatewayReject(99, f"SelfMatchPreventionInstruction ({STP_TAG}) cannot change: the order's is "
                                    f"{int(order.stp)}")

    def _refuse_change(self, message: m.Message, response_to: str, reason: int, text: str) -> None:
        order = self._find(message)
        self.session.send(m.ORDER_CANCEL_REJECT, [
            (37, order.order_id if order is not None and order.order_id is not None else "NONE"),
            (11, message.get(11)), (41, message.get(41)), (39, order.status if order is not None else "8"),
            (434, response_to), (102, reason), (58, m.clean_text(text))])

    def _order_status(self, message: m.Message) -> None:
        """An OrderStatusRequest: an ExecutionReport with ExecType I (order status) and the order's
        state as the gateway last heard it from the TES (every report is handled in order, so it is
        the TES's as of the last report that arrived); an order the session does not know (or no
        longer remembers: `MAX_TRACKED`), OrdStatus 8 with OrdRejReason 5 (unknown order)."""
        message.require(11, 55, 54)
        values = message.values
        clordid = values[11]
        coid = self.by_clordid.get(clordid)
        order = self.orders.get(self.requests[coid].order_coid) if coid is not None else None
        if order is None and 37 in values:
            order = next((o for o in self.orders.values() if str(o.order_id) == values[37]), None)
        request_id = f"790={values[790]}\x01" if 790 in values else ""
        now = m.timestamp()
        if order is None:
            self.session.send_text(m.EXECUTION_REPORT, (
                f"37={values.get(37, 'NONE')}\x0111={clordid}\x01{request_id}17={self._gateway_exec_id()}\x01"
                f"150=I\x0139=8\x01103=5\x0155={values[55]}\x0154={values[54]}\x01151=0\x0114=0\x016=0\x01"
                f"60={now}\x0158={m.clean_text(f'no order with ClOrdID {clordid}')}\x01"))
            return
        instrument = self.instruments.get(order.symbol)
        scale = instrument.price_scale if instrument is not None else 0
        leaves = 0 if order.status in TERMINAL_STATUS else max(0, order.order_qty - order.filled)
        self.session.send_text(m.EXECUTION_REPORT, (
            f"37={'NONE' if order.order_id is None else order.order_id}\x0111={order.clordid}\x01{request_id}"
            f"17={self._gateway_exec_id()}\x01150=I\x0139={order.status}\x01{_order_wire(order, scale)}"
            f"151={leaves}\x0114={order.filled}\x016={average_text(order.average, scale or 1)}\x0160={now}\x01"))

    def _mass_cancel(self, message: m.Message) -> None:
        message.require(11, 530, 60)
        kind, symbol = message.get(530), message.get(55, "")
        if kind == "1" and not symbol:
            raise m.FieldError(m.REQUIRED_TAG_MISSING, "Symbol (55) is required to cancel one security's orders", 55)
        if kind not in ("1", "7"):
            self.session.send(m.ORDER_MASS_CANCEL_REPORT, [
                (37, "NONE"), (11, message.get(11)), (530, kind), (531, "0"), (532, 99),
                (58, f"MassCancelRequestType {kind} is not supported: 1 (one security) or 7 (all orders)")])
            return
        if kind == "7":
            symbol = ""
        self.mass_cancels.append((message.get(11), kind, symbol))
        self.outbox.append(p.MassCancel(symbol))

    def _security_list(self, message: m.Message) -> None:
        message.require(320, 559)
        kind, symbol = message.get(559), message.get(55)
        if kind == "0":
            if symbol is None:
                raise m.FieldError(m.REQUIRED_TAG_MISSING, "Symbol (55) is required for SecurityListRequestType 0",
                                   55)
            listed = [self.instruments[symbol]] if symbol in self.instruments else []
        elif kind == "4":
            listed = list(self.instruments.values())
        else:
            self.session.send(m.SECURITY_LIST, [(320, message.get(320)), (322, f"SL{self.store.next_out}"),
                                                (560, 1), (58, f"SecurityListRequestType {kind} is not supported: "
                                                               "0 (one symbol) or 4 (all)")])
            return
        fields: list = [(320, message.get(320)), (322, f"SL{self.store.next_out}"), (560, 0 if listed else 2)]
        if listed:
            fields += [(393, len(listed)), (893, "Y"), (146, len(listed))]
            for instrument in listed:
                fields += [(55, instrument.symbol), (561, instrument.lot_size), (562, instrument.min_quantity),
                           (969, price_text(instrument.tick_size, instrument.price_scale))]
        self.session.send(m.SECURITY_LIST, fields)

    # ------------------------------------------------------------ to the TES

    def flush(self) -> None:
        """Send this turn's requests to the TES in one frame (the store already holds their records)."""
        if not self.outbox or self.client is None:
            return
        batch, self.outbox = self.outbox, []
        try:
            self.client.send_batch(batch)
        except (SessionEnded, ClientError) as exc:
            self._lost(batch, str(exc))

    def _lost(self, batch: list, text: str) -> None:
        """The TES session is gone: every request of ``batch`` is refused, and the FIX session ends."""
        for request in batch:
            if isinstance(request, p.EnterOrder):
                self.on_report(p.OrderRejected(request.client_order_id, RejectReason.NOT_LOGGED_ON, text,
                                               status=OrderState.REJECTED))
            elif isinstance(request, p.CancelOrder | p.ReplaceOrder):
                kind = p.CancelRejected if isinstance(request, p.CancelOrder) else p.ReplaceRejected
                self.on_report(kind(request.client_order_id, request.order_id, RejectReason.NOT_LOGGED_ON, text))
        self.session.logout(f"the exchange session ended: {text}")

    def pump(self) -> None:
        """Turn every TES message that arrived into FIX messages."""
        client = self.client
        if client is None or self.closed:
            return
        try:
            messages = client.receive_ready()
        except ClientError as exc:
            self.session.logout(f"the exchange connection failed: {exc}")
            return
        for message in messages:
            self.on_report(message)

    def on_report(self, message) -> None:
        kind = type(message)
        handler = REPORT_HANDLERS.get(kind)
        if handler is not None:
            handler(self, message)
            number = getattr(message, "report", 0)
            if number:
                self.store.set_last_report(number)
        elif kind is p.LoggedOut:
            self.session.logout(f"the exchange ended the session: {message.text} ({int(message.reason)})")
        elif kind is p.SessionRejected:
            if message.reason == RejectReason.NOT_LOGGED_ON:
                self.session.logout(f"the exchange no longer knows the session: {message.text} "
                                    f"({int(message.reason)})")
            else:
                log.warning("%s: the TES refused a request of the gateway: %s (%d)", self.session.name, message.text,
                            int(message.reason))
        elif kind is p.MassCancelDone:
            self._mass_cancel_done(message)

    def _status(self, message, order: Order | None) -> str:
        state = message.status
        status = ORD_STATUS_BY_VALUE.get(state._value_) if state is not None else None
        if status is None:
            status = order.status if order is not None else "0"
        if order is not None:
            order.status = status
        return status

    def _report(self, order: Order, exec_type: str, message, clordid: str, orig_clordid: str | None,
                extra: list | None = None, text: str | None = None) -> None:
        """An ExecutionReport of ``order`` from a TES report (its fields written straight into the
        message's text: this runs twice for every order)."""
        state = message.status
        # by the member's value: a plain Enum's hash is a Python call, and this runs twice an order
        status = ORD_STATUS_BY_VALUE.get(state._value_, order.status) if state is not None else order.status
        order.status = status
        filled = message.filled
        if filled < order.filled:
            filled = order.filled
        order.filled = filled
        order.average = message.average_price or order.average
        if status in TERMINAL_STATUS:
            leaves = 0
            self.store.add_order_record(["D", order.coid, status])
        else:
            leaves = getattr(message, "leaves", 0)
            order.order_qty = filled + leaves
        instrument = self.instruments.get(order.symbol)
        scale = instrument.price_scale if instrument is not None else 0
        wire_of = (order.order_qty, order.price, scale, order.tif)
        if order.wire_of != wire_of:
            order.wire, order.wire_of = _order_wire(order, scale), wire_of
        scale = scale or 1
        if exec_type == "F":
            trade = f"31={price_text(message.price, scale)}\x0132={message.quantity}\x01880={message.trade_id}\x01"
            side = "851=2\x011057=Y\x01" if message.aggressor else "851=1\x011057=N\x01"
        else:
            trade = side = ""
        order_id = order.order_id
        out = (f"37={'NONE' if order_id is None else order_id}\x0111={clordid}\x01"
               f"{'' if orig_clordid is None else f'41={orig_clordid}{SOH}'}"
               f"17={message.report or self._gateway_exec_id()}\x01150={exec_type}\x0139={status}\x01"
               f"{m.fields_text(extra) if extra else ''}{order.wire}{trade}151={leaves}\x0114={filled}\x01"
               f"6={average_text(order.average, scale) if order.average else '0'}\x01"
               f"60={m.nanos_timestamp(message.time) if message.time else m.timestamp()}\x01{side}"
               f"{f'58={m.clean_text(text)}{SOH}' if text else ''}")
        self.session.send_text(m.EXECUTION_REPORT, out)

    def _order_of_request(self, coid: int) -> tuple[Request | None, Order | None]:
        request = self.requests.get(coid)
        order = self.orders.get(request.order_coid) if request is not None else self.orders.get(coid)
        return request, order

    def _accepted(self, message: p.OrderAccepted) -> None:
        order = self.orders.get(message.client_order_id)
        if order is None:
            return self._unknown(message)
        order.order_id = message.order_id
        order.price = message.price
        order.tif = message.time_in_force
        order.stop_price = message.stop_price
        order.display = message.display_quantity
        order.flags = message.flags
        order.expire_at = message.expire_at
        if order.stp is not None or message.stp != NO_STP:
            order.stp = message.stp
        self.store.add_order_record(["A", order.coid, message.order_id, int(order.tif),
                                     -1 if order.stp is None else int(order.stp)])
        self._report(order, "0", message, order.clordid, None)
        waiting, order.waiting = order.waiting, []
        for request in waiting:
            self.outbox.append(type(request)(request.client_order_id, order.order_id, *_rest(request)))

    def _rejected(self, message: p.OrderRejected) -> None:
        order = self.orders.get(message.client_order_id)
        if order is None:
            return self._unknown(message)
        code = int(message.reason)
        self._report(order, "8", message, order.clordid, None, [(103, ORD_REJ_REASON.get(code, 99))],
                     f"{message.text} ({code})")
        for request in order.waiting:
            kind = p.CancelRejected if isinstance(request, p.CancelOrder) else p.ReplaceRejected
            self.on_report(kind(request.client_order_id, 0, RejectReason.UNKNOWN_ORDER, "the order was rejected",
                                status=OrderState.REJECTED))
        order.waiting = []

    def _filled(self, message: p.OrderFilled) -> None:
        order = self.orders.get(message.client_order_id)
        if order is None:
            return self._unknown(message)
        self._report(order, "F", message, order.clordid, None)

    def _canceled(self, message: p.OrderCanceled) -> None:
        request, order = self._order_of_request(message.client_order_id)
        if order is None:
            return self._unknown(message)
        if request is not None and request.kind == "C":
            self._report(order, "4", message, request.clordid, order.clordid, text=CANCEL_TEXT[message.reason])
        else:
            self._report(order, "4", message, order.clordid, None, text=CANCEL_TEXT.get(message.reason))

    def _replaced(self, message: p.OrderReplaced) -> None:
        request, order = self._order_of_request(message.client_order_id)
        if order is None:
            return self._unknown(message)
        previous = order.clordid
        if request is not None and request.kind == "R":
            order.clordid = request.clordid
            self.store.add_order_record(["X", order.coid, request.clordid])
        order.price = message.price
        self._report(order, "5", message, order.clordid, previous if previous != order.clordid else None)

    def _expired(self, message: p.OrderExpired) -> None:
        order = self.orders.get(message.client_order_id)
        if order is None:
            return self._unknown(message)
        self._report(order, "C", message, order.clordid, None, text="expired: good till date"
                     if order.tif == GTD else "expired at the end of the day")

    def _triggered(self, message: p.StopTriggered) -> None:
        order = self.orders.get(message.client_order_id)
        if order is None:
            return self._unknown(message)
        instrument = self.instruments.get(order.symbol)
        last = price_text(message.last_price, instrument.price_scale) if instrument is not None else message.last_price
        self._report(order, "L", message, order.clordid, None, text=f"stop triggered: a trade printed at {last}")

    def _decremented(self, message: p.OrderDecremented) -> None:
        order = self.orders.get(message.client_order_id)
        if order is None:
            return self._unknown(message)
        self._report(order, "D", message, order.clordid, None, [(378, RESTATED_BY_EXCHANGE)],
                     f"decremented by {message.quantity} by self-trade prevention")

    def _change_rejected(self, message) -> None:
        request, order = self._order_of_request(message.client_order_id)
        if request is None:
            return self._unknown(message)
        code = int(message.reason)
        status = self._status(message, order) if message.status is not None else (order.status if order else "8")
        if order is not None and status in TERMINAL_STATUS and code == 2001:
            reason = 0
        else:
            reason = CXL_REJ_REASON.get(code, 99)
        order_id = message.order_id or (order.order_id if order is not None else None)
        self.session.send(m.ORDER_CANCEL_REJECT, [
            (37, order_id if order_id else "NONE"), (11, request.clordid),
            (41, request.orig_clordid or (order.clordid if order else "NONE")), (39, status),
            (434, "1" if type(message) is p.CancelRejected else "2"), (102, reason),
            (58, m.clean_text(f"{message.text} ({code})"))])

    def _mass_cancel_done(self, message: p.MassCancelDone) -> None:
        if not self.mass_cancels:
            return
        clordid, kind, symbol = self.mass_cancels.pop(0)
        fields = [(37, f"MC{self.store.next_out}"), (11, clordid), (530, kind), (531, kind), (533, message.canceled)]
        if symbol:
            fields.append((55, symbol))
        self.session.send(m.ORDER_MASS_CANCEL_REPORT, fields)

    def _unknown(self, message) -> None:
        self.gateway.unknown_reports(self.session.name, type(message).__name__, message.client_order_id)

    def close(self) -> ExchangeClient | None:
        """The FIX session ended: the client to log out of the TES (the caller closes it)."""
        self.closed = True
        self.gateway.market_data.drop(self.session)
        client, self.client = self.client, None
        return client


STATUS_WORDS = {"2": "filled", "4": "canceled", "C": "expired", "8": "rejected"}


def _order_wire(order: Order, scale: int) -> str:
    """Symbol, Side, OrderQty, OrdType, Price and StopPx (where the order type has them and its
    instrument is known: ``scale`` not 0), MaxFloor (an iceberg), ExecInst (post-only), TimeInForce,
    ExpireTime (GTD) and SelfMatchPreventionInstruction, as in an ExecutionReport."""
    out = (f"55={order.symbol}\x0154={FIX_SIDE[order.side]}\x0138={order.order_qty}\x01"
           f"40={FIX_ORD_TYPE[order.ord_type]}\x01")
    if scale and order.ord_type in PRICED:
        out += f"44={price_text(order.price, scale)}\x01"
    if scale and order.ord_type in STOPS:
        out += f"99={price_text(order.stop_price, scale)}\x01"
    if order.display:
        out += f"111={order.display}\x01"
    if order.flags & POST_ONLY:
        out += f"18={POST_ONLY_EXEC_INST}\x01"
    out += f"59={FIX_TIF[order.tif]}\x01"
    if order.tif == GTD and order.expire_at:
        out += f"126={expire_text(order.expire_at)}\x01"
    if order.stp is not None:
        out += f"{STP_TAG}={int(order.stp)}\x01"
    return out


def _rest(request) -> tuple:
    """The fields of a waiting cancel or replace after its client order id and order id."""
    if isinstance(request, p.ReplaceOrder):
        return request.price, request.quantity
    return ()


def _order_of(record: list) -> int:
    kind = record[0]
    if kind == "N":
        return record[1]
    if kind in ("C", "R"):
        return record[3]
    return record[1]


REPORT_HANDLERS = {
    p.OrderAccepted: TraderLink._accepted,
    p.OrderRejected: TraderLink._rejected,
    p.OrderFilled: TraderLink._filled,
    p.OrderCanceled: TraderLink._canceled,
    p.OrderReplaced: TraderLink._replaced,
    p.OrderExpired: TraderLink._expired,
    p.StopTriggered: TraderLink._triggered,
    p.OrderDecremented: TraderLink._decremented,
    p.CancelRejected: TraderLink._change_rejected,
    p.ReplaceRejected: TraderLink._change_rejected,
}
