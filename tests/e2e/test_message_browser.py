"""The message browser's API over real sockets, on every store (memory, SQLite, PostgreSQL):
"did lisguard get message X, what did it answer, what did it do?" - search filters and paging,
one message's text, segments, ACK, alerts, state changes and audit events, who may ask, and
that every read is audited as a read of patient data."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from lisguard.app import Service
from lisguard.hl7v2.ack import peek_header
from lisguard.store.audit_search import AuditQuery
from lisguard.transport.mllp import msa_code
from tests.e2e import message_support as feed

OTHER = "MRN66002"
LATIN1 = (
    "MSH|^~\\&|OE|SMH|LISGUARD|SMH|20260303080000||ORM^O01|L1|P|2.5.1||||||8859/1\r"
    "PID|1||MRN77003^^^SMH^MR||MÜLLER^JOSÉ||19500101|M\r"
    "ORC|NW|P9\r"
    "OBR|1|P9||890-4^Antibody screen^LN|||20260303075500"
)


@dataclass
class Seeded:
    service: Service
    tokens: dict[str, str]
    http: aiohttp.ClientSession
    ids: dict[str, int] = field(default_factory=dict)  # what was sent -> its stored id

    def client(self, role: str | None) -> feed.Client:
        return feed.Client(self.http, feed.base_url(self.service), self.tokens.get(role or ""))


@pytest.fixture(params=feed.STORES)
async def seeded(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Seeded]:
    async with feed.store_url(request.param, tmp_path) as url:
        # the site refuses the infusion centre's administrations (RAS) while that feed is tested
        config = feed.settings_file(tmp_path, url, ingest={"type_actions": {"RAS": "reject"}})
        svc = await feed.start_service(config)
        try:
            tokens = await feed.add_tokens(svc, "technologist", "manager", "admin", "sender")
            async with aiohttp.ClientSession() as http:
                seeded = Seeded(svc, tokens, http)
                await _send(seeded)
                yield seeded
        finally:
            await svc.stop()


async def _send(s: Seeded) -> None:
    acks = await feed.send_mllp(
        s.service,
        feed.dose("D1"),  # AR: RAS refused -> a dead letter
        feed.screen("S1"),  # AA, no alert: nothing known of this patient yet
        feed.screen("S1"),  # the same bytes again: a duplicate
        feed.known_order("K1", OTHER),  # AA: the other patient's daratumumab order
        feed.screen("S2", OTHER, n=2),  # AA: bb-serology for the other patient
        LATIN1.encode("latin-1"),  # AA, decoded by its MSH-18
        feed.NO_CONTROL_ID,  # AE: MSH-10 empty, a dead letter under no key
    )
    assert [msa_code(a) for a in acks] == ["AR", "AA", "AA", "AA", "AA", "AA", "AE"]
    # one over HTTP (peer "http"), by the sender's token
    [posted] = await s.client("sender").hl7(feed.local_order("O1"))
    assert posted["ack_code"] == "AA"
    status, page = await s.client("manager").get("/api/messages", limit="100")
    assert status == 200, page
    for m in page["messages"]:
        s.ids[m["control_id"] or "(none)"] = m["id"]
    assert set(s.ids) == {"D1", "S1", "K1", "S2", "L1", "O1", "(none)"}


async def ids_of(client: feed.Client, **params: str) -> list[int]:
    status, page = await client.get("/api/messages", limit="100", **params)
    assert status == 200, page
    assert page["next_cursor"] is None
    return [m["id"] for m in page["messages"]]


async def test_search_filters(seeded: Seeded) -> None:
    c, ids = seeded.client("manager"), seeded.ids
    newest_first = sorted(ids.values(), reverse=True)
    assert await ids_of(c) == newest_first
    assert await ids_of(c, control_id="S1") == [ids["S1"]]
    assert await ids_of(c, control_id="nope") == []
    # the patient: PID-3 names it, by MRN alone or as MRN^authority; not the other patient
    mine = sorted([ids["D1"], ids["S1"], ids["O1"]], reverse=True)
    assert await ids_of(c, mrn=feed.MRN) == mine
    assert await ids_of(c, mrn=feed.PATIENT) == mine
    assert await ids_of(c, mrn=f"{feed.MRN}^ELSEWHERE") == []
    assert await ids_of(c, mrn=OTHER) == sorted([ids["K1"], ids["S2"]], reverse=True)
    assert await ids_of(c, mrn="MRN550") == []  # a part of an MRN is not the MRN
    # type: a family or a type
    orm = sorted([ids["S1"], ids["S2"], ids["L1"]], reverse=True)
    assert await ids_of(c, type="ORM") == orm
    assert await ids_of(c, type="ORM^O01") == orm
    assert await ids_of(c, type="RDE^O11") == sorted([ids["K1"], ids["O1"]], reverse=True)
    # outcome
    assert await ids_of(c, outcome="AR") == [ids["D1"]]
    assert await ids_of(c, outcome="AE") == [ids["(none)"]]
    assert await ids_of(c, outcome="dead-letter") == [ids["(none)"], ids["D1"]]
    assert await ids_of(c, outcome="duplicate") == [ids["S1"]]
    aa = await ids_of(c, outcome="AA")
    assert aa == sorted(set(newest_first) - {ids["D1"], ids["(none)"]}, reverse=True)
    # who sent it: MLLP's address (any port), or http
    assert await ids_of(c, peer="http") == [ids["O1"]]
    over_mllp = sorted(set(newest_first) - {ids["O1"]}, reverse=True)
    assert await ids_of(c, peer="127.0.0.1") == over_mllp
    # time: everything was received just now
    now = datetime.now(UTC)
    assert await ids_of(c, since=(now - timedelta(minutes=5)).isoformat()) == newest_first
    assert await ids_of(c, until=(now - timedelta(minutes=5)).isoformat()) == []
    assert await ids_of(c, since=now.date().isoformat(), until=now.date().isoformat()) == (
        newest_first
    )
    # filters combine
    assert await ids_of(c, mrn=feed.MRN, type="ORM", outcome="duplicate") == [ids["S1"]]
    for bad in ({"outcome": "XX"}, {"limit": "0"}, {"since": "yesterday"}, {"sort": "id"}):
        status, body = await c.get("/api/messages", **bad)
        assert status == 400 and body["error"], bad


async def test_paging_visits_each_message_once(seeded: Seeded) -> None:
    c = seeded.client("manager")
    for params in ({}, {"mrn": feed.MRN}):
        seen: list[int] = []
        cursor = None
        while True:
            query = {"limit": "2", **params, **({"cursor": cursor} if cursor else {})}
            status, page = await c.get("/api/messages", **query)
            assert status == 200 and len(page["messages"]) <= 2
            seen += [m["id"] for m in page["messages"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        expected = await ids_of(c, **params)
        assert seen == expected, params


async def test_rows_say_what_happened(seeded: Seeded) -> None:
    _, page = await seeded.client("manager").get("/api/messages", limit="100")
    rows = {m["control_id"] or "(none)": m for m in page["messages"]}
    assert rows["D1"]["dead_letter"] and rows["D1"]["outcome"] == "AR"
    assert rows["D1"]["error"] == "message type 'RAS^O17' is not accepted here"
    assert rows["D1"]["patient"] == feed.PATIENT and rows["D1"]["message_type"] == "RAS^O17"
    assert rows["S1"]["duplicates"] == 1 and rows["S2"]["duplicates"] == 0
    assert rows["(none)"]["error"] == "MSH-10 (control id) is empty"
    assert rows["(none)"]["sending_application"] == ""  # filed under no key
    assert rows["O1"]["peer"] == "http" and rows["S1"]["peer"].startswith("127.0.0.1:")
    assert (rows["K1"]["sending_application"], rows["K1"]["sending_facility"]) == ("PHARM", "SMH")


async def test_one_message_in_full(seeded: Seeded) -> None:
    c, ids = seeded.client("manager"), seeded.ids
    status, m = await c.get(f"/api/messages/{ids['S2']}")
    assert status == 200, m
    assert m["text"] == feed.screen("S2", OTHER, n=2)  # as sent, segment for segment
    assert m["patient"] == f"{OTHER}^SMH" and m["outcome"] == "AA" and m["decoded_with"] == "utf-8"
    segments = {s["name"]: s for s in m["message"]["segments"]}
    assert list(segments) == ["MSH", "PID", "PV1", "ORC", "OBR"]
    pid3 = next(f for f in segments["PID"]["fields"] if f["number"] == 3)
    assert (pid3["name"], pid3["value"]) == ("Patient Identifier List", f"{OTHER}^^^SMH^MR")
    obr4 = next(f for f in segments["OBR"]["fields"] if f["number"] == 4)
    assert obr4["name"] == "Universal Service Identifier"
    # the answer: an AA naming this message's control id, MSH-3/4 and 5/6 swapped
    [ack] = m["acks"]
    assert "MSA|AA|S2" in ack["text"]
    header = peek_header(ack["text"])
    assert header is not None and (header.sending_application, header.receiving_application) == (
        "LISGUARD",
        "OE",
    )
    assert [a["rule"] for a in m["alerts"]] == ["bb-serology"]
    assert m["alerts"][0]["patient"] == f"{OTHER}^SMH" and m["alerts"][0]["status"] == "open"
    kinds = [e["kind"] for e in m["events"]]
    assert kinds[0] == "message.received" and "alert.raised" in kinds
    assert m["events"][0]["subject"] == str(ids["S2"])
    # the order raised the baseline work-up and recorded the exposure; this screen's own events
    # are its own, not the order's
    _, order = await c.get(f"/api/messages/{ids['K1']}")
    assert [a["rule"] for a in order["alerts"]] == ["baseline-workup"]
    assert [e["kind"] for e in order["state_changes"]] == ["state.exposure", "state.demographics"]
    assert order["state_changes"][0]["subject"] == f"{OTHER}^SMH"
    assert all(e["kind"] != "state.exposure" for e in m["events"])
    # a resend shows as later, with the stored ACK sent again
    _, s1 = await c.get(f"/api/messages/{ids['S1']}")
    assert [e["kind"] for e in s1["later"]] == ["message.duplicate"]
    assert s1["alerts"] == [] and s1["state_changes"] == []


async def test_dead_letters_and_charsets_read_as_received(seeded: Seeded) -> None:
    c, ids = seeded.client("manager"), seeded.ids
    _, dead = await c.get(f"/api/messages/{ids['D1']}")
    assert dead["text"] == feed.dose("D1") and dead["dead_letter"]
    assert "MSA|AR|D1" in dead["acks"][0]["text"]
    assert [e["kind"] for e in dead["events"]] == ["message.received"]
    assert dead["events"][0]["detail"]["outcome"] == "AR"
    _, unread = await c.get(f"/api/messages/{ids['(none)']}")
    assert unread["text"] == feed.NO_CONTROL_ID and "MSA|AE|" in unread["acks"][0]["text"]
    _, latin = await c.get(f"/api/messages/{ids['L1']}")
    assert "MÜLLER^JOSÉ" in latin["text"] and latin["decoded_with"] in ("latin-1", "iso8859-1")
    status, missing = await c.get("/api/messages/999999")
    assert status == 404 and missing["error"]
    status, _ = await c.get("/api/messages/abc")
    assert status in (400, 404)


async def test_who_may_browse(seeded: Seeded) -> None:
    mid = seeded.ids["S1"]
    for role, want in ((None, 401), ("sender", 403), ("technologist", 403), ("manager", 200),
                       ("admin", 200)):
        for path in ("/api/messages", f"/api/messages/{mid}", "/api/knowledge"):
            status, _ = await seeded.client(role).get(path)
            assert status == want, (role, path)
        status, _ = await seeded.client(role).post(
            "/api/messages/replay", {"ids": [mid], "reason": "check"}
        )
        assert status == (200 if role == "admin" else 401 if role is None else 403), role
        status, _ = await seeded.client(role).post("/api/admin/knowledge/reload")
        assert status == (200 if role == "admin" else 401 if role is None else 403), role


async def test_every_read_is_audited_naming_the_patient(seeded: Seeded) -> None:
    c, ids, store = seeded.client("manager"), seeded.ids, seeded.service.store
    before = await store.access.search_audit(AuditQuery(kinds=("phi.read",), limit=1000))
    await c.get("/api/messages", mrn=feed.MRN)
    await c.get(f"/api/messages/{ids['S2']}")
    reads: list[Any] = await store.access.search_audit(
        AuditQuery(kinds=("phi.read",), limit=1000)
    )
    new = [r.event for r in reads[: len(reads) - len(before)]]
    detail_read, search_read = new[0], new[1]  # newest first
    assert search_read.actor == "manager-jo" and search_read.subject == "/api/messages"
    assert search_read.detail["patient"] == feed.MRN
    assert detail_read.subject == f"/api/messages/{ids['S2']}"
    assert detail_read.detail["patient"] == f"{OTHER}^SMH"
    assert detail_read.detail["message"] == ids["S2"]
    # "who looked at this patient" is one audit search
    about = await store.access.search_audit(AuditQuery(kinds=("phi.read",), patient=OTHER))
    assert any(e.event.subject == f"/api/messages/{ids['S2']}" for e in about)
