"""SQLite backend: one file, one writer.

- WAL journal, synchronous=FULL by default: every COMMIT waits for an fsync (shared by the
  messages that arrive meanwhile: group commit), so an ACKed message survives a power cut too.
  synchronous=NORMAL (URL ?synchronous=NORMAL) survives the process dying (kill -9, OOM, crash:
  the WAL is in the OS) but a power cut or kernel crash may lose the last commits.
  busy_timeout, foreign keys on.
- ONE writer connection (lisguard.store.sqlite.writer: statements inline on the event loop,
  group commit); transactions are serialised by its lock and the SQLite transaction starts with
  BEGIN IMMEDIATE, so the write lock is held from the first statement and no transaction ever
  fails half-way with SQLITE_BUSY. That also serialises work on a patient.
- Reads outside a transaction use a second, query-only connection (aiosqlite): with WAL they
  see the last committed state and never wait for the writer.
- sqlite3/OS errors are translated to StoreUnavailable (cannot open, locked, disk I/O, read-only,
  disk full) or StoreError (constraint violations and the like).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

from lisguard.domain.alerts import Alert
from lisguard.domain.facts import MessageKey
from lisguard.domain.patient import PatientState
from lisguard.store.audit_chain import start_keyed_chain
from lisguard.store.base import Transaction
from lisguard.store.codec import chain_rows, load_alert, load_detail, load_patient, message_row, utc
from lisguard.store.records import (
    AuditEvent,
    NewMessage,
    StoredAlert,
    StoreDataError,
    StoredAuditEvent,
    StoredMessage,
    StoreError,
    StoreUnavailable,
)
from lisguard.store.sql.access import SqlAccess
from lisguard.store.sql.desk import SqlDesk
from lisguard.store.sql.escalation import SqlEscalations
from lisguard.store.sql.messages import SqlMessageLog
from lisguard.store.sql.migrations import apply_sqlite
from lisguard.store.sqlite.writer import GroupWriter, InlineConnection

T = TypeVar("T")

SYNCHRONOUS_MODES = ("FULL", "NORMAL")

_MESSAGE_COLUMNS = (
    "id, sending_application, sending_facility, control_id, content_hash, message_type,"
    " received_at, ack, outcome, peer, error, flags"
)
_ALERT_COLUMNS = "payload, message_id, created_at, status, id"
_PROBE = (
    "INSERT INTO store_probe (id, at) VALUES (1, ?) ON CONFLICT (id) DO UPDATE SET at = excluded.at"
)


@lru_cache(maxsize=256)  # a message writes the same `now` into several rows
def _ts(value: datetime) -> str:
    """UTC ISO text with a fixed layout, so text order is time order."""
    return utc(value).isoformat(timespec="microseconds")


def _parse_ts(text: str) -> datetime:
    return utc(datetime.fromisoformat(text))


def _now() -> str:
    return _ts(datetime.now(UTC))


# What the database layer raises: sqlite3 errors, OS errors, and ValueError from aiosqlite when
# its connection is closed. Anything else is a bug and propagates as it is.
LIBRARY_ERRORS: tuple[type[Exception], ...] = (sqlite3.Error, OSError, ValueError)


def translate(exc: BaseException, doing: str, path: Path | str) -> StoreError:
    """A sqlite3/OS/aiosqlite exception as the store error the service understands."""
    if isinstance(exc, StoreError):
        return exc
    detail = str(exc) or type(exc).__name__
    if isinstance(exc, sqlite3.DataError | UnicodeEncodeError):  # too big, unencodable text
        return StoreDataError(f"SQLite {path}: {doing}: {detail}")
    if isinstance(exc, sqlite3.IntegrityError | sqlite3.ProgrammingError):
        return StoreError(f"SQLite {path}: {doing}: {detail}")
    if isinstance(exc, OSError):
        return StoreUnavailable(f"SQLite {path}: {doing}: {exc.strerror or detail}")
    # OperationalError (unable to open, locked, disk I/O, readonly, full), DatabaseError (not a
    # database / malformed), ValueError from aiosqlite (connection closed) and anything else
    # mean the database cannot be used right now.
    return StoreUnavailable(f"SQLite {path}: {doing}: {detail}")


def _row_message(row: Sequence[Any]) -> StoredMessage:
    key = None if row[3] is None else MessageKey(row[1], row[2], row[3])
    return StoredMessage(
        id=int(row[0]),
        key=key,
        content_hash=row[4],
        message_type=row[5],
        received_at=_parse_ts(row[6]),
        ack=row[7],
        outcome=row[8],
        peer=row[9],
        error=row[10],
        flags=tuple(json.loads(row[11])),
    )


def _row_alert(row: Sequence[Any]) -> StoredAlert:
    return StoredAlert(
        alert=load_alert(row[0], row[4]),
        message_id=int(row[1]),
        created_at=_parse_ts(row[2]),
        status=row[3],
    )


class SqliteStore:
    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        synchronous: str = "FULL",
        busy_timeout_ms: int = 5000,
        ping_timeout: float = 5.0,
        min_free_bytes: int = 16 * 1024 * 1024,
        audit_key: bytes | None = None,
    ) -> None:
        mode = synchronous.upper()
        if mode not in SYNCHRONOUS_MODES:
            raise ValueError(f"synchronous must be one of {SYNCHRONOUS_MODES}, not {synchronous!r}")
        self.path = Path(path)
        if str(self.path) in ("", ":memory:") or str(path).startswith("file:"):
            raise ValueError("SqliteStore needs a file path (use memory:// for a throwaway store)")
        self.synchronous = mode
        self.busy_timeout_ms = busy_timeout_ms
        self.ping_timeout = ping_timeout
        # readiness wants room for more than the probe: a nearly full disk still takes the
        # probe's one page while every real message is refused (seen with a 1 MiB tmpfs)
        self.min_free_bytes = min_free_bytes
        self.audit_key = audit_key  # keys the audit chain (lisguard.domain.audit)
        self._writer: GroupWriter | None = None
        self._reader: aiosqlite.Connection | None = None
        self.access = SqlAccess(self, "sqlite", _ts, _parse_ts)  # tokens, audit search, retention
        self.desk = SqlDesk(self, "sqlite", _ts, _parse_ts)  # alert desk and outbox
        self.escalations = SqlEscalations(self, "sqlite", _ts, _parse_ts)  # open too long
        self.message_log = SqlMessageLog(self, "sqlite", _ts, _parse_ts)  # the message browser

    def __repr__(self) -> str:
        return f"SqliteStore({str(self.path)!r}, synchronous={self.synchronous})"

    # -- lifecycle

    async def open(self) -> None:
        if self._writer is not None:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreUnavailable(
                f"SQLite {self.path}: cannot create directory {self.path.parent}:"
                f" {exc.strerror or exc}"
            ) from exc
        conn: sqlite3.Connection | None = None
        reader: aiosqlite.Connection | None = None
        try:
            # the writer is used inline on the loop, and by a thread for FULL commits
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_ms)}")
            rows = conn.execute("PRAGMA journal_mode = WAL").fetchall()
            if not rows or str(rows[0][0]).lower() != "wal":
                raise StoreUnavailable(f"SQLite {self.path}: cannot switch to WAL journal mode")
            conn.execute(f"PRAGMA synchronous = {self.synchronous}")
            conn.execute("PRAGMA foreign_keys = ON")
            await apply_sqlite(InlineConnection(conn))
            self._probe(conn)  # fail now, not at the first message, if read-only
            reader = await aiosqlite.connect(self.path, isolation_level=None)
            await reader.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_ms)}")
            await reader.execute("PRAGMA query_only = ON")
        except BaseException as exc:
            if reader is not None:
                with contextlib.suppress(Exception):
                    await reader.close()
            if conn is not None:
                with contextlib.suppress(Exception):
                    conn.close()
            if isinstance(exc, LIBRARY_ERRORS):
                raise translate(exc, "cannot open the database", self.path) from exc
            raise
        self._writer = GroupWriter(
            conn,
            self.path,
            busy_timeout_ms=self.busy_timeout_ms,
            translate=lambda exc, doing: translate(exc, doing, self.path),
            commit_waits_for_disk=self.synchronous in ("FULL", "EXTRA"),
        )
        self._reader = reader
        try:
            await start_keyed_chain(self, self.audit_key)
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        writer, reader = self._writer, self._reader
        self._writer = self._reader = None
        if writer is not None:
            await writer.close()  # lets a running transaction finish and commit
        if reader is not None:
            with contextlib.suppress(Exception):
                await reader.close()

    async def ping(self) -> bool:
        """A real (tiny) committed write: proves the file is writable, not just readable."""
        try:
            async with asyncio.timeout(self.ping_timeout):
                writer, reader = self._writer, self._reader
                if writer is None or reader is None:
                    return False
                async with writer.unit() as conn:
                    await conn.execute(_PROBE, (_now(),))
                await reader.execute_fetchall("SELECT 1")
            disk = await asyncio.to_thread(os.statvfs, self.path.parent)
            return disk.f_bavail * disk.f_frsize >= self.min_free_bytes
        except Exception:  # includes TimeoutError
            return False

    def _probe(self, conn: sqlite3.Connection) -> None:
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute(_PROBE, (_now(),))
            conn.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            raise

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        writer = self._writer
        if writer is None:
            raise StoreUnavailable(f"SQLite {self.path}: the store is not open")
        # a savepoint in the writer's group commit; leaves only once committed
        async with writer.unit() as conn:
            tx = _SqliteTransaction(conn, self.path, self.audit_key)
            try:
                yield tx
            finally:
                tx.finished = True
            if tx.failed:
                raise StoreError("transaction rolled back: a store operation inside it failed")

    # -- reads (committed data, on the reader connection)

    async def _read(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        reader = self._reader
        if reader is None:
            raise StoreUnavailable(f"SQLite {self.path}: the store is not open")
        try:
            return list(await reader.execute_fetchall(sql, params))
        except LIBRARY_ERRORS as exc:
            raise translate(exc, "read failed", self.path) from exc

    async def get_message(self, message_id: int) -> StoredMessage | None:
        rows = await self._read(
            f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE id = ?", (message_id,)
        )
        return _row_message(rows[0]) if rows else None

    async def get_raw(self, message_id: int) -> bytes | None:
        rows = await self._read("SELECT raw FROM messages WHERE id = ?", (message_id,))
        return bytes(rows[0][0]) if rows else None

    async def count_messages(self) -> int:
        rows = await self._read("SELECT count(*) FROM messages")
        return int(rows[0][0])

    async def list_dead_letters(self, limit: int = 100) -> list[StoredMessage]:
        rows = await self._read(
            f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE error <> '' ORDER BY id DESC LIMIT ?",
            (max(limit, 0),),
        )
        return [_row_message(r) for r in rows]

    async def get_patient(self, key: str) -> PatientState | None:
        rows = await self._read("SELECT state FROM patients WHERE key = ?", (key,))
        return load_patient(rows[0][0], key) if rows else None

    async def get_alert(self, alert_id: str) -> StoredAlert | None:
        rows = await self._read(f"SELECT {_ALERT_COLUMNS} FROM alerts WHERE id = ?", (alert_id,))
        return _row_alert(rows[0]) if rows else None

    async def list_alerts(
        self,
        *,
        status: str | None = None,
        rule: str | None = None,
        patient: str | None = None,
        limit: int = 100,
    ) -> list[StoredAlert]:
        where: list[str] = []
        params: list[Any] = []
        for column, value in (("status", status), ("rule", rule), ("patient_key", patient)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        sql = f"SELECT {_ALERT_COLUMNS} FROM alerts"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY created_at DESC, rowid DESC LIMIT ?"
        rows = await self._read(sql, (*params, max(limit, 0)))
        return [_row_alert(r) for r in rows]

    async def list_audit(self, *, after_seq: int = 0, limit: int = 1000) -> list[StoredAuditEvent]:
        rows = await self._read(
            "SELECT seq, kind, at, actor, subject, detail, prev_hash, hash FROM audit_events"
            " WHERE seq > ? ORDER BY seq LIMIT ?",
            (after_seq, max(limit, 0)),
        )
        return [
            StoredAuditEvent(
                seq=int(r[0]),
                event=AuditEvent(
                    kind=r[1],
                    at=_parse_ts(r[2]),
                    actor=r[3],
                    subject=r[4],
                    detail=load_detail(r[5]),
                ),
                prev_hash=r[6],
                hash=r[7],
            )
            for r in rows
        ]


class _SqliteTransaction:
    def __init__(self, conn: InlineConnection, path: Path, audit_key: bytes | None) -> None:
        self._conn = conn
        self._path = path
        self._audit_key = audit_key
        self.finished = False
        self.failed = False

    async def _run(self, step: Callable[[], Awaitable[T]], doing: str) -> T:
        if self.finished:
            raise StoreError("the transaction is finished")
        try:
            return await step()
        except Exception as exc:
            self.failed = True  # poisoned: commit is refused, like PostgreSQL would
            if isinstance(exc, LIBRARY_ERRORS):
                raise translate(exc, doing, self._path) from exc
            raise

    def _sql(
        self, doing: str, sql: str, params: Any = (), *, many: bool = False, fetch: bool = False
    ) -> Any:
        """One statement on the writer connection, called directly: the writer runs on the
        loop and never waits (see sqlite.writer), so there is nothing to await - and every
        message makes several of these calls. Returns the rows (fetch) or the cursor."""
        if self.finished:
            raise StoreError("the transaction is finished")
        raw = self._conn.raw
        try:
            cursor = raw.executemany(sql, params) if many else raw.execute(sql, params)
            return cursor.fetchall() if fetch else cursor
        except Exception as exc:
            self.failed = True  # poisoned: commit is refused, like PostgreSQL would
            if isinstance(exc, LIBRARY_ERRORS):
                raise translate(exc, doing, self._path) from exc
            raise

    async def _fetch(self, sql: str, params: Sequence[Any], doing: str) -> list[Any]:
        rows: list[Any] = self._sql(doing, sql, params, fetch=True)
        return rows

    async def find_message(
        self, key: MessageKey, *, patients: Sequence[str] = ()
    ) -> StoredMessage | None:
        del patients  # read when asked for: no round trip to save in-process
        rows = await self._fetch(
            f"SELECT {_MESSAGE_COLUMNS} FROM messages"
            " WHERE sending_application = ? AND sending_facility = ? AND control_id = ?"
            " ORDER BY id DESC LIMIT 1",
            (key.sending_application, key.sending_facility, key.control_id),
            "find_message",
        )
        return _row_message(rows[0]) if rows else None

    async def load_patients(
        self, keys: Sequence[str], *, lock: bool = True
    ) -> dict[str, PatientState]:
        unique = sorted(set(keys))
        if not unique:
            return {}
        marks = ", ".join("?" * len(unique))
        rows = await self._fetch(
            f"SELECT key, state FROM patients WHERE key IN ({marks})", unique, "load_patients"
        )
        try:
            return {r[0]: load_patient(r[1], r[0]) for r in rows}
        except StoreError:
            self.failed = True
            raise

    async def save_patient(self, state: PatientState) -> None:
        await self._fetch(
            "INSERT INTO patients (key, state, updated_at) VALUES (?, ?, ?)"
            " ON CONFLICT (key) DO UPDATE SET state = excluded.state,"
            " updated_at = excluded.updated_at",
            (state.key, state.model_dump_json(), _now()),
            "save_patient",
        )

    async def delete_patient(self, key: str) -> None:
        await self._fetch("DELETE FROM patients WHERE key = ?", (key,), "delete_patient")

    async def add_message(self, message: NewMessage) -> int:
        cursor = self._sql(
            "add_message",
            "INSERT INTO messages (sending_application, sending_facility, control_id,"
            " content_hash, message_type, received_at, raw, ack, outcome, peer, error, flags)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            message_row(message, _ts, json.dumps),
        )
        if cursor.lastrowid is None:
            self.failed = True
            raise StoreError("add_message: SQLite did not return the new row id")
        return int(cursor.lastrowid)

    async def add_alerts(
        self, alerts: Sequence[Alert], *, message_id: int, created_at: datetime
    ) -> list[str]:
        inserted: list[str] = []
        created = _ts(created_at)
        for alert in alerts:
            cursor = self._sql(
                "add_alerts",
                "INSERT INTO alerts (id, patient_key, rule, order_id, severity, created_at,"
                " event_time, message_id, payload) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (id) DO NOTHING",
                (
                    alert.id,
                    alert.patient_key,
                    alert.rule.value,
                    alert.order,
                    alert.severity.value,
                    created,
                    None if alert.event_time is None else _ts(alert.event_time),
                    message_id,
                    alert.model_dump_json(),
                ),
            )
            if cursor.rowcount == 1:
                inserted.append(alert.id)
        return inserted

    async def add_audit(self, events: Sequence[AuditEvent]) -> None:
        if not events:
            return
        # The writer connection is exclusive for the transaction: reading the last hash and
        # appending cannot interleave with another writer.
        last = await self._fetch(
            "SELECT hash FROM audit_events ORDER BY seq DESC LIMIT 1", (), "add_audit"
        )
        rows = chain_rows(last[0][0] if last else None, events, _ts, self._audit_key)
        self._sql(
            "add_audit",
            "INSERT INTO audit_events (at, kind, actor, subject, detail, prev_hash, hash)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            rows,
            many=True,
        )
