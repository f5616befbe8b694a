"""`lisguard serve` as a real child process, and fresh PostgreSQL schemas for it.

Used by the replica and fault tests: they need separate processes (separate pools, separate
event loops, a real SIGTERM), not two Service objects in the test's own loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import aiohttp
import asyncpg

from lisguard.transport.mllp import MllpClient, msa_code

BIN = Path(sys.executable).parent / "lisguard"
PG_DSN = os.environ.get("LISGUARD_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def with_query(url: str, **params: str) -> str:
    query = "&".join(f"{k}={v}" for k, v in params.items())
    return f"{url}{'&' if '?' in url else '?'}{query}"


class ServeProcess:
    """One `lisguard serve` on free MLLP and HTTP ports, logging JSON to a file."""

    def __init__(self, store_url: str, log_path: Path, **env: str) -> None:
        self.store_url = store_url
        self.log_path = log_path
        self.mllp_port = free_port()
        self.http_port = free_port()
        self.env = {
            **os.environ,
            "LISGUARD_MLLP__PORT": str(self.mllp_port),
            "LISGUARD_HTTP__PORT": str(self.http_port),
            "LISGUARD_STORE__URL": store_url,
            "LISGUARD_LOG__FORMAT": "json",
            "LISGUARD_LOG__LEVEL": "INFO",
            # its own install key, generated at first start beside its log (not in the checkout)
            "LISGUARD_SECURITY__KEY_FILE": str(log_path.parent / "lisguard.key"),
            "LISGUARD_AUDIT__ANCHOR_FILE": str(log_path.parent / "audit-anchors.jsonl"),
            **env,
        }
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child owns it
        try:
            self.proc = subprocess.Popen([str(BIN), "serve"], env=self.env, stderr=log, stdout=log)
        finally:
            log.close()

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    async def ready(self) -> bool:
        """GET /readyz: True on 200 (the store takes a write), False on 503."""
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"http://127.0.0.1:{self.http_port}/readyz") as response,
        ):
            return response.status == 200

    async def wait_ready(self, attempts: int = 600) -> None:
        """Poll /readyz until it answers 200; fail if the process exits first."""
        for _ in range(attempts):
            assert self.running, f"lisguard serve exited at start-up:\n{self.log_text()}"
            with contextlib.suppress(aiohttp.ClientError, OSError):
                if await self.ready():
                    return
            await asyncio.sleep(0.05)
        raise AssertionError(f"lisguard serve never became ready:\n{self.log_text()}")

    def terminate(self, timeout: float = 60) -> int:
        """SIGTERM and wait; the exit status."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    async def send(self, messages: Sequence[str]) -> list[str]:
        """Send messages on one MLLP connection, one after another; their first ACKs."""
        async with MllpClient("127.0.0.1", self.mllp_port, timeout=60) as client:
            return [await client.send(m.encode()) for m in messages]


async def send_until_accepted(server: ServeProcess, message: str, attempts: int = 200) -> str:
    """What an interface engine does with a NAK: resend (here on a fresh connection) until AA."""
    ack = ""
    for _ in range(attempts):
        (ack,) = await server.send([message])
        if msa_code(ack) == "AA":
            return ack
        await asyncio.sleep(0.05)
    raise AssertionError(f"never accepted; last ACK {ack!r}")


@contextlib.asynccontextmanager
async def fresh_schema(dsn: str, prefix: str) -> AsyncIterator[tuple[str, asyncpg.Connection]]:
    """A new schema on the server (dropped afterwards) and an admin connection to inspect it."""
    schema = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(dsn, timeout=5)
    await admin.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield schema, admin
    finally:
        try:
            await admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await admin.close()


async def pg_reachable(dsn: str) -> str | None:
    """None when the server answers, else why not."""
    try:
        conn = await asyncpg.connect(dsn, timeout=5)
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    await conn.close()
    return None
