"""PostgreSQL: routing rides on the unit's writes (migration 0012, store/postgres/routing.py).

A message that raises an alert costs the round trips of one that does not, plus the alert
write: counted on the wire, not timed. The open leads the alert write answers are locked until
COMMIT, as the separate read locked them: a technologist's resolve waits for the message."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest

from benchmarks import pg as bench_pg
from benchmarks.roundtrips import RoundTripProxy
from lisguard.alerting.routing import AlertRouting, ChannelRoute
from lisguard.domain.facts import MessageKey
from lisguard.domain.knowledge import load_knowledge_base
from lisguard.services import Ingestor
from lisguard.store.desk import AlertQuery
from lisguard.store.postgres import PostgresStore

from .conftest import PostgresBackend
from .test_alert_routing import DOSE, SCREEN, T0, Clock
from .test_store_contract import make_alert, msg

pytestmark = pytest.mark.postgres

SAFETY = 20.0


@pytest.fixture
async def counted(pg: PostgresBackend) -> AsyncIterator[tuple[PostgresStore, RoundTripProxy]]:
    """A store on the test's schema whose every round trip passes the counting proxy."""
    proxy = RoundTripProxy(bench_pg.address(pg.dsn))
    port = await proxy.start()
    store = PostgresStore(
        bench_pg.with_address(pg.dsn, "127.0.0.1", port),
        server_settings={"search_path": pg.schema, "application_name": pg.schema},
        min_size=1,
        max_size=1,
    )
    await store.open()
    try:
        yield store, proxy
    finally:
        await store.close()
        await proxy.stop()


async def test_an_alerting_message_costs_one_round_trip_more_than_a_silent_one(
    counted: tuple[PostgresStore, RoundTripProxy],
) -> None:
    store, proxy = counted
    clock = Clock()
    routing = AlertRouting(channels=(ChannelRoute("webhook"), ChannelRoute("hl7")))
    ing = Ingestor(store, load_knowledge_base(), clock=clock, routing=routing)

    async def trips(text: str) -> tuple[int, int]:
        start = proxy.turnarounds
        result = await ing.ingest(text.encode())
        assert result.outcome == "accepted", result.error
        return proxy.turnarounds - start, len(result.alerts)

    def screen(mrn: str, order: str) -> str:
        return SCREEN.format(mrn=mrn, order=order, cid=f"C-{mrn}-{order}")

    # warm-up: the pool's connection and its prepared statements
    await trips(DOSE.format(mrn="W1"))
    await trips(screen("W1", "TS0"))
    await trips(screen("W1", "TS00"))

    # the first dose raises its alert; the next is silent: BEGIN, find (locks, reads), write
    # (state, message, audit), COMMIT
    assert await trips(DOSE.format(mrn="M1")) == (5, 1)
    assert await trips(DOSE.format(mrn="M1").replace("RX-M1", "RX-M1-2")) == (4, 0)
    # a new lead queued on two channels, then a repeat collapsed into it: the alert write
    # answers routing's read and routing's writes go with the audit events
    assert await trips(screen("M1", "TS1")) == (5, 1)
    assert await trips(screen("M1", "TS2")) == (5, 1)
    await store.desk.add_snooze(
        "M1^HOSP",
        "bb-serology",
        by="jsmith",
        at=T0,
        expires_at=T0 + timedelta(hours=1),
        reason="same episode",
    )
    assert await trips(screen("M1", "TS3")) == (5, 1)  # held back by the snooze

    stored = await store.desk.search(AlertQuery(patient="M1^HOSP"))
    leads = {r.alert.order: r for r in stored}
    assert (leads["TS1"].status, leads["TS1"].repeat_count) == ("open", 2)
    assert (leads["TS2"].status, leads["TS2"].lead_id) == ("collapsed", leads["TS1"].alert.id)
    assert leads["TS3"].status == "snoozed"
    assert [d.channel for d in await store.desk.deliveries(leads["TS1"].alert.id)] == [
        "hl7",
        "webhook",
    ]


async def _wait_until_waiting_on_a_row(pg: PostgresBackend) -> None:
    """Until a session of this schema waits for a heavyweight lock (not a timing assertion)."""
    while not await pg.admin.fetchval(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1"
        " AND wait_event_type = 'Lock'",
        pg.schema,
    ):
        await asyncio.sleep(0.005)


async def test_a_lead_the_alert_write_answered_stays_locked_until_commit(
    pg: PostgresBackend,
) -> None:
    store = pg.make()
    await store.open()
    try:
        lead, repeat = make_alert(order="ORD1"), make_alert(order="ORD2")
        async with store.transaction() as tx:
            await tx.find_message(MessageKey("LAB", "HOSP", "C1"))
            first = await tx.add_message(msg("C1"))
            await tx.add_alerts([lead], message_id=first, created_at=T0)
        routing = AlertRouting(channels=(ChannelRoute("webhook"),))
        held, release = asyncio.Event(), asyncio.Event()

        async def message() -> None:
            async with store.transaction() as tx:
                await tx.find_message(MessageKey("LAB", "HOSP", "C2"))
                second = await tx.add_message(msg("C2"))
                await tx.add_alerts([repeat], message_id=second, created_at=T0)
                events = await routing.route(store.desk, tx, [repeat], T0)
                await tx.add_audit(events)
                held.set()
                await release.wait()

        async with asyncio.timeout(SAFETY):
            unit = asyncio.create_task(message())
            await held.wait()
            resolve = asyncio.create_task(
                store.desk.resolve(lead.id, by="tech", at=T0, resolution="done")
            )
            await _wait_until_waiting_on_a_row(pg)  # the resolve waits for the lead's lock
            assert not resolve.done()
            release.set()
            await unit
            resolved = await resolve
        assert (resolved.status, resolved.repeat_count) == ("resolved", 2)
        record = await store.desk.get(repeat.id)
        assert record is not None and (record.status, record.lead_id) == ("collapsed", lead.id)
    finally:
        await store.close()


async def test_after_another_statement_routing_reads_the_database_and_sees_its_writes(
    pg: PostgresBackend,
) -> None:
    """A statement between the alert write and routing forgets the answer: the desk reads the
    database instead, after the buffered writes are sent, and routes the same."""
    store = pg.make()
    await store.open()
    try:
        lead, second, third = (make_alert(order=o) for o in ("ORD1", "ORD2", "ORD3"))
        async with store.transaction() as tx:
            await tx.find_message(MessageKey("LAB", "HOSP", "C1"))
            first = await tx.add_message(msg("C1"))
            await tx.add_alerts([lead], message_id=first, created_at=T0)
        routing = AlertRouting(channels=(ChannelRoute("webhook"),))
        async with store.transaction() as tx:
            await tx.find_message(MessageKey("LAB", "HOSP", "C2"))
            message_id = await tx.add_message(msg("C2"))
            await tx.add_alerts([second, third], message_id=message_id, created_at=T0)
            await tx.load_patients(["elsewhere^HOSP"], lock=False)  # a statement: forgotten
            events = await routing.route(store.desk, tx, [second, third], T0)
            await tx.add_audit(events)
        assert [(e.kind, e.detail["count"]) for e in events] == [
            ("alert.collapsed", 2),
            ("alert.collapsed", 3),
        ]
        record = await store.desk.get(lead.id)
        assert record is not None and (record.status, record.repeat_count) == ("open", 3)
        for repeat in (second, third):
            r = await store.desk.get(repeat.id)
            assert r is not None and (r.status, r.lead_id) == ("collapsed", lead.id)
    finally:
        await store.close()
