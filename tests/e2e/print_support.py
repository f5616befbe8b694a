"""Shared by the print and hand-over tests: HL7 v2 messages dated relative to today (the windows
are months long, so fixed dates would age out of them), sent over MLLP, and a service with
tokens required and one token per role."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp

from lisguard.app import Service
from lisguard.store.base import AuditEvent, Store
from lisguard.transport.mllp import MllpClient
from lisguard.web.auth import new_token, token_hash
from tests.conftest import ServiceFactory

ROLES = ("technologist", "manager", "admin", "sender", "metrics")
PID = "PID|1||{mrn}^^^HOSP^MR||{name}||{dob}|F\r"

PHENOTYPE = (
    "MSH|^~\\&|BBANK|HOSP|LISGUARD|HOSP|{at}||ORU^R01|PHE-{mrn}|P|2.5.1\r"
    + PID
    + "ORC|RE|PH-{mrn}|BB-{mrn}||CM\r"
    "OBR|1|PH-{mrn}|BB-{mrn}|RBCPHEN^RBC ANTIGEN PHENOTYPE, EXTENDED^L|||{at}\r"
    "OBX|1|CE|1305-2^D ANTIGEN^LN||POS^Positive^L||||||F\r"
    "OBX|2|CE|948-0^C ANTIGEN^LN||POS^Positive^L||||||F\r"
    "OBX|3|CE|KAG^K ANTIGEN (KEL1)^L||{k}^K^L||||||F\r"
    "OBX|4|CE|1027-2^Fy(a) ANTIGEN^LN||NEG^Negative^L||||||F\r"
)
DARATUMUMAB = (
    "MSH|^~\\&|PHARM|HOSP|LISGUARD|HOSP|{at}||RAS^O17|RX-{mrn}-{at}|P|2.5.1\r"
    + PID
    + "PV1|1|O|INFUS\r"
    "ORC|RE|RXO-{mrn}\r"
    "RXA|0|1|{at}|{at}|J9145^daratumumab^HCPCS|1800|mg||||||||||||CP\r"
)
PRIVIGEN = (
    "MSH|^~\\&|PHARM|HOSP|LISGUARD|HOSP|{at}||RAS^O17|IG-{mrn}-{at}|P|2.5.1\r"
    + PID
    + "PV1|1|O|INFUS\r"
    "ORC|RE|IGO-{mrn}\r"
    "RXA|0|1|{at}|{at}|J1459^INJECTION, IMMUNE GLOBULIN (PRIVIGEN)^HCPCS|30|g^gram^UCUM"
    "||||||||||||CP\r"
)
SCREEN = (
    "MSH|^~\\&|LAB|HOSP|LISGUARD|BB|{at}||ORM^O01|SCR-{order}|P|2.5.1\r" + PID + "PV1|1|I|4W^12^B\r"
    "ORC|NW|{order}\r"
    "OBR|1|{order}||BBTS^TYPE AND SCREEN^L^890-4^Antibody screen^LN|||{at}\r"
)


def hl7_time(days_ago: float) -> str:
    """The feeds' wall-clock time (naive, local), `days_ago` days before now."""
    return (datetime.now() - timedelta(days=days_ago)).strftime("%Y%m%d%H%M%S")


def message(template: str, mrn: str, days_ago: float, **fields: str) -> str:
    values = {"name": "NORDQVIST^ASTRID^L", "dob": "19550412", "k": "NEG", "order": "TS-" + mrn}
    return template.format(**(values | fields), mrn=mrn, at=hl7_time(days_ago))


async def send(service: Service, *texts: str) -> None:
    """Over MLLP, as the interface engine sends them; each must be ACKed AA."""
    assert service.mllp_port
    async with MllpClient("127.0.0.1", service.mllp_port) as client:
        for text in texts:
            ack = await client.send(text.encode())
            assert "MSA|AA|" in ack, ack


async def secured(
    service_factory: ServiceFactory, store_url: str | None = None
) -> tuple[Service, dict[str, str]]:
    """Tokens required; a token per role, named after it ("technologist-jo", ...)."""
    store = {"store": {"url": store_url}} if store_url else {}
    svc: Service = await service_factory(http={"auth_required": True}, **store)
    tokens = {role: new_token() for role in ROLES}
    for role, token in tokens.items():
        await svc.store.access.add_token(
            f"{role}-jo", role, token_hash(token), by="test", at=datetime.now(UTC)
        )
    return svc, tokens


async def get(
    svc: Service, path: str, token: str | None, **params: str
) -> tuple[int, dict[str, Any]]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    url = f"http://127.0.0.1:{svc.http_port}{path}"
    async with aiohttp.ClientSession() as http:
        async with http.get(url, headers=headers, params=params) as resp:
            return resp.status, await resp.json()


async def audit(store: Store, *events: AuditEvent) -> None:
    """Appended through the store's real audit path (one transaction, hash-chained)."""
    async with store.transaction() as tx:
        await tx.add_audit(list(events))
