"""Settings of the agent: the conversation (prompt, turn taking, barge-in, echo) and its tools."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, Field, field_validator

from voxline.config.types import Flag, Names, NonNegative, Positive, Seconds


class AgentSettings(BaseModel):
    """How the agent converses (turn taking, interruptions, echo) and which tools it offers."""

    # Tuned with `voxline bench --answers` on its `tune` split (README, Answers): with SmolLM2-135M,
    # naming the assistant or asking for "plain sentences" made it drift (even into French).
    system_prompt: str = "You are a helpful voice assistant. Answer in one short sentence."
    # Example exchanges after the system prompt ("user says -> assistant answers | ..."), the same
    # for every session, so llama.cpp evaluates them once (agent/prompt.py); empty = none. None is
    # a question of the benchmark (a unit test checks). A small model copies their form.
    # Empty by default: on the held-out split the one-sentence prompt without examples was right
    # 13 of 23 times, with the six examples tried 9 (README, Answers); a user's own set goes here.
    prompt_examples: str = ""
    max_history_messages: NonNegative = 12
    vad_threshold: Annotated[float, Field(gt=0, lt=1)] = 0.5
    vad_in_thread: Flag = False  # run Silero in its own thread (default: in the loop, ~0.1 ms a window)
    vad_batch_ms: Annotated[float, Field(ge=0, le=1000)] = 10.0  # with many callers, windows wait this long to share a call
    end_of_turn_silence_ms: Positive = 500  # silence that ends a turn when its cues are unsure or disagree
    end_of_turn_min_ms: Positive = 200  # ... when the words (and the model) say the turn is complete
    max_end_of_turn_ms: Positive = 2500  # ... when the words (or the model) say it is not finished
    end_of_turn_model: Flag = True  # score pauses with Smart Turn v3 (from the pipecat-ai wheel) if installed
    end_of_turn_model_threshold: Annotated[float, Field(ge=0, le=1)] = 0.5  # a score from here reads "complete"
    # Complete words whose last word Whisper doubted wait as unfinished ones: a beam reading that
    # stops earlier on the same words, unfinished, within this many log-prob per token ("a table
    # for" for "a table for it."); 0 = off. Whisper with stt_beam_size > 1 gives readings, embedded or via
    # `voxline serve stt` (a vendor's STT and a greedy beam give none). 0.3: 2 of 390 complete turns doubted.
    end_of_turn_doubt_margin: Annotated[float, Field(ge=0, le=5)] = 0.3
    speculative_replies: Flag = True  # start STT/LLM/TTS at the caller's pause; commit at end of turn
    speculation_pause_ms: NonNegative = 64  # the pause after which that speculative work starts (two VAD windows)
    turn_tail_ms: NonNegative = 96  # silence kept after the speech, past speculation_pause_ms while it holds sound
    turn_tail_level_dbfs: Annotated[float, Field(ge=-120, le=0)] = -51.0  # ... a 1 ms block this loud is sound
    min_speech_ms: NonNegative = 160
    barge_in_min_speech_ms: Positive = 1000  # speech over the agent this long interrupts without words ("mm-hmm" reaches ~770)
    false_interruption_timeout_ms: Positive = 2000  # a sound over the reply not judged by then: the reply resumes
    # Speech whose onset came before the reply's audio began, or this soon after (before the caller could hear
    # it, and before its echo could come back: a jitter buffer and the way back take more), goes on the caller's
    # turn: short words that would be noise over a reply drop it unheard and the turn is transcribed whole. 0 = off.
    turn_continue_ms: NonNegative = 60
    greeting: str = ""  # said by the agent when a call connects; empty = the caller speaks first
    max_turn_s: Seconds = 20.0
    echo_cancel: Flag = False  # mute the agent's own voice when callers send it back (no AEC: speakerphones, phone lines)
    echo_max_lag_ms: Annotated[int, Field(ge=20, le=3000)] = 1500  # echo delay searched (to the caller and back)
    echo_suppress: Annotated[float, Field(gt=0, le=1)] = 0.55  # share of a block's energy the agent's echo explains: muted
    echo_caller_db: Annotated[float, Field(gt=0, le=40)] = 10.0  # a band this far above the echo expected there is the caller's
    echo_caller_share: Annotated[float, Field(gt=0, le=1)] = 0.05  # share of a block in such bands: passed

    # Tools (docs/tools.md): offered to the LLM, run once the turn is committed
    tools_builtin: Names = ("time", "end_call")  # built-ins; empty = none
    tools_module: str = ""  # a Python module whose public functions are tools
    tools_webhooks: str = ""  # a YAML or JSON file of HTTP webhook tools
    tools_mcp: Names = ()  # MCP servers: http(s)://... (streamable HTTP) or a stdio command
    tool_timeout_s: Seconds = 5.0  # a call still running after this is answered with an error
    tool_filler_after_s: Annotated[float, Field(ge=0)] = 1.0  # a call running longer gets a spoken filler
    tool_filler_text: str = "One moment."
    tool_max_rounds: Annotated[int, Field(ge=1, le=10)] = 3  # LLM -> tools -> LLM rounds in one reply

    @field_validator("prompt_examples")
    @classmethod
    def _examples(cls, text: str) -> str:
        for pair in filter(None, (p.strip() for p in text.split("|"))):
            user, sep, assistant = pair.partition("->")
            if not sep or not user.strip() or not assistant.strip():
                raise ValueError(f"{pair!r} is not 'what the user says -> what the assistant answers'")
        return text
