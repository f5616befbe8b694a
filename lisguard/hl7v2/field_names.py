"""A message as an interface analyst reads it: each segment's fields, numbered and named.

Names come from hl7apy's copy of the HL7 v2 standard (versions 2.1 to 2.8.2), looked up by the
message's own MSH-12: "PID-3 Patient Identifier List (CX)", with the components of composite
fields ("ID Number", "Assigning Authority", ...). A version hl7apy does not have is named as the
nearest one it has (2.4.1 as 2.4) or, failing that, as 2.5.1, and says so (`names_from`); a
Z-segment or a segment the version does not define gets numbers only.

The splitting is tolerant on purpose: dead letters are messages the reader refused, and the
analyst needs to see exactly those. Values are shown as they are on the wire (escape sequences
included), never unescaped or trimmed.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any, NamedTuple

import hl7apy
from hl7apy.exceptions import ChildNotFound, UnsupportedVersion

FALLBACK_VERSION = "2.5.1"
_HEADERS = frozenset({"MSH", "BHS", "FHS"})
# word forms the standard writes in capitals
# fmt: off
_ACRONYMS = frozenset({
    "ID", "PID", "OBX", "OBR", "ORC", "MSH", "HL7", "ISO", "SSN", "NDC", "OID", "URL", "UID",
    "PV1", "PV2", "RXA", "RXE", "RXO", "RXD", "RXG", "RXR", "TQ1", "MRG", "NTE", "SPM", "EVN",
    "CE", "CWE", "CX", "HD", "XPN", "EI", "TS", "DTM", "BPX", "BPO", "BTX", "PD1", "NK1", "ABO",
    "MSA", "ERR", "RXC", "AL1", "DG1", "IN1", "GT1", "PR1", "FT1", "SFT",
})
# datatype codes some versions append to a component's name (ID_NUMBER_ST, FACILITY_HD)
_DATATYPE_SUFFIXES = frozenset({"ST", "HD", "IS", "NM", "CE", "TS", "DT", "TM", "SI", "TX", "FT"})
_SMALL_WORDS = frozenset({"of", "and", "or", "the", "for", "to", "in", "by", "on", "at", "a"})
# fmt: on
# what each common segment is (HL7 v2 chapter titles); others show their name alone
SEGMENT_TITLES = {
    "MSH": "Message Header",
    "EVN": "Event Type",
    "PID": "Patient Identification",
    "PD1": "Patient Additional Demographic",
    "PV1": "Patient Visit",
    "PV2": "Patient Visit - Additional Information",
    "NK1": "Next of Kin",
    "MRG": "Merge Patient Information",
    "ORC": "Common Order",
    "OBR": "Observation Request",
    "OBX": "Observation/Result",
    "NTE": "Notes and Comments",
    "SPM": "Specimen",
    "TQ1": "Timing/Quantity",
    "RXO": "Pharmacy/Treatment Order",
    "RXE": "Pharmacy/Treatment Encoded Order",
    "RXD": "Pharmacy/Treatment Dispense",
    "RXG": "Pharmacy/Treatment Give",
    "RXA": "Pharmacy/Treatment Administration",
    "RXR": "Pharmacy/Treatment Route",
    "RXC": "Pharmacy/Treatment Component Order",
    "BPO": "Blood Product Order",
    "BPX": "Blood Product Dispense Status",
    "BTX": "Blood Product Transfusion/Disposition",
    "AL1": "Patient Allergy Information",
    "DG1": "Diagnosis",
    "IN1": "Insurance",
    "GT1": "Guarantor",
    "MSA": "Message Acknowledgment",
    "ERR": "Error",
    "SFT": "Software Segment",
    "FT1": "Financial Transaction",
    "BHS": "Batch Header",
    "BTS": "Batch Trailer",
    "FHS": "File Header",
    "FTS": "File Trailer",
    "QRD": "Original-Style Query Definition",
    "SCH": "Scheduling Activity Information",
    "TXA": "Transcription Document Header",
}


class FieldName(NamedTuple):
    name: str  # "Patient Identifier List"
    datatype: str  # "CX"
    components: tuple[str, ...]  # names of the components, in order ("ID Number", ...)


def names_version(declared: str) -> tuple[str, bool]:
    """The hl7apy version whose names to use for MSH-12 `declared` (its first component), and
    whether that is the declared version itself."""
    wanted = declared.split("^", 1)[0].strip()
    parts = wanted.split(".")
    while parts and parts[0]:
        candidate = ".".join(parts)
        if candidate in hl7apy.SUPPORTED_LIBRARIES:
            return candidate, candidate == wanted
        parts = parts[:-1]
    return FALLBACK_VERSION, False


def readable(name: str) -> str:
    """hl7apy's SET_ID_PID as the standard writes it: Set ID PID; DEGREE_E_G_MD: Degree (e.g.
    MD); ID_NUMBER_ST (a version's datatype suffix): ID Number."""
    head, eg, example = name.partition("_E_G_")
    if eg:
        return f"{readable(head)} (e.g. {example.replace('_', ' ')})"
    words = [w for w in name.replace("_S_", "'S_").split("_") if w]
    if len(words) > 1 and words[-1] in _DATATYPE_SUFFIXES:
        words = words[:-1]
    out = []
    for i, word in enumerate(words):
        if word in _ACRONYMS:
            out.append(word)
        elif i and word.lower() in _SMALL_WORDS:
            out.append(word.lower())
        else:
            out.append(word.capitalize())
    return " ".join(out).replace(" 'S", "'s").replace("'S ", "'s ")


@lru_cache(maxsize=512)
def segment_fields(segment: str, version: str) -> tuple[FieldName, ...] | None:
    """The named fields of a segment in a version (index 0 = field 1); None when the version
    does not define the segment (a Z-segment, a typo, a segment of a later version)."""
    if not re.fullmatch(r"[A-Z][A-Z0-9]{2}", segment) or segment.startswith("Z"):
        return None
    try:
        reference = hl7apy.load_reference(segment, "Segment", version)
    except (ChildNotFound, UnsupportedVersion, KeyError, ValueError):
        return None
    fields = []
    for _child, (kind, children, datatype, long_name, *_rest), _card, _cls in reference[1]:
        components: tuple[str, ...] = ()
        if kind == "sequence" and children:
            components = tuple(readable(c[1][3]) for c in children)
        fields.append(FieldName(readable(long_name or ""), datatype or "", components))
    return tuple(fields)


def _delimiters(first_line: str) -> tuple[str, str, str]:
    """(field, component, repetition) separators, from MSH-1/2 when the message has them."""
    if first_line[:3] in _HEADERS and len(first_line) > 3:
        sep = first_line[3]
        encoding = first_line[4:].split(sep, 1)[0]
        component = encoding[0] if encoding else "^"
        repetition = encoding[1] if len(encoding) > 1 else "~"
        return sep, component, repetition
    return "|", "^", "~"


def segment_table(text: str) -> dict[str, Any]:
    """Every line of the message as {index, name, title, known, fields: [{number, name,
    datatype, value, components}]} with the version the names are from. Empty fields are left
    out (their numbers show the gaps); a line that is no segment keeps its text as field 0."""
    lines = [line for line in re.split(r"\r\n|\r|\n", text) if line.strip()]
    if not lines:
        return {"version": "", "names_from": FALLBACK_VERSION, "exact": False, "segments": []}
    sep, component, repetition = _delimiters(lines[0])
    first = lines[0].split(sep)
    declared = first[11] if lines[0][:3] in _HEADERS and len(first) > 11 else ""
    version, exact = names_version(declared)
    segments = []
    for index, line in enumerate(lines, 1):
        name = line[:3]
        values = line.split(sep)
        if name in _HEADERS:
            values = [name, sep, *values[1:]]  # MSH-1 is the separator itself
        known = segment_fields(name, version)
        if not re.fullmatch(r"[A-Z][A-Z0-9]{2}", values[0]):
            segments.append(
                {
                    "index": index,
                    "name": "",
                    "title": "not a segment",
                    "known": False,
                    "fields": [
                        {"number": 0, "name": "", "datatype": "", "value": line, "components": []}
                    ],
                }
            )
            continue
        fields = []
        for number, value in enumerate(values[1:], 1):
            if value == "":
                continue
            named = known[number - 1] if known is not None and number <= len(known) else None
            fields.append(
                {
                    "number": number,
                    "name": named.name if named else "",
                    "datatype": named.datatype if named else "",
                    "value": value,
                    "components": _components(value, named, component, repetition)
                    if not (name in _HEADERS and number <= 2)
                    else [],
                }
            )
        segments.append(
            {
                "index": index,
                "name": name,
                "title": SEGMENT_TITLES.get(name, "Site-defined segment" if name[0] == "Z" else ""),
                "known": known is not None,
                "fields": fields,
            }
        )
    return {"version": declared, "names_from": version, "exact": exact, "segments": segments}


def _components(
    value: str, named: FieldName | None, component: str, repetition: str
) -> list[dict[str, Any]]:
    """The non-empty components of each repetition of a composite field, named."""
    if component not in value:
        return []
    out = []
    for rep, text in enumerate(value.split(repetition), 1):
        for number, part in enumerate(text.split(component), 1):
            if not part:
                continue
            names = named.components if named else ()
            out.append(
                {
                    "repetition": rep,
                    "number": number,
                    "name": names[number - 1] if number <= len(names) else "",
                    "value": part,
                }
            )
    return out
