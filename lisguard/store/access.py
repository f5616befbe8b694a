"""Tokens, browser sessions, audit search and retention: what lab managers and admins do with
the store. The port and its records; the search's filters: lisguard.store.audit_search.

Implementations: lisguard.store.sql.access (with sql.sessions) for both SQL backends,
lisguard.store.memory.access for memory. Every change appends its own audit event in the same
transaction.

Browser sessions: one row per login, the SHA-256 of the random session id the page's cookie
carries (never the id, never the API token), the token it was opened with, when it was opened
and last used, and its absolute end. Logging out ends a session; revoking the token ends all of
them, in the same transaction as the revocation. The idle timeout is applied when a session is
read (`Session.live`), so changing it in the settings takes effect at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from lisguard.store.audit_search import AuditQuery
from lisguard.store.codec import utc
from lisguard.store.records import AuditEvent, StoredAuditEvent

ROLES = ("technologist", "manager", "admin", "sender", "metrics")


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


def login_event(token: ApiToken, session_id: int, at: datetime, client: str) -> AuditEvent:
    detail = {"role": token.role, "session": session_id}
    return AuditEvent("auth.login", at, token.name, client, detail)
