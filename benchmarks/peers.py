"""The MLLP servers lisguard is compared with, run as their own processes like lisguard serve.

    python -m benchmarks.peers hl7 PORT   # python-hl7's asyncio MLLP server, create_ack(), no store
    python -m benchmarks.peers raw PORT   # a fixed ACK per frame, the message is never read
    python -m benchmarks.peers durable-sqlite PORT FILE   # python-hl7 + one INSERT, then the ACK
    python -m benchmarks.peers durable-pg PORT DSN        # the same on PostgreSQL (asyncpg pool)

Each prints "listening" once bound, then serves until killed. The durable peers are what a site
would write instead of lisguard: python-hl7's server, each raw message INSERTed and committed
(durably) before its ACK, nothing read from it.
"""

from __future__ import annotations

import asyncio
import sqlite3
import sys
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

# What the raw server answers to every frame: a valid original-mode ACK, never built per message.
FIXED_ACK = b"\x0bMSH|^~\\&|RAW|BENCH|||20260101000000||ACK|1|P|2.5.1\rMSA|AA|1\r\x1c\r"


async def python_hl7(port: int, store: Callable[[bytes], Awaitable[None]] | None = None) -> None:
    """The server a python-hl7 user would write: parse, answer create_ack(); with `store`, the
    raw message is stored (committed) first."""
    import hl7
    import hl7.mllp

    async def handle(reader: hl7.mllp.HL7StreamReader, writer: hl7.mllp.HL7StreamWriter) -> None:
        try:
            while not writer.is_closing():
                if store is None:
                    message = await reader.readmessage()
                else:  # what readmessage() does, keeping the bytes to store
                    block = await reader.readblock()
                    message = hl7.parse(block.decode(reader.encoding, reader.encoding_errors))
                    await store(block)
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


TABLE = (
    "CREATE TABLE IF NOT EXISTS hl7_messages (id {id} PRIMARY KEY, received_at {ts} NOT NULL"
    " DEFAULT {now}, raw {blob} NOT NULL)"
)


async def durable_sqlite(port: int, path: str) -> None:
    """sqlite3 from the standard library, WAL, synchronous=FULL: each INSERT its own commit
    (an fsync of the WAL) before the ACK. Called inline on the event loop, as most would: the
    statement takes tens of microseconds plus the fsync, and handing it to a thread (aiosqlite)
    costs more than that (lisguard's own store found so: README, "Durability and throughput")."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute(TABLE.format(id="INTEGER", ts="TEXT", now="CURRENT_TIMESTAMP", blob="BLOB"))

    async def store(raw: bytes) -> None:
        db.execute("INSERT INTO hl7_messages (raw) VALUES (?)", (raw,))  # autocommit: durable

    await python_hl7(port, store)


async def durable_pg(port: int, dsn: str) -> None:
    """asyncpg, one pool (a connection per busy MLLP connection): each INSERT commits on its own
    (synchronous_commit as the server has it, on by default) before the ACK."""
    import asyncpg

    pool: Any = await asyncpg.create_pool(dsn, min_size=1, max_size=10)
    async with pool.acquire() as conn:
        await conn.execute(
            TABLE.format(id="bigserial", ts="timestamptz", now="now()", blob="bytea")
        )

    async def store(raw: bytes) -> None:
        async with pool.acquire() as conn:
            await conn.execute("INSERT INTO hl7_messages (raw) VALUES ($1)", raw)

    await python_hl7(port, store)


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
    kind, port, *rest = sys.argv[1:]
    servers: dict[str, Callable[..., Coroutine[Any, Any, None]]] = {
        "hl7": python_hl7,
        "raw": raw,
        "durable-sqlite": durable_sqlite,
        "durable-pg": durable_pg,
    }
    asyncio.run(servers[kind](int(port), *rest))


if __name__ == "__main__":
    main()
