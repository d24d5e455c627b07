"""Sound over the agent's speech, and the other decisions the core now makes: sans-I/O, no models."""

from __future__ import annotations

import pytest

from voxline.agent.backchannel import Overlap, classify
from voxline.agent.conversation import (
    CancelReply,
    Classify,
    ClearPlayback,
    Conversation,
    DropSpeculation,
    Emit,
    ForgetSpeech,
    PausePlayout,
    ResumePlayout,
    Speak,
    Speculate,
    State,
    Transcribe,
)


@pytest.mark.parametrize("text", ["Mm-hmm.", "mhm", "Yeah.", "yeah yeah", "Okay.", "OK, right.", "Uh-huh", "Right.",
                                  "I see.", "Got it", "Sure.", "Uh-uh.", "Mm-mm", "Uh-oh.", "Thank you.", "Thanks!",
                                  "Thank you very much."])
def test_backchannels(text: str) -> None:
    assert classify(text) is Overlap.BACKCHANNEL


@pytest.mark.parametrize("text", ["", "  ", "(coughs)", "[laughs]", "*sigh*", "...", "♪", "you",
                                  "and then them.", "And then them.",
                                  # an espeak-ng "mm-hmm" heard live; a word of the agent's own echo
                                  "and anthem", "Story.", "it dragging."])
def test_sounds_without_words(text: str) -> None:
    assert classify(text) is Overlap.NOISE


@pytest.mark.parametrize("text", ["Thank you, bye.", "Thanks, but what about Rome?", "Stop.", "Wait, what about London?", "No, I meant Tuesday", "Yeah but what about me",
                                  "Okay stop talking", "Stop!", "But", "No.", "What?", "And then what?",
                                  "Hold on.", "Excuse me", "I disagree", "Tell me more", "Paris is wrong"])
def test_words_that_interrupt(text: str) -> None:
    assert classify(text) is Overlap.WORDS


def speaking(**kwargs: int) -> Conversation:
    """A conversation whose reply to turn 1 is playing."""
    conv = Conversation("test", **kwargs)
    conv.set_listening(True)
    conv.speech_started()
    conv.speech_ended(b"q")
    conv.transcribed(1, "Tell me a story.")
    conv.reply_audio_started(1)
    assert conv.state is State.AGENT_SPEAKING
    return conv


def kinds(actions: list[object]) -> list[type]:
    return [type(a) for a in actions if not isinstance(a, Emit)]


def test_a_sound_pauses_then_a_backchannel_resumes_and_is_forgotten() -> None:
    conv = speaking()
    assert kinds(conv.speech_started()) == [PausePlayout]
    [classify_] = conv.speech_paused(b"mm")
    assert isinstance(classify_, Classify) and classify_.pcm == b"mm"
    actions = conv.overlap_heard(classify_.overlap, "Mm-hmm.")
    assert kinds(actions) == [ResumePlayout, ForgetSpeech]
    assert conv.state is State.AGENT_SPEAKING and conv.interruptions == 0 and conv.false_interruptions == 1
    assert conv.speech_ended(b"mm") == []  # its end is not a turn either


def test_words_interrupt_and_a_turn_that_already_ended_is_answered() -> None:
    conv = speaking()
    conv.speech_started()
    [classify_] = conv.speech_paused(b"stop")
    assert conv.speech_ended(b"stop") == []  # held until the sound is judged
    actions = conv.overlap_heard(classify_.overlap, "Stop, tell me about dragons.")
    assert kinds(actions)[:2] == [CancelReply, ClearPlayback]
    assert Transcribe(2, b"stop") in actions and conv.state is State.THINKING
    assert conv.interruptions == 1


def test_sustained_speech_interrupts_and_a_late_verdict_changes_nothing() -> None:
    conv = speaking()
    conv.speech_started()
    [classify_] = conv.speech_paused(b"x")
    assert kinds(conv.speech_sustained()) == [CancelReply, ClearPlayback]
    assert conv.overlap_heard(classify_.overlap, "Mm-hmm.") == []  # stale: no resume after a clear


def test_an_unjudged_sound_resumes_after_the_timeout_by_the_audio_clock() -> None:
    conv = speaking(overlap_timeout_ms=2000)
    conv.tick(10_000)
    conv.speech_started()
    assert conv.tick(11_900) == []
    assert kinds(conv.tick(12_000)) == [ResumePlayout, ForgetSpeech]
    assert conv.tick(20_000) == []


def test_listening_off_during_a_sound_resumes_the_reply() -> None:
    conv = speaking()
    conv.speech_started()
    assert ResumePlayout(1) in conv.set_listening(False)


