"""The journal stream (`servers.stream`): from any sequence, then live, in order, once, with credit and retention."""

import json
import time

import pytest
import zmq
from obs_streams import SYMBOLS, commands
from procs import Role, as_role, endpoint, exchange_env, free_port, rebound

from config.settings import JournalConfig
from servers import protocol as p
from servers.journal import read_records
from servers.security import Keys, shard_key_name
from servers.shard import decode_entry, recover
from servers.stream import CONSUMERS_FILE, JournalStream, Records, Streamer, StreamError, Subscribed


class Shard:
    """A journal written the way the OBS writes it, with a streamer publishing it (CURVE off)."""

    def __init__(self, directory, max_lag_bytes=1 << 30):
        self.directory = directory
        self.state, self.journal = recover(directory, SYMBOLS, JournalConfig())
        self.context = zmq.Context()
        self.endpoint = f"tcp://127.0.0.1:{free_port()}"
        self.streamer = Streamer(directory, self.endpoint, self.context, None, (0, 0),
                                 (self.state.sequence, self.journal.offset), max_lag_bytes)

    def feed(self, stream, group=10):
        for start in range(0, len(stream), group):
            entries, first_offset = [], self.journal.offset
            for command in stream[start : start + group]:
                sequence = self.state.sequence + 1
                entry, _, _ = self.state.execute(sequence, sequence * 1000, command, [])
                entries.append((sequence, entry))
            assert self.journal.append(entries)
            self.streamer.published(entries[0][0], first_offset, entries[-1][0], self.journal.offset)

    def consumer(self, name="recorder", window=50_000):
        return JournalStream(self.endpoint, name, window=window, context=self.context)

    def close(self):
        self.streamer.close()
        self.journal.close()
        self.context.destroy(linger=0)


@pytest.fixture
def shard(tmp_path):
    shard = Shard(tmp_path)
    yield shard
    shard.close()


def journaled(directory):
    return [decode_entry(record.payload) for record in read_records(directory)]


def read(stream, count, timeout=10.0):
    """Exactly ``count`` entries (or fail)."""
    entries, deadline = [], time.monotonic() + timeout
    while len(entries) < count and time.monotonic() < deadline:
        entries += stream.receive(0.1)
    assert len(entries) == count, f"{len(entries)} of {count}"
    return entries


def test_a_consumer_gets_the_journal_from_any_sequence_then_the_live_records(shard, tmp_path):
    shard.feed(commands(300))
    whole = journaled(tmp_path)
    stream = shard.consumer()
    assert stream.subscribe(120) == Subscribed("recorder", 1, 300)
    assert read(stream, 180) == whole[120:]
    shard.feed(commands(60, seed=9))
    live = read(stream, 60)
    assert live == journaled(tmp_path)[300:] and [e.sequence for e in live] == list(range(301, 361))
    assert stream.receive(0.3) == [], "each record once"
    stream.close()


def test_the_loop_nudges_the_stream_thread_only_while_a_consumer_is_connected(shard, tmp_path):
    streamer, nudges = shard.streamer, []
    real = streamer._nudge

    class Counted:
        def send(self, *args):
            nudges.append(args)
            return real.send(*args)

    streamer._nudge = Counted()
    try:
        shard.feed(commands(100))
        assert not streamer.connected and nudges == [], "nobody to wake"
        stream = shard.consumer()
        assert stream.subscribe(0) == Subscribed("recorder", 1, 100)
        assert read(stream, 100) == journaled(tmp_path), "what was published before the subscription"
        deadline = time.monotonic() + 5
        while not streamer.connected and time.monotonic() < deadline:
            time.sleep(0.01)
        assert streamer.connected
        shard.feed(commands(30, seed=3))
        assert len(nudges) == 3, "one per journaled turn"
        assert [entry.sequence for entry in read(stream, 30)] == list(range(101, 131))
        stream.close()
    finally:
        streamer._nudge = real


def test_subscribed_says_what_the_journal_holds_and_refuses_what_it_cannot_give(shard):
    shard.feed(commands(50))
    stream = shard.consumer()
    subscribed = stream.subscribe(0)
    assert (subscribed.consumer, subscribed.first, subscribed.last) == ("recorder", 1, 50)
    with pytest.raises(StreamError, match=r"sequence 51 is past the journal's last, 50 \(ahead"):
        shard.consumer("other").subscribe(51)
    stream.close()


def test_credit_bounds_what_is_sent_beyond_the_last_ack(shard):
    shard.feed(commands(500))
    stream = shard.consumer(window=100)
    stream.subscribe(0)
    assert [e.sequence for e in read(stream, 100)] == list(range(1, 101))
    assert stream.receive(0.3) == [], "no credit left"
    stream.ack(40)
    assert [e.sequence for e in read(stream, 40)] == list(range(101, 141))
    stream.close()


