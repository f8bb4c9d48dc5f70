"""Reference data in the database: instruments, traders, their risk limits and API keys.

The database holds the exchange's reference data once it has been seeded: `seed` copies the
configuration's instruments and traders (with their key hashes and limits) into an empty
database, on first start; afterwards ``python main.py admin`` changes it (`database.admin`)
and the configuration's lists are no longer read.

Every change runs in one transaction that also adds 1 to `ReferenceVersion`, so a server
can poll `reference_version` (one primary-key read) and, when it moved, `load_reference`
again: it returns the instruments and traders as `config.settings` types.

API keys are stored only as PBKDF2 hashes (`servers.auth.hash_api_key`). A trader may have
several active keys: `add_key` adds one, `rotate_key` adds one and revokes all the others
in the same transaction, `revoke_key` revokes one. `load_reference` gives each trader the
hash of its newest active key; `active_key_hashes` gives all of them, for a server that
accepts any active key while clients move to a new one. A trader without an active key
cannot log on, and is not among `load_reference`'s traders.
"""

import time

import msgspec
from sqlalchemy import Connection, func, select, update

from config.api_keys import parse_hash
from config.settings import Config, InstrumentConfig, TraderConfig
from database.models import ApiKey, Instrument, ReferenceVersion, RiskLimits, Trader

LIMITS = ("max_order_quantity", "max_notional", "max_open_orders", "max_messages_per_second",
          "max_queries_per_second")
"""The risk limits of `TraderConfig`, as `RiskLimits` columns."""
TRADER_FIELDS = ("account", "stp_default")
"""The other fields of `TraderConfig` but its key hash, as `Trader` columns."""
INSTRUMENT_FIELDS = tuple(field for field in InstrumentConfig.__struct_fields__ if field != "symbol")


class ReferenceError(ValueError):
    """A change the reference data cannot take (unknown trader or key, invalid values); nothing changed."""


def reference_version(connection: Connection) -> int:
    """The reference data's version: 0 before it was seeded, then +1 with every change."""
    return connection.execute(select(ReferenceVersion.version).where(ReferenceVersion.id == 1)).scalar() or 0


def load_reference(connection: Connection) -> tuple[list[InstrumentConfig], list[TraderConfig]]:
    """The instruments and the traders that can log on (an active key; the newest one's hash), by id."""
    instruments = [
        msgspec.convert({"symbol": row.symbol, **_instrument_values(row)}, InstrumentConfig)
        for row in connection.execute(select(Instrument).order_by(Instrument.symbol))
    ]
    hashes = active_key_hashes(connection)
    traders = [
        TraderConfig(trader_id=row.trader_id, api_key_hash=hashes[row.trader_id][0],
                     **{field: getattr(row, field) for field in (*TRADER_FIELDS, *LIMITS)})
        for row in connection.execute(_trader_rows())
        if row.trader_id in hashes
    ]
    return instruments, traders


def active_key_hashes(connection: Connection) -> dict[str, list[str]]:
    """Every trader's active key hashes, newest first (traders without one are absent)."""
    hashes: dict[str, list[str]] = {}
    query = select(ApiKey.trader_id, ApiKey.key_hash).where(ApiKey.active).order_by(ApiKey.key_id.desc())
    for trader_id, key_hash in connection.execute(query):
        hashes.setdefault(trader_id, []).append(key_hash)
    return hashes


def seed(connection: Connection, config: Config) -> bool:
    """Copy the configuration's instruments and traders into a database that has no reference
    data yet (version 0); return whether it did. Either all of it is written, or nothing."""
    if reference_version(connection):
        return False
    for instrument in config.instruments:
        connection.execute(Instrument.__table__.insert(), _instrument_row(instrument))
    now = time.time_ns()
    for trader in config.traders:
        _insert_trader(connection, trader.trader_id, {field: getattr(trader, field) for field in TRADER_FIELDS},
                       {limit: getattr(trader, limit) for limit in LIMITS}, now)
        _insert_key(connection, trader.trader_id, trader.api_key_hash, now)
    _bump(connection)
    return True


