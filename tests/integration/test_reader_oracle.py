"""The lean reader against hl7apy, the reference model, over real-world sample messages.

Every message of the public corpus (fhir-converter-hl7v2, in ../shared/corpus beside the clone)
and of hl7_samples/ goes through decode_bytes + split_messages + parse, and every field of every
segment is compared with two hl7apy readings of the same text:

* untyped: the segment parsed as a Z-segment ("ZZZ" + its fields), where hl7apy knows no data
  types and keeps every field, repetition, component and subcomponent in place. Every field must
  agree, and every component/subcomponent hl7apy found must be what `Segment.get` returns (after
  unescaping, see below). This is the strict check of the splitting.
* typed: the whole message through `parse_message` (hl7apy's segment and data type definitions for
  the message's version). The MSH conveniences must match hl7apy's named access, every DTM value
  hl7apy reads must be what `parse_ts` gives, and every field must agree, except where hl7apy's
  typed model is lossy - each case recognised by a specific test and counted in
  `_Outcome.typed_quirks`:
    - "numeric": NM/SI values are stored as numbers ("001" is written back as "1");
    - "withdrawn": a data type whose first components that version withdrew (XTN.1 in v2.6+) is
      written back without them, shifting the rest left;
    - "undefined field" / "component past definition": a field the version does not define
      (withdrawn, e.g. PID-28 in v2.8, or past the segment's end) or a component past its data
      type's definition loses its position (hl7apy appends it unnamed): compared untyped only.

What hl7apy cannot parse, and the fallback (nothing is skipped):

* `parse_message` rejects a message whose MSH-12 version it has no library for, with 5 encoding
  characters before v2.7, or holding a segment its version does not define (PRT in three v2.5.1
  corpus messages: PRT arrived in v2.7). Such a message is read segment by segment, each with the
  message's version if hl7apy reads it there, else the newest version that does, else untyped
  only. Counted in `_Outcome.fallbacks`; `QUIRKS` exercises each path.
* hl7apy strips each segment, drops whitespace-only fields/components/subcomponents and trailing
  empty ones when it writes ER7, and its writer re-escapes escape sequences it does not know
  (\\X41\\ -> \\E\\X41\\E\\); the reader keeps the wire text. Fields are compared in a
  canonical form that undoes this (`_leaves`); a segment's last field without trailing whitespace.
* hl7apy does not unescape (it escapes). Every leaf holding an escape sequence is checked both ways:
  python-hl7's `unescape` must give the reader's value, and hl7apy's ST must escape the reader's
  value back to the wire text (delimiter escapes only: the only ones hl7apy writes).
"""

from __future__ import annotations

import os
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from functools import cache
from pathlib import Path
from typing import Any

import hl7
import pytest
from hl7apy import SUPPORTED_LIBRARIES
from hl7apy.base_datatypes import DTM, ST
from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.exceptions import HL7apyException
from hl7apy.factories import datetime_factory
from hl7apy.parser import parse_message, parse_segment

from lisguard.hl7v2.reader import (
    Encoding,
    Message,
    Segment,
    decode_bytes,
    parse,
    parse_ts,
    split_messages,
)

REPO = Path(__file__).resolve().parents[2]
CORPUS = REPO.parent / "shared" / "corpus" / "fhir-converter-hl7v2"
SAMPLES = REPO / "hl7_samples"
CORPUS_SIZE = 139
BATCH_SEGMENTS = {"FHS", "BHS", "BTS", "FTS"}
HEADER_SEGMENTS = {"MSH", "FHS", "BHS"}
# python-hl7's unescape, told the reader's plain-text choices for formatting escapes.
_APP_MAP = {"H": "", "N": "", ".br": "\n", ".sp": "\n", ".ce": "\n", ".fi": "", ".nf": ""}

TOLERANT = VALIDATION_LEVEL.TOLERANT
# Even TOLERANT, hl7apy raises ValueError on some values (a DTM that is no date, an NM no number).
HL7APY_ERRORS = (HL7apyException, ValueError)
# Newest first: the fallback versions for a segment the message's own version does not define.
VERSIONS = sorted(SUPPORTED_LIBRARIES, key=lambda v: [int(p) for p in v.split(".")], reverse=True)


