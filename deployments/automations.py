"""The Prefect Automation that alerts on an infected file: ``ssftp automations install``.

Its trigger is one ``ssftp.file.infected`` event (:mod:`flows.events`) from one instance (the
event's ``ssftp.instance`` label), or from every instance on the server; its action goes
through a block of the Prefect server, chosen by what Prefect can do with the block's type:

- a Webhook block: ``call-webhook`` with a JSON body (file, path, signature). ``--webhook URL``
  creates or updates the block ``ssftp-infected-<instance>`` for it; an operator's own
  Webhook block does as well. Prefect's ``send-notification`` refuses a Webhook block (it has
  no ``notify`` capability), and only ``call-webhook`` sends a body of our choosing.
- any block that can notify (Slack, Microsoft Teams, email, PagerDuty, a custom webhook, ...:
  Prefect's notification blocks, with the ``notify`` capability): ``send-notification`` with a
  subject and a text body. ``call-webhook`` takes Webhook blocks only.

Installing is idempotent by the automation's name: an existing one is updated in place (the
same id), and further ones of that name (the README's former snippet, run twice) are deleted,
so there is never more than one. A webhook's URL often carries a secret token: it goes into
the block's secret field (the API shows it as ``********``) and is never printed or logged.

The work is plain async functions on Prefect's client, run against whatever server
``PREFECT_API_URL`` names; :func:`prefect_errors` is where Prefect's and httpx's failures
become :class:`~ssftp.errors.SsftpError` lines.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import httpx
from prefect.blocks.webhook import Webhook
from prefect.client.orchestration import PrefectClient, get_client
from prefect.events.actions import ActionTypes, CallWebhook, SendNotification
from prefect.events.schemas.automations import Automation, AutomationCore, EventTrigger, Posture
from prefect.exceptions import PrefectException
from pydantic import SecretStr

from flows.events import FILE_RESOURCE
from ssftp.addresses import check_http_url
from ssftp.errors import InvalidValueError, PrefectServerError
from ssftp.logs import one_line
from ssftp.notify.owed import INFECTED

# Every automation this module installs carries it: ``ssftp automations list`` shows those.
TAG = "ssftp"
# The block type of Prefect's Webhook block (``prefect.blocks.webhook.Webhook``).
WEBHOOK_BLOCK_TYPE = "webhook"
# The call-webhook body: JSON whatever a file's name holds (``tojson`` quotes and escapes).
WEBHOOK_PAYLOAD = ('{"file": {{ event.resource.id | tojson }}, '
                   '"path": {{ event.resource["ssftp.path"] | tojson }}, '
                   '"signature": {{ event.resource["ssftp.signature"] | tojson }}}')
NOTIFICATION_SUBJECT = 'ssftp: infected file on {{ event.resource["ssftp.instance"] }}'
NOTIFICATION_BODY = ('{{ event.resource["ssftp.path"] }} is infected '
                     '({{ event.resource["ssftp.signature"] }}) and was put in quarantine on '
                     '{{ event.resource["ssftp.instance"] }}. '
                     'File: {{ event.resource.id }}.')


def automation_name(instance: str | None) -> str:
    """``ssftp infected file on <instance>``, or ``... on any instance`` (None)."""
    return f"ssftp infected file on {'any instance' if instance is None else instance}"


def webhook_block_name(instance: str | None) -> str:
    """``ssftp-infected-<instance>`` in lowercase letters, digits and dashes (all a block's
    name may hold), or ``ssftp-infected`` for every instance: no instance's name is empty."""
    if instance is None:
        return "ssftp-infected"
    return "ssftp-infected-" + re.sub(r"[^a-z0-9-]+", "-", instance.lower()).strip("-")


def infected_trigger(instance: str | None) -> EventTrigger:
    """Fires once per ``ssftp.file.infected`` event, of ``instance`` only unless None."""
    match: dict[str, str | list[str]] = {"prefect.resource.id": f"{FILE_RESOURCE}*"}
    if instance is not None:
        match["ssftp.instance"] = instance
    return EventTrigger(expect={INFECTED}, match=match, posture=Posture.Reactive, threshold=1)


@dataclass(frozen=True)
class BlockRef:
    """A block document of the Prefect server, as ``<type slug>/<name>`` names it."""

    id: UUID
    type_slug: str
    name: str
    capabilities: tuple[str, ...]

    def __str__(self) -> str:
        return f"{self.type_slug}/{self.name}"

    def action(self) -> ActionTypes:
        """What Prefect can do with this block on an infection (see the module docstring)."""
        if self.type_slug == WEBHOOK_BLOCK_TYPE:
            return CallWebhook(block_document_id=self.id, payload=WEBHOOK_PAYLOAD)
        if "notify" in self.capabilities:
            return SendNotification(block_document_id=self.id, subject=NOTIFICATION_SUBJECT,
                                    body=NOTIFICATION_BODY)
        raise InvalidValueError(f"block {self} can neither notify nor be called as a webhook: "
                                "give a notification block (Slack, email, ...) or a Webhook "
                                "block")

    @classmethod
    def of(cls, document: dict[str, Any]) -> BlockRef:
        """From a block document as the API's ``/block_documents/filter`` returns it."""
        return cls(UUID(document["id"]), document["block_type"]["slug"], document["name"],
                   tuple(document["block_schema"]["capabilities"]))


