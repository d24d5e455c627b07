"""The end of a turn from silence, the end-of-turn model's score and the words: sans-I/O, no models."""

from __future__ import annotations

import pytest

from voxline.agent.endpoint import EndOfTurn, EndOfTurnConfig, doubtful_ending, model_can_decide, transcript_complete
from voxline.agent.turns import WINDOW_MS, SpeechEnded, SpeechPaused, TurnConfig, TurnDetector, TurnEvent

CFG = TurnConfig(min_end_silence_ms=200, end_silence_ms=500, max_end_silence_ms=2500, pause_ms=96)


@pytest.mark.parametrize("text", [
    "What time is it?", "Tell me a joke.", "I would like a pizza.", "Thank you", "Yes.", "No",
    "My name is Anna.", "Book it for seven", "I like it", "Why not?", "That's great.",
    "Tickets for two.", "It is half past three.", "Table for two please.",
])
def test_complete_utterances(text: str) -> None:
    assert transcript_complete(text) is True


@pytest.mark.parametrize("text", [
    "I want to", "I want to...", "Book a table for two and", "because", "the code is four two",
    "My number is five five five", "I was thinking about the", "It's in", "Can you tell me,",
    "So, um", "I'd like", "Let me", "It is", "Can you tell me why the sky is?", "What about the?",
    # Whisper's ways of writing "The code is four two" and "...at half past" (the turns bench, 10 voices).
    "The code is for two.", "The meeting starts at half past.",
])
def test_incomplete_utterances(text: str) -> None:
    assert transcript_complete(text) is False


def test_no_words_is_not_judged() -> None:
    assert transcript_complete("") is None
    assert transcript_complete(" ... ") is None


def test_decision_table() -> None:
    e = EndOfTurn(EndOfTurnConfig(min_ms=200, base_ms=500, max_ms=2500, model_threshold=0.5))
    assert (e.decide().wait_ms, e.decide().reason) == (500, "silence")  # nothing known: as before
    e.score = 0.9
    assert e.decide().wait_ms == 500  # the model alone never commits early (it misjudges cut-offs)
    e.score = 0.1
    assert e.decide().wait_ms == 2500  # ... but it can make the turn wait for words
    e.text = "Tell me a joke."
    assert e.decide().wait_ms == 500  # words complete, the model unsure
    e.text = "What is the weather like?"
    assert e.decide().wait_ms == 200  # a question is complete whatever the audio says
    e.score, e.text = 0.9, "Tell me a joke."
    assert e.decide().wait_ms == 200  # both say complete
    e.score, e.text = None, "Tell me a joke."
    assert e.decide().wait_ms == 200  # no model: the words decide
    e.score, e.text = 0.99, "I want to"
    assert e.decide().wait_ms == 2500  # unfinished words win over a confident model
    assert "model 0.99" in e.decide().describe() and "waits 2500 ms" in e.decide().describe()


