"""One unit of work on one pooled connection (PostgresStore.transaction), in as few round trips
as its steps allow: the message key and the patients are locked and read in one call
(lisguard_find_message, migration 0011), and the unit's writes go in one call
(lisguard_write, migration 0012) with its alerts or its audit events; the alert write also
answers routing's read, and routing's writes wait for the next call (postgres/routing.py)."""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime
from functools import partial
from typing import Any, Protocol, TypeVar

from lisguard.domain.alerts import Alert
from lisguard.domain.facts import MessageKey
from lisguard.domain.patient import PatientState
from lisguard.store.codec import chain_rows, load_patient, message_row, utc
from lisguard.store.desk import UNRESOLVED
from lisguard.store.postgres import live as pg_live
from lisguard.store.postgres.errors import LIBRARY_ERRORS, translate
from lisguard.store.postgres.routing import RoutingBuffer
from lisguard.store.records import AuditEvent, NewMessage, StoredMessage, StoreError
from lisguard.store.sql.parts import AUDIT_CHAIN_LOCK

T = TypeVar("T")


class ChainTail(Protocol):
    """What a unit needs of its store: the audit key, the chain's last hash as this process
    last appended it, and the origin tag of its change notifications."""

    audit_key: bytes | None
    audit_last: str | None
    audit_known: bool
    live_origin: str


def advisory_key(namespace: str, *parts: str) -> int:
    """A signed 64-bit key for pg_advisory_xact_lock(bigint), stable across processes."""
    text = "\x1f".join(("lisguard", namespace, *parts))
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), signed=True)


def message_lock_key(key: MessageKey) -> int:
    return advisory_key("message", key.sending_application, key.sending_facility, key.control_id)


def patient_lock_key(key: str) -> int:
    return advisory_key("patient", key)


def row_message(row: Mapping[str, Any]) -> StoredMessage:
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


def _is_closed(conn: Any) -> bool:
    try:
        return bool(conn.is_closed())
    except Exception:  # a pool proxy whose connection is gone
        return True


