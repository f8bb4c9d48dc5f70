"""Loading and validating the exchange configuration (TOML + environment overrides).

`load_config` reads ``config/exchange.toml`` (or the file named by EXCHANGE_CONFIG),
applies overrides from environment variables named ``EXCHANGE__SECTION__KEY`` (list
items by index, e.g. ``EXCHANGE__SHARDS__0__JOURNAL_DIR``; values are read as TOML
values, falling back to plain strings), and validates the result. Any problem
raises `ConfigError` whose message names the offending key. Every endpoint, path
and limit of every process comes from here, never from literals in code.
"""

import ipaddress
import os
import tomllib
import zoneinfo
from pathlib import Path
from typing import Annotated, Literal, get_args

import msgspec

from config.api_keys import parse_hash
from engine.instrument import Instrument
from engine.types import Phase, SelfTradePrevention

DEFAULT_PATH = Path(__file__).with_name("exchange.toml")
ENV_FILE = "EXCHANGE_CONFIG"
ENV_PREFIX = "EXCHANGE__"

Positive = Annotated[int, msgspec.Meta(gt=0)]
ENDPOINT = r"tcp://[^\s]+:\d+|ipc://[^\s]+|inproc://[^\s]+"
Endpoint = Annotated[str, msgspec.Meta(pattern=rf"^({ENDPOINT})$")]
OptionalEndpoint = Annotated[str, msgspec.Meta(pattern=rf"^({ENDPOINT})?$")]
Cpus = Annotated[list[Annotated[int, msgspec.Meta(ge=0)]], msgspec.Meta(max_length=1024)]
"""The CPUs a server's threads may run on (`servers.service.pin`); empty: wherever the OS schedules them."""
LOCAL_TRANSPORTS = ("ipc://", "inproc://")


class ConfigError(ValueError):
    """The configuration cannot be used; the message names the key and the problem."""


class Struct(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    pass


class TesConfig(Struct):
    client_endpoint: Endpoint
    tes_id: Annotated[int, msgspec.Meta(ge=1, le=65535)] = 1
    journal_dir: Annotated[str, msgspec.Meta(min_length=1)] = "data/tes"
    """The ledger's journal (`servers.ledger`): what a restart of the TES must not forget."""
    heartbeat_ms: Positive = 1000
    session_timeout_ms: Positive = 5000
    logon_failures: Positive = 5
    """Consecutive failed logons of one trader id, or on one connection, before it must wait."""
    logon_backoff_ms: Positive = 1000
    """The first wait; each further failure doubles it, up to ``logon_backoff_max_ms``."""
    logon_backoff_max_ms: Positive = 60_000
    logon_queue: Positive = 16
    """Logons waiting for their key check (PBKDF2) at most; more are refused LOGON_THROTTLED at once."""
    max_connections: Positive = 4096
    """Connections the client port holds at most, logged on or not; one more is shut down before its
    ZeroMQ handshake is done, and its client connects again until a place is free (`servers.gate`)."""
    peer_heartbeat_ms: Positive = 10_000
    """ZeroMQ's heartbeat on the client port: a connection that answers none of three in a row (its
    client's machine gone, or its process stopped) is closed and frees its place (`servers.gate`)."""
    shard_heartbeat_ms: Positive = 2000
    """ZeroMQ's heartbeat on the TES's connection to each book server: one that answers none of three
    in a row (stopped, or its host lost) is taken as disconnected, its symbols refused
    BOOK_UNAVAILABLE until it answers a Hello again (`servers.tes`)."""
    reference_poll_ms: Positive = 1000
    """How often the TES asks the database whether the reference data changed (`servers.database_link`)."""
    cpus: Cpus = []
    """The CPUs the TES's threads run on (its loop, ZeroMQ's I/O thread, the others); empty: any."""

    def __post_init__(self) -> None:
        if self.logon_backoff_max_ms < self.logon_backoff_ms:
            raise ValueError(f"logon_backoff_max_ms ({self.logon_backoff_max_ms}) must be at least "
                             f"logon_backoff_ms ({self.logon_backoff_ms})")


class JournalConfig(Struct):
    fsync: Literal["batch", "interval", "never"] = "batch"
    fsync_interval_ms: Positive = 10
    snapshot_every: Positive = 200_000
    max_consumer_lag_mb: Positive = 4096
    replies_kept: Positive = 65_536
    """Replies an OBS keeps to send again to a TES that says Hello after missing them; a TES
    that missed more catches up from the journal stream (`servers.tes`)."""
    """How much journal a stream consumer that stopped acknowledging may hold back (`servers.stream`)."""


class ShardConfig(Struct):
    name: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_-]{1,32}$")]
    symbols: Annotated[list[str], msgspec.Meta(min_length=1)]
    command_endpoint: Endpoint
    market_data_endpoint: Endpoint
    snapshot_endpoint: Endpoint
    journal_dir: str
    stream_endpoint: OptionalEndpoint = ""
    """Where consumers (the recorder, a restarting TES) read the journal (`servers.stream`); "": nowhere."""
    max_subscribers: Positive = 1024
    """Connections the book server sends market data to at most; a `Subscribe` from one more is
    refused TOO_MANY_SUBSCRIBERS (`servers.subscribers`)."""
    max_connections: Positive = 4096
    """Connections each of the public ports (market data, snapshots) holds at most, subscribed or
    not; one more is shut down before its ZeroMQ handshake is done (`servers.gate`)."""
    peer_heartbeat_ms: Positive = 10_000
    """ZeroMQ's heartbeat on the public ports: a connection that answers none of three in a row is
    closed and frees its place (`servers.gate`)."""
    cpus: Cpus = []
    """The CPUs this book server's threads run on; empty: any."""


