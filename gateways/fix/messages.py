"""FIX 4.4 on the wire: framing, strict decoding and validation, and encoding.

Written by hand rather than taken from a library: simplefix (the well-kept pure-Python FIX
library) parses byte by byte in Python, checks neither BodyLength nor CheckSum and does not
bound its buffer, and QuickFIX's Python binding compiles the whole C++ engine from source (and
would bring its own session layer, stores and threads). What is here is small and strict, and
the tests check it against simplefix's encoder and parser both ways (tests/test_fix_messages.py)
and against QuickFIX itself (tests/test_fix_quickfix.py).

Framing (`Framer`)
------------------
A stream must be a sequence of ``8=FIX.4.4|9=LEN|...|10=SUM|`` frames (``|`` is SOH, 0x01):
BeginString first, BodyLength second (digits, no leading zero), exactly LEN bytes of body, then
CheckSum as three digits equal to the sum of every byte before it modulo 256. Anything else is
a `Garbled` stream: the frame cannot be trusted and neither can what follows it, so the
connection is ended with a Logout that says why (the peer logs on again and sequence recovery
brings back whatever was lost). A frame larger than the configured maximum is `TooLarge` (also
garbled), found from BodyLength before its body is read, so a peer cannot make the buffer grow
past it.

Decoding (`decode`)
-------------------
A delimited frame is split into fields (``tag=value``; data fields such as RawData(96) by the
length their length field gives). The header must be BeginString, BodyLength, MsgType in that
order. The common message (every field well-formed, every typed value of a form no check would
refuse, no data field, no tag twice) is read by two regular expressions, one to split it and one
(`_SUSPECT`) to find any field that needs a closer look; anything else is read field by field and
checked in order, so both ways raise the same error for the same message.

Problems a session can answer with a Reject(3) raise `FieldError` with the SessionRejectReason(373)
code and the tag: a tag that is not a positive number (0), a tag
without a value (4), a field of the wrong type (6) or an enumerated value FIX 4.4 does not
define (5), a tag twice outside a repeating group (13). `Message.require` raises `FieldError`
(1, required tag missing). Tags this module does not know are kept and ignored.

Encoding (`encode`)
-------------------
``encode(msg_type, sender, target, seq, sending_time, fields)`` writes the header (BeginString,
BodyLength, MsgType, SenderCompID, TargetCompID, MsgSeqNum, SendingTime, and PossDupFlag with
OrigSendingTime for a resent message), the fields in the order given, and the CheckSum.
`framed` wraps a body already written out (the session's hot path: `fields_text`, or text the
application writes directly). CheckSums are summed by zlib's Adler-32 (`byte_sum`).
"""

import calendar
import datetime
import functools
import re
import time
import zlib
from decimal import Decimal, InvalidOperation

SOH = b"\x01"
BEGIN_STRING = "FIX.4.4"
PREFIX = b"8=FIX.4.4\x019="
TRAILER_BYTES = 7
"""``10=NNN|``."""
_HEADER = re.compile(rb"8=FIX\.4\.4\x019=([1-9][0-9]{0,8})\x01")
"""BeginString and a well-formed BodyLength (anything else: `Framer` says what is wrong)."""

# ---------------------------------------------------------------- message types

LOGON, HEARTBEAT, TEST_REQUEST, RESEND_REQUEST, REJECT = "A", "0", "1", "2", "3"
SEQUENCE_RESET, LOGOUT = "4", "5"
NEW_ORDER_SINGLE, ORDER_CANCEL_REQUEST, ORDER_CANCEL_REPLACE_REQUEST, ORDER_STATUS_REQUEST = "D", "F", "G", "H"
EXECUTION_REPORT, ORDER_CANCEL_REJECT = "8", "9"
ORDER_MASS_CANCEL_REQUEST, ORDER_MASS_CANCEL_REPORT = "q", "r"
BUSINESS_MESSAGE_REJECT = "j"
MARKET_DATA_REQUEST, MARKET_DATA_SNAPSHOT, MARKET_DATA_INCREMENTAL, MARKET_DATA_REQUEST_REJECT = "V", "W", "X", "Y"
SECURITY_LIST_REQUEST, SECURITY_LIST = "x", "y"
SECURITY_STATUS = "f"

