"""SessionAgent on fake models and a virtual clock: speculation, early and late ends of turn,
pauses mid-sentence, backchannels, real interruptions, greetings and faults, in milliseconds."""

from __future__ import annotations

import asyncio

from agent_harness import SID, Call
from fakes import BusTap, FakeTurnModel, VirtualClock, fake_models, speech
from voxline.agent.conversation import Conversation, State
from voxline.agent.session_agent import SessionAgent
from voxline.agent.turns import TurnConfig, TurnDetector
from voxline.bus.codec import AudioKind
from voxline.bus.messages import Greet, History, Played, SetListening
from voxline.services.base import Heard


async def test_a_complete_question_is_answered_after_the_minimum_silence(call: Call) -> None:
    call.models.stt.texts = ["What time is it?"]
    await call.say(speech(700))
    await call.quiet(400)  # the speculative transcript comes ~100 ms into the pause
    assert AudioKind.AUDIO in call.tap.kinds()  # answered before the old 500 ms of silence
    [metrics] = [e["metrics"] for e in call.tap.of("turn.metrics")] or [None]
    await call.quiet(600)
    [metrics] = [e["metrics"] for e in call.tap.of("turn.metrics")]
    assert metrics["end_of_turn_wait_ms"] == 200 and metrics["speculative"] is True
    assert len(call.models.stt.calls) == 1 and len(call.models.llm.calls) == 1
    assert any("end of turn after" in line and "words complete" in line for line in call.tap.logs())


async def test_a_pause_mid_sentence_is_not_answered_and_the_whole_utterance_is_answered_once(call: Call) -> None:
    call.models.stt.texts = ["I want to", "I want to book a table for two."]
    await call.say(speech(600))
    await call.quiet(1200)  # a long pause, at an unfinished point
    assert call.tap.kinds() == [] and call.conv.state is State.USER_SPEAKING
    await call.say(speech(600))  # "... book a table for two."
    await call.quiet(800)
    assert call.tap.kinds()[:1] == [AudioKind.AUDIO]
    # One reply heard, to the whole utterance (the speculative one to "I want to" was dropped unheard).
    assert call.models.llm.calls[-1][-1] == {"role": "user", "content": "I want to book a table for two."}
    assert [e["text"] for e in call.tap.of("transcript.final")] == ["I want to book a table for two."]
    assert [m["content"] for m in call.conv.messages() if m["role"] == "user"] == ["I want to book a table for two."]
    assert len({m.turn for m in call.tap.audio}) == 1


async def test_a_last_word_whisper_doubted_is_not_taken_for_the_end_of_the_turn(call: Call) -> None:
    # Whisper's beam heard "...a table for it." but nearly as likely "...a table for" (#13): the
    # STT's other readings travel with the transcript to the end-of-turn decision.
    invented = Heard("I would like to book a table for it.", (("I would like to book a table for", 0.01),))
    call.models.stt.texts = [invented, "I would like to book a table for two people."]
    await call.say(speech(700))
    await call.quiet(1200)  # the caller's pause mid-sentence
    assert call.tap.kinds() == [] and call.conv.state is State.USER_SPEAKING
    await call.say(speech(600))
    await call.quiet(800)
    assert call.tap.kinds()[:1] == [AudioKind.AUDIO]
    assert [e["text"] for e in call.tap.of("transcript.final")] == ["I would like to book a table for two people."]


async def test_an_unfinished_utterance_still_ends_at_the_maximum_wait(call: Call) -> None:
    call.models.stt.texts = ["My number is five five"]
    await call.say(speech(600))
    await call.quiet(2300)
    assert call.tap.kinds() == []
    await call.quiet(700)
    assert AudioKind.AUDIO in call.tap.kinds()  # never stuck waiting for more
    [metrics] = [e["metrics"] for e in call.tap.of("turn.metrics")]
    assert metrics["end_of_turn_wait_ms"] == 2500


async def test_the_end_of_turn_model_score_is_used_and_logged(clock: VirtualClock, tap: BusTap) -> None:
    models = fake_models(clock, turn_model=FakeTurnModel(clock, score_value=0.05))
    call = Call(clock, models, tap, speculate=False)  # no transcript before the end: the model decides
    await call.listen()
    await call.say(speech(600))
    await call.quiet(1500)
    assert call.tap.kinds() == []  # the model says unfinished: it waits longer than 500 ms
    await call.quiet(1500)
    assert any("model 0.05" in line for line in call.tap.logs())
    [metrics] = [e["metrics"] for e in call.tap.of("turn.metrics")]
    assert metrics["end_of_turn_score"] == 0.05 and metrics["end_of_turn_wait_ms"] == 2500
    await call.agent.close()


