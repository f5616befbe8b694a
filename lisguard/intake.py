"""Reading one message: what it is, whether the site takes it, and the facts it states.

The first step of every path a message takes - `Ingestor.ingest` (MLLP, HTTP) and
`Screening.screen` (`lisguard check`) - so that both decide alike. Pure: no store, no clock, no
I/O; the callers record, answer and log.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from enum import StrEnum
from typing import NamedTuple

from lisguard.domain.facts import ClinicalMessage, MessageKey
from lisguard.hl7v2.ack import AckError, Header, peek_header
from lisguard.hl7v2.clinical import to_clinical
from lisguard.hl7v2.printable import (
    printable_message_type,
    printable_processing_id,
    printable_segment_name,
)
from lisguard.hl7v2.reader import HL7ReadError, Message, parse
from lisguard.hl7v2.relevance import Relevance

# Message families whose content the rules read. Anything else is ACKed and stored, not read.
CLINICAL_FAMILIES = frozenset(
    {
        "ORM", "OML", "ORU", "OUL", "ORL", "OMP", "RDE", "RAS", "RDS", "RGV", "VXU", "ADT",
        "OMB", "BPS", "BTS",
    }
)


@dataclass(frozen=True)
class IngestPolicy:
    """What the site accepts. Defaults suit a lab feed: unknown types are ACKed and ignored,
    so ADT/SIU/MDM noise never turns into a NAK resend storm."""

    # MSH-11 values taken (HL7 table 0103). Production only by default: a test system's feed
    # must never page the bench as real. A site that takes T or D gets their alerts marked test.
    processing_ids: frozenset[str] = frozenset({"P"})
    unknown_types: str = "ignore"  # "ignore" (AA, stored, not read) or "reject" (AR)
    type_actions: dict[str, str] = field(default_factory=dict)  # e.g. {"QBP": "reject"}
    always_reply: bool = False  # True: a commit ACK even when MSH-15/16 ask for none
    app_name: str = "LISGUARD"


class Verdict(StrEnum):
    UNREADABLE = "unreadable"  # not HL7 we can read: AE, kept as a dead letter
    UNTRANSLATABLE = "untranslatable"  # read, but the translator failed on it: AE, dead letter
    REFUSED = "refused"  # processing id or type the site does not take: AR
    PROCESS = "process"  # a clinical family: its facts go to the rules
    IGNORE = "ignore"  # ACKed and stored, not read


class Reading(NamedTuple):
    """One message read: the verdict and everything the callers need to act on it. (A named
    tuple: one is built per message, at a third of a frozen dataclass's cost.)"""

    verdict: Verdict
    digest: str  # identity of the content (sha256 of the segments, however framed)
    header: Header  # what an ACK needs (as far as it could be read, for unreadable ones)
    key: MessageKey | None  # MSH-3, -4, -10; None when unreadable without a control id
    message: Message | None = None  # None when unreadable
    # PROCESS only, and only when it may matter to the rules (None: it certainly does not)
    clinical: ClinicalMessage | None = None
    error: AckError | None = None  # why, for UNREADABLE, UNTRANSLATABLE and REFUSED
    failure: str = ""  # UNTRANSLATABLE: the translator's exception type, for the log


def content_digest(text: str) -> str:
    """Identity of the content: segment text, whatever line endings or framing carried it."""
    if "\n" in text:
        text = text.replace("\r\n", "\r").replace("\n", "\r")
    return hashlib.sha256(text.lstrip("\ufeff").strip("\r").encode()).hexdigest()


def read_message(text: str, policy: IngestPolicy, relevance: Relevance) -> Reading:
    """Parse, classify by policy, and translate one message of a clinical family when it may
    say anything the knowledge base knows (lisguard.hl7v2.relevance)."""
    digest = content_digest(text)
    if "\x00" in text and text.lstrip("\ufeff").startswith("MSH"):
        return _nul_reading(text, digest)  # (anything else is not HL7: parse says why)
    try:
        message = parse(text)
    except HL7ReadError as exc:
        where = f" ({exc.segment}-{exc.field})" if exc.segment and exc.field else ""
        err = AckError(exc.code, f"{exc.reason}{where}", exc.segment or "", exc.field)
        header = peek_header(text) or Header()
        return Reading(Verdict.UNREADABLE, digest, header, _key(header), error=err)
    header = message_header(message)
    message_type = message.message_type
    family = message_type.partition("^")[0]
    # Required by every HL7 version, and without them nothing here can be done right: the type
    # decides what the message is, the control id is what the sender matches the ACK to (and
    # what a resend is recognised by). AE + ERR 101, kept as a dead letter; not ACKed AA.
    for number, value, name in ((9, family, "message type"), (10, header.control_id, "control id")):
        if not value.strip():
            err = AckError("101", f"MSH-{number} ({name}) is empty", "MSH", number)
            return Reading(Verdict.UNREADABLE, digest, header, _key(header), error=err)
    key = MessageKey(header.sending_application, header.sending_facility, header.control_id)
    action = policy.type_actions.get(family) or policy.type_actions.get(message_type)
    if action is None:
        action = "process" if family in CLINICAL_FAMILIES else policy.unknown_types
    if message.processing_id and message.processing_id not in policy.processing_ids:
        err = AckError("202", _refused_processing_id(message.processing_id, policy), "MSH", 11)
        return Reading(Verdict.REFUSED, digest, header, key, message, error=err)
    if action == "reject":
        err = AckError(
            "200", f"message type {printable_message_type(message_type)!r} is not accepted here"
        )
        return Reading(Verdict.REFUSED, digest, header, key, message, error=err)
    if action != "process":
        return Reading(Verdict.IGNORE, digest, header, key, message)
    if not relevance.may_touch_state(message):
        return Reading(Verdict.PROCESS, digest, header, key, message)
    try:
        clinical = to_clinical(message, relevance.kb.identity)
    except Exception as exc:  # a translator bug must not kill the connection
        err = AckError("207", f"could not read message content: {type(exc).__name__}")
        return Reading(
            Verdict.UNTRANSLATABLE,
            digest,
            header,
            key,
            message,
            error=err,
            failure=type(exc).__name__,
        )
    return Reading(Verdict.PROCESS, digest, header, key, message, clinical)


PROCESSING_IDS = {"P": "production", "T": "training/test", "D": "debugging"}  # table 0103


def _refused_processing_id(value: str, policy: IngestPolicy) -> str:
    """What the sender's interface team reads (MSA-3 shows the first 80 characters)."""
    shown = printable_processing_id(value)
    meaning = PROCESSING_IDS.get(value)
    said = f"{shown!r} ({meaning})" if meaning else repr(shown)
    taken = ", ".join(sorted(policy.processing_ids)) or "none"
    return f"MSH-11 processing id {said} refused: this interface takes {taken} only"


def _nul_reading(text: str, digest: str) -> Reading:
    """A NUL character is no HL7 content (and no database text can hold it): the message is
    unreadable, AE, kept as a dead letter under its header read without the NULs - never AR,
    which would make the sender resend it forever. The reason names where, not what."""
    segments = text.replace("\n", "\r").split("\r")
    where = next((i for i, seg in enumerate(segments, 1) if "\x00" in seg), 1)
    # named only when it is a segment name (lisguard.hl7v2.printable): after a raw CR the line
    # may start with a patient's name
    name = printable_segment_name(segments[where - 1][:3].replace("\x00", "")) or ""
    err = AckError("102", f"segment {where} ({name or '?'}) holds a NUL character", name, None)
    header = peek_header(text.replace("\x00", "")) or Header()
    return Reading(Verdict.UNREADABLE, digest, header, _key(header), error=err)


def _key(header: Header) -> MessageKey | None:
    """The key an unreadable message is filed under: none without a control id."""
    if not header.control_id:
        return None
    return MessageKey(header.sending_application, header.sending_facility, header.control_id)


def message_header(message: Message) -> Header:
    """What an ACK needs, from the parsed MSH."""
    raw = message.segments[0].fields()  # index = field number, for raw and values alike
    if len(raw) < 7:
        raw = raw + [""] * (7 - len(raw))
    values = message.msh_values()
    if len(values) < 17:
        values = values + [""] * (17 - len(values))
    return Header(
        sending_application=raw[3],
        sending_facility=raw[4],
        receiving_application=raw[5],
        receiving_facility=raw[6],
        control_id=values[10],
        trigger=message.trigger,
        processing_id=values[11],
        version=values[12],
        accept_ack_type=values[15].strip(),
        application_ack_type=values[16].strip(),
        encoding=message.encoding,
        charset=raw[18] if len(raw) > 18 else "",  # echoed in the ACK's MSH-18
    )
