"""lisguard.hl7v2.reader: bytes -> text -> messages -> segments -> values."""

from __future__ import annotations

import pickle

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lisguard.hl7v2.escapes import DEFAULT_ENCODING, Encoding, unescape
from lisguard.hl7v2.framing import _split_lines
from lisguard.hl7v2.reader import (
    HL7ReadError,
    Message,
    Segment,
    decode_bytes,
    parse,
    split_messages,
)

MSH = "MSH|^~\\&|LAB|HOSP|LISGUARD|HOSP|20240301081500||ORU^R01^ORU_R01|CTRL0001|P|2.5.1"
PID = "PID|1||MRN001^^^HOSP^MR~ALT9^^^OTHER^PI||DOE^JANE^Q||19600101|F"
OBX = "OBX|1|ST|890-4^Antibody screen^LN||Positive \\T\\ panreactive|||A"
TEXT = "\r".join([MSH, PID, OBX])


def _msh(**fields: str) -> str:
    """An MSH with some fields (by HL7 number, 3..) replaced."""
    parts = MSH.split("|")
    for key, value in fields.items():
        number = int(key.removeprefix("f"))
        while len(parts) <= number - 1:
            parts.append("")
        parts[number - 1] = value
    return "|".join(parts)


# ------------------------------------------------------------------------------------ encoding


def test_default_encoding_four_characters() -> None:
    msg = parse(TEXT)
    assert msg.encoding == Encoding("|", "^", "~", "\\", "&", None)
    assert msg.encoding == DEFAULT_ENCODING
    assert msg.encoding.msh2 == "^~\\&"


def test_five_encoding_characters_give_the_truncation_character() -> None:
    msg = parse("MSH|^~\\&#|A|B|||20240301||ORU^R01|1|P|2.7\rOBX|1|ST|X||9\\P\\9#")
    assert msg.encoding.truncation == "#"
    assert msg.encoding.msh2 == "^~\\&#"
    obx = msg.segments[1]
    assert obx.get(5) == "9#9#"  # the truncation char itself is data to the reader
    assert msg.segments[0].get(2) == "^~\\&#"
    assert msg.segments[0].get(3) == "A"


def test_custom_delimiters() -> None:
    text = "MSH#$%@!#LAB#HOSP#####ORU$R01#C1#P#2.5\rPID#1##A$B!C%D$E##X@F@Y@S@Z@T@W@R@V@E@U"
    msg = parse(text)
    assert msg.encoding == Encoding("#", "$", "%", "@", "!", None)
    msh, pid = msg.segments
    assert msh.get(1) == "#"
    assert msh.get(2) == "$%@!"
    assert msh.get(3) == "LAB"
    assert msg.message_type == "ORU^R01"  # always joined with '^'
    assert pid.get(3, 2, 2) == "C"
    assert pid.get(3, 1, 1, 2) == "D"
    assert pid.get(3, 2, 1, 2) == "E"
    assert pid.repetitions(3) == ["A$B!C", "D$E"]
    assert pid.get(5) == "X#Y$Z!W%V@U"
    assert msg.to_er7() == text


