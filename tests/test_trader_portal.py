"""The trader portal (`frontend/trader_app.py`) driven by Streamlit's AppTest against a real exchange:
logon, orders of every kind the form offers, cancel and replace, a cross between two browser
sessions, bad input, and the exchange going away and coming back while the page is open."""

import signal
import time

import pytest
import zmq
from live_exchange import use_environment
from streamlit.testing.v1 import AppTest
from test_gate import Port, dealer

import frontend.portal
from engine.types import OrderType, Side, TimeInForce
from frontend.portal import PortalSession
from frontend.portal_page import portal_sessions
from servers.processes import REPO, Role, free_port

APP = str(REPO / "frontend" / "trader_app.py")


@pytest.fixture
def portal(live_exchange, monkeypatch):
    """A function giving a new browser session of the portal, logged on as the trader given."""
    use_environment(monkeypatch, live_exchange)

    def open_portal(trader_id: str, api_key: str | None = None) -> AppTest:
        at = AppTest.from_file(APP, default_timeout=30).run()
        assert not at.exception, at.exception
        at.text_input(key="trader_id").input(trader_id)
        at.text_input(key="api_key").input(api_key or f"{trader_id}-demo-key")
        return at.button(key="logon").click().run()

    yield open_portal
    portal_sessions(live_exchange.config.frontend.session_grace_s).close_all()


def texts(elements) -> list[str]:
    return [element.value for element in elements]


def table(at: AppTest, column: str):
    """The dataframe on the page that has ``column``."""
    found = [frame.value for frame in at.dataframe if column in frame.value.columns]
    assert found, f"no table with a {column!r} column: {[list(f.value.columns) for f in at.dataframe]}"
    return found[0]


def send(at: AppTest, side: Side, order_type: OrderType, tif: TimeInForce, price: str, quantity: str,
         symbol: str = "ACME") -> AppTest:
    at.selectbox(key="symbol").set_value(symbol).run()
    at.radio(key="side").set_value(side)
    at.selectbox(key="order_type").set_value(order_type)
    at.selectbox(key="tif").set_value(tif)
    at.text_input(key="price").input(price)
    at.text_input(key="quantity").input(quantity)
    return at.button(key="send").click().run()


def accepted_order(at: AppTest) -> int:
    accepted = [text for text in texts(at.success) if text.startswith("Accepted: order ")]
    assert len(accepted) == 1, texts(at.success) + texts(at.error) + texts(at.warning)
    (message,) = accepted
    return int(message.split()[2].rstrip(","))


def settled(at: AppTest, check, timeout: float = 10.0) -> AppTest:
    """Rerun the page until ``check(at)`` holds: it neither fails an assertion nor returns False
    (the live parts refresh on their own in a browser)."""
    deadline = time.monotonic() + timeout
    while True:
        at.run()
        assert not at.exception, at.exception
        try:
            if check(at) is not False:
                return at
        except AssertionError:
            if time.monotonic() > deadline:
                raise
        assert time.monotonic() <= deadline, f"the page did not settle within {timeout}s"
        time.sleep(0.2)


def test_a_logon_with_no_answer_says_whether_the_exchange_runs_or_turned_it_away(portal, monkeypatch):
    """Nothing at the endpoint: "not answering ... is it running?"; a full client port (a gate
    holding one connection, taken): "did not admit the connection", with the cause."""
    monkeypatch.setattr(frontend.portal, "LOGON_TIMEOUT_S", 0.5)
    nowhere = f"tcp://127.0.0.1:{free_port()}"
    monkeypatch.setenv("EXCHANGE__TES__CLIENT_ENDPOINT", nowhere)
    at = portal("alice")
    assert not at.exception
    assert texts(at.error) == [f"The exchange is not answering ({nowhere}): is it running? Try again in a moment."]

    context = zmq.Context()
    port = None
    try:
        port = Port(context, capacity=1)
        holder = dealer(context, port.address)
        holder.send(b"hello")
        assert port.router.poll(5000)
        monkeypatch.setenv("EXCHANGE__TES__CLIENT_ENDPOINT", port.address)
        at = portal("alice")
        assert not at.exception
        [error] = texts(at.error)
        assert error.startswith(f"The exchange did not admit the connection ({port.address}): it closed ")
        assert error.endswith(" before the handshake: it holds its most connections (max_connections); the client "
                              "goes on trying. Try again in a moment."), error
    finally:
        if port is not None:
            port.close()
        context.destroy(linger=0)


