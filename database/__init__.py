"""Storage: the transactional database (this package's modules) and the tick store (`database.ticks`).

The transactional database holds what the exchange must remember as records: the
reference data (instruments, traders, API-key hashes, risk limits), every order with its
state history, every execution, positions and daily P&L per account, sessions, and how far
the recorder got in each shard's journal. SQLite (embedded, the default) or PostgreSQL,
through SQLAlchemy 2.x; the schema is `database.models`, created and upgraded by the
Alembic migrations in ``database/migrations`` whenever `database.store.open_store` opens it.

Modules: `store` (URLs, engines, migrations, `StoreUnavailable`), `models` (the schema),
`recording` (journal entries into rows, idempotently), `writing` (bulk writes per engine),
`reference` (reference data and its version), `queries` (what the portal and ``history
trader`` ask), `sessions` (the TES's sessions as records), `admin` (``python main.py
admin``) and `history` (``python main.py history trader``).
"""
