"""Audit searches reach their indexes, though the kind and actor indexes leave out the rows every
message writes (migration 0004): the query must repeat the partial index's condition, or the
planner walks the whole log. Checked with each database's own planner."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from lisguard.store.access import AuditQuery, SqlAccess, kinds_may_match
from lisguard.store.base import Store
from tests.integration.conftest import Backend, PostgresBackend, SqliteBackend


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """The SQL backends only: the memory store has no planner."""
    if request.param == "sqlite":
        yield SqliteBackend(tmp_path / "db" / "lisguard.db")
    else:
        yield PostgresBackend(request.getfixturevalue("pg_dsn"))


# (query, the index it must use; None: the machine's own rows, found walking seq backwards)
CASES = [
    (AuditQuery(kinds=("alert.raised",)), "audit_events_kind_idx"),
    (AuditQuery(kinds=("token.",)), "audit_events_kind_idx"),
    (AuditQuery(kinds=("alert.raised", "alert.acknowledged")), "audit_events_kind_idx"),
    (AuditQuery(actor="alice"), "audit_events_actor_idx"),
    (AuditQuery(actor="alice", kinds=("alert.acknowledged",)), None),  # either index will do
    (AuditQuery(kinds=("message.received",)), None),
    (AuditQuery(kinds=("message.",)), None),
    (AuditQuery(actor="system"), None),
]


@pytest.mark.parametrize(
    ("kinds", "expected"),
    [
        (("message.received",), True),
        (("message.",), True),
        (("MESSAGE.",), True),  # SQLite's LIKE ignores case
        (("mess_ge.",), True),  # `_` is a LIKE wildcard
        (("%.",), True),
        (("alert.", "token.created"), False),
        (("message.received.",), False),
        (("message.receive",), False),  # exact kinds are exact
        ((), False),
    ],
)
def testkinds_may_match(kinds: tuple[str, ...], expected: bool) -> None:
    assert kinds_may_match(kinds, "message.received") is expected


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
    async with db.admin.transaction():
        await db.admin.execute(f'SET LOCAL search_path = "{db.schema}"')
        await db.admin.execute("SET LOCAL enable_seqscan = off")  # a tiny table is scanned
        rows = await db.admin.fetch("EXPLAIN " + sql, *params)
    return "\n".join(r[0] for r in rows)


@pytest.mark.parametrize(("query", "index"), CASES)
async def test_search_uses_index(
    db: Backend, store: Store, query: AuditQuery, index: str | None
) -> None:
    access = store.access
    assert isinstance(access, SqlAccess)
    sql, params = access.audit_search_sql(query)
    plan = await _plan(db, sql, params)
    if index is not None:
        assert index in plan, plan
    else:
        assert "audit_events_subject_idx" not in plan, plan
