"""The store fixtures of tests/integration (`backend`, `db`, `pg`: a fresh database of each
kind per test), for the security tests."""

from tests.integration.conftest import backend, db, pg, pg_dsn  # noqa: F401