async def test_a_question_is_answered_on_its_words_without_the_end_of_turn_model(clock: VirtualClock,
                                                                                 tap: BusTap) -> None:
    """The speculative transcript comes first: a finished question ends at the minimum silence
    whatever the model would say, so the model never runs beside that STT (it took the cores)."""
    models = fake_models(clock, turn_model=FakeTurnModel(clock, score_value=0.05))
    models.stt.texts = ["What time is it?"]
    call = Call(clock, models, tap)
    await call.listen()
    await call.say(speech(700))
    await call.quiet(1000)
    [metrics] = [e["metrics"] for e in call.tap.of("turn.metrics")]
    assert metrics["end_of_turn_wait_ms"] == 200 and metrics["speculative"] is True
    assert models.turn_model is not None and models.turn_model.calls == 0
    await call.agent.close()


async def test_a_statement_is_scored_by_the_model_after_its_words(clock: VirtualClock, tap: BusTap) -> None:
    """Words complete but not a question: the model decides, scored once the words are in,
    and the turn waits for its score even when the words come after the minimum silence."""
    turn_model = FakeTurnModel(clock, score_value=0.05)
    models = fake_models(clock, turn_model=turn_model)
    models.stt.texts = ["Tell me about Paris."]
    models.stt.delay_s = 0.3  # the words come ~360 ms into the pause, past the 200 ms minimum
    marks: list[tuple[str, float]] = []
    score, transcribe = turn_model.score, models.stt.transcribe

    async def scored(pcm: bytes) -> float | None:
        marks.append(("score", clock.time()))
        return await score(pcm)

    async def transcribed(pcm: bytes, sample_rate: int = 16_000) -> str:
        text = await transcribe(pcm, sample_rate)
        marks.append(("words", clock.time()))
        return text

    turn_model.score = scored  # type: ignore[method-assign]
    models.stt.transcribe = transcribed  # type: ignore[method-assign]
    call = Call(clock, models, tap)
    await call.listen()
    await call.say(speech(700))
    await call.quiet(1500)
    [metrics] = [e["metrics"] for e in call.tap.of("turn.metrics")]
    assert metrics["end_of_turn_score"] == 0.05 and metrics["end_of_turn_wait_ms"] == 500
    assert [m for m, _ in marks] == ["words", "score"] and turn_model.calls == 1
    await call.agent.close()


async def test_a_caller_who_goes_on_stops_a_started_reply_and_is_answered_once(call: Call) -> None:
    # The second transcription hears the first part's audio again with the rest (a resumed
    # turn is transcribed whole: Whisper loses words at a cut between two halves).
    call.models.stt.texts = ["Tell me about Paris.", "Tell me about Paris. And London."]
    call.models.tts.delay_s = 0.4  # the reply is not audible yet when the caller goes on
    await call.say(speech(600))
    await call.quiet(300)  # committed at 200 ms
    assert call.conv.state is State.THINKING
    await call.say(speech(500))
    await call.quiet(1000)
    texts = [e["text"] for e in call.tap.of("transcript.final")]
    assert texts[-1] == "Tell me about Paris. And London."
    asked = [m["content"] for m in call.models.llm.calls[-1] if m["role"] == "user"]
    assert asked == ["Tell me about Paris. And London."]  # once, not the first part twice
    assert call.conv.history_json()[0]["content"] == "Tell me about Paris. And London."


async def playing_reply(call: Call) -> None:
    call.models.tts.ms_per_char = 200  # a long reply: it is still playing while the caller reacts
    call.models.stt.texts = ["Tell me a story."]
    await call.say(speech(600))
    await call.quiet(500)
    assert call.conv.state is State.AGENT_SPEAKING
    call.tap.kinds()
    call.tap.audio.clear()


async def test_a_backchannel_pauses_the_reply_and_it_resumes(call: Call) -> None:
    await playing_reply(call)
    call.models.stt.texts = ["Mm-hmm."]
    await call.say(speech(300))
    assert call.tap.kinds() == [AudioKind.PAUSE]  # silent at once, not cut
    await call.quiet(400)
    assert call.tap.kinds() == [AudioKind.PAUSE, AudioKind.RESUME]
    assert call.conv.state is State.AGENT_SPEAKING and call.conv.interruptions == 0
    assert any("ignored backchannel 'Mm-hmm.'" in line for line in call.tap.logs())
    assert not call.tap.of("interruption")
    await call.quiet(3000)  # and it is not answered later as a turn
    assert len(call.models.llm.calls) == 1