ADMIN_TYPES = frozenset({LOGON, HEARTBEAT, TEST_REQUEST, RESEND_REQUEST, REJECT, SEQUENCE_RESET, LOGOUT})
"""Session-level messages: never resent (a ResendRequest gets a SequenceReset-GapFill for them)."""

# Every MsgType FIX 4.4 defines (an unknown one is session-rejected, reason 11; a known one the
# gateway does not handle is business-rejected, reason 3).
FIX44_MSG_TYPES = frozenset(
    "0 1 2 3 4 5 6 7 8 9 A B C D E F G H J K L M N P Q R S T V W X Y Z a b c d e f g h i j k l m n o p q r s t "
    "u v w x y z AA AB AC AD AE AF AG AH AI AJ AK AL AM AN AO AP AQ AR AS AT AU AV AW AX AY AZ BA BB BC BD BE "
    "BF BG BH".split())

# ---------------------------------------------------------------- tags

BEGIN_STRING_TAG, BODY_LENGTH, MSG_TYPE, CHECKSUM = 8, 9, 35, 10
SENDER_COMP_ID, TARGET_COMP_ID, MSG_SEQ_NUM, SENDING_TIME = 49, 56, 34, 52
POSS_DUP_FLAG, POSS_RESEND, ORIG_SENDING_TIME = 43, 97, 122
HEADER_TAGS = frozenset({BEGIN_STRING_TAG, BODY_LENGTH, MSG_TYPE, SENDER_COMP_ID, TARGET_COMP_ID, MSG_SEQ_NUM,
                         SENDING_TIME, POSS_DUP_FLAG, POSS_RESEND, ORIG_SENDING_TIME, 50, 57, 115, 128, 142, 143,
                         144, 145, 369, 627, 628, 629, 630, 1128, 1129})

# SessionRejectReason (373)
INVALID_TAG_NUMBER = 0
REQUIRED_TAG_MISSING = 1
TAG_NOT_DEFINED_FOR_MESSAGE = 2
UNDEFINED_TAG = 3
TAG_WITHOUT_VALUE = 4
VALUE_OUT_OF_RANGE = 5
INCORRECT_DATA_FORMAT = 6
COMP_ID_PROBLEM = 9
SENDING_TIME_ACCURACY = 10
INVALID_MSG_TYPE = 11
TAG_APPEARS_TWICE = 13
TAG_OUT_OF_ORDER = 14
GROUP_FIELDS_OUT_OF_ORDER = 15
INCORRECT_NUM_IN_GROUP = 16
OTHER = 99

# Field types of the tags the gateway reads (anything else is kept as a string).
INT, SEQNUM, LENGTH, NUMINGROUP, CHAR, BOOLEAN, FLOAT, TIMESTAMP = "int", "seq", "len", "num", "char", "bool", \
    "float", "time"

TYPES = {
    7: SEQNUM, 16: SEQNUM, 34: SEQNUM, 36: SEQNUM, 45: SEQNUM,
    108: INT, 98: INT, 264: INT, 265: INT, 559: INT, 383: LENGTH,
    9: LENGTH, 95: LENGTH, 93: LENGTH, 90: LENGTH, 354: LENGTH, 212: LENGTH,
    146: NUMINGROUP, 267: NUMINGROUP, 268: NUMINGROUP,
    54: CHAR, 40: CHAR, 59: CHAR, 263: CHAR, 269: CHAR, 530: CHAR,
    43: BOOLEAN, 97: BOOLEAN, 141: BOOLEAN, 123: BOOLEAN, 464: BOOLEAN,
    38: FLOAT, 44: FLOAT, 99: FLOAT, 110: FLOAT, 111: FLOAT,
    52: TIMESTAMP, 122: TIMESTAMP, 60: TIMESTAMP, 126: TIMESTAMP,
    2964: INT,
}
"""ExecInst (18) is a MultipleValueString (``6``, ``6 E``...): the application checks its values
(`EXEC_INST_VALUES`); ExpireDate (432), a LocalMktDate, likewise (`expire_date_nanos`)."""
DATA_FIELDS = {95: 96, 93: 89, 90: 91, 354: 355, 212: 213, 348: 349, 350: 351, 352: 353, 618: 619, 621: 622}
"""Length field -> data field: the data field's value is that many bytes, SOH included."""

