"""The interactive trader: ``python main.py -c trader --trader alice [--key KEY] [--endpoint TES]``.

A command line over one `ExchangeClient` session. Each order command waits for
its own answer (accepted or rejected, canceled, replaced...) and prints every
report that arrives meanwhile; while the shell waits for the next line it keeps
the session alive and prints reports as they come (fills of resting orders,
cancels by others). Prices are typed and shown in currency units, quantities in
lots; a reject names the rule broken and its values, in decimals
(`clients.terminal.reject_text`). Every command parses its arguments with its
own `argparse` parser, so a bad flag or argument is named in the error, and
``help COMMAND`` shows the command's usage.

``buy`` and ``sell`` enter every kind of order (`order_terms` reads the flags): a stop
(``--stop PRICE``: with a limit PRICE a stop-limit, without a stop-market, which takes no time
in force), an iceberg (``--iceberg QTY``, the display quantity), ``--post-only``, a self-trade
prevention mode (``--stp MODE``) and good-till-date (``--gtd TIME``: ``HH:MM[:SS]`` today, local
time, or an ISO date and time; `clients.terminal.parse_time`), which replaces the other time in
force flags. Flags that do not go together, or a GTD time already past, are refused before
anything is sent.

``book SYMBOL`` shows the TES's view of the book: its trading phase in the title
(``ACME  call  last 99.87  (market-data sequence 153)``) and, in a call or a halt, the
indicative uncross (``indicative uncross 40 @ 100.05``, ``none`` when nothing would
trade; the book may be crossed then), with why the phase changed (``call (volatility
interruption until 14:02:05.000000)``). The last auction comes with the market data only: the
live ladder (``python main.py -c book``) and the tape show it.

Input
-----
On a terminal (stdin and stdout), lines are read with prompt_toolkit: line
editing, a history kept across runs in a file (``--history``, default
`HISTORY_FILE`), and tab completion of commands, symbols, flags and the ids of
the open orders the shell has seen. prompt_toolkit rather than the standard
library's readline because the shell must serve its session while a line is
being typed (heartbeats, and fills printed above the line being edited):
readline's ``input()`` holds the thread with no way to also wait on the session's
socket, so it would take a second thread, which ZeroMQ sockets do not allow, and
escape codes to redraw the line. prompt_toolkit runs the prompt on an event loop
that also runs the session's pump (`_pump_while_prompting`) and redraws the
prompt below whatever is printed. Anything else on stdin (a pipe, a file) is read
as it comes, polled together with the socket (`LineReader`): one command per line,
no prompt, no history.

Sessions
--------
When the exchange ends the session (logged out, replaced by a new logon of the
same trader, timed out, shut down, or forgotten by a restarted TES), the shell
says so and why at once, stops waiting for any answer, and refuses the commands
that need a session until ``logon`` logs on again; ``quit`` or the end of input
(Ctrl-D) leaves. Leaving is exit status 0, however the session ended.
"""

import argparse
import asyncio
import os
import shlex
import sys
import time
from datetime import datetime

import zmq
from prompt_toolkit import PromptSession
from prompt_toolkit.completion import Completer, Completion
from prompt_toolkit.history import FileHistory, InMemoryHistory
from prompt_toolkit.patch_stdout import patch_stdout

from clients import runtime
from clients.client import ClientError, ExchangeClient, LogonError, RequestRejected, RequestTimeout, SessionEnded
from clients.reports import ReportWords
from clients.terminal import PriceError, TimeError, local_time, parse_price, parse_time, phase_text, uncross_text
from config.settings import STP_MODES, Config, stp_mode
from engine.instrument import Instrument
from engine.types import OrderType, Phase, RejectReason, Side, TimeInForce
from servers.protocol import (
    CancelRejected,
    LoggedOut,
    MassCancelDone,
    OpenOrder,
    OrderAccepted,
    OrderCanceled,
    OrderDecremented,
    OrderExpired,
    OrderFilled,
    OrderRejected,
    OrderReplaced,
    ReplaceRejected,
    SessionRejected,
)

