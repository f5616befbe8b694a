"""No message content in any log line: a real `lisguard serve`, messages with planted names,
MRNs and birth dates in every place a bad message can put them, then a grep of its log.

Patient ids appear only as pseudonyms keyed by the install's own key: the published dev key
does not reverse them."""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path

import pytest

from lisguard.keys import load_install_key
from lisguard.settings import SecuritySettings
from tests.e2e.serve_process import ServeProcess

NAME, GIVEN, MRN, DOB = "QZXSURNAME", "QZXGIVEN", "QZX99117", "19410203"
PLANTED = (NAME, GIVEN, MRN, DOB, "QZX")
PID = f"PID|1||{MRN}^^^SMH^MR||{NAME}^{GIVEN}||{DOB}|F"


def msh(cid: str, mtype: str = "ORU^R01", chars: str = "^~\\&", pid: str = "P") -> str:
    return f"MSH|{chars}|LAB|SMH|LISGUARD|SMH|20260301101500||{mtype}|{cid}|{pid}|2.5.1"


BAD = [
    # a raw carriage return in free text: the next line starts with the name
    msh("L1") + f"\r{PID}\rOBR|1|P1||890-4^ABSC^LN\rOBX|1|TX|890-4^ABSC^LN||Called Dr\r"
    f"{NAME} {GIVEN} re: pt",
    # encoding characters that are a name (the separator after MSH-2 went missing)
    f"MSH|{NAME}^{GIVEN}|LAB|SMH|||20260301||ORU^R01|L2|P|2.5.1\r{PID}",
    # a fragment without MSH
    f"{PID}\rOBX|1|TX|x||{NAME}",
    # a NUL, a NUL written as an escape, a type and a processing id that are names
    msh("L4") + f"\rPID|1||{MRN}^^^SMH^MR||{NAME}\x00^{GIVEN}||{DOB}",
    msh("L5") + f"\rPID|1||{MRN}^^^SMH^MR||{NAME}\\X00\\^{GIVEN}||{DOB}",
    msh("L6", mtype=f"{NAME}^{GIVEN}") + f"\r{PID}",
    msh("L7", pid=NAME) + f"\r{PID}",
    # an exposure and an affected order: alerts, whose log line names the patient by pseudonym
    msh("L8", "RDE^O11") + f"\r{PID}\rORC|NW|RX8\rRXE|^^^20260301|57894-0502-20^DARZALEX^NDC|1280"
    "|mg",
    msh("L9", "ORM^O01") + f"\r{PID}\rORC|NW|OE9\rOBR|1|OE9||TSCR^TYPE AND SCREEN^L",
]


@pytest.fixture
async def server(tmp_path: Path) -> ServeProcess:
    proc = ServeProcess(f"sqlite:///{tmp_path / 'lisguard.db'}", tmp_path / "serve.log")
    proc.start()
    try:
        await proc.wait_ready()
        yield proc  # type: ignore[misc]
    finally:
        proc.terminate()


async def test_no_planted_content_reaches_the_log(server: ServeProcess, tmp_path: Path) -> None:
    acks = await server.send(BAD)
    assert len(acks) == len(BAD)
    server.terminate()
    text = server.log_text()
    assert '"event": "message"' in text and "bb-serology" in text  # it did log, and alert
    for planted in PLANTED:
        assert planted not in text, [line for line in text.splitlines() if planted in line]

    # the pseudonym is keyed by this install's key, not the published one
    key = load_install_key(SecuritySettings(key_file=tmp_path / "lisguard.key"), create=False)
    patient = f"{MRN}^SMH"
    mine = hmac.new(key.derive("log-pseudonym"), patient.encode(), hashlib.sha256)
    published = hmac.new(b"lisguard-dev-key", patient.encode(), hashlib.sha256)
    assert mine.hexdigest()[:16] in text
    assert published.hexdigest()[:16] not in text
