"""testkit.delay_proxy: bytes go through, later; on exit nothing it started is left pending
and nothing is reported to the loop (both were noise on bench's stderr: "Task was destroyed
but it is pending", "Exception in callback ... CancelledError"). An echo server in the test's
own loop: no daemon."""

from __future__ import annotations

import asyncio

from testkit.delay_proxy import delay_proxy


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(4096):
        writer.write(data)
        await writer.drain()
    writer.close()


def test_bytes_pass_both_ways_and_open_connections_end_with_the_proxy():
    reported: list[dict[str, object]] = []

    async def main() -> tuple[bytes, set[asyncio.Task[object]]]:
        asyncio.get_running_loop().set_exception_handler(
            lambda loop, context: reported.append(context))
        echo = await asyncio.start_server(_echo, "127.0.0.1", 0)
        async with echo:
            target = echo.sockets[0].getsockname()[1]
            async with delay_proxy(target, 0.01) as port:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.write(b"ping")
                answer = await reader.readexactly(4)
                # The client keeps its connection open past the proxy's end.
            left = {task for task in asyncio.all_tasks()
                    if task is not asyncio.current_task() and not task.done()}
            writer.close()
        return answer, left

    answer, left = asyncio.run(main())
    assert answer == b"ping"
    assert [context.get("message") for context in reported] == []
    # The echo server's own handler may still be finishing: only the proxy's tasks count.
    proxies = {"_pump.<locals>.forward", "delay_proxy.<locals>.connected"}
    assert [name for task in left
            if (name := getattr(task.get_coro(), "__qualname__", "")) in proxies] == []
