"""A stored message seen again: a sender's resend, or an admin's replay (lisguard.replay).

A resend of the same bytes under the same MSH-3/4/10 is answered with the stored ACK and
processed no further; it leaves a `message.duplicate` event naming the stored message (the
message browser's "received again"), written after the answer is decided and on a best-effort
basis: a store that can be read but not written still answers a resend with its ACK.

A replay sends a stored message through `Ingestor.ingest` again, as if it had just arrived,
with two differences from a sender's resend:
- its own stored refusal is no answer: a dead letter (AE or AR kept with its reason) is read
  again under the knowledge and site settings in force now, and processed if they take it;
- a message that was accepted (AA) before - this one, or the same bytes under the same key
  since - is answered as a duplicate (its stored ACK, nothing processed again), unless the
  replay is a re-evaluation, which processes it once more: the rules run on the patient's
  state as it is now and raise only the alerts never raised for that patient, rule and order
  (the engine's `alerted` list and the deterministic alert ids), and a fact already in the
  state changes nothing, so a second re-evaluation changes and raises nothing.
A replay that processes the message stores it as a new row (peer "replay", flag
`replay-of:<id>`) with its own ACK, which is sent to nobody; a replay that is refused again
stores nothing. Each replayed message leaves one `message.replayed` event naming the original
as its subject: who, why, what came of it; a processed one writes it in the same transaction
as its state and alerts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog

from lisguard.domain.alerts import Alert
from lisguard.domain.recording import StateChange
from lisguard.store.base import AuditEvent, Store, StoredMessage, StoreError
from lisguard.store.message_search import DUPLICATE, REPLAYED

log = structlog.get_logger("lisguard.ingest")

REPLAY_PEER = "replay"  # the `peer` of a row a replay stored
REPLAY_FLAG = "replay-of:"  # + the original's id
REEVALUATION_FLAG = "reevaluation"


@dataclass(frozen=True)
class Replay:
    """A stored message sent through ingest again by an admin."""

    original: StoredMessage
    by: str  # who asked (token name, or "cli:<user>")
    reason: str
    reevaluate: bool = False
    request: str = ""  # the replay request it belongs to (detail of replay.requested)

    def answered_before(self, previous: StoredMessage | None, digest: str) -> StoredMessage | None:
        """The accepted message whose stored ACK answers this replay (a duplicate), or None
        when the replay is to be processed. `previous`: the newest row under the key."""
        if self.reevaluate:
            return None
        if previous is not None and previous.content_hash == digest and previous.outcome == "AA":
            return previous  # accepted: by the first processing, or by an earlier replay
        if self.original.outcome == "AA":
            return self.original  # accepted once, whatever came under its key since
        return None

    def flags(self, previous: StoredMessage | None, digest: str) -> tuple[str, ...]:
        flags = [f"{REPLAY_FLAG}{self.original.id}"]
        if self.reevaluate:
            flags.append(REEVALUATION_FLAG)
        if previous is not None and previous.content_hash != digest:
            flags.append("control-id-reused")
        return tuple(flags)

    def processed(
        self,
        at: datetime,
        outcome: str,
        message_id: int,
        alerts: Sequence[Alert],
        changes: Sequence[StateChange],
    ) -> AuditEvent:
        """The event of a replay that was processed (stored as row `message_id`): what it
        changed and raised that was not there before - the difference it made."""
        return self.event(
            at,
            outcome,
            **{"as": message_id},
            alerts=[a.id for a in alerts],
            changes=[f"{c.kind}: {c.detail}" for c in changes],
        )

    def event(self, at: datetime, outcome: str, **detail: Any) -> AuditEvent:
        """`message.replayed`: outcome accepted, ignored, duplicate, rejected, error,
        unavailable, raw-purged; detail e.g. `as` (the new row), `alerts`, `ack`, `error`."""
        return AuditEvent(
            REPLAYED,
            at,
            self.by,
            str(self.original.id),
            {
                "request": self.request,
                "reason": self.reason,
                "reevaluate": self.reevaluate,
                "outcome": outcome,
                **detail,
            },
        )


async def note_duplicate(store: Store, at: datetime, original: StoredMessage, peer: str) -> None:
    """Record a sender's resend of `original` (see above); a store error is logged only."""
    detail = {"peer": peer, "control_id": original.key.control_id if original.key else ""}
    try:
        async with store.transaction() as tx:
            await tx.add_audit([AuditEvent(DUPLICATE, at, subject=str(original.id), detail=detail)])
    except StoreError as exc:
        log.warning("duplicate_not_recorded", error=str(exc))


def replay_of(flags: tuple[str, ...]) -> int | None:
    """The original's id when a stored row is a replay."""
    for flag in flags:
        if flag.startswith(REPLAY_FLAG) and flag[len(REPLAY_FLAG) :].isdigit():
            return int(flag[len(REPLAY_FLAG) :])
    return None
