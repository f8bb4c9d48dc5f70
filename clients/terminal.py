"""What the terminal clients (the trader shell, the tape, the book ladder) share.

Prices and quantities are integers (ticks, lots) from the wire to the core; this
module is where they meet people: prices typed and shown as decimals in currency
units (`Instrument.price_scale` ticks per unit), exchange times as times of day,
trading phases and uncrosses in words (`phase_text`, `uncross_text`), and the TES's
reject texts, which name the rule broken and its values in ticks, shown in decimals.
It also opens the market-data feeds, saying clearly when no order book server answers.

Reject texts
------------
The TES's texts for the price rules (`PRICE_REASONS`) hold prices in ticks and
notionals in ticks x lots and no other number (``price 25001 is not a multiple of
the tick 5``, ``price 12000 is outside the band 9000..11000``, ``notional 1000100
at price 10001 is above the trader's limit 1000000``), so `reject_text` scales
every number in them; the texts of the quantity rules and limits are in lots and
counts, shown as they are. The values come from the TES because only it knows
some of them (the band is centred on the last trade it saw, the limits are the
trader's); a FIX or REST gateway would pass the text on the same way.
"""

import os
import re
import signal
import sys
import time
from datetime import datetime
from datetime import time as dt_time
from decimal import Decimal, InvalidOperation

import zmq

from clients.client import RequestTimeout
from clients.market_data import MarketDataClient
from clients.runtime import UsageError
from config.settings import Config
from engine.instrument import Instrument
from engine.types import Phase, RejectReason
from servers.protocol import PhaseReason

PRICE_REASONS = frozenset({RejectReason.PRICE_OFF_TICK, RejectReason.PRICE_OUTSIDE_BAND, RejectReason.NOTIONAL_LIMIT,
                           RejectReason.STOP_PRICE_TOO_FAR, RejectReason.STOP_WOULD_TRIGGER})
"""The reasons whose texts hold only prices (ticks) and notionals (ticks x lots)."""
PHASE_WORDS = {Phase.CONTINUOUS: "continuous", Phase.CALL: "call", Phase.HALTED: "halted"}
REASON_WORDS = {PhaseReason.OPERATOR: "operator", PhaseReason.SCHEDULE: "schedule",
                PhaseReason.VOLATILITY: "volatility interruption"}
_NUMBER = re.compile(r"-?\d+")
_TIME_OF_DAY = re.compile(r"(\d{1,2}):(\d{2})(?::(\d{2})(?:\.(\d{1,6}))?)?")


class PriceError(ValueError):
    """A typed price that is not a price of the instrument; the message says why."""


class TimeError(ValueError):
    """A typed time that is not one; the message says why."""


def parse_time(text: str, now: datetime | None = None) -> int:
    """A typed expiry in nanoseconds since the epoch, UTC: ``HH:MM`` or ``HH:MM:SS`` is that time
    of day today (``now``'s day, local time), anything else an ISO 8601 date and time
    (``2026-12-09T16:00``; local time unless it names its offset, ``...Z`` or ``...+01:00``).
    `TimeError` if it is neither. Whether it is still to come is for the caller to say."""
    now = now or datetime.now().astimezone()
    try:
        of_day = _TIME_OF_DAY.fullmatch(text)
        if of_day:
            hour, minute, second, fraction = of_day.groups()
            moment = datetime.combine(now.date(), dt_time(int(hour), int(minute), int(second or 0),
                                                          int((fraction or "").ljust(6, "0"))))
        else:
            moment = datetime.fromisoformat(text)
    except ValueError:
        raise TimeError(f"{text!r} is not a time (HH:MM, HH:MM:SS, or an ISO date and time such as "
                        "2026-12-09T16:00)") from None
    if moment.tzinfo is None:
        moment = moment.astimezone()  # naive: local time
    return int(moment.timestamp()) * 1_000_000_000 + moment.microsecond * 1_000


