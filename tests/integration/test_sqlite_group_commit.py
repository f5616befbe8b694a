"""SQLite group commit: concurrent store transactions share one COMMIT, and still each one is
committed before it returns; a unit's failure is its own, a COMMIT's failure is everyone's."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from lisguard.domain.facts import MessageKey
from lisguard.domain.patient import PatientState
from lisguard.store.base import NewMessage, StoreError
from lisguard.store.sqlite import SqliteStore

SAFETY = 20.0  # a hang must fail the test, never pass it; not a timing assertion


def message(control_id: str) -> NewMessage:
    return NewMessage(
        raw=f"MSH|^~\\&|LAB|HOSP|||||ORM^O01|{control_id}".encode(),
        content_hash=control_id,
        received_at=datetime(2026, 3, 1, tzinfo=UTC),
        ack=f"MSA|AA|{control_id}",
        outcome="AA",
        key=MessageKey("LAB", "HOSP", control_id),
    )


@pytest.fixture(params=["NORMAL", "FULL"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[SqliteStore]:
    s = SqliteStore(tmp_path / "gc.db", synchronous=request.param)
    await s.open()
    try:
        yield s
    finally:
        await s.close()


def commits(store: SqliteStore) -> int:
    assert store._writer is not None
    return store._writer._commits


async def stored(store: SqliteStore, control_id: str) -> bool:
    async with store.transaction() as tx:
        return await tx.find_message(MessageKey("LAB", "HOSP", control_id)) is not None


async def test_queued_transactions_share_a_commit_and_are_all_durable(
    store: SqliteStore, tmp_path: Path
) -> None:
    before = commits(store)
    returned: list[str] = []

    async def one(i: int) -> None:
        async with store.transaction() as tx:
            await tx.add_message(message(f"C{i}"))
            await asyncio.sleep(0)  # the others queue for the writer meanwhile
        returned.append(f"C{i}")

    async with asyncio.timeout(SAFETY):
        await asyncio.gather(*(one(i) for i in range(8)))
    assert sorted(returned) == sorted(f"C{i}" for i in range(8))
    assert commits(store) - before < 8  # shared
    # committed means readable from another connection, i.e. on disk (WAL), not just cached
    other = SqliteStore(tmp_path / "gc.db")
    await other.open()
    try:
        assert await other.count_messages() == 8
    finally:
        await other.close()


async def test_one_failing_transaction_leaves_the_batch_intact(store: SqliteStore) -> None:
    class Boom(Exception):
        pass

    async def good(i: int) -> None:
        async with store.transaction() as tx:
            await tx.add_message(message(f"G{i}"))
            await tx.save_patient(PatientState(key=f"P{i}"))
            await asyncio.sleep(0)

    async def bad() -> None:
        async with store.transaction() as tx:
            await tx.add_message(message("BAD"))
            await tx.save_patient(PatientState(key="P0", alerted=["bad"]))
            await asyncio.sleep(0)
            raise Boom

    async with asyncio.timeout(SAFETY):
        results = await asyncio.gather(good(0), bad(), good(1), good(2), return_exceptions=True)
    assert [type(r) for r in results] == [type(None), Boom, type(None), type(None)]
    assert await store.count_messages() == 3
    assert not await stored(store, "BAD")
    p0 = await store.get_patient("P0")
    assert p0 is not None and p0.alerted == []


async def test_a_failed_commit_fails_every_transaction_of_the_batch(store: SqliteStore) -> None:
    """A deferred foreign-key violation passes every statement and fails at COMMIT: the units
    that shared that COMMIT must all be told their work is not stored."""

    async def member(i: int, poison: bool) -> None:
        async with store.transaction() as tx:
            await tx.add_message(message(f"M{i}"))
            if poison:
                conn = tx._conn  # type: ignore[attr-defined]
                await conn.execute("PRAGMA defer_foreign_keys = ON")
                await conn.execute(
                    "INSERT INTO alerts (id, patient_key, rule, order_id, severity, created_at,"
                    " message_id, payload) VALUES ('a', 'p', 'r', 'o', 'high', 'now', 999999, '{}')"
                )
            await asyncio.sleep(0)

    async with asyncio.timeout(SAFETY):
        results = await asyncio.gather(
            member(0, False), member(1, True), member(2, False), return_exceptions=True
        )
    assert all(isinstance(r, StoreError) for r in results), results
    assert await store.count_messages() == 0
    await member(3, False)  # the writer recovers
    assert await store.count_messages() == 1


async def test_a_batch_left_for_a_cancelled_waiter_is_still_committed(
    store: SqliteStore,
) -> None:
    entered, go = asyncio.Event(), asyncio.Event()

    async def first() -> None:
        async with store.transaction() as tx:
            await tx.add_message(message("FIRST"))
            entered.set()
            await go.wait()

    async def second() -> None:
        async with store.transaction() as tx:
            await tx.add_message(message("SECOND"))

    async with asyncio.timeout(SAFETY):
        a = asyncio.create_task(first())
        await entered.wait()
        b = asyncio.create_task(second())
        await asyncio.sleep(0)  # b waits for the writer: a leaves its batch open for b
        go.set()
        await asyncio.sleep(0)  # a ends its unit and waits for the commit
        b.cancel()  # b never runs: someone else must commit a's batch
        with pytest.raises(asyncio.CancelledError):
            await b
        await a
    assert await stored(store, "FIRST")
    assert not await stored(store, "SECOND")


async def test_close_commits_what_is_waiting(store: SqliteStore, tmp_path: Path) -> None:
    entered, go = asyncio.Event(), asyncio.Event()

    async def slow() -> None:
        async with store.transaction() as tx:
            await tx.add_message(message("SLOW"))
            entered.set()
            await go.wait()

    async with asyncio.timeout(SAFETY):
        task = asyncio.create_task(slow())
        await entered.wait()
        closing = asyncio.create_task(store.close())
        await asyncio.sleep(0)
        go.set()
        await asyncio.gather(task, closing)
    reopened = SqliteStore(tmp_path / "gc.db")
    await reopened.open()
    try:
        assert await reopened.count_messages() == 1
    finally:
        await reopened.close()


class CommitWatch:
    """The writer's sqlite3 connection with its COMMITs watched: on which thread each ran, and
    (when `hold` is set) a COMMIT waiting until the test lets it finish, as a slow disk would."""

    def __init__(self, raw: sqlite3.Connection) -> None:
        self.raw = raw
        self.threads: list[int] = []
        self.hold: threading.Event | None = None
        self.released_by_loop: list[bool] = []

    def execute(self, sql: str, *args: object) -> sqlite3.Cursor:
        if sql == "COMMIT":
            self.threads.append(threading.get_ident())
            if self.hold is not None:
                self.released_by_loop.append(self.hold.wait(SAFETY))
        return self.raw.execute(sql, *args)

    def __getattr__(self, name: str) -> object:
        return getattr(self.raw, name)


def watch(store: SqliteStore) -> CommitWatch:
    assert store._writer is not None
    watched = CommitWatch(store._writer.conn.raw)
    store._writer.conn.raw = watched  # type: ignore[assignment]
    return watched


async def test_a_shared_full_commit_waits_for_the_disk_off_the_loop(store: SqliteStore) -> None:
    """With FULL, a COMMIT several units share runs in a thread: the loop goes on (here: it is
    what lets the held COMMIT finish). One unit alone, or NORMAL, commits inline."""
    watched = watch(store)
    loop_thread = threading.get_ident()

    async def one(i: int) -> None:
        async with store.transaction() as tx:
            await tx.add_message(message(f"W{i}"))
            await asyncio.sleep(0)

    async with asyncio.timeout(SAFETY):
        await one(0)
        assert watched.threads == [loop_thread]  # alone: inline
        watched.hold = threading.Event()
        batch = asyncio.gather(*(one(i) for i in range(1, 4)))
        if store.synchronous == "FULL":
            while len(watched.threads) < 2:  # the shared COMMIT has started, in its thread
                await asyncio.sleep(0.001)
            assert not batch.done()  # its units wait for it
            watched.hold.set()  # the loop ran meanwhile
            await batch
            assert watched.threads[1] != loop_thread and watched.released_by_loop == [True]
        else:
            watched.hold.set()  # NORMAL: inline, nothing to wait for
            await batch
            assert watched.threads[1:] == [loop_thread]
    assert await store.count_messages() == 4
