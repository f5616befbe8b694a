"""The audit chain: each event carries the hash of the one before it.

An inspector's question is "was this record altered?". Editing an event changes its hash;
deleting one breaks the link of the next; moving one breaks two links. `verify_chain` walks the
events in sequence order and says where the first break is. A retention purge of old events
records the hash of the last event it removed (the anchor), so the chain that remains still
verifies from that anchor.

A plain SHA-256 chain can be recomputed by anyone who can write the database, so the hash is an
HMAC-SHA256 under a key the database does not hold (the install key's "audit-chain" sub-key,
lisguard.keys), written "hmac:<hex>". Databases from before keying hold plain SHA-256 events:
they verify only as a prefix - the first keyed event's HMAC covers its prev_hash, which pins
them - and a plain event after a keyed one is a forgery. What the key cannot show is events
missing at the end: a signed anchor of the head kept outside the database does
(lisguard.domain.audit_anchor, checked here through `ChainPin`).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

PURGE_KIND = "audit.purged"
# written when a store with a key opens on a chain that ends in plain SHA-256 events
KEYED_KIND = "audit.keyed"
KEYED_PREFIX = "hmac:"


def is_keyed(digest: str | None) -> bool:
    return digest is not None and digest.startswith(KEYED_PREFIX)


def canonical_detail(detail: Mapping[str, Any]) -> str:
    """Stable text for a detail object: sorted keys, compact, non-ASCII kept."""
    return json.dumps(
        detail, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str
    )


@lru_cache(maxsize=256)  # the events of one message share their time
def canonical_time(at: datetime) -> str:
    """UTC, microseconds, "Z": 2026-11-22T03:04:05.000006Z."""
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    at = at.astimezone(UTC)
    if at.year < 1000:  # strftime's %Y does not pad; isoformat would
        return at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    # the same text as that strftime, at a tenth of its cost (a new time every message)
    return at.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def event_hash(
    prev_hash: str | None,
    at: datetime,
    kind: str,
    actor: str,
    subject: str,
    detail: Mapping[str, Any],
    key: bytes | None = None,
) -> str:
    return hash_canonical(prev_hash, at, kind, actor, subject, canonical_detail(detail), key)


def hash_canonical(
    prev_hash: str | None,
    at: datetime,
    kind: str,
    actor: str,
    subject: str,
    canonical: str,
    key: bytes | None = None,
) -> str:
    """event_hash of a detail already in its canonical text (`canonical_detail`): the keyed
    "hmac:<hex>" with a key, plain SHA-256 hex (chains from before keying) without."""
    text = "\x1e".join((prev_hash or "", canonical_time(at), kind, actor, subject, canonical))
    if key is None:
        return hashlib.sha256(text.encode("utf-8")).hexdigest()
    mac = _keyed(key).copy()  # the key's pads are hashed once, not once an event
    mac.update(text.encode("utf-8"))
    return KEYED_PREFIX + mac.hexdigest()


@lru_cache(maxsize=8)
def _keyed(key: bytes) -> hmac.HMAC:
    return hmac.new(key, digestmod=hashlib.sha256)


def reads_back_the_same(value: Any) -> bool:
    """Whether JSON text of `value` (sorted keys) is already canonical: what loading it and
    dumping it again (`canonical_detail`) gives. True when every object key is a str - a
    number key would sort as a number now and as text once read back - and the top level is a
    dict (anything else is stored wrapped). Values need no check: the text of a number, string,
    bool or null reads back unchanged."""
    if type(value) is not dict:
        return False
    stack: list[Any] = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            for key, inner in item.items():
                if not isinstance(key, str):
                    return False
                if isinstance(inner, dict | list | tuple):
                    stack.append(inner)
        else:  # list or tuple
            stack.extend(v for v in item if isinstance(v, dict | list | tuple))
    return True


@dataclass(frozen=True, slots=True)
class ChainLink:
    """What verification needs of one stored event."""

    seq: int
    at: datetime
    kind: str
    actor: str
    subject: str
    detail: Mapping[str, Any]
    prev_hash: str | None
    hash: str | None


@dataclass(frozen=True, slots=True)
class ChainPin:
    """A point of the chain vouched for from outside the database (a signed anchor): the
    event `seq` had `hash` then, and the chain reached at least that far."""

    seq: int  # 0: the chain was empty
    hash: str | None
    label: str = "the last anchor"  # names it in problems: "the anchor of 2026-03-01T..."


@dataclass(frozen=True, slots=True)
class ChainReport:
    checked: int
    problems: list[str]
    last_hash: str | None
    notes: list[str] = field(default_factory=list)  # not breaks: what the check could not cover
    last_seq: int | None = None

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_chain(
    links: Iterable[ChainLink],
    *,
    key: bytes | None = None,
    pin: ChainPin | None = None,
    resume: bool = False,
    max_problems: int = 20,
) -> ChainReport:
    """Check every link; report edits, deletions and reorderings by sequence number.

    `key`: the audit-chain key that keyed hashes ("hmac:") are checked with. `pin`: a point the
    chain must still hold (or have purged). `resume`: the links start at the pinned event
    rather than at the start of the chain, so the event before the first is not missing (the
    check of the segment since the last anchor)."""
    problems: list[str] = []
    notes: list[str] = []
    anchors: set[str] = set()
    purged_through = 0
    first_prev: tuple[int, str] | None = None
    previous: ChainLink | None = None
    keyed_from: int | None = None  # seq of the first keyed event
    unchecked_keyed = 0
    pinned_hash: str | None = None
    pin_seen = False
    checked = 0
    cut_short = False
    for link in links:
        checked += 1
        if is_keyed(link.hash):
            if keyed_from is None:
                keyed_from = link.seq
            if key is None:
                unchecked_keyed += 1
            elif not hmac.compare_digest(_expected(link, key).encode(), (link.hash or "").encode()):
                problems.append(
                    f"seq {link.seq}: content does not match its keyed hash (edited, or hashed"
                    " without the audit key)"
                )
        elif keyed_from is not None:
            problems.append(
                f"seq {link.seq}: a plain SHA-256 hash after the keyed events from seq"
                f" {keyed_from} (forged, or recomputed without the audit key)"
            )
        elif link.hash != _expected(link, None):
            problems.append(f"seq {link.seq}: content does not match its hash (edited)")
        if previous is None:
            resumes = resume and pin is not None and link.seq == pin.seq
            if link.prev_hash and not resumes:
                first_prev = (link.seq, link.prev_hash)
        elif link.prev_hash != previous.hash:
            problems.append(
                f"seq {link.seq}: does not follow seq {previous.seq} "
                "(an event was deleted, inserted or moved here)"
            )
        if link.kind == PURGE_KIND:
            anchor = link.detail.get("anchor_hash")
            if isinstance(anchor, str):
                anchors.add(anchor)
            through = link.detail.get("through_seq")
            if isinstance(through, int):
                purged_through = max(purged_through, through)
        if pin is not None and link.seq == pin.seq:
            pin_seen, pinned_hash = True, link.hash
        previous = link
        if len(problems) >= max_problems:
            cut_short = True
            break
    if first_prev is not None and first_prev[1] not in anchors:
        problems.insert(
            0,
            f"seq {first_prev[0]}: the chain starts after events that are missing and no "
            "retention purge accounts for them",
        )
    if unchecked_keyed:
        problems.append(f"{unchecked_keyed} keyed events not checked: no audit key was given")
    last_seq = previous.seq if previous else None
    if pin is not None and not cut_short:
        problems.extend(_pin_problems(pin, pin_seen, pinned_hash, last_seq, purged_through))
    if key is not None and checked and keyed_from is None:
        notes.append(
            "no event is keyed: plain SHA-256 can be recomputed by whoever can write the database"
        )
    return ChainReport(checked, problems, previous.hash if previous else None, notes, last_seq)


def _expected(link: ChainLink, key: bytes | None) -> str:
    return event_hash(
        link.prev_hash, link.at, link.kind, link.actor, link.subject, link.detail, key
    )


def _pin_problems(
    pin: ChainPin, seen: bool, found: str | None, last_seq: int | None, purged_through: int
) -> list[str]:
    if pin.seq <= 0:
        return []
    if seen:
        if found != pin.hash:
            return [f"seq {pin.seq}: not the event {pin.label} vouches for (rewritten)"]
        return []
    if pin.seq <= purged_through:
        return []  # removed by a retention purge, which the chain records
    if last_seq is None or last_seq < pin.seq:
        end = "the chain is empty" if last_seq is None else f"the chain ends at seq {last_seq}"
        return [f"{end}, but {pin.label} saw seq {pin.seq}: the newest events were deleted"]
    return [f"seq {pin.seq}, which {pin.label} vouches for, is missing (deleted)"]
