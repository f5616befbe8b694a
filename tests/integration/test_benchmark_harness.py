"""The benchmark harness (`make bench`) in small: its parts must keep measuring what they claim,
or a run prints a table of wrong figures. Real servers over real sockets, a few seconds in all;
nothing here asserts a speed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import run
from benchmarks.feed import FeedBuilder
from benchmarks.loadgen import framed, send_and_wait
from benchmarks.report import summarise
from benchmarks.servers import REPO, lisguard, peer


async def test_servers_are_driven_over_tcp_and_their_cost_is_read(tmp_path: Path) -> None:
    """lisguard serve (durable SQLite, the default) and the raw peer, 1 and 8 connections."""
    builder = FeedBuilder(500)
    servers = [
        lisguard(tmp_path / "lg.db", tmp_path / "lg.log"),
        peer("raw", tmp_path / "raw.log"),
    ]
    for server in servers:
        await server.start()
    try:
        for n, server in enumerate(servers):
            for connections in (1, 8):
                messages = framed(list(builder.messages(6_000, f"H{n}{connections}")))
                cpu = server.cpu_seconds()
                result = await send_and_wait(
                    server.port, messages, connections, 0.5, 0.1, cycle=server.name == "raw"
                )
                assert result.messages > 0 and result.naks == 0, (server.name, connections)
                assert server.cpu_seconds() >= cpu
            assert server.peak_rss_mb() > 0
    finally:
        for server in servers:
            await server.stop()


def test_check_is_timed_with_its_own_peak_memory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(run, "CHECK_MESSAGES", 3_000)
    figures = run.measure_check(FeedBuilder(1_000), tmp_path)
    assert figures["messages"] == 3_000 and figures["alerts"] > 0
    # structure, not speed: two timings taken apart compare at random on a shared machine
    # (wall_s > startup_s failed twice on a fresh clone)
    assert figures["wall_s"] > 0 and figures["startup_s"] > 0 and figures["msg_per_s"] > 0
    # the check process's own peak (wait4), not the test runner's or another child's
    assert 20 < figures["peak_rss_mb"] < 1_000


async def test_naive_pipeline_raises_the_alerts_lisguard_raises(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(run, "NAIVE_MESSAGES", 120)
    figures = await run.measure_naive(FeedBuilder(200))  # SystemExit if they differ
    assert figures["messages"] == 120 and figures["failed"] == 0 and figures["msg_per_s"] > 0


def test_report_marks_each_target_by_its_ratio() -> None:
    """On the committed run: every row's 'met' follows from its figures and its target."""
    results = json.loads((REPO / "benchmarks" / "results" / "latest.json").read_text())
    rows = summarise(results)
    assert any(r["measure"] == "peak RSS MB, lisguard check (100k)" for r in rows)
    for r in rows:
        target = r["target"]
        if target == "(ceiling)":
            assert r["met"] == (r["lisguard"] <= r["peer"]), r
        elif target.endswith("x") and target.startswith(">="):
            wanted = float(target[2:-1])
            assert r["ratio"] == round(r["lisguard"] / r["peer"], 2), r
            assert r["met"] == (r["lisguard"] >= wanted * r["peer"]), r
        elif target.startswith("<="):
            limit = float(target[2:].split()[0].replace(",", ""))
            assert r["met"] == (r["lisguard"] <= limit), r
        else:
            limit = float(target[2:].replace(",", ""))
            assert target.startswith(">=") and r["met"] == (r["lisguard"] >= limit), r
