"""Messages and settings for the message browser, replay and reload tests: an infusion centre's
administrations (RAS^O17), a pharmacy order under a local code, an antibody screen order, all for
one myeloma patient on daratumumab."""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from lisguard.app import Service
from lisguard.settings import Settings
from lisguard.transport.mllp import MllpClient
from lisguard.web.auth import new_token, token_hash
from tests.e2e.serve_process import PG_DSN, fresh_schema, pg_reachable, with_query

MRN = "MRN55001"
PATIENT = f"{MRN}^SMH"
HEAD = "MSH|^~\\&|{app}|SMH|LISGUARD|SMH|{time}||{type}|{cid}|P|2.5.1"
PID = "PID|1||{mrn}^^^SMH^MR||DOE^JANE^Q||19500101|F"

# the infusion centre charts the first daratumumab dose (RXA-5 by NDC)
DOSE = (
    HEAD.format(app="INFUSE", time="20260301090000", type="RAS^O17^RAS_O17", cid="{cid}")
    + "\r" + PID
    + "\rPV1|1|O|ONC^^^SMH"
    + "\rORC|RE|RX{n}"
    + "\rRXA|0|1|20260301083000|20260301090000|57894-0502-20^DARZALEX 400 MG/20 ML IV^NDC"
    + "|1200|mg^milligram^UCUM"
    + "\rRXR|IV^Intravenous^HL70162"
)
# the pharmacy's order under its own formulary code, which the base knowledge does not know
LOCAL_ORDER = (
    HEAD.format(app="PHARM", time="20260301070000", type="RDE^O11^RDE_O11", cid="{cid}")
    + "\r" + PID
    + "\rORC|NW|PH{n}|||||||20260301070000"
    + "\rRXE|^^^20260301080000|RX-LOC-7781^INFUSION KIT C^LOCALRX|1800||mg"
)
LOCAL_CODE = "RX-LOC-7781"
# the antibody screen ordered the next morning
SCREEN = (
    HEAD.format(app="OE", time="20260302080000", type="ORM^O01", cid="{cid}")
    + "\r" + PID
    + "\rPV1|1|O|4W^^^SMH"
    + "\rORC|NW|P{n}"
    + "\rOBR|1|P{n}||890-4^Antibody screen^LN|||20260302075500"
)


def dose(cid: str, mrn: str = MRN, n: int = 1) -> str:
    return DOSE.replace("{mrn}", mrn).format(cid=cid, n=n)


def local_order(cid: str, mrn: str = MRN, n: int = 1) -> str:
    return LOCAL_ORDER.replace("{mrn}", mrn).format(cid=cid, n=n)


def screen(cid: str, mrn: str = MRN, n: int = 1) -> str:
    return SCREEN.replace("{mrn}", mrn).format(cid=cid, n=n)


def write_settings(path: Path, **sections: Any) -> Path:
    """A settings file as a site writes one (YAML); relative paths are the file's."""
    path.write_text(yaml.safe_dump(sections, sort_keys=False), encoding="utf-8")
    return path


def site_file(path: Path, local_codes: list[str] | None = None) -> Path:
    """The site's knowledge file: the pharmacy's local code for daratumumab IV, or nothing."""
    drugs = [{"id": "daratumumab_iv", "local_codes": local_codes}] if local_codes else []
    path.write_text(yaml.safe_dump({"drugs": drugs} if drugs else {}), encoding="utf-8")
    return path


# ------------------------------------------------------------------ a service from a settings file


@contextlib.asynccontextmanager
async def store_url(kind: str, tmp_path: Path) -> AsyncIterator[str]:
    """A fresh store of each kind: memory, a SQLite file, a PostgreSQL schema of its own
    (skipped when the server is unreachable, failed on CI)."""
    if kind == "memory":
        yield "memory://"
    elif kind == "sqlite":
        yield f"sqlite:///{tmp_path / 'lisguard.db'}"
    else:
        reason = await pg_reachable(PG_DSN)
        if reason is not None:
            if os.environ.get("CI") == "true":
                pytest.fail(f"PostgreSQL at LISGUARD_TEST_PG_DSN unreachable: {reason}")
            pytest.skip(f"PostgreSQL at LISGUARD_TEST_PG_DSN unreachable: {reason}")
        async with fresh_schema(PG_DSN, "lisguard_browser") as (schema, _admin):
            yield with_query(PG_DSN, search_path=schema)


