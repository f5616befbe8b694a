"""The real service over real TCP: ACK semantics, duplicates, bad input, limits, concurrency."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import hl7
import pytest

from lisguard.app import Service
from lisguard.hl7v2.framing import decode_bytes, split_messages
from lisguard.hl7v2.reader import parse
from lisguard.transport.frames import Frame, MllpFramer, frame
from lisguard.transport.mllp import MllpClient, msa_code
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
    message = parse(text)
    msh = message.segments[0]
    accept, app = msh.get(15).strip(), msh.get(16).strip()
    # the default policy takes production messages only: a T or D one is refused (AR/CR)
    ok = message.processing_id in ("", "P")
    if not accept and not app:
        return ["AA" if ok else "AR"]
    codes = []
    if accept in ("AL", "SU" if ok else "ER"):
        codes.append("CA" if ok else "CR")
    if app in ("AL", "SU" if ok else "ER"):
        codes.append("AA" if ok else "AR")
    # MSH-15/16 honoured: NE/NE gets nothing (this used to be a CA: ingest.always_reply was true)
    return codes


async def test_every_corpus_message_gets_the_right_ack(service: Service) -> None:
    assert service.mllp_port
    count = 0
    async with MllpClient("127.0.0.1", service.mllp_port, timeout=10) as client:
        for path in corpus_files():
            for text in split_messages(decode_bytes(path.read_bytes())):
                codes = expected_codes(text)
                got = [msa(a) for a in await client.exchange(text.encode())]
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


# ------------------------------------------------------------------ batches, ACK modes, charset

FILE = (
    "FHS|^~\\&|LAB|HOSP|LISGUARD|BB|20260302090000||||FILE{n}\r"
    "BHS|^~\\&|LAB|HOSP|LISGUARD|BB|20260302090000||||BATCH{n}\r"
    "{messages}"
    "BTS|{count}\r"
    "FTS|1\r"
)


def batch_file(n: int, messages: list[str], count: int | None = None) -> str:
    body = "".join(messages)
    return FILE.format(n=n, messages=body, count=len(messages) if count is None else count)


async def frames_back(
    reader: asyncio.StreamReader, framer: MllpFramer, n: int, timeout: float = 10
) -> list[str]:
    """The next `n` frames the server writes, as bytes decoded the way a sender does (by their
    MSH-18), every wait bounded."""
    got: list[bytes] = []
    async with asyncio.timeout(timeout):
        while len(got) < n:
            data = await reader.read(65536)
            assert data, "connection closed"
            got += [e.payload for e in framer.feed(data) if isinstance(e, Frame)]
    assert len(got) == n, "more frames than expected"
    return [decode_bytes(g) for g in got]


async def test_a_batch_in_one_frame_gets_one_frame_holding_the_batch_ack(service: Service) -> None:
    """HL7 v2 ch. 2 batch protocol: a batch received as a unit is answered by a batch of ACKs,
    one per message, each message processed on its own (here: accepted, a dead letter, refused).
    It used to get a single AE (the frame did not parse as one message)."""
    assert service.mllp_port
    messages = [
        ORDER.format(cid="BA1"),
        "MSH|^~\\&|LAB|HOSP|LG|BB|2026||ORM^O01|BA2|P|2.5\rPID|1\rthis is not a segment\r",
        ORDER.format(cid="BA3").replace("|P|2.5.1", "|X|2.5.1"),
    ]
    reader, writer = await asyncio.open_connection("127.0.0.1", service.mllp_port)
    framer = MllpFramer()
    try:
        writer.write(frame(batch_file(1, messages).encode()))
        writer.write(frame(ORDER.format(cid="AFTERB").encode()))  # the next frame's ACK...
        await writer.drain()
        batch_ack, after = await frames_back(reader, framer, 2)
    finally:
        writer.close()
    assert msa(after) == ("AA", "AFTERB")  # ...comes next: the batch got exactly one frame
    parsed = hl7.parse_file(batch_ack)
    assert str(parsed.header[12]) == "FILE1"  # FHS-12 reference file control id
    [sub] = list(parsed)
    assert str(sub.header[12]) == "BATCH1"  # BHS-12 reference batch control id
    assert [str(sub.header[n]) for n in (3, 4, 5, 6)] == ["LISGUARD", "BB", "LAB", "HOSP"]
    codes = [(str(m.segment("MSA")[1]), str(m.segment("MSA")[2])) for m in sub]
    assert codes == [("AA", "BA1"), ("AE", "BA2"), ("AR", "BA3")]
    assert str(sub.trailer[1]) == "3" and len(sub.trailer) == 2  # BTS-1; no BTS-2 comment
    assert str(parsed.trailer[1]) == "1"
    assert await service.store.count_messages() == 4
    dead = {d.key.control_id: d.outcome for d in await service.store.list_dead_letters() if d.key}
    assert dead == {"BA2": "AE", "BA3": "AR"}


async def test_a_resent_batch_replays_each_message_ack(service: Service) -> None:
    assert service.mllp_port
    text = batch_file(2, [ORDER.format(cid="RB1"), ORDER.format(cid="RB2")]).encode()
    async with MllpClient("127.0.0.1", service.mllp_port) as client:
        first = await client.send(text)
        second = await client.send(text)

    def acks(batch_ack: str) -> list[str]:
        return [str(m) for m in hl7.parse_file(batch_ack)[0]]

    assert acks(first) == acks(second)  # the stored ACKs, MSH-10 included
    assert first != second  # a new batch ACK (its own FHS-11/BHS-11) around them
    assert await service.store.count_messages() == 2


async def test_a_malformed_batch_is_processed_and_the_batch_ack_says_so(service: Service) -> None:
    assert service.mllp_port
    text = batch_file(3, [ORDER.format(cid="MB1"), ORDER.format(cid="MB2")], count=5)
    text = text.replace("BHS|", "XHS|")  # no BHS: the XHS line is no part of any message
    async with MllpClient("127.0.0.1", service.mllp_port) as client:
        answer = await client.send(text.encode())
    parsed = hl7.parse_file(answer)
    [sub] = list(parsed)
    assert [str(m.segment("MSA")[1]) for m in sub] == ["AA", "AA"]
    comment = str(sub.trailer[2])  # BTS-2
    assert comment.startswith("envelope error: ") and "BTS-1 says 5 messages, 2 received" in comment
    assert "BTS without a BHS" in comment
    assert await service.store.count_messages() == 2


def enhanced(cid: str, accept: str, application: str, good: bool = True) -> bytes:
    text = ORDER.format(cid=cid).replace("|P|2.5.1\r", f"|P|2.5.1|||{accept}|{application}\r")
    return (text if good else text + "this is not a segment\r").encode()


async def test_enhanced_mode_ne_and_er_are_honoured(service: Service) -> None:
    """MSH-15/16 NE: no ACK at all; ER: an ACK on error only (table 0155). These used to get a
    CA (ingest.always_reply defaulted true). The connection carries on either way."""
    assert service.mllp_port
    reader, writer = await asyncio.open_connection("127.0.0.1", service.mllp_port)
    framer = MllpFramer()
    try:
        for message in (
            enhanced("NE1", "NE", "NE"),
            enhanced("ER1", "ER", "ER"),
            enhanced("NE2", "NE", "NE", good=False),  # never means never, errors included
            enhanced("ER2", "ER", "ER", good=False),
            ORDER.format(cid="LAST").encode(),
        ):
            writer.write(frame(message))
        await writer.drain()
        got = [msa(a) for a in await frames_back(reader, framer, 3)]
    finally:
        writer.close()
    assert got == [("CE", "ER2"), ("AE", "ER2"), ("AA", "LAST")]
    assert await service.store.count_messages() == 5


async def test_the_client_does_not_wait_for_an_ack_nobody_asked_for(service: Service) -> None:
    assert service.mllp_port
    async with MllpClient("127.0.0.1", service.mllp_port, timeout=30) as client:
        async with asyncio.timeout(5):  # NE/NE: back at once, not after the 30 s timeout
            assert await client.exchange(enhanced("CN1", "NE", "NE")) == []
        assert [msa_code(a) for a in await client.exchange(enhanced("CE1", "ER", "ER", False))] == [
            "CE",
            "AE",
        ]
        assert [msa_code(a) for a in await client.exchange(enhanced("CA1", "AL", "NE"))] == ["CA"]


async def test_always_reply_is_an_explicit_override(service_factory: object) -> None:
    svc: Service = await service_factory(ingest={"always_reply": True})  # type: ignore[operator]
    assert svc.mllp_port
    async with MllpClient("127.0.0.1", svc.mllp_port) as client:
        assert msa(await client.send(enhanced("OV1", "NE", "NE"))) == ("CA", "OV1")
        assert msa(await client.send(enhanced("OV2", "ER", "ER"))) == ("CA", "OV2")


@pytest.mark.parametrize(("version", "code"), [("2.5.1", "207"), ("2.8", "104")])
async def test_oversize_frame_gets_value_too_long_where_the_version_has_it(
    service_factory: object, version: str, code: str
) -> None:
    """Table 0357 104 "Value too long" (added in v2.7; "or the length that the application is
    able to safely handle"); 207 for older versions, whose table has no 104. It was 207 always."""
    svc: Service = await service_factory(mllp={"max_frame_bytes": 2048})  # type: ignore[operator]
    assert svc.mllp_port
    big = ORDER.format(cid="BIGV").replace("|2.5.1", f"|{version}") + "NTE|1||" + "x" * 9000
    async with MllpClient("127.0.0.1", svc.mllp_port) as client:
        ack = await client.send(big.encode())
    parsed = hl7.parse(ack)
    assert str(parsed.segment("MSA")[1]) == "AR" and str(parsed.segment("MSH")[12]) == version
    assert str(parsed.segment("ERR")[3][0][0]) == code
    assert "exceeds the limit of 2048 bytes" in str(parsed.segment("ERR")[8])


async def test_a_latin1_sender_gets_its_ack_in_latin1(service: Service) -> None:
    """MSH-18 8859/1 is echoed, and the ACK bytes are Latin-1: the non-ASCII control id and
    facility read back as sent. The ACK used to be UTF-8 with no MSH-18."""
    assert service.mllp_port
    text = (
        "MSH|^~\\&|LABOR|KLINIKUM MÜNCHEN|LISGUARD|BB|20260302081500||ORM^O01|ÄNDERUNG7|P|2.5.1"
        "||||||8859/1\r"
        "PID|1||MRN990^^^KMUC^MR||MÜLLER^JÖRG\r"
        "ORC|NW|ORD990\r"
    )
    reader, writer = await asyncio.open_connection("127.0.0.1", service.mllp_port)
    try:
        writer.write(frame(text.encode("latin-1")))
        await writer.drain()
        framer, raw = MllpFramer(), b""
        async with asyncio.timeout(10):
            while not raw:
                events = framer.feed(await reader.read(65536))
                raw = next((e.payload for e in events if isinstance(e, Frame)), b"")
    finally:
        writer.close()
    ack = hl7.parse(raw.decode("latin-1"))
    assert str(ack.segment("MSH")[18]) == "8859/1"
    assert str(ack.segment("MSH")[6]) == "KLINIKUM MÜNCHEN"
    assert (str(ack.segment("MSA")[1]), str(ack.segment("MSA")[2])) == ("AA", "ÄNDERUNG7")
    with pytest.raises(UnicodeDecodeError):
        raw.decode("utf-8")
