"""Trading phases on the book server: the schedules of the configuration and the volatility guard.

The books implement the phases (`engine.types.Phase`, ``book.set_phase``); this module decides
when the OBS changes them by itself (`Planner.due`, asked at the start of a loop turn). Every
change is a `BookSetPhase` the OBS sequences and journals like any command (`servers.obs`), so
recovery replays each one where it happened, and the state needed to go on after a restart
(`PhaseState`) is derived from the journaled commands by `servers.shard.Shard.execute` and kept
in the shard's snapshots.

Schedules
---------
An instrument's schedule (``[[phases.instruments]]``) lists times of day in ``phases.time_zone``
and the phase from each on, every day (``closed`` is the book's HALTED). A scheduled change is
due when its time has passed after the book's last phase command (`Schedule.current` against
`PhaseState.since`): live, at the turn its time comes; after a restart, at the first turn for a
change missed while the OBS was down. So an operator's change stands until the schedule's next
time, and a book already in the scheduled phase gets no command. An operator halt (HALTED with
reason OPERATOR) is never undone by the schedule: the instrument stays halted until ``resume``
(which hands it back to its schedule) or another operator phase command.

Volatility interruptions
------------------------
After a command (not a phase command) whose fills printed, in CONTINUOUS, outside a band of
the instrument (`Guard`: static around the previous close, dynamic around the last trade before
the command), the interruption is owed (`PhaseState.owed`); the OBS sequences
``BookSetPhase(CALL, VOLATILITY, until=time + volatility_call_s)`` right after that command, or,
had it crashed in between, at the first turn after the restart. When ``until`` passes it
sequences ``BookSetPhase(phase, VOLATILITY)`` with the phase the schedule says then (CONTINUOUS
without one): the uncross. A phase command's own prints (the uncross, stops it triggers) never
interrupt: the uncross is the price discovery the interruption was for. Any other phase
command ends an interruption (the operator's, or a scheduled change; a scheduled call due while
the book is in the interruption's call makes none, and the interruption ends into that call).
"""

import datetime
import zoneinfo

import msgspec

from config.settings import SCHEDULED_PHASES, Config, InstrumentPhasesConfig
from engine.types import Phase
from servers.protocol import BookSetPhase, PhaseReason

SECOND = 1_000_000_000
IDLE_NS = 60 * SECOND
"""Without a scheduled change or an interruption's end to come, `Planner.due` asks to be asked again
after this (any phase command, and any interruption owed, makes the OBS ask at its next turn)."""
OPERATOR, SCHEDULE, VOLATILITY = PhaseReason.OPERATOR, PhaseReason.SCHEDULE, PhaseReason.VOLATILITY
CONTINUOUS, CALL, HALTED = Phase.CONTINUOUS, Phase.CALL, Phase.HALTED


class PhaseState(msgspec.Struct, frozen=True):
    """What a symbol's phase changes need to go on, as its journaled commands left it (replaced,
    never changed in place, so a snapshot capture shares it safely)."""

    reason: PhaseReason = OPERATOR
    """The reason of the last accepted phase command."""
    since: int = 0
    """The exchange time of the last accepted phase command (0: none yet)."""
    until: int = 0
    """While a volatility interruption's call lasts: when it ends; else 0."""
    close: int | None = None
    """The last trade price when the previous trading day ended (`BookExpireDay`); None before."""
    owed: bool = False
    """A command printed outside a band and its interruption has not been sequenced yet."""

    def operator_halted(self, phase: Phase) -> bool:
        """Halted by the operator: the schedule leaves the book alone until ``resume``."""
        return phase == HALTED and self.reason == OPERATOR


class Guard:
    """An instrument's volatility bands (basis points; 0: off) and the length of its interruption."""

    __slots__ = ("static_bps", "dynamic_bps", "call_ns", "reference_price")

    def __init__(self, static_bps: int, dynamic_bps: int, call_s: int, reference_price: int) -> None:
        self.static_bps = static_bps
        self.dynamic_bps = dynamic_bps
        self.call_ns = call_s * SECOND
        self.reference_price = reference_price
        """The static band's centre before the first end of day."""

    def breached(self, prices: list[int], last_price: int | None, close: int | None) -> bool:
        """Whether any of ``prices`` (a command's fills) is outside a band: further than
        ``static_bps`` from ``close`` (``reference_price`` if None), or than ``dynamic_bps`` from
        ``last_price`` (the last trade before the command; no dynamic band before the first)."""
        if self.static_bps:
            centre = self.reference_price if close is None else close
            if any(abs(price - centre) * 10_000 > centre * self.static_bps for price in prices):
                return True
        if self.dynamic_bps and last_price is not None:
            return any(abs(price - last_price) * 10_000 > last_price * self.dynamic_bps for price in prices)
        return False

    def interruption(self, symbol: str, time: int) -> BookSetPhase:
        """The call of an interruption starting at exchange ``time``."""
        return BookSetPhase(symbol, CALL, VOLATILITY, time + self.call_ns)


