"""lisguard token / audit verify / purge as an admin runs them; MLLP source allow-list."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from lisguard.app import Service
from lisguard.store.sqlite import SqliteStore
from lisguard.transport.mllp import MllpClient
from tests.conftest import ServiceFactory

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


def run(db: Path, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    installed(db)
    env = {
        **os.environ,
        "LISGUARD_STORE__URL": f"sqlite:///{db}",
        # the install key and the audit anchors beside the database, not in the checkout
        "LISGUARD_SECURITY__KEY_FILE": str(db.parent / "lisguard.key"),
        "LISGUARD_AUDIT__ANCHOR_FILE": str(db.parent / "anchors.jsonl"),
        **extra,
    }
    return subprocess.run([BIN, *args], capture_output=True, text=True, timeout=60, env=env)


def test_token_create_prints_once_and_stores_only_a_hash(tmp_path: Path) -> None:
    db = tmp_path / "lg.db"
    proc = run(db, "token", "create", "--role", "manager", "--name", "QA lead")
    assert proc.returncode == 0, proc.stderr
    token = proc.stdout.splitlines()[0]
    assert token.startswith("lg_") and len(token) > 40
    with sqlite3.connect(db) as conn:
        stored = [r[0] for r in conn.execute("SELECT token_hash FROM api_tokens")]
        dump = "\n".join(conn.iterdump())
    assert len(stored) == 1 and token not in dump
    listed = run(db, "token", "list")
    assert "QA lead" in listed.stdout and token not in listed.stdout
    assert run(db, "token", "revoke", "1").returncode == 0
    assert "revoked" in run(db, "token", "list").stdout
    assert run(db, "token", "revoke", "1").returncode == 1


def test_bad_role_is_refused(tmp_path: Path) -> None:
    proc = run(tmp_path / "lg.db", "token", "create", "--role", "root", "--name", "x")
    assert proc.returncode == 2


def test_audit_verify_finds_an_edit(tmp_path: Path) -> None:
    db = tmp_path / "lg.db"
    for name in ("a", "b", "c"):
        assert run(db, "token", "create", "--role", "technologist", "--name", name).returncode == 0
    ok = run(db, "audit", "verify")
    assert ok.returncode == 0 and "intact: 3 events" in ok.stdout
    with sqlite3.connect(db) as conn:  # the file's owner can drop the append-only trigger
        conn.execute("DROP TRIGGER audit_events_append_only")
        conn.execute("UPDATE audit_events SET actor = 'someone else' WHERE seq = 2")
    bad = run(db, "audit", "verify")
    assert bad.returncode == 1
    assert "seq 2" in bad.stdout


def test_purge_writes_its_own_audit_event(tmp_path: Path) -> None:
    db = tmp_path / "lg.db"
    assert run(db, "token", "create", "--role", "admin", "--name", "a").returncode == 0
    proc = run(db, "purge", "--raw-days", "0", "--audit-days", "0")
    assert proc.returncode == 0, proc.stderr
    assert "emptied: 0" in proc.stdout and "removed: 1" in proc.stdout
    with sqlite3.connect(db) as conn:
        kinds = [r[0] for r in conn.execute("SELECT kind FROM audit_events ORDER BY seq")]
    assert kinds == ["retention.raw_purged", "audit.purged"]  # both at "now": kept
    assert run(db, "audit", "verify").returncode == 0


@pytest.mark.parametrize(("allowed", "served"), [(["127.0.0.0/8"], True), (["10.9.0.0/16"], False)])
async def test_mllp_source_allow_list(
    service_factory: ServiceFactory, allowed: list[str], served: bool
) -> None:
    svc: Service = await service_factory(mllp={"allowed_sources": allowed})
    assert svc.mllp_port
    msg = b"MSH|^~\\&|A|B|C|D|20260101||ADT^A08|S1|P|2.5\rPID|1||9\r"
    if served:
        async with MllpClient("127.0.0.1", svc.mllp_port) as client:
            assert "MSA|AA|S1" in await client.send(msg)
    else:
        with pytest.raises((ConnectionError, OSError)):
            async with MllpClient("127.0.0.1", svc.mllp_port, timeout=5) as client:
                await client.send(msg)
        assert await svc.store.count_messages() == 0
