"""Audit hash chain, tokens, audit search and retention, on every backend.

Tampering is done the way an insider would: straight SQL on the database behind lisguard's back.
"""

from __future__ import annotations

import asyncio
import sqlite3
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from lisguard.domain.facts import MessageKey
from lisguard.store.audit_chain import verify_audit_chain as verify_store
from lisguard.store.audit_search import AuditQuery
from lisguard.store.base import AuditEvent, NewMessage, Store
from lisguard.store.memory import MemoryStore
from tests.integration.conftest import Backend, MemoryBackend, PostgresBackend, SqliteBackend

T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)


async def write_events(store: Store, n: int, start: datetime = T0) -> None:
    for i in range(n):
        async with store.transaction() as tx:
            await tx.add_audit(
                [
                    AuditEvent(
                        "alert.raised" if i % 2 else "message.received",
                        start + timedelta(minutes=i),
                        "system" if i % 3 else "alice",
                        f"P{i % 4}",
                        {"rule": "bb-serology" if i % 2 else None, "n": i, "text": "Müller ✓"}
                        | ({"patient": f"P{i % 4}"} if i % 2 else {}),
                    )
                ]
            )


async def tamper(db: Backend, store: Store, sql: str, *params: object) -> None:
    """Run SQL on the audit table directly ('audit_events' is replaced by the real name), past
    the append-only trigger, as the file's owner or a PostgreSQL superuser can."""
    if isinstance(db, SqliteBackend):

        def run() -> None:
            conn = sqlite3.connect(db.path)
            with conn:
                conn.execute("DROP TRIGGER IF EXISTS audit_events_append_only")
                conn.execute(sql, params)
            conn.close()

        await asyncio.to_thread(run)
    elif isinstance(db, PostgresBackend):
        table = f'"{db.schema}".audit_events'
        pg_sql = sql.replace("audit_events", table)
        for i in range(len(params)):
            pg_sql = pg_sql.replace("?", f"${i + 1}", 1)
        async with db.admin.transaction():
            await db.admin.execute(f"ALTER TABLE {table} DISABLE TRIGGER USER")
            await db.admin.execute(pg_sql, *params)
            await db.admin.execute(
                f"ALTER TABLE {table} ENABLE ALWAYS TRIGGER audit_events_append_only"
            )
    else:
        raise AssertionError("memory tampering is done on the list")


async def test_chain_is_intact_after_normal_use(store: Store) -> None:
    await write_events(store, 12)
    report = await verify_store(store)
    assert report.ok, report.problems
    assert report.checked == 12


@pytest.mark.parametrize("attack", ["edit", "delete", "swap", "edit-hash-too"])
async def test_tampering_is_detected_and_located(db: Backend, store: Store, attack: str) -> None:
    await write_events(store, 10)
    rows = await store.list_audit()
    victim = rows[4].seq
    if isinstance(db, MemoryBackend):
        assert isinstance(store, MemoryStore)
        audit = store._audit
        i = next(k for k, r in enumerate(audit) if r.seq == victim)
        if attack == "edit":
            audit[i] = replace(audit[i], actor="mallory")
        elif attack == "delete":
            del audit[i]
        elif attack == "swap":
            audit[i], audit[i + 1] = (
                replace(audit[i + 1], seq=audit[i].seq),
                replace(audit[i], seq=audit[i + 1].seq),
            )
        else:
            audit[i] = replace(audit[i], actor="mallory", hash="0" * 64)
    elif attack == "edit":
        await tamper(db, store, "UPDATE audit_events SET actor = 'mallory' WHERE seq = ?", victim)
    elif attack == "delete":
        await tamper(db, store, "DELETE FROM audit_events WHERE seq = ?", victim)
    elif attack == "swap":
        # exchange the whole content of two rows, hashes included
        cols = "kind, at, actor, subject, detail, prev_hash, hash"
        nxt = rows[5].seq
        await tamper(
            db,
            store,
            f"UPDATE audit_events SET ({cols}) = (SELECT {cols} FROM audit_events AS o"
            f" WHERE o.seq = CASE audit_events.seq WHEN {victim} THEN {nxt} ELSE {victim} END)"
            f" WHERE seq IN ({victim}, {nxt})",
        )
    else:
        await tamper(
            db,
            store,
            "UPDATE audit_events SET actor = 'mallory', hash = ? WHERE seq = ?",
            "0" * 64,
            victim,
        )
    report = await verify_store(store)
    assert not report.ok
    assert any(f"seq {victim}" in p or f"seq {rows[5].seq}" in p for p in report.problems)


