"""Audit searches reach their indexes, though the kind and actor indexes leave out the rows every
message writes (migration 0004): the query must repeat the partial index's condition, or the
planner walks the whole log. Checked with each database's own planner."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from lisguard.store.audit_search import AuditQuery, kinds_match
from lisguard.store.base import Store
from lisguard.store.sql.access import SqlAccess
from tests.integration.conftest import Backend, PostgresBackend, SqliteBackend


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """The SQL backends only: the memory store has no planner."""
    if request.param == "sqlite":
        yield SqliteBackend(tmp_path / "db" / "lisguard.db")
    else:
        yield PostgresBackend(request.getfixturevalue("pg_dsn"))


KIND, ACTOR = "audit_events_kind_idx", "audit_events_actor_idx"
# (query, the indexes it may use: one of them must appear in the plan; none: the machine's own
# rows, which the partial indexes leave out, so using either would lose them)
CASES: list[tuple[AuditQuery, tuple[str, ...]]] = [
    (AuditQuery(kinds=("alert.raised",)), (KIND,)),
    (AuditQuery(kinds=("token.",)), (KIND,)),
    (AuditQuery(kinds=("alert.raised", "alert.acknowledged")), (KIND,)),
    (AuditQuery(actor="alice"), (ACTOR,)),
    (AuditQuery(actor="alice", kinds=("alert.acknowledged",)), (KIND, ACTOR)),
    (AuditQuery(kinds=("message.received",)), ()),
    (AuditQuery(kinds=("message.",)), ()),
    (AuditQuery(actor="system"), ()),
    (AuditQuery(actor="system", kinds=("alert.raised",)), (KIND,)),
]
STATE_SUBJECT, PATIENT = "audit_events_state_subject_idx", "audit_events_patient_idx"


@pytest.mark.parametrize(
    ("kinds", "expected"),
    [
        (("message.received",), True),
        (("message.",), True),
        (("alert.", "message.received"), True),
        (("MESSAGE.",), False),  # binary order: case counts, as in the memory store
        (("mess_ge.",), False),  # no wildcards
        (("%.",), False),
        (("alert.", "token.created"), False),
        (("message.received.",), False),
        (("message.receive",), False),  # exact kinds are exact
        ((), False),
    ],
)
def test_kinds_match(kinds: tuple[str, ...], expected: bool) -> None:
    assert kinds_match(kinds, "message.received") is expected


def _literal(value: object) -> str:
    return str(value) if isinstance(value, int) else "'" + str(value).replace("'", "''") + "'"


async def _plan(db: Backend, sql: str, params: list[object]) -> str:
    if isinstance(db, SqliteBackend):

        def explain() -> str:
            conn = sqlite3.connect(db.path)
            try:
                rows = conn.execute("EXPLAIN QUERY PLAN " + sql, params).fetchall()
                return "\n".join(str(r[3]) for r in rows)
            finally:
                conn.close()

        return await asyncio.to_thread(explain)
    assert isinstance(db, PostgresBackend)
    for i in range(len(params)):
        sql = sql.replace("?", f"${i + 1}", 1)
    # The generic plan, which a prepared statement (asyncpg's way) settles on after a few runs:
    # it must reach the index without knowing the values.
    arguments = ", ".join(map(_literal, params))
    async with db.admin.transaction():
        await db.admin.execute(f'SET LOCAL search_path = "{db.schema}"')
        await db.admin.execute("SET LOCAL enable_seqscan = off")  # a tiny table is scanned
        await db.admin.execute("SET LOCAL plan_cache_mode = force_generic_plan")
        await db.admin.execute(f"PREPARE search AS {sql}")
        try:
            rows = await db.admin.fetch(f"EXPLAIN EXECUTE search({arguments})")
        finally:
            await db.admin.execute("DEALLOCATE search")
    return "\n".join(r[0] for r in rows)


def _searches(plan: str, index: str) -> bool:
    """Whether the plan looks rows up through the index (not merely walks it end to end)."""
    if "USING" in plan:  # SQLite: "SEARCH audit_events USING INDEX name (kind=?)"
        return f"SEARCH audit_events USING INDEX {index} (" in plan
    lines = plan.splitlines()
    for number, line in enumerate(lines):
        if index in line and ("Index Scan" in line or "Bitmap Index Scan" in line):
            return any("Index Cond" in later for later in lines[number + 1 : number + 3])
    return False


@pytest.mark.parametrize(("query", "indexes"), CASES)
async def test_search_uses_index(
    db: Backend, store: Store, query: AuditQuery, indexes: tuple[str, ...]
) -> None:
    access = store.access
    assert isinstance(access, SqlAccess)
    sql, params = access.audit_search_sql(query)
    plan = await _plan(db, sql, params)
    if indexes:
        assert any(_searches(plan, index) for index in indexes), plan
    else:
        assert KIND not in plan and ACTOR not in plan, plan


@pytest.mark.postgres
async def test_kind_search_uses_index_whatever_the_collation(pg: PostgresBackend) -> None:
    """Most PostgreSQL servers run a linguistic collation (en_US.UTF-8), under which a LIKE
    prefix cannot use a plain index: the kind index and searches are binary (migration 0005)."""
    store = pg.make()
    await store.open()
    try:
        await pg.admin.execute(
            f'ALTER TABLE "{pg.schema}".audit_events ALTER COLUMN kind TYPE text COLLATE "en-x-icu"'
        )
        access = store.access
        assert isinstance(access, SqlAccess)
        for kinds in (("alert.",), ("alert.raised",), ("token.", "alert.raised")):
            sql, params = access.audit_search_sql(AuditQuery(kinds=kinds))
            plan = await _plan(pg, sql, params)
            assert _searches(plan, KIND), plan
    finally:
        await store.close()


@pytest.mark.parametrize("since", [None, "2026-01-01T00:00:00+00:00"])
async def test_patient_search_looks_up_both_of_its_indexes(
    db: Backend, store: Store, since: str | None
) -> None:
    """A patient's events: state changes by subject, the rest by detail.patient (migration
    0006): two index lookups, never a walk of the whole log."""
    access = store.access
    assert isinstance(access, SqlAccess)
    when = None if since is None else datetime.fromisoformat(since)
    sql, params = access.audit_search_sql(AuditQuery(patient="MRN1^HOSP", since=when))
    plan = await _plan(db, sql, params)
    assert _searches(plan, STATE_SUBJECT) and _searches(plan, PATIENT), plan
