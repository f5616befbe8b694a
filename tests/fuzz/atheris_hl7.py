"""Coverage-guided fuzzing (atheris/libFuzzer) of the HL7 reader and the MLLP framer.

Run by `make fuzz` (bounded by -runs=N); by hand:
    .venv/bin/python tests/fuzz/atheris_hl7.py -runs=100000 -max_len=65536 [corpus_dir ...]
Seeds: the public corpus and hl7_samples. Any exception other than HL7ReadError is a finding
(libFuzzer saves the input as crash-*).
"""

from __future__ import annotations

import sys
from pathlib import Path

import atheris

with atheris.instrument_imports():
    from lisguard.hl7v2.ack import peek_header
    from lisguard.hl7v2.clinical import to_clinical
    from lisguard.hl7v2.framing import decode_bytes, split_messages
    from lisguard.hl7v2.reader import HL7ReadError, parse
    from lisguard.transport.frames import Frame, MllpFramer, Oversize

ROOT = Path(__file__).resolve().parents[2]


def one_input(data: bytes) -> None:
    # the framer: cut the input in two at a byte the input chooses, events must match
    cut = data[0] % (len(data) + 1) if data else 0
    whole = MllpFramer(4096).feed(data)
    halves = MllpFramer(4096)
    pieces = halves.feed(data[:cut]) + halves.feed(data[cut:])
    frames = [e for e in whole if isinstance(e, Frame | Oversize)]
    if frames != [e for e in pieces if isinstance(e, Frame | Oversize)]:
        raise AssertionError("framer events depend on where the stream was cut")
    # the reader
    text = decode_bytes(data)
    peek_header(text)
    for piece in split_messages(text):
        peek_header(piece)
        try:
            message = parse(piece)
        except HL7ReadError:
            continue
        to_clinical(message)


def seeds() -> list[str]:
    dirs = [ROOT.parent / "shared" / "corpus" / "fhir-converter-hl7v2", ROOT / "hl7_samples"]
    return [str(d) for d in dirs if d.is_dir()]


def main() -> None:
    args = sys.argv + [a for a in seeds() if a not in sys.argv]
    atheris.Setup(args, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
