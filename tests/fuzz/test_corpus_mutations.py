"""Every message of the public corpus, mutated (truncated, bits flipped, segments shuffled, all
three), sent over MLLP to a running service: each one is answered, and the connection stays in
step (a known-good message after the mutants gets its own ACK, not a stale one)."""

from __future__ import annotations

import random

from lisguard.app import Service
from lisguard.hl7v2.ack import acknowledged, peek_header
from lisguard.hl7v2.framing import decode_bytes, split_messages
from lisguard.transport.mllp import MllpClient, msa_code
from tests.conftest import corpus_files
from tests.fuzz.common import ROUNDS, mutations

ANSWERS = {"AA", "AE", "AR", "CA", "CE", "CR"}


def probe(n: int) -> bytes:
    return (
        f"MSH|^~\\&|FUZZ|HOSP|LISGUARD|BB|20260301||ORM^O01|PROBE{n}|P|2.5.1\r"
        f"PID|1||FZ{n}^^^HOSP^MR\rORC|NW|FZ{n}\rOBR|1|FZ{n}||2345-7^Glucose^LN\r"
    ).encode()


async def test_every_corpus_file_mutated_still_gets_an_ack(service: Service) -> None:
    files = corpus_files()
    sent = 0
    outcomes: dict[str, int] = {}
    for n, path in enumerate(files):
        messages = [t.encode() for t in split_messages(decode_bytes(path.read_bytes()))]
        assert messages, path
        async with MllpClient("127.0.0.1", service.mllp_port or 0, timeout=30) as client:
            for index, message in enumerate(messages):
                for round_ in range(ROUNDS):
                    rng = random.Random(f"{path.name}:{index}:{round_}")
                    for name, mutant in mutations(message, rng):
                        acks = await client.exchange(mutant)
                        codes = [msa_code(a) for a in acks]
                        sent += 1
                        if not codes:  # MSH-15/16 asked for none (NE; ER on success)
                            header = peek_header(mutant.decode("utf-8", "replace"))
                            assert header is not None, (path.name, name)
                            assert not acknowledged(header, ok=True), (path.name, name)
                            continue
                        assert set(codes) <= ANSWERS, (path.name, name, acks)
                        outcomes[codes[-1]] = outcomes.get(codes[-1], 0) + 1
            ack = await client.send(probe(n))
            assert f"MSA|AA|PROBE{n}" in ack, (path.name, ack)
    assert sent >= len(files) * 4 * ROUNDS
    assert {"AA", "AE"} <= set(outcomes)  # both readable and unreadable mutants were made