ENUMS = {
    98: frozenset("0123456"),                              # EncryptMethod
    54: frozenset("123456789ABCDEFG"),                     # Side
    40: frozenset("123456789ABCDEFGHIJKP"),                # OrdType
    59: frozenset("01234567"),                             # TimeInForce
    263: frozenset("012"),                                 # SubscriptionRequestType
    265: frozenset({"0", "1"}),                            # MDUpdateType
    269: frozenset("0123456789ABCJKLMNOPQ"),               # MDEntryType
    530: frozenset("1234567"),                             # MassCancelRequestType
    559: frozenset({"0", "1", "2", "3", "4"}),             # SecurityListRequestType
    2964: frozenset({"0", "1", "2", "3", "4"}),            # SelfMatchPreventionInstruction (this gateway's values)
}
EXEC_INST_VALUES = frozenset("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcd")
"""Every ExecInst (18) value FIX 4.4 defines (``6``: participate don't initiate, the one the gateway takes)."""

_DATA_LENGTH = re.compile(rb"\x01(?:%s)=" % b"|".join(str(tag).encode() for tag in DATA_FIELDS))
"""A length field of a data field: the message must then be read field by field."""
_FIELD = re.compile(r"\x01([1-9][0-9]*)=([^\x01]+)(?=\x01)")
"""A well-formed field and the SOH before it: when there are as many as SOHs (less the last), every
field is well-formed."""
TAG_NUMBERS = {str(tag): tag for tag in range(1, 10_000)}
_SECONDS = re.compile(r"(\d{4})(\d{2})(\d{2})-(\d{2}):(\d{2}):(\d{2})")


class Garbled(Exception):
    """The stream cannot be read on (framing, BodyLength, CheckSum): the connection must end."""


class TooLarge(Garbled):
    """A frame over the size limit (found from BodyLength before its body is read)."""


class FieldError(Exception):
    """A delimited message with a problem a Reject(3) can answer: SessionRejectReason and the tag."""

    def __init__(self, reason: int, text: str, tag: int | None = None) -> None:
        super().__init__(text)
        self.reason = reason
        self.text = text
        self.tag = tag


class Message:
    """A decoded message: its MsgType, every field after MsgType in order (``fields``: tag,
    value as str) and the first value of each tag (``values``)."""

    __slots__ = ("msg_type", "fields", "values", "frame")

    def __init__(self, msg_type: str, fields: list[tuple[int, str]], frame: bytes = b"") -> None:
        self.msg_type = msg_type
        self.fields = fields
        values = dict(fields)
        if len(values) != len(fields):  # a tag twice: the first value counts
            values = {}
            for tag, value in fields:
                values.setdefault(tag, value)
        self.values: dict[int, str] = values
        self.frame = frame

    def get(self, tag: int, default: str | None = None) -> str | None:
        return self.values.get(tag, default)

    def __contains__(self, tag: int) -> bool:
        return tag in self.values

    def require(self, *tags: int) -> None:
        """`FieldError` (required tag missing) for the first of ``tags`` that is absent."""
        for tag in tags:
            if tag not in self.values:
                raise FieldError(REQUIRED_TAG_MISSING, f"required tag {tag} missing", tag)

    def integer(self, tag: int, default: int | None = None) -> int | None:
        value = self.values.get(tag)
        return default if value is None else int(value)

    def flag(self, tag: int) -> bool:
        return self.values.get(tag) == "Y"

    @property
    def seq(self) -> int | None:
        value = self.values.get(MSG_SEQ_NUM)
        return None if value is None else int(value)

    def groups(self, count_tag: int, first_tag: int, member_tags: frozenset[int]) -> list[dict[int, str]]:
        """The repeating group that ``count_tag`` (NoXXX) starts: one dict per entry, each entry
        beginning with ``first_tag`` and holding only ``member_tags``. `FieldError` if the count
        differs from the entries found (16) or an entry does not begin with ``first_tag`` (15)."""
        count = self.values.get(count_tag)
        if count is None:
            return []
        expected = int(count)
        entries: list[dict[int, str]] = []
        index = next(i for i, (tag, _) in enumerate(self.fields) if tag == count_tag) + 1
        while index < len(self.fields):
            tag, value = self.fields[index]
            if tag == first_tag:
                entries.append({tag: value})
            elif tag in member_tags and entries:
                if tag in entries[-1]:
                    raise FieldError(GROUP_FIELDS_OUT_OF_ORDER, f"tag {tag} twice in one entry of group {count_tag}",
                                     tag)
                entries[-1][tag] = value
            elif tag in member_tags:
                raise FieldError(GROUP_FIELDS_OUT_OF_ORDER,
                                 f"group {count_tag}: an entry must begin with tag {first_tag}", tag)
            else:
                break
            index += 1
        if len(entries) != expected:
            raise FieldError(INCORRECT_NUM_IN_GROUP,
                             f"NumInGroup {count_tag} says {expected} entries but {len(entries)} follow", count_tag)
        return entries

    def __repr__(self) -> str:
        return f"Message({self.msg_type!r}, {self.fields!r})"


