"""The notify flow: delivers what the webhook outbox owes, each POST a task with retries and
exponential backoff.

A run is given notification ids, not payloads: its parameters stay small however many files a
batch quarantined (Prefect refuses run parameters over 512 KiB), and what is sent is what the
outbox stored before the move. Runs go apart from scanning (the worker starts them and does
not wait), so a receiver that hangs or fails delays only its own notifications; one whose
retries all fail stays owed and is sent again later, with a longer wait each time.

A failed delivery must not grow Prefect's database without bound. Each task run keeps its
states, logs and events (62 KiB for a POST and its 3 retries to a dead receiver, measured with
scripts/webhook_backlog.py), and each notification owed to a dead receiver was such a task run
at every redelivery: 200 owed added 12 MB per cycle, for ever. Pruning that history instead
would hide the very failures an operator looks for in the UI (and Prefect keeps no per-run
retention to prune with), so a run makes fewer task runs: it sends per receiver (URL), the
first POST alone and the others only once it is delivered, ``CONCURRENT_POSTS`` at a time;
after a failure (with its retries) no further POST to that receiver starts in the run. When
the first one failed, the receiver is taken as down, and everything owed to it, in this run or
not, waits for one more backoff step (:meth:`~ssftp.notify.outbox.Outbox.receiver_down`): a dead
receiver costs one task run per redelivery, however much it is owed. Those never tried go
first, so a notification that its receiver always refuses cannot hold up the others for ever.

A notification that waits untried is deferred, not failed: nothing was sent, so it has no
audit record and no count in ``ssftp_webhooks_total`` (which counts POSTs that failed after
their retries, as Prefect's failed task runs do; a count per deferral would grow with the
backlog, not with the failures); the application log says, once per receiver and run, how
many wait and for how long. Its file's history gets the record of its delivery when it comes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import cast

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import State
from prefect.runtime import flow_run

from ssftp.config.schema import Webhook
from ssftp.errors import NotDeliveredError, OutboxError
from ssftp.logs import APP, audit_event, log_event
from ssftp.metrics import WEBHOOKS
from ssftp.notify.outbox import Outbox, StoredNotification
from ssftp.notify.webhooks import Notification, deliver, safe_url
from ssftp.retry_schedule import backoff_delay, exponential_delays

# Ids per run: a run stays readable in the UI, and its parameters far below Prefect's limit.
IDS_PER_RUN = 200
# A notification whose retries all failed is due again after this, doubling each time, up to
# the most; a receiver that is down for a day gets one attempt an hour, not a flood.
# ``scripts/webhook_backlog.py`` measures what a dead receiver's cycles cost Prefect's DB.
REDELIVERY_SECONDS = 60.0
REDELIVERY_MAX_SECONDS = 3600.0
# POSTs in flight at once per receiver and run, once its first was delivered.
CONCURRENT_POSTS = 8

app_log = logging.getLogger(APP)


def redelivery_delay(step: int) -> float:
    """The wait before a notification's next attempt when its receiver has failed ``step``
    times in a row (its ``backoff``, one step more than before)."""
    return backoff_delay(step, REDELIVERY_SECONDS, REDELIVERY_MAX_SECONDS)


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


@dataclass(frozen=True)
class Owed:
    """A notification a run sends, with what the outbox counts for it."""

    notification: Notification
    attempts: int
    backoff: int


@dataclass(frozen=True)
class Tally:
    """What a run did not deliver to one receiver: failed (POSTed, retried), or left untried."""

    failed: int = 0
    waiting: int = 0


def by_receiver(owed: list[Owed]) -> list[list[Owed]]:
    """What a run sends, per receiver (URL), in the order it is tried: the least tried
    first, then as stored, so one that its receiver refuses goes after the others."""
    queues: dict[str, list[Owed]] = {}
    for item in owed:
        queues.setdefault(item.notification.webhook.url, []).append(item)
    return [sorted(queue, key=lambda item: item.attempts) for queue in queues.values()]


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
        scan just stored, what a crash left owed, what failed earlier and is due again. Each
        is tried once per call: what a run did not deliver waits for its redelivery."""
        tried: set[str] = set()
        while True:
            try:
                owed = await asyncio.to_thread(
                    self.outbox.owed, now=time.time(),
                    limit=IDS_PER_RUN + len(self._in_flight) + len(tried))
            except OutboxError as exc:
                log_event(app_log, "webhook outbox not readable", logging.ERROR,
                          error=str(exc))
                return
            ids = [item for item in owed
                   if item not in self._in_flight and item not in tried][:IDS_PER_RUN]
            if not ids:
                return
            self._in_flight.update(ids)
            tried.update(ids)
            try:
                await self._flow(ids)
            except NotDeliveredError as exc:  # each rescheduled: the next ones may still go
                log_event(app_log, "webhook notifications failed", logging.WARNING,
                          error=str(exc), count=len(ids))
            except Exception as exc:  # the run failed: what it did not settle stays owed
                log_event(app_log, "webhook notifications failed", logging.WARNING,
                          error=f"{type(exc).__name__}: {exc}", count=len(ids))
                return
            finally:
                self._in_flight.difference_update(ids)

    async def _deliver(self, ids: list[str]) -> None:
        owed = await self._owed(ids)
        tallies = await asyncio.gather(*(self._send_to(queue) for queue in by_receiver(owed)))
        failed, waiting = sum(t.failed for t in tallies), sum(t.waiting for t in tallies)
        if failed:
            raise NotDeliveredError(
                f"{failed} of {len(owed)} webhook(s) not delivered and {waiting} not tried as "
                "their receiver failed; they stay owed and are sent again later")

    async def _owed(self, ids: list[str]) -> list[Owed]:
        """Those of ``ids`` still owed, with their webhooks as configured now; what is owed to
        a webhook no longer configured is abandoned."""
        webhooks = self._webhooks()
        owed: list[Owed] = []
        for stored in await asyncio.to_thread(self.outbox.pending, ids):
            hook = webhook_for(stored, webhooks)
            if hook is None:
                await asyncio.to_thread(self.outbox.abandoned, stored.id,
                                        "webhook no longer configured")
                audit_event("webhook", logging.WARNING, file=stored.file, webhook=stored.event,
                            url=safe_url(stored.url), delivered=False, event_id=stored.id,
                            reason="webhook no longer configured", flow_run_id=flow_run.id)
                continue
            owed.append(Owed(Notification.from_stored(stored, hook), stored.attempts,
                             stored.backoff))
        return owed

    async def _send_to(self, queue: list[Owed]) -> Tally:
        """POST what one receiver is owed: the first alone, the others once it is delivered,
        ``CONCURRENT_POSTS`` at a time (a backlog after an outage must not open hundreds of
        connections to it at once); after a failure, none more."""
        first, rest = queue[0], queue[1:]
        if not await self._send(first, first_to_receiver=True):
            return Tally(failed=1, waiting=len(rest))
        slots = asyncio.Semaphore(CONCURRENT_POSTS)
        retry_at: list[float] = []  # when each that failed is due again
        untried: list[str] = []

        async def send(item: Owed) -> None:
            async with slots:
                if retry_at:
                    untried.append(item.notification.id)
                elif not await self._send(item):
                    retry_at.append(time.time() + redelivery_delay(item.backoff + 1))

        await asyncio.gather(*(send(item) for item in rest))
        if untried:
            await asyncio.to_thread(self.outbox.deferred, untried, until=max(retry_at))
            _log_waiting(first.notification.webhook, len(untried), max(retry_at) - time.time())
        return Tally(failed=len(retry_at), waiting=len(untried))

    async def _send(self, item: Owed, *, first_to_receiver: bool = False) -> bool:
        """POST one, with its retries, and record the outcome in the outbox, the audit log and
        ``ssftp_webhooks_total``. When it was the first POST to its receiver in this run and
        failed, the receiver is taken as down: all that is owed to it waits."""
        notification = item.notification
        hook = notification.webhook
        # Prefect types an async task's call as its result; it is an awaitable of its state.
        state = await cast("Awaitable[State[int]]", send_webhook.with_options(
            retries=hook.retries,
            retry_delay_seconds=exponential_delays(hook.retry_delay_seconds, hook.retries),
        )(notification, return_state=True))
        delivered = state.is_completed()
        WEBHOOKS.labels(name=hook.name, result="delivered" if delivered else "failed").inc()
        if delivered:
            await asyncio.to_thread(self.outbox.delivered, notification.id)
        elif first_to_receiver:
            waiting, retry_in = await asyncio.to_thread(
                self.outbox.receiver_down, notification.id, state.message or "failed",
                retry_in=redelivery_delay)
            _log_waiting(hook, waiting, retry_in)
        else:
            await asyncio.to_thread(self.outbox.failed, notification.id,
                                    state.message or "failed",
                                    retry_in=redelivery_delay(item.backoff + 1))
        if not delivered:
            get_run_logger().error("%s webhook for %s was not delivered after %d retries; "
                                   "it stays owed", notification.event, notification.file,
                                   hook.retries)
        audit_event("webhook", logging.INFO if delivered else logging.ERROR,
                    file=notification.file, webhook=notification.event,
                    url=safe_url(hook.url), delivered=delivered, event_id=notification.id,
                    flow_run_id=flow_run.id)
        return delivered


def _log_waiting(hook: Webhook, waiting: int, retry_in: float) -> None:
    """Once per receiver and run: how many wait untried because it failed, and how long."""
    if waiting:
        url = safe_url(hook.url)
        log_event(app_log, "webhooks deferred", logging.WARNING, url=url, count=waiting,
                  retry_in_seconds=round(retry_in))
        get_run_logger().warning("%d more webhook(s) to %s wait %.0f s, untried: one to it "
                                 "failed", waiting, url, retry_in)
