"""TLS on MLLP and HTTP (client certificates), idle timeouts, MSH-18, no PHI in logs."""

from __future__ import annotations

import asyncio
import shutil
import ssl
import subprocess
from pathlib import Path

import aiohttp
import pytest
import structlog

from lisguard.app import Service
from lisguard.transport.mllp import MllpClient
from tests.conftest import ServiceFactory

ORDER = (
    "MSH|^~\\&|LAB|HOSP|LISGUARD|BB|20260302081500||ORM^O01|{cid}|P|2.5.1\r"
    "PID|1||MRN55^^^HOSP^MR||MÜLLER^JÜRGEN||19600101\r"
    "ORC|NW|O-{cid}\r"
    "OBR|1|O-{cid}||890-4^Antibody screen^LN|||20260302081000||||||Pt on daratumumab\r"
)


def openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A throwaway CA, a server certificate for 127.0.0.1 and a client certificate."""
    if shutil.which("openssl") is None:
        pytest.fail("openssl is needed to make test certificates")
    d = tmp_path_factory.mktemp("pki")
    openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=lisguard test CA",
        "-keyout",
        str(d / "ca.key"),
        "-out",
        str(d / "ca.pem"),
    )
    for name, ext in (
        ("server", "subjectAltName=IP:127.0.0.1"),
        ("client", "extendedKeyUsage=clientAuth"),
    ):
        openssl(
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            f"/CN={name}",
            "-keyout",
            str(d / f"{name}.key"),
            "-out",
            str(d / f"{name}.csr"),
        )
        (d / f"{name}.ext").write_text(ext + "\n")
        openssl(
            "x509",
            "-req",
            "-in",
            str(d / f"{name}.csr"),
            "-CA",
            str(d / "ca.pem"),
            "-CAkey",
            str(d / "ca.key"),
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            str(d / f"{name}.ext"),
            "-out",
            str(d / f"{name}.pem"),
        )
    return d


def client_ctx(pki: Path, with_cert: bool) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(pki / "ca.pem"))
    if with_cert:
        ctx.load_cert_chain(pki / "client.pem", pki / "client.key")
    return ctx


def tls(pki: Path, require_client: bool) -> dict[str, object]:
    return {
        "cert_file": str(pki / "server.pem"),
        "key_file": str(pki / "server.key"),
        "client_ca_file": str(pki / "ca.pem") if require_client else None,
        "require_client_cert": require_client,
    }


async def test_mllp_over_tls_with_client_certificates(
    service_factory: ServiceFactory, pki: Path
) -> None:
    svc: Service = await service_factory(mllp={"tls": tls(pki, True)})
    assert svc.mllp_port
    async with MllpClient("127.0.0.1", svc.mllp_port, ssl_context=client_ctx(pki, True)) as c:
        assert "MSA|AA|T1" in await c.send(ORDER.format(cid="T1").encode())
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        async with MllpClient(
            "127.0.0.1", svc.mllp_port, ssl_context=client_ctx(pki, False), timeout=5
        ) as c:
            await c.send(ORDER.format(cid="T2").encode())
    assert await svc.store.count_messages() == 1


async def test_plain_client_cannot_talk_to_a_tls_listener(
    service_factory: ServiceFactory, pki: Path
) -> None:
    svc: Service = await service_factory(mllp={"tls": tls(pki, False)})
    assert svc.mllp_port
    with pytest.raises((ConnectionError, TimeoutError, OSError)):
        async with MllpClient("127.0.0.1", svc.mllp_port, timeout=3) as c:
            await c.send(ORDER.format(cid="T3").encode())
    assert await svc.store.count_messages() == 0


async def test_http_over_tls(service_factory: ServiceFactory, pki: Path) -> None:
    svc: Service = await service_factory(http={"tls": tls(pki, False)})
    connector = aiohttp.TCPConnector(ssl=client_ctx(pki, False))
    async with aiohttp.ClientSession(connector=connector) as http:
        async with http.get(f"https://127.0.0.1:{svc.http_port}/healthz") as resp:
            assert resp.status == 200


async def test_idle_connection_is_closed(service_factory: ServiceFactory) -> None:
    svc: Service = await service_factory(mllp={"idle_timeout_seconds": 0.3})
    assert svc.mllp_port
    reader, writer = await asyncio.open_connection("127.0.0.1", svc.mllp_port)
    assert await asyncio.wait_for(reader.read(), 10) == b""  # closed by the server
    writer.close()


async def test_latin1_message_declared_in_msh18(service: Service) -> None:
    assert service.mllp_port
    text = ORDER.format(cid="L1").replace("|P|2.5.1", "|P|2.5.1|||||||8859/1")
    async with MllpClient("127.0.0.1", service.mllp_port) as c:
        assert "MSA|AA|L1" in await c.send(text.encode("latin-1"))
    [alert] = await service.store.list_alerts()
    assert alert.alert.patient == "MRN55"


async def test_logs_carry_no_phi(service: Service, capsys: pytest.CaptureFixture[str]) -> None:
    from lisguard.logs import configure_logging
    from lisguard.settings import LogSettings

    configure_logging(LogSettings(format="json", level="INFO"))
    try:
        assert service.mllp_port
        async with MllpClient("127.0.0.1", service.mllp_port) as c:
            await c.send(ORDER.format(cid="PHI1").encode())
        err = capsys.readouterr().err
    finally:
        structlog.reset_defaults()
    assert '"control_id": "PHI1"' in err
    assert '"bb-serology"' in err
    for phi in ("MÜLLER", "MULLER", "JÜRGEN", "19600101", "MRN55", "daratumumab"):
        assert phi not in err
