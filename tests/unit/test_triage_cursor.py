"""Page cursors of GET /api/alerts (lisguard.web.queue): opaque, round-tripping the place in the
triage order exactly, refused when tampered with or made for another query, and - read on the
memory store - stable while alerts arrive between pages."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta

import pytest

from lisguard.domain.alerts import Alert, EvidenceItem, Recommendation, RuleId, Severity, alert_id
from lisguard.domain.facts import MessageKey
from lisguard.domain.knowledge import load_knowledge_base
from lisguard.domain.triage import QueueKey, TransfusionOrders
from lisguard.settings import DeskSettings
from lisguard.store.base import NewMessage
from lisguard.store.desk import AlertQuery
from lisguard.store.memory import MemoryStore
from lisguard.web.queue import BadCursor, Cursor, decode_cursor, encode_cursor, read_page

T0 = datetime(2026, 12, 3, 12, 0, 0, 123456, tzinfo=UTC)
KEY = QueueKey(3, 1, T0 - timedelta(hours=2), T0, "0f3a9c")


def test_a_cursor_round_trips_its_place_exactly() -> None:
    cursor = Cursor(KEY, T0 - timedelta(days=7), "abcd")
    text = encode_cursor(cursor)
    assert "=" not in text and "/" not in text and "+" not in text  # safe in a query string
    assert decode_cursor(text) == cursor
    assert decode_cursor(encode_cursor(Cursor(KEY, None, "f"))).before is None


@pytest.mark.parametrize(
    "text",
    [
        "",
        "not base64 !",
        base64.urlsafe_b64encode(b"[1, 2]").decode(),
        base64.urlsafe_b64encode(b'{"v": 1, "k": [3, 1], "b": null, "f": "x"}').decode(),
        base64.urlsafe_b64encode(
            b'{"v": 1, "k": [3, 1, "yesterday", "today", "id"], "b": null, "f": "x"}'
        ).decode(),
    ],
)
def test_a_cursor_not_made_here_is_refused(text: str) -> None:
    with pytest.raises(BadCursor):
        decode_cursor(text)


def test_a_cursor_of_another_version_is_refused_with_a_reason() -> None:
    body = json.loads(base64.urlsafe_b64decode(encode_cursor(Cursor(KEY, None, "f")) + "=="))
    body["v"] = 99
    text = base64.urlsafe_b64encode(json.dumps(body).encode()).decode()
    with pytest.raises(BadCursor, match="another version"):
        decode_cursor(text)


def screen(patient: str, minutes: int, test: str = "ANTIBODY SCREEN") -> Alert:
    return Alert(
        id=alert_id(patient, RuleId.BB_SEROLOGY, "O1"),
        rule=RuleId.BB_SEROLOGY,
        patient=patient,
        message=f"M-{patient}",
        order="O1",
        severity=Severity.HIGH,
        recommendations=(Recommendation.DTT_TREATED_REAGENT_CELLS,),
        text="text",
        event_time=T0 - timedelta(minutes=minutes),
        order_text=test,
        evidence=(EvidenceItem(message=f"M-{patient}", location="OBR-4", text=test),),
    )


async def add(store: MemoryStore, *alerts: Alert) -> None:
    async with store.transaction() as tx:
        message_id = await tx.add_message(
            NewMessage(
                raw=b"MSH|...",
                content_hash=f"h-{alerts[0].id}",
                received_at=T0,
                ack="MSA|AA",
                outcome="AA",
                key=MessageKey("LAB", "HOSP", f"C-{alerts[0].id}"),
            )
        )
        await tx.add_alerts(alerts, message_id=message_id, created_at=T0)


async def test_pages_on_the_memory_store_skip_and_repeat_nothing() -> None:
    store = MemoryStore()
    await store.open()
    await add(store, *(screen(f"P{i:02}", minutes=10 * i) for i in range(10)))
    orders = TransfusionOrders(load_knowledge_base())
    query = AlertQuery(limit=3, transfusion=orders)
    now, desk = T0 + timedelta(minutes=1), DeskSettings()
    first = await read_page(store.desk, query, None, now, desk)
    assert [r.alert.patient for r in first.records] == ["P00", "P01", "P02"]
    assert first.total == 10 and first.next_cursor
    # arriving meanwhile: a crossmatch (sorts first) and an older screen (sorts last)
    await add(store, screen("XM", minutes=500, test="CROSSMATCH"))
    await add(store, screen("LATE", minutes=900))
    seen = [r.alert.patient for r in first.records]
    cursor: str | None = first.next_cursor
    while cursor:
        page = await read_page(store.desk, query, cursor, now, desk)
        seen += [r.alert.patient for r in page.records]
        cursor = page.next_cursor
    assert seen == [f"P{i:02}" for i in range(10)] + ["LATE"]
    with pytest.raises(BadCursor, match="other filters"):
        await read_page(
            store.desk, AlertQuery(limit=3, rule="spep-ife"), first.next_cursor, now, desk
        )
