"""What every client program shares: arguments, logon, market data, a graceful stop.

A client program is ``main(config, argv) -> int`` (``python main.py -c NAME ARGS``).
A failure the user can fix (bad arguments, unknown symbol, refused logon, no
exchange) is one ``error: ...`` line on stderr and exit status 2, as for the other
commands of ``main.py``; a protocol failure (`ClientError`: an undecodable frame,
an unanswered request) is one ``error:`` line and exit status 1.
"""

import argparse
import signal
import sys
import time

from clients.client import ClientError, ExchangeClient, LogonError, RequestRejected, RequestTimeout
from clients.market_data import MarketDataClient
from config.settings import Config, InstrumentConfig
from engine.types import RejectReason
from servers.security import TES, KeyFileError, Keys

EXIT_ERROR = 2


class UsageError(Exception):
    """A failure the user can fix; `run` prints it as one ``error:`` line."""


class Parser(argparse.ArgumentParser):
    """Argument errors become `UsageError` instead of argparse's own exit."""

    def error(self, message):
        raise UsageError(f"{message} (see {self.prog} --help)")


def add_credentials(parser: argparse.ArgumentParser, trader: str | None = None) -> None:
    """``--trader`` and ``--key`` (required unless ``trader`` gives the default, whose key is
    the demo key ``TRADER-demo-key``)."""
    parser.add_argument("--trader", default=trader, required=trader is None, help="trader id")
    parser.add_argument("--key", help="API key (default for a demo trader: TRADER-demo-key)")


def api_key(args: argparse.Namespace) -> str:
    return args.key if args.key is not None else f"{args.trader}-demo-key"


def instrument(config: Config, symbol: str) -> InstrumentConfig:
    found = config.instrument(symbol)
    if found is None:
        raise UsageError(f"unknown symbol {symbol!r} (have {', '.join(i.symbol for i in config.instruments)})")
    return found


def tes_server_key(config: Config) -> bytes | None:
    """The TES's public CURVE key if its client port uses CURVE (``security.clients``), else None."""
    if config.security.clients != "curve":
        return None
    try:
        return Keys(config.security.keys_dir).public(TES)
    except KeyFileError as exc:
        raise UsageError(f"the TES's public key: {exc}") from None


def logged_on_client(config: Config, trader_id: str, key: str, timeout: float = 10.0, **options) -> ExchangeClient:
    """A client of the configured TES (with its CURVE key if it asks for one), logged on;
    `UsageError` if refused or unanswered."""
    client = ExchangeClient(config.tes.client_endpoint, trader_id, key, server_key=tes_server_key(config), **options)
    try:
        client.logon(timeout)
    except LogonError as exc:
        client.close()
        raise UsageError(str(exc)) from None
    return client


def market_data(config: Config, symbol: str, timeout: float = 10.0) -> MarketDataClient:
    """A synced local book of ``symbol`` from the shard that owns it."""
    shard = config.shard_of(symbol)
    if shard is None:
        raise UsageError(f"no shard owns {symbol!r}")
    feed = MarketDataClient(shard.market_data_endpoint, shard.snapshot_endpoint, symbol)
    try:
        feed.connect(timeout)
    except RequestTimeout as exc:
        feed.close()
        raise UsageError(f"market data: {exc} from {shard.snapshot_endpoint}") from None
    return feed


def wait_until_tradable(client: ExchangeClient, symbol: str, timeout: float = 10.0) -> None:
    """Wait until the TES reaches ``symbol``'s book (a book query is answered).

    Right after start-up the TES refuses orders with BOOK_UNAVAILABLE until the
    shard has answered its Hello; a bot or load run should not begin with those.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            client.book(symbol, 1, timeout=max(0.1, deadline - time.monotonic()))
            return
        except RequestRejected as exc:
            if exc.reason != RejectReason.BOOK_UNAVAILABLE:
                raise UsageError(f"book of {symbol}: {exc}") from None
        except RequestTimeout:
            pass
        if time.monotonic() >= deadline:
            raise UsageError(f"the book of {symbol} is not available after {timeout:g}s")
        time.sleep(0.05)


class StopFlag:
    """Set by SIGINT or SIGTERM, so a bot's loop finishes its step and shuts down cleanly."""

    def __init__(self) -> None:
        self.stopped = False
        signal.signal(signal.SIGINT, self._set)
        signal.signal(signal.SIGTERM, self._set)

    def _set(self, signum, frame) -> None:
        self.stopped = True

    def __bool__(self) -> bool:
        return self.stopped


def run(program, argv: list[str]) -> int:
    """Call ``program(argv)``; a `UsageError` becomes an ``error:`` line and exit status 2."""
    try:
        return program(argv) or 0
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except ClientError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
