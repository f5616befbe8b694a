"""The manager's audit API over a real socket: search filters, paging, exports, chain check."""

from __future__ import annotations

import csv
import io
import os
import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest

from lisguard.app import Service
from lisguard.domain.audit import ChainLink, canonical_time, verify_chain
from lisguard.store.base import AuditEvent, StoredAuditEvent
from lisguard.web.audit_query import read_csv, read_jsonl
from lisguard.web.auth import new_token, token_hash
from tests.conftest import PG_DSN, SAMPLES, ServiceFactory, service_settings
from tests.e2e.serve_process import fresh_schema, pg_reachable, with_query

SCENARIOS = ("03-rxa-then-type-and-screen", "01-baseline-workup")
# subjects a spreadsheet would run as formulas, and text CSV must quote
AWKWARD = [
    ('=HYPERLINK("http://x")', {"note": 'a, b; "quoted"\nsecond line', "n": 1}),
    ("'already quoted", {"unicode": "Ünïcødé ✓", "list": [1, 2]}),
    ("-1+1", {}),
]


async def send_samples(svc: Service, http: aiohttp.ClientSession, headers: Any = None) -> None:
    for scenario in SCENARIOS:
        for path in sorted((SAMPLES / scenario).glob("*.hl7")):
            async with http.post(
                f"http://127.0.0.1:{svc.http_port}/api/hl7", data=path.read_bytes(), headers=headers
            ) as resp:
                assert resp.status == 200, await resp.text()


@pytest.fixture
async def seeded(service: Service) -> AsyncIterator[tuple[Service, aiohttp.ClientSession]]:
    async with aiohttp.ClientSession(f"http://127.0.0.1:{service.http_port}") as http:
        await send_samples(service, http)
        yield service, http


async def all_events(svc: Service) -> list[StoredAuditEvent]:
    return await svc.store.list_audit(limit=100_000)


async def get_json(http: aiohttp.ClientSession, path: str, **params: str) -> Any:
    async with http.get(path, params=params) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json()


def matching(events: list[StoredAuditEvent], **want: str) -> list[int]:
    """Seqs, newest first, of the events the filters should select (worked out here, not by
    the store, so the test checks the store's query too)."""
    out = []
    for row in events:
        e = row.event
        if "kind" in want and not (
            e.kind.startswith(want["kind"])
            if want["kind"].endswith(".")
            else e.kind == want["kind"]
        ):
            continue
        # about a patient: a change of its state (subject), or naming it in detail.patient
        if "patient" in want and not (
            (e.kind.startswith("state.") and e.subject == want["patient"])
            or e.detail.get("patient") == want["patient"]
        ):
            continue
        if "rule" in want and e.detail.get("rule") != want["rule"]:
            continue
        if "user" in want and e.actor != want["user"]:
            continue
        out.append(row.seq)
    return sorted(out, reverse=True)


async def test_search_filters_match_the_log(
    seeded: tuple[Service, aiohttp.ClientSession],
) -> None:
    svc, http = seeded
    cases: list[dict[str, str]] = [
        {"kind": "alert.raised"},
        {"kind": "state."},
        {"kind": "message.received"},
        {"patient": "MRN03001^SMH"},
        {"rule": "bb-serology"},
        {"rule": "baseline-workup", "patient": "MRN01001^NGH"},
        {"user": "system", "kind": "alert."},
    ]
    for want in cases:
        page = await get_json(http, "/api/audit", **want, limit="1000")
        # the log as the search saw it: with the search's own phi.read, which names the patient
        events = await all_events(svc)
        expected = matching(events, **want)
        assert expected, f"the samples should give events for {want}"
        assert [e["seq"] for e in page["events"]] == expected, want
        assert page["next_before_seq"] is None
    assert len(matching(events, kind="alert.raised")) == 3  # two baseline-workup, one bb-serology
    assert len(matching(events, kind="message.received")) == 5
    # several event types at once
    both = await get_json(http, "/api/audit", kind="alert.raised,message.received", limit="1000")
    assert len(both["events"]) == 8


