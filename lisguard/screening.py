"""`lisguard check`: a feed screened for the alerts `lisguard serve` would raise, with no store.

Same reading (`lisguard.intake`), same rules, same answers to what serve decides through its
store - a resent message is a duplicate, an alert is raised once - but patient states stay in a
dict and nothing is recorded: no ACK is built, no audit event hashed, no row written. A test runs
every sample feed through both and compares them message by message
(tests/integration/test_screening.py).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Iterator
from typing import NamedTuple

from lisguard.domain.alerts import Alert
from lisguard.domain.engine import (
    MAX_ALIAS_HOPS,
    evaluate,
    keys_to_follow,
    patient_keys,
    touches_state,
)
from lisguard.domain.facts import MessageKey
from lisguard.domain.knowledge import KnowledgeBase
from lisguard.domain.patient import PatientState, state_key
from lisguard.hl7v2.ack import acknowledged
from lisguard.hl7v2.relevance import Relevance
from lisguard.intake import IngestPolicy, Reading, Verdict, read_message


class Screened(NamedTuple):
    """One message screened. `outcome` uses the ingest words: accepted, ignored, duplicate,
    error (unreadable, AE) or rejected (refused by policy, AR)."""

    outcome: str
    control_id: str
    alerts: tuple[Alert, ...] = ()
    error: str = ""


# How many message keys a run remembers to recognise resends. An interface engine resends within
# minutes or hours, so the newest keys are the ones that matter; remembering every key made a
# year's feed cost ~200 bytes a message (2 GB at 10 million). A resend arriving more than this
# many messages after its original is screened as new (serve, which keeps every message, would
# answer it as a duplicate): `forgotten` counts the keys let go, and `validate` reports it.
RESEND_MEMORY = 100_000


class Screening:
    """The state of one screening run: patients, messages seen, alerts raised."""

    def __init__(
        self,
        kb: KnowledgeBase,
        policy: IngestPolicy | None = None,
        resend_memory: int = RESEND_MEMORY,
    ) -> None:
        self.kb = kb
        self.policy = policy or IngestPolicy()
        self.relevance = Relevance(kb)  # which messages need translating
        self.states: dict[str, PatientState] = {}
        # what serve's find_message would return: the content hash of the last message stored
        # under a key, and whether an ACK was stored with it (only then is a resend a duplicate).
        # One entry a message up to `resend_memory`, oldest let go first; kept small - a str key
        # and 33 bytes (tuples of str were 520) - and untracked by the garbage collector: a check
        # of 100k messages once spent a third of its time rescanning 100k MessageKey objects.
        self._last: OrderedDict[str, bytes] = OrderedDict()
        self.resend_memory = max(1, resend_memory)
        self.forgotten = 0
        self._alert_ids: set[str] = set()

    def screen_all(self, texts: Iterable[str]) -> Iterator[Screened]:
        for text in texts:
            yield self.screen(text)

    def screen(self, text: str) -> Screened:
        return self.screen_reading(self.read(text))

    def read(self, text: str) -> Reading:
        """The first step of `screen`: what serve's intake reads of the message."""
        return read_message(text, self.policy, self.relevance)

    def screen_reading(self, reading: Reading) -> Screened:
        """The rest of `screen`, for a caller that looks at the reading too (the segments,
        MSH-7: `lisguard validate`); each message read is screened once, in order."""
        header, key = reading.header, reading.key
        verdict = reading.verdict
        if verdict in (Verdict.UNREADABLE, Verdict.UNTRANSLATABLE, Verdict.REFUSED):
            assert reading.error is not None
            refused = verdict is Verdict.REFUSED
            # serve keeps it (a dead letter is filed under its key only if it has a control id)
            if key is not None and (refused or header.control_id):
                self._remember(_plain(key), _seen(reading.digest, True))  # an AE/AR goes back
            return Screened(
                "rejected" if refused else "error", header.control_id, error=reading.error.reason
            )
        assert key is not None
        plain = _plain(key)
        previous = self._last.get(plain)
        if previous is not None and previous == _seen(reading.digest, True):
            self._last.move_to_end(plain)  # resent once, likely resent again: kept longest
            return Screened("duplicate", key.control_id)
        self._remember(
            plain,
            _seen(
                reading.digest,
                acknowledged(header, ok=True, always_reply=self.policy.always_reply),
            ),
        )
        if verdict is Verdict.IGNORE:
            return Screened("ignored", key.control_id)
        clinical = reading.clinical
        if clinical is None or not touches_state(clinical, self.kb):
            return Screened("accepted", key.control_id)
        states = self.states
        pid = clinical.processing_id  # as serve: a test message's states are its own (state_key)

        def known(keys: Iterable[str]) -> dict[str, PatientState]:
            return {k: states[state_key(k, pid)] for k in keys if state_key(k, pid) in states}

        wanted = known(patient_keys(clinical))
        tried = set(patient_keys(clinical))
        for _ in range(MAX_ALIAS_HOPS):  # as serve: a retired id's survivor, linked records
            lock, read = keys_to_follow(clinical, wanted)
            more = [k for k in (*lock, *read) if k not in tried]
            if not more:
                break
            tried.update(more)
            wanted.update(known(more))
        outcome = evaluate(clinical, wanted, self.kb)
        # new objects: evaluate never changes what it is given
        states.update({state_key(k, pid): st for k, st in outcome.states.items()})
        alerts = []
        for alert in outcome.alerts:  # serve's store raises an alert id once, ever
            if alert.id not in self._alert_ids:
                self._alert_ids.add(alert.id)
                alerts.append(alert)
        return Screened("accepted", key.control_id, tuple(alerts))


    def _remember(self, plain: str, seen: bytes) -> None:
        last = self._last
        last[plain] = seen
        last.move_to_end(plain)  # the newest key under it: the last to be let go
        if len(last) > self.resend_memory:
            last.popitem(last=False)
            self.forgotten += 1


def _plain(key: MessageKey) -> str:
    # joined by the unit separator, a control character HL7 text has no use for
    return f"{key.sending_application}\x1f{key.sending_facility}\x1f{key.control_id}"


def _seen(digest: str, acked: bool) -> bytes:
    """A stored message as find_message would see it: its content hash and whether it was ACKed."""
    return bytes.fromhex(digest) + (b"\x01" if acked else b"\x00")
