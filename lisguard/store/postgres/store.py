"""PostgreSQL backend (asyncpg pool): several replicas may share one database.

- A transaction is one pooled connection and one database transaction (READ COMMITTED).
- Replicas must never interleave work on the same message key or patient, so:
  `find_message` first takes `pg_advisory_xact_lock` on a 64-bit hash of the message key, and
  `load_patients` takes `pg_advisory_xact_lock` on each patient key, in ascending lock-id order
  (every transaction takes them in the same global order: no lock-order deadlock), and only
  then SELECTs. The locks are released by COMMIT/ROLLBACK. Because READ COMMITTED takes a new
  snapshot per statement, the SELECT after the lock sees what the previous holder committed.
  Call find_message, then load_patients once with every key the message touches (a second
  load_patients call would take locks out of order; PostgreSQL would detect a deadlock and one
  transaction would fail with StoreError, never corrupt data). The one exception is a retired
  identifier's survivor, known only once the retired record is read: two messages that race to
  merge the same pair the other way round can deadlock that way, and one of them is answered
  AR (resend later). Linked records, only read, are loaded with lock=False.
- Errors: connection loss, refused connections, timeouts, shutdown, disk full, read-only
  server -> StoreUnavailable; other server errors (constraint, deadlock) -> StoreError.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from functools import partial
from typing import Any, TypeVar
from urllib.parse import urlsplit

import asyncpg

from lisguard.domain.alerts import Alert
from lisguard.domain.facts import MessageKey
from lisguard.domain.patient import PatientState
from lisguard.store.audit_chain import start_keyed_chain
from lisguard.store.base import Transaction
from lisguard.store.codec import chain_rows, load_alert, load_detail, load_patient, message_row, utc
from lisguard.store.postgres import live as pg_live
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
from lisguard.store.sql.migrations import apply_postgres
from lisguard.store.sql.parts import AUDIT_CHAIN_LOCK

T = TypeVar("T")

_MESSAGE_COLUMNS = (
    "id, sending_application, sending_facility, control_id, content_hash, message_type,"
    " received_at, ack, outcome, peer, error, flags"
)
_ALERT_COLUMNS = "payload, message_id, created_at, status, id"
_PROBE = (
    "INSERT INTO store_probe (id, at) VALUES (1, now())"
    " ON CONFLICT (id) DO UPDATE SET at = excluded.at"
)

# Server errors that mean "the database cannot serve us now" rather than "this request is bad".
_UNAVAILABLE: tuple[type[BaseException], ...] = (
    OSError,  # refused, reset, unreachable, DNS
    TimeoutError,
    asyncpg.PostgresConnectionError,  # class 08
    asyncpg.InterfaceError,  # connection closed / released underneath us
    asyncpg.InternalClientError,  # protocol state broken, e.g. by a backend killed mid-session
    asyncpg.exceptions.OperatorInterventionError,  # class 57: shutdown, cannot connect now
    asyncpg.exceptions.InsufficientResourcesError,  # class 53: disk full, out of memory, slots
    asyncpg.exceptions.PostgresSystemError,  # class 58: I/O error
    asyncpg.exceptions.ReadOnlySQLTransactionError,  # standby / default_transaction_read_only
    asyncpg.exceptions.InvalidAuthorizationSpecificationError,  # class 28: auth failed
    asyncpg.exceptions.InvalidCatalogNameError,  # database does not exist
)


# What the database layer raises; anything else is a bug and propagates as it is.
# the content, not the server: class 22 (a NUL in text or \u0000 in jsonb is 22P05 or 22021,
# a too long value 22001) and text Python cannot encode (a lone surrogate)
_BAD_DATA: tuple[type[BaseException], ...] = (asyncpg.exceptions.DataError, UnicodeEncodeError)

LIBRARY_ERRORS: tuple[type[Exception], ...] = (
    UnicodeEncodeError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    OSError,
    TimeoutError,
)


def advisory_key(namespace: str, *parts: str) -> int:
    """A signed 64-bit key for pg_advisory_xact_lock(bigint), stable across processes."""
    text = "\x1f".join(("lisguard", namespace, *parts))
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), signed=True)


def message_lock_key(key: MessageKey) -> int:
    return advisory_key("message", key.sending_application, key.sending_facility, key.control_id)


def patient_lock_key(key: str) -> int:
    return advisory_key("patient", key)


def redact_dsn(dsn: str) -> str:
    """The DSN without password or query, for error messages and logs."""
    try:
        parts = urlsplit(dsn)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
        user = f"{parts.username}@" if parts.username else ""
        return f"{parts.scheme}://{user}{host}{port}{parts.path}"
    except ValueError:
        return "postgresql://(unparseable DSN)"


def translate(
    exc: BaseException, doing: str, where: str, *, connection_lost: bool = False
) -> StoreError:
    """An asyncpg/OS exception as the store error the service understands."""
    if isinstance(exc, StoreError):
        return exc
    # the server's primary message only: its DETAIL may quote the values (message content)
    primary = exc.message if isinstance(exc, asyncpg.PostgresError) else str(exc)
    detail = primary or type(exc).__name__
    if isinstance(exc, UnicodeEncodeError):  # its text quotes the characters themselves
        detail = f"text not encodable as UTF-8 ({exc.reason})"
    if connection_lost:
        detail = f"connection lost ({detail})"
    if connection_lost or isinstance(exc, _UNAVAILABLE):
        return StoreUnavailable(f"PostgreSQL {where}: {doing}: {detail}")
    if isinstance(exc, _BAD_DATA):
        return StoreDataError(f"PostgreSQL {where}: {doing}: {detail}")
    return StoreError(f"PostgreSQL {where}: {doing}: {detail}")


def _row_message(row: Mapping[str, Any]) -> StoredMessage:
    control_id = row["control_id"]
    key = (
        None
        if control_id is None
        else MessageKey(row["sending_application"], row["sending_facility"], control_id)
    )
    return StoredMessage(
        id=int(row["id"]),
        key=key,
        content_hash=row["content_hash"],
        message_type=row["message_type"],
        received_at=utc(row["received_at"]),
        ack=row["ack"],
        outcome=row["outcome"],
        peer=row["peer"],
        error=row["error"],
        flags=tuple(row["flags"]),
    )


def _row_alert(row: Mapping[str, Any]) -> StoredAlert:
    return StoredAlert(
        alert=load_alert(row["payload"], row["id"]),
        message_id=int(row["message_id"]),
        created_at=utc(row["created_at"]),
        status=row["status"],
    )


class PostgresStore:
    def __init__(
        self,
        dsn: str,
        min_size: int = 1,
        max_size: int = 10,
        *,
        server_settings: Mapping[str, str] | None = None,
        connect_timeout: float = 10.0,
        acquire_timeout: float = 10.0,
        command_timeout: float | None = 60.0,
        ping_timeout: float = 5.0,
        audit_key: bytes | None = None,
    ) -> None:
        """`dsn`: postgresql://user[:password]@host[:port]/database[?param=value...]; asyncpg
        passes query parameters it does not know (e.g. search_path) to the server as settings.
        `server_settings` adds more (e.g. {"search_path": "lisguard"})."""
        if min_size < 0 or max_size < 1 or min_size > max_size:
            raise ValueError(f"bad pool size: min_size={min_size}, max_size={max_size}")
        self.dsn = dsn
        self.min_size = min_size
        self.max_size = max_size
        self.server_settings = dict(server_settings or {})
        self.connect_timeout = connect_timeout
        self.acquire_timeout = acquire_timeout
        self.command_timeout = command_timeout
        self.ping_timeout = ping_timeout
        self.audit_key = audit_key  # keys the audit chain (lisguard.domain.audit)
        self._where = redact_dsn(dsn)
        self.access = SqlAccess(self, "postgres", utc, utc)  # tokens, audit search, retention
        self.desk = SqlDesk(self, "postgres", utc, utc)  # alert desk and outbox
        self.escalations = SqlEscalations(self, "postgres", utc, utc)  # open too long
        self.message_log = SqlMessageLog(self, "postgres", utc, utc)  # the message browser
        self.live_origin = pg_live.new_origin()  # tags this store's change notifications
        self._pool: Any = None

    def __repr__(self) -> str:
        return f"PostgresStore({self._where!r}, min_size={self.min_size}, max_size={self.max_size})"

    # -- lifecycle

    async def open(self) -> None:
        if self._pool is not None:
            return
        try:
            pool = await asyncpg.create_pool(
                dsn=self.dsn,
                min_size=self.min_size,
                max_size=self.max_size,
                timeout=self.connect_timeout,
                command_timeout=self.command_timeout,
                server_settings=self.server_settings or None,
            )
        except Exception as exc:
            raise translate(exc, "cannot connect", self._where) from exc
        try:
            async with pool.acquire(timeout=self.acquire_timeout) as conn:
                schema = await conn.fetchval("SELECT current_schema()")
                if schema is None:
                    raise StoreError(
                        f"PostgreSQL {self._where}: no existing schema on search_path"
                        f" ({await conn.fetchval('SHOW search_path')}) to create tables in"
                    )
                await apply_postgres(conn, advisory_key("migrate", str(schema)))
                await conn.execute(_PROBE)  # fail now if the server is read-only
        except BaseException as exc:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(pool.close(), timeout=5)
            pool.terminate()
            if isinstance(exc, LIBRARY_ERRORS):
                raise translate(exc, "cannot migrate the schema", self._where) from exc
            raise
        self._pool = pool
        try:
            await start_keyed_chain(self, self.audit_key)
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is None:
            return
        try:
            await asyncio.wait_for(pool.close(), timeout=10)
        except Exception:  # a connection stuck in a query: do not hang shutdown
            pool.terminate()

    async def ping(self) -> bool:
        """A real (tiny) committed write: a read-only or full server is not ready."""
        pool = self._pool
        if pool is None:
            return False
        try:
            async with (
                asyncio.timeout(self.ping_timeout),
                pool.acquire(timeout=self.acquire_timeout) as conn,
            ):
                await conn.execute(_PROBE)
            return True
        except Exception:
            return False

    def change_listener(
        self, on_change: pg_live.ChangeCallback, on_resync: Callable[[], None]
    ) -> pg_live.ChangeListener:
        """Other processes' alert changes on this schema, on a connection of its own."""
        return pg_live.ChangeListener(
            self.dsn,
            self.server_settings,
            self.live_origin,
            on_change,
            on_resync,
            where=self._where,
            connect_timeout=self.connect_timeout,
        )

    def _require_pool(self) -> Any:
        if self._pool is None:
            raise StoreUnavailable(f"PostgreSQL {self._where}: the store is not open")
        return self._pool

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        pool = self._require_pool()
        try:
            conn = await pool.acquire(timeout=self.acquire_timeout)
        except LIBRARY_ERRORS as exc:
            raise translate(exc, "cannot get a connection", self._where) from exc
        healthy = False
        try:
            try:
                pg_tx = conn.transaction()  # READ COMMITTED: see the module docstring
                await pg_tx.start()
            except LIBRARY_ERRORS as exc:
                raise translate(exc, "cannot start a transaction", self._where) from exc
            tx = _PostgresTransaction(conn, self._where, self.audit_key, self.live_origin)
            try:
                yield tx
            except BaseException:
                tx.finished = True
                healthy = await _rollback(pg_tx)
                raise
            tx.finished = True
            if tx.failed:
                healthy = await _rollback(pg_tx)
                raise StoreError("transaction rolled back: a store operation inside it failed")
            try:
                await pg_tx.commit()
            except LIBRARY_ERRORS as exc:
                # on a lost connection the outcome is unknown: the message is not ACKed, and a
                # resend is recognised by find_message if the commit did land
                healthy = await _rollback(pg_tx)
                raise translate(exc, "commit failed", self._where) from exc
            healthy = True
        finally:
            if not healthy:
                with contextlib.suppress(Exception):  # never reuse a connection in doubt
                    conn.terminate()
            with contextlib.suppress(Exception):
                await pool.release(conn)

    # -- reads (committed data, any pooled connection)

    async def _read(self, method: str, sql: str, *args: Any) -> Any:
        pool = self._require_pool()
        try:
            async with pool.acquire(timeout=self.acquire_timeout) as conn:
                return await getattr(conn, method)(sql, *args)
        except LIBRARY_ERRORS as exc:
            raise translate(exc, "read failed", self._where) from exc

    async def get_message(self, message_id: int) -> StoredMessage | None:
        row = await self._read(
            "fetchrow", f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE id = $1", message_id
        )
        return None if row is None else _row_message(row)

    async def get_raw(self, message_id: int) -> bytes | None:
        raw = await self._read("fetchval", "SELECT raw FROM messages WHERE id = $1", message_id)
        return None if raw is None else bytes(raw)

    async def count_messages(self) -> int:
        return int(await self._read("fetchval", "SELECT count(*) FROM messages"))

    async def list_dead_letters(self, limit: int = 100) -> list[StoredMessage]:
        rows = await self._read(
            "fetch",
            f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE error <> '' ORDER BY id DESC LIMIT $1",
            max(limit, 0),
        )
        return [_row_message(r) for r in rows]

    async def get_patient(self, key: str) -> PatientState | None:
        state = await self._read("fetchval", "SELECT state FROM patients WHERE key = $1", key)
        return None if state is None else load_patient(state, key)

    async def get_alert(self, alert_id: str) -> StoredAlert | None:
        row = await self._read(
            "fetchrow", f"SELECT {_ALERT_COLUMNS} FROM alerts WHERE id = $1", alert_id
        )
        return None if row is None else _row_alert(row)

    async def list_alerts(
        self,
        *,
        status: str | None = None,
        rule: str | None = None,
        patient: str | None = None,
        limit: int = 100,
    ) -> list[StoredAlert]:
        where: list[str] = []
        args: list[Any] = []
        for column, value in (("status", status), ("rule", rule), ("patient_key", patient)):
            if value is not None:
                args.append(value)
                where.append(f"{column} = ${len(args)}")
        sql = f"SELECT {_ALERT_COLUMNS} FROM alerts"
        if where:
            sql += " WHERE " + " AND ".join(where)
        args.append(max(limit, 0))
        sql += f" ORDER BY created_at DESC, seq DESC LIMIT ${len(args)}"
        rows = await self._read("fetch", sql, *args)
        return [_row_alert(r) for r in rows]

    async def list_audit(self, *, after_seq: int = 0, limit: int = 1000) -> list[StoredAuditEvent]:
        rows = await self._read(
            "fetch",
            "SELECT seq, kind, at, actor, subject, detail, prev_hash, hash FROM audit_events"
            " WHERE seq > $1 ORDER BY seq LIMIT $2",
            after_seq,
            max(limit, 0),
        )
        return [
            StoredAuditEvent(
                seq=int(r["seq"]),
                event=AuditEvent(
                    kind=r["kind"],
                    at=utc(r["at"]),
                    actor=r["actor"],
                    subject=r["subject"],
                    detail=load_detail(r["detail"]),
                ),
                prev_hash=r["prev_hash"],
                hash=r["hash"],
            )
            for r in rows
        ]


