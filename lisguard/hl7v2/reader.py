"""A lean reader for HL7 v2 ER7 text: one message -> segments -> fields -> values.

`decode_bytes` and `split_messages` (from `framing`) are re-exported here, as is `parse_ts`.

It sits on the per-message hot path, so it does as little as it can up front: `parse` splits the
message into segments and checks the MSH header and every segment name; a segment's fields are
split the first time one is read; repetitions, components and subcomponents are split on access,
and a value is unescaped only when it holds the escape character. `Message.to_er7()` gives the text
back exactly as it was parsed.

Numbering is HL7's, 1-based: in MSH (and FHS/BHS) field 1 is the field separator itself and field
2 the encoding characters, returned raw; in every other segment field 1 is the first after the
name. Absent values read as "". The HL7 null `""` is returned as the two quote characters: what it
means is the caller's business.
"""

from __future__ import annotations

import string
from functools import lru_cache

from lisguard.hl7v2.datatypes import parse_ts
from lisguard.hl7v2.escapes import Encoding, unescape
from lisguard.hl7v2.framing import decode_bytes, split_messages
from lisguard.hl7v2.printable import printable_segment_name

__all__ = [
    "Encoding",
    "HL7ReadError",
    "Message",
    "Segment",
    "decode_bytes",
    "parse",
    "parse_ts",
    "split_messages",
]

# Segments whose field 1 is the field separator and field 2 the encoding characters.
_HEADER_SEGMENTS = frozenset({"MSH", "FHS", "BHS"})
_NAME_FIRST = frozenset(string.ascii_uppercase)
_NAME_REST = frozenset(string.ascii_uppercase + string.digits)


class HL7ReadError(ValueError):
    """The text is not a message this reader can read.

    `code` is an HL7 table 0357 error code for the ACK: "100" segment sequence error, "101"
    required field missing, "102" data type error, "200" unsupported message type, "207"
    application internal error. `segment`/`field` locate the problem when known.
    """

    def __init__(
        self,
        reason: str,
        *,
        code: str = "100",
        segment: str | None = None,
        field: int | None = None,
    ) -> None:
        self.reason = reason
        self.code = code
        self.segment = segment
        self.field = field
        where = segment or ""
        if segment and field is not None:
            where = f"{segment}-{field}"
        super().__init__(f"{where}: {reason}" if where else reason)

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild_error, (self.reason, self.code, self.segment, self.field))


def _rebuild_error(reason: str, code: str, segment: str | None, field: int | None) -> HL7ReadError:
    return HL7ReadError(reason, code=code, segment=segment, field=field)


@lru_cache(maxsize=64)
def _encoding(sep: str, chars: str) -> Encoding:
    """The Encoding of MSH-1 and MSH-2, validated."""
    if not sep or sep in "\r\n":
        raise HL7ReadError("MSH segment too short: no field separator", code="101", segment="MSH")
    if sep.isalnum() or sep.isspace():
        raise HL7ReadError(
            f"field separator {sep!r} is a letter, digit or whitespace",
            code="102",
            segment="MSH",
            field=1,
        )
    if len(chars) < 4:
        raise HL7ReadError(
            f"missing encoding characters: MSH-2 has {len(chars)}, needs component, "
            "repetition, escape and subcomponent characters",
            code="101" if not chars else "102",
            segment="MSH",
            field=2,
        )
    if len(chars) > 5:
        raise HL7ReadError(
            f"MSH-2 has {len(chars)} encoding characters, at most 5 are allowed",
            code="102",
            segment="MSH",
            field=2,
        )
    for char in chars:
        if char.isalnum() or char.isspace():
            raise HL7ReadError(  # which one is not said: it may be the start of a name
                "an encoding character in MSH-2 is a letter, digit or whitespace",
                code="102",
                segment="MSH",
                field=2,
            )
    if len(set(sep + chars)) != len(chars) + 1:
        raise HL7ReadError(
            f"duplicate delimiter characters in MSH-1/MSH-2 {sep + chars!r}",
            code="102",
            segment="MSH",
            field=2,
        )
    return Encoding(sep, chars[0], chars[1], chars[2], chars[3], chars[4:] or None)


