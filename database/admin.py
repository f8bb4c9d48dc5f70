"""``python main.py admin ...``: the reference data in the database, from the command line.

Actions::

    admin instrument set SYMBOL [--tick-size N] [--lot-size N] [--min-quantity N] [--max-quantity N]
                                [--price-band-bps N] [--price-scale N] [--reference-price N]
                                [--order-types KINDS] [--max-iceberg-slices N] [--max-stop-distance-bps N]
                                [--allow-marketable-stops | --no-allow-marketable-stops]
    admin instrument list
    admin trader set TRADER [--account NAME] [--stp-default MODE]
                            [--max-order-quantity N] [--max-notional N] [--max-open-orders N]
                            [--max-messages-per-second N] [--max-queries-per-second N]
    admin trader list
    admin key add TRADER [--stdin]        a new active key; printed once (--stdin: read it instead)
    admin key rotate TRADER [--stdin]     a new key, and every other key of TRADER revoked
    admin key revoke KEY_ID
    admin key list [TRADER]
    admin version

``set`` adds what does not exist (unnamed fields take the configuration's defaults) and
changes only the named fields of what does. KINDS is a comma-separated list of the kinds of
order the instrument takes (``limit,market,stop,stop-limit,iceberg,post-only,gtd``; "" for
none); MODE a self-trade prevention mode (``none``, ``cancel-taker``, ``cancel-maker``,
``cancel-both``, ``decrement``). Each change prints one line ending with the new
reference version; a listing prints a table. Only API-key hashes are stored: a generated key
(32 random bytes, URL-safe base64) is shown once, in that line. Anything wrong (an unknown
trader or key, a value the configuration would refuse, an unreachable database) raises
`AdminError`, which ``main`` prints as one ``error: ...`` line with exit status 2, and
changes nothing. The database is the configured one (``[database] url``), made, upgraded
and seeded from the configuration if need be. This module imports only the standard
library, `config` and `engine.instrument` at load time: SQLAlchemy is imported when an action runs.
"""

import argparse
import secrets
import sys
from datetime import UTC, datetime

from config.arguments import non_negative_int, positive_int
from config.settings import STP_MODES
from engine.instrument import ORDER_KINDS


def order_kinds(text: str) -> list[str]:
    """The argparse ``type`` of ``--order-types``: comma-separated `ORDER_KINDS` ("" for none)."""
    kinds = [kind.strip() for kind in text.split(",") if kind.strip()]
    unknown = [kind for kind in kinds if kind not in ORDER_KINDS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown kind of order {', '.join(unknown)} (kinds: {','.join(ORDER_KINDS)})")
    return kinds


INSTRUMENT_OPTIONS = {"tick_size": positive_int, "lot_size": positive_int, "min_quantity": positive_int,
                      "max_quantity": positive_int, "price_band_bps": non_negative_int,
                      "price_scale": positive_int, "reference_price": positive_int, "order_types": order_kinds,
                      "max_iceberg_slices": non_negative_int, "max_stop_distance_bps": non_negative_int,
                      "allow_marketable_stops": bool}
"""Each instrument field and its argparse type (bool: a --NAME / --no-NAME switch)."""
TRADER_FIELDS = ("account", "stp_default")
TRADER_OPTIONS = ("max_order_quantity", "max_notional", "max_open_orders", "max_messages_per_second",
                  "max_queries_per_second")
MAX_KEY_LENGTH = 256
"""The longest API key a logon may carry (`servers.protocol.Logon`)."""


class AdminError(ValueError):
    """An admin action that cannot be done; nothing was changed."""


def add_parser(commands, run) -> None:
    """The ``admin`` command and its actions on ``commands`` (argparse subparsers), running ``run``."""
    parser = commands.add_parser("admin", help="reference data in the database: instruments, traders, API keys")
    parser.set_defaults(run=run)
    kinds = parser.add_subparsers(dest="kind", metavar="KIND", required=True)

    instrument = kinds.add_parser("instrument", help="add, change or list instruments")
    actions = instrument.add_subparsers(dest="action", metavar="ACTION", required=True)
    put = actions.add_parser("set", help="add an instrument, or change the fields given")
    put.add_argument("symbol")
    for name, kind in INSTRUMENT_OPTIONS.items():
        flag = f"--{name.replace('_', '-')}"
        if kind is bool:
            put.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction, default=None)
        else:
            put.add_argument(flag, dest=name, type=kind, metavar="KINDS" if kind is order_kinds else "N")
    actions.add_parser("list", help="every instrument")

    trader = kinds.add_parser("trader", help="add, change or list traders and their risk limits")
    actions = trader.add_subparsers(dest="action", metavar="ACTION", required=True)
    put = actions.add_parser("set", help="add a trader (without a key: see admin key add), or change its account, "
                                         "self-trade prevention default or limits")
    put.add_argument("trader")
    put.add_argument("--account", metavar="NAME", help="the account it trades for (self-trade prevention acts "
                                                        "between the traders of one account); default: its own")
    put.add_argument("--stp-default", choices=STP_MODES, metavar="MODE",
                     help=f"self-trade prevention of its orders that name none ({', '.join(STP_MODES)})")
    for name in TRADER_OPTIONS:
        put.add_argument(f"--{name.replace('_', '-')}", dest=name, type=positive_int, metavar="N")
    actions.add_parser("list", help="every trader, its limits and how many active keys it has")

    key = kinds.add_parser("key", help="add, rotate, revoke or list API keys (only their hashes are stored)")
    actions = key.add_subparsers(dest="action", metavar="ACTION", required=True)
    for name, text in (("add", "give a trader one more active key"),
                       ("rotate", "give a trader a new key and revoke all its others")):
        sub = actions.add_parser(name, help=text)
        sub.add_argument("trader")
        sub.add_argument("--stdin", action="store_true", help="read the key from standard input (one line) "
                                                              "instead of generating one")
    revoke = actions.add_parser("revoke", help="revoke an active key")
    revoke.add_argument("key_id", type=positive_int, metavar="KEY_ID")
    listing = actions.add_parser("list", help="the keys (ids, owners, states; never the hashes)")
    listing.add_argument("trader", nargs="?")

    kinds.add_parser("version", help="the reference data's version (bumped by every change)")


