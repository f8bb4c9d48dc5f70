"""The TES's order entry in C (`native.entry`) against its Python path, the specification.

Two in-process TES (`benchmarks.tes.Exchange`: real servers, sockets replaced by queues, the OBS's
execute step behind them), one with the entry path and one without, take the same random
streams at the same clock readings: orders of every kind, valid and not (ids out of order and
repeated, prices off the tick and outside the band, quantities off the lot and beyond the limits,
kinds the instrument disables, unknown symbols), cancels, replaces, queries, mass cancels, in
frames of random sizes, under tight message-rate and risk limits. The journals must be equal byte
for byte, and so must every frame sent to the client and to the book, the ledgers and the counts.
"""

import tempfile
from pathlib import Path

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import servers.tes as tes_module
from benchmarks.tes import SYMBOL, TES_ID, TRADER, Exchange
from engine.types import OrderType, SelfTradePrevention, Side, TimeInForce
from servers import protocol as p
from servers.journal import JOURNAL_FILE
from servers.ledger import ID_BITS

START_NS = 1_800_000_000_000_000_000
"""The exchange clock at the start of a stream (each turn moves it on by `TURN_NS`)."""
TURN_NS = 1_000_000
TURN_S = 0.02
"""The monotonic clock's step per turn (from the moment the trader's buckets were made): with a
rate of 60 messages a second, a frame of a few dozen messages runs the trader's bucket dry, and
later turns refill it."""
REFERENCE = 10_000

INSTRUMENTS = {
    "default": {},
    "strict": {"tick_size": 5, "lot_size": 10, "min_quantity": 20, "max_quantity": 500, "price_band_bps": 200,
               "order_types": frozenset({"limit", "stop", "iceberg", "gtd"})},
    "market only": {"order_types": frozenset({"market", "post-only"}), "price_band_bps": 0},
}


def orders():
    """One request, as a spec `make_stream` turns into a message (ids depend on what came before)."""
    prices = st.one_of(st.integers(REFERENCE - 1_200, REFERENCE + 1_200), st.sampled_from([0, -5, 2**31, 2**40]))
    quantities = st.one_of(st.integers(1, 60).map(lambda n: n * 10), st.integers(-3, 700),
                           st.sampled_from([2**31, 10**9]))
    enter = st.tuples(
        st.just("enter"),
        st.sampled_from(["next", "next", "next", "next", "repeat", "skip"]),
        st.sampled_from([SYMBOL, SYMBOL, SYMBOL, "NOPE"]),
        st.sampled_from(list(Side)),
        st.sampled_from([OrderType.LIMIT] * 4 + [OrderType.MARKET] * 2 + [OrderType.STOP, OrderType.STOP_LIMIT]),
        st.sampled_from([TimeInForce.GTC] * 4 + list(TimeInForce)),
        prices, quantities,
        st.sampled_from([0, 0, 0, REFERENCE + 100, REFERENCE - 100]),                # stop price
        st.sampled_from([0, 0, 0, 0, 10, 7]),                                         # display quantity
        st.sampled_from([0, 0, 0, 1, 2]),                                             # flags
        st.sampled_from([None, None, None, *SelfTradePrevention]),
        st.sampled_from([0, 0, 0, START_NS + 10**12, START_NS - 1]),                  # expire at
    )
    cancel = st.tuples(st.just("cancel"), st.integers(1, 40))
    replace = st.tuples(st.just("replace"), st.integers(1, 40), prices, quantities)
    other = st.sampled_from([("heartbeat",), ("open orders",), ("mass cancel",)])
    return st.one_of(enter, enter, enter, enter, cancel, replace, other)


