"""Webhook delivery: POST the alert as JSON to the site's URL.

Body: the alert exactly as `lisguard check` prints it, plus `status`, `count`, `created_at` and
`links` (the page and the API). Headers: `Idempotency-Key: <alert id>` (the same on every retry),
and, when a secret is set, `X-Lisguard-Signature: sha256=<hex HMAC-SHA256 of the raw body>`.

2xx is delivered. 408, 425, 429 and 5xx, refused connections and timeouts are retried; any other
status is a permanent failure (the receiver refuses this request as it is).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any
from urllib.parse import quote

import aiohttp

from lisguard.alerting.outbox import Attempt
from lisguard.settings import WebhookSettings
from lisguard.store.desk import AlertRecord

SIGNATURE_HEADER = "X-Lisguard-Signature"
RETRY_STATUSES = frozenset({408, 425, 429})


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
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class WebhookChannel:
    name = "webhook"

    def __init__(self, settings: WebhookSettings, public_url: str) -> None:
        if not settings.url.startswith(("http://", "https://")):
            raise ValueError("delivery.webhook.url must be an http:// or https:// URL")
        self.settings = settings
        self.public_url = public_url
        self._session: aiohttp.ClientSession | None = None

    async def deliver(self, record: AlertRecord) -> Attempt:
        body = json.dumps(payload(record, self.public_url), ensure_ascii=False).encode()
        headers = {"Content-Type": "application/json", "Idempotency-Key": record.alert.id}
        if self.settings.secret is not None:
            headers[SIGNATURE_HEADER] = signature(self.settings.secret.get_secret_value(), body)
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
