"""The naive pipeline: parse every message with hl7apy, then evaluate the same rules.

What a team would write first with the best-known Python HL7 library: `parse_message()` with its
defaults (message structure and groups resolved), the facts pulled out of hl7apy's element tree
(segments, field repetitions, components, subcomponents as hl7apy built them), and then
lisguard's own translator and rules engine over those facts, with patient state in a dict.

It is kept honest in both directions: the clinical logic is lisguard's, so the two pipelines
raise the same alerts (checked in the run), and it stores nothing, so it pays for no commit.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from typing import Any

from hl7apy.parser import parse_message

from lisguard.domain.engine import evaluate, patient_keys
from lisguard.domain.knowledge import KnowledgeBase
from lisguard.domain.patient import PatientState
from lisguard.hl7v2.clinical import to_clinical
from lisguard.hl7v2.escapes import Encoding, unescape
from lisguard.services import CLINICAL_FAMILIES

_ENCODING = Encoding("|", "^", "~", "\\", "&", None)


def _position(name: str) -> int:
    """hl7apy names a field SEG_n."""
    _, _, n = name.rpartition("_")
    return int(n) if n.isdigit() else 1


def _value(text: str) -> str:
    return unescape(text, _ENCODING) if "\\" in text else text


class ApySegment:
    """An hl7apy segment behind the accessors lisguard's translator uses. Fields and their
    repetitions are hl7apy's; each repetition's ER7 is split into components once, here (going
    through hl7apy's component objects instead costs more than the parse itself)."""

    def __init__(self, segment: Any) -> None:
        self.name: str = segment.name
        self.fields: dict[int, list[list[list[str]]]] = {}  # field -> reps -> comps -> subs
        self.raw: dict[int, str] = {}
        for fld in segment.children:
            number = _position(fld.name)
            text: str = fld.to_er7()
            if self.name == "MSH" and number <= 2:
                comps = [[text]]
            else:
                comps = [c.split("&") for c in text.split("^")]
            self.fields.setdefault(number, []).append(comps)
            self.raw[number] = "~".join(filter(None, (self.raw.get(number), text)))

    encoding = _ENCODING

    def field_raw(self, field: int) -> str:
        return self.raw.get(field, "")

    def plain_fields(self) -> None:
        return None  # always through the accessors below

    def first_subcomponents(self, field: int, repetition: int = 1) -> list[str]:
        reps = self.fields.get(field, [])
        if repetition > len(reps):
            return []
        return [_value(subs[0]) for subs in reps[repetition - 1]]

    def repetitions(self, field: int) -> list[str]:
        return self.raw[field].split("~") if field in self.raw else []

    def components(self, field: int, repetition: int = 1) -> list[str]:
        reps = self.fields.get(field, [])
        if repetition > len(reps):
            return []
        return [_value("&".join(subs)) for subs in reps[repetition - 1]]

    def get(
        self, field: int, component: int = 1, subcomponent: int = 1, repetition: int = 1
    ) -> str:
        reps = self.fields.get(field, [])
        if repetition > len(reps) or component > len(reps[repetition - 1]):
            return ""
        subs = reps[repetition - 1][component - 1]
        return _value(subs[subcomponent - 1]) if subcomponent <= len(subs) else ""


class ApyMessage:
    def __init__(self, message: Any) -> None:
        self.segments = [ApySegment(s) for s in _segments(message)]
        msh = self.segments[0]
        self.control_id = msh.get(10)
        code, trigger = msh.get(9, 1), msh.get(9, 2)
        self.message_type = f"{code}^{trigger}" if trigger else code
        self.version = msh.get(12)
        self.processing_id = msh.get(11, 1)


def _segments(element: Any) -> Iterator[Any]:
    for child in element.children:
        if type(child).__name__ == "Segment":
            yield child
        else:
            yield from _segments(child)


def run(messages: Sequence[str], kb: KnowledgeBase) -> tuple[float, int, int]:
    """(messages per second, alerts raised, messages hl7apy could not parse)."""
    states: dict[str, PatientState] = {}
    alerts = failed = 0
    started = time.perf_counter()
    for text in messages:
        try:
            message = ApyMessage(parse_message(text))
        except Exception:  # hl7apy refuses what it does not know; count it and go on
            failed += 1
            continue
        if message.message_type.partition("^")[0] not in CLINICAL_FAMILIES:
            continue
        clinical = to_clinical(message)  # type: ignore[arg-type]
        keys = patient_keys(clinical)
        outcome = evaluate(clinical, {k: states[k] for k in keys if k in states}, kb)
        states.update(outcome.states)
        alerts += len(outcome.alerts)
    seconds = time.perf_counter() - started
    return len(messages) / seconds, alerts, failed
