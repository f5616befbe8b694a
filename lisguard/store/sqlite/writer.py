"""The SQLite writer: statements run inline on the event loop, commits are grouped.

Why not aiosqlite for writing: it hands every statement to its own thread and back. A message
takes about ten statements, each a few microseconds on indexed rows in the page cache; the ten
thread round trips (and the GIL hand-overs that come with them) cost many times that, and a busy
event loop makes the worker thread wait for the GIL. So the writer is a plain sqlite3 connection
used on the loop thread, always under the write lock. Only what may really wait leaves the loop:

- BEGIN IMMEDIATE when another process holds the write lock: first tried without waiting, then
  retried in a thread with the configured busy timeout;
- WAL checkpoints (automatic checkpoints are off on the writer; every CHECKPOINT_EVERY commits
  a thread checkpoints on its own connection, see `_run_checkpoint`).

COMMIT runs inline too, also with synchronous=FULL where it waits for an fsync of the WAL,
when it commits one unit: with one connection sending and waiting there is nothing else to do
meanwhile, and handing the COMMIT to a thread and back cost more CPU than the fsync (~150 us
here; measured one CPU, FULL: ~700 us a message through a thread, ~500 inline). A COMMIT that
several units share (other connections are busy) waits for the disk in a thread instead, the
lock held until it is done: the loop meanwhile reads and parses the next messages, which queue
for the lock and form the next batch (8 connections, FULL: +9 to 12 % messages a second, less
CPU a message, lower p99; measured side by side with the inline COMMIT).

Group commit: each unit of work (one store transaction, i.e. one message) runs inside a
SAVEPOINT of a shared SQLite transaction (the unit that opens it needs none). When a unit ends
while others are queued for the write lock - or ready to run in the same loop cycle, e.g.
messages read from other connections in one poll - the SQLite transaction stays open and they
join it; the last of them commits it, once, for all. Every unit waits for that COMMIT before it
returns, so the ACK still goes out only after its message is committed: the batch only shares
the commit (its page writes, and with FULL its fsync). A unit that fails rolls back to its
savepoint alone; a failed COMMIT fails every unit of the batch (none is ACKed as accepted). With
one connection sending and waiting, a batch is one message: nothing to share.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

from lisguard.store.records import StoreError, StoreUnavailable

T = TypeVar("T")
# Commits between WAL checkpoints. Each fsyncs the WAL and the database, so not too often; but
# its second pass holds the writer (see _run_checkpoint) and grows with the WAL: at 1,000
# commits the p99 ACK latency at 1,000 msg/s went from ~7 ms to ~19 ms.
CHECKPOINT_EVERY = 200
CATCH_UP_PASSES = 4  # passes without the lock before the last one
LAST_PASS_FRAMES = 64  # few enough WAL frames to copy while messages wait
Translate = Callable[[BaseException, str], StoreError]


class InlineConnection:
    """A sqlite3 connection behind the async calls the store code makes (those of aiosqlite):
    each call runs at once, on the calling thread, and never suspends."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.raw = conn

    @property
    def in_transaction(self) -> bool:
        return self.raw.in_transaction

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Cursor:
        return self.raw.execute(sql, params)

    async def execute_fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        return self.raw.execute(sql, params).fetchall()

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> sqlite3.Cursor:
        return self.raw.executemany(sql, rows)

    async def close(self) -> None:
        self.raw.close()


class _Batch:
    """One SQLite transaction shared by the units that ran while it was open."""

    __slots__ = ("error", "finished", "members", "waiters")

    def __init__(self) -> None:
        self.members = 0  # units that completed inside it and wait for its COMMIT
        # one future per waiting unit: a unit cancelled while it waits cancels only its own
        self.waiters: list[asyncio.Future[None]] = []
        self.finished = False
        self.error: StoreError | None = None

    def finish(self, error: StoreError | None = None) -> None:
        """The COMMIT is done (or failed with `error`): wake every unit waiting for it."""
        self.finished, self.error = True, error
        for waiter in self.waiters:
            if not waiter.done():
                if error is None:
                    waiter.set_result(None)
                else:
                    waiter.set_exception(error)

    async def wait(self) -> None:
        if not self.finished:
            waiter = asyncio.get_running_loop().create_future()
            self.waiters.append(waiter)
            await waiter
        elif self.error is not None:
            raise self.error


async def _finish_in_thread(fn: Callable[[], T]) -> T:
    """Run fn in a thread and wait for it even if cancelled meanwhile: the connection must not
    be handed to anyone else while a thread still uses it. A cancellation is re-raised after."""
    task = asyncio.ensure_future(asyncio.to_thread(fn))
    cancelled = False
    while True:
        try:
            result = await asyncio.shield(task)
            break
        except asyncio.CancelledError:
            if not task.done():
                cancelled = True
                continue
            raise
    if cancelled:
        raise asyncio.CancelledError
    return result


