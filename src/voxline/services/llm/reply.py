"""One reply the embedded LLM is generating, and the pipeline's "first audio first" gate on it.

Kept apart from `llamacpp` (which steps the replies): what a reply carries between steps, its
prompt, sequence and sampler, and where its text goes.
"""

from __future__ import annotations

import asyncio
import codecs
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

from voxline.services.base import ChatMessage
from voxline.services.llm.holders import current_holder


@dataclass(eq=False)
class Reply:
    """One reply being generated: its prompt, its sequence, and where its text goes."""

    messages: list[ChatMessage]
    max_tokens: int
    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue[object] = field(default_factory=asyncio.Queue)
    cancelled: bool = False
    slot: int = -1
    tokens: list[int] = field(default_factory=list)  # the prompt
    stop: list[str] = field(default_factory=list)
    pos: int = 0  # tokens of this sequence in the KV cache
    last: int | None = None  # the token sampled last, to evaluate next
    made: int = 0  # tokens generated
    text: str = ""
    sampler: Any = None
    decoder: Any = field(default_factory=lambda: codecs.getincrementaldecoder("utf-8")(errors="ignore"))


class Gate:
    """The pipeline's "first audio first" signal: `clear()` while a reply's first piece is
    synthesized (work nobody is waiting for yet waits), `set()` after; one hold per task."""

    def __init__(self, hold: Callable[[Hashable], None], release: Callable[[Hashable], None]) -> None:
        self._hold = hold
        self._release = release

    def clear(self) -> None:
        self._hold(current_holder())

    def set(self) -> None:
        self._release(current_holder())