async def test_paging_visits_every_event_once_newest_first(
    seeded: tuple[Service, aiohttp.ClientSession],
) -> None:
    svc, http = seeded
    expected = matching(await all_events(svc))  # before our own reads add phi.read events
    seen: list[int] = []
    params = {"limit": "3", "before_seq": str(expected[0] + 1)}
    while True:
        page = await get_json(http, "/api/audit", **params)
        assert len(page["events"]) <= 3
        seen += [e["seq"] for e in page["events"]]
        if page["next_before_seq"] is None:
            break
        params["before_seq"] = str(page["next_before_seq"])
    assert seen == expected


async def test_time_range_and_reads_are_audited(service: Service) -> None:
    async with service.store.transaction() as tx:
        await tx.add_audit(
            [
                AuditEvent("config.loaded", datetime(2026, 1, day, 23, 30, tzinfo=UTC))
                for day in (10, 11, 12)
            ]
        )
    async with aiohttp.ClientSession(f"http://127.0.0.1:{service.http_port}") as http:
        day = await get_json(http, "/api/audit", **{"from": "2026-01-11", "to": "2026-01-11"})
        assert [e["at"][:10] for e in day["events"]] == ["2026-01-11"]
        # a date-time with an offset: 2026-01-12T00:00+01:00 is 23:00 UTC on the 11th
        after = await get_json(http, "/api/audit", **{"from": "2026-01-12T00:00:00+01:00"})
        stamps = [e["at"] for e in after["events"] if e["kind"] == "config.loaded"]
        assert stamps == [canonical_time(datetime(2026, 1, d, 23, 30)) for d in (12, 11)]
        reads = await get_json(http, "/api/audit", kind="phi.read")
    # the read is recorded before it runs: the two searches above, then this one
    assert [e["detail"]["query"] for e in reads["events"]] == [
        "kind=phi.read",
        "from=2026-01-12T00:00:00%2B01:00",
        "from=2026-01-11&to=2026-01-11",
    ]
    assert {(e["actor"], e["subject"]) for e in reads["events"]} == {("anonymous", "/api/audit")}


async def export(http: aiohttp.ClientSession, **params: str) -> tuple[str, aiohttp.ClientResponse]:
    async with http.get("/api/audit/export", params=params) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.text(), resp


def same_events(got: list[StoredAuditEvent], want: list[StoredAuditEvent]) -> None:
    assert [r.seq for r in got] == [r.seq for r in want]
    for g, w in zip(got, want, strict=True):
        assert (g.prev_hash, g.hash) == (w.prev_hash, w.hash)
        assert canonical_time(g.event.at) == canonical_time(w.event.at)
        assert (g.event.kind, g.event.actor, g.event.subject) == (
            w.event.kind,
            w.event.actor,
            w.event.subject,
        )
        assert g.event.detail == w.event.detail


async def test_exports_round_trip_and_verify_offline(
    seeded: tuple[Service, aiohttp.ClientSession],
) -> None:
    svc, http = seeded
    async with svc.store.transaction() as tx:
        await tx.add_audit(
            [AuditEvent("config.loaded", datetime.now(UTC), "admin", s, d) for s, d in AWKWARD]
        )
    before = await all_events(svc)
    text, resp = await export(http, format="csv")
    assert resp.headers["Content-Type"].startswith("text/csv")
    assert 'attachment; filename="lisguard-audit-' in resp.headers["Content-Disposition"]
    assert text.splitlines()[0] == "seq,at,kind,actor,subject,detail,prev_hash,hash"
    cells = [c for row in csv.reader(io.StringIO(text, newline="")) for c in row]
    assert '\'=HYPERLINK("http://x")' in cells  # shown as text, not run as a formula
    assert not [c for c in cells if c[:1] in ("=", "+", "-", "@")]
    from_csv = list(read_csv(text))
    same_events(from_csv, list(reversed(before)))  # newest first, nothing after the request
    before = await all_events(svc)  # now with the first export's own audit event
    assert before[-1].event.kind == "audit.exported"
    jsonl, resp = await export(http, format="jsonl")
    assert resp.headers["Content-Type"].startswith("application/jsonl")
    same_events(list(read_jsonl(jsonl)), list(reversed(before)))
    # an inspector can check the exported copy without the service (with the audit key)
    links = [
        ChainLink(r.seq, e.at, e.kind, e.actor, e.subject, e.detail, r.prev_hash, r.hash)
        for r in reversed(from_csv)
        for e in [r.event]
    ]
    report = verify_chain(links, key=svc.audit_keys.chain)
    assert report.ok and report.checked == len(from_csv)


