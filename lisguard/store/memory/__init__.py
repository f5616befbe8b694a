"""The memory backend: the reference implementation of the Store contract (tests, `lisguard check`).
Its parts mirror the SQL ones: store (messages, patients, alerts, audit), access, desk,
escalation, messages."""

from lisguard.store.memory.store import MemoryStore

__all__ = ["MemoryStore"]
