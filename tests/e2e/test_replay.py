"""Replaying stored messages over real sockets, on every store: a dead letter refused by a site
setting is replayed after the site allows it (AA, its alert once); a message accepted before is
a duplicate (no new alert, no new row); a re-evaluation after a knowledge change raises the
missed alerts exactly once, and a second one raises nothing; every replay is audited."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from lisguard.app import Service
from lisguard.store.audit_search import AuditQuery
from lisguard.transport.mllp import msa_code
from tests.e2e import message_support as feed

Env = tuple[Service, feed.Client, Path]


@pytest.fixture(params=feed.STORES)
async def env(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Env]:
    async with feed.store_url(request.param, tmp_path) as url:
        site = feed.site_file(tmp_path / "site.yaml")
        config = feed.settings_file(
            tmp_path,
            url,
            ingest={"type_actions": {"RAS": "reject"}},
            knowledge={"files": [str(site)]},
        )
        svc = await feed.start_service(config)
        try:
            tokens = await feed.add_tokens(svc, "admin")
            async with aiohttp.ClientSession() as http:
                yield svc, feed.Client(http, feed.base_url(svc), tokens["admin"]), tmp_path
        finally:
            await svc.stop()


def allow_ras(tmp_path: Path, svc: Service) -> None:
    """The site's fix: the RAS line goes from lisguard.yaml."""
    url = svc.settings.store.url.get_secret_value()
    feed.settings_file(
        tmp_path, url, knowledge={"files": [str(tmp_path / "site.yaml")]}
    )


async def alerts_for(client: feed.Client, patient: str) -> list[dict[str, Any]]:
    status, body = await client.get("/api/alerts", patient=patient, status="all", limit="100")
    assert status == 200, body
    return [
        {"id": a["id"], "rule": a["alert"]["rule"], "status": a["status"]} for a in body["alerts"]
    ]


async def message_id(client: feed.Client, control_id: str) -> int:
    status, page = await client.get("/api/messages", control_id=control_id)
    assert status == 200 and page["messages"], page
    return int(page["messages"][-1]["id"])  # the first received under it


async def replay(client: feed.Client, ids: list[int], **options: Any) -> dict[str, Any]:
    status, report = await client.post(
        "/api/messages/replay", {"ids": ids, "reason": "test fix", **options}
    )
    assert status == 200, report
    return report


async def test_a_refused_message_replayed_after_the_site_allows_it(env: Env) -> None:
    svc, admin, tmp_path = env
    [ack] = await feed.send_mllp(svc, feed.dose("D1"))
    assert msa_code(ack) == "AR"
    dead = await message_id(admin, "D1")
    # replayed before the fix: refused again, nothing stored, no alert
    report = await replay(admin, [dead])
    assert [(r["outcome"], r["ack_code"], r["new_id"]) for r in report["results"]] == [
        ("rejected", "AR", None)
    ]
    assert await svc.store.count_messages() == 1
    assert await alerts_for(admin, feed.PATIENT) == []
    # the fix, then a reload: the settings are taken without a restart
    allow_ras(tmp_path, svc)
    status, reloaded = await admin.post("/api/admin/knowledge/reload")
    assert status == 200 and reloaded["changed"] and reloaded["ingest"]["type_actions"] == {}
    report = await replay(admin, [dead])
    [done] = report["results"]
    assert (done["outcome"], done["ack_code"]) == ("accepted", "AA") and done["new_id"]
    [alert] = await alerts_for(admin, feed.PATIENT)
    assert alert["rule"] == "baseline-workup" and done["alerts"] == [alert["id"]]
    # the new row: AA, a replay of the dead letter; the dead letter says it was replayed
    status, new = await admin.get(f"/api/messages/{done['new_id']}")
    assert status == 200 and new["outcome"] == "AA" and new["replay_of"] == dead
    assert new["peer"] == "replay" and [a["rule"] for a in new["alerts"]] == ["baseline-workup"]
    assert [e["kind"] for e in new["state_changes"]] == ["state.exposure", "state.demographics"]
    _, old = await admin.get(f"/api/messages/{dead}")
    assert [(e["kind"], e["outcome"]) for e in old["later"]] == [
        ("message.replayed", "rejected"),
        ("message.replayed", "accepted"),
    ]
    assert old["later"][1]["as"] == done["new_id"]
    # replayed again: a duplicate of the accepted replay; the sender's own resend gets its AA
    again = await replay(admin, [dead])
    assert [r["outcome"] for r in again["results"]] == ["duplicate"]
    [resent] = await feed.send_mllp(svc, feed.dose("D1"))
    assert msa_code(resent) == "AA"
    assert len(await alerts_for(admin, feed.PATIENT)) == 1  # once, whatever came after
    assert await svc.store.count_messages() == 2


