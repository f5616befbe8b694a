"""A CDS Hooks request's FHIR R4 content into lisguard.domain.facts records.

- the prefetched Patient's identifiers -> the PatientId lisguard keys the patient under, through
  the site's identity rules (KnowledgeBase.identity), as PID-3 is read: Identifier.system is the
  assigning authority (PID-3.4: namespace, and for a `urn:oid:` system the bare OID as its
  universal id), Identifier.type (v2-0203 code) is PID-3.5. A site makes a system URI one
  register with its HL7 v2 authority by listing both in one `identity.authorities` group;
- `context.draftOrders` -> one ClinicalMessage: a MedicationRequest is a Medication order
  (RxNorm, NDC, HCPCS codings, else the names, through the same drug matcher as RXO/RXE), a
  ServiceRequest a LabOrder (LOINC or local codes, else its text, through the same test catalog
  as OBR-4);
- prefetched MedicationAdministration / MedicationRequest (the EHR's medication history) ->
  another ClinicalMessage the caller applies first, so a drug the EHR knows counts as exposure.

Times: a draft is dated at the request (`now`); a FHIR dateTime keeps its wall-clock time and
drops its offset, as lisguard.hl7v2.datatypes.parse_ts does for HL7 (naive datetimes throughout).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, TypeVar

from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.codeableconcept import CodeableConcept
from fhir.resources.R4B.medication import Medication as FhirMedication
from fhir.resources.R4B.medicationadministration import MedicationAdministration
from fhir.resources.R4B.medicationrequest import MedicationRequest
from fhir.resources.R4B.patient import Patient
from fhir.resources.R4B.reference import Reference
from fhir.resources.R4B.servicerequest import ServiceRequest
from pydantic import BaseModel, ValidationError

from lisguard.domain.facts import (
    ClinicalMessage,
    Coded,
    LabOrder,
    Medication,
    MedicationAction,
    MessageKey,
    PatientId,
)
from lisguard.domain.identity import Identifier, PatientIdentity
from lisguard.fhir.codes import LOINC, system_name

SENDING_APPLICATION = "CDS-HOOKS"  # MSH-3 of the messages a hook call stands for
# the prefetch keys the discovery document asks for (lisguard.web.cds_hooks)
HISTORY_PREFETCH = ("medicationRequests", "medicationAdministrations")
NOT_AN_ORDER = frozenset({"cancelled", "entered-in-error", "stopped", "revoked"})
NOT_GIVEN = frozenset({"not-done", "entered-in-error", "stopped"})
HISTORY_ORDER_STATUSES = frozenset({"active", "completed", "on-hold"})


class FhirInputError(ValueError):
    """A resource that is not valid FHIR R4; the message says which and why."""


M = TypeVar("M", bound=BaseModel)


def validated(model: type[M], data: Any, where: str) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        at = ".".join(str(p) for p in first["loc"])
        raise FhirInputError(
            f"{where} is not a valid FHIR R4 {model.__name__}: {at}: {first['msg']}"
        ) from None


def naive(value: datetime | date | str | None) -> datetime | None:
    """A FHIR date/dateTime as lisguard keeps times: naive wall-clock; a partial date
    ("2026-03") is the start of its period."""
    if isinstance(value, datetime):
        return value.replace(tzinfo=None)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day)
    if isinstance(value, str) and value[:4].isdigit():
        parts = [int(p) for p in value[:10].split("-") if p.isdigit()]
        try:
            return datetime(parts[0], parts[1] if len(parts) > 1 else 1, 1)
        except ValueError:
            return None
    return None


# ---------------------------------------------------------------- the patient


def patient_id(resource: Any, identity: PatientIdentity) -> PatientId | None:
    """The patient key the prefetched Patient's identifiers give; None without an identifier
    (a FHIR logical id is no MRN: it is never looked up as one)."""
    if not resource:
        return None
    patient = validated(Patient, resource, "prefetch.patient")
    reps = []
    for ident in patient.identifier or ():
        if not ident.value or ident.use == "old":
            continue
        system = (ident.system or "").strip()
        oid = system[8:] if system.lower().startswith("urn:oid:") else ""
        kind = ""
        if ident.type is not None:
            kind = next((c.code for c in ident.type.coding or () if c.code), "") or ""
        reps.append(Identifier(ident.value, system, oid, kind))
    return identity.patient(reps)


# ---------------------------------------------------------------- codes


def codes_of(concept: CodeableConcept | None) -> list[Coded]:
    """Each coding as a coded element (its system by the name the matchers know), then the
    concept's text alone: codes are tried before names."""
    if concept is None:
        return []
    out = [
        Coded(c.code or "", c.display or concept.text or "", system_name(c.system))
        for c in concept.coding or ()
        if c.code or c.display
    ]
    if concept.text:
        out.append(Coded(text=concept.text))
    return out


