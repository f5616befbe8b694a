"""Changes to alerts, told to every replica's live page through PostgreSQL LISTEN/NOTIFY.

Sending: the transactions that add alerts, act on them (acknowledge, resolve, snooze) or record
a delivery outcome also run `notify` (postgres.store, sql.desk, sql.outbox). PostgreSQL
delivers a NOTIFY at COMMIT and drops it on ROLLBACK, so a listener never hears of a change it
cannot read yet, nor of one that did not happen.

The payload carries no patient data: `{"schema": ..., "origin": ..., "ids": [alert ids]}`. The
channel is database-wide, so the schema tells schemas sharing a database apart; `origin` is
the sending store's random id, so a process skips its own changes (it published them already).

Receiving: `ChangeListener` keeps one dedicated connection LISTENing (not a pooled one: a pool
would hand it back and the LISTEN would end), checks it every few seconds (a silently dropped
connection shows no other way), and reconnects with backoff. Every (re)connect calls
`on_resync`: whatever was NOTIFYed while nobody listened is lost, the pages must reload.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import asyncpg
import structlog

log = structlog.get_logger("lisguard.live")

CHANNEL = "lisguard_live"
IDS_PER_NOTIFY = 200  # 24-character ids: well under PostgreSQL's 8000-byte payload limit
NOTIFY_SQL = (
    "SELECT pg_notify($1, json_build_object("
    "'schema', current_schema(), 'origin', $2::text, 'ids', $3::text[])::text)"
)

ChangeCallback = Callable[[list[str]], None]


def new_origin() -> str:
    return secrets.token_hex(8)


async def notify(conn: Any, origin: str, alert_ids: Sequence[str]) -> None:
    """Queue the notification in `conn`'s open transaction: it goes out at COMMIT."""
    ids = list(dict.fromkeys(alert_ids))
    for start in range(0, len(ids), IDS_PER_NOTIFY):
        await conn.execute(NOTIFY_SQL, CHANNEL, origin, ids[start : start + IDS_PER_NOTIFY])


class ChangeListener:
    def __init__(
        self,
        dsn: str,
        server_settings: Mapping[str, str],
        origin: str,
        on_change: ChangeCallback,
        on_resync: Callable[[], None],
        *,
        where: str,
        connect_timeout: float = 10.0,
        check_seconds: float = 10.0,
        max_backoff: float = 30.0,
    ) -> None:
        self.dsn = dsn
        # which process a LISTENing session in pg_stat_activity belongs to (unless set)
        self.server_settings = {"application_name": f"lisguard-live/{os.getpid()}"}
        self.server_settings.update(server_settings)
        self.origin = origin
        self.on_change = on_change
        self.on_resync = on_resync
        self.where = where  # the DSN without its password, for logs
        self.connect_timeout = connect_timeout
        self.check_seconds = check_seconds
        self.max_backoff = max_backoff
        self.connected = asyncio.Event()  # set while LISTENing
        self._schema: str | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="pg-live-listener")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        backoff = 0.5
        while True:
            try:
                conn = await asyncpg.connect(
                    dsn=self.dsn,
                    timeout=self.connect_timeout,
                    server_settings=self.server_settings,
                )
            except Exception as exc:  # down, refused, auth: keep trying, the page still polls
                log.warning("live_listen_failed", store=self.where, error=_why(exc))
            else:
                try:
                    await self._listen(conn)
                except Exception as exc:
                    log.warning("live_listen_lost", store=self.where, error=_why(exc))
                finally:
                    if self.connected.is_set():  # it was up: a new loss backs off afresh
                        backoff = 0.5
                    self.connected.clear()
                    conn.terminate()  # never wait on a connection in doubt
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self.max_backoff)

    async def _listen(self, conn: Any) -> None:
        lost = asyncio.Event()
        conn.add_termination_listener(lambda _conn: lost.set())
        self._schema = await conn.fetchval("SELECT current_schema()")
        await conn.add_listener(CHANNEL, self._notified)
        self.connected.set()
        log.info("live_listening", store=self.where, schema=self._schema)
        self.on_resync()
        while not lost.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.check_seconds):
                    await lost.wait()
            if not lost.is_set():
                await conn.fetchval("SELECT 1", timeout=self.check_seconds)
        raise ConnectionError("connection closed")

    def _notified(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        try:
            data = json.loads(payload)
            if data["schema"] != self._schema or data["origin"] == self.origin:
                return
            ids = [str(i) for i in data["ids"]]
        except (ValueError, KeyError, TypeError):
            log.warning("live_notification_unreadable", size=len(payload))
            return
        self.on_change(ids)


def _why(exc: BaseException) -> str:
    # asyncpg's server message only: its DETAIL could quote values
    text = exc.message if isinstance(exc, asyncpg.PostgresError) else str(exc)
    return f"{type(exc).__name__}: {text}"[:300]
