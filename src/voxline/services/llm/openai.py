"""Remote LLM: any OpenAI-compatible `/v1/chat/completions`, streamed over SSE."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any

from voxline.services.base import ChatMessage, ServiceError, ToolCall
from voxline.services.http_client import ServiceClient
from voxline.services.llm.remote_hold import RemoteHold

if TYPE_CHECKING:
    import aiohttp

MAX_TOOL_CALLS = 8  # calls one reply may make; more is a confused model, not a plan
MAX_ARGUMENTS_CHARS = 16_000  # one call's JSON arguments, bounded before they cost memory


class OpenAILLM:
    supports_tools = True

    def __init__(self, base_url: str, api_key: str = "", model: str = "smollm2-135m-instruct",
                 max_tokens: int = 96, temperature: float = 0.2, timeout_s: float = 30.0, retries: int = 2,
                 retry_cap_s: float = 2.0, hold: bool = False) -> None:
        self.client = ServiceClient("llm", base_url, api_key, timeout_s, retries, retry_cap_s)
        # The pipeline's "first audio first" gate (`gate`, as the embedded LLM has): the server is
        # asked to hold the rest of a reply while its first piece is synthesized on the same cores.
        self.gate = RemoteHold(self.client) if hold else None
        self.model = model
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.name = f"openai-llm({model})"

    async def stream(self, messages: list[ChatMessage], max_tokens: int | None = None) -> AsyncIterator[str]:
        """Text deltas as the server streams them. Closing or cancelling this generator closes
        the HTTP connection, which is what tells the server to stop generating."""
        async for item in self._stream(messages, max_tokens, None):
            if isinstance(item, str):
                yield item

    async def stream_tools(self, messages: list[ChatMessage], tools: list[dict[str, Any]],
                           max_tokens: int | None = None) -> AsyncIterator[str | ToolCall]:
        """Text deltas, then the tool calls assembled from the stream's `delta.tool_calls`."""
        async for item in self._stream(messages, max_tokens, tools):
            yield item

    async def _stream(self, messages: list[ChatMessage], max_tokens: int | None,
                      tools: list[dict[str, Any]] | None) -> AsyncIterator[str | ToolCall]:
        body: dict[str, Any] = {"model": self.model, "messages": list(messages), "stream": True,
                                "max_tokens": max_tokens or self.max_tokens, "temperature": self.temperature}
        if tools:
            body["tools"] = tools
        calls = _ToolCalls(self.client.base)
        async with self.client.post("chat/completions", stream=True, json=body,
                                    headers={"Accept": "text/event-stream"}) as resp:
            async for data in _sse_data(resp.content):
                if data == "[DONE]":
                    await _drain(resp)
                    for call in calls.done():
                        yield call
                    return
                delta = _delta(data, self.client.base)
                content = delta.get("content")
                if isinstance(content, str) and content:
                    yield content
                if tools and delta.get("tool_calls"):
                    calls.add(delta["tool_calls"])
        raise ServiceError(f"llm service {self.client.base} ended the stream without [DONE]")

    async def warm(self, prefix: Sequence[ChatMessage] = ()) -> None:
        """One short reply to `prefix` (the system prompt every session's prompt starts with) and
        "Hi", as the embedded LLM is warmed: a server with a prompt cache (llama.cpp's, `voxline
        serve llm`) holds the prefix for the first caller, and the connection is open. Without
        it the first remote turn evaluated the whole system prompt (remote first token p95 803 ms
        against 192 embedded)."""
        messages: list[ChatMessage] = [*prefix, {"role": "user", "content": "Hi"}]
        async for _ in self.stream(messages, max_tokens=2):
            pass

    async def close(self) -> None:
        if self.gate is not None:
            await self.gate.close()
        await self.client.close()


class _ToolCalls:
    """Tool calls as the stream sends them: by `index`, id and name first, arguments in pieces."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.parts: dict[int, dict[str, str]] = {}

    def add(self, pieces: Any) -> None:
        if not isinstance(pieces, list):
            raise ServiceError(f"llm service {self.base} sent tool_calls that are not a list")
        for piece in pieces:
            if not isinstance(piece, dict):
                continue
            index = piece.get("index", len(self.parts))
            if not isinstance(index, int) or not 0 <= index < MAX_TOOL_CALLS:
                raise ServiceError(f"llm service {self.base} sent tool call index {index!r} "
                                   f"(at most {MAX_TOOL_CALLS} calls a reply)")
            part = self.parts.setdefault(index, {"id": "", "name": "", "arguments": ""})
            function: dict[str, Any] = piece["function"] if isinstance(piece.get("function"), dict) else {}
            for key, value in (("id", piece.get("id")), ("name", function.get("name"))):
                if isinstance(value, str) and value:
                    part[key] = value
            arguments = function.get("arguments")
            if isinstance(arguments, str):
                part["arguments"] += arguments
            elif isinstance(arguments, dict):  # some servers send the object itself
                part["arguments"] += json.dumps(arguments)
            if len(part["arguments"]) > MAX_ARGUMENTS_CHARS:
                raise ServiceError(f"llm service {self.base} sent tool call arguments over {MAX_ARGUMENTS_CHARS} characters")

    def done(self) -> list[ToolCall]:
        return [ToolCall(p["id"] or f"call_{i}", p["name"], p["arguments"] or "{}")
                for i, p in sorted(self.parts.items()) if p["name"]]


async def _drain(resp: aiohttp.ClientResponse) -> None:
    """Read the end of the body after [DONE] so the connection goes back to the pool (saves a
    TCP/TLS handshake on the next turn); a server slow to end it just loses the reuse."""
    with contextlib.suppress(Exception):
        async with asyncio.timeout(0.5):
            await resp.read()


async def _sse_data(lines: Any) -> AsyncIterator[str]:
    """The `data` payload of each server-sent event (multi-line data joined; comments skipped)."""
    parts: list[str] = []
    async for raw in lines:
        line = raw.decode("utf-8", "replace").rstrip("\r\n")
        if not line:
            if parts:
                yield "\n".join(parts)
                parts = []
        elif line.startswith("data:"):
            parts.append(line[5:].removeprefix(" "))
    if parts:
        yield "\n".join(parts)


def _delta(data: str, base: str) -> dict[str, Any]:
    """The `choices[0].delta` object of one streamed chunk ({} for chunks without one)."""
    try:
        chunk = json.loads(data)
    except ValueError as exc:
        raise ServiceError(f"llm service {base} sent an event that is not JSON: {data[:100]!r}") from exc
    if not isinstance(chunk, dict):
        raise ServiceError(f"llm service {base} sent an unexpected event: {data[:100]!r}")
    if "error" in chunk:
        err = chunk["error"]
        raise ServiceError(f"llm service {base} failed mid-stream: "
                           f"{err.get('message') if isinstance(err, dict) else err}")
    choices = chunk.get("choices") or []
    if not choices or not isinstance(choices, list):
        return {}  # e.g. the usage chunk
    delta = (choices[0] or {}).get("delta") if isinstance(choices[0], dict) else None
    return delta if isinstance(delta, dict) else {}
