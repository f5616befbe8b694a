"""Start and stop the servers under test as child processes, and read their peak memory."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


# Server and load generator on different CPUs, as when the interface engine is another machine:
# left to itself the scheduler often wakes the one on the other's CPU, and they take turns on
# one core while the second idles (seen here: the server stalled in send() a third of the time).
PIN = os.environ.get("BENCH_PIN", "1") not in ("", "0") and len(os.sched_getaffinity(0)) >= 2
SERVER_CPU = min(os.sched_getaffinity(0))


def _pin_server() -> None:
    os.sched_setaffinity(0, {SERVER_CPU})


def pin_load_generator() -> None:
    """The calling process (the load generator) on the CPUs the server does not use."""
    if PIN:
        os.sched_setaffinity(0, os.sched_getaffinity(0) - {SERVER_CPU})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def peak_rss_mb(pid: int) -> float:
    """VmHWM: the most resident memory the process ever had."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Server:
    """One server process listening on `port` until `stop()`."""

    def __init__(self, name: str, argv: list[str], port: int, env: dict[str, str], log: Path):
        self.name, self.argv, self.port, self.env, self.log = name, argv, port, env, log
        self.proc: subprocess.Popen[bytes] | None = None

    async def start(self) -> None:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                self.argv,
                env=self.env,
                stdout=subprocess.DEVNULL,
                stderr=log,
                cwd=REPO,
                preexec_fn=_pin_server if PIN else None,
            )
        for _ in range(600):
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited at start-up; see {self.log}")
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", self.port)
                writer.close()
                await writer.wait_closed()
                return
            except OSError:
                await asyncio.sleep(0.05)
        raise RuntimeError(f"{self.name} did not start listening on {self.port}")

    def peak_rss_mb(self) -> float:
        assert self.proc is not None
        return peak_rss_mb(self.proc.pid)

    def cpu_seconds(self) -> float:
        assert self.proc is not None
        return cpu_seconds(self.proc.pid)

    async def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        for _ in range(300):
            if self.proc.poll() is not None:
                return
            await asyncio.sleep(0.05)
        self.proc.kill()
        self.proc.wait()


def lisguard(
    db: Path, log: Path, *, synchronous: str | None = None, tree: Path | None = None
) -> Server:
    """`lisguard serve` with its defaults, except ports and the database file: SQLite, durable
    (ACK after commit), INFO logs (one JSON line per message, to a file), HTTP listener on.
    `tree`: another source tree's lisguard instead (benchmarks.baseline)."""
    port = free_port()
    url = f"sqlite:///{db}" + (f"?synchronous={synchronous}" if synchronous else "")
    env = {
        **os.environ,
        "LISGUARD_MLLP__PORT": str(port),
        "LISGUARD_HTTP__PORT": str(free_port()),
        "LISGUARD_STORE__URL": url,
        "LISGUARD_LOG__FORMAT": "json",
    }
    argv = [str(BIN / "lisguard"), "serve"]
    if tree is not None:
        argv = [sys.executable, "-m", "benchmarks.baseline", str(tree), "serve"]
    return Server("lisguard", argv, port, env, log)


def peer(kind: str, log: Path) -> Server:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    argv = [sys.executable, "-m", "benchmarks.peers", kind, str(port)]
    return Server(kind, argv, port, env, log)
