"""Webhook delivery: POST the alert as JSON to the site's URL.

Body: the alert exactly as `lisguard check` prints it, plus `status`, `count`, `created_at` and
`links` (the page and the API). Headers: `Idempotency-Key: <alert id>` (the same on every retry),
and, when a secret is set, the Standard Webhooks headers (https://www.standardwebhooks.com/):
- `webhook-id`: the alert id, the same on every retry of its delivery (receivers deduplicate);
- `webhook-timestamp`: this attempt's time, integer Unix seconds (receivers refuse old ones:
  a captured request cannot be replayed later);
- `webhook-signature`: `v1,<base64 HMAC-SHA256 of "{webhook-id}.{webhook-timestamp}.{body}">`.
The key is the secret's bytes: a `whsec_<base64>` secret (the standard's format, 24 to 64 random
bytes) is base64-decoded; any other string is used as its UTF-8 bytes (deprecated: receivers'
Standard Webhooks libraries expect whsec_).

Deprecated, sent for this release only: `X-Lisguard-Signature: sha256=<hex HMAC-SHA256 of the
raw body>` keyed with the secret string as configured. It covers no time: replayable.

2xx is delivered. 408, 425, 429 and 5xx, refused connections and timeouts are retried; any other
status is a permanent failure (the receiver refuses this request as it is).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import aiohttp
import structlog

from lisguard.alerting.outbox import Attempt
from lisguard.settings import WebhookSettings
from lisguard.store.desk import AlertRecord

SIGNATURE_HEADER = "X-Lisguard-Signature"  # deprecated: see the module docstring
SECRET_PREFIX = "whsec_"
RETRY_STATUSES = frozenset({408, 425, 429})

log = structlog.get_logger("lisguard.delivery")


def links(record: AlertRecord, public_url: str) -> dict[str, str]:
    base = public_url.rstrip("/")
    alert = record.alert
    return {
        "page": f"{base}/#alert={alert.id}",
        "self": f"{base}/api/alerts/{alert.id}",
        "patient": f"{base}/api/patients/{quote(alert.patient_key, safe='')}",
    }


def payload(record: AlertRecord, public_url: str) -> dict[str, Any]:
    return {
        **record.alert.to_json_dict(),
        "status": record.status,
        "count": record.repeat_count,
        "created_at": record.created_at.isoformat(),
        "links": links(record, public_url),
    }


def signature(secret: str, body: bytes) -> str:
    """The deprecated X-Lisguard-Signature value."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def signing_key(secret: str) -> bytes:
    """The Standard Webhooks key of a configured secret; ValueError for a bad whsec_ secret."""
    if not secret.startswith(SECRET_PREFIX):
        return secret.encode()
    try:
        key = base64.b64decode(secret.removeprefix(SECRET_PREFIX), validate=True)
    except binascii.Error as exc:
        raise ValueError("delivery.webhook.secret: whsec_ must be followed by base64") from exc
    if not 24 <= len(key) <= 64:
        raise ValueError("delivery.webhook.secret: a whsec_ secret holds 24 to 64 bytes")
    return key


def standard_headers(key: bytes, msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": "v1," + base64.b64encode(digest).decode(),
    }


class WebhookChannel:
    name = "webhook"

    def __init__(
        self,
        settings: WebhookSettings,
        public_url: str,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not settings.url.startswith(("http://", "https://")):
            raise ValueError("delivery.webhook.url must be an http:// or https:// URL")
        self.settings = settings
        self.public_url = public_url
        self.accepts_test = settings.test_alerts  # the body says `"test": true`
        self.clock = clock
        secret = settings.secret.get_secret_value() if settings.secret is not None else None
        self._secret = secret
        self._key = None if secret is None else signing_key(secret)  # fails at start-up
        if secret is not None and not secret.startswith(SECRET_PREFIX):
            log.warning(
                "webhook_secret_not_whsec",
                advice="set delivery.webhook.secret to whsec_ + base64 of 32 random bytes",
            )
        self._session: aiohttp.ClientSession | None = None

    def headers(self, msg_id: str, body: bytes) -> dict[str, str]:
        # msg_id: the alert id (hex: never a "." that would blur the signed fields), or its
        # escalation's id (lisguard.transport.escalation_delivery)
        headers = {"Content-Type": "application/json", "Idempotency-Key": msg_id}
        if self._secret is not None and self._key is not None:
            headers.update(standard_headers(self._key, msg_id, int(self.clock()), body))
            headers[SIGNATURE_HEADER] = signature(self._secret, body)
        return headers

    async def deliver(self, record: AlertRecord) -> Attempt:
        body = json.dumps(payload(record, self.public_url), ensure_ascii=False).encode()
        return await self.post(body, record.alert.id)

    async def post(self, body: bytes, msg_id: str) -> Attempt:
        """POST one signed body; 2xx delivered, 5xx and RETRY_STATUSES retried later."""
        headers = self.headers(msg_id, body)
        if self._session is None:
            timeout = aiohttp.ClientTimeout(total=self.settings.timeout_seconds)
            self._session = aiohttp.ClientSession(timeout=timeout)
        try:
            async with self._session.post(self.settings.url, data=body, headers=headers) as resp:
                status = resp.status
                await resp.read()
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            return Attempt(False, detail=f"{type(exc).__name__}: {exc}"[:300])
        if 200 <= status < 300:
            return Attempt(True, detail=f"HTTP {status}")
        transient = status >= 500 or status in RETRY_STATUSES
        return Attempt(False, permanent=not transient, detail=f"HTTP {status}")

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
