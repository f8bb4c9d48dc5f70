"""The analytics dashboard's Health page: `render(config)` (`frontend.analytics_app` shows it).

Everything on it comes from `frontend.health.gather`, read again every `REFRESH_S` by a fragment
that reruns on its own:

- a badge per process: up (green); stopped, never started (grey); not running, not responding
  (red); unreadable (orange); each with why, and how long ago it was last seen;
- the processes' counters since they started and their rates per second;
- the TES's ack latency percentiles over the last minute and since it started;
- per shard, the journal (last sequence, bytes, bytes not yet fsynced) and the recorder's lag,
  and each journal stream consumer's;
- the TES's rejects by reason: a table and a bar chart.

Nothing that goes wrong shows a traceback: a failure is a message in place of the live part
(its traceback goes to the log), and the next refresh tries again.
"""

import logging
from datetime import UTC, datetime

import pandas as pd
import streamlit as st

from config.settings import Config
from frontend.health import Health, Latency, PortConnections, Process, RejectCount, ShardLag, gather

REFRESH_S = 2
COLORS = {"up": "green", "stopped": "gray", "never started": "gray", "not running": "red", "not responding": "red",
          "unreadable": "orange"}
DOWN = ("stopped", "not running", "not responding")
LATENCY_COLUMNS = ["over", "samples", "p50", "p90", "p99", "p99.9", "max"]

log = logging.getLogger("frontend.health")


def render(config: Config) -> None:
    """Draw the Health page of the exchange ``config`` describes."""
    st.title("Health")
    st.caption(f"What each process last wrote in its status file; read again every {REFRESH_S} s.")
    _live(config)


@st.fragment(run_every=REFRESH_S)
def _live(config: Config) -> None:
    try:
        _draw(gather(config))
    except Exception as exc:  # noqa: BLE001 - the page says what failed and tries again, never a traceback
        log.exception("the Health page failed")
        st.error(f"The exchange's health cannot be shown: {exc}. The page tries again in {REFRESH_S} s.")


def _draw(health: Health) -> None:
    columns = st.columns(len(health.processes))
    for column, process in zip(columns, health.processes, strict=True):
        with column:
            st.badge(badge_text(process), color=COLORS[process.state])
            st.caption(process.detail)
    for process in health.processes:
        if process.state == "unreadable":
            st.warning(f"{label(process)}: {process.detail}")
    st.dataframe(processes_table(health.processes), hide_index=True)

    st.subheader("Rates")
    rates = rates_table(health.processes)
    if rates.empty:
        st.info("No process has published figures.")
    else:
        st.dataframe(rates, hide_index=True)

    st.subheader("Ack latency")
    st.caption("From the TES reading the client frame carrying an order to its sending the order's first answer "
               "(accepted or rejected).")
    latency = latency_table(health.ack_latency)
    if latency.empty:
        st.info("No ack latency: the TES has answered no order, or publishes no figures.")
    else:
        st.dataframe(latency, hide_index=True)

    st.subheader("Journal and recorder lag")
    st.dataframe(lag_table(health.shards), hide_index=True)
    consumers = consumers_table(health.shards)
    if not consumers.empty:
        st.dataframe(consumers, hide_index=True)
    for shard in health.shards:
        if shard.unwritable:
            st.error(f"Shard {shard.name}: the journal refuses writes ({shard.unwritable}): intake is stopped.")

    st.subheader("Market data")
    st.caption("Connections following each book server's market data; frames dropped because a subscriber "
               "stopped reading (it resyncs from a snapshot); subscriptions refused because the server was full.")
    st.dataframe(market_data_table(health.shards), hide_index=True)

    st.subheader("Connections")
    st.caption("Each public port's connections, and those shut down because it held its most (max_connections).")
    st.dataframe(connections_table(health.ports), hide_index=True)

    st.subheader("Rejects by reason")
    rejects = rejects_table(health.rejects)
    if rejects.empty:
        st.info("No rejects since the TES started.")
    else:
        table, chart = st.columns(2)
        with table:
            st.dataframe(rejects, hide_index=True)
        with chart:
            st.bar_chart(rejects, x="reason", y="count")