class Feeder:
    def __init__(self, config: TurnConfig = CFG) -> None:
        self.detector = TurnDetector(config)
        self.events: list[TurnEvent] = []

    def feed(self, prob: float, ms: int) -> list[TurnEvent]:
        out: list[TurnEvent] = []
        for _ in range(-(-ms // WINDOW_MS)):
            out += self.detector.push(b"\x00\x01" * 512, prob)
        self.events += out
        return out

    def pause(self) -> SpeechPaused:
        return [e for e in self.events if isinstance(e, SpeechPaused)][-1]


def silence_until_end(f: Feeder, limit_ms: int = 5000) -> SpeechEnded:
    waited = 0
    while waited < limit_ms:
        for e in f.feed(0.0, WINDOW_MS):
            if isinstance(e, SpeechEnded):
                return e
        waited += WINDOW_MS
    raise AssertionError("the turn never ended")


def test_without_cues_the_turn_ends_after_the_base_silence() -> None:
    f = Feeder()
    f.feed(0.9, 600)
    ended = silence_until_end(f)
    assert 500 <= ended.at_ms - ended.speech_end_ms < 500 + WINDOW_MS
    assert ended.decision is not None and ended.decision.reason == "silence"


def test_complete_words_end_the_turn_at_once_when_enough_silence_has_passed() -> None:
    f = Feeder()
    f.feed(0.9, 600)
    f.feed(0.0, 320)  # 320 ms of silence: past min, before base
    assert not any(isinstance(e, SpeechEnded) for e in f.events)
    [ended] = f.detector.cue(f.pause().pause, text="What time is it?")
    assert isinstance(ended, SpeechEnded) and ended.decision is not None
    assert ended.decision.wait_ms == 200 and ended.decision.words is True
    assert not f.detector.speaking


def test_complete_words_early_end_at_the_minimum_silence() -> None:
    f = Feeder()
    f.feed(0.9, 600)
    f.feed(0.0, 100)
    assert f.detector.cue(f.pause().pause, text="Tell me a joke.", score=0.8) == []  # 128 ms: too soon
    ended = silence_until_end(f)
    assert 200 <= ended.at_ms - ended.speech_end_ms < 200 + WINDOW_MS


def test_unfinished_words_wait_up_to_the_maximum() -> None:
    f = Feeder()
    f.feed(0.9, 600)
    f.feed(0.0, 100)
    f.detector.cue(f.pause().pause, text="I want to", score=0.95)
    f.feed(0.0, 2000)
    assert not any(isinstance(e, SpeechEnded) for e in f.events)  # a 2 s pause mid-sentence is not the end
    ended = silence_until_end(f)
    assert 2500 <= ended.at_ms - ended.speech_end_ms < 2500 + WINDOW_MS
    assert ended.decision is not None and ended.decision.reason == "words unfinished"


def test_speech_again_forgets_the_cues_of_the_pause() -> None:
    f = Feeder()
    f.feed(0.9, 600)
    f.feed(0.0, 100)
    old = f.pause().pause
    f.detector.cue(old, text="I want to")
    f.feed(0.9, 300)  # "... book a table."
    f.feed(0.0, 100)
    assert f.pause().pause != old
    assert f.detector.cue(old, text="I want to") == []  # a stale cue changes nothing
    assert f.detector.decision.wait_ms == 500
    f.detector.cue(f.pause().pause, text="I want to book a table.")
    ended = silence_until_end(f)
    assert ended.at_ms - ended.speech_end_ms < 200 + WINDOW_MS


def test_a_low_model_score_waits_for_the_words() -> None:
    f = Feeder()
    f.feed(0.9, 600)
    f.feed(0.0, 100)
    f.detector.cue(f.pause().pause, score=0.05)
    f.feed(0.0, 800)
    assert not any(isinstance(e, SpeechEnded) for e in f.events)
    [ended] = f.detector.cue(f.pause().pause, text="Where is the station?")  # the transcript comes late
    assert isinstance(ended, SpeechEnded)


def test_a_cue_after_the_turn_ended_is_ignored() -> None:
    f = Feeder()
    f.feed(0.9, 600)
    silence_until_end(f)
    assert f.detector.cue(f.pause().pause, text="Hello.") == []
    assert f.detector.cue(f.pause().pause + 5, score=1.0) == []


def test_words_on_their_way_are_waited_for_and_no_words_fall_back_to_silence() -> None:
    e = EndOfTurn(EndOfTurnConfig(min_ms=200, base_ms=500, max_ms=2500))
    e.words_coming = True
    assert (e.decide().wait_ms, e.decide().reason) == (2500, "waiting for words")
    e.score = 0.95
    assert e.decide().wait_ms == 2500  # the words decide, not the audio alone
    e.text = ""  # the transcription failed: no words will come
    assert e.decide().wait_ms == 500


def test_a_slow_transcript_is_waited_for_then_ends_the_turn_at_once() -> None:
    f = Feeder()
    f.feed(0.9, 600)
    f.feed(0.0, 100)
    f.detector.cue(f.pause().pause, words_coming=True)
    f.feed(0.0, 900)  # the STT is slow on a busy machine: past the old 500 ms, nothing ends
    assert not any(isinstance(e, SpeechEnded) for e in f.events)
    [ended] = f.detector.cue(f.pause().pause, text="What time is it?")
    assert isinstance(ended, SpeechEnded)


# Readings as Whisper tiny.en's beam gave them (tests/integration/test_doubtful_ending.py): the
# top transcript, another hypothesis of the same audio, and how far behind it scored.
INVENTED = ("I would like to book a table for it.", [("I would like to book a table for", 0.01),
                                                  ("I would like to work a table for it.", 0.08)])


def test_a_reading_that_stops_earlier_unfinished_makes_the_ending_doubtful() -> None:
    text, readings = INVENTED
    assert transcript_complete(text) is True  # the words alone say "complete": the defect (#13)
    assert doubtful_ending(text, readings, margin=0.3)
    assert doubtful_ending("I was thinking that maybe we could.", [("I was thinking that maybe we could...", 0.13)], 0.2)
    assert doubtful_ending("Can you tell me about me?", [("Can you tell me about?", 0.03)], 0.2)
    # The same words as said: a number being read out ("42", unfinished) or "for two" (complete).
    assert doubtful_ending("The code is for two.", [("The code is 42.", 0.07)], 0.3)


def test_readings_far_behind_other_words_or_complete_ones_leave_the_ending_alone() -> None:
    text, readings = INVENTED
    assert not doubtful_ending(text, readings, margin=0.005)  # less sure than the margin allows
    assert not doubtful_ending(text, [], 0.2)  # an STT without readings (the remote one)
    # Other words, not fewer: a mishearing, not a turn cut short (complete questions had these).
    assert not doubtful_ending("My brother is visiting us next weekend.",
                               [("My brother is visiting us next week and...", 0.11)], 0.2)
    assert not doubtful_ending("How do I boil an egg?", [("How do I boil it in?", 0.02)], 0.2)
    # Fewer words that read complete themselves say nothing about the end.
    assert not doubtful_ending("What time is it now?", [("What time is it?", 0.05)], 0.2)


def test_the_same_words_with_a_trailing_mark_doubt_only_a_word_that_seldom_ends_a_sentence() -> None:
    """Whisper's beam often has the transcript's own words with "..." or "," after them: after
    "tomorrow", "home", "Mona Lisa" that doubted 12 of 280 complete turns (each then waited the
    longest wait), after "could", "so", "past" it is the caller stopping mid-sentence."""
    assert not doubtful_ending("I was thinking that maybe we could go to the beach tomorrow.",
                               [("I was thinking that maybe we could go to the beach tomorrow...", 0.13)], 0.3)
    assert not doubtful_ending("Remind me to call my sister when I get home",
                               [("Remind me to call my sister when I get home...", 0.14)], 0.3)
    assert not doubtful_ending("who painted the Mona Lisa.", [("who painted the Mona Lisa,", 0.17)], 0.3)
    assert doubtful_ending("It was raining so.", [("It was raining so...", 0.19)], 0.3)
    assert doubtful_ending("We could.", [("We could...", 0.19)], 0.3)


def test_doubtful_last_word_waits_as_unfinished_words_do() -> None:
    e = EndOfTurn(EndOfTurnConfig(min_ms=200, base_ms=500, max_ms=2500, model_threshold=0.5, doubt_margin=0.2))
    e.score, (e.text, e.readings) = 0.97, INVENTED  # Smart Turn scores espeak's fragment complete too
    decision = e.decide()
    assert (decision.wait_ms, decision.reason, decision.words) == (2500, "last word doubtful", True)
    e.readings = [("I would like to book a table for it", 0.01)]  # only punctuation differs: complete
    assert e.decide().wait_ms == 200
    off = EndOfTurn(EndOfTurnConfig(doubt_margin=0.0))
    off.text, off.readings = INVENTED
    assert off.decide().wait_ms == 200  # 0 turns the cue off
    e.reset()
    assert e.readings == ()


def test_the_detector_takes_the_readings_with_the_transcript() -> None:
    f = Feeder()
    f.feed(0.9, 600)
    f.feed(0.0, 320)  # past the minimum silence: complete words alone would end the turn now
    text, readings = INVENTED
    assert f.detector.cue(f.pause().pause, text=text, readings=readings) == []
    f.feed(0.0, 1200)  # the tests' pause mid-sentence
    assert not any(isinstance(e, SpeechEnded) for e in f.events)
    ended = silence_until_end(f)
    assert ended.decision is not None and ended.decision.reason == "last word doubtful"
    assert 2500 <= ended.at_ms - ended.speech_end_ms < 2500 + WINDOW_MS
    g = Feeder()
    g.feed(0.9, 600)
    g.feed(0.0, 320)
    [done] = g.detector.cue(g.pause().pause, text=text)  # no readings: as before, at once
    assert isinstance(done, SpeechEnded)


def test_the_model_is_needed_only_where_the_words_leave_the_decision_open() -> None:
    assert not model_can_decide("What time is it?")  # a finished question: the minimum wait anyway
    assert not model_can_decide("I want to")  # unfinished words: the maximum wait anyway
    assert model_can_decide("Tell me about Paris.")  # complete words: the model may say "unsure"
    assert model_can_decide("")  # no words: the model is all there is


def test_complete_words_wait_for_a_score_that_is_coming_but_a_question_does_not() -> None:
    e = EndOfTurn()
    e.text, e.score_coming = "Tell me about Paris.", True
    assert e.decide().reason == "waiting for the model" and e.decide().wait_ms == 500
    e.score = 0.9
    assert e.decide().wait_ms == 200
    e.score = None
    e.text = "What time is it?"
    assert e.decide().wait_ms == 200  # a question: complete whatever the model says
