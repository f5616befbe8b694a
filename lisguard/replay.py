"""Replaying stored messages through the ingest path: the message browser's "Replay" button,
`POST /api/messages/replay` and `lisguard replay` all run `replay` below.

What a replay does to each message - read again under the knowledge and site settings in
force, a message accepted before answered as a duplicate unless it is a re-evaluation - is in
lisguard.resends. Here: the request as a whole. It is audited before anything is replayed
(`replay.requested`: who, why, which messages, re-evaluation or not, dry run or not); each
message then gets its own `message.replayed` with what came of it. Messages are replayed
oldest first, whatever order they were asked in, so that a feed's order holds (a dose before
the antibody screen it explains).

A dry run reads each message as a replay would and says what would happen, writing nothing
but the request's audit event (a dry run still reads the stored messages).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import structlog

from lisguard.hl7v2.framing import decode_bytes
from lisguard.intake import Verdict, read_message
from lisguard.resends import REPLAY_PEER, Replay
from lisguard.services import Ingestor
from lisguard.store.base import AuditEvent, StoreError
from lisguard.store.message_search import MessageQuery

log = structlog.get_logger("lisguard.replay")

MAX_MESSAGES = 500  # per request: a larger backlog is replayed in several
REQUESTED = "replay.requested"


@dataclass(frozen=True)
class ReplayRequest:
    ids: tuple[int, ...]
    reason: str
    reevaluate: bool = False
    dry_run: bool = False


@dataclass
class Replayed:
    """What came of one message. outcome: accepted, ignored (processed: a new row `new_id`),
    duplicate (accepted before: its stored ACK), rejected or error (refused again, nothing
    stored), unavailable (the store failed: try again), raw-purged (retention emptied its
    bytes), not-found; a dry run says would-process, duplicate, rejected or error."""

    id: int
    outcome: str
    control_id: str = ""
    message_type: str = ""
    ack_code: str = ""
    new_id: int | None = None
    alerts: list[str] = field(default_factory=list)
    error: str = ""

    def view(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "outcome": self.outcome,
            "control_id": self.control_id,
            "message_type": self.message_type,
            "ack_code": self.ack_code,
            "new_id": self.new_id,
            "alerts": self.alerts,
            "error": self.error,
        }


@dataclass
class ReplayReport:
    request: str  # its id, in replay.requested and each message.replayed
    results: list[Replayed]

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for r in self.results:
            counts[r.outcome] = counts.get(r.outcome, 0) + 1
        return counts

    def view(self) -> dict[str, Any]:
        return {
            "request": self.request,
            "results": [r.view() for r in self.results],
            "counts": self.counts(),
        }


async def dead_letters(ingestor: Ingestor, since: datetime | None = None) -> list[int]:
    """The ids of the dead letters received since `since` (all when None), oldest first."""
    found: list[int] = []
    before: int | None = None
    while True:
        page = await ingestor.store.message_log.search(
            MessageQuery(outcome="dead-letter", since=since, before_id=before, limit=500)
        )
        found += [f.message.id for f in page]
        if len(page) < 500:
            return sorted(found)
        before = page[-1].message.id


async def replay(ingestor: Ingestor, request: ReplayRequest, *, by: str) -> ReplayReport:
    """Replay the messages of `request` as `by` (see the module docstring)."""
    store = ingestor.store
    request_id = uuid.uuid4().hex[:12]
    ids = sorted(dict.fromkeys(request.ids))
    asked = {
        "reason": request.reason,
        "messages": ids,
        "reevaluate": request.reevaluate,
        "dry_run": request.dry_run,
        "knowledge": ingestor.knowledge.version,
    }
    async with store.transaction() as tx:
        await tx.add_audit([AuditEvent(REQUESTED, datetime.now(UTC), by, request_id, asked)])
    results = []
    for message_id in ids:
        results.append(await _one(ingestor, message_id, request, by, request_id))
    return ReplayReport(request_id, results)


async def _one(
    ingestor: Ingestor, message_id: int, request: ReplayRequest, by: str, request_id: str
) -> Replayed:
    store = ingestor.store
    found = await store.message_log.get(message_id)
    if found is None:
        return Replayed(message_id, "not-found", error="no stored message with this id")
    original = found.message
    key = original.key
    done = Replayed(message_id, "", key.control_id if key else "", original.message_type)
    how = Replay(original, by, request.reason, request.reevaluate, request_id)
    if not found.raw:
        done.outcome, done.error = "raw-purged", "retention has emptied its raw bytes"
        return await _record(ingestor, how, done)
    if request.dry_run:
        return await _dry_run(ingestor, how, found.raw, done)
    try:
        result = await ingestor.ingest(found.raw, peer=REPLAY_PEER, replay=how)
    except Exception as exc:  # a bug costs this message its replay, not the whole request
        log.exception("replay_failed", message=message_id, error=type(exc).__name__)
        done.outcome, done.error = "error", f"internal error ({type(exc).__name__})"
        return await _record(ingestor, how, done)
    done.outcome, done.ack_code, done.error = result.outcome, result.ack_code, result.error
    if result.outcome == "unavailable":  # the store's own words name the database: logged
        done.error = "the store was unavailable: replay it again later"
    done.message_type = result.message_type or done.message_type
    done.alerts = [a.id for a in result.alerts]
    if result.outcome in ("accepted", "ignored"):
        done.new_id = result.message_id  # its message.replayed is in that transaction
        return done
    return await _record(ingestor, how, done)


async def _record(ingestor: Ingestor, how: Replay, done: Replayed) -> Replayed:
    """message.replayed for a replay that processed nothing (a duplicate, a refusal...)."""
    detail: dict[str, Any] = {"ack": done.ack_code, "error": done.error}
    try:
        async with ingestor.store.transaction() as tx:
            await tx.add_audit([how.event(datetime.now(UTC), done.outcome, **detail)])
    except StoreError as exc:  # the store is down: the answer says so, the log says why
        log.error("replay_not_recorded", message=done.id, error=str(exc))
    return done


async def _dry_run(ingestor: Ingestor, how: Replay, raw: bytes, done: Replayed) -> Replayed:
    reading = read_message(decode_bytes(raw), ingestor.policy, ingestor.relevance)
    if reading.verdict in (Verdict.UNREADABLE, Verdict.UNTRANSLATABLE, Verdict.REFUSED):
        assert reading.error is not None
        refused = reading.verdict is Verdict.REFUSED
        done.outcome, done.error = ("rejected" if refused else "error"), reading.error.reason
        return done
    assert reading.key is not None
    async with ingestor.store.transaction() as tx:
        previous = await tx.find_message(reading.key)
    before = how.answered_before(previous, reading.digest)
    done.outcome = "duplicate" if before is not None else "would-process"
    return done


def summary_lines(report: ReplayReport) -> Sequence[str]:
    """The report as `lisguard replay` prints it: a line a message, then the counts."""
    lines = []
    for r in report.results:
        new = f"\tnew message {r.new_id}" if r.new_id else ""
        alerts = f"\talerts {','.join(r.alerts)}" if r.alerts else ""
        error = f"\t{r.error}" if r.error else ""
        lines.append(
            f"{r.id}\t{r.control_id or '-'}\t{r.outcome}\t{r.ack_code or '-'}{new}{alerts}{error}"
        )
    counts = ", ".join(f"{n} {outcome}" for outcome, n in sorted(report.counts().items()))
    lines.append(f"# replay {report.request}: {counts or 'nothing to replay'}")
    return lines
