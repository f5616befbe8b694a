"""The translator reads a plain OBX (no repetition, escape or subcomponent character) from its raw
fields, for speed: it must read exactly what the reader's accessors read."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from lisguard.hl7v2.clinical import _obx, _obx_generic, _obx_plain
from lisguard.hl7v2.reader import parse

HEADER = "MSH|^~\\&|LAB|HOSP|LISGUARD|HOSP|20260301080000||ORU^R01|C1|P|2.5.1\r"
# anything but the field, repetition, escape and subcomponent characters and line ends
TEXT = st.text(alphabet=st.sampled_from(list("aZk09 .:+-<>/*()^")), max_size=12)
TYPES = st.sampled_from(["NM", "ST", "TX", "FT", "CE", "CWE", "CNE", "SN", "st ", "", "XYZ"])


@settings(max_examples=300, deadline=None)
@given(
    set_id=TEXT,
    value_type=TYPES,
    code=TEXT,
    value=TEXT,
    flags=TEXT,
    status=TEXT,
    time=st.sampled_from(["", "20260301", "202603010830", "20260301083015.12+0100", "junk"]),
    trailing=st.integers(min_value=0, max_value=16),
)
def test_plain_and_generic_reads_agree(
    set_id: str,
    value_type: str,
    code: str,
    value: str,
    flags: str,
    status: str,
    time: str,
    trailing: int,
) -> None:
    fields = [set_id, value_type, code, "", value, "u", "r", flags, "", "", status, "", "", time]
    obx = "OBX|" + "|".join(fields[: max(1, trailing)] if trailing < 14 else fields)
    seg = parse(HEADER + obx).segments[1]
    plain = seg.plain_fields()
    assert plain is not None
    assert _obx_plain(plain, seg.encoding.component) == _obx_generic(seg)
    assert _obx(seg) == _obx_generic(seg)


def test_a_segment_with_repetitions_escapes_or_subcomponents_is_not_plain() -> None:
    for obx in (
        "OBX|1|CE|890-4^Antibody screen^LN||POS~NEG",
        "OBX|1|ST|X^Y^L||TYPE \\T\\ SCREEN",
        "OBX|1|ST|X&1^Y^L||a",
    ):
        seg = parse(HEADER + obx).segments[1]
        assert seg.plain_fields() is None
        assert _obx(seg) == _obx_generic(seg)
    seg = parse(HEADER + "OBX|1|CE|890-4^Antibody screen^LN||POS^Positive^L").segments[1]
    assert _obx(seg).values == ("POS", "Positive")
