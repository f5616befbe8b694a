"""What `lisguard validate` counts while `lisguard check`'s loop runs (app.screen_files): a
FeedObserver that sees each message's reading and what screening made of it.

Pure: no I/O. Everything it holds is bounded whatever the feed's length (counting.py): counts
of a fixed set of outcomes, rules and recommendations; tables of days, message types, test codes,
candidates and problems capped at `Limits`; reservoirs of `sample_size` alerts per rule. What
screening itself holds (patient states, one entry a message for resends) is check's.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple

from lisguard.domain.alerts import Alert
from lisguard.domain.facts import Coded
from lisguard.domain.knowledge import KnowledgeBase
from lisguard.domain.recording import drug_of_codes
from lisguard.hl7v2.clinical import PHARMACY, coded_pair, field_codes, plain_pair
from lisguard.hl7v2.escapes import Encoding
from lisguard.hl7v2.printable import printable_message_type
from lisguard.hl7v2.reader import Message, Segment
from lisguard.intake import Reading
from lisguard.screening import Screened
from lisguard.validation.counting import BoundedTable, Reservoir
from lisguard.validation.lookalike import AREA_OF, DrugHint, LabHint, Lookalike

Pair = tuple[Coded, Coded]  # a coded element and its alternate triplet
ACK_OF = {"error": "AE", "rejected": "AR"}  # as serve answers them (README, Acknowledgements)
# Segments a reviewer needs to judge an alert; the patient's identity segments stay out of the
# report (the alert names the patient by MRN, which is enough to look the patient up).
_PRIVATE_SEGMENTS = frozenset({"PID", "PD1", "PV1", "PV2", "NK1", "GT1", "IN1", "IN2", "IN3"})
_MAX_SEGMENTS, _MAX_SEGMENT_CHARS = 30, 400


@dataclass(frozen=True)
class Limits:
    """Caps of the distinct-key tables (counting.BoundedTable): beyond them counts become
    approximate, and the report says by how much."""

    days: int = 4000  # ten years of MSH-7 dates
    types: int = 500  # message types (MSH-9), as /metrics caps them
    codes: int = 20_000  # distinct OBR-4 and OBX-3 elements, each table
    candidates: int = 5_000  # unmapped candidates, tests and drugs each
    problems: int = 1_000  # distinct reasons a message was not taken


@dataclass(frozen=True)
class Where:
    """Where something was first seen: enough for a reviewer to find the message."""

    file: str
    index: int
    message: str  # MSH-10

    def as_json(self) -> dict[str, Any]:
        return {"file": self.file, "index": self.index, "message": self.message}


@dataclass(frozen=True)
class LabCandidate:
    where: Where
    field: str  # "OBR-4" or "OBX-3"
    hint: LabHint
    under: str = ""  # OBX-3: the OBR-4 text it was reported under


@dataclass(frozen=True)
class DrugCandidate:
    where: Where
    field: str  # "RXE-2", "RXA-5", ...
    hint: DrugHint


class Collector:
    """The figures of one validation run, fed message by message (app.FeedObserver)."""

    def __init__(
        self, kb: KnowledgeBase, *, sample_size: int = 20, seed: int = 0, limits: Limits = Limits()
    ) -> None:
        self.kb = kb
        self.lookalike = Lookalike(kb)
        self.sample_size, self.seed, self.limits = sample_size, seed, limits
        self.messages = 0
        self.per_file: dict[str, int] = {}
        self.outcomes: Counter[str] = Counter()
        self.days: BoundedTable[str, None] = BoundedTable(limits.days)
        self.types: BoundedTable[str, None] = BoundedTable(limits.types)
        self.alerts_by_rule: Counter[str] = Counter()
        self.alerts_by_recommendation: Counter[str] = Counter()
        self.test_alerts = 0
        self.samples: dict[str, Reservoir[dict[str, Any]]] = {}
        # keyed by the field as sent (a str hashes once), noting the element it reads as
        self.orders: BoundedTable[str, Pair] = BoundedTable(limits.codes)
        self.results: BoundedTable[str, Pair] = BoundedTable(limits.codes)
        self.test_candidates: BoundedTable[tuple[str, Coded, Coded], LabCandidate] = (
            BoundedTable(limits.candidates)
        )
        self.drug_candidates: BoundedTable[Coded, DrugCandidate] = BoundedTable(limits.candidates)
        self.problems: BoundedTable[tuple[str, str, str, str], Where] = BoundedTable(
            limits.problems
        )
        self.file_problems: list[dict[str, str]] = []
        self._days_seen: dict[str, str] = {}
        # per message encoding (delimiters), per OBR-4/OBX-3 field as sent: what it reads as
        self._elements: dict[Encoding, dict[str, _Element]] = {}

    # ------------------------------------------------------------------ FeedObserver
    def message(self, path: Path, index: int, reading: Reading, result: Screened) -> None:
        self.messages += 1
        name = str(path)
        self.per_file[name] = self.per_file.get(name, 0) + 1
        self.outcomes[result.outcome] += 1
        msg = reading.message
        if msg is None:
            self.days.add("unknown")
            self.types.add("(unreadable)")
        else:
            self.days.add(self._day(msg.msh_value(7)))
            self.types.add(printable_message_type(msg.message_type))
        where = Where(name, index, result.control_id)
        if result.error:
            code = reading.error.code if reading.error is not None else ""
            key = (result.outcome, ACK_OF.get(result.outcome, "AE"), code, result.error)
            self.problems.add(key, where)
        for alert in result.alerts:
            self._alert(alert, reading, where)
        if msg is not None and result.outcome == "accepted":
            self._scan(msg, where)

    def file_problem(self, path: Path, error: str) -> None:
        self.file_problems.append({"file": str(path), "error": error})

    # ------------------------------------------------------------------ alerts
    def _alert(self, alert: Alert, reading: Reading, where: Where) -> None:
        rule = alert.rule.value
        self.alerts_by_rule[rule] += 1
        self.alerts_by_recommendation.update(r.value for r in alert.recommendations)
        if alert.test:
            self.test_alerts += 1
        reservoir = self.samples.get(rule)
        if reservoir is None:
            # one generator a rule: a rule's sample does not depend on the other rules' alerts
            reservoir = self.samples[rule] = Reservoir(self.sample_size, f"{self.seed}/{rule}")
        reservoir.offer(partial(_sample, alert, reading.message, where))

    # ------------------------------------------------------------------ codes
    def _scan(self, msg: Message, where: Where) -> None:
        """Count OBR-4 and OBX-3 elements; look for unmapped candidates there and in the
        pharmacy segments' drug fields (the fields the translator reads, read its way)."""
        elements = self._elements.get(msg.encoding)
        if elements is None or len(elements) >= _ELEMENTS_MAX:
            elements = self._elements[msg.encoding] = {}
        order: _Element | None = None
        order_areas: frozenset[str] = frozenset()  # what the current order is, or looks like
        flagged_order = False
        for seg in msg.segments[1:]:
            name = seg.name
            if name == "OBX":
                head = seg.raw.split(seg.encoding.field, 4)
                raw = head[3] if len(head) > 3 else ""
                element = elements.get(raw)
                if element is None:
                    element = elements[raw] = self._element(_obx3(seg, raw))
                self.results.add(raw, element.pair)
                if element.marker:
                    # a result naming CD38/CD138 under an order lisguard does not know and that
                    # looks like nothing else: that order is a plasma-cell flow panel
                    if order is not None and not order_areas and not flagged_order:
                        hint = self.lookalike.order_by_markers(*order.pair)
                        if hint is not None:
                            self._test_candidate("OBR-4", order.pair, hint, where)
                            flagged_order = True
                    continue
                hint = element.hint
                # a result of the kind its order is (known or a candidate) is part of that
                # order: "IMFIX INTERP" under "IMFIX SERUM", "BB COMMENT" under a type and screen
                if hint is not None and hint.area not in order_areas:
                    code = order.pair[0] if order is not None else None
                    under = (code.text or code.code) if code is not None else ""
                    self._test_candidate("OBX-3", element.pair, hint, where, under)
            elif name == "OBR":
                raw = seg.field_raw(4)
                element = elements.get("\x1fOBR" + raw)
                if element is None:
                    element = elements["\x1fOBR" + raw] = self._element(coded_pair(seg, 4))
                order = element
                self.orders.add(raw, element.pair)
                order_areas = element.areas
                flagged_order = element.hint is not None
                if element.hint is not None:
                    self._test_candidate("OBR-4", element.pair, element.hint, where)
            elif name in PHARMACY:
                self._pharmacy(seg, name, where)

    def _element(self, pair: Pair) -> _Element:
        look = self.lookalike
        hint = look.test(*pair)
        areas = {AREA_OF.get(c, "other") for c in look.categories(*pair)}
        if hint is not None:
            areas.add(hint.area)
        return _Element(pair, frozenset(areas), hint, look.is_marker(*pair))

    def _test_candidate(
        self, field: str, pair: Pair, hint: LabHint, where: Where, under: str = ""
    ) -> None:
        key = (field, *pair)
        if key not in self.test_candidates:
            self.test_candidates.add(key, LabCandidate(where, field, hint, under))
        else:
            self.test_candidates.add(key)

    def _pharmacy(self, seg: Segment, name: str, where: Where) -> None:
        number = PHARMACY[name][0]
        codes = field_codes(seg, number)
        kb = self.kb
        if not codes or drug_of_codes(kb, codes) is not None:
            return
        if any(kb.drug_for_code(c) is not None for c in codes):
            return  # a disabled drug: the site switched it off
        for coded in codes:
            hint = self.lookalike.drug(coded)
            if hint is not None:
                self.drug_candidates.add(coded, DrugCandidate(where, f"{name}-{number}", hint))
                return

    def _day(self, raw: str) -> str:
        """MSH-7's date as YYYY-MM-DD, "unknown" when it has none."""
        head = raw[:8]
        found = self._days_seen.get(head)
        if found is None:
            ok = len(head) == 8 and head.isdigit() and "01" <= head[4:6] <= "12"
            ok = ok and "01" <= head[6:8] <= "31"
            found = f"{head[:4]}-{head[4:6]}-{head[6:]}" if ok else "unknown"
            if len(self._days_seen) < 10_000:
                self._days_seen[head] = found
        return found


