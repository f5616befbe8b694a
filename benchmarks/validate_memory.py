"""Peak memory and time of `lisguard validate` as the feed grows (python -m
benchmarks.validate_memory): synthetic feeds of 100k, 300k and 1M messages (benchmarks/feed.py,
20,000 patients), each streamed to a temporary file, then `lisguard validate` and `lisguard
check` on it, each its own process pinned to one CPU, peak RSS from wait4.

What it shows: validate's own tables and samples stay the same size (the difference between
validate's and check's peak RSS stays flat), and both keep a bounded resend table (the newest
100,000 message keys: lisguard.screening.RESEND_MEMORY); what still grows is one state per
patient as more of the feed's 20,000 patients appear. It prints figures; it asserts nothing
(benchmarks/README.md).

Environment: BENCH_VALIDATE_SIZES (comma-separated message counts, default
100000,300000,1000000), BENCH_OUT (results directory, default benchmarks/results).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.feed import FeedBuilder

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent / "lisguard"
SIZES = [int(n) for n in os.environ.get("BENCH_VALIDATE_SIZES", "100000,300000,1000000").split(",")]
OUT = Path(os.environ.get("BENCH_OUT", REPO / "benchmarks" / "results"))
PATIENTS = 20_000


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def write_feed(path: Path, count: int, builder: FeedBuilder) -> int:
    """Stream `count` messages to `path` (LF line ends, as an export often is); its size."""
    with path.open("w", encoding="utf-8") as f:
        for text in builder.messages(count, "V"):
            f.write(text.replace("\r", "\n"))
    return path.stat().st_size


def run(command: list[str], cpu: int) -> tuple[float, float, str]:
    """(wall seconds, peak RSS in MB, stdout) of one command, pinned to `cpu`."""
    started = time.perf_counter()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(
            command,
            cwd=REPO,
            stdout=out,
            stderr=err,
            preexec_fn=lambda: os.sched_setaffinity(0, {cpu}),
        )
        # wait4: this child's own rusage (RUSAGE_CHILDREN is the maximum over all children)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
        if os.waitstatus_to_exitcode(status) != 0:
            err.seek(0)
            raise SystemExit(f"{command[1]} failed: {err.read(500).decode()}")
        out.seek(0)
        return wall, usage.ru_maxrss / 1024, out.read().decode()  # ru_maxrss: KB on Linux


def main() -> None:
    builder = FeedBuilder(PATIENTS)
    cpu = max(os.sched_getaffinity(0))
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="lisguard-validate-bench-") as tmp:
        work = Path(tmp)
        for count in SIZES:
            feed = work / f"feed-{count}.hl7"
            say(f"writing {count:,} messages")
            size = write_feed(feed, count, builder)
            say(f"lisguard validate, {count:,} messages ({size / 1e6:,.0f} MB)")
            out_dir = work / f"report-{count}"
            v_wall, v_rss, _ = run([str(BIN), "validate", str(feed), "--out", str(out_dir)], cpu)
            report = json.loads((out_dir / "report.json").read_text())
            say(f"lisguard check, {count:,} messages")
            c_wall, c_rss, printed = run([str(BIN), "check", str(feed)], cpu)
            alerts = printed.count("\n")
            if report["alerts"]["total"] != alerts:
                raise SystemExit(f"validate {report['alerts']['total']} alerts, check {alerts}")
            rows.append(
                {
                    "messages": count,
                    "file_mb": round(size / 1e6, 1),
                    "alerts": alerts,
                    "validate_wall_s": round(v_wall, 1),
                    "validate_msg_per_s": round(count / v_wall),
                    "validate_peak_rss_mb": round(v_rss, 1),
                    "check_wall_s": round(c_wall, 1),
                    "check_peak_rss_mb": round(c_rss, 1),
                    "validate_over_check_mb": round(v_rss - c_rss, 1),
                    "report_html_mb": round((out_dir / "report.html").stat().st_size / 1e6, 2),
                }
            )
            feed.unlink()
    print_table(rows)
    OUT.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    result = {"benchmark": "validate_memory", "at": stamp, "patients": PATIENTS, "rows": rows}
    (OUT / f"validate-memory-{stamp}.json").write_text(json.dumps(result, indent=2) + "\n")


def print_table(rows: list[dict[str, Any]]) -> None:
    head = (
        f"{'messages':>10} {'file MB':>8} {'alerts':>7} {'validate s':>10} {'msg/s':>7} "
        f"{'validate MB':>11} {'check s':>8} {'check MB':>9} {'difference MB':>13}"
    )
    print(head)
    for r in rows:
        print(
            f"{r['messages']:>10,} {r['file_mb']:>8,.0f} {r['alerts']:>7,} "
            f"{r['validate_wall_s']:>10.1f} {r['validate_msg_per_s']:>7,} "
            f"{r['validate_peak_rss_mb']:>11.1f} {r['check_wall_s']:>8.1f} "
            f"{r['check_peak_rss_mb']:>9.1f} {r['validate_over_check_mb']:>13.1f}"
        )
    if len(rows) > 1:
        first, last = rows[0], rows[-1]
        more = last["messages"] - first["messages"]
        for who in ("validate", "check"):
            grew = last[f"{who}_peak_rss_mb"] - first[f"{who}_peak_rss_mb"]
            print(f"{who}: {grew * 1e6 / more:,.0f} bytes of peak RSS per extra message")
        diff = last["validate_over_check_mb"] - first["validate_over_check_mb"]
        print(
            f"validate's own (validate - check): {first['validate_over_check_mb']:.1f} MB at "
            f"{first['messages']:,}, {last['validate_over_check_mb']:.1f} MB at "
            f"{last['messages']:,} ({diff:+.1f} MB for {more:,} more messages)"
        )


if __name__ == "__main__":
    main()
