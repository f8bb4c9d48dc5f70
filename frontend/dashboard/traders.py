"""The dashboard's Traders page: one trader's P&L curves, risk figures, positions and fills.

Pickers of trader, day and bar interval; then, refreshed every `REFRESH_S` seconds: the
intraday P&L curve of the day (`frontend.pnl.intraday`, marked at every bar), the cumulative
daily P&L over every day the trader's symbols traded (`frontend.pnl.daily`), the risk figures
of that daily P&L (`frontend.risk`: maximum drawdown with its days, Sharpe and Sortino, 1-day
VaR at 95% and 99%, historical and parametric; a figure that cannot be computed says why),
the trader's positions and its fills of the day, newest first. Prices show with the
instrument's ``format_price``, money in currency units with 2 decimals. Run by
`frontend.analytics_app` as a page file.
"""

from datetime import UTC, date, datetime

import altair as alt
import pandas as pd
import streamlit as st

from config.settings import Config, InstrumentConfig
from database import queries
from database.store import transaction
from frontend import pnl
from frontend.analytics_app import BARS, REFRESH_S, database, guarded, session_config, tick_history
from frontend.market import day_range, format_average
from frontend.risk import CONFIDENCES, RiskFigures

FILLS = 200
"""The most fills of the day the table shows (the newest)."""
MONEY = st.column_config.NumberColumn(format="%.2f")


def render(config: Config) -> None:
    st.title("Traders")
    traders = sorted({trader.trader_id for trader in config.traders})
    if not traders:
        st.info("The configuration names no traders.")
        return
    trader_column, day_column, interval_column = st.columns(3)
    trader = trader_column.selectbox("Trader", traders, key="traders.trader")
    latest = None
    with guarded("The trading days"):
        with transaction(database(config), write=False) as connection:
            closes = queries.closes(connection, date.min, date.max)
        latest = closes[-1].day if closes else None
    day = day_column.date_input("Day (UTC) of the intraday curve and the fills",
                                value=latest or datetime.now(UTC).date(), key="traders.day")
    interval = interval_column.selectbox("Bars of the intraday curve", list(BARS), key="traders.interval")
    _live(config, trader, day, BARS[interval])


@st.fragment(run_every=REFRESH_S)
def _live(config: Config, trader: str, day: date, interval: int) -> None:
    instruments = {instrument.symbol: instrument for instrument in config.instruments}
    scales = {symbol: instrument.price_scale for symbol, instrument in instruments.items()}
    start, end = day_range(day)
    records = None
    with guarded(f"The records of {trader}"):
        with transaction(database(config), write=False) as connection:
            records = (queries.positions(connection, trader), queries.daily(connection, trader, date.min, date.max),
                       queries.holdings(connection, trader, start), queries.executions(connection, trader, start, end))
    if records is None:
        return
    positions, days, holdings, fills = records
    if not positions:
        st.info(f"{trader} has no fills recorded yet: its P&L, risk figures and positions appear after the first.")
        return
    curve = pnl.daily(days, scales)

    intraday_column, daily_column = st.columns(2)
    with intraday_column:
        st.subheader(f"P&L on {day.isoformat()} (UTC)")
        with guarded("The intraday P&L curve"):
            with tick_history(config) as history:
                bars = history.bars(None, interval, start, end)
            points = pnl.intraday(holdings, fills, bars, scales, start, interval)
            if len(points) < 2:
                st.info(f"None of {trader}'s symbols traded on {day.isoformat()} (UTC).")
            else:
                st.altair_chart(_line(pd.to_datetime([point.time for point in points], unit="ns", utc=True),
                                      [point.pnl for point in points], "time (UTC)", "%H:%M"), width="stretch")
    with daily_column:
        st.subheader("Cumulative daily P&L")
        st.altair_chart(_line(pd.to_datetime([entry.day for entry in curve], utc=True),
                              [entry.cumulative for entry in curve], "day (UTC)", "%Y-%m-%d"), width="stretch")

    st.subheader("Risk figures of the daily P&L")
    _risk(pnl.risk(curve), curve)

    st.subheader("Positions")
    st.dataframe(_positions(positions, instruments), hide_index=True,
                 column_config={name: MONEY for name in ("cash", "realized", "unrealized", "P&L")})
    st.subheader(f"Fills on {day.isoformat()} (UTC), newest first")
    if fills:
        st.dataframe(_fills(fills[::-1][:FILLS], instruments), hide_index=True)
    else:
        st.info(f"{trader} has no fills on {day.isoformat()} (UTC).")


