"""SQLite migration 0009 rebuilds api_tokens (a CHECK cannot change in place) with the sessions
that reference it set aside: tokens, sessions and the revocation cascade survive the upgrade.
The migration is run again over a database that holds both, as an upgrade meets it."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

from lisguard.store.sqlite import SqliteStore

T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)


async def test_tokens_and_sessions_survive_the_rebuild(tmp_path: Path) -> None:
    path = tmp_path / "lisguard.db"
    store = SqliteStore(path)
    await store.open()
    token = await store.access.add_token("bench 3", "technologist", "a" * 64, by="cli", at=T0)
    other = await store.access.add_token("bench 4", "technologist", "b" * 64, by="cli", at=T0)
    made = await store.access.add_session(
        token, "s" * 64, at=T0, expires_at=T0 + timedelta(hours=12)
    )
    await store.access.add_session(other, "t" * 64, at=T0, expires_at=T0 + timedelta(hours=12))
    await store.close()

    with sqlite3.connect(path) as conn:  # as before the upgrade: 0009 not applied yet
        conn.execute("DELETE FROM schema_migrations WHERE version = 9")
    store = SqliteStore(path)
    await store.open()
    try:
        found = await store.access.find_session("s" * 64)
        assert found is not None and found.id == made.id and found.token.name == "bench 3"
        tokens = {t.name: t for t in await store.access.list_tokens()}
        assert set(tokens) == {"bench 3", "bench 4"} and tokens["bench 3"].id == token.id
        metrics = await store.access.add_token("prom", "metrics", "c" * 64, by="cli", at=T0)
        assert metrics.role == "metrics"
        assert await store.access.revoke_token(token.id, by="cli", at=T0)
        ended = await store.access.find_session("s" * 64)
        assert ended is None or ended.ended_at is not None  # the token's session ended
        kept = await store.access.find_session("t" * 64)
        assert kept is not None and kept.ended_at is None  # another token's did not
    finally:
        await store.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
