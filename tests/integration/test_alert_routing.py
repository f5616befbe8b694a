"""Snooze and collapse on the ingest path, through the real Ingestor, on every backend: what is
stored, what gets an outbox row, what is audited - and that `lisguard check`'s view (the
IngestResult's alerts) does not change."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from lisguard.alerting.routing import AlertRouting, ChannelRoute
from lisguard.domain.knowledge import KnowledgeBase, load_knowledge_base
from lisguard.services import Ingestor
from lisguard.store.base import Store
from lisguard.store.desk import AlertQuery

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)

DOSE = (
    "MSH|^~\\&|PHARM|HOSP|LISGUARD|BB|20260301090000||RAS^O17|RX-{mrn}|P|2.5.1\r"
    "PID|1||{mrn}^^^HOSP^MR||DOE^JANE\r"
    "ORC|RE|RXO-{mrn}\r"
    "RXA|0|1|20260301093000|20260301100000|J9145^daratumumab^HCPCS|1800|mg||||||||||||CP\r"
)
SCREEN = (
    "MSH|^~\\&|LAB|HOSP|LISGUARD|BB|20260302081500||ORM^O01|{cid}|P|2.5.1\r"
    "PID|1||{mrn}^^^HOSP^MR||DOE^JANE\r"
    "PV1|1|O|4W\r"
    "ORC|NW|{order}\r"
    "OBR|1|{order}||890-4^Antibody screen^LN|||20260302081000\r"
)


@pytest.fixture(scope="module")
def kb() -> KnowledgeBase:
    return load_knowledge_base()


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


def ingestor(store: Store, kb: KnowledgeBase, clock: Callable[[], datetime]) -> Ingestor:
    routing = AlertRouting(
        channels=(ChannelRoute("webhook"), ChannelRoute("hl7")),
        collapse_window=timedelta(hours=12),
    )
    return Ingestor(store, kb, clock=clock, routing=routing)


async def screen(ing: Ingestor, mrn: str, order: str) -> list[str]:
    text = SCREEN.format(mrn=mrn, order=order, cid=f"C-{order}")
    result = await ing.ingest(text.encode())
    assert result.outcome == "accepted", result.error
    return [a.id for a in result.alerts]


async def test_identical_alerts_within_the_window_collapse_into_the_lead(
    store: Store, kb: KnowledgeBase
) -> None:
    clock = Clock()
    ing = ingestor(store, kb, clock)
    await ing.ingest(DOSE.format(mrn="MRN1").encode())
    [lead] = await screen(ing, "MRN1", "TS1")
    clock.now += timedelta(hours=2)
    [second] = await screen(ing, "MRN1", "TS2")  # still reported: `lisguard check` unchanged
    clock.now += timedelta(hours=3)
    [third] = await screen(ing, "MRN1", "TS3")

    record = await store.desk.get(lead)
    assert record is not None and (record.status, record.repeat_count) == ("open", 3)
    assert record.last_repeat_at == T0 + timedelta(hours=5)
    for repeat in (second, third):
        r = await store.desk.get(repeat)
        assert r is not None and (r.status, r.lead_id) == ("collapsed", lead)
        assert await store.desk.deliveries(repeat) == []  # only the lead is delivered
    assert [d.channel for d in await store.desk.deliveries(lead)] == ["hl7", "webhook"]
    queue = await store.desk.search(
        AlertQuery(statuses=("open", "acknowledged"), rule="bb-serology")
    )
    assert [r.alert.id for r in queue] == [lead]
    collapsed = [e.event for e in await store.list_audit() if e.event.kind == "alert.collapsed"]
    assert [(e.subject, e.detail["count"]) for e in collapsed] == [(second, 2), (third, 3)]


async def test_after_the_window_or_once_resolved_a_new_lead_is_raised(
    store: Store, kb: KnowledgeBase
) -> None:
    clock = Clock()
    ing = ingestor(store, kb, clock)
    await ing.ingest(DOSE.format(mrn="MRN2").encode())
    [first] = await screen(ing, "MRN2", "TS1")
    clock.now += timedelta(hours=12, seconds=1)  # measured from the lead, not slid by repeats
    [second] = await screen(ing, "MRN2", "TS2")
    assert (await store.desk.get(second)).status == "open"  # type: ignore[union-attr]

    await store.desk.resolve(second, by="tech", at=clock.now, resolution="done")
    await store.desk.resolve(first, by="tech", at=clock.now, resolution="done")
    clock.now += timedelta(minutes=10)
    [third] = await screen(ing, "MRN2", "TS3")
    record = await store.desk.get(third)
    assert record is not None and (record.status, record.lead_id) == ("open", None)
    assert len(await store.desk.deliveries(third)) == 2


async def test_other_patients_and_rules_never_collapse_together(
    store: Store, kb: KnowledgeBase
) -> None:
    clock = Clock()
    ing = ingestor(store, kb, clock)
    for mrn in ("MRN3", "MRN4"):
        await ing.ingest(DOSE.format(mrn=mrn).encode())
    [a] = await screen(ing, "MRN3", "TS1")
    [b] = await screen(ing, "MRN4", "TS1")
    assert {(await store.desk.get(x)).status for x in (a, b)} == {"open"}  # type: ignore[union-attr]


async def test_a_snoozed_rule_stores_and_audits_but_neither_queues_nor_delivers(
    store: Store, kb: KnowledgeBase
) -> None:
    clock = Clock()
    ing = ingestor(store, kb, clock)
    await ing.ingest(DOSE.format(mrn="MRN5").encode())
    snooze = await store.desk.add_snooze(
        "MRN5^HOSP",
        "bb-serology",
        by="jsmith",
        at=T0,
        expires_at=T0 + timedelta(hours=8),
        reason="workup done, same episode",
    )
    [held] = await screen(ing, "MRN5", "TS1")
    record = await store.desk.get(held)
    assert record is not None and (record.status, record.snooze_id) == ("snoozed", snooze.id)
    assert await store.desk.deliveries(held) == []
    open_query = AlertQuery(statuses=("open",), patient="MRN5^HOSP", rule="bb-serology")
    assert await store.desk.search(open_query) == []
    audit = [e.event for e in await store.list_audit() if e.event.kind == "alert.snoozed"]
    assert [(e.subject, e.actor, e.detail["snooze"]) for e in audit] == [
        (held, "system", snooze.id)
    ]

    clock.now += timedelta(hours=8)  # expired: alerts flow again
    [back] = await screen(ing, "MRN5", "TS2")
    assert (await store.desk.get(back)).status == "open"  # type: ignore[union-attr]
    assert len(await store.desk.deliveries(back)) == 2


async def test_without_channels_no_outbox_rows(store: Store, kb: KnowledgeBase) -> None:
    ing = Ingestor(store, kb, clock=Clock())
    await ing.ingest(DOSE.format(mrn="MRN6").encode())
    [a] = await screen(ing, "MRN6", "TS1")
    assert await store.desk.deliveries(a) == []


# one order message for several tests of one patient: an alert each, routed in turn
ORDERS = (
    "MSH|^~\\&|LAB|HOSP|LISGUARD|BB|20260302081500||ORM^O01|{cid}|P|2.5.1\r"
    "PID|1||{mrn}^^^HOSP^MR||DOE^JANE\r"
    "PV1|1|O|4W\r"
) + "".join(
    f"ORC|NW|{{o{i}}}\rOBR|{i}|{{o{i}}}||890-4^Antibody screen^LN|||20260302081000\r"
    for i in (1, 2, 3)
)


async def orders(ing: Ingestor, mrn: str, *ids: str) -> list[str]:
    text = ORDERS.format(mrn=mrn, cid=f"C-{ids[0]}", o1=ids[0], o2=ids[1], o3=ids[2])
    result = await ing.ingest(text.encode())
    assert result.outcome == "accepted", result.error
    return [a.id for a in result.alerts]


async def test_alerts_of_one_message_collapse_into_its_first_and_count_on(
    store: Store, kb: KnowledgeBase
) -> None:
    """The second and third alert of a message see the first as a lead (on PostgreSQL routing
    reads what the alert write answered and keeps it in step with its own writes)."""
    clock = Clock()
    ing = ingestor(store, kb, clock)
    await ing.ingest(DOSE.format(mrn="MRN7").encode())
    lead, second, third = await orders(ing, "MRN7", "TS1", "TS2", "TS3")
    record = await store.desk.get(lead)
    assert record is not None and (record.status, record.repeat_count) == ("open", 3)
    assert record.last_repeat_at == T0
    for repeat in (second, third):
        r = await store.desk.get(repeat)
        assert r is not None and (r.status, r.lead_id) == ("collapsed", lead)
        assert await store.desk.deliveries(repeat) == []
    assert [d.channel for d in await store.desk.deliveries(lead)] == ["hl7", "webhook"]
    collapsed = [e.event for e in await store.list_audit() if e.event.kind == "alert.collapsed"]
    assert [(e.subject, e.detail["count"]) for e in collapsed] == [(second, 2), (third, 3)]

    clock.now += timedelta(hours=1)  # a later message: into the same lead, counted on
    more = await orders(ing, "MRN7", "TS4", "TS5", "TS6")
    record = await store.desk.get(lead)
    assert record is not None and record.repeat_count == 6
    assert record.last_repeat_at == T0 + timedelta(hours=1)
    collapsed = [e.event for e in await store.list_audit() if e.event.kind == "alert.collapsed"]
    assert [e.detail["count"] for e in collapsed][-3:] == [4, 5, 6]
    assert {(await store.desk.get(x)).lead_id for x in more} == {lead}  # type: ignore[union-attr]


async def test_a_snooze_holds_back_every_alert_of_a_message_and_a_resolved_lead_is_not_one(
    store: Store, kb: KnowledgeBase
) -> None:
    clock = Clock()
    ing = ingestor(store, kb, clock)
    await ing.ingest(DOSE.format(mrn="MRN8").encode())
    [old] = await screen(ing, "MRN8", "TS0")
    await store.desk.resolve(old, by="tech", at=T0, resolution="done")
    snooze = await store.desk.add_snooze(
        "MRN8^HOSP",
        "bb-serology",
        by="jsmith",
        at=T0,
        expires_at=T0 + timedelta(hours=1),
        reason="same episode",
    )
    held = await orders(ing, "MRN8", "TS1", "TS2", "TS3")
    for alert_id in held:
        r = await store.desk.get(alert_id)
        assert r is not None and (r.status, r.snooze_id, r.lead_id) == ("snoozed", snooze.id, None)
        assert await store.desk.deliveries(alert_id) == []

    clock.now += timedelta(hours=2)  # the snooze is over; the resolved alert leads no one
    lead, second, _ = await orders(ing, "MRN8", "TS4", "TS5", "TS6")
    assert (await store.desk.get(lead)).status == "open"  # type: ignore[union-attr]
    assert (await store.desk.get(second)).lead_id == lead  # type: ignore[union-attr]
    assert (await store.desk.get(old)).repeat_count == 1  # type: ignore[union-attr]
