"""HL7 v2 files and ACKs as a third party reads them, with python-hl7 and no lisguard code (only
its configuration defaults): the messages of a file as the bytes a sender puts on the wire, the
character set MSH-18 declares, and the ACKs HL7 chapter 2 says a message asks for."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import hl7

from lisguard.settings import IngestSettings
from tests.conftest import ROOT

# what the service takes and answers on its default configuration (the servers here use it)
INGEST = IngestSettings()

SAMPLES = ROOT / "hl7_samples"
CORPUS_DIR = ROOT.parent / "shared" / "corpus"

UTF8_BOM = b"\xef\xbb\xbf"
BATCH_SEGMENTS = (b"FHS", b"BHS", b"BTS", b"FTS")
ACK_CODES = frozenset({"AA", "AE", "AR", "CA", "CE", "CR"})

# MSH-18 (HL7 table 0211) -> codec, the values these files and lisguard use. Not valued: ASCII.
CHARSETS = {
    "": "ascii",
    "ASCII": "ascii",
    "8859/1": "latin-1",
    "8859/15": "iso8859_15",
    "UNICODE UTF-8": "utf-8",
}


def sample_files() -> list[Path]:
    return sorted(SAMPLES.glob("*/*.hl7"))


def corpus_files() -> list[Path]:
    return sorted(CORPUS_DIR.glob("**/*.hl7")) if CORPUS_DIR.is_dir() else []


def split_file(raw: bytes) -> list[bytes]:
    """The messages of a file, each as the bytes to frame: segments joined by CR (files use CR,
    LF or CRLF, with blank lines between messages), the byte-order mark and batch envelope
    segments left out, the bytes otherwise as in the file (its own character set)."""
    raw = raw.removeprefix(UTF8_BOM)
    messages: list[list[bytes]] = []
    for line in re.split(rb"\r\n|\n|\r", raw):
        if not line.strip() or line[:3] in BATCH_SEGMENTS:
            continue
        if line.startswith(b"MSH"):
            messages.append([line])
        elif messages:
            messages[-1].append(line)
    return [b"\r".join(segments) + b"\r" for segments in messages]


def declared_charset(payload: bytes) -> str:
    """MSH-18 (its first repetition), read from the bytes: the header is ASCII."""
    msh = payload.split(b"\r", 1)[0]
    fields = msh.split(msh[3:4])
    if len(fields) <= 17:
        return ""
    return fields[17].split(fields[1][1:2] or b"~", 1)[0].decode("ascii").strip().upper()


def decode_strict(payload: bytes) -> str:
    """As a strict receiver reads a message: in the character set MSH-18 declares, ASCII when it
    declares none (UnicodeDecodeError otherwise; KeyError for a set not in CHARSETS)."""
    return payload.decode(CHARSETS[declared_charset(payload)])


def decode_lenient(payload: bytes) -> str:
    """A sample's text: as declared, else UTF-8, else Latin-1 (files that declare nothing)."""
    try:
        return decode_strict(payload)
    except (UnicodeDecodeError, KeyError):
        try:
            return payload.decode("utf-8")
        except UnicodeDecodeError:
            return payload.decode("latin-1")


