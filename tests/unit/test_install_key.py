"""The install key: generated once, owner-only, never overwritten, shared by replicas."""

from __future__ import annotations

import stat
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from pydantic import SecretStr

from lisguard.keys import InstallKeyError, load_install_key
from lisguard.settings import SecuritySettings


def test_first_start_generates_an_owner_only_key_then_reads_it(tmp_path: Path) -> None:
    settings = SecuritySettings(key_file=tmp_path / "var" / "lisguard.key")
    first = load_install_key(settings)
    assert first.generated and len(first.secret) == 32
    assert stat.S_IMODE(settings.key_file.stat().st_mode) == 0o600
    second = load_install_key(settings)
    assert not second.generated and second.secret == first.secret
    assert [p.name for p in settings.key_file.parent.iterdir()] == ["lisguard.key"]


def test_sub_keys_differ_per_purpose_and_per_install(tmp_path: Path) -> None:
    a = load_install_key(SecuritySettings(key_file=tmp_path / "a"))
    b = load_install_key(SecuritySettings(key_file=tmp_path / "b"))
    assert a.derive("audit-chain") != a.derive("log-pseudonym")
    assert a.derive("log-pseudonym") != b.derive("log-pseudonym")
    assert a.key_id != b.key_id and a.secret.hex() not in a.key_id


def test_replicas_starting_together_share_one_key(tmp_path: Path) -> None:
    settings = SecuritySettings(key_file=tmp_path / "lisguard.key")
    with ThreadPoolExecutor(8) as pool:
        keys = list(pool.map(lambda _: load_install_key(settings), range(8)))
    assert len({k.secret for k in keys}) == 1


def test_a_key_from_the_environment_and_bad_keys(tmp_path: Path) -> None:
    given = SecuritySettings(key=SecretStr("ab" * 32), key_file=tmp_path / "unused")
    assert load_install_key(given).secret == bytes.fromhex("ab" * 32)
    assert not (tmp_path / "unused").exists()
    with pytest.raises(InstallKeyError, match="hex"):
        load_install_key(SecuritySettings(key=SecretStr("change-me")))
    short = tmp_path / "short"
    short.write_text("abcd\n")
    with pytest.raises(InstallKeyError, match="needs 32"):
        load_install_key(SecuritySettings(key_file=short))
