"""Prefect events read back through the API of the session's Prefect server."""

from __future__ import annotations

import asyncio

from prefect.client.orchestration import get_client
from prefect.events.filters import EventFilter, EventNameFilter, EventResourceFilter
from prefect.events.schemas.events import ReceivedEvent, ResourceSpecification

from tests.support.waiting import wait_for

# --- reading events back through the API ------------------------------------------------------


async def _read_events(names: list[str], instance: str,
                       resource_ids: list[str] | None = None) -> list[ReceivedEvent]:
    resource = EventResourceFilter(id_prefix=["ssftp.file."], id=resource_ids,
                                   labels=ResourceSpecification({"ssftp.instance": instance}))
    async with get_client() as client:
        page = await client.read_events(
            EventFilter(event=EventNameFilter(name=names), resource=resource), limit=50)
    return page.events


def events_of(names: list[str], instance: str, count: int,
              resource_ids: list[str] | None = None) -> list[ReceivedEvent]:
    """The events of these names from ``instance``, once at least ``count`` are stored (the
    server persists them in batches)."""
    found: list[ReceivedEvent] = []

    def stored() -> bool:
        found[:] = asyncio.run(_read_events(names, instance, resource_ids))
        return len(found) >= count

    wait_for(f"{count} event(s) {names} from {instance}", stored, timeout=60)
    return found