def _check_name(line: str, sep: str, index: int) -> None:
    name = line[:3]
    if (
        len(name) != 3
        or name[0] not in _NAME_FIRST
        or name[1] not in _NAME_REST
        or name[2] not in _NAME_REST
    ):
        # what the line holds is never quoted: after a raw CR in free text it is PHI
        raise HL7ReadError(
            f"segment {index + 1} does not start with a segment name (3 characters, an "
            "uppercase letter then uppercase letters or digits); a carriage return inside a "
            "field splits it so",
            code="100",
        )
    if len(line) > 3 and line[3] != sep:
        known = printable_segment_name(name)
        raise HL7ReadError(
            f"segment {index + 1}{f' ({known})' if known else ''}: the name is not "
            f"followed by the field separator {sep!r}",
            code="100",
            segment=known,
        )


def parse(text: str) -> Message:
    """Read one message (as split by `split_messages`); raise HL7ReadError if it is not one.

    A leading BOM or whitespace, LF/CRLF terminators and empty lines are tolerated.
    """
    if text.startswith("\ufeff"):
        text = text[1:]
    if text[:1].isspace():
        text = text.lstrip()
    if not text:
        raise HL7ReadError("empty message", code="100")
    if not text.startswith("MSH"):
        raise HL7ReadError("a message starts with an MSH segment; this one does not", code="100")
    if "\n" in text:
        text = text.replace("\r\n", "\r").replace("\n", "\r")
    if text.endswith("\r"):  # the usual final terminator (MLLP)
        text = text.rstrip("\r")
    sep = text[3:4]
    line_end = text.find("\r")
    first = text if line_end < 0 else text[:line_end]
    stop = first.find(sep, 4) if sep else -1
    encoding = _encoding(sep, first[4:] if stop < 0 else first[4:stop])
    lines = text.split("\r")
    heads = _valid_heads.get(sep)
    if heads is not None and {line[:4] for line in lines[1:]} <= heads:
        # Fast path: every segment after MSH starts with a name already seen valid + separator.
        return Message(encoding, [Segment(line, encoding) for line in lines])
    return Message(encoding, _checked_segments(lines, encoding))


def _checked_segments(lines: list[str], encoding: Encoding) -> list[Segment]:
    """The slow path of `parse`: blank lines skipped, every name checked, errors located."""
    sep = encoding.field
    heads = _valid_heads.get(sep)
    if heads is None:
        heads = set()
        if len(_valid_heads) < 64:
            _valid_heads[sep] = heads
    segments: list[Segment] = []
    for index, line in enumerate(lines):
        if not line or line.isspace():
            continue
        if segments and line.startswith("MSH"):
            raise HL7ReadError(
                f"segment {index + 1} is a second MSH: split the text with split_messages()",
                code="100",
                segment="MSH",
            )
        if line[:4] not in heads:
            _check_name(line, sep, index)
            if len(line) > 3 and segments and len(heads) < 4096:
                heads.add(line[:4])  # never MSH: a second one must come here
        segments.append(Segment(line, encoding))
    return segments


def _first_values(msh: Segment) -> list[str]:
    """msh.get(f) for every field f (index = field number): MSH-1 and MSH-2 as they are, the
    others their first component - split by hand where no repetition, subcomponent or escape
    character makes `get` do more."""
    fields = msh._split()
    enc = msh.encoding
    rep, sub, esc, comp = enc.repetition, enc.subcomponent, enc.escape, enc.component
    values = fields[:3]
    for number in range(3, len(fields)):
        value = fields[number]
        if rep in value or sub in value or esc in value:
            values.append(msh.get(number))
        else:
            values.append(value.partition(comp)[0])
    return values


# Per field separator, the "XXX|" segment starts already found valid (MSH never included).
_valid_heads: dict[str, set[str]] = {}


