"""The echo front end before the real Silero VAD: a reply looped back through Opus and a phone
line starts no speech, and a caller talking over it still does (`voxline.bench.turns_echo`)."""

from __future__ import annotations

import numpy as np

from sentences import OVER_REPLY
from voxline.bench.turns_echo import EchoCase, run_case


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
