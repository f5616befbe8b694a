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
from pathlib import Path

import lisguard
from lisguard.domain.catalog import Interpreter, TestCatalog
from lisguard.domain.drugs import DrugMatcher, DrugMention
from lisguard.domain.facts import Coded
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
    ) -> None:
        self.default_window_months = default_window_months
        self.drugs = drugs
        self.tests = tests
        self.interpretation = interpretation
        self._drugs = DrugMatcher(drugs.values(), interpretation.negation)
        self._catalog = TestCatalog(tests.values())
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

    def mentions(self, text: str) -> list[DrugMention]:
        """Drugs a person's free text says the patient is or was on: non-negated mentions, one
        per drug ("no daratumumab" -> none; "discontinued daratumumab 3/2026" -> counts)."""
        return self._drugs.mentions(text)

    # ------------------------------------------------------------------ tests
    def categorize(self, coded: Coded) -> frozenset[TestCategory]:
        """Union of the categories of every definition the element matches by LOINC, local
        code or name; empty when unknown."""
        return self._catalog.categorize(coded)

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
        loaded.default_window_months, loaded.drugs, loaded.tests, loaded.interpretation
    )