REPEATABLE = {
    MARKET_DATA_REQUEST: frozenset({269, 55, 65, 48, 22, 207, 460, 461, 167, 200, 541, 201, 202, 206, 231, 223, 106,
                                    107, 348, 349, 350, 351, 15}),
    SECURITY_LIST_REQUEST: frozenset(),
    MARKET_DATA_SNAPSHOT: frozenset({269, 270, 271, 346, 290, 272, 273}),
    MARKET_DATA_INCREMENTAL: frozenset({279, 269, 55, 270, 271, 346, 83, 290, 272, 273}),
    SECURITY_LIST: frozenset({55, 561, 562, 969, 15, 48, 22}),
}
"""The tags that may appear more than once in a message type (members of its repeating groups)."""


class Framer:
    """Cuts a TCP byte stream into FIX frames; at most ``max_bytes`` per frame."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.buffer = bytearray()

    def feed(self, data: bytes) -> None:
        self.buffer += data

    def next(self) -> bytes | None:
        """The next complete frame (BodyLength and CheckSum checked), or None if it has not all
        arrived; `Garbled` (or `TooLarge`) if the stream is not FIX 4.4 frames."""
        frames = self._cut(1)
        return frames[0] if frames else None

    def frames(self) -> list[bytes]:
        """Every complete frame in the buffer, in order (`next` until None, in one pass over it);
        `Garbled` if the stream goes wrong before the first of them (after it: at the next call)."""
        return self._cut(0)

    def _cut(self, limit: int) -> list[bytes]:
        """Up to ``limit`` complete frames (0: all) off the front of the buffer."""
        buffer = self.buffer
        have = len(buffer)
        frames: list[bytes] = []
        pos = 0
        try:
            while pos < have:
                frame = self._frame_at(pos, have)
                if frame is None:
                    break
                frames.append(frame)
                pos += len(frame)
                if len(frames) == limit:
                    break
        except Garbled:
            if not frames:
                raise
        if pos:
            del buffer[:pos]
        return frames

    def _frame_at(self, pos: int, have: int) -> bytes | None:
        """The frame at ``pos``, its CheckSum checked (None: not all arrived)."""
        buffer = self.buffer
        if have - pos < len(PREFIX):
            if buffer[pos:] != PREFIX[:have - pos]:
                raise Garbled(f"expected a message beginning 8=FIX.4.4|9=, got {_shown(bytes(buffer[pos:pos + 24]))}")
            return None
        header = _HEADER.match(buffer, pos)
        if header is not None:  # the common case
            body_end = header.end() + int(header.group(1))
        else:
            body_end = self._body_end(pos, have)
            if body_end is None:
                return None
        total = body_end + TRAILER_BYTES
        if total - pos > self.max_bytes:
            raise TooLarge(f"message of {total - pos} bytes is over the limit of {self.max_bytes}")
        if have < total:
            return None
        frame = bytes(buffer[pos:total])
        trailer = frame[-TRAILER_BYTES:]
        if frame[-TRAILER_BYTES - 1] != 1 or trailer[:3] != b"10=" or trailer[6] != 1 or not trailer[3:6].isdigit():
            raise Garbled(f"BodyLength(9) {body_end - frame.index(SOH, len(PREFIX)) - 1 - pos} does not end where "
                          f"CheckSum(10) begins: found {_shown(trailer)}")
        checksum = (byte_sum(frame) - sum(trailer)) & 255
        if int(trailer[3:6]) != checksum:
            raise Garbled(f"CheckSum(10) is {trailer[3:6].decode()} but the message sums to {checksum:03d}")
        return frame

    def _body_end(self, pos: int, have: int) -> int | None:
        """Where the body of the frame at ``pos`` ends, from its BodyLength (None: not all arrived);
        `Garbled` saying what is wrong with its beginning."""
        buffer = self.buffer
        if not buffer.startswith(PREFIX, pos):
            raise Garbled(f"expected a message beginning 8=FIX.4.4|9=, got {_shown(bytes(buffer[pos:pos + 24]))}")
        digits_at = pos + len(PREFIX)
        end = buffer.find(SOH, digits_at, digits_at + 10)
        if end < 0:
            if have >= digits_at + 10:
                raise Garbled(f"BodyLength(9) is not a number: {_shown(bytes(buffer[digits_at:digits_at + 10]))}")
            return None
        digits = bytes(buffer[digits_at:end])
        if not digits.isdigit() or (digits[0] == 48 and len(digits) > 1) or digits == b"0":
            raise Garbled(f"BodyLength(9) is not a positive number: {_shown(digits)}")
        return end + 1 + int(digits)


def byte_sum(data: bytes | bytearray) -> int:
    """The sum of the bytes of ``data``. Adler-32's low half is 1 + that sum modulo 65521, so it is
    the sum itself while the sum stays below 65520: for any 256 bytes, or 512 ASCII ones (a FIX
    message is ASCII but for its free text). zlib adds in C what ``sum`` would add one Python int
    at a time, five times slower."""
    if len(data) <= 256 or (len(data) <= 512 and data.isascii()):
        return (zlib.adler32(data) & 0xFFFF) - 1
    view = memoryview(data)
    return sum([zlib.adler32(view[i:i + 256]) & 0xFFFF for i in range(0, len(view), 256)]) - (len(view) + 255) // 256


def _shown(data: bytes) -> str:
    """Bytes for a log line or a Logout text: SOH as |, other unprintables escaped."""
    return "".join("|" if byte == 1 else chr(byte) if 32 <= byte < 127 else f"\\x{byte:02x}" for byte in data)


def decode(frame: bytes) -> Message:
    """A frame `Framer.next` delimited, as a `Message`; `FieldError` for what a Reject answers,
    `Garbled` if even MsgType cannot be read."""
    start = frame.index(SOH, len(PREFIX)) + 1
    end = len(frame) - TRAILER_BYTES
    text = frame[start - 1:end].decode("latin-1")  # from the SOH before MsgType
    found = _FIELD.findall(text)
    if found and len(found) == text.count("\x01") - 1 and found[0][0] == "35" and _SUSPECT.search(text) is None:
        # the common case: every field tag=value, every typed value well-formed, no data field
        try:
            fields = [(TAG_NUMBERS[tag], value) for tag, value in found]
        except KeyError:
            fields = [(int(tag), value) for tag, value in found]
        message = Message(found[0][1], fields[1:], frame)
        if len(message.values) != len(message.fields):  # a tag twice: a repeating group, or wrong
            try:
                check_fields(message)
            except FieldError as exc:
                raise _with(exc, message) from None
        return message
    return _decode_field_by_field(frame, start, end)


def _decode_field_by_field(frame: bytes, start: int, end: int) -> Message:
    """`decode` of a frame with a data field (whose value may hold SOH) or a malformed field."""
    fields: list[tuple[int, str]] = []
    problem: FieldError | None = None
    if _DATA_LENGTH.search(frame, start - 1, end) is None:  # no data field: split at every SOH
        for part in frame[start:end - 1].split(SOH):
            tag_text, equals, value = part.partition(b"=")
            if not equals:
                raise Garbled(f"a field without '=': {_shown(part)}")
            if not tag_text.isdigit() or tag_text[0] == 48:
                problem = problem or FieldError(INVALID_TAG_NUMBER, f"invalid tag number {_shown(tag_text)}")
            elif not value:
                problem = problem or FieldError(TAG_WITHOUT_VALUE, f"tag {int(tag_text)} has no value",
                                                int(tag_text))
            else:
                fields.append((int(tag_text), value.decode("latin-1")))
        return _message(fields, frame, problem)
    pending_data: dict[int, int] = {}
    pos = start
    while pos < end:
        equals = frame.find(b"=", pos, end)
        if equals < 0:
            raise Garbled(f"a field without '=': {_shown(frame[pos:end])}")
        tag_text = frame[pos:equals]
        if not tag_text.isdigit() or tag_text[0] == 48:
            soh = frame.find(SOH, equals, end)
            problem = problem or FieldError(INVALID_TAG_NUMBER, f"invalid tag number {_shown(tag_text)}")
            pos = soh + 1
            continue
        tag = int(tag_text)
        length = pending_data.pop(tag, None)
        if length is not None:
            soh = equals + 1 + length
            if soh >= end or frame[soh] != 1:
                raise Garbled(f"data field {tag} is not {length} bytes long")
        else:
            soh = frame.find(SOH, equals + 1, end)
        value = frame[equals + 1:soh].decode("latin-1")
        pos = soh + 1
        if not value:
            problem = problem or FieldError(TAG_WITHOUT_VALUE, f"tag {tag} has no value", tag)
            continue
        if tag in DATA_FIELDS and value.isdigit() and value.isascii():  # "²".isdigit(), but int("²") fails
            pending_data[DATA_FIELDS[tag]] = int(value)
        fields.append((tag, value))
    return _message(fields, frame, problem)


def _message(fields: list[tuple[int, str]], frame: bytes, problem: FieldError | None) -> Message:
    if not fields or fields[0][0] != MSG_TYPE:
        raise Garbled("MsgType(35) is not the third field")
    msg_type = fields[0][1]
    message = Message(msg_type, fields[1:], frame)
    if problem is not None:
        raise _with(problem, message)
    try:
        check_fields(message)
    except FieldError as exc:
        raise _with(exc, message) from None
    return message


def _with(error: FieldError, message: Message) -> FieldError:
    error.message = message  # the message, for the Reject's RefSeqNum and RefMsgType
    return error


def check_fields(message: Message) -> None:
    """Types and enumerated values of the known tags; tags repeated outside a repeating group."""
    fields = message.fields
    if len(message.values) == len(fields):  # no tag twice: check the typed tags, in one pass
        checks = CHECKS
        for tag, value in fields:
            check = checks.get(tag)
            if check is not None and not check(value):
                break
        else:
            return
    _check_in_order(message)


def _check_in_order(message: Message) -> None:
    """`check_fields` field by field: the first problem in the message's order is the one raised."""
    repeatable = REPEATABLE.get(message.msg_type, frozenset())
    seen: set[int] = set()
    for tag, value in message.fields:
        if tag in seen and tag not in repeatable:
            raise FieldError(TAG_APPEARS_TWICE, f"tag {tag} appears more than once", tag)
        seen.add(tag)
        kind = TYPES.get(tag)
        if kind is None:
            continue
        if not valid(kind, value):
            raise FieldError(INCORRECT_DATA_FORMAT, f"tag {tag}: {value!r} is not a valid {NAMES[kind]}", tag)
        allowed = ENUMS.get(tag)
        if allowed is not None and value not in allowed:
            raise FieldError(VALUE_OUT_OF_RANGE, f"tag {tag}: {value!r} is not a value FIX 4.4 defines", tag)


