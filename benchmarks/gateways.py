"""`python main.py bench gateways`: orders/s and ack latency through each way into the exchange.

Starts a real OBS, TES, FIX gateway (`python main.py -s FIX`) and REST gateway (``-s API``) on free
loopback ports in a temporary directory, then, at each offered rate in turn, drives each *transport* for a fixed
duration from this process with the same schedule (`clients.loadgen`'s: order ``i`` is due at
``start + i / rate``, whatever is due is sent at once, each latency counts from the order's
*scheduled* time, so a saturated path shows up as latency, not as a quietly lower rate):

``zeromq``
    the project's own client (`clients.client.ExchangeClient`, trader ``load``) straight to the
    TES; an order is answered by its `OrderAccepted` (or `OrderRejected`).
``fix``
    a FIX 4.4 session (``DEMO1``, trader ``demo1`` with the load trader's limits) over a plain
    TCP socket to the gateway; an order is answered by its first ExecutionReport, ExecType 0
    (New) or 8 (Rejected). The messages are built from a template and the reports read with
    three regular expressions, so the peer costs little (about 12 µs of CPU per order at
    20,000/s, send and receive; a FIX engine would cost more, and is not what is measured).
``rest``
    signed ``POST /v1/orders`` requests (key ``demo2-rest``, trader ``demo2`` with the load trader's
    limits, the gateway's per-key rate limit raised out of reach) to the REST gateway (``python
    main.py -s API``, started beside the FIX one) over `REST_CONNECTIONS` keep-alive HTTP/1.1
    connections of raw sockets, requests built from a template (an HMAC each) and answers read
    with two regular expressions; an order is answered by its response (``201``, or an error
    status counted as rejected).

Every order is the same: an IOC limit buy of ACME's minimum quantity 1% below the reference
price, on an empty book, so it goes all the way to the OBS and back, is accepted and then
canceled unfilled; nothing ever rests or trades, whatever the rate. Each rate runs
``repeats`` times per transport, the transports interleaved, and the table shows medians (the
machine is noisy). Where ``/proc`` exists, the CPU time of every process (OBS, TES, the FIX or
REST gateway, and this load generator) during each run is reported per order and as the share of
one core, so the process that bounds a rate can be named; and so is the CPU everything else on
the machine took meanwhile, so a run that shared the machine with other work can be told.
"""

import os
import re
import select
import socket
import tempfile
import time
from collections import Counter, deque
from pathlib import Path

import numpy as np
import zmq

from benchmarks import cpu_seconds, median_present
from benchmarks.book import machine
from benchmarks.e2e import SUSTAINED
from clients import runtime
from clients.client import ExchangeClient
from clients.loadgen import due, latencies_us, next_send, send_interval
from config.settings import load_config
from engine import progress
from engine.types import OrderType, Side, TimeInForce
from gateways.api.auth import signature
from gateways.fix import messages as fix_messages
from servers import collector
from servers.processes import Role, endpoint, exchange_env
from servers.protocol import EnterOrder, OrderAccepted, OrderRejected

RATES = (1_000, 20_000, 50_000)
TARGETS = {"fix_p50_added_at_1k": 0.5, "fix_orders_per_s": 20_000}
DRAIN_S = 30.0
"""How long after its schedule a run waits for the answers still outstanding (see `benchmarks.e2e`)."""
SYMBOL = "ACME"
ZEROMQ_TRADER = "load"
FIX_TRADER, FIX_COMP_ID = "demo1", "DEMO1"
"""The FIX session (of the default configuration's ``[[fix.sessions]]``, the third) and its trader,
given the load trader's limits for the benchmark (`environment`)."""
FIX_MAX_OUTPUT_BYTES = 1 << 30
"""The gateway's bound on what waits for a peer that does not read (``fix.max_output_bytes``, 16 MiB by
default), raised: at 20,000 orders/s it writes 9 MB/s of reports, and a load generator starved of CPU
for two seconds on a busy machine would otherwise be dropped as a slow consumer."""
REST_TRADER, REST_KEY = "demo2", "demo2-rest"
"""The REST gateway's key (of the default configuration's ``[[api.keys]]``) and its trader, given the
load trader's limits and a rate limit no benchmark reaches (`environment`)."""
REST_RATE_LIMIT = 10_000_000
BATCH_MAX = 1000
PERCENTILES = (50, 90, 99)


