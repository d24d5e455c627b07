"""Servers for the tool tests, all on loopback: a scripted OpenAI-compatible LLM (the fake at the
model boundary), a webhook, and an MCP server script (stdio or streamable HTTP)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from voxline.bench.system import free_port

# One reply of the scripted LLM: text pieces (str) and tool calls ({"name", "arguments"}).
Script = list[str | dict[str, Any]]


def text_chunk(text: str) -> dict[str, Any]:
    return {"choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}]}


def call_chunks(index: int, call_id: str, name: str, arguments: str) -> list[dict[str, Any]]:
    """A tool call as OpenAI streams it: id and name first, then the arguments in two pieces."""
    half = len(arguments) // 2
    first = {"index": index, "id": call_id, "type": "function", "function": {"name": name, "arguments": ""}}
    pieces = [first, {"index": index, "function": {"arguments": arguments[:half]}},
              {"index": index, "function": {"arguments": arguments[half:]}}]
    return [{"choices": [{"index": 0, "delta": {"tool_calls": [p]}, "finish_reason": None}]} for p in pieces]


@dataclass
class ScriptedLLM:
    """Answers /v1/chat/completions with the next scripted reply; keeps every request body."""

    replies: list[Script]
    respond: Callable[[dict[str, Any]], Script] | None = None  # replies by request, e.g. for speculation
    requests: list[dict[str, Any]] = field(default_factory=list)
    peers: list[Any] = field(default_factory=list)  # the client's address of each request: its connection
    done_tail_s: float = 0.0  # the body ends this long after [DONE] (as servers that flush late do)
    url: str = ""
    runner: web.AppRunner | None = None

    async def start(self) -> ScriptedLLM:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        port = free_port()
        await web.TCPSite(self.runner, "127.0.0.1", port).start()
        self.url = f"http://127.0.0.1:{port}/v1"
        return self

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append(body)
        self.peers.append(request.transport.get_extra_info("peername") if request.transport else None)
        if self.respond is not None:
            script = self.respond(body)
        else:
            script = self.replies.pop(0) if self.replies else ["I have nothing more to say."]
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        calls = 0
        for part in script:
            chunks = [text_chunk(part)] if isinstance(part, str) else call_chunks(
                calls, f"call_{len(self.requests)}_{calls}", part["name"], json.dumps(part.get("arguments", {})))
            calls += not isinstance(part, str)
            for chunk in chunks:
                await resp.write(f"data: {json.dumps(chunk)}\n\n".encode())
                await asyncio.sleep(0.005)
        await resp.write(b"data: [DONE]\n\n")
        if self.done_tail_s:
            await asyncio.sleep(self.done_tail_s)
        await resp.write_eof()
        return resp

    async def close(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


@dataclass
class Webhook:
    """A JSON webhook: POST /weather answers with the weather of the city asked for."""

    delay_s: float = 0.0
    calls: list[dict[str, Any]] = field(default_factory=list)
    url: str = ""
    runner: web.AppRunner | None = None

    async def start(self) -> Webhook:
        app = web.Application()
        app.router.add_post("/weather", self._weather)
        app.router.add_get("/fail", lambda r: web.json_response({"error": "down"}, status=503))
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        port = free_port()
        await web.TCPSite(self.runner, "127.0.0.1", port).start()
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def _weather(self, request: web.Request) -> web.Response:
        args = await request.json()
        self.calls.append({"args": args, "auth": request.headers.get("Authorization")})
        await asyncio.sleep(self.delay_s)
        return web.json_response({"city": args.get("city"), "sky": "sunny", "celsius": 21})

    async def close(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


MCP_SERVER = '''
import sys
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

server = MCPServer("voxline-test", log_level="WARNING")


@server.tool()
def add(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b


@server.tool()
def fail(reason: str) -> str:
    """Always fails, as a tool that saw its failure coming does."""
    raise ToolError(reason)


if sys.argv[1] == "stdio":
    server.run("stdio")
else:
    server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[2]))
'''
