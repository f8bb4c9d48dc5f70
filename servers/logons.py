"""Checking logons: API keys against their hashes, on a worker thread, behind throttles.

The order of the checks
-----------------------
A ``Logon(trader_id, api_key)`` from a connection (ROUTER identity) gets the answer
of the first step that applies (`Logons.check`; `Logons.finished` for step 7):

1. the connection has a logon being checked already: ALREADY_LOGGED_ON;
2. the connection is throttled: LOGON_THROTTLED, the text saying when to retry;
3. the key is the one that last logged this trader on: accepted at once, even if
   the trader id is throttled (see "The remembered key" below);
4. the trader id is throttled: LOGON_THROTTLED, the text saying when to retry; this
   counts as a failure of the connection;
5. the key was found wrong for this trader id before: BAD_CREDENTIALS at once;
6. a logon of this trader id is being checked, or ``queue`` logons are: LOGON_THROTTLED
   at once ("busy"), the text saying when the checks waiting should be done;
7. the worker thread checks the key (PBKDF2, tens of milliseconds; hashlib releases
   the GIL, so the server keeps serving): accepted, or BAD_CREDENTIALS.

Every BAD_CREDENTIALS is a failure of the trader id and of the connection; every
acceptance forgets the failures of both.

Throttling
----------
A `Backoff` per claimed trader id and one per connection count consecutive failures:
after ``failures`` of them the id (or connection) must wait ``backoff_s``, each further
failure doubling the wait up to ``backoff_max_s``. Attempts refused while waiting
cost no check and do not lengthen the wait.

Equal answers
-------------
Nothing tells whether a trader id is configured. An unknown id takes the same steps,
is throttled by the same counts, waits in the same queue and gets the same
BAD_CREDENTIALS after the same work: PBKDF2 against a dummy hash with the iteration
count most configured traders use. A trader whose hash has another iteration count
takes another time to check, which gives its id away (the `Authenticator` warns).

Bounds
------
- Checks waiting for the worker: at most ``queue``, one per connection and one per
  trader id. A good logon that gets a place is answered after at most ``queue``
  checks (16 x 35-65 ms at the default 100,000 iterations); one that does not is
  refused at once and may retry when the text says. A flood of bad logons therefore
  delays no one by more than that, but while it lasts it takes most of the places:
  only a trader with a remembered key (step 3) is sure to get in at once.
- Memory: each `Backoff` keeps at most ``TRACKED`` keys and forgets a key a while
  after its last failure. To push a trader id out early, a guesser must make
  ``TRACKED`` other ids fail, each at the price of a PBKDF2 check (minutes of the
  worker at the defaults); connections are cheap to cycle, but a new connection is
  no better than a forgotten one. The wrong keys remembered for step 5 are at most
  ``NEGATIVE_CACHE_SIZE``; the good ones, one per configured trader.

The remembered key (step 3)
---------------------------
Step 3 keeps someone guessing a trader's key from locking out that trader once it
has logged on in this server's life. The comparison is of SHA-256 digests, in
constant time, and a wrong key gets the same LOGON_THROTTLED whether or not the
trader has logged on (or exists), so it tells nothing about either. What it does
give away is the one thing the throttle withholds: whether a guess is right, for a
trader that has logged on, while its id is throttled. Such guesses are limited only
by the connection throttle (``failures`` per connection and back-off window, step 4
counting), so a guesser who opens new connections (cheap; the TES admits any CURVE
client key) tests keys against such a trader as fast as it can connect. The
alternative, refusing step 3 while the id is throttled, would let anyone lock any
trader out; a key that must be admitted has to be compared, so one cannot have
both. The throttle therefore slows guessing for traders that have not logged on
since the TES started; for the others, API keys must be long random strings (for
which the guessing rate does not matter).
"""

import hashlib
import hmac
import logging
import math
import secrets
import time
from collections import Counter, OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from functools import partial
from typing import NamedTuple

from config.api_keys import parse_hash
from engine.types import RejectReason
from servers.auth import ITERATIONS, hash_api_key, verify_api_key

log = logging.getLogger(__name__)

NEGATIVE_CACHE_SIZE = 10_000
"""Wrong keys remembered (so a client retrying one costs no PBKDF2); cleared when full."""
TRACKED = 10_000
"""Keys (trader ids, connections) a `Backoff` keeps at most."""
THROTTLED_TEXT = "too many logon attempts"
BUSY_TEXT = "logon checks busy"


