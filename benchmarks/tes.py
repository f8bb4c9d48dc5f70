"""The TES's work per request in one process (``python main.py bench tes``): two streams through a
real `servers.tes.TradingEngineServer`, turn by turn, with its sockets replaced by queues and its
book server by the OBS's execute step in the same process.

The streams, each ``messages`` requests of one logged-on trader on one symbol, `TURN` per client
frame:

- ``standard``: the standard workload's first rows (limit GTC and market orders, cancels) as
  EnterOrder and CancelOrder requests;
- ``load``: the load generator's flow, what `bench e2e` sends (GTC limit orders at one price,
  alternating buy and sell: every other order trades), so the TES's CPU per order in `bench
  e2e` can be read against its own work;
- ``load, 1 per frame``: the same flow one request per frame (at most `SINGLES` requests), as a
  client sends at low rates: beside ``load`` it gives what a loop turn itself costs;
- ``load, 1 per frame, after a wait``: the same, each turn after the process has slept `WAIT_S`
  (at most `WAITED` requests), as the live loop waits for input at 10,000/s: beside the stream
  before, what the wait costs the turn after it on this machine (not the wait itself, which is not
  timed: the caches and predictors the sleep let go cold, which the turn pays to fill again).

Each turn the TES reads the book server's answers to the previous turn's commands and one client
frame, checks, journals (fsync off: this measures CPU) and sends, exactly as its loop's
`TradingEngineServer._turn` does after a poll; then the OBS's order path
(`servers.obs.OrderBookServer._execute`) runs the commands the TES sent, and its replies are the
next turn's frame from the book server. Every request must be answered as on the live exchange
(nothing refused, every order accepted and every cancel done), else the run raises.

Measured in the same run, each as process CPU time per request:

- the TES's turns, and within them its loop's stages (`servers.status.Stages` with the servers'
  clock, `EXCHANGE_STAGES`: by default each stage's CPU time read in one turn in about 16 and
  weighted, as in `bench e2e`; ``cpu`` reads it in every turn, exact, and costs the turns more);
- the codec floor: msgspec alone decoding and encoding the very frames the TES read and sent
  (client requests in, commands out, book replies in, reports out), what a TES that made an
  object of every message would spend on that alone (this one reads its common client frames
  and the books' replies in C, so it can spend less on that part);
- the ledger alone: a fresh `servers.ledger.Ledger` applying the run's TES journal, as a restart
  replays it (it must end equal to the live ledger), which is the part of the TES's work that
  keeps its book of record (orders, reports, portfolios); it applies the orders' records through
  the ledger's Python, which the live TES's order entry in C skips, so it may cost more than the
  TES's turns;
- the OBS's execute step on the same commands (decoding its frames not included).

The servers' collector settings apply (`servers.collector.settle`). Figures are medians of the
runs, each run on a fresh TES and book, the streams alternating.
"""

import statistics
import tempfile
import time
from collections import deque
from pathlib import Path

import msgspec
import zmq

from benchmarks import median_present, obs
from benchmarks.book import machine
from config.settings import ConfigError, load_config
from engine import workload
from engine.progress import task
from engine.stream import CANCEL, LIMIT_GTC, MARKET
from engine.types import OrderType, Side, TimeInForce
from servers import collector
from servers import protocol as p
from servers.journal import read_records
from servers.ledger import ID_BITS, LEDGER_RECORD, Ledger, encode_state
from servers.logons import Verdict
from servers.obs import OrderBookServer
from servers.processes import exchange_env
from servers.shard import Shard
from servers.status import SAMPLE_TURNS, STAGES_ENV, Stages
from servers.tes import IDLE, STAGES, TradingEngineServer

SYMBOL = "ACME"
TRADER = "load"
"""The configuration's load-test trader: limits no standard stream reaches."""
CLIENT = b"client-1"
TES_ID = 1
TES_IDENTITY = b"tes-1"
TURN = 100
"""Client requests per frame, one frame per TES turn (about a loop turn's worth at 100,000/s)."""
MESSAGES = 200_000
LIMIT, MARKET_ORDER, GTC, IOC = OrderType.LIMIT, OrderType.MARKET, TimeInForce.GTC, TimeInForce.IOC
BUY, SELL = Side.BUY, Side.SELL


