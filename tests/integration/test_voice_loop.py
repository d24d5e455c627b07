"""The voice loop end to end over real WebRTC, with the real models: ask, hear, interrupt."""

from __future__ import annotations

import asyncio

import pytest

from audio_helpers import at48k, says_the_same, words
from voxline.audio.resample import resample_s16
from voxline.client.audio import RATE
from voxline.client.call import call
from voxline.client.caller import Caller

pytestmark = pytest.mark.models






async def test_a_spoken_question_gets_a_spoken_answer(voice_server, speech, stt) -> None:
    result = await call(voice_server.url, at48k(speech("What is the capital of France?")), timeout=60)
    assert result.error is None
    assert {"capital", "france"} <= words(result.transcript)
    assert result.reply_text.strip()
    assert result.voice_to_voice_ms is not None and result.voice_to_voice_ms > 0
    # The reply really came back as audio on the same peer connection, and says the words.
    assert result.reply_audio.size > RATE // 2
    heard = await stt.transcribe(resample_s16(result.reply_audio.tobytes(), RATE, 16_000))
    assert says_the_same(heard, result.reply_text), (heard, result.reply_text)
    metrics = result.turn_metrics[-1]
    assert metrics["stt_ms"] is not None and metrics["tts_first_audio_ms"] is not None
    session = voice_server.media.registry.get(result.session_id)
    assert session.turns == 1 and session.ended


async def test_barge_in_stops_the_reply_and_the_new_turn_goes_on(voice_server, speech) -> None:
    async with Caller(voice_server.url) as caller:
        await caller.say(at48k(speech("Tell me a long story about a brave knight and a dragon.")))
        speaking = await caller.wait_for(lambda e: e["type"] == "state" and e["state"] == "agent_speaking", 40)
        assert speaking is not None, caller.events
        await asyncio.sleep(0.8)
        second_end = await caller.say(at48k(speech("Stop. What is two plus two?"), pad_s=0.0))
        interruption = await caller.wait_for(lambda e: e["type"] == "interruption", 10)
        assert interruption is not None and interruption["turn"] == 1
        # The agent's voice stops at once: silence from shortly after the barge-in until the caller
        # has finished speaking (the next reply can only start after that).
        assert not caller.recorder.sound_between(interruption["ts"] + 0.5, second_end)
        assert await caller.wait_reply_done(after=2, timeout=60)
        finals = [e for e in caller.of_type("transcript.final") if e["turn"] >= 2]
        assert any({"two", "plus"} & words(e["text"]) for e in finals), finals
        assert caller.first_sound_after(second_end) is not None  # the new turn was answered aloud
        agent = voice_server.orchestrator.sessions[caller.session_id]
        assert agent.conv.interruptions == 1
        assert agent.conv.state.value == "listening"


async def test_two_concurrent_sessions_never_mix(voice_server, speech) -> None:
    a, b = Caller(voice_server.url), Caller(voice_server.url)
    await asyncio.gather(a.connect(), b.connect())
    try:
        await asyncio.gather(a.say(at48k(speech("What is the capital of France?"))),
                             b.say(at48k(speech("What color is the sky?"))))
        done = await asyncio.gather(a.wait_reply_done(1, 90), b.wait_reply_done(1, 90))
        assert all(done), (a.events, b.events)
        for caller, mine, theirs in ((a, "france", "sky"), (b, "sky", "france")):
            assert all(e["session_id"] == caller.session_id for e in caller.events)
            heard = " ".join(e["text"] for e in caller.of_type("transcript.final"))
            assert mine in words(heard) and theirs not in words(heard)
            history = " ".join(m["content"] for m in voice_server.orchestrator.sessions[caller.session_id].conv.messages()[1:])
            assert mine in words(history) and theirs not in words(history)
            assert caller.recorder.first_sound is not None
    finally:
        await asyncio.gather(a.close(), b.close())


async def test_audio_reaches_the_agent_only_while_listening(voice_server, speech) -> None:
    question = at48k(speech("What is the capital of France?"))
    async with Caller(voice_server.url) as caller:
        await caller.client.set_listening(False)
        await caller.say(question)
        assert await caller.wait_for(lambda e: e["type"] == "transcript.final", 4) is None
        await caller.client.set_listening(True)
        await asyncio.sleep(0.2)
        await caller.say(question)
        assert await caller.wait_reply_done(after=1, timeout=60)
        assert len(caller.of_type("transcript.final")) == 1
