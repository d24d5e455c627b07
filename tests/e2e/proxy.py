"""A load balancer on loopback: one URL for the page in front of several voxline servers.

Every HTTP request and every WebSocket goes to the current backend; `switch` is what a load
balancer does when a pod leaves its rotation (its `/readyz` turned 503 on SIGTERM). Open
WebSockets stay on the backend they started on, so they break when it goes away, as behind
a real one. Runs its own event loop in a thread, since the e2e tests are synchronous.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import aiohttp
from aiohttp import web

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "upgrade", "content-length",
              "content-encoding", "proxy-connection", "te", "trailer"}


class SwitchingProxy:
    def __init__(self, port: int, backend: str) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.backend = backend.rstrip("/")
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.runner: web.AppRunner | None = None
        self.http: aiohttp.ClientSession | None = None

    def switch(self, backend: str) -> None:
        self.backend = backend.rstrip("/")

    def __enter__(self) -> SwitchingProxy:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(10)
        return self

    def __exit__(self, *exc: Any) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)

    async def _start(self) -> None:
        self.http = aiohttp.ClientSession(auto_decompress=True)
        app = web.Application(client_max_size=1 << 20)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self.runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    async def _stop(self) -> None:
        assert self.runner is not None and self.http is not None
        await self.runner.cleanup()
        await self.http.close()

    def _headers(self, headers: Any) -> dict[str, str]:
        return {k: v for k, v in headers.items() if k.lower() not in HOP_BY_HOP}

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        assert self.http is not None
        target = self.backend + request.path_qs
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return await self._websocket(request, target)
        try:
            async with self.http.request(request.method, target, headers=self._headers(request.headers),
                                         data=await request.read(), allow_redirects=False) as resp:
                body = await resp.read()
                return web.Response(status=resp.status, body=body, headers=self._headers(resp.headers))
        except aiohttp.ClientError as exc:
            return web.json_response({"error": "bad_gateway", "detail": str(exc)}, status=502)

    async def _websocket(self, request: web.Request, target: str) -> web.StreamResponse:
        assert self.http is not None
        headers = {k: v for k, v in request.headers.items() if k.lower() in ("origin", "authorization", "host")}
        try:
            upstream = await self.http.ws_connect(target.replace("http", "ws", 1), headers=headers)
        except (aiohttp.ClientError, aiohttp.WSServerHandshakeError) as exc:
            return web.json_response({"error": "bad_gateway", "detail": str(exc)}, status=502)
        ws = web.WebSocketResponse()
        await ws.prepare(request)

        closed_with: list[int] = []

        async def pump(src: Any, dst: Any) -> None:
            while True:
                msg = await src.receive()
                if msg.type == aiohttp.WSMsgType.TEXT:
                    await dst.send_str(msg.data)
                elif msg.type == aiohttp.WSMsgType.BINARY:
                    await dst.send_bytes(msg.data)
                else:
                    if msg.type == aiohttp.WSMsgType.CLOSE and src is upstream:
                        closed_with.append(int(msg.data))
                    break

        tasks = [asyncio.ensure_future(pump(upstream, ws)), asyncio.ensure_future(pump(ws, upstream))]
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in tasks:
            task.cancel()
        code = closed_with[0] if closed_with else 1001  # the backend's code, or "going away"
        code = 1001 if code in (1005, 1006) else code  # reserved: never sent on the wire
        await upstream.close()
        await ws.close(code=code)
        return ws
