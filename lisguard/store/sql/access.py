"""AccessStore over either SQL backend: tokens, browser sessions, audit search and retention.

Not on the per-message path, so one implementation serves both (placeholders are rewritten for
PostgreSQL). Every change appends its own audit event in the same transaction.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from lisguard.domain.audit import PURGE_KIND
from lisguard.store.access import ROLES, ApiToken
from lisguard.store.audit_search import AuditQuery, search_sql
from lisguard.store.codec import load_detail, utc
from lisguard.store.records import AuditEvent, StoredAuditEvent, StoreError
from lisguard.store.sql.parts import AUDIT_CHAIN_LOCK
from lisguard.store.sql.sessions import SqlSessions


class SqlAccess(SqlSessions):
    """AccessStore over the SQLite or PostgreSQL store (plumbing in lisguard.store.sql.parts)."""

    def _token(self, r: Any) -> ApiToken:
        return ApiToken(
            id=int(r[0]),
            name=r[1],
            role=r[2],
            token_hash=r[3],
            created_at=self._parse(r[4]),
            created_by=r[5],
            revoked_at=self._time(r[6]),
        )

    async def add_token(
        self, name: str, role: str, token_hash: str, *, by: str, at: datetime
    ) -> ApiToken:
        if role not in ROLES:
            raise StoreError(f"unknown role {role!r}: one of {', '.join(ROLES)}")
        async with self._store.transaction() as tx:
            rows = await self._exec(
                tx,
                "INSERT INTO api_tokens (name, role, token_hash, created_at, created_by)"
                " VALUES (?, ?, ?, ?, ?) RETURNING id",
                (name, role, token_hash, self._stamp(at), by),
                "add_token",
            )
            token_id = int(rows[0][0])
            await tx.add_audit(
                [AuditEvent("token.created", at, by, str(token_id), {"name": name, "role": role})]
            )
        return ApiToken(token_id, name, role, token_hash, utc(at), by)

    async def find_token(self, token_hash: str) -> ApiToken | None:
        rows = await self._read(f"{_TOKEN_SELECT} WHERE token_hash = ?", (token_hash,))
        return self._token(rows[0]) if rows else None

    async def list_tokens(self) -> list[ApiToken]:
        return [self._token(r) for r in await self._read(f"{_TOKEN_SELECT} ORDER BY id")]

    async def revoke_token(self, token_id: int, *, by: str, at: datetime) -> bool:
        async with self._store.transaction() as tx:
            rows = await self._exec(
                tx,
                "UPDATE api_tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL"
                " RETURNING id",
                (self._stamp(at), token_id),
                "revoke_token",
            )
            if rows:
                ended = await self._end_token_sessions(tx, token_id, at)
                detail = {"sessions_ended": ended}
                await tx.add_audit([AuditEvent("token.revoked", at, by, str(token_id), detail)])
        return bool(rows)

    async def search_audit(self, query: AuditQuery) -> list[StoredAuditEvent]:
        sql, params = self.audit_search_sql(query)
        return [
            StoredAuditEvent(
                seq=int(r[0]),
                event=AuditEvent(
                    kind=r[1],
                    at=self._parse(r[2]),
                    actor=r[3],
                    subject=r[4],
                    detail=load_detail(r[5]) if isinstance(r[5], str) else dict(r[5]),
                ),
                prev_hash=r[6],
                hash=r[7],
            )
            for r in await self._read(sql, params)
        ]

    def audit_search_sql(self, query: AuditQuery) -> tuple[str, list[Any]]:
        """The SELECT (with ? placeholders) and parameters of a search, newest first."""
        return search_sql(query, pg=self._pg, stamp=self._stamp)

    async def purge_raw(self, before: datetime, *, by: str, at: datetime) -> int:
        empty = b""
        async with self._store.transaction() as tx:
            rows = await self._exec(
                tx,
                "UPDATE messages SET raw = ?, raw_purged_at = ?"
                " WHERE received_at < ? AND raw_purged_at IS NULL RETURNING id",
                (empty, self._stamp(at), self._stamp(before)),
                "purge_raw",
            )
            await tx.add_audit(
                [
                    AuditEvent(
                        "retention.raw_purged",
                        at,
                        by,
                        "",
                        {"before": utc(before).isoformat(), "messages": len(rows)},
                    )
                ]
            )
        return len(rows)

    async def purge_audit(self, before: datetime, *, by: str, at: datetime) -> int:
        async with self._store.transaction() as tx:
            if self._pg:
                await self._exec(
                    tx, "SELECT pg_advisory_xact_lock(?)", (AUDIT_CHAIN_LOCK,), "purge_audit"
                )
            last = await self._exec(
                tx,
                "SELECT seq, hash FROM audit_events WHERE at < ? ORDER BY seq DESC LIMIT 1",
                (self._stamp(before),),
                "purge_audit",
            )
            if not last:
                return 0
            through, anchor = int(last[0][0]), last[0][1]
            gone = await self._exec(
                tx,
                "DELETE FROM audit_events WHERE seq <= ? RETURNING seq",
                (through,),
                "purge_audit",
            )
            await tx.add_audit(
                [
                    AuditEvent(
                        PURGE_KIND,
                        at,
                        by,
                        "",
                        {
                            "before": utc(before).isoformat(),
                            "through_seq": through,
                            "anchor_hash": anchor,
                            "events": len(gone),
                        },
                    )
                ]
            )
        return len(gone)


_TOKEN_SELECT = (
    "SELECT id, name, role, token_hash, created_at, created_by, revoked_at FROM api_tokens"
)
