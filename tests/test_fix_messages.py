"""The FIX gateway's wire format (`gateways.fix.messages`): framing, strict decoding, encoding,
checked against simplefix (an independent implementation) both ways and against random input."""

import re

import pytest
import simplefix
from hypothesis import given, settings
from hypothesis import strategies as st

from gateways.fix import messages as m


def simple(msg_type: str, fields, seq: int = 1, sender: str = "ALICE", target: str = "EXCHANGE") -> bytes:
    message = simplefix.FixMessage()
    message.append_pair(8, "FIX.4.4", header=True)
    message.append_pair(35, msg_type, header=True)
    message.append_pair(49, sender, header=True)
    message.append_pair(56, target, header=True)
    message.append_pair(34, seq, header=True)
    message.append_pair(52, "20260101-12:00:00.000", header=True)
    for tag, value in fields:
        message.append_pair(tag, value)
    return message.encode()


def framed(data: bytes, max_bytes: int = 65536) -> list[bytes]:
    framer = m.Framer(max_bytes)
    framer.feed(data)
    frames = []
    while (frame := framer.next()) is not None:
        frames.append(frame)
    return frames


ORDER = [(11, "o1"), (55, "ACME"), (54, "1"), (60, "20260101-12:00:00"), (38, "10"), (40, "2"), (44, "99.5")]


def test_a_simplefix_message_is_framed_and_decoded_field_for_field():
    frame = simple("D", ORDER, seq=7)
    assert framed(frame) == [frame]
    message = m.decode(frame)
    assert message.msg_type == "D" and message.seq == 7
    assert [(tag, value) for tag, value in message.fields if tag not in (49, 56, 34, 52)] == \
        [(tag, str(value)) for tag, value in ORDER]
    assert message.get(44) == "99.5" and 999 not in message


def test_what_the_gateway_encodes_simplefix_parses_with_the_same_checksum():
    frame = m.encode("8", "EXCHANGE", "ALICE", 12, "20260101-12:00:00.123", [(37, 5), (11, "o1"), (58, "a b=c")])
    parser = simplefix.FixParser()
    parser.append_buffer(frame)
    parsed = parser.get_message()
    assert parsed.get(35) == b"8" and parsed.get(34) == b"12" and parsed.get(58) == b"a b=c"
    body = frame[: frame.rindex(b"10=")]
    assert parsed.get(10) == b"%03d" % (sum(body) % 256)
    assert parsed.get(9) == str(len(body) - len(b"8=FIX.4.4\x019=") - len(parsed.get(9)) - 1).encode()
    assert m.decode(frame).get(58) == "a b=c"


def test_a_resent_message_carries_possdup_and_its_original_sending_time():
    frame = m.encode("8", "EXCHANGE", "ALICE", 3, "20260101-12:00:05.000", [(11, "x")],
                     orig_sending_time="20260101-12:00:00.000")
    message = m.decode(frame)
    assert message.get(43) == "Y" and message.get(122) == "20260101-12:00:00.000"
    assert m.body_fields(message) == [(11, "x")]


def test_frames_arriving_byte_by_byte_and_several_at_once():
    frames = [simple("0", [], seq=n) for n in range(1, 4)]
    stream = b"".join(frames)
    framer = m.Framer(65536)
    out = []
    for byte in stream:
        framer.feed(bytes([byte]))
        while (frame := framer.next()) is not None:
            out.append(frame)
    assert out == frames
    assert framed(stream) == frames


@pytest.mark.parametrize("data, words", [
    (b"hello world", "expected a message beginning 8=FIX.4.4"),
    (b"8=FIX.4.2\x019=5\x01", "expected a message beginning 8=FIX.4.4"),
    (b"8=FIX.4.4\x019=abc\x01", "BodyLength(9) is not a positive number"),
    (b"8=FIX.4.4\x019=123456789012", "BodyLength(9) is not a number"),
    (b"8=FIX.4.4\x019=007\x01", "BodyLength(9) is not a positive number"),
])
def test_garbage_before_or_instead_of_a_header_is_garbled(data, words):
    with pytest.raises(m.Garbled, match=re.escape(words)):
        framed(data)


