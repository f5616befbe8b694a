"""GET /api/alerts in pages, over real HTTP against a running service, on every store (memory,
SQLite, PostgreSQL): the triage order (severity, then a transfusion waiting, then the newest
event), cursors that stay right while alerts arrive between pages, the queue and background
sections, and cursors refused when they do not belong to the query."""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from lisguard.app import Service
from tests.conftest import service_settings
from tests.e2e import triage_feed as feed
from tests.e2e.serve_process import PG_DSN, fresh_schema, pg_reachable, with_query

RANK = {"high": 3, "medium": 2, "low": 1}


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def service(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Service]:
    async def run(url: str) -> AsyncIterator[Service]:
        svc = Service(service_settings(tmp_path, store={"url": url}))
        await svc.start()
        try:
            yield svc
        finally:
            await svc.stop()

    if request.param == "memory":
        async for svc in run("memory://"):
            yield svc
    elif request.param == "sqlite":
        async for svc in run(f"sqlite:///{tmp_path / 'lisguard.db'}"):
            yield svc
    else:
        reason = await pg_reachable(PG_DSN)
        if reason is not None:
            if os.environ.get("CI") == "true":
                pytest.fail(f"PostgreSQL at LISGUARD_TEST_PG_DSN unreachable: {reason}")
            pytest.skip(f"PostgreSQL at LISGUARD_TEST_PG_DSN unreachable: {reason}")
        async with fresh_schema(PG_DSN, "lisguard_paging") as (schema, _admin):
            async for svc in run(with_query(PG_DSN, search_path=schema)):
                yield svc


class Api:
    def __init__(self, session: aiohttp.ClientSession) -> None:
        self.session = session

    async def hl7(self, *messages: str) -> None:
        async with self.session.post(
            "/api/hl7", data="".join(messages).encode(), headers={"Accept": "application/json"}
        ) as resp:
            assert resp.status == 200
            for result in await resp.json():
                assert result["ack_code"] == "AA", result

    async def get(self, path: str, **params: Any) -> tuple[int, Any]:
        async with self.session.get(path, params=params) as resp:
            return resp.status, json.loads(await resp.text())

    async def pages(self, limit: int, **params: Any) -> list[list[dict[str, Any]]]:
        pages: list[list[dict[str, Any]]] = []
        cursor = None
        while True:
            query = {"limit": limit, **params, **({"cursor": cursor} if cursor else {})}
            status, body = await self.get("/api/alerts", **query)
            assert status == 200, body
            pages.append(body["alerts"])
            cursor = body["next_cursor"]
            if cursor is None:
                return pages
            assert len(pages) < 50, "the cursor never ends"


@pytest.fixture
async def api(service: Service) -> AsyncIterator[Api]:
    async with aiohttp.ClientSession(f"http://127.0.0.1:{service.http_port}") as session:
        yield Api(session)


# per patient: days since the first dose, the test ordered, hours since the order
PATIENTS = [
    ("MRN-A", 40, feed.CROSSMATCH, 5),
    ("MRN-B", 20, feed.ANTIBODY_SCREEN, 1),
    ("MRN-C", 30, feed.SPEP, 0.5),
    ("MRN-D", 2, feed.TYPE_AND_SCREEN, 3),
    ("MRN-E", 10, feed.ANTIBODY_SCREEN, 8),
    ("MRN-F", 60, feed.CROSSMATCH, 2),
    ("MRN-G", 1, feed.SPEP, 4),
    ("MRN-H", 90, feed.ANTIBODY_SCREEN, 6),
    ("MRN-I", 5, feed.CROSSMATCH, 9),
    ("MRN-J", 15, feed.SPEP, 7),
]


async def seed(api: Api) -> None:
    messages = []
    for mrn, days, test, hours in PATIENTS:
        messages.append(feed.dose(mrn, feed.ago(days=days)))
        messages.append(feed.order(mrn, f"O-{mrn}", test, feed.ago(hours=hours)))
    # red cells ordered as a blood product (OMB^O27): a crossmatch is due
    messages.append(feed.dose("MRN-K", feed.ago(days=12)))
    messages.append(
        feed.order("MRN-K", "O-MRN-K", feed.RED_CELLS, feed.ago(hours=10), product=True)
    )
    await api.hl7(*messages)


def when(view: dict[str, Any]) -> datetime:
    text = view["alert"]["event_time"] or view["created_at"]
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def assert_in_triage_order(views: list[dict[str, Any]]) -> None:
    """Checked from the alerts' own fields, not from the key the server sorted by."""
    for a, b in itertools.pairwise(views):
        first = (RANK[a["alert"]["severity"]], a["triage"]["transfusion"] is not None, when(a))
        then = (RANK[b["alert"]["severity"]], b["triage"]["transfusion"] is not None, when(b))
        assert first >= then, (a["alert"], b["alert"])


