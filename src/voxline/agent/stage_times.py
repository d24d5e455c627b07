"""Wall-clock marks of one turn's stages and the `turn.metrics` event made from them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class StageTimes:
    """Wall-clock marks of one turn (the agent's clock), turned into the `turn.metrics` event."""

    speech_end: float = 0.0
    decided: float = 0.0
    stt_start: float = 0.0
    stt_end: float = 0.0
    llm_start: float = 0.0
    llm_first_token: float = 0.0
    first_sentence: float = 0.0
    first_audio_ready: float = 0.0
    first_audio_sent: float = 0.0
    speculative: bool = False
    end_of_turn_wait_ms: int | None = None  # the silence the end-of-turn decision asked for
    end_of_turn_reason: str | None = None
    end_of_turn_score: float | None = None  # the end-of-turn model's score, if it ran
    tool_s: float = 0.0  # time spent waiting for tools (all rounds)
    tools: list[dict[str, Any]] = field(default_factory=list)

    def metrics(self) -> dict[str, Any]:
        def ms(a: float, b: float) -> float | None:
            return round((b - a) * 1000, 1) if a and b else None

        return {
            "end_of_turn_ms": ms(self.speech_end, self.decided),
            "stt_ms": ms(self.stt_start, self.stt_end),
            "llm_first_token_ms": ms(self.llm_start, self.llm_first_token),
            "first_sentence_ms": ms(self.llm_start, self.first_sentence),
            "tts_first_audio_ms": ms(self.first_sentence, self.first_audio_ready),
            "server_voice_to_voice_ms": ms(self.speech_end, self.first_audio_sent),
            # Where the turn's time went, from the end of the speech: the work began (at the
            # caller's pause when speculative), the first audio was ready, and what the commit
            # (the end-of-turn decision) still waited for before the first audio went out.
            "work_start_ms": ms(self.speech_end, self.stt_start),
            "first_audio_ready_ms": ms(self.speech_end, self.first_audio_ready),
            "audio_after_commit_ms": ms(self.decided, self.first_audio_sent),
            "speculative": self.speculative,
            "end_of_turn_wait_ms": self.end_of_turn_wait_ms,
            "end_of_turn_reason": self.end_of_turn_reason,
            "end_of_turn_score": None if self.end_of_turn_score is None else round(self.end_of_turn_score, 3),
            "tool_ms": round(self.tool_s * 1000, 1) if self.tools else None,
            "tools": list(self.tools),
        }
