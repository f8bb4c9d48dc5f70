"""The load generator's advanced mix (``--mix advanced``).

The cycle itself, socket-free: driven through the reference book as one owner, every order
is accepted, each cycle makes its trades and triggers both stops and leaves the book empty
with its last trade at P; the frames never separate the orders a cycle joins. Then the
program against a real OBS and TES: every order of each kind accepted, no rejects, the
fills and triggers of whole cycles, at a modest rate and at one that batches many orders
per frame; and the default flow unchanged.
"""

import json
import subprocess
import sys

import pytest
from procs import REPO, Role, endpoint, exchange_env

from clients import loadgen
from clients.client import ExchangeClient
from engine.book import ReferenceBook
from engine.messages import OrderAccepted, OrderFilled, OrderRejected, StopTriggered
from engine.types import OrderType, TimeInForce

P, TICK, Q = 10_000, 1, 1
CYCLE = len(loadgen.ADVANCED_MIX)
EXPIRE_AT = 10**18


# ================================================================ the cycle, socket-free


def run_cycles(book: ReferenceBook, cycles: int, tick: int = TICK, quantity: int = Q) -> list:
    """Every event of ``cycles`` cycles of the mix around P, all of one owner (as one trader's are)."""
    fields = loadgen.mix_fields(loadgen.ADVANCED_MIX, "ACME", P, tick, quantity, EXPIRE_AT)
    events = []
    for i in range(cycles * CYCLE):
        (_symbol, side, order_type, tif, price, qty, stop, display, flags, stp, expire_at) = fields[i % CYCLE]
        events += book.submit(i + 1, side, order_type, tif, price, qty, stop_price=stop, display_quantity=display,
                              flags=flags, owner=7, stp=stp, expire_at=expire_at)
        if i % CYCLE == CYCLE - 1:
            assert book.depth(0, 10) == [] and book.depth(1, 10) == [], f"the book is not empty after cycle {i}"
    return events


def kinds(events, kind) -> list:
    return [event for event in events if type(event) is kind]


@pytest.mark.parametrize("tick, quantity", [(1, 1), (5, 10)])
def test_each_cycle_is_accepted_whole_trades_triggers_both_stops_and_empties_the_book(tick, quantity):
    book = ReferenceBook()
    book.submit(10**9, 0, OrderType.LIMIT, TimeInForce.GTC, P, quantity)  # the priming trade
    book.submit(10**9 + 1, 1, OrderType.LIMIT, TimeInForce.IOC, P, quantity)

    events = run_cycles(book, 3, tick, quantity)

    assert len(kinds(events, OrderAccepted)) == 3 * CYCLE
    assert kinds(events, OrderRejected) == []
    trades = kinds(events, OrderFilled)
    assert len(trades) == 3 * loadgen.ADVANCED_FILLS // 2
    assert len(kinds(events, StopTriggered)) == 3 * loadgen.ADVANCED_TRIGGERS
    assert {trade.price for trade in trades} == {P - tick, P, P + tick}
    assert trades[-1].price == P


def test_the_mix_holds_every_advanced_kind():
    fields = loadgen.mix_fields(loadgen.ADVANCED_MIX, "ACME", P, TICK, Q, EXPIRE_AT)
    types = {f[2] for f in fields}
    assert types == {OrderType.LIMIT, OrderType.MARKET, OrderType.STOP, OrderType.STOP_LIMIT}
    assert {f[3] for f in fields} == {TimeInForce.GTC, TimeInForce.IOC, TimeInForce.FOK, TimeInForce.GTD}
    assert any(f[7] for f in fields) and any(f[8] for f in fields), "an iceberg and a post-only"
    assert {int(f[9]) for f in fields} == {0, 1, 2, 3, 4}, "every self-trade prevention mode, NONE named"
    assert sum(count for _, count in loadgen.mix_shares(loadgen.ADVANCED_MIX)) == CYCLE
    assert max(len(run) for run in "".join("j" if o.joined else " " for o in loadgen.ADVANCED_MIX).split()) + 1 \
        == loadgen.MAX_JOINED


