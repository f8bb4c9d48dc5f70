"""Operator commands sent straight to the book servers: ``python main.py end-of-day``,
``phase SYMBOL call|continuous|halt``, ``halt --all`` and ``resume --all``.

The end of the trading day expires every resting DAY order. It is a sequenced,
journaled command like any other (`BookExpireDay`, one per symbol), so recovery
replays it at the same place. The OBS reports the expired orders (`Executed` with
`OrderExpired` events) to the TES that owns each one, which tells its traders
(`OrderExpired`) and frees their open-order limits; this command prints how many
orders each book expired.

Trading phases (`servers.phases`) are sequenced, journaled commands too (`BookSetPhase`, one
per symbol). ``phase`` sets one symbol's; ``halt --all`` halts every symbol of every shard
(the venue's kill switch: new orders are refused NOT_ALLOWED_IN_PHASE, cancels still work),
and the schedule leaves a symbol the operator halted alone; ``resume --all`` hands every
symbol back to its schedule: the phase the schedule says now (continuous without one),
with reason SCHEDULE. Into continuous trading from a call or a halt the book uncrosses: the
command prints the uncross's price and volume.

Operator commands need the operator's credential: with CURVE on (`servers.security`),
the key pair ``operator`` of ``security.keys_dir``. A book server admits no other key
to its command port, and from the TES's key it refuses BookExpireDay and BookSetPhase.
"""

import time

import zmq
from zmq.utils.monitor import recv_monitor_message

from config.settings import Config, ShardConfig
from engine.messages import AuctionUncrossed, CommandRejected, OrderExpired, PhaseChanged
from engine.types import Phase
from servers import protocol as p
from servers import security
from servers.phases import scheduled_phase

HANDSHAKE_FAILED = {
    zmq.EVENT_HANDSHAKE_FAILED_AUTH: "it does not know the operator's key",
    zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL: "the CURVE handshake failed (is this the book server's public key?)",
    zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL: "the CURVE handshake failed (is this the book server's public key?)",
}
PHASES = {"call": Phase.CALL, "continuous": Phase.CONTINUOUS, "halt": Phase.HALTED}
"""The phases ``python main.py phase`` sets, by name."""


class AdminError(Exception):
    """An operator command that could not be carried out (unknown symbol, a shard not answering)."""


def end_of_day(config: Config, symbols: list[str] | None = None, timeout: float = 10.0) -> dict[str, int]:
    """Expire the DAY orders of ``symbols`` (every configured symbol if None): symbol -> orders expired."""
    executed = _send(config, [p.BookExpireDay(symbol) for symbol in _symbols(config, symbols)], timeout)
    return {symbol: sum(type(event) is OrderExpired for event in reply.events) for symbol, reply in executed.items()}


def set_phase(config: Config, symbol: str, phase: Phase, timeout: float = 10.0) -> dict[str, dict]:
    """Set ``symbol``'s phase: symbol -> `outcome`."""
    executed = _send(config, [p.BookSetPhase(_symbols(config, [symbol])[0], phase)], timeout)
    return {symbol: outcome(reply) for symbol, reply in executed.items()}


def halt_all(config: Config, timeout: float = 10.0) -> dict[str, dict]:
    """Halt every symbol of every shard: symbol -> `outcome`."""
    executed = _send(config, [p.BookSetPhase(symbol, Phase.HALTED) for symbol in _symbols(config, None)], timeout)
    return {symbol: outcome(reply) for symbol, reply in executed.items()}


def resume_all(config: Config, timeout: float = 10.0) -> dict[str, dict]:
    """Return every symbol of every shard to the phase its schedule says now (continuous without
    one), with reason SCHEDULE (the schedule acts on it again): symbol -> `outcome`."""
    now = time.time_ns()
    commands = [p.BookSetPhase(symbol, scheduled_phase(config, symbol, now), p.PhaseReason.SCHEDULE)
                for symbol in _symbols(config, None)]
    return {symbol: outcome(reply) for symbol, reply in _send(config, commands, timeout).items()}


