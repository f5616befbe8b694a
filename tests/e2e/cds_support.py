"""What the CDS Hooks and FHIR tests share: an EHR's signing key and its JWTs, HL7 v2 feeds sent
over MLLP, the spec's request shapes, and a strict model of the CDS Hooks 2.0 response."""

from __future__ import annotations

import json
import time
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import aiohttp
import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from fhir.resources.R4B.servicerequest import ServiceRequest
from pydantic import BaseModel, ConfigDict, Field, model_validator

from lisguard.app import Service
from lisguard.transport.mllp import MllpClient, msa_code
from tests.conftest import ServiceFactory

ISSUER = "https://ehr.example.org"
AUDIENCE = "https://lisguard.example.org/cds-services"
HOSP_OID = "2.16.840.1.113883.3.9999.1"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
LOINC = "http://loinc.org"

DOSE = (
    "MSH|^~\\&|PHARM|HOSP|LISGUARD|BB|{day}090000||RAS^O17|RX-{mrn}|P|2.5.1\r"
    "PID|1||{mrn}^^^HOSP^MR||DOE^JANE\r"
    "PV1|1|O|INFUS\r"
    "ORC|RE|RXO-{mrn}\r"
    "RXA|0|1|{day}093000|{day}100000|J9145^daratumumab^HCPCS|1800|mg||||||||||||CP\r"
)


def dose(mrn: str, days_ago: int = 7) -> str:
    """A daratumumab dose given a week ago: its interference window is open today."""
    day = (datetime.now() - timedelta(days=days_ago)).strftime("%Y%m%d")
    return DOSE.format(mrn=mrn, day=day)


SCREEN = (
    "MSH|^~\\&|LAB|HOSP|LISGUARD|BB|{day}081500||ORM^O01|SCR-{order}|P|2.5.1\r"
    "PID|1||{mrn}^^^HOSP^MR||DOE^JANE\r"
    "PV1|1|O|4W\r"
    "ORC|NW|{order}\r"
    "OBR|1|{order}||890-4^Antibody screen^LN|||{day}081000\r"
)


def screen(mrn: str, order: str) -> str:
    """An antibody screen ordered today."""
    return SCREEN.format(mrn=mrn, order=order, day=datetime.now().strftime("%Y%m%d"))
KNOWN = (  # a hepatitis B result for a patient on no drug: lisguard knows them, unexposed
    "MSH|^~\\&|LAB|HOSP|LISGUARD|BB|20260302081500||ORU^R01|HBV-{mrn}|P|2.5.1\r"
    "PID|1||{mrn}^^^HOSP^MR||ROE^RICHARD\r"
    "OBR|1|HBV-{mrn}||5196-1^HBsAg^LN|||20260302081000\r"
    "OBX|1|ST|5196-1^HBsAg^LN||Nonreactive||||||F\r"
)


class EhrKey:
    """The EHR's RS384 key pair; its public half as a JWKS file."""

    def __init__(self, kid: str = "ehr-key-1") -> None:
        self.kid = kid
        self.private = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def jwks(self) -> dict[str, Any]:
        public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.private.public_key()))
        return {"keys": [{**public, "kid": self.kid, "alg": "RS384", "use": "sig"}]}

    def write(self, path: Path) -> Path:
        path.write_text(json.dumps(self.jwks()))
        return path

    def token(self, *, headers: dict[str, Any] | None = None, **claims: Any) -> str:
        now = int(time.time())
        body = {
            "iss": ISSUER,
            "sub": "ehr-client-1",
            "aud": AUDIENCE,
            "exp": now + 240,
            "iat": now,
            "jti": str(uuid.uuid4()),
            **claims,
        }
        body = {k: v for k, v in body.items() if v is not None}
        return jwt.encode(
            body, self.private, algorithm="RS384", headers={"kid": self.kid, **(headers or {})}
        )


def site_file(tmp_path: Path) -> Path:
    """The site's identity rules: the EHR's OID system is the lab's HOSP register."""
    path = tmp_path / "site.yaml"
    path.write_text(
        f'identity:\n  authorities:\n    - [HOSP, "urn:oid:{HOSP_OID}", "{HOSP_OID}"]\n'
    )
    return path


async def cds_service(factory: ServiceFactory, tmp_path: Path, key: EhrKey, **cds: Any) -> Service:
    svc: Service = await factory(
        http={"auth_required": True},
        knowledge={"files": [site_file(tmp_path)]},
        cds={
            "enabled": True,
            "jwks_file": key.write(tmp_path / "ehr-jwks.json"),
            "issuers": [ISSUER],
            "audience": AUDIENCE,
            **cds,
        },
    )
    return svc