ANSWER_TIMEOUT_S = 5.0
LOGON_TIMEOUT_S = 10.0
SETTLE_S = 0.05
"""After an answer, how long to keep printing reports that follow it (e.g. the fills of an order)."""
IDLE_POLL_MS = 200
HISTORY_FILE = "~/.exchange_history"
TIF_FLAGS = {"--gtc": TimeInForce.GTC, "--ioc": TimeInForce.IOC, "--fok": TimeInForce.FOK, "--day": TimeInForce.DAY}
TIF_HELP = {
    "--gtc": "good till canceled (a limit order's default)",
    "--ioc": "immediate or cancel: what does not trade at once is canceled (a market order's default)",
    "--fok": "fill or kill: the whole quantity at once, or nothing",
    "--day": "rests until the end of the trading day",
}
GTD_FLAG = "--gtd"
ORDER_FLAGS = ("--stop", "--iceberg", "--post-only", "--stp")
"""The order flags beside the time in force ones (each at most once)."""
ALIASES = {"exit": "quit", "?": "help"}
OFFLINE_COMMANDS = frozenset({"help", "logon", "quit"})
"""The commands that need no session."""


class CommandError(Exception):
    """A command line the shell cannot run; printed as ``error: ...``, and the shell goes on."""


# ================================================================ commands and their arguments


class CommandParser(argparse.ArgumentParser):
    """One command's arguments; a bad one raises `CommandError` naming the command and the argument."""

    def __init__(self, name: str, arguments: str, summary: str, description: str = "") -> None:
        super().__init__(prog=name, usage=f"{name} {arguments}".rstrip(), description=description or summary,
                         add_help=False, allow_abbrev=False)
        self.summary = summary

    def error(self, message: str):
        raise CommandError(f"{self.prog}: {message} (usage: {self.usage})")


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def build_parsers() -> dict[str, CommandParser]:
    """Every command's parser, by name, in the order `help` lists them."""
    parsers: dict[str, CommandParser] = {}

    def add(name: str, arguments: str, summary: str, description: str = "") -> CommandParser:
        parsers[name] = parser = CommandParser(name, arguments, summary, description)
        return parser

    for side in ("buy", "sell"):
        parser = add(side, "SYMBOL QTY [PRICE] [--gtc|--ioc|--fok|--day|--gtd TIME] [--stop PRICE] [--iceberg QTY] "
                     "[--post-only] [--stp MODE]",
                     f"{side} at a limit price, or at market; stops, icebergs, post-only, GTD",
                     f"{side.capitalize()} QTY lots of SYMBOL: a limit order at PRICE (currency units, e.g. 99.50), "
                     "or without PRICE a market order. With --stop, a stop order held until a trade prints at "
                     f"the stop price or {'above' if side == 'buy' else 'below'}: then a limit order at PRICE "
                     "(stop-limit), or without PRICE a market order (stop-market, which has no time in force).")
        parser.add_argument("symbol", metavar="SYMBOL", help="the instrument (see instruments)")
        parser.add_argument("quantity", metavar="QTY", type=_count, help="lots")
        parser.add_argument("price", metavar="PRICE", nargs="?", help="the limit price; none: a market order")
        tifs = parser.add_mutually_exclusive_group()
        for flag, tif in TIF_FLAGS.items():
            tifs.add_argument(flag, dest="tif", action="store_const", const=tif, help=TIF_HELP[flag])
        tifs.add_argument(GTD_FLAG, dest="gtd", metavar="TIME",
                          help="good till TIME: HH:MM[:SS] today (local time), or an ISO date and time "
                               "(2026-12-09T16:00, local time unless it ends in Z or an offset)")
        parser.add_argument("--stop", metavar="PRICE", help="the stop price: a stop-limit order (with PRICE) or "
                                                            "a stop-market order (without)")
        parser.add_argument("--iceberg", metavar="QTY", type=_count,
                            help="show at most QTY lots at a time (a limit order: an iceberg)")
        parser.add_argument("--post-only", action="store_true",
                            help="only ever rest in the book: refused if it would trade on arrival")
        parser.add_argument("--stp", metavar="MODE", choices=STP_MODES,
                            help=f"self-trade prevention against your account's resting orders: {', '.join(STP_MODES)} "
                                 "(default: the trader's)")
    parser = add("cancel", "ORDER_ID", "cancel one of your open orders")
    parser.add_argument("order_id", metavar="ORDER_ID", type=_count, help="the exchange order id (see orders)")
    parser = add("replace", "ORDER_ID PRICE QTY", "give an open order a new price and open quantity",
                 "Give an open order a new price and open quantity: it keeps its time priority only if the "
                 "price is the same and the quantity smaller.")
    parser.add_argument("order_id", metavar="ORDER_ID", type=_count, help="the exchange order id (see orders)")
    parser.add_argument("price", metavar="PRICE", help="the new limit price")
    parser.add_argument("quantity", metavar="QTY", type=_count, help="the new open quantity, lots")
    parser = add("cancelall", "[SYMBOL]", "cancel all your open orders (in SYMBOL only, if given)")
    parser.add_argument("symbol", metavar="SYMBOL", nargs="?", help="only this instrument's orders")
    add("orders", "", "your open orders")
    add("positions", "", "positions, cash and P&L (realized; unrealized marked to the last trade)")
    parser = add("book", "SYMBOL [LEVELS]", "the order book now, best prices first",
                 "The order book now, best prices first (python main.py -c book SYMBOL follows it live).")
    parser.add_argument("symbol", metavar="SYMBOL", help="the instrument")
    parser.add_argument("levels", metavar="LEVELS", nargs="?", type=_count, default=10,
                        help="price levels a side (default: 10)")
    add("instruments", "", "the tradable instruments and their reference data")
    add("logon", "", "log on again, after the exchange ended the session")
    parser = add("help", "[COMMAND]", "the commands, or one command's arguments")
    parser.add_argument("command", metavar="COMMAND", nargs="?", help="the command")
    add("quit", "", "log out and leave (also: exit, or Ctrl-D)")
    return parsers


