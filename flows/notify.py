"""The notify flow: delivers what the webhook outbox owes, each POST a task with retries and
exponential backoff.

A run is given notification ids, not payloads: its parameters stay small however many files a
batch quarantined (Prefect refuses run parameters over 512 KiB), and what is sent is what the
outbox stored before the move. Runs go apart from scanning (the worker starts them and does
not wait), so a receiver that hangs or fails delays only its own notifications; one whose
retries all fail stays owed and is sent again later, with a longer wait each time.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import cast

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import State
from prefect.runtime import flow_run

from ssftp.config.schema import Webhook
from ssftp.errors import OutboxError
from ssftp.logs import APP, audit_event, log_event
from ssftp.metrics import WEBHOOKS
from ssftp.outbox import Outbox, StoredNotification
from ssftp.retry_schedule import backoff_delay, exponential_delays
from ssftp.webhooks import Notification, deliver, safe_url

# Ids per run: a run stays readable in the UI, and its parameters far below Prefect's limit.
IDS_PER_RUN = 200
# A notification whose retries all failed is due again after this, doubling each time, up to
# the most; a receiver that is down for a day gets one attempt an hour, not a flood.
REDELIVERY_SECONDS = 60.0
REDELIVERY_MAX_SECONDS = 3600.0
# POSTs in flight at once per run: a backlog after an outage must not open hundreds of
# connections to one receiver at the same moment.
CONCURRENT_POSTS = 8

app_log = logging.getLogger(APP)


def redelivery_delay(attempts: int) -> float:
    """How long a notification that has failed ``attempts`` times waits before the next."""
    return backoff_delay(attempts, REDELIVERY_SECONDS, REDELIVERY_MAX_SECONDS)


def webhook_for(stored: StoredNotification, webhooks: list[Webhook]) -> Webhook | None:
    """The configured webhook a stored notification is for, or None when the config no longer
    has it (an event's subscriber removed or moved to another URL)."""
    return next((hook for hook in webhooks
                 if hook.name == stored.event and hook.url == stored.url), None)


@task(name="send-webhook", cache_policy=NO_CACHE,
      task_run_name="{notification.event} for {notification.file}")
async def send_webhook(notification: Notification) -> int:
    status = await deliver(notification)
    get_run_logger().info("%s webhook for %s delivered (HTTP %d, event %s)", notification.event,
                          notification.file, status, notification.id)
    return status


def _run_name() -> str:
    count = len(flow_run.parameters.get("ids", []))
    return f"notify {count} webhook{'s' if count != 1 else ''}"


class NotifyRuns:
    """The notify flow bound to this process's outbox and its current webhooks. These are read
    when a run starts: a reloaded config's secret and retries apply to what is still owed, and
    what is owed to a webhook the config no longer has is abandoned, with an audit record."""

    def __init__(self, outbox: Outbox, webhooks: Callable[[], list[Webhook]]) -> None:
        self.outbox = outbox
        self._webhooks = webhooks
        self._in_flight: set[str] = set()

        @flow(name="notify", flow_run_name=_run_name)
        async def notify(ids: list[str]) -> None:
            await self._deliver(ids)

        self._flow = notify

    async def send_owed(self) -> None:
        """Deliver everything due now that no run of this process is sending already: what a
        scan just stored, what a crash left owed, what failed earlier and is due again."""
        while True:
            try:
                owed = await asyncio.to_thread(self.outbox.owed, now=time.time(),
                                               limit=IDS_PER_RUN + len(self._in_flight))
            except OutboxError as exc:
                log_event(app_log, "webhook outbox not readable", logging.ERROR,
                          error=str(exc))
                return
            ids = [item for item in owed if item not in self._in_flight][:IDS_PER_RUN]
            if not ids:
                return
            self._in_flight.update(ids)
            try:
                await self._flow(ids)
            except Exception as exc:  # the run failed: what it did not settle stays owed
                log_event(app_log, "webhook notifications failed", logging.WARNING,
                          error=f"{type(exc).__name__}: {exc}", count=len(ids))
                return
            finally:
                self._in_flight.difference_update(ids)

    async def _deliver(self, ids: list[str]) -> None:
        webhooks = self._webhooks()
        sending: list[Notification] = []
        attempts: dict[str, int] = {}
        for stored in await asyncio.to_thread(self.outbox.pending, ids):
            hook = webhook_for(stored, webhooks)
            if hook is None:
                await asyncio.to_thread(self.outbox.abandoned, stored.id,
                                        "webhook no longer configured")
                audit_event("webhook", logging.WARNING, file=stored.file, webhook=stored.event,
                            url=safe_url(stored.url), delivered=False, event_id=stored.id,
                            reason="webhook no longer configured", flow_run_id=flow_run.id)
                continue
            sending.append(Notification.from_stored(stored, hook))
            attempts[stored.id] = stored.attempts
        slots = asyncio.Semaphore(CONCURRENT_POSTS)
        states = await asyncio.gather(*(self._send(item, slots) for item in sending))
        failed = 0
        for item, state in zip(sending, states, strict=True):
            failed += not await self._settle(item, state, attempts[item.id])
        if failed:
            raise RuntimeError(f"{failed} of {len(sending)} webhook(s) not delivered; they "
                               "stay owed and are sent again later")

    @staticmethod
    async def _send(item: Notification, slots: asyncio.Semaphore) -> State[int]:
        async with slots:
            # Prefect types an async task's call as its result; it is an awaitable of its state.
            return await cast("Awaitable[State[int]]", send_webhook.with_options(
                retries=item.webhook.retries,
                retry_delay_seconds=exponential_delays(item.webhook.retry_delay_seconds,
                                                       item.webhook.retries),
            )(item, return_state=True))

    async def _settle(self, item: Notification, state: State[int], attempts: int) -> bool:
        """Mark the outcome in the outbox, the audit log and ``ssftp_webhooks_total``."""
        delivered = state.is_completed()
        WEBHOOKS.labels(name=item.webhook.name, result="delivered" if delivered else "failed").inc()
        if delivered:
            await asyncio.to_thread(self.outbox.delivered, item.id)
        else:
            await asyncio.to_thread(self.outbox.failed, item.id, state.message or "failed",
                                    retry_in=redelivery_delay(attempts + 1))
            get_run_logger().error("%s webhook for %s was not delivered after %d retries; "
                                   "it stays owed", item.event, item.file, item.webhook.retries)
        audit_event("webhook", logging.INFO if delivered else logging.ERROR,
                    file=item.file, webhook=item.event, url=safe_url(item.webhook.url),
                    delivered=delivered, event_id=item.id, flow_run_id=flow_run.id)
        return delivered
