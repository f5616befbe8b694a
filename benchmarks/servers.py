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
    db: Path | str,
    log: Path,
    *,
    synchronous: str | None = None,
    tree: Path | None = None,
    name: str = "lisguard",
) -> Server:
    """`lisguard serve` with its defaults, except ports and the database: SQLite (a path) or
    another store URL (a str: PostgreSQL), durable (ACK after commit), INFO logs (one JSON line
    per message, to a file), HTTP listener on. The install key and audit anchors go beside the
    log (one key for the servers of a run: replicas on one schema must share it).
    `tree`: another source tree's lisguard instead (benchmarks.baseline)."""
    port = free_port()
    if isinstance(db, Path):
        url = f"sqlite:///{db}" + (f"?synchronous={synchronous}" if synchronous else "")
    else:
        url = db
    env = {
        **os.environ,
        "LISGUARD_MLLP__PORT": str(port),
        "LISGUARD_HTTP__PORT": str(free_port()),
        "LISGUARD_STORE__URL": url,
        "LISGUARD_LOG__FORMAT": "json",
        "LISGUARD_SECURITY__KEY_FILE": str(log.parent / "lisguard.key"),
        "LISGUARD_AUDIT__ANCHOR_FILE": str(log.with_suffix(".anchors.jsonl")),
    }
    argv = [str(BIN / "lisguard"), "serve"]
    if tree is not None:
        argv = [sys.executable, "-m", "benchmarks.baseline", str(tree), "serve"]
    return Server(name, argv, port, env, log)


def peer(kind: str, log: Path, *args: str) -> Server:
    """A server of benchmarks.peers: `args` after the port (the durable peers' database)."""
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    argv = [sys.executable, "-m", "benchmarks.peers", kind, str(port), *args]
    return Server(kind, argv, port, env, log)


class Replicas:
    """Several servers fed as one (a load balancer in front): `port` lists theirs, CPU is the
    sum, memory the largest. They are started and stopped on their own."""

    def __init__(self, name: str, servers: list[Server]) -> None:
        self.name, self.servers = name, servers

    @property
    def port(self) -> list[int]:
        return [s.port for s in self.servers]

    async def start(self) -> None:
        for s in self.servers:
            if s.proc is None:
                await s.start()

    async def stop(self) -> None:
        for s in self.servers:
            await s.stop()

    def cpu_seconds(self) -> float:
        return sum(s.cpu_seconds() for s in self.servers)

    def peak_rss_mb(self) -> float:
        return max(s.peak_rss_mb() for s in self.servers)
