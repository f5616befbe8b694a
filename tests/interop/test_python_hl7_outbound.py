"""python-hl7 (PyPI `hl7`) as the LIS that receives lisguard's alerts: a receiver built on
python-hl7's asyncio MLLP server reads each ORU^R01 lisguard sends (delivery.hl7), decodes it as
its MSH-18 declares, parses it with python-hl7 and answers an ACK built with python-hl7
(`Message.create_ack`). lisguard must mark the delivery delivered (the API's delivery status)."""

from __future__ import annotations

import asyncio
import contextlib
import warnings
from dataclasses import dataclass, field
from typing import Any

import hl7
import hl7.mllp

from tests.e2e.receivers import free_port
from tests.e2e.serve_process import ServeProcess
from tests.interop.conftest import SAFETY, ServeFactory, all_alerts, api_get, send_with_python_hl7
from tests.interop.hl7files import CHARSETS, Sent, declared_charset, read_sent

# A German site: ISO 8859-1 bytes, declared in MSH-18; the point of care (PV1-3) is "HÄMONK".
DOSE = (
    "MSH|^~\\&|APOTHEKE|KMUC|LISGUARD|BB|20260301090000||RAS^O17|RX-{mrn}|P|2.5.1||||||8859/1\r"
    "PID|1||{mrn}^^^KMUC^MR||MÜLLER^JÖRG\r"
    "PV1|1|O|HÄMONK^12^B\r"
    "ORC|RE|RXO-{mrn}\r"
    "RXA|0|1|20260301093000|20260301100000|J9145^daratumumab^HCPCS|1800|mg||||||||||||CP\r"
)
SCREEN = (
    "MSH|^~\\&|LABOR|KMUC|LISGUARD|BB|20260302081500||ORM^O01|SCR-{mrn}|P|2.5.1||||||8859/1\r"
    "PID|1||{mrn}^^^KMUC^MR||MÜLLER^JÖRG\r"
    "PV1|1|O|HÄMONK^12^B\r"
    "ORC|NW|TS-{mrn}\r"
    "OBR|1|TS-{mrn}||890-4^Antikörpersuchtest (AKS)^LN|||20260302081000\r"
)


