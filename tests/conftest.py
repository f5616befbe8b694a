"""Shared test fixtures: where the corpus and samples are, and a running service on free ports."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from lisguard.app import Service
from lisguard.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "hl7_samples"
CORPUS = ROOT.parent / "shared" / "corpus" / "fhir-converter-hl7v2"
PG_DSN = os.environ.get("LISGUARD_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")


def corpus_files() -> list[Path]:
    files = sorted(CORPUS.glob("*.hl7")) if CORPUS.is_dir() else []
    if not files:
        if os.environ.get("CI") == "true":
            pytest.fail(f"HL7 corpus missing at {CORPUS}")
        pytest.skip(f"HL7 corpus missing at {CORPUS}")
    return files


def service_settings(tmp_path: Path, **overrides: Any) -> Settings:
    data: dict[str, Any] = {
        "mllp": {"host": "127.0.0.1", "port": 0},
        # route tests that are not about access control run without tokens; the access
        # control tests (tests/e2e/test_access_control.py) switch it on
        "http": {"host": "127.0.0.1", "port": 0, "auth_required": False},
        "store": {"url": f"sqlite:///{tmp_path / 'lisguard.db'}"},
        "log": {"format": "json", "level": "WARNING"},
        # the install key (keys the audit chain) and the audit anchors: per test, not ./var
        "security": {"key_file": tmp_path / "lisguard.key"},
        "audit": {"anchor_file": tmp_path / "audit-anchors.jsonl"},
    }
    for section, values in overrides.items():
        data.setdefault(section, {}).update(values)
    return Settings(**data)


ServiceFactory = Callable[..., Any]


@pytest.fixture
async def service_factory(tmp_path: Path) -> AsyncIterator[ServiceFactory]:
    started: list[Service] = []

    async def make(**overrides: Any) -> Service:
        service = Service(service_settings(tmp_path, **overrides))
        await service.start()
        started.append(service)
        return service

    yield make
    for service in started:
        await service.stop()


@pytest.fixture
async def service(service_factory: ServiceFactory) -> Service:
    svc: Service = await service_factory()
    return svc
