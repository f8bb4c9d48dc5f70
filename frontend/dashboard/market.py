"""The dashboard's Market page: one symbol on one UTC day.

Pickers of symbol, day and bar interval; then, refreshed every `REFRESH_S` seconds, the day's
figures (`frontend.market`: volume, trades, VWAP, average spread, last, change), the
candlestick chart with its volume panel, and the top traders of the day by volume and by P&L
(`database.queries.top_traders`). Prices show with the instrument's ``format_price``, money in
currency units with 2 decimals. Run by `frontend.analytics_app` as a page file.
"""

from datetime import UTC, date, datetime
from decimal import Decimal

import pandas as pd
import streamlit as st

from config.settings import Config, InstrumentConfig
from database import queries
from database.store import transaction
from frontend.analytics_app import BARS, REFRESH_S, database, guarded, session_config, tick_history
from frontend.charts import candlesticks
from frontend.market import DayFigures, candles, day_figures, format_average, previous_close

LEADERS = 10
"""Rows of each top-traders table."""
MONEY = {name: st.column_config.NumberColumn(name, format="%.2f") for name in ("notional", "P&L")}


def render(config: Config) -> None:
    st.title("Market")
    instruments = {instrument.symbol: instrument for instrument in config.instruments}
    symbol_column, day_column, interval_column = st.columns(3)
    symbol = symbol_column.selectbox("Symbol", list(instruments), key="market.symbol")
    trading_days: list[date] = []
    with guarded("The symbol's trading days"):
        with transaction(database(config), write=False) as connection:
            trading_days = [close.day for close in queries.closes(connection, date.min, date.max, symbol)]
    today = datetime.now(UTC).date()
    day = day_column.date_input("Day (UTC)", value=trading_days[-1] if trading_days else today,
                                key="market.day")
    interval = interval_column.selectbox("Bars", list(BARS), key="market.interval")
    _live(config, instruments[symbol], day, BARS[interval])


@st.fragment(run_every=REFRESH_S)
def _live(config: Config, instrument: InstrumentConfig, day: date, interval: int) -> None:
    symbol, scale = instrument.symbol, instrument.price_scale
    before = None
    leaders: dict[str, list[queries.TraderRecord]] = {}
    with guarded("Top traders"):
        with transaction(database(config), write=False) as connection:
            before = previous_close(queries.closes(connection, date.min, day, symbol), day)
            leaders = {by: queries.top_traders(connection, symbol, day, day, by, LEADERS) for by in ("volume", "pnl")}
    with guarded("Market figures"):
        with tick_history(config) as history:
            figures = day_figures(history, symbol, day, scale, before)
            bars = candles(history, symbol, day, interval, scale)
        if not figures.trades:
            st.info(f"{symbol} has no trades on {day.isoformat()} (UTC) yet.")
        _metrics(instrument, figures)
        if bars:
            prices, volumes = candlesticks(pd.DataFrame({
                "time": pd.to_datetime([bar.time for bar in bars], unit="ns", utc=True),
                **{name: [getattr(bar, name) / scale for bar in bars] for name in ("open", "high", "low", "close")},
                "volume": [bar.volume for bar in bars],
            }), title=f"{symbol} {day.isoformat()} (UTC)")
            st.altair_chart(prices, width="stretch")
            st.altair_chart(volumes, width="stretch")
    if leaders:
        by_volume, by_pnl = st.columns(2)
        for column, by, title in ((by_volume, "volume", "Top traders by volume"),
                                  (by_pnl, "pnl", "Top traders by P&L")):
            column.subheader(title)
            if leaders[by]:
                column.dataframe(_leaders(leaders[by], scale), hide_index=True, column_config=MONEY)
            else:
                column.info(f"Nobody traded {symbol} on {day.isoformat()} (UTC).")


def _metrics(instrument: InstrumentConfig, figures: DayFigures) -> None:
    volume, trades, vwap, spread, last, change = st.columns(6)
    volume.metric("Volume (lots)", f"{figures.volume:,}")
    trades.metric("Trades", f"{figures.trades:,}")
    vwap.metric("VWAP", "–" if figures.vwap is None else format_average(instrument, figures.vwap))
    spread.metric("Average spread", "–" if figures.spread is None else format_average(instrument, figures.spread))
    last.metric("Last", "–" if figures.last is None else instrument.format_price(figures.last))
    if figures.change is None:
        change.metric("Change", "–", help="no previous close" if figures.last is not None else None)
    else:
        sign = "+" if figures.change >= 0 else "-"
        percent = Decimal(figures.change) / Decimal(figures.previous_close) * 100
        change.metric("Change", f"{sign}{instrument.format_price(abs(figures.change))}", delta=f"{percent:+.2f}%",
                      help=f"since the previous close, {instrument.format_price(figures.previous_close)}")


def _leaders(records: list[queries.TraderRecord], scale: int) -> pd.DataFrame:
    return pd.DataFrame({
        "trader": [record.account for record in records],
        "volume": [record.volume for record in records],
        "trades": [record.trades for record in records],
        "notional": [record.notional / scale for record in records],
        "position": [record.position for record in records],
        "P&L": [record.pnl / scale for record in records],
    })


if __name__ == "__main__":
    render(session_config())
