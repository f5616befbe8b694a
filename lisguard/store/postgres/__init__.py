"""The PostgreSQL backend: an asyncpg pool (store), one unit of work in few round trips (unit),
the errors (errors), LISTEN/NOTIFY between replicas (live), the least-privilege roles (grants),
and the parts both SQL backends share (lisguard.store.sql)."""

from lisguard.store.postgres.errors import redact_dsn
from lisguard.store.postgres.store import PostgresStore

__all__ = ["PostgresStore", "redact_dsn"]
