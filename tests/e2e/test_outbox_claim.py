"""Outbox delivery across replicas: every due row is claimed by exactly one of them.

Two stores with their own connection pools (two replicas as the database sees them) claim from
one outbox at the same time, in small batches, until it is empty. With FOR UPDATE SKIP LOCKED and
the lease, the claimed ids are disjoint and together cover the outbox.
"""

from __future__ import annotations

import asyncio
import os
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from lisguard.domain.knowledge import load_knowledge_base
from lisguard.services import Ingestor
from lisguard.store.postgres import PostgresStore
from tests.e2e.serve_process import PG_DSN, fresh_schema, pg_reachable
from tests.e2e.test_replicas import patient_feed

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

CHANNEL = "replica-claim-test"


async def test_each_outbox_row_is_claimed_by_one_replica() -> None:
    reason = await pg_reachable(PG_DSN)
    if reason is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL at LISGUARD_TEST_PG_DSN unreachable: {reason}")
        pytest.skip(f"PostgreSQL at LISGUARD_TEST_PG_DSN unreachable: {reason}")
    async with fresh_schema(PG_DSN, "lisguard_outbox") as (schema, _admin):
        stores = [
            PostgresStore(PG_DSN, max_size=6, server_settings={"search_path": schema})
            for _ in range(2)
        ]
        for store in stores:
            await store.open()
        try:
            ingestor = Ingestor(stores[0], load_knowledge_base())
            for p in range(20):
                phase1, phase2 = patient_feed(p)
                for message in (*phase1, *phase2):
                    result = await ingestor.ingest(message.encode())
                    assert result.outcome == "accepted", result.error
            alerts = await stores[0].list_alerts(limit=10_000)
            now = datetime.now(UTC)
            async with stores[0].transaction() as tx:
                for stored in alerts:
                    await stores[0].desk.add_outbox(tx, stored.alert.id, [CHANNEL], now)

            claimed: list[list[int]] = [[], []]

            async def worker(replica: int) -> None:
                store = stores[replica]
                while True:
                    items = await store.desk.claim(
                        CHANNEL,
                        now=now,
                        due_before=now + timedelta(seconds=1),
                        lease_until=now + timedelta(hours=1),
                        limit=3,
                    )
                    if not items:
                        return
                    claimed[replica].extend(item.id for item in items)

            # four workers per replica, all racing for the same rows
            await asyncio.gather(*(worker(r) for r in (0, 1, 0, 1, 0, 1, 0, 1)))
        finally:
            for store in stores:
                await store.close()

    everything = Counter(claimed[0] + claimed[1])
    assert len(everything) == len(alerts) == 20 * 3
    assert set(everything.values()) == {1}, "a row was claimed twice"
    assert claimed[0] and claimed[1]  # both replicas took part
