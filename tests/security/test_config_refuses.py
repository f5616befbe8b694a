"""Settings that would run with less protection than they seem to ask for are refused, by
`check-config` and at start-up, with an error that says what to set."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from lisguard.keys import InstallKeyError, load_install_key
from lisguard.settings import MllpSettings, SecuritySettings, Settings, TlsSettings

BIN = Path(sys.executable).parent / "lisguard"


def run(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("LISGUARD_")}
    return subprocess.run(
        [str(BIN), *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**clean, **env},
        timeout=60,
    )


def test_client_certificates_required_without_a_ca_is_refused(tmp_path: Path) -> None:
    # it accepted clients with no certificate at all, and check-config said it was fine
    with pytest.raises(ValidationError, match="client_ca_file"):
        TlsSettings(
            cert_file=tmp_path / "c.pem", key_file=tmp_path / "k.pem", require_client_cert=True
        )
    config = tmp_path / "lisguard.yaml"
    config.write_text(
        "http:\n  tls:\n    cert_file: c.pem\n    key_file: k.pem\n    require_client_cert: true\n"
    )
    done = run(["check-config", "--config", str(config)], tmp_path)
    assert done.returncode == 2
    assert "require_client_cert needs client_ca_file" in json.loads(done.stderr)["error"]


def test_tls_pieces_without_a_certificate_are_refused() -> None:
    with pytest.raises(ValidationError, match="without cert_file"):
        TlsSettings(client_ca_file=Path("ca.pem"))


@pytest.mark.parametrize("host", ["0.0.0.0", "", "::", "10.1.2.3", "lisguard.example.org"])
def test_mllp_beyond_loopback_needs_sources_or_client_certificates(host: str) -> None:
    with pytest.raises(ValidationError, match="allowed_sources"):
        MllpSettings(host=host)
    assert MllpSettings(host=host, allowed_sources=["10.1.2.0/24"]).host == host
    tls = TlsSettings(cert_file=Path("c"), client_ca_file=Path("ca"), require_client_cert=True)
    assert MllpSettings(host=host, tls=tls).host == host
    # TLS alone authenticates the server, not the sender
    with pytest.raises(ValidationError, match="allowed_sources"):
        MllpSettings(host=host, tls=TlsSettings(cert_file=Path("c")))


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "localhost"])
def test_loopback_needs_nothing(host: str) -> None:
    assert MllpSettings(host=host).host == host
    assert MllpSettings(host="0.0.0.0", enabled=False).enabled is False


def test_a_bad_source_is_named() -> None:
    with pytest.raises(ValidationError, match="'change-me' is not an IP address"):
        MllpSettings(allowed_sources=["change-me"])


def test_serve_refuses_to_listen_open_and_says_what_to_set(tmp_path: Path) -> None:
    done = run(
        ["serve"],
        tmp_path,
        LISGUARD_MLLP__HOST="0.0.0.0",
        LISGUARD_MLLP__PORT="0",
        LISGUARD_HTTP__PORT="0",
    )
    assert done.returncode == 2
    error = json.loads(done.stderr.strip().splitlines()[-1])["error"]
    assert "LISGUARD_MLLP__ALLOWED_SOURCES" in error and "client certificates" in error
    assert not (tmp_path / "var").exists()  # refused before anything was created


def test_production_refuses_the_bench_settings(tmp_path: Path) -> None:
    key = SecuritySettings(production=True, key_file=tmp_path / "k")
    with pytest.raises(ValidationError, match="auth_required"):
        Settings(security=key, http={"auth_required": False})  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="published"):
        Settings(security=key, log={"patient_hash_key": "lisguard-dev-key"})  # type: ignore[arg-type]


def test_production_never_generates_the_install_key(tmp_path: Path) -> None:
    with pytest.raises(InstallKeyError, match="lisguard key create"):
        load_install_key(SecuritySettings(production=True, key_file=tmp_path / "k"))
    config = tmp_path / "lisguard.yaml"
    config.write_text(f"security:\n  production: true\n  key_file: {tmp_path / 'k'}\n")
    done = run(["check-config", "--config", str(config)], tmp_path)
    assert done.returncode == 2 and "no install key" in done.stderr
    assert run(["key", "create", "--config", str(config)], tmp_path).returncode == 0
    assert run(["check-config", "--config", str(config)], tmp_path).returncode == 0
    again = run(["key", "create", "--config", str(config)], tmp_path)
    assert again.returncode == 2 and "never overwritten" in again.stderr
