"""What a sound over the agent's speech was: noise, a backchannel, or words that interrupt.

A caller saying "mm-hmm" or coughing while the agent talks is listening, not taking the
turn: cutting the reply off for it is the most common complaint about voice agents. Only
words that are not a backchannel interrupt (sustained speech does too, decided elsewhere).
"""

from __future__ import annotations

import re
from enum import Enum

BACKCHANNELS = frozenset({
    "mm", "mmm", "mm-hmm", "mm hmm", "mhm", "hmm", "hm", "uh-huh", "uh huh", "uh", "um", "ah", "oh",
    "yeah", "yea", "yes", "yep", "yup", "ok", "okay", "right", "sure", "alright", "all right",
    "i see", "got it", "cool", "nice", "great", "wow", "true", "exactly", "indeed",
    # How Whisper (tiny.en) writes a hummed "mm-hmm" or "uh-huh" (measured on espeak-ng voices).
    "uh-uh", "mm-mm", "mm-hm", "m-hm", "hmm-hmm", "hm-hm", "mhmm", "uh-hm", "uh-hmm", "uh-oh", "mm-kay",
    # Thanks over the reply acknowledge it; and "Thank you." is what Whisper writes for a short
    # leak of the agent's own echo (the turns bench's echo cases, twice in 12 calls it interrupted).
    "thank you", "thanks", "thank you very much", "thanks a lot",
})
# A hum that Whisper hears as a few function words ("and then them." for an espeak-ng
# "mm-hmm"): no word in it says anything, so it is not taking the turn. "But", "no", "wait",
# "what" are not here: alone, they are someone starting to speak.
FRAGMENT_WORDS = frozenset({
    "and", "then", "them", "the", "a", "an", "so", "in", "on", "of", "it", "its", "that", "there",
    "they", "he", "she", "him", "her", "his", "to", "or", "as", "at", "er", "eh", "hm", "mm", "uh", "um",
})
MAX_FRAGMENT_WORDS = 3
# A short sound Whisper turned into one or two words ("and anthem", "story" for an espeak-ng
# "mm-hmm" or a word of the agent's own echo) is not taking the turn unless a word of it asks
# for the turn: "stop", "wait", "no", a question word, "I", "you", ... (sustained speech
# interrupts whatever its words). Measured live: the same "mm-hmm" came out as "and then
# them." one call and "and anthem" the next, and cleared the reply.
MAX_UNCLEAR_WORDS = 2
TURN_WORDS = frozenset({
    "stop", "wait", "no", "nope", "not", "don't", "dont", "hold", "hang", "sorry", "excuse", "pardon", "but",
    "actually", "hey", "hello", "hi", "what", "why", "how", "when", "where", "who", "which", "whose", "listen",
    "enough", "repeat", "again", "tell", "say", "can", "could", "would", "will", "please", "help", "cancel",
    "quiet", "shut", "never", "i", "i'm", "im", "you", "me", "my", "we", "is", "are", "do", "does", "did", "let",
    "let's", "go", "quit", "end", "bye", "goodbye", "question", "huh", "louder", "slower", "faster",
})
# Whisper's renderings of sounds without words: "(coughs)", "[laughs]", "*sigh*", "♪".
_SOUND = re.compile(r"^\s*([(\[*♪].*[)\]*♪]|\W*)\s*$")
_WORDS = re.compile(r"[a-z]+(?:[-'][a-z]+)*")
_NOISE = frozenset({"you", "thanks for watching", "blank audio", "blank_audio", "music", "silence", "cough", "coughs"})


MIN_ECHO_WORDS = 2  # a transcript this long or longer made of the reply's words, in its order, is its echo
ECHO_SPAN = 2  # ... when they lie within this many reply words per word heard (+ 2)


class Overlap(str, Enum):
    NOISE = "noise"
    BACKCHANNEL = "backchannel"
    WORDS = "words"


def classify(text: str) -> Overlap:
    """`text` (the transcript of a sound heard while the agent spoke) as noise, backchannel or words."""
    if not says_words(text):
        return Overlap.NOISE
    words = _WORDS.findall(text.lower())
    phrase = " ".join(words)
    if phrase in BACKCHANNELS or "-".join(words) in BACKCHANNELS:
        return Overlap.BACKCHANNEL
    # "yeah yeah", "okay, right", "mm-hmm yes": every piece a backchannel.
    pieces = re.split(r"[,.!?;]+|\s+(?=\w)", text.lower())
    pieces = [" ".join(_WORDS.findall(p)) for p in pieces]
    if len(words) <= 4 and all(p in BACKCHANNELS for p in pieces if p):
        return Overlap.BACKCHANNEL
    if len(words) <= MAX_UNCLEAR_WORDS and not any(w in TURN_WORDS for w in words):
        return Overlap.NOISE
    return Overlap.WORDS


def text_words(text: str) -> list[str]:
    """The words of `text` as the checks here compare them (lower case, no punctuation)."""
    return _WORDS.findall(text.lower())


def says_words(text: str) -> bool:
    """Whether `text` has words at all: not a sound ("(coughs)"), a stock transcript of noise
    ("Thanks for watching") or a fragment of hesitation. `classify` may still call short words
    noise (they do not ask for the turn); a caller going on with their turn says them too."""
    if _SOUND.match(text):
        return False
    words = _WORDS.findall(text.lower())
    if not words or " ".join(words) in _NOISE:
        return False
    return not (len(words) <= MAX_FRAGMENT_WORDS and all(w in FRAGMENT_WORDS for w in words))


def echoes(text: str, reply: str) -> bool:
    """`text`, heard over the reply, is one stretch of the reply's own words in the reply's order:
    the agent's voice coming back (a caller without echo cancellation, a leak the canceller let
    through), not the caller. Words may be missing (Whisper drops some of a quiet echo), none
    may be new, and they lie close together in the reply (within `ECHO_SPAN` times their number
    of words, plus 2): a caller's "what is that" must not be found spread over a long reply's
    common words. One word alone says too little (`classify` judges it)."""
    words, said = _WORDS.findall(text.lower()), _WORDS.findall(reply.lower())
    if len(words) < MIN_ECHO_WORDS:
        return False
    longest = ECHO_SPAN * len(words) + 2
    for start, first in enumerate(said):
        if first != words[0]:
            continue
        at = start + 1
        for w in words[1:]:
            try:
                at = said.index(w, at, start + longest) + 1
            except ValueError:
                break
        else:
            return True
    return False
