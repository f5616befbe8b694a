"""What a lab manager asks of the audit log, read from a URL query, and how events are written out.

Kept apart from the routes so the parsing rules (dates, event types, paging) and the export
formats can be tested and reused without a server. Every mistake in a query is a `BadQuery`
whose message says which parameter and what was expected: the API answers it with 400.

CSV cells that a spreadsheet would run as a formula (starting with = + - @, tab or CR) are
written with a leading apostrophe, and so is a cell that itself starts with one; `read_csv`
removes exactly one, so an export parses back to the same events.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from lisguard.domain.audit import canonical_detail, canonical_time
from lisguard.store.audit_search import AuditQuery
from lisguard.store.base import AuditEvent, StoredAuditEvent

SEARCH_PARAMS = ("from", "to", "patient", "user", "kind", "rule", "before_seq", "limit")
EXPORT_PARAMS = ("from", "to", "patient", "user", "kind", "rule", "format")
EXPORT_FORMATS = ("csv", "jsonl")
CSV_COLUMNS = ("seq", "at", "kind", "actor", "subject", "detail", "prev_hash", "hash")
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
# event types are dotted lower-case words; a trailing dot asks for the whole family ("alert.")
KIND = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)*\.?$")
DATE_ONLY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "'")


class BadQuery(ValueError):
    """A query parameter is missing, unknown or malformed; the message says which."""


@dataclass(frozen=True, slots=True)
class Filters:
    """The search filters as the manager gave them, and the store query they make."""

    query: AuditQuery
    given: dict[str, str]  # the filter parameters actually used, for the export's audit event


def parse_time(name: str, text: str, *, end: bool) -> datetime:
    """An ISO date or date-time; naive values are UTC. A date as the end of a range (`to`)
    includes that whole day."""
    text = text.strip()
    try:
        if DATE_ONLY.match(text):
            day = date.fromisoformat(text)
            if end:
                day += timedelta(days=1)
            return datetime.combine(day, time(), UTC)
        value = datetime.fromisoformat(text.replace("z", "Z"))
    except ValueError:
        raise BadQuery(
            f"{name}={text!r} is not a date (2026-03-01) or date-time (2026-03-01T08:30:00Z)"
        ) from None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def parse_date(name: str, text: str) -> date:
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise BadQuery(f"{name}={text!r} is not a date like 2026-03-01") from None


def parse_zone(text: str) -> ZoneInfo | None:
    """An IANA time zone name; None for UTC (no time zone database needed for it)."""
    if text.strip().upper() in ("", "UTC", "Z"):
        return None
    try:
        return ZoneInfo(text.strip())
    except (ZoneInfoNotFoundError, ValueError):
        raise BadQuery(f"tz={text!r} is not a known time zone (e.g. Europe/Paris, UTC)") from None


def _positive_int(name: str, text: str, *, upper: int | None = None) -> int:
    try:
        value = int(text)
    except ValueError:
        raise BadQuery(f"{name}={text!r} is not a whole number") from None
    if value < 1 or (upper is not None and value > upper):
        bound = f"between 1 and {upper}" if upper is not None else "at least 1"
        raise BadQuery(f"{name}={value} must be {bound}")
    return value


def _check_known(params: Mapping[str, str], known: tuple[str, ...]) -> None:
    # a misspelt filter silently ignored would show the manager everything: refuse it instead
    unknown = sorted(set(params) - set(known))
    if unknown:
        raise BadQuery(f"unknown parameter {', '.join(unknown)}: use {', '.join(known)}")


def parse_filters(params: Mapping[str, str], known: tuple[str, ...] = SEARCH_PARAMS) -> Filters:
    _check_known(params, known)
    given = {k: v.strip() for k, v in params.items() if k != "format" and v.strip()}
    since = parse_time("from", given["from"], end=False) if "from" in given else None
    until = parse_time("to", given["to"], end=True) if "to" in given else None
    if since is not None and until is not None and since >= until:
        raise BadQuery("from must be before to")
    kinds: tuple[str, ...] = ()
    if "kind" in given:
        kinds = tuple(k.strip() for k in given["kind"].split(",") if k.strip())
        bad = [k for k in kinds if not KIND.match(k)]
        if bad:
            raise BadQuery(
                f"kind={bad[0]!r} is not an event type like alert.raised (or alert. for all)"
            )
    before = _positive_int("before_seq", given["before_seq"]) if "before_seq" in given else None
    limit = (
        _positive_int("limit", given["limit"], upper=MAX_LIMIT)
        if "limit" in given
        else DEFAULT_LIMIT
    )
    query = AuditQuery(
        since=since,
        until=until,
        kinds=kinds,
        actor=given.get("user"),
        patient=given.get("patient"),
        rule=given.get("rule"),
        before_seq=before,
        limit=limit,
    )
    return Filters(query, {k: v for k, v in given.items() if k not in ("before_seq", "limit")})


def event_json(row: StoredAuditEvent) -> dict[str, Any]:
    e = row.event
    return {
        "seq": row.seq,
        "at": canonical_time(e.at),
        "kind": e.kind,
        "actor": e.actor,
        "subject": e.subject,
        "detail": e.detail,
        "prev_hash": row.prev_hash,
        "hash": row.hash,
    }


def jsonl_line(row: StoredAuditEvent) -> str:
    return json.dumps(event_json(row), ensure_ascii=False, separators=(",", ":")) + "\n"


def _safe_cell(text: str) -> str:
    return "'" + text if text.startswith(FORMULA_START) else text


def csv_header() -> str:
    return _csv_line(CSV_COLUMNS)


def csv_line(row: StoredAuditEvent) -> str:
    e = row.event
    cells = (
        str(row.seq),
        canonical_time(e.at),
        e.kind,
        e.actor,
        e.subject,
        canonical_detail(e.detail),
        row.prev_hash or "",
        row.hash or "",
    )
    return _csv_line(tuple(_safe_cell(c) for c in cells))


def _csv_line(cells: tuple[str, ...]) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerow(cells)
    return out.getvalue()


def _stored(record: Mapping[str, Any]) -> StoredAuditEvent:
    at = datetime.fromisoformat(str(record["at"]).replace("Z", "+00:00"))
    return StoredAuditEvent(
        seq=int(record["seq"]),
        event=AuditEvent(
            kind=record["kind"],
            at=at,
            actor=record["actor"],
            subject=record["subject"],
            detail=dict(record["detail"]),
        ),
        prev_hash=record["prev_hash"] or None,
        hash=record["hash"] or None,
    )


def read_csv(text: str) -> Iterator[StoredAuditEvent]:
    """The events of a CSV export (an inspector's copy can be checked with verify_chain)."""
    reader = csv.DictReader(io.StringIO(text, newline=""))
    if tuple(reader.fieldnames or ()) != CSV_COLUMNS:
        raise ValueError(f"not a lisguard audit export: columns {reader.fieldnames}")
    for cells in reader:
        record: dict[str, Any] = {
            k: v[1:] if v.startswith("'") else v for k, v in cells.items() if k is not None
        }
        record["detail"] = json.loads(record["detail"])
        yield _stored(record)


def read_jsonl(text: str) -> Iterator[StoredAuditEvent]:
    for line in text.splitlines():
        if line.strip():
            yield _stored(json.loads(line))
