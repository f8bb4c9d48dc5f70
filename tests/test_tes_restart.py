"""A durable TES: `kill -9` and a restart keep every trader's state exactly (`servers.ledger`).

What a trader can see of the TES's state is compared before the kill and after the restart:
positions, cash and realized P&L, open orders, the next client order id, and every report
the trader was ever sent (numbers, times and all). With orders in flight at the kill, every
order is answered exactly once and positions equal what the book server journaled.
"""

import signal
import time

import pytest
from procs import eventually
from test_tes import BUY, DAY, GTC, IOC, SELL, Client, Exchange

from engine.types import RejectReason
from servers import protocol as p
from servers.journal import read_discarded

TRADERS = ("alice", "bob", "deep")


def view(exchange, trader):
    """Everything ``trader`` can learn of the TES's state: logon (with every report sent again),
    positions, open orders."""
    client = Client(exchange.context, exchange.env["EXCHANGE__TES__CLIENT_ENDPOINT"])
    client.send(p.Logon(trader, "deep-key" if trader == "deep" else f"{trader}-demo-key", False, 0))
    frames = []
    deadline = time.monotonic() + 10
    while not frames or not isinstance(frames[0], p.LogonAccepted):
        assert time.monotonic() < deadline
        frames = client.raw_frame(5.0)
    accepted, history = frames[0], frames[1:]
    while len(history) < accepted.last_report:
        history += client.raw_frame(5.0)
    client.send(p.QueryPositions(1))
    positions = client.one()
    client.send(p.QueryOpenOrders(2))
    open_orders = client.one()
    client.send(p.Logout())
    client.one()
    client.socket.close()
    return {"next_client_order_id": accepted.next_client_order_id, "last_report": accepted.last_report,
            "history": history, "cash": positions.cash,
            "positions": [(x.symbol, x.quantity, x.average_price, x.realized_pnl) for x in positions.positions],
            "open_orders": open_orders.orders}


def restart_tes(exchange):
    exchange.tes.kill()
    exchange.start_tes()


@pytest.mark.parametrize("snapshot_every", [200_000, 3], ids=["journal", "snapshots"])
def test_a_killed_tes_restarts_with_every_traders_state_and_history_as_it_was(tmp_path, snapshot_every):
    """From its journal alone, or (a snapshot every 3 records) from a snapshot and the records after it."""
    exchange = Exchange(tmp_path, EXCHANGE__TES__SESSION_TIMEOUT_MS="60000",
                        EXCHANGE__JOURNAL__SNAPSHOT_EVERY=str(snapshot_every))
    try:
        alice, bob = exchange.client("alice"), exchange.client("bob")
        resting = alice.accepted("ACME", BUY, 9_990, 10)
        alice.accepted("BOLT", SELL, 25_500, 20, DAY)
        bob.order("ACME", SELL, 9_990, 4, IOC)
        assert [type(m) for m in bob.read(2)] == [p.OrderAccepted, p.OrderFilled]
        assert type(alice.one()) is p.OrderFilled
        assert alice.rejected("ACME", BUY, 1, 10) is RejectReason.PRICE_OUTSIDE_BAND
        bob.send(p.CancelOrder(bob.next_id, resting.order_id))
        assert bob.one().reason is RejectReason.UNKNOWN_ORDER, "not bob's order"
        for client in (alice, bob):
            client.socket.close()
        before = {trader: view(exchange, trader) for trader in TRADERS}
        assert before["alice"]["last_report"] >= 4 and before["alice"]["open_orders"]

        # written by a thread, slowly on a loaded machine: the newest two are kept (a third for a
        # moment, while the writer replaces one), and then the journal before the older is discarded
        if snapshot_every == 3:
            eventually(lambda: len(list((tmp_path / "tes").glob("ledger-*.msgpack"))) >= 2
                       and read_discarded(tmp_path / "tes") > 0, "no two snapshots and a discard")
        snapshots = list((tmp_path / "tes").glob("ledger-*.msgpack"))
        assert len(snapshots) in ((2, 3) if snapshot_every == 3 else (0,))
        assert (read_discarded(tmp_path / "tes") > 0) == (snapshot_every == 3)
        restart_tes(exchange)
        after = {trader: view(exchange, trader) for trader in TRADERS}
        assert after == before

        alice = exchange.client("alice")
        alice.send(p.CancelOrder(alice.next_id, resting.order_id))
        canceled = alice.one()
        assert (type(canceled), canceled.order_id, canceled.quantity) == (p.OrderCanceled, resting.order_id, 6)
        assert exchange.tes.stop() == 0
    finally:
        exchange.close()


SENT_BEFORE_STOP = 3_000
"""Orders the in-flight test sends before it stops the TES; the rest (of 4,000) it sends to the stopped TES."""