def _corpus_files() -> list[Path]:
    return sorted(CORPUS.glob("*.hl7")) if CORPUS.is_dir() else []


def _files() -> list[Any]:
    params = [pytest.param(p, id=f"corpus/{p.name}") for p in _corpus_files()]
    params += [
        pytest.param(p, id=f"samples/{p.relative_to(SAMPLES)}")
        for p in sorted(SAMPLES.rglob("*.hl7"))
    ]
    return params


def _chars(enc: Encoding) -> dict[str, str]:
    """hl7apy's encoding_chars for the message's delimiters."""
    chars = {
        "FIELD": enc.field,
        "COMPONENT": enc.component,
        "SUBCOMPONENT": enc.subcomponent,
        "REPETITION": enc.repetition,
        "ESCAPE": enc.escape,
        "SEGMENT": "\r",
        "GROUP": "\r",
    }
    if enc.truncation:
        chars["TRUNCATION"] = enc.truncation
    return chars


def _leaves(value: str, enc: Encoding) -> list[list[list[str]]]:
    """repetitions -> components -> subcomponents, as hl7apy writes them: whitespace-only values
    read as empty, trailing empty ones dropped at every level.

    hl7apy's writer also escapes every escape char not opening \\F\\ \\S\\ \\T\\ \\R\\
    \\E\\ \\H\\ \\N\\ (\\X41\\ becomes \\E\\X41\\E\\) and, from v2.7, the
    truncation char as \\L\\: both are undone here, on both sides. (Leaves are compared exactly,
    from hl7apy's parsed values, in `_check_values`.)"""
    esc = enc.escape
    value = value.replace(f"{esc}E{esc}", esc)
    if enc.truncation:
        value = value.replace(f"{esc}L{esc}", enc.truncation)
    reps = []
    for rep in value.split(enc.repetition):
        comps = []
        for comp in rep.split(enc.component):
            subs = [sub if sub.strip() else "" for sub in comp.split(enc.subcomponent)]
            while subs and not subs[-1]:
                subs.pop()
            comps.append(subs)
        while comps and not comps[-1]:
            comps.pop()
        reps.append(comps)
    while reps and not reps[-1]:
        reps.pop()
    return reps


def _canon(value: str, enc: Encoding) -> str:
    return enc.repetition.join(
        enc.component.join(enc.subcomponent.join(subs) for subs in comps)
        for comps in _leaves(value, enc)
    )


def _numeric_equal(ours: str, theirs: str, enc: Encoding) -> bool:
    """Same shape, and every leaf equal as text or as a number."""

    def same(a: str, b: str) -> bool:
        if a == b:
            return True
        try:
            return Decimal(a) == Decimal(b)
        except InvalidOperation:
            return False

    a, b = _leaves(ours, enc), _leaves(theirs, enc)
    return (
        len(a) == len(b)
        and all(len(x) == len(y) for x, y in zip(a, b, strict=True))
        and all(
            len(xs) == len(ys) and all(same(p, q) for p, q in zip(xs, ys, strict=True))
            for x, y in zip(a, b, strict=True)
            for xs, ys in zip(x, y, strict=True)
        )
    )


def _keeps_positions(element: Any) -> bool:
    """False when hl7apy lost where a child was: a typed element (children named XTN_2, XTN_3...)
    with a child past its data type's definition (unnamed, appended after the named ones)."""
    children = element.children
    named = [bool(child.name and child.name.rsplit("_", 1)[-1].isdigit()) for child in children]
    typed = any(named) or bool(getattr(element, "structure_by_name", None))
    if typed and not all(named):
        return False
    return all(_keeps_positions(child) for child in children if hasattr(child, "children"))


def _withdrawn_leading(hfield: Any) -> int:
    """How many leading components hl7apy's definition of this field's data type lacks."""
    try:
        positions = [int(name.rsplit("_", 1)[1]) for name in hfield.structure_by_name]
    except (AttributeError, TypeError, ValueError, IndexError):
        return 0
    return min(positions) - 1 if positions else 0


