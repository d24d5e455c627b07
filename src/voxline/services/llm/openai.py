"""Remote LLM: any OpenAI-compatible `/v1/chat/completions`, streamed over SSE."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from voxline.services.base import ChatMessage, ServiceError
from voxline.services.http_client import ServiceClient

if TYPE_CHECKING:
    import aiohttp


class OpenAILLM:
    def __init__(self, base_url: str, api_key: str = "", model: str = "smollm2-135m-instruct",
                 max_tokens: int = 96, temperature: float = 0.2, timeout_s: float = 30.0) -> None:
        self.client = ServiceClient("llm", base_url, api_key, timeout_s)
        self.model = model
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.name = f"openai-llm({model})"

    async def stream(self, messages: list[ChatMessage], max_tokens: int | None = None) -> AsyncIterator[str]:
        """Text deltas as the server streams them. Closing or cancelling this generator closes
        the HTTP connection, which is what tells the server to stop generating."""
        body = {"model": self.model, "messages": list(messages), "stream": True,
                "max_tokens": max_tokens or self.max_tokens, "temperature": self.temperature}
        async with self.client.post("chat/completions", stream=True, json=body,
                                    headers={"Accept": "text/event-stream"}) as resp:
            async for data in _sse_data(resp.content):
                if data == "[DONE]":
                    await _drain(resp)
                    return
                delta = _delta(data, self.client.base)
                if delta:
                    yield delta
        raise ServiceError(f"llm service {self.client.base} ended the stream without [DONE]")

    async def close(self) -> None:
        await self.client.close()


async def _drain(resp: aiohttp.ClientResponse) -> None:
    """Read the end of the body after [DONE] so the connection goes back to the pool (saves a
    TCP/TLS handshake on the next turn); a server slow to end it just loses the reuse."""
    with contextlib.suppress(Exception):
        await asyncio.wait_for(resp.read(), 0.5)


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


def _delta(data: str, base: str) -> str:
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
    if not choices:
        return ""  # e.g. the usage chunk
    delta = (choices[0] or {}).get("delta") or {}
    content = delta.get("content")
    return content if isinstance(content, str) else ""
