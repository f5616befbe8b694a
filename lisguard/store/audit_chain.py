"""The keyed audit chain over any Store: keying an old chain, verifying, anchoring.

- `start_keyed_chain`: a store opened with an audit key on a chain that ends in plain SHA-256
  events (a database from before keying) appends an `audit.keyed` event, so the switch is on
  the record and the head is keyed from then on.
- `verify_audit_chain`: walk the log in seq order and check it (lisguard.domain.audit).
- `verify_audit_log`: the same against the last signed anchor in the anchor file - what
  `lisguard audit verify` and GET /api/audit/verify answer.
- `anchor_now`: sign the head and append it to the anchor file (`lisguard audit anchor`, and the
  service every `audit.anchor_interval_minutes`). It first checks the chain since the previous
  anchor, and refuses to sign one that lost the previous anchor's event: signing a shortened
  chain would hide the deletion.
"""

from __future__ import annotations

import asyncio
import os
from datetime import UTC, datetime
from pathlib import Path

from lisguard.domain.audit import (
    KEYED_KIND,
    PURGE_KIND,
    ChainLink,
    ChainPin,
    ChainReport,
    is_keyed,
    verify_chain,
)
from lisguard.domain.audit_anchor import (
    Anchor,
    AnchorError,
    AuditKeys,
    anchor_line,
    anchor_problem,
    parse_anchor,
    sign_anchor,
)
from lisguard.store.audit_search import AuditQuery
from lisguard.store.base import Store
from lisguard.store.records import SYSTEM_ACTOR, AuditEvent

VERIFY_PAGE = 5000


async def start_keyed_chain(store: Store, key: bytes | None) -> None:
    """Record the switch to keyed hashes when the chain ends in plain ones (called by open)."""
    if key is None:
        return
    last = await store.access.search_audit(AuditQuery(limit=1))
    if not last or is_keyed(last[0].hash):
        return
    detail = {"scheme": "hmac-sha256", "unkeyed_through_seq": last[0].seq}
    async with store.transaction() as tx:
        await tx.add_audit([AuditEvent(KEYED_KIND, datetime.now(UTC), SYSTEM_ACTOR, "", detail)])


async def _links(store: Store, after_seq: int = 0) -> list[ChainLink]:
    links: list[ChainLink] = []
    while page := await store.list_audit(after_seq=after_seq, limit=VERIFY_PAGE):
        for row in page:
            e = row.event
            links.append(
                ChainLink(
                    row.seq, e.at, e.kind, e.actor, e.subject, e.detail, row.prev_hash, row.hash
                )
            )
        after_seq = page[-1].seq
    return links


async def verify_audit_chain(
    store: Store, *, key: bytes | None = None, pin: ChainPin | None = None
) -> ChainReport:
    """Walk the whole audit log in sequence order and check every link, keyed hashes with
    `key`, and that `pin` (a signed anchor's point) still holds."""
    return verify_chain(await _links(store), key=key, pin=pin)


class AnchorFile:
    """Anchors as JSON lines, appended. Keep it where the database's administrators cannot
    write (another host, append-only or WORM storage), or ship each line to a log server too."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def last(self) -> Anchor | None:
        """The newest anchor; None when the file does not exist or holds none."""
        try:
            line = _last_line(self.path)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise AnchorError(f"cannot read {self.path}: {exc.strerror or exc}") from exc
        if line is None:
            return None
        try:
            return parse_anchor(line)
        except AnchorError as exc:
            raise AnchorError(f"{self.path}: the last line is not an anchor ({exc})") from exc

    def append(self, anchor: Anchor) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        try:
            os.write(fd, (anchor_line(anchor) + "\n").encode("utf-8"))
            os.fsync(fd)  # an anchor is worth having only if it outlives a crash
        finally:
            os.close(fd)


def _last_line(path: Path, block: int = 4096) -> str | None:
    """The last non-empty line, read from the end: the file grows by a line an hour for years."""
    with path.open("rb") as file:
        end = file.seek(0, os.SEEK_END)
        tail = b""
        while end > 0:
            start = max(0, end - block)
            file.seek(start)
            tail = file.read(end - start) + tail
            end = start
            lines = [x for x in tail.split(b"\n") if x.strip()]
            if len(lines) > 1 or (lines and end == 0):
                return lines[-1].decode("utf-8", "replace")
        return None


class AnchorRefused(Exception):
    """The chain is not fit to anchor: signing it would vouch for a break."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__(problems)
        self.problems = problems

    def __str__(self) -> str:
        return "audit chain not anchored: " + "; ".join(self.problems)