class Schedule:
    """An instrument's daily schedule: ``(seconds after local midnight, phase)``, in order."""

    __slots__ = ("entries", "zone")

    def __init__(self, entries: list[tuple[int, Phase]], zone: zoneinfo.ZoneInfo) -> None:
        self.entries = entries
        self.zone = zone

    def current(self, now: int) -> tuple[int, Phase]:
        """(the time, ns, of the latest scheduled change at or before ``now``, its phase)."""
        return max(change for change in self._changes(now) if change[0] <= now)

    def next_change(self, now: int) -> int:
        """The time (ns) of the first scheduled change after ``now``."""
        return min(at for at, _ in self._changes(now) if at > now)

    def _changes(self, now: int) -> list[tuple[int, Phase]]:
        """The changes of the local days before, of and after ``now``'s (DST gaps and folds as
        `zoneinfo` resolves them)."""
        today = datetime.datetime.fromtimestamp(now / SECOND, self.zone).date()
        changes = []
        for offset in (-1, 0, 1):
            day = today + datetime.timedelta(days=offset)
            midnight = datetime.datetime(day.year, day.month, day.day, tzinfo=self.zone)
            for seconds, phase in self.entries:
                local = midnight + datetime.timedelta(seconds=seconds)
                changes.append((int(local.timestamp()) * SECOND, phase))
        return changes


class Planner:
    """Which phase commands of its own the OBS owes its books, and when to look again."""

    __slots__ = ("symbols", "schedules", "guards", "_in_force")

    def __init__(self, symbols: list[str], schedules: dict[str, Schedule], guards: dict[str, Guard]) -> None:
        self.symbols = symbols
        self.schedules = schedules
        self.guards = guards
        self._in_force: dict[str, int] = {}
        """Symbol -> the scheduled change (its time, ns) found already in force in its book."""

    def due(self, shard, now: int) -> tuple[list[BookSetPhase], int]:
        """The phase commands due at exchange time ``now`` in ``shard`` (`servers.shard.Shard`), at
        most one per symbol, and the time (ns) to look again. A symbol halted by the operator gets
        none; else a scheduled change whose time passed after the book's last phase command (none if
        the book is in that phase already), an interruption owed, or the end of an interruption's
        call, to the phase its schedule says then (CONTINUOUS without one)."""
        commands, again = [], now + IDLE_NS
        for symbol in self.symbols:
            state, phase = shard.phases[symbol], shard.feeds[symbol].book.phase
            schedule = self.schedules.get(symbol)
            if schedule is not None:
                again = min(again, schedule.next_change(now))
            if state.operator_halted(phase):
                continue
            if schedule is not None:
                at, scheduled = schedule.current(now)
                if at > state.since and at != self._in_force.get(symbol):
                    if scheduled != phase:
                        commands.append(BookSetPhase(symbol, scheduled, SCHEDULE))
                        continue
                    self._in_force[symbol] = at
            if symbol in shard.owed:
                commands.append(self.guards[symbol].interruption(symbol, now))
            elif state.until:
                if state.until <= now:
                    after = schedule.current(now)[1] if schedule is not None else CONTINUOUS
                    commands.append(BookSetPhase(symbol, after, VOLATILITY))
                else:
                    again = min(again, state.until)
        return commands, again


def schedule_of(config: Config, symbol: str) -> Schedule | None:
    """``symbol``'s schedule, None if it has none."""
    instrument = config.phases.of(symbol)
    if instrument is None or not instrument.schedule:
        return None
    return _schedule(instrument, zoneinfo.ZoneInfo(config.phases.time_zone))


def schedules(config: Config, symbols: list[str]) -> dict[str, Schedule]:
    """The schedules of those of ``symbols`` that have one."""
    found = {symbol: schedule_of(config, symbol) for symbol in symbols}
    return {symbol: schedule for symbol, schedule in found.items() if schedule is not None}


def guards(config: Config, symbols: list[str]) -> dict[str, Guard]:
    """The volatility guards of those of ``symbols`` that have a band."""
    found = {}
    for symbol in symbols:
        phases, instrument = config.phases.of(symbol), config.instrument(symbol)
        if phases is not None and (phases.static_band_bps or phases.dynamic_band_bps):
            found[symbol] = Guard(phases.static_band_bps, phases.dynamic_band_bps, phases.volatility_call_s,
                                  instrument.reference_price)
    return found


def scheduled_phase(config: Config, symbol: str, now: int) -> Phase:
    """The phase ``symbol``'s schedule says at ``now`` (CONTINUOUS without a schedule)."""
    schedule = schedule_of(config, symbol)
    return CONTINUOUS if schedule is None else schedule.current(now)[1]


def _schedule(instrument: InstrumentPhasesConfig, zone: zoneinfo.ZoneInfo) -> Schedule:
    return Schedule([(entry.seconds, SCHEDULED_PHASES[entry.phase]) for entry in instrument.schedule], zone)
