"""Operator commands on a journal directory, a shard's or the TES's: ``python main.py journal
check|cut [--shard S | --tes]``.

Both work on the files alone: stop the server first, the shard's OBS or the TES (a running one
keeps appending at the offset it knows, so a cut under it would tear the journal apart). A
`JournalDirectory` says which: where it is, how its records and snapshots are read, and how the
messages name it.

``check`` reads, and never changes, ``discarded-before``, every snapshot and the journal
from its oldest readable byte (where the discarded records end), and says what recovery
would do with them: `check` returns the report's lines and a summary whose ``status`` is
``healthy``, ``warning`` (a torn tail the OBS will cut off, or a damaged snapshot it will
skip: nothing is lost) or ``damaged`` (the OBS refuses to start).

``cut`` is the way on from damage once the records after it are given up: it moves the
journal's bytes from a good record's end on into ``commands.log.cut-<offset>`` (`move_tail`,
fsynced) and cuts the journal there. Snapshots taken after that point hold the books of
records given up: they are renamed ``<snapshot>.cut-<offset>`` so that recovery,
which would skip them only until new records fill the journal past their offset, never
uses them.
"""

from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

from config.settings import ShardConfig, TesConfig
from servers.journal import (
    JOURNAL_FILE,
    DirectoryInUse,
    DirectoryLock,
    JournalDamaged,
    RecoveryError,
    beyond_the_journal,
    journal_size,
    move_tail,
    read_discarded,
    read_records,
    read_snapshot,
    snapshot_paths,
    zeros_after,
)
from servers.ledger import LEDGER_RECORD, ledger_snapshot_paths, read_ledger_snapshot
from servers.shard import Shard, decode_entry


class CutRefused(Exception):
    """The journal was left as it was: it cannot be cut there (the message says why)."""


class SnapshotFile(NamedTuple):
    path: Path
    sequence: int | None
    offset: int | None
    """The journal offset its successor records start at (None: unreadable)."""
    problem: str | None
    """Why recovery skips it, or refuses to start because of it (None: it would use it)."""
    refused: bool = False
    """Recovery, reaching it, refuses to start (it holds books of symbols not in the shard)."""


class JournalDirectory(NamedTuple):
    """A journal directory and its server: `shard_journal` or `tes_journal`."""

    label: str
    """How the report names it: ``shard A``, ``TES 1``."""
    server: str
    """The server that writes it, to stop first: ``OBS`` or ``TES``."""
    option: str
    """How ``journal cut`` names it: ``--shard A`` or ``--tes``."""
    directory: Path
    decode: Callable[[bytes], object]
    """A record's payload decoded (raising on one that is not a record's)."""
    snapshots: Callable[[Path, int], list[SnapshotFile]]
    """Every snapshot file in the directory, newest first, with whether recovery would use it,
    given the journal's size."""
    keys: dict
    """What the summary says it is: ``{"shard": "A"}`` or ``{"tes": 1}``."""


def shard_journal(shard: ShardConfig) -> JournalDirectory:
    """The journal directory of ``shard``'s OBS."""
    return JournalDirectory(f"shard {shard.name}", "OBS", f"--shard {shard.name}", Path(shard.journal_dir),
                            decode_entry, lambda directory, size: _snapshots(directory, shard.symbols, size),
                            {"shard": shard.name})


def tes_journal(tes: TesConfig) -> JournalDirectory:
    """The TES's journal directory (its ledger's journal and snapshots)."""
    return JournalDirectory(f"TES {tes.tes_id}", "TES", "--tes", Path(tes.journal_dir), LEDGER_RECORD,
                            _ledger_snapshots, {"tes": tes.tes_id})