class InstrumentConfig(Instrument, frozen=True, forbid_unknown_fields=True):
    reference_price: Positive = 10_000
    """Centre of the price band until the first trade."""


PhaseName = Literal["call", "continuous", "closed"]
"""The phases a schedule names; "closed" is the book's HALTED phase (`engine.types.Phase`)."""
SCHEDULED_PHASES: dict[str, Phase] = {"call": Phase.CALL, "continuous": Phase.CONTINUOUS, "closed": Phase.HALTED}
TIME_OF_DAY = r"^([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9])?$"
NonNegative = Annotated[int, msgspec.Meta(ge=0)]


class ScheduleEntry(Struct):
    """From ``at`` (a local time of day in ``phases.time_zone``, HH:MM or HH:MM:SS) on, every day,
    the instrument trades in ``phase``, until the schedule's next entry (after the last: the first's
    of the next day)."""

    at: Annotated[str, msgspec.Meta(pattern=TIME_OF_DAY)]
    phase: PhaseName

    @property
    def seconds(self) -> int:
        """``at`` in seconds after midnight."""
        hours, minutes, *seconds = (int(part) for part in self.at.split(":"))
        return hours * 3600 + minutes * 60 + (seconds[0] if seconds else 0)


class InstrumentPhasesConfig(Struct):
    """One instrument's trading schedule and volatility interruption (`servers.phases`)."""

    symbol: str
    schedule: list[ScheduleEntry] = []
    """Empty: continuous trading at all times (phases change only by the operator or a volatility
    interruption)."""
    static_band_bps: NonNegative = 0
    """A trade further than this from the previous close (the last trade price when the previous
    trading day ended, before that ``reference_price``) interrupts continuous trading; 0: no band."""
    dynamic_band_bps: NonNegative = 0
    """A trade further than this from the last trade before its command interrupts; 0: no band."""
    volatility_call_s: NonNegative = 0
    """How long an interruption's call lasts (seconds); needed with either band."""

    def __post_init__(self) -> None:
        times = [entry.seconds for entry in self.schedule]
        if any(later <= earlier for earlier, later in zip(times, times[1:], strict=False)):
            raise ValueError(f"the schedule of {self.symbol} must list its times of day in increasing order, each "
                             f"once: {', '.join(entry.at for entry in self.schedule)}")
        if (self.static_band_bps or self.dynamic_band_bps) and not self.volatility_call_s:
            raise ValueError(f"{self.symbol} has a volatility band but volatility_call_s is 0: set how long an "
                             "interruption's call lasts")


