"""Charts the apps share (Altair, which Streamlit renders with ``st.altair_chart``)."""

import altair as alt
import pandas as pd

UP, DOWN = "#26a69a", "#ef5350"


def candlesticks(bars: pd.DataFrame, title: str = "") -> tuple[alt.LayerChart, alt.Chart]:
    """An OHLC candlestick chart and the volume panel to show under it, on the same time axis
    (two charts rather than one concatenated, so each fills the width of its container).

    ``bars`` has the columns of `database.ticks.queries.TickHistory.bars`: time (the bar's start, shown in UTC),
    open, high, low, close (currency), volume (lots). A candle is green when it closed at or above
    its open, red otherwise; its wick spans low to high.
    """
    data = bars.assign(direction=(bars["close"] >= bars["open"]).map({True: "up", False: "down"}))
    colour = alt.Color("direction:N", scale=alt.Scale(domain=["up", "down"], range=[UP, DOWN]), legend=None)
    time = alt.X("time:T", title=None, axis=alt.Axis(format="%H:%M"), scale=alt.Scale(type="utc"))
    tooltip = [alt.Tooltip("utchoursminutesseconds(time):T", title="time (UTC)", format="%H:%M:%S"),
               "open:Q", "high:Q", "low:Q", "close:Q", "volume:Q"]
    base = alt.Chart(data).encode(x=time, color=colour, tooltip=tooltip)
    wicks = base.mark_rule().encode(
        y=alt.Y("low:Q", title="price", scale=alt.Scale(zero=False), axis=alt.Axis(format=",.2f")), y2="high:Q")
    bodies = base.mark_bar(size=7).encode(y="open:Q", y2="close:Q")
    closes = base.mark_tick(size=9, thickness=2).encode(y="close:Q")  # a candle that closed at its open
    volume = base.mark_bar(size=7).encode(y=alt.Y("volume:Q", title="volume"))
    return (wicks + bodies + closes).properties(height=260, title=title), volume.properties(height=90)
