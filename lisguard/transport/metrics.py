"""Prometheus metrics, one registry per running service (tests run several in one process)."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from lisguard.services import IngestResult

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._counted: dict[tuple[str, str, str], Any] = {}
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
        self.frames = Counter(
            "lisguard_mllp_frames_rejected",
            "MLLP frames refused before parsing (oversize), and garbage bytes skipped",
            ["reason"],
            registry=self.registry,
        )

    def observe(self, result: IngestResult, transport: str, seconds: float) -> None:
        # labelled children looked up once per label set: .labels() costs more than .inc()
        key = (result.message_type or "unknown", result.outcome, transport)
        counter = self._counted.get(key)
        if counter is None:
            counter = self._counted[key] = self.messages.labels(*key)
        counter.inc()
        histogram = self._latency.get(transport)
        if histogram is None:
            histogram = self._latency[transport] = self.ack_latency.labels(transport)
        histogram.observe(seconds)
        if result.store_seconds:
            self.store_latency.observe(result.store_seconds)
        for alert in result.alerts:
            self.alerts.labels(alert.rule.value).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
