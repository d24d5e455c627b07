"""The tiny async interfaces every model back-end implements.

Back-ends own their threads: every blocking model call runs off the event loop, and every
stream stops promptly when the consuming task is cancelled (barge-in).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, NotRequired, Protocol, TypedDict, runtime_checkable


class ChatMessage(TypedDict):
    role: str  # system | user | assistant | tool
    content: str
    tool_calls: NotRequired[list[dict[str, Any]]]  # an assistant message that called tools
    tool_call_id: NotRequired[str]  # a tool message: the call it answers


@dataclass(frozen=True)
class ToolCall:
    """One function call the model asked for; `arguments` is the JSON text it wrote."""

    id: str
    name: str
    arguments: str

    def message(self) -> dict[str, Any]:
        return {"id": self.id, "type": "function", "function": {"name": self.name, "arguments": self.arguments}}


class ServiceError(RuntimeError):
    """A model back-end failed (raised, timed out, or answered badly); the turn can go on."""


class Heard(str):
    """A transcript that also carries the STT's other readings of the same audio.

    A `str` everywhere (an STT may return it or a plain `str`; the remote one cannot know
    more); `readings` are (text, how much less likely than this one), the end of the turn's
    evidence on whether the last word was really said (`agent.endpoint.doubtful_ending`).
    """

    readings: tuple[tuple[str, float], ...]

    def __new__(cls, text: str, readings: tuple[tuple[str, float], ...] = ()) -> Heard:
        heard = super().__new__(cls, text)
        heard.readings = readings
        return heard


def readings_of(text: str) -> tuple[tuple[str, float], ...]:
    return text.readings if isinstance(text, Heard) else ()


@runtime_checkable
class STT(Protocol):
    name: str

    async def transcribe(self, pcm: bytes, sample_rate: int = 16_000) -> str:
        """Text of s16le mono `pcm` (one user turn); a `Heard` if the back-end knows its other readings."""
        ...

    async def close(self) -> None: ...


@runtime_checkable
class LLM(Protocol):
    name: str

    def stream(self, messages: list[ChatMessage], max_tokens: int | None = None) -> AsyncIterator[str]:
        """Text deltas of the assistant's reply; cancelling the consumer stops generation."""
        ...

    async def close(self) -> None: ...


@runtime_checkable
class ToolLLM(LLM, Protocol):
    """An LLM back-end that can be offered tools (OpenAI `tools`, function type)."""

    supports_tools: bool  # False where the model's chat format has no tool calls

    def stream_tools(self, messages: list[ChatMessage], tools: list[dict[str, Any]],
                     max_tokens: int | None = None) -> AsyncIterator[str | ToolCall]:
        """Text deltas, then the tool calls the model made (each once it is complete)."""
        ...


@runtime_checkable
class TTS(Protocol):
    name: str
    sample_rate: int

    def synthesize(self, text: str) -> AsyncIterator[bytes]:
        """s16le mono PCM chunks at `sample_rate`, the first as soon as it exists."""
        ...

    async def close(self) -> None: ...
