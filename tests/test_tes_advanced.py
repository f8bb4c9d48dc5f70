"""The advanced orders through the real servers: the TES's checks of each new rule with its reject
code, the book's own rejects relayed, pre-trade risk of stops, and, end to end, a stop triggering,
an iceberg refreshing, post-only refused, self-trade prevention between the traders of one account
(every mode), and a killed TES restarting with held stops, icebergs and GTD orders as they were.

The exchange is the shipped configuration plus `test_tes`'s test traders and this module's
(`ADVANCED`): TAME, an instrument that takes only limit and market orders; desk1a and desk1b, two
traders of the account desk1 (desk1b's default mode cancel-taker); desk2 of another account.
"""

import re
import time

import msgspec
import pytest
import zmq
from procs import REPO, Role, exchange_env
from test_tes import BUY, GTC, IOC, LIMIT, MARKET, SELL, TEST_TRADERS, Exchange
from test_tes_restart import view

from engine.types import CancelReason, OrderFlags, OrderType, RejectReason, SelfTradePrevention, TimeInForce
from servers import protocol as p
from servers.auth import hash_api_key

R = RejectReason
STP = SelfTradePrevention
STOP, STOP_LIMIT = OrderType.STOP, OrderType.STOP_LIMIT
FOK, GTD = TimeInForce.FOK, TimeInForce.GTD
POST_ONLY = int(OrderFlags.POST_ONLY)
SECOND = 1_000_000_000

ADVANCED = f"""
[[instruments]]
symbol = "TAME"
tick_size = 5
lot_size = 10
min_quantity = 10
max_quantity = 100000
price_band_bps = 1000
reference_price = 10000
order_types = ["limit", "market"]

[[traders]]
trader_id = "desk1a"
account = "desk1"
api_key_hash = "{hash_api_key("desk1a-demo-key", iterations=1000)}"

[[traders]]
trader_id = "desk1b"
account = "desk1"
stp_default = "cancel-taker"
api_key_hash = "{hash_api_key("desk1b-demo-key", iterations=1000)}"

[[traders]]
trader_id = "desk2"
api_key_hash = "{hash_api_key("desk2-demo-key", iterations=1000)}"
"""


def advanced_env(tmp_path, **overrides):
    """An isolated exchange's environment: the shipped configuration, the test traders and `ADVANCED`."""
    config = tmp_path / "exchange.toml"
    config.write_text((REPO / "config" / "exchange.toml").read_text() + TEST_TRADERS + ADVANCED)
    return exchange_env(tmp_path, EXCHANGE_CONFIG=str(config), EXCHANGE__SHARDS__0__SYMBOLS='["ACME", "BOLT", "TAME"]',
                        **overrides)


class AdvancedExchange(Exchange):
    """`test_tes.Exchange` (an OBS and a TES) on `advanced_env`."""

    def __init__(self, tmp_path, **overrides):
        self.env = advanced_env(tmp_path, **overrides)
        self.context = zmq.Context()
        self.obs = self.tes = None
        try:
            self.obs = Role(["-s", "OBS"], self.env)
            self.start_tes()
        except BaseException:
            self.close()
            raise


def enter(client, symbol, side, order_type, tif, price, quantity, **fields):
    """Send an EnterOrder with the advanced ``fields`` (stop_price, display_quantity, flags, stp,
    expire_at); its client order id."""
    client_order_id = client.next_id
    client.next_id += 1
    client.send(p.EnterOrder(client_order_id, symbol, side, order_type, tif, price, quantity, **fields))
    return client_order_id


def refused(client, *args, **fields):
    """Enter an order that must be rejected; (reason, text)."""
    client_order_id = enter(client, *args, **fields)
    reply = client.one()
    assert isinstance(reply, p.OrderRejected) and reply.client_order_id == client_order_id, reply
    return reply.reason, reply.text


def accepted(client, *args, **fields):
    """Enter an order that must be accepted; its OrderAccepted (nothing else is read)."""
    client_order_id = enter(client, *args, **fields)
    reply = client.one()
    assert isinstance(reply, p.OrderAccepted) and reply.client_order_id == client_order_id, reply
    return reply


