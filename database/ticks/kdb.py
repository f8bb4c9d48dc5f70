"""The kdb+ backend: tick batches published to a kdb+ tickerplant (kx's kdb-tick ``tick.q``,
loaded with this package's ``schema.q``) over kdb+ IPC, through pykx.

pykx needs no licence for IPC: it is imported here in its unlicensed mode
(``PYKX_UNLICENSED``), unless the environment says otherwise.

Wire
----
Each `KdbTickerplant.upd` is one asynchronous message ``(".u.upd"; `table; columns)``,
kdb+tick's feed convention: ``columns`` is a list of vectors in `TABLES` order, each of its
column's kdb+ type (timespan, symbol, float, long, char). NaN prices (an empty side) are
kdb+'s float null ``0n``.

Time
----
tick.q keeps a message's own time only when the first column is a timespan (otherwise it
prepends its own clock's). So ``time`` goes out as the time of day, UTC, of the exchange
time (nanoseconds since midnight), and the date is the tickerplant's partition: the day it
has when the message arrives, by its clock (``.z.D``), which also decides when it rolls its
log and the RDB saves the day to the HDB. Run tick.q with ``TZ=UTC`` so that its days are
the exchange's UTC days. A command from just before midnight that reaches the tickerplant
after its roll is filed under the next day, with its time of day near 24:00.

Exactly once
------------
A stock tickerplant keeps no state a publisher could ask about: it logs each message and
passes it on, and its log may well hold a message twice. Exactly once is therefore kept
where the state is, in two halves:

1. **At least once to the tickerplant.** Batches are kept in memory until confirmed. After
   every ``confirm_every`` batches, and on `close`, a synchronous round trip (``"::"``) on
   the same connection confirms them: kdb+ handles one connection's messages in order, so
   its answer means every earlier batch was processed (logged and published). Only then is
   the watermark, per table and shard, written to ``state_path`` (temporary file, fsync,
   rename). When the connection breaks, the next call opens it again and sends every
   unconfirmed batch again, in order; while the tickerplant cannot be reached, calls raise
   `TickerplantUnavailable` (a `BackendUnavailable`: nothing of that batch was taken) and
   connections are tried at most once per back-off interval, doubling from
   ``backoff_initial`` up to ``backoff_max`` seconds. After a crash of the recorder,
   `watermark` is the last confirmed sequence and the recorder captures again from there:
   at most the unconfirmed batches are sent twice.
2. **Duplicates dropped at the RDB.** ``schema.q``'s ``.ticks.upd`` (the RDB's ``upd``,
   also while it replays the tickerplant's log at start: the README's set-up) keeps per table and
   shard the highest sequence it holds and drops rows at or below it. So the RDB, and the
   HDB it saves each day, hold every row once.

What is left: the RDB's marks reach back over its own lifetime (an RDB restarted after a day
roll rebuilds them from that day's log only), so a resend of rows stored before the roll
into an RDB restarted since would store them again. That takes a recorder crash between a
batch and its confirmation, across midnight, with an RDB restart in between.
"""

import json
import logging
import os
import select
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

from database.ticks.schema import DAY_NS, TABLES, BackendUnavailable, check_rows

os.environ.setdefault("PYKX_UNLICENSED", "true")
import pykx as kx  # noqa: E402  (configured by the environment just above)

log = logging.getLogger(__name__)

VECTORS = {"s": kx.SymbolVector, "f": kx.FloatVector, "j": kx.LongVector}
"""The pykx vector of each kdb+ type but ``n`` (timespan) and ``c`` (char), converted apart."""


class TickerplantUnavailable(BackendUnavailable):
    """The tickerplant cannot be reached (or was lost and cannot be reached again) now."""


class TickerplantRefused(RuntimeError):
    """The tickerplant refused the credentials: trying again cannot help."""


