"""The TES's paths in C, its order entry (`native.entry`), its reports of the books' events and
the portfolios they feed (`native.reports`), against its Python, the specification.

Two in-process TES (`benchmarks.tes.Exchange`: real servers, sockets replaced by queues, the OBS's
execute step behind them), one with the paths in C and one with the Python alone, take the same random
streams at the same clock readings: orders of every kind, valid and not (ids out of order and
repeated, prices off the tick and outside the band, quantities off the lot and beyond the limits,
kinds the instrument disables, unknown symbols), cancels, replaces, queries, mass cancels, in
frames of random sizes, under tight message-rate and risk limits. The journals must be equal byte
for byte, and so must every frame sent to the client and to the book, the ledgers and the counts.
"""

import random
import tempfile
import time
import tracemalloc
from collections import deque
from pathlib import Path

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import servers.tes as tes_module
from benchmarks.tes import CLIENT, SYMBOL, TES_ID, TRADER, Exchange, load_flow
from engine.lifecycle import OrderState
from engine.types import CancelReason, OrderType, RejectReason, SelfTradePrevention, Side, TimeInForce
from native.entry import EntryPath
from native.framing import Records
from native.idtable import IdTable
from native.reports import Kept, ReplyPath, Reporter, Routing, keep, report_number
from native.routed import FIELDS
from servers import protocol as p
from servers.journal import JOURNAL_FILE, read_records
from servers.ledger import ID_BITS, LEDGER_RECORD, Entered, Ledger, Received, Requested, encode_state
from servers.logons import Verdict
from servers.orders import OrderRegistry, Request

START_NS = 1_800_000_000_000_000_000
"""The exchange clock at the start of a stream (each turn moves it on by `TURN_NS`)."""
TURN_NS = 1_000_000
TURN_S = 0.0173
"""The monotonic clock's step per turn (from the moment the trader's buckets were made): at a rate
of 300 messages a second a turn refills 5.19, so frames of a few dozen run the trader's bucket
dry, and what is left in it takes fractional values."""
REFERENCE = 10_000

INSTRUMENTS = {
    "default": {},
    "strict": {"tick_size": 5, "lot_size": 10, "min_quantity": 20, "max_quantity": 500, "price_band_bps": 200,
               "order_types": frozenset({"limit", "stop", "iceberg", "gtd"})},
    "market only": {"order_types": frozenset({"market", "post-only"}), "price_band_bps": 0},
}


def random_specs(seed: int, count: int) -> list[tuple]:
    """``count`` requests, as specs `make_stream` turns into messages (ids depend on what came
    before): mostly orders that can trade (prices near the reference, small quantities), some of
    every other kind and value."""
    rng = random.Random(seed)
    choice = rng.choice

    def price() -> int:
        roll = rng.random()
        if roll < 0.8:
            return rng.randint(REFERENCE - 30, REFERENCE + 30)
        return rng.randint(REFERENCE - 1_200, REFERENCE + 1_200) if roll < 0.95 else choice([0, -5, 2**31, 2**40])

    def quantity() -> int:
        roll = rng.random()
        if roll < 0.85:
            return rng.randint(1, 12) * 10
        return rng.randint(-3, 700) if roll < 0.97 else choice([2**31, 10**9])

    specs = []
    for _ in range(count):
        specs.append((
            choice(["enter"] * 12 + ["cancel", "cancel", "replace", "heartbeat", "open orders", "mass cancel"]),
            choice(["next"] * 20 + ["repeat", "skip"]),
            choice([SYMBOL] * 20 + ["NOPE"]),
            choice(list(Side)),
            choice([OrderType.LIMIT] * 8 + [OrderType.MARKET] * 3 + [OrderType.STOP, OrderType.STOP_LIMIT]),
            choice([TimeInForce.GTC] * 4 + [TimeInForce.IOC] * 3 + list(TimeInForce)),
            price(), quantity(),
            choice([0] * 10 + [REFERENCE + 20, REFERENCE - 20]),                    # stop price
            choice([0] * 12 + [10, 7]),                                             # display quantity
            choice([0] * 10 + [1, 2]),                                              # flags
            choice([None] * 6 + list(SelfTradePrevention)),
            choice([0] * 10 + [START_NS + 10**12, START_NS - 1]),                   # expire at
            rng.randint(1, 60),                                                     # the order canceled
        ))
    return specs