async def verify_audit_log(
    store: Store, keys: AuditKeys, anchors: AnchorFile | None
) -> ChainReport:
    """The whole chain, keyed, and checked against the newest anchor of `anchors`."""
    problems: list[str] = []
    notes: list[str] = []
    pin: ChainPin | None = None
    if anchors is not None:
        try:
            anchor = await asyncio.to_thread(anchors.last)
        except AnchorError as exc:
            anchor = None
            problems.append(str(exc))
        if anchor is not None:
            problem = anchor_problem(anchor, keys)
            if problem is None:
                pin = anchor.pin()
                notes.append(f"checked against the anchor of {anchor.at} (seq {anchor.seq})")
            else:
                problems.append(problem)
        elif not problems:
            notes.append(
                f"no anchor in {anchors.path}: deletion of the newest events cannot be detected"
                " (run `lisguard audit anchor`, or let the service anchor periodically)"
            )
    report = await verify_audit_chain(store, key=keys.chain, pin=pin)
    return ChainReport(
        report.checked,
        problems + report.problems,
        report.last_hash,
        notes + report.notes,
        report.last_seq,
    )


async def take_anchor(
    store: Store, keys: AuditKeys, previous: Anchor | None, now: datetime
) -> Anchor:
    """A signed anchor of the head; AnchorRefused when the chain since `previous` is broken.

    Only the events since the previous anchor are walked (the earlier ones were checked when
    it was taken): an hourly anchor costs an hour of events, not the whole log."""
    pin: ChainPin | None = None
    if previous is not None:
        problem = anchor_problem(previous, keys)
        if problem is not None:
            raise AnchorRefused([problem])
        pin = previous.pin()
    links: list[ChainLink] = []
    resume = False
    if previous is not None and pin is not None and pin.seq > 0:
        links = await _links(store, after_seq=pin.seq - 1)
        resume = bool(links) and links[0].seq == pin.seq
    if not resume:  # no anchor yet, or its event was purged since: check the whole chain
        links = await _links(store)
    report = verify_chain(links, key=keys.chain, pin=pin, resume=resume)
    if not report.ok:
        raise AnchorRefused(report.problems)
    if resume and previous is not None:
        # the events up to the previous anchor, the new ones, less what purges removed since
        purged = sum(_purged(link) for link in links[1:])
        events = previous.events + len(links) - 1 - purged
    else:
        events = len(links)
    head = links[-1] if links else None
    return sign_anchor(head.seq if head else 0, head.hash if head else None, events, now, keys)


def _purged(link: ChainLink) -> int:
    if link.kind != PURGE_KIND:
        return 0
    n = link.detail.get("events")
    return n if isinstance(n, int) else 0


async def anchor_now(
    store: Store,
    keys: AuditKeys,
    anchors: AnchorFile,
    *,
    write: bool = True,
    now: datetime | None = None,
) -> Anchor:
    """Take an anchor after the newest one in `anchors`; append it there unless `write` is
    false (the caller prints it instead)."""
    previous = await asyncio.to_thread(anchors.last)
    anchor = await take_anchor(store, keys, previous, now or datetime.now(UTC))
    if write:
        await asyncio.to_thread(anchors.append, anchor)
    return anchor
