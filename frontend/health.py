"""The exchange's health as its processes publish it, for the dashboard's Health page.

`gather(config)` reads the status file (`servers.status`) of every configured shard's OBS, of
the TES and of the recorder; it opens no socket and asks the servers nothing. For each process
it decides one `State`:

- ``up``: its document was written within `STALE_PERIODS` of its own periods and its process
  is alive;
- down, with how long ago it was last seen: ``stopped`` (its last document says it stopped
  cleanly), ``not running`` (its process is gone without saying so: killed or crashed; a pid
  now used by a younger process counts as gone) or ``not responding`` (its process is alive but
  has written nothing for `STALE_PERIODS` periods);
- ``never started``: no file;
- ``unreadable``: a file that cannot be read or is not a status document (bad JSON, missing
  keys, wrong types): said for that process, never raised.

Units throughout: times in ns since the epoch (UTC) where they are instants, in s where they
are ages or intervals; durations of the ack latency in µs (integers); sequences and counts as
they are; rates per second.
"""

import os
import time
from pathlib import Path
from typing import Annotated, Literal

import msgspec

from config.settings import Config
from servers.status import STATUS_FILE

STALE_PERIODS = 3
"""A process whose document is older than this many of its periods is down."""
PID_SLACK_S = 2.0
"""A process that started more than this after the document's ``started`` is another one (its pid reused)."""

State = Literal["up", "stopped", "not running", "not responding", "never started", "unreadable"]
Pid = Annotated[int, msgspec.Meta(gt=0, lt=2**31)]
Count = Annotated[int, msgspec.Meta(ge=0)]
Instant = Annotated[int, msgspec.Meta(ge=0)]


class Struct(msgspec.Struct, frozen=True):
    pass


# ================================================================ the documents, as read


class Percentiles(Struct):
    """Ack latencies, µs (the bucket bound at or above each percentile, at most 5% above it,
    capped at the exact maximum); ``count``: the samples they are of."""

    count: Count
    p50: Count
    p90: Count
    p99: Count
    p999: Count
    max: Count


class Latency(Struct):
    """Percentiles of one latency, None without samples."""

    window: Percentiles | None
    """Over the last `servers.status.WINDOW` periods (about a minute)."""
    total: Percentiles | None
    """Since the process started."""


class RejectCount(Struct):
    """Rejects the TES sent for one `engine.types.RejectReason`."""

    reason: str
    """The reason's name (``PRICE_OFF_TICK``)."""
    code: int
    """The reason's number (3002)."""
    count: Count
    """Since the TES started."""
    rate: float
    """Per second, over the TES's last status interval."""


class Document(Struct):
    """The keys of every status file (`servers.status`)."""

    role: str
    name: str
    pid: Pid
    started: Instant
    """ns since the epoch."""
    updated: Instant
    """ns since the epoch."""
    period: Annotated[float, msgspec.Meta(gt=0)]
    """s between documents."""
    interval: Annotated[float, msgspec.Meta(ge=0)]
    """s the rates are over."""
    stopped: Instant | None = None
    """ns since the epoch: the process stopped cleanly then (None: it has not)."""
    counters: dict[str, Count] = {}
    """Counts since the process started."""
    rates: dict[str, float] = {}
    """Per second, over ``interval``."""
    latency: dict[str, Latency] = {}
    rejects: list[RejectCount] = []


class JournalFigures(Struct):
    """An OBS's journal."""

    bytes: Count
    """Bytes written (the offset where the next record goes)."""
    unsynced_bytes: Count
    """Bytes written but not yet fsynced (what a machine crash could lose)."""
    discarded_bytes: Count
    """Bytes at the start freed after a snapshot."""
    unwritable: str | None = None
    """Why the journal refuses writes (a full disk), or None while it takes them."""


class Consumer(Struct):
    """A reader of a shard's journal stream (`servers.stream`): the recorder, a catching-up TES."""

    name: str
    acked: Count
    """The last sequence it acknowledged."""
    behind: Count
    """Entries journaled after it: ``journal last - acked``."""
    connected: bool
    left_behind: bool
    """It fell so far behind that the journal no longer waits for it."""


class MarketDataFigures(Struct):
    """An OBS's market data port (`servers.subscribers`)."""

    subscribers: Count
    """Connections following at least one symbol."""
    dropped: Count
    """Frames not sent because the connection's queue was full (since the start)."""
    refused: Count
    """Subscriptions refused TOO_MANY_SUBSCRIBERS (since the start)."""


class PortFigures(Struct):
    """A public port's connections (`servers.gate`)."""

    connections: Count
    """Connections it holds (one being shut down for the limit among them, for a moment)."""
    refused: Count
    """Connections shut down because it held its most (since the start)."""


