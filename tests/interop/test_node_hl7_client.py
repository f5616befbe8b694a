"""node-hl7-client (npm) as the sending system: tests/interop/node/send_messages.cjs sends every
sample feed to a real `lisguard serve` over MLLP and parses the ACKs with the library's Message;
this test checks its JSON report as test_python_hl7_inbound checks python-hl7's.

The package is pinned in tests/interop/node/package.json and package-lock.json and installed with
`npm ci` into tests/interop/node/node_modules, once (again only when the lock file changes).
Skipped when Node.js or npm is missing, or when the registry cannot be reached."""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.serve_process import ServeProcess
from tests.interop.conftest import ACK_TIMEOUT, all_alerts
from tests.interop.hl7files import (
    SAMPLES,
    Ack,
    all_problems,
    declared_charset,
    decode_lenient,
    messages_of,
    sample_files,
)

NODE_DIR = Path(__file__).resolve().parent / "node"
SCRIPT = NODE_DIR / "send_messages.cjs"
STAMP = NODE_DIR / "node_modules" / ".lisguard-lock-sha256"
# a registry out of reach is told in seconds, not after npm's minute of retries
NPM_CI = ("ci", "--no-audit", "--no-fund", "--loglevel=error", "--fetch-retries=1")
NPM_CI_TIMEOUT = 300.0
SCRIPT_TIMEOUT = 180.0
# npm's words for "the registry could not be reached"
OFFLINE = re.compile(
    r"ENOTFOUND|EAI_AGAIN|ECONNREFUSED|ECONNRESET|ETIMEDOUT|ENETUNREACH|EHOSTUNREACH|"
    r"network (?:request|connectivity)|getaddrinfo|socket hang up",
    re.IGNORECASE,
)


@pytest.fixture(scope="session")
def node_client() -> Path:
    """`node` with node-hl7-client installed from the lock file; skip if that cannot be had."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip(f"Node.js and npm are needed (node: {node}, npm: {npm})")
    lock = hashlib.sha256((NODE_DIR / "package-lock.json").read_bytes()).hexdigest()
    if not (STAMP.is_file() and STAMP.read_text().strip() == lock):
        try:
            done = subprocess.run(
                [npm, *NPM_CI],
                cwd=NODE_DIR,
                capture_output=True,
                text=True,
                timeout=NPM_CI_TIMEOUT,
                check=False,
            )
        except subprocess.TimeoutExpired:
            pytest.skip(f"npm ci did not finish in {NPM_CI_TIMEOUT:.0f} s (registry unreachable?)")
        output = done.stdout + done.stderr
        if done.returncode != 0:
            if OFFLINE.search(output):
                pytest.skip(f"npm ci could not reach the npm registry: {OFFLINE.search(output)[0]}")
            pytest.fail(f"npm ci failed ({done.returncode}):\n{output[-4000:]}")
        STAMP.write_text(lock + "\n")
    return Path(node)


def job(port: int) -> tuple[dict[str, Any], list[Any]]:
    messages = messages_of(sample_files(), SAMPLES)
    items = [
        {
            "name": m.name,
            "text": decode_lenient(m.payload),
            # the client encodes a connection's messages alike: Latin-1 ones on their own
            "encoding": "latin1" if declared_charset(m.payload) == "8859/1" else "utf-8",
            "acks": len(m.expected_codes()),
        }
        for m in messages
    ]
    spec = {"host": "127.0.0.1", "port": port, "timeout_ms": int(ACK_TIMEOUT * 1000)}
    return {**spec, "messages": items}, messages


def as_ack(seen: dict[str, str]) -> Ack:
    return Ack(
        code=seen["msa_1"],
        acked_id=seen["msa_2"],
        receiving_application=seen["msh_5"],
        receiving_facility=seen["msh_6"],
        message_type=seen["msh_9_1"],
        text=json.dumps(seen),
    )


async def test_node_hl7_client_sends_every_sample(
    node_client: Path, serve: ServeProcess, tmp_path: Path
) -> None:
    spec, messages = job(serve.mllp_port)
    assert len(messages) >= 200
    assert any(i["encoding"] == "latin1" for i in spec["messages"])
    job_file = tmp_path / "job.json"
    job_file.write_text(json.dumps(spec))
    proc = await asyncio.create_subprocess_exec(
        str(node_client),
        str(SCRIPT),
        str(job_file),
        cwd=NODE_DIR,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(SCRIPT_TIMEOUT):
            out, err = await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, err.decode(errors="replace")
    report = json.loads(out)
    assert report["library"] == "node-hl7-client"
    lock = json.loads((NODE_DIR / "package-lock.json").read_text())
    assert report["version"] == lock["packages"]["node_modules/node-hl7-client"]["version"]

    results = report["results"]
    assert [r["name"] for r in results] == [m.name for m in messages]
    assert [(r["name"], r["error"]) for r in results if r["error"]] == []
    assert report["leftover_acks"] == 0
    # the library's Message gives back the text it was given: lisguard got the samples as they are
    assert [r["name"] for r in results if not r["sent_equal"]] == []
    assert all_problems(messages, [[as_ack(a) for a in r["acks"]] for r in results]) == []
    assert {a["msa_1"] for r in results for a in r["acks"]} <= {"AA", "CA"}
    assert await all_alerts(serve), "the sample feeds raise alerts"
