"""The trading engine server's link to the transactional database: reference data in, sessions out.

Reference data (instruments, traders, their limits and API keys) lives in the database
(`database.reference`): seeded from the configuration on first start, then changed with
``python main.py admin``. `DatabaseLink` loads it before the TES serves, then a thread
polls its version every ``tes.reference_poll_ms`` and loads it again when it moved; the
TES takes the new data with `DatabaseLink.latest` on its loop, between messages, so a change
applies to every message after it and to none before.

Each load is also written to ``reference.msgpack`` in the TES's journal directory. If the
database cannot be reached when the TES starts, that copy (the reference data this TES last
saw) is used, and only without one the configuration's lists; a warning names the source,
and the thread keeps trying. So a key revoked in the database stays revoked across a TES
restart while the database is down.

Sessions go the other way: `logged_on` and `logged_off` queue a record of a session (its
trader, when it started, when and why it ended: `database.sessions`) for the same thread,
which writes them in order in one transaction per batch. The queue is bounded
(`SESSION_QUEUE`); while the database is down the records wait in it and are written when it
is back, and what does not fit is counted and dropped with a warning: trading never waits
for the database.
"""

import itertools
import logging
import queue
import threading
import time
from collections import deque
from pathlib import Path

import msgspec

from config.settings import Config, InstrumentConfig, TraderConfig
from servers.journal import write_atomically
from servers.protocol import EndReason
from servers.service import Occurrences

log = logging.getLogger(__name__)

SESSION_QUEUE = 10_000
"""Session records waiting for the database at most (a logon storm while it is down)."""
RETRY_WARN_EVERY_S = 30.0
CACHE_NAME = "reference.msgpack"


class ReferenceUnavailable(Exception):
    """Neither the database nor the copy of its reference data can be read: the TES cannot start."""


class Reference(msgspec.Struct, frozen=True):
    """The reference data as the TES uses it: ``keys`` holds every active key hash of each
    trader (a trader may log on with any of them while clients move to a new one)."""

    version: int
    instruments: list[InstrumentConfig]
    traders: list[TraderConfig]
    keys: dict[str, list[str]]
    source: str = "the database"


def from_config(config: Config) -> Reference:
    """The configuration's reference data (what the database is seeded with)."""
    return Reference(0, list(config.instruments), list(config.traders),
                     {trader.trader_id: [trader.api_key_hash] for trader in config.traders}, "the configuration")