COMMANDS = tuple(build_parsers())


def order_terms(command: str, args: argparse.Namespace, now: datetime | None = None
                ) -> tuple[OrderType, TimeInForce, int]:
    """What a buy or sell's arguments make of it: (order type, time in force, GTD expiry in ns or 0);
    `CommandError` for flags that do not go together, or a GTD time that is not one or has passed
    (at ``now``, by default the clock now, local time)."""
    stop, limit = args.stop is not None, args.price is not None
    expire_at = 0
    if args.gtd is not None:
        now = now or datetime.now().astimezone()
        try:
            expire_at = parse_time(args.gtd, now)
        except TimeError as exc:
            raise CommandError(f"{command}: argument --gtd: {exc}") from None
        if expire_at <= int(now.timestamp() * 1_000_000) * 1_000:
            raise CommandError(f"{command}: argument --gtd: {local_time(expire_at)} has passed")
    tif = TimeInForce.GTD if expire_at else args.tif
    if stop and not limit:
        if tif is not None:
            raise CommandError(f"{command}: a stop-market order (--stop without PRICE) has no time in force: it "
                               f"never expires and trades immediate-or-cancel once triggered; not {_flag(tif)}")
        return OrderType.STOP, TimeInForce.GTC, 0
    if not limit:
        tif = TimeInForce.IOC if tif is None else tif
        if tif not in (TimeInForce.IOC, TimeInForce.FOK):
            raise CommandError(f"{command}: a market order (no PRICE) is --ioc or --fok, not {_flag(tif)}")
        return OrderType.MARKET, tif, 0
    return OrderType.STOP_LIMIT if stop else OrderType.LIMIT, TimeInForce.GTC if tif is None else tif, expire_at


def _flag(tif: TimeInForce) -> str:
    return f"--{tif.name.lower()}"


