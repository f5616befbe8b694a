"""The knowledge base: drugs, tests and result vocabularies, loaded from YAML.

Pure domain code (no I/O beyond reading the YAML files at load). The files live in
config/knowledge/ (drugs.yaml, tests.yaml, interpretation.yaml); a site adds its own file(s)
on top (config/site.example.yaml shows what a site file may say, lisguard.domain.kb_loader
documents the merge rules).

    kb = load_knowledge_base([Path("config/site.yaml")])
    kb.drug_for_code(Coded("57894-0503-01", "DARZALEX FASPRO", "NDC"))   # -> daratumumab_sc
    kb.categorize(Coded("890-4", "Antibody screen", "LN"))              # -> {iat_serology}

Every matcher is compiled once here; the per-message calls are dict lookups and single regex
scans, with per-code caches.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import lisguard
from lisguard.domain.catalog import Interpreter, TestCatalog
from lisguard.domain.drugs import DrugMatcher, DrugMention
from lisguard.domain.facts import Coded
from lisguard.domain.identity import PatientIdentity
from lisguard.domain.kb_loader import (
    KnowledgeBaseError,
    Loaded,
    apply_site,
    check_drug_codes,
    load_base,
)
from lisguard.domain.kb_models import (
    Drug,
    DrugClass,
    Effect,
    IdentityRules,
    ImmunoglobulinRules,
    InterpretationFile,
    TestCategory,
    TestDefinition,
)

__all__ = [
    "DEFAULT_KNOWLEDGE_DIR",
    "Drug",
    "DrugClass",
    "DrugMention",
    "Effect",
    "KnowledgeBase",
    "KnowledgeBaseError",
    "TestCategory",
    "TestDefinition",
    "load_knowledge_base",
]

# The repository's config/knowledge (an editable install or a checkout). A non-editable install
# does not ship it: pass base_dir= (e.g. from the service settings) there.
_NO_CODE = Coded()
DEFAULT_KNOWLEDGE_DIR = Path(lisguard.__file__).resolve().parents[1] / "config" / "knowledge"


class KnowledgeBase:
    """What lisguard knows about drugs, tests and result wording. Built by load_knowledge_base.

    `drugs` and `tests` hold every entry, enabled or not. Drug matchers return disabled drugs
    too (so "Darzalex Faspro" never falls back to a less specific drug): callers check
    `drug.enabled`. Disabled tests are never matched.
    """

    def __init__(
        self,
        default_window_months: int,
        drugs: dict[str, Drug],
        tests: dict[str, TestDefinition],
        interpretation: InterpretationFile,
        identity: IdentityRules | None = None,
        immunoglobulin: ImmunoglobulinRules | None = None,
    ) -> None:
        self.default_window_months = default_window_months
        self.drugs = drugs
        self.tests = tests
        self.interpretation = interpretation
        self.identity = PatientIdentity(identity)
        self.immunoglobulin = immunoglobulin or ImmunoglobulinRules()
        self._drugs = DrugMatcher(drugs.values(), interpretation)
        self._stand_ins = {d.drug_class: d for d in drugs.values() if d.stands_for_class}
        self._asked: dict[tuple[str, str, str], list[Drug]] = {}
        self._catalog = TestCatalog(tests.values())
        self._products = TestCatalog(tests.values(), products=True)
        self._interpreter = Interpreter(interpretation)

    # ------------------------------------------------------------------ drugs
    def window_months(self, drug: Drug) -> int:
        """Months after the last exposure point during which the drug still interferes."""
        return drug.window_months if drug.window_months is not None else self.default_window_months

    def drug_for_code(self, coded: Coded) -> Drug | None:
        """The drug a pharmacy code names (site local code, RxNorm, HCPCS, NDC), else its text.

        NDC: system NDC/N4 or any code shaped like one (hyphenated 10/11-digit, 11 digits, or
        10 digits tried in its three configurations against the known products). RxNorm only
        when the system says RxNorm. Falls back to drug_for_text(coded.text).
        """
        return self._drugs.for_code(coded)

    def drug_for_text(self, text: str) -> Drug | None:
        """The drug a drug name names; the most specific wins ("Darzalex Faspro" over
        "Darzalex", "daratumumab and hyaluronidase-fihj" over "daratumumab")."""
        return self._drugs.for_text(text)

    def mentions(self, text: str, now: datetime | None = None) -> list[DrugMention]:
        """Drugs a person's free text says the patient is or was on: non-negated mentions, one
        per drug ("no daratumumab" -> none; "discontinued daratumumab 3/2026" -> counts, dated
        2026-03-31), each with the date its sentence states (lisguard.domain.mentions)."""
        return self._drugs.mentions(text, now)

    def drugs_asked_about(self, question: Coded, alternate: Coded = _NO_CODE) -> list[Drug]:
        """The enabled drugs an order question names ("Has the patient received daratumumab or
        isatuximab in the last 6 months?"). Two drugs of one class, or the class itself,
        are the class's stand-in (anti_cd38_unspecified): a yes says the patient had one of
        them, not which."""
        key = (question.text, question.code, alternate.text)
        found = self._asked.get(key)
        if found is None:
            text = question.text or alternate.text
            named = self._drugs.named_in(text) if text else []
            by_class: dict[DrugClass, list[Drug]] = {}
            for drug in named:
                by_class.setdefault(drug.drug_class, []).append(drug)
            found = []
            for drug_class, drugs in by_class.items():
                stand_in = self._stand_ins.get(drug_class)
                if stand_in is not None and (len(drugs) > 1 or stand_in in drugs):
                    drugs = [stand_in]
                found.extend(d for d in drugs if d.enabled)
            if len(self._asked) > 4096:
                self._asked.clear()
            self._asked[key] = found
        return found

    def is_subcutaneous(self, route: str) -> bool:
        """RXR-1 says subcutaneous ("SC", "SUBQ^Subcutaneous", "SQ")."""
        return self._interpreter.is_subcutaneous(route)

    def drugs_of_class(self, *classes: DrugClass) -> set[str]:
        """Ids of the enabled drugs of these classes."""
        return {d.id for d in self.drugs.values() if d.enabled and d.drug_class in classes}

    # ------------------------------------------------------------------ tests
    def categorize(self, coded: Coded) -> frozenset[TestCategory]:
        """Union of the categories of every definition the element matches by LOINC, local
        code or name; empty when unknown."""
        return self._catalog.categorize(coded)

    def categorize_product(self, coded: Coded) -> frozenset[TestCategory]:
        """categorize for the product of a blood product segment (BPO-2, BPX-6, ...): also
        the entries that only make sense there ("Platelets" is a product, not a count)."""
        return self._products.categorize(coded)

    def test_for(self, coded: Coded) -> TestDefinition | None:
        """The best matching definition: a code match over a name match, an antigen-specific
        definition over a generic one."""
        return self._catalog.test_for(coded)

    # ------------------------------------------------------------------ results
    def is_reactive(self, value: str) -> bool | None:
        """True reactive, False non-reactive, None when the value says neither."""
        return self._interpreter.is_reactive(value)

    def antigen_named(self, text: str) -> str | None:
        """The antigen an observation name is nothing but ("K", "Kell", "k", "Fy(a)", "Jkb Ag"),
        else None. Only for OBX under an order already categorised rbc_phenotype/rbc_genotype:
        alone, "K" is potassium, which is why categorize/test_for never read it as the antigen.
        """
        return self._interpreter.antigen_named(text)

    def is_screening_cell(self, coded: Coded) -> bool:
        """The OBX names one screening cell of an antibody screen (SC I, Screen cell 2, ...)."""
        return self._interpreter.is_screening_cell(coded)

    def says_panreactive(self, text: str) -> bool:
        """The text says a screen/panel reacted with every cell (and does not negate it)."""
        return self._interpreter.says_panreactive(text)

    def mprotein_isotype(self, text: str) -> str | None:
        """The M-protein isotype a result states, normalised ("IgG kappa", "IgA lambda",
        "free kappa light chain"); None when none is stated or it is negated."""
        return self._interpreter.mprotein_isotype(text)

    def kell_notation(self, value: str) -> bool | None:
        """K status from Kell notation in a value: "KEL:1,2" / "KEL*01.01/KEL*02" / "K+k+" ->
        True; "KEL:-1,2" / "KEL*02/KEL*02" / "K-k+" -> False; else None."""
        return self._interpreter.kell_notation(value)

    def answer(self, value: str) -> bool | None:
        """An order question's answer: True for yes, False for no or unknown, else None."""
        return self._interpreter.answer(value)

    def antigen_status(self, antigen: str, value: str) -> bool | None:
        """Whether a typing result says the antigen is present: ("K", "POS") -> True,
        ("K", "K-k+") -> False, ("K", "k+") -> None (that is little k)."""
        return self._interpreter.antigen_status(antigen, value)


def load_knowledge_base(
    paths: Sequence[Path] = (), *, base_dir: Path | None = None
) -> KnowledgeBase:
    """Load config/knowledge (or base_dir), then each site file in `paths`, in order."""
    directory = base_dir if base_dir is not None else DEFAULT_KNOWLEDGE_DIR
    loaded: Loaded = load_base(directory)
    check_drug_codes(loaded, str(directory / "drugs.yaml"))
    for path in paths:
        apply_site(loaded, Path(path))
        check_drug_codes(loaded, str(path))
    return KnowledgeBase(
        loaded.default_window_months,
        loaded.drugs,
        loaded.tests,
        loaded.interpretation,
        loaded.identity,
        loaded.immunoglobulin,
    )
