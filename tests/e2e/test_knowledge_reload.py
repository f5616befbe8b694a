"""Reloading the knowledge base and the ingest settings without a restart, over real sockets:
a good file is in force for the next message (for ingest, the pages, CDS Hooks and FHIR alike),
a bad one keeps what was in force and says which file and key; audited; SIGHUP to a
`lisguard serve` process does the same."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from lisguard.app import Service
from lisguard.domain.knowledge import load_knowledge_base
from lisguard.domain.knowledge_holder import KnowledgeHolder
from lisguard.services import Ingestor
from lisguard.store.audit_search import AuditQuery
from lisguard.store.memory import MemoryStore
from lisguard.web import api
from lisguard.web.cds_hooks import CDS
from lisguard.web.fhir_api import FHIR
from tests.e2e import message_support as feed
from tests.e2e.serve_process import free_port

BIN = str(Path(sys.executable).parent / "lisguard")
OID = "2.16.840.1.113883.3.9999.1"
Env = tuple[Service, feed.Client, Path]


@pytest.fixture(params=feed.STORES)
async def env(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Env]:
    async with feed.store_url(request.param, tmp_path) as url:
        site = feed.site_file(tmp_path / "site.yaml")
        config = feed.settings_file(tmp_path, url, knowledge={"files": [str(site)]})
        svc = await feed.start_service(config)
        try:
            tokens = await feed.add_tokens(svc, "admin")
            async with aiohttp.ClientSession() as http:
                yield svc, feed.Client(http, feed.base_url(svc), tokens["admin"]), tmp_path
        finally:
            await svc.stop()


async def rules_raised(client: feed.Client, *messages: str) -> list[list[str]]:
    """Each message posted; the rules of the alerts each raised (read back by the alert API)."""
    raised = []
    for result in await _post(client, *messages):
        rules = []
        for alert_id in result["alert_ids"]:
            status, view = await client.get(f"/api/alerts/{alert_id}")
            assert status == 200, view
            rules.append(view["alert"]["rule"])
        raised.append(rules)
    return raised


async def _post(client: feed.Client, *messages: str) -> list[dict[str, Any]]:
    results = await client.hl7(*messages)
    assert all(r["ack_code"] == "AA" for r in results), results
    return results


async def alert_rules(svc: Service) -> list[str]:
    return sorted(a.alert.rule.value for a in await svc.store.list_alerts(limit=100))


async def test_a_good_file_is_in_force_for_the_next_message(env: Env) -> None:
    svc, admin, tmp_path = env
    await _post(admin, feed.local_order("O1"))
    assert await alert_rules(svc) == []  # the pharmacy's code is not known yet
    _, before = await admin.get("/api/knowledge")
    feed.site_file(tmp_path / "site.yaml", [feed.LOCAL_CODE])
    status, done = await admin.post("/api/admin/knowledge/reload")
    assert status == 200, done
    assert done["old_version"] == before["version"] != done["new_version"]
    assert done["changed"] and done["restart_needed"] == []
    assert done["files"][1] == str(tmp_path / "site.yaml")
    _, after = await admin.get("/api/knowledge")
    assert after["version"] == done["new_version"] == svc.knowledge.version
    await _post(admin, feed.local_order("O2", n=2))
    assert await alert_rules(svc) == ["baseline-workup"]
    [event] = await svc.store.access.search_audit(AuditQuery(kinds=("config.reloaded",)))
    assert event.event.actor == "admin-jo"
    assert event.event.detail["old"]["knowledge"] == before["version"]
    assert event.event.detail["new"]["knowledge"] == done["new_version"]
    # nothing changed: reloaded all the same, and said so
    status, same = await admin.post("/api/admin/knowledge/reload")
    assert status == 200 and not same["changed"]


async def test_a_bad_file_keeps_the_knowledge_in_force(env: Env) -> None:
    svc, admin, tmp_path = env
    feed.site_file(tmp_path / "site.yaml", [feed.LOCAL_CODE])
    assert (await admin.post("/api/admin/knowledge/reload"))[0] == 200
    kept = svc.knowledge.version
    site = tmp_path / "site.yaml"
    site.write_text("drugs:\n  - id: daratumumab_iv\n    local_codez: [RX-OTHER]\n")
    status, refused = await admin.post("/api/admin/knowledge/reload")
    assert status == 422
    assert refused["error"] == f"{site}: drugs[0].local_codez: unknown key"
    assert refused["kept_version"] == kept == svc.knowledge.version
    # the knowledge in force still reads the pharmacy's code
    assert await rules_raised(admin, feed.local_order("O1")) == [["baseline-workup"]]
    [event] = await svc.store.access.search_audit(AuditQuery(kinds=("config.reload_refused",)))
    assert event.event.detail == {"error": refused["error"], "kept_version": kept}
    assert await svc.store.access.search_audit(AuditQuery(kinds=("config.reloaded",))) != []


async def test_bad_settings_keep_the_settings_in_force(env: Env) -> None:
    svc, admin, tmp_path = env
    config = tmp_path / "lisguard.yaml"
    text = config.read_text()
    config.write_text(text + "ingest:\n  processing_ids: [X]\n")
    status, refused = await admin.post("/api/admin/knowledge/reload")
    assert status == 422
    assert refused["error"] == (
        f"{config}: ingest.processing_ids.0: Input should be 'P', 'T' or 'D'"
    )
    assert svc.ingestor.policy.processing_ids == frozenset({"P"})
    # a section reload cannot apply is named, and the rest is taken
    config.write_text(
        text + "ingest:\n  processing_ids: [P, T]\ndelivery:\n  collapse_window_hours: 6\n"
    )
    status, done = await admin.post("/api/admin/knowledge/reload")
    assert status == 200 and done["restart_needed"] == ["delivery"]
    assert done["ingest"]["processing_ids"] == ["P", "T"]
    assert svc.ingestor.policy.processing_ids == frozenset({"P", "T"})


async def test_every_reader_sees_the_new_knowledge(tmp_path: Path) -> None:
    async with feed.store_url("memory", tmp_path) as url:
        site = feed.site_file(tmp_path / "site.yaml")
        config = feed.settings_file(tmp_path, url, knowledge={"files": [str(site)]})
        svc = await feed.start_service(config)
        try:
            tokens = await feed.add_tokens(svc, "admin")
            async with aiohttp.ClientSession() as http:
                admin = feed.Client(http, feed.base_url(svc), tokens["admin"])
                await _post(admin, feed.known_order("K1"), feed.screen("S1"))
                fhir = {"patient": f"urn:oid:{OID}|{feed.MRN}"}
                _, bundle = await admin.get("/fhir/DetectedIssue", **fhir)
                assert bundle["total"] == 0  # keyed under the OID itself: nobody lisguard knows
                # the site says its OID is SMH's register: FHIR keys the EHR's identifier so
                site.write_text(json.dumps({"identity": {"authorities": [["SMH", OID]]}}))
                assert (await admin.post("/api/admin/knowledge/reload"))[0] == 200
                _, bundle = await admin.get("/fhir/DetectedIssue", **fhir)
                assert bundle["total"] == 2  # the baseline work-up and the screen's alert
            assert svc.http is not None
            app = svc.http.app
            kb = svc.knowledge.kb
            assert app[api.KB] is kb and app[CDS].kb is kb and app[FHIR].kb is kb
            assert svc.ingestor.kb is kb and svc.ingestor.relevance.kb is kb
        finally:
            await svc.stop()


async def test_a_message_in_flight_finishes_with_the_knowledge_it_started_with(
    tmp_path: Path,
) -> None:
    store = MemoryStore()
    await store.open()
    holder = KnowledgeHolder(load_knowledge_base())
    ingestor = Ingestor(store, holder)
    site = feed.site_file(tmp_path / "site.yaml", [feed.LOCAL_CODE])
    text = feed.local_order("O1")
    # the store is busy (another message's transaction): this one has been read, and waits
    async with store._lock:
        in_flight = asyncio.create_task(ingestor.ingest(text.encode(), text=text))
        await asyncio.sleep(0.05)
        assert not in_flight.done()
        holder.swap(load_knowledge_base([site]))
    result = await in_flight
    assert result.outcome == "accepted" and result.alerts == []  # the old knowledge's answer
    after = feed.local_order("O2", n=2)
    assert [a.rule.value for a in (await ingestor.ingest(after.encode(), text=after)).alerts] == [
        "baseline-workup"
    ]


async def test_sighup_reloads_a_running_serve(tmp_path: Path) -> None:
    site = feed.site_file(tmp_path / "site.yaml")
    http_port = free_port()
    config = feed.settings_file(
        tmp_path,
        f"sqlite:///{tmp_path / 'lisguard.db'}",
        auth=False,
        knowledge={"files": [str(site)]},
    )
    data = config.read_text().replace("port: 0", "port: PORT", 2)
    config.write_text(data.replace("PORT", str(free_port()), 1).replace("PORT", str(http_port)))
    log_path = tmp_path / "serve.log"
    proc = _serve(config, log_path)
    base = f"http://127.0.0.1:{http_port}"
    try:
        async with aiohttp.ClientSession() as http:
            client = feed.Client(http, base, None)
            await _ready(http, base, proc, log_path)
            _, before = await client.get("/api/knowledge")
            assert await rules_raised(client, feed.local_order("O1")) == [[]]
            feed.site_file(site, [feed.LOCAL_CODE])
            proc.send_signal(signal.SIGHUP)
            after = await _version_change(client, before["version"])
            assert await rules_raised(client, feed.local_order("O2", n=2)) == [["baseline-workup"]]
            site.write_text("drugs:\n  - id: daratumumab_iv\n    local_codez: [X]\n")
            proc.send_signal(signal.SIGHUP)
            refused = await _log_event(log_path, "reload_refused")
            assert refused["error"] == f"{site}: drugs[0].local_codez: unknown key"
            assert refused["kept_version"] == after
            _, still = await client.get("/api/knowledge")
            assert still["version"] == after
            other = feed.local_order("O3", "MRN99009", n=3)
            assert await rules_raised(client, other) == [["baseline-workup"]]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _serve(config: Path, log_path: Path) -> subprocess.Popen[bytes]:
    """`lisguard serve --config config`, logging JSON lines to log_path."""
    env = {**os.environ, "LISGUARD_LOG__LEVEL": "INFO"}
    with log_path.open("ab") as log:
        return subprocess.Popen(
            [BIN, "serve", "--config", str(config)], stdout=log, stderr=log, env=env
        )


async def _ready(
    http: aiohttp.ClientSession, base: str, proc: subprocess.Popen[bytes], log: Path
) -> None:
    for _ in range(600):
        assert proc.poll() is None, log.read_text()
        try:
            async with http.get(f"{base}/readyz") as r:
                if r.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.05)
    raise AssertionError(f"never ready:\n{log.read_text()}")


async def _version_change(client: feed.Client, old: str) -> str:
    for _ in range(200):
        _, now = await client.get("/api/knowledge")
        if now["version"] != old:
            return str(now["version"])
        await asyncio.sleep(0.05)
    raise AssertionError("SIGHUP did not change the knowledge version")


async def _log_event(path: Path, event: str) -> dict[str, Any]:
    for _ in range(200):
        for line in path.read_text(errors="replace").splitlines():
            if line.startswith("{") and json.loads(line).get("event") == event:
                found: dict[str, Any] = json.loads(line)
                return found
        await asyncio.sleep(0.05)
    raise AssertionError(f"no {event} in the log:\n{path.read_text()}")