async def test_a_cough_without_words_resumes_the_reply(call: Call) -> None:
    await playing_reply(call)
    call.models.stt.texts = [""]
    await call.say(speech(250))
    await call.quiet(400)
    assert call.tap.kinds() == [AudioKind.PAUSE, AudioKind.RESUME]
    assert any("ignored noise" in line for line in call.tap.logs())


async def test_words_interrupt_the_reply_and_are_answered(call: Call) -> None:
    await playing_reply(call)
    call.models.stt.texts = ["Stop, what about London?"]
    await call.say(speech(400))
    await call.quiet(600)
    kinds = call.tap.kinds()
    assert kinds[:2] == [AudioKind.PAUSE, AudioKind.CLEAR]
    assert call.tap.of("interruption") and call.conv.interruptions == 1
    assert kinds[2:3] == [AudioKind.AUDIO]  # the interruption is answered
    assert call.models.llm.calls[-1][-1]["content"] == "Stop, what about London?"


async def test_sustained_speech_interrupts_without_waiting_for_words(call: Call) -> None:
    await playing_reply(call)
    call.models.stt.texts = [None]  # the words would never come
    start = call.clock.now
    await call.say(speech(200))
    assert call.tap.kinds() == [AudioKind.PAUSE]
    paused_at = [m.ts for m in call.tap.audio if m.kind is AudioKind.PAUSE][0]
    assert paused_at - start < 0.3  # the agent is silent within 300 ms of the caller's start
    await call.say(speech(500))
    assert call.tap.kinds() == [AudioKind.PAUSE, AudioKind.CLEAR]
    assert call.conv.state is State.USER_SPEAKING


async def test_a_sound_whose_transcript_never_comes_does_not_leave_the_agent_silent(call: Call) -> None:
    await playing_reply(call)
    call.models.stt.texts = [None]  # the STT hangs
    await call.say(speech(250))
    await call.quiet(1500)
    assert call.tap.kinds() == [AudioKind.PAUSE]
    await call.quiet(800)
    assert call.tap.kinds() == [AudioKind.PAUSE, AudioKind.RESUME]
    assert any("no transcript of the sound in time" in line for line in call.tap.logs())


async def test_a_failed_transcription_of_a_sound_resumes_the_reply(call: Call) -> None:
    await playing_reply(call)
    call.models.stt.texts = [RuntimeError("stt down")]
    await call.say(speech(250))
    await call.quiet(300)
    assert call.tap.kinds() == [AudioKind.PAUSE, AudioKind.RESUME]


async def test_the_reply_ending_under_a_sound_leaves_the_agent_listening(call: Call) -> None:
    await playing_reply(call)
    call.models.stt.texts = [None]
    await call.say(speech(250))
    await call.clock.advance(2.0)  # the reply is all sent meanwhile
    await call.finish_playback()
    assert call.conv.state is State.LISTENING
    assert call.agent.detector.speaking is False


async def test_the_greeting_is_spoken_first_is_in_history_and_can_be_interrupted(clock: VirtualClock, tap: BusTap) -> None:
    call = Call(clock, fake_models(clock), tap, greeting="Hi, how can I help?")
    await call.listen()
    await call.agent.on_control(Greet(session_id=call.agent.session_id))
    await call.quiet(200)
    assert call.models.tts.calls == ["Hi, how can I help?"]
    assert call.conv.history_json() == [{"turn": 1, "role": "assistant", "content": "Hi, how can I help?"}]
    assert call.conv.state is State.AGENT_SPEAKING
    call.models.stt.texts = ["Book me a table."]
    await call.say(speech(700))
    assert AudioKind.CLEAR in call.tap.kinds()
    await call.quiet(600)
    assert call.models.llm.calls[-1][1:] == [{"role": "assistant", "content": "Hi, how can I help?"},
                                             {"role": "user", "content": "Book me a table."}]
    await call.agent.on_control(Greet(session_id=call.agent.session_id))  # once only
    assert call.models.tts.calls.count("Hi, how can I help?") == 1
    await call.agent.close()


