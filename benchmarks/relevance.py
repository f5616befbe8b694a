"""How much of a feed lisguard reads: a rate on a feed it mostly skips says little about one it
must read. Run in-process (lisguard's own Ingestor on a memory store) over a feed's first
messages, so each benchmark run prints what its feeds are."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from lisguard.domain.engine import touches_state
from lisguard.domain.knowledge import load_knowledge_base
from lisguard.hl7v2.relevance import Relevance
from lisguard.intake import IngestPolicy, read_message
from lisguard.services import Ingestor
from lisguard.store.base import MESSAGE_RECEIVED
from lisguard.store.memory import MemoryStore


async def read_share(messages: Sequence[str]) -> dict[str, Any]:
    """Shares of the messages that load and run patient state ("touch_state"), that raise an
    alert, that record a change to the patient's state (an exposure, typing, isotype, result:
    the `state.*` audit events), and that do either; alerts per rule. SystemExit if a message
    is refused or dead-lettered: a feed lisguard refuses measures refusals."""
    kb = load_knowledge_base()
    relevance, policy = Relevance(kb), IngestPolicy()
    store = MemoryStore()
    await store.open()
    ingestor = Ingestor(store, kb)
    touched = ignored = 0
    rules: Counter[str] = Counter()
    try:
        for text in messages:
            reading = read_message(text, policy, relevance)
            if reading.clinical is not None and touches_state(reading.clinical, kb):
                touched += 1
            result = await ingestor.ingest(text.encode(), text=text)
            ignored += result.outcome == "ignored"  # a type lisguard stores, does not read
            if result.outcome not in ("accepted", "ignored"):
                raise SystemExit(f"feed message not accepted ({result.outcome}): {text[:200]!r}")
            rules.update(a.rule.value for a in result.alerts)
        events = await store.list_audit(limit=100 * len(messages) + 1000)
    finally:
        await store.close()
    # a message's own events follow its message.received (one transaction each)
    raised: set[str] = set()
    changed: set[str] = set()
    current = ""
    for e in events:
        kind = e.event.kind
        if kind == MESSAGE_RECEIVED:
            current = e.event.subject
        elif kind == "alert.raised":
            raised.add(current)
        elif kind.startswith("state."):
            changed.add(current)
    n = max(len(messages), 1)
    return {
        "messages": len(messages),
        "alerts": sum(rules.values()),
        "rules": dict(sorted(rules.items())),
        "ignored_type": round(ignored / n, 3),
        "touch_state": round(touched / n, 3),
        "raise_alert": round(len(raised) / n, 3),
        "change_state": round(len(changed) / n, 3),
        "alert_or_state": round(len(raised | changed) / n, 3),
    }


def describe(name: str, share: dict[str, Any]) -> str:
    return (
        f"{name} feed, first {share['messages']:,} messages read in-process: "
        f"{share['touch_state']:.0%} load patient state and run the rules, "
        f"{share['raise_alert']:.0%} raise an alert, {share['change_state']:.0%} change the "
        f"patient's state, {share['alert_or_state']:.0%} one or the other "
        f"({share['alerts']:,} alerts)"
    )