async def test_filtered_export_matches_search_and_is_audited(
    seeded: tuple[Service, aiohttp.ClientSession],
) -> None:
    _, http = seeded
    page = await get_json(http, "/api/audit", kind="alert.", patient="MRN03001^SMH")
    text, _ = await export(http, format="csv", kind="alert.", patient="MRN03001^SMH")
    assert [r.seq for r in read_csv(text)] == [e["seq"] for e in page["events"]]
    assert len(page["events"]) == 2
    exported = await get_json(http, "/api/audit", kind="audit.exported")
    [event] = exported["events"]
    assert event["actor"] == "anonymous"  # auth is off in this test; see the role test
    assert event["detail"] == {
        "format": "csv",
        "filters": {"kind": "alert.", "patient": "MRN03001^SMH"},
    }
    nothing, _ = await export(http, format="csv", kind="no.such.kind")
    assert nothing == "seq,at,kind,actor,subject,detail,prev_hash,hash\r\n"


@pytest.mark.parametrize(
    ("path", "params", "says"),
    [
        ("/api/audit", {"from": "yesterday"}, "from='yesterday'"),
        ("/api/audit", {"to": "2026-13-01"}, "to='2026-13-01'"),
        ("/api/audit", {"from": "2026-02-02", "to": "2026-02-01"}, "before"),
        ("/api/audit", {"limit": "0"}, "limit"),
        ("/api/audit", {"limit": "5000"}, "limit"),
        ("/api/audit", {"before_seq": "abc"}, "before_seq"),
        ("/api/audit", {"kind": "Alert Raised; DROP"}, "kind"),
        ("/api/audit", {"actor": "system"}, "unknown parameter actor"),
        ("/api/audit/export", {"format": "xml"}, "format"),
        ("/api/audit/export", {"limit": "10"}, "unknown parameter limit"),
        ("/api/reports/daily", {"from": "2026-03-02", "to": "2026-03-01"}, "after"),
        ("/api/reports/daily", {"from": "2020-01-01", "to": "2026-01-01"}, "366"),
        ("/api/reports/daily", {"tz": "Mars/Olympus_Mons"}, "time zone"),
        ("/api/reports/daily", {"to": "03/01/2026"}, "to="),
    ],
)
async def test_bad_input_is_a_clear_400(
    service: Service, path: str, params: dict[str, str], says: str
) -> None:
    async with aiohttp.ClientSession(f"http://127.0.0.1:{service.http_port}") as http:
        async with http.get(path, params=params) as resp:
            assert resp.status == 400
            body = await resp.json()
    assert body["status"] == 400
    assert says in body["error"]


async def test_only_managers_and_admins_may(service_factory: ServiceFactory) -> None:
    svc: Service = await service_factory(http={"auth_required": True})
    tokens = {}
    for role in ("technologist", "manager", "admin", "sender"):
        tokens[role] = new_token()
        await svc.store.access.add_token(
            f"{role}-1", role, token_hash(tokens[role]), by="test", at=datetime.now(UTC)
        )
    paths = ["/api/audit", "/api/audit/export", "/api/audit/verify", "/api/reports/daily"]
    async with aiohttp.ClientSession(f"http://127.0.0.1:{svc.http_port}") as http:
        for path in paths:
            for who, status in [
                (None, 401),
                ("technologist", 403),
                ("sender", 403),
                ("manager", 200),
                ("admin", 200),
            ]:
                headers = {"Authorization": f"Bearer {tokens[who]}"} if who else {}
                async with http.get(path, headers=headers) as resp:
                    assert resp.status == status, (path, who)
        headers = {"Authorization": f"Bearer {tokens['manager']}"}
        async with http.get("/api/audit", params={"kind": "audit."}, headers=headers) as resp:
            events = (await resp.json())["events"]
    # the export names the manager who made it
    assert [(e["kind"], e["actor"]) for e in events] == [
        ("audit.exported", "admin-1"),
        ("audit.exported", "manager-1"),
    ]


