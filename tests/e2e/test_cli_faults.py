"""Faults a new user hit with the command line.

- `lisguard send` ignored the configured MLLP address (mllp.host/mllp.port from --config or
  LISGUARD_MLLP__*) and always sent to 127.0.0.1:2575.
- `lisguard token create` (and the other admin commands that open the store) run from another
  directory silently created a new, empty SQLite database there (the default store.url is the
  relative sqlite:///var/lisguard.db). They now refuse, naming the absolute path they looked at.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from lisguard.app import Service
from tests.conftest import SAMPLES
from tests.e2e.serve_process import free_port

BIN = str(Path(sys.executable).parent / "lisguard")
FILES = sorted((SAMPLES / "01-baseline-workup").glob("*.hl7"))


def clean_env(**extra: str) -> dict[str, str]:
    """The caller's environment without any LISGUARD_ setting: only what the test gives."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LISGUARD_")}
    return {**env, **extra}


async def send(*args: str, cwd: Path, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    # asynchronous: the listener runs in this test's event loop
    proc = await asyncio.create_subprocess_exec(
        BIN,
        "send",
        "--timeout",
        "10",
        *args,
        *map(str, FILES),
        cwd=cwd,
        env=env or clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def assert_acked(rc: int, out: str, err: str) -> None:
    assert rc == 0, err
    lines = out.splitlines()
    assert len(lines) == len(FILES) == 2, out
    assert all("MSA|CA|" in line for line in lines), lines


# -- 1. send goes where the settings say


async def test_send_takes_the_port_from_the_config_file(service: Service, tmp_path: Path) -> None:
    assert service.mllp_port and service.mllp_port != 2575
    cfg = tmp_path / "lisguard.yaml"
    cfg.write_text(f"mllp:\n  port: {service.mllp_port}\n")
    assert_acked(*await send("--config", str(cfg), cwd=tmp_path))
    assert await service.store.count_messages() == 2


async def test_send_takes_the_port_from_the_environment(service: Service, tmp_path: Path) -> None:
    env = clean_env(LISGUARD_MLLP__PORT=str(service.mllp_port))
    assert_acked(*await send(cwd=tmp_path, env=env))
    assert await service.store.count_messages() == 2


async def test_send_to_a_wildcard_listen_address_goes_to_loopback(
    service: Service, tmp_path: Path
) -> None:
    """The shipped deploy/lisguard.yaml listens on 0.0.0.0: send it to this machine."""
    cfg = tmp_path / "lisguard.yaml"
    cfg.write_text(
        f"mllp:\n  host: 0.0.0.0\n  port: {service.mllp_port}\n  allowed_sources: [127.0.0.1]\n"
    )
    assert_acked(*await send("--config", str(cfg), cwd=tmp_path))
    assert await service.store.count_messages() == 2


@pytest.mark.parametrize("explicit", [("--port",), ("--host", "--port")])
async def test_send_explicit_address_wins_over_the_config(
    service: Service, tmp_path: Path, explicit: tuple[str, ...]
) -> None:
    cfg = tmp_path / "lisguard.yaml"
    dead = free_port()  # nobody listens there
    args = ["--config", str(cfg), "--port", str(service.mllp_port)]
    if "--host" in explicit:  # 192.0.2.0/24 is TEST-NET-1: unroutable
        cfg.write_text(
            f"mllp:\n  host: 192.0.2.1\n  port: {dead}\n  allowed_sources: [127.0.0.1]\n"
        )
        args += ["--host", "127.0.0.1"]
    else:
        cfg.write_text(f"mllp:\n  port: {dead}\n")
    assert_acked(*await send(*args, cwd=tmp_path))
    assert await service.store.count_messages() == 2


# -- 2. admin commands do not create a database


def lisguard(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [BIN, *args], capture_output=True, text=True, timeout=60, cwd=cwd, env=env or clean_env()
    )


ADMIN_COMMANDS = [
    ("token", "create", "--role", "manager", "--name", "me"),
    ("token", "list"),
    ("token", "revoke", "1"),
    ("audit", "verify"),
    ("audit", "anchor"),
    ("purge",),
]


def refusal(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode != 0, proc.stdout
    assert proc.stderr.strip(), f"no reason given: {proc.stdout}"
    return str(json.loads(proc.stderr.splitlines()[-1])["error"])


@pytest.mark.parametrize("argv", ADMIN_COMMANDS, ids=lambda a: " ".join(a[:2]))
def test_admin_command_without_a_database_creates_nothing(
    tmp_path: Path, argv: tuple[str, ...]
) -> None:
    elsewhere = tmp_path / "home"
    elsewhere.mkdir()
    error = refusal(lisguard(*argv, cwd=elsewhere))
    assert str(elsewhere / "var" / "lisguard.db") in error  # the absolute path it looked at
    assert "current directory" in error
    assert "--config" in error and "lisguard serve" in error
    assert list(elsewhere.iterdir()) == []  # no var/, no database, no install key


def test_relative_store_path_is_taken_from_the_current_directory(tmp_path: Path) -> None:
    """A relative sqlite path in a --config file is relative to where the command runs, not to
    the file (deploy/lisguard.service: WorkingDirectory=/var/lib/lisguard, config in /etc);
    the message says so."""
    install, elsewhere = tmp_path / "install", tmp_path / "home"
    install.mkdir()
    elsewhere.mkdir()
    cfg = install / "lisguard.yaml"
    cfg.write_text("store:\n  url: sqlite:///var/lisguard.db\n")
    error = refusal(lisguard("token", "list", "--config", str(cfg), cwd=elsewhere))
    assert str(elsewhere / "var" / "lisguard.db") in error
    assert f"current directory ({elsewhere})" in error
    assert list(elsewhere.iterdir()) == [] and list(install.iterdir()) == [cfg]


def test_missing_absolute_store_path_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "srv" / "lisguard.db"
    env = clean_env(
        LISGUARD_STORE__URL=f"sqlite:///{db}",
        LISGUARD_SECURITY__KEY_FILE=str(tmp_path / "srv" / "lisguard.key"),
    )
    error = refusal(
        lisguard("token", "create", "--role", "admin", "--name", "x", cwd=tmp_path, env=env)
    )
    assert str(db) in error
    assert not (tmp_path / "srv").exists()


def test_quick_start_serve_creates_the_database_and_admin_commands_use_it(tmp_path: Path) -> None:
    """README quick start: `lisguard serve` in a fresh directory creates var/lisguard.db; then
    `lisguard token create` from that directory works, and from another it is refused."""
    install, elsewhere = tmp_path / "install", tmp_path / "home"
    install.mkdir()
    elsewhere.mkdir()
    http_port = free_port()
    env = clean_env(
        LISGUARD_MLLP__PORT=str(free_port()),
        LISGUARD_HTTP__PORT=str(http_port),
        LISGUARD_LOG__LEVEL="WARNING",
    )
    log = tmp_path / "serve.log"
    with log.open("wb") as log_file:
        serve = subprocess.Popen(
            [BIN, "serve"], cwd=install, env=env, stdout=log_file, stderr=log_file
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert serve.poll() is None, log.read_text(errors="replace")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/readyz", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, "lisguard serve never became ready"
            time.sleep(0.1)
    finally:
        if serve.poll() is None:
            serve.send_signal(signal.SIGTERM)
        serve.wait(timeout=60)
    assert (install / "var" / "lisguard.db").is_file()

    made = lisguard("token", "create", "--role", "manager", "--name", "me", cwd=install)
    assert made.returncode == 0, made.stderr
    assert made.stdout.startswith("lg_")
    listed = lisguard("token", "list", cwd=install)
    assert listed.returncode == 0 and "\tmanager\tme\t" in listed.stdout
    verified = lisguard("audit", "verify", cwd=install)
    assert verified.returncode == 0, verified.stdout + verified.stderr

    refusal(lisguard("token", "list", cwd=elsewhere))
    assert list(elsewhere.iterdir()) == []
