"""Property fuzzing of the MLLP framer: any byte stream, cut anywhere, gives the same events;
frames come back intact; memory stays bounded whatever a peer sends."""

from __future__ import annotations

import tracemalloc

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lisguard.transport.frames import HEAD_KEEP, Frame, Garbage, MllpFramer, Oversize, frame
from tests.fuzz.common import EXAMPLES, MLLP_RESERVED, no_hang

FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# Streams rich in framing bytes: that is where a framer goes wrong.
stream_bytes = st.lists(
    st.one_of(
        st.sampled_from([b"\x0b", b"\x1c", b"\r", b"\x1c\r", b"\x0bMSH|", b"\n"]),
        st.binary(max_size=40),
    ),
    max_size=60,
).map(b"".join)

payload = st.binary(max_size=300).filter(lambda b: not any(c in MLLP_RESERVED for c in b))


def cut(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    pieces, last = [], 0
    for p in [*points, len(data)]:
        pieces.append(data[last:p])
        last = p
    return pieces


def run(framer: MllpFramer, chunks: list[bytes]) -> list[object]:
    out: list[object] = []
    for chunk in chunks:
        out.extend(framer.feed(chunk))
    return out


def merged(events: list[object]) -> list[object]:
    """Garbage counts may be reported in several pieces when the stream is cut: add them up."""
    out: list[object] = []
    for e in events:
        if isinstance(e, Garbage) and out and isinstance(out[-1], Garbage):
            out[-1] = Garbage(out[-1].size + e.size)
        else:
            out.append(e)
    return out


@FUZZ
@given(stream_bytes, st.lists(st.integers(0, 10_000), max_size=20), st.integers(1, 64))
def test_any_stream_any_cut_same_events(data: bytes, cuts: list[int], limit: int) -> None:
    with no_hang():
        whole = run(MllpFramer(limit), [data])
        pieces = run(MllpFramer(limit), cut(data, cuts))
    assert merged(pieces) == merged(whole)
    for event in whole:
        if isinstance(event, Frame):
            assert len(event.payload) <= limit
        elif isinstance(event, Oversize):
            assert event.size > limit and len(event.head) <= HEAD_KEEP
        else:
            assert isinstance(event, Garbage) and event.size > 0


@FUZZ
@given(st.lists(payload, max_size=12), st.lists(st.integers(0, 10_000), max_size=20))
def test_frames_come_back_intact(payloads: list[bytes], cuts: list[int]) -> None:
    data = b"".join(frame(p) for p in payloads)
    with no_hang():
        got = run(MllpFramer(1024), cut(data, cuts))
    assert got == [Frame(p) for p in payloads]


def test_endless_frame_keeps_memory_bounded() -> None:
    """A peer that opens a frame and never closes it: 20 MB in, the framer keeps its limit."""
    framer = MllpFramer(64 * 1024)
    chunk = b"x" * 65536
    tracemalloc.start()
    try:
        framer.feed(b"\x0b")
        for _ in range(320):
            assert framer.feed(chunk) == []
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1024 * 1024  # the 64 KiB limit and one read, not 20 MB
    (event,) = framer.feed(b"\x1c\r")
    assert isinstance(event, Oversize) and event.size == 320 * 65536