def test_acks_are_kept_in_the_consumers_file_and_set_the_retention_floor(shard, tmp_path):
    shard.feed(commands(400))
    slow, fast = shard.consumer("slow"), shard.consumer("fast")
    slow.subscribe(0)
    fast.subscribe(0)
    read(slow, 400)
    read(fast, 400)
    fast.ack(400)
    slow.ack(100)
    starts = {record.sequence: record.end for record in read_records(tmp_path)}
    deadline = time.monotonic() + 5
    while not shard.streamer.floor() or shard.streamer.floor() > starts[100]:  # 0: subscribed, not yet acked
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert 0 < shard.streamer.floor() <= starts[100], "the slow consumer's records are kept"
    slow.close()
    fast.close()
    shard.streamer.close()
    saved = json.loads((tmp_path / CONSUMERS_FILE).read_text())
    assert {name: acked for name, (acked, _) in saved.items()} == {"fast": 400, "slow": 100}
    restarted = rebound(lambda: Streamer(tmp_path, shard.endpoint, shard.context, None, (1, 0),
                                         (shard.state.sequence, shard.journal.offset), 1 << 30))
    assert restarted.floor() == shard.streamer.floor(), "retention survives a restart"
    shard.streamer = restarted


def test_a_consumer_too_far_behind_is_left_behind_and_told_where_the_journal_starts(tmp_path):
    shard = Shard(tmp_path, max_lag_bytes=4096)
    try:
        shard.feed(commands(300))
        lagging = shard.consumer("lagging")
        lagging.subscribe(0)
        read(lagging, 300)
        lagging.ack(10)
        time.sleep(0.2)
        assert shard.streamer.floor() is None, "more than 4 KiB behind: it holds nothing back"
        offsets = [record.end for record in read_records(tmp_path)]
        shard.journal.discard_before(offsets[199])
        shard.streamer.discarded(shard.journal.discarded)
        with pytest.raises(StreamError, match=r"discarded.*starts at sequence 201"):
            shard.consumer("lagging").subscribe(10)
        assert shard.consumer("fresh").subscribe(200).first == 201
    finally:
        shard.close()


@pytest.mark.parametrize(("first", "flip", "problem"), [
    (1, 40, "damaged or out-of-order record after sequence 0"),
    (2, None, "records 2..6 arrived after 0: a gap"),
])
def test_a_damaged_or_missing_record_on_the_wire_is_refused_by_the_consumer(shard, first, flip, problem):
    shard.feed(commands(5))
    data = bytearray((shard.directory / "commands.log").read_bytes())
    if flip is not None:
        data[flip] ^= 1
    stream = shard.consumer()
    with pytest.raises(StreamError, match=problem):
        stream._entries(Records(first, first + 4, bytes(data)))
    stream.close()


# ---------------------------------------------------------------- a real OBS


def stream_of(env, consumer="recorder", role="recorder"):
    keys = Keys(env["EXCHANGE__SECURITY__KEYS_DIR"])
    return JournalStream(endpoint(env, "SHARDS__0__STREAM_ENDPOINT"), consumer,
                         (keys.own(role), keys.public(shard_key_name("A"))))


def test_a_real_obs_streams_to_the_recorders_key_only_keeps_what_it_has_not_acknowledged_and_resumes(tmp_path):
    env = exchange_env(tmp_path, EXCHANGE__JOURNAL__SNAPSHOT_EVERY="40")
    context = zmq.Context()
    try:
        with Role(["-s", "OBS"], env) as obs:
            recorder = stream_of(env)
            assert recorder.subscribe(0) == Subscribed("recorder", 0, 0), "registered before anything is journaled"
            tes = as_role(context.socket(zmq.DEALER), env)
            tes.connect(endpoint(env, "SHARDS__0__COMMAND_ENDPOINT"))
            codec, replies = p.Codec(p.ObsRequest), p.Codec(p.ObsReply, p.MAX_SERVER_FRAME_BYTES)
            stream = [c for c in commands(1600) if getattr(c, "order_id", 0) >> 48 == 1]  # the TES's own
            half, executed, entries = len(stream) // 2, [], []
            for part in (stream[: half + 100], stream[half + 100 :]):  # snapshots every 40 in both
                for command in part:
                    tes.send(codec.encode([command]))
                    executed += replies.decode(tes.recv())
                entries += read(recorder, len(part))
                recorder.ack(half)
            assert [(e.sequence, e.time, e.command, e.events) for e in entries] == [
                (x.sequence, x.time, command, x.events) for x, command in zip(executed, stream, strict=True)]
            keys = Keys(tmp_path / "keys")
            impostor = keys.own("operator")._replace(public=zmq.curve_keypair()[0])
            stranger = JournalStream(endpoint(env, "SHARDS__0__STREAM_ENDPOINT"), "stranger",
                                     (impostor, keys.public("obs-A")), context=context)
            with pytest.raises(StreamError, match="no answer"):
                stranger.subscribe(0, timeout=1.0)
            stranger.close()
            recorder.close()
            assert obs.stop() == 0
        saved = json.loads((tmp_path / "journal-A" / CONSUMERS_FILE).read_text())
        starts = {record.sequence: record.end - len(record.payload) - 16
                  for record in read_records(tmp_path / "journal-A", saved["recorder"][1], half)}
        assert saved["recorder"][0] == half and half + 1 in starts
        discarded = int((tmp_path / "journal-A" / "discarded-before").read_text())
        assert 0 < discarded <= starts[half + 1], "snapshots allowed discarding, the recorder's records were kept"
        with Role(["-s", "OBS"], env) as obs:
            recorder = stream_of(env)
            assert recorder.subscribe(half).last == len(stream)
            assert [e.sequence for e in read(recorder, len(stream) - half)] == list(range(half + 1, len(stream) + 1))
            recorder.close()
            assert obs.stop() == 0
    finally:
        context.destroy(linger=0)