def complete(text: str, symbols, order_ids) -> list[str]:
    """The words that can complete the last word of ``text`` (the line up to the cursor):
    command names first, then per command its symbols, flags, order ids or command names."""
    words = text.split()
    if not words or text[-1].isspace():
        words.append("")
    current, position = words[-1], len(words) - 1
    command = ALIASES.get(words[0], words[0])
    if position == 0:
        candidates = COMMANDS
    elif command in ("buy", "sell") and current.startswith("-"):
        used = set(words[:-1])
        tifs = () if used & {*TIF_FLAGS, GTD_FLAG} else (*TIF_FLAGS, GTD_FLAG)
        candidates = (*tifs, *(flag for flag in ORDER_FLAGS if flag not in used))
    elif command in ("buy", "sell") and len(words) > 1 and words[-2] == "--stp":
        candidates = STP_MODES
    elif position == 1 and command in ("buy", "sell", "book", "cancelall"):
        candidates = sorted(symbols)
    elif position == 1 and command in ("cancel", "replace"):
        candidates = [str(order_id) for order_id in sorted(order_ids)]
    elif position == 1 and command == "help":
        candidates = COMMANDS
    else:
        candidates = ()
    return [word for word in candidates if word.lower().startswith(current.lower())]


# ================================================================ the shell