class KdbTickerplant:
    """A publisher of tick batches to one kdb+ tickerplant, with its confirmed watermarks.

    Parameters
    ----------
    host, port
        The tickerplant (tick.q's ``-p``).
    state_path
        The JSON file of confirmed watermarks, ``{table: {shard: sequence}}``.
    user, password
        Credentials, if the tickerplant checks them (``-u`` / ``.z.pw``).
    confirm_every
        Batches between synchronous confirmations (the most a recorder crash sends again).
    timeout
        Seconds a connection, a send or a confirmation may take before the connection is
        taken as broken.
    backoff_initial, backoff_max
        After a failed connection, the wait before the next attempt: doubled after each
        failure up to the max, back to the initial after a success.
    """

    def __init__(self, host: str, port: int, *, state_path: str | Path, user: str = "", password: str = "",
                 confirm_every: int = 8, timeout: float = 10.0, backoff_initial: float = 0.1,
                 backoff_max: float = 30.0) -> None:
        self.host, self.port = host, port
        self.state_path = Path(state_path)
        self._user, self._password = user, password
        self._confirm_every = confirm_every
        self._timeout = timeout
        self._backoff = (backoff_initial, backoff_max)
        self._delay = backoff_initial
        self._retry_at = 0.0
        self._confirmed: dict[str, dict[str, int]] = _read_state(self.state_path)
        self._sent = {(table, shard): mark for table, marks in self._confirmed.items() for shard, mark in marks.items()}
        self._pending: list[tuple[str, str, int, kx.List | None]] = []
        """Batches sent, or to send on the next connection, not yet confirmed: (table, shard,
        through, columns or None for a batch without rows)."""
        self._connection = None

    @classmethod
    def from_config(cls, config) -> "KdbTickerplant":
        """The publisher a `config.settings.TicksConfig` with ``kdb_host`` set describes."""
        return cls(config.kdb_host, config.kdb_port, user=config.kdb_user, password=config.kdb_password,
                   state_path=Path(config.root) / f"kdb-{config.kdb_host}-{config.kdb_port}.json",
                   confirm_every=config.kdb_confirm_every, timeout=config.kdb_timeout_ms / 1000,
                   backoff_max=config.kdb_backoff_max_ms / 1000)

    def watermark(self, table: str, shard: str) -> int:
        """The highest sequence of ``shard`` in ``table`` confirmed by the tickerplant (0: none)."""
        return self._confirmed.get(table, {}).get(shard, 0)

    def upd(self, table: str, rows: pa.Table, shard: str, through_sequence: int) -> int:
        """Publish ``rows`` of ``table``, captured from ``shard``'s journal up to ``through_sequence``.

        Rows at or below what was already sent for the table and shard are dropped; the rest
        go out as one asynchronous ``.u.upd``, after every unconfirmed batch if the
        connection had to be opened again. Every ``confirm_every`` batches, `confirm` (a
        failed confirmation is tried again by the next call: the watermark waits for it).
        Returns the number of rows sent.

        Raises
        ------
        ValueError
            Rows not of the table's schema, or out of sequence order.
        TickerplantUnavailable
            The tickerplant cannot be reached now: nothing of this batch was taken.
        TickerplantRefused
            The tickerplant refused the credentials.
        """
        check_rows(table, rows)
        sequences = rows.column("sequence").to_numpy()
        if len(sequences) and (np.any(sequences[1:] < sequences[:-1]) or sequences[-1] > through_sequence):
            raise ValueError(f"{table} rows of shard {shard} are not in sequence order up to {through_sequence}")
        if self._connection is None and self._pending:
            self._reconnect()
        sent = self._sent.get((table, shard), 0)
        if through_sequence <= sent:
            return 0
        rows = rows.slice(int(np.searchsorted(sequences, sent, side="right")))
        batch = (table, shard, through_sequence, kdb_columns(table, rows) if len(rows) else None)
        self._pending.append(batch)
        try:
            if self._connection is None:
                self._reconnect()
            else:
                try:
                    self._publish(*batch)
                except _BROKEN as exc:
                    self._broken(exc)
                    self._reconnect()
        except BaseException:
            self._pending.pop()
            raise
        self._sent[(table, shard)] = through_sequence
        if len(self._pending) >= self._confirm_every:
            try:
                self.confirm()
            except TickerplantUnavailable:
                pass  # the batch is taken; the next call connects again and sends it again
        return len(rows)

    def confirm(self) -> None:
        """Wait until the tickerplant has processed every batch sent, then record the watermarks.

        Raises `TickerplantUnavailable` if it cannot be reached: the batches stay unconfirmed
        and are sent again on the next connection."""
        if not self._pending:
            return
        if self._connection is None:
            self._reconnect()
        try:
            self._connection("::", wait=True)
        except _BROKEN as exc:
            self._broken(exc)
            self._reconnect()
            self._connection("::", wait=True)
        for table, shard, through, _ in self._pending:
            marks = self._confirmed.setdefault(table, {})
            marks[shard] = max(marks.get(shard, 0), through)
        self._pending.clear()
        _write_state(self.state_path, self._confirmed)

    def close(self) -> None:
        """Confirm what was sent, if the tickerplant is there, and close the connection."""
        if self._connection is not None:
            try:
                self.confirm()
            except (TickerplantUnavailable, *_BROKEN) as exc:
                log.warning("closing without a confirmation from the kdb+ tickerplant at %s:%d (%s): %d "
                            "batches will be captured again", self.host, self.port, _text(exc), len(self._pending))
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    # ------------------------------------------------------------------ internals

    def _publish(self, table: str, shard: str, through: int, columns: "kx.List | None") -> None:
        """Send one batch (None: no rows, only its watermark to confirm: nothing to send)."""
        if columns is None:
            return
        # pykx gives up silently on a socket that stays unwritable past its timeout, so wait
        # for room here, where running out of time is an error.
        if not select.select([], [self._connection.fileno()], [], self._timeout)[1]:
            raise TimeoutError(f"the tickerplant took no data for {self._timeout} s")
        self._connection(".u.upd", kx.SymbolAtom(table), columns, wait=False)

    def _broken(self, exc: BaseException) -> None:
        log.warning("lost the kdb+ tickerplant at %s:%d (%s); %d unconfirmed batches will be sent again",
                    self.host, self.port, _text(exc), len(self._pending))
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def _reconnect(self) -> None:
        """Connect and send every unconfirmed batch, in order; at most once per back-off interval."""
        now = time.monotonic()
        if now < self._retry_at:
            raise TickerplantUnavailable(f"the kdb+ tickerplant at {self.host}:{self.port} cannot be reached; "
                                         f"next attempt in {self._retry_at - now:.1f} s")
        failure = self._connect()
        if failure is None:
            self._delay, self._retry_at = self._backoff[0], 0.0
            log.info("connected to the kdb+ tickerplant at %s:%d; sent %d unconfirmed batches",
                     self.host, self.port, len(self._pending))
            return
        if failure.startswith("access") or failure == "Authentication error":
            # "access" is q's word (licensed pykx), "Authentication error" unlicensed pykx's.
            raise TickerplantRefused(f"the kdb+ tickerplant at {self.host}:{self.port} refused the "
                                     f"credentials of user {self._user!r}")
        self._retry_at = now + self._delay
        message = (f"cannot reach the kdb+ tickerplant at {self.host}:{self.port} ({failure}); "
                   f"next attempt in {self._delay:.1f} s")
        self._delay = min(self._delay * 2, self._backoff[1])
        log.warning("%s", message)
        raise TickerplantUnavailable(message)

    def _connect(self) -> str | None:
        """Open the connection and send every unconfirmed batch; None, or what went wrong."""
        try:
            self._connection = kx.SyncQConnection(
                self.host, self.port, username=self._user, password=self._password, timeout=self._timeout,
                connection_timeout=self._timeout, no_ctx=True,
            )
            for batch in self._pending:
                self._publish(*batch)
            return None
        except _BROKEN as exc:
            failure = _text(exc)
        if self._connection is not None:
            self._connection.close()
            self._connection = None
        return failure


