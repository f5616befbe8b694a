"""Alerts as FHIR R4 DetectedIssue, for systems that take FHIR (lisguard.fhir.resources).

- `GET /fhir/DetectedIssue?patient=...`: a searchset Bundle of the patient's production alerts,
  newest first (`_count`, default 100, at most 500). `patient` is a lisguard patient key
  (`MRN0001^HOSP`, as `GET /api/patients/{key}` takes), or an identifier `system|value`, keyed
  through the site's identity rules as a CDS Hooks Patient is (lisguard.fhir.orders). A retired
  identifier (merged away) gives its survivor's alerts, with those raised under the alias;
- `GET /fhir/DetectedIssue/{alert id}`: one DetectedIssue.

Role technologist, like the alert API (lisguard.web.auth.ROUTE_ROLES); each read is audited
before it answers as `phi.read`, naming the patient key. Errors are OperationOutcome.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from lisguard.domain.engine import MAX_ALIAS_HOPS
from lisguard.domain.identity import Identifier
from lisguard.domain.knowledge import KnowledgeBase
from lisguard.domain.knowledge_holder import KnowledgeHolder
from lisguard.fhir.resources import detected_issue, searchset
from lisguard.services import Ingestor
from lisguard.store.base import AuditEvent, Store
from lisguard.store.desk import AlertQuery, AlertRecord
from lisguard.web import auth
from lisguard.web.views import RULE_TITLES

FHIR_JSON = "application/fhir+json"
MAX_COUNT = 500


class FhirApi:
    def __init__(self, store: Store, knowledge: KnowledgeHolder, public_url: str) -> None:
        self.store, self.knowledge = store, knowledge  # the holder: a reload swaps its kb
        self.base = public_url.rstrip("/") + "/fhir"

    @property
    def kb(self) -> KnowledgeBase:
        return self.knowledge.kb

    @property
    def drug_names(self) -> dict[str, str]:
        return {d.id: d.name for d in self.kb.drugs.values()}

    def resource(self, record: AlertRecord) -> dict[str, Any]:
        alert = record.alert
        return detected_issue(
            alert,
            record.created_at,
            rule_title=RULE_TITLES.get(alert.rule.value, ""),
            drug_names=self.drug_names,
        )

    def patient_key(self, value: str) -> str:
        """A lisguard key as it is; `system|value` through the identity rules."""
        system, bar, ident = value.partition("|")
        if not bar:
            return value.strip()
        oid = system[8:] if system.lower().startswith("urn:oid:") else ""
        return self.kb.identity.normalise(Identifier(ident, system, oid)).key

    async def records(self, key: str, limit: int) -> tuple[str, list[AlertRecord]]:
        """The record's key (a retired identifier's survivor) and its production alerts."""
        state = await self.store.get_patient(key)
        for _ in range(MAX_ALIAS_HOPS):
            if state is None or state.alias_of is None:
                break
            key = state.alias_of
            state = await self.store.get_patient(key)
        keys = [key, *(state.merged_from if state is not None else ())]
        found: list[AlertRecord] = []
        for k in dict.fromkeys(keys):
            query = AlertQuery(patient=k, test=False, order="newest", limit=limit)
            found += await self.store.desk.search(query)
        found.sort(key=lambda r: r.created_at, reverse=True)
        return key, found[:limit]


FHIR: web.AppKey[FhirApi] = web.AppKey("fhir_api", FhirApi)


def fhir_response(body: dict[str, Any], status: int = 200) -> web.Response:
    return web.json_response(body, status=status, content_type=FHIR_JSON)


def outcome(status: int, code: str, text: str) -> web.Response:
    issue = {"severity": "error", "code": code, "diagnostics": text}
    return fhir_response({"resourceType": "OperationOutcome", "issue": [issue]}, status)


async def _audit_read(request: web.Request, patient: str) -> None:
    """As lisguard.web.auth audits reads of /api/alerts, with the patient key resolved."""
    detail: dict[str, object] = {"query": request.query_string, "patient": patient}
    event = AuditEvent(
        "phi.read", datetime.now(UTC), auth.acting_user(request), request.path, detail
    )
    async with request.app[FHIR].store.transaction() as tx:
        await tx.add_audit([event])


async def search(request: web.Request) -> web.Response:
    api = request.app[FHIR]
    value = request.query.get("patient") or request.query.get("patient.identifier") or ""
    if not value.strip():
        return outcome(400, "required", "search by patient: ?patient=<key> or system|value")
    try:
        count = int(request.query.get("_count", "100"))
    except ValueError:
        return outcome(400, "value", "_count must be a whole number")
    if not 1 <= count <= MAX_COUNT:
        return outcome(400, "value", f"_count must be between 1 and {MAX_COUNT}")
    key, records = await api.records(api.patient_key(value), count)
    await _audit_read(request, key)
    resources = [api.resource(r) for r in records]
    self_url = f"{api.base}/DetectedIssue?{request.query_string}"
    return fhir_response(searchset(resources, api.base, self_url))


async def read(request: web.Request) -> web.Response:
    api = request.app[FHIR]
    alert_id = request.match_info["alert_id"]
    record = await api.store.desk.get(alert_id)
    if record is None:
        return outcome(404, "not-found", f"no DetectedIssue {alert_id!r}")
    await _audit_read(request, record.alert.patient_key)
    return fhir_response(api.resource(record))


def install(app: web.Application, *, ingestor: Ingestor, public_url: str) -> None:
    app[FHIR] = FhirApi(ingestor.store, ingestor.knowledge, public_url)
    app.router.add_get("/fhir/DetectedIssue", search)
    app.router.add_get("/fhir/DetectedIssue/{alert_id}", read)
