"""The PostgreSQL backend: an asyncpg pool (store), LISTEN/NOTIFY between replicas (live), the
least-privilege roles (grants), and the parts both SQL backends share (lisguard.store.sql)."""

from lisguard.store.postgres.store import PostgresStore, redact_dsn

__all__ = ["PostgresStore", "redact_dsn"]