@dataclass(frozen=True)
class Sent:
    """What a sender knows of the message it sent, read with python-hl7."""

    name: str
    payload: bytes
    sending_application: str  # MSH-3
    sending_facility: str  # MSH-4
    control_id: str  # MSH-10
    processing_id: str  # MSH-11.1
    accept_ack: str  # MSH-15
    application_ack: str  # MSH-16

    @property
    def processing_id_taken(self) -> bool:
        """MSH-11 is one the service's ingest.processing_ids takes (by default P only: T and D
        are refused by design, AR/CR). Not valued: P."""
        return (self.processing_id or "P") in INGEST.processing_ids

    def expected_codes(self) -> list[str]:
        """MSA-1 of each ACK, in order, that HL7 v2 chapter 2 gives this message from a receiver
        configured as lisguard's defaults are (ingest.processing_ids, ingest.always_reply).

        Original mode (MSH-15 and MSH-16 empty): one ACK, AA (AR: processing id refused).
        Enhanced mode (table 0155): a commit ACK (CA/CR) when MSH-15 asks (AL always, SU on
        success, ER on error), then an application ACK (AA/AR) when MSH-16 asks; none when
        neither asks, unless always_reply sends the commit ACK anyway."""
        ok = self.processing_id_taken
        app, commit = ("AA", "CA") if ok else ("AR", "CR")
        if not self.accept_ack and not self.application_ack:
            return [app]

        def wanted(mode: str) -> bool:
            return mode == "AL" or (mode == "SU" and ok) or (mode == "ER" and not ok)

        codes = [commit] if wanted(self.accept_ack) else []
        codes += [app] if wanted(self.application_ack) else []
        return codes or ([commit] if INGEST.always_reply else [])


def read_sent(name: str, payload: bytes) -> Sent:
    msh = hl7.parse(decode_lenient(payload)).segment("MSH")

    def field(n: int) -> str:
        return str(msh[n]) if len(msh) > n else ""

    return Sent(
        name=name,
        payload=payload,
        sending_application=field(3),
        sending_facility=field(4),
        control_id=field(10),
        processing_id=field(11).split(field(2)[:1] or "^")[0].strip().upper(),
        accept_ack=field(15).strip().upper(),
        application_ack=field(16).strip().upper(),
    )


def messages_of(files: list[Path], root: Path) -> list[Sent]:
    out: list[Sent] = []
    for path in files:
        for index, payload in enumerate(split_file(path.read_bytes()), 1):
            out.append(read_sent(f"{path.relative_to(root)}#{index}", payload))
    return out


@dataclass(frozen=True)
class Ack:
    code: str  # MSA-1
    acked_id: str  # MSA-2
    receiving_application: str  # MSH-5
    receiving_facility: str  # MSH-6
    message_type: str  # MSH-9.1
    text: str


def read_ack(payload: bytes) -> Ack:
    """An ACK off the wire, decoded as its own MSH-18 says (ASCII when it says nothing) and
    parsed with python-hl7."""
    text = decode_strict(payload)
    message = hl7.parse(text)
    msh, msa = message.segment("MSH"), message.segment("MSA")
    return Ack(
        code=str(msa[1]),
        acked_id=str(msa[2]) if len(msa) > 2 else "",
        receiving_application=str(msh[5]),
        receiving_facility=str(msh[6]),
        message_type=str(msh[9][0][0]),
        text=text,
    )


def ack_problems(sent: Sent, acks: list[Ack]) -> list[str]:
    """Everything wrong with the ACKs a message got (empty: all well)."""
    problems = []
    codes = [a.code for a in acks]
    if codes != sent.expected_codes():
        problems.append(f"MSA-1 {codes}, expected {sent.expected_codes()}")
    for ack in acks:
        if ack.code not in ACK_CODES:
            problems.append(f"MSA-1 {ack.code!r} is not an acknowledgment code")
        if ack.message_type != "ACK":
            problems.append(f"MSH-9.1 {ack.message_type!r}")
        if ack.acked_id != sent.control_id:
            problems.append(f"MSA-2 {ack.acked_id!r}, sent MSH-10 {sent.control_id!r}")
        if (ack.receiving_application, ack.receiving_facility) != (
            sent.sending_application,
            sent.sending_facility,
        ):
            problems.append(
                f"MSH-5/6 {ack.receiving_application!r}/{ack.receiving_facility!r}, sent "
                f"MSH-3/4 {sent.sending_application!r}/{sent.sending_facility!r}"
            )
    return [f"{sent.name}: {p}" for p in problems]


def all_problems(messages: list[Sent], answers: list[list[Ack]]) -> list[str]:
    """ack_problems of each message with the ACKs it got (answers in the order sent)."""
    return [
        p for sent, acks in zip(messages, answers, strict=True) for p in ack_problems(sent, acks)
    ]