# ------------------------------------------------------------------------------------- escapes


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("a\\F\\b", "a|b"),
        ("a\\S\\b", "a^b"),
        ("a\\T\\b", "a&b"),
        ("a\\R\\b", "a~b"),
        ("a\\E\\b", "a\\b"),
        ("\\E\\F\\E\\", "\\F\\"),  # an escaped escape does not start a sequence
        ("\\H\\bold\\N\\ text", "bold text"),
        ("\\X41\\\\X42\\", "AB"),
        ("caf\\XC3A9\\", "café"),  # UTF-8 bytes
        ("caf\\XE9\\", "café"),  # not UTF-8: latin-1
        ("\\X\\", ""),
        ("a\\XZZ\\b", "a\\XZZ\\b"),  # not hex: literal
        ("a\\X414\\b", "a\\X414\\b"),  # odd digits: literal
        ("line 1\\.br\\line 2", "line 1\nline 2"),
        ("a\\.sp\\b", "a\nb"),
        ("a\\.sp2\\b", "a\n\nb"),
        ("a\\.sk3\\b", "a   b"),
        ("a\\.sk\\b", "a b"),
        ("\\.in+4\\a\\.ti-2\\b", "ab"),
        ("\\.ce\\Title", "\nTitle"),
        ("\\.fi\\a\\.nf\\b", "ab"),
        ("a\\Zlocal\\b", "ab"),
        ("\\C2842\\abc\\C2B41\\", "abc"),
        ("\\M2442\\abc", "abc"),
        ("C:\\temp\\file", "C:\\temp\\file"),  # unknown sequence: literal
        ("a\\Fb", "a\\Fb"),  # unterminated: literal
        ("trailing\\", "trailing\\"),
        ("a\\\\b", "a\\\\b"),  # empty sequence: literal
        ("x\\.br2\\y", "x\\.br2\\y"),
        ("\\Q\\", "\\Q\\"),
        ("plain", "plain"),
        ("", ""),
    ],
)
def test_unescape(raw: str, expected: str) -> None:
    assert unescape(raw, DEFAULT_ENCODING) == expected


def test_truncation_escape_without_truncation_character() -> None:
    assert unescape("9\\P\\", DEFAULT_ENCODING) == "9#"
    assert unescape("9\\P\\", Encoding(truncation="!")) == "9!"


def test_formatting_counts_are_capped() -> None:
    assert unescape("\\.sk999999999\\", DEFAULT_ENCODING) == " " * 64
    assert unescape("\\.sp999999999\\", DEFAULT_ENCODING) == "\n" * 64


def test_unescape_with_the_message_delimiters() -> None:
    enc = Encoding("#", "$", "%", "@", "!", None)
    assert unescape("@F@@S@@T@@R@@E@\\F\\", enc) == "#$!%@\\F\\"


def test_values_are_unescaped_only_after_splitting() -> None:
    seg = parse("MSH|^~\\&|A\rNTE|1||a\\S\\b^c\\T\\d&e\\R\\f~g\\F\\h").segments[1]
    assert seg.get(3) == "a^b"
    assert seg.get(3, 2) == "c&d"
    assert seg.get(3, 2, 2) == "e~f"
    assert seg.get(3, 1, 1, 2) == "g|h"
    assert seg.field_raw(3) == "a\\S\\b^c\\T\\d&e\\R\\f~g\\F\\h"
    assert seg.repetitions(3) == ["a\\S\\b^c\\T\\d&e\\R\\f", "g\\F\\h"]
    # components(): each component unescaped whole, subcomponents left joined by '&'
    assert seg.components(3) == ["a^b", "c&d&e~f"]
    assert seg.components(3, 2) == ["g|h"]


# ---------------------------------------------------------------------------- segments, fields


def test_fields_components_subcomponents_repetitions() -> None:
    msg = parse(TEXT)
    pid = msg.segment("PID")
    assert pid is not None
    assert pid.name == "PID"
    assert pid.get(1) == "1"
    assert pid.get(3) == "MRN001"
    assert pid.get(3, 4) == "HOSP"
    assert pid.get(3, 5) == "MR"
    assert pid.get(3, 1, 1, 2) == "ALT9"
    assert pid.get(3, 4, 1, 2) == "OTHER"
    assert pid.get(5, 2) == "JANE"
    assert pid.repetitions(3) == ["MRN001^^^HOSP^MR", "ALT9^^^OTHER^PI"]
    assert pid.components(3, 2) == ["ALT9", "", "", "OTHER", "PI"]
    assert pid.field_raw(5) == "DOE^JANE^Q"
    assert pid.field_count() == 8


def test_subcomponents() -> None:
    seg = parse("MSH|^~\\&|A\rORC|NW|P1^EPC|||||12&lb^BID&12:30").segments[1]
    assert seg.get(7) == "12"
    assert seg.get(7, 1, 2) == "lb"
    assert seg.get(7, 2, 2) == "12:30"
    assert seg.get(7, 1, 3) == ""