class ObsDocument(Document):
    """An OBS's status file."""

    sequence: Count = 0
    """The last sequence journaled and executed."""
    journal: JournalFigures | None = None
    consumers: list[Consumer] = []
    market_data: MarketDataFigures | None = None
    connections: dict[str, PortFigures] = {}
    """Each public port's (market data, snapshot)."""
    tes: list[int] = []
    """The TES ids that said Hello."""


class ShardLink(Struct):
    """The TES's link to one shard."""

    connected: bool
    ready: bool
    """The shard answered the TES's Hello: its symbols trade."""


class TesDocument(Document):
    """The TES's status file."""

    sessions: Count = 0
    """Client sessions logged on."""
    awaiting: Count = 0
    """Orders routed to a book and not yet answered."""
    shards: dict[str, ShardLink] = {}
    connections: dict[str, PortFigures] = {}
    """The client port's."""


class Progress(Struct):
    """The recorder's progress in one shard's journal."""

    committed: Count
    """The last sequence both stores hold."""
    journal_last: Count
    """The journal's last sequence, as the recorder last heard."""
    behind: Count
    """Entries: ``journal_last - committed``."""
    seconds: float | None
    """s: how old the newest recorded entry's exchange time was when the recorder wrote (None: none yet)."""
    pending: Count
    """Entries read but not yet written."""


# ================================================================ what the page shows


class Process(Struct):
    """One process, as its status file shows it."""

    role: str
    """``OBS``, ``TES`` or ``recorder``."""
    name: str
    """The shard's name, ``TES``, ``recorder``."""
    path: str
    """Its status file."""
    state: State
    detail: str
    """One sentence: why this state (how long ago it was last seen, what is wrong with the file)."""
    pid: int | None = None
    """Its process id, as its file says (None: no readable file)."""
    started: int | None = None
    """ns since the epoch."""
    updated: int | None = None
    """ns since the epoch: when it last wrote (was last seen)."""
    seen_ago: float | None = None
    """s since ``updated``."""
    counters: dict[str, int] = {}
    """Counts since it started."""
    rates: dict[str, float] = {}
    """Per second, over its last status interval."""

    @property
    def up(self) -> bool:
        return self.state == "up"


class PortConnections(Struct):
    """One public port of a server, as its status file said."""

    server: str
    """``OBS <shard>`` or ``TES``."""
    port: str
    connections: int
    refused: int


class ShardLag(Struct):
    """How far the journal of one shard is written, made durable and recorded."""

    name: str
    journal_last: int | None = None
    """The last sequence journaled: the OBS's figure, else the recorder's (None: neither known)."""
    journal_bytes: int | None = None
    """Bytes written to the journal file."""
    unsynced_bytes: int | None = None
    """Bytes written but not yet fsynced."""
    unwritable: str | None = None
    """Why the journal refuses writes, or None."""
    recorder_committed: int | None = None
    """The last sequence the recorder holds in both stores."""
    behind: int | None = None
    """Entries journaled and not yet recorded."""
    seconds_behind: float | None = None
    """s: 0 when nothing is behind, else the age of the newest recorded entry (now, from the
    recorder's last figure): what the stores are missing is at most this old."""
    consumers: list[Consumer] = []
    market_data: MarketDataFigures | None = None
    """The OBS's market data port (None: not known)."""


class Health(Struct):
    """The exchange as `gather` found it."""

    checked: int
    """ns since the epoch: when the files were read."""
    processes: list[Process]
    """Each shard's OBS (in configuration order), the TES, the recorder."""
    shards: list[ShardLag]
    ack_latency: Latency | None = None
    """The TES's, µs: from reading a client frame carrying an order to sending its first answer."""
    rejects: list[RejectCount] = []
    """The TES's rejects by reason, by code."""
    ports: list[PortConnections] = []
    """The public ports of the servers with a readable status file: each OBS's, then the TES's."""


# ================================================================ reading them


def status_paths(config: Config) -> list[tuple[str, str, Path]]:
    """(role, name, status file) of every process, in the order of `Health.processes`."""
    paths = [("OBS", shard.name, Path(shard.journal_dir) / STATUS_FILE) for shard in config.shards]
    paths.append(("TES", "TES", Path(config.tes.journal_dir) / STATUS_FILE))
    paths.append(("recorder", "recorder", Path(config.recorder.status_file)))
    return paths