async def test_pages_follow_the_triage_order_and_survive_inserts(api: Api) -> None:
    await seed(api)
    status, first = await api.get("/api/alerts", limit=4)
    assert status == 200 and first["count"] == 4 and first["next_cursor"]
    total = first["total"]
    assert total == 22  # 11 first doses, 11 tests ordered on daratumumab

    # arriving between pages: one that sorts before the cursor (a crossmatch just ordered),
    # one after it (an SPEP of long ago), and a baseline reminder in between
    await api.hl7(
        feed.dose("MRN-NEW1", feed.ago(days=3)),
        feed.order("MRN-NEW1", "O-NEW1", feed.CROSSMATCH, feed.ago(minutes=5)),
        feed.dose("MRN-NEW2", feed.ago(days=150)),
        feed.order("MRN-NEW2", "O-NEW2", feed.SPEP, feed.ago(days=100)),
    )
    _, everything = await api.get("/api/alerts", limit=500)
    final = everything["alerts"]
    assert everything["total"] == total + 4 and everything["next_cursor"] is None
    assert_in_triage_order(final)
    assert final[0]["alert"]["patient"] == "MRN-NEW1"  # the newest crossmatch leads
    assert final[-1]["alert"]["patient"] == "MRN-NEW2"  # the oldest MEDIUM ends

    rest = []
    cursor = first["next_cursor"]
    while cursor:
        status, body = await api.get("/api/alerts", limit=4, cursor=cursor)
        assert status == 200, body
        rest += body["alerts"]
        cursor = body["next_cursor"]
    ids = [v["id"] for v in first["alerts"] + rest]
    assert len(ids) == len(set(ids))  # nothing twice
    after = [v["id"] for v in final]
    last = after.index(first["alerts"][-1]["id"])
    # the later pages are exactly what now follows the first page's last alert
    assert [v["id"] for v in rest] == after[last + 1 :]
    assert "MRN-NEW2" in {v["alert"]["patient"] for v in rest}
    assert "MRN-NEW1" not in {v["alert"]["patient"] for v in rest if v["alert"]["order"]}


async def test_transfusion_work_comes_first_within_a_severity(api: Api) -> None:
    await seed(api)
    _, body = await api.get("/api/alerts", limit=500, rule="bb-serology")
    views = body["alerts"]
    kinds = {v["alert"]["patient"]: v["triage"]["transfusion"] for v in views}
    assert kinds == {
        "MRN-A": "crossmatch",
        "MRN-B": None,
        "MRN-D": "type_and_screen",
        "MRN-E": None,
        "MRN-F": "crossmatch",
        "MRN-H": None,
        "MRN-I": "crossmatch",
        "MRN-K": "blood_product",
    }
    # waiting transfusions first, newest first; then the rest, newest first
    assert [v["alert"]["patient"] for v in views] == [
        "MRN-F",  # crossmatch 2 h ago
        "MRN-D",  # type & screen 3 h ago
        "MRN-A",  # crossmatch 5 h ago
        "MRN-I",  # crossmatch 9 h ago
        "MRN-K",  # red cells 10 h ago
        "MRN-B",  # antibody screen 1 h ago: newer, but no transfusion waiting
        "MRN-H",
        "MRN-E",
    ]
    assert views[0]["triage"]["transfusion_title"] == "Crossmatch ordered"


async def test_old_baseline_reminders_are_the_background(api: Api) -> None:
    await seed(api)
    queue_pages = await api.pages(3, section="queue")
    background_pages = await api.pages(3, section="background")
    queue = [v for page in queue_pages for v in page]
    background = [v for page in background_pages for v in page]
    assert_in_triage_order(queue)
    assert_in_triage_order(background)
    # first doses more than 7 days ago (the default desk.background_after_days)
    assert {v["alert"]["patient"] for v in background} == {
        "MRN-A", "MRN-B", "MRN-C", "MRN-E", "MRN-F", "MRN-H", "MRN-J", "MRN-K",
    }  # fmt: skip
    assert {v["alert"]["rule"] for v in background} == {"baseline-workup"}
    assert all(v["triage"]["background"] for v in background)
    assert not any(v["triage"]["background"] for v in queue)
    recent = [v["alert"]["patient"] for v in queue if v["alert"]["rule"] == "baseline-workup"]
    assert sorted(recent) == ["MRN-D", "MRN-G", "MRN-I"]  # 2, 1 and 5 days ago
    _, everything = await api.get("/api/alerts", limit=500)
    assert {v["id"] for v in queue} | {v["id"] for v in background} == {
        v["id"] for v in everything["alerts"]
    }
    _, body = await api.get("/api/alerts", section="background", limit=1)
    assert body["total"] == len(background) and body["background_after_days"] == 7


async def test_a_cursor_belongs_to_its_query(api: Api) -> None:
    await seed(api)
    _, body = await api.get("/api/alerts", limit=2, section="queue")
    cursor = body["next_cursor"]
    for params in (
        {"cursor": cursor, "section": "background"},
        {"cursor": cursor, "section": "queue", "rule": "spep-ife"},
        {"cursor": "not-a-cursor"},
        {"cursor": cursor[:-6]},
        {"section": "urgent"},
    ):
        status, answer = await api.get("/api/alerts", limit=2, **params)
        assert status == 400 and answer["error"], params
    status, answer = await api.get("/api/alerts", limit=2, section="queue", cursor=cursor)
    assert status == 200 and answer["count"] == 2
    assert {v["id"] for v in answer["alerts"]}.isdisjoint(v["id"] for v in body["alerts"])
