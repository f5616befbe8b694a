"""The EHR's CDS Hooks JWT: keys from a JWKS file or URL (cached, offline), algorithms, claims."""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path
from typing import Any

import jwt
import pytest
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from lisguard.settings import CdsSettings
from lisguard.web.cds_auth import CdsAuthError, CdsKeysUnavailable, JwtVerifier, KeySource

ISS = "https://ehr.example.org"
AUD = "https://lisguard.example.org/cds-services"


def claims(**extra: Any) -> dict[str, Any]:
    now = int(time.time())
    return {
        "iss": ISS,
        "sub": "c1",
        "aud": AUD,
        "exp": now + 60,
        "iat": now,
        "jti": str(uuid.uuid4()),
        **extra,
    }


def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def jwk(key: Any, kid: str) -> dict[str, Any]:
    if isinstance(key, rsa.RSAPrivateKey):
        public = jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
    else:
        public = jwt.algorithms.ECAlgorithm.to_jwk(key.public_key(), as_dict=True)
    return {**public, "kid": kid}


def write(path: Path, *keys: dict[str, Any]) -> Path:
    path.write_text(json.dumps({"keys": list(keys)}))
    return path


def verifier(**settings: Any) -> JwtVerifier:
    return JwtVerifier(CdsSettings(enabled=True, issuers=[ISS], **settings), AUD)


async def test_rs384_and_es384_from_a_file_and_a_rotated_file(tmp_path: Path) -> None:
    rsa_private, ec_private = rsa_key(), ec.generate_private_key(ec.SECP384R1())
    path = write(tmp_path / "jwks.json", jwk(rsa_private, "r1"), jwk(ec_private, "e1"))
    check = verifier(jwks_file=path)
    token = jwt.encode(claims(), rsa_private, algorithm="RS384", headers={"kid": "r1"})
    assert (await check.verify(f"Bearer {token}", "svc")).issuer == ISS
    token = jwt.encode(claims(), ec_private, algorithm="ES384", headers={"kid": "e1"})
    assert (await check.verify(f"Bearer {token}", "svc")).subject == "c1"
    # the EHR rolls over to a new key: the file is replaced, and read again
    newer = rsa_key()
    write(path, jwk(newer, "r2"))
    os.utime(path, (time.time() + 5, time.time() + 5))
    token = jwt.encode(claims(), newer, algorithm="RS384", headers={"kid": "r2"})
    assert (await check.verify(f"Bearer {token}", "svc")).jti
    old = jwt.encode(claims(), rsa_private, algorithm="RS384", headers={"kid": "r1"})
    with pytest.raises(CdsAuthError, match="no key 'r1'"):
        await check.verify(f"Bearer {old}", "svc")


async def test_refused_algorithms_and_keys(tmp_path: Path) -> None:
    private = rsa_key()
    check = verifier(jwks_file=write(tmp_path / "jwks.json", jwk(private, "r1")))
    unsigned = jwt.encode(claims(), None, algorithm="none")
    hmac = jwt.encode(claims(), "secret-of-32-bytes-at-least-0123456789", algorithm="HS256")
    rs256 = jwt.encode(claims(), private, algorithm="RS256", headers={"kid": "r1"})
    for token in (unsigned, hmac, rs256):
        with pytest.raises(CdsAuthError, match="algorithm"):
            await check.verify(f"Bearer {token}", "svc")
    # without a kid, the one key of the set
    token = jwt.encode(claims(), private, algorithm="RS384")
    assert await check.verify(f"Bearer {token}", "svc")
    with pytest.raises(CdsAuthError, match="Bearer"):
        await check.verify(f"Basic {token}", "svc")
    future = jwt.encode(claims(iat=int(time.time()) + 600), private, algorithm="RS384")
    with pytest.raises(CdsAuthError):
        await check.verify(f"Bearer {future}", "svc")
    missing = verifier(jwks_file=tmp_path / "nowhere.json")
    with pytest.raises(CdsKeysUnavailable):
        await missing.verify(f"Bearer {token}", "svc")


async def test_a_jwks_url_is_cached_and_kept_while_unreachable(tmp_path: Path) -> None:
    private = rsa_key()
    fetched: list[int] = []

    async def jwks(request: web.Request) -> web.Response:
        fetched.append(1)
        return web.json_response({"keys": [jwk(private, "u1")]})

    app = web.Application()
    app.router.add_get("/jwks", jwks)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    clock = [1000.0]
    settings = CdsSettings(
        enabled=True,
        issuers=[ISS],
        jwks_url=f"http://127.0.0.1:{port}/jwks",
        jwks_cache_seconds=300,
    )
    check = JwtVerifier(settings, AUD, KeySource(settings, clock=lambda: clock[0]))
    try:
        for _ in range(3):
            token = jwt.encode(claims(), private, algorithm="RS384", headers={"kid": "u1"})
            assert await check.verify(f"Bearer {token}", "svc")
        assert len(fetched) == 1  # cached
    finally:
        await runner.cleanup()
    clock[0] += 301  # due again, and the URL is down: the last keys stay in use
    token = jwt.encode(claims(), private, algorithm="RS384", headers={"kid": "u1"})
    assert await check.verify(f"Bearer {token}", "svc")
    cold = verifier(jwks_url=f"http://127.0.0.1:{port}/jwks")
    with pytest.raises(CdsKeysUnavailable):
        await cold.verify(f"Bearer {token}", "svc")
