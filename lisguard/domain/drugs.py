"""Finding a drug in a pharmacy code, a drug name, or a sentence someone wrote.

Everything is compiled once when the knowledge base is built: one alternation of every name and
alias (most specific first, word-bounded, case-insensitive), one code table. The per-message work
is a dict lookup or a single regex scan.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import datetime
from typing import NamedTuple

from lisguard.domain.facts import Coded
from lisguard.domain.kb_models import Drug, InterpretationFile
from lisguard.domain.mentions import DateReader, MedicationContextReader, Negation

# Separator allowed between the words of a multi-word drug name: spaces, hyphens, slashes, "+",
# "&", commas, parentheses and the words "and"/"with" ("daratumumab and hyaluronidase-fihj" also
# matches "DARATUMUMAB-HYALURONIDASE-FIHJ" and "daratumumab/hyaluronidase"; "Rho D immune
# globulin" matches "RHO(D) IMMUNE GLOBULIN").
_NAME_SEP = r"(?:[\s\-/+&,()]|\band\b|\bwith\b)+"
_ALIAS_SEP = r"[\s\-]?"
_WORD = re.compile(r"[a-z0-9]+")
_LEFT = r"(?<![A-Za-z0-9])"
_RIGHT = r"(?![A-Za-z0-9])"

NDC_SYSTEMS = frozenset({"NDC", "N4", "NDC11", "NDC10", "HL70396-NDC"})
RXNORM_SYSTEMS = frozenset({"RXNORM", "RXN", "RX", "RXCUI"})
CVX_SYSTEMS = frozenset({"CVX", "HL70292"})
# Systems whose codes are never NDC/HCPCS even when shaped like one.
_OTHER_SYSTEMS = frozenset({"LN", "LOINC", "SCT", "SNM", "SNOMED", "SNOMEDCT", "ICD10", "I10"})

_CACHE_MAX = 8192
_NDC_HYPHENATED = re.compile(r"(\d{4,5})-(\d{3,4})(?:-(\d{1,2}))?")


class DrugMention(NamedTuple):
    """A drug named in free text, the words that named it, and the date the sentence gives it
    ("discontinued 2019": 2019-12-31), None when it gives none."""

    drug: Drug
    matched: str
    dated: datetime | None = None


def ndc_key(labeler: str, product: str) -> str:
    """The 9-digit labeler+product of the 11-digit (5-4-2) NDC."""
    return labeler.zfill(5) + product.zfill(4)


def ndc_candidates(code: str, *, declared: bool) -> list[str]:
    """Labeler+product keys a code may stand for; [] when it is not shaped like an NDC.

    Hyphenated codes are unambiguous (4-4-2, 5-3-2, 5-4-1, 5-4-2, or labeler-product alone).
    An 11-digit string is 5-4-2. A 10-digit string is ambiguous: all three readings are returned
    and the caller keeps those that name a known product. Shorter digit strings (labeler+product
    only) are accepted only when the coding system says NDC.
    """
    code = code.strip()
    m = _NDC_HYPHENATED.fullmatch(code)
    if m is not None:
        return [ndc_key(m.group(1), m.group(2))]
    digits = code.replace(" ", "")
    if not digits.isdigit():
        return []
    if len(digits) == 11:
        return [digits[:9]]
    if len(digits) == 10:
        return [
            ndc_key(digits[:4], digits[4:8]),  # 4-4-2
            ndc_key(digits[:5], digits[5:8]),  # 5-3-2
            ndc_key(digits[:5], digits[5:9]),  # 5-4-1
        ]
    if declared and len(digits) == 9:
        return [digits]
    if declared and len(digits) == 8:
        return [ndc_key(digits[:4], digits[4:]), ndc_key(digits[:5], digits[5:])]
    return []


def _system(coded: Coded) -> str:
    system = coded.system.strip().upper()
    if "RXNORM" in system:
        return "RXNORM"
    if "NDC" in system:
        return "NDC"
    if "LOINC" in system:
        return "LN"
    return system


def _name_regex(name: str) -> str:
    words = [w for w in _WORD.findall(name.lower()) if w not in ("and", "with")]
    return _NAME_SEP.join(re.escape(w) for w in words)


def _alias_regex(alias: str) -> str:
    return _ALIAS_SEP.join(re.escape(w) for w in re.split(r"[\s\-]+", alias.strip().lower()))


class DrugMatcher:
    def __init__(self, drugs: Iterable[Drug], interpretation: InterpretationFile) -> None:
        self._ndc: dict[str, Drug] = {}
        self._rxnorm: dict[str, Drug] = {}
        self._hcpcs: dict[str, Drug] = {}
        self._cvx: dict[str, Drug] = {}
        self._local: dict[str, Drug] = {}
        # (specificity, regex, drug, needs medication context) for every name and alias
        entries: list[tuple[tuple[int, int], str, Drug, bool]] = []
        first_words: set[str] = set()
        for drug in drugs:
            for ndc in drug.ndc:
                labeler, product = ndc.split("-")[:2]
                self._ndc[ndc_key(labeler, product)] = drug
            self._rxnorm.update((c, drug) for c in drug.rxnorm)
            self._hcpcs.update((c.upper(), drug) for c in drug.hcpcs)
            self._cvx.update((c.lstrip("0") or "0", drug) for c in drug.cvx)
            self._local.update((c.strip().upper(), drug) for c in drug.local_codes)
            for name in drug.names():
                words = _WORD.findall(name.lower())
                first_words.add(words[0])
                entries.append(((len(words), len(name)), _name_regex(name), drug, False))
            for alias in (*drug.text_aliases, *drug.context_aliases):
                words = _WORD.findall(alias.lower())
                first_words.add(words[0])
                contextual = alias in drug.context_aliases
                entries.append(((len(words), len(alias)), _alias_regex(alias), drug, contextual))
        # Most specific first: at any position the first alternative that matches wins, so
        # "Darzalex Faspro" is tried before "Darzalex", "dara sc" before "dara".
        entries.sort(key=lambda e: e[0], reverse=True)
        self._groups: dict[str, tuple[tuple[int, int], Drug]] = {}
        self._contextual: set[str] = set()
        parts = []
        for i, (spec, rx, drug, contextual) in enumerate(entries):
            group = f"d{i}"
            self._groups[group] = (spec, drug)
            if contextual:
                self._contextual.add(group)
            parts.append(f"(?P<{group}>{rx})")
        alternation = "|".join(parts) if parts else r"(?!x)x"
        self._names = re.compile(f"{_LEFT}(?:{alternation}){_RIGHT}", re.IGNORECASE)
        self._negation = Negation(interpretation.negation)
        self._dates = DateReader(interpretation.mention_dates)
        self._context = MedicationContextReader(interpretation.medication_context)
        self._text_cache: dict[str, Drug | None] = {}
        self._code_cache: dict[Coded, Drug | None] = {}
        # Every name starts with one of these (lower-cased): a text containing none of them names
        # no drug, and a substring test is far cheaper than the regex scan.
        self._starts = tuple(
            sorted(w for w in first_words if not any(o != w and o in w for o in first_words))
        )

    def _may_name_a_drug(self, text: str) -> bool:
        lower = text.lower()
        return any(w in lower for w in self._starts)

    # ------------------------------------------------------------------ codes
    def for_code(self, coded: Coded) -> Drug | None:
        try:
            return self._code_cache[coded]
        except KeyError:
            pass
        code = coded.code.strip()
        drug = self._by_code(code, _system(coded)) if code else None
        if drug is None and coded.text:
            drug = self.for_text(coded.text)
        if len(self._code_cache) > _CACHE_MAX:
            self._code_cache.clear()
        self._code_cache[coded] = drug
        return drug

    def _by_code(self, code: str, system: str) -> Drug | None:
        upper = code.upper()
        local = self._local.get(upper)
        if local is not None:
            return local
        if system in RXNORM_SYSTEMS:
            return self._rxnorm.get(code)
        if system in CVX_SYSTEMS:  # a bare number: only ever read as CVX when it says so
            return self._cvx.get(code.lstrip("0") or "0")
        if system not in _OTHER_SYSTEMS:
            # A HCPCS Level II code (J9145) is unmistakable whatever system a feed labels it with.
            hcpcs = self._hcpcs.get(upper)
            if hcpcs is not None:
                return hcpcs
            declared = system in NDC_SYSTEMS
            found = {
                self._ndc[k] for k in ndc_candidates(code, declared=declared) if k in self._ndc
            }
            if len(found) == 1:
                return found.pop()
        return None

    # ------------------------------------------------------------------ names
    def for_text(self, text: str) -> Drug | None:
        """The most specific drug a drug name names: the match with the most words wins."""
        try:
            return self._text_cache[text]
        except KeyError:
            pass
        best: tuple[tuple[int, int], Drug] | None = None
        matches = self._names.finditer(text) if self._may_name_a_drug(text) else ()
        for m in matches:
            assert m.lastgroup is not None
            spec, drug = self._groups[m.lastgroup]
            if best is None or spec > best[0]:
                best = (spec, drug)
        found = best[1] if best else None
        if len(self._text_cache) > _CACHE_MAX:
            self._text_cache.clear()
        self._text_cache[text] = found
        return found

    def named_in(self, text: str) -> list[Drug]:
        """Every drug a text names, once each, in order, negated or not (an order question
        names the drugs it asks about)."""
        if not self._may_name_a_drug(text):
            return []
        found: dict[str, Drug] = {}
        for m in self._names.finditer(text):
            assert m.lastgroup is not None
            drug = self._groups[m.lastgroup][1]
            found.setdefault(drug.id, drug)
        return list(found.values())

    def mentions(self, text: str, now: datetime | None = None) -> list[DrugMention]:
        """Non-negated drug mentions in free text, one per drug, in order of appearance, each
        with the date its sentence states (never after `now`, the message time)."""
        if not text or not self._may_name_a_drug(text):
            return []
        matches = []
        for m in self._names.finditer(text):
            assert m.lastgroup is not None
            if m.lastgroup in self._contextual and not self._context.in_medication_context(
                text, m.start(), m.end()
            ):
                continue  # "Dara Nguyen RN", "DVD": not the drug
            matches.append(m)
        found: list[DrugMention] = []
        seen: set[str] = set()
        negated_end: int | None = None  # end of the last negated mention, while a list goes on
        negation = self._negation
        for i, m in enumerate(matches):
            assert m.lastgroup is not None
            drug = self._groups[m.lastgroup][1]
            negated = negation.negated(text, m.start()) or negation.negated_after(text, m.end())
            if not negated and negated_end is not None:
                negated = negation.continues_list(text[negated_end : m.start()])
            if negated:
                negated_end = m.end()
                continue
            negated_end = None
            if drug.stands_for_class:
                # "anti-CD38 therapy" in a note is mostly advice ("phenotype before anti-CD38
                # therapy"), not a patient's drug: the class counts only as an order question
                continue
            if drug.id in seen:
                continue
            seen.add(drug.id)
            next_start = matches[i + 1].start() if i + 1 < len(matches) else len(text)
            dated = self._dates.stated_date(text, m.start(), m.end(), next_start, now)
            found.append(DrugMention(drug, m.group(0), dated))
        return found