class PhasesConfig(Struct):
    """Trading phases (`servers.phases`): schedules and volatility interruptions per instrument."""

    time_zone: Annotated[str, msgspec.Meta(min_length=1)] = "UTC"
    """The IANA time zone of the schedules' times of day (e.g. Europe/London)."""
    instruments: list[InstrumentPhasesConfig] = []
    """Instruments not listed trade continuously, with no volatility interruption."""

    def of(self, symbol: str) -> "InstrumentPhasesConfig | None":
        return next((i for i in self.instruments if i.symbol == symbol), None)


StpMode = Literal["none", "cancel-taker", "cancel-maker", "cancel-both", "decrement"]
"""Self-trade prevention modes by name (`engine.types.SelfTradePrevention`, in its order), as the
configuration, ``admin`` and the trader CLI (``--stp``) spell them."""
STP_MODES: tuple[str, ...] = get_args(StpMode)


def stp_mode(name: str) -> SelfTradePrevention:
    """The `SelfTradePrevention` mode named ``name`` (one of `STP_MODES`, e.g. ``cancel-maker``)."""
    return SelfTradePrevention[name.upper().replace("-", "_")]


class TraderConfig(Struct):
    trader_id: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    api_key_hash: str
    account: Annotated[str, msgspec.Meta(max_length=64)] = ""
    """The account the trader trades for; left out (or ""): its own, named like the trader (what the
    field then holds). Self-trade prevention works per account: it acts when an order meets a
    resting order of any trader of the same account (`servers.protocol.owner_of`)."""
    stp_default: StpMode = "none"
    """The self-trade prevention mode of the trader's orders that do not name one."""
    max_order_quantity: Positive = 10_000
    max_notional: Positive = 100_000_000
    """Largest price x quantity (ticks x lots) of one order."""
    max_open_orders: Positive = 1_000
    max_messages_per_second: Positive = 1_000
    max_queries_per_second: Positive = 20
    """Pages of query answers a second (an open-orders answer has one per 1,000 orders)."""

    def __post_init__(self) -> None:
        if not self.account:
            msgspec.structs.force_setattr(self, "account", self.trader_id)


class BotConfig(Struct):
    kind: Literal["marketmaker", "random"]
    trader_id: str
    api_key: str
    symbol: str


class UpConfig(Struct):
    bots: list[BotConfig] = []
    frontends: list[Literal["trader", "analytics"]] = msgspec.field(default_factory=lambda: ["trader", "analytics"])
    """The web apps ``python main.py up`` starts next to the exchange."""


class FrontendConfig(Struct):
    """The web apps (`frontend`): ``python main.py --frontend trader|analytics``."""

    address: Annotated[str, msgspec.Meta(min_length=1)] = "127.0.0.1"
    """The address both apps listen on: loopback unless TLS is configured (API keys are typed into
    the trader portal, and the dashboard shows every trader's P&L)."""
    trader_port: Annotated[int, msgspec.Meta(ge=1, le=65535)] = 8501
    analytics_port: Annotated[int, msgspec.Meta(ge=1, le=65535)] = 8502
    tls_cert: str = ""
    """A PEM certificate (chain) file: with ``tls_key``, the apps serve HTTPS only."""
    tls_key: str = ""
    session_grace_s: Annotated[float, msgspec.Meta(gt=0)] = 10.0
    """How long a browser session of the trader portal may be gone (a closed tab, a lost
    connection) before its exchange session is logged out."""

    def __post_init__(self) -> None:
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ValueError("tls_cert and tls_key must be set together")
        if self.trader_port == self.analytics_port:
            raise ValueError(f"trader_port and analytics_port are both {self.trader_port}")


CompId = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9._-]{1,64}$")]


