"""`GET /api/alerts?audience=` and the patient view's immunoglobulin sections over real HTTP, on
every backend (memory, SQLite, PostgreSQL): the alert API mounted on the test's store, alerts and
patient states written directly, and alerts stored before audiences existed (no `audience` in
their JSON) read as their rule's audience."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from lisguard.domain.alerts import Alert, Audience, Recommendation, RuleId, Severity, alert_id
from lisguard.domain.facts import MessageKey
from lisguard.domain.knowledge import KnowledgeBase, load_knowledge_base
from lisguard.domain.patient import Exposure, ImmunoglobulinResult, PatientState, SerologyResult
from lisguard.services import Ingestor
from lisguard.settings import HttpSettings
from lisguard.store.base import NewMessage, Store
from lisguard.store.desk import AlertQuery
from lisguard.transport.http import start_http
from lisguard.web import routes

from .conftest import Backend

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
# an immunoglobulin product of the test's own: the base knowledge's products may change
SITE_IVIG = "drugs:\n  - id: test_ivig\n    name: Testagam 10% (IVIG)\n    drug_class: ivig\n"


def alert(
    rule: RuleId,
    audience: Audience,
    patient: str,
    *,
    location: str = "4W",
    recs: tuple[Recommendation, ...] = (Recommendation.DTT_TREATED_REAGENT_CELLS,),
) -> Alert:
    key = f"{patient}^HOSP"
    return Alert(
        id=alert_id(key, rule, "ORD1"),
        rule=rule,
        patient=patient,
        patient_authority="HOSP",
        message=f"M-{patient}",
        order="ORD1",
        severity=Severity.MEDIUM,
        recommendations=recs,
        text="text",
        location=location,
        audience=audience,
    )


BENCH = alert(RuleId.BB_SEROLOGY, Audience.BLOOD_BANK, "BENCH")
# baseline-workup asks only for the HBV screen: the clinic's, not its rule's blood bank
HBV = alert(
    RuleId.BASELINE_WORKUP,
    Audience.CLINIC,
    "HBV",
    recs=(Recommendation.HBV_SCREEN_BEFORE_FIRST_DOSE,),
)
PROPHYLAXIS = alert(RuleId.IVIG_PROPHYLAXIS, Audience.CLINIC, "IVIG", location="MYELOMA")
SEROLOGY = alert(RuleId.IG_PASSIVE_ANTIBODY, Audience.SEROLOGY, "SERO")
# stored by an older release: no `audience` key in the stored JSON
OLD_SPEP = alert(RuleId.SPEP_IFE, Audience.PROTEIN_LAB, "OLDSPEP")
OLD_FLOW = alert(RuleId.FLOW_MRD, Audience.FLOW_LAB, "OLDFLOW")
OLD_BASELINE = alert(RuleId.BASELINE_WORKUP, Audience.CLINIC, "OLDBASE")  # reads as blood bank
OLD = (OLD_SPEP, OLD_FLOW, OLD_BASELINE)
ALL = (BENCH, HBV, PROPHYLAXIS, SEROLOGY, *OLD)


async def add_alerts(store: Store, *alerts: Alert) -> None:
    async with store.transaction() as tx:
        message_id = await tx.add_message(
            NewMessage(
                raw=b"MSH|...",
                content_hash=f"h-{alerts[0].id}",
                received_at=T0,
                ack="MSA|AA",
                outcome="AA",
                key=MessageKey("LAB", "HOSP", f"C-{alerts[0].id}"),
            )
        )
        await tx.add_alerts(alerts, message_id=message_id, created_at=T0)


@pytest.fixture
def kb(tmp_path: Path) -> KnowledgeBase:
    site = tmp_path / "site-ivig.yaml"
    site.write_text(SITE_IVIG)
    return load_knowledge_base([site])


class Api:
    def __init__(self, session: aiohttp.ClientSession, base: str) -> None:
        self.session, self.base = session, base

    async def get(self, path: str) -> tuple[int, Any]:
        async with self.session.get(self.base + path) as resp:
            return resp.status, json.loads(await resp.text())


@pytest.fixture
async def api(store: Store, kb: KnowledgeBase) -> AsyncIterator[Api]:
    """The alert API on the test's store, on a real port of 127.0.0.1."""
    ingestor = Ingestor(store, kb)
    runner = await start_http(
        ingestor,
        HttpSettings(host="127.0.0.1", port=0, auth_required=False),
        extensions=[partial(routes.install, ingestor=ingestor)],
    )
    port = next(a[1] for a in runner.addresses if isinstance(a, tuple))
    try:
        async with aiohttp.ClientSession() as session:
            yield Api(session, f"http://127.0.0.1:{port}")
    finally:
        await runner.cleanup()


