"""lisguard.hl7v2.datatypes.parse_ts: HL7 DTM/TS -> naive wall-clock datetime."""

from __future__ import annotations

from datetime import datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lisguard.hl7v2 import reader
from lisguard.hl7v2.datatypes import parse_ts


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2024", datetime(2024, 1, 1)),
        ("202403", datetime(2024, 3, 1)),
        ("20240302", datetime(2024, 3, 2)),
        ("2024030208", datetime(2024, 3, 2, 8)),
        ("202403020815", datetime(2024, 3, 2, 8, 15)),
        ("20240302081530", datetime(2024, 3, 2, 8, 15, 30)),
        ("20240302081530.1", datetime(2024, 3, 2, 8, 15, 30, 100_000)),
        ("20240302081530.12", datetime(2024, 3, 2, 8, 15, 30, 120_000)),
        ("20240302081530.655", datetime(2024, 3, 2, 8, 15, 30, 655_000)),
        ("20240302081530.1234", datetime(2024, 3, 2, 8, 15, 30, 123_400)),
        ("20240302081530.123456", datetime(2024, 3, 2, 8, 15, 30, 123_456)),
        # the offset is read and dropped: the sender's wall clock, naive
        ("20240302081530-0500", datetime(2024, 3, 2, 8, 15, 30)),
        ("20240302081530.655-0500", datetime(2024, 3, 2, 8, 15, 30, 655_000)),
        ("202110201126+0215", datetime(2021, 10, 20, 11, 26)),
        ("20240302+0000", datetime(2024, 3, 2)),
        ("2024+0100", datetime(2024, 1, 1)),
        # a whole legacy TS field: "^precision" ignored
        ("20240302081530^S", datetime(2024, 3, 2, 8, 15, 30)),
        ("202403^M", datetime(2024, 3, 1)),
        ("  20240302 ", datetime(2024, 3, 2)),
        ("20240229", datetime(2024, 2, 29)),
    ],
)
def test_parse_ts(value: str, expected: datetime) -> None:
    result = parse_ts(value)
    assert result == expected
    assert result is not None and result.tzinfo is None


@pytest.mark.parametrize(
    "value",
    [
        "",
        " ",
        "^S",
        '""',
        "0000",  # year 0
        "202",
        "20240",  # odd length
        "2024030",
        "202403020",
        "20241301",  # month 13
        "20230229",  # not a leap year
        "20240230",
        "20240302240000",  # hour 24
        "20240302086000",  # minute 60
        "20240302081560",  # second 60
        "20240302081530.",  # fraction without digits
        "20240302081530.1234567",
        "2024030208.5",  # fraction before seconds
        "20240302081530-05",  # short offset
        "20240302081530+05:00",
        "20240302081530Z",
        "2024-03-02",
        "2024-03-02T08:15:30",
        "20240302 081530",
        "２０２４",  # non-ASCII digits
        "abcd",
        "2024030208153O",  # letter O for zero
    ],
)
def test_parse_ts_unreadable(value: str) -> None:
    assert parse_ts(value) is None


def test_parse_ts_is_reexported_by_the_reader() -> None:
    assert reader.parse_ts is parse_ts


@settings(max_examples=300, deadline=None, database=None)
@given(
    st.one_of(
        st.text(max_size=30),
        st.text(alphabet="0123456789.+-^ ", max_size=30),
    )
)
def test_parse_ts_never_raises(value: str) -> None:
    result = parse_ts(value)
    assert result is None or (isinstance(result, datetime) and result.tzinfo is None)
