"""Administration commands: API tokens, audit chain verification, retention purge."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TextIO

from lisguard.settings import Settings
from lisguard.store import open_store
from lisguard.store.access import ROLES, verify_audit_chain
from lisguard.store.base import Store
from lisguard.web.auth import new_token, token_hash


async def _opened(settings: Settings) -> Store:
    store = open_store(settings.store.url.get_secret_value())
    await store.open()
    return store


async def token_create(settings: Settings, role: str, name: str, out: TextIO) -> int:
    """Create a token; print it once. Only its hash is stored."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    token = new_token()
    store = await _opened(settings)
    try:
        record = await store.access.add_token(
            name, role, token_hash(token), by="cli", at=datetime.now(UTC)
        )
    finally:
        await store.close()
    out.write(f"{token}\n")
    out.write(f"# token {record.id} for {name!r} ({role}): shown once, store it now\n")
    return 0


async def token_list(settings: Settings, out: TextIO) -> int:
    store = await _opened(settings)
    try:
        for t in await store.access.list_tokens():
            state = f"revoked {t.revoked_at.isoformat()}" if t.revoked_at else "active"
            out.write(f"{t.id}\t{t.role}\t{t.name}\t{t.created_at.isoformat()}\t{state}\n")
    finally:
        await store.close()
    return 0


async def token_revoke(settings: Settings, token_id: int, out: TextIO) -> int:
    store = await _opened(settings)
    try:
        done = await store.access.revoke_token(token_id, by="cli", at=datetime.now(UTC))
    finally:
        await store.close()
    out.write(f"token {token_id} {'revoked' if done else 'not found or already revoked'}\n")
    return 0 if done else 1


async def audit_verify(settings: Settings, out: TextIO) -> int:
    """Exit 0 when the audit chain is intact, 1 with the places where it is not."""
    store = await _opened(settings)
    try:
        report = await verify_audit_chain(store)
    finally:
        await store.close()
    if report.ok:
        out.write(f"audit chain intact: {report.checked} events, last hash {report.last_hash}\n")
        return 0
    out.write(f"audit chain BROKEN ({report.checked} events checked):\n")
    for problem in report.problems:
        out.write(f"  {problem}\n")
    return 1


async def purge(
    settings: Settings,
    out: TextIO,
    *,
    raw_days: int | None = None,
    audit_days: int | None = None,
    now: datetime | None = None,
) -> int:
    """Apply the retention settings (or the given days); each purge writes its own audit event."""
    now = now or datetime.now(UTC)
    raw_days = settings.retention.raw_message_days if raw_days is None else raw_days
    audit_days = settings.retention.audit_event_days if audit_days is None else audit_days
    store = await _opened(settings)
    try:
        if raw_days is not None:
            n = await store.access.purge_raw(now - timedelta(days=raw_days), by="cli", at=now)
            out.write(f"raw messages older than {raw_days} days emptied: {n}\n")
        if audit_days is not None:
            n = await store.access.purge_audit(now - timedelta(days=audit_days), by="cli", at=now)
            out.write(f"audit events older than {audit_days} days removed: {n}\n")
    finally:
        await store.close()
    return 0
