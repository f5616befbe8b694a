"""The special-requirements slip over real TCP (issue 16 item 5): HL7 v2 over MLLP makes the
patients exposed, GET /api/patients/{key}/slip answers with the two identifiers, the therapies
with last dose and window end and the knowledge base's instructions; only technologists and
managers (and admins) get it, and each print is audited naming the user and the patient."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from lisguard.domain.alerts import RECOMMENDATION_TEXT, Recommendation
from lisguard.domain.context import add_months
from lisguard.store.audit_search import AuditQuery
from lisguard.web.print_slip import ABO_RHD_UNAFFECTED, EMERGENCY, KNOWN_K_POSITIVE, NO_BASELINE
from tests.conftest import ServiceFactory
from tests.e2e.print_support import (
    DARATUMUMAB,
    PHENOTYPE,
    PRIVIGEN,
    SCREEN,
    get,
    message,
    secured,
    send,
)

R = Recommendation
SLIP = "/api/patients/{}/slip"


def codes(slip: dict[str, Any]) -> dict[str, list[str | None]]:
    return {s["id"]: [i["code"] for i in s["items"]] for s in slip["requirements"]}


def texts(slip: dict[str, Any]) -> list[str]:
    return [i["text"] for s in slip["requirements"] for i in s["items"]]


async def test_slip_of_a_patient_on_daratumumab_with_a_baseline_phenotype(
    service_factory: ServiceFactory,
) -> None:
    svc, tokens = await secured(service_factory)
    await send(
        svc,
        message(PHENOTYPE, "SLIP1", 30),  # before the first dose: a baseline
        message(DARATUMUMAB, "SLIP1", 10),
        message(SCREEN, "SLIP1", 0.1),
    )
    status, slip = await get(svc, SLIP.format("SLIP1%5EHOSP"), tokens["technologist"])
    assert status == 200, slip
    assert slip["identifiers"] == {
        "name": "NORDQVIST, ASTRID L",
        "birth_date": "1955-04-12",
        "mrn": "SLIP1",
        "authority": "HOSP",
    }
    (therapy,) = slip["therapies"]
    assert (therapy["drug"], therapy["class_title"], therapy["in_window"]) == (
        "daratumumab_iv",
        "anti-CD38",
        True,
    )
    last_dose = datetime.fromisoformat(therapy["last_dose"])
    assert abs(last_dose - (datetime.now() - timedelta(days=10))) < timedelta(minutes=5)
    assert therapy["window_end"] == add_months(last_dose, 6).isoformat()
    assert codes(slip) == {
        "serology": ["DTT_TREATED_REAGENT_CELLS", "POSITIVE_DAT_MAY_BE_THERAPY"],
        "units": ["KELL_NEGATIVE_UNITS", "PHENOTYPE_MATCHED_UNITS", None, None],
        "spep_ife": ["DRUG_SPECIFIC_IFE_REFLEX", "MASS_SPEC_MPROTEIN"],
        "flow": ["CD38_INDEPENDENT_GATING"],
    }
    # the knowledge base's words, not new ones
    assert RECOMMENDATION_TEXT[R.DTT_TREATED_REAGENT_CELLS] in texts(slip)
    assert RECOMMENDATION_TEXT[R.DRUG_SPECIFIC_IFE_REFLEX] in texts(slip)
    assert {ABO_RHD_UNAFFECTED, EMERGENCY} <= set(texts(slip))
    assert (slip["k_status"], slip["pretreatment_typing"]) == ("negative", True)
    assert slip["verify"] == "Verify two identifiers before issue"
    assert slip["printed_by"] == "technologist-jo"
    assert datetime.fromisoformat(slip["printed_at"]).tzinfo is not None
    assert slip["version"]["lisguard"] == "0.1.0"
    assert len(slip["version"]["knowledge_base"]) == 12
    assert slip["version"]["default_window_months"] == 6

    events = await svc.store.access.search_audit(AuditQuery(patient="SLIP1^HOSP", limit=50))
    printed = [e.event for e in events if e.event.kind == "patient.slip_printed"]
    assert len(printed) == 1
    assert printed[0].actor == "technologist-jo"
    assert printed[0].detail["patient"] == "SLIP1^HOSP"
    assert printed[0].detail["purpose"] == "print"
    reads = [e.event for e in events if e.event.kind == "phi.read"]
    assert [r.subject for r in reads] == ["/api/patients/SLIP1^HOSP/slip"]  # the middleware's


async def test_known_k_positive_no_baseline_and_immunoglobulin(
    service_factory: ServiceFactory,
) -> None:
    svc, tokens = await secured(service_factory)
    await send(
        svc,
        message(DARATUMUMAB, "SLIP2", 20),
        message(PHENOTYPE, "SLIP2", 5, k="POS"),  # typed after the first dose: no baseline
        message(PRIVIGEN, "SLIP3", 20, name="LINDQVIST^BO", dob="19480101"),
    )
    _, k_positive = await get(svc, SLIP.format("SLIP2%5EHOSP"), tokens["manager"])
    assert k_positive["k_status"] == "positive" and not k_positive["pretreatment_typing"]
    units = next(s for s in k_positive["requirements"] if s["id"] == "units")
    assert "KELL_NEGATIVE_UNITS" not in [i["code"] for i in units["items"]]
    assert units["items"][0]["text"] == KNOWN_K_POSITIVE
    baseline = units["items"][1]["text"]
    assert baseline.startswith(NO_BASELINE) and "RBC genotype if already dosed" in baseline
    assert k_positive["printed_by"] == "manager-jo"

    _, ivig = await get(svc, SLIP.format("SLIP3%5EHOSP"), tokens["technologist"])
    assert ivig["identifiers"]["name"] == "LINDQVIST, BO"
    assert ivig["therapies"] == []
    (product,) = ivig["immunoglobulin_products"]
    assert (product["class_title"], product["in_window"], product["doses"]) == ("IVIG", True, 1)
    last = datetime.fromisoformat(product["last_dose"])
    assert product["window_end"] == add_months(last, 3).isoformat()
    assert codes(ivig) == {
        "serology": ["POSITIVE_DAT_MAY_BE_THERAPY"],
        "immunoglobulin": ["PASSIVE_ANTIBODY_FROM_IG"],
    }  # passive antibody, but no DTT: the drug is not anti-CD38


async def test_a_window_that_ended_asks_for_nothing(service_factory: ServiceFactory) -> None:
    svc, tokens = await secured(service_factory)
    await send(svc, message(DARATUMUMAB, "SLIP4", 250))
    _, slip = await get(svc, SLIP.format("SLIP4%5EHOSP"), tokens["technologist"])
    (therapy,) = slip["therapies"]
    assert therapy["in_window"] is False and therapy["window_end"]
    assert slip["any_in_window"] is False and slip["requirements"] == []


async def test_only_technologists_and_managers_get_a_slip(
    service_factory: ServiceFactory,
) -> None:
    svc, tokens = await secured(service_factory)
    await send(svc, message(DARATUMUMAB, "SLIP5", 3))
    path = SLIP.format("SLIP5%5EHOSP")
    assert (await get(svc, path, None))[0] == 401
    assert (await get(svc, path, "lg_not-a-token"))[0] == 401
    for role in ("sender", "metrics"):
        status, body = await get(svc, path, tokens[role])
        assert status == 403 and body["status"] == 403, role
    for role in ("technologist", "manager", "admin"):
        assert (await get(svc, path, tokens[role]))[0] == 200, role
    status, body = await get(svc, SLIP.format("NOBODY%5EHOSP"), tokens["technologist"])
    assert status == 404 and "NOBODY" in body["error"]
    printed = await svc.store.access.search_audit(
        AuditQuery(kinds=("patient.slip_printed",), limit=50)
    )
    assert sorted(e.event.actor for e in printed) == [
        "admin-jo",
        "manager-jo",
        "technologist-jo",
    ]  # the refused ones printed nothing
