"""Prometheus metrics, one registry per running service (tests run several in one process).

Every label value comes from a bounded set: a label series lives as long as the process, so a
value a sender chooses (MSH-9) would let anyone grow /metrics, and the server's memory, without
limit. Message types are kept for known HL7 families and their standard trigger events (at most
MAX_TYPE_SERIES such series); anything else is counted as "other". Senders (MSH-3@MSH-4, chosen by
whoever connects) get a series each for the first MAX_SENDERS seen; later ones count as "other".

The outbox gauges (pending rows, age of the oldest, per channel) are read from the store at
scrape time (`refresh`), so every replica reports the same, shared outbox; delivery outcomes are
counted by the workers of this replica. The registry also carries the process, platform and GC
collectors (process_*, python_*).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime
from typing import Any

import structlog
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)

from lisguard.services import CLINICAL_FAMILIES, IngestResult

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
# Families a lab, pharmacy or ADT feed sends besides the clinical ones the rules read.
KNOWN_FAMILIES = CLINICAL_FAMILIES | frozenset(
    {
        "ACK", "BAR", "BRP", "BRT", "DFT", "MDM", "MFK", "MFN", "OMG", "OMI", "OMS", "ORB",
        "ORG", "ORP", "ORR", "OSR", "OSU", "PPR", "QBP", "QRY", "RRA", "RRD", "RRE", "RRG",
        "RSP", "SIU", "SRM", "SRR", "VXQ", "VXR",
    }
)  # fmt: skip


def _events(prefix: str, first: int, last: int) -> list[str]:
    return [f"{prefix}{n:02d}" for n in range(first, last + 1)]


# HL7 v2.5.1 trigger events of those families that get a series of their own (ORU^R01); any other
# trigger is counted under its family (ORU).
TRIGGERS: dict[str, frozenset[str]] = {
    family: frozenset(events)
    for family, events in {
        "ADT": _events("A", 1, 62),
        "ORU": ["R01", "R30", "R31", "R32", "R40", "R41", "W01"],
        "OUL": ["R21", "R22", "R23", "R24"],
        "ORM": ["O01"], "ORR": ["O02"], "OMP": ["O09"], "ORP": ["O10"],
        "RDE": ["O11", "O25"], "RRE": ["O12", "O26"], "RDS": ["O13"], "RRD": ["O14"],
        "RGV": ["O15"], "RRG": ["O16"], "RAS": ["O17"], "RRA": ["O18"],
        "OML": ["O21", "O33", "O35", "O39", "O59"], "ORL": ["O22", "O34", "O36", "O40"],
        "OMB": ["O27"], "ORB": ["O28"], "BPS": ["O29"], "BRP": ["O30"],
        "BTS": ["O31"], "BRT": ["O32"], "VXU": ["V04"],
        "SIU": _events("S", 12, 26), "MDM": _events("T", 1, 11),
        "DFT": ["P03", "P11"], "BAR": ["P01", "P02", "P05", "P06", "P10", "P12"],
        "MFN": _events("M", 1, 19),
    }.items()
}  # fmt: skip
OTHER = "other"
# A hard cap on the family^trigger series (type, outcome, transport): past it, a new one is
# counted under its family. Family, "other" and "unknown" series are bounded by the lists above.
MAX_TYPE_SERIES = 500
MAX_SENDERS = 50
SENDER_CHARS = re.compile(r"[^A-Za-z0-9._@^ -]")
DELIVERY_OUTCOMES = ("delivered", "retry", "failed")
# per channel: rows not yet delivered (pending), created_at of the oldest of them (None: none)
Backlog = Callable[[], Awaitable[dict[str, tuple[int, datetime | None]]]]
SCRAPE_STORE_TIMEOUT = 2.0

log = structlog.get_logger("lisguard.metrics")


def sender_label(sender: str) -> str:
    """MSH-3@MSH-4 as a label value: printable and short ("" when neither field was sent)."""
    return "" if sender == "@" else SENDER_CHARS.sub("_", sender)[:64]


def type_label(message_type: str) -> str:
    """The `type` label of a message type: "ORU^R01", "ORU" (another trigger) or "other"."""
    family, _, rest = message_type.partition("^")
    if family not in KNOWN_FAMILIES:
        return "unknown" if not message_type else OTHER
    trigger = rest.partition("^")[0]
    return f"{family}^{trigger}" if trigger in TRIGGERS.get(family, ()) else family


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._counted: dict[tuple[str, str, str], Any] = {}  # raw type, outcome, transport
        self._triggered: set[tuple[str, str, str]] = set()  # family^trigger label sets
        self._latency: dict[str, Any] = {}
        self.messages = Counter(
            "lisguard_messages",
            "HL7 messages received, by message type and outcome",
            ["type", "outcome", "transport"],
            registry=self.registry,
        )
        self.alerts = Counter(
            "lisguard_alerts", "Alerts raised, by rule", ["rule"], registry=self.registry
        )
        self.ack_latency = Histogram(
            "lisguard_ack_latency_seconds",
            "From a complete message received to its ACK ready to send",
            ["transport"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.store_latency = Histogram(
            "lisguard_store_latency_seconds",
            "Store transaction time per message",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self._senders: dict[str, Any] = {}
        self.by_sender = Counter(
            "lisguard_messages_by_sender",
            f"HL7 messages received, by sender (MSH-3@MSH-4; the first {MAX_SENDERS} seen, the "
            'rest "other")',
            ["sender"],
            registry=self.registry,
        )
        self.frames = Counter(
            "lisguard_mllp_frames_rejected",
            "MLLP frames refused before parsing (oversize)",
            ["reason"],
            registry=self.registry,
        )
        self.garbage_bytes = Counter(
            "lisguard_mllp_garbage_bytes",
            "Bytes outside any MLLP frame, skipped",
            registry=self.registry,
        )
        self.connections_open = Gauge(
            "lisguard_mllp_connections_open",
            "MLLP connections open now (this replica)",
            registry=self.registry,
        )
        self.deliveries = Counter(
            "lisguard_deliveries",
            "Delivery attempts by channel and outcome: delivered, retry (failed, will be "
            "retried), failed (given up)",
            ["channel", "outcome"],
            registry=self.registry,
        )
        self.outbox_pending = Gauge(
            "lisguard_outbox_pending",
            "Outbox rows not yet delivered (all replicas: read from the store)",
            ["channel"],
            registry=self.registry,
        )
        self.outbox_oldest = Gauge(
            "lisguard_outbox_oldest_pending_seconds",
            "Age of the oldest outbox row not yet delivered (0: none)",
            ["channel"],
            registry=self.registry,
        )
        self._channels: set[str] = set()
        self.backlog: Backlog | None = None  # the store's outbox, read at scrape time
        self.clock: Callable[[], datetime] = lambda: datetime.now(UTC)
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        # reasons are fixed strings, never the peer's address (that set has no bound)
        self.connections_refused = Counter(
            "lisguard_mllp_connections_refused",
            "MLLP connections closed at once: source not allowed, listener full, or too many "
            "from one address",
            ["reason"],
            registry=self.registry,
        )
        self.connections_closed = Counter(
            "lisguard_mllp_connections_closed",
            "MLLP connections closed by the server: idle, a frame not complete in time, or "
            "evicted to let another address in",
            ["reason"],
            registry=self.registry,
        )

    def channels(self, names: Iterable[str]) -> None:
        """The enabled delivery channels: their series show (at 0) before anything happens."""
        for name in names:
            self._channels.add(name)
            for outcome in DELIVERY_OUTCOMES:
                self.deliveries.labels(name, outcome)
            self.outbox_pending.labels(name).set(0)
            self.outbox_oldest.labels(name).set(0)

    def delivered(self, channel: str, outcome: str) -> None:
        """A delivery worker's outcome (lisguard.alerting.outbox)."""
        self.deliveries.labels(channel, outcome).inc()

    async def refresh(self) -> None:
        """Read the outbox gauges from the store (before a scrape). A slow or failing store
        leaves the last values and logs a warning: /metrics still answers."""
        if self.backlog is None:
            return
        try:
            async with asyncio.timeout(SCRAPE_STORE_TIMEOUT):
                backlog = await self.backlog()
        except Exception as exc:  # the scrape must not fail with the store
            log.warning("metrics_outbox_unavailable", error=type(exc).__name__)
            return
        now = self.clock()
        # channels are the configured ones and what the store holds: a fixed, small set
        self._channels.update(backlog)
        for channel in self._channels:
            pending, oldest = backlog.get(channel, (0, None))
            self.outbox_pending.labels(channel).set(pending)
            age = max((now - oldest).total_seconds(), 0.0) if oldest is not None else 0.0
            self.outbox_oldest.labels(channel).set(age)

    def observe(self, result: IngestResult, transport: str, seconds: float) -> None:
        """One answer sent: a message, or a batch (each of its messages counted, one latency)."""
        for part in result.parts if result.outcome == "batch" else [result]:
            self._count(part, transport)
        histogram = self._latency.get(transport)
        if histogram is None:
            histogram = self._latency[transport] = self.ack_latency.labels(transport)
        histogram.observe(seconds)

    def _count(self, result: IngestResult, transport: str) -> None:
        # labelled children looked up once per label set: .labels() costs more than .inc()
        key = (result.message_type, result.outcome, transport)
        counter = self._counted.get(key)
        if counter is None:
            labels = (type_label(result.message_type), result.outcome, transport)
            if "^" in labels[0] and labels not in self._triggered:
                if len(self._triggered) < MAX_TYPE_SERIES:
                    self._triggered.add(labels)
                else:
                    labels = (labels[0].partition("^")[0], *labels[1:])
            counter = self.messages.labels(*labels)
            if len(self._counted) < 4 * MAX_TYPE_SERIES:  # a cache, bounded as well
                self._counted[key] = counter
        counter.inc()
        sender = sender_label(result.sender)
        if sender:
            by_sender = self._senders.get(sender)
            if by_sender is None:
                if len(self._senders) < MAX_SENDERS:
                    by_sender = self._senders[sender] = self.by_sender.labels(sender)
                else:
                    by_sender = self.by_sender.labels(OTHER)
            by_sender.inc()
        if result.store_seconds:
            self.store_latency.observe(result.store_seconds)
        for alert in result.alerts:
            self.alerts.labels(alert.rule.value).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