_BROKEN = (OSError, RuntimeError, kx.QError, kx.PyKXException)
"""What a broken or unreachable connection raises in pykx (TimeoutError is an OSError)."""


def _text(exc: BaseException) -> str:
    """What went wrong, as text. pykx's exceptions must not be kept: one raised while
    connecting refers to the half-built connection, and the garbage collector crashes the
    process (a segmentation fault) when it frees one (pykx 4.2)."""
    return str(exc) or type(exc).__name__


def kdb_columns(table: str, rows: pa.Table) -> "kx.List":
    """``rows`` as the list of typed kdb+ vectors ``.u.upd`` takes, in `TABLES` order."""
    vectors = []
    for column in TABLES[table]:
        values = rows.column(column.name).combine_chunks()
        if column.kdb == "n":
            of_day = values.cast(pa.int64()).to_numpy(zero_copy_only=False) % DAY_NS
            vectors.append(kx.TimespanVector(of_day.view("timedelta64[ns]")))
        elif column.kdb == "c":
            vectors.append(kx.CharVector("".join(values.to_pylist())))
        elif column.kdb == "s":
            names = values.dictionary_decode() if pa.types.is_dictionary(values.type) else values
            vectors.append(kx.toq(names.to_numpy(zero_copy_only=False), kx.SymbolVector))
        else:
            vectors.append(VECTORS[column.kdb](values.to_numpy(zero_copy_only=False)))
    return kx.List(vectors)


def _read_state(path: Path) -> dict[str, dict[str, int]]:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return {}


def _write_state(path: Path, state: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".tmp.{path.name}")
    with open(temporary, "w") as out:
        json.dump(state, out, sort_keys=True)
        out.flush()
        os.fsync(out.fileno())
    os.rename(temporary, path)
    directory = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
