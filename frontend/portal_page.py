"""The trader portal's page (``python main.py --frontend trader`` runs `main` from ``trader_app.py``).

One exchange session per browser session (`frontend.portal`), logged out when the trader logs
out or the browser session has been gone for ``frontend.session_grace_s``. The live parts (the
top of book with, outside continuous trading, the phase and its indicative uncross, the ladder,
the tape, orders, fills, positions, the chart) are fragments that
rerun on their own, so the page stays usable while they refresh. Whatever goes wrong is a
message on the page, never a traceback: `shown_errors` wraps every part.
"""

import contextlib
import logging
import threading
import time
import uuid
from datetime import UTC, datetime

import streamlit as st
from sqlalchemy.exc import SQLAlchemyError
from streamlit.runtime import Runtime
from streamlit.runtime.scriptrunner import get_script_run_ctx

from clients.client import LogonError
from clients.terminal import clock, phase_text, uncross_text
from config.settings import Config, ConfigError, load_config
from database import queries
from database.store import StoreUnavailable, database_url, make_engine, transaction
from database.ticks.queries import TickHistory
from engine.types import OrderType, Phase, Side, TimeInForce
from frontend import charts, views
from frontend.portal import ExchangeUnavailable, InputError, PortalSession, PortalSessions
from servers.protocol import CancelRejected, OrderRejected, ReplaceRejected

LIVE_S = 1.0
CHART_S = 5.0
LEVELS = 10
BAR_INTERVALS = {"1 minute": 60, "5 minutes": 300, "15 minutes": 900, "1 hour": 3600}
DAY_NS = 86_400 * 10**9

log = logging.getLogger("frontend.trader")


@contextlib.contextmanager
def shown_errors(what: str):
    """Show a failure of ``what`` on the page (and log its traceback) instead of raising it."""
    try:
        yield
    except ExchangeUnavailable as exc:
        st.warning(f"{what}: {exc}.")
    except (StoreUnavailable, SQLAlchemyError) as exc:
        st.warning(f"{what}: the database is not available ({type(exc).__name__}); the page retries on its own.")
    except Exception as exc:  # noqa: BLE001 - the page must survive anything
        log.exception("%s failed", what)
        st.error(f"{what} failed: {exc}")


def browser_session_active(connection_id: str) -> bool:
    """Whether the browser session with Streamlit's id ``connection_id`` is still connected
    (always, outside a running server)."""
    return not Runtime.exists() or Runtime.instance().is_active_session(connection_id)


@st.cache_resource
def portal_sessions(grace_s: float) -> PortalSessions:
    """The process's sessions, swept by a janitor thread for the lifetime of the server."""
    sessions = PortalSessions(browser_session_active, grace_s)
    sessions.run_janitor(threading.Event())
    return sessions


@st.cache_resource
def database(url: str):
    """An engine on the transactional database, read only (the recorder makes and migrates it)."""
    return make_engine(database_url(url))


def settings() -> Config:
    if "config" not in st.session_state:
        try:
            st.session_state.config = load_config()
        except ConfigError as exc:
            st.error(f"The exchange's configuration cannot be used: {exc}")
            st.stop()
    return st.session_state.config


# ================================================================ logon


def logon_form(config: Config, sessions: PortalSessions, browser_id: str, connection_id: str) -> None:
    st.title("Trader portal")
    with st.form("logon"):
        trader_id = st.text_input("Trader id", key="trader_id")
        api_key = st.text_input("API key", type="password", key="api_key")
        submitted = st.form_submit_button("Log on", type="primary", key="logon")
    if not submitted:
        return
    if not trader_id.strip() or not api_key:
        st.error("Enter your trader id and your API key.")
        return
    session = PortalSession(config, trader_id.strip(), api_key)
    try:
        session.logon()
    except LogonError as exc:
        session.close()
        if exc.unreachable:
            st.error(f"The exchange is not answering ({config.tes.client_endpoint}): is it running? Try again "
                     "in a moment.")
        elif exc.reason is None:
            st.error(f"The exchange did not admit the connection ({config.tes.client_endpoint}): "
                     f"{exc.args[0].split(': ', 1)[-1]}. Try again in a moment.")
        else:
            st.error(f"Logon refused: {exc.args[0].split(': ', 1)[-1]}")
        return
    except Exception as exc:  # noqa: BLE001 - a key file missing, a socket refused: say so
        session.close()
        log.exception("logon failed")
        st.error(f"Logon failed: {exc}")
        return
    sessions.put(browser_id, connection_id, session)
    st.rerun()


# ================================================================ the trading page