async def test_verify_finds_an_edited_row(
    seeded: tuple[Service, aiohttp.ClientSession], tmp_path: Path
) -> None:
    svc, http = seeded
    intact = await get_json(http, "/api/audit/verify")
    assert intact["ok"] is True and intact["problems"] == []
    assert intact["checked"] == len(await all_events(svc))
    # change one event behind the service's back, as someone with file access could
    with sqlite3.connect(tmp_path / "lisguard.db") as db:
        db.execute("DROP TRIGGER audit_events_append_only")  # the file's owner can
        db.execute("UPDATE audit_events SET actor = 'mallory' WHERE seq = 4")
    broken = await get_json(http, "/api/audit/verify")
    assert broken["ok"] is False
    assert any(p.startswith("seq 4:") and "edited" in p for p in broken["problems"])


@pytest.fixture
async def pg_service(tmp_path: Path) -> AsyncIterator[Service]:
    reason = await pg_reachable(PG_DSN)
    if reason is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL at LISGUARD_TEST_PG_DSN unreachable: {reason}")
        pytest.skip(f"PostgreSQL at LISGUARD_TEST_PG_DSN unreachable: {reason}")
    async with fresh_schema(PG_DSN, "lisguard_manager") as (schema, _admin):
        url = with_query(PG_DSN, search_path=schema)
        svc = Service(service_settings(tmp_path, store={"url": url}))
        await svc.start()
        try:
            yield svc
        finally:
            await svc.stop()


@pytest.mark.postgres
async def test_search_and_export_on_postgresql(pg_service: Service) -> None:
    async with aiohttp.ClientSession(f"http://127.0.0.1:{pg_service.http_port}") as http:
        await send_samples(pg_service, http)
        async with pg_service.store.transaction() as tx:
            await tx.add_audit(
                [AuditEvent("config.loaded", datetime.now(UTC), "admin", s, d) for s, d in AWKWARD]
            )
        for want in ({"patient": "MRN03001^SMH"}, {"rule": "bb-serology"}, {"kind": "state."}):
            page = await get_json(http, "/api/audit", **want, limit="1000")
            events = await all_events(pg_service)  # with this search's phi.read
            assert [e["seq"] for e in page["events"]] == matching(events, **want), want
        events = await all_events(pg_service)  # with the searches' phi.read events
        text, _ = await export(http, format="csv")
        same_events(list(read_csv(text)), list(reversed(events)))
        intact = await get_json(http, "/api/audit/verify")
        assert intact["ok"] is True
        today = datetime.now(UTC).date().isoformat()
        daily = await get_json(http, "/api/reports/daily", **{"from": today, "to": today})
    assert daily["totals"]["messages"] == {"AA": 5}
    assert daily["totals"]["alerts"] == {"baseline-workup": 2, "bb-serology": 1}


async def test_reads_of_a_patients_data_show_in_its_audit(
    seeded: tuple[Service, aiohttp.ClientSession],
) -> None:
    """An inspector asks who looked at this patient's data: the reads name the patient."""
    _svc, http = seeded
    key = "MRN03001^SMH"
    await get_json(http, f"/api/patients/{quote(key, safe='')}")
    await get_json(http, "/api/alerts", patient=key)
    await get_json(http, "/api/alerts")  # not about one patient
    page = await get_json(http, "/api/audit", patient=key, kind="phi.read")
    assert [e["subject"] for e in page["events"]] == [
        "/api/audit",  # this search, recorded before it runs
        "/api/alerts",
        f"/api/patients/{key}",
    ]
    assert all(e["detail"]["patient"] == key for e in page["events"])
