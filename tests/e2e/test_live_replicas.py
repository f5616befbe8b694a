"""The live page with two `lisguard serve` replicas on one PostgreSQL schema: a page connected to
replica A hears of an alert raised on replica B, and of its acknowledgement there, through
LISTEN/NOTIFY (lisguard.store.postgres.live); A's listening connection, killed on the server, comes
back by itself and the page is told to reload (`hello`).

The SSE client never polls and A never sees B's messages: an event on A's stream can only have
come through the database's notification. Times are generous bounds, never measurements."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest

from lisguard.transport.mllp import msa_code
from tests.e2e.serve_process import ServeProcess, fresh_schema, with_query

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

BOUND = 20.0  # seconds an event may take at most; a hung test fails instead of blocking
AUTH_OFF = {"LISGUARD_HTTP__AUTH_REQUIRED": "false"}  # auth is not what this test is about

DOSE = (
    "MSH|^~\\&|PHARM|HOSP|LISGUARD|BB|20260301090000||RAS^O17|RX-{mrn}|P|2.5.1\r"
    "PID|1||{mrn}^^^HOSP^MR||DOE^JANE\r"
    "ORC|RE|RXO-{mrn}\r"
    "RXA|0|1|20260301093000|20260301100000|J9145^daratumumab^HCPCS|1800|mg||||||||||||CP\r"
)

Event = tuple[str, dict[str, Any]]


async def sse_events(response: aiohttp.ClientResponse) -> AsyncIterator[Event]:
    """(event, data) of a text/event-stream, comments skipped."""
    name, data = "message", ""
    async for raw in response.content:
        line = raw.decode().rstrip("\r\n")
        if not line:
            if data:
                yield name, json.loads(data)
            name, data = "message", ""
        elif line.startswith("event:"):
            name = line[6:].strip()
        elif line.startswith("data:"):
            data += line[5:].strip()


async def next_event(events: AsyncIterator[Event], wanted: Callable[[Event], bool]) -> Event:
    """The first event `wanted` accepts, within BOUND seconds; others are skipped."""
    async with asyncio.timeout(BOUND):
        async for event in events:
            if wanted(event):
                return event
    raise AssertionError("the event stream ended")


def alert_event(alert_id: str, status: str) -> Callable[[Event], bool]:
    return lambda e: e[0] == "alert" and e[1]["id"] == alert_id and e[1]["status"] == status


async def wait_listening(server: ServeProcess, times: int = 1) -> None:
    """Until the server logged that its change listener is up (`times` times in all)."""
    async with asyncio.timeout(BOUND):
        while server.log_text().count('"live_listening"') < times:
            assert server.running, server.log_text()
            await asyncio.sleep(0.05)


async def raise_on(server: ServeProcess, mrn: str) -> str:
    """A first dose to `server`: one baseline-workup alert; its id, read from that server."""
    [ack] = await server.send([DOSE.format(mrn=mrn)])
    assert msa_code(ack) == "AA", ack
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"http://127.0.0.1:{server.http_port}/api/alerts?patient={mrn}^HOSP") as r,
    ):
        [view] = (await r.json())["alerts"]
    return str(view["id"])


async def test_a_page_on_one_replica_sees_the_other_replicas_changes(
    tmp_path: Path, pg_dsn: str
) -> None:
    async with fresh_schema(pg_dsn, "lisguard_live") as (schema, admin):
        url = with_query(pg_dsn, search_path=schema)
        # one directory: the replicas share the install key that keys the audit chain
        a = ServeProcess(url, tmp_path / "a.log", **AUTH_OFF)
        b = ServeProcess(url, tmp_path / "b.log", **AUTH_OFF)
        a.start()
        b.start()
        try:
            await asyncio.gather(a.wait_ready(), b.wait_ready())
            await wait_listening(a)
            async with (
                aiohttp.ClientSession() as http,
                http.get(f"http://127.0.0.1:{a.http_port}/api/events") as stream,
            ):
                assert stream.status == 200
                events = sse_events(stream)
                await next_event(events, lambda e: e[0] == "hello")

                # an alert raised on B
                alert = await raise_on(b, "MRN700")
                await next_event(events, alert_event(alert, "open"))

                # acknowledged on B
                async with http.post(
                    f"http://127.0.0.1:{b.http_port}/api/alerts/{alert}/acknowledge",
                    json={"by": "JS", "note": "on it"},
                ) as response:
                    assert response.status == 200, await response.text()
                _, view = await next_event(events, alert_event(alert, "acknowledged"))
                assert view["acknowledged"]["by"] == "JS"

                # A's listening session killed on the server: A reconnects, tells the page
                # to reload, and hears B again
                assert a.proc is not None
                killed = await admin.fetchval(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                    " WHERE application_name = $1",
                    f"lisguard-live/{a.proc.pid}",
                )
                assert killed == 1
                await next_event(events, lambda e: e == ("hello", {"resync": True}))
                second = await raise_on(b, "MRN701")
                await next_event(events, alert_event(second, "open"))
            assert a.terminate() == 0
            assert b.terminate() == 0
        finally:
            a.kill()
            b.kill()
    assert '"live_listen_lost"' in a.log_text()


async def test_notifications_are_sent_at_commit_only(pg_dsn: str) -> None:
    """A rolled-back change is never announced; a committed one is, after its COMMIT."""
    from lisguard.store.postgres import live as pg_live

    async with fresh_schema(pg_dsn, "lisguard_live") as (schema, admin):
        heard: list[str] = []
        listener = await asyncpg.connect(with_query(pg_dsn, search_path=schema), timeout=5)
        try:
            await listener.add_listener(
                pg_live.CHANNEL, lambda _c, _p, _ch, payload: heard.append(payload)
            )
            await admin.execute(f'SET search_path = "{schema}"')
            async with admin.transaction():
                await pg_live.notify(admin, "other", ["kept"])
                await asyncio.sleep(0.2)
                assert heard == []  # not before COMMIT
            with pytest.raises(RuntimeError):
                async with admin.transaction():
                    await pg_live.notify(admin, "other", ["dropped"])
                    raise RuntimeError("roll back")
            await admin.execute("SELECT pg_notify($1, 'end')", pg_live.CHANNEL)
            async with asyncio.timeout(BOUND):
                while heard[-1:] != ["end"]:
                    await asyncio.sleep(0.02)
        finally:
            await listener.close()
            await admin.execute("RESET search_path")
    assert [json.loads(p) for p in heard[:-1]] == [
        {"schema": schema, "origin": "other", "ids": ["kept"]}
    ]
