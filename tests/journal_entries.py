"""Journal entries for the database tests, made the way an OBS makes them: commands through a real
`servers.shard.Shard`, each decoded from the journal payload `Shard.execute` returns."""

import msgspec
from obs_streams import SYMBOLS, commands

from engine.messages import OrderFilled
from engine.types import Side
from servers.portfolio import Portfolio
from servers.protocol import BookCancel, BookExpireDay, BookReplace, BookSubmit, JournalEntry
from servers.shard import Shard

START = 1_796_083_200_000_000_000
"""2026-12-01T00:00:00Z in exchange time (ns since the epoch)."""
NS_PER_DAY = 86_400 * 1_000_000_000
ACCOUNTS = ("alice", "bob", "carol")
_decode = msgspec.msgpack.Decoder(JournalEntry).decode


def order_id(n: int, tes: int = 1) -> int:
    return (tes << 48) | n


class Journal:
    """One shard's books, sequence and clock: `run` sequences commands into entries."""

    def __init__(self, symbols=SYMBOLS, time=START, step=1_000_000) -> None:
        self.shard = Shard.empty(list(symbols))
        self.time = time
        self.step = step
        self.sequence = 0

    def run(self, *commands) -> list[JournalEntry]:
        entries = []
        for command in commands:
            self.sequence += 1
            self.time += self.step
            payload, _, _ = self.shard.execute(self.sequence, self.time, command, [])
            entries.append(_decode(payload))
        return entries


def mixed_entries(count: int = 600, seed: int = 7, days: int = 3) -> list[JournalEntry]:
    """`obs_streams.commands` (fills, cancels, replaces, DAY expiry over two symbols), each
    submission given one of ACCOUNTS, spread over ``days`` UTC days."""
    stream = [
        msgspec.structs.replace(command, account=ACCOUNTS[command.order_id % len(ACCOUNTS)])
        if type(command) is BookSubmit else command
        for command in commands(count, seed)
    ]
    return Journal(step=days * NS_PER_DAY // count).run(*stream)


def portfolios(entries: list[JournalEntry]) -> dict[str, Portfolio]:
    """Each account's `Portfolio` after the fills of ``entries``, as the TES books them."""
    accounts, books = {}, {}
    for entry in entries:
        if type(entry.command) is BookSubmit:
            accounts[entry.command.order_id] = entry.command.account
        for event in entry.events:
            if type(event) is OrderFilled:
                taker, maker = accounts[event.taker_id], accounts[event.maker_id]
                buyer, seller = (taker, maker) if event.aggressor == Side.BUY else (maker, taker)
                for account, side in ((buyer, Side.BUY), (seller, Side.SELL)):
                    books.setdefault(account, Portfolio()).fill(entry.command.symbol, side, event.price,
                                                                event.quantity)
    return books


def scenario() -> list[JournalEntry]:
    """A small hand-checked day and a half of ACME (ids ``order_id(n)``; the book's answers in comments):

    day 1 (2026-12-01): 1 alice sells 10 @ 100 GTC; 2 bob buys 4 @ 101 (trade 1: 4 @ 100);
    3 bob buys 10 @ 100 IOC (trade 2: 6 @ 100, 4 canceled unfilled); 4 alice buys 5 @ 99 DAY,
    replaced to 3 @ 98, expired at the end of the day;
    day 2: 5 carol sells 5 @ 105; 7 alice buys 2 @ 105 (trade 3: 2 @ 105); 5 canceled (3 lots),
    canceled again (refused); 8 bob buys 0 (rejected: quantity), 8 bob buys 1 @ 90 (accepted:
    a rejected id is not consumed), 8 bob buys 1 @ 91 (refused: duplicate id).
    """
    buy, sell, gtc, ioc, day = 0, 1, 0, 1, 3
    journal = Journal(symbols=["ACME"], step=1_000_000_000)
    entries = journal.run(
        BookSubmit("ACME", order_id(1), sell, 0, gtc, 100, 10, "alice"),
        BookSubmit("ACME", order_id(2), buy, 0, gtc, 101, 4, "bob"),
        BookSubmit("ACME", order_id(3), buy, 0, ioc, 100, 10, "bob"),
        BookSubmit("ACME", order_id(4), buy, 0, day, 99, 5, "alice"),
        BookReplace("ACME", order_id(4), 98, 3),
        BookExpireDay("ACME"),
    )
    journal.time = START + NS_PER_DAY
    return entries + journal.run(
        BookSubmit("ACME", order_id(5), sell, 0, gtc, 105, 5, "carol"),
        BookSubmit("ACME", order_id(7), buy, 0, gtc, 105, 2, "alice"),
        BookCancel("ACME", order_id(5)),
        BookCancel("ACME", order_id(5)),
        BookSubmit("ACME", order_id(8), buy, 0, gtc, 90, 0, "bob"),
        BookSubmit("ACME", order_id(8), buy, 0, gtc, 90, 1, "bob"),
        BookSubmit("ACME", order_id(8), buy, 0, gtc, 91, 1, "bob"),
    )


SECOND = 1_000_000_000
"""The scenario's entries are a second apart: entry n (from 1) at START + n s, from entry 7 on
at START + 1 day + (n - 6) s."""


def scenario_time(sequence: int) -> int:
    return START + sequence * SECOND if sequence <= 6 else START + NS_PER_DAY + (sequence - 6) * SECOND
