"""Connection exhaustion (security review finding 3).

1,000 idle half-frames from one address took every MLLP connection (`max_connections`), and a
byte now and then refreshed the idle timer, so every other sender was locked out for as long as
the attacker liked. Now: at most `max_connections_per_source` per address, a full listener makes
room for a less represented address, and a frame must be complete `frame_timeout_seconds` after
its first byte however it is dribbled. No test here measures a duration: each waits, within a
generous bound, for the one thing that must happen (an ACK, a close).
"""

from __future__ import annotations

import asyncio
import contextlib
import resource
from collections.abc import Callable

import pytest

from lisguard.app import Service
from lisguard.transport.frames import Frame, MllpFramer, frame
from lisguard.transport.mllp import msa_code
from tests.conftest import ServiceFactory

ORDER = (
    "MSH|^~\\&|LAB|HOSP|LISGUARD|BB|20260302081500||ORM^O01|{cid}|P|2.5.1\r"
    "PID|1||MRN900^^^HOSP^MR||TEST^PATIENT\r"
    "ORC|NW|ORD{cid}\r"
    "OBR|1|ORD{cid}||890-4^Antibody screen^LN|||20260302081000\r"
)
HALF_FRAME = b"\x0bMSH|^~\\&|LAB|HOSP"
BOUND = 30.0  # seconds: generous, and only ever an upper bound on waiting