def environment(tmp: Path) -> dict[str, str]:
    """The isolated exchange's environment, with ``demo1`` (FIX) and ``demo2`` (REST) given the ``load``
    trader's limits, and the REST gateway's per-key rate limit raised, so that no transport is
    throttled by the risk checks or the gateway."""
    env = exchange_env(tmp, EXCHANGE__FIX__ENABLED="true", EXCHANGE__FIX__MAX_OUTPUT_BYTES=str(FIX_MAX_OUTPUT_BYTES),
                       EXCHANGE__API__RATE_LIMIT_PER_S=str(REST_RATE_LIMIT),
                       EXCHANGE__API__RATE_LIMIT_BURST=str(REST_RATE_LIMIT))
    traders = load_config(environ=env).traders
    load = next(trader for trader in traders if trader.trader_id == ZEROMQ_TRADER)
    for trader_id in (FIX_TRADER, REST_TRADER):
        index = next(i for i, trader in enumerate(traders) if trader.trader_id == trader_id)
        env.update({
            f"EXCHANGE__TRADERS__{index}__MAX_MESSAGES_PER_SECOND": str(load.max_messages_per_second),
            f"EXCHANGE__TRADERS__{index}__MAX_OPEN_ORDERS": str(load.max_open_orders),
        })
    return env