def cancel(client, order_id):
    client.send(p.CancelOrder(client.next_id, order_id))
    client.next_id += 1
    reply = client.one()
    assert type(reply) is p.OrderCanceled and reply.order_id == order_id, reply
    return reply


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """One exchange for the validation tests: none of them trades on ACME."""
    exchange = AdvancedExchange(tmp_path_factory.mktemp("advanced"))
    yield exchange
    exchange.close()


@pytest.fixture
def fresh(tmp_path):
    """A fresh exchange for one test (sessions time out after a minute: the raw clients do not heartbeat)."""
    exchange = AdvancedExchange(tmp_path, EXCHANGE__TES__SESSION_TIMEOUT_MS="60000")
    yield exchange
    exchange.close()


# ================================================================ the TES's checks, one rule each


@pytest.mark.parametrize("kind, order, fields", [
    ("stop", (BUY, STOP, GTC, 0, 10), {"stop_price": 10_500}),
    ("stop-limit", (BUY, STOP_LIMIT, GTC, 10_000, 10), {"stop_price": 10_500}),
    ("iceberg", (BUY, LIMIT, GTC, 9_000, 100), {"display_quantity": 10}),
    ("post-only", (BUY, LIMIT, GTC, 9_000, 100), {"flags": POST_ONLY}),
    ("gtd", (BUY, LIMIT, GTD, 9_000, 100), {"expire_at": 2**62}),
])
def test_a_kind_of_order_the_instrument_does_not_enable_is_refused_3007(shared, kind, order, fields):
    client = shared.client("alice")
    assert refused(client, "TAME", *order, **fields) == (R.ORDER_TYPE_DISABLED,
                                                         f"{kind} orders are not enabled for TAME")
    assert R.ORDER_TYPE_DISABLED == 3007
    accepted_order = accepted(client, "TAME", BUY, LIMIT, GTC, 9_000, 10)
    cancel(client, accepted_order.order_id)


def test_an_iceberg_cut_into_more_slices_than_the_instrument_allows_is_refused_3008(shared):
    client = shared.client("alice")
    assert refused(client, "ACME", SELL, LIMIT, GTC, 10_500, 1_000, display_quantity=9) == (
        R.ICEBERG_TOO_MANY_SLICES, "display quantity 9 cuts quantity 1000 into 112 slices, more than the maximum 100")
    assert R.ICEBERG_TOO_MANY_SLICES == 3008
    iceberg = accepted(client, "ACME", SELL, LIMIT, GTC, 10_500, 1_000, display_quantity=10)
    assert (iceberg.quantity, iceberg.display_quantity) == (1_000, 10)
    cancel(client, iceberg.order_id)


def test_a_replace_raising_an_icebergs_quantity_past_the_slices_allowed_is_refused_3008(shared):
    client = shared.client("alice")
    iceberg = accepted(client, "ACME", SELL, LIMIT, GTC, 10_500, 100, display_quantity=10)
    client.send(p.ReplaceOrder(client.next_id, iceberg.order_id, 10_500, 1_001))
    reply = client.one()
    assert (type(reply), reply.client_order_id, reply.reason, reply.text) == (
        p.ReplaceRejected, client.next_id, R.ICEBERG_TOO_MANY_SLICES,
        "display quantity 10 cuts quantity 1001 into 101 slices, more than the maximum 100")
    client.next_id += 1
    cancel(client, iceberg.order_id)


def test_an_iceberg_display_quantity_off_the_lot_is_refused_3003(shared):
    client = shared.client("alice")
    assert refused(client, "BOLT", SELL, LIMIT, GTC, 26_000, 100, display_quantity=15) == (
        R.QUANTITY_OFF_LOT, "display quantity 15 is not a multiple of the lot 10")


def test_a_stop_price_further_from_the_last_trade_than_the_instrument_allows_is_refused_3009(shared):
    client = shared.client("alice")
    # ACME has not traded: the distance is from its reference price 10000, 1000 bps: 9000..11000
    assert refused(client, "ACME", BUY, STOP, GTC, 0, 10, stop_price=11_001) == (
        R.STOP_PRICE_TOO_FAR, "stop price 11001 is outside 9000..11000")
    assert refused(client, "ACME", SELL, STOP_LIMIT, GTC, 9_000, 10, stop_price=8_999)[0] is R.STOP_PRICE_TOO_FAR
    assert R.STOP_PRICE_TOO_FAR == 3009
    edge = accepted(client, "ACME", BUY, STOP, GTC, 0, 10, stop_price=11_000)
    cancel(client, edge.order_id)


