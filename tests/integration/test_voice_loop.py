"""The voice loop end to end over real WebRTC, with the real models: ask, hear, interrupt."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest

from audio_helpers import at48k, says_the_same, until, words
from sentences import MONTHS, PLANET, SPAIN, STOP, STORY, STORY_WORDS
from tests.integration.conftest import start_server, stop_server
from voxline.audio.resample import resample_s16
from voxline.bus.codec import AudioKind, AudioMessage
from voxline.client.audio import RATE, SPEECH_THRESHOLD
from voxline.client.call import call
from voxline.client.caller import Caller
from voxline.config import Settings

pytestmark = pytest.mark.models


async def test_a_spoken_question_gets_a_spoken_answer_and_no_model_runs_on_the_loop(voice_server, speech, stt,
                                                                                   model_work) -> None:
    """The whole turn over real WebRTC; and README's "the event loop stays responsive while
    STT/LLM/TTS run", checked where it can fail: every STT, LLM and TTS call of the turn ran
    on a model thread, none on the event loop's thread (which also carries the media)."""
    loop_thread = threading.current_thread().name
    result = await call(voice_server.url, at48k(speech(SPAIN.text)), timeout=60)
    ran = {model for model, _ in model_work["threads"]}
    assert ran >= {"stt", "llm", "tts"}, model_work["threads"]
    on_loop = [model for model, thread in model_work["threads"] if thread == loop_thread]
    assert not on_loop, f"model calls ran on the event loop's thread: {on_loop}"
    assert result.error is None
    assert SPAIN.heard <= words(result.transcript), result.transcript
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


# The media server may send the one 20 ms frame already in flight after the pause; the rest
# of the margin is the pause marker's trip (agent -> memory bus -> relay -> playout) on this
# process's loop, which also runs the caller (the model threads share its two cores).
FRAME_S = 0.02
DELIVERY_MARGIN_S = 0.06
QUEUED_S = 2.0
GREETING = ("Hello, and welcome to the voxline test line. I can answer questions about many things. "
            "Ask me about the weather, the capital of a country, or a simple sum. "
            "Take your time, and speak whenever you are ready. I am listening all the time.")
STORY_TOKENS = 400  # long enough that the LLM is still writing the story when the caller cuts in


def summary(caller: Caller, made: dict[str, list[tuple[float, str]]]) -> str:
    """The call's events and the model work, one line each, for a failure's message."""
    t0 = caller.events[0]["ts"] if caller.events else 0.0
    lines = [f"{e['ts'] - t0:7.3f} {e['type']} {e.get('turn', '')} {e.get('state') or e.get('message') or e.get('text') or ''}"
             for e in caller.events if e["type"] != "agent.text" or e.get("final")]
    lines += [f"{t - t0:7.3f} llm ended: {asked}" for t, asked in made["llm_end"]]
    lines.append(f"llm tokens {len(made['llm'])}, tts sentences {len(made['tts'])}")
    return "\n".join(lines)


def tap_sent_frames(playout, held: list[int]) -> list[tuple[float, int, bool]]:  # type: ignore[no-untyped-def]
    """(time, pts, loud) of each frame the media server encodes for the caller, as it goes out;
    `held` gets the bytes of reply audio queued when each PAUSE marker arrived."""
    sent: list[tuple[float, int, bool]] = []
    encoder = playout.encoder
    assert encoder is not None
    push = playout.push

    def noted_push(msg: AudioMessage) -> None:
        if msg.kind is AudioKind.PAUSE:
            held.append(len(playout.buffer))
        push(msg)

    playout.push = noted_push

    class Tap:
        def encode(self, pcm: bytes, pts: int):  # type: ignore[no-untyped-def]
            loud = bool(np.abs(np.frombuffer(pcm, dtype=np.int16).astype(np.int32)).max() > SPEECH_THRESHOLD)
            sent.append((time.time(), pts, loud))
            return encoder.encode(pcm, pts)

    playout.encoder = Tap()
    return sent


