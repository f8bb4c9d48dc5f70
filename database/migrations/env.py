"""Alembic's entry point for the transactional database's migrations.

`database.store.migrate` runs them on a connection it passes in ``config.attributes``
(inside its transaction, under its lock). From a shell, for writing a new migration
after changing `database.models`::

    alembic -c database/alembic.ini revision --autogenerate -m "what changed"

runs them against ``sqlalchemy.url`` of that file (or ``-x url=...``). On SQLite,
migrations alter tables in batch mode (copy and rename), as SQLite's ALTER TABLE requires.
"""

from alembic import context
from sqlalchemy import create_engine

from database.models import Base


def run(connection) -> None:
    context.configure(connection=connection, target_metadata=Base.metadata,
                      render_as_batch=connection.dialect.name == "sqlite")
    with context.begin_transaction():
        context.run_migrations()


connection = context.config.attributes.get("connection")
if connection is not None:
    run(connection)
else:
    url = context.get_x_argument(as_dictionary=True).get("url") or context.config.get_main_option("sqlalchemy.url")
    engine = create_engine(url)
    with engine.connect() as own:
        run(own)
    engine.dispose()
