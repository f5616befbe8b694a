"""python-hl7 (PyPI `hl7`) as the sending system: every sample feed and every message of the
public corpus goes to a real `lisguard serve` through python-hl7's MLLP client (its asyncio
streams, and its `mllp_send` console script), and every ACK is read back with python-hl7.

An ACK must: carry an acknowledgment code (table 0008) and the code HL7 chapter 2 gives for the
message's MSH-15/16 (original or enhanced mode: none, or commit and/or application ACK) and
MSH-11 (the default configuration takes production messages only: T and D get AR/CR); echo the
message's MSH-10 in MSA-2; be addressed back to the sender (MSH-5/6 = the message's MSH-3/4);
decode as its own MSH-18 says (ASCII when it says nothing)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import subprocess
import sys
from pathlib import Path

import hl7
import hl7.mllp
import pytest

from lisguard.settings import Settings
from tests.e2e.serve_process import ServeProcess
from tests.interop.conftest import SAFETY, all_alerts, send_with_python_hl7
from tests.interop.hl7files import (
    CORPUS_DIR,
    SAMPLES,
    Ack,
    Sent,
    ack_problems,
    all_problems,
    corpus_files,
    messages_of,
    read_ack,
    read_sent,
    sample_files,
)

CORPUS_MESSAGES = 139  # shared/corpus/README.md: the sample messages of microsoft/FHIR-Converter
MLLP_SEND = Path(sys.executable).parent / "mllp_send"


def corpus_messages() -> list[Sent]:
    messages = messages_of(corpus_files(), CORPUS_DIR)
    if not messages:
        reason = f"HL7 corpus missing at {CORPUS_DIR}"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return messages


def test_the_default_configuration_takes_production_messages_only() -> None:
    """The expected ACKs below assume it: T and D messages are refused (AR/CR) by design."""
    assert Settings().ingest.processing_ids == ["P"]


async def test_every_sample_is_acked_to_python_hl7(serve: ServeProcess) -> None:
    messages = messages_of(sample_files(), SAMPLES)
    assert len(messages) >= 200
    answers = await send_with_python_hl7(serve.mllp_port, messages)
    assert all_problems(messages, answers) == []
    # every sample is a production message lisguard reads and accepts: never an error
    assert {a.code for acks in answers for a in acks} <= {"AA", "CA"}
    assert await all_alerts(serve), "the sample feeds raise alerts"


async def test_every_corpus_message_is_acked_and_raises_no_alert(serve: ServeProcess) -> None:
    messages = corpus_messages()
    assert len(messages) == CORPUS_MESSAGES
    test_messages = [m.name for m in messages if not m.processing_id_taken]
    assert test_messages, "the corpus has T messages: the AR/CR path is exercised"
    answers = await send_with_python_hl7(serve.mllp_port, messages)
    assert all_problems(messages, answers) == []
    codes = {a.code for acks in answers for a in acks}
    assert codes <= {"AA", "CA", "AR", "CR"}  # accepted, or refused for MSH-11: never AE/CE
    # none of these patients is on an anti-CD38 antibody (corpus README)
    assert await all_alerts(serve) == []


def loose_file(messages: list[Sent]) -> bytes:
    """A plain file as mllp_send --loose reads it: each message starting `MSH|^~\\&|`, one
    segment per line (CRLF)."""
    return b"".join(m.payload.replace(b"\r", b"\r\n") for m in messages)


def frames(stdout: bytes) -> list[bytes]:
    """The MLLP blocks mllp_send printed, in order (it prints each recv() as it came)."""
    return re.findall(rb"\x0b(.*?)\x1c\r", stdout, flags=re.DOTALL)


async def test_mllp_send_script_sends_the_corpus(serve: ServeProcess, tmp_path: Path) -> None:
    """python-hl7's own command-line sender. It reads one recv() per message and knows nothing
    of enhanced mode, and its --loose reader would make a message of a byte-order mark: so the
    messages that ask for exactly one ACK, written to one plain file without a BOM."""
    assert MLLP_SEND.is_file(), "python-hl7 ships the mllp_send console script"
    messages = [
        m
        for m in corpus_messages()
        if len(m.expected_codes()) == 1 and m.payload.startswith(b"MSH|^~\\&|")
    ]
    assert len(messages) >= 120
    feed = tmp_path / "corpus-loose.hl7"
    feed.write_bytes(loose_file(messages))
    proc = await asyncio.create_subprocess_exec(
        str(MLLP_SEND),
        "--loose",
        "--file",
        str(feed),
        "--port",
        str(serve.mllp_port),
        "127.0.0.1",
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(SAFETY * 2):
            out, err = await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, err.decode(errors="replace")
    acks: list[Ack] = [read_ack(block) for block in frames(out)]
    assert len(acks) == len(messages)
    assert all_problems(messages, [[ack] for ack in acks]) == []
    assert await all_alerts(serve) == []


# A German site's feed: ISO 8859-1 and declared so (MSH-18 8859/1), its facility (MSH-4) included
LATIN1_ORDER = (
    "MSH|^~\\&|LABOR|KLINIKUM MÜNCHEN|LISGUARD|BB|20260302081500||ORM^O01|{cid}|P|2.5.1"
    "||||||8859/1\r"
    "PID|1||MRN990^^^KMUC^MR||MÜLLER^JÖRG\r"
    "ORC|NW|ORD{cid}\r"
    "OBR|1|ORD{cid}||890-4^Antikörpersuchtest^LN|||20260302081000\r"
)


async def test_an_ack_with_non_ascii_declares_its_character_set(serve: ServeProcess) -> None:
    """The ACK echoes MSH-4 "KLINIKUM MÜNCHEN" into its MSH-6: its bytes must be in the set its
    own MSH-18 names (ASCII when it names none), so a receiver decoding by MSH-18 reads it."""
    sent = read_sent("latin-1 MSH-4", LATIN1_ORDER.format(cid="UML1").encode("latin-1"))
    assert sent.sending_facility == "KLINIKUM MÜNCHEN"
    [[ack]] = await send_with_python_hl7(serve.mllp_port, [sent])
    assert ack_problems(sent, [ack]) == []


async def test_python_hl7_latin1_connection_reads_the_ack(serve: ServeProcess) -> None:
    """python-hl7 as a Latin-1 site uses it: one `encoding` for the connection, writemessage()
    and readmessage(), which decodes by that encoding and never looks at MSH-18. HL7 would let
    the ACK declare another set, but an ACK in the sender's own set (8859/1 holds "Ü"), echoing
    its MSH-18, is read right even by such a client."""
    text = LATIN1_ORDER.format(cid="UML2")
    async with asyncio.timeout(SAFETY):
        reader, writer = await hl7.mllp.open_hl7_connection(
            "127.0.0.1", serve.mllp_port, encoding="latin-1"
        )
    try:
        writer.writemessage(hl7.parse(text))
        async with asyncio.timeout(SAFETY):
            await writer.drain()
            ack = await reader.readmessage()
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            async with asyncio.timeout(5):
                await writer.wait_closed()
    assert str(ack.segment("MSA")[1]) == "AA"
    assert str(ack.segment("MSA")[2]) == "UML2"
    assert str(ack.segment("MSH")[6]) == "KLINIKUM MÜNCHEN"
    assert str(ack.segment("MSH")[18]) == "8859/1"
