"""The alert desk part of the Store contract (store.desk), on every backend: reviews
(acknowledge/resolve) with their audit events, snoozes, collapsed repeats, the outbox (claim,
lease, record, delivered once), and PostgreSQL's SKIP LOCKED claims across replicas."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from lisguard.domain.alerts import Alert, EvidenceItem, Recommendation, RuleId, Severity, alert_id
from lisguard.domain.facts import MessageKey
from lisguard.store.base import NewMessage, Store, StoreError
from lisguard.store.desk import AlertNotFound, AlertQuery, TransitionRefused

from .conftest import Backend, PostgresBackend

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
SAFETY = 20.0  # a test that misbehaves must not hang the suite; never an assertion


def alert(
    patient: str = "MRN1",
    order: str = "ORD1",
    *,
    rule: RuleId = RuleId.BB_SEROLOGY,
    severity: Severity = Severity.HIGH,
    location: str = "4W",
    recs: tuple[Recommendation, ...] = (Recommendation.DTT_TREATED_REAGENT_CELLS,),
) -> Alert:
    key = f"{patient}^HOSP"
    return Alert(
        id=alert_id(key, rule, order),
        rule=rule,
        patient=patient,
        patient_authority="HOSP",
        message=f"M-{order}",
        order=order,
        severity=severity,
        recommendations=recs,
        text="On daratumumab: use DTT-treated cells.",
        drugs=("daratumumab_iv",),
        event_time=datetime(2026, 3, 2, 7, 55),
        location=location,
        evidence=(EvidenceItem(message="RX1", location="RXA-5", text="DARZALEX"),),
    )


async def raise_alerts(
    store: Store, *alerts: Alert, at: datetime = T0, channels: tuple[str, ...] = ()
) -> None:
    """What the ingest transaction does: message, alerts, outbox rows - one commit."""
    async with store.transaction() as tx:
        message_id = await tx.add_message(
            NewMessage(
                raw=b"MSH|...",
                content_hash=f"h-{alerts[0].id}-{at.isoformat()}",
                received_at=at,
                ack="MSA|AA",
                outcome="AA",
                key=MessageKey("LAB", "HOSP", f"C-{alerts[0].id}-{at.timestamp()}"),
            )
        )
        await tx.add_alerts(alerts, message_id=message_id, created_at=at)
        for a in alerts:
            await store.desk.add_outbox(tx, a.id, channels, at)


async def kinds(store: Store) -> list[tuple[str, str, str]]:
    return [
        (e.event.kind, e.event.actor, e.event.subject)
        for e in await store.list_audit()
        if e.event.kind.startswith(("alert.", "snooze."))
    ]


# ---------------------------------------------------------------- schema


async def test_migration_0002_is_applied(db: Backend) -> None:
    store = db.make()
    await store.open()
    try:
        versions = await db.applied_versions()
        assert versions is None or 2 in versions
    finally:
        await store.close()


# ---------------------------------------------------------------- reviews


async def test_acknowledge_then_resolve_records_who_when_and_why(store: Store) -> None:
    a = alert()
    await raise_alerts(store, a)
    later = T0 + timedelta(minutes=5)

    acked = await store.desk.acknowledge(a.id, by="jsmith", at=later, note="calling pharmacy")
    assert (acked.status, acked.acknowledged_by, acked.ack_note) == (
        "acknowledged",
        "jsmith",
        "calling pharmacy",
    )
    assert acked.acknowledged_at == later
    assert (await store.get_alert(a.id)).status == "acknowledged"  # type: ignore[union-attr]

    done = await store.desk.resolve(
        a.id, by="mlee", at=later + timedelta(hours=1), resolution="not-applicable", reason="dup"
    )
    assert (done.status, done.resolved_by, done.resolution, done.resolution_reason) == (
        "resolved",
        "mlee",
        "not-applicable",
        "dup",
    )
    assert done.acknowledged_by == "jsmith"  # the acknowledgement stays on record
    fetched = await store.desk.get(a.id)
    assert fetched == done
    assert await kinds(store) == [
        ("alert.acknowledged", "jsmith", a.id),
        ("alert.resolved", "mlee", a.id),
    ]


async def test_refused_transitions_change_nothing(store: Store) -> None:
    a = alert()
    await raise_alerts(store, a)
    await store.desk.acknowledge(a.id, by="a", at=T0)
    with pytest.raises(TransitionRefused, match="acknowledged by a"):
        await store.desk.acknowledge(a.id, by="b", at=T0)
    await store.desk.resolve(a.id, by="a", at=T0, resolution="done")
    with pytest.raises(TransitionRefused, match="resolved"):
        await store.desk.resolve(a.id, by="b", at=T0, resolution="done")
    with pytest.raises(TransitionRefused):
        await store.desk.snooze_alert(a.id, by="b", at=T0, expires_at=T0, reason="x")
    with pytest.raises(AlertNotFound):
        await store.desk.acknowledge("nope", by="a", at=T0)
    record = await store.desk.get(a.id)
    assert record is not None and record.resolved_by == "a"
    assert [k for k, _, _ in await kinds(store)] == ["alert.acknowledged", "alert.resolved"]


# ---------------------------------------------------------------- snoozes


async def test_snooze_alert_holds_back_its_patient_and_rule_until_expiry(store: Store) -> None:
    a = alert()
    await raise_alerts(store, a)
    until = T0 + timedelta(hours=24)
    record, snooze = await store.desk.snooze_alert(
        a.id, by="jsmith", at=T0, expires_at=until, reason="on hold by clinic"
    )
    assert record.status == "snoozed" and record.snooze_id == snooze.id
    assert (snooze.patient_key, snooze.rule, snooze.created_by) == (
        "MRN1^HOSP",
        "bb-serology",
        "jsmith",
    )

    async with store.transaction() as tx:
        found = await store.desk.find_snooze(
            tx, "MRN1^HOSP", "bb-serology", T0 + timedelta(hours=1)
        )
        other_rule = await store.desk.find_snooze(tx, "MRN1^HOSP", "spep-ife", T0)
        expired = await store.desk.find_snooze(tx, "MRN1^HOSP", "bb-serology", until)
    assert found == snooze and other_rule is None and expired is None
    assert await store.desk.list_snoozes(active_at=T0) == [snooze]
    assert await store.desk.list_snoozes(patient_key="MRN2^HOSP") == []
    assert ("alert.snoozed", "jsmith", a.id) in await kinds(store)


async def test_lift_snooze(store: Store) -> None:
    snooze = await store.desk.add_snooze(
        "MRN1^HOSP", "spep-ife", by="a", at=T0, expires_at=T0 + timedelta(days=3), reason="r"
    )
    lifted = await store.desk.lift_snooze(snooze.id, by="b", at=T0 + timedelta(hours=1))
    assert (lifted.lifted_by, lifted.active(T0 + timedelta(hours=2))) == ("b", False)
    assert await store.desk.get_snooze(snooze.id) == lifted
    with pytest.raises(TransitionRefused, match="already lifted"):
        await store.desk.lift_snooze(snooze.id, by="b", at=T0 + timedelta(hours=2))
    with pytest.raises(AlertNotFound):
        await store.desk.lift_snooze(999, by="b", at=T0)
    assert [k for k, _, _ in await kinds(store)] == ["snooze.created", "snooze.lifted"]


# ---------------------------------------------------------------- collapse


async def test_collapse_links_a_repeat_to_its_lead_and_counts(store: Store) -> None:
    lead, repeat = alert(order="ORD1"), alert(order="ORD2")
    await raise_alerts(store, lead)
    await raise_alerts(store, repeat, at=T0 + timedelta(hours=1))
    async with store.transaction() as tx:
        leads = await store.desk.open_leads(tx, "MRN1^HOSP", "bb-serology", T0)
        assert [r.alert.id for r in leads] == [repeat.id, lead.id]  # newest first
        assert await store.desk.collapse(tx, repeat.id, lead.id, T0 + timedelta(hours=1)) == 2
    record = await store.desk.get(lead.id)
    assert record is not None and (record.repeat_count, record.last_repeat_at) == (
        2,
        T0 + timedelta(hours=1),
    )
    collapsed = await store.desk.get(repeat.id)
    assert collapsed is not None and (collapsed.status, collapsed.lead_id) == ("collapsed", lead.id)
    assert [r.alert.id for r in await store.desk.repeats(lead.id)] == [repeat.id]
    async with store.transaction() as tx:  # a repeat is never a lead; outside the window neither
        assert [
            r.alert.id for r in await store.desk.open_leads(tx, "MRN1^HOSP", "bb-serology", T0)
        ] == [lead.id]
        later = T0 + timedelta(minutes=1)
        assert await store.desk.open_leads(tx, "MRN1^HOSP", "bb-serology", later) == []
    await store.desk.resolve(lead.id, by="a", at=T0, resolution="done")
    async with store.transaction() as tx:  # a resolved lead takes no more repeats
        assert await store.desk.open_leads(tx, "MRN1^HOSP", "bb-serology", T0) == []


async def test_a_rolled_back_ingest_leaves_no_routing_behind(store: Store) -> None:
    lead, repeat = alert(order="ORD1"), alert(order="ORD2")
    await raise_alerts(store, lead, channels=("webhook",))
    with pytest.raises(RuntimeError):
        async with store.transaction() as tx:
            await store.desk.hold_back(tx, lead.id, 1)
            await store.desk.collapse(tx, lead.id, lead.id, T0)
            await store.desk.add_outbox(tx, lead.id, ("hl7",), T0)
            raise RuntimeError("the ingest failed after routing")
    record = await store.desk.get(lead.id)
    assert record is not None and (record.status, record.repeat_count) == ("open", 1)
    assert [d.channel for d in await store.desk.deliveries(lead.id)] == ["webhook"]
    assert await store.desk.get(repeat.id) is None


# ---------------------------------------------------------------- queries


async def test_search_puts_the_most_severe_first_then_the_newest(store: Store) -> None:
    old_high = alert("P1", severity=Severity.HIGH, location="4W")
    new_medium = alert("P2", rule=RuleId.SPEP_IFE, severity=Severity.MEDIUM, location="ONC")
    new_high = alert("P3", severity=Severity.HIGH, location="ONC")
    await raise_alerts(store, old_high, at=T0)
    await raise_alerts(store, new_medium, at=T0 + timedelta(hours=1))
    await raise_alerts(store, new_high, at=T0 + timedelta(hours=1))
    await store.desk.acknowledge(old_high.id, by="a", at=T0)

    ids = [r.alert.id for r in await store.desk.search(AlertQuery())]
    assert ids == [new_high.id, old_high.id, new_medium.id]
    newest = [r.alert.id for r in await store.desk.search(AlertQuery(order="newest"))]
    assert newest == [new_high.id, new_medium.id, old_high.id]
    only = await store.desk.search(
        AlertQuery(statuses=("open",), location="ONC", rule="bb-serology")
    )
    assert [r.alert.id for r in only] == [new_high.id]
    assert [r.alert.id for r in await store.desk.search(AlertQuery(patient="P2^HOSP"))] == [
        new_medium.id
    ]
    assert len(await store.desk.search(AlertQuery(limit=1))) == 1
    assert await store.desk.counts() == {"open": 2, "acknowledged": 1}
    assert await store.desk.locations() == ["4W", "ONC"]


# ---------------------------------------------------------------- outbox


async def claim(store: Store, channel: str = "webhook", *, now: datetime = T0, lease: int = 60):
    return await store.desk.claim(
        channel, now=now, due_before=now, lease_until=now + timedelta(seconds=lease), limit=10
    )


async def test_outbox_rows_are_one_per_alert_and_channel(store: Store) -> None:
    a = alert()
    await raise_alerts(store, a, channels=("webhook", "hl7"))
    async with store.transaction() as tx:  # a replay adds nothing
        await store.desk.add_outbox(tx, a.id, ("webhook", "hl7"), T0)
    deliveries = await store.desk.deliveries(a.id)
    assert [(d.channel, d.status, d.attempts) for d in deliveries] == [
        ("hl7", "pending", 0),
        ("webhook", "pending", 0),
    ]


async def test_backlog_counts_undelivered_rows_per_channel(store: Store) -> None:
    assert await store.desk.backlog() == {}
    a, b = alert(order="B1"), alert(order="B2")
    await raise_alerts(store, a, channels=("webhook", "hl7"))
    await raise_alerts(store, b, at=T0 + timedelta(minutes=5), channels=("webhook",))
    assert await store.desk.backlog() == {"webhook": (2, T0), "hl7": (1, T0)}
    [first, _] = await claim(store, now=T0 + timedelta(minutes=5))  # claimed: still pending
    assert first.alert_id == a.id
    assert (await store.desk.backlog())["webhook"] == (2, T0)
    assert await store.desk.record(first, outcome="delivered", at=T0 + timedelta(minutes=6))
    [hl7] = await claim(store, "hl7")
    assert await store.desk.record(hl7, outcome="failed", at=T0, error="HTTP 400")
    # delivered and given-up rows are no longer pending
    assert await store.desk.backlog() == {"webhook": (1, T0 + timedelta(minutes=5))}


async def test_claim_leases_a_row_and_counts_the_attempt(store: Store) -> None:
    a = alert()
    await raise_alerts(store, a, channels=("webhook",))
    first = await claim(store)
    assert [(i.alert_id, i.attempts) for i in first] == [(a.id, 1)]
    assert await claim(store, now=T0 + timedelta(seconds=30)) == []  # leased
    assert await claim(store, "hl7") == []  # other channel
    again = await claim(store, now=T0 + timedelta(seconds=61))  # lease ran out: a crashed worker
    assert [i.attempts for i in again] == [2]


async def test_retry_waits_for_its_time_and_delivered_is_final(store: Store) -> None:
    a = alert()
    await raise_alerts(store, a, channels=("webhook",))
    [item] = await claim(store)
    later = T0 + timedelta(seconds=10)
    assert await store.desk.record(
        item, outcome="retry", at=T0, error="HTTP 503", next_attempt_at=later
    )
    assert await claim(store, now=T0 + timedelta(seconds=5)) == []
    [item] = await claim(store, now=later)
    assert item.attempts == 2 and item.last_error == "HTTP 503"
    assert await store.desk.record(item, outcome="delivered", at=later)
    # a late worker holding an old claim cannot undo the delivery
    assert not await store.desk.record(item, outcome="retry", at=later, error="late")
    assert await claim(store, now=later + timedelta(days=1)) == []
    [row] = await store.desk.deliveries(a.id)
    assert (row.status, row.attempts, row.delivered_at, row.last_error) == (
        "delivered",
        2,
        later,
        "",
    )
    assert ("alert.delivered", "system", a.id) in await kinds(store)


async def test_failed_is_final_and_audited(store: Store) -> None:
    a = alert()
    await raise_alerts(store, a, channels=("hl7",))
    [item] = await claim(store, "hl7")
    assert await store.desk.record(item, outcome="failed", at=T0, error="AE bad PID")
    assert await claim(store, "hl7", now=T0 + timedelta(days=1)) == []
    [row] = await store.desk.deliveries(a.id)
    assert (row.status, row.last_error) == ("failed", "AE bad PID")
    audit = [e.event for e in await store.list_audit() if e.event.kind == "alert.delivery_failed"]
    assert audit[0].detail == {"channel": "hl7", "attempts": 1, "error": "AE bad PID"}


async def test_flush_claims_rows_before_their_retry_time(store: Store) -> None:
    a = alert()
    await raise_alerts(store, a, channels=("webhook",))
    [item] = await claim(store)
    await store.desk.record(item, outcome="retry", at=T0, next_attempt_at=T0 + timedelta(minutes=5))
    assert await claim(store) == []
    items = await store.desk.claim(
        "webhook", now=T0, due_before=T0 + timedelta(days=1), lease_until=T0, limit=5
    )
    assert [i.alert_id for i in items] == [a.id]


# ---------------------------------------------------------------- PostgreSQL: several replicas


@pytest.mark.postgres
async def test_replicas_never_claim_the_same_row(pg: PostgresBackend) -> None:
    stores = [pg.make(), pg.make()]
    for s in stores:
        await s.open()
    try:
        alerts = [alert(f"P{i}") for i in range(40)]
        for a in alerts:
            await raise_alerts(stores[0], a, channels=("webhook",))

        async def drain(store: Store) -> list[str]:
            got: list[str] = []
            while items := await store.desk.claim(
                "webhook", now=T0, due_before=T0, lease_until=T0 + timedelta(hours=1), limit=1
            ):
                got += [i.alert_id for i in items]
            return got

        async with asyncio.timeout(SAFETY):
            first, second = await asyncio.gather(drain(stores[0]), drain(stores[1]))
        assert sorted(first + second) == sorted(a.id for a in alerts)  # each once
        assert not set(first) & set(second)
    finally:
        for s in stores:
            await s.close()


async def test_desk_errors_are_store_errors() -> None:
    # the service answers StoreError subclasses; the API maps these two to 404 and 409
    assert issubclass(AlertNotFound, StoreError) and issubclass(TransitionRefused, StoreError)