async def test_purge_of_old_audit_keeps_the_chain_verifiable(store: Store) -> None:
    await write_events(store, 10)
    removed = await store.access.purge_audit(
        T0 + timedelta(minutes=5), by="cli", at=T0 + timedelta(days=1)
    )
    assert removed == 5
    await write_events(store, 3, start=T0 + timedelta(days=2))
    report = await verify_store(store)
    assert report.ok, report.problems
    [purge] = await store.access.search_audit(AuditQuery(kinds=("audit.purged",)))
    assert purge.event.detail["events"] == 5


async def test_deleting_the_oldest_events_without_a_purge_is_detected(
    db: Backend, store: Store
) -> None:
    if isinstance(db, MemoryBackend):
        pytest.skip("covered by the SQL backends: the memory store has no outside access")
    await write_events(store, 6)
    first = (await store.list_audit())[0].seq
    await tamper(db, store, "DELETE FROM audit_events WHERE seq <= ?", first + 1)
    report = await verify_store(store)
    assert not report.ok
    assert "missing" in report.problems[0]


async def test_raw_purge_keeps_duplicate_detection_and_audits_itself(store: Store) -> None:
    key = MessageKey("LAB", "HOSP", "C1")
    async with store.transaction() as tx:
        mid = await tx.add_message(
            NewMessage(
                raw=b"MSH|secret PHI",
                content_hash="h1",
                received_at=T0,
                ack="ACK",
                outcome="AA",
                key=key,
            )
        )
    n = await store.access.purge_raw(T0 + timedelta(days=1), by="cli", at=T0 + timedelta(days=90))
    assert n == 1
    assert await store.get_raw(mid) == b""
    async with store.transaction() as tx:
        kept = await tx.find_message(key)
    assert kept is not None and kept.content_hash == "h1" and kept.ack == "ACK"
    [event] = await store.access.search_audit(AuditQuery(kinds=("retention.",)))
    assert event.event.detail["messages"] == 1
    assert (await verify_store(store)).ok


async def test_tokens(store: Store) -> None:
    made = await store.access.add_token("bench 3", "technologist", "a" * 64, by="cli", at=T0)
    assert (await store.access.find_token("a" * 64)) == made
    assert await store.access.find_token("b" * 64) is None
    assert await store.access.revoke_token(made.id, by="admin", at=T0)
    assert not await store.access.revoke_token(made.id, by="admin", at=T0)
    found = await store.access.find_token("a" * 64)
    assert found is not None and not found.active
    kinds = [e.event.kind for e in await store.access.search_audit(AuditQuery(kinds=("token.",)))]
    assert kinds == ["token.revoked", "token.created"]


async def test_search_filters(store: Store) -> None:
    await write_events(store, 12)
    everything = await store.access.search_audit(AuditQuery())
    assert [e.seq for e in everything] == sorted((e.seq for e in everything), reverse=True)
    by_rule = await store.access.search_audit(AuditQuery(rule="bb-serology"))
    assert len(by_rule) == 6 and all(e.event.detail["rule"] == "bb-serology" for e in by_rule)
    by_actor = await store.access.search_audit(AuditQuery(actor="alice"))
    assert {e.event.detail["n"] for e in by_actor} == {0, 3, 6, 9}
    by_patient = await store.access.search_audit(AuditQuery(patient="P1"))
    assert {e.event.detail["n"] for e in by_patient} == {1, 5, 9}
    window = await store.access.search_audit(
        AuditQuery(since=T0 + timedelta(minutes=2), until=T0 + timedelta(minutes=5))
    )
    assert {e.event.detail["n"] for e in window} == {2, 3, 4}
    page = await store.access.search_audit(AuditQuery(limit=5))
    older = await store.access.search_audit(AuditQuery(before_seq=page[-1].seq, limit=100))
    assert len(page) + len(older) == 12
    kinds = await store.access.search_audit(AuditQuery(kinds=("alert.",)))
    assert len(kinds) == 6
    # the machine's own rows, which the kind and actor indexes leave out (migration 0004)
    by_system = await store.access.search_audit(AuditQuery(actor="system"))
    assert {e.event.detail["n"] for e in by_system} == {1, 2, 4, 5, 7, 8, 10, 11}
    received = await store.access.search_audit(AuditQuery(kinds=("message.",)))
    assert {e.event.detail["n"] for e in received} == {0, 2, 4, 6, 8, 10}
    mixed = await store.access.search_audit(AuditQuery(kinds=("message.received", "alert.raised")))
    assert len(mixed) == 12
    none = await store.access.search_audit(AuditQuery(kinds=("alert",)))  # exact, not a prefix
    assert none == []


