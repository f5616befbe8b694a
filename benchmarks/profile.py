"""Profile a running `lisguard serve` under the benchmark feed with py-spy.

    python -m benchmarks.profile [CONNECTIONS] [SECONDS] [OUT]   # default 8, 15, /tmp/lisguard.svg

Writes a flame graph (speedscope JSON when OUT ends in .json, py-spy's collapsed stacks when it
ends in .txt: one line per stack and its sample count, for grep and sort) sampled while the feed
runs; with
OUT "-" it only measures (rate, latency, server CPU per message).
py-spy needs to read the server's memory: run as root or with ptrace allowed.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.feed import FeedBuilder
from benchmarks.loadgen import framed, send_and_wait
from benchmarks.servers import BIN, lisguard, pin_load_generator


async def main() -> None:
    conns = int(sys.argv[1]) if len(sys.argv) > 1 else 8
    seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 15.0
    out = Path(sys.argv[3] if len(sys.argv) > 3 else "/tmp/lisguard.svg")
    pin_load_generator()
    work = Path(tempfile.mkdtemp(prefix="lisguard-profile-"))
    server = lisguard(
        work / "p.db", work / "p.log", synchronous=os.environ.get("BENCH_SYNCHRONOUS")
    )
    await server.start()
    assert server.proc is not None
    fmt = {".json": "speedscope", ".txt": "raw"}.get(out.suffix, "flamegraph")
    spy = (
        None
        if str(out) == "-"
        else subprocess.Popen(
            [
                str(BIN / "py-spy"),
                "record",
                "-p",
                str(server.proc.pid),
                "-o",
                str(out),
                "-f",
                fmt,
                "-d",
                str(int(seconds) + 1),
                "-r",
                "250",
                "--nonblocking",
                *(["--gil"] if os.environ.get("BENCH_PROFILE_GIL") else []),
            ]
        )
    )
    try:
        messages = framed(FeedBuilder(20_000).messages(int(9_000 * (seconds + 1)), "PROF"))
        cpu = server.cpu_seconds()
        result = await send_and_wait(server.port, messages, conns, seconds)
        cpu = server.cpu_seconds() - cpu
        print(
            f"{result.rate:,.0f} msg/s, p50 {result.p50_ms:.2f} ms, p99 {result.p99_ms:.2f} ms,"
            f" server CPU {cpu / result.total * 1e6:.0f} us/msg (py-spy's own cost included)"
        )
        if spy is not None:
            await asyncio.to_thread(spy.wait)
    finally:
        await server.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
