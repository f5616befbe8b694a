"""Schema migrations: numbered SQL files per dialect, applied in order when a store opens.

Files live in `lisguard/store/sql/<dialect>/NNNN_name.sql` (package data). Versions start at 1
and have no gaps. Every migration that is missing from the `schema_migrations` table is applied
inside ONE transaction together with its bookkeeping row, so a failed start leaves the schema as
it was. Already-applied migrations are checked against their recorded checksum: editing a
migration after it shipped is an error (add a new file instead).

Serialising concurrent start-ups:
- SQLite: the runner holds the write lock (BEGIN IMMEDIATE) from reading `schema_migrations`
  to COMMIT.
- PostgreSQL: the runner takes a transaction-scoped advisory lock (`pg_advisory_xact_lock`,
  key chosen by the caller per schema) before it even creates `schema_migrations`, so two
  replicas starting together apply each migration once; the lock is released by the commit or
  rollback, also when the connection dies.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import re
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from typing import Any

from lisguard.store.records import StoreError

DIALECTS = ("sqlite", "postgres")

_FILE_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")

_SQLITE_BOOKKEEPING = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    INTEGER PRIMARY KEY,
    name       TEXT NOT NULL,
    checksum   TEXT NOT NULL,
    applied_at TEXT NOT NULL
)
"""

_POSTGRES_BOOKKEEPING = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    integer PRIMARY KEY,
    name       text        NOT NULL,
    checksum   text        NOT NULL,
    applied_at timestamptz NOT NULL
)
"""


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


@functools.cache
def load_migrations(dialect: str) -> tuple[Migration, ...]:
    """The migrations shipped for a dialect, in version order."""
    if dialect not in DIALECTS:
        raise ValueError(f"unknown SQL dialect {dialect!r}; expected one of {DIALECTS}")
    folder = resources.files("lisguard.store.sql").joinpath(dialect)
    found: list[Migration] = []
    for entry in folder.iterdir():
        if not entry.name.endswith(".sql"):
            continue
        match = _FILE_NAME.match(entry.name)
        if match is None:
            raise StoreError(f"badly named migration {dialect}/{entry.name}: want NNNN_name.sql")
        found.append(Migration(int(match[1]), match[2], entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if versions != list(range(1, len(found) + 1)):
        raise StoreError(f"{dialect} migrations must be numbered 1..n without gaps: {versions}")
    return tuple(found)


def pending(migrations: tuple[Migration, ...], applied: dict[int, str]) -> list[Migration]:
    """The migrations still to apply, after checking the applied ones were not edited."""
    known = {m.version: m for m in migrations}
    for version, checksum in sorted(applied.items()):
        m = known.get(version)
        if m is not None and m.checksum != checksum:
            raise StoreError(
                f"migration {version:04d}_{m.name} was changed after it was applied to this"
                " database; add a new migration instead of editing a shipped one"
            )
        # a version this build does not know was applied by a newer lisguard: its schema
        # changes are expected to be additive, so an older replica may keep running.
    return [m for m in migrations if m.version not in applied]


def split_sqlite_script(script: str) -> list[str]:
    """Split a SQL script into statements (sqlite3's executescript would COMMIT first).

    Uses sqlite3.complete_statement, so semicolons inside strings, comments and trigger bodies
    do not split a statement. Pieces that hold only comments are dropped.
    """
    statements: list[str] = []
    buffer = ""
    for piece in script.split(";"):
        buffer += piece + ";"
        if sqlite3.complete_statement(buffer):
            if _has_code(buffer):
                statements.append(buffer.strip())
            buffer = ""
    if _has_code(buffer):
        raise StoreError(f"incomplete SQL statement at the end of a migration: {buffer.strip()!r}")
    return statements


_COMMENTS = re.compile(r"--[^\n]*|/\*.*?\*/", re.DOTALL)


def _has_code(sql: str) -> bool:
    return bool(_COMMENTS.sub("", sql).replace(";", "").strip())


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


async def apply_sqlite(conn: Any) -> list[int]:
    """Apply pending migrations on an aiosqlite connection in autocommit mode
    (isolation_level=None). Returns the versions applied now. Library errors propagate: the
    caller translates them."""
    migrations = load_migrations("sqlite")
    await conn.execute("BEGIN IMMEDIATE")
    try:
        await conn.execute(_SQLITE_BOOKKEEPING)
        rows = await conn.execute_fetchall("SELECT version, checksum FROM schema_migrations")
        todo = pending(migrations, {int(r[0]): str(r[1]) for r in rows})
        for m in todo:
            for statement in split_sqlite_script(m.sql):
                await conn.execute(statement)
            await conn.execute(
                "INSERT INTO schema_migrations (version, name, checksum, applied_at)"
                " VALUES (?, ?, ?, ?)",
                (m.version, m.name, m.checksum, _now()),
            )
        await conn.execute("COMMIT")
    except BaseException:
        with contextlib.suppress(Exception):
            if conn.in_transaction:
                await conn.execute("ROLLBACK")
        raise
    return [m.version for m in todo]


async def apply_postgres(conn: Any, lock_key: int) -> list[int]:
    """Apply pending migrations on an asyncpg connection, serialised with other processes by
    pg_advisory_xact_lock(lock_key). Returns the versions applied now. Library errors propagate:
    the caller translates them."""
    migrations = load_migrations("postgres")
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", lock_key)
        await conn.execute("SET LOCAL client_min_messages = warning")  # no 'already exists'
        # CREATE ... IF NOT EXISTS needs the CREATE privilege even when the table exists: an
        # application role that does not own the schema (lisguard db grants) only reads it
        exists = await conn.fetchval(
            "SELECT to_regclass(format('%I.schema_migrations', current_schema()))"
        )
        if exists is None:
            await conn.execute(_POSTGRES_BOOKKEEPING)
        rows = await conn.fetch("SELECT version, checksum FROM schema_migrations")
        todo = pending(migrations, {int(r["version"]): str(r["checksum"]) for r in rows})
        for m in todo:
            await conn.execute(m.sql)  # no arguments: simple protocol, several statements
            await conn.execute(
                "INSERT INTO schema_migrations (version, name, checksum, applied_at)"
                " VALUES ($1, $2, $3, now())",
                m.version,
                m.name,
                m.checksum,
            )
    return [m.version for m in todo]
