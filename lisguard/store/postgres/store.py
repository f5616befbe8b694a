"""PostgreSQL backend (asyncpg pool): several replicas may share one database.

- A transaction is one pooled connection and one database transaction (READ COMMITTED).
- Replicas must never interleave work on the same message key or patient, so:
  `find_message` first takes `pg_advisory_xact_lock` on a 64-bit hash of the message key, then
  on each patient key it is given (and `load_patients` on each key not locked yet), in
  ascending lock-id order (every transaction takes them in the same global order: no
  lock-order deadlock), and only then SELECTs; one server-side call does all of that
  (postgres/unit.py, migration 0011). The locks are released by COMMIT/ROLLBACK. Because
  READ COMMITTED takes a new snapshot per statement (and per query inside a VOLATILE
  function), the SELECT after the lock sees what the previous holder committed.
  Call find_message, then load_patients once with every key the message touches (a second
  load_patients call would take locks out of order; PostgreSQL would detect a deadlock and one
  transaction would fail with StoreError, never corrupt data). The one exception is a retired
  identifier's survivor, known only once the retired record is read: two messages that race to
  merge the same pair the other way round can deadlock that way, and one of them is answered
  AR (resend later). Linked records, only read, are loaded with lock=False.
- A new alert's open leads (same patient and rule) are locked FOR UPDATE by the alert write
  that answers routing's read (postgres/routing.py, migration 0012), after the patient locks;
  a technologist's action on such a lead waits for the message's COMMIT.
- Errors: connection loss, refused connections, timeouts, shutdown, disk full, read-only
  server -> StoreUnavailable; other server errors (constraint, deadlock) -> StoreError.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import asyncpg

from lisguard.domain.patient import PatientState
from lisguard.store.audit_chain import start_keyed_chain
from lisguard.store.base import Transaction
from lisguard.store.codec import load_alert, load_detail, load_patient, utc
from lisguard.store.postgres import live as pg_live
from lisguard.store.postgres.errors import LIBRARY_ERRORS, redact_dsn, translate
from lisguard.store.postgres.unit import PostgresTransaction, advisory_key, row_message
from lisguard.store.records import (
    AuditEvent,
    StoredAlert,
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
        # the audit chain's last hash as this process last appended it: a guess, checked by the
        # server under the chain's lock (another replica or connection may have appended since)
        self.audit_last: str | None = None
        self.audit_known = False
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
                reset=_keep_session,
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
            tx = PostgresTransaction(conn, self._where, self)
            try:
                yield tx
                if not tx.failed:
                    await tx.flush()  # what is still buffered (a unit that wrote no audit)
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
            if tx.audit_tail is not None:  # the chain's last hash, for the next append
                self.audit_last, self.audit_known = tx.audit_tail, True
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
        return None if row is None else row_message(row)

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
        return [row_message(r) for r in rows]

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


async def _keep_session(conn: Any) -> None:
    """The pool's reset on release, a round trip saved per unit of work: asyncpg's default
    (UNLISTEN, RESET ALL, advisory unlock, CLOSE ALL) undoes session state that lisguard never
    makes on a pooled connection (its locks are transaction-scoped, LISTEN has a connection of
    its own, it sets nothing). An open transaction is still rolled back by the pool itself."""


async def _rollback(pg_tx: Any) -> bool:
    """Roll back; False when that failed too (the connection must then be discarded)."""
    try:
        await pg_tx.rollback()
        return True
    except Exception:
        return False
