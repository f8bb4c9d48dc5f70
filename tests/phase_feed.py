"""A symbol's market data published by the test, in the OBS's place, for the gateways' phase tests.

`PhaseFeed` binds a market data ROUTER and a snapshot ROUTER on free loopback ports, as a shard's
``market_data_endpoint`` and ``snapshot_endpoint``: a gateway started with `endpoints` in its
environment reads its market data from here (its orders still go to the real TES). The test sets the
book's snapshot (with its phase and indicative uncross), answers the gateway's subscription and
snapshot requests (`serve`) and publishes the phase messages (`publish`) to the subscriber, each with
the next sequence number, exactly as the OBS frames them (``[topic, msgpack list]`` at the DEALER);
`restart` goes away and comes back, as a book server restarting does.
"""

import time

import zmq
from procs import free_port, rebound

from engine.types import Phase
from servers.protocol import (
    CONTROL_TOPIC,
    Codec,
    DepthSnapshot,
    MarketData,
    SnapshotReply,
    SnapshotRequest,
    Subscribe,
    Subscribed,
    SubscriptionReply,
    SubscriptionRequest,
    topic,
)


class PhaseFeed:
    def __init__(self, symbol: str) -> None:
        self.symbol = symbol
        self.sequence = 0
        self.snapshot = DepthSnapshot(symbol, 0, [], [], None)
        self.market_data, self.snapshots = f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"
        self.publisher = _bound(self.market_data)
        self.router = _bound(self.snapshots)
        self._updates = Codec(MarketData)
        self._replies = Codec(SnapshotReply)
        self._requests = Codec(SnapshotRequest)
        self._subscriptions = Codec(SubscriptionRequest)
        self._controls = Codec(SubscriptionReply)
        self.subscriber: bytes | None = None
        """The identity of the connection that subscribed to the symbol."""

    def endpoints(self) -> dict[str, str]:
        """The environment that points a gateway's market data (shard A) here."""
        return {"EXCHANGE__SHARDS__0__MARKET_DATA_ENDPOINT": self.market_data,
                "EXCHANGE__SHARDS__0__SNAPSHOT_ENDPOINT": self.snapshots}

    def set_book(self, bids: list, asks: list, phase: Phase = Phase.CONTINUOUS, indicative: tuple = (0, 0)) -> None:
        """The book as the next snapshot tells it (as of the current sequence)."""
        self.snapshot = DepthSnapshot(self.symbol, self.sequence, bids, asks, None, phase, *indicative)

    def serve(self, timeout: float = 10.0) -> None:
        """Answer the subscription to the symbol, then the next snapshot request (each within
        ``timeout``)."""
        deadline = time.monotonic() + timeout
        while self.subscriber is None:
            left = deadline - time.monotonic()
            if left <= 0 or not self.publisher.poll(int(left * 1000)):
                raise AssertionError(f"no subscription to {self.symbol} within {timeout}s")
            identity, frame = self.publisher.recv_multipart()
            if self._subscriptions.decode(frame) == [Subscribe(self.symbol)]:
                self.subscriber = identity
                answer = self._controls.encode([Subscribed(self.symbol)])
                self.publisher.send_multipart([identity, CONTROL_TOPIC, answer])
        left = deadline - time.monotonic()
        if left <= 0 or not self.router.poll(int(left * 1000)):
            raise AssertionError(f"no snapshot request for {self.symbol} within {timeout}s")
        identity, frame = self.router.recv_multipart()
        (request,) = self._requests.decode(frame)
        assert request.symbol == self.symbol, request
        self.router.send_multipart([identity, self._replies.encode([self.snapshot])])

    def publish(self, make) -> object:
        """Publish ``make(sequence)`` (a `MarketData` message) with the next sequence number; the message."""
        self.sequence += 1
        message = make(self.sequence)
        self.publisher.send_multipart([self.subscriber, topic(message), self._updates.encode([message])])
        return message

    def restart(self) -> None:
        """Go away and come back, as a book server restarting does: both sockets closed (every
        connection to them closes), then bound again at the same endpoints; the subscription is
        forgotten."""
        self.close()
        self.publisher = _bound(self.market_data)
        self.router = _bound(self.snapshots)
        self.subscriber = None

    def close(self) -> None:
        self.publisher.close()
        self.router.close()


def _bound(address: str) -> zmq.Socket:
    """A ROUTER bound at ``address``, which a socket closed a moment ago may still hold (`rebound`)."""
    socket = zmq.Context.instance().socket(zmq.ROUTER)
    socket.setsockopt(zmq.LINGER, 0)
    try:
        rebound(lambda: socket.bind(address))
    except BaseException:
        socket.close()
        raise
    return socket
