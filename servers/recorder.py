"""The recorder: every shard's journal into the transactional database and the tick store.

``python main.py -s recorder`` (started by ``up``). It is a consumer of each shard's journal
stream (`servers.stream`, the recorder's CURVE key) and writes what the OBS journaled, never
what a socket happened to deliver live, so it records exactly the exchange's history.

The loop, in this order
-----------------------
1. read the entries each shard's stream has ready (`JournalStream.receive`), keeping them per
   shard in arrival order;
2. once a shard holds `BATCH` entries or its oldest has waited `FLUSH_S`, write them to the
   transactional database (`database.recording.Applier.apply`: one transaction with the
   shard's progress row) and to the tick store (`database.ticks.schema.record`: each table's
   ``upd`` with the shard's watermark); both skip what they already hold, so a batch written
   twice is written once;
3. acknowledge to the shard the last sequence every store durably holds (a kdb+ tickerplant
   holds a batch once a synchronous round trip has confirmed it): the OBS then sends more
   (credit) and may discard the journal before it.

Exactly once, across crashes: at start (and for a shard whose stream broke) the recorder
subscribes after the lowest sequence any of its stores holds for the shard, and the store
that is ahead skips the entries it has. A store that refuses (the database down, a full
disk, the tickerplant gone) is logged once per failure, the batch is kept and tried again
after a back-off, and the stream's credit stops the OBS from sending more meanwhile: the
exchange never waits for the recorder, whose lag grows until the store is back.

Lag
---
Per shard: how many journaled entries are not yet in both stores (the journal's last
sequence as the stream reports it, minus the committed one) and how old the newest committed
entry's exchange time is. Logged every `LAG_LOG_S` (for a shard behind) and written every
`servers.status.PERIOD_S` to ``recorder.status_file`` for the dashboards: the keys every server's
status file has (`servers.status`: role, pid, started, updated, counters ``recorded`` and
``refusals``...) and, under each shard's name, ``{"committed", "journal_last", "behind",
"seconds", "pending"}`` (sequences; entries; s, null before the first entry; entries held).
"""

import logging
import time
from pathlib import Path

from config.settings import Config, ShardConfig
from database.recording import Applier, RecordingError
from database.store import StoreUnavailable, open_database
from database.ticks import schema as ticks
from servers import security, service
from servers.journal import DirectoryLock
from servers.status import StatusFile
from servers.stream import JournalStream, StreamError

log = logging.getLogger("recorder")

BATCH = 5_000
"""Entries of one shard written in one batch at most."""
FLUSH_S = 0.2
"""A shard's entries wait at most this long for a batch to fill."""
RECEIVE_S = 0.05
"""How long one turn waits for entries."""
RETRY_S = (0.5, 30.0)
"""After a store refused: the first wait, doubled after each further refusal up to the second."""
LAG_LOG_S = 10.0
WINDOW = 50_000
"""Entries a shard may send past the last acknowledgement (what the recorder may hold unwritten)."""


class RecorderHalted(Exception):
    """An entry the database cannot take: the journal and the database disagree."""


class ShardFeed:
    """One shard's stream and the entries read from it but not yet in both stores."""

    __slots__ = ("name", "stream", "pending", "oldest", "committed", "acked", "journal_last", "last_time",
                 "retry_at", "failures")

    def __init__(self, name: str, stream: JournalStream, committed: int) -> None:
        self.name = name
        self.stream = stream
        self.pending: list = []
        self.oldest = 0.0
        """When the oldest pending entry arrived (monotonic)."""
        self.committed = committed
        """The last sequence both stores hold (a tickerplant may not have confirmed it yet)."""
        self.acked = committed
        """The last sequence acknowledged to the shard: every store holds it durably."""
        self.journal_last = committed
        """The last sequence the shard's journal holds, as far as the recorder knows."""
        self.last_time = 0
        """The exchange time of the entry at ``committed`` (0: unknown)."""
        self.retry_at = 0.0
        self.failures = 0


