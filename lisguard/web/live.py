"""The live page channel: in-process publish/subscribe, sent to browsers as server-sent events.

Always on. The Ingestor calls `on_alerts` after each commit that stored new alerts; the desk
routes (acknowledge, resolve, snooze) and the delivery workers call `changed`. Each event carries
the alert's current view, so a page can update its queue without asking again. A lead alert is
published when it is new and whenever its count, status or delivery changes; a collapsed repeat
is published as its lead (whose count went up).

Other replicas: on PostgreSQL, the transactions that change alerts also NOTIFY (at commit;
ids only, lisguard.store.postgres.live), and each process LISTENs on a connection of its own
and publishes what the others changed. After that connection was lost (and at first connect)
every page is sent `hello` again: it reloads its queue, as on a reconnect, since notifications
sent while nobody listened are gone. SQLite and memory stores stay in-process: the page also
reloads its queue now and then (and on every reconnect), which covers several processes on one
SQLite file.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import structlog

from lisguard.domain.alerts import Alert
from lisguard.store.base import Store, StoreError
from lisguard.web.views import alert_view

log = structlog.get_logger("lisguard.live")

QUEUE_SIZE = 256  # a browser this far behind is dropped; it reconnects and reloads


class ChangeListener(Protocol):
    def start(self) -> None: ...

    async def stop(self) -> None: ...


class LiveFeed:
    def __init__(self, store: Store) -> None:
        self.store = store
        self._subscribers: set[asyncio.Queue[str | None]] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._remote: dict[str, None] = {}  # other processes' changed ids, in order, unique
        self._draining: asyncio.Task[None] | None = None
        # a store shared by several processes tells of their changes (PostgresStore)
        factory: Callable[..., ChangeListener] | None = getattr(store, "change_listener", None)
        self.listener = factory(self.on_remote, self.resync) if factory is not None else None

    async def start(self) -> None:
        if self.listener is not None:
            self.listener.start()

    async def stop(self) -> None:
        if self.listener is not None:
            await self.listener.stop()
        if self._draining is not None:
            self._draining.cancel()

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    def subscribe(self) -> asyncio.Queue[str | None]:
        queue: asyncio.Queue[str | None] = asyncio.Queue(QUEUE_SIZE)
        self._subscribers.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[str | None]) -> None:
        self._subscribers.discard(queue)

    def publish(self, event: str, data: dict[str, Any]) -> None:
        text = f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"
        for queue in list(self._subscribers):
            try:
                queue.put_nowait(text)
            except asyncio.QueueFull:
                self._subscribers.discard(queue)
                with contextlib.suppress(asyncio.QueueFull):
                    queue.get_nowait()
                    queue.put_nowait(None)  # tell the stream to end; the page reconnects

    def close(self) -> None:
        """End every stream (service stopping)."""
        for queue in list(self._subscribers):
            with contextlib.suppress(asyncio.QueueFull, asyncio.QueueEmpty):
                while queue.full():
                    queue.get_nowait()
                queue.put_nowait(None)
        self._subscribers.clear()

    async def changed(self, alert_id: str) -> None:
        """Publish the alert's current view (or its lead's, for a collapsed repeat)."""
        if not self._subscribers:
            return
        try:
            record = await self.store.desk.get(alert_id)
            if record is not None and record.status == "collapsed" and record.lead_id:
                record = await self.store.desk.get(record.lead_id)
            if record is None:
                return
            deliveries = await self.store.desk.deliveries(record.alert.id)
            marks = await self.store.escalations.marks([record.alert.id])
        except StoreError as exc:  # the page reloads on its own; never fail the caller
            log.warning("live_update_failed", error=str(exc))
            return
        escalated_at = marks.get(record.alert.id)
        self.publish("alert", alert_view(record, deliveries, escalated_at=escalated_at))

    async def on_alerts(self, alerts: Sequence[Alert]) -> None:
        """Ingestor listener. Publishes in the background: the ACK is not held up by it."""
        if not self._subscribers:
            return
        task = asyncio.create_task(self._publish_all([a.id for a in alerts]))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _publish_all(self, alert_ids: list[str]) -> None:
        for alert_id in alert_ids:
            await self.changed(alert_id)

    def on_remote(self, alert_ids: list[str]) -> None:
        """Another process changed these alerts (committed). A burst is read once per id."""
        if not self._subscribers:
            return
        self._remote.update(dict.fromkeys(alert_ids))
        if self._draining is None or self._draining.done():
            self._draining = asyncio.create_task(self._drain())

    async def _drain(self) -> None:
        while self._remote:
            alert_id = next(iter(self._remote))
            del self._remote[alert_id]
            await self.changed(alert_id)

    def resync(self) -> None:
        """Changes may have gone unheard: every page reloads its queue (it does on `hello`)."""
        self._remote.clear()
        self.publish("hello", {"resync": True})
