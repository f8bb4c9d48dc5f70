"""Order reports in words, for people: the trader shell's lines and the trader portal's activity.

Prices in the instrument's decimals (`Instrument.format_price`), a reject's text with its numbers
in decimals and its code (`clients.terminal.reject_text`), one line per report.
"""

from clients.terminal import reject_text
from engine.instrument import Instrument
from engine.types import CancelReason, OrderType, RejectReason, Side
from servers.protocol import (
    CancelRejected,
    MassCancelDone,
    OrderAccepted,
    OrderCanceled,
    OrderExpired,
    OrderFilled,
    OrderRejected,
    OrderReplaced,
    ReplaceRejected,
    SessionRejected,
)

CANCEL_WORDS = {
    CancelReason.REQUESTED: "requested",
    CancelReason.UNFILLED: "unfilled remainder",
    CancelReason.MASS_CANCEL: "mass cancel",
    CancelReason.DISCONNECTED: "disconnected",
}


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

    def describe(self, m) -> str:
        """One line for report ``m`` (any other message: its repr)."""
        match m:
            case OrderAccepted():
                price = "market" if m.order_type == OrderType.MARKET else self.price(m.symbol, m.price)
                return (f"accepted  order {m.order_id} (client {m.client_order_id}): {m.side.name} {m.quantity} "
                        f"{m.symbol} @ {price} {m.time_in_force.name}")
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
            case CancelRejected():
                return f"cancel rejected  order {m.order_id}: {self.reject(m.client_order_id, m.reason, m.text)}"
            case ReplaceRejected():
                return f"replace rejected  order {m.order_id}: {self.reject(m.client_order_id, m.reason, m.text)}"
            case MassCancelDone():
                return f"cancelall {m.symbol or 'all symbols'}: {m.canceled} orders"
            case SessionRejected():
                return f"session rejected: {m.text} ({int(m.reason)})"
        return repr(m)
