"""The trading engine server's order registry (`servers.orders`): book events to client reports.

Every order report carries, after the exchange time, the trader's report number and the
order's state by the lifecycle table, its filled and open quantity and average price; the
expected reports below spell them out.
"""

from engine import messages as book
from engine.lifecycle import OrderState
from engine.types import CancelReason, OrderType, RejectReason, Side, TimeInForce
from servers import protocol as p
from servers.orders import Order, OrderRegistry

BUY, SELL = Side.BUY, Side.SELL
LIMIT, GTC, IOC = OrderType.LIMIT, TimeInForce.GTC, TimeInForce.IOC
UNKNOWN = RejectReason.UNKNOWN_ORDER
ACCEPTED, PARTLY, FILLED = OrderState.ACCEPTED, OrderState.PARTIALLY_FILLED, OrderState.FILLED
CANCELED, EXPIRED, REJECTED = OrderState.CANCELED, OrderState.EXPIRED, OrderState.REJECTED
T = 0
"""The exchange time the reports carry in these tests (where it does not matter)."""


def order(order_id, trader, client_order_id, side=BUY, price=100, quantity=10, tif=GTC, symbol="ACME"):
    return Order(order_id, trader, client_order_id, symbol, side, LIMIT, tif, price, quantity)


def apply(registry, *events, symbol="ACME", time=T):
    reports, trades = [], []
    registry.apply(symbol, list(events), time, reports, trades)
    return reports, trades


def accepted(o):
    return book.OrderAccepted(o.order_id, o.side, o.order_type, o.time_in_force, o.price, o.quantity)


def entered(registry, *orders):
    """Add ``orders`` and have the book accept them (their reports are numbered, then dropped)."""
    for o in orders:
        registry.add(o)
        apply(registry, accepted(o), symbol=o.symbol)


def test_trade_reports_both_owners_with_state_quantities_and_average_price():
    registry = OrderRegistry()
    maker, taker = order(1, "alice", 11, SELL, 100, 10), order(2, "bob", 21, BUY, 101, 4)
    entered(registry, maker)
    registry.add(taker)
    reports, trades = apply(registry, accepted(taker), book.OrderFilled(1, 2, 100, 4, 6, 0, BUY, 7))
    assert reports == [
        ("bob", p.OrderAccepted(21, 2, "ACME", BUY, LIMIT, GTC, 101, 4, T, 1, ACCEPTED, 0, 4, 0.0)),
        ("alice", p.OrderFilled(11, 1, "ACME", SELL, 100, 4, 6, 7, False, T, 2, PARTLY, 4, 100.0)),
        ("bob", p.OrderFilled(21, 2, "ACME", BUY, 100, 4, 0, 7, True, T, 2, FILLED, 4, 100.0)),
    ]
    assert trades == [("ACME", 100, 4, "bob", "alice")]
    assert [o.open_order() for o in registry.open_orders("alice")] == [
        p.OpenOrder(11, 1, "ACME", SELL, GTC, 100, 6, 4)]
    assert registry.open_count("bob") == 0 and 2 not in registry.orders


def test_average_price_is_over_every_fill_and_exact():
    registry = OrderRegistry()
    taker = order(2, "bob", 21, BUY, 103, 10)
    registry.add(taker)
    reports, _ = apply(registry, accepted(taker), book.OrderFilled(91, 2, 100, 3, 0, 7, BUY, 1),
                       book.OrderFilled(92, 2, 101, 3, 0, 4, BUY, 2), book.OrderFilled(93, 2, 103, 4, 0, 0, BUY, 3))
    assert [(m.status, m.filled, m.leaves, m.average_price) for _, m in reports[1:]] == [
        (PARTLY, 3, 7, 100.0), (PARTLY, 6, 4, 100.5), (FILLED, 10, 0, 101.5)]


def test_fill_against_an_order_not_ours_reports_only_our_side():
    registry = OrderRegistry()
    registry.add(order(2, "bob", 21, SELL, 100, 4, IOC))
    reports, trades = apply(registry, accepted(registry.orders[2]), book.OrderFilled(99, 2, 100, 4, 0, 0, SELL, 1))
    assert reports[1:] == [("bob", p.OrderFilled(21, 2, "ACME", SELL, 100, 4, 0, 1, True, T, 2, FILLED, 4, 100.0))]
    assert trades == [("ACME", 100, 4, None, "bob")]


