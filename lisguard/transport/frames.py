"""MLLP framing (0x0B payload 0x1C 0x0D), kept apart from sockets so it is tested by feeding bytes.

The framer is fed whatever the socket delivers and returns complete events. Bytes outside a frame
are skipped (counted as garbage); a frame larger than the limit is consumed to its end and
reported as oversize, keeping its first bytes so the NAK can still echo MSH-10.
"""

from __future__ import annotations

from dataclasses import dataclass

START = 0x0B
END = 0x1C
CR = 0x0D
HEAD_KEEP = 4096


@dataclass(frozen=True, slots=True)
class Frame:
    payload: bytes


@dataclass(frozen=True, slots=True)
class Oversize:
    head: bytes  # the first bytes of the frame, for the NAK's header
    size: int


@dataclass(frozen=True, slots=True)
class Garbage:
    size: int  # bytes skipped outside any frame (a lone CR after END is not counted)


Event = Frame | Oversize | Garbage


def frame(payload: bytes) -> bytes:
    return b"\x0b" + payload + b"\x1c\x0d"


class MllpFramer:
    def __init__(self, max_frame_bytes: int = 1024 * 1024) -> None:
        self.max_frame_bytes = max_frame_bytes
        self._buf = bytearray()
        self._in_frame = False
        self._size = 0  # bytes of the current frame seen so far (kept or not)
        self._after_end = False  # the byte after END may be the CR of the trailer

    @property
    def in_frame(self) -> bool:
        return self._in_frame

    def feed(self, data: bytes) -> list[Event]:
        events: list[Event] = []
        pos, n = 0, len(data)
        while pos < n:
            if not self._in_frame:
                start = data.find(START, pos)
                skipped = (n if start < 0 else start) - pos
                if skipped and self._after_end and data[pos] == CR:
                    skipped -= 1
                self._after_end = False
                if skipped:
                    events.append(Garbage(skipped))
                if start < 0:
                    break
                self._in_frame = True
                self._buf.clear()
                self._size = 0
                pos = start + 1
                continue
            end = data.find(END, pos)
            restart = data.find(START, pos, n if end < 0 else end)
            if restart >= 0:
                # a new frame began before this one ended: the partial frame is garbage
                events.append(Garbage(self._size + restart - pos + 1))
                self._in_frame = False
                pos = restart
                continue
            chunk_end = n if end < 0 else end
            self._take(data[pos:chunk_end])
            if end < 0:
                break
            events.append(self._finish())
            self._in_frame = False
            self._after_end = True
            pos = end + 1
        return events

    def _take(self, chunk: bytes) -> None:
        self._size += len(chunk)
        if self._size <= self.max_frame_bytes:
            self._buf += chunk
        elif len(self._buf) < HEAD_KEEP:
            self._buf += chunk[: HEAD_KEEP - len(self._buf)]
        if self._size > self.max_frame_bytes and len(self._buf) > HEAD_KEEP:
            del self._buf[HEAD_KEEP:]

    def _finish(self) -> Event:
        payload = bytes(self._buf)
        self._buf.clear()
        if self._size > self.max_frame_bytes:
            return Oversize(payload, self._size)
        return Frame(payload)