def test_absent_values_read_empty() -> None:
    msg = parse(TEXT)
    pid = msg.segments[1]
    assert pid.get(2) == ""  # empty field
    assert pid.get(99) == ""  # past the last field
    assert pid.get(1, 2) == ""  # no component 2 in a plain field
    assert pid.get(1, 1, 2) == ""
    assert pid.get(1, 1, 1, 2) == ""
    assert pid.get(5, 9) == ""  # past the last component
    assert pid.get(3, 1, 1, 3) == ""  # past the last repetition
    assert pid.get(3, 1, 5) == ""  # past the last subcomponent
    assert pid.field_raw(2) == ""
    assert pid.field_raw(99) == ""
    assert pid.repetitions(2) == []
    assert pid.repetitions(99) == []
    assert pid.components(2) == []
    assert pid.components(3, 3) == []


def test_trailing_empty_fields_are_counted() -> None:
    seg = parse("MSH|^~\\&|A\rPV1|1|I|||").segments[1]
    assert seg.field_count() == 5
    assert seg.get(5) == ""
    assert parse("MSH|^~\\&|A\rZZ1").segments[1].field_count() == 0


def test_hl7_null_is_returned_as_is() -> None:
    seg = parse('MSH|^~\\&|A\rPID|1||""').segments[1]
    assert seg.get(3) == '""'


def test_positions_are_one_based() -> None:
    pid = parse(TEXT).segments[1]
    for call in (
        lambda: pid.get(0),
        lambda: pid.get(1, 0),
        lambda: pid.get(1, 1, 0),
        lambda: pid.get(1, 1, 1, 0),
        lambda: pid.field_raw(0),
        lambda: pid.repetitions(-1),
        lambda: pid.components(3, 0),
    ):
        with pytest.raises(ValueError, match="1"):
            call()


def test_msh_numbering() -> None:
    msh = parse(TEXT).segments[0]
    assert msh.get(1) == "|"
    assert msh.get(2) == "^~\\&"  # raw: not unescaped, not split
    assert msh.field_raw(2) == "^~\\&"
    assert msh.repetitions(2) == ["^~\\&"]
    assert msh.components(2) == ["^~\\&"]
    assert msh.components(1) == ["|"]
    assert msh.get(2, 2) == ""
    assert msh.get(3) == "LAB"
    assert msh.get(7) == "20240301081500"
    assert msh.get(9, 3) == "ORU_R01"
    assert msh.field_count() == 12


def test_message_conveniences() -> None:
    msg = parse(TEXT)
    assert msg.message_type == "ORU^R01"
    assert msg.control_id == "CTRL0001"
    assert msg.version == "2.5.1"
    assert msg.processing_id == "P"
    assert [s.name for s in msg.segments] == ["MSH", "PID", "OBX"]
    assert "ORU^R01" in repr(msg)


def test_message_conveniences_read_first_components() -> None:
    msg = parse(_msh(f9="ACK", f11="T^A", f12="2.4^USA^2.4") + "\rMSA|AA|1")
    assert msg.message_type == "ACK"
    assert msg.processing_id == "T"
    assert msg.version == "2.4"


def test_message_conveniences_absent() -> None:
    msg = parse("MSH|^~\\&")
    assert (msg.message_type, msg.control_id, msg.version, msg.processing_id) == ("", "", "", "")
    assert msg.segments[0].field_count() == 2


def test_message_type_unescaped() -> None:
    assert parse(_msh(f9="Z\\T\\1^A01")).message_type == "Z&1^A01"


def test_segment_lookup() -> None:
    msg = parse("\r".join([MSH, PID, "OBX|1", "NTE|1", "OBX|2"]))
    first = msg.segment("OBX")
    assert first is not None
    assert first.get(1) == "1"
    assert [s.get(1) for s in msg.segments_named("OBX")] == ["1", "2"]
    assert msg.segment("ZZZ") is None
    assert msg.segments_named("ZZZ") == []
    assert isinstance(first, Segment)
    assert first.to_er7() == "OBX|1"


