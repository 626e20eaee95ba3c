"""The notify flow: webhook POSTs as tasks with retries and exponential backoff.

It runs apart from scanning (the watcher starts it and does not wait), so a receiver that
hangs or fails delays only its own notifications.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import cast

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import State
from prefect.runtime import flow_run

from ssftp.logs import audit_event
from ssftp.retry_schedule import exponential_delays
from ssftp.webhooks import Notification, deliver, safe_url


@task(name="send-webhook", cache_policy=NO_CACHE,
      task_run_name="{notification.event} for {notification.file}")
async def send_webhook(notification: Notification) -> int:
    status = await deliver(notification)
    get_run_logger().info("%s webhook for %s delivered (HTTP %d)", notification.event,
                          notification.file, status)
    return status


def _run_name() -> str:
    items = flow_run.parameters.get("notifications", [])
    if not items:
        return "notify"
    first = items[0]
    more = f" and {len(items) - 1} more" if len(items) > 1 else ""
    return f"notify {first.event} for {first.file}{more}"


@flow(name="notify", flow_run_name=_run_name)
async def notify(notifications: list[Notification]) -> None:
    # Prefect types an async task's call as its result; it is an awaitable of its state.
    states = await asyncio.gather(*(
        cast("Awaitable[State[int]]", send_webhook.with_options(
            retries=item.webhook.retries,
            retry_delay_seconds=exponential_delays(item.webhook.retry_delay_seconds,
                                                   item.webhook.retries),
        )(item, return_state=True))
        for item in notifications
    ))
    failed = []
    for item, state in zip(notifications, states, strict=True):
        delivered = state.is_completed()
        audit_event("webhook", logging.INFO if delivered else logging.ERROR,
                    file=item.file, webhook=item.event, url=safe_url(item.webhook.url),
                    delivered=delivered, flow_run_id=flow_run.id)
        if not delivered:
            failed.append(item)
            get_run_logger().error("%s webhook for %s was not delivered after %d retries",
                                   item.event, item.file, item.webhook.retries)
    if failed:
        raise RuntimeError(f"{len(failed)} of {len(notifications)} webhook(s) not delivered")
