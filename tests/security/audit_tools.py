"""What the audit-rewrite tests share: a keyed store on each backend, and raw access to the
audit rows behind lisguard's back - the database administrator's view, triggers out of the way
(a SQLite file's owner can drop them, a PostgreSQL superuser disable them)."""

from __future__ import annotations

import asyncio
import sqlite3
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from lisguard.domain.audit_anchor import AuditKeys
from lisguard.keys import InstallKey
from lisguard.store.base import AuditEvent, Store, StoredAuditEvent
from lisguard.store.codec import dump_json
from lisguard.store.memory import MemoryStore
from lisguard.store.memory.store import _AuditRow
from tests.integration.conftest import Backend, MemoryBackend, PostgresBackend, SqliteBackend

INSTALL_KEY = InstallKey(bytes(range(32)), "test")
KEYS = AuditKeys.of(INSTALL_KEY)
OTHER_KEYS = AuditKeys.of(InstallKey(bytes(range(1, 33)), "someone else's"))
T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)


def keyed_store(db: Backend, key: bytes | None = KEYS.chain) -> Store:
    """A store on `db` whose audit chain is keyed with `key` (None: a pre-keying lisguard)."""
    if isinstance(db, MemoryBackend):
        db.store.audit_key = key  # the data lives in the instance: the same one, reconfigured
        return db.store
    return db.make(audit_key=key)


async def write_events(store: Store, n: int, *, start: datetime = T0, batch: int = 50) -> None:
    for first in range(0, n, batch):
        async with store.transaction() as tx:
            await tx.add_audit(
                [
                    AuditEvent(
                        "alert.raised" if i % 2 else "message.received",
                        start + timedelta(seconds=i),
                        "system",
                        f"P{i % 7}",
                        {"rule": "bb-serology", "n": i},
                    )
                    for i in range(first, min(n, first + batch))
                ]
            )


async def all_rows(store: Store) -> list[StoredAuditEvent]:
    rows: list[StoredAuditEvent] = []
    while page := await store.list_audit(after_seq=rows[-1].seq if rows else 0, limit=5000):
        rows.extend(page)
    return rows


@dataclass(frozen=True)
class Row:
    """An audit row as the attacker writes it."""

    at: datetime
    kind: str
    actor: str
    subject: str
    detail: dict[str, Any]
    prev_hash: str | None
    hash: str | None


class Dba:
    """Raw access to the audit table of one backend."""

    def __init__(self, db: Backend, store: Store) -> None:
        self.db = db
        self.store = store

    async def delete_after(self, seq: int) -> None:
        if isinstance(self.db, MemoryBackend):
            assert isinstance(self.store, MemoryStore)
            self.store._audit = [r for r in self.store._audit if r.seq <= seq]
            return
        await self._sql([("DELETE FROM audit_events WHERE seq > ?", (seq,))])

    async def append(self, row: Row) -> None:
        if isinstance(self.db, MemoryBackend):
            assert isinstance(self.store, MemoryStore)
            self.store._audit.append(
                _AuditRow(
                    self.store._next_audit_seq,
                    row.kind,
                    row.at,
                    row.actor,
                    row.subject,
                    dump_json(row.detail),
                    row.prev_hash,
                    row.hash,
                )
            )
            self.store._next_audit_seq += 1
            return
        await self._sql(
            [
                (
                    "INSERT INTO audit_events (at, kind, actor, subject, detail, prev_hash, hash)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        self._stamp(row.at),
                        row.kind,
                        row.actor,
                        row.subject,
                        dump_json(row.detail),
                        row.prev_hash,
                        row.hash,
                    ),
                )
            ]
        )

    async def rewrite(self, seq: int, row: Row) -> None:
        """Replace the content and hashes of event `seq` (many calls: one statement batch)."""
        await self.rewrite_many({seq: row})

    async def rewrite_many(self, rows: dict[int, Row]) -> None:
        if isinstance(self.db, MemoryBackend):
            assert isinstance(self.store, MemoryStore)
            audit = self.store._audit
            for i, old in enumerate(audit):
                new = rows.get(old.seq)
                if new is not None:
                    audit[i] = replace(
                        old,
                        at=new.at,
                        kind=new.kind,
                        actor=new.actor,
                        subject=new.subject,
                        detail=dump_json(new.detail),
                        prev_hash=new.prev_hash,
                        hash=new.hash,
                    )
            return
        await self._sql(
            [
                (
                    "UPDATE audit_events SET at = ?, kind = ?, actor = ?, subject = ?,"
                    f" detail = ?{'::jsonb' if self._pg else ''}, prev_hash = ?, hash = ?"
                    " WHERE seq = ?",
                    (
                        self._stamp(r.at),
                        r.kind,
                        r.actor,
                        r.subject,
                        dump_json(r.detail),
                        r.prev_hash,
                        r.hash,
                        seq,
                    ),
                )
                for seq, r in rows.items()
            ]
        )

    @property
    def _pg(self) -> bool:
        return isinstance(self.db, PostgresBackend)

    def _stamp(self, at: datetime) -> Any:
        return at if self._pg else at.astimezone(UTC).isoformat(timespec="microseconds")

    async def _sql(self, statements: list[tuple[str, tuple[Any, ...]]]) -> None:
        if isinstance(self.db, SqliteBackend):
            path = self.db.path

            def run() -> None:
                conn = sqlite3.connect(path)
                with conn:
                    conn.execute("DROP TRIGGER IF EXISTS audit_events_append_only")
                    for sql, params in statements:
                        conn.execute(sql, params)
                conn.close()

            await asyncio.to_thread(run)
            return
        assert isinstance(self.db, PostgresBackend)
        admin, table = self.db.admin, f'"{self.db.schema}".audit_events'
        async with admin.transaction():
            await admin.execute(f"ALTER TABLE {table} DISABLE TRIGGER USER")
            for sql, params in statements:
                pg_sql = sql.replace("audit_events", table)
                for i in range(len(params)):
                    pg_sql = pg_sql.replace("?", f"${i + 1}", 1)
                if pg_sql.startswith("INSERT"):
                    pg_sql = pg_sql.replace("$5,", "$5::jsonb,")
                await admin.execute(pg_sql, *params)
            await admin.execute(
                f"ALTER TABLE {table} ENABLE ALWAYS TRIGGER audit_events_append_only"
            )
