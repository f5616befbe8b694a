"""MLLP over TCP (optionally TLS): the listener LIS and pharmacy interfaces push to, and a client.

One connection carries one message at a time (send, wait for the ACK); many connections are
served concurrently. The ACK for a frame is written only after `Ingestor.ingest` returns, i.e.
after the store committed. Input never ends a connection except the peer, an idle timeout
between frames, or a frame that is not complete `frame_timeout_seconds` after its first byte.

No single address can hold the listener: each source gets at most `max_connections_per_source`
connections, and when all `max_connections` are taken a newcomer from a less represented address
replaces an idle connection of the address holding the most.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import ssl
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import structlog

from lisguard.hl7v2.ack import AckError, Header, acknowledged, peek_header, responses, wire_bytes
from lisguard.hl7v2.framing import declared_codec, decode_bytes, split_messages
from lisguard.logs import patient_hash
from lisguard.services import Ingestor, IngestResult
from lisguard.settings import MllpSettings
from lisguard.transport.frames import Frame, Garbage, MllpFramer, Oversize, frame
from lisguard.transport.metrics import Metrics

log = structlog.get_logger("lisguard.mllp")
READ_CHUNK = 65536
ERROR_ACK_WAIT = 2.0  # client: how long an ER-mode message may take to draw an error ACK


class MllpServer:
    def __init__(
        self,
        ingestor: Ingestor,
        settings: MllpSettings,
        *,
        metrics: Metrics | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.ingestor = ingestor
        self.settings = settings
        self.metrics = metrics or Metrics()
        self.ssl_context = ssl_context
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self._busy: set[asyncio.Task[None]] = set()  # connections with a message in flight
        self._by_source: dict[str, set[asyncio.Task[None]]] = {}  # open connections per address
        self._source_of: dict[asyncio.Task[None], str] = {}
        self._idle = asyncio.Event()  # set whenever no message is in flight
        self._idle.set()
        self.port = settings.port
        # a bad entry fails at start-up (check-config), not at the first connection
        self._allowed = [ipaddress.ip_network(a, strict=False) for a in settings.allowed_sources]

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._handle,
            self.settings.host,
            self.settings.port,
            ssl=self.ssl_context,
            limit=READ_CHUNK,
            # a TLS handshake is not yet a connection we count: keep it as short as a frame
            ssl_handshake_timeout=(
                min(60.0, self.settings.frame_timeout_seconds) if self.ssl_context else None
            ),
        )
        sock = self._server.sockets[0]
        self.port = sock.getsockname()[1]

    def _source_allowed(self, peername: object) -> bool:
        if not self._allowed:
            return True
        address = _address(peername)
        if address is None:
            return False
        return any(address in network for network in self._allowed)

    def _admit(self, task: asyncio.Task[None], source: str, peer: str) -> bool:
        """Count the connection in, or say why not (logged and counted)."""
        held = self._by_source.get(source, set())
        reason = ""
        if len(held) >= self.settings.max_connections_per_source:
            reason = "max_connections_per_source"
        elif len(self._connections) >= self.settings.max_connections and not self._evict(len(held)):
            reason = "max_connections"
        if reason:
            log.warning("connection_refused", reason=reason, peer=peer)
            self.metrics.connections_refused.labels(reason).inc()
            return False
        self._connections.add(task)
        self.metrics.connections_open.inc()
        self._by_source.setdefault(source, set()).add(task)
        self._source_of[task] = source
        return True

    def _evict(self, newcomer_holds: int) -> bool:
        """The listener is full: close an idle connection of the address holding the most, if
        it holds at least two more than the newcomer's address (so the global limit is reached
        only when many addresses share it evenly)."""
        source, held = max(self._by_source.items(), key=lambda item: len(item[1]))
        if len(held) < newcomer_holds + 2:
            return False
        victim = next((t for t in held if t not in self._busy), None)
        if victim is None:
            return False
        self._forget(victim)  # counted out now; its own finally closes the socket
        victim.cancel()
        log.warning("connection_evicted", reason="max_connections", source=source)
        self.metrics.connections_closed.labels("evicted").inc()
        return True

    def _forget(self, task: asyncio.Task[None]) -> None:
        if task in self._connections:
            self._connections.discard(task)
            self.metrics.connections_open.dec()
        source = self._source_of.pop(task, None)
        if source is not None:
            held = self._by_source.get(source)
            if held is not None:
                held.discard(task)
                if not held:
                    del self._by_source[source]

    async def stop(self, grace: float = 10.0) -> None:
        """Stop accepting; let in-flight messages finish (and be ACKed), then close connections."""
        if self._server is None:
            return
        self._server.close()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(grace):
                await self._idle.wait()
        for task in list(self._connections):
            task.cancel()
        if self._connections:
            await asyncio.gather(*self._connections, return_exceptions=True)
        await self._server.wait_closed()
        self._server = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        peername = writer.get_extra_info("peername")
        peer = f"{peername[0]}:{peername[1]}" if isinstance(peername, tuple) else str(peername)
        if not self._source_allowed(peername):
            log.warning("connection_refused", reason="source not allowed", peer=peer)
            self.metrics.connections_refused.labels("source_not_allowed").inc()
            writer.close()
            return
        if not self._admit(task, _source(peername), peer):
            writer.close()
            return
        framer = MllpFramer(self.settings.max_frame_bytes)
        # one bound logger per connection: the module's lazy proxy rebuilds one on every call
        conn_log = log.bind(peer=peer)
        loop = asyncio.get_running_loop()
        settings = self.settings
        # Between frames the idle timeout runs from the end of the last frame: bytes outside any
        # frame do not extend it. Within a frame only its deadline counts, set at its first
        # byte: a sender dribbling a byte at a time cannot hold the connection past it.
        idle_at = loop.time() + settings.idle_timeout_seconds
        frame_due: float | None = None
        try:
            while True:
                try:
                    async with asyncio.timeout_at(idle_at if frame_due is None else frame_due):
                        data = await reader.read(READ_CHUNK)
                except TimeoutError:
                    reason = "idle" if frame_due is None else "frame_timeout"
                    log.info(f"connection_{reason}_closed", peer=peer)
                    self.metrics.connections_closed.labels(reason).inc()
                    break
                if not data:
                    break
                completed = False
                for event in framer.feed(data):
                    if isinstance(event, Garbage):
                        self.metrics.garbage_bytes.inc(event.size)
                        conn_log.warning("garbage_skipped", bytes=event.size)
                        continue
                    completed = True
                    self._busy.add(task)
                    self._idle.clear()
                    try:
                        await self._answer(event, peer, writer, conn_log)
                    finally:
                        self._busy.discard(task)
                        if not self._busy:
                            self._idle.set()
                if completed:  # timers restart after the answer: processing is not the peer's
                    idle_at = loop.time() + settings.idle_timeout_seconds
                    frame_due = None
                if framer.in_frame and frame_due is None:
                    frame_due = loop.time() + settings.frame_timeout_seconds
        except (ConnectionError, ssl.SSLError, asyncio.IncompleteReadError) as exc:
            log.info("connection_lost", peer=peer, error=type(exc).__name__)
        except asyncio.CancelledError:
            pass
        finally:
            self._forget(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _answer(
        self,
        event: Frame | Oversize,
        peer: str,
        writer: asyncio.StreamWriter,
        conn_log: structlog.typing.FilteringBoundLogger,
    ) -> None:
        started = time.perf_counter()
        if isinstance(event, Oversize):
            self.metrics.frames.labels("oversize").inc()
            header = peek_header(decode_bytes(event.head)) or Header()
            err = AckError(
                "104",  # table 0357 "Value too long" (v2.7+; build_ack says 207 before that)
                f"frame of {event.size} bytes exceeds the limit of "
                f"{self.settings.max_frame_bytes} bytes; message not accepted",
            )
            acks = responses(header, ok=False, rejected=True, error=err)
            result = IngestResult(acks, "rejected", header.control_id, error=err.reason)
        else:
            try:
                result = await self.ingestor.ingest(event.payload, peer=peer)
            except Exception as exc:  # a bug must cost one NAK, never the connection
                conn_log.exception("ingest_failed", error=type(exc).__name__)
                header = peek_header(decode_bytes(event.payload[:4096])) or Header()
                err = AckError("207", f"internal error ({type(exc).__name__}); resend later")
                acks = responses(header, ok=False, rejected=True, error=err)
                result = IngestResult(acks, "rejected", header.control_id, error=err.reason)
        for ack in result.responses:
            writer.write(frame(wire_bytes(ack)))  # in the charset its MSH-18 names
        await writer.drain()
        seconds = time.perf_counter() - started
        self.metrics.observe(result, "mllp", seconds)
        conn_log.info(
            "message",
            transport="mllp",
            type=result.message_type,
            control_id=result.control_id,
            outcome=result.outcome,
            ack=result.ack_code,
            latency_ms=round(seconds * 1000, 2),
            alerts=[a.rule.value for a in result.alerts],
            patients=sorted({patient_hash(a.patient_key) for a in result.alerts}),
            error=result.error or None,
        )


def _address(peername: object) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The peer's IP address (an IPv4-mapped IPv6 address as IPv4); None if it has none."""
    if not isinstance(peername, tuple):
        return None
    try:
        address = ipaddress.ip_address(str(peername[0]).split("%")[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _source(peername: object) -> str:
    """What the per-source limit counts: the IPv4 address, or the IPv6 /64 (one host is
    commonly given a whole /64, and could otherwise pick a new address per connection)."""
    address = _address(peername)
    if address is None:
        return str(peername)
    if isinstance(address, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network(f"{address}/64", strict=False))
    return str(address)


def msa_code(ack: str) -> str:
    """MSA-1 of an ACK ('' when it has no MSA)."""
    for seg in ack.split("\r"):
        if seg.startswith("MSA") and len(seg) > 4:
            return seg[4:].split(seg[3])[0]
    return ""


class MllpClient:
    """A small MLLP client: send a message, wait for its ACK(s). Used by `lisguard send`."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        timeout: float = 30.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.host, self.port, self.timeout, self.ssl_context = host, port, timeout, ssl_context
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._framer = MllpFramer(64 * 1024 * 1024)
        self._pending: list[bytes] = []

    async def __aenter__(self) -> MllpClient:
        async with asyncio.timeout(self.timeout):
            self._reader, self._writer = await asyncio.open_connection(
                self.host, self.port, ssl=self.ssl_context
            )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(Exception):
                await self._writer.wait_closed()

    async def send(self, message: bytes) -> str:
        """Send one message; return the first ACK received for it."""
        assert self._writer is not None
        self._writer.write(frame(message))
        await self._writer.drain()
        return await self.receive()

    async def exchange(self, message: bytes) -> list[str]:
        """Send one message; return every ACK it asked for (enhanced mode: commit + application),
        so the next message's ACK is never mistaken for this one's. MSH-15/16 asking for no ACK
        on success (NE; ER): [] once sent (NE/NE), or when no error ACK came in ERROR_ACK_WAIT."""
        header = peek_header(message.decode("utf-8", "replace"))
        if header is not None and not acknowledged(header, ok=True):
            assert self._writer is not None
            self._writer.write(frame(message))
            await self._writer.drain()
            try:
                async with asyncio.timeout(min(self.timeout, ERROR_ACK_WAIT)):
                    acks = [await self.receive()] if acknowledged(header, ok=False) else []
            except TimeoutError:
                acks = []
            if not acks:
                return acks
        else:
            acks = [await self.send(message)]
        if header is not None and header.enhanced:
            code = msa_code(acks[0])
            app = header.application_ack_type.strip().upper()
            if code in ("CA", "CE", "CR") and (
                app == "AL" or (app == "SU" and code == "CA") or (app == "ER" and code != "CA")
            ):
                acks.append(await self.receive())
        return acks

    async def receive(self) -> str:
        assert self._reader is not None
        async with asyncio.timeout(self.timeout):
            while not self._pending:
                data = await self._reader.read(READ_CHUNK)
                if not data:
                    raise ConnectionError("connection closed before the ACK arrived")
                for event in self._framer.feed(data):
                    if isinstance(event, Frame):
                        self._pending.append(event.payload)
        return decode_bytes(self._pending.pop(0))  # as its MSH-18 says


async def send_files(
    files: Sequence[Path],
    host: str,
    port: int,
    ack_timeout: float,
    ssl_context: ssl.SSLContext | None = None,
) -> AsyncIterator[tuple[str, str, str]]:
    """Yield (file name, control id, ACK) for every message of every file, in order."""
    async with MllpClient(host, port, timeout=ack_timeout, ssl_context=ssl_context) as client:
        for path in files:
            raw = await asyncio.to_thread(path.read_bytes)
            for text in split_messages(decode_bytes(raw)):
                header = peek_header(text)
                for ack in await client.exchange(_as_declared(text)):
                    yield path.name, header.control_id if header else "", ack


def _as_declared(text: str) -> bytes:
    """A message's bytes in the character set its MSH-18 declares (UTF-8 when it declares none
    or one this text does not fit): a receiver decoding by MSH-18 reads what the file said."""
    codec = declared_codec(text.split("\r", 1)[0].encode("ascii", "replace"))
    if codec is not None:
        try:
            return text.encode(codec)
        except (UnicodeEncodeError, LookupError):
            pass
    return text.encode("utf-8")
