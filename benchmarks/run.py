"""lisguard against its peers, in one run, on two feeds: `make bench` (python -m benchmarks.run).

Feeds: "mixed" (benchmarks/feed.py: a hospital's whole lab feed, 3 % of patients on anti-CD38
therapy, most messages never touching patient state) and "relevant" (benchmarks/feed_relevant.py:
what a site sends once filtered to what lisguard reads; every message touches state). Each
feed's servers run side by side and are measured in interleaved slices (lisguard, python-hl7,
raw, lisguard, ...), so a burst of other work on this shared machine lands on all of them alike;
each figure sums its slices. Servers are pinned to one CPU, the load generator to the others
(benchmarks/servers.py says why); PostgreSQL runs unpinned, as a service beside them.

Contenders per feed: lisguard serve on SQLite (FULL, and NORMAL on the mixed feed), lisguard
serve on PostgreSQL, python-hl7 answering create_ack() (no store), the durable peers
(python-hl7 plus one INSERT committed before each ACK, on SQLite FULL and on PostgreSQL), the
raw fixed-ACK server (mixed feed). Then, on PostgreSQL: round trips per message (a counting
proxy, benchmarks/roundtrips.py) per feed, and two replicas on one schema fed together against
one alone (relevant feed), checked for double alerts (SystemExit if any).

Environment: BENCH_SECONDS (measured seconds per server and connection count, default 6, split
over BENCH_ROUNDS slices, default 3), BENCH_FEEDS (default "mixed,relevant"; the hl7apy, check
and growth measures go with "mixed"), BENCH_PG=0 (no PostgreSQL rows; they are also skipped,
saying why, when the server does not answer), LISGUARD_TEST_PG_DSN (the server, default
postgresql://postgres@127.0.0.1:5432/test; each contender gets a schema bench_<name>, made and
dropped by the run), BENCH_REPLICAS=0 (no replica phase), BENCH_RELEVANT_PATIENTS (patients in
a cohort of the relevant feed, default 40), BENCH_FULL=1 (cost growth with 1,000,000 stored
messages instead of 200,000: a few minutes more), BENCH_SYNCHRONOUS (FULL or NORMAL instead of
the store's default), BENCH_PIN=0 (no CPU pinning), BENCH_OUT (results directory, default
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
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks import naive
from benchmarks.contenders import ROUNDS, SECONDS, Contender, Feed, interleaved, say
from benchmarks.feed import FeedBuilder
from benchmarks.feed_relevant import RelevantFeedBuilder
from benchmarks.loadgen import framed
from benchmarks.pg import DSN, Schemas, unreachable
from benchmarks.pg_phases import measure_replicas, measure_round_trips
from benchmarks.prefill import prefill
from benchmarks.relevance import describe, read_share
from benchmarks.report import summarise, table
from benchmarks.servers import BIN, REPO, lisguard, peer, pin_load_generator
from lisguard.domain.knowledge import load_knowledge_base
from lisguard.services import Ingestor
from lisguard.store.memory import MemoryStore

FULL = os.environ.get("BENCH_FULL", "") not in ("", "0")
SYNCHRONOUS = os.environ.get("BENCH_SYNCHRONOUS") or None
OUT = Path(os.environ.get("BENCH_OUT", REPO / "benchmarks" / "results"))
BASELINE = Path(os.environ["BENCH_BASELINE"]) if os.environ.get("BENCH_BASELINE") else None
FEEDS = [f.strip() for f in os.environ.get("BENCH_FEEDS", "mixed,relevant").split(",") if f]
PG = os.environ.get("BENCH_PG", "1") not in ("", "0")
REPLICAS = os.environ.get("BENCH_REPLICAS", "1") not in ("", "0")
PATIENTS = 20_000
RELEVANT_PATIENTS = int(os.environ.get("BENCH_RELEVANT_PATIENTS", "40"))
CHECK_MESSAGES = 100_000
NAIVE_MESSAGES = 300
SHARE_MESSAGES = 2_000
REFERENCE_PEER_8 = 1_700  # python-hl7 msg/s with 8 connections when the targets were set


async def measure_feed(
    label: str, builder: Feed, work: Path, schemas: Schemas | None
) -> dict[str, Any]:
    """Every contender on one feed, interleaved; ACK latency at 1,000 msg/s offered for
    lisguard on each store; peak memory. `schemas`: None leaves PostgreSQL out."""
    sample = framed(list(builder.messages(2_000, "A")))  # the peers' feed: what lisguard got first
    mixed = label == "mixed"
    lg = lisguard(work / f"{label}.db", work / f"{label}.log", synchronous=SYNCHRONOUS)
    contenders = [Contender("lisguard", lg, builder)]
    if mixed and SYNCHRONOUS is None:  # the default (FULL) and the setting that survives a crash
        normal = lisguard(work / "normal.db", work / "normal.log", synchronous="NORMAL")
        contenders.append(Contender("lisguard_normal", normal, builder))
    if BASELINE is not None:
        before = lisguard(work / f"{label}-before.db", work / f"{label}-before.log", tree=BASELINE)
        contenders.append(Contender("lisguard_before", before, builder))
    if schemas is not None:
        url = await schemas.create(f"{label}_lisguard_pg")
        pg = lisguard(url, work / f"{label}-pg.log", name="lisguard_pg")
        contenders.append(Contender("lisguard_pg", pg, builder))
    contenders.append(Contender("python_hl7", peer("hl7", work / f"{label}-hl7.log"), sample))
    durable = peer("durable-sqlite", work / f"{label}-dsq.log", str(work / f"{label}-peer.db"))
    contenders.append(Contender("durable_sqlite", durable, sample))
    if schemas is not None:
        url = await schemas.create(f"{label}_durable_pg")
        durable = peer("durable-pg", work / f"{label}-dpg.log", url)
        contenders.append(Contender("durable_pg", durable, sample))
    if mixed:
        contenders.append(Contender("raw", peer("raw", work / "raw.log"), sample))
    for c in contenders:
        await c.server.start()
    try:
        out = await interleaved(contenders, f"{label} feed")
        for c in contenders:
            if c.name in ("lisguard", "lisguard_pg"):
                out[c.name]["offered_1000"] = await c.offered(builder, "LAT")
        for c in contenders:
            out[c.name]["peak_rss_mb"] = round(c.server.peak_rss_mb(), 1)
        return out
    finally:
        for c in contenders:
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


async def measure_pg_parts(
    label: str, builder: Feed, work: Path, schemas: Schemas | None
) -> dict[str, Any]:
    if schemas is None:
        return {}
    out: dict[str, Any] = {"round_trips": await measure_round_trips(label, builder, work, schemas)}
    if label == "relevant" and REPLICAS:
        out["replicas"] = await measure_replicas(builder, work, schemas)
    return out


async def main() -> None:
    pin_load_generator()
    work = Path(tempfile.mkdtemp(prefix="lisguard-bench-"))
    started = time.perf_counter()
    schemas: Schemas | None = None
    pg_note = "off (BENCH_PG=0)"
    if PG:
        reason = await unreachable(DSN)
        if reason is None:
            schemas, pg_note = Schemas(DSN), "on"
        else:
            pg_note = f"skipped: {reason}"
            say(f"PostgreSQL rows SKIPPED: {reason} (set LISGUARD_TEST_PG_DSN, or BENCH_PG=0)")
    try:
        builder = FeedBuilder(PATIENTS)
        relevant = RelevantFeedBuilder(RELEVANT_PATIENTS)
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
                "relevant_patients": RELEVANT_PATIENTS,
                "feeds": FEEDS,
                "postgresql": pg_note,
                "synchronous": SYNCHRONOUS or "store default",
                "full": FULL,
                "pinned": os.environ.get("BENCH_PIN", "1") not in ("", "0"),
            },
        }
        # what each feed is, before any figure: a rate means little without it
        feeds: dict[str, Feed] = {"mixed": builder, "relevant": relevant}
        for label in FEEDS:
            share = await read_share(list(feeds[label].messages(SHARE_MESSAGES, "A")))
            say(describe(label, share))
            results.setdefault(label, {})["share"] = share
        if "relevant" in FEEDS and results["relevant"]["share"]["touch_state"] < 0.95:
            raise SystemExit("the relevant feed is not relevant: see the share above")
        say("disk: fdatasync of 16 KB, 2 s")
        results["disk"] = await asyncio.to_thread(measure_disk, work)
        try:
            if "mixed" in FEEDS:
                results["servers"] = await measure_feed("mixed", builder, work, schemas)
                results["mixed"].update(await measure_pg_parts("mixed", builder, work, schemas))
            if "relevant" in FEEDS:
                figures = await measure_feed("relevant", relevant, work, schemas)
                results["relevant"]["servers"] = figures
                parts = await measure_pg_parts("relevant", relevant, work, schemas)
                results["relevant"].update(parts)
        finally:
            if schemas is not None:
                await schemas.drop_all()
        if "mixed" in FEEDS:
            results["naive_hl7apy"] = await measure_naive(builder)
            results["check"] = measure_check(builder, work)
            results["growth"] = await measure_growth(work)
            # The targets were set on this kind of machine with python-hl7 at ~1,700
            # msg/s (8 connections): how fast the machine was in this run, for absolute targets.
            peer8 = results["servers"]["python_hl7"]["conn8"]["msg_per_s"]
            results["machine"]["speed_vs_reference"] = round(peer8 / REFERENCE_PEER_8, 2)
        results["summary"] = summarise(results)
        results["total_s"] = round(time.perf_counter() - started, 1)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    OUT.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    text = json.dumps(results, indent=2)
    (OUT / f"bench-{stamp}.json").write_text(text + "\n")
    (OUT / "latest.json").write_text(text + "\n")
    print(table(results))
    if "speed_vs_reference" in results["machine"]:
        print(
            f"\nmachine speed in this run: python-hl7 (8 conn) at "
            f"{results['servers']['python_hl7']['conn8']['msg_per_s']:,.0f} msg/s = "
            f"{results['machine']['speed_vs_reference']:.2f}x the {REFERENCE_PEER_8:,} the "
            "targets were set against"
        )
    print(f"\ntotal {results['total_s']} s; written to {OUT / f'bench-{stamp}.json'}")


if __name__ == "__main__":
    asyncio.run(main())
