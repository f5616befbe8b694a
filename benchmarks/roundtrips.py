"""Database round trips, counted on the wire: a TCP proxy between a client and PostgreSQL.

A round trip is a turn-around: the client sends (one burst, however many packets), the server
answers. Each is a wait of the client on the server (network plus a wake-up on both sides), so
round trips per message bound what one connection can do whatever the CPU costs. Pipelined
statements sent together count once; a server message with nothing asked (a NOTIFY on a
LISTEN connection) does not count. Runs in the benchmark process, so it is used on a server
measured for its round trips only, never for its rate.
"""

from __future__ import annotations

import asyncio
import contextlib


class _Pair:
    """One client connection and its upstream connection; `asked`: the client sent since the
    server last answered."""

    def __init__(self) -> None:
        self.asked = False


class RoundTripProxy:
    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.turnarounds = 0
        self.bytes_up = self.bytes_down = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        return self.port

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for w in list(self._writers):
            w.close()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._server is not None:
            await self._server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            writer.close()
            return
        self._writers.update((writer, up_writer))
        pair = _Pair()
        up = asyncio.create_task(self._pump(reader, up_writer, pair, True))
        down = asyncio.create_task(self._pump(up_reader, writer, pair, False))
        self._tasks.update((up, down))
        for task in (up, down):
            task.add_done_callback(self._tasks.discard)
        await asyncio.wait((up, down), return_when=asyncio.FIRST_COMPLETED)
        for w in (writer, up_writer):
            w.close()
            self._writers.discard(w)

    async def _pump(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        pair: _Pair,
        client_side: bool,
    ) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await reader.read(65536):
                # counted before forwarding: the answer cannot come back before the question
                # has left, so `asked` is set by then
                if client_side:
                    pair.asked = True
                    self.bytes_up += len(data)
                else:
                    if pair.asked:
                        pair.asked = False
                        self.turnarounds += 1
                    self.bytes_down += len(data)
                writer.write(data)
                await writer.drain()
