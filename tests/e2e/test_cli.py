"""The commands as a user runs them: check, check-config, send."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from lisguard.app import Service
from tests.conftest import SAMPLES, corpus_files

BIN = str(Path(sys.executable).parent / "lisguard")


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([BIN, *args], capture_output=True, text=True, timeout=120, env=env)


def test_check_over_the_corpus_raises_no_alert() -> None:
    files = corpus_files()
    assert len(files) == 139
    proc = run("check", *map(str, files))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""
    # the corpus's messages from test systems (MSH-11 T) are refused, as serve refuses them
    errors = [json.loads(line) for line in proc.stderr.splitlines()]
    assert errors, "the corpus has MSH-11 T messages"
    for error in errors:
        assert error["outcome"] == "rejected"
        assert error["error"].startswith("MSH-11 processing id 'T' (training/test) refused")


def test_check_prints_one_json_alert_per_line() -> None:
    proc = run("check", *map(str, sorted((SAMPLES / "03-rxa-then-type-and-screen").glob("*.hl7"))))
    assert proc.returncode == 0, proc.stderr
    alerts = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [a["rule"] for a in alerts] == ["baseline-workup", "bb-serology"]
    for alert in alerts:
        assert {"rule", "patient", "message", "recommendations", "severity", "text"} <= set(alert)


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"", "no HL7 message found"),
        (bytes(range(256)) * 4, "MSH"),
        (b"MSH|^~", "MSH"),
        (b"MSH|^~\\&|A|B|C|D|2026||ORM^O01|U1|P|2.5|||||||UNKNOWN-CHARSET\rPID|1||X\r\xff\xfe", ""),
        (b"MSH|^~\\&|A|B\rPID|1||1\rZZ\r", ""),
    ],
)
def test_check_reports_bad_input_and_continues(tmp_path: Path, content: bytes, reason: str) -> None:
    bad = tmp_path / "bad.hl7"
    bad.write_bytes(content)
    good = SAMPLES / "01-baseline-workup" / "01-rde-o11-daratumumab-sc.hl7"
    proc = run("check", str(bad), str(good))
    assert proc.returncode == 0
    assert [json.loads(x)["rule"] for x in proc.stdout.splitlines()] == ["baseline-workup"]
    errors = [json.loads(line) for line in proc.stderr.splitlines()]
    for error in errors:
        assert error["file"] == str(bad)
        assert reason in error["error"]
    if reason:
        assert errors, "a bad file must be reported"


def test_check_missing_file_is_reported_with_nonzero_exit(tmp_path: Path) -> None:
    proc = run("check", str(tmp_path / "missing.hl7"))
    assert proc.returncode == 1
    assert "cannot read" in json.loads(proc.stderr)["error"]


def test_check_config_prints_effective_settings_without_secrets(tmp_path: Path) -> None:
    cfg = tmp_path / "lisguard.yaml"
    cfg.write_text(
        "mllp:\n  port: 3575\nstore:\n  url: postgresql://lg:s3cret@db.example/lisguard\n"
    )
    proc = run("check-config", "--config", str(cfg), env={"LISGUARD_HTTP__PORT": "9090"})
    assert proc.returncode == 0, proc.stderr
    shown = json.loads(proc.stdout)
    assert shown["mllp"]["port"] == 3575
    assert shown["http"]["port"] == 9090  # environment overrides
    assert "s3cret" not in proc.stdout
    assert shown["store"]["url"] == "postgresql://lg:***@db.example/lisguard"


def test_check_config_names_the_bad_key(tmp_path: Path) -> None:
    cfg = tmp_path / "lisguard.yaml"
    cfg.write_text("mllp:\n  prot: 3575\n")
    proc = run("check-config", "--config", str(cfg))
    assert proc.returncode == 2
    assert "prot" in proc.stderr


def test_check_config_names_a_bad_knowledge_file(tmp_path: Path) -> None:
    site = tmp_path / "site.yaml"
    site.write_text("default_window_months: soon\n")
    cfg = tmp_path / "lisguard.yaml"
    cfg.write_text("knowledge:\n  files: [site.yaml]\n")
    proc = run("check-config", "--config", str(cfg))
    assert proc.returncode == 2
    assert "site.yaml" in proc.stderr and "default_window_months" in proc.stderr


def test_send_to_nobody_is_a_clear_error() -> None:
    proc = run("send", "--port", "1", "--timeout", "2", str(SAMPLES / "README.md"))
    assert proc.returncode == 1
    assert "error" in json.loads(proc.stderr.splitlines()[-1])


async def test_send_prints_each_ack(service: Service) -> None:
    files = sorted((SAMPLES / "01-baseline-workup").glob("*.hl7"))
    proc = await asyncio.create_subprocess_exec(
        BIN,
        "send",
        "--port",
        str(service.mllp_port),
        *map(str, files),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    lines = out.decode().splitlines()
    # the samples ask for a commit ACK only (MSH-15 AL, MSH-16 NE)
    assert len(lines) == 2
    assert all("MSA|CA|" in line for line in lines), lines


def test_check_reads_a_pipe(tmp_path: Path) -> None:
    """`lisguard check <(zcat day.hl7.gz)`: a pipe can be read only once (a regular file is read
    twice, to settle its character set first); it must give what the file gives."""
    sample = SAMPLES / "03-rxa-then-type-and-screen"
    data = b"".join(p.read_bytes() for p in sorted(sample.glob("*.hl7")))
    whole = tmp_path / "feed.hl7"
    whole.write_bytes(data)
    fifo = tmp_path / "feed.pipe"
    os.mkfifo(fifo)

    def feed() -> None:
        with fifo.open("wb") as pipe:
            pipe.write(data)

    writer = threading.Thread(target=feed)
    writer.start()
    try:
        piped = run("check", str(fifo))
    finally:
        writer.join(timeout=30)
    from_file = run("check", str(whole))
    assert piped.returncode == from_file.returncode == 0, piped.stderr
    assert piped.stdout == from_file.stdout and piped.stdout.count("\n") == 2
    assert piped.stderr == from_file.stderr == ""
