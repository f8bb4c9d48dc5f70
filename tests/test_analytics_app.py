"""The analytics dashboard (``frontend/analytics_app.py``) driven by Streamlit's `AppTest`.

The app runs in this process and reads the configuration of the environment, as
``python main.py --frontend analytics`` does: against a real exchange (the ``live_exchange``
fixture, `use_environment`), or against stores that are empty, unreachable or elsewhere. The
Market and Traders pages are page files of `st.navigation`, reached with
``switch_page("dashboard/...")`` after the first run (which shows the default page, Health).
A page that is run again stands for its refresh in a browser.
"""

import os
import time
from datetime import UTC, datetime
from pathlib import Path

from live_exchange import use_environment
from streamlit.testing.v1 import AppTest

from engine.types import OrderType, Side, TimeInForce
from servers.protocol import OrderAccepted, OrderFilled

APP = Path(__file__).resolve().parents[1] / "frontend" / "analytics_app.py"
UNREACHABLE = "postgresql://nobody@127.0.0.1:1/none"


def dashboard(page: str) -> AppTest:
    """The app, run once (Health), then switched to ``page`` ("market" or "traders") and run."""
    app = AppTest.from_file(str(APP), default_timeout=30).run()
    return app.switch_page(f"dashboard/{page}.py").run()


def environment(monkeypatch, **values: str) -> None:
    """This process's configuration: the default file with ``EXCHANGE__<NAME>`` overrides only."""
    for name in [name for name in os.environ if name.startswith("EXCHANGE")]:
        monkeypatch.delenv(name)
    for name, value in values.items():
        monkeypatch.setenv(f"EXCHANGE__{name}", value)


def texts(app: AppTest, kind: str) -> list[str]:
    return [element.value for element in getattr(app, kind)]


def metrics(app: AppTest) -> dict[str, str]:
    return {metric.label: metric.value for metric in app.metric}


def wait_for(client, kind, timeout: float = 10.0):
    """The first message of type ``kind`` the client receives within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for message in client.receive(0.5):
            if isinstance(message, kind):
                return message
    raise AssertionError(f"no {kind.__name__} within {timeout}s")


def test_dashboard_shows_a_trade_of_a_live_exchange(live_exchange, monkeypatch):
    use_environment(monkeypatch, live_exchange)
    today = datetime.now(UTC).date().isoformat()
    market = dashboard("market")
    traders = dashboard("traders")
    traders.selectbox(key="traders.trader").set_value("alice").run()
    # a fresh exchange: nothing traded yet, said in words
    assert not market.exception and not traders.exception
    assert f"ACME has no trades on {today} (UTC) yet." in texts(market, "info")
    assert metrics(market)["Volume (lots)"] == "0"
    assert texts(traders, "info") == [
        "alice has no fills recorded yet: its P&L, risk figures and positions appear after the first."]

    alice, bob = live_exchange.client("alice"), live_exchange.client("bob")
    alice.enter_order("ACME", Side.BUY, OrderType.LIMIT, TimeInForce.GTC, 10_000, 5)
    wait_for(alice, OrderAccepted)
    bob.enter_order("ACME", Side.SELL, OrderType.LIMIT, TimeInForce.GTC, 10_000, 5)
    wait_for(bob, OrderFilled)
    live_exchange.recorded()

    market.run()
    assert not market.exception
    assert {name: value for name, value in metrics(market).items() if name != "Change"} == {
        "Volume (lots)": "5", "Trades": "1", "VWAP": "100.0000", "Average spread": "–", "Last": "100.00"}
    by_volume, by_pnl = (table.value for table in market.dataframe)
    assert by_volume[["trader", "volume", "trades", "position"]].values.tolist() == [
        ["alice", 5, 1, 5], ["bob", 5, 1, -5]]
    assert by_volume["notional"].tolist() == [500.0, 500.0]
    assert by_pnl["P&L"].tolist() == [0.0, 0.0]
    prices, volumes = market.get("vega_lite_chart")  # the candlesticks over their volume panel
    assert f"ACME {today} (UTC)" in prices.proto.spec

    traders.run()
    assert not traders.exception
    positions, fills = (table.value for table in traders.dataframe)
    assert positions.to_dict("records") == [{
        "symbol": "ACME", "position": 5, "average price": "100.0000", "last": "100.00", "cash": -500.0,
        "realized": 0.0, "unrealized": 0.0, "P&L": 0.0}]
    assert fills[["symbol", "side", "price", "quantity", "liquidity"]].values.tolist() == [
        ["ACME", "buy", "100.00", 5, "maker"]]
    figures = metrics(traders)
    assert (figures["Total P&L"], figures["Maximum drawdown"], figures["Sharpe ratio (annualised)"]) == (
        "0.00", "0.00", "–")
    assert "Sharpe, Sortino, 1-day VaR 95% parametric, 1-day VaR 99% parametric: needs at least two trading days." \
        in texts(traders, "info")


def test_dashboard_with_an_unreachable_database_says_so(tmp_path, monkeypatch):
    environment(monkeypatch, DATABASE__URL=UNREACHABLE, TICKS__ROOT=str(tmp_path / "ticks"))
    for page in ("market", "traders"):
        app = dashboard(page)
        assert not app.exception
        errors = texts(app, "error")
        assert errors, page
        assert all("the database postgresql+psycopg://nobody@127.0.0.1:1/none is unavailable" in error
                   and error.endswith("The page tries again by itself.") for error in errors)


def test_dashboard_recovers_when_the_database_is_back(tmp_path, monkeypatch):
    blocker = tmp_path / "db"
    blocker.write_text("")  # a file where the database's directory must be: it cannot be opened
    environment(monkeypatch, DATABASE__URL=f"sqlite:///{blocker}/exchange.sqlite", TICKS__ROOT=str(tmp_path / "ticks"))
    app = dashboard("market")
    assert not app.exception
    assert texts(app, "error")
    blocker.unlink()
    app.run()
    assert not app.exception
    assert texts(app, "error") == []
    assert "Nobody traded ACME" in " ".join(texts(app, "info"))


def test_market_page_without_the_embedded_tick_store_says_what_it_needs(tmp_path, monkeypatch):
    environment(monkeypatch, DATABASE__URL=f"sqlite:///{tmp_path / 'exchange.sqlite'}",
                TICKS__ROOT=str(tmp_path / "ticks"), TICKS__KDB_HOST="kdb.invalid")
    app = dashboard("market")
    assert not app.exception
    assert texts(app, "warning") == [
        "Market figures: the market figures need the embedded tick store: this exchange records its ticks to kdb+ "
        "at kdb.invalid:5010, which the dashboard does not read."]


def test_dashboard_with_a_bad_configuration_says_why(monkeypatch):
    environment(monkeypatch, DATABASE__URL="mysql://somewhere/db")
    app = AppTest.from_file(str(APP), default_timeout=30).run()
    assert not app.exception
    [error] = texts(app, "error")
    assert error.startswith("The configuration cannot be used: ")
    assert "database.url" in error
