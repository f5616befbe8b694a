"""The audit hash is over canonical detail text; the store hashes the JSON it stores directly
when that text is already canonical. A verifier rebuilds the text from the stored JSON, so the
shortcut must never change a hash."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from lisguard.domain.audit import (
    ChainLink,
    canonical_detail,
    canonical_time,
    event_hash,
    reads_back_the_same,
    verify_chain,
)
from lisguard.store.base import AuditEvent
from lisguard.store.codec import chain_rows, dump_json, load_detail


class Colour(StrEnum):
    RED = "red"


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.datetimes(timezones=st.just(UTC)),
    st.dates(),
    st.just(Colour.RED),
    st.frozensets(st.integers(-50, 50), max_size=4),
    st.binary(max_size=6),
)
keys = st.one_of(
    st.text(max_size=6),
    st.integers(-20, 20),
    st.just(Colour.RED),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.lists(inner, max_size=4).map(tuple),
        st.dictionaries(keys, inner, max_size=4),
    ),
    max_leaves=20,
)
# details as services write them: text keys all the way down
text_keyed = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(keys, values, max_size=5))
def test_the_shortcut_is_taken_only_when_the_text_reads_back_the_same(detail: dict[Any, Any]):
    try:
        stored = dump_json(detail)
    except TypeError:  # mixed key types cannot be sorted: not a detail anyone writes
        return
    rebuilt = canonical_detail(load_detail(stored))
    if reads_back_the_same(detail):
        assert stored == rebuilt


def test_number_keys_are_rebuilt_not_trusted():
    detail = {"counts": {10: "a", 9: "b"}}
    stored = dump_json(detail)
    assert not reads_back_the_same(detail)
    assert stored != canonical_detail(load_detail(stored))  # the case the check exists for


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.dictionaries(st.text(max_size=5), text_keyed, max_size=4)
        | st.dictionaries(st.integers(0, 30), st.text(max_size=3), max_size=3),
        min_size=1,
        max_size=4,
    )
)
def test_stored_rows_verify_as_a_chain(details: list[dict[Any, Any]]):
    at = datetime(2026, 11, 22, 3, 0, tzinfo=UTC)
    events = [AuditEvent("test.event", at, subject=str(i), detail=d) for i, d in enumerate(details)]
    rows = chain_rows(None, events, lambda t: t)
    links = [
        ChainLink(i + 1, r[0], r[1], r[2], r[3], load_detail(r[4]), r[5], r[6])
        for i, r in enumerate(rows)
    ]
    assert verify_chain(links).ok
    for link in links:
        expected = event_hash(
            link.prev_hash, link.at, link.kind, link.actor, link.subject, link.detail
        )
        assert link.hash == expected


def test_floats_and_dates_read_back_the_same():
    detail = {"x": math.inf, "y": -0.0, "z": 1e-7, "d": date(2026, 1, 2), "n": float("nan")}
    stored = dump_json(detail)
    assert reads_back_the_same(detail)
    assert stored == canonical_detail(load_detail(stored))


@settings(max_examples=300, deadline=None)
@given(st.datetimes(timezones=st.sampled_from([UTC, None])))
def test_canonical_time_is_the_documented_layout(at: datetime):
    aware = at if at.tzinfo else at.replace(tzinfo=UTC)
    assert canonical_time(at) == aware.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.dictionaries(st.text(max_size=5), text_keyed, max_size=4), min_size=1, max_size=4)
)
def test_keyed_rows_verify_with_their_key_only(details: list[dict[Any, Any]]):
    at = datetime(2026, 11, 22, 3, 0, tzinfo=UTC)
    key, other = b"k" * 32, b"o" * 32
    events = [AuditEvent("test.event", at, subject=str(i), detail=d) for i, d in enumerate(details)]
    rows = chain_rows(None, events, lambda t: t, key)
    links = [
        ChainLink(i + 1, r[0], r[1], r[2], r[3], load_detail(r[4]), r[5], r[6])
        for i, r in enumerate(rows)
    ]
    assert all(link.hash and link.hash.startswith("hmac:") for link in links)
    assert verify_chain(links, key=key).ok
    assert not verify_chain(links, key=other).ok
    assert not verify_chain(links).ok  # a keyed hash cannot be checked without the key