def test_cancel_echoes_the_request_client_order_id():
    registry = OrderRegistry()
    o = order(1, "alice", 11)
    entered(registry, o)
    registry.request(o, True, 12)
    reports, _ = apply(registry, book.OrderCanceled(1, 10, CancelReason.REQUESTED))
    assert reports == [("alice", p.OrderCanceled(12, 1, "ACME", 10, CancelReason.REQUESTED, T, 2, CANCELED, 0, 0,
                                                 0.0))]
    assert registry.orders == {} and registry.open_count("alice") == 0


def test_ioc_remainder_is_reported_with_the_order_client_order_id():
    registry = OrderRegistry()
    o = order(1, "alice", 11, tif=IOC)
    registry.add(o)
    reports, _ = apply(registry, accepted(o), book.OrderCanceled(1, 10, CancelReason.UNFILLED))
    assert reports[1] == ("alice", p.OrderCanceled(11, 1, "ACME", 10, CancelReason.UNFILLED, T, 2, CANCELED, 0, 0,
                                                   0.0))


def test_mass_cancel_and_disconnect_cancels_carry_their_reason():
    registry = OrderRegistry()
    first, second = order(1, "alice", 11), order(2, "alice", 12)
    entered(registry, first, second)
    registry.request(first, True, 11, CancelReason.MASS_CANCEL)
    registry.request(second, True, 12, CancelReason.DISCONNECTED)
    reports, _ = apply(registry, book.OrderCanceled(1, 10, CancelReason.REQUESTED),
                       book.OrderCanceled(2, 10, CancelReason.REQUESTED))
    assert [(m.client_order_id, m.reason, m.report) for _, m in reports] == [
        (11, CancelReason.MASS_CANCEL, 3), (12, CancelReason.DISCONNECTED, 4)]


def test_cancel_of_an_order_filled_meanwhile_is_rejected_then_forgotten():
    registry = OrderRegistry()
    o = order(1, "alice", 11, SELL)
    entered(registry, o)
    registry.request(o, True, 12)
    apply(registry, book.OrderFilled(1, 50, 100, 10, 0, 0, BUY, 1))
    assert registry.open_count("alice") == 0 and 1 in registry.orders  # still owed an answer
    reports, _ = apply(registry, book.CancelRejected(1, UNKNOWN, "gone"))
    assert reports == [("alice", p.CancelRejected(12, 1, UNKNOWN, "gone", T, 3, FILLED, 10, 0, 100.0))]
    assert registry.orders == {}


def test_rejected_mass_cancel_is_not_reported():
    registry = OrderRegistry()
    o = order(1, "alice", 11, SELL)
    entered(registry, o)
    registry.request(o, True, 11, CancelReason.MASS_CANCEL)
    apply(registry, book.OrderFilled(1, 50, 100, 10, 0, 0, BUY, 1))
    reports, _ = apply(registry, book.CancelRejected(1, UNKNOWN, "gone"))
    assert reports == [] and registry.orders == {}


def test_replace_updates_the_order_and_answers_requests_in_order():
    registry = OrderRegistry()
    o = order(1, "alice", 11, BUY, 100, 10)
    entered(registry, o)
    registry.request(o, False, 12)
    registry.request(o, False, 13)
    registry.request(o, True, 14)
    reports, _ = apply(registry, book.OrderReplaced(1, 101, 8, False), book.ReplaceRejected(1, UNKNOWN, "x"),
                       book.OrderCanceled(1, 8, CancelReason.REQUESTED))
    assert reports == [
        ("alice", p.OrderReplaced(12, 1, "ACME", 101, 8, False, T, 2, ACCEPTED, 0, 8, 0.0)),
        ("alice", p.ReplaceRejected(13, 1, UNKNOWN, "x", T, 3, ACCEPTED, 0, 8, 0.0)),
        ("alice", p.OrderCanceled(14, 1, "ACME", 8, CancelReason.REQUESTED, T, 4, CANCELED, 0, 0, 0.0)),
    ]


