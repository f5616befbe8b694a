"""CPU exhaustion by escape- and delimiter-heavy input (security review finding 4).

A 1 MB frame of backslashes cost 0.7 s to read: the unescaper ran Python code for every escape
character, sequence or not; and a field of n repetitions was split n times (1 MB of '~' in OBX-5
took hours). Work is measured deterministically (tests/security/work.py), never timed: the
unescaper's Python work follows the number of real escape sequences, not the number of escape
characters, and reading a message 4x as large costs at most ~4x the work. The floods then go
through the real MLLP listener and must each get an ACK.
"""

from __future__ import annotations

import contextlib
import functools
import subprocess
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lisguard.app import ingest_policy, load_knowledge
from lisguard.hl7v2 import escapes
from lisguard.hl7v2.escapes import DEFAULT_ENCODING, Encoding, unescape
from lisguard.hl7v2.relevance import Relevance
from lisguard.intake import read_message
from lisguard.settings import Settings
from lisguard.transport.mllp import MllpClient, msa_code
from tests.e2e.serve_process import ServeProcess
from tests.security.work import BudgetExceededError, measure

MB = 1024 * 1024
HEAD = (
    "MSH|^~\\&|LAB|HOSP|LISGUARD|BB|20260302081500||ORU^R01|{cid}|P|2.5.1\r"
    "PID|1||MRN1^^^HOSP^MR||DOE^JANE\r"
    "OBR|1|O1||890-4^Antibody screen^LN\r"
)


def obx(value_type: str, value: str) -> str:
    return f"OBX|1|{value_type}|890-4^Antibody screen^LN||{value}"


def reference_unescape(value: str, enc: Encoding = DEFAULT_ENCODING) -> str:
    """The scan unescape always did (one candidate between two escape characters; a candidate
    that is no sequence is kept and its closing character opens the next), in plain Python."""
    esc = enc.escape
    out: list[str] = []
    pos, start = 0, value.find(esc)
    while start >= 0:
        end = value.find(esc, start + 1)
        if end < 0:
            break
        text = escapes._translate(value[start + 1 : end], enc)
        if text is None:
            out.append(value[pos:end])
            pos = start = end
            continue
        out += [value[pos:start], text]
        pos = end + 1
        start = value.find(esc, pos)
    out.append(value[pos:])
    return "".join(out)


