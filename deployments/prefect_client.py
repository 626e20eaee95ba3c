"""One synchronous Prefect client for a worker's lifetime, shared by all of its runs.

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
from collections.abc import Iterator


@contextlib.contextmanager
def shared_sync_client() -> Iterator[None]:
    """Run the body with a synchronous Prefect client open; the tasks it creates inherit it
    (a task copies the context it is created in)."""
    # Imported here: Prefect reads its settings (the API URL) as it loads, and ``ssftp up``
    # imports this module before it has started its server.
    from prefect.context import SyncClientContext

    with SyncClientContext.get_or_create():
        yield