@dataclass(frozen=True)
class Installed:
    """What :func:`install` did, told in one line."""

    created: bool
    name: str
    id: UUID
    action: str
    block: BlockRef

    def describe(self) -> str:
        verb = "created" if self.created else "updated"
        return one_line(f"{verb} automation {self.name!r} (id {self.id}): {self.action} "
                        f"through block {self.block}")


async def _named_blocks(client: PrefectClient, name: str | None) -> list[BlockRef]:
    """The named (not anonymous) block documents called ``name``, of any type; all of them
    when ``name`` is None. No secret values: the API is asked to leave them out."""
    documents: dict[str, Any] = {"is_anonymous": {"eq_": False}}
    if name is not None:
        documents["name"] = {"any_": [name]}
    response = await client.request("POST", "/block_documents/filter",
                                    json={"block_documents": documents,
                                          "include_secrets": False})
    return [BlockRef.of(document) for document in response.json()]


async def find_block(client: PrefectClient, given: str) -> BlockRef:
    """The block ``given`` names: ``NAME``, or ``TYPE/NAME`` as Prefect writes a block
    (``slack-webhook/alerts``) when several types have a block of that name."""
    type_slug, _, name = given.rpartition("/")
    found = [block for block in await _named_blocks(client, name)
             if not type_slug or block.type_slug == type_slug]
    if len(found) == 1:
        return found[0]
    if found:
        names = ", ".join(sorted(map(str, found)))
        raise InvalidValueError(f"--block {given!r}: several blocks have that name ({names}): "
                                "give one as TYPE/NAME")
    usable = [str(block) for block in await _named_blocks(client, None)
              if block.type_slug == WEBHOOK_BLOCK_TYPE or "notify" in block.capabilities]
    known = f"; these could: {', '.join(sorted(usable))}" if usable else (
        "; there is no notification or Webhook block: make one in the UI (Blocks) or use "
        "--webhook URL")
    raise InvalidValueError(f"--block {given!r}: no such block on the Prefect server{known}")


async def save_webhook_block(client: PrefectClient, url: str,
                             instance: str | None) -> BlockRef:
    """Create, or point at ``url``, the Webhook block of ``instance``'s automation."""
    check_http_url(url)
    name = webhook_block_name(instance)
    block_id = await Webhook(url=SecretStr(url)).asave(name, overwrite=True, client=client)
    return BlockRef(block_id, WEBHOOK_BLOCK_TYPE, name, ())


async def install(instance: str | None, *, webhook_url: str | None = None,
                  block: str | None = None) -> Installed:
    """Create or update the one automation alerting on ``instance``'s infected files (every
    instance's when None), through a Webhook block for ``webhook_url`` or the existing block
    ``block`` (exactly one of the two)."""
    if (webhook_url is None) == (block is None):
        raise InvalidValueError("give exactly one of --webhook URL and --block NAME")
    async with get_client() as client:
        if webhook_url is not None:
            target = await save_webhook_block(client, webhook_url, instance)
        else:
            assert block is not None
            target = await find_block(client, block)
        action = target.action()
        name = automation_name(instance)
        automation = AutomationCore(
            name=name, tags=[TAG], trigger=infected_trigger(instance), actions=[action],
            description="Installed by `ssftp automations install`: alerts on every file "
                        "found infected.")
        existing = await client.read_automations_by_name(name)
        if not existing:
            created_id = await client.create_automation(automation)
            return Installed(True, name, created_id, action.type, target)
        kept, *extra = sorted(existing, key=lambda found: str(found.id))
        await client.update_automation(kept.id, automation)
        for duplicate in extra:
            await client.delete_automation(duplicate.id)
        return Installed(False, name, kept.id, action.type, target)


async def installed() -> list[Automation]:
    """The automations ssftp installed (its tag), and any named like them (installed by the
    README's former snippet), by name."""
    async with get_client() as client:
        found = await client.read_automations()
    return sorted((automation for automation in found
                   if TAG in automation.tags or automation.name.startswith("ssftp ")),
                  key=lambda automation: automation.name)


def describe_automation(automation: Automation) -> str:
    """One line of ``ssftp automations list``: name, id, whether it is on, its actions."""
    state = "enabled" if automation.enabled else "disabled"
    actions = ", ".join(action.type for action in automation.actions)
    return one_line(f"{automation.name}  {automation.id}  {state}  {actions}")


@contextlib.contextmanager
def prefect_errors(api_url: str) -> Iterator[None]:
    """Prefect's and httpx's failures as one :class:`PrefectServerError` line: the one place
    they are translated. A request's URL is Prefect's API, never a webhook's."""
    try:
        yield
    except httpx.HTTPStatusError as exc:
        detail = exc.response.text[:300]
        with contextlib.suppress(ValueError, KeyError, TypeError):
            detail = str(exc.response.json()["detail"])[:300]
        raise PrefectServerError(
            f"the Prefect API at {api_url} refused {exc.request.method} "
            f"{exc.request.url.path}: HTTP {exc.response.status_code}: {one_line(detail)}"
        ) from None
    except httpx.HTTPError as exc:
        raise PrefectServerError(f"the Prefect API at {api_url} did not answer: "
                                 f"{type(exc).__name__} {one_line(str(exc))}") from None
    except PrefectException as exc:
        raise PrefectServerError(f"the Prefect API at {api_url}: {one_line(str(exc))}") from None
