"""Reloading the knowledge base and the site's ingest settings without a restart: SIGHUP, or
`POST /api/admin/knowledge/reload` (the message browser's "Reload knowledge" button).

What is re-read: the settings file `serve` was started with (and the environment, as at start),
for two sections only - `knowledge` (the base directory and the site files, re-read from disk)
and `ingest` (processing ids, type actions, ACK options); without a settings file, the
knowledge files already configured. Everything is loaded and validated first: a file that does
not load (a YAML mistake, an unknown key, a bad value) keeps the knowledge and settings in force
and is reported with the loader's message, naming the file and the key. A good one is swapped
in at once for the messages that start after it; a message being processed finishes with the
knowledge it started with (lisguard.domain.knowledge_holder). Other sections that changed in
the file (ports, store, delivery...) take effect at the next restart; the reload says which.

Audited: `config.reloaded` (who, old and new knowledge version, old and new ingest settings,
the files, what needs a restart) or `config.reload_refused` (who, why, the version kept).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog
from pydantic import ValidationError

from lisguard.domain.knowledge import KnowledgeBase, KnowledgeBaseError, load_knowledge_base
from lisguard.intake import IngestPolicy
from lisguard.services import Ingestor
from lisguard.settings import Settings
from lisguard.store.base import AuditEvent

log = structlog.get_logger("lisguard.reload")

RELOADED = "config.reloaded"
REFUSED = "config.reload_refused"
RELOADED_SECTIONS = ("knowledge", "ingest")


def ingest_policy(settings: Settings) -> IngestPolicy:
    s = settings.ingest
    return IngestPolicy(
        processing_ids=frozenset(s.processing_ids),
        unknown_types=s.unknown_types,
        type_actions=dict(s.type_actions),
        always_reply=s.always_reply,
        app_name=s.app_name,
    )


def policy_view(policy: IngestPolicy) -> dict[str, Any]:
    return {
        "processing_ids": sorted(policy.processing_ids),
        "unknown_types": policy.unknown_types,
        "type_actions": dict(sorted(policy.type_actions.items())),
        "always_reply": policy.always_reply,
        "app_name": policy.app_name,
    }


class ReloadRefused(Exception):
    """The new files do not load; the message names the file and the key."""


def refusal(exc: Exception, config_path: Path | None) -> str:
    """The loader's message. A settings error names the key and what is wrong, never the value
    (the file may hold secrets)."""
    if isinstance(exc, ValidationError):
        where = f"{config_path}: " if config_path is not None else ""
        problems = [
            f"{'.'.join(str(p) for p in e['loc']) or 'settings'}: {e['msg']}" for e in exc.errors()
        ]
        return where + "; ".join(problems)
    return str(exc)


@dataclass
class Reloaded:
    old_version: str
    new_version: str
    files: list[str]
    ingest: dict[str, Any]
    ingest_changed: bool
    restart_needed: list[str]

    @property
    def changed(self) -> bool:
        return self.old_version != self.new_version or self.ingest_changed

    def view(self) -> dict[str, Any]:
        return {
            "old_version": self.old_version,
            "new_version": self.new_version,
            "changed": self.changed,
            "ingest_changed": self.ingest_changed,
            "files": self.files,
            "ingest": self.ingest,
            "restart_needed": self.restart_needed,
        }


class Reloader:
    def __init__(self, ingestor: Ingestor, settings: Settings, config_path: Path | None) -> None:
        self.ingestor = ingestor
        self.settings = settings  # as running: the reloaded sections replaced at each reload
        self.config_path = config_path
        self.loaded_at = datetime.now(UTC)
        self._lock = asyncio.Lock()  # one reload at a time

    def files(self, settings: Settings | None = None) -> list[str]:
        knowledge = (settings or self.settings).knowledge
        base = knowledge.base_dir
        return [str(base) if base is not None else "config/knowledge (the checkout's)"] + [
            str(f) for f in knowledge.files
        ]

    def _load(self) -> tuple[Settings, KnowledgeBase]:
        """Blocking (files, YAML, validation): run in a thread, off the event loop."""
        if self.config_path is not None:
            settings = Settings.load(self.config_path)
        else:  # no settings file: the same knowledge files, read again
            settings = self.settings.model_copy()
        kb = load_knowledge_base(
            list(settings.knowledge.files), base_dir=settings.knowledge.base_dir
        )
        return settings, kb

    async def reload(self, *, by: str) -> Reloaded:
        async with self._lock:
            holder = self.ingestor.knowledge
            try:
                settings, kb = await asyncio.to_thread(self._load)
            except (FileNotFoundError, OSError, ValidationError, KnowledgeBaseError) as exc:
                reason = refusal(exc, self.config_path)
                detail = {"error": reason, "kept_version": holder.version}
                await self._audit(REFUSED, by, detail)
                log.error("reload_refused", error=reason, kept_version=holder.version)
                raise ReloadRefused(reason) from exc
            old_version, old_policy = holder.version, policy_view(self.ingestor.policy)
            policy = ingest_policy(settings)
            restart = self._restart_needed(settings)
            holder.swap(kb)
            self.ingestor.policy = policy
            self.settings = self.settings.model_copy(
                update={"knowledge": settings.knowledge, "ingest": settings.ingest}
            )
            self.loaded_at = datetime.now(UTC)
            done = Reloaded(
                old_version,
                holder.version,
                self.files(),
                policy_view(policy),
                policy_view(policy) != old_policy,
                restart,
            )
            await self._audit(
                RELOADED,
                by,
                {
                    "old": {"knowledge": old_version, "ingest": old_policy},
                    "new": {"knowledge": done.new_version, "ingest": done.ingest},
                    "files": done.files,
                    "restart_needed": restart,
                },
            )
            log.info(
                "knowledge_reloaded",
                old_version=old_version,
                new_version=done.new_version,
                ingest_changed=done.ingest_changed,
                restart_needed=restart,
            )
            return done

    def _restart_needed(self, new: Settings) -> list[str]:
        """The sections (other than the reloaded ones) whose new values differ from those in
        force: they apply at the next restart."""
        running, loaded = self.settings.redacted(), new.redacted()
        return sorted(
            k for k in loaded if k not in RELOADED_SECTIONS and loaded[k] != running.get(k)
        )

    async def _audit(self, kind: str, by: str, detail: dict[str, Any]) -> None:
        async with self.ingestor.store.transaction() as tx:
            await tx.add_audit([AuditEvent(kind, datetime.now(UTC), by, "knowledge", detail)])
