"""``python main.py history trader ...``: one trader's records from the transactional database.

Actions (``--start`` / ``--end``: ISO 8601 times, UTC unless they carry an offset, the range
``[start, end)``, each side open when left out; ``--csv``: CSV instead of a table)::

    history trader orders TRADER [--symbol SYM]       the orders it entered in the range
    history trader executions TRADER [--symbol SYM]   its fills in the range
    history trader daily TRADER [--symbol SYM]        per UTC day (starting in the range) and symbol:
                                                      fills, volume, notional, realized, unrealized, P&L
    history trader positions TRADER                   its positions now, marked to the last trades

Prices and money are in currency units (``price / price_scale``), exact; a table shows each
price with its instrument's decimals (averages two more), CSV every digit. Bad input (an
unknown trader or symbol, an unparseable time, a range that ends before it starts, an
unreachable database) raises `HistoryError` or argparse's error, which ``main`` prints as one
``error: ...`` line with exit status 2. This module imports only the standard library and
the tick store's argument parsers at load time.
"""

import argparse
import csv
import sys
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from database.tables import aligned
from database.ticks.cli import HistoryError, timestamp

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
NS_PER_DAY = 86_400 * 10**9
WIDER = 2
"""Extra decimals of averages in a table."""


def add_parser(actions, run) -> None:
    """The ``trader`` action of ``history`` on its ``actions`` (argparse subparsers), running ``run``."""
    trader = actions.add_parser("trader", help="one trader's orders, executions, daily P&L or positions "
                                               "(the transactional database)")
    kinds = trader.add_subparsers(dest="kind", metavar="KIND", required=True)
    for name, text in (("orders", "the orders it entered in the range"),
                       ("executions", "its fills in the range"),
                       ("daily", "per UTC day and symbol: fills, volume, notional, realized, unrealized, P&L"),
                       ("positions", "its positions now, marked to the last trades")):
        sub = kinds.add_parser(name, help=text)
        sub.add_argument("trader", metavar="TRADER")
        if name != "positions":
            sub.add_argument("--symbol", metavar="SYM", help="only this instrument")
            sub.add_argument("--start", type=timestamp, help="ISO 8601 time, UTC unless it has an offset "
                                                             "(default: open)")
            sub.add_argument("--end", type=timestamp, help="the range's end, excluded (default: open)")
        sub.add_argument("--csv", action="store_true", help="CSV on stdout instead of a table")
        sub.set_defaults(run=run)


def run(args: argparse.Namespace, config) -> int:
    """Run the parsed ``history trader`` action against the configured database."""
    from database import queries
    from database.reference import load_reference, traders
    from database.store import StoreUnavailable, open_database, transaction

    start = getattr(args, "start", None)
    end = getattr(args, "end", None)
    if start is not None and end is not None and end < start:
        raise HistoryError(f"the range ends ({_iso(end)}) before it starts ({_iso(start)})")
    first, last = _days(start, end)
    start = -(2**63) if start is None else start
    end = 2**63 - 1 if end is None else end
    try:
        engine = open_database(config)
        try:
            with transaction(engine, write=False) as connection:
                if args.trader not in {trader_id for trader_id, _, _ in traders(connection)}:
                    raise HistoryError(f"unknown trader {args.trader!r}")
                scales = {instrument.symbol: instrument.price_scale for instrument in load_reference(connection)[0]}
                symbol = getattr(args, "symbol", None)
                if symbol is not None and symbol not in scales:
                    raise HistoryError(f"unknown symbol {symbol!r} (instruments: {', '.join(sorted(scales))})")
                if args.kind == "orders":
                    names, rows = _orders(queries.orders(connection, args.trader, start, end, symbol), scales)
                elif args.kind == "executions":
                    names, rows = _executions(queries.executions(connection, args.trader, start, end, symbol),
                                              scales)
                elif args.kind == "daily":
                    names, rows = _daily(queries.daily(connection, args.trader, first, last, symbol), scales)
                else:
                    names, rows = _positions(queries.positions(connection, args.trader), scales)
        finally:
            engine.dispose()
    except StoreUnavailable as exc:
        raise HistoryError(str(exc)) from None
    write(names, rows, sys.stdout, args.csv)
    return 0


Cell = tuple[str, str]
"""(text in a table, text in CSV)."""


