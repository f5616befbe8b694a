"""Servers under test measured side by side: the settings every phase shares (environment,
documented in benchmarks/run.py), and the interleaved slices."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Sequence
from typing import Any, Protocol

from benchmarks.loadgen import Result, framed, merge, offered_load, send_and_wait
from benchmarks.servers import Replicas, Server

SECONDS = float(os.environ.get("BENCH_SECONDS", "6"))
ROUNDS = max(1, int(os.environ.get("BENCH_ROUNDS", "3")))
MAX_RATE = 6_000  # lisguard messages generated per second of a slice: more than it takes
WARMUP = 0.3
LATENCY_RATE = 1_000


class Feed(Protocol):
    def messages(self, count: int, tag: str) -> Iterator[str]: ...


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def phase(result: Result, cpu: float) -> dict[str, Any]:
    """`cpu`: server CPU seconds over the measurement (warm-ups and drains included), reported
    per message: unlike a rate it hardly moves when other work shares the machine."""
    return {
        "msg_per_s": round(result.rate, 1),
        "server_cpu_us_per_msg": round(cpu / max(result.total, 1) * 1e6, 1),
        "messages": result.messages,
        "seconds": round(result.seconds, 2),
        "naks": result.naks,
        "p50_ms": round(result.p50_ms, 3),
        "p99_ms": round(result.p99_ms, 3),
        "max_ms": round(result.max_ms, 3),
    }


def require_acks(name: str, result: Result) -> None:
    if result.naks:
        raise SystemExit(f"{name}: {result.naks} negative ACKs, first: {result.first_nak!r}")


class Contender:
    """A server and what it is fed: lisguard gets messages never sent before (a resend would be
    answered from the store as a duplicate); the peers store nothing and get the feed again
    (the durable peers store it again: they keep no key). `tag` starts the control ids (and
    the relevant feed's MRNs) of its slices: contenders sharing one database need their own."""

    def __init__(
        self,
        name: str,
        server: Server | Replicas,
        feed: Feed | Sequence[bytes],
        tag: str | None = None,
    ) -> None:
        self.name, self.server, self.feed = name, server, feed
        self.tag = tag or name[:2].upper()
        self.slices: list[Result] = []
        self.cpu = 0.0
        self._tags = 0

    def messages(self, seconds: float) -> tuple[Sequence[bytes], bool]:
        if isinstance(self.feed, Sequence):
            return self.feed, True
        self._tags += 1
        count = int(MAX_RATE * (seconds + WARMUP + 1))
        return framed(list(self.feed.messages(count, f"{self.tag}{self._tags}"))), False

    async def slice(self, connections: int, seconds: float) -> None:
        messages, cycle = self.messages(seconds)
        cpu = self.server.cpu_seconds()
        result = await send_and_wait(
            self.server.port, messages, connections, seconds, WARMUP, cycle=cycle
        )
        self.cpu += self.server.cpu_seconds() - cpu
        require_acks(self.name, result)
        self.slices.append(result)

    def figure(self) -> dict[str, Any]:
        out = phase(merge(self.slices), self.cpu)
        out["per_slice_msg_per_s"] = [round(r.rate, 1) for r in self.slices]
        self.slices, self.cpu = [], 0.0
        return out

    async def offered(self, feed: Feed, tag: str) -> dict[str, Any]:
        """ACK latency at LATENCY_RATE msg/s offered over 4 connections, for SECONDS."""
        port = self.server.port
        assert isinstance(port, int)
        say(f"{self.name}: {LATENCY_RATE} msg/s offered over 4 connections, {SECONDS:.0f} s")
        msgs = framed(list(feed.messages(int(LATENCY_RATE * SECONDS), tag)))
        cpu = self.server.cpu_seconds()
        result = await offered_load(port, msgs, LATENCY_RATE, SECONDS)
        require_acks(self.name, result)
        # a server that cannot keep up leaves messages unACKed 30 s after the last was due:
        # their latency is not in the percentiles, so say how many there were
        return {**phase(result, self.server.cpu_seconds() - cpu), "offered": len(msgs)}


async def interleaved(
    contenders: list[Contender], label: str, connection_counts: Sequence[int] = (1, 8)
) -> dict[str, dict[str, Any]]:
    """Throughput with 1 and 8 connections, send-and-wait, in ROUNDS interleaved slices."""
    out: dict[str, dict[str, Any]] = {c.name: {} for c in contenders}
    for connections in connection_counts:
        say(f"{label}: {connections} connection(s), {ROUNDS} rounds of {SECONDS / ROUNDS:.1f} s")
        for _ in range(ROUNDS):
            for c in contenders:
                await c.slice(connections, SECONDS / ROUNDS)
        for c in contenders:
            out[c.name][f"conn{connections}"] = figure = c.figure()
            slices = figure["per_slice_msg_per_s"]
            say(f"  {c.name:<15} {figure['msg_per_s']:>9,.0f} msg/s  {slices}")
    return out
