"""PostgreSQL: the service's role cannot change the audit log; the retention role can purge.

Roles are cluster-wide: each test makes its own uniquely named ones and drops them afterwards.
"""

from __future__ import annotations

import io
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from lisguard import admin
from lisguard.settings import Settings
from lisguard.store.audit_chain import AnchorFile, verify_audit_log
from lisguard.store.base import StoreError
from lisguard.store.postgres import PostgresStore
from tests.integration.conftest import PostgresBackend
from tests.security.audit_tools import INSTALL_KEY, KEYS, T0, write_events

pytestmark = pytest.mark.postgres
REFUSED = asyncpg.exceptions.InsufficientPrivilegeError


def role_dsn(dsn: str, role: str) -> str:
    return dsn.replace("postgres@", f"{role}@", 1)


def settings_for(pg: PostgresBackend, tmp_path: Path, **retention: Any) -> Settings:
    return Settings(
        store={"url": f"{pg.dsn}?search_path={pg.schema}"},
        security={"key": INSTALL_KEY.secret.hex()},
        audit={"anchor_file": tmp_path / "anchors.jsonl"},
        retention=retention,
    )


@pytest.fixture
async def roles(pg: PostgresBackend) -> AsyncIterator[tuple[str, str]]:
    tag = uuid.uuid4().hex[:10]
    app, retention = f"lg_app_{tag}", f"lg_retention_{tag}"
    for role in (app, retention):
        await pg.admin.execute(f'CREATE ROLE "{role}" LOGIN')
    try:
        yield app, retention
    finally:
        await pg.admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = ANY($1)",
            [app, retention],
        )
        for role in (app, retention):
            await pg.admin.execute(f'DROP OWNED BY "{role}"')
            await pg.admin.execute(f'DROP ROLE "{role}"')


async def connect_as(pg: PostgresBackend, role: str) -> Any:
    return await asyncpg.connect(
        role_dsn(pg.dsn, role), server_settings={"search_path": pg.schema}, timeout=5
    )


def store_as(pg: PostgresBackend, role: str) -> PostgresStore:
    return PostgresStore(
        role_dsn(pg.dsn, role),
        server_settings={"search_path": pg.schema, "application_name": pg.schema},
        audit_key=KEYS.chain,
    )


async def test_the_app_role_appends_but_cannot_change_or_delete_audit_events(
    pg: PostgresBackend, roles: tuple[str, str], tmp_path: Path
) -> None:
    app, retention = roles
    settings = settings_for(pg, tmp_path)
    out = io.StringIO()
    assert await admin.db_grants(settings, out, app_role=app, retention_role=retention) == 0
    assert "REVOKE UPDATE, DELETE, TRUNCATE" in out.getvalue()

    service = store_as(pg, app)  # opens with the migrations applied: reads them only
    await service.open()
    try:
        await write_events(service, 5)
    finally:
        await service.close()

    conn = await connect_as(pg, app)
    try:
        assert await conn.fetchval("SELECT count(*) FROM audit_events") == 5
        for sql in (
            "UPDATE audit_events SET actor = 'mallory'",
            "DELETE FROM audit_events WHERE seq > 3",
            "TRUNCATE audit_events",
            "INSERT INTO audit_retention_roles VALUES (current_user)",  # who may purge
        ):
            with pytest.raises(REFUSED):
                await conn.execute(sql)
        # a mistaken grant: the trigger still refuses
        await pg.admin.execute(f'GRANT UPDATE, DELETE ON "{pg.schema}".audit_events TO "{app}"')
        for sql in ("UPDATE audit_events SET actor = 'mallory'", "DELETE FROM audit_events"):
            with pytest.raises(REFUSED, match="append-only"):
                await conn.execute(sql)
    finally:
        await conn.close()
    # even a superuser's UPDATE is refused - until it disables the trigger, which the keyed
    # chain then shows (tests/security/test_audit_rewrite.py)
    with pytest.raises(REFUSED, match="append-only"):
        await pg.admin.execute(f"UPDATE \"{pg.schema}\".audit_events SET actor = 'x'")


async def test_purge_runs_as_the_retention_role(
    pg: PostgresBackend, roles: tuple[str, str], tmp_path: Path
) -> None:
    app, retention = roles
    owner = settings_for(pg, tmp_path)
    assert await admin.db_grants(owner, io.StringIO(), app_role=app, retention_role=retention) == 0
    service = store_as(pg, app)
    await service.open()
    try:
        await write_events(service, 8)
        now = T0 + timedelta(days=30)
        with pytest.raises(StoreError, match="audit_events"):  # not the service's job
            await service.access.purge_audit(now, by="cli", at=now)
    finally:
        await service.close()

    url = f"{role_dsn(pg.dsn, retention)}?search_path={pg.schema}"
    settings = settings_for(pg, tmp_path, audit_event_days=1, store_url=url)
    out = io.StringIO()
    assert await admin.purge(settings, out, now=T0 + timedelta(days=30)) == 0
    assert "audit events older than 1 days removed: 8" in out.getvalue()
    check = store_as(pg, app)
    await check.open()
    try:
        report = await verify_audit_log(check, KEYS, AnchorFile(tmp_path / "anchors.jsonl"))
        assert report.ok, report.problems
        assert report.checked == 2  # the two purge events (raw, audit), keyed
    finally:
        await check.close()


async def test_grants_refuse_roles_that_no_trigger_binds(
    pg: PostgresBackend, roles: tuple[str, str], tmp_path: Path
) -> None:
    app, retention = roles
    settings = settings_for(pg, tmp_path)
    with pytest.raises(StoreError, match="superuser"):
        await admin.db_grants(settings, io.StringIO(), app_role="postgres", retention_role=app)
    with pytest.raises(StoreError, match="does not exist"):
        await admin.db_grants(settings, io.StringIO(), app_role=app, retention_role="nobody_x")
    await pg.admin.execute(f'GRANT "{retention}" TO "{app}"')
    with pytest.raises(StoreError, match="member of the retention role"):
        await admin.db_grants(settings, io.StringIO(), app_role=app, retention_role=retention)
