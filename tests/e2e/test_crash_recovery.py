"""kill -9 mid-stream, restart: every ACKed message is stored, resends are duplicates, and no
alert is lost or doubled."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from lisguard.store import open_store
from lisguard.transport.mllp import MllpClient

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent / "lisguard"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def feed(n_patients: int) -> list[str]:
    msgs = []
    for p in range(n_patients):
        mrn = f"CR{p:04d}"
        msgs.append(
            f"MSH|^~\\&|PHARM|HOSP|LISGUARD|BB|20260301090000||RAS^O17|RX{p}|P|2.5.1\r"
            f"PID|1||{mrn}^^^HOSP^MR||DOE^JANE\r"
            f"ORC|RE|RXO{p}\r"
            f"RXA|0|1|20260301093000|20260301100000|J9145^daratumumab^HCPCS|1800|mg||||||||||||CP\r"
        )
        for k in range(3):
            msgs.append(
                f"MSH|^~\\&|LAB|HOSP|LISGUARD|BB|2026031{k}080000||ORM^O01|LAB{p}-{k}|P|2.5.1\r"
                f"PID|1||{mrn}^^^HOSP^MR||DOE^JANE\r"
                f"ORC|NW|TS{p}-{k}\r"
                f"OBR|1|TS{p}-{k}||890-4^Antibody screen^LN|||2026031{k}075500\r"
            )
    return msgs


def start(port: int, db: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "LISGUARD_MLLP__PORT": str(port),
        "LISGUARD_HTTP__ENABLED": "false",
        "LISGUARD_STORE__URL": f"sqlite:///{db}",
        "LISGUARD_LOG__LEVEL": "WARNING",
    }
    log = open(db.with_suffix(".log"), "ab")  # noqa: SIM115 - the child owns it
    try:
        return subprocess.Popen([str(BIN), "serve"], env=env, stderr=log)
    finally:
        log.close()


async def wait_listening(port: int, proc: subprocess.Popen[bytes]) -> None:
    for _ in range(300):
        assert proc.poll() is None, "server exited at start-up"
        try:
            _, w = await asyncio.open_connection("127.0.0.1", port)
            w.close()
            return
        except OSError:
            await asyncio.sleep(0.05)
    raise AssertionError("server did not start")


async def test_kill_9_loses_nothing(tmp_path: Path) -> None:
    db = tmp_path / "crash.db"
    port = free_port()
    messages = feed(40)
    acked: dict[str, str] = {}

    proc = start(port, db)
    try:
        await wait_listening(port, proc)

        async def sender() -> None:
            async with MllpClient("127.0.0.1", port, timeout=10) as client:
                for text in messages:
                    cid = text.split("|")[9]
                    acked[cid] = await client.send(text.encode())

        task = asyncio.create_task(sender())
        while len(acked) < 60:
            await asyncio.sleep(0.005)
            assert not task.done() or task.exception() is None
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        with pytest.raises((ConnectionError, OSError, TimeoutError)):
            await task
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert 60 <= len(acked) < len(messages)

    store = open_store(f"sqlite:///{db}")
    await store.open()
    stored = await store.count_messages()
    await store.close()
    assert stored >= len(acked)  # every ACKed message is in the store

    proc = start(port, db)
    try:
        await wait_listening(port, proc)
        async with MllpClient("127.0.0.1", port, timeout=10) as client:
            for text in messages:
                cid = text.split("|")[9]
                ack = await client.send(text.encode())
                if cid in acked:
                    assert ack == acked[cid], f"{cid} was not answered as a duplicate"
                assert "MSA|AA|" + cid in ack
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0

    store = open_store(f"sqlite:///{db}")
    await store.open()
    alerts = await store.list_alerts(limit=10_000)
    count = await store.count_messages()
    await store.close()
    assert count == len(messages)

    check = subprocess.run(
        [str(BIN), "check", *[str(p) for p in write_feed(tmp_path, messages)]],
        capture_output=True,
        check=True,
    )
    expected = {
        (a["rule"], a["patient"], a["order"]) for a in map(json.loads, check.stdout.splitlines())
    }
    got = [(a.alert.rule.value, a.alert.patient, a.alert.order) for a in alerts]
    assert len(got) == len(set(got))  # none doubled
    assert set(got) == expected  # none lost
    assert len(expected) == 40 * 4  # baseline + one bb-serology per order


def write_feed(tmp_path: Path, messages: list[str]) -> list[Path]:
    path = tmp_path / "feed.hl7"
    path.write_text("\n".join(m.replace("\r", "\n") for m in messages))
    return [path]
