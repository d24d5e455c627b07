"""Whisper hearing a short turn twice over: the turn is heard once."""

from __future__ import annotations

from voxline.services.stt.whisper import unrepeated


def test_a_turn_heard_twice_or_more_over_is_heard_once() -> None:
    # As Whisper tiny.en heard replayed turns of the WER corpus (espeak en-us+m7, Piper fast).
    assert unrepeated("Can you recommend a gold breakfast? Can you recommend a gold breakfast?") == (
        "Can you recommend a gold breakfast?")
    assert unrepeated("Where do penguins life? Where do penguins life?") == "Where do penguins life?"
    assert unrepeated("Please turn off the lights please turn off the lights. Please turn off the lights") == (
        "Please turn off the lights")


def test_words_said_again_inside_a_turn_stay() -> None:
    for text in ("Hello? Hello?", "Stop. Stop. Stop.", "Yes yes yes", "What is two plus two?",
                 "Can you recommend a good breakfast? Can you recommend a good lunch?",
                 "One two three, one two three, four", ""):
        assert unrepeated(text) == text