def test_a_wrong_checksum_is_garbled_and_names_both_sums():
    frame = simple("0", [])
    wrong = frame[:-4] + (b"%03d" % ((int(frame[-4:-1]) + 1) % 256)) + b"\x01"
    with pytest.raises(m.Garbled, match=r"CheckSum\(10\) is \d{3} but the message sums to \d{3}"):
        framed(wrong)


def test_a_wrong_body_length_is_garbled():
    frame = simple("0", [(112, "abc")])
    longer = frame.replace(b"\x019=", b"\x019=1", 1)  # BodyLength 10x too long: the trailer is not where it says
    with pytest.raises(m.Garbled):
        framed(longer + b"x" * 2000, max_bytes=1 << 20)
    start = frame.index(b"9=") + 2
    end = frame.index(b"\x01", start)
    shorter = frame[:start] + str(int(frame[start:end]) - 3).encode() + frame[end:]
    with pytest.raises(m.Garbled, match="does not end where CheckSum"):
        framed(shorter)


def test_a_message_over_the_limit_is_refused_from_its_body_length_before_its_body_arrives():
    framer = m.Framer(1024)
    framer.feed(b"8=FIX.4.4\x019=99999999\x0135=D\x01")
    with pytest.raises(m.TooLarge, match="over the limit of 1024"):
        framer.next()


@pytest.mark.parametrize("field, reason, tag", [
    ((38, "ten"), m.INCORRECT_DATA_FORMAT, 38),
    ((44, "1e5"), m.INCORRECT_DATA_FORMAT, 44),
    ((60, "2026-01-01 12:00"), m.INCORRECT_DATA_FORMAT, 60),
    ((54, "Z"), m.VALUE_OUT_OF_RANGE, 54),
    ((59, "9"), m.VALUE_OUT_OF_RANGE, 59),
    ((40, "22"), m.INCORRECT_DATA_FORMAT, 40),
    ((11, ""), m.TAG_WITHOUT_VALUE, 11),
    ((55, "BOLT"), m.TAG_APPEARS_TWICE, 55),
])
def test_fields_of_the_wrong_type_or_value_are_field_errors_with_the_reject_reason(field, reason, tag):
    fields = [field if old == field[0] and reason != m.TAG_APPEARS_TWICE else (old, value) for old, value in ORDER]
    if field not in fields:
        fields.append(field)
    frame = simple("D", fields)
    with pytest.raises(m.FieldError) as caught:
        m.decode(frame)
    assert (caught.value.reason, caught.value.tag) == (reason, tag)
    assert caught.value.message.seq == 1 and caught.value.message.msg_type == "D"


def test_a_tag_that_is_not_a_number_is_an_invalid_tag_number():
    frame = simple("D", ORDER)
    bad = frame.replace(b"\x0111=o1", b"\x0111=o1\x01x9=1")
    bad = bad.replace(b"\x019=%d" % (len(frame) - 0), b"")  # re-frame by hand below
    body = bad[bad.index(b"35="): bad.rindex(b"10=")]
    head = b"8=FIX.4.4\x019=%d\x01" % len(body) + body
    fixed = head + b"10=%03d\x01" % (sum(head) % 256)
    with pytest.raises(m.FieldError) as caught:
        m.decode(fixed)
    assert caught.value.reason == m.INVALID_TAG_NUMBER