def _orders(records, scales) -> tuple[list[str], list[list[Cell]]]:
    names = ["order_id", "symbol", "side", "type", "tif", "price", "quantity", "status", "filled", "leaves",
             "avg_price", "created", "updated"]
    rows = [[_text(r.order_id), _text(r.symbol), _text(r.side.name.lower()), _text(r.order_type.name.lower()),
             _text(r.time_in_force.name), _price(r.price, scales.get(r.symbol)) if r.price else _text(""),
             _text(r.quantity), _text(r.status.value), _text(r.filled), _text(r.leaves),
             _average(r.average_price, scales.get(r.symbol)) if r.filled else _text(""),
             _text(_iso(r.created_time)), _text(_iso(r.updated_time))] for r in records]
    return names, rows


def _executions(records, scales) -> tuple[list[str], list[list[Cell]]]:
    names = ["time", "symbol", "trade_id", "order_id", "side", "price", "quantity", "liquidity"]
    rows = [[_text(_iso(r.time)), _text(r.symbol), _text(r.trade_id), _text(r.order_id), _text(r.side.name.lower()),
             _price(r.price, scales.get(r.symbol)), _text(r.quantity), _text("taker" if r.aggressor else "maker")]
            for r in records]
    return names, rows


def _daily(records, scales) -> tuple[list[str], list[list[Cell]]]:
    names = ["day", "symbol", "trades", "bought", "sold", "notional", "realized", "unrealized", "pnl"]
    rows = [[_text(r.day.isoformat()), _text(r.symbol), _text(r.trades), _text(r.bought), _text(r.sold),
             *(_price(value, scales.get(r.symbol)) for value in (r.notional, r.realized, r.unrealized, r.pnl))]
            for r in records]
    return names, rows


def _positions(records, scales) -> tuple[list[str], list[list[Cell]]]:
    names = ["symbol", "position", "avg_price", "cash", "realized", "last", "unrealized"]
    rows = [[_text(r.symbol), _text(r.quantity),
             _average(r.average_price, scales.get(r.symbol)) if r.quantity else _text(""),
             _price(r.cash, scales.get(r.symbol)), _price(r.realized, scales.get(r.symbol)),
             _price(r.last_price, scales.get(r.symbol)) if r.last_price is not None else _text(""),
             _price(r.unrealized, scales.get(r.symbol))] for r in records]
    return names, rows


def write(names: list[str], rows: list[list[Cell]], out, as_csv: bool) -> None:
    """CSV, or a table (numbers to the right) with a closing ``(N rows)`` line."""
    if as_csv:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(names)
        writer.writerows([[cell[1] for cell in row] for row in rows])
        return
    cells = [[cell[0] for cell in row] for row in rows]
    numeric = [bool(cells) and all(_is_number(row[index]) for row in cells if row[index])
               for index in range(len(names))]
    print("\n".join(aligned(names, cells, numeric)), file=out)


def _text(value) -> Cell:
    return str(value), str(value)


def _price(ticks: int, scale: int | None) -> Cell:
    """An amount in ticks (or ticks x lots) in currency units: the instrument's decimals, exact in both."""
    if scale is None:
        return str(ticks), str(ticks)
    value = Decimal(ticks) / Decimal(scale)
    return f"{value:.{_decimals(scale)}f}", str(value)


def _average(ticks: float, scale: int | None) -> Cell:
    value = ticks / (scale or 1)
    return f"{value:.{_decimals(scale or 1) + WIDER}f}", repr(value)


def _decimals(scale: int) -> int:
    digits = len(str(scale)) - 1
    return digits if 10**digits == scale else 6


def _is_number(text: str) -> bool:
    try:
        Decimal(text)
    except ArithmeticError:
        return False
    return True


def _days(start: int | None, end: int | None) -> tuple[date, date]:
    """The first and last UTC days that start in [start, end) (None: open)."""
    first = date.min if start is None else EPOCH.date() + timedelta(days=-(-start // NS_PER_DAY))
    last = date.max if end is None else EPOCH.date() + timedelta(days=(end - 1) // NS_PER_DAY)
    return first, last


def _iso(nanoseconds: int) -> str:
    seconds, fraction = divmod(nanoseconds, 10**9)
    moment = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{moment}.{fraction:09d}Z"
