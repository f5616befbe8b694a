"""Translate a parsed HL7 v2 message into a `ClinicalMessage`: the facts the rules need.

One pass over the segments. Structures differ by message type and vendor (ORC before OBR in
ORM/OML/ORU, after it in OUL; TQ1 before or after RXE), so the walk keeps the current order group
(ORC ... next ORC) and the current OBR, instead of relying on hl7apy's group definitions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from lisguard.domain.facts import (
    ClinicalMessage,
    Coded,
    FreeText,
    LabOrder,
    Medication,
    MedicationAction,
    MessageKey,
    Observation,
    PatientId,
)
from lisguard.domain.identity import Identifier, PatientIdentity
from lisguard.hl7v2.reader import Message, Segment, parse_ts

# ORC-1 order control codes meaning the order will not (or no longer) be carried out.
CANCELLED_CONTROLS = frozenset({"CA", "OC", "CR", "DC", "OD", "DR"})
# RXA-20 completion status: refused, not administered; RXA-21 action D: entered in error.
NOT_GIVEN_STATUS = frozenset({"RE", "NA"})
# ADT triggers whose MRG-1 names a patient identifier that is now part of PID-3's patient.
MERGE_TRIGGERS = frozenset({"A18", "A30", "A34", "A36", "A39", "A40", "A47"})
# ADT triggers whose second PID names a record linked to (A24) or unlinked from (A37) the first.
LINK_TRIGGER, UNLINK_TRIGGER = "A24", "A37"
# ADT triggers that update a patient's demographics (name, date of birth).
DEMOGRAPHIC_TRIGGERS = frozenset({"A08", "A31"})
RESULT_MESSAGES = frozenset({"ORU", "OUL", "ORL"})
TEXT_VALUE_TYPES = frozenset({"ST", "TX", "FT"})
CODED_VALUE_TYPES = frozenset({"CE", "CWE", "CNE", "CF"})

# segment -> (field with the drug code, action, field with the time or None)
PHARMACY = {
    "RXO": (1, MedicationAction.ORDER, None),
    "RXE": (2, MedicationAction.ORDER, None),
    "RXD": (2, MedicationAction.DISPENSE, 3),
    "RXG": (4, MedicationAction.GIVE, None),
    "RXA": (5, MedicationAction.ADMINISTRATION, 3),
}

# Blood product segments (chapter 4, v2.5+): segment -> (product field(s), time field(s)). BPO
# (OMB^O27) orders a product, BPX (BPS^O29) reports its dispense status, BTX (BTS^O31) its
# transfusion or disposition; the order number is the ORC's.
BLOOD_PRODUCT = {
    "BPO": ((2,), (7, 10)),  # BP universal service id; intended use, requested dispense time
    "BPX": ((6, 8), (4,)),  # BC component, CP commercial product; date/time of status
    "BTX": ((3, 5), (16, 13)),  # BC component, CP commercial product; transfusion start, status
}
_DEFAULT_IDENTITY = PatientIdentity()


@dataclass
class _OrderGroup:
    """An ORC and what follows it up to the next ORC."""

    orc: Segment | None = None
    planned_start: datetime | None = None
    pharmacy: list[tuple[Segment, str]] = field(default_factory=list)
    route: str = ""  # the first RXR-1 of the group, as "code^text"


@dataclass
class _OpenLab:
    obr: Segment  # the OBR, or the BPO/BPX/BTX of a blood product order
    orc: Segment | None
    observations: list[Observation] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    stage: str = ""  # "BPO", "BPX", "BTX": the latest blood product segment of the order


def _first_coded(seg: Segment, fields: tuple[int, ...]) -> tuple[Coded, Coded, int]:
    for fld in fields:
        code, alt = coded_pair(seg, fld)
        if not code.is_empty():
            return code, alt, fld
    return Coded(), Coded(), fields[0]


def _first_time(seg: Segment, fields: tuple[int, ...]) -> datetime | None:
    for fld in fields:
        when = parse_ts(seg.get(fld))
        if when is not None:
            return when
    return None


def _triplet(parts: list[str], base: int) -> Coded:
    n = len(parts)
    return Coded(
        code=parts[base].strip() if base < n else "",
        text=parts[base + 1].strip() if base + 1 < n else "",
        system=parts[base + 2].strip() if base + 2 < n else "",
    )


def coded(seg: Segment, fld: int, repetition: int = 1, alternate: bool = False) -> Coded:
    return _triplet(seg.first_subcomponents(fld, repetition), 3 if alternate else 0)


def coded_pair(seg: Segment, fld: int, repetition: int = 1) -> tuple[Coded, Coded]:
    """The coded element and its alternate triplet (components 4-6), from one split."""
    raw = seg.field_raw(fld)
    enc = seg.encoding
    if repetition == 1 and not (
        enc.repetition in raw or enc.escape in raw or enc.subcomponent in raw
    ):
        return plain_pair(raw, enc.component)
    parts = seg.first_subcomponents(fld, repetition)
    return _triplet(parts, 0), _triplet(parts, 3)


# A feed repeats the same few thousand test and drug codes: their Coded pairs are built once.
_PAIRS: dict[tuple[str, str], tuple[Coded, Coded]] = {}
_PAIRS_MAX = 8192


def plain_pair(raw: str, comp: str) -> tuple[Coded, Coded]:
    """coded_pair of a field with no repetition, escape or subcomponent character."""
    key = (raw, comp)
    found = _PAIRS.get(key)
    if found is None:
        parts = raw.split(comp) if raw else []
        found = (_triplet(parts, 0), _triplet(parts, 3))
        if len(_PAIRS) >= _PAIRS_MAX:
            _PAIRS.clear()
        _PAIRS[key] = found
    return found


def field_codes(seg: Segment, fld: int) -> tuple[Coded, ...]:
    found: list[Coded] = []
    for rep in range(1, len(seg.repetitions(fld)) + 1):
        found.extend(c for c in coded_pair(seg, fld, rep) if not c.is_empty())
    return tuple(found)


def patient_id(
    seg: Segment, fld: int, identity: PatientIdentity = _DEFAULT_IDENTITY
) -> PatientId | None:
    """The patient a CX field names (PID-3, MRG-1): the site's identity rules pick the
    repetition (MR-typed first) and normalise its authority (lisguard.domain.identity)."""
    reps = [
        Identifier(
            seg.get(fld, 1, repetition=i),
            seg.get(fld, 4, 1, i),
            seg.get(fld, 4, 2, i),
            seg.get(fld, 5, repetition=i),
        )
        for i in range(1, len(seg.repetitions(fld)) + 1)
    ]
    return identity.patient(reps)


def pid_name(seg: Segment) -> str:
    """PID-5 (XPN), first repetition: "FAMILY, GIVEN MIDDLE" (suffix kept after the middle)."""
    family = seg.get(5, 1).strip()
    given = " ".join(p for p in (seg.get(5, 2).strip(), seg.get(5, 3).strip()) if p)
    suffix = seg.get(5, 4).strip()
    name = f"{family}, {given}" if family and given else family or given
    return f"{name} {suffix}".strip() if suffix else name


def pid_birth_date(seg: Segment) -> str:
    """PID-7 as an ISO date ("1950-03-02"); "" when absent or unreadable."""
    when = parse_ts(seg.get(7))
    return when.date().isoformat() if when is not None else ""


def pid_patient(seg: Segment, identity: PatientIdentity = _DEFAULT_IDENTITY) -> PatientId | None:
    """PID-3, else the older PID-2 (external id) or PID-4 (alternate id)."""
    for fld in (3, 2, 4):
        found = patient_id(seg, fld, identity)
        if found is not None:
            return found
    return None


def _numbers(primary: Segment | None, fallback: Segment | None) -> tuple[str, str]:
    """(placer, filler): OBR-2/ORC-2 and OBR-3/ORC-3 (fields 2 and 3 in ORC and OBR alike)."""
    found = ["", ""]
    for i, fld in enumerate((2, 3)):
        for seg in (primary, fallback):
            if seg is not None:
                value = seg.get(fld).strip()
                if value:
                    found[i] = value
                    break
    return found[0], found[1]


def _obx_values(seg: Segment, value_type: str) -> tuple[str, ...]:
    values = []
    for rep in range(1, len(seg.repetitions(5)) + 1):
        if value_type in TEXT_VALUE_TYPES:
            text = "^".join(seg.components(5, rep))
        elif value_type in CODED_VALUE_TYPES:
            # both the code ("POS") and its text ("positiv"): readers try each in turn
            code = seg.get(5, 1, repetition=rep).strip()
            label = seg.get(5, 2, repetition=rep).strip()
            if code:
                values.append(code)
            text = label if label != code else ""
        elif value_type == "SN":
            text = "".join(seg.components(5, rep))
        else:
            text = seg.get(5, 1, repetition=rep)
        text = text.strip()
        if text:
            values.append(text)
    return tuple(values)


def _obx(seg: Segment) -> Observation:
    """One OBX. Most are plain (no repetition, escape or subcomponent character): those are read
    from their raw fields with one split each, the others through the reader's accessors. Both
    paths read the same values (tests/unit/test_clinical_obx.py)."""
    fields = seg.plain_fields()
    if fields is None:
        return _obx_generic(seg)
    return _obx_plain(fields, seg.encoding.component)


def _obx_generic(seg: Segment) -> Observation:
    value_type = seg.get(2).strip().upper()
    code, alt_code = coded_pair(seg, 3)
    return Observation(
        code=code,
        alt_code=alt_code,
        value_type=value_type,
        values=_obx_values(seg, value_type),
        time=parse_ts(seg.get(14)),
        abnormal_flags=tuple(
            seg.get(8, repetition=i).strip() for i in range(1, len(seg.repetitions(8)) + 1)
        ),
        status=seg.get(11).strip().upper(),
        set_id=seg.get(1).strip(),
        units=(seg.get(6, 1).strip() or seg.get(6, 2).strip()),
        reference_range=seg.get(7).strip(),
    )


def _obx_plain(fields: list[str], comp: str) -> Observation:
    n = len(fields)

    def first(i: int) -> str:  # get(i): the first component
        return fields[i].partition(comp)[0] if i < n else ""

    value_type = first(2).strip().upper()
    values: list[str] = []
    if n > 5 and fields[5]:
        parts = fields[5].split(comp)
        if value_type in TEXT_VALUE_TYPES:
            text = "^".join(parts)
        elif value_type in CODED_VALUE_TYPES:
            value_code = parts[0].strip()
            label = parts[1].strip() if len(parts) > 1 else ""
            if value_code:
                values.append(value_code)
            text = label if label != value_code else ""
        elif value_type == "SN":
            text = "".join(parts)
        else:
            text = parts[0]
        text = text.strip()
        if text:
            values.append(text)
    code, alt_code = plain_pair(fields[3] if n > 3 else "", comp)
    return Observation(
        code=code,
        alt_code=alt_code,
        value_type=value_type,
        values=tuple(values),
        time=parse_ts(first(14)),
        abnormal_flags=(first(8).strip(),) if n > 8 and fields[8] else (),
        status=first(11).strip().upper(),
        set_id=first(1).strip(),
        units=_units(fields[6] if n > 6 else "", comp),
        reference_range=first(7).strip(),
    )


def _units(raw: str, comp: str) -> str:
    """OBX-6 / RXA-7: the unit's code, else its text."""
    code, _, rest = raw.partition(comp)
    return code.strip() or rest.partition(comp)[0].strip()


