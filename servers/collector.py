"""The garbage collector's settings for the servers' serving loops.

Per order, both servers allocate a handful of short-lived containers (decoded
messages, book events, reports, frames); reference counting frees nearly all of
them the moment they are done with, and the cyclic collector finds next to nothing.
With Python's default, a young-generation pass every 700 net allocations of
containers, it still ran thousands of times a second at 100,000 orders/s, each pass
scanning whatever young objects were alive at that instant. `settle` makes those
passes rare and keeps what start-up built out of every pass.
"""

import gc
from collections.abc import Iterator
from contextlib import contextmanager

YOUNG_THRESHOLD = 100_000
"""Net container allocations between young-generation passes (Python's default: 700).
A pass scans only the young objects still alive, so the larger gap costs little
memory (garbage in cycles waits longer, and there is hardly any) and no long pause."""


def settle() -> None:
    """Call once start-up is done, before serving: collect, then freeze everything alive
    (modules, configuration, recovered state: never garbage, never scanned again), and
    make young-generation passes rare. The older generations keep their thresholds."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)


@contextmanager
def settled() -> Iterator[None]:
    """`settle` for the block, then the collector's thresholds as they were and nothing frozen:
    a benchmark measuring a server's work as the server does it."""
    thresholds = gc.get_threshold()
    settle()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)


@contextmanager
def paused() -> Iterator[None]:
    """Collect, then no cyclic collection until the block ends, as `timeit` times: a benchmark
    comparing engines, which a pass over their shared input would cost alike and blur."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
