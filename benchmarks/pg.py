"""PostgreSQL for the benchmark: the server (LISGUARD_TEST_PG_DSN, as the tests use), one schema
per contender (created and dropped by the run), and the replica run's double-alert check."""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg

from lisguard.store.postgres import redact_dsn

DSN = os.environ.get("LISGUARD_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")


async def unreachable(dsn: str = DSN) -> str | None:
    """None when the server answers, else why not (no password in it)."""
    try:
        conn = await asyncpg.connect(dsn, timeout=5)
    except Exception as exc:
        return f"PostgreSQL at {redact_dsn(dsn)} is not reachable ({type(exc).__name__}: {exc})"
    await conn.close()
    return None


def with_search_path(dsn: str, schema: str) -> str:
    """lisguard's store URL for one schema (README, Configuration reference: store.url
    `?search_path=schema`); any search_path already in the DSN is replaced."""
    parts = urlsplit(dsn)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k != "search_path"]
    return urlunsplit(parts._replace(query=urlencode([*query, ("search_path", schema)])))


def with_address(dsn: str, host: str, port: int) -> str:
    """The DSN pointed at another address (the round-trip counter in front of the server)."""
    parts = urlsplit(dsn)
    user = parts.netloc.rpartition("@")[0]
    return urlunsplit(parts._replace(netloc=f"{user}@{host}:{port}" if user else f"{host}:{port}"))


def address(dsn: str) -> tuple[str, int]:
    parts = urlsplit(dsn)
    return parts.hostname or "127.0.0.1", parts.port or 5432


class Schemas:
    """Schemas `bench_<name>` on the server, each new (a leftover of a killed run is dropped
    first) and all dropped by `drop_all`."""

    def __init__(self, dsn: str = DSN, prefix: str = "bench_") -> None:
        self.dsn, self.prefix = dsn, prefix
        self.made: list[str] = []

    async def create(self, name: str) -> str:
        """The store URL for a fresh schema `bench_<name>`."""
        schema = f"{self.prefix}{name}"
        conn = await asyncpg.connect(self.dsn, timeout=10)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            await conn.execute(f'CREATE SCHEMA "{schema}"')
        finally:
            await conn.close()
        self.made.append(schema)
        return with_search_path(self.dsn, schema)

    async def drop_all(self) -> None:
        if not self.made:
            return
        conn = await asyncpg.connect(self.dsn, timeout=10)
        try:
            for schema in self.made:
                await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await conn.close()
        self.made = []


# What must be unique however many replicas wrote the schema: the alert announced once (its
# alert.raised audit event; the replica test checks the same), one alert per patient, rule and
# order (the alert identity: lisguard.domain.alerts.alert_id), one stored row per message key.
DUPLICATES = {
    "alert raised twice (alert.raised audit events per alert id)": (
        "SELECT subject, count(*) AS n FROM audit_events WHERE kind = 'alert.raised'"
        " GROUP BY subject HAVING count(*) > 1"
    ),
    "two alerts for one patient, rule and order": (
        "SELECT patient_key || ' ' || rule || ' ' || order_id AS subject, count(*) AS n"
        " FROM alerts GROUP BY patient_key, rule, order_id HAVING count(*) > 1"
    ),
    "message stored twice (MSH-3/MSH-4/MSH-10)": (
        "SELECT concat_ws(' ', sending_application, sending_facility, control_id) AS subject,"
        " count(*) AS n FROM messages WHERE control_id IS NOT NULL"
        " GROUP BY sending_application, sending_facility, control_id HAVING count(*) > 1"
    ),
}


async def count_rows(url: str) -> dict[str, int]:
    conn = await asyncpg.connect(url, timeout=10)
    try:
        return {
            "messages": int(await conn.fetchval("SELECT count(*) FROM messages")),
            "alerts": int(await conn.fetchval("SELECT count(*) FROM alerts")),
        }
    finally:
        await conn.close()


async def duplicates(url: str) -> dict[str, list[tuple[str, int]]]:
    """What is there more than once in the schema of `url` that must be there once."""
    conn = await asyncpg.connect(url, timeout=10)
    try:
        found: dict[str, list[tuple[str, int]]] = {}
        for what, query in DUPLICATES.items():
            rows = await conn.fetch(query)
            if rows:
                found[what] = [(str(r["subject"]), int(r["n"])) for r in rows]
        return found
    finally:
        await conn.close()


async def require_no_double_alert(url: str) -> dict[str, Any]:
    """The counts of the replicas' schema; SystemExit naming what was doubled, if anything."""
    found = await duplicates(url)
    if found:
        lines = [f"  {what}: {len(rows)}, e.g. {rows[:3]}" for what, rows in found.items()]
        raise SystemExit("replicas: DOUBLE ALERTS on one PostgreSQL schema\n" + "\n".join(lines))
    return {**await count_rows(url), "duplicates": 0}
