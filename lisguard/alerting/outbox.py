"""Delivery workers: take due outbox rows of one channel, deliver them, record the outcome.

The rows were written in the transaction that stored the alert, so an alert is never lost to a
down receiver or a restart: the worker (this replica or another) picks the row up again. Per
channel, the row (alert id, channel) is unique and a delivered row is never claimed again: each
alert is delivered once per channel. A receiver that times out after acting on a request may see
it twice; the alert id travels with every delivery (Idempotency-Key header, HL7 MSH-10) so it
can tell.

Retries back off exponentially per row (initial * 2**(attempts-1), capped). When a delivery
fails for a reason that may pass (receiver down, timeout, 5xx, AR), the worker also pauses the
whole channel for that delay instead of trying every other pending row against the same dead
receiver.

A failing delivery is a WARNING (channel, alert id, attempt, error: never the alert's text or
patient) at its first failed attempt and then at attempts 2, 4, 8, ... (each alert and channel),
and when it is given up; the other retries are INFO. Each outcome is also told to `observer`
(metrics: lisguard_deliveries_total).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

import structlog

from lisguard.store.base import Store, StoreError
from lisguard.store.desk import AlertRecord, OutboxItem

log = structlog.get_logger("lisguard.delivery")

FAR_FUTURE = datetime(9999, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Attempt:
    """What a channel says about one delivery."""

    ok: bool
    permanent: bool = False  # retrying the same alert will not help (4xx, AE by policy)
    detail: str = ""  # why it failed: status code, ACK code and text; never patient data


class Channel(Protocol):
    """A delivery channel. One that may receive test alerts (MSH-11 T/D) says so with a true
    `accepts_test` attribute (absent: it does not)."""

    name: str  # outbox channel: "webhook", "hl7"

    async def deliver(self, record: AlertRecord) -> Attempt: ...

    async def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    initial_seconds: float = 2.0
    max_seconds: float = 300.0
    max_attempts: int = 0  # 0: keep trying until the receiver answers

    def delay(self, attempts: int) -> float:
        """Seconds to wait after the `attempts`-th failed attempt."""
        exponent = min(max(attempts - 1, 0), 60)
        return float(min(self.initial_seconds * 2**exponent, self.max_seconds))

    def gives_up(self, attempts: int) -> bool:
        return self.max_attempts > 0 and attempts >= self.max_attempts


DeliveryListener = Callable[[str], Awaitable[None]]  # called with the alert id
DeliveryObserver = Callable[[str, str], None]  # channel, outcome (delivered, retry, failed)
TEST_REFUSED = "a test alert (MSH-11 T/D): this channel takes production alerts only"


def accepts_test(channel: Channel) -> bool:
    """Whether the channel may receive alerts of test messages."""
    return getattr(channel, "accepts_test", False) is True


class OutboxWorker:
    def __init__(
        self,
        store: Store,
        channel: Channel,
        retry: RetryPolicy,
        *,
        poll_seconds: float = 1.0,
        lease_seconds: float = 120.0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        observer: DeliveryObserver | None = None,
    ) -> None:
        self.store = store
        self.observer = observer
        self.channel = channel
        self.retry = retry
        self.poll_seconds = poll_seconds
        self.lease = timedelta(seconds=lease_seconds)
        self.clock = clock
        self.listeners: list[DeliveryListener] = []  # e.g. the live page: status changed
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def wake(self) -> None:
        """New outbox rows were committed: look now rather than at the next poll."""
        self._wake.set()

    async def on_alerts(self, _alerts: object) -> None:
        """Ingestor listener: wakes the worker."""
        self.wake()

    def start(self) -> None:
        if self._task is None:
            self._stopping.clear()
            self._task = asyncio.create_task(self._run(), name=f"outbox-{self.channel.name}")

    async def stop(self, grace: float = 10.0) -> None:
        """Let a delivery in progress finish (its row would otherwise stay leased until the
        lease runs out), then end the loop; cancel it after `grace` seconds."""
        task, self._task = self._task, None
        if task is None:
            return
        self._stopping.set()
        self._wake.set()
        done, _ = await asyncio.wait({task}, timeout=grace)
        if not done:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def close(self) -> None:
        await self.stop()
        await self.channel.close()

    async def _run(self) -> None:
        while not self._stopping.is_set():
            backoff: float | None = None
            try:
                delivered, backoff = await self.deliver_due()
                if delivered and backoff is None:
                    continue  # more may be due
            except StoreError as exc:
                log.warning("outbox_store_error", channel=self.channel.name, error=str(exc))
            if backoff is not None:
                # the receiver is struggling: leave it be, whatever new rows arrive meanwhile
                await self._idle(backoff, self._stopping)
            else:
                await self._idle(self.poll_seconds, self._wake)

    async def _idle(self, seconds: float, until: asyncio.Event) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await until.wait()
        self._wake.clear()

    async def deliver_due(self, *, flush: bool = False) -> tuple[int, float | None]:
        """Deliver due rows one at a time until none is due or one fails transiently.

        Returns (rows handled, backoff seconds after a transient failure or None). `flush`
        ignores the retry schedule: one last try of everything pending (graceful stop)."""
        handled = 0
        while flush or not self._stopping.is_set():
            now = self.clock()
            items = await self.store.desk.claim(
                self.channel.name,
                now=now,
                due_before=FAR_FUTURE if flush else now,
                lease_until=now + self.lease,
                limit=1,
            )
            if not items:
                return handled, None
            handled += 1
            backoff = await self._deliver(items[0])
            if backoff is not None:
                return handled, backoff
        return handled, None

    async def _deliver(self, item: OutboxItem) -> float | None:
        record = await self.store.desk.get(item.alert_id)
        if record is None:  # cannot happen with the foreign key; never loop on it
            attempt = Attempt(False, permanent=True, detail="alert not found")
        elif record.alert.test and not accepts_test(self.channel):
            # routing gives test alerts no row here; a row from anywhere else is never sent
            attempt = Attempt(False, permanent=True, detail=TEST_REFUSED)
        else:
            try:
                attempt = await self.channel.deliver(record)
            except Exception as exc:  # a channel bug must not stop the worker
                log.exception("delivery_crashed", channel=self.channel.name, alert=item.alert_id)
                attempt = Attempt(False, detail=f"internal error: {type(exc).__name__}")
        now = self.clock()
        backoff: float | None = None
        if attempt.ok:
            outcome, next_at = "delivered", None
        elif attempt.permanent or self.retry.gives_up(item.attempts):
            outcome, next_at = "failed", None
        else:
            backoff = self.retry.delay(item.attempts)
            outcome, next_at = "retry", now + timedelta(seconds=backoff)
        await self.store.desk.record(
            item, outcome=outcome, at=now, error=attempt.detail, next_attempt_at=next_at
        )
        if self.observer is not None:
            self.observer(self.channel.name, outcome)
        report = log.warning if _warn(outcome, item.attempts) else log.info
        report(
            "delivery_failed" if outcome != "delivered" else "delivery",
            channel=self.channel.name,
            alert=item.alert_id,
            attempt=item.attempts,
            outcome=outcome,
            error=attempt.detail or None,
            retry_in=backoff,
        )
        for listener in self.listeners:
            await listener(item.alert_id)
        return backoff

    async def flush(self) -> int:
        """One try of every pending row, ignoring the schedule; stops at the first transient
        failure. For a graceful stop."""
        handled, _ = await self.deliver_due(flush=True)
        return handled


def _warn(outcome: str, attempts: int) -> bool:
    """A failure worth a warning: given up, or the 1st, 2nd, 4th, 8th... failed attempt."""
    if outcome == "delivered":
        return False
    return outcome == "failed" or attempts <= 1 or attempts & (attempts - 1) == 0
