"""`python main.py bench store`: the recorder's two stores and the tick queries, in one run.

Assembled from `benchmarks.database` (journal entries applied into SQLite and PostgreSQL, each
beside the same rows written by the writer alone, the floor for that database) and
`benchmarks.ticks` (the tick store: the recorder's path into it, `upd` alone, kdb+ IPC to the
stand-in, and the OHLCV bars and the as-of join, each beside plain pandas doing the same query
in the same run). Every figure is the median of ``repeats`` runs except the tick store's
writes (one run each); every run checks what it wrote or computed.

Targets (`TARGETS`), on the project's two-core development machine: the recorder keeps up
with 100,000 fills/s into the tick store and 50,000 trades/s into PostgreSQL; the OHLCV
1-minute bars over 10 million ticks take under 0.5 s. A target is judged only at its own size:
with ``--ticks`` below 10 million the bars figure is reported, not judged.
"""

from benchmarks import database, ticks
from benchmarks.book import machine
from benchmarks.database import POSTGRES_URL
from engine import progress

TARGETS = {"postgresql_trades_per_s": database.TARGET_TRADES_PER_S, "tick_store_fills_per_s": 100_000,
           "bars_s": 0.5, "bars_ticks": 10_000_000}
TICKS = 10_000_000
TRADES = 100_000


def run(ticks_count: int = TICKS, trades: int = TRADES, repeats: int = 3, server: str = POSTGRES_URL) -> dict:
    """Measure everything, print the table, return the figures."""
    with progress.task("bench store", 1 + 4 * repeats + len(ticks.FIGURES), "steps") as shown:
        report = {"machine": machine(), "database": database.run(trades, repeats, server, shown),
                  "ticks": ticks.run(ticks_count, repeats, shown)}
    report["targets"] = verdicts(report)
    print(format_report(report))
    return report


def verdicts(report: dict) -> dict[str, str]:
    """Each target beside its measured figure: met or not met (or why it was not judged)."""
    postgres = report["database"]["postgresql"]
    if "skipped" in postgres:
        into_postgres = f"not measured ({postgres['skipped']})"
    else:
        rate, target = postgres["trades_per_s"], TARGETS["postgresql_trades_per_s"]
        into_postgres = (f"{'met' if rate >= target else 'not met'} ({rate:,}/s, {rate / target:.0%} of the target; "
                         f"the writer alone {postgres['writer_alone_trades_per_s']:,}/s)")
    fills = report["ticks"]["record_store"]["fills_per_s"]
    into_ticks = f"{'met' if fills >= TARGETS['tick_store_fills_per_s'] else 'not met'} ({fills:,}/s)"
    bars = report["ticks"]["bars"]
    if bars["ticks"] != TARGETS["bars_ticks"]:
        bars_verdict = f"not judged (measured over {bars['ticks']:,} ticks: {bars['duckdb_s']:.3f} s)"
    else:
        bars_verdict = f"{'met' if bars['duckdb_s'] < TARGETS['bars_s'] else 'not met'} ({bars['duckdb_s']:.3f} s)"
    return {
        f"{TARGETS['tick_store_fills_per_s']:,} fills/s into the tick store": into_ticks,
        f"{TARGETS['postgresql_trades_per_s']:,} trades/s into PostgreSQL": into_postgres,
        f"OHLCV bars over {TARGETS['bars_ticks']:,} ticks under {TARGETS['bars_s']:g} s": bars_verdict,
    }


HEADER = "| what | measured | plain pandas, same run | target |"


def format_report(report: dict) -> str:
    m, db, tick = report["machine"], report["database"], report["ticks"]
    targets = list(report["targets"].values())
    postgres, sqlite = db["postgresql"], db["sqlite"]
    version = f"; {postgres['version']} on the same machine, its settings as they are" if "version" in postgres else ""
    record, store, ipc, bars, aj = (tick[name] for name in ("record_store", "write_store", "write_ipc", "bars",
                                                             "asof_join"))
    lines = [
        f"machine: {m['cpu']}, {m['cores']} cores, Python {m['python']}; {sqlite['version']}{version}; "
        f"databases: {db['trades']:,} trades ({db['entries']:,} journal entries, half of them filling) in the "
        f"recorder's batches of {db['batch']:,} entries, median of {db['repeats']} run(s), each into a new database",
        "",
        HEADER,
        "|---|---:|---:|---|",
    ]
    if "skipped" in postgres:
        lines.append(f"| trades/s into PostgreSQL | {postgres['skipped']} | | {targets[1]} |")
    else:
        lines += [
            f"| trades/s into PostgreSQL (binary COPY) | {postgres['trades_per_s']:,} | | {targets[1]} |",
            f"| the same rows through the writer alone, made beforehand: the floor (the line above is "
            f"{postgres['of_writer_alone']:.0%} of it) | {postgres['writer_alone_trades_per_s']:,} | | |",
        ]
    lines += [
        f"| trades/s into SQLite (WAL, synchronous FULL) | {sqlite['trades_per_s']:,} | | |",
        f"| the same rows through the writer alone, made beforehand: the floor (the line above is "
        f"{sqlite['of_writer_alone']:.0%} of it) | {sqlite['writer_alone_trades_per_s']:,} | | |",
        f"| trades/s through Python's part alone (no database) | {db['translation']['trades_per_s']:,} | | |",
        f"| fills/s recorded into the embedded tick store (capture and `upd`, batches of {record['batch']:,} "
        f"entries, each fsynced; {record['fills']:,} fills) | {record['fills_per_s']:,} | | {targets[0]} |",
        f"| ticks/s into the embedded tick store (`upd` alone, batches of {store['batch']:,}) | "
        f"{store['ticks_per_s']:,} | | |",
        f"| ticks/s over kdb+ IPC to the stand-in (publisher CPU {ipc['publisher_cpu_us_per_tick']:.2f} µs a tick) | "
        f"{ipc['ticks_per_s']:,} | | |",
        f"| OHLCV 1-minute bars over {bars['ticks']:,} ticks ({bars['bars']:,} bars), DuckDB on the store | "
        f"{bars['duckdb_s']:.3f} s | {bars['pandas_s']:.3f} s (reading the Parquet first: "
        f"{bars['pandas_load_s']:.3f} s) | {targets[2]} |",
        f"| as-of join of {aj['trades']:,} trades to {aj['quotes']:,} quotes, DuckDB ASOF JOIN on the store | "
        f"{aj['duckdb_s']:.3f} s | {aj['pandas_s']:.3f} s (reading the Parquet first: {aj['pandas_load_s']:.3f} s) "
        "| |",
        "",
        "The recorder writes each batch into the transactional database and then into the tick store: "
        "recording both, its rate is the database's.",
    ]
    return "\n".join(lines)