NONE_QUEUED = zmq.Again()
"""What a `Queue` with nothing queued raises: made once, since making a `zmq.Again` (pyzmq looks up
its message) costs 2.3 µs on the AMD EPYC host, which the live loop, reading its sockets in C, does
not pay (raising the one made costs 0.25 µs)."""


class Queue:
    """A socket's stand-in: frames queued here are read (`recv_multipart`, as `native.sockets.receive`
    reads an object that is not a pyzmq socket), frames sent are kept (``sent``: each message's
    last part; ``to``: the first part of each message sent in parts, a ROUTER's peer)."""

    def __init__(self) -> None:
        self.queued: deque[list[bytes]] = deque()
        self.sent: list[bytes] = []
        self.to: list[bytes] = []

    def recv_multipart(self, flags: int = 0) -> list[bytes]:
        if not self.queued:
            raise NONE_QUEUED.with_traceback(None)
        return self.queued.popleft()

    def send(self, frame: bytes, flags: int = 0) -> None:
        self.sent.append(frame)

    def send_multipart(self, frames, flags: int = 0) -> None:
        self.sent.append(frames[-1])
        self.to.append(frames[0])

    def forget_sent(self) -> None:
        """Forget the messages sent so far (``sent`` and ``to`` stay in step)."""
        self.sent.clear()
        self.to.clear()


def requests(messages: int, turn: int = TURN, seed: int = 42) -> list[list]:
    """The standard workload's first ``messages`` rows as the trader's requests, in frames of
    ``turn``. The n-th order entered gets exchange id ``(TES_ID << ID_BITS) | n`` (nothing is
    refused), which is what a cancel of it names."""
    made, exchange_ids, entered = [], {}, 0
    for number, (kind, side, price, quantity, order_id, target_id) in enumerate(
            workload.standard(messages, seed).tolist(), 1):
        if kind == CANCEL:
            made.append(p.CancelOrder(number, exchange_ids.pop(target_id)))
            continue
        entered += 1
        exchange_ids[order_id] = (TES_ID << ID_BITS) | entered
        if kind == LIMIT_GTC:
            made.append(p.EnterOrder(number, SYMBOL, Side(side), LIMIT, GTC, price, quantity))
        elif kind == MARKET:
            made.append(p.EnterOrder(number, SYMBOL, Side(side), MARKET_ORDER, IOC, 0, quantity))
        else:
            raise ValueError(f"row {number}: kind {kind} is not in the standard workload")
    return [made[start:start + turn] for start in range(0, len(made), turn)]


