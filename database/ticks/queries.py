"""Queries over the embedded tick store (`database.ticks.store`), in DuckDB SQL.

Every query takes a symbol (or None: every symbol) and a half-open range of exchange time
``[start, end)`` in nanoseconds since the Unix epoch, UTC (None: open on that side), and
returns a `pyarrow.Table`, ordered as documented. Times are ``timestamp[ns, UTC]``, prices
currency units, sizes lots. kdb+'s names for the same idea are given with each.

Only the date directories the range touches are read: their files are listed by
`table_files` and handed to DuckDB's ``read_parquet``, which prunes row groups further by
their ``time`` statistics. (DuckDB's own hive partitioning needs ``key=value`` directory
names; the store keeps kdb+'s plain ``2024.05.01``, so the listing does the date pruning.)
A file removed by a concurrent compaction between the listing and the read makes the read
fail; the query is then listed and run again (`RETRIES`).

Per-trader volume and P&L are not here: trades in the tick store carry no accounts. They
live in the transactional database (`database.queries`, ``python main.py history trader``).
"""

from datetime import date
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa

from database.ticks.schema import DAY_NS, TABLES, arrow_schema
from database.ticks.store import table_files

RETRIES = 5


class TickHistory:
    """Read-only queries over the tick store at ``root``; takes no lock, never blocks the writer.

    Parameters
    ----------
    root
        The store's directory (`config.settings.TicksConfig.root`).
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self._db = duckdb.connect()
        self._db.execute("SET TimeZone = 'UTC'")
        self._db.execute("SET enable_progress_bar = false")
        for table in TABLES:
            self._db.register(f"empty_{table}", arrow_schema(table).empty_table())

    def close(self) -> None:
        self._db.close()

    def ticks(self, table: str, sym: str | None, start: int | None = None, end: int | None = None) -> pa.Table:
        """Every row of ``table`` ("trade" or "quote") for ``sym`` in the range, by time then sequence."""
        if table not in TABLES:
            raise ValueError(f"no tick table {table!r} (tables: {', '.join(TABLES)})")
        order = "time, sequence, trade_id" if table == "trade" else "time, sequence"
        return self._run(
            f"SELECT * FROM {{{table}}} WHERE {_where(sym, start, end)} ORDER BY sym, {order}", sym, start, end
        )

    def bars(self, sym: str | None, interval: int, start: int | None = None, end: int | None = None) -> pa.Table:
        """OHLCV bars of ``interval`` nanoseconds (kdb+ ``select ... by interval xbar time``).

        A bar's ``time`` is its start, ``floor(time / interval) * interval`` since the epoch
        (so day bars start at midnight UTC); only intervals with trades have a bar. ``open``
        and ``close`` are the prices of the bar's first and last trade by trade number.
        Columns: sym, time, open, high, low, close, volume, trades; ordered by sym, time.
        """
        if interval <= 0:
            raise ValueError(f"interval must be positive, got {interval}")
        return self._run(
            f"""
            SELECT sym, make_timestamp_ns(bucket)::TIMESTAMPTZ_NS AS time, open, high, low, close, volume, trades
            FROM (
                SELECT sym, (epoch_ns(time) // {interval}) * {interval} AS bucket,
                       arg_min(price, trade_id) AS open, max(price) AS high, min(price) AS low,
                       arg_max(price, trade_id) AS close, sum(size)::BIGINT AS volume, count(*) AS trades
                FROM {{trade}} WHERE {_where(sym, start, end)}
                GROUP BY sym, bucket
            )
            ORDER BY sym, time
            """,
            sym, start, end,
        )

    def vwap(self, sym: str | None, start: int | None = None, end: int | None = None) -> pa.Table:
        """Volume-weighted average price over the range, per symbol (kdb+ ``size wavg price``).

        Columns: sym, vwap, volume, trades; one row per symbol that traded, by sym.
        """
        return self._run(
            f"""
            SELECT sym, sum(price * size) / sum(size) AS vwap, sum(size)::BIGINT AS volume, count(*) AS trades
            FROM {{trade}} WHERE {_where(sym, start, end)}
            GROUP BY sym ORDER BY sym
            """,
            sym, start, end,
        )

    def trades_with_quotes(self, sym: str | None, start: int | None = None, end: int | None = None) -> pa.Table:
        """Each trade in the range with the quote prevailing at it (kdb+ ``aj[`sym`time; trade; quote]``).

        The prevailing quote is the symbol's last quote at or before the trade's time; among
        quotes at the same time, the last in sequence order, as kdb+'s aj takes the last in
        table order. A command's trades and its quote share its time, so a trade is matched
        with the top of book after the command that made it. Quotes are looked for from
        midnight UTC of the range's first day (as kdb+'s aj within a date partition), so a
        day's trades before its first quote have NaN bid and ask, 0 sizes and a null
        ``quote_time``.

        Exchange time never goes back within a shard (the OBS stamps each command with the
        later of its clock and the previous stamp), so a shard's sequence order is its
        (time, sequence) order: the join takes, for the trade's symbol and shard, the last
        quote whose sequence is at or below the trade's (DuckDB's ASOF JOIN on one integer).

        Columns: the trade's time, sym, price, size, trade_id, side, then bid, ask, bsize,
        asize, quote_time; ordered by sym, time, trade_id.
        """
        quote_start = None if start is None else start // DAY_NS * DAY_NS
        return self._run(
            f"""
            SELECT t.time, t.sym, t.price, t.size, t.trade_id, t.side,
                   coalesce(q.bid, 'NaN'::DOUBLE) AS bid, coalesce(q.ask, 'NaN'::DOUBLE) AS ask,
                   coalesce(q.bsize, 0) AS bsize, coalesce(q.asize, 0) AS asize, q.time AS quote_time
            FROM (SELECT * FROM {{trade}} WHERE {_where(sym, start, end)}) t
            ASOF LEFT JOIN (
                SELECT time, sym, shard, sequence, bid, ask, bsize, asize
                FROM {{quote}} WHERE {_where(sym, quote_start, end)}
            ) q
            ON t.sym = q.sym AND t.shard = q.shard AND t.sequence >= q.sequence
            ORDER BY t.sym, t.time, t.trade_id
            """,
            sym, quote_start, end,
        )

    def daily(self, sym: str | None, start: int | None = None, end: int | None = None) -> pa.Table:
        """Per symbol and UTC day: volume, trade count, VWAP and average spread.

        The average spread is the mean of ``ask - bid`` over the day's two-sided quotes
        (each top-of-book change counts once; not time-weighted); NaN for a day without
        one, as ``vwap`` is NaN for a day with quotes but no trades.
        Columns: date, sym, volume, trades, vwap, spread; ordered by date, sym.
        """
        where = _where(sym, start, end)
        return self._run(
            f"""
            WITH t AS (
                SELECT time::DATE AS date, sym, sum(size)::BIGINT AS volume, count(*) AS trades,
                       sum(price * size) / sum(size) AS vwap
                FROM {{trade}} WHERE {where} GROUP BY ALL
            ), q AS (
                SELECT time::DATE AS date, sym, avg(ask - bid) AS spread
                FROM {{quote}} WHERE {where} AND bsize > 0 AND asize > 0 GROUP BY ALL
            ), d AS (
                SELECT DISTINCT time::DATE AS date, sym FROM {{quote}} WHERE {where}
                UNION SELECT date, sym FROM t
            )
            SELECT d.date, d.sym, coalesce(t.volume, 0)::BIGINT AS volume, coalesce(t.trades, 0)::BIGINT AS trades,
                   coalesce(t.vwap, 'NaN'::DOUBLE) AS vwap, coalesce(q.spread, 'NaN'::DOUBLE) AS spread
            FROM d LEFT JOIN t USING (date, sym) LEFT JOIN q USING (date, sym)
            ORDER BY d.date, d.sym
            """,
            sym, start, end,
        )

    def _run(self, sql: str, sym: str | None, start: int | None, end: int | None) -> pa.Table:
        """``sql`` with ``{trade}`` / ``{quote}`` standing for the files of the range's days."""
        first = None if start is None else _day(start)
        last = None if end is None else _day(end - 1)
        parameters = {"sym": sym} if sym is not None else {}
        for attempt in range(RETRIES):
            sources = {table: self._source(table, first, last) for table in TABLES if f"{{{table}}}" in sql}
            try:
                return self._db.sql(sql.format(**sources), params=parameters).to_arrow_table()
            except duckdb.IOException:
                if attempt == RETRIES - 1:
                    raise

    def _source(self, table: str, first: date | None, last: date | None) -> str:
        files = table_files(self.root, table, first, last)
        if not files:
            return f"empty_{table}"
        listed = ", ".join("'" + str(path).replace("'", "''") + "'" for path in files)
        return f"read_parquet([{listed}])"


def _where(sym: str | None, start: int | None, end: int | None) -> str:
    conditions = ["true"]
    if sym is not None:
        conditions.append("sym = $sym")
    if start is not None:
        conditions.append(f"time >= make_timestamp_ns({int(start)})::TIMESTAMPTZ_NS")
    if end is not None:
        conditions.append(f"time < make_timestamp_ns({int(end)})::TIMESTAMPTZ_NS")
    return " AND ".join(conditions)


def _day(nanoseconds: int) -> date:
    return np.datetime64(nanoseconds // DAY_NS, "D").item()
