"""Which test a coded element names, and what a result value or a report sentence says.

Compiled once per knowledge base. Matching a test name is the hot path (every OBR-4 and OBX-3 of
every message): a combined prefilter rejects the common case (a CBC, a chemistry panel) in one
scan, and answers are cached per coded element, since a feed repeats the same few hundred codes.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Iterable, Sequence
from typing import Any

from lisguard.domain.facts import Coded
from lisguard.domain.kb_models import InterpretationFile, TestCategory, TestDefinition
from lisguard.domain.mentions import Negation

LOINC_SYSTEMS = frozenset({"LN", "LOINC", "LNC", "2.16.840.1.113883.6.1"})
_LOINC_SHAPE = re.compile(r"\d{1,7}-\d")
_NEVER = re.compile(r"(?!x)x")
_CACHE_MAX = 16384


def compile_any(patterns: Sequence[str]) -> re.Pattern[str]:
    """One case-insensitive alternation of the patterns (never matches when there are none)."""
    if not patterns:
        return _NEVER
    return re.compile("|".join(f"(?:{p})" for p in patterns), re.IGNORECASE)


def _is_loinc_system(system: str) -> bool:
    s = system.strip().upper()
    return s in LOINC_SYSTEMS or "LOINC" in s


class _CompiledTest:
    __slots__ = ("definition", "exclude", "include")

    def __init__(self, definition: TestDefinition) -> None:
        self.definition = definition
        self.include = compile_any(definition.name_patterns)
        self.exclude = compile_any(definition.exclude_patterns)

    def name_matches(self, text: str) -> bool:
        return self.include.search(text) is not None and self.exclude.search(text) is None


class TestCatalog:
    """Test definitions by LOINC, local code and name."""

    __test__ = False

    def __init__(self, tests: Iterable[TestDefinition], *, products: bool = False) -> None:
        # products=True: the catalog for blood product segments, with the product-only entries
        enabled = [t for t in tests if t.enabled and (products or not t.blood_product_only)]
        self._by_loinc: dict[str, list[TestDefinition]] = {}
        self._by_local: dict[str, list[TestDefinition]] = {}
        for t in enabled:
            for code in t.loinc:
                self._by_loinc.setdefault(code, []).append(t)
            for code in t.local_codes:
                self._by_local.setdefault(code.strip().upper(), []).append(t)
        self._named = [_CompiledTest(t) for t in enabled if t.name_patterns]
        self._prefilter = LiteralPrefilter([c.definition.name_patterns for c in self._named])
        self._cache: dict[Coded, tuple[frozenset[TestCategory], TestDefinition | None]] = {}

    def categorize(self, coded: Coded) -> frozenset[TestCategory]:
        return self._lookup(coded)[0]

    def test_for(self, coded: Coded) -> TestDefinition | None:
        return self._lookup(coded)[1]

    def _lookup(self, coded: Coded) -> tuple[frozenset[TestCategory], TestDefinition | None]:
        try:
            return self._cache[coded]
        except KeyError:
            pass
        by_code = self._code_matches(coded)
        by_name = self._name_matches(coded.text)
        cats = frozenset(t.category for t in (*by_code, *by_name))
        # Best definition: a code match over a name match; among name matches one that names an
        # antigen (K ANTIGEN TYPING is the K definition, not the generic phenotype panel).
        best = by_code[0] if by_code else None
        if best is None and by_name:
            best = next((t for t in by_name if t.antigen), by_name[0])
        result = (cats, best)
        if len(self._cache) >= _CACHE_MAX:
            self._cache.clear()
        self._cache[coded] = result
        return result

    def _code_matches(self, coded: Coded) -> list[TestDefinition]:
        code = coded.code.strip()
        if not code:
            return []
        found = list(self._by_local.get(code.upper(), ()))
        if (_is_loinc_system(coded.system) or not coded.system.strip()) and _LOINC_SHAPE.fullmatch(
            code
        ):
            found.extend(t for t in self._by_loinc.get(code, ()) if t not in found)
        return found

    def _name_matches(self, text: str) -> list[TestDefinition]:
        if not text:
            return []
        named = self._named
        return [
            named[i].definition
            for i in self._prefilter.candidates(text)
            if named[i].name_matches(text)
        ]


_SIGN = (
    r"\s*[:=]?\s*\(?\s*(?P<sign>\+|-|0(?![.\d])|POS(?:ITIVE)?\b|NEG(?:ATIVE)?\b"
    r"|PRESENT\b|ABSENT\b|NOT\s+DETECTED\b|DETECTED\b)"
)
_DASHES = str.maketrans({"\u2212": "-", "\u2013": "-", "\u2014": "-", "\u2010": "-"})
_SPACES = re.compile(r"\s+")
_SENTENCE_END = re.compile(r"[.;!?\n\r](?!\d)")
_VALUE_SEP = r"(?=$|[\s,;:()/]|\.(?!\d))"


def normalise_value(value: str) -> str:
    return _SPACES.sub(" ", value.translate(_DASHES).strip().upper())


class _Vocabulary:
    """Two exclusive vocabularies (yes/no), matched whole, else by the value's first word."""

    def __init__(self, yes: Sequence[str], no: Sequence[str], prefix_excluded: Sequence[str]):
        yes_alt = "|".join(f"(?:{p})" for p in yes) or r"(?!x)x"
        no_alt = "|".join(f"(?:{p})" for p in no) or r"(?!x)x"
        self._yes_full = re.compile(f"(?:{yes_alt})", re.IGNORECASE)
        self._no_full = re.compile(f"(?:{no_alt})", re.IGNORECASE)
        self._yes_prefix = re.compile(f"(?:{yes_alt}){_VALUE_SEP}", re.IGNORECASE)
        self._no_prefix = re.compile(f"(?:{no_alt}){_VALUE_SEP}", re.IGNORECASE)
        self._excluded = frozenset(p.upper() for p in prefix_excluded)

    def read(self, normalised: str) -> bool | None:
        if not normalised:
            return None
        if self._no_full.fullmatch(normalised):
            return False
        if self._yes_full.fullmatch(normalised):
            return True
        for pattern, answer in ((self._no_prefix, False), (self._yes_prefix, True)):
            m = pattern.match(normalised)
            if m is not None and m.group(0).strip() not in self._excluded:
                return answer
        return None


