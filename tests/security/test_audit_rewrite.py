"""Security review: "the audit chain is rewritable by anyone who can write the database".

Each attack is done as a database administrator would - straight SQL, triggers out of the way -
on memory, SQLite and PostgreSQL, and must verify BROKEN: deleting the newest 500 events (given
an anchor taken before), appending a forged acknowledgement with a plain SHA-256 or a wrongly
keyed hash, and editing an event and recomputing every later hash.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

from lisguard.domain.audit import KEYED_KIND, event_hash, is_keyed
from lisguard.domain.audit_anchor import anchor_line, parse_anchor
from lisguard.store.audit_chain import (
    AnchorFile,
    AnchorRefused,
    anchor_now,
    verify_audit_chain,
    verify_audit_log,
)
from lisguard.store.base import AuditEvent, Store, StoredAuditEvent
from lisguard.store.sqlite import SqliteStore
from tests.integration.conftest import Backend
from tests.security.audit_tools import (
    KEYS,
    OTHER_KEYS,
    T0,
    Dba,
    Row,
    all_rows,
    keyed_store,
    write_events,
)


@pytest.fixture
async def store(db: Backend) -> AsyncIterator[Store]:
    s = keyed_store(db)
    await s.open()
    try:
        yield s
    finally:
        await s.close()


@pytest.fixture
def anchors(tmp_path: Path) -> AnchorFile:
    return AnchorFile(tmp_path / "anchors.jsonl")


def row_of(r: StoredAuditEvent, **changes: object) -> Row:
    e = r.event
    base = Row(e.at, e.kind, e.actor, e.subject, dict(e.detail), r.prev_hash, r.hash)
    return replace(base, **changes)  # type: ignore[arg-type]


def plain_hash(prev: str | None, row: Row) -> str:
    return event_hash(prev, row.at, row.kind, row.actor, row.subject, row.detail)


async def test_an_untouched_chain_verifies_against_its_anchor(
    store: Store, anchors: AnchorFile
) -> None:
    await write_events(store, 120)
    anchor = await anchor_now(store, KEYS, anchors)
    assert anchor.events == 120 and is_keyed(anchor.hash)
    await write_events(store, 30, start=T0 + timedelta(hours=1))
    report = await verify_audit_log(store, KEYS, anchors)
    assert report.ok, report.problems
    assert report.checked == 150
    assert any("checked against the anchor" in n for n in report.notes)
    # the next anchor walks only what came since, and counts on from the last one
    again = await anchor_now(store, KEYS, anchors)
    assert (again.events, again.seq) == (150, report.last_seq)
    assert parse_anchor(anchor_line(again)) == again


async def test_deleting_the_newest_500_events_is_broken_given_an_anchor(
    db: Backend, store: Store, anchors: AnchorFile
) -> None:
    await write_events(store, 600)
    await anchor_now(store, KEYS, anchors)
    rows = await all_rows(store)
    await Dba(db, store).delete_after(rows[-501].seq)
    # what remains is a valid chain: only the anchor outside the database knows it was longer
    assert (await verify_audit_chain(store, key=KEYS.chain)).ok
    report = await verify_audit_log(store, KEYS, anchors)
    assert not report.ok
    assert any("the newest events were deleted" in p for p in report.problems), report.problems
    # the service writing on does not cover it up, and no new anchor vouches for the gap
    await write_events(store, 10, start=T0 + timedelta(days=1))
    later = await verify_audit_log(store, KEYS, anchors)
    assert any(f"seq {rows[-1].seq}, which" in p and "missing" in p for p in later.problems)
    with pytest.raises(AnchorRefused):
        await anchor_now(store, KEYS, anchors)


@pytest.mark.parametrize("forgery", ["plain-sha256", "wrong-key", "no-hash"])
async def test_an_appended_forged_acknowledgement_is_broken(
    db: Backend, store: Store, anchors: AnchorFile, forgery: str
) -> None:
    await write_events(store, 20)
    await anchor_now(store, KEYS, anchors)
    last = (await all_rows(store))[-1]
    ack = Row(
        T0 + timedelta(hours=2),
        "alert.acknowledged",
        "dr.house",
        "alert-17",
        {"note": "phoned the ward", "patient": "P3"},
        last.hash,
        None,
    )
    if forgery == "plain-sha256":
        digest: str | None = plain_hash(last.hash, ack)
    elif forgery == "wrong-key":
        digest = event_hash(
            last.hash, ack.at, ack.kind, ack.actor, ack.subject, ack.detail, OTHER_KEYS.chain
        )
    else:
        digest = None
    await Dba(db, store).append(replace(ack, hash=digest))
    report = await verify_audit_log(store, KEYS, anchors)
    assert not report.ok
    forged = (await all_rows(store))[-1].seq
    assert any(p.startswith(f"seq {forged}:") for p in report.problems), report.problems


@pytest.mark.parametrize("rehash", ["plain-sha256", "wrong-key"])
async def test_an_edit_with_every_later_hash_recomputed_is_broken(
    db: Backend, store: Store, rehash: str
) -> None:
    await write_events(store, 40)
    rows = await all_rows(store)
    victim = rows[25]
    key = None if rehash == "plain-sha256" else OTHER_KEYS.chain
    prev = rows[24].hash
    forged: dict[int, Row] = {}
    for r in rows[25:]:
        new = row_of(r, prev_hash=prev, actor="mallory" if r is victim else r.event.actor)
        digest = event_hash(prev, new.at, new.kind, new.actor, new.subject, new.detail, key)
        forged[r.seq] = replace(new, hash=digest)
        prev = digest
    await Dba(db, store).rewrite_many(forged)
    # no anchor needed: the keyed events before the edit pin the rest
    report = await verify_audit_log(store, KEYS, None)
    assert not report.ok
    assert report.problems[0].startswith(f"seq {victim.seq}:"), report.problems


async def test_rewriting_the_whole_chain_in_plain_sha256_is_broken_given_an_anchor(
    db: Backend, store: Store, anchors: AnchorFile
) -> None:
    """From the first event on, a plain chain looks like a database from before keying: the
    anchor's keyed head hash is what it can no longer match."""
    await write_events(store, 30)
    await anchor_now(store, KEYS, anchors)
    rows = await all_rows(store)
    prev = None
    forged: dict[int, Row] = {}
    for r in rows:
        new = row_of(r, prev_hash=prev, actor="mallory" if r is rows[3] else r.event.actor)
        prev = plain_hash(prev, new)
        forged[r.seq] = replace(new, hash=prev)
    await Dba(db, store).rewrite_many(forged)
    report = await verify_audit_log(store, KEYS, anchors)
    assert not report.ok
    assert any("not the event the anchor of" in p for p in report.problems), report.problems
    # without the anchor the key alone cannot tell; verification says what it could not cover
    unanchored = await verify_audit_log(store, KEYS, None)
    assert any("no event is keyed" in n for n in unanchored.notes)