def test_orders_in_flight_at_a_kill_are_each_answered_once_and_positions_follow_the_book(tmp_path):
    """Orders read but not answered at a kill are answered after the restart, each once; orders the
    TES never read are not entered, and the logon tells the trader to send them again."""
    exchange = Exchange(tmp_path, EXCHANGE__TES__SESSION_TIMEOUT_MS="60000")
    try:
        trader, count = exchange.client("deep"), 4_000
        first_id = trader.next_id
        orders = [p.EnterOrder(first_id + i, "ACME", BUY if i % 2 else SELL, 0, GTC, 10_000 + (i * 7) % 11 - 5,
                               1 + i % 9) for i in range(count)]
        answers, last_report = {}, 0

        def read(messages):
            nonlocal last_report
            for message in messages:
                last_report = max(last_report, getattr(message, "report", 0))
                if isinstance(message, p.OrderAccepted | p.OrderRejected):
                    assert message.client_order_id not in answers, f"answered twice: {message}"
                    answers[message.client_order_id] = message

        for start in range(0, SENT_BEFORE_STOP, 500):
            trader.send(*orders[start:start + 500])
        while len(answers) < 500:
            read(trader.raw_frame(5.0))
        # stopped, the TES reads nothing more: the last orders die unread with it, as orders still
        # in a socket's buffers do at a crash
        exchange.tes.process.send_signal(signal.SIGSTOP)
        for start in range(SENT_BEFORE_STOP, count, 500):
            trader.send(*orders[start:start + 500])
        exchange.tes.process.send_signal(signal.SIGKILL)
        exchange.tes.process.wait(10)
        trader.socket.close()
        exchange.start_tes()
        again = Client(exchange.context, exchange.env["EXCHANGE__TES__CLIENT_ENDPOINT"])
        again.send(p.Logon("deep", "deep-key", False, last_report))
        frames, deadline = [], time.monotonic() + 10
        while not frames or not isinstance(frames[0], p.LogonAccepted):
            assert time.monotonic() < deadline, "no LogonAccepted"
            frames = again.raw_frame(5.0)
        read(frames[1:])
        # what the TES never read is not its to answer: the logon says which client order id it
        # expects next, and the trader sends the orders from there again
        unread = orders[frames[0].next_client_order_id - first_id:]
        assert len(unread) >= count - SENT_BEFORE_STOP, "orders sent to the stopped TES were entered"
        assert not answers.keys() & {order.client_order_id for order in unread}, "an unread order was answered"
        for start in range(0, len(unread), 500):
            again.send(*unread[start:start + 500])
        deadline = time.monotonic() + 30
        while len(answers) < count:
            assert time.monotonic() < deadline, f"{count - len(answers)} orders never answered"
            read(again.raw_frame(0.5))
            again.send(p.Heartbeat())
        refused = [m for m in answers.values() if isinstance(m, p.OrderRejected)]
        assert all(m.reason is RejectReason.BOOK_UNAVAILABLE for m in refused)
        again.quiet(0.5)
        again.send(p.QueryOpenOrders(1))
        levels = {}
        for order in again.one().orders:
            levels[order.side, order.price] = levels.get((order.side, order.price), 0) + order.quantity
        again.send(p.QueryBook(2, "ACME", 1000))
        book = again.one()
        assert levels and {(BUY, price): quantity for price, quantity, _ in book.bids} | {
            (SELL, price): quantity for price, quantity, _ in book.asks} == levels, "the TES agrees with the book"
        assert exchange.tes.stop() == 0
    finally:
        exchange.close()


def test_a_tes_that_missed_more_replies_than_the_book_server_keeps_catches_up_from_its_journal(tmp_path):
    """TES 1 is down while a second TES trades against its traders' resting orders, for more
    commands than the book server keeps replies (20 here): at the restart the Hello reply says
    the replay is incomplete and the TES reads the fills it missed from the journal stream."""
    exchange = Exchange(tmp_path, EXCHANGE__SECURITY__KEYS_DIR="", EXCHANGE__JOURNAL__REPLIES_KEPT="20",
                        EXCHANGE__TES__SESSION_TIMEOUT_MS="60000")
    second = None
    try:
        alice = exchange.client("alice")
        resting = [alice.accepted("ACME", SELL, 10_010 + n, 5) for n in range(3)]
        alice.socket.close()
        before = view(exchange, "alice")
        exchange.tes.kill()

        second, env = exchange.start_second_tes(tmp_path)
        flow = Client(exchange.context, env["EXCHANGE__TES__CLIENT_ENDPOINT"])
        flow.logon("flow1")
        for n in range(30):  # commands that do not concern TES 1, pushing its fills out of the kept replies
            flow.accepted("BOLT", BUY, 24_000 + 5 * n, 10)
        flow.order("ACME", BUY, 10_011, 8, IOC)  # takes 5 at 10,010 and 3 at 10,011 from alice
        assert [type(m) for m in flow.read(3)] == [p.OrderAccepted, p.OrderFilled, p.OrderFilled]
        for n in range(30):
            flow.accepted("BOLT", BUY, 23_000 + 5 * n, 10)

        exchange.start_tes()
        exchange.tes.wait_for("catching up from its journal", 10)
        exchange.tes.wait_for("caught up from its journal", 10)
        after = view(exchange, "alice")
        missed = after["history"][len(before["history"]):]
        assert [(type(m), m.order_id, m.price, m.quantity, m.leaves) for m in missed] == [
            (p.OrderFilled, resting[0].order_id, 10_010, 5, 0), (p.OrderFilled, resting[1].order_id, 10_011, 3, 2)]
        assert after["positions"] == [("ACME", -8, 10_010.375, 0)]
        assert [(o.order_id, o.quantity) for o in after["open_orders"]] == [
            (resting[1].order_id, 2), (resting[2].order_id, 5)]
        assert second.stop() == 0 and exchange.tes.stop() == 0
    finally:
        if second is not None and second.process.poll() is None:
            second.kill()
        exchange.close()
