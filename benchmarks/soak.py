"""`python main.py bench soak`: does the exchange stay as fast after millions of orders?

Starts a real OBS and TES on loopback in a temporary directory (journal fsync per group,
snapshots at the configured interval), as `bench e2e` does, and runs the load generator
(`clients.loadgen`) against them in consecutive rounds of ``round_s`` seconds at ``rate``
orders/s until ``orders`` orders have been sent. Its buys and sells at one price fill each
other, so the book stays about one order deep while the ids the book has accepted grow by
every round's orders: each round is a new session of the same TES process, whose ids count on.
Ids were what made every snapshot (then built on the OBS's loop) bigger and slower, and the
tail latency with it.

Per round: the answered rate, ack p50 and p99, the newest snapshot file's size with the ids
and the records holding them (ranges, words, lone ids: `engine.snapshot`; so the growth of
the ids shows), and the CPU the OBS and the TES spent per
order. At the end the servers are stopped and the shard recovered from its directory: every
acknowledged order's id must be among the recovered book's accepted ids.

Verdict
-------
On a busy two-core machine one round's p99 can double by chance (another tenant's minute), so
no single round decides. The p99 is **flat** if (1) the median p99 of the last third of the
rounds is within `FLAT_RATIO` of the median of the first third, and (2) the Theil-Sen line
through log p99 against the round number (its slope is the median of the slopes between every
pair of rounds, so a few outlying rounds do not move it) rises by less than `FLAT_RATIO` over
the whole run; and no order may be lost, and every round must answer the offered rate
(`benchmarks.e2e.SUSTAINED`): a saturated exchange's p99 measures its backlog, not the rounds.
"""

import itertools
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

from benchmarks import e2e, stages
from benchmarks.book import machine
from benchmarks.e2e import _us
from config.settings import load_config
from engine import progress
from engine.snapshot import BookSnapshot
from servers.journal import SnapshotDamaged, read_snapshot, snapshot_paths
from servers.processes import Role, exchange_env
from servers.shard import load

ORDERS = 10_000_000
RATE = 50_000
ROUND_S = 20.0
FLAT_RATIO = 2.0
SYMBOL = "ACME"
"""The load generator's default symbol."""


def round_sizes(orders: int, rate: float, round_s: float) -> list[int]:
    """Orders per round: full rounds of ``rate * round_s``, then what is left."""
    per_round = max(1, round(rate * round_s))
    full, rest = divmod(orders, per_round)
    return [per_round] * full + ([rest] if rest else [])


def newest_snapshot(directory: Path) -> dict | None:
    """The newest readable snapshot file: its sequence, size, and the accepted ids its books hold
    with the records holding them; None before the first."""
    for path in snapshot_paths(directory):
        try:
            size = path.stat().st_size
            snapshot = read_snapshot(path)
        except (OSError, SnapshotDamaged):  # deleted by the writer in between: an older one
            continue
        books = [state.book for state in snapshot.symbols.values()]
        return {
            "sequence": snapshot.sequence,
            "bytes": size,
            "accepted_ids": sum(book.id_count() for book in books),
            **id_records(books),
        }
    return None


def id_records(books: list[BookSnapshot]) -> dict:
    """How many ranges, words and lone ids (`engine.snapshot`) hold the ``books``' accepted ids."""
    return {
        "ranges": sum(len(book.range_array()) for book in books),
        "words": sum(len(book.word_array()) for book in books),
        "lone": sum(len(book.lone_array()) for book in books),
    }


def rise(values: list[float]) -> float:
    """The factor by which ``values`` (positive, one per round) rise from the first round to the
    last along their Theil-Sen line in log scale: robust to a few outlying rounds."""
    slopes = [
        (math.log(b) - math.log(a)) / (j - i)
        for (i, a), (j, b) in itertools.combinations(enumerate(values), 2)
    ]
    return math.exp(statistics.median(slopes) * (len(values) - 1)) if slopes else 1.0


