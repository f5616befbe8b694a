"""CDS Hooks 2.0 (cds-hooks.hl7.org) inside `lisguard serve`: cards while a clinician orders.

- `GET /cds-services`: the discovery document, `order-select` and `order-sign` services with
  prefetch templates for the Patient (its identifiers key it) and the EHR's medication history;
- `POST /cds-services/{id}`: the EHR's JWT is verified (lisguard.web.cds_auth), the draft orders
  become a ClinicalMessage (lisguard.fhir.orders), the patient's stored state is loaded as
  ingest loads it (the survivor of a retired identifier, linked records), the prefetched history
  is applied to a copy, and lisguard.domain.engine.evaluate runs the same rules as for HL7 v2.
  Its alerts become cards (lisguard.fhir.cards); its new states are thrown away: a draft may
  never be signed, so a card call writes no patient state and no alert, only its audit event.
  `order-select` answers for the selected orders: what the drafts raise with them and not
  without them;
- `POST /cds-services/{id}/feedback`: each card's outcome (accepted, overridden with its
  reason, ignored) as an audit event naming the card, its rule and the patient key.

The lisguard token middleware treats these routes as public (they are not under /api/): the
JWT is their credential, checked here on every call but discovery, which holds no patient data.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import structlog
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from lisguard.domain.alerts import SEVERITY_RANK, Alert
from lisguard.domain.engine import (
    MAX_ALIAS_HOPS,
    evaluate,
    keys_to_follow,
    patient_keys,
    resolve,
)
from lisguard.domain.facts import ClinicalMessage, PatientId
from lisguard.domain.knowledge import KnowledgeBase
from lisguard.domain.knowledge_holder import KnowledgeHolder
from lisguard.domain.patient import PatientState
from lisguard.fhir.cards import card
from lisguard.fhir.orders import Drafts, FhirInputError, patient_id, read_drafts, read_history
from lisguard.services import Ingestor
from lisguard.settings import CdsSettings
from lisguard.store.base import AuditEvent, Store
from lisguard.web.cds_auth import CdsAuthError, CdsClient, CdsKeysUnavailable, JwtVerifier
from lisguard.web.views import RULE_TITLES

log = structlog.get_logger("lisguard.cds")

PREFETCH = {
    "patient": "Patient/{{context.patientId}}",
    "medicationRequests": "MedicationRequest?patient={{context.patientId}}",
    "medicationAdministrations": "MedicationAdministration?patient={{context.patientId}}",
}
SERVICES: dict[str, dict[str, Any]] = {
    "lisguard-order-select": {
        "hook": "order-select",
        "title": "lisguard: anti-CD38, bispecific and immunoglobulin laboratory advice",
        "description": (
            "As a test or drug is picked: what the laboratory needs for a patient on anti-CD38"
            " antibodies, bispecifics or immunoglobulin (DTT-treated cells, K-negative units,"
            " drug-specific IFE, baseline work-up before the first dose)."
        ),
    },
    "lisguard-order-sign": {
        "hook": "order-sign",
        "title": "lisguard: laboratory work-up before signing",
        "description": (
            "Before orders are signed: the baseline type & screen, extended phenotype and HBV"
            " serology before a first anti-CD38 dose, IVIG prophylaxis with a bispecific, and"
            " the blood bank's needs for a treated patient; suggestions create the orders."
        ),
    },
}
OUTCOMES = ("accepted", "overridden", "ignored")  # CDS Hooks 2.0 sends the first two
MAX_ISSUED = 10_000  # card uuids remembered for their feedback (in this process)
UNMATCHED_AUTHORITY = "urn:lisguard:unmatched"  # never a stored key: nothing is looked up


class HookContext(BaseModel):
    model_config = ConfigDict(extra="allow")

    userId: str = Field(default="", max_length=200)
    patientId: str = Field(min_length=1, max_length=200)
    selections: list[str] = Field(default_factory=list)
    draftOrders: dict[str, Any]


class HookRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    hook: str
    hookInstance: str = Field(min_length=1, max_length=200)
    context: HookContext
    prefetch: dict[str, Any] | None = None


class OverrideReason(BaseModel):
    model_config = ConfigDict(extra="allow")

    reason: dict[str, Any] | None = None  # a Coding from the card's overrideReasons
    userComment: str | None = None


class FeedbackItem(BaseModel):
    model_config = ConfigDict(extra="allow")

    card: str = Field(min_length=1, max_length=200)
    outcome: str
    acceptedSuggestions: list[dict[str, Any]] = Field(default_factory=list)
    overrideReason: OverrideReason | None = None
    outcomeTimestamp: str = Field(default="", max_length=64)


class Feedback(BaseModel):
    model_config = ConfigDict(extra="allow")

    feedback: list[FeedbackItem] = Field(min_length=1, max_length=100)


@dataclass
class CdsService:
    store: Store
    knowledge: KnowledgeHolder  # the holder: a reload swaps its kb (one kb per call: _cards)
    settings: CdsSettings
    verifier: JwtVerifier
    public_url: str
    # a draft is dated at the request, in the wall-clock time the feeds' naive times use
    clock: Callable[[], datetime] = field(default=lambda: datetime.now().replace(microsecond=0))
    issued: OrderedDict[str, dict[str, str]] = field(default_factory=OrderedDict)

    @property
    def kb(self) -> KnowledgeBase:
        return self.knowledge.kb

    def remember(self, uuid: str, what: dict[str, str]) -> None:
        self.issued[uuid] = what
        while len(self.issued) > MAX_ISSUED:
            self.issued.popitem(last=False)


CDS: web.AppKey[CdsService] = web.AppKey("cds_service", CdsService)


def error(status: int, message: str, **headers: str) -> web.Response:
    return web.json_response({"error": message, "status": status}, status=status, headers=headers)


async def audit(store: Store, events: list[AuditEvent]) -> None:
    async with store.transaction() as tx:
        await tx.add_audit(events)


async def load_states(store: Store, msg: ClinicalMessage) -> dict[str, PatientState]:
    """The states `evaluate` reads, as ingest loads them (lisguard.services), but read only:
    nothing is locked, nothing is written."""
    states: dict[str, PatientState] = {}
    tried: set[str] = set()
    wanted = patient_keys(msg)
    for _ in range(MAX_ALIAS_HOPS + 1):
        for key in wanted:
            tried.add(key)
            state = await store.get_patient(key)
            if state is not None:
                states[key] = state
        lock, read = keys_to_follow(msg, states)
        wanted = [k for k in (*lock, *read) if k not in tried]
        if not wanted:
            break
    return states


async def discovery(request: web.Request) -> web.Response:
    if not request.app[CDS].settings.enabled:
        return error(404, "CDS Hooks is switched off (cds.enabled)")
    services = [{**s, "id": sid, "prefetch": PREFETCH} for sid, s in SERVICES.items()]
    return web.json_response({"services": services})


async def _client(request: web.Request, svc: CdsService) -> CdsClient | web.Response:
    service_id = request.match_info["service_id"]
    if not svc.settings.enabled:
        return error(404, "CDS Hooks is switched off (cds.enabled)")
    if service_id not in SERVICES:
        return error(404, f"no CDS service {service_id!r}: one of {', '.join(SERVICES)}")
    try:
        return await svc.verifier.verify(request.headers.get("Authorization", ""), service_id)
    except CdsAuthError as exc:
        client = request.remote or "unknown"
        log.warning("cds_auth_failed", reason=str(exc), client=client)
        await audit(
            svc.store,
            [
                AuditEvent(
                    "auth.failed",
                    datetime.now(UTC),
                    "anonymous",
                    client,
                    {"path": request.path, "reason": str(exc)},
                )
            ],
        )
        return error(401, str(exc), **{"WWW-Authenticate": 'Bearer error="invalid_token"'})
    except CdsKeysUnavailable as exc:
        log.error("cds_keys_unavailable", error=str(exc))
        return error(503, "the EHR's keys cannot be read: no card can be trusted now")


class NotJson(Exception):
    """The body is not JSON (400)."""


async def _json(request: web.Request) -> Any:
    try:
        return json.loads(await request.read())
    except ValueError:
        raise NotJson from None


def _invalid(exc: ValidationError) -> web.Response:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"])
    return error(400, f"{where}: {first['msg']}")


async def call_service(request: web.Request) -> web.Response:
    svc = request.app[CDS]
    client = await _client(request, svc)
    if isinstance(client, web.Response):
        return client
    service_id = request.match_info["service_id"]
    try:
        hook = HookRequest.model_validate(await _json(request))
    except ValidationError as exc:
        return _invalid(exc)
    except NotJson:
        return error(400, "the body is not JSON")
    if hook.hook != SERVICES[service_id]["hook"]:
        return error(400, f"{service_id} answers {SERVICES[service_id]['hook']}, not {hook.hook}")
    try:
        cards, key = await _cards(svc, hook)
    except FhirInputError as exc:
        return error(400, str(exc))
    await audit(
        svc.store,
        [
            AuditEvent(
                "cds.cards",
                datetime.now(UTC),
                client.issuer,
                hook.hookInstance,
                {
                    "patient": key,
                    "service": service_id,
                    "client": client.subject,
                    "user": hook.context.userId,
                    "cards": [
                        {"uuid": c["uuid"], "rule": c["source"]["topic"]["code"]} for c in cards
                    ],
                },
            )
        ],
    )
    for c in cards:
        svc.remember(
            c["uuid"], {"patient": key, "rule": c["source"]["topic"]["code"], "service": service_id}
        )
    return web.json_response({"cards": cards})


async def _cards(svc: CdsService, hook: HookRequest) -> tuple[list[dict[str, Any]], str]:
    """The cards for this call, and the patient key they are about ("" when unmatched)."""
    ctx, now, kb = hook.context, svc.clock(), svc.kb
    prefetch: Mapping[str, Any] = hook.prefetch or {}
    patient = patient_id(prefetch.get("patient"), kb.identity)
    matched = patient is not None
    if patient is None:  # judged on the request alone: an empty state
        patient = PatientId(ctx.patientId, UNMATCHED_AUTHORITY)

    def drafts_without(leave_out: frozenset[str] = frozenset()) -> Drafts:
        return read_drafts(
            ctx.draftOrders,
            patient,
            hook_instance=hook.hookInstance,
            hook=hook.hook,
            now=now,
            leave_out=leave_out,
        )

    drafts = drafts_without()
    states = await load_states(svc.store, drafts.message) if matched else {}
    history = read_history(
        prefetch, patient, hook_instance=hook.hookInstance, now=now, drafts=frozenset(drafts.orders)
    )
    if history is not None:  # the EHR's medication history, applied to a copy
        states = {**states, **evaluate(history, states, kb).states}
    alerts = evaluate(drafts.message, states, kb).alerts
    selected = frozenset(ctx.selections) & frozenset(drafts.orders)
    if hook.hook == "order-select" and selected:
        others = drafts_without(selected).message
        without = {a.id for a in evaluate(others, states, kb).alerts}
        alerts = [a for a in alerts if a.id not in without]
    key = resolve(patient.key, states) if matched else ""  # a retired id: its survivor
    return [_card(svc, a, ctx.patientId, key) for a in _by_severity(alerts)], key


def _by_severity(alerts: list[Alert]) -> list[Alert]:
    return sorted(alerts, key=lambda a: SEVERITY_RANK[a.severity], reverse=True)


def _card(svc: CdsService, alert: Alert, fhir_patient: str, key: str) -> dict[str, Any]:
    base = svc.public_url.rstrip("/")
    return card(
        alert,
        title=RULE_TITLES.get(alert.rule.value, alert.rule.value),
        # the page (it asks a clinician to log in), not the JSON API behind it
        source_url=f"{base}/#patient={quote(key, safe='')}" if key else f"{base}/",
        patient_ref=f"Patient/{fhir_patient}",
        matched=bool(key),
        hbv_markers=svc.kb.immunoglobulin.hbv_markers,
    )


async def feedback(request: web.Request) -> web.Response:
    svc = request.app[CDS]
    client = await _client(request, svc)
    if isinstance(client, web.Response):
        return client
    try:
        body = Feedback.model_validate(await _json(request))
    except ValidationError as exc:
        return _invalid(exc)
    except NotJson:
        return error(400, "the body is not JSON")
    at = datetime.now(UTC)
    events = []
    for item in body.feedback:
        if item.outcome not in OUTCOMES:
            return error(400, f"outcome {item.outcome!r}: one of {', '.join(OUTCOMES)}")
        known = svc.issued.get(item.card)
        detail: dict[str, Any] = {
            "patient": known["patient"] if known else "",
            "rule": known["rule"] if known else "",
            "service": request.match_info["service_id"],
            "client": client.subject,
            "outcome": item.outcome,
            "card_known": known is not None,
            "outcome_timestamp": item.outcomeTimestamp,
            "accepted_suggestions": [str(s.get("id", ""))[:200] for s in item.acceptedSuggestions],
        }
        if item.overrideReason is not None:
            reason = item.overrideReason.reason or {}
            detail["override_reason"] = {
                k: str(reason[k])[:200] for k in ("system", "code", "display") if k in reason
            }
            # a comment is free text a clinician typed: it may name anyone, so it is not kept
            detail["comment_given"] = bool(item.overrideReason.userComment)
        events.append(AuditEvent("cds.feedback", at, client.issuer, item.card, detail))
    await audit(svc.store, events)
    return web.json_response({})


def install(
    app: web.Application, *, ingestor: Ingestor, settings: CdsSettings, public_url: str
) -> None:
    """The discovery endpoint, the two services and their feedback (registered whether or not
    `cds.enabled`: off, each answers 404)."""
    audience = settings.audience or public_url.rstrip("/") + "/cds-services"
    app[CDS] = CdsService(
        ingestor.store, ingestor.knowledge, settings, JwtVerifier(settings, audience), public_url
    )
    r = app.router
    r.add_get("/cds-services", discovery)
    r.add_post("/cds-services/{service_id}", call_service)
    r.add_post("/cds-services/{service_id}/feedback", feedback)
