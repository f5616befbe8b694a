"""`lisguard send` puts a file's messages on the wire in the character set each declares in
MSH-18: an 8859/1 file arrived as UTF-8 bytes and the stored location read "HÃ\\x84MONK"."""

from __future__ import annotations

from pathlib import Path

from lisguard.transport.mllp import send_files
from tests.e2e.receivers import MllpReceiver

LATIN1 = (
    "MSH|^~\\&|LAB|SMH|LISGUARD|SMH|20260301101500||ADT^A08|S1|P|2.5.1|||||DEU|8859/1\r"
    "PID|1||M1^^^SMH^MR||GRÜNEWALD^ANNA\rPV1|1|I|HÄMONK^1^A"
)
UNDECLARED = "MSH|^~\\&|LAB|SMH|LISGUARD|SMH|20260301101500||ADT^A08|S2|P|2.5.1\rPV1|1|I|HÄMONK"


async def test_send_keeps_the_declared_character_set(tmp_path: Path) -> None:
    (tmp_path / "a.hl7").write_bytes(LATIN1.encode("latin-1"))
    (tmp_path / "b.hl7").write_bytes(UNDECLARED.encode("utf-8"))
    receiver = MllpReceiver(strict_charset=True)  # decodes as MSH-18 says
    await receiver.start()
    try:
        acks = [
            ack
            async for ack in send_files(
                [tmp_path / "a.hl7", tmp_path / "b.hl7"], "127.0.0.1", receiver.port, 10
            )
        ]
        assert len(acks) == 2
        assert len(receiver.received) == 2
        assert "GRÜNEWALD" in receiver.received[0] and "HÄMONK^1^A" in receiver.received[0]
        # nothing declared: sent as UTF-8, as the file holds it (an ASCII-strict receiver says AE)
        assert receiver.undecodable == [UNDECLARED.encode("utf-8")]
    finally:
        await receiver.stop()