@dataclass
class _Outcome:
    messages: int = 0
    fields: int = 0
    values: int = 0  # components/subcomponents compared through Segment.get
    timestamps: int = 0  # hl7apy DTM values compared with parse_ts
    unescaped: int = 0
    unescaped_unchecked: int = 0  # escapes neither python-hl7 nor hl7apy can check
    fallbacks: list[str] = field(default_factory=list)
    typed_quirks: Counter[str] = field(default_factory=Counter)
    mismatches: list[str] = field(default_factory=list)


@dataclass
class _Typed:
    """hl7apy's typed reading of one segment: position -> repetitions (hl7apy Field objects)."""

    fields: dict[int, list[Any]]
    # Positions the version defines. hl7apy appends a field at any other position (withdrawn in
    # that version, or past the definition) without a name: its position is lost.
    defined: frozenset[int]


def _typed(hseg: Any) -> _Typed:
    fields: dict[int, list[Any]] = {}
    for hfield in hseg.children:
        if hfield.name is not None:
            fields.setdefault(int(hfield.name.rsplit("_", 1)[1]), []).append(hfield)
    defined = frozenset(int(name.rsplit("_", 1)[1]) for name in hseg.structure_by_name)
    return _Typed(fields, defined)


def _typed_segment(seg: Segment, version: str, outcome: _Outcome, where: str) -> _Typed | None:
    """One segment through hl7apy with the message's version, else the newest that reads it."""
    error: Exception | None = None
    for candidate in [version, *VERSIONS]:
        if candidate not in SUPPORTED_LIBRARIES:
            continue
        try:
            hseg = parse_segment(seg.raw, candidate, _chars(seg.encoding), TOLERANT)
        except HL7APY_ERRORS as exc:
            error = exc
            continue
        if candidate != version:
            outcome.fallbacks.append(f"{where}: {seg.name} read with v{candidate}")
        return _typed(hseg)
    outcome.fallbacks.append(f"{where}: hl7apy cannot read {seg.name} ({error}), untyped only")
    return None


def _typed_message(text: str, msg: Message, outcome: _Outcome, where: str) -> list[_Typed | None]:
    try:
        hmsg = parse_message(text, validation_level=TOLERANT, find_groups=False)
    except HL7APY_ERRORS as exc:
        outcome.fallbacks.append(f"{where}: message rejected ({type(exc).__name__}: {exc})")
        return [_typed_segment(seg, msg.version, outcome, where) for seg in msg.segments]
    assert [s.name for s in hmsg.children] == [s.name for s in msg.segments], where
    # The MSH conveniences, against hl7apy's named access.
    chars = _chars(msg.encoding)
    comp = msg.encoding.component
    msh = hmsg.msh
    msh9 = msh.msh_9.to_er7(chars).split(comp)
    expected_type = msh9[0] + ("^" + msh9[1] if len(msh9) > 1 and msh9[1] else "")
    for what, ours, theirs in (
        ("message_type", msg.message_type, expected_type),
        ("control_id", msg.control_id, msh.msh_10.to_er7(chars)),
        ("version", msg.version, msh.msh_12.to_er7(chars).split(comp)[0]),
        ("processing_id", msg.processing_id, msh.msh_11.to_er7(chars).split(comp)[0]),
        ("sending_application", msg.segments[0].get(3), msh.msh_3.to_er7(chars).split(comp)[0]),
    ):
        if ours != theirs:
            outcome.mismatches.append(f"{where}: {what} {ours!r} != hl7apy {theirs!r}")
    return [_typed(hseg) for hseg in hmsg.children]