@dataclass
class PythonHl7Receiver:
    """An LIS interface on python-hl7's MLLP server. Reads a block, decodes it strictly as its
    MSH-18 says (ASCII when it says nothing), parses it; answers AA, or AE for a message it
    cannot decode or parse (kept in `problems`)."""

    port: int = field(default_factory=free_port)
    received: list[hl7.Message] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    _server: asyncio.Server | None = None
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    async def _connection(
        self, reader: hl7.mllp.HL7StreamReader, writer: hl7.mllp.HL7StreamWriter
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            while True:
                block = await reader.readblock()
                writer.writemessage(self._answer(block))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # lisguard closed the connection (stop, or a fresh one after an error)
        finally:
            self._tasks.discard(task)
            writer.close()

    def _answer(self, block: bytes) -> hl7.Message:
        code = "AA"
        try:
            charset = declared_charset(block)
            message = hl7.parse(block.decode(CHARSETS[charset]))
        except (UnicodeDecodeError, KeyError, ValueError) as exc:
            self.problems.append(f"{type(exc).__name__}: {exc}")
            # still answer (AE) so the sender is not left waiting: parse what can be read
            message, code = hl7.parse(block.decode("latin-1")), "AE"
        else:
            self.received.append(message)
        with warnings.catch_warnings():  # create_ack's datetime.utcnow() (deprecated in 3.12)
            warnings.simplefilter("ignore", DeprecationWarning)
            ack = message.create_ack(
                code, message_id=f"LISACK{len(self.received)}", application="LIS", facility="HOSP"
            )
        return ack

    async def start(self) -> None:
        # encoding: what the ACKs are written in (they are ASCII); reading is by MSH-18, above
        self._server = await hl7.mllp.start_hl7_server(
            self._connection, "127.0.0.1", self.port, encoding="ascii"
        )

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for task in list(self._tasks):
                task.cancel()
            with contextlib.suppress(Exception):
                async with asyncio.timeout(5):
                    await self._server.wait_closed()
            self._server = None


def hl7_delivery_env(port: int) -> dict[str, str]:
    return {
        "LISGUARD_DELIVERY__HL7__ENABLED": "true",
        "LISGUARD_DELIVERY__HL7__HOST": "127.0.0.1",
        "LISGUARD_DELIVERY__HL7__PORT": str(port),
        "LISGUARD_DELIVERY__HL7__RECEIVING_APPLICATION": "LIS",
        "LISGUARD_DELIVERY__HL7__RECEIVING_FACILITY": "HOSP",
        "LISGUARD_DELIVERY__HL7__SENDING_FACILITY": "BB",
        "LISGUARD_DELIVERY__HL7__ACK_TIMEOUT_SECONDS": "5",
        "LISGUARD_DELIVERY__POLL_SECONDS": "0.05",
        "LISGUARD_DELIVERY__RETRY__INITIAL_SECONDS": "0.05",
        "LISGUARD_DELIVERY__RETRY__MAX_SECONDS": "0.2",
    }


def sent(text: str) -> Sent:
    return read_sent(text.split("|", 10)[9], text.encode("latin-1"))


async def delivered(server: ServeProcess, alert_id: str) -> dict[str, Any]:
    """The alert's view once its HL7 delivery is no longer pending (bounded)."""
    async with asyncio.timeout(SAFETY):
        while True:
            view: dict[str, Any] = await api_get(server, f"/api/alerts/{alert_id}")
            hl7_rows = [d for d in view["deliveries"] if d["channel"] == "hl7"]
            if hl7_rows and all(d["status"] != "pending" for d in hl7_rows):
                return view
            await asyncio.sleep(0.05)


def field_text(message: hl7.Message, segment: str, n: int) -> str:
    return str(message.segment(segment)[n])


async def test_python_hl7_receiver_takes_lisguards_oru(serve_factory: ServeFactory) -> None:
    receiver = PythonHl7Receiver()
    await receiver.start()
    try:
        server = await serve_factory(**hl7_delivery_env(receiver.port))
        messages = [sent(DOSE.format(mrn="MRN991")), sent(SCREEN.format(mrn="MRN991"))]
        answers = await send_with_python_hl7(server.mllp_port, messages)
        assert [a.code for acks in answers for a in acks] == ["AA", "AA"]
        alerts = await all_alerts(server)
        assert sorted(a["alert"]["rule"] for a in alerts) == ["baseline-workup", "bb-serology"]
        views = {a["id"]: await delivered(server, a["id"]) for a in alerts}
    finally:
        await receiver.stop()

    assert receiver.problems == []
    for view in views.values():
        [row] = [d for d in view["deliveries"] if d["channel"] == "hl7"]
        assert (row["status"], row["attempts"]) == ("delivered", 1), row
        assert row["delivered_at"]

    by_id = {field_text(m, "MSH", 10): m for m in receiver.received}
    assert sorted(by_id) == sorted(alert_id[:20] for alert_id in views)  # each alert once
    for alert_id, view in views.items():
        oru = by_id[alert_id[:20]]
        assert field_text(oru, "MSH", 9) == "ORU^R01^ORU_R01"
        assert field_text(oru, "MSH", 18) == "UNICODE UTF-8"
        assert (field_text(oru, "MSH", 5), field_text(oru, "MSH", 6)) == ("LIS", "HOSP")
        assert field_text(oru, "MSH", 4) == "BB"
        assert oru["PID.F3.R1.C1"] == "MRN991"
        # Latin-1 in, UTF-8 out: the point of care reads right once decoded by MSH-18
        assert oru["PV1.F3.R1.C1"] == "HÄMONK" == view["alert"]["location"]
        rules = [str(s[5]) for s in oru.segments("OBX") if str(s[3]).startswith("LGRULE^")]
        assert rules == [view["alert"]["rule"]]
        assert any(str(s[3]) == view["alert"]["text"] for s in oru.segments("NTE"))
