"""Plumbing shared by the store parts written once for both SQL backends (access, desk, outbox):
`?` placeholders rewritten for PostgreSQL, committed reads, statements inside a transaction."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

_PLACEHOLDER = re.compile(r"\?")


class SqlPart:
    """`store` is a SqliteStore or PostgresStore; `stamp`/`parse_time` convert timestamps to
    and from the dialect's column values."""

    def __init__(
        self,
        store: Any,
        dialect: str,
        stamp: Callable[[datetime], Any],
        parse_time: Callable[[Any], datetime],
    ) -> None:
        self._store = store
        self._pg = dialect == "postgres"
        self._stamp = stamp
        self._parse = parse_time

    def _sql(self, sql: str) -> str:
        if not self._pg:
            return sql
        count = iter(range(1, 10_000))
        return _PLACEHOLDER.sub(lambda _: f"${next(count)}", sql)

    async def _read(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        """Committed data, outside any transaction."""
        if self._pg:
            rows: list[Any] = await self._store._read("fetch", self._sql(sql), *params)
            return rows
        result: list[Any] = await self._store._read(sql, params)
        return result

    async def _exec(self, tx: Any, sql: str, params: Sequence[Any], doing: str) -> list[Any]:
        """A statement inside `tx` (a backend transaction); returns any rows."""
        conn = tx._conn
        if self._pg:
            await tx.flush()  # the unit's buffered writes first (postgres.store)
            text = self._sql(sql)
            rows: list[Any] = await tx._run(lambda: conn.fetch(text, *params), doing)
            return rows
        result: list[Any] = list(await tx._run(lambda: conn.execute_fetchall(sql, params), doing))
        return result

    def _time(self, value: Any) -> datetime | None:
        return None if value is None else self._parse(value)


# PostgreSQL advisory lock key serialising appends to the audit chain (any fixed 64-bit number)
AUDIT_CHAIN_LOCK = 0x6C67_6175_6469_7431
