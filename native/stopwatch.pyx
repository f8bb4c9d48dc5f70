# cython: boundscheck=False, wraparound=False
"""A server loop's stopwatch in C: the laps of `servers.status.Stages`, which says what they
measure and how. A lap from the Python loop is one call into C with the clocks read there
(`clock_gettime`: the clocks of `time.perf_counter_ns` and `time.thread_time_ns`), about a
quarter of what the same lap cost in Python.

Invariants: the stages' wall times add up to the time since `start` (every nanosecond is in the
stage whose lap ends it); a turn's CPU time is read at its laps only if the turn was chosen
before it began (``weight`` > 0), and then added with that weight; a lap of any stage but idle
that lasts ``stall_ns`` or longer is also counted, with its wall time, as a stall of that stage."""

from cpython.mem cimport PyMem_Calloc, PyMem_Free
from libc.stdint cimport int64_t
from posix.time cimport CLOCK_MONOTONIC, CLOCK_THREAD_CPUTIME_ID, clock_gettime, timespec

cdef enum:
    OFF = 0
    WALL = 1
    CPU = 2                  # the CPU time in the chosen turns (every turn, if every == 1)


cdef inline int64_t now_ns(int clock) noexcept nogil:
    cdef timespec t
    clock_gettime(clock, &t)
    return <int64_t>t.tv_sec * 1_000_000_000 + t.tv_nsec


def read_cost_ns(int reads=100, int runs=5):
    """What one reading of the thread's CPU time costs in CPU time, ns: the least over ``runs``
    of the CPU time ``reads`` readings in a row took, per reading."""
    cdef int64_t first, last, least = -1
    cdef int run, read
    for run in range(runs):
        first = last = now_ns(CLOCK_THREAD_CPUTIME_ID)
        for read in range(reads):
            last = now_ns(CLOCK_THREAD_CPUTIME_ID)
        if least < 0 or (last - first) // reads < least:
            least = (last - first) // reads
    return least


cdef class Stopwatch:
    """The laps of ``stages`` stages (`Stages` holds the names): ``idle`` is the lap that ends a
    turn; ``mode`` "off", "wall" or "cpu"; with "cpu", a turn in about ``every`` is chosen at random
    (``gap(1, 2 * every)`` turns apart: `random.Random.randrange`), or every turn after one busy
    ``long_turn_ns`` or longer, and its CPU time is read at each lap, less ``read_ns`` a reading; a
    lap of a stage but idle of ``stall_ns`` or longer is a stall (`Stages`: `servers.status.STALL_NS`)."""

    cdef int64_t* wall
    cdef int64_t* cpu
    cdef int64_t* counted
    cdef int64_t* stalled
    cdef int64_t* stalled_wall
    cdef Py_ssize_t stages, idle
    cdef int mode
    cdef int64_t every, long_turn_ns, read_ns
    cdef readonly int64_t stall_ns
    """A lap of a busy stage this long or longer is a stall (counted apart, with its time)."""
    cdef int64_t last_wall, last_cpu, began, weight, countdown
    cdef readonly int64_t cpu_turns
    """The turns ended whose CPU time was read."""
    cdef object gap

    def __cinit__(self, Py_ssize_t stages, Py_ssize_t idle, str mode, int64_t every, int64_t long_turn_ns,
                  int64_t read_ns, gap, int64_t stall_ns):
        if not 0 <= idle < stages:
            raise ValueError(f"stage {idle} of {stages}")
        if mode not in ("off", "wall", "cpu"):
            raise ValueError(f"mode {mode!r}: off, wall or cpu")
        self.wall = <int64_t*>PyMem_Calloc(stages, sizeof(int64_t))
        self.cpu = <int64_t*>PyMem_Calloc(stages, sizeof(int64_t))
        self.counted = <int64_t*>PyMem_Calloc(stages, sizeof(int64_t))
        self.stalled = <int64_t*>PyMem_Calloc(stages, sizeof(int64_t))
        self.stalled_wall = <int64_t*>PyMem_Calloc(stages, sizeof(int64_t))
        if (self.wall == NULL or self.cpu == NULL or self.counted == NULL or self.stalled == NULL
                or self.stalled_wall == NULL):
            raise MemoryError("a stopwatch")
        self.stages, self.idle = stages, idle
        self.mode = OFF if mode == "off" else WALL if mode == "wall" else CPU
        self.every, self.long_turn_ns, self.read_ns, self.gap = every, long_turn_ns, read_ns, gap
        self.stall_ns = stall_ns

    def __dealloc__(self):
        PyMem_Free(self.wall)
        PyMem_Free(self.cpu)
        PyMem_Free(self.counted)
        PyMem_Free(self.stalled)
        PyMem_Free(self.stalled_wall)

    def start(self):
        """Start again from now, and a turn, chosen like any other."""
        self.last_wall = self.began = now_ns(CLOCK_MONOTONIC)
        self.weight = 0
        self.countdown = self.gap(1, 2 * self.every)
        if self.mode == CPU:
            self._choose(0)

    cpdef void lap(self, Py_ssize_t stage) except *:
        """The time since the previous lap to ``stage``, and one lap of it."""
        cdef int64_t now, cpu, spent, wall
        if self.mode == OFF:
            return
        if not 0 <= stage < self.stages:
            raise IndexError(f"stage {stage} of {self.stages}")
        now = now_ns(CLOCK_MONOTONIC)
        wall = now - self.last_wall
        self.wall[stage] += wall
        self.counted[stage] += 1
        if wall >= self.stall_ns and stage != self.idle:
            self.stalled[stage] += 1
            self.stalled_wall[stage] += wall
        if self.mode == CPU:
            if self.weight:
                cpu = now_ns(CLOCK_THREAD_CPUTIME_ID)
                spent = cpu - self.last_cpu - self.read_ns
                if spent > 0:
                    self.cpu[stage] += spent * self.weight
                self.last_cpu = cpu
            if stage == self.idle:
                # the turn that ends here was busy from its start to the lap before this one
                self.cpu_turns += self.weight > 0
                self._choose(self.last_wall - self.began)
                self.began = now
        self.last_wall = now

    cdef void _choose(self, int64_t busy_ns) except *:
        """A turn begins after one busy for ``busy_ns``: read the CPU clock through it if it is chosen."""
        cdef int64_t weight
        self.countdown -= 1
        chosen = self.countdown == 0
        if chosen:
            self.countdown = self.gap(1, 2 * self.every)
        weight = 1 if busy_ns >= self.long_turn_ns else self.every if chosen else 0
        if weight and not self.weight:
            self.last_cpu = now_ns(CLOCK_THREAD_CPUTIME_ID)
        self.weight = weight

    @property
    def wall_ns(self):
        """Each stage's wall time, ns."""
        return [self.wall[i] for i in range(self.stages)]

    @property
    def cpu_ns(self):
        """Each stage's CPU time, ns, estimated from the turns read."""
        return [self.cpu[i] for i in range(self.stages)]

    @property
    def laps(self):
        """Each stage's laps."""
        return [self.counted[i] for i in range(self.stages)]

    @property
    def stalls(self):
        """Each stage's stalls: its laps of ``stall_ns`` or longer (none for idle)."""
        return [self.stalled[i] for i in range(self.stages)]

    @property
    def stalled_ns(self):
        """Each stage's wall time in its stalls, ns."""
        return [self.stalled_wall[i] for i in range(self.stages)]
