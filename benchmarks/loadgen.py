"""MLLP load generator: send-and-wait over N connections, or a fixed offered rate.

Built on asyncio protocols (no streams) so that the client costs little next to any server it
measures: the raw fixed-ACK peer answers in microseconds, and the generator must not be what
limits it. Every message is pre-framed before the clock starts.

An ACK is one MLLP frame; every message of the benchmark feed asks for exactly one (original
mode, or a commit ACK only). The ACK's MSA-1 is checked: a benchmark of a server that NAKs
would measure nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

END = b"\x1c\r"


def framed(messages: Iterable[str]) -> list[bytes]:
    return [b"\x0b" + m.encode("utf-8") + END for m in messages]


@dataclass
class Counts:
    sent: int = 0
    acked: int = 0
    nak: int = 0
    latencies: list[float] = field(default_factory=list)  # seconds, one per ACK
    first_nak: str = ""


class _Connection(asyncio.Protocol):
    """One MLLP connection: at most one message in flight (send, wait for its ACK)."""

    def __init__(self, counts: Counts, on_ack: asyncio.Event) -> None:
        self.counts = counts
        self.buffer = b""
        self.transport: asyncio.Transport | None = None
        self.started = 0.0  # when the message in flight was due (offered-load mode) or sent
        self.busy = False
        self.queue: deque[tuple[bytes, float]] = deque()  # waiting to be sent (offered load)
        self.next_message: Callable[[_Connection], None] | None = None
        self.closed = asyncio.get_running_loop().create_future()
        self.on_ack = on_ack

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(exc)

    def send(self, data: bytes, due: float) -> None:
        assert self.transport is not None
        self.busy = True
        self.started = due
        self.counts.sent += 1
        self.transport.write(data)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(END)
            if end < 0:
                return
            ack, self.buffer = self.buffer[: end + 2], self.buffer[end + 2 :]
            now = time.perf_counter()
            counts = self.counts
            counts.acked += 1
            counts.latencies.append(now - self.started)
            # the MSA segment, at a segment start: python-hl7's random ACK control ids can
            # hold "MSA|" ("...6FMSA|P|2.5.1" was once read as a NAK)
            msa = ack.find(b"\rMSA|") + 1
            if msa < 1 or ack[msa + 4 : msa + 6] not in (b"AA", b"CA"):
                counts.nak += 1
                if not counts.first_nak:
                    counts.first_nak = ack.decode("utf-8", "replace")[:300]
            self.busy = False
            if self.queue:
                data, due = self.queue.popleft()
                self.send(data, due)
            elif self.next_message is not None:
                self.next_message(self)
            self.on_ack.set()


Ports = int | Sequence[int]


async def _connect(port: Ports, n: int, counts: Counts, on_ack: asyncio.Event) -> list[_Connection]:
    """`n` connections; over several ports (replicas), dealt round-robin: 8 over two is 4+4."""
    loop = asyncio.get_running_loop()
    ports = [port] if isinstance(port, int) else list(port)
    conns = []
    for i in range(n):
        _, proto = await loop.create_connection(
            lambda: _Connection(counts, on_ack), "127.0.0.1", ports[i % len(ports)]
        )
        conns.append(proto)
    return conns


def _close(conns: list[_Connection]) -> None:
    for c in conns:
        if c.transport is not None:
            c.transport.close()


@dataclass
class Result:
    messages: int
    seconds: float
    naks: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    first_nak: str = ""
    total: int = 0  # every ACK of the phase, warm-up and drain included
    latencies: list[float] = field(default_factory=list, repr=False)  # seconds, measured ACKs

    @property
    def rate(self) -> float:
        return self.messages / self.seconds if self.seconds else 0.0


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _result(counts: Counts, seconds: float, skip: int = 0, total: int | None = None) -> Result:
    lat = counts.latencies[skip:]
    return Result(
        total=counts.acked if total is None else total,
        messages=counts.acked - skip,
        seconds=seconds,
        naks=counts.nak,
        p50_ms=_percentile(lat, 0.50) * 1000,
        p99_ms=_percentile(lat, 0.99) * 1000,
        max_ms=max(lat, default=0.0) * 1000,
        first_nak=counts.first_nak,
        latencies=lat,
    )


def merge(results: Sequence[Result]) -> Result:
    """Several slices of one measurement (interleaved with other servers' slices) as one."""
    counts = Counts(
        acked=sum(r.messages for r in results),
        nak=sum(r.naks for r in results),
        latencies=[x for r in results for x in r.latencies],
        first_nak=next((r.first_nak for r in results if r.first_nak), ""),
    )
    total = sum(r.total for r in results)
    return _result(counts, sum(r.seconds for r in results), 0, total)


async def send_and_wait(
    port: Ports,
    messages: Sequence[bytes],
    connections: int,
    seconds: float,
    warmup: float = 0.5,
    *,
    cycle: bool = False,
) -> Result:
    """Each connection sends its next message as soon as the previous one is ACKed, for
    `warmup` + `seconds`; the rate counts the ACKs after the warm-up. With `cycle` the messages
    come round again (for servers that store nothing); otherwise running out ends the phase.
    Over several ports, every connection takes the next message of the one sequence: a
    patient's messages go to whichever server is free, as behind a load balancer."""
    counts = Counts()
    on_ack = asyncio.Event()
    conns = await _connect(port, connections, counts, on_ack)
    position = 0
    total = len(messages)

    def next_message(conn: _Connection) -> None:
        nonlocal position
        if cycle and position == total:
            position = 0
        if position < total and not stopping:
            conn.send(messages[position], time.perf_counter())
            position += 1

    stopping = False
    for c in conns:
        c.next_message = next_message
    for c in conns:
        next_message(c)
    await asyncio.sleep(warmup)
    skip, t0 = counts.acked, time.perf_counter()
    deadline = t0 + seconds
    while time.perf_counter() < deadline and (cycle or position < total):
        await asyncio.sleep(0.05)
    stopping = True
    elapsed = time.perf_counter() - t0
    acked = counts.acked
    # let the messages in flight finish before closing (their ACKs are not counted)
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(5.0):
            while any(c.busy for c in conns):
                on_ack.clear()
                await on_ack.wait()
    _close(conns)
    total, counts.acked = counts.acked, acked
    counts.latencies = counts.latencies[:acked]
    return _result(counts, elapsed, skip, total)


async def offered_load(
    port: int, messages: Sequence[bytes], rate: float, seconds: float, connections: int = 4
) -> Result:
    """Messages are due every 1/rate seconds, round-robin over the connections (one per feed:
    orders, results, pharmacy, ADT). A connection with a message in flight queues the next one;
    latency runs from when a message was due, so a stall is not hidden by sending less."""
    counts = Counts()
    on_ack = asyncio.Event()
    conns = await _connect(port, connections, counts, on_ack)
    n = min(len(messages), int(rate * seconds))
    t0 = time.perf_counter()
    i = 0
    while i < n:
        now = time.perf_counter()
        due_count = min(n, int((now - t0) * rate) + 1)
        while i < due_count:
            due = t0 + i / rate
            conn = conns[i % connections]
            if conn.busy:
                conn.queue.append((messages[i], due))
            else:
                conn.send(messages[i], due)
            i += 1
        await asyncio.sleep(max(0.0, t0 + i / rate - time.perf_counter()))
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(30.0):
            while counts.acked < n:
                on_ack.clear()
                await on_ack.wait()
    elapsed = time.perf_counter() - t0
    _close(conns)
    return _result(counts, elapsed)
