"""A TCP proxy on loopback that makes each HTTP answer wait: the same latency per request that
Chromium's network emulation gives the browser, for `aws s3 cp` (the benches' anchor).

Each time the client has sent something (a request, or a request's body), the next answer
from the server is held `ms` milliseconds before it is passed on; interim answers
(`HTTP/1.1 100 Continue`) pass at once, so a request waits once, as in Chromium's emulation.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading

CHUNK = 1 << 20


class DelayProxy:
    def __init__(self, target_host: str, target_port: int, ms: float) -> None:
        self.target = (target_host, target_port)
        self.delay = ms / 1000
        self.loop = asyncio.new_event_loop()
        self.port = 0
        started = threading.Event()

        async def main() -> None:
            server = await asyncio.start_server(self._client, "127.0.0.1", 0)
            self.port = server.sockets[0].getsockname()[1]
            started.set()
            async with server:
                await server.serve_forever()

        def serve() -> None:
            with contextlib.suppress(RuntimeError):  # close() stops the loop under serve_forever
                self.loop.run_until_complete(main())

        threading.Thread(target=serve, daemon=True).start()
        started.wait(10)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _client(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            server_r, server_w = await asyncio.open_connection(*self.target)
        except OSError:
            client_w.close()
            return
        waiting = [False]  # the client sent something the server has not answered yet

        async def upstream() -> None:
            while data := await client_r.read(CHUNK):
                waiting[0] = True
                server_w.write(data)
                await server_w.drain()
            server_w.close()

        async def downstream() -> None:
            while data := await server_r.read(CHUNK):
                if waiting[0] and not data.startswith(b"HTTP/1.1 100"):
                    waiting[0] = False
                    await asyncio.sleep(self.delay)
                client_w.write(data)
                await client_w.drain()
            client_w.close()

        try:
            await asyncio.gather(upstream(), downstream())
        except (ConnectionError, OSError):
            client_w.close()
            server_w.close()

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
