"""Tools of MCP servers (the `mcp` package): a command run over stdio, or a streamable HTTP URL.

`tools_mcp` lists servers: an entry starting with http:// or https:// is a streamable HTTP
endpoint (e.g. http://127.0.0.1:9000/mcp); any other entry is a command line started as a
stdio server (e.g. `python -m my_tools_server`). One connection per server for the life of
the process, opened at start-up: a server that cannot be reached is a start-up error.

mcp's `Client` (mcp 2.x) is an anyio context manager that must be entered and left in the
same task, so each connection lives in a task of its own; calls from any reply's task go
through it, and cancelling such a call (barge-in) stops waiting for it.
"""

from __future__ import annotations

import asyncio
import logging
import shlex
from typing import Any

from voxline.agent.tools.registry import Tool, ToolError

log = logging.getLogger(__name__)
CONNECT_TIMEOUT_S = 20.0


class McpServer:
    def __init__(self, target: str) -> None:
        self.target = target.strip()
        self.session: Any = None
        self._ready: asyncio.Future[list[Any]] | None = None
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def connect(self) -> list[Tool]:
        """Open the connection and list the server's tools."""
        loop = asyncio.get_running_loop()
        self._ready = loop.create_future()
        self._task = asyncio.create_task(self._hold(), name=f"mcp {self.target[:40]}")
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT_S):
                listed = await asyncio.shield(self._ready)
        except Exception as exc:
            await self.close()
            raise ValueError(f"MCP server {self.target!r} could not be used: {exc or type(exc).__name__}") from exc
        return [self._tool(t) for t in listed]

    async def _hold(self) -> None:
        from mcp import Client, StdioServerParameters

        assert self._ready is not None
        server: str | StdioServerParameters = self.target
        try:
            if not self.target.startswith(("http://", "https://")):
                argv = shlex.split(self.target)
                if not argv:
                    raise ValueError("empty command")
                server = StdioServerParameters(command=argv[0], args=argv[1:])
            async with Client(server) as client:
                listed = await client.list_tools()
                self.session = client
                self._ready.set_result(list(listed.tools))
                await self._stop.wait()
        except BaseException as exc:  # noqa: BLE001 - reported to connect(), or logged once running
            if not self._ready.done():
                self._ready.set_exception(exc if isinstance(exc, Exception) else RuntimeError("cancelled"))
            elif not isinstance(exc, asyncio.CancelledError):
                log.warning("MCP server %s went away: %s", self.target, exc)
            if isinstance(exc, asyncio.CancelledError):
                raise
        finally:
            self.session = None

    def _tool(self, listed: Any) -> Tool:
        name = str(listed.name)
        schema = listed.input_schema if isinstance(listed.input_schema, dict) else {"type": "object", "properties": {}}

        async def run(args: dict[str, Any]) -> str:
            if self.session is None:
                raise ToolError(f"the MCP server of {name} is not connected")
            result = await self.session.call_tool(name, args)
            text = "\n".join(str(getattr(c, "text", "")) for c in result.content if getattr(c, "type", "") == "text")
            if not text and result.structured_content is not None:
                text = str(result.structured_content)
            if result.is_error:
                raise ToolError(text or f"{name} failed")
            return text

        return Tool(name, str(listed.description or name), schema, run, source="mcp")

    async def close(self) -> None:
        self._stop.set()
        if self._task is not None:
            try:
                async with asyncio.timeout(5.0):
                    await asyncio.shield(self._task)
            except (TimeoutError, Exception):  # noqa: BLE001 - shutting down
                self._task.cancel()
                await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
