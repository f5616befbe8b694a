"""store.escalations on every backend (memory, SQLite, PostgreSQL), with times the test sets:
which alerts are due (HIGH, open, lead, production, old enough), once each, with their outbox
rows and audit events in the same transaction; and on PostgreSQL several stores (replicas'
pools) escalating the same alerts at the same moment, each alert once."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from lisguard.domain.alerts import Alert, Audience, Recommendation, RuleId, Severity, alert_id
from lisguard.domain.facts import MessageKey
from lisguard.store import open_store
from lisguard.store.base import NewMessage, Store
from lisguard.store.escalation import ESCALATED
from lisguard.store.postgres import PostgresStore
from lisguard.store.postgres.grants import apply_grants
from tests.e2e.serve_process import PG_DSN, fresh_schema, pg_reachable, with_query

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
AFTER = timedelta(minutes=15)
CHANNEL = "escalation.webhook"


async def skip_without_pg() -> None:
    reason = await pg_reachable(PG_DSN)
    if reason is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL at LISGUARD_TEST_PG_DSN unreachable: {reason}")
        pytest.skip(f"PostgreSQL at LISGUARD_TEST_PG_DSN unreachable: {reason}")


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    async def opened(url: str) -> AsyncIterator[Store]:
        s = open_store(url)
        await s.open()
        try:
            yield s
        finally:
            await s.close()

    if request.param == "memory":
        async for s in opened("memory://"):
            yield s
    elif request.param == "sqlite":
        async for s in opened(f"sqlite:///{tmp_path / 'lisguard.db'}"):
            yield s
    else:
        await skip_without_pg()
        async with fresh_schema(PG_DSN, "lisguard_escalation") as (schema, _admin):
            async for s in opened(with_query(PG_DSN, search_path=schema)):
                yield s


def make_alert(
    patient: str, *, severity: Severity = Severity.HIGH, processing_id: str = "P"
) -> Alert:
    key = f"{patient}^HOSP"
    return Alert(
        id=alert_id(key, RuleId.BB_SEROLOGY, "ORD1", processing_id),
        rule=RuleId.BB_SEROLOGY,
        patient=patient,
        patient_authority="HOSP",
        message=f"M-{patient}",
        order="ORD1",
        severity=severity,
        recommendations=(Recommendation.DTT_TREATED_REAGENT_CELLS,),
        text="Use DTT-treated reagent cells",
        location="4W",
        processing_id=processing_id,
        audience=Audience.BLOOD_BANK,
    )


async def store_alerts(store: Store, alerts: list[Alert], at: datetime) -> None:
    async with store.transaction() as tx:
        message_id = await tx.add_message(
            NewMessage(
                raw=b"MSH|",
                content_hash="0" * 64,
                received_at=at,
                ack="MSA|AA",
                outcome="AA",
                key=MessageKey("LAB", "HOSP", f"C-{alerts[0].patient}"),
            )
        )
        await tx.add_alerts(alerts, message_id=message_id, created_at=at)


async def escalate(store: Store, now: datetime, limit: int = 100) -> list[str]:
    found = await store.escalations.escalate_due(
        now=now,
        raised_before=now - AFTER,
        channels_for=lambda a: (CHANNEL,) if a.patient != "NOCHANNEL" else (),
        after_minutes=AFTER.total_seconds() / 60,
        limit=limit,
    )
    return [f.alert.id for f in found]


async def escalation_events(store: Store) -> list[tuple[str, dict[str, object]]]:
    events = await store.list_audit(limit=100_000)
    return [(e.event.subject, e.event.detail) for e in events if e.event.kind == ESCALATED]


async def test_only_high_open_production_leads_past_the_limit_escalate_once(store: Store) -> None:
    due = make_alert("DUE")
    quiet = make_alert("NOCHANNEL")
    medium = make_alert("MEDIUM", severity=Severity.MEDIUM)
    test = make_alert("TEST", processing_id="T")
    acked = make_alert("ACKED")
    snoozed = make_alert("SNOOZED")
    await store_alerts(store, [due], T0)
    await store_alerts(store, [quiet], T0 + timedelta(seconds=1))
    for alert in (medium, test, acked, snoozed):
        await store_alerts(store, [alert], T0)
    await store.desk.acknowledge(acked.id, by="jo", at=T0 + timedelta(minutes=1))
    await store.desk.snooze_alert(
        snoozed.id, by="jo", at=T0, expires_at=T0 + timedelta(hours=4), reason="IFE reflexed"
    )
    repeat_lead = make_alert("REPEAT")
    await store_alerts(store, [repeat_lead], T0)
    repeat = repeat_lead.model_copy(update={"id": "repeat-of-" + repeat_lead.id, "order": "O2"})
    await store_alerts(store, [repeat], T0)
    async with store.transaction() as tx:
        await store.desk.collapse(tx, repeat.id, repeat_lead.id, T0)
    late = make_alert("LATE")
    await store_alerts(store, [late], T0 + timedelta(minutes=10))

    assert await escalate(store, T0 + AFTER - timedelta(seconds=1)) == []
    # oldest first (same time: in the order stored); collapsed, snoozed, acknowledged,
    # medium, test and too recent alerts are not due
    first = await escalate(store, T0 + AFTER + timedelta(seconds=1))
    assert first == [due.id, repeat_lead.id, quiet.id]
    assert await escalate(store, T0 + AFTER + timedelta(seconds=2)) == []  # once
    assert await escalate(store, T0 + timedelta(minutes=26)) == [late.id]
    assert await escalate(store, T0 + timedelta(days=2)) == []

    events = await escalation_events(store)
    assert sorted(s for s, _ in events) == sorted([due.id, repeat_lead.id, quiet.id, late.id])
    detail = dict(events)[due.id]
    assert detail["open_minutes"] == 15.02 and detail["severity"] == "high"
    assert detail["channels"] == [CHANNEL] and dict(events)[quiet.id]["channels"] == []
    assert [d.channel for d in await store.desk.deliveries(due.id)] == [CHANNEL]
    assert await store.desk.deliveries(quiet.id) == []
    escalation = await store.escalations.get(due.id)
    assert escalation is not None and escalation.channels == (CHANNEL,)
    assert escalation.escalated_at == T0 + AFTER + timedelta(seconds=1)
    marks = await store.escalations.marks([due.id, medium.id, acked.id, late.id])
    assert set(marks) == {due.id, late.id}

    still = [e.alert.id for e in await store.escalations.still_open()]
    assert still == [due.id, repeat_lead.id, quiet.id, late.id]
    await store.desk.acknowledge(due.id, by="jo", at=T0 + timedelta(minutes=30))
    await store.desk.resolve(late.id, by="jo", at=T0 + timedelta(minutes=30), resolution="done")
    assert {e.alert.id for e in await store.escalations.still_open()} == {
        repeat_lead.id,
        quiet.id,
    }
    assert await store.escalations.get(due.id) is not None  # acknowledged: still on record


async def test_a_backlog_is_taken_in_batches_oldest_first(store: Store) -> None:
    alerts = [make_alert(f"P{i:02d}") for i in range(7)]
    for i, alert in enumerate(alerts):
        await store_alerts(store, [alert], T0 + timedelta(seconds=i))
    now = T0 + timedelta(hours=1)
    assert await escalate(store, now, limit=3) == [a.id for a in alerts[:3]]
    assert await escalate(store, now, limit=3) == [a.id for a in alerts[3:6]]
    assert await escalate(store, now, limit=3) == [alerts[6].id]
    assert len(await escalation_events(store)) == 7


@pytest.mark.postgres
async def test_replicas_escalating_at_once_escalate_each_alert_once() -> None:
    """Four stores (four pools, as four replicas have) on one schema escalate 60 due alerts at
    the same moment, again and again: each alert once, one audit event and one outbox row each.
    """
    await skip_without_pg()
    async with fresh_schema(PG_DSN, "lisguard_escalation_race") as (schema, admin):
        stores = [
            PostgresStore(PG_DSN, max_size=4, server_settings={"search_path": schema})
            for _ in range(4)
        ]
        for s in stores:
            await s.open()
        try:
            alerts = [make_alert(f"R{i:02d}") for i in range(60)]
            for alert in alerts:
                await store_alerts(stores[0], [alert], T0)
            now = T0 + timedelta(hours=1)
            rounds = []
            for _ in range(3):
                rounds += await asyncio.gather(*(escalate(s, now, limit=7) for s in stores))
            while any(r := await asyncio.gather(*(escalate(s, now, limit=7) for s in stores))):
                rounds += r
            claimed = [alert_id for batch in rounds for alert_id in batch]
            print("escalated per store:", [sum(len(b) for b in rounds[i::4]) for i in range(4)])
            assert sorted(claimed) == sorted(a.id for a in alerts)  # all, none twice
            events = await escalation_events(stores[0])
            assert sorted(s for s, _ in events) == sorted(a.id for a in alerts)
            outbox = await admin.fetchval(
                f'SELECT count(*) FROM "{schema}".outbox WHERE channel = $1', CHANNEL
            )
            assert outbox == 60
        finally:
            for s in stores:
                await s.close()


@pytest.mark.postgres
async def test_the_app_role_after_db_grants_can_escalate() -> None:
    """`lisguard db grants` covers the escalations table: the service's role, which owns
    nothing, records escalations, their outbox rows and audit events."""
    await skip_without_pg()
    tag = uuid.uuid4().hex[:10]
    app, retention = f"lg_app_{tag}", f"lg_retention_{tag}"
    async with fresh_schema(PG_DSN, "lisguard_escalation_grants") as (schema, admin):
        for role in (app, retention):
            await admin.execute(f'CREATE ROLE "{role}" LOGIN')
        try:
            owner = PostgresStore(PG_DSN, server_settings={"search_path": schema})
            await owner.open()  # migrations, as the schema's owner
            try:
                await apply_grants(owner, app, retention)
            finally:
                await owner.close()
            as_app = PostgresStore(
                PG_DSN.replace("postgres@", f"{app}@", 1), server_settings={"search_path": schema}
            )
            await as_app.open()
            try:
                alert = make_alert("GRANTED")
                await store_alerts(as_app, [alert], T0)
                assert await escalate(as_app, T0 + timedelta(hours=1)) == [alert.id]
                assert [s for s, _ in await escalation_events(as_app)] == [alert.id]
            finally:
                await as_app.close()
        finally:
            await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = ANY($1)",
                [app, retention],
            )
            for role in (app, retention):
                await admin.execute(f'DROP OWNED BY "{role}"')
                await admin.execute(f'DROP ROLE "{role}"')
