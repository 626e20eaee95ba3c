"""deployments.automations against the session's Prefect test harness (a real Prefect server):
the automation ``ssftp automations install`` makes, made twice, and the one it makes firing.

The infected events are built by flows.events and emitted as the scan flow emits them; that the
scan flow emits them (with these labels) is tests/integration/test_flows_events.py's. The
webhook is received by a real HTTP server (tests/support/webhooks.py). The command itself, as a
user runs it, is tests/e2e/test_automations.py's.
"""

from __future__ import annotations

import asyncio
from uuid import UUID

import pytest
from prefect.blocks.core import Block
from prefect.blocks.notifications import SlackWebhook
from prefect.blocks.system import Secret
from prefect.blocks.webhook import Webhook
from prefect.client.orchestration import get_client
from prefect.events.actions import CallWebhook, SendNotification
from prefect.events.schemas.automations import Automation, AutomationCore, EventTrigger
from pydantic import SecretStr

from deployments.automations import (
    automation_name,
    infected_trigger,
    install,
    webhook_block_name,
)
from flows.events import FileEvent, file_resource, related_resources
from ssftp.errors import InvalidValueError
from ssftp.notify.owed import INFECTED
from tests.support.gateway import unique_name
from tests.support.scanning import sha256
from tests.support.waiting import wait_for
from tests.support.webhooks import ReceivedRequest


async def automations_named(name: str) -> list[Automation]:
    async with get_client() as client:
        return await client.read_automations_by_name(name)


async def delete(automation_id: UUID) -> None:
    async with get_client() as client:
        await client.delete_automation(automation_id)


def only_automation(instance: str | None) -> Automation:
    (automation,) = asyncio.run(automations_named(automation_name(instance)))
    return automation


def webhook_url_of(instance: str) -> str:
    block = asyncio.run(Webhook.aload(webhook_block_name(instance)))
    return block.url.get_secret_value()


def test_installing_twice_leaves_one_automation_updated_in_place(prefect_api):
    instance = unique_name()
    first = asyncio.run(install(instance, webhook_url="http://127.0.0.1:9/a?token=first"))
    second = asyncio.run(install(instance, webhook_url="http://127.0.0.1:9/b?token=second"))
    assert (first.created, second.created) == (True, False)
    assert second.id == first.id
    automation = only_automation(instance)
    assert automation.id == first.id
    assert isinstance(automation.trigger, EventTrigger)
    assert automation.trigger.expect == {INFECTED}
    assert automation.trigger.match.model_dump() == {"prefect.resource.id": "ssftp.file.*",
                                                     "ssftp.instance": instance}
    assert automation.trigger.threshold == 1
    (action,) = automation.actions
    assert isinstance(action, CallWebhook)
    assert action.block_document_id == second.block.id == first.block.id
    assert webhook_url_of(instance) == "http://127.0.0.1:9/b?token=second"
    assert "token" not in first.describe() + second.describe()
    assert second.describe().startswith(f"updated automation 'ssftp infected file on "
                                        f"{instance}' (id {first.id}): call-webhook")


def test_installing_over_duplicates_of_the_name_leaves_one(prefect_api):
    """The README's former snippet, run twice, made two automations of the same name."""
    instance = unique_name()
    name = automation_name(instance)
    block_id = asyncio.run(Webhook(url=SecretStr("http://127.0.0.1:9/old")).asave(
        webhook_block_name(instance), overwrite=True))
    duplicate = AutomationCore(name=name, trigger=infected_trigger(instance),
                               actions=[CallWebhook(block_document_id=block_id)])

    async def create_twice() -> None:
        async with get_client() as client:
            for _ in range(2):
                await client.create_automation(duplicate)

    asyncio.run(create_twice())
    installed = asyncio.run(install(instance, webhook_url="http://127.0.0.1:9/new"))
    assert not installed.created
    assert only_automation(instance).id == installed.id


def test_for_all_instances_the_trigger_leaves_out_the_instance(prefect_api):
    installed = asyncio.run(install(None, webhook_url="http://127.0.0.1:9/all"))
    automation = only_automation(None)
    asyncio.run(delete(automation.id))  # it would react to the other tests' events
    assert installed.name == "ssftp infected file on any instance"
    assert isinstance(automation.trigger, EventTrigger)
    assert automation.trigger.match.model_dump() == {"prefect.resource.id": "ssftp.file.*"}
    assert installed.block.name == "ssftp-infected"


def save(block: Block, name: str) -> UUID:
    return asyncio.run(block.asave(name, overwrite=True))


