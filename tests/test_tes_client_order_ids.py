"""Client order ids through a real TES in one process (`benchmarks.tes.Exchange`: its sockets
replaced by queues, its book server by the OBS's execute step): a trader that numbers orders and
cancels from one counter, as the client library and the gateways do, keeps its ids in order and is
never refused for them, however many orders follow its cancels."""

import msgspec
import pytest

from benchmarks.tes import SYMBOL, Exchange
from engine.types import OrderType, RejectReason, Side, TimeInForce
from servers import protocol as p
from servers.sessions import ClientOrderIds

ENCODE = msgspec.msgpack.Encoder().encode
BOUND = 8
"""The out-of-order bound for these tests (the real one, 100,000, would take minutes to reach)."""


@pytest.fixture
def exchange(tmp_path, monkeypatch):
    monkeypatch.setattr(ClientOrderIds, "MAX_OUT_OF_ORDER", BOUND)
    made = Exchange(tmp_path)
    yield made
    made.close()


def send(exchange: Exchange, *requests) -> list:
    """One client frame of ``requests``, then turns until the book has answered; the reports sent."""
    sent = len(exchange.clients.sent)
    exchange.turn(ENCODE(list(requests)))
    while exchange.queued():
        exchange.turn(None)
    return [message for frame in exchange.clients.sent[sent:]
            for message in msgspec.msgpack.decode(frame, type=list[p.ClientMessage])]


def order(client_order_id: int, side: Side = Side.BUY, price: int = 9_990) -> p.EnterOrder:
    return p.EnterOrder(client_order_id, SYMBOL, side, OrderType.LIMIT, TimeInForce.GTC, price, 1)


def test_orders_after_cancels_numbered_from_one_counter_are_never_refused(exchange):
    (accepted,) = send(exchange, order(1))
    assert type(accepted) is p.OrderAccepted
    (canceled,) = send(exchange, p.CancelOrder(2, accepted.order_id))
    assert type(canceled) is p.OrderCanceled and canceled.client_order_id == 2
    (bad,) = send(exchange, p.CancelOrder(3, accepted.order_id))
    assert type(bad) is p.CancelRejected and bad.reason is RejectReason.UNKNOWN_ORDER
    answers = send(exchange, *(order(number, price=9_990 - number) for number in range(4, 4 + 3 * BOUND)))
    assert [type(answer) for answer in answers] == [p.OrderAccepted] * 3 * BOUND
    ids = exchange.tes.ledger.ids("load")
    assert (ids.contiguous, ids.others, ids.next()) == (3 + 3 * BOUND, set(), 4 + 3 * BOUND)
    assert not any(exchange.tes.rejects[reason] for reason in (RejectReason.CLIENT_ORDER_IDS_OUT_OF_ORDER,
                                                                RejectReason.DUPLICATE_CLIENT_ORDER_ID))


def test_a_cancel_uses_its_id_so_an_order_that_reuses_it_is_a_duplicate(exchange):
    (accepted,) = send(exchange, order(1))
    send(exchange, p.CancelOrder(2, accepted.order_id))
    (refused,) = send(exchange, order(2))
    assert type(refused) is p.OrderRejected and refused.reason is RejectReason.DUPLICATE_CLIENT_ORDER_ID


def test_ids_out_of_order_are_still_bounded(exchange):
    sparse = range(2, 2 * (BOUND + 2), 2)
    answers = {answer.client_order_id: answer for answer in send(
        exchange, *(order(number, price=9_990 - number) for number in sparse))}
    assert {number: type(answers[number]) for number in sparse} == {
        **dict.fromkeys(sparse[:BOUND], p.OrderAccepted), sparse[-1]: p.OrderRejected}
    assert answers[sparse[-1]].reason is RejectReason.CLIENT_ORDER_IDS_OUT_OF_ORDER
    (accepted,) = send(exchange, order(1))
    assert type(accepted) is p.OrderAccepted, "the next id in order still passes"
