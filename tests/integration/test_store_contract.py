"""The Store contract, run against every backend (memory, SQLite, PostgreSQL), plus the
backend-specific promises: SQLite durability and failure translation, PostgreSQL locking."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sqlite3
import stat
import sys
import tempfile
import tomllib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from lisguard.domain.alerts import Alert, EvidenceItem, Recommendation, RuleId, Severity, alert_id
from lisguard.domain.facts import MessageKey
from lisguard.domain.patient import Exposure, PatientState
from lisguard.store import open_store
from lisguard.store.audit_chain import verify_audit_chain
from lisguard.store.base import (
    AuditEvent,
    NewMessage,
    Store,
    StoreError,
    StoreUnavailable,
)
from lisguard.store.memory import MemoryStore
from lisguard.store.postgres import PostgresStore
from lisguard.store.postgres.unit import message_lock_key, patient_lock_key
from lisguard.store.sql.migrations import load_migrations, split_sqlite_script
from lisguard.store.sqlite import SqliteStore

from .conftest import Backend, PostgresBackend

REPO = Path(__file__).resolve().parents[2]
T0 = datetime(2024, 5, 1, 8, 30, 0, 123456, tzinfo=UTC)
# a test that misbehaves must not hang the suite; never used as an assertion
SAFETY = 20.0


# ---------------------------------------------------------------- builders


def msg(
    control_id: str | None = "C1",
    *,
    app: str = "LAB",
    facility: str = "HOSP",
    raw: bytes | None = None,
    content_hash: str = "h",
    error: str = "",
    received_at: datetime = T0,
    flags: tuple[str, ...] = (),
) -> NewMessage:
    key = None if control_id is None else MessageKey(app, facility, control_id)
    return NewMessage(
        raw=raw
        if raw is not None
        else f"MSH|^~\\&|{app}|{facility}|||||ORM^O01|{control_id}".encode(),
        content_hash=content_hash,
        received_at=received_at,
        ack=f"MSH|^~\\&|LISGUARD\rMSA|AA|{control_id}",
        outcome="AE" if error else "AA",
        key=key,
        message_type="ORM^O01",
        peer="10.0.0.7:5123",
        error=error,
        flags=flags,
    )


def make_alert(
    patient: str = "123",
    authority: str = "HOSP",
    rule: RuleId = RuleId.BB_SEROLOGY,
    order: str = "ORD1",
) -> Alert:
    key = f"{patient}^{authority}" if authority else patient
    return Alert(
        id=alert_id(key, rule, order),
        rule=rule,
        patient=patient,
        patient_authority=authority,
        message="C1",
        order=order,
        severity=Severity.HIGH,
        recommendations=(Recommendation.DTT_TREATED_REAGENT_CELLS,),
        text="Patient on daratumumab: use DTT-treated cells — Kell-negative units.",
        drugs=("daratumumab",),
        event_time=datetime(2024, 5, 1, 8, 0),  # naive, as HL7 times often are
        location="BB^1",
        evidence=(EvidenceItem(message="C1", location="RXA-5", text="DARZALEX", time=T0),),
        sources=("RXA",),
    )


def patient(key: str = "123^HOSP", *marks: str) -> PatientState:
    state = PatientState(key=key, k_positive=False, alerted=list(marks), updated=T0)
    exposure = Exposure(drug="daratumumab")
    exposure.add_point(T0, "administration", EvidenceItem(message="C1", location="RXA-5", text="x"))
    state.exposures["daratumumab"] = exposure
    return state


async def add_message(store: Store, message: NewMessage) -> int:
    async with store.transaction() as tx:
        return await tx.add_message(message)


# ---------------------------------------------------------------- migrations and lifecycle


async def test_open_twice_applies_migrations_once(db: Backend) -> None:
    first = db.make()
    await first.open()
    await add_message(first, msg("C1"))
    await first.close()

    again = db.make()
    await again.open()
    try:
        assert await again.count_messages() == 1
        assert await again.ping()
    finally:
        await again.close()
    versions = await db.applied_versions()
    if versions is not None:
        assert versions == [m.version for m in load_migrations("sqlite")]


async def test_closed_store_is_unavailable(db: Backend) -> None:
    s = db.make()
    await s.open()
    assert await s.ping() is True
    await s.close()
    assert await s.ping() is False
    with pytest.raises(StoreUnavailable):
        async with s.transaction():
            pass
    with pytest.raises(StoreUnavailable):
        await s.count_messages()


def test_migrations_are_numbered_alike_and_packaged() -> None:
    sqlite_m, pg_m = load_migrations("sqlite"), load_migrations("postgres")
    assert [(m.version, m.name) for m in sqlite_m] == [(m.version, m.name) for m in pg_m]
    for m in sqlite_m:
        assert split_sqlite_script(m.sql)
    assert split_sqlite_script("CREATE TABLE a (x TEXT DEFAULT ';'); -- done;\n") == [
        "CREATE TABLE a (x TEXT DEFAULT ';');"
    ]
    with pytest.raises(StoreError):
        split_sqlite_script("CREATE TABLE a (x TEXT DEFAULT 'oops)")
    data = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert "store/sql/*/*.sql" in data["tool"]["setuptools"]["package-data"]["lisguard"]


async def test_edited_migration_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "lisguard.db"
    s = SqliteStore(path)
    await s.open()
    await s.close()
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE schema_migrations SET checksum = 'edited' WHERE version = 1")
    conn.close()
    again = SqliteStore(path)
    with pytest.raises(StoreError, match="changed after it was applied"):
        await again.open()
    assert await again.ping() is False


# ---------------------------------------------------------------- messages


async def test_message_round_trip(store: Store) -> None:
    raw = b"MSH|^~\\&|LAB|HOSP\rPID|||123\x00\xff\xfe\r\x0b\x1c"  # not UTF-8, NUL, MLLP bytes
    local = timezone(timedelta(hours=2))
    new = msg(
        "C1",
        raw=raw,
        content_hash="ab" * 32,
        received_at=T0.astimezone(local),
        flags=("control-id-reused", "x"),
    )
    message_id = await add_message(store, new)

    got = await store.get_message(message_id)
    assert got is not None
    assert got.id == message_id
    assert got.key == MessageKey("LAB", "HOSP", "C1")
    assert got.content_hash == "ab" * 32
    assert got.message_type == "ORM^O01"
    assert got.received_at == T0 and got.received_at.utcoffset() == timedelta(0)
    assert got.ack == new.ack and got.outcome == "AA" and got.peer == "10.0.0.7:5123"
    assert got.error == "" and got.flags == ("control-id-reused", "x")
    assert await store.get_raw(message_id) == raw

    # a message whose MSH could not be read: no key
    keyless = await add_message(store, msg(None, raw=b"\x00garbage", error="no MSH segment"))
    got = await store.get_message(keyless)
    assert got is not None and got.key is None and got.error == "no MSH segment"
    assert await store.get_raw(keyless) == b"\x00garbage"

    assert await store.get_message(10_000) is None
    assert await store.get_raw(10_000) is None
    assert keyless > message_id


async def test_find_message_returns_the_newest_with_that_key(store: Store) -> None:
    key = MessageKey("LAB", "HOSP", "C1")
    first = await add_message(store, msg("C1", content_hash="first"))
    await add_message(store, msg("C1", facility="OTHER", content_hash="other facility"))
    await add_message(store, msg("C2", content_hash="other control id"))
    await add_message(store, msg(None, content_hash="no key"))
    second = await add_message(store, msg("C1", content_hash="second"))

    async with store.transaction() as tx:
        found = await tx.find_message(key)
        assert found is not None and (found.id, found.content_hash) == (second, "second")
        assert await tx.find_message(MessageKey("LAB", "HOSP", "nope")) is None
        assert await tx.find_message(MessageKey("", "", "")) is None
        # own, uncommitted writes are visible inside the transaction
        third = await tx.add_message(msg("C1", content_hash="third"))
        found = await tx.find_message(key)
        assert found is not None and found.id == third
    assert first < second < third


async def test_count_messages_and_dead_letters(store: Store) -> None:
    assert await store.count_messages() == 0
    assert await store.list_dead_letters() == []
    ids = []
    for i in range(6):
        error = f"bad {i}" if i % 2 else ""
        ids.append(await add_message(store, msg(f"C{i}", error=error)))
    assert await store.count_messages() == 6

    dead = await store.list_dead_letters()
    assert [m.id for m in dead] == [ids[5], ids[3], ids[1]]  # newest first
    assert [m.error for m in dead] == ["bad 5", "bad 3", "bad 1"]
    assert [m.id for m in await store.list_dead_letters(limit=2)] == [ids[5], ids[3]]


# ---------------------------------------------------------------- patients


async def test_patients_save_load_delete(store: Store) -> None:
    state = patient("123^HOSP", "a1")
    async with store.transaction() as tx:
        assert await tx.load_patients(["123^HOSP", "999^HOSP"]) == {}
        await tx.save_patient(state)
        await tx.save_patient(patient("456^HOSP"))
        # own writes are visible inside the transaction, not outside before commit
        assert (await tx.load_patients(["123^HOSP"]))["123^HOSP"] == state
        assert await store.get_patient("123^HOSP") is None

    assert await store.get_patient("123^HOSP") == state
    async with store.transaction() as tx:
        loaded = await tx.load_patients(["999^HOSP", "123^HOSP", "456^HOSP", "123^HOSP"])
        assert set(loaded) == {"123^HOSP", "456^HOSP"}
        assert loaded["123^HOSP"] == state
        assert loaded["123^HOSP"].exposures["daratumumab"].last_dose == T0
        updated = loaded["123^HOSP"].model_copy(update={"alerted": ["a1", "a2"]})
        await tx.save_patient(updated)  # upsert
        await tx.delete_patient("456^HOSP")
        await tx.delete_patient("never-existed")
        assert await tx.load_patients(["456^HOSP"]) == {}

    got = await store.get_patient("123^HOSP")
    assert got is not None and got.alerted == ["a1", "a2"]
    assert await store.get_patient("456^HOSP") is None
    async with store.transaction() as tx:
        assert await tx.load_patients([]) == {}


async def test_unreadable_stored_state_is_a_store_error(db: Backend, store: Store) -> None:
    async with store.transaction() as tx:
        await tx.save_patient(patient("123^HOSP"))
    await db.corrupt_patient("123^HOSP")
    with pytest.raises(StoreError, match="123"):
        await store.get_patient("123^HOSP")
    with pytest.raises(StoreError, match="rolled back"):
        async with store.transaction() as tx:
            await tx.add_message(msg("C1"))
            with pytest.raises(StoreError, match="cannot be read"):
                await tx.load_patients(["123^HOSP"])
    assert await store.count_messages() == 0


async def test_concurrent_transactions_on_one_patient_lose_no_update(store: Store) -> None:
    """Read-modify-write from many tasks at once: the store serialises them per patient."""

    async def bump(i: int) -> None:
        async with store.transaction() as tx:
            found = await tx.load_patients(["123^HOSP"])
            state = found.get("123^HOSP") or PatientState(key="123^HOSP")
            await asyncio.sleep(0)  # let the others run in between
            state.alerted.append(f"m{i}")
            await tx.save_patient(state)

    async with asyncio.timeout(SAFETY):
        await asyncio.gather(*(bump(i) for i in range(8)))
    final = await store.get_patient("123^HOSP")
    assert final is not None and sorted(final.alerted) == sorted(f"m{i}" for i in range(8))


# ---------------------------------------------------------------- transactions


async def test_exception_rolls_back_everything(store: Store) -> None:
    before = await add_message(store, msg("C0"))
    async with store.transaction() as tx:
        await tx.save_patient(patient("123^HOSP", "original"))
        await tx.save_patient(patient("456^HOSP"))
        await tx.add_alerts([make_alert(order="ORD0")], message_id=before, created_at=T0)
        await tx.add_audit([AuditEvent("message.received", T0, subject=str(before))])

    class Boom(Exception):
        pass

    with pytest.raises(Boom):  # the caller's own exception comes out, untranslated
        async with store.transaction() as tx:
            message_id = await tx.add_message(msg("C1"))
            await tx.save_patient(patient("123^HOSP", "changed"))
            await tx.save_patient(patient("789^HOSP"))
            await tx.delete_patient("456^HOSP")
            inserted = await tx.add_alerts(
                [make_alert(order="ORD1")], message_id=message_id, created_at=T0
            )
            assert inserted == [make_alert(order="ORD1").id]
            await tx.add_audit([AuditEvent("alert.raised", T0, subject=inserted[0])])
            raise Boom

    assert await store.count_messages() == 1
    async with store.transaction() as tx:
        assert await tx.find_message(MessageKey("LAB", "HOSP", "C1")) is None
    original = await store.get_patient("123^HOSP")
    assert original is not None and original.alerted == ["original"]
    assert await store.get_patient("456^HOSP") is not None
    assert await store.get_patient("789^HOSP") is None
    assert await store.get_alert(make_alert(order="ORD1").id) is None
    assert [e.event.kind for e in await store.list_audit()] == ["message.received"]

    # the store is usable afterwards (lock released, connection healthy)
    await add_message(store, msg("C2"))
    assert await store.count_messages() == 2


async def test_cancelled_transaction_rolls_back(store: Store) -> None:
    entered = asyncio.Event()

    async def stuck() -> None:
        async with store.transaction() as tx:
            await tx.add_message(msg("C1"))
            entered.set()
            await asyncio.Event().wait()

    task = asyncio.create_task(stuck())
    async with asyncio.timeout(SAFETY):
        await entered.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await add_message(store, msg("C2"))
    assert await store.count_messages() == 1


async def test_failed_store_operation_poisons_the_transaction(store: Store) -> None:
    """A StoreError the caller swallows must not let the rest commit (PostgreSQL could not)."""
    with pytest.raises(StoreError, match="rolled back"):
        async with store.transaction() as tx:
            await tx.add_message(msg("C1"))
            with pytest.raises(StoreError):  # no such message: foreign key
                await tx.add_alerts([make_alert()], message_id=999_999, created_at=T0)
    assert await store.count_messages() == 0
    assert await store.get_alert(make_alert().id) is None


async def test_transaction_cannot_be_used_after_it_ends(store: Store) -> None:
    async with store.transaction() as tx:
        pass
    with pytest.raises(StoreError):
        await tx.add_message(msg("C1"))
    assert await store.count_messages() == 0


# ---------------------------------------------------------------- alerts


async def test_add_alerts_inserts_only_new_ids(store: Store) -> None:
    a1, a2, a3 = make_alert(order="O1"), make_alert(order="O2"), make_alert(order="O3")
    created = T0.astimezone(timezone(timedelta(hours=-5)))
    async with store.transaction() as tx:
        message_id = await tx.add_message(msg("C1"))
        assert await tx.add_alerts([a1, a2, a1], message_id=message_id, created_at=created) == [
            a1.id,
            a2.id,
        ]
        assert await tx.add_alerts([], message_id=message_id, created_at=created) == []
    async with store.transaction() as tx:
        second = await tx.add_message(msg("C2"))
        assert await tx.add_alerts([a2, a3], message_id=second, created_at=T0) == [a3.id]

    got = await store.get_alert(a1.id)
    assert got is not None
    assert got.alert == a1  # the whole payload round-trips, naive event_time included
    assert got.alert.event_time == datetime(2024, 5, 1, 8, 0)
    assert (got.message_id, got.status) == (message_id, "open")
    assert got.created_at == T0 and got.created_at.utcoffset() == timedelta(0)
    again = await store.get_alert(a2.id)
    assert again is not None and again.message_id == message_id  # the first insert won
    assert await store.get_alert("no-such-alert") is None


async def test_list_alerts_filters_newest_first_and_limit(store: Store) -> None:
    a_old = make_alert("123", rule=RuleId.BB_SEROLOGY, order="O1")
    b_mid = make_alert("456", rule=RuleId.SPEP_IFE, order="O2")
    c_new = make_alert("123", rule=RuleId.SPEP_IFE, order="O3")
    d_new = make_alert("123", authority="", rule=RuleId.FLOW_MRD, order="O4")  # same instant
    for created, alerts in ((T0, [a_old]), (T0 + timedelta(minutes=5), [b_mid])):
        async with store.transaction() as tx:
            message_id = await tx.add_message(msg(f"C{created.minute}"))
            await tx.add_alerts(alerts, message_id=message_id, created_at=created)
    async with store.transaction() as tx:
        message_id = await tx.add_message(msg("C99"))
        await tx.add_alerts(
            [c_new, d_new], message_id=message_id, created_at=T0 + timedelta(hours=1)
        )

    def ids(alerts: list[Any]) -> list[str]:
        return [a.alert.id for a in alerts]

    # newest first; same created_at: the later insert first
    assert ids(await store.list_alerts()) == [d_new.id, c_new.id, b_mid.id, a_old.id]
    assert ids(await store.list_alerts(limit=2)) == [d_new.id, c_new.id]
    assert ids(await store.list_alerts(status="open")) == [d_new.id, c_new.id, b_mid.id, a_old.id]
    assert await store.list_alerts(status="resolved") == []
    assert ids(await store.list_alerts(rule="spep-ife")) == [c_new.id, b_mid.id]
    assert ids(await store.list_alerts(patient="123^HOSP")) == [c_new.id, a_old.id]
    assert ids(await store.list_alerts(patient="123")) == [d_new.id]
    assert ids(await store.list_alerts(rule="spep-ife", patient="456^HOSP", status="open")) == [
        b_mid.id
    ]
    assert ids(await store.list_alerts(patient="123^HOSP", limit=1)) == [c_new.id]
    assert await store.list_alerts(limit=0) == []


# ---------------------------------------------------------------- audit


async def test_audit_append_and_after_seq(store: Store) -> None:
    detail = {
        "control_id": "C1",
        "nested": {"list": [1, 2.5, None, True], "text": "Kell — K−"},
        "when": T0,  # not JSON: stored as ISO text
    }
    async with store.transaction() as tx:
        await tx.add_audit(
            [
                AuditEvent("message.received", T0, subject="1", detail=detail),
                AuditEvent("exposure.recorded", T0, actor="engine", subject="123^HOSP"),
                AuditEvent("alert.raised", T0.astimezone(timezone(timedelta(hours=3)))),
            ]
        )
        await tx.add_audit([])
    async with store.transaction() as tx:
        await tx.add_audit(
            [AuditEvent("config.loaded", T0 + timedelta(days=1)), AuditEvent("x.y", T0)]
        )

    events = await store.list_audit()
    assert [e.event.kind for e in events] == [
        "message.received",
        "exposure.recorded",
        "alert.raised",
        "config.loaded",
        "x.y",
    ]
    seqs = [e.seq for e in events]
    assert seqs == sorted(seqs) and len(set(seqs)) == 5
    first = events[0].event
    assert first.detail == {**detail, "when": T0.isoformat()}
    assert (first.actor, first.subject) == ("system", "1")
    assert events[1].event.actor == "engine" and events[1].event.detail == {}
    assert events[2].event.at == T0 and events[2].event.at.utcoffset() == timedelta(0)

    assert [e.seq for e in await store.list_audit(after_seq=seqs[2])] == seqs[3:]
    assert [e.seq for e in await store.list_audit(limit=2)] == seqs[:2]
    assert [e.seq for e in await store.list_audit(after_seq=seqs[0], limit=2)] == seqs[1:3]
    assert await store.list_audit(after_seq=seqs[-1]) == []


# ---------------------------------------------------------------- open_store


def test_open_store_urls(tmp_path: Path) -> None:
    assert isinstance(open_store("memory://"), MemoryStore)

    rel = open_store("sqlite:///var/lisguard.db")
    assert isinstance(rel, SqliteStore)
    assert rel.path == Path("var/lisguard.db") and rel.synchronous == "FULL"
    absolute = open_store(f"sqlite:///{tmp_path}/x.db?synchronous=normal&busy_timeout_ms=100")
    assert isinstance(absolute, SqliteStore)
    assert absolute.path == tmp_path / "x.db"
    assert (absolute.synchronous, absolute.busy_timeout_ms) == ("NORMAL", 100)

    pg = open_store(
        "postgresql://u:secret@db.example:5433/lis?min_size=2&max_size=5&sslmode=prefer"
    )
    assert isinstance(pg, PostgresStore)
    assert (pg.min_size, pg.max_size) == (2, 5)
    assert pg.dsn == "postgresql://u:secret@db.example:5433/lis?sslmode=prefer"
    assert "secret" not in repr(pg)
    other = open_store("postgres://db.example/lis")
    assert isinstance(other, PostgresStore) and (other.min_size, other.max_size) == (1, 10)

    for bad in (
        "sqlite://",
        "sqlite:///",
        "sqlite:///:memory:",
        "sqlite://host/x.db",
        "sqlite:///x.db?synchronous=OFF",
        "sqlite:///x.db?journal=delete",
        "postgresql://h/db?max_size=lots",
        "mysql://h/db",
        "lisguard.db",
    ):
        with pytest.raises(ValueError):
            open_store(bad)


async def test_open_store_relative_sqlite_path_creates_the_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    s = open_store("sqlite:///var/data/lisguard.db")
    await s.open()
    try:
        await add_message(s, msg("C1"))
    finally:
        await s.close()
    assert (tmp_path / "var" / "data" / "lisguard.db").is_file()


# ---------------------------------------------------------------- SQLite specifics

_CRASH_SCRIPT = """
import asyncio, os, sys
from datetime import UTC, datetime
from lisguard.domain.facts import MessageKey
from lisguard.domain.patient import PatientState
from lisguard.store.base import NewMessage
from lisguard.store.sqlite import SqliteStore