class Interpreter:
    """Result values, screening-cell names, panreactivity and M-protein isotype statements."""

    def __init__(self, spec: InterpretationFile) -> None:
        v = spec.values
        self._reactivity = _Vocabulary(v.reactive, v.nonreactive, v.prefix_excluded)
        self._antigen_generic = _Vocabulary(v.antigen_present, v.antigen_absent, v.prefix_excluded)
        self._antigens: dict[str, re.Pattern[str]] = {
            name: re.compile(
                r"(?<![A-Za-z0-9])(?:" + "|".join(f"(?:{s})" for s in symbols) + ")" + _SIGN,
                re.IGNORECASE,
            )
            for name, symbols in spec.antigens.items()
        }
        self._antigen_folded = {name.upper(): name for name in spec.antigens}
        # An observation named by the antigen alone ("K", "Kell", "Fy(a)", "k Ag"): only
        # meaningful inside an order already known to be a phenotype/genotype panel.
        self._antigen_names = [
            (
                name,
                re.compile(
                    r"\s*(?:" + "|".join(f"(?:{s})" for s in symbols) + r")\s*\)?\s*"
                    r"(?:AG|ANTIGEN)?\s*",
                    re.IGNORECASE,
                ),
            )
            for name, symbols in spec.antigens.items()
        ]
        self._screen = compile_any(spec.screening_cells.patterns)
        self._screen_exclude = compile_any(spec.screening_cells.exclude)
        self._panreactive = compile_any(spec.panreactive.patterns)
        self._pan_negation = Negation(
            spec.negation.model_copy(update={"cues": spec.panreactive.negated_by})
        )
        mp = spec.mprotein
        self._heavy_light = [re.compile(p, re.IGNORECASE) for p in mp.heavy_light]
        self._light_only = [re.compile(p, re.IGNORECASE) for p in mp.light_chain_only]
        self._mp_before = Negation(
            spec.negation.model_copy(update={"cues": mp.before, "max_words": mp.max_words})
        )
        self._mp_after = compile_any(mp.after)
        self._mp_max_words = mp.max_words
        self._light_measured = compile_any(mp.light_chain_measured)
        self._answers = _Vocabulary(spec.answers.affirmative, spec.answers.negative, ())
        self._subcutaneous = compile_any(spec.routes.subcutaneous)

    def is_reactive(self, value: str) -> bool | None:
        return self._reactivity.read(normalise_value(value))

    def antigen_status(self, antigen: str, value: str) -> bool | None:
        pattern = self._antigens.get(antigen)
        if pattern is None:
            # "JKA" -> Jka is safe; one-letter names are never folded: K and k are two antigens.
            folded = self._antigen_folded.get(antigen.upper()) if len(antigen) > 1 else None
            if folded is None:
                return None
            pattern = self._antigens[folded]
        text = value.translate(_DASHES).strip()
        m = pattern.search(text)
        if m is not None:
            sign = m.group("sign").upper()
            return sign == "+" or sign.startswith(("POS", "PRESENT", "DETECTED"))
        return self._antigen_generic.read(normalise_value(text))

    def kell_notation(self, value: str) -> bool | None:
        """K (KEL1) from Kell-system notation in a typing value: ISBT phenotype "KEL:1,2" /
        "KEL:-1,2", alleles "KEL*01.01/KEL*02" (KEL*01 = K, KEL*02 = k, KEL*02N a null), or
        antigen signs "K+k+" / "K-k+" (DOMAIN.md: Kell in ISBT terms). None when it says
        nothing about K."""
        isbt = _ISBT_KEL.search(value)
        if isbt is not None:
            numbers = {n.strip() for n in isbt.group(1).split(",")}
            if "1" in numbers:
                return True
            if "-1" in numbers:
                return False
        alleles = _KEL_ALLELE.findall(value)
        if alleles:
            return any(allele == "1" and not null for allele, null in alleles)
        if _K_SIGN.search(value) is not None:
            return self.antigen_status("K", value)
        return None

    def answer(self, value: str) -> bool | None:
        """An order question's answer: True yes, False no (or unknown), None neither."""
        return self._answers.read(normalise_value(value))

    def is_subcutaneous(self, route: str) -> bool:
        return bool(route) and self._subcutaneous.search(route) is not None

    def antigen_named(self, text: str) -> str | None:
        for name, pattern in self._antigen_names:
            if pattern.fullmatch(text):
                return name
        return None

    def is_screening_cell(self, coded: Coded) -> bool:
        text = coded.text
        return (
            bool(text)
            and self._screen.search(text) is not None
            and self._screen_exclude.search(text) is None
        )

    def says_panreactive(self, text: str) -> bool:
        negated = self._pan_negation.negated
        return any(not negated(text, m.start()) for m in self._panreactive.finditer(text))

    def mprotein_isotype(self, text: str) -> str | None:
        """The first non-negated isotype statement: "IgG kappa", "free lambda light chain"."""
        if not text:
            return None
        found: list[tuple[int, str]] = []
        for pattern in self._heavy_light:
            for m in pattern.finditer(text):
                if not self._mp_negated(text, m):
                    found.append((m.start(), f"Ig{m['heavy'].upper()} {_light(m['light'])}"))
        for pattern in self._light_only:
            for m in pattern.finditer(text):
                if not self._mp_negated(text, m) and self._monoclonal_light(text, m):
                    found.append((m.start(), f"free {_light(m['light'])} light chain"))
        return min(found)[1] if found else None

    def _monoclonal_light(self, text: str, m: re.Match[str]) -> bool:
        """A light chain alone states an M-protein, except as a measured amount ("kappa free
        light chain 45.1 mg/L") or in a free light chain assay's report (its ratio)."""
        if _AMOUNT.match(text, m.end()) is not None:
            return False
        start = max((e.end() for e in _SENTENCE_END.finditer(text, 0, m.start())), default=0)
        stop = _SENTENCE_END.search(text, m.end())
        sentence = text[start : stop.start() if stop else len(text)]
        return self._light_measured.search(sentence) is None

    def _mp_negated(self, text: str, m: re.Match[str]) -> bool:
        if self._mp_before.negated(text, m.start()):
            return True
        rest = text[m.end() : m.end() + 200]
        term = _SENTENCE_END.search(rest)
        if term is not None:
            rest = rest[: term.start()]
        after = self._mp_after.search(rest)
        return after is not None and len(re.findall(r"\w+", rest[: after.start()])) <= (
            self._mp_max_words
        )