def test_the_core_decides_whether_the_speculative_reply_is_reused() -> None:
    conv = Conversation("test")
    conv.set_listening(True)
    conv.speech_started()
    assert conv.speech_paused(b"ab") == [Speculate(b"ab")]
    assert conv.speech_resumed() == [DropSpeculation()]
    assert conv.speech_paused(b"abcd") == [Speculate(b"abcd")]
    assert [a for a in conv.speech_ended(b"abcd") if isinstance(a, Transcribe)] == [Transcribe(1, b"abcd", speculative=True)]
    conv2 = Conversation("test")
    conv2.set_listening(True)
    conv2.speech_started()
    conv2.speech_paused(b"ab")
    actions = conv2.speech_ended(b"abc")  # other audio than the speculation's: dropped, transcribed anew
    assert DropSpeculation() in actions and Transcribe(1, b"abc", speculative=False) in actions


def test_no_speculation_when_switched_off() -> None:
    conv = Conversation("test", speculate=False)
    conv.set_listening(True)
    conv.speech_started()
    assert conv.speech_paused(b"ab") == []


def test_greeting_once_in_history_and_its_failure_is_not_apologised_for() -> None:
    conv = Conversation("test")
    conv.set_listening(True)
    actions = conv.greet("Hello! How can I help?")
    assert Speak(1, "Hello! How can I help?") in actions
    assert conv.history_json() == [{"turn": 1, "role": "assistant", "content": "Hello! How can I help?"}]
    assert conv.greet("Hello! How can I help?") == []
    failed = conv.failed(1, "tts", "tts failed")
    assert not any(isinstance(a, Speak) for a in failed) and conv.state is State.LISTENING
    assert Conversation("test").greet("   ") == []


REPLY = "Once upon a time, a brave knight rode out to find the dragon that burned his village."


@pytest.mark.parametrize("heard", ["A brave knight rode out.", "the dragon that burned his village",
                                   "Once upon a time, a knight."])  # a word Whisper dropped from the echo
def test_the_replys_own_words_heard_over_it_are_its_echo_and_resume_it(heard: str) -> None:
    conv = speaking()
    conv.reply_said(1, REPLY[:40])
    conv.reply_said(1, REPLY[40:])
    conv.speech_started()
    [classify_] = conv.speech_paused(b"echo")
    actions = conv.overlap_heard(classify_.overlap, heard)
    assert kinds(actions) == [ResumePlayout, ForgetSpeech]
    assert conv.state is State.AGENT_SPEAKING and conv.interruptions == 0


@pytest.mark.parametrize("heard", ["Stop, the dragon.", "Wait, what village?", "The village burned a knight.",
                                   "No."])  # a new word, the reply's words out of order, one word alone
def test_a_caller_using_some_of_the_replys_words_still_interrupts(heard: str) -> None:
    conv = speaking()
    conv.reply_said(1, REPLY)
    conv.speech_started()
    [classify_] = conv.speech_paused(b"words")
    assert kinds(conv.overlap_heard(classify_.overlap, heard))[:2] == [CancelReply, ClearPlayback]


LONG_REPLY = ("What a question! The knight is brave, and the dragon is old. The village that he saved "
              "is far away, and that is why the story is told.")


@pytest.mark.parametrize("heard", ["What is that?", "What is the story?"])
def test_a_callers_question_of_common_words_spread_over_a_long_reply_still_interrupts(heard: str) -> None:
    # Every word is in the reply, in order, but far apart: the caller's words, not an echo.
    conv = speaking()
    conv.reply_said(1, LONG_REPLY)
    conv.speech_started()
    [classify_] = conv.speech_paused(b"words")
    assert kinds(conv.overlap_heard(classify_.overlap, heard))[:2] == [CancelReply, ClearPlayback]


def test_an_earlier_replys_words_are_not_this_ones_echo() -> None:
    conv = speaking()
    conv.reply_said(0, REPLY)  # the greeting's, say
    conv.speech_started()
    [classify_] = conv.speech_paused(b"words")
    assert kinds(conv.overlap_heard(classify_.overlap, "A brave knight rode out."))[:2] == [CancelReply, ClearPlayback]


def answering(continue_ms: int = 60) -> Conversation:
    """The reply to "What is the capital?" (a turn ended at a pause inside the question) has just begun."""
    conv = Conversation("test", continue_ms=continue_ms)
    conv.set_listening(True)
    conv.tick(1000)
    conv.speech_started()
    conv.speech_ended(b"what is the capital")
    conv.transcribed(1, "What is the capital?")
    conv.tick(1500)
    conv.reply_audio_started(1)
    return conv


