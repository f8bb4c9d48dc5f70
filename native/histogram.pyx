# cython: boundscheck=False, wraparound=False
"""A latency histogram's counting in C: `servers.status.LatencyHistogram.add_since`, which the
TES calls once a loop turn with every order it answered in the turn (the Python loop it replaces,
a `bisect` per order, cost the TES about 4% of its CPU per order in `bench tes`)."""

from libc.stdint cimport int64_t


cdef class Buckets:
    """Counts into ``counts`` by ``bounds``, the buckets' upper bounds, ascending (``counts`` has
    one bucket more): a duration ``d`` goes into the first bucket whose bound is at least ``d``
    (`bisect.bisect_left`), into the last if there is none. It holds both arrays' buffers, taken
    once (taking them is most of a call's cost for the few durations of a turn)."""

    cdef int64_t[::1] counts
    cdef const int64_t[::1] bounds

    def __init__(self, int64_t[::1] counts, const int64_t[::1] bounds):
        if counts.shape[0] != bounds.shape[0] + 1:
            raise ValueError(f"{counts.shape[0]} buckets for {bounds.shape[0]} bounds: there must be one bucket "
                             "more than bounds")
        self.counts, self.bounds = counts, bounds

    def count_since(self, list starts, int64_t now):
        """Count the duration from each of ``starts`` to ``now`` (ns, one clock), in order; return
        the longest, or 0 if none is positive. A start that is not an int64 raises, the ones
        before it counted."""
        cdef Py_ssize_t n = self.bounds.shape[0], lo, hi, mid
        cdef int64_t d, longest = 0
        for start in starts:
            d = now - <int64_t>start
            lo, hi = 0, n
            while lo < hi:
                mid = (lo + hi) >> 1
                if self.bounds[mid] < d:
                    lo = mid + 1
                else:
                    hi = mid
            self.counts[lo] += 1
            if d > longest:
                longest = d
        return longest