@pytest.fixture(autouse=True)
def enough_descriptors() -> None:
    """Both ends of ~1,100 connections live in this process."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 4096 if hard == resource.RLIM_INFINITY else min(4096, hard)
    if soft != resource.RLIM_INFINITY and soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft != resource.RLIM_INFINITY and soft < 2600:
        pytest.skip(f"needs ~2,600 file descriptors, the limit is {soft}")


Conn = tuple[asyncio.StreamReader, asyncio.StreamWriter]


async def connect(port: int, source: str) -> Conn:
    return await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))


async def half_frames(port: int, source: str, count: int) -> list[Conn]:
    """`count` connections from `source`, each holding the start of a frame (in batches: the
    listen backlog is 100)."""
    conns: list[Conn] = []
    for start in range(0, count, 100):
        batch = await asyncio.gather(*(connect(port, source) for _ in range(start, count)[:100]))
        for _, writer in batch:
            with contextlib.suppress(ConnectionError):
                writer.write(HALF_FRAME)
        conns += batch
    return conns


async def dribble(writer: asyncio.StreamWriter, byte: bytes, every: float) -> int:
    """Write one byte every `every` seconds until the connection breaks; how many were written."""
    sent = 0
    with contextlib.suppress(ConnectionError, OSError):
        while not writer.is_closing():
            writer.write(byte)
            await writer.drain()
            sent += 1
            await asyncio.sleep(every)
    return sent


async def send_from(port: int, source: str, message: str) -> str:
    """One message from `source` on a fresh connection; its ACK."""
    async with asyncio.timeout(BOUND):
        reader, writer = await connect(port, source)
        try:
            writer.write(frame(message.encode()))
            await writer.drain()
            framer = MllpFramer()
            while True:
                data = await reader.read(65536)
                if not data:
                    raise ConnectionError("closed before the ACK")
                for event in framer.feed(data):
                    if isinstance(event, Frame):
                        return event.payload.decode()
        finally:
            writer.close()


async def closed_by_server(reader: asyncio.StreamReader) -> bool:
    """True once the server closes the connection (EOF or reset), within BOUND."""
    async with asyncio.timeout(BOUND):
        try:
            while await reader.read(65536):
                pass
        except ConnectionError:
            pass
    return True


async def until(condition: Callable[[], bool]) -> None:
    """Wait (within BOUND) until the server got there, e.g. accepted every connection."""
    async with asyncio.timeout(BOUND):
        while not condition():
            await asyncio.sleep(0.01)


def count(service: Service, metric: str, reason: str) -> float:
    value = service.metrics.registry.get_sample_value(metric, {"reason": reason})
    return value or 0.0


def close_all(conns: list[Conn]) -> None:
    for _, writer in conns:
        writer.close()


async def test_a_thousand_half_frames_from_one_address_lock_no_one_out(
    service_factory: ServiceFactory,
) -> None:
    service = await service_factory()  # the shipped limits: 1,000 in all, 100 per address
    port = service.mllp_port
    assert port
    idle = await half_frames(port, "127.0.0.1", 1000)
    dribblers = await half_frames(port, "127.0.0.1", 10)
    dribbling = [asyncio.create_task(dribble(w, b"A", 0.2)) for _, w in dribblers]
    try:
        # while the attack runs, another sender gets its message in and its ACK back
        ack = await send_from(port, "127.0.0.2", ORDER.format(cid="REAL1"))
        assert msa_code(ack) == "AA"
        assert "MSA|AA|REAL1" in ack
        refused = count(
            service, "lisguard_mllp_connections_refused_total", "max_connections_per_source"
        )
        assert refused >= 1010 - service.settings.mllp.max_connections_per_source
        # and the attacking address itself cannot take more than its share
        assert service.mllp is not None
        assert len(service.mllp._by_source["127.0.0.1"]) <= 100
    finally:
        close_all(idle + dribblers)
        for task in dribbling:
            task.cancel()
        await asyncio.gather(*dribbling, return_exceptions=True)


async def test_a_full_listener_makes_room_for_another_address(
    service_factory: ServiceFactory,
) -> None:
    service = await service_factory(mllp={"max_connections": 30, "max_connections_per_source": 25})
    port = service.mllp_port
    assert port
    many = await half_frames(port, "127.0.0.1", 25)
    few = await half_frames(port, "127.0.0.3", 5)
    try:
        await until(lambda: service.mllp is not None and len(service.mllp._connections) == 30)
        assert service.mllp is not None
        ack = await send_from(port, "127.0.0.2", ORDER.format(cid="ROOM1"))
        assert msa_code(ack) == "AA"
        assert count(service, "lisguard_mllp_connections_closed_total", "evicted") == 1
        # the room came from the address holding the most
        assert len(service.mllp._by_source["127.0.0.1"]) == 24
        assert len(service.mllp._by_source["127.0.0.3"]) == 5
    finally:
        close_all(many + few)


async def test_an_evenly_shared_full_listener_refuses(service_factory: ServiceFactory) -> None:
    service = await service_factory(mllp={"max_connections": 3})
    port = service.mllp_port
    assert port
    held = [await connect(port, source) for source in ("127.0.0.1", "127.0.0.3", "127.0.0.4")]
    try:
        await until(lambda: service.mllp is not None and len(service.mllp._connections) == 3)
        reader, writer = await connect(port, "127.0.0.2")
        assert await closed_by_server(reader)
        writer.close()
        assert count(service, "lisguard_mllp_connections_refused_total", "max_connections") == 1
    finally:
        close_all(held)


async def test_a_dribbled_frame_is_cut_off_at_its_deadline(service_factory: ServiceFactory) -> None:
    service = await service_factory(mllp={"frame_timeout_seconds": 0.5})
    assert service.mllp_port
    reader, writer = await connect(service.mllp_port, "127.0.0.1")
    writer.write(HALF_FRAME)
    sender = asyncio.create_task(dribble(writer, b"A", 0.05))  # far inside the idle timeout
    try:
        assert await closed_by_server(reader)
    finally:
        writer.close()
        sent = await sender
    assert sent > 1  # it kept sending until the server hung up
    assert count(service, "lisguard_mllp_connections_closed_total", "frame_timeout") == 1


async def test_bytes_outside_frames_do_not_hold_the_connection(
    service_factory: ServiceFactory,
) -> None:
    service = await service_factory(mllp={"idle_timeout_seconds": 0.5})
    assert service.mllp_port
    reader, writer = await connect(service.mllp_port, "127.0.0.1")
    sender = asyncio.create_task(dribble(writer, b"x", 0.05))
    try:
        assert await closed_by_server(reader)
    finally:
        writer.close()
        sent = await sender
    assert sent > 1
    assert count(service, "lisguard_mllp_connections_closed_total", "idle") == 1


async def test_a_quiet_connection_between_frames_is_not_cut_by_the_frame_deadline(
    service_factory: ServiceFactory,
) -> None:
    service = await service_factory(mllp={"frame_timeout_seconds": 0.3})
    assert service.mllp_port
    reader, writer = await connect(service.mllp_port, "127.0.0.1")
    framer = MllpFramer()

    async def ack() -> str:
        async with asyncio.timeout(BOUND):
            while True:
                data = await reader.read(65536)
                assert data, "closed by the server"
                for event in framer.feed(data):
                    if isinstance(event, Frame):
                        return event.payload.decode()

    try:
        first = frame(ORDER.format(cid="Q1").encode())
        writer.write(first[:-1])  # the trailer's CR comes on its own, as some senders do
        await writer.drain()
        assert msa_code(await ack()) == "AA"
        writer.write(first[-1:])
        await asyncio.sleep(1.0)  # quiet, well past the frame deadline, inside the idle timeout
        second = frame(ORDER.format(cid="Q2").encode())
        writer.write(second[:40])  # a frame in two pieces, complete within its deadline
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.write(second[40:])
        assert msa_code(await ack()) == "AA"
    finally:
        writer.close()
    assert count(service, "lisguard_mllp_connections_closed_total", "frame_timeout") == 0
