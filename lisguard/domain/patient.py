"""What lisguard remembers about a patient: exposures, RBC typing on file, own M-protein isotype.

Persisted as JSON by the stores, so it is a pydantic model with plain fields. Lists that grow
with the feed are bounded: the rules need the first and last exposure points, whether a
pre-treatment typing exists, and the isotype stated before therapy - not the whole history
(the raw messages and the audit log keep that).
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from lisguard.domain.alerts import EvidenceItem

MAX_EVIDENCE = 5
MAX_RECORDS = 10
MAX_ORDER_NUMBERS = 200  # placer/filler pairs remembered: a few months of a patient's orders


class Exposure(BaseModel):
    """One drug a patient is (or was) on, as the feeds said."""

    drug: str
    first_point: datetime | None = None  # earliest dated dose / planned start / mention
    last_point: datetime | None = None  # latest of them: the window runs from here
    last_dose: datetime | None = None  # latest administration (RXA)
    first_dose: datetime | None = None  # earliest administration (RXA)
    planned_start: datetime | None = None  # latest order's planned start
    kinds: list[str] = Field(default_factory=list)  # order, administration, dispense, mention...
    evidence: list[EvidenceItem] = Field(default_factory=list)
    # administrations (RXA) seen, and their grams added up where the message gave the amount
    # in a mass unit (immunoglobulin products: passive antibodies are dose-dependent [HANSON 2020])
    doses: int = 0
    grams: float | None = None

    def add_point(self, when: datetime | None, kind: str, evidence: EvidenceItem) -> None:
        self.first_point = _earliest(self.first_point, when)
        self.last_point = _latest(self.last_point, when)
        if kind == "administration":
            self.last_dose = _latest(self.last_dose, when)
            self.first_dose = _earliest(self.first_dose, when)
        elif kind in ("order", "dispense", "give"):
            self.planned_start = _latest(self.planned_start, when)
        if kind not in self.kinds:
            self.kinds.append(kind)
        self.evidence.append(evidence)
        del self.evidence[:-MAX_EVIDENCE]


class RbcTyping(BaseModel):
    """An RBC phenotype or genotype result."""

    kind: str  # "phenotype" | "genotype"
    time: datetime | None
    antigens: dict[str, bool] = Field(default_factory=dict)  # e.g. {"K": False, "E": True}
    message: str = ""


class IsotypeStatement(BaseModel):
    """An IFE/SPEP result stating the M-protein isotype."""

    isotype: str
    time: datetime | None
    message: str = ""


class SerologyResult(BaseModel):
    """One HBV serology result (HBsAg, anti-HBc, anti-HBs): on file is what the HBV prompt reads."""

    marker: str  # "hbsag" | "anti_hbc" | "anti_hbs" (TestCategory values)
    time: datetime | None
    value: str = ""  # the result as written (OBX-5), e.g. "Nonreactive", "12.4"
    reactive: bool | None = None  # None: the value says neither
    pending: bool = False  # ordered, not yet resulted: the screen is under way
    message: str = ""


class ImmunoglobulinResult(BaseModel):
    """The latest quantitative IgG, IgA or IgM."""

    test: str  # "igg" | "iga" | "igm"
    time: datetime | None
    value: float
    units: str = ""  # OBX-6 as written, or the unit read off the reference range
    mg_dl: float | None = None  # the value in mg/dL, None when the unit is unknown
    low: float | None = None  # the reference range's lower limit (OBX-7), in `units`
    flags: list[str] = Field(default_factory=list)  # OBX-8
    below_range: bool | None = None  # below OBX-7's lower limit (else the flag L/LL)
    message: str = ""


class PatientState(BaseModel):
    key: str  # PatientId.key: "id^authority"
    # the second identifiers (PID-5, PID-7) from the latest message that gave them: what a
    # person checks before acting for the patient
    name: str = ""
    birth_date: str = ""  # ISO date
    demographics_time: datetime | None = None  # MSH-7 of the message they came from
    exposures: dict[str, Exposure] = Field(default_factory=dict)
    typings: list[RbcTyping] = Field(default_factory=list)
    k_positive: bool | None = None  # K (KEL1) antigen status, None when unknown
    isotypes: list[IsotypeStatement] = Field(default_factory=list)
    alerted: list[str] = Field(default_factory=list)  # alert ids already raised
    merged_from: list[str] = Field(default_factory=list)  # retired identifiers: aliases of this
    # Set on a retired identifier's record after a merge: the survivor's key. Such a record
    # holds nothing else; a message that still uses the retired identifier lands on the survivor.
    alias_of: str | None = None
    linked: list[str] = Field(default_factory=list)  # ADT^A24 links (A37 removes them)
    # "P:<placer>" / "F:<filler>" -> the order number alerts use for that order: an order is one
    # order whichever of its numbers a later message carries.
    order_numbers: dict[str, str] = Field(default_factory=dict)
    hbv: list[SerologyResult] = Field(default_factory=list)  # earliest and latest per marker
    immunoglobulins: dict[str, ImmunoglobulinResult] = Field(default_factory=dict)  # latest
    # when baseline-workup last asked for the HBV screen: it asks once per patient
    hbv_prompted: datetime | None = None
    updated: datetime | None = None

    def first_point(self, drugs: set[str] | None = None) -> datetime | None:
        """Earliest exposure point over the given drugs (all when None)."""
        points = [
            e.first_point
            for d, e in self.exposures.items()
            if e.first_point is not None and (drugs is None or d in drugs)
        ]
        return min(points) if points else None

    def has_pretreatment_typing(self, rbc_drugs: set[str]) -> bool:
        """A genotype at any time, or a phenotype dated before the first red-cell-affecting dose."""
        start = self.first_point(rbc_drugs)
        for typing in self.typings:
            if typing.kind == "genotype":
                return True
            if start is None or (typing.time is not None and typing.time < start):
                return True
        return False

    def own_isotype(self, spep_drugs: set[str]) -> str | None:
        """The isotype an IFE stated before the first SPEP-affecting exposure (after, it may be
        the drug's own IgG-kappa band)."""
        start = self.first_point(spep_drugs)
        found: IsotypeStatement | None = None
        for st in self.isotypes:
            if start is not None and (st.time is None or st.time >= start):
                continue
            if found is None or (st.time and found.time and st.time > found.time):
                found = st
        return found.isotype if found else None

    def add_typing(self, typing: RbcTyping) -> None:
        self.typings.append(typing)
        # keep genotypes and the earliest phenotypes: those are what make a typing "pre-treatment"
        if len(self.typings) > MAX_RECORDS:
            self.typings.sort(key=lambda t: (t.kind != "genotype", t.time or datetime.min))
            del self.typings[MAX_RECORDS:]

    def add_isotype(self, statement: IsotypeStatement) -> None:
        self.isotypes.append(statement)
        if len(self.isotypes) > MAX_RECORDS:
            self.isotypes.sort(key=lambda s: s.time or datetime.min)
            del self.isotypes[MAX_RECORDS:]

    def add_hbv(self, result: SerologyResult) -> None:
        """Keep the earliest and the latest result of each marker (a resulted one replaces the
        pending order it answers)."""
        same = [r for r in self.hbv if r.marker == result.marker]
        if not result.pending:
            same = [r for r in same if not r.pending]
        same.append(result)
        same.sort(key=lambda r: r.time or datetime.min)
        keep = [same[0], same[-1]] if len(same) > 1 else same
        self.hbv = [r for r in self.hbv if r.marker != result.marker] + keep

    def hbv_on_file(self, markers: list[str], before: datetime | None = None) -> list[str]:
        """Of `markers`, those with a result (or an order under way) on file, dated no later
        than `before` when given (undated ones count)."""
        found = {r.marker for r in self.hbv if before is None or r.time is None or r.time <= before}
        return [m for m in markers if m in found]

    def add_immunoglobulin(self, result: ImmunoglobulinResult) -> None:
        """The latest of each test is what the rules read."""
        old = self.immunoglobulins.get(result.test)
        if old is None or old.time is None or result.time is None or result.time >= old.time:
            self.immunoglobulins[result.test] = result

    def absorb(self, other: PatientState) -> None:
        """Merge another identifier's state into this one (ADT merge: this is the survivor)."""
        for drug, exp in other.exposures.items():
            mine = self.exposures.get(drug)
            if mine is None:
                self.exposures[drug] = exp.model_copy(deep=True)
                continue
            for ev in exp.evidence:
                mine.evidence.append(ev)
            del mine.evidence[:-MAX_EVIDENCE]
            mine.first_point = _earliest(mine.first_point, exp.first_point)
            mine.last_point = _latest(mine.last_point, exp.last_point)
            mine.last_dose = _latest(mine.last_dose, exp.last_dose)
            mine.first_dose = _earliest(mine.first_dose, exp.first_dose)
            mine.planned_start = _latest(mine.planned_start, exp.planned_start)
            mine.doses += exp.doses
            if exp.grams is not None:
                mine.grams = (mine.grams or 0.0) + exp.grams
            for k in exp.kinds:
                if k not in mine.kinds:
                    mine.kinds.append(k)
        for typing in other.typings:
            self.add_typing(typing)
        if self.k_positive is None:
            self.k_positive = other.k_positive
        for st in other.isotypes:
            self.add_isotype(st)
        for result in other.hbv:
            self.add_hbv(result)
        for ig in other.immunoglobulins.values():
            self.add_immunoglobulin(ig)
        self.hbv_prompted = _earliest(self.hbv_prompted, other.hbv_prompted)
        for a in other.alerted:
            if a not in self.alerted:
                self.alerted.append(a)
        if not self.name and not self.birth_date:
            self.name, self.birth_date = other.name, other.birth_date
            self.demographics_time = other.demographics_time
        for key in [other.key, *other.merged_from]:
            if key not in self.merged_from and key != self.key:
                self.merged_from.append(key)
        for key in other.linked:
            if key not in self.linked and key != self.key and key not in self.merged_from:
                self.linked.append(key)
        for number, canonical in other.order_numbers.items():
            self.order_numbers.setdefault(number, canonical)
        self._bound_order_numbers()

    def order_number(self, placer: str, filler: str) -> str:
        """The number alerts use for the order with these numbers, remembering the pair: the
        first number an alert or a message used for it (an ORM with both, then an ORU with the
        filler number only, is one order)."""
        keys = [k for k in (f"P:{placer}" if placer else "", f"F:{filler}" if filler else "") if k]
        if not keys:
            return ""
        canonical = next(
            (self.order_numbers[k] for k in keys if k in self.order_numbers), placer or filler
        )
        if len(keys) == 2:
            for k in keys:
                self.order_numbers[k] = canonical
            self._bound_order_numbers()
        return canonical

    def _bound_order_numbers(self) -> None:
        extra = len(self.order_numbers) - MAX_ORDER_NUMBERS
        if extra > 0:  # dicts keep insertion order: the oldest pairs go first
            for k in list(self.order_numbers)[:extra]:
                del self.order_numbers[k]


def state_key(key: str, processing_id: str = "P") -> str:
    """Where a patient's state is kept for messages of one MSH-11 processing id.

    Production (P) state under the patient key itself; each test processing id (T, D) has a
    world of its own, under a key starting with a record separator - which no patient key can
    (identifiers are stripped, and str.strip takes it for whitespace). A test feed often reuses
    real MRNs: its doses must never open (or its alerts use up) a real patient's alerts, and
    real state must not make a test scenario pass. Keys inside a state (aliases, links) stay
    plain: they are read within the same world.
    """
    return key if processing_id == "P" else f"\x1e{processing_id}\x1e{key}"


def _earliest(a: datetime | None, b: datetime | None) -> datetime | None:
    return b if a is None else a if b is None else min(a, b)


def _latest(a: datetime | None, b: datetime | None) -> datetime | None:
    return b if a is None else a if b is None else max(a, b)