def test_a_wrong_key_is_refused_with_the_reason_and_the_key_is_not_shown(portal):
    at = portal("alice", "not-alice's-key")
    assert not at.exception
    assert texts(at.error) == ["Logon refused: unknown trader or wrong API key (5002)"]
    assert "not-alice's-key" not in " ".join(texts(at.error) + texts(at.markdown))
    assert at.text_input(key="api_key").proto.type == at.text_input(key="api_key").proto.PASSWORD


def test_an_order_rests_shows_in_open_orders_and_is_canceled(portal):
    at = portal("alice")
    assert "Logged on as alice" in [element.value for element in at.sidebar.subheader]
    at = send(at, Side.BUY, OrderType.LIMIT, TimeInForce.GTC, "95.50", "7")
    order_id = accepted_order(at)
    assert f"Accepted: order {order_id}, BUY 7 ACME @ 95.50 GTC" in texts(at.success)

    orders = table(settled(at, lambda at: table(at, "client id")), "client id")
    row = orders[orders["order"] == order_id].iloc[0]
    assert (row["symbol"], row["side"], row["tif"], row["price"], row["open"]) == ("ACME", "BUY", "GTC", "95.50", 7)

    at.selectbox(key="chosen_order").set_value(order_id)
    at = at.button(key="cancel").click().run()
    assert f"Canceled order {order_id}" in texts(at.success)
    settled(at, lambda at: order_id not in set(table(at, "client id")["order"]) if any(
        "client id" in frame.value.columns for frame in at.dataframe) else True)


def test_replace_changes_price_and_quantity(portal):
    at = portal("demo1")
    order_id = accepted_order(send(at, Side.SELL, OrderType.LIMIT, TimeInForce.DAY, "104.00", "3"))
    at = settled(at, lambda at: table(at, "client id"))
    at.selectbox(key="chosen_order").set_value(order_id).run()
    at.text_input(key=f"replace_price_{order_id}").input("103.50")
    at.text_input(key=f"replace_qty_{order_id}").input("2")
    at = at.button(key="replace").click().run()
    assert f"Replaced order {order_id}" in texts(at.success), texts(at.error)
    row = table(at, "client id").set_index("order").loc[order_id]
    assert (row["price"], row["open"]) == ("103.50", 2)


def test_a_cross_between_two_traders_fills_both_and_moves_their_positions(portal, live_exchange):
    buyer = portal("alice")
    seller = portal("bob")
    order_id = accepted_order(send(buyer, Side.BUY, OrderType.LIMIT, TimeInForce.GTC, "100.25", "4"))
    send(seller, Side.SELL, OrderType.MARKET, TimeInForce.IOC, "", "4")
    assert any(text.startswith("Accepted: order ") and "SELL 4 ACME @ market IOC" in text
               for text in texts(seller.success)), texts(seller.success) + texts(seller.error)

    def filled(at):
        fills = table(at, "role")
        assert ((fills["order"] == order_id) & (fills["price"] == "100.25") & (fills["quantity"] == 4)).any(), fills

    settled(buyer, filled)

    def long_four(at):
        positions = table(at, "average price").set_index("symbol")
        assert positions.loc["ACME", "position"] >= 4, positions
        assert positions.loc["ACME", "last"] == "100.25", positions

    settled(buyer, long_four)
    assert any(f"filled    order {order_id}: bought 4 ACME @ 100.25" in line
               for line in texts(buyer.code)[0].splitlines()), texts(buyer.code)

    live_exchange.recorded()
    dashboard = AppTest.from_file(str(REPO / "frontend" / "analytics_app.py"), default_timeout=30).run()
    dashboard = dashboard.switch_page("dashboard/market.py").run()
    assert not dashboard.exception, dashboard.exception
    shown = {metric.label: metric.value for metric in dashboard.metric}
    assert (shown["Volume (lots)"], shown["Trades"], shown["Last"]) == ("4", "1", "100.25"), shown