class Message:
    """One parsed message: its encoding and its segments in order, MSH first."""

    __slots__ = ("_msh", "_trigger", "_type", "encoding", "segments")

    def __init__(self, encoding: Encoding, segments: list[Segment]) -> None:
        self.encoding = encoding
        self.segments = segments
        self._type: str | None = None  # message_type, read many times per message
        self._msh: list[str] | None = None  # msh_value() of every MSH field, read once
        self._trigger: str | None = None

    def msh_value(self, field: int) -> str:
        """MSH `field` as `segments[0].get(field)` reads it (first component, unescaped), from
        one pass over the MSH: every message needs several of them (ACK, key, policy)."""
        values = self.msh_values()
        return values[field] if 0 < field < len(values) else ""

    def msh_values(self) -> list[str]:
        """msh_value of every field, index = field number (index 0: "MSH"). Read-only."""
        values = self._msh
        if values is None:
            values = self._msh = _first_values(self.segments[0])
        return values

    def __repr__(self) -> str:
        return f"<Message {self.message_type or '?'} {self.control_id!r} ({len(self.segments)})>"

    def segment(self, name: str) -> Segment | None:
        """The first segment with this name, or None."""
        for segment in self.segments:
            if segment.name == name:
                return segment
        return None

    def segments_named(self, name: str) -> list[Segment]:
        """All segments with this name, in order."""
        return [segment for segment in self.segments if segment.name == name]

    @property
    def message_type(self) -> str:
        """MSH-9.1^MSH-9.2 ("ORU^R01"), always joined by '^'; just MSH-9.1 without a trigger."""
        found = self._type
        if found is None:
            code, trigger = self.msh_value(9), self.trigger
            found = self._type = f"{code}^{trigger}" if trigger else code
        return found

    @property
    def trigger(self) -> str:
        """MSH-9.2, the trigger event ("R01")."""
        found = self._trigger
        if found is None:
            found = self._trigger = self.segments[0].get(9, 2)
        return found

    @property
    def control_id(self) -> str:
        """MSH-10 (its first component, unescaped)."""
        return self.msh_value(10)

    @property
    def version(self) -> str:
        """MSH-12.1, e.g. "2.5.1"."""
        return self.msh_value(12)

    @property
    def processing_id(self) -> str:
        """MSH-11.1: P(roduction), T(raining), D(ebugging)."""
        return self.msh_value(11)

    def to_er7(self) -> str:
        """The message text, segments joined by '\\r': what was parsed, minus blank lines."""
        return "\r".join([segment.raw for segment in self.segments])