def _drug_codes(
    concept: CodeableConcept | None, ref: Reference | None, medications: Mapping[str, Any]
) -> list[Coded]:
    """medication[x]: the concept, or the Medication referenced (contained or in the bundle)."""
    if concept is not None:
        return codes_of(concept)
    if ref is None:
        return []
    target = medications.get(ref.reference or "")
    codes = codes_of(target.code) if isinstance(target, FhirMedication) else []
    return codes + ([Coded(text=ref.display)] if ref.display else [])


def _route(request: MedicationRequest) -> str:
    for dosage in request.dosageInstruction or ():
        if dosage.route is not None:
            coding = next(iter(dosage.route.coding or ()), None)
            parts = [coding.code or "", coding.display or ""] if coding else []
            return "^".join(p for p in [*parts, dosage.route.text or ""] if p)
    return ""


# ---------------------------------------------------------------- resources

# a prefetch may hold one resource rather than a Bundle
SINGLE_RESOURCES: dict[str, type[BaseModel]] = {
    "MedicationRequest": MedicationRequest,
    "MedicationAdministration": MedicationAdministration,
    "ServiceRequest": ServiceRequest,
}


def _resources(value: Any, where: str) -> Iterator[Any]:
    """The resources of a Bundle (or the one resource a prefetch holds), validated."""
    if not value:
        return
    if isinstance(value, dict) and value.get("resourceType") == "Bundle":
        # the CDS Hooks examples send draftOrders without Bundle.type (1..1 in FHIR)
        bundle = validated(Bundle, {"type": "collection", **value}, where)
        for entry in bundle.entry or ():
            if entry.resource is not None:
                yield entry.resource
        return
    if isinstance(value, dict):
        model = SINGLE_RESOURCES.get(str(value.get("resourceType")))
        if model is not None:
            yield validated(model, value, where)
            return
    raise FhirInputError(f"{where} is not a FHIR Bundle")


def _medications(resources: Iterable[Any]) -> dict[str, Any]:
    """Medication resources a medicationReference may point at: contained ("#id") and in the
    bundle ("Medication/id")."""
    found: dict[str, Any] = {}
    for res in resources:
        for contained in getattr(res, "contained", None) or ():
            if isinstance(contained, FhirMedication) and contained.id:
                found[f"#{contained.id}"] = contained
        if isinstance(res, FhirMedication) and res.id:
            found[f"Medication/{res.id}"] = res
    return found


def _medication_order(
    res: MedicationRequest, meds: Mapping[str, Any], when: datetime | None
) -> Medication:
    return Medication(
        action=MedicationAction.ORDER,
        codes=tuple(_drug_codes(res.medicationCodeableConcept, res.medicationReference, meds)),
        time=when,
        order_id=res.id or "",
        location="MedicationRequest.medication",
        not_given=res.status in NOT_AN_ORDER or bool(res.doNotPerform),
        route=_route(res),
    )