async def test_an_accepted_message_replayed_is_a_duplicate(env: Env) -> None:
    svc, admin, _ = env
    acks = await feed.send_mllp(svc, feed.known_order("K1"), feed.screen("S1"))
    assert [msa_code(a) for a in acks] == ["AA", "AA"]
    before = await alerts_for(admin, feed.PATIENT)
    assert sorted(a["rule"] for a in before) == ["baseline-workup", "bb-serology"]
    ids = [await message_id(admin, "K1"), await message_id(admin, "S1")]
    report = await replay(admin, ids)
    assert [(r["outcome"], r["ack_code"], r["new_id"], r["alerts"]) for r in report["results"]] == [
        ("duplicate", "AA", None, []),
        ("duplicate", "AA", None, []),
    ]
    assert report["counts"] == {"duplicate": 2}
    assert await alerts_for(admin, feed.PATIENT) == before
    assert await svc.store.count_messages() == 2


async def test_a_reevaluation_after_a_knowledge_change_raises_the_new_alerts_once(env: Env) -> None:
    svc, admin, tmp_path = env
    # the pharmacy's own code for daratumumab, unknown: accepted, nothing known, no alert
    acks = await feed.send_mllp(svc, feed.local_order("O1"), feed.screen("S1"))
    assert [msa_code(a) for a in acks] == ["AA", "AA"]
    assert await alerts_for(admin, feed.PATIENT) == []
    ids = [await message_id(admin, "O1"), await message_id(admin, "S1")]
    feed.site_file(tmp_path / "site.yaml", [feed.LOCAL_CODE])
    status, reloaded = await admin.post("/api/admin/knowledge/reload")
    assert status == 200 and reloaded["old_version"] != reloaded["new_version"]
    # a plain replay changes nothing: they were accepted
    plain = await replay(admin, ids)
    assert [r["outcome"] for r in plain["results"]] == ["duplicate", "duplicate"]
    assert await alerts_for(admin, feed.PATIENT) == []
    # a re-evaluation: the order now records the exposure and raises the baseline work-up, the
    # screen the blood bank's alert - each once
    first = await replay(admin, list(reversed(ids)), reevaluate=True)  # replayed oldest first
    assert [r["id"] for r in first["results"]] == ids
    assert [r["outcome"] for r in first["results"]] == ["accepted", "accepted"]
    raised = await alerts_for(admin, feed.PATIENT)
    assert sorted(a["rule"] for a in raised) == ["baseline-workup", "bb-serology"]
    assert sorted(a for r in first["results"] for a in r["alerts"]) == sorted(
        a["id"] for a in raised
    )
    _, order = await admin.get(f"/api/messages/{first['results'][0]['new_id']}")
    assert order["flags"] == [f"replay-of:{ids[0]}", "reevaluation"]
    assert [e["kind"] for e in order["state_changes"]] == ["state.exposure", "state.demographics"]
    # again: nothing new to record or raise
    second = await replay(admin, ids, reevaluate=True)
    assert [(r["outcome"], r["alerts"]) for r in second["results"]] == [
        ("accepted", []),
        ("accepted", []),
    ]
    _, again = await admin.get(f"/api/messages/{second['results'][0]['new_id']}")
    assert again["state_changes"] == [] and again["alerts"] == []
    assert len(await alerts_for(admin, feed.PATIENT)) == 2
    # the audit says the difference each made
    replayed = await svc.store.access.search_audit(AuditQuery(kinds=("message.replayed",)))
    by_request: dict[str, list[Any]] = {}
    for row in replayed:
        by_request.setdefault(row.event.detail["request"], []).append(row.event.detail)
    firsts = by_request[first["request"]]
    assert sorted(a for d in firsts for a in d["alerts"]) == sorted(a["id"] for a in raised)
    assert any(c.startswith("exposure: daratumumab_iv") for d in firsts for c in d["changes"])
    assert all(d["alerts"] == [] and d["changes"] == [] for d in by_request[second["request"]])


