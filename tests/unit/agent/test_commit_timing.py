"""What the end of the turn still waits for: the speculative reply's work starts at the caller's
pause, so when it is done by the commit its first audio goes out at the commit itself."""

from __future__ import annotations

from agent_harness import Call
from fakes import speech
from voxline.bus.codec import AudioKind


def _metrics(call: Call) -> dict:
    [metrics] = [e["metrics"] for e in call.tap.of("turn.metrics")]
    return metrics


async def test_a_finished_speculation_is_heard_at_the_commit_itself(call: Call) -> None:
    call.models.stt.texts = ["What time is it?"]
    call.models.stt.delay_s = 0.02  # STT, first token and first audio all done within the 200 ms wait
    call.models.llm.first_token_s = 0.02
    call.models.tts.delay_s = 0.01
    await call.say(speech(700))
    await call.quiet(1500)
    m = _metrics(call)
    assert m["speculative"] is True
    assert m["first_audio_ready_ms"] < m["end_of_turn_ms"]  # ready before the turn was decided
    assert m["audio_after_commit_ms"] == 0.0  # and sent at the decision, not after it
    assert m["server_voice_to_voice_ms"] == m["end_of_turn_ms"]
    first = next(msg for msg in call.tap.audio if msg.kind is AudioKind.AUDIO)
    assert any("0.0 ms after the end of the turn" in line for line in call.tap.logs())
    assert first.pcm  # the audio itself, not only a marker


async def test_the_work_starts_at_the_pause_and_the_commit_waits_only_for_what_is_left(call: Call) -> None:
    call.models.stt.texts = ["What time is it?"]
    call.models.stt.delay_s = 0.15
    call.models.llm.first_token_s = 0.15
    call.models.tts.delay_s = 0.1
    await call.say(speech(700))
    await call.quiet(1500)
    m = _metrics(call)
    assert m["speculative"] is True
    assert m["work_start_ms"] < m["end_of_turn_ms"]  # the STT began in the pause, before the decision
    assert m["first_audio_ready_ms"] > m["end_of_turn_ms"]
    # The commit waited only for the rest of the chain, not for the whole of it again.
    assert m["audio_after_commit_ms"] == round(m["server_voice_to_voice_ms"] - m["end_of_turn_ms"], 1)
    assert m["server_voice_to_voice_ms"] < m["work_start_ms"] + 150 + 150 + 100 + 100
