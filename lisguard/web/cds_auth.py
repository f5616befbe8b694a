"""Who may ask for cards: the EHR's JWT, as CDS Hooks 2.0 ("Trusting CDS Clients") says.

Each service call carries `Authorization: Bearer <JWT>` signed by the EHR with an asymmetric key
(RS384 or ES384; `cds.algorithms`). lisguard checks, with PyJWT:
- the signature, against the site's copy of the EHR's public keys: a JWKS file (`cds.jwks_file`,
  works offline; re-read when it changes) or URL (`cds.jwks_url`, cached `jwks_cache_seconds`,
  fetched again sooner for a key id it does not hold; the last keys stay in use while the URL
  cannot be reached). A `jku` header is never followed: the keys are the site's to choose;
- `iss` one of `cds.issuers`; `aud` this service's URL (`cds.audience`, or that URL plus
  `/{service id}`); `exp` not passed and at most 5 minutes ahead, `iat` not in the future
  (`clock_skew_seconds` either way); `sub` present; `jti` never seen before (a replay cache
  kept until the token expires).
Any failure is a 401 with a JSON reason, and never a card.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import jwt
import structlog

from lisguard.settings import CdsSettings

log = structlog.get_logger("lisguard.cds")

MAX_LIFETIME_SECONDS = 300  # CDS Hooks: exp no more than 5 minutes in the future
REFETCH_AFTER_SECONDS = 60.0  # an unknown key id refetches the JWKS URL at most this often
MAX_SEEN_JTI = 100_000  # bounds the replay cache under a flood of (valid) tokens
REQUIRED_CLAIMS = ["iss", "sub", "aud", "exp", "iat", "jti"]


class CdsAuthError(Exception):
    """The request carries no token lisguard trusts (401); the message says why."""


class CdsKeysUnavailable(Exception):
    """No keys to check against: the JWKS file or URL could not be read (503)."""


@dataclass(frozen=True, slots=True)
class CdsClient:
    """The EHR a verified token speaks for."""

    issuer: str
    subject: str  # the EHR's client id
    jti: str


class KeySource:
    """The EHR's public keys from the JWKS file or URL."""

    def __init__(self, settings: CdsSettings, clock: Callable[[], float] = time.monotonic) -> None:
        self.file, self.url = settings.jwks_file, settings.jwks_url
        self.cache_seconds = settings.jwks_cache_seconds
        self.clock = clock
        self._keys: jwt.PyJWKSet | None = None
        self._stamp: float | None = None  # the file's mtime, or when the URL was fetched
        self._lock = asyncio.Lock()

    async def key(self, kid: str | None) -> jwt.PyJWK:
        keys = await self._current(stale=False)
        found = _pick(keys, kid)
        if found is None and self.url:
            keys = await self._current(stale=True)  # a key the EHR has rolled over to
            found = _pick(keys, kid)
        if found is None:
            raise CdsAuthError(
                f"no key {kid!r} in the EHR's key set"
                if kid
                else "the token names no key id (kid) and the key set has several"
            )
        return found

    async def _current(self, *, stale: bool) -> jwt.PyJWKSet:
        async with self._lock:
            if self.file is not None:
                return self._from_file(self.file)
            now = self.clock()
            due = self._stamp is None or now - self._stamp >= self.cache_seconds
            if stale and self._stamp is not None:
                due = due or now - self._stamp >= REFETCH_AFTER_SECONDS
            if due or self._keys is None:
                await self._fetch(now)
            if self._keys is None:
                raise CdsKeysUnavailable("the EHR's key set (cds.jwks_url) could not be fetched")
            return self._keys

    def _from_file(self, path: Path) -> jwt.PyJWKSet:
        try:
            stamp = path.stat().st_mtime
            if self._keys is None or stamp != self._stamp:
                self._keys = _key_set(json.loads(path.read_text(encoding="utf-8")))
                self._stamp = stamp
        except (OSError, ValueError, jwt.PyJWTError) as exc:
            if self._keys is None:
                raise CdsKeysUnavailable(f"cds.jwks_file {path}: {exc}") from None
            log.error("cds_jwks_file_unreadable", path=str(path), error=str(exc))
        return self._keys

    async def _fetch(self, now: float) -> None:
        self._stamp = now  # success or not: no refetch storm while the URL is down
        try:
            timeout = aiohttp.ClientTimeout(total=10)
            async with (
                aiohttp.ClientSession(timeout=timeout) as session,
                session.get(self.url, headers={"Accept": "application/json"}) as response,
            ):
                response.raise_for_status()
                self._keys = _key_set(await response.json(content_type=None))
        except (aiohttp.ClientError, TimeoutError, ValueError, jwt.PyJWTError) as exc:
            # offline: the keys fetched last stay in use
            log.error("cds_jwks_fetch_failed", url=self.url, error=str(exc) or type(exc).__name__)