def test_to_er7_gives_the_text_back() -> None:
    text = "\r".join([MSH, PID, OBX, "NTE|1||trailing space ", "ZX1|a|~|^&|"])
    assert parse(text).to_er7() == text


# ---------------------------------------------------------------------- line ends, BOM, space


@pytest.mark.parametrize("terminator", ["\r", "\n", "\r\n"])
def test_segment_terminators(terminator: str) -> None:
    text = terminator.join([MSH, PID, OBX]) + terminator
    msg = parse(text)
    assert [s.name for s in msg.segments] == ["MSH", "PID", "OBX"]
    assert msg.to_er7() == TEXT
    assert split_messages(text) == [TEXT]


def test_mixed_terminators_and_blank_lines() -> None:
    text = MSH + "\r\n\r\n" + PID + "\n\n   \n" + OBX + "\r\r"
    assert split_messages(text) == [TEXT]
    assert parse(text).to_er7() == TEXT


def test_bom_and_leading_whitespace() -> None:
    assert parse("\ufeff" + TEXT).to_er7() == TEXT
    assert parse("  \r\n\t" + TEXT).to_er7() == TEXT
    assert split_messages("\ufeff" + TEXT) == [TEXT]
    assert split_messages("\ufeff\n  " + MSH + "\n  " + PID + "\n\t" + OBX) == [TEXT]


# ---------------------------------------------------------------------------- decode_bytes


def test_decode_strips_utf8_bom() -> None:
    assert decode_bytes(b"\xef\xbb\xbf" + TEXT.encode()) == TEXT


def test_decode_latin1_declared_in_msh18() -> None:
    text = _msh(f18="8859/1") + "\rPID|1||X||M\xfcller^Jos\xe9"
    raw = text.encode("latin-1")
    assert b"\xfc" in raw
    decoded = decode_bytes(raw)
    assert decoded == text
    assert parse(decoded).segments[1].get(5) == "Müller"


def test_decode_utf8_declared_in_msh18() -> None:
    text = _msh(f18="UNICODE UTF-8") + "\rPID|1||X||Müller^José^€"
    assert decode_bytes(text.encode("utf-8")) == text
    text = _msh(f18="UNICODE") + "\rPID|1||X||Müller"
    assert decode_bytes(text.encode("utf-8")) == text


def test_decode_8859_15() -> None:
    text = _msh(f18="8859/15") + "\rNTE|1||5 €"
    assert decode_bytes(text.encode("iso8859_15")) == text


def test_decode_msh18_first_repetition_case_and_space() -> None:
    text = _msh(f18=" 8859/1 ~UNICODE UTF-8") + "\rPID|1||X||M\xfcller"
    assert decode_bytes(text.encode("latin-1")) == text
    text = _msh(f18="unicode utf-8") + "\rPID|1||X||Müller"
    assert decode_bytes(text.encode("utf-8")) == text


def test_decode_without_msh18() -> None:
    assert decode_bytes((TEXT + "\rNTE|1||é").encode("utf-8")) == TEXT + "\rNTE|1||é"
    # not UTF-8: cp1252 (the euro sign is 0x80 there), and latin-1 for bytes cp1252 lacks
    assert decode_bytes(TEXT.encode() + b"\rNTE|1||\xe9 \x80") == TEXT + "\rNTE|1||é €"
    assert decode_bytes(TEXT.encode() + b"\rNTE|1||\x81") == TEXT + "\rNTE|1||\x81"


def test_decode_wrong_declaration_falls_back() -> None:
    text = _msh(f18="ASCII") + "\rPID|1||X||Müller"
    assert decode_bytes(text.encode("utf-8")) == text  # ASCII declared, UTF-8 sent
    text = _msh(f18="UNICODE UTF-8") + "\rPID|1||X||M\xfcller"
    assert decode_bytes(text.encode("latin-1")) == text  # UTF-8 declared, latin-1 sent
    text = _msh(f18="EBCDIC-ROT13") + "\rPID|1||X||Müller"
    assert decode_bytes(text.encode("utf-8")) == text  # unknown label