async def test_each_replay_is_audited(env: Env) -> None:
    svc, admin, _ = env
    await feed.send_mllp(svc, feed.dose("D1"), feed.screen("S1"))
    ids = [await message_id(admin, "D1"), await message_id(admin, "S1")]
    report = await replay(admin, [*ids, 999999], reevaluate=False)
    assert [r["outcome"] for r in report["results"]] == ["rejected", "duplicate", "not-found"]
    [asked] = await svc.store.access.search_audit(AuditQuery(kinds=("replay.requested",)))
    assert asked.event.actor == "admin-jo" and asked.event.subject == report["request"]
    assert asked.event.detail["reason"] == "test fix"
    assert asked.event.detail["messages"] == [*ids, 999999]
    assert asked.event.detail["knowledge"] == svc.knowledge.version
    each = await svc.store.access.search_audit(AuditQuery(kinds=("message.replayed",)))
    assert sorted((e.event.subject, e.event.detail["outcome"]) for e in each) == sorted(
        [(str(ids[0]), "rejected"), (str(ids[1]), "duplicate")]
    )
    assert all(e.event.actor == "admin-jo" for e in each)


async def test_a_dry_run_changes_nothing(env: Env) -> None:
    svc, admin, tmp_path = env
    await feed.send_mllp(svc, feed.dose("D1"), feed.screen("S1"))
    ids = [await message_id(admin, "D1"), await message_id(admin, "S1")]
    allow_ras(tmp_path, svc)
    assert (await admin.post("/api/admin/knowledge/reload"))[0] == 200
    report = await replay(admin, ids, dry_run=True)
    assert [r["outcome"] for r in report["results"]] == ["would-process", "duplicate"]
    assert await svc.store.count_messages() == 2
    assert await alerts_for(admin, feed.PATIENT) == []
    assert await svc.store.access.search_audit(AuditQuery(kinds=("message.replayed",))) == []


async def test_a_replay_request_must_say_why_and_what(env: Env) -> None:
    svc, admin, _ = env
    await feed.send_mllp(svc, feed.dose("D1"))
    for body in (
        {"ids": [1]},
        {"ids": [1], "reason": "  "},
        {"ids": [], "reason": "x"},
        {"ids": ["1"], "reason": "x"},
        {"ids": [1], "reason": "x", "reevaluate": "yes"},
        {"ids": list(range(1, 502)), "reason": "x"},
    ):
        status, answer = await admin.post("/api/messages/replay", body)
        assert status == 422 and answer["error"], body
    assert await svc.store.access.search_audit(AuditQuery(kinds=("replay.requested",))) == []


async def test_a_browser_session_needs_its_csrf_token_to_replay(env: Env) -> None:
    svc, _, _ = env
    tokens = await feed.add_tokens(svc, "admin")  # a second admin, logging in with a browser
    base = feed.base_url(svc)
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser:
        async with browser.post(f"{base}/api/login", json={"token": tokens["admin"]}) as r:
            csrf = (await r.json())["csrf"]
        body = {"ids": [1], "reason": "x"}
        origin = {"Origin": base}
        async with browser.post(f"{base}/api/messages/replay", json=body, headers=origin) as r:
            assert r.status == 403  # no X-Lisguard-CSRF
        async with browser.post(
            f"{base}/api/admin/knowledge/reload", json={}, headers=origin
        ) as r:
            assert r.status == 403
        headers = {**origin, "X-Lisguard-CSRF": csrf}
        async with browser.post(f"{base}/api/messages/replay", json=body, headers=headers) as r:
            assert r.status == 200
