"""A real `lisguard serve` (child process, SQLite store, its own install key) for the interop
tests, and the HTTP API and MLLP calls they make to it, every wait bounded."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import hl7.mllp
import pytest

from tests.e2e.serve_process import ServeProcess
from tests.interop.hl7files import Ack, Sent, read_ack

SAFETY = 30.0  # never an assertion: a wait that hangs fails the test instead of the suite
ACK_TIMEOUT = 15.0  # seconds for one ACK (a few ms normally; CI machines can be slow)

# auth is not what these tests are about; the API answers without a token
AUTH_OFF = {"LISGUARD_HTTP__AUTH_REQUIRED": "false"}

ServeFactory = Callable[..., Awaitable[ServeProcess]]


@pytest.fixture
async def serve_factory(tmp_path: Path) -> AsyncIterator[ServeFactory]:
    """Start `lisguard serve` with extra LISGUARD_* variables; stopped (SIGTERM) at the end."""
    started: list[ServeProcess] = []

    async def make(**env: str) -> ServeProcess:
        home = tmp_path / f"serve{len(started)}"
        home.mkdir()
        server = ServeProcess(
            f"sqlite:///{home / 'lisguard.db'}", home / "serve.log", **{**AUTH_OFF, **env}
        )
        server.start()
        started.append(server)
        async with asyncio.timeout(60):
            await server.wait_ready()
        return server

    yield make
    for server in started:
        try:
            server.terminate(timeout=30)
        except Exception:
            server.kill()
            raise


@pytest.fixture
async def serve(serve_factory: ServeFactory) -> ServeProcess:
    return await serve_factory()


async def api_get(server: ServeProcess, path: str) -> Any:
    url = f"http://127.0.0.1:{server.http_port}{path}"
    timeout = aiohttp.ClientTimeout(total=SAFETY)
    async with aiohttp.ClientSession(timeout=timeout) as http, http.get(url) as response:
        assert response.status == 200, f"GET {path}: {response.status} {await response.text()}"
        return await response.json()


async def all_alerts(server: ServeProcess) -> list[dict[str, Any]]:
    """Every alert the service holds, of production and test messages, in any status."""
    body = await api_get(server, "/api/alerts?status=all&test=include&limit=500")
    return list(body["alerts"])


async def send_with_python_hl7(port: int, messages: list[Sent]) -> list[list[Ack]]:
    """Send the messages one after another on one connection of python-hl7's asyncio MLLP
    client; for each, as many ACKs as it asked for, each parsed with python-hl7. The bytes are
    sent as they are (each message in its own character set): writeblock, not writemessage, which
    would encode every message in one codec."""
    async with asyncio.timeout(SAFETY):
        reader, writer = await hl7.mllp.open_hl7_connection("127.0.0.1", port)
    answers: list[list[Ack]] = []
    try:
        for sent in messages:
            writer.writeblock(sent.payload)
            async with asyncio.timeout(ACK_TIMEOUT):
                await writer.drain()
                blocks = [await reader.readblock() for _ in sent.expected_codes()]
            answers.append([read_ack(block) for block in blocks])
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            async with asyncio.timeout(5):
                await writer.wait_closed()
    return answers
