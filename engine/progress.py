"""How far long-running work has come: a bar on a terminal, plain lines otherwise.

Work is reported per chunk (tens of thousands of messages, a batch of records, one run of a
benchmark), never per message, so reporting costs nothing measurable; a benchmark reports
between its timed calls, never inside one. Everything goes to stderr, so stdout stays what a
command prints (its table, its JSON last line).

`task` shows one task of a known size:

- stderr a terminal: a `rich` bar, redrawn at each report (no refresh thread: it would take
  the GIL from the timed loops) and left on the screen when the task ends. `rich` is imported
  only then, so importing `engine` stays light.
- otherwise: a line ``DESCRIPTION: DONE of TOTAL UNIT (P%)[, NOTE]`` at a report at least
  `INTERVAL_S` seconds after the task began or after the last line, and a last one (without
  the note) when the task ends if lines were written and the count has moved since. A task
  shorter than `INTERVAL_S` writes nothing.

Tasks run one at a time. Servers draw no bars: their recovery loops log a line when a
`Throttle` is due, looking at it once every `RECORDS_PER_CHECK` records.
"""

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Protocol

INTERVAL_S = 5.0
"""Least seconds between two plain progress lines or two recovery log lines."""

RECORDS_PER_CHECK = 10_000
"""Journal records a server's recovery replays between two looks at its `Throttle`."""

Report = Callable[[int], None]
"""What long engine functions take to report: called after each chunk with how much is done so
far (a `Task`'s ``update``)."""


class Throttle:
    """`due` is true at most once every ``interval_s`` seconds, the first time ``interval_s``
    after it was made (0: every time)."""

    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self._next = time.monotonic() + interval_s

    def due(self) -> bool:
        now = time.monotonic()
        if now < self._next:
            return False
        self._next = now + self.interval_s
        return True


def percent(done: int, total: int) -> int:
    """``done`` as a whole percentage of ``total`` (100 for an empty total)."""
    return 100 * done // total if total > 0 else 100


class Task(Protocol):
    """One task of ``total`` steps being shown. ``done`` only grows."""

    done: int

    def update(self, done: int) -> None:
        """``done`` of the total are finished."""

    def advance(self, steps: int = 1) -> None:
        """``steps`` more are finished."""

    def note(self, text: str) -> None:
        """What is running now, shown after the count until the next note."""


class _Lines:
    """A `Task` written as plain lines, at most one every `INTERVAL_S` seconds."""

    def __init__(self, description: str, total: int, unit: str) -> None:
        self.description, self.total, self.unit = description, total, unit
        self.done, self._note, self._written = 0, "", None
        self._throttle = Throttle(INTERVAL_S)

    def update(self, done: int) -> None:
        self.done = done
        if self._throttle.due():
            self._write(self._note)

    def advance(self, steps: int = 1) -> None:
        self.update(self.done + steps)

    def note(self, text: str) -> None:
        self._note = text

    def close(self) -> None:
        if self._written is not None and self._written != self.done:
            self._write("")

    def _write(self, note: str) -> None:
        line = f"{self.description}: {self.done:,} of {self.total:,} {self.unit} ({percent(self.done, self.total)}%)"
        print(f"{line}, {note}" if note else line, file=sys.stderr, flush=True)
        self._written = self.done


class _Bar:
    """A `Task` drawn as a `rich` bar on stderr, redrawn at each report."""

    def __init__(self, description: str, total: int, unit: str) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TaskProgressColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.done = 0
        # Only stderr is redirected above the bar: stdout must never end up on stderr.
        self._progress = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn(unit),
            TaskProgressColumn(), TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[note]}"),
            console=Console(stderr=True), auto_refresh=False, redirect_stdout=False,
        )
        self._task = self._progress.add_task(description, total=total, note="")

    def update(self, done: int) -> None:
        self.done = done
        self._draw(completed=done)

    def advance(self, steps: int = 1) -> None:
        self.update(self.done + steps)

    def note(self, text: str) -> None:
        self._draw(note=text)

    def close(self) -> None:
        if self._progress.live.is_started:
            self._progress.update(self._task, note="")
            self._progress.stop()

    def _draw(self, **changes) -> None:
        """Apply ``changes`` and redraw; the first report puts the bar on the screen, so a command
        that fails before reporting leaves none."""
        self._progress.update(self._task, **changes)
        if self._progress.live.is_started:
            self._progress.refresh()
        else:
            self._progress.start()


@contextmanager
def task(description: str, total: int, unit: str = "") -> Iterator[Task]:
    """Show a task of ``total`` ``unit`` on stderr until the block ends: a bar if stderr is a
    terminal, plain lines otherwise (module docstring)."""
    shown = _Bar(description, total, unit) if sys.stderr.isatty() else _Lines(description, total, unit)
    try:
        yield shown
    finally:
        shown.close()