class _Element(NamedTuple):
    """An OBR-4 or OBX-3 as read once: the element, what it is or looks like, and whether it
    names a plasma-cell flow marker."""

    pair: Pair
    areas: frozenset[str]
    hint: LabHint | None
    marker: bool


_ELEMENTS_MAX = 50_000


def _obx3(seg: Segment, raw: str) -> Pair:
    """OBX-3 as the translator reads it, from its raw field (as lisguard.hl7v2.relevance)."""
    enc = seg.encoding
    if enc.repetition in raw or enc.escape in raw or enc.subcomponent in raw:
        return coded_pair(seg, 3)
    return plain_pair(raw, enc.component)


def _sample(alert: Alert, msg: Message | None, where: Where) -> dict[str, Any]:
    """One alert for the reviewer: the alert as check prints it (without the patient's name
    and date of birth), where it was raised, and the message's segments but the patient's."""
    data = alert.to_json_dict()
    data.pop("patient_name", None)
    data.pop("birth_date", None)
    segments: list[str] = []
    if msg is not None:
        shown = [s.raw for s in msg.segments if s.name not in _PRIVATE_SEGMENTS]
        segments = [
            s if len(s) <= _MAX_SEGMENT_CHARS else s[:_MAX_SEGMENT_CHARS] + " …"
            for s in shown[:_MAX_SEGMENTS]
        ]
        if len(shown) > _MAX_SEGMENTS:
            segments.append(f"… {len(shown) - _MAX_SEGMENTS} more segments")
    return {"alert": data, **where.as_json(), "segments": segments}
