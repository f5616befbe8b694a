"""Bulk loader: a lisguard SQLite database that already holds N messages and K patient states.

The schema comes from the store itself (`SqliteStore.open()` applies every migration); rows
are then written with plain sqlite3 `executemany` in large transactions, about 100x faster than
one store transaction per message. What is written looks like what the service writes: the raw
message with its key and ACK, a `message.received` audit event per message, and patient states
as the engine saves them (an exposure for the treated, an RBC typing on file for the others).
"""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

from benchmarks.feed import FeedBuilder
from lisguard.domain.alerts import EvidenceItem
from lisguard.domain.patient import Exposure, PatientState, RbcTyping
from lisguard.store.codec import dump_json
from lisguard.store.sqlite import SqliteStore

BATCH = 20_000
T0 = datetime(2025, 1, 1, tzinfo=UTC)


def _ts(value: datetime) -> str:
    return value.isoformat(timespec="microseconds")


def _state(key: str, exposed: bool, when: datetime) -> str:
    when = when.replace(tzinfo=None)  # message times are the sender's wall clock: naive
    state = PatientState(key=key, updated=when)
    if exposed:
        exposure = Exposure(drug="daratumumab")
        exposure.add_point(
            when, "administration", EvidenceItem(message="PRE", location="RXA-5", text="J9145")
        )
        state.exposures["daratumumab"] = exposure
        state.alerted.append(f"prefill-{key}")
    else:
        state.typings.append(RbcTyping(kind="phenotype", time=when, antigens={"K": False}))
    return state.model_dump_json()


async def _create(path: Path) -> None:
    store = SqliteStore(path)
    await store.open()
    await store.close()


def prefill(path: Path, messages: int, patients: int, *, feed_patients: int = 10_000) -> None:
    """Create `path` with `messages` stored messages and `patients` patient states (MRN0000000
    onwards, the ids the benchmark feed uses)."""
    asyncio.run(_create(path))
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA synchronous = OFF")  # a loader: durability comes with the final sync
    builder = FeedBuilder(feed_patients)
    pool = list(builder.messages(min(messages, 5_000) or 1, "PRE"))
    try:
        done = 0
        while done < messages:
            n = min(BATCH, messages - done)
            rows, audit = [], []
            for i in range(done, done + n):
                text = pool[i % len(pool)]
                old = f"PRE{i % len(pool):08d}"
                cid = f"PRE{i:08d}"
                raw = text.replace(old, cid, 1).encode()
                at = _ts(T0 + timedelta(seconds=i))
                app = text.split("|", 3)[2]
                ack = f"MSH|^~\\&|LISGUARD|RVH|{app}|RVH|{at}||ACK|A{cid}|P|2.5.1\rMSA|AA|{cid}"
                digest = hashlib.sha256(raw).hexdigest()
                rows.append((app, "RVH", cid, digest, "ORU^R01", at, raw, ack, "AA", "bench"))
                detail = {"control_id": cid, "outcome": "AA", "sha256": digest, "flags": []}
                audit.append((at, "message.received", "system", str(i + 1), dump_json(detail)))
            conn.execute("BEGIN")
            conn.executemany(
                "INSERT INTO messages (sending_application, sending_facility, control_id,"
                " content_hash, message_type, received_at, raw, ack, outcome, peer)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
            conn.executemany(
                "INSERT INTO audit_events (at, kind, actor, subject, detail)"
                " VALUES (?, ?, ?, ?, ?)",
                audit,
            )
            conn.execute("COMMIT")
            done += n
        done = 0
        while done < patients:
            n = min(BATCH, patients - done)
            when = T0 + timedelta(days=1)
            states = [
                (key, _state(key, i % 30 == 0, when), _ts(when))
                for i in range(done, done + n)
                for key in (f"MRN{i:07d}^RVH",)
            ]
            conn.execute("BEGIN")
            conn.executemany(
                "INSERT INTO patients (key, state, updated_at) VALUES (?, ?, ?)"
                " ON CONFLICT (key) DO NOTHING",
                states,
            )
            conn.execute("COMMIT")
            done += n
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