class Exchange:
    """A TES in ``directory`` with its sockets replaced by `Queue`s, the trader logged on and
    each book server greeted; the OBS's state for each shard; what each measured part cost.
    The journal's fsync policy is ``fsync`` (the bench's "never" measures the TES, not the disk);
    ``overrides`` are further configuration variables. ``shard``, ``book`` and ``obs`` are the
    first shard's (the only one in the default configuration); ``books`` holds each shard's TES
    side, socket and OBS state, in the configuration's order."""

    def __init__(self, directory: Path, fsync: str = "never", **overrides: str) -> None:
        clock = Stages(STAGES).clock
        if clock not in ("sampled", "cpu"):
            raise ConfigError(f"bench tes times the TES's stages' CPU: {STAGES_ENV}={clock!r} reads none "
                              "(sampled, the default, or cpu)")
        env = exchange_env(directory, EXCHANGE__JOURNAL__FSYNC=fsync, EXCHANGE__TES__TES_ID=str(TES_ID), **overrides)
        self.tes = tes = TradingEngineServer(load_config(environ=env))
        self.sockets = tes.clients, [shard.socket for shard in tes.shards.values()]
        tes.clients = self.clients = Queue()
        self.books = []
        now = time.monotonic()
        tes._logged_on(Verdict(CLIENT, TRADER, False), now)
        for shard in tes.shards.values():
            shard.socket = Queue()
            symbols = sorted(symbol for symbol, owner in tes.shard_of.items() if owner is shard)
            tes._greeted(shard, p.HelloReply(symbols, 0, 0))
            self.books.append((shard, shard.socket, obs.stand_in(Shard.empty(symbols), {tes.tes_id: TES_IDENTITY})))
        self.shard, self.book, self.obs = self.books[0]
        tes._flush(now)
        tes._settle()
        tes.stages = Stages(STAGES, clock)  # the measured turns' stages only, not the set-up's (its journal made)
        self.clients.forget_sent()
        self.commands = p.Codec(p.ObsRequest)
        self.commands_out: list[bytes] = []
        self.replies_in: list[bytes] = []
        self.tes_seconds = self.obs_seconds = 0.0

    def turn(self, frame: bytes | None, now: float | None = None, stamp: int | None = None,
             synced: bool = True, client: bytes = CLIENT) -> None:
        """One TES turn on ``frame`` (if any, from the session ``client``) and the replies queued, at the
        monotonic time ``now``; then the book server's turn, at the exchange time ``stamp`` (the clocks',
        unless given).
        With ``synced``, the fsync the TES's syncer has in hand, if any, is done by then (the
        turn waits for it), else the turn runs while it is."""
        tes, ready = self.tes, {}
        if synced and tes.in_flight is not None:
            tes.syncer.wait()
            ready[tes.syncer.fileno()] = zmq.POLLIN
        if frame is not None:
            self.clients.queued.append([client, frame])
            ready[self.clients] = zmq.POLLIN
        for _, book, _ in self.books:
            if book.queued:
                ready[book] = zmq.POLLIN
        tes.stages.lap(IDLE)
        started = time.process_time()
        tes._turn(ready, time.monotonic() if now is None else now)
        self.tes_seconds += time.process_time() - started
        self.serve_book(time.time_ns() if stamp is None else stamp)

    def serve_book(self, stamp: int) -> None:
        """Each OBS's execute step on what the TES sent it, at ``stamp``; its replies queued for the TES."""
        for _, book, server in self.books:
            work = []
            self.commands_out += book.sent
            for frame in book.sent:
                for command in self.commands.decode(frame):
                    work.append((TES_IDENTITY, command, server.state.sequence + len(work) + 1, stamp))
            book.sent.clear()
            if not work:
                continue
            started = time.process_time()
            outbox, _, _ = OrderBookServer._execute(server, work)
            self.obs_seconds += time.process_time() - started
            for frame in p.join_frames(outbox.get(TES_IDENTITY, [])):
                book.queued.append([frame])
                self.replies_in.append(frame)

    def queued(self) -> bool:
        """Whether a book server's replies wait for the TES's next turn."""
        return any(book.queued for _, book, _ in self.books)

    def close(self) -> None:
        """Close the TES, with its own sockets back."""
        self.tes.clients, sockets = self.sockets
        for (shard, _, _), socket in zip(self.books, sockets, strict=True):
            shard.socket = socket
        self.tes.close()


def one_run(frames: list[bytes], count: int, wait_s: float = 0.0) -> dict:
    """Every frame (``count`` requests) through a fresh exchange, each turn after a sleep of ``wait_s``
    (0: none); the figures of the run (µs per request)."""
    with tempfile.TemporaryDirectory(prefix="bench-tes-") as tmp:
        exchange = Exchange(Path(tmp))
        try:
            with collector.settled():
                for frame in frames:
                    if wait_s:
                        time.sleep(wait_s)
                    exchange.turn(frame)
                while exchange.queued():
                    exchange.turn(None)
            tes = exchange.tes
            check(tes, frames)
            watch = tes.stages
            cpu = watch.cpu_ns if watch.cpu_turns else None
            stages = {name: None if cpu is None else cpu[index] / 1e3 / count
                      for index, name in enumerate(STAGES) if index != IDLE}
            floor = codec_floor(frames, exchange.commands_out, exchange.replies_in, exchange.clients.sent)
            ledger = ledger_alone(tes)
            return {"tes": exchange.tes_seconds / count * 1e6, "stages": stages, "floor": floor / count * 1e6,
                    "ledger": ledger / count * 1e6, "obs": exchange.obs_seconds / count * 1e6}
        finally:
            exchange.close()


def ledger_alone(tes: TradingEngineServer) -> float:
    """CPU seconds a fresh ledger takes to apply the run's TES journal (its records decoded
    beforehand), as a restart replays it; raises unless it ends equal to the live ledger."""
    tes.journal.write()
    records = [record.command for record in read_records(tes.journal.directory, 0, 0, LEDGER_RECORD)]
    live = tes.ledger
    ledger = Ledger(live.tes_id, {name: sorted(symbols) for name, symbols in live.shard_symbols.items()})
    apply = ledger.apply
    started = time.process_time()
    for record in records:
        apply(record)
    seconds = time.process_time() - started
    if encode_state(ledger.state(0, 0)) != encode_state(live.state(0, 0)):
        raise RuntimeError("the ledger replayed from the TES journal differs from the live one")
    return seconds


