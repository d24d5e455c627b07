"""The echo front end before the real Silero VAD: a reply looped back through Opus and a phone
line starts no speech, and a caller talking over it still does (`voxline.bench.turns_echo`)."""

from __future__ import annotations

import numpy as np
import pytest

from sentences import OVER_REPLY
from voxline.bench import voices
from voxline.bench.turns_echo import RATE, EchoCase, run_case


def test_looped_back_reply_starts_no_speech_but_a_caller_over_it_does(vad_model, speech) -> None:
    reply = np.frombuffer(speech("The capital of France is Paris, a large city on the river Seine, "
                                 "famous for its museums and its food."), dtype=np.int16)
    caller = np.frombuffer(speech(OVER_REPLY), dtype=np.int16)
    raw = run_case(vad_model, reply, caller, EchoCase(120, -10), "none")
    assert raw.false_starts >= 1  # without it, the agent's own voice is speech
    cleaned = run_case(vad_model, reply, caller, EchoCase(120, -10), "voxline")
    assert cleaned.false_starts == 0 and cleaned.erle_db > 10
    talked_over = run_case(vad_model, reply, caller, EchoCase(120, -10, caller_at_s=2.0), "voxline")
    assert talked_over.false_starts == 0 and talked_over.detected_ms is not None



STORY = ("Once upon a time there was a brave knight who lived in a castle on a hill. "
         "One day a dragon came to the village and the knight rode out to meet it.")
ENGINE = ("A car engine burns fuel inside its cylinders. The pistons move up and down and turn "
          "the crankshaft, which turns the wheels through the gearbox.")


@pytest.mark.parametrize(("delay_ms", "gain_db", "move_ms", "text", "voice", "wpm"), [
    (120, -6, 200, STORY, "en-us", 160), (30, -8, 240, STORY, "en-us+f3", 140),
    (280, -12, -200, ENGINE, "en-us", 160)])
def test_an_echo_whose_delay_moves_during_the_reply_starts_no_speech(vad_model, delay_ms: float, gain_db: float,
                                                                      move_ms: float, text: str, voice: str,
                                                                      wpm: int) -> None:
    """The caller's jitter buffer moves the echo (in 3 steps, a second apart): a sure search
    over half the window, while the path fails on loud input, finds the new lag before the leak
    is speech (over the whole window, half of it before the move, it kept the old lag ~140 ms)."""
    reply = np.frombuffer(voices.espeak(text, voice, wpm, RATE), dtype=np.int16)
    moved = run_case(vad_model, reply, reply[:10], EchoCase(delay_ms, gain_db, move_ms=move_ms), "voxline")
    assert moved.false_starts == 0
