"""ssftp.notify.webhooks: which outcome owes which webhook, the payload (sSFTP's fields and the
evidence, no host path), its HMAC signature, and a delivery to a real HTTP receiver in this
process (tests/support/webhooks.py) that never leaks the URL's credentials."""

from __future__ import annotations

import hashlib
import hmac
import json
import os

import pytest

from ssftp.notify.owed import owed
from ssftp.notify.webhooks import (
    EVENT_HEADER,
    EVENT_ID_HEADER,
    SIGNATURE_HEADER,
    Notification,
    WebhookError,
    deliver,
    payload,
    sign,
)
from testkit.files import EICAR
from tests.support.scanning import free_closed_port, scan_result, sha256
from tests.support.webhooks import hook, with_webhooks


def test_payload_keeps_ssftp_fields_and_adds_the_evidence():
    body = payload("virusFound", scan_result(engine="ClamAV 1.4.6", database="27480+0a1b"),
                   "gw-1", "id-1")
    assert body["eventId"] == "id-1"
    assert (body["engine"], body["database"]) == ("ClamAV 1.4.6", "27480+0a1b")
    assert body["username"] == "partner-a"
    assert body["scanMessage"] == "Ssftp.Test.EICAR-HDB.UNOFFICIAL FOUND"
    assert body["filePath"] == "staging/partner-a/eicar.com"
    assert body["timeGenerated"].endswith("+00:00")
    assert body["sha256"] == sha256(EICAR)
    assert body["size"] == 68
    assert body["signature"] == "Ssftp.Test.EICAR-HDB.UNOFFICIAL"
    assert body["account"] == "partner-a"
    assert body["instance"] == "gw-1"
    assert body["event"] == "virusFound"
    assert payload("scanError", scan_result("error", account=None), "gw-1",
                   "id-2")["username"] == ""


def test_a_payload_names_no_host_path():
    """clamd's error names its socket on the host; a receiver gets ssftp's own words."""
    result = scan_result(
        "error", detail="cannot scan with clamd at /srv/ssftp/system/clamd/clamd.sock: [Errno 111]")
    body = json.dumps(payload("scanError", result, "gw-1", "id-3"))
    assert "/srv/ssftp" not in body
    assert "retried" in json.loads(body)["scanMessage"]


def test_sign_is_hmac_sha256_of_the_body():
    body = b'{"a": 1}'
    expected = "sha256=" + hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    assert sign(body, "s3cret") == expected
    assert sign(body, "other") != expected
    assert sign(body + b" ", "s3cret") != expected


def test_notifications_go_only_to_webhooks_of_the_event():
    webhooks = [hook("virusFound", "http://127.0.0.1:9/one"),
                hook("scanError", "http://127.0.0.1:9/two"),
                hook("virusFound", "http://127.0.0.1:9/three")]
    config = with_webhooks(*webhooks)
    infected = owed(scan_result(), 0, config).notifications
    assert [n.webhook.url for n in infected] == ["http://127.0.0.1:9/one",
                                                 "http://127.0.0.1:9/three"]
    assert all(n.event == "virusFound" and n.file == "partner-a/eicar.com" for n in infected)
    assert json.loads(infected[0].body)["username"] == "partner-a"
    errors = owed(scan_result("error"), 0, config).notifications
    assert [n.webhook.url for n in errors] == ["http://127.0.0.1:9/two"]
    assert owed(scan_result("error"), 1, config).notifications == []
    assert owed(scan_result("clean"), 0, config).notifications == []


def test_a_notification_for_a_non_utf8_file_name_can_be_built():
    name = os.fsdecode(b"partner-a/bad\xff.com")
    result = scan_result(file=name, source="staging/" + name)
    [notification] = owed(result, 0, with_webhooks(hook())).notifications
    assert "partner-a/bad" in json.loads(notification.body)["filePath"]


async def test_deliver_posts_the_signed_body(receiver):
    url = f"{receiver.url}/hook"
    notification = Notification.build(hook(url=url), "virusFound", scan_result(), "gw-1")
    assert await deliver(notification) == 200
    [request] = receiver.requests
    path, headers, body = request.path, request.headers, request.body
    assert path == "/hook"
    assert body == notification.body
    expected = "sha256=" + hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(headers[SIGNATURE_HEADER], expected)
    assert headers[EVENT_HEADER] == "virusFound"
    assert headers[EVENT_ID_HEADER] == notification.id == json.loads(body)["eventId"]
    assert headers["Content-Type"] == "application/json"
    assert json.loads(body)["sha256"] == sha256(EICAR)


async def test_deliver_without_a_secret_sends_no_signature(receiver):
    url = f"{receiver.url}/plain"
    notification = Notification.build(hook("scanError", url, secret=None), "scanError",
                                      scan_result("unscannable"), "gw-1")
    assert await deliver(notification) == 200
    [request] = receiver.requests
    headers, body = request.headers, request.body
    assert SIGNATURE_HEADER not in headers
    assert headers[EVENT_HEADER] == "scanError"
    assert body == notification.body


async def test_a_failing_receiver_raises_without_leaking_credentials(receiver):
    receiver.status = 500
    port = receiver.server.server_address[1]
    url = f"http://user:pw-XYZ@127.0.0.1:{port}/hook?token=SECRET123"
    notification = Notification.build(hook(url=url), "virusFound", scan_result(), "gw-1")
    with pytest.raises(WebhookError) as raised:
        await deliver(notification)
    message = str(raised.value)
    assert "HTTP 500" in message
    assert f"127.0.0.1:{port}/hook" in message
    for secret in ("SECRET123", "token", "pw-XYZ", "user:"):
        assert secret not in message
    assert [request.path for request in receiver.requests] == ["/hook?token=SECRET123"]


async def test_a_refused_connection_raises_webhook_error():
    url = f"http://user:pw-XYZ@127.0.0.1:{free_closed_port()}/hook?token=SECRET123"
    notification = Notification.build(hook(url=url), "virusFound", scan_result(), "gw-1")
    with pytest.raises(WebhookError) as raised:
        await deliver(notification)
    message = str(raised.value)
    assert "ConnectError" in message
    for secret in ("SECRET123", "pw-XYZ"):
        assert secret not in message