_ISBT_KEL = re.compile(r"\bKEL\s*:\s*(-?\d+(?:\s*,\s*-?\d+)*)", re.IGNORECASE)
_KEL_ALLELE = re.compile(r"\bKEL\s*\*\s*0?([12])(N)?(?:\.\d+)*", re.IGNORECASE)
_K_SIGN = re.compile(r"(?<![A-Za-z])K\s*[+-]")
_AMOUNT = re.compile(r"s?\s*(?:\([^)]*\)\s*)?[:=,]?\s*[<>]?\s*\d")


def _light(raw: str) -> str:
    return "kappa" if raw.lower() in ("kappa", "k", "κ") else "lambda"


# ---------------------------------------------------------------------------- literal prefilter
# Python's regex engine tries every alternative at every position, so one search of a few dozen
# name patterns costs ~100 us on a 30-character name. Most patterns cannot match unless some
# literal word is in the text ("SCREEN", "IMMUNOFIX"): those literals are read from the parsed
# pattern, and a pattern is searched only when one of its literals is present (a plain substring
# test). Patterns with no such literal (e.g. "\bT\s*&\s*S\b") are always searched.

_MIN_LITERAL = 2


def required_literals(pattern: str) -> frozenset[str] | None:
    """Upper-cased literals, at least one of which any match of `pattern` contains; None when
    no such set can be read (then the pattern must always be searched)."""
    try:
        parser: Any = importlib.import_module("re._parser")
        consts: Any = importlib.import_module("re._constants")
        tree = parser.parse(pattern, re.IGNORECASE)
        return _sequence_literals(list(tree), consts)
    except Exception:  # a private module changed shape: fall back to always searching
        return None


