"""HL7 v2 batches (chapter 2, "HL7 batch protocol", 2.10.3 in v2.5): read the FHS/BHS...BTS/FTS
envelope of a body or an MLLP frame, and build the batch of ACKs that answers it.

A batch received as a unit is answered as a unit (2.10.3.3 "Acknowledging batches", option
"all messages are acknowledged in the response batch"): BHS (BHS-12 reference batch control id =
the received BHS-11; sending and receiving swapped as in an ACK's MSH), one ACK per message in
the order received, BTS (BTS-1 = the number of ACKs in it); within FHS/FTS (FHS-12 = the received
FHS-11, FTS-1 = the number of batches) when the input had an FHS. One ACK for every message, not
only for errors: an interface engine matches each MSA-2 to what it sent, and counts BTS-1 against
its own count, without having to infer "accepted" from an absence.

The envelope is read leniently, never refused: a count that does not match, a BHS or BTS missing,
lines outside any message. The messages are processed all the same; the batch ACK says what was
wrong in BTS-2 (batch comment), or FTS-2 for the file, starting "envelope error:".
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime

from lisguard.hl7v2.ack import Header, escape, next_control_id, peek_header
from lisguard.hl7v2.escapes import DEFAULT_ENCODING, Encoding
from lisguard.hl7v2.framing import BATCH_SEGMENTS, segment_lines

__all__ = ["Batch", "Group", "build_batch_ack", "is_batch", "read_batch"]

ENVELOPE_ERROR = "envelope error: "
COMMENT_MAX = 80  # BTS-2 and FTS-2 are ST(80)
_EDGES = "\ufeff\x0b\x1c \t\r\n"  # what may surround a frame's or a body's segments
# a line (after MLLP bytes, a BOM or indentation) that is a batch segment
_BATCH_LINE = re.compile(r"[\r\n\x0b\x1c\ufeff][ \t]*(?:FHS|BHS|BTS|FTS)")


@dataclass
class Group:
    """One batch: BHS, its messages (each '\\r' joined), BTS; either may be missing."""

    bhs: str | None = None
    bts: str | None = None
    messages: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    closed: bool = False


@dataclass
class Batch:
    fhs: str | None = None
    fts: str | None = None
    groups: list[Group] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # of the file as a whole

    @property
    def messages(self) -> list[str]:
        return [m for g in self.groups for m in g.messages]

    @property
    def control_id(self) -> str:
        """The received BHS-11 (else FHS-11) the batch ACK refers to."""
        for segment in [*(g.bhs for g in self.groups), self.fhs]:
            if segment is not None and _field(segment, 11):
                return _field(segment, 11)
        return ""

    def all_problems(self) -> list[str]:
        return [*self.problems, *(p for g in self.groups for p in g.problems)]


def is_batch(text: str) -> bool:
    """Whether the text holds a batch segment at a line start. Cheap, as every MLLP frame is
    asked: the first line, the last line, then (only if "HS|" occurs past the first MSH: a
    later MSH, BHS or FHS) a regex over the whole text."""
    if text.lstrip(_EDGES)[:3] in BATCH_SEGMENTS:
        return True
    tail = text.rstrip(_EDGES)
    last = tail.rfind("\r")  # then LF or 0x0B only after it: no scan of the whole text
    last = max(last, tail.rfind("\n", last + 1), tail.rfind("\x0b", last + 1))
    if tail[last + 1 :].lstrip()[:3] in BATCH_SEGMENTS:
        return True
    if text.find("HS|", 3) < 0:
        return False
    return _BATCH_LINE.search(text) is not None


def read_batch(text: str) -> Batch | None:
    """The batch the text holds; None when it is no batch (no batch segment, or only a stray
    BTS/FTS and no message at all: that is for `reader.parse` to reject). The messages come out
    as `framing.split_messages` cuts them."""
    if not is_batch(text):
        return None
    if text.startswith("\ufeff"):
        text = text[1:]
    if "\x0b" in text or "\x1c" in text:
        text = text.replace("\x0b", "\r").replace("\x1c", "\r")
    batch = Batch()
    group: Group | None = None
    message: list[str] | None = None
    messages: list[list[str]] = []  # of the open group, joined when it closes
    stray = 0

    def close(g: Group | None) -> None:
        if g is None or g.closed:
            return
        g.messages = ["\r".join(lines) for lines in messages]
        messages.clear()
        if g.bhs is None and g.bts is None:
            g.problems.append("messages outside a BHS...BTS batch")
        elif g.bhs is None:
            g.problems.append("BTS without a BHS")
        elif g.bts is None:
            g.problems.append("no BTS")
        g.closed = True

    for name, line in segment_lines(text.replace("\r\n", "\n").replace("\r", "\n").split("\n")):
        if name == "MSH":
            if group is None or group.closed:
                group = Group()
                batch.groups.append(group)
            message = [line]
            messages.append(message)
            continue
        if name not in BATCH_SEGMENTS:
            if message is not None:
                message.append(line)
            else:  # after a batch segment, before the next MSH
                stray += 1
            continue
        message = None
        if name == "BHS":
            close(group)
            group = Group(bhs=line)
            batch.groups.append(group)
        elif name == "BTS":
            if group is None or group.closed:
                group = Group()
                batch.groups.append(group)
            group.bts = line
            count = len(messages)
            close(group)
            said = _field(line, 1).strip()
            if said and said != str(count):
                group.problems.append(f"BTS-1 says {said} messages, {count} received")
        elif name == "FHS":
            if batch.fhs is not None:
                batch.problems.append("a second FHS (ignored)")
            else:
                batch.fhs = line
                if batch.groups:
                    batch.problems.append("FHS after the first batch")
        else:  # FTS
            close(group)
            if batch.fts is not None:
                batch.problems.append("a second FTS (ignored)")
                continue
            batch.fts = line
            if batch.fhs is None:
                batch.problems.append("FTS without an FHS")
            said = _field(line, 1).strip()
            if said and said != str(len(batch.groups)):
                batch.problems.append(f"FTS-1 says {said} batches, {len(batch.groups)} received")
    close(group)
    if batch.fhs is not None and batch.fts is None:
        batch.problems.append("no FTS")
    if stray:
        batch.problems.append(f"{stray} line(s) outside any message ignored")
    if batch.fhs is None and not any(g.bhs is not None or g.messages for g in batch.groups):
        return None  # a stray BTS/FTS in something that is no message: for parse to reject
    return batch


def _field(segment: str, n: int) -> str:
    """Field `n` of a batch segment, raw. FHS-1 and BHS-1 are the field separator itself (as
    MSH-1), so there the n-th field is the (n-1)-th piece."""
    if len(segment) < 4:
        return ""
    parts = segment.split(segment[3])
    at = n - 1 if segment[:3] in ("FHS", "BHS") else n
    return parts[at] if len(parts) > at else ""


def _encoding(segment: str) -> Encoding:
    """The delimiters a batch header (FHS/BHS-1 and -2) declares; the defaults if unreadable."""
    if len(segment) < 8:
        return DEFAULT_ENCODING
    sep = segment[3]
    chars = segment[4:].split(sep, 1)[0]
    if sep.isalnum() or sep.isspace() or len(chars) < 4 or len(set(chars[:4] + sep)) != 5:
        return DEFAULT_ENCODING
    return Encoding(
        field=sep,
        component=chars[0],
        repetition=chars[1],
        escape=chars[2],
        subcomponent=chars[3],
        truncation=chars[4] if len(chars) > 4 and chars[4] not in " \t" else None,
    )


def _header(
    name: str,
    received: str | None,
    fallback: Header,
    app_name: str,
    stamp: str,
) -> tuple[str, Encoding]:
    """FHS or BHS answering `received` (or, without one, addressed as the first message's
    ACK is): sending and receiving swapped, a new control id (-11), the received one in -12."""
    if received is not None:
        enc = _encoding(received)
        apps = [_field(received, n) for n in (3, 4, 5, 6)]
        reference = _field(received, 11)
    else:
        enc = fallback.encoding
        apps = [
            fallback.sending_application,
            fallback.sending_facility,
            fallback.receiving_application,
            fallback.receiving_facility,
        ]
        reference = ""
    f = enc.field
    fields = [name, enc.msh2, apps[2] or app_name, apps[3], apps[0], apps[1], stamp, "", "", ""]
    fields += [next_control_id(), reference]
    return f.join(fields).rstrip(f), enc


def _trailer(name: str, count: int, problems: list[str], enc: Encoding) -> str:
    fields = [name, str(count)]
    if problems:
        comment = ENVELOPE_ERROR + "; ".join(problems)
        if len(comment) > COMMENT_MAX:
            comment = comment[: COMMENT_MAX - 3] + "..."
        fields.append(escape(comment, enc))
    return enc.field.join(fields)


def build_batch_ack(
    batch: Batch,
    acks: list[str],
    *,
    app_name: str = "LISGUARD",
    now: datetime | None = None,
) -> str:
    """The batch of ACKs ('\\r' separated) answering `batch`: `acks` holds one ACK per message,
    in the order of `batch.messages`."""
    messages = batch.messages
    if len(acks) != len(messages):
        raise ValueError(f"{len(acks)} ACKs for {len(messages)} messages")
    stamp = (now or datetime.now()).strftime("%Y%m%d%H%M%S")
    first = (peek_header(messages[0]) if messages else None) or Header()
    out: list[str] = []
    file_enc = DEFAULT_ENCODING
    if batch.fhs is not None:
        fhs, file_enc = _header("FHS", batch.fhs, first, app_name, stamp)
        out.append(fhs)
    # file level problems go to FTS-2, or with no FHS/FTS to give back, to the last BTS-2
    loose = [] if batch.fhs is not None else batch.problems
    at = 0
    for index, group in enumerate(batch.groups):
        n = len(group.messages)
        own = peek_header(group.messages[0]) if group.messages else None
        bhs, enc = _header("BHS", group.bhs or batch.fhs, own or first, app_name, stamp)
        out.append(bhs)
        out.extend(acks[at : at + n])
        at += n
        problems = group.problems + (loose if index == len(batch.groups) - 1 else [])
        out.append(_trailer("BTS", n, problems, enc))
    if batch.fhs is not None:
        out.append(_trailer("FTS", len(batch.groups), batch.problems, file_enc))
    return "\r".join(out)