@pytest.fixture
async def stored(store: Store, db: Backend) -> None:
    for a in ALL:
        await add_alerts(store, a)
    for a in OLD:
        await db.forget_alert_key(a.id, "audience")


def ids(body: dict[str, Any]) -> set[str]:
    return {view["id"] for view in body["alerts"]}


# ---------------------------------------------------------------- the store's search


@pytest.mark.usefixtures("stored")
async def test_search_filters_on_audience_and_old_alerts_read_as_their_rules(
    store: Store,
) -> None:
    async def found(*audiences: str) -> set[str]:
        return {r.alert.id for r in await store.desk.search(AlertQuery(audiences=audiences))}

    assert await found() == {a.id for a in ALL}
    assert await found("clinic") == {HBV.id, PROPHYLAXIS.id}
    assert await found("blood_bank") == {BENCH.id, OLD_BASELINE.id}  # the old one: its rule's
    assert await found("protein_lab") == {OLD_SPEP.id}
    assert await found("flow_lab") == {OLD_FLOW.id}
    assert await found("serology", "clinic") == {SEROLOGY.id, HBV.id, PROPHYLAXIS.id}
    both = AlertQuery(audiences=("clinic",), location="MYELOMA")
    assert [r.alert.id for r in await store.desk.search(both)] == [PROPHYLAXIS.id]
    record = await store.desk.get(OLD_SPEP.id)
    assert record is not None and record.alert.audience == Audience.PROTEIN_LAB


# ---------------------------------------------------------------- the API


@pytest.mark.usefixtures("stored")
async def test_api_audience_filter(api: Api) -> None:
    status, body = await api.get("/api/alerts?audience=clinic")
    assert status == 200 and ids(body) == {HBV.id, PROPHYLAXIS.id}
    by_id = {v["id"]: v for v in body["alerts"]}
    assert by_id[HBV.id]["alert"]["audience"] == "clinic"
    assert by_id[HBV.id]["audience_title"] == "Clinic"

    _, body = await api.get("/api/alerts?audience=blood_bank,serology")
    assert ids(body) == {BENCH.id, OLD_BASELINE.id, SEROLOGY.id}
    _, body = await api.get("/api/alerts?audience=protein_lab&audience=flow_lab")
    assert ids(body) == {OLD_SPEP.id, OLD_FLOW.id}
    _, body = await api.get("/api/alerts?audience=%20clinic%20,clinic")  # spaces, repeats
    assert ids(body) == {HBV.id, PROPHYLAXIS.id}
    _, body = await api.get("/api/alerts?audience=")  # empty: no filter, like rule=
    assert ids(body) == {a.id for a in ALL}
    _, body = await api.get("/api/alerts?audience=clinic&rule=baseline-workup")
    assert ids(body) == {HBV.id}


@pytest.mark.usefixtures("stored")
async def test_api_old_alerts_show_their_rules_audience(api: Api) -> None:
    """Stored without `audience`: the view says the rule's, in JSON and in words."""
    _, body = await api.get("/api/alerts?audience=protein_lab")
    [view] = body["alerts"]
    assert view["id"] == OLD_SPEP.id
    assert (view["alert"]["audience"], view["audience_title"]) == ("protein_lab", "Protein lab")
    status, view = await api.get(f"/api/alerts/{OLD_BASELINE.id}")
    assert status == 200
    assert (view["alert"]["audience"], view["audience_title"]) == ("blood_bank", "Blood bank")


@pytest.mark.parametrize("query", ["audience=nursing", "audience=clinic,Clinic", "audience=,"])
async def test_api_unknown_audience_is_400_naming_the_allowed_ones(api: Api, query: str) -> None:
    status, body = await api.get(f"/api/alerts?{query}")
    assert status == 400 and body["status"] == 400
    for allowed in Audience:
        assert allowed.value in body["error"]


