"""The FIX gateway against an independent FIX engine: QuickFIX (Debian's libquickfix-dev), through a
small initiator written against it (tests/quickfix/initiator.cpp, built here with g++ and cached by
its source's hash in ~/.cache/exchange-quickfix/). It logs on, asks for the security list and
subscribes to market data (with the book's SecurityStatus), sends orders of each kind (a stop limit
and an iceberg among them), replaces, asks an order's status, cancels and mass-cancels; the gateway
is killed mid-session and started again: QuickFIX's numbers and the gateway's resume, the order
QuickFIX sent while the gateway was down arrives through QuickFIX's own gap recovery, and a gap
QuickFIX finds in the gateway's numbers is filled by the gateway's resend.
Skipped, saying why, only where QuickFIX or a C++ compiler is not installed (``make test`` installs
QuickFIX where apt-get and root are available).

QuickFIX reads with a data dictionary (tests/quickfix/FIX44-gateway.xml: the part of FIX 4.4 the
gateway speaks, written for this project, since Debian ships none), so it parses the repeating groups
of market data and the security list itself, and checks every message the gateway sends (required
fields, types, values, no field the message does not define): a message it finds wrong it answers with
a Reject, and the test fails on any.
"""

import hashlib
import os
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from clients.client import ExchangeClient
from engine.types import OrderType, Side, TimeInForce
from servers.processes import Role, endpoint
from servers.protocol import OrderAccepted

SOURCE = Path(__file__).resolve().parent / "quickfix" / "initiator.cpp"
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "exchange-quickfix"
HEADER = Path("/usr/include/quickfix/Session.h")
DICTIONARY = SOURCE.parent / "FIX44-gateway.xml"


