"""store/postgres/routing.py: what the alert write answered, kept in step with routing's own
buffered writes (rows stand in for the lisguard_lead and snoozes rows the server returns)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from lisguard.store.postgres.routing import RoutingBuffer

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
PAIR = ("MRN1^HOSP", "bb-serology")


def lead(alert_id: str, count: int = 1, pair: tuple[str, str] = PAIR) -> tuple[Any, ...]:
    # ALERT_COLUMNS (16), then seq, patient_key, rule
    row: list[Any] = [None] * 19
    row[4], row[6], row[17], row[18] = alert_id, count, *pair
    return tuple(row)


def snooze(snooze_id: int, expires: datetime, pair: tuple[str, str] = PAIR) -> tuple[Any, ...]:
    return (snooze_id, *pair, "why", "jsmith", T0, expires, None, None)


def test_the_view_follows_the_units_collapses_and_hold_backs() -> None:
    buffer = RoutingBuffer()
    buffer.learn(T0, [PAIR], None, [lead("new"), lead("old", count=3)])
    view = buffer.view(*PAIR)
    assert view is not None and view.snooze is None and view.at == T0
    assert [(r[4], n) for r, n in view.leads] == [("new", 1), ("old", 3)]

    assert buffer.collapse("new", "old", T0) == 4  # "new" leads no more, "old" counts it
    view = buffer.view(*PAIR)
    assert view is not None and [(r[4], n) for r, n in view.leads] == [("old", 4)]
    buffer.hold_back("other", 7)
    buffer.add_outbox("old", ["hl7", "webhook"], T0)
    assert buffer.pending
    holds, held_by, folds, leads, folded_at, queued, channels, _ = buffer.take()
    assert (holds, held_by, folds, leads, folded_at) == (["other"], [7], ["new"], ["old"], [T0])
    assert (queued, channels) == (["old", "old"], ["hl7", "webhook"])
    assert not buffer.pending and buffer.take() == ([],) * 8


def test_a_lead_not_answered_is_the_databases_to_count() -> None:
    buffer = RoutingBuffer()
    buffer.learn(T0, [PAIR], None, [lead("new")])
    assert buffer.collapse("new", "elsewhere", T0) is None
    assert not buffer.pending  # the desk writes that one itself


def test_the_snooze_in_force_is_the_one_expiring_last_and_each_pair_has_its_own() -> None:
    other = ("MRN2^HOSP", "bb-serology")
    buffer = RoutingBuffer()
    rows = [snooze(1, T0 + timedelta(hours=1)), snooze(2, T0 + timedelta(hours=5))]
    buffer.learn(T0, [PAIR, other], rows, [lead("a", pair=other)])
    view = buffer.view(*PAIR)
    assert view is not None and view.snooze[0] == 2 and view.leads == []
    view = buffer.view(*other)
    assert view is not None and view.snooze is None and [r[4] for r, _ in view.leads] == ["a"]
    assert buffer.view("MRN3^HOSP", "bb-serology") is None  # not answered: read the database


def test_forgetting_keeps_the_buffered_writes() -> None:
    buffer = RoutingBuffer()
    buffer.learn(T0, [PAIR], None, [lead("new"), lead("old")])
    buffer.collapse("new", "old", T0)
    buffer.forget()  # another statement ran: the answer may be stale, the writes are not
    assert buffer.view(*PAIR) is None
    assert buffer.pending and buffer.take()[2] == ["new"]
