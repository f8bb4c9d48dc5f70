"""The tick store: trades and quotes captured from the order book servers' journals.

`schema` holds the tables, the capture (`schema.rows_from_entries`, `schema.record`) and
the backends' interface; every backend has the one entry point
``upd(table, rows, shard, through_sequence)`` (kdb+tick's ``.u.upd``), idempotent by
``(shard, sequence)``, and ``watermark(table, shard)``:

- `store.TickStore`, the embedded default: Parquet files in kdb+'s date-partitioned
  layout, queried with DuckDB (`queries.TickHistory`, ``python main.py history``);
- `kdb.KdbTickerplant`, publishing to a kdb+ tickerplant (kx's tick.q with ``schema.q``).

`schema.open_backend` picks one from the configuration. Importing this package imports
nothing: DuckDB, pyarrow and pykx come with the modules that need them.
"""
