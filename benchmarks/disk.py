"""The disk floor: what the journal's group commit alone costs on this machine.

`measure` appends one record of `RECORD_BYTES` (about a journal entry's size) per group to a fresh
`servers.journal.Journal`, `GAP_S` apart, and times each append. With the ``batch`` fsync policy an
append is a write and an fdatasync: what each loop turn of the OBS and of the TES waits for before
it releases what follows from the group. An order waits for one of them, the OBS's journal entry:
with one book server, the TES's commands and the reports of the book's replies leave before its own
fsync (`servers.tes.TradingEngineServer.adopts`, `_send_replies_first`), so at low rates one of
these is in every acknowledgement, however fast the rest (two, the TES's record of the order first,
where the book server has no journal stream). `benchmarks.e2e` measures it beside every rate, in the
file system of the exchange's own journals, and with the CPU time of an append it prices the fsyncs
each server did per order.
"""

import shutil
import time
from pathlib import Path

import numpy as np

from config.settings import JournalConfig
from servers.journal import Journal

RECORD_BYTES = 200
GROUPS = 1_000
GAP_S = 0.000_5
"""The pause between appends: groups a few hundred microseconds apart, as at 10,000 orders/s."""


def measure(directory: Path, fsync: str, groups: int = GROUPS, gap_s: float = GAP_S) -> dict:
    """Time ``groups`` appends of one record each to a journal made in ``directory`` (removed
    afterwards) with fsync policy ``fsync``: their p50 and p99 in µs, and the median CPU time of
    an append in µs (the thread's: the write and the fsync in the kernel)."""
    times, cpu = np.empty(groups), np.empty(groups)
    payload = bytes(range(256))[:RECORD_BYTES]
    journal = Journal(directory, JournalConfig(fsync=fsync), 0)
    try:
        for sequence in range(1, groups + 1):
            start, start_cpu = time.perf_counter_ns(), time.thread_time_ns()
            journal.append([(sequence, payload)])
            cpu[sequence - 1] = time.thread_time_ns() - start_cpu
            times[sequence - 1] = time.perf_counter_ns() - start
            time.sleep(gap_s)
    finally:
        journal.close()
        shutil.rmtree(directory)
    p50, p99 = np.percentile(times, [50, 99]) / 1000
    return {"groups": groups, "append_p50_us": round(float(p50), 1), "append_p99_us": round(float(p99), 1),
            "append_cpu_us": round(float(np.median(cpu)) / 1000, 1)}