class FixSessionConfig(Struct):
    """One FIX session of the gateway: a CompID pair and the trader it trades as."""

    sender_comp_id: CompId
    """The gateway's CompID in this session (the peer's TargetCompID, 56)."""
    target_comp_id: CompId
    """The peer's CompID (its SenderCompID, 49)."""
    trader_id: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    """The trader: the Logon's Username (553) must name it, and its Password (554) is the API key."""
    cancel_on_disconnect: bool = False
    """Ask the TES to cancel the trader's open orders when the FIX session ends."""


class FixConfig(Struct):
    """The FIX 4.4 gateway (`gateways.fix`): ``python main.py -s FIX``."""

    enabled: bool = True
    """Whether ``python main.py up`` starts it."""
    address: Annotated[str, msgspec.Meta(min_length=1)] = "127.0.0.1"
    """Loopback only: FIX carries the traders' passwords in clear (remote peers: an SSH tunnel or stunnel)."""
    port: Annotated[int, msgspec.Meta(ge=1, le=65535)] = 7300
    data_dir: Annotated[str, msgspec.Meta(min_length=1)] = "data/fix"
    """Each session's sequence numbers, sent messages and order records (`gateways.fix.store`)."""
    fsync: bool = False
    """Force the session stores to disk before anything leaves the gateway (else the page cache)."""
    max_connections: Positive = 64
    logon_timeout_ms: Positive = 10_000
    """A connection that has not logged on within this is closed."""
    min_heartbeat_s: Positive = 1
    max_heartbeat_s: Positive = 300
    """The HeartBtInt (108) a Logon may ask for."""
    max_message_bytes: Annotated[int, msgspec.Meta(ge=1024, le=1 << 20)] = 65536
    """A larger message ends the connection (found from its BodyLength before it is read)."""
    max_output_bytes: Annotated[int, msgspec.Meta(ge=65536)] = 16 << 20
    """Bytes queued to a peer that does not read: more, and the connection is closed (a slow consumer)."""
    sending_time_tolerance_s: Positive = 120
    """A SendingTime (52) further than this from the gateway's clock is rejected (reason 10)."""
    sessions: list[FixSessionConfig] = []

    def __post_init__(self) -> None:
        if self.min_heartbeat_s > self.max_heartbeat_s:
            raise ValueError(f"min_heartbeat_s ({self.min_heartbeat_s}) is above max_heartbeat_s "
                             f"({self.max_heartbeat_s})")

    @property
    def endpoint(self) -> str:
        return f"tcp://{self.address}:{self.port}"


class ApiKeyConfig(Struct):
    """One key of the REST gateway: its id (sent with every request), the trader it acts for, and
    the trader's exchange API key, with which the gateway opens the trader's TES session. The HMAC
    secret the client signs with is in ``<api.secrets_dir>/<key_id>.secret`` (made on first start)."""

    key_id: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9._-]{1,64}$")]
    trader_id: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    exchange_key: Annotated[str, msgspec.Meta(min_length=1, max_length=256)]


class ApiConfig(Struct):
    """The REST and WebSocket gateway (`gateways.api`): ``python main.py -s API``."""

    enabled: bool = True
    """Whether ``python main.py up`` starts it."""
    address: Annotated[str, msgspec.Meta(min_length=1)] = "127.0.0.1"
    """Loopback unless TLS is configured (``tls_cert`` and ``tls_key``)."""
    port: Annotated[int, msgspec.Meta(ge=1, le=65535)] = 8600
    tls_cert: str = ""
    tls_key: str = ""
    secrets_dir: Annotated[str, msgspec.Meta(min_length=1)] = "data/api"
    """Each key's HMAC secret, ``<key_id>.secret`` (mode 0600; made on first start when missing)."""
    recv_window_ms: Positive = 5000
    """A signed request whose timestamp is further than this from the gateway's clock is refused."""
    rate_limit_per_s: Positive = 20
    """Requests a second per key, and per client address for the public market data (a token bucket
    of ``rate_limit_burst``); more get 429 and Retry-After."""
    rate_limit_burst: Positive = 40
    rate_limit_addresses: Positive = 10_000
    """Client addresses whose public rate-limit buckets are kept; a new one beyond evicts the least
    recently seen."""
    max_body_bytes: Annotated[int, msgspec.Meta(ge=1024, le=1 << 20)] = 65536
    request_timeout_s: Annotated[float, msgspec.Meta(gt=0)] = 5.0
    """How long a request waits for the TES's answer (then 504)."""
    stream_queue: Positive = 1000
    """Messages queued to a WebSocket that does not read; more, and it is closed (a slow consumer)."""
    max_connections: Positive = 1000
    """Connections (WebSockets included) and requests in flight at once; beyond, HTTP 503."""
    keys: list[ApiKeyConfig] = []

    def __post_init__(self) -> None:
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ValueError("tls_cert and tls_key must be set together")

    @property
    def endpoint(self) -> str:
        return f"tcp://{self.address}:{self.port}"


