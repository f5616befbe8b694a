"""JSON shapes of the message browser (lisguard.web.messages_api), and reading a stored message's
bytes for it: which patient it names, the text as decoded, its segments with field names."""

from __future__ import annotations

from typing import Any

from lisguard.domain.identity import Identifier, PatientIdentity
from lisguard.hl7v2.clinical import patient_id
from lisguard.hl7v2.field_names import segment_table
from lisguard.hl7v2.framing import UTF8_BOM, declared_codec, decode_bytes
from lisguard.hl7v2.reader import HL7ReadError, Message, parse
from lisguard.resends import replay_of
from lisguard.store.base import StoredAlert, StoredAuditEvent, StoredMessage
from lisguard.store.message_search import DUPLICATE, LATER_KINDS, REPLAYED, FoundMessage
from lisguard.web.views import RULE_TITLES

# the MRN sits in these (segment, field): PID-3 (and the older PID-2, PID-4), MRG-1 (a merge's
# retired identifier)
PATIENT_FIELDS = (("PID", 3), ("PID", 2), ("PID", 4), ("MRG", 1))


def decoded(raw: bytes) -> tuple[str, str]:
    """The text as the ingest path read it (lisguard.hl7v2.framing.decode_bytes) and the codec
    that read it, for the page to say."""
    text = decode_bytes(raw)
    body = raw[3:] if raw.startswith(UTF8_BOM) else raw
    codec = declared_codec(body)
    for candidate in ([codec] if codec else []) + ["utf-8", "cp1252"]:
        try:
            if body.decode(candidate) == text:
                return text, candidate
        except (UnicodeDecodeError, LookupError):
            continue
    return text, "latin-1"


def _parsed(text: str) -> Message | None:
    try:
        return parse(text)
    except HL7ReadError:
        return None


def patient_of(text: str, identity: PatientIdentity) -> str:
    """The patient key the message names (PID-3 by the site's identity rules; MRG-1 for a merge
    without PID), "" when none can be read."""
    message = _parsed(text)
    if message is None:
        return ""
    for name, number in (("PID", 3), ("MRG", 1)):
        segment = message.segment(name)
        if segment is not None:
            found = patient_id(segment, number, identity)
            if found is not None:
                return found.key
    return ""


def names_patient(text: str, wanted: str, identity: PatientIdentity) -> bool:
    """Whether the message names this patient anywhere it names one: `wanted` is an MRN (any
    assigning authority) or a key "MRN^authority" (as the identity rules key it)."""
    message = _parsed(text)
    if message is None:
        return False
    mrn, caret, authority = wanted.strip().partition("^")
    plain = identity.normalise(Identifier(mrn)).id  # leading zeros, as the site keys them
    for segment in message.segments:
        for name, number in PATIENT_FIELDS:
            if segment.name != name:
                continue
            for rep in range(1, len(segment.repetitions(number)) + 1):
                ident = segment.get(number, 1, repetition=rep).strip()
                if not ident:
                    continue
                if not caret and identity.normalise(Identifier(ident)).id == plain:
                    return True
                key = identity.normalise(
                    Identifier(
                        ident,
                        segment.get(number, 4, 1, rep),
                        segment.get(number, 4, 2, rep),
                        segment.get(number, 5, repetition=rep),
                    )
                ).key
                any_authority = caret and not authority and key.startswith(plain + "^")
                if key == wanted.strip() or any_authority:
                    return True
    return False


def later_view(row: StoredAuditEvent) -> dict[str, Any]:
    e = row.event
    view = {"seq": row.seq, "at": e.at.isoformat(), "kind": e.kind, "by": e.actor}
    if e.kind == REPLAYED:
        for key in ("outcome", "as", "reason", "reevaluate", "alerts", "ack", "error", "request"):
            if key in e.detail:
                view[key] = e.detail[key]
    elif e.kind == DUPLICATE:
        view["peer"] = e.detail.get("peer", "")
    return view


def message_row(
    found: FoundMessage,
    identity: PatientIdentity,
    later: list[StoredAuditEvent],
    text: str | None = None,
) -> dict[str, Any]:
    m: StoredMessage = found.message
    key = m.key
    if text is None:
        text = decode_bytes(found.raw) if found.raw else ""
    return {
        "id": m.id,
        "received_at": m.received_at.isoformat(),
        "control_id": key.control_id if key else "",
        "sending_application": key.sending_application if key else "",
        "sending_facility": key.sending_facility if key else "",
        "message_type": m.message_type,
        "outcome": m.outcome,
        "dead_letter": bool(m.error),
        "error": m.error,
        "peer": m.peer,
        "flags": list(m.flags),
        "replay_of": replay_of(m.flags),
        "patient": patient_of(text, identity) if text else "",
        "raw_purged": not found.raw,
        "duplicates": sum(1 for e in later if e.event.kind == DUPLICATE),
        "replays": [later_view(e) for e in later if e.event.kind == REPLAYED],
        "links": {"self": f"/api/messages/{m.id}", "page": f"/messages#message={m.id}"},
    }


def event_view(row: StoredAuditEvent) -> dict[str, Any]:
    e = row.event
    return {
        "seq": row.seq,
        "at": e.at.isoformat(),
        "kind": e.kind,
        "actor": e.actor,
        "subject": e.subject,
        "detail": e.detail,
    }


def alert_view(stored: StoredAlert) -> dict[str, Any]:
    a = stored.alert
    return {
        "id": a.id,
        "rule": a.rule.value,
        "title": RULE_TITLES.get(a.rule.value, a.rule.value),
        "severity": a.severity.value,
        "patient": a.patient_key,
        "order": a.order,
        "recommendations": [r.value for r in a.recommendations],
        "status": stored.status,
        "created_at": stored.created_at.isoformat(),
        "test": a.processing_id != "P",
        "links": {"self": f"/api/alerts/{a.id}", "page": f"/#alert={a.id}"},
    }


def message_detail(
    found: FoundMessage,
    identity: PatientIdentity,
    events: list[StoredAuditEvent],
    alerts: list[StoredAlert],
) -> dict[str, Any]:
    """Everything about one message: its row, its text with segments and field names, the ACK
    it was answered with, the alerts it raised, the state changes and other audit events of its
    transaction, and what happened to it later (resends, replays)."""
    text, codec = decoded(found.raw) if found.raw else ("", "")
    subject = str(found.message.id)
    # later: resends and replays OF this message; a replay row's own transaction also holds the
    # message.replayed naming its original - that is where it came from, not what came after
    later = [e for e in events if e.event.kind in LATER_KINDS and e.event.subject == subject]
    own = [e for e in events if e not in later]
    origin = next((e for e in own if e.event.kind == REPLAYED), None)
    view = message_row(found, identity, later, text)
    acks = [a for a in found.message.ack.split("\n") if a]
    view.update(
        {
            "content_hash": found.message.content_hash,
            "text": text,
            "decoded_with": codec,
            "message": segment_table(text),
            "acks": [{"text": a, "message": segment_table(a)} for a in acks],
            "alerts": [alert_view(a) for a in alerts],
            "state_changes": [event_view(e) for e in own if e.event.kind.startswith("state.")],
            "events": [event_view(e) for e in own],
            "later": [later_view(e) for e in later],
            "replayed_from": later_view(origin) if origin is not None else None,
        }
    )
    return view
