"""Prefect's clients as a worker uses them: one synchronous client for its lifetime, shared by
all of its runs, and a short first wait before retrying a write the server refused busy.

Prefect's flow engine reads the server's default result storage at the start of each run,
through a synchronous client it makes anew unless one is open (``SyncClientContext``): each
new one built an httpx client with a TLS context (loading the CA bundle) and a connection,
on the worker's event loop, which the call blocks: ~12% of that loop in a 1000-file pipeline
(py-spy), even against the plain-HTTP API of ``ssftp up``'s own server. Opened once here, every
run's read reuses it and its kept-alive connection.

The asynchronous client, which the runs' other calls go through, stays one per run, as
Prefect makes it. Shared too, by every run, notification and schedule of the worker, it saved
~5% of the loop more; but in a full test run on a loaded machine two stops then overran their
deadline waiting on runs' last calls to Prefect (the cause not proven), and that saving is not
worth a stop that hangs.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import httpx


@contextlib.contextmanager
def shared_sync_client() -> Iterator[None]:
    """Run the body with a synchronous Prefect client open; the tasks it creates inherit it
    (a task copies the context it is created in)."""
    # Imported here: Prefect reads its settings (the API URL) as it loads, and ``ssftp up``
    # imports this module before it has started its server.
    from prefect.context import SyncClientContext

    with SyncClientContext.get_or_create():
        yield


# Seconds before the first retry of a request Prefect's server answered 503 (SQLite's
# "database is locked"), and the factor for each one after: 0.1, 0.5, 2.5, 12.5, 62.5 s over
# Prefect's 5 retries, 78 s in all, against its own 2, 4, 8, 16, 32 s (62 s).
FIRST_RETRY_SECONDS = 0.1
RETRY_FACTOR = 5.0
_RETRIES_KEY = "ssftp_retries"  # in the request's extensions: the same request is resent


def retry_after(response: httpx.Response) -> None:
    """Give a 503 without ``Retry-After`` one from the schedule above, counted per request.

    Prefect's client waits 2**n s before retrying a 503 unless the answer says how long
    (prefect/client/base.py), and its server never does. On SQLite a 503 is a write that met
    another's lock, over within milliseconds: a scan run waited out 2 s of it, which set the
    pipeline's figure (0.28 s without, 2.4-3.0 s with it, in one run) and the odd slow first
    upload. A short first wait that grows faster keeps the whole budget."""
    if response.status_code != httpx.codes.SERVICE_UNAVAILABLE or "Retry-After" in response.headers:
        return
    extensions = response.request.extensions
    retries = extensions.get(_RETRIES_KEY, 0)
    extensions[_RETRIES_KEY] = retries + 1
    response.headers["Retry-After"] = f"{FIRST_RETRY_SECONDS * RETRY_FACTOR ** retries:g}"


async def _retry_after_async(response: httpx.Response) -> None:
    retry_after(response)


def retry_locked_writes_soon() -> None:
    """Have every Prefect client this process makes from now on use :func:`retry_after`
    (Prefect offers no setting for it; its clients are made deep inside its engines). Once
    per process; the hook runs in httpx's ``send``, under Prefect's retry loop."""
    from prefect.client.base import PrefectHttpxAsyncClient, PrefectHttpxSyncClient

    for cls, hook in ((PrefectHttpxAsyncClient, _retry_after_async),
                      (PrefectHttpxSyncClient, retry_after)):
        if getattr(cls.__init__, "ssftp_retry_after", False):
            continue
        cls.__init__ = _hooked(cls.__init__, hook)  # type: ignore[method-assign]


def _hooked(init: Callable[..., None], hook: Callable[[httpx.Response], object],
            ) -> Callable[..., None]:
    def __init__(self: httpx.AsyncClient | httpx.Client, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        self.event_hooks["response"].append(hook)

    __init__.ssftp_retry_after = True  # type: ignore[attr-defined]
    return __init__
