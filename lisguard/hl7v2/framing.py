"""From bytes off the wire or a file to the text of each message.

`decode_bytes` picks the character set (BOM, MSH-18, then guesses); `split_messages` removes MLLP
framing and batch envelopes and normalises segment terminators to '\r'. Both are lenient by
design: what is not a message is left for `reader.parse` to reject with a reason. A file too big
to hold at once: `lisguard.hl7v2.files`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

__all__ = [
    "UTF8_BOM",
    "WIDE_BOMS",
    "charset_codec",
    "declared_codec",
    "decode_bytes",
    "split_messages",
]

UTF8_BOM = b"\xef\xbb\xbf"
WIDE_BOMS = (b"\xff\xfe", b"\xfe\xff")  # UTF-16 (and UTF-32 LE)
BATCH_SEGMENTS = frozenset({"FHS", "BHS", "BTS", "FTS"})
_SEGMENT_START = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ")
# A line that the line-by-line reading would treat specially: blank or indented (or not starting
# with a segment name at all), or a batch segment.
_IRREGULAR = {nl: re.compile(f"{nl}(?:[^A-Z]|FHS|BHS|BTS|FTS)") for nl in ("\r", "\n")}

# MSH-18 (HL7 table 0211, plus labels vendors write instead) -> Python codec.
_CHARSETS = {
    "ASCII": "ascii",
    "ISO IR6": "ascii",
    "8859/1": "latin-1",
    "ISO IR100": "latin-1",
    "8859/2": "iso8859_2",
    "ISO IR101": "iso8859_2",
    "8859/3": "iso8859_3",
    "ISO IR109": "iso8859_3",
    "8859/4": "iso8859_4",
    "ISO IR110": "iso8859_4",
    "8859/5": "iso8859_5",
    "ISO IR144": "iso8859_5",
    "8859/6": "iso8859_6",
    "ISO IR127": "iso8859_6",
    "8859/7": "iso8859_7",
    "ISO IR126": "iso8859_7",
    "8859/8": "iso8859_8",
    "ISO IR138": "iso8859_8",
    "8859/9": "iso8859_9",
    "ISO IR148": "iso8859_9",
    "8859/15": "iso8859_15",
    "ISO IR203": "iso8859_15",
    "UNICODE": "utf-8",
    "UNICODE UTF-8": "utf-8",
    "ISO IR192": "utf-8",
    "UNICODE UTF-16": "utf-16",
    "UNICODE UTF-32": "utf-32",
    "GB 18030-2000": "gb18030",
    "KS X 1001": "euc_kr",
    "BIG-5": "big5",
    "UTF-8": "utf-8",
    "UTF8": "utf-8",
    "LATIN1": "latin-1",
    "LATIN-1": "latin-1",
    "ISO-8859-1": "latin-1",
    "ISO-8859-15": "iso8859_15",
    "WINDOWS-1252": "cp1252",
    "CP1252": "cp1252",
}


# --------------------------------------------------------------------------------------- bytes


def charset_codec(label: str) -> str | None:
    """The codec an MSH-18 value (its first repetition) names; None if unknown."""
    return _CHARSETS.get(label.strip().upper())


def declared_codec(raw: bytes) -> str | None:
    """The codec MSH-18 of the first MSH names, read from the bytes as ASCII; None if none."""
    start = raw.find(b"MSH")
    if start < 0:
        return None
    sep = raw[start + 3 : start + 4]
    if not sep or sep in b"\r\n":
        return None
    end = raw.find(b"\r", start)
    if end < 0:
        end = len(raw)
    newline = raw.find(b"\n", start, end)
    if newline >= 0:
        end = newline
    fields = raw[start:end].split(sep, 18)
    if len(fields) < 18 or not fields[17]:
        return None
    label = fields[17]
    encoding_chars = fields[1]
    for delimiter in encoding_chars[1:2], encoding_chars[:1]:  # repetition, then component
        if delimiter:
            label = label.split(delimiter, 1)[0]
    return charset_codec(label.decode("latin-1"))


def decode_bytes(raw: bytes) -> str:
    """Bytes off the wire or a file -> text, honouring MSH-18; never raises.

    A UTF-8 BOM is dropped (a UTF-16 BOM selects UTF-16). The character set declared in MSH-18 of
    the first MSH is used when it decodes the bytes; otherwise (unknown, empty or wrong declaration)
    UTF-8, then cp1252, then latin-1, which accepts any bytes. Files mixing character sets between
    messages are decoded with the first message's.
    """
    if raw.startswith(UTF8_BOM):
        raw = raw[3:]
    elif raw[:2] in WIDE_BOMS:
        try:
            return raw.decode("utf-16")
        except UnicodeDecodeError:
            pass
    codec = declared_codec(raw)
    if codec is not None:
        try:
            return raw.decode(codec)
        except UnicodeDecodeError:
            pass
    for codec in ("utf-8", "cp1252"):
        try:
            return raw.decode(codec)
        except UnicodeDecodeError:
            continue
    return raw.decode("latin-1")


# ---------------------------------------------------------------------------------------- text


def split_messages(text: str) -> list[str]:
    """Cut a file or request body into messages, each with '\\r' segment terminators.

    Handles one or many messages (each starts at an MSH segment), FHS/BHS...BTS/FTS batches (the
    batch segments are dropped), MLLP frames (0x0B/0x1C framing removed), CR, LF or CRLF line
    ends, blank lines, leading whitespace on a line, and a BOM. Anything before the first MSH, or
    after a batch segment and before the next MSH, is ignored. Text holding no MSH at all but
    other non-batch lines comes back as one "message" so that `parse` reports what is wrong with
    it rather than the input vanishing; an empty batch gives [].
    """
    if text.startswith("\ufeff"):
        text = text[1:]
    if "\x0b" in text or "\x1c" in text:
        text = text.replace("\x0b", "\r").replace("\x1c", "\r")
    newline = "\r"
    if "\n" in text:
        if "\r" in text:
            text = text.replace("\r\n", "\n").replace("\r", "\n")
        newline = "\n"
    # The usual file or feed: it starts with MSH and every line starts with a segment name that
    # is not a batch segment. Then cutting at each line that starts "MSH" is all there is to do.
    body = text.rstrip(newline)
    if body.startswith("MSH") and _IRREGULAR[newline].search(body) is None:
        if newline == "\n":
            body = body.replace("\n", "\r")
        # slice at each "\rMSH" (one copy of each message, not a split and a concatenation)
        starts = [0]
        find = body.find
        at = find("\rMSH")
        while at >= 0:
            starts.append(at + 1)
            at = find("\rMSH", at + 4)
        ends = [start - 1 for start in starts[1:]]
        ends.append(len(body))
        return [body[start:end] for start, end in zip(starts, ends, strict=True)]
    return _split_lines(text.split(newline))


def segment_lines(lines: Iterable[str]) -> Iterator[tuple[str, str]]:
    """(segment name, line) for each line that is not blank; a line that does not start like a
    segment has its leading whitespace dropped (an indented or padded file). split_messages and
    the batch reader (lisguard.hl7v2.batch) see lines the same way."""
    for line in lines:
        if line[:1] not in _SEGMENT_START:
            line = line.lstrip()
            if not line:
                continue
        yield line[:3], line


def _split_lines(lines: list[str]) -> list[str]:
    """split_messages for any text, line by line."""
    messages: list[list[str]] = []
    current: list[str] | None = None
    stray: list[str] = []
    for name, line in segment_lines(lines):
        if name == "MSH":
            current = [line]
            messages.append(current)
        elif name in BATCH_SEGMENTS:
            current = None
        elif current is not None:
            current.append(line)
        elif not messages:
            stray.append(line)
    if not messages:
        return ["\r".join(stray)] if stray else []
    return ["\r".join(lines) for lines in messages]
