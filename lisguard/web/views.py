"""JSON shapes of the alert API (documented in static/openapi.json)."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import quote

from lisguard.alerting.summary import PatientSummary
from lisguard.domain.alerts import RECOMMENDATION_TEXT, Audience, Recommendation, RuleId
from lisguard.store.desk import AlertRecord, OutboxItem, Snooze

# what the page calls each rule (ids stay the contract)
RULE_TITLES: dict[str, str] = {
    RuleId.BASELINE_WORKUP.value: "Baseline work-up before the first anti-CD38 dose",
    RuleId.BB_SEROLOGY.value: "Blood bank test on anti-CD38 (or anti-CD47) therapy",
    # elotuzumab is no anti-CD38: the title names what all of them are
    RuleId.SPEP_IFE.value: "SPEP/IFE on a therapeutic IgG-kappa antibody",
    RuleId.FLOW_MRD.value: "Flow MRD on anti-CD38 therapy",
    RuleId.UNEXPLAINED_PANREACTIVITY.value: "Panreactive screen, no anti-CD38 known",
    RuleId.IG_PASSIVE_ANTIBODY.value: "Passive antibody from immunoglobulin (IVIG/SCIG/RhIG)",
    RuleId.IVIG_PROPHYLAXIS.value: "Bispecific started without IVIG prophylaxis",
    RuleId.HYPOGAMMAGLOBULINEMIA.value: "Low immunoglobulins on anti-CD38 or bispecific therapy",
    RuleId.POSITIVE_DAT.value: "Positive DAT on therapy or after immunoglobulin",
}

# what the page calls each audience (the values stay the contract)
AUDIENCE_TITLES: dict[str, str] = {
    Audience.BLOOD_BANK.value: "Blood bank",
    Audience.SEROLOGY.value: "Serology",
    Audience.CLINIC.value: "Clinic",
    Audience.PROTEIN_LAB.value: "Protein lab",
    Audience.FLOW_LAB.value: "Flow lab",
}


def _time(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def links(alert_id: str, patient_key: str, processing_id: str = "P") -> dict[str, str]:
    patient = f"/api/patients/{quote(patient_key, safe='')}"
    if processing_id != "P":  # a test alert's patient as that test feed left it
        patient += f"?processing_id={quote(processing_id, safe='')}"
    return {"self": f"/api/alerts/{alert_id}", "patient": patient, "page": f"/#alert={alert_id}"}


def delivery_view(item: OutboxItem) -> dict[str, Any]:
    return {
        "channel": item.channel,
        "status": item.status,
        "attempts": item.attempts,
        "created_at": _time(item.created_at),
        "last_attempt_at": _time(item.last_attempt_at),
        "next_attempt_at": _time(item.next_attempt_at) if item.status == "pending" else None,
        "delivered_at": _time(item.delivered_at),
        "last_error": item.last_error,
    }


def alert_view(
    record: AlertRecord,
    deliveries: list[OutboxItem] | None = None,
    repeats: list[AlertRecord] | None = None,
    *,
    escalated_at: datetime | None = None,  # store.escalations.marks: HIGH, left open too long
) -> dict[str, Any]:
    alert = record.alert
    view: dict[str, Any] = {
        "id": alert.id,
        "alert": alert.to_json_dict(),  # exactly as `lisguard check` prints it
        "rule_title": RULE_TITLES.get(alert.rule.value, alert.rule.value),
        "audience_title": AUDIENCE_TITLES.get(alert.audience.value, alert.audience.value),
        "patient_key": alert.patient_key,
        "meanings": {r.value: RECOMMENDATION_TEXT.get(r, "") for r in alert.recommendations},
        "status": record.status,
        "created_at": _time(record.created_at),
        "count": record.repeat_count,
        "last_repeat_at": _time(record.last_repeat_at),
        "lead_id": record.lead_id,
        "acknowledged": None,
        "resolved": None,
        "snooze_id": record.snooze_id,
        "escalated_at": _time(escalated_at),  # stays after an acknowledgement: it happened
        "deliveries": [delivery_view(d) for d in deliveries or []],
        "links": links(alert.id, alert.patient_key, alert.processing_id),
    }
    if record.acknowledged_at is not None:
        view["acknowledged"] = {
            "by": record.acknowledged_by,
            "at": _time(record.acknowledged_at),
            "note": record.ack_note,
        }
    if record.resolved_at is not None:
        view["resolved"] = {
            "by": record.resolved_by,
            "at": _time(record.resolved_at),
            "resolution": record.resolution,
            "reason": record.resolution_reason,
        }
    if repeats is not None:
        view["repeats"] = [
            {
                "id": r.alert.id,
                "order": r.alert.order,
                # the test each repeat was about, as ordered, and its specimen's collection
                "order_code": r.alert.order_code,
                "order_text": r.alert.order_text,
                "collected": _time(r.alert.collected),
                "message": r.alert.message,
                "event_time": _time(r.alert.event_time),
                "created_at": _time(r.created_at),
            }
            for r in repeats
        ]
    return view


def snooze_view(snooze: Snooze, now: datetime) -> dict[str, Any]:
    return {
        "id": snooze.id,
        "patient_key": snooze.patient_key,
        "rule": snooze.rule,
        "reason": snooze.reason,
        "created_by": snooze.created_by,
        "created_at": _time(snooze.created_at),
        "expires_at": _time(snooze.expires_at),
        "lifted_by": snooze.lifted_by,
        "lifted_at": _time(snooze.lifted_at),
        "active": snooze.active(now),
    }


def identifiers(summary: PatientSummary) -> dict[str, str]:
    """Name and date of birth as lisguard last heard them (the record's, else its newest
    alert's), and the MRN with its assigning authority."""
    name = birth = ""
    if summary.state is not None:
        name, birth = summary.state.name, summary.state.birth_date
    for record in summary.alerts:  # newest first
        if name and birth:
            break
        name = name or record.alert.patient_name
        birth = birth or record.alert.birth_date
    mrn, _, authority = summary.key.partition("^")
    return {"name": name, "birth_date": birth, "mrn": mrn, "authority": authority}


def patient_view(summary: PatientSummary, now: datetime) -> dict[str, Any]:
    state = summary.state
    return {
        "patient_key": summary.key,
        # two identifiers before anything is done for a patient (name, DOB; MRN^authority)
        "identifiers": identifiers(summary),
        # the key asked for when it is a retired identifier, merged into patient_key
        "requested_key": summary.requested or None,
        "on_file": state is not None,
        "exposures": [
            {
                "drug": line.drug,
                "name": line.name,
                "first_point": _time(line.exposure.first_point),
                "last_point": _time(line.exposure.last_point),
                "last_dose": _time(line.exposure.last_dose),
                "planned_start": _time(line.exposure.planned_start),
                "window_end": _time(line.window_end),
                "kinds": list(line.exposure.kinds),
                "evidence": [e.model_dump(mode="json") for e in line.exposure.evidence],
            }
            for line in summary.exposures
        ],
        # IVIG, SCIG, RhIG: passive antibodies (ig-passive-antibody) and IVIG prophylaxis
        "immunoglobulin_products": [
            {
                "drug": line.drug,
                "name": line.name,
                "drug_class": line.drug_class,
                "last_dose": _time(line.exposure.last_dose),
                "doses": line.exposure.doses,
                "grams": line.exposure.grams,
                "window_end": _time(line.window_end),
                "kinds": list(line.exposure.kinds),
            }
            for line in summary.products
        ],
        "hbv": [
            {
                "marker": r.marker,
                "time": _time(r.time),
                "value": r.value,
                "reactive": r.reactive,
                "pending": r.pending,
                "message": r.message,
            }
            for r in summary.hbv
        ],
        "immunoglobulins": [
            {
                "test": r.test,
                "time": _time(r.time),
                "value": r.value,
                "units": r.units,
                "mg_dl": r.mg_dl,
                "low": r.low,
                "flags": list(r.flags),
                "below_range": r.below_range,
                "message": r.message,
            }
            for r in summary.immunoglobulins
        ],
        "typings": [t.model_dump(mode="json") for t in summary.typings],
        "pretreatment_typing": summary.pretreatment_typing,
        "k_status": summary.k_status,
        "isotypes": [i.model_dump(mode="json") for i in summary.isotypes],
        "own_isotype": summary.own_isotype,
        # identifiers merged into this record (aliases: messages using them land here) and
        # records linked to it (ADT^A24: the rules read their exposures and typing too)
        "merged_from": list(state.merged_from) if state is not None else [],
        "linked": list(state.linked) if state is not None else [],
        "alerts": [alert_view(r) for r in summary.alerts],
        "snoozes": [snooze_view(s, now) for s in summary.snoozes],
    }


def meanings() -> dict[str, str]:
    return {r.value: RECOMMENDATION_TEXT[r] for r in Recommendation}