def run(args: argparse.Namespace, config) -> list[str]:
    """Do the parsed action on the configured database; return the lines to print."""
    from database.reference import ReferenceError
    from database.store import StoreUnavailable, open_database, transaction

    key = _read_key() if getattr(args, "stdin", False) else None
    try:
        engine = open_database(config)
        try:
            with transaction(engine, write=args.kind != "version" and args.action != "list") as connection:
                return _ACTIONS[args.kind](connection, args, key)
        finally:
            engine.dispose()
    except (ReferenceError, StoreUnavailable) as exc:
        raise AdminError(str(exc)) from None


def _instrument(connection, args, _key) -> list[str]:
    from database import reference

    if args.action == "list":
        rows = [[instrument.symbol, *(_shown(instrument, name) for name in INSTRUMENT_OPTIONS)]
                for instrument in reference.instruments(connection)]
        return table(["symbol", *INSTRUMENT_OPTIONS], rows)
    fields = {name: getattr(args, name) for name in INSTRUMENT_OPTIONS if getattr(args, name) is not None}
    instrument, added = reference.put_instrument(connection, args.symbol, **fields)
    values = ", ".join(f"{name} {_shown(instrument, name)}" for name in INSTRUMENT_OPTIONS)
    return [f"instrument {instrument.symbol} {'added' if added else 'changed'}: {values}{_version(connection)}"]


def _shown(instrument, name: str) -> str:
    """An instrument field as admin prints it: kinds of order comma-separated ("none" for none), switches yes/no."""
    if name == "order_types":
        return instrument.kinds_text() or "none"
    value = getattr(instrument, name)
    return ("yes" if value else "no") if isinstance(value, bool) else str(value)


def _trader(connection, args, _key) -> list[str]:
    from database import reference

    if args.action == "list":
        rows = [[trader_id, *(str(fields[name]) for name in (*TRADER_FIELDS, *TRADER_OPTIONS)), str(keys)]
                for trader_id, fields, keys in reference.traders(connection)]
        return table(["trader", *TRADER_FIELDS, *TRADER_OPTIONS, "active_keys"], rows)
    names = (*TRADER_FIELDS, *TRADER_OPTIONS)
    fields = {name: getattr(args, name) for name in names if getattr(args, name) is not None}
    values, added = reference.put_trader(connection, args.trader, **fields)
    text = ", ".join(f"{name} {value}" for name, value in values.items())
    return [f"trader {args.trader} {'added' if added else 'changed'}: {text}{_version(connection)}"]


def _key(connection, args, key: str | None) -> list[str]:
    from database import reference
    from servers.auth import hash_api_key

    if args.action == "list":
        rows = [[str(row.key_id), row.trader_id, "active" if row.active else "revoked", _iso(row.created_time),
                 _iso(row.revoked_time)] for row in reference.keys(connection, args.trader)]
        return table(["key_id", "trader", "state", "created", "revoked"], rows)
    if args.action == "revoke":
        trader_id = reference.revoke_key(connection, args.key_id)
        return [f"key {args.key_id} of {trader_id} revoked{_version(connection)}"]
    generated = key is None
    key = secrets.token_urlsafe(32) if generated else key
    shown = f": {key} (shown once: only its hash is stored)" if generated else ""
    if args.action == "add":
        key_id = reference.add_key(connection, args.trader, hash_api_key(key))
        return [f"key {key_id} added for {args.trader}{shown}{_version(connection)}"]
    key_id, revoked = reference.rotate_key(connection, args.trader, hash_api_key(key))
    gone = f"; revoked {', '.join(map(str, revoked))}" if revoked else "; no other key to revoke"
    return [f"key {key_id} added for {args.trader}{shown}{gone}{_version(connection)}"]


def _reference_version(connection, _args, _key) -> list[str]:
    from database.reference import reference_version

    return [f"reference version {reference_version(connection)}"]


_ACTIONS = {"instrument": _instrument, "trader": _trader, "key": _key, "version": _reference_version}


def _version(connection) -> str:
    from database.reference import reference_version

    return f" (reference version {reference_version(connection)})"


def _read_key() -> str:
    key = sys.stdin.readline().rstrip("\r\n")
    if not key:
        raise AdminError("no key on standard input (one line expected)")
    if len(key) > MAX_KEY_LENGTH:
        raise AdminError(f"the key is {len(key)} characters long: at most {MAX_KEY_LENGTH}")
    return key


def _iso(nanoseconds: int | None) -> str:
    if nanoseconds is None:
        return ""
    return datetime.fromtimestamp(nanoseconds // 10**9, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def table(names: list[str], rows: list[list[str]]) -> list[str]:
    """Aligned columns (numbers to the right) and a closing ``(N rows)`` line."""
    from database.tables import aligned

    numeric = [bool(rows) and all(row[index].lstrip("-").isdigit() for row in rows if row[index])
               for index in range(len(names))]
    return aligned(names, rows, numeric)
