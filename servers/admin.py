"""Operator commands sent straight to the book servers: ``python main.py end-of-day``.

The end of the trading day expires every resting DAY order. It is a sequenced,
journaled command like any other (`BookExpireDay`, one per symbol), so recovery
replays it at the same place. The OBS reports the expired orders (`Executed` with
`OrderExpired` events) to the TES that owns each one, which tells its traders
(`OrderExpired`) and frees their open-order limits; this command prints how many
orders each book expired.
"""

import time

import zmq

from config.settings import Config
from engine.messages import OrderExpired
from servers import protocol as p


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
            socket = context.socket(zmq.DEALER)
            socket.setsockopt(zmq.LINGER, 0)
            socket.connect(shard.command_endpoint)
            socket.send(codec.encode([p.BookExpireDay(symbol) for symbol in mine]))
            deadline = time.monotonic() + timeout
            while not all(symbol in expired for symbol in mine):
                left = deadline - time.monotonic()
                if left <= 0 or not socket.poll(int(left * 1000) + 1):
                    raise AdminError(f"shard {shard.name} ({shard.command_endpoint}) did not answer in {timeout:g} s")
                for reply in codec.decode(socket.recv()):
                    if type(reply) is p.Executed:
                        expired[reply.symbol] = sum(type(event) is OrderExpired for event in reply.events)
                    elif type(reply) is p.CommandRefused:
                        raise AdminError(f"shard {shard.name} refused {reply.symbol}: {reply.text}")
    finally:
        context.destroy(linger=0)
    return {symbol: expired[symbol] for symbol in wanted}
