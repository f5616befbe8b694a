"""Faults: the database goes away, turns read-only or fills up, and the service is stopped.

The promise under test is the ACK contract: AA only for what is committed; anything else gets AR
("resend later"), readiness turns false while the store cannot take writes, and once it can,
resent messages are accepted and the alerts are those of an undisturbed run.

PostgreSQL faults use a private cluster (tests/e2e/private_pg.py), never the shared server.
SQLite "disk full" is a real full file system: a small tmpfs mounted by the test (needs root).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest
from aiohttp import web

from lisguard.domain.facts import MessageKey
from lisguard.store import open_store
from lisguard.store.postgres.unit import message_lock_key
from lisguard.transport.mllp import MllpClient, msa_code
from tests.e2e.private_pg import PrivateCluster, find_bindir
from tests.e2e.serve_process import (
    BIN,
    PG_DSN,
    ServeProcess,
    free_port,
    fresh_schema,
    pg_reachable,
    with_query,
)

pytestmark = pytest.mark.slow
IN_CI = os.environ.get("CI") == "true"


def unavailable(reason: str) -> None:
    """Skip when this machine cannot run the test; on CI that is a failure."""
    if IN_CI:
        pytest.fail(reason)
    pytest.skip(reason)


def feed(patients: int) -> list[str]:
    messages = []
    for p in range(patients):
        mrn = f"FT{p:04d}"
        messages.append(
            f"MSH|^~\\&|PHARM|HOSP|LISGUARD|BB|20260301090000||RAS^O17|RX{p}|P|2.5.1\r"
            f"PID|1||{mrn}^^^HOSP^MR||DOE^JANE\rORC|RE|RXO{p}\r"
            "RXA|0|1|20260301093000|20260301100000|J9145^daratumumab^HCPCS|1800|mg||||||||||||CP\r"
        )
        for k in range(2):
            messages.append(
                f"MSH|^~\\&|LAB|HOSP|LISGUARD|BB|2026031{k}080000||ORM^O01|LAB{p}-{k}|P|2.5.1\r"
                f"PID|1||{mrn}^^^HOSP^MR||DOE^JANE\rORC|NW|TS{p}-{k}\r"
                f"OBR|1|TS{p}-{k}||890-4^Antibody screen^LN|||2026031{k}075500\r"
            )
    return messages


def key_of(message: str) -> MessageKey:
    msh = message.split("\r", 1)[0].split("|")
    return MessageKey(msh[2], msh[3], msh[9])


def expected_alerts(tmp_path: Path, messages: list[str]) -> set[tuple[str, str, str]]:
    path = tmp_path / "feed.hl7"
    path.write_text("\n".join(m.replace("\r", "\n") for m in messages))
    done = subprocess.run([str(BIN), "check", str(path)], capture_output=True, check=True)
    return {
        (a["rule"], a["patient"], a["order"]) for a in map(json.loads, done.stdout.splitlines())
    }


async def stored_alerts(url: str) -> tuple[int, list[tuple[str, str, str]]]:
    store = open_store(url)
    await store.open()
    try:
        alerts = await store.list_alerts(limit=10_000)
        return await store.count_messages(), [
            (a.alert.rule.value, a.alert.patient, a.alert.order) for a in alerts
        ]
    finally:
        await store.close()


async def wait_for_lock_waiter(admin: asyncpg.Connection, key: int) -> None:
    """Until another session waits on this advisory lock: the message is inside its transaction.
    (A bigint advisory lock shows in pg_locks as classid = high 32 bits, objid = low 32 bits.)"""
    unsigned = key & 0xFFFFFFFFFFFFFFFF
    for _ in range(2000):
        waiting = await admin.fetchval(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
            " AND classid::bigint = $1 AND objid::bigint = $2 AND objsubid = 1",
            unsigned >> 32,
            unsigned & 0xFFFFFFFF,
        )
        if waiting:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the message never reached the database")


def logged_outcomes(log: Path, control_id: str) -> list[str]:
    """The outcome of each message line the service logged for this control id, in order."""
    out = []
    for line in log.read_text().splitlines():
        if line.startswith("{"):
            record = json.loads(line)
            if record.get("event") == "message" and record.get("control_id") == control_id:
                out.append(record["outcome"])
    return out


async def send_until_aa(client: MllpClient, message: str, codes: list[str]) -> None:
    """What an interface engine does with AR: keep the message, resend it after a pause."""
    for _ in range(400):
        code = msa_code(await client.send(message.encode()))
        codes.append(code)
        if code == "AA":
            return
        assert code == "AR", code
        await asyncio.sleep(0.05)
    raise AssertionError(f"{key_of(message).control_id} never accepted")


# ----------------------------------------------------------------- PostgreSQL: private cluster


@pytest.fixture(scope="module")
def cluster() -> Iterator[PrivateCluster]:
    bindir = find_bindir()
    if bindir is None:
        unavailable("no initdb/pg_ctl on this machine (Debian: postgresql-15)")
    assert bindir is not None
    pg = PrivateCluster(bindir)
    try:
        pg.init()
        pg.start()
        yield pg
    finally:
        pg.remove()


@pytest.fixture
async def cluster_db(cluster: PrivateCluster) -> AsyncIterator[str]:
    """A fresh database on the private cluster (which a previous test may have left stopped)."""
    if not (cluster.data / "postmaster.pid").exists():
        cluster.start()
    name = f"faults_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(cluster.dsn, timeout=10)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    yield cluster.dsn.rsplit("/", 1)[0] + f"/{name}"


async def test_postgres_restart_mid_feed_naks_then_resumes(
    tmp_path: Path, cluster: PrivateCluster, cluster_db: str
) -> None:
    messages = feed(12)
    server = ServeProcess(with_query(cluster_db, max_size="4"), tmp_path / "serve.log")
    server.start()
    codes: dict[str, list[str]] = {}
    ready_while_down: list[bool] = []
    try:
        await server.wait_ready()
        async with MllpClient("127.0.0.1", server.mllp_port, timeout=60) as client:
            for i, message in enumerate(messages):
                got = codes.setdefault(key_of(message).control_id, [])
                if i == 10:
                    # shut down while this message waits inside its transaction
                    admin = await asyncpg.connect(cluster_db, timeout=10)
                    lock = message_lock_key(key_of(message))
                    await admin.execute("SELECT pg_advisory_lock($1)", lock)
                    in_flight = asyncio.create_task(client.send(message.encode()))
                    await wait_for_lock_waiter(admin, lock)
                    await asyncio.to_thread(cluster.stop, "fast")
                    got.append(msa_code(await in_flight))
                    with contextlib.suppress(Exception):
                        await admin.close(timeout=2)
                elif i == 20:
                    await asyncio.to_thread(cluster.stop, "immediate")  # a crash
                if i in (10, 20):
                    got.append(msa_code(await client.send(message.encode())))
                    ready_while_down.append(await server.ready())
                    await asyncio.to_thread(cluster.start)
                await send_until_aa(client, message, got)
        assert await server.ready()
        assert server.terminate() == 0
    finally:
        server.kill()

    assert ready_while_down == [False, False]
    first_outage = codes[key_of(messages[10]).control_id]
    second_outage = codes[key_of(messages[20]).control_id]
    # The one in flight is NAKed - unless its transaction won the race with its own backend's
    # shutdown (the lock it waited for is freed when the admin session is ended first) and
    # committed: then its AA was true, and its resends are answered as duplicates of it.
    cid = key_of(messages[10]).control_id
    assert first_outage[0] in ("AR", "AA") and first_outage[1] == "AR"  # then one while down
    final = logged_outcomes(tmp_path / "serve.log", cid)[-1]
    assert final == ("duplicate" if first_outage[0] == "AA" else "accepted")
    assert second_outage[0] == "AR"
    assert all(c[-1] == "AA" for c in codes.values())
    assert all(set(c) <= {"AR", "AA"} for c in codes.values())
    count, alerts = await stored_alerts(cluster_db)
    assert count == len(messages)  # each stored once: nothing lost, no resend stored twice
    assert len(alerts) == len(set(alerts))
    assert set(alerts) == expected_alerts(tmp_path, messages)


async def test_postgres_read_only_naks_and_not_ready(
    tmp_path: Path, cluster: PrivateCluster, cluster_db: str
) -> None:
    """What a failover to a standby looks like from here: the server takes reads, not writes."""
    messages = feed(2)
    server = ServeProcess(cluster_db, tmp_path / "serve.log")
    server.start()
    admin = await asyncpg.connect(cluster_db, timeout=10)
    try:
        await server.wait_ready()
        async with MllpClient("127.0.0.1", server.mllp_port, timeout=60) as client:
            assert msa_code(await client.send(messages[0].encode())) == "AA"
            # a reload reaches every session, lisguard's pooled ones too
            await admin.execute("ALTER SYSTEM SET default_transaction_read_only = on")
            await admin.execute("SELECT pg_reload_conf()")
            await wait_read_only(admin, True)
            ack = await client.send(messages[1].encode())
            assert msa_code(ack) == "AR"
            assert "resend later" in ack
            assert not await server.ready()
            await admin.execute("ALTER SYSTEM RESET default_transaction_read_only")
            await admin.execute("SELECT pg_reload_conf()")
            codes: list[str] = []
            for message in messages[1:]:
                await send_until_aa(client, message, codes)
        assert await server.ready()
        assert server.terminate() == 0
    finally:
        server.kill()
        await admin.close()
    count, alerts = await stored_alerts(cluster_db)
    assert count == len(messages)
    assert set(alerts) == expected_alerts(tmp_path, messages)


async def wait_read_only(admin: asyncpg.Connection, on: bool) -> None:
    """Until the reload has reached this session (sessions apply it asynchronously)."""
    want = "on" if on else "off"
    for _ in range(2000):
        if await admin.fetchval("SHOW default_transaction_read_only") == want:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the configuration reload never arrived")


# ----------------------------------------------------------------- SIGTERM


async def test_sigterm_stops_accepting_finishes_in_flight_exits_0(tmp_path: Path) -> None:
    reason = await pg_reachable(PG_DSN)
    if reason is not None:
        unavailable(f"PostgreSQL at LISGUARD_TEST_PG_DSN unreachable: {reason}")
    # ends with the first screen of patient 1: its alert leads (a repeat would be collapsed
    # into the lead and not delivered), so it must go out during the shutdown
    messages = feed(2)[:5]
    delivered: list[str] = []  # alert ids the webhook receiver got, in order

    async def hook(request: web.Request) -> web.Response:
        delivered.append(request.headers["Idempotency-Key"])
        return web.Response(status=204)

    receiver = web.Application()
    receiver.router.add_post("/hook", hook)
    runner = web.AppRunner(receiver, access_log=None)
    await runner.setup()
    hook_port = free_port()
    await web.TCPSite(runner, "127.0.0.1", hook_port).start()
    async with fresh_schema(PG_DSN, "lisguard_sigterm") as (schema, admin):
        url = with_query(PG_DSN, search_path=schema)
        server = ServeProcess(
            url,
            tmp_path / "serve.log",
            LISGUARD_DELIVERY__WEBHOOK__ENABLED="true",
            LISGUARD_DELIVERY__WEBHOOK__URL=f"http://127.0.0.1:{hook_port}/hook",
        )
        server.start()
        try:
            await server.wait_ready()
            async with MllpClient("127.0.0.1", server.mllp_port, timeout=60) as client:
                for message in messages[:-1]:
                    assert msa_code(await client.send(message.encode())) == "AA"
                last = messages[-1]
                lock = message_lock_key(key_of(last))
                await admin.execute("SELECT pg_advisory_lock($1)", lock)
                in_flight = asyncio.create_task(client.send(last.encode()))
                await wait_for_lock_waiter(admin, lock)
                assert server.proc is not None
                server.proc.send_signal(signal.SIGTERM)
                await wait_refused(server.mllp_port)  # no new connections...
                assert not in_flight.done()  # ...while the message is still being stored
                await admin.execute("SELECT pg_advisory_unlock($1)", lock)
                ack = await in_flight
            assert msa_code(ack) == "AA"
            # wait off the loop: the webhook receiver runs on it and must keep answering
            assert await asyncio.to_thread(server.proc.wait, 60) == 0
        finally:
            server.kill()
            await runner.cleanup()
        count, alerts = await stored_alerts(url)
        outbox = await admin.fetch(f'SELECT alert_id, status FROM "{schema}".outbox')
        last_alert = await admin.fetchval(
            f'SELECT a.id FROM "{schema}".alerts a JOIN "{schema}".messages m'
            " ON m.id = a.message_id WHERE m.control_id = $1",
            key_of(messages[-1]).control_id,
        )
    assert count == len(messages)
    assert set(alerts) == expected_alerts(tmp_path, messages)
    # the alert of the message finished during shutdown was delivered before the exit
    assert {r["status"] for r in outbox} == {"delivered"}
    assert sorted(delivered) == sorted(r["alert_id"] for r in outbox)
    assert last_alert in delivered
    assert '"stopped"' in server.log_text()


async def wait_refused(port: int) -> None:
    for _ in range(2000):
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except (ConnectionRefusedError, ConnectionResetError):
            return  # reset: the connect was still in the backlog of the closing listener
        writer.close()
        await asyncio.sleep(0.01)
    raise AssertionError("the listener kept accepting after SIGTERM")


# ----------------------------------------------------------------- SQLite on a small tmpfs


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs of the test's own: a file system that really fills up."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m,mode=0700", "lisguard-test", str(mount)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        unavailable(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def remount(mount: Path, options: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{options}", str(mount)], check=True)


async def test_sqlite_disk_full_naks_not_ready_then_recovers(tmpfs: Path, tmp_path: Path) -> None:
    # readiness wants 100 KB free (the default 16 MiB would never be ready on 1 MiB)
    url = f"sqlite:///{tmpfs / 'lisguard.db'}?min_free_bytes=100000"
    note = "x" * 20_000  # a long report: the file system fills within a few dozen messages

    def document(i: int) -> str:
        return (
            f"MSH|^~\\&|DOC|HOSP|LISGUARD|BB|20260301||MDM^T02|DOC{i}|P|2.5.1\r"
            f"PID|1||DF{i}^^^HOSP^MR\rOBX|1|TX|||{note}\r"
        )

    accepted = 0
    server = ServeProcess(url, tmp_path / "serve.log")
    server.start()
    try:
        await server.wait_ready()
        async with MllpClient("127.0.0.1", server.mllp_port, timeout=30) as client:
            for i in range(500):
                ack = await client.send(document(i).encode())
                if msa_code(ack) != "AA":
                    break
                accepted += 1
            assert msa_code(ack) == "AR"  # full: refused, not accepted and lost
            assert "resend later" in ack
            assert 0 < accepted < 500
            assert not await server.ready()
            assert msa_code(await client.send(document(accepted).encode())) == "AR"

            remount(tmpfs, "size=16m")  # the operator frees space
            codes: list[str] = []
            await send_until_aa(client, document(accepted), codes)
            assert await server.ready()
        assert server.terminate() == 0
    finally:
        server.kill()
    count, _ = await stored_alerts(url)
    assert count == accepted + 1


async def test_sqlite_read_only_refuses_to_start(tmpfs: Path, tmp_path: Path) -> None:
    """A database that cannot be written at start: no listener opens (the sender keeps its
    queue and reconnects later) and the error names the file."""
    db = tmpfs / "lisguard.db"
    store = open_store(f"sqlite:///{db}")
    await store.open()
    await store.close()
    remount(tmpfs, "ro")
    server = ServeProcess(f"sqlite:///{db}", tmp_path / "serve.log")
    server.start()
    assert server.proc is not None
    try:
        status = server.proc.wait(timeout=60)
    finally:
        server.kill()
    assert status != 0
    assert str(db) in server.log_text()
