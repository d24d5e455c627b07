"""The spoken questions of `voxline bench --answers` and how an answer is scored (pure).

Four groups: facts, arithmetic, everyday advice, and follow-ups whose last turn needs the
history of the call. Every item belongs to one split: `tune` (what prompts and settings were
tuned on) or `test` (held out: what README reports). None of them is a test sentence or an
example of the system prompt; `tests/unit/bench/test_answers_scoring.py` checks the examples.

An answer is right when its words contain one of `answers` (any) and none of `never` (a
contradiction such as "nine planets"). The question was heard right when the transcript has
each of its content words; a follow-up is heard right only if every turn before it was too,
so an STT error is never counted as an LLM one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

GROUPS = ("facts", "arithmetic", "advice", "follow-up")
SPLITS = ("tune", "test")
WORD = re.compile(r"[a-z0-9']+")
# Words too common to show whether a question was heard (its content words are the rest).
STOPWORDS = frozenset(re.findall(r"\S+",
    "a an and are am at be by can do does did for from how i i'm if in is it its me my of on or should "
    "that the their there this to was what when where which who why will with would you your now"))
NUMBERS = {"zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5", "six": "6", "seven": "7",
           "eight": "8", "nine": "9", "ten": "10", "eleven": "11", "twelve": "12", "thirteen": "13",
           "fourteen": "14", "fifteen": "15", "sixteen": "16", "eighteen": "18", "twenty": "20", "thirty": "30",
           "forty": "40", "fifty": "50", "hundred": "100"}


def _set(words: str) -> frozenset[str]:
    return frozenset(w.strip() for w in words.split(",") if w.strip())


@dataclass(frozen=True)
class Turn:
    say: str
    answers: frozenset[str] = field(default_factory=frozenset)  # any one of these; empty: not scored
    never: frozenset[str] = field(default_factory=frozenset)  # none of these


@dataclass(frozen=True)
class Item:
    group: str
    split: str
    turns: tuple[Turn, ...]


def _q(group: str, split: str, say: str, answers: str, never: str = "") -> Item:
    return Item(group, split, (Turn(say, _set(answers), _set(never)),))


def _d(split: str, *turns: tuple[str, str] | tuple[str, str, str]) -> Item:
    return Item("follow-up", split, tuple(Turn(t[0], _set(t[1]), _set(t[2] if len(t) > 2 else "")) for t in turns))


ITEMS: tuple[Item, ...] = (
    # facts
    _q("facts", "tune", "What is the capital of Japan?", "tokyo"),
    _q("facts", "tune", "How many legs does a dog have?", "4, four", "3, 5, 6"),
    _q("facts", "tune", "Which planet is closest to the sun?", "mercury"),
    _q("facts", "tune", "What language do people speak in Brazil?", "portuguese"),
    _q("facts", "tune", "How many hours are in a day?", "24", "12 hours"),
    _q("facts", "tune", "What animal says moo?", "cow, cows, cattle"),
    _q("facts", "tune", "What do caterpillars turn into?", "butterfly, butterflies, moth, moths"),
    _q("facts", "tune", "Who painted the Mona Lisa?", "leonardo, vinci"),
    _q("facts", "test", "How many planets are in our solar system?", "8", "9, 10"),
    _q("facts", "test", "What color is grass?", "green"),
    _q("facts", "test", "Which ocean is the largest?", "pacific"),
    _q("facts", "test", "What gas do we need to breathe?", "oxygen"),
    _q("facts", "test", "How many continents are there?", "7", "5, 6, 8"),
    _q("facts", "test", "What is the largest animal on Earth?", "whale, whales"),
    _q("facts", "test", "At what temperature does water freeze in Celsius?", "0"),
    _q("facts", "test", "What is the capital of Germany?", "berlin"),
    # arithmetic (the never sets: near misses that are not the question's own numbers)
    _q("arithmetic", "tune", "What is three plus five?", "8", "7, 9, 15"),
    _q("arithmetic", "tune", "What is ten minus four?", "6", "5, 7, 14, 40"),
    _q("arithmetic", "tune", "What is five times five?", "25", "10, 20"),
    _q("arithmetic", "tune", "What is twelve divided by three?", "4", "36"),
    _q("arithmetic", "tune", "What is nine plus one?", "10", "8, 11"),
    _q("arithmetic", "test", "What is seven plus six?", "13", "12, 14, 42"),
    _q("arithmetic", "test", "What is eight minus three?", "5", "4, 6, 11"),
    _q("arithmetic", "test", "What is six times seven?", "42", "13, 36, 48"),
    _q("arithmetic", "test", "What is twenty plus thirty?", "50", "40, 60, 600"),
    _q("arithmetic", "test", "What is half of ten?", "5", "20"),
    # everyday advice (the words a useful answer uses; none of them in the question)
    _q("advice", "tune", "What should I do if I cut my finger?",
       "bandage, wash, water, pressure, plaster, clean, soap, band aid"),
    _q("advice", "tune", "What should I pack for a day at the beach?",
       "sunscreen, towel, water, hat, swimsuit, sunglasses, snacks, umbrella"),
    _q("advice", "tune", "How do I make a cup of tea?", "water, boil, kettle, bag, steep, hot, leaves"),
    _q("advice", "tune", "How can I save money each month?",
       "budget, spending, spend, expenses, track, cook, bank, account, less"),
    _q("advice", "tune", "How do I get rid of hiccups?", "water, breath, breathe, hold, drink, sugar"),
    _q("advice", "test", "How can I fall asleep faster?",
       "bed, relax, screen, screens, routine, dark, caffeine, breathing, read, reading, schedule, quiet"),
    _q("advice", "test", "How do I keep my plants healthy?",
       "water, watering, sunlight, light, soil, fertilizer, sun, sunny"),
    _q("advice", "test", "What can I do when I feel stressed?",
       "breathe, breathing, breaths, walk, exercise, relax, meditate, meditation, talk, rest, break, yoga"),
    _q("advice", "test", "What should I do if my phone battery dies?",
       "charge, charger, charging, plug, power bank, outlet, cable"),
    _q("advice", "test", "How do I clean a dirty pan?", "soap, water, scrub, soak, baking soda, sponge, vinegar"),
    # follow-ups over one call: only the last turn, the one that needs the history, is scored
    _d("tune", ("My name is Sam.", ""), ("What is my name?", "sam")),
    _d("tune", ("I live in Boston.", ""), ("Where do I live?", "boston")),
    _d("tune", ("What is four plus four?", ""), ("Now add two to that.", "10", "6, 12")),
    _d("tune", ("What is the capital of Canada?", ""), ("And of Australia?", "canberra")),
    _d("test", ("My favorite color is blue.", ""), ("What is my favorite color?", "blue")),
    _d("test", ("I have two cats and one dog.", ""), ("How many pets do I have?", "3", "2 pets, 4")),
    _d("test", ("My dog is called Max.", ""), ("What is my dog called?", "max")),
    _d("test", ("What is the largest planet?", ""), ("And the smallest?", "mercury")),
    _d("test", ("My name is Leo.", ""), ("I like to play chess.", ""), ("What game do I like?", "chess")),
)


def words(text: str) -> list[str]:
    """Lower-case words with number words as digits ("twenty four" -> "20 4", "forty-two" -> "40 2")."""
    return [NUMBERS.get(w, w) for w in WORD.findall(text.lower().replace("-", " "))]


def _joined(text: str) -> str:
    """The words, with tens and units joined ("20 4" -> "24"), between spaces for phrase search."""
    out: list[str] = []
    for w in words(text):
        if out and w.isdigit() and len(w) == 1 and out[-1].isdigit() and len(out[-1]) == 2 and out[-1].endswith("0"):
            out[-1] = str(int(out[-1]) + int(w))
        else:
            out.append(w)
    return f" {' '.join(out)} "


def has_any(text: str, phrases: frozenset[str]) -> bool:
    joined = _joined(text)
    return any(_joined(p) in joined for p in phrases)


def answer_right(turn: Turn, reply: str) -> bool:
    """Right: one of the turn's answers is in the reply, and nothing it must not say is."""
    return has_any(reply, turn.answers) and not has_any(reply, turn.never)


def content_words(text: str) -> list[str]:
    return [w for w in words(text) if w not in STOPWORDS]


def heard_right(said: str, transcript: str) -> bool:
    """Every content word of what was said is in the transcript (a plural 's' aside)."""
    heard = set(words(transcript))
    heard |= {w.rstrip("s") for w in heard}
    return all(w in heard or w.rstrip("s") in heard for w in content_words(said))


def select(split: str = "test", limit: int = 0) -> list[Item]:
    """The items of a split (`all`: both), the first `limit` of each group's turn in rotation (0: all)."""
    items = [i for i in ITEMS if split == "all" or i.split == split]
    if limit:  # rotate through the groups so a short run still has each kind
        by_group = [[i for i in items if i.group == g] for g in GROUPS]
        rotated = [g[k] for k in range(max(map(len, by_group))) for g in by_group if k < len(g)]
        items = rotated[:limit]
    return items