def test_a_stop_off_the_tick_is_refused_3002(shared):
    client = shared.client("alice")
    assert refused(client, "BOLT", BUY, STOP, GTC, 0, 10, stop_price=25_003) == (
        R.PRICE_OFF_TICK, "stop price 25003 is not a multiple of the tick 5")


def test_a_stop_the_last_trade_already_reaches_is_refused_3010(shared):
    alice, bob = shared.client("alice"), shared.client("bob")
    # before BOLT's first trade no stop can trigger: a buy stop at the reference price is taken
    early = accepted(alice, "BOLT", BUY, STOP, GTC, 0, 10, stop_price=25_000)
    cancel(alice, early.order_id)
    accepted(alice, "BOLT", SELL, LIMIT, GTC, 25_000, 10)
    bob.order("BOLT", BUY, 25_000, 10, IOC)
    assert [type(m) for m in bob.read(2)] == [p.OrderAccepted, p.OrderFilled]
    assert type(alice.one()) is p.OrderFilled
    assert refused(alice, "BOLT", BUY, STOP, GTC, 0, 10, stop_price=25_000) == (
        R.STOP_WOULD_TRIGGER, "buy stop price 25000 is at or below the last trade price 25000: it would trigger at "
        "once")
    assert refused(alice, "BOLT", SELL, STOP_LIMIT, GTC, 25_100, 10, stop_price=25_050) == (
        R.STOP_WOULD_TRIGGER, "sell stop price 25050 is at or above the last trade price 25000: it would trigger at "
        "once")
    assert R.STOP_WOULD_TRIGGER == 3010
    held = [accepted(alice, "BOLT", BUY, STOP, GTC, 0, 10, stop_price=25_005),
            accepted(alice, "BOLT", SELL, STOP_LIMIT, GTC, 24_900, 10, stop_price=24_995)]
    for order in held:
        cancel(alice, order.order_id)


def test_a_good_till_date_order_expiring_before_now_is_refused_1015(shared):
    client = shared.client("alice")
    reason, text = refused(client, "ACME", BUY, LIMIT, GTD, 9_000, 10, expire_at=time.time_ns() - SECOND)
    assert reason is R.EXPIRE_TIME_PASSED
    assert re.fullmatch(r"good-till-date expiry \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z is not after the exchange "
                        r"time \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", text), text


@pytest.mark.parametrize("order, fields, reason", [
    ((SELL, LIMIT, GTC, 10_500, 10), {"display_quantity": 20}, R.INVALID_DISPLAY_QUANTITY),
    ((SELL, MARKET, IOC, 0, 10), {"display_quantity": 5}, R.INVALID_DISPLAY_QUANTITY),
    ((SELL, LIMIT, IOC, 10_500, 10), {"flags": POST_ONLY}, R.POST_ONLY_NOT_ALLOWED),
    ((SELL, LIMIT, GTC, 10_500, 10), {"flags": 2}, R.UNKNOWN_FLAGS),
    ((SELL, STOP, GTC, 0, 10), {"stop_price": 0}, R.INVALID_STOP_PRICE),
], ids=["display above quantity", "display on a market order", "post-only IOC", "unknown flag", "no stop price"])
def test_the_books_own_rules_are_relayed_with_their_codes(shared, order, fields, reason):
    client = shared.client("alice")
    assert refused(client, "ACME", *order, **fields) == (reason, reason.text)


def test_an_unknown_stp_mode_is_a_malformed_message(shared):
    client = shared.client("alice")
    client.send_raw(msgspec.msgpack.encode([["EnterOrder", 999, "ACME", 0, 0, 0, 10_000, 10, 0, 0, 0, 9, 0]]))
    assert client.one() == p.SessionRejected(R.MALFORMED_MESSAGE,
                                             "malformed message: Invalid enum value 9 - at `$[0][11]`")  # stp


