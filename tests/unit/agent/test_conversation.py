"""The per-session turn-taking state machine, driven directly: no models, no bus."""

from __future__ import annotations

from voxline.agent.conversation import (
    APOLOGY,
    Action,
    CancelReply,
    ClearPlayback,
    Conversation,
    Emit,
    PausePlayout,
    Respond,
    Speak,
    State,
    Transcribe,
)

PROMPT = "You are a test agent."


def states(actions: list[Action]) -> list[str]:
    return [a.fields["state"] for a in actions if isinstance(a, Emit) and a.type == "state"]


def events(actions: list[Action], type_: str) -> list[Emit]:
    return [a for a in actions if isinstance(a, Emit) and a.type == type_]


def only(actions: list[Action], kind: type) -> list:
    return [a for a in actions if isinstance(a, kind)]


def listening_conversation(**kwargs: int) -> Conversation:
    conv = Conversation(PROMPT, **kwargs)
    conv.set_listening(True)
    return conv


def run_turn(conv: Conversation, text: str, reply: str, pcm: bytes = b"\x01\x00") -> list[Action]:
    """One complete turn; returns every action in order."""
    out: list[Action] = []
    out += conv.speech_started()
    out += conv.speech_ended(pcm)
    turn = conv.turn
    out += conv.transcribed(turn, text)
    out += conv.reply_audio_started(turn)
    out += conv.reply_finished(turn, reply)
    out += conv.playback_done(turn)
    return out


# -- the happy path ------------------------------------------------------------------------

def test_full_turn_cycle_walks_through_every_state() -> None:
    conv = Conversation(PROMPT)
    assert conv.state is State.IDLE
    actions = conv.set_listening(True)
    actions += run_turn(conv, "What time is it?", "It is noon.")
    assert states(actions) == ["listening", "user_speaking", "thinking", "agent_speaking", "listening"]
    assert conv.state is State.LISTENING
    assert conv.turns_completed == 1
    assert conv.interruptions == 0


def test_speech_end_asks_for_a_transcription_of_the_turn_audio() -> None:
    conv = listening_conversation()
    conv.speech_started()
    actions = conv.speech_ended(b"abcd")
    assert only(actions, Transcribe) == [Transcribe(1, b"abcd")]
    assert conv.state is State.THINKING


def test_transcript_emits_final_text_and_asks_for_a_reply_with_the_history() -> None:
    conv = listening_conversation()
    conv.speech_started()
    conv.speech_ended(b"ab")
    actions = conv.transcribed(1, "  Hello there  ")
    assert events(actions, "transcript.final")[0].fields == {"text": "Hello there", "turn": 1, "continued": False}
    [respond] = only(actions, Respond)
    assert respond.turn == 1
    assert respond.messages == [{"role": "system", "content": PROMPT}, {"role": "user", "content": "Hello there"}]


def test_replies_become_history_for_the_next_turn() -> None:
    conv = listening_conversation()
    run_turn(conv, "Hi", "Hello!")
    conv.speech_started()
    conv.speech_ended(b"ab")
    [respond] = only(conv.transcribed(2, "How are you?"), Respond)
    assert [m["role"] for m in respond.messages] == ["system", "user", "assistant", "user"]
    assert respond.messages[2]["content"] == "Hello!"
    assert [h["turn"] for h in conv.history_json()] == [1, 1, 2]


# -- barge-in and pauses ---------------------------------------------------------------------

def test_barge_in_while_agent_speaks_cancels_clears_and_counts_an_interruption() -> None:
    conv = listening_conversation()
    conv.speech_started()
    conv.speech_ended(b"ab")
    conv.transcribed(1, "Tell me a long story")
    conv.reply_audio_started(1)
    assert only(conv.speech_started(), PausePlayout) == [PausePlayout(1)]
    actions = conv.speech_sustained()  # more than a backchannel: a real interruption
    assert CancelReply(1) in actions
    assert ClearPlayback(1) in actions
    assert events(actions, "interruption")[0].fields == {"turn": 1}
    assert states(actions) == ["user_speaking"]
    assert conv.interruptions == 1
    # The cut-off reply still becomes history, and the next turn carries on from there.
    conv.reply_finished(1, "Once upon a", interrupted=True)
    assert conv.turns_completed == 0
    conv.speech_ended(b"cd")
    [respond] = only(conv.transcribed(2, "Stop"), Respond)
    assert [m["content"] for m in respond.messages[1:]] == ["Tell me a long story", "Once upon a", "Stop"]