def test_a_notification_block_sends_a_notification_and_a_webhook_block_is_called(prefect_api):
    """Blocks of two types share the name: the bare name is ambiguous, TYPE/NAME is not."""
    instance, name = unique_name(), f"alerts-{unique_name()}"
    slack = save(SlackWebhook(url=SecretStr("https://hooks.slack.invalid/x")), name)
    webhook = save(Webhook(url=SecretStr("http://127.0.0.1:9/own")), name)
    with pytest.raises(InvalidValueError) as ambiguous:
        asyncio.run(install(instance, block=name))
    assert f"slack-webhook/{name}, webhook/{name}" in str(ambiguous.value)
    assert "TYPE/NAME" in str(ambiguous.value)

    asyncio.run(install(instance, block=f"slack-webhook/{name}"))
    (action,) = only_automation(instance).actions
    assert isinstance(action, SendNotification)
    assert action.block_document_id == slack
    assert "ssftp.path" in action.body

    asyncio.run(install(instance, block=f"webhook/{name}"))
    (action,) = only_automation(instance).actions
    assert isinstance(action, CallWebhook)
    assert action.block_document_id == webhook


def test_a_missing_block_is_a_one_line_error_and_installs_nothing(prefect_api):
    instance, missing = unique_name(), f"no-such-{unique_name()}"
    save(SlackWebhook(url=SecretStr("https://hooks.slack.invalid/y")), f"known-{instance}")
    with pytest.raises(InvalidValueError) as refused:
        asyncio.run(install(instance, block=missing))
    message = str(refused.value)
    assert message.startswith(f"--block {missing!r}: no such block on the Prefect server; "
                              "these could: "), message
    assert f"slack-webhook/known-{instance}" in message
    assert "\n" not in message
    assert not asyncio.run(automations_named(automation_name(instance)))


def test_a_block_that_cannot_notify_is_refused(prefect_api):
    instance, name = unique_name(), f"secret-{unique_name()}"
    save(Secret(value=SecretStr("not a channel")), name)
    with pytest.raises(InvalidValueError, match=f"block secret/{name} can neither notify nor "
                                                "be called as a webhook"):
        asyncio.run(install(instance, block=name))
    assert not asyncio.run(automations_named(automation_name(instance)))


# --- the automation firing --------------------------------------------------------------------


def infected_event(instance: str, path: str, *, hashed: bool = True) -> FileEvent:
    """The event a scan run emits for an infected file (flows.events, as flows.scan uses it);
    an unreadable file's has no sha256, and its resource id then holds its path."""
    return FileEvent(
        name=INFECTED,
        resource=file_resource(sha256=sha256(path.encode()) if hashed else None, path=path,
                               size=68, account="partner-b", instance=instance,
                               signature="Eicar-Signature", verdict="infected"),
        related=related_resources(flow_run_id=None, account="partner-b", instance=instance),
        payload={})


PROBE = "partner-b/probe.com"


def wait_until_live(instance: str, calls: list[ReceivedRequest]) -> None:
    """The server takes a new automation into its triggers a moment after the API call that
    made it returned (on SQLite, a task after the commit): an event before that is never
    matched. Probe events until one is called (their calls are left out of the checks)."""
    def called() -> bool:
        if any(call.json()["path"] == PROBE for call in list(calls)):
            return True
        infected_event(instance, PROBE).emit()
        return False

    wait_for("the new automation's call for a probe event", called, timeout=60, interval=1)


def test_the_installed_automation_calls_its_webhook_for_its_instance_only(prefect_api,
                                                                           receiver):
    instance, other = unique_name(), unique_name()
    asyncio.run(install(instance, webhook_url=receiver.url + "/infected?token=t"))
    wait_until_live(instance, receiver.requests)

    def calls() -> list[dict[str, object]]:
        return [call.json() for call in list(receiver.requests)
                if call.json()["path"] != PROBE]

    # The triggers service takes events in order: when this instance's calls have arrived,
    # the other instance's event, emitted first, has been judged too.
    infected_event(other, "partner-b/elsewhere.com").emit()
    quoted = 'partner-b/say "hi".com'  # the payload is JSON whatever a name holds
    infected_event(instance, quoted, hashed=False).emit()
    infected_event(instance, "partner-b/eicar.com").emit()
    wait_for("the automation's calls for both files", lambda: len(calls()) >= 2, timeout=60)
    assert {request.path for request in receiver.requests} == {"/infected?token=t"}
    assert sorted(calls(), key=str) == sorted([
        {"file": f"ssftp.file.unhashed.{instance}.{quoted}", "path": quoted,
         "signature": "Eicar-Signature"},
        {"file": f"ssftp.file.{sha256(b'partner-b/eicar.com')}", "path": "partner-b/eicar.com",
         "signature": "Eicar-Signature"}], key=str)
