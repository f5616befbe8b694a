"""Tokens, browser sessions, audit search and retention: what lab managers and admins do with
the store (the search's filters and SQL: lisguard.store.audit_search; sessions:
lisguard.store.sessions).

Not on the per-message path, so one implementation serves both SQL backends (placeholders are
rewritten for PostgreSQL); the memory backend has its own below. Every change here appends its
own audit event in the same transaction.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Protocol

from lisguard.domain.audit import PURGE_KIND
from lisguard.store.audit_chain import verify_audit_chain as verify_audit_chain  # re-export
from lisguard.store.audit_search import AuditQuery, kinds_match, patient_matches, search_sql
from lisguard.store.base import (
    AuditEvent,
    StoredAuditEvent,
    StoreError,
)
from lisguard.store.memory import load_detail, utc
from lisguard.store.sessions import MemorySessions, Session, SqlSessions

ROLES = ("technologist", "manager", "admin", "sender", "metrics")
# PostgreSQL advisory lock key serialising appends to the audit chain (any fixed 64-bit number)
AUDIT_CHAIN_LOCK = 0x6C67_6175_6469_7431


@dataclass(frozen=True, slots=True)
class ApiToken:
    id: int
    name: str
    role: str
    token_hash: str  # sha256 hex; the token itself is never stored
    created_at: datetime
    created_by: str = ""
    revoked_at: datetime | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


class AccessStore(Protocol):
    async def add_token(
        self, name: str, role: str, token_hash: str, *, by: str, at: datetime
    ) -> ApiToken: ...

    async def find_token(self, token_hash: str) -> ApiToken | None: ...

    async def list_tokens(self) -> list[ApiToken]: ...

    async def revoke_token(self, token_id: int, *, by: str, at: datetime) -> bool:
        """Also ends every open session of the token, in the same transaction."""
        ...

    async def add_session(
        self,
        token: ApiToken,
        session_hash: str,
        *,
        at: datetime,
        expires_at: datetime,
        client: str = "",
    ) -> Session:
        """A browser session (POST /api/login), audited as `auth.login` from `client`."""
        ...

    async def find_session(self, session_hash: str) -> Session | None:
        """The session with its token as it is now, ended or not (the caller applies
        `Session.live`)."""
        ...

    async def touch_session(self, session_id: int, at: datetime) -> None:
        """Record use: the idle timeout counts from the last touch."""
        ...

    async def end_session(self, session_id: int, *, by: str, at: datetime) -> bool:
        """Logout, audited as `auth.logout`; False when it had ended already."""
        ...

    async def search_audit(self, query: AuditQuery) -> list[StoredAuditEvent]:
        """Newest first."""
        ...

    async def purge_raw(self, before: datetime, *, by: str, at: datetime) -> int:
        """Empty the raw bytes of messages received before `before`; returns how many."""
        ...

    async def purge_audit(self, before: datetime, *, by: str, at: datetime) -> int:
        """Delete audit events older than `before`, leaving an anchor so the rest verifies."""
        ...


class SqlAccess(SqlSessions):
    """AccessStore over the SQLite or PostgreSQL store (plumbing in lisguard.store.sql_common)."""

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


class MemoryAccess(MemorySessions):
    """AccessStore over the memory backend (tests, `lisguard check`)."""

    def __init__(self, store: Any) -> None:
        self._store = store
        self._tokens: dict[int, ApiToken] = {}
        self._sessions: dict[int, Session] = {}

    async def add_token(
        self, name: str, role: str, token_hash: str, *, by: str, at: datetime
    ) -> ApiToken:
        if role not in ROLES:
            raise StoreError(f"unknown role {role!r}: one of {', '.join(ROLES)}")
        if any(t.token_hash == token_hash for t in self._tokens.values()):
            raise StoreError("a token with this hash exists")
        token = ApiToken(len(self._tokens) + 1, name, role, token_hash, utc(at), by)
        async with self._store.transaction() as tx:
            await tx.add_audit(
                [AuditEvent("token.created", at, by, str(token.id), {"name": name, "role": role})]
            )
            self._tokens[token.id] = token
        return token

    async def find_token(self, token_hash: str) -> ApiToken | None:
        return next((t for t in self._tokens.values() if t.token_hash == token_hash), None)

    async def list_tokens(self) -> list[ApiToken]:
        return list(self._tokens.values())

    async def revoke_token(self, token_id: int, *, by: str, at: datetime) -> bool:
        token = self._tokens.get(token_id)
        if token is None or not token.active:
            return False
        async with self._store.transaction() as tx:
            sessions = self._open_sessions(token_id)
            detail = {"sessions_ended": len(sessions)}
            await tx.add_audit([AuditEvent("token.revoked", at, by, str(token_id), detail)])
            self._tokens[token_id] = replace(token, revoked_at=utc(at))
            for session in sessions:
                self._sessions[session.id] = replace(session, ended_at=utc(at))
        return True

    async def search_audit(self, query: AuditQuery) -> list[StoredAuditEvent]:
        found = []
        for row in reversed(await self._store.list_audit(limit=10**9)):
            e = row.event
            if query.since is not None and e.at < utc(query.since):
                continue
            if query.until is not None and e.at >= utc(query.until):
                continue
            if query.kinds and not kinds_match(query.kinds, e.kind):
                continue
            if query.actor and e.actor != query.actor:
                continue
            if query.patient and not patient_matches(e, query.patient):
                continue
            if query.rule and e.detail.get("rule") != query.rule:
                continue
            if query.before_seq is not None and row.seq >= query.before_seq:
                continue
            found.append(row)
            if len(found) >= query.limit:
                break
        return found

    async def purge_raw(self, before: datetime, *, by: str, at: datetime) -> int:
        store = self._store
        async with store.transaction() as tx:
            ids = [
                i
                for i, m in store._messages.items()
                if m.received_at < utc(before) and store._raw.get(i)
            ]
            for i in ids:
                store._raw[i] = b""
            detail = {"before": utc(before).isoformat(), "messages": len(ids)}
            await tx.add_audit([AuditEvent("retention.raw_purged", at, by, "", detail)])
        return len(ids)

    async def purge_audit(self, before: datetime, *, by: str, at: datetime) -> int:
        store = self._store
        async with store.transaction() as tx:
            old = [r for r in store._audit if r.at < utc(before)]
            if not old:
                return 0
            through = old[-1]
            store._audit = [r for r in store._audit if r.seq > through.seq]
            detail = {
                "before": utc(before).isoformat(),
                "through_seq": through.seq,
                "anchor_hash": through.hash,
                "events": len([r for r in old if r.seq <= through.seq]),
            }
            await tx.add_audit([AuditEvent(PURGE_KIND, at, by, "", detail)])
        return int(detail["events"])
