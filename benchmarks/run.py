"""lisguard against its peers, in one run, on one feed: `make bench` (python -m benchmarks.run).

Servers under test run side by side and are measured in interleaved slices (lisguard, python-hl7,
raw, lisguard, ...), so a burst of other work on this shared machine lands on all of them alike;
each figure sums its slices. Server and load generator are pinned to different CPUs
(benchmarks/servers.py says why).

Environment: BENCH_SECONDS (measured seconds per server and connection count, default 6, split
over BENCH_ROUNDS slices, default 3), BENCH_FULL=1 (cost growth with 1,000,000 stored messages
instead of 200,000: a few minutes more), BENCH_SYNCHRONOUS (FULL or NORMAL instead of the store's
default), BENCH_PIN=0 (no CPU pinning), BENCH_OUT (results directory, default
benchmarks/results), BENCH_BASELINE=TREE (also measure another source tree's lisguard, e.g. the
code before a change, side by side: see benchmarks/baseline.py).
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
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks import naive
from benchmarks.feed import FeedBuilder
from benchmarks.loadgen import Result, framed, merge, offered_load, send_and_wait
from benchmarks.prefill import prefill
from benchmarks.report import summarise, table
from benchmarks.servers import BIN, REPO, Server, lisguard, peer, pin_load_generator
from lisguard.domain.knowledge import load_knowledge_base
from lisguard.services import Ingestor
from lisguard.store.memory import MemoryStore

SECONDS = float(os.environ.get("BENCH_SECONDS", "6"))
ROUNDS = max(1, int(os.environ.get("BENCH_ROUNDS", "3")))
FULL = os.environ.get("BENCH_FULL", "") not in ("", "0")
SYNCHRONOUS = os.environ.get("BENCH_SYNCHRONOUS") or None
OUT = Path(os.environ.get("BENCH_OUT", REPO / "benchmarks" / "results"))
BASELINE = Path(os.environ["BENCH_BASELINE"]) if os.environ.get("BENCH_BASELINE") else None
PATIENTS = 20_000
MAX_RATE = 6_000  # lisguard messages generated per second of a slice: more than it takes
WARMUP = 0.3
CHECK_MESSAGES = 100_000
NAIVE_MESSAGES = 300
LATENCY_RATE = 1_000
REFERENCE_PEER_8 = 1_700  # python-hl7 msg/s with 8 connections when the targets were set


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _phase(result: Result, cpu: float) -> dict[str, Any]:
    """`cpu`: server CPU seconds over the measurement (warm-ups and drains included), reported
    per message: unlike a rate it hardly moves when other work shares the machine."""
    return {
        "msg_per_s": round(result.rate, 1),
        "server_cpu_us_per_msg": round(cpu / max(result.total, 1) * 1e6, 1),
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


class Contender:
    """A server and what it is fed: lisguard gets messages never sent before (a resend would be
    answered from the store as a duplicate); the peers store nothing and get the feed again."""

    def __init__(self, name: str, server: Server, feed: FeedBuilder | Sequence[bytes]) -> None:
        self.name, self.server, self.feed = name, server, feed
        self.slices: list[Result] = []
        self.cpu = 0.0
        self._tags = 0

    def messages(self, seconds: float) -> tuple[Sequence[bytes], bool]:
        if isinstance(self.feed, FeedBuilder):
            self._tags += 1
            count = int(MAX_RATE * (seconds + WARMUP + 1))
            return framed(self.feed.messages(count, f"{self.name[:2].upper()}{self._tags}")), False
        return self.feed, True

    async def slice(self, connections: int, seconds: float) -> None:
        messages, cycle = self.messages(seconds)
        cpu = self.server.cpu_seconds()
        result = await send_and_wait(
            self.server.port, messages, connections, seconds, WARMUP, cycle=cycle
        )
        self.cpu += self.server.cpu_seconds() - cpu
        _require_acks(self.name, result)
        self.slices.append(result)

    def figure(self) -> dict[str, Any]:
        out = _phase(merge(self.slices), self.cpu)
        out["per_slice_msg_per_s"] = [round(r.rate, 1) for r in self.slices]
        self.slices, self.cpu = [], 0.0
        return out


async def interleaved(contenders: list[Contender], label: str) -> dict[str, dict[str, Any]]:
    """Throughput with 1 and 8 connections, send-and-wait, in ROUNDS interleaved slices."""
    out: dict[str, dict[str, Any]] = {c.name: {} for c in contenders}
    for connections in (1, 8):
        say(f"{label}: {connections} connection(s), {ROUNDS} rounds of {SECONDS / ROUNDS:.1f} s")
        for _ in range(ROUNDS):
            for c in contenders:
                await c.slice(connections, SECONDS / ROUNDS)
        for c in contenders:
            out[c.name][f"conn{connections}"] = figure = c.figure()
            slices = figure["per_slice_msg_per_s"]
            say(f"  {c.name:<14} {figure['msg_per_s']:>9,.0f} msg/s  {slices}")
    return out


async def measure_servers(builder: FeedBuilder, work: Path) -> dict[str, Any]:
    sample = framed(list(builder.messages(2_000, "A")))  # the peers' feed: what lisguard got first
    servers = [
        Contender(
            "lisguard",
            lisguard(work / "lisguard.db", work / "lisguard.log", synchronous=SYNCHRONOUS),
            builder,
        ),
        Contender("python_hl7", peer("hl7", work / "hl7.log"), sample),
        Contender("raw", peer("raw", work / "raw.log"), sample),
    ]
    if SYNCHRONOUS is None:  # the default (FULL) and the setting that survives a crash only
        normal = lisguard(work / "normal.db", work / "normal.log", synchronous="NORMAL")
        servers.insert(1, Contender("lisguard_normal", normal, builder))
    if BASELINE is not None:
        before = lisguard(work / "before.db", work / "before.log", tree=BASELINE)
        servers.insert(1, Contender("lisguard_before", before, builder))
    for c in servers:
        await c.server.start()
    try:
        out = await interleaved(servers, "throughput")
        lg = servers[0].server
        say(f"lisguard: {LATENCY_RATE} msg/s offered over 4 connections, {SECONDS:.0f} s")
        msgs = framed(builder.messages(int(LATENCY_RATE * SECONDS), "LAT"))
        cpu = lg.cpu_seconds()
        result = await offered_load(lg.port, msgs, LATENCY_RATE, SECONDS)
        _require_acks("lisguard", result)
        out["lisguard"]["offered_1000"] = _phase(result, lg.cpu_seconds() - cpu)
        for c in servers:
            out[c.name]["peak_rss_mb"] = round(c.server.peak_rss_mb(), 1)
        return out
    finally:
        for c in servers:
            await c.server.stop()


def measure_disk(work: Path, seconds: float = 2.0) -> dict[str, Any]:
    """What one fsync costs on the disk the store is on: 16 KB written where a WAL would write
    it, then fdatasync, in a loop. With one connection sending and waiting, a store that makes
    every ACKed message survive a power cut cannot ACK faster than this."""
    path = work / "fsync.probe"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        os.ftruncate(fd, 8 << 20)
        os.fsync(fd)
        block, offset, count = b"w" * 16384, 0, 0
        started = time.perf_counter()
        while time.perf_counter() - started < seconds:
            os.pwrite(fd, block, offset)
            os.fdatasync(fd)
            offset = (offset + len(block)) % (8 << 20)
            count += 1
        elapsed = time.perf_counter() - started
    finally:
        os.close(fd)
        path.unlink()
    return {"fdatasync_per_s": round(count / elapsed, 1), "us_each": round(elapsed / count * 1e6)}


async def measure_naive(builder: FeedBuilder) -> dict[str, Any]:
    """The hl7apy pipeline on the first messages lisguard got, and the alerts lisguard's own
    pipeline raises on them: the two must agree, or the comparison is not of like with like."""
    sample = list(builder.messages(NAIVE_MESSAGES, "A"))
    kb = load_knowledge_base()
    say(f"naive hl7apy pipeline: {NAIVE_MESSAGES} messages")
    rate, alerts, failed = naive.run(sample, kb)
    ingestor = Ingestor(MemoryStore(), kb)
    await ingestor.store.open()
    ours = 0
    for text in sample:
        ours += len((await ingestor.ingest(text.encode(), text=text)).alerts)
    if ours != alerts:
        raise SystemExit(f"naive pipeline raised {alerts} alerts, lisguard {ours}: not comparable")
    return {
        "msg_per_s": round(rate, 1),
        "messages": len(sample),
        "alerts": alerts,
        "failed": failed,
    }


def measure_check(builder: FeedBuilder, work: Path) -> dict[str, Any]:
    """`lisguard check` over one 100k-message file, pinned to one CPU."""
    path = work / "feed-100k.hl7"
    with path.open("w", encoding="utf-8") as f:
        for text in builder.messages(CHECK_MESSAGES, "K"):
            f.write(text.replace("\r", "\n"))
    one = work / "one.hl7"
    one.write_text(next(iter(builder.messages(1, "K"))), encoding="utf-8")
    cpu = max(os.sched_getaffinity(0))

    def run(file: Path, tree: Path | None = None) -> tuple[float, int, float]:
        """(wall seconds, alerts, peak RSS in MB) of one `lisguard check`."""
        started = time.perf_counter()
        command = [str(BIN / "lisguard"), "check", str(file)]
        if tree is not None:
            command = [sys.executable, "-m", "benchmarks.baseline", str(tree), "check", str(file)]
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            proc = subprocess.Popen(
                command,
                cwd=REPO,
                stdout=out,
                stderr=err,
                preexec_fn=lambda: os.sched_setaffinity(0, {cpu}),
            )
            # wait4: this child's own rusage (RUSAGE_CHILDREN would mix in the servers')
            _, status, usage = os.wait4(proc.pid, 0)
            proc.returncode = os.waitstatus_to_exitcode(status)
            wall = time.perf_counter() - started
            if proc.returncode != 0:
                err.seek(0)
                raise SystemExit(f"lisguard check failed: {err.read(500).decode()}")
            out.seek(0)
            alerts = out.read().count(b"\n")
        return wall, alerts, round(usage.ru_maxrss / 1024, 1)  # ru_maxrss: KB on Linux

    say(f"lisguard check: {CHECK_MESSAGES:,} messages in one file, one CPU")
    startup, _, _ = run(one)
    wall, alerts, rss = run(path)
    before: dict[str, Any] = {}
    if BASELINE is not None:
        say("lisguard check, baseline tree")
        base_startup, _, _ = run(one, BASELINE)
        base_wall, base_alerts, base_rss = run(path, BASELINE)
        net = max(base_wall - base_startup, 1e-6)
        before = {
            "before": {
                "wall_s": round(base_wall, 2),
                "msg_per_s": round(CHECK_MESSAGES / net, 1),
                "peak_rss_mb": base_rss,
            },
        }
        if base_alerts != alerts:
            raise SystemExit(f"check: {alerts} alerts now, {base_alerts} with the baseline tree")
    return {
        **before,
        "messages": CHECK_MESSAGES,
        "wall_s": round(wall, 2),
        "startup_s": round(startup, 2),
        "msg_per_s": round(CHECK_MESSAGES / max(wall - startup, 1e-6), 1),
        "msg_per_s_with_startup": round(CHECK_MESSAGES / wall, 1),
        "alerts": alerts,
        "peak_rss_mb": rss,
    }


async def measure_growth(work: Path) -> dict[str, Any]:
    """Throughput on databases that already hold many messages or patient states, each pair
    measured side by side: what must stay flat is the ratio within a pair."""
    big = 1_000_000 if FULL else 200_000
    pairs = (
        ("stored", (("stored_10k", 10_000, 10_000), (f"stored_{big // 1000}k", big, 10_000))),
        ("patients", (("patients_1k", 10_000, 1_000), ("patients_100k", 10_000, 100_000))),
    )
    out: dict[str, Any] = {}
    for label, cases in pairs:
        contenders = []
        for name, messages, patients in cases:
            db = work / f"{name}.db"
            say(f"growth {name}: prefilling {messages:,} messages, {patients:,} patients")
            started = time.perf_counter()
            await asyncio.to_thread(prefill, db, messages, patients, feed_patients=patients)
            out[name] = {"prefill_s": round(time.perf_counter() - started, 1)}
            server = lisguard(db, work / f"{name}.log", synchronous=SYNCHRONOUS)
            contenders.append(Contender(name, server, FeedBuilder(patients)))
        for c in contenders:
            await c.server.start()
        try:
            for name, figures in (await interleaved(contenders, f"growth {label}")).items():
                out[name].update(figures)
        finally:
            for c in contenders:
                await c.server.stop()
            for f in work.glob("*.db*"):
                f.unlink()
    return out


async def main() -> None:
    pin_load_generator()
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
                "seconds_per_measure": SECONDS,
                "rounds": ROUNDS,
                "patients": PATIENTS,
                "synchronous": SYNCHRONOUS or "store default",
                "full": FULL,
                "pinned": os.environ.get("BENCH_PIN", "1") not in ("", "0"),
            },
        }
        say("disk: fdatasync of 16 KB, 2 s")
        results["disk"] = await asyncio.to_thread(measure_disk, work)
        results["servers"] = await measure_servers(builder, work)
        results["naive_hl7apy"] = await measure_naive(builder)
        results["check"] = measure_check(builder, work)
        results["growth"] = await measure_growth(work)
        results["summary"] = summarise(results)
        # The targets were set on this kind of machine with python-hl7 at ~1,700 msg/s
        # (8 connections): how fast the machine was in this run, for absolute targets (check).
        peer8 = results["servers"]["python_hl7"]["conn8"]["msg_per_s"]
        results["machine"]["speed_vs_reference"] = round(peer8 / REFERENCE_PEER_8, 2)
        results["total_s"] = round(time.perf_counter() - started, 1)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    OUT.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    text = json.dumps(results, indent=2)
    (OUT / f"bench-{stamp}.json").write_text(text + "\n")
    (OUT / "latest.json").write_text(text + "\n")
    print(table(results))
    print(
        f"\nmachine speed in this run: python-hl7 (8 conn) at "
        f"{results['servers']['python_hl7']['conn8']['msg_per_s']:,.0f} msg/s = "
        f"{results['machine']['speed_vs_reference']:.2f}x the {REFERENCE_PEER_8:,} the targets "
        "were set against"
    )
    print(f"\ntotal {results['total_s']} s; written to {OUT / f'bench-{stamp}.json'}")


if __name__ == "__main__":
    asyncio.run(main())
