"""Persistence: the Store port (base) and its backends (memory, SQLite, PostgreSQL).

`open_store(url, audit_key=...)` picks a backend from a URL; call `await store.open()` before
use. `audit_key` (the install key's "audit-chain" sub-key, lisguard.domain.audit_anchor.AuditKeys)
keys the audit chain's hashes; every store the service or an admin command opens gets it, since
an event written without it after keyed ones breaks the chain.

- ``memory://`` - in-process, lost at exit (tests, `lisguard check`).
- ``sqlite:///var/lisguard.db`` - a file path relative to the working directory;
  ``sqlite:////srv/lisguard/lisguard.db`` - an absolute path (four slashes).
  The parent directory is created at open(). Query parameters: ``synchronous=FULL|NORMAL``
  (default FULL: an ACKed message survives a power cut, at an fsync per group commit; NORMAL
  survives a process crash only), ``busy_timeout_ms=5000``, ``min_free_bytes=16777216``
  (readiness is false while the file system has less room than this).
- ``postgresql://user:password@host:5432/dbname`` (or ``postgres://``) - asyncpg pool.
  Query parameters ``min_size`` (default 1) and ``max_size`` (default 10) size the pool; any
  other query parameter (e.g. ``search_path=lisguard``, ``sslmode=require``) is handed to
  asyncpg, which passes unknown ones to the server as settings.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

from lisguard.store.base import Store, Transaction
from lisguard.store.records import (
    AuditEvent,
    NewMessage,
    StoredAlert,
    StoredAuditEvent,
    StoredMessage,
    StoreError,
    StoreUnavailable,
)

__all__ = [
    "AuditEvent",
    "NewMessage",
    "Store",
    "StoreError",
    "StoreUnavailable",
    "StoredAlert",
    "StoredAuditEvent",
    "StoredMessage",
    "Transaction",
    "open_store",
]


def open_store(url: str, *, audit_key: bytes | None = None) -> Store:
    """A store for the URL (not opened yet). Raises ValueError for a URL it cannot use."""
    scheme, sep, _ = url.partition("://")
    scheme = scheme.lower()
    if not sep:
        raise ValueError("store URL has no scheme: use memory://, sqlite:// or postgresql://")
    if scheme == "memory":
        from lisguard.store.memory.store import MemoryStore

        return MemoryStore(audit_key=audit_key)
    if scheme == "sqlite":
        return _sqlite(url, audit_key)
    if scheme in ("postgresql", "postgres"):
        return _postgres(url, audit_key)
    raise ValueError(f"unknown store URL scheme {scheme!r}: use memory, sqlite or postgresql")


def _sqlite(url: str, audit_key: bytes | None = None) -> Store:
    from lisguard.store.sqlite.store import SqliteStore

    parts = urlsplit(url)
    if parts.netloc:
        raise ValueError(
            f"SQLite URL {url!r} has a host part; use sqlite:///relative/path.db or"
            " sqlite:////absolute/path.db"
        )
    path = unquote(parts.path)
    path = path[1:]  # sqlite:///x.db -> "x.db"; sqlite:////srv/x.db -> "/srv/x.db"
    if not path or path == ":memory:":
        raise ValueError(f"SQLite URL {url!r} needs a file path (use memory:// for a throwaway)")
    options = dict(parse_qsl(parts.query, keep_blank_values=True))
    synchronous = options.pop("synchronous", "FULL")
    busy_timeout_ms = _int_option(options, "busy_timeout_ms", 5000, url)
    min_free_bytes = _int_option(options, "min_free_bytes", 16 * 1024 * 1024, url)
    if options:
        raise ValueError(f"unknown SQLite URL parameter(s) {sorted(options)} in {url!r}")
    return SqliteStore(
        path,
        synchronous=synchronous,
        busy_timeout_ms=busy_timeout_ms,
        min_free_bytes=min_free_bytes,
        audit_key=audit_key,
    )


def _postgres(url: str, audit_key: bytes | None = None) -> Store:
    from lisguard.store.postgres.store import PostgresStore

    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    options = {k: v for k, v in query if k in ("min_size", "max_size")}
    min_size = _int_option(options, "min_size", 1, url)
    max_size = _int_option(options, "max_size", 10, url)
    rest = urlencode([(k, v) for k, v in query if k not in ("min_size", "max_size")])
    dsn = urlunsplit(parts._replace(query=rest))
    return PostgresStore(dsn, min_size=min_size, max_size=max_size, audit_key=audit_key)


def _int_option(options: dict[str, str], name: str, default: int, url: str) -> int:
    value = options.pop(name, None)
    if value is None:
        return default
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"store URL parameter {name}={value!r} is not an integer") from None