def check(tes: TradingEngineServer, frames: list[bytes]) -> None:
    """Raise unless every request was answered as on the live exchange: nothing refused, every
    order accepted, every cancel done, nothing left awaiting its book."""
    sent = [type(request) for frame in frames for request in msgspec.msgpack.decode(frame, type=list[p.ClientRequest])]
    orders, cancels = sent.count(p.EnterOrder), sent.count(p.CancelOrder)
    refused = {reason.name: count for reason, count in tes.rejects.items() if count}
    if refused or tes.reported[p.OrderAccepted] != orders or tes.reported[p.OrderCanceled] < cancels or any(
            tes.awaiting.values()) or tes.orders.in_flight({SYMBOL}):
        raise RuntimeError(f"the TES did not answer the stream as expected: {orders} orders, {cancels} cancels; "
                           f"refused {refused}, reported {({k.__name__: v for k, v in tes.reported.items() if v})}")


def codec_floor(client_in: list[bytes], commands_out: list[bytes], replies_in: list[bytes],
                reports_out: list[bytes]) -> float:
    """CPU seconds msgspec alone takes to decode the frames the TES read and encode the messages
    of the frames it sent."""
    requests = msgspec.msgpack.Decoder(list[p.ClientRequest])
    replies = msgspec.msgpack.Decoder(list[p.ObsReply])
    commands = [msgspec.msgpack.decode(frame, type=list[p.ObsRequest]) for frame in commands_out]
    reports = [msgspec.msgpack.decode(frame, type=list[p.ClientMessage]) for frame in reports_out]
    encode = msgspec.msgpack.Encoder().encode
    started = time.process_time()
    for frame in client_in:
        requests.decode(frame)
    for messages in commands:
        encode(messages)
    for frame in replies_in:
        replies.decode(frame)
    for messages in reports:
        encode(messages)
    return time.process_time() - started


def load_flow(messages: int, turn: int = TURN) -> list[list]:
    """The load generator's flow (`clients.loadgen`, ``--mix limit``, what `bench e2e` sends):
    GTC limit orders of the instrument's minimum quantity at its reference price, alternating buy
    and sell, so every sell fills the buy before it; in frames of ``turn``."""
    instrument = load_config(environ={}).instrument(SYMBOL)
    made = [p.EnterOrder(number, SYMBOL, BUY if number % 2 else SELL, LIMIT, GTC, instrument.reference_price,
                         instrument.min_quantity) for number in range(1, messages + 1)]
    return [made[start:start + turn] for start in range(0, len(made), turn)]


SINGLES = 20_000
"""Requests of the one-request-per-frame stream at most (its turns are many times dearer)."""
WAITED = 5_000
"""Requests of the stream whose turns each follow a wait, at most (each wait is `WAIT_S` or more)."""
WAIT_S = 0.0001
"""How long the process sleeps before each turn of the waited stream: about the gap between one
turn and the next of the live TES at 10,000 orders/s (`time.sleep`: the timer's slack adds to it)."""
STREAMS = {"standard": (requests, TURN, 0.0), "load": (load_flow, TURN, 0.0), "load, 1 per frame": (load_flow, 1, 0.0),
           "load, 1 per frame, after a wait": (load_flow, 1, WAIT_S)}
"""The streams measured, by name: how each is made, its requests per client frame, and how long the
process sleeps before each turn."""
PARTS = ("tes", "floor", "ledger", "obs")


