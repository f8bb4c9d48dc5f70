"""The trader portal's tables, as pandas DataFrames for Streamlit (no Streamlit in here).

Integers (ticks, lots) come in; prices go out as the instrument's decimals (`Instrument.format_price`,
strings, so that 99.50 shows as 99.50), money as currency floats rounded to cents, times as UTC
timestamps. Rows are ordered as a trader reads them: the ladder from the highest price down,
orders oldest first, fills and trades newest first.
"""

from collections.abc import Iterable

import pandas as pd

from clients.terminal import clock
from database.queries import ExecutionRecord
from engine.instrument import Instrument
from servers.protocol import OpenOrder, OrderFilled, Positions, Trade

LADDER_COLUMNS = ["bid orders", "bid size", "price", "ask size", "ask orders"]


def ladder(instrument: Instrument, bids: list[tuple[int, int, int]], asks: list[tuple[int, int, int]]
           ) -> pd.DataFrame:
    """The depth ladder: asks above bids, highest price first; ``bids`` and ``asks`` best first,
    as (price, quantity, orders). A row's other side has size 0 (an empty bar) and a blank order
    count; the counts are text, so that the blank shows as nothing."""
    price = instrument.format_price
    rows = [("", 0, price(level), quantity, str(orders)) for level, quantity, orders in reversed(asks)]
    rows += [(str(orders), quantity, price(level), 0, "") for level, quantity, orders in bids]
    return pd.DataFrame(rows, columns=LADDER_COLUMNS)


def side_quote(instrument: Instrument, side: tuple[int, int] | None) -> str:
    """The best price of one side and its size, ``99.50 x 10``, or "--" for an empty side."""
    return "--" if side is None else f"{instrument.format_price(side[0])} x {side[1]}"


def spread_text(instrument: Instrument, bid: tuple[int, int] | None, ask: tuple[int, int] | None) -> str:
    """The spread in currency and in ticks of the instrument's tick size, or "--" with a side empty."""
    if bid is None or ask is None:
        return "--"
    width = ask[0] - bid[0]
    return f"{instrument.format_price(width)} ({width // instrument.tick_size} ticks)"


def tape(instrument: Instrument, trades: Iterable[Trade]) -> pd.DataFrame:
    """Trades newest first: time of day (UTC), price, size and the aggressor's side."""
    return pd.DataFrame(
        [(clock(t.time), instrument.format_price(t.price), t.quantity, t.aggressor.name) for t in trades],
        columns=["time", "price", "size", "aggressor"],
    )


def open_orders(instruments: dict[str, Instrument], orders: Iterable[OpenOrder]) -> pd.DataFrame:
    return pd.DataFrame(
        [(o.order_id, o.symbol, o.side.name, o.time_in_force.name, _price(instruments, o.symbol, o.price),
          o.quantity, o.filled, o.client_order_id) for o in orders],
        columns=["order", "symbol", "side", "tif", "price", "open", "filled", "client id"],
    )


def fills(instruments: dict[str, Instrument], recorded: Iterable[ExecutionRecord],
          live: Iterable[OrderFilled]) -> pd.DataFrame:
    """The trader's fills newest first: those recorded in the database and those of this session
    not recorded yet (a fill is one per symbol, trade and order)."""
    rows = {(r.symbol, r.trade_id, r.order_id): (r.time, r.symbol, r.side.name, r.price, r.quantity, r.aggressor,
                                                 r.order_id, r.trade_id) for r in recorded}
    for f in live:
        rows.setdefault((f.symbol, f.trade_id, f.order_id), (f.time, f.symbol, f.side.name, f.price, f.quantity,
                                                             f.aggressor, f.order_id, f.trade_id))
    ordered = sorted(rows.values(), key=lambda row: (row[0], row[7]), reverse=True)
    return pd.DataFrame(
        [(_time(at), symbol, side, _price(instruments, symbol, price), quantity, "taker" if taker else "maker",
          order_id, trade_id) for at, symbol, side, price, quantity, taker, order_id, trade_id in ordered],
        columns=["time", "symbol", "side", "price", "quantity", "role", "order", "trade"],
    )


def positions(instruments: dict[str, Instrument], report: Positions) -> pd.DataFrame:
    """Per symbol: position, average price, last price, realized and unrealized P&L in currency."""
    rows = []
    for p in report.positions:
        instrument = instruments.get(p.symbol)
        scale = instrument.price_scale if instrument else 1
        rows.append((p.symbol, p.quantity, round(p.average_price / scale, 6) if p.quantity else None,
                     _price(instruments, p.symbol, p.last_price) if p.last_price else "--",
                     round(p.realized_pnl / scale, 2), round(p.unrealized_pnl / scale, 2)))
    return pd.DataFrame(rows, columns=["symbol", "position", "average price", "last", "realized P&L",
                                       "unrealized P&L"])


def _price(instruments: dict[str, Instrument], symbol: str, ticks: int) -> str:
    instrument = instruments.get(symbol)
    return instrument.format_price(ticks) if instrument else f"{ticks} ticks"


def _time(nanoseconds: int) -> pd.Timestamp:
    return pd.Timestamp(nanoseconds, unit="ns", tz="UTC")
