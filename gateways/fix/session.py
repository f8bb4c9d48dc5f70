"""The FIX session layer of one connection: logon, sequence numbers, recovery, heartbeats, logout.

`FixSession` is the state machine of one TCP connection, without sockets: the acceptor
(`gateways.fix.server`) gives it each frame (`on_frame`) and the time (`on_tick`), and it
answers through its `Transport` (frames to send, and when to close) and hands application
messages to its `Application` (`gateways.fix.application`). Its numbers and sent messages are
the CompID pair's `SequenceStore`, so they survive the connection and the gateway.

=================  ===========================================================================
state              what happens
=================  ===========================================================================
AWAIT_LOGON        the first message must be a Logon of a configured CompID pair that is not
                   logged on elsewhere, EncryptMethod 0, HeartBtInt within the configured
                   bounds, Username = the pair's trader and a Password; otherwise a Logout
                   saying why, and the connection closes. Nothing within ``logon_timeout_ms``:
                   closed.
LOGON_PENDING      the TES checks the credentials (`Application.logon`); other messages are
                   not handled (and their numbers not used up: recovery brings them again).
ACTIVE             the Logon answered; if the peer's MsgSeqNum was above the one expected, a
                   ResendRequest follows at once.
LOGOUT_SENT        waiting (at most one heartbeat interval, 2 s at least) for the peer's Logout.
CLOSED             the connection is closed; the pair may log on again.
=================  ===========================================================================

Sequence numbers (FIX 4.4, volume 2)
-------------------------------------
- MsgSeqNum as expected: the message is handled and the next is expected.
- Above it: a ResendRequest (BeginSeqNo = the expected one, EndSeqNo 0) unless one is
  outstanding, and the message is dropped (the peer sends it again with PossDupFlag=Y).
- Below it with PossDupFlag=Y: a duplicate, ignored. Without: a Logout ("MsgSeqNum too low,
  expecting N but received M") and the connection closes.
- SequenceReset-GapFill moves the expected number forward; SequenceReset-Reset sets it
  whatever its own MsgSeqNum (never backwards: that is a Reject).
- A ResendRequest is answered from the store: application messages again (PossDupFlag=Y,
  OrigSendingTime), session messages and anything the store lacks as SequenceReset-GapFill.
  A long range goes out as the peer reads it (`pump`), never more than a bounded amount at once.
- A Logon with ResetSeqNumFlag=Y starts both numbers (and the store) afresh at 1.

Malformed messages: a field of the wrong type, a value FIX does not define, a missing
required tag, a tag twice, an unknown MsgType get a Reject(3) with the reason, the tag and a
Text, and use up their number; a wrong CompID or a SendingTime off by more than
``sending_time_tolerance_s`` get a Reject and a Logout.
"""

import logging
import time
from enum import Enum
from typing import Protocol

from config.settings import FixConfig, FixSessionConfig
from gateways.fix import messages as m
from gateways.fix.store import SequenceStore
from servers.service import Occurrences

log = logging.getLogger(__name__)
ENDED = Occurrences(log, "%s: %s; connection closed (%d sessions ended so far)")
"""Sessions the gateway ended (bad input, timeouts), logged at most once a second under a flood."""
REFUSED = Occurrences(log, "connection %s refused: %s (%d so far)")
REJECTED = Occurrences(log, "%s: rejected message %s (35=%s): %s (%d rejects so far)", level=logging.INFO)

RESEND_CHUNK = 2_000
"""Messages resent per `pump` call while the peer's queue is short."""
RESEND_QUEUE_BYTES = 1 << 20
"""Resending goes on while less than this is queued to the peer."""


class State(Enum):
    AWAIT_LOGON = "awaiting logon"
    LOGON_PENDING = "logon pending"
    ACTIVE = "active"
    LOGOUT_SENT = "logout sent"
    CLOSED = "closed"


class Transport(Protocol):
    def send(self, frame: bytes) -> None:
        """Queue ``frame`` to the peer (written after the stores are flushed)."""

    def close(self, reason: str) -> None:
        """Write what is queued, then close; ``reason`` for the log."""

    def queued(self) -> int:
        """Bytes queued to the peer and not yet written."""


class Application(Protocol):
    def logon(self, session: "FixSession", password: str) -> None:
        """Check the session's trader with ``password``; answer with `FixSession.logon_accepted`
        or `FixSession.logon_refused`, now or later."""

    def on_message(self, session: "FixSession", message: m.Message) -> None:
        """An application message, in sequence (may raise `messages.FieldError`)."""

    def on_logout(self, session: "FixSession") -> None:
        """The session is over (Logout or connection lost) after a logon was accepted or pending."""