def _key_set(data: Any) -> jwt.PyJWKSet:
    if not isinstance(data, dict):
        raise ValueError("a JWKS document is a JSON object with 'keys'")
    return jwt.PyJWKSet.from_dict(data)


def _pick(keys: jwt.PyJWKSet, kid: str | None) -> jwt.PyJWK | None:
    if kid:
        return next((k for k in keys.keys if k.key_id == kid), None)
    return keys.keys[0] if len(keys.keys) == 1 else None


class JwtVerifier:
    def __init__(
        self,
        settings: CdsSettings,
        audience: str,
        keys: KeySource | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.audience = audience.rstrip("/")
        self.issuers = frozenset(settings.issuers)
        self.keys = keys or KeySource(settings)
        self.clock = clock
        self._seen: dict[tuple[str, str], float] = {}  # (iss, jti) -> exp

    async def verify(self, authorization: str, service_id: str) -> CdsClient:
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise CdsAuthError("send the EHR's JWT as 'Authorization: Bearer <JWT>'")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise CdsAuthError("the bearer token is not a JWT") from None
        alg = header.get("alg")
        if alg not in self.settings.algorithms:
            raise CdsAuthError(f"algorithm {alg!r} not accepted: {self.settings.algorithms}")
        key = await self.keys.key(header.get("kid"))
        skew = self.settings.clock_skew_seconds
        try:
            claims = jwt.decode(
                token,
                key.key,
                algorithms=[alg],
                audience=[self.audience, f"{self.audience}/{service_id}"],
                leeway=skew,
                options={"require": REQUIRED_CLAIMS, "verify_iat": True},
            )
        except jwt.PyJWTError as exc:
            raise CdsAuthError(f"token refused: {exc}") from None
        except (ValueError, TypeError):  # a key of another type than the algorithm's
            raise CdsAuthError("token refused: the key does not fit the algorithm") from None
        now = self.clock()
        issuer, jti = str(claims["iss"]), str(claims["jti"])
        if issuer not in self.issuers:
            raise CdsAuthError(f"issuer {issuer!r} is not one of cds.issuers")
        if float(claims["exp"]) > now + MAX_LIFETIME_SECONDS + skew:
            raise CdsAuthError("token refused: exp is more than 5 minutes ahead")
        if float(claims["iat"]) > now + skew:
            raise CdsAuthError("token refused: iat is in the future")
        self._remember(issuer, jti, float(claims["exp"]) + skew, now)
        return CdsClient(issuer, str(claims["sub"]), jti)

    def _remember(self, issuer: str, jti: str, until: float, now: float) -> None:
        if (issuer, jti) in self._seen:
            raise CdsAuthError("token refused: jti already used (a replay)")
        if len(self._seen) >= MAX_SEEN_JTI:
            self._seen = {k: v for k, v in self._seen.items() if v > now}
            while len(self._seen) >= MAX_SEEN_JTI:
                self._seen.pop(next(iter(self._seen)))
        self._seen[(issuer, jti)] = until