def message(control_id):
    return NewMessage(raw=b"MSH|" + control_id.encode(), content_hash=control_id,
                      received_at=datetime.now(UTC), ack="MSA|AA", outcome="AA",
                      key=MessageKey("LAB", "HOSP", control_id))

async def main(path):
    store = SqliteStore(path)
    await store.open()
    async with store.transaction() as tx:
        await tx.add_message(message("COMMITTED"))
        await tx.save_patient(PatientState(key="P1", alerted=["committed"]))
    print("committed", flush=True)
    unfinished = store.transaction()
    tx = await unfinished.__aenter__()
    await tx.add_message(message("UNCOMMITTED"))
    await tx.save_patient(PatientState(key="P2"))
    os._exit(0)  # no COMMIT, no close, no checkpoint

asyncio.run(main(sys.argv[1]))
"""


async def _run_python(script: str, *args: str) -> tuple[int, str, str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        script,
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(60):
        out, err = await proc.communicate()
    return proc.returncode or 0, out.decode(), err.decode()


async def test_sqlite_committed_rows_survive_a_crash(tmp_path: Path) -> None:
    path = tmp_path / "crash.db"
    code, out, err = await _run_python(_CRASH_SCRIPT, str(path))
    assert code == 0 and out.strip() == "committed", err
    wal = path.with_name(path.name + "-wal")
    assert wal.exists() and wal.stat().st_size > 0  # it really did stop without a clean close

    store = SqliteStore(path)
    await store.open()
    try:
        assert await store.count_messages() == 1
        async with store.transaction() as tx:
            assert await tx.find_message(MessageKey("LAB", "HOSP", "COMMITTED")) is not None
            assert await tx.find_message(MessageKey("LAB", "HOSP", "UNCOMMITTED")) is None
        p1 = await store.get_patient("P1")
        assert p1 is not None and p1.alerted == ["committed"]
        assert await store.get_patient("P2") is None
    finally:
        await store.close()


_READ_ONLY_SCRIPT = """
import asyncio, json, os, sys
from lisguard.store.base import StoreUnavailable
from lisguard.store.sql.migrations import load_migrations
from lisguard.store.sqlite import SqliteStore

