"""The notify flow: webhook POSTs as tasks with retries and exponential backoff.

It runs apart from scanning (the watcher starts it and does not wait), so a receiver that
hangs or fails delays only its own notifications.
"""

from __future__ import annotations

import asyncio

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from ssftp.webhooks import Notification, deliver


def backoff(first_delay: float, retries: int) -> list[float]:
    return [first_delay * 2**attempt for attempt in range(retries)]


@task(name="send-webhook", cache_policy=NO_CACHE,
      task_run_name="{notification.event} for {notification.file}")
async def send_webhook(notification: Notification) -> int:
    status = await deliver(notification)
    get_run_logger().info("%s webhook for %s delivered (HTTP %d)", notification.event,
                          notification.file, status)
    return status


@flow(name="notify", flow_run_name="notify {notifications[0].event} and more")
async def notify(notifications: list[Notification]) -> None:
    states = await asyncio.gather(*(
        send_webhook.with_options(
            retries=item.webhook.retries,
            retry_delay_seconds=backoff(item.webhook.retry_delay_seconds, item.webhook.retries),
        )(item, return_state=True)
        for item in notifications
    ))
    failed = [item for item, state in zip(notifications, states, strict=True)
              if not state.is_completed()]
    for item in failed:
        get_run_logger().error("%s webhook for %s was not delivered after %d retries",
                               item.event, item.file, item.webhook.retries)
    if failed:
        raise RuntimeError(f"{len(failed)} of {len(notifications)} webhook(s) not delivered")
