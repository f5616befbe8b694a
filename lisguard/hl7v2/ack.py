"""Acknowledgements (HL7 v2 chapter 2): original mode AA/AE/AR; enhanced CA/CE/CR + application.

Built as text, not with hl7apy: an ACK is sent for every message on the hot path and is a fixed
three-segment shape (MSH, MSA, ERR); tests check every ACK parses with hl7apy.
"""

from __future__ import annotations

import itertools
import os
import time
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple

from lisguard.hl7v2.escapes import DEFAULT_ENCODING, Encoding

# HL7 table 0357 message error condition codes used in ERR-3.
ERROR_TEXT = {
    "0": "Message accepted",
    "100": "Segment sequence error",
    "101": "Required field missing",
    "102": "Data type error",
    "103": "Table value not found",
    "200": "Unsupported message type",
    "201": "Unsupported event code",
    "202": "Unsupported processing id",
    "203": "Unsupported version id",
    "204": "Unknown key identifier",
    "205": "Duplicate key identifier",
    "206": "Application record locked",
    "207": "Application internal error",
}

_counter = itertools.count(1)
_prefix = f"LG{os.getpid() % 10000:04d}{int(time.time()) % 100000:05d}"


_stamp_cache: tuple[int, str] = (0, "")


def _stamp() -> str:
    """MSH-7 of an ACK sent now; strftime once a second, not once a message."""
    global _stamp_cache
    second = int(time.time())
    if _stamp_cache[0] != second:
        _stamp_cache = (second, datetime.fromtimestamp(second).strftime("%Y%m%d%H%M%S"))
    return _stamp_cache[1]


def next_control_id() -> str:
    """Unique across restarts and processes: pid, start second, counter (<= 20 chars)."""
    return f"{_prefix}{next(_counter) % 10**9:09d}"


def escape(text: str, enc: Encoding) -> str:
    """Escape delimiter characters in a text value (escape char first)."""
    e = enc.escape
    if not (  # a control id, usually: nothing to escape
        e in text
        or enc.field in text
        or enc.component in text
        or enc.repetition in text
        or enc.subcomponent in text
        or "\r" in text
        or "\n" in text
        or (enc.truncation and enc.truncation in text)
    ):
        return text
    out = text.replace(e, f"{e}E{e}")
    for char, code in (
        (enc.field, "F"),
        (enc.component, "S"),
        (enc.repetition, "R"),
        (enc.subcomponent, "T"),
    ):
        out = out.replace(char, f"{e}{code}{e}")
    if enc.truncation:
        out = out.replace(enc.truncation, f"{e}P{e}")
    return out.replace("\r", f"{e}.br{e}").replace("\n", f"{e}.br{e}")


class Header(NamedTuple):
    """What an ACK needs from the incoming MSH (raw field text, as sent). A named tuple: one is
    built for every message, at half the cost of a frozen dataclass."""

    sending_application: str = ""
    sending_facility: str = ""
    receiving_application: str = ""
    receiving_facility: str = ""
    control_id: str = ""
    trigger: str = ""
    processing_id: str = "P"
    version: str = "2.5.1"
    accept_ack_type: str = ""  # MSH-15
    application_ack_type: str = ""  # MSH-16
    encoding: Encoding = DEFAULT_ENCODING

    @property
    def enhanced(self) -> bool:
        return bool(self.accept_ack_type or self.application_ack_type)


@dataclass(frozen=True, slots=True)
class AckError:
    code: str  # table 0357
    reason: str  # what a person at the sending end needs to know
    segment: str = ""
    field: int | None = None