def gather(config: Config) -> Health:
    """Read every process's status file now (see the module docstring)."""
    now = time.time_ns()
    processes, documents, raw = [], {}, {}
    for role, name, path in status_paths(config):
        kind = ObsDocument if role == "OBS" else TesDocument if role == "TES" else Document
        process, document, data = _read(role, name, path, kind, now)
        processes.append(process)
        documents[(role, name)] = document
        raw[(role, name)] = data
    tes = documents[("TES", "TES")]
    recorder, recorder_data = documents[("recorder", "recorder")], raw[("recorder", "recorder")]
    shards = [_shard_lag(shard.name, documents[("OBS", shard.name)], recorder, recorder_data, now)
              for shard in config.shards]
    ports = [PortConnections(f"{role} {name}" if role == "OBS" else role, port, figures.connections, figures.refused)
             for (role, name), document in documents.items() if role != "recorder" and document is not None
             for port, figures in document.connections.items()]
    return Health(now, processes, shards, tes.latency.get("ack") if tes is not None else None,
                  tes.rejects if tes is not None else [], ports)


def _read(role: str, name: str, path: Path, kind: type[Document], now: int
          ) -> tuple[Process, Document | None, dict | None]:
    """The process as its file shows it; its document and the file's JSON object (None if unreadable)."""
    where = str(path)
    try:
        text = path.read_bytes()
    except FileNotFoundError:
        return Process(role, name, where, "never started", f"no status file {path}"), None, None
    except OSError as exc:
        return Process(role, name, where, "unreadable", f"cannot read {path}: {exc.strerror or exc}"), None, None
    try:
        data = msgspec.json.decode(text)
        if not isinstance(data, dict):
            raise msgspec.ValidationError(f"expected a JSON object, not {type(data).__name__}")
        document = msgspec.convert(data, kind)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        return Process(role, name, where, "unreadable", f"{path} is not a status document: {exc}"), None, None
    seen_ago = max(0.0, (now - document.updated) / 1e9)
    state, detail = _judge(document, seen_ago)
    process = Process(role, name, where, state, detail, document.pid, document.started, document.updated, seen_ago,
                      document.counters, document.rates)
    return process, document, data


def _judge(document: Document, seen_ago: float) -> tuple[State, str]:
    pid = document.pid
    if document.stopped is not None:
        return "stopped", f"stopped cleanly {_ago(seen_ago)}"
    alive = _alive(pid, document.started)
    if alive and seen_ago <= STALE_PERIODS * document.period:
        return "up", f"process {pid}, last seen {_ago(seen_ago)}"
    if not alive:
        return "not running", (f"process {pid} is gone without stopping cleanly (killed or crashed); last seen "
                               f"{_ago(seen_ago)}")
    return "not responding", f"process {pid} is running but has written nothing for {seen_ago:.0f} s"


def _ago(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s ago"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min ago"
    return f"{seconds / 3600:.1f} h ago"


def _alive(pid: int, started: int) -> bool:
    """Whether process ``pid`` runs and is the one that started at ``started`` (ns since the
    epoch). Signal 0 checks existence (a process of another user exists too); on Linux,
    ``/proc`` tells a zombie (dead, not yet reaped) and a younger process that took the pid."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as file:
            fields = file.read().rsplit(")", 1)[1].split()
        with open("/proc/stat") as file:
            boot = next(int(line.split()[1]) for line in file if line.startswith("btime "))
    except (OSError, ValueError, IndexError, StopIteration):
        return True
    if fields[0] == "Z":
        return False
    began = boot + int(fields[19]) / os.sysconf("SC_CLK_TCK")
    return began <= started / 1e9 + PID_SLACK_S


def _shard_lag(name: str, obs: ObsDocument | None, recorder: Document | None, recorder_data: dict | None,
               now: int) -> ShardLag:
    progress = None
    if recorder is not None and name in recorder_data:
        try:
            progress = msgspec.convert(recorder_data[name], Progress)
        except msgspec.ValidationError:
            progress = None
    journal_last = obs.sequence if obs is not None else progress.journal_last if progress is not None else None
    lag = ShardLag(name, journal_last)
    if obs is not None:
        lag = msgspec.structs.replace(lag, consumers=obs.consumers, market_data=obs.market_data)
        if obs.journal is not None:
            lag = msgspec.structs.replace(lag, journal_bytes=obs.journal.bytes,
                                          unsynced_bytes=obs.journal.unsynced_bytes,
                                          unwritable=obs.journal.unwritable)
    if progress is None:
        return lag
    behind = max(0, journal_last - progress.committed)
    if not behind:
        seconds = 0.0
    elif progress.seconds is not None:
        seconds = progress.seconds + max(0.0, (now - recorder.updated) / 1e9)
    else:
        seconds = None
    return msgspec.structs.replace(lag, recorder_committed=progress.committed, behind=behind, seconds_behind=seconds)
