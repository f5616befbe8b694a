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
    # a raw CR in free text: the NUL's line starts with a name, which the reason must not show
    (HEAD.format(type="ORU^R01", cid="C4") + "\rPID|1||M1\rOBR|1|P1||890-4^SCR^LN\r"
     "OBX|1|TX|890-4^x^LN||Called Dr\rQZXSURNAME\x00 re: pt", "segment 5 (?)"),
]


@pytest.mark.parametrize(("text", "where"), POISON)
async def test_nul_is_ae_and_kept(store: Store, text: str, where: str) -> None:
    ingestor = Ingestor(store, load_knowledge_base())
    raw = text.encode()
    result = await ingestor.ingest(raw, text=text)
    assert (result.outcome, result.ack_code) == ("error", "AE")
    ack = "\r".join(result.responses)
    assert where in ack and "\x00" not in ack and "QZX" not in ack
    assert "postgres" not in ack.lower() and "sqlite" not in ack.lower()
    [dead] = await store.list_dead_letters()
    assert where in dead.error
    assert await store.get_raw(dead.id) == raw
    # the resend is answered the same way, and kept again: the sender's queue moves on
    again = await ingestor.ingest(raw, text=text)
    assert again.ack_code == "AE"


# A NUL written as an escape (\X00\) passes the raw-byte check; it is no text, so the reader
# gives the replacement character and the message is processed like any other: AA, on every
# store (PostgreSQL refused it in jsonb and the sender got AR "resend later" forever).
ESCAPED_NUL = [
    HEAD.format(type="ORU^R01", cid="X1") + "\rPID|1||M1^^^H^MR\rOBR|1|P1||890-4^SCR^LN\r"
    "OBX|1|TX|890-4^x^LN||Pt on daratumumab\\X00\\ 1800 mg",
    HEAD.format(type="ADT^A08", cid="X3") + "\rPID|1||M3\\X00\\^^^H^MR",
]


@pytest.mark.parametrize("text", ESCAPED_NUL)
async def test_escaped_nul_is_read_as_a_replacement_character(store: Store, text: str) -> None:
    ingestor = Ingestor(store, load_knowledge_base())
    result = await ingestor.ingest(text.encode(), text=text)
    assert (result.outcome, result.ack_code) == ("accepted", "AA")
    assert await store.list_dead_letters() == []
    if "dara" in text:  # and what the text says is still read
        async with store.transaction() as tx:
            states = await tx.load_patients(["M1^H"])
        assert "daratumumab_iv" in states["M1^H"].exposures


async def test_a_value_the_database_refuses_is_ae_and_kept(store: Store) -> None:
    """Whatever the reader lets through, a value the database cannot hold (here a NUL in the
    patient state, written straight to the store) is StoreDataError; ingest answers it AE with
    ERR 102 and a dead letter, not AR."""
    from lisguard.domain.patient import PatientState
    from lisguard.store.base import StoreDataError

    bad = PatientState(key="N\x00UL^H")
    if type(store).__name__ == "PostgresStore":
        with pytest.raises(StoreDataError):
            async with store.transaction() as tx:
                await tx.save_patient(bad)
    refusing = _RefusingStore(store)
    ingestor = Ingestor(refusing, load_knowledge_base())  # type: ignore[arg-type]
    text = POISON[2][0].replace("\x00", "").replace("C3", "C9")
    result = await ingestor.ingest(text.encode(), text=text)
    ack = "\r".join(result.responses)
    assert (result.outcome, result.ack_code) == ("error", "AE")
    assert "|102^" in ack and "resend later" not in ack
    assert "postgres" not in ack.lower() and "sqlite" not in ack.lower()
    [dead] = await store.list_dead_letters()
    assert await store.get_raw(dead.id) == text.encode()


class _RefusingStore:
    """The real store, except that saving a patient fails as a database refusing a value would:
    the path under test is the service's answer to StoreDataError, on each backend's dead-letter
    write."""

    def __init__(self, inner: Store) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> object:
        return getattr(self._inner, name)

    def transaction(self) -> object:
        from contextlib import asynccontextmanager

        from lisguard.store.base import StoreDataError

        inner = self._inner

        @asynccontextmanager
        async def refusing():  # type: ignore[no-untyped-def]
            async with inner.transaction() as tx:

                async def save_patient(state: object) -> None:
                    raise StoreDataError("value refused")

                class Tx:
                    def __getattr__(self, name: str) -> object:
                        return save_patient if name == "save_patient" else getattr(tx, name)

                yield Tx()

        return refusing()