def _lab_order(res: ServiceRequest, now: datetime) -> LabOrder:
    text = (res.code.text if res.code is not None else None) or ""
    codes = [c for c in codes_of(res.code) if c.code]
    loinc = [c for c in codes if c.system == system_name(LOINC)]
    primary = loinc[0] if loinc else (codes[0] if codes else Coded(text=text))
    others = [c for c in codes if c != primary]
    alt = others[0] if others else Coded()
    return LabOrder(
        order_id=res.id or "",
        service=primary,
        alt_service=alt,
        time=now,
        resulted=False,
        cancelled=res.status in NOT_AN_ORDER or bool(res.doNotPerform),
        placer=res.id or "",
        service_field="ServiceRequest.code",
    )


@dataclass(frozen=True, slots=True)
class Drafts:
    message: ClinicalMessage
    orders: tuple[str, ...]  # "MedicationRequest/1", "ServiceRequest/2": the drafts read


def read_drafts(
    bundle: Any,
    patient: PatientId,
    *,
    hook_instance: str,
    hook: str,
    now: datetime,
    leave_out: frozenset[str] = frozenset(),
) -> Drafts:
    """context.draftOrders as one message dated `now`; `leave_out` ("ServiceRequest/2"): drafts
    not read (order-select judges the other drafts without the selection, then with it)."""
    resources = list(_resources(bundle, "context.draftOrders"))
    meds = _medications(resources)
    medications: list[Medication] = []
    labs: list[LabOrder] = []
    read: list[str] = []
    for res in resources:
        ref = f"{res.get_resource_type()}/{res.id}"
        if ref in leave_out:
            continue
        if isinstance(res, MedicationRequest):
            medications.append(_medication_order(res, meds, now))
        elif isinstance(res, ServiceRequest):
            labs.append(_lab_order(res, now))
        else:
            continue
        read.append(ref)
    message = ClinicalMessage(
        key=MessageKey(SENDING_APPLICATION, "", hook_instance),
        message_type=f"CDS^{hook}",
        version="FHIR R4",
        time=now,
        patient=patient,
        medications=tuple(medications),
        lab_orders=tuple(labs),
    )
    return Drafts(message, tuple(read))


def read_history(
    prefetch: Mapping[str, Any],
    patient: PatientId,
    *,
    hook_instance: str,
    now: datetime,
    drafts: frozenset[str] = frozenset(),
) -> ClinicalMessage | None:
    """The prefetched medication history (doses given, orders placed) as one message, None when
    there is none. Draft orders (`drafts` ids) are not history."""
    resources: list[Any] = []
    for key in HISTORY_PREFETCH:
        resources += _resources(prefetch.get(key), f"prefetch.{key}")
    meds = _medications(resources)
    found: list[Medication] = []
    for res in resources:
        if isinstance(res, MedicationAdministration):
            dose = res.dosage.dose if res.dosage is not None else None
            when = res.effectiveDateTime or (
                res.effectivePeriod.start if res.effectivePeriod is not None else None
            )
            found.append(
                Medication(
                    action=MedicationAction.ADMINISTRATION,
                    codes=tuple(
                        _drug_codes(res.medicationCodeableConcept, res.medicationReference, meds)
                    ),
                    time=naive(when),
                    order_id=res.id or "",
                    location="MedicationAdministration.medication",
                    not_given=res.status in NOT_GIVEN,
                    amount=str(dose.value) if dose is not None and dose.value is not None else "",
                    amount_units=(dose.code or dose.unit or "") if dose is not None else "",
                )
            )
        elif (
            isinstance(res, MedicationRequest)
            and f"MedicationRequest/{res.id}" not in drafts
            and res.status in HISTORY_ORDER_STATUSES
            and res.intent != "proposal"
        ):
            found.append(_medication_order(res, meds, naive(res.authoredOn)))
    if not found:
        return None
    return ClinicalMessage(
        key=MessageKey(SENDING_APPLICATION, "", f"{hook_instance}-history"),
        message_type="CDS^prefetch",
        version="FHIR R4",
        time=now,
        patient=patient,
        medications=tuple(found),
    )