NAMES = {INT: "integer", SEQNUM: "sequence number", LENGTH: "length", NUMINGROUP: "group count", CHAR: "character",
         BOOLEAN: "boolean (Y or N)", FLOAT: "decimal number", TIMESTAMP: "UTC timestamp (YYYYMMDD-HH:MM:SS[.sss])"}
MAX_INT = 2**63 - 1


def _digits_in_range(digits: str) -> bool:
    """ASCII digits of a number at most `MAX_INT` (str.isdigit alone also takes ² and other digits)."""
    return digits.isdigit() and digits.isascii() and (len(digits) < 19 or int(digits) <= MAX_INT)


def _is_int(value: str) -> bool:
    return _digits_in_range(value[1:] if value[:1] == "-" else value)


def _is_count(value: str) -> bool:
    return _digits_in_range(value)


def _is_seqnum(value: str) -> bool:
    return _digits_in_range(value) and (value[0] != "0" or value == "0" or int(value) > 0)


def _is_char(value: str) -> bool:
    return len(value) == 1 and value != " "


def _is_boolean(value: str) -> bool:
    return value == "Y" or value == "N"


def _is_float(value: str) -> bool:
    digits = (value[1:] if value[:1] == "-" else value).replace(".", "", 1)
    return len(value) <= 32 and digits.isdigit() and digits.isascii()


