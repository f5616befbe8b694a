"""Browser sessions, the store side (the HTTP side: lisguard.web.sessions).

One row per login: the SHA-256 of the random session id the page's cookie carries (never the id,
never the API token), the token it was opened with, when it was opened and last used, and its
absolute end. Logging out ends a session; revoking the token ends all of them (in the same
transaction as the revocation, lisguard.store.access). The idle timeout is applied when a session
is read (`Session.live`), so changing it in the settings takes effect at once.

The two mixins are parts of SqlAccess and MemoryAccess; the port is lisguard.store.access's
AccessStore.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from lisguard.store.base import AuditEvent, StoreError
from lisguard.store.memory import utc
from lisguard.store.sql_common import SqlPart

if TYPE_CHECKING:
    from lisguard.store.access import ApiToken


@dataclass(frozen=True, slots=True)
class Session:
    id: int
    token: ApiToken  # as the token is now: a revoked token ends its sessions
    session_hash: str  # sha256 hex of the session id
    created_at: datetime
    last_seen_at: datetime
    expires_at: datetime  # the absolute end, fixed at login
    ended_at: datetime | None = None  # logged out, or the token was revoked

    def ends_at(self, idle: timedelta) -> datetime:
        return min(self.expires_at, self.last_seen_at + idle)

    def live(self, at: datetime, idle: timedelta) -> bool:
        return self.ended_at is None and self.token.active and utc(at) < self.ends_at(idle)


_SESSION_SELECT = (
    "SELECT s.id, s.session_hash, s.created_at, s.last_seen_at, s.expires_at, s.ended_at,"
    " t.id, t.name, t.role, t.token_hash, t.created_at, t.created_by, t.revoked_at"
    " FROM sessions s JOIN api_tokens t ON t.id = s.token_id"
)


def _login_event(token: ApiToken, session_id: int, at: datetime, client: str) -> AuditEvent:
    detail = {"role": token.role, "session": session_id}
    return AuditEvent("auth.login", at, token.name, client, detail)


class SqlSessions(SqlPart):
    """Sessions over SQLite or PostgreSQL (mixed into SqlAccess, which reads token rows)."""

    def _token(self, r: Any) -> ApiToken:
        raise NotImplementedError  # SqlAccess

    async def add_session(
        self,
        token: ApiToken,
        session_hash: str,
        *,
        at: datetime,
        expires_at: datetime,
        client: str = "",
    ) -> Session:
        async with self._store.transaction() as tx:
            # past their absolute end, sessions are of use to no one: cleared as logins come
            await self._exec(
                tx, "DELETE FROM sessions WHERE expires_at < ?", (self._stamp(at),), "add_session"
            )
            rows = await self._exec(
                tx,
                "INSERT INTO sessions (session_hash, token_id, created_at, last_seen_at,"
                " expires_at) VALUES (?, ?, ?, ?, ?) RETURNING id",
                (session_hash, token.id, self._stamp(at), self._stamp(at), self._stamp(expires_at)),
                "add_session",
            )
            session_id = int(rows[0][0])
            await tx.add_audit([_login_event(token, session_id, at, client)])
        return Session(session_id, token, session_hash, utc(at), utc(at), utc(expires_at))

    async def find_session(self, session_hash: str) -> Session | None:
        rows = await self._read(f"{_SESSION_SELECT} WHERE s.session_hash = ?", (session_hash,))
        if not rows:
            return None
        r = rows[0]
        return Session(
            id=int(r[0]),
            token=self._token(r[6:]),
            session_hash=r[1],
            created_at=self._parse(r[2]),
            last_seen_at=self._parse(r[3]),
            expires_at=self._parse(r[4]),
            ended_at=self._time(r[5]),
        )

    async def touch_session(self, session_id: int, at: datetime) -> None:
        async with self._store.transaction() as tx:
            await self._exec(
                tx,
                "UPDATE sessions SET last_seen_at = ? WHERE id = ? AND ended_at IS NULL",
                (self._stamp(at), session_id),
                "touch_session",
            )

    async def end_session(self, session_id: int, *, by: str, at: datetime) -> bool:
        async with self._store.transaction() as tx:
            rows = await self._exec(
                tx,
                "UPDATE sessions SET ended_at = ? WHERE id = ? AND ended_at IS NULL RETURNING id",
                (self._stamp(at), session_id),
                "end_session",
            )
            if rows:
                await tx.add_audit([AuditEvent("auth.logout", at, by, str(session_id))])
        return bool(rows)

    async def _end_token_sessions(self, tx: Any, token_id: int, at: datetime) -> int:
        """Inside the revocation's transaction: end every open session of the token."""
        rows = await self._exec(
            tx,
            "UPDATE sessions SET ended_at = ? WHERE token_id = ? AND ended_at IS NULL RETURNING id",
            (self._stamp(at), token_id),
            "revoke_token",
        )
        return len(rows)


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
            await tx.add_audit([_login_event(token, session_id, at, client)])
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
