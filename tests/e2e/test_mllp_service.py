"""The real service over real TCP: ACK semantics, duplicates, bad input, limits, concurrency."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from lisguard.app import Service
from lisguard.hl7v2.framing import decode_bytes, split_messages
from lisguard.hl7v2.reader import parse
from lisguard.transport.frames import Frame, MllpFramer, frame
from lisguard.transport.mllp import MllpClient
from tests.conftest import ROOT, SAMPLES, corpus_files

ORDER = (
    "MSH|^~\\&|LAB|HOSP|LISGUARD|BB|20260302081500||ORM^O01|{cid}|P|2.5.1\r"
    "PID|1||MRN900^^^HOSP^MR||TEST^PATIENT\r"
    "ORC|NW|ORD{cid}\r"
    "OBR|1|ORD{cid}||890-4^Antibody screen^LN|||20260302081000\r"
)


def msa(ack: str) -> tuple[str, str]:
    seg = next(s for s in ack.split("\r") if s.startswith("MSA"))
    parts = seg.split(seg[3])
    return parts[1], parts[2]


def expected_codes(text: str) -> list[str]:
    msh = parse(text).segments[0]
    accept, app = msh.get(15).strip(), msh.get(16).strip()
    if not accept and not app:
        return ["AA"]
    codes = []
    if accept in ("AL", "SU"):
        codes.append("CA")
    if app in ("AL", "SU"):
        codes.append("AA")
    return codes or ["CA"]


async def test_every_corpus_message_gets_the_right_ack(service: Service) -> None:
    assert service.mllp_port
    count = 0
    async with MllpClient("127.0.0.1", service.mllp_port, timeout=10) as client:
        for path in corpus_files():
            for text in split_messages(decode_bytes(path.read_bytes())):
                codes = expected_codes(text)
                acks = [await client.send(text.encode())]
                acks += [await client.receive() for _ in codes[1:]]
                got = [msa(a) for a in acks]
                assert got == [(c, parse(text).control_id) for c in codes], path.name
                count += 1
    assert count >= 139
    assert await service.store.count_messages() == count


async def test_duplicate_gets_the_stored_ack_replayed(service: Service) -> None:
    assert service.mllp_port
    text = ORDER.format(cid="DUP1")
    async with MllpClient("127.0.0.1", service.mllp_port) as client:
        first = await client.send(text.encode())
        second = await client.send(text.encode())
    assert first == second
    assert await service.store.count_messages() == 1


async def test_same_control_id_other_content_is_processed_and_flagged(service: Service) -> None:
    assert service.mllp_port
    text = ORDER.format(cid="RE1")
    other = text.replace("MRN900", "MRN901")
    async with MllpClient("127.0.0.1", service.mllp_port) as client:
        a = await client.send(text.encode())
        b = await client.send(other.encode())
    assert msa(a) == msa(b) == ("AA", "RE1")
    assert a != b
    assert await service.store.count_messages() == 2


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"\x00\x01\x02 binary garbage \xff\xfe",
        b"MSH|^~",  # truncated MSH
        b"PID|1||123\rOBR|1",  # no MSH
        b"MSH|^~\\&|LAB|HOSP|LG|BB|2026||ORM^O01|BAD1|P|2.5\rPID|1\rthis is not a segment",
        # required header fields: the sender could not match an AA to its message, or we would
        # not know what the message is (ERR 101, kept as a dead letter)
        b"MSH|^~\\&|LAB|HOSP|LG|BB|2026||ORM^O01||P|2.5\rPID|1||MRN1",
        b"MSH|^~\\&|LAB|HOSP|LG|BB|2026||ORM^O01| |P|2.5\rPID|1||MRN1",
        b"MSH|^~\\&|LAB|HOSP|LG|BB|2026|||BAD2|P|2.5\rPID|1||MRN1",
        b"MSH|^~\\&|LAB|HOSP|LG|BB|2026||^O01|BAD3|P|2.5\rPID|1||MRN1",
        b"MSH|^~\\&|broken",
    ],
)
async def test_malformed_frame_gets_ae_and_the_connection_survives(
    service: Service, payload: bytes
) -> None:
    assert service.mllp_port
    async with MllpClient("127.0.0.1", service.mllp_port) as client:
        bad = await client.send(payload)
        assert msa(bad)[0] == "AE"
        assert "ERR" in bad
        good = await client.send(ORDER.format(cid="AFTER1").encode())
        assert msa(good) == ("AA", "AFTER1")
    dead = await service.store.list_dead_letters()
    assert len(dead) == 1 and dead[0].error


async def test_unsupported_processing_id_is_rejected(service: Service) -> None:
    assert service.mllp_port
    text = ORDER.format(cid="PID1").replace("|P|2.5.1", "|X|2.5.1")
    async with MllpClient("127.0.0.1", service.mllp_port) as client:
        assert msa(await client.send(text.encode())) == ("AR", "PID1")


async def test_oversize_frame_is_refused_and_connection_survives(
    service_factory: object,
) -> None:
    svc: Service = await service_factory(mllp={"max_frame_bytes": 2048})  # type: ignore[operator]
    assert svc.mllp_port
    big = ORDER.format(cid="BIG1") + "NTE|1||" + "x" * 10_000 + "\r"
    async with MllpClient("127.0.0.1", svc.mllp_port) as client:
        assert msa(await client.send(big.encode())) == ("AR", "BIG1")
        assert msa(await client.send(ORDER.format(cid="SMALL1").encode())) == ("AA", "SMALL1")
    assert await svc.store.count_messages() == 1


async def test_garbage_between_frames_is_skipped(service: Service) -> None:
    assert service.mllp_port
    reader, writer = await asyncio.open_connection("127.0.0.1", service.mllp_port)
    writer.write(b"noise\r\n" + frame(ORDER.format(cid="G1").encode()))
    await writer.drain()
    framer = MllpFramer()
    events: list[object] = []
    while not events:
        events = [e for e in framer.feed(await reader.read(4096)) if isinstance(e, Frame)]
    assert isinstance(events[0], Frame)
    assert msa(events[0].payload.decode()) == ("AA", "G1")
    writer.close()


async def test_hundred_concurrent_connections(service: Service) -> None:
    port = service.mllp_port
    assert port

    async def one(i: int) -> tuple[str, str]:
        async with MllpClient("127.0.0.1", port, timeout=60) as client:
            return msa(await client.send(ORDER.format(cid=f"CC{i}").encode()))

    results = await asyncio.gather(*(one(i) for i in range(100)))
    assert sorted(results) == sorted(("AA", f"CC{i}") for i in range(100))
    assert await service.store.count_messages() == 100


async def test_persistent_connection_many_messages(service: Service) -> None:
    assert service.mllp_port
    async with MllpClient("127.0.0.1", service.mllp_port) as client:
        for i in range(50):
            assert msa(await client.send(ORDER.format(cid=f"P{i}").encode())) == ("AA", f"P{i}")


async def test_python_hl7_mllp_send_talks_to_lisguard(service: Service, tmp_path: Path) -> None:
    """A client nobody here wrote: python-hl7's mllp_send."""
    assert service.mllp_port
    sample = tmp_path / "order.hl7"
    # --loose: a plain file, one segment per line (mllp_send's mode for files)
    sample.write_bytes(ORDER.format(cid="EXT1").replace("\r", "\r\n").encode())
    tool = Path(sys.executable).parent / "mllp_send"
    proc = await asyncio.create_subprocess_exec(
        str(tool),
        "--loose",
        "--file",
        str(sample),
        "--port",
        str(service.mllp_port),
        "127.0.0.1",
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err.decode()
    assert "MSA|AA|EXT1" in out.decode().replace("\r", "\n")
    assert await service.store.count_messages() == 1


def test_samples_dir_exists() -> None:
    assert SAMPLES.is_dir() and (ROOT / "README.md").is_file()


async def test_an_ingest_bug_costs_one_nak_not_the_connection(service: Service) -> None:
    """Fault injection: the ingest path raises for one message; the sender gets AR and the
    connection carries on."""
    assert service.mllp is not None and service.mllp_port
    real = service.ingestor.ingest

    async def flaky(raw: bytes, **kw: object) -> object:
        if b"BOOM1" in raw:
            raise RuntimeError("injected")
        return await real(raw, **kw)  # type: ignore[arg-type]

    service.mllp.ingestor.ingest = flaky  # type: ignore[method-assign]
    try:
        async with MllpClient("127.0.0.1", service.mllp_port) as client:
            assert msa(await client.send(ORDER.format(cid="BOOM1").encode())) == ("AR", "BOOM1")
            assert msa(await client.send(ORDER.format(cid="OK2").encode())) == ("AA", "OK2")
    finally:
        service.mllp.ingestor.ingest = real  # type: ignore[method-assign]


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        (b"MSH|^~\\&|LAB|HOSP|LG|BB|2026||ORM^O01||P|2.5\rPID|1||MRN1", 10),
        (b"MSH|^~\\&|LAB|HOSP|LG|BB|2026|||REQ9|P|2.5\rPID|1||MRN1", 9),
        (b"MSH|^~\\&|LAB|HOSP|LG|BB|2026||^O01|REQ9B|P|2.5\rPID|1||MRN1", 9),
    ],
)
async def test_empty_required_header_field_is_named_in_the_ae(
    service: Service, payload: bytes, field: int
) -> None:
    """MSH-9 and MSH-10 are required: an AA would tell the sender all is well with a message
    nobody can match the ACK to, or whose kind nobody knows."""
    assert service.mllp_port
    async with MllpClient("127.0.0.1", service.mllp_port) as client:
        ack = await client.send(payload)
    code, control_id = msa(ack)
    assert code == "AE" and control_id == payload.split(b"|")[9].decode()
    err = next(line for line in ack.split("\r") if line.startswith("ERR|"))
    assert f"MSH^1^{field}" in err and "101^Required field missing" in err, err
    assert f"MSH-{field}" in err