def build_ack(
    header: Header,
    code: str,
    *,
    error: AckError | None = None,
    app_name: str = "LISGUARD",
    now: datetime | None = None,
) -> str:
    """One ACK message ('\\r' separated) answering `header` with MSA-1 = `code`."""
    enc = header.encoding
    f, c, s = enc.field, enc.component, enc.subcomponent
    stamp = _stamp() if now is None else now.strftime("%Y%m%d%H%M%S")
    msg_type = f"ACK{c}{header.trigger}{c}ACK" if header.trigger else "ACK"
    fields = [
        "MSH",
        enc.msh2,
        header.receiving_application or app_name,
        header.receiving_facility,
        header.sending_application,
        header.sending_facility,
        stamp,
        "",
        msg_type,
        next_control_id(),
        header.processing_id or "P",
        header.version or "2.5.1",
    ]
    msh = f.join(fields)
    segments = [msh]
    msa = ["MSA", code, escape(header.control_id, enc)]
    if error is not None:
        msa.append(escape(error.reason[:80], enc))
    segments.append(f.join(msa))
    if error is not None:
        label = ERROR_TEXT.get(error.code, "Error")
        location = ""
        if error.segment:
            location = f"{error.segment}{c}1{c}{error.field or ''}".rstrip(c)
        err = [
            "ERR",
            # ERR-1 (v2.3-2.4 style): segment^sequence^field^code&text&table
            f"{error.segment}{c}{c}{error.field or ''}{c}{error.code}{s}{label}{s}HL70357"
            if error.segment
            else f"{c}{c}{c}{error.code}{s}{label}{s}HL70357",
            location,
            f"{error.code}{c}{label}{c}HL70357",
            "E",
            "",
            "",
            "",
            escape(error.reason, enc),
        ]
        segments.append(f.join(err))
    return "\r".join(segments)


def responses(
    header: Header,
    *,
    ok: bool,
    rejected: bool = False,
    error: AckError | None = None,
    always_reply: bool = True,
    app_name: str = "LISGUARD",
) -> list[str]:
    """The ACK message(s) to send back, by the acknowledgement mode the sender asked for.

    Original mode: one ACK, AA / AE (content error) / AR (rejected: unsupported, or we could not
    store it - the sender should retry). Enhanced mode: a commit ACK (CA/CE/CR) when MSH-15 asks,
    then an application ACK (AA/AE/AR) when MSH-16 asks. With `always_reply`, a sender that asked
    for none still gets the commit ACK, so an MLLP client waiting for a reply never hangs.
    """
    app_code = "AA" if ok else ("AR" if rejected else "AE")
    if not header.enhanced:
        return [build_ack(header, app_code, error=error, app_name=app_name)]
    out: list[str] = []
    commit_code = "CA" if ok else ("CR" if rejected else "CE")
    if _wanted(header.accept_ack_type, ok):
        out.append(build_ack(header, commit_code, error=error, app_name=app_name))
    if _wanted(header.application_ack_type, ok):
        out.append(build_ack(header, app_code, error=error, app_name=app_name))
    if not out and always_reply:
        out.append(build_ack(header, commit_code, error=error, app_name=app_name))
    return out


def acknowledged(header: Header, *, ok: bool, always_reply: bool = True) -> bool:
    """Whether `responses` would answer anything (without building the ACKs)."""
    if not header.enhanced or always_reply:
        return True
    return _wanted(header.accept_ack_type, ok) or _wanted(header.application_ack_type, ok)


def _wanted(ack_type: str, ok: bool) -> bool:
    t = ack_type.strip().upper()
    if t in ("", "AL"):
        return t == "AL"
    if t == "ER":
        return not ok
    if t == "SU":
        return ok
    return False  # NE


def peek_header(text: str) -> Header | None:
    """Read what an ACK needs from a message that may not parse: the MSH line only, leniently."""
    start = text.find("MSH")
    if start < 0 or len(text) < start + 8:
        return None
    line = text[start:].split("\r", 1)[0].split("\n", 1)[0]
    if len(line) < 4:  # "MSH" alone on its line (found by fuzzing): no separator to read
        return None
    sep = line[3]
    if sep.isalnum() or sep.isspace():
        return None
    parts = line.split(sep)
    chars = parts[1] if len(parts) > 1 else ""
    if len(chars) < 4 or len(set(chars[:4] + sep)) != 5:
        enc = DEFAULT_ENCODING
    else:
        enc = Encoding(
            field=sep,
            component=chars[0],
            repetition=chars[1],
            escape=chars[2],
            subcomponent=chars[3],
            truncation=chars[4] if len(chars) > 4 and chars[4] not in " \t" else None,
        )

    def fld(n: int) -> str:
        return parts[n - 1] if len(parts) >= n else ""

    trigger = fld(9).split(enc.component)
    return Header(
        sending_application=fld(3),
        sending_facility=fld(4),
        receiving_application=fld(5),
        receiving_facility=fld(6),
        control_id=fld(10).split(enc.component)[0],
        trigger=trigger[1] if len(trigger) > 1 else "",
        processing_id=fld(11).split(enc.component)[0],
        version=fld(12).split(enc.component)[0],
        accept_ack_type=fld(15),
        application_ack_type=fld(16),
        encoding=enc,
    )