class SecurityConfig(Struct):
    """CURVE authentication (`servers.security`): key pairs in ``keys_dir``; "" turns it off."""

    keys_dir: str = "data/keys"
    clients: Literal["plain", "curve"] = "plain"
    """"curve": the TES client endpoint is a CURVE server too (clients need ``keys_dir/tes.key``)."""


DATABASE_URL = r"^(|sqlite:///.+|postgresql(\+psycopg)?://.+)$"


class DatabaseConfig(Struct):
    """The transactional database (`database.store`): "" is SQLite in data/exchange.sqlite."""

    url: Annotated[str, msgspec.Meta(pattern=DATABASE_URL)] = ""
    """"", sqlite:///PATH or postgresql://USER[:PASSWORD]@HOST:PORT/DATABASE (psycopg 3)."""


class TicksConfig(Struct):
    """The tick store (`database.ticks`): the embedded Parquet store in ``root``, or, with
    ``kdb_host`` set, a kdb+ tickerplant (its confirmed watermarks are kept in ``root``)."""

    root: Annotated[str, msgspec.Meta(min_length=1)] = "data/ticks"
    kdb_host: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9._:-]*$")] = ""
    """"": the embedded store; a host name or address: publish to the tickerplant there."""
    kdb_port: Annotated[int, msgspec.Meta(ge=1, le=65535)] = 5010
    kdb_user: str = ""
    kdb_password: str = ""
    kdb_confirm_every: Positive = 8
    """Batches between synchronous confirmations: the most a recorder crash sends again."""
    kdb_timeout_ms: Positive = 10_000
    """A connection, a send or a confirmation taking longer: the connection is taken as broken."""
    kdb_backoff_max_ms: Positive = 30_000
    """Reconnection waits start at 100 ms and double up to this."""

    def __post_init__(self) -> None:
        if self.kdb_password and not self.kdb_user:
            raise ValueError("kdb_password is set without kdb_user")


class LoggingConfig(Struct):
    format: Literal["text", "json"] = "text"
    """How every server process logs (`servers.logs`): a line of text, or a JSON object, per record."""


class RecorderConfig(Struct):
    """The recorder (`servers.recorder`)."""

    status_file: Annotated[str, msgspec.Meta(min_length=1)] = "data/recorder-status.json"
    """Where the recorder keeps each shard's progress and lag for the dashboards (JSON)."""


class Config(Struct):
    tes: TesConfig
    shards: Annotated[list[ShardConfig], msgspec.Meta(min_length=1)]
    instruments: Annotated[list[InstrumentConfig], msgspec.Meta(min_length=1)]
    journal: JournalConfig = JournalConfig()
    traders: list[TraderConfig] = []
    up: UpConfig = UpConfig()
    security: SecurityConfig = SecurityConfig()
    ticks: TicksConfig = TicksConfig()
    database: DatabaseConfig = DatabaseConfig()
    recorder: RecorderConfig = RecorderConfig()
    logging: LoggingConfig = LoggingConfig()
    frontend: FrontendConfig = FrontendConfig()
    fix: FixConfig = FixConfig()
    api: ApiConfig = ApiConfig()
    phases: PhasesConfig = PhasesConfig()

    def instrument(self, symbol: str) -> InstrumentConfig | None:
        return next((i for i in self.instruments if i.symbol == symbol), None)

    def shard(self, name: str) -> ShardConfig:
        for shard in self.shards:
            if shard.name == name:
                return shard
        raise ConfigError(f"shards: no shard named {name!r} (have {[s.name for s in self.shards]})")

    def shard_of(self, symbol: str) -> ShardConfig | None:
        return next((s for s in self.shards if symbol in s.symbols), None)


