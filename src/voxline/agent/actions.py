"""What `Conversation` returns: the session's states and the actions the adapter carries out.

Plain data, no behaviour: each action names one thing to do (emit an event, transcribe,
start or drop a speculative reply, pause or resume playout, ...) and the turn it is for.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from voxline.services.base import ChatMessage


class State(str, Enum):
    IDLE = "idle"
    LISTENING = "listening"
    USER_SPEAKING = "user_speaking"
    THINKING = "thinking"
    AGENT_SPEAKING = "agent_speaking"


@dataclass(frozen=True)
class Emit:
    type: str
    fields: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Transcribe:
    """Answer `turn`: with the speculative reply already under way when `speculative`."""

    turn: int
    pcm: bytes
    speculative: bool = False


@dataclass(frozen=True)
class Speculate:
    """Start a reply to `pcm` ahead of the end of the turn; nothing of it is heard unless committed."""

    pcm: bytes


@dataclass(frozen=True)
class DropSpeculation:
    pass


@dataclass(frozen=True)
class Classify:
    """Transcribe the sound heard over the agent's speech; answer with `overlap_heard(overlap, text)`."""

    overlap: int
    pcm: bytes


@dataclass(frozen=True)
class PausePlayout:
    turn: int


@dataclass(frozen=True)
class ResumePlayout:
    turn: int


@dataclass(frozen=True)
class ForgetSpeech:
    """The sound was not a turn: the turn detector drops what it has of it."""


@dataclass(frozen=True)
class Respond:
    turn: int
    messages: list[ChatMessage]


@dataclass(frozen=True)
class Speak:
    """Say fixed text (an apology after a failure) as the reply of `turn`."""

    turn: int
    text: str


@dataclass(frozen=True)
class CancelReply:
    turn: int


@dataclass(frozen=True)
class ClearPlayback:
    turn: int


Action = (Emit | Transcribe | Respond | Speak | CancelReply | ClearPlayback | Speculate | DropSpeculation
          | Classify | PausePlayout | ResumePlayout | ForgetSpeech)