async def test_a_chain_from_before_keying_verifies_as_a_prefix_only(db: Backend) -> None:
    old = keyed_store(db, key=None)  # a lisguard from before keying
    await old.open()
    await write_events(old, 12)
    await old.close()
    store = keyed_store(db)
    await store.open()
    try:
        rows = await all_rows(store)
        assert not is_keyed(rows[11].hash)
        switch = rows[12]  # written at open: the switch is on the record
        assert switch.event.kind == KEYED_KIND and is_keyed(switch.hash)
        assert switch.event.detail["unkeyed_through_seq"] == rows[11].seq
        assert len(rows) == 13
        await write_events(store, 5, start=T0 + timedelta(days=1))
        assert (await verify_audit_log(store, KEYS, None)).ok
        # a plain event after a keyed one is a forgery, even with a correct SHA-256
        last = (await all_rows(store))[-1]
        fake = row_of(last, prev_hash=last.hash, subject="forged")
        await Dba(db, store).append(replace(fake, hash=plain_hash(last.hash, fake)))
        report = await verify_audit_log(store, KEYS, None)
        assert not report.ok
        assert any("plain SHA-256 hash after the keyed events" in p for p in report.problems)
    finally:
        await store.close()


async def test_retention_purge_keeps_the_keyed_chain_and_its_anchor_verifiable(
    store: Store, anchors: AnchorFile
) -> None:
    await write_events(store, 50)
    await anchor_now(store, KEYS, anchors)
    now = T0 + timedelta(days=400)
    removed = await store.access.purge_audit(T0 + timedelta(seconds=20), by="cli", at=now)
    assert removed == 20
    report = await verify_audit_log(store, KEYS, anchors)
    assert report.ok, report.problems
    # purging past the anchored event too: the purge accounts for it
    removed = await store.access.purge_audit(now, by="cli", at=now)
    assert removed == 30  # the first purge's own event is at `now`: kept
    report = await verify_audit_log(store, KEYS, anchors)
    assert report.ok, report.problems
    anchor = await anchor_now(store, KEYS, anchors)
    assert anchor.events == 2  # the two purges' events
    assert (await verify_audit_log(store, KEYS, anchors)).ok


async def test_a_forged_or_foreign_anchor_is_broken(store: Store, anchors: AnchorFile) -> None:
    await write_events(store, 5)
    real = await anchor_now(store, KEYS, anchors)
    # an anchor of a shorter chain, to cover a deletion: the signature does not fit
    lie = parse_anchor(anchor_line(real).replace(f'"seq":{real.seq}', f'"seq":{real.seq - 2}'))
    anchors.append(lie)
    report = await verify_audit_log(store, KEYS, anchors)
    assert not report.ok and "wrong signature" in report.problems[0]
    anchors.path.write_text(anchor_line(real) + "\n")
    report = await verify_audit_log(store, OTHER_KEYS, anchors)
    assert not report.ok and "signed by key" in report.problems[0]
    anchors.path.write_text(anchor_line(real) + "\n{garbled\n")
    report = await verify_audit_log(store, KEYS, anchors)
    assert not report.ok and "not an anchor" in report.problems[0]


async def test_keyed_events_without_the_key_do_not_verify(store: Store) -> None:
    async with store.transaction() as tx:
        await tx.add_audit([AuditEvent("token.created", T0, "cli", "1", {"role": "admin"})])
    report = await verify_audit_chain(store)
    assert not report.ok and "no audit key was given" in report.problems[-1]


async def test_sqlite_refuses_updates_of_audit_events_but_lets_retention_delete(
    tmp_path: Path,
) -> None:
    store = SqliteStore(tmp_path / "lg.db", audit_key=KEYS.chain)
    await store.open()
    try:
        await write_events(store, 3)
    finally:
        await store.close()
    conn = sqlite3.connect(tmp_path / "lg.db")
    try:
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            conn.execute("UPDATE audit_events SET actor = 'mallory'")
        with conn:
            conn.execute("DELETE FROM audit_events WHERE seq = 1")  # what a purge does
    finally:
        conn.close()
