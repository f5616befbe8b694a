"""Browser sessions over either SQL backend, a part of SqlAccess (the port and what a session
is: lisguard.store.access; the HTTP side: lisguard.web.sessions)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from lisguard.store.access import ApiToken, Session, login_event
from lisguard.store.codec import utc
from lisguard.store.records import AuditEvent
from lisguard.store.sql.parts import SqlPart

_SESSION_SELECT = (
    "SELECT s.id, s.session_hash, s.created_at, s.last_seen_at, s.expires_at, s.ended_at,"
    " t.id, t.name, t.role, t.token_hash, t.created_at, t.created_by, t.revoked_at"
    " FROM sessions s JOIN api_tokens t ON t.id = s.token_id"
)


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
            await tx.add_audit([login_event(token, session_id, at, client)])
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
