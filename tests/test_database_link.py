"""`servers.database_link` in process: where the TES's reference data comes from, and the
session records it queues for the database, with the database up and down."""

import time

import pytest
from procs import free_port

from config.settings import load_config
from database import reference
from database import sessions as session_records
from database.store import open_store, transaction
from servers import database_link
from servers.auth import hash_api_key
from servers.database_link import DatabaseLink
from servers.protocol import EndReason


def config_of(url, poll_ms=50):
    return load_config(environ={"EXCHANGE__DATABASE__URL": url, "EXCHANGE__TES__REFERENCE_POLL_MS": str(poll_ms)})


@pytest.fixture
def sqlite(tmp_path):
    return f"sqlite:///{tmp_path / 'exchange.sqlite'}"


def down():
    return f"postgresql://postgres@127.0.0.1:{free_port()}/test"


def test_the_first_load_seeds_the_database_and_a_change_is_offered_once(tmp_path, sqlite):
    config = config_of(sqlite)
    link = DatabaseLink(config, tmp_path)
    try:
        assert (link.reference.version, link.reference.source) == (1, "the database")
        assert [i.symbol for i in link.reference.instruments] == sorted(i.symbol for i in config.instruments)
        assert link.reference.keys["alice"] == [next(t.api_key_hash for t in config.traders if t.trader_id == "alice")]
        assert link.latest() is None
        engine = open_store(sqlite)
        with transaction(engine) as connection:
            reference.add_key(connection, "alice", hash_api_key("second", iterations=1000))
        engine.dispose()
        deadline = time.monotonic() + 5
        while (offered := link.latest()) is None:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert offered.version == 2 and len(offered.keys["alice"]) == 2 and link.reference is offered
        time.sleep(0.2)
        assert link.latest() is None, "the same version is not offered twice"
    finally:
        link.close()
    assert (tmp_path / database_link.CACHE_NAME).exists()


def test_without_the_database_the_copy_then_the_configuration_is_used(tmp_path, sqlite, caplog):
    DatabaseLink(config_of(sqlite), tmp_path).close()
    link = DatabaseLink(config_of(down()), tmp_path)
    link.close()
    assert link.reference.version == 1 and link.reference.source.startswith("the copy in ")
    link = DatabaseLink(config_of(down()), tmp_path / "elsewhere")
    link.close()
    assert (link.reference.version, link.reference.source) == (0, "the configuration")
    assert "no copy of an earlier load" in caplog.text


def test_session_records_wait_for_the_database_within_a_bound(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(database_link, "SESSION_QUEUE", 4)
    link = DatabaseLink(config_of(down()), tmp_path)
    try:
        keys = [link.logged_on(f"t{n}", n) for n in range(6)]
        assert keys == [1, 2, 3, 4, 5, 6]
        assert link.dropped.count == 2 and "session records dropped" in caplog.text
    finally:
        started = time.monotonic()
        link.close()
        assert time.monotonic() - started < 6


def test_session_records_are_written_in_order(tmp_path, sqlite):
    link = DatabaseLink(config_of(sqlite), tmp_path)
    first = link.logged_on("alice", 10)
    link.logged_off(first, 20, EndReason.REPLACED)
    second = link.logged_on("alice", 20)
    link.close()
    link = DatabaseLink(config_of(sqlite), tmp_path)
    link.logged_off(second, 30, EndReason.LOGOUT)  # a new link knows nothing of the old one's sessions
    link.close()
    engine = open_store(sqlite)
    with transaction(engine, write=False) as connection:
        records = session_records.sessions(connection, "alice", 0, 100)
    engine.dispose()
    assert [(s.logon_time, s.logout_time, s.end_reason) for s in records] == [
        (10, 20, EndReason.REPLACED), (20, None, None)]
