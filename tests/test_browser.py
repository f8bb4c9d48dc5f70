"""Both web apps in a real browser: Debian's Chromium, headless, driven by Playwright, against the
apps served by ``python main.py --frontend ...`` on a real exchange.

Each test loads its page, logs on or picks what it shows, acts, asserts on what the page shows and
saves a screenshot: under ``$EXCHANGE_SCREENSHOTS`` if set (``make screenshots`` sets it to
``docs/``, whose pictures the README shows), else in the test's temporary directory.
"""

import os
import shutil
from pathlib import Path

import pytest

from engine.types import OrderType, Side, TimeInForce
from servers.processes import Role, free_port

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
TIMEOUT_MS = 30_000

sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright for Python is not installed (make build "
                                                             "installs it)")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no Chromium on this machine: make test installs Debian's "
                                "chromium package where it can (it needs apt-get and root)")
# Assertions wait as long as actions do: on a busy machine (the suite on every core) a page can take
# longer than Playwright's default 5 s to show what a click led to.
sync_api.expect.set_options(timeout=TIMEOUT_MS)


@pytest.fixture(scope="module", autouse=True)
def market(live_exchange):
    """A market maker and random flow in ACME while the pages are looked at, as under ``up``
    (so the pages, and the README's pictures of them, show a market)."""
    bots = [Role(["-c", "marketmaker", "--trader", "mm1", "--symbol", "ACME", "--interval", "0.1"],
                 live_exchange.env),
            Role(["-c", "random", "--trader", "flow1", "--symbol", "ACME", "--rate", "20"], live_exchange.env)]
    yield
    for bot in bots:
        bot.stop()


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                              args=["--no-sandbox", "--disable-gpu"])
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1400, "height": 1900})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    yield page
    context.close()


def served(live_exchange, app: str, **overrides: str) -> tuple[Role, str]:
    """App ``app`` (trader or analytics) serving ``live_exchange``, and its URL: on a port of its
    own, since the app a test before stopped may not have let go of the last one yet."""
    port = {f"EXCHANGE__FRONTEND__{app.upper()}_PORT": str(free_port())}
    role = Role(["--frontend", app], {**live_exchange.env, **port, **overrides}, ready_timeout=60)
    return role, role.wait_for("READY", 1).split()[-1]


def screenshot(page, name: str, tmp_path: Path) -> Path:
    folder = Path(os.environ.get("EXCHANGE_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    page.screenshot(path=str(path))
    assert path.stat().st_size > 10_000, "a screenshot of a rendered page"
    return path


def test_the_trader_portal_logs_on_takes_an_order_and_shows_it(live_exchange, page, tmp_path):
    seller = live_exchange.client("bob")
    seller.enter_order("ACME", Side.SELL, OrderType.LIMIT, TimeInForce.GTC, 10100, 30)
    seller.enter_order("ACME", Side.SELL, OrderType.LIMIT, TimeInForce.GTC, 10150, 12)
    portal, url = served(live_exchange, "trader")
    with portal:
        page.goto(url)
        page.get_by_role("textbox", name="Trader id").fill("alice")
        page.get_by_role("textbox", name="API key").fill("wrong-key")
        page.get_by_role("button", name="Log on").click()
        sync_api.expect(page.get_by_text("Logon refused")).to_be_visible()

        page.get_by_role("textbox", name="API key").fill("alice-demo-key")
        page.get_by_role("button", name="Log on").click()
        sync_api.expect(page.get_by_text("Logged on as alice")).to_be_visible()
        sync_api.expect(page.get_by_text("Best offer")).to_be_visible()

        page.get_by_role("textbox", name="Price (0.01 tick)").fill("101.00")
        page.get_by_role("textbox", name="Quantity (lot 1)").fill("5")
        page.get_by_role("button", name="Send ACME order").click()
        sync_api.expect(page.get_by_text("Accepted: order")).to_be_visible()
        page.get_by_role("tab", name="Fills").click()
        sync_api.expect(page.get_by_text("No fills today.")).not_to_be_visible()

        page.get_by_role("textbox", name="Price (0.01 tick)").fill("99.00")
        page.get_by_role("textbox", name="Quantity (lot 1)").fill("3")
        page.get_by_role("button", name="Send ACME order").click()
        sync_api.expect(page.get_by_text("Accepted: order")).to_be_visible()
        page.get_by_role("tab", name="Open orders").click()
        sync_api.expect(page.get_by_role("button", name="Cancel")).to_be_visible()
        page.wait_for_timeout(2500)  # a refresh of the live parts, so the picture shows them
        screenshot(page, "trader-portal", tmp_path)
        assert "Traceback" not in page.content()
        assert portal.stop() == 0, portal.output()


def test_closing_the_browser_logs_its_exchange_session_out(live_exchange, browser):
    portal, url = served(live_exchange, "trader", EXCHANGE__FRONTEND__SESSION_GRACE_S="2")
    with portal:
        context = browser.new_context()
        page = context.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        page.goto(url)
        page.get_by_role("textbox", name="Trader id").fill("demo1")
        page.get_by_role("textbox", name="API key").fill("demo1-demo-key")
        page.get_by_role("button", name="Log on").click()
        sync_api.expect(page.get_by_text("Logged on as demo1")).to_be_visible()
        live_exchange.tes.wait_for("demo1 logged on", 5)
        assert not any("session of demo1 ended" in line for line in live_exchange.tes.lines)

        context.close()  # the tab, and with it the browser session, is gone
        live_exchange.tes.wait_for("session of demo1 ended: logged out", 15)
        assert portal.stop() == 0, portal.output()


def test_the_analytics_dashboard_shows_every_page(live_exchange, page, tmp_path):
    dashboard, url = served(live_exchange, "analytics")
    with dashboard:
        for path, heading in (("", "Health"), ("market", "Market"), ("traders", "Traders")):
            page.goto(f"{url}/{path}")
            sync_api.expect(page.get_by_role("heading", name=heading).first).to_be_visible()
            page.wait_for_timeout(2500)
            shown = page.inner_text("body")
            assert "Traceback" not in shown and "Page not found" not in shown
            assert "in nanoseconds" not in shown, "a docstring of the page's code drawn on the page"
            screenshot(page, f"analytics-{(path or heading).lower()}", tmp_path)
        assert dashboard.stop() == 0, dashboard.output()