def local_time(nanoseconds: int) -> str:
    """An exchange time (nanoseconds since the epoch, UTC) as ``YYYY-MM-DD HH:MM:SS`` local time."""
    try:
        return datetime.fromtimestamp(nanoseconds // 1_000_000_000).strftime("%Y-%m-%d %H:%M:%S")
    except (OverflowError, OSError, ValueError):
        return f"{nanoseconds} ns"


def parse_price(instrument: Instrument, text: str) -> int:
    """``text`` (a decimal in currency units) in ticks; `PriceError` if it is not a number or
    finer than the instrument's price unit. Whether it is on the tick and inside the band
    is the exchange's to say (the reject names the values)."""
    try:
        ticks = Decimal(text) * instrument.price_scale
    except InvalidOperation:
        raise PriceError(f"price {text!r} is not a number") from None
    if not ticks.is_finite():
        raise PriceError(f"price {text!r} is not a number")
    if ticks != ticks.to_integral_value():
        raise PriceError(f"price {text} is not a multiple of the tick {instrument.format_price(instrument.tick_size)}")
    return int(ticks)


def reject_text(reason: RejectReason, text: str, instrument: Instrument | None) -> str:
    """A reject's text for people: the numbers of a price rule's text in decimals (see the
    module docstring); any other text, or without the instrument, as the exchange sent it."""
    if instrument is None or reason not in PRICE_REASONS:
        return text
    return _NUMBER.sub(lambda match: instrument.format_price(int(match.group())), text)


def clock(nanoseconds: int) -> str:
    """An exchange time (nanoseconds since the epoch, UTC) as ``HH:MM:SS.ffffff``, UTC."""
    seconds, rest = divmod(nanoseconds, 1_000_000_000)
    return f"{time.strftime('%H:%M:%S', time.gmtime(seconds))}.{rest // 1000:06d}"


def phase_text(phase: Phase, reason: PhaseReason | None = None, until: int = 0) -> str:
    """A trading phase in words, with why when known: ``continuous``, ``halted (operator)``,
    ``call (volatility interruption until 14:02:05.000000)`` (``until`` UTC, as `clock`)."""
    words = PHASE_WORDS[Phase(phase)]
    if reason is None:
        return words
    why = REASON_WORDS[PhaseReason(reason)]
    return f"{words} ({why} until {clock(until)})" if until else f"{words} ({why})"


def uncross_text(instrument: Instrument, price: int, volume: int) -> str:
    """An uncross, indicative or done: ``40 @ 100.05``, or ``none`` when nothing would trade (volume 0)."""
    return "none" if volume == 0 else f"{volume} @ {instrument.format_price(price)}"


def side_text(instrument: Instrument, price: int, quantity: int) -> str:
    """One side of a quote, ``99.50 x 10``, or ``--`` for an empty side (price and quantity 0)."""
    return "--" if quantity == 0 else f"{instrument.format_price(price)} x {quantity}"


def open_feeds(config: Config, symbols: list[str], timeout: float) -> list[MarketDataClient]:
    """A synced `MarketDataClient` per symbol, each on the shard that owns it.

    Every feed subscribes before any waits, so none misses what happens while the
    others sync. `UsageError` naming the shard and its endpoint if no snapshot comes
    within ``timeout`` (no order book server there).
    """
    context = zmq.Context.instance()
    feeds: list[MarketDataClient] = []
    try:
        for symbol in symbols:
            shard = config.shard_of(symbol)
            if shard is None:
                raise UsageError(f"no shard owns {symbol!r}")
            feeds.append(MarketDataClient(shard.market_data_endpoint, shard.snapshot_endpoint, symbol, context))
        deadline = time.monotonic() + timeout
        for feed in feeds:
            try:
                feed.connect(max(0.1, deadline - time.monotonic()))
            except RequestTimeout:
                shard = config.shard_of(feed.symbol)
                raise UsageError(
                    f"the exchange is not reachable: no answer from the order book server of shard {shard.name} "
                    f"({shard.snapshot_endpoint}) within {timeout:g}s; is it running?"
                ) from None
    except BaseException:
        for feed in feeds:
            feed.close()
        raise
    return feeds


def until_interrupted(program) -> int:
    """Run ``program()`` until it returns or Ctrl-C (SIGINT) or SIGTERM stops it; exit status 0
    either way, without a traceback. A reader that went away (``| head``) stops it quietly too."""
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        program()
    except KeyboardInterrupt:
        pass
    except BrokenPipeError:
        # Nobody reads stdout any more: point it at /dev/null so the exit flush is quiet.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0