class PostgresTransaction:
    """One unit of work on one connection, in as few round trips as the steps allow:
    `find_message` locks and reads the message key and the patients in one call
    (lisguard_find_message, migration 0011) and reserves the new message's id; patient states
    and the message are buffered and go with the alerts or the audit events in one call
    (lisguard_write). `flush` sends what is buffered before any other statement, so that every
    statement sees the unit's own writes."""

    def __init__(self, conn: Any, where: str, store: ChainTail) -> None:
        self._conn = conn
        self._where = where
        self._store = store
        self.finished = False
        self.failed = False
        self.audit_tail: str | None = None  # the last audit hash this unit appended
        self._reserved: int | None = None  # the id lisguard_find_message reserved
        self._read: dict[str, str] | None = None  # patients read (and locked) with the message
        self._states: dict[str, str] = {}  # buffered patient states, by key
        self._message: tuple[Any, ...] | None = None  # the buffered message: id, then its row
        self._read_keys: set[str] = set()
        # routing's read, answered by the alert write, and its buffered writes (sql/desk.py)
        self.routing = RoutingBuffer()

    def routing_writes(self) -> RoutingBuffer:
        """Where routing's writes wait for the unit's next write (a finished unit refuses)."""
        if self.finished:
            raise StoreError("the transaction is finished")
        return self.routing

    async def _run(self, step: Callable[[], Awaitable[T]], doing: str) -> T:
        if self.finished:
            raise StoreError("the transaction is finished")
        self.routing.forget()  # a statement may change what the alert write answered
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

    async def find_message(
        self, key: MessageKey, *, patients: Sequence[str] = ()
    ) -> StoredMessage | None:
        await self.flush()
        keys = sorted(set(patients))
        row = await self._run(
            partial(
                self._conn.fetchrow,
                "SELECT * FROM lisguard_find_message($1, $2, $3, $4, $5, $6)",
                message_lock_key(key),
                key.sending_application,
                key.sending_facility,
                key.control_id,
                sorted({patient_lock_key(k) for k in keys}),
                keys,
            ),
            "find_message",
        )
        self._reserved = int(row["reserved_id"])
        self._read = dict(zip(row["patient_keys"] or (), row["patient_states"] or (), strict=True))
        self._read_keys = set(keys)
        return None if row["id"] is None else row_message(row)

    async def load_patients(
        self, keys: Sequence[str], *, lock: bool = True
    ) -> dict[str, PatientState]:
        unique = sorted(set(keys))
        if not unique:
            return {}
        if self._read is not None and self._read_keys.issuperset(unique):
            found = {k: self._read[k] for k in unique if k in self._read}  # locked already
        else:
            await self.flush()
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
            found = {r["key"]: r["state"] for r in rows}
        try:
            return {k: load_patient(state, k) for k, state in found.items()}
        except StoreError:
            self.failed = True
            raise

    async def save_patient(self, state: PatientState) -> None:
        if self.finished:
            raise StoreError("the transaction is finished")
        self._read = None  # what was read is no longer what is stored
        self._states[state.key] = state.model_dump_json()

    async def delete_patient(self, key: str) -> None:
        await self.flush()
        self._read = None
        await self._run(
            partial(self._conn.execute, "DELETE FROM patients WHERE key = $1", key),
            "delete_patient",
        )

    async def add_message(self, message: NewMessage) -> int:
        if self._reserved is not None and self._message is None and not self.finished:
            message_id, self._reserved = self._reserved, None
            self._message = (message_id, *message_row(message, utc, list))
            return message_id
        await self.flush()
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
        if not alerts:
            return []
        columns: tuple[list[Any], ...] = ([], [], [], [], [], [], [])
        for alert in alerts:
            for column, value in zip(
                columns,
                (
                    alert.id,
                    alert.patient_key,
                    alert.rule.value,
                    alert.order,
                    alert.severity.value,
                    None if alert.event_time is None else utc(alert.event_time),
                    alert.model_dump_json(),
                ),
                strict=True,
            ):
                column.append(value)
        row = await self._write("add_alerts", alerts=(*columns, utc(created_at), message_id))
        inserted = list(row["inserted"])
        new = set(inserted)
        pairs = [(a.patient_key, a.rule.value) for a in alerts if a.id in new]
        self.routing.learn(created_at, pairs, row["in_force"], row["leads"])
        return inserted

    async def notify_changed(self, alert_ids: Sequence[str]) -> None:
        """Tell the other replicas' live pages, at COMMIT (lisguard.store.postgres.live)."""
        if alert_ids:
            await self.flush()
            await self._run(
                partial(pg_live.notify, self._conn, self._store.live_origin, alert_ids), "notify"
            )

    async def add_audit(self, events: Sequence[AuditEvent]) -> None:
        if not events:
            return
        # One chain across replicas: the append takes a transaction-scoped lock, held to
        # COMMIT. add_audit is the last write of a unit of work, so the lock is held briefly,
        # and always after any patient lock (no lock-order inversion). The rows are hashed on
        # the last hash this process appended; the server checks it under the lock and, when
        # another writer appended since, answers the real one: hashed again, appended then.
        key, store = self._store.audit_key, self._store
        guess = store.audit_last if store.audit_known else _UNKNOWN_HASH
        rows = chain_rows(store.audit_last, events, utc, key)
        row = await self._write("add_audit", audit=rows, expected=guess)
        if not row["audited"]:
            last = row["audit_last"]
            rows = chain_rows(last, events, utc, key)
            row = await self._write("add_audit", audit=rows, expected=last)
            if not row["audited"]:  # cannot happen while the lock is held: a bug, not bad luck
                self.failed = True
                raise StoreError("audit chain moved while its lock was held")
        self.audit_tail = rows[-1][-1]

    async def flush(self) -> None:
        """Send the buffered patient states, message and routing writes, if any."""
        if self._states or self._message is not None or self.routing.pending:
            await self._write("flush")

    async def _write(
        self,
        doing: str,
        *,
        alerts: tuple[Any, ...] | None = None,
        audit: Sequence[tuple[Any, ...]] = (),
        expected: str | None = None,
    ) -> Any:
        """One lisguard_write with everything buffered; its row (migration 0012)."""
        states, self._states = self._states, {}
        message, self._message = self._message, None
        if message is None:
            message = (None,) * 13
        if alerts is None:
            alerts = ([], [], [], [], [], [], [], None, None)
        trail: tuple[list[Any], ...] = ([], [], [], [], [], [], [])
        for event in audit:
            for column, value in zip(trail, event, strict=True):
                column.append(value)
        holds, held_by, folds, leads, folded_at, queued, channels, queued_at = self.routing.take()
        row = await self._run(
            partial(
                self._conn.fetchrow,
                _WRITE,
                datetime.now(UTC),
                list(states),
                list(states.values()),
                *message,
                *alerts[:5],
                alerts[7],
                alerts[5],
                alerts[8],
                alerts[6],
                pg_live.CHANNEL,
                self._store.live_origin,
                AUDIT_CHAIN_LOCK,
                expected,
                *trail,
                list(UNRESOLVED),
                holds,
                held_by,
                folds,
                leads,
                [utc(t) for t in folded_at],
                queued,
                channels,
                [utc(t) for t in queued_at],
            ),
            doing,
        )
        return row


# never a hash: the server answers the real last hash (an empty chain's is NULL)
_UNKNOWN_HASH = "unknown"

# lisguard_write's 45 parameters (migration 0012), in its order
_WRITE = "SELECT * FROM lisguard_write(" + ", ".join(f"${i}" for i in range(1, 46)) + ")"
