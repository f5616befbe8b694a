"""Acknowledgements (HL7 v2 chapter 2): original mode AA/AE/AR; enhanced CA/CE/CR + application.

Built as text, not with hl7apy: an ACK is sent for every message on the hot path and is a fixed
three-segment shape (MSH, MSA, ERR); tests check every ACK parses with hl7apy and python-hl7.

The shape follows the incoming MSH-12 (echoed in the ACK's MSH-12):
- before 2.5: the reason in MSA-3, the error in ERR-1 (ERR has no other field before 2.5);
- 2.5 and 2.6: MSA-3 and ERR-1 kept (backward compatible) plus ERR-2 location, ERR-3 code,
  ERR-4 severity and ERR-8 user message;
- 2.7 and later: MSA-3 and ERR-1 are withdrawn, so only ERR-2/3/4/8.
An ACK's bytes are always in the character set its own MSH-18 names (`wire_bytes`).
"""

from __future__ import annotations

import itertools
import os
import re
import time
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple

from lisguard.hl7v2.escapes import DEFAULT_ENCODING, Encoding
from lisguard.hl7v2.framing import charset_codec

# HL7 table 0357 message error condition codes used in ERR-3.
ERROR_TEXT = {
    "0": "Message accepted",
    "100": "Segment sequence error",
    "101": "Required field missing",
    "102": "Data type error",
    "103": "Table value not found",
    "104": "Value too long",
    "200": "Unsupported message type",
    "201": "Unsupported event code",
    "202": "Unsupported processing id",
    "203": "Unsupported version id",
    "204": "Unknown key identifier",
    "205": "Duplicate key identifier",
    "206": "Application record locked",
    "207": "Application internal error",
}

# Codes table 0357 gained after v2.3.1, by the version that added them (104: v2.7); an ACK of an
# older version says 207 instead, a code its receiver's table has.
CODE_ADDED = {"104": (2, 7)}
DEFAULT_VERSION = "2.5.1"
UTF8_CHARSET = "UNICODE UTF-8"  # MSH-18 (table 0211) of an ACK the sender's set cannot hold
_VERSION = re.compile(r"\s*v?(\d+)\.(\d+)(?:\.(\d+))?", re.IGNORECASE)

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
    charset: str = ""  # MSH-18, raw (echoed in the ACK)

    @property
    def enhanced(self) -> bool:
        return bool(self.accept_ack_type or self.application_ack_type)


@dataclass(frozen=True, slots=True)
class AckError:
    code: str  # table 0357
    reason: str  # what a person at the sending end needs to know
    segment: str = ""
    field: int | None = None


def version_of(version: str) -> tuple[int, ...]:
    """MSH-12 as numbers ("2.5.1" -> (2, 5, 1)); the default version when it does not read."""
    m = _VERSION.match(version or DEFAULT_VERSION) or _VERSION.match(DEFAULT_VERSION)
    assert m is not None
    return tuple(int(g) for g in m.groups() if g is not None)


def error_code(code: str, version: tuple[int, ...]) -> str:
    """The table 0357 code an ACK of `version` can carry for `code`."""
    added = CODE_ADDED.get(code)
    return "207" if added is not None and version < added else code


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
    version = header.version or DEFAULT_VERSION
    v = version_of(version)
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
        version,
    ]
    msa = ["MSA", code, escape(header.control_id, enc)]
    if error is not None and v < (2, 7):  # MSA-3 text message: withdrawn in v2.7
        msa.append(escape(error.reason[:80], enc))
    segments = [f.join(msa)]
    if error is not None:
        err_code = error_code(error.code, v)
        label = ERROR_TEXT.get(err_code, "Error")
        seq = "1" if error.segment else ""
        field = str(error.field or "") if error.segment else ""
        # ERR-1 error code and location (ELD): segment^sequence^field^code&text&table; the only
        # ERR field before v2.5, kept in 2.5-2.6 for older receivers, withdrawn in v2.7
        err1 = f"{error.segment}{c}{seq}{c}{field}{c}{err_code}{s}{label}{s}HL70357"
        if v < (2, 5):
            err = ["ERR", err1]
        else:
            location = f"{error.segment}{c}{seq}{c}{field}".rstrip(c) if error.segment else ""
            err = [
                "ERR",
                err1 if v < (2, 7) else "",
                location,  # ERR-2 error location (ERL)
                f"{err_code}{c}{label}{c}HL70357",  # ERR-3 HL7 error code
                "E",  # ERR-4 severity (table 0516)
                "",
                "",
                "",
                escape(error.reason, enc),  # ERR-8 user message
            ]
        segments.append(f.join(err))
    rest = "\r".join(segments)
    msh = f.join(fields)
    charset = _ack_charset(header.charset, enc, msh + rest)
    if charset:  # MSH-13..17 empty: an ACK asks for no acknowledgement itself
        msh = f.join([*fields, "", "", "", "", "", charset])
    return f"{msh}\r{rest}"


