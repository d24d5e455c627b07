"""A sound over the agent's speech, judged: the reply resumes, or the caller interrupts it.

A mixin of `Conversation` (sans-I/O, the state named below is the conversation's). The sound
has paused the reply already (`Conversation.speech_started`); its transcript (`overlap_heard`)
says whether it was noise, a backchannel or words (`agent/backchannel.py`), sustained speech
interrupts whatever its words, and the audio clock (`tick`) resumes a reply whose sound was
never judged in time, so no path leaves the agent silent.
"""

from __future__ import annotations

from voxline.agent.actions import Action, CancelReply, ClearPlayback, Emit, ForgetSpeech, ResumePlayout, State
from voxline.agent.backchannel import Overlap, classify, echoes, says_words, text_words
from voxline.services.base import ChatMessage


class Overlaps:
    state: State
    turn: int
    interruptions: int
    false_interruptions: int
    now_ms: int
    overlap_timeout_ms: int
    _overlap: int  # number of the current sound over the agent's speech; 0: none
    _overlap_since: int
    _overlap_ended: bytes | None
    _reply_turn: int = 0  # the turn whose reply `_reply_text` is (as generated: ahead of its audio)
    _reply_text: str = ""
    _overlap_continues: bool = False  # the sound began as the reply did: the caller going on, if it has words
    _heard_turn: int
    _unheard_turn: int
    _turn_pcm: bytes
    _held_pcm: bytes
    _continues: bool
    history: list[tuple[int, ChatMessage]]

    def speech_ended(self, pcm: bytes) -> list[Action]:
        raise NotImplementedError

    def _to(self, state: State) -> list[Action]:
        raise NotImplementedError

    def speech_sustained(self) -> list[Action]:
        """The sound over the agent's speech has gone on too long to be a backchannel."""
        if not (self._overlap and self.state is State.AGENT_SPEAKING):
            return []
        return self._interrupt("sustained speech")

    def reply_said(self, turn: int, text: str) -> None:
        """A piece of the reply's text to `turn`, as the LLM wrote it: what its echo can say."""
        if turn != self._reply_turn:
            self._reply_turn, self._reply_text = turn, ""
        self._reply_text += text

    def overlap_heard(self, overlap: int, text: str) -> list[Action]:
        """The transcript of sound `overlap`: noise, backchannels and the reply's own words resume it."""
        if overlap != self._overlap or self.state is not State.AGENT_SPEAKING:
            return []
        kind = classify(text)
        if kind is Overlap.WORDS and self._reply_turn == self.turn and echoes(text, self._reply_text):
            return self._resume("ignored the reply's own words (echo)")
        if kind is Overlap.WORDS:
            return self._interrupt("words")
        if self._overlap_continues and kind is Overlap.NOISE and says_words(text) and not self._maybe_echo(text):
            # "of Spain?", begun as the reply did: too few words to interrupt a reply the caller
            # was hearing, but this one they had not heard yet; they were finishing their turn.
            # (Words that ask for the turn, "Stop. What is...", interrupt it as anywhere else.)
            return self._went_on("words")
        return self._resume(f"ignored {kind.value} {text.strip()!r}" if kind is Overlap.BACKCHANNEL
                            else f"ignored {kind.value}")

    def _maybe_echo(self, text: str) -> bool:
        """Short words that could be the reply's start coming back (the canceller has the least
        to go on then): one word found in the reply, or several in its order."""
        if self._reply_turn != self.turn:
            return False
        if echoes(text, self._reply_text):
            return True
        words = text_words(text)
        return len(words) == 1 and words[0] in text_words(self._reply_text)

    def tick(self, now_ms: int) -> list[Action]:
        """The audio clock moved on: a sound that was never judged in time does not hold the reply."""
        self.now_ms = now_ms
        if self._overlap and self.state is State.AGENT_SPEAKING and now_ms - self._overlap_since >= self.overlap_timeout_ms:
            return self._resume("no transcript of the sound in time")
        return []

    def _interrupt(self, why: str) -> list[Action]:
        """A real interruption: the reply stops for good and the caller has the turn."""
        self._overlap = 0
        ended, self._overlap_ended = self._overlap_ended, None
        self.interruptions += 1
        actions: list[Action] = [
            CancelReply(self.turn), ClearPlayback(self.turn), Emit("interruption", {"turn": self.turn}),
            Emit("log", {"stage": "vad", "level": "info", "message": f"barge-in ({why}): caller interrupted turn {self.turn}"}),
            *self._to(State.USER_SPEAKING)]
        if ended is not None:  # the interruption's speech is over already: answer it
            actions += self.speech_ended(ended)
        return actions

    def _went_on(self, why: str) -> list[Action]:
        """The caller was going on with their turn (its end came at a pause inside it): the
        reply is dropped unanswered and the turn is heard again whole with what follows, as
        when they go on before any reply is heard."""
        self._overlap = 0
        self._overlap_continues = False
        ended, self._overlap_ended = self._overlap_ended, None
        self._heard_turn = self._unheard_turn  # the cut reply answers nothing (`reply_finished`)
        # Nor does a reply whose text was complete already: it answered half a turn.
        self.history = [(t, m) for t, m in self.history if not (t == self.turn and m["role"] == "assistant")]
        self._held_pcm, self._turn_pcm = self._turn_pcm, b""
        self._continues = any(t == self.turn and m["role"] == "user" for t, m in self.history)
        message = f"caller went on ({why}) as the reply began: reply of turn {self.turn} dropped, the turn heard whole"
        actions: list[Action] = [CancelReply(self.turn), ClearPlayback(self.turn),
                                 Emit("log", {"stage": "vad", "level": "info", "message": message}),
                                 *self._to(State.USER_SPEAKING)]
        if ended is not None:  # the interruption's speech is over already: answer it
            actions += self.speech_ended(ended)
        return actions

    def _resume(self, why: str) -> list[Action]:
        self._overlap = 0
        self._overlap_ended = None
        self.false_interruptions += 1
        return [ResumePlayout(self.turn), ForgetSpeech(),
                Emit("log", {"stage": "vad", "level": "info", "message": f"{why}: reply of turn {self.turn} resumed"})]