def test_speech_resuming_while_thinking_cancels_the_early_reply_and_extends_the_words() -> None:
    conv = listening_conversation()
    conv.speech_started()
    conv.speech_ended(b"AAAA")
    conv.transcribed(1, "I would like")
    actions = conv.speech_started()
    assert CancelReply(1) in actions
    assert not only(actions, ClearPlayback)  # nothing was played yet
    assert not events(actions, "interruption")
    assert conv.state is State.USER_SPEAKING
    assert conv.interruptions == 0
    # The first part is words already, but its audio is transcribed again with the rest: two
    # halves transcribed apart lose words at the cut. The new transcript replaces the old.
    assert conv.turn_audio(b"BBBB") == b"AAAABBBB"
    [transcribe] = only(conv.speech_ended(b"BBBB"), Transcribe)
    assert transcribe == Transcribe(2, b"AAAABBBB")
    actions = conv.transcribed(2, "I would like a coffee")
    assert events(actions, "transcript.final")[0].fields == {"text": "I would like a coffee", "turn": 2, "continued": True}
    [respond] = only(actions, Respond)
    assert respond.messages[1:] == [{"role": "user", "content": "I would like a coffee"}]


def test_speech_resuming_before_the_transcript_keeps_the_audio() -> None:
    conv = listening_conversation()
    conv.speech_started()
    conv.speech_ended(b"AAAA")  # transcription still running when the caller speaks on
    conv.speech_started()
    assert conv.turn_audio(b"BBBB") == b"AAAABBBB"
    [transcribe] = only(conv.speech_ended(b"BBBB"), Transcribe)
    assert transcribe == Transcribe(2, b"AAAABBBB")


def test_held_audio_is_bounded() -> None:
    conv = Conversation("sys", max_held_s=0.001)  # 16 samples = 32 bytes
    conv.set_listening(True)
    for _ in range(5):
        conv.speech_started()
        conv.speech_ended(b"x" * 20)
    assert len(conv.turn_audio(b"")) == 32


def test_noise_after_a_pause_still_answers_the_words_before_it() -> None:
    conv = listening_conversation()
    conv.speech_started()
    conv.speech_ended(b"AAAA")
    conv.transcribed(1, "What time is it?")
    conv.speech_started()
    conv.speech_ended(b"BBBB")
    [respond] = only(conv.transcribed(2, ""), Respond)
    assert respond.messages[-1] == {"role": "user", "content": "What time is it?"}


def test_cancelled_early_reply_leaves_no_trace_in_history() -> None:
    conv = listening_conversation()
    conv.speech_started()
    conv.speech_ended(b"AAAA")
    conv.transcribed(1, "I would like")
    conv.speech_started()
    # The orchestrator cancels the reply task, which reports what it had generated so far.
    conv.reply_finished(1, "Sure, what would", interrupted=True)
    conv.speech_ended(b"BBBB")
    [respond] = only(conv.transcribed(2, "I would like a coffee"), Respond)  # AAAABBBB heard as one
    assert respond.messages[1:] == [{"role": "user", "content": "I would like a coffee"}]


def test_several_pauses_in_a_row_keep_all_of_the_turn_audio() -> None:
    conv = listening_conversation()
    conv.speech_started()
    conv.speech_ended(b"AA")
    conv.speech_started()
    conv.speech_ended(b"BB")
    conv.speech_started()
    assert conv.turn_audio(b"CC") == b"AABBCC"
    [transcribe] = only(conv.speech_ended(b"CC"), Transcribe)
    assert transcribe.pcm == b"AABBCC"


def test_after_a_reply_was_heard_the_next_turn_stands_alone() -> None:
    conv = listening_conversation()
    run_turn(conv, "Hi", "Hello", pcm=b"AA")
    conv.speech_started()
    [transcribe] = only(conv.speech_ended(b"BB"), Transcribe)
    assert transcribe.pcm == b"BB"


def test_after_a_barge_in_the_next_turn_stands_alone() -> None:
    conv = listening_conversation()
    conv.speech_started()
    conv.speech_ended(b"AA")
    conv.transcribed(1, "Hi")
    conv.reply_audio_started(1)
    conv.speech_started()
    conv.speech_sustained()
    [transcribe] = only(conv.speech_ended(b"BB"), Transcribe)
    assert transcribe.pcm == b"BB"


# -- stale and empty results ------------------------------------------------------------------

