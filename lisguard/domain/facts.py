"""What an HL7 message says, in the lab's words.

The hl7v2 layer translates ER7 text into these plain records; rules never see HL7 syntax.
They are frozen dataclasses with slots rather than pydantic models because one is built per
message on the hot ingest path, and nothing here needs validation: the translator fills them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum


@dataclass(frozen=True, slots=True)
class PatientId:
    """PID-3 (or MRG-1): identifier plus its assigning authority."""

    id: str
    authority: str = ""

    @property
    def key(self) -> str:
        return f"{self.id}^{self.authority}" if self.authority else self.id

    @classmethod
    def from_key(cls, key: str) -> PatientId:
        ident, _, authority = key.partition("^")
        return cls(ident, authority)


@dataclass(frozen=True, slots=True)
class MessageKey:
    """MSH-3 sending application, MSH-4 facility, MSH-10 control id: a message's identity."""

    sending_application: str
    sending_facility: str
    control_id: str


@dataclass(frozen=True, slots=True)
class Coded:
    """One coded element (CE/CWE): code, text, coding system; alternate triplet kept separately."""

    code: str = ""
    text: str = ""
    system: str = ""

    def is_empty(self) -> bool:
        return not (self.code or self.text)


@dataclass(frozen=True, slots=True)
class Evidence:
    """Where a fact came from: which message, which segment/field, and what it said."""

    message: str  # MSH-10
    location: str  # e.g. "RXA-5", "OBR-13", "NTE-3"
    text: str  # what the field said (codes and names, never the whole message)
    time: datetime | None = None


class MedicationAction(StrEnum):
    ORDER = "order"  # RXO / RXE: a planned or ongoing course
    DISPENSE = "dispense"  # RXD
    GIVE = "give"  # RXG: give instruction
    ADMINISTRATION = "administration"  # RXA: a dose given (dates the last dose)


@dataclass(frozen=True, slots=True)
class Medication:
    """A drug named by a pharmacy segment."""

    action: MedicationAction
    codes: tuple[Coded, ...]
    time: datetime | None  # administration start, planned start, or dispense time
    order_id: str
    location: str  # segment-field that named the drug, e.g. "RXA-5"
    not_given: bool = False  # RXA-20 completion status RE/NA, or an order cancelled (ORC-1 CA/DC)
    route: str = ""  # RXR-1 / RXE-6 / RXA-... route as written ("SC", "SUBQ^Subcutaneous", "IV")
    amount: str = ""  # RXA-6 administered amount, as written ("30", "0.4")
    amount_units: str = ""  # RXA-7 administered units (code, else text: "g", "mg", "mL")


@dataclass(frozen=True, slots=True)
class Observation:
    """One OBX."""

    code: Coded
    alt_code: Coded  # OBX-3 alternate triplet: many feeds send a local code first, LOINC second
    value_type: str
    values: tuple[str, ...]  # OBX-5 repetitions, unescaped; coded values give their text or code
    time: datetime | None
    abnormal_flags: tuple[str, ...] = ()
    status: str = ""  # OBX-11
    set_id: str = ""
    units: str = ""  # OBX-6 (code, else text): "mg/dL", "g/L"
    reference_range: str = ""  # OBX-7 as written: "700-1600", "7.0 - 16.0 g/L", ">=70"


@dataclass(frozen=True, slots=True)
class LabOrder:
    """An OBR (with its ORC and OBX/NTE children): a test ordered or resulted."""

    order_id: str  # placer, else filler order number; falls back to MSH-10 + OBR-1
    service: Coded  # OBR-4 universal service id
    alt_service: Coded  # OBR-4 alternate triplet (components 4-6)
    time: datetime | None  # OBR-7 observation time, else ORC-9, else MSH-7
    resulted: bool  # carries results (ORU/OUL, or OBX present)
    cancelled: bool  # ORC-1 CA/DC/OC or OBR-25 X
    observations: tuple[Observation, ...] = ()
    notes: tuple[str, ...] = ()  # NTE-3 under the OBR/OBX
    clinical_info: str = ""  # OBR-13 relevant clinical information
    placer: str = ""  # OBR-2, else ORC-2 (entity id)
    filler: str = ""  # OBR-3, else ORC-3
    # "BPO", "BPX" or "BTX" when the order is a blood product order, dispense or transfusion
    # by its structure (OMB^O27, BPS^O29, BTS^O31), whatever its product code says
    blood_product: str = ""
    service_field: str = "OBR-4"  # where `service` was read (BPO-2, BPX-6, ...)
    collected: datetime | None = None  # OBR-7 specimen collection (observation) time only


@dataclass(frozen=True, slots=True)
class FreeText:
    """A piece of narrative a person wrote (NTE, OBR-13, TX/ST/FT OBX values)."""

    location: str
    text: str


@dataclass(frozen=True, slots=True)
class ClinicalMessage:
    """Everything lisguard needs from one HL7 message."""

    key: MessageKey
    message_type: str  # e.g. "ORM^O01"
    version: str
    time: datetime | None  # MSH-7
    patient: PatientId | None
    location: str = ""  # PV1-3 point of care, for routing alerts
    medications: tuple[Medication, ...] = ()
    lab_orders: tuple[LabOrder, ...] = ()
    free_text: tuple[FreeText, ...] = ()
    merged_from: tuple[PatientId, ...] = ()  # MRG-1: prior ids now part of `patient`
    linked: tuple[PatientId, ...] = ()  # ADT^A24: the second PID, now linked to `patient`
    unlinked: tuple[PatientId, ...] = ()  # ADT^A37: the second PID, no longer linked
    notes: tuple[str, ...] = field(default=())  # translator remarks (e.g. unreadable timestamp)
    # MSH-11.1 (P, T, D; empty reads as P): a test message's facts live apart from production's
    processing_id: str = "P"
    # the second identifier a person acting for the patient checks: PID-5 (family, given
    # middle) and PID-7 (date of birth, ISO); "" when the message has none
    patient_name: str = ""
    birth_date: str = ""
    # an ADT whose purpose is to update who the patient is (A08, A31): it changes the name and
    # date of birth lisguard keeps for a patient it already knows
    demographics_update: bool = False

    @property
    def test(self) -> bool:
        return self.processing_id != "P"

    @property
    def event_time(self) -> datetime | None:
        return self.time
