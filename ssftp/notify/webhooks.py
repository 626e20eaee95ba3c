"""Webhook notifications: the payload, its signature, the POST (which outcome owes which:
:mod:`ssftp.notify.owed`).

The payload keeps sSFTP's fields (``username``, ``scanMessage``, ``filePath``,
``timeGenerated``), with ``username`` actually filled, and adds what a receiver needs to act
without asking back. With a ``secret`` the body is signed: the ``X-Ssftp-Signature`` header is
``sha256=<hex HMAC-SHA256 of the exact body bytes>``, as GitHub-style receivers expect.

Every notification has an ``eventId`` (also the ``X-Ssftp-Event-Id`` header). It is sent at
least once (see :mod:`ssftp.notify.outbox`); a notification sent again carries the same id, so a
receiver can drop what it has seen. Bodies name files as the data root's areas do
(``staging/acme/x.pdf``), never by host path, and a file that could not be scanned is told in
words of ssftp's own, not in clamd's error (which names the socket on the host).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ssftp.config.schema import Webhook
from ssftp.errors import WebhookError
from ssftp.logs import one_line
from ssftp.notify.outbox import StoredNotification
from ssftp.scan.results import ScanResult
from ssftp.scan.verdict import VerdictKind

SIGNATURE_HEADER = "X-Ssftp-Signature"
EVENT_HEADER = "X-Ssftp-Event"
EVENT_ID_HEADER = "X-Ssftp-Event-Id"
NOT_SCANNED_MESSAGE = "the file could not be scanned yet; it stays in staging and is retried"


def payload(event: str, result: ScanResult, instance: str, event_id: str,
            extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The body's fields; ``extra`` adds those of an event of its own (a release's reason,
    operator and approver)."""
    message = NOT_SCANNED_MESSAGE if result.verdict == VerdictKind.ERROR else result.detail
    return {
        "eventId": event_id,
        "username": result.account or "",
        "scanMessage": message,
        "filePath": result.source,
        "timeGenerated": datetime.now(UTC).isoformat(timespec="seconds"),
        "event": event,
        # Why the file was judged: a scan, a rescan, or a content policy that blocked it.
        "reason": "policy" if result.verdict is VerdictKind.BLOCKED else result.reason,
        "verdict": result.verdict,
        "inspected": result.inspected,
        "signature": result.signature,
        "engine": result.engine,
        "database": result.database,
        "engines": result.engines,
        "sha256": result.sha256,
        "size": result.size,
        "account": result.account,
        "destination": result.destination,
        "instance": instance,
        "flowRunId": result.flow_run_id,
        **(extra or {}),
    }


def sign(body: bytes, secret: str) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class Notification:
    """One POST to one webhook: what the notify flow sends and retries."""

    webhook: Webhook
    event: str
    body: bytes
    file: str  # for run names and logs: one line of valid UTF-8 whatever the name's bytes
    id: str

    @classmethod
    def build(cls, webhook: Webhook, event: str, result: ScanResult, instance: str,
              extra: Mapping[str, Any] | None = None) -> Notification:
        event_id = str(uuid.uuid4())
        # ASCII-escaped, so a file name that is not valid UTF-8 still makes a valid body.
        body = json.dumps(payload(event, result, instance, event_id, extra)).encode()
        return cls(webhook, event, body, one_line(result.file), event_id)

    @classmethod
    def from_stored(cls, stored: StoredNotification, webhook: Webhook) -> Notification:
        return cls(webhook, stored.event, stored.body, stored.file, stored.id)

    def stored(self) -> StoredNotification:
        """The outbox's row: everything but the webhook's secret and settings."""
        return StoredNotification(self.id, self.event, self.webhook.url, self.file, self.body)


async def deliver(notification: Notification) -> int:
    """POST once; raises :class:`WebhookError` unless the receiver answers 2xx, in full, within
    the webhook's ``timeout``.

    The timeout bounds the whole attempt (connect, send, wait, read the answer to its end):
    httpx's own is per read, and a receiver that trickled its answer a byte at a time kept a
    delivery open for ever, neither delivered nor retried. The answer's body is read and
    dropped, so a large one costs no memory.
    """
    import httpx  # on first use: see safe_url

    hook = notification.webhook
    headers = {"Content-Type": "application/json", EVENT_HEADER: notification.event,
               EVENT_ID_HEADER: notification.id, "User-Agent": "ssftp"}
    if hook.secret is not None:
        headers[SIGNATURE_HEADER] = sign(notification.body, hook.secret.get_secret_value())
    try:
        async with (asyncio.timeout(hook.timeout),
                    httpx.AsyncClient(timeout=hook.timeout) as client,
                    client.stream("POST", hook.url, content=notification.body,
                                  headers=headers) as response):
            async for _ in response.aiter_raw():
                pass
    except TimeoutError:
        raise WebhookError(f"{notification.event} webhook to {safe_url(hook.url)} failed: no "
                           f"complete answer within its timeout ({hook.timeout:g} s)") from None
    except httpx.HTTPError as exc:
        raise WebhookError(f"{notification.event} webhook to {safe_url(hook.url)} failed: "
                           f"{type(exc).__name__}: {exc}") from None
    if not response.is_success:
        raise WebhookError(f"{notification.event} webhook to {safe_url(hook.url)} answered "
                           f"HTTP {response.status_code}")
    return response.status_code


def safe_url(url: str) -> str:
    """The URL without credentials or query (both may carry a token)."""
    # httpx is imported on first use: it brings its command line's rich, pygments and click,
    # 8 MB of every `ssftp serve` process, which sends no webhook.
    import httpx

    parsed = httpx.URL(url)
    return str(parsed.copy_with(userinfo=b"", query=None, fragment=None))