# ================================================================ changes (each bumps the version)


def put_instrument(connection: Connection, symbol: str, **fields) -> tuple[InstrumentConfig, bool]:
    """Add instrument ``symbol`` (fields not given take `InstrumentConfig`'s defaults) or change the
    given fields of an existing one; return it and whether it was added. ``order_types`` is a
    collection of `engine.instrument.ORDER_KINDS`."""
    unknown = sorted(set(fields) - set(INSTRUMENT_FIELDS))
    if unknown:
        raise ReferenceError(f"instruments have no field {', '.join(unknown)}")
    row = connection.execute(select(Instrument).where(Instrument.symbol == symbol)).first()
    current = {} if row is None else _instrument_values(row)
    instrument = _valid(InstrumentConfig, {"symbol": symbol, **current, **fields})
    values = _instrument_row(instrument)
    if row is None:
        connection.execute(Instrument.__table__.insert(), values)
    else:
        connection.execute(update(Instrument).where(Instrument.symbol == symbol).values(values))
    _bump(connection)
    return instrument, row is None


def put_trader(connection: Connection, trader_id: str, **fields) -> tuple[dict, bool]:
    """Add trader ``trader_id`` (fields not given take `TraderConfig`'s defaults: its own account,
    no self-trade prevention) or change the given fields of an existing one: its account, its
    default self-trade prevention mode (`TRADER_FIELDS`) and its limits (`LIMITS`); return all of
    them and whether it was added. A new trader has no API key yet: `add_key` gives it one."""
    unknown = sorted(set(fields) - set(TRADER_FIELDS) - set(LIMITS))
    if unknown:
        raise ReferenceError(f"traders have no field {', '.join(unknown)}")
    row = connection.execute(_trader_rows().where(RiskLimits.trader_id == trader_id)).first()
    current = {} if row is None else {field: getattr(row, field) for field in (*TRADER_FIELDS, *LIMITS)}
    checked = _valid(TraderConfig, {"trader_id": trader_id, "api_key_hash": "", **current, **fields})
    own = {field: getattr(checked, field) for field in TRADER_FIELDS}
    limits = {limit: getattr(checked, limit) for limit in LIMITS}
    if row is None:
        _insert_trader(connection, trader_id, own, limits, time.time_ns())
    else:
        connection.execute(update(Trader).where(Trader.trader_id == trader_id).values(own))
        connection.execute(update(RiskLimits).where(RiskLimits.trader_id == trader_id).values(limits))
    _bump(connection)
    return own | limits, row is None


def add_key(connection: Connection, trader_id: str, key_hash: str) -> int:
    """Give ``trader_id`` one more active key (its hash); return the key's id."""
    _check_trader(connection, trader_id)
    key_id = _insert_key(connection, trader_id, _valid_hash(key_hash), time.time_ns())
    _bump(connection)
    return key_id


def rotate_key(connection: Connection, trader_id: str, key_hash: str) -> tuple[int, list[int]]:
    """Give ``trader_id`` a new key and revoke every other; return the new key's id and the revoked ids."""
    _check_trader(connection, trader_id)
    now = time.time_ns()
    key_id = _insert_key(connection, trader_id, _valid_hash(key_hash), now)
    revoked = list(connection.execute(
        update(ApiKey).where(ApiKey.trader_id == trader_id, ApiKey.active, ApiKey.key_id != key_id)
        .values(active=False, revoked_time=now).returning(ApiKey.key_id)
    ).scalars())
    _bump(connection)
    return key_id, sorted(revoked)


def revoke_key(connection: Connection, key_id: int) -> str:
    """Revoke the active key ``key_id``; return its trader."""
    trader_id = connection.execute(
        update(ApiKey).where(ApiKey.key_id == key_id, ApiKey.active)
        .values(active=False, revoked_time=time.time_ns()).returning(ApiKey.trader_id)
    ).scalar()
    if trader_id is None:
        raise ReferenceError(f"no active API key {key_id}")
    _bump(connection)
    return trader_id


