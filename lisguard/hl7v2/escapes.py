"""HL7 v2 delimiters (MSH-1/MSH-2) and escape sequences (v2 chapter 2, "escape sequences").

`unescape` is only ever called on one leaf value (a subcomponent, or a component when the caller
asks for whole components) and only when the escape character occurs in it: the common case costs
one ``in`` test in the reader.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

__all__ = ["DEFAULT_ENCODING", "Encoding", "unescape"]

# Formatting escapes that carry a count (\.sp3\, \.sk4\): a hostile count must not allocate
# gigabytes, so the repeat is capped.
_MAX_REPEAT = 64
_HEX = frozenset("0123456789abcdefABCDEF")


@dataclass(frozen=True, slots=True)
class Encoding:
    """A message's delimiters: MSH-1 and the characters of MSH-2 (the 5th, '#', is v2.7+)."""

    field: str = "|"
    component: str = "^"
    repetition: str = "~"
    escape: str = "\\"
    subcomponent: str = "&"
    truncation: str | None = None

    @property
    def msh2(self) -> str:
        """The encoding characters as they are written in MSH-2."""
        return (
            self.component
            + self.repetition
            + self.escape
            + self.subcomponent
            + (self.truncation or "")
        )


DEFAULT_ENCODING = Encoding()


def _count(text: str) -> int:
    """The optional number after a formatting command; absent or unreadable means 1."""
    text = text.strip().lstrip("+")
    if not text.isascii() or not text.isdigit():
        return 1
    text = text.lstrip("0") or "0"
    if len(text) > 2:  # >= 100: int() of thousands of digits is slow, and raises past 4300
        return _MAX_REPEAT
    return min(int(text), _MAX_REPEAT)


def _hex_text(digits: str) -> str | None:
    """\\Xhhhh\\: the bytes, as UTF-8 if they are valid UTF-8, else as latin-1."""
    if len(digits) % 2 or not _HEX.issuperset(digits):
        return None
    data = bytes.fromhex(digits)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = data.decode("latin-1")
    # a NUL is no text, and PostgreSQL cannot store one: the replacement character, as a
    # decoder gives for bytes it cannot read
    return text.replace("\x00", "\ufffd") if "\x00" in text else text


def _translate(seq: str, enc: Encoding) -> str | None:
    """The text an escape sequence (without its escape chars) stands for; None when unknown."""
    if not seq:
        return None
    if len(seq) == 1:
        if seq == "F":
            return enc.field
        if seq == "S":
            return enc.component
        if seq == "T":
            return enc.subcomponent
        if seq == "R":
            return enc.repetition
        if seq == "E":
            return enc.escape
        if seq == "P":  # v2.7 truncation character
            return enc.truncation or "#"
        if seq in "HN":  # start/end highlighting: no plain-text equivalent
            return ""
        if seq == "X":  # empty hex sequence
            return ""
        return None
    head = seq[0]
    if head == "X":
        return _hex_text(seq[1:])
    if head == ".":
        command, arg = seq[1:3], seq[3:]
        if command == "br" and not arg:
            return "\n"
        if command == "sp":
            return "\n" * _count(arg)
        if command == "sk":
            return " " * _count(arg)
        if command == "ce" and not arg:
            return "\n"
        if command in ("in", "ti") or (command in ("fi", "nf") and not arg):
            return ""
        return None
    if head == "Z":  # locally defined escape: meaningless to us, dropped
        return ""
    if head in "CM" and _HEX.issuperset(seq[1:]) and len(seq) in (5, 7):
        # \Cxxyy\ / \Mxxyyzz\ switch character sets (ISO 2022); the text is already decoded.
        return ""
    return None


def unescape(value: str, enc: Encoding = DEFAULT_ENCODING) -> str:
    """Replace HL7 escape sequences in one leaf value.

    \\F\\ \\S\\ \\T\\ \\R\\ \\E\\ \\P\\ give the message's own delimiters; \\Xhhhh\\ gives the
    bytes (UTF-8, else latin-1); \\.br\\, \\.sp\\, \\.ce\\ give newlines and \\.sk n\\ spaces;
    highlighting, indentation, fill, \\Zxxx\\, \\Cxxyy\\ and \\Mxxyyzz\\ are dropped. An unknown
    or unterminated sequence is kept literally (senders that forget to escape a backslash, as in
    a Windows path, lose nothing).
    """
    esc = enc.escape
    if esc not in value:
        return value
    # One left-to-right regex pass: text that is not a known sequence never reaches Python code,
    # so a flood of escape characters costs C time, and Python work is one call per sequence.
    return _sequences(esc).sub(lambda m: _replacement(m, enc), value)


def _replacement(match: re.Match[str], enc: Encoding) -> str:
    text = _translate(match.group(1), enc)
    # None only if the pattern and _translate disagreed: keeping the text is the safe side
    return match.group(0) if text is None else text


@lru_cache(maxsize=16)
def _sequences(esc: str) -> re.Pattern[str]:
    """The escape sequences `_translate` knows, each between two escape characters.

    A sequence holds no escape character, so a candidate opened at an escape character ends at
    the next one; when it is not a known sequence, the search goes on from that closing
    character, which opens the next candidate (as `unescape` always read them). Quantifiers are
    possessive and never nested: every attempt stops at the next escape character, so the whole
    pass is linear in the length of the value.
    """
    e = re.escape(esc)
    body = f"[^{e}]"
    hexd = "[0-9A-Fa-f]"
    seq = (
        "[FSTREPHN]"
        f"|X(?:{hexd}{{2}})*+"
        r"|\.(?:br|ce|fi|nf)"
        rf"|\.(?:sp|sk|in|ti){body}*+"
        f"|Z{body}++"
        f"|[CM](?:{hexd}{{6}}|{hexd}{{4}})"
    )
    return re.compile(f"{e}({seq}){e}")
