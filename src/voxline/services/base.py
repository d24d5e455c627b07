"""The tiny async interfaces every model back-end implements.

Back-ends own their threads: every blocking model call runs off the event loop, and every
stream stops promptly when the consuming task is cancelled (barge-in).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol, TypedDict, runtime_checkable


class ChatMessage(TypedDict):
    role: str  # system | user | assistant
    content: str


class ServiceError(RuntimeError):
    """A model back-end failed (raised, timed out, or answered badly); the turn can go on."""


@runtime_checkable
class STT(Protocol):
    name: str

    async def transcribe(self, pcm: bytes, sample_rate: int = 16_000) -> str:
        """Text of s16le mono `pcm` (one user turn)."""
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
class TTS(Protocol):
    name: str
    sample_rate: int

    def synthesize(self, text: str) -> AsyncIterator[bytes]:
        """s16le mono PCM chunks at `sample_rate`, the first as soon as it exists."""
        ...

    async def close(self) -> None: ...
