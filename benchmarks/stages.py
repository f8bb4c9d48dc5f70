"""Where each order's time goes in the OBS and the TES, stage by stage, for `benchmarks.e2e`.

Each server's loop times its stages (`servers.status.Stages`: `servers.obs.STAGES`,
`servers.tes.STAGES`) and its status file carries the totals since it started. A measured run
reads both files before and after (each time waiting for a document written after the moment
asked for, so no second of the run is missed) and divides the difference by the orders sent:

    per server, per stage: µs of wall time per order, its share of the busy time (every stage
    but ``idle``), the loop thread's CPU µs per order (unless the servers run with
    ``EXCHANGE_STAGES=wall``: by default estimated from the turns sampled, see `Stages`) and the
    stage's laps (its loop turns) in the run; and per server, the run's stalls by stage: the laps
    of `servers.status.STALL_NS` or longer and their time (the rare long turns of a tail)

The stages of a loop add up to its time, so ``busy`` is the loop thread's working time per
order; the process's CPU per order (`benchmarks.e2e`) also holds ZeroMQ's I/O threads and the
kernel's work of waking them, which no stage of the loop sees.
"""

import json
import time
from pathlib import Path

from benchmarks import median_present
from servers.status import IDLE, STALL_NS, STATUS_FILE

FRESH_TIMEOUT_S = 10.0
"""How long to wait for a server to write a status document newer than asked for."""
SERVERS = ("obs", "tes")
LABELS = {"obs": "OBS", "tes": "TES"}


def status_paths(env: dict[str, str]) -> dict[str, Path]:
    """The status files of the exchange that `servers.processes.exchange_env` made ``env`` for."""
    return {"obs": Path(env["EXCHANGE__SHARDS__0__JOURNAL_DIR"]) / STATUS_FILE,
            "tes": Path(env["EXCHANGE__TES__JOURNAL_DIR"]) / STATUS_FILE}


def fresh_stages(path: Path, after_ns: int, timeout_s: float = FRESH_TIMEOUT_S) -> dict:
    """The ``stages`` of the first status document at ``path`` written at or after ``after_ns``
    (ns since the epoch), with its journal's ``fsyncs`` counter; RuntimeError if none comes
    within ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            document = json.loads(path.read_text())
        except (OSError, ValueError):
            document = None
        if document is not None and document["updated"] >= after_ns:
            return {**document["stages"], "fsyncs": document["counters"].get("fsyncs")}
        time.sleep(0.05)
    raise RuntimeError(f"no status document written to {path} within {timeout_s:g} s")


def read(paths: dict[str, Path]) -> dict[str, dict]:
    """Each server's stage totals as of now (documents written after this call began)."""
    now = time.time_ns()
    return {name: fresh_stages(path, now) for name, path in paths.items()}


def per_order(before: dict[str, dict], after: dict[str, dict], orders: int) -> dict[str, dict]:
    """Per server: ``{"clock", "cpu_turns", "busy_us", "busy_cpu_us", "orders_per_turn", "stages": {name:
    {"wall_us", "share", "cpu_us", "laps"}}}``, the change between two `read`s per order
    (``busy_us``: all stages but idle, ``busy_cpu_us`` their CPU, estimated from the ``cpu_turns``
    turns whose CPU time was read; ``share``: of ``busy_us``;
    ``orders_per_turn``: orders per lap of ``receive``, the turns that read input; None without one;
    ``turns_per_input``: the loop's turns (laps of ``idle``) per such turn, None without one: the TES
    turns again for the book's replies to a frame;
    ``fsyncs_per_order``: the server's journal fsyncs, from its status counters)."""
    figures = {}
    for server, totals in after.items():
        first = before[server]
        names = totals["names"]
        wall = [now - then for now, then in zip(totals["wall_ns"], first["wall_ns"], strict=True)]
        cpu = None
        if totals["cpu_ns"] is not None and first["cpu_ns"] is not None:
            cpu = [now - then for now, then in zip(totals["cpu_ns"], first["cpu_ns"], strict=True)]
        busy = sum(ns for name, ns in zip(names, wall, strict=True) if name != IDLE)
        stages = {}
        for stage, name in enumerate(names):
            stages[name] = {
                "wall_us": round(wall[stage] / orders / 1000, 3),
                "share": None if name == IDLE or not busy else round(wall[stage] / busy, 4),
                "cpu_us": None if cpu is None else round(cpu[stage] / orders / 1000, 3),
                "laps": totals["laps"][stage] - first["laps"][stage],
            }
        turns = stages["receive"]["laps"]
        busy_cpu = None if cpu is None else sum(ns for name, ns in zip(names, cpu, strict=True) if name != IDLE)
        cpu_turns = None if cpu is None else totals["cpu_turns"] - first["cpu_turns"]
        fsyncs = None
        if totals.get("fsyncs") is not None and first.get("fsyncs") is not None:
            fsyncs = round((totals["fsyncs"] - first["fsyncs"]) / orders, 5)
        figures[server] = {"clock": totals["clock"], "cpu_turns": cpu_turns, "busy_us": round(busy / orders / 1000, 3),
                           "busy_cpu_us": None if busy_cpu is None else round(busy_cpu / orders / 1000, 3),
                           "orders_per_turn": round(orders / turns, 2) if turns else None,
                           "turns_per_input": round(stages[IDLE]["laps"] / turns, 2) if turns else None,
                           "fsyncs_per_order": fsyncs, "stages": stages, "stalls": stalls(first, totals)}
    return figures


