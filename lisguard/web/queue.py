"""The technologist's queue as GET /api/alerts serves it: the triage order
(lisguard.domain.triage), its sections (the bench's queue, the background of old baseline
reminders) and page cursors.

A cursor is opaque to clients: URL-safe base64 of a small JSON object holding the last alert's
place in the triage order (severity, transfusion waiting, event time, raised at, id), the
section, the background cut-off the first page used (so that an alert does not change sections
half-way through the pages) and a fingerprint of the filters (a cursor used with other filters
is refused, not silently misread). The store reads the next page as "after this place" (a
keyset), so alerts inserted meanwhile never shift or repeat a later page: they reach the page by
the live events.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import weakref
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from aiohttp import web

from lisguard.domain.knowledge import KnowledgeBase
from lisguard.domain.triage import (
    TRANSFUSION_TITLES,
    OrderedTest,
    QueueKey,
    TransfusionOrders,
    as_utc,
    is_background,
    queue_key,
)
from lisguard.settings import DeskSettings
from lisguard.store.desk import AlertQuery, AlertRecord
from lisguard.web.views import alert_view

DESK: web.AppKey[DeskSettings] = web.AppKey("desk_settings", DeskSettings)
CURSOR_VERSION = 1

_ORDERS: weakref.WeakKeyDictionary[KnowledgeBase, TransfusionOrders] = weakref.WeakKeyDictionary()


class BadCursor(ValueError):
    """The cursor is not one this service made for this query."""


def install(app: web.Application, desk: DeskSettings) -> None:
    """An extension for lisguard.transport.http.build_app: the queue's site settings."""
    app[DESK] = desk


def desk_settings(app: web.Application) -> DeskSettings:
    return app.get(DESK) or DeskSettings()  # an app built without them: the defaults


def transfusion_orders(kb: KnowledgeBase) -> TransfusionOrders:
    """One reader per knowledge base (it caches what each ordered test is)."""
    found = _ORDERS.get(kb)
    if found is None:
        found = _ORDERS[kb] = TransfusionOrders(kb)
    return found


def background_before(desk: DeskSettings, now: datetime) -> datetime | None:
    """Baseline reminders whose exposure is older than this are background (None: none)."""
    if desk.background_after_days <= 0:
        return None
    return now - timedelta(days=desk.background_after_days)


def _stamp(value: datetime) -> str:
    return as_utc(value).isoformat(timespec="microseconds")  # text order is time order


def _key_json(k: QueueKey) -> list[Any]:
    return [k.rank, k.transfusion, _stamp(k.urgent_at), _stamp(k.created_at), k.alert_id]


def fingerprint(query: AlertQuery) -> str:
    filters = [
        list(query.statuses),
        query.rule,
        query.location,
        list(query.audiences),
        query.patient,
        query.test,
        query.section,
    ]
    text = json.dumps(filters, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class Cursor:
    after: QueueKey
    before: datetime | None  # the background cut-off of the first page
    filters: str  # fingerprint()


def encode_cursor(cursor: Cursor) -> str:
    body = {
        "v": CURSOR_VERSION,
        "k": _key_json(cursor.after),
        "b": None if cursor.before is None else _stamp(cursor.before),
        "f": cursor.filters,
    }
    raw = json.dumps(body, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(text: str) -> Cursor:
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        body = json.loads(raw)
        if body["v"] != CURSOR_VERSION:
            raise BadCursor("the cursor is from another version: start again without one")
        rank, transfusion, urgent, created, alert_id = body["k"]
        after = QueueKey(
            int(rank),
            int(transfusion),
            as_utc(datetime.fromisoformat(urgent)),
            as_utc(datetime.fromisoformat(created)),
            str(alert_id),
        )
        before = None if body["b"] is None else as_utc(datetime.fromisoformat(body["b"]))
        return Cursor(after, before, str(body["f"]))
    except BadCursor:
        raise
    except (binascii.Error, ValueError, TypeError, KeyError, UnicodeDecodeError):
        raise BadCursor("the cursor is not one this service gave out") from None


def triage_view(
    record: AlertRecord, orders: TransfusionOrders, before: datetime | None
) -> dict[str, Any]:
    """What the page sorts and groups by: the same key the store ordered by."""
    alert = record.alert
    kind = orders.kind(OrderedTest.of(alert))
    key = queue_key(alert, record.created_at, kind is not None)
    return {
        "transfusion": kind,  # blood_product | crossmatch | type_and_screen | null
        "transfusion_title": TRANSFUSION_TITLES.get(kind or ""),
        "background": is_background(alert, record.created_at, before),
        "urgent_at": _stamp(key.urgent_at),
        # compare element by element, larger first: the order of GET /api/alerts
        "key": [
            key.rank,
            key.transfusion,
            _stamp(key.urgent_at),
            _stamp(key.created_at),
            key.alert_id,
        ],
    }


@dataclass(frozen=True, slots=True)
class Page:
    records: list[AlertRecord]
    next_cursor: str | None
    total: int
    before: datetime | None
    patients: dict[str, int]  # alerts of each patient on the page, in all pages


async def read_page(
    desk: Any, query: AlertQuery, cursor_text: str | None, now: datetime, settings: DeskSettings
) -> Page:
    """One page of the queue in triage order; BadCursor for a cursor not made for it."""
    query = replace(query, order="triage")
    filters = fingerprint(query)
    if cursor_text:
        cursor = decode_cursor(cursor_text)
        if cursor.filters != filters:
            raise BadCursor(
                "the cursor was made for other filters or another section: start again without one"
            )
        query = replace(query, after=cursor.after, background_before=cursor.before)
    else:
        query = replace(query, background_before=background_before(settings, now))
    wanted = query.limit
    records = await desk.search(replace(query, limit=wanted + 1))
    total = await desk.count(query)
    patients = await desk.patient_counts(query, [r.alert.patient_key for r in records])
    next_cursor = None
    if len(records) > wanted:
        records = records[:wanted]
        last = records[-1]
        pending = query.transfusion(OrderedTest.of(last.alert)) if query.transfusion else False
        key = queue_key(last.alert, last.created_at, pending)
        next_cursor = encode_cursor(Cursor(key, query.background_before, filters))
    return Page(records, next_cursor, total, query.background_before, patients)


async def page_json(
    store: Any, page: Page, orders: TransfusionOrders, section: str, settings: DeskSettings
) -> dict[str, Any]:
    marks = await store.escalations.marks([r.alert.id for r in page.records])
    views = []
    for r in page.records:
        deliveries = await store.desk.deliveries(r.alert.id)
        view = alert_view(r, deliveries, escalated_at=marks.get(r.alert.id))
        view["triage"] = triage_view(r, orders, page.before)
        views.append(view)
    return {
        "alerts": views,
        "count": len(views),
        "total": page.total,  # in this section with these filters, all pages
        "patient_totals": page.patients,  # per patient on this page: the group's full size
        "next_cursor": page.next_cursor,
        "section": section,
        "background_after_days": settings.background_after_days,
    }
