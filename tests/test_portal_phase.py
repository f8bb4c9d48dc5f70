"""The trader portal shows a symbol's trading phase outside continuous trading: Streamlit's AppTest
against a real exchange whose phase the operator command sets (``python main.py phase``)."""

import subprocess
import sys

import pytest
from live_exchange import use_environment
from streamlit.testing.v1 import AppTest

from frontend.portal_page import portal_sessions
from servers.processes import REPO

APP = str(REPO / "frontend" / "trader_app.py")


def set_phase(env, symbol: str, phase: str) -> None:
    done = subprocess.run([sys.executable, "main.py", "phase", symbol, phase], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


@pytest.fixture
def page(live_exchange, monkeypatch):
    """The portal logged on as bob, after alice's crossing orders rest in a call of ACME."""
    use_environment(monkeypatch, live_exchange)
    alice = live_exchange.client("alice")
    set_phase(live_exchange.env, "ACME", "call")
    for side, price, quantity in ((0, 10_010, 5), (1, 9_990, 3)):
        alice.enter_order("ACME", side, 0, 0, price, quantity)
    at = AppTest.from_file(APP, default_timeout=30).run()
    at.text_input(key="trader_id").input("bob")
    at.text_input(key="api_key").input("bob-demo-key")
    yield at.button(key="logon").click().run()
    set_phase(live_exchange.env, "ACME", "continuous")
    alice.mass_cancel("ACME")
    portal_sessions(live_exchange.config.frontend.session_grace_s).close_all()


def test_the_portal_shows_the_call_and_its_indicative_uncross(page):
    at = page
    for _ in range(50):  # the page reruns until the feed has the book's snapshot and alice's orders
        warnings = [w.value for w in at.warning if "trading phase" in w.value]
        if warnings and warnings[0].endswith("3 @ 100.10"):
            break
        at = at.run()
    assert not at.exception, at.exception
    assert warnings == ["ACME trading phase: call (operator); indicative uncross 3 @ 100.10"]
