"""One session's turn-taking and history as a sans-I/O state machine.

Methods take what happened (speech started, a transcript arrived, playback ended, ...) and
return the actions to carry out; the orchestrator performs them with real models and a real
bus. Every result carries its turn number, and results of a turn that was cancelled are
ignored here, so a late transcript or reply can never leak into the next turn.

    idle -> listening -> user_speaking -> thinking -> agent_speaking -> listening ...
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from voxline.services.base import ChatMessage

APOLOGY = "Sorry, I had a problem answering that. Please try again."


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
    turn: int
    pcm: bytes


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


Action = Emit | Transcribe | Respond | Speak | CancelReply | ClearPlayback


class Conversation:
    def __init__(self, system_prompt: str, max_history_messages: int = 12) -> None:
        self.system_prompt = system_prompt
        self.max_history_messages = max_history_messages
        self.state = State.IDLE
        self.turn = 0
        self.turns_completed = 0
        self.interruptions = 0
        self.history: list[tuple[int, ChatMessage]] = []
        self._held_pcm = b""  # a turn cut short by the caller speaking on: prepended to the next
        self._listening: bool | None = None  # None until told: a failed-over session listens

    # -- inputs -------------------------------------------------------------------------
    def set_listening(self, on: bool) -> list[Action]:
        self._listening = on
        actions: list[Action] = [Emit("listening", {"listening": on})]
        if on and self.state is State.IDLE:
            actions += self._to(State.LISTENING)
        elif not on:
            self._held_pcm = b""
            # A reply in progress still finishes: switching the mic off is not an interruption.
            if self.state in (State.LISTENING, State.USER_SPEAKING):
                actions += self._to(State.IDLE)
        return actions

    def speech_started(self) -> list[Action]:
        if self.state is State.THINKING:
            # The caller was only pausing: drop the early reply and hear the whole turn.
            actions: list[Action] = [CancelReply(self.turn)]
            self._drop_turn_history(self.turn)
            return actions + self._to(State.USER_SPEAKING)
        if self.state is State.AGENT_SPEAKING:
            self.interruptions += 1
            return [CancelReply(self.turn), ClearPlayback(self.turn), Emit("interruption", {"turn": self.turn}),
                    Emit("log", {"stage": "vad", "level": "info", "message": f"barge-in: caller interrupted turn {self.turn}"}),
                    *self._to(State.USER_SPEAKING)]
        if self.state in (State.LISTENING, State.IDLE):
            return self._to(State.USER_SPEAKING)
        return []

    def speech_ended(self, pcm: bytes) -> list[Action]:
        if self.state is not State.USER_SPEAKING:
            return []
        self.turn += 1
        # Held until the caller hears an answer: if they speak on again, all of it is one turn.
        pcm = self._held_pcm = self._held_pcm + pcm
        return [*self._to(State.THINKING), Transcribe(self.turn, pcm)]

    def transcribed(self, turn: int, text: str) -> list[Action]:
        if turn != self.turn or self.state is not State.THINKING:
            return []
        text = text.strip()
        actions: list[Action] = [Emit("transcript.final", {"text": text, "turn": turn})]
        if not has_words(text):
            self._held_pcm = b""
            return actions + self._to(self._ready())
        self.history.append((turn, {"role": "user", "content": text}))
        self._trim_history()
        return actions + [Respond(turn, self.messages())]

    def reply_audio_started(self, turn: int) -> list[Action]:
        if turn != self.turn or self.state is not State.THINKING:
            return []
        self._held_pcm = b""  # the caller heard an answer: the next turn stands alone
        return self._to(State.AGENT_SPEAKING)

    def reply_finished(self, turn: int, text: str, interrupted: bool = False) -> list[Action]:
        """The reply's text is complete (or was cut off): it becomes history either way."""
        # Only a reply to a question still in the history counts: an early reply dropped
        # because the caller spoke on was never heard and answers nothing.
        asked = any(t == turn and m["role"] == "user" for t, m in self.history)
        if text.strip() and asked and not any(t == turn and m["role"] == "assistant" for t, m in self.history):
            if turn == self.turn or interrupted:
                self.history.append((turn, {"role": "assistant", "content": text.strip()}))
                self._trim_history()
        if turn == self.turn and not interrupted:
            self.turns_completed += 1
        return []

    def playback_done(self, turn: int) -> list[Action]:
        if turn != self.turn or self.state not in (State.AGENT_SPEAKING, State.THINKING):
            return []
        return self._to(self._ready())

    def failed(self, turn: int, stage: str, message: str) -> list[Action]:
        if turn != self.turn:
            return []
        actions: list[Action] = [Emit("error", {"stage": stage, "message": message, "turn": turn}),
                                 Emit("log", {"stage": stage, "level": "error", "message": message})]
        if self.state in (State.THINKING, State.AGENT_SPEAKING):
            self._held_pcm = b""
            if stage == "tts":  # nothing can be said: go back to listening
                return actions + self._to(self._ready())
            return actions + [Speak(turn, APOLOGY)]
        return actions

    def restore(self, history: list[ChatMessage], turn: int) -> None:
        """Take over a conversation another agent was running (failover, restart).

        Only a fresh conversation is restored: one that has heard the caller already keeps its own.
        """
        if self.history or self.turn:
            return
        self.turn = turn
        self.history = [(0, {"role": m["role"], "content": m["content"]}) for m in history
                        if m.get("role") in ("user", "assistant") and isinstance(m.get("content"), str)]
        self._trim_history()

    # -- views ----------------------------------------------------------------------------
    def turn_audio(self, pcm: bytes) -> bytes:
        """What `speech_ended(pcm)` would transcribe: lets the agent transcribe speculatively."""
        return self._held_pcm + pcm

    def messages(self) -> list[ChatMessage]:
        return [{"role": "system", "content": self.system_prompt}, *(m for _, m in self.history)]

    def history_json(self) -> list[dict[str, Any]]:
        return [{"turn": t, **m} for t, m in self.history]

    # -- helpers --------------------------------------------------------------------------
    def _ready(self) -> State:
        """Where a finished turn leaves the session: idle if the microphone was switched off."""
        return State.IDLE if self._listening is False else State.LISTENING

    def _to(self, state: State) -> list[Action]:
        if state is self.state:
            return []
        self.state = state
        return [Emit("state", {"state": state.value, "turn": self.turn})]

    def _drop_turn_history(self, turn: int) -> None:
        self.history = [(t, m) for t, m in self.history if t != turn]

    def _trim_history(self) -> None:
        excess = len(self.history) - self.max_history_messages
        if excess > 0:
            self.history = self.history[excess:]
            while self.history and self.history[0][1]["role"] != "user":
                self.history.pop(0)


def has_words(text: str) -> bool:
    stripped = text.strip(" .,!?-…'\"()[]")
    # Whisper's stock outputs for noise and silence are not a turn.
    return bool(stripped) and stripped.lower() not in {"you", "thanks for watching", "blank audio", "blank_audio", "music", "silence"}