STORES = ["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


def settings_file(tmp_path: Path, url: str, *, auth: bool = True, **sections: Any) -> Path:
    """The site's lisguard.yaml for a test service: free ports, its own key and anchors."""
    base: dict[str, Any] = {
        "mllp": {"host": "127.0.0.1", "port": 0},
        "http": {"host": "127.0.0.1", "port": 0, "auth_required": auth},
        "store": {"url": url},
        "log": {"format": "json", "level": "WARNING"},
        "security": {"key_file": str(tmp_path / "lisguard.key")},
        "audit": {"anchor_file": str(tmp_path / "anchors.jsonl"), "anchor_interval_minutes": 0},
    }
    base.update(sections)
    return write_settings(tmp_path / "lisguard.yaml", **base)


async def start_service(config: Path) -> Service:
    """`lisguard serve --config config`, in this process."""
    service = Service(Settings.load(config), config_path=config)
    await service.start()
    return service


async def add_tokens(service: Service, *roles: str) -> dict[str, str]:
    tokens = {role: new_token() for role in roles}
    for role, token in tokens.items():
        await service.store.access.add_token(
            f"{role}-jo", role, token_hash(token), by="test", at=datetime.now(UTC)
        )
    return tokens


class Client:
    """The HTTP API as one role sees it (a bearer token), over a real socket."""

    def __init__(self, session: aiohttp.ClientSession, base: str, token: str | None) -> None:
        self.session, self.base = session, base
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}

    async def get(self, path: str, **params: Any) -> tuple[int, Any]:
        async with self.session.get(self.base + path, params=params, headers=self.headers) as r:
            return r.status, await r.json()

    async def post(self, path: str, body: Any = None) -> tuple[int, Any]:
        async with self.session.post(
            self.base + path, json=body if body is not None else {}, headers=self.headers
        ) as r:
            return r.status, await r.json()

    async def hl7(self, *messages: str) -> list[dict[str, Any]]:
        headers = {**self.headers, "Accept": "application/json"}
        data = "".join(m + "\r" for m in messages).encode()
        async with self.session.post(self.base + "/api/hl7", data=data, headers=headers) as r:
            assert r.status == 200, await r.text()
            result: list[dict[str, Any]] = await r.json()
            return result


def base_url(service: Service) -> str:
    return f"http://127.0.0.1:{service.http_port}"


async def send_mllp(service: Service, *messages: str | bytes) -> list[str]:
    """Each message over one MLLP connection; the first ACK of each."""
    assert service.mllp_port
    async with MllpClient("127.0.0.1", service.mllp_port) as client:
        return [await client.send(m if isinstance(m, bytes) else m.encode()) for m in messages]


# the pharmacy's order by NDC: a drug the base knowledge knows
KNOWN_ORDER = (
    HEAD.format(app="PHARM", time="20260301070000", type="RDE^O11^RDE_O11", cid="{cid}")
    + "\r" + PID
    + "\rORC|NW|PH{n}|||||||20260301070000"
    + "\rRXE|^^^20260301080000|57894-0502-20^DARZALEX 400 MG/20 ML IV^NDC|1200||mg"
)


# MSH-10 empty: unreadable (AE 101), a dead letter filed under no key
NO_CONTROL_ID = "MSH|^~\\&|LAB|SMH|LISGUARD|SMH|20260303090000||ORM^O01||P|2.5.1\rPID|1||MRN1"


def known_order(cid: str, mrn: str = MRN, n: int = 1) -> str:
    return KNOWN_ORDER.replace("{mrn}", mrn).format(cid=cid, n=n)
