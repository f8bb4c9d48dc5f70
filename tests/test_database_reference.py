"""Reference data in the database (`database.reference`) and ``python main.py admin`` (`database.admin`):
seeding from the configuration, every change bumping the version, keys stored only as hashes."""

import io
import os
import subprocess
import sys

import pytest
from procs import REPO

import main
from config.settings import load_config
from database import reference
from database.reference import ReferenceError
from database.store import open_database, open_store, transaction
from servers.auth import hash_api_key, verify_api_key
from servers.processes import free_port

pytest_plugins = ["database_fixtures"]
FAST = 1_000
"""PBKDF2 iterations for hashes made by tests (the stored form is the same, only cheaper)."""


@pytest.fixture
def config(tmp_path):
    return load_config(environ={"EXCHANGE__DATABASE__URL": f"sqlite:///{tmp_path / 'exchange.sqlite'}"})


@pytest.fixture
def seeded(config):
    engine = open_database(config)
    yield engine
    engine.dispose()


def test_first_start_seeds_the_configuration_once(engine):
    config = load_config()
    with transaction(engine) as connection:
        assert reference.reference_version(connection) == 0
        assert reference.load_reference(connection) == ([], [])
        assert reference.seed(connection, config)
        assert not reference.seed(connection, config)
        assert reference.reference_version(connection) == 1
        assert reference.load_reference(connection) == (
            sorted(config.instruments, key=lambda i: i.symbol), sorted(config.traders, key=lambda t: t.trader_id))


def test_every_change_bumps_the_version_once(seeded):
    changes = [
        lambda c: reference.put_instrument(c, "ZED", tick_size=5, lot_size=10, min_quantity=10),
        lambda c: reference.put_instrument(c, "ZED", reference_price=500),
        lambda c: reference.put_trader(c, "zoe", max_notional=5_000),
        lambda c: reference.put_trader(c, "zoe", max_open_orders=3),
        lambda c: reference.add_key(c, "zoe", hash_api_key("zoe-1", FAST)),
        lambda c: reference.rotate_key(c, "zoe", hash_api_key("zoe-2", FAST)),
        lambda c: reference.revoke_key(c, 1),
    ]
    for number, change in enumerate(changes, start=2):
        with transaction(seeded) as connection:
            change(connection)
        with transaction(seeded, write=False) as connection:
            assert reference.reference_version(connection) == number


def test_set_adds_with_defaults_then_changes_only_the_given_fields(seeded):
    with transaction(seeded) as connection:
        added, new = reference.put_instrument(connection, "ZED", tick_size=5, lot_size=10, min_quantity=10)
        changed, again = reference.put_instrument(connection, "ZED", reference_price=500)
        limits, _ = reference.put_trader(connection, "alice", max_open_orders=7)
        instruments, traders = reference.load_reference(connection)
    assert (new, again) == (True, False)
    assert added.max_quantity == 1_000_000 and added.reference_price == 10_000
    assert changed == instruments[-1]
    assert (changed.tick_size, changed.lot_size, changed.min_quantity, changed.reference_price) == (5, 10, 10, 500)
    alice = traders[0]
    assert (alice.trader_id, alice.max_open_orders, alice.max_order_quantity) == ("alice", 7, 10_000)
    assert limits["max_open_orders"] == 7


@pytest.mark.parametrize("change, message", [
    (lambda c: reference.put_instrument(c, "ACME", tick_size=0), "tick_size: Expected `int` >= 1"),
    (lambda c: reference.put_instrument(c, "ACME", lot_size=3), "ACME: min/max quantity must be multiples"),
    (lambda c: reference.put_instrument(c, "acme!"), "symbol: Expected `str` matching regex"),
    (lambda c: reference.put_trader(c, "bob", max_notional=0), "max_notional: Expected `int` >= 1"),
    (lambda c: reference.put_trader(c, "x" * 65), "trader_id: Expected `str` of length <= 64"),
    (lambda c: reference.put_trader(c, "bob", stp_default="sometimes"), "stp_default: Invalid enum value .sometimes."),
    (lambda c: reference.put_instrument(c, "ACME", order_types=["limit", "twap"]), "order_types"),
    (lambda c: reference.add_key(c, "nobody", hash_api_key("k", FAST)), "no trader 'nobody'"),
    (lambda c: reference.add_key(c, "bob", "plain-text-key"), "not an API key hash"),
    (lambda c: reference.revoke_key(c, 99), "no active API key 99"),
])
def test_invalid_change_is_refused_and_changes_nothing(seeded, change, message):
    with transaction(seeded, write=False) as connection:
        before = reference.load_reference(connection), reference.reference_version(connection)
    with pytest.raises(ReferenceError, match=message):
        with transaction(seeded) as connection:
            change(connection)
    with transaction(seeded, write=False) as connection:
        assert (reference.load_reference(connection), reference.reference_version(connection)) == before


