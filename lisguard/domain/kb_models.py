"""The knowledge base's records: what config/knowledge/*.yaml (and a site file) may say.

Pydantic v2 models, validated once at load; unknown keys are rejected. Regular expressions are
compiled here only to check them; lisguard.domain.drugs and lisguard.domain.catalog compile the
combined matchers.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator


class Effect(StrEnum):
    """Which laboratory tests a drug interferes with."""

    RBC_SEROLOGY = "rbc_serology"
    SPEP_IFE = "spep_ife"
    CD38_FLOW = "cd38_flow"


class TestCategory(StrEnum):
    """What kind of test a coded element names (a panel may be several)."""

    __test__ = False  # not a pytest test class, despite the name

    IAT_SEROLOGY = "iat_serology"
    ABO_RH = "abo_rh"
    DAT = "dat"
    SPEP = "spep"
    IFE = "ife"
    FLOW_MRD = "flow_mrd"
    RBC_PHENOTYPE = "rbc_phenotype"
    RBC_GENOTYPE = "rbc_genotype"


class DrugClass(StrEnum):
    ANTI_CD38 = "anti_cd38"
    ANTI_SLAMF7 = "anti_slamf7"
    BCMA_BISPECIFIC = "bcma_bispecific"
    GPRC5D_BISPECIFIC = "gprc5d_bispecific"
    OTHER = "other"  # a site-added drug that fits none of the above


def check_regex(pattern: str) -> str:
    """A pattern must compile on its own and inside an alternation (no global flags mid-way)."""
    try:
        re.compile(f"(?:{pattern})", re.IGNORECASE)
    except re.error as exc:
        raise ValueError(f"bad regular expression {pattern!r}: {exc}") from None
    return pattern


def loinc_check_digit(body: str) -> int:
    """LOINC's mod-10 check digit (the Luhn scheme) of the digits before the hyphen."""
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch)
        if i % 2 == 0:  # rightmost digit and every second one leftwards are doubled
            d *= 2
        total += d // 10 + d % 10
    return (10 - total % 10) % 10


def check_loinc(code: str) -> str:
    code = code.strip()
    m = re.fullmatch(r"(\d{1,7})-(\d)", code)
    if m is None:
        raise ValueError(f"{code!r} is not a LOINC code (digits-check digit, e.g. 890-4)")
    if loinc_check_digit(m.group(1)) != int(m.group(2)):
        raise ValueError(f"{code!r} fails the LOINC check digit (a typo?)")
    return code


def check_ndc(code: str) -> str:
    code = code.strip()
    if re.fullmatch(r"\d{4,5}-\d{3,4}(-\d{1,2})?", code) is None:
        raise ValueError(f"{code!r} is not an NDC labeler-product code such as 57894-502")
    labeler, product = code.split("-")[:2]
    if len(labeler) == 4 and len(product) == 3:
        raise ValueError(f"{code!r}: a 4-digit labeler takes a 4-digit product code")
    return code


def check_digits(code: str) -> str:
    code = code.strip()
    if not code.isdigit():
        raise ValueError(f"{code!r} is not an RxNorm RxCUI (digits only)")
    return code


def check_hcpcs(code: str) -> str:
    code = code.strip().upper()
    if re.fullmatch(r"[A-V]\d{4}", code) is None:
        raise ValueError(f"{code!r} is not a HCPCS Level II code such as J9145")
    return code


def check_text(value: str) -> str:
    value = value.strip()
    if not value:
        raise ValueError("must not be empty")
    return value


Regex = Annotated[str, AfterValidator(check_regex)]
Loinc = Annotated[str, AfterValidator(check_loinc)]
Ndc = Annotated[str, AfterValidator(check_ndc)]
RxCui = Annotated[str, AfterValidator(check_digits)]
Hcpcs = Annotated[str, AfterValidator(check_hcpcs)]
Text = Annotated[str, AfterValidator(check_text)]
Ident = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$")]


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: Ident

    def __hash__(self) -> int:  # list fields: hash by identity of the record
        return hash((type(self).__name__, self.id))


class Drug(_Record):
    name: Text
    drug_class: DrugClass
    generic_names: list[Text] = []
    brand_names: list[Text] = []
    text_aliases: list[Text] = []
    ndc: list[Ndc] = []
    rxnorm: list[RxCui] = []
    hcpcs: list[Hcpcs] = []
    local_codes: list[Text] = []
    isotype: str | None = None
    effects: frozenset[Effect] = frozenset()
    drug_specific_ife: bool = False
    window_months: int | None = Field(default=None, ge=1, le=120)
    sources: list[str] = []
    enabled: bool = True

    @field_validator("effects", mode="before")
    @classmethod
    def _effects_list(cls, value: object) -> object:
        # YAML gives a list; a frozenset would accept duplicates silently, so reject them here.
        if isinstance(value, list) and len(set(map(str, value))) != len(value):
            raise ValueError("lists an effect twice")
        return value

    def names(self) -> list[str]:
        return [*self.generic_names, *self.brand_names]


class TestDefinition(_Record):
    __test__ = False

    category: TestCategory
    name: Text
    loinc: list[Loinc] = []
    local_codes: list[Text] = []
    name_patterns: list[Regex] = []
    exclude_patterns: list[Regex] = []
    antigen: str | None = None
    sources: list[str] = []
    enabled: bool = True


class DrugsFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    default_window_months: int = Field(ge=1, le=120)
    drugs: list[Drug]


class TestsFile(BaseModel):
    __test__ = False
    model_config = ConfigDict(extra="forbid")

    tests: list[TestDefinition]


class ValueVocabulary(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reactive: list[Regex]
    nonreactive: list[Regex]
    antigen_present: list[Regex]
    antigen_absent: list[Regex]
    prefix_excluded: list[str] = []


class PatternSet(BaseModel):
    model_config = ConfigDict(extra="forbid")

    patterns: list[Regex]
    exclude: list[Regex] = []


class PanreactiveRules(BaseModel):
    model_config = ConfigDict(extra="forbid")

    patterns: list[Regex]
    negated_by: list[Regex] = []


class NegationRules(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_words: int = Field(ge=0, le=20)
    cues: list[Regex]
    pseudo: list[Regex] = []
    terminators: list[Regex] = []


class MProteinRules(BaseModel):
    model_config = ConfigDict(extra="forbid")

    heavy_light: list[Regex]
    light_chain_only: list[Regex] = []
    max_words: int = Field(ge=0, le=20)
    before: list[Regex] = []
    after: list[Regex] = []

    @field_validator("heavy_light")
    @classmethod
    def _groups_hl(cls, patterns: list[str]) -> list[str]:
        for p in patterns:
            if not {"heavy", "light"} <= set(re.compile(p, re.IGNORECASE).groupindex):
                raise ValueError(f"{p!r} needs the named groups (?P<heavy>...) and (?P<light>...)")
        return patterns

    @field_validator("light_chain_only")
    @classmethod
    def _groups_l(cls, patterns: list[str]) -> list[str]:
        for p in patterns:
            if "light" not in re.compile(p, re.IGNORECASE).groupindex:
                raise ValueError(f"{p!r} needs the named group (?P<light>...)")
        return patterns


class InterpretationFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    values: ValueVocabulary
    antigens: dict[Text, list[Regex]]
    screening_cells: PatternSet
    panreactive: PanreactiveRules
    negation: NegationRules
    mprotein: MProteinRules
