"""`lisguard replay`: replay stored messages from the command line, on the installation's store
(the service may be running or stopped), with the knowledge and ingest settings the settings
file gives now.

    lisguard replay --dead-letters [--since 2026-03-01] --reason "RAS allowed" [--reevaluate]
    lisguard replay 812 813 --reason "local dara code added" --reevaluate [--dry-run]

It opens the store as the other admin commands do (lisguard.admin: an existing database only,
keyed with the install key) and runs the same replay as the message browser
(lisguard.replay). Alerts it raises get their outbox rows in the same transaction, so a running
service's delivery workers send them; a running service's page shows them at its next refresh
(at once on PostgreSQL, whose changes reach every replica).
"""

from __future__ import annotations

import argparse
import getpass
from datetime import UTC, datetime, timedelta
from typing import TextIO

from lisguard.admin import audit_keys, require_database
from lisguard.alerting.routing import AlertRouting
from lisguard.domain.knowledge import KnowledgeBaseError, load_knowledge_base
from lisguard.reload import ingest_policy
from lisguard.replay import MAX_MESSAGES, ReplayRequest, dead_letters, replay, summary_lines
from lisguard.services import Ingestor
from lisguard.settings import Settings
from lisguard.store import open_store
from lisguard.store.base import StoreError
from lisguard.transport.delivery import channels

# the outcomes after which the message needs nothing more: exit status 0
SETTLED = frozenset({"accepted", "ignored", "duplicate", "would-process"})


def since_arg(text: str) -> datetime:
    """--since: a date (that day's start, UTC) or an ISO date-time (UTC unless it says)."""
    try:
        value = datetime.fromisoformat(text.strip().replace("z", "Z"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a date (2026-03-01) or date-time (2026-03-01T08:30:00Z)"
        ) from None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def who() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no name for this uid (a container)
        return "cli"


async def replay_command(
    settings: Settings,
    out: TextIO,
    *,
    ids: list[int],
    dead: bool,
    since: datetime | None,
    reason: str,
    reevaluate: bool,
    dry_run: bool,
) -> int:
    """Exit 0 when every message is settled (processed, or a duplicate of an accepted one), 1
    when some are refused again or could not be replayed, 2 for a usage or store problem."""
    if not reason.strip():
        raise ValueError("--reason: say why (the fix made): it is kept in the audit log")
    url = require_database(settings)
    if url.startswith("memory:"):
        raise StoreError("store.url is memory://: there is no stored message to replay")
    try:
        knowledge = settings.knowledge
        kb = load_knowledge_base(list(knowledge.files), base_dir=knowledge.base_dir)
    except KnowledgeBaseError as exc:
        raise ValueError(str(exc)) from exc
    routing = AlertRouting(
        channels=tuple(route for _, route in channels(settings.delivery)),
        collapse_window=timedelta(hours=settings.delivery.collapse_window_hours),
    )
    store = open_store(url, audit_key=audit_keys(settings).chain)
    await store.open()
    try:
        ingestor = Ingestor(store, kb, ingest_policy(settings), routing=routing)
        wanted = list(ids)
        if dead:
            wanted += await dead_letters(ingestor, since)
        if not wanted:
            out.write("# nothing to replay\n")
            return 0
        status = 0
        for start in range(0, len(wanted), MAX_MESSAGES):
            chunk = tuple(wanted[start : start + MAX_MESSAGES])
            report = await replay(
                ingestor, ReplayRequest(chunk, reason.strip(), reevaluate, dry_run), by=who()
            )
            for line in summary_lines(report):
                out.write(line + "\n")
            if any(r.outcome not in SETTLED for r in report.results):
                status = 1
        return status
    finally:
        await store.close()