def test_required_tags_and_repeating_groups():
    frame = simple("V", [(262, "r1"), (263, "1"), (264, 0), (267, 2), (269, "0"), (269, "1"), (146, 2), (55, "ACME"),
                         (55, "BOLT")])
    message = m.decode(frame)
    assert message.groups(267, 269, frozenset({269})) == [{269: "0"}, {269: "1"}]
    assert message.groups(146, 55, frozenset({55})) == [{55: "ACME"}, {55: "BOLT"}]
    with pytest.raises(m.FieldError) as caught:
        message.require(262, 265)
    assert (caught.value.reason, caught.value.tag) == (m.REQUIRED_TAG_MISSING, 265)
    wrong = m.decode(simple("V", [(262, "r1"), (263, "1"), (264, 0), (267, 3), (269, "0"), (269, "1"), (146, 1),
                                  (55, "ACME")]))
    with pytest.raises(m.FieldError) as caught:
        wrong.groups(267, 269, frozenset({269}))
    assert caught.value.reason == m.INCORRECT_NUM_IN_GROUP
    twice = m.decode(simple("D", ORDER))
    with pytest.raises(m.FieldError):
        m.check_fields(m.Message("D", twice.fields + [(38, "5")]))


def test_a_data_field_may_hold_soh_by_its_length():
    frame = simple("A", [(98, 0), (108, 30), (95, 5), (96, "a\x01b\x01c")])
    message = m.decode(frame)
    assert message.get(96) == "a\x01b\x01c" and message.get(108) == "30"


def test_timestamps():
    assert m.parse_timestamp("20260101-00:00:00") == 1767225600
    assert m.parse_timestamp("20260101-00:00:00.5") == 1767225600.5
    assert m.parse_timestamp("20261301-00:00:00") is None
    assert m.parse_timestamp("20260101-24:00:00") is None
    assert m.parse_timestamp(m.timestamp(1767225600.25)) == 1767225600.25


def test_text_for_the_wire_has_no_soh():
    assert m.clean_text("a\x01b\nc" + "x" * 500) == "a?b?c" + "x" * 395


tags = st.integers(1, 9999).filter(lambda tag: tag not in (8, 9, 10, 35) and tag not in m.TYPES
                                    and tag not in m.HEADER_TAGS
                                    and tag not in m.DATA_FIELDS and tag not in m.DATA_FIELDS.values())
values = st.text(st.characters(min_codepoint=32, max_codepoint=126), min_size=1, max_size=20)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(tags, values), max_size=20, unique_by=lambda pair: pair[0]))
def test_any_fields_round_trip(fields):
    frame = m.encode("D", "A", "B", 5, "20260101-00:00:00.000", fields)
    assert framed(frame) == [frame]
    message = m.decode(frame)
    assert m.body_fields(message) == [(tag, value) for tag, value in fields]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300), st.integers(0, 3))
def test_random_bytes_are_garbled_or_field_errors_never_anything_else(data, where):
    good = simple("D", ORDER)
    stream = [data, good + data, data + good, good[:40] + data + good[40:]][where]
    framer = m.Framer(4096)
    framer.feed(stream)
    try:
        while (frame := framer.next()) is not None:
            try:
                m.decode(frame)
            except m.FieldError:
                pass
    except m.Garbled:
        pass


def outcome(decoder, frame: bytes):
    """What ``decoder`` makes of ``frame``: its MsgType and fields, or the error (its class, reason and tag)."""
    try:
        message = decoder(frame)
    except m.FieldError as exc:
        return ("FieldError", exc.reason, exc.tag)
    except m.Garbled as exc:
        return ("Garbled", str(exc))
    return (message.msg_type, message.fields)


def field_by_field(frame: bytes) -> m.Message:
    start = frame.index(b"\x01", len(m.PREFIX)) + 1
    return m._decode_field_by_field(frame, start, len(frame) - m.TRAILER_BYTES)


