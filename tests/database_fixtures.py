"""Database fixtures: `engine` is a fresh, migrated database of each engine in turn.

SQLite: a file in the test's ``tmp_path``. PostgreSQL: the server at EXCHANGE_TEST_POSTGRES_URL
(default ``postgresql://postgres@127.0.0.1:5432/test``, as on the development machines and CI);
each test session makes its own database there and drops it at the end, and each test starts
with its tables emptied. Without a reachable server the PostgreSQL cases are skipped, saying
why. Import the fixtures a test module uses from here.
"""

import os
import uuid

import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from database.models import Base
from database.store import database_url, open_store

POSTGRES_URL = os.environ.get("EXCHANGE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
ENGINES = ["sqlite", "postgresql"]


@pytest.fixture(scope="session")
def postgres_url():
    """The URL of a database made for this test session (dropped afterwards), migrated to head."""
    server = make_url(POSTGRES_URL)
    conninfo = server.set(drivername="postgresql").render_as_string(hide_password=False)
    try:
        admin = psycopg.connect(conninfo, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        pytest.skip(f"no PostgreSQL server at {server.render_as_string()} (set EXCHANGE_TEST_POSTGRES_URL): "
                    f"{' '.join(str(exc).split())}")
    name = f"exchange_test_{uuid.uuid4().hex[:12]}"
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            url = database_url(server.set(database=name).render_as_string(hide_password=False))
            open_store(url).dispose()
            yield url
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def postgres_engine(postgres_url):
    engine = open_store(postgres_url)
    yield engine
    engine.dispose()


def _empty(engine) -> None:
    """Delete every row (faster than TRUNCATE on small tables) and restart the id sequences."""
    with engine.begin() as connection:
        for table in reversed(Base.metadata.sorted_tables):
            connection.execute(table.delete())
        for table in Base.metadata.sorted_tables:
            for column in table.primary_key.columns:
                if column.autoincrement is True:
                    connection.execute(text(f"ALTER SEQUENCE {table.name}_{column.name}_seq RESTART"))


@pytest.fixture
def sqlite_url(tmp_path):
    return database_url(f"sqlite:///{tmp_path / 'exchange.sqlite'}")


@pytest.fixture(params=ENGINES)
def url(request, tmp_path):
    """A database URL of each engine in turn, its database empty and migrated."""
    if request.param == "sqlite":
        return database_url(f"sqlite:///{tmp_path / 'exchange.sqlite'}")
    _empty(request.getfixturevalue("postgres_engine"))
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def engine(request, url):
    """An engine on an empty, migrated database of each engine in turn (PostgreSQL's is the session's)."""
    if url.get_backend_name() == "postgresql":
        yield request.getfixturevalue("postgres_engine")
        return
    engine = open_store(url)
    yield engine
    engine.dispose()
