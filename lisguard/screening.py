"""`lisguard check`: a feed screened for the alerts `lisguard serve` would raise, with no store.

Same reading (`lisguard.intake`), same rules, same answers to what serve decides through its
store - a resent message is a duplicate, an alert is raised once - but patient states stay in a
dict and nothing is recorded: no ACK is built, no audit event hashed, no row written. A test runs
every sample feed through both and compares them message by message
(tests/integration/test_screening.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import NamedTuple

from lisguard.domain.alerts import Alert
from lisguard.domain.engine import evaluate, patient_keys, touches_state
from lisguard.domain.facts import MessageKey
from lisguard.domain.knowledge import KnowledgeBase
from lisguard.domain.patient import PatientState
from lisguard.hl7v2.ack import acknowledged
from lisguard.hl7v2.relevance import Relevance
from lisguard.intake import IngestPolicy, Verdict, read_message


class Screened(NamedTuple):
    """One message screened. `outcome` uses the ingest words: accepted, ignored, duplicate,
    error (unreadable, AE) or rejected (refused by policy, AR)."""

    outcome: str
    control_id: str
    alerts: tuple[Alert, ...] = ()
    error: str = ""


class Screening:
    """The state of one screening run: patients, messages seen, alerts raised."""

    def __init__(self, kb: KnowledgeBase, policy: IngestPolicy | None = None) -> None:
        self.kb = kb
        self.policy = policy or IngestPolicy()
        self.relevance = Relevance(kb)  # which messages need translating
        self.states: dict[str, PatientState] = {}
        # what serve's find_message would return: the content hash of the last message stored
        # under a key, and whether an ACK was stored with it (only then is a resend a duplicate).
        # Keyed by plain tuples of text, which the garbage collector stops tracking: a check of
        # 100k messages spent a third of its time rescanning 100k MessageKey objects.
        self._last: dict[tuple[str, str, str], tuple[str, bool]] = {}
        self._alert_ids: set[str] = set()

    def screen_all(self, texts: Iterable[str]) -> Iterator[Screened]:
        for text in texts:
            yield self.screen(text)

    def screen(self, text: str) -> Screened:
        reading = read_message(text, self.policy, self.relevance)
        header, key = reading.header, reading.key
        verdict = reading.verdict
        if verdict in (Verdict.UNREADABLE, Verdict.UNTRANSLATABLE, Verdict.REFUSED):
            assert reading.error is not None
            refused = verdict is Verdict.REFUSED
            # serve keeps it (a dead letter is filed under its key only if it has a control id)
            if key is not None and (refused or header.control_id):
                self._last[_plain(key)] = (reading.digest, True)  # an AE/AR always goes back
            return Screened(
                "rejected" if refused else "error", header.control_id, error=reading.error.reason
            )
        assert key is not None
        plain = _plain(key)
        previous = self._last.get(plain)
        if previous is not None and previous == (reading.digest, True):
            return Screened("duplicate", key.control_id)
        self._last[plain] = (
            reading.digest,
            acknowledged(header, ok=True, always_reply=self.policy.always_reply),
        )
        if verdict is Verdict.IGNORE:
            return Screened("ignored", key.control_id)
        clinical = reading.clinical
        if clinical is None or not touches_state(clinical, self.kb):
            return Screened("accepted", key.control_id)
        states = self.states
        wanted = {k: states[k] for k in patient_keys(clinical) if k in states}
        outcome = evaluate(clinical, wanted, self.kb)
        states.update(outcome.states)  # new objects: evaluate never changes what it is given
        for gone in outcome.removed:
            states.pop(gone, None)
        alerts = []
        for alert in outcome.alerts:  # serve's store raises an alert id once, ever
            if alert.id not in self._alert_ids:
                self._alert_ids.add(alert.id)
                alerts.append(alert)
        return Screened("accepted", key.control_id, tuple(alerts))


def _plain(key: MessageKey) -> tuple[str, str, str]:
    return (key.sending_application, key.sending_facility, key.control_id)