def _untyped(seg: Segment, version: str) -> dict[int, list[Any]]:
    """The segment read as a Z-segment: position -> repetitions (hl7apy Fields); MSH-1/2 left out.

    With no data type, hl7apy keeps every repetition, component and subcomponent in order."""
    enc = seg.encoding
    if version not in SUPPORTED_LIBRARIES:
        version = VERSIONS[0] if enc.truncation else "2.6"
    shift = 0
    line = "ZZZ" + seg.raw[3:]
    if seg.name in HEADER_SEGMENTS:  # "MSH|^~\\&|A|B" -> "ZZZ|A|B": ZZZ_1 is MSH-3
        parts = seg.raw.split(enc.field, 2)
        if len(parts) < 3:
            return {}
        line = "ZZZ" + enc.field + parts[2]
        shift = 2
    by_position: dict[int, list[Any]] = {}
    for hfield in parse_segment(line.strip(), version, _chars(enc), TOLERANT).children:
        by_position.setdefault(int(hfield.name.rsplit("_", 1)[1]) + shift, []).append(hfield)
    return by_position


@cache
def _escape_patterns(esc: str) -> tuple[re.Pattern[str], re.Pattern[str]]:
    """Escapes python-hl7 can check (its \\X\\ gives one char per byte: ASCII hex only), and
    the delimiter escapes, the only ones hl7apy's escaper writes."""
    e = re.escape(esc)
    checkable = rf"{e}(?:[FSTREHN]|\.br|\.sp|\.ce|\.fi|\.nf|X(?:[0-7][0-9A-Fa-f])+){e}"
    return re.compile(checkable), re.compile(rf"{e}[FSTRE]{e}")


def _leaf_text(sub: Any) -> str:
    value = sub.value
    return str(getattr(value, "value", value) or "")


def _check_values(
    seg: Segment, position: int, reps: list[Any], py_hl7: Any, outcome: _Outcome, where: str
) -> None:
    """Segment.get/components against each value of hl7apy's untyped reading; unescaped values
    against python-hl7's unescape and hl7apy's escaping."""
    enc = seg.encoding
    last = position == seg.field_count()
    checkable, delimiter_escape = _escape_patterns(enc.escape)
    for r, hfield in enumerate(reps, 1):
        components = seg.components(position, r)
        if hfield.to_er7(_chars(enc)).strip() and len(components) != len(hfield.children):
            outcome.mismatches.append(f"{where}~{r}: {len(components)} components")
        for c, hcomp in enumerate(hfield.children, 1):
            for s, hsub in enumerate(hcomp.children, 1):
                leaf = _leaf_text(hsub)
                ours = seg.get(position, c, s, r)
                outcome.values += 1
                if enc.escape not in leaf:
                    if ours != leaf and not (last and ours.rstrip() == leaf.rstrip()):
                        outcome.mismatches.append(f"{where}.{c}.{s}~{r}: {ours!r} != {leaf!r}")
                    continue
                outcome.unescaped += 1
                if checkable.sub("", leaf).count(enc.escape):
                    outcome.unescaped_unchecked += 1
                    continue
                expected = py_hl7.unescape(leaf, _APP_MAP)
                if ours != expected:
                    outcome.mismatches.append(
                        f"{where}.{c}.{s}~{r}: {ours!r} != python-hl7 {expected!r}"
                    )
                # hl7apy's escaper knows the delimiter escapes only.
                if not delimiter_escape.sub("", leaf).count(enc.escape):
                    escaped = ST(ours).to_er7(_chars(enc))
                    if escaped != leaf:
                        outcome.mismatches.append(
                            f"{where}.{c}.{s}~{r}: hl7apy escapes {ours!r} as {escaped!r}"
                        )


def _position(element: Any, index: int) -> int:
    """A typed child's position: from its name (CE_4), else its index (base data types)."""
    suffix = str(element.name or "").rsplit("_", 1)[-1]
    return int(suffix) if suffix.isdigit() else index


def _check_timestamps(
    seg: Segment, position: int, reps: list[Any], outcome: _Outcome, where: str
) -> None:
    """Where hl7apy read a DTM (v2.5+ typed reading), parse_ts must give its datetime."""
    for r, hfield in enumerate(reps, 1):
        for i, hcomp in enumerate(hfield.children, 1):
            for j, hsub in enumerate(hcomp.children, 1):
                value = getattr(hsub.value, "value", None)
                if type(hsub.value).__name__ == "DTM" and isinstance(value, datetime):  # not TM, DT
                    c, s = _position(hcomp, i), _position(hsub, j)
                    outcome.timestamps += 1
                    ours = parse_ts(seg.get(position, c, s, r))
                    if ours != value:
                        outcome.mismatches.append(f"{where}.{c}.{s}~{r}: {ours} != {value}")


