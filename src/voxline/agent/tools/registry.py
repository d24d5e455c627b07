"""The tools one agent offers its LLM, and running a call: bounded, timed out, errors as text.

A tool's result goes back to the model as text, and so does its failure: a tool that raises or
times out becomes "error: ..." for the model to explain, never a failed turn.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from voxline.services.base import ToolCall

log = logging.getLogger(__name__)
NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")  # what OpenAI accepts as a function name
MAX_RESULT_CHARS = 4_000  # what a tool may put in front of the model (its context is small)


class ToolError(Exception):
    """A tool could not do what was asked; the message goes back to the model."""


@dataclass
class Tool:
    name: str
    description: str
    parameters: dict[str, Any]  # JSON schema of the arguments object
    run: Callable[[dict[str, Any]], Awaitable[str]]
    source: str = "python"  # python | webhook | mcp | builtin
    ends_call: bool = False  # the call ends once the reply that used it has been heard

    def __post_init__(self) -> None:
        if not NAME.match(self.name):
            raise ValueError(f"tool name {self.name!r} must be 1-64 letters, digits, '_' or '-'")

    def spec(self) -> dict[str, Any]:
        """The OpenAI `tools` entry."""
        return {"type": "function", "function": {"name": self.name, "description": self.description,
                                                 "parameters": self.parameters}}


@dataclass(frozen=True)
class ToolResult:
    call: ToolCall
    output: str
    ok: bool
    ms: float
    ends_call: bool = False

    def record(self) -> dict[str, Any]:
        """What turn metrics and the session record keep of the call (no arguments: they may be private)."""
        return {"name": self.call.name, "ok": self.ok, "ms": round(self.ms, 1)}


@dataclass
class ToolRegistry:
    timeout_s: float = 5.0
    filler_after_s: float = 1.0  # a call still running after this gets a spoken filler
    filler_text: str = "One moment."
    max_rounds: int = 3  # LLM -> tools -> LLM rounds in one reply
    tools: dict[str, Tool] = field(default_factory=dict)
    closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)

    def add(self, tool: Tool) -> None:
        if tool.name in self.tools:
            raise ValueError(f"two tools are named {tool.name!r} ({self.tools[tool.name].source} and {tool.source})")
        self.tools[tool.name] = tool

    def specs(self) -> list[dict[str, Any]]:
        return [t.spec() for t in self.tools.values()]

    def __len__(self) -> int:
        return len(self.tools)

    async def run(self, call: ToolCall) -> ToolResult:
        """Run one call to completion or timeout. Cancelling the caller cancels the tool."""
        started = time.perf_counter()
        tool = self.tools.get(call.name)
        try:
            if tool is None:
                raise ToolError(f"there is no tool named {call.name!r}")
            async with asyncio.timeout(self.timeout_s):  # not wait_for: see pipeline.with_timeout
                output = await tool.run(parse_arguments(call.arguments))
            ok = True
        except TimeoutError:
            output, ok = f"error: {call.name} did not answer within {self.timeout_s:g} s", False
        except ToolError as exc:
            output, ok = f"error: {exc}", False
        except Exception as exc:  # noqa: BLE001 - a tool's bug is the model's to explain, not the turn's
            log.warning("tool %s failed", call.name, exc_info=True)
            output, ok = f"error: {call.name} failed ({type(exc).__name__}: {exc})", False
        if len(output) > MAX_RESULT_CHARS:
            output = output[:MAX_RESULT_CHARS] + " ..."
        return ToolResult(call, output, ok, (time.perf_counter() - started) * 1000,
                          ends_call=ok and tool is not None and tool.ends_call)

    async def close(self) -> None:
        for close in reversed(self.closers):
            try:
                await close()
            except Exception:  # noqa: BLE001 - shutting down: the rest still closes
                log.warning("a tool source did not close cleanly", exc_info=True)
        self.closers.clear()


def parse_arguments(text: str) -> dict[str, Any]:
    """The model's JSON arguments as an object ({} for none); anything else is the model's error."""
    if not text.strip():
        return {}
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise ToolError(f"the arguments are not JSON ({exc})") from exc
    if not isinstance(value, dict):
        raise ToolError("the arguments must be a JSON object")
    return value


def as_text(value: Any) -> str:
    """A tool's return value as the text the model reads."""
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        return str(value)
