"""`lisguard replay` as an admin runs it, on the installation's store (SQLite, PostgreSQL): while
the service runs (its page then shows the alert) and after it stopped; the settings file as it
is now decides, whatever the running service has loaded."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import aiohttp
import pytest

from tests.e2e import message_support as feed

BIN = str(Path(sys.executable).parent / "lisguard")


async def lisguard(*args: str) -> tuple[int, str, str]:
    """The command in a process of its own; the test's event loop (and the service in it) runs
    on meanwhile."""
    proc = await asyncio.create_subprocess_exec(
        BIN, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=120)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@pytest.mark.parametrize("kind", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def test_replay_dead_letters_from_the_command_line(kind: str, tmp_path: Path) -> None:
    async with feed.store_url(kind, tmp_path) as url:
        refusing = {"ingest": {"type_actions": {"RAS": "reject"}}}
        config = feed.settings_file(tmp_path, url, **refusing)
        svc = await feed.start_service(config)
        try:
            acks = await feed.send_mllp(svc, feed.dose("D1"), feed.screen("S1"), feed.NO_CONTROL_ID)
            assert [a.split("MSA|")[1][:2] for a in acks] == ["AR", "AA", "AE"]
            feed.settings_file(tmp_path, url)  # the fix, not reloaded by the running service
            status, out, err = await lisguard(
                "replay", "--config", str(config), "--dead-letters", "--reason", "RAS allowed",
                "--dry-run",
            )
            assert status == 1, err  # the message without a control id stays unreadable
            lines = out.splitlines()
            assert "\tD1\twould-process\t" in lines[0] and "\terror\t" in lines[1]
            assert await svc.store.count_messages() == 3  # a dry run stores nothing
            # the service is running: the replay is its own process on the same store
            status, out, err = await lisguard(
                "replay", "--config", str(config), "--dead-letters", "--reason", "RAS allowed"
            )
            assert status == 1, err
            first, second, summary = out.splitlines()
            assert first.split("\t")[1:4] == ["D1", "accepted", "AA"] and "new message" in first
            assert "alerts " in first
            assert second.split("\t")[1:4] == ["-", "error", "AE"]
            assert summary.startswith("# replay ") and "1 accepted, 1 error" in summary
            tokens = await feed.add_tokens(svc, "technologist")
            async with aiohttp.ClientSession() as http:
                client = feed.Client(http, feed.base_url(svc), tokens["technologist"])
                status_, body = await client.get("/api/alerts", patient=feed.PATIENT)
            assert status_ == 200
            assert [a["alert"]["rule"] for a in body["alerts"]] == ["baseline-workup"]
        finally:
            await svc.stop()
        # stopped: the dead letter is now a duplicate of its accepted replay
        status, out, err = await lisguard(
            "replay", "--config", str(config), "1", "--reason", "again, to be sure"
        )
        assert status == 0, err
        assert out.splitlines()[0].split("\t")[1:4] == ["D1", "duplicate", "AA"]


async def test_replay_refuses_what_it_cannot_do(tmp_path: Path) -> None:
    config = feed.settings_file(tmp_path, f"sqlite:///{tmp_path / 'missing.db'}")
    status, _, err = await lisguard("replay", "--config", str(config), "1", "--reason", "x")
    assert status == 2 and "no lisguard database" in err  # never creates one
    status, _, err = await lisguard("replay", "--config", str(config), "--reason", "x")
    assert status == 2 and "name message ids, or --dead-letters" in err
    status, _, err = await lisguard("replay", "--config", str(config), "1")
    assert status == 2 and "--reason" in err
