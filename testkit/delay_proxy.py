"""A TCP proxy on 127.0.0.1 that delays every byte by a fixed time each way: a long link
(40 ms each way is a continent away) on one machine, to measure what the SSH window costs.

Each chunk read is forwarded ``delay`` seconds after it arrived, whatever came before it: the
link keeps its bandwidth (bytes in flight are not waited for one by one, as they would be with
a sleep before each write), only its latency grows, which is what a window has to cover.

    python -m testkit.delay_proxy --listen 2222 --target 22 --delay 0.04
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from collections.abc import AsyncIterator

HOST = "127.0.0.1"
_CHUNK = 256 * 1024


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                delay: float) -> None:
    """Forward ``reader`` to ``writer``, each chunk ``delay`` seconds after it was read."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

    async def forward() -> None:
        while True:
            due, data = await queue.get()
            await asyncio.sleep(max(0.0, due - loop.time()))
            if not data:
                writer.write_eof()
                return
            writer.write(data)
            await writer.drain()

    sender = asyncio.create_task(forward())
    try:
        while data := await reader.read(_CHUNK):
            queue.put_nowait((loop.time() + delay, data))
        queue.put_nowait((loop.time() + delay, b""))
        await sender
    finally:
        # Awaited, not only cancelled: a task left pending when its loop closes is reported
        # on stderr ("Task was destroyed but it is pending"), the noise in bench's output.
        sender.cancel()
        with contextlib.suppress(asyncio.CancelledError, ConnectionError, OSError):
            await sender


async def _serve_one(client_reader: asyncio.StreamReader,
                     client_writer: asyncio.StreamWriter, target: int, delay: float) -> None:
    server_reader, server_writer = await asyncio.open_connection(HOST, target)
    try:
        await asyncio.gather(_pump(client_reader, server_writer, delay),
                             _pump(server_reader, client_writer, delay))
    except (ConnectionError, OSError):
        pass  # one side went away: so does the other
    finally:
        for writer in (client_writer, server_writer):
            writer.close()


@contextlib.asynccontextmanager
async def delay_proxy(target: int, delay: float, listen: int = 0) -> AsyncIterator[int]:
    """Listen on 127.0.0.1 (``listen=0``: a free port, yielded) and proxy to ``target``.
    On exit the connections still open are ended and waited for: closing the listener alone
    leaves their tasks pending when the loop closes."""
    connections: set[asyncio.Task[None]] = set()

    async def connected(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        connections.add(task)
        try:
            await _serve_one(reader, writer, target, delay)
        except asyncio.CancelledError:
            # The proxy is closing. Ended, not cancelled: asyncio's stream server asks a
            # finished handler for its exception, which a cancelled task raises instead
            # ("Exception in callback ... CancelledError" on stderr, Python 3.11).
            pass
        finally:
            connections.discard(task)

    server = await asyncio.start_server(connected, HOST, listen)
    async with server:
        try:
            yield int(server.sockets[0].getsockname()[1])
        finally:
            for task in connections:
                task.cancel()
            await asyncio.gather(*connections, return_exceptions=True)


async def _main(listen: int, target: int, delay: float) -> None:
    async with delay_proxy(target, delay, listen) as port:
        print(f"127.0.0.1:{port} -> 127.0.0.1:{target}, {delay * 1000:.0f} ms each way",
              flush=True)
        await asyncio.Event().wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--listen", type=int, default=0)
    parser.add_argument("--target", type=int, required=True)
    parser.add_argument("--delay", type=float, default=0.04, help="seconds each way")
    arguments = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_main(arguments.listen, arguments.target, arguments.delay))
