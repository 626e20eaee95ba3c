"""ssftp.yaml for tests: writing one, and the standard gateway's accounts and passwords.

The standard gateway (the ``gateway`` fixture, one per module) has a partner uploading to
staging and a consumer reading clean/, as sSFTP's accounts do; tests that start a server of
their own beside it reuse its accounts and passwords from here.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from pathlib import Path

from testkit.sftp_client import ClientKey

PARTNER_PASSWORD = "partner-secret-pw"
CONSUMER_PASSWORD = "consumer-secret-pw"
PASSWORDS = {
    "partner-a": PARTNER_PASSWORD,
    "partner-b": "other-partner-pw",
    "consumer-a": CONSUMER_PASSWORD,
    "clean-admin": "admin-secret-pw",
}


def write_config(path: Path, text: str) -> Path:
    """``text`` (indented as it stands in the test) as the file ``path``."""
    path.write_text(textwrap.dedent(text))
    return path


@dataclass(frozen=True)
class Keys:
    """The client keys of the standard accounts (the session's ``keys`` fixture)."""

    partner: ClientKey
    consumer: ClientKey
    stranger: ClientKey
    partner_rsa: ClientKey


def gateway_config(keys: Keys) -> str:
    """sSFTP-style accounts: a partner uploading to staging, a consumer reading clean."""
    return f"""
    sftpPort: 0
    fsyncUploads: false
    users:
      stagingDir:
        - directory: partner-a
          auth:
            username: partner-a
            password: {PARTNER_PASSWORD}
            publicKey:
              - "{keys.partner.public_line}"
              - "{keys.partner_rsa.public_line}"
        - directory: partner-b
          auth:
            username: partner-b
            password: {PASSWORDS["partner-b"]}
      cleanDir:
        - directory: partner-a
          auth:
            username: consumer-a
            password: {CONSUMER_PASSWORD}
            publicKey: "{keys.consumer.public_line}"
        - directory: "*"
          allowDelete: true
          auth:
            username: clean-admin
            password: {PASSWORDS["clean-admin"]}
    """
