"""The analytics dashboard: ``streamlit run frontend/analytics_app.py`` (``python main.py --frontend analytics``).

Three pages under `st.navigation`, at the URL paths ``health``, ``market`` and ``traders``:

- Health (`frontend.dashboard.health`), the default, a callable page that imports its module
  when it is shown;
- Market and Traders (``frontend/dashboard/market.py``, ``frontend/dashboard/traders.py``), page
  files: run by Streamlit as scripts, each draws its ``render(config)``.

What the pages share is here, importable without running the app (it runs under
``__main__`` only):

- `session_config`: the configuration, loaded once per browser session; one that cannot be
  used stops the page with its message;
- `database` and `tick_history`: the transactional database's engine and the tick store's
  queries, opened once per process (``st.cache_resource``); a failure to open is not cached,
  so the next run tries again;
- `guarded`: a section of a page whose stores' failures (unreachable, refusing, no tick store
  here) become a message in its place instead of a traceback. The live sections rerun on
  their own, so a page recovers by itself when its stores are back.
"""

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb
import streamlit as st
from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError

from config.settings import Config, ConfigError, load_config
from database.store import StoreUnavailable, open_database
from database.ticks.queries import TickHistory

PAGES = Path(__file__).resolve().parent / "dashboard"
CONFIG_KEY = "analytics.config"
REFRESH_S = 5
"""How often the live sections of the pages redraw themselves."""
MINUTE = 60 * 10**9
BARS = {"1 min": MINUTE, "5 min": 5 * MINUTE, "15 min": 15 * MINUTE, "1 hour": 60 * MINUTE}
"""The bar intervals a page offers, in nanoseconds."""


class NoTickStore(Exception):
    """The exchange records its ticks to kdb+, which the dashboard does not read."""


def session_config() -> Config:
    """The configuration of this browser session (`load_config`, once); a `ConfigError` stops
    the page with its message."""
    if CONFIG_KEY not in st.session_state:
        try:
            st.session_state[CONFIG_KEY] = load_config()
        except ConfigError as exc:
            st.error(f"The configuration cannot be used: {exc}")
            st.stop()
    return st.session_state[CONFIG_KEY]


def database(config: Config) -> Engine:
    """The engine of the configured database (`database.store.open_database`), shared by every session."""
    return _engine(config.database.url, config)


@contextmanager
def tick_history(config: Config) -> Iterator[TickHistory]:
    """The queries of the configured embedded tick store, held for the block: one DuckDB
    connection serves every session, one thread at a time. `NoTickStore` with kdb+."""
    if config.ticks.kdb_host:
        raise NoTickStore(f"the market figures need the embedded tick store: this exchange records its ticks to "
                          f"kdb+ at {config.ticks.kdb_host}:{config.ticks.kdb_port}, which the dashboard does not "
                          "read")
    history, lock = _tick_store(config.ticks.root)
    with lock:
        yield history


@contextmanager
def guarded(what: str) -> Iterator[None]:
    """Draw a section of a page; if one of the stores fails it, say so (naming ``what``) in its place."""
    try:
        yield
    except NoTickStore as exc:
        st.warning(f"{what}: {exc}.")
    except StoreUnavailable as exc:
        st.error(f"{what}: {exc}. The page tries again by itself.")
    except OperationalError as exc:
        st.error(f"{what}: the database is unavailable: {' '.join(str(exc.orig or exc).split())}. "
                 "The page tries again by itself.")
    except duckdb.Error as exc:
        st.error(f"{what}: the tick store cannot be read: {' '.join(str(exc).split())}. "
                 "The page tries again by itself.")


@st.cache_resource(show_spinner=False)
def _engine(url: str, _config: Config) -> Engine:
    return open_database(_config)


@st.cache_resource(show_spinner=False)
def _tick_store(root: str) -> tuple[TickHistory, threading.Lock]:
    return TickHistory(root), threading.Lock()


def main() -> None:
    st.set_page_config(page_title="Exchange analytics", layout="wide")
    config = session_config()

    def health() -> None:
        from frontend.dashboard import health as page

        page.render(config)

    st.navigation([
        st.Page(health, title="Health", url_path="health", default=True),
        st.Page(PAGES / "market.py", title="Market", url_path="market"),
        st.Page(PAGES / "traders.py", title="Traders", url_path="traders"),
    ]).run()


if __name__ == "__main__":
    main()