def nte_text(seg: Segment) -> str:
    reps = seg.repetitions(3)
    return " ".join(seg.get(3, repetition=i).strip() for i in range(1, len(reps) + 1)).strip()


def to_clinical(msg: Message, identity: PatientIdentity = _DEFAULT_IDENTITY) -> ClinicalMessage:
    """Read the facts lisguard needs out of one message; `identity` is the site's patient
    identity rules (KnowledgeBase.identity)."""
    msh = msg.segments[0]
    control_id = msg.control_id
    msg_time = parse_ts(msh.get(7))
    family, _, trigger = msg.message_type.partition("^")
    patient: PatientId | None = None
    person_name = birth_date = ""
    location = ""
    merged: list[PatientId] = []
    others: list[PatientId] = []  # the second PID of an A24/A37
    medications: list[Medication] = []
    labs: list[LabOrder] = []
    free_text: list[FreeText] = []

    group = _OrderGroup()
    open_lab: _OpenLab | None = None
    previous = "MSH"

    def close_lab() -> None:
        nonlocal open_lab
        if open_lab is None:
            return
        seg, orc = open_lab.obr, open_lab.orc
        control = orc.get(1).strip().upper() if orc is not None else ""
        set_id = seg.get(1).strip() or str(len(labs) + 1)
        if open_lab.stage:
            # a blood product order: the order numbers are the ORC's
            products, times = BLOOD_PRODUCT[seg.name]
            service, alt_service, fld = _first_coded(seg, products)
            placer, filler = _numbers(orc, None)
            when = _first_time(seg, times)
            cancelled = control in CANCELLED_CONTROLS
            clinical_info = ""
            where = f"{seg.name}-{fld}"
            collected = None
        else:
            service, alt_service = coded_pair(seg, 4)
            placer, filler = _numbers(seg, orc)
            when = parse_ts(seg.get(7)) or parse_ts(seg.get(6))
            cancelled = control in CANCELLED_CONTROLS or seg.get(25).strip().upper() == "X"
            clinical_info = seg.get(13).strip()
            where = "OBR-4"
            collected = parse_ts(seg.get(7))
        if when is None and orc is not None:
            when = parse_ts(orc.get(9))
        labs.append(
            LabOrder(
                order_id=placer or filler or f"{control_id}-{set_id}",
                service=service,
                alt_service=alt_service,
                time=when,
                resulted=family in RESULT_MESSAGES or bool(open_lab.observations),
                cancelled=cancelled,
                observations=tuple(open_lab.observations),
                notes=tuple(open_lab.notes),
                clinical_info=clinical_info,
                placer=placer,
                filler=filler,
                blood_product=open_lab.stage,
                service_field=where,
                collected=collected,
            )
        )
        open_lab = None

    def close_group() -> None:
        orc = group.orc
        control = orc.get(1).strip().upper() if orc is not None else ""
        start = group.planned_start
        if start is None and orc is not None:
            start = parse_ts(orc.get(7, 4)) or parse_ts(orc.get(15)) or parse_ts(orc.get(9))
        for seg, location_name in group.pharmacy:
            code_field, action, time_field = PHARMACY[seg.name]
            when = parse_ts(seg.get(time_field)) if time_field else None
            not_given = control in CANCELLED_CONTROLS
            if seg.name == "RXA":
                status = seg.get(20).strip().upper()
                not_given = not_given or status in NOT_GIVEN_STATUS or seg.get(21).strip() == "D"
            elif seg.name == "RXG":
                when = parse_ts(seg.get(3, 4))
            if when is None and action is not MedicationAction.ADMINISTRATION:
                when = start
            placer, filler = _numbers(orc, None)
            amount = units = ""
            if seg.name == "RXA":
                amount = seg.get(6).strip()
                units = seg.get(7, 1).strip() or seg.get(7, 2).strip()
            medications.append(
                Medication(
                    action=action,
                    codes=field_codes(seg, code_field),
                    time=when,
                    order_id=placer or filler or control_id,
                    location=location_name,
                    not_given=not_given,
                    route=group.route,
                    amount=amount,
                    amount_units=units,
                )
            )

    for seg in msg.segments[1:]:
        name = seg.name
        if name == "PID":
            found = pid_patient(seg, identity)
            if patient is None or trigger not in (LINK_TRIGGER, UNLINK_TRIGGER):
                patient = found
                person_name, birth_date = pid_name(seg), pid_birth_date(seg)
            elif found is not None:
                others.append(found)
        elif name == "PV1":
            location = seg.get(3).strip()
        elif name == "MRG" and trigger in MERGE_TRIGGERS:
            prior = patient_id(seg, 1, identity)
            if prior is not None:
                merged.append(prior)
        elif name == "ORC":
            if open_lab is not None and previous == "OBR" and open_lab.orc is None:
                open_lab.orc = seg  # OUL/OML styles put ORC after its OBR
            else:
                close_lab()
                close_group()
                group = _OrderGroup(orc=seg)
        elif name == "OBR":
            close_lab()
            open_lab = _OpenLab(obr=seg, orc=group.orc)
        elif name == "OBX":
            obs = _obx(seg)
            if open_lab is not None:
                open_lab.observations.append(obs)
            elif obs.value_type in TEXT_VALUE_TYPES:
                free_text.extend(FreeText("OBX-5", v) for v in obs.values)
        elif name == "NTE":
            text = nte_text(seg)
            if text:
                if open_lab is not None:
                    open_lab.notes.append(text)
                else:
                    free_text.append(FreeText("NTE-3", text))
        elif name == "TQ1":
            start = parse_ts(seg.get(7))
            if start is not None and open_lab is None:
                group.planned_start = start
        elif name in BLOOD_PRODUCT:
            if open_lab is not None and open_lab.stage and open_lab.orc is group.orc:
                # BPX/BTX after the BPO of the same order: one order, at its latest stage
                if coded_pair(open_lab.obr, BLOOD_PRODUCT[open_lab.obr.name][0][0])[0].is_empty():
                    open_lab.obr = seg
                open_lab.stage = name
            else:
                close_lab()
                open_lab = _OpenLab(obr=seg, orc=group.orc, stage=name)
        elif name == "RXR":
            if not group.route:
                group.route = "^".join(seg.components(1)[:2])
        elif name in PHARMACY:
            close_lab()
            if name == "RXE" and group.planned_start is None:
                group.planned_start = parse_ts(seg.get(1, 4))
            group.pharmacy.append((seg, f"{name}-{PHARMACY[name][0]}"))
        previous = name
    close_lab()
    close_group()

    return ClinicalMessage(
        key=MessageKey(msh.field_raw(3), msh.field_raw(4), control_id),
        message_type=msg.message_type,
        version=msg.version,
        time=msg_time,
        patient=patient,
        location=location,
        medications=tuple(medications),
        lab_orders=tuple(labs),
        free_text=tuple(free_text),
        merged_from=tuple(merged),
        linked=tuple(others) if trigger == LINK_TRIGGER else (),
        unlinked=tuple(others) if trigger == UNLINK_TRIGGER else (),
        # required by HL7; senders that leave it empty are taken for production, as before
        processing_id=msg.processing_id or "P",
        patient_name=person_name,
        birth_date=birth_date,
        demographics_update=family == "ADT" and trigger in DEMOGRAPHIC_TRIGGERS,
    )
