"""`lisguard audit anchor` then `lisguard audit verify`, as an admin runs them, and the same
answer from GET /api/audit/verify and the service's periodic anchors."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import aiohttp

from lisguard.app import Service
from lisguard.store.audit_chain import anchor_now, verify_audit_log
from lisguard.store.sqlite import SqliteStore
from tests.conftest import ServiceFactory
from tests.security.audit_tools import T0, write_events

BIN = str(Path(sys.executable).parent / "lisguard")


def installed(db: Path) -> None:
    """An installation's database, as `lisguard serve` creates it at first start: the admin
    commands administer one and refuse to create it (tests/e2e/test_cli_faults.py)."""

    async def create() -> None:
        store = SqliteStore(db)
        await store.open()
        await store.close()

    if not db.exists():
        asyncio.run(create())


def run(tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    installed(tmp / "lg.db")
    env = {
        **os.environ,
        "LISGUARD_STORE__URL": f"sqlite:///{tmp / 'lg.db'}",
        "LISGUARD_SECURITY__KEY_FILE": str(tmp / "lisguard.key"),
        "LISGUARD_AUDIT__ANCHOR_FILE": str(tmp / "anchors.jsonl"),
    }
    return subprocess.run([BIN, *args], capture_output=True, text=True, timeout=60, env=env)


def test_anchor_then_verify_end_to_end(tmp_path: Path) -> None:
    for name in ("a", "b", "c", "d"):
        assert run(tmp_path, "token", "create", "--role", "manager", "--name", name).returncode == 0
    anchored = run(tmp_path, "audit", "anchor")
    assert anchored.returncode == 0, anchored.stderr
    assert "anchored seq 4 (4 events" in anchored.stdout
    [line] = (tmp_path / "anchors.jsonl").read_text().splitlines()
    anchor = json.loads(line)
    assert anchor["seq"] == 4 and anchor["hash"].startswith("hmac:") and anchor["signature"]
    printed = run(tmp_path, "audit", "anchor", "--out", "-")
    assert printed.returncode == 0 and json.loads(printed.stdout)["seq"] == 4
    assert len((tmp_path / "anchors.jsonl").read_text().splitlines()) == 1  # printed only

    ok = run(tmp_path, "audit", "verify")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "intact: 4 events" in ok.stdout and "checked against the anchor" in ok.stdout

    # the database's administrator removes the newest two events: still a valid chain
    with sqlite3.connect(tmp_path / "lg.db") as conn:
        conn.execute("DELETE FROM audit_events WHERE seq > 2")
    bad = run(tmp_path, "audit", "verify")
    assert bad.returncode == 1
    assert "BROKEN" in bad.stdout and "the newest events were deleted" in bad.stdout
    refused = run(tmp_path, "audit", "anchor")  # no new anchor papers over it
    assert refused.returncode == 1 and "not anchored" in refused.stdout
    assert len((tmp_path / "anchors.jsonl").read_text().splitlines()) == 1


def test_verify_and_anchor_need_the_key_that_wrote_the_chain(tmp_path: Path) -> None:
    assert run(tmp_path, "token", "create", "--role", "admin", "--name", "a").returncode == 0
    (tmp_path / "lisguard.key").rename(tmp_path / "lost.key")
    for command in ("verify", "anchor"):
        proc = run(tmp_path, "audit", command)
        assert proc.returncode == 2 and "no install key" in proc.stderr  # never made up now
    assert not (tmp_path / "lisguard.key").exists()


async def test_http_verify_gives_the_same_answer(
    service_factory: ServiceFactory, tmp_path: Path
) -> None:
    svc: Service = await service_factory()
    await write_events(svc.store, 30, start=T0)
    await anchor_now(svc.store, svc.audit_keys, svc.anchors)
    url = f"http://127.0.0.1:{svc.http_port}/api/audit/verify"
    async with aiohttp.ClientSession() as http:
        async with http.get(url) as resp:
            intact = await resp.json()
        assert intact["ok"] is True, intact
        assert any("checked against the anchor" in n for n in intact["notes"])
        with sqlite3.connect(tmp_path / "lisguard.db") as conn:
            conn.execute("DELETE FROM audit_events WHERE seq > 20")
        async with http.get(url) as resp:
            broken = await resp.json()
    assert broken["ok"] is False
    assert any("the newest events were deleted" in p for p in broken["problems"])


async def test_the_service_anchors_periodically(
    service_factory: ServiceFactory, tmp_path: Path
) -> None:
    svc: Service = await service_factory(audit={"anchor_interval_minutes": 0.002})  # 0.12 s
    await write_events(svc.store, 10, start=T0)
    anchors = tmp_path / "audit-anchors.jsonl"
    for _ in range(100):
        if anchors.exists() and len(anchors.read_text().splitlines()) >= 2:
            break
        await asyncio.sleep(0.05)
    assert len(anchors.read_text().splitlines()) >= 2
    last = svc.anchors.last()
    assert last is not None and last.seq >= 10
    report = await verify_audit_log(svc.store, svc.audit_keys, svc.anchors)
    assert report.ok, report.problems