load_migrations("sqlite")  # read (and cache) the package data while we still can
if os.geteuid() == 0:  # root writes anywhere: become nobody to feel the permissions
    os.setgroups([])
    os.setgid(65534)
    os.setuid(65534)

async def attempt(path):
    store = SqliteStore(path)
    result = {}
    try:
        await store.open()
        result["open"] = "ok"
    except StoreUnavailable as exc:
        result["open"] = "StoreUnavailable: " + str(exc)
    except BaseException as exc:
        result["open"] = type(exc).__name__ + ": " + str(exc)
    try:
        async with store.transaction() as tx:
            await tx.delete_patient("x")
        result["transaction"] = "ok"
    except StoreUnavailable as exc:
        result["transaction"] = "StoreUnavailable: " + str(exc)
    except BaseException as exc:
        result["transaction"] = type(exc).__name__ + ": " + str(exc)
    result["ping"] = await store.ping()
    await store.close()
    return result

async def main(paths):
    print(json.dumps({p: await attempt(p) for p in paths}))

asyncio.run(main(sys.argv[1:]))
"""


def _permission_cases(base: Path) -> dict[str, Path]:
    """Paths the store must refuse; base is a fresh directory nobody may traverse."""
    base.chmod(0o755)
    ro_dir = base / "ro_file"
    ro_dir.mkdir()
    ro_dir.chmod(0o777)  # the directory is writable: only the file will be read-only
    locked_dir = base / "locked"
    locked_dir.mkdir()
    parent_is_file = base / "a_file"
    parent_is_file.write_text("not a directory")
    return {
        "read-only file": ro_dir / "lisguard.db",
        "unwritable directory": locked_dir / "lisguard.db",
        "cannot create directory": locked_dir / "sub" / "lisguard.db",
        "parent is a file": parent_is_file / "lisguard.db",
    }


def _lock_down(cases: dict[str, Path]) -> None:
    cases["read-only file"].chmod(stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
    cases["unwritable directory"].parent.chmod(0o555)


def _remove(base: Path) -> None:
    for p in base.rglob("*"):
        if p.is_dir():
            p.chmod(0o755)
    shutil.rmtree(base, ignore_errors=True)


async def test_sqlite_read_only_file_or_unwritable_dir_is_unavailable() -> None:
    # not under tmp_path: when the tests run as root, the check runs as nobody (root may write
    # anywhere), and nobody must be able to get in
    base = Path(tempfile.mkdtemp(prefix="lisguard-ro-"))
    try:
        cases = _permission_cases(base)
        s = SqliteStore(cases["read-only file"])
        await s.open()
        await add_message(s, msg("C1"))
        await s.close()
        _lock_down(cases)

        code, out, err = await _run_python(_READ_ONLY_SCRIPT, *map(str, cases.values()))
        assert code == 0, err
        results = json.loads(out)
        why = {
            "read-only file": "readonly database",
            "unwritable directory": "unable to open database file",
            "cannot create directory": "cannot create directory",
            "parent is a file": "cannot create directory",
        }
        for name, path in cases.items():
            result = results[str(path)]
            assert result["open"].startswith("StoreUnavailable: "), (name, result)
            assert why[name] in result["open"], (name, result)
            assert str(path.parent) in result["open"], (name, result)  # says where
            assert result["transaction"].startswith("StoreUnavailable: "), (name, result)
            assert result["ping"] is False, (name, result)
    finally:
        _remove(base)


async def test_sqlite_locked_database_is_unavailable_and_recovers(tmp_path: Path) -> None:
    path = tmp_path / "lisguard.db"
    store = SqliteStore(path, busy_timeout_ms=50)
    await store.open()
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        with pytest.raises(StoreUnavailable, match="locked"):
            async with store.transaction() as tx:
                await tx.add_message(msg("C1"))
        assert await store.ping() is False
        other.execute("ROLLBACK")
        assert await store.ping() is True
        await add_message(store, msg("C1"))
        assert await store.count_messages() == 1
    finally:
        other.close()
        await store.close()


async def test_sqlite_settings(tmp_path: Path) -> None:
    path = tmp_path / "lisguard.db"
    for mode in ("full", "NORMAL"):
        s = SqliteStore(path, synchronous=mode)
        await s.open()
        await s.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        # the indexes the hot paths rely on
        plan = " ".join(
            str(r)
            for r in conn.execute(
                "EXPLAIN QUERY PLAN SELECT id FROM messages WHERE sending_application = ?"
                " AND sending_facility = ? AND control_id = ? ORDER BY id DESC LIMIT 1",
                ("a", "b", "c"),
            )
        )
        assert "messages_key_idx" in plan and "TEMP B-TREE" not in plan
        plan = " ".join(
            str(r)
            for r in conn.execute(
                "EXPLAIN QUERY PLAN SELECT payload FROM alerts WHERE status = ?"
                " ORDER BY created_at DESC, rowid DESC LIMIT 10",
                ("open",),
            )
        )
        assert "alerts_status_idx" in plan and "TEMP B-TREE" not in plan
        plan = " ".join(
            str(r)
            for r in conn.execute(
                "EXPLAIN QUERY PLAN SELECT id FROM messages WHERE error <> ''"
                " ORDER BY id DESC LIMIT 10"
            )
        )
        assert "messages_dead_letter_idx" in plan
    conn.close()
    with pytest.raises(ValueError):
        SqliteStore(path, synchronous="OFF")


# ---------------------------------------------------------------- PostgreSQL specifics


async def _wait_until_blocked(pg: PostgresBackend, lock_key: int) -> None:
    """Until some session waits for the advisory lock `lock_key` (not a timing assertion)."""
    unsigned = lock_key & 0xFFFF_FFFF_FFFF_FFFF
    while True:
        waiting = await pg.admin.fetchval(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
            " AND classid::bigint = $1 AND objid::bigint = $2 AND objsubid = 1",
            unsigned >> 32,
            unsigned & 0xFFFF_FFFF,
        )
        if waiting:
            return
        await asyncio.sleep(0.005)


@pytest.fixture
async def pg_store(pg: PostgresBackend) -> AsyncIterator[Store]:
    s = pg.make()
    await s.open()
    try:
        yield s
    finally:
        await s.close()


@pytest.mark.postgres
@pytest.mark.parametrize("what", ["patient", "message"])
async def test_postgres_serialises_work_on_one_key(
    pg: PostgresBackend, pg_store: Store, what: str
) -> None:
    key = MessageKey("LAB", "HOSP", "C1")
    holding, release = asyncio.Event(), asyncio.Event()
    order: list[str] = []

    async def lock(tx: Any) -> Any:
        if what == "patient":
            return await tx.load_patients(["123^HOSP"])
        return await tx.find_message(key)

    async def first() -> None:
        async with pg_store.transaction() as tx:
            await lock(tx)
            holding.set()
            await release.wait()
            await tx.save_patient(patient("123^HOSP", "by-first"))
            await tx.add_message(msg("C1", content_hash="by-first"))
            order.append("first done")

    async def second() -> Any:
        await holding.wait()
        async with pg_store.transaction() as tx:
            seen = await lock(tx)
            order.append("second locked")
            return seen

    async with asyncio.timeout(SAFETY):
        t1, t2 = asyncio.create_task(first()), asyncio.create_task(second())
        await holding.wait()
        lock_key = patient_lock_key("123^HOSP") if what == "patient" else message_lock_key(key)
        await _wait_until_blocked(pg, lock_key)
        assert not t2.done()
        release.set()
        await t1
        seen = await t2

    assert order == ["first done", "second locked"]
    # the second transaction read AFTER the first committed
    if what == "patient":
        assert seen["123^HOSP"].alerted == ["by-first"]
    else:
        assert seen is not None and seen.content_hash == "by-first"


@pytest.mark.postgres
async def test_postgres_other_patients_do_not_wait(pg_store: Store) -> None:
    holding, release = asyncio.Event(), asyncio.Event()

    async def first() -> None:
        async with pg_store.transaction() as tx:
            await tx.find_message(MessageKey("LAB", "HOSP", "C1"))
            await tx.load_patients(["123^HOSP", "456^HOSP"])
            holding.set()
            await release.wait()

    async with asyncio.timeout(SAFETY):
        t1 = asyncio.create_task(first())
        await holding.wait()
        async with pg_store.transaction() as tx:  # would hang if it needed first's locks
            await tx.find_message(MessageKey("LAB", "HOSP", "C2"))
            assert await tx.load_patients(["789^HOSP", "000^HOSP"]) == {}
            await tx.save_patient(patient("789^HOSP"))
        assert not t1.done()
        release.set()
        await t1
    assert await pg_store.get_patient("789^HOSP") is not None


@pytest.mark.postgres
async def test_postgres_replicas_starting_together_migrate_once(pg: PostgresBackend) -> None:
    stores = [pg.make(min_size=1, max_size=2) for _ in range(3)]
    async with asyncio.timeout(SAFETY):
        await asyncio.gather(*(s.open() for s in stores))
    try:
        assert all([await s.ping() for s in stores])
        assert await pg.applied_versions() == [m.version for m in load_migrations("postgres")]
    finally:
        for s in stores:
            await s.close()


@pytest.mark.postgres
async def test_postgres_lost_connection_is_unavailable_and_recovers(
    pg: PostgresBackend, pg_store: Store
) -> None:
    with pytest.raises(StoreUnavailable):
        async with pg_store.transaction() as tx:
            await tx.add_message(msg("C1"))
            await pg.admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE application_name = $1 AND pid <> pg_backend_pid()",
                pg.schema,
            )
            await tx.load_patients(["123^HOSP"])
    assert await pg_store.count_messages() == 0  # the pool reconnects
    await add_message(pg_store, msg("C2"))
    assert await pg_store.count_messages() == 1
    assert await pg_store.ping() is True


@pytest.mark.postgres
async def test_postgres_missing_schema_is_a_store_error(pg_dsn: str) -> None:
    s = PostgresStore(pg_dsn, server_settings={"search_path": "lisguard_no_such_schema"})
    with pytest.raises(StoreError, match="no existing schema"):
        await s.open()
    assert await s.ping() is False


async def test_postgres_unreachable_server_is_unavailable() -> None:
    # port 1 on localhost: refused at once, no server needed
    s = PostgresStore("postgresql://postgres:hunter2@127.0.0.1:1/test", connect_timeout=5)
    with pytest.raises(StoreUnavailable) as caught:
        await s.open()
    assert "hunter2" not in str(caught.value) and "127.0.0.1:1" in str(caught.value)
    assert await s.ping() is False
    with pytest.raises(StoreUnavailable):
        async with s.transaction():
            pass


@pytest.mark.postgres
async def test_postgres_patients_read_with_the_message_wait_and_see_the_commit(
    pg: PostgresBackend, pg_store: Store
) -> None:
    """find_message(patients=...) locks and reads the patients in the same round trip: it must
    wait for a holder of a patient lock and then read what the holder committed."""
    holding, release = asyncio.Event(), asyncio.Event()

    async def first() -> None:
        async with pg_store.transaction() as tx:
            await tx.load_patients(["123^HOSP"])
            holding.set()
            await release.wait()
            await tx.save_patient(patient("123^HOSP", "by-first"))

    async def second() -> dict[str, PatientState]:
        await holding.wait()
        async with pg_store.transaction() as tx:
            await tx.find_message(MessageKey("LAB", "HOSP", "C9"), patients=["123^HOSP"])
            return await tx.load_patients(["123^HOSP"])

    async with asyncio.timeout(SAFETY):
        t1, t2 = asyncio.create_task(first()), asyncio.create_task(second())
        await holding.wait()
        await _wait_until_blocked(pg, patient_lock_key("123^HOSP"))
        release.set()
        await t1
        seen = await t2
    assert seen["123^HOSP"].alerted == ["by-first"]


@pytest.mark.postgres
async def test_postgres_a_unit_reads_its_own_buffered_writes(pg_store: Store) -> None:
    """Patient states and the message are buffered until the next statement: whatever the
    unit reads next (a patient, a message, the desk) sees them."""
    async with pg_store.transaction() as tx:
        await tx.find_message(MessageKey("LAB", "HOSP", "C1"), patients=["123^HOSP"])
        await tx.save_patient(patient("123^HOSP", "saved"))
        message_id = await tx.add_message(msg("C1"))
        assert (await tx.load_patients(["123^HOSP"]))["123^HOSP"].alerted == ["saved"]
        assert (await tx.find_message(MessageKey("LAB", "HOSP", "C1"))) is not None
    stored = await pg_store.get_message(message_id)
    assert stored is not None and stored.key == MessageKey("LAB", "HOSP", "C1")
    assert (await pg_store.get_patient("123^HOSP")) is not None
    async with pg_store.transaction() as tx:  # a unit with no audit still writes at COMMIT
        await tx.find_message(MessageKey("LAB", "HOSP", "C2"))
        await tx.save_patient(patient("456^HOSP", "no-audit"))
    assert (await pg_store.get_patient("456^HOSP")) is not None


@pytest.mark.postgres
async def test_postgres_replicas_appending_in_turn_keep_one_audit_chain(
    pg: PostgresBackend,
) -> None:
    """Each replica hashes on the last hash it appended itself; the other's appends make that
    guess stale, and the server's answer under the chain's lock must put it right."""
    key = b"k" * 32
    a, b = pg.make(audit_key=key), pg.make(audit_key=key)
    await a.open()
    await b.open()
    try:
        at = datetime(2026, 12, 4, 9, 0, tzinfo=UTC)
        for i in range(6):
            store = a if i % 3 else b  # b, a, a, b, a, a: stale guesses and good ones
            async with store.transaction() as tx:
                await tx.find_message(MessageKey("LAB", "HOSP", f"A{i}"))
                await tx.add_message(msg(f"A{i}"))
                await tx.add_audit([AuditEvent("test.turn", at, subject=str(i))])
        turns = [e for e in await a.list_audit() if e.event.kind == "test.turn"]
        assert [e.event.subject for e in turns] == [str(i) for i in range(6)]
        report = await verify_audit_chain(a, key=key)
        assert report.ok, report
    finally:
        await a.close()
        await b.close()
