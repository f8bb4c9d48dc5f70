"""The interactive trader: ``python main.py -c trader --trader alice [--key alice-demo-key]``.

A `cmd.Cmd` shell over one `ExchangeClient` session. Each order command waits
for its own answer (accepted/rejected, canceled, replaced...) and prints every
report that arrives meanwhile; while the shell waits for the next line it keeps
the session alive and prints reports as they come (fills of resting orders,
cancels by others). Prices are typed and shown in currency units
(`Instrument.format_price`), quantities in lots.

It reads stdin itself (``os.read`` on the descriptor, polled together with the
socket), so piped input works the same as a terminal: one command per line,
end of input logs out and exits 0.
"""

import cmd
import os
import shlex
import sys
import time
from decimal import Decimal, InvalidOperation

import zmq

from clients import runtime
from clients.client import ClientError, ExchangeClient, RequestRejected, RequestTimeout
from config.settings import Config
from engine.instrument import Instrument
from engine.types import CancelReason, OrderType, Side, TimeInForce
from servers.protocol import (
    CancelRejected,
    LoggedOut,
    MassCancelDone,
    OrderAccepted,
    OrderCanceled,
    OrderExpired,
    OrderFilled,
    OrderRejected,
    OrderReplaced,
    ReplaceRejected,
    SessionRejected,
)

ANSWER_TIMEOUT_S = 5.0
SETTLE_S = 0.05
"""After an answer, how long to keep printing reports that follow it (e.g. the fills of an order)."""
IDLE_POLL_MS = 200
TIF_FLAGS = {"--gtc": TimeInForce.GTC, "--ioc": TimeInForce.IOC, "--fok": TimeInForce.FOK, "--day": TimeInForce.DAY}
CANCEL_WORDS = {
    CancelReason.REQUESTED: "requested",
    CancelReason.UNFILLED: "unfilled remainder",
    CancelReason.MASS_CANCEL: "mass cancel",
    CancelReason.DISCONNECTED: "disconnected",
}


class CommandError(Exception):
    """A command line the shell cannot run; printed, and the shell goes on."""


class LineReader:
    """``readline()`` for `cmd.Cmd` that waits on stdin and the session socket together.

    While no full line is available it calls ``on_socket`` when the socket has
    messages and ``on_idle`` at least every `IDLE_POLL_MS`.
    """

    def __init__(self, fd: int, socket: zmq.Socket, on_socket, on_idle) -> None:
        self.fd = fd
        self._buffer = b""
        self._eof = False
        self._on_socket = on_socket
        self._on_idle = on_idle
        self._poller = zmq.Poller()
        self._poller.register(fd, zmq.POLLIN)
        self._poller.register(socket, zmq.POLLIN)
        self._socket = socket

    def readline(self) -> str:
        while True:
            end = self._buffer.find(b"\n")
            if end >= 0:
                line, self._buffer = self._buffer[: end + 1], self._buffer[end + 1 :]
                return line.decode(errors="replace")
            if self._eof:
                line, self._buffer = self._buffer, b""
                return line.decode(errors="replace")
            ready = dict(self._poller.poll(IDLE_POLL_MS))
            if self._socket in ready:
                self._on_socket()
            if self.fd in ready:
                chunk = os.read(self.fd, 65536)
                if chunk:
                    self._buffer += chunk
                else:
                    self._eof = True
            self._on_idle()