def outcome(executed: p.Executed) -> dict:
    """A phase command's result: ``{"phase", "previous", "sequence", "uncross"}``, the phases by
    name (lower case), ``uncross`` ``{"price", "volume"}`` or None; AdminError if the book refused it."""
    first = executed.events[0]
    if type(first) is not PhaseChanged:
        text = f"{first.text} ({int(first.reason)})" if type(first) is CommandRejected else repr(first)
        raise AdminError(f"the book of {executed.symbol} refused the phase: {text}")
    uncross = next(({"price": event.price, "volume": event.volume} for event in executed.events
                    if type(event) is AuctionUncrossed), None)
    return {"phase": first.phase.name.lower(), "previous": first.previous.name.lower(),
            "sequence": executed.sequence, "uncross": uncross}


def _symbols(config: Config, symbols: list[str] | None) -> list[str]:
    """``symbols``, every configured symbol if None; AdminError naming those no shard serves."""
    wanted = list(symbols) if symbols else [s for shard in config.shards for s in shard.symbols]
    unknown = [symbol for symbol in wanted if config.shard_of(symbol) is None]
    if unknown:
        raise AdminError(f"no shard serves {', '.join(unknown)}")
    return wanted


def _send(config: Config, commands: list, timeout: float) -> dict[str, p.Executed]:
    """Send ``commands`` (one per symbol) to the shards serving them and wait for each one's
    `Executed`: symbol -> it, in the order of ``commands``. AdminError if a shard refuses one,
    refuses the connection or does not answer within ``timeout`` seconds."""
    codec = p.Codec(p.ObsReply, p.MAX_SERVER_FRAME_BYTES)
    executed: dict[str, p.Executed] = {}
    context = zmq.Context()
    try:
        for shard in config.shards:
            mine = [command for command in commands if command.symbol in shard.symbols]
            if not mine:
                continue
            socket, monitor = _connect(context, config, shard)
            socket.send(codec.encode(mine))
            poller = zmq.Poller()
            poller.register(socket, zmq.POLLIN)
            poller.register(monitor, zmq.POLLIN)
            deadline = time.monotonic() + timeout
            while not all(command.symbol in executed for command in mine):
                left = deadline - time.monotonic()
                ready = dict(poller.poll(int(left * 1000) + 1)) if left > 0 else {}
                if not ready:
                    raise AdminError(f"shard {shard.name} ({shard.command_endpoint}) did not answer in {timeout:g} s")
                if monitor in ready:
                    event = recv_monitor_message(monitor)["event"]
                    if event in HANDSHAKE_FAILED:
                        raise AdminError(f"shard {shard.name} ({shard.command_endpoint}) refused the connection: "
                                         f"{HANDSHAKE_FAILED[event]}")
                if socket not in ready:
                    continue
                for reply in codec.decode(socket.recv()):
                    if type(reply) is p.Executed:
                        executed[reply.symbol] = reply
                    elif type(reply) is p.CommandRefused:
                        raise AdminError(f"shard {shard.name} refused {reply.symbol}: {reply.text} "
                                         f"({int(reply.reason)})")
    finally:
        context.destroy(linger=0)
    return {command.symbol: executed[command.symbol] for command in commands}


def _connect(context: zmq.Context, config: Config, shard: ShardConfig) -> tuple[zmq.Socket, zmq.Socket]:
    """A DEALER to the shard's command port, with the operator's CURVE key unless CURVE is
    off, and a monitor of its handshakes."""
    socket = context.socket(zmq.DEALER)
    socket.setsockopt(zmq.LINGER, 0)
    if config.security.keys_dir:
        keys = security.Keys(config.security.keys_dir)
        try:
            security.connect_curve(socket, keys.own(security.OPERATOR),
                                   keys.public(security.shard_key_name(shard.name)))
        except security.KeyFileError as exc:
            raise AdminError(f"the operator's credential: {exc}") from None
    monitor = socket.get_monitor_socket(zmq.EVENT_HANDSHAKE_FAILED_AUTH | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
                                        | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL)
    socket.connect(shard.command_endpoint)
    return socket, monitor
