"""How records are written to and read from a database: the encodings every backend shares
(memory included, so that what a test reads back is what a real backend would give)."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime
from enum import Enum
from typing import Any

from pydantic import BaseModel, ValidationError

from lisguard.domain.alerts import Alert
from lisguard.domain.audit import (
    canonical_detail,
    hash_canonical,
    reads_back_the_same,
)
from lisguard.domain.patient import PatientState
from lisguard.store.records import AuditEvent, NewMessage, StoreError


def utc(value: datetime) -> datetime:
    """A wall-clock timestamp as an aware UTC datetime (naive values are taken to be UTC)."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def _json_default(value: object) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, set | frozenset):
        return sorted(value, key=str)
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)  # an audit record must not fail a message over an odd value


def dump_json(value: Any) -> str:
    """Canonical JSON for audit details (sorted keys, compact, non-ASCII kept): stable text is
    what a later hash chain over audit events will need."""
    return json.dumps(
        value, default=_json_default, sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )


def message_row(
    message: NewMessage, stamp: Callable[[datetime], Any], flags: Callable[[list[str]], Any]
) -> tuple[Any, ...]:
    """The `messages` row for a new message, in INSERT column order (sending_application,
    sending_facility, control_id, content_hash, message_type, received_at, raw, ack, outcome,
    peer, error, flags); `stamp` and `flags` encode for the dialect."""
    key = message.key
    return (
        None if key is None else key.sending_application,
        None if key is None else key.sending_facility,
        None if key is None else key.control_id,
        message.content_hash,
        message.message_type,
        stamp(message.received_at),
        bytes(message.raw),
        message.ack,
        message.outcome,
        message.peer,
        message.error,
        flags(list(message.flags)),
    )


def chain_rows(
    prev: str | None,
    events: Sequence[AuditEvent],
    stamp: Callable[[datetime], Any],
    key: bytes | None = None,
) -> list[tuple[Any, ...]]:
    """Audit rows ready to insert, each hashed over what will be stored and linked to `prev`:
    (at, kind, actor, subject, detail JSON, prev_hash, hash). `key`: the audit-chain key (an
    HMAC the database cannot recompute); None only for stores opened without one (tests)."""
    rows = []
    for e in events:
        detail = dump_json(e.detail)
        # the hash is over the canonical text a verifier rebuilds from the stored JSON; most
        # details are that text already (one JSON dump a message instead of dump, load, dump)
        canonical = (
            detail if reads_back_the_same(e.detail) else canonical_detail(load_detail(detail))
        )
        digest = hash_canonical(prev, utc(e.at), e.kind, e.actor, e.subject, canonical, key)
        rows.append((stamp(e.at), e.kind, e.actor, e.subject, detail, prev, digest))
        prev = digest
    return rows


def load_detail(text: str) -> dict[str, Any]:
    value = json.loads(text)
    return value if isinstance(value, dict) else {"value": value}


def load_patient(text: str | bytes, key: str) -> PatientState:
    """A stored PatientState; StoreError (so the message is NAKed, not crashed on) when the
    stored JSON no longer fits the model."""
    try:
        return PatientState.model_validate_json(text)
    except ValidationError as exc:
        raise StoreError(f"stored state of patient {key!r} cannot be read: {exc}") from exc


def load_alert(text: str | bytes, alert_id: str) -> Alert:
    try:
        return Alert.model_validate_json(text)
    except ValidationError as exc:
        raise StoreError(f"stored alert {alert_id!r} cannot be read: {exc}") from exc
