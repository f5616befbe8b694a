"""The store fixtures of tests/integration (`backend`, `db`, `pg`: a fresh database of each
kind per test), and the browser of tests/browser (Debian's Chromium), for the security
tests."""

from tests.browser.conftest import browser  # noqa: F401
from tests.integration.conftest import backend, db, pg, pg_dsn  # noqa: F401
