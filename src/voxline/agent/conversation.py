"""One session's turn-taking and history as a sans-I/O state machine.

Methods take what happened (speech started, a transcript arrived, playback ended, ...) and
return the actions to carry out; the orchestrator performs them with real models and a real
bus. Every result carries its turn number, and results of a turn that was cancelled are
ignored here, so a late transcript or reply can never leak into the next turn.

    idle -> listening -> user_speaking -> thinking -> agent_speaking -> listening ...

Speculation is decided here too: a pause asks for a speculative reply (`Speculate`), and the
end of the turn says whether that reply is the one to commit (`Transcribe.speculative`).
A sound while the agent speaks pauses its playout and is judged (`Classify`, then
`overlap_heard`): noise and backchannels resume the reply where it was, words or sustained
speech interrupt it. `tick(now_ms)` (the audio clock) resumes a reply whose sound was never
transcribed, so no path leaves the agent silent (those three in the `overlaps.Overlaps` mixin).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from voxline.agent.actions import (
    Action,
    CancelReply,
    Classify,
    ClearPlayback,
    DropSpeculation,
    Emit,
    ForgetSpeech,
    PausePlayout,
    Respond,
    ResumePlayout,
    Speak,
    Speculate,
    State,
    Transcribe,
)
from voxline.agent.overlaps import Overlaps
from voxline.services.base import ChatMessage

__all__ = ["APOLOGY", "Action", "CancelReply", "Classify", "ClearPlayback", "Conversation", "DropSpeculation", "Emit",
           "ForgetSpeech", "PausePlayout", "Respond", "ResumePlayout", "Speak", "Speculate", "State", "Transcribe",
           "has_words"]

APOLOGY = "Sorry, I had a problem answering that. Please try again."


class Conversation(Overlaps):
    def __init__(self, system_prompt: str, max_history_messages: int = 12, max_held_s: float = 20.0,
                 speculate: bool = True, overlap_timeout_ms: int = 2000, examples: Sequence[ChatMessage] = (),
                 continue_ms: int = 0) -> None:
        self.system_prompt = system_prompt
        self.examples = list(examples)  # after the system prompt, before the history (agent/prompt.py)
        self.speculate = speculate
        self.overlap_timeout_ms = overlap_timeout_ms
        # Speech whose onset came before the reply's audio began, or within this of it (before
        # the caller could hear it, and before its echo could come back), goes on their turn.
        self.continue_ms = continue_ms
        self.max_history_messages = max_history_messages
        self.max_held_bytes = int(max_held_s * 16_000) * 2
        self.state = State.IDLE
        self.turn = 0
        self.turns_completed = 0
        self.interruptions = 0
        self.history: list[tuple[int, ChatMessage]] = []
        # The turn's audio until its reply is heard: if the caller speaks on first, the next
        # turn is transcribed together with it, so Whisper hears the whole utterance at once.
        self._held_pcm = b""
        self._continues = False  # the next transcript replaces the last user message (it includes it)
        self._heard_turn = 0  # the last turn whose reply audio started playing
        self._unheard_turn = 0  # ... before that: what `_heard_turn` goes back to when the caller went on
        self._reply_since = 0  # audio clock (ms) when the current reply's audio started
        self._turn_pcm = b""  # the turn the current reply answers, while the caller may still go on
        self._apologised_turn = -1
        self._greeting_turn = -1
        self._listening: bool | None = None  # None until told: a failed-over session listens
        self._speculated: bytes | None = None  # the audio the speculative reply answers
        self._overlap = 0  # number of the current sound over the agent's speech; 0: none
        self._overlap_since = 0  # audio clock (ms) when it began
        self._overlap_ended: bytes | None = None  # its audio, if its turn ended before it was judged
        self._overlaps = 0
        self.now_ms = 0
        self.false_interruptions = 0

    # -- inputs -------------------------------------------------------------------------
    def set_listening(self, on: bool) -> list[Action]:
        self._listening = on
        actions: list[Action] = [Emit("listening", {"listening": on})]
        if on and self.state is State.IDLE:
            actions += self._to(State.LISTENING)
        elif not on:
            self._held_pcm = b""
            self._continues = False
            self._speculated = None
            if self._overlap and self.state is State.AGENT_SPEAKING:  # no audio comes to judge the sound
                actions += self._resume("listening off")
            # A reply in progress still finishes: switching the mic off is not an interruption.
            if self.state in (State.LISTENING, State.USER_SPEAKING):
                actions += self._to(State.IDLE)
        return actions

    def speech_started(self, at_ms: int | None = None) -> list[Action]:
        """The caller's speech began (`at_ms`: its onset on the audio clock, if known)."""
        if self.state is State.THINKING:
            # The caller was only pausing: drop the early reply and hear the rest of the turn.
            # The audio so far is held and transcribed again together with what comes next:
            # two halves of a sentence transcribed apart lose words at the cut (Whisper hears
            # neither half in context), and the short window costs the same for both.
            if any(t == self.turn and m["role"] == "user" for t, m in self.history):
                self._continues = True
            return [CancelReply(self.turn), *self._to(State.USER_SPEAKING)]
        if self.state is State.AGENT_SPEAKING:
            if self._overlap:
                return []
            # Maybe a cough or a "mm-hmm": hold the reply (the caller hears it stop at once)
            # until the sound is judged.
            self._overlaps += 1
            self._overlap, self._overlap_since, self._overlap_ended = self._overlaps, self.now_ms, None
            # Begun before the reply's audio (or within `continue_ms` of it, less than any echo
            # takes to come back: the caller's jitter buffer and the way back): not an answer to it.
            onset = self.now_ms if at_ms is None else at_ms
            self._overlap_continues = (onset - self._reply_since < self.continue_ms
                                       and any(t == self.turn and m["role"] == "user" for t, m in self.history))
            message = f"caller sound during turn {self.turn}: reply paused"
            return [PausePlayout(self.turn), Emit("log", {"stage": "vad", "level": "info", "message": message})]
        if self.state in (State.LISTENING, State.IDLE):
            return self._to(State.USER_SPEAKING)
        return []

    def speech_paused(self, pcm: bytes) -> list[Action]:
        """The caller paused: maybe the end. Prepare the reply, or judge a sound over the agent."""
        if self._overlap and self.state is State.AGENT_SPEAKING:
            return [Classify(self._overlap, pcm)]
        if not self.speculate or self.state is not State.USER_SPEAKING:
            return []
        actions: list[Action] = [DropSpeculation()] if self._speculated is not None else []
        self._speculated = self.turn_audio(pcm)
        return [*actions, Speculate(self._speculated)]

    def speech_resumed(self) -> list[Action]:
        """The caller went on after a pause: a speculative reply to the shorter audio is stale."""
        if self._speculated is None:
            return []
        self._speculated = None
        return [DropSpeculation()]

    def speech_ended(self, pcm: bytes) -> list[Action]:
        if self._overlap and self.state is State.AGENT_SPEAKING:
            self._overlap_ended = pcm  # the turn, should the sound turn out to be one
            return []
        if self.state is not State.USER_SPEAKING:
            return []
        self.turn += 1
        # Held until it is transcribed: if the caller speaks on first, it is heard again with
        # the rest. Bounded, so a caller who never lets the agent answer cannot grow it forever.
        pcm = self._held_pcm = (self._held_pcm + pcm)[-self.max_held_bytes:]
        speculated, self._speculated = self._speculated, None
        reuse = speculated is not None and speculated == pcm
        drop: list[Action] = [DropSpeculation()] if speculated is not None and not reuse else []
        return [*drop, *self._to(State.THINKING), Transcribe(self.turn, pcm, speculative=reuse)]

    def greet(self, text: str) -> list[Action]:
        """Speak first (the `greeting` setting): once, in a conversation that has not begun."""
        text = text.strip()
        if not text or self.turn or self.history or self.state not in (State.IDLE, State.LISTENING):
            return []
        self.turn += 1
        self._greeting_turn = self.turn
        self.history.append((self.turn, {"role": "assistant", "content": text}))
        return [*self._to(State.THINKING), Emit("agent.text", {"text": text, "turn": self.turn, "final": True}),
                Speak(self.turn, text)]

    def transcribed(self, turn: int, text: str) -> list[Action]:
        if turn != self.turn or self.state is not State.THINKING:
            return []
        text = text.strip()
        continues, self._continues = self._continues, False
        last = self.history[-1] if self.history else None
        earlier = last[1]["content"] if continues and last is not None and last[1]["role"] == "user" else None
        if not has_words(text):
            if earlier is None:
                self._held_pcm = b""  # noise: the next turn stands alone
                return [Emit("transcript.final", {"text": text, "turn": turn}), *self._to(self._ready())]
            text = earlier  # noise after a pause: answer what was said before it
        if earlier is not None:
            self.history.pop()  # the new transcript heard the earlier audio too
        self.history.append((turn, {"role": "user", "content": text}))
        self._trim_history()
        return [Emit("transcript.final", {"text": text, "turn": turn, "continued": earlier is not None}),
                Respond(turn, self.messages())]

    def reply_audio_started(self, turn: int) -> list[Action]:
        if turn != self.turn or self.state is not State.THINKING:
            return []
        # The caller heard an answer: the next turn stands alone (unless they were going on
        # already, `Overlaps._went_on`: the turn's audio is kept for that moment).
        self._turn_pcm, self._held_pcm = self._held_pcm, b""
        self._continues = False
        self._unheard_turn, self._heard_turn = self._heard_turn, turn
        self._reply_since = self.now_ms
        return self._to(State.AGENT_SPEAKING)

    def reply_finished(self, turn: int, text: str, interrupted: bool = False) -> list[Action]:
        """The reply's text is complete (or was cut off): it becomes history either way."""
        # A reply cut off before any of it was heard (the caller spoke on while the agent was
        # thinking) answers nothing, and a reply counts only for a question still in history.
        if interrupted and turn != self._heard_turn:
            return []
        asked = any(t == turn and m["role"] == "user" for t, m in self.history)
        answered = any(t == turn and m["role"] == "assistant" for t, m in self.history)
        if text.strip() and asked and not answered and (turn == self.turn or interrupted):
            self.history.append((turn, {"role": "assistant", "content": text.strip()}))
            self._trim_history()
        if turn == self.turn and not interrupted:
            self.turns_completed += 1
            self._held_pcm = b""
        return []

    def playback_done(self, turn: int) -> list[Action]:
        if turn != self.turn or self.state not in (State.AGENT_SPEAKING, State.THINKING):
            return []
        self._turn_pcm = b""
        actions: list[Action] = []
        if self._overlap:  # the reply ended under a sound: the sound is the caller's now
            actions, self._overlap = [ForgetSpeech()], 0
        return [*actions, *self._to(self._ready())]

    def failed(self, turn: int, stage: str, message: str) -> list[Action]:
        if turn != self.turn:
            return []
        actions: list[Action] = [Emit("error", {"stage": stage, "message": message, "turn": turn}),
                                 Emit("log", {"stage": stage, "level": "error", "message": message})]
        if self.state in (State.THINKING, State.AGENT_SPEAKING):
            self._held_pcm = b""
            if self._apologised_turn == turn or turn == self._greeting_turn:  # the apology failed too, or the greeting
                return actions + self._to(self._ready())
            self._apologised_turn = turn  # once per turn (a TTS fault may be passing)
            return actions + [Speak(turn, APOLOGY)]
        return actions

    def restore(self, history: list[ChatMessage], turn: int) -> None:
        """Take over a conversation another agent was running (failover, restart).

        Only a fresh conversation is restored: one that has heard the caller already keeps its own.
        """
        if self.history or self.turn:
            return
        self.turn = max(0, turn)
        self.history = [(0, {"role": m["role"], "content": m["content"]}) for m in history
                        if m.get("role") in ("user", "assistant") and isinstance(m.get("content"), str)]
        self._trim_history()

    # -- views ----------------------------------------------------------------------------
    def turn_audio(self, pcm: bytes) -> bytes:
        """What `speech_ended(pcm)` would transcribe: lets the agent transcribe speculatively."""
        return self._held_pcm + pcm

    def messages(self) -> list[ChatMessage]:
        return [{"role": "system", "content": self.system_prompt}, *self.examples, *(m for _, m in self.history)]

    def reply_history(self) -> list[ChatMessage]:
        """What a reply to the next transcript builds on: without the last user message when
        that transcript replaces it (a resumed turn is transcribed whole, its first part too)."""
        messages = self.messages()
        if self._continues and self.history and self.history[-1][1]["role"] == "user":
            messages.pop()
        return messages

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

    def _trim_history(self) -> None:
        excess = len(self.history) - self.max_history_messages
        if excess > 0:
            self.history = self.history[excess:]
            while self.history and self.history[0][1]["role"] != "user":
                self.history.pop(0)


def has_words(text: str) -> bool:
    stripped = text.strip(" .,!?-…'\"()[]")
    # Whisper's stock outputs for noise and silence are not a turn.
    return bool(stripped) and stripped.lower() not in {"you", "thanks for watching", "blank audio", "blank_audio",
                                                       "music", "silence"}