def _better(a: frozenset[str] | None, b: frozenset[str] | None) -> frozenset[str] | None:
    if a is None:
        return b
    if b is None:
        return a
    return b if min(map(len, b)) > min(map(len, a)) else a


def _sequence_literals(items: list[tuple[Any, Any]], c: Any) -> frozenset[str] | None:
    best: frozenset[str] | None = None
    run: list[str] = []
    for op, av in [*items, (None, None)]:
        if op == c.LITERAL:
            run.append(chr(av))
            continue
        if len(run) >= _MIN_LITERAL:
            best = _better(best, frozenset({"".join(run).upper()}))
        run = []
        req: frozenset[str] | None = None
        if op == c.SUBPATTERN:
            req = _sequence_literals(list(av[-1]), c)
        elif op == c.ATOMIC_GROUP:
            req = _sequence_literals(list(av), c)
        elif op == c.BRANCH:
            parts = [_sequence_literals(list(b), c) for b in av[1]]
            if all(p is not None for p in parts):
                req = frozenset().union(*(p for p in parts if p is not None))
        elif op in (c.MAX_REPEAT, c.MIN_REPEAT, getattr(c, "POSSESSIVE_REPEAT", None)) and av[0]:
            req = _sequence_literals(list(av[2]), c)  # repeated at least once
        best = _better(best, req)
    return best


class LiteralPrefilter:
    """Which of a list of pattern groups may match a text, by their required literals."""

    def __init__(self, groups: Sequence[Sequence[str]]) -> None:
        self._always: list[int] = []
        by_literal: dict[str, set[int]] = {}
        for i, patterns in enumerate(groups):
            literals: set[str] = set()
            for p in patterns:
                req = required_literals(p)
                if req is None:
                    self._always.append(i)
                    break
                literals |= req
            else:
                for lit in literals:
                    by_literal.setdefault(lit, set()).add(i)
        self._literals = sorted(by_literal.items())

    def candidates(self, text: str) -> list[int]:
        upper = text.upper()
        found = set(self._always)
        for lit, groups in self._literals:
            if lit in upper:
                found |= groups
        return sorted(found)
