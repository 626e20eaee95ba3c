"""One Prefect client pair for a worker's lifetime, shared by all of its runs.

Prefect's flow engine opens a client for each run unless one is open already
(``AsyncClientContext.get_or_create``), and each new client builds an httpx client with a TLS
context: loading the CA bundle took ~15% of the scan worker's event loop in a 1000-file
pipeline (py-spy), even against the plain-HTTP API of ``ssftp up``'s own server. And each run
read the server's default result storage through a new *synchronous* client, an HTTP round
trip that blocked the worker's loop (another ~12%). Opened once here, every run reuses the two
clients and their kept-alive connections; a client that is already open (a test's) is used
as it is.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator


@contextlib.asynccontextmanager
async def prefect_clients() -> AsyncIterator[None]:
    """Run the body with a Prefect client of each kind open; the tasks it creates inherit
    them (a task copies the context it is created in)."""
    # Imported here: Prefect reads its settings (the API URL) as it loads, and ``ssftp up``
    # imports this module before it has started its server.
    from prefect.context import AsyncClientContext, SyncClientContext

    with SyncClientContext.get_or_create():
        async with AsyncClientContext.get_or_create():
            yield
