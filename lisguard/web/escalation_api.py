"""What the pages' escalation banner reads: GET /api/escalations and the live `escalated` event.

An escalation (lisguard.alerting.escalation) counts on the banner while its alert is still
`open`; acknowledging, resolving or snoozing it takes it off, the record stays. The answer names
no patient: the rule, severity, audience, point of care and times are what a banner and a
browser notification (which a locked screen may show) need, and the card behind the link shows
the rest to whoever opens it. So it is not a patient-data read (no `phi.read` audit per poll).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from lisguard.settings import EscalationSettings
from lisguard.store.base import Store
from lisguard.store.escalation import EscalatedAlert, open_minutes
from lisguard.web.live import LiveFeed
from lisguard.web.views import AUDIENCE_TITLES, RULE_TITLES

SETTINGS: web.AppKey[EscalationSettings] = web.AppKey("escalation_settings", EscalationSettings)
ESCALATION_STORE: web.AppKey[Store] = web.AppKey("escalation_store", Store)
EVENT = "escalated"  # the live event's name (lisguard.web.live, GET /api/events)


def escalation_view(found: EscalatedAlert, now: datetime) -> dict[str, Any]:
    a, e = found.alert, found.escalation
    return {
        "id": a.id,
        "rule": a.rule.value,
        "rule_title": RULE_TITLES.get(a.rule.value, a.rule.value),
        "severity": a.severity.value,
        "audience": a.audience.value,
        "audience_title": AUDIENCE_TITLES.get(a.audience.value, a.audience.value),
        "location": a.location,
        "status": found.status,
        "created_at": found.created_at.isoformat(),
        "escalated_at": e.escalated_at.isoformat(),
        "open_minutes": open_minutes(found.created_at, now),  # until now
        "open_minutes_when_escalated": e.open_minutes,
        "channels": list(e.channels),
        "links": {"page": f"/#alert={a.id}", "self": f"/api/alerts/{a.id}"},
    }


async def list_escalations(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    store = request.app[ESCALATION_STORE]
    found = await store.escalations.still_open() if settings.enabled else []
    now = datetime.now(UTC)
    views = [escalation_view(f, now) for f in found]
    return web.json_response(
        {
            "enabled": settings.enabled,
            "after_minutes": settings.after_minutes,
            "count": len(views),
            "escalations": views,
        }
    )


async def announce(feed: LiveFeed, escalated: Sequence[EscalatedAlert]) -> None:
    """EscalationWorker listener: push each escalation to the open pages, then the alert's view
    (now with `escalated_at`) for the queue's card. Other replicas' pages get the latter through
    PostgreSQL's notifications (the escalating transaction sends them)."""
    now = datetime.now(UTC)
    for found in escalated:
        feed.publish(EVENT, escalation_view(found, now))
        await feed.changed(found.alert.id)


def install(app: web.Application, *, store: Store, settings: EscalationSettings) -> None:
    app[SETTINGS] = settings
    app[ESCALATION_STORE] = store
    app.router.add_get("/api/escalations", list_escalations)
