"""Real local receivers for the delivery tests: an aiohttp webhook endpoint and an asyncio MLLP
listener that answers each message with an ACK. Both record what they got; either can be down
(not listening) and come up later on its fixed port."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field

from aiohttp import web

from lisguard.hl7v2.reader import parse
from lisguard.transport.frames import Frame, MllpFramer, frame


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Post:
    headers: dict[str, str]
    body: bytes


@dataclass
class WebhookReceiver:
    port: int = field(default_factory=free_port)
    statuses: Iterator[int] | None = None  # answers in turn; then 200
    received: list[Post] = field(default_factory=list)
    _runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def _hook(self, request: web.Request) -> web.Response:
        self.received.append(Post(dict(request.headers), await request.read()))
        status = next(self.statuses, 200) if self.statuses is not None else 200
        return web.json_response({"ok": status < 300}, status=status)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hook", self._hook)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


@dataclass
class MllpReceiver:
    """Answers MSA-1 from `codes` in turn (then AA), MSA-2 echoing the message's MSH-10."""

    port: int = field(default_factory=free_port)
    codes: Iterator[str] | None = None
    received: list[str] = field(default_factory=list)
    _server: asyncio.Server | None = None
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        framer = MllpFramer(1 << 20)
        try:
            while data := await reader.read(65536):
                for event in framer.feed(data):
                    if not isinstance(event, Frame):
                        continue
                    text = event.payload.decode()
                    self.received.append(text)
                    code = next(self.codes, "AA") if self.codes is not None else "AA"
                    control_id = parse(text).control_id
                    ack = (
                        "MSH|^~\\&|LIS|HOSP|LISGUARD||20260302090000||ACK^R01^ACK|"
                        f"A{len(self.received)}|P|2.5.1\r"
                        f"MSA|{code}|{control_id}|receiver says {code}"
                    )
                    writer.write(frame(ack.encode()))
                    await writer.drain()
        except ConnectionError:
            pass  # lisguard dropped the connection (timeout, stop)
        finally:
            self._tasks.discard(task)
            writer.close()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for task in list(self._tasks):
                task.cancel()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
            self._server = None