def judge(rows: list[dict], rate: float) -> dict:
    """Whether the ack p99 stayed flat over the rounds offered ``rate`` orders/s (module
    docstring), with the figures."""
    p99 = [row["ack_p99_us"] for row in rows]
    lost = sum(row["lost"] for row in rows)
    if not rows or any(value is None or value <= 0 for value in p99):
        return {"flat": False, "text": "NOT flat: a round had no answers"}
    third = max(1, len(rows) // 3)
    first, last = statistics.median(p99[:third]), statistics.median(p99[-third:])
    ratio, trend = last / first, rise(p99)
    saturated = [row["round"] for row in rows if row["orders_per_s"] < e2e.SUSTAINED * rate]
    flat = ratio <= FLAT_RATIO and trend <= FLAT_RATIO and not lost and not saturated
    text = (
        f"{'flat' if flat else 'NOT flat'}: median p99 of the last {third} round(s) {_us(last)}, "
        f"of the first {third} {_us(first)} ({ratio:.2f}x); the trend line rises {trend:.2f}x over the "
        f"run (flat: both within {FLAT_RATIO:g}x); {lost:,} orders lost"
    )
    if saturated:
        text += (f"; round(s) {', '.join(map(str, saturated))} answered under {e2e.SUSTAINED:.0%} of "
                 f"{rate:,.0f}/s: saturated, so the p99 measures the backlog (try a lower --rate)")
    return {"flat": flat, "first_p99_us": first, "last_p99_us": last, "ratio": round(ratio, 3),
            "rise": round(trend, 3), "lost": lost, "saturated_rounds": saturated, "text": text}


def run(orders: int = ORDERS, rate: float = RATE, round_s: float = ROUND_S) -> dict:
    """Run the rounds against one OBS and TES, print the table and verdict, return the figures."""
    rows, sizes = [], round_sizes(orders, rate, round_s)
    with (tempfile.TemporaryDirectory(prefix="exchange-soak-") as tmp,
          progress.task("bench soak", orders, "orders") as shown):
        env = exchange_env(Path(tmp))
        directory = Path(env["EXCHANGE__SHARDS__0__JOURNAL_DIR"])
        with Role(["-s", "OBS"], env) as obs, Role(["-s", "TES"], env) as tes:
            sent = 0
            for number, size in enumerate(sizes, 1):
                shown.note(f"round {number} of {len(sizes)}")
                result = e2e.measured_run(env, rate, size / rate, {"obs": obs, "tes": tes})
                sent += result["sent"]
                rows.append({"round": number, "orders_so_far": sent, **result,
                             "snapshot": newest_snapshot(directory)})
                print(format_row(rows[-1]), file=sys.stderr, flush=True)
                shown.update(sent)
            codes = {"tes": tes.stop(), "obs": obs.stop()}
        shown.note("recovering the shard")
        final = recovered_state(directory, load_config(environ=env).shards[0].symbols)
    acked = sum(row["acked"] for row in rows)
    lost = sum(row["lost"] for row in rows)
    if final["accepted_ids"] < acked or (not lost and final["accepted_ids"] != acked):
        raise RuntimeError(f"the recovered book accepted {final['accepted_ids']:,} ids, {acked:,} orders were acked")
    counts = [row["snapshot"]["accepted_ids"] for row in rows if row["snapshot"] is not None]
    report = {
        "machine": machine(), "orders": orders, "rate": rate, "round_s": round_s, "rounds": rows,
        "ids_grew": len(counts) == len(rows) and all(b > a for a, b in itertools.pairwise(counts)),
        "final": final, "verdict": judge(rows, rate), "exit_codes": codes,
    }
    print(format_report(report))
    return report


def recovered_state(directory: Path, symbols: list[str]) -> dict:
    """The shard recovered from ``directory`` (the OBS stopped): its ACME book's accepted ids,
    the records holding them and its resting orders, and how long recovery took."""
    started = time.perf_counter()
    shard, _ = load(directory, symbols)
    seconds = time.perf_counter() - started
    book = shard.feeds[SYMBOL].book
    snapshot = book.snapshot()
    return {
        "accepted_ids": snapshot.id_count(),
        **id_records([snapshot]),
        "resting_orders": len(book),
        "sequence": shard.sequence,
        "snapshot_sequence": shard.restored_sequence,
        "recovery_s": round(seconds, 3),
    }


HEADER = (
    "| round | orders so far | answered orders/s | lost | ack p50 | ack p99 | longest ack | stalls: OBS; TES "
    "| newest snapshot | accepted ids in it (ranges / words / lone ids) | CPU per order: OBS / TES |"
)


def format_row(row: dict) -> str:
    cpu = row.get("cpu_us_per_order") or {}
    snapshot = row["snapshot"]
    size = ids = "none yet"
    if snapshot is not None:
        size = _bytes(snapshot["bytes"])
        ids = f"{snapshot['accepted_ids']:,} ({snapshot['ranges']:,} / {snapshot['words']:,} / {snapshot['lone']:,})"
    stalls = "; ".join(stages.servers_stalls(row.get("stages")))
    return (
        f"| {row['round']} | {row['orders_so_far']:,} | {row['orders_per_s']:,.0f} | {row['lost']:,} | "
        f"{_us(row['ack_p50_us'])} | {_us(row['ack_p99_us'])} | {_us(row.get('ack_max_us'))} | {stalls} | "
        f"{size} | {ids} | {_us(cpu.get('obs'))} / {_us(cpu.get('tes'))} |"
    )


def format_report(report: dict) -> str:
    m, final = report["machine"], report["final"]
    lines = [
        f"machine: {m['cpu']}, {m['cores']} cores, Python {m['python']}; {report['orders']:,} orders at "
        f"{report['rate']:,.0f}/s in rounds of {report['round_s']:g} s against one OBS and TES",
        "",
        HEADER,
        "|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|",
        *map(format_row, report["rounds"]),
        "",
        f"recovered after the run: {final['accepted_ids']:,} accepted ids in {final['ranges']:,} range(s), "
        f"{final['words']:,} word(s) and {final['lone']:,} lone id(s), "
        f"{final['resting_orders']:,} resting orders, sequence {final['sequence']:,} from the snapshot at "
        f"{final['snapshot_sequence']:,}, in {final['recovery_s']:.2f} s",
        f"ack p99: {report['verdict']['text']}",
    ]
    return "\n".join(lines)


def _bytes(count: int) -> str:
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if count >= size:
            return f"{count / size:,.1f} {unit}"
    return f"{count} B"