def test_decode_utf16_with_bom() -> None:
    assert decode_bytes(TEXT.encode("utf-16")) == TEXT


@pytest.mark.parametrize("raw", [b"", b"MSH", b"MSH|", b"\xff\xfe\x00", b"\x00\xff" * 9, b"MSH\r"])
def test_decode_never_raises(raw: bytes) -> None:
    assert isinstance(decode_bytes(raw), str)


# ------------------------------------------------------------------------- split_messages


def test_split_one_and_many() -> None:
    second = TEXT.replace("CTRL0001", "CTRL0002")
    assert split_messages(TEXT) == [TEXT]
    assert split_messages(TEXT + "\r" + second) == [TEXT, second]
    assert split_messages(TEXT + "\n\n" + second + "\n") == [TEXT, second]


def test_split_batch() -> None:
    second = TEXT.replace("CTRL0001", "CTRL0002")
    body = "\n".join(
        [
            "FHS|^~\\&|LAB|HOSP|||20240301",
            "BHS|^~\\&|LAB|HOSP|||20240301",
            TEXT.replace("\r", "\n"),
            second.replace("\r", "\n"),
            "BTS|2",
            "BHS|^~\\&|LAB|HOSP|||20240301",
            "BTS|0",
            "FTS|2",
        ]
    )
    assert split_messages(body) == [TEXT, second]


def test_split_empty_batch_and_empty_text() -> None:
    assert split_messages("FHS|^~\\&\rBHS|^~\\&\rBTS|0\rFTS|1\r") == []
    assert split_messages("") == []
    assert split_messages(" \r\n \n") == []


def test_split_mllp_frames() -> None:
    second = TEXT.replace("CTRL0001", "CTRL0002")
    framed = f"\x0b{TEXT}\r\x1c\r\x0b{second}\r\x1c\r"
    assert split_messages(framed) == [TEXT, second]
    assert split_messages(f"\x0b{TEXT}\x1c\r\x0b{second}\x1c\r") == [TEXT, second]


def test_split_ignores_junk_before_the_first_msh_and_after_a_batch() -> None:
    second = TEXT.replace("CTRL0001", "CTRL0002")
    assert split_messages("garbage line\nmore\n" + TEXT) == [TEXT]
    text = f"{TEXT}\rBTS|1\rnoise\r{second}"
    assert split_messages(text) == [TEXT, second]


def test_split_without_msh_keeps_the_text_for_parse_to_reject() -> None:
    [text] = split_messages("PID|1\nOBX|1")
    with pytest.raises(HL7ReadError, match="MSH"):
        parse(text)