def test_rotation_keeps_one_key_and_revoked_traders_cannot_log_on(seeded):
    with transaction(seeded) as connection:
        extra = reference.add_key(connection, "bob", hash_api_key("bob-2", FAST))
        assert len(reference.active_key_hashes(connection)["bob"]) == 2
        new, revoked = reference.rotate_key(connection, "bob", hash_api_key("bob-3", FAST))
        hashes = reference.active_key_hashes(connection)
        bob = next(t for t in reference.load_reference(connection)[1] if t.trader_id == "bob")
        reference.revoke_key(connection, new)
        traders = [t.trader_id for t in reference.load_reference(connection)[1]]
    assert revoked == [2, extra]
    assert len(hashes["bob"]) == 1 and verify_api_key("bob-3", hashes["bob"][0])
    assert verify_api_key("bob-3", bob.api_key_hash)
    assert "bob" not in traders and "alice" in traders


# ---------------------------------------------------------------- python main.py admin, in process


def admin(capsys, config, monkeypatch, *argv, stdin=None) -> tuple[int, list[str], str]:
    """``main.py admin ARGV`` in this process: exit status, stdout lines, stderr."""
    monkeypatch.setenv("EXCHANGE__DATABASE__URL", config.database.url)
    if stdin is not None:
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    status = main.main(["admin", *argv])
    out, err = capsys.readouterr()
    return status, out.splitlines(), err


@pytest.mark.parametrize("argv, line", [
    (["version"], "reference version 1"),
    (["instrument", "set", "ZED", "--tick-size", "5", "--lot-size", "10", "--min-quantity", "10"],
     "instrument ZED added: tick_size 5, lot_size 10, min_quantity 10, max_quantity 1000000, price_band_bps 1000, "
     "price_scale 100, reference_price 10000, order_types limit,market,stop,stop-limit,iceberg,post-only,gtd, "
     "max_iceberg_slices 0, max_stop_distance_bps 0, allow_marketable_stops no (reference version 2)"),
    (["instrument", "set", "ACME", "--reference-price", "9000"],
     "instrument ACME changed: tick_size 1, lot_size 1, min_quantity 1, max_quantity 100000, price_band_bps 1000, "
     "price_scale 100, reference_price 9000, order_types limit,market,stop,stop-limit,iceberg,post-only,gtd, "
     "max_iceberg_slices 100, max_stop_distance_bps 1000, allow_marketable_stops no (reference version 2)"),
    (["instrument", "set", "ACME", "--order-types", "limit,gtd", "--max-iceberg-slices", "0",
      "--allow-marketable-stops"],
     "instrument ACME changed: tick_size 1, lot_size 1, min_quantity 1, max_quantity 100000, price_band_bps 1000, "
     "price_scale 100, reference_price 10000, order_types limit,gtd, max_iceberg_slices 0, "
     "max_stop_distance_bps 1000, allow_marketable_stops yes (reference version 2)"),
    (["trader", "set", "zoe", "--max-notional", "500"],
     "trader zoe added: account zoe, stp_default none, max_order_quantity 10000, max_notional 500, "
     "max_open_orders 1000, max_messages_per_second 1000, max_queries_per_second 20 (reference version 2)"),
    (["trader", "set", "alice", "--max-open-orders", "5"],
     "trader alice changed: account alice, stp_default none, max_order_quantity 10000, max_notional 100000000, "
     "max_open_orders 5, max_messages_per_second 1000, max_queries_per_second 20 (reference version 2)"),
    (["trader", "set", "alice", "--account", "desk", "--stp-default", "cancel-maker"],
     "trader alice changed: account desk, stp_default cancel-maker, max_order_quantity 10000, "
     "max_notional 100000000, max_open_orders 1000, max_messages_per_second 1000, max_queries_per_second 20 "
     "(reference version 2)"),
    (["key", "revoke", "2"], "key 2 of bob revoked (reference version 2)"),
])
def test_admin_change_prints_one_line(capsys, config, monkeypatch, argv, line):
    assert admin(capsys, config, monkeypatch, *argv) == (0, [line], "")