class Transport:
    """One way of entering orders. A run: `begin` (connect, log on), then `send` and `read_ready`
    from the shared schedule loop (`run_schedule`), then `end` (log out, disconnect)."""

    name = ""
    server = None
    """The name of the server process this transport goes through besides the OBS and TES, if any."""

    def begin(self, total: int) -> None:
        raise NotImplementedError

    def send(self, batch: range) -> None:
        """Send (or queue, if the peer is not reading) orders ``batch``."""
        raise NotImplementedError

    def read_ready(self) -> list[tuple[int, bool]]:
        """Every first answer already arrived, without waiting: (order index, rejected)."""
        raise NotImplementedError

    def wait(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds for something to read (or room to write queued output)."""
        raise NotImplementedError

    def keep_alive(self) -> None:
        """Called once per wake-up."""

    def end(self) -> None:
        raise NotImplementedError


class ZeroMQTransport(Transport):
    """The project's own client (`ExchangeClient`) to the TES, as `clients.loadgen` drives it."""

    name = "zeromq"

    def __init__(self, env: dict[str, str], price: int, quantity: int) -> None:
        self.env, self.price, self.quantity = env, price, quantity

    def begin(self, total: int) -> None:
        client = ExchangeClient(endpoint(self.env, "TES__CLIENT_ENDPOINT"), ZEROMQ_TRADER,
                                f"{ZEROMQ_TRADER}-demo-key")
        client.logon()
        runtime.wait_until_tradable(client, SYMBOL)
        self.client, self.total = client, total
        self.first = client.reserve_client_order_ids(total)
        self.fields = (SYMBOL, Side.BUY, OrderType.LIMIT, TimeInForce.IOC, self.price, self.quantity)
        self._fd = client.socket.getsockopt(zmq.FD)

    def send(self, batch: range) -> None:
        first, fields = self.first, self.fields
        for start in range(batch.start, batch.stop, BATCH_MAX):
            self.client.send_batch([EnterOrder(first + i, *fields)
                                    for i in range(start, min(batch.stop, start + BATCH_MAX))])

    def read_ready(self) -> list[tuple[int, bool]]:
        answers = []
        first = self.first
        for message in self.client.receive_ready():
            kind = type(message)
            if kind is OrderAccepted or kind is OrderRejected:
                answers.append((message.client_order_id - first, kind is OrderRejected))
        return answers

    def wait(self, timeout: float) -> None:
        # the ZeroMQ descriptor is edge-triggered: look at ZMQ_EVENTS first (see loadgen.Schedule)
        if not self.client.socket.get(zmq.EVENTS) & zmq.POLLIN:
            select.select([self._fd], [], [], timeout)

    def keep_alive(self) -> None:
        self.client.keep_alive()

    def end(self) -> None:
        self.client.close()


FRAME_END = re.compile(rb"\x0110=\d{3}\x01")
MSG_TYPE = re.compile(rb"\x0135=([^\x01]*)\x01")
CLORDID = re.compile(rb"\x0111=([^\x01]*)\x01")
EXEC_TYPE = re.compile(rb"\x01150=([^\x01]*)\x01")


def fix_frame(body: bytes) -> bytes:
    """A whole FIX 4.4 message around ``body`` (from 35= on): BeginString, BodyLength, CheckSum."""
    message = b"8=FIX.4.4\x019=%d\x01%s" % (len(body), body)
    return message + b"10=%03d\x01" % (sum(message) & 255)


class FixTransport(Transport):
    """A FIX 4.4 session over a non-blocking TCP socket: NewOrderSingle from a template, the first
    ExecutionReport of each order (ExecType 0 or 8) is its answer."""

    name = "fix"
    server = "fix"

    def __init__(self, env: dict[str, str], price_text: str, quantity: int) -> None:
        self.port = int(env["EXCHANGE__FIX__PORT"])
        self.price_text, self.quantity = price_text.encode(), quantity
        self.base = 0

    def begin(self, total: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.seq = 1
        self.inbox = bytearray()
        self.out = bytearray()
        self.answered: set[int] = set()
        self.unexpected = 0
        # ClOrdIDs unique across the runs of one benchmark (the gateway remembers them)
        self.base += 10**9
        self.total = total
        self._write(b"35=A\x01%s98=0\x01108=300\x01141=Y\x01553=%s\x01554=%s-demo-key\x01"
                    % (self._header(), FIX_TRADER.encode(), FIX_TRADER.encode()))
        self._flush_blocking()
        deadline = time.monotonic() + 15
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise RuntimeError("no FIX Logon answer within 15 s")
            self.sock.settimeout(left)
            data = self.sock.recv(65536)
            if not data:
                raise RuntimeError(f"the FIX gateway closed the connection at logon: {bytes(self.inbox)!r}")
            self.inbox += data
            kinds = [kind for kind, _, _ in self._frames()]
            if b"5" in kinds:
                raise RuntimeError("the FIX gateway refused the logon")
            if b"A" in kinds:
                break
        self.sock.setblocking(False)
        self.order_fields = (b"\x0155=" + SYMBOL.encode() + b"\x0154=1\x0138=%d\x0140=2\x0144=%s\x0159=3\x01"
                             % (self.quantity, self.price_text))

    def _header(self) -> bytes:
        header = b"49=%s\x0156=EXCHANGE\x0134=%d\x0152=%s\x01" % (
            FIX_COMP_ID.encode(), self.seq, fix_messages.timestamp().encode())
        self.seq += 1
        return header

    def _write(self, body: bytes) -> None:
        self.out += fix_frame(body)

    def _flush_blocking(self) -> None:
        self.sock.sendall(self.out)
        self.out.clear()

    def _flush(self) -> None:
        if self.out:
            try:
                sent = self.sock.send(self.out)
            except BlockingIOError:
                return
            del self.out[:sent]

    def send(self, batch: range) -> None:
        now = fix_messages.timestamp().encode()
        base, fields, sender = self.base, self.order_fields, FIX_COMP_ID.encode()
        seq = self.seq
        out = self.out
        for i in batch:
            body = b"35=D\x0149=%s\x0156=EXCHANGE\x0134=%d\x0152=%s\x0111=%d\x0160=%s%s" % (
                sender, seq, now, base + i, now, fields)
            seq += 1
            message = b"8=FIX.4.4\x019=%d\x01%s" % (len(body), body)
            out += message
            out += b"10=%03d\x01" % (sum(message) & 255)
        self.seq = seq
        self._flush()

    def _frames(self):
        """(MsgType, ClOrdID or None, ExecType or None) of every whole message in the inbox, taken out of it."""
        inbox, start = self.inbox, 0
        frames = []
        for end in FRAME_END.finditer(inbox):
            frame = bytes(inbox[start:end.end()])
            start = end.end()
            kind = MSG_TYPE.search(frame)
            clordid = CLORDID.search(frame)
            exec_type = EXEC_TYPE.search(frame)
            frames.append((kind.group(1) if kind else None, clordid.group(1) if clordid else None,
                           exec_type.group(1) if exec_type else None))
        del inbox[:start]
        return frames

    def read_ready(self) -> list[tuple[int, bool]]:
        self._flush()
        while True:
            try:
                data = self.sock.recv(1 << 20)
            except BlockingIOError:
                break
            if not data:
                raise RuntimeError("the FIX gateway closed the connection")
            self.inbox += data
            if len(data) < 1 << 20:
                break
        answers = []
        base, total, answered = self.base, self.total, self.answered
        for kind, clordid, exec_type in self._frames():
            if kind == b"8" and clordid is not None:
                index = int(clordid) - base
                if exec_type in (b"0", b"8") and 0 <= index < total and index not in answered:
                    answered.add(index)
                    answers.append((index, exec_type == b"8"))
            elif kind in (b"1", b"3", b"j", b"5"):
                # a TestRequest cannot come (HeartBtInt 300 s, longer than any run); a Reject, a
                # BusinessMessageReject or a Logout would mean the orders were not as meant
                self.unexpected += 1
        return answers

    def wait(self, timeout: float) -> None:
        select.select([self.sock], [self.sock] if self.out else [], [], timeout)

    def end(self) -> None:
        try:
            self.sock.setblocking(True)
            self._write(b"35=5\x01%s" % self._header())
            self._flush_blocking()
            self.sock.settimeout(5)
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                data = self.sock.recv(65536)
                if not data:
                    break
                self.inbox += data
                if any(kind == b"5" for kind, _, _ in self._frames()):
                    break
        except OSError:
            pass
        finally:
            self.sock.close()


REST_CONNECTIONS = 64
"""Keep-alive HTTP/1.1 connections of the REST transport. REST is request/response: the gateway
serves one request of a connection at a time, so the orders in flight at once are at most the
connections; 64 covers rate x latency up to 20,000/s x 3 ms. Orders beyond that are pipelined
behind the earlier ones on their connection (round robin), and that wait counts in their latency."""
STATUS_LINE = re.compile(rb"HTTP/1\.[01] (\d{3}) ")
CONTENT_LENGTH = re.compile(rb"\r\n[Cc]ontent-[Ll]ength: *(\d+)\r\n")


class RestTransport(Transport):
    """Signed ``POST /v1/orders`` requests (`gateways.api.auth.signature`) over `REST_CONNECTIONS`
    keep-alive HTTP/1.1 connections of raw non-blocking sockets: requests built from a template,
    answers read in order per connection (HTTP/1.1 answers pipelined requests in order); an order is
    answered by its response, ``201`` accepted, any other status rejected (counted in ``statuses``)."""

    name = "rest"
    server = "api"

    def __init__(self, env: dict[str, str], price: int, quantity: int, connections: int = REST_CONNECTIONS) -> None:
        self.port = int(env["EXCHANGE__API__PORT"])
        self.secrets_dir = Path(env["EXCHANGE__API__SECRETS_DIR"])
        self.price, self.quantity, self.connections = price, quantity, connections
        self.base = 0

    def begin(self, total: int) -> None:
        self.secret = (self.secrets_dir / f"{REST_KEY}.secret").read_text().strip()
        self.head = (b"POST /v1/orders HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Type: application/json\r\n"
                     b"X-API-KEY: %s\r\n" % (self.port, REST_KEY.encode()))
        self.body = (b'{"symbol":"%s","side":"buy","type":"limit","time_in_force":"ioc","price":%d,"quantity":%d,'
                     % (SYMBOL.encode(), self.price, self.quantity)) + b'"tag":"%d"}'
        self.socks = [socket.create_connection(("127.0.0.1", self.port), timeout=10) for _ in range(self.connections)]
        # the first request opens the trader's TES session in the gateway: before the clock starts
        status = self._signed_blocking(self.socks[0], "GET", "/v1/positions")
        if status != 200:
            raise RuntimeError(f"the REST gateway answered {status} to a signed GET /v1/positions")
        self.poller = select.poll()
        self.by_fd = {}
        for sock in self.socks:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.setblocking(False)
            self.poller.register(sock, select.POLLIN)
            self.by_fd[sock.fileno()] = sock
        self.waiting = {sock: deque() for sock in self.socks}
        """Per connection, the indexes of the orders sent on it and not answered yet, oldest first."""
        self.inbox = {sock: bytearray() for sock in self.socks}
        self.out = {sock: bytearray() for sock in self.socks}
        self.writing: set = set()
        self.statuses: dict[int, int] = {}
        self.events: list = []
        self.next_socket = 0
        # tags unique across the runs of one benchmark: two identical signed requests would be replays
        self.base += 10**9
        self.total = total

    def _signed_blocking(self, sock: socket.socket, method: str, path: str) -> int:
        stamp = str(time.time_ns() // 1_000_000)
        sock.sendall(b"%s %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nX-API-KEY: %s\r\nX-API-TIMESTAMP: %s\r\n"
                     b"X-API-SIGNATURE: %s\r\nContent-Length: 0\r\n\r\n" % (
                         method.encode(), path.encode(), self.port, REST_KEY.encode(), stamp.encode(),
                         signature(self.secret, stamp, method, path, b"").encode()))
        answer = bytearray()
        while (end := answer.find(b"\r\n\r\n")) < 0 or len(answer) < end + 4 + int(
                CONTENT_LENGTH.search(bytes(answer[:end + 2])).group(1)):
            data = sock.recv(65536)
            if not data:
                raise RuntimeError("the REST gateway closed the connection")
            answer += data
        return int(STATUS_LINE.match(answer).group(1))

    def send(self, batch: range) -> None:
        stamp = str(time.time_ns() // 1_000_000)
        stamp_bytes = stamp.encode()
        head, template, secret, base = self.head, self.body, self.secret, self.base
        socks, count, waiting, out = self.socks, self.connections, self.waiting, self.out
        turn = self.next_socket
        touched = set()
        for i in batch:
            body = template % (base + i)
            sock = socks[turn]
            turn = turn + 1 if turn + 1 < count else 0
            out[sock] += b"%sX-API-TIMESTAMP: %s\r\nX-API-SIGNATURE: %s\r\nContent-Length: %d\r\n\r\n%s" % (
                head, stamp_bytes, signature(secret, stamp, "POST", "/v1/orders", body).encode(), len(body), body)
            waiting[sock].append(i)
            touched.add(sock)
        self.next_socket = turn
        for sock in touched:
            self._flush(sock)

    def _flush(self, sock: socket.socket) -> None:
        out = self.out[sock]
        if out:
            try:
                sent = sock.send(out)
            except BlockingIOError:
                sent = 0
            del out[:sent]
        if out and sock not in self.writing:
            self.writing.add(sock)
            self.poller.modify(sock, select.POLLIN | select.POLLOUT)
        elif not out and sock in self.writing:
            self.writing.discard(sock)
            self.poller.modify(sock, select.POLLIN)

    def read_ready(self) -> list[tuple[int, bool]]:
        events, self.events = self.events or self.poller.poll(0), []
        answers = []
        for fd, event in events:
            sock = self.by_fd[fd]
            if event & select.POLLOUT:
                self._flush(sock)
            if not event & (select.POLLIN | select.POLLHUP | select.POLLERR):
                continue
            inbox = self.inbox[sock]
            data = sock.recv(1 << 20)
            if not data:
                raise RuntimeError("the REST gateway closed a connection")
            inbox += data
            start, waiting, statuses = 0, self.waiting[sock], self.statuses
            while (end := inbox.find(b"\r\n\r\n", start)) >= 0:
                length = CONTENT_LENGTH.search(inbox, start, end + 2)
                stop = end + 4 + (int(length.group(1)) if length else 0)
                if stop > len(inbox):
                    break
                status = int(inbox[start + 9:start + 12])
                statuses[status] = statuses.get(status, 0) + 1
                answers.append((waiting.popleft(), status != 201))
                start = stop
            del inbox[:start]
        return answers

    def wait(self, timeout: float) -> None:
        self.events = self.poller.poll(timeout * 1000)

    def end(self) -> None:
        for sock in self.socks:
            sock.close()


def run_schedule(transport: Transport, rate: float, duration: float, drain_s: float = DRAIN_S) -> dict:
    """One run: the load generator's schedule (`clients.loadgen.Schedule`) over ``transport``."""
    total = max(1, round(rate * duration))
    answered_at = np.full(total, np.nan)
    state = {"outstanding": 0, "rejected": 0}

    def record() -> None:
        answers = transport.read_ready()
        if answers:
            now = time.perf_counter()
            for index, rejected in answers:
                if answered_at[index] != answered_at[index]:  # NaN: the first answer
                    answered_at[index] = now
                    state["outstanding"] -= 1
                    state["rejected"] += rejected

    interval = send_interval(rate)
    sent = 0
    start = send_at = time.perf_counter()
    while sent < total:
        sent_at = time.perf_counter()
        if sent_at >= send_at:
            count = due(sent_at - start, rate, total)
            if count > sent:
                transport.send(range(sent, count))
                state["outstanding"] += count - sent
                sent = count
            send_at = next_send(start, sent, rate, sent_at, interval)
        record()
        wait = send_at - time.perf_counter()
        if wait > 0:
            transport.wait(wait)
            record()
        transport.keep_alive()
    end = time.perf_counter()
    deadline = end + drain_s
    while state["outstanding"] > 0 and (left := deadline - time.perf_counter()) > 0:
        transport.wait(min(0.1, left))
        record()
        transport.keep_alive()
    return summarize(answered_at, state["rejected"], sent, start, rate, end)


def summarize(answered_at: np.ndarray, rejected: int, sent: int, start: float, rate: float, end: float) -> dict:
    latency = latencies_us(answered_at[:sent], start, rate)
    answered = len(latency)
    last_answer = float(np.nanmax(answered_at[:sent])) if answered else start
    duration = max(end, last_answer) - start
    result = {"sent": sent, "answered": answered, "rejected": rejected, "lost": sent - answered,
              "duration_s": round(duration, 3),
              "orders_per_s": round(answered / duration, 1) if duration > 0 else 0.0}
    values = np.percentile(latency, PERCENTILES) if answered else [None] * len(PERCENTILES)
    for percentile, value in zip(PERCENTILES, values, strict=True):
        result[f"ack_p{percentile}_us"] = None if value is None else round(float(value), 1)
    return result


def machine_busy_seconds() -> float | None:
    """CPU seconds every process on the machine has spent, all cores (None without Linux's /proc)."""
    try:
        with open("/proc/stat") as file:
            fields = file.readline().split()
    except OSError:
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(value) for value in fields[1:9])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def measured_run(transport: Transport, rate: int, duration: float, servers: dict[str, Role]) -> dict:
    """One run, plus each process's CPU time during it: per order sent, and as the share of one core
    over the run (``load`` is this process, the load generator); and ``other_cores``, the CPU that
    everything else on the machine took meanwhile (other work on a shared machine skews a run)."""
    names = ["obs", "tes"] + ([transport.server] if transport.server else [])
    transport.begin(max(1, round(rate * duration)))
    try:
        wall = time.perf_counter()
        before = {name: cpu_seconds(servers[name].process.pid) for name in names}
        before["load"] = time.process_time()
        busy = machine_busy_seconds()
        result = run_schedule(transport, rate, duration)
        after = {name: cpu_seconds(servers[name].process.pid) for name in names}
        after["load"] = time.process_time()
        busy = None if busy is None else machine_busy_seconds() - busy
        wall = time.perf_counter() - wall
    finally:
        transport.end()
    if isinstance(transport, FixTransport):
        result["unexpected_messages"] = transport.unexpected
    if isinstance(transport, RestTransport):
        result["http_statuses"] = {str(status): count for status, count in sorted(transport.statuses.items())}
    spent = {name: None if before[name] is None or after[name] is None else after[name] - before[name]
             for name in before}
    result["cpu_us_per_order"] = {name: None if value is None else round(value / result["sent"] * 1e6, 1)
                                  for name, value in spent.items()}
    result["cpu_cores"] = {name: None if value is None else round(value / wall, 2) for name, value in spent.items()}
    ours = [value for value in spent.values() if value is not None]
    other = None if busy is None or len(ours) < len(spent) else max(0.0, busy - sum(ours))
    result["other_cores"] = None if other is None else round(other / wall, 2)
    return result


MEDIAN_KEYS = ("orders_per_s", *(f"ack_p{p}_us" for p in PERCENTILES))


def median_run(runs: list[dict]) -> dict:
    """The median of each rate and latency figure over the runs, the worst ``lost``, and the median of
    each process's CPU figures."""
    row = {"sent": runs[0]["sent"]}
    for key in MEDIAN_KEYS:
        row[key] = median_present([run[key] for run in runs])
    row["lost"] = max(run["lost"] for run in runs)
    row["rejected"] = max(run["rejected"] for run in runs)
    row["other_cores"] = median_present([run["other_cores"] for run in runs])
    for key in ("cpu_us_per_order", "cpu_cores"):
        row[key] = {name: median_present([run[key][name] for run in runs]) for name in runs[0][key]}
    return row


def ratios(rows: dict[str, dict], numerator: str, denominator: str = "zeromq") -> dict:
    """``numerator`` / ``denominator`` of each latency percentile and of the answered rate, per rate."""
    out = {}
    for rate, by_transport in rows.items():
        top, bottom = by_transport.get(numerator), by_transport.get(denominator)
        if top is None or bottom is None:
            continue
        out[rate] = {key: None if not top[key] or not bottom[key] else round(top[key] / bottom[key], 2)
                     for key in MEDIAN_KEYS}
    return out


def busiest(row: dict) -> str:
    """The process with the most CPU over the run, and its share of a core."""
    cores = {name: value for name, value in row["cpu_cores"].items() if value is not None}
    if not cores:
        return "n/a"
    name = max(cores, key=cores.get)
    return f"{name} {cores[name]:.2f}"


def verdicts(rows: dict[int, dict[str, dict]], fix_ratios: dict) -> dict[str, str]:
    slow = fix_ratios.get(1_000)
    added = "not measured"
    if slow is not None and slow["ack_p50_us"] is not None:
        more = slow["ack_p50_us"] - 1
        fix, zeromq = rows[1_000]["fix"]["ack_p50_us"], rows[1_000]["zeromq"]["ack_p50_us"]
        added = (f"{'met' if more < TARGETS['fix_p50_added_at_1k'] else 'not met'} "
                 f"(p50 {_us(fix)} through FIX, {_us(zeromq)} through the ZeroMQ client: {more:+.0%})")
    fast = rows.get(TARGETS["fix_orders_per_s"], {}).get("fix")
    sustained = "not measured"
    if fast is not None:
        kept = fast["orders_per_s"] >= SUSTAINED * TARGETS["fix_orders_per_s"] and fast["lost"] == 0
        sustained = (f"{'met' if kept else 'not met'} ({fast['orders_per_s']:,.0f} answered/s, {fast['lost']:,} lost; "
                     f"busiest process {busiest(fast)} cores)")
    return {"FIX adds under 50% to the ZeroMQ client's p50 at 1,000/s": added,
            "FIX sustains 20,000 orders/s": sustained}


def run(rates=RATES, duration: float = 5.0, repeats: int = 3) -> dict:
    """Measure each transport at each offered rate ``repeats`` times against one running exchange and
    FIX gateway; print the table of medians; return the figures (every run included)."""
    config = load_config()
    instrument = next(i for i in config.instruments if i.symbol == SYMBOL)
    price = instrument.reference_price * 99 // 100
    price -= price % instrument.tick_size
    price_text = f"{price / instrument.price_scale:.{len(str(instrument.price_scale)) - 1}f}"
    quantity = instrument.min_quantity
    results: dict[int, dict[str, dict]] = {}
    runs: dict[int, dict[str, list]] = {}
    with (tempfile.TemporaryDirectory(prefix="exchange-gateways-") as tmp,
          progress.task("bench gateways", len(rates) * repeats * 3, "runs") as shown):
        env = environment(Path(tmp))
        with Role(["-s", "OBS"], env) as obs, Role(["-s", "TES"], env) as tes:
            tes.wait_for("shard A ready", 20)
            with Role(["-s", "FIX"], env) as fix, Role(["-s", "API"], env) as api:
                servers = {"obs": obs, "tes": tes, "fix": fix, "api": api}
                transports = [ZeroMQTransport(env, price, quantity), FixTransport(env, price_text, quantity),
                              RestTransport(env, price, quantity)]
                collector.settle()
                for rate in rates:
                    runs[rate] = {transport.name: [] for transport in transports}
                    for number in range(1, repeats + 1):
                        for transport in transports:
                            shown.note(f"{transport.name}, {rate:,} orders/s, run {number} of {repeats}")
                            runs[rate][transport.name].append(measured_run(transport, rate, duration, servers))
                            shown.advance()
                    results[rate] = {name: median_run(done) for name, done in runs[rate].items()}
                codes = {"api": api.stop(), "fix": fix.stop()}
            codes |= {"tes": tes.stop(), "obs": obs.stop()}
    fix_ratios, rest_ratios = ratios(results, "fix"), ratios(results, "rest")
    report = {
        "machine": machine(), "duration_s": duration, "repeats": repeats, "transports": ["zeromq", "fix", "rest"],
        "rest_connections": REST_CONNECTIONS,
        "order": f"IOC limit buy {quantity} {SYMBOL} at {price_text} on an empty book",
        "rates": [{"offered_per_s": rate, **results[rate], "fix_over_zeromq": fix_ratios.get(rate),
                   "rest_over_zeromq": rest_ratios.get(rate), "runs": runs[rate]} for rate in rates],
        "targets": verdicts(results, fix_ratios), "exit_codes": codes,
    }
    print(format_report(report))
    return report


def format_report(report: dict) -> str:
    m = report["machine"]
    lines = [
        f"machine: {m['cpu']}, {m['cores']} cores, Python {m['python']}; median of {report['repeats']} runs of "
        f"{report['duration_s']:g} s per transport and rate (lost: the worst run, answers awaited up to "
        f"{DRAIN_S:g} s after the schedule); every order: {report['order']}",
        "zeromq: the project's client straight to the TES (answer: OrderAccepted); fix: a FIX 4.4 session "
        "through the gateway (answer: the first ExecutionReport, ExecType 0 or 8); rest: signed POST /v1/orders "
        f"through the REST gateway on {report['rest_connections']} keep-alive connections (answer: the response)",
        "",
        "| transport | offered orders/s | answered orders/s | lost | ack p50 | ack p90 | ack p99 "
        "| CPU per order: OBS / TES / gateway (FIX or API) / load generator | busiest process (cores) "
        "| everything else (cores) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    for row in report["rates"]:
        for name in report["transports"]:
            r = row[name]
            cpu = r["cpu_us_per_order"]
            lines.append(
                f"| {name} | {row['offered_per_s']:,} | {r['orders_per_s']:,.0f} | {r['lost']:,} | "
                f"{_us(r['ack_p50_us'])} | {_us(r['ack_p90_us'])} | {_us(r['ack_p99_us'])} | "
                f"{_us(cpu.get('obs'))} / {_us(cpu.get('tes'))} / {_us(cpu.get('fix', cpu.get('api')))} / "
                f"{_us(cpu.get('load'))} | "
                f"{busiest(r)} | {_cores(r['other_cores'])} |"
            )
    for label, key in (("FIX", "fix_over_zeromq"), ("REST", "rest_over_zeromq")):
        lines += ["", f"| offered orders/s | {label} / ZeroMQ: answered orders/s | p50 | p90 | p99 |",
                  "|---:|---:|---:|---:|---:|"]
        for row in report["rates"]:
            ratio = row[key] or {}
            lines.append(f"| {row['offered_per_s']:,} | " + " | ".join(_x(ratio.get(k)) for k in MEDIAN_KEYS) + " |")
    lines += ["", "rest, HTTP statuses of every run (401 at saturation: the signed timestamp was older than the "
              "gateway's receive window, 5 s, when the request's turn came): " + "; ".join(
                  f"{row['offered_per_s']:,}/s: " + ", ".join(f"{status} x {count:,}" for status, count in sorted(
                      sum((Counter(run["http_statuses"]) for run in row["runs"]["rest"]), Counter()).items()))
                  for row in report["rates"])]
    lines.append("")
    lines.extend(f"target {name}: {verdict}" for name, verdict in report["targets"].items())
    return "\n".join(lines)


def _cores(value) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def _x(value) -> str:
    return "n/a" if value is None else f"{value:.2f}x"


def _us(value) -> str:
    if value is None:
        return "n/a"
    return f"{value / 1000:,.1f} ms" if value >= 1000 else f"{value:,.0f} µs"