class Sessions:
    """The configured CompID pairs, their stores and which of them are logged on now."""

    def __init__(self, config: FixConfig, stores: dict[tuple[str, str], SequenceStore]) -> None:
        self.config = config
        self.settings = {(s.sender_comp_id, s.target_comp_id): s for s in config.sessions}
        self.stores = stores
        self.active: dict[tuple[str, str], FixSession] = {}


class FixSession:
    """One connection's FIX session (see the module docstring)."""

    def __init__(self, sessions: Sessions, transport: Transport, application: Application, peer: str,
                 now: float) -> None:
        self.sessions = sessions
        self.config = sessions.config
        self.transport = transport
        self.application = application
        self.peer = peer
        self.state = State.AWAIT_LOGON
        self.connected_at = now
        self.last_received = self.last_sent = now
        self._now = now
        self.settings: FixSessionConfig | None = None
        self.store: SequenceStore | None = None
        self.sender = self.target = ""
        self.heartbeat_s = 30.0
        self.test_request: str | None = None
        self.test_sent_at = 0.0
        self.test_requests = 0
        self.logout_sent_at = 0.0
        self.resend_requested_to: int | None = None
        """The MsgSeqNum whose arrival means the peer has sent again what was asked (None: no request out)."""
        self._logon: m.Message | None = None
        self._reset = False
        self._sending_time_text = ""
        self._sending_time = 0.0
        """The last SendingTime found good, and its value (in seconds since the epoch)."""
        self._resend: tuple[int, int] | None = None
        """(next seq to send again, last one) of a ResendRequest being answered."""
        self.link = None
        """The application's state of this session (`gateways.fix.application.TraderLink`)."""

    @property
    def name(self) -> str:
        return f"{self.target}->{self.sender}" if self.settings else self.peer

    @property
    def trader_id(self) -> str:
        return self.settings.trader_id if self.settings else ""

    # ------------------------------------------------------------ input

    def on_frame(self, frame: bytes, now: float) -> None:
        """Handle one delimited frame (`messages.Framer.next`)."""
        if self.state is State.CLOSED:
            return
        self.last_received = self._now = now
        self.test_request = None
        problem: m.FieldError | None = None
        try:
            message = m.decode(frame)
        except m.FieldError as exc:
            problem, message = exc, exc.message
        except m.Garbled as exc:
            self.fail(f"garbled message: {exc}")
            return
        if self.state is State.AWAIT_LOGON:
            self._first(message, problem, now)
            return
        if not self._header_ok(message, now):
            return
        if self.state is State.LOGON_PENDING:
            return  # not handled, number not used: recovery brings it again once logged on
        seq = message.seq
        expected = self.store.next_in
        msg_type = message.msg_type
        if msg_type == m.SEQUENCE_RESET and not message.flag(123) and problem is None:
            self._sequence_reset(message, seq, reset=True)
            return
        if seq > expected:
            if msg_type == m.LOGOUT:
                self._on_logout(message, now)
                return
            self._ask_resend(expected, seq)
            return
        if seq < expected:
            if message.flag(m.POSS_DUP_FLAG):
                return
            self.fail(f"MsgSeqNum too low, expecting {expected} but received {seq}")
            return
        if self.resend_requested_to is not None and seq >= self.resend_requested_to:
            self.resend_requested_to = None
        if problem is not None:
            self.reject(message, problem.reason, problem.text, problem.tag)
            self.store.received(seq)
            return
        self.store.received(seq)
        try:
            self._dispatch(message, now)
        except m.FieldError as exc:
            self.reject(message, exc.reason, exc.text, exc.tag)

    def _first(self, message: m.Message, problem: m.FieldError | None, now: float) -> None:
        """The first message of a connection: it must be a good Logon."""
        sender, target = message.get(m.TARGET_COMP_ID, ""), message.get(m.SENDER_COMP_ID, "")
        if message.msg_type != m.LOGON:
            self._refuse(sender, target, f"the first message must be a Logon (35=A), not 35={message.msg_type}")
            return
        settings = self.sessions.settings.get((sender, target))
        if settings is None:
            self._refuse(sender, target, f"no FIX session for SenderCompID {target!r} and TargetCompID {sender!r}")
            return
        if problem is not None:
            self._refuse(sender, target, f"malformed Logon: {problem.text}")
            return
        if message.seq is None:
            self._refuse(sender, target, "MsgSeqNum (34) missing")
            return
        if (sender, target) in self.sessions.active:
            self._refuse(sender, target, f"the session {target}->{sender} is already logged on (another connection)")
            return
        encrypt, heartbeat = message.get(98), message.integer(108)
        low, high = self.config.min_heartbeat_s, self.config.max_heartbeat_s
        username, password = message.get(553), message.get(554)
        refusal = None
        if encrypt != "0":
            refusal = "EncryptMethod (98) must be 0: none (use an SSH tunnel or stunnel for encryption)"
        elif heartbeat is None or not low <= heartbeat <= high:
            refusal = f"HeartBtInt (108) must be {low} to {high} seconds"
        elif username is None or password is None:
            refusal = "the Logon needs the trader in Username (553) and its API key in Password (554)"
        elif username != settings.trader_id:
            refusal = f"Username (553) {username!r} is not the trader of this session"
        if refusal is None:
            refusal = self._sending_time_problem(message, time.time())
        if refusal is not None:
            self._refuse(sender, target, refusal)
            return
        self.settings = settings
        self.sender, self.target = sender, target
        self.store = self.sessions.stores[(sender, target)]
        self.sessions.active[(sender, target)] = self
        self.heartbeat_s = float(heartbeat)
        self._reset = message.flag(141)
        if self._reset:
            if message.seq != 1:
                self.fail(f"a Logon with ResetSeqNumFlag=Y must have MsgSeqNum 1, not {message.seq}")
                return
            self.store.reset()
        elif message.seq < self.store.next_in:
            self.fail(f"MsgSeqNum too low, expecting {self.store.next_in} but received {message.seq}")
            return
        self._logon = message
        self.state = State.LOGON_PENDING
        log.info("%s: Logon from %s (MsgSeqNum %d, expecting %d); checking trader %s", self.name, self.peer,
                 message.seq, self.store.next_in, settings.trader_id)
        self.application.logon(self, password)

    def _refuse(self, sender: str, target: str, text: str) -> None:
        """A Logout outside any session (not stored, MsgSeqNum 1) and close."""
        REFUSED(self.peer, text)
        if sender and target and _comp_id_ok(sender) and _comp_id_ok(target):
            self.transport.send(m.encode(m.LOGOUT, sender, target, 1, m.timestamp(), [(58, m.clean_text(text))]))
        self.state = State.CLOSED
        self.transport.close(text)

    def _header_ok(self, message: m.Message, now: float) -> bool:
        values = message.values
        if m.MSG_SEQ_NUM not in values:
            self.fail("MsgSeqNum (34) missing")
            return False
        if values.get(m.SENDER_COMP_ID) != self.target or values.get(m.TARGET_COMP_ID) != self.sender:
            self.reject(message, m.COMP_ID_PROBLEM, f"CompIDs must be SenderCompID {self.target} and TargetCompID "
                        f"{self.sender}", m.SENDER_COMP_ID)
            self.logout("CompID problem")
            return False
        if values.get(m.POSS_DUP_FLAG) == "Y":
            return True  # an old message sent again: its SendingTime may be as old as it is
        sent = values.get(m.SENDING_TIME)
        if sent is not None and sent == self._sending_time_text:  # as the last one (many share a millisecond)
            if abs(self._sending_time - time.time()) <= self.config.sending_time_tolerance_s:
                return True
        problem = self._sending_time_problem(message, time.time())
        if problem is not None:
            self.reject(message, m.SENDING_TIME_ACCURACY, problem, m.SENDING_TIME)
            self.logout(problem)
            return False
        return True

    def _sending_time_problem(self, message: m.Message, wall: float) -> str | None:
        sent = message.get(m.SENDING_TIME)
        if sent is None:
            return "SendingTime (52) missing"
        stamp = m.parse_timestamp(sent)
        if stamp is None:
            return f"SendingTime (52) {sent!r} is not a UTC timestamp"
        if abs(stamp - wall) > self.config.sending_time_tolerance_s:
            return (f"SendingTime (52) {sent} is more than {self.config.sending_time_tolerance_s}s from the "
                    f"gateway's clock")
        self._sending_time_text, self._sending_time = sent, stamp
        return None

    def _dispatch(self, message: m.Message, now: float) -> None:
        kind = message.msg_type
        if kind not in m.ADMIN_TYPES:
            if kind not in m.FIX44_MSG_TYPES:
                self.reject(message, m.INVALID_MSG_TYPE, f"MsgType {kind!r} is not a FIX 4.4 message type",
                            m.MSG_TYPE)
            elif self.state is State.ACTIVE:
                self.application.on_message(self, message)
            return
        if kind == m.HEARTBEAT:
            return
        if kind == m.TEST_REQUEST:
            message.require(112)
            self.send(m.HEARTBEAT, [(112, message.get(112))])
        elif kind == m.RESEND_REQUEST:
            message.require(7, 16)
            self._answer_resend(message.integer(7), message.integer(16))
        elif kind == m.REJECT:
            log.warning("%s: the peer rejected our message %s: %s (reason %s)", self.name, message.get(45),
                        message.get(58, ""), message.get(373, "-"))
        elif kind == m.SEQUENCE_RESET:
            self._sequence_reset(message, message.seq, reset=False)
        elif kind == m.LOGOUT:
            self._on_logout(message, now)
        elif kind == m.LOGON:
            self.fail("a second Logon in a logged-on session")

    # ------------------------------------------------------------ logon answers

    def logon_accepted(self) -> None:
        """The TES accepted the trader: answer the Logon, ask for any gap, start the session."""
        if self.state is not State.LOGON_PENDING:
            return
        logon = self._logon
        fields = [(98, 0), (108, int(self.heartbeat_s))]
        if self._reset:
            fields.append((141, "Y"))
        self.state = State.ACTIVE
        self.send(m.LOGON, fields)
        expected = self.store.next_in
        if logon.seq > expected:
            self._ask_resend(expected, logon.seq)
        else:
            self.store.received(logon.seq)
        log.info("%s: logged on as %s (next MsgSeqNum out %d, in %d)", self.name, self.trader_id,
                 self.store.next_out, self.store.next_in)

    def logon_refused(self, text: str) -> None:
        if self.state is not State.LOGON_PENDING:
            return
        self.fail(text)

    # ------------------------------------------------------------ sequence recovery

    def _ask_resend(self, expected: int, received: int) -> None:
        if self.resend_requested_to is not None:
            return
        self.resend_requested_to = received
        log.info("%s: MsgSeqNum %d is above the %d expected: asking for %d and after again", self.name, received,
                 expected, expected)
        self.send(m.RESEND_REQUEST, [(7, expected), (16, 0)])

    def _sequence_reset(self, message: m.Message, seq: int, reset: bool) -> None:
        new = message.get(36)
        if new is None:
            self.reject(message, m.REQUIRED_TAG_MISSING, "required tag 36 missing", 36)
            return
        new_seq = int(new)
        expected = self.store.next_in
        if new_seq < expected or (not reset and new_seq <= seq):
            self.reject(message, m.VALUE_OUT_OF_RANGE, f"NewSeqNo (36) {new_seq} would move the expected "
                        f"MsgSeqNum back from {expected}", 36)
            return
        self.store.set_next_in(new_seq)
        if self.resend_requested_to is not None and new_seq > self.resend_requested_to:
            self.resend_requested_to = None

    def _answer_resend(self, begin: int, end: int) -> None:
        last = self.store.next_out - 1
        if end == 0 or end > last:
            end = last
        if begin < 1 or begin > end:
            log.info("%s: ResendRequest %d..%d: nothing to send again (last sent %d)", self.name, begin, end, last)
            return
        log.info("%s: sending %d..%d again", self.name, begin, end)
        self._resend = (begin, end)
        self.pump()

    def pump(self) -> None:
        """Send the next part of a ResendRequest's answer while the peer's queue is short."""
        while self._resend is not None and self.transport.queued() < RESEND_QUEUE_BYTES:
            begin, end = self._resend
            chunk_end = min(end, begin + RESEND_CHUNK - 1)
            stored = dict(self.store.stored(begin, chunk_end))
            gap_from = None
            now = m.timestamp()
            for seq in range(begin, chunk_end + 1):
                frame = stored.get(seq)
                message = _stored(frame) if frame is not None else None
                if message is None or message.msg_type in m.ADMIN_TYPES:
                    if gap_from is None:
                        gap_from = seq
                    continue
                if gap_from is not None:
                    self._gap_fill(gap_from, seq, now)
                    gap_from = None
                self.transport.send(m.encode(message.msg_type, self.sender, self.target, seq, now,
                                             m.body_fields(message), orig_sending_time=message.get(m.SENDING_TIME)))
            if gap_from is not None:
                self._gap_fill(gap_from, chunk_end + 1, now)
            self._resend = None if chunk_end >= end else (chunk_end + 1, end)

    def _gap_fill(self, seq: int, new_seq: int, now: str) -> None:
        self.transport.send(m.encode(m.SEQUENCE_RESET, self.sender, self.target, seq, now,
                                     [(123, "Y"), (36, new_seq)], orig_sending_time=now))

    # ------------------------------------------------------------ output

    def send(self, msg_type: str, fields: list[tuple[int, object]]) -> int:
        """Send a message in the session (stored, numbered); its MsgSeqNum."""
        return self.send_text(msg_type, m.fields_text(fields))

    def send_text(self, msg_type: str, text: str) -> int:
        """`send` of fields already written out (``tag=value|`` each, `messages.fields_text`)."""
        store = self.store
        seq = store.next_out
        frame = m.framed(f"35={msg_type}\x0149={self.sender}\x0156={self.target}\x0134={seq}\x0152={m.timestamp()}"
                         f"\x01{text}".encode("latin-1"))
        store.sent(seq, frame)
        self.transport.send(frame)
        now = time.monotonic()
        self.last_sent = now if now > self._now else self._now
        return seq

    def reject(self, message: m.Message, reason: int, text: str, tag: int | None = None) -> None:
        """A session-level Reject(3) of ``message``."""
        REJECTED(self.name, message.seq, message.msg_type, text)
        fields: list[tuple[int, object]] = [(45, message.seq or 0)]
        if tag is not None:
            fields.append((371, tag))
        fields += [(372, message.msg_type), (373, reason), (58, m.clean_text(text))]
        self.send(m.REJECT, fields)

    def logout(self, text: str) -> None:
        """Start a logout: a Logout with ``text``; the connection closes when the peer answers
        (or after a heartbeat interval)."""
        if self.state in (State.LOGOUT_SENT, State.CLOSED):
            return
        if self.state is State.AWAIT_LOGON or self.store is None:
            self.state = State.CLOSED
            self.transport.close(text)
            return
        if self.state is State.LOGON_PENDING:
            self.fail(text)
            return
        self.send(m.LOGOUT, [(58, m.clean_text(text))])
        self.state = State.LOGOUT_SENT
        self.logout_sent_at = time.monotonic()

    def fail(self, text: str) -> None:
        """End the session at once: a Logout saying why (in the session if there is one), then close."""
        ENDED(self.name, text)
        if self.store is not None and self.state is not State.CLOSED:
            self.send(m.LOGOUT, [(58, m.clean_text(text))])
        self.closed(text)

    def closed(self, reason: str) -> None:
        """The connection is gone or going: the session ends (the application logs the trader out)."""
        if self.state is State.CLOSED:
            return
        was = self.state
        self.state = State.CLOSED
        key = (self.sender, self.target)
        if self.sessions.active.get(key) is self:
            del self.sessions.active[key]
        if was in (State.LOGON_PENDING, State.ACTIVE, State.LOGOUT_SENT):
            self.application.on_logout(self)
        self.transport.close(reason)

    def _on_logout(self, message: m.Message, now: float) -> None:
        if self.state is State.LOGOUT_SENT:
            self.closed("logged out")
            return
        text = message.get(58)
        log.info("%s: Logout from the peer%s", self.name, f": {text}" if text else "")
        self.send(m.LOGOUT, [])
        self.closed("logged out by the peer")

    # ------------------------------------------------------------ time

    def on_tick(self, now: float) -> None:
        """Heartbeats, TestRequests, and the timeouts of logon, heartbeats and logout."""
        state = self.state
        self._now = now
        if state is State.AWAIT_LOGON:
            if now - self.connected_at > self.config.logon_timeout_ms / 1000:
                ENDED(self.peer, f"no Logon within {self.config.logon_timeout_ms / 1000:g}s")
                self.state = State.CLOSED
                self.transport.close("no Logon in time")
            return
        if state is State.LOGOUT_SENT:
            if now - self.logout_sent_at > max(2.0, self.heartbeat_s):
                self.closed("no Logout answer")
            return
        if state is not State.ACTIVE:
            return
        self.pump()
        interval = self.heartbeat_s
        if self.test_request is not None:
            if now - self.test_sent_at > interval:
                self.fail(f"no answer to TestRequest {self.test_request} within {interval:g}s")
                return
        elif now - self.last_received > interval * 1.2 + 0.5:
            self.test_requests += 1
            self.test_request = f"TEST-{self.test_requests}"
            self.test_sent_at = now
            self.send(m.TEST_REQUEST, [(112, self.test_request)])
        if now - self.last_sent >= interval:
            self.send(m.HEARTBEAT, [])


def _stored(frame: bytes) -> m.Message | None:
    """A message the gateway sent, read back from the store (None if it cannot be: gap-filled)."""
    try:
        return m.decode(frame)
    except m.FieldError as exc:
        return exc.message
    except (m.Garbled, ValueError):
        return None


def _comp_id_ok(value: str) -> bool:
    return 0 < len(value) <= 64 and value.isprintable() and "\x01" not in value