def run(messages: int = MESSAGES, repeats: int = 3) -> dict:
    """Run each stream ``repeats`` times, each run on a fresh exchange, the streams alternating;
    print the tables; return the figures. The one-request-per-frame stream has at most `SINGLES`
    requests, the waited one `WAITED`; ``turn_us`` is what a loop turn costs beyond its requests'
    own work: the one-request stream's TES µs per request less the load stream's; ``wait_us`` what
    a wait costs the turn after it: the waited stream's less the one-request stream's."""
    encode = msgspec.msgpack.Encoder().encode
    with task("bench tes", len(STREAMS) * (repeats + 1), "steps") as shown:
        frames, sizes = {}, {}
        for name, (make, turn, wait_s) in STREAMS.items():
            shown.note(f"making the {name} stream")
            sizes[name] = messages if turn > 1 else min(messages, WAITED if wait_s else SINGLES)
            frames[name] = [encode(requests_) for requests_ in make(sizes[name], turn)]
            shown.advance()
        runs: dict[str, list[dict]] = {name: [] for name in STREAMS}
        for _ in range(repeats):
            for name, (_, _, wait_s) in STREAMS.items():
                shown.note(f"the {name} stream")
                runs[name].append(one_run(frames[name], sizes[name], wait_s))
                shown.advance()
    streams = {}
    for name, measured in runs.items():
        figures = {part: statistics.median(run_[part] for run_ in measured) for part in PARTS}
        streams[name] = {
            "requests": sizes[name], "turn": STREAMS[name][1], "wait_ms": STREAMS[name][2] * 1e3,
            "us_per_message": figures, "runs": measured,
            "stages": {stage: median_present([run_["stages"][stage] for run_ in measured])
                       for stage in measured[0]["stages"]},
            "ratio": {"tes_vs_floor": round(figures["tes"] / figures["floor"], 2),
                      "tes_vs_obs": round(figures["tes"] / figures["obs"], 2)}}
    single = streams["load, 1 per frame"]["us_per_message"]["tes"]
    turn_us = single - streams["load"]["us_per_message"]["tes"]
    wait_us = streams["load, 1 per frame, after a wait"]["us_per_message"]["tes"] - single
    report = {"machine": machine(), "messages": messages, "repeats": repeats, "streams": streams,
              "turn_us": round(turn_us, 2), "wait_us": round(wait_us, 2)}
    print(format_report(report))
    return report


def format_report(report: dict) -> str:
    machine_, streams = report["machine"], report["streams"]
    lines = [
        f"machine: {machine_['cpu']}, {machine_['cores']} cores, Python {machine_['python']}",
        "one trader on one symbol: the standard workload, and the load generator's flow (what bench e2e sends); "
        f"CPU µs per request, median of {report['repeats']} runs (range)",
        "",
        "| stream | requests | per frame | wait before each turn | the TES's turns | the codec floor (msgspec on the "
        "TES's frames) | TES vs floor | the ledger alone (its journal replayed) | the OBS's execute step on the same "
        "commands |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, stream in streams.items():
        figures, cells = stream["us_per_message"], []
        for part in PARTS:
            values = [run_[part] for run_ in stream["runs"]]
            cells.append(f"{figures[part]:.2f} ({min(values):.2f}-{max(values):.2f})")
        wait = f"{stream['wait_ms']:g} ms" if stream["wait_ms"] else "none"
        lines.append(f"| {name} | {stream['requests']:,} | {stream['turn']} | {wait} | {cells[0]} | {cells[1]} | "
                     f"{stream['ratio']['tes_vs_floor']:.1f}x | {cells[2]} | {cells[3]} |")
    lines += ["", f"a TES loop turn costs {report['turn_us']:.2f} µs beyond its requests' own work (the load flow "
              "one request per frame, less the same flow in frames of 100)",
              f"a wait of {WAIT_S * 1e3:g} ms before a turn of one request makes it cost {report['wait_us']:.2f} µs "
              "more (the caches and predictors the sleep let go cold; the wait itself is not timed)"]
    lines += ["", "| TES stage | " + " | ".join(streams) + " |", "|---|" + "---:|" * len(streams)]
    for stage in next(iter(streams.values()))["stages"]:
        cells = []
        for stream in streams.values():
            value = stream["stages"][stage]
            total = sum(cpu for cpu in stream["stages"].values() if cpu is not None)
            cells.append("n/a" if value is None else f"{value:.2f} ({value / total:.0%})")
        lines.append(f"| {stage} | " + " | ".join(cells) + " |")
    lines += ["", f"(a stage's CPU is read in one turn in about {SAMPLE_TURNS}, chosen at random, and weighted, as the "
              f"servers do by default; n/a: no turn was chosen; {STAGES_ENV}=cpu reads it in every turn)"]
    return "\n".join(lines)