typed_values = st.one_of(
    st.sampled_from(["0", "1", "2", "3", "007", "01", "00", "-0", "-1", "1.", ".5", "-.5", "1.2.3", "1e5", "", " ",
                     "Y", "N", "y", "²", "\xb9", "9" * 18, "9" * 19, "9" * 20, "1." + "0" * 31,
                     "20260101-12:00:00", "20260101-12:00:00.1234567891", "20261301-12:00:00", "20260132-00:00:00",
                     "20260101-24:00:00", "20260101-23:59:60.5", "20260101-12:00", "A", "I", "ZZ"]),
    st.text(st.characters(min_codepoint=32, max_codepoint=255), max_size=6))
typed_tags = st.sampled_from(sorted(m.TYPES))


@settings(max_examples=400, deadline=None)
@given(st.lists(st.tuples(typed_tags, typed_values), max_size=6), st.sampled_from(["D", "V", "A", "8", "ZZ"]))
def test_the_common_case_reader_agrees_with_the_field_by_field_reader(extra, msg_type):
    """`decode` reads most messages with two regular expressions; whatever it reads, reading the same
    frame field by field (and checking in order) gives the same fields or the same error."""
    fields = [(tag, value) for tag, value in ORDER + extra if tag not in (9, 10, 35)]
    body = "".join(f"{tag}={value}\x01" for tag, value in
                   [(35, msg_type), (49, "A"), (56, "B"), (34, 5), (52, "20260101-00:00:00.000"), *fields])
    frame = m.framed(body.encode("latin-1"))
    assert outcome(m.decode, frame) == outcome(field_by_field, frame)


def test_the_byte_sum_is_the_sum_of_the_bytes_at_any_length():
    binary = b"\xff" * 700 + bytes(range(256)) * 9
    ascii_text = b"\x7f" * 600
    for data in (binary, ascii_text):
        for length in (0, 1, 255, 256, 257, 511, 512, 513, 600, 2000, len(data)):
            assert m.byte_sum(data[:length]) == sum(data[:length])
            assert m.byte_sum(bytearray(data[:length])) == sum(data[:length])


def test_frames_takes_every_whole_frame_and_garbage_after_them_is_garbled_at_the_next_call():
    frames = [simple("0", [], seq=n) for n in range(1, 4)]
    framer = m.Framer(65536)
    framer.feed(b"".join(frames) + frames[0][:20])
    assert framer.frames() == frames and framer.frames() == []
    framer.feed(frames[0][20:] + b"garbage")
    assert framer.frames() == [frames[0]]
    with pytest.raises(m.Garbled, match="expected a message beginning"):
        framer.frames()


def test_the_order_kinds_tags_decode_and_their_values_are_checked():
    kinds = ORDER + [(18, "6 E"), (99, "98.75"), (111, "2"), (126, "20261203-10:00:00.123456789"), (2964, "4")]
    message = m.decode(simple("D", kinds))
    assert (message.get(18), message.get(126), message.get(2964)) == ("6 E", "20261203-10:00:00.123456789", "4")
    with pytest.raises(m.FieldError) as raised:
        m.decode(simple("D", ORDER + [(2964, "5")]))
    assert (raised.value.reason, raised.value.tag) == (m.VALUE_OUT_OF_RANGE, 2964)
    with pytest.raises(m.FieldError) as raised:
        m.decode(simple("D", ORDER + [(126, "20261203-25:00:00")]))
    assert (raised.value.reason, raised.value.tag) == (m.INCORRECT_DATA_FORMAT, 126)


def test_expiry_times_are_exact_nanoseconds():
    second = 1_796_292_000  # 2026-12-03 10:00:00 UTC
    assert m.timestamp_nanos("20261203-10:00:00") == second * 10**9
    assert m.timestamp_nanos("20261203-10:00:00.5") == second * 10**9 + 500_000_000
    assert m.timestamp_nanos("20261203-10:00:00.123456789") == second * 10**9 + 123_456_789
    assert m.expire_date_nanos("20261203") == (second - 10 * 3600 + 86_400) * 10**9  # the midnight after it
    assert m.expire_date_nanos("20261340") is None and m.expire_date_nanos("2026123") is None
