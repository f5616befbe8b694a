"""`lisguard validate` and `lisguard check` on the same files, both through the command line:
the report's figures are check's (the same loop: app.screen_files). Messages counted once each,
alerts per rule, every sampled alert one check printed, unreadable and refused messages with
check's reasons, a file that cannot be read."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from lisguard.app import _file_messages
from tests.conftest import SAMPLES, corpus_files

BIN = str(Path(sys.executable).parent / "lisguard")

BAD = (
    # unreadable: no control id (ERR 101), a NUL (102), not HL7 after a good message
    b"MSH|^~\\&|LAB|H|LG|H|20260301080000||ORU^R01|||P|2.5.1\rPID|1||X1^^^H^MR\r"
    b"MSH|^~\\&|LAB|H|LG|H|20260301080100||ORU^R01|BADNUL1|P|2.5.1\rPID|1||X2\x00^^^H^MR\r"
    b"MSH|^~\\&|LAB|H|LG|H|20260301080200||ADT^A08|BAD3|P|2.5.1\rbad line\r"
    # refused: a debugging message (MSH-11 D)
    b"MSH|^~\\&|LAB|H|LG|H|20260301080300||ORU^R01|BAD4|D|2.5.1\rPID|1||X4^^^H^MR\r"
)


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([BIN, *args], capture_output=True, text=True, timeout=300)


def test_validate_reports_what_check_prints(tmp_path: Path) -> None:
    corpus = corpus_files()[0].parent
    extra = tmp_path / "extra"
    extra.mkdir()
    (extra / "bad.hl7").write_bytes(BAD)
    out = tmp_path / "report"
    proc = run("validate", str(SAMPLES), str(corpus), str(extra), "--out", str(out),
               "--sample", "5")
    assert proc.returncode == 0, proc.stderr
    assert "report.html" in proc.stdout
    report: dict[str, Any] = json.loads((out / "report.json").read_text())
    assert (out / "report.html").stat().st_size > 10_000
    files = [f["path"] for f in report["inputs"]["files"]]
    assert len(files) == len(list(SAMPLES.rglob("*.hl7"))) + len(corpus_files()) + 1
    assert all(not f.endswith((".yaml", ".md")) for f in files)

    checked = run("check", *files)
    assert checked.returncode == 0, checked.stderr
    alerts = [json.loads(line) for line in checked.stdout.splitlines()]
    errors = [json.loads(line) for line in checked.stderr.splitlines()]

    # messages: each one the reader gives, counted once, per file
    per_file = {f: sum(1 for _ in _file_messages(Path(f))) for f in files}
    assert report["messages"]["per_file"] == per_file
    assert report["messages"]["total"] == sum(per_file.values())
    assert sum(report["messages"]["by_outcome"].values()) == report["messages"]["total"]
    assert sum(d["count"] for d in report["messages"]["by_day"]) == report["messages"]["total"]

    # alerts per rule, and every sample one of check's alerts, field for field
    by_rule = Counter(a["rule"] for a in alerts)
    assert {r: n for r, n in report["alerts"]["by_rule"].items() if n} == dict(by_rule)
    assert report["alerts"]["total"] == len(alerts)
    printed = {a["id"]: a for a in alerts}
    for rule, group in report["alerts"]["samples"].items():
        assert group["alerts"] == by_rule[rule]
        assert len(group["sampled"]) == min(5, by_rule[rule])
        for sample in group["sampled"]:
            alert = printed[sample["alert"]["id"]]
            expected = {k: v for k, v in alert.items() if k not in ("patient_name", "birth_date")}
            assert sample["alert"] == expected

    # unreadable and refused: check's reasons, counted alike
    from_check = Counter((e["outcome"], e["error"]) for e in errors if "outcome" in e)
    from_report = Counter(
        {(p["outcome"], p["reason"]): p["count"] for p in report["problems"]["messages"]}
    )
    assert from_report == from_check
    assert report["messages"]["by_outcome"]["error"] == 3
    outcomes = {(p["outcome"], p["ack"], p["code"]) for p in report["problems"]["messages"]}
    assert {("error", "AE", "101"), ("error", "AE", "102"), ("rejected", "AR", "202")} <= outcomes
    assert report["problems"]["files"] == []


def test_a_file_that_cannot_be_read_is_in_the_report_and_exits_1(tmp_path: Path) -> None:
    good = SAMPLES / "01-baseline-workup" / "01-rde-o11-daratumumab-sc.hl7"
    missing = tmp_path / "missing.hl7"
    out = tmp_path / "report"
    proc = run("validate", str(good), str(missing), "--out", str(out))
    checked = run("check", str(good), str(missing))
    assert proc.returncode == checked.returncode == 1
    report = json.loads((out / "report.json").read_text())
    assert report["problems"]["files"] == [
        {"file": str(missing), "error": json.loads(checked.stderr)["error"]}
    ]
    assert report["alerts"]["by_rule"]["baseline-workup"] == 1


def test_the_same_seed_draws_the_same_samples(tmp_path: Path) -> None:
    def samples(seed: str, name: str) -> dict[str, list[str]]:
        out = tmp_path / name
        proc = run("validate", str(SAMPLES), "--out", str(out), "--sample", "2", "--seed", seed)
        assert proc.returncode == 0, proc.stderr
        report = json.loads((out / "report.json").read_text())
        return {
            rule: [s["alert"]["id"] for s in group["sampled"]]
            for rule, group in report["alerts"]["samples"].items()
        }

    first, again, other = samples("11", "a"), samples("11", "b"), samples("12", "c")
    assert first == again
    assert first != other  # 2 of 49 baseline alerts: another seed draws others


def test_bad_arguments_are_refused(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "README.md").write_text("not a feed")
    proc = run("validate", str(empty), "--out", str(tmp_path / "r"))
    assert proc.returncode == 2
    assert "no feed file found" in json.loads(proc.stderr)["error"]
    proc = run("validate", str(SAMPLES), "--out", str(tmp_path / "r"), "--sample", "-1")
    assert proc.returncode == 2
    assert not (tmp_path / "r").exists()


def test_both_take_the_sites_ingest_settings(tmp_path: Path) -> None:
    # a site that takes its test system's messages (MSH-11 T): neither refuses them
    corpus = corpus_files()[0].parent
    cfg = tmp_path / "lisguard.yaml"
    cfg.write_text("ingest:\n  processing_ids: [P, T]\n")
    out = tmp_path / "report"
    proc = run("validate", "--config", str(cfg), str(corpus), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    report = json.loads((out / "report.json").read_text())
    checked = run("check", "--config", str(cfg), *map(str, corpus_files()))
    assert checked.returncode == 0
    assert checked.stderr == ""
    assert report["messages"]["by_outcome"]["rejected"] == 0
    assert report["problems"]["messages"] == []
    assert report["sign_off"]["configuration"]["file_sha256"]