@pytest.mark.parametrize("price, quantity, symbol, expected", [
    ("abc", "5", "ACME", "Not sent: price 'abc' is not a number"),
    ("99.505", "5", "ACME", "Not sent: price 99.505 is not a multiple of the tick 0.01"),
    ("99.50", "five", "ACME", "Not sent: quantity 'five' is not a whole number of lots"),
    ("99.50", "-3", "ACME", "Not sent: quantity must be positive, got -3"),
    ("", "5", "ACME", "Not sent: a limit order needs a price"),
])
def test_input_that_is_not_an_order_is_not_sent(portal, price, quantity, symbol, expected):
    at = send(portal("demo2"), Side.BUY, OrderType.LIMIT, TimeInForce.GTC, price, quantity, symbol)
    assert texts(at.error) == [expected]
    assert not at.exception


def test_what_the_exchange_rejects_shows_its_reason_in_decimals(portal):
    at = portal("demo2")
    at = send(at, Side.BUY, OrderType.LIMIT, TimeInForce.GTC, "250.00", "15", "BOLT")
    assert texts(at.error) == ["Rejected: quantity 15 is not a multiple of the lot 10 (3003)"]
    at = send(at, Side.BUY, OrderType.LIMIT, TimeInForce.GTC, "250.01", "10", "BOLT")
    assert texts(at.error) == ["Rejected: price 250.01 is not a multiple of the tick 0.05 (3002)"]


def test_logging_out_ends_the_exchange_session(portal, live_exchange):
    at = portal("demo1")
    sessions = portal_sessions(live_exchange.config.frontend.session_grace_s)
    before = len(sessions)
    at = at.button(key="logout").click().run()
    assert at.text_input(key="trader_id").label == "Trader id", "back at the logon form"
    assert len(sessions) == before - 1
    live_exchange.tes.wait_for("session of demo1 ended: logged out", 5)


def test_the_book_of_a_symbol_no_longer_shown_is_closed(live_exchange, monkeypatch):
    """Its feed would hold a subscription of the book server, and what is queued for it, for nothing."""
    session = PortalSession(live_exchange.config, "alice", "alice-demo-key")
    try:
        acme = session.book("ACME")
        session.book("BOLT")
        assert sorted(session.feeds) == ["ACME", "BOLT"], f"both read within {frontend.portal.FEED_IDLE_S:g} s"
        monkeypatch.setattr(frontend.portal, "FEED_IDLE_S", 0.0)
        time.sleep(0.01)
        bolt = session.book("BOLT")
        assert list(session.feeds) == ["BOLT"] and sorted(session.trades) == sorted(session.read_at) == ["BOLT"]
        assert acme.subscriber.closed and acme.snapshotter.closed
        time.sleep(0.01)
        again = session.book("ACME")
        assert again is not acme and list(session.feeds) == ["ACME"] and bolt.subscriber.closed
    finally:
        session.close()


def book_shown(at: AppTest) -> None:
    assert [metric.label for metric in at.metric][:1] == ["Best bid"], texts(at.warning) + texts(at.info)


def test_the_page_says_the_market_data_connection_was_lost_and_shows_the_book_once_it_is_back(portal, live_exchange):
    """The order book server stopped (SIGSTOP) answers nothing, not even ZeroMQ's heartbeat."""
    at = portal("flow2")
    settled(at, book_shown)
    live_exchange.obs.process.send_signal(signal.SIGSTOP)
    try:
        def lost(at):
            warnings = " ".join(texts(at.warning))
            assert "The connection to the order book server of ACME was lost at " in warnings, warnings
            assert "its book shows again once the connection is back" in warnings, warnings
            assert not at.metric, "no stale book"

        at = settled(at, lost, timeout=15)
    finally:
        live_exchange.obs.process.send_signal(signal.SIGCONT)
    settled(at, book_shown, timeout=15)


def test_the_page_says_the_exchange_is_down_and_recovers_when_it_is_back(portal, live_exchange):
    """Last in the module: it restarts the exchange's TES."""
    at = portal("demo2")
    live_exchange.tes.stop()
    at.run()
    assert not at.exception
    warnings = " ".join(texts(at.warning))
    assert "the exchange is not answering" in warnings and "trying again every 2 s" in warnings, warnings

    live_exchange.tes = Role(["-s", "TES"], live_exchange.env)
    live_exchange.tes.wait_for("shard A ready", 10)

    def answering(at):
        assert not any("not answering" in warning for warning in texts(at.warning)), texts(at.warning)

    settled(at, answering, timeout=20)
    at = send(at, Side.BUY, OrderType.LIMIT, TimeInForce.GTC, "95.00", "1")
    assert accepted_order(at) > 0