@pytest.fixture
def model_work(models, monkeypatch: pytest.MonkeyPatch) -> dict[str, list[tuple[float, str]]]:
    """What the embedded LLM and TTS threads produce: (time, the request) per token / audio chunk,
    recorded in the model threads themselves (the model boundary), not where the agent reads it."""
    made: dict[str, list[tuple[float, str]]] = {"llm": [], "tts": [], "llm_end": []}  # tts: each start
    made["threads"] = []  # (model, the thread it ran on) per call
    emit, ended, synthesize = models.llm._emit, models.llm._ended, models.tts._synthesize
    transcribe, batch = models.stt.transcribe_sync, models.stt._batch  # long audio; short windows, batched

    def counted_transcribe(pcm, sample_rate=16_000):  # type: ignore[no-untyped-def]
        made["threads"].append(("stt", threading.current_thread().name))
        return transcribe(pcm, sample_rate)

    def counted_batch(items):  # type: ignore[no-untyped-def]
        made["threads"].append(("stt", threading.current_thread().name))
        return batch(items)

    def counted_emit(reply, delta):  # type: ignore[no-untyped-def]
        made["threads"].append(("llm", threading.current_thread().name))
        made["llm"].append((time.time(), reply.messages[-1]["content"]))
        emit(reply, delta)

    def counted_ended(reply):  # type: ignore[no-untyped-def]
        made["llm_end"].append((time.time(), reply.messages[-1]["content"]))
        ended(reply)

    def counted_synthesize(text, stop):  # type: ignore[no-untyped-def]
        made["tts"].append((time.time(), text))  # a sentence's synthesis starts
        made["threads"].append(("tts", threading.current_thread().name))
        yield from synthesize(text, stop)

    monkeypatch.setattr(models.llm, "_emit", counted_emit)
    monkeypatch.setattr(models.llm, "_ended", counted_ended)
    monkeypatch.setattr(models.tts, "_synthesize", counted_synthesize)
    monkeypatch.setattr(models.stt, "transcribe_sync", counted_transcribe)
    monkeypatch.setattr(models.stt, "_batch", counted_batch)
    return made


async def test_barge_in_pauses_within_a_frame_and_stops_the_replys_llm_and_tts(models, speech, model_work) -> None:
    """README's barge-in promise over real WebRTC, with the real models, in two interruptions.

    First the caller cuts into a long greeting (fixed text, so there is always reply audio
    queued to stop) by asking for a story:
    1. from the moment the server's VAD reports the caller's speech start, the media server
       sends no loud frame of the greeting but the one in flight (timed where each frame is
       encoded; DELIVERY_MARGIN_S for the pause marker's trip over the bus), and no frame the
       caller receives (matched by RTP timestamp) was sent later than that;
    2. the interruption is real: no greeting audio goes out after it until the story starts.
    Then the caller cuts into the story (STOP: "Stop. What is four plus three?"):
    3. the story's LLM, still writing, makes at most one token more, and its TTS starts no new
       sentence (both counted in the model threads); the new question is answered aloud.

    Why not the caller's arrival times: the caller shares this process's loop with the server
    and the agent, and its socket is read one datagram per loop turn, so on a crowded machine
    frames sent before the pause were seen to arrive 0.4-2 s late. The RTP timestamp ties
    each received frame to the moment the server sent it.
    """
    story_asked, stop_asked = at48k(speech(STORY), pad_s=0.0), at48k(speech(STOP.text), pad_s=0.0)  # made before the call
    await models.warm()
    running, cleanup = await start_server(Settings(max_sessions=2, session_create_rate_per_min=1000,
                                                   llm_max_tokens=STORY_TOKENS, greeting=GREETING), models)
    try:
        async with Caller(running.url) as caller:
            playout, held = running.media.peers[caller.session_id].playout, []
            sent = tap_sent_frames(playout, held)
            # Cut in once the greeting is playing with QUEUED_S of it still queued (what is
            # measured is timed by the server's events and frames, not by this wait).
            assert await until(lambda: len(playout.buffer) >= QUEUED_S * RATE * 2, 60), summary(caller, model_work)
            await caller.say(story_asked)
            began = caller.source.played_at
            assert began is not None
            interruption = await caller.wait_for(lambda e: e["type"] == "interruption", 20)
            assert interruption is not None and interruption["turn"] == 1, summary(caller, model_work)
            heard_start = await caller.wait_for(lambda e: e["type"] == "log" and e["message"] == "speech started"
                                                and e["ts"] >= began, 1)
            assert heard_start is not None, summary(caller, model_work)
            story = await caller.wait_for(lambda e: e["type"] == "state" and e["state"] == "agent_speaking"
                                          and e.get("turn", 0) >= 2, 90)
            assert story is not None, summary(caller, model_work)

            # 1 and 2: the greeting's loud frames as they left the server, and as the caller got them.
            assert held and held[0] > 0, ("the greeting had no audio left when it was paused: nothing was measured",
                                          held, summary(caller, model_work))
            stopped_by = heard_start["ts"] + FRAME_S + DELIVERY_MARGIN_S
            loud_sent = [(t, pts) for t, pts, loud in sent if loud and t < story["ts"]]
            late = [round(t - heard_start["ts"], 3) for t, _ in loud_sent if t > stopped_by]
            assert not late, f"greeting audio left the server this long (s) after the speech start: {late}"
            last_sent, last_pts = max(loud_sent)
            rtp0 = round(caller.recorder.timeline[0][0] * RATE) - next(pts for _, pts, _ in sent)
            received = {round(media * RATE) - rtp0: arrived for media, arrived, _ in caller.recorder.timeline}
            assert last_pts in received, "the caller did not receive the greeting's last frame"
            when = {pts: t for t, pts, _ in sent}
            got = [round(media * RATE) - rtp0 for media, _, sound in caller.recorder.timeline if sound is not None]
            heard = [pts for pts in got if pts in when and when[pts] < story["ts"]]
            heard_late = [round(when[pts] - heard_start["ts"], 3) for pts in heard if when[pts] > stopped_by]
            assert not heard_late, f"the caller got greeting audio sent this long (s) after the speech start: {heard_late}"
            print(f"speech start seen {heard_start['ts'] - began:.3f} s after the caller began sending it "
                  f"({held[0] / RATE / 2:.1f} s of greeting queued); its last loud frame left "
                  f"{1000 * (last_sent - heard_start['ts']):.0f} ms after it and reached the caller "
                  f"{1000 * (received[last_pts] - last_sent):.0f} ms later; interruption "
                  f"{interruption['ts'] - heard_start['ts']:.3f} s after it")

            # 3: cut into the story while its LLM is writing.
            assert await until(lambda: caller.first_sound_after(story["ts"]) is not None, 10), "the story was not heard"
            said_end = await caller.say(stop_asked)
            second = await caller.wait_for(lambda e: e["type"] == "interruption" and e["turn"] >= 2, 20)
            assert second is not None, summary(caller, model_work)
            # "Stop." alone may end a turn first (a complete sentence, then a pause); the question
            # then continues it or follows it: wait for the transcript that holds the question.
            finals = await caller.wait_for(lambda e: e["type"] == "transcript.final" and e["turn"] > second["turn"]
                                           and bool(STOP.heard & words(e["text"])), 60)
            assert finals is not None, summary(caller, model_work)
            assert await until(lambda: any(STORY_WORDS & words(a) for _, a in model_work["llm_end"]),
                               60), "the interrupted story's LLM stream did not end:\n" + summary(caller, model_work)
            asked_story = [a for _, a in model_work["llm_end"] if STORY_WORDS & words(a)]
            story_tokens = [t for t, a in model_work["llm"] if STORY_WORDS & words(a)]
            ended = [t for t, a in model_work["llm_end"] if STORY_WORDS & words(a)]
            assert ended[-1] > second["ts"] - 0.05, "the story was written before the caller cut in: nothing was measured"
            after = [t for t in story_tokens if t > second["ts"]]
            print(f"the story's LLM made {len(story_tokens)} tokens, {len(after)} after the interruption; "
                  f"its stream ended {ended[-1] - second['ts']:.3f} s after it ({asked_story})")
            assert len(after) <= 1, f"the interrupted LLM made {len(after)} tokens after the cancel"
            assert len(story_tokens) < STORY_TOKENS
            text = "".join(e["text"] for e in caller.of_type("agent.text") if e["turn"] == second["turn"] and not e["final"])
            late_tts = [t for t, sentence in model_work["tts"] if sentence.strip() in text and t > second["ts"]]
            assert not late_tts, "the interrupted reply's TTS started new sentences"
            agent = running.orchestrator.sessions[caller.session_id]
            assert agent.conv.interruptions >= 2  # a third when "Stop." got a reply the question cut into
            assert await caller.wait_reply_done(after=second["turn"] + 1, timeout=90), summary(caller, model_work)
            assert caller.first_sound_after(said_end) is not None  # the new turn was answered aloud
    finally:
        await stop_server(cleanup)


