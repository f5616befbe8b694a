"""The daily summary over a real socket, from audit events with known times."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import aiohttp

from lisguard.app import Service
from lisguard.store.base import AuditEvent


def at(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 3, day, hour, minute, tzinfo=UTC)


def received(when: datetime, outcome: str) -> AuditEvent:
    return AuditEvent("message.received", when, subject="1", detail={"outcome": outcome})


def raised(when: datetime, alert: str, rule: str) -> AuditEvent:
    return AuditEvent("alert.raised", when, subject=alert, detail={"rule": rule, "patient": "P1"})


def acked(when: datetime, alert: str) -> AuditEvent:
    return AuditEvent("alert.acknowledged", when, "tech-1", alert, {"rule": "x", "patient": "P1"})


async def report(service: Service, **params: str) -> Any:
    async with aiohttp.ClientSession(f"http://127.0.0.1:{service.http_port}") as http:
        async with http.get("/api/reports/daily", params=params) as resp:
            assert resp.status == 200, await resp.text()
            return await resp.json()


async def add(service: Service, *events: AuditEvent) -> None:
    async with service.store.transaction() as tx:
        await tx.add_audit(list(events))


async def test_counts_and_time_to_acknowledge_per_day(service: Service) -> None:
    await add(
        service,
        received(at(1, 9), "AA"),
        received(at(1, 10), "AA"),
        received(at(1, 11), "AE"),
        raised(at(1, 10), "a1", "bb-serology"),
        raised(at(1, 11), "a2", "baseline-workup"),
        acked(at(1, 10, 5), "a1"),  # 5 minutes
        acked(at(1, 10, 9), "a1"),  # a second acknowledgement does not count again
        acked(at(2, 1), "a2"),  # next day, counted on the day it was raised: 840 minutes
        received(at(2, 8), "AR"),
        raised(at(2, 8), "a3", "bb-serology"),  # never acknowledged
        raised(at(3, 8), "a4", "bb-serology"),
        acked(at(3, 8, 30), "a4"),
        acked(at(3, 9), "not-in-range"),  # its raise is outside the report
        received(at(4, 0), "AA"),  # the day after the report
    )
    r = await report(service, **{"from": "2026-03-01", "to": "2026-03-03"})
    assert (r["from"], r["to"], r["tz"]) == ("2026-03-01", "2026-03-03", "UTC")
    assert r["outcomes"] == ["AA", "AE", "AR"]
    assert r["rules"] == ["baseline-workup", "bb-serology"]
    day1, day2, day3 = r["days"]
    assert day1 == {
        "date": "2026-03-01",
        "messages": {"AA": 2, "AE": 1},
        "messages_total": 3,
        "alerts": {"baseline-workup": 1, "bb-serology": 1},
        "alerts_total": 2,
        "acknowledged": 2,
        # linear interpolation between 5 and 840
        "ack_minutes": {"median": 422.5, "p90": 756.5},
    }
    assert day2["messages"] == {"AR": 1} and day2["alerts"] == {"bb-serology": 1}
    assert day2["acknowledged"] == 0
    assert day2["ack_minutes"] == {"median": None, "p90": None}
    assert day3["messages_total"] == 0
    assert day3["ack_minutes"] == {"median": 30.0, "p90": 30.0}
    totals = r["totals"]
    assert totals["messages"] == {"AA": 2, "AE": 1, "AR": 1}
    assert totals["alerts"] == {"baseline-workup": 1, "bb-serology": 3}
    assert totals["acknowledged"] == 3
    assert totals["ack_minutes"] == {"median": 30.0, "p90": 678.0}  # 5, 30, 840


async def test_days_follow_the_requested_time_zone(service: Service) -> None:
    # 03:00 UTC on 2 March is still 1 March in New York (UTC-5 in winter)
    await add(service, received(at(2, 3), "AA"), received(at(2, 6), "AA"))
    r = await report(
        service, **{"from": "2026-03-01", "to": "2026-03-02", "tz": "America/New_York"}
    )
    assert r["tz"] == "America/New_York"
    assert [d["messages_total"] for d in r["days"]] == [1, 1]
    utc = await report(service, **{"from": "2026-03-01", "to": "2026-03-02"})
    assert [d["messages_total"] for d in utc["days"]] == [0, 2]


async def test_an_empty_log_gives_zeros_not_errors(service: Service) -> None:
    r = await report(service)  # default: the last 14 days up to today
    assert len(r["days"]) == 14
    assert r["days"][-1]["date"] == datetime.now(UTC).date().isoformat()
    assert r["totals"]["messages_total"] == 0
    assert r["totals"]["ack_minutes"] == {"median": None, "p90": None}
    assert r["rules"] == [] and r["outcomes"] == []
