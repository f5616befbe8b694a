"""AccessStore over the memory backend: tokens, browser sessions, audit search and retention."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Any

from lisguard.domain.audit import PURGE_KIND
from lisguard.store.access import ROLES, ApiToken, Session, login_event
from lisguard.store.audit_search import AuditQuery, kinds_match, patient_matches
from lisguard.store.codec import utc
from lisguard.store.records import AuditEvent, StoredAuditEvent, StoreError


class MemorySessions:
    """Sessions over the memory backend (mixed into MemoryAccess, which holds the tokens)."""

    _store: Any
    _tokens: dict[int, ApiToken]
    _sessions: dict[int, Session]

    async def add_session(
        self,
        token: ApiToken,
        session_hash: str,
        *,
        at: datetime,
        expires_at: datetime,
        client: str = "",
    ) -> Session:
        if any(s.session_hash == session_hash for s in self._sessions.values()):
            raise StoreError("a session with this hash exists")
        session_id = max(self._sessions, default=0) + 1
        session = Session(session_id, token, session_hash, utc(at), utc(at), utc(expires_at))
        async with self._store.transaction() as tx:
            await tx.add_audit([login_event(token, session_id, at, client)])
            for old in [s for s in self._sessions.values() if s.expires_at < utc(at)]:
                del self._sessions[old.id]
            self._sessions[session_id] = session
        return session

    async def find_session(self, session_hash: str) -> Session | None:
        found = next((s for s in self._sessions.values() if s.session_hash == session_hash), None)
        if found is None:
            return None
        return replace(found, token=self._tokens[found.token.id])

    async def touch_session(self, session_id: int, at: datetime) -> None:
        async with self._store.transaction():
            session = self._sessions.get(session_id)
            if session is not None and session.ended_at is None:
                self._sessions[session_id] = replace(session, last_seen_at=utc(at))

    async def end_session(self, session_id: int, *, by: str, at: datetime) -> bool:
        session = self._sessions.get(session_id)
        if session is None or session.ended_at is not None:
            return False
        async with self._store.transaction() as tx:
            await tx.add_audit([AuditEvent("auth.logout", at, by, str(session_id))])
            self._sessions[session_id] = replace(session, ended_at=utc(at))
        return True

    def _open_sessions(self, token_id: int) -> list[Session]:
        return [s for s in self._sessions.values() if s.token.id == token_id and not s.ended_at]


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