def test_a_stop_market_order_is_valued_at_its_stop_price_and_held_stops_are_open_orders(shared):
    tight = shared.client("tight")  # max_notional 1,000,000; max_open_orders 2
    assert refused(tight, "ACME", BUY, STOP, GTC, 0, 100, stop_price=10_001) == (
        R.NOTIONAL_LIMIT, "notional 1000100 at price 10001 is above the trader's limit 1000000")
    held = [accepted(tight, "ACME", BUY, STOP, GTC, 0, 100, stop_price=10_000),
            accepted(tight, "ACME", SELL, STOP_LIMIT, GTC, 9_500, 10, stop_price=9_600)]
    assert [(o.held, o.order_type) for o in tight.open_orders()] == [(True, STOP), (True, STOP_LIMIT)]
    assert refused(tight, "ACME", BUY, LIMIT, GTC, 9_000, 1) == (
        R.OPEN_ORDERS_LIMIT, "the trader has the maximum of 2 open orders")
    for order in held:
        cancel(tight, order.order_id)


def test_an_accepted_order_reports_every_field_as_the_book_keeps_it(shared):
    alice = shared.client("alice")
    expire_at = time.time_ns() + 3600 * SECOND
    order = accepted(alice, "ACME", SELL, STOP_LIMIT, GTD, 9_400, 10, stop_price=9_500, expire_at=expire_at,
                     stp=STP.DECREMENT)
    assert (order.order_type, order.time_in_force, order.price, order.stop_price, order.expire_at, order.stp) == (
        STOP_LIMIT, GTD, 9_400, 9_500, expire_at, STP.DECREMENT)
    stop = accepted(alice, "ACME", SELL, STOP, FOK, 0, 10, stop_price=9_500)
    assert (stop.time_in_force, stop.expire_at, stop.stp) == (GTC, 0, STP.NONE), "a stop ignores its time in force"
    (first, second) = alice.open_orders()
    assert (first.order_type, first.held, first.stop_price, first.expire_at, first.stp) == (
        STOP_LIMIT, True, 9_500, expire_at, STP.DECREMENT)
    assert (second.order_type, second.time_in_force, second.held) == (STOP, GTC, True)
    for held in (order, stop):
        cancel(alice, held.order_id)


# ================================================================ end to end


def test_a_stop_triggers_when_a_trade_reaches_it_and_trades_as_a_market_order(fresh):
    alice, bob, flow = fresh.client("alice"), fresh.client("bob"), fresh.client("flow1")
    bob.accepted("ACME", SELL, 10_000, 5)
    ask = bob.accepted("ACME", SELL, 10_010, 10)
    stop = accepted(alice, "ACME", BUY, STOP, GTC, 0, 8, stop_price=10_000)
    assert (stop.order_type, stop.price, stop.stop_price) == (STOP, 0, 10_000)
    assert [(o.order_id, o.held) for o in alice.open_orders()] == [(stop.order_id, True)]
    assert flow.book() == ([], [(10_000, 5, 1), (10_010, 10, 1)]), "a held stop is not in the book"

    flow.order("ACME", BUY, 10_000, 5, IOC)  # the trade at 10000 reaches the buy stop at 10000
    assert [type(m) for m in flow.read(2)] == [p.OrderAccepted, p.OrderFilled]
    triggered, filled = alice.read(2)
    assert triggered == p.StopTriggered(stop.client_order_id, stop.order_id, "ACME", 10_000)
    assert (type(filled), filled.price, filled.quantity, filled.leaves, filled.aggressor) == (
        p.OrderFilled, 10_010, 8, 0, True)
    bob.read(1)
    maker = bob.one()
    assert (maker.order_id, maker.price, maker.quantity, maker.leaves) == (ask.order_id, 10_010, 8, 2)
    assert alice.open_orders() == []
    assert [(x.symbol, x.quantity) for x in alice.positions().positions] == [("ACME", 8)]


