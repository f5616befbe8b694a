"""A file of messages of any size, in bounded memory: the messages `split_messages(decode_bytes(
whole))` gives, with never more than about a chunk and a message held at once.

The bytes are read twice, a chunk at a time. The first pass settles the character set as
decode_bytes settles it for the whole file: the set the first MSH declares in MSH-18 if the whole
file decodes in it, else UTF-8 if it does, else cp1252 if it does, else latin-1 (each tried by an
incremental decoder; the next is tried only if one fails). The second pass cuts the bytes where a
message starts (`cut_at_messages`), decodes each piece in that set and splits it. A UTF-16 or
UTF-32 file (by its BOM or MSH-18) cannot be cut byte-wise and is read whole.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Callable, Iterable, Iterator

from lisguard.hl7v2.framing import (
    UTF8_BOM,
    WIDE_BOMS,
    declared_codec,
    decode_bytes,
    split_messages,
)

__all__ = ["cut_at_messages", "file_codec", "read_messages"]

Chunks = Callable[[], Iterable[bytes]]  # reads the file from its start, a chunk at a time

# Where a message starts: "MSH" at the start of a line or of an MLLP frame. In every character
# set that is not wide (ASCII, ISO 8859, cp1252, UTF-8, GB 18030, Big5, EUC-KR) a CR, LF or VT
# byte is that character, never part of another, so the bytes can be cut there.
_MESSAGE_START = re.compile(rb"[\r\n\x0b]MSH")
_GUESSES = ("utf-8", "cp1252")


def read_messages(chunks: Chunks) -> Iterator[str]:
    """The messages of a file, in order, as `split_messages(decode_bytes(whole))` gives them."""
    codec = file_codec(chunks)
    if codec is None:
        yield from split_messages(decode_bytes(b"".join(chunks())))
        return
    for piece in cut_at_messages(_without_bom(chunks())):
        try:
            text = piece.decode(codec)
        except UnicodeDecodeError:  # the file changed since the first pass: never raise
            text = decode_bytes(piece)
        yield from split_messages(text)


def file_codec(chunks: Chunks) -> str | None:
    """The codec decode_bytes would decode the whole file with; None when it would try UTF-16
    (a BOM) or the first MSH declares UTF-16 or UTF-32: such a file is not cut."""
    start, line = _first_msh_line(chunks())
    if start[:2] in WIDE_BOMS:
        return None
    declared = declared_codec(line)
    if declared is not None and declared.startswith(("utf-16", "utf-32")):
        return None
    candidates = [declared] if declared is not None else []
    candidates += [codec for codec in _GUESSES if codec != declared]
    for codec in candidates:
        if _decodes(chunks(), codec):
            return codec
    return "latin-1"  # decodes any bytes


def _first_msh_line(chunks: Iterable[bytes]) -> tuple[bytes, bytes]:
    """The file's first two bytes, and its first line from the first "MSH" on (all that
    declared_codec reads; b"" if there is none). Only a few bytes are held before it."""
    start = b""
    held = b""
    found = False
    for chunk in chunks:
        if len(start) < 2:
            start = (start + chunk)[:2]
        held += chunk
        if not found:
            at = held.find(b"MSH")
            if at < 0:
                held = held[-2:]  # "MSH" may straddle two chunks
                continue
            held, found = held[at:], True
        ends = [i for i in (held.find(b"\r", 3), held.find(b"\n", 3)) if i >= 0]
        if ends:
            return start, held[: min(ends)]
    return start, held if found else b""


def _decodes(chunks: Iterable[bytes], codec: str) -> bool:
    decoder = codecs.getincrementaldecoder(codec)()
    try:
        for chunk in _without_bom(chunks):
            decoder.decode(chunk)
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return False
    return True


def _without_bom(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """The chunks without a UTF-8 BOM at the start of the stream, as decode_bytes drops it
    at the start of the file only (however small the first chunks)."""
    stream = iter(chunks)
    head = b""
    for chunk in stream:
        head += chunk
        if len(head) >= len(UTF8_BOM):
            break
    yield head.removeprefix(UTF8_BOM)
    yield from stream


def cut_at_messages(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """Re-cut a byte stream into pieces of whole messages: each piece but the last ends just
    before a line that starts with MSH, and holds at least one such line. Only what the next
    message start has not yet been found for is held: about a chunk and a message. Call it on a
    file that file_codec found not to be wide, without its BOM (`_without_bom`)."""
    held = bytearray()
    started = False  # a message start has been seen: what comes before a cut is messages
    for chunk in chunks:
        since = max(len(held) - 3, 0)  # "\rMSH" may straddle two chunks
        held += chunk
        cut = _last_message_start(held, since)
        if cut <= 0:
            continue
        started = started or _has_message_before(held, cut)
        if started:
            yield bytes(held[:cut])
            del held[:cut]
    if held:
        yield bytes(held)


def _last_message_start(data: bytearray, since: int) -> int:
    """Offset of the last "MSH" at or after `since` that starts a line; 0 if none."""
    at = data.rfind(b"MSH", since)
    while at > 0:
        if data[at - 1] in b"\r\n\x0b":
            return at
        at = data.rfind(b"MSH", since, at)
    return 0


def _has_message_before(data: bytearray, end: int) -> bool:
    """Whether a message starts before `end`: if none does, what precedes it is text before the
    first message, which split_messages reads differently when no message follows it."""
    if data.startswith(b"MSH"):
        return True
    return _MESSAGE_START.search(data, 0, end - 1) is not None