class TraderShell:
    """The commands over one session; `run` takes one line, `pump` prints what arrived meanwhile."""

    def __init__(self, client: ExchangeClient, instruments: list[Instrument]) -> None:
        self.client = client
        self.instruments = {i.symbol: i for i in instruments}
        self.parsers = build_parsers()
        self.words = ReportWords(self.instruments)
        self.symbols_of = self.words.symbols_of
        self.open_ids: set[int] = set()
        """The open orders seen in reports since the shell started (for completion)."""
        self.told_end = False
        self.leaving = False

    @property
    def prompt(self) -> str:
        return f"{self.client.trader_id}> " if self.client.logged_on else f"{self.client.trader_id} (logged out)> "

    def completions(self, text: str) -> list[str]:
        return complete(text, self.instruments, self.open_ids)

    # ------------------------------------------------------------ running a line

    def run(self, line: str) -> bool:
        """Run one command line; True when the shell should end."""
        try:
            words = shlex.split(line)
        except ValueError as exc:
            self.say(f"error: {exc}")
            return False
        if not words:
            return False
        name = ALIASES.get(words[0], words[0])
        try:
            parser = self.parsers.get(name)
            if parser is None:
                raise CommandError(f"unknown command {words[0]!r} (type help)")
            args = parser.parse_args(words[1:])
            if name not in OFFLINE_COMMANDS and not self.client.logged_on:
                raise CommandError(f"{name}: not logged on ({self.why_ended()}); type logon to log on again, "
                                   "or quit")
            return bool(getattr(self, f"do_{name}")(args))
        except CommandError as exc:
            self.say(f"error: {exc}")
        except SessionEnded:
            pass  # told by tell_end, below
        except RequestRejected as exc:
            self.say(f"rejected: {exc}")
        except ClientError as exc:
            self.say(f"error: {name}: {exc}")
        finally:
            self.tell_end()
            sys.stdout.flush()
        return False

    def say(self, text: str) -> None:
        print(text, flush=True)

    def pump(self) -> None:
        """Print the reports waiting, and send a heartbeat if one is due (called while waiting for input)."""
        self.show(self.client.receive(0.0))

    def show(self, messages: list) -> None:
        for message in messages:
            self._follow(message)
            text = self.describe(message)
            if text is not None:
                self.say(text)
        self.tell_end()

    def tell_end(self) -> None:
        """Say, once, that the exchange ended the session, why, and what can be done."""
        if self.client.logged_on or self.client.ended is None or self.told_end or self.leaving:
            return
        self.told_end = True
        self.say(f"session ended: {self.why_ended()}; type logon to log on again, or quit")

    def why_ended(self) -> str:
        ended = self.client.ended
        if isinstance(ended, LoggedOut):
            return ended.text
        if isinstance(ended, SessionRejected) and ended.reason == RejectReason.NOT_LOGGED_ON:
            return "the exchange no longer knows this session (the trading engine server restarted)"
        return "never logged on" if ended is None else ended.text

    def wait_for(self, matches) -> None:
        """Print reports until one ``matches`` (then the few that follow it at once), or the session ends."""
        deadline = time.monotonic() + ANSWER_TIMEOUT_S
        while time.monotonic() < deadline:
            messages = self.client.receive(deadline - time.monotonic())
            self.show(messages)
            if any(matches(m) for m in messages):
                self.show(self.client.receive(SETTLE_S))
                return
            if not self.client.logged_on:
                return
        raise RequestTimeout(f"no answer within {ANSWER_TIMEOUT_S:g}s")

    def _follow(self, message) -> None:
        """Keep the ids of open orders (for completion) from the reports."""
        kind = type(message)
        if kind is OrderAccepted:
            if message.order_type in (OrderType.STOP, OrderType.STOP_LIMIT) or (
                    message.order_type == OrderType.LIMIT and message.time_in_force not in (TimeInForce.IOC,
                                                                                             TimeInForce.FOK)):
                self.open_ids.add(message.order_id)
        elif kind is OrderCanceled or kind is OrderExpired or (
                (kind is OrderFilled or kind is OrderDecremented) and message.leaves == 0):
            self.open_ids.discard(message.order_id)

    # ------------------------------------------------------------ formatting

    def price(self, symbol: str, ticks: int) -> str:
        return self.words.price(symbol, ticks)

    def describe(self, m) -> str | None:
        if type(m) is LoggedOut:
            return None  # tell_end says it
        if type(m) is SessionRejected and m.reason == RejectReason.NOT_LOGGED_ON and not self.client.logged_on:
            return None  # the end of the session is told once, by tell_end
        return self.words.describe(m)

    def instrument(self, command: str, symbol: str) -> Instrument:
        instrument = self.instruments.get(symbol.upper())
        if instrument is None:
            raise CommandError(f"{command}: argument SYMBOL: unknown symbol {symbol!r} "
                               f"(have {', '.join(self.instruments)})")
        return instrument

    def parse_price(self, command: str, instrument: Instrument, text: str, argument: str = "PRICE") -> int:
        try:
            return parse_price(instrument, text)
        except PriceError as exc:
            raise CommandError(f"{command}: argument {argument}: {exc}") from None

    def open_order(self, command: str, order_id: int) -> OpenOrder:
        """One of the trader's open orders, as the exchange has it; `CommandError` if there is none."""
        orders = self.client.open_orders()
        self.pump()
        for order in orders:
            if order.order_id == order_id:
                return order
        raise CommandError(f"{command}: no open order {order_id} (see orders)")

    # ------------------------------------------------------------ commands

    def do_buy(self, args: argparse.Namespace) -> None:
        self.order(Side.BUY, "buy", args)

    def do_sell(self, args: argparse.Namespace) -> None:
        self.order(Side.SELL, "sell", args)

    def order(self, side: Side, command: str, args: argparse.Namespace) -> None:
        instrument = self.instrument(command, args.symbol)
        order_type, tif, expire_at = order_terms(command, args)
        price = stop_price = 0
        if order_type in (OrderType.LIMIT, OrderType.STOP_LIMIT):
            price = self.parse_price(command, instrument, args.price)
        if order_type in (OrderType.STOP, OrderType.STOP_LIMIT):
            stop_price = self.parse_price(command, instrument, args.stop, "--stop")
        stp = None if args.stp is None else stp_mode(args.stp)
        client_order_id = self.client.enter_order(
            instrument.symbol, side, order_type, tif, price, args.quantity, stop_price=stop_price,
            display_quantity=args.iceberg or 0, post_only=args.post_only, stp=stp, expire_at=expire_at)
        self.symbols_of[client_order_id] = instrument.symbol
        self.wait_for(
            lambda m: isinstance(m, OrderAccepted | OrderRejected) and m.client_order_id == client_order_id
        )

    def do_cancel(self, args: argparse.Namespace) -> None:
        order_id = self.open_order("cancel", args.order_id).order_id
        client_order_id = self.client.cancel(order_id)
        self.wait_for(
            lambda m: (isinstance(m, OrderCanceled) and m.order_id == order_id)
            or (isinstance(m, CancelRejected) and m.client_order_id == client_order_id)
        )

    def do_replace(self, args: argparse.Namespace) -> None:
        order = self.open_order("replace", args.order_id)
        price = self.parse_price("replace", self.instrument("replace", order.symbol), args.price)
        client_order_id = self.client.replace(order.order_id, price, args.quantity)
        self.symbols_of[client_order_id] = order.symbol
        self.wait_for(
            lambda m: (isinstance(m, OrderReplaced) and m.order_id == order.order_id)
            or (isinstance(m, ReplaceRejected) and m.client_order_id == client_order_id)
        )

    def do_cancelall(self, args: argparse.Namespace) -> None:
        symbol = self.instrument("cancelall", args.symbol).symbol if args.symbol else ""
        self.client.mass_cancel(symbol)
        self.wait_for(lambda m: isinstance(m, MassCancelDone))

    def do_orders(self, args: argparse.Namespace) -> None:
        orders = self.client.open_orders()
        self.pump()
        self.open_ids = {o.order_id for o in orders}
        if not orders:
            self.say("no open orders")
            return
        self.say(f"{'order':>16} {'client':>8} {'symbol':<8} {'side':<4} {'tif':<3} {'price':>12} {'open':>8} "
                 f"{'filled':>8}  details")
        for o in sorted(orders, key=lambda o: o.order_id):
            price = "market" if o.order_type in (OrderType.MARKET, OrderType.STOP) else self.price(o.symbol, o.price)
            self.say(f"{o.order_id:>16} {o.client_order_id:>8} {o.symbol:<8} {o.side.name:<4} "
                     f"{o.time_in_force.name:<3} {price:>12} {o.quantity:>8} {o.filled:>8}  "
                     f"{self.words.features(o)}".rstrip())

    def do_positions(self, args: argparse.Namespace) -> None:
        report = self.client.positions()
        self.pump()
        self.say(f"cash {self.money(report.cash)}")
        if not report.positions:
            self.say("no positions")
            return
        self.say(f"{'symbol':<8} {'position':>10} {'avg price':>12} {'last':>12} {'realized':>14} "
                 f"{'unrealized':>14}")
        for p in report.positions:
            instrument = self.instruments.get(p.symbol)
            average = f"{p.average_price / instrument.price_scale:.4f}" if instrument else f"{p.average_price:.2f}"
            self.say(f"{p.symbol:<8} {p.quantity:>10} {average:>12} {self.price(p.symbol, p.last_price):>12} "
                     f"{self.price(p.symbol, p.realized_pnl):>14} {self.price(p.symbol, p.unrealized_pnl):>14}")

    def money(self, value: int) -> str:
        """Ticks x lots in currency when every instrument shares one price scale."""
        scales = {i.price_scale for i in self.instruments.values()}
        if len(scales) == 1:
            return next(iter(self.instruments.values())).format_price(value)
        return f"{value} ticks x lots"

    def do_book(self, args: argparse.Namespace) -> None:
        instrument = self.instrument("book", args.symbol)
        book = self.client.book(instrument.symbol, args.levels)
        self.pump()
        last = "none" if book.last_price is None else instrument.format_price(book.last_price)
        phase = phase_text(book.phase, book.phase_reason, book.phase_until)
        self.say(f"{book.symbol}  {phase}  last {last}  (market-data sequence {book.sequence})")
        if book.phase != Phase.CONTINUOUS:
            self.say(f"indicative uncross {uncross_text(instrument, book.indicative_price, book.indicative_volume)}")
        self.say(f"{'orders':>7} {'bid qty':>9} {'bid':>10} | {'ask':<10} {'ask qty':<9} {'orders':<7}")
        for row in range(max(len(book.bids), len(book.asks))):
            bid = book.bids[row] if row < len(book.bids) else None
            ask = book.asks[row] if row < len(book.asks) else None
            left = (f"{bid[2]:>7} {bid[1]:>9} {instrument.format_price(bid[0]):>10}" if bid else " " * 28)
            right = (f"{instrument.format_price(ask[0]):<10} {ask[1]:<9} {ask[2]:<7}" if ask else "")
            self.say(f"{left} | {right}".rstrip())
        if not book.bids and not book.asks:
            self.say("(empty)")

    def do_instruments(self, args: argparse.Namespace) -> None:
        instruments = self.client.instruments()
        self.pump()
        self.instruments = {i.symbol: i for i in instruments}
        self.say(f"{'symbol':<8} {'tick':>8} {'lot':>6} {'min qty':>8} {'max qty':>9} {'band bps':>9}")
        for i in instruments:
            self.say(f"{i.symbol:<8} {i.format_price(i.tick_size):>8} {i.lot_size:>6} {i.min_quantity:>8} "
                     f"{i.max_quantity:>9} {i.price_band_bps:>9}")

    def do_logon(self, args: argparse.Namespace) -> None:
        if self.client.logged_on:
            raise CommandError(f"logon: already logged on as {self.client.trader_id}")
        try:
            self.client.logon(LOGON_TIMEOUT_S)
        except LogonError as exc:
            raise CommandError(f"logon: {exc}") from None
        self.told_end = False
        self.say(f"logged on to {self.client.endpoint} as {self.client.trader_id}")
        self.show(self.client.receive(SETTLE_S))

    def do_help(self, args: argparse.Namespace) -> None:
        if args.command is None:
            self.say("commands (help COMMAND for its arguments):")
            for name, parser in self.parsers.items():
                self.say(f"  {name:<12} {parser.summary}")
            return
        parser = self.parsers.get(ALIASES.get(args.command, args.command))
        if parser is None:
            raise CommandError(f"help: no command {args.command!r} (type help)")
        self.say(parser.format_help().rstrip())

    def do_quit(self, args: argparse.Namespace) -> bool:
        return True