class Segment:
    """One segment. Fields are split from the raw text on first access.

    `components()` returns each component unescaped as a whole: subcomponents stay joined by the
    subcomponent character (so "a&b" and "a\\T\\b" read the same); use `get(f, c, s)` when
    subcomponents matter.
    """

    __slots__ = ("_fields", "_reps", "encoding", "name", "raw")

    def __init__(self, raw: str, encoding: Encoding) -> None:
        self.name = raw[:3]
        self.raw = raw
        self.encoding = encoding
        self._fields: list[str] | None = None
        # field number -> its repetitions, split once: callers walk repetitions by number
        # (get(f, repetition=i) for every i), and splitting the field again for each number
        # made a field of n repetitions cost n**2 (a hostile OBX-5 of 1 MB of '~' took hours)
        self._reps: dict[int, list[str]] | None = None

    def __repr__(self) -> str:
        return f"<Segment {self.raw[:40]!r}>"

    def _split(self) -> list[str]:
        fields = self._fields
        if fields is None:
            sep = self.encoding.field
            fields = self.raw.split(sep)
            if self.name in _HEADER_SEGMENTS:
                fields.insert(1, sep)
            self._fields = fields
        return fields

    def fields(self) -> list[str]:
        """The raw fields, index = field number (field_raw of each; index 0: the name).
        The segment's own list: read it, never change it."""
        return self._split()

    def field_count(self) -> int:
        """Number of fields present on the wire, trailing empty ones included."""
        return len(self._split()) - 1

    def field_raw(self, field: int) -> str:
        """The whole field as on the wire (escaped, repetitions included); "" if absent."""
        if field < 1:
            raise ValueError(f"HL7 field numbers start at 1, got {field}")
        fields = self._split()
        return fields[field] if field < len(fields) else ""

    def plain_fields(self) -> list[str] | None:
        """The raw fields (index = field number) when the segment holds no repetition, escape
        or subcomponent character, as most OBX segments: there a value is a whole field or one
        of its components, and a caller reading many values may split them itself. None for
        any other segment, and for MSH/FHS/BHS."""
        enc = self.encoding
        raw = self.raw
        if (
            enc.repetition in raw
            or enc.escape in raw
            or enc.subcomponent in raw
            or self.name in _HEADER_SEGMENTS
        ):
            return None
        return self._split()

    def _is_header_field(self, field: int) -> bool:
        return field <= 2 and self.name in _HEADER_SEGMENTS

    def _split_reps(self, field: int, value: str) -> list[str]:
        """Field `field` (raw text `value`, not MSH-1/2) split at the repetition character,
        once per segment and field."""
        cache = self._reps
        if cache is None:
            cache = self._reps = {}
        reps = cache.get(field)
        if reps is None:
            reps = cache[field] = value.split(self.encoding.repetition)
        return reps

    def repetitions(self, field: int) -> list[str]:
        """The raw (escaped) repetitions of a field; [] when the field is empty or absent.
        The segment's own list: read it, never change it."""
        raw = self.field_raw(field)
        if not raw:
            return []
        if self._is_header_field(field):
            return [raw]
        return self._split_reps(field, raw)

    def components(self, field: int, repetition: int = 1) -> list[str]:
        """The unescaped components of one repetition; [] when it is empty or absent."""
        if repetition < 1:
            raise ValueError(f"HL7 repetitions start at 1, got {repetition}")
        reps = self.repetitions(field)
        if repetition > len(reps) or not reps[repetition - 1]:
            return []
        if self._is_header_field(field):
            return reps
        enc = self.encoding
        esc = enc.escape
        return [
            unescape(part, enc) if esc in part else part
            for part in reps[repetition - 1].split(enc.component)
        ]

    def first_subcomponents(self, field: int, repetition: int = 1) -> list[str]:
        """Every component of one repetition as `get(field, c, 1, repetition)` reads it (its
        first subcomponent, unescaped), from one split: for coded elements, whose code, text
        and system (and alternate triplet) a caller wants together. [] when empty or absent."""
        if repetition < 1:
            raise ValueError(f"HL7 repetitions start at 1, got {repetition}")
        value = self.field_raw(field)
        if not value:
            return []
        if self._is_header_field(field):
            return [value] if repetition == 1 else []
        enc = self.encoding
        if (self._reps is not None and field in self._reps) or enc.repetition in value:
            reps = self._split_reps(field, value)
            if repetition > len(reps):
                return []
            value = reps[repetition - 1]
        elif repetition != 1:
            return []
        sub, esc = enc.subcomponent, enc.escape
        parts = value.split(enc.component)
        for i, part in enumerate(parts):
            if sub in part:
                part = parts[i] = part.partition(sub)[0]
            if esc in part:
                parts[i] = unescape(part, enc)
        return parts

    def get(
        self, field: int, component: int = 1, subcomponent: int = 1, repetition: int = 1
    ) -> str:
        """One value, unescaped; "" when absent. MSH-1 and MSH-2 come back as they are."""
        if field < 1 or component < 1 or subcomponent < 1 or repetition < 1:
            raise ValueError("HL7 fields, components, subcomponents and repetitions start at 1")
        fields = self._fields
        if fields is None:
            fields = self._split()
        if field >= len(fields):
            return ""
        value = fields[field]
        if not value:
            return ""
        if field <= 2 and self.name in _HEADER_SEGMENTS:
            return value if component == subcomponent == repetition == 1 else ""
        enc = self.encoding
        reps = self._reps
        if (reps is not None and field in reps) or enc.repetition in value:
            parts = self._split_reps(field, value)
            if repetition > len(parts):
                return ""
            value = parts[repetition - 1]
        elif repetition != 1:
            return ""
        sep = enc.component
        if sep in value:
            parts = value.split(sep)
            if component > len(parts):
                return ""
            value = parts[component - 1]
        elif component != 1:
            return ""
        sep = enc.subcomponent
        if sep in value:
            parts = value.split(sep)
            if subcomponent > len(parts):
                return ""
            value = parts[subcomponent - 1]
        elif subcomponent != 1:
            return ""
        if enc.escape in value:
            return unescape(value, enc)
        return value

    def to_er7(self) -> str:
        """The segment as on the wire."""
        return self.raw
