"""The trading engine server's order registry (`servers.orders`): book events to client reports."""

from engine import messages as book
from engine.types import CancelReason, OrderType, RejectReason, Side, TimeInForce
from servers import protocol as p
from servers.orders import Order, OrderRegistry

BUY, SELL = Side.BUY, Side.SELL
LIMIT, GTC, IOC = OrderType.LIMIT, TimeInForce.GTC, TimeInForce.IOC
UNKNOWN = RejectReason.UNKNOWN_ORDER


def order(order_id, trader, client_order_id, side=BUY, price=100, quantity=10, tif=GTC, symbol="ACME"):
    return Order(order_id, trader, client_order_id, symbol, side, LIMIT, tif, price, quantity)


TIME = 0
"""The exchange time the reports of these tests carry (the default, so expected reports need none)."""


def apply(registry, *events, symbol="ACME"):
    reports, trades = [], []
    registry.apply(symbol, list(events), TIME, reports, trades)
    return reports, trades


def accepted(o):
    return book.OrderAccepted(o.order_id, o.side, o.order_type, o.time_in_force, o.price, o.quantity)


def test_trade_reports_both_owners_with_leaves_and_aggressor():
    registry = OrderRegistry()
    maker, taker = order(1, "alice", 11, SELL, 100, 10), order(2, "bob", 21, BUY, 101, 4)
    registry.add(maker)
    apply(registry, accepted(maker))
    registry.add(taker)
    reports, trades = apply(registry, accepted(taker), book.OrderFilled(1, 2, 100, 4, 6, 0, BUY, 7))
    assert reports == [
        ("bob", p.OrderAccepted(21, 2, "ACME", BUY, LIMIT, GTC, 101, 4)),
        ("alice", p.OrderFilled(11, 1, "ACME", SELL, 100, 4, 6, 7, False)),
        ("bob", p.OrderFilled(21, 2, "ACME", BUY, 100, 4, 0, 7, True)),
    ]
    assert trades == [("ACME", 100, 4, "bob", "alice")]
    assert [o.open_order() for o in registry.open_orders("alice")] == [
        p.OpenOrder(11, 1, "ACME", SELL, GTC, 100, 6, 4)]
    assert registry.open_count("bob") == 0 and 2 not in registry.orders


def test_fill_against_an_order_not_ours_reports_only_our_side():
    registry = OrderRegistry()
    registry.add(order(2, "bob", 21, SELL, 100, 4, IOC))
    reports, trades = apply(registry, book.OrderFilled(99, 2, 100, 4, 0, 0, SELL, 1))
    assert reports == [("bob", p.OrderFilled(21, 2, "ACME", SELL, 100, 4, 0, 1, True))]
    assert trades == [("ACME", 100, 4, None, "bob")]


def test_cancel_echoes_the_request_client_order_id():
    registry = OrderRegistry()
    o = order(1, "alice", 11)
    registry.add(o)
    apply(registry, accepted(o))
    registry.request(o, True, 12)
    reports, _ = apply(registry, book.OrderCanceled(1, 10, CancelReason.REQUESTED))
    assert reports == [("alice", p.OrderCanceled(12, 1, "ACME", 10, CancelReason.REQUESTED))]
    assert registry.orders == {} and registry.open_count("alice") == 0


def test_ioc_remainder_is_reported_with_the_order_client_order_id():
    registry = OrderRegistry()
    registry.add(order(1, "alice", 11, tif=IOC))
    reports, _ = apply(registry, book.OrderCanceled(1, 10, CancelReason.UNFILLED))
    assert reports == [("alice", p.OrderCanceled(11, 1, "ACME", 10, CancelReason.UNFILLED))]


def test_mass_cancel_and_disconnect_cancels_carry_their_reason():
    registry = OrderRegistry()
    first, second = order(1, "alice", 11), order(2, "alice", 12)
    registry.add(first)
    registry.add(second)
    registry.request(first, True, 11, CancelReason.MASS_CANCEL)
    registry.request(second, True, 12, CancelReason.DISCONNECTED)
    reports, _ = apply(registry, book.OrderCanceled(1, 10, CancelReason.REQUESTED),
                       book.OrderCanceled(2, 10, CancelReason.REQUESTED))
    assert [(m.client_order_id, m.reason) for _, m in reports] == [
        (11, CancelReason.MASS_CANCEL), (12, CancelReason.DISCONNECTED)]


def test_cancel_of_an_order_filled_meanwhile_is_rejected_then_forgotten():
    registry = OrderRegistry()
    o = order(1, "alice", 11, SELL)
    registry.add(o)
    registry.request(o, True, 12)
    reports, _ = apply(registry, book.OrderFilled(1, 50, 100, 10, 0, 0, BUY, 1))
    assert registry.open_count("alice") == 0 and 1 in registry.orders  # still owed an answer
    reports, _ = apply(registry, book.CancelRejected(1, UNKNOWN, "gone"))
    assert reports == [("alice", p.CancelRejected(12, 1, UNKNOWN, "gone"))]
    assert registry.orders == {}


def test_rejected_mass_cancel_is_not_reported():
    registry = OrderRegistry()
    o = order(1, "alice", 11, SELL)
    registry.add(o)
    registry.request(o, True, 11, CancelReason.MASS_CANCEL)
    apply(registry, book.OrderFilled(1, 50, 100, 10, 0, 0, BUY, 1))
    reports, _ = apply(registry, book.CancelRejected(1, UNKNOWN, "gone"))
    assert reports == [] and registry.orders == {}


