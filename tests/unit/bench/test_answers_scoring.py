"""How `voxline bench --answers` scores an answer and tells a misheard question from a wrong answer."""

from __future__ import annotations

from voxline.bench.answers_corpus import GROUPS, ITEMS, Turn, answer_right, heard_right, select, words
from voxline.bench.answers_report import answers_report, answers_report_text
from voxline.bench.latency import QUESTIONS


def turn(answers: str, never: str = "") -> Turn:
    return Turn("q", frozenset(a.strip() for a in answers.split(",")),
                frozenset(n.strip() for n in never.split(",") if n.strip()))


def test_an_answer_is_right_with_any_expected_word_as_digits_or_words() -> None:
    planets = turn("8", "9, 10")
    assert answer_right(planets, "There are eight planets.")
    assert answer_right(planets, "There are 8 planets in our solar system.")
    assert not answer_right(planets, "The answer is 9. There are 10 confirmed planets.")
    assert not answer_right(planets, "There are eight planets, or nine with Pluto.")  # a contradiction
    assert answer_right(turn("42"), "Six times seven is forty-two.")
    assert answer_right(turn("24"), "A day has twenty four hours.")
    assert not answer_right(turn("24"), "A day has twenty hours and 4 minutes.")  # only "twenty four" joins


def test_words_match_whole_words_and_phrases_only() -> None:
    assert not answer_right(turn("cow"), "Crows say caw.")
    assert answer_right(turn("baking soda"), "Scrub it with baking soda.")
    assert not answer_right(turn("baking soda"), "Use soda for baking.")
    assert answer_right(turn("sam"), "Your name is Sam!")
    assert words("Forty-two, TWELVE") == ["40", "2", "12"]


def test_heard_right_needs_every_content_word_of_the_question() -> None:
    assert heard_right("What is twelve divided by three?", "What is 12 divided by 3?")
    assert heard_right("How many legs does a dog have?", "How many legs do dogs have?")
    assert not heard_right("How many legs does a dog have?", "How many lands does a dog have?")
    assert not heard_right("What is my name?", "")
    assert heard_right("What is my name?", "What's my name?")  # no content word but "name"


def test_the_report_separates_stt_errors_from_llm_errors() -> None:
    def row(group: str, right: bool, heard: bool, v2v: float) -> dict[str, object]:
        return {"config": "c", "group": group, "scored": True, "right": right, "heard_right": heard,
                "voice_to_voice_ms": v2v, "reply_words": 5, "llm_first_token_ms": 90.0, "said": "q",
                "transcript": "t", "reply": "r", "error": None}

    rows = [row("facts", True, True, 500), row("facts", False, True, 700), row("facts", False, False, 600),
            {**row("facts", False, True, 800), "scored": False}]  # a follow-up's first turn: timed, not scored
    s = answers_report(rows, ["c"], GROUPS, {}, {})["summary"]["c"]["facts"]
    assert (s["n"], s["right"], s["accuracy_pct"], s["heard_right_pct"], s["accuracy_heard_right_pct"]) == (3, 1, 33, 67, 50)
    assert (s["wrong_heard_right"], s["wrong_misheard"]) == (1, 1)
    assert s["voice_to_voice_p50_ms"] is not None and s["reply_words_p50"] == 5
    text = answers_report_text(answers_report(rows, ["c"], GROUPS, {}, {"split": "test", "items": 3}))
    assert "MISHEARD as 't'" in text and "right|heard" in text


def test_the_corpus_has_every_group_in_both_splits_and_no_latency_question() -> None:
    for split in ("tune", "test"):
        assert {i.group for i in select(split)} == set(GROUPS)
    said = [t.say for i in ITEMS for t in i.turns]
    assert len(said) == len(set(said)) and not set(said) & set(QUESTIONS)
    assert all(i.turns[-1].answers for i in ITEMS)  # every item is scored on its last turn
    assert [i.group for i in select("test", limit=4)] == list(GROUPS)