@pytest.mark.parametrize("heard", ["of Spain?", "In Spain."])
@pytest.mark.parametrize("reply_done", [False, True])  # the reply's text was all written before the words came
def test_a_caller_going_on_as_the_reply_begins_has_the_turn_heard_whole(heard: str, reply_done: bool) -> None:
    # "of Spain?" is two words that do not ask for the turn: over a reply the caller was
    # hearing, noise (the reply resumes). Begun as the reply did, it is the rest of the turn.
    conv = answering()
    if reply_done:  # (the third full run: the reply's text was in history, so the turn was not `continued`)
        conv.reply_finished(1, "Which country's capital?")
    conv.tick(1580)
    [pause] = kinds(conv.speech_started(at_ms=1450))  # begun before the reply's audio did
    assert pause is PausePlayout
    [classify_] = conv.speech_paused(b"of spain")
    conv.speech_ended(b"of spain")
    actions = conv.overlap_heard(classify_.overlap, heard)
    assert kinds(actions) == [CancelReply, ClearPlayback, Transcribe]
    transcribe = next(a for a in actions if isinstance(a, Transcribe))
    assert transcribe.pcm == b"what is the capitalof spain" and transcribe.turn == 2  # the whole turn, again
    assert conv.interruptions == 0
    final = conv.transcribed(2, "What is the capital of Spain?")
    assert [e.fields for e in final if isinstance(e, Emit) and e.type == "transcript.final"] == [
        {"text": "What is the capital of Spain?", "turn": 2, "continued": True}]
    conv.reply_finished(1, "The capital", interrupted=True)  # the cut reply answers nothing
    assert conv.history_json() == [{"turn": 2, "role": "user", "content": "What is the capital of Spain?"}]


def test_words_that_ask_for_the_turn_as_the_reply_begins_interrupt_it_as_anywhere() -> None:
    conv = answering()
    conv.tick(1580)
    conv.speech_started(at_ms=1450)
    [classify_] = conv.speech_paused(b"stop")
    actions = conv.overlap_heard(classify_.overlap, "Stop. What is four plus three?")
    assert kinds(actions)[:2] == [CancelReply, ClearPlayback] and conv.interruptions == 1
    assert any(isinstance(a, Emit) and a.type == "interruption" for a in actions)


@pytest.mark.parametrize("heard", ["Mm-hmm.", "(coughs)", "Thanks for watching."])
def test_a_backchannel_or_a_sound_as_the_reply_begins_still_resumes_it(heard: str) -> None:
    conv = answering()
    conv.tick(1580)
    conv.speech_started(at_ms=1450)
    [classify_] = conv.speech_paused(b"mm")
    assert kinds(conv.overlap_heard(classify_.overlap, heard)) == [ResumePlayout, ForgetSpeech]


@pytest.mark.parametrize("heard", ["The capital.", "Capital"])
def test_the_replys_first_words_coming_back_as_it_begins_resume_it(heard: str) -> None:
    # A caller without echo cancellation: the reply's start comes back before the canceller
    # has learnt the way; short words of the reply are its echo, not the caller going on.
    conv = answering()
    conv.reply_said(1, "The capital of which country?")
    conv.tick(1580)
    conv.speech_started(at_ms=1540)
    [classify_] = conv.speech_paused(b"echo")
    assert kinds(conv.overlap_heard(classify_.overlap, heard)) == [ResumePlayout, ForgetSpeech]


@pytest.mark.parametrize("onset", [1500 + 60, 1500 + 300])  # heard (or its echo back) by then
def test_short_words_begun_after_the_reply_are_noise_as_before(onset: int) -> None:
    conv = answering()
    conv.tick(onset + 160)
    conv.speech_started(at_ms=onset)
    [classify_] = conv.speech_paused(b"of spain")
    assert kinds(conv.overlap_heard(classify_.overlap, "of Spain?")) == [ResumePlayout, ForgetSpeech]


def test_a_greeting_is_not_a_turn_to_go_on_with() -> None:
    conv = Conversation("test", continue_ms=60)
    conv.set_listening(True)
    conv.greet("Hello! How can I help?")
    conv.reply_audio_started(1)
    conv.speech_started()
    [classify_] = conv.speech_paused(b"of spain")  # short words over the greeting: noise, as later in a reply
    assert kinds(conv.overlap_heard(classify_.overlap, "of Spain?")) == [ResumePlayout, ForgetSpeech]