class GroupWriter:
    """The one writer connection of a SqliteStore, its write lock and its commit batches."""

    def __init__(
        self,
        conn: sqlite3.Connection,
        path: Path,
        *,
        busy_timeout_ms: int,
        translate: Translate,
        commit_waits_for_disk: bool = False,
    ) -> None:
        self.conn = InlineConnection(conn)
        self.commit_waits_for_disk = commit_waits_for_disk
        # a COMMIT in a thread: held here, the loop keeps only a weak reference to a task
        self._committing: asyncio.Task[None] | None = None
        self.path = path
        self.busy_timeout_ms = busy_timeout_ms
        self.translate = translate
        self.lock = asyncio.Lock()
        self._pending = 0  # tasks waiting for the lock: they will join an open batch
        self._batch: _Batch | None = None
        self._flush_scheduled = False  # the lock is held until _flush runs
        self._commits = 0
        self._checkpoint: asyncio.Task[None] | None = None
        self._checkpointer: sqlite3.Connection | None = None
        self._closed = False
        # the writer never checkpoints inline; the background checkpoint does
        conn.execute("PRAGMA busy_timeout = 0")
        conn.execute("PRAGMA wal_autocheckpoint = 0")

    # -- the lock, with a count of who waits for it

    async def _acquire(self) -> None:
        self._pending += 1
        try:
            await self.lock.acquire()
        except BaseException:
            self._pending -= 1
            if self._pending == 0 and self._batch is not None and not self.lock.locked():
                # the batch was left open for us: make sure someone commits it
                asyncio.get_running_loop().create_task(self._commit_orphan())
            raise
        self._pending -= 1

    async def _commit_orphan(self) -> None:
        await self._acquire()
        self._release()

    def _release(self) -> None:
        """Release the lock. When nobody waits for it, the open batch is committed - after the
        tasks already ready to run had their turn (the lock is kept meanwhile): messages that
        came in on other connections in the same loop cycle join it and share the COMMIT."""
        batch = self._batch
        if batch is None or self._pending > 0:
            self.lock.release()
        elif not batch.members:
            self._batch = None
            self._rollback_quietly()
            batch.finish()
            self.lock.release()
        elif not self._flush_scheduled:
            self._flush_scheduled = True
            loop = asyncio.get_running_loop()
            # Nothing else ready to run in this cycle (asyncio's private queue; other loops
            # always defer): no one could join, so commit now rather than a cycle later.
            if not getattr(loop, "_ready", True):
                self._flush()
            else:
                loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        batch = self._batch
        if batch is None or self._pending > 0:  # those waiting join; the last one flushes
            self.lock.release()
            return
        self._batch = None
        self._commit(batch)  # releases the lock when the COMMIT is done

    # -- units of work

    @asynccontextmanager
    async def unit(self) -> AsyncIterator[InlineConnection]:
        """One atomic unit (a savepoint in the open batch); returns only once it is committed.
        The unit that opens a batch needs no savepoint: if it fails, nothing else is in the
        transaction yet, and the whole of it is rolled back."""
        await self._acquire()
        try:
            if self._closed:
                raise StoreUnavailable(f"SQLite {self.path}: the store is not open")
            opens = self._batch is None
            batch = await self._join()
        except BaseException:
            self._release()
            raise
        raw = self.conn.raw
        if not opens:
            try:
                raw.execute("SAVEPOINT unit")
            except sqlite3.Error as exc:
                self._abort(batch, exc)
                self._release()
                raise self.translate(exc, "cannot start a transaction") from exc
        try:
            yield self.conn
        except BaseException as exc:
            self._undo(batch, exc, opens)
            self._release()
            raise
        if not opens:
            try:
                raw.execute("RELEASE unit")
            except sqlite3.Error as exc:
                self._undo(batch, exc, opens)
                self._release()
                raise self.translate(exc, "commit failed") from exc
        batch.members += 1
        self._release()
        await batch.wait()  # raises the COMMIT's error, if any

    async def _join(self) -> _Batch:
        if self._batch is not None:
            return self._batch
        raw = self.conn.raw
        try:
            if raw.in_transaction:  # left over by a failure: never build on it
                raw.execute("ROLLBACK")
            try:
                raw.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc):
                    raise
                await _finish_in_thread(self._begin_waiting)  # another process writes
        except asyncio.CancelledError:
            self._rollback_quietly()
            raise
        except (sqlite3.Error, OSError) as exc:
            raise self.translate(exc, "cannot start a transaction") from exc
        self._batch = _Batch()
        return self._batch

    def _begin_waiting(self) -> None:
        raw = self.conn.raw
        raw.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_ms)}")
        try:
            raw.execute("BEGIN IMMEDIATE")
        finally:
            raw.execute("PRAGMA busy_timeout = 0")

    def _undo(self, batch: _Batch, exc: BaseException, alone: bool) -> None:
        """This unit failed: take back its own writes, keep the others'."""
        if alone:  # it opened the batch: nobody else's writes are in it
            self._abort(batch, exc)
            return
        raw = self.conn.raw
        try:
            raw.execute("ROLLBACK TO unit")
            raw.execute("RELEASE unit")
        except sqlite3.Error:
            pass
        if not raw.in_transaction:  # SQLite rolled the whole transaction back (I/O, full...)
            self._abort(batch, exc)

    def _abort(self, batch: _Batch, exc: BaseException) -> None:
        """The shared transaction is lost: every unit waiting on it fails."""
        self._rollback_quietly()
        if self._batch is batch:
            self._batch = None
        if not batch.finished:
            batch.finish(self.translate(exc, "transaction aborted") if batch.members else None)

    def _commit(self, batch: _Batch) -> None:
        if self.commit_waits_for_disk and batch.members > 1:
            # several feeds are busy: theirs are read and parsed while this one waits for the disk
            self._committing = asyncio.get_running_loop().create_task(self._commit_in_thread(batch))
            return
        self._settle(batch, self._try_commit())
        self._committed()
        self.lock.release()

    async def _commit_in_thread(self, batch: _Batch) -> None:
        """COMMIT in a thread, the lock held until it is done: the loop meanwhile reads and
        parses the messages of other connections, which then queue for the lock."""
        outcome: list[BaseException | None] = []
        try:
            # waits for the thread even if cancelled meanwhile; the outcome survives that
            await _finish_in_thread(lambda: outcome.append(self._try_commit()))
        finally:
            self._settle(batch, outcome[0] if outcome else RuntimeError("COMMIT did not complete"))
            self._committed()
            self.lock.release()

    def _try_commit(self) -> BaseException | None:
        """COMMIT the open transaction; the error, if it failed."""
        try:
            self.conn.raw.execute("COMMIT")
        except (sqlite3.Error, OSError) as exc:
            return exc
        return None

    def _settle(self, batch: _Batch, error: BaseException | None) -> None:
        """Tell the batch's units how its COMMIT went."""
        if error is None:
            batch.finish()
        else:
            self._failed_commit(batch, error)

    def _failed_commit(self, batch: _Batch, exc: BaseException) -> None:
        self._rollback_quietly()
        batch.finish(self.translate(exc, "commit failed"))

    def _rollback_quietly(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            if self.conn.raw.in_transaction:
                self.conn.raw.execute("ROLLBACK")

    # -- WAL checkpoints, off the loop

    def _committed(self) -> None:
        self._commits += 1
        if self._commits % CHECKPOINT_EVERY == 0 and (
            self._checkpoint is None or self._checkpoint.done()
        ):
            self._checkpoint = asyncio.get_running_loop().create_task(self._run_checkpoint())

    async def _run_checkpoint(self) -> None:
        """Copy the WAL into the database, in a thread. Passes run while messages go on being
        committed, until what they appended meanwhile is little; a last pass copies that little
        holding the write lock, so that it completes the log and the next transaction starts
        the WAL over from its beginning - a checkpoint that never catches up lets the WAL grow
        without end, and every commit grow dearer. Messages only wait for that last pass."""
        try:
            for _ in range(CATCH_UP_PASSES):
                frames, copied = await _finish_in_thread(self._checkpoint_pass)
                if frames - copied <= LAST_PASS_FRAMES:
                    break
            await self._acquire()
            try:
                await self._commit_open_batch()  # it was left open for us: it goes first
                if not self._closed:
                    await _finish_in_thread(self._checkpoint_pass)
            finally:
                self._release()
        except (sqlite3.Error, OSError):
            pass  # a later checkpoint (or the close) will do it

    def _checkpoint_pass(self) -> tuple[int, int]:
        """One PASSIVE checkpoint: (frames in the WAL, frames copied into the database)."""
        conn = self._checkpointer
        if conn is None:
            conn = self._checkpointer = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False
            )
        _busy, frames, copied = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        return int(frames), int(copied)

    async def _commit_open_batch(self) -> None:
        """With the lock held: commit the batch its last unit left open for us."""
        batch = self._batch
        if batch is None:
            return
        self._batch = None
        self._settle(batch, self._try_commit())

    # -- lifecycle

    async def close(self) -> None:
        """Commit what is waiting, then close (SQLite checkpoints the WAL at the last close)."""
        await self._acquire()
        try:
            await self._commit_open_batch()
            self._closed = True
            checkpoint = self._checkpoint
        finally:
            self.lock.release()
        if checkpoint is not None:
            await asyncio.gather(checkpoint, return_exceptions=True)
        for conn in (self._checkpointer, self.conn.raw):
            if conn is not None:
                with contextlib.suppress(sqlite3.Error):
                    conn.close()