def label(process: Process) -> str:
    """``OBS A``, ``TES``, ``recorder``."""
    return f"OBS {process.name}" if process.role == "OBS" else process.name


def badge_text(process: Process) -> str:
    """``TES: up``, ``OBS A: down (not running)``, ``recorder: never started``."""
    state = process.state
    return f"{label(process)}: {f'down ({state})' if state in DOWN else state}"


def processes_table(processes: list[Process]) -> pd.DataFrame:
    return pd.DataFrame(
        [(label(p), p.state, p.pid, _time(p.started), None if p.seen_ago is None else round(p.seen_ago, 1), p.detail)
         for p in processes],
        columns=["process", "state", "pid", "started (UTC)", "last seen (s ago)", "detail"],
    ).astype({"pid": "Int64"})


def rates_table(processes: list[Process]) -> pd.DataFrame:
    """Each process's counters: since it started, and per second over its last interval."""
    return pd.DataFrame(
        [(label(p), name, count, p.rates.get(name)) for p in processes for name, count in p.counters.items()],
        columns=["process", "figure", "since start", "per second"],
    )


def latency_table(latency: Latency | None) -> pd.DataFrame:
    """The percentiles over the last minute and since the start, as text in µs, ms or s."""
    rows = []
    for over, figures in (("last minute", None if latency is None else latency.window),
                          ("since start", None if latency is None else latency.total)):
        if figures is not None:
            rows.append((over, figures.count, *(duration_text(us) for us in (
                figures.p50, figures.p90, figures.p99, figures.p999, figures.max))))
    return pd.DataFrame(rows, columns=LATENCY_COLUMNS)


def lag_table(shards: list[ShardLag]) -> pd.DataFrame:
    return pd.DataFrame(
        [(s.name, s.journal_last, s.journal_bytes, s.unsynced_bytes, "no" if s.unwritable else "yes",
          s.recorder_committed, s.behind, s.seconds_behind) for s in shards],
        columns=["shard", "journal last sequence", "journal bytes", "not fsynced (bytes)", "journal writable",
                 "recorder committed", "entries behind", "seconds behind"],
    ).astype({"journal last sequence": "Int64", "journal bytes": "Int64", "not fsynced (bytes)": "Int64",
              "recorder committed": "Int64", "entries behind": "Int64", "seconds behind": "Float64"})


def consumers_table(shards: list[ShardLag]) -> pd.DataFrame:
    """Each shard's journal stream consumers and how many entries each has not acknowledged."""
    return pd.DataFrame(
        [(s.name, c.name, c.acked, c.behind, c.connected, c.left_behind) for s in shards for c in s.consumers],
        columns=["shard", "consumer", "acknowledged", "entries behind", "connected", "left behind"],
    )


def market_data_table(shards: list[ShardLag]) -> pd.DataFrame:
    """Each shard's market data port, as its OBS last said (empty cells: not known)."""
    return pd.DataFrame(
        [(s.name, *((s.market_data.subscribers, s.market_data.dropped, s.market_data.refused) if s.market_data
                    else (None, None, None))) for s in shards],
        columns=["shard", "subscribers", "frames dropped", "subscriptions refused"],
    ).astype({"subscribers": "Int64", "frames dropped": "Int64", "subscriptions refused": "Int64"})


def connections_table(ports: list[PortConnections]) -> pd.DataFrame:
    """Each public port of each server that published its figures."""
    return pd.DataFrame([(p.server, p.port, p.connections, p.refused) for p in ports],
                        columns=["server", "port", "connections", "refused"])


def rejects_table(rejects: list[RejectCount]) -> pd.DataFrame:
    return pd.DataFrame([(r.reason, r.code, r.count, r.rate) for r in rejects],
                        columns=["reason", "code", "count", "per second"])


def duration_text(microseconds: int) -> str:
    """``850 µs``, ``3.20 ms``, ``1.25 s``."""
    if microseconds < 1000:
        return f"{microseconds} µs"
    if microseconds < 1_000_000:
        return f"{microseconds / 1000:.2f} ms"
    return f"{microseconds / 1_000_000:.2f} s"


def _time(ns: int | None) -> str | None:
    return None if ns is None else datetime.fromtimestamp(ns / 1e9, UTC).strftime("%Y-%m-%d %H:%M:%S")
