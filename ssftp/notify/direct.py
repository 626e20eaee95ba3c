"""Notifications a command owes (a release from quarantine), sent by that command at once.

They are stored in the outbox first, like every notification (the caller has done so before
the move that causes them); this is one attempt right away, so an operator's release does not
wait for a worker's next look at the outbox. What this attempt does not deliver stays owed,
due now: the next worker (``ssftp up`` or ``ssftp worker``) sends it, with its retries and
backoff. A worker looking at the same moment may send it too: at least once, same ``eventId``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from ssftp.errors import OutboxError, WebhookError
from ssftp.logs import audit_event
from ssftp.notify.outbox import Outbox
from ssftp.notify.webhooks import Notification, deliver, safe_url


async def send_now(outbox: Outbox, notifications: Iterable[Notification]) -> list[str]:
    """One POST each (no retries); returns a line per notification not delivered, which
    stays owed. Each attempt has its audit record, as a notify run's have."""
    left = []
    for notification in notifications:
        try:
            await deliver(notification)
        except WebhookError as exc:
            left.append(f"{exc}; it stays owed and a worker sends it")
            delivered = False
        else:
            delivered = True
            try:
                outbox.delivered(notification.id)
            except OutboxError as exc:  # delivered, not marked: a worker sends it again
                left.append(f"{notification.event} webhook delivered, but {exc}")
        audit_event("webhook", logging.INFO if delivered else logging.ERROR,
                    file=notification.file, webhook=notification.event,
                    url=safe_url(notification.webhook.url), delivered=delivered,
                    event_id=notification.id)
    return left