def _is_timestamp(value: str) -> bool:
    return parse_timestamp(value) is not None


VALIDATORS = {INT: _is_int, SEQNUM: _is_seqnum, LENGTH: _is_count, NUMINGROUP: _is_count, CHAR: _is_char,
              BOOLEAN: _is_boolean, FLOAT: _is_float, TIMESTAMP: _is_timestamp}


def valid(kind: str, value: str) -> bool:
    """Whether ``value`` is of the FIX type ``kind``."""
    return VALIDATORS[kind](value)


def _check_of(tag: int):
    kind_ok = VALIDATORS[TYPES[tag]]
    allowed = ENUMS.get(tag)
    if allowed is None:
        return kind_ok
    return lambda value: kind_ok(value) and value in allowed


CHECKS = {tag: _check_of(tag) for tag in TYPES}
"""Tag -> whether a value is of its type (and one of its enumerated values): `check_fields`' fast pass."""

_STRICT = {
    SEQNUM: "0|[1-9][0-9]{0,17}",
    INT: "-?(?:0|[1-9][0-9]{0,17})",
    LENGTH: "[0-9]{1,18}",
    NUMINGROUP: "[0-9]{1,18}",
    CHAR: "[^ \x01]",
    BOOLEAN: "[YN]",
    FLOAT: "(?=[^\x01]{1,32}\x01)-?(?:[0-9]+\\.?[0-9]*|\\.[0-9]+)",
    TIMESTAMP: "[0-9]{4}(?:0[1-9]|1[0-2])(?:0[1-9]|[12][0-9]|3[01])-(?:[01][0-9]|2[0-3]):[0-5][0-9]:(?:[0-5][0-9]|60)"
               "(?:\\.[0-9]{1,9})?",
}
"""A value pattern per type, narrower than `valid` (it leaves out some valid values, e.g. ``007``, never
takes an invalid one)."""


