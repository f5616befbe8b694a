"""What the fuzz tests share: how long they run, a hang watchdog, and the corpus mutations.

CI runs a bounded number of examples; `make fuzz` sets LISGUARD_FUZZ_EXAMPLES (hypothesis examples
per property) and LISGUARD_FUZZ_ROUNDS (mutations per corpus message) much higher.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
from collections.abc import Iterator
from types import FrameType

EXAMPLES = int(os.environ.get("LISGUARD_FUZZ_EXAMPLES", "300"))
ROUNDS = int(os.environ.get("LISGUARD_FUZZ_ROUNDS", "1"))
# A hang, not a slow run: real inputs take milliseconds. Generous so that a loaded CI machine
# never trips it; only a loop that does not end does.
HANG_SECONDS = 20.0

MLLP_RESERVED = (0x0B, 0x1C)  # MLLP start/end bytes: no sender can put them inside a message


class Hang(Exception):
    pass


@contextlib.contextmanager
def no_hang(seconds: float = HANG_SECONDS) -> Iterator[None]:
    """Raise Hang in the main thread if the block runs longer than `seconds`."""

    def fire(signum: int, frame: FrameType | None) -> None:
        raise Hang(f"still running after {seconds} s: a loop that does not end?")

    previous = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def truncate(data: bytes, rng: random.Random) -> bytes:
    return data[: rng.randrange(len(data) + 1)]


def flip_bytes(data: bytes, rng: random.Random, count: int = 8) -> bytes:
    """Flip one bit in `count` random bytes, never producing an MLLP framing byte."""
    out = bytearray(data)
    for _ in range(min(count, len(out))):
        i = rng.randrange(len(out))
        for bit in rng.sample(range(8), 8):
            flipped = out[i] ^ (1 << bit)
            if flipped not in MLLP_RESERVED:
                out[i] = flipped
                break
    return bytes(out)


def shuffle_segments(data: bytes, rng: random.Random) -> bytes:
    segments = data.split(b"\r")
    rng.shuffle(segments)
    return b"\r".join(segments)


def mutations(data: bytes, rng: random.Random) -> list[tuple[str, bytes]]:
    """The three mutations of the brief, and all three at once."""
    return [
        ("truncated", truncate(data, rng)),
        ("flipped", flip_bytes(data, rng)),
        ("shuffled", shuffle_segments(data, rng)),
        ("all", truncate(flip_bytes(shuffle_segments(data, rng), rng), rng)),
    ]