def make_stream(specs: list, cuts: list[int]) -> list[bytes]:
    """The frames of requests ``specs``, cut after the positions in ``cuts``; client order ids
    from one counter, as a client library numbers them, but for an order now and then that
    repeats an id already used or takes one three ahead of the counter (which the counter
    then reaches: ids out of order, then used up, then repeated)."""
    messages, number, used = [], 0, []
    for kind, how, symbol, side, order_type, tif, price, quantity, stop, display, flags, stp, expire, target in specs:
        # a cancel or replace names one of the latest exchange ids (or, for a ``target`` from 40, that
        # id; above 100, ``target - 100``): the n-th order entered has id n, and most are entered
        recent = (TES_ID << ID_BITS) | max(1, len(used) - target % 12)
        if kind == "enter":
            if how == "repeat" and used:
                coid = used[len(used) // 2]
            elif how == "skip":
                coid = number + 3
            else:
                number += 1
                coid = number
            used.append(coid)
            messages.append(p.EnterOrder(coid, symbol, side, order_type, tif, price, quantity, stop, display, flags,
                                         stp, expire))
        elif kind == "cancel":
            number += 1
            named = target - 100 if target > 100 else target
            messages.append(p.CancelOrder(number, recent if target < 40 else (TES_ID << ID_BITS) | named))
        elif kind == "replace":
            number += 1
            messages.append(p.ReplaceOrder(number, recent if target < 40 else (TES_ID << ID_BITS) | target, price,
                                           quantity))
        elif kind == "heartbeat":
            messages.append(p.Heartbeat())
        elif kind == "open orders":
            messages.append(p.QueryOpenOrders(number))
        else:
            messages.append(p.MassCancel(SYMBOL))
    encode = msgspec.msgpack.Encoder().encode
    frames, start = [], 0
    for cut in sorted(set(cuts)) + [len(messages)]:
        if cut > start:
            frames.append(encode(messages[start:cut]))
            start = cut
    return frames


def run(frames: list[bytes | tuple[bytes, bytes | str]], instrument: dict, native: bool, monkeypatch,
        tight: bool = True, last_number: int = 0, traders: dict[bytes, str] | None = None, split: bool = False) -> dict:
    """``frames`` through a fresh exchange (its paths in C or its Python alone) at fixed clocks, under tight
    limits or each trader's own, the load trader's last report number ``last_number``: what it made.
    A frame is the load trader's (bytes) or ``(client, frame)``: a session of ``traders`` (the load
    trader's `CLIENT` and more, each logged on before the stream, the others with cancel on
    disconnect), or ``(client, LOG_ON)``: that client logs on again (cancel on disconnect) before
    the turn. ``routed`` pairs each client frame sent with the session it went to. With ``split``,
    `SYMBOL` and `OTHER_SYMBOL` are two book servers' (`two_shards`); ``sequences`` is each book
    server's last sequence."""
    ticks = iter(range(START_NS, START_NS + 10**15, 1_000))
    monkeypatch.setattr(tes_module, "clock", lambda: next(ticks))
    traders = traders or {CLIENT: TRADER}
    with tempfile.TemporaryDirectory(prefix="entry-path-") as tmp:
        exchange = Exchange(Path(tmp), **two_shards(Path(tmp)) if split else {})
        try:
            tes = exchange.tes
            if not native:
                tes.entry = tes.replies = None
                tes.ledger.receive = tes.ledger._receive
                tes.ledger.book_trades = tes.ledger.book
            tes.instruments[SYMBOL] = msgspec.structs.replace(tes.instruments[SYMBOL], **instrument)
            if last_number:
                tes.ledger.numbers[TRADER] = tes.sessions.by_trader[TRADER].last_report = last_number
            now, stamp = tes.risks[TRADER].bucket.last, START_NS
            for client, trader in traders.items():
                if client != CLIENT:
                    tes._logged_on(Verdict(client, trader, True), now)
                risk = tes.risks[trader]
                risk.bucket.last = risk.queries.last = now
                if tight:
                    risk.max_order_quantity, risk.max_notional, risk.max_open_orders = 400, 3_000_000, 8
                    risk.bucket.rate, risk.bucket.tokens = 300, 100.0
            if len(traders) > 1:
                tes._flush(now)     # their logons answered, and not counted as the stream's
                exchange.clients.forget_sent()
            for frame in [*frames, None, None]:
                now, stamp = now + TURN_S, stamp + TURN_NS
                client, frame = frame if type(frame) is tuple else (CLIENT, frame)
                if frame is LOG_ON:
                    tes._logged_on(Verdict(client, traders[client], True), now)
                    frame = None
                exchange.turn(frame, now, stamp, client=client)
            tes.journal.write()
            ledger = tes.ledger
            return {
                "journal": (Path(tes.journal.directory) / JOURNAL_FILE).read_bytes()[:tes.journal.journal.offset],
                "client": list(exchange.clients.sent), "book": list(exchange.commands_out),
                "sequences": {shard.name: server.state.sequence for shard, _, server in exchange.books},
                "routed": list(zip(exchange.clients.to, exchange.clients.sent, strict=True)),
                "ledger": ledger.state(0, 0), "awaiting": tes.awaiting,
                "records": [record.command for record in read_records(tes.journal.directory, 0, 0, LEDGER_RECORD)],
                "counts": (tes.submitted, tes.entered, tes.cancels, tes.replaces, dict(tes.rejects),
                           dict(tes.reported), tes.sessions.by_trader[TRADER].last_report),
                "last_reports": {trader: tes.sessions.by_trader[trader].last_report for trader in traders.values()},
            }
        finally:
            exchange.close()


def assert_same(fast: dict, spec: dict) -> None:
    """What a TES with its paths in C made (`run`) is what the one with its Python alone made: the
    journal byte for byte, each frame sent to the same session, the commands to the books, the
    ledger, the orders awaiting an answer, the counts and each trader's and book server's last
    numbers."""
    assert fast["journal"] == spec["journal"]
    assert fast["routed"] == spec["routed"]
    assert fast["book"] == spec["book"]
    assert encode_state(fast["ledger"]) == encode_state(spec["ledger"])
    assert {trader: sorted(orders) for trader, orders in fast["awaiting"].items()} == {
        trader: sorted(orders) for trader, orders in spec["awaiting"].items()}
    assert (fast["counts"], fast["last_reports"], fast["sequences"]) == (
        spec["counts"], spec["last_reports"], spec["sequences"])


@pytest.mark.parametrize("tight", [True, False], ids=["tight limits", "the load trader's limits"])
@pytest.mark.parametrize("variant", sorted(INSTRUMENTS))
@pytest.mark.parametrize("seed", range(4))
def test_the_paths_in_c_do_what_the_python_does(seed, variant, tight, monkeypatch):
    specs = random_specs(seed, 400)
    cuts = random.Random(-seed).sample(range(400), 40)
    frames = make_stream(specs, cuts)
    fast = run(frames, INSTRUMENTS[variant], True, monkeypatch, tight)
    spec = run(frames, INSTRUMENTS[variant], False, monkeypatch, tight)
    assert_same(fast, spec)
    decode = msgspec.msgpack.Decoder(list[p.ClientMessage]).decode
    sent = [message for frame in fast["client"] for message in decode(frame)]
    reported, last_report = fast["counts"][5:]
    written = (p.OrderAccepted, p.OrderFilled, p.OrderCanceled)
    assert [reported[kind] for kind in written] == [sum(type(message) is kind for message in sent) for kind in written]
    assert sum(reported[kind] for kind in written) > 0
    assert last_report == max(getattr(message, "report", 0) for message in sent) > 0


SESSIONS = {CLIENT: TRADER, b"client-2": "mm1", b"client-3": "alice"}
"""Three traders of three accounts, one session each."""
LOG_ON = "log on"
"""In `run`'s frames, ``(client, LOG_ON)``: the client's trader logs on again."""
LOG_OUT = msgspec.msgpack.encode([p.Logout()])
"""A client frame of one `Logout`."""


def coming_and_going(frames: list[tuple[bytes, bytes]], rng: random.Random) -> list[tuple[bytes, object]]:
    """``frames`` with each session, now and then, logging out (a `Logout` frame) and on again a few
    frames later, cancel on disconnect from then on: its frames in between find no session, and
    reports made meanwhile wait in the ledger for the logon."""
    made, away = [], {}
    for client, frame in frames:
        for gone in [gone for gone, back in away.items() if back <= len(made)]:
            made.append((gone, LOG_ON))
            del away[gone]
        if client not in away and rng.random() < 0.05:
            made.append((client, LOG_OUT))
            away[client] = len(made) + rng.randint(1, 12)
        made.append((client, frame))
    return made + [(client, LOG_ON) for client in away]


OTHER_SYMBOL, OTHER_SHIFT = "BOLT", 15_000
"""The shard's other instrument (tick 5, lot 10, reference price 25,000) and how far its orders'
prices are moved from those `random_specs` makes about `REFERENCE`."""


def on_two_symbols(specs: list[tuple], rng: random.Random) -> list[tuple]:
    """``specs`` with about a third of the orders on `SYMBOL` moved to `OTHER_SYMBOL`, most with
    their prices (and stop prices) moved by `OTHER_SHIFT`, a fifth left where `SYMBOL`'s band
    holds them and `OTHER_SYMBOL`'s does not."""
    moved = []
    for spec in specs:
        kind, how, symbol, side, order_type, tif, price, quantity, stop, *rest = spec
        if kind == "enter" and symbol == SYMBOL and rng.random() < 0.35:
            shift = OTHER_SHIFT if rng.random() < 0.8 else 0
            spec = (kind, how, OTHER_SYMBOL, side, order_type, tif, price + shift, quantity,
                    stop + shift if stop else 0, *rest)
        moved.append(spec)
    return moved


def two_shards(directory: Path) -> dict[str, str]:
    """Configuration variables that give `SYMBOL` and `OTHER_SYMBOL` a book server each (A and B):
    the shipped configuration with a second shard."""
    config = Path(__file__).parent.parent / "config" / "exchange.toml"
    text = config.read_text()
    assert f'symbols = ["{SYMBOL}", "{OTHER_SYMBOL}"]' in text
    second = f"""
[[shards]]
name = "B"
symbols = ["{OTHER_SYMBOL}"]
command_endpoint = "tcp://127.0.0.1:1"
market_data_endpoint = "tcp://127.0.0.1:2"
snapshot_endpoint = "tcp://127.0.0.1:3"
journal_dir = "{directory / 'journal-B'}"
"""
    split = directory / "exchange.toml"
    split.write_text(text.replace(f'symbols = ["{SYMBOL}", "{OTHER_SYMBOL}"]', f'symbols = ["{SYMBOL}"]') + second)
    return {"EXCHANGE_CONFIG": str(split)}


@pytest.mark.parametrize("symbols", [1, 2, "2 shards"], ids=["one symbol", "two symbols", "two book servers"])
@pytest.mark.parametrize("tight", [True, False], ids=["tight limits", "each trader's limits"])
@pytest.mark.parametrize("seed", range(4))
def test_the_paths_in_c_do_what_the_python_does_for_several_traders(seed, tight, symbols, monkeypatch):
    """Three traders' frames interleaved: their orders fill one another's, their cancels name one
    another's orders (refused: not theirs), and each trader's reports are numbered, kept and sent
    to its own session, in C as in the Python; with two ``symbols``, a third of the orders on the
    shard's other instrument, whose rules differ, so that a frame's orders switch instruments, or on
    the instrument of a second book server's (``2 shards``), so that they switch books too."""
    specs = random_specs(seed, 600)
    cuts = random.Random(-seed).sample(range(600), 120)
    rng = random.Random(seed + 1_000)
    if symbols != 1:
        specs = on_two_symbols(specs, rng)
    split = symbols == "2 shards"
    frames = coming_and_going([(rng.choice(sorted(SESSIONS)), frame) for frame in make_stream(specs, cuts)], rng)
    fast = run(frames, {}, True, monkeypatch, tight, traders=SESSIONS, split=split)
    spec = run(frames, {}, False, monkeypatch, tight, traders=SESSIONS, split=split)
    assert_same(fast, spec)
    assert all(fast["sequences"].values()) and len(fast["sequences"]) == (2 if split else 1)
    decode = msgspec.msgpack.Decoder(list[p.ClientMessage]).decode
    sent = {client: [message for to, frame in fast["routed"] if to == client for message in decode(frame)]
            for client in SESSIONS}
    for client, trader in SESSIONS.items():
        numbers = [message.report for message in sent[client] if getattr(message, "report", 0)]
        assert numbers == list(range(1, len(numbers) + 1)), f"{trader}'s reports are numbered 1, 2, 3..."
        assert numbers[-1] == fast["last_reports"][trader]
    fills = {}
    for client in SESSIONS:
        for message in sent[client]:
            if type(message) is p.OrderFilled:
                fills.setdefault(message.trade_id, set()).add(client)
    assert any(len(sides) == 2 for sides in fills.values()), "some trades were between two of the traders"
    everything = [message for messages in sent.values() for message in messages]
    kinds = [type(message) for message in everything]
    assert p.CancelRejected in kinds
    assert kinds.count(p.LoggedOut) >= 2 and kinds.count(p.LogonAccepted) >= 2
    assert any(type(message) is p.OrderCanceled and message.reason is CancelReason.DISCONNECTED
               for message in everything), "a session logged on again with cancel on disconnect left"
    traded = {message.symbol for message in everything if type(message) is p.OrderFilled}
    assert traded == ({SYMBOL} if symbols == 1 else {SYMBOL, OTHER_SYMBOL})


@pytest.mark.parametrize("split", [False, True], ids=["one book server", "a book server each"])
def test_each_order_of_a_frame_is_checked_by_its_own_instruments_rules(split, monkeypatch):
    """A frame whose orders switch instruments: each is held to its own instrument's tick, lot and
    band (`OTHER_SYMBOL`'s tick 5, lot 10 and reference price 25,000; `SYMBOL`'s 1, 1 and 10,000), in
    C as in the Python: a market order's quantity too, which no band check stands before; and with
    ``split``, each sent to its own instrument's book server."""
    bolt = REFERENCE + OTHER_SHIFT
    limit, market = (OrderType.LIMIT, TimeInForce.GTC), (OrderType.MARKET, TimeInForce.IOC)
    orders = [(SYMBOL, limit, REFERENCE, 15), (OTHER_SYMBOL, market, 0, 15), (OTHER_SYMBOL, limit, bolt, 15),
              (OTHER_SYMBOL, limit, bolt + 1, 10), (SYMBOL, limit, REFERENCE + 1, 15), (OTHER_SYMBOL, limit, bolt, 20),
              (OTHER_SYMBOL, limit, REFERENCE, 20), (SYMBOL, market, 0, 3)]
    specs = [("enter", "next", symbol, Side.BUY, order_type, tif, price, quantity, 0, 0, 0, None, 0, 0)
             for symbol, (order_type, tif), price, quantity in orders]
    frames = make_stream(specs, [])
    fast = run(frames, {}, True, monkeypatch, tight=False, split=split)
    spec = run(frames, {}, False, monkeypatch, tight=False, split=split)
    assert_same(fast, spec)
    assert fast["sequences"] == ({"A": 3, "B": 1} if split else {"A": 4}), "the orders accepted went to their books"
    decode = msgspec.msgpack.Decoder(list[p.ClientMessage]).decode
    answers = {message.client_order_id: message for frame in fast["client"] for message in decode(frame)
               if type(message) in (p.OrderAccepted, p.OrderRejected)}
    rejected = {n: answers[n].reason for n in answers if type(answers[n]) is p.OrderRejected}
    assert rejected == {2: RejectReason.QUANTITY_OFF_LOT, 3: RejectReason.QUANTITY_OFF_LOT,
                        4: RejectReason.PRICE_OFF_TICK, 7: RejectReason.PRICE_OUTSIDE_BAND}
    assert sorted(answers) == list(range(1, 9))


def test_the_entry_path_takes_the_common_orders(monkeypatch):
    """Plain limit and market orders go through the C path: the Python path's `_enter` never runs."""
    specs = [("enter", "next", SYMBOL, Side(n % 2), OrderType.LIMIT if n % 3 else OrderType.MARKET, TimeInForce.GTC,
              REFERENCE, 10, 0, 0, n % 2, None, 0, 0) for n in range(30)]
    frames = make_stream(specs, [10, 20])
    entered, decoded = [], []
    monkeypatch.setattr(tes_module.TradingEngineServer, "_enter", lambda self, *args: entered.append(args))
    decode = p.Codec.decode
    monkeypatch.setattr(p.Codec, "decode", lambda self, frame: decoded.append(frame) or decode(self, frame))
    made = run(frames, {}, True, monkeypatch, tight=False)
    assert entered == []
    assert decoded and not set(frames) & set(decoded), "the client frames are read in C, not decoded by msgspec"
    assert made["counts"][:2] == (30, 30)
    commands = msgspec.msgpack.Decoder(list[p.ObsRequest]).decode(b"".join(made["book"][:1]))
    assert [type(command) for command in commands] == [p.BookSubmit] * 10
    assert [command.client_order_id for command in commands] == list(range(1, 11))


def test_the_reports_of_common_events_are_made_in_c(monkeypatch):
    """Acceptances, fills and the cancel of an IOC's remainder never reach the registry's Python."""
    specs = [("enter", "next", SYMBOL, Side(n % 2), OrderType.LIMIT, TimeInForce.GTC if n % 2 == 0 else TimeInForce.IOC,
              REFERENCE, 10 if n % 2 == 0 else 15, 0, 0, 0, None, 0, 0) for n in range(20)]
    fallback = []
    monkeypatch.setattr(OrderRegistry, "apply", lambda self, *args: fallback.append(args))
    made = run(make_stream(specs, [5]), {}, True, monkeypatch, tight=False)
    decode = msgspec.msgpack.Decoder(list[p.ClientMessage]).decode
    reports = [message for frame in made["client"] for message in decode(frame)]
    kinds = [type(report) for report in reports]
    assert kinds.count(p.OrderAccepted) == 20
    assert kinds.count(p.OrderFilled) == 20        # each IOC sell of 15 fills the buy of 10 before it...
    assert kinds.count(p.OrderCanceled) == 10      # ...and its remainder of 5 is canceled
    assert fallback == []


@pytest.mark.parametrize("last", [2**62 - 3, 2**62 + 5], ids=["crossing the count in C", "past it"])
def test_report_numbers_past_the_count_in_c_are_written_and_routed_as_by_the_python(last, monkeypatch):
    """From 2**62 a trader's report numbers are Python ints again (the count in C stops short of
    them), and the reports and their routing go on as the Python has them."""
    specs = [("enter", "next", SYMBOL, Side(n % 2), OrderType.LIMIT, TimeInForce.GTC if n % 2 == 0 else TimeInForce.IOC,
              REFERENCE, 10 if n % 2 == 0 else 15, 0, 0, 0, None, 0, 0) for n in range(20)]
    frames = make_stream(specs, [5])
    fast = run(frames, {}, True, monkeypatch, tight=False, last_number=last)
    spec = run(frames, {}, False, monkeypatch, tight=False, last_number=last)
    assert_same(fast, spec)
    decode = msgspec.msgpack.Decoder(list[p.ClientMessage]).decode
    numbers = [message.report for frame in fast["client"] for message in decode(frame) if hasattr(message, "report")]
    assert numbers == list(range(last + 1, last + 51))
    assert fast["counts"][-1] == last + 50


LIMIT_ORDER = dict(symbol=SYMBOL, side=Side.BUY, order_type=OrderType.LIMIT, time_in_force=TimeInForce.GTC,
                   price=REFERENCE, quantity=10)


def edge(tokens=50.0, open_orders=0, ready=True, **fields):
    """Whether the entry path takes one order (``fields`` over a plain limit order, client order id
    1) with the trader's bucket holding ``tokens`` and ``open_orders`` resting; it must change
    nothing when it does not."""
    with tempfile.TemporaryDirectory(prefix="entry-edge-") as tmp:
        exchange = Exchange(Path(tmp))
        try:
            tes = exchange.tes
            session = tes.sessions.by_trader[TRADER]
            risk = tes.risks[TRADER]
            risk.max_order_quantity, risk.max_notional, risk.max_open_orders = 50, 400_000, 3
            risk.bucket.tokens, now = tokens, risk.bucket.last
            tes.ledger.orders.open[TRADER] = IdTable(dict.fromkeys(range(open_orders)))
            exchange.shard.ready = ready
            order = p.EnterOrder(**{"client_order_id": 1, **LIMIT_ORDER, **fields})
            before = (risk.bucket.tokens, risk.bucket.last, tes.ledger.counter, tes.journal.pending.records(),
                      tes.submitted)
            taken = tes.entry.enter(session, [order], 0, now, 0)
            if not taken:
                assert (risk.bucket.tokens, risk.bucket.last, tes.ledger.counter, tes.journal.pending.records(),
                        tes.submitted) == before
                assert tes.ledger.orders.orders == {} and exchange.shard.outbox == []
            return bool(taken)
        finally:
            exchange.close()


@pytest.mark.parametrize(("taken", "case"), [
    (True, {}),
    (True, {"tokens": 1.0}), (False, {"tokens": 0.99}),
    (True, {"open_orders": 2}), (False, {"open_orders": 3}),
    (True, {"quantity": 40}), (False, {"quantity": 51}),
    (True, {"price": 10_000, "quantity": 40}), (False, {"price": 10_001, "quantity": 40}),   # notional 400,000
    (True, {"price": 11_000, "quantity": 1}), (False, {"price": 11_001, "quantity": 1}),     # the band: 1,000 bps
    (True, {"price": 9_000, "quantity": 1}), (False, {"price": 8_999, "quantity": 1}),
    (True, {"order_type": OrderType.MARKET, "price": 0, "quantity": 40}),
    (False, {"order_type": OrderType.MARKET, "price": 0, "quantity": 41}),   # valued at the reference price
    (False, {"client_order_id": 2}), (False, {"ready": False}),
    (False, {"display_quantity": 5}), (False, {"stop_price": 9_990}), (False, {"expire_at": 1}),
    (False, {"time_in_force": TimeInForce.GTD}), (False, {"flags": 2}), (True, {"flags": 1}),
    (False, {"order_type": OrderType.STOP}), (False, {"symbol": "NOPE"}),
])
def test_the_entry_path_takes_an_order_only_within_every_rule(taken, case):
    """At each rule's edge the entry path takes the order on the side the rule allows, and on the
    other side leaves it, unchanged, to the Python path (which refuses it)."""
    assert edge(**case) is taken


@pytest.mark.parametrize("seed", range(4))
def test_the_portfolios_booked_in_c_are_the_pythons(seed):
    """`native.reports.Books` against `Portfolio.fill`: random trades between three traders in two
    symbols (positions long, short, flat, flipped; quantities large enough to need big ints)."""
    rng = random.Random(seed)
    traders, symbols = ["a", "b", None], ["ACME", "BETA"]
    trades = []
    for _ in range(3_000):
        buyer, seller = rng.sample(traders, 2)
        quantity = rng.choice([rng.randint(1, 50), rng.randint(1, 10**6), 10**19 + rng.randint(0, 9)])
        trades.append((rng.choice(symbols), rng.randint(1, 20_000), quantity, buyer, seller))
    fast, spec = Ledger(TES_ID, {}), Ledger(TES_ID, {})
    signs = set()
    for start in range(0, len(trades), 100):
        fast.book_trades(trades[start:start + 100])
        spec.book(trades[start:start + 100])
        assert fast.portfolios.keys() == spec.portfolios.keys()
        for trader, portfolio in spec.portfolios.items():
            assert fast.portfolios[trader].cash == portfolio.cash
            for symbol, holding in portfolio.holdings.items():
                booked = fast.portfolios[trader].holdings[symbol]
                assert (booked.quantity, booked.basis, booked.realized) == (holding.quantity, holding.basis,
                                                                            holding.realized)
                signs.add((holding.quantity > 0) - (holding.quantity < 0))
    assert {-1, 1} <= signs


@pytest.mark.parametrize("buy_first", [True, False])
def test_a_share_of_a_basis_beyond_64_bits_is_booked_in_c_as_by_the_python(buy_first):
    """A position of 2**31 - 1 at a price near 2**30 (a basis near 2**61), then closed in part and
    flipped: the share of the basis closed takes a product near 2**91, which C computes in 128 bits."""
    big, price = (1 << 31) - 1, (1 << 30) - 1
    first, second = ("a", "b") if buy_first else ("b", "a")
    trades = [("ACME", price, big, first, second), ("ACME", 5, 1 << 30, second, first),
              ("ACME", 7, big, second, first), ("ACME", 3, 12_345, first, second)]
    fast, spec = Ledger(TES_ID, {}), Ledger(TES_ID, {})
    for trade in trades:
        fast.book_trades([trade])
        spec.book([trade])
        for trader, portfolio in spec.portfolios.items():
            booked = fast.portfolios[trader]
            holding, mine = portfolio.holdings["ACME"], booked.holdings["ACME"]
            assert (booked.cash, mine.quantity, mine.basis, mine.realized) == (
                portfolio.cash, holding.quantity, holding.basis, holding.realized)
    assert abs(spec.portfolios["a"].holdings["ACME"].realized) > 1 << 40


def test_cancels_of_resting_orders_go_through_c_as_through_the_python(monkeypatch):
    """Resting orders, then cancels of them interleaved with more orders (and a cancel of an
    order already gone, which the Python refuses): the same journal, frames and ledger, and
    only that refusal goes through the Python's `_cancel`."""
    rest = [("enter", "next", SYMBOL, Side.BUY, OrderType.LIMIT, TimeInForce.GTC, REFERENCE - 10 - n % 5, 10, 0, 0,
             0, None, 0, 0) for n in range(30)]
    cancels = []
    for n in range(1, 31):
        cancels.append(("cancel", "next", SYMBOL, Side.BUY, OrderType.LIMIT, TimeInForce.GTC, 0, 0, 0, 0, 0, None, 0,
                        100 + n))
        cancels.append(("enter", "next", SYMBOL, Side.SELL, OrderType.LIMIT, TimeInForce.GTC, REFERENCE + 10, 10, 0,
                        0, 0, None, 0, 0))
    cancels.append(cancels[0])
    frames = make_stream(rest + cancels, [7, 30, 45])
    fast = run(frames, {}, True, monkeypatch, tight=False)
    spec = run(frames, {}, False, monkeypatch, tight=False)
    assert fast["journal"] == spec["journal"] and fast["client"] == spec["client"] and fast["book"] == spec["book"]
    assert encode_state(fast["ledger"]) == encode_state(spec["ledger"])
    assert fast["counts"] == spec["counts"]
    python_cancels = []
    original = tes_module.TradingEngineServer._cancel
    monkeypatch.setattr(tes_module.TradingEngineServer, "_cancel",
                        lambda self, *args: python_cancels.append(args) or original(self, *args))
    made = run(frames, {}, True, monkeypatch, tight=False)
    assert made["journal"] == spec["journal"]
    assert len(python_cancels) == 1
    decode = msgspec.msgpack.Decoder(list[p.ClientMessage]).decode
    kinds = [type(report) for frame in made["client"] for report in decode(frame)]
    assert kinds.count(p.OrderCanceled) == 30 and kinds.count(p.CancelRejected) == 1


def ledger_records(seed: int, monkeypatch, several: bool = False) -> list:
    """The TES journal's records after a random stream through an exchange with the paths in C: the
    load trader's, or (``several``) three traders' interleaved on two symbols."""
    specs = random_specs(seed, 400)
    cuts = random.Random(-seed).sample(range(400), 40)
    if not several:
        return run(make_stream(specs, cuts), {}, True, monkeypatch, tight=False)["records"]
    rng = random.Random(seed)
    frames = [(rng.choice(sorted(SESSIONS)), frame) for frame in make_stream(on_two_symbols(specs, rng), cuts)]
    return run(frames, {}, True, monkeypatch, tight=False, traders=SESSIONS)["records"]


def damaged(frame: bytes, rng: random.Random) -> bytes:
    """``frame`` with one random byte changed, dropped or added, or cut short."""
    at = rng.randrange(len(frame))
    how = rng.randrange(4)
    if how == 0:
        return frame[:at] + bytes([rng.randrange(256)]) + frame[at + 1:]
    if how == 1:
        return frame[:at] + frame[at + 1:]
    if how == 2:
        return frame[:at] + bytes([rng.randrange(256)]) + frame[at:]
    return frame[:at]


def applied(ledger: Ledger, record) -> bytes:
    """``ledger.apply(record)``'s reports and replies encoded as they would be sent: a report made
    in C is bytes, already encoded."""
    reports, replies = ledger.apply(record)
    return msgspec.msgpack.encode(([(trader, msgspec.Raw(report) if type(report) is bytes else report)
                                    for trader, report in reports], replies))


def outcome(ledger: Ledger, record) -> tuple:
    """What ``ledger`` made of ``record`` (its reports and replies encoded, or the error it raised)
    and the state it was left in, encoded."""
    try:
        made = applied(ledger, record)
    except Exception as exc:  # noqa: BLE001 - any error must be the same error on both paths
        made = (type(exc), str(exc))
    return made, encode_state(ledger.state(0, 0))


@pytest.mark.parametrize("several", [False, True], ids=["one trader", "three traders"])
@pytest.mark.parametrize("seed", range(3))
def test_frames_of_replies_read_in_c_as_by_the_python_damaged_or_not(seed, several, monkeypatch):
    """A TES journal replayed into a ledger reading the frames in C and one with the Python alone,
    each frame of replies first applied damaged, five ways at random, then as it came: each record
    must make the same reports and replies, or raise the same error, and leave the same state. The
    journal is one trader's, or (``several``) three traders' on two symbols."""
    records = ledger_records(seed, monkeypatch, several)
    rng = random.Random(seed)
    fast, spec = (Ledger(TES_ID, {"A": [SYMBOL, OTHER_SYMBOL]}) for _ in range(2))
    spec.receive, spec.book_trades = spec._receive, spec.book
    handed_over = []
    fast._receive = lambda record, reports: handed_over.append(record) or Ledger._receive(fast, record, reports)
    errors = intact = 0
    for record in records:
        if type(record) is Received:
            for _ in range(5):
                damage = msgspec.structs.replace(record, frame=damaged(record.frame, rng))
                made = outcome(fast, damage)
                assert made == outcome(spec, damage)
                errors += type(made[0]) is tuple
            intact += 1
        assert outcome(fast, record) == outcome(spec, record)
    assert errors > 50
    assert intact > 30 and len([record for record in handed_over if record in records]) == 0, \
        "every frame as it came is read in C"


@pytest.mark.parametrize(("price", "quantity"), [(1, 1), (2**31 - 1, 2**30), (2**31 - 1, 2**31 - 1), (2**31, 2**20),
                                               (2**20, 2**31)])
def test_fills_beyond_the_c_arithmetic_are_reported_as_by_the_python(price, quantity):
    """Fills whose price or quantity, or an order's running totals, leave the range the reporter
    sums in C make the same reports and order as the Python's: the second case's notional
    passes 2**62 (and its average price's terms 2**53), the third's int64."""
    from engine import messages as book
    order_id = (TES_ID << ID_BITS) | 1
    fast, spec = (Ledger(TES_ID, {"A": [SYMBOL]}) for _ in range(2))
    spec.receive, spec.book_trades = spec._receive, spec.book
    total = 3 * quantity
    records = [Entered(TRADER, 1, order_id, SYMBOL, Side.BUY, OrderType.LIMIT, TimeInForce.GTC, price, total)]
    events = [[book.OrderAccepted(order_id, Side.BUY, OrderType.LIMIT, TimeInForce.GTC, price, total)]]
    events += [[book.OrderFilled(order_id, 99, price, quantity, total - n * quantity, 0, Side.SELL, n)]
               for n in range(1, 4)]
    for sequence, made in enumerate(events, 1):
        frame = msgspec.msgpack.encode([p.Executed(sequence, SYMBOL, made, START_NS + sequence)])
        records.append(Received("A", frame, START_NS))
    orders = []
    for record in records:
        encoded = [applied(ledger, record) for ledger in (fast, spec)]
        assert encoded[0] == encoded[1]
        held = [ledger.orders.orders.get(order_id) for ledger in (fast, spec)]
        if held[0] is not None:
            orders.append(dict(zip(FIELDS, held[0].row(), strict=True)))
            assert held[0] == held[1]
    assert len(orders) == 4 and spec.orders.orders.get(order_id) is None
    assert orders[-1]["filled"] == 2 * quantity and orders[-1]["notional"] == 2 * quantity * price
    holdings = [ledger.portfolio(TRADER).holdings[SYMBOL] for ledger in (fast, spec)]
    assert [(h.quantity, h.basis, h.realized) for h in holdings] == [(total, total * price, 0)] * 2
    assert fast.orders.orders.get(order_id) is None, "filled, it left the registry"


def test_a_frame_of_every_kind_of_reply_and_event_is_read_in_c_as_by_the_python():
    """One frame with a Hello reply (a map), a book view (nested arrays, nil), a refusal, and
    `Executed` replies whose events the reporter reads itself (acceptances, a fill, a cancel) and
    hands to the Python (a clock, a self-trade decrement, an expiry, a book's rejection): read in C,
    it makes what the Python makes, and its replies other than `Executed` come back decoded."""
    from engine import messages as book
    from engine.types import CancelReason, Phase, RejectReason
    ids = [(TES_ID << ID_BITS) | n for n in range(1, 5)]
    fast, spec = (Ledger(TES_ID, {"A": [SYMBOL]}) for _ in range(2))
    spec.receive, spec.book_trades = spec._receive, spec.book
    handed_over = []
    fast._receive = lambda record, reports: handed_over.append(record) or Ledger._receive(fast, record, reports)
    records = [Entered(TRADER, n, order_id, SYMBOL, Side(n % 2), OrderType.LIMIT, TimeInForce.GTC, 100, 50)
               for n, order_id in enumerate(ids, 1)]
    accepted = [book.OrderAccepted(order_id, Side(n % 2), OrderType.LIMIT, TimeInForce.GTC, 100, 50)
                for n, order_id in enumerate(ids[:3], 1)]
    replies = [
        p.HelloReply([SYMBOL], ids[0], 7, True, {SYMBOL: 100}),
        p.Executed(8, SYMBOL, [book.ClockAdvanced(START_NS), *accepted], START_NS),
        p.BookView(1, SYMBOL, [(100, 50, 1)], [], None, 8, Phase.CONTINUOUS),
        p.CommandRefused(SYMBOL, ids[3], RejectReason.UNKNOWN_SYMBOL, "unknown symbol"),
        p.Executed(9, SYMBOL, [book.OrderFilled(ids[0], ids[1], 100, 20, 30, 30, Side.BUY, 1),
                               book.OrderDecremented(ids[0], 10, 20, ids[1]),
                               book.OrderExpired(ids[0], 20),
                               book.OrderCanceled(ids[1], 30, CancelReason.UNFILLED),
                               book.OrderRejected(ids[2] + 10, RejectReason.UNKNOWN_ORDER, "no such order")],
                   START_NS + 1),
        p.Executed(8, SYMBOL, [book.OrderCanceled(ids[2], 50, CancelReason.REQUESTED)], START_NS + 2),
    ]
    records.append(Received("A", msgspec.msgpack.encode(replies), START_NS + 3))
    made = [outcome(fast, record) for record in records]
    assert made == [outcome(spec, record) for record in records]
    assert handed_over == [], "the frame was read in C"
    reports, returned = msgspec.msgpack.decode(made[-1][0], type=tuple[list[tuple[str, p.ClientMessage]], list])
    assert [type(report) for _, report in reports] == [
        p.OrderAccepted, p.OrderAccepted, p.OrderAccepted, p.OrderRejected, p.OrderFilled, p.OrderFilled,
        p.OrderDecremented, p.OrderExpired, p.OrderCanceled]
    assert [reply[0] for reply in returned] == ["HelloReply", "BookView", "CommandRefused"]
    assert fast.last_sequence[SYMBOL] == 9, "the replay of sequence 8 after 9 is skipped"
    assert fast.orders.orders[ids[2]].state.value == "accepted"


class JournalStandIn:
    """What `ReplyPath` reads and writes of a `servers.ledger.LedgerJournal`: its sequence and its
    pending records."""

    def __init__(self, sequence: int) -> None:
        self.sequence = sequence
        self.pending = Records()


def reply_path(ledger: Ledger, journal: JournalStandIn) -> ReplyPath:
    """A reply path of ``ledger`` into ``journal``, routing to no TES (nothing here makes a report)."""
    routing = Routing(None, frozenset(), p.OrderAccepted, p.OrderRejected,
                      (p.OrderAccepted, p.OrderFilled, p.OrderCanceled))
    return ReplyPath(ledger.reporter, journal, ledger.kept, 10, routing, Received)


def acceptances(count: int) -> bytes:
    """A frame of ``count`` `Executed` replies, each accepting an order no ledger here holds."""
    from engine import messages as book
    return msgspec.msgpack.encode([
        p.Executed(sequence, SYMBOL, [book.OrderAccepted((7 << ID_BITS) | sequence, Side.BUY, OrderType.LIMIT,
                                                         TimeInForce.GTC, 100, 50)], START_NS + sequence)
        for sequence in range(1, count + 1)])


@pytest.mark.parametrize("shard", ["A", "s" * 31, "s" * 32, "s" * 256])
@pytest.mark.parametrize("replies", [1, 10, 2_000])
def test_a_frame_of_replies_is_journaled_in_c_as_msgspec_encodes_its_record(shard, replies):
    """The record of a frame the reply path takes is the `Received` msgspec would encode, whatever
    the sizes of its shard's name (a fixstr, str8, str16) and its frame (bin8, bin16, bin32), framed
    as the journal's next record; the ledger is left as the Python's `apply` leaves it."""
    frame, time = acceptances(replies), START_NS + 5
    assert (len(frame) <= 0xFF) == (replies == 1) and (len(frame) > 0xFFFF) == (replies == 2_000)
    ledger, spec = Ledger(TES_ID, {shard: [SYMBOL]}), Ledger(TES_ID, {shard: [SYMBOL]})
    journal = JournalStandIn(41)
    assert reply_path(ledger, journal).take(shard, frame, time) == []
    expected = Records()
    expected.add(42, msgspec.msgpack.encode(Received(shard, frame, time)))
    assert journal.sequence == 42 and bytes(memoryview(journal.pending)) == bytes(memoryview(expected))
    assert spec.apply(Received(shard, frame, time)) == ([], [])
    assert encode_state(ledger.state(0, 0)) == encode_state(spec.state(0, 0))
    assert ledger.last_sequence[SYMBOL] == replies


@pytest.mark.parametrize("case", ["damaged", "time beyond int64"])
def test_a_frame_the_reply_path_does_not_read_changes_nothing(case):
    """A frame the reporter does not read in C, or a time it cannot write, is left to the Python
    (None): no record, no sequence, the ledger untouched."""
    frame, time = acceptances(3), START_NS
    if case == "damaged":
        frame = frame[:-1]
    else:
        time = 2**63
    ledger = Ledger(TES_ID, {"A": [SYMBOL]})
    before = encode_state(ledger.state(0, 0))
    journal = JournalStandIn(9)
    assert reply_path(ledger, journal).take("A", frame, time) is None
    assert journal.sequence == 9 and len(journal.pending) == 0
    assert encode_state(ledger.state(0, 0)) == before and ledger.last_sequence == {}


def test_the_common_frames_of_replies_are_recorded_in_c(monkeypatch):
    """The book's frames of acceptances and fills never become a `Received` in the Python, yet each
    is in the journal, in its place."""
    specs = [("enter", "next", SYMBOL, Side(n % 2), OrderType.LIMIT, TimeInForce.GTC, REFERENCE, 10, 0, 0, 0, None,
              0, 0) for n in range(20)]
    recorded = []
    record = tes_module.TradingEngineServer._record
    monkeypatch.setattr(tes_module.TradingEngineServer, "_record",
                        lambda self, made: recorded.append(type(made)) or record(self, made))
    records = run(make_stream(specs, [5, 12]), {}, True, monkeypatch, tight=False)["records"]
    assert Received not in recorded
    kinds = [type(record) for record in records]
    assert kinds.count(Entered) == 20 and kinds.count(Received) == 3


# ================================================================ client frames read in C


@pytest.fixture(scope="module")
def entry():
    """A real TES's order entry in C (its reader of client frames)."""
    with tempfile.TemporaryDirectory(prefix="entry-read-") as tmp:
        exchange = Exchange(Path(tmp))
        try:
            yield exchange.tes.entry
        finally:
            exchange.close()


INT64 = st.integers(-(2**63), 2**63 - 1)
CLIENT_ORDER_ID = st.integers(1, 2**63 - 1)
ASCII_SYMBOL = st.text(st.characters(max_codepoint=127), min_size=1, max_size=16)
ENTER_ORDERS = st.builds(
    p.EnterOrder, CLIENT_ORDER_ID, ASCII_SYMBOL, st.sampled_from(Side), st.sampled_from(OrderType),
    st.sampled_from(TimeInForce), INT64, INT64, INT64, INT64, INT64, st.none() | st.sampled_from(SelfTradePrevention),
    INT64)
CANCEL_ORDERS = st.builds(p.CancelOrder, CLIENT_ORDER_ID, INT64)
CODEC = p.Codec(p.ClientRequest)


@settings(max_examples=300, deadline=None)
@given(st.lists(ENTER_ORDERS | CANCEL_ORDERS, min_size=1, max_size=40))
def test_a_frame_of_orders_and_cancels_is_read_in_c_as_msgspec_decodes_it(entry, messages):
    frame = CODEC.encode(messages)
    read = entry.read(frame, p.MAX_BATCH)
    assert read is not None
    assert len(read) == len(messages) and list(read) == messages == CODEC.decode(frame)
    assert [type(message) for message in read] == [type(message) for message in messages]


@settings(max_examples=300, deadline=None)
@given(st.lists(ENTER_ORDERS | CANCEL_ORDERS, min_size=1, max_size=20), st.randoms(use_true_random=False))
def test_a_damaged_frame_is_read_in_c_as_msgspec_decodes_it_or_left_to_msgspec(entry, messages, rng):
    frame = damaged(CODEC.encode(messages), rng)
    read = entry.read(frame, p.MAX_BATCH)
    try:
        decoded = CODEC.decode(frame)
    except (msgspec.DecodeError, msgspec.ValidationError, p.FrameTooLarge):
        assert read is None, "a frame msgspec refuses is never read in C"
        return
    assert read is None or list(read) == decoded


LIMIT_ROW = ["EnterOrder", 1, SYMBOL, 0, 0, 0, REFERENCE, 10, 0, 0, 0, None, 0]


@pytest.mark.parametrize("row", [
    ["EnterOrder", 1, "ÄCME", 0, 0, 0, REFERENCE, 10, 0, 0, 0, None, 0],   # a symbol not ASCII
    LIMIT_ROW[:8],                                                      # the fields left at their defaults
    ["EnterOrder", 0, SYMBOL, 0, 0, 0, REFERENCE, 10, 0, 0, 0, None, 0],   # client order id 0
    ["EnterOrder", 1, "", 0, 0, 0, REFERENCE, 10, 0, 0, 0, None, 0],       # an empty symbol
    ["EnterOrder", 1, "A" * 17, 0, 0, 0, REFERENCE, 10, 0, 0, 0, None, 0],  # a symbol too long
    ["EnterOrder", 1, SYMBOL, 2, 0, 0, REFERENCE, 10, 0, 0, 0, None, 0],   # no such side
    ["EnterOrder", 1, SYMBOL, 0, 0, 5, REFERENCE, 10, 0, 0, 0, None, 0],   # no such time in force
    ["EnterOrder", 1, SYMBOL, 0, 0, 0, REFERENCE, 10, 0, 0, 0, 5, 0],      # no such self-trade prevention
    ["EnterOrder", 1, SYMBOL, 0, 0, 0, 2**63, 10, 0, 0, 0, None, 0],       # a price beyond int64
    ["EnterOrder", 1, SYMBOL, 0, 0, 0, 1.5, 10, 0, 0, 0, None, 0],         # a float
    ["EnterOrder", 1, SYMBOL, True, 0, 0, REFERENCE, 10, 0, 0, 0, None, 0],  # a bool for a side
    ["CancelOrder", 1],                                                    # a field missing
    ["Heartbeat"],                                                         # another message
], ids=["not ascii", "defaults", "id 0", "empty symbol", "long symbol", "side", "tif", "stp", "int64", "float",
        "bool", "short cancel", "heartbeat"])
def test_a_frame_with_any_other_message_is_left_to_msgspec(entry, row):
    assert entry.read(msgspec.msgpack.encode([LIMIT_ROW, row]), p.MAX_BATCH) is None
    assert entry.read(msgspec.msgpack.encode([LIMIT_ROW, LIMIT_ROW]), p.MAX_BATCH) is not None


def test_an_empty_frame_too_many_messages_or_bytes_after_them_are_left_to_msgspec(entry):
    frame = msgspec.msgpack.encode([LIMIT_ROW] * 3)
    assert len(entry.read(frame, 3)) == 3
    assert entry.read(frame, 2) is None
    assert entry.read(frame + b"\x00", 3) is None
    assert entry.read(msgspec.msgpack.encode([]), 3) is None
    with pytest.raises(IndexError):
        entry.read(frame, 3)[3]


def without_last_field(cls):
    """A message class named and tagged as ``cls``, its last field left out."""
    return msgspec.defstruct(cls.__name__, list(cls.__struct_fields__[:-1]), tag=True)


@pytest.mark.parametrize("changed", range(6))
def test_the_order_entry_in_c_refuses_a_message_it_would_read_or_write_wrongly(changed):
    messages = [Entered, Requested, p.BookSubmit, p.BookCancel, p.EnterOrder, p.CancelOrder]
    name = messages[changed].__name__
    messages[changed] = without_last_field(messages[changed])
    with pytest.raises(TypeError, match=f"^{name} is not the message native/entry.pyx reads or writes: rebuild it"):
        EntryPath(None, messages[4], messages[5], Request, deque, CancelReason.REQUESTED,
                  ID_BITS, tuple(messages[:4]))
    with pytest.raises(TypeError, match="give their classes"):
        EntryPath(None, p.EnterOrder, p.CancelOrder, Request, deque, CancelReason.REQUESTED,
                  ID_BITS, (Entered, Requested, p.BookSubmit))


@pytest.mark.parametrize("changed", ["Executed", "OrderAccepted", "OrderFilled", "OrderCanceled"])
def test_the_reports_in_c_refuse_a_message_they_would_read_or_write_wrongly(changed):
    messages = {"Executed": p.Executed, "OrderAccepted": p.OrderAccepted, "OrderFilled": p.OrderFilled,
                "OrderCanceled": p.OrderCanceled}
    messages[changed] = without_last_field(messages[changed])
    ledger = Ledger(TES_ID, {"A": [SYMBOL]})
    with pytest.raises(TypeError, match=f"^{changed} is not the message native/reports.pyx reads or writes"):
        Reporter(ledger, p.ObsReply, messages["Executed"], p.CommandRefused, messages["OrderAccepted"],
                 messages["OrderFilled"], messages["OrderCanceled"])


@settings(max_examples=200)
@given(st.integers(1, 40), st.lists(st.one_of(st.integers(1, 300), st.integers(4_000, 9_000)), max_size=120),
       st.integers(-1, 130))
def test_the_kept_reports_are_the_latest_as_a_deque_keeps_them(most, sizes, after):
    """`Kept` against a deque of ``most``: reports of any sizes (small ones wrap around the buffer,
    large ones make it grow; the records grow too, past 16 and 32), read back whole, oldest first,
    as one msgpack array too, and those numbered after any number."""
    kept, model = Kept(most), deque(maxlen=most)
    for number, size in enumerate(sizes, 1):
        if number % 3:  # a report made in Python, its number read back by msgspec
            message = p.OrderRejected(number, p.RejectReason.UNKNOWN_SYMBOL, "x" * size, 0, number)
        else:  # one as the C writes it, its number read back in C
            message = p.OrderAccepted(number, number, "S" * size, Side.BUY, OrderType.LIMIT, TimeInForce.GTC,
                                      10_000, 5, 0, number, OrderState.ACCEPTED)
        report = msgspec.msgpack.encode(message)
        kept.add(report)
        model.append((number, report))
        assert len(kept) == len(model)
        assert list(kept) == [report for _, report in model]
    assert kept.after(after) == [report for number, report in model if number > after]
    assert msgspec.msgpack.decode(kept.msgpack()) == [msgspec.msgpack.decode(report) for _, report in model]


def test_a_trader_with_few_reports_kept_holds_little_memory():
    """The records and the buffer grow with the reports, not with how many may be kept: a thousand
    traders of one report each, 10,000 allowed, take under 2 KB each (records for all 10,000 would
    take 240 KB each)."""
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        traders = [Kept(10_000) for _ in range(1_000)]
        for kept in traders:
            kept.add(b"\x91\x01")
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert held < 2_000_000, held
    assert [list(kept) for kept in traders[:2]] == [[b"\x91\x01"], [b"\x91\x01"]]


def test_a_report_is_never_empty_and_a_trader_keeps_at_least_one():
    with pytest.raises(ValueError, match="at least 1"):
        Kept(0)
    with pytest.raises(ValueError, match="empty"):
        Kept(1).add(b"")


def test_the_reports_made_in_python_are_kept_as_their_msgpack_with_their_numbers():
    """A report made in Python (a Struct) is kept as the bytes the TES sends for it; its number,
    and a report's made in C, read back from them."""
    ledger = Ledger(TES_ID, {"A": [SYMBOL]})
    rejected = p.OrderRejected(7, p.RejectReason.UNKNOWN_SYMBOL, "unknown symbol", 0, 3)
    keep(ledger.kept, [(TRADER, rejected)], 10)
    (kept,) = ledger.kept[TRADER]
    assert kept == msgspec.msgpack.Encoder().encode(rejected)
    assert report_number(kept) == 3
    assert ledger.reports_after(TRADER, 2) == [kept] and ledger.reports_after(TRADER, 3) == []


@pytest.mark.parametrize("bad, logged", [
    ([b"not", b"one part"], "sent a malformed frame (2 parts); dropped"),
    ([b"\xc1"], "sent an undecodable frame"),
    ([b"\x90" * (p.MAX_SERVER_FRAME_BYTES + 1)], "sent a malformed frame (1 parts); dropped"),
], ids=["two parts", "undecodable", "oversized"])
def test_a_book_servers_frames_are_taken_in_c_up_to_one_the_python_must_handle(tmp_path, caplog, bad, logged):
    """`_read_shard` takes the frames of replies queued in C (`ReplyPath.take_all`) until one needs
    its Python (here a bad one: logged and dropped), which then reads the rest; every order of the
    frames around it is answered, in order."""
    exchange = Exchange(tmp_path)
    try:
        tes, book = exchange.tes, exchange.book
        for orders in load_flow(6, 1):
            exchange.clients.queued.append([CLIENT, msgspec.msgpack.encode(orders)])
            tes._turn({exchange.clients: 1}, time.monotonic())
            exchange.serve_book(time.time_ns())
        assert len(book.queued) == 6
        book.queued.insert(3, bad)
        exchange.clients.forget_sent()
        with caplog.at_level("ERROR", logger="servers.tes"):
            tes._read_shard(exchange.shard)
            tes._flush(time.monotonic())
        assert not book.queued
        assert logged in caplog.text
        decode = msgspec.msgpack.Decoder(list[p.ClientMessage]).decode
        sent = [message for frame in exchange.clients.sent for message in decode(frame)]
        assert [message.client_order_id for message in sent if type(message) is p.OrderAccepted] == list(range(1, 7))
        assert sum(type(message) is p.OrderFilled for message in sent) == 6
    finally:
        exchange.close()
