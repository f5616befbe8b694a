"""Fixtures for the store contract tests: one fresh database per test, for every backend.

PostgreSQL: LISGUARD_TEST_PG_DSN (default postgresql://postgres@127.0.0.1:5432/test). Each test
gets its own schema (search_path via server_settings), dropped afterwards. When the server cannot
be reached the PostgreSQL tests are skipped - except on CI (CI=true), where they fail.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from lisguard.store.base import Store
from lisguard.store.memory import MemoryStore
from lisguard.store.postgres import PostgresStore, redact_dsn
from lisguard.store.sqlite import SqliteStore

CORRUPT_STATE = '{"exposures": 5}'  # no key, wrong type: what an incompatible change looks like
PG_DSN = os.environ.get("LISGUARD_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")


async def _pg_probe(dsn: str) -> None:
    conn = await asyncpg.connect(dsn, timeout=5)
    try:
        await conn.fetchval("SELECT 1")
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def pg_dsn() -> str:
    """The test server's DSN; skips (or fails on CI) when it cannot be reached."""
    try:
        # own thread: works whether or not an event loop is running in this one
        with ThreadPoolExecutor(1) as pool:
            pool.submit(asyncio.run, _pg_probe(PG_DSN)).result()
    except Exception as exc:
        reason = (
            f"PostgreSQL at {redact_dsn(PG_DSN)} is not reachable"
            f" ({type(exc).__name__}: {exc}); set LISGUARD_TEST_PG_DSN or start the server"
        )
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return PG_DSN


class Backend:
    """One fresh database of one kind; make() gives a new (unopened) store on it."""

    name = ""

    async def setup(self) -> None:
        return None

    async def teardown(self) -> None:
        return None

    def make(self, **options: Any) -> Store:
        raise NotImplementedError

    async def applied_versions(self) -> list[int] | None:
        """Versions in schema_migrations (None: this backend has no schema)."""
        return None

    async def corrupt_patient(self, key: str) -> None:
        """Overwrite a stored patient state with JSON that no longer fits PatientState."""
        raise NotImplementedError

    async def forget_alert_key(self, alert_id: str, key: str) -> None:
        """Remove a key from a stored alert's JSON: the alert as an older release stored it."""
        raise NotImplementedError


class MemoryBackend(Backend):
    name = "memory"

    def __init__(self) -> None:
        self.store = MemoryStore()

    def make(self, **options: Any) -> Store:
        return self.store  # the data lives in the instance: "reopening" is reusing it

    async def corrupt_patient(self, key: str) -> None:
        self.store._patients[key] = CORRUPT_STATE

    async def forget_alert_key(self, alert_id: str, key: str) -> None:
        row = self.store._alerts[alert_id]
        payload = json.loads(row.payload)
        del payload[key]
        self.store._alerts[alert_id] = dataclasses.replace(row, payload=json.dumps(payload))


class SqliteBackend(Backend):
    name = "sqlite"

    def __init__(self, path: Path) -> None:
        self.path = path

    def make(self, **options: Any) -> Store:
        return SqliteStore(self.path, **options)

    async def applied_versions(self) -> list[int] | None:
        def query() -> list[int]:
            import sqlite3

            conn = sqlite3.connect(self.path)
            try:
                rows = conn.execute("SELECT version FROM schema_migrations ORDER BY version")
                return [int(r[0]) for r in rows]
            finally:
                conn.close()

        return await asyncio.to_thread(query)

    async def corrupt_patient(self, key: str) -> None:
        def update() -> None:
            import sqlite3

            conn = sqlite3.connect(self.path)
            try:
                with conn:
                    conn.execute(
                        "UPDATE patients SET state = ? WHERE key = ?", (CORRUPT_STATE, key)
                    )
            finally:
                conn.close()

        await asyncio.to_thread(update)

    async def forget_alert_key(self, alert_id: str, key: str) -> None:
        def update() -> None:
            import sqlite3

            conn = sqlite3.connect(self.path)
            try:
                with conn:
                    conn.execute(
                        "UPDATE alerts SET payload = json_remove(payload, ?) WHERE id = ?",
                        (f"$.{key}", alert_id),
                    )
            finally:
                conn.close()

        await asyncio.to_thread(update)


class PostgresBackend(Backend):
    name = "postgres"

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.schema = f"lisguard_test_{uuid.uuid4().hex[:12]}"
        self.admin: Any = None  # a separate asyncpg connection for set-up and inspection

    async def setup(self) -> None:
        self.admin = await asyncpg.connect(self.dsn, timeout=5)
        await self.admin.execute(f'CREATE SCHEMA "{self.schema}"')

    async def teardown(self) -> None:
        if self.admin is None:
            return
        try:
            # a test that failed half-way may leave sessions behind: end them, then drop
            await self.admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE application_name = $1 AND pid <> pg_backend_pid()",
                self.schema,
            )
            await self.admin.execute(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE')
        finally:
            await self.admin.close()

    def make(self, **options: Any) -> Store:
        options.setdefault("max_size", 12)
        return PostgresStore(
            self.dsn,
            server_settings={"search_path": self.schema, "application_name": self.schema},
            **options,
        )

    async def applied_versions(self) -> list[int] | None:
        rows = await self.admin.fetch(
            f'SELECT version FROM "{self.schema}".schema_migrations ORDER BY version'
        )
        return [int(r["version"]) for r in rows]

    async def corrupt_patient(self, key: str) -> None:
        await self.admin.execute(
            f'UPDATE "{self.schema}".patients SET state = $1::jsonb WHERE key = $2',
            CORRUPT_STATE,
            key,
        )

    async def forget_alert_key(self, alert_id: str, key: str) -> None:
        await self.admin.execute(
            f'UPDATE "{self.schema}".alerts SET payload = payload - $1 WHERE id = $2',
            key,
            alert_id,
        )


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    if request.param == "memory":
        yield MemoryBackend()
    elif request.param == "sqlite":
        yield SqliteBackend(tmp_path / "db" / "lisguard.db")
    else:
        yield PostgresBackend(request.getfixturevalue("pg_dsn"))


@pytest.fixture
async def db(backend: Backend) -> AsyncIterator[Backend]:
    """The backend with its fresh database created (and removed afterwards)."""
    await backend.setup()
    try:
        yield backend
    finally:
        await backend.teardown()


@pytest.fixture
async def store(db: Backend) -> AsyncIterator[Store]:
    """An opened store on a fresh database."""
    s = db.make()
    await s.open()
    try:
        yield s
    finally:
        await s.close()


@pytest.fixture
async def pg(pg_dsn: str) -> AsyncIterator[PostgresBackend]:
    """A fresh PostgreSQL schema, for the PostgreSQL-only tests."""
    backend = PostgresBackend(pg_dsn)
    await backend.setup()
    try:
        yield backend
    finally:
        await backend.teardown()