# ================================================================ reading lines


class LineReader:
    """``readline()`` of a non-terminal stdin that waits on it and the session socket together.

    While no full line is available it calls ``serve`` after every wait: when the socket
    has messages, when stdin gave something, and at least every `IDLE_POLL_MS`.
    """

    def __init__(self, fd: int, socket: zmq.Socket, serve) -> None:
        self.fd = fd
        self._buffer = b""
        self._eof = False
        self._serve = serve
        self._poller = zmq.Poller()
        self._poller.register(fd, zmq.POLLIN)
        self._poller.register(socket, zmq.POLLIN)

    def readline(self) -> str:
        """The next line with its newline; "" at the end of input."""
        while True:
            end = self._buffer.find(b"\n")
            if end >= 0:
                line, self._buffer = self._buffer[: end + 1], self._buffer[end + 1 :]
                return line.decode(errors="replace")
            if self._eof:
                line, self._buffer = self._buffer, b""
                return line.decode(errors="replace")
            if self.fd in dict(self._poller.poll(IDLE_POLL_MS)):
                chunk = os.read(self.fd, 65536)
                if chunk:
                    self._buffer += chunk
                else:
                    self._eof = True
            self._serve()


def read_piped(shell: TraderShell) -> None:
    """Run the lines of a non-terminal stdin until ``quit`` or its end.

    The reader waits on the session's socket itself, which takes the session's upkeep over
    from the client's keeper thread: `TraderShell.pump` sends the heartbeats (and shows what
    the client kept before)."""
    reader = LineReader(sys.stdin.fileno(), shell.client.socket, shell.pump)
    shell.pump()
    while line := reader.readline():
        if shell.run(line):
            return


