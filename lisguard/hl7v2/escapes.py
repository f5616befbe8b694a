"""HL7 v2 delimiters (MSH-1/MSH-2) and escape sequences (v2 chapter 2, "escape sequences").

`unescape` is only ever called on one leaf value (a subcomponent, or a component when the caller
asks for whole components) and only when the escape character occurs in it: the common case costs
one ``in`` test in the reader.
"""

from __future__ import annotations

from dataclasses import dataclass

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
    return min(int(text), _MAX_REPEAT)


def _hex_text(digits: str) -> str | None:
    """\\Xhhhh\\: the bytes, as UTF-8 if they are valid UTF-8, else as latin-1."""
    if len(digits) % 2 or not _HEX.issuperset(digits):
        return None
    data = bytes.fromhex(digits)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


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
    start = value.find(esc)
    if start < 0:
        return value
    out: list[str] = []
    pos = 0
    while start >= 0:
        end = value.find(esc, start + 1)
        if end < 0:
            break
        text = _translate(value[start + 1 : end], enc)
        if text is None:
            # Not an escape sequence: keep the opening char and the text, and let the closing
            # char open the next candidate sequence.
            out.append(value[pos:end])
            pos = start = end
            continue
        out.append(value[pos:start])
        out.append(text)
        pos = end + 1
        start = value.find(esc, pos)
    out.append(value[pos:])
    return "".join(out)