async def test_two_concurrent_sessions_never_mix(voice_server, speech) -> None:
    a, b = Caller(voice_server.url), Caller(voice_server.url)
    await asyncio.gather(a.connect(), b.connect())
    try:
        # Two callers, two voices.
        await asyncio.gather(a.say(at48k(speech(SPAIN.text))), b.say(at48k(speech(PLANET.text, voice=speech.other))))
        done = await asyncio.gather(a.wait_reply_done(1, 90), b.wait_reply_done(1, 90))
        assert all(done), (a.events, b.events)
        for caller, mine, theirs in ((a, "spain", "planet"), (b, "planet", "spain")):
            assert all(e["session_id"] == caller.session_id for e in caller.events)
            heard = " ".join(e["text"] for e in caller.of_type("transcript.final"))
            assert mine in words(heard) and theirs not in words(heard)
            history = " ".join(m["content"] for m in voice_server.orchestrator.sessions[caller.session_id].conv.messages()[1:])
            assert mine in words(history) and theirs not in words(history)
            assert caller.recorder.first_sound is not None
    finally:
        await asyncio.gather(a.close(), b.close())


async def test_audio_reaches_the_agent_only_while_listening(voice_server, speech) -> None:
    question = at48k(speech(MONTHS.text))
    async with Caller(voice_server.url) as caller:
        await caller.client.set_listening(False)
        await caller.say(question)
        assert await caller.wait_for(lambda e: e["type"] == "transcript.final", 4) is None
        await caller.client.set_listening(True)
        await asyncio.sleep(0.2)
        await caller.say(question)
        assert await caller.wait_reply_done(after=1, timeout=60)
        assert len(caller.of_type("transcript.final")) == 1
