"""When a turn is over: silence, an end-of-turn model's score and the words so far, combined.

Sans-I/O: `EndOfTurn` is told what is known (the model's score when it comes, the
speculative transcript when it comes) and answers how much silence the turn needs before it
ends. Silence alone was a fixed 500 ms: too long for "What time is it?", too short for
"I want to... book a table". The transcript carries the strongest cue (a trailing "and",
"to", "the" or a half-spoken number is not an end); the audio model helps where words are
missing or ambiguous, and is optional.

Whisper tiny.en sometimes invents an ending ("...a table for" heard as "...a table for it."),
so the top transcript alone can read complete when the caller stopped mid-sentence. An STT
that knows its other readings (`Reading`: the beam's other hypotheses, free in the same
decode) lets the words count only as far as Whisper was sure: a reading that stops earlier
on the same words, or ends in "...", and reads unfinished, nearly as likely as the top one,
makes the ending doubtful (`doubtful_ending`), and the turn waits as for unfinished words.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass


def _wordset(text: str) -> frozenset[str]:
    return frozenset(text.split())


# Words that leave a sentence open when they are the last thing said.
_OPEN_WORDS = _wordset("""
a an the these those my your his her its our their some any every each and or but
because cause since although though if unless until while when whereas whether nor yet
than as to of in on at for with from by about into onto under after before between
through during without within across against toward towards upon via per is are was
were be been am i we they he she um uh er erm very let's
""")
# Two-word endings that leave it open ("I want to", "going to" end in "to" already).
_OPEN_ENDINGS = ("i want", "i need", "would like", "i'd like", "it's like", "is like", "i think", "let me", "i mean",
                 "wait a", "hold on", "it's", "that's", "there's", "what's", "i'm", "half past", "quarter past")
_NUMBER_WORDS = _wordset("""
zero oh one two three four five six seven eight nine ten eleven twelve thirteen
fourteen fifteen sixteen seventeen eighteen nineteen twenty thirty forty fifty sixty
seventy eighty ninety hundred thousand million
""")
_QUESTION_STARTS = _wordset("""
what who whom whose which where when why how is are was were do does did can could will
would should shall may might have has had am
""")
_WORD = re.compile(r"[a-z0-9']+")
_HESITATION = re.compile(r"(\.\.\.|…|,|-|—)\s*$")


def transcript_complete(text: str) -> bool | None:
    """Whether `text` reads as a finished utterance: True, False (it stops mid-way), or None.

    None when there is nothing to judge (no words yet). A question or a clause that ends
    on a content word is complete; an ending on a function word, a hesitation mark or a
    run of spoken digits ("the code is four two") is not.
    """
    stripped = text.strip()
    words = _WORD.findall(stripped.lower())
    if not words:
        return None
    if _HESITATION.search(stripped):
        return False
    body = stripped.rstrip(" .!?").lower()
    # Before the question mark: Whisper puts one on "Can you tell me why the sky is?" too.
    if words[-1] in _OPEN_WORDS or any(body.endswith(e) for e in _OPEN_ENDINGS):
        return False
    if stripped.endswith("?"):
        return True
    # "four two" after "is"/"number"/"code": a number being read out, likely to go on. Words
    # as said too: Whisper writes "The code is four two" as "...is for two." as often as "...is 42."
    return not (_number_run(words, context=False) or _number_run(_spoken(body), context=True))


_NUMBER_CONTEXT = ("is", "number", "code", "was")


def _number_run(words: Sequence[str], context: bool) -> bool:
    """Whether `words` end in a number being read out: two or more number words (after a
    context word such as "is" when `context`, since "for two" also says "four two"), or one
    after a context word."""
    digits = 0
    for w in reversed(words):
        if w in _NUMBER_WORDS or w.isdigit():
            digits += 1
        else:
            break
    before = words[-digits - 1] if digits < len(words) else ""
    return (digits >= 2 and (not context or before in _NUMBER_CONTEXT)) or (digits == 1 and before in _NUMBER_CONTEXT)


# Another reading of the same audio and how much less likely it was than the transcript
# (the difference of their mean token log-probabilities, >= 0).
Reading = tuple[str, float]


def doubtful_ending(text: str, readings: Sequence[Reading], margin: float) -> bool:
    """Whether a reading that stops earlier on the same words reads unfinished, within `margin`.

    Only readings whose words begin `text`'s words count ("a table for" for "a table for
    it.", "we could..." for "we could."): they say Whisper was unsure the speech went on to
    the end it wrote; words are compared as said ("The code is 42." begins "The code is for
    two."). A reading that hears other words ("next week and" for "next weekend") is a
    mishearing, not an unfinished turn. Measured on 390 complete turns and 36 unfinished
    ones that Whisper wrote complete (13 voices, tiny.en, beam 5): a margin of 0.3 doubts 2 of
    the complete (0.25: none) and 18 of the unfinished (0.25: 17); counting any unfinished
    reading, 0.1 would doubt 4 complete turns. Over a call, "...a table for it." had "...a
    table for." 0.26 behind.
    """
    words = _spoken(text)
    for other, behind in readings:
        if behind > margin:
            continue
        said = _spoken(other)
        if not (said and said == words[: len(said)] and transcript_complete(other) is False):
            continue
        # All the words, only a mark after them ("tomorrow..." for "tomorrow."): Whisper's
        # trailing "..." or "," is a doubt about the end only after a word that seldom ends a
        # sentence ("we could..."); after "tomorrow", "home", "Mona Lisa" it doubted 12 of 280
        # complete turns and caught no unfinished one (the turns bench's corpus, 10 voices).
        if len(said) < len(words) or transcript_complete(_HESITATION.sub("", other.strip())) is False \
                or said[-1] in _WEAK_LAST_WORDS:
            return True
    return False


# Last words that seldom end a sentence though they can ("Yes, I could."): a reading of the
# same words ending in "..." after one of these makes the ending doubtful.
_WEAK_LAST_WORDS = _wordset("could would should can will might must may shall so then past")


_DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
_SOUNDS_LIKE = {"for": "four", "to": "two", "too": "two", "oh": "zero"}


def _spoken(text: str) -> list[str]:
    """The words as said: "42" and "for two" both say "four two" (a number read out, or not)."""
    out: list[str] = []
    for w in _WORD.findall(text.lower()):
        if w.isdigit():
            out += [_DIGIT_WORDS[int(d)] for d in w]
        else:
            out.append(_SOUNDS_LIKE.get(w, w))
    return out


def is_question(text: str) -> bool:
    words = _WORD.findall(text.lower())
    return text.strip().endswith("?") or bool(words and words[0] in _QUESTION_STARTS and len(words) > 2)


def model_can_decide(text: str) -> bool:
    """Whether the end-of-turn model's score can still change the decision once `text` is
    known: not for words that stop mid-way (the longest wait) nor for a finished question
    (the shortest), which `EndOfTurn.decide` settles whatever the score."""
    words = transcript_complete(text)
    return words is None or (words is True and not is_question(text))


@dataclass(frozen=True)
class EndOfTurnConfig:
    min_ms: int = 200  # silence that ends a turn every cue says is complete
    base_ms: int = 500  # silence that ends a turn when the cues are unsure or disagree
    max_ms: int = 2500  # silence that ends a turn the words say is not finished
    model_threshold: float = 0.5  # a model score at or above this reads "complete"
    doubt_margin: float = 0.3  # a reading this close that stops earlier, unfinished, makes the ending doubtful (0: off)


@dataclass(frozen=True)
class Decision:
    """How much silence the turn needs, and why: logged and carried in `turn.metrics`."""

    wait_ms: int
    reason: str
    score: float | None
    words: bool | None  # what the transcript said: complete, incomplete, or not known

    def describe(self) -> str:
        score = "no model" if self.score is None else f"model {self.score:.2f}"
        words = {True: "words complete", False: "words incomplete", None: "no words yet"}[self.words]
        return f"{self.reason} ({score}, {words}; waits {self.wait_ms} ms)"


class EndOfTurn:
    """The cues of the turn in progress; `decide()` is the silence it needs right now."""

    def __init__(self, config: EndOfTurnConfig | None = None) -> None:
        self.config = config or EndOfTurnConfig()
        self.score: float | None = None
        self.text: str | None = None  # "" when no words will come (the transcription failed)
        self.words_coming = False  # a transcript of the pause is on its way: it decides
        self.readings: Sequence[Reading] = ()  # the STT's other readings of `text`, if it has them
        self.score_coming = False  # the model is scoring the pause after its words: complete words wait for it

    def reset(self) -> None:
        """A new turn, or speech resumed: the cues were about audio that has grown since."""
        self.score = None
        self.text = None
        self.words_coming = False
        self.readings = ()
        self.score_coming = False

    def decide(self) -> Decision:
        cfg = self.config
        words = transcript_complete(self.text) if self.text is not None else None
        model = None if self.score is None else self.score >= cfg.model_threshold
        if words is False:
            return Decision(cfg.max_ms, "words unfinished", self.score, words)
        if words is True:
            if cfg.doubt_margin > 0 and doubtful_ending(self.text or "", self.readings, cfg.doubt_margin):
                # Audio model not asked: on espeak and Piper alike it scores such fragments complete.
                return Decision(cfg.max_ms, "last word doubtful", self.score, words)
            if is_question(self.text or ""):
                return Decision(cfg.min_ms, "complete", self.score, words)
            if model is None and self.score_coming:
                # The model scores the pause once its words are known (`model_can_decide`): a
                # statement waits for it, as it did when the score came before the words.
                return Decision(cfg.base_ms, "waiting for the model", self.score, words)
            if model is not False:
                return Decision(cfg.min_ms, "complete", self.score, words)
            return Decision(cfg.base_ms, "words complete, model unsure", self.score, words)
        if self.text is None and self.words_coming:
            # The words are the strongest cue and are on their way (the speculative transcript,
            # slower on a busy machine than base_ms): wait for them, never past max_ms.
            return Decision(cfg.max_ms, "waiting for words", self.score, words)
        if model is False:
            return Decision(cfg.max_ms, "model says unfinished", self.score, words)
        return Decision(cfg.base_ms, "silence", self.score, words)