async def _rollback(pg_tx: Any) -> bool:
    """Roll back; False when that failed too (the connection must then be discarded)."""
    try:
        await pg_tx.rollback()
        return True
    except Exception:
        return False


def _is_closed(conn: Any) -> bool:
    try:
        return bool(conn.is_closed())
    except Exception:  # a pool proxy whose connection is gone
        return True


class _PostgresTransaction:
    def __init__(
        self, conn: Any, where: str, audit_key: bytes | None, live_origin: str = ""
    ) -> None:
        self._conn = conn
        self._where = where
        self._audit_key = audit_key
        self._live_origin = live_origin
        self.finished = False
        self.failed = False

    async def _run(self, step: Callable[[], Awaitable[T]], doing: str) -> T:
        if self.finished:
            raise StoreError("the transaction is finished")
        try:
            return await step()
        except Exception as exc:
            # PostgreSQL aborts the transaction after an error; remember it so that the
            # context manager raises instead of "committing" (which would silently roll back)
            self.failed = True
            if isinstance(exc, LIBRARY_ERRORS):
                lost = _is_closed(self._conn)
                raise translate(exc, doing, self._where, connection_lost=lost) from exc
            raise

    async def find_message(self, key: MessageKey) -> StoredMessage | None:
        conn = self._conn
        await self._run(
            partial(conn.execute, "SELECT pg_advisory_xact_lock($1)", message_lock_key(key)),
            "find_message: lock",
        )
        row = await self._run(
            partial(
                conn.fetchrow,
                f"SELECT {_MESSAGE_COLUMNS} FROM messages"
                " WHERE sending_application = $1 AND sending_facility = $2 AND control_id = $3"
                " ORDER BY id DESC LIMIT 1",
                key.sending_application,
                key.sending_facility,
                key.control_id,
            ),
            "find_message",
        )
        return None if row is None else _row_message(row)

    async def load_patients(
        self, keys: Sequence[str], *, lock: bool = True
    ) -> dict[str, PatientState]:
        unique = sorted(set(keys))
        if not unique:
            return {}
        for lock_id in sorted({patient_lock_key(k) for k in unique} if lock else ()):
            await self._run(
                partial(self._conn.execute, "SELECT pg_advisory_xact_lock($1)", lock_id),
                "load_patients: lock",
            )
        rows = await self._run(
            partial(
                self._conn.fetch,
                "SELECT key, state FROM patients WHERE key = ANY($1::text[])",
                unique,
            ),
            "load_patients",
        )
        try:
            return {r["key"]: load_patient(r["state"], r["key"]) for r in rows}
        except StoreError:
            self.failed = True
            raise

    async def save_patient(self, state: PatientState) -> None:
        await self._run(
            partial(
                self._conn.execute,
                "INSERT INTO patients (key, state, updated_at) VALUES ($1, $2::jsonb, $3)"
                " ON CONFLICT (key) DO UPDATE SET state = excluded.state,"
                " updated_at = excluded.updated_at",
                state.key,
                state.model_dump_json(),
                datetime.now(UTC),
            ),
            "save_patient",
        )

    async def delete_patient(self, key: str) -> None:
        await self._run(
            partial(self._conn.execute, "DELETE FROM patients WHERE key = $1", key),
            "delete_patient",
        )

    async def add_message(self, message: NewMessage) -> int:
        message_id = await self._run(
            partial(
                self._conn.fetchval,
                "INSERT INTO messages (sending_application, sending_facility, control_id,"
                " content_hash, message_type, received_at, raw, ack, outcome, peer, error, flags)"
                " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) RETURNING id",
                *message_row(message, utc, list),
            ),
            "add_message",
        )
        return int(message_id)

    async def add_alerts(
        self, alerts: Sequence[Alert], *, message_id: int, created_at: datetime
    ) -> list[str]:
        inserted: list[str] = []
        created = utc(created_at)
        for alert in alerts:
            new_id = await self._run(
                partial(
                    self._conn.fetchval,
                    "INSERT INTO alerts (id, patient_key, rule, order_id, severity, created_at,"
                    " event_time, message_id, payload)"
                    " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::jsonb)"
                    " ON CONFLICT (id) DO NOTHING RETURNING id",
                    alert.id,
                    alert.patient_key,
                    alert.rule.value,
                    alert.order,
                    alert.severity.value,
                    created,
                    None if alert.event_time is None else utc(alert.event_time),
                    message_id,
                    alert.model_dump_json(),
                ),
                "add_alerts",
            )
            if new_id is not None:
                inserted.append(str(new_id))
        await self.notify_changed(inserted)
        return inserted

    async def notify_changed(self, alert_ids: Sequence[str]) -> None:
        """Tell the other replicas' live pages, at COMMIT (lisguard.store.postgres.live)."""
        if alert_ids:
            await self._run(
                partial(pg_live.notify, self._conn, self._live_origin, alert_ids), "notify"
            )

    async def add_audit(self, events: Sequence[AuditEvent]) -> None:
        if not events:
            return
        # One chain across replicas: appends take a transaction-scoped lock, held from here to
        # commit. add_audit is the last write of a unit of work, so the lock is held briefly,
        # and always after any patient lock (no lock-order inversion).
        await self._run(
            partial(self._conn.execute, "SELECT pg_advisory_xact_lock($1)", AUDIT_CHAIN_LOCK),
            "add_audit",
        )
        last = await self._run(
            partial(self._conn.fetchval, "SELECT hash FROM audit_events ORDER BY seq DESC LIMIT 1"),
            "add_audit",
        )
        rows = chain_rows(last, events, utc, self._audit_key)
        await self._run(
            partial(
                self._conn.executemany,
                "INSERT INTO audit_events (at, kind, actor, subject, detail, prev_hash, hash)"
                " VALUES ($1, $2, $3, $4, $5::jsonb, $6, $7)",
                rows,
            ),
            "add_audit",
        )
