# cython: boundscheck=False, wraparound=False
"""A latency histogram's counting in C: `servers.status.LatencyHistogram.add_since`, which the
TES calls once a loop turn with every order it answered in the turn (the Python loop it replaces,
a `bisect` per order, cost the TES about 4% of its CPU per order in `bench tes`)."""

from libc.stdint cimport int64_t


def count_since(int64_t[::1] counts, const int64_t[::1] bounds, list starts, int64_t now):
    """Count into ``counts`` the duration from each of ``starts`` to ``now`` (ns, one clock), in
    order; return the longest, or 0 if none is positive.

    ``bounds`` are the buckets' upper bounds, ascending, and ``counts`` has one bucket more: a
    duration ``d`` goes into the first bucket whose bound is at least ``d`` (`bisect.bisect_left`),
    into the last if there is none. A start that is not an int64 raises, the ones before it counted."""
    cdef Py_ssize_t n = bounds.shape[0], lo, hi, mid
    cdef int64_t d, longest = 0
    if counts.shape[0] != n + 1:
        raise ValueError(f"{counts.shape[0]} buckets for {n} bounds: there must be one bucket more than bounds")
    for start in starts:
        d = now - <int64_t>start
        lo, hi = 0, n
        while lo < hi:
            mid = (lo + hi) >> 1
            if bounds[mid] < d:
                lo = mid + 1
            else:
                hi = mid
        counts[lo] += 1
        if d > longest:
            longest = d
    return longest