class _ShellCompleter(Completer):
    def __init__(self, shell: TraderShell) -> None:
        self.shell = shell

    def get_completions(self, document, complete_event):
        text = document.text_before_cursor
        current = "" if not text or text[-1].isspace() else text.split()[-1]
        for word in self.shell.completions(text):
            yield Completion(word, start_position=-len(current))


def read_terminal(shell: TraderShell, history: str) -> None:
    """Run the lines typed at the terminal until ``quit`` or Ctrl-D; Ctrl-C clears the line
    (while a command waits, it stops waiting)."""
    session = PromptSession(
        history=FileHistory(os.path.expanduser(history)) if history else InMemoryHistory(),
        completer=_ShellCompleter(shell), complete_while_typing=False,
    )
    print("Type help for the commands, quit to leave.", flush=True)
    while True:
        with patch_stdout():
            try:
                line = session.prompt(lambda: shell.prompt,
                                      pre_run=lambda: session.app.create_background_task(_pump_while_prompting(shell)))
            except KeyboardInterrupt:
                continue
            except EOFError:
                return
        try:
            if shell.run(line):
                return
        except KeyboardInterrupt:
            shell.say("interrupted")


async def _pump_while_prompting(shell: TraderShell) -> None:
    """Serve the session while a line is being typed: reports printed above it, heartbeats sent."""
    while True:
        shell.pump()
        await asyncio.sleep(IDLE_POLL_MS / 1000)