class Authenticator:
    """Checks API keys against each trader's active key hashes and remembers the answers.

    Only SHA-256 digests of keys are kept in memory, never the keys. A trader id
    that is not known is checked against a dummy hash (of a random key, then
    forgotten) with the iteration count most traders' hashes have, and refused
    whatever the result: the same work and the same answer as a wrong key.

    `update` replaces the hashes (the reference data changed) and forgets every answer
    remembered, so a revoked key is refused from the next check on; an answer found
    against the old hashes while `update` ran is not remembered.
    """

    def __init__(self, hashes: dict[str, list[str]]) -> None:
        self._good: dict[str, bytes] = {}
        self._bad: set[tuple[str, bytes]] = set()
        self._executor: ThreadPoolExecutor | None = None
        self._generation = 0
        self._iterations: int | None = None
        self.check_s = 0.0
        """How long the last check took (for telling a client when to retry)."""
        self.update(hashes)

    def update(self, hashes: dict[str, list[str]]) -> None:
        counts = Counter(parse_hash(stored)[0] for keys in hashes.values() for stored in keys)
        iterations = counts.most_common(1)[0][0] if counts else ITERATIONS
        if self._iterations != iterations:
            started = time.perf_counter()
            self.dummy = hash_api_key(secrets.token_urlsafe(32), iterations)
            self.check_s = time.perf_counter() - started
            self._iterations = iterations
        self._hashes = {trader: list(keys) for trader, keys in hashes.items() if keys}
        self._generation += 1
        self._good, self._bad = {}, set()
        odd = sorted(trader for trader, keys in hashes.items() if any(parse_hash(k)[0] != iterations for k in keys))
        if odd:
            log.warning("API key hashes of %s do not have %d iterations like the others': logon timing tells "
                        "these trader ids from unknown ones (rehash their keys)", ", ".join(odd), iterations)

    def remembered(self, trader_id: str, api_key: str) -> bool | None:
        """True for the key that last logged this trader on, False for a key found wrong
        before, else None (PBKDF2 must tell). The same steps for every trader id."""
        digest = hashlib.sha256(api_key.encode()).digest()
        good = self._good.get(trader_id)
        if good is not None and hmac.compare_digest(good, digest):
            return True
        if (trader_id, digest) in self._bad:
            return False
        return None

    def verify(self, trader_id: str, api_key: str) -> bool:
        """Check a key (PBKDF2 unless the answer is remembered) and remember the answer."""
        answer = self.remembered(trader_id, api_key)
        if answer is not None:
            return answer
        generation, stored = self._generation, self._hashes.get(trader_id)
        started = time.perf_counter()
        if stored is None:
            right = verify_api_key(api_key, self.dummy) and False
        else:
            right = any([verify_api_key(api_key, key_hash) for key_hash in stored])  # each checked: no early out
        self.check_s = time.perf_counter() - started
        digest = hashlib.sha256(api_key.encode()).digest()
        if generation != self._generation:
            return right
        if right:
            self._good[trader_id] = digest
            return True
        if len(self._bad) >= NEGATIVE_CACHE_SIZE:
            self._bad.clear()
        self._bad.add((trader_id, digest))
        return False

    def verify_later(self, trader_id: str, api_key: str) -> "Future[bool]":
        """`verify` on the worker thread (one, so key guessing costs at most one core)."""
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="auth")
        return self._executor.submit(self.verify, trader_id, api_key)

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)


class Backoff:
    """Consecutive failed logons per key (a claimed trader id, or a connection) and the wait they earn.

    - A key with fewer than ``allowed`` consecutive failures may try at once. The
      ``allowed``-th failure makes it wait ``first_s``, each further one twice as long
      as the one before, at most ``max_s``.
    - A key is forgotten (starts afresh) ``forget_s`` after its last failure. That is
      long enough for starting afresh never to beat waiting out the back-off: the
      tries a fresh key gets before its waits reach ``max_s`` (``allowed`` at once,
      then one after each shorter wait), spread over ``forget_s``, are fewer than one
      per ``max_s``.
    - ``entries`` (key -> failures, end of the wait, last failure) is ordered by last
      failure and holds at most ``capacity`` keys. Each failure first drops the keys
      forgotten by then; a key beyond ``capacity`` then pushes out the one whose last
      failure is oldest.
    """

    def __init__(self, allowed: int, first_s: float, max_s: float, capacity: int = TRACKED) -> None:
        self.allowed = allowed
        self.first_s = first_s
        self.max_s = max_s
        self.capacity = capacity
        shorter, wait = 0, first_s
        while wait < max_s:
            shorter, wait = shorter + 1, wait * 2
        self.forget_s = (allowed + shorter) * max_s
        self.entries: OrderedDict[object, tuple[int, float, float]] = OrderedDict()

    def wait(self, key, now: float) -> float:
        """Seconds ``key`` must still wait before its next try (0: it may try now)."""
        entry = self.entries.get(key)
        if entry is None or now >= entry[2] + self.forget_s:
            return 0.0
        return max(0.0, entry[1] - now)

    def failed(self, key, now: float) -> None:
        entries = self.entries
        while entries:
            oldest = next(iter(entries.values()))
            if now < oldest[2] + self.forget_s:
                break
            entries.popitem(last=False)
        entry = entries.pop(key, None)
        failures = 1 if entry is None else entry[0] + 1
        until = now
        if failures >= self.allowed:
            until += min(self.max_s, self.first_s * 2.0 ** min(failures - self.allowed, 64))
        entries[key] = (failures, until, now)
        if len(entries) > self.capacity:
            entries.popitem(last=False)

    def forget(self, key) -> None:
        self.entries.pop(key, None)


