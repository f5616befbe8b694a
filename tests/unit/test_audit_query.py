"""How the manager's filters are read, and the percentile the daily summary uses."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from lisguard.web.audit_query import BadQuery, parse_filters, parse_time
from lisguard.web.reports import percentile


def test_a_date_as_the_end_includes_that_whole_day() -> None:
    assert parse_time("to", "2026-03-01", end=True) == datetime(2026, 3, 2, tzinfo=UTC)
    assert parse_time("from", "2026-03-01", end=False) == datetime(2026, 3, 1, tzinfo=UTC)


def test_date_times_become_utc() -> None:
    assert parse_time("from", "2026-03-01T08:30:00+02:00", end=False) == datetime(
        2026, 3, 1, 6, 30, tzinfo=UTC
    )
    assert parse_time("from", "2026-03-01T08:30:00.250Z", end=False) == datetime(
        2026, 3, 1, 8, 30, 0, 250000, tzinfo=UTC
    )
    assert parse_time("from", "2026-03-01T08:30", end=False) == datetime(
        2026, 3, 1, 8, 30, tzinfo=UTC
    )


def test_filters_make_the_store_query() -> None:
    f = parse_filters(
        {
            "kind": "alert., message.received",
            "user": "tech-1",
            "patient": " MRN1^H ",
            "rule": "bb-serology",
            "before_seq": "40",
            "limit": "25",
            "from": "",
        }
    )
    q = f.query
    assert q.kinds == ("alert.", "message.received")
    assert (q.actor, q.patient, q.rule, q.before_seq, q.limit) == (
        "tech-1",
        "MRN1^H",
        "bb-serology",
        40,
        25,
    )
    assert q.since is None  # an empty field is no filter
    # paging and page size are not filters: the export's audit event leaves them out
    assert f.given == {
        "kind": "alert., message.received",
        "user": "tech-1",
        "patient": "MRN1^H",
        "rule": "bb-serology",
    }


@pytest.mark.parametrize(
    "params",
    [
        {"kind": "ALERT"},
        {"kind": "alert..raised"},
        {"kind": "alert.raised'--"},
        {"before_seq": "-1"},
        {"limit": "1001"},
        {"from": "2026-03-01T25:00"},
        {"from": "2026-03-02", "to": "2026-03-01"},
        {"patinet": "x"},
    ],
)
def test_mistakes_are_refused(params: dict[str, str]) -> None:
    with pytest.raises(BadQuery):
        parse_filters(params)


def test_percentile_interpolates_between_ranks() -> None:
    assert percentile([], 0.5) is None
    assert percentile([7.0], 0.9) == 7.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 0.5) == 2.5
    assert percentile([10.0, 0.0, 20.0, 30.0, 40.0], 0.9) == pytest.approx(36.0)
    assert percentile([5.0, 840.0], 0.9) == pytest.approx(756.5)
