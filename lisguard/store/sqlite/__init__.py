"""The SQLite backend: one file, one writer connection with group commit (writer), the parts
both SQL backends share (lisguard.store.sql)."""

from lisguard.store.sqlite.store import SqliteStore

__all__ = ["SqliteStore"]
