"""An OBS upgraded to the advanced orders recovers the journal of the version before them.

That version's journal entries hold shorter arrays: `BookSubmit` without the advanced fields
(stop price, display quantity, flags, owner, self-trade prevention, expiry) and the books'
`OrderAccepted` without them. Recovery replays each record and checks that the book gives the
journaled entry: byte for byte normally, and for such an entry once decoded (the missing
fields decode as their defaults, which is what the book gives for an order without them).
A record that says something else still stops recovery.
"""

import msgspec
import pytest
from obs_streams import SYMBOLS, commands

from config.settings import JournalConfig
from servers.shard import RecoveryError, recover

OLD_SUBMIT_ITEMS = 10
"""The tag and the 9 fields of a BookSubmit before the advanced orders."""
OLD_ACCEPTED_ITEMS = 7
"""The tag and the 6 fields of the books' OrderAccepted before them."""


def old_shape(payload: bytes, quantity_change: int = 0) -> bytes:
    """A journal entry's payload as the version before the advanced orders wrote it (its first
    fill's quantity changed by ``quantity_change``: a record of other matching rules)."""
    tag, sequence, time, command, events, market_data = msgspec.msgpack.decode(payload)
    if command[0] == "BookSubmit":
        assert command[OLD_SUBMIT_ITEMS:] == [0] * 6, "no advanced fields in the stream"
        command = command[:OLD_SUBMIT_ITEMS]
    old_events = []
    for event in events:
        if event[0] == "OrderAccepted":
            event = event[:OLD_ACCEPTED_ITEMS]
        elif event[0] == "OrderFilled" and quantity_change:
            event = [*event[:4], event[4] + quantity_change, *event[5:]]
            quantity_change = 0
        old_events.append(event)
    return msgspec.msgpack.encode([tag, sequence, time, command, old_events, market_data])


def write_old_journal(directory, stream, quantity_change: int = 0):
    """Run ``stream`` through a shard, journaling its entries in the old shape (the first fill's
    quantity changed by ``quantity_change``); the shard."""
    shard, log = recover(directory, SYMBOLS, JournalConfig())
    entries = []
    for command in stream:
        sequence = shard.sequence + 1
        entry, _, _ = shard.execute(sequence, sequence * 1000, command, [])
        entries.append((sequence, old_shape(entry, quantity_change)))
        if quantity_change and entries[-1][1] != old_shape(entry):
            quantity_change = 0  # one changed fill
    log.append(entries)
    log.close()
    return shard


def test_a_journal_of_the_version_before_the_advanced_orders_recovers_exactly(tmp_path):
    stream = commands(2000, seed=3)
    live = write_old_journal(tmp_path, stream)
    recovered, log = recover(tmp_path, SYMBOLS, JournalConfig())
    log.close()
    assert recovered.sequence == len(stream)
    for symbol in SYMBOLS:
        ours, theirs = recovered.feeds[symbol], live.feeds[symbol]
        assert (ours.book.state_hash(), ours.sequence, ours.last_price) == (
            theirs.book.state_hash(), theirs.sequence, theirs.last_price)


def test_an_old_record_that_says_something_else_still_stops_recovery(tmp_path):
    stream = commands(2000, seed=3)
    write_old_journal(tmp_path, stream, quantity_change=1)
    with pytest.raises(RecoveryError, match="the book's events or market data differ from the journaled ones"):
        recover(tmp_path, SYMBOLS, JournalConfig())
