"""The FIX gateway's end of a loop turn (`FixGateway._flush`): whatever a send to the TES took in
is stored before any of it reaches a peer, so a ``kill -9`` between the two never makes the gateway
use a MsgSeqNum again after its restart."""

from gateways.fix.server import Connection, FixGateway
from gateways.fix.session import State


class Store:
    """A session store: dirty once a message is counted, clean once flushed."""

    def __init__(self) -> None:
        self.dirty = False

    def flush(self) -> None:
        self.dirty = False


class Socket:
    """A peer's socket: takes everything, noting whether the store held it all when it was sent."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.sent: list[tuple[bytes, bool]] = []

    def send(self, data) -> int:
        self.sent.append((bytes(data), not self.store.dirty))
        return len(data)


class Link:
    """A trader's TES link with a request to send; its answer has arrived by then, so the send
    takes it in (`pump`) and the session sends the peer its execution report, counted in the store.
    With ``asks_again``, that report makes one more request (a cancel that waited for it)."""

    def __init__(self, store: Store, connection: Connection, asks_again: bool = False) -> None:
        self.store, self.connection, self.asks_again = store, connection, asks_again
        self.outbox = ["EnterOrder"]
        self.sent: list[tuple[str, bool]] = []

    def flush(self) -> None:
        self.sent += [(request, not self.store.dirty) for request in self.outbox]
        self.outbox = []

    def pump(self) -> None:
        self.connection.out += b"35=8|34=2|"
        self.store.dirty = True
        if self.asks_again:
            self.outbox = ["CancelOrder"]


class Session:
    state = State.CLOSED  # nothing more to pump once its output is written


def gateway_with_one_session(asks_again: bool = False) -> tuple[FixGateway, Store, Socket, Link]:
    store = Store()
    connection = object.__new__(Connection)
    connection.sock, connection.fd, connection.out = Socket(store), 7, bytearray()
    connection.session, connection.closing, connection.closing_at, connection.writable = Session(), None, 0.0, False
    link = Link(store, connection, asks_again)
    gateway = object.__new__(FixGateway)
    gateway.stores, gateway.links = {("EXCHANGE", "ALICE"): store}, {"alice": link}
    gateway.connections = {7: connection}
    return gateway, store, connection.sock, link


def test_a_report_taken_in_by_the_send_to_the_tes_is_stored_before_the_peer_gets_it():
    gateway, store, sock, link = gateway_with_one_session()
    gateway._flush()
    assert link.sent == [("EnterOrder", True)]
    assert sock.sent == [(b"35=8|34=2|", True)], "the report left before the store counted it"
    assert not store.dirty


def test_the_requests_those_reports_make_are_stored_before_they_are_sent():
    gateway, store, sock, link = gateway_with_one_session(asks_again=True)
    gateway._flush()
    assert link.sent == [("EnterOrder", True), ("CancelOrder", True)]
    assert sock.sent == [(b"35=8|34=2|", True)] and not store.dirty