async def test_meta_lists_the_audiences_with_their_titles(api: Api) -> None:
    _, meta = await api.get("/api/meta")
    assert meta["audiences"] == [
        {"id": "blood_bank", "title": "Blood bank"},
        {"id": "serology", "title": "Serology"},
        {"id": "clinic", "title": "Clinic"},
        {"id": "protein_lab", "title": "Protein lab"},
        {"id": "flow_lab", "title": "Flow lab"},
    ]
    titles = {r["id"]: r["title"] for r in meta["rules"]}
    assert titles["ig-passive-antibody"] == "Passive antibody from immunoglobulin (IVIG/SCIG/RhIG)"
    assert titles["ivig-prophylaxis"] == "Bispecific started without IVIG prophylaxis"
    assert titles["hypogammaglobulinemia"] == (
        "Low immunoglobulins on anti-CD38 or bispecific therapy"
    )
    assert titles["positive-dat"] == "Positive DAT on therapy or after immunoglobulin"
    for rule in RuleId:
        assert rule.value in titles
    assert meta["recommendations"]["PASSIVE_ANTIBODY_FROM_IG"].startswith("Immunoglobulin")


# ---------------------------------------------------------------- the patient view


def patient_state() -> PatientState:
    return PatientState(
        key="MRN77^HOSP",
        exposures={
            "test_ivig": Exposure(
                drug="test_ivig",
                first_point=datetime(2026, 1, 5, 9, 0),
                last_point=datetime(2026, 2, 2, 9, 0),
                last_dose=datetime(2026, 2, 2, 9, 0),
                kinds=["administration"],
                doses=2,
                grams=70.0,
            ),
            "daratumumab_iv": Exposure(
                drug="daratumumab_iv",
                first_point=datetime(2026, 1, 10, 9, 0),
                last_point=datetime(2026, 2, 20, 9, 0),
                last_dose=datetime(2026, 2, 20, 9, 0),
                kinds=["administration"],
                doses=3,
            ),
        },
        hbv=[
            SerologyResult(
                marker="hbsag",
                time=datetime(2026, 1, 4, 8, 0),
                value="Nonreactive",
                reactive=False,
                message="HBV1",
            ),
            SerologyResult(
                marker="anti_hbc",
                time=datetime(2026, 1, 4, 8, 0),
                value="Reactive",
                reactive=True,
                message="HBV1",
            ),
        ],
        immunoglobulins={
            "igm": ImmunoglobulinResult(test="igm", time=datetime(2026, 2, 1), value=12.0),
            "igg": ImmunoglobulinResult(
                test="igg",
                time=datetime(2026, 2, 1, 7, 30),
                value=3.1,
                units="g/L",
                mg_dl=310.0,
                low=7.0,
                flags=["L"],
                below_range=True,
                message="IGG1",
            ),
        },
    )


async def test_patient_view_shows_products_hbv_and_immunoglobulins(api: Api, store: Store) -> None:
    async with store.transaction() as tx:
        await tx.save_patient(patient_state())
    status, p = await api.get("/api/patients/MRN77%5EHOSP")
    assert status == 200
    # the product is not a therapeutic-antibody exposure: its own table
    assert [e["drug"] for e in p["exposures"]] == ["daratumumab_iv"]
    [product] = p["immunoglobulin_products"]
    assert product == {
        "drug": "test_ivig",
        "name": "Testagam 10% (IVIG)",
        "drug_class": "ivig",
        "last_dose": "2026-02-02T09:00:00",
        "doses": 2,
        "grams": 70.0,
        "window_end": "2026-05-02T09:00:00",  # the passive window: 3 months from the dose
        "kinds": ["administration"],
    }
    assert [(h["marker"], h["value"], h["reactive"]) for h in p["hbv"]] == [
        ("anti_hbc", "Reactive", True),
        ("hbsag", "Nonreactive", False),
    ]
    assert [i["test"] for i in p["immunoglobulins"]] == ["igg", "igm"]  # IgG, IgA, IgM order
    igg = p["immunoglobulins"][0]
    assert (igg["value"], igg["units"], igg["mg_dl"], igg["below_range"]) == (
        3.1,
        "g/L",
        310.0,
        True,
    )
    assert igg["time"] == "2026-02-01T07:30:00" and igg["flags"] == ["L"]
    igm = p["immunoglobulins"][1]
    assert (igm["units"], igm["mg_dl"], igm["below_range"]) == ("", None, None)


async def test_patient_view_without_immunoglobulin_data(api: Api, store: Store) -> None:
    async with store.transaction() as tx:
        await tx.save_patient(PatientState(key="MRN78^HOSP"))
    _, p = await api.get("/api/patients/MRN78%5EHOSP")
    assert (p["immunoglobulin_products"], p["hbv"], p["immunoglobulins"]) == ([], [], [])