def _compare_typed(
    seg: Segment, position: int, ours: str, reps: list[Any], outcome: _Outcome, where: str
) -> None:
    enc = seg.encoding
    chars = _chars(enc)
    if not all(_keeps_positions(hfield) for hfield in reps):
        outcome.typed_quirks["component past definition"] += 1
        return
    _check_timestamps(seg, position, reps, outcome, where)
    theirs = enc.repetition.join(hfield.to_er7(chars) for hfield in reps)
    if _canon(ours, enc) == _canon(theirs, enc):
        return
    if reps and reps[0].datatype in ("NM", "SI") and _numeric_equal(ours, theirs, enc):
        outcome.typed_quirks["numeric"] += 1
        return
    skip = _withdrawn_leading(reps[0]) if reps else 0
    if skip:
        # hl7apy writes such a field starting at its first defined component.
        shifted = enc.repetition.join(
            enc.component.join(rep.split(enc.component)[skip:])
            for rep in ours.split(enc.repetition)
            if all(not c.strip() for c in rep.split(enc.component)[:skip])
        )
        if _canon(shifted, enc) == _canon(theirs, enc):
            outcome.typed_quirks["withdrawn"] += 1
            return
    outcome.mismatches.append(f"{where}: reader {ours!r} != hl7apy typed {theirs!r}")


def _compare_text(text: str, outcome: _Outcome, where: str) -> None:
    msg = parse(text)
    assert msg.to_er7() == text, f"{where}: to_er7 does not give the text back"
    typed = _typed_message(text, msg, outcome, where)
    # MSH-7 in every version (hl7apy reads DTMs itself only from v2.5 on).
    msh7 = msg.segments[0].get(7)
    try:
        expected_time = datetime_factory(msh7, DTM).value
    except (HL7apyException, ValueError):
        expected_time = None
    outcome.timestamps += 1
    if parse_ts(msh7) != expected_time:
        outcome.mismatches.append(f"{where} MSH-7: {parse_ts(msh7)} != hl7apy {expected_time}")
    py_hl7 = hl7.parse(text)
    enc = msg.encoding
    chars = _chars(enc)
    for seg, typed_seg in zip(msg.segments, typed, strict=True):
        header = seg.name in HEADER_SEGMENTS
        untyped = _untyped(seg, msg.version)
        count = seg.field_count()
        beyond = [p for p in untyped if p > count]
        if beyond:
            outcome.mismatches.append(f"{where} {seg.name}: hl7apy has fields {beyond}")
        for position in range(1, count + 1):
            here = f"{where} {seg.name}-{position}"
            outcome.fields += 1
            ours = seg.field_raw(position)
            if position == count:
                ours = ours.rstrip()  # hl7apy strips the segment
            if header and position <= 2:
                theirs = typed_seg.fields[position][0].to_er7() if typed_seg else ours
                if ours != theirs or seg.get(position) != ours:
                    outcome.mismatches.append(f"{here}: {ours!r} != hl7apy {theirs!r}")
                continue
            reps = untyped.get(position, [])
            theirs = enc.repetition.join(hfield.to_er7(chars) for hfield in reps)
            if _canon(ours, enc) != _canon(theirs, enc):
                outcome.mismatches.append(f"{here}: reader {ours!r} != hl7apy untyped {theirs!r}")
            _check_values(seg, position, reps, py_hl7, outcome, here)
            if typed_seg is None:
                pass
            elif position in typed_seg.defined:
                reps = typed_seg.fields.get(position, [])
                _compare_typed(seg, position, ours, reps, outcome, here)
            elif ours.strip():
                outcome.typed_quirks["undefined field"] += 1
    outcome.messages += 1


