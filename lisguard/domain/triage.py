"""Triage of the technologist's queue: what needs doing first.

The queue is ordered by, in turn (each descending):
1. severity: high, medium, low;
2. a transfusion waiting on the bench: the alert's ordered test is a red-cell product order
   (prepare/transfuse/crossmatch N units, OMB/BPS/BTS), a crossmatch or a type & screen, as the
   knowledge base's test catalog reads its OBR-4 (or blood product) code and text;
3. the event time (the order's or dose's time; when the alert was raised if it has none),
   newest first: the newest order is the sample on the bench now, and a type & screen sample is
   good for three days, so an old order has mostly been dealt with or redrawn;
4. when the alert was raised, newest first, then its id: a total order, so that a page cursor
   names one place in it, whatever is inserted later.

Baseline work-up reminders (`baseline-workup`) whose exposure is older than the site's
`desk.background_after_days` are background: the first dose is long given, the typing (now a
genotype) is a to-do for the next sample, not for the bench now. They are listed apart.

Pure: the store layers sort by the same key (lisguard.store.sql.desk_reads / memory.desk).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import NamedTuple

from lisguard.domain.alerts import SEVERITY_RANK, Alert, RuleId
from lisguard.domain.catalog import TestCatalog
from lisguard.domain.facts import Coded
from lisguard.domain.kb_models import TestCategory
from lisguard.domain.knowledge import KnowledgeBase

# rules whose old alerts are reminders, not bench work
BACKGROUND_RULES = frozenset({RuleId.BASELINE_WORKUP.value})
# the segments a blood product order is read from (OMB^O27, BPS^O29, BTS^O31)
PRODUCT_SEGMENTS = frozenset({"BPO", "BPX", "BTX"})
# the pre-transfusion tests, by their tests.yaml ids (a site's codes for them count too)
PRETRANSFUSION_TESTS = {"crossmatch": "crossmatch", "type_and_screen": "type_and_screen"}
# what the page calls each kind of pending transfusion work
TRANSFUSION_TITLES = {
    "blood_product": "Red cells ordered",
    "crossmatch": "Crossmatch ordered",
    "type_and_screen": "Type & screen ordered",
}
_CACHE_MAX = 4096


def as_utc(value: datetime) -> datetime:
    """As the stores keep times: aware UTC (a naive time is taken to be UTC)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


@dataclass(frozen=True, slots=True)
class OrderedTest:
    """The test an alert is about, as the store can give it without parsing the alert."""

    code: str = ""
    text: str = ""
    segment: str = ""  # where it was read: "OBR", "BPO", "BPX", "BTX"; "" for a drug alert

    @classmethod
    def of(cls, alert: Alert) -> OrderedTest:
        # the first evidence of an order's alert is the order itself (rule_text.order_evidence)
        where = alert.evidence[0].location[:3] if alert.evidence else ""
        return cls(alert.order_code, alert.order_text, where)


class TransfusionOrders:
    """Which ordered tests mean a transfusion is waiting: the same reading of the test catalog
    as the rules (lisguard.domain.recording: a blood product segment whose product is not known
    to be platelets, plasma or cryoprecipitate is red cells)."""

    def __init__(self, kb: KnowledgeBase) -> None:
        self._kb = kb
        self._tests: list[tuple[str, TestCatalog]] = [
            (kind, TestCatalog([kb.tests[test_id]]))
            for test_id, kind in PRETRANSFUSION_TESTS.items()
            if test_id in kb.tests
        ]
        self._cache: dict[OrderedTest, str | None] = {}

    def kind(self, test: OrderedTest) -> str | None:
        """The kind of work waiting (blood_product, crossmatch, type_and_screen), or None."""
        try:
            return self._cache[test]
        except KeyError:
            pass
        found = self._read(test)
        if len(self._cache) >= _CACHE_MAX:
            self._cache.clear()
        self._cache[test] = found
        return found

    def __call__(self, test: OrderedTest) -> bool:
        return self.kind(test) is not None

    def _read(self, test: OrderedTest) -> str | None:
        if not (test.code or test.text):
            return None
        coded = Coded(test.code, test.text)
        if test.segment in PRODUCT_SEGMENTS:
            cats = self._kb.categorize_product(coded)
            if TestCategory.BLOOD_PRODUCT_ORDER in cats or TestCategory.NON_RBC_PRODUCT not in cats:
                return "blood_product"
            return None
        if TestCategory.BLOOD_PRODUCT_ORDER in self._kb.categorize(coded):
            return "blood_product"
        for kind, catalog in self._tests:
            if catalog.categorize(coded):
                return kind
        return None


class QueueKey(NamedTuple):
    """An alert's place in the queue; a larger key comes first."""

    rank: int  # severity: 3 high, 2 medium, 1 low
    transfusion: int  # 1: a crossmatch or blood product is waiting
    urgent_at: datetime  # event time, else raised at (aware UTC)
    created_at: datetime  # raised at (aware UTC)
    alert_id: str


def queue_key(alert: Alert, created_at: datetime, transfusion: bool) -> QueueKey:
    return QueueKey(
        SEVERITY_RANK.get(alert.severity, 1),
        1 if transfusion else 0,
        urgent_at(alert, created_at),
        as_utc(created_at),
        alert.id,
    )


def urgent_at(alert: Alert, created_at: datetime) -> datetime:
    return as_utc(alert.event_time if alert.event_time is not None else created_at)


def is_background(alert: Alert, created_at: datetime, before: datetime | None) -> bool:
    """A baseline reminder whose exposure is older than `before` (None: nothing is)."""
    return (
        before is not None
        and alert.rule.value in BACKGROUND_RULES
        and urgent_at(alert, created_at) < as_utc(before)
    )
