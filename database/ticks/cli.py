"""``python main.py history ...``: the tick store's queries from the command line.

Actions (``--start`` / ``--end``: ISO 8601 times, UTC unless they carry an offset, the range
``[start, end)``, each side open when left out; ``--csv``: CSV instead of a table)::

    history ticks SYM [--table trade|quote]   every trade (or quote) of SYM
    history bars SYM --interval 5m            OHLCV bars (intervals: 500ms, 1s, 5m, 1h, 1d ...)
    history vwap [SYM]                        volume-weighted average price per symbol
    history aj SYM                            each trade with the quote prevailing at it
    history daily [SYM]                       per symbol and day: volume, trades, VWAP, spread
    history compact DATE                      compact a finished day's files (the writer's lock)

Bad input (an unknown symbol, an interval like ``0s`` or ``banana``, an unparseable time, a
range that ends before it starts) raises `HistoryError` or argparse's error, which ``main``
prints as one ``error: ...`` line with exit status 2. This module imports only the standard
library at load time: DuckDB and pyarrow are imported when an action runs.
"""

import argparse
import csv
import math
import re
import sys
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from database.tables import aligned

UNITS = {"ns": 1, "us": 10**3, "ms": 10**6, "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9, "d": 86_400 * 10**9}
_INTERVAL = re.compile(r"^(\d+)(ns|us|ms|s|m|h|d)$")
_FRACTION = re.compile(r"^(?P<head>.*?\d{2}:\d{2}:\d{2})\.(?P<digits>\d+)(?P<zone>.*)$")
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
WIDER = {"vwap": 2, "spread": 2}
"""Extra decimals, beyond the instrument's, for averages."""


class HistoryError(ValueError):
    """A request the user can fix; ``main`` prints it as one ``error:`` line."""


def interval(text: str) -> int:
    """``5m`` as nanoseconds: a positive integer and a unit (ns, us, ms, s, m, h, d)."""
    match = _INTERVAL.match(text.strip())
    if not match or int(match[1]) == 0:
        raise argparse.ArgumentTypeError(
            f"bad interval {text!r}: a positive whole number and a unit, one of {', '.join(UNITS)} (e.g. 5m)")
    return int(match[1]) * UNITS[match[2]]


def timestamp(text: str) -> int:
    """An ISO 8601 date or time as nanoseconds since the epoch; UTC when it has no offset."""
    fraction = 0
    match = _FRACTION.match(text.strip())
    head = text.strip()
    if match:
        digits = match["digits"]
        if len(digits) > 9:
            raise argparse.ArgumentTypeError(f"bad time {text!r}: more than nanosecond precision")
        fraction = int(digits.ljust(9, "0"))
        head = match["head"] + match["zone"]
    try:
        moment = datetime.fromisoformat(head)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"bad time {text!r}: expected ISO 8601, e.g. 2024-05-01T09:30:00 (UTC) or 2024-05-01T09:30:00+02:00"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    seconds = (moment - EPOCH) // timedelta(seconds=1)
    return seconds * 10**9 + fraction


def day(text: str) -> date:
    """A date as ``2024-05-01`` or kdb+'s ``2024.05.01``."""
    try:
        return date.fromisoformat(text.replace(".", "-"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad date {text!r}: expected 2024-05-01 (or 2024.05.01)") from None


def add_parser(commands, run):
    """The ``history`` command and its actions on ``commands`` (argparse subparsers), running ``run``.

    Returns the subparsers of its actions, for other ``history`` actions to join them.
    """
    parser = commands.add_parser("history", help="query the tick store: ticks, bars, vwap, aj, daily; compact a day")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    def action(name, help, symbol="required"):
        sub = actions.add_parser(name, help=help)
        if symbol == "required":
            sub.add_argument("symbol", metavar="SYM", help="the instrument")
        elif symbol == "optional":
            sub.add_argument("symbol", metavar="SYM", nargs="?", help="the instrument (default: every one)")
        sub.add_argument("--start", type=timestamp, help="ISO 8601 time, UTC unless it has an offset (default: open)")
        sub.add_argument("--end", type=timestamp, help="the range's end, excluded (default: open)")
        sub.add_argument("--csv", action="store_true", help="CSV on stdout instead of a table")
        sub.set_defaults(run=run)
        return sub

    ticks = action("ticks", "every trade (or quote) of a symbol, by time")
    ticks.add_argument("--table", choices=["trade", "quote"], default="trade", help="default: trade")
    bars = action("bars", "OHLCV bars, each starting at a multiple of the interval since the epoch")
    bars.add_argument("--interval", type=interval, required=True, help="bar length: 500ms, 1s, 5m, 1h, 1d ...")
    action("vwap", "volume-weighted average price per symbol over the range", symbol="optional")
    action("aj", "each trade with the quote prevailing at it (kdb+ aj)")
    action("daily", "per symbol and UTC day: volume, trades, VWAP and average spread", symbol="optional")
    compact = actions.add_parser("compact", help="rewrite a finished day's files as one per table (the store's "
                                                 "writer lock: not while the recorder writes)")
    compact.add_argument("date", type=day, metavar="DATE", help="the day, 2024-05-01")
    compact.set_defaults(run=run)
    return actions


def run(args: argparse.Namespace, config) -> int:
    """Run the parsed ``history`` action against the store of ``config`` (a `config.settings.Config`)."""
    ticks = config.ticks
    if ticks.kdb_host:
        raise HistoryError(f"ticks.kdb_host is set: ticks go to the kdb+ tickerplant at {ticks.kdb_host}:"
                           f"{ticks.kdb_port}; query them there (history reads the embedded store)")
    if args.action == "compact":
        return _compact(ticks.root, args.date)
    symbol = args.symbol
    if symbol is not None and config.instrument(symbol) is None:
        known = ", ".join(i.symbol for i in config.instruments)
        raise HistoryError(f"unknown symbol {symbol!r} (instruments: {known})")
    if args.start is not None and args.end is not None and args.end < args.start:
        raise HistoryError(f"the range ends ({_iso(args.end)}) before it starts ({_iso(args.start)})")
    from database.ticks.queries import TickHistory

    history = TickHistory(ticks.root)
    try:
        if args.action == "ticks":
            result = history.ticks(args.table, symbol, args.start, args.end)
        elif args.action == "bars":
            result = history.bars(symbol, args.interval, args.start, args.end)
        elif args.action == "vwap":
            result = history.vwap(symbol, args.start, args.end)
        elif args.action == "aj":
            result = history.trades_with_quotes(symbol, args.start, args.end)
        else:
            result = history.daily(symbol, args.start, args.end)
    finally:
        history.close()
    decimals = {i.symbol: _decimals(i.price_scale) for i in config.instruments}
    write(result, sys.stdout, decimals, as_csv=args.csv)
    return 0


def write(result, out, decimals: dict[str, int], as_csv: bool = False) -> None:
    """``result`` (a pyarrow Table) as CSV, or as a table with a closing ``(N rows)`` line.

    Times are ISO 8601 UTC to the nanosecond; NaN and nulls are empty. In a table, prices
    have their instrument's decimals (averages two more); CSV has every digit.
    """
    names = result.column_names
    columns = [_cells(result.column(name), name, result, decimals, as_csv) for name in names]
    rows = list(zip(*columns, strict=True)) if columns else []
    if as_csv:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(names)
        writer.writerows(rows)
        return
    numeric = [_is_number(result.schema.field(name).type) for name in names]
    print("\n".join(aligned(names, rows, numeric)), file=out)


def _compact(root: str, when: date) -> int:
    from database.ticks.store import StoreBusy, TickStore

    try:
        with TickStore(root) as store:
            counts = store.compact(when)
    except StoreBusy as exc:
        raise HistoryError(f"{exc}: stop the recorder first, or let it compact") from None
    except OSError as exc:
        raise HistoryError(f"cannot compact {when}: {exc.strerror or exc}") from None
    print(" ".join(f"{table}: {rows} rows" for table, rows in counts.items()))
    return 0


def _cells(column, name: str, result, decimals: dict[str, int], as_csv: bool) -> list[str]:
    import pyarrow as pa

    kind = column.type
    values = column.to_pylist()
    if pa.types.is_timestamp(kind):
        stamps = column.cast(pa.int64()).to_pylist()
        return ["" if stamp is None else _iso(stamp) for stamp in stamps]
    if pa.types.is_date(kind):
        return [value.isoformat() for value in values]
    if pa.types.is_floating(kind):
        if as_csv:
            return ["" if value is None or math.isnan(value) else repr(value) for value in values]
        symbols = result.column("sym").to_pylist()
        extra = WIDER.get(name, 0)
        return ["" if value is None or math.isnan(value) else f"{value:.{decimals.get(symbol, 2) + extra}f}"
                for value, symbol in zip(values, symbols, strict=True)]
    return ["" if value is None else str(value) for value in values]


def _is_number(kind) -> bool:
    import pyarrow as pa

    return pa.types.is_integer(kind) or pa.types.is_floating(kind)


def _decimals(price_scale: int) -> int:
    """Decimals that show every price of this scale exactly (6 when it is not a power of ten)."""
    exponent = -Decimal(1 / Decimal(price_scale)).normalize().as_tuple().exponent
    return exponent if 10**exponent % price_scale == 0 else 6


def _iso(nanoseconds: int) -> str:
    seconds, fraction = divmod(nanoseconds, 10**9)
    moment = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{moment}.{fraction:09d}Z"