def sidebar(session: PortalSession, sessions: PortalSessions, browser_id: str) -> str:
    with st.sidebar:
        st.subheader(f"Logged on as {session.trader_id}")
        symbol = st.selectbox("Symbol", sorted(session.instruments), key="symbol")
        if st.button("Log out", key="logout"):
            sessions.drop(browser_id)
            st.rerun()
        st.caption("Prices in currency units, quantities in lots.")
    return symbol


@st.fragment(run_every=LIVE_S)
def market(session: PortalSession, symbol: str) -> None:
    instrument = session.instrument(symbol)
    with shown_errors("Market data"):
        feed = session.book(symbol)
        if feed.lost_at is not None:
            st.warning(f"The connection to the order book server of {symbol} was lost at {clock(feed.lost_at)} "
                       "UTC: its book shows again once the connection is back and the book rebuilt.",
                       icon=":material/link_off:")
            return
        if not feed.synced:
            st.info(f"Waiting for the book of {symbol} from its order book server...")
            return
        bid, ask = feed.best_bid(), feed.best_ask()
        last = feed.last_price
        columns = st.columns(4)
        columns[0].metric("Best bid", views.side_quote(instrument, bid))
        columns[1].metric("Best offer", views.side_quote(instrument, ask))
        columns[2].metric("Spread", views.spread_text(instrument, bid, ask))
        columns[3].metric("Last", "--" if last is None else instrument.format_price(last))
        if feed.phase != Phase.CONTINUOUS:
            uncross = uncross_text(instrument, feed.indicative_price, feed.indicative_volume)
            st.warning(f"{symbol} trading phase: {phase_text(feed.phase, feed.phase_reason, feed.phase_until)}; "
                       f"indicative uncross {uncross}", icon=":material/pause_circle:")
        left, right = st.columns([3, 2])
        bids, asks = feed.depth(LEVELS)
        ladder = views.ladder(instrument, bids, asks)
        biggest = int(max([*ladder["bid size"], *ladder["ask size"], 1]))
        with left:
            st.markdown("**Depth**")
            st.dataframe(ladder, hide_index=True, width="stretch", column_config={
                "bid size": st.column_config.ProgressColumn("bid size", min_value=0, max_value=biggest, format="%d"),
                "ask size": st.column_config.ProgressColumn("ask size", min_value=0, max_value=biggest, format="%d"),
            })
        with right:
            st.markdown("**Trades**")
            st.dataframe(views.tape(instrument, session.trades[symbol]), hide_index=True, width="stretch",
                         height=390)


def order_entry(session: PortalSession, symbol: str) -> None:
    instrument = session.instrument(symbol)
    st.markdown("**New order**")
    with st.form("order", clear_on_submit=False):
        side = st.radio("Side", list(Side), format_func=lambda s: s.name, horizontal=True, key="side")
        first, second = st.columns(2)
        order_type = first.selectbox("Type", list(OrderType), format_func=lambda t: t.name, key="order_type")
        tif = second.selectbox("Time in force", list(TimeInForce), format_func=lambda t: t.name, key="tif")
        price = first.text_input(f"Price ({instrument.format_price(instrument.tick_size)} tick)",
                                 help="Ignored for a market order", key="price")
        quantity = second.text_input(f"Quantity (lot {instrument.lot_size})", key="quantity")
        submitted = st.form_submit_button(f"Send {symbol} order", type="primary", key="send")
    if not submitted:
        return
    with shown_errors("The order"):
        try:
            answer = session.enter(symbol, side, order_type, tif, price, quantity)
        except InputError as exc:
            st.error(f"Not sent: {exc}")
            return
        if isinstance(answer, OrderRejected):
            st.error(f"Rejected: {session.reject_text(answer)}")
        else:
            shown = "market" if order_type == OrderType.MARKET else instrument.format_price(answer.price)
            st.success(f"Accepted: order {answer.order_id}, {side.name} {answer.quantity} {symbol} @ {shown} "
                       f"{tif.name}")


def change_order(session: PortalSession, order, action: str) -> None:
    """Cancel or replace ``order`` (a button's callback: it runs before the orders are drawn again,
    so the table shows the outcome); the outcome is kept as ``order_notice`` for the page."""
    try:
        if action == "cancel":
            answer = session.cancel(order.order_id)
            rejected = isinstance(answer, CancelRejected)
        else:
            answer = session.replace(order, st.session_state[f"replace_price_{order.order_id}"],
                                     st.session_state[f"replace_qty_{order.order_id}"])
            rejected = isinstance(answer, ReplaceRejected)
    except InputError as exc:
        st.session_state.order_notice = ("error", f"Not sent: {exc}")
    except ExchangeUnavailable as exc:
        st.session_state.order_notice = ("warning", f"{action.capitalize()}: {exc}")
    else:
        done = "Canceled" if action == "cancel" else "Replaced"
        st.session_state.order_notice = (
            ("error", f"{action.capitalize()} rejected: {session.reject_text(answer)}") if rejected
            else ("success", f"{done} order {order.order_id}"))