def load_config(path: str | Path | None = None, environ: dict[str, str] | None = None) -> Config:
    """Read, override and validate the configuration; raise ConfigError naming the bad key."""
    environ = os.environ if environ is None else environ
    path = Path(path or environ.get(ENV_FILE) or DEFAULT_PATH)
    try:
        raw = tomllib.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    for name, value in sorted(environ.items()):
        if name.startswith(ENV_PREFIX):
            _override(raw, name, value)
    try:
        config = msgspec.convert(raw, Config)
    except msgspec.ValidationError as exc:
        raise ConfigError(_describe(exc)) from None
    except ValueError as exc:
        raise ConfigError(f"instruments: {exc}") from None
    check(config)
    return config


def _override(raw: dict, name: str, value: str) -> None:
    keys = [key.lower() for key in name[len(ENV_PREFIX):].split("__")]
    node = raw
    for depth, key in enumerate(keys[:-1]):
        node = _child(node, key, name, keys[: depth + 1])
    last = keys[-1]
    if isinstance(node, list):
        index = _index(node, last, name)
        node[index] = _parse_value(value)
    else:
        node[last] = _parse_value(value)


def _child(node, key: str, name: str, path: list[str]):
    if isinstance(node, list):
        return node[_index(node, key, name)]
    if not isinstance(node, dict):
        raise ConfigError(f"{name}: {'.'.join(path[:-1])} is not a table")
    return node.setdefault(key, {})


def _index(node: list, key: str, name: str) -> int:
    if not key.isdigit() or int(key) >= len(node):
        raise ConfigError(f"{name}: list index {key!r} out of range (the list has {len(node)} items)")
    return int(key)


def _parse_value(text: str):
    try:
        return tomllib.loads(f"value = {text}")["value"]
    except tomllib.TOMLDecodeError:
        return text


def _describe(exc: msgspec.ValidationError) -> str:
    """Turn msgspec's '... - at `$.a[0].b`' into 'a[0].b: ...'."""
    message = str(exc)
    if " - at `$" in message:
        text, _, where = message.rpartition(" - at `$")
        return f"{where.rstrip('`').lstrip('.') or 'config'}: {text}"
    return f"config: {message}"


def check(config: Config) -> None:
    """Cross-field rules that types alone cannot express."""
    symbols = [i.symbol for i in config.instruments]
    _unique(symbols, "instruments", "symbol")
    _unique([s.name for s in config.shards], "shards", "name")
    _unique([t.trader_id for t in config.traders], "traders", "trader_id")
    owned = [symbol for shard in config.shards for symbol in shard.symbols]
    for index, shard in enumerate(config.shards):
        for symbol in shard.symbols:
            if symbol not in symbols:
                raise ConfigError(f"shards[{index}].symbols: {symbol!r} is not an instrument")
    for symbol in symbols:
        if owned.count(symbol) != 1:
            raise ConfigError(f"instruments: {symbol!r} must be owned by exactly one shard, not {owned.count(symbol)}")
    endpoints = [config.tes.client_endpoint] + [
        endpoint
        for shard in config.shards
        for endpoint in (shard.command_endpoint, shard.market_data_endpoint, shard.snapshot_endpoint,
                         shard.stream_endpoint)
        if endpoint
    ]
    _unique(endpoints + [config.fix.endpoint, config.api.endpoint], "endpoints", "address")
    _unique([k.key_id for k in config.api.keys], "api.keys", "key_id")
    _unique([(s.sender_comp_id, s.target_comp_id) for s in config.fix.sessions], "fix.sessions",
            "(sender_comp_id, target_comp_id)")
    _unique([s.trader_id for s in config.fix.sessions], "fix.sessions", "trader_id")
    for index, trader in enumerate(config.traders):
        try:
            parse_hash(trader.api_key_hash)
        except ValueError as exc:
            raise ConfigError(f"traders[{index}].api_key_hash: {exc}") from None
    _check_phases(config.phases, symbols)
    for index, bot in enumerate(config.up.bots):
        if bot.symbol not in symbols:
            raise ConfigError(f"up.bots[{index}].symbol: {bot.symbol!r} is not an instrument")
    _check_loopback(config)