def test_a_stop_limit_triggers_into_a_resting_limit_order(fresh):
    alice, bob, flow = fresh.client("alice"), fresh.client("bob"), fresh.client("flow1")
    bob.accepted("ACME", BUY, 9_900, 5)
    stop = accepted(alice, "ACME", SELL, STOP_LIMIT, GTC, 9_950, 10, stop_price=9_900)
    flow.order("ACME", SELL, 9_900, 5, IOC)
    assert [type(m) for m in flow.read(2)] == [p.OrderAccepted, p.OrderFilled]
    assert alice.one() == p.StopTriggered(stop.client_order_id, stop.order_id, "ACME", 9_900)
    alice.quiet(0.2)
    (resting,) = alice.open_orders()
    assert (resting.order_id, resting.held, resting.price, resting.quantity) == (stop.order_id, False, 9_950, 10)
    assert flow.book() == ([], [(9_950, 10, 1)])


def test_an_iceberg_shows_one_slice_and_refreshes_it_as_it_trades(fresh):
    alice, bob = fresh.client("alice"), fresh.client("bob")
    iceberg = accepted(alice, "ACME", SELL, LIMIT, GTC, 10_100, 25, display_quantity=10)
    assert bob.book() == ([], [(10_100, 10, 1)])
    bob.order("ACME", BUY, 10_100, 10, IOC)
    assert [(m.quantity, m.leaves) for m in bob.read(2)[1:]] == [(10, 0)]
    assert [(m.quantity, m.leaves) for m in alice.read(1)] == [(10, 15)]
    assert bob.book() == ([], [(10_100, 10, 1)]), "a new slice of 10 shows"
    bob.order("ACME", BUY, 10_100, 20, IOC)
    fills = bob.read(3)[1:]
    assert [(m.quantity, m.leaves) for m in fills] == [(10, 10), (5, 5)], "one fill per slice"
    assert bob.one().reason is CancelReason.UNFILLED
    assert [(m.order_id, m.quantity, m.leaves) for m in alice.read(2)] == [
        (iceberg.order_id, 10, 5), (iceberg.order_id, 5, 0)]
    assert bob.book() == ([], [])


def test_a_post_only_order_that_would_trade_is_refused_and_one_that_would_not_rests(fresh):
    alice, bob = fresh.client("alice"), fresh.client("bob")
    bob.accepted("ACME", SELL, 10_000, 10)
    assert refused(alice, "ACME", BUY, LIMIT, GTC, 10_000, 5, flags=POST_ONLY) == (
        R.POST_ONLY_WOULD_TAKE, R.POST_ONLY_WOULD_TAKE.text)
    maker = accepted(alice, "ACME", BUY, LIMIT, GTC, 9_995, 5, flags=POST_ONLY)
    assert maker.flags == POST_ONLY
    assert bob.book() == ([(9_995, 5, 1)], [(10_000, 10, 1)])


# ---------------------------------------------------------------- self-trade prevention


def test_stp_cancel_taker_cancels_the_incoming_order_and_leaves_the_resting_one(fresh):
    a, b = fresh.client("desk1a"), fresh.client("desk1b")
    resting = accepted(a, "ACME", SELL, LIMIT, GTC, 10_000, 10)
    taker = accepted(b, "ACME", BUY, LIMIT, GTC, 10_000, 4, stp=STP.CANCEL_TAKER)
    assert taker.stp is STP.CANCEL_TAKER
    assert b.one() == p.OrderCanceled(taker.client_order_id, taker.order_id, "ACME", 4, CancelReason.SELF_TRADE)
    a.quiet(0.2)
    assert b.book() == ([], [(10_000, 10, 1)])
    assert [o.order_id for o in a.open_orders()] == [resting.order_id]


def test_stp_cancel_maker_cancels_the_resting_order_and_the_taker_goes_on(fresh):
    a, b, other = fresh.client("desk1a"), fresh.client("desk1b"), fresh.client("desk2")
    own = accepted(a, "ACME", SELL, LIMIT, GTC, 10_000, 10)
    foreign = accepted(other, "ACME", SELL, LIMIT, GTC, 10_005, 10)
    taker = accepted(b, "ACME", BUY, LIMIT, GTC, 10_005, 6, stp=STP.CANCEL_MAKER)
    assert a.one() == p.OrderCanceled(own.client_order_id, own.order_id, "ACME", 10, CancelReason.SELF_TRADE)
    fill = b.one()
    assert (fill.order_id, fill.price, fill.quantity, fill.leaves) == (taker.order_id, 10_005, 6, 0)
    assert other.one().order_id == foreign.order_id, "another account's order trades as usual"
    assert b.book() == ([], [(10_005, 4, 1)])