async def test_kind_families_are_prefixes_on_every_backend(store: Store) -> None:
    """A family is the kinds that start with it, in binary order: no LIKE wildcards, case
    counts, no neighbour in a linguistic order ("alert-x" sorts next to "alert.x" in en_US)."""
    kinds = ["a_b.x", "aXb.x", "alert.raised", "alert-x", "Alert.raised", "alert/x", "alert", "é.x"]
    async with store.transaction() as tx:
        await tx.add_audit([AuditEvent(kind, T0, "alice", "P1") for kind in kinds])

    async def found(*family: str) -> list[str]:
        rows = await store.access.search_audit(AuditQuery(kinds=family))
        return sorted(row.event.kind for row in rows)

    assert await found("a_b.") == ["a_b.x"]
    assert await found("alert.") == ["alert.raised"]
    assert await found("Alert.") == ["Alert.raised"]
    assert await found("é.") == ["é.x"]
    assert await found("alert.", "alert") == ["alert", "alert.raised"]
    assert await found("%.") == []


async def test_patient_search_finds_events_about_the_patient_only(store: Store) -> None:
    """A key without an assigning authority ("12345") looks like a message id or a token id,
    which other events carry as their subject: those are not about the patient."""
    events = [
        AuditEvent("message.received", T0, subject="12345", detail={"control_id": "C1"}),
        AuditEvent("token.created", T0, "admin", "12345", {"name": "x", "role": "manager"}),
        AuditEvent("state.exposure", T0, subject="12345", detail={"detail": "daratumumab"}),
        AuditEvent("alert.raised", T0, subject="a1", detail={"rule": "r", "patient": "12345"}),
        AuditEvent("phi.read", T0, "bob", "/api/patients/12345", {"patient": "12345"}),
        AuditEvent("alert.raised", T0, subject="a2", detail={"rule": "r", "patient": "999"}),
        AuditEvent("state.typing", T0, subject="999", detail={"detail": "12345"}),
    ]
    async with store.transaction() as tx:
        await tx.add_audit(events)
    found = await store.access.search_audit(AuditQuery(patient="12345"))
    assert sorted(row.event.kind for row in found) == ["alert.raised", "phi.read", "state.exposure"]


async def test_a_plain_mrn_finds_the_patient_under_any_authority(store: Store) -> None:
    """The manager view's hint says "MRN or MRN^authority": a plain MRN finds MRN^HOSP too
    (it found nothing before), and never another MRN that merely starts the same."""
    events = [
        AuditEvent("state.exposure", T0, subject="12345^HOSP", detail={"detail": "dara"}),
        AuditEvent("alert.raised", T0, subject="a1", detail={"rule": "r", "patient": "12345^HOSP"}),
        AuditEvent(
            "alert.raised", T0, subject="a2", detail={"rule": "r", "patient": "123456^HOSP"}
        ),
        AuditEvent("phi.read", T0, "bob", "/api/patients/12345", {"patient": "12345"}),
        AuditEvent("message.received", T0, subject="12345^X", detail={"control_id": "C1"}),
    ]
    async with store.transaction() as tx:
        await tx.add_audit(events)
    plain = await store.access.search_audit(AuditQuery(patient="12345"))
    assert sorted(r.event.subject for r in plain) == ["/api/patients/12345", "12345^HOSP", "a1"]
    exact = await store.access.search_audit(AuditQuery(patient="12345^HOSP"))
    assert sorted(r.event.subject for r in exact) == ["12345^HOSP", "a1"]