def check(journal: JournalDirectory) -> tuple[list[str], dict]:
    """Read ``journal``'s directory: the report's lines and its summary (JSON-ready)."""
    directory = journal.directory
    path = directory / JOURNAL_FILE
    size = journal_size(directory)
    lines = [f"{journal.label}: journal directory {directory}"]
    try:
        discarded, discarded_problem = read_discarded(directory), None
    except RecoveryError as exc:
        discarded, discarded_problem = None, str(exc)
    if discarded_problem:
        lines.append(f"discarded-before: DAMAGED: {discarded_problem}")
    elif discarded:
        lines.append(f"discarded-before: byte {discarded} (the records before it were freed after a snapshot)")
    snapshots = journal.snapshots(directory, size)
    for snapshot in snapshots:
        if snapshot.problem:
            verdict = "recovery refuses to start on it" if snapshot.refused else "recovery skips it"
            lines.append(f"{snapshot.path.name}: {verdict}: {snapshot.problem}")
        else:
            lines.append(f"{snapshot.path.name}: sequence {snapshot.sequence}, journal byte {snapshot.offset}")
    readable = [snapshot for snapshot in snapshots if snapshot.problem is None]
    if discarded is None and not readable:
        lines.append(f"{JOURNAL_FILE}: not read: where its kept records begin is unknown")
        read = _Journal(None, 0, None, None, None, None)
    else:
        start = discarded if discarded is not None else min(s.offset for s in readable)
        sequence = 0 if start == 0 else next((s.sequence for s in readable if s.offset == start), None)
        read = _read_journal(directory, start, sequence, journal.decode)
        span = f" (sequences {read.first}..{read.last})" if read.records else ""
        lines.append(f"{JOURNAL_FILE}: {size} bytes; {read.records} good records from byte {start}{span}, "
                     f"ending at byte {read.end}")
    damage = read.damage
    torn = size - read.end if damage is None and read.end is not None else 0
    if torn and zeros_after(path, read.end):
        lines.append(f"room written ahead: {torn} zero bytes after byte {read.end} (a {journal.server} that did not "
                     "stop cleanly left them; the next one writes its records there)")
        torn = 0
    if torn:
        lines.append(f"torn tail: {torn} bytes after byte {read.end} in which no valid record starts (what a "
                     f"crash during a write leaves); the {journal.server} moves them to {JOURNAL_FILE}.torn-{read.end} "
                     "and cuts them off when it starts")
    if damage is not None:
        lines.append(f"DAMAGED: {damage.message(journal.server, journal.option)}")
    chosen = next((s for s in snapshots if s.problem is None or s.refused), None)
    refusal = _refusal(chosen, discarded, damage)
    origin = f"snapshot {chosen.sequence} (journal byte {chosen.offset})" if chosen else "empty books"
    lines.append(f"recovery: refuses to start: {refusal}" if refusal else f"recovery: starts from {origin}")
    if damage is not None or refusal:
        status = "damaged"
    elif torn or any(s.problem for s in snapshots):
        status = "warning"
    else:
        status = "healthy"
    lines.append(f"status: {status}")
    summary = {
        **journal.keys,
        "directory": str(directory),
        "status": status,
        "size": size,
        "discarded_before": discarded,
        "start": read.start,
        "end": read.end,
        "records": read.records,
        "first_sequence": read.first,
        "last_sequence": read.last,
        "torn_bytes": torn,
        "damage": None if damage is None else {
            "offset": damage.offset,
            "expected_sequence": damage.expected,
            "problem": damage.problem,
            "good_records": damage.good,
            "next_valid": None if damage.following is None else {
                "offset": damage.following[0],
                "sequence": damage.following[1],
            },
            "bytes_after": damage.size - damage.offset,
        },
        "snapshots": [
            {"file": s.path.name, "sequence": s.sequence, "offset": s.offset, "problem": s.problem} for s in snapshots
        ],
        "recovery": {"snapshot": None if chosen is None or refusal else chosen.sequence, "refuses": refusal},
    }
    return lines, summary


class _Journal(NamedTuple):
    """What `check` read of the journal file."""

    start: int | None
    """Where reading began (None: not read, that being unknown)."""
    records: int
    first: int | None
    last: int | None
    end: int | None
    """Where the good records end."""
    damage: JournalDamaged | None


def _read_journal(directory: Path, start: int, sequence: int | None, decode: Callable[[bytes], object]) -> _Journal:
    records, first, last, end = 0, None, None, start
    try:
        for record in read_records(directory, start, sequence, decode):
            records, last, end = records + 1, record.sequence, record.end
            first = first or last
    except JournalDamaged as exc:
        return _Journal(start, records, first, last, end, exc)
    return _Journal(start, records, first, last, end, None)


def _refusal(chosen: "SnapshotFile | None", discarded: int | None, damage: JournalDamaged | None) -> str | None:
    """Why recovery would refuse to start from snapshot ``chosen`` (None: empty books); None if it would not."""
    if chosen is not None and chosen.refused:
        return f"{chosen.path.name}: {chosen.problem}"
    if discarded is None:
        return "discarded-before is damaged"
    offset = chosen.offset if chosen else 0
    if offset < discarded:
        return f"the records before byte {discarded} were discarded and no readable snapshot at or after it remains"
    if damage is not None and damage.offset >= offset:
        return f"the journal is damaged at byte {damage.offset}"
    return None


