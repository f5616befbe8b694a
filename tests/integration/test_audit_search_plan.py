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


@pytest.mark.parametrize(("query", "indexes"), CASES)
async def test_search_uses_index(
    db: Backend, store: Store, query: AuditQuery, indexes: tuple[str, ...]
) -> None:
    access = store.access
    assert isinstance(access, SqlAccess)
    sql, params = access.audit_search_sql(query)
    plan = await _plan(db, sql, params)
    if indexes:
        assert any(index in plan for index in indexes), plan
    else:
        assert KIND not in plan and ACTOR not in plan, plan
