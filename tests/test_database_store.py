"""Opening the transactional database (`database.store`): URLs, engines, migrations against the models,
and a database that is down, goes away or is full: one `StoreUnavailable`, nothing half-written."""

import socket
import subprocess
import threading
from contextlib import contextmanager

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from journal_entries import mixed_entries, scenario
from sqlalchemy import func, select, text

from config.settings import ConfigError, load_config
from database import writing
from database.models import Base, Order, RecorderProgress
from database.recording import Applier
from database.store import DEFAULT_PATH, StoreUnavailable, database_url, open_store, transaction
from servers.processes import free_port

pytest_plugins = ["database_fixtures"]


def test_models_and_migrations_agree(engine):
    with engine.connect() as connection:
        assert compare_metadata(MigrationContext.configure(connection), Base.metadata) == []
        version = connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
    assert version == "0002"


def test_opening_again_keeps_what_is_there(url):
    first = open_store(url)
    Applier(first).apply("A", scenario())
    first.dispose()
    again = open_store(url)
    assert Applier(again).committed("A") == 13
    again.dispose()


def test_urls_default_to_sqlite_under_data_and_postgresql_to_psycopg():
    assert database_url("").render_as_string() == f"sqlite:///{DEFAULT_PATH}"
    assert database_url("postgresql://u:secret@db:5433/x").drivername == "postgresql+psycopg"
    assert database_url("sqlite:////var/lib/exchange.sqlite").database == "/var/lib/exchange.sqlite"


@pytest.mark.parametrize("url", ["mysql://root@localhost/x", "sqlite://", "postgres://x"])
def test_unsupported_url_is_refused(url):
    with pytest.raises(StoreUnavailable, match="not a database URL the exchange supports"):
        database_url(url)
    with pytest.raises(ConfigError, match=r"database\.url: Expected `str` matching regex"):
        load_config(environ={"EXCHANGE__DATABASE__URL": url})


def test_sqlite_runs_in_wal_mode(sqlite_url):
    engine = open_store(sqlite_url)
    with transaction(engine, write=False) as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    engine.dispose()


def test_closed_port_is_one_store_unavailable():
    url = f"postgresql://postgres:secret@127.0.0.1:{free_port()}/exchange"
    with pytest.raises(StoreUnavailable) as raised:
        open_store(url)
    message = str(raised.value)
    assert message.startswith(f"the database postgresql+psycopg://postgres:***@127.0.0.1:{url.split(':')[3]}")
    assert "Connection refused" in message and "\n" not in message and "secret" not in message


def test_server_going_away_is_one_store_unavailable_and_nothing_half_written(postgres_url):
    entries = mixed_entries(300)
    with Proxy(postgres_url.port or 5432) as proxy:
        engine = open_store(postgres_url.set(host="127.0.0.1", port=proxy.port))
        _empty(engine)
        applier = Applier(engine)
        applier.apply("A", entries[:100])

        proxy.stop()
        with pytest.raises(StoreUnavailable, match="is unavailable: .*(refused|closed|terminat)"):
            applier.apply("A", entries[100:200])
        proxy.start()

        assert applier.apply("A", entries[:300]) == 200
        with transaction(engine, write=False) as connection:
            assert connection.execute(select(RecorderProgress.sequence)).scalar() == 300
        engine.dispose()


def test_server_going_away_in_the_middle_of_a_copy_is_one_store_unavailable(postgres_url, monkeypatch):
    entries = mixed_entries(200)
    copying = writing._copying

    @contextmanager
    def copying_then_vanishing(cursor, table, columns):
        with copying(cursor, table, columns) as copy:
            if table == "order_events":  # open while the batch is translated
                proxy.stop()
            yield copy

    with Proxy(postgres_url.port or 5432) as proxy:
        engine = open_store(postgres_url.set(host="127.0.0.1", port=proxy.port))
        _empty(engine)
        applier = Applier(engine)
        applier.apply("A", entries[:100])
        with monkeypatch.context() as patch:
            patch.setattr(writing, "_copying", copying_then_vanishing)
            with pytest.raises(StoreUnavailable, match="is unavailable: "):
                applier.apply("A", entries[100:])
        proxy.start()
        assert applier.apply("A", entries) == 100
        assert applier.committed("A") == 200
        engine.dispose()


def test_full_disk_is_one_store_unavailable_and_nothing_half_written(tmp_path):
    directory = tmp_path / "small"
    directory.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=600k", "tmpfs", str(directory)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"mounting a small tmpfs needs root: {mounted.stderr.strip()}")
    try:
        engine = open_store(f"sqlite:///{directory / 'exchange.sqlite'}")
        entries = mixed_entries(3000)
        applier = Applier(engine)
        applied = 0
        with pytest.raises(StoreUnavailable, match="database or disk is full"):
            for start in range(0, len(entries), 100):
                applied += applier.apply("A", entries[start:start + 100])
        assert applied > 0
        with transaction(engine, write=False) as connection:
            assert connection.execute(select(RecorderProgress.sequence)).scalar() == applied
            assert connection.execute(select(func.max(Order.sequence))).scalar() <= applied
        engine.dispose()
    finally:
        subprocess.run(["umount", "-l", str(directory)], check=True)


def _empty(engine) -> None:
    with engine.begin() as connection:
        connection.execute(text(f"TRUNCATE {', '.join(t.name for t in Base.metadata.sorted_tables)}"))


class Proxy:
    """A TCP proxy on a free loopback port to ``target`` on 127.0.0.1: `stop` closes the port and every
    connection through it (the server seems gone), `start` opens the same port again."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.port = free_port()
        self.listener: socket.socket | None = None
        self.sockets: list[socket.socket] = []
        self.threads: list[threading.Thread] = []

    def __enter__(self) -> "Proxy":
        self.start()
        return self

    def __exit__(self, *_) -> None:
        self.stop()

    def start(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", self.port))
        self._spawn(self._accept, self.listener)

    def stop(self) -> None:
        for sock in [self.listener, *self.sockets]:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()
        self.sockets.clear()
        for thread in self.threads:
            thread.join(5)
        self.threads.clear()

    def _spawn(self, target, *args) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        self.threads.append(thread)
        thread.start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self.target))
            self.sockets += [client, server]
            self._spawn(self._pipe, client, server)
            self._spawn(self._pipe, server, client)

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