def _suspect_pattern() -> re.Pattern:
    """``SOH tag=`` then, for a typed tag, a value `_STRICT` does not take; for a data field's
    length tag, anything. The tags are spelled as a trie (``1(?:08=...|6=...)``): the regular
    expression engine then tries a few branches at each SOH rather than every tag."""
    branches: dict[str, str] = {str(tag): "=" for tag in DATA_FIELDS}
    for tag, kind in TYPES.items():
        allowed = ENUMS.get(tag)
        pattern = _STRICT[kind] if allowed is None else "|".join(
            re.escape(value) for value in sorted(allowed, key=len, reverse=True))
        branches.setdefault(str(tag), f"=(?!(?:{pattern})\x01)")
    return re.compile("\x01" + _trie(branches))


def _trie(branches: dict[str, str]) -> str:
    """A pattern matching each key of ``branches`` followed by its value (a pattern)."""
    by_first: dict[str, dict[str, str]] = {}
    for key, pattern in branches.items():
        by_first.setdefault(key[:1], {})[key[1:]] = pattern
    alternatives = [rest[""] if first == "" else re.escape(first) + _trie(rest) for first, rest in by_first.items()]
    return alternatives[0] if len(alternatives) == 1 else f"(?:{'|'.join(alternatives)})"


_SUSPECT = _suspect_pattern()
"""A typed field whose value may be wrong, or the length of a data field (whose value may hold SOH):
`decode` then reads the message field by field and checks it in order (`check_fields`)."""


@functools.lru_cache(maxsize=256)
def _epoch_second(text: str) -> int | None:
    """``YYYYMMDD-HH:MM:SS`` as seconds since the epoch, or None."""
    match = _SECONDS.fullmatch(text)
    if match is None:
        return None
    year, month, day, hour, minute, second = (int(group) for group in match.groups())
    if not (1 <= month <= 12 and 1 <= day <= 31 and hour <= 23 and minute <= 59 and second <= 60):
        return None
    return calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0))


def parse_timestamp(value: str) -> float | None:
    """A UTCTimestamp (``YYYYMMDD-HH:MM:SS`` and up to 9 decimals of a second) as seconds since the
    epoch, or None if it is not one."""
    second = _epoch_second(value[:17])
    if second is None:
        return None
    fraction = value[17:]
    if not fraction:
        return float(second)
    if fraction[0] != "." or not 2 <= len(fraction) <= 10 or not fraction[1:].isdigit() or not fraction.isascii():
        return None
    return second + float(fraction)


def timestamp_nanos(value: str) -> int | None:
    """A UTCTimestamp (checked by `valid`) as nanoseconds since the epoch, exactly (no float)."""
    second = _epoch_second(value[:17])
    if second is None:
        return None
    fraction = value[18:]
    return second * 1_000_000_000 + (int(fraction.ljust(9, "0")) if fraction else 0)


