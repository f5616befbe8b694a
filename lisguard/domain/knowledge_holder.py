"""The knowledge in force: one holder that every reader asks, swapped whole by a reload.

The ingest path, the CDS Hooks service, the FHIR API and the pages all read the knowledge base
through the one `KnowledgeHolder` the composition root makes, never through a copy taken at
start-up: a reload (`lisguard.reload`, SIGHUP or the admin API) swaps it for all of them at
once. A reader that needs one knowledge base for a whole piece of work (a message being
ingested, a CDS call) takes `holder.kb` once at its start and keeps it: a swap in between
changes what the next message sees, never half of one message.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable

from lisguard.domain.knowledge import KnowledgeBase

SwapListener = Callable[[KnowledgeBase], None]


def knowledge_fingerprint(kb: KnowledgeBase) -> str:
    """The knowledge base's version: a digest of every fact as loaded (base files and the
    site's overrides), so two knowledge bases with the same value judge alike. It is the same
    in every process: the printed slip, the validation report and the API show one version."""
    facts = {
        "default_window_months": kb.default_window_months,
        "drugs": {k: v.model_dump() for k, v in kb.drugs.items()},
        "tests": {k: v.model_dump() for k, v in kb.tests.items()},
        "interpretation": kb.interpretation.model_dump(),
        "identity": kb.identity.rules.model_dump(),
        "immunoglobulin": kb.immunoglobulin.model_dump(),
    }
    text = json.dumps(facts, sort_keys=True, separators=(",", ":"), default=_plain)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


def _plain(value: object) -> object:
    # a set (a drug's effects) in a fixed order: a set's order changes with the hash seed
    if isinstance(value, set | frozenset):
        return sorted(map(str, value))
    return str(value)


class KnowledgeHolder:
    """The current knowledge base and its version. `swap` replaces both in one assignment (the
    event loop runs one task at a time, so no reader sees a half-made swap) and tells the
    listeners (a web app's state, caches keyed on the knowledge base)."""

    def __init__(self, kb: KnowledgeBase) -> None:
        self._kb = kb
        self._version = knowledge_fingerprint(kb)
        self._listeners: list[SwapListener] = []

    @property
    def kb(self) -> KnowledgeBase:
        return self._kb

    @property
    def version(self) -> str:
        return self._version

    def on_swap(self, listener: SwapListener) -> None:
        self._listeners.append(listener)

    def swap(self, kb: KnowledgeBase) -> KnowledgeBase:
        """Put `kb` in force (validated already: it loaded); returns the one it replaces."""
        old = self._kb
        self._kb, self._version = kb, knowledge_fingerprint(kb)
        for listener in self._listeners:
            listener(kb)
        return old
