"""MLLP framing, tested by feeding bytes (no socket)."""

from __future__ import annotations

from lisguard.transport.frames import Frame, Garbage, MllpFramer, Oversize, frame

MSG = b"MSH|^~\\&|A|B|C|D|20260101||ADT^A01|X1|P|2.5\rPID|1||123"


def events(framer: MllpFramer, *chunks: bytes) -> list[object]:
    out: list[object] = []
    for chunk in chunks:
        out.extend(framer.feed(chunk))
    return out


def test_one_frame() -> None:
    assert events(MllpFramer(), frame(MSG)) == [Frame(MSG)]


def test_frame_split_at_every_byte() -> None:
    framer = MllpFramer()
    data = frame(MSG) + frame(MSG)
    got = events(framer, *[data[i : i + 1] for i in range(len(data))])
    assert got == [Frame(MSG), Frame(MSG)]


def test_two_frames_in_one_read() -> None:
    assert events(MllpFramer(), frame(MSG) + frame(b"MSH|2")) == [Frame(MSG), Frame(b"MSH|2")]


def test_garbage_between_frames_is_skipped_and_counted() -> None:
    got = events(MllpFramer(), b"junk" + frame(MSG) + b"\r\n??" + frame(MSG))
    assert got == [Garbage(4), Frame(MSG), Garbage(4), Frame(MSG)]


def test_trailing_cr_is_not_garbage_even_in_a_later_read() -> None:
    framer = MllpFramer()
    assert events(framer, b"\x0b" + MSG + b"\x1c") == [Frame(MSG)]
    assert events(framer, b"\r") == []


def test_end_without_cr_still_ends_the_frame() -> None:
    assert events(MllpFramer(), b"\x0b" + MSG + b"\x1c" + b"\x0bB\x1c") == [Frame(MSG), Frame(b"B")]


def test_new_start_inside_a_frame_drops_the_partial_one() -> None:
    got = events(MllpFramer(), b"\x0bpartial" + frame(MSG))
    assert got == [Garbage(8), Frame(MSG)]


def test_oversize_frame_is_consumed_and_reported_with_its_head() -> None:
    framer = MllpFramer(max_frame_bytes=100)
    big = MSG + b"x" * 10_000
    got = events(framer, frame(big)[:5000], frame(big)[5000:], frame(MSG))
    assert isinstance(got[0], Oversize)
    assert got[0].size == len(big)
    assert got[0].head.startswith(MSG[:50])
    assert got[1] == Frame(MSG)


def test_frame_exactly_at_the_limit_is_accepted() -> None:
    assert events(MllpFramer(max_frame_bytes=len(MSG)), frame(MSG)) == [Frame(MSG)]


def test_incomplete_frame_waits() -> None:
    framer = MllpFramer()
    assert events(framer, b"\x0b" + MSG) == []
    assert framer.in_frame
    assert events(framer, b"\x1c\r") == [Frame(MSG)]