class Recorder:
    """Owns the streams and the stores; `run` loops until `stop`.

    The tick store's root (``ticks.root``: the embedded store, or the watermarks a kdb+
    backend confirmed) is the recorder's own: its `DirectoryLock` is taken before anything
    is opened (`servers.journal.DirectoryInUse` if another recorder holds it) and released
    by `close`."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.running = True
        self._lock = DirectoryLock(Path(config.ticks.root), "the tick store")
        try:
            self.engine = open_database(config)
            self.applier = Applier(self.engine)
            self.ticks = ticks.open_backend(config.ticks)
        except BaseException:
            self._lock.release()
            raise
        self.price_scales = {instrument.symbol: instrument.price_scale for instrument in config.instruments}
        self.feeds: list[ShardFeed] = []
        self._logged_at = time.monotonic()
        self.status = StatusFile(Path(config.recorder.status_file), "recorder", "recorder", log, self._logged_at)
        self.recorded = 0
        """Entries written to both stores since the start."""
        self.refusals = 0
        """Batches a store refused since the start."""
        try:
            for shard in config.shards:
                if not shard.stream_endpoint:
                    log.warning("shard %s has no stream_endpoint: it is not recorded", shard.name)
                    continue
                self.feeds.append(self._subscribe(shard))
        except BaseException:
            self.close()
            raise

    def _subscribe(self, shard: ShardConfig) -> ShardFeed:
        committed = min(self.applier.committed(shard.name),
                        *(self.ticks.watermark(table, shard.name) for table in ticks.TABLES))
        curve = None
        if self.config.security.keys_dir:
            keys = security.Keys(self.config.security.keys_dir)
            curve = (keys.own(security.RECORDER), keys.public(security.shard_key_name(shard.name)))
        stream = JournalStream(shard.stream_endpoint, security.RECORDER, curve, WINDOW)
        subscribed = stream.subscribe(committed)
        feed = ShardFeed(shard.name, stream, committed)
        feed.journal_last = subscribed.last
        log.info("shard %s: recording after sequence %d (its journal holds %d..%d)", shard.name, committed,
                 subscribed.first, subscribed.last)
        return feed

    def ready(self) -> str:
        return f"READY recorder shards={','.join(feed.name for feed in self.feeds)}"

    def stopped(self) -> str:
        return "recorder stopped: " + ", ".join(f"shard {f.name} at sequence {f.committed}" for f in self.feeds)

    def run(self) -> None:
        try:
            self._record()
        except RecordingError as exc:
            raise RecorderHalted(
                f"the database cannot take the next journal entry ({exc}); nothing after its last committed "
                "sequence was written. The journal and the database disagree: check that they belong to the "
                "same exchange") from exc

    def _record(self) -> None:
        while self.running:
            for feed in self.feeds:
                entries = feed.stream.receive(RECEIVE_S / max(1, len(self.feeds)))
                if entries:
                    if not feed.pending:
                        feed.oldest = time.monotonic()
                    feed.pending.extend(entries)
                    feed.journal_last = max(feed.journal_last, entries[-1].sequence)
            now = time.monotonic()
            for feed in self.feeds:
                if feed.pending and now >= feed.retry_at and (
                        len(feed.pending) >= BATCH or now - feed.oldest >= FLUSH_S or not self.running):
                    self._write(feed, now)
            if now - self._logged_at >= LAG_LOG_S:
                self._log_lag(now)
            if self.status.due(now):
                self._publish_status(now)
        for feed in self.feeds:
            if feed.pending:
                self._write(feed, time.monotonic())
        self._log_lag(time.monotonic())
        self._publish_status(time.monotonic(), stopped=True)

    def stop(self, *_signal) -> None:
        self.running = False

    def _write(self, feed: ShardFeed, now: float) -> None:
        """Write the shard's pending entries (in batches) to both stores; on a refusal keep
        them and wait before trying again."""
        while feed.pending:
            batch = feed.pending[:BATCH]
            try:
                self.applier.apply(feed.name, batch)
                ticks.record(self.ticks, feed.name, batch, self.price_scales)
            except (StoreUnavailable, ticks.BackendUnavailable, OSError) as exc:
                feed.failures += 1
                self.refusals += 1
                wait = min(RETRY_S[1], RETRY_S[0] * 2 ** (feed.failures - 1))
                feed.retry_at = now + wait
                if feed.failures == 1 or wait == RETRY_S[1]:
                    log.error("shard %s: cannot record sequences %d..%d (%s); trying again in %.1f s", feed.name,
                              batch[0].sequence, batch[-1].sequence, exc, wait)
                return
            if feed.failures:
                log.info("shard %s: recording again after %d refusals", feed.name, feed.failures)
                feed.failures = 0
            del feed.pending[: len(batch)]
            self.recorded += len(batch)
            feed.committed, feed.last_time = batch[-1].sequence, batch[-1].time
            durable = min(feed.committed, *(self.ticks.watermark(table, feed.name) for table in ticks.TABLES))
            if durable > feed.acked:
                feed.stream.ack(durable)
                feed.acked = durable
            feed.oldest = now

    def _log_lag(self, now: float) -> None:
        """Log the lag of each shard that is behind."""
        self._logged_at = now
        for feed in self.feeds:
            behind = feed.journal_last - feed.committed
            if behind or feed.failures:
                age = _age(feed)
                log.info("shard %s: %d entries behind (committed %d of %d)%s", feed.name, behind, feed.committed,
                         feed.journal_last, f", the last recorded {age:.1f} s old" if age is not None else "")

    def _publish_status(self, now: float, stopped: bool = False) -> None:
        """Write the status file: the counts since the start and each shard's progress (the module docstring)."""
        shards = {feed.name: {"committed": feed.committed, "journal_last": feed.journal_last,
                              "behind": feed.journal_last - feed.committed, "seconds": _age(feed),
                              "pending": len(feed.pending)}
                  for feed in self.feeds}
        self.status.publish(now, {"recorded": self.recorded, "refusals": self.refusals}, shards, stopped=stopped)

    def close(self) -> None:
        for feed in self.feeds:
            feed.stream.close()
        self.ticks.close()
        self.engine.dispose()
        self._lock.release()


def _age(feed: ShardFeed) -> float | None:
    """How old the exchange time of the shard's newest recorded entry is, s (None: none recorded)."""
    return (time.time_ns() - feed.last_time) / 1e9 if feed.last_time else None


def serve(config: Config, args=None) -> int:
    """``python main.py -s recorder``: run until SIGINT/SIGTERM; the exit status (`servers.service.serve`)."""
    return service.serve(
        log, "recorder", lambda: Recorder(config),
        {security.KeyFileError: 2, StoreUnavailable: 1, StreamError: 1, ticks.BackendUnavailable: 1, OSError: 1},
        (StreamError, RecorderHalted), log_format=config.logging.format,
    )