def _first_label(charset: str, enc: Encoding) -> str:
    """The first repetition's first component of MSH-18."""
    return charset.split(enc.repetition, 1)[0].split(enc.component, 1)[0]


def _ack_charset(declared: str, enc: Encoding, text: str) -> str:
    """MSH-18 of the ACK: the sender's, echoed, when the ACK can be written in it (always when it
    is all ASCII); otherwise UTF-8, declared, so that a receiver decoding by MSH-18 reads it."""
    if text.isascii():
        return declared
    codec = charset_codec(_first_label(declared, enc)) if declared else None
    if codec is not None:
        try:
            text.encode(codec)
            return declared
        except UnicodeEncodeError:
            pass
    return UTF8_CHARSET


def ack_codec(text: str) -> str:
    """The codec to send an ACK (or a batch of ACKs) in: the one its first MSH-18 names; UTF-8
    when none is named (the text is then ASCII, unless an ACK stored by an older version)."""
    start = 0 if text.startswith("MSH") else text.find("\rMSH") + 1  # a batch: its first ACK
    if (start == 0 and not text.startswith("MSH")) or len(text) < start + 8:
        return "utf-8"
    end = text.find("\r", start)
    line = text[start : end if end >= 0 else len(text)]
    parts = line.split(line[3], 18)
    if len(parts) < 18 or not parts[17]:
        return "utf-8"
    chars = parts[1]
    label = parts[17].split(chars[1:2] or "~", 1)[0].split(chars[:1] or "^", 1)[0]
    return charset_codec(label) or "utf-8"


def wire_bytes(text: str) -> bytes:
    """An ACK (or batch of ACKs) as bytes, in the character set its MSH-18 names."""
    return text.encode(ack_codec(text), errors="replace")


def responses(
    header: Header,
    *,
    ok: bool,
    rejected: bool = False,
    error: AckError | None = None,
    always_reply: bool = False,
    batched: bool = False,
    app_name: str = "LISGUARD",
) -> list[str]:
    """The ACK message(s) to send back, by the acknowledgement mode the sender asked for.

    Original mode: one ACK, AA / AE (content error) / AR (rejected: unsupported, or we could not
    store it - the sender should retry). Enhanced mode (HL7 v2 ch. 2, table 0155): a commit ACK
    (CA/CE/CR) when MSH-15 asks (AL, SU on success, ER on error), then an application ACK
    (AA/AE/AR) when MSH-16 asks; none at all when neither asks (NE, or ER on success). With
    `always_reply` (a site override) a sender that asked for none still gets the commit ACK.
    `batched`: a message of a batch, answered in the batch ACK by exactly one ACK (AA/AE/AR)
    whatever its MSH-15/16, so that the batch ACK has one per message.
    """
    app_code = "AA" if ok else ("AR" if rejected else "AE")
    if batched or not header.enhanced:
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


def acknowledged(header: Header, *, ok: bool, always_reply: bool = False) -> bool:
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
        # stripped as message_header does: MSH-15 " " is original mode, not enhanced
        accept_ack_type=fld(15).strip(),
        application_ack_type=fld(16).strip(),
        encoding=enc,
        charset=fld(18),
    )