class Verdict(NamedTuple):
    """The answer to a logon: accepted if ``reason`` is None, else LogonRejected(reason, text)."""

    identity: bytes
    trader_id: str
    cancel_on_disconnect: bool
    reason: RejectReason | None = None
    text: str = ""


class PendingLogon:
    __slots__ = ("identity", "trader_id", "cancel_on_disconnect", "answer")

    def __init__(self, identity: bytes, trader_id: str, cancel_on_disconnect: bool, answer: "Future[bool]") -> None:
        self.identity = identity
        self.trader_id = trader_id
        self.cancel_on_disconnect = cancel_on_disconnect
        self.answer = answer


class Logons:
    """The logons being checked and the throttles in front of the checks (see the module
    docstring for the order). Times are monotonic seconds."""

    def __init__(self, authenticator: Authenticator, failures: int, backoff_s: float, backoff_max_s: float,
                 queue: int) -> None:
        self.authenticator = authenticator
        self.traders = Backoff(failures, backoff_s, backoff_max_s)
        self.connections = Backoff(failures, backoff_s, backoff_max_s)
        self.queue = queue
        self.pending: dict[bytes, PendingLogon] = {}
        """Logons the worker is checking, by connection (``queue`` at most)."""
        self.checking: set[str] = set()
        """The trader ids of ``pending``."""

    def check(self, identity: bytes, trader_id: str, api_key: str, cancel_on_disconnect: bool, now: float
              ) -> Verdict | None:
        """The answer to a logon if it is known at once, else None: the worker checks the
        key and `finished` gives the answer."""
        answer = partial(Verdict, identity, trader_id, cancel_on_disconnect)
        if identity in self.pending:
            return answer(RejectReason.ALREADY_LOGGED_ON, RejectReason.ALREADY_LOGGED_ON.text)
        wait = self.connections.wait(identity, now)
        if wait:
            return answer(RejectReason.LOGON_THROTTLED, _retry(THROTTLED_TEXT, wait))
        remembered = self.authenticator.remembered(trader_id, api_key)
        if remembered:
            return self._succeeded(answer)
        wait = self.traders.wait(trader_id, now)
        if wait:
            self.connections.failed(identity, now)
            wait = max(wait, self.connections.wait(identity, now))
            return answer(RejectReason.LOGON_THROTTLED, _retry(THROTTLED_TEXT, wait))
        if remembered is False:
            return self._failed(answer, now)
        if trader_id in self.checking or len(self.pending) >= self.queue:
            wait = len(self.pending) * self.authenticator.check_s
            return answer(RejectReason.LOGON_THROTTLED, _retry(BUSY_TEXT, wait))
        future = self.authenticator.verify_later(trader_id, api_key)
        self.pending[identity] = PendingLogon(identity, trader_id, cancel_on_disconnect, future)
        self.checking.add(trader_id)
        return None

    def finished(self, now: float) -> list[Verdict]:
        """The answers to the logons whose check has completed since the last call."""
        done = [logon for logon in self.pending.values() if logon.answer.done()]
        verdicts = []
        for logon in done:
            del self.pending[logon.identity]
            self.checking.discard(logon.trader_id)
            answer = partial(Verdict, logon.identity, logon.trader_id, logon.cancel_on_disconnect)
            verdicts.append(self._succeeded(answer) if logon.answer.result() else self._failed(answer, now))
        return verdicts

    def close(self) -> None:
        self.authenticator.close()

    def _succeeded(self, answer: partial) -> Verdict:
        verdict = answer()
        self.traders.forget(verdict.trader_id)
        self.connections.forget(verdict.identity)
        return verdict

    def _failed(self, answer: partial, now: float) -> Verdict:
        verdict = answer(RejectReason.BAD_CREDENTIALS, RejectReason.BAD_CREDENTIALS.text)
        self.traders.failed(verdict.trader_id, now)
        self.connections.failed(verdict.identity, now)
        return verdict


def _retry(what: str, seconds: float) -> str:
    """``what`` and when to try again, rounded up to a tenth of a second."""
    return f"{what}: try again in {max(1, math.ceil(round(seconds * 10, 6))) / 10:.1f} s"