_DATE = re.compile(r"(\d{4})(\d{2})(\d{2})")


def expire_date_nanos(value: str) -> int | None:
    """An ExpireDate (432), a LocalMktDate ``YYYYMMDD``, as the end of that day in UTC (midnight
    after it) in nanoseconds since the epoch; None if it is not a date."""
    match = _DATE.fullmatch(value)
    if match is None or not value.isascii():
        return None
    year, month, day = (int(group) for group in match.groups())
    try:
        return (calendar.timegm(datetime.date(year, month, day).timetuple()) + 86_400) * 1_000_000_000
    except ValueError:
        return None


def decimal(value: str) -> Decimal:
    """A FIX Price or Qty (already checked by `valid`) as an exact Decimal."""
    try:
        return Decimal(value)
    except InvalidOperation:
        raise FieldError(INCORRECT_DATA_FORMAT, f"{value!r} is not a decimal number") from None


# ---------------------------------------------------------------- encoding

_stamp_second = _stamp_milli = -1
_stamp_text = _stamp_milli_text = ""


def timestamp(now: float | None = None) -> str:
    """``now`` (default: the clock) as a UTCTimestamp with milliseconds."""
    global _stamp_second, _stamp_text, _stamp_milli, _stamp_milli_text
    milli = int((time.time() if now is None else now) * 1000)
    if milli != _stamp_milli:
        second, rest = divmod(milli, 1000)
        if second != _stamp_second:
            _stamp_second, _stamp_text = second, time.strftime("%Y%m%d-%H:%M:%S", time.gmtime(second))
        _stamp_milli, _stamp_milli_text = milli, f"{_stamp_text}.{rest:03d}"
    return _stamp_milli_text


_nanos_second = _nanos_milli = -1
_nanos_text = _nanos_milli_text = ""


def nanos_timestamp(nanoseconds: int) -> str:
    """An exchange time (ns since the epoch) as a UTCTimestamp with milliseconds."""
    global _nanos_second, _nanos_text, _nanos_milli, _nanos_milli_text
    milli = nanoseconds // 1_000_000
    if milli != _nanos_milli:
        seconds, rest = divmod(milli, 1000)
        if seconds != _nanos_second:
            _nanos_second, _nanos_text = seconds, time.strftime("%Y%m%d-%H:%M:%S", time.gmtime(seconds))
        _nanos_milli, _nanos_milli_text = milli, f"{_nanos_text}.{rest:03d}"
    return _nanos_milli_text


def encode(msg_type: str, sender: str, target: str, seq: int, sending_time: str,
           fields: list[tuple[int, object]] | tuple = (), orig_sending_time: str | None = None) -> bytes:
    """A whole frame: header, ``fields`` in order, CheckSum; with ``orig_sending_time`` a
    possible duplicate (PossDupFlag=Y, OrigSendingTime) of a message sent before."""
    if orig_sending_time is not None:
        stamp = f"43=Y\x0152={sending_time}\x01122={orig_sending_time}\x01"
    else:
        stamp = f"52={sending_time}\x01"
    return framed(f"35={msg_type}\x0149={sender}\x0156={target}\x0134={seq}\x01{stamp}{fields_text(fields)}"
                  .encode("latin-1"))


def fields_text(fields: list[tuple[int, object]] | tuple) -> str:
    """``tag=value|`` of each field, in order."""
    return "".join([f"{tag}={value}\x01" for tag, value in fields])


def framed(body: bytes) -> bytes:
    """A whole frame around ``body`` (the fields from MsgType on, each ending in SOH): BeginString
    and BodyLength before it, CheckSum after it."""
    head = b"%s%d\x01%s" % (PREFIX, len(body), body)
    return b"%s10=%03d\x01" % (head, byte_sum(head) & 255)


def body_fields(message: Message) -> list[tuple[int, str]]:
    """A message's fields without the header's (for sending it again)."""
    return [(tag, value) for tag, value in message.fields if tag not in HEADER_TAGS]


def clean_text(text: str, limit: int = 400) -> str:
    """Text for a Text(58) field: no SOH, printable ASCII, at most ``limit`` characters."""
    if text.isascii() and text.isprintable():
        return text[:limit]
    return "".join(ch if " " <= ch <= "~" else "?" for ch in text)[:limit]