def _line(times: pd.DatetimeIndex, values: list[float], title: str, time_format: str) -> alt.Chart:
    """A P&L line over UTC times, shown in UTC whatever the browser's time zone."""
    frame = pd.DataFrame({"time": times, "P&L": values, "at": times.strftime(time_format)})
    return alt.Chart(frame).mark_line(point=True).encode(
        x=alt.X("time:T", title=title, scale=alt.Scale(type="utc"), axis=alt.Axis(format=time_format)),
        y=alt.Y("P&L:Q", title="P&L", axis=alt.Axis(format=",.2f")),
        tooltip=[alt.Tooltip("at:N", title=title), alt.Tooltip("P&L:Q", format=",.2f")],
    )


def _risk(figures: RiskFigures, curve: list[pnl.DayPnl]) -> None:
    undefined: dict[str, list[str]] = {}

    def shown(value: float | None, name: str, figure: str, digits: int = 2) -> str:
        if value is None:
            undefined.setdefault(pnl.undefined(figures, figure), []).append(name)
            return "–"
        return f"{value:,.{digits}f}"

    peak, trough = pnl.drawdown_days(figures, curve)
    total, drawdown, sharpe, sortino = st.columns(4)
    total.metric("Total P&L", f"{figures.total:,.2f}")
    total.caption(f"over {figures.days} trading day{'s' if figures.days != 1 else ''}")
    drawdown.metric("Maximum drawdown", f"{figures.drawdown.amount:,.2f}")
    drawdown.caption("no drawdown" if trough is None else
                     f"from {'the start' if peak is None else peak.isoformat()} to {trough.isoformat()}")
    sharpe.metric("Sharpe ratio (annualised)", shown(figures.sharpe, "Sharpe", "sharpe"))
    sortino.metric("Sortino ratio (annualised)", shown(figures.sortino, "Sortino", "sortino"))
    columns = iter(st.columns(2 * len(CONFIDENCES)))
    for kind, values in (("historical", figures.historical_var), ("parametric", figures.parametric_var)):
        for confidence in CONFIDENCES:
            name = f"1-day VaR {confidence:.0%} {kind}"
            next(columns).metric(name, shown(values[confidence], name, f"{kind}_var"))
    for reason, names in undefined.items():
        st.info(f"{', '.join(names)}: {reason}.")


def _positions(records: list[queries.PositionRecord], instruments: dict[str, InstrumentConfig]) -> pd.DataFrame:
    rows = []
    for record in records:
        instrument = instruments[record.symbol]
        scale = instrument.price_scale
        rows.append({
            "symbol": record.symbol,
            "position": record.quantity,
            "average price": format_average(instrument, record.average_price / scale) if record.quantity else "",
            "last": "" if record.last_price is None else instrument.format_price(record.last_price),
            "cash": record.cash / scale,
            "realized": record.realized / scale,
            "unrealized": record.unrealized / scale,
            "P&L": (record.realized + record.unrealized) / scale,
        })
    return pd.DataFrame(rows)


def _fills(records: list[queries.ExecutionRecord], instruments: dict[str, InstrumentConfig]) -> pd.DataFrame:
    return pd.DataFrame({
        "time (UTC)": pd.to_datetime([record.time for record in records], unit="ns", utc=True),
        "symbol": [record.symbol for record in records],
        "side": [record.side.name.lower() for record in records],
        "price": [instruments[record.symbol].format_price(record.price) for record in records],
        "quantity": [record.quantity for record in records],
        "liquidity": ["taker" if record.aggressor else "maker" for record in records],
        "trade": [record.trade_id for record in records],
        "order": [str(record.order_id) for record in records],
    })


if __name__ == "__main__":
    render(session_config())