class TraderShell(cmd.Cmd):
    intro = "Type help for the commands, quit to leave."

    def __init__(self, client: ExchangeClient, instruments: list[Instrument], interactive: bool) -> None:
        self.client = client
        self.instruments = {i.symbol: i for i in instruments}
        self.interactive = interactive
        self.waiting_for_input = False
        self.session_ended = False
        reader = LineReader(sys.stdin.fileno(), client.socket, self.pump, self.client.keep_alive)
        super().__init__(stdin=reader)
        self.use_rawinput = False
        self.prompt = f"{client.trader_id}> " if interactive else ""
        if not interactive:
            self.intro = None

    # ------------------------------------------------------------ loop plumbing

    def preloop(self) -> None:
        self.waiting_for_input = True

    def precmd(self, line: str) -> str:
        self.waiting_for_input = False
        return line

    def postcmd(self, stop: bool, line: str) -> bool:
        self.waiting_for_input = True
        sys.stdout.flush()
        return stop or self.session_ended

    def onecmd(self, line: str) -> bool:
        try:
            return super().onecmd(line)
        except CommandError as exc:
            self.say(f"error: {exc}")
        except RequestRejected as exc:
            self.say(f"rejected: {exc}")
        except ClientError as exc:
            self.say(f"error: {exc}")
        return False

    def emptyline(self) -> bool:
        return False

    def get_names(self) -> list[str]:
        """The commands `help` lists: not the aliases."""
        return [name for name in super().get_names() if name not in ("do_EOF", "do_exit")]

    def default(self, line: str) -> bool:
        self.say(f"error: unknown command {line.split()[0]!r} (type help)")
        return False

    def say(self, text: str) -> None:
        print(text, flush=True)

    def pump(self) -> None:
        """Print whatever reports are waiting (called while waiting for input)."""
        messages = self.client.receive(0.0)
        if messages:
            if self.interactive and self.waiting_for_input:
                print()
            self.show(messages)
            if self.interactive and self.waiting_for_input:
                print(self.prompt, end="", flush=True)

    def show(self, messages: list) -> None:
        for message in messages:
            self.say(self.describe(message))
            if isinstance(message, LoggedOut):
                self.session_ended = True

    def wait_for(self, matches) -> None:
        """Print reports until one ``matches`` (then the few that follow it at once)."""
        deadline = time.monotonic() + ANSWER_TIMEOUT_S
        while time.monotonic() < deadline:
            messages = self.client.receive(deadline - time.monotonic())
            self.show(messages)
            if any(matches(m) for m in messages):
                self.show(self.client.receive(SETTLE_S))
                return
        raise RequestTimeout(f"no answer within {ANSWER_TIMEOUT_S}s")

    # ------------------------------------------------------------ formatting

    def price(self, symbol: str, ticks: int) -> str:
        instrument = self.instruments.get(symbol)
        return instrument.format_price(ticks) if instrument else f"{ticks} ticks"

    def describe(self, m) -> str:
        match m:
            case OrderAccepted():
                price = "market" if m.order_type == OrderType.MARKET else self.price(m.symbol, m.price)
                return (f"accepted  order {m.order_id} (client {m.client_order_id}): {m.side.name} {m.quantity} "
                        f"{m.symbol} @ {price} {m.time_in_force.name}")
            case OrderRejected():
                return f"rejected  client {m.client_order_id}: {m.text} ({int(m.reason)})"
            case OrderFilled():
                verb = "bought" if m.side == Side.BUY else "sold"
                role = "taker" if m.aggressor else "maker"
                return (f"filled    order {m.order_id}: {verb} {m.quantity} {m.symbol} @ "
                        f"{self.price(m.symbol, m.price)}, {m.leaves} left (trade {m.trade_id}, {role})")
            case OrderCanceled():
                why = CANCEL_WORDS.get(m.reason, m.reason.name)
                return f"canceled  order {m.order_id}: {m.quantity} {m.symbol} ({why})"
            case OrderReplaced():
                kept = "priority kept" if m.priority_kept else "priority lost"
                return (f"replaced  order {m.order_id}: {m.quantity} {m.symbol} @ "
                        f"{self.price(m.symbol, m.price)} ({kept})")
            case OrderExpired():
                return f"expired   order {m.order_id}: {m.quantity} {m.symbol}"
            case CancelRejected():
                return f"cancel rejected  order {m.order_id}: {m.text} ({int(m.reason)})"
            case ReplaceRejected():
                return f"replace rejected  order {m.order_id}: {m.text} ({int(m.reason)})"
            case MassCancelDone():
                return f"cancelall {m.symbol or 'all symbols'}: {m.canceled} orders"
            case SessionRejected():
                return f"session rejected: {m.text} ({int(m.reason)})"
            case LoggedOut():
                return f"logged out: {m.text}"
        return repr(m)

    def instrument(self, symbol: str) -> Instrument:
        instrument = self.instruments.get(symbol.upper())
        if instrument is None:
            raise CommandError(f"unknown symbol {symbol!r} (have {', '.join(self.instruments)})")
        return instrument

    def parse_price(self, instrument: Instrument, text: str) -> int:
        try:
            ticks = Decimal(text) * instrument.price_scale
        except InvalidOperation:
            raise CommandError(f"not a price: {text}") from None
        if ticks != ticks.to_integral_value() or ticks <= 0:
            raise CommandError(
                f"price {text} is not a positive multiple of {instrument.format_price(1)} for {instrument.symbol}"
            )
        return int(ticks)

    # ------------------------------------------------------------ commands

    def do_buy(self, line: str) -> None:
        """buy SYMBOL QTY [PRICE] [--gtc|--ioc|--fok|--day]: buy QTY lots; no PRICE = market (IOC unless --fok)."""
        self.order(Side.BUY, line)

    def do_sell(self, line: str) -> None:
        """sell SYMBOL QTY [PRICE] [--gtc|--ioc|--fok|--day]: sell QTY lots; no PRICE = market (IOC unless --fok)."""
        self.order(Side.SELL, line)

    def order(self, side: Side, line: str) -> None:
        words = shlex.split(line)
        flags = [w for w in words if w.startswith("--")]
        words = [w for w in words if not w.startswith("--")]
        if len(words) not in (2, 3) or len(flags) > 1 or any(f not in TIF_FLAGS for f in flags):
            raise CommandError(f"usage: {side.name.lower()} SYMBOL QTY [PRICE] [--gtc|--ioc|--fok|--day]")
        instrument = self.instrument(words[0])
        quantity = _int(words[1], "quantity")
        if len(words) == 3:
            order_type, price = OrderType.LIMIT, self.parse_price(instrument, words[2])
            tif = TIF_FLAGS[flags[0]] if flags else TimeInForce.GTC
        else:
            order_type, price = OrderType.MARKET, 0
            tif = TIF_FLAGS[flags[0]] if flags else TimeInForce.IOC
            if tif not in (TimeInForce.IOC, TimeInForce.FOK):
                raise CommandError("a market order is --ioc or --fok")
        client_order_id = self.client.enter_order(instrument.symbol, side, order_type, tif, price, quantity)
        self.wait_for(
            lambda m: isinstance(m, OrderAccepted | OrderRejected) and m.client_order_id == client_order_id
        )

    def do_cancel(self, line: str) -> None:
        """cancel ORDER_ID: cancel one of your open orders (the exchange order id)."""
        words = line.split()
        if len(words) != 1:
            raise CommandError("usage: cancel ORDER_ID")
        order_id = _int(words[0], "order id")
        client_order_id = self.client.cancel(order_id)
        self.wait_for(
            lambda m: (isinstance(m, OrderCanceled) and m.order_id == order_id)
            or (isinstance(m, CancelRejected) and m.client_order_id == client_order_id)
        )

    def do_replace(self, line: str) -> None:
        """replace ORDER_ID PRICE QTY: give an open order a new price and open quantity."""
        words = line.split()
        if len(words) != 3:
            raise CommandError("usage: replace ORDER_ID PRICE QTY")
        order_id = _int(words[0], "order id")
        symbol = self.symbol_of(order_id)
        price = self.parse_price(self.instrument(symbol), words[1])
        quantity = _int(words[2], "quantity")
        client_order_id = self.client.replace(order_id, price, quantity)
        self.wait_for(
            lambda m: (isinstance(m, OrderReplaced) and m.order_id == order_id)
            or (isinstance(m, ReplaceRejected) and m.client_order_id == client_order_id)
        )

    def symbol_of(self, order_id: int) -> str:
        for order in self.client.open_orders():
            if order.order_id == order_id:
                return order.symbol
        raise CommandError(f"no open order {order_id} (see orders)")

    def do_cancelall(self, line: str) -> None:
        """cancelall [SYMBOL]: cancel all your open orders (in SYMBOL only, if given)."""
        words = line.split()
        if len(words) > 1:
            raise CommandError("usage: cancelall [SYMBOL]")
        symbol = self.instrument(words[0]).symbol if words else ""
        self.client.mass_cancel(symbol)
        self.wait_for(lambda m: isinstance(m, MassCancelDone))

    def do_orders(self, line: str) -> None:
        """orders: your open orders."""
        orders = self.client.open_orders()
        self.pump()
        if not orders:
            self.say("no open orders")
            return
        self.say(f"{'order':>16} {'client':>8} {'symbol':<8} {'side':<4} {'tif':<3} {'price':>12} {'open':>8} "
                 f"{'filled':>8}")
        for o in sorted(orders, key=lambda o: o.order_id):
            self.say(f"{o.order_id:>16} {o.client_order_id:>8} {o.symbol:<8} {o.side.name:<4} "
                     f"{o.time_in_force.name:<3} {self.price(o.symbol, o.price):>12} {o.quantity:>8} {o.filled:>8}")

    def do_positions(self, line: str) -> None:
        """positions: positions, cash and P&L (realized; unrealized marked to the last trade)."""
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

    def do_book(self, line: str) -> None:
        """book SYMBOL [LEVELS]: the order book, best prices first (10 levels by default)."""
        words = line.split()
        if len(words) not in (1, 2):
            raise CommandError("usage: book SYMBOL [LEVELS]")
        instrument = self.instrument(words[0])
        levels = _int(words[1], "levels") if len(words) == 2 else 10
        book = self.client.book(instrument.symbol, levels)
        self.pump()
        last = "none" if book.last_price is None else instrument.format_price(book.last_price)
        self.say(f"{book.symbol}  last {last}  (market-data sequence {book.sequence})")
        self.say(f"{'orders':>7} {'bid qty':>9} {'bid':>10} | {'ask':<10} {'ask qty':<9} {'orders':<7}")
        for row in range(max(len(book.bids), len(book.asks))):
            bid = book.bids[row] if row < len(book.bids) else None
            ask = book.asks[row] if row < len(book.asks) else None
            left = (f"{bid[2]:>7} {bid[1]:>9} {instrument.format_price(bid[0]):>10}" if bid else " " * 28)
            right = (f"{instrument.format_price(ask[0]):<10} {ask[1]:<9} {ask[2]:<7}" if ask else "")
            self.say(f"{left} | {right}".rstrip())
        if not book.bids and not book.asks:
            self.say("(empty)")

    def do_instruments(self, line: str) -> None:
        """instruments: the tradable instruments and their reference data."""
        instruments = self.client.instruments()
        self.pump()
        self.instruments = {i.symbol: i for i in instruments}
        self.say(f"{'symbol':<8} {'tick':>8} {'lot':>6} {'min qty':>8} {'max qty':>9} {'band bps':>9}")
        for i in instruments:
            self.say(f"{i.symbol:<8} {i.format_price(i.tick_size):>8} {i.lot_size:>6} {i.min_quantity:>8} "
                     f"{i.max_quantity:>9} {i.price_band_bps:>9}")

    def do_quit(self, line: str) -> bool:
        """quit: log out and leave."""
        return True

    do_exit = do_quit

    def do_EOF(self, line: str) -> bool:
        """End of input: log out and leave."""
        if self.interactive:
            print()
        return True


