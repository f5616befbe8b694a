"""MemoryStore(history=False), what `lisguard check` runs on: the same alerts, duplicates and
states as with full history; raw bytes and audit events are not kept."""

from __future__ import annotations

from lisguard.domain.knowledge import load_knowledge_base
from lisguard.hl7v2.framing import decode_bytes, split_messages
from lisguard.services import Ingestor
from lisguard.store.memory import MemoryStore
from tests.conftest import SAMPLES


async def replay(store: MemoryStore) -> list[tuple[str, str, list[str]]]:
    await store.open()
    ingestor = Ingestor(store, load_knowledge_base())
    seen = []
    for path in sorted(SAMPLES.glob("*/*.hl7")):
        for text in split_messages(decode_bytes(path.read_bytes())):
            result = await ingestor.ingest(text.encode(), text=text, peer=path.name)
            seen.append((result.control_id, result.outcome, [a.id for a in result.alerts]))
    return seen


async def test_without_history_the_pipeline_decides_the_same() -> None:
    full, lean = MemoryStore(), MemoryStore(history=False)
    assert await replay(lean) == await replay(full)
    assert any(outcome == "duplicate" for _, outcome, _ in await replay(MemoryStore()))
    assert await lean.count_messages() == await full.count_messages()
    lean_alerts = sorted(a.alert.id for a in await lean.list_alerts(limit=1000))
    assert lean_alerts == sorted(a.alert.id for a in await full.list_alerts(limit=1000))
    assert await lean.list_audit() == [] and await lean.get_raw(1) is None
    assert await full.list_audit() and await full.get_raw(1) is not None
