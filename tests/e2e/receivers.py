"""Real local receivers for the delivery tests: an aiohttp webhook endpoint and an asyncio MLLP
listener that answers each message with an ACK. Both record what they got; either can be down
(not listening) and come up later on its fixed port. Given a secret, the webhook endpoint checks
each request as a Standard Webhooks receiver does (the reference library's Webhook.verify: the
signature, and a timestamp within 5 minutes) and answers 401 to one that fails."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field

from aiohttp import web
from standardwebhooks import Webhook, WebhookVerificationError

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
    secret: str | None = None  # verify signatures (Standard Webhooks)
    received: list[Post] = field(default_factory=list)
    refused: list[tuple[Post, str]] = field(default_factory=list)  # with the verifier's reason
    _runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def _hook(self, request: web.Request) -> web.Response:
        post = Post(dict(request.headers), await request.read())
        if self.secret is not None:
            try:
                Webhook(self.secret).verify(post.body, post.headers)
            except WebhookVerificationError as exc:
                self.refused.append((post, str(exc)))
                return web.json_response({"ok": False, "error": str(exc)}, status=401)
        self.received.append(post)
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


# MSH-18 (HL7 table 0211) -> codec, as a strict receiver reads it: not valued means ASCII
STRICT_CHARSETS = {"": "ascii", "ASCII": "ascii", "8859/1": "latin-1", "UNICODE UTF-8": "utf-8"}


def msh18_decode(payload: bytes) -> str:
    """The message decoded by the character set its MSH-18 declares, strictly (ASCII when none):
    UnicodeDecodeError, or LookupError for a set this receiver does not know."""
    msh = payload.split(b"\r", 1)[0]
    fields = msh.split(msh[3:4])
    declared = fields[17].split(b"~", 1)[0].decode("ascii") if len(fields) > 17 else ""
    return payload.decode(STRICT_CHARSETS[declared.strip().upper()])


@dataclass
class MllpReceiver:
    """Answers MSA-1 from `codes` in turn (then AA), MSA-2 echoing the message's MSH-10.

    `strict_charset`: decode each message as MSH-18 says (ASCII when it says nothing), as many
    LIS interfaces do; one that does not decode is answered AE and kept in `undecodable`."""

    port: int = field(default_factory=free_port)
    codes: Iterator[str] | None = None
    received: list[str] = field(default_factory=list)
    strict_charset: bool = False
    undecodable: list[bytes] = field(default_factory=list)
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
                    code = next(self.codes, "AA") if self.codes is not None else "AA"
                    try:
                        text = (
                            msh18_decode(event.payload)
                            if self.strict_charset
                            else event.payload.decode()
                        )
                    except (UnicodeDecodeError, LookupError):
                        self.undecodable.append(event.payload)
                        text, code = event.payload.decode("latin-1"), "AE"
                    self.received.append(text)
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
