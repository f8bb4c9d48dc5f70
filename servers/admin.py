"""Operator commands sent straight to the book servers: ``python main.py end-of-day``.

The end of the trading day expires every resting DAY order. It is a sequenced,
journaled command like any other (`BookExpireDay`, one per symbol), so recovery
replays it at the same place. The OBS reports the expired orders (`Executed` with
`OrderExpired` events) to the TES that owns each one, which tells its traders
(`OrderExpired`) and frees their open-order limits; this command prints how many
orders each book expired.

Operator commands need the operator's credential: with CURVE on (`servers.security`),
the key pair ``operator`` of ``security.keys_dir``. A book server admits no other key
to its command port, and from the TES's key it refuses BookExpireDay.
"""

import time

import zmq
from zmq.utils.monitor import recv_monitor_message

from config.settings import Config, ShardConfig
from engine.messages import OrderExpired
from servers import protocol as p
from servers import security

HANDSHAKE_FAILED = {
    zmq.EVENT_HANDSHAKE_FAILED_AUTH: "it does not know the operator's key",
    zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL: "the CURVE handshake failed (is this the book server's public key?)",
    zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL: "the CURVE handshake failed (is this the book server's public key?)",
}


class AdminError(Exception):
    """An operator command that could not be carried out (unknown symbol, a shard not answering)."""


def end_of_day(config: Config, symbols: list[str] | None = None, timeout: float = 10.0) -> dict[str, int]:
    """Expire the DAY orders of ``symbols`` (every configured symbol if None): symbol -> orders expired."""
    wanted = list(symbols) if symbols else [s for shard in config.shards for s in shard.symbols]
    unknown = [symbol for symbol in wanted if config.shard_of(symbol) is None]
    if unknown:
        raise AdminError(f"no shard serves {', '.join(unknown)}")
    codec = p.Codec(p.ObsReply, p.MAX_SERVER_FRAME_BYTES)
    expired: dict[str, int] = {}
    context = zmq.Context()
    try:
        for shard in config.shards:
            mine = [symbol for symbol in wanted if symbol in shard.symbols]
            if not mine:
                continue
            socket, monitor = _connect(context, config, shard)
            socket.send(codec.encode([p.BookExpireDay(symbol) for symbol in mine]))
            poller = zmq.Poller()
            poller.register(socket, zmq.POLLIN)
            poller.register(monitor, zmq.POLLIN)
            deadline = time.monotonic() + timeout
            while not all(symbol in expired for symbol in mine):
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
                        expired[reply.symbol] = sum(type(event) is OrderExpired for event in reply.events)
                    elif type(reply) is p.CommandRefused:
                        raise AdminError(f"shard {shard.name} refused {reply.symbol}: {reply.text}")
    finally:
        context.destroy(linger=0)
    return {symbol: expired[symbol] for symbol in wanted}


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