class DatabaseLink:
    """Reference data from the database and session records to it, through one thread.

    Invariants: `reference` is the newest reference data handed to the TES (`latest`); the
    thread only ever offers data of a higher version than it; session records reach the
    database in the order `logged_on` and `logged_off` were called.
    """

    def __init__(self, config: Config, directory: Path) -> None:
        self.config = config
        self.cache = directory / CACHE_NAME
        self.poll_s = config.tes.reference_poll_ms / 1000
        self._engine = None
        self._offered: queue.SimpleQueue[Reference] = queue.SimpleQueue()
        self._sessions: deque[tuple] = deque()
        self._lock = threading.Lock()
        """Guards ``_sessions``: the loop appends, the thread reads and removes."""
        self._session_ids: dict[int, int] = {}
        """Local session number -> the database's session id (sessions still open)."""
        self._keys = itertools.count(1)
        self._wake = threading.Event()
        self._stopping = False
        self.dropped = Occurrences(log, "session records dropped: the database is not taking them (%d so far)")
        self.unavailable = Occurrences(log, "the database is unavailable: %s (%d failures so far; retrying)",
                                       RETRY_WARN_EVERY_S)
        try:
            self.reference = self._load()
        except Exception as exc:  # noqa: BLE001 - whatever the database says, the TES starts from a copy
            self.reference = self._fallback(exc)
        self._thread = threading.Thread(target=self._run, name="database-link", daemon=True)
        self._thread.start()

    # ---------------------------------------------------------------- the TES's side (its loop)

    def latest(self) -> Reference | None:
        """Newer reference data than the last handed over, or None."""
        newest = None
        while True:
            try:
                newest = self._offered.get_nowait()
            except queue.Empty:
                break
        if newest is not None:
            self.reference = newest
        return newest

    def logged_on(self, trader_id: str, time_ns: int) -> int:
        """Queue the record of a session that started; its number, for `logged_off`."""
        key = next(self._keys)
        self._queue(("on", key, trader_id, time_ns))
        return key

    def logged_off(self, key: int, time_ns: int, reason: EndReason) -> None:
        self._queue(("off", key, time_ns, reason))

    def close(self) -> None:
        """Write what is queued (for at most a few seconds), stop the thread, close the engine."""
        self._stopping = True
        self._wake.set()
        self._thread.join(timeout=5.0)
        if self._engine is not None:
            self._engine.dispose()

    def _queue(self, record: tuple) -> None:
        with self._lock:
            if len(self._sessions) >= SESSION_QUEUE:
                self.dropped()
                return
            self._sessions.append(record)
        self._wake.set()

    # ---------------------------------------------------------------- the thread

    def _run(self) -> None:
        next_poll = time.monotonic() + self.poll_s
        while True:
            self._wake.wait(max(0.0, next_poll - time.monotonic()))
            self._wake.clear()
            stopping = self._stopping
            try:
                if self._sessions:
                    self._write_sessions()
                if time.monotonic() >= next_poll:
                    next_poll = time.monotonic() + self.poll_s
                    self._poll()
            except Exception as exc:  # noqa: BLE001 - a database fault of any kind: say so, retry
                self.unavailable(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
                if stopping:
                    return
                self._wake.wait(min(self.poll_s, 1.0))
                continue
            if stopping:
                return

    def _poll(self) -> None:
        from database.reference import reference_version
        from database.store import transaction

        engine = self._open()
        with transaction(engine, write=False) as connection:
            version = reference_version(connection)
        if version != self.reference.version or self.reference.source != "the database":
            reference = self._load()
            log.info("reference data version %d loaded: %d instruments, %d traders", reference.version,
                     len(reference.instruments), len(reference.traders))
            self._offered.put(reference)

    def _write_sessions(self) -> None:
        """Write the queued session records in order, in one transaction; on failure none is
        taken off the queue (and the numbers they got stay unknown until it succeeds)."""
        from database.sessions import logged_off, logged_on
        from database.store import transaction

        engine = self._open()
        with self._lock:
            batch = list(itertools.islice(self._sessions, 1000))
        started: dict[int, int] = {}
        with transaction(engine) as connection:
            for record in batch:
                if record[0] == "on":
                    _, key, trader_id, time_ns = record
                    started[key] = logged_on(connection, trader_id, time_ns)
                else:
                    _, key, time_ns, reason = record
                    session_id = started.pop(key, None) or self._session_ids.pop(key, None)
                    if session_id is not None:
                        logged_off(connection, session_id, time_ns, reason)
        self._session_ids.update(started)
        with self._lock:
            for _ in batch:
                self._sessions.popleft()

    def _open(self):
        if self._engine is None:
            from database.store import open_database

            self._engine = open_database(self.config)
        return self._engine

    def _load(self) -> Reference:
        """The database's reference data (seeded from the configuration if it has none yet),
        also written to the cache file."""
        from database.reference import active_key_hashes, load_reference, reference_version
        from database.store import transaction

        with transaction(self._open(), write=False) as connection:
            version = reference_version(connection)
            instruments, traders = load_reference(connection)
            keys = active_key_hashes(connection)
        reference = Reference(version, instruments, traders, {trader.trader_id: keys[trader.trader_id]
                                                              for trader in traders})
        try:
            write_atomically(self.cache, msgspec.msgpack.encode(reference))
        except OSError as exc:
            log.warning("cannot keep a copy of the reference data in %s: %s", self.cache, exc)
        return reference

    def _fallback(self, exc: Exception) -> Reference:
        """The reference data to start from when the database cannot be read: the copy of the
        last load if there is one, else the configuration's."""
        cause = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None
        try:
            cached = msgspec.msgpack.decode(self.cache.read_bytes(), type=Reference)
        except FileNotFoundError:
            log.warning("%s: starting from the configuration's reference data (no copy of an earlier load in "
                        "%s); it is loaded when the database answers", cause, self.cache)
            return from_config(self.config)
        except (OSError, msgspec.DecodeError, msgspec.ValidationError) as error:
            raise ReferenceUnavailable(f"{cause}; and the copy of the reference data in {self.cache} cannot be "
                               f"read ({error}): restore the database, or remove the copy to start from the "
                               f"configuration") from None
        log.warning("%s: starting from reference data version %d as last loaded (%s); it is loaded again when "
                    "the database answers", cause, cached.version, self.cache)
        return msgspec.structs.replace(cached, source=f"the copy in {self.cache}")
