"""The MLLP servers lisguard is compared with, run as their own processes like lisguard serve.

    python -m benchmarks.peers hl7 PORT   # python-hl7's asyncio MLLP server, create_ack(), no store
    python -m benchmarks.peers raw PORT   # a fixed ACK per frame, the message is never read

Both print "listening" once bound, then serve until killed.
"""

from __future__ import annotations

import asyncio
import sys

# What the raw server answers to every frame: a valid original-mode ACK, never built per message.
FIXED_ACK = b"\x0bMSH|^~\\&|RAW|BENCH|||20260101000000||ACK|1|P|2.5.1\rMSA|AA|1\r\x1c\r"


async def python_hl7(port: int) -> None:
    """The server a python-hl7 user would write: parse, answer create_ack(), nothing stored."""
    import hl7.mllp

    async def handle(reader: hl7.mllp.HL7StreamReader, writer: hl7.mllp.HL7StreamWriter) -> None:
        try:
            while not writer.is_closing():
                message = await reader.readmessage()
                writer.writemessage(message.create_ack())
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await hl7.mllp.start_hl7_server(handle, "127.0.0.1", port)
    print("listening", flush=True)
    async with server:
        await server.serve_forever()


class _FixedAck(asyncio.Protocol):
    """Answers each frame end (0x1C 0x0D) with FIXED_ACK: the transport ceiling for Python."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.tail = b""

    def data_received(self, data: bytes) -> None:
        data = self.tail + data
        ends = data.count(b"\x1c\r")
        self.tail = data[data.rfind(b"\x1c\r") + 2 :] if ends else data[-1:]
        if ends:
            self.transport.write(FIXED_ACK * ends)


async def raw(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(_FixedAck, "127.0.0.1", port)
    print("listening", flush=True)
    async with server:
        await server.serve_forever()


def main() -> None:
    kind, port = sys.argv[1], int(sys.argv[2])
    asyncio.run({"hl7": python_hl7, "raw": raw}[kind](port))


if __name__ == "__main__":
    main()