def test_stp_cancel_both_cancels_both_orders(fresh):
    a, b = fresh.client("desk1a"), fresh.client("desk1b")
    own = accepted(a, "ACME", BUY, LIMIT, GTC, 9_990, 10)
    taker = accepted(b, "ACME", SELL, LIMIT, GTC, 9_990, 15, stp=STP.CANCEL_BOTH)
    assert a.one() == p.OrderCanceled(own.client_order_id, own.order_id, "ACME", 10, CancelReason.SELF_TRADE)
    assert b.one() == p.OrderCanceled(taker.client_order_id, taker.order_id, "ACME", 15, CancelReason.SELF_TRADE)
    assert b.book() == ([], [])


def test_stp_decrement_shrinks_both_orders_without_a_trade(fresh):
    a, b = fresh.client("desk1a"), fresh.client("desk1b")
    own = accepted(a, "ACME", BUY, LIMIT, GTC, 9_990, 10)
    taker = accepted(b, "ACME", SELL, LIMIT, GTC, 9_990, 4, stp=STP.DECREMENT)
    assert a.one() == p.OrderDecremented(own.client_order_id, own.order_id, "ACME", 4)
    assert b.one() == p.OrderDecremented(taker.client_order_id, taker.order_id, "ACME", 4)
    (left,) = a.open_orders()
    assert (left.order_id, left.quantity, left.filled) == (own.order_id, 6, 0)
    assert b.open_orders() == [] and b.positions().positions == []
    assert b.book() == ([(9_990, 6, 1)], [])


def test_stp_uses_the_traders_default_unless_the_order_names_a_mode_and_never_acts_across_accounts(fresh):
    a, b, other = fresh.client("desk1a"), fresh.client("desk1b"), fresh.client("desk2")
    accepted(a, "ACME", SELL, LIMIT, GTC, 10_000, 10)
    by_default = accepted(b, "ACME", BUY, LIMIT, GTC, 10_000, 2)
    assert by_default.stp is STP.CANCEL_TAKER, "desk1b's stp_default"
    assert b.one().reason is CancelReason.SELF_TRADE
    trades = accepted(b, "ACME", BUY, LIMIT, GTC, 10_000, 3, stp=STP.NONE)
    assert (b.one().quantity, a.one().quantity) == (3, 3), "mode none: they trade"
    assert trades.stp is STP.NONE
    foreign = accepted(other, "ACME", BUY, LIMIT, GTC, 10_000, 2, stp=STP.CANCEL_BOTH)
    assert (other.one().order_id, a.one().leaves) == (foreign.order_id, 5), "desk2 is another account"


# ---------------------------------------------------------------- a durable TES


def test_a_killed_tes_restarts_with_held_stops_icebergs_and_gtd_orders_as_they_were(fresh):
    alice, bob = fresh.client("alice"), fresh.client("bob")
    stop = accepted(alice, "ACME", BUY, STOP, GTC, 0, 5, stop_price=10_000)
    accepted(alice, "ACME", SELL, LIMIT, GTD, 10_200, 30, display_quantity=10, expire_at=time.time_ns() + 3600 * SECOND)
    accepted(bob, "ACME", SELL, LIMIT, GTC, 10_000, 10, stp=STP.CANCEL_MAKER)
    for client in (alice, bob):
        client.socket.close()
    before = {trader: view(fresh, trader) for trader in ("alice", "bob")}
    assert [o.held for o in before["alice"]["open_orders"]] == [True, False]
    fresh.tes.kill()
    fresh.start_tes()
    assert {trader: view(fresh, trader) for trader in ("alice", "bob")} == before

    alice, flow = fresh.client("alice"), fresh.client("flow1")
    flow.order("ACME", BUY, 10_000, 5, IOC)
    assert [type(m) for m in flow.read(2)] == [p.OrderAccepted, p.OrderFilled]
    triggered, filled = alice.read(2)
    assert (type(triggered), triggered.order_id, type(filled), filled.quantity) == (
        p.StopTriggered, stop.order_id, p.OrderFilled, 5)
    assert [(o.held, o.display_quantity) for o in alice.open_orders()] == [(False, 10)]
