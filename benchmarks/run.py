"""lisguard against its peers, in one run, on one feed: `make bench` (or `python -m benchmarks.run`).

Environment: BENCH_SECONDS (measuring time per throughput phase, default 6), BENCH_FULL=1 (the
cost-growth run with 1,000,000 stored messages instead of 200,000; adds a few minutes),
BENCH_SYNCHRONOUS (FULL or NORMAL: force the SQLite mode instead of the store's default),
BENCH_OUT (results directory, default benchmarks/results).
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lisguard.domain.knowledge import load_knowledge_base

from benchmarks import naive
from benchmarks.feed import FeedBuilder
from benchmarks.loadgen import Result, framed, offered_load, send_and_wait
from benchmarks.prefill import prefill
from benchmarks.servers import BIN, REPO, Server, lisguard, peer

SECONDS = float(os.environ.get("BENCH_SECONDS", "6"))
FULL = os.environ.get("BENCH_FULL", "") not in ("", "0")
SYNCHRONOUS = os.environ.get("BENCH_SYNCHRONOUS") or None
OUT = Path(os.environ.get("BENCH_OUT", REPO / "benchmarks" / "results"))
PATIENTS = 20_000
MAX_RATE = 9_000  # messages generated per lisguard phase: more than it can take in SECONDS
CHECK_MESSAGES = 100_000
NAIVE_MESSAGES = 300
LATENCY_RATE = 1_000


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _phase(result: Result, cpu: float | None = None) -> dict[str, Any]:
    """`cpu`: server CPU seconds used over the phase (warm-up and drain included), reported per
    message: unlike a rate, it hardly moves when other work shares the machine."""
    extra = {} if cpu is None else {"server_cpu_us_per_msg": round(cpu / result.total * 1e6, 1)}
    return {
        **extra,
        "msg_per_s": round(result.rate, 1),
        "messages": result.messages,
        "seconds": round(result.seconds, 2),
        "naks": result.naks,
        "p50_ms": round(result.p50_ms, 3),
        "p99_ms": round(result.p99_ms, 3),
        "max_ms": round(result.max_ms, 3),
    }


def _require_acks(name: str, result: Result) -> None:
    if result.naks:
        raise SystemExit(f"{name}: {result.naks} negative ACKs, first: {result.first_nak!r}")


async def measure_lisguard(builder: FeedBuilder, work: Path) -> dict[str, Any]:
    server = lisguard(work / "lisguard.db", work / "lisguard.log", synchronous=SYNCHRONOUS)
    await server.start()
    try:
        per_phase = int(MAX_RATE * (SECONDS + 1))
        out: dict[str, Any] = {}
        for conns, tag in ((1, "A"), (8, "B")):
            say(f"lisguard: {conns} connection(s), send-and-wait, {SECONDS:.0f} s")
            msgs = framed(builder.messages(per_phase, tag))
            cpu = server.cpu_seconds()
            result = await send_and_wait(server.port, msgs, conns, SECONDS)
            _require_acks("lisguard", result)
            out[f"conn{conns}"] = _phase(result, server.cpu_seconds() - cpu)
            say(f"  {result.rate:,.0f} msg/s, p99 {result.p99_ms:.2f} ms")
        say(f"lisguard: {LATENCY_RATE} msg/s offered over 4 connections, {SECONDS:.0f} s")
        msgs = framed(builder.messages(int(LATENCY_RATE * SECONDS), "C"))
        cpu = server.cpu_seconds()
        result = await offered_load(server.port, msgs, LATENCY_RATE, SECONDS)
        _require_acks("lisguard", result)
        out["offered_1000"] = _phase(result, server.cpu_seconds() - cpu)
        out["peak_rss_mb"] = round(server.peak_rss_mb(), 1)
        return out
    finally:
        await server.stop()


async def measure_peer(kind: str, messages: list[bytes], work: Path) -> dict[str, Any]:
    server = peer(kind, work / f"{kind}.log")
    await server.start()
    try:
        out: dict[str, Any] = {}
        for conns in (1, 8):
            say(f"{kind}: {conns} connection(s), send-and-wait, {SECONDS:.0f} s")
            # peers store nothing, so the feed may come round again
            cpu = server.cpu_seconds()
            result = await send_and_wait(server.port, messages * 40, conns, SECONDS)
            _require_acks(kind, result)
            out[f"conn{conns}"] = _phase(result, server.cpu_seconds() - cpu)
            say(f"  {result.rate:,.0f} msg/s")
        out["peak_rss_mb"] = round(server.peak_rss_mb(), 1)
        return out
    finally:
        await server.stop()


def measure_check(builder: FeedBuilder, work: Path) -> dict[str, Any]:
    """`lisguard check` over one 100k-message file, pinned to one CPU."""
    path = work / "feed-100k.hl7"
    with path.open("w", encoding="utf-8") as f:
        for text in builder.messages(CHECK_MESSAGES, "K"):
            f.write(text.replace("\r", "\n"))
    one = work / "one.hl7"
    one.write_text(next(iter(builder.messages(1, "K"))), encoding="utf-8")
    cpu = max(os.sched_getaffinity(0))

    def run(file: Path) -> tuple[float, int]:
        started = time.perf_counter()
        done = subprocess.run(
            [str(BIN / "lisguard"), "check", str(file)],
            capture_output=True,
            check=False,
            preexec_fn=lambda: os.sched_setaffinity(0, {cpu}),
        )
        if done.returncode != 0:
            raise SystemExit(f"lisguard check failed: {done.stderr.decode()[:500]}")
        return time.perf_counter() - started, done.stdout.count(b"\n")

    say(f"lisguard check: {CHECK_MESSAGES:,} messages in one file, one CPU")
    startup, _ = run(one)
    wall, alerts = run(path)
    return {
        "messages": CHECK_MESSAGES,
        "wall_s": round(wall, 2),
        "startup_s": round(startup, 2),
        "msg_per_s": round(CHECK_MESSAGES / max(wall - startup, 1e-6), 1),
        "msg_per_s_with_startup": round(CHECK_MESSAGES / wall, 1),
        "alerts": alerts,
    }


async def measure_growth(work: Path) -> dict[str, Any]:
    """Throughput (8 connections) on databases that already hold many messages or patients."""
    big = 1_000_000 if FULL else 200_000
    cases = (
        ("stored_10k", 10_000, 10_000, 10_000),
        (f"stored_{big // 1000}k", big, 10_000, 10_000),
        ("patients_1k", 10_000, 1_000, 1_000),
        ("patients_100k", 10_000, 100_000, 100_000),
    )
    out: dict[str, Any] = {}
    for name, messages, patients, feed_patients in cases:
        db = work / f"{name}.db"
        say(f"growth {name}: prefilling {messages:,} messages, {patients:,} patients")
        started = time.perf_counter()
        await asyncio.to_thread(prefill, db, messages, patients, feed_patients=feed_patients)
        fill_s = time.perf_counter() - started
        server = lisguard(db, work / f"{name}.log", synchronous=SYNCHRONOUS)
        await server.start()
        try:
            builder = FeedBuilder(feed_patients)
            msgs = framed(builder.messages(int(MAX_RATE * (SECONDS + 1)), "G"))
            say(f"growth {name}: 8 connections, {SECONDS:.0f} s")
            cpu = server.cpu_seconds()
            result = await send_and_wait(server.port, msgs, 8, SECONDS)
            _require_acks("lisguard", result)
            used = server.cpu_seconds() - cpu
            out[name] = {**_phase(result, used), "prefill_s": round(fill_s, 1)}
        finally:
            await server.stop()
            for f in work.glob(f"{name}.db*"):
                f.unlink()
    return out


def ratio(a: float, b: float) -> float:
    return round(a / b, 2) if b else 0.0


def summarise(r: dict[str, Any]) -> list[dict[str, Any]]:
    lg, hl7, raw = r["lisguard"], r["python_hl7"], r["raw"]
    growth = r["growth"]
    stored = [k for k in growth if k.startswith("stored_")]
    rows = []

    def row(measure: str, ours: float, theirs: float | None, target: str, ok: bool) -> None:
        rows.append(
            {
                "measure": measure,
                "lisguard": ours,
                "peer": theirs,
                "ratio": ratio(ours, theirs) if theirs else None,
                "target": target,
                "met": ok,
            }
        )

    for c in (1, 8):
        ours = lg[f"conn{c}"]["msg_per_s"]
        theirs = hl7[f"conn{c}"]["msg_per_s"]
        row(f"msg/s, {c} conn, vs python-hl7 ACK-only", ours, theirs, ">= 2.0x", ours >= 2 * theirs)
    for c in (1, 8):
        ours = lg[f"conn{c}"]["msg_per_s"]
        theirs = raw[f"conn{c}"]["msg_per_s"]
        row(f"msg/s, {c} conn, vs raw fixed ACK", ours, theirs, ">= 0.15x", ours >= 0.15 * theirs)
    ours = lg["conn1"]["msg_per_s"]
    theirs = r["naive_hl7apy"]["msg_per_s"]
    row("msg/s, 1 conn, vs naive hl7apy pipeline", ours, theirs, ">= 30x", ours >= 30 * theirs)
    p99 = lg["offered_1000"]["p99_ms"]
    row("p99 ACK ms at 1,000 msg/s offered", p99, None, "<= 10 ms", p99 <= 10)
    check = r["check"]["msg_per_s"]
    row("lisguard check msg/s, one CPU", check, None, ">= 20,000", check >= 20_000)
    rss = lg["peak_rss_mb"]
    row("peak RSS MB (serve)", rss, None, "<= 200", rss <= 200)
    small, large = growth[stored[0]]["msg_per_s"], growth[stored[1]]["msg_per_s"]
    row(f"msg/s {stored[1]} vs {stored[0]}", large, small, ">= 0.8x", large >= 0.8 * small)
    few, many = growth["patients_1k"]["msg_per_s"], growth["patients_100k"]["msg_per_s"]
    row("msg/s patients_100k vs patients_1k", many, few, ">= 0.8x", many >= 0.8 * few)
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    head = f"{'measure':<46} {'lisguard':>10} {'peer':>10} {'ratio':>7}  {'target':<10} met"
    lines = [head, "-" * len(head)]
    for r in rows:
        peer_text = "" if r["peer"] is None else f"{r['peer']:>10,.1f}"
        ratio_text = "" if r["ratio"] is None else f"{r['ratio']:>6.2f}x"
        lines.append(
            f"{r['measure']:<46} {r['lisguard']:>10,.1f} {peer_text:>10} {ratio_text:>7}  "
            f"{r['target']:<10} {'yes' if r['met'] else 'NO'}"
        )
    return "\n".join(lines)


async def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="lisguard-bench-"))
    started = time.perf_counter()
    try:
        builder = FeedBuilder(PATIENTS)
        results: dict[str, Any] = {
            "when": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": {
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
                "platform": platform.platform(),
                "load_average_at_start": os.getloadavg(),
            },
            "settings": {
                "seconds_per_phase": SECONDS,
                "patients": PATIENTS,
                "synchronous": SYNCHRONOUS or "store default",
                "full": FULL,
            },
        }
        results["lisguard"] = await measure_lisguard(builder, work)
        sample = list(builder.messages(2_000, "A"))  # what lisguard got first
        for kind, key in (("hl7", "python_hl7"), ("raw", "raw")):
            results[key] = await measure_peer(kind, framed(sample), work)
        say(f"naive hl7apy pipeline: {NAIVE_MESSAGES} messages")
        rate, alerts, failed = naive.run(sample[:NAIVE_MESSAGES], load_knowledge_base())
        results["naive_hl7apy"] = {"msg_per_s": round(rate, 1), "alerts": alerts, "failed": failed}
        results["check"] = measure_check(builder, work)
        results["growth"] = await measure_growth(work)
        results["summary"] = summarise(results)
        results["total_s"] = round(time.perf_counter() - started, 1)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    OUT.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    text = json.dumps(results, indent=2)
    (OUT / f"bench-{stamp}.json").write_text(text + "\n")
    (OUT / "latest.json").write_text(text + "\n")
    print(table(results["summary"]))
    lg = results["lisguard"]
    print(
        f"\nlisguard at {LATENCY_RATE} msg/s: p50 {lg['offered_1000']['p50_ms']:.2f} ms,"
        f" p99 {lg['offered_1000']['p99_ms']:.2f} ms; check {results['check']['wall_s']} s wall"
        f" for {CHECK_MESSAGES:,} messages; total {results['total_s']} s;"
        f" written to {OUT / f'bench-{stamp}.json'}"
    )


if __name__ == "__main__":
    asyncio.run(main())
