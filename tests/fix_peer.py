"""A FIX 4.4 initiator over a plain socket, for the tests of the FIX gateway.

It encodes with simplefix (an implementation independent of the gateway's) and reads the
gateway's messages with the gateway's strict framer, so every frame the gateway sends is checked
(BodyLength, CheckSum) as it is read. It does nothing by itself: no heartbeats, no recovery;
the test says what to send, with which MsgSeqNum.
"""

import socket
import time

import simplefix

from gateways.fix import messages as m


def fix_time(offset_s: float = 0.0) -> str:
    return m.timestamp(time.time() + offset_s)


class FixPeer:
    def __init__(self, port: int, sender: str = "ALICE", target: str = "EXCHANGE", seq: int = 1,
                 host: str = "127.0.0.1") -> None:
        self.sock = socket.create_connection((host, port), timeout=5)
        self.sender = sender
        self.target = target
        self.seq = seq
        self.framer = m.Framer(1 << 24)
        self.received: list[m.Message] = []
        """Every message received."""
        self.unread: list[m.Message] = []
        """Messages received that no `wait_for` has taken."""

    # ------------------------------------------------------------ sending

    def build(self, msg_type: str, fields: list[tuple[int, object]] = (), seq: int | None = None,
              poss_dup: bool = False, sending_time: str | None = None) -> bytes:
        message = simplefix.FixMessage()
        message.append_pair(8, "FIX.4.4", header=True)
        message.append_pair(35, msg_type, header=True)
        message.append_pair(49, self.sender, header=True)
        message.append_pair(56, self.target, header=True)
        if seq is None:
            seq = self.seq
            self.seq += 1
        message.append_pair(34, seq, header=True)
        message.append_pair(52, sending_time or fix_time(), header=True)
        if poss_dup:
            message.append_pair(43, "Y", header=True)
            message.append_pair(122, fix_time(-1), header=True)
        for tag, value in fields:
            message.append_pair(tag, value)
        return message.encode()

    def send(self, msg_type: str, fields: list[tuple[int, object]] = (), **options) -> bytes:
        frame = self.build(msg_type, fields, **options)
        self.sock.sendall(frame)
        return frame

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def logon(self, password: str, username: str = "alice", heartbeat: int = 30, reset: bool = False,
              extra: list | None = None) -> m.Message:
        fields = [(98, 0), (108, heartbeat)]
        if reset:
            fields.append((141, "Y"))
        fields += [(553, username), (554, password)] + (extra or [])
        self.send(m.LOGON, fields)
        return self.wait_for(lambda message: message.msg_type in (m.LOGON, m.LOGOUT), 15)

    def order(self, clordid: str, symbol: str, side: str, quantity, price=None, ord_type: str = "2",
              tif: str | None = "1", extra: list | None = None) -> None:
        fields = [(11, clordid), (55, symbol), (54, side), (60, fix_time()), (38, quantity), (40, ord_type)]
        if price is not None:
            fields.append((44, price))
        if tif is not None:
            fields.append((59, tif))
        self.send(m.NEW_ORDER_SINGLE, fields + (extra or []))

    # ------------------------------------------------------------ receiving

    def receive(self, timeout: float = 5.0) -> m.Message | None:
        """The next message (kept in ``received`` too), or None if none comes within ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            frame = self.framer.next()
            if frame is not None:
                message = m.decode(frame)
                self.received.append(message)
                return message
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                return None
            except ConnectionError:
                return None
            if not data:
                return None
            self.framer.feed(data)

    def wait_for(self, matches, timeout: float = 5.0) -> m.Message:
        """The first message that ``matches`` (a predicate, or a MsgType), among those not taken yet
        (kept in order in ``unread``) or arriving; fail if none comes."""
        if isinstance(matches, str):
            kind = matches
            matches = lambda message: message.msg_type == kind  # noqa: E731
        for index, message in enumerate(self.unread):
            if matches(message):
                del self.unread[index]
                return message
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            message = self.receive(left)
            if message is None:
                break
            if matches(message):
                return message
            self.unread.append(message)
        raise AssertionError(f"no matching message within {timeout}s; unread {self.unread}")

    def closed(self, timeout: float = 5.0) -> bool:
        """Whether the gateway closes the connection within ``timeout`` (reading what it sends meanwhile)."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                return False
            except ConnectionError:
                return True
            if not data:
                return True
            self.framer.feed(data)
            while (frame := self.framer.next()) is not None:
                self.received.append(m.decode(frame))
        return False

    def close(self) -> None:
        self.sock.close()