def test_transcript_of_a_stale_turn_is_ignored() -> None:
    conv = listening_conversation()
    conv.speech_started()
    conv.speech_ended(b"AA")
    conv.speech_started()
    conv.speech_ended(b"BB")
    assert conv.turn == 2
    assert conv.transcribed(1, "old words") == []
    assert conv.history == []
    assert only(conv.transcribed(2, "new words"), Respond)


def test_results_of_a_cancelled_turn_do_not_move_the_state() -> None:
    conv = listening_conversation()
    conv.speech_started()
    conv.speech_ended(b"AA")
    conv.transcribed(1, "Hi")
    conv.speech_started()  # resumed: turn 1's reply is stale
    assert conv.reply_audio_started(1) == []
    assert conv.playback_done(1) == []
    assert conv.state is State.USER_SPEAKING


def test_empty_or_noise_transcripts_go_back_to_listening_without_a_reply() -> None:
    for text in ["", "   ", "you", "You.", " Thanks for watching! ", "[BLANK_AUDIO]", "...", "(music)"]:
        conv = listening_conversation()
        conv.speech_started()
        conv.speech_ended(b"AA")
        actions = conv.transcribed(1, text)
        assert not only(actions, Respond), text
        assert states(actions) == ["listening"], text
        assert conv.history == [], text
        # The noise is not carried into the next turn.
        conv.speech_started()
        assert only(conv.speech_ended(b"BB"), Transcribe)[0].pcm == b"BB", text


def test_a_one_word_answer_is_a_turn() -> None:
    conv = listening_conversation()
    conv.speech_started()
    conv.speech_ended(b"AA")
    assert only(conv.transcribed(1, "Yes."), Respond)


# -- history -----------------------------------------------------------------------------------

def test_history_is_bounded_and_starts_with_a_user_message() -> None:
    conv = listening_conversation(max_history_messages=5)
    for i in range(10):
        run_turn(conv, f"question {i}", f"answer {i}")
        assert len(conv.history) <= 5
        assert conv.history[0][1]["role"] == "user"
    messages = conv.messages()
    assert messages[0] == {"role": "system", "content": PROMPT}
    assert messages[-1] == {"role": "assistant", "content": "answer 9"}
    assert conv.turns_completed == 10


def test_history_bound_holds_in_the_request_too() -> None:
    conv = listening_conversation(max_history_messages=4)
    for i in range(6):
        run_turn(conv, f"q{i}", f"a{i}")
    conv.speech_started()
    conv.speech_ended(b"AA")
    [respond] = only(conv.transcribed(conv.turn, "last"), Respond)
    assert len(respond.messages) <= 1 + 4
    assert respond.messages[1]["role"] == "user"
    assert respond.messages[-1] == {"role": "user", "content": "last"}


def test_a_reply_is_recorded_once() -> None:
    conv = listening_conversation()
    conv.speech_started()
    conv.speech_ended(b"AA")
    conv.transcribed(1, "Hi")
    conv.reply_audio_started(1)
    conv.reply_finished(1, "Hello")
    conv.reply_finished(1, "Hello")
    assert [m["role"] for _, m in conv.history] == ["user", "assistant"]


# -- failures ------------------------------------------------------------------------------------

def test_stt_failure_reports_an_error_and_apologises() -> None:
    conv = listening_conversation()
    conv.speech_started()
    conv.speech_ended(b"AA")
    actions = conv.failed(1, "stt", "stt failed: timeout")
    assert events(actions, "error")[0].fields == {"stage": "stt", "message": "stt failed: timeout", "turn": 1}
    assert events(actions, "log")[0].fields["level"] == "error"
    assert only(actions, Speak) == [Speak(1, APOLOGY)]
    # The apology is spoken as the turn's reply, then the session listens again.
    assert states(conv.reply_audio_started(1)) == ["agent_speaking"]
    assert states(conv.playback_done(1)) == ["listening"]


def test_llm_failure_reports_an_error_and_apologises() -> None:
    conv = listening_conversation()
    conv.speech_started()
    conv.speech_ended(b"AA")
    conv.transcribed(1, "Hi")
    actions = conv.failed(1, "llm", "llm failed: boom")
    assert events(actions, "error")[0].fields["stage"] == "llm"
    assert only(actions, Speak) == [Speak(1, APOLOGY)]