def make_stream(specs: list, cuts: list[int]) -> list[bytes]:
    """The frames of requests ``specs``, cut after the positions in ``cuts``; client order ids
    from one counter, as a client library numbers them."""
    messages, number, used = [], 0, []
    for spec in specs:
        kind = spec[0]
        if kind == "enter":
            _, how, symbol, side, order_type, tif, price, quantity, stop, display, flags, stp, expire = spec
            number += 1
            coid = number
            if how == "repeat" and used:
                coid = used[len(used) // 2]
            elif how == "skip":
                coid = number = number + 3
            used.append(coid)
            messages.append(p.EnterOrder(coid, symbol, side, order_type, tif, price, quantity, stop, display, flags,
                                         stp, expire))
        elif kind == "cancel":
            number += 1
            messages.append(p.CancelOrder(number, (TES_ID << ID_BITS) | spec[1]))
        elif kind == "replace":
            number += 1
            messages.append(p.ReplaceOrder(number, (TES_ID << ID_BITS) | spec[1], spec[2], spec[3]))
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


def run(frames: list[bytes], instrument: dict, entry: bool, monkeypatch, tight: bool = True) -> dict:
    """``frames`` through a fresh exchange (its entry path on or off) at fixed clocks, under tight
    limits or the load trader's own: what it made."""
    ticks = iter(range(START_NS, START_NS + 10**15, 1_000))
    monkeypatch.setattr(tes_module, "clock", lambda: next(ticks))
    with tempfile.TemporaryDirectory(prefix="entry-path-") as tmp:
        exchange = Exchange(Path(tmp))
        try:
            tes = exchange.tes
            if not entry:
                tes.entry = None
            tes.instruments[SYMBOL] = msgspec.structs.replace(tes.instruments[SYMBOL], **instrument)
            now, stamp = tes.risks[TRADER].bucket.last, START_NS
            risk = tes.risks[TRADER]
            risk.queries.last = now
            if tight:
                risk.max_order_quantity, risk.max_notional, risk.max_open_orders = 400, 3_000_000, 25
                risk.bucket.rate, risk.bucket.tokens = 60, 60.0
            for frame in [*frames, None, None]:
                now, stamp = now + TURN_S, stamp + TURN_NS
                exchange.turn(frame, now, stamp)
            tes.journal.write()
            ledger = tes.ledger
            return {
                "journal": (Path(tes.journal.directory) / JOURNAL_FILE).read_bytes()[:tes.journal.journal.offset],
                "client": list(exchange.clients.sent), "book": list(exchange.commands_out),
                "ledger": ledger.state(0, 0), "awaiting": tes.awaiting,
                "counts": (tes.submitted, tes.entered, tes.cancels, tes.replaces, dict(tes.rejects)),
            }
        finally:
            exchange.close()


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(specs=st.lists(orders(), min_size=1, max_size=120), cuts=st.lists(st.integers(0, 120), max_size=12),
       variant=st.sampled_from(sorted(INSTRUMENTS)))
def test_the_entry_path_does_what_the_python_path_does(specs, cuts, variant, monkeypatch):
    frames = make_stream(specs, cuts)
    fast = run(frames, INSTRUMENTS[variant], True, monkeypatch)
    spec = run(frames, INSTRUMENTS[variant], False, monkeypatch)
    assert fast["journal"] == spec["journal"]
    assert fast["client"] == spec["client"]
    assert fast["book"] == spec["book"]
    assert fast["ledger"] == spec["ledger"]
    assert fast["awaiting"].keys() == spec["awaiting"].keys()
    assert fast["counts"] == spec["counts"]


def test_the_entry_path_takes_the_common_orders(monkeypatch):
    """Plain limit and market orders go through the C path: the Python path's `_enter` never runs."""
    specs = [("enter", "next", SYMBOL, Side(n % 2), OrderType.LIMIT if n % 3 else OrderType.MARKET, TimeInForce.GTC,
              REFERENCE, 10, 0, 0, n % 2, None, 0) for n in range(30)]
    frames = make_stream(specs, [10, 20])
    entered = []
    monkeypatch.setattr(tes_module.TradingEngineServer, "_enter", lambda self, *args: entered.append(args))
    made = run(frames, {}, True, monkeypatch, tight=False)
    assert entered == []
    assert made["counts"][:2] == (30, 30)
    commands = msgspec.msgpack.Decoder(list[p.ObsRequest]).decode(b"".join(made["book"][:1]))
    assert [type(command) for command in commands] == [p.BookSubmit] * 10
    assert [command.client_order_id for command in commands] == list(range(1, 11))