def stalls(before: dict, after: dict) -> dict[str, dict]:
    """The stalls between two status documents' stage totals, by stage (those with any):
    ``{name: {"count": laps of the stall length or longer, "ms": their wall time}}``."""
    found = {}
    for stage, name in enumerate(after["names"]):
        count = after["stalls"][stage] - before["stalls"][stage]
        if count:
            stalled_ns = after["stalled_ns"][stage] - before["stalled_ns"][stage]
            found[name] = {"count": count, "ms": round(stalled_ns / 1e6, 1)}
    return found


def all_stalls(runs: list[dict]) -> dict[str, dict]:
    """The stalls of several runs' `stalls`, added up by stage."""
    found: dict[str, dict] = {}
    for run in runs:
        for name, stall in run.items():
            total = found.setdefault(name, {"count": 0, "ms": 0.0})
            total["count"] += stall["count"]
            total["ms"] = round(total["ms"] + stall["ms"], 1)
    return found


def median(runs: list[dict[str, dict]]) -> dict[str, dict]:
    """One `per_order` from several runs' (each figure's median; the laps and the turns sampled of
    the run in the middle; the stalls of all the runs)."""
    middle = runs[(len(runs) - 1) // 2]
    figures = {}
    for server, first in middle.items():
        stages = {}
        for name, stage in first["stages"].items():
            stages[name] = {key: median_present([run[server]["stages"][name][key] for run in runs])
                            for key in ("wall_us", "share", "cpu_us")}
            stages[name]["laps"] = stage["laps"]
        figures[server] = {"clock": first["clock"], "cpu_turns": first["cpu_turns"], "stages": stages, **{
            key: median_present([run[server][key] for run in runs])
            for key in ("busy_us", "busy_cpu_us", "orders_per_turn", "turns_per_input", "fsyncs_per_order")},
            "stalls": all_stalls([run[server]["stalls"] for run in runs])}
    return figures


def format_table(rows: list[dict]) -> list[str]:
    """The stage table of the rows of `benchmarks.e2e` (each with ``stages`` from `median`):
    a line per server and stage, a column per offered rate: µs per order and share of the busy
    time, and the loop thread's CPU µs per order where measured (and in how many turns of the
    run in the middle it was read)."""
    rows = [row for row in rows if row.get("stages")]
    if not rows:
        return []
    lines = [
        "Where each order's time goes, per server and stage (µs of the loop's wall time per order sent, and its "
        "share of the loop's busy time, then the loop thread's CPU µs per order, estimated from the turns whose "
        "CPU time was read; `idle`: waiting for input; `orders per turn`: per loop turn that read input (the "
        "clients' or the TES's frames); `loop turns per turn that read input`: all the loop's turns, per such turn; "
        "benchmarks/stages.py):",
        "",
        "| server: stage | " + " | ".join(f"{row['offered_per_s']:,}/s" for row in rows) + " |",
        "|---|" + "---:|" * len(rows),
    ]
    for server in SERVERS:
        first = rows[0]["stages"].get(server)
        if first is None:
            continue
        for name in first["stages"]:
            cells = [_cell(row["stages"][server]["stages"][name]) for row in rows]
            lines.append(f"| {LABELS[server]}: {name} | " + " | ".join(cells) + " |")
        cells = [_cell({"wall_us": row["stages"][server]["busy_us"], "share": None,
                        "cpu_us": row["stages"][server]["busy_cpu_us"]}) for row in rows]
        lines.append(f"| {LABELS[server]}: busy | " + " | ".join(cells) + " |")
        turns = [number(row["stages"][server]["orders_per_turn"]) for row in rows]
        lines.append(f"| {LABELS[server]}: orders per turn | " + " | ".join(turns) + " |")
        turns = [number(row["stages"][server].get("turns_per_input")) for row in rows]
        lines.append(f"| {LABELS[server]}: loop turns per turn that read input | " + " | ".join(turns) + " |")
        fsyncs = [row["stages"][server].get("fsyncs_per_order") for row in rows]
        if any(count is not None for count in fsyncs):
            cells = ["n/a" if count is None else f"{count:.3f}" for count in fsyncs]
            lines.append(f"| {LABELS[server]}: journal fsyncs per order | " + " | ".join(cells) + " |")
        cells = [format_stalls(row["stages"][server]["stalls"]) for row in rows]
        lines.append(f"| {LABELS[server]}: stalls in all runs (laps of {STALL_NS // 1_000_000} ms or longer) | "
                     + " | ".join(cells) + " |")
        sampled = [row["stages"][server].get("cpu_turns") for row in rows]
        if any(count is not None for count in sampled):
            cells = ["n/a" if count is None else f"{count:,}" for count in sampled]
            lines.append(f"| {LABELS[server]}: turns whose CPU was read | " + " | ".join(cells) + " |")
    return lines


def _cell(stage: dict) -> str:
    text = f"{stage['wall_us']:,.2f} µs"
    if stage["share"] is not None:
        text += f" ({stage['share']:.0%})"
    if stage["cpu_us"] is not None:
        text += f", CPU {stage['cpu_us']:,.2f}"
    return text


def format_stalls(found: dict[str, dict]) -> str:
    """Stalls by stage (`stalls`) as "journal 2 (130 ms), ..."; "none" without any."""
    return ", ".join(f"{name} {stall['count']:,} ({stall['ms']:,.0f} ms)" for name, stall in found.items()) or "none"


def servers_stalls(figures: dict[str, dict] | None) -> list[str]:
    """Each server's stalls in a run's `per_order` ``figures``, as `format_stalls` says them ("n/a"
    for a server not measured), in `SERVERS` order."""
    figures = figures or {}
    return [format_stalls(figures[server]["stalls"]) if server in figures else "n/a" for server in SERVERS]


def number(value) -> str:
    """A figure to a tenth ("n/a": none)."""
    return "n/a" if value is None else f"{value:,.1f}"