def _check_phases(phases: PhasesConfig, symbols: list[str]) -> None:
    try:
        zoneinfo.ZoneInfo(phases.time_zone)
    except (ValueError, zoneinfo.ZoneInfoNotFoundError):
        raise ConfigError(f"phases.time_zone: {phases.time_zone!r} is not a known IANA time zone (e.g. UTC, "
                          "Europe/London)") from None
    _unique([i.symbol for i in phases.instruments], "phases.instruments", "symbol")
    for index, instrument in enumerate(phases.instruments):
        if instrument.symbol not in symbols:
            raise ConfigError(f"phases.instruments[{index}].symbol: {instrument.symbol!r} is not an instrument")


def _check_loopback(config: Config) -> None:
    """Beyond loopback only with keys: the book servers' ports need CURVE (``security.keys_dir``),
    the TES client port CURVE for clients too (API keys must not cross a network in clear)."""
    bound = [("tes.client_endpoint", config.tes.client_endpoint)] + [
        (f"shards[{index}].{field}", getattr(shard, field))
        for index, shard in enumerate(config.shards)
        for field in ("command_endpoint", "market_data_endpoint", "snapshot_endpoint", "stream_endpoint")
        if getattr(shard, field)
    ]
    frontend = config.frontend
    if not frontend.tls_cert and not is_loopback(f"tcp://{frontend.address}:{frontend.trader_port}"):
        raise ConfigError(f"frontend.address: {frontend.address} is reachable beyond this host, so the apps must "
                          "serve HTTPS (API keys are typed into the trader portal): set frontend.tls_cert and "
                          "frontend.tls_key, or reach them through an SSH tunnel (see the README)")
    if not is_loopback(config.fix.endpoint):
        raise ConfigError(f"fix.address: {config.fix.address} is reachable beyond this host, but FIX over plain TCP "
                          "carries the traders' passwords: keep the gateway on loopback and reach it through an SSH "
                          "tunnel or stunnel (see the README)")
    if not config.api.tls_cert and not is_loopback(config.api.endpoint):
        raise ConfigError(f"api.address: {config.api.address} is reachable beyond this host, so the REST gateway "
                          "must serve HTTPS: set api.tls_cert and api.tls_key, or reach it through an SSH tunnel "
                          "(see the README)")
    if config.security.clients == "curve" and not config.security.keys_dir:
        raise ConfigError('security.clients: "curve" needs keys: set security.keys_dir and run python main.py keys')
    for key, endpoint in bound:
        if is_loopback(endpoint):
            continue
        if not config.security.keys_dir:
            raise ConfigError(f"{key}: {endpoint} is reachable beyond this host, which needs CURVE keys: set "
                              "security.keys_dir and run python main.py keys")
        if key == "tes.client_endpoint" and config.security.clients != "curve":
            raise ConfigError(f"{key}: {endpoint} is reachable beyond this host, so clients must use CURVE: "
                              'set security.clients = "curve"')


def is_loopback(endpoint: str) -> bool:
    """Whether binding ``endpoint`` exposes it to this host only (ipc and inproc count as local)."""
    if endpoint.startswith(LOCAL_TRANSPORTS):
        return True
    host = endpoint.removeprefix("tcp://").rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _unique(values: list, section: str, field: str) -> None:
    seen = set()
    for value in values:
        if value in seen:
            raise ConfigError(f"{section}: {field} {value!r} appears twice")
        seen.add(value)