def test_tts_failure_tries_the_apology_once_then_goes_back_to_listening() -> None:
    conv = listening_conversation()
    conv.speech_started()
    conv.speech_ended(b"AA")
    conv.transcribed(1, "Hi")
    conv.reply_audio_started(1)
    actions = conv.failed(1, "tts", "tts failed")
    assert events(actions, "error")
    assert only(actions, Speak) == [Speak(1, APOLOGY)]  # a passing TTS fault may let it through
    again = conv.failed(1, "tts", "apology failed")
    assert not only(again, Speak)
    assert states(again) == ["listening"]


def test_failure_of_a_stale_turn_is_ignored() -> None:
    conv = listening_conversation()
    conv.speech_started()
    conv.speech_ended(b"AA")
    conv.speech_started()
    conv.speech_ended(b"BB")
    assert conv.failed(1, "stt", "late") == []
    assert conv.state is State.THINKING


# -- listening on and off ---------------------------------------------------------------------------

def test_listening_on_and_off_moves_between_idle_and_listening() -> None:
    conv = Conversation(PROMPT)
    on = conv.set_listening(True)
    assert events(on, "listening")[0].fields == {"listening": True}
    assert states(on) == ["listening"]
    off = conv.set_listening(False)
    assert events(off, "listening")[0].fields == {"listening": False}
    assert states(off) == ["idle"]


def test_listening_off_while_user_speaks_drops_the_turn() -> None:
    conv = listening_conversation()
    conv.speech_started()
    assert states(conv.set_listening(False)) == ["idle"]
    assert conv.speech_ended(b"AA") == []


def test_listening_off_while_agent_speaks_does_not_cut_the_reply() -> None:
    conv = listening_conversation()
    conv.speech_started()
    conv.speech_ended(b"AA")
    conv.transcribed(1, "Hi")
    conv.reply_audio_started(1)
    actions = conv.set_listening(False)
    assert not only(actions, CancelReply)
    assert not only(actions, ClearPlayback)
    assert conv.state is State.AGENT_SPEAKING
    conv.reply_finished(1, "Hello")
    assert conv.turns_completed == 1
    # Once the reply has played, the session is idle: the microphone is off.
    assert states(conv.playback_done(1)) == ["idle"]
    assert states(conv.set_listening(True)) == ["listening"]


def test_listening_off_while_thinking_still_answers() -> None:
    conv = listening_conversation()
    conv.speech_started()
    conv.speech_ended(b"AA")
    conv.set_listening(False)
    assert conv.state is State.THINKING
    assert only(conv.transcribed(1, "Hi"), Respond)


def test_listening_back_on_before_the_reply_ends_returns_to_listening() -> None:
    conv = listening_conversation()
    conv.speech_started()
    conv.speech_ended(b"AA")
    conv.transcribed(1, "Hi")
    conv.reply_audio_started(1)
    conv.set_listening(False)
    conv.set_listening(True)
    assert states(conv.playback_done(1)) == ["listening"]


def test_a_session_never_told_about_listening_still_listens_after_a_reply() -> None:
    # A session first seen through its audio (agent failover) was listening already.
    conv = Conversation(PROMPT)
    assert states(run_turn(conv, "Hi", "Hello"))[-1] == "listening"


def test_a_turn_heard_as_noise_is_not_transcribed_again_with_the_next() -> None:
    conv = listening_conversation()
    conv.speech_started()
    conv.speech_ended(b"NNNN")
    conv.transcribed(1, "")  # a cough
    conv.speech_started()
    [transcribe] = only(conv.speech_ended(b"AAAA"), Transcribe)
    assert transcribe.pcm == b"AAAA"


def test_after_a_reply_finished_the_next_turn_is_transcribed_alone() -> None:
    conv = listening_conversation()
    conv.speech_started()
    conv.speech_ended(b"AAAA")
    conv.transcribed(1, "Hello")
    conv.reply_finished(1, "Hi there")
    conv.playback_done(1)
    conv.speech_started()
    [transcribe] = only(conv.speech_ended(b"BBBB"), Transcribe)
    assert transcribe.pcm == b"BBBB"


def test_a_reply_to_a_resumed_turn_does_not_see_its_first_part_twice() -> None:
    conv = listening_conversation()
    conv.speech_started()
    conv.speech_ended(b"AAAA")
    conv.transcribed(1, "I would like")
    assert conv.reply_history()[-1] == {"role": "user", "content": "I would like"}
    conv.speech_started()  # the caller goes on: the next transcript hears AAAA again
    assert all(m["role"] != "user" for m in conv.reply_history())
