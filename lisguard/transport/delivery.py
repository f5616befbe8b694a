"""The delivery channels a site switched on (settings `delivery`), as outbox workers.

The composition root builds one `Delivery` per service: its `routing` goes to the Ingestor (which
channels get an outbox row with each lead alert - each channel's test_alerts, audiences and
locations settings - and the collapse window), its workers run while the service runs, and a
graceful stop gives pending deliveries one last try.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import timedelta

import structlog

from lisguard.alerting.outbox import (
    Channel,
    DeliveryListener,
    OutboxWorker,
    RetryPolicy,
    accepts_test,
)
from lisguard.alerting.routing import AlertRouting, ChannelRoute
from lisguard.settings import ChannelRestriction, DeliverySettings, EscalationSettings
from lisguard.store.base import Store, StoreError
from lisguard.transport.escalation_delivery import escalation_channels
from lisguard.transport.hl7_outbound import Hl7Channel
from lisguard.transport.metrics import Metrics
from lisguard.transport.webhook import WebhookChannel

log = structlog.get_logger("lisguard.delivery")


def channels(settings: DeliverySettings) -> list[tuple[Channel, ChannelRoute]]:
    """The enabled channels, each with the alerts it takes; ValueError naming the setting when
    one is misconfigured."""
    found: list[tuple[Channel, ChannelRoute]] = []
    if settings.webhook.enabled:
        webhook = WebhookChannel(settings.webhook, settings.public_url)
        found.append((webhook, route(webhook, settings.webhook)))
    if settings.hl7.enabled:
        hl7 = Hl7Channel(settings.hl7)
        found.append((hl7, route(hl7, settings.hl7)))
    return found


def route(channel: Channel, restriction: ChannelRestriction) -> ChannelRoute:
    return ChannelRoute(
        channel.name,
        audiences=frozenset(restriction.audiences),
        locations=frozenset(restriction.locations),
        # alerts of test messages go only where the site said so (test_alerts)
        test_alerts=accepts_test(channel),
    )


class Delivery:
    def __init__(
        self,
        store: Store,
        settings: DeliverySettings,
        metrics: Metrics | None = None,
        escalation: EscalationSettings | None = None,
    ) -> None:
        retry = RetryPolicy(
            settings.retry.initial_seconds, settings.retry.max_seconds, settings.retry.max_attempts
        )
        enabled = channels(settings)
        # escalations go out on outbox channels of their own, never with new alerts' routing
        escalating = escalation_channels(
            store,
            escalation or EscalationSettings(),
            settings.webhook,
            settings.hl7,
            settings.public_url,
        )
        self.escalation_routes = tuple(r for _, r in escalating)
        self.workers = [
            OutboxWorker(
                store,
                channel,
                retry,
                poll_seconds=settings.poll_seconds,
                lease_seconds=settings.lease_seconds,
                observer=metrics.delivered if metrics is not None else None,
            )
            for channel, _ in [*enabled, *escalating]
        ]
        if metrics is not None:  # outbox gauges read from the store at each scrape
            metrics.channels(w.channel.name for w in self.workers)
            metrics.backlog = store.desk.backlog
        self.routing = AlertRouting(
            channels=tuple(r for _, r in enabled),
            collapse_window=timedelta(hours=settings.collapse_window_hours),
        )

    async def on_alerts(self, alerts: Sequence[object]) -> None:
        """Ingestor listener: new outbox rows are committed, wake the workers."""
        for worker in self.workers:
            worker.wake()

    def start(self, listeners: Sequence[DeliveryListener] = ()) -> None:
        for worker in self.workers:
            worker.listeners.extend(listeners)
            worker.start()

    async def flush(self, seconds: float = 5.0) -> int:
        """One last try of every pending delivery (workers stopped first); returns how many
        rows were handled. Stops a channel at its first transient failure."""
        handled = 0
        for worker in self.workers:
            await worker.stop()
            try:
                async with asyncio.timeout(seconds):
                    handled += await worker.flush()
            except (TimeoutError, StoreError) as exc:
                log.warning("outbox_flush_incomplete", channel=worker.channel.name, error=str(exc))
        return handled

    async def stop(self, flush_timeout: float = 5.0) -> None:
        await self.flush(flush_timeout)
        for worker in self.workers:
            await worker.close()