@pytest.fixture(scope="session")
def initiator_binary(tmp_path_factory) -> Path:
    """The initiator, built once per source version."""
    compiler = shutil.which("g++")
    if compiler is None:
        pytest.skip("no C++ compiler (g++) to build the QuickFIX initiator")
    if not HEADER.exists():
        pytest.skip("QuickFIX is not installed (Debian's libquickfix-dev; make test installs it where apt-get "
                    "and root are available)")
    digest = hashlib.sha256(SOURCE.read_bytes() + HEADER.read_bytes()).hexdigest()[:16]
    binary = CACHE / f"initiator-{digest}"
    if binary.exists():
        return binary
    build = tmp_path_factory.mktemp("quickfix") / "initiator"
    done = subprocess.run([compiler, "-std=gnu++14", "-O1", "-w", str(SOURCE), "-o", str(build), "-lquickfix",
                           "-lpthread"], capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        pytest.fail(f"the QuickFIX initiator did not build: {done.stderr[-3000:]}")
    CACHE.mkdir(parents=True, exist_ok=True)
    shutil.move(str(build), binary)
    return binary


def entries(line: str, first: int) -> list[dict[int, str]]:
    """The repeating-group entries of a printed message that begin with tag ``first`` (each up to the next)."""
    found: list[dict[int, str]] = []
    for part in line.split(" ", 1)[1].split("|"):
        tag, _, value = part.partition("=")
        if tag == str(first):
            found.append({})
        if found and tag.isdigit():
            found[-1][int(tag)] = value
    return found


def fields_of(line: str) -> dict[int, str]:
    """``IN-APP 8=FIX.4.4|9=..|35=8|...`` as {tag: value} (the first value of each tag)."""
    found: dict[int, str] = {}
    for part in line.split(" ", 1)[1].split("|"):
        tag, _, value = part.partition("=")
        if tag.isdigit():
            found.setdefault(int(tag), value)
    return found


class Initiator:
    """The QuickFIX initiator process: commands on its stdin, its lines collected."""

    def __init__(self, binary: Path, directory: Path, port: int, sender: str, username: str, password: str) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        settings = directory / "initiator.cfg"
        settings.write_text(
            "[DEFAULT]\nConnectionType=initiator\nReconnectInterval=1\nStartTime=00:00:00\nEndTime=00:00:00\n"
            f"FileStorePath={directory / 'store'}\nUseDataDictionary=Y\nDataDictionary={DICTIONARY}\nHeartBtInt=5\n"
            f"SocketConnectHost=127.0.0.1\nSocketConnectPort={port}\n\n"
            f"[SESSION]\nBeginString=FIX.4.4\nSenderCompID={sender}\nTargetCompID=EXCHANGE\n")
        self.process = subprocess.Popen([str(binary), str(settings), username, password], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines: list[str] = []
        self.cursor = 0
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    def command(self, text: str) -> None:
        self.process.stdin.write(text + "\n")
        self.process.stdin.flush()

    def wait_for(self, matches, timeout: float = 10.0) -> str:
        """The first line after the last one matched that ``matches`` (a predicate on the line)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for index in range(self.cursor, len(self.lines)):
                if matches(self.lines[index]):
                    self.cursor = index + 1
                    return self.lines[index]
            time.sleep(0.02)
        raise AssertionError(f"no matching line within {timeout}s; the initiator printed:\n"
                             + "\n".join(self.lines[-60:]))

    def app(self, msg_type: str, timeout: float = 10.0, **tags: str) -> dict[int, str]:
        """The next application message of ``msg_type`` received with ``tNNN=value`` tags."""
        def matches(line: str) -> bool:
            if not line.startswith("IN-APP "):
                return False
            fields = fields_of(line)
            return fields.get(35) == msg_type and all(fields.get(int(k[1:])) == v for k, v in tags.items())
        return fields_of(self.wait_for(matches, timeout))

    def received(self, msg_type: str, matches=lambda line: True, timeout: float = 10.0) -> str:
        """The first application message of ``msg_type`` received so far, or within ``timeout``, for
        which ``matches`` (a predicate on its line); the cursor of `wait_for` does not move."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if line.startswith("IN-APP ") and fields_of(line).get(35) == msg_type and matches(line):
                    return line
            time.sleep(0.02)
        raise AssertionError(f"no {msg_type} received within {timeout}s; the initiator printed:\n"
                             + "\n".join(self.lines[-60:]))

    def stop(self) -> None:
        if self.process.poll() is None:
            try:
                self.command("quit")
                self.process.wait(10)
            except (OSError, subprocess.TimeoutExpired):
                self.process.kill()
                self.process.wait(5)


def accepted(client: ExchangeClient, client_order_id: int, timeout: float = 10.0) -> None:
    """Wait for the TES to accept ``client``'s order (so that what QuickFIX sends next finds it resting)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(type(message) is OrderAccepted and message.client_order_id == client_order_id
               for message in client.receive(0.2)):
            return
    raise AssertionError(f"order {client_order_id} not accepted within {timeout}s")


def test_quickfix_trades_through_the_gateway_across_a_restart(initiator_binary, live_exchange, tmp_path):
    env = live_exchange.env
    port = int(env["EXCHANGE__FIX__PORT"])
    gateway = Role(["-s", "FIX"], env)
    quickfix = Initiator(initiator_binary, tmp_path / "alice", port, "ALICE", "alice", "alice-demo-key")
    bob = ExchangeClient(endpoint(env, "TES__CLIENT_ENDPOINT"), "bob", "bob-demo-key")
    try:
        quickfix.wait_for(lambda line: line == "LOGON")
        # the instruments and ACME's market data, their repeating groups read by QuickFIX
        quickfix.command("seclist sl1")
        listing = quickfix.received("y", lambda line: "|320=sl1|" in line)
        assert [(entry[55], entry[561], entry[969]) for entry in entries(listing, 55)] == [("ACME", "1", "0.01"),
                                                                                          ("BOLT", "10", "0.05")]
        quickfix.command("md md1 ACME")
        assert fields_of(quickfix.received("W", lambda line: "|262=md1|" in line))[55] == "ACME"
        status = fields_of(quickfix.received("f"))  # the book's trading phase, after the snapshot
        assert (status[55], status[326], status[325]) == ("ACME", "17", "Y")

        def update(**tags: str):  # an incremental refresh with an entry of these tags
            return lambda line: any(all(entry.get(int(k[1:])) == v for k, v in tags.items())
                                    for entry in entries(line, 279))

        # a limit GTC order, partly filled by bob, then replaced, then the rest filled
        quickfix.command("order q1 ACME 1 10 100.5 2 1")
        new = quickfix.app("8", t11="q1", t150="0")
        assert (new[39], new[151], new[44], new[59]) == ("0", "10", "100.5", "1")
        quickfix.received("X", update(t279="0", t269="0", t270="100.5", t271="10", t346="1"))
        bob.logon()
        bob.enter_order("ACME", Side.SELL, OrderType.LIMIT, TimeInForce.IOC, 10_050, 4)
        fill = quickfix.app("8", t11="q1", t150="F")
        assert (fill[31], fill[32], fill[39], fill[151], fill[14], fill[6], fill[1057]) == \
            ("100.5", "4", "1", "6", "4", "100.5", "N")
        quickfix.received("X", update(t269="2", t270="100.5", t271="4"))  # the trade
        quickfix.received("X", update(t279="1", t269="0", t270="100.5", t271="6"))  # what rests of the bid
        quickfix.command("replace q2 q1 ACME 1 8 100.25 2")
        replaced = quickfix.app("8", t11="q2", t150="5")
        assert (replaced[41], replaced[38], replaced[44], replaced[151], replaced[14]) == ("q1", "8", "100.25", "4",
                                                                                           "4")
        quickfix.command("statusreq q2 ACME 1 st1")
        status = quickfix.app("8", t150="I")
        assert (status[11], status[790], status[39], status[38], status[151], status[14]) == ("q2", "st1", "1", "8",
                                                                                              "4", "4")
        quickfix.command("md md1 ACME 2")  # unsubscribed: no more market data from here on
        # DAY, IOC and FOK limit orders and a market order
        quickfix.command("order q3 ACME 1 5 99 2 0")
        assert quickfix.app("8", t11="q3", t150="0")[59] == "0"
        quickfix.command("order q4 ACME 2 3 110 2 3")  # an IOC sell nobody buys at 110: its rest is canceled
        quickfix.app("8", t11="q4", t150="4")
        quickfix.command("order q5 ACME 2 50 100 2 4")  # FOK: 50 are not there
        rejected = quickfix.app("8", t11="q5", t150="8")
        assert rejected[39] == "8" and "(2002)" in rejected[58]
        accepted(bob, bob.enter_order("ACME", Side.SELL, OrderType.LIMIT, TimeInForce.GTC, 10_100, 2))
        quickfix.command("order q6 ACME 1 2 - 1 3")  # market IOC: buys bob's 2 at 101
        market = quickfix.app("8", t11="q6", t150="F")
        assert (market[31], market[40], market[39], market[1057]) == ("101", "1", "2", "Y")
        # a stop-limit order (StopPx) and an iceberg (MaxFloor), echoed back as QuickFIX's dictionary declares them
        quickfix.command("order q10 ACME 2 3 99 4 1 99=99.5")
        stop = quickfix.app("8", t11="q10", t150="0")
        assert (stop[40], stop[44], stop[99], stop[59]) == ("4", "99", "99.5", "1")
        quickfix.command("order q11 ACME 2 10 105 2 1 111=2")
        iceberg = quickfix.app("8", t11="q11", t150="0")
        assert (iceberg[111], iceberg[151]) == ("2", "10")
        quickfix.command("cancel q7 q3 ACME 1")
        assert quickfix.app("8", t11="q7", t150="4")[41] == "q3"

        # the gateway dies; QuickFIX sends an order meanwhile (it keeps it, numbered)
        quickfix.command("status")
        before = quickfix.wait_for(lambda line: line.startswith("STATUS")).split()
        gateway.kill()
        quickfix.wait_for(lambda line: line == "LOGOUT")
        quickfix.command("order q8 ACME 1 1 98 2 1")
        time.sleep(0.3)
        gateway = Role(["-s", "FIX"], env)
        quickfix.wait_for(lambda line: line == "LOGON", 15)
        resent = quickfix.wait_for(lambda line: line.startswith("OUT-APP") and "|11=q8|" in line and "|43=Y|" in line)
        assert fields_of(resent)[35] == "D"  # QuickFIX sent it again for the gateway's ResendRequest
        assert quickfix.app("8", t11="q8", t150="0")[39] == "0"
        quickfix.command("status")
        after = quickfix.wait_for(lambda line: line.startswith("STATUS")).split()
        assert int(after[2]) > int(before[2]) and int(after[3]) > int(before[3])  # both sides' numbers went on
        assert not any("MsgSeqNum too low" in line for line in quickfix.lines)

        # QuickFIX is told it missed the gateway's last messages: it asks, the gateway fills the gap
        expected = int(after[3])
        quickfix.command(f"expect_target {expected - 3}")
        quickfix.wait_for(lambda line: line.startswith("EXPECTING"))
        quickfix.command("order q9 ACME 1 1 97 2 1")
        quickfix.wait_for(lambda line: line.startswith("OUT-ADMIN") and "|35=2|" in line)  # QuickFIX's ResendRequest
        again = quickfix.app("8", t43="Y")
        assert again[34] == str(expected - 3) or any("|35=4|" in line and "|123=Y|" in line for line in quickfix.lines)
        quickfix.app("8", t11="q9", t150="0")

        quickfix.command("masscancel mc1")
        report = quickfix.app("r", t11="mc1")
        assert report[531] == "7" and int(report[533]) >= 2

        # the book server stops: QuickFIX is told its market data is lost, then gets the book again
        quickfix.command("md md2 ACME")
        quickfix.app("W", t262="md2")
        quickfix.app("f", t326="17")
        live_exchange.obs.process.send_signal(signal.SIGSTOP)
        try:
            lost = quickfix.app("f", 15, t326="20")
            assert (lost[55], lost[325]) == ("ACME", "Y") and lost[58].startswith("market data lost: "), lost
        finally:
            live_exchange.obs.process.send_signal(signal.SIGCONT)
        quickfix.app("W", 15, t262="md2")
        quickfix.app("f", t326="17")
        quickfix.command("logout")
        quickfix.wait_for(lambda line: line == "LOGOUT")
        assert "ERROR" not in "\n".join(quickfix.lines)
        rejected = [line for line in quickfix.lines if line.startswith("OUT-ADMIN") and "|35=3|" in line]
        assert not rejected, rejected  # QuickFIX found nothing wrong in any message of the gateway
    finally:
        quickfix.stop()
        bob.close()
        code = gateway.stop()
    assert code == 0, gateway.output()
    assert "Traceback" not in gateway.output()