def test_admin_lists_print_tables(capsys, config, monkeypatch):
    status, lines, _ = admin(capsys, config, monkeypatch, "instrument", "list")
    assert (status, lines) == (0, [
        "symbol  tick_size  lot_size  min_quantity  max_quantity  price_band_bps  price_scale  reference_price  "
        "order_types                                         max_iceberg_slices  max_stop_distance_bps  "
        "allow_marketable_stops",
        "ACME            1         1             1        100000            1000          100            10000  "
        "limit,market,stop,stop-limit,iceberg,post-only,gtd                 100                   1000  no",
        "BOLT            5        10            10        100000            1000          100            25000  "
        "limit,market,stop,stop-limit,iceberg,post-only,gtd                  50                   1000  no",
        "(2 rows)",
    ])
    status, lines, _ = admin(capsys, config, monkeypatch, "trader", "list")
    assert lines[0].split() == ["trader", "account", "stp_default", "max_order_quantity", "max_notional",
                                "max_open_orders", "max_messages_per_second", "max_queries_per_second", "active_keys"]
    assert lines[1].split() == ["alice", "alice", "none", "10000", "100000000", "1000", "1000", "20", "1"]
    assert lines[-1] == "(9 rows)"
    status, lines, _ = admin(capsys, config, monkeypatch, "key", "list", "bob")
    assert lines[0].split() == ["key_id", "trader", "state", "created", "revoked"]
    assert lines[1].split()[:3] == ["2", "bob", "active"] and lines[-1] == "(1 rows)"


def test_admin_key_from_stdin_is_stored_as_its_hash_only(capsys, config, monkeypatch, seeded):
    status, lines, _ = admin(capsys, config, monkeypatch, "key", "rotate", "alice", "--stdin",
                             stdin="alice-new-key\n")
    assert (status, lines) == (0, ["key 10 added for alice; revoked 1 (reference version 2)"])
    with transaction(seeded, write=False) as connection:
        stored = reference.active_key_hashes(connection)["alice"]
    assert len(stored) == 1 and verify_api_key("alice-new-key", stored[0])
    assert "alice-new-key" not in stored[0]


@pytest.mark.parametrize("argv, stdin, message", [
    (["key", "add", "nobody"], None, "error: no trader 'nobody'"),
    (["key", "revoke", "99"], None, "error: no active API key 99"),
    (["key", "add", "bob", "--stdin"], "", "error: no key on standard input (one line expected)"),
    (["instrument", "set", "ACME", "--lot-size", "3"], None,
     "error: ACME: min/max quantity must be multiples of lot_size 3"),
])
def test_admin_bad_input_is_one_error_line(capsys, config, monkeypatch, argv, stdin, message):
    assert admin(capsys, config, monkeypatch, *argv, stdin=stdin) == (2, [], message + "\n")


def test_admin_bad_argument_is_one_error_line(capsys, config, monkeypatch):
    with pytest.raises(SystemExit) as exited:
        admin(capsys, config, monkeypatch, "trader", "set", "bob", "--max-notional", "0")
    assert exited.value.code == 2
    assert capsys.readouterr().err.splitlines() == [
        "error: argument --max-notional: must be a positive integer, got 0 (see main.py admin trader set --help)"]


# ---------------------------------------------------------------- python main.py admin, as a user runs it


def run_main(*argv, env_url, stdin=""):
    return subprocess.run([sys.executable, "main.py", *argv], cwd=REPO, input=stdin, capture_output=True,
                          text=True, timeout=60, env={**os.environ, "EXCHANGE__DATABASE__URL": env_url})


def test_admin_key_add_prints_a_key_once_that_logs_on(tmp_path):
    url = f"sqlite:///{tmp_path / 'exchange.sqlite'}"
    added = run_main("admin", "key", "add", "bob", env_url=url)
    assert added.returncode == 0 and added.stderr == ""
    line = added.stdout.strip()
    assert line.startswith("key 10 added for bob: ") and line.endswith(
        " (shown once: only its hash is stored) (reference version 2)")
    key = line.split(": ")[1].split(" ")[0]
    engine = open_store(url)
    with transaction(engine, write=False) as connection:
        hashes = reference.active_key_hashes(connection)["bob"]
    engine.dispose()
    assert len(hashes) == 2 and verify_api_key(key, hashes[0]) and key not in hashes[0]


def test_admin_with_the_database_down_is_one_error_line():
    failed = run_main("admin", "version", env_url=f"postgresql://postgres@127.0.0.1:{free_port()}/x")
    assert failed.returncode == 2 and failed.stdout == ""
    assert len(failed.stderr.splitlines()) == 1
    assert failed.stderr.startswith("error: the database postgresql+psycopg://postgres@127.0.0.1:")
    assert "is unavailable" in failed.stderr
