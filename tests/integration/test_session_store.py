"""Browser sessions in the store (lisguard.store.access), the same on every backend: only the
hash is kept, use moves the idle clock, logout and token revocation end sessions (audited), and
logins clear sessions past their absolute end."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from lisguard.store.audit_search import AuditQuery
from lisguard.store.base import Store

T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
IDLE = timedelta(minutes=30)
SHIFT = timedelta(hours=12)


async def test_session_round_trip_and_idle_clock(store: Store) -> None:
    token = await store.access.add_token("bench 3", "technologist", "a" * 64, by="cli", at=T0)
    made = await store.access.add_session(
        token, "s" * 64, at=T0, expires_at=T0 + SHIFT, client="10.0.0.7"
    )
    found = await store.access.find_session("s" * 64)
    assert found == made
    assert (found.token.name, found.created_at, found.last_seen_at) == ("bench 3", T0, T0)
    assert await store.access.find_session("t" * 64) is None
    assert found.live(T0 + IDLE - timedelta(seconds=1), IDLE)
    assert not found.live(T0 + IDLE, IDLE)
    later = T0 + timedelta(hours=11, minutes=50)
    await store.access.touch_session(made.id, later)
    touched = await store.access.find_session("s" * 64)
    assert touched is not None and touched.last_seen_at == later
    assert touched.live(later + timedelta(minutes=9), IDLE)
    assert not touched.live(T0 + SHIFT, IDLE)  # the absolute end, however recent the use
    [login] = await store.access.search_audit(AuditQuery(kinds=("auth.login",)))
    assert (login.event.actor, login.event.subject) == ("bench 3", "10.0.0.7")
    assert login.event.detail == {"role": "technologist", "session": made.id}


async def test_logout_and_revocation_end_sessions(store: Store) -> None:
    token = await store.access.add_token("bench 3", "technologist", "a" * 64, by="cli", at=T0)
    other = await store.access.add_token("bench 4", "technologist", "b" * 64, by="cli", at=T0)
    one = await store.access.add_session(token, "1" * 64, at=T0, expires_at=T0 + SHIFT)
    await store.access.add_session(token, "2" * 64, at=T0, expires_at=T0 + SHIFT)
    await store.access.add_session(other, "3" * 64, at=T0, expires_at=T0 + SHIFT)
    assert await store.access.end_session(one.id, by="bench 3", at=T0 + IDLE / 2)
    assert not await store.access.end_session(one.id, by="bench 3", at=T0 + IDLE / 2)
    ended = await store.access.find_session("1" * 64)
    assert ended is not None and ended.ended_at == T0 + IDLE / 2
    assert not ended.live(T0 + timedelta(minutes=1), IDLE)
    await store.access.touch_session(one.id, T0 + IDLE)  # an ended session stays ended
    assert (await store.access.find_session("1" * 64)) == ended

    assert await store.access.revoke_token(token.id, by="admin", at=T0 + IDLE)
    gone = await store.access.find_session("2" * 64)
    assert gone is not None and gone.ended_at == T0 + IDLE and not gone.token.active
    kept = await store.access.find_session("3" * 64)
    assert kept is not None and kept.live(T0 + timedelta(minutes=1), IDLE)
    [revoked] = await store.access.search_audit(AuditQuery(kinds=("token.revoked",)))
    assert revoked.event.detail == {"sessions_ended": 1}  # the other had logged out
    [logout] = await store.access.search_audit(AuditQuery(kinds=("auth.logout",)))
    assert (logout.event.actor, logout.event.subject) == ("bench 3", str(one.id))


async def test_logins_clear_sessions_past_their_end(store: Store) -> None:
    token = await store.access.add_token("bench 3", "technologist", "a" * 64, by="cli", at=T0)
    await store.access.add_session(token, "1" * 64, at=T0, expires_at=T0 + SHIFT)
    next_day = T0 + SHIFT + timedelta(hours=1)
    await store.access.add_session(token, "2" * 64, at=next_day, expires_at=next_day + SHIFT)
    assert await store.access.find_session("1" * 64) is None
    assert await store.access.find_session("2" * 64) is not None