# ================================================================ the program


def main(config: Config, argv: list[str]) -> int:
    return runtime.run(lambda args: _main(config, args), argv)


def _main(config: Config, argv: list[str]) -> int:
    parser = runtime.Parser(prog="main.py -c trader", description="Interactive trading session.")
    runtime.add_credentials(parser)
    parser.add_argument("--endpoint", help="the TES's client endpoint (default: tes.client_endpoint of the config)")
    parser.add_argument("--history", default=HISTORY_FILE,
                        help=f"where a terminal session keeps its command history (default: {HISTORY_FILE}; "
                        "'' keeps none)")
    parser.add_argument("--timeout", type=float, default=LOGON_TIMEOUT_S,
                        help=f"seconds to wait for the logon (default: {LOGON_TIMEOUT_S:g})")
    parser.add_argument("--cancel-on-disconnect", action="store_true",
                        help="have the exchange cancel your open orders when the session ends")
    args = parser.parse_args(argv)
    endpoint = args.endpoint or config.tes.client_endpoint
    terminal = sys.stdin.isatty() and sys.stdout.isatty()
    if terminal and args.history and not os.path.isdir(os.path.dirname(os.path.expanduser(args.history)) or "."):
        raise runtime.UsageError(f"--history {args.history}: no such directory")
    client = _logged_on(config, endpoint, args)
    try:
        shell = TraderShell(client, client.instruments())
        print(f"logged on to {endpoint} as {args.trader}", flush=True)
        if terminal:
            read_terminal(shell, args.history)
        else:
            read_piped(shell)
        shell.leaving = True
        if client.logged_on:
            client.logout(ANSWER_TIMEOUT_S)
            shell.show(client.receive(0.0))
            print("logged out", flush=True)
    except KeyboardInterrupt:
        print()
    finally:
        client.close()
    return 0


def _logged_on(config: Config, endpoint: str, args: argparse.Namespace) -> ExchangeClient:
    try:
        client = ExchangeClient(endpoint, args.trader, runtime.api_key(args), args.cancel_on_disconnect,
                                server_key=runtime.tes_server_key(config))
    except zmq.ZMQError as exc:
        raise runtime.UsageError(f"--endpoint {endpoint!r}: {exc}") from None
    try:
        client.logon(args.timeout)
    except LogonError as exc:
        client.close()
        if exc.unreachable:
            raise runtime.UsageError(f"the exchange is not reachable: {exc}; is it running?") from None
        if exc.reason is None:
            raise runtime.UsageError(f"the exchange did not admit the connection: {exc}") from None
        raise runtime.UsageError(str(exc)) from None
    return client