async def send_mllp(svc: Service, *messages: str) -> None:
    assert svc.mllp_port is not None
    async with MllpClient("127.0.0.1", svc.mllp_port, timeout=20) as client:
        for message in messages:
            assert msa_code(await client.send(message.encode())) == "AA"


def patient(mrn: str, fhir_id: str = "1288992") -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "id": fhir_id,
        "identifier": [
            {
                "use": "usual",
                "type": {
                    "coding": [
                        {"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}
                    ]
                },
                "system": f"urn:oid:{HOSP_OID}",
                "value": mrn,
            }
        ],
        "name": [{"family": "Doe", "given": ["Jane"]}],
    }


def medication_request(rxnorm: str = "2375136", rid: str = "smart-MedicationRequest-103"):
    return {
        "resourceType": "MedicationRequest",
        "id": rid,
        "status": "draft",
        "intent": "order",
        "medicationCodeableConcept": {
            "coding": [{"system": RXNORM, "code": rxnorm, "display": "Darzalex Faspro"}],
            "text": "daratumumab and hyaluronidase-fihj 1800 mg/30,000 units SC",
        },
        "subject": {"reference": "Patient/1288992"},
        "dosageInstruction": [{"text": "1800 mg SC weekly", "timing": {"repeat": {"period": 1}}}],
    }


def service_request(loinc: str = "890-4", rid: str = "smart-ServiceRequest-1") -> dict[str, Any]:
    return {
        "resourceType": "ServiceRequest",
        "id": rid,
        "status": "draft",
        "intent": "order",
        "code": {"coding": [{"system": LOINC, "code": loinc}], "text": "Antibody screen"},
        "subject": {"reference": "Patient/1288992"},
    }


def hook_request(
    hook: str, drafts: list[dict[str, Any]], mrn: str | None, **context: Any
) -> dict[str, Any]:
    """The spec's example request shape (order-sign / order-select)."""
    body: dict[str, Any] = {
        "hookInstance": str(uuid.uuid4()),
        "fhirServer": "https://ehr.example.org/fhir",
        "hook": hook,
        "context": {
            "userId": "Practitioner/example",
            "patientId": "1288992",
            "encounterId": "89284",
            "draftOrders": {"resourceType": "Bundle", "entry": [{"resource": r} for r in drafts]},
            **context,
        },
        "prefetch": {"patient": patient(mrn)} if mrn else {},
    }
    return body


async def post(svc: Service, path: str, body: Any, token: str | None) -> tuple[int, dict[str, Any]]:
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    url = f"http://127.0.0.1:{svc.http_port}{path}"
    async with aiohttp.ClientSession() as http, http.post(url, json=body, headers=headers) as r:
        return r.status, await r.json()


# ---------------------------------------------------------------- CDS Hooks 2.0, strictly


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Coding(Strict):
    system: str | None = None
    code: str
    display: str | None = None


class Source(Strict):
    label: str
    url: str | None = None
    icon: str | None = None
    topic: Coding | None = None


class Action(Strict):
    type: Literal["create", "update", "delete"]
    description: str
    resource: dict[str, Any] | None = None
    resourceId: str | None = None

    @model_validator(mode="after")
    def _fhir(self) -> Action:
        if self.type == "create":
            assert self.resource is not None, "a create action carries its resource"
            ServiceRequest.model_validate(self.resource)  # FHIR R4(B), strictly
        return self


class Suggestion(Strict):
    label: str
    uuid: str | None = None
    isRecommended: bool | None = None
    actions: list[Action] | None = None


class Link(Strict):
    label: str
    url: str
    type: Literal["absolute", "smart"]
    appContext: str | None = None


class Card(Strict):
    uuid: str | None = None
    summary: str = Field(max_length=139)
    detail: str | None = None
    indicator: Literal["info", "warning", "critical"]
    source: Source
    suggestions: list[Suggestion] | None = None
    selectionBehavior: Literal["at-most-one", "any"] | None = None
    overrideReasons: list[Coding] | None = None
    links: list[Link] | None = None

    @model_validator(mode="after")
    def _selection(self) -> Card:
        assert not self.suggestions or self.selectionBehavior, "suggestions need selectionBehavior"
        return self


class CdsResponse(Strict):
    cards: list[Card]
    systemActions: list[Action] | None = None


class DiscoveredService(Strict):
    hook: str
    title: str | None = None
    description: str
    id: str
    prefetch: dict[str, str] | None = None
    usageRequirements: str | None = None


class Discovery(Strict):
    services: list[DiscoveredService]