# ================================================================ listings


def instruments(connection: Connection) -> list[InstrumentConfig]:
    return load_reference(connection)[0]


def traders(connection: Connection) -> list[tuple[str, dict, int]]:
    """Every trader with its fields (`TRADER_FIELDS`, then `LIMITS`) and how many active keys it has, by id."""
    active = dict(connection.execute(
        select(ApiKey.trader_id, func.count()).where(ApiKey.active).group_by(ApiKey.trader_id)
    ).all())
    return [
        (row.trader_id, {field: getattr(row, field) for field in (*TRADER_FIELDS, *LIMITS)},
         active.get(row.trader_id, 0))
        for row in connection.execute(_trader_rows())
    ]


def keys(connection: Connection, trader_id: str | None = None) -> list:
    """The API keys, by id: rows of key_id, trader_id, active, created_time and revoked_time
    (not the hashes, which allow guessing weak keys offline)."""
    query = select(ApiKey.key_id, ApiKey.trader_id, ApiKey.active, ApiKey.created_time, ApiKey.revoked_time)
    if trader_id is not None:
        query = query.where(ApiKey.trader_id == trader_id)
    return connection.execute(query.order_by(ApiKey.key_id)).all()


# ================================================================ internals


def _bump(connection: Connection) -> None:
    table = ReferenceVersion.__table__
    changed = connection.execute(update(table).where(table.c.id == 1).values(version=table.c.version + 1))
    if not changed.rowcount:
        connection.execute(table.insert(), {"id": 1, "version": 1})


def _instrument_row(instrument: InstrumentConfig) -> dict:
    row = {field: getattr(instrument, field) for field in ("symbol", *INSTRUMENT_FIELDS)}
    row["order_types"] = instrument.kinds_text()
    return row


def _instrument_values(row) -> dict:
    """An `Instrument` row's fields as `InstrumentConfig` takes them (the kinds of order as a list)."""
    values = {field: getattr(row, field) for field in INSTRUMENT_FIELDS}
    values["order_types"] = [kind for kind in row.order_types.split(",") if kind]
    return values


def _trader_rows():
    """Each trader's `Trader` and `RiskLimits` columns, by id."""
    return (select(RiskLimits, Trader.account, Trader.stp_default)
            .join(Trader, Trader.trader_id == RiskLimits.trader_id).order_by(RiskLimits.trader_id))


def _insert_trader(connection: Connection, trader_id: str, own: dict, limits: dict[str, int], now: int) -> None:
    connection.execute(Trader.__table__.insert(), {"trader_id": trader_id, "created_time": now, **own})
    connection.execute(RiskLimits.__table__.insert(), {"trader_id": trader_id, **limits})


def _insert_key(connection: Connection, trader_id: str, key_hash: str, now: int) -> int:
    return connection.execute(
        ApiKey.__table__.insert().returning(ApiKey.key_id),
        {"trader_id": trader_id, "key_hash": key_hash, "active": True, "created_time": now},
    ).scalar_one()


def _check_trader(connection: Connection, trader_id: str) -> None:
    if connection.execute(select(Trader.trader_id).where(Trader.trader_id == trader_id)).scalar() is None:
        raise ReferenceError(f"no trader {trader_id!r}")


def _valid_hash(key_hash: str) -> str:
    try:
        parse_hash(key_hash)
    except ValueError as exc:
        raise ReferenceError(f"not an API key hash: {exc}") from None
    return key_hash


def _valid(kind, values: dict):
    """``values`` as a ``kind`` (validated as `config.settings` validates the configuration);
    ReferenceError naming the field and what is wrong with it."""
    try:
        return msgspec.convert(values, kind)
    except msgspec.ValidationError as exc:
        text, _, where = str(exc).rpartition(" - at `$.")
        raise ReferenceError(f"{where.rstrip('`')}: {text}" if text else str(exc)) from None