# -------------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("text", "code", "segment", "field", "reason"),
    [
        ("", "100", None, None, "empty message"),
        (" \r\n ", "100", None, None, "empty message"),
        ("\ufeff", "100", None, None, "empty message"),
        ("PID|1||X", "100", None, None, "starts with an MSH segment"),
        ("msh|^~\\&|A", "100", None, None, "starts with an MSH segment"),
        ("MSH", "101", "MSH", None, "too short"),
        ("MSH\rPID|1", "101", "MSH", None, "too short"),
        ("MSH|", "101", "MSH", 2, "missing encoding characters"),
        ("MSH||A|B", "101", "MSH", 2, "missing encoding characters"),
        ("MSH|^~\\|A", "102", "MSH", 2, "missing encoding characters"),
        ("MSH|^~\\&#$|A", "102", "MSH", 2, "at most 5"),
        ("MSHA^~\\&A", "102", "MSH", 1, "letter, digit or whitespace"),
        ("MSH1^~\\&1", "102", "MSH", 1, "letter, digit or whitespace"),
        ("MSH ^~\\& ", "102", "MSH", 1, "letter, digit or whitespace"),
        ("MSH|^~A&|X", "102", "MSH", 2, "letter, digit or whitespace"),
        ("MSH|^~ &|X", "102", "MSH", 2, "letter, digit or whitespace"),
        ("MSH|^^\\&|X", "102", "MSH", 2, "duplicate delimiter"),
        ("MSH|^~\\&~|X", "102", "MSH", 2, "duplicate delimiter"),
        ("MSH|^~\\&\rpid|1", "100", None, None, "segment name"),
        ("MSH|^~\\&\rPI|1", "100", None, None, "segment name"),
        ("MSH|^~\\&\rP\u00cfD|1", "100", None, None, "segment name"),
        ("MSH|^~\\&\r1AB|1", "100", None, None, "segment name"),
        ("MSH|^~\\&\rPIDX|1", "100", "PID", None, "not followed by the field separator"),
        ("MSH|^~\\&\rPID^1", "100", "PID", None, "not followed by the field separator"),
        ("MSH|^~\\&\r PID|1", "100", None, None, "segment name"),
        ("MSH|^~\\&|A\rPID|1\rMSH|^~\\&|B", "100", "MSH", None, "second MSH"),
    ],
)
def test_parse_errors(
    text: str, code: str, segment: str | None, field: int | None, reason: str
) -> None:
    with pytest.raises(HL7ReadError) as caught:
        parse(text)
    error = caught.value
    assert reason in error.reason
    assert (error.code, error.segment, error.field) == (code, segment, field)
    assert reason in str(error)


def test_error_is_a_value_error_that_pickles() -> None:
    error = HL7ReadError("bad", code="102", segment="MSH", field=2)
    assert isinstance(error, ValueError)
    assert str(error) == "MSH-2: bad"
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.reason, copy.code, copy.segment, copy.field) == ("bad", "102", "MSH", 2)
    assert str(HL7ReadError("plain")) == "plain"
    assert HL7ReadError("plain").code == "100"


def test_segment_names_with_digits_and_empty_segments() -> None:
    msg = parse("MSH|^~\\&|A\rZ01|x\rIN1|1\rZZZ")
    assert [s.name for s in msg.segments] == ["MSH", "Z01", "IN1", "ZZZ"]
    assert isinstance(msg, Message)


# ------------------------------------------------------------------------------ properties


def _exercise(msg: Message) -> None:
    """Every accessor on every segment: none may raise."""
    str(msg)
    _ = (msg.message_type, msg.control_id, msg.version, msg.processing_id, msg.to_er7())
    for seg in msg.segments:
        count = seg.field_count()
        for position in range(1, count + 2):
            seg.field_raw(position)
            for rep in range(1, len(seg.repetitions(position)) + 2):
                seg.components(position, rep)
                for comp in (1, 2, 3):
                    for sub in (1, 2):
                        assert isinstance(seg.get(position, comp, sub, rep), str)


_HL7ISH = st.text(
    alphabet="MSHPIDOBX|^~\\&#$%!@ \r\n\ufeffFSTREXZ.br0123456789a\x0b\x1c", max_size=80
)

_SETTINGS = settings(
    max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)


@_SETTINGS
@given(st.one_of(st.text(max_size=80), _HL7ISH))
def test_parse_raises_only_hl7_read_error(tail: str) -> None:
    try:
        msg = parse("MSH" + tail)
    except HL7ReadError:
        return
    _exercise(msg)


@_SETTINGS
@given(st.one_of(st.binary(max_size=120), _HL7ISH.map(lambda t: t.encode("utf-8", "replace"))))
def test_bytes_pipeline_raises_only_hl7_read_error(raw: bytes) -> None:
    text = decode_bytes(raw)
    assert isinstance(text, str)
    for message in split_messages(text):
        try:
            msg = parse(message)
        except HL7ReadError:
            continue
        assert msg.to_er7() == message
        _exercise(msg)


@_SETTINGS
@given(st.text(max_size=60), st.sampled_from([DEFAULT_ENCODING, Encoding("#", "$", "%", "@", "!")]))
def test_unescape_never_raises(value: str, enc: Encoding) -> None:
    assert isinstance(unescape(value, enc), str)


