"""The PostgreSQL phases of a run beyond the contenders' rates: database round trips per
message (lisguard behind benchmarks.roundtrips), and two replicas on one schema fed together,
against one of them alone, then checked for double alerts."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from benchmarks.contenders import ROUNDS, SECONDS, WARMUP, Contender, Feed, interleaved, say
from benchmarks.loadgen import framed, send_and_wait
from benchmarks.pg import Schemas, address, require_no_double_alert, with_address
from benchmarks.roundtrips import RoundTripProxy
from benchmarks.servers import Replicas, lisguard

IDLE_SECONDS = 1.0


async def measure_round_trips(
    label: str, feed: Feed, work: Path, schemas: Schemas, seconds: float | None = None
) -> dict[str, Any]:
    """Round trips to PostgreSQL per message ACKed, one connection sending and waiting, over
    one slice (warm-up and drain included, like CPU per message); and the round trips the
    server makes with no message coming (its workers polling), per second, for scale."""
    seconds = seconds if seconds is not None else max(1.0, SECONDS / ROUNDS)
    url = await schemas.create(f"{label}_round_trips")
    proxy = RoundTripProxy(address(url))
    port = await proxy.start()
    server = lisguard(
        with_address(url, "127.0.0.1", port), work / f"{label}-rt.log", name="lisguard_pg_rt"
    )
    say(f"{label}: round trips to PostgreSQL per message, 1 connection, {seconds:.1f} s")
    try:
        await server.start()
        # a first slice: pool connections open, statements prepared (asyncpg caches them)
        warm = framed(list(feed.messages(300, "RTW")))
        await send_and_wait(server.port, warm, 1, 0.5, 0.0)
        await asyncio.sleep(0.2)
        before = proxy.turnarounds
        await asyncio.sleep(IDLE_SECONDS)
        idle = (proxy.turnarounds - before) / IDLE_SECONDS
        messages = framed(list(feed.messages(int(3_000 * (seconds + 1)), "RT")))
        before = proxy.turnarounds
        result = await send_and_wait(server.port, messages, 1, seconds, WARMUP)
        turnarounds = proxy.turnarounds - before
    finally:
        await server.stop()
        await proxy.stop()
    if result.naks:
        raise SystemExit(f"lisguard_pg_rt: {result.naks} negative ACKs: {result.first_nak!r}")
    per_msg = turnarounds / max(result.total, 1)
    say(f"  {per_msg:.2f} round trips a message ({result.total} messages); idle {idle:.1f}/s")
    return {
        "round_trips_per_msg": round(per_msg, 2),
        "messages": result.total,
        "round_trips": turnarounds,
        "idle_round_trips_per_s": round(idle, 1),
        "msg_per_s_through_proxy": round(result.rate, 1),
    }


async def measure_replicas(feed: Feed, work: Path, schemas: Schemas) -> dict[str, Any]:
    """Two `lisguard serve` on one schema, 8 connections dealt 4+4 from one message sequence
    (a patient's messages reach both), interleaved with replica A alone on 8 connections. Then
    the schema is searched for anything raised or stored twice: SystemExit if found."""
    url = await schemas.create("replicas")
    a = lisguard(url, work / "replica-a.log", name="replica_a")
    b = lisguard(url, work / "replica-b.log", name="replica_b")
    pair = Replicas("replica_pair", [a, b])
    contenders = [
        Contender("replica_one", a, feed, tag="R1"),
        Contender("replica_pair", pair, feed, tag="R2"),
    ]
    try:
        await pair.start()  # one after the other: the second finds the schema migrated
        figures = await interleaved(contenders, "replicas on one PostgreSQL schema", (8,))
        for c in contenders:
            figures[c.name]["peak_rss_mb"] = round(c.server.peak_rss_mb(), 1)
    finally:
        await pair.stop()
    say("replicas: counting alerts and messages per key in the shared schema")
    checked = await require_no_double_alert(url)
    say(f"  no double alert: {checked['alerts']:,} alerts, {checked['messages']:,} messages")
    one, both = figures["replica_one"]["conn8"], figures["replica_pair"]["conn8"]
    return {
        **figures,
        "pair_vs_one": round(both["msg_per_s"] / max(one["msg_per_s"], 1e-9), 2),
        "checked": checked,
    }