@cache
def _compare_file(path: Path) -> _Outcome:
    outcome = _Outcome()
    texts = split_messages(decode_bytes(path.read_bytes()))
    assert texts, f"{path.name}: no message found"
    for index, text in enumerate(texts, 1):
        _compare_text(text, outcome, f"{path.name}#{index}")
    return outcome


@pytest.mark.slow  # hl7apy takes ~0.1 s a message; the whole set ~30 s
@pytest.mark.parametrize("path", _files())
def test_reader_agrees_with_hl7apy(path: Path) -> None:
    outcome = _compare_file(path)
    assert outcome.messages >= 1
    assert outcome.fields > 0
    assert outcome.mismatches == []


@pytest.mark.parametrize("path", _files())
def test_round_trip(path: Path) -> None:
    """parse(text).to_er7() gives the split text back, and the split text is the file's lines."""
    text = decode_bytes(path.read_bytes())
    messages = split_messages(text)
    for message in messages:
        assert parse(message).to_er7() == message
    unframed = text.lstrip("\ufeff").replace("\x0b", "\r").replace("\x1c", "\r")
    lines = [line.lstrip() for line in re.split(r"\r\n|\r|\n", unframed)]
    segments = [line for line in lines if line and line[:3] not in BATCH_SEGMENTS]
    assert [s for m in messages for s in m.split("\r")] == segments


# Shapes the corpus lacks, to show the fallbacks and comparisons work on them too.
QUIRKS = {
    "custom delimiters": "MSH#$%@!#LAB#HOSP#####ORU$R01#C1#P#2.5\rPID#1##A$B!C%D$E##X@F@Y@S@Z@T@W"
    "\rOBX#1#ST#X$Y##a@.br@b@H@c@N@",
    "5 encoding chars, v2.5 (hl7apy rejects)": "MSH|^~\\&#|LAB|H|||20240101||ORU^R01|1|P|2.5\r"
    "OBX|1|ST|X||9\\P\\9",
    "5 encoding chars, v2.8": "MSH|^~\\&#|LAB|H|||20240101||ORU^R01|1|P|2.8\rOBX|1|ST|X||9\\P\\9",
    "version hl7apy lacks": "MSH|^~\\&|LAB|H|||20240101||ORU^R01|1|P|2.9\rPID|1||X",
    "no version": "MSH|^~\\&|LAB|H|||20240101||ORU^R01|1|P\rPID|1||X",
    "bad date": "MSH|^~\\&|LAB|H|||2024013X||ORU^R01|1|P|2.5\rOBR|1||||||20241399",
    "Z-segment, unescaped backslash, hex": "MSH|^~\\&|LAB|H|||20240101||ORU^R01|1|P|2.5.1\r"
    "ZXY|1|a^b~c&d||\\H\\x\\N\\\rNTE|1||C:\\temp\\x a\\X41\\b\\XC3A9\\ \\.sp2\\",
    "ACK": "MSH|^~\\&|LAB|H|||20240101||ACK|1|P|2.5.1\rMSA|AA|1",
}


@pytest.mark.parametrize("text", list(QUIRKS.values()), ids=list(QUIRKS))
def test_reader_agrees_with_hl7apy_on_quirks(text: str) -> None:
    outcome = _Outcome()
    _compare_text(text, outcome, "quirk")
    assert outcome.mismatches == []
    assert outcome.fields > 0


@pytest.mark.slow
def test_corpus_is_covered() -> None:
    files = _corpus_files()
    if not files:
        if os.environ.get("CI") == "true":
            pytest.fail(f"HL7 corpus missing at {CORPUS}")
        pytest.skip(f"HL7 corpus not found at {CORPUS} (CI provides ../shared beside the clone)")
    outcomes = [_compare_file(path) for path in files]
    assert sum(o.messages for o in outcomes) >= CORPUS_SIZE
    assert sum(o.fields for o in outcomes) > 10_000
    assert sum(o.unescaped for o in outcomes) > 0
    assert sum(o.timestamps for o in outcomes) > 100
    # Messages hl7apy cannot take whole are few, and each is still compared segment by segment.
    rejected = [f for o in outcomes for f in o.fallbacks if "message rejected" in f]
    assert len(rejected) <= 5, rejected
