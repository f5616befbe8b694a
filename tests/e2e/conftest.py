"""Fixtures shared by the tests that run `lisguard serve` processes on PostgreSQL."""

from __future__ import annotations

import os

import pytest

from tests.e2e.serve_process import PG_DSN, pg_reachable


@pytest.fixture
async def pg_dsn() -> str:
    """LISGUARD_TEST_PG_DSN; skipped when unreachable, except on CI (CI=true): failed."""
    reason = await pg_reachable(PG_DSN)
    if reason is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL at LISGUARD_TEST_PG_DSN unreachable: {reason}")
        pytest.skip(f"PostgreSQL at LISGUARD_TEST_PG_DSN unreachable: {reason}")
    return PG_DSN