def test_replace_updates_the_order_and_answers_requests_in_order():
    registry = OrderRegistry()
    o = order(1, "alice", 11, BUY, 100, 10)
    registry.add(o)
    registry.request(o, False, 12)
    registry.request(o, False, 13)
    registry.request(o, True, 14)
    reports, _ = apply(registry, book.OrderReplaced(1, 101, 8, False), book.ReplaceRejected(1, UNKNOWN, "x"),
                       book.OrderCanceled(1, 8, CancelReason.REQUESTED))
    assert reports == [
        ("alice", p.OrderReplaced(12, 1, "ACME", 101, 8, False)),
        ("alice", p.ReplaceRejected(13, 1, UNKNOWN, "x")),
        ("alice", p.OrderCanceled(14, 1, "ACME", 8, CancelReason.REQUESTED)),
    ]


def test_book_reject_and_expiry():
    registry = OrderRegistry()
    registry.add(order(1, "alice", 11))
    registry.add(order(2, "alice", 12, tif=TimeInForce.DAY))
    reports, _ = apply(registry, book.OrderRejected(1, RejectReason.DUPLICATE_ORDER_ID, "dup"),
                       book.OrderExpired(2, 10))
    assert reports == [("alice", p.OrderRejected(11, RejectReason.DUPLICATE_ORDER_ID, "dup")),
                       ("alice", p.OrderExpired(12, 2, "ACME", 10))]
    assert registry.orders == {}


def test_refusal_answers_the_submission_first_then_requests():
    registry = OrderRegistry()
    o = order(1, "alice", 11)
    registry.add(o)
    registry.request(o, True, 12)
    reason = RejectReason.UNKNOWN_SYMBOL
    reports = []
    registry.refused(p.CommandRefused("ACME", 1, reason, "no"), reports, TIME)
    registry.refused(p.CommandRefused("ACME", 1, reason, "no"), reports, TIME)
    assert reports == [("alice", p.OrderRejected(11, reason, "no")), ("alice", p.CancelRejected(12, 1, reason, "no"))]
    assert registry.orders == {}


def test_unsent_commands_are_undone_and_refused_in_order():
    registry = OrderRegistry()
    resting, new = order(1, "alice", 11), order(2, "alice", 21)
    registry.add(resting)
    apply(registry, accepted(resting))
    registry.request(resting, False, 12)
    registry.add(new)
    commands = [p.BookReplace("ACME", 1, 101, 5), p.BookSubmit("ACME", 2, 0, 0, 0, 100, 10),
                p.BookQuery(1, "ACME", 5)]
    reports = []
    registry.unsent(commands, reports, TIME)
    reason = RejectReason.BOOK_UNAVAILABLE
    assert reports == [("alice", p.ReplaceRejected(12, 1, reason, reason.text)),
                       ("alice", p.OrderRejected(21, reason, reason.text))]
    assert list(registry.orders) == [1] and not resting.requests


def test_open_orders_by_symbol_and_ownership():
    registry = OrderRegistry()
    registry.add(order(1, "alice", 11, symbol="ACME"))
    registry.add(order(2, "alice", 12, symbol="BOLT"))
    registry.add(order(3, "bob", 13))
    assert [o.order_id for o in registry.open_orders("alice")] == [1, 2]
    assert [o.order_id for o in registry.open_orders("alice", "BOLT")] == [2]
    assert registry.owned("alice", 3) is None and registry.owned("bob", 3).client_order_id == 13
    assert registry.open_orders("carol") == []


def test_abandon_refuses_every_command_in_flight_on_the_symbols_and_nothing_else():
    registry = OrderRegistry()
    pending, resting, other = order(1, "alice", 11), order(2, "bob", 21, SELL), order(3, "bob", 31, symbol="BOLT")
    quiet = order(4, "alice", 41, price=99)
    for o in (pending, resting, other, quiet):
        registry.add(o)
    apply(registry, accepted(resting), accepted(quiet))
    apply(registry, accepted(other), symbol="BOLT")
    registry.request(resting, False, 22)
    registry.request(resting, True, 23)
    registry.request(resting, True, 21, CancelReason.MASS_CANCEL)
    registry.request(other, True, 32)
    assert registry.in_flight({"ACME"}) == 2 and registry.in_flight({"BOLT"}) == 1

    reports = []
    registry.abandon({"ACME"}, reports, TIME)
    unavailable = RejectReason.BOOK_UNAVAILABLE
    assert reports == [
        ("alice", p.OrderRejected(11, unavailable, unavailable.text)),
        ("bob", p.ReplaceRejected(22, 2, unavailable, unavailable.text)),
        ("bob", p.CancelRejected(23, 2, unavailable, unavailable.text)),
    ]
    assert registry.in_flight({"ACME"}) == 0 and registry.in_flight({"BOLT"}) == 1
    assert 1 not in registry.orders and registry.owned("bob", 2) is resting and registry.owned("alice", 4) is quiet
    assert [o.order_id for o in registry.open_orders("alice")] == [4]


def test_every_report_carries_the_time_it_is_given():
    registry = OrderRegistry()
    maker, taker = order(1, "alice", 11, SELL, 100, 10), order(2, "bob", 21, BUY, 101, 4)
    registry.add(maker)
    registry.add(taker)
    reports, trades = [], []
    registry.apply("ACME", [accepted(maker)], 5, reports, trades)
    registry.apply("ACME", [accepted(taker), book.OrderFilled(1, 2, 100, 4, 6, 0, BUY, 7)], 9, reports, trades)
    registry.request(maker, True, 12)
    registry.refused(p.CommandRefused("ACME", 1, UNKNOWN, "no"), reports, 11)
    assert [(trader, type(report).__name__, report.time) for trader, report in reports] == [
        ("alice", "OrderAccepted", 5), ("bob", "OrderAccepted", 9), ("alice", "OrderFilled", 9),
        ("bob", "OrderFilled", 9), ("alice", "CancelRejected", 11)]