# -- split_messages: the fast cut at MSH lines gives what the line-by-line reading gives

_PIECES = [
    "MSH|^~\\&|A|B|C|D|2026||ORU^R01|1|P|2.5.1",
    "PID|1||M1",
    "OBX|1|NM|X^Y||1",
    "MSHX|",
    "FHS|",
    "BHS|",
    "BTS|1",
    "FTS|1",
    "",
    " ",
    "  PID|2",
    "\t",
    "pid|lower",
    "1abc",
    "ZXY|custom",
    "OBX|1|TX|N||a MSH in the middle",
    "\ufeffMSH|^~\\&|",
]


_REGULAR = [p for p in _PIECES if p[:1].isupper() and p[:3] not in ("FHS", "BHS", "BTS", "FTS")]


@settings(max_examples=500, deadline=None)
@given(
    st.lists(st.sampled_from(_PIECES), max_size=12)
    | st.lists(st.sampled_from(_REGULAR), max_size=8).map(lambda r: [_PIECES[0], *r])
    | st.tuples(
        st.lists(st.sampled_from(_REGULAR), max_size=4),
        st.sampled_from(_PIECES),
        st.lists(st.sampled_from(_REGULAR), max_size=4),
    ).map(lambda t: [_PIECES[0], *t[0], t[1], *t[2]]),  # one odd line among regular ones
    st.sampled_from(["\r", "\n", "\r\n", "\x1c\r\x0b"]),
    st.sampled_from(["", "\r", "\n", "\r\n\r\n", "\x1c\r"]),
    st.sampled_from(["", "\ufeff", "\x0b"]),
)
def test_split_messages_fast_path_agrees_with_line_by_line(
    lines: list[str], newline: str, tail: str, head: str
) -> None:
    text = head + newline.join(lines) + tail
    assert split_messages(text) == _reference_split(text)


def _reference_split(text: str) -> list[str]:
    """The line-by-line reading alone (what split_messages did before its fast path)."""
    if text.startswith("\ufeff"):
        text = text[1:]
    text = text.replace("\x0b", "\r").replace("\x1c", "\r")
    if "\n" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
        return _split_lines(text.split("\n"))
    return _split_lines(text.split("\r"))


def test_msh_values_read_as_get_does_on_every_sample_and_corpus_message() -> None:
    from lisguard.intake import message_header
    from tests.conftest import SAMPLES, corpus_files

    checked = 0
    for path in [*sorted(SAMPLES.rglob("*.hl7")), *corpus_files()]:
        for text in split_messages(decode_bytes(path.read_bytes())):
            try:
                message = parse(text)
            except HL7ReadError:
                continue
            msh = message.segments[0]
            for number in range(0, msh.field_count() + 3):
                expected = msh.get(number) if number >= 1 else ""
                assert message.msh_value(number) == expected, (path.name, number)
            assert message.trigger == msh.get(9, 2)
            header = message_header(message)
            assert (header.sending_application, header.sending_facility) == (
                msh.field_raw(3),
                msh.field_raw(4),
            )
            assert (header.receiving_application, header.receiving_facility) == (
                msh.field_raw(5),
                msh.field_raw(6),
            )
            assert (header.control_id, header.processing_id, header.version) == (
                msh.get(10),
                msh.get(11),
                msh.get(12),
            )
            assert (header.accept_ack_type, header.application_ack_type) == (
                msh.get(15).strip(),
                msh.get(16).strip(),
            )
            checked += 1
    assert checked > 150


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.sampled_from(["A", "^", "~", "&", "\\T\\", "\\E\\", "", "x^y", "\\"]), max_size=6)
)
def test_msh_values_read_as_get_does_on_odd_fields(parts: list[str]) -> None:
    field = "".join(parts)
    message = parse(f"MSH|^~\\&|A|B|C|D|2026||ORU^R01|{field}|{field}|{field}")
    for number in range(1, 14):
        assert message.msh_value(number) == message.segments[0].get(number)
