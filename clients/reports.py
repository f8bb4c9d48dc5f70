"""Order reports in words, for people: the trader shell's lines and the trader portal's activity.

Prices in the instrument's decimals (`Instrument.format_price`), a reject's text with its numbers
in decimals and its code (`clients.terminal.reject_text`), one line per report.
"""

from clients.terminal import local_time, reject_text
from engine.instrument import Instrument
from engine.types import CancelReason, OrderFlags, OrderType, RejectReason, SelfTradePrevention, Side, TimeInForce
from servers.protocol import (
    CancelRejected,
    MassCancelDone,
    OpenOrder,
    OrderAccepted,
    OrderCanceled,
    OrderDecremented,
    OrderExpired,
    OrderFilled,
    OrderRejected,
    OrderReplaced,
    ReplaceRejected,
    SessionRejected,
    StopTriggered,
)

CANCEL_WORDS = {
    CancelReason.REQUESTED: "requested",
    CancelReason.UNFILLED: "unfilled remainder",
    CancelReason.MASS_CANCEL: "mass cancel",
    CancelReason.DISCONNECTED: "disconnected",
    CancelReason.SELF_TRADE: "self-trade prevention",
}
STOPS = (OrderType.STOP, OrderType.STOP_LIMIT)


class ReportWords:
    """The words for one session's reports. ``symbols_of`` is for the caller to fill: the symbol
    of each request it sent, by client order id (a reject names no symbol; its text's prices are
    shown in decimals only when the request's instrument is known)."""

    def __init__(self, instruments: dict[str, Instrument]) -> None:
        self.instruments = instruments
        self.symbols_of: dict[int, str] = {}

    def price(self, symbol: str, ticks: int) -> str:
        instrument = self.instruments.get(symbol)
        return instrument.format_price(ticks) if instrument else f"{ticks} ticks"

    def reject(self, client_order_id: int, reason: RejectReason, text: str) -> str:
        """A reject's text in decimals when the order's instrument is known, and its code."""
        instrument = self.instruments.get(self.symbols_of.get(client_order_id, ""))
        return f"{reject_text(reason, text, instrument)} ({int(reason)})"

    def features(self, m: OrderAccepted | OpenOrder) -> str:
        """What an order is beyond side, quantity, price and time in force, as words (or ""): its
        stop price (and whether it is still held), iceberg display quantity, post-only, expiry and
        self-trade prevention mode (when not none)."""
        words = []
        if m.order_type in STOPS:
            words.append(f"stop {self.price(m.symbol, m.stop_price)}")
            if getattr(m, "held", False):
                words.append("held")
        if m.display_quantity:
            words.append(f"iceberg {m.display_quantity}")
        if m.flags & OrderFlags.POST_ONLY:
            words.append("post-only")
        if m.time_in_force == TimeInForce.GTD:
            words.append(f"until {local_time(m.expire_at)}")
        if m.stp != SelfTradePrevention.NONE:
            words.append(f"stp {m.stp.name.lower().replace('_', '-')}")
        return ", ".join(words)

    def describe(self, m) -> str:
        """One line for report ``m`` (any other message: its repr)."""
        match m:
            case OrderAccepted():
                market = m.order_type == OrderType.MARKET or m.order_type == OrderType.STOP
                price = "market" if market else self.price(m.symbol, m.price)
                features = self.features(m)
                return (f"accepted  order {m.order_id} (client {m.client_order_id}): {m.side.name} {m.quantity} "
                        f"{m.symbol} @ {price} {m.time_in_force.name}{f' ({features})' if features else ''}")
            case OrderRejected():
                return f"rejected  client {m.client_order_id}: {self.reject(m.client_order_id, m.reason, m.text)}"
            case OrderFilled():
                verb = "bought" if m.side == Side.BUY else "sold"
                role = "taker" if m.aggressor else "maker"
                return (f"filled    order {m.order_id}: {verb} {m.quantity} {m.symbol} @ "
                        f"{self.price(m.symbol, m.price)}, {m.leaves} left (trade {m.trade_id}, {role})")
            case OrderCanceled():
                why = CANCEL_WORDS.get(m.reason, m.reason.name)
                return f"canceled  order {m.order_id}: {m.quantity} {m.symbol} ({why})"
            case OrderReplaced():
                kept = "priority kept" if m.priority_kept else "priority lost"
                return (f"replaced  order {m.order_id}: {m.quantity} {m.symbol} @ "
                        f"{self.price(m.symbol, m.price)} ({kept})")
            case OrderExpired():
                return f"expired   order {m.order_id}: {m.quantity} {m.symbol}"
            case StopTriggered():
                return (f"triggered order {m.order_id}: a trade at {self.price(m.symbol, m.last_price)} reached its "
                        f"stop, {m.leaves} {m.symbol} now trading")
            case OrderDecremented():
                return (f"decremented order {m.order_id}: {m.quantity} {m.symbol} removed by self-trade prevention, "
                        f"{m.leaves} left")
            case CancelRejected():
                return f"cancel rejected  order {m.order_id}: {self.reject(m.client_order_id, m.reason, m.text)}"
            case ReplaceRejected():
                return f"replace rejected  order {m.order_id}: {self.reject(m.client_order_id, m.reason, m.text)}"
            case MassCancelDone():
                return f"cancelall {m.symbol or 'all symbols'}: {m.canceled} orders"
            case SessionRejected():
                return f"session rejected: {m.text} ({int(m.reason)})"
        return repr(m)