def _int(text: str, what: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise CommandError(f"{what} must be an integer, got {text!r}") from None
    if value <= 0:
        raise CommandError(f"{what} must be positive, got {text}")
    return value


def main(config: Config, argv: list[str]) -> int:
    return runtime.run(lambda args: _main(config, args), argv)


def _main(config: Config, argv: list[str]) -> int:
    parser = runtime.Parser(prog="main.py -c trader", description="Interactive trading session.")
    runtime.add_credentials(parser)
    parser.add_argument("--cancel-on-disconnect", action="store_true",
                        help="have the exchange cancel your open orders when the session ends")
    args = parser.parse_args(argv)
    client = runtime.logged_on_client(
        config, args.trader, runtime.api_key(args), cancel_on_disconnect=args.cancel_on_disconnect
    )
    ended_by_exchange = False
    try:
        shell = TraderShell(client, client.instruments(), interactive=sys.stdin.isatty())
        print(f"logged on to {config.tes.client_endpoint} as {args.trader}", flush=True)
        shell.cmdloop()
        ended_by_exchange = shell.session_ended
        if not ended_by_exchange:
            client.logout(ANSWER_TIMEOUT_S)
            shell.show(client.receive(0.0))
            print("logged out", flush=True)
    except KeyboardInterrupt:
        print()
    finally:
        client.close()
    return 1 if ended_by_exchange else 0
