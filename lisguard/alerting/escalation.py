"""Escalation: a HIGH alert still `open` (nobody acknowledged, resolved or snoozed it) longer
than `escalation.after_minutes` after it was raised escalates, once.

Driven from the store, never from a timer per alert: a worker on every replica asks the store
every `check_seconds` for the HIGH open alerts older than the threshold and not yet escalated,
and the store records each escalation with its outbox rows and audit event in one transaction
(lisguard.store.escalation: the escalations row is the claim). So a restart neither loses an
escalation that fell due while the service was down nor repeats one, and two replicas on one
PostgreSQL escalate each alert once.

What an escalation does: the pages' banner counts it while the alert stays open (GET
/api/escalations, pushed as an `escalated` live event), the browser notifies once per alert, and
the escalation channels (`escalation.channels`: an enabled webhook or HL7 channel, restricted by
audience and location like any delivery channel) get a second delivery of the alert marked
escalated, on outbox channels of their own (`escalation.webhook`, `escalation.hl7`), so the first
delivery and the escalation are each delivered once. Alerts of test messages never escalate.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import structlog

from lisguard.alerting.routing import ChannelRoute
from lisguard.domain.alerts import Alert
from lisguard.store.base import Store, StoreError
from lisguard.store.escalation import EscalatedAlert

log = structlog.get_logger("lisguard.escalation")

CHANNEL_PREFIX = "escalation."  # outbox channel of a delivery channel's escalations
BATCH = 100  # escalations per transaction; more due are taken at once in the next one

EscalationListener = Callable[[Sequence[EscalatedAlert]], Awaitable[None]]


def escalation_channel(channel: str) -> str:
    """The outbox channel that carries a delivery channel's escalations."""
    return CHANNEL_PREFIX + channel


@dataclass(frozen=True)
class EscalationPolicy:
    after: timedelta = timedelta(minutes=15)
    # escalation outbox channels ("escalation.webhook"), each with the alerts it takes
    routes: tuple[ChannelRoute, ...] = ()

    @property
    def after_minutes(self) -> float:
        return self.after.total_seconds() / 60

    def channels_for(self, alert: Alert) -> tuple[str, ...]:
        return tuple(r.name for r in self.routes if r.admits(alert))


class EscalationWorker:
    def __init__(
        self,
        store: Store,
        policy: EscalationPolicy,
        *,
        check_seconds: float = 15.0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.store = store
        self.policy = policy
        self.check_seconds = check_seconds
        self.clock = clock
        # told of each batch after its commit: the live pages, the delivery workers
        self.listeners: list[EscalationListener] = []
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._stopping.clear()
            self._task = asyncio.create_task(self._run(), name="escalation")

    async def stop(self, grace: float = 10.0) -> None:
        """End the loop after a check in progress (its transaction commits or rolls back)."""
        task, self._task = self._task, None
        if task is None:
            return
        self._stopping.set()
        done, _ = await asyncio.wait({task}, timeout=grace)
        if not done:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                while len(await self.check()) >= BATCH and not self._stopping.is_set():
                    pass  # a backlog (after a long stop): the next batch at once
            except StoreError as exc:
                log.warning("escalation_store_error", error=str(exc))
            except Exception:  # a bug here must not end escalation for good
                log.exception("escalation_check_crashed")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.check_seconds):
                    await self._stopping.wait()

    async def check(self) -> list[EscalatedAlert]:
        """Escalate what is due now; tell the listeners. Returns what this call escalated."""
        now = self.clock()
        escalated = await self.store.escalations.escalate_due(
            now=now,
            raised_before=now - self.policy.after,
            channels_for=self.policy.channels_for,
            after_minutes=self.policy.after_minutes,
            limit=BATCH,
        )
        for found in escalated:  # never the patient: rule, severity and the alert id only
            log.warning(
                "alert_escalated",
                alert=found.alert.id,
                rule=found.alert.rule.value,
                severity=found.alert.severity.value,
                open_minutes=found.escalation.open_minutes,
                channels=list(found.escalation.channels),
            )
        if escalated:
            for listener in self.listeners:
                try:
                    await listener(escalated)
                except Exception:  # committed already: a listener's failure changes nothing
                    log.exception("escalation_listener_failed")
        return escalated
