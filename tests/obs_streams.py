"""Book command streams for the OBS tests: the protocol's commands over a shard's two symbols."""

import random

from servers.protocol import BookCancel, BookExpireDay, BookReplace, BookSubmit

SYMBOLS = ["ACME", "BOLT"]


def commands(count, seed=7):
    """A mixed command stream over two symbols from two TES id prefixes (fills, cancels, DAY expiry)."""
    rng = random.Random(seed)
    live = {symbol: [] for symbol in SYMBOLS}
    counters = {1: 0, 2: 0}
    out = []
    for _ in range(count):
        symbol = rng.choice(SYMBOLS)
        roll = rng.random()
        if roll < 0.6 or not live[symbol]:
            tes = rng.choice((1, 2))
            counters[tes] += 1
            order_id = (tes << 48) | counters[tes]
            side = rng.randrange(2)
            price = 100 + rng.randrange(-5, 6) + (2 if side else -2)
            tif = rng.choice((0, 0, 1, 3))
            out.append(BookSubmit(symbol, order_id, side, 0, tif, price, rng.randrange(1, 20)))
            live[symbol].append(order_id)
        elif roll < 0.8:
            out.append(BookCancel(symbol, rng.choice(live[symbol])))
        elif roll < 0.98:
            out.append(BookReplace(symbol, rng.choice(live[symbol]), 100 + rng.randrange(-6, 7), rng.randrange(1, 20)))
        else:
            out.append(BookExpireDay(symbol))
    return out
