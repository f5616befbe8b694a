"""Whether a message can matter to the rules, read off its segments without translating it.

Most of a lab feed is a CBC or a chemistry panel for someone, an ADT update, a pharmacy message
for another drug: `touches_state` says no to all of them, but only after `to_clinical` has built
every observation. `may_touch_state` answers from the raw segments first, at a fraction of the
cost, and only ever errs towards "maybe" (then the caller translates and asks `touches_state`).

Why it never says "no" wrongly: `touches_state` is true only for
1. a merge, which needs an MRG segment: any MRG says "maybe";
2. a known drug, named in the code field of a pharmacy segment (RXO/RXE/RXD/RXG/RXA): that
   field is read with the translator's own `field_codes` and looked up as the engine does
   (`drug_of_codes`);
3. a test the knowledge base knows, in OBR-4 or OBX-3: read with the translator's `coded_pair`
   and categorised by the same knowledge base;
4. a drug mentioned in narrative: an NTE (read with the translator's `nte_text`) or OBR-13
   scanned with the same `mentions`; an OBX of a text type (TX/ST/FT) says "maybe" outright;
5. an order question about a drug: an OBX whose OBX-3 names one (`drugs_asked_about`);
6. a blood product order, dispense or transfusion: any BPO, BPX or BTX says "maybe";
7. a link or unlink (A24/A37): a second PID says "maybe";
8. a demographics update (ADT A08/A31) with a PID: "maybe" (a known patient's name or date of
   birth may change).
tests/integration/test_relevance.py checks the implication on every sample, corpus and benchmark
message and on generated ones.
"""

from __future__ import annotations

from lisguard.domain.engine import NARRATIVE_TYPES, drug_of_codes
from lisguard.domain.knowledge import KnowledgeBase
from lisguard.hl7v2.clinical import (
    BLOOD_PRODUCT,
    DEMOGRAPHIC_TRIGGERS,
    PHARMACY,
    TEXT_VALUE_TYPES,
    coded_pair,
    field_codes,
    nte_text,
    plain_pair,
)
from lisguard.hl7v2.reader import Message, Segment

# OBX-2 values whose OBX-5 the translator keeps as free text, or the engine scans for drugs
_TEXT_TYPES = tuple(sorted(TEXT_VALUE_TYPES | NARRATIVE_TYPES))
_NOT_TEXT = frozenset({"NM", "CE", "CWE", "CNE", "SN", "DT", "DTM", "TS", "NA", "ED", "RP"})


_CACHE_MAX = 16384


class Relevance:
    """may_touch_state for one knowledge base, remembering its answer for each OBX-2/OBX-3 pair
    seen (a feed repeats the same few hundred observation codes; the answer depends on nothing
    else, given the knowledge base and the delimiters)."""

    __slots__ = ("_obx", "kb")

    def __init__(self, kb: KnowledgeBase) -> None:
        self.kb = kb
        self._obx: dict[tuple[str, ...], bool] = {}

    def may_touch_state(self, message: Message) -> bool:
        """False only when `touches_state(to_clinical(message), kb)` is certainly False."""
        kb = self.kb
        categorize = kb.categorize
        family, _, trigger = message.message_type.partition("^")
        demographics = family == "ADT" and trigger in DEMOGRAPHIC_TRIGGERS
        pids = 0
        for seg in message.segments[1:]:
            name = seg.name
            if name == "OBX":  # most of a feed: OBX-2 and OBX-3 from one short split
                enc = seg.encoding
                head = seg.raw.split(enc.field, 4)
                key = (
                    head[2] if len(head) > 2 else "",
                    head[3] if len(head) > 3 else "",
                    enc.component,
                    enc.repetition,
                    enc.escape,
                    enc.subcomponent,
                )
                maybe = self._obx.get(key)
                if maybe is None:
                    maybe = self._obx_maybe(seg, key[0], key[1])
                    if len(self._obx) >= _CACHE_MAX:
                        self._obx.clear()
                    self._obx[key] = maybe
                if maybe:
                    return True
            elif name == "OBR":
                code, alt = coded_pair(seg, 4)
                if categorize(code) or categorize(alt) or _mentions_a_drug(kb, seg.get(13).strip()):
                    return True
            elif name == "NTE":
                if _mentions_a_drug(kb, nte_text(seg)):
                    return True
            elif name in PHARMACY:
                if drug_of_codes(kb, field_codes(seg, PHARMACY[name][0])) is not None:
                    return True
            elif name == "MRG" or name in BLOOD_PRODUCT:
                return True
            elif name == "PID":
                pids += 1
                if pids > 1 or demographics:
                    return True
        return False

    def _obx_maybe(self, seg: Segment, value_type: str, raw: str) -> bool:
        enc = seg.encoding
        if value_type and _may_be_text(value_type, enc.escape):
            return True
        if enc.repetition in raw or enc.escape in raw or enc.subcomponent in raw:
            code, alt = coded_pair(seg, 3)
        else:
            code, alt = plain_pair(raw, enc.component)  # what coded_pair does with it
        kb = self.kb
        return bool(kb.categorize(code) or kb.categorize(alt) or kb.drugs_asked_about(code, alt))


def may_touch_state(message: Message, kb: KnowledgeBase) -> bool:
    """Relevance(kb).may_touch_state(message), for one message."""
    return Relevance(kb).may_touch_state(message)


def _mentions_a_drug(kb: KnowledgeBase, text: str) -> bool:
    return bool(text) and any(m.drug.enabled for m in kb.mentions(text))


def _may_be_text(raw: str, escape: str) -> bool:
    """Whether OBX-2 may read as TX, ST or FT: any of them anywhere in it, or an escape. (The
    type the translator reads is a piece of the raw field, stripped and upper-cased; str.upper
    maps character by character, so that piece upper-cased is a piece of `raw.upper()`.)"""
    if raw in _NOT_TEXT:
        return False
    upper = raw.upper()
    return escape in raw or any(t in upper for t in _TEXT_TYPES)
