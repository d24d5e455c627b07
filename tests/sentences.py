"""What the spoken tests say: their own sentences, none of them a benchmark's question.

A benchmark that asked the very sentences the tests were made to pass on would measure the
tests, not the system. `bench_sentences()` gathers every sentence the benchmarks speak
(`--wer`, `--turns`, `--answers`, latency); the `speech` fixture refuses to say any of them,
and `tests/unit/bench/test_test_sentences.py` checks every sentence here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache


@dataclass(frozen=True)
class Question:
    text: str
    heard: frozenset[str]  # content words a transcript of it must have
    answer: frozenset[str]  # a sensible answer has one of these


def _q(text: str, heard: str, answer: str = "") -> Question:
    return Question(text, frozenset(heard.split()), frozenset(answer.split()))


SPAIN = _q("What is the capital of Spain?", "capital spain", "madrid")
PLANET = _q("What is the name of our planet?", "name planet", "earth")
MONTHS = _q("How many months are in a year?", "months year", "twelve 12")
TELEPHONE = _q("Who invented the telephone?", "invented telephone", "bell graham")
ICE = _q("What is frozen water called?", "frozen water", "ice")
WEATHER = _q("What is the weather like in Madrid?", "weather madrid", "sunny warm hot weather")
SOCCER = _q("How many players are on a soccer team?", "players soccer team", "eleven 11")
SPRING = _q("Which season comes after winter?", "season winter", "spring")
PORTUGAL = _q("What is the capital of Portugal?", "capital portugal", "lisbon")
SEA = _q("What is the biggest animal in the sea?", "biggest animal sea", "whale whales")
QUESTIONS: tuple[Question, ...] = (SPAIN, PLANET, MONTHS, TELEPHONE, ICE, WEATHER, SOCCER, SPRING, PORTUGAL, SEA)

# Requests and statements, for the transcription tests (no answer is checked).
STATEMENTS: tuple[str, ...] = (
    "Please turn on the kitchen lights.",
    "I would like to book a table for two people tomorrow evening at seven.",
    "Can you suggest a good book to read on the train?",
    "Remind me to water the plants on Sunday morning.",
    "My brother is visiting us next weekend.",
    "Tell me a fun fact about elephants.",
    "How do I make a paper airplane?",
    "The meeting has been moved to half past three.",
)
# A long request (the reply is still being written when the caller cuts in), its topic's
# words, and what the caller cuts in with.
STORY = "Tell me a long story about a clever fox and a wise old owl."
STORY_WORDS = frozenset({"fox", "owl", "story"})
STOP = _q("Stop. What is four plus three?", "plus", "seven 7")  # Whisper writes "4 plus 3"
# One question said in two parts with a pause where it is not yet complete.
PAUSED = ("I would like to book a table for", "two people at seven tonight.")
SPLIT = ("What is the capital", "of Spain?")
GOODBYE = "Thanks, that is all. Goodbye!"
OVER_REPLY = "Wait, stop. I have a different question."
TURN_ENDS = ("What time is it?", "I would like to book a table for", "Hello there.")  # complete, not, complete


def every_sentence() -> list[str]:
    """Every text this module has tests say."""
    return ([q.text for q in QUESTIONS] + list(STATEMENTS) + [STORY, STOP.text, *PAUSED, *SPLIT, GOODBYE,
                                                               OVER_REPLY, *TURN_ENDS])


def _words(text: str) -> tuple[str, ...]:
    return tuple(re.findall(r"[a-z0-9']+", text.lower().replace("-", " ")))


@cache
def bench_sentences() -> tuple[tuple[str, ...], ...]:
    """Every sentence a benchmark speaks, as its lower-case words (the latency, `--wer`,
    `--turns` and `--answers` corpora)."""
    from voxline.bench import answers_corpus, latency, turns_corpus, wer

    texts = [*wer.TEXTS, *latency.QUESTIONS, *turns_corpus.QUESTIONS, *turns_corpus.LONG,
             *turns_corpus.BACKCHANNELS, *turns_corpus.INTERRUPTIONS,
             *(" ".join(p) for p in turns_corpus.PAUSED), *(part for p in turns_corpus.PAUSED for part in p),
             *(t.say for item in answers_corpus.ITEMS for t in item.turns)]
    sentences = {_words(s) for text in texts for s in re.split(r"(?<=[.?!])\s+", text)} | {_words(t) for t in texts}
    return tuple(sorted(s for s in sentences if s))


def bench_sentence_in(text: str) -> str | None:
    """The benchmark sentence `text` says (its words in a row, or the whole of a short one), or None."""
    said = _words(text)
    joined = f" {' '.join(said)} "
    for sentence in bench_sentences():
        if len(sentence) >= 3 and f" {' '.join(sentence)} " in joined or sentence == said:
            return " ".join(sentence)
    return None
