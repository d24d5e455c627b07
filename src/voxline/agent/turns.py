"""End-of-turn detection from streaming VAD probabilities: sans-I/O, no clock, no models.

Feed one 32 ms window of 16 kHz PCM with its speech probability; get events back. Positions
are in milliseconds of audio fed, so tests replay audio exactly and the orchestrator maps
them to wall-clock time itself. How long a pause must last to end the turn is not fixed:
`EndOfTurn` decides it from the cues given with `cue()` (the end-of-turn model's score and
the speculative transcript of the paused audio), and a cue that arrives after enough silence
ends the turn at once.

The turn's audio starts `pre_roll_ms` before the speech: before its first loud run, when a
word's opening sound stopped short of `min_speech_ms` and the speech went on within
`pre_roll_ms` ("Wha-t": a stop consonant splits the word's VAD run; counting back from the
second run only cut the word's onset, and Whisper heard "Well" for "What").
The turn's audio keeps `pause_ms` of the silence after the speech, or up to `trailing_ms`
while that silence still holds sound (a voice's last sound decays below the VAD's threshold
before it is inaudible). The pause (and the speculation) comes at `pause_ms` when the sound
has faded by then, as it has for most voices; while it is still fading the pause waits for
it, a window at a time up to `trailing_ms`, so the speculated audio is the turn's whole tail.
(Speculating at `pause_ms` anyway and again on the longer audio cost a second STT queued
behind the first: the model thread cannot drop a call it has begun.)
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from voxline.agent.endpoint import Decision, EndOfTurn, EndOfTurnConfig, Reading

WINDOW_MS = 32


@dataclass(frozen=True)
class TurnConfig:
    threshold: float = 0.5  # probability that starts speech
    neg_threshold: float = 0.35  # below this, a window counts as silence (hysteresis)
    min_speech_ms: int = 160  # speech shorter than this is a click or a cough
    end_silence_ms: int = 500  # silence that ends the turn when the cues are unsure
    min_end_silence_ms: int = 200  # ... when every cue says the turn is complete
    max_end_silence_ms: int = 2500  # ... when the words (or the model) say it is not
    model_threshold: float = 0.5  # end-of-turn model score that reads "complete"
    doubt_margin: float = 0.3  # an STT reading this close that stops earlier makes complete words doubtful
    sustained_ms: int = 1000  # speech this long in one turn is a real interruption of the agent
    pause_ms: int = 64  # silence after which a speculative reply may start
    pre_roll_ms: int = 320  # audio kept from before the detected start
    trailing_ms: int = 96  # silence kept after the speech in the turn's audio, beyond pause_ms while it holds sound
    tail_level_dbfs: float = -51.0  # a window of that silence holds sound if a 1 ms block is this loud
    max_turn_ms: int = 20_000


@dataclass(frozen=True)
class SpeechStarted:
    at_ms: int


@dataclass(frozen=True)
class SpeechPaused:
    """Silence for `pause_ms`: the turn may be over. `pcm` is the turn so far.

    `pause` numbers this pause: cues about its audio are given back with it.
    """

    pcm: bytes
    speech_end_ms: int
    pause: int = 0


@dataclass(frozen=True)
class SpeechResumed:
    """Speech again after a pause: any speculative work on the paused audio is stale."""

    at_ms: int


@dataclass(frozen=True)
class SpeechSustained:
    """The turn has had `sustained_ms` of speech: more than a cough or a "mm-hmm"."""

    at_ms: int


@dataclass(frozen=True)
class SpeechEnded:
    pcm: bytes
    speech_end_ms: int  # where the speech itself ended
    at_ms: int  # where the end was decided (speech_end_ms + the silence waited)
    decision: Decision | None = None  # why it ended then (None: the turn hit max_turn_ms)


TurnEvent = SpeechStarted | SpeechPaused | SpeechResumed | SpeechSustained | SpeechEnded


class TurnDetector:
    def __init__(self, config: TurnConfig | None = None) -> None:
        config = config or TurnConfig()
        self.config = config
        self._tail_floor = 32768.0 * 10 ** (config.tail_level_dbfs / 20)
        self.endpoint = EndOfTurn(EndOfTurnConfig(config.min_end_silence_ms, config.end_silence_ms,
                                                  config.max_end_silence_ms, config.model_threshold,
                                                  config.doubt_margin))
        self.position_ms = 0
        self.speaking = False
        self._lead_windows = max(1, self.config.pre_roll_ms // WINDOW_MS)
        # Twice the pre-roll, each window with whether it was loud: a turn reaches back past a
        # short loud run that fell back into it (`_lead_in`).
        self._pre_roll: deque[tuple[bytes, bool]] = deque(maxlen=2 * self._lead_windows)
        self._candidate: list[bytes] = []
        self._turn: list[bytes] = []
        self._silence_ms = 0
        self._speech_ms = 0
        self._speech_end_ms = 0
        self._paused = False
        self._pause = 0  # number of the current pause; cues of older pauses are stale
        self._voiced_ms = 0
        self._sustained = False
        # The silence kept in the turn's audio: pause_ms, or more while the silence held sound.
        # The paused audio must equal the ended turn's, or the speculation is always wasted.
        self._tail_ms = min(config.pause_ms, config.trailing_ms)
        self._tail_open = True  # the tail may still grow: the windows from pause_ms on held sound so far

    def push(self, window: bytes, prob: float) -> list[TurnEvent]:
        self.position_ms += WINDOW_MS
        if self.speaking:
            return self._in_speech(window, prob)
        return self._in_quiet(window, prob)

    def cue(self, pause: int, score: float | None = None, text: str | None = None,
            words_coming: bool = False, readings: Sequence[Reading] = (),
            score_coming: bool | None = None) -> list[TurnEvent]:
        """What is known about pause `pause`'s audio: the model's score, or its transcript.

        `words_coming`: a transcript of it is on its way (then the turn waits for it, up to
        `max_end_silence_ms`); `text=""`: no words will come after all. `readings`: the STT's
        other readings of `text` (`endpoint.doubtful_ending`), if it has them. `score_coming`:
        the model is scoring it now (complete words that are not a question wait for the score).
        Returns the end of the turn when the cue makes the silence already waited enough.
        """
        if not (self.speaking and self._paused and pause == self._pause):
            return []  # speech resumed or the turn ended since: the cue is about stale audio
        if score is not None:
            self.endpoint.score = score
        if text is not None:
            self.endpoint.text = text
            self.endpoint.readings = readings
        self.endpoint.words_coming = self.endpoint.words_coming or words_coming
        if score_coming is not None:  # the model is scoring it (True), or has given up (False)
            self.endpoint.score_coming = score_coming
        return self._maybe_end()

    @property
    def decision(self) -> Decision:
        """What the turn in progress needs now (for logs and tests)."""
        return self.endpoint.decide()

    def reset(self) -> None:
        """Forget the current turn (listening switched off, session reset)."""
        self.speaking = False
        self._pre_roll.clear()
        self._candidate.clear()
        self._turn.clear()
        self._silence_ms = self._speech_ms = self._voiced_ms = 0
        self._paused = self._sustained = False
        self._reset_tail()
        self.endpoint.reset()

    def _reset_tail(self) -> None:
        self._tail_ms = min(self.config.pause_ms, self.config.trailing_ms)
        self._tail_open = True

    def _in_quiet(self, window: bytes, prob: float) -> list[TurnEvent]:
        cfg = self.config
        if prob >= cfg.threshold:
            self._candidate.append(window)
            self._speech_ms += WINDOW_MS
            if self._speech_ms >= cfg.min_speech_ms:
                self.speaking = True
                self._turn = self._lead_in() + self._candidate
                self._pre_roll.clear()
                self._candidate = []
                self._silence_ms = 0
                self._speech_end_ms = self.position_ms  # not the previous turn's
                self._voiced_ms = self._speech_ms
                started = self.position_ms - self._speech_ms
                return [SpeechStarted(at_ms=max(0, started))]
            return []
        # Not (yet) speech: a short candidate run falls back into the pre-roll.
        for w in self._candidate:
            self._pre_roll.append((w, True))
        self._candidate = []
        self._speech_ms = 0
        self._pre_roll.append((window, False))
        return []

    def _lead_in(self) -> list[bytes]:
        """The windows before the confirmed speech that join the turn: `pre_roll_ms` of them
        before its onset, which is the earliest loud run no quieter gap of `pre_roll_ms` parts
        from it (bounded by the buffer, twice the pre-roll)."""
        held = list(self._pre_roll)
        onset, quiet = len(held), 0
        for i in range(len(held) - 1, -1, -1):
            if held[i][1]:
                onset, quiet = i, 0
            else:
                quiet += 1
                if quiet >= self._lead_windows:
                    break
        return [w for w, _ in held[max(0, onset - self._lead_windows):]]

    def _in_speech(self, window: bytes, prob: float) -> list[TurnEvent]:
        cfg = self.config
        self._turn.append(window)
        events: list[TurnEvent] = []
        if prob >= cfg.neg_threshold:
            if self._paused:
                events.append(SpeechResumed(at_ms=self.position_ms - WINDOW_MS))
                self._paused = False
                self.endpoint.reset()
            self._silence_ms = 0
            self._reset_tail()
            self._speech_end_ms = self.position_ms
            self._voiced_ms += WINDOW_MS
            if not self._sustained and self._voiced_ms >= cfg.sustained_ms:
                self._sustained = True
                events.append(SpeechSustained(at_ms=self.position_ms))
        else:
            self._silence_ms += WINDOW_MS
            self._grow_tail(window)
        if len(self._turn) * WINDOW_MS >= cfg.max_turn_ms:
            events.append(SpeechEnded(self._turn_pcm(), self._speech_end_ms, self.position_ms))
            self.reset()
            return events
        if not self._paused and self._silence_ms >= cfg.pause_ms and not self._tail_open:
            self._paused = True
            self._pause += 1
            events.append(SpeechPaused(self._turn_pcm(), self._speech_end_ms, self._pause))
        if self._silence_ms:
            events += self._maybe_end()
        return events

    def _maybe_end(self) -> list[TurnEvent]:
        decision = self.endpoint.decide()
        if self._silence_ms < max(decision.wait_ms, self.config.pause_ms):
            return []
        ended = SpeechEnded(self._turn_pcm(), self._speech_end_ms, self.position_ms, decision)
        self.reset()
        return [ended]

    def _grow_tail(self, window: bytes) -> None:
        """From `pause_ms` on, a silent window that holds sound joins the turn's tail (up to
        `trailing_ms`); the first quiet one, or `trailing_ms`, settles the tail."""
        s, cfg = self._silence_ms, self.config
        if not self._tail_open or s < cfg.pause_ms:
            return
        loud = s <= cfg.trailing_ms and holds_sound(window, self._tail_floor)
        if loud and s > self._tail_ms:
            self._tail_ms = s
        if not loud or s >= cfg.trailing_ms:
            self._tail_open = False

    def _turn_pcm(self) -> bytes:
        """The turn's audio, trimmed to the kept tail of the silence that followed it."""
        extra = max(0, self._silence_ms - self._tail_ms) // WINDOW_MS
        windows = self._turn[: len(self._turn) - extra] if extra else self._turn
        return b"".join(windows)


def holds_sound(window: bytes, floor: float, block: int = 16) -> bool:
    """Whether any 1 ms block (16 samples at 16 kHz) of s16 `window` has an RMS above `floor`:
    a decaying sound, not one stray sample of a noise floor."""
    x = np.frombuffer(window, dtype=np.int16).astype(np.float32)
    n = x.size // block * block
    if not n:
        return False
    rms = np.sqrt((x[:n].reshape(-1, block) ** 2).mean(axis=1))
    return bool(rms.max() > floor)
