"""A NUL character in any field is a data error, not an outage: AE with where it is, the bytes
kept as a dead letter, on every store; never AR "resend later", which would stall the sender's
queue behind the message forever. No ACK names the database."""

from __future__ import annotations

import pytest

from lisguard.domain.knowledge import load_knowledge_base
from lisguard.services import Ingestor
from lisguard.store.base import Store

HEAD = "MSH|^~\\&|A|F|L|F|20260101||{type}|{cid}|P|2.5"
POISON = [
    (HEAD.format(type="ORU^R01", cid="C1") + "\rPID|1||M1\x00X^^^H^MR\rOBR|1|P1||890-4^SCR^LN",
     "segment 2 (PID)"),
    (HEAD.format(type="ADT^A08", cid="C\x002") + "\rPID|1||M1", "segment 1 (MSH)"),
    (HEAD.format(type="ORU^R01", cid="C3") + "\rPID|1||M1\rOBR|1|P1||890-4^SCR^LN\r"
     "OBX|1|TX|890-4^x^LN||Pt on dara\x00 1800 mg", "segment 4 (OBX)"),
]


@pytest.mark.parametrize(("text", "where"), POISON)
async def test_nul_is_ae_and_kept(store: Store, text: str, where: str) -> None:
    ingestor = Ingestor(store, load_knowledge_base())
    raw = text.encode()
    result = await ingestor.ingest(raw, text=text)
    assert (result.outcome, result.ack_code) == ("error", "AE")
    ack = "\r".join(result.responses)
    assert where in ack and "\x00" not in ack
    assert "postgres" not in ack.lower() and "sqlite" not in ack.lower()
    [dead] = await store.list_dead_letters()
    assert where in dead.error
    assert await store.get_raw(dead.id) == raw
    # the resend is answered the same way, and kept again: the sender's queue moves on
    again = await ingestor.ingest(raw, text=text)
    assert again.ack_code == "AE"