def cut(journal: JournalDirectory, offset: int) -> tuple[list[str], dict]:
    """Move ``journal``'s bytes from ``offset`` on to ``commands.log.cut-<offset>`` and cut it
    there; the report's lines and summary. `CutRefused` unless ``offset`` is where a good record
    ends (or where the readable records start) and the cut journal can be recovered, and unless
    no process (its server) holds the journal directory."""
    directory = journal.directory
    path = directory / JOURNAL_FILE
    if not path.exists():
        raise CutRefused(f"no journal {path}")
    try:
        lock = DirectoryLock(directory, "the journal directory")
    except DirectoryInUse as exc:
        raise CutRefused(f"{exc}: stop the {journal.server} first") from None
    try:
        return _cut(journal, directory, path, offset)
    finally:
        lock.release()


def _cut(journal: JournalDirectory, directory: Path, path: Path, offset: int) -> tuple[list[str], dict]:
    size = path.stat().st_size
    if offset >= size:
        raise CutRefused(f"byte {offset} is not before the end of {path} ({size} bytes): nothing to cut")
    if zeros_after(path, offset):
        raise CutRefused(f"only zeros follow byte {offset} of {path} (room written ahead): nothing to cut")
    try:
        discarded = read_discarded(directory)
    except RecoveryError as exc:
        raise CutRefused(str(exc)) from None
    if offset < discarded:
        raise CutRefused(f"byte {offset} is before byte {discarded}, where the records kept after a snapshot begin")
    kept, before, after = None, discarded, None
    try:
        for record in read_records(directory, discarded, None if discarded else 0, journal.decode):
            if record.end > offset:
                after = record.end
                break
            kept, before = record.sequence, record.end
    except JournalDamaged:
        pass
    if before != offset:
        nearest = f"byte {before}" + (f" or byte {after}" if after else "")
        raise CutRefused(f"byte {offset} of {path} is not the end of a good record (the nearest: {nearest})")
    snapshots = journal.snapshots(directory, size)
    stale = [s for s in snapshots if s.offset is not None and s.offset > offset]
    if discarded and not any(s.problem is None and discarded <= s.offset <= offset for s in snapshots):
        raise CutRefused(f"the records before byte {discarded} were discarded and no readable snapshot between "
                         f"it and byte {offset} would remain: the {journal.server} could not recover the cut journal")
    side, count = move_tail(path, offset, "cut")
    for snapshot in stale:
        snapshot.path.rename(snapshot.path.with_name(f"{snapshot.path.name}.cut-{offset}"))
    lines = [f"moved {count} bytes of {path} from byte {offset} on into {side}; the journal now "
             + (f"ends after sequence {kept}" if kept is not None else "holds no record")]
    lines += [f"set aside {s.path.name} (sequence {s.sequence}, past the cut) as {s.path.name}.cut-{offset}"
              for s in stale]
    summary = {
        **journal.keys,
        "journal": str(path),
        "cut_at": offset,
        "bytes": count,
        "side_file": str(side),
        "last_sequence": kept,
        "snapshots_set_aside": [s.path.name for s in stale],
    }
    return lines, summary


def _snapshots(directory: Path, symbols: list[str], size: int) -> list[SnapshotFile]:
    """Every snapshot file, newest first, and whether recovery would restore it."""
    found = []
    for path in snapshot_paths(directory) if directory.is_dir() else []:
        try:
            snapshot = read_snapshot(path)
        except (OSError, ValueError) as exc:
            found.append(SnapshotFile(path, None, None, str(exc)))
            continue
        try:
            Shard.restore(symbols, snapshot)
        except ValueError as exc:
            found.append(SnapshotFile(path, snapshot.sequence, snapshot.journal_offset, str(exc)))
            continue
        except RecoveryError as exc:
            found.append(SnapshotFile(path, snapshot.sequence, snapshot.journal_offset, str(exc), refused=True))
            continue
        found.append(_usable(path, snapshot.sequence, snapshot.journal_offset, size))
    return found


def _ledger_snapshots(directory: Path, size: int) -> list[SnapshotFile]:
    """Every ledger snapshot file, newest first, and whether the TES's recovery would restore it."""
    found = []
    for path in ledger_snapshot_paths(directory):
        try:
            state = read_ledger_snapshot(path)
        except (OSError, ValueError) as exc:
            found.append(SnapshotFile(path, None, None, str(exc)))
            continue
        found.append(_usable(path, state.sequence, state.journal_offset, size))
    return found


def _usable(path: Path, sequence: int, offset: int, size: int) -> SnapshotFile:
    """A snapshot that reads well: recovery skips it only if the journal (``size`` bytes) ends
    before its offset (`beyond_the_journal`)."""
    return SnapshotFile(path, sequence, offset, beyond_the_journal(offset, size))
