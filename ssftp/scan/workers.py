"""Who scanned a file: each scanning process has a worker name, and every outcome carries it.

Several workers share a data root (``ssftp up`` and any ``ssftp worker``, on this host or
others), so a verdict, an audit record or a scan run that did not say which one judged it
would leave an operator unable to tell a sick worker from a healthy one. The name is the
``--name`` given to ``ssftp worker``, else ``<host>.<pid>``: unique among the live processes
on a data root without any configuration. It goes into Prefect tags (``worker:<name>``) and
file names never, so it is kept to a tag's and a log line's safe characters.
"""

from __future__ import annotations

import os
import re
import socket

from ssftp.errors import InvalidValueError

# Letters, digits, dot, dash and underscore, starting with a letter or digit: what a host name
# and pid make, and nothing a tag filter, a log line or a label value would need to escape.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,126}")
TAG_PREFIX = "worker:"


def default_name() -> str:
    """``<host>.<pid>``: the name of a worker nobody named."""
    return f"{socket.gethostname()}.{os.getpid()}"


def checked_name(name: str) -> str:
    """``name`` when it can name a worker; else the error says what may."""
    if not _NAME.fullmatch(name):
        raise InvalidValueError(
            f"worker name {name!r} is not valid: 1 to 127 letters, digits, '.', '-' or '_', "
            "starting with a letter or digit")
    return name


def worker_tag(name: str) -> str:
    """The Prefect tag of the runs a worker makes (filter by it in the UI)."""
    return f"{TAG_PREFIX}{name}"
