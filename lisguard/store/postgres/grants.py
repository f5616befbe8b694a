"""PostgreSQL roles for an append-only audit log (`lisguard db grants`).

Three roles, which the DBA creates (with passwords) beforehand:
- the owner: owns the schema and tables, applies migrations (any lisguard command run with
  its URL does); nobody's day-to-day login;
- the application role (`lisguard serve`): reads and writes everything, but on audit_events
  only SELECT and INSERT;
- the retention role (`lisguard purge`, with `retention.store_url`): may also DELETE old audit
  events and empty old raw messages.

The statements below run as the owner, on the schema the store URL's search_path names. Run
them again after an upgrade that adds tables or functions. Migration 0008's trigger enforces the
same on audit_events for anyone who is not its owner or a superuser - who can always disable a
trigger: against them the keyed chain and the anchors outside the database are what detect
changes.
"""

from __future__ import annotations

from typing import Any

import asyncpg

from lisguard.store.postgres.errors import LIBRARY_ERRORS, translate
from lisguard.store.postgres.store import PostgresStore
from lisguard.store.records import StoreError


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def grant_statements(schema: str, app_role: str, retention_role: str) -> list[str]:
    s, app, ret = quote_ident(schema), quote_ident(app_role), quote_ident(retention_role)
    audit = f"{s}.audit_events"
    return [
        f"GRANT USAGE ON SCHEMA {s} TO {app}, {ret}",
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {s} TO {app}",
        f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {s} TO {app}, {ret}",
        # the ingest functions (migration 0011; PUBLIC has EXECUTE unless a DBA revoked it)
        f"GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA {s} TO {app}",
        # the audit log: appended to and read, never changed by the service
        f"REVOKE UPDATE, DELETE, TRUNCATE ON {audit} FROM {app}",
        # what decides who may purge, and the schema's history: the owner's only
        f"REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON {s}.audit_retention_roles,"
        f" {s}.schema_migrations FROM {app}, {ret}",
        # retention: reads what it opens, empties raw messages, deletes old audit events and
        # appends the audit.purged event; the probe row proves the store writable at open
        f"GRANT SELECT ON ALL TABLES IN SCHEMA {s} TO {ret}",
        f"GRANT INSERT, DELETE ON {audit} TO {ret}",
        f"GRANT UPDATE ON {s}.messages TO {ret}",
        f"GRANT INSERT, UPDATE ON {s}.store_probe TO {ret}",
        f"DELETE FROM {s}.audit_retention_roles",
        f"INSERT INTO {s}.audit_retention_roles (role_name) VALUES ({_literal(retention_role)})",
    ]


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


async def apply_grants(store: PostgresStore, app_role: str, retention_role: str) -> list[str]:
    """Check the roles, then run `grant_statements` in one transaction; returns them. The store
    must have been opened once with this (owner's) URL, so that the migrations are applied."""
    try:
        conn = await asyncpg.connect(
            store.dsn, timeout=store.connect_timeout, server_settings=store.server_settings or None
        )
    except Exception as exc:
        raise translate(exc, "cannot connect", repr(store)) from exc
    try:
        schema = await conn.fetchval("SELECT current_schema()")
        if schema is None:
            raise StoreError("no existing schema on search_path")
        await _check_roles(conn, str(schema), app_role, retention_role)
        statements = grant_statements(str(schema), app_role, retention_role)
        async with conn.transaction():
            for statement in statements:
                await conn.execute(statement)
        return statements
    except LIBRARY_ERRORS as exc:
        raise translate(exc, "grants failed", repr(store)) from exc
    finally:
        await conn.close()


async def _check_roles(conn: Any, schema: str, app_role: str, retention_role: str) -> None:
    if app_role == retention_role:
        raise StoreError("the application and retention roles must be two different roles")
    for role in (app_role, retention_role):
        if await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", role) is None:
            raise StoreError(f"role {role!r} does not exist: CREATE ROLE it first")
    owner = await conn.fetchval(
        "SELECT c.relowner::regrole::text FROM pg_class c JOIN pg_namespace n"
        " ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relname = 'audit_events'",
        schema,
    )
    if owner is None:
        raise StoreError(f"no audit_events table in schema {schema!r}: open the store first")
    super_ = await conn.fetchval("SELECT rolsuper FROM pg_roles WHERE rolname = $1", app_role)
    if super_:
        raise StoreError(f"{app_role!r} is a superuser: no grant or trigger binds it")
    if await conn.fetchval("SELECT pg_has_role($1, $2::text::regrole, 'MEMBER')", app_role, owner):
        raise StoreError(
            f"{app_role!r} owns the tables (as {owner}): an owner can drop the trigger and"
            " grant itself anything; let a separate role own the schema"
        )
    if await conn.fetchval(
        "SELECT pg_has_role($1, $2::text::regrole, 'MEMBER')", app_role, quote_ident(retention_role)
    ):
        raise StoreError(f"{app_role!r} is a member of the retention role {retention_role!r}")
