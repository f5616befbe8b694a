"""Big files in pieces (lisguard.hl7v2.files): a file read a chunk at a time gives exactly the
messages `split_messages(decode_bytes(whole))` gives, for every sample and corpus file (with their
BOMs, CRLF, batches, MLLP frames, character sets), files joined, at any chunk size."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lisguard.hl7v2.files import cut_at_messages, file_codec, read_messages
from lisguard.hl7v2.framing import decode_bytes, split_messages
from tests.conftest import SAMPLES, corpus_files


def chunked(data: bytes, size: int) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


def in_pieces(data: bytes, size: int) -> list[str]:
    return list(read_messages(lambda: chunked(data, size)))


def at_once(data: bytes) -> list[str]:
    return split_messages(decode_bytes(data))


def sample_files() -> list[Path]:
    return sorted(SAMPLES.glob("*/*.hl7"))


MSH = b"MSH|^~\\&|LAB|HOSP|LG|HOSP|20260301120000||ORU^R01|%d|P|2.5"
PID = b"PID|1||MRN%d^^^HOSP^MR||DOE^JANE"
OBX = b"OBX|1|ST|X^Y^L||%s"


def message(n: int, text: bytes = b"value", newline: bytes = b"\r") -> bytes:
    return newline.join([MSH % n, PID % n, OBX % text]) + newline


# Files the corpus has few or none of: each must come out in pieces as it does whole.
CASES = {
    "crlf": b"".join(message(n, newline=b"\r\n") for n in range(40)),
    "lf": b"".join(message(n, newline=b"\n") for n in range(40)),
    "bom": b"\xef\xbb\xbf" + b"".join(message(n) for n in range(40)),
    "mllp frames": b"".join(b"\x0b" + message(n) + b"\x1c\r" for n in range(40)),
    "batch": b"FHS|^~\\&\rBHS|^~\\&\r"
    + b"".join(message(n) for n in range(40))
    + b"BTS|40\rFTS|1\r",
    "two batches, text between": b"BHS|^~\\&\r"
    + b"".join(message(n) for n in range(20))
    + b"BTS|20\rnot a segment, ignored\rBHS|^~\\&\r"
    + b"".join(message(n) for n in range(20, 40))
    + b"BTS|20\r",
    "text before the first message": b"exported 2026-03-01\r\r" * 50
    + b"".join(message(n) for n in range(10)),
    "indented and blank lines": b"".join(b"\n\n  " + message(n, newline=b"\n") for n in range(30)),
    "MSH inside a field": b"".join(message(n, b"see MSH|^~ in the note") for n in range(30)),
    "one message bigger than a chunk": message(1) + message(2, b"x" * 5000) + message(3),
    "latin-1 declared by the first message": b"".join(
        (MSH % n + (b"||||||8859/1" if n == 0 else b"") + b"\r" + PID % n + b"\r" + OBX % b"\xe9")
        + b"\r"
        for n in range(30)
    ),
    # ISO 8859-8 has no character for some BOM bytes: the BOM must go before it is tried
    "bom, 8859/8 declared": b"\xef\xbb\xbf"
    + b"".join(MSH % n + b"||||||8859/8\r" + OBX % b"\xe0" + b"\r" for n in range(10)),
    "utf-8 without declaration": b"".join(message(n, "\u00e9\u4e2d".encode()) for n in range(30)),
    "utf-16 with BOM": "".join(m.decode() for m in (message(n) for n in range(20))).encode(
        "utf-16"
    ),
    "no message at all": b"just some text\rand more\r" * 40,
    "empty": b"",
    "batch envelope only": b"FHS|^~\\&\rFTS|0\r",
}


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("size", [1, 2, 3, 5, 7, 64, 333, 4096, 1 << 20])
def test_case_in_pieces_reads_as_at_once(name: str, size: int) -> None:
    data = CASES[name]
    assert in_pieces(data, size) == at_once(data)


@pytest.mark.parametrize("path", sample_files(), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_samples_in_pieces_read_as_at_once(path: Path) -> None:
    data = path.read_bytes()
    for size in (1, 3, 17, 256, 1 << 20):
        assert in_pieces(data, size) == at_once(data)


def test_corpus_in_pieces_reads_as_at_once() -> None:
    files = corpus_files()
    for path in files:
        data = path.read_bytes()
        for size in (1, 5, 97, 2048):
            assert in_pieces(data, size) == at_once(data), f"{path.name}, chunks of {size}"
    # and the whole corpus as one file, as an interface engine's archive would hold it
    data = b"\r".join(path.read_bytes().removeprefix(b"\xef\xbb\xbf") for path in files)
    assert len(in_pieces(data, 4096)) == len(at_once(data)) >= len(files)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.sampled_from(sorted(CASES)), min_size=1, max_size=4),
    st.integers(min_value=1, max_value=600),
)
def test_files_joined_any_chunk_size(names: list[str], size: int) -> None:
    """Joined files mix character sets, BOMs in the middle, batches and stray text: the file's
    character set is still the one decode_bytes picks for the whole."""
    data = b"".join(CASES[name] for name in names)
    assert in_pieces(data, size) == at_once(data)


def test_declared_set_holds_for_the_whole_file() -> None:
    data = CASES["latin-1 declared by the first message"]
    assert data.count(b"8859/1") == 1
    assert file_codec(lambda: chunked(data, 16)) == "latin-1"
    messages = in_pieces(data, 64)
    assert len(messages) == 30 and all(m.endswith("\u00e9") for m in messages)


@pytest.mark.parametrize(
    ("data", "codec"),
    [
        (message(1, "\u00e9".encode()), "utf-8"),
        (message(1, "\u00e9".encode()) + message(2, b"\x80"), "cp1252"),  # not UTF-8 at the end
        (message(1, b"\x81"), "latin-1"),  # neither UTF-8 nor cp1252
        (b"junk " * 1000 + MSH % 1 + b"||||||8859/1\r", "latin-1"),  # declared after 5 KB
        (MSH % 1 + b"||||||UNICODE UTF-8\r" + b"x" * 100 + b"\xe9", "cp1252"),  # wrongly
        (MSH % 1 + b"||||||UNICODE UTF-16\r", None),
        ("MSH|^~\\&|A\r".encode("utf-16"), None),
        (b"", "utf-8"),
    ],
)
def test_file_codec_is_what_decode_bytes_picks(data: bytes, codec: str | None) -> None:
    for size in (1, 7, 1 << 20):
        assert file_codec(partial(chunked, data, size)) == codec
    assert in_pieces(data, 3) == at_once(data)


@pytest.mark.parametrize(
    ("before", "newline", "after"),
    [(b"", b"\r", b""), (b"", b"\n", b""), (b"", b"\r\n", b""), (b"\x0b", b"\r", b"\x1c\r")],
    ids=["cr", "lf", "crlf", "mllp"],
)
def test_pieces_hold_whole_messages_and_stay_small(
    before: bytes, newline: bytes, after: bytes
) -> None:
    """Each piece but the last ends where a message starts, so a file of any size is held a
    chunk and a message at a time; the pieces are the file, byte for byte."""
    messages = [before + message(n, newline=newline) + after for n in range(5000)]
    data = b"".join(messages)
    size = 4096
    pieces = list(cut_at_messages(chunked(data, size)))
    assert b"".join(pieces) == data
    assert len(pieces) > len(data) // (2 * size)
    assert max(len(p) for p in pieces) <= size + max(map(len, messages))
    for piece, following in itertools.pairwise(pieces):
        assert piece.endswith((before or newline)[-1:]) and following.startswith(b"MSH")


def test_text_before_the_first_message_is_held_until_a_message() -> None:
    """Before any message, a line starting MSH may be the first message: nothing is cut off
    ahead of it, or the lines before it would come back as a message of their own."""
    data = b"header line\r" * 100 + message(1) + message(2)
    pieces = list(cut_at_messages(chunked(data, 8)))
    assert pieces[0].startswith(b"header line") and (MSH % 1) in pieces[0]
    assert in_pieces(data, 8) == [
        message(1).rstrip(b"\r").decode(),
        message(2).rstrip(b"\r").decode(),
    ]