class Recorded(loadgen.LoadGenerator):
    """The advanced generator with its frames recorded instead of sent."""

    def send(self, batch: range) -> None:
        self.frames.append(batch)


def test_frames_never_separate_joined_orders_and_runs_are_whole_cycles():
    client = ExchangeClient("tcp://127.0.0.1:9", "load", "load-demo-key")  # never logs on: nothing is sent
    try:
        generator = Recorded.advanced(client, "ACME", P, TICK, Q, rate=1000.0, duration=0.101, batch_max=4,
                                      expire_at=EXPIRE_AT)
        generator.frames = []
        assert generator.total == 120, "101 orders rounded up to whole cycles"
        for due in range(1, generator.total + 1):
            generator._send_until(due)
        assert generator.sent == generator.total
        sent = [i for frame in generator.frames for i in frame]
        assert sent == list(range(generator.total))
        for frame in generator.frames:
            assert 0 < len(frame) <= 4
            assert not loadgen.ADVANCED_MIX[(frame.stop - 1) % CYCLE].joined, frame
    finally:
        client.close()


# ================================================================ against a real exchange


@pytest.fixture(scope="module")
def exchange(tmp_path_factory):
    env = exchange_env(tmp_path_factory.mktemp("exchange"))
    with Role(["-s", "OBS"], env) as obs, Role(["-s", "TES"], env) as tes:
        tes.wait_for("shard A ready", 10)
        yield env
        assert tes.stop() == 0, tes.output()
        assert obs.stop() == 0, obs.output()


def run_loadgen(env, *args: str) -> dict:
    done = subprocess.run([sys.executable, "main.py", "-c", "loadgen", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def book_is_empty(env, symbol: str) -> bool:
    with ExchangeClient(endpoint(env, "TES__CLIENT_ENDPOINT"), "alice", "alice-demo-key") as alice:
        alice.logon(10.0)
        book = alice.book(symbol)
        return book.bids == [] and book.asks == []


@pytest.mark.parametrize("symbol, rate, duration", [
    ("ACME", 1000, 1.0),      # about one order per frame
    ("BOLT", 1000, 1.0),      # tick 5, lot 10
    ("ACME", 60000, 0.5),     # tens of orders per frame, many in flight
])
def test_the_advanced_mix_is_accepted_whole_with_every_fill_and_trigger(exchange, symbol, rate, duration):
    result = run_loadgen(exchange, "--mix", "advanced", "--symbol", symbol, "--rate", str(rate), "--duration",
                         str(duration), "--drain", "60")

    cycles = result["sent"] // CYCLE
    assert result["sent"] == cycles * CYCLE == rate * duration
    assert (result["acked"], result["rejected"], result["lost"]) == (result["sent"], 0, 0), result
    assert result["reject_reasons"] == {}
    assert result["fills"] == cycles * loadgen.ADVANCED_FILLS
    assert result["triggered"] == cycles * loadgen.ADVANCED_TRIGGERS
    assert list(result) == [*loadgen.RESULT_KEYS, "triggered", "reject_reasons"]
    assert book_is_empty(exchange, symbol)


def test_the_default_flow_keeps_its_result_keys(exchange):
    result = run_loadgen(exchange, "--rate", "500", "--duration", "1")
    assert list(result) == list(loadgen.RESULT_KEYS)
    assert (result["sent"], result["acked"], result["rejected"], result["fills"]) == (500, 500, 0, 500)


def test_help_lists_the_advanced_mix_with_its_shares():
    done = subprocess.run([sys.executable, "main.py", "-c", "loadgen", "--help"], cwd=REPO, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0
    for kind, count in loadgen.mix_shares(loadgen.ADVANCED_MIX):
        assert any(line.split()[:-5] == kind.split() and line.split()[-5] == str(count)
                   for line in done.stdout.splitlines()), (kind, done.stdout)
