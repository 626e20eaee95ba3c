"""deployments.automations without a Prefect server: the names it gives, the trigger, which
action a block gets by its type, and Prefect's failures as one line. Against a real server
(install, update, fire): tests/integration/test_deployments_automations.py."""

from __future__ import annotations

import json
from uuid import uuid4

import httpx
import jinja2
import pytest
from prefect.events.actions import CallWebhook, SendNotification

from deployments.automations import (
    WEBHOOK_PAYLOAD,
    BlockRef,
    automation_name,
    infected_trigger,
    prefect_errors,
    webhook_block_name,
)
from ssftp.errors import InvalidValueError, PrefectServerError


def test_names_of_one_instance_and_of_all():
    assert automation_name("gw-1") == "ssftp infected file on gw-1"
    assert automation_name(None) == "ssftp infected file on any instance"
    # A block's name holds lowercase letters, digits and dashes only; an instance's need not.
    assert webhook_block_name("Gateway_1.example") == "ssftp-infected-gateway-1-example"
    assert webhook_block_name(None) == "ssftp-infected"


def test_the_trigger_matches_infected_files_of_the_instance_or_of_all():
    one = infected_trigger("gw-1")
    assert one.expect == {"ssftp.file.infected"}
    assert one.match.model_dump() == {"prefect.resource.id": "ssftp.file.*",
                                      "ssftp.instance": "gw-1"}
    assert (one.posture, one.threshold) == ("Reactive", 1)
    assert infected_trigger(None).match.model_dump() == {"prefect.resource.id": "ssftp.file.*"}


def block(type_slug: str, *capabilities: str) -> BlockRef:
    return BlockRef(uuid4(), type_slug, "alerts", capabilities)


def test_a_webhook_block_is_called_and_a_notification_block_notifies():
    webhook, slack = block("webhook"), block("slack-webhook", "notify")
    assert isinstance(webhook.action(), CallWebhook)
    assert webhook.action().block_document_id == webhook.id
    assert isinstance(slack.action(), SendNotification)
    assert slack.action().block_document_id == slack.id
    with pytest.raises(InvalidValueError, match="block secret/alerts can neither notify"):
        block("secret").action()


@pytest.mark.parametrize("path", ['acme/say "hi".com', "acme/back\\slash.pdf", "acme/x.csv"])
def test_the_webhook_payload_is_json_whatever_a_name_holds(path):
    """Rendered as Jinja renders it (Prefect's templates are Jinja): an unhashed file's
    resource id holds its path."""
    resource = {"id": f"ssftp.file.unhashed.gw-1.{path}", "ssftp.path": path,
                "ssftp.signature": 'Win.Test "quoted"'}
    body = jinja2.Environment().from_string(WEBHOOK_PAYLOAD).render(
        event={"resource": resource})
    assert json.loads(body) == {"file": resource["id"], "path": path,
                                "signature": 'Win.Test "quoted"'}


def test_prefect_errors_become_one_line_naming_the_api():
    api = "http://127.0.0.1:4200/api"
    request = httpx.Request("POST", f"{api}/automations/")
    refused = httpx.Response(422, json={"detail": "bad\ntrigger"}, request=request)
    with pytest.raises(PrefectServerError) as caught, prefect_errors(api):
        raise httpx.HTTPStatusError("422", request=request, response=refused)
    assert str(caught.value) == (f"the Prefect API at {api} refused POST /api/automations/: "
                                 "HTTP 422: bad\\ntrigger")
    with pytest.raises(PrefectServerError, match=f"^the Prefect API at {api} did not answer: "
                                                 "ReadTimeout"), prefect_errors(api):
        raise httpx.ReadTimeout("timed out", request=request)