@st.fragment(run_every=LIVE_S)
def my_orders(session: PortalSession) -> None:
    notice = st.session_state.pop("order_notice", None)
    if notice is not None:
        getattr(st, notice[0])(notice[1])
    with shown_errors("Open orders"):
        orders = session.open_orders()
        if not orders:
            st.info("No open orders.")
            return
        st.dataframe(views.open_orders(session.instruments, orders), hide_index=True, width="stretch")
        by_id = {order.order_id: order for order in orders}
        chosen = st.selectbox("Order", list(by_id), key="chosen_order",
                              format_func=lambda i: f"{i}: {by_id[i].side.name} {by_id[i].quantity} "
                                                    f"{by_id[i].symbol} @ "
                                                    f"{session.instrument(by_id[i].symbol).format_price(by_id[i].price)}")
        order = by_id[chosen]
        first, second, third, fourth = st.columns([2, 2, 1, 1], vertical_alignment="bottom")
        first.text_input("New price", value=session.instrument(order.symbol).format_price(order.price),
                         key=f"replace_price_{chosen}")
        second.text_input("New open quantity", value=str(order.quantity), key=f"replace_qty_{chosen}")
        third.button("Replace", key="replace", on_click=change_order, args=(session, order, "replace"))
        fourth.button("Cancel", key="cancel", on_click=change_order, args=(session, order, "cancel"))


def shown(table, empty: str) -> None:
    """``table``, or the sentence ``empty`` in its place when it has no rows."""
    if table.empty:
        st.info(empty)
    else:
        st.dataframe(table, hide_index=True, width="stretch")


@st.fragment(run_every=LIVE_S)
def my_fills(session: PortalSession, config: Config) -> None:
    with shown_errors("Fills"):
        session.pump()
        recorded = []
        with shown_errors("Fills recorded today"):
            start = int(time.time() * 1e9) // DAY_NS * DAY_NS
            with transaction(database(config.database.url), write=False) as connection:
                recorded = queries.executions(connection, session.trader_id, start, start + DAY_NS)
        shown(views.fills(session.instruments, recorded, session.fills), "No fills today.")


@st.fragment(run_every=LIVE_S)
def my_positions(session: PortalSession) -> None:
    with shown_errors("Positions"):
        shown(views.positions(session.instruments, session.positions()), "No positions.")


@st.fragment(run_every=LIVE_S)
def activity(session: PortalSession) -> None:
    with shown_errors("Activity"):
        session.pump()
        if not session.logged_on and session.client.ended is not None:
            st.warning(f"Session ended: {session.client.ended.text}. The page logs on again by itself.")
        st.code("\n".join(session.activity) or "nothing yet", language=None)


@st.fragment(run_every=CHART_S)
def chart(config: Config, symbol: str) -> None:
    if config.ticks.kdb_host:
        st.info("The chart reads the embedded tick store; this exchange records ticks to kdb+.")
        return
    interval = st.selectbox("Bars", list(BAR_INTERVALS), key="bar_interval")
    with shown_errors("The chart"):
        start = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        history = TickHistory(config.ticks.root)
        try:
            bars = history.bars(symbol, BAR_INTERVALS[interval] * 10**9, start=int(start.timestamp()) * 10**9)
        finally:
            history.close()
        if bars.num_rows == 0:
            st.info(f"No {symbol} trades recorded today yet.")
            return
        prices, volumes = charts.candlesticks(bars.to_pandas(), f"{symbol} today (UTC)")
        st.altair_chart(prices, width="stretch")
        st.altair_chart(volumes, width="stretch")


def trading_page(config: Config, session: PortalSession, sessions: PortalSessions, browser_id: str) -> None:
    symbol = sidebar(session, sessions, browser_id)
    st.title(f"{symbol}")
    market(session, symbol)
    left, right = st.columns([2, 3])
    with left:
        order_entry(session, symbol)
    with right:
        chart(config, symbol)
    orders, fills, positions, log_tab = st.tabs(["Open orders", "Fills", "Positions", "Activity"])
    with orders:
        my_orders(session)
    with fills:
        my_fills(session, config)
    with positions:
        my_positions(session)
    with log_tab:
        activity(session)


def main() -> None:
    st.set_page_config(page_title="Trader portal", layout="wide")
    config = settings()
    sessions = portal_sessions(config.frontend.session_grace_s)
    browser_id = st.session_state.setdefault("browser_id", uuid.uuid4().hex)
    session = sessions.get(browser_id)
    if session is None or session.closed:
        logon_form(config, sessions, browser_id, get_script_run_ctx().session_id)
        return
    trading_page(config, session, sessions, browser_id)