async def test_no_greeting_by_default(call: Call) -> None:
    await call.agent.on_control(Greet(session_id=call.agent.session_id))
    await call.quiet(200)
    assert call.models.tts.calls == [] and call.conv.state is State.LISTENING


async def test_an_llm_failure_is_reported_and_apologised_for(call: Call) -> None:
    call.models.llm.fail = RuntimeError("llm down")
    await call.say(speech(600))
    await call.quiet(800)
    assert [e["stage"] for e in call.tap.of("error")] == ["llm"]
    assert any("Sorry" in text for text in call.models.tts.calls)
    await call.finish_playback()
    assert call.conv.state is State.LISTENING


async def test_a_tts_failure_plays_the_recorded_apology(call: Call) -> None:
    call.models.tts.fail = RuntimeError("tts down")
    await call.say(speech(600))
    await call.quiet(800)
    assert [e["stage"] for e in call.tap.of("error")] == ["tts"]
    assert call.reply_audio_ms() > 1000  # the recording, about 3 s
    await call.finish_playback()
    assert call.conv.state is State.LISTENING


async def test_a_slow_transcript_of_an_unfinished_sentence_is_waited_for(call: Call) -> None:
    call.models.stt.delay_s = 0.8  # a busy machine: the words come after the old 500 ms end of turn
    call.models.stt.texts = ["I would like to book a table for", "two people."]
    await call.say(speech(600))
    await call.quiet(1200)
    assert call.tap.kinds() == [] and call.conv.state is State.USER_SPEAKING  # not cut off at 500 ms
    await call.say(speech(500))
    await call.quiet(2000)
    assert len(call.tap.of("transcript.final")) == 1


async def test_a_failed_speculative_transcript_does_not_hold_the_turn(call: Call) -> None:
    call.models.stt.texts = [RuntimeError("stt down"), "Hello."]
    await call.say(speech(600))
    await call.quiet(700)
    assert call.conv.state is not State.USER_SPEAKING  # ended at the base silence, not the maximum
    assert any("end of turn after" in line and "waits 500 ms" in line for line in call.tap.logs())


async def test_a_failure_without_a_message_is_named_by_its_type(call: Call) -> None:
    call.models.llm.fail = TimeoutError()
    await call.say(speech(600))
    await call.quiet(800)
    assert [e["message"] for e in call.tap.of("error")] == ["llm failed: TimeoutError"]


async def test_an_agent_closed_as_a_taken_over_sessions_history_arrives_still_ends(clock: VirtualClock,
                                                                                   tap: BusTap) -> None:
    """The worker of a taken-over session waits (bounded) for its history; a close that lands
    just after the history arrived must still end it. On Python 3.11 `asyncio.wait_for` returns
    the ready result instead of raising the cancel: the worker went on to wait for audio
    forever and `close()` never returned. Each number of loop steps is tried (the gap is open
    for only some of them)."""
    for steps in range(4):
        agent = SessionAgent(SID, fake_models(clock), tap.bus, Conversation("test"),  # type: ignore[arg-type]
                             TurnDetector(TurnConfig()), timeout_s=5.0, resumed=True, clock=clock.time)
        agent.deliver(SetListening(session_id=SID, listening=True))  # starts the worker, which waits
        for _ in range(2):
            await asyncio.sleep(0)
        agent.deliver(History(session_id=SID, messages=[], turn=0))
        for _ in range(steps):
            await asyncio.sleep(0)
        closing = asyncio.create_task(agent.close())
        done, _ = await asyncio.wait({closing}, timeout=1.0)
        assert done, f"close() hung: the cancel was lost {steps} loop steps after the history arrived"
        assert agent._worker is not None and agent._worker.done()


async def test_the_playouts_report_places_the_echo_reference(call: Call) -> None:
    """The media server's `playout` report reaches the echo canceller: the reply's audio is
    placed where the playout sent it, not where the agent sent it."""
    call.models.stt.texts = ["What time is it?"]
    await call.say(speech(700))
    await call.quiet(1000)
    call.tap.drain()
    turn = next(m.turn for m in call.tap.audio if m.kind is AudioKind.AUDIO)
    sent = call.agent.echo.reference.start
    at = call.clock.now + 0.5
    await call.agent.on_control(Played(session_id=call.agent.session_id, turn=turn, position_s=0.0, at=at))
    assert call.agent.echo.reference.reported
    assert call.agent.echo.reference.start == round(at * 16_000) != sent
