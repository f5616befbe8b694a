"""The knowledge base's records: what config/knowledge/*.yaml (and a site file) may say.

Pydantic v2 models, validated once at load; unknown keys are rejected. Regular expressions are
compiled here only to check them; lisguard.domain.drugs and lisguard.domain.catalog compile the
combined matchers.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, Literal

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
    FLOW_MRD = "flow_mrd"  # plasma-cell (myeloma) MRD / plasma-cell panel
    ALL_FLOW_MRD = "all_flow_mrd"  # B-/T-lymphoblastic leukaemia MRD by flow
    RBC_PHENOTYPE = "rbc_phenotype"
    RBC_GENOTYPE = "rbc_genotype"
    # A red-cell product ordered, dispensed or transfused: it implies a crossmatch (DOMAIN.md,
    # "How real feeds carry blood bank and order information").
    BLOOD_PRODUCT_ORDER = "blood_product_order"
    # Platelets, plasma, cryoprecipitate: no red cells to crossmatch.
    NON_RBC_PRODUCT = "non_rbc_product"
    # Quantitative serum immunoglobulins (hypogammaglobulinemia).
    IGG = "igg"
    IGA = "iga"
    IGM = "igm"
    # HBV serology: the screen before the first anti-CD38 dose is HBsAg + anti-HBc (total).
    HBSAG = "hbsag"
    ANTI_HBC = "anti_hbc"
    ANTI_HBS = "anti_hbs"
    # Other infectious-disease antibody serology that passive IgG from immunoglobulin products
    # can make positive (anti-HCV, CMV/EBV/HSV IgG, ...) [KARNA 1994] [HANSON 2020].
    ID_SEROLOGY = "id_serology"


class DrugClass(StrEnum):
    ANTI_CD38 = "anti_cd38"
    ANTI_CD47 = "anti_cd47"
    ANTI_SLAMF7 = "anti_slamf7"
    BCMA_BISPECIFIC = "bcma_bispecific"
    GPRC5D_BISPECIFIC = "gprc5d_bispecific"
    # Immunoglobulin products: pooled human IgG given intravenously or subcutaneously, and
    # anti-D immune globulin. Their passive antibodies reach every serological test [IG-PI].
    IVIG = "ivig"
    SCIG = "scig"
    RHIG = "rhig"
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


def check_cvx(code: str) -> str:
    code = code.strip()
    if not code.isdigit() or len(code) > 3:
        raise ValueError(f"{code!r} is not a CVX code (1-3 digits, e.g. 87)")
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
Cvx = Annotated[str, AfterValidator(check_cvx)]
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
    # Shorthand that is also a person's name or an ordinary abbreviation ("Dara", "DRd", "DVd"):
    # it names the drug in a pharmacy segment, but in free text only next to medication context
    # (a dose, "on ...", "cycle N", a medication list): lisguard.domain.mentions.
    context_aliases: list[Text] = []
    # The drug a pharmacy message means when its route (RXR-1, RXE-6...) says subcutaneous,
    # e.g. isatuximab -> isatuximab_sc.
    subcutaneous_form: str | None = None
    ndc: list[Ndc] = []
    rxnorm: list[RxCui] = []
    hcpcs: list[Hcpcs] = []
    # CDC vaccine codes (CVX), read only when the coding system says CVX (HL7 table 0292): an
    # immunization feed (VXU) sends immune globulin as CVX 86/87.
    cvx: list[Cvx] = []
    local_codes: list[Text] = []
    isotype: str | None = None
    effects: frozenset[Effect] = frozenset()
    drug_specific_ife: bool = False
    window_months: int | None = Field(default=None, ge=1, le=120)
    # Stands for any drug of its class: what a yes to "daratumumab or isatuximab?" records.
    stands_for_class: bool = False
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
    # Matched only against the product of a blood product segment (BPO-2, BPX-6/8, BTX-3/5),
    # where "Platelets" is a product, not the platelet count of a CBC.
    blood_product_only: bool = False
    # The antibody passive IgG from an immunoglobulin product may give in this test ("anti-HBc",
    # "CMV IgG"): named in the ig-passive-antibody alert.
    passive_antibody: str | None = None
    sources: list[str] = []
    enabled: bool = True


_MASS_UNITS = {"MG/DL": 1.0, "G/L": 100.0, "MG/L": 0.1, "G/DL": 1000.0, "MG/100ML": 1.0}
_AMOUNT = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z/0-9]+)\s*")


def mg_dl_factor(unit: str) -> float | None:
    """The factor that turns a mass concentration in `unit` into mg/dL (g/L x 100, mg/L / 10);
    None for a unit that is not one of them."""
    folded = unit.strip().upper().replace(" ", "").replace("GM/", "G/")
    return _MASS_UNITS.get(folded)


class ImmunoglobulinRules(BaseModel):
    """Site settings of the immunoglobulin-therapy rules (a site file's `immunoglobulin:`)."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True  # the whole family: the five switches below only act when this is on
    # months after the last dose of an immunoglobulin product during which a serological test
    # may carry its passive antibodies: IgG half-life after IVIG is about 3-4 weeks (median
    # 32.5 days), so 3 months is about three half-lives; test before the infusion or after
    # [IG-PI] [IVIG-PK] [MEDALG-IVIG]
    passive_window_months: int = Field(default=3, ge=1, le=24)
    # a bispecific's first order or dose with no immunoglobulin product given (or ordered) in
    # this many days before it prompts primary IVIG prophylaxis (seed 001, seed 002)
    prophylaxis_window_days: int = Field(default=30, ge=1, le=365)
    # an IgG below this is low: a number and a unit (mg/dL, g/L or mg/L); 400 mg/dL is the
    # common replacement threshold (a payer criterion, not a guideline: DOMAIN.md)
    igg_threshold: str = "400 mg/dL"
    # two IgA and IgM results below their reference ranges count together when drawn within
    # this many days of each other
    pair_days: int = Field(default=30, ge=0, le=365)
    # the markers that make up the HBV screen before the first anti-CD38 dose [ASCO-HBV 2020]
    hbv_markers: list[Literal["hbsag", "anti_hbc", "anti_hbs"]] = ["hbsag", "anti_hbc"]
    passive_antibody: bool = True  # ig-passive-antibody
    prophylaxis: bool = True  # ivig-prophylaxis
    low_immunoglobulins: bool = True  # hypogammaglobulinemia
    hbv_screen: bool = True  # baseline-workup's HBV_SCREEN_BEFORE_FIRST_DOSE
    positive_dat: bool = True  # positive-dat

    @field_validator("igg_threshold")
    @classmethod
    def _threshold(cls, value: str) -> str:
        m = _AMOUNT.fullmatch(value)
        if m is None or mg_dl_factor(m.group(2)) is None:
            raise ValueError(f"{value!r} is not an amount in mg/dL, g/L or mg/L (e.g. 400 mg/dL)")
        return value

    @field_validator("hbv_markers")
    @classmethod
    def _markers(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("name at least one marker (hbsag, anti_hbc, anti_hbs)")
        return value

    @property
    def igg_threshold_mg_dl(self) -> float:
        m = _AMOUNT.fullmatch(self.igg_threshold)
        assert m is not None  # validated
        factor = mg_dl_factor(m.group(2))
        assert factor is not None
        return float(m.group(1)) * factor

    def on(self, switch: str) -> bool:
        return self.enabled and bool(getattr(self, switch))


class IdentityRules(BaseModel):
    """Which identifiers name the same patient (a site setting; lisguard.domain.identity)."""

    model_config = ConfigDict(extra="forbid")

    # Groups of PID-3.4 assigning authorities (namespace id or universal id) that are one
    # register; the first of each group is the name lisguard keys the patient under.
    authorities: list[list[Text]] = []
    # PID-3.5 identifier types that carry the patient's MRN, in order of preference.
    identifier_types: list[Text] = ["MR"]
    # The authority of an identifier that has none (a pharmacy feed's bare "123456"); "" keeps
    # such identifiers apart from every register.
    bare_ids: str = ""
    # "0012345" and "12345" are one MRN (feeds that zero-pad to a fixed width).
    strip_leading_zeros: bool = False

    @field_validator("authorities")
    @classmethod
    def _disjoint(cls, groups: list[list[str]]) -> list[list[str]]:
        seen: dict[str, int] = {}
        for i, group in enumerate(groups):
            if not group:
                raise ValueError(f"group {i} is empty")
            for name in group:
                other = seen.setdefault(name.strip().upper(), i)
                if other != i:
                    raise ValueError(f"{name!r} is in group {other} and group {i}")
        return groups


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
    # Written after the term: "daratumumab: none", "Hx of daratumumab? No" (matched at the
    # term's end, so anchor with ^).
    after: list[Regex] = []
    # Between a negated mention and the next one, a list goes on ("no daratumumab,
    # isatuximab or elotuzumab"): the next mention is negated too (fullmatch of the gap).
    list_gap: list[Regex] = []


class MedicationContext(BaseModel):
    """When a context alias ("dara", "DRd") names the drug in free text."""

    model_config = ConfigDict(extra="forbid")

    before: list[Regex] = []  # just before the alias ("on ", "started ") - matched at its end
    after: list[Regex] = []  # just after it (" 1800 mg", " cycle 4", "-VRd") - matched with ^
    list_labels: list[Regex] = []  # the text is a medication list ("Medications: ...")
    # just after the alias, a person's surname ("Dara Nguyen RN"): never the drug
    person_after: list[Regex] = []


class MentionDates(BaseModel):
    """Dates in the sentence of a mention that date it ("discontinued 2019", "last dose
    03/2024"); a date after one of `start_words` is when it began, not when it ended."""

    model_config = ConfigDict(extra="forbid")

    start_words: list[Regex] = []
    not_a_year_after: list[Regex] = []  # "2000 mg" is a dose


class Answers(BaseModel):
    """Order-question answers (OBX-5 of an ask-at-order-entry question)."""

    model_config = ConfigDict(extra="forbid")

    affirmative: list[Regex] = []
    negative: list[Regex] = []  # "unknown" counts as not yes


class Routes(BaseModel):
    model_config = ConfigDict(extra="forbid")

    subcutaneous: list[Regex] = []  # RXR-1 route codes and texts meaning subcutaneous


class MProteinRules(BaseModel):
    model_config = ConfigDict(extra="forbid")

    heavy_light: list[Regex]
    light_chain_only: list[Regex] = []
    # A light chain alone is no M-protein isotype in a sentence that reports a free light chain
    # assay ("kappa free light chain 45.1 mg/L ... ratio 4.42"); nor when a number follows it.
    light_chain_measured: list[Regex] = []
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
    medication_context: MedicationContext = MedicationContext()
    mention_dates: MentionDates = MentionDates()
    answers: Answers = Answers()
    routes: Routes = Routes()