FLOODS: dict[str, Callable[[int], str]] = {
    "backslashes": lambda n: "\\" * n,
    "X pieces": lambda n: "\\X" * (n // 2),
    "E sequences": lambda n: "\\E\\" * (n // 3),
    "unknown sequences": lambda n: "\\Q\\" * (n // 3),
    "sp sequences": lambda n: "\\.sp" * (n // 4),
    "long hex": lambda n: "\\X" + "4" * n,
    "long hex, closed": lambda n: "\\X" + "41" * (n // 2) + "\\",
    "long count": lambda n: "\\.sp" + "9" * n + "\\",
    "mixed": lambda n: "a\\F\\b\\\\c\\X41\\\\Zq\\\\C2842\\" * (n // 26),
}


def sequences_in(value: str) -> int:
    return escapes._sequences("\\").subn("", value)[1]


@pytest.mark.parametrize("kind", FLOODS)
def test_flood_unescapes_as_the_reference_does(kind: str) -> None:
    value = FLOODS[kind](MB)
    assert unescape(value) == reference_unescape(value)


@pytest.mark.parametrize("kind", FLOODS)
def test_python_work_follows_sequences_not_escape_characters(kind: str) -> None:
    value = FLOODS[kind](256 * 1024)
    allowed = 60 + 25 * sequences_in(value)
    # lines of Python only (a sequence's own text is scanned in C once); the budget stops the
    # old per-character loop (millions of lines) early
    work, _ = measure(lambda: unescape(value), budget=allowed + 1, scans=False)
    assert work <= allowed


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet="\\FSTREPHNXZCMZ.brspkcefitn0123456789aAfF+ |^&~#", max_size=60))
def test_unescape_matches_the_reference(value: str) -> None:
    assert unescape(value) == reference_unescape(value)
    truncating = Encoding(truncation="#")
    assert unescape(value, truncating) == reference_unescape(value, truncating)


@pytest.mark.parametrize("esc", ["\\", "^", "]", "-", "$"])
def test_other_escape_characters(esc: str) -> None:
    enc = Encoding(escape=esc, component="!" if esc == "^" else "^")
    value = f"a{esc}F{esc}b{esc}{esc}X41{esc}{esc}.sp2{esc}{esc}Q{esc}c{esc}"
    assert unescape(value, enc) == reference_unescape(value, enc)


def test_a_huge_count_is_capped_not_an_error() -> None:
    # int() of more than 4300 digits raises ValueError on Python 3.11
    assert unescape("\\.sp" + "9" * 5000 + "\\") == "\n" * 64
    assert unescape("\\.sk" + "0" * 5000 + "3\\") == "   "


@functools.cache
def _reader() -> Callable[[str], object]:
    settings = Settings()
    relevance = Relevance(load_knowledge(settings.knowledge.files, settings.knowledge.base_dir))
    policy = ingest_policy(settings)
    return lambda text: read_message(text, policy, relevance)


READ_FLOODS: dict[str, Callable[[int], str]] = {
    "repetitions in OBX-5": lambda n: HEAD.format(cid="R1") + obx("ST", "~" * n),
    "coded repetitions in OBX-5": lambda n: HEAD.format(cid="R2") + obx("CE", "x^y~" * (n // 4)),
    "repetitions in OBX-8": lambda n: HEAD.format(cid="R3") + obx("ST", "1|||" + "~" * n),
    "repetitions in PID-3": lambda n: HEAD.format(cid="R4").replace(
        "MRN1^^^HOSP^MR", "M^^^H^MR~" * (n // 9)
    ),
    "repetitions in NTE-3": lambda n: HEAD.format(cid="R5") + "NTE|1||" + "a~" * (n // 2),
    "backslashes in OBX-5": lambda n: HEAD.format(cid="R6") + obx("TX", "\\" * n),
    "E sequences in MSH-10": lambda n: HEAD.format(cid="\\E\\" * (n // 3)),
    "X pieces in OBX-5": lambda n: HEAD.format(cid="R7") + obx("ST", "\\X" * (n // 2)),
}


@pytest.mark.parametrize("kind", READ_FLOODS)
def test_reading_a_flood_is_linear(kind: str) -> None:
    read = _reader()
    small, large = READ_FLOODS[kind](4096), READ_FLOODS[kind](4 * 4096)
    read(small)  # warm the caches (knowledge, relevance) outside the measurement
    work_small, _ = measure(lambda: read(small))
    # at most ~4x for 4x the input; the budget stops a quadratic reader early
    budget = 5 * work_small
    try:
        work_large, _ = measure(lambda: read(large), budget=budget)
    except BudgetExceededError:
        pytest.fail(f"{kind}: 4x the input took more than 5x the work of {work_small}")
    assert work_large <= budget


MLLP_FLOODS = {
    "backslashes": HEAD.format(cid="F1") + obx("TX", "\\" * MB),
    "X pieces": HEAD.format(cid="F2") + obx("ST", "\\X" * (MB // 2)),
    "E field": HEAD.format(cid="F3") + obx("FT", "\\E\\" * (MB // 3)),
    "repetitions": HEAD.format(cid="F4") + obx("ST", "~" * MB),
    "coded repetitions": HEAD.format(cid="F5") + obx("CE", "x^y~" * (MB // 4)),
    "control id of escapes": HEAD.format(cid="\\" * MB),
}


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[ServeProcess]:
    # a child process: a reader stuck in a loop there cannot stall the test's own event loop
    proc = ServeProcess(
        f"sqlite:///{tmp_path / 'lisguard.db'}",
        tmp_path / "serve.log",
        LISGUARD_MLLP__MAX_FRAME_BYTES=str(2 * MB),
        LISGUARD_LOG__LEVEL="WARNING",
    )
    proc.start()
    try:
        await proc.wait_ready()
        yield proc
    finally:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.terminate(timeout=15)
        proc.kill()


async def test_floods_through_the_real_listener_are_answered(server: ServeProcess) -> None:
    async with MllpClient("127.0.0.1", server.mllp_port, timeout=60) as client:
        for kind, text in MLLP_FLOODS.items():
            # generous: the old reader took hours on the repetition floods
            ack = await client.send(text.encode())
            assert msa_code(ack) in ("AA", "AE", "AR"), kind
    # and the listener still serves ordinary traffic afterwards
    (ack,) = await server.send([HEAD.format(cid="AFTER") + obx("ST", "POS")])
    assert msa_code(ack) == "AA"