def test_book_reject_and_expiry():
    registry = OrderRegistry()
    registry.add(order(1, "alice", 11))
    day = order(2, "alice", 12, tif=TimeInForce.DAY)
    entered(registry, day)
    reports, _ = apply(registry, book.OrderRejected(1, RejectReason.DUPLICATE_ORDER_ID, "dup"),
                       book.OrderExpired(2, 10))
    assert reports == [
        ("alice", p.OrderRejected(11, RejectReason.DUPLICATE_ORDER_ID, "dup", T, 2, REJECTED, 0, 0, 0.0)),
        ("alice", p.OrderExpired(12, 2, "ACME", 10, T, 3, EXPIRED, 0, 0, 0.0)),
    ]
    assert registry.orders == {}


def test_refusal_answers_the_submission_first_then_requests():
    registry = OrderRegistry()
    o = order(1, "alice", 11)
    registry.add(o)
    registry.request(o, True, 12)
    reason = RejectReason.UNKNOWN_SYMBOL
    reports = []
    registry.refused(p.CommandRefused("ACME", 1, reason, "no"), reports, T)
    registry.refused(p.CommandRefused("ACME", 1, reason, "no"), reports, T)
    assert reports == [("alice", p.OrderRejected(11, reason, "no", T, 1, REJECTED)),
                       ("alice", p.CancelRejected(12, 1, reason, "no", T, 2, REJECTED, 0, 0, 0.0))]
    assert registry.orders == {}


def test_unsent_commands_are_undone_and_refused_in_order():
    registry = OrderRegistry()
    resting, new = order(1, "alice", 11), order(2, "alice", 21)
    entered(registry, resting)
    registry.request(resting, False, 12)
    registry.add(new)
    commands = [p.BookReplace("ACME", 1, 101, 5), p.BookSubmit("ACME", 2, 0, 0, 0, 100, 10),
                p.BookQuery(1, "ACME", 5)]
    reports = []
    registry.unsent(commands, reports, T)
    reason = RejectReason.BOOK_UNAVAILABLE
    assert reports == [("alice", p.ReplaceRejected(12, 1, reason, reason.text, T, 2, ACCEPTED, 0, 10, 0.0)),
                       ("alice", p.OrderRejected(21, reason, reason.text, T, 3, REJECTED))]
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
    registry.add(pending)
    entered(registry, resting, quiet, other)
    registry.request(resting, False, 22)
    registry.request(resting, True, 23)
    registry.request(resting, True, 21, CancelReason.MASS_CANCEL)
    registry.request(other, True, 32)
    assert registry.in_flight({"ACME"}) == 2 and registry.in_flight({"BOLT"}) == 1

    reports = []
    registry.abandon({"ACME"}, reports, T)
    unavailable = RejectReason.BOOK_UNAVAILABLE
    assert reports == [
        ("alice", p.OrderRejected(11, unavailable, unavailable.text, T, 2, REJECTED)),
        ("bob", p.ReplaceRejected(22, 2, unavailable, unavailable.text, T, 3, ACCEPTED, 0, 10, 0.0)),
        ("bob", p.CancelRejected(23, 2, unavailable, unavailable.text, T, 4, ACCEPTED, 0, 10, 0.0)),
    ]
    assert registry.in_flight({"ACME"}) == 0 and registry.in_flight({"BOLT"}) == 1
    assert 1 not in registry.orders and registry.owned("bob", 2) is resting and registry.owned("alice", 4) is quiet
    assert [o.order_id for o in registry.open_orders("alice")] == [4]


def test_every_report_carries_the_time_it_is_given_and_the_next_number_of_its_trader():
    registry = OrderRegistry({"alice": 40})
    maker, taker = order(1, "alice", 11, SELL, 100, 10), order(2, "bob", 21, BUY, 101, 4)
    registry.add(maker)
    registry.add(taker)
    reports, trades = [], []
    registry.apply("ACME", [accepted(maker)], 5, reports, trades)
    registry.apply("ACME", [accepted(taker), book.OrderFilled(1, 2, 100, 4, 6, 0, BUY, 7)], 9, reports, trades)
    registry.request(maker, True, 12)
    registry.refused(p.CommandRefused("ACME", 1, UNKNOWN, "no"), reports, 11)
    assert [(trader, type(report).__name__, report.time, report.report) for trader, report in reports] == [
        ("alice", "OrderAccepted", 5, 41), ("bob", "OrderAccepted", 9, 1), ("alice", "OrderFilled", 9, 42),
        ("bob", "OrderFilled", 9, 2), ("alice", "CancelRejected", 11, 43)]
    assert registry.numbers == {"alice": 43, "bob": 2}
